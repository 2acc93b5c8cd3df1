/* rtp-setpoints.c: new set-points go out over MQTT; every attempt is audited
 *
 * One service for HTTP (PUT /publish) and D-Bus (PublishValue), so the rules exist once. */
#define G_LOG_DOMAIN "RtpSetpoints"

#include "rtp-setpoints.h"
#include "rtp-error.h"
#include "rtp-validate.h"
#include "rtp-i18n.h"

#include <string.h>

#define RTP_SETPOINT_MAX_BYTES 4096

struct _RtpSetpoints {
  GObject parent_instance;
  guint retention_days;
  guint prune_id;
  RtpDatabase *db;                 /* (owned) */
  RtpExperimentStore *experiments; /* (owned) */
  RtpMqttPublisher *mqtt;          /* (owned) */
  char *prefix;                    /* (owned) */
};

G_DEFINE_TYPE (RtpSetpoints, rtp_setpoints, G_TYPE_OBJECT)

enum { SIGNAL_VALUE_SET, N_SIGNALS };
static guint signals[N_SIGNALS];

static void
rtp_setpoints_finalize (GObject *object)
{
  RtpSetpoints *self = RTP_SETPOINTS (object);
  g_clear_handle_id (&self->prune_id, g_source_remove);
  g_clear_object (&self->db);
  g_clear_object (&self->experiments);
  g_clear_object (&self->mqtt);
  g_free (self->prefix);
  G_OBJECT_CLASS (rtp_setpoints_parent_class)->finalize (object);
}

static void
rtp_setpoints_class_init (RtpSetpointsClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_setpoints_finalize;
  /**
   * RtpSetpoints::value-set:
   * @pv_string: the PV
   * @value: the value's text
   * @actor: who set it (a user_id or "dbus:uid=N")
   *
   * Emitted after the broker acknowledged a new value.
   */
  signals[SIGNAL_VALUE_SET] = g_signal_new ("value-set", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                            NULL, G_TYPE_NONE, 3, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_STRING);
}

static void
rtp_setpoints_init (RtpSetpoints *self)
{
}

/* The audit log keeps RTP_AUDIT_RETENTION_DAYS; older entries go at start and every hour. */
static gboolean
prune_log (gpointer user_data)
{
  RtpSetpoints *self = user_data;
  g_autoptr (GError) error = NULL;
  gint64 before = g_get_real_time () - (gint64) self->retention_days * 86400 * G_USEC_PER_SEC;
  gint n = rtp_database_exec (self->db, &error, "DELETE FROM publish_log WHERE created_us < :t", "t", RTP_DB_INT,
                              before, NULL);

  if (n < 0)
    g_warning ("cannot prune the audit log: %s", error->message);
  else if (n > 0)
    g_message ("removed %d audit log entries older than %u days", n, self->retention_days);
  return G_SOURCE_CONTINUE;
}

RtpSetpoints *
rtp_setpoints_new (RtpDatabase *db, RtpExperimentStore *experiments, RtpMqttPublisher *mqtt, const char *channel_prefix,
                   guint retention_days)
{
  RtpSetpoints *self = g_object_new (RTP_TYPE_SETPOINTS, NULL);
  self->db = g_object_ref (db);
  self->experiments = g_object_ref (experiments);
  self->mqtt = g_object_ref (mqtt);
  self->prefix = g_strdup (channel_prefix);
  self->retention_days = retention_days;
  if (retention_days > 0)
    {
      prune_log (self);
      self->prune_id = g_timeout_add_seconds (3600, prune_log, self);
    }
  return self;
}

void
rtp_setpoint_log_entry_free (RtpSetpointLogEntry *entry)
{
  if (entry == NULL)
    return;
  g_free (entry->user_id);
  g_free (entry->pv_string);
  g_free (entry->value);
  g_free (entry->outcome);
  g_free (entry);
}

/* NULL when no topic may be built from @pv_string (an MQTT wildcard or level separator). */
char *
rtp_setpoints_topic (RtpSetpoints *self, const char *pv_string)
{
  g_autofree char *path = NULL;

  if (!rtp_pv_name_is_mqtt_safe (pv_string))
    return NULL;
  path = g_strdelimit (g_strdup (pv_string), ":", '/');
  return g_strconcat (self->prefix, "/", path, NULL);
}

static void
audit (RtpSetpoints *self, const char *actor, const char *pv, const char *value, const char *outcome)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *id = g_uuid_string_random ();

  if (rtp_database_exec (self->db, &error,
                         "INSERT INTO publish_log (id, created_us, user_id, pv_string, value, outcome) "
                         "VALUES (:id, :t, :u, :pv, :v, :o)",
                         "id", RTP_DB_STR, id, "t", RTP_DB_INT, g_get_real_time (), "u", RTP_DB_STR, actor, "pv",
                         RTP_DB_STR, pv, "v", RTP_DB_STR, value, "o", RTP_DB_STR, outcome, NULL) < 0)
    g_warning ("cannot write the audit log entry for %s=%s by %s: %s", pv, value, actor, error->message);
}

