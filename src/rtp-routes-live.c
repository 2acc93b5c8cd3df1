/* rtp-routes-live.c: GET /live/<short_id> — new values of an experiment's PVs over a WebSocket
 *
 * Browsers cannot set headers on WebSockets: the token comes as the second offered
 * subprotocol (["rtp.v1", "<token>"]; the server answers "rtp.v1") or as ?token= (never
 * logged). It is checked, with the assignment, by an ordinary handler on the same path,
 * which libsoup runs before the handshake. Values come from the live values (each
 * viewer makes its experiment's PVs watched); a heartbeat every HEARTBEAT_S seconds. libsoup
 * queues without bound behind a full socket, so a client whose socket send buffer is found
 * mostly full at MAX_FULL_SENDS sends in a row is dropped rather than buffered. Access is
 * checked again whenever the database's change stamp moves (by any instance) and at least every
 * RECHECK_S seconds: a viewer who was unassigned, deleted or whose token died is closed with
 * 4403 (4401 when the token is no longer accepted). */
#define G_LOG_DOMAIN "RtpRoutesLive"

#include "rtp-http-listener.h"
#include "rtp-metrics.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-services.h"
#include "rtp-time.h"

#include <linux/sockios.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define HEARTBEAT_S 15
#define MAX_FULL_SENDS 8
#define RECHECK_S 30
#define CLOSE_TOKEN_REFUSED 4401
#define CLOSE_ACCESS_REVOKED 4403

typedef struct {
  char *short_id;
  char *user_id;
  char *language;
  char *token;
} LiveAuth;

static void
live_auth_free (LiveAuth *a)
{
  g_free (a->short_id);
  g_free (a->user_id);
  g_free (a->language);
  g_free (a->token);
  g_free (a);
}

/* The token: the offered subprotocol that is not ours, else ?token=. */
static char *
find_token (SoupServerMessage *msg, GHashTable *query)
{
  const char *offered = soup_message_headers_get_list (soup_server_message_get_request_headers (msg),
                                                       "Sec-WebSocket-Protocol");
  if (offered != NULL)
    {
      g_auto (GStrv) parts = g_strsplit (offered, ",", 8);
      for (guint i = 0; parts[i] != NULL; i++)
        {
          const char *p = g_strstrip (parts[i]);
          if (p[0] != '\0' && !g_str_equal (p, "rtp.v1"))
            return g_strdup (p);
        }
    }
  if (query != NULL && g_hash_table_lookup (query, "token") != NULL)
    return g_strdup (g_hash_table_lookup (query, "token"));
  return NULL;
}

static void
live_check (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer user_data)
{
  RtpServices *services = user_data;
  g_auto (GStrv) segments = rtp_http_split_path (path);
  g_autofree char *token = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpUser) user = NULL;
  g_autoptr (RtpExperiment) experiment = NULL;
  const char *language = rtp_i18n_negotiate (
    soup_message_headers_get_one (soup_server_message_get_request_headers (msg), "Accept-Language"));
  LiveAuth *auth;

  if (segments == NULL || g_strv_length (segments) != 2)
    {
      rtp_http_server_answer_error (services->http, msg, 404,
                                    rtp_i18n_translate (language,
                                                        N_ ("The requested URL was not found on the server.")));
      return;
    }
  if (!g_str_equal (soup_server_message_get_method (msg), "GET"))
    {
      soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Allow", "GET");
      rtp_http_server_answer_error (services->http, msg, 405,
                                    rtp_i18n_translate (language,
                                                        N_ ("The method is not allowed for the requested URL.")));
      return;
    }
  /* the token arrives as a subprotocol or ?token=, and is checked as every route's */
  token = find_token (msg, query);
  user = rtp_http_server_authenticate (services->http, token, &error);
  if (user == NULL)
    {
      rtp_http_server_answer_error (services->http, msg, rtp_error_to_http_status (error),
                                    rtp_i18n_translate (language, error->message));
      return;
    }
  language = user->preferred_language;
  experiment = rtp_experiment_store_get_experiment (services->experiments, segments[1], &error);
  if (experiment == NULL)
    {
      rtp_http_server_answer_error (services->http, msg, rtp_error_to_http_status (error), error->message);
      return;
    }
  if (!rtp_experiment_store_check_access (services->experiments, user, segments[1], RTP_ACCESS_WATCH, &error))
    {
      /* no request locale here: the message is English, translated for the caller */
      rtp_http_server_answer_error (services->http, msg, rtp_error_to_http_status (error),
                                    rtp_i18n_translate (language, error->message));
      return;
    }
  if (soup_message_headers_get_one (soup_server_message_get_request_headers (msg), "Upgrade") == NULL)
    {
      rtp_http_server_answer_error (services->http, msg, 400,
                                    rtp_i18n_translate (language, N_ ("This endpoint speaks WebSocket.")));
      return;
    }
  auth = g_new0 (LiveAuth, 1);
  auth->short_id = g_strdup (segments[1]);
  auth->user_id = g_strdup (user->user_id);
  auth->language = g_strdup (language);
  auth->token = g_steal_pointer (&token);
  g_object_set_data_full (G_OBJECT (msg), "rtp-live-auth", auth, (GDestroyNotify) live_auth_free);
  /* no status: libsoup goes on with the handshake */
}

