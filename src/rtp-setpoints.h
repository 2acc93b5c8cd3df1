/* rtp-setpoints.h: setting PV values over MQTT, with an audit log */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "rtp-database.h"
#include "rtp-experiment-store.h"
#include "rtp-mqtt-publisher.h"
#include "rtp-user-manager.h"

G_BEGIN_DECLS

#define RTP_TYPE_SETPOINTS (rtp_setpoints_get_type ())
G_DECLARE_FINAL_TYPE (RtpSetpoints, rtp_setpoints, RTP, SETPOINTS, GObject)

/* @retention_days: audit log entries older than this are removed (0: kept for ever) */
RtpSetpoints *rtp_setpoints_new (RtpDatabase *db, RtpExperimentStore *experiments, RtpMqttPublisher *mqtt,
                                 const char *channel_prefix, guint retention_days);

/* The payload text of a JSON scalar: numbers as JSON writes them, strings unquoted, true/false.
 * NULL for null, arrays and objects. */
char         *rtp_setpoints_value_text (JsonNode *value);
char         *rtp_setpoints_topic (RtpSetpoints *self, const char *pv_string);

/* Checks in API.md's order (PV 404; caller assigned 403 unless @as_admin; publishable 406),
 * publishes with QoS 1, completes after the broker's ack, and logs the outcome.
 * @actor is what the audit log records (a user_id, or "dbus:uid=N"). */
void          rtp_setpoints_set_async (RtpSetpoints *self, const RtpUser *caller, const char *actor, gboolean as_admin,
                                       const char *pv_string, const char *value_text, GCancellable *cancellable,
                                       GAsyncReadyCallback callback, gpointer user_data);
gboolean      rtp_setpoints_set_finish (RtpSetpoints *self, GAsyncResult *result, GError **error);

/* Audit entries, newest first: objects {time, user_id, pv_string, value, outcome}. */
JsonArray    *rtp_setpoints_log (RtpSetpoints *self, const char *pv_string, guint limit, GError **error);

G_END_DECLS
