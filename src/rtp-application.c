/* rtp-application.c: options, configuration, start-up, signals, orderly shutdown */
#define G_LOG_DOMAIN "RtpApplication"

#include "rtp-application.h"
#include "rtp-control.h"
#include "rtp-takeover.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-password.h"
#include "rtp-secrets.h"
#include "rtp-log.h"
#include "rtp-services.h"

#include <glib-unix.h>
#include <malloc.h>
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <unistd.h>
#include <stdio.h>
#include "rtp-notify.h"

#include <string.h>

struct _RtpApplication {
  GApplication parent_instance;

  RtpServices services; /* (owned) members */
  RtpControl *control;  /* (owned) (nullable) */
  gboolean migrate_only;
  gboolean list_routes;  /* --list-routes */
  RtpSecrets *secrets;   /* (owned) */
  char *config_path;     /* (owned) (nullable) --config; NULL: .env if present */
  GHashTable *overrides; /* (owned) command-line settings, re-applied on reload */
  char *state_dir;       /* (owned) (nullable) */
  char *bus;             /* (owned) */
  char *migrate_from;    /* (owned) (nullable) --migrate-from FILE */
  int exit_status;
  gboolean held;
  gboolean stopping;
  guint sigint_id;
  guint sigterm_id;
  guint drain_id;
  guint trim_id;
  guint watchdog_id; /* WATCHDOG=1 to systemd, from the main loop: a wedged loop is restarted */
  guint status_id;   /* STATUS= with the requests served */
  gint64 stop_deadline_us;
};

G_DEFINE_TYPE (RtpApplication, rtp_application, G_TYPE_APPLICATION)

static const GOptionEntry options[] = {
  { "config", 'c', 0, G_OPTION_ARG_FILENAME, NULL, "Read settings from FILE (KEY=value lines, like .env)", "FILE" },
  { "port", 'p', 0, G_OPTION_ARG_STRING, NULL, "Listen on PORT (0 picks a free port)", "PORT" },
  { "host", 0, 0, G_OPTION_ARG_STRING, NULL, "Listen on address HOST", "HOST" },
  { "database", 'd', 0, G_OPTION_ARG_STRING, NULL, "Database URI (sqlite:///path or postgresql://…)", "URI" },
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, NULL, "Keep the database and keys in DIR", "DIR" },
  { "bus", 0, 0, G_OPTION_ARG_STRING, NULL,
    "D-Bus for local control: session, system or none (default: session when there is one)", "BUS" },
  { "migrate-from", 0, 0, G_OPTION_ARG_FILENAME, NULL,
    "Copy the data of FILE (the original service's SQLite database, or one of ours) into the configured database, print the counts and exit",
    "FILE" },
  { "list-routes", 0, 0, G_OPTION_ARG_NONE, NULL,
    "Print the HTTP routes (METHOD PATTERN, * for a path parameter) after start-up checks, and exit", NULL },
  { "verbose", 'v', 0, G_OPTION_ARG_NONE, NULL, "Log debug messages", NULL },
  { "version", 0, 0, G_OPTION_ARG_NONE, NULL, "Print the version and exit", NULL },
  { NULL },
};

static void fail (RtpApplication *self, int status, const char *format, ...) G_GNUC_PRINTF (3, 4);

static void
fail (RtpApplication *self, int status, const char *format, ...)
{
  va_list args;
  g_autofree char *message = NULL;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_printerr ("realtimeplot-server: %s\n", message);
  self->exit_status = status;
}

/* defaults → file → environment → command line; used at start and by ReloadConfig */
static RtpConfig *
load_config (RtpApplication *self, GError **error)
{
  g_autoptr (RtpConfig) config = rtp_config_new ();
  g_auto (GStrv) env = g_get_environ ();
  GHashTableIter iter;
  gpointer key, value;

  if (self->config_path != NULL)
    {
      if (!rtp_config_load_file (config, self->config_path, TRUE, error))
        return NULL;
    }
  else if (!rtp_config_load_file (config, ".env", FALSE, error))
    return NULL;
  rtp_config_load_environment (config, (const char *const *) env);
  g_hash_table_iter_init (&iter, self->overrides);
  while (g_hash_table_iter_next (&iter, &key, &value))
    rtp_config_set_override (config, key, value);
  if (self->state_dir != NULL)
    rtp_config_set_state_dir (config, self->state_dir);
  if (!rtp_config_validate (config, error))
    return NULL;
  return g_steal_pointer (&config);
}

