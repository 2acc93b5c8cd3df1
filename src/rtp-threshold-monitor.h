/* rtp-threshold-monitor.h: threshold subscriptions, their MQTT announcements, the outbox */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "rtp-archiver-client.h"
#include "rtp-database.h"
#include "rtp-mailer.h"
#include "rtp-experiment-store.h"
#include "rtp-mqtt-publisher.h"
#include "rtp-user-manager.h"

G_BEGIN_DECLS

typedef struct {
  char *user_id;
  char *pv_string;
  char *email;
  gint64 threshold_min;
  gint64 threshold_max;
} RtpSubscription;

void rtp_subscription_free (RtpSubscription *sub);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpSubscription, rtp_subscription_free)

#define RTP_TYPE_THRESHOLD_MONITOR (rtp_threshold_monitor_get_type ())
G_DECLARE_FINAL_TYPE (RtpThresholdMonitor, rtp_threshold_monitor, RTP, THRESHOLD_MONITOR, GObject)

typedef struct {
  const char *channel_prefix;  /* MQTT_CHANNEL_PREFIX */
  const char *email_channel;   /* EMAIL_MQTT_CHANNEL */
  const char *threshold_unit;  /* THRESHOLD_UNIT */
} RtpMonitorSettings;

RtpThresholdMonitor *rtp_threshold_monitor_new (RtpDatabase *db, RtpUserManager *users, RtpExperimentStore *experiments,
                                                RtpMqttPublisher *mqtt, const RtpMonitorSettings *settings);

/* Subscribing: checks (PV 404, assignment 403, fields 400 — missing ones as one error naming
 * each (rtp_error_new_fields) —, duplicate 409), announces, and stores only after the broker's ack. */
void             rtp_threshold_monitor_subscribe_async (RtpThresholdMonitor *self, const RtpUser *caller,
                                                        const char *pv_string, JsonObject *body,
                                                        GCancellable *cancellable, GAsyncReadyCallback callback,
                                                        gpointer user_data);
RtpSubscription *rtp_threshold_monitor_subscribe_finish (RtpThresholdMonitor *self, GAsyncResult *result,
                                                         GError **error);
void             rtp_threshold_monitor_unsubscribe_async (RtpThresholdMonitor *self, const RtpUser *caller,
                                                          const char *pv_string, GCancellable *cancellable,
                                                          GAsyncReadyCallback callback, gpointer user_data);
gboolean         rtp_threshold_monitor_unsubscribe_finish (RtpThresholdMonitor *self, GAsyncResult *result,
                                                           GError **error);
GPtrArray       *rtp_threshold_monitor_list (RtpThresholdMonitor *self, const char *user_id, const char *pv_string,
                                             GError **error);
guint            rtp_threshold_monitor_outbox_length (RtpThresholdMonitor *self);
/* Sends what waits in the outbox (also done on reconnect and by a timer). */
void             rtp_threshold_monitor_flush_outbox (RtpThresholdMonitor *self);

typedef struct {
  RtpArchiverClient *archiver;      /* (nullable) poll the latest samples */
  const char *value_topic_prefix;   /* (nullable) or read values from MQTT topics */
  double interval_s;
  gint64 renotify_s;                /* 0: never remind */
  double hysteresis;
  GTimeZone *time_zone;             /* for times in mails (the history service's ARCHIVER_TIMEZONE) */
  RtpMailSettings mail;             /* mail.url NULL: alerting off */
} RtpAlertSettings;

/* Starts watching every subscribed PV: a value outside [min, max] opens an alert episode
 * and mails the subscriber once; it closes at min + h <= value <= max - h; reminders every
 * renotify_s while open. Emits "threshold-breached" (pv, value, min, max) on each opening. */
void             rtp_threshold_monitor_start_alerting (RtpThresholdMonitor *self, const RtpAlertSettings *settings);
/* Feeds one value (from any source); exposed for the MQTT value topics and tests. */
void             rtp_threshold_monitor_handle_value (RtpThresholdMonitor *self, const char *pv_string, double value);
/* Live viewers: PVs watched (polled) while at least one viewer wants them. Every new value of a
 * watched or subscribed PV is emitted as "value" (pv, time in µs, value's JSON text). */
void             rtp_threshold_monitor_watch (RtpThresholdMonitor *self, const char *pv_string);
void             rtp_threshold_monitor_unwatch (RtpThresholdMonitor *self, const char *pv_string);
gboolean         rtp_threshold_monitor_get_latest (RtpThresholdMonitor *self, const char *pv_string, gint64 *time_us,
                                                   const char **value);

/* Episodes with their mails, newest first; all of them when @user_id is NULL. */
JsonArray       *rtp_threshold_monitor_list_alerts (RtpThresholdMonitor *self, const char *user_id, GError **error);

G_END_DECLS
