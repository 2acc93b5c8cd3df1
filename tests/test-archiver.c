/* test-archiver.c: time windows, time formatting, and the appliance answer parser */
#include "rtp-archiver-parser.h"
#include "rtp-csv.h"
#include "rtp-error.h"
#include "rtp-time.h"

#include <string.h>

static gint64
utc (int y, int mo, int d, int h, int mi, int s)
{
  g_autoptr (GDateTime) t = g_date_time_new_utc (y, mo, d, h, mi, s);
  return g_date_time_to_unix (t) * G_USEC_PER_SEC;
}

static void
test_parse (void)
{
  g_autoptr (GTimeZone) berlin = g_time_zone_new_identifier ("Europe/Berlin");
  gint64 us = 0;
  static const char *const invalid[] = {
    "",
    "yesterday",
    "2022-02-30 10:00",
    "2022-01-15 25:00",
    "2022-01-15 13:60",
    "2022-01-15 13:37:34+25:00",
    "2022-01-15 13:37:34 garbage",
    "2022-13-01 00:00",
    "15.01.2022 13:37",
    "2022-01-15",
    "2021-02-29 00:00",
  };

  /* wall-clock time in the archiver's zone, seconds optional */
  g_assert_true (rtp_time_parse ("2022-01-15 13:37:34", berlin, &us));
  g_assert_cmpint (us, ==, utc (2022, 1, 15, 12, 37, 34));
  g_assert_true (rtp_time_parse ("2022-07-01 12:00", berlin, &us));
  g_assert_cmpint (us, ==, utc (2022, 7, 1, 10, 0, 0));
  g_assert_true (rtp_time_parse ("2022-01-15 13:37:34.25", berlin, &us));
  g_assert_cmpint (us, ==, utc (2022, 1, 15, 12, 37, 34) + 250000);
  /* ISO 8601, absolute */
  g_assert_true (rtp_time_parse ("2022-01-15T12:37:34Z", berlin, &us));
  g_assert_cmpint (us, ==, utc (2022, 1, 15, 12, 37, 34));
  g_assert_true (rtp_time_parse ("2022-01-15T18:07:34+05:30", berlin, &us));
  g_assert_cmpint (us, ==, utc (2022, 1, 15, 12, 37, 34));
  g_assert_true (rtp_time_parse ("2022-01-15 07:37:34-0500", berlin, &us));
  g_assert_cmpint (us, ==, utc (2022, 1, 15, 12, 37, 34));
  /* the repeated autumn hour: its first occurrence (still +02:00) */
  g_assert_true (rtp_time_parse ("2022-10-30 02:30:00", berlin, &us));
  g_assert_cmpint (us, ==, utc (2022, 10, 30, 0, 30, 0));
  /* the skipped spring hour: moved forward by the gap, to 03:30+02:00 */
  g_assert_true (rtp_time_parse ("2022-03-27 02:30:00", berlin, &us));
  g_assert_cmpint (us, ==, utc (2022, 3, 27, 1, 30, 0));
  /* either side of the switch */
  g_assert_true (rtp_time_parse ("2022-03-27 01:59:59", berlin, &us));
  g_assert_cmpint (us, ==, utc (2022, 3, 27, 0, 59, 59));
  g_assert_true (rtp_time_parse ("2022-03-27 03:00:00", berlin, &us));
  g_assert_cmpint (us, ==, utc (2022, 3, 27, 1, 0, 0));

  for (gsize i = 0; i < G_N_ELEMENTS (invalid); i++)
    g_assert_false (rtp_time_parse (invalid[i], berlin, &us));
  g_assert_false (rtp_time_parse (NULL, berlin, &us));
}

static void
assert_format (GTimeZone *tz, gint64 secs, gint32 nanos, const char *expected)
{
  char buf[64];
  gsize n = rtp_time_format (tz, secs, nanos, buf);
  g_assert_cmpstr (buf, ==, expected);
  g_assert_cmpuint (n, ==, strlen (expected));
}

