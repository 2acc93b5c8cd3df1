/* rtp-experiment-store.c: experiments, PVs and assignments
 *
 * An experiment exists only through its PVs: creating a PV creates its experiment (the
 * text before the first ':'), and removing an experiment's last PV — by deleting it or by
 * renaming it to another prefix — removes the experiment, in the same transaction. */
#define G_LOG_DOMAIN "RtpExperimentStore"

#include "rtp-experiment-store.h"
#include "rtp-config-file.h"
#include "rtp-error.h"
#include "rtp-validate.h"
#include "rtp-i18n.h"
#include "rtp-stamp-cache.h"
#include "rtp-user-manager.h"

#include <math.h>
#include <string.h>

#define PV_COLUMNS                                                                                                     \
  "pv_string, human_readable_name, experiment_short_id, available_for_mqtt_publish, default_threshold_min, "           \
  "default_threshold_max"
/* what is read: the columns the original service had, then the guard rails (migration 8) */
#define PV_READ_COLUMNS PV_COLUMNS ", setpoint_min, setpoint_max, setpoint_max_step, readback_pv"

/* load_experiments(): one row per experiment with its PVs and users aggregated (two aggregates from
 * rtp_database_list_agg, then an optional WHERE) */
#define SELECT_EXPERIMENTS                                                                                             \
  "SELECT e.short_id, e.human_readable_name, "                                                                         \
  "(SELECT %s FROM process_variables p WHERE p.experiment_short_id = e.short_id), "                                    \
  "(SELECT %s FROM user_experiments u WHERE u.short_id = e.short_id) FROM experiments e %s ORDER BY e.short_id"

struct _RtpExperimentStore {
  GObject parent_instance;
  RtpDatabase *db;            /* (owned) */
  char *select_all;           /* (owned) load_experiments()'s SQL, built once for the dialect */
  char *select_one;           /* (owned) the same for one short_id */
  RtpStampCache *experiments; /* (owned) short_id → RtpExperiment, read before */
  RtpStampCache *pvs;         /* (owned) pv_string → RtpProcessVariable, read before */
};

G_DEFINE_TYPE (RtpExperimentStore, rtp_experiment_store, G_TYPE_OBJECT)

enum { SIGNAL_PV_DELETING, SIGNAL_PV_RENAMING, SIGNAL_USER_UNASSIGNING, N_SIGNALS };
static guint signals[N_SIGNALS];

/* Emits a hook inside the current transaction; FALSE (with @error) when a handler refused. */
static gboolean
emit_hook (RtpExperimentStore *self, guint signal_id, const char *a, const char *b, GError **error)
{
  GError *hook_error = NULL;

  if (b != NULL)
    g_signal_emit (self, signals[signal_id], 0, a, b, &hook_error);
  else
    g_signal_emit (self, signals[signal_id], 0, a, &hook_error);
  if (hook_error != NULL)
    {
      g_propagate_error (error, hook_error);
      return FALSE;
    }
  return TRUE;
}

void
rtp_experiment_free (RtpExperiment *e)
{
  if (e == NULL)
    return;
  g_free (e->short_id);
  g_free (e->human_readable_name);
  g_ptr_array_unref (e->pv_strings);
  g_ptr_array_unref (e->user_ids);
  g_free (e);
}

RtpExperiment *
rtp_experiment_copy (const RtpExperiment *e)
{
  RtpExperiment *copy = g_new0 (RtpExperiment, 1);

  copy->short_id = g_strdup (e->short_id);
  copy->human_readable_name = g_strdup (e->human_readable_name);
  copy->pv_strings = rtp_str_list_copy (e->pv_strings);
  copy->user_ids = rtp_str_list_copy (e->user_ids);
  return copy;
}

RtpProcessVariable *
rtp_process_variable_copy (const RtpProcessVariable *pv)
{
  RtpProcessVariable *copy = g_memdup2 (pv, sizeof *pv);

  copy->pv_string = g_strdup (pv->pv_string);
  copy->human_readable_name = g_strdup (pv->human_readable_name);
  copy->experiment_short_id = g_strdup (pv->experiment_short_id);
  copy->setpoint_min = g_strdup (pv->setpoint_min);
  copy->setpoint_max = g_strdup (pv->setpoint_max);
  copy->setpoint_max_step = g_strdup (pv->setpoint_max_step);
  copy->readback_pv = g_strdup (pv->readback_pv);
  return copy;
}

gboolean
rtp_process_variable_has_guard_rails (const RtpProcessVariable *pv)
{
  return pv->setpoint_min != NULL || pv->setpoint_max != NULL || pv->setpoint_max_step != NULL;
}

void
rtp_process_variable_free (RtpProcessVariable *pv)
{
  if (pv == NULL)
    return;
  g_free (pv->pv_string);
  g_free (pv->human_readable_name);
  g_free (pv->experiment_short_id);
  g_free (pv->setpoint_min);
  g_free (pv->setpoint_max);
  g_free (pv->setpoint_max_step);
  g_free (pv->readback_pv);
  g_free (pv);
}

void
rtp_import_result_free (RtpImportResult *result)
{
  if (result == NULL)
    return;
  g_ptr_array_unref (result->errors);
  g_free (result);
}

static void
rtp_experiment_store_finalize (GObject *object)
{
  RtpExperimentStore *self = RTP_EXPERIMENT_STORE (object);

  g_clear_object (&self->db);
  g_free (self->select_all);
  g_free (self->select_one);
  rtp_stamp_cache_free (self->experiments);
  rtp_stamp_cache_free (self->pvs);
  G_OBJECT_CLASS (rtp_experiment_store_parent_class)->finalize (object);
}

static void
rtp_experiment_store_class_init (RtpExperimentStoreClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_experiment_store_finalize;
  /**
   * RtpExperimentStore::pv-deleting:
   * @pv_string: the PV about to be deleted (alone or with its experiment)
   * @error: (type gpointer): a `GError **` a handler sets to refuse (the change is rolled back)
   *
   * Emitted inside the deleting transaction.
   */
  signals[SIGNAL_PV_DELETING] = g_signal_new ("pv-deleting", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                                              NULL, NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_POINTER);
  /**
   * RtpExperimentStore::pv-renaming:
   * @from: the old pv_string
   * @to: the new pv_string
   * @error: (type gpointer): a `GError **`
   *
   * Emitted inside the renaming transaction, before the rename.
   */
  signals[SIGNAL_PV_RENAMING] = g_signal_new ("pv-renaming", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                                              NULL, NULL, G_TYPE_NONE, 3, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_POINTER);
  /**
   * RtpExperimentStore::user-unassigning:
   * @user_id: the user about to be removed from the experiment
   * @short_id: the experiment
   * @error: (type gpointer): a `GError **`
   *
   * Emitted inside the transaction, before the assignment goes (what the user may only have
   * while assigned, such as subscriptions to the experiment's PVs, goes with it).
   */
  signals[SIGNAL_USER_UNASSIGNING] = g_signal_new ("user-unassigning", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                                   NULL, NULL, NULL, G_TYPE_NONE, 3, G_TYPE_STRING, G_TYPE_STRING,
                                                   G_TYPE_POINTER);
}

static void
rtp_experiment_store_init (RtpExperimentStore *self)
{
}