typedef struct {
  RtpServices *services;
  SoupWebsocketConnection *conn; /* (owned) */
  GPtrArray *pvs;                /* (owned) */
  GTimeZone *tz;                 /* (owned) */
  gulong value_id;
  gulong alarm_id;
  gulong closed_id;
  guint heartbeat_id;
  guint full_sends;
  GSocket *socket; /* (owned) (nullable) the client's connection */
  char *user_id;
  char *short_id;
  char *token;           /* (owned) checked again when the database changes */
  guint64 checked_stamp; /* the change stamp at the last check */
  gint64 checked_us;
  guint recheck_id;
} Viewer;

static void
viewer_free (Viewer *v)
{
  rtp_metrics_gauge_add (RTP_GAUGE_LIVE_VIEWERS, -1);
  /* A connection may finish closing after the server stopped and the live values are gone (libsoup
   * waits up to 5 s for the close frame of a client that does not read): nothing to undo there. */
  if (v->services->live != NULL)
    {
      if (v->value_id != 0)
        g_clear_signal_handler (&v->value_id, v->services->live);
      for (guint i = 0; i < v->pvs->len; i++)
        rtp_live_values_unwatch (v->services->live, g_ptr_array_index (v->pvs, i));
    }
  if (v->services->alerter != NULL && v->alarm_id != 0)
    g_clear_signal_handler (&v->alarm_id, v->services->alerter);
  g_clear_handle_id (&v->heartbeat_id, g_source_remove);
  g_clear_handle_id (&v->recheck_id, g_source_remove);
  g_ptr_array_unref (v->pvs);
  g_time_zone_unref (v->tz);
  g_free (v->user_id);
  g_free (v->short_id);
  g_free (v->token);
  g_clear_object (&v->socket);
  g_object_unref (v->conn);
  g_free (v);
}

/* Whether the kernel's send buffer for the client is mostly full: it does not read. */
static gboolean
socket_full (Viewer *v)
{
  GSocket *socket = v->socket;
  int unsent = 0;
  gint sndbuf = 0;

  if (socket == NULL || ioctl (g_socket_get_fd (socket), SIOCOUTQ, &unsent) != 0 ||
      !g_socket_get_option (socket, SOL_SOCKET, SO_SNDBUF, &sndbuf, NULL) || sndbuf <= 0)
    return FALSE;
  return unsent >= sndbuf / 4; /* the kernel reports twice the usable size */
}

static void
send_text (Viewer *v, const char *text)
{
  if (soup_websocket_connection_get_state (v->conn) != SOUP_WEBSOCKET_STATE_OPEN)
    return;
  v->full_sends = socket_full (v) ? v->full_sends + 1 : 0;
  if (v->full_sends >= MAX_FULL_SENDS)
    {
      g_message ("dropping a live viewer (%s) that does not read", v->user_id);
      soup_websocket_connection_close (v->conn, SOUP_WEBSOCKET_CLOSE_POLICY_VIOLATION, "too slow");
      return;
    }
  soup_websocket_connection_send_text (v->conn, text);
}

/* @value is JSON text already checked by the live values (a finite number, or an archiver value
 * validated by rtp_json_normalize()): it is written as it is, never re-parsed. */
