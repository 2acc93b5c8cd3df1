/* rtp-routes-publish.c: PUT /publish/<pv> and the audit log (API.md "Setting values over MQTT") */
#define G_LOG_DOMAIN "RtpRoutesPublish"

#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-services.h"

#include <string.h>

typedef struct {
  RtpRequest *request; /* (owned) */
  gboolean verify;
} SetCall;

static void
set_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SetCall *call = user_data;
  g_autoptr (RtpRequest) request = call->request;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpSetpointResult) r = rtp_setpoints_write_finish (RTP_SETPOINTS (source), result, &error);
  gboolean verify = call->verify;

  g_free (call);
  rtp_request_enter (request);
  if (r == NULL)
    rtp_request_respond_error (request, error); /* also when the client went away: libsoup then ends the message */
  else
    {
      /* the contract's answer exactly; with verify, whether the read-back PV confirmed the value */
      JsonObject *o = json_object_new ();
      JsonArray *messages = json_array_new ();
      json_array_add_string_element (
        messages,
        _ ("Your request has been sent to the MQTT server. It may take a while for the changes to take effect."));
      json_object_set_array_member (o, "messages", messages);
      if (verify)
        {
          JsonNode *readback = r->readback != NULL ? json_from_string (r->readback, NULL) : NULL;
          json_object_set_boolean_member (o, "verified", g_str_equal (r->outcome, "verified"));
          if (readback != NULL)
            json_object_set_member (o, "readback", readback);
          else
            json_object_set_null_member (o, "readback");
        }
      rtp_request_respond_object (request, 200, o);
    }
  rtp_request_leave (request);
}

/* verify, tolerance, timeout_s, force. FALSE: answered with a 400 naming the key. */
static gboolean
read_options (RtpRequest *request, JsonObject *body, RtpSetpointOptions *options)
{
  gint64 timeout = 10;
  RtpFieldState state;

  memset (options, 0, sizeof *options);
  state = rtp_routes_read_boolean (body, "verify", &options->verify);
  if (state == RTP_FIELD_WRONG_TYPE)
    {
      rtp_request_respond_error_message (request, 400, _ ("verify: Value must be either true or false."));
      return FALSE;
    }
  state = rtp_routes_read_boolean (body, "force", &options->force);
  if (state == RTP_FIELD_WRONG_TYPE)
    {
      rtp_request_respond_error_message (request, 400, _ ("force: Value must be either true or false."));
      return FALSE;
    }
  state = rtp_routes_read_number (body, "tolerance", &options->tolerance);
  if (state == RTP_FIELD_WRONG_TYPE || (state == RTP_FIELD_SET && !(options->tolerance >= 0)))
    {
      rtp_request_respond_error_message (request, 400, _ ("tolerance: Value must be a number of at least 0."));
      return FALSE;
    }
  state = rtp_routes_read_integer (body, "timeout_s", &timeout);
  if (state == RTP_FIELD_WRONG_TYPE || timeout < 1 || timeout > 60)
    {
      rtp_request_respond_error_message (request, 400, _ ("timeout_s: Value must be a whole number from 1 to 60."));
      return FALSE;
    }
  options->timeout_s = (guint) timeout;
  return TRUE;
}

static void
write_value (RtpRequest *request, RtpServices *services, const char *pv, const RtpSetpointValue *value,
             const RtpSetpointOptions *options, gboolean as_admin)
{
  const RtpUser *caller = rtp_request_get_caller (request);
  SetCall *call = g_new0 (SetCall, 1);

  call->request = rtp_request_ref (request);
  call->verify = options->verify;
  rtp_request_pause (request);
  rtp_setpoints_write_async (services->setpoints, caller, caller->user_id, as_admin, pv, value, options,
                             rtp_request_get_cancellable (request), set_done, call);
}

/* A JSON scalar as the value to set: numbers as JSON wrote them or as the shortest text that
 * reads back the same, strings unquoted, true/false. FALSE for null, arrays and objects. */
static gboolean
read_setpoint_value (JsonNode *node, RtpSetpointValue *out, char **text)
{
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node))
    return FALSE;
  switch (json_node_get_value_type (node))
    {
      case G_TYPE_STRING:
        out->kind = RTP_SETPOINT_TEXT;
        *text = g_strdup (json_node_get_string (node));
        break;
      case G_TYPE_BOOLEAN:
        out->kind = RTP_SETPOINT_BOOLEAN;
        *text = g_strdup (json_node_get_boolean (node) ? "true" : "false");
        break;
      case G_TYPE_INT64:
        out->kind = RTP_SETPOINT_NUMBER;
        out->number = (double) json_node_get_int (node);
        *text = g_strdup_printf ("%" G_GINT64_FORMAT, json_node_get_int (node));
        break;
      case G_TYPE_DOUBLE:
        {
          char buf[G_ASCII_DTOSTR_BUF_SIZE];
          out->kind = RTP_SETPOINT_NUMBER;
          out->number = json_node_get_double (node);
          *text = g_strdup (g_ascii_dtostr (buf, sizeof buf, out->number));
          break;
        }
      default:
        return FALSE;
    }
  out->text = *text;
  return TRUE;
}

