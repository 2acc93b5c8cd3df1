/* rtp-archiver-parser.c: a streaming reader for [{"meta": {…}, "data": [{"secs", "nanos", "val", …}, …]}, …]
 *
 * json-glib 1.6 only builds whole trees, and a million points are ~80 MB of JSON. This reader
 * keeps only the unfinished tail of the input: each sample object is handed to the callback
 * as soon as its closing brace has arrived. Values are passed on as the JSON text the
 * appliance wrote (numbers keep their digits); bare NaN/Infinity tokens, which the appliance
 * may write but JSON does not allow, become null. */
#define G_LOG_DOMAIN "RtpArchiverParser"

#include "rtp-archiver-parser.h"
#include "rtp-error.h"
#include "rtp-json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
  S_START,      /* before the outer '[' */
  S_PV_ITEM,    /* inside the outer array: '{', ',' or ']' */
  S_PV_KEY,     /* inside a PV object: a key, ',' or '}' */
  S_DATA_START, /* after "data": — expecting '[' */
  S_DATA_ITEM,  /* inside "data": a sample '{', ',' or ']' */
  S_END,        /* after the outer ']' */
} State;

struct _RtpArchiverParser {
  GString *buf;
  State state;
  gboolean bins;
  RtpSampleFunc func;
  gpointer user_data;
  guint64 count;
  GString *scratch;
  RtpPvStartFunc pv_func; /* (nullable) */
  char *name;             /* (owned) (nullable) the current PV object's meta name */
  guint64 pv_bytes;       /* bytes fed since the current PV object began (about: counted per feed) */
};

#define MAX_PENDING ((gsize) 16 * 1024 * 1024) /* one value may not exceed this */

RtpArchiverParser *
rtp_archiver_parser_new (gboolean bins, RtpSampleFunc func, gpointer user_data)
{
  RtpArchiverParser *p = g_new0 (RtpArchiverParser, 1);
  p->buf = g_string_sized_new (65536);
  p->scratch = g_string_new (NULL);
  p->bins = bins;
  p->func = func;
  p->user_data = user_data;
  return p;
}

void
rtp_archiver_parser_free (RtpArchiverParser *p)
{
  if (p == NULL)
    return;
  g_string_free (p->buf, TRUE);
  g_string_free (p->scratch, TRUE);
  g_free (p->name);
  g_free (p);
}

guint64
rtp_archiver_parser_get_pv_bytes (RtpArchiverParser *p)
{
  return p->pv_bytes;
}

const char *
rtp_archiver_parser_get_name (RtpArchiverParser *p)
{
  return p->name;
}

void
rtp_archiver_parser_set_pv_func (RtpArchiverParser *p, RtpPvStartFunc func)
{
  p->pv_func = func;
}

guint64
rtp_archiver_parser_get_count (RtpArchiverParser *p)
{
  return p->count;
}

static gboolean
bad (GError **error, const char *why)
{
  g_set_error (error, RTP_ERROR, RTP_ERROR_UPSTREAM, "malformed archiver answer: %s", why);
  return FALSE;
}

static gsize
skip_ws (const char *s, gsize i, gsize n)
{
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
    i++;
  return i;
}

/* End (exclusive) of the JSON string starting at s[i] == '"', or 0 when incomplete. */
static gsize
string_end (const char *s, gsize i, gsize n)
{
  for (i = i + 1; i < n; i++)
    {
      if (s[i] == '\\')
        i++;
      else if (s[i] == '"')
        return i + 1;
    }
  return 0;
}

/* What value_end() looks for: 1 a quote, 2 an opening and 3 a closing bracket, 4 a delimiter of a
 * scalar token (',', white space; the closing brackets end a token too). One table look-up per byte. */
static const guint8 token_class[256] = {
  ['"'] = 1, ['{'] = 2, ['['] = 2, ['}'] = 3, [']'] = 3, [','] = 4, [' '] = 4, ['\n'] = 4, ['\r'] = 4, ['\t'] = 4,
};

