/* rtp-snapshots.c: save, compare and restore an experiment's set-points
 *
 * A snapshot holds the value of every PV of an experiment at a moment: now (the live value where
 * one is known, else the archiver's last sample) or in the past (the appliance's getDataAtTime,
 * through the history service). Restoring writes the saved values through the set-point service,
 * so the guard rails, the permissions and the audit log apply as to any other write. */
#define G_LOG_DOMAIN "RtpSnapshots"

#include "rtp-snapshots.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-json.h"
#include "rtp-validate.h"

#include <math.h>
#include <string.h>

struct _RtpSnapshots {
  GObject parent_instance;
  RtpDatabase *db;                 /* (owned) */
  RtpExperimentStore *experiments; /* (owned) */
  RtpHistory *history;             /* (owned) */
  RtpLiveValues *live;             /* (owned) (nullable) */
  RtpSetpoints *setpoints;         /* (owned) */
};

G_DEFINE_TYPE (RtpSnapshots, rtp_snapshots, G_TYPE_OBJECT)

static void
rtp_snapshots_finalize (GObject *object)
{
  RtpSnapshots *self = RTP_SNAPSHOTS (object);

  g_clear_object (&self->db);
  g_clear_object (&self->experiments);
  g_clear_object (&self->history);
  g_clear_object (&self->live);
  g_clear_object (&self->setpoints);
  G_OBJECT_CLASS (rtp_snapshots_parent_class)->finalize (object);
}

static void
rtp_snapshots_class_init (RtpSnapshotsClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_snapshots_finalize;
}

static void
rtp_snapshots_init (RtpSnapshots *self)
{
}

RtpSnapshots *
rtp_snapshots_new (RtpDatabase *db, RtpExperimentStore *experiments, RtpHistory *history, RtpLiveValues *live,
                   RtpSetpoints *setpoints)
{
  RtpSnapshots *self = g_object_new (RTP_TYPE_SNAPSHOTS, NULL);

  self->db = g_object_ref (db);
  self->experiments = g_object_ref (experiments);
  self->history = g_object_ref (history);
  self->live = live != NULL ? g_object_ref (live) : NULL;
  self->setpoints = g_object_ref (setpoints);
  return self;
}

static void
snapshot_value_free (RtpSnapshotValue *v)
{
  g_free (v->pv_string);
  g_free (v->value);
  g_free (v);
}

void
rtp_snapshot_free (RtpSnapshot *s)
{
  if (s == NULL)
    return;
  g_free (s->id);
  g_free (s->experiment_short_id);
  g_free (s->name);
  g_free (s->comment);
  g_free (s->taken_by);
  g_clear_pointer (&s->values, g_ptr_array_unref);
  g_free (s);
}

void
rtp_snapshot_comparison_free (RtpSnapshotComparison *c)
{
  if (c == NULL)
    return;
  g_free (c->pv_string);
  g_free (c->saved);
  g_free (c->current);
  g_free (c);
}

void
rtp_restore_result_free (RtpRestoreResult *r)
{
  if (r == NULL)
    return;
  g_free (r->pv_string);
  g_free (r->outcome);
  g_free (r->reason);
  g_free (r);
}

/* ---- values now or then ---------------------------------------------------------------- */

/* The values of @pvs: from the appliance at the moment (or now), and — for now — a live value
 * where it is newer. Completes with a GHashTable pv → RtpValueAt. */
typedef struct {
  GPtrArray *pvs; /* (owned) NULL-terminated */
  gboolean now;
} ValuesJob;

static void
values_job_free (ValuesJob *j)
{
  g_ptr_array_unref (j->pvs);
  g_free (j);
}

