/* rtp-routes-alarms.c: /alarms — the alarms of subscriptions, acknowledging and shelving them, and
 * their alarm settings (docs/api.md "Alarms") */
#define G_LOG_DOMAIN "RtpRoutesAlarms"

#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-services.h"
#include "rtp-time.h"

static void
set_time (JsonObject *o, const char *name, GTimeZone *tz, gint64 us)
{
  char buf[64];

  rtp_time_format (tz, us / G_USEC_PER_SEC, (gint32) (us % G_USEC_PER_SEC) * 1000, buf);
  json_object_set_string_member (o, name, buf);
}

JsonObject *
rtp_alarm_to_json (const RtpAlarm *a, GTimeZone *tz)
{
  JsonObject *o = json_object_new ();

  json_object_set_string_member (o, "id", a->id);
  json_object_set_string_member (o, "pv_string", a->pv_string);
  json_object_set_string_member (o, "experiment_short_id", a->experiment_short_id);
  json_object_set_string_member (o, "user_id", a->user_id);
  json_object_set_string_member (o, "severity", a->severity);
  json_object_set_string_member (o, "value", a->value);
  json_object_set_boolean_member (o, "active", a->active);
  set_time (o, "since", tz, a->since_us);
  set_time (o, "last_change", tz, a->last_change_us);
  if (a->ended_us != 0)
    set_time (o, "ended", tz, a->ended_us);
  else
    json_object_set_null_member (o, "ended");
  if (a->acknowledged_by != NULL)
    {
      JsonObject *ack = json_object_new ();
      json_object_set_string_member (ack, "by", a->acknowledged_by);
      set_time (ack, "at", tz, a->acknowledged_us);
      if (a->acknowledge_comment != NULL)
        json_object_set_string_member (ack, "comment", a->acknowledge_comment);
      else
        json_object_set_null_member (ack, "comment");
      json_object_set_object_member (o, "acknowledged", ack);
    }
  else
    json_object_set_null_member (o, "acknowledged");
  if (a->shelved_by != NULL)
    {
      JsonObject *shelf = json_object_new ();
      json_object_set_string_member (shelf, "by", a->shelved_by);
      set_time (shelf, "until", tz, a->shelved_until_us);
      json_object_set_string_member (shelf, "reason", a->shelve_reason);
      json_object_set_object_member (o, "shelved", shelf);
    }
  else
    json_object_set_null_member (o, "shelved");
  json_object_set_boolean_member (o, "latched", a->latched);
  json_object_set_int_member (o, "notifications", a->notifications);
  return o;
}

static GTimeZone *
time_zone (RtpServices *services)
{
  return rtp_history_get_time_zone (services->history);
}

static void
respond_alarm (RtpRequest *request, RtpServices *services, RtpAlarm *alarm, GError *error)
{
  JsonObject *o;

  if (alarm == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  o = json_object_new ();
  json_object_set_object_member (o, "alarm", rtp_alarm_to_json (alarm, time_zone (services)));
  rtp_request_respond_object (request, 200, o);
}

static void
list_alarms (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  static const char *const states[] = { [RTP_ALARM_NOT_ENDED] = "open",
                                        [RTP_ALARM_ACTIVE] = "active",
                                        [RTP_ALARM_UNACKNOWLEDGED] = "unacknowledged",
                                        [RTP_ALARM_SHELVED] = "shelved",
                                        [RTP_ALARM_ALL] = "all" };
  const char *state = rtp_request_get_query (request, "state");
  const char *severity = rtp_request_get_query (request, "severity");
  RtpAlarmFilter filter = { .experiment = rtp_request_get_query (request, "experiment"), .severity = severity };
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) alarms = NULL;
  JsonArray *array;

  if (state != NULL)
    {
      guint i;
      for (i = 0; i < G_N_ELEMENTS (states) && !g_str_equal (state, states[i]); i++)
        ;
      if (i == G_N_ELEMENTS (states))
        {
          rtp_request_respond_error_message (
            request, 400, _ ("state: Value must be one of open, active, unacknowledged, shelved, all."));
          return;
        }
      filter.state = i;
    }
  if (severity != NULL && !g_str_equal (severity, "MINOR") && !g_str_equal (severity, "MAJOR") &&
      !g_str_equal (severity, "INVALID"))
    {
      rtp_request_respond_error_message (request, 400, _ ("severity: Value must be one of MINOR, MAJOR, INVALID."));
      return;
    }
  alarms = rtp_alerter_list_alarms (services->alerter, rtp_request_get_caller (request), &filter, &error);
  if (alarms == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  array = json_array_sized_new (alarms->len);
  for (guint i = 0; i < alarms->len; i++)
    json_array_add_object_element (array, rtp_alarm_to_json (g_ptr_array_index (alarms, i), time_zone (services)));
  rtp_request_respond_object (request, 200, rtp_routes_list_answer ("alarms", array));
}

static void
get_history (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) events = rtp_alerter_get_history (services->alerter, rtp_request_get_caller (request),
                                                          rtp_request_get_param (request, 0), &error);
  JsonArray *array;

  if (events == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  array = json_array_sized_new (events->len);
  for (guint i = 0; i < events->len; i++)
    {
      const RtpAlarmEvent *e = g_ptr_array_index (events, i);
      JsonObject *o = json_object_new ();
      set_time (o, "time", time_zone (services), e->time_us);
      json_object_set_string_member (o, "event", e->event);
      json_object_set_string_member (o, "severity", e->severity);
      json_object_set_string_member (o, "value", e->value);
      if (e->by != NULL)
        json_object_set_string_member (o, "by", e->by);
      if (e->comment != NULL)
        json_object_set_string_member (o, "comment", e->comment);
      if (e->channel != NULL)
        json_object_set_string_member (o, "channel", e->channel);
      json_array_add_object_element (array, o);
    }
  rtp_request_respond_object (request, 200, rtp_routes_list_answer ("history", array));
}

static void
acknowledge (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const RtpUser *caller = rtp_request_get_caller (request);
  const char *comment = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpAlarm) alarm = NULL;
  RtpFieldState state = rtp_routes_read_string (rtp_request_get_body (request), "comment", &comment);

  if (state == RTP_FIELD_WRONG_TYPE)
    {
      g_autoptr (GError) wrong = rtp_error_new_wrong_type ();
      rtp_request_respond_error (request, wrong);
      return;
    }
  alarm = rtp_alerter_acknowledge (services->alerter, caller, caller->user_id, rtp_request_get_param (request, 0),
                                   state == RTP_FIELD_SET ? comment : NULL, &error);
  respond_alarm (request, services, alarm, error);
}