/* End (exclusive) of the JSON value starting at s[i], 0 when incomplete, (gsize) -1 when invalid. */
static gsize
value_end (const char *s, gsize i, gsize n)
{
  if (i >= n)
    return 0;
  if (s[i] == '"')
    return string_end (s, i, n);
  if (s[i] == '{' || s[i] == '[')
    {
      int depth = 0;
      for (; i < n; i++)
        {
          switch (token_class[(guchar) s[i]])
            {
              case 1:
                {
                  gsize e = string_end (s, i, n);
                  if (e == 0)
                    return 0;
                  i = e - 1;
                }
                break;
              case 2:
                depth++;
                break;
              case 3:
                if (--depth == 0)
                  return i + 1;
                if (depth < 0)
                  return (gsize) -1;
                break;
              default:
                break;
            }
        }
      return 0;
    }
  /* a scalar token ends at a delimiter; at the end of the buffer it may go on */
  for (gsize j = i; j < n; j++)
    if (token_class[(guchar) s[j]] >= 3)
      return j > i ? j : (gsize) -1;
  return 0;
}

/* A plain integer token (-?[0-9]{1,18}) at s[i] followed by a delimiter: its end, with its value in
 * *value, in one pass; 0 when the token is something else or may go on past the buffer. The common
 * case of a sample's keys. */
static gsize
scan_int (const char *s, gsize i, gsize n, gint64 *value)
{
  gboolean negative = i < n && s[i] == '-';
  gsize j = negative ? i + 1 : i;
  gsize first = j;
  gint64 v = 0;

  while (j < n && s[j] >= '0' && s[j] <= '9' && j - first < 18)
    v = v * 10 + (s[j++] - '0');
  if (j == first || j >= n || token_class[(guchar) s[j]] < 3)
    return 0;
  *value = negative ? -v : v;
  return j;
}

/* A JSON number at s[i] followed by a delimiter: its end, in one pass; 0 when the token is something
 * else or may go on past the buffer. The common case of a sample's value. */
static gsize
scan_number (const char *s, gsize i, gsize n, gboolean *exponent)
{
  gsize span = i < n ? rtp_json_number_span (s + i, n - i, exponent) : 0;

  if (span == 0 || i + span >= n || token_class[(guchar) s[i + span]] < 3)
    return 0;
  return i + span;
}

static gboolean
parse_int (const char *s, gsize len, gint64 *out)
{
  char tmp[32];
  char *end = NULL;

  /* the usual case by hand: up to 18 digits, maybe a minus */
  if (len > 0 && len <= 18)
    {
      gsize i = s[0] == '-' ? 1 : 0;
      gint64 v = 0;
      for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (s[i] - '0');
      if (i == len && len > (s[0] == '-' ? 1u : 0u))
        {
          *out = s[0] == '-' ? -v : v;
          return TRUE;
        }
    }
  if (len == 0 || len >= sizeof tmp)
    return FALSE;
  memcpy (tmp, s, len);
  tmp[len] = '\0';
  errno = 0;
  *out = g_ascii_strtoll (tmp, &end, 10);
  return *end == '\0' && errno == 0;
}

/* The "name" member of a flat meta object, or NULL. */
static char *
meta_name (const char *s, gsize n)
{
  gsize i = 1;

  while (TRUE)
    {
      gsize key_end, v_start, v_end;

      i = skip_ws (s, i, n);
      if (i < n && s[i] == ',')
        i = skip_ws (s, i + 1, n);
      if (i >= n || s[i] != '"' || (key_end = string_end (s, i, n)) == 0)
        return NULL;
      v_start = skip_ws (s, key_end, n);
      if (v_start >= n || s[v_start] != ':')
        return NULL;
      v_start = skip_ws (s, v_start + 1, n);
      v_end = value_end (s, v_start, n);
      if (v_end == 0 || v_end == (gsize) -1)
        return NULL;
      if (key_end - i == 6 && memcmp (s + i, "\"name\"", 6) == 0 && s[v_start] == '"')
        {
          g_autoptr (GString) name = g_string_new (NULL);
          rtp_json_append_decoded (name, s + v_start, v_end - v_start);
          return g_utf8_validate (name->str, (gssize) name->len, NULL) ? g_string_free (g_steal_pointer (&name), FALSE)
                                                                       : NULL;
        }
      i = v_end;
    }
}

