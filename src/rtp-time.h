/* rtp-time.h: the time forms of the /data API */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* "YYYY-MM-DD HH:MM[:SS[.frac]]" is wall-clock time in @tz (an ambiguous time takes its
 * first occurrence; a time in a skipped hour moves forward by the gap); ISO 8601 with 'Z'
 * or an offset is absolute. Returns microseconds since the epoch. */
gboolean rtp_time_parse (const char *text, GTimeZone *tz, gint64 *out_us);

/* "YYYY-MM-DD HH:MM:SS[.ffffff|.fffffffff]±HH:MM" in @tz: no fraction when @nanos is 0,
 * six digits when it is a whole number of microseconds, else nine. @buf holds 64 bytes;
 * returns the length written. */
gsize rtp_time_format (GTimeZone *tz, gint64 secs, gint32 nanos, char *buf);

/* rtp_time_format() of @us (microseconds since the epoch, negative ones too). */
gsize rtp_time_format_us (GTimeZone *tz, gint64 us, char *buf);

/* "YYYY-MM-DDTHH:MM:SS[.ffffff|.fffffffff]Z": UTC, the fraction as in rtp_time_format(). @buf holds
 * 64 bytes; returns the length written. */
gsize rtp_time_format_utc (gint64 secs, gint32 nanos, char *buf);

/* "<seconds since the epoch>.<nine digits>", e.g. "1642250254.793888256" (or "-1.500000000"). */
gsize rtp_time_format_epoch (gint64 secs, gint32 nanos, char *buf);

/* "YYYYMMDDTHHMMSS" in @tz, for file names. @buf holds 64 bytes. */
gsize rtp_time_format_compact (GTimeZone *tz, gint64 secs, char *buf);

/* "YYYY-MM-DDTHH:MM:SS.mmmZ", as the appliance reads it */
/* Returns: (transfer full) */
char *rtp_time_iso_utc (gint64 us);

G_END_DECLS
