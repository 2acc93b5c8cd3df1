/* rtp-routes-data.c: POST /data/<short_id>[/<pv>] and validate_pv_string (API.md "Archived data")
 *
 * The route reads the body and writes the answer; the rules (window, max_points, time zone, the
 * archiver expression) are the history service's (rtp-history.c). Every PV is fetched at once and
 * written PV after PV into one answer, streamed with bounded buffers (see "the answer" below). */
#define G_LOG_DOMAIN "RtpRoutesData"

#include "rtp-archiver-client.h"
#include "rtp-export.h"
#include "rtp-history.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-json.h"
#include "rtp-services.h"
#include "rtp-time.h"

#include <string.h>

/* ---- the answer: an HTTP sink for the export -------------------------------------------- */

static void
sink_drained (gsize queued, gpointer user_data)
{
  rtp_export_drained (user_data, queued);
}

static void
sink_begin (gpointer sink, RtpExport *export, const char *content_type, const char *disposition)
{
  if (disposition != NULL)
    rtp_request_add_header (sink, "Content-Disposition", disposition);
  rtp_request_stream_begin (sink, 200, content_type, sink_drained, export);
}

static void
sink_write (gpointer sink, GString *text)
{
  rtp_request_stream_write (sink, text);
}

static gsize
sink_queued (gpointer sink)
{
  return rtp_request_stream_queued (sink);
}

static void
sink_end (gpointer sink)
{
  rtp_request_stream_end (sink);
}

static void
sink_abort (gpointer sink)
{
  rtp_request_stream_abort (sink);
}

static void
sink_complete (gpointer sink, const char *content_type, const char *disposition, GBytes *body)
{
  if (disposition != NULL)
    rtp_request_add_header (sink, "Content-Disposition", disposition);
  rtp_request_respond_bytes (sink, 200, content_type, body);
}

static void
sink_fail (gpointer sink, const GError *error)
{
  rtp_request_respond_error (sink, error);
}

static void
sink_enter (gpointer sink)
{
  rtp_request_enter (sink);
}

static void
sink_leave (gpointer sink)
{
  rtp_request_leave (sink);
}

static const RtpExportSinkFuncs http_sink = {
  .begin = sink_begin,
  .write = sink_write,
  .queued = sink_queued,
  .end = sink_end,
  .abort = sink_abort,
  .complete = sink_complete,
  .fail = sink_fail,
  .enter = sink_enter,
  .leave = sink_leave,
};

/* ---- the request ---------------------------------------------------------------- */

/* A time member: absent or null, or a string (the history service reads it); anything else is
 * answered here with the contract's message, which shows the JSON as it was sent. */
static gboolean
time_member (RtpRequest *request, JsonObject *body, const char *name, const char **out)
{
  JsonNode *node = body != NULL ? json_object_get_member (body, name) : NULL;
  g_autofree char *text = NULL;
  g_autofree char *message = NULL;

  *out = NULL;
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    {
      *out = json_node_get_string (node);
      return TRUE;
    }
  text = json_to_string (node, FALSE);
  message = g_strdup_printf (_ ("%s: The time (%s) is not valid. Use YYYY-MM-DD HH:MM:SS or ISO 8601."), name, text);
  rtp_request_respond_error_message (request, 400, message);
  return FALSE;
}

/* The presentation keys (format, align, include, time_format); without a format, the Accept
 * header may ask for CSV or TSV. FALSE: answered with a 400 naming the key. */
static gboolean
read_options (RtpRequest *request, JsonObject *body, RtpExportOptions *options)
{
  RtpExportRequest r = { 0 };
  g_auto (GStrv) include = NULL;
  g_autoptr (GError) error = NULL;

  r.format_state = rtp_routes_read_string (body, "format", &r.format);
  if (r.format_state == RTP_FIELD_ABSENT || r.format_state == RTP_FIELD_NULL)
    {
      const char *accept = rtp_request_get_header (request, "Accept");
      if (accept != NULL && strstr (accept, "text/csv") != NULL)
        r.format = "csv";
      else if (accept != NULL && strstr (accept, "text/tab-separated-values") != NULL)
        r.format = "tsv";
      if (r.format != NULL)
        r.format_state = RTP_FIELD_SET;
    }
  r.align_state = rtp_routes_read_string (body, "align", &r.align);
  r.time_format_state = rtp_routes_read_string (body, "time_format", &r.time_format);
  r.include_state = rtp_routes_read_strings (body, "include", &include);
  r.include = (const char *const *) include;
  if (!rtp_export_read_options (&r, options, &error))
    {
      rtp_request_respond_error (request, error);
      return FALSE;
    }
  return TRUE;
}

