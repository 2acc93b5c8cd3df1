/* rtp-routes-snapshots.c: /snapshots/<exp>… — save, compare and restore an experiment's set-points
 *
 * The rules are the snapshot service's (rtp-snapshots.c) and, for a restore, the set-point
 * service's; here the body is read and the JSON (or the CSV of a snapshot) is written. */
#define G_LOG_DOMAIN "RtpRoutesSnapshots"

#include "rtp-csv.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-services.h"
#include "rtp-time.h"

#include <math.h>
#include <string.h>

typedef struct {
  RtpRequest *request; /* (owned) */
  RtpServices *services;
} Call;

static Call *
call_new (RtpRequest *request, RtpServices *services)
{
  Call *c = g_new0 (Call, 1);
  c->request = rtp_request_ref (request);
  c->services = services;
  rtp_request_pause (request);
  return c;
}

static void
call_free (Call *c)
{
  rtp_request_unref (c->request);
  g_free (c);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Call, call_free)

static char *
local_time (RtpServices *services, gint64 us)
{
  char buf[64];

  rtp_time_format_us (rtp_history_get_time_zone (services->history), us, buf);
  return g_strdup (buf);
}

/* A saved or current value: its JSON (numbers, texts, waveforms as the appliance gave them). */
static JsonNode *
value_node (const char *json)
{
  JsonNode *node = json != NULL ? json_from_string (json, NULL) : NULL;
  return node != NULL ? node : json_node_init_null (json_node_alloc ());
}

static JsonObject *
snapshot_json (RtpServices *services, const RtpSnapshot *s)
{
  JsonObject *o = json_object_new ();
  g_autofree char *taken = local_time (services, s->taken_us);

  json_object_set_string_member (o, "id", s->id);
  json_object_set_string_member (o, "experiment_short_id", s->experiment_short_id);
  json_object_set_string_member (o, "name", s->name);
  if (s->comment != NULL)
    json_object_set_string_member (o, "comment", s->comment);
  else
    json_object_set_null_member (o, "comment");
  json_object_set_string_member (o, "taken_at", taken);
  json_object_set_string_member (o, "taken_by", s->taken_by);
  if (s->has_at)
    {
      g_autofree char *at = local_time (services, s->at_us);
      json_object_set_string_member (o, "at", at);
    }
  else
    json_object_set_null_member (o, "at");
  if (s->values != NULL)
    {
      JsonObject *values = json_object_new ();
      for (guint i = 0; i < s->values->len; i++)
        {
          const RtpSnapshotValue *v = g_ptr_array_index (s->values, i);
          if (v->value == NULL)
            json_object_set_null_member (values, v->pv_string);
          else
            {
              JsonObject *entry = json_object_new ();
              g_autofree char *time = local_time (services, v->time_us);
              json_object_set_member (entry, "value", value_node (v->value));
              json_object_set_string_member (entry, "time", time);
              json_object_set_object_member (values, v->pv_string, entry);
            }
        }
      json_object_set_object_member (o, "values", values);
    }
  return o;
}

static void
respond_snapshot (RtpRequest *request, RtpServices *services, const RtpSnapshot *s)
{
  JsonObject *o = json_object_new ();
  json_object_set_object_member (o, "snapshot", snapshot_json (services, s));
  rtp_request_respond_object (request, 200, o);
}

/* ---- take ---------------------------------------------------------------- */

static void
taken (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) c = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpSnapshot) s = rtp_snapshots_take_finish (RTP_SNAPSHOTS (source), result, &error);

  rtp_request_enter (c->request);
  if (s == NULL)
    rtp_request_respond_error (c->request, error);
  else
    respond_snapshot (c->request, c->services, s);
  rtp_request_leave (c->request);
}

static void
take (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *short_id = rtp_request_get_param (request, 0);
  JsonObject *body = rtp_request_get_body (request);
  const char *name = NULL, *comment = NULL, *at = NULL;
  g_autoptr (GError) error = NULL;
  gint64 at_us = 0;
  RtpFieldState at_state;

  if (!rtp_routes_check_access (services, request, short_id, RTP_ACCESS_READ))
    return;
  if (rtp_routes_read_string (body, "name", &name) != RTP_FIELD_SET)
    {
      rtp_request_respond_error_message (request, 400, _ ("name: A snapshot needs a name of 1 to 100 characters."));
      return;
    }
  if (rtp_routes_read_string (body, "comment", &comment) == RTP_FIELD_WRONG_TYPE)
    {
      rtp_request_respond_error_message (request, 400, _ ("comment: Value must be a text, or null."));
      return;
    }
  at_state = rtp_routes_read_string (body, "at", &at);
  if (at_state == RTP_FIELD_WRONG_TYPE ||
      (at_state == RTP_FIELD_SET && !rtp_history_resolve_moment (services->history, "at", at, &at_us, &error)))
    {
      if (error == NULL)
        error = g_error_new_literal (RTP_ERROR, RTP_ERROR_INVALID,
                                     _ ("at: The time is not valid. Use YYYY-MM-DD HH:MM:SS or ISO 8601."));
      rtp_request_respond_error (request, error);
      return;
    }
  rtp_snapshots_take_async (services->snapshots, short_id, name, comment, at_state == RTP_FIELD_SET, at_us,
                            rtp_request_get_caller (request)->user_id, NULL, taken, call_new (request, services));
}

