/* rtp-csv.c: cells of the CSV/TSV export
 *
 * Every cell the export writes goes through here, so that the quoting of RFC 4180 and the guard
 * against spreadsheet formulas exist once and are fuzzed once (tests/fuzz, target "csv"). */
#include "rtp-csv.h"
#include "rtp-json.h"

#include <math.h>
#include <string.h>

static void
append_quoted (GString *out, const char *text, gsize len, gboolean guard)
{
  g_string_append_c (out, '"');
  if (guard)
    g_string_append_c (out, '\'');
  for (gsize i = 0; i < len; i++)
    {
      if (text[i] == '"')
        g_string_append_c (out, '"');
      g_string_append_c (out, text[i]);
    }
  g_string_append_c (out, '"');
}

static gboolean
needs_quotes (const char *text, gsize len, char sep)
{
  for (gsize i = 0; i < len; i++)
    if (text[i] == sep || text[i] == '"' || text[i] == '\r' || text[i] == '\n')
      return TRUE;
  return FALSE;
}

void
rtp_csv_append_text (GString *out, const char *text, gsize len, char sep)
{
  gboolean guard = len > 0 && strchr ("=+-@\t\r", text[0]) != NULL && text[0] != '\0';

  if (needs_quotes (text, len, sep))
    append_quoted (out, text, len, guard);
  else
    {
      if (guard)
        g_string_append_c (out, '\'');
      g_string_append_len (out, text, (gssize) len);
    }
}

void
rtp_csv_append_value (GString *out, const char *json, gsize len, char sep)
{
  if (json == NULL || len == 0 || (len == 4 && memcmp (json, "null", 4) == 0))
    return;
  if (json[0] == '"')
    {
      g_autoptr (GString) text = g_string_sized_new (len);
      rtp_json_append_decoded (text, json, len);
      rtp_csv_append_text (out, text->str, text->len, sep);
    }
  else if (json[0] == '[' || json[0] == '{')
    append_quoted (out, json, len, FALSE); /* a waveform: one cell, its JSON array */
  else
    g_string_append_len (out, json, (gssize) len);
}

void
rtp_csv_append_count (GString *out, const char *json, gsize len)
{
  char buf[64];
  double v;
  char *end = NULL;

  if (len == 0 || len >= sizeof buf)
    {
      g_string_append_len (out, json, (gssize) len);
      return;
    }
  memcpy (buf, json, len);
  buf[len] = '\0';
  v = g_ascii_strtod (buf, &end);
  if (end == buf + len && isfinite (v) && v == floor (v) && fabs (v) < 9007199254740992.0)
    g_string_append_printf (out, "%lld", (long long) v);
  else
    g_string_append_len (out, json, (gssize) len);
}
