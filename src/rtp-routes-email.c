/* rtp-routes-email.c: /email subscriptions (API.md "Threshold email subscriptions") */
#define G_LOG_DOMAIN "RtpRoutesEmail"

#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-services.h"

static JsonObject *
subscription_to_json (const RtpSubscription *sub)
{
  JsonObject *o = json_object_new ();

  json_object_set_string_member (o, "user_id", sub->user_id);
  json_object_set_string_member (o, "pv_string", sub->pv_string);
  json_object_set_string_member (o, "email", sub->email);
  json_object_set_int_member (o, "threshold_min", sub->threshold_min);
  json_object_set_int_member (o, "threshold_max", sub->threshold_max);
  return o;
}

static void
subscribe_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (RtpRequest) request = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpSubscription) sub = NULL;

  rtp_request_enter (request);
  sub = rtp_threshold_monitor_subscribe_finish (RTP_THRESHOLD_MONITOR (source), result, &error);
  if (sub != NULL)
    {
      JsonObject *o = json_object_new ();
      json_object_set_object_member (o, "subscription", subscription_to_json (sub));
      rtp_request_respond_object (request, 200, o);
    }
  else
    rtp_request_respond_error (request, error);
  rtp_request_leave (request);
}

static void
subscribe (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;

  rtp_request_pause (request);
  rtp_threshold_monitor_subscribe_async (services->monitor, rtp_request_get_caller (request),
                                         rtp_request_get_param (request, 0), rtp_request_get_body (request), NULL,
                                         subscribe_done, rtp_request_ref (request));
}

static void
unsubscribe_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (RtpRequest) request = user_data;
  g_autoptr (GError) error = NULL;

  rtp_request_enter (request);
  if (!rtp_threshold_monitor_unsubscribe_finish (RTP_THRESHOLD_MONITOR (source), result, &error))
    rtp_request_respond_error (request, error);
  else
    {
      JsonObject *o = json_object_new ();
      g_autofree char *message = g_strdup_printf (_("Successfully deleted subscription (user_id=%s,pv_string=%s)"),
                                                  rtp_request_get_caller (request)->user_id,
                                                  rtp_request_get_param (request, 0));
      json_object_set_string_member (o, "message", message);
      rtp_request_respond_object (request, 200, o);
    }
  rtp_request_leave (request);
}

static void
unsubscribe (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;

  rtp_request_pause (request);
  rtp_threshold_monitor_unsubscribe_async (services->monitor, rtp_request_get_caller (request),
                                           rtp_request_get_param (request, 0), NULL, unsubscribe_done,
                                           rtp_request_ref (request));
}

static void
list_subscriptions (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  g_autoptr (GError) error = NULL;
  const char *pv = NULL;
  g_autoptr (GPtrArray) list = NULL;
  JsonArray *array;
  JsonObject *o;

  /* /email/subscriptions/<pv> filters by the PV */
  if (rtp_request_get_n_params (request) > 0)
    pv = rtp_request_get_param (request, 0);
  list = rtp_threshold_monitor_list (services->monitor, rtp_request_get_caller (request)->user_id, pv, &error);
  if (list == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  array = json_array_new ();
  for (guint i = 0; i < list->len; i++)
    json_array_add_object_element (array, subscription_to_json (g_ptr_array_index (list, i)));
  o = json_object_new ();
  json_object_set_array_member (o, "subscriptions", array);
  rtp_request_respond_object (request, 200, o);
}

static void
list_alerts (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const RtpUser *caller = rtp_request_get_caller (request);
  g_autoptr (GError) error = NULL;
  /* own alerts; admins see all */
  JsonArray *alerts = rtp_threshold_monitor_list_alerts (services->monitor,
                                                         rtp_user_is_admin (caller) ? NULL : caller->user_id, &error);
  JsonObject *o;

  if (alerts == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  o = json_object_new ();
  json_object_set_array_member (o, "alerts", alerts);
  rtp_request_respond_object (request, 200, o);
}

void
rtp_routes_email_register (RtpHttpServer *http, RtpServices *services)
{
  rtp_http_server_add_route (http, "POST", "/email/subscribe/*", RTP_ROUTE_AUTH | RTP_ROUTE_JSON_OPTIONAL, subscribe,
                             services);
  rtp_http_server_add_route (http, "DELETE", "/email/subscribe/*", RTP_ROUTE_AUTH, unsubscribe, services);
  rtp_http_server_add_route (http, "DELETE", "/email/unsubscribe/*", RTP_ROUTE_AUTH, unsubscribe, services);
  rtp_http_server_add_route (http, "GET", "/email/subscriptions", RTP_ROUTE_AUTH, list_subscriptions, services);
  rtp_http_server_add_route (http, "GET", "/email/subscriptions/*", RTP_ROUTE_AUTH, list_subscriptions, services);
  rtp_http_server_add_route (http, "GET", "/email/alerts", RTP_ROUTE_AUTH, list_alerts, services);
}
