/* rtp-experiment-store.h: experiments, process variables, user assignments, import/export */
#pragma once

#include <glib-object.h>

#include "rtp-database.h"
#include "rtp-user-manager.h"
#include "rtp-validate.h"

G_BEGIN_DECLS

typedef struct {
  char *short_id;
  char *human_readable_name; /* (nullable) */
  GPtrArray *pv_strings;     /* (element-type utf8) sorted */
  GPtrArray *user_ids;       /* (element-type utf8) sorted */
} RtpExperiment;

typedef struct {
  char *pv_string;
  char *human_readable_name; /* (nullable) */
  char *experiment_short_id;
  gboolean available_for_mqtt_publish;
  gboolean has_threshold_min;
  gint64 threshold_min;
  gboolean has_threshold_max;
  gint64 threshold_max;
  /* guard rails of set-points: the text of each number as it was given (NULL: no such rule) */
  char *setpoint_min;      /* (nullable) */
  char *setpoint_max;      /* (nullable) */
  char *setpoint_max_step; /* (nullable) largest |new − last known value| */
  char *readback_pv;       /* (nullable) the PV that reads the result back; NULL: the PV itself */
} RtpProcessVariable;

/* Whether @pv has a range or a step rule (then only numbers may be set). */
gboolean rtp_process_variable_has_guard_rails (const RtpProcessVariable *pv);

/* Returns: (transfer full) */
RtpExperiment *rtp_experiment_copy (const RtpExperiment *experiment);
void rtp_experiment_free (RtpExperiment *experiment);
/* Returns: (transfer full) */
RtpProcessVariable *rtp_process_variable_copy (const RtpProcessVariable *pv);
void rtp_process_variable_free (RtpProcessVariable *pv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpExperiment, rtp_experiment_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpProcessVariable, rtp_process_variable_free)

typedef struct {
  guint experiments_in_file;
  guint process_variables_in_file;
  guint experiments_in_database;
  guint process_variables_in_database;
  GPtrArray *errors; /* (element-type utf8) one per failed line */
} RtpImportResult;

void rtp_import_result_free (RtpImportResult *result);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpImportResult, rtp_import_result_free)

/* The fields of a PV a caller gives (to create one, or the changes to one), each as it arrived;
 * the strings are borrowed for the call. Null is a value for the name and the thresholds (none). */
typedef struct {
  /* the values (8 bytes each first, then the 4-byte states: no padding between them) */
  const char *pv_string;
  const char *human_readable_name;
  gint64 default_threshold_min;
  gint64 default_threshold_max;
  const char *experiment_short_id; /* changes only: it follows from pv_string, so it may only repeat it */
  /* guard rails: numbers (SET, with the value), null (the rule goes), or absent */
  double setpoint_min;
  double setpoint_max;
  double setpoint_max_step;
  const char *readback_pv;
  RtpFieldState pv_string_state;
  RtpFieldState name_state;
  RtpFieldState publish_state;
  gboolean available_for_mqtt_publish;
  RtpFieldState threshold_min_state;
  RtpFieldState threshold_max_state;
  RtpFieldState experiment_state;
  RtpFieldState setpoint_min_state;
  RtpFieldState setpoint_max_state;
  RtpFieldState setpoint_max_step_state;
  RtpFieldState readback_pv_state;
} RtpPvFields;

/* Changes to an experiment, each as it arrived; the strings are borrowed for the call. */
typedef struct {
  RtpFieldState short_id_state; /* it may only repeat the experiment's own */
  const char *short_id;
  RtpFieldState name_state;
  const char *human_readable_name;
  RtpFieldState users_to_add_state;
  const char *const *users_to_add; /* (array zero-terminated=1) user_ids */
  RtpFieldState users_to_remove_state;
  const char *const *users_to_remove;
} RtpExperimentChanges;

