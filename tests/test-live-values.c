/* test-live-values.c: RtpLiveValues against a temporary SQLite file, a real mosquitto and the
 * archiver stand-in (tests/archiver_fixture.py) */
#include "rtp-database.h"
#include "rtp-live-values.h"
#include "rtp-test-services.h"

#include <libsoup/soup.h>
#include <string.h>

typedef struct {
  char *dir;
  RtpTestBroker broker;
  GSubprocess *archiver_proc;
  char *archiver_url;
  RtpDatabase *db;
  RtpExperimentStore *store;
  RtpMqttPublisher *mqtt;
  RtpMqttPublisher *sender;
  RtpArchiverClient *archiver;
  RtpLiveValues *live;
  GPtrArray *seen; /* "pv=value@time_us" */
} Fixture;

static void
on_value (RtpLiveValues *live, const char *pv, gint64 time_us, const char *value, gpointer user_data)
{
  Fixture *f = user_data;
  g_ptr_array_add (f->seen, g_strdup_printf ("%s=%s@%" G_GINT64_FORMAT, pv, value, time_us));
}

static void
start_archiver (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *script = g_test_build_filename (G_TEST_DIST, "archiver_fixture.py", NULL);
  g_autoptr (GDataInputStream) out = NULL;
  g_autofree char *line = NULL;

  f->archiver_proc = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error, "python3", script, "0", NULL);
  g_assert_no_error (error);
  out = g_data_input_stream_new (g_subprocess_get_stdout_pipe (f->archiver_proc));
  line = g_data_input_stream_read_line (out, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_prefix (line, "Listening on "));
  f->archiver_url = g_strdup (line + strlen ("Listening on "));
}

/* Sets the samples of @pv in the stand-in. */
static void
archiver_samples (Fixture *f, const char *json)
{
  g_autoptr (SoupSession) session = soup_session_new ();
  g_autofree char *url = g_strconcat (f->archiver_url, "/control/pv", NULL);
  g_autoptr (SoupMessage) msg = soup_message_new ("POST", url);
  g_autoptr (GBytes) body = g_bytes_new (json, strlen (json));
  g_autoptr (GBytes) answer = NULL;
  g_autoptr (GError) error = NULL;

  soup_message_set_request_body_from_bytes (msg, "application/json", body);
  answer = soup_session_send_and_read (session, msg, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (soup_message_get_status (msg), ==, 200);
}

static void
setup (Fixture *f, gconstpointer data)
{
  f->dir = rtp_test_make_dir ();
  rtp_test_broker_start (&f->broker);
  start_archiver (f);
  f->db = rtp_test_open_database (f->dir, "live.db");
  rtp_test_sql (f->db, "INSERT INTO experiments (short_id) VALUES ('E1')", 1);
  rtp_test_sql (f->db,
                "INSERT INTO process_variables (pv_string, experiment_short_id) "
                "VALUES ('E1:A', 'E1'), ('E1:B', 'E1')",
                2);
  f->store = rtp_experiment_store_new (f->db);
  f->mqtt = rtp_test_connect_publisher (f->broker.port);
  f->sender = rtp_test_connect_publisher (f->broker.port);
  f->archiver = rtp_archiver_client_new (f->archiver_url, 5);
  f->live = rtp_live_values_new (f->db, f->store, f->mqtt);
  f->seen = g_ptr_array_new_with_free_func (g_free);
  g_signal_connect (f->live, "value", G_CALLBACK (on_value), f);
}

static void
teardown (Fixture *f, gconstpointer data)
{
  g_clear_object (&f->live);
  g_clear_object (&f->archiver);
  rtp_mqtt_publisher_stop (f->mqtt);
  rtp_mqtt_publisher_stop (f->sender);
  g_clear_object (&f->mqtt);
  g_clear_object (&f->sender);
  g_clear_object (&f->store);
  g_clear_object (&f->db);
  g_ptr_array_unref (f->seen);
  g_subprocess_force_exit (f->archiver_proc);
  g_subprocess_wait (f->archiver_proc, NULL, NULL);
  g_clear_object (&f->archiver_proc);
  g_free (f->archiver_url);
  rtp_test_broker_stop (&f->broker);
  rtp_test_remove_dir (f->dir);
  g_free (f->dir);
}

static void
send (Fixture *f, const char *topic, const char *payload)
{
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (GError) error = NULL;

  rtp_mqtt_publisher_publish_async (f->sender, topic, payload, strlen (payload), 1, NULL, rtp_test_async_ready,
                                    &result);
  g_assert_true (rtp_mqtt_publisher_publish_finish (f->sender, rtp_test_wait (&result), &error));
}

static void
wait_seen (Fixture *f, guint n, double seconds)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) (seconds * G_USEC_PER_SEC);
  while (f->seen->len < n && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE), g_usleep (1000);
}