RtpExperimentStore *
rtp_experiment_store_new (RtpDatabase *db)
{
  RtpExperimentStore *self = g_object_new (RTP_TYPE_EXPERIMENT_STORE, NULL);
  g_autofree char *pvs = rtp_database_list_agg (db, "pv_string");
  g_autofree char *users = rtp_database_list_agg (db, "user_id");

  self->db = g_object_ref (db);
  self->select_all = g_strdup_printf (SELECT_EXPERIMENTS, pvs, users, "");
  self->select_one = g_strdup_printf (SELECT_EXPERIMENTS, pvs, users, "WHERE e.short_id = :only");
  self->experiments = rtp_stamp_cache_new (db, (GBoxedCopyFunc) rtp_experiment_copy,
                                           (GDestroyNotify) rtp_experiment_free);
  self->pvs = rtp_stamp_cache_new (db, (GBoxedCopyFunc) rtp_process_variable_copy,
                                   (GDestroyNotify) rtp_process_variable_free);
  /* every MQTT value is checked against its PV: a lab's thousands of PVs all kept */
  rtp_stamp_cache_set_max (self->pvs, 65536);
  return self;
}

/* ---- helpers ---------------------------------------------------------------- */

static gboolean
not_found (GError **error, const char *type, const char *id)
{
  g_propagate_error (error, rtp_error_new_not_found (type, id));
  return FALSE;
}

static gboolean
type_error (GError **error)
{
  g_propagate_error (error, rtp_error_new_wrong_type ());
  return FALSE;
}

char *
rtp_pv_short_id (const char *pv_string, GError **error)
{
  const char *colon = pv_string != NULL ? strchr (pv_string, ':') : NULL;

  if (colon == NULL || colon == pv_string)
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                   _ ("pv_string: The pv_string (%s) must start with the experiment's short_id followed by ':'."),
                   pv_string != NULL ? pv_string : "");
      return NULL;
    }
  return g_strndup (pv_string, (gsize) (colon - pv_string));
}

static gboolean
validate_pv_string (const char *pv_string, GError **error)
{
  g_autofree char *short_id = NULL;

  if (!rtp_validate_text ("pv_string", pv_string, 100, error))
    return FALSE;
  short_id = rtp_pv_short_id (pv_string, error);
  if (short_id == NULL)
    return FALSE;
  if (!rtp_pv_name_is_epics (pv_string))
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                   _ ("pv_string: The pv_string (%s) contains characters that EPICS PV names do not allow."),
                   pv_string);
      return FALSE;
    }
  return TRUE;
}

static gboolean
publish_refused (const char *pv_string, GError **error)
{
  g_set_error (
    error, RTP_ERROR, RTP_ERROR_INVALID,
    _ (
      "available_for_mqtt_publish: The process variable (%s) cannot be published: its name holds '+', a wildcard in MQTT topics."),
    pv_string);
  return FALSE;
}

static RtpProcessVariable *
pv_from_row (GdaDataModel *model, guint row)
{
  RtpProcessVariable *pv = g_new0 (RtpProcessVariable, 1);

  pv->pv_string = g_strdup (rtp_db_str (model, row, 0));
  pv->human_readable_name = g_strdup (rtp_db_str (model, row, 1));
  pv->experiment_short_id = g_strdup (rtp_db_str (model, row, 2));
  pv->available_for_mqtt_publish = rtp_db_int0 (model, row, 3) != 0;
  pv->has_threshold_min = rtp_db_int (model, row, 4, &pv->threshold_min);
  pv->has_threshold_max = rtp_db_int (model, row, 5, &pv->threshold_max);
  pv->setpoint_min = g_strdup (rtp_db_str (model, row, 6));
  pv->setpoint_max = g_strdup (rtp_db_str (model, row, 7));
  pv->setpoint_max_step = g_strdup (rtp_db_str (model, row, 8));
  pv->readback_pv = g_strdup (rtp_db_str (model, row, 9));
  return pv;
}

static gboolean
row_exists (RtpExperimentStore *self, const char *sql, const char *a, const char *b, gboolean *exists, GError **error)
{
  gint64 n = rtp_database_select_int (self->db, error, sql, "a", RTP_DB_STR, a, "b", RTP_DB_STR, b, NULL);
  if (n < 0)
    return FALSE;
  *exists = n > 0;
  return TRUE;
}

/* libgda's parser cannot render INSERT … SELECT … WHERE NOT EXISTS: look first, then insert
 * (inside the caller's transaction; a concurrent insert ends as EXISTS, reported by the caller). */
static gboolean
ensure_experiment (RtpExperimentStore *self, const char *short_id, GError **error)
{
  gboolean exists = FALSE;

  if (!row_exists (self, "SELECT COUNT(*) FROM experiments WHERE short_id = :a", short_id, NULL, &exists, error))
    return FALSE;
  if (exists)
    return TRUE;
  return rtp_database_exec (self->db, error,
                            "INSERT INTO experiments (short_id, human_readable_name) VALUES (:id, NULL)", "id",
                            RTP_DB_STR, short_id, NULL) >= 0;
}

/* Removes @short_id when no PV is left in it; @removed tells whether it was. */
static gboolean
remove_if_empty (RtpExperimentStore *self, const char *short_id, gboolean *removed, GError **error)
{
  gboolean has_pvs = TRUE;

  *removed = FALSE;
  if (!row_exists (self, "SELECT COUNT(*) FROM process_variables WHERE experiment_short_id = :a", short_id, NULL,
                   &has_pvs, error))
    return FALSE;
  if (has_pvs)
    return TRUE;
  if (rtp_database_exec (self->db, error, "DELETE FROM experiments WHERE short_id = :id", "id", RTP_DB_STR, short_id,
                         NULL) < 0)
    return FALSE;
  *removed = TRUE;
  g_message ("experiment '%s' removed with its last process variable", short_id);
  return TRUE;
}

/* ---- experiments ---------------------------------------------------------------- */

static GPtrArray *
load_experiments (RtpExperimentStore *self, const char *only, GError **error)
{
  g_autoptr (GdaDataModel)
    exps = rtp_database_select (self->db, error, only != NULL ? self->select_one : self->select_all, "only", RTP_DB_STR,
                                only, NULL);
  g_autoptr (GPtrArray) out = NULL;

  if (exps == NULL)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_experiment_free);
  for (guint i = 0; i < rtp_db_rows (exps); i++)
    {
      RtpExperiment *e = g_new0 (RtpExperiment, 1);
      e->short_id = g_strdup (rtp_db_str (exps, i, 0));
      e->human_readable_name = g_strdup (rtp_db_str (exps, i, 1));
      e->pv_strings = rtp_db_str_list (exps, i, 2);
      e->user_ids = rtp_db_str_list (exps, i, 3);
      g_ptr_array_add (out, e);
    }
  return g_steal_pointer (&out);
}

GPtrArray *
rtp_experiment_store_list_experiments (RtpExperimentStore *self, GError **error)
{
  return load_experiments (self, NULL, error);
}

