/* rtp-history.h: every read of archived data — the window, the time zone, the archiver expression */
#pragma once

#include <gio/gio.h>

#include "rtp-archiver-client.h"
#include "rtp-config.h"
#include "rtp-validate.h"

G_BEGIN_DECLS

#define RTP_TYPE_HISTORY (rtp_history_get_type ())
G_DECLARE_FINAL_TYPE (RtpHistory, rtp_history, RTP, HISTORY, GObject)

/* What a caller asks for; NULL/FALSE members take the server's defaults. */
typedef struct {
  const char *since; /* (nullable) as the user wrote it: local time in ARCHIVER_TIMEZONE, or ISO 8601 */
  const char *until; /* (nullable) */
  gboolean has_max_points;
  gint64 max_points; /* 0: raw data */
  /* the appliance's post-processor (API "operator"): absent or null → today's optimized_N or raw */
  RtpFieldState operator_state;
  const char *operator_name;
  RtpFieldState bin_s_state; /* the bin width of the N-second operators */
  gint64 bin_s;
} RtpHistoryQuery;

/* The window a query resolved to. */
typedef struct {
  gint64 from_us;
  gint64 to_us;
  gint64 max_points;    /* 0: raw, streamed; else optimized_N (or optimLastSample_N) */
  const char *operator; /* (nullable) (static) the operator asked for; NULL: optimized_N or raw */
  gint64 bin_s;         /* for the N-second operators */
  char *defaulted;      /* (owned) (nullable) the warning when no since was given */
} RtpHistoryWindow;

/* Whether @window's answer may hold optimized bins ([mean, std, min, max, count] values). */
gboolean rtp_history_window_has_bins (const RtpHistoryWindow *window);

/* The appliance's expression for @pv over @window: `X:Y`, `optimized_500(X:Y)`, `mean_60(X:Y)`…
 * Returns: (transfer full) */
char *rtp_history_expression (const RtpHistoryWindow *window, const char *pv);

void rtp_history_window_clear (RtpHistoryWindow *window);

/* @config_source: where the current configuration lives (it is replaced on reload) */
/* Returns: (transfer full) */
RtpHistory *rtp_history_new (RtpConfig **config_source, RtpArchiverClient *archiver);
gboolean rtp_history_is_configured (RtpHistory *self);

/* ARCHIVER_TIMEZONE (the host's zone when unset), built once per configured value.
 * Returns: (transfer none) */
GTimeZone *rtp_history_get_time_zone (RtpHistory *self);

/* Applies API.md's rules: unparsable times and since after until → RTP_ERROR_INVALID with the
 * contract's message; no since → the last DEFAULT_ARCHIVER_TIME_PERIOD hours up to until (or now),
 * with the warning; max_points from RTP_MAX_POINTS, at most RTP_MAX_POINTS_LIMIT; an operator the
 * appliance has (bin_s for the N-second ones, refused for the others), else RTP_ERROR_INVALID naming the key. */
gboolean rtp_history_resolve (RtpHistory *self, const RtpHistoryQuery *query, RtpHistoryWindow *window, GError **error);

/* @text (nullable: now) as a moment, read as since/until are; @name is the key for the error. */
gboolean rtp_history_resolve_moment (RtpHistory *self, const char *name, const char *text, gint64 *out_us,
                                     GError **error);

/* Fetches one PV over @window with rtp_history_expression() (bins read as such), as a long transfer
 * (only a stall limit). Samples go to @on_sample on the main thread. */
RtpArchiverTransfer *rtp_history_fetch_async (RtpHistory *self, const char *pv, const RtpHistoryWindow *window,
                                              RtpSampleFunc on_sample, gpointer sample_data, GCancellable *cancellable,
                                              GAsyncReadyCallback callback, gpointer user_data);
/* All of @pvs over @window in one request (getDataForPVs.json): @on_pv says whose samples follow.
 * On an appliance without it, finish reports @found FALSE before any sample. */
RtpArchiverTransfer *rtp_history_fetch_many_async (RtpHistory *self, const char *const *pvs,
                                                   const RtpHistoryWindow *window, RtpPvStartFunc on_pv,
                                                   RtpSampleFunc on_sample, gpointer sample_data,
                                                   GCancellable *cancellable, GAsyncReadyCallback callback,
                                                   gpointer user_data);
gboolean rtp_history_fetch_finish (RtpHistory *self, GAsyncResult *result, gboolean *found, GError **error);

/* A PV's value at a moment: its last sample at or before it. */
typedef struct {
  gint64 secs;
  gint32 nanos;
  char *value;   /* (owned) the JSON text of the value */
  gint severity; /* -1 when the appliance gave none */
  gint status;
} RtpValueAt;

void rtp_value_at_free (RtpValueAt *value);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpValueAt, rtp_value_at_free)

/* The values of @pvs at @at_us: one getDataAtTime request; on an appliance without it (404), a
 * getData window ending at @at_us per PV. Unreachable or garbled → RTP_ERROR_UPSTREAM. */
void rtp_history_values_at_async (RtpHistory *self, const char *const *pvs, gint64 at_us, GCancellable *cancellable,
                                  GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full) (element-type utf8 RtpValueAt): PV → value; a PV without one is absent */
GHashTable *rtp_history_values_at_finish (RtpHistory *self, GAsyncResult *result, GError **error);

/* The appliance's metadata of @pvs (getMetadata: EGU, PREC, DESC, HOPR, LOPR, …), each fetched at
 * most once per RTP_METADATA_CACHE_S. Unreachable or garbled → RTP_ERROR_UPSTREAM. */
void rtp_history_metadata_async (RtpHistory *self, const char *const *pvs, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full) (element-type utf8 utf8): PV → its metadata as a JSON object's text; a
 * PV the appliance does not know is absent */
GHashTable *rtp_history_metadata_finish (RtpHistory *self, GAsyncResult *result, GError **error);

/* The archived PV names matching @glob (or @regex, when not NULL): getMatchingPVs, at most @limit.
 * An appliance that does not answer → RTP_ERROR_UPSTREAM. */
void rtp_history_search_async (RtpHistory *self, const char *glob, const char *regex, guint limit,
                               GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full) */
GStrv rtp_history_search_finish (RtpHistory *self, GAsyncResult *result, GError **error);

G_END_DECLS
