/* rtp-setpoints.c: new set-points go out over MQTT; every attempt is audited
 *
 * One service for HTTP (PUT /publish) and D-Bus (PublishValue), so the rules exist once. */
#define G_LOG_DOMAIN "RtpSetpoints"

#include "rtp-setpoints.h"
#include "rtp-error.h"
#include "rtp-validate.h"
#include "rtp-i18n.h"
#include "rtp-json.h"

#include <math.h>
#include <string.h>

#define RTP_SETPOINT_MAX_BYTES 4096

struct _RtpSetpoints {
  GObject parent_instance;
  guint retention_days;
  guint prune_id;
  RtpDatabase *db;                 /* (owned) */
  RtpExperimentStore *experiments; /* (owned) */
  RtpMqttPublisher *mqtt;          /* (owned) */
  RtpLiveValues *live;             /* (owned) (nullable) */
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
  g_clear_object (&self->live);
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
rtp_setpoints_set_live_values (RtpSetpoints *self, RtpLiveValues *live)
{
  g_set_object (&self->live, live);
}

void
rtp_setpoint_result_free (RtpSetpointResult *result)
{
  if (result == NULL)
    return;
  g_free (result->id);
  g_free (result->outcome);
  g_free (result->previous);
  g_free (result->readback);
  g_free (result);
}

void
rtp_setpoint_log_entry_free (RtpSetpointLogEntry *entry)
{
  if (entry == NULL)
    return;
  g_free (entry->id);
  g_free (entry->reason);
  g_free (entry->previous);
  g_free (entry->readback);
  g_free (entry->reverts);
  g_free (entry->snapshot);
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

/* What one audit entry records. */
typedef struct {
  const char *actor;
  const char *pv;
  const char *value;
  const char *previous; /* (nullable) */
  const char *reverts;  /* (nullable) */
  const char *snapshot; /* (nullable) */
} AuditLine;

/* Writes an entry; returns its id (NULL when the database refused: logged, the write goes on). */
static char *
audit (RtpSetpoints *self, const AuditLine *line, const char *outcome, const char *reason)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *id = g_uuid_string_random ();

  if (rtp_database_exec (
        self->db, &error,
        "INSERT INTO publish_log (id, created_us, user_id, pv_string, value, outcome, reason, previous, "
        "reverts, snapshot) VALUES (:id, :t, :u, :pv, :v, :o, :r, :p, :rv, :s)",
        "id", RTP_DB_STR, id, "t", RTP_DB_INT, g_get_real_time (), "u", RTP_DB_STR, line->actor, "pv", RTP_DB_STR,
        line->pv, "v", RTP_DB_STR, line->value, "o", RTP_DB_STR, outcome, "r", RTP_DB_STR, reason, "p", RTP_DB_STR,
        line->previous, "rv", RTP_DB_STR, line->reverts, "s", RTP_DB_STR, line->snapshot, NULL) < 0)
    {
      g_warning ("cannot write the audit log entry for %s=%s by %s: %s", line->pv, line->value, line->actor,
                 error->message);
      return NULL;
    }
  return g_steal_pointer (&id);
}

static void
audit_outcome (RtpSetpoints *self, const char *id, const char *outcome, const char *readback)
{
  g_autoptr (GError) error = NULL;

  if (id != NULL &&
      rtp_database_exec (self->db, &error, "UPDATE publish_log SET outcome = :o, readback = :r WHERE id = :id", "o",
                         RTP_DB_STR, outcome, "r", RTP_DB_STR, readback, "id", RTP_DB_STR, id, NULL) < 0)
    g_warning ("cannot record the outcome %s of audit entry %s: %s", outcome, id, error->message);
}

/* ---- the last known value ---------------------------------------------------------------- */

char *
rtp_setpoints_last_known (RtpSetpoints *self, const char *pv_string)
{
  g_autoptr (GdaDataModel) m = NULL;
  gint64 live_us = G_MININT64;
  g_autofree char *live_value = NULL;

  if (self->live != NULL && rtp_live_values_get_latest (self->live, pv_string, &live_us, &live_value) &&
      live_value != NULL && g_str_equal (live_value, "null"))
    g_clear_pointer (&live_value, g_free);
  m = rtp_database_select (self->db, NULL,
                           "SELECT value, created_us FROM publish_log WHERE pv_string = :pv AND outcome IN "
                           "('published', 'verified', 'not_verified') ORDER BY created_us DESC LIMIT 1",
                           "pv", RTP_DB_STR, pv_string, NULL);
  if (m != NULL && rtp_db_rows (m) > 0 && (live_value == NULL || rtp_db_int0 (m, 0, 1) > live_us))
    return g_strdup (rtp_db_str (m, 0, 0));
  if (live_value == NULL)
    return NULL;
  if (live_value[0] == '"') /* a text value: its text */
    {
      g_autoptr (GString) text = g_string_new (NULL);
      rtp_json_append_decoded (text, live_value, strlen (live_value));
      return g_string_free (g_steal_pointer (&text), FALSE);
    }
  return g_steal_pointer (&live_value);
}

/* @text as a number: all of it, finite. */
static gboolean
parse_number (const char *text, double *out)
{
  char *end = NULL;

  if (text == NULL || text[0] == '\0' || g_ascii_isspace (text[0]))
    return FALSE;
  *out = g_ascii_strtod (text, &end);
  return end != text && *end == '\0' && isfinite (*out);
}

/* ---- the write ---------------------------------------------------------------- */

typedef struct {
  char *actor;
  char *pv;
  char *value;
  char *previous;
  char *reverts;
  char *snapshot;
  char *id;       /* the audit entry, once published */
  char *readback; /* the PV read back */
  gboolean verify;
  gboolean dry_run;
  gboolean is_number;
  double number;
  double tolerance;
  guint timeout_s;
  /* the wait for the read-back */
  gulong value_id;
  gulong cancel_id;
  guint timeout_id;
  gboolean watching;
} SetData;

static void
wait_stop (GTask *task)
{
  RtpSetpoints *self = g_task_get_source_object (task);
  SetData *d = g_task_get_task_data (task);

  if (d->value_id != 0)
    g_clear_signal_handler (&d->value_id, self->live);
  if (d->cancel_id != 0)
    {
      g_cancellable_disconnect (g_task_get_cancellable (task), d->cancel_id);
      d->cancel_id = 0;
    }
  g_clear_handle_id (&d->timeout_id, g_source_remove);
  if (d->watching)
    {
      rtp_live_values_unwatch (self->live, d->readback);
      d->watching = FALSE;
    }
}

static void
set_data_free (SetData *d)
{
  g_free (d->actor);
  g_free (d->pv);
  g_free (d->value);
  g_free (d->previous);
  g_free (d->reverts);
  g_free (d->snapshot);
  g_free (d->id);
  g_free (d->readback);
  g_free (d);
}

static void
return_result (GTask *task, const char *outcome, const char *readback)
{
  SetData *d = g_task_get_task_data (task);
  RtpSetpointResult *r = g_new0 (RtpSetpointResult, 1);

  r->id = g_strdup (d->id);
  r->outcome = g_strdup (outcome);
  r->previous = g_strdup (d->previous);
  r->readback = g_strdup (readback);
  g_task_return_pointer (task, r, (GDestroyNotify) rtp_setpoint_result_free);
}

/* The read-back PV's next value: within the tolerance (numbers) or the same text. */
static void
on_readback (RtpLiveValues *live, const char *pv, gint64 time_us, const char *value, gpointer user_data)
{
  GTask *task = user_data;
  RtpSetpoints *self = g_task_get_source_object (task);
  SetData *d = g_task_get_task_data (task);
  gboolean same;
  double x;

  if (!g_str_equal (pv, d->readback))
    return;
  if (d->is_number)
    same = parse_number (value, &x) && fabs (x - d->number) <= d->tolerance;
  else
    {
      g_autoptr (GString) text = g_string_new (NULL);
      if (value[0] == '"')
        rtp_json_append_decoded (text, value, strlen (value));
      else
        g_string_assign (text, value);
      same = g_str_equal (text->str, d->value);
    }
  wait_stop (task);
  audit_outcome (self, d->id, same ? "verified" : "not_verified", value);
  g_message ("%s read back %s after %s was set to %s: %s", d->readback, value, d->pv, d->value,
             same ? "verified" : "not verified");
  return_result (task, same ? "verified" : "not_verified", value);
  g_object_unref (task); /* the wait's */
}

static gboolean
readback_timeout (gpointer user_data)
{
  GTask *task = user_data;
  RtpSetpoints *self = g_task_get_source_object (task);
  SetData *d = g_task_get_task_data (task);

  d->timeout_id = 0;
  wait_stop (task);
  audit_outcome (self, d->id, "not_verified", NULL);
  g_message ("%s read back nothing within %u s after %s was set to %s", d->readback, d->timeout_s, d->pv, d->value);
  return_result (task, "not_verified", NULL);
  g_object_unref (task); /* the wait's */
  return G_SOURCE_REMOVE;
}

static gboolean
wait_cancelled_idle (gpointer user_data)
{
  GTask *task = user_data;
  SetData *d = g_task_get_task_data (task);

  if (d->timeout_id == 0 && d->value_id == 0)
    return G_SOURCE_REMOVE; /* answered meanwhile */
  wait_stop (task);
  g_message ("the wait for %s's read-back was cancelled: the caller went away (the value was published)", d->pv);
  g_task_return_error_if_cancelled (task);
  g_object_unref (task); /* the wait's */
  return G_SOURCE_REMOVE;
}

static void
wait_cancelled (GCancellable *cancellable, gpointer user_data)
{
  /* from an idle: disconnecting inside the handler would wait for the handler itself */
  g_idle_add_full (G_PRIORITY_DEFAULT, wait_cancelled_idle, g_object_ref (user_data), g_object_unref);
}

static void
published (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  RtpSetpoints *self = g_task_get_source_object (task);
  SetData *d = g_task_get_task_data (task);
  AuditLine line = { d->actor, d->pv, d->value, d->previous, d->reverts, d->snapshot };
  GError *error = NULL;

  if (!rtp_mqtt_publisher_publish_finish (RTP_MQTT_PUBLISHER (source), result, &error))
    {
      gboolean unknown = g_error_matches (error, RTP_ERROR, RTP_ERROR_UNCONFIRMED);
      g_free (audit (self, &line, unknown ? "unknown" : "failed",
                     unknown ? "no acknowledgement in time" : "broker unreachable"));
      g_task_return_error (task, error);
      return;
    }
  d->id = audit (self, &line, "published", NULL);
  g_message ("%s set %s to %s", d->actor, d->pv, d->value);
  g_signal_emit (self, signals[SIGNAL_VALUE_SET], 0, d->pv, d->value, d->actor);
  if (!d->verify || self->live == NULL)
    {
      return_result (task, "published", NULL);
      return;
    }
  /* wait, without blocking, for the read-back PV's next value */
  rtp_live_values_watch (self->live, d->readback);
  d->watching = TRUE;
  d->value_id = g_signal_connect (self->live, "value", G_CALLBACK (on_readback), task);
  d->timeout_id = g_timeout_add_seconds (d->timeout_s, readback_timeout, task);
  if (g_task_get_cancellable (task) != NULL)
    d->cancel_id = g_cancellable_connect (g_task_get_cancellable (task), G_CALLBACK (wait_cancelled), task, NULL);
  g_object_ref (task); /* held by the wait, given back by whoever ends it */
}

/* A refusal by a guard rail: audited (outcome refused, the reason) and returned. */
static void
refuse (RtpSetpoints *self, GTask *task, const AuditLine *line, GError *error)
{
  SetData *d = g_task_get_task_data (task);

  if (d->dry_run)
    {
      g_task_return_error (task, error);
      return;
    }
  g_free (audit (self, line, "refused", error->message));
  g_message ("refused %s=%s by %s: %s", line->pv, line->value, line->actor, error->message);
  g_task_return_error (task, error);
}

static const char *
limit_text (const char *text, const char *none)
{
  return text != NULL ? text : none;
}

/* The guard rails of @pv for @value. FALSE: refused (audited). */
static gboolean
check_rails (RtpSetpoints *self, GTask *task, const RtpProcessVariable *pv, const RtpUser *caller, gboolean as_admin,
             const RtpSetpointValue *value, const RtpSetpointOptions *options, SetData *d)
{
  AuditLine line = { d->actor, d->pv, d->value, d->previous, d->reverts, d->snapshot };
  double v, last;

  if (!rtp_process_variable_has_guard_rails (pv))
    return TRUE;
  if (value->kind == RTP_SETPOINT_NUMBER)
    v = value->number;
  else if (value->kind != RTP_SETPOINT_TEXT || !parse_number (value->text, &v))
    {
      refuse (self, task, &line,
              g_error_new (RTP_ERROR, RTP_ERROR_UNPROCESSABLE,
                           _ ("value: %s is not a number, and %s only accepts numbers within its limits."), value->text,
                           pv->pv_string));
      return FALSE;
    }
  d->is_number = TRUE;
  d->number = v;
  if ((pv->setpoint_min != NULL && v < g_ascii_strtod (pv->setpoint_min, NULL)) ||
      (pv->setpoint_max != NULL && v > g_ascii_strtod (pv->setpoint_max, NULL)))
    {
      refuse (self, task, &line,
              g_error_new (RTP_ERROR, RTP_ERROR_UNPROCESSABLE,
                           _ ("value: %s is outside the allowed range [%s, %s] of %s."), value->text,
                           limit_text (pv->setpoint_min, "-inf"), limit_text (pv->setpoint_max, "inf"), pv->pv_string));
      return FALSE;
    }
  if (pv->setpoint_max_step == NULL)
    return TRUE;
  if (d->previous == NULL || !parse_number (d->previous, &last))
    {
      gboolean admin = as_admin || (caller != NULL && rtp_user_is_admin (caller));
      if (options != NULL && options->force && admin)
        {
          g_message ("%s forced %s=%s past its step rule: its current value is not known", d->actor, d->pv, d->value);
          return TRUE;
        }
      refuse (self, task, &line,
              g_error_new (RTP_ERROR, RTP_ERROR_CONFLICT,
                           _ ("The current value of %s is not known, so the step limit cannot be checked."),
                           pv->pv_string));
      return FALSE;
    }
  if (fabs (v - last) > g_ascii_strtod (pv->setpoint_max_step, NULL))
    {
      refuse (self, task, &line,
              g_error_new (RTP_ERROR, RTP_ERROR_UNPROCESSABLE,
                           _ ("value: The change from %s to %s is larger than the allowed step of %s for %s."),
                           d->previous, value->text, pv->setpoint_max_step, pv->pv_string));
      return FALSE;
    }
  return TRUE;
}

void
rtp_setpoints_write_async (RtpSetpoints *self, const RtpUser *caller, const char *actor, gboolean as_admin,
                           const char *pv_string, const RtpSetpointValue *value, const RtpSetpointOptions *options,
                           GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr (RtpProcessVariable) pv = NULL;
  g_autofree char *topic = NULL;
  GError *error = NULL;
  SetData *d;

  g_return_if_fail (RTP_IS_SETPOINTS (self));
  g_return_if_fail (actor != NULL && pv_string != NULL && value != NULL && value->text != NULL);

  g_task_set_source_tag (task, rtp_setpoints_write_async);
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
  d->previous = rtp_setpoints_last_known (self, pv_string);
  d->readback = g_strdup (pv->readback_pv != NULL ? pv->readback_pv : pv_string);
  d->is_number = value->kind == RTP_SETPOINT_NUMBER ||
                 (value->kind == RTP_SETPOINT_TEXT && parse_number (value->text, &d->number));
  if (value->kind == RTP_SETPOINT_NUMBER)
    d->number = value->number;
  if (options != NULL)
    {
      d->reverts = g_strdup (options->reverts);
      d->snapshot = g_strdup (options->snapshot);
      d->verify = options->verify;
      d->tolerance = options->tolerance;
      d->timeout_s = CLAMP (options->timeout_s, 1, 60);
      d->dry_run = options->dry_run;
    }
  g_task_set_task_data (task, d, (GDestroyNotify) set_data_free);
  if (!check_rails (self, task, pv, caller, as_admin, value, options, d))
    return;
  if (d->dry_run)
    {
      return_result (task, "would_publish", NULL);
      return;
    }
  rtp_mqtt_publisher_publish_async (self->mqtt, topic, d->value, strlen (d->value), 1, NULL, published,
                                    g_object_ref (task));
}

RtpSetpointResult *
rtp_setpoints_write_finish (RtpSetpoints *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* The old call of PUT /publish and PublishValue: a write without options. */
static void
set_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  GError *error = NULL;
  g_autoptr (RtpSetpointResult) r = rtp_setpoints_write_finish (RTP_SETPOINTS (source), result, &error);

  if (r == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

void
rtp_setpoints_set_async (RtpSetpoints *self, const RtpUser *caller, const char *actor, gboolean as_admin,
                         const char *pv_string, const RtpSetpointValue *value, GCancellable *cancellable,
                         GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, rtp_setpoints_set_async);
  rtp_setpoints_write_async (self, caller, actor, as_admin, pv_string, value, NULL, cancellable, set_done, task);
}

gboolean
rtp_setpoints_set_finish (RtpSetpoints *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

static RtpSetpointLogEntry *
entry_from_row (GdaDataModel *m, guint i)
{
  RtpSetpointLogEntry *e = g_new0 (RtpSetpointLogEntry, 1);

  e->time_us = rtp_db_int0 (m, i, 0);
  e->user_id = g_strdup (rtp_db_str (m, i, 1));
  e->pv_string = g_strdup (rtp_db_str (m, i, 2));
  e->value = g_strdup (rtp_db_str (m, i, 3));
  e->outcome = g_strdup (rtp_db_str (m, i, 4));
  e->id = g_strdup (rtp_db_str (m, i, 5));
  e->reason = g_strdup (rtp_db_str (m, i, 6));
  e->previous = g_strdup (rtp_db_str (m, i, 7));
  e->readback = g_strdup (rtp_db_str (m, i, 8));
  e->reverts = g_strdup (rtp_db_str (m, i, 9));
  e->snapshot = g_strdup (rtp_db_str (m, i, 10));
  return e;
}

GPtrArray *
rtp_setpoints_log (RtpSetpoints *self, const char *pv_string, guint limit, GError **error)
{
  g_autoptr (GdaDataModel) m = NULL;
  GPtrArray *out;

  g_return_val_if_fail (RTP_IS_SETPOINTS (self), NULL);
  m = rtp_database_select (self->db, error,
                           "SELECT created_us, user_id, pv_string, value, outcome, id, reason, previous, readback, "
                           "reverts, snapshot FROM publish_log "
                           "WHERE COALESCE(:pv, pv_string) = pv_string ORDER BY created_us DESC, id LIMIT :n",
                           "pv", RTP_DB_STR, pv_string, "n", RTP_DB_INT, (gint64) limit, NULL);
  if (m == NULL)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_setpoint_log_entry_free);
  for (guint i = 0; i < rtp_db_rows (m); i++)
    {
      g_ptr_array_add (out, entry_from_row (m, i));
    }
  return out;
}

RtpSetpointLogEntry *
rtp_setpoints_get_entry (RtpSetpoints *self, const char *id, GError **error)
{
  g_autoptr (GdaDataModel) m = rtp_database_select (
    self->db, error,
    "SELECT created_us, user_id, pv_string, value, outcome, id, reason, previous, readback, reverts, snapshot "
    "FROM publish_log WHERE id = :id",
    "id", RTP_DB_STR, id, NULL);

  if (m == NULL)
    return NULL;
  if (rtp_db_rows (m) == 0)
    {
      g_propagate_error (error, rtp_error_new_not_found (_ ("audit log entry"), id));
      return NULL;
    }
  return entry_from_row (m, 0);
}