static gint
rtp_application_handle_local_options (GApplication *app, GVariantDict *dict)
{
  RtpApplication *self = RTP_APPLICATION (app);
  g_autoptr (GError) error = NULL;
  const char *config_file = NULL;
  const char *value = NULL;

  if (g_variant_dict_contains (dict, "version"))
    {
      g_print ("realtimeplot-server %s\n", RTP_VERSION);
      return 0;
    }
  if (g_variant_dict_contains (dict, "verbose"))
    g_log_set_debug_enabled (TRUE);
  if (g_variant_dict_lookup (dict, "config", "^&ay", &config_file))
    self->config_path = g_strdup (config_file);
  if (g_variant_dict_lookup (dict, "port", "&s", &value))
    g_hash_table_insert (self->overrides, g_strdup ("FLASK_RUN_PORT"), g_strdup (value));
  if (g_variant_dict_lookup (dict, "host", "&s", &value))
    g_hash_table_insert (self->overrides, g_strdup ("FLASK_RUN_HOST"), g_strdup (value));
  if (g_variant_dict_lookup (dict, "database", "&s", &value))
    g_hash_table_insert (self->overrides, g_strdup ("SQLALCHEMY_DATABASE_URI"), g_strdup (value));
  if (g_variant_dict_lookup (dict, "state-dir", "^&ay", &value))
    self->state_dir = g_strdup (value);
  if (g_variant_dict_lookup (dict, "migrate-from", "^&ay", &value))
    self->migrate_from = g_strdup (value);
  self->list_routes = g_variant_dict_contains (dict, "list-routes");
  if (g_variant_dict_lookup (dict, "bus", "&s", &value))
    self->bus = g_strdup (value);
  else
    self->bus = g_strdup (g_getenv ("DBUS_SESSION_BUS_ADDRESS") != NULL ? "session" : "none");
  if (!g_strv_contains ((const char *const[]){ "session", "system", "none", NULL }, self->bus))
    {
      fail (self, 2, "--bus: '%s' is not session, system or none", self->bus);
      return 2;
    }

  self->services.config = load_config (self, &error);
  if (self->services.config == NULL)
    {
      fail (self, 2, "%s", error->message);
      return 2;
    }
  return -1;
}

/* Keys read at each request take effect at once; the others are held by services built at start
 * and need a restart (the key table in rtp-config.c says which). */
static GStrv
reload_config (gpointer user_data, GError **error)
{
  RtpApplication *self = user_data;
  g_autoptr (RtpConfig) fresh = load_config (self, error);
  GStrv restart;

  if (fresh == NULL)
    {
      g_prefix_error (error, "the configuration was not reloaded: ");
      return NULL;
    }
  restart = rtp_config_restart_needed (self->services.config, fresh);
  g_set_object (&self->services.config, fresh);
  g_message ("configuration reloaded");
  return restart;
}

static gboolean
finish_stop (gpointer user_data)
{
  RtpApplication *self = user_data;

  if (self->services.http != NULL && rtp_http_server_get_in_flight (self->services.http) > 0 &&
      g_get_monotonic_time () < self->stop_deadline_us)
    return G_SOURCE_CONTINUE;
  if (self->services.http != NULL && rtp_http_server_get_in_flight (self->services.http) > 0)
    g_warning ("stopping with %u requests still in flight", rtp_http_server_get_in_flight (self->services.http));
  self->drain_id = 0;
  if (self->held)
    {
      self->held = FALSE;
      g_application_release (G_APPLICATION (self));
    }
  return G_SOURCE_REMOVE;
}

static gboolean
on_signal (gpointer user_data)
{
  RtpApplication *self = user_data;

  if (self->stopping)
    return G_SOURCE_CONTINUE;
  self->stopping = TRUE;
  g_message ("stopping: finishing requests in flight");
  rtp_notify ("STOPPING=1\nSTATUS=Stopping: finishing requests in flight");
  if (self->services.http != NULL)
    rtp_http_server_stop_accepting (self->services.http);
  self->stop_deadline_us = g_get_monotonic_time () +
                           (gint64) (rtp_config_get_double (self->services.config, "RTP_SHUTDOWN_TIMEOUT") *
                                     G_USEC_PER_SEC);
  /* let answers already queued be written before the loop ends */
  self->drain_id = g_timeout_add (20, finish_stop, self);
  return G_SOURCE_CONTINUE;
}

