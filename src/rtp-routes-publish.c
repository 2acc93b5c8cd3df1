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
    rtp_request_respond_messages (request, _("Your request has been sent to the MQTT server. It may take a while for the changes to take effect."));
  rtp_request_leave (request);
}

static void
publish_value (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  JsonNode *value = json_object_get_member (rtp_request_get_body (request), "value");
  const RtpUser *caller = rtp_request_get_caller (request);
  g_autofree char *text = NULL;

  /* Deviation (API.md): 0, false and "" are values; only an absent or null value is missing */
  if (value == NULL || JSON_NODE_HOLDS_NULL (value))
    {
      rtp_request_respond_error_message (request, 400, _("The value to be set must be supplied in the JSON body."));
      return;
    }
  text = rtp_setpoints_value_text (value);
  if (text == NULL)
    {
      rtp_request_respond_error_message (request, 400,
                                         _("Some or more values in the JSON body were null or do not correspond to the required column type in the database."));
      return;
    }
  rtp_request_pause (request);
  rtp_setpoints_set_async (services->setpoints, caller, caller->user_id, FALSE, rtp_request_get_param (request, 0),
                           text, NULL, set_done, rtp_request_ref (request));
}

static void
publish_log (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *limit_text = rtp_request_get_query (request, "limit");
  g_autoptr (GError) error = NULL;
  JsonArray *entries;
  JsonObject *o;
  gint64 limit = 100;

  if (limit_text != NULL)
    {
      char *end = NULL;
      limit = g_ascii_strtoll (limit_text, &end, 10);
      if (limit_text[0] == '\0' || *end != '\0' || limit < 1 || limit > 1000)
        {
          rtp_request_respond_error_message (request, 400, _("limit: Value must be a whole number from 1 to 1000."));
          return;
        }
    }
  entries = rtp_setpoints_log (services->setpoints, rtp_request_get_query (request, "pv"), (guint) limit, &error);
  if (entries == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
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
