/* test-alerter.c: RtpAlerter against a temporary SQLite file; its mails go to an SMTP port where
 * nobody listens, so they wait in the queue (nothing is lost) */
#include "rtp-alerter.h"
#include "rtp-error.h"
#include "rtp-database.h"
#include "rtp-test-services.h"

#include <math.h>
#include <string.h>

typedef struct {
  char *dir;
  RtpDatabase *db;
  RtpUserManager *users;
  RtpExperimentStore *store;
  RtpMqttPublisher *mqtt;
  RtpSubscriptions *subs;
  RtpLiveValues *live;
  RtpAlerter *alerter;
  GTimeZone *tz;
  char *smtp_url;
  guint breached;
  double breached_value;
} Fixture;

static void
on_breached (RtpAlerter *alerter, const char *pv, double value, gint64 min, gint64 max, gpointer user_data)
{
  Fixture *f = user_data;
  f->breached++;
  f->breached_value = value;
  g_assert_cmpstr (pv, ==, "E1:T");
  g_assert_cmpint (min, ==, 0);
  g_assert_cmpint (max, ==, 10);
}

static void
make_alerter (Fixture *f, const char *smtp_url, gint64 renotify_s)
{
  RtpAlertSettings settings = {
    .renotify_s = renotify_s,
    .hysteresis = 1,
    .time_zone = f->tz,
    .threshold_unit = "K",
    .mail = { .url = smtp_url, .from = "rtp@example.org", .timeout_s = 2 },
  };
  f->alerter = rtp_alerter_new (f->db, f->live, f->subs, &settings);
  g_signal_connect (f->alerter, "threshold-breached", G_CALLBACK (on_breached), f);
}

static void
setup (Fixture *f, gconstpointer data)
{
  RtpSubscriptionSettings sub_settings = { .channel_prefix = "rtp", .email_channel = "email", .threshold_unit = "K" };
  RtpMqttSettings mqtt_settings = { .server_url = NULL, .timeout_s = 1 };

  f->dir = rtp_test_make_dir ();
  f->db = rtp_test_open_database (f->dir, "alerts.db");
  rtp_test_sql (f->db,
                "INSERT INTO users (user_id, login_name, first_name, last_name, email, password_hash, "
                "preferred_language) VALUES ('u1', 'user1', 'Ada', 'One', 'ada@example.org', 'x', 'en')",
                1);
  rtp_test_sql (f->db, "INSERT INTO experiments (short_id) VALUES ('E1')", 1);
  rtp_test_sql (f->db,
                "INSERT INTO process_variables (pv_string, human_readable_name, experiment_short_id) "
                "VALUES ('E1:T', 'Oven', 'E1')",
                1);
  rtp_test_sql (f->db,
                "INSERT INTO subscriptions (user_id, pv_string, email, threshold_min, threshold_max) "
                "VALUES ('u1', 'E1:T', 'lab@example.org', 0, 10)",
                1);
  f->users = rtp_test_user_manager (f->db);
  f->store = rtp_experiment_store_new (f->db);
  f->mqtt = rtp_mqtt_publisher_new (&mqtt_settings);
  f->subs = rtp_subscriptions_new (f->db, f->users, f->store, f->mqtt, &sub_settings);
  f->live = rtp_live_values_new (f->db, f->store, f->mqtt);
  f->tz = g_time_zone_new_utc ();
  f->smtp_url = g_strdup_printf ("smtp://127.0.0.1:%u", rtp_test_free_port ()); /* nobody listens there */
}

static void
teardown (Fixture *f, gconstpointer data)
{
  g_clear_object (&f->alerter);
  g_clear_object (&f->live);
  g_clear_object (&f->subs);
  g_clear_object (&f->mqtt);
  g_clear_object (&f->store);
  g_clear_object (&f->users);
  g_clear_object (&f->db);
  g_time_zone_unref (f->tz);
  g_free (f->smtp_url);
  rtp_test_remove_dir (f->dir);
  g_free (f->dir);
}

/* Out of the band opens one episode with one mail; values out of the band meanwhile add
 * nothing; inside the band but within the hysteresis keeps it open; inside by the hysteresis
 * closes it. */