static void
get_data (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *short_id = rtp_request_get_param (request, 0);
  const char *only_pv = rtp_request_get_n_params (request) > 1 ? rtp_request_get_param (request, 1) : NULL;
  JsonObject *body = rtp_request_get_body (request);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpExperiment) experiment = NULL;
  JsonNode *mp = body != NULL ? json_object_get_member (body, "max_points") : NULL;
  RtpHistoryQuery query = { 0 };
  RtpHistoryWindow window = { 0 };
  RtpExportOptions options;

  experiment = rtp_experiment_store_get_experiment (services->experiments, short_id, &error);
  if (experiment == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  if (only_pv != NULL && !g_ptr_array_find_with_equal_func (experiment->pv_strings, only_pv, g_str_equal, NULL))
    {
      g_autoptr (GError) missing = rtp_error_new_not_found (_ ("process variable"), only_pv);
      rtp_request_respond_error (request, missing);
      return;
    }
  /* Deviation (API.md): admins may read every experiment */
  if (!rtp_routes_check_access (services, request, short_id, RTP_ACCESS_READ))
    return;

  if (!time_member (request, body, "since", &query.since) || !time_member (request, body, "until", &query.until))
    return;
  if (mp != NULL && !JSON_NODE_HOLDS_NULL (mp))
    {
      if (!JSON_NODE_HOLDS_VALUE (mp) || json_node_get_value_type (mp) != G_TYPE_INT64)
        {
          rtp_request_respond_error_message (request, 400, _ ("max_points: Value must be a non-negative integer."));
          return;
        }
      query.has_max_points = TRUE;
      query.max_points = json_node_get_int (mp);
    }
  query.operator_state = rtp_routes_read_string (body, "operator", &query.operator_name);
  query.bin_s_state = rtp_routes_read_integer (body, "bin_s", &query.bin_s);
  if (!read_options (request, body, &options))
    return;
  if (!rtp_history_resolve (services->history, &query, &window, &error))
    {
      rtp_request_respond_error (request, error);
      return;
    }
  if (!rtp_history_is_configured (services->history))
    {
      g_autoptr (GError)
        e = g_error_new (RTP_ERROR, RTP_ERROR_UPSTREAM, "%s", _ ("Could not get process variable data from archiver."));
      rtp_history_window_clear (&window);
      rtp_request_respond_error (request, e);
      return;
    }
  rtp_request_pause (request);
  rtp_export_start (services->history, experiment, only_pv, &window, &options, &http_sink, rtp_request_ref (request),
                    (GDestroyNotify) rtp_request_unref, rtp_request_get_cancellable (request));
}

/* ---- values at a moment: POST /data/<short_id>/at ---------------------------------------- */

typedef struct {
  RtpRequest *request; /* (owned) */
  RtpServices *services;
  GTimeZone *tz;  /* (owned) */
  GPtrArray *pvs; /* (owned) the experiment's PVs, NULL-terminated */
  gint64 at_us;
} AtRequest;

static void
at_request_free (AtRequest *r)
{
  rtp_request_unref (r->request);
  g_time_zone_unref (r->tz);
  g_ptr_array_unref (r->pvs);
  g_free (r);
}

