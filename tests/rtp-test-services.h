/* rtp-test-services.h: the services' unit tests set up the same pieces: a migrated SQLite file,
 * a user manager, a publisher connected to the test's broker */
#pragma once

#include "rtp-database.h"
#include "rtp-mqtt-publisher.h"
#include "rtp-test-util.h"
#include "rtp-user-manager.h"

static const guint8 rtp_test_signing_key[] = "test signing key, 32 bytes long!";

/* A new SQLite file @name in @dir, migrated. */
static inline RtpDatabase *
rtp_test_open_database (const char *dir, const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *uri = g_strdup_printf ("sqlite:///%s/%s", dir, name);
  RtpDatabase *db = rtp_database_open (uri, &error);

  g_assert_no_error (error);
  g_assert_true (rtp_database_migrate (db, &error));
  g_assert_no_error (error);
  return db;
}

/* Runs @sql, which must change @rows rows. */
static inline void
rtp_test_sql (RtpDatabase *db, const char *sql, gint64 rows)
{
  g_autoptr (GError) error = NULL;
  gint64 changed = rtp_database_exec (db, &error, sql, NULL);

  g_assert_no_error (error);
  g_assert_cmpint (changed, ==, rows);
}

/* The first column of the first row of @sql, as an integer (0 when NULL). */
static inline gint64
rtp_test_count (RtpDatabase *db, const char *sql)
{
  g_autoptr (GdaDataModel) m = rtp_database_select (db, NULL, sql, NULL);

  g_assert_nonnull (m);
  return rtp_db_int0 (m, 0, 0);
}

static inline RtpUserManager *
rtp_test_user_manager (RtpDatabase *db)
{
  RtpUserManagerSettings settings = { .token_validity_s = 60, .max_failures = 3, .lockout_s = 60, .max_pending = 4 };

  return rtp_user_manager_new (db, rtp_test_signing_key, sizeof rtp_test_signing_key - 1, &settings);
}

/* A publisher connected to the broker on @port (waits up to 10 s). */
static inline RtpMqttPublisher *
rtp_test_connect_publisher (guint16 port)
{
  g_autofree char *url = g_strdup_printf ("tcp://127.0.0.1:%u", port);
  RtpMqttSettings settings = { .server_url = url, .timeout_s = 5 };
  RtpMqttPublisher *p = rtp_mqtt_publisher_new (&settings);
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  rtp_mqtt_publisher_start (p);
  while (!rtp_mqtt_publisher_get_connected (p) && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE), g_usleep (1000);
  g_assert_true (rtp_mqtt_publisher_get_connected (p));
  return p;
}