/* Checks a value and returns its JSON text (possibly rewritten into scratch): numbers that are not
 * finite doubles become null (JSON has no inf), strings and waveforms are validated without
 * recursion. Returns the problem; RTP_JSON_TOO_DEEP makes a bad sample, not a bad answer. */
static RtpJsonProblem
normalize_value (RtpArchiverParser *p, const char **v, gsize *len, guint *nonfinite)
{
  const char *s = *v;
  gsize n = *len;
  RtpJsonProblem problem;

  if (rtp_json_is_number (s, n))
    {
      if (!rtp_json_number_is_finite (s, n))
        {
          *v = "null";
          *len = 4;
          (*nonfinite)++;
        }
      return RTP_JSON_OK;
    }
  if ((n == 4 && memcmp (s, "true", 4) == 0) || (n == 5 && memcmp (s, "false", 5) == 0) ||
      (n == 4 && memcmp (s, "null", 4) == 0))
    return RTP_JSON_OK;
  if ((n == 3 && memcmp (s, "NaN", 3) == 0) || (n == 8 && memcmp (s, "Infinity", 8) == 0) ||
      (n == 9 && memcmp (s, "-Infinity", 9) == 0))
    {
      *v = "null";
      *len = 4;
      return RTP_JSON_OK;
    }
  if (s[0] == '"' || s[0] == '[' || s[0] == '{')
    {
      g_string_truncate (p->scratch, 0);
      problem = rtp_json_normalize (s, n, RTP_JSON_MAX_DEPTH, p->scratch, nonfinite);
      if (problem != RTP_JSON_OK)
        return problem;
      *v = p->scratch->str;
      *len = p->scratch->len;
      return RTP_JSON_OK;
    }
  return RTP_JSON_SYNTAX;
}

/* Splits a flat array of numbers "[a, b, c, d, e]" into spans; FALSE unless exactly 5 numbers. */
static gboolean
split_bins (const char *s, gsize n, const char *part[5], gsize part_len[5])
{
  gsize i = 1;
  int k = 0;

  if (n < 2 || s[0] != '[' || s[n - 1] != ']')
    return FALSE;
  while (k < 5)
    {
      gsize start = skip_ws (s, i, n - 1);
      gsize end = start;
      while (end < n - 1 && s[end] != ',' && s[end] != ' ')
        end++;
      if (!rtp_json_is_number (s + start, end - start))
        return FALSE;
      part[k] = s + start;
      part_len[k] = end - start;
      k++;
      i = skip_ws (s, end, n - 1);
      if (k < 5)
        {
          if (i >= n - 1 || s[i] != ',')
            return FALSE;
          i++;
        }
    }
  return skip_ws (s, i, n - 1) == n - 1;
}

#define NEED_MORE()                                                                                                    \
  do                                                                                                                   \
    {                                                                                                                  \
      *used = 0;                                                                                                       \
      return TRUE;                                                                                                     \
    }                                                                                                                  \
  while (0)

/* Reads the sample object starting at s[0] == '{' in one pass from at most @n bytes and hands it
 * to the reader: *used is its length, or 0 when it is not complete yet (more input needed). */
