/* rtp-routes-email.c: /email subscriptions (API.md "Threshold email subscriptions") */
#define G_LOG_DOMAIN "RtpRoutesEmail"

#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-services.h"

#include <errno.h>

JsonObject *
rtp_subscription_to_json (const RtpSubscription *sub)
{
  JsonObject *o = json_object_new ();

  json_object_set_string_member (o, "user_id", sub->user_id);
  json_object_set_string_member (o, "pv_string", sub->pv_string);
  json_object_set_string_member (o, "email", sub->email);
  json_object_set_int_member (o, "threshold_min", sub->threshold_min);
  json_object_set_int_member (o, "threshold_max", sub->threshold_max);
  /* the alarm settings only where they differ from the defaults: the contract's answer stays as it was */
  if (sub->alarm.has_warning_min)
    json_object_set_int_member (o, "warning_min", sub->alarm.warning_min);
  if (sub->alarm.has_warning_max)
    json_object_set_int_member (o, "warning_max", sub->alarm.warning_max);
  if (sub->alarm.delay_s != 0)
    json_object_set_int_member (o, "delay_s", sub->alarm.delay_s);
  if (sub->alarm.latch)
    json_object_set_boolean_member (o, "latch", TRUE);
  if (sub->alarm.notify_clear)
    json_object_set_boolean_member (o, "notify_clear", TRUE);
  return o;
}

/* An integer, or a string holding one (the original service accepted both). */
static RtpFieldState
read_threshold (JsonObject *body, const char *name, gint64 *out)
{
  JsonNode *node = body != NULL ? json_object_get_member (body, name) : NULL;

  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return RTP_FIELD_ABSENT; /* null: the PV's default, as when absent */
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_INT64)
    {
      *out = json_node_get_int (node);
      return RTP_FIELD_SET;
    }
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    {
      char *end = NULL;
      g_autofree char *stripped = g_strstrip (g_strdup (json_node_get_string (node)));
      errno = 0;
      *out = g_ascii_strtoll (stripped, &end, 10);
      if (stripped[0] != '\0' && *end == '\0' && errno == 0)
        return RTP_FIELD_SET;
    }
  return RTP_FIELD_WRONG_TYPE;
}

static void
read_subscription_request (JsonObject *body, RtpSubscriptionRequest *out)
{
  out->email_state = rtp_routes_read_string (body, "email", &out->email);
  out->threshold_min_state = read_threshold (body, "threshold_min", &out->threshold_min);
  out->threshold_max_state = read_threshold (body, "threshold_max", &out->threshold_max);
  rtp_routes_read_alarm_changes (body, &out->alarm);
}

static void
subscribe_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (RtpRequest) request = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpSubscription) sub = NULL;

  rtp_request_enter (request);
  sub = rtp_subscriptions_subscribe_finish (RTP_SUBSCRIPTIONS (source), result, &error);
  if (sub != NULL)
    {
      JsonObject *o = json_object_new ();
      json_object_set_object_member (o, "subscription", rtp_subscription_to_json (sub));
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

  RtpSubscriptionRequest fields = { 0 };

  /* the strings stay in the body, which the request holds until it is answered */
  read_subscription_request (rtp_request_get_body (request), &fields);
  rtp_request_pause (request);
  rtp_subscriptions_subscribe_async (services->subscriptions, rtp_request_get_caller (request),
                                     rtp_request_get_param (request, 0), &fields, NULL, subscribe_done,
                                     rtp_request_ref (request));
}

static void
unsubscribe_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (RtpRequest) request = user_data;
  g_autoptr (GError) error = NULL;

  rtp_request_enter (request);
  if (!rtp_subscriptions_unsubscribe_finish (RTP_SUBSCRIPTIONS (source), result, &error))
    rtp_request_respond_error (request, error);
  else
    {
      JsonObject *o = json_object_new ();
      g_autofree char *message = g_strdup_printf (_ ("Successfully deleted subscription (user_id=%s,pv_string=%s)"),
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
  rtp_subscriptions_unsubscribe_async (services->subscriptions, rtp_request_get_caller (request),
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
  list = rtp_subscriptions_list (services->subscriptions, rtp_request_get_caller (request)->user_id, pv, &error);
  if (list == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  array = json_array_new ();
  for (guint i = 0; i < list->len; i++)
    json_array_add_object_element (array, rtp_subscription_to_json (g_ptr_array_index (list, i)));
  o = json_object_new ();
  json_object_set_array_member (o, "subscriptions", array);
  rtp_request_respond_object (request, 200, o);
}

static char *
iso_time (gint64 us)
{
  g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (us / G_USEC_PER_SEC);
  return g_date_time_format_iso8601 (t);
}

static JsonObject *
episode_to_json (const RtpAlertEpisode *e)
{
  JsonObject *o = json_object_new ();
  JsonArray *mails = json_array_new ();
  g_autofree char *opened = iso_time (e->opened_us);

  json_object_set_string_member (o, "id", e->id);
  json_object_set_string_member (o, "user_id", e->user_id);
  json_object_set_string_member (o, "pv_string", e->pv_string);
  json_object_set_string_member (o, "opened", opened);
  if (e->closed_us != 0)
    {
      g_autofree char *closed = iso_time (e->closed_us);
      json_object_set_string_member (o, "closed", closed);
    }
  else
    json_object_set_null_member (o, "closed");
  json_object_set_string_member (o, "breach_value", e->breach_value);
  json_object_set_int_member (o, "threshold_min", e->threshold_min);
  json_object_set_int_member (o, "threshold_max", e->threshold_max);
  for (guint j = 0; j < e->mails->len; j++)
    {
      const RtpAlertMail *m = g_ptr_array_index (e->mails, j);
      JsonObject *mail = json_object_new ();
      json_object_set_string_member (mail, "recipient", m->recipient);
      json_object_set_string_member (mail, "subject", m->subject);
      json_object_set_boolean_member (mail, "sent", m->sent);
      json_object_set_int_member (mail, "attempts", m->attempts);
      if (m->last_error != NULL)
        json_object_set_string_member (mail, "last_error", m->last_error);
      json_array_add_object_element (mails, mail);
    }
  json_object_set_array_member (o, "mails", mails);
  return o;
}

static void
list_alerts (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const RtpUser *caller = rtp_request_get_caller (request);
  g_autoptr (GError) error = NULL;
  /* own alerts; admins see all */
  g_autoptr (GPtrArray)
    episodes = rtp_alerter_list_episodes (services->alerter, rtp_user_is_admin (caller) ? NULL : caller->user_id,
                                          &error);
  JsonArray *alerts;
  JsonObject *o;

  if (episodes == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  alerts = json_array_new ();
  for (guint i = 0; i < episodes->len; i++)
    json_array_add_object_element (alerts, episode_to_json (g_ptr_array_index (episodes, i)));
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