/* ---- read, delete ---------------------------------------------------------------- */

static void
list (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *short_id = rtp_request_get_param (request, 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) snapshots = NULL;
  JsonArray *items;

  if (!rtp_routes_check_access (services, request, short_id, RTP_ACCESS_READ))
    return;
  snapshots = rtp_snapshots_list (services->snapshots, short_id, &error);
  if (snapshots == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  items = json_array_new ();
  for (guint i = 0; i < snapshots->len; i++)
    json_array_add_object_element (items, snapshot_json (services, g_ptr_array_index (snapshots, i)));
  rtp_request_respond_object (request, 200, rtp_routes_list_answer ("snapshots", items));
}

static void
show (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *short_id = rtp_request_get_param (request, 0);
  const char *format = rtp_request_get_query (request, "format");
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpSnapshot) s = NULL;

  if (!rtp_routes_check_access (services, request, short_id, RTP_ACCESS_READ))
    return;
  if (format != NULL && !g_str_equal (format, "json") && !g_str_equal (format, "csv"))
    {
      rtp_request_respond_error_message (request, 400, _ ("format: Value must be \"json\" or \"csv\"."));
      return;
    }
  s = rtp_snapshots_get (services->snapshots, short_id, rtp_request_get_param (request, 1), &error);
  if (s == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  if (format != NULL && g_str_equal (format, "csv"))
    {
      g_autoptr (GString) out = g_string_new ("pv,value,time\r\n");
      g_autofree char *disposition = NULL;
      g_autoptr (GString) file = g_string_new (NULL);
      gsize len;
      GBytes *bytes;

      for (guint i = 0; i < s->values->len; i++)
        {
          const RtpSnapshotValue *v = g_ptr_array_index (s->values, i);
          rtp_csv_append_text (out, v->pv_string, strlen (v->pv_string), ',');
          g_string_append_c (out, ',');
          if (v->value != NULL)
            {
              g_autofree char *time = local_time (services, v->time_us);
              rtp_csv_append_value (out, v->value, strlen (v->value), ',');
              g_string_append_c (out, ',');
              g_string_append (out, time);
            }
          else
            g_string_append_c (out, ',');
          g_string_append (out, "\r\n");
        }
      for (const char *p = s->name; *p != '\0'; p++)
        g_string_append_c (file, g_ascii_isalnum (*p) || *p == '-' || *p == '.' ? *p : '_');
      disposition = g_strdup_printf ("attachment; filename=\"%s_%s.csv\"", s->experiment_short_id, file->str);
      rtp_request_add_header (request, "Content-Disposition", disposition);
      len = out->len;
      bytes = g_bytes_new_take (g_string_free (g_steal_pointer (&out), FALSE), len);
      rtp_request_respond_bytes (request, 200, "text/csv; charset=utf-8", bytes);
      g_bytes_unref (bytes);
      return;
    }
  respond_snapshot (request, services, s);
}

static void
delete_snapshot (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *short_id = rtp_request_get_param (request, 0);
  const char *id = rtp_request_get_param (request, 1);
  const RtpUser *caller = rtp_request_get_caller (request);
  g_autoptr (GError) error = NULL;
  g_autofree char *message = NULL;

  if (!rtp_routes_check_access (services, request, short_id, RTP_ACCESS_READ))
    return;
  if (!rtp_snapshots_delete (services->snapshots, short_id, id, caller->user_id, rtp_user_is_admin (caller), &error))
    {
      rtp_request_respond_error (request, error);
      return;
    }
  message = g_strdup_printf (_ ("The %s (%s) was successfully deleted from the database."), _ ("snapshot"), id);
  rtp_request_respond_messages (request, message);
}

/* ---- compare ---------------------------------------------------------------- */

static void
compared (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) c = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) list = rtp_snapshots_compare_finish (RTP_SNAPSHOTS (source), result, &error);
  JsonObject *o, *pvs;

  rtp_request_enter (c->request);
  if (list == NULL)
    {
      rtp_request_respond_error (c->request, error);
      rtp_request_leave (c->request);
      return;
    }
  pvs = json_object_new ();
  for (guint i = 0; i < list->len; i++)
    {
      const RtpSnapshotComparison *cmp = g_ptr_array_index (list, i);
      JsonObject *e = json_object_new ();
      json_object_set_member (e, "saved", value_node (cmp->saved));
      json_object_set_member (e, "current", value_node (cmp->current));
      if (cmp->has_delta)
        json_object_set_double_member (e, "delta", cmp->delta);
      else
        json_object_set_null_member (e, "delta");
      json_object_set_boolean_member (e, "within_tolerance", cmp->within_tolerance);
      json_object_set_object_member (pvs, cmp->pv_string, e);
    }
  o = json_object_new ();
  json_object_set_object_member (o, "process_variables", pvs);
  rtp_request_respond_object (c->request, 200, o);
  rtp_request_leave (c->request);
}