static void
test_format (void)
{
  g_autoptr (GTimeZone) berlin = g_time_zone_new_identifier ("Europe/Berlin");
  g_autoptr (GTimeZone) ny = g_time_zone_new_identifier ("America/New_York");
  gint64 t = utc (2022, 1, 15, 12, 37, 34) / G_USEC_PER_SEC;

  /* the three fraction forms */
  assert_format (berlin, t, 0, "2022-01-15 13:37:34+01:00");
  assert_format (berlin, t, 793888000, "2022-01-15 13:37:34.793888+01:00");
  assert_format (berlin, t, 793888256, "2022-01-15 13:37:34.793888256+01:00");
  assert_format (berlin, t, 1000, "2022-01-15 13:37:34.000001+01:00");
  assert_format (berlin, t, 1, "2022-01-15 13:37:34.000000001+01:00");
  /* daylight saving on both sides of the autumn switch (02:00-02:59 twice) */
  assert_format (berlin, utc (2022, 10, 30, 0, 30, 0) / G_USEC_PER_SEC, 0, "2022-10-30 02:30:00+02:00");
  assert_format (berlin, utc (2022, 10, 30, 1, 30, 0) / G_USEC_PER_SEC, 0, "2022-10-30 02:30:00+01:00");
  assert_format (berlin, utc (2022, 3, 27, 1, 0, 0) / G_USEC_PER_SEC, 0, "2022-03-27 03:00:00+02:00");
  assert_format (ny, t, 0, "2022-01-15 07:37:34-05:00");
  assert_format (berlin, 0, 0, "1970-01-01 01:00:00+01:00");
  {
    g_autofree char *iso = rtp_time_iso_utc (utc (2022, 1, 15, 12, 37, 34) + 123456);
    g_assert_cmpstr (iso, ==, "2022-01-15T12:37:34.123Z");
  }
}

typedef struct {
  GString *out;
  guint n;
} Collect;

static gboolean
collect (const RtpSample *s, gpointer user_data)
{
  Collect *c = user_data;
  g_string_append_printf (c->out, "%" G_GINT64_FORMAT ".%09d=%.*s", s->secs, s->nanos, (int) s->value_len, s->value);
  if (s->binned)
    g_string_append_printf (c->out, "[%.*s..%.*s #%.*s]", (int) s->min_len, s->min, (int) s->max_len, s->max,
                            (int) s->count_len, s->count);
  g_string_append_c (c->out, ';');
  c->n++;
  return TRUE;
}

/* Parses @text in one piece and byte by byte; both must agree. */
static gboolean
parse_all (const char *text, gboolean bins, char **result, GError **error)
{
  Collect whole = { g_string_new (NULL), 0 };
  Collect bytes = { g_string_new (NULL), 0 };
  g_autoptr (RtpArchiverParser) p1 = rtp_archiver_parser_new (bins, collect, &whole);
  g_autoptr (RtpArchiverParser) p2 = rtp_archiver_parser_new (bins, collect, &bytes);
  gboolean ok1 = rtp_archiver_parser_feed (p1, text, strlen (text), error) && rtp_archiver_parser_finish (p1, error);
  gboolean ok2 = TRUE;
  g_autoptr (GError) e2 = NULL;

  for (gsize i = 0; ok2 && text[i] != '\0'; i++)
    ok2 = rtp_archiver_parser_feed (p2, text + i, 1, &e2);
  if (ok2)
    ok2 = rtp_archiver_parser_finish (p2, &e2);
  g_assert_cmpint (ok1, ==, ok2);
  if (ok1)
    g_assert_cmpstr (whole.out->str, ==, bytes.out->str);
  *result = g_string_free (whole.out, FALSE);
  g_string_free (bytes.out, TRUE);
  return ok1;
}