static void
publish_value (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  JsonNode *value = json_object_get_member (rtp_request_get_body (request), "value");
  g_autofree char *text = NULL;
  RtpSetpointValue setpoint = { 0 };
  RtpSetpointOptions options;

  /* Deviation (API.md): 0, false and "" are values; only an absent or null value is missing */
  if (value == NULL || JSON_NODE_HOLDS_NULL (value))
    {
      rtp_request_respond_error_message (request, 400, _ ("The value to be set must be supplied in the JSON body."));
      return;
    }
  if (!read_setpoint_value (value, &setpoint, &text))
    {
      g_autoptr (GError) wrong = rtp_error_new_wrong_type ();
      rtp_request_respond_error (request, wrong);
      return;
    }
  if (!read_options (request, rtp_request_get_body (request), &options))
    return;
  write_value (request, services, rtp_request_get_param (request, 0), &setpoint, &options, FALSE);
}

/* POST /publish/log/<id>/revert: the entry's previous value, through the same rules. */
static void
revert_entry (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const RtpUser *caller = rtp_request_get_caller (request);
  const char *id = rtp_request_get_param (request, 0);
  g_autoptr (GError) error = NULL;
  RtpSetpointLogEntry *entry = rtp_setpoints_get_entry (services->setpoints, id, &error);
  RtpSetpointValue value = { .kind = RTP_SETPOINT_TEXT };
  RtpSetpointOptions options = { .reverts = id };

  if (entry == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  if (!rtp_user_is_admin (caller) && g_strcmp0 (entry->user_id, caller->user_id) != 0)
    rtp_request_respond_error_message (request, 403, _ ("Only the writer of an entry and admins can revert it."));
  else if (entry->previous == NULL)
    {
      g_autofree char *message = g_strdup_printf (_ ("The entry %s has no previous value of %s to go back to."), id,
                                                  entry->pv_string);
      rtp_request_respond_error_message (request, 409, message);
    }
  else
    {
      value.text = entry->previous;
      write_value (request, services, entry->pv_string, &value, &options, FALSE);
    }
  rtp_setpoint_log_entry_free (entry);
}

static void
publish_log (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *limit_text = rtp_request_get_query (request, "limit");
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) log = NULL;
  JsonArray *entries;
  JsonObject *o;
  gint64 limit = 100;

  if (limit_text != NULL)
    {
      char *end = NULL;
      limit = g_ascii_strtoll (limit_text, &end, 10);
      if (limit_text[0] == '\0' || *end != '\0' || limit < 1 || limit > 1000)
        {
          rtp_request_respond_error_message (request, 400, _ ("limit: Value must be a whole number from 1 to 1000."));
          return;
        }
    }
  log = rtp_setpoints_log (services->setpoints, rtp_request_get_query (request, "pv"), (guint) limit, &error);
  if (log == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  entries = json_array_new ();
  for (guint i = 0; i < log->len; i++)
    {
      const RtpSetpointLogEntry *e = g_ptr_array_index (log, i);
      JsonObject *entry = json_object_new ();
      g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (e->time_us / G_USEC_PER_SEC);
      g_autofree char *iso = g_date_time_format_iso8601 (t);
      json_object_set_string_member (entry, "time", iso);
      json_object_set_string_member (entry, "user_id", e->user_id);
      json_object_set_string_member (entry, "pv_string", e->pv_string);
      json_object_set_string_member (entry, "value", e->value);
      json_object_set_string_member (entry, "outcome", e->outcome);
      json_object_set_string_member (entry, "id", e->id);
      if (e->previous != NULL)
        json_object_set_string_member (entry, "previous", e->previous);
      else
        json_object_set_null_member (entry, "previous");
      if (e->reason != NULL)
        json_object_set_string_member (entry, "reason", e->reason);
      else
        json_object_set_null_member (entry, "reason");
      if (e->readback != NULL)
        json_object_set_string_member (entry, "readback", e->readback);
      if (e->reverts != NULL)
        json_object_set_string_member (entry, "reverts", e->reverts);
      if (e->snapshot != NULL)
        json_object_set_string_member (entry, "snapshot", e->snapshot);
      json_array_add_object_element (entries, entry);
    }
  o = json_object_new ();
  json_object_set_array_member (o, "entries", entries);
  rtp_request_respond_object (request, 200, o);
}

void
rtp_routes_publish_register (RtpHttpServer *http, RtpServices *services)
{
  rtp_http_server_add_route (http, "GET", "/publish/log", RTP_ROUTE_ADMIN, publish_log, services);
  rtp_http_server_add_route (http, "PUT", "/publish/*", RTP_ROUTE_AUTH | RTP_ROUTE_JSON, publish_value, services);
  rtp_http_server_add_route (http, "POST", "/publish/log/*/revert", RTP_ROUTE_AUTH | RTP_ROUTE_JSON_OPTIONAL,
                             revert_entry, services);
}
