/* rtp-json.h: checks every JSON text the server receives before json-glib sees it, and writes
 * the small JSON texts that services send (MQTT announcements) */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* json-glib 1.6 parses recursively: ~100 000 nested brackets overflow the stack. No input of
 * the server needs more than a few levels. */
#define RTP_JSON_MAX_DEPTH 64

typedef enum {
  RTP_JSON_OK,
  RTP_JSON_SYNTAX,   /* not one JSON value (only rtp_json_normalize finds every syntax error) */
  RTP_JSON_TOO_DEEP, /* nested deeper than the limit */
  RTP_JSON_NUMBER,   /* an integer outside int64, or a number that is not a finite double */
  RTP_JSON_NUL,      /* a string holding U+0000 */
} RtpJsonProblem;

/* One cheap pass (brackets counted outside strings, numbers and \u0000 escapes looked at): what
 * json-glib would crash on or silently corrupt. When a number or a NUL is found, @key is set to
 * the top-level object key it sits under (or NULL) and @value to the offending token. */
RtpJsonProblem rtp_json_check (const char *data, gsize len, guint max_depth, char **key, char **value);

/* Validates one JSON value completely, without recursion, and appends it to @out as compact JSON
 * text: numbers keep their digits, a number that is not a finite double and the bare tokens NaN,
 * Infinity and -Infinity (which the archiver may write) become null and are counted in
 * @replaced. Strings must be valid UTF-8 without raw control characters. */
RtpJsonProblem rtp_json_normalize (const char *data, gsize len, guint max_depth, GString *out, guint *replaced);

/* Exactly JSON's number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
gboolean rtp_json_is_number (const char *text, gsize len);
gsize rtp_json_number_span (const char *text, gsize len, gboolean *exponent);

/* TRUE when @text (of @len bytes) is a JSON number that is a finite double. */
gboolean rtp_json_number_is_finite (const char *text, gsize len);

/* The writer's half: appends @s (valid UTF-8) as a JSON string, quotes included. Escapes `"`, `\\`
 * and every control character; everything else is kept as UTF-8. NULL is written as null. */
void rtp_json_append_string (GString *out, const char *s);

/* The reader's half: appends the text of the JSON string @text (@len bytes, quotes included, as
 * rtp_json_normalize() checked it) to @out, escapes resolved. A \\u0000 becomes U+FFFD. */
void rtp_json_append_decoded (GString *out, const char *text, gsize len);

G_END_DECLS