static void
compare (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *short_id = rtp_request_get_param (request, 0);
  const char *tolerance_text = rtp_request_get_query (request, "tolerance");
  double tolerance = 0;

  if (!rtp_routes_check_access (services, request, short_id, RTP_ACCESS_READ))
    return;
  if (tolerance_text != NULL)
    {
      char *end = NULL;
      tolerance = g_ascii_strtod (tolerance_text, &end);
      if (tolerance_text[0] == '\0' || *end != '\0' || !isfinite (tolerance) || tolerance < 0)
        {
          rtp_request_respond_error_message (request, 400, _ ("tolerance: Value must be a number of at least 0."));
          return;
        }
    }
  rtp_snapshots_compare_async (services->snapshots, short_id, rtp_request_get_param (request, 1), tolerance, NULL,
                               compared, call_new (request, services));
}

/* ---- restore ---------------------------------------------------------------- */

static void
restored (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) c = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) list = rtp_snapshots_restore_finish (RTP_SNAPSHOTS (source), result, &error);
  JsonObject *o, *results;

  rtp_request_enter (c->request);
  if (list == NULL)
    {
      rtp_request_respond_error (c->request, error);
      rtp_request_leave (c->request);
      return;
    }
  results = json_object_new ();
  for (guint i = 0; i < list->len; i++)
    {
      const RtpRestoreResult *r = g_ptr_array_index (list, i);
      JsonObject *e = json_object_new ();
      json_object_set_string_member (e, "outcome", r->outcome);
      if (r->reason != NULL)
        json_object_set_string_member (e, "reason", r->reason);
      json_object_set_object_member (results, r->pv_string, e);
    }
  o = json_object_new ();
  json_object_set_object_member (o, "results", results);
  rtp_request_respond_object (c->request, 200, o);
  rtp_request_leave (c->request);
}

static void
restore (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *short_id = rtp_request_get_param (request, 0);
  JsonObject *body = rtp_request_get_body (request);
  const RtpUser *caller = rtp_request_get_caller (request);
  g_auto (GStrv) pvs = NULL;
  gboolean dry_run = FALSE;

  if (!rtp_routes_check_access (services, request, short_id, RTP_ACCESS_READ))
    return;
  if (rtp_routes_read_strings (body, "pvs", &pvs) == RTP_FIELD_WRONG_TYPE)
    {
      rtp_request_respond_error_message (request, 400, _ ("pvs: Value must be a list of process variable names."));
      return;
    }
  if (rtp_routes_read_boolean (body, "dry_run", &dry_run) == RTP_FIELD_WRONG_TYPE)
    {
      rtp_request_respond_error_message (request, 400, _ ("dry_run: Value must be either true or false."));
      return;
    }
  rtp_snapshots_restore_async (services->snapshots, caller, caller->user_id, FALSE, short_id,
                               rtp_request_get_param (request, 1), (const char *const *) pvs, dry_run, NULL, restored,
                               call_new (request, services));
}

void
rtp_routes_snapshots_register (RtpHttpServer *http, RtpServices *services)
{
  rtp_http_server_add_route (http, "POST", "/snapshots/*", RTP_ROUTE_AUTH | RTP_ROUTE_JSON, take, services);
  rtp_http_server_add_route (http, "GET", "/snapshots/*", RTP_ROUTE_AUTH, list, services);
  rtp_http_server_add_route (http, "GET", "/snapshots/*/*", RTP_ROUTE_AUTH, show, services);
  rtp_http_server_add_route (http, "DELETE", "/snapshots/*/*", RTP_ROUTE_AUTH, delete_snapshot, services);
  rtp_http_server_add_route (http, "GET", "/snapshots/*/*/compare", RTP_ROUTE_AUTH, compare, services);
  rtp_http_server_add_route (http, "POST", "/snapshots/*/*/restore", RTP_ROUTE_AUTH | RTP_ROUTE_JSON_OPTIONAL, restore,
                             services);
}