RtpExperiment *
rtp_experiment_store_get_experiment (RtpExperimentStore *self, const char *short_id, GError **error)
{
  guint64 stamp;
  RtpExperiment *experiment = rtp_stamp_cache_lookup (self->experiments, short_id, &stamp);
  g_autoptr (GPtrArray) list = NULL;

  if (experiment != NULL)
    return experiment;
  list = load_experiments (self, short_id, error);
  if (list == NULL)
    return NULL;
  if (list->len == 0)
    return not_found (error, _ ("experiment"), short_id), NULL;
  experiment = g_ptr_array_steal_index (list, 0);
  rtp_stamp_cache_store (self->experiments, stamp, short_id, experiment);
  return experiment;
}

static gboolean
user_exists (RtpExperimentStore *self, const char *user_id, gboolean *exists, GError **error)
{
  return row_exists (self, "SELECT COUNT(*) FROM users WHERE user_id = :a", user_id, NULL, exists, error);
}

static gboolean
assignment_exists (RtpExperimentStore *self, const char *user_id, const char *short_id, gboolean *assigned,
                   GError **error)
{
  return row_exists (self, "SELECT COUNT(*) FROM user_experiments WHERE user_id = :a AND short_id = :b", user_id,
                     short_id, assigned, error);
}

gboolean
rtp_experiment_store_assign (RtpExperimentStore *self, const char *short_id, const char *user_id, GError **error)
{
  gboolean assigned = FALSE;

  if (!assignment_exists (self, user_id, short_id, &assigned, error))
    return FALSE;
  if (assigned)
    return TRUE;
  return rtp_database_exec (self->db, error, "INSERT INTO user_experiments (user_id, short_id) VALUES (:u, :e)", "u",
                            RTP_DB_STR, user_id, "e", RTP_DB_STR, short_id, NULL) >= 0;
}

/* users_to_add / users_to_remove: each known user is (un)assigned, each unknown one explained. */
static gboolean
change_assignments (RtpExperimentStore *self, const char *short_id, const char *const *user_ids, gboolean adding,
                    GPtrArray *field_errors, GError **error)
{
  for (guint i = 0; user_ids != NULL && user_ids[i] != NULL; i++)
    {
      const char *user_id = user_ids[i];
      gboolean exists = FALSE;

      if (!user_exists (self, user_id, &exists, error))
        return FALSE;
      if (!exists)
        g_ptr_array_add (
          field_errors,
          adding
            ? g_strdup_printf (
                _ ("users_to_add: The user (%s) does not exist and therefore cannot be added to the experiment."),
                user_id)
            : g_strdup_printf (
                _ ("users_to_remove: The user (%s) does not exist and therefore cannot be removed from the experiment."),
                user_id));
      else if (adding ? !rtp_experiment_store_assign (self, short_id, user_id, error)
                      : (!emit_hook (self, SIGNAL_USER_UNASSIGNING, user_id, short_id, error) ||
                         rtp_database_exec (self->db, error,
                                            "DELETE FROM user_experiments WHERE user_id = :u AND short_id = :e", "u",
                                            RTP_DB_STR, user_id, "e", RTP_DB_STR, short_id, NULL) < 0))
        return FALSE;
    }
  return TRUE;
}

/**
 * rtp_experiment_store_update_experiment:
 * @field_errors: (element-type utf8): receives one message per refused key
 *
 * Applies every valid key of @changes in one transaction.
 */
RtpExperiment *
rtp_experiment_store_update_experiment (RtpExperimentStore *self, const char *short_id,
                                        const RtpExperimentChanges *changes, GPtrArray *field_errors, GError **error)
{
  g_autoptr (RtpTransaction) tx = NULL;
  g_autoptr (RtpExperiment) existing = NULL;

  g_return_val_if_fail (RTP_IS_EXPERIMENT_STORE (self), NULL);
  g_return_val_if_fail (short_id != NULL && changes != NULL && field_errors != NULL, NULL);

  if (changes->name_state == RTP_FIELD_WRONG_TYPE ||
      (changes->users_to_add_state != RTP_FIELD_ABSENT && changes->users_to_add_state != RTP_FIELD_SET) ||
      (changes->users_to_remove_state != RTP_FIELD_ABSENT && changes->users_to_remove_state != RTP_FIELD_SET))
    return type_error (error), NULL;

  tx = rtp_database_begin_transaction (self->db, error);
  if (tx == NULL)
    return NULL;
  existing = rtp_experiment_store_get_experiment (self, short_id, error);
  if (existing == NULL)
    return NULL;

  if (changes->short_id_state != RTP_FIELD_ABSENT &&
      !(changes->short_id_state == RTP_FIELD_SET && g_strcmp0 (changes->short_id, short_id) == 0))
    g_ptr_array_add (
      field_errors,
      g_strdup (_ (
        "short_id: The short_id cannot be changed at the moment. Edit the individual process variables to create a new experiment with a new short_id!")));

  if (changes->name_state != RTP_FIELD_ABSENT)
    {
      const char *value = changes->name_state == RTP_FIELD_SET ? changes->human_readable_name : NULL;
      g_autoptr (GError) e = NULL;
      if (value != NULL && !rtp_validate_text ("human_readable_name", value, 100, &e))
        g_ptr_array_add (field_errors, g_strdup (e->message));
      else if (rtp_database_exec (self->db, error,
                                  "UPDATE experiments SET human_readable_name = :n WHERE short_id = :id", "n",
                                  RTP_DB_STR, value, "id", RTP_DB_STR, short_id, NULL) < 0)
        return NULL;
    }
  if (!change_assignments (self, short_id, changes->users_to_add, TRUE, field_errors, error) ||
      !change_assignments (self, short_id, changes->users_to_remove, FALSE, field_errors, error))
    return NULL;
  if (!rtp_transaction_commit (tx, error))
    return NULL;
  return rtp_experiment_store_get_experiment (self, short_id, error);
}

/**
 * rtp_experiment_store_delete_experiment:
 *
 * Deletes the experiment with all its PVs (and what refers to them) and assignments.
 *
 * Returns: (transfer full) (element-type utf8): the deleted pv_strings
 */
GPtrArray *
rtp_experiment_store_delete_experiment (RtpExperimentStore *self, const char *short_id, GError **error)
{
  g_autoptr (RtpTransaction) tx = NULL;
  g_autoptr (RtpExperiment) existing = NULL;

  tx = rtp_database_begin_transaction (self->db, error);
  if (tx == NULL)
    return NULL;
  existing = rtp_experiment_store_get_experiment (self, short_id, error);
  if (existing == NULL)
    return NULL;
  for (guint i = 0; i < existing->pv_strings->len; i++)
    if (!emit_hook (self, SIGNAL_PV_DELETING, g_ptr_array_index (existing->pv_strings, i), NULL, error))
      return NULL;
  if (rtp_database_exec (self->db, error, "DELETE FROM process_variables WHERE experiment_short_id = :id", "id",
                         RTP_DB_STR, short_id, NULL) < 0 ||
      rtp_database_exec (self->db, error, "DELETE FROM experiments WHERE short_id = :id", "id", RTP_DB_STR, short_id,
                         NULL) < 0 ||
      !rtp_transaction_commit (tx, error))
    return NULL;
  g_message ("experiment '%s' deleted with %u process variables", short_id, existing->pv_strings->len);
  return g_ptr_array_ref (existing->pv_strings);
}