static void
values_at_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AtRequest *r = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GHashTable) values = rtp_history_values_at_finish (RTP_HISTORY (source), result, &error);
  char time_buf[64];

  rtp_request_enter (r->request);
  if (values == NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        rtp_request_respond_error (r->request, error);
    }
  else
    {
      g_autoptr (GString) out = g_string_new ("{\"at\":\"");
      gsize len;
      GBytes *bytes;

      g_string_append_len (out, time_buf, (gssize) rtp_time_format_us (r->tz, r->at_us, time_buf));
      g_string_append (out, "\",\"values\":{");
      for (guint i = 0; g_ptr_array_index (r->pvs, i) != NULL; i++)
        {
          const char *pv = g_ptr_array_index (r->pvs, i);
          const RtpValueAt *v = g_hash_table_lookup (values, pv);
          if (i > 0)
            g_string_append_c (out, ',');
          rtp_json_append_string (out, pv);
          if (v == NULL)
            {
              g_string_append (out, ":null");
              continue;
            }
          g_string_append (out, ":{\"time\":\"");
          g_string_append_len (out, time_buf, (gssize) rtp_time_format (r->tz, v->secs, v->nanos, time_buf));
          g_string_append (out, "\",\"data\":");
          g_string_append (out, v->value);
          if (v->severity >= 0)
            g_string_append_printf (out, ",\"severity\":%d", v->severity);
          else
            g_string_append (out, ",\"severity\":null");
          if (v->status >= 0)
            g_string_append_printf (out, ",\"status\":%d}", v->status);
          else
            g_string_append (out, ",\"status\":null}");
        }
      g_string_append (out, "}}");
      len = out->len;
      bytes = g_bytes_new_take (g_string_free (g_steal_pointer (&out), FALSE), len);
      rtp_request_respond_bytes (r->request, 200, "application/json; charset=utf-8", bytes);
      g_bytes_unref (bytes);
    }
  rtp_request_leave (r->request);
  at_request_free (r);
}

static void
get_values_at (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *short_id = rtp_request_get_param (request, 0);
  JsonObject *body = rtp_request_get_body (request);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpExperiment) experiment = NULL;
  const char *at = NULL;
  AtRequest *r;

  experiment = rtp_experiment_store_get_experiment (services->experiments, short_id, &error);
  if (experiment == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  if (!rtp_routes_check_access (services, request, short_id, RTP_ACCESS_READ) ||
      !time_member (request, body, "at", &at))
    return;
  r = g_new0 (AtRequest, 1);
  if (!rtp_history_resolve_moment (services->history, "at", at, &r->at_us, &error))
    {
      g_free (r);
      rtp_request_respond_error (request, error);
      return;
    }
  if (!rtp_history_is_configured (services->history))
    {
      g_autoptr (GError)
        e = g_error_new (RTP_ERROR, RTP_ERROR_UPSTREAM, "%s", _ ("Could not get process variable data from archiver."));
      g_free (r);
      rtp_request_respond_error (request, e);
      return;
    }
  r->request = rtp_request_ref (request);
  r->services = services;
  r->tz = g_time_zone_ref (rtp_history_get_time_zone (services->history));
  r->pvs = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < experiment->pv_strings->len; i++)
    g_ptr_array_add (r->pvs, g_strdup (g_ptr_array_index (experiment->pv_strings, i)));
  g_ptr_array_add (r->pvs, NULL);
  rtp_request_pause (request);
  rtp_history_values_at_async (services->history, (const char *const *) r->pvs->pdata, r->at_us,
                               rtp_request_get_cancellable (request), values_at_done, r);
}

/* ---- search: GET /archiver/pvs ---------------------------------------------------------- */

typedef struct {
  RtpRequest *request; /* (owned) */
  RtpServices *services;
} SearchRequest;

static void
search_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SearchRequest *sr = user_data;
  g_autoptr (RtpRequest) request = sr->request;
  RtpServices *services = sr->services;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) names = rtp_history_search_finish (RTP_HISTORY (source), result, &error);
  JsonArray *pvs;

  g_free (sr);
  rtp_request_enter (request);
  if (names == NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        rtp_request_respond_error (request, error);
      rtp_request_leave (request);
      return;
    }
  pvs = json_array_new ();
  for (guint i = 0; names[i] != NULL; i++)
    {
      g_autoptr (GError) lookup_error = NULL;
      g_autoptr (RtpProcessVariable) pv = rtp_experiment_store_get_pv (services->experiments, names[i], &lookup_error);
      JsonObject *o;
      if (pv == NULL && !g_error_matches (lookup_error, RTP_ERROR, RTP_ERROR_NOT_FOUND))
        {
          json_array_unref (pvs);
          rtp_request_respond_error (request, lookup_error);
          rtp_request_leave (request);
          return;
        }
      o = json_object_new ();
      json_object_set_string_member (o, "pv_string", names[i]);
      json_object_set_boolean_member (o, "configured", pv != NULL);
      if (pv != NULL)
        json_object_set_string_member (o, "experiment_short_id", pv->experiment_short_id);
      else
        json_object_set_null_member (o, "experiment_short_id");
      json_array_add_object_element (pvs, o);
    }
  rtp_request_respond_object (request, 200, rtp_routes_list_answer ("pvs", pvs));
  rtp_request_leave (request);
}