static void
merge_live (RtpSnapshots *self, GPtrArray *pvs, GHashTable *values)
{
  for (guint i = 0; self->live != NULL && g_ptr_array_index (pvs, i) != NULL; i++)
    {
      const char *pv = g_ptr_array_index (pvs, i);
      const RtpValueAt *archived = g_hash_table_lookup (values, pv);
      gint64 time_us;
      g_autofree char *value = NULL;
      if (rtp_live_values_get_latest (self->live, pv, &time_us, &value) && value != NULL &&
          (archived == NULL || time_us >= archived->secs * G_USEC_PER_SEC + archived->nanos / 1000))
        {
          RtpValueAt *v = g_new0 (RtpValueAt, 1);
          v->secs = time_us / G_USEC_PER_SEC;
          v->nanos = (gint32) (time_us % G_USEC_PER_SEC) * 1000;
          v->value = g_strdup (value);
          v->severity = v->status = -1;
          g_hash_table_replace (values, g_strdup (pv), v);
        }
    }
}

static void
values_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  RtpSnapshots *self = g_task_get_source_object (task);
  ValuesJob *j = g_task_get_task_data (task);
  GError *error = NULL;
  GHashTable *values = rtp_history_values_at_finish (RTP_HISTORY (source), result, &error);

  if (values == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  if (j->now)
    merge_live (self, j->pvs, values);
  g_task_return_pointer (task, values, (GDestroyNotify) g_hash_table_unref);
}

static void
values_async (RtpSnapshots *self, GPtrArray *pvs, gboolean now, gint64 at_us, GCancellable *cancellable,
              GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  ValuesJob *j = g_new0 (ValuesJob, 1);

  j->pvs = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < pvs->len; i++)
    g_ptr_array_add (j->pvs, g_strdup (g_ptr_array_index (pvs, i)));
  g_ptr_array_add (j->pvs, NULL);
  j->now = now;
  g_task_set_task_data (task, j, (GDestroyNotify) values_job_free);
  if (!rtp_history_is_configured (self->history))
    {
      /* no archiver: only live values are known (a past moment cannot be asked) */
      GHashTable *values;
      if (!now)
        {
          g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                                   _ ("Could not get process variable data from archiver."));
          g_object_unref (task);
          return;
        }
      values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) rtp_value_at_free);
      merge_live (self, j->pvs, values);
      g_task_return_pointer (task, values, (GDestroyNotify) g_hash_table_unref);
      g_object_unref (task);
      return;
    }
  rtp_history_values_at_async (self->history, (const char *const *) j->pvs->pdata, now ? g_get_real_time () : at_us,
                               cancellable, values_done, task);
}

