/* rtp-routes-health.c: what operators and scripts ask of the service itself — GET /health (liveness),
 * GET /ready (readiness), GET /metrics (Prometheus) and GET /openapi.json (the API's description) */
#define G_LOG_DOMAIN "RtpRoutesHealth"

#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-metrics.h"
#include "rtp-services.h"

#include <string.h>

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

/* Whether @given equals @expected, in a time that does not tell how much of it did. */
static gboolean
same_secret (const char *given, const char *expected)
{
  gsize a = strlen (given), b = strlen (expected);
  guint8 diff = a != b;

  for (gsize i = 0; i < b; i++)
    diff |= (guint8) (given[i % MAX (a, 1)] ^ expected[i]);
  return diff == 0 && a > 0;
}

/* Who may read /metrics: anyone with RTP_METRICS_PUBLIC=1, a scraper with `Authorization: Bearer
 * <RTP_METRICS_TOKEN>`, or an admin's access token. */
static gboolean
may_read_metrics (RtpRequest *request, RtpServices *services)
{
  const char *authorization = rtp_request_get_header (request, "Authorization");
  const char *token = rtp_request_get_header (request, "x-access-tokens");

  if (services->metrics_public)
    return TRUE;
  if (authorization != NULL && g_ascii_strncasecmp (authorization, "Bearer ", 7) == 0)
    {
      if (services->metrics_token != NULL && same_secret (authorization + 7, services->metrics_token))
        return TRUE;
      rtp_request_respond_error_message (request, 403, _ ("The metrics token sent is not accepted."));
      return FALSE;
    }
  if (token != NULL && token[0] != '\0')
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (RtpUser) caller = rtp_http_server_authenticate (services->http, token, &error);
      if (caller == NULL)
        {
          rtp_request_respond_error (request, error);
          return FALSE;
        }
      if (rtp_user_is_admin (caller))
        return TRUE;
      rtp_request_respond_error_message (request, 403, _ ("Only administrators are allowed to access this endpoint."));
      return FALSE;
    }
  rtp_request_respond_error_message (request, 401,
                                     _ (
                                       "Access to the metrics requires an admin's access-token or the metrics token."));
  return FALSE;
}

static void
metrics (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  g_autoptr (GBytes) body = NULL;
  GString *out;
  gsize len;

  if (!may_read_metrics (request, services))
    return;
  out = g_string_sized_new (16384);
  rtp_metrics_gauge_set (RTP_GAUGE_MQTT_CONNECTED, rtp_mqtt_publisher_get_connected (services->mqtt) ? 1 : 0);
  rtp_http_server_write_metrics (services->http, out);
  rtp_metrics_write (out);
  len = out->len;
  body = g_bytes_new_take (g_string_free (out, FALSE), len);
  rtp_request_respond_bytes (request, 200, "text/plain; version=0.0.4; charset=utf-8", body);
}

static void
openapi (RtpRequest *request, gpointer user_data)
{
  g_autoptr (GBytes)
    document = g_resources_lookup_data ("/org/realtimeplot/Server/openapi.json", G_RESOURCE_LOOKUP_FLAGS_NONE, NULL);

  rtp_request_respond_bytes (request, 200, "application/json", document);
}

void
rtp_routes_health_register (RtpHttpServer *http, RtpServices *services)
{
  rtp_http_server_add_route (http, "GET", "/health", RTP_ROUTE_PUBLIC, health, services);
  rtp_http_server_add_route (http, "GET", "/ready", RTP_ROUTE_PUBLIC, ready, services);
  rtp_http_server_add_route (http, "GET", "/metrics", RTP_ROUTE_PUBLIC, metrics, services);
  rtp_http_server_add_route (http, "GET", "/openapi.json", RTP_ROUTE_PUBLIC, openapi, services);
}