static void
test_parser_good (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *r = NULL;

  g_assert_true (
    parse_all ("[{\"meta\": {\"name\": \"X\", \"PREC\": \"0\", \"x\": [1, {\"}\": \"]\"}]},\n"
               " \"data\": [{\"secs\": 1642250000, \"nanos\": 793888256, \"val\": 0.10, \"severity\": 0, \"status\": 0},"
               "{\"val\": \"on \\\"x\\\"\", \"secs\": 1642250001, \"nanos\": 0},"
               "{\"secs\": 1642250002, \"nanos\": 5, \"val\": NaN},"
               "{\"secs\": 1642250003, \"nanos\": 5, \"val\": [1, 2.5, -3]},"
               "{\"secs\": 1642250004, \"val\": -Infinity, \"meta\": {\"extra\": true}}]}]",
               FALSE, &r, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (r, ==,
                   "1642250000.793888256=0.10;1642250001.000000000=\"on \\\"x\\\"\";"
                   "1642250002.000000005=null;1642250003.000000005=[1,2.5,-3];1642250004.000000000=null;");
  g_clear_pointer (&r, g_free);
  /* bins of optimized_N */
  g_assert_true (
    parse_all ("[{\"meta\":{},\"data\":[{\"secs\":10,\"nanos\":0,\"val\":[2.5, 0.5, 1, 4, 4]}]}]", TRUE, &r, &error));
  g_assert_cmpstr (r, ==, "10.000000000=2.5[1..4 #4];");
  g_clear_pointer (&r, g_free);
  /* the same array without bins is a waveform */
  g_assert_true (
    parse_all ("[{\"meta\":{},\"data\":[{\"secs\":10,\"nanos\":0,\"val\":[2.5, 0.5, 1, 4, 4]}]}]", FALSE, &r, &error));
  g_assert_cmpstr (r, ==, "10.000000000=[2.5,0.5,1,4,4];");
  g_clear_pointer (&r, g_free);
  /* an unknown PV in some versions: an empty list */
  g_assert_true (parse_all (" [ ] ", FALSE, &r, &error));
  g_assert_cmpstr (r, ==, "");
  g_clear_pointer (&r, g_free);
  g_assert_true (parse_all (
    "[{\"meta\":{\"name\":\"A\"},\"data\":[]},{\"meta\":{\"name\":\"B\"},\"data\":[{\"secs\":1,\"nanos\":0,\"val\":1}]}]",
    FALSE, &r, &error));
  g_assert_cmpstr (r, ==, "1.000000000=1;");
  g_clear_pointer (&r, g_free);
  /* the numbers of the fast path: exponents (out of a double's range: null), zeros, signs, 18+ digits */
  g_assert_true (
    parse_all ("[{\"meta\":{},\"data\":[{\"secs\":1,\"val\":1e999},{\"secs\":2,\"val\":-2.5E-3},"
               "{\"secs\":3,\"val\":0},{\"secs\":4,\"val\":-0.0},{\"secs\":5,\"val\":1234567890123456789012},"
               "{\"secs\":000000000000000000006,\"nanos\":000001,\"val\":-7}]}]",
               FALSE, &r, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (r, ==,
                   "1.000000000=null;2.000000000=-2.5E-3;3.000000000=0;4.000000000=-0.0;"
                   "5.000000000=1234567890123456789012;6.000000001=-7;");
}

static void
test_parser_malformed (void)
{
  static const char *const cases[] = {
    "",
    "{}",
    "[{\"meta\": {}, \"data\": [{\"secs\": 1, \"nanos\": 0, \"val\": 1}",          /* truncated */
    "[{\"meta\": {}, \"data\": [{\"secs\": 1, \"nanos\": 0, \"val\": 1}]}] extra", /* text after the end */
    "[{\"data\": [{\"secs\": \"1\", \"nanos\": 0, \"val\": 1}]}]",                 /* secs as a string */
    "[{\"data\": [{\"nanos\": 0, \"val\": 1}]}]",                                  /* no secs */
    "[{\"data\": [{\"secs\": 99999999999999999999, \"val\": 1}]}]",                /* huge secs */
    "[{\"data\": [{\"secs\": 1e3, \"val\": 1}]}]",                                 /* secs not an integer */
    "[{\"data\": [{\"secs\": 1, \"nanos\": 1000000000, \"val\": 1}]}]",            /* nanos out of range */
    "[{\"data\": [{\"secs\": 1, \"val\": wrong}]}]",                               /* bare word */
    "[{\"data\": [{\"secs\": 1, \"val\": [1, }]}]",                                /* broken array */
    "[{\"data\": [{\"secs\": 1, \"val\": \"unterminated}]}]",
    "[{\"data\": {\"secs\": 1}}]", /* data not an array */
    "[{\"data\": [1, 2, 3]}]",     /* samples not objects */
    "[[1]]",
    "<html>502 Bad Gateway</html>",
    "[{\"data\": [{\"secs\": 1, \"val\": 1,}]}]",
    "[{\"data\": [{\"secs\" 1}]}]",
    "[{\"data\": [{\"secs\": 1, \"val\": 007}]}]", /* leading zeros are not JSON */
    "[{\"data\": [{\"secs\": 1, \"val\": -01.5}]}]",
    "[{\"data\": [{\"secs\": 1, \"val\": 1.}]}]",
    "[{\"data\": [{\"secs\": 1, \"val\": 1e}]}]",
    "[{\"data\": [{\"secs\": 1, \"val\": .5}]}]",
    "[{\"data\": [{\"secs\": 1, \"val\": +5}]}]",
    "[{\"data\": [{\"secs\": 01x, \"val\": 5}]}]",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *r = NULL;
      g_test_message ("case %" G_GSIZE_FORMAT ": %s", i, cases[i]);
      g_assert_false (parse_all (cases[i], FALSE, &r, &error));
      g_assert_error (error, RTP_ERROR, RTP_ERROR_UPSTREAM);
    }
}

static void
test_parser_large (void)
{
  g_autoptr (GString) text = g_string_new ("[{\"meta\": {\"name\": \"big\"}, \"data\": [");
  Collect c = { g_string_new (NULL), 0 };
  g_autoptr (RtpArchiverParser) p = rtp_archiver_parser_new (FALSE, collect, &c);
  g_autoptr (GError) error = NULL;

  for (int i = 0; i < 100000; i++)
    g_string_append_printf (text, "%s{\"secs\": %d, \"nanos\": 0, \"val\": %d.5}", i ? ", " : "", 1600000000 + i, i);
  g_string_append (text, "]}]");
  /* in uneven pieces, as the network delivers them */
  for (gsize off = 0; off < text->len; off += 16381)
    g_assert_true (rtp_archiver_parser_feed (p, text->str + off, MIN (16381, text->len - off), &error));
  g_assert_true (rtp_archiver_parser_finish (p, &error));
  g_assert_cmpuint (c.n, ==, 100000);
  g_assert_cmpuint (rtp_archiver_parser_get_count (p), ==, 100000);
  g_string_free (c.out, TRUE);
}

typedef struct {
  GPtrArray *names;
  GPtrArray *values;
} Named;

static gboolean
keep_named (const char *pv, const RtpSample *s, gpointer user_data)
{
  Named *n = user_data;
  g_ptr_array_add (n->names, g_strdup (pv));
  g_ptr_array_add (n->values, g_strndup (s->value, s->value_len));
  return TRUE;
}

/* getDataAtTime's object of samples, and getMatchingPVs' array of names. */
static void
test_parse_values_at_and_names (void)
{
  Named n = { g_ptr_array_new_with_free_func (g_free), g_ptr_array_new_with_free_func (g_free) };
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) names = NULL;
  const char *at = "{\"X:\\u00e9\": {\"secs\": 5, \"nanos\": 0, \"val\": NaN, \"severity\": 3}, \"X:N\": null, "
                   "\"X:W\": {\"secs\": 6, \"nanos\": 1, \"val\": [1, 2.5]}}";

  g_assert_true (rtp_archiver_parse_values_at (at, strlen (at), keep_named, &n, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (n.names->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (n.names, 0), ==, "X:\u00e9");
  g_assert_cmpstr (g_ptr_array_index (n.values, 0), ==, "null"); /* NaN is not JSON */
  g_assert_cmpstr (g_ptr_array_index (n.values, 1), ==, "[1,2.5]");
  g_assert_false (rtp_archiver_parse_values_at ("[1]", 3, keep_named, &n, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_UPSTREAM);
  g_clear_error (&error);
  g_assert_false (rtp_archiver_parse_values_at ("{\"X\": 5}", 8, keep_named, &n, &error));
  g_clear_error (&error);
  g_assert_false (rtp_archiver_parse_values_at ("{\"X\": {\"secs\": 1}", 17, keep_named, &n, &error));
  g_clear_error (&error);

  names = rtp_archiver_parse_names ("[\"A:B\", \"\", 5, \"C:\\\"D\"]", 24, 10, &error);
  g_assert_null (names);
  g_clear_error (&error);
  names = rtp_archiver_parse_names (" [\"A:B\", \"\", \"C:\\\"D\", \"E\"] ", 27, 2, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (names), ==, 2); /* the empty name is left out; at most 2 */
  g_assert_cmpstr (names[0], ==, "A:B");
  g_assert_cmpstr (names[1], ==, "C:\"D");
  g_ptr_array_unref (n.names);
  g_ptr_array_unref (n.values);
}

static void
test_csv_cells (void)
{
  static const struct {
    const char *json, *cell;
  } cases[] = {
    { "1.5", "1.5" },         { "-3", "-3" },
    { "null", "" },           { "\"on\"", "on" },
    { "\"=1+2\"", "'=1+2" },  { "\"-x\"", "'-x" },
    { "\"@a\"", "'@a" },      { "\"\\tx\"", "'\tx" },
    { "\"a,b\"", "\"a,b\"" }, { "\"say \\\"hi\\\"\"", "\"say \"\"hi\"\"\"" },
    { "[1,2]", "\"[1,2]\"" }, { "\"\\u00e9\\n\"", "\"\u00e9\n\"" },
    { "true", "true" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GString) cell = g_string_new (NULL);
      rtp_csv_append_value (cell, cases[i].json, strlen (cases[i].json), ',');
      g_assert_cmpstr (cell->str, ==, cases[i].cell);
    }
  {
    g_autoptr (GString) cell = g_string_new (NULL);
    rtp_csv_append_value (cell, "\"a,b\tc\"", 7, '\t'); /* TSV quotes on the tab only */
    g_assert_cmpstr (cell->str, ==, "\"a,b\tc\"");
    g_string_truncate (cell, 0);
    rtp_csv_append_count (cell, "18.0", 4);
    rtp_csv_append_count (cell, ",2.5", 4);
    g_assert_cmpstr (cell->str, ==, "18,2.5");
  }
}

/* The kept offsets agree with GDateTime around transitions, in zones with odd offsets too. */
static void
test_format_matches_gdatetime (void)
{
  static const char *const zones[] = { "Europe/Berlin", "Australia/Lord_Howe", "America/St_Johns", "Asia/Kolkata",
                                       "UTC" };
  GRand *rand = g_rand_new_with_seed (7);

  for (guint z = 0; z < G_N_ELEMENTS (zones); z++)
    {
      g_autoptr (GTimeZone) tz = g_time_zone_new_identifier (zones[z]);
      gint64 t = 1648342800 - 4000; /* before the end of March 2022 */
      g_assert_nonnull (tz);
      for (guint i = 0; i < 20000; i++)
        {
          char buf[64];
          g_autoptr (GDateTime) dt = NULL;
          g_autofree char *want = NULL;
          t += g_rand_int_range (rand, 1, i % 2 == 0 ? 700 : 90000);
          dt = g_date_time_new_from_unix_utc (t);
          {
            g_autoptr (GDateTime) local = g_date_time_to_timezone (dt, tz);
            want = g_date_time_format (local, "%Y-%m-%d %H:%M:%S%:z");
          }
          rtp_time_format (tz, t, 0, buf);
          g_assert_cmpstr (buf, ==, want);
        }
    }
  g_rand_free (rand);
}

static void
test_time_forms (void)
{
  char buf[64];
  g_autoptr (GTimeZone) berlin = g_time_zone_new_identifier ("Europe/Berlin");

  rtp_time_format_utc (1642250254, 793888256, buf);
  g_assert_cmpstr (buf, ==, "2022-01-15T12:37:34.793888256Z");
  rtp_time_format_utc (1642250254, 0, buf);
  g_assert_cmpstr (buf, ==, "2022-01-15T12:37:34Z");
  rtp_time_format_epoch (1642250254, 250000000, buf);
  g_assert_cmpstr (buf, ==, "1642250254.250000000");
  rtp_time_format_epoch (-2, 500000000, buf);
  g_assert_cmpstr (buf, ==, "-1.500000000");
  rtp_time_format_compact (berlin, 1642250254, buf);
  g_assert_cmpstr (buf, ==, "20220115T133734");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/archiver/time-parse", test_parse);
  g_test_add_func ("/archiver/time-format", test_format);
  g_test_add_func ("/archiver/parser-good", test_parser_good);
  g_test_add_func ("/archiver/parser-malformed", test_parser_malformed);
  g_test_add_func ("/archiver/parser-large", test_parser_large);
  g_test_add_func ("/archiver/values-at-and-names", test_parse_values_at_and_names);
  g_test_add_func ("/archiver/csv-cells", test_csv_cells);
  g_test_add_func ("/archiver/time-forms", test_time_forms);
  g_test_add_func ("/archiver/time-format-matches-gdatetime", test_format_matches_gdatetime);
  return g_test_run ();
}