static GHashTable *
values_finish (RtpSnapshots *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- take ---------------------------------------------------------------- */

typedef struct {
  char *short_id;
  char *name;
  char *comment;
  char *taken_by;
  gboolean has_at;
  gint64 at_us;
  GPtrArray *pvs; /* (owned) */
} TakeJob;

static void
take_job_free (TakeJob *t)
{
  g_free (t->short_id);
  g_free (t->name);
  g_free (t->comment);
  g_free (t->taken_by);
  g_ptr_array_unref (t->pvs);
  g_free (t);
}

static gboolean
name_taken (RtpSnapshots *self, const char *short_id, const char *name, GError **error)
{
  gint64 n = rtp_database_select_int (self->db, error,
                                      "SELECT COUNT(*) FROM snapshots WHERE experiment_short_id = :e AND name = :n",
                                      "e", RTP_DB_STR, short_id, "n", RTP_DB_STR, name, NULL);
  if (n < 0)
    return TRUE;
  if (n > 0)
    g_propagate_error (error, rtp_error_new_exists (_ ("snapshot"), name));
  return n > 0;
}

static void
take_values_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  RtpSnapshots *self = g_task_get_source_object (task);
  TakeJob *t = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (GHashTable) values = values_finish (self, result, &error);
  g_autoptr (RtpTransaction) tx = NULL;
  g_autofree char *id = g_uuid_string_random ();
  RtpSnapshot *snapshot;

  if (values == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  tx = rtp_database_begin_transaction (self->db, &error);
  if (tx == NULL || name_taken (self, t->short_id, t->name, &error) ||
      rtp_database_exec (self->db, &error,
                         "INSERT INTO snapshots (id, experiment_short_id, name, comment, taken_us, taken_by, at_us) "
                         "VALUES (:id, :e, :n, :c, :t, :by, :at)",
                         "id", RTP_DB_STR, id, "e", RTP_DB_STR, t->short_id, "n", RTP_DB_STR, t->name, "c", RTP_DB_STR,
                         t->comment, "t", RTP_DB_INT, g_get_real_time (), "by", RTP_DB_STR, t->taken_by, "at",
                         RTP_DB_INT_NULL, t->has_at ? &t->at_us : NULL, NULL) < 0)
    {
      g_task_return_error (task, error);
      return;
    }
  for (guint i = 0; i < t->pvs->len; i++)
    {
      const char *pv = g_ptr_array_index (t->pvs, i);
      const RtpValueAt *v = g_hash_table_lookup (values, pv);
      gint64 time_us = v != NULL ? v->secs * G_USEC_PER_SEC + v->nanos / 1000 : 0;
      if (rtp_database_exec (self->db, &error,
                             "INSERT INTO snapshot_values (snapshot_id, seq, pv_string, value, time_us) "
                             "VALUES (:id, :seq, :pv, :v, :t)",
                             "id", RTP_DB_STR, id, "seq", RTP_DB_INT, (gint64) i, "pv", RTP_DB_STR, pv, "v", RTP_DB_STR,
                             v != NULL ? v->value : NULL, "t", RTP_DB_INT_NULL, v != NULL ? &time_us : NULL, NULL) < 0)
        {
          g_task_return_error (task, error);
          return;
        }
    }
  if (!rtp_transaction_commit (tx, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  g_message ("snapshot '%s' of %s taken by %s (%u PVs, %u without a value)", t->name, t->short_id, t->taken_by,
             t->pvs->len, t->pvs->len - g_hash_table_size (values));
  snapshot = rtp_snapshots_get (self, t->short_id, id, &error);
  if (snapshot == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, snapshot, (GDestroyNotify) rtp_snapshot_free);
}

void
rtp_snapshots_take_async (RtpSnapshots *self, const char *short_id, const char *name, const char *comment,
                          gboolean has_at, gint64 at_us, const char *taken_by, GCancellable *cancellable,
                          GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr (RtpExperiment) experiment = NULL;
  GError *error = NULL;
  TakeJob *t;

  g_task_set_source_tag (task, rtp_snapshots_take_async);
  experiment = rtp_experiment_store_get_experiment (self->experiments, short_id, &error);
  if (experiment == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  if (name == NULL || rtp_validate_is_blank (name))
    {
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_INVALID, "%s",
                               _ ("name: A snapshot needs a name of 1 to 100 characters."));
      return;
    }
  if (!rtp_validate_text ("name", name, 100, &error) ||
      (comment != NULL && !rtp_validate_text ("comment", comment, 1000, &error)) ||
      name_taken (self, short_id, name, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  t = g_new0 (TakeJob, 1);
  t->short_id = g_strdup (short_id);
  t->name = g_strdup (name);
  t->comment = g_strdup (comment);
  t->taken_by = g_strdup (taken_by);
  t->has_at = has_at;
  t->at_us = at_us;
  t->pvs = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < experiment->pv_strings->len; i++)
    g_ptr_array_add (t->pvs, g_strdup (g_ptr_array_index (experiment->pv_strings, i)));
  g_task_set_task_data (task, t, (GDestroyNotify) take_job_free);
  values_async (self, t->pvs, !has_at, at_us, cancellable, take_values_done, g_object_ref (task));
}

RtpSnapshot *
rtp_snapshots_take_finish (RtpSnapshots *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- read ---------------------------------------------------------------- */

#define SNAPSHOT_COLUMNS "id, experiment_short_id, name, comment, taken_us, taken_by, at_us"

static RtpSnapshot *
snapshot_from_row (GdaDataModel *m, guint row)
{
  RtpSnapshot *s = g_new0 (RtpSnapshot, 1);

  s->id = g_strdup (rtp_db_str (m, row, 0));
  s->experiment_short_id = g_strdup (rtp_db_str (m, row, 1));
  s->name = g_strdup (rtp_db_str (m, row, 2));
  s->comment = g_strdup (rtp_db_str (m, row, 3));
  s->taken_us = rtp_db_int0 (m, row, 4);
  s->taken_by = g_strdup (rtp_db_str (m, row, 5));
  s->has_at = rtp_db_int (m, row, 6, &s->at_us);
  return s;
}

GPtrArray *
rtp_snapshots_list (RtpSnapshots *self, const char *short_id, GError **error)
{
  g_autoptr (GdaDataModel) m = NULL;
  g_autoptr (RtpExperiment) experiment = rtp_experiment_store_get_experiment (self->experiments, short_id, error);
  GPtrArray *out;

  if (experiment == NULL)
    return NULL;
  m = rtp_database_select (self->db, error,
                           "SELECT " SNAPSHOT_COLUMNS " FROM snapshots WHERE experiment_short_id = :e "
                           "ORDER BY taken_us DESC, id",
                           "e", RTP_DB_STR, short_id, NULL);
  if (m == NULL)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_snapshot_free);
  for (guint i = 0; i < rtp_db_rows (m); i++)
    g_ptr_array_add (out, snapshot_from_row (m, i));
  return out;
}

RtpSnapshot *
rtp_snapshots_get (RtpSnapshots *self, const char *short_id, const char *id, GError **error)
{
  g_autoptr (GdaDataModel) m = NULL;
  g_autoptr (GdaDataModel) v = NULL;
  RtpSnapshot *s;

  m = rtp_database_select (self->db, error,
                           "SELECT " SNAPSHOT_COLUMNS " FROM snapshots WHERE experiment_short_id = :e AND id = :id",
                           "e", RTP_DB_STR, short_id, "id", RTP_DB_STR, id, NULL);
  if (m == NULL)
    return NULL;
  if (rtp_db_rows (m) == 0)
    {
      g_propagate_error (error, rtp_error_new_not_found (_ ("snapshot"), id));
      return NULL;
    }
  v = rtp_database_select (self->db, error,
                           "SELECT pv_string, value, time_us FROM snapshot_values WHERE snapshot_id = :id ORDER BY seq",
                           "id", RTP_DB_STR, id, NULL);
  if (v == NULL)
    return NULL;
  s = snapshot_from_row (m, 0);
  s->values = g_ptr_array_new_with_free_func ((GDestroyNotify) snapshot_value_free);
  for (guint i = 0; i < rtp_db_rows (v); i++)
    {
      RtpSnapshotValue *sv = g_new0 (RtpSnapshotValue, 1);
      sv->pv_string = g_strdup (rtp_db_str (v, i, 0));
      sv->value = g_strdup (rtp_db_str (v, i, 1));
      sv->time_us = rtp_db_int0 (v, i, 2);
      g_ptr_array_add (s->values, sv);
    }
  return s;
}

gboolean
rtp_snapshots_delete (RtpSnapshots *self, const char *short_id, const char *id, const char *caller_id,
                      gboolean is_admin, GError **error)
{
  g_autoptr (RtpSnapshot) s = rtp_snapshots_get (self, short_id, id, error);

  if (s == NULL)
    return FALSE;
  if (!is_admin && g_strcmp0 (s->taken_by, caller_id) != 0)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_FORBIDDEN,
                           _ ("Only the user who took a snapshot and admins can delete it."));
      return FALSE;
    }
  if (rtp_database_exec (self->db, error, "DELETE FROM snapshots WHERE id = :id", "id", RTP_DB_STR, id, NULL) < 0)
    return FALSE;
  g_message ("snapshot '%s' of %s deleted by %s", s->name, short_id, caller_id);
  return TRUE;
}

/* ---- compare ---------------------------------------------------------------- */

static gboolean
number_of (const char *json, double *out)
{
  char *end = NULL;

  if (json == NULL || !rtp_json_is_number (json, strlen (json)))
    return FALSE;
  *out = g_ascii_strtod (json, &end);
  return isfinite (*out);
}

typedef struct {
  RtpSnapshot *snapshot; /* (owned) */
  double tolerance;
} CompareJob;

static void
compare_job_free (CompareJob *c)
{
  rtp_snapshot_free (c->snapshot);
  g_free (c);
}

static void
compare_values_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  RtpSnapshots *self = g_task_get_source_object (task);
  CompareJob *c = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (GHashTable) values = values_finish (self, result, &error);
  GPtrArray *out;

  if (values == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_snapshot_comparison_free);
  for (guint i = 0; i < c->snapshot->values->len; i++)
    {
      const RtpSnapshotValue *sv = g_ptr_array_index (c->snapshot->values, i);
      const RtpValueAt *now = g_hash_table_lookup (values, sv->pv_string);
      RtpSnapshotComparison *cmp = g_new0 (RtpSnapshotComparison, 1);
      double a, b;
      cmp->pv_string = g_strdup (sv->pv_string);
      cmp->saved = g_strdup (sv->value);
      cmp->current = now != NULL ? g_strdup (now->value) : NULL;
      if (number_of (cmp->saved, &a) && number_of (cmp->current, &b))
        {
          cmp->has_delta = TRUE;
          cmp->delta = b - a;
          cmp->within_tolerance = fabs (b - a) <= c->tolerance;
        }
      else
        cmp->within_tolerance = g_strcmp0 (cmp->saved, cmp->current) == 0 && cmp->saved != NULL;
      g_ptr_array_add (out, cmp);
    }
  g_task_return_pointer (task, out, (GDestroyNotify) g_ptr_array_unref);
}

void
rtp_snapshots_compare_async (RtpSnapshots *self, const char *short_id, const char *id, double tolerance,
                             GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  GError *error = NULL;
  RtpSnapshot *s = rtp_snapshots_get (self, short_id, id, &error);
  g_autoptr (GPtrArray) pvs = NULL;
  CompareJob *c;

  g_task_set_source_tag (task, rtp_snapshots_compare_async);
  if (s == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  c = g_new0 (CompareJob, 1);
  c->snapshot = s;
  c->tolerance = tolerance;
  g_task_set_task_data (task, c, (GDestroyNotify) compare_job_free);
  pvs = g_ptr_array_new ();
  for (guint i = 0; i < s->values->len; i++)
    g_ptr_array_add (pvs, ((RtpSnapshotValue *) g_ptr_array_index (s->values, i))->pv_string);
  values_async (self, pvs, TRUE, 0, cancellable, compare_values_done, g_object_ref (task));
}

GPtrArray *
rtp_snapshots_compare_finish (RtpSnapshots *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- restore ---------------------------------------------------------------- */

typedef struct {
  RtpSnapshot *snapshot; /* (owned) */
  RtpUser *caller;       /* (owned) (nullable) */
  char *actor;
  gboolean as_admin;
  GStrv only; /* (owned) (nullable) */
  gboolean dry_run;
  guint next;
  GPtrArray *results; /* (owned) */
  /* the value being written */
  char *text;
} RestoreJob;

static void
restore_job_free (RestoreJob *r)
{
  rtp_snapshot_free (r->snapshot);
  g_clear_pointer (&r->caller, rtp_user_free);
  g_free (r->actor);
  g_strfreev (r->only);
  g_ptr_array_unref (r->results);
  g_free (r->text);
  g_free (r);
}

static void
add_result (RestoreJob *r, const char *pv, const char *outcome, const char *reason)
{
  RtpRestoreResult *res = g_new0 (RtpRestoreResult, 1);

  res->pv_string = g_strdup (pv);
  res->outcome = g_strdup (outcome);
  res->reason = g_strdup (reason);
  g_ptr_array_add (r->results, res);
}

static void restore_next (GTask *task);

static void
restore_written (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  RestoreJob *r = g_task_get_task_data (task);
  const RtpSnapshotValue *sv = g_ptr_array_index (r->snapshot->values, r->next - 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpSetpointResult) written = rtp_setpoints_write_finish (RTP_SETPOINTS (source), result, &error);

  if (written != NULL)
    add_result (r, sv->pv_string, written->outcome, NULL);
  else if (g_error_matches (error, RTP_ERROR, RTP_ERROR_NOT_ACCEPTABLE) ||
           g_error_matches (error, RTP_ERROR, RTP_ERROR_NOT_FOUND))
    add_result (r, sv->pv_string, "skipped", error->message);
  else if (error->domain == RTP_ERROR && (error->code == RTP_ERROR_UPSTREAM || error->code == RTP_ERROR_UNCONFIRMED ||
                                          error->code == RTP_ERROR_UNAVAILABLE || error->code == RTP_ERROR_READONLY))
    add_result (r, sv->pv_string, "failed", error->message);
  else
    add_result (r, sv->pv_string, "refused", error->message);
  restore_next (task);
}

/* The saved JSON text as a value to set. FALSE for a value that cannot be set (an array, null). */
static gboolean
setpoint_of (const char *json, RtpSetpointValue *value, char **text)
{
  if (json == NULL)
    return FALSE;
  if (rtp_json_is_number (json, strlen (json)))
    {
      value->kind = RTP_SETPOINT_NUMBER;
      value->number = g_ascii_strtod (json, NULL);
      *text = g_strdup (json);
    }
  else if (json[0] == '"')
    {
      GString *s = g_string_new (NULL);
      rtp_json_append_decoded (s, json, strlen (json));
      value->kind = RTP_SETPOINT_TEXT;
      *text = g_string_free (s, FALSE);
    }
  else if (g_str_equal (json, "true") || g_str_equal (json, "false"))
    {
      value->kind = RTP_SETPOINT_BOOLEAN;
      *text = g_strdup (json);
    }
  else
    return FALSE;
  value->text = *text;
  return TRUE;
}

static void
restore_next (GTask *task)
{
  RtpSnapshots *self = g_task_get_source_object (task);
  RestoreJob *r = g_task_get_task_data (task);

  while (r->next < r->snapshot->values->len)
    {
      const RtpSnapshotValue *sv = g_ptr_array_index (r->snapshot->values, r->next++);
      RtpSetpointValue value = { 0 };
      RtpSetpointOptions options = { .snapshot = r->snapshot->id, .dry_run = r->dry_run };

      if (r->only != NULL && !g_strv_contains ((const char *const *) r->only, sv->pv_string))
        continue;
      g_clear_pointer (&r->text, g_free);
      if (!setpoint_of (sv->value, &value, &r->text))
        {
          add_result (r, sv->pv_string, "skipped",
                      sv->value == NULL ? _ ("No value was saved for this process variable.")
                                        : _ ("The saved value is not one that can be set."));
          continue;
        }
      rtp_setpoints_write_async (self->setpoints, r->caller, r->actor, r->as_admin, sv->pv_string, &value, &options,
                                 NULL, restore_written, task);
      return;
    }
  g_message ("snapshot '%s' of %s %s by %s", r->snapshot->name, r->snapshot->experiment_short_id,
             r->dry_run ? "checked (dry run)" : "restored", r->actor);
  g_task_return_pointer (task, g_ptr_array_ref (r->results), (GDestroyNotify) g_ptr_array_unref);
  g_object_unref (task);
}

void
rtp_snapshots_restore_async (RtpSnapshots *self, const RtpUser *caller, const char *actor, gboolean as_admin,
                             const char *short_id, const char *id, const char *const *pvs, gboolean dry_run,
                             GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  GError *error = NULL;
  RtpSnapshot *s = rtp_snapshots_get (self, short_id, id, &error);
  RestoreJob *r;

  g_task_set_source_tag (task, rtp_snapshots_restore_async);
  if (s == NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  r = g_new0 (RestoreJob, 1);
  r->snapshot = s;
  r->caller = caller != NULL ? rtp_user_copy (caller) : NULL;
  r->actor = g_strdup (actor);
  r->as_admin = as_admin;
  r->only = pvs != NULL ? g_strdupv ((char **) pvs) : NULL;
  r->dry_run = dry_run;
  r->results = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_restore_result_free);
  g_task_set_task_data (task, r, (GDestroyNotify) restore_job_free);
  restore_next (task); /* the task's reference goes with its completion */
}

GPtrArray *
rtp_snapshots_restore_finish (RtpSnapshots *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}
