/* rtp-health.c: is each dependency there? For GET /ready (a load balancer asks often)
 *
 * Each dependency is probed at most once per PROBE_AGE: the database with a trivial query, the
 * archiver with one request (any HTTP answer means it is there), the broker by the publisher's
 * connection, the mail server by a TCP connection to its port. Callers that arrive while probes
 * run wait for them instead of starting their own. Reasons never repeat an address or an error
 * text that could carry one: the configuration decides what is public, not this answer. */
#define G_LOG_DOMAIN "RtpHealth"

#include "rtp-health.h"
#include "rtp-error.h"

#define PROBE_AGE_US ((gint64) 5 * G_USEC_PER_SEC)

struct _RtpHealth {
  GObject parent_instance;
  RtpConfig **config;          /* (unowned) the application's current configuration */
  RtpDatabase *db;             /* (owned) */
  RtpArchiverClient *archiver; /* (owned) */
  RtpMqttPublisher *mqtt;      /* (owned) */
  RtpDirectory *directory;     /* (owned) */
  char *states[RTP_N_CHECKS];  /* (owned) the last results */
  gint64 probed_us;            /* when they were probed (0: never) */
  guint pending;               /* probes running */
  GPtrArray *waiting;          /* (owned) GTasks waiting for the running probes */
  guint probes[RTP_N_CHECKS];
};

G_DEFINE_TYPE (RtpHealth, rtp_health, G_TYPE_OBJECT)

static const char *const check_names[RTP_N_CHECKS] = { "database", "archiver", "mqtt", "smtp", "directory" };

const char *
rtp_check_name (RtpCheck check)
{
  return check_names[check];
}

static void
rtp_health_finalize (GObject *object)
{
  RtpHealth *self = RTP_HEALTH (object);

  g_clear_object (&self->db);
  g_clear_object (&self->archiver);
  g_clear_object (&self->mqtt);
  g_clear_object (&self->directory);
  for (guint i = 0; i < RTP_N_CHECKS; i++)
    g_free (self->states[i]);
  g_ptr_array_unref (self->waiting);
  G_OBJECT_CLASS (rtp_health_parent_class)->finalize (object);
}

static void
rtp_health_class_init (RtpHealthClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_health_finalize;
}

static void
rtp_health_init (RtpHealth *self)
{
  self->waiting = g_ptr_array_new_with_free_func (g_object_unref);
}

RtpHealth *
rtp_health_new (RtpConfig **config_source, RtpDatabase *db, RtpArchiverClient *archiver, RtpMqttPublisher *mqtt,
                RtpDirectory *directory)
{
  RtpHealth *self = g_object_new (RTP_TYPE_HEALTH, NULL);

  self->config = config_source;
  self->db = g_object_ref (db);
  self->archiver = g_object_ref (archiver);
  self->mqtt = g_object_ref (mqtt);
  self->directory = g_object_ref (directory);
  return self;
}

guint
rtp_health_get_probe_count (RtpHealth *self, RtpCheck check)
{
  return self->probes[check];
}

static GStrv
copy_states (RtpHealth *self)
{
  GStrv out = g_new0 (char *, RTP_N_CHECKS + 1);
  for (guint i = 0; i < RTP_N_CHECKS; i++)
    out[i] = g_strdup (self->states[i]);
  return out;
}

static void
set_state (RtpHealth *self, RtpCheck check, const char *state)
{
  g_free (self->states[check]);
  self->states[check] = g_strdup (state);
}

/* One probe finished: when it was the last, everybody waiting gets the states. */
static void
probe_done (RtpHealth *self)
{
  g_autoptr (GPtrArray) waiting = NULL;

  if (--self->pending > 0)
    return;
  self->probed_us = g_get_monotonic_time ();
  waiting = g_steal_pointer (&self->waiting);
  self->waiting = g_ptr_array_new_with_free_func (g_object_unref);
  for (guint i = 0; i < waiting->len; i++)
    g_task_return_pointer (g_ptr_array_index (waiting, i), copy_states (self), (GDestroyNotify) g_strfreev);
  g_object_unref (self);
}

static void
archiver_answered (GObject *source, GAsyncResult *result, gpointer user_data)
{
  RtpHealth *self = user_data;
  g_autoptr (GError) error = NULL;
  gboolean found = FALSE;
  g_autoptr (GBytes) body = rtp_archiver_client_request_finish (RTP_ARCHIVER_CLIENT (source), result, &found, &error);

  /* any HTTP answer (a 404 too) says the appliance is there */
  set_state (self, RTP_CHECK_ARCHIVER, body != NULL ? "ok" : "error: not reachable");
  probe_done (self);
}