static gboolean
read_sample (RtpArchiverParser *p, const char *s, gsize n, gsize *used, GError **error)
{
  RtpSample sample = { .severity = -1, .status = -1 };
  gboolean have_secs = FALSE;
  gsize i = 1;
  const char *val = "null";
  gsize val_len = 4;
  gboolean val_number = FALSE; /* val is a number scanned by scan_number() or scan_int() */
  gboolean exponent = FALSE;

  i = skip_ws (s, i, n);
  if (i >= n)
    NEED_MORE ();
  if (s[i] == '}')
    return bad (error, "an empty sample");
  while (TRUE)
    {
      gsize key_end, v_start, v_end;
      const char *key;
      gsize key_len;
      gint64 int_value = 0;
      gboolean is_val, is_int, is_number, v_exponent = FALSE;

      i = skip_ws (s, i, n);
      if (i >= n)
        NEED_MORE ();
      if (s[i] != '"')
        return bad (error, "a sample is not an object of keys");
      key_end = string_end (s, i, n);
      if (key_end == 0)
        NEED_MORE ();
      key = s + i + 1;
      key_len = key_end - i - 2;
      i = skip_ws (s, key_end, n);
      if (i >= n)
        NEED_MORE ();
      if (s[i] != ':')
        return bad (error, "missing ':'");
      v_start = skip_ws (s, i + 1, n);
      is_val = key_len == 3 && memcmp (key, "val", 3) == 0;
      is_int = (v_end = scan_int (s, v_start, n, &int_value)) != 0;
      is_number = is_int || (is_val && (v_end = scan_number (s, v_start, n, &v_exponent)) != 0);
      if (!is_number)
        v_end = value_end (s, v_start, n); /* not a plain number */
      if (v_end == (gsize) -1)
        return bad (error, "bad value");
      if (v_end == 0)
        NEED_MORE ();
      if (!is_int && !is_val && !parse_int (s + v_start, v_end - v_start, &int_value))
        int_value = G_MININT64; /* not an integer: refused below where one is needed */
      if (key_len == 4 && memcmp (key, "secs", 4) == 0)
        {
          if (int_value < -62135596800 || int_value > 253402300799)
            return bad (error, "secs is not a time");
          sample.secs = int_value;
          have_secs = TRUE;
        }
      else if (key_len == 5 && memcmp (key, "nanos", 5) == 0)
        {
          if (int_value < 0 || int_value > 999999999)
            return bad (error, "nanos out of range");
          sample.nanos = (gint32) int_value;
        }
      else if (is_val)
        {
          val = s + v_start;
          val_len = v_end - v_start;
          /* scan_int() takes leading zeros, which JSON does not */
          val_number = is_int ? rtp_json_is_number (val, val_len) : is_number;
          exponent = !is_int && v_exponent;
        }
      else if ((key_len == 8 && memcmp (key, "severity", 8) == 0) || (key_len == 6 && memcmp (key, "status", 6) == 0))
        {
          /* small integers by EPICS; anything else is taken as not given */
          if (int_value >= 0 && int_value <= 65535)
            {
              if (key_len == 8)
                sample.severity = (gint) int_value;
              else
                sample.status = (gint) int_value;
            }
        }
      i = skip_ws (s, v_end, n);
      if (i >= n)
        NEED_MORE ();
      if (s[i] == '}')
        break;
      if (s[i] != ',')
        return bad (error, "expected ',' or '}' in a sample");
      i++;
    }
  *used = i + 1;
  if (!have_secs)
    return bad (error, "a sample has no secs");

  if (p->bins && val[0] == '[')
    {
      const char *part[5];
      gsize part_len[5];
      if (split_bins (val, val_len, part, part_len))
        {
          sample.binned = TRUE;
          sample.value = part[0];
          sample.value_len = part_len[0];
          sample.std = part[1];
          sample.std_len = part_len[1];
          sample.min = part[2];
          sample.min_len = part_len[2];
          sample.max = part[3];
          sample.max_len = part_len[3];
          sample.count = part[4];
          sample.count_len = part_len[4];
        }
    }
  if (!sample.binned && val_number)
    {
      /* the common case, checked while it was scanned */
      if (exponent && !rtp_json_number_is_finite (val, val_len))
        {
          val = "null";
          val_len = 4;
          sample.nonfinite++;
        }
      sample.value = val;
      sample.value_len = val_len;
    }
  else if (!sample.binned)
    {
      switch (normalize_value (p, &val, &val_len, &sample.nonfinite))
        {
          case RTP_JSON_OK:
            sample.value = val;
            sample.value_len = val_len;
            break;
          case RTP_JSON_TOO_DEEP:
            sample.too_deep = TRUE; /* handed on so that the reader can say so; the answer goes on */
            break;
          default:
            return bad (error, "a value is not JSON");
        }
    }
  else if (!rtp_json_number_is_finite (sample.value, sample.value_len) ||
           !rtp_json_number_is_finite (sample.std, sample.std_len) ||
           !rtp_json_number_is_finite (sample.min, sample.min_len) ||
           !rtp_json_number_is_finite (sample.max, sample.max_len) ||
           !rtp_json_number_is_finite (sample.count, sample.count_len))
    {
      /* a bin with a number that is not finite: its value is not known */
      sample.binned = FALSE;
      sample.value = "null";
      sample.value_len = 4;
      sample.nonfinite++;
    }
  p->count++;
  if (!p->func (&sample, p->user_data))
    return bad (error, "stopped by the reader");
  return TRUE;
}

