/* rtp-time.c: parsing the user's time window and writing sample times
 *
 * The conversions are done by hand from the zone's offsets: GLib's own local-time
 * constructors do not document which occurrence of an ambiguous hour they take, and the
 * contract fixes it (first occurrence; a skipped time moves forward by the gap). */
#define G_LOG_DOMAIN "RtpTime"

#include "rtp-time.h"

#include <stdio.h>
#include <string.h>

static gint32
lookup_offset (GTimeZone *tz, gint64 utc)
{
  gint interval = g_time_zone_find_interval (tz, G_TIME_TYPE_UNIVERSAL, utc);
  return g_time_zone_get_offset (tz, interval);
}

/* The offset of @tz at @utc. Formatting a million samples asks for the same few offsets over and
 * over, and g_time_zone_find_interval() is a search: the offset of the last 15-minute slot asked
 * is kept (per thread, with a reference on its zone), when the zone has one offset for the whole
 * slot — a slot with a transition in it is looked up every time. */
#define OFFSET_SLOT 900

static __thread struct {
  GTimeZone *tz; /* (owned) (nullable) */
  gint64 slot;
  gint32 offset;
  gboolean whole; /* the slot has one offset */
} kept_offset;

static gint32
offset_at (GTimeZone *tz, gint64 utc)
{
  gint64 slot = utc >= 0 ? utc / OFFSET_SLOT : (utc - (OFFSET_SLOT - 1)) / OFFSET_SLOT;

  if (kept_offset.tz != tz)
    {
      if (kept_offset.tz != NULL)
        g_time_zone_unref (kept_offset.tz);
      kept_offset.tz = g_time_zone_ref (tz);
      kept_offset.slot = slot + 1; /* not this one */
    }
  if (kept_offset.slot != slot)
    {
      gint32 first = lookup_offset (tz, slot * OFFSET_SLOT);
      kept_offset.slot = slot;
      kept_offset.offset = first;
      kept_offset.whole = first == lookup_offset (tz, slot * OFFSET_SLOT + OFFSET_SLOT - 1);
    }
  return kept_offset.whole ? kept_offset.offset : lookup_offset (tz, utc);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static gint64
days_from_civil (gint64 y, unsigned m, unsigned d)
{
  gint64 era;
  unsigned yoe, doy, doe;

  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = (unsigned) (y - era * 400);
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (gint64) doe - 719468;
}

static void
civil_from_days (gint64 z, gint64 *y, unsigned *m, unsigned *d)
{
  gint64 era;
  unsigned doe, yoe, doy, mp;

  z += 719468;
  era = (z >= 0 ? z : z - 146096) / 146097;
  doe = (unsigned) (z - era * 146097);
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (gint64) yoe + era * 400 + (*m <= 2);
}

static gboolean
valid_date (int y, int mo, int d, int h, int mi, double s)
{
  static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
  gboolean leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

  if (y < 1 || y > 9999 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s >= 60)
    return FALSE;
  return d <= mdays[mo - 1] && !(mo == 2 && d == 29 && !leap);
}

/* Local wall-clock seconds (as if UTC) → UTC seconds, by the contract's rules. */
static gint64
local_to_utc (GTimeZone *tz, gint64 local)
{
  gint32 before = offset_at (tz, local - 86400);
  gint32 after = offset_at (tz, local + 86400);
  gint64 best = G_MAXINT64;
  gint32 offsets[2] = { before, after };

  for (int k = 0; k < 2; k++)
    {
      gint64 utc = local - offsets[k];
      if (offset_at (tz, utc) == offsets[k] && utc < best)
        best = utc; /* the earliest instant: the first occurrence */
    }
  if (best != G_MAXINT64)
    return best;
  /* in a gap: read it with the offset before the change, which moves it forward by the gap */
  return local - before;
}

gboolean
rtp_time_parse (const char *text, GTimeZone *tz, gint64 *out_us)
{
  int y, mo, d, h, mi, n = 0;
  double s = 0;
  const char *rest;
  g_autofree char *copy = NULL;

  if (text == NULL || strlen (text) > 64)
    return FALSE;
  copy = g_strstrip (g_strdup (text));
  if (sscanf (copy, "%4d-%2d-%2d%*1[ T]%2d:%2d%n", &y, &mo, &d, &h, &mi, &n) != 5 || n == 0)
    return FALSE;
  rest = copy + n;
  if (rest[0] == ':')
    {
      char *end = NULL;
      if (!g_ascii_isdigit (rest[1]) || !g_ascii_isdigit (rest[2]))
        return FALSE;
      s = g_ascii_strtod (rest + 1, &end);
      if (end == rest + 1 || (end - rest - 1 > 2 && rest[3] != '.'))
        return FALSE;
      rest = end;
    }
  if (!valid_date (y, mo, d, h, mi, s))
    return FALSE;
  {
    gint64 whole = (gint64) s;
    gint64 local = days_from_civil (y, (unsigned) mo, (unsigned) d) * 86400 + (gint64) h * 3600 + (gint64) mi * 60 +
                   whole;
    gint64 frac_us = (gint64) ((s - (double) whole) * 1e6 + 0.5);
    gint64 utc;

    if (rest[0] == '\0')
      utc = local_to_utc (tz, local);
    else if ((rest[0] == 'Z' || rest[0] == 'z') && rest[1] == '\0')
      utc = local;
    else if ((rest[0] == '+' || rest[0] == '-') && g_ascii_isdigit (rest[1]) && g_ascii_isdigit (rest[2]))
      {
        int oh = (rest[1] - '0') * 10 + (rest[2] - '0');
        int om = 0;
        const char *m = rest + 3;
        if (*m == ':')
          m++;
        if (g_ascii_isdigit (m[0]) && g_ascii_isdigit (m[1]))
          {
            om = (m[0] - '0') * 10 + (m[1] - '0');
            m += 2;
          }
        if (*m != '\0' || oh > 23 || om > 59)
          return FALSE;
        utc = local - (rest[0] == '+' ? 1 : -1) * ((gint64) oh * 3600 + (gint64) om * 60);
      }
    else
      return FALSE;
    *out_us = utc * G_USEC_PER_SEC + frac_us;
  }
  return TRUE;
}

static inline char *
put_digits (char *p, guint64 v, int width)
{
  for (int i = width - 1; i >= 0; i--)
    {
      p[i] = (char) ('0' + v % 10);
      v /= 10;
    }
  return p + width;
}

/* Writes the date and time of @local (seconds, already in the zone wanted) as
 * "YYYY-MM-DD<sep>HH:MM:SS" and the fraction of @nanos; returns the length. Digits are written by
 * hand: this runs once per sample of every answer, and printf was a third of its time. The text up
 * to the minute is kept: the next sample is usually in the same minute. */
static __thread struct {
  gint64 minute; /* @local / 60, rounded down */
  char sep;
  char text[40]; /* "YYYY-MM-DD<sep>HH:MM:" of @minute */
  int len;
} kept_minute = { G_MININT64, 0, "", 0 };

static int
format_civil (gint64 local, gint32 nanos, char sep, char *buf)
{
  gint64 minute = local >= 0 ? local / 60 : (local - 59) / 60;
  char *p = buf;

  if (kept_minute.minute != minute || kept_minute.sep != sep)
    {
      gint64 days = local >= 0 ? local / 86400 : (local - 86399) / 86400;
      gint64 sod = local - days * 86400;
      gint64 y;
      unsigned m, d;
      char *q = kept_minute.text;

      civil_from_days (days, &y, &m, &d);
      if (y < 0 || y > 9999)
        q += snprintf (q, 16, "%04" G_GINT64_FORMAT, y);
      else
        q = put_digits (q, (guint64) y, 4);
      *q++ = '-';
      q = put_digits (q, m, 2);
      *q++ = '-';
      q = put_digits (q, d, 2);
      *q++ = sep;
      q = put_digits (q, (guint64) (sod / 3600), 2);
      *q++ = ':';
      q = put_digits (q, (guint64) (sod / 60 % 60), 2);
      *q++ = ':';
      kept_minute.len = (int) (q - kept_minute.text);
      kept_minute.minute = minute;
      kept_minute.sep = sep;
    }
  memcpy (p, kept_minute.text, (gsize) kept_minute.len);
  p += kept_minute.len;
  p = put_digits (p, (guint64) (local - minute * 60), 2);
  if (nanos != 0)
    {
      *p++ = '.';
      p = nanos % 1000 == 0 ? put_digits (p, (guint64) nanos / 1000, 6) : put_digits (p, (guint64) nanos, 9);
    }
  *p = '\0';
  return (int) (p - buf);
}

gsize
rtp_time_format (GTimeZone *tz, gint64 secs, gint32 nanos, char *buf)
{
  gint32 offset = offset_at (tz, secs);
  int off_abs = offset < 0 ? -offset : offset;
  int len = format_civil (secs + offset, nanos, ' ', buf);
  char *p = buf + len;

  *p++ = offset < 0 ? '-' : '+';
  p = put_digits (p, (guint64) off_abs / 3600 % 100, 2);
  *p++ = ':';
  p = put_digits (p, (guint64) off_abs / 60 % 60, 2);
  *p = '\0';
  return (gsize) (p - buf);
}

gsize
rtp_time_format_us (GTimeZone *tz, gint64 us, char *buf)
{
  gint64 secs = us >= 0 ? us / G_USEC_PER_SEC : (us - (G_USEC_PER_SEC - 1)) / G_USEC_PER_SEC;

  return rtp_time_format (tz, secs, (gint32) ((us - secs * G_USEC_PER_SEC) * 1000), buf);
}

gsize
rtp_time_format_utc (gint64 secs, gint32 nanos, char *buf)
{
  int len = format_civil (secs, nanos, 'T', buf);

  buf[len++] = 'Z';
  buf[len] = '\0';
  return (gsize) len;
}

gsize
rtp_time_format_epoch (gint64 secs, gint32 nanos, char *buf)
{
  char *p = buf;
  guint64 whole;
  char digits[24];
  int n = 0;

  if (secs < 0 && nanos > 0)
    {
      *p++ = '-';
      whole = (guint64) (-(secs + 1));
      nanos = 1000000000 - nanos;
    }
  else if (secs < 0)
    {
      *p++ = '-';
      whole = (guint64) 0 - (guint64) secs;
    }
  else
    whole = (guint64) secs;
  do
    {
      digits[n++] = (char) ('0' + whole % 10);
      whole /= 10;
    }
  while (whole > 0);
  while (n > 0)
    *p++ = digits[--n];
  *p++ = '.';
  p = put_digits (p, (guint64) nanos, 9);
  *p = '\0';
  return (gsize) (p - buf);
}

gsize
rtp_time_format_compact (GTimeZone *tz, gint64 secs, char *buf)
{
  gint64 local = secs + offset_at (tz, secs);
  gint64 days = local >= 0 ? local / 86400 : (local - 86399) / 86400;
  gint64 sod = local - days * 86400;
  gint64 y;
  unsigned m, d;

  civil_from_days (days, &y, &m, &d);
  return (gsize) snprintf (buf, 64, "%04" G_GINT64_FORMAT "%02u%02uT%02d%02d%02d", y, m, d, (int) (sod / 3600),
                           (int) (sod / 60 % 60), (int) (sod % 60));
}

char *
rtp_time_iso_utc (gint64 us)
{
  gint64 secs = us >= 0 ? us / G_USEC_PER_SEC : (us - (G_USEC_PER_SEC - 1)) / G_USEC_PER_SEC;
  gint64 ms = (us - secs * G_USEC_PER_SEC) / 1000;
  gint64 days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
  gint64 sod = secs - days * 86400;
  gint64 y;
  unsigned m, d;

  civil_from_days (days, &y, &m, &d);
  return g_strdup_printf ("%04" G_GINT64_FORMAT "-%02u-%02uT%02d:%02d:%02d.%03dZ", y, m, d, (int) (sod / 3600),
                          (int) (sod / 60 % 60), (int) (sod % 60), (int) ms);
}
