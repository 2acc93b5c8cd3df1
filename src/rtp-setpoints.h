/* rtp-setpoints.h: setting PV values over MQTT, with an audit log */
#pragma once

#include <gio/gio.h>

#include "rtp-database.h"
#include "rtp-experiment-store.h"
#include "rtp-mqtt-publisher.h"
#include "rtp-user-manager.h"

G_BEGIN_DECLS

#define RTP_TYPE_SETPOINTS (rtp_setpoints_get_type ())
G_DECLARE_FINAL_TYPE (RtpSetpoints, rtp_setpoints, RTP, SETPOINTS, GObject)

/* @retention_days: audit log entries older than this are removed (0: kept for ever) */
/* Returns: (transfer full) */
RtpSetpoints *rtp_setpoints_new (RtpDatabase *db, RtpExperimentStore *experiments, RtpMqttPublisher *mqtt,
                                 const char *channel_prefix, guint retention_days);

/* A value to set, as the caller gave it. @text is what is published (numbers as the caller wrote
 * them or as the shortest text that reads back as the same number, strings as written, true/false). */
typedef enum {
  RTP_SETPOINT_TEXT,
  RTP_SETPOINT_NUMBER, /* @number holds it */
  RTP_SETPOINT_BOOLEAN,
} RtpSetpointKind;

typedef struct {
  RtpSetpointKind kind;
  const char *text;
  double number;
} RtpSetpointValue;

/* One entry of the audit log. */
typedef struct {
  gint64 time_us;
  char *user_id; /* or "dbus:uid=N" */
  char *pv_string;
  char *value;
  char *outcome; /* "ok", or why not */
} RtpSetpointLogEntry;

void rtp_setpoint_log_entry_free (RtpSetpointLogEntry *entry);

/* Returns: (transfer full) (nullable): NULL when no topic may be built from @pv_string */
char *rtp_setpoints_topic (RtpSetpoints *self, const char *pv_string);

/* Checks in API.md's order (PV 404; caller assigned 403 unless @as_admin; publishable 406),
 * publishes with QoS 1, completes after the broker's ack, and logs the outcome.
 * @actor is what the audit log records (a user_id, or "dbus:uid=N"). */
void rtp_setpoints_set_async (RtpSetpoints *self, const RtpUser *caller, const char *actor, gboolean as_admin,
                              const char *pv_string, const RtpSetpointValue *value, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data);
gboolean rtp_setpoints_set_finish (RtpSetpoints *self, GAsyncResult *result, GError **error);

/* Audit entries, newest first, of one PV or (@pv_string NULL) all.
 * Returns: (transfer full) (element-type RtpSetpointLogEntry) (nullable): NULL on a database error */
GPtrArray *rtp_setpoints_log (RtpSetpoints *self, const char *pv_string, guint limit, GError **error);

G_END_DECLS