static void
on_value (RtpLiveValues *live, const char *pv, gint64 time_us, const char *value, gpointer user_data)
{
  Viewer *v = user_data;
  g_autoptr (GString) text = NULL;
  g_autoptr (JsonNode) name = NULL;
  g_autofree char *name_text = NULL;
  char when[64];

  if (!g_ptr_array_find_with_equal_func (v->pvs, pv, g_str_equal, NULL))
    return;
  rtp_time_format (v->tz, time_us / G_USEC_PER_SEC, (gint32) (time_us % G_USEC_PER_SEC) * 1000, when);
  name = json_node_init_string (json_node_alloc (), pv);
  name_text = json_to_string (name, FALSE);
  text = g_string_new ("{\"pv\":");
  g_string_append_printf (text, "%s,\"time\":\"%s\",\"data\":%s}", name_text, when, value);
  send_text (v, text->str);
}

static void
send_alarm (Viewer *v, const RtpAlarm *alarm)
{
  g_autoptr (JsonObject) o = json_object_new ();
  g_autoptr (JsonNode) node = NULL;
  g_autofree char *text = NULL;

  json_object_set_object_member (o, "alarm", rtp_alarm_to_json (alarm, v->tz));
  node = json_node_init_object (json_node_alloc (), o);
  text = json_to_string (node, FALSE);
  send_text (v, text);
}

/* Every transition of an alarm of this experiment's PVs, as the alarm is now. */
static void
on_alarm_changed (RtpAlerter *alerter, const char *id, const char *pv, const char *severity, const char *event,
                  gpointer user_data)
{
  Viewer *v = user_data;
  g_autoptr (RtpUser) viewer = NULL;
  g_autoptr (RtpAlarm) alarm = NULL;

  if (!g_ptr_array_find_with_equal_func (v->pvs, pv, g_str_equal, NULL))
    return;
  viewer = rtp_user_manager_get (v->services->users, v->user_id, NULL);
  if (viewer != NULL && (alarm = rtp_alerter_get_alarm (alerter, viewer, id, NULL)) != NULL)
    send_alarm (v, alarm);
}

/* Whether the viewer may still watch: its token accepted, the experiment there, it assigned. */
static gboolean
recheck (gpointer user_data)
{
  Viewer *v = user_data;
  RtpServices *services = v->services;
  guint64 stamp;
  gint64 now = g_get_monotonic_time ();
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpUser) user = NULL;

  if (services->db == NULL || services->users == NULL || services->experiments == NULL)
    {
      /* the server stopped; the connection only finishes closing (see viewer_free) */
      v->recheck_id = 0;
      return G_SOURCE_REMOVE;
    }
  stamp = rtp_database_get_change_stamp (services->db);

  if (stamp != 0 && stamp == v->checked_stamp && now - v->checked_us < (gint64) RECHECK_S * G_USEC_PER_SEC)
    return G_SOURCE_CONTINUE;
  user = rtp_user_manager_verify_token (services->users, v->token, &error);
  if (user == NULL && !g_error_matches (error, RTP_ERROR, RTP_ERROR_FORBIDDEN))
    return G_SOURCE_CONTINUE; /* the database is away: ask again at the next tick */
  if (user == NULL)
    {
      g_message ("closing the live view of %s on %s: the token is no longer accepted", v->user_id, v->short_id);
      v->recheck_id = 0;
      soup_websocket_connection_close (v->conn, CLOSE_TOKEN_REFUSED, "access revoked");
      return G_SOURCE_REMOVE;
    }
  if (!rtp_experiment_store_check_access (services->experiments, user, v->short_id, RTP_ACCESS_WATCH, &error))
    {
      if (!g_error_matches (error, RTP_ERROR, RTP_ERROR_FORBIDDEN))
        return G_SOURCE_CONTINUE; /* the database is away: ask again at the next tick */
      g_message ("closing the live view of %s on %s: access revoked", v->user_id, v->short_id);
      v->recheck_id = 0;
      soup_websocket_connection_close (v->conn, CLOSE_ACCESS_REVOKED, "access revoked");
      return G_SOURCE_REMOVE;
    }
  v->checked_stamp = stamp;
  v->checked_us = now;
  return G_SOURCE_CONTINUE;
}

