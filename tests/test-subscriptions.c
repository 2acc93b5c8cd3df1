/* test-subscriptions.c: RtpSubscriptions against a temporary SQLite file and a real mosquitto */
#include "rtp-database.h"
#include "rtp-error.h"
#include "rtp-subscriptions.h"
#include "rtp-test-services.h"

#include <json-glib/json-glib.h>
#include <string.h>

typedef struct {
  char *dir;
  RtpTestBroker broker;
  RtpDatabase *db;
  RtpUserManager *users;
  RtpExperimentStore *store;
  RtpMqttPublisher *mqtt;
  RtpMqttPublisher *listener; /* what the alert service would receive */
  GPtrArray *heard;           /* announcements, as JSON text */
  RtpSubscriptions *subs;
  RtpUser *user;     /* assigned to E1 */
  RtpUser *stranger; /* assigned to nothing */
} Fixture;

static void
on_message (RtpMqttPublisher *mqtt, const char *topic, GBytes *payload, gpointer user_data)
{
  Fixture *f = user_data;
  gsize len = 0;
  const char *data = g_bytes_get_data (payload, &len);

  if (g_str_equal (topic, "/rtp/email"))
    g_ptr_array_add (f->heard, g_strndup (data, len));
}

static void
setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  RtpSubscriptionSettings settings = { .channel_prefix = "rtp", .email_channel = "email", .threshold_unit = "°C" };

  f->dir = rtp_test_make_dir ();
  rtp_test_broker_start (&f->broker);
  f->db = rtp_test_open_database (f->dir, "subs.db");
  rtp_test_sql (f->db,
                "INSERT INTO users (user_id, login_name, first_name, last_name, email, password_hash) "
                "VALUES ('u1', 'user1', 'Ada \"Q\"', 'One', 'ada@example.org', 'x'), "
                "('u2', 'user2', 'Bo', 'Two', 'bo@example.org', 'x')",
                2);
  rtp_test_sql (f->db, "INSERT INTO experiments (short_id) VALUES ('E1')", 1);
  rtp_test_sql (f->db,
                "INSERT INTO process_variables (pv_string, experiment_short_id, default_threshold_min, "
                "default_threshold_max) VALUES ('E1:A', 'E1', NULL, NULL), ('E1:B', 'E1', 0, 10)",
                2);
  rtp_test_sql (f->db, "INSERT INTO user_experiments (user_id, short_id) VALUES ('u1', 'E1')", 1);
  f->users = rtp_test_user_manager (f->db);
  f->store = rtp_experiment_store_new (f->db);
  f->user = rtp_user_manager_get (f->users, "u1", &error);
  g_assert_no_error (error);
  f->stranger = rtp_user_manager_get (f->users, "u2", &error);
  g_assert_no_error (error);
  f->heard = g_ptr_array_new_with_free_func (g_free);
  f->listener = rtp_test_connect_publisher (f->broker.port);
  rtp_mqtt_publisher_subscribe (f->listener, "/rtp/email");
  g_signal_connect (f->listener, "message", G_CALLBACK (on_message), f);
  f->mqtt = rtp_test_connect_publisher (f->broker.port);
  f->subs = rtp_subscriptions_new (f->db, f->users, f->store, f->mqtt, &settings);
  /* the listener's subscription is in place once its own test message comes back */
  {
    g_autoptr (GAsyncResult) result = NULL;
    gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
    while (f->heard->len == 0 && g_get_monotonic_time () < deadline)
      {
        rtp_mqtt_publisher_publish_async (f->mqtt, "/rtp/email", "hello", 5, 1, NULL, rtp_test_async_ready, &result);
        g_assert_true (rtp_mqtt_publisher_publish_finish (f->mqtt, rtp_test_wait (&result), NULL));
        g_clear_object (&result);
        for (guint i = 0; i < 50 && f->heard->len == 0; i++)
          g_main_context_iteration (NULL, FALSE), g_usleep (2000);
      }
    g_assert_cmpuint (f->heard->len, >, 0);
    while (g_main_context_iteration (NULL, FALSE))
      ;
    g_ptr_array_set_size (f->heard, 0);
  }
}

static void
teardown (Fixture *f, gconstpointer data)
{
  g_clear_object (&f->subs);
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
  rtp_test_broker_stop (&f->broker);
  rtp_test_remove_dir (f->dir);
  g_free (f->dir);
}

