/* rtp-json.c: the checks every JSON text passes before json-glib (or a client) sees it
 *
 * json-glib 1.6 parses recursively with no depth limit (a 200 KB body of nested brackets
 * overflows the stack), reads integers beyond int64 as wrapped values, keeps strings only up
 * to an escaped NUL and writes non-finite doubles as `inf.0`, which is not JSON. Request
 * bodies, tokens and archiver values all come from outside: each goes through one of the
 * two passes here, both iterative and without allocation per token. */
#define G_LOG_DOMAIN "RtpJson"

#include "rtp-json.h"

#include <math.h>
#include <string.h>

static gboolean
is_ws (char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static gboolean
is_number_char (char c)
{
  return g_ascii_isdigit (c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/**
 * rtp_json_number_span:
 * @exponent: (out) (optional): whether the number has an exponent (only then can it be out of a
 *   double's range, see rtp_json_number_is_finite())
 *
 * Returns: the length of the JSON number (RFC 8259 grammar) at the start of @s, or 0 when @s does
 *   not start with a complete one (a fraction or an exponent begun and not finished counts as
 *   none). What follows it is not looked at.
 */
gsize
rtp_json_number_span (const char *s, gsize len, gboolean *exponent)
{
  gsize i = 0;
  gboolean e = FALSE;

  if (i < len && s[i] == '-')
    i++;
  if (i >= len || !g_ascii_isdigit (s[i]))
    return 0;
  if (s[i] == '0')
    i++;
  else
    while (i < len && g_ascii_isdigit (s[i]))
      i++;
  if (i < len && s[i] == '.')
    {
      i++;
      if (i >= len || !g_ascii_isdigit (s[i]))
        return 0;
      while (i < len && g_ascii_isdigit (s[i]))
        i++;
    }
  if (i < len && (s[i] == 'e' || s[i] == 'E'))
    {
      e = TRUE;
      i++;
      if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
      if (i >= len || !g_ascii_isdigit (s[i]))
        return 0;
      while (i < len && g_ascii_isdigit (s[i]))
        i++;
    }
  if (exponent != NULL)
    *exponent = e;
  return i;
}

gboolean
rtp_json_is_number (const char *s, gsize len)
{
  return len > 0 && rtp_json_number_span (s, len, NULL) == len;
}

gboolean
rtp_json_number_is_finite (const char *text, gsize len)
{
  char small[64];
  g_autofree char *large = NULL;
  const char *z;

  /* without an exponent, fewer than 300 characters cannot reach DBL_MAX (~1.8e308): the usual case,
   * decided without strtod */
  if (len < 300 && memchr (text, 'e', len) == NULL && memchr (text, 'E', len) == NULL)
    return TRUE;
  if (len < sizeof small)
    {
      memcpy (small, text, len);
      small[len] = '\0';
      z = small;
    }
  else
    {
      large = g_strndup (text, len);
      z = large;
    }
  return isfinite (g_ascii_strtod (z, NULL));
}

/* An integer token (no fraction, no exponent) that json-glib would wrap: outside int64. */
static gboolean
integer_in_range (const char *s, gsize len)
{
  static const char max_pos[] = "9223372036854775807";
  static const char max_neg[] = "9223372036854775808";
  gboolean negative = len > 0 && s[0] == '-';
  const char *digits = s + (negative ? 1 : 0);
  gsize n = len - (negative ? 1 : 0);

  while (n > 1 && digits[0] == '0')
    {
      digits++;
      n--;
    }
  if (n != 19)
    return n < 19;
  return memcmp (digits, negative ? max_neg : max_pos, 19) <= 0;
}

static gboolean
number_ok (const char *s, gsize len)
{
  for (gsize i = 0; i < len; i++)
    if (s[i] == '.' || s[i] == 'e' || s[i] == 'E')
      return rtp_json_number_is_finite (s, len);
  return integer_in_range (s, len);
}

/* End (exclusive) of the string starting at s[i] == '"', 0 when it does not end; @nul is set
 * when it holds an escaped U+0000. */
static gsize
string_end (const char *s, gsize i, gsize n, gboolean *nul)
{
  for (i = i + 1; i < n; i++)
    {
      if (s[i] == '\\')
        {
          if (i + 5 < n && s[i + 1] == 'u' && s[i + 2] == '0' && s[i + 3] == '0' && s[i + 4] == '0' && s[i + 5] == '0')
            *nul = TRUE;
          i++;
        }
      else if (s[i] == '"')
        return i + 1;
    }
  return 0;
}

static char *
token_text (const char *s, gsize len)
{
  g_autofree char *raw = g_strndup (s, MIN (len, 200));
  return g_utf8_make_valid (raw, -1);
}

RtpJsonProblem
rtp_json_check (const char *data, gsize len, guint max_depth, char **key, char **value)
{
  guint depth = 0;
  const char *candidate = NULL; /* the last string seen at depth 1: the key once ':' follows */
  gsize candidate_len = 0;
  const char *current = NULL; /* the top-level key whose value is being read */
  gsize current_len = 0;
  gsize i = 0;

  *key = NULL;
  *value = NULL;
  while (i < len)
    {
      char c = data[i];
      if (c == '"')
        {
          gboolean nul = FALSE;
          gsize end = string_end (data, i, len, &nul);
          if (end == 0)
            return RTP_JSON_SYNTAX;
          if (nul)
            {
              *key = current != NULL ? token_text (current, current_len) : NULL;
              *value = token_text (data + i, end - i);
              return RTP_JSON_NUL;
            }
          if (depth == 1)
            {
              candidate = data + i + 1;
              candidate_len = end - i - 2;
            }
          i = end;
          continue;
        }
      if (c == '-' || g_ascii_isdigit (c))
        {
          gsize start = i;
          while (i < len && is_number_char (data[i]))
            i++;
          if (rtp_json_is_number (data + start, i - start) && !number_ok (data + start, i - start))
            {
              *key = current != NULL ? token_text (current, current_len) : NULL;
              *value = token_text (data + start, i - start);
              return RTP_JSON_NUMBER;
            }
          continue;
        }
      switch (c)
        {
          case '{':
          case '[':
            if (++depth > max_depth)
              return RTP_JSON_TOO_DEEP;
            break;
          case '}':
          case ']':
            if (depth == 0)
              return RTP_JSON_SYNTAX;
            depth--;
            break;
          case ':':
            if (depth == 1)
              {
                current = candidate;
                current_len = candidate_len;
              }
            break;
          case ',':
            if (depth == 1)
              current = NULL;
            break;
          case '\0':
            return RTP_JSON_SYNTAX;
          default:
            break;
        }
      i++;
    }
  return RTP_JSON_OK;
}

/* ---- the full validator ---------------------------------------------------------------- */

typedef enum {
  EXPECT_VALUE,
  VALUE_OR_CLOSE, /* after '[' */
  KEY_OR_CLOSE,   /* after '{' */
  EXPECT_KEY,     /* after ',' in an object */
  EXPECT_COLON,
  AFTER_VALUE,
} State;

static gboolean
literal_at (const char *s, gsize i, gsize n, const char *word, gsize *end)
{
  gsize w = strlen (word);
  if (n - i < w || memcmp (s + i, word, w) != 0)
    return FALSE;
  if (i + w < n && (g_ascii_isalnum (s[i + w]) || s[i + w] == '_'))
    return FALSE;
  *end = i + w;
  return TRUE;
}

/* A complete, valid JSON string at s[i] == '"': its end (exclusive), or 0. */
static gsize
valid_string_end (const char *s, gsize i, gsize n)
{
  gsize start = i;

  for (i = i + 1; i < n; i++)
    {
      guchar c = (guchar) s[i];
      if (c < 0x20)
        return 0;
      if (c == '"')
        return g_utf8_validate_len (s + start + 1, i - start - 1, NULL) ? i + 1 : 0;
      if (c == '\\')
        {
          if (++i >= n)
            return 0;
          switch (s[i])
            {
              case '"':
              case '\\':
              case '/':
              case 'b':
              case 'f':
              case 'n':
              case 'r':
              case 't':
                break;
              case 'u':
                if (n - i < 5 || !g_ascii_isxdigit (s[i + 1]) || !g_ascii_isxdigit (s[i + 2]) ||
                    !g_ascii_isxdigit (s[i + 3]) || !g_ascii_isxdigit (s[i + 4]))
                  return 0;
                i += 4;
                break;
              default:
                return 0;
            }
        }
    }
  return 0;
}

RtpJsonProblem
rtp_json_normalize (const char *s, gsize n, guint max_depth, GString *out, guint *replaced)
{
  guint64 objects = 0; /* bit d: the container at depth d+1 is an object (max_depth ≤ 64) */
  guint depth = 0;
  State state = EXPECT_VALUE;
  gsize i = 0;

  g_return_val_if_fail (max_depth <= 64, RTP_JSON_SYNTAX);
  while (TRUE)
    {
      char c;
      gsize end;

      while (i < n && is_ws (s[i]))
        i++;
      if (i >= n)
        break;
      c = s[i];
      switch (state)
        {
          case VALUE_OR_CLOSE:
          case EXPECT_VALUE:
            if (state == VALUE_OR_CLOSE && c == ']')
              goto close;
            if (c == '{' || c == '[')
              {
                if (depth >= max_depth)
                  return RTP_JSON_TOO_DEEP;
                if (c == '{')
                  objects |= G_GUINT64_CONSTANT (1) << depth;
                else
                  objects &= ~(G_GUINT64_CONSTANT (1) << depth);
                depth++;
                g_string_append_c (out, c);
                state = c == '{' ? KEY_OR_CLOSE : VALUE_OR_CLOSE;
                i++;
                continue;
              }
            if (c == '"')
              {
                end = valid_string_end (s, i, n);
                if (end == 0)
                  return RTP_JSON_SYNTAX;
                g_string_append_len (out, s + i, (gssize) (end - i));
              }
            else if (literal_at (s, i, n, "true", &end) || literal_at (s, i, n, "false", &end) ||
                     literal_at (s, i, n, "null", &end))
              g_string_append_len (out, s + i, (gssize) (end - i));
            else if (literal_at (s, i, n, "NaN", &end) || literal_at (s, i, n, "Infinity", &end) ||
                     literal_at (s, i, n, "-Infinity", &end))
              {
                g_string_append (out, "null");
                (*replaced)++;
              }
            else if (c == '-' || g_ascii_isdigit (c))
              {
                end = i;
                while (end < n && is_number_char (s[end]))
                  end++;
                if (!rtp_json_is_number (s + i, end - i))
                  return RTP_JSON_SYNTAX;
                if (rtp_json_number_is_finite (s + i, end - i))
                  g_string_append_len (out, s + i, (gssize) (end - i));
                else
                  {
                    g_string_append (out, "null");
                    (*replaced)++;
                  }
              }
            else
              return RTP_JSON_SYNTAX;
            i = end;
            state = AFTER_VALUE;
            continue;
          case KEY_OR_CLOSE:
          case EXPECT_KEY:
            if (state == KEY_OR_CLOSE && c == '}')
              goto close;
            if (c != '"' || (end = valid_string_end (s, i, n)) == 0)
              return RTP_JSON_SYNTAX;
            g_string_append_len (out, s + i, (gssize) (end - i));
            i = end;
            state = EXPECT_COLON;
            continue;
          case EXPECT_COLON:
            if (c != ':')
              return RTP_JSON_SYNTAX;
            g_string_append_c (out, ':');
            i++;
            state = EXPECT_VALUE;
            continue;
          case AFTER_VALUE:
            if (depth == 0)
              return RTP_JSON_SYNTAX; /* text after the value */
            if (c == ',')
              {
                g_string_append_c (out, ',');
                i++;
                state = (objects >> (depth - 1)) & 1 ? EXPECT_KEY : EXPECT_VALUE;
                continue;
              }
            goto close;
          default:
            g_assert_not_reached ();
        }
close:
      if (depth == 0 || c != (((objects >> (depth - 1)) & 1) ? '}' : ']'))
        return RTP_JSON_SYNTAX;
      depth--;
      g_string_append_c (out, c);
      i++;
      state = AFTER_VALUE;
    }
  return state == AFTER_VALUE && depth == 0 ? RTP_JSON_OK : RTP_JSON_SYNTAX;
}

void
rtp_json_append_string (GString *out, const char *s)
{
  if (s == NULL)
    {
      g_string_append (out, "null");
      return;
    }
  g_string_append_c (out, '"');
  for (const char *p = s; *p != '\0'; p++)
    {
      unsigned char c = (unsigned char) *p;
      switch (c)
        {
          case '"':
            g_string_append (out, "\\\"");
            break;
          case '\\':
            g_string_append (out, "\\\\");
            break;
          case '\n':
            g_string_append (out, "\\n");
            break;
          case '\r':
            g_string_append (out, "\\r");
            break;
          case '\t':
            g_string_append (out, "\\t");
            break;
          default:
            if (c < 0x20 || c == 0x7f)
              g_string_append_printf (out, "\\u%04x", c);
            else
              g_string_append_c (out, (char) c);
        }
    }
  g_string_append_c (out, '"');
}

static int
hex4 (const char *p, const char *end)
{
  int v = 0;

  if (end - p < 4)
    return -1;
  for (int i = 0; i < 4; i++)
    {
      int d = g_ascii_xdigit_value (p[i]);
      if (d < 0)
        return -1;
      v = v * 16 + d;
    }
  return v;
}

void
rtp_json_append_decoded (GString *out, const char *text, gsize len)
{
  const char *p = text, *end = text + len;

  if (len >= 2 && text[0] == '"' && text[len - 1] == '"')
    {
      p++;
      end--;
    }
  while (p < end)
    {
      const char *run = p;
      gunichar c;
      int u;

      while (p < end && *p != '\\')
        p++;
      g_string_append_len (out, run, p - run);
      if (p >= end)
        break;
      p++; /* the backslash */
      if (p >= end)
        break;
      switch (*p)
        {
          case 'b':
            g_string_append_c (out, '\b');
            break;
          case 'f':
            g_string_append_c (out, '\f');
            break;
          case 'n':
            g_string_append_c (out, '\n');
            break;
          case 'r':
            g_string_append_c (out, '\r');
            break;
          case 't':
            g_string_append_c (out, '\t');
            break;
          case 'u':
            u = hex4 (p + 1, end);
            if (u < 0)
              {
                g_string_append_unichar (out, 0xfffd);
                break;
              }
            p += 4;
            c = (gunichar) u;
            if (c >= 0xd800 && c < 0xdc00 && end - p > 6 && p[1] == '\\' && p[2] == 'u')
              {
                int lo = hex4 (p + 3, end);
                if (lo >= 0xdc00 && lo < 0xe000)
                  {
                    c = 0x10000 + ((c - 0xd800) << 10) + ((gunichar) lo - 0xdc00);
                    p += 6;
                  }
              }
            if (c == 0 || (c >= 0xd800 && c < 0xe000))
              c = 0xfffd; /* no NUL in a text cell, and no lone surrogate */
            g_string_append_unichar (out, c);
            break;
          default: /* " \ / */
            g_string_append_c (out, *p);
            break;
        }
      p++;
    }
}