/* Runs the state machine over what is buffered; stops where input runs out. */
static gboolean
run (RtpArchiverParser *p, const char *s, gsize n, gsize *consumed, GError **error)
{
  gsize i = 0;

  while (TRUE)
    {
      i = skip_ws (s, i, n);
      if (i >= n)
        break;
      switch (p->state)
        {
          case S_START:
            if (s[i] != '[')
              return bad (error, "the answer is not a JSON array");
            p->state = S_PV_ITEM;
            i++;
            break;
          case S_PV_ITEM:
            if (s[i] == ']')
              p->state = S_END;
            else if (s[i] == '{')
              {
                p->state = S_PV_KEY;
                g_clear_pointer (&p->name, g_free);
                p->pv_bytes = 0;
              }
            else if (s[i] != ',')
              return bad (error, "unexpected text in the outer array");
            i++;
            break;
          case S_PV_KEY:
            if (s[i] == '}')
              {
                p->state = S_PV_ITEM;
                i++;
              }
            else if (s[i] == ',')
              i++;
            else if (s[i] == '"')
              {
                gsize key_end = string_end (s, i, n);
                gsize colon, v_start, v_end;
                gboolean is_data, is_meta;
                if (key_end == 0)
                  goto need_more;
                is_data = key_end - i == 6 && memcmp (s + i, "\"data\"", 6) == 0;
                is_meta = key_end - i == 6 && memcmp (s + i, "\"meta\"", 6) == 0;
                colon = skip_ws (s, key_end, n);
                if (colon >= n)
                  goto need_more;
                if (s[colon] != ':')
                  return bad (error, "missing ':' after a key");
                v_start = skip_ws (s, colon + 1, n);
                if (v_start >= n)
                  goto need_more;
                if (is_data)
                  {
                    if (p->pv_func != NULL && !p->pv_func (p->name, p->user_data))
                      return bad (error, "stopped by the reader");
                    p->state = S_DATA_START;
                    i = v_start;
                    break;
                  }
                v_end = value_end (s, v_start, n);
                if (v_end == (gsize) -1)
                  return bad (error, "bad value");
                if (v_end == 0)
                  goto need_more;
                if (is_meta && s[v_start] == '{')
                  {
                    g_free (p->name);
                    p->name = meta_name (s + v_start, v_end - v_start);
                  }
                i = v_end; /* anything else: skipped */
              }
            else
              return bad (error, "unexpected text in a PV object");
            break;
          case S_DATA_START:
            if (s[i] != '[')
              return bad (error, "data is not an array");
            p->state = S_DATA_ITEM;
            i++;
            break;
          case S_DATA_ITEM:
            if (s[i] == ']')
              {
                p->state = S_PV_KEY;
                i++;
              }
            else if (s[i] == ',')
              i++;
            else if (s[i] == '{')
              {
                gsize used = 0;
                if (!read_sample (p, s + i, n - i, &used, error))
                  return FALSE;
                if (used == 0)
                  goto need_more;
                i += used;
              }
            else
              return bad (error, "a sample is not an object");
            break;
          case S_END:
            return bad (error, "text after the end of the answer");
        }
    }
need_more:
  if (n - i > MAX_PENDING)
    return bad (error, "a value is too large");
  *consumed = i;
  return TRUE;
}

gboolean
rtp_archiver_parser_feed (RtpArchiverParser *p, const char *data, gsize len, GError **error)
{
  gsize used = 0;

  p->pv_bytes += len;
  if (p->buf->len == 0)
    {
      /* read straight from the transfer's buffer; only an unfinished tail is kept */
      if (!run (p, data, len, &used, error))
        return FALSE;
      g_string_append_len (p->buf, data + used, (gssize) (len - used));
      return TRUE;
    }
  g_string_append_len (p->buf, data, (gssize) len);
  if (!run (p, p->buf->str, p->buf->len, &used, error))
    return FALSE;
  g_string_erase (p->buf, 0, (gssize) used);
  return TRUE;
}