static gboolean
notify_watchdog (gpointer user_data)
{
  rtp_notify ("WATCHDOG=1");
  return G_SOURCE_CONTINUE;
}

static gboolean
notify_status (gpointer user_data)
{
  RtpApplication *self = user_data;
  g_autofree char *status = NULL;

  if (self->services.http == NULL)
    return G_SOURCE_CONTINUE;
  status = g_strdup_printf ("STATUS=Serving; %" G_GUINT64_FORMAT " requests served",
                            rtp_http_server_get_requests_served (self->services.http));
  rtp_notify (status);
  return G_SOURCE_CONTINUE;
}

/* glibc keeps what big requests (an import, a long export) freed; hand it back now and then */
static gboolean
trim_memory (gpointer user_data)
{
  malloc_trim (0);
  return G_SOURCE_CONTINUE;
}

static void
print_route (const char *method, const char *pattern, gpointer data)
{
  g_print ("%s %s\n", method, pattern);
}

static gboolean
start (RtpApplication *self, GError **error)
{
  RtpServices *s = &self->services;
  RtpConfig *config = s->config;
  g_autofree char *uri = rtp_config_dup_database_uri (config);
  g_autoptr (GBytes) key = NULL;
  g_autofree char *generated = NULL;
  g_autofree char *url = NULL;
  const char *state_dir = rtp_config_get_state_dir (config);
  RtpUserManagerSettings user_settings = { 0 };
  RtpHttpSettings http_settings = { 0 };

  self->secrets = rtp_secrets_new ();
  if (g_mkdir_with_parents (state_dir, 0700) != 0)
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "cannot create the state directory %s: %s", state_dir,
                   g_strerror (errno));
      return FALSE;
    }
  /* a lab that swaps services keeps its .env and its data: the original's file is upgraded */
  if (g_str_has_prefix (uri, "sqlite:") && !rtp_takeover_upgrade_in_place (uri, error))
    return FALSE;
  {
    /* a PostgreSQL URI without a password may have it in the keyring */
    g_autofree char *db_password = g_str_has_prefix (uri, "sqlite:")
                                     ? NULL
                                     : rtp_secrets_lookup (self->secrets, "RTP_DATABASE_PASSWORD");
    s->db = rtp_database_open_with_password (uri, db_password, error);
  }
  if (s->db == NULL || !rtp_database_migrate (s->db, error))
    return FALSE;
  if (self->migrate_from != NULL)
    {
      g_autofree char *from_uri = g_strconcat ("sqlite:///", self->migrate_from, NULL);
      g_autoptr (RtpDatabase) from = NULL;
      RtpTakeoverCounts counts;

      if (!g_file_test (self->migrate_from, G_FILE_TEST_IS_REGULAR))
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "--migrate-from: %s is not a file", self->migrate_from);
          return FALSE;
        }
      gboolean legacy = FALSE;

      /* read-only: the old service may still be running on it, and a normal open would switch it to WAL */
      from = rtp_database_open_read_only (from_uri, error);
      if (from == NULL || !rtp_takeover_is_legacy (from, &legacy, error) ||
          !rtp_takeover_copy (from, legacy, s->db, &counts, error))
        return FALSE;
      g_print ("Copied %u users, %u experiments, %u process variables, %u assignments, %u subscriptions from %s\n",
               counts.users, counts.experiments, counts.process_variables, counts.assignments, counts.subscriptions,
               self->migrate_from);
      fflush (stdout);
      self->migrate_only = TRUE;
      return TRUE;
    }
  g_message ("database: %s", rtp_database_get_kind (s->db) == RTP_DATABASE_SQLITE ? rtp_database_get_sqlite_path (s->db)
                                                                                  : "PostgreSQL");
  {
    g_autofree char *configured = rtp_secrets_lookup_with_fallback (self->secrets, config, "SECRET_KEY");
    key = rtp_user_manager_load_signing_key (s->db, configured, rtp_config_get_state_dir (config), error);
  }
  if (key == NULL)
    return FALSE;

  user_settings.legacy_salt = rtp_config_get_string (config, "PASSWORD_SALT");
  user_settings.token_validity_s = rtp_config_get_int (config, "ACCESS_TOKEN_VALIDITY_TIME") * 60;
  user_settings.max_failures = (guint) rtp_config_get_int (config, "RTP_LOGIN_MAX_FAILURES");
  user_settings.max_pending = (guint) rtp_config_get_int (config, "RTP_MAX_PENDING_LOGINS");
  user_settings.lockout_s = (guint) rtp_config_get_int (config, "RTP_LOGIN_LOCKOUT_S");
  s->users = rtp_user_manager_new (s->db, g_bytes_get_data (key, NULL), g_bytes_get_size (key), &user_settings);
  {
    g_autofree char *bind_password = rtp_secrets_lookup_with_fallback (self->secrets, config, "RTP_LDAP_BIND_PASSWORD");
    RtpDirectorySettings directory = {
      .urls = rtp_config_get_string (config, "RTP_LDAP_URL"),
      .starttls = rtp_config_is_set (config, "RTP_LDAP_STARTTLS")
                    ? (int) rtp_config_get_int (config, "RTP_LDAP_STARTTLS")
                    : -1,
      .insecure = rtp_config_get_int (config, "RTP_LDAP_INSECURE") != 0,
      .ca_file = rtp_config_get_string (config, "RTP_LDAP_CA_FILE"),
      .bind_dn = rtp_config_get_string (config, "RTP_LDAP_BIND_DN"),
      .bind_password = bind_password,
      .base_dn = rtp_config_get_string (config, "RTP_LDAP_BASE_DN"),
      .user_filter = rtp_config_get_string (config, "RTP_LDAP_USER_FILTER"),
      .attr_first_name = rtp_config_get_string (config, "RTP_LDAP_ATTR_FIRST_NAME"),
      .attr_last_name = rtp_config_get_string (config, "RTP_LDAP_ATTR_LAST_NAME"),
      .attr_email = rtp_config_get_string (config, "RTP_LDAP_ATTR_EMAIL"),
      .admin_group = rtp_config_get_string (config, "RTP_LDAP_ADMIN_GROUP"),
      .experiment_groups = rtp_config_get_string (config, "RTP_LDAP_EXPERIMENT_GROUPS"),
      .timeout_s = rtp_config_get_double (config, "RTP_LDAP_TIMEOUT"),
    };
    s->directory = rtp_directory_new (&directory, error);
    if (s->directory == NULL)
      return FALSE;
    rtp_user_manager_set_directory (s->users, s->directory);
  }
  {
    g_autofree char *admin_password = rtp_secrets_lookup_with_fallback (self->secrets, config,
                                                                        "DEFAULT_ADMIN_PASSWORD");
    if (!rtp_user_manager_ensure_admin (s->users, rtp_config_get_string (config, "DEFAULT_ADMIN_NAME"), admin_password,
                                        &generated, error))
      return FALSE;
  }
  if (generated != NULL)
    {
      g_print ("Created the administrator '%s' with the one-time password: %s\n"
               "Log in and change it; it is not shown again.\n",
               rtp_config_get_string (config, "DEFAULT_ADMIN_NAME"), generated);
      fflush (stdout);
    }

  s->experiments = rtp_experiment_store_new (s->db);
  s->answers = rtp_routes_answers_new (s->db);
  rtp_experiment_store_warn_unusual_names (s->experiments);
  s->archiver = rtp_archiver_client_new (rtp_config_get_string (config, "ARCHIVER_URL"),
                                         rtp_config_get_double (config, "RTP_ARCHIVER_TIMEOUT"));
  s->monitor_archiver = rtp_archiver_client_new (rtp_config_get_string (config, "ARCHIVER_URL"),
                                                 rtp_config_get_double (config, "RTP_ARCHIVER_TIMEOUT"));
  rtp_archiver_client_set_max_bytes (s->archiver, (guint64) rtp_config_get_int (config, "RTP_ARCHIVER_MAX_BYTES"));
  rtp_archiver_client_set_max_bytes (s->monitor_archiver,
                                     (guint64) rtp_config_get_int (config, "RTP_ARCHIVER_MAX_BYTES"));
  s->history = rtp_history_new (&s->config, s->archiver);
  if (!rtp_archiver_client_is_configured (s->archiver))
    g_message ("ARCHIVER_URL is not set: /data answers 502");
  {
    g_autofree char *mqtt_password = rtp_secrets_lookup_with_fallback (self->secrets, config, "RTP_MQTT_PASSWORD");
    RtpMqttSettings mqtt_settings = {
      .server_url = rtp_config_get_string (config, "MQTT_SERVER_URL"),
      .username = rtp_config_get_string (config, "RTP_MQTT_USER"),
      .password = mqtt_password,
      .timeout_s = rtp_config_get_double (config, "RTP_MQTT_TIMEOUT"),
    };
    RtpSubscriptionSettings subscription_settings = {
      .channel_prefix = rtp_config_get_string (config, "MQTT_CHANNEL_PREFIX"),
      .email_channel = rtp_config_get_string (config, "EMAIL_MQTT_CHANNEL"),
      .threshold_unit = rtp_config_get_string (config, "THRESHOLD_UNIT"),
    };
    s->mqtt = rtp_mqtt_publisher_new (&mqtt_settings);
    if (!rtp_mqtt_publisher_is_configured (s->mqtt))
      g_message ("MQTT_SERVER_URL is not set: /publish and /email answer 502");
    s->subscriptions = rtp_subscriptions_new (s->db, s->users, s->experiments, s->mqtt, &subscription_settings);
    s->live = rtp_live_values_new (s->db, s->experiments, s->mqtt);
    s->setpoints = rtp_setpoints_new (s->db, s->experiments, s->mqtt, subscription_settings.channel_prefix,
                                      (guint) rtp_config_get_int (config, "RTP_AUDIT_RETENTION_DAYS"));
    rtp_setpoints_set_live_values (s->setpoints, s->live);
    s->snapshots = rtp_snapshots_new (s->db, s->experiments, s->history, s->live, s->setpoints);
    s->health = rtp_health_new (&s->config, s->db, s->archiver, s->mqtt, s->directory);
  }

  http_settings.max_body_bytes = (gsize) rtp_config_get_int (config, "RTP_MAX_BODY_BYTES");
  http_settings.max_import_bytes = (gsize) rtp_config_get_int (config, "RTP_MAX_IMPORT_BYTES");
  http_settings.cors_origin = rtp_config_get_string (config, "RTP_CORS_ORIGIN");
  http_settings.client_timeout_s = rtp_config_get_double (config, "RTP_CLIENT_TIMEOUT");
  http_settings.max_connections = (guint) rtp_config_get_int (config, "RTP_MAX_CONNECTIONS");
  /* on by default where the log is structured (journald) */
  http_settings.access_log = rtp_config_is_set (config, "RTP_ACCESS_LOG")
                               ? rtp_config_get_int (config, "RTP_ACCESS_LOG") != 0
                               : rtp_log_to_journal ();
  s->http = rtp_http_server_new (s->users, &http_settings);
  rtp_http_server_set_database (s->http, s->db);
  s->metrics_token = rtp_secrets_lookup_with_fallback (self->secrets, config, "RTP_METRICS_TOKEN");
  if (s->metrics_token != NULL && s->metrics_token[0] == '\0')
    g_clear_pointer (&s->metrics_token, g_free);
  if (s->metrics_token != NULL && strlen (s->metrics_token) < 16)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                           "RTP_METRICS_TOKEN: a token must have at least 16 characters");
      return FALSE;
    }
  s->metrics_public = rtp_config_get_int (config, "RTP_METRICS_PUBLIC") != 0;
  rtp_routes_auth_register (s->http, s);
  rtp_routes_experiments_register (s->http, s);
  rtp_routes_file_register (s->http, s);
  rtp_routes_publish_register (s->http, s);
  rtp_routes_email_register (s->http, s);
  rtp_routes_data_register (s->http, s);
  rtp_routes_live_register (s->http, s);
  rtp_routes_alarms_register (s->http, s);
  rtp_routes_snapshots_register (s->http, s);
  rtp_routes_health_register (s->http, s);
  if (self->list_routes)
    {
      rtp_http_server_foreach_route (s->http, print_route, NULL);
      fflush (stdout);
      self->migrate_only = TRUE; /* nothing held: the application ends after start-up */
      return TRUE;
    }

  if (!rtp_http_server_listen (s->http, rtp_config_get_string (config, "FLASK_RUN_HOST"),
                               (guint) rtp_config_get_int (config, "FLASK_RUN_PORT"), error))
    {
      g_prefix_error (error, "cannot listen on %s:%" G_GINT64_FORMAT ": ",
                      rtp_config_get_string (config, "FLASK_RUN_HOST"), rtp_config_get_int (config, "FLASK_RUN_PORT"));
      return FALSE;
    }
  {
    g_autofree char *smtp_password = rtp_secrets_lookup_with_fallback (self->secrets, config, "RTP_SMTP_PASSWORD");
    RtpLiveSettings live = {
      .archiver = s->monitor_archiver,
      .value_topic_prefix = rtp_config_get_string (config, "RTP_MQTT_VALUE_TOPIC_PREFIX"),
      .interval_s = rtp_config_get_double (config, "RTP_MONITOR_INTERVAL"),
    };
    g_autofree char *webhook_secret = rtp_secrets_lookup_with_fallback (self->secrets, config,
                                                                        "RTP_ALERT_WEBHOOK_SECRET");
    RtpAlertSettings alerts = {
      .renotify_s = rtp_config_get_int (config, "RTP_ALERT_RENOTIFY_S"),
      .max_shelve_s = rtp_config_get_int (config, "RTP_ALARM_MAX_SHELVE_S"),
      .interval_s = rtp_config_get_double (config, "RTP_MONITOR_INTERVAL"),
      .silence_intervals = rtp_config_get_int (config, "RTP_ALARM_SILENCE_INTERVALS"),
      .channel_prefix = rtp_config_get_string (config, "MQTT_CHANNEL_PREFIX"),
      .webhook_url = rtp_config_get_string (config, "RTP_ALERT_WEBHOOK_URL"),
      .webhook_secret = webhook_secret,
      .hysteresis = rtp_config_get_double (config, "RTP_ALERT_HYSTERESIS"),
      .time_zone = rtp_history_get_time_zone (s->history),
      .threshold_unit = rtp_config_get_string (config, "THRESHOLD_UNIT"),
      .mail = {
        .url = rtp_config_get_string (config, "RTP_SMTP_URL"),
        .from = rtp_config_get_string (config, "RTP_SMTP_FROM"),
        .user = rtp_config_get_string (config, "RTP_SMTP_USER"),
        .password = smtp_password,
        .timeout_s = rtp_config_get_double (config, "RTP_ARCHIVER_TIMEOUT"),
        .insecure = rtp_config_get_int (config, "RTP_SMTP_INSECURE") != 0,
      },
    };
    /* a signature nobody can check, or one easy to forge, is a mistake worth stopping for */
    if (webhook_secret != NULL && webhook_secret[0] != '\0' && alerts.webhook_url == NULL)
      {
        g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                             "RTP_ALERT_WEBHOOK_SECRET is set but RTP_ALERT_WEBHOOK_URL is not");
        return FALSE;
      }
    if (webhook_secret != NULL && webhook_secret[0] != '\0' && g_utf8_strlen (webhook_secret, -1) < 16)
      {
        g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                             "RTP_ALERT_WEBHOOK_SECRET: a signing secret must have at least 16 characters");
        return FALSE;
      }
    s->alerter = rtp_alerter_new (s->db, s->live, s->subscriptions, &alerts);
    rtp_live_values_start (s->live, &live);
  }
  /* the broker may be down: everything else is served meanwhile */
  rtp_mqtt_publisher_start (s->mqtt);
  url = rtp_http_server_dup_url (s->http);
  self->control = rtp_control_new (s, url, reload_config, self);
  if (!rtp_control_start (self->control, self->bus, error))
    return FALSE;
  return TRUE;
}

