/* rtp-snapshots.h: snapshots of an experiment's set-points — take, list, compare, restore */
#pragma once

#include <gio/gio.h>

#include "rtp-database.h"
#include "rtp-experiment-store.h"
#include "rtp-history.h"
#include "rtp-live-values.h"
#include "rtp-setpoints.h"

G_BEGIN_DECLS

#define RTP_TYPE_SNAPSHOTS (rtp_snapshots_get_type ())
G_DECLARE_FINAL_TYPE (RtpSnapshots, rtp_snapshots, RTP, SNAPSHOTS, GObject)

/* One saved value. */
typedef struct {
  char *pv_string;
  char *value;    /* (nullable) the JSON text of the value; NULL: no value was known */
  gint64 time_us; /* of the value (0 when none) */
} RtpSnapshotValue;

typedef struct {
  char *id;
  char *experiment_short_id;
  char *name;
  char *comment; /* (nullable) */
  gint64 taken_us;
  char *taken_by;
  gboolean has_at; /* taken of the values at a past moment */
  gint64 at_us;
  GPtrArray *values; /* (element-type RtpSnapshotValue) (nullable) in the lists, NULL */
} RtpSnapshot;

void rtp_snapshot_free (RtpSnapshot *snapshot);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpSnapshot, rtp_snapshot_free)

/* A PV compared: saved and current value texts (nullable), the difference of numbers. */
typedef struct {
  char *pv_string;
  char *saved;   /* (nullable) */
  char *current; /* (nullable) */
  gboolean has_delta;
  double delta; /* current − saved */
  gboolean within_tolerance;
} RtpSnapshotComparison;

void rtp_snapshot_comparison_free (RtpSnapshotComparison *c);

/* What a restore did to one PV. */
typedef struct {
  char *pv_string;
  char *outcome; /* published, refused, skipped, failed (dry run: would_publish, refused, skipped) */
  char *reason;  /* (nullable) */
} RtpRestoreResult;

void rtp_restore_result_free (RtpRestoreResult *r);

/* Returns: (transfer full) */
RtpSnapshots *rtp_snapshots_new (RtpDatabase *db, RtpExperimentStore *experiments, RtpHistory *history,
                                 RtpLiveValues *live, RtpSetpoints *setpoints);

/* Takes a snapshot of every PV of @short_id: now (a live value where one is known, else the
 * archiver's last sample) or at @at_us (@has_at; the appliance's getDataAtTime). @name 1..100
 * characters, unique per experiment (RTP_ERROR_EXISTS). @taken_by: the caller's id. */
void rtp_snapshots_take_async (RtpSnapshots *self, const char *short_id, const char *name, const char *comment,
                               gboolean has_at, gint64 at_us, const char *taken_by, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full) (nullable) */
RtpSnapshot *rtp_snapshots_take_finish (RtpSnapshots *self, GAsyncResult *result, GError **error);

/* Returns: (transfer full) (element-type RtpSnapshot) (nullable): newest first, without values */
GPtrArray *rtp_snapshots_list (RtpSnapshots *self, const char *short_id, GError **error);
/* Returns: (transfer full) (nullable): with its values, in the order they were saved */
RtpSnapshot *rtp_snapshots_get (RtpSnapshots *self, const char *short_id, const char *id, GError **error);
/* Its taker or an admin (@is_admin); else RTP_ERROR_FORBIDDEN. */
gboolean rtp_snapshots_delete (RtpSnapshots *self, const char *short_id, const char *id, const char *caller_id,
                               gboolean is_admin, GError **error);

/* Each saved PV against its value now. */
void rtp_snapshots_compare_async (RtpSnapshots *self, const char *short_id, const char *id, double tolerance,
                                  GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full) (element-type RtpSnapshotComparison) (nullable) */
GPtrArray *rtp_snapshots_compare_finish (RtpSnapshots *self, GAsyncResult *result, GError **error);

/* Writes the saved values back, PV after PV in the snapshot's order, each through the set-point
 * rules and the audit (entry "snapshot: <id>"); one refusal does not stop the others. @pvs
 * (nullable) limits it to those PVs; @dry_run checks everything and publishes nothing. */
void rtp_snapshots_restore_async (RtpSnapshots *self, const RtpUser *caller, const char *actor, gboolean as_admin,
                                  const char *short_id, const char *id, const char *const *pvs, gboolean dry_run,
                                  GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full) (element-type RtpRestoreResult) (nullable) */
GPtrArray *rtp_snapshots_restore_finish (RtpSnapshots *self, GAsyncResult *result, GError **error);

G_END_DECLS