/* ---- assignments ---------------------------------------------------------------- */

/**
 * rtp_experiment_store_is_assigned:
 *
 * Whether @user is assigned to the experiment: from the assignments read with the user (the
 * token check's user is as current as a query made now), else from the database.
 */
gboolean
rtp_experiment_store_is_assigned (RtpExperimentStore *self, const RtpUser *user, const char *short_id,
                                  gboolean *assigned, GError **error)
{
  return rtp_user_get_assigned (user, short_id, assigned) ||
         assignment_exists (self, user->user_id, short_id, assigned, error);
}

gboolean
rtp_experiment_store_check_access (RtpExperimentStore *self, const RtpUser *user, const char *short_id,
                                   RtpAccess access, GError **error)
{
  gboolean assigned = FALSE;

  if (access == RTP_ACCESS_READ && rtp_user_is_admin (user))
    return TRUE;
  if (!rtp_experiment_store_is_assigned (self, user, short_id, &assigned, error))
    return FALSE;
  if (assigned)
    return TRUE;
  switch (access)
    {
      case RTP_ACCESS_READ:
        g_set_error_literal (error, RTP_ERROR, RTP_ERROR_FORBIDDEN,
                             _ ("Only users that are assigned to the experiment and admins can access it."));
        break;
      case RTP_ACCESS_WATCH:
        g_set_error_literal (error, RTP_ERROR, RTP_ERROR_FORBIDDEN,
                             _ ("Only users that are assigned to the experiment can access it."));
        break;
      case RTP_ACCESS_SET:
      default:
        g_set_error_literal (
          error, RTP_ERROR, RTP_ERROR_FORBIDDEN,
          _ ("Process variable data can only be overwritten by users assigned to the associated experiment."));
        break;
    }
  return FALSE;
}

gboolean
rtp_experiment_store_count (RtpExperimentStore *self, guint *experiments, guint *pvs, GError **error)
{
  gint64 e = rtp_database_select_int (self->db, error, "SELECT COUNT(*) FROM experiments", NULL);
  gint64 p = e >= 0 ? rtp_database_select_int (self->db, error, "SELECT COUNT(*) FROM process_variables", NULL) : -1;

  if (p < 0)
    return FALSE;
  *experiments = (guint) e;
  *pvs = (guint) p;
  return TRUE;
}

/* ---- process variables ---------------------------------------------------------------- */

GPtrArray *
rtp_experiment_store_list_pvs (RtpExperimentStore *self, const char *short_id, GError **error)
{
  g_autoptr (GdaDataModel) m = rtp_database_select (
    self->db, error,
    "SELECT " PV_READ_COLUMNS
    " FROM process_variables WHERE COALESCE(:e, experiment_short_id) = experiment_short_id ORDER BY pv_string",
    "e", RTP_DB_STR, short_id, NULL);
  GPtrArray *out;

  if (m == NULL)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_process_variable_free);
  for (guint i = 0; i < rtp_db_rows (m); i++)
    g_ptr_array_add (out, pv_from_row (m, i));
  return out;
}

RtpProcessVariable *
rtp_experiment_store_get_pv (RtpExperimentStore *self, const char *pv_string, GError **error)
{
  guint64 stamp;
  RtpProcessVariable *pv = rtp_stamp_cache_lookup (self->pvs, pv_string, &stamp);
  g_autoptr (GdaDataModel) m = NULL;

  if (pv != NULL)
    return pv;
  m = rtp_database_select (self->db, error, "SELECT " PV_READ_COLUMNS " FROM process_variables WHERE pv_string = :pv",
                           "pv", RTP_DB_STR, pv_string, NULL);
  if (m == NULL)
    return NULL;
  if (rtp_db_rows (m) == 0)
    return not_found (error, _ ("process variable"), pv_string), NULL;
  pv = pv_from_row (m, 0);
  rtp_stamp_cache_store (self->pvs, stamp, pv_string, pv);
  return pv;
}

/**
 * rtp_experiment_store_has_pv:
 *
 * Returns: whether @pv_string exists (a database error counts as no), without copying the PV when
 * it is kept: every MQTT value asks.
 */
gboolean
rtp_experiment_store_has_pv (RtpExperimentStore *self, const char *pv_string)
{
  g_autoptr (RtpProcessVariable) pv = NULL;

  if (rtp_stamp_cache_contains (self->pvs, pv_string))
    return TRUE;
  pv = rtp_experiment_store_get_pv (self, pv_string, NULL);
  return pv != NULL;
}

/* The settable fields of a PV; what is not "set" stays as it is (or default on creation). */
typedef struct {
  gboolean set_name;
  const char *name; /* (nullable) */
  gboolean set_publish;
  gboolean publish;
  gboolean set_min;
  const gint64 *min; /* (nullable) */
  gint64 min_value;
  gboolean set_max;
  const gint64 *max;
  gint64 max_value;
  /* guard rails: the number texts (NULL: the rule goes) */
  gboolean set_rails[4]; /* setpoint_min, setpoint_max, setpoint_max_step, readback_pv */
  const char *rails[4];
  char rail_text[3][G_ASCII_DTOSTR_BUF_SIZE];
} PvFields;

static const char *const rail_columns[4] = { "setpoint_min", "setpoint_max", "setpoint_max_step", "readback_pv" };

static gboolean
pv_exists (RtpExperimentStore *self, const char *pv_string, gboolean *exists, GError **error)
{
  return row_exists (self, "SELECT COUNT(*) FROM process_variables WHERE pv_string = :a", pv_string, NULL, exists,
                     error);
}

/* Inserts a new PV (and its experiment). Runs inside the caller's transaction. */
static gboolean
insert_pv (RtpExperimentStore *self, const char *pv_string, const PvFields *f, GError **error)
{
  g_autofree char *short_id = rtp_pv_short_id (pv_string, error);

  if (short_id == NULL || !ensure_experiment (self, short_id, error))
    return FALSE;
  return rtp_database_exec (self->db, error,
                            "INSERT INTO process_variables (" PV_COLUMNS ") VALUES (:pv, :name, :e, :pub, :min, :max)",
                            "pv", RTP_DB_STR, pv_string, "name", RTP_DB_STR, f->set_name ? f->name : NULL, "e",
                            RTP_DB_STR, short_id, "pub", RTP_DB_BOOL, f->set_publish ? f->publish : FALSE, "min",
                            RTP_DB_INT_NULL, f->set_min ? f->min : NULL, "max", RTP_DB_INT_NULL,
                            f->set_max ? f->max : NULL, NULL) >= 0;
}

