/* rtp-config.c: settings, read in the order defaults → file → environment → command line
 *
 * The keys are those of the original service's .env plus our own RTP_* keys. Each key is
 * described once in the table below: its type, default and allowed range. Values are kept
 * as text per layer and validated once, after all layers are read, so a bad value is
 * reported with the key's name before anything starts. */
#define G_LOG_DOMAIN "RtpConfig"

#include "rtp-config.h"
#include "rtp-error.h"
#include "rtp-i18n.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { KIND_STRING, KIND_INT, KIND_DOUBLE, KIND_URI_DB, KIND_TIMEZONE, KIND_HTTP_URL, KIND_MQTT_URL } Kind;

typedef struct {
  const char *key;
  Kind kind;
  gboolean live;   /* read at each request: a reload applies it at once (else it needs a restart) */
  const char *def; /* NULL: unset */
  gint64 min;
  gint64 max;
} KeyInfo;

static const KeyInfo keys[] = {
  { "SECRET_KEY", KIND_STRING, FALSE, NULL, 0, 0 },
  { "SQLALCHEMY_DATABASE_URI", KIND_URI_DB, FALSE, NULL, 0, 0 },
  { "DEFAULT_ADMIN_NAME", KIND_STRING, FALSE, "admin", 0, 0 },
  { "DEFAULT_ADMIN_PASSWORD", KIND_STRING, FALSE, NULL, 0, 0 },
  { "PASSWORD_SALT", KIND_STRING, FALSE, NULL, 0, 0 },
  { "ACCESS_TOKEN_VALIDITY_TIME", KIND_INT, FALSE, "120", 1, 525600 },
  { "ARCHIVER_URL", KIND_HTTP_URL, FALSE, NULL, 0, 0 },
  { "ARCHIVER_TIMEZONE", KIND_TIMEZONE, TRUE, NULL, 0, 0 },
  { "DEFAULT_ARCHIVER_TIME_PERIOD", KIND_INT, TRUE, "7", 1, 87600 },
  { "MQTT_SERVER_URL", KIND_MQTT_URL, FALSE, NULL, 0, 0 },
  { "MQTT_CHANNEL_PREFIX", KIND_STRING, FALSE, "rtp", 0, 0 },
  { "EMAIL_MQTT_CHANNEL", KIND_STRING, FALSE, "email", 0, 0 },
  { "THRESHOLD_UNIT", KIND_STRING, FALSE, "", 0, 0 },
  { "FLASK_RUN_HOST", KIND_STRING, FALSE, "127.0.0.1", 0, 0 },
  { "FLASK_RUN_PORT", KIND_INT, FALSE, "5000", 0, 65535 },
  { "RTP_CORS_ORIGIN", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_MAX_BODY_BYTES", KIND_INT, FALSE, "1048576", 1, G_MAXINT32 },
  { "RTP_MAX_IMPORT_BYTES", KIND_INT, FALSE, "67108864", 1, G_MAXINT32 },
  { "RTP_ARCHIVER_TIMEOUT", KIND_DOUBLE, FALSE, "10", 0, 3600 },
  { "RTP_MQTT_TIMEOUT", KIND_DOUBLE, FALSE, "2", 0, 3600 },
  { "RTP_MAX_POINTS", KIND_INT, TRUE, "5000", 0, 100000000 },
  { "RTP_MAX_POINTS_LIMIT", KIND_INT, TRUE, "100000", 1, 100000000 },
  { "RTP_METADATA_CACHE_S", KIND_INT, TRUE, "600", 0, 86400 },
  { "RTP_ARCHIVER_MAX_BYTES", KIND_INT, FALSE, "536870912", 1, G_MAXINT64 },
  { "RTP_MONITOR_INTERVAL", KIND_DOUBLE, FALSE, "10", 0, 86400 },
  { "RTP_ALERT_RENOTIFY_S", KIND_INT, FALSE, "3600", 0, G_MAXINT32 },
  { "RTP_ALERT_HYSTERESIS", KIND_DOUBLE, FALSE, "0", 0, G_MAXINT32 },
  { "RTP_SMTP_URL", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_SMTP_FROM", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_SMTP_USER", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_SMTP_PASSWORD", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_SMTP_INSECURE", KIND_INT, FALSE, "0", 0, 1 },
  { "RTP_ALERT_WEBHOOK_URL", KIND_HTTP_URL, FALSE, NULL, 0, 0 },
  { "RTP_ALERT_WEBHOOK_SECRET", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_ALARM_MAX_SHELVE_S", KIND_INT, FALSE, "604800", 60, 31536000 },
  { "RTP_ALARM_SILENCE_INTERVALS", KIND_INT, FALSE, "3", 0, 1000000 },
  { "RTP_AUDIT_RETENTION_DAYS", KIND_INT, FALSE, "365", 0, 36500 },
  { "RTP_MQTT_USER", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_MQTT_PASSWORD", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_MQTT_VALUE_TOPIC_PREFIX", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_LOGIN_MAX_FAILURES", KIND_INT, FALSE, "10", 1, 1000000 },
  { "RTP_LOGIN_LOCKOUT_S", KIND_INT, FALSE, "60", 1, 86400 },
  { "RTP_MAX_PENDING_LOGINS", KIND_INT, FALSE, "64", 1, 100000 },
  { "RTP_SHUTDOWN_TIMEOUT", KIND_DOUBLE, FALSE, "10", 0, 3600 },
  { "RTP_CLIENT_TIMEOUT", KIND_DOUBLE, FALSE, "15", 0, 3600 },
  { "RTP_MAX_CONNECTIONS", KIND_INT, FALSE, "1024", 0, 1000000 },
  { "RTP_ACCESS_LOG", KIND_INT, FALSE, NULL, 0, 1 },
  { "RTP_METRICS_TOKEN", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_METRICS_PUBLIC", KIND_INT, FALSE, "0", 0, 1 },
  { "RTP_LDAP_URL", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_LDAP_STARTTLS", KIND_INT, FALSE, NULL, 0, 1 },
  { "RTP_LDAP_INSECURE", KIND_INT, FALSE, "0", 0, 1 },
  { "RTP_LDAP_CA_FILE", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_LDAP_BIND_DN", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_LDAP_BIND_PASSWORD", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_LDAP_BASE_DN", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_LDAP_USER_FILTER", KIND_STRING, FALSE, "(&(objectClass=person)(uid=%s))", 0, 0 },
  { "RTP_LDAP_ATTR_FIRST_NAME", KIND_STRING, FALSE, "givenName", 0, 0 },
  { "RTP_LDAP_ATTR_LAST_NAME", KIND_STRING, FALSE, "sn", 0, 0 },
  { "RTP_LDAP_ATTR_EMAIL", KIND_STRING, FALSE, "mail", 0, 0 },
  { "RTP_LDAP_ADMIN_GROUP", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_LDAP_EXPERIMENT_GROUPS", KIND_STRING, FALSE, NULL, 0, 0 },
  { "RTP_LDAP_TIMEOUT", KIND_DOUBLE, FALSE, "5", 0, 600 },
};

/* Doubles whose range must exclude 0 (timeouts): validated with min 0 exclusive. */
static const char *const positive_doubles[] = { "RTP_ARCHIVER_TIMEOUT", "RTP_MQTT_TIMEOUT", "RTP_MONITOR_INTERVAL",
                                                "RTP_CLIENT_TIMEOUT",   "RTP_LDAP_TIMEOUT", NULL };

struct _RtpConfig {
  GObject parent_instance;

  GHashTable *values;  /* (owned) key → text, all layers merged, later wins */
  GHashTable *origins; /* (owned) key → where the value came from, for messages */
  GHashTable *ints;    /* (owned) key → gint64 *, after validation */
  GHashTable *doubles; /* (owned) key → double *, after validation */
  char *state_dir;     /* (owned) */
};

G_DEFINE_TYPE (RtpConfig, rtp_config, G_TYPE_OBJECT)

static void
rtp_config_finalize (GObject *object)
{
  RtpConfig *self = RTP_CONFIG (object);

  g_hash_table_unref (self->values);
  g_hash_table_unref (self->origins);
  g_hash_table_unref (self->ints);
  g_hash_table_unref (self->doubles);
  g_free (self->state_dir);
  G_OBJECT_CLASS (rtp_config_parent_class)->finalize (object);
}

static void
rtp_config_class_init (RtpConfigClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_config_finalize;
}

static void
rtp_config_init (RtpConfig *self)
{
  self->values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->origins = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->ints = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  self->doubles = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
}

RtpConfig *
rtp_config_new (void)
{
  return g_object_new (RTP_TYPE_CONFIG, NULL);
}

static const KeyInfo *
find_key (const char *key)
{
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    if (g_str_equal (keys[i].key, key))
      return &keys[i];
  return NULL;
}

static void
set_value (RtpConfig *self, const char *key, const char *value, const char *origin)
{
  g_hash_table_replace (self->values, g_strdup (key), g_strdup (value));
  g_hash_table_replace (self->origins, g_strdup (key), g_strdup (origin));
}

/* Strips one level of matching quotes, as python-dotenv does. */
static char *
unquote (const char *value)
{
  gsize len = strlen (value);

  if (len >= 2 && (value[0] == '"' || value[0] == '\'') && value[len - 1] == value[0])
    {
      g_autofree char *inner = g_strndup (value + 1, len - 2);
      if (value[0] == '"')
        return g_strcompress (inner);
      return g_steal_pointer (&inner);
    }
  return g_strdup (value);
}

/**
 * rtp_config_load_data:
 * @data: text in .env form: `KEY=value` lines, `#` comments, optional `export ` prefix
 * @origin: a name for messages (the file name)
 *
 * Unknown keys are ignored (the original's .env files carry FLASK_APP and friends).
 */
gboolean
rtp_config_load_data (RtpConfig *self, const char *data, const char *origin, GError **error)
{
  g_auto (GStrv) lines = NULL;

  g_return_val_if_fail (RTP_IS_CONFIG (self), FALSE);

  if (!g_utf8_validate (data, -1, NULL))
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "%s: the file is not valid UTF-8", origin);
      return FALSE;
    }

  lines = g_strsplit (data, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_autofree char *line = g_strstrip (g_strdup (lines[i]));
      const char *eq;
      g_autofree char *key = NULL;
      g_autofree char *raw = NULL;
      g_autofree char *where = NULL;
      char *kstart = line;

      if (line[0] == '\0' || line[0] == '#')
        continue;
      if (g_str_has_prefix (kstart, "export "))
        kstart += strlen ("export ");
      eq = strchr (kstart, '=');
      if (eq == NULL)
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "%s:%u: expected KEY=value, found '%s'", origin, i + 1,
                       line);
          return FALSE;
        }
      key = g_strstrip (g_strndup (kstart, eq - kstart));
      raw = g_strstrip (g_strdup (eq + 1));
      if (raw[0] != '"' && raw[0] != '\'')
        {
          /* an unquoted value ends at " #" (an inline comment) */
          char *hash = strstr (raw, " #");
          if (hash != NULL)
            {
              *hash = '\0';
              g_strstrip (raw);
            }
        }
      if (find_key (key) == NULL)
        {
          g_debug ("%s:%u: ignoring unknown key %s", origin, i + 1, key);
          continue;
        }
      where = g_strdup_printf ("%s:%u", origin, i + 1);
      {
        g_autofree char *value = unquote (raw);
        set_value (self, key, value, where);
      }
    }
  return TRUE;
}

gboolean
rtp_config_load_file (RtpConfig *self, const char *path, gboolean must_exist, GError **error)
{
  g_autofree char *data = NULL;
  g_autoptr (GError) local_error = NULL;

  if (!g_file_get_contents (path, &data, NULL, &local_error))
    {
      if (!must_exist && g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return TRUE;
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "Cannot read the configuration file: %s", local_error->message);
      return FALSE;
    }
  g_debug ("reading configuration from %s", path);
  return rtp_config_load_data (self, data, path, error);
}

void
rtp_config_load_environment (RtpConfig *self, const char *const *envp)
{
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      const char *value = g_environ_getenv ((char **) envp, keys[i].key);
      if (value != NULL)
        set_value (self, keys[i].key, value, "environment");
    }
}

void
rtp_config_set_override (RtpConfig *self, const char *key, const char *value)
{
  g_return_if_fail (find_key (key) != NULL);
  set_value (self, key, value, "command line");
}

static gboolean
parse_int (const char *text, gint64 *out)
{
  char *end = NULL;
  gint64 v;

  errno = 0;
  v = g_ascii_strtoll (text, &end, 10);
  if (text[0] == '\0' || *end != '\0' || errno != 0)
    return FALSE;
  *out = v;
  return TRUE;
}

static gboolean
is_positive_double (const char *key)
{
  return g_strv_contains (positive_doubles, key);
}

static gboolean
validate_one (RtpConfig *self, const KeyInfo *info, const char *value, GError **error)
{
  const char *origin = g_hash_table_lookup (self->origins, info->key);
  g_autofree char *where = g_strdup_printf ("%s (%s)", info->key, origin != NULL ? origin : "default");

  switch (info->kind)
    {
      case KIND_STRING:
        return TRUE;

      case KIND_INT:
        {
          gint64 v;
          if (!parse_int (value, &v) || v < info->min || v > info->max)
            {
              g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                           "%s: '%s' is not a whole number from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT, where,
                           value, info->min, info->max);
              return FALSE;
            }
          g_hash_table_replace (self->ints, (gpointer) info->key, g_memdup2 (&v, sizeof v));
          return TRUE;
        }

      case KIND_DOUBLE:
        {
          char *end = NULL;
          double v = g_ascii_strtod (value, &end);
          gboolean positive = is_positive_double (info->key);
          if (value[0] == '\0' || *end != '\0' || !isfinite (v) || v < info->min || v > info->max ||
              (positive && v <= 0))
            {
              g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                           "%s: '%s' is not a number %s %" G_GINT64_FORMAT " and at most %" G_GINT64_FORMAT, where,
                           value, positive ? "greater than" : "of at least", info->min, info->max);
              return FALSE;
            }
          g_hash_table_replace (self->doubles, (gpointer) info->key, g_memdup2 (&v, sizeof v));
          return TRUE;
        }

      case KIND_URI_DB:
        if (g_str_has_prefix (value, "sqlite:///") || g_str_has_prefix (value, "postgresql://") ||
            g_str_has_prefix (value, "postgresql+psycopg2://") || g_str_has_prefix (value, "postgres://"))
          return TRUE;
        g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                     "%s: '%s' is not supported; use sqlite:///path or postgresql://user:password@host:port/db", where,
                     value);
        return FALSE;

      case KIND_TIMEZONE:
        {
          GTimeZone *tz = g_time_zone_new_identifier (value);
          if (tz == NULL)
            {
              g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                           "%s: '%s' is not a known time zone (use an IANA name such as Europe/Berlin)", where, value);
              return FALSE;
            }
          g_time_zone_unref (tz);
          return TRUE;
        }

      case KIND_HTTP_URL:
        {
          g_autoptr (GUri) uri = g_uri_parse (value, G_URI_FLAGS_NONE, NULL);
          if (uri == NULL || g_uri_get_host (uri) == NULL ||
              (g_strcmp0 (g_uri_get_scheme (uri), "http") != 0 && g_strcmp0 (g_uri_get_scheme (uri), "https") != 0))
            {
              g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "%s: '%s' is not an http:// or https:// URL", where,
                           value);
              return FALSE;
            }
          return TRUE;
        }

      case KIND_MQTT_URL:
        {
          /* host, host:port or tcp://host:port */
          const char *rest = value;
          const char *colon;
          if (g_str_has_prefix (rest, "tcp://"))
            rest += strlen ("tcp://");
          else if (g_str_has_prefix (rest, "mqtt://"))
            rest += strlen ("mqtt://");
          colon = strrchr (rest, ':');
          if (rest[0] == '\0' || rest[0] == ':' || strchr (rest, '/') != NULL)
            goto bad_mqtt;
          if (colon != NULL)
            {
              gint64 port;
              if (!parse_int (colon + 1, &port) || port < 1 || port > 65535)
                goto bad_mqtt;
            }
          return TRUE;
bad_mqtt:
          g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "%s: '%s' is not host, host:port or tcp://host:port", where,
                       value);
          return FALSE;
        }
    }
  g_assert_not_reached ();
}

