/* rtp-archiver-parser.h: incremental parser of the EPICS Archiver Appliance's getData.json answer */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  gint64 secs;
  gint32 nanos;
  const char *value; /* JSON text of the value: a number as written, a string, an array, or null */
  gsize value_len;
  gboolean binned;                     /* an optimized_N bin: value is the mean, min/max/count are set */
  const char *std, *min, *max, *count; /* JSON number texts, for bins */
  gsize std_len, min_len, max_len, count_len;
  gboolean too_deep; /* the value nests deeper than RTP_JSON_MAX_DEPTH: a bad sample, value is NULL — skip it */
  guint nonfinite;   /* numbers of the value that were not finite doubles and became null */
  gint severity;     /* the EPICS alarm severity (0 NO_ALARM, 1 MINOR, 2 MAJOR, 3 INVALID); -1 when not given */
  gint status;       /* the EPICS alarm status; -1 when not given */
} RtpSample;

#define RTP_EPICS_SEVERITY_INVALID 3

/* Return FALSE to stop parsing with an error. */
typedef gboolean (*RtpSampleFunc) (const RtpSample *sample, gpointer user_data);

typedef struct _RtpArchiverParser RtpArchiverParser;

/* @bins: read 5-element number arrays [mean, std, min, max, count] as bins (optimized_N answers) */
/* Returns: (transfer full) */
RtpArchiverParser *rtp_archiver_parser_new (gboolean bins, RtpSampleFunc func, gpointer user_data);
void rtp_archiver_parser_free (RtpArchiverParser *parser);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpArchiverParser, rtp_archiver_parser_free)

/* An answer of several PVs (getDataForPVs.json) holds one {"meta": {"name": …}, "data": […]} per PV:
 * @func is called as each PV's data begins, with the name its meta gave (NULL when it gave none),
 * before that PV's samples. Return FALSE to stop parsing with an error. */
typedef gboolean (*RtpPvStartFunc) (const char *name, gpointer user_data);
void rtp_archiver_parser_set_pv_func (RtpArchiverParser *parser, RtpPvStartFunc func);
/* (nullable): the meta name of the PV being read */
const char *rtp_archiver_parser_get_name (RtpArchiverParser *parser);
/* About how many bytes of the answer the PV being read has taken so far (counted per feed). */
guint64 rtp_archiver_parser_get_pv_bytes (RtpArchiverParser *parser);

/* Feeds bytes as they arrive; FALSE (RTP_ERROR_UPSTREAM) when the answer is malformed. */
gboolean rtp_archiver_parser_feed (RtpArchiverParser *parser, const char *data, gsize len, GError **error);
/* FALSE when the answer ended before its JSON did. */
gboolean rtp_archiver_parser_finish (RtpArchiverParser *parser, GError **error);
guint64 rtp_archiver_parser_get_count (RtpArchiverParser *parser);

/* The answer of getDataAtTime, `{"<pv>": {"secs", "nanos", "val", "severity", "status"}, …}`, whole:
 * @func gets every PV's sample (@pv is the name as the appliance wrote it). Values are checked as in
 * getData answers (too deep → sample.too_deep). FALSE (RTP_ERROR_UPSTREAM) when malformed. */
typedef gboolean (*RtpNamedSampleFunc) (const char *pv, const RtpSample *sample, gpointer user_data);
gboolean rtp_archiver_parse_values_at (const char *data, gsize len, RtpNamedSampleFunc func, gpointer user_data,
                                       GError **error);

/* The answer of getMatchingPVs, a JSON array of names: the first @max names (valid UTF-8, not
 * empty). NULL (RTP_ERROR_UPSTREAM) when malformed.
 * Returns: (transfer full) */
GStrv rtp_archiver_parse_names (const char *data, gsize len, guint max, GError **error);

G_END_DECLS