/* Updates the set fields of an existing PV. Runs inside the caller's transaction. */
static gboolean
update_pv_fields (RtpExperimentStore *self, const char *pv_string, const PvFields *f, GError **error)
{
  if (f->set_name &&
      rtp_database_exec (self->db, error, "UPDATE process_variables SET human_readable_name = :v WHERE pv_string = :pv",
                         "v", RTP_DB_STR, f->name, "pv", RTP_DB_STR, pv_string, NULL) < 0)
    return FALSE;
  if (f->set_publish &&
      rtp_database_exec (self->db, error,
                         "UPDATE process_variables SET available_for_mqtt_publish = :v WHERE pv_string = :pv", "v",
                         RTP_DB_BOOL, f->publish, "pv", RTP_DB_STR, pv_string, NULL) < 0)
    return FALSE;
  if (f->set_min && rtp_database_exec (self->db, error,
                                       "UPDATE process_variables SET default_threshold_min = :v WHERE pv_string = :pv",
                                       "v", RTP_DB_INT_NULL, f->min, "pv", RTP_DB_STR, pv_string, NULL) < 0)
    return FALSE;
  if (f->set_max && rtp_database_exec (self->db, error,
                                       "UPDATE process_variables SET default_threshold_max = :v WHERE pv_string = :pv",
                                       "v", RTP_DB_INT_NULL, f->max, "pv", RTP_DB_STR, pv_string, NULL) < 0)
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (rail_columns); i++)
    {
      g_autofree char *sql = NULL;
      if (!f->set_rails[i])
        continue;
      sql = g_strdup_printf ("UPDATE process_variables SET %s = :v WHERE pv_string = :pv", rail_columns[i]);
      if (rtp_database_exec (self->db, error, sql, "v", RTP_DB_STR, f->rails[i], "pv", RTP_DB_STR, pv_string, NULL) < 0)
        return FALSE;
    }
  return TRUE;
}

static gboolean update_pv_fields (RtpExperimentStore *self, const char *pv_string, const PvFields *f, GError **error);

/* Only the guard rails of @f (after an insert, which writes the other columns). */
static gboolean
update_pv_rails (RtpExperimentStore *self, const char *pv_string, const PvFields *f, GError **error)
{
  PvFields rails = { 0 };

  memcpy (rails.set_rails, f->set_rails, sizeof rails.set_rails);
  memcpy ((void *) rails.rails, f->rails, sizeof rails.rails);
  return update_pv_fields (self, pv_string, &rails, error);
}

/* The shortest text that reads back as @v ("1200", not "1200.0000000000002" nor "1.2e3"). */
static void
number_text (double v, char buf[G_ASCII_DTOSTR_BUF_SIZE])
{
  for (int digits = 15; digits <= 17; digits++)
    {
      char fmt[8];
      g_snprintf (fmt, sizeof fmt, "%%.%dg", digits);
      g_ascii_formatd (buf, G_ASCII_DTOSTR_BUF_SIZE, fmt, v);
      if (g_ascii_strtod (buf, NULL) == v)
        return;
    }
}

/* Reads the guard rails of @fields into @f: their messages go to @field_errors (or, when it is NULL,
 * the first one to @error). @existing (nullable) holds the rules that stay. */
static gboolean
read_rails (const RtpPvFields *fields, const RtpProcessVariable *existing, PvFields *f, GPtrArray *field_errors,
            GError **error)
{
  const RtpFieldState states[3] = { fields->setpoint_min_state, fields->setpoint_max_state,
                                    fields->setpoint_max_step_state };
  const double values[3] = { fields->setpoint_min, fields->setpoint_max, fields->setpoint_max_step };
  g_autoptr (GPtrArray) messages = g_ptr_array_new_with_free_func (g_free);
  double min = -G_MAXDOUBLE, max = G_MAXDOUBLE;
  gboolean have_min = FALSE, have_max = FALSE;

  for (guint i = 0; i < 3; i++)
    {
      if (states[i] == RTP_FIELD_ABSENT)
        continue;
      if (states[i] == RTP_FIELD_WRONG_TYPE || (states[i] == RTP_FIELD_SET && !isfinite (values[i])) ||
          (i == 2 && states[i] == RTP_FIELD_SET && values[i] <= 0))
        {
          g_ptr_array_add (messages, i == 2
                                       ? g_strdup (_ ("setpoint_max_step: Value must be a number above 0, or null."))
                                       : g_strdup_printf (_ ("%s: Value must be a number, or null."), rail_columns[i]));
          continue;
        }
      f->set_rails[i] = TRUE;
      if (states[i] == RTP_FIELD_SET)
        {
          number_text (values[i], f->rail_text[i]);
          f->rails[i] = f->rail_text[i];
        }
    }
  if (fields->readback_pv_state != RTP_FIELD_ABSENT)
    {
      if (fields->readback_pv_state == RTP_FIELD_WRONG_TYPE ||
          (fields->readback_pv_state == RTP_FIELD_SET && !validate_pv_string (fields->readback_pv, NULL)))
        g_ptr_array_add (messages, g_strdup (_ ("readback_pv: Value must be a process variable name, or null.")));
      else
        {
          f->set_rails[3] = TRUE;
          f->rails[3] = fields->readback_pv_state == RTP_FIELD_SET ? fields->readback_pv : NULL;
        }
    }
  /* the range as it will be: what was given, else what stays */
  if (f->set_rails[0] ? f->rails[0] != NULL : existing != NULL && existing->setpoint_min != NULL)
    {
      min = g_ascii_strtod (f->set_rails[0] ? f->rails[0] : existing->setpoint_min, NULL);
      have_min = TRUE;
    }
  if (f->set_rails[1] ? f->rails[1] != NULL : existing != NULL && existing->setpoint_max != NULL)
    {
      max = g_ascii_strtod (f->set_rails[1] ? f->rails[1] : existing->setpoint_max, NULL);
      have_max = TRUE;
    }
  if (have_min && have_max && min > max && (f->set_rails[0] || f->set_rails[1]))
    {
      g_ptr_array_add (messages, g_strdup (_ ("setpoint_max: Value must not be below setpoint_min.")));
      f->set_rails[0] = f->set_rails[1] = FALSE;
    }
  if (messages->len == 0)
    return TRUE;
  if (field_errors != NULL)
    {
      for (guint i = 0; i < messages->len; i++)
        g_ptr_array_add (field_errors, g_strdup (g_ptr_array_index (messages, i)));
      return TRUE;
    }
  g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID, g_ptr_array_index (messages, 0));
  return FALSE;
}

/* A threshold as given: a number, or none (null). FALSE for any other type. */
static gboolean
read_threshold (RtpFieldState state, gint64 value, const gint64 **target, gint64 *storage)
{
  if (state == RTP_FIELD_NULL)
    {
      *target = NULL;
      return TRUE;
    }
  if (state != RTP_FIELD_SET)
    return FALSE;
  *storage = value;
  *target = storage;
  return TRUE;
}