static void
shelve (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const RtpUser *caller = rtp_request_get_caller (request);
  JsonObject *body = rtp_request_get_body (request);
  const char *until = NULL;
  const char *reason = NULL;
  gint64 seconds = 0, until_us = 0;
  RtpFieldState until_state = rtp_routes_read_string (body, "until", &until);
  RtpFieldState seconds_state = rtp_routes_read_integer (body, "seconds", &seconds);
  RtpFieldState reason_state = rtp_routes_read_string (body, "reason", &reason);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpAlarm) alarm = NULL;

  if (until_state == RTP_FIELD_WRONG_TYPE || seconds_state == RTP_FIELD_WRONG_TYPE ||
      reason_state == RTP_FIELD_WRONG_TYPE)
    {
      g_autoptr (GError) wrong = rtp_error_new_wrong_type ();
      rtp_request_respond_error (request, wrong);
      return;
    }
  if (until_state == RTP_FIELD_SET)
    {
      if (!rtp_time_parse (until, time_zone (services), &until_us))
        {
          rtp_request_respond_error_message (request, 400, _ ("until: The time is not in a form this server reads."));
          return;
        }
    }
  else if (seconds_state == RTP_FIELD_SET)
    until_us = g_get_real_time () + (seconds > 0 && seconds < G_MAXINT32 ? seconds : 0) * G_USEC_PER_SEC;
  else
    {
      rtp_request_respond_error_message (request, 400, _ ("until: Give either until or seconds."));
      return;
    }
  alarm = rtp_alerter_shelve (services->alerter, caller, caller->user_id, rtp_request_get_param (request, 0), until_us,
                              reason_state == RTP_FIELD_SET ? reason : NULL, &error);
  respond_alarm (request, services, alarm, error);
}

static void
unshelve (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const RtpUser *caller = rtp_request_get_caller (request);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpAlarm) alarm = rtp_alerter_unshelve (services->alerter, caller, caller->user_id,
                                                     rtp_request_get_param (request, 0), &error);

  respond_alarm (request, services, alarm, error);
}

static void
update_subscription (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  JsonObject *body = rtp_request_get_body (request);
  const char *user_id = NULL;
  RtpAlarmChanges changes = { 0 };
  RtpFieldState user_state = rtp_routes_read_string (body, "user_id", &user_id);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpSubscription) sub = NULL;
  JsonObject *o;

  if (user_state == RTP_FIELD_WRONG_TYPE)
    {
      g_autoptr (GError) wrong = rtp_error_new_wrong_type ();
      rtp_request_respond_error (request, wrong);
      return;
    }
  rtp_routes_read_alarm_changes (body, &changes);
  sub = rtp_subscriptions_update_alarm (services->subscriptions, rtp_request_get_caller (request),
                                        user_state == RTP_FIELD_SET ? user_id : NULL,
                                        rtp_request_get_param (request, 0), &changes, &error);
  if (sub == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  o = json_object_new ();
  json_object_set_object_member (o, "subscription", rtp_subscription_to_json (sub));
  rtp_request_respond_object (request, 200, o);
}

void
rtp_routes_alarms_register (RtpHttpServer *http, RtpServices *services)
{
  rtp_http_server_add_route (http, "GET", "/alarms", RTP_ROUTE_AUTH, list_alarms, services);
  rtp_http_server_add_route (http, "GET", "/alarms/*/history", RTP_ROUTE_AUTH, get_history, services);
  rtp_http_server_add_route (http, "POST", "/alarms/*/acknowledge", RTP_ROUTE_AUTH | RTP_ROUTE_JSON_OPTIONAL,
                             acknowledge, services);
  rtp_http_server_add_route (http, "POST", "/alarms/*/shelve", RTP_ROUTE_AUTH | RTP_ROUTE_JSON, shelve, services);
  rtp_http_server_add_route (http, "DELETE", "/alarms/*/shelve", RTP_ROUTE_AUTH, unshelve, services);
  rtp_http_server_add_route (http, "PUT", "/alarms/subscriptions/*", RTP_ROUTE_AUTH | RTP_ROUTE_JSON,
                             update_subscription, services);
}
