/* rtp-setpoints.h: setting PV values over MQTT, with an audit log */
#pragma once

#include <gio/gio.h>

#include "rtp-database.h"
#include "rtp-experiment-store.h"
#include "rtp-live-values.h"
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
  char *id;
  gint64 time_us;
  char *user_id; /* or "dbus:uid=N" */
  char *pv_string;
  char *value;
  char *outcome;  /* published, refused, verified, not_verified, failed, unknown */
  char *reason;   /* (nullable) why refused, failed or unknown */
  char *previous; /* (nullable) the last known value before the write */
  char *readback; /* (nullable) the value read back (verify) */
  char *reverts;  /* (nullable) the entry this one reverted */
  char *snapshot; /* (nullable) the snapshot this one restored */
} RtpSetpointLogEntry;

/* How a value is written (NULL: as PUT /publish always did). */
typedef struct {
  gboolean force;       /* an admin writes past a step rule whose current value is not known */
  gboolean verify;      /* wait for the read-back PV's next value */
  double tolerance;     /* |read back − value| allowed (numbers); 0: exact */
  guint timeout_s;      /* how long to wait for the read-back value */
  const char *reverts;  /* (nullable) recorded in the audit entry */
  const char *snapshot; /* (nullable) recorded in the audit entry */
  gboolean dry_run;     /* every check, then nothing published nor audited: outcome "would_publish" */
} RtpSetpointOptions;

/* What a write did. */
typedef struct {
  char *id;       /* the audit entry */
  char *outcome;  /* published, verified or not_verified */
  char *previous; /* (nullable) */
  char *readback; /* (nullable) the JSON text of the value read back */
} RtpSetpointResult;

void rtp_setpoint_result_free (RtpSetpointResult *result);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpSetpointResult, rtp_setpoint_result_free)

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

/* Where the last known values and the read-backs come from (the live values). */
void rtp_setpoints_set_live_values (RtpSetpoints *self, RtpLiveValues *live);

/* The last value known of @pv_string: the newer of its live value and the last value this server
 * published for it. Returns: (transfer full) (nullable) its text */
char *rtp_setpoints_last_known (RtpSetpoints *self, const char *pv_string);

/* As rtp_setpoints_set_async(), with the guard rails of the PV (range, step: 422, refused and
 * audited; step without a known value: 409 unless @options->force by an admin) and, with
 * @options->verify, the wait for the read-back value; @cancellable cancels that wait.
 * @options may be NULL. */
void rtp_setpoints_write_async (RtpSetpoints *self, const RtpUser *caller, const char *actor, gboolean as_admin,
                                const char *pv_string, const RtpSetpointValue *value, const RtpSetpointOptions *options,
                                GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full) (nullable): NULL with @error */
RtpSetpointResult *rtp_setpoints_write_finish (RtpSetpoints *self, GAsyncResult *result, GError **error);

/* One audit entry. Returns: (transfer full) (nullable): NULL with @error (RTP_ERROR_NOT_FOUND) */
RtpSetpointLogEntry *rtp_setpoints_get_entry (RtpSetpoints *self, const char *id, GError **error);

/* Audit entries, newest first, of one PV or (@pv_string NULL) all.
 * Returns: (transfer full) (element-type RtpSetpointLogEntry) (nullable): NULL on a database error */
GPtrArray *rtp_setpoints_log (RtpSetpoints *self, const char *pv_string, guint limit, GError **error);

G_END_DECLS