static gboolean
heartbeat (gpointer user_data)
{
  Viewer *v = user_data;
  g_autofree char *text = g_strdup_printf ("{\"heartbeat\":%" G_GINT64_FORMAT "}", g_get_real_time () / G_USEC_PER_SEC);
  send_text (v, text);
  return G_SOURCE_CONTINUE;
}

static void
on_closed (SoupWebsocketConnection *conn, gpointer user_data)
{
  Viewer *v = user_data;
  g_clear_signal_handler (&v->closed_id, conn);
  viewer_free (v);
}

static void
live_connected (SoupServer *server, SoupServerMessage *msg, const char *path, SoupWebsocketConnection *conn,
                gpointer user_data)
{
  RtpServices *services = user_data;
  LiveAuth *auth = g_object_get_data (G_OBJECT (msg), "rtp-live-auth");
  g_autoptr (RtpExperiment) experiment = NULL;
  Viewer *v;

  if (auth == NULL)
    {
      soup_websocket_connection_close (conn, SOUP_WEBSOCKET_CLOSE_POLICY_VIOLATION, NULL);
      return;
    }
  experiment = rtp_experiment_store_get_experiment (services->experiments, auth->short_id, NULL);
  v = g_new0 (Viewer, 1);
  rtp_metrics_gauge_add (RTP_GAUGE_LIVE_VIEWERS, 1);
  v->services = services;
  v->conn = g_object_ref (conn);
  /* the connection's io stream is libsoup's own wrapper: the socket comes from the message */
  v->socket = rtp_http_message_get_socket (msg) != NULL ? g_object_ref (rtp_http_message_get_socket (msg)) : NULL;
  v->user_id = g_strdup (auth->user_id);
  v->short_id = g_strdup (auth->short_id);
  v->token = g_strdup (auth->token);
  v->checked_stamp = rtp_database_get_change_stamp (services->db);
  v->checked_us = g_get_monotonic_time ();
  v->recheck_id = g_timeout_add_seconds (1, recheck, v);
  v->pvs = experiment != NULL ? g_ptr_array_ref (experiment->pv_strings) : g_ptr_array_new_with_free_func (g_free);
  v->tz = g_time_zone_ref (rtp_history_get_time_zone (services->history));
  for (guint i = 0; i < v->pvs->len; i++)
    rtp_live_values_watch (services->live, g_ptr_array_index (v->pvs, i));
  v->value_id = g_signal_connect (services->live, "value", G_CALLBACK (on_value), v);
  v->alarm_id = g_signal_connect (services->alerter, "alarm-changed", G_CALLBACK (on_alarm_changed), v);
  v->closed_id = g_signal_connect (conn, "closed", G_CALLBACK (on_closed), v);
  v->heartbeat_id = g_timeout_add_seconds (HEARTBEAT_S, heartbeat, v);
  /* what is known already, at once */
  for (guint i = 0; i < v->pvs->len; i++)
    {
      gint64 t;
      g_autofree char *value = NULL;
      if (rtp_live_values_get_latest (services->live, g_ptr_array_index (v->pvs, i), &t, &value))
        on_value (services->live, g_ptr_array_index (v->pvs, i), t, value, v);
    }
  /* and the alarms that have not ended */
  {
    g_autoptr (RtpUser) viewer = rtp_user_manager_get (services->users, v->user_id, NULL);
    RtpAlarmFilter filter = { .experiment = v->short_id, .state = RTP_ALARM_NOT_ENDED };
    g_autoptr (GPtrArray) alarms = viewer != NULL ? rtp_alerter_list_alarms (services->alerter, viewer, &filter, NULL)
                                                  : NULL;
    for (guint i = 0; alarms != NULL && i < alarms->len; i++)
      send_alarm (v, g_ptr_array_index (alarms, i));
  }
  g_debug ("live viewer %s on %s (%u PVs)", v->user_id, auth->short_id, v->pvs->len);
}

void
rtp_routes_live_register (RtpHttpServer *http, RtpServices *services)
{
  SoupServer *soup = rtp_http_server_get_soup_server (http);
  static const char *protocols[] = { "rtp.v1", NULL };

  soup_server_add_handler (soup, "/live", live_check, services, NULL);
  rtp_http_server_guard_path (http, "/live"); /* libsoup hands /live to these handlers, not the server's */
  soup_server_add_websocket_handler (soup, "/live", NULL, (char **) protocols, live_connected, services, NULL);
}
