/* rtp-config-file.h: the original service's experiment/PV export format (.rtpdb) */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  RTP_CONFIG_LINE_EXPERIMENT,
  RTP_CONFIG_LINE_PROCESS_VARIABLE,
} RtpConfigLineKind;

typedef struct {
  guint line_number; /* 1-based, in the file */
  RtpConfigLineKind kind;
  GHashTable *attributes; /* (owned) key → value; a value NULL means the literal None */
  gboolean malformed;     /* an attribute without '=' */
} RtpConfigLine;

void rtp_config_line_free (RtpConfigLine *line);

/* Parses the text; lines that are not [EXPERIMENT] or [PROCESS_VARIABLE] lines are skipped. */
/* Returns: (transfer full) */
GPtrArray *rtp_config_file_parse (const char *text, gsize length);

/* Writing: ';' in a value becomes "&SMKL&". */
/* Returns: (transfer full) */
char *rtp_config_file_escape (const char *value);
void rtp_config_file_append_attribute (GString *out, const char *key, const char *value);

/* "True"/"true"/"False"/"false"; FALSE when @text is none of them. */
gboolean rtp_config_file_parse_bool (const char *text, gboolean *out);
gboolean rtp_config_file_parse_int (const char *text, gint64 *out);

G_END_DECLS