typedef struct {
  char *actor;
  char *pv;
  char *value;
} SetData;

static void
set_data_free (SetData *d)
{
  g_free (d->actor);
  g_free (d->pv);
  g_free (d->value);
  g_free (d);
}

static void
published (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  RtpSetpoints *self = g_task_get_source_object (task);
  SetData *d = g_task_get_task_data (task);
  GError *error = NULL;

  if (!rtp_mqtt_publisher_publish_finish (RTP_MQTT_PUBLISHER (source), result, &error))
    {
      audit (self, d->actor, d->pv, d->value,
             g_error_matches (error, RTP_ERROR, RTP_ERROR_UNCONFIRMED) ? "unknown: no acknowledgement in time"
                                                                       : "failed: broker unreachable");
      g_task_return_error (task, error);
      return;
    }
  audit (self, d->actor, d->pv, d->value, "acknowledged");
  g_message ("%s set %s to %s", d->actor, d->pv, d->value);
  g_signal_emit (self, signals[SIGNAL_VALUE_SET], 0, d->pv, d->value, d->actor);
  g_task_return_boolean (task, TRUE);
}

void
rtp_setpoints_set_async (RtpSetpoints *self, const RtpUser *caller, const char *actor, gboolean as_admin,
                         const char *pv_string, const RtpSetpointValue *value, GCancellable *cancellable,
                         GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr (RtpProcessVariable) pv = NULL;
  g_autofree char *topic = NULL;
  GError *error = NULL;
  SetData *d;

  g_return_if_fail (RTP_IS_SETPOINTS (self));
  g_return_if_fail (actor != NULL && pv_string != NULL && value != NULL && value->text != NULL);

  g_task_set_source_tag (task, rtp_setpoints_set_async);
  if (strlen (value->text) > RTP_SETPOINT_MAX_BYTES)
    {
      /* the audit log keeps every value: no megabytes there */
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_INVALID, _ ("value: The value is longer than %d bytes."),
                               RTP_SETPOINT_MAX_BYTES);
      return;
    }
  pv = rtp_experiment_store_get_pv (self->experiments, pv_string, &error);
  if (pv == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  if (!as_admin &&
      !rtp_experiment_store_check_access (self->experiments, caller, pv->experiment_short_id, RTP_ACCESS_SET, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  if (!pv->available_for_mqtt_publish)
    {
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_NOT_ACCEPTABLE, "%s",
                               _ ("The requested process variable does not accept user-set values."));
      return;
    }
  topic = rtp_setpoints_topic (self, pv_string);
  if (topic == NULL)
    {
      g_task_return_new_error (
        task, RTP_ERROR, RTP_ERROR_CONFLICT,
        _ ("The process variable (%s) cannot be published: MQTT topics cannot carry the '+', '#' or '/' of its name."),
        pv_string);
      return;
    }
  d = g_new0 (SetData, 1);
  d->actor = g_strdup (actor);
  d->pv = g_strdup (pv_string);
  d->value = g_strdup (value->text);
  g_task_set_task_data (task, d, (GDestroyNotify) set_data_free);
  rtp_mqtt_publisher_publish_async (self->mqtt, topic, d->value, strlen (d->value), 1, cancellable, published,
                                    g_object_ref (task));
}

gboolean
rtp_setpoints_set_finish (RtpSetpoints *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

GPtrArray *
rtp_setpoints_log (RtpSetpoints *self, const char *pv_string, guint limit, GError **error)
{
  g_autoptr (GdaDataModel) m = NULL;
  GPtrArray *out;

  g_return_val_if_fail (RTP_IS_SETPOINTS (self), NULL);
  m = rtp_database_select (self->db, error,
                           "SELECT created_us, user_id, pv_string, value, outcome FROM publish_log "
                           "WHERE COALESCE(:pv, pv_string) = pv_string ORDER BY created_us DESC, id LIMIT :n",
                           "pv", RTP_DB_STR, pv_string, "n", RTP_DB_INT, (gint64) limit, NULL);
  if (m == NULL)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_setpoint_log_entry_free);
  for (guint i = 0; i < rtp_db_rows (m); i++)
    {
      RtpSetpointLogEntry *e = g_new0 (RtpSetpointLogEntry, 1);
      e->time_us = rtp_db_int0 (m, i, 0);
      e->user_id = g_strdup (rtp_db_str (m, i, 1));
      e->pv_string = g_strdup (rtp_db_str (m, i, 2));
      e->value = g_strdup (rtp_db_str (m, i, 3));
      e->outcome = g_strdup (rtp_db_str (m, i, 4));
      g_ptr_array_add (out, e);
    }
  return out;
}