static void
smtp_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
  RtpHealth *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketConnection) c = g_socket_client_connect_to_uri_finish (G_SOCKET_CLIENT (source), result, &error);

  set_state (self, RTP_CHECK_SMTP, c != NULL ? "ok" : "error: not reachable");
  if (c != NULL)
    g_io_stream_close (G_IO_STREAM (c), NULL, NULL);
  probe_done (self);
}

static void
directory_answered (GObject *source, GAsyncResult *result, gpointer user_data)
{
  RtpHealth *self = user_data;
  g_autoptr (GError) error = NULL;
  gboolean ok = rtp_directory_probe_finish (RTP_DIRECTORY (source), result, &error);

  /* the reason stays in the log (rtp-directory says it once) */
  set_state (self, RTP_CHECK_DIRECTORY, ok ? "ok" : "error: not available");
  probe_done (self);
}

static void
probe (RtpHealth *self)
{
  RtpConfig *config = *self->config;
  g_autoptr (GError) error = NULL;
  const char *smtp = rtp_config_get_string (config, "RTP_SMTP_URL");

  self->pending = 1; /* until every probe has started */
  g_object_ref (self);

  self->probes[RTP_CHECK_DATABASE]++;
  set_state (self, RTP_CHECK_DATABASE,
             rtp_database_select_int (self->db, &error, "SELECT 1", NULL) == 1 ? "ok" : "error: not available");

  if (!rtp_archiver_client_is_configured (self->archiver))
    set_state (self, RTP_CHECK_ARCHIVER, "unconfigured");
  else
    {
      self->probes[RTP_CHECK_ARCHIVER]++;
      self->pending++;
      rtp_archiver_client_request_async (self->archiver, "/retrieval/bpl/getVersion", NULL, NULL, archiver_answered,
                                         self);
    }

  if (!rtp_mqtt_publisher_is_configured (self->mqtt))
    set_state (self, RTP_CHECK_MQTT, "unconfigured");
  else
    {
      self->probes[RTP_CHECK_MQTT]++;
      set_state (self, RTP_CHECK_MQTT, rtp_mqtt_publisher_get_connected (self->mqtt) ? "ok" : "error: not connected");
    }

  if (smtp == NULL || smtp[0] == '\0')
    set_state (self, RTP_CHECK_SMTP, "unconfigured");
  else
    {
      g_autoptr (GSocketClient) client = g_socket_client_new ();
      g_autoptr (GUri) uri = g_uri_parse (smtp, G_URI_FLAGS_NONE, NULL);
      const char *scheme = uri != NULL ? g_uri_get_scheme (uri) : NULL;
      g_autofree char *target = NULL;

      if (uri == NULL || g_uri_get_host (uri) == NULL)
        set_state (self, RTP_CHECK_SMTP, "error: not reachable");
      else
        {
          int port = g_uri_get_port (uri) > 0 ? g_uri_get_port (uri) : g_strcmp0 (scheme, "smtps") == 0 ? 465 : 25;
          target = g_strdup_printf ("%s:%d", g_uri_get_host (uri), port);
          self->probes[RTP_CHECK_SMTP]++;
          self->pending++;
          g_socket_client_set_timeout (client, 5);
          g_socket_client_connect_to_host_async (client, target, (guint16) port, NULL, smtp_connected, self);
        }
    }

  if (!rtp_directory_is_configured (self->directory))
    set_state (self, RTP_CHECK_DIRECTORY, "unconfigured");
  else
    {
      self->probes[RTP_CHECK_DIRECTORY]++;
      self->pending++;
      rtp_directory_probe_async (self->directory, NULL, directory_answered, self);
    }
  probe_done (self);
}

void
rtp_health_check_async (RtpHealth *self, GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, rtp_health_check_async);
  if (self->pending == 0 && self->probed_us != 0 && g_get_monotonic_time () - self->probed_us < PROBE_AGE_US)
    {
      g_task_return_pointer (task, copy_states (self), (GDestroyNotify) g_strfreev);
      g_object_unref (task);
      return;
    }
  g_ptr_array_add (self->waiting, task);
  if (self->pending == 0)
    probe (self);
}

GStrv
rtp_health_check_finish (RtpHealth *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}
