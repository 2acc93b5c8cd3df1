/* test-control.c: the org.realtimeplot.Server1 interface (RtpControl) on a private session bus
 * (GTestDBus), called through the generated proxy as rtpctl calls it; services on a temporary
 * SQLite file. Checks that GVariant arguments become the services' typed fields. */
#include "rtp-control.h"
#include "rtp-dbus-generated.h"
#include "rtp-error.h"
#include "rtp-test-services.h"

#include <string.h>

typedef struct {
  char *dir;
  GTestDBus *bus;
  RtpServices s;
  RtpControl *control;
  RtpDbusServer1 *proxy;
} Fixture;

static gboolean
has_owner (Fixture *f)
{
  g_autofree char *owner = g_dbus_proxy_get_name_owner (G_DBUS_PROXY (f->proxy));
  return owner != NULL;
}

static void
setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *generated = NULL;
  RtpMqttSettings mqtt_settings = { .server_url = NULL, .timeout_s = 1 };
  RtpSubscriptionSettings sub_settings = { .channel_prefix = "rtp", .email_channel = "email", .threshold_unit = "" };
  RtpHttpSettings http_settings = { .max_body_bytes = 1024, .max_import_bytes = 1024, .client_timeout_s = 5 };
  g_autoptr (GTimeZone) utc = g_time_zone_new_utc ();
  RtpAlertSettings alert_settings = { .time_zone = utc };
  gint64 deadline;

  f->dir = rtp_test_make_dir ();
  f->bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (f->bus);
  f->s.db = rtp_test_open_database (f->dir, "control.db");
  f->s.users = rtp_test_user_manager (f->s.db);
  g_assert_true (rtp_user_manager_ensure_admin (f->s.users, "admin", "admin secret", &generated, &error));
  f->s.experiments = rtp_experiment_store_new (f->s.db);
  f->s.mqtt = rtp_mqtt_publisher_new (&mqtt_settings);
  f->s.archiver = rtp_archiver_client_new (NULL, 1);
  f->s.subscriptions = rtp_subscriptions_new (f->s.db, f->s.users, f->s.experiments, f->s.mqtt, &sub_settings);
  f->s.live = rtp_live_values_new (f->s.db, f->s.experiments, f->s.mqtt);
  f->s.alerter = rtp_alerter_new (f->s.db, f->s.live, f->s.subscriptions, &alert_settings);
  f->s.setpoints = rtp_setpoints_new (f->s.db, f->s.experiments, f->s.mqtt, "rtp", 0);
  f->s.http = rtp_http_server_new (f->s.users, &http_settings);
  f->control = rtp_control_new (&f->s, "http://127.0.0.1:1/", NULL, NULL);
  g_assert_true (rtp_control_start (f->control, "session", &error));
  f->proxy = rtp_dbus_server1_proxy_new_for_bus_sync (G_BUS_TYPE_SESSION, G_DBUS_PROXY_FLAGS_NONE,
                                                      "org.realtimeplot.Server1", "/org/realtimeplot/Server1", NULL,
                                                      &error);
  g_assert_no_error (error);
  /* the name is owned from the main loop */
  deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (!has_owner (f) && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE), g_usleep (1000);
  g_assert_true (has_owner (f));
}

static void
teardown (Fixture *f, gconstpointer data)
{
  g_clear_object (&f->proxy);
  rtp_control_stop (f->control);
  g_clear_object (&f->control);
  g_clear_object (&f->s.http);
  g_clear_object (&f->s.setpoints);
  g_clear_object (&f->s.alerter);
  g_clear_object (&f->s.live);
  g_clear_object (&f->s.subscriptions);
  g_clear_object (&f->s.archiver);
  g_clear_object (&f->s.mqtt);
  g_clear_object (&f->s.experiments);
  g_clear_object (&f->s.users);
  g_clear_object (&f->s.db);
  g_test_dbus_down (f->bus);
  g_clear_object (&f->bus);
  rtp_test_remove_dir (f->dir);
  g_free (f->dir);
}

