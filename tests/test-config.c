/* test-config.c: precedence and validation of RtpConfig */
#include "rtp-config.h"
#include "rtp-error.h"

#include <glib/gstdio.h>

static void
test_defaults (void)
{
  g_autoptr (RtpConfig) config = rtp_config_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *uri = NULL;

  g_assert_true (rtp_config_validate (config, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (rtp_config_get_string (config, "FLASK_RUN_HOST"), ==, "127.0.0.1");
  g_assert_cmpint (rtp_config_get_int (config, "FLASK_RUN_PORT"), ==, 5000);
  g_assert_cmpint (rtp_config_get_int (config, "ACCESS_TOKEN_VALIDITY_TIME"), ==, 120);
  g_assert_cmpint (rtp_config_get_int (config, "DEFAULT_ARCHIVER_TIME_PERIOD"), ==, 7);
  g_assert_cmpint (rtp_config_get_int (config, "RTP_MAX_BODY_BYTES"), ==, 1048576);
  g_assert_cmpint (rtp_config_get_int (config, "RTP_MAX_IMPORT_BYTES"), ==, 64 * 1048576);
  g_assert_cmpfloat (rtp_config_get_double (config, "RTP_MQTT_TIMEOUT"), ==, 2.0);
  g_assert_cmpstr (rtp_config_get_string (config, "MQTT_CHANNEL_PREFIX"), ==, "rtp");
  g_assert_cmpstr (rtp_config_get_string (config, "EMAIL_MQTT_CHANNEL"), ==, "email");
  g_assert_cmpstr (rtp_config_get_string (config, "DEFAULT_ADMIN_NAME"), ==, "admin");
  g_assert_null (rtp_config_get_string (config, "ARCHIVER_URL"));
  g_assert_false (rtp_config_is_set (config, "SECRET_KEY"));

  rtp_config_set_state_dir (config, "/tmp/rtp-state-test");
  uri = rtp_config_dup_database_uri (config);
  g_assert_cmpstr (uri, ==, "sqlite:////tmp/rtp-state-test/realtimeplot.db");
}

static void
test_precedence (void)
{
  g_autoptr (RtpConfig) config = rtp_config_new ();
  g_autoptr (GError) error = NULL;
  const char *file = "# the original service's .env\n"
                     "FLASK_APP=app.py\n"
                     "export FLASK_RUN_PORT=6000\n"
                     "MQTT_CHANNEL_PREFIX = \"lab\"\n"
                     "THRESHOLD_UNIT='°C'\n"
                     "ARCHIVER_URL=http://archiver:17665 # inline comment\n"
                     "DEFAULT_ARCHIVER_TIME_PERIOD=3\n";
  const char *env[] = { "FLASK_RUN_PORT=7000", "EMAIL_MQTT_CHANNEL=mail", "UNRELATED=1", NULL };

  g_assert_true (rtp_config_load_data (config, file, ".env", &error));
  g_assert_no_error (error);
  rtp_config_load_environment (config, env);
  rtp_config_set_override (config, "DEFAULT_ARCHIVER_TIME_PERIOD", "9");
  g_assert_true (rtp_config_validate (config, &error));
  g_assert_no_error (error);

  /* file < environment < command line */
  g_assert_cmpint (rtp_config_get_int (config, "FLASK_RUN_PORT"), ==, 7000);
  g_assert_cmpint (rtp_config_get_int (config, "DEFAULT_ARCHIVER_TIME_PERIOD"), ==, 9);
  g_assert_cmpstr (rtp_config_get_string (config, "MQTT_CHANNEL_PREFIX"), ==, "lab");
  g_assert_cmpstr (rtp_config_get_string (config, "EMAIL_MQTT_CHANNEL"), ==, "mail");
  g_assert_cmpstr (rtp_config_get_string (config, "THRESHOLD_UNIT"), ==, "°C");
  g_assert_cmpstr (rtp_config_get_string (config, "ARCHIVER_URL"), ==, "http://archiver:17665");
}

static void
test_file (void)
{
  g_autoptr (RtpConfig) config = rtp_config_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("rtp-config-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "server.env", NULL);

  g_assert_true (g_file_set_contents (path, "SQLALCHEMY_DATABASE_URI=sqlite:///x.db\n", -1, NULL));
  g_assert_true (rtp_config_load_file (config, path, TRUE, &error));
  g_assert_true (rtp_config_validate (config, &error));
  g_assert_cmpstr (rtp_config_get_string (config, "SQLALCHEMY_DATABASE_URI"), ==, "sqlite:///x.db");

  /* a missing optional file is fine, a missing named one is not */
  g_assert_true (rtp_config_load_file (config, "/nonexistent/.env", FALSE, &error));
  g_assert_false (rtp_config_load_file (config, "/nonexistent/.env", TRUE, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_unlink (path);
  g_rmdir (dir);
}

typedef struct {
  const char *key;
  const char *value;
  const char *expected; /* part of the message */
} BadCase;

static void
test_invalid (void)
{
  static const BadCase cases[] = {
    { "FLASK_RUN_PORT", "http", "FLASK_RUN_PORT" },
    { "FLASK_RUN_PORT", "70000", "FLASK_RUN_PORT" },
    { "ACCESS_TOKEN_VALIDITY_TIME", "0", "ACCESS_TOKEN_VALIDITY_TIME" },
    { "ACCESS_TOKEN_VALIDITY_TIME", "12abc", "ACCESS_TOKEN_VALIDITY_TIME" },
    { "RTP_MQTT_TIMEOUT", "0", "RTP_MQTT_TIMEOUT" },
    { "RTP_ARCHIVER_TIMEOUT", "-1", "RTP_ARCHIVER_TIMEOUT" },
    { "ARCHIVER_TIMEZONE", "Mars/Olympus", "ARCHIVER_TIMEZONE" },
    { "ARCHIVER_URL", "ftp://x", "ARCHIVER_URL" },
    { "SQLALCHEMY_DATABASE_URI", "mysql://x/y", "SQLALCHEMY_DATABASE_URI" },
    { "MQTT_SERVER_URL", "tcp://host:99999", "MQTT_SERVER_URL" },
    { "RTP_MAX_POINTS", "-5", "RTP_MAX_POINTS" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (RtpConfig) config = rtp_config_new ();
      g_autoptr (GError) error = NULL;
      g_autofree char *line = g_strdup_printf ("%s=%s\n", cases[i].key, cases[i].value);

      g_assert_true (rtp_config_load_data (config, line, "test.env", &error));
      g_assert_false (rtp_config_validate (config, &error));
      g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
      g_assert_nonnull (strstr (error->message, cases[i].expected));
      g_assert_nonnull (strstr (error->message, "test.env:1"));
    }
}

static void
test_valid_values (void)
{
  g_autoptr (RtpConfig) config = rtp_config_new ();
  g_autoptr (GError) error = NULL;
  const char *env[] = { "MQTT_SERVER_URL=tcp://broker:1883",
                        "ARCHIVER_TIMEZONE=Europe/Berlin",
                        "SQLALCHEMY_DATABASE_URI=postgresql+psycopg2://u:p@db:5432/rtp",
                        "RTP_MQTT_TIMEOUT=0.5",
                        "FLASK_RUN_PORT=",
                        NULL };

  rtp_config_load_environment (config, env);
  g_assert_true (rtp_config_validate (config, &error));
  g_assert_no_error (error);
  g_assert_cmpfloat (rtp_config_get_double (config, "RTP_MQTT_TIMEOUT"), ==, 0.5);
  /* an empty value means unset */
  g_assert_cmpint (rtp_config_get_int (config, "FLASK_RUN_PORT"), ==, 5000);
}

/* A reload names exactly the changed keys that are held by services built at start (before, the
 * application kept a second list, which had forgotten RTP_CLIENT_TIMEOUT). */
static void
test_restart_needed (void)
{
  g_autoptr (RtpConfig) old = rtp_config_new ();
  g_autoptr (RtpConfig) fresh = rtp_config_new ();
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) restart = NULL;
  const char *const expected[] = { "RTP_CLIENT_TIMEOUT", "RTP_MAX_CONNECTIONS", NULL };

  g_assert_true (rtp_config_load_data (old, "RTP_MAX_POINTS=10\nRTP_CLIENT_TIMEOUT=15\n", "old", &error));
  g_assert_true (rtp_config_load_data (fresh,
                                       "RTP_MAX_POINTS=20\nDEFAULT_ARCHIVER_TIME_PERIOD=2\nARCHIVER_TIMEZONE=UTC\n"
                                       "RTP_CLIENT_TIMEOUT=30\nRTP_MAX_CONNECTIONS=5\n",
                                       "fresh", &error));
  g_assert_true (rtp_config_validate (old, &error) && rtp_config_validate (fresh, &error));
  restart = rtp_config_restart_needed (old, fresh);
  g_assert_true (g_strv_equal ((const char *const *) restart, expected));
}

static void
test_malformed_line (void)
{
  g_autoptr (RtpConfig) config = rtp_config_new ();
  g_autoptr (GError) error = NULL;

  g_assert_false (rtp_config_load_data (config, "OK=1\nthis is not a setting\n", "bad.env", &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "bad.env:2"));
  g_clear_error (&error);
  g_assert_false (rtp_config_load_data (config, "A=\xff\xfe\n", "bin.env", &error));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/config/defaults", test_defaults);
  g_test_add_func ("/config/precedence", test_precedence);
  g_test_add_func ("/config/file", test_file);
  g_test_add_func ("/config/invalid", test_invalid);
  g_test_add_func ("/config/restart-needed", test_restart_needed);
  g_test_add_func ("/config/valid-values", test_valid_values);
  g_test_add_func ("/config/malformed-line", test_malformed_line);
  return g_test_run ();
}