RtpProcessVariable *
rtp_experiment_store_create_pv (RtpExperimentStore *self, const RtpPvFields *fields, GError **error)
{
  g_autoptr (RtpTransaction) tx = NULL;
  PvFields f = { 0 };
  const char *pv_string;
  gboolean exists = FALSE;

  g_return_val_if_fail (RTP_IS_EXPERIMENT_STORE (self), NULL);
  g_return_val_if_fail (fields != NULL, NULL);

  if (fields->pv_string_state == RTP_FIELD_ABSENT || fields->pv_string_state == RTP_FIELD_NULL)
    {
      g_set_error_literal (
        error, RTP_ERROR, RTP_ERROR_INVALID,
        _ (
          "No pv_string was specified. To create a process variable, you must provide a pv_string because it serves as primary_key."));
      return NULL;
    }
  if (fields->pv_string_state != RTP_FIELD_SET || fields->name_state == RTP_FIELD_WRONG_TYPE ||
      (fields->publish_state != RTP_FIELD_ABSENT && fields->publish_state != RTP_FIELD_SET) ||
      (fields->threshold_min_state != RTP_FIELD_ABSENT &&
       !read_threshold (fields->threshold_min_state, fields->default_threshold_min, &f.min, &f.min_value)) ||
      (fields->threshold_max_state != RTP_FIELD_ABSENT &&
       !read_threshold (fields->threshold_max_state, fields->default_threshold_max, &f.max, &f.max_value)))
    return type_error (error), NULL;
  pv_string = fields->pv_string;
  if (!validate_pv_string (pv_string, error))
    return NULL;
  f.publish = fields->publish_state == RTP_FIELD_SET && fields->available_for_mqtt_publish;
  if (f.publish && !rtp_pv_name_is_mqtt_safe (pv_string))
    return publish_refused (pv_string, error), NULL;
  f.set_name = fields->name_state != RTP_FIELD_ABSENT;
  f.name = fields->name_state == RTP_FIELD_SET ? fields->human_readable_name : NULL;
  if (f.name != NULL && !rtp_validate_text ("human_readable_name", f.name, 100, error))
    return NULL;
  f.set_publish = fields->publish_state != RTP_FIELD_ABSENT;
  f.set_min = fields->threshold_min_state != RTP_FIELD_ABSENT;
  f.set_max = fields->threshold_max_state != RTP_FIELD_ABSENT;
  if (!read_rails (fields, NULL, &f, NULL, error))
    return NULL;

  tx = rtp_database_begin_transaction (self->db, error);
  if (tx == NULL)
    return NULL;
  if (!pv_exists (self, pv_string, &exists, error))
    return NULL;
  if (exists)
    {
      g_propagate_error (error, rtp_error_new_exists (_ ("process variable"), pv_string));
      return NULL;
    }
  if (!insert_pv (self, pv_string, &f, error))
    {
      if (g_error_matches (*error, RTP_ERROR, RTP_ERROR_EXISTS))
        {
          g_clear_error (error);
          g_propagate_error (error, rtp_error_new_exists (_ ("process variable"), pv_string));
        }
      return NULL;
    }
  if (!update_pv_rails (self, pv_string, &f, error) || !rtp_transaction_commit (tx, error))
    return NULL;
  g_message ("process variable '%s' created", pv_string);
  return rtp_experiment_store_get_pv (self, pv_string, error);
}

/* Renames @from to @to, moving it to @to's experiment; runs inside the caller's transaction. */
static gboolean
rename_pv (RtpExperimentStore *self, const char *from, const char *to, GError **error)
{
  g_autofree char *old_short = rtp_pv_short_id (from, NULL);
  g_autofree char *new_short = rtp_pv_short_id (to, error);
  gboolean exists = FALSE;
  gboolean removed = FALSE;

  if (new_short == NULL)
    return FALSE;
  if (!pv_exists (self, to, &exists, error))
    return FALSE;
  if (exists)
    {
      g_propagate_error (error, rtp_error_new_exists (_ ("process variable"), to));
      return FALSE;
    }
  if (!emit_hook (self, SIGNAL_PV_RENAMING, from, to, error))
    return FALSE;
  if (!ensure_experiment (self, new_short, error) ||
      rtp_database_exec (
        self->db, error,
        "UPDATE process_variables SET pv_string = :to, experiment_short_id = :e WHERE pv_string = :from", "to",
        RTP_DB_STR, to, "e", RTP_DB_STR, new_short, "from", RTP_DB_STR, from, NULL) < 0)
    return FALSE;
  if (old_short != NULL && !remove_if_empty (self, old_short, &removed, error))
    return FALSE;
  g_message ("process variable '%s' renamed to '%s'", from, to);
  return TRUE;
}

/**
 * rtp_experiment_store_update_pv:
 * @field_errors: (element-type utf8): receives one message per refused key
 *
 * Applies every valid key; a rename (`pv_string`) onto an existing PV fails the whole
 * request with RTP_ERROR_EXISTS, a rename without a short_id with RTP_ERROR_INVALID.
 */
RtpProcessVariable *
rtp_experiment_store_update_pv (RtpExperimentStore *self, const char *pv_string, const RtpPvFields *changes,
                                GPtrArray *field_errors, GError **error)
{
  g_autoptr (RtpTransaction) tx = NULL;
  g_autoptr (RtpProcessVariable) existing = NULL;
  const char *rename_to = changes->pv_string_state == RTP_FIELD_SET ? changes->pv_string : NULL;
  const char *new_name = NULL;
  PvFields f = { 0 };

  g_return_val_if_fail (RTP_IS_EXPERIMENT_STORE (self), NULL);
  g_return_val_if_fail (pv_string != NULL && field_errors != NULL, NULL);

  if (changes->pv_string_state == RTP_FIELD_NULL || changes->pv_string_state == RTP_FIELD_WRONG_TYPE)
    return type_error (error), NULL;
  if (changes->name_state == RTP_FIELD_WRONG_TYPE)
    return type_error (error), NULL;

  tx = rtp_database_begin_transaction (self->db, error);
  if (tx == NULL)
    return NULL;
  existing = rtp_experiment_store_get_pv (self, pv_string, error);
  if (existing == NULL)
    return NULL;

  if (changes->name_state != RTP_FIELD_ABSENT)
    {
      g_autoptr (GError) e = NULL;
      const char *v = changes->name_state == RTP_FIELD_SET ? changes->human_readable_name : NULL;
      if (v != NULL && !rtp_validate_text ("human_readable_name", v, 100, &e))
        g_ptr_array_add (field_errors, g_strdup (e->message));
      else
        {
          f.set_name = TRUE;
          f.name = v;
        }
    }
  if (changes->publish_state != RTP_FIELD_ABSENT)
    {
      g_autoptr (GError) e = NULL;
      const char *target = rename_to != NULL ? rename_to : pv_string;
      if (changes->publish_state != RTP_FIELD_SET)
        g_ptr_array_add (field_errors,
                         g_strdup (_ ("available_for_mqtt_publish: Value must be either true or false.")));
      else if (changes->available_for_mqtt_publish && !rtp_pv_name_is_mqtt_safe (target))
        {
          publish_refused (target, &e);
          g_ptr_array_add (field_errors, g_strdup (e->message));
        }
      else
        {
          f.set_publish = TRUE;
          f.publish = changes->available_for_mqtt_publish;
        }
    }
  if (changes->threshold_min_state != RTP_FIELD_ABSENT)
    {
      if (!read_threshold (changes->threshold_min_state, changes->default_threshold_min, &f.min, &f.min_value))
        g_ptr_array_add (field_errors, g_strdup (_ ("default_threshold_min: Value must be Integer.")));
      else
        f.set_min = TRUE;
    }
  if (changes->threshold_max_state != RTP_FIELD_ABSENT)
    {
      if (!read_threshold (changes->threshold_max_state, changes->default_threshold_max, &f.max, &f.max_value))
        g_ptr_array_add (field_errors, g_strdup (_ ("default_threshold_max: Value must be Integer.")));
      else
        f.set_max = TRUE;
    }
  read_rails (changes, existing, &f, field_errors, NULL);
  if (changes->experiment_state != RTP_FIELD_ABSENT)
    {
      gboolean same = changes->experiment_state == RTP_FIELD_SET &&
                      g_strcmp0 (changes->experiment_short_id, existing->experiment_short_id) == 0;
      if (!same)
        g_ptr_array_add (
          field_errors,
          g_strdup (_ (
            "experiment_short_id: The experiment_short_id cannot be changed manually as it is generated from the pv_string. Change the characters in the pv_string before the first colon to change the short_id and thus assign the pv_string to a new experiment.")));
    }

  if (!update_pv_fields (self, pv_string, &f, error))
    return NULL;
  new_name = pv_string;
  if (rename_to != NULL && !g_str_equal (rename_to, pv_string))
    {
      gboolean publishable = f.set_publish ? f.publish : existing->available_for_mqtt_publish;
      new_name = rename_to;
      if (!validate_pv_string (new_name, error))
        return NULL;
      if (publishable && !rtp_pv_name_is_mqtt_safe (new_name))
        {
          publish_refused (new_name, error);
          return NULL;
        }
      if (!rename_pv (self, pv_string, new_name, error))
        return NULL;
    }
  if (!rtp_transaction_commit (tx, error))
    return NULL;
  return rtp_experiment_store_get_pv (self, new_name, error);
}

