/* rtp-alerter.h: alert episodes of subscribed PVs, their reminders and the mail queue */
#pragma once

#include <gio/gio.h>

#include "rtp-database.h"
#include "rtp-live-values.h"
#include "rtp-mailer.h"
#include "rtp-subscriptions.h"

G_BEGIN_DECLS

typedef struct {
  char *recipient;
  char *subject;
  gboolean sent;
  gint64 attempts;
  char *last_error; /* (nullable) */
} RtpAlertMail;

typedef struct {
  char *id;
  char *user_id;
  char *pv_string;
  gint64 opened_us;
  gint64 closed_us;   /* 0 while open */
  char *breach_value; /* the value that opened it, as text */
  gint64 threshold_min;
  gint64 threshold_max;
  GPtrArray *mails; /* (element-type RtpAlertMail) oldest first */
} RtpAlertEpisode;

void rtp_alert_episode_free (RtpAlertEpisode *episode);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpAlertEpisode, rtp_alert_episode_free)

/* An alarm: one subscription's excursion, from opening until it ended (API.md "Alarms"). */
typedef struct {
  char *id;
  char *user_id;
  char *pv_string;
  char *experiment_short_id;
  char *severity;   /* "MINOR", "MAJOR" or "INVALID" */
  char *value;      /* the last value judged, as text */
  gboolean active;  /* out of band now */
  gboolean latched; /* back in band, kept until acknowledged */
  gint64 since_us;
  gint64 last_change_us;
  gint64 ended_us;       /* 0 while it has not ended */
  char *acknowledged_by; /* (nullable) NULL: not acknowledged */
  gint64 acknowledged_us;
  char *acknowledge_comment; /* (nullable) */
  char *shelved_by;          /* (nullable) NULL: not shelved */
  gint64 shelved_until_us;
  char *shelve_reason; /* (nullable) */
  gint64 notifications;
} RtpAlarm;

void rtp_alarm_free (RtpAlarm *alarm);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpAlarm, rtp_alarm_free)

/* One transition of an alarm's history. */
typedef struct {
  gint64 time_us;
  char *event; /* opened escalated deescalated cleared acknowledged shelved unshelved ended notified */
  char *severity;
  char *value;   /* (nullable) */
  char *by;      /* (nullable) user_id, or "dbus:uid=N" */
  char *comment; /* (nullable) */
  char *channel; /* (nullable) email, webhook or mqtt for "notified" */
} RtpAlarmEvent;

void rtp_alarm_event_free (RtpAlarmEvent *event);

typedef enum {
  RTP_ALARM_NOT_ENDED, /* the default view */
  RTP_ALARM_ACTIVE,
  RTP_ALARM_UNACKNOWLEDGED,
  RTP_ALARM_SHELVED,
  RTP_ALARM_ALL,
} RtpAlarmState;

typedef struct {
  const char *experiment; /* (nullable) */
  const char *severity;   /* (nullable) */
  RtpAlarmState state;
} RtpAlarmFilter;

#define RTP_TYPE_ALERTER (rtp_alerter_get_type ())
G_DECLARE_FINAL_TYPE (RtpAlerter, rtp_alerter, RTP, ALERTER, GObject)

typedef struct {
  gint64 renotify_s;          /* 0: never remind */
  gint64 max_shelve_s;        /* RTP_ALARM_MAX_SHELVE_S */
  const char *channel_prefix; /* MQTT_CHANNEL_PREFIX: transitions go to <prefix>/alarms/<experiment> */
  const char *webhook_url;    /* (nullable) RTP_ALERT_WEBHOOK_URL */
  const char *webhook_secret; /* (nullable) RTP_ALERT_WEBHOOK_SECRET: X-Rtp-Signature */
  double hysteresis;
  double interval_s;        /* RTP_MONITOR_INTERVAL */
  gint64 silence_intervals; /* RTP_ALARM_SILENCE_INTERVALS: not heard of for so many intervals is INVALID (0: never) */
  GTimeZone *time_zone;     /* for times in mails (the history service's ARCHIVER_TIMEZONE) */
  const char *threshold_unit; /* THRESHOLD_UNIT */
  RtpMailSettings mail;       /* mail.url or mail.from NULL: no mail (and no alerting without a webhook) */
} RtpAlertSettings;

/* Judges every value @live emits for a subscribed PV, on the one instance that leads: a value
 * outside [min, max] opens an alert episode and mails the subscriber once; it closes at
 * min + h <= value <= max - h; reminders every renotify_s while open. Emits
 * "threshold-breached" (pv, value, min, max) on each opening. With no mail settings it only
 * says so in the log.
 * Returns: (transfer full) */
RtpAlerter *rtp_alerter_new (RtpDatabase *db, RtpLiveValues *live, RtpSubscriptions *subscriptions,
                             const RtpAlertSettings *settings);
gboolean rtp_alerter_is_on (RtpAlerter *self);
/* Judges one value (from any source); exposed for tests. */
void rtp_alerter_handle_value (RtpAlerter *self, const char *pv_string, double value);
/* The alarms @caller may see (own ones and those of the experiments it is assigned to; admins all),
 * newest first, at most 1000.
 * Returns: (transfer full) (element-type RtpAlarm) (nullable): NULL on a database error */
GPtrArray *rtp_alerter_list_alarms (RtpAlerter *self, const RtpUser *caller, const RtpAlarmFilter *filter,
                                    GError **error);
/* One alarm, when @caller may see it (404 otherwise, as if it did not exist: 403 only for acting).
 * Returns: (transfer full) (nullable) */
RtpAlarm *rtp_alerter_get_alarm (RtpAlerter *self, const RtpUser *caller, const char *id, GError **error);
/* Returns: (transfer full) (element-type RtpAlarmEvent) (nullable) */
GPtrArray *rtp_alerter_get_history (RtpAlerter *self, const RtpUser *caller, const char *id, GError **error);
/* Acting on an alarm: the subscriber, a user assigned to its experiment, or an admin (else 403);
 * 404 unknown, 409 when it has ended. @actor is what the history records. An acknowledged alarm
 * that is back in band ends.
 * Returns: (transfer full) (nullable): the alarm as it is now */
RtpAlarm *rtp_alerter_acknowledge (RtpAlerter *self, const RtpUser *caller, const char *actor, const char *id,
                                   const char *comment, GError **error);
/* @until_us in the future and at most max_shelve_s ahead; @reason required. */
/* Returns: (transfer full) */
RtpAlarm *rtp_alerter_shelve (RtpAlerter *self, const RtpUser *caller, const char *actor, const char *id,
                              gint64 until_us, const char *reason, GError **error);
/* Returns: (transfer full) */
RtpAlarm *rtp_alerter_unshelve (RtpAlerter *self, const RtpUser *caller, const char *actor, const char *id,
                                GError **error);
/* Ends the open alarms whose subscription is gone (unsubscribed, the user unassigned or deleted). */
void rtp_alerter_sweep (RtpAlerter *self);

/* Episodes with their mails, newest first (at most 1000); all of them when @user_id is NULL.
 * Returns: (transfer full) (element-type RtpAlertEpisode) (nullable): NULL on a database error */
GPtrArray *rtp_alerter_list_episodes (RtpAlerter *self, const char *user_id, GError **error);

G_END_DECLS