static void
rtp_application_startup (GApplication *app)
{
  RtpApplication *self = RTP_APPLICATION (app);
  g_autoptr (GError) error = NULL;

  G_APPLICATION_CLASS (rtp_application_parent_class)->startup (app);
  rtp_i18n_init ();
  if (self->services.config == NULL)
    return;
  if (!start (self, &error))
    {
      fail (self, 1, "%s", error->message);
      return;
    }
  if (self->migrate_only)
    return; /* nothing held: the application ends after start-up */
  self->sigint_id = g_unix_signal_add (SIGINT, on_signal, self);
  self->sigterm_id = g_unix_signal_add (SIGTERM, on_signal, self);
  g_application_hold (app);
  self->held = TRUE;
  self->trim_id = g_timeout_add_seconds (30, trim_memory, self);
  /* only once SIGTERM is handled: whoever waits for this line may stop the server at once */
  {
    g_autofree char *url = rtp_http_server_dup_url (self->services.http);
    g_autofree char *ready = g_strdup_printf ("READY=1\nSTATUS=Listening on %s", url);
    guint64 watchdog = rtp_notify_watchdog_usec ();
    g_print ("Listening on %s\n", url);
    fflush (stdout);
    rtp_notify (ready);
    self->status_id = g_timeout_add_seconds (10, notify_status, self);
    if (watchdog > 0)
      {
        /* half the interval, as systemd recommends; from the main loop, so only a live loop pings */
        self->watchdog_id = g_timeout_add (MAX (watchdog / 2000, 1), notify_watchdog, self);
        g_message ("systemd watchdog: a ping every %" G_GUINT64_FORMAT " ms", MAX (watchdog / 2000, 1));
      }
  }
}