gboolean
rtp_archiver_parser_finish (RtpArchiverParser *p, GError **error)
{
  gsize used = 0;

  if (!run (p, p->buf->str, p->buf->len, &used, error))
    return FALSE;
  g_string_erase (p->buf, 0, (gssize) used);
  for (gsize i = 0; i < p->buf->len; i++)
    if (!g_ascii_isspace (p->buf->str[i]))
      return bad (error, "the answer ended early");
  if (p->state != S_END)
    return bad (error, "the answer ended early");
  return TRUE;
}

/* ---- getDataAtTime: {"<pv>": {sample}, …} ---------------------------------------------------- */

typedef struct {
  const char *pv;
  RtpNamedSampleFunc func;
  gpointer user_data;
} AtContext;

static gboolean
at_sample (const RtpSample *sample, gpointer user_data)
{
  AtContext *ctx = user_data;
  return ctx->func (ctx->pv, sample, ctx->user_data);
}

gboolean
rtp_archiver_parse_values_at (const char *s, gsize n, RtpNamedSampleFunc func, gpointer user_data, GError **error)
{
  AtContext ctx = { .func = func, .user_data = user_data };
  g_autoptr (RtpArchiverParser) p = rtp_archiver_parser_new (FALSE, at_sample, &ctx);
  g_autoptr (GString) key = g_string_new (NULL);
  gsize i = skip_ws (s, 0, n);

  if (i >= n || s[i] != '{')
    return bad (error, "the answer is not a JSON object");
  i++;
  while (TRUE)
    {
      gsize key_end, v_start, v_end;

      i = skip_ws (s, i, n);
      if (i >= n)
        return bad (error, "the answer ended early");
      if (s[i] == '}')
        {
          i++;
          break;
        }
      if (s[i] == ',')
        {
          i++;
          continue;
        }
      if (s[i] != '"' || (key_end = string_end (s, i, n)) == 0)
        return bad (error, "expected a PV name");
      g_string_truncate (key, 0);
      rtp_json_append_decoded (key, s + i, key_end - i);
      i = skip_ws (s, key_end, n);
      if (i >= n || s[i] != ':')
        return bad (error, "missing ':' after a PV name");
      v_start = skip_ws (s, i + 1, n);
      v_end = value_end (s, v_start, n);
      if (v_end == 0 || v_end == (gsize) -1)
        return bad (error, "bad value");
      if (s[v_start] == '{')
        {
          gsize used = 0;
          ctx.pv = key->str;
          if (!read_sample (p, s + v_start, v_end - v_start, &used, error))
            return FALSE;
          if (used != v_end - v_start)
            return bad (error, "a sample ends early");
        }
      else if (!(v_end - v_start == 4 && memcmp (s + v_start, "null", 4) == 0))
        return bad (error, "a PV's value is not a sample");
      i = v_end;
    }
  if (skip_ws (s, i, n) != n)
    return bad (error, "text after the end of the answer");
  return TRUE;
}

/* ---- getMatchingPVs: ["<pv>", …] -------------------------------------------------------------- */

GStrv
rtp_archiver_parse_names (const char *s, gsize n, guint max, GError **error)
{
  g_autoptr (GStrvBuilder) names = g_strv_builder_new ();
  g_autoptr (GString) name = g_string_new (NULL);
  gsize i = skip_ws (s, 0, n);
  guint count = 0;

  if (i >= n || s[i] != '[')
    {
      bad (error, "the answer is not a JSON array");
      return NULL;
    }
  i++;
  while (TRUE)
    {
      gsize end;

      i = skip_ws (s, i, n);
      if (i >= n)
        {
          bad (error, "the answer ended early");
          return NULL;
        }
      if (s[i] == ']')
        {
          i++;
          break;
        }
      if (s[i] == ',')
        {
          i++;
          continue;
        }
      if (s[i] != '"' || (end = string_end (s, i, n)) == 0)
        {
          bad (error, "a PV name is not a string");
          return NULL;
        }
      g_string_truncate (name, 0);
      rtp_json_append_decoded (name, s + i, end - i);
      if (count < max && g_utf8_validate (name->str, (gssize) name->len, NULL) && name->len > 0)
        {
          g_strv_builder_add (names, name->str);
          count++;
        }
      i = end;
    }
  if (skip_ws (s, i, n) != n)
    {
      bad (error, "text after the end of the answer");
      return NULL;
    }
  return g_strv_builder_end (names);
}
