/* rtp-config-file.c: reading and writing the .rtpdb export format
 *
 * Lines are trimmed (so CRLF and indentation do not matter) and a UTF-8 byte order mark is
 * skipped. Only lines that start with [EXPERIMENT] or [PROCESS_VARIABLE] count; their
 * attributes are `key=value` pairs separated by ';', split at the first '=', with "&SMKL&"
 * standing for a ';' inside a value and the literal `None` for null. */
#define G_LOG_DOMAIN "RtpConfigFile"

#include "rtp-config-file.h"

#include <errno.h>
#include <string.h>

#define SEMICOLON_ESCAPE "&SMKL&"
/* A line break in a value would end the line: escaped the way ';' is (the original service's
 * format has no escape for them; its values could hold them). */
#define NEWLINE_ESCAPE "&NEWL&"
#define RETURN_ESCAPE "&CRET&"

void
rtp_config_line_free (RtpConfigLine *line)
{
  if (line == NULL)
    return;
  g_hash_table_unref (line->attributes);
  g_free (line);
}

static char *
unescape (const char *value, gsize len)
{
  g_autoptr (GString) out = g_string_new_len (value, (gssize) len);
  g_string_replace (out, SEMICOLON_ESCAPE, ";", 0);
  g_string_replace (out, NEWLINE_ESCAPE, "\n", 0);
  g_string_replace (out, RETURN_ESCAPE, "\r", 0);
  return g_string_free (g_steal_pointer (&out), FALSE);
}

static RtpConfigLine *
parse_line (const char *start, const char *end, guint number)
{
  static const struct {
    const char *tag;
    RtpConfigLineKind kind;
  } tags[] = {
    { "[EXPERIMENT]", RTP_CONFIG_LINE_EXPERIMENT },
    { "[PROCESS_VARIABLE]", RTP_CONFIG_LINE_PROCESS_VARIABLE },
  };
  RtpConfigLine *line = NULL;
  const char *p = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (tags); i++)
    {
      gsize n = strlen (tags[i].tag);
      if ((gsize) (end - start) >= n && strncmp (start, tags[i].tag, n) == 0)
        {
          line = g_new0 (RtpConfigLine, 1);
          line->kind = tags[i].kind;
          p = start + n;
          break;
        }
    }
  if (line == NULL)
    return NULL;
  line->line_number = number;
  line->attributes = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  while (p < end)
    {
      const char *field_end = memchr (p, ';', (gsize) (end - p));
      const char *eq;
      g_autofree char *key = NULL;
      char *value;

      if (field_end == NULL)
        field_end = end;
      if (field_end > p)
        {
          eq = memchr (p, '=', (gsize) (field_end - p));
          if (eq == NULL)
            {
              /* a field without '=' */
              g_autofree char *stripped = g_strstrip (g_strndup (p, (gsize) (field_end - p)));
              if (stripped[0] != '\0')
                line->malformed = TRUE;
            }
          else
            {
              key = g_strstrip (g_strndup (p, (gsize) (eq - p)));
              value = unescape (eq + 1, (gsize) (field_end - eq - 1));
              if (g_str_equal (value, "None"))
                g_clear_pointer (&value, g_free);
              g_hash_table_replace (line->attributes, g_steal_pointer (&key), value);
            }
        }
      p = field_end + 1;
    }
  return line;
}

/**
 * rtp_config_file_parse:
 *
 * Returns: (transfer full) (element-type RtpConfigLine): the counting lines, in order
 */
GPtrArray *
rtp_config_file_parse (const char *text, gsize length)
{
  GPtrArray *lines = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_config_line_free);
  const char *p = text;
  const char *end = text + length;
  guint number = 0;

  if (length >= 3 && memcmp (p, "\xef\xbb\xbf", 3) == 0)
    p += 3;
  while (p < end)
    {
      const char *nl = memchr (p, '\n', (gsize) (end - p));
      const char *line_end = nl != NULL ? nl : end;
      const char *s = p;
      const char *e = line_end;
      RtpConfigLine *line;

      number++;
      while (s < e && g_ascii_isspace (*s))
        s++;
      while (e > s && g_ascii_isspace (e[-1]))
        e--;
      line = parse_line (s, e, number);
      if (line != NULL)
        g_ptr_array_add (lines, line);
      p = line_end + 1;
    }
  return lines;
}

char *
rtp_config_file_escape (const char *value)
{
  g_autoptr (GString) out = g_string_new (value);
  g_string_replace (out, ";", SEMICOLON_ESCAPE, 0);
  g_string_replace (out, "\n", NEWLINE_ESCAPE, 0);
  g_string_replace (out, "\r", RETURN_ESCAPE, 0);
  return g_string_free (g_steal_pointer (&out), FALSE);
}

void
rtp_config_file_append_attribute (GString *out, const char *key, const char *value)
{
  g_autofree char *escaped = NULL;

  if (value == NULL)
    return; /* null attributes are omitted */
  escaped = rtp_config_file_escape (value);
  g_string_append_printf (out, ";%s=%s", key, escaped);
}

gboolean
rtp_config_file_parse_bool (const char *text, gboolean *out)
{
  if (g_strcmp0 (text, "True") == 0 || g_strcmp0 (text, "true") == 0)
    *out = TRUE;
  else if (g_strcmp0 (text, "False") == 0 || g_strcmp0 (text, "false") == 0)
    *out = FALSE;
  else
    return FALSE;
  return TRUE;
}

gboolean
rtp_config_file_parse_int (const char *text, gint64 *out)
{
  char *end = NULL;
  gint64 v;

  if (text == NULL || text[0] == '\0')
    return FALSE;
  errno = 0;
  v = g_ascii_strtoll (text, &end, 10);
  if (*end != '\0' || errno != 0)
    return FALSE;
  *out = v;
  return TRUE;
}