/**
 * rtp_config_validate:
 *
 * Checks every key and fills in defaults. On failure the error names the key, its
 * value and where the value came from.
 */
gboolean
rtp_config_validate (RtpConfig *self, GError **error)
{
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      const KeyInfo *info = &keys[i];
      const char *value = g_hash_table_lookup (self->values, info->key);

      /* An empty value means "not set", as with python-dotenv users writing KEY= */
      if (value != NULL && value[0] == '\0' && info->kind != KIND_STRING)
        {
          g_hash_table_remove (self->values, info->key);
          value = NULL;
        }
      if (value == NULL)
        value = info->def;
      if (value == NULL)
        continue;
      if (!validate_one (self, info, value, error))
        return FALSE;
    }
  return TRUE;
}

const char *
rtp_config_get_string (RtpConfig *self, const char *key)
{
  const KeyInfo *info = find_key (key);
  const char *value;

  g_return_val_if_fail (info != NULL, NULL);
  value = g_hash_table_lookup (self->values, key);
  return value != NULL ? value : info->def;
}

/**
 * rtp_config_restart_needed:
 * @fresh: the configuration read again
 *
 * Returns: (transfer full): the keys whose value differs in @fresh and that are held by services
 *   built at start (so a reload cannot apply them: they need a restart), in the table's order
 */