/**
 * rtp_experiment_store_delete_pv:
 * @deleted_experiment: (out) (nullable): the experiment removed with its last PV, or NULL
 *
 * Returns: (transfer full): the deleted PV
 */
RtpProcessVariable *
rtp_experiment_store_delete_pv (RtpExperimentStore *self, const char *pv_string, char **deleted_experiment,
                                GError **error)
{
  g_autoptr (RtpTransaction) tx = NULL;
  g_autoptr (RtpProcessVariable) existing = NULL;
  gboolean removed = FALSE;

  *deleted_experiment = NULL;
  tx = rtp_database_begin_transaction (self->db, error);
  if (tx == NULL)
    return NULL;
  existing = rtp_experiment_store_get_pv (self, pv_string, error);
  if (existing == NULL)
    return NULL;
  if (!emit_hook (self, SIGNAL_PV_DELETING, pv_string, NULL, error) ||
      rtp_database_exec (self->db, error, "DELETE FROM process_variables WHERE pv_string = :pv", "pv", RTP_DB_STR,
                         pv_string, NULL) < 0 ||
      !remove_if_empty (self, existing->experiment_short_id, &removed, error) || !rtp_transaction_commit (tx, error))
    return NULL;
  g_message ("process variable '%s' deleted", pv_string);
  if (removed)
    *deleted_experiment = g_strdup (existing->experiment_short_id);
  return g_steal_pointer (&existing);
}

void
rtp_experiment_store_warn_unusual_names (RtpExperimentStore *self)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GdaDataModel) m = rtp_database_select (self->db, &error, "SELECT pv_string FROM process_variables", NULL);

  for (guint i = 0; m != NULL && i < rtp_db_rows (m); i++)
    {
      const char *pv = rtp_db_str (m, i, 0);
      if (!rtp_pv_name_is_epics (pv) || !rtp_pv_name_is_mqtt_safe (pv))
        g_warning ("the process variable '%s' has a name that EPICS or MQTT does not allow; it can be charted but "
                   "never published, and new PVs cannot be named like it",
                   pv);
    }
}

/* ---- export / import ---------------------------------------------------------------- */

char *
rtp_experiment_store_export (RtpExperimentStore *self, GError **error)
{
  g_autoptr (GPtrArray) experiments = rtp_experiment_store_list_experiments (self, error);
  g_autoptr (GPtrArray) pvs = NULL;
  g_autoptr (GHashTable) by_experiment = NULL;
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format_iso8601 (now);

  if (experiments == NULL)
    return NULL;
  pvs = rtp_experiment_store_list_pvs (self, NULL, error);
  if (pvs == NULL)
    return NULL;
  by_experiment = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < pvs->len; i++)
    {
      RtpProcessVariable *pv = g_ptr_array_index (pvs, i);
      GPtrArray *list = g_hash_table_lookup (by_experiment, pv->experiment_short_id);
      if (list == NULL)
        {
          list = g_ptr_array_new ();
          g_hash_table_insert (by_experiment, pv->experiment_short_id, list);
        }
      g_ptr_array_add (list, pv);
    }

  g_string_append_printf (out,
                          "# Realtimeplot Server configuration export (experiments and process variables)\n"
                          "# created %s by realtimeplot-server %s\n"
                          "# Import it with POST /file/import. A ';' inside a value is written as &SMKL&.\n\n",
                          stamp, RTP_VERSION);
  for (guint i = 0; i < experiments->len; i++)
    {
      RtpExperiment *e = g_ptr_array_index (experiments, i);
      GPtrArray *list = g_hash_table_lookup (by_experiment, e->short_id);

      g_string_append (out, "[EXPERIMENT]");
      rtp_config_file_append_attribute (out, "short_id", e->short_id);
      rtp_config_file_append_attribute (out, "human_readable_name", e->human_readable_name);
      g_string_append_c (out, '\n');
      for (guint j = 0; list != NULL && j < list->len; j++)
        {
          RtpProcessVariable *pv = g_ptr_array_index (list, j);
          g_autofree char *min = pv->has_threshold_min ? g_strdup_printf ("%" G_GINT64_FORMAT, pv->threshold_min)
                                                       : NULL;
          g_autofree char *max = pv->has_threshold_max ? g_strdup_printf ("%" G_GINT64_FORMAT, pv->threshold_max)
                                                       : NULL;

          g_string_append (out, "    [PROCESS_VARIABLE]");
          rtp_config_file_append_attribute (out, "pv_string", pv->pv_string);
          rtp_config_file_append_attribute (out, "human_readable_name", pv->human_readable_name);
          rtp_config_file_append_attribute (out, "experiment_short_id", pv->experiment_short_id);
          rtp_config_file_append_attribute (out, "available_for_mqtt_publish",
                                            pv->available_for_mqtt_publish ? "True" : "False");
          rtp_config_file_append_attribute (out, "default_threshold_min", min);
          rtp_config_file_append_attribute (out, "default_threshold_max", max);
          /* written only when set: a site without guard rails exports what the original service reads */
          if (pv->setpoint_min != NULL)
            rtp_config_file_append_attribute (out, "setpoint_min", pv->setpoint_min);
          if (pv->setpoint_max != NULL)
            rtp_config_file_append_attribute (out, "setpoint_max", pv->setpoint_max);
          if (pv->setpoint_max_step != NULL)
            rtp_config_file_append_attribute (out, "setpoint_max_step", pv->setpoint_max_step);
          if (pv->readback_pv != NULL)
            rtp_config_file_append_attribute (out, "readback_pv", pv->readback_pv);
          g_string_append_c (out, '\n');
        }
      g_string_append_c (out, '\n');
    }
  {
    GHashTableIter iter;
    gpointer value;
    g_hash_table_iter_init (&iter, by_experiment);
    while (g_hash_table_iter_next (&iter, NULL, &value))
      g_ptr_array_unref (value);
  }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* Reads a PV line's attributes into @f; FALSE when a value is invalid. */