/* MQTT value topics: numbers of known PVs are emitted and kept; other topics, unknown PVs and
 * payloads that are no finite number are not. */
static void
test_mqtt_values (Fixture *f, gconstpointer data)
{
  RtpLiveSettings settings = { .value_topic_prefix = "lab/values", .interval_s = 1 };
  g_autofree char *value = NULL;
  gint64 t = 0;

  rtp_live_values_start (f->live, &settings);
  /* the subscription is in place once a value comes through */
  for (guint i = 0; i < 50 && f->seen->len == 0; i++)
    {
      send (f, "lab/values/E1/A", " 12.5 ");
      wait_seen (f, 1, 0.2);
    }
  g_assert_cmpuint (f->seen->len, >, 0);
  g_assert_true (g_str_has_prefix (g_ptr_array_index (f->seen, 0), "E1:A=12.5@"));
  g_ptr_array_set_size (f->seen, 0);
  send (f, "lab/values/E1/Nope", "1");     /* no such PV */
  send (f, "lab/values/E1/B", "NaN");      /* not finite */
  send (f, "lab/values/E1/B", "1e999");    /* not finite either */
  send (f, "lab/values/E1/B", "12 volts"); /* not a number */
  send (f, "lab/valuesX/E1/B", "3");       /* another prefix */
  send (f, "lab/values/E1/B", "-3");       /* this one, last */
  wait_seen (f, 1, 10);
  g_assert_cmpuint (f->seen->len, ==, 1);
  g_assert_true (g_str_has_prefix (g_ptr_array_index (f->seen, 0), "E1:B=-3@"));
  g_assert_true (rtp_live_values_get_latest (f->live, "E1:B", &t, &value));
  g_assert_cmpstr (value, ==, "-3");
  g_clear_pointer (&value, g_free);
  g_assert_false (rtp_live_values_get_latest (f->live, "E1:Nope", &t, &value));
}

/* Archiver polls: only watched PVs, each sample once, the newest first seen after a new one. */
static void
test_archiver_polls (Fixture *f, gconstpointer data)
{
  RtpLiveSettings settings = { .archiver = f->archiver, .interval_s = 0.1 };
  gint64 now_s = g_get_real_time () / G_USEC_PER_SEC;
  g_autofree char *first = g_strdup_printf ("{\"name\": \"E1:A\", \"samples\": [[%" G_GINT64_FORMAT
                                            ", 500000000, 1.5]]}",
                                            now_s - 100);
  g_autofree char *second = g_strdup_printf ("{\"name\": \"E1:A\", \"samples\": [[%" G_GINT64_FORMAT
                                             ", 500000000, 1.5], "
                                             "[%" G_GINT64_FORMAT ", 0, [1, 2]]]}",
                                             now_s - 100, now_s - 50);
  g_autofree char *expect_first = g_strdup_printf ("E1:A=1.5@%" G_GINT64_FORMAT,
                                                   (now_s - 100) * G_USEC_PER_SEC + 500000);
  g_autofree char *expect_second = g_strdup_printf ("E1:A=[1,2]@%" G_GINT64_FORMAT, (now_s - 50) * G_USEC_PER_SEC);

  archiver_samples (f, first);
  archiver_samples (f, "{\"name\": \"E1:B\", \"samples\": [[1, 0, 7]]}");
  rtp_live_values_start (f->live, &settings);
  wait_seen (f, 1, 1);
  g_assert_cmpuint (f->seen->len, ==, 0); /* nobody watches */
  rtp_live_values_watch (f->live, "E1:A");
  rtp_live_values_watch (f->live, "E1:A");
  rtp_live_values_unwatch (f->live, "E1:A"); /* one viewer left */
  wait_seen (f, 1, 10);
  g_assert_cmpuint (f->seen->len, ==, 1);
  g_assert_cmpstr (g_ptr_array_index (f->seen, 0), ==, expect_first);
  wait_seen (f, 2, 1); /* polled again meanwhile: the same sample is not emitted twice */
  g_assert_cmpuint (f->seen->len, ==, 1);
  archiver_samples (f, second);
  wait_seen (f, 2, 10);
  g_assert_cmpuint (f->seen->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (f->seen, 1), ==, expect_second);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/live-values/mqtt", Fixture, NULL, setup, test_mqtt_values, teardown);
  g_test_add ("/live-values/archiver", Fixture, NULL, setup, test_archiver_polls, teardown);
  return g_test_run ();
}
