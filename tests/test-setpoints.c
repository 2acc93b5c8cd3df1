/* test-setpoints.c: RtpSetpoints against a temporary SQLite file and a real mosquitto: the
 * refusals in the contract's order, the message on the broker, the audit log */
#include "rtp-database.h"
#include "rtp-error.h"
#include "rtp-setpoints.h"
#include "rtp-test-services.h"

#include <string.h>

typedef struct {
  char *dir;
  RtpTestBroker broker;
  RtpDatabase *db;
  RtpUserManager *users;
  RtpExperimentStore *store;
  RtpMqttPublisher *mqtt;
  RtpMqttPublisher *listener;
  RtpSetpoints *setpoints;
  RtpUser *user; /* assigned to Lab */
  RtpUser *stranger;
  GPtrArray *heard; /* "topic=payload" */
  GPtrArray *signalled;
} Fixture;

static void
on_message (RtpMqttPublisher *mqtt, const char *topic, GBytes *payload, gpointer user_data)
{
  Fixture *f = user_data;
  gsize len = 0;
  const char *data = g_bytes_get_data (payload, &len);
  g_ptr_array_add (f->heard, g_strdup_printf ("%s=%.*s", topic, (int) len, data));
}

static void
on_value_set (RtpSetpoints *setpoints, const char *pv, const char *value, const char *actor, gpointer user_data)
{
  Fixture *f = user_data;
  g_ptr_array_add (f->signalled, g_strdup_printf ("%s=%s by %s", pv, value, actor));
}

static void
setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  f->dir = rtp_test_make_dir ();
  rtp_test_broker_start (&f->broker);
  f->db = rtp_test_open_database (f->dir, "setpoints.db");
  rtp_test_sql (f->db,
                "INSERT INTO users (user_id, login_name, first_name, last_name, password_hash) "
                "VALUES ('u1', 'user1', 'U', 'One', 'x'), ('u2', 'user2', 'U', 'Two', 'x')",
                2);
  rtp_test_sql (f->db, "INSERT INTO experiments (short_id) VALUES ('Lab')", 1);
  /* a publishable PV, a locked one, and one taken over from the original service whose name no topic can carry */
  rtp_test_sql (f->db,
                "INSERT INTO process_variables (pv_string, experiment_short_id, available_for_mqtt_publish) "
                "VALUES ('Lab:M1:Fan', 'Lab', 1), ('Lab:Locked', 'Lab', 0), ('Lab:a/b', 'Lab', 1)",
                3);
  rtp_test_sql (f->db, "INSERT INTO user_experiments (user_id, short_id) VALUES ('u1', 'Lab')", 1);
  f->users = rtp_test_user_manager (f->db);
  f->store = rtp_experiment_store_new (f->db);
  f->user = rtp_user_manager_get (f->users, "u1", &error);
  f->stranger = rtp_user_manager_get (f->users, "u2", &error);
  g_assert_no_error (error);
  f->heard = g_ptr_array_new_with_free_func (g_free);
  f->signalled = g_ptr_array_new_with_free_func (g_free);
  f->listener = rtp_test_connect_publisher (f->broker.port);
  rtp_mqtt_publisher_subscribe (f->listener, "rtp/#");
  g_signal_connect (f->listener, "message", G_CALLBACK (on_message), f);
  f->mqtt = rtp_test_connect_publisher (f->broker.port);
  f->setpoints = rtp_setpoints_new (f->db, f->store, f->mqtt, "rtp", 0);
  g_signal_connect (f->setpoints, "value-set", G_CALLBACK (on_value_set), f);
}

static void
teardown (Fixture *f, gconstpointer data)
{
  g_clear_object (&f->setpoints);
  rtp_mqtt_publisher_stop (f->mqtt);
  rtp_mqtt_publisher_stop (f->listener);
  g_clear_object (&f->mqtt);
  g_clear_object (&f->listener);
  g_clear_pointer (&f->user, rtp_user_free);
  g_clear_pointer (&f->stranger, rtp_user_free);
  g_clear_object (&f->store);
  g_clear_object (&f->users);
  g_clear_object (&f->db);
  g_ptr_array_unref (f->heard);
  g_ptr_array_unref (f->signalled);
  rtp_test_broker_stop (&f->broker);
  rtp_test_remove_dir (f->dir);
  g_free (f->dir);
}

static gboolean
set (Fixture *f, const RtpUser *caller, const char *pv, const RtpSetpointValue *value, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;
  rtp_setpoints_set_async (f->setpoints, caller, caller->user_id, FALSE, pv, value, NULL, rtp_test_async_ready,
                           &result);
  return rtp_setpoints_set_finish (f->setpoints, rtp_test_wait (&result), error);
}

static void
test_refusals (Fixture *f, gconstpointer data)
{
  RtpSetpointValue v = { .kind = RTP_SETPOINT_NUMBER, .text = "1200", .number = 1200 };
  g_autofree char *huge = g_strnfill (4097, '7');
  RtpSetpointValue too_long = { .kind = RTP_SETPOINT_TEXT, .text = huge };
  g_autoptr (GError) error = NULL;

  g_assert_false (set (f, f->user, "Lab:Nope", &v, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (set (f, f->stranger, "Lab:M1:Fan", &v, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_FORBIDDEN);
  g_clear_error (&error);
  g_assert_false (set (f, f->user, "Lab:Locked", &v, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_NOT_ACCEPTABLE);
  g_clear_error (&error);
  g_assert_false (set (f, f->user, "Lab:a/b", &v, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_CONFLICT);
  g_clear_error (&error);
  g_assert_false (set (f, f->user, "Lab:M1:Fan", &too_long, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_clear_error (&error);
  /* nothing went out; refusals before the broker are not audited */
  g_assert_cmpuint (f->signalled->len, ==, 0);
}

/* The text goes out on rtp/<pv with : as />, after the broker's ack the audit log has it. */
static void
test_publish_and_log (Fixture *f, gconstpointer data)
{
  RtpSetpointValue v = { .kind = RTP_SETPOINT_TEXT, .text = "1200" };
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) log = NULL;
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  const RtpSetpointLogEntry *e;

  /* the listener's subscription is in place once a first value comes through */
  while (f->heard->len == 0 && g_get_monotonic_time () < deadline)
    {
      g_assert_true (set (f, f->user, "Lab:M1:Fan", &v, &error));
      for (guint i = 0; i < 100 && f->heard->len == 0; i++)
        g_main_context_iteration (NULL, FALSE), g_usleep (2000);
    }
  g_assert_cmpuint (f->heard->len, >, 0);
  g_assert_cmpstr (g_ptr_array_index (f->heard, 0), ==, "rtp/Lab/M1/Fan=1200");
  g_assert_cmpstr (g_ptr_array_index (f->signalled, 0), ==, "Lab:M1:Fan=1200 by u1");
  log = rtp_setpoints_log (f->setpoints, "Lab:M1:Fan", 10, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (log->len, >=, 1);
  e = g_ptr_array_index (log, 0);
  g_assert_cmpstr (e->user_id, ==, "u1");
  g_assert_cmpstr (e->value, ==, "1200");
  g_assert_cmpstr (e->outcome, ==, "published");
  g_clear_pointer (&log, g_ptr_array_unref);
  log = rtp_setpoints_log (f->setpoints, "Lab:Locked", 10, &error);
  g_assert_cmpuint (log->len, ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/setpoints/refusals", Fixture, NULL, setup, test_refusals, teardown);
  g_test_add ("/setpoints/publish-and-log", Fixture, NULL, setup, test_publish_and_log, teardown);
  return g_test_run ();
}
