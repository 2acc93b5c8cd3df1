/* rtp-secrets.c: the Secret Service back-end (schema org.realtimeplot.Server, attribute "name")
 *
 * On a headless server there may be no session bus, a bus without a Secret Service, or a
 * locked keyring. Each is "no keyring": the caller falls back to the configuration value
 * or the 0600 file in the state directory, and one info line says so. A lookup never
 * takes more than a second: a watchdog thread cancels it. */
#define G_LOG_DOMAIN "RtpSecrets"

#include "rtp-secrets.h"
#include "rtp-error.h"

#include <libsecret/secret.h>

#define LOOKUP_LIMIT_US ((gint64) 1 * G_USEC_PER_SEC)

const char *const rtp_secret_names[] = { "SECRET_KEY",
                                         "DEFAULT_ADMIN_PASSWORD",
                                         "RTP_SMTP_PASSWORD",
                                         "RTP_MQTT_PASSWORD",
                                         "RTP_DATABASE_PASSWORD",
                                         "RTP_ALERT_WEBHOOK_SECRET",
                                         "RTP_LDAP_BIND_PASSWORD",
                                         "RTP_METRICS_TOKEN",
                                         NULL };

struct _RtpSecrets {
  GObject parent_instance;
  gboolean checked;
  gboolean available;
};

G_DEFINE_TYPE (RtpSecrets, rtp_secrets, G_TYPE_OBJECT)

static const SecretSchema *
schema (void)
{
  static const SecretSchema s = {
    "org.realtimeplot.Server",
    SECRET_SCHEMA_NONE,
    {
      { "name", SECRET_SCHEMA_ATTRIBUTE_STRING },
      { NULL, 0 },
    },
    0,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
  };
  return &s;
}

static void
rtp_secrets_class_init (RtpSecretsClass *klass)
{
}

static void
rtp_secrets_init (RtpSecrets *self)
{
}

RtpSecrets *
rtp_secrets_new (void)
{
  return g_object_new (RTP_TYPE_SECRETS, NULL);
}

typedef struct {
  GMutex lock;
  GCond cond;
  gboolean done;
  GCancellable *cancellable;
} Watchdog;

static gpointer
watchdog_thread (gpointer data)
{
  Watchdog *w = data;
  gint64 deadline = g_get_monotonic_time () + LOOKUP_LIMIT_US;

  g_mutex_lock (&w->lock);
  while (!w->done)
    if (!g_cond_wait_until (&w->cond, &w->lock, deadline))
      {
        g_cancellable_cancel (w->cancellable);
        break;
      }
  g_mutex_unlock (&w->lock);
  return NULL;
}

char *
rtp_secrets_lookup (RtpSecrets *self, const char *name)
{
  Watchdog w = { 0 };
  GThread *thread;
  g_autoptr (GError) error = NULL;
  char *value;

  if (self->checked && !self->available)
    return NULL;
  g_mutex_init (&w.lock);
  g_cond_init (&w.cond);
  w.cancellable = g_cancellable_new ();
  thread = g_thread_new ("rtp-secret-watchdog", watchdog_thread, &w);
  value = secret_password_lookup_sync (schema (), w.cancellable, &error, "name", name, NULL);
  g_mutex_lock (&w.lock);
  w.done = TRUE;
  g_cond_signal (&w.cond);
  g_mutex_unlock (&w.lock);
  g_thread_join (thread);
  g_object_unref (w.cancellable);
  g_mutex_clear (&w.lock);
  g_cond_clear (&w.cond);

  if (!self->checked)
    {
      self->checked = TRUE;
      self->available = error == NULL;
      if (!self->available)
        g_message ("no Secret Service reachable (%s): secrets come from the configuration and the state directory",
                   error->message);
      else
        g_debug ("the Secret Service is reachable");
    }
  if (value != NULL)
    g_message ("%s comes from the keyring", name);
  /* cppcheck-suppress memleak ; g_thread_join above released the thread */
  return value;
}

char *
rtp_secrets_lookup_with_fallback (RtpSecrets *self, RtpConfig *config, const char *name)
{
  char *value = rtp_secrets_lookup (self, name);

  if (value == NULL && rtp_config_is_set (config, name))
    value = g_strdup (rtp_config_get_string (config, name));
  return value;
}

gboolean
rtp_secrets_store (const char *name, const char *value, GError **error)
{
  g_autofree char *label = g_strdup_printf ("Realtimeplot Server: %s", name);

  if (!g_strv_contains (rtp_secret_names, name))
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "%s is not a secret the server reads (one of: %s)", name,
                   "SECRET_KEY, DEFAULT_ADMIN_PASSWORD, RTP_SMTP_PASSWORD, RTP_MQTT_PASSWORD, RTP_DATABASE_PASSWORD, "
                   "RTP_ALERT_WEBHOOK_SECRET, RTP_LDAP_BIND_PASSWORD, RTP_METRICS_TOKEN");
      return FALSE;
    }
  return secret_password_store_sync (schema (), SECRET_COLLECTION_DEFAULT, label, value, NULL, error, "name", name,
                                     NULL);
}
