/* rtp-export.h: archived data of an experiment written as one answer — the JSON of /data, or CSV/TSV
 *
 * The engine behind POST /data and the D-Bus GetData: every PV is fetched at once through the
 * history service and written into one answer with bounded buffers, whatever the window. Where the
 * bytes go is the caller's sink (an HTTP answer, a file descriptor). */
#pragma once

#include "rtp-experiment-store.h"
#include "rtp-history.h"
#include "rtp-validate.h"

G_BEGIN_DECLS

typedef enum { RTP_EXPORT_JSON, RTP_EXPORT_CSV, RTP_EXPORT_TSV } RtpExportFormat;
typedef enum { RTP_EXPORT_TIME_LOCAL, RTP_EXPORT_TIME_ISO, RTP_EXPORT_TIME_EPOCH } RtpExportTime;

/* How the answer is written (API "format", "align", "include", "time_format"). */
typedef struct {
  RtpExportFormat format;
  gboolean align_previous; /* CSV/TSV: a PV without a sample at a row's time repeats its last cells */
  gboolean severity;       /* points carry severity (CSV: <pv>.severity, and <pv>.status) */
  gboolean status;         /* points carry status */
  gboolean meta;           /* JSON: the answer carries process_variables_meta */
  RtpExportTime time_form; /* local (ARCHIVER_TIMEZONE with offset), iso (UTC, Z) or epoch seconds */
} RtpExportOptions;

/* The presentation keys as they arrived (the /data body, the D-Bus options). */
typedef struct {
  RtpFieldState format_state;
  const char *format; /* json | csv | tsv */
  RtpFieldState align_state;
  const char *align; /* none | previous */
  RtpFieldState time_format_state;
  const char *time_format; /* local | iso | epoch */
  RtpFieldState include_state;
  const char *const *include; /* severity, status, meta (JSON only) */
} RtpExportRequest;

/* Absent or null keys take the defaults (JSON, none, local, nothing included); anything else that
 * is not one of the values → RTP_ERROR_INVALID naming the key. */
gboolean rtp_export_read_options (const RtpExportRequest *request, RtpExportOptions *options, GError **error);

typedef struct _RtpExport RtpExport;

/* Where the answer goes. Until begin or complete, nothing has been sent: fail may still answer. */
typedef struct {
  /* the answer starts: more follows with write, then end or abort; the sink calls
   * rtp_export_drained() as the reader takes what was written */
  void (*begin) (gpointer sink, RtpExport *export, const char *content_type, const char *disposition);
  void (*write) (gpointer sink, GString *text); /* takes the bytes of @text and empties it */
  gsize (*queued) (gpointer sink);              /* bytes written that the reader has not taken yet */
  void (*end) (gpointer sink);
  void (*abort) (gpointer sink); /* failed after begin: the answer is cut off */
  /* the whole answer at once (it fitted before anything was sent) */
  void (*complete) (gpointer sink, const char *content_type, const char *disposition, GBytes *body);
  void (*fail) (gpointer sink, const GError *error); /* failed before anything was sent */
  void (*enter) (gpointer sink);                     /* (optional) around the export's callbacks */
  void (*leave) (gpointer sink);
} RtpExportSinkFuncs;

/**
 * rtp_export_start:
 * @experiment: the experiment (its PVs are the columns)
 * @only_pv: (nullable): one of its PVs, or NULL for all
 * @window: (inout): as rtp_history_resolve() made it; its warning moves into the answer
 * @reader_cancellable: (nullable): cancelled when the reader went away
 * @sink_free: (nullable): called on @sink when the export is done with it
 *
 * Starts writing; the export frees itself once it has answered and its transfers are done.
 */
void rtp_export_start (RtpHistory *history, const RtpExperiment *experiment, const char *only_pv,
                       RtpHistoryWindow *window, const RtpExportOptions *options, const RtpExportSinkFuncs *sink_funcs,
                       gpointer sink, GDestroyNotify sink_free, GCancellable *reader_cancellable);

/* The sink reports that @queued bytes still wait for the reader. */
void rtp_export_drained (RtpExport *export, gsize queued);

G_END_DECLS
