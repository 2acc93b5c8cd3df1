/* rtp-routes-health.c: GET /health (liveness) and GET /ready (readiness) for load balancers */
#define G_LOG_DOMAIN "RtpRoutesHealth"

#include "rtp-services.h"

/* Liveness: the process serves requests. Never touches the database. */
static void
health (RtpRequest *request, gpointer user_data)
{
  JsonObject *o = json_object_new ();

  json_object_set_string_member (o, "status", "ok");
  json_object_set_string_member (o, "version", RTP_VERSION);
  rtp_request_respond_object (request, 200, o);
}

static void
checked (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (RtpRequest) request = user_data;
  g_auto (GStrv) states = rtp_health_check_finish (RTP_HEALTH (source), result, NULL);
  JsonObject *o = json_object_new ();
  JsonObject *checks = json_object_new ();
  gboolean database_ok = states != NULL && g_str_equal (states[RTP_CHECK_DATABASE], "ok");
  gboolean all_ok = database_ok;

  for (guint i = 0; states != NULL && i < RTP_N_CHECKS; i++)
    {
      json_object_set_string_member (checks, rtp_check_name (i), states[i]);
      if (g_str_has_prefix (states[i], "error"))
        all_ok = FALSE;
    }
  /* 503 only without the database: the others take single features away */
  json_object_set_string_member (o, "status", !database_ok ? "unavailable" : all_ok ? "ok" : "degraded");
  json_object_set_object_member (o, "checks", checks);
  rtp_request_enter (request);
  rtp_request_respond_object (request, database_ok ? 200 : 503, o);
  rtp_request_leave (request);
}

static void
ready (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;

  rtp_request_pause (request);
  rtp_health_check_async (services->health, NULL, checked, rtp_request_ref (request));
}

void
rtp_routes_health_register (RtpHttpServer *http, RtpServices *services)
{
  rtp_http_server_add_route (http, "GET", "/health", RTP_ROUTE_PUBLIC, health, services);
  rtp_http_server_add_route (http, "GET", "/ready", RTP_ROUTE_PUBLIC, ready, services);
}