static void
search_pvs (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *pattern = rtp_request_get_query (request, "pattern");
  const char *regex = rtp_request_get_query (request, "regex");
  const char *limit_text = rtp_request_get_query (request, "limit");
  guint64 limit = 100;
  SearchRequest *sr;

  if ((pattern == NULL) == (regex == NULL) || (pattern != NULL && *pattern == '\0') ||
      (regex != NULL && *regex == '\0'))
    {
      rtp_request_respond_error_message (
        request, 400, _ ("pattern: Give either a glob pattern (pattern=…) or a regular expression (regex=…)."));
      return;
    }
  if (limit_text != NULL && (!g_ascii_string_to_unsigned (limit_text, 10, 1, 1000, &limit, NULL)))
    {
      rtp_request_respond_error_message (request, 400, _ ("limit: Value must be an integer from 1 to 1000."));
      return;
    }
  if (!rtp_history_is_configured (services->history))
    {
      g_autoptr (GError)
        e = g_error_new (RTP_ERROR, RTP_ERROR_UPSTREAM, "%s", _ ("Could not get process variable data from archiver."));
      rtp_request_respond_error (request, e);
      return;
    }
  sr = g_new0 (SearchRequest, 1);
  sr->request = rtp_request_ref (request);
  sr->services = services;
  rtp_request_pause (request);
  rtp_history_search_async (services->history, pattern, regex, (guint) limit, rtp_request_get_cancellable (request),
                            search_done, sr);
}

/* ---- validate ---------------------------------------------------------------- */

static void
exists_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (RtpRequest) request = user_data;
  g_autoptr (GError) error = NULL;
  gboolean exists = FALSE;

  rtp_request_enter (request);
  if (!rtp_archiver_client_exists_finish (RTP_ARCHIVER_CLIENT (source), result, &exists, &error))
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        rtp_request_respond_error (request, error);
    }
  else
    {
      JsonObject *o = json_object_new ();
      json_object_set_boolean_member (o, "pv_string_exists", exists);
      rtp_request_respond_object (request, 200, o);
    }
  rtp_request_leave (request);
}

static void
validate_pv (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;

  rtp_request_pause (request);
  rtp_archiver_client_exists_async (services->archiver, rtp_request_get_param (request, 0),
                                    rtp_request_get_cancellable (request), exists_done, rtp_request_ref (request));
}

void
rtp_routes_data_register (RtpHttpServer *http, RtpServices *services)
{
  rtp_http_server_add_route (http, "POST", "/data/*", RTP_ROUTE_AUTH | RTP_ROUTE_JSON_OPTIONAL, get_data, services);
  rtp_http_server_add_route (http, "POST", "/data/*/*", RTP_ROUTE_AUTH | RTP_ROUTE_JSON_OPTIONAL, get_data, services);
  rtp_http_server_add_route (http, "POST", "/data/*/at", RTP_ROUTE_AUTH | RTP_ROUTE_JSON_OPTIONAL, get_values_at,
                             services);
  rtp_http_server_add_route (http, "GET", "/archiver/pvs", RTP_ROUTE_ADMIN, search_pvs, services);
  rtp_http_server_add_route (http, "GET", "/data/validate_pv_string/*", RTP_ROUTE_ADMIN, validate_pv, services);
  rtp_http_server_add_route (http, "GET", "/validate_pv_string/*", RTP_ROUTE_ADMIN, validate_pv, services);
}
