/* rtp-csv.h: cells of the CSV/TSV export (RFC 4180 quoting, the spreadsheet formula guard) */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Appends @len bytes of @text as one cell: quoted (with '"' doubled) when it holds @sep, '"', CR
 * or LF; a text that starts with = + - @, a tab or a CR gets a leading ' first, so that no
 * spreadsheet takes it for a formula. */
void rtp_csv_append_text (GString *out, const char *text, gsize len, char sep);

/* Appends the JSON value @json (as rtp_json_normalize() wrote it) as one cell: null is an empty
 * cell, a number or true/false as written, a string as its text (rtp_csv_append_text), an array
 * or object as its JSON text, always quoted. */
void rtp_csv_append_value (GString *out, const char *json, gsize len, char sep);

/* Appends the JSON number @json; a whole number (an optimized bin's count, 18.0) without its
 * fraction. Also for JSON answers. */
void rtp_csv_append_count (GString *out, const char *json, gsize len);

G_END_DECLS