static gboolean
fields_from_line (RtpConfigLine *line, PvFields *f)
{
  GHashTable *a = line->attributes;
  const char *v;

  if (g_hash_table_contains (a, "human_readable_name"))
    {
      f->set_name = TRUE;
      f->name = g_hash_table_lookup (a, "human_readable_name");
      if (f->name != NULL && !rtp_validate_imported_text ("human_readable_name", f->name, 100, NULL))
        return FALSE;
    }
  if (g_hash_table_contains (a, "available_for_mqtt_publish"))
    {
      v = g_hash_table_lookup (a, "available_for_mqtt_publish");
      f->set_publish = TRUE;
      if (v == NULL)
        f->publish = FALSE;
      else if (!rtp_config_file_parse_bool (v, &f->publish))
        return FALSE;
    }
  if (g_hash_table_contains (a, "default_threshold_min"))
    {
      v = g_hash_table_lookup (a, "default_threshold_min");
      f->set_min = TRUE;
      if (v != NULL)
        {
          if (!rtp_config_file_parse_int (v, &f->min_value))
            return FALSE;
          f->min = &f->min_value;
        }
    }
  if (g_hash_table_contains (a, "default_threshold_max"))
    {
      v = g_hash_table_lookup (a, "default_threshold_max");
      f->set_max = TRUE;
      if (v != NULL)
        {
          if (!rtp_config_file_parse_int (v, &f->max_value))
            return FALSE;
          f->max = &f->max_value;
        }
    }
  {
    RtpPvFields rails = { 0 };
    RtpFieldState *states[3] = { &rails.setpoint_min_state, &rails.setpoint_max_state, &rails.setpoint_max_step_state };
    double *values[3] = { &rails.setpoint_min, &rails.setpoint_max, &rails.setpoint_max_step };
    for (guint i = 0; i < 3; i++)
      if (g_hash_table_contains (a, rail_columns[i]))
        {
          char *end = NULL;
          v = g_hash_table_lookup (a, rail_columns[i]);
          *states[i] = v == NULL ? RTP_FIELD_NULL : RTP_FIELD_SET;
          if (v != NULL)
            {
              *values[i] = g_ascii_strtod (v, &end);
              if (end == v || *end != '\0')
                return FALSE;
            }
        }
    if (g_hash_table_contains (a, "readback_pv"))
      {
        rails.readback_pv = g_hash_table_lookup (a, "readback_pv");
        rails.readback_pv_state = rails.readback_pv == NULL ? RTP_FIELD_NULL : RTP_FIELD_SET;
      }
    if (!read_rails (&rails, NULL, f, NULL, NULL))
      return FALSE;
  }
  return TRUE;
}

static gboolean
import_pv_line (RtpExperimentStore *self, RtpConfigLine *line, gboolean set_experiment_name,
                const char *experiment_name, GError **error)
{
  const char *pv_string = g_hash_table_lookup (line->attributes, "pv_string");
  PvFields f = { 0 };
  gboolean exists = FALSE;
  g_autofree char *short_id = NULL;

  if (line->malformed || pv_string == NULL || !validate_pv_string (pv_string, NULL) || !fields_from_line (line, &f) ||
      (f.set_publish && f.publish && !rtp_pv_name_is_mqtt_safe (pv_string)))
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "invalid line");
      return FALSE;
    }
  if (!pv_exists (self, pv_string, &exists, error))
    return FALSE;
  if (exists ? !update_pv_fields (self, pv_string, &f, error)
             : !insert_pv (self, pv_string, &f, error) || !update_pv_rails (self, pv_string, &f, error))
    return FALSE;
  if (set_experiment_name)
    {
      short_id = rtp_pv_short_id (pv_string, NULL);
      if (experiment_name != NULL && !rtp_validate_imported_text ("human_readable_name", experiment_name, 100, error))
        return FALSE;
      if (rtp_database_exec (self->db, error, "UPDATE experiments SET human_readable_name = :n WHERE short_id = :id",
                             "n", RTP_DB_STR, experiment_name, "id", RTP_DB_STR, short_id, NULL) < 0)
        return FALSE;
    }
  return TRUE;
}

/**
 * rtp_experiment_store_import:
 *
 * Imports a .rtpdb file in one transaction, with a savepoint per line so that a bad line
 * is rolled back alone and reported. A crash part-way leaves the database as it was.
 */
RtpImportResult *
rtp_experiment_store_import (RtpExperimentStore *self, const char *text, gsize length, GError **error)
{
  g_autoptr (RtpTransaction) tx = NULL;
  g_autoptr (GPtrArray) lines = NULL;
  g_autoptr (RtpImportResult) result = g_new0 (RtpImportResult, 1);
  gboolean have_experiment_name = FALSE;
  const char *experiment_name = NULL;
  gboolean blank = TRUE;

  result->errors = g_ptr_array_new_with_free_func (g_free);
  for (gsize i = 0; i < length && blank; i++)
    blank = g_ascii_isspace (text[i]);
  if (blank)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("No data found. Nothing could be imported."));
      return NULL;
    }
  if (!g_utf8_validate (text, (gssize) length, NULL))
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("The file is not valid UTF-8 text."));
      return NULL;
    }
  lines = rtp_config_file_parse (text, length);

  tx = rtp_database_begin_transaction (self->db, error);
  if (tx == NULL)
    return NULL;
  for (guint i = 0; i < lines->len; i++)
    {
      RtpConfigLine *line = g_ptr_array_index (lines, i);
      g_autoptr (GError) line_error = NULL;

      if (line->kind == RTP_CONFIG_LINE_EXPERIMENT)
        {
          result->experiments_in_file++;
          have_experiment_name = g_hash_table_contains (line->attributes, "human_readable_name");
          experiment_name = g_hash_table_lookup (line->attributes, "human_readable_name");
          continue;
        }
      result->process_variables_in_file++;
      if (!rtp_database_savepoint (self->db, "import_line", error))
        return NULL;
      if (!import_pv_line (self, line, have_experiment_name, experiment_name, &line_error))
        {
          if (line_error != NULL && (g_error_matches (line_error, RTP_ERROR, RTP_ERROR_UNAVAILABLE) ||
                                     g_error_matches (line_error, RTP_ERROR, RTP_ERROR_READONLY)))
            {
              /* the database, not the line, is at fault: give up on the whole import */
              g_propagate_error (error, g_steal_pointer (&line_error));
              return NULL;
            }
          rtp_database_rollback_to (self->db, "import_line");
          g_ptr_array_add (
            result->errors,
            g_strdup_printf (
              _ (
                "line-%u: An error occurred while creating the process variable. Check if the pv_string and the other attributes are set correctly, and start the import again. Valid process variables are not affected."),
              line->line_number));
        }
      if (!rtp_database_release (self->db, "import_line", error))
        return NULL;
    }
  if (!rtp_transaction_commit (tx, error))
    return NULL;
  if (!rtp_experiment_store_count (self, &result->experiments_in_database, &result->process_variables_in_database,
                                   error))
    return NULL;
  g_message ("import: %u experiment and %u process variable lines, %u errors", result->experiments_in_file,
             result->process_variables_in_file, result->errors->len);
  return g_steal_pointer (&result);
}