static void
rtp_application_activate (GApplication *app)
{
  /* everything happens in startup; activate has nothing to show */
}

static void
rtp_application_shutdown (GApplication *app)
{
  RtpApplication *self = RTP_APPLICATION (app);
  RtpServices *s = &self->services;

  g_clear_handle_id (&self->drain_id, g_source_remove);
  g_clear_handle_id (&self->trim_id, g_source_remove);
  g_clear_handle_id (&self->watchdog_id, g_source_remove);
  g_clear_handle_id (&self->status_id, g_source_remove);
  if (self->control != NULL)
    rtp_control_stop (self->control);
  g_clear_object (&self->control);
  if (s->http != NULL)
    rtp_http_server_disconnect (s->http);
  g_clear_object (&s->http);
  if (s->mqtt != NULL)
    rtp_mqtt_publisher_stop (s->mqtt);
  g_clear_object (&s->snapshots);
  g_clear_object (&s->health);
  g_clear_object (&s->setpoints);
  g_clear_object (&s->history);
  g_clear_object (&s->archiver);
  g_clear_object (&s->monitor_archiver);
  g_clear_object (&s->alerter);
  g_clear_object (&s->live);
  g_clear_object (&s->subscriptions);
  g_clear_object (&s->mqtt);
  g_clear_object (&s->experiments);
  g_clear_object (&s->users);
  g_clear_object (&s->directory);
  g_clear_pointer (&s->metrics_token, g_free);
  g_clear_pointer (&s->answers, rtp_stamp_cache_free);
  if (s->db != NULL)
    rtp_database_close (s->db);
  g_clear_object (&s->db);
  if (self->exit_status == 0 && s->config != NULL)
    g_message ("stopped");
  /* only now: a second SIGTERM while the database closes must not kill the process */
  g_clear_handle_id (&self->sigint_id, g_source_remove);
  g_clear_handle_id (&self->sigterm_id, g_source_remove);
  G_APPLICATION_CLASS (rtp_application_parent_class)->shutdown (app);
}

static void
rtp_application_finalize (GObject *object)
{
  RtpApplication *self = RTP_APPLICATION (object);

  g_clear_object (&self->services.config);
  g_clear_object (&self->secrets);
  g_free (self->config_path);
  g_hash_table_unref (self->overrides);
  g_free (self->state_dir);
  g_free (self->bus);
  g_free (self->migrate_from);
  G_OBJECT_CLASS (rtp_application_parent_class)->finalize (object);
}

static void
rtp_application_class_init (RtpApplicationClass *klass)
{
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = rtp_application_finalize;
  app_class->handle_local_options = rtp_application_handle_local_options;
  app_class->startup = rtp_application_startup;
  app_class->activate = rtp_application_activate;
  app_class->shutdown = rtp_application_shutdown;
}

static void
rtp_application_init (RtpApplication *self)
{
  g_application_add_main_option_entries (G_APPLICATION (self), options);
  self->overrides = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

RtpApplication *
rtp_application_new (void)
{
  return g_object_new (RTP_TYPE_APPLICATION, "application-id", "org.realtimeplot.Server", "flags",
                       G_APPLICATION_NON_UNIQUE, NULL);
}

int
rtp_application_get_exit_status (RtpApplication *self)
{
  return self->exit_status;
}
