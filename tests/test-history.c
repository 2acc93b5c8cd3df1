/* test-history.c: the rules of API.md "Archived data" in the history service */
#include "rtp-error.h"
#include "rtp-history.h"

static RtpConfig *
config_from (const char *text)
{
  RtpConfig *config = rtp_config_new ();
  g_autoptr (GError) error = NULL;

  g_assert_true (rtp_config_load_data (config, text, "test", &error));
  g_assert_true (rtp_config_validate (config, &error));
  g_assert_no_error (error);
  return config;
}

static void
test_window (void)
{
  RtpConfig *config = config_from (
    "ARCHIVER_TIMEZONE=Europe/Berlin\nDEFAULT_ARCHIVER_TIME_PERIOD=3\nRTP_MAX_POINTS=50\n");
  g_autoptr (RtpArchiverClient) archiver = rtp_archiver_client_new (NULL, 1);
  g_autoptr (RtpHistory) history = rtp_history_new (&config, archiver);
  g_autoptr (GError) error = NULL;
  RtpHistoryWindow w;
  RtpHistoryQuery q = { .since = "2022-01-15 13:37:34", .until = "2022-01-15T12:37:40Z" };

  /* local time in ARCHIVER_TIMEZONE (CET, UTC+1) and ISO 8601 */
  g_assert_true (rtp_history_resolve (history, &q, &w, &error));
  g_assert_cmpint (w.from_us, ==, G_GINT64_CONSTANT (1642250254) * G_USEC_PER_SEC);
  g_assert_cmpint (w.to_us, ==, G_GINT64_CONSTANT (1642250260) * G_USEC_PER_SEC);
  g_assert_cmpint (w.max_points, ==, 50);
  g_assert_null (w.defaulted);

  /* no since: the default window up to until, with the warning */
  q = (RtpHistoryQuery){ .until = "2022-01-15T12:00:00Z", .has_max_points = TRUE, .max_points = 0 };
  g_assert_true (rtp_history_resolve (history, &q, &w, &error));
  g_assert_cmpint (w.to_us - w.from_us, ==, G_GINT64_CONSTANT (3) * 3600 * G_USEC_PER_SEC);
  g_assert_cmpint (w.max_points, ==, 0);
  g_assert_cmpstr (
    w.defaulted, ==,
    "Time frame not specified. The data is in a server-defined time frame of 3 hours up to the current time.");
  rtp_history_window_clear (&w);

  /* refusals with the contract's messages */
  q = (RtpHistoryQuery){ .since = "2022-01-16 00:00", .until = "2022-01-15 00:00" };
  g_assert_false (rtp_history_resolve (history, &q, &w, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_assert_cmpstr (error->message, ==, "The time frame is empty: since is after until.");
  g_clear_error (&error);
  q = (RtpHistoryQuery){ .since = "yesterday" };
  g_assert_false (rtp_history_resolve (history, &q, &w, &error));
  g_assert_cmpstr (error->message, ==,
                   "since: The time (yesterday) is not valid. Use YYYY-MM-DD HH:MM:SS or ISO 8601.");
  g_clear_error (&error);
  q = (RtpHistoryQuery){ .has_max_points = TRUE, .max_points = 100001 };
  g_assert_false (rtp_history_resolve (history, &q, &w, &error));
  g_assert_cmpstr (error->message, ==, "max_points: Value must be at most 100000.");
  g_clear_error (&error);
  q = (RtpHistoryQuery){ .has_max_points = TRUE, .max_points = -1 };
  g_assert_false (rtp_history_resolve (history, &q, &w, &error));
  g_assert_cmpstr (error->message, ==, "max_points: Value must be a non-negative integer.");
  g_clear_error (&error);
  g_object_unref (config);
}

/* One GTimeZone per configured value; a reloaded configuration counts at the next call. */
static void
test_time_zone_follows_the_configuration (void)
{
  RtpConfig *config = config_from ("ARCHIVER_TIMEZONE=Europe/Berlin\n");
  g_autoptr (RtpArchiverClient) archiver = rtp_archiver_client_new (NULL, 1);
  g_autoptr (RtpHistory) history = rtp_history_new (&config, archiver);
  GTimeZone *first = rtp_history_get_time_zone (history);

  g_assert_cmpstr (g_time_zone_get_identifier (first), ==, "Europe/Berlin");
  g_assert_true (rtp_history_get_time_zone (history) == first);
  g_object_unref (config);
  config = config_from ("ARCHIVER_TIMEZONE=UTC\n");
  g_assert_cmpstr (g_time_zone_get_identifier (rtp_history_get_time_zone (history)), ==, "UTC");
  g_object_unref (config);
  config = config_from ("");
  g_assert_nonnull (rtp_history_get_time_zone (history)); /* the host's zone */
  g_object_unref (config);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/history/window", test_window);
  g_test_add_func ("/history/time-zone-follows-the-configuration", test_time_zone_follows_the_configuration);
  return g_test_run ();
}