GStrv
rtp_config_restart_needed (RtpConfig *self, RtpConfig *fresh)
{
  g_autoptr (GStrvBuilder) restart = g_strv_builder_new ();

  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    if (!keys[i].live &&
        g_strcmp0 (rtp_config_get_string (fresh, keys[i].key), rtp_config_get_string (self, keys[i].key)) != 0)
      g_strv_builder_add (restart, keys[i].key);
  return g_strv_builder_end (restart);
}

gboolean
rtp_config_is_set (RtpConfig *self, const char *key)
{
  const char *value = rtp_config_get_string (self, key);
  return value != NULL && value[0] != '\0';
}

gint64
rtp_config_get_int (RtpConfig *self, const char *key)
{
  gint64 *v = g_hash_table_lookup (self->ints, key);
  g_return_val_if_fail (v != NULL, 0);
  return *v;
}

double
rtp_config_get_double (RtpConfig *self, const char *key)
{
  double *v = g_hash_table_lookup (self->doubles, key);
  g_return_val_if_fail (v != NULL, 0);
  return *v;
}

const char *
rtp_config_get_state_dir (RtpConfig *self)
{
  if (self->state_dir == NULL)
    self->state_dir = g_build_filename (g_get_user_state_dir (), "realtimeplot", NULL);
  return self->state_dir;
}

void
rtp_config_set_state_dir (RtpConfig *self, const char *dir)
{
  g_free (self->state_dir);
  self->state_dir = g_canonicalize_filename (dir, NULL);
}

char *
rtp_config_dup_database_uri (RtpConfig *self)
{
  const char *uri = rtp_config_get_string (self, "SQLALCHEMY_DATABASE_URI");
  g_autofree char *path = NULL;

  if (uri != NULL)
    return g_strdup (uri);
  path = g_build_filename (rtp_config_get_state_dir (self), "realtimeplot.db", NULL);
  return g_strconcat ("sqlite:///", path, NULL);
}