static void
test_episode (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) episodes = NULL;
  const RtpAlertEpisode *e;
  const RtpAlertMail *mail;

  make_alerter (f, f->smtp_url, 0);
  g_assert_true (rtp_alerter_is_on (f->alerter));
  rtp_alerter_handle_value (f->alerter, "E1:T", 5);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM alert_episodes"), ==, 0);
  rtp_alerter_handle_value (f->alerter, "E1:T", 12.5);
  g_assert_cmpuint (f->breached, ==, 1);
  g_assert_cmpfloat (f->breached_value, ==, 12.5);
  rtp_alerter_handle_value (f->alerter, "E1:T", 13);
  rtp_alerter_handle_value (f->alerter, "E1:T", 9.5); /* back, but not by the hysteresis */
  rtp_alerter_handle_value (f->alerter, "E1:T", NAN); /* not judged */
  g_assert_cmpuint (f->breached, ==, 1);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM alert_episodes WHERE closed_us IS NULL"), ==, 1);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM alert_mails"), ==, 1);
  rtp_alerter_handle_value (f->alerter, "E1:T", 9);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM alert_episodes WHERE closed_us IS NULL"), ==, 0);

  episodes = rtp_alerter_list_episodes (f->alerter, "u1", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (episodes->len, ==, 1);
  e = g_ptr_array_index (episodes, 0);
  g_assert_cmpstr (e->pv_string, ==, "E1:T");
  g_assert_cmpstr (e->breach_value, ==, "12.5");
  g_assert_cmpint (e->closed_us, >=, e->opened_us);
  g_assert_cmpint (e->threshold_max, ==, 10);
  g_assert_cmpuint (e->mails->len, ==, 1);
  mail = g_ptr_array_index (e->mails, 0);
  g_assert_cmpstr (mail->recipient, ==, "lab@example.org");
  g_assert_cmpstr (mail->subject, ==, "Threshold breached: E1:T is 12.5 K");
  g_assert_false (mail->sent);
  g_clear_pointer (&episodes, g_ptr_array_unref);
  episodes = rtp_alerter_list_episodes (f->alerter, "nobody", &error);
  g_assert_cmpuint (episodes->len, ==, 0);

  /* a second excursion is a second episode */
  rtp_alerter_handle_value (f->alerter, "E1:T", -1);
  g_assert_cmpuint (f->breached, ==, 2);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM alert_episodes"), ==, 2);
}

/* The SMTP server is away: the mail stays queued, its attempts and error are recorded. */
static void
test_mail_waits (Fixture *f, gconstpointer data)
{
  gint64 deadline;

  make_alerter (f, f->smtp_url, 0);
  rtp_alerter_handle_value (f->alerter, "E1:T", 11);
  rtp_test_expect_log ("RtpAlerter", G_LOG_LEVEL_WARNING, "sending mail to lab@example.org failed: *; retrying in 1 s");
  deadline = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (rtp_test_count (f->db, "SELECT COUNT(*) FROM alert_mails WHERE attempts > 0") == 0 &&
         g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE), g_usleep (2000);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM alert_mails WHERE attempts > 0 AND sent_us IS NULL "
                                          "AND last_error IS NOT NULL AND next_attempt_us > created_us"),
                   ==, 1);
  rtp_test_assert_expected_log ();
}

/* Reminders while open, at most every renotify interval. */
static void
test_reminder (Fixture *f, gconstpointer data)
{
  make_alerter (f, f->smtp_url, 1);
  rtp_alerter_handle_value (f->alerter, "E1:T", 20);
  rtp_alerter_handle_value (f->alerter, "E1:T", 20);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM alert_mails"), ==, 1);
  /* as if the last mail went out more than a second ago */
  g_assert_cmpint (rtp_database_exec (f->db, NULL,
                                      "UPDATE alert_episodes SET last_notified_us = last_notified_us - 2000000", NULL),
                   ==, 1);
  rtp_alerter_handle_value (f->alerter, "E1:T", 21);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM alert_mails WHERE subject LIKE 'Reminder:%'"), ==, 1);
  g_assert_cmpuint (f->breached, ==, 1);
}

/* Shelving needs a reason that is not blank (Unicode white space too); nothing is recorded otherwise. */
static void
test_shelve_reason (Fixture *f, gconstpointer data)
{
  RtpUser admin = { .user_id = "0", .login_name = "admin", .user_type = "Admin", .preferred_language = "en" };
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) episodes = NULL;
  g_autoptr (RtpAlarm) alarm = NULL;
  gint64 until = g_get_real_time () + 60 * G_USEC_PER_SEC;
  const char *id;

  make_alerter (f, f->smtp_url, 0);
  rtp_alerter_handle_value (f->alerter, "E1:T", 20);
  episodes = rtp_alerter_list_episodes (f->alerter, NULL, &error);
  g_assert_no_error (error);
  id = ((RtpAlertEpisode *) g_ptr_array_index (episodes, 0))->id;
  g_assert_null (rtp_alerter_shelve (f->alerter, &admin, "test", id, until, NULL, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_null (rtp_alerter_shelve (f->alerter, &admin, "test", id, until, " \t\xc2\xa0 ", &error));
  g_assert_cmpstr (error->message, ==, "reason: A reason for shelving is required.");
  g_clear_error (&error);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM alarm_history WHERE event = 'shelved'"), ==, 0);
  alarm = rtp_alerter_shelve (f->alerter, &admin, "test", id, until, "maintenance", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (alarm->shelve_reason, ==, "maintenance");
}

/* Without mail settings the alerter says so and judges nothing. */
static void
test_off (Fixture *f, gconstpointer data)
{
  make_alerter (f, NULL, 0);
  g_assert_false (rtp_alerter_is_on (f->alerter));
  rtp_alerter_handle_value (f->alerter, "E1:T", 100);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM alert_episodes"), ==, 0);
  g_assert_cmpuint (f->breached, ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_log_set_writer_func (rtp_test_log_writer, NULL, NULL);
  g_test_add ("/alerter/episode", Fixture, NULL, setup, test_episode, teardown);
  g_test_add ("/alerter/mail-waits", Fixture, NULL, setup, test_mail_waits, teardown);
  g_test_add ("/alerter/reminder", Fixture, NULL, setup, test_reminder, teardown);
  g_test_add ("/alerter/off", Fixture, NULL, setup, test_off, teardown);
  g_test_add ("/alerter/shelve-reason", Fixture, NULL, setup, test_shelve_reason, teardown);
  return g_test_run ();
}
