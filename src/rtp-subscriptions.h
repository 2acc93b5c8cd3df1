/* rtp-subscriptions.h: threshold subscriptions, their MQTT announcements and the outbox */
#pragma once

#include <gio/gio.h>

#include "rtp-database.h"
#include "rtp-experiment-store.h"
#include "rtp-mqtt-publisher.h"
#include "rtp-user-manager.h"
#include "rtp-validate.h"

G_BEGIN_DECLS

/* How a subscription alarms beyond its band (issue "Alarms"); all zero is today's behaviour. */
typedef struct {
  gboolean has_warning_min; /* the MINOR band, inside the threshold (MAJOR) band */
  gint64 warning_min;
  gboolean has_warning_max;
  gint64 warning_max;
  gint64 delay_s;        /* out of band this long before the alarm opens */
  gboolean latch;        /* kept after the value returned, until acknowledged */
  gboolean notify_clear; /* a notification when the value is back */
} RtpSubscriptionAlarm;

typedef struct {
  char *user_id;
  char *pv_string;
  char *email;
  gint64 threshold_min;
  gint64 threshold_max;
  RtpSubscriptionAlarm alarm;
} RtpSubscription;

void rtp_subscription_free (RtpSubscription *sub);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpSubscription, rtp_subscription_free)

/* What a caller asks for, each field as it arrived. An absent email is the caller's own; an
 * absent threshold is the PV's default. */
/* Alarm settings as a caller sent them; null clears a warning edge. */
typedef struct {
  RtpFieldState warning_min_state;
  gint64 warning_min;
  RtpFieldState warning_max_state;
  gint64 warning_max;
  RtpFieldState delay_state;
  gint64 delay_s;
  RtpFieldState latch_state;
  gboolean latch;
  RtpFieldState notify_clear_state;
  gboolean notify_clear;
} RtpAlarmChanges;

typedef struct {
  RtpFieldState email_state;
  const char *email;
  RtpFieldState threshold_min_state;
  gint64 threshold_min;
  RtpFieldState threshold_max_state;
  gint64 threshold_max;
  RtpAlarmChanges alarm;
} RtpSubscriptionRequest;

#define RTP_ALARM_MAX_DELAY_S 86400

#define RTP_TYPE_SUBSCRIPTIONS (rtp_subscriptions_get_type ())
G_DECLARE_FINAL_TYPE (RtpSubscriptions, rtp_subscriptions, RTP, SUBSCRIPTIONS, GObject)

typedef struct {
  const char *channel_prefix; /* MQTT_CHANNEL_PREFIX */
  const char *email_channel;  /* EMAIL_MQTT_CHANNEL */
  const char *threshold_unit; /* THRESHOLD_UNIT */
} RtpSubscriptionSettings;

/* Returns: (transfer full) */
RtpSubscriptions *rtp_subscriptions_new (RtpDatabase *db, RtpUserManager *users, RtpExperimentStore *experiments,
                                         RtpMqttPublisher *mqtt, const RtpSubscriptionSettings *settings);

/* Subscribing: checks (PV 404, assignment 403, fields 400 — missing ones as one error naming
 * each (rtp_error_new_fields) —, duplicate 409), announces, and stores only after the broker's ack. */
void rtp_subscriptions_subscribe_async (RtpSubscriptions *self, const RtpUser *caller, const char *pv_string,
                                        const RtpSubscriptionRequest *request, GCancellable *cancellable,
                                        GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full): the stored subscription */
RtpSubscription *rtp_subscriptions_subscribe_finish (RtpSubscriptions *self, GAsyncResult *result, GError **error);
void rtp_subscriptions_unsubscribe_async (RtpSubscriptions *self, const RtpUser *caller, const char *pv_string,
                                          GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
gboolean rtp_subscriptions_unsubscribe_finish (RtpSubscriptions *self, GAsyncResult *result, GError **error);

/* The subscriptions of @user_id, of one PV when @pv_string is not NULL.
 * Returns: (transfer full) (element-type RtpSubscription) (nullable): NULL on a database error */
GPtrArray *rtp_subscriptions_list (RtpSubscriptions *self, const char *user_id, const char *pv_string, GError **error);
/* Changes the alarm settings of @user_id's subscription to @pv_string (NULL: the caller's own; an
 * admin may name anyone's, others get 403); 404 when there is none, 400 naming the key.
 * Returns: (transfer full) (nullable): the subscription as it is now */
RtpSubscription *rtp_subscriptions_update_alarm (RtpSubscriptions *self, const RtpUser *caller, const char *user_id,
                                                 const char *pv_string, const RtpAlarmChanges *changes, GError **error);
/* Every PV somebody subscribed to, sorted.
 * Returns: (transfer full) (nullable): NULL on a database error */
GStrv rtp_subscriptions_list_pvs (RtpSubscriptions *self, GError **error);

guint rtp_subscriptions_outbox_length (RtpSubscriptions *self);
/* Queues a message for @topic in the outbox (inside the caller's transaction); it is sent, in
 * order with the announcements, once the transaction committed and the broker is there. */
gboolean rtp_subscriptions_queue_message (RtpSubscriptions *self, const char *topic, const char *payload,
                                          GError **error);
/* Sends what waits in the outbox (also done on reconnect and by a timer). */
void rtp_subscriptions_flush_outbox (RtpSubscriptions *self);

G_END_DECLS