static RtpSubscription *
subscribe (Fixture *f, const RtpUser *caller, const char *pv, const RtpSubscriptionRequest *request, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;

  rtp_subscriptions_subscribe_async (f->subs, caller, pv, request, NULL, rtp_test_async_ready, &result);
  return rtp_subscriptions_subscribe_finish (f->subs, rtp_test_wait (&result), error);
}

static JsonObject *
wait_announcement (Fixture *f, guint index)
{
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  JsonNode *node;

  while (f->heard->len <= index && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE), g_usleep (1000);
  g_assert_cmpuint (f->heard->len, >, index);
  node = json_from_string (g_ptr_array_index (f->heard, index), NULL);
  g_assert_nonnull (node);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
  {
    JsonObject *o = json_object_ref (json_node_get_object (node));
    json_node_unref (node);
    return o;
  }
}

/* The contract's order: the PV (404), the assignment (403), then the fields; nothing is written. */
static void
test_refusals (Fixture *f, gconstpointer data)
{
  RtpSubscriptionRequest wrong = { .threshold_min_state = RTP_FIELD_WRONG_TYPE };
  RtpSubscriptionRequest wrong_email = { .email_state = RTP_FIELD_WRONG_TYPE };
  RtpSubscriptionRequest none = { 0 };
  RtpSubscriptionRequest bad_email = { .email_state = RTP_FIELD_SET,
                                       .email = "a@b.org, c@d.org",
                                       .threshold_min_state = RTP_FIELD_SET,
                                       .threshold_max_state = RTP_FIELD_SET };
  g_autoptr (GError) error = NULL;
  const char *const *fields;

  g_assert_null (subscribe (f, f->user, "E1:Nope", &wrong, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_null (subscribe (f, f->stranger, "E1:A", &wrong, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_FORBIDDEN);
  g_clear_error (&error);
  g_assert_null (subscribe (f, f->user, "E1:A", &wrong, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_assert_cmpstr (error->message, ==, "threshold_min and threshold_max must be integers.");
  g_clear_error (&error);
  g_assert_null (subscribe (f, f->user, "E1:A", &wrong_email, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_clear_error (&error);
  /* no thresholds given and the PV has no defaults: one error naming both */
  g_assert_null (subscribe (f, f->user, "E1:A", &none, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  fields = rtp_error_get_fields (error);
  g_assert_nonnull (fields);
  g_assert_cmpstr (fields[0], ==, "threshold_min: Missing threshold_min.");
  g_assert_cmpstr (fields[1], ==, "threshold_max: Missing threshold_max.");
  g_assert_null (fields[2]);
  g_clear_error (&error);
  g_assert_null (subscribe (f, f->user, "E1:A", &bad_email, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM subscriptions"), ==, 0);
  g_assert_cmpuint (f->heard->len, ==, 0);
}

/* Stored after the broker's acknowledgement, announced in the alert service's format; a second
 * subscription to the same PV is refused; unsubscribing announces the reverse. */
static void
test_subscribe_announce_unsubscribe (Fixture *f, gconstpointer data)
{
  RtpSubscriptionRequest defaults = { 0 };
  RtpSubscriptionRequest own = { .email_state = RTP_FIELD_SET,
                                 .email = "lab@example.org",
                                 .threshold_min_state = RTP_FIELD_SET,
                                 .threshold_min = -5,
                                 .threshold_max_state = RTP_FIELD_SET,
                                 .threshold_max = 5 };
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpSubscription) sub = subscribe (f, f->user, "E1:B", &defaults, &error);
  g_autoptr (RtpSubscription) other = NULL;
  g_autoptr (JsonObject) on = NULL;
  g_autoptr (JsonObject) off = NULL;
  g_autoptr (GPtrArray) list = NULL;
  g_autoptr (GAsyncResult) result = NULL;
  g_auto (GStrv) pvs = NULL;

  g_assert_no_error (error);
  g_assert_cmpstr (sub->email, ==, "ada@example.org"); /* the caller's own */
  g_assert_cmpint (sub->threshold_min, ==, 0);         /* the PV's defaults; 0 is a value */
  g_assert_cmpint (sub->threshold_max, ==, 10);
  on = wait_announcement (f, 0);
  g_assert_cmpstr (json_object_get_string_member (on, "email"), ==, "ada@example.org");
  g_assert_cmpstr (json_object_get_string_member (on, "pv"), ==, "E1:B");
  g_assert_cmpint (json_object_get_int_member (on, "min_threshold"), ==, 0);
  g_assert_cmpint (json_object_get_int_member (on, "max_threshold"), ==, 10);
  g_assert_cmpstr (json_object_get_string_member (on, "threshold_unit"), ==, "°C");
  g_assert_cmpint (json_object_get_int_member (on, "active"), ==, 1);
  g_assert_cmpstr (json_object_get_string_member (on, "message"), ==,
                   "Hello Ada \"Q\" One.\nPlease check the E1:B process variable! A threshold value has been breached.");

  other = subscribe (f, f->user, "E1:A", &own, &error);
  g_assert_no_error (error);
  g_clear_pointer (&other, rtp_subscription_free);
  other = subscribe (f, f->user, "E1:A", &own, &error);
  g_assert_error (error, RTP_ERROR, RTP_ERROR_EXISTS);
  g_clear_error (&error);

  list = rtp_subscriptions_list (f->subs, "u1", NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (list->len, ==, 2);
  g_assert_cmpstr (((RtpSubscription *) g_ptr_array_index (list, 0))->email, ==, "lab@example.org");
  pvs = rtp_subscriptions_list_pvs (f->subs, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (pvs), ==, 2);
  g_assert_cmpstr (pvs[0], ==, "E1:A");

  rtp_subscriptions_unsubscribe_async (f->subs, f->user, "E1:B", NULL, rtp_test_async_ready, &result);
  g_assert_true (rtp_subscriptions_unsubscribe_finish (f->subs, rtp_test_wait (&result), &error));
  g_assert_no_error (error);
  off = wait_announcement (f, 2);
  g_assert_cmpstr (json_object_get_string_member (off, "pv"), ==, "E1:B");
  g_assert_cmpint (json_object_get_int_member (off, "active"), ==, 0);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM subscriptions WHERE pv_string = 'E1:B'"), ==, 0);
  g_clear_object (&result);
  rtp_subscriptions_unsubscribe_async (f->subs, f->user, "E1:B", NULL, rtp_test_async_ready, &result);
  g_assert_false (rtp_subscriptions_unsubscribe_finish (f->subs, rtp_test_wait (&result), &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_NOT_FOUND);
}

/* A PV deleted with its subscriptions: the removal is queued in the same transaction and the
 * outbox is sent to the broker. */
static void
test_cascade_outbox (Fixture *f, gconstpointer data)
{
  RtpSubscriptionRequest defaults = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpSubscription) sub = subscribe (f, f->user, "E1:B", &defaults, &error);
  g_autoptr (RtpProcessVariable) deleted = NULL;
  g_autoptr (JsonObject) off = NULL;

  g_assert_nonnull (sub);
  g_autofree char *experiment = NULL;
  gint64 deadline;

  g_assert_no_error (error);
  json_object_unref (wait_announcement (f, 0));
  deleted = rtp_experiment_store_delete_pv (f->store, "E1:B", &experiment, &error);
  g_assert_no_error (error);
  g_assert_cmpint (rtp_test_count (f->db, "SELECT COUNT(*) FROM subscriptions"), ==, 0);
  /* written with the delete; sent from the main loop once the transaction has committed */
  g_assert_cmpuint (rtp_subscriptions_outbox_length (f->subs), ==, 1);
  deadline = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (rtp_subscriptions_outbox_length (f->subs) > 0 && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE), g_usleep (1000);
  g_assert_cmpuint (rtp_subscriptions_outbox_length (f->subs), ==, 0);
  off = wait_announcement (f, 1);
  g_assert_cmpstr (json_object_get_string_member (off, "pv"), ==, "E1:B");
  g_assert_cmpint (json_object_get_int_member (off, "active"), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/subscriptions/refusals", Fixture, NULL, setup, test_refusals, teardown);
  g_test_add ("/subscriptions/subscribe-announce-unsubscribe", Fixture, NULL, setup,
              test_subscribe_announce_unsubscribe, teardown);
  g_test_add ("/subscriptions/cascade-outbox", Fixture, NULL, setup, test_cascade_outbox, teardown);
  return g_test_run ();
}