#define RTP_TYPE_EXPERIMENT_STORE (rtp_experiment_store_get_type ())
G_DECLARE_FINAL_TYPE (RtpExperimentStore, rtp_experiment_store, RTP, EXPERIMENT_STORE, GObject)

/* Returns: (transfer full) */
RtpExperimentStore *rtp_experiment_store_new (RtpDatabase *db);

/* The experiment's short_id of a pv_string, or NULL (with @error) when it has none. */
/* Returns: (transfer full) */
char *rtp_pv_short_id (const char *pv_string, GError **error);
/* Logs a warning for each stored PV whose name new PVs could not have (taken over or older rows). */
void rtp_experiment_store_warn_unusual_names (RtpExperimentStore *self);

/* Returns: (transfer full) */
GPtrArray *rtp_experiment_store_list_experiments (RtpExperimentStore *self, GError **error);
/* Returns: (transfer full) */
RtpExperiment *rtp_experiment_store_get_experiment (RtpExperimentStore *self, const char *short_id, GError **error);
/* Returns: (transfer full) */
RtpExperiment *rtp_experiment_store_update_experiment (RtpExperimentStore *self, const char *short_id,
                                                       const RtpExperimentChanges *changes, GPtrArray *field_errors,
                                                       GError **error);
/* Returns: (transfer full) */
GPtrArray *rtp_experiment_store_delete_experiment (RtpExperimentStore *self, const char *short_id, GError **error);

/* Returns: (transfer full) */
GPtrArray *rtp_experiment_store_list_pvs (RtpExperimentStore *self, const char *short_id, GError **error);
/* Returns: (transfer full) */
RtpProcessVariable *rtp_experiment_store_get_pv (RtpExperimentStore *self, const char *pv_string, GError **error);
gboolean rtp_experiment_store_has_pv (RtpExperimentStore *self, const char *pv_string);
/* Returns: (transfer full) */
RtpProcessVariable *rtp_experiment_store_create_pv (RtpExperimentStore *self, const RtpPvFields *fields,
                                                    GError **error);
/* Returns: (transfer full) */
RtpProcessVariable *rtp_experiment_store_update_pv (RtpExperimentStore *self, const char *pv_string,
                                                    const RtpPvFields *changes, GPtrArray *field_errors,
                                                    GError **error);
/* Returns: (transfer full) */
RtpProcessVariable *rtp_experiment_store_delete_pv (RtpExperimentStore *self, const char *pv_string,
                                                    char **deleted_experiment, GError **error);

gboolean rtp_experiment_store_is_assigned (RtpExperimentStore *self, const RtpUser *user, const char *short_id,
                                           gboolean *assigned, GError **error);

/* What a caller wants to do with an experiment; each has its rule and its refusal (API.md). */
typedef enum {
  RTP_ACCESS_READ,  /* the experiment, its PVs, its archived data: assigned users and admins (Deviation) */
  RTP_ACCESS_WATCH, /* subscriptions and /live: assigned users only, admins too */
  RTP_ACCESS_SET,   /* set-points: assigned users only, admins too */
} RtpAccess;

/* The one access rule: TRUE, or FALSE with RTP_ERROR_FORBIDDEN and the contract's message for
 * @access (or the database's error). */
gboolean rtp_experiment_store_check_access (RtpExperimentStore *self, const RtpUser *user, const char *short_id,
                                            RtpAccess access, GError **error);
gboolean rtp_experiment_store_assign (RtpExperimentStore *self, const char *short_id, const char *user_id,
                                      GError **error);
gboolean rtp_experiment_store_count (RtpExperimentStore *self, guint *experiments, guint *pvs, GError **error);

/* Returns: (transfer full) */
char *rtp_experiment_store_export (RtpExperimentStore *self, GError **error);
/* Returns: (transfer full) */
RtpImportResult *rtp_experiment_store_import (RtpExperimentStore *self, const char *text, gsize length, GError **error);

G_END_DECLS