/* The server runs in this thread: calls are made async and the loop spun until they return. */
static void
called (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

static gboolean
create_pv (Fixture *f, const char *pv, GVariant *fields, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;
  rtp_dbus_server1_call_create_pv (f->proxy, pv, fields, NULL, called, &result);
  return rtp_dbus_server1_call_create_pv_finish (f->proxy, rtp_test_wait (&result), error);
}

/* CreatePv: a{sv} becomes the store's typed fields — the same names, types and refusals as HTTP. */
static void
test_create_pv (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  GVariantDict d;
  g_autoptr (GdaDataModel) m = NULL;

  g_variant_dict_init (&d, NULL);
  g_variant_dict_insert (&d, "human_readable_name", "s", "Fan");
  g_variant_dict_insert (&d, "available_for_mqtt_publish", "b", TRUE);
  g_variant_dict_insert (&d, "default_threshold_min", "i", -3);
  g_variant_dict_insert (&d, "default_threshold_max", "x", G_GINT64_CONSTANT (9007199254740993));
  g_assert_true (create_pv (f, "Lab:Fan", g_variant_dict_end (&d), &error));
  g_assert_no_error (error);
  m = rtp_database_select (
    f->s.db, NULL,
    "SELECT human_readable_name, available_for_mqtt_publish, default_threshold_min, "
    "default_threshold_max, experiment_short_id FROM process_variables WHERE pv_string = 'Lab:Fan'",
    NULL);
  g_assert_cmpuint (rtp_db_rows (m), ==, 1);
  g_assert_cmpstr (rtp_db_str (m, 0, 0), ==, "Fan");
  g_assert_cmpint (rtp_db_int0 (m, 0, 1), ==, 1);
  g_assert_cmpint (rtp_db_int0 (m, 0, 2), ==, -3);
  g_assert_cmpint (rtp_db_int0 (m, 0, 3), ==, G_GINT64_CONSTANT (9007199254740993));
  g_assert_cmpstr (rtp_db_str (m, 0, 4), ==, "Lab");

  /* a field of another type is refused and nothing is written */
  g_variant_dict_init (&d, NULL);
  g_variant_dict_insert (&d, "default_threshold_min", "d", 1.5);
  g_assert_false (create_pv (f, "Lab:Other", g_variant_dict_end (&d), &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID); /* org.realtimeplot.Server1.Error.Invalid, mapped back */
  g_clear_error (&error);
  g_assert_false (create_pv (f, "Lab:Fan", g_variant_new ("a{sv}", NULL), &error)); /* a duplicate */
  g_assert_error (error, RTP_ERROR, RTP_ERROR_EXISTS);
  g_clear_error (&error);
  g_assert_false (create_pv (f, "Lab:Fan two", g_variant_new ("a{sv}", NULL), &error)); /* not an EPICS name */
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_assert_cmpint (rtp_test_count (f->s.db, "SELECT COUNT(*) FROM process_variables"), ==, 1);
}

/* CreateUser and AssignUser: typed user fields and the experiment change of the HTTP route. */
static void
test_users (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GAsyncResult) result = NULL;
  g_autofree char *id = NULL;
  g_autofree char *password = NULL;

  g_assert_true (create_pv (f, "Lab:Fan", g_variant_new ("a{sv}", NULL), &error));
  rtp_dbus_server1_call_create_user (f->proxy, "ada", "Ada", "L", "User", "ada@example.org", NULL, called, &result);
  g_assert_true (rtp_dbus_server1_call_create_user_finish (f->proxy, &id, &password, rtp_test_wait (&result), &error));
  g_assert_no_error (error);
  g_assert_cmpuint (strlen (password), >=, 16);
  g_assert_cmpint (rtp_test_count (f->s.db,
                                   "SELECT COUNT(*) FROM users WHERE login_name = 'ada' AND email = 'ada@example.org'"),
                   ==, 1);
  g_clear_object (&result);
  rtp_dbus_server1_call_create_user (f->proxy, "bad\tname", "B", "B", "User", "", NULL, called, &result);
  g_assert_false (rtp_dbus_server1_call_create_user_finish (f->proxy, NULL, NULL, rtp_test_wait (&result), &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_clear_error (&error);

  g_clear_object (&result);
  rtp_dbus_server1_call_assign_user (f->proxy, "Lab", id, NULL, called, &result);
  g_assert_true (rtp_dbus_server1_call_assign_user_finish (f->proxy, rtp_test_wait (&result), &error));
  g_assert_cmpint (rtp_test_count (f->s.db, "SELECT COUNT(*) FROM user_experiments WHERE short_id = 'Lab'"), ==, 1);
  g_clear_object (&result);
  rtp_dbus_server1_call_assign_user (f->proxy, "Lab", "no-such-user", NULL, called, &result);
  g_assert_false (rtp_dbus_server1_call_assign_user_finish (f->proxy, rtp_test_wait (&result), &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_NOT_FOUND);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/control/create-pv", Fixture, NULL, setup, test_create_pv, teardown);
  g_test_add ("/control/users", Fixture, NULL, setup, test_users, teardown);
  return g_test_run ();
}
