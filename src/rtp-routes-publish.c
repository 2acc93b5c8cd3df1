/* rtp-routes-publish.c: PUT /publish/<pv> and the audit log (API.md "Setting values over MQTT") */
#define G_LOG_DOMAIN "RtpRoutesPublish"

#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-services.h"

static void
set_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (RtpRequest) request = user_data;
  g_autoptr (GError) error = NULL;

  rtp_request_enter (request);
  if (!rtp_setpoints_set_finish (RTP_SETPOINTS (source), result, &error))
    rtp_request_respond_error (request, error);
  else
    rtp_request_respond_messages (
      request,
      _ ("Your request has been sent to the MQTT server. It may take a while for the changes to take effect."));
  rtp_request_leave (request);
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
  const RtpUser *caller = rtp_request_get_caller (request);
  g_autofree char *text = NULL;
  RtpSetpointValue setpoint = { 0 };

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
  rtp_request_pause (request);
  rtp_setpoints_set_async (services->setpoints, caller, caller->user_id, FALSE, rtp_request_get_param (request, 0),
                           &setpoint, NULL, set_done, rtp_request_ref (request));
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
}
