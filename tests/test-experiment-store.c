/* test-experiment-store.c: RtpExperimentStore and the .rtpdb parser against a temporary SQLite file */
#include "rtp-config-file.h"
#include "rtp-database.h"
#include "rtp-error.h"
#include "rtp-experiment-store.h"
#include "rtp-services.h"
#include "rtp-test-util.h"

#include <json-glib/json-glib.h>

#include <string.h>

typedef struct {
  char *dir;
  RtpDatabase *db;
  RtpExperimentStore *store;
} Fixture;

static void
setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *uri = NULL;

  f->dir = rtp_test_make_dir ();
  uri = g_strdup_printf ("sqlite:///%s/store.db", f->dir);
  f->db = rtp_database_open (uri, &error);
  g_assert_no_error (error);
  g_assert_true (rtp_database_migrate (f->db, &error));
  g_assert_cmpint (rtp_database_exec (f->db, &error,
                                      "INSERT INTO users (user_id, login_name, first_name, last_name, password_hash) "
                                      "VALUES ('u1', 'user1', 'U', 'One', 'x')",
                                      NULL),
                   ==, 1);
  f->store = rtp_experiment_store_new (f->db);
}

static void
teardown (Fixture *f, gconstpointer data)
{
  g_clear_object (&f->store);
  g_clear_object (&f->db);
  rtp_test_remove_dir (f->dir);
  g_free (f->dir);
}

/* The test writes fields as the API's JSON, read as the route reads them. */
static void
pv_fields_from_json (JsonObject *o, RtpPvFields *f)
{
  f->pv_string_state = rtp_routes_read_string (o, "pv_string", &f->pv_string);
  f->name_state = rtp_routes_read_string (o, "human_readable_name", &f->human_readable_name);
  f->publish_state = rtp_routes_read_boolean (o, "available_for_mqtt_publish", &f->available_for_mqtt_publish);
  f->threshold_min_state = rtp_routes_read_integer (o, "default_threshold_min", &f->default_threshold_min);
  f->threshold_max_state = rtp_routes_read_integer (o, "default_threshold_max", &f->default_threshold_max);
  f->experiment_state = rtp_routes_read_string (o, "experiment_short_id", &f->experiment_short_id);
}

static RtpProcessVariable *
create_pv (Fixture *f, const char *json, GError **error)
{
  g_autoptr (JsonNode) node = json_from_string (json, NULL);
  RtpPvFields fields = { 0 };
  pv_fields_from_json (json_node_get_object (node), &fields);
  return rtp_experiment_store_create_pv (f->store, &fields, error);
}

static RtpProcessVariable *
update_pv (Fixture *f, const char *pv, const char *json, GPtrArray *errors, GError **error)
{
  g_autoptr (JsonNode) node = json_from_string (json, NULL);
  RtpPvFields changes = { 0 };
  pv_fields_from_json (json_node_get_object (node), &changes);
  return rtp_experiment_store_update_pv (f->store, pv, &changes, errors, error);
}

static gint64
count (Fixture *f, const char *sql)
{
  g_autoptr (GdaDataModel) m = rtp_database_select (f->db, NULL, sql, NULL);
  return rtp_db_int0 (m, 0, 0);
}

static void
test_create_and_cascades (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpProcessVariable) a = create_pv (f, "{\"pv_string\":\"Exp:A\",\"default_threshold_min\":0}", &error);
  g_autoptr (RtpProcessVariable) b = create_pv (f, "{\"pv_string\":\"Exp:B\"}", &error);
  g_autoptr (RtpProcessVariable) dup = NULL;
  g_autoptr (RtpProcessVariable) gone = NULL;
  g_autofree char *deleted_experiment = NULL;

  g_assert_no_error (error);
  g_assert_nonnull (b);
  g_assert_cmpstr (a->experiment_short_id, ==, "Exp");
  g_assert_true (a->has_threshold_min); /* 0 is a value */
  g_assert_cmpint (a->threshold_min, ==, 0);
  g_assert_false (a->has_threshold_max);
  g_assert_cmpint (count (f, "SELECT COUNT(*) FROM experiments"), ==, 1);

  dup = create_pv (f, "{\"pv_string\":\"Exp:A\"}", &error);
  g_assert_error (error, RTP_ERROR, RTP_ERROR_EXISTS);
  g_clear_error (&error);

  g_assert_true (rtp_experiment_store_assign (f->store, "Exp", "u1", &error));
  g_assert_true (rtp_experiment_store_assign (f->store, "Exp", "u1", &error)); /* twice is once */
  g_assert_cmpint (count (f, "SELECT COUNT(*) FROM user_experiments"), ==, 1);

  gone = rtp_experiment_store_delete_pv (f->store, "Exp:A", &deleted_experiment, &error);
  g_assert_no_error (error);
  g_assert_null (deleted_experiment);
  g_clear_pointer (&gone, rtp_process_variable_free);
  gone = rtp_experiment_store_delete_pv (f->store, "Exp:B", &deleted_experiment, &error);
  g_assert_cmpstr (deleted_experiment, ==, "Exp"); /* the last PV takes its experiment along */
  g_assert_cmpint (count (f, "SELECT COUNT(*) FROM experiments"), ==, 0);
  g_assert_cmpint (count (f, "SELECT COUNT(*) FROM user_experiments"), ==, 0);
}

static void
test_rename_moves_experiment (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) errors = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (RtpProcessVariable) a = create_pv (f, "{\"pv_string\":\"Old:A\",\"human_readable_name\":\"a\"}", &error);
  g_autoptr (RtpProcessVariable) other = create_pv (f, "{\"pv_string\":\"New:B\"}", &error);
  g_autoptr (RtpProcessVariable) renamed = NULL;

  g_assert_true (a != NULL && other != NULL);
  renamed = update_pv (f, "Old:A", "{\"pv_string\":\"New:B\"}", errors, &error);
  g_assert_error (error, RTP_ERROR, RTP_ERROR_EXISTS); /* onto an existing PV */
  g_clear_error (&error);
  g_assert_cmpint (count (f, "SELECT COUNT(*) FROM process_variables WHERE pv_string = 'Old:A'"), ==, 1);

  renamed = update_pv (f, "Old:A", "{\"pv_string\":\":nothing\"}", errors, &error);
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_clear_error (&error);

  renamed = update_pv (
    f, "Old:A", "{\"pv_string\":\"New:A\",\"default_threshold_max\":\"high\",\"available_for_mqtt_publish\":true}",
    errors, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (renamed->experiment_short_id, ==, "New");
  g_assert_cmpstr (renamed->human_readable_name, ==, "a");
  g_assert_true (renamed->available_for_mqtt_publish);
  g_assert_cmpuint (errors->len, ==, 1);
  g_assert_cmpstr (g_ptr_array_index (errors, 0), ==, "default_threshold_max: Value must be Integer.");
  g_assert_cmpint (count (f, "SELECT COUNT(*) FROM experiments WHERE short_id = 'Old'"), ==, 0);
  g_assert_cmpint (count (f, "SELECT COUNT(*) FROM process_variables WHERE experiment_short_id = 'New'"), ==, 2);
}

static void
test_delete_experiment (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpProcessVariable) a = create_pv (f, "{\"pv_string\":\"E:1\"}", &error);
  g_autoptr (RtpProcessVariable) b = create_pv (f, "{\"pv_string\":\"E:2\"}", &error);
  g_autoptr (GPtrArray) deleted = NULL;

  g_assert_true (a != NULL && b != NULL);
  rtp_experiment_store_assign (f->store, "E", "u1", &error);
  deleted = rtp_experiment_store_delete_experiment (f->store, "E", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (deleted->len, ==, 2);
  g_assert_cmpint (count (f, "SELECT COUNT(*) FROM process_variables"), ==, 0);
  g_assert_cmpint (count (f, "SELECT COUNT(*) FROM user_experiments"), ==, 0);
  g_clear_pointer (&deleted, g_ptr_array_unref);
  deleted = rtp_experiment_store_delete_experiment (f->store, "E", &error);
  g_assert_error (error, RTP_ERROR, RTP_ERROR_NOT_FOUND);
  g_assert_cmpstr (error->message, ==, "The experiment (E) is not present in the database.");
}

static void
test_deleting_user_removes_assignments (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpProcessVariable) a = create_pv (f, "{\"pv_string\":\"E:1\"}", &error);

  g_assert_nonnull (a);
  rtp_experiment_store_assign (f->store, "E", "u1", &error);
  g_assert_cmpint (rtp_database_exec (f->db, &error, "DELETE FROM users WHERE user_id = 'u1'", NULL), ==, 1);
  g_assert_cmpint (count (f, "SELECT COUNT(*) FROM user_experiments"), ==, 0);
  g_assert_cmpint (count (f, "SELECT COUNT(*) FROM experiments"), ==, 1);
}

static void
test_parser (void)
{
  const char *text =
    "\xef\xbb\xbf# comment\r\n"
    "[EXPERIMENT];short_id=X;human_readable_name=A&SMKL&B=C\r\n"
    "   [PROCESS_VARIABLE];pv_string=X:1;human_readable_name=None;unknown=1;default_threshold_min=-3\r\n"
    "[PROCESS_VARIABLE];pv_string=X:2;no equals sign\n"
    "something else entirely\n"
    "[PROCESS_VARIABLE]\n";
  g_autoptr (GPtrArray) lines = rtp_config_file_parse (text, strlen (text));
  RtpConfigLine *l;
  gboolean b = FALSE;
  gint64 i = 0;

  g_assert_cmpuint (lines->len, ==, 4);
  l = g_ptr_array_index (lines, 0);
  g_assert_cmpint (l->kind, ==, RTP_CONFIG_LINE_EXPERIMENT);
  g_assert_cmpuint (l->line_number, ==, 2);
  g_assert_cmpstr (g_hash_table_lookup (l->attributes, "human_readable_name"), ==, "A;B=C");
  l = g_ptr_array_index (lines, 1);
  g_assert_cmpint (l->kind, ==, RTP_CONFIG_LINE_PROCESS_VARIABLE);
  g_assert_true (g_hash_table_contains (l->attributes, "human_readable_name"));
  g_assert_null (g_hash_table_lookup (l->attributes, "human_readable_name")); /* None */
  g_assert_cmpstr (g_hash_table_lookup (l->attributes, "default_threshold_min"), ==, "-3");
  g_assert_false (l->malformed);
  l = g_ptr_array_index (lines, 2);
  g_assert_true (l->malformed);
  g_assert_cmpuint (l->line_number, ==, 4);
  l = g_ptr_array_index (lines, 3);
  g_assert_cmpuint (g_hash_table_size (l->attributes), ==, 0);

  g_assert_true (rtp_config_file_parse_bool ("True", &b) && b);
  g_assert_true (rtp_config_file_parse_bool ("false", &b) && !b);
  g_assert_false (rtp_config_file_parse_bool ("yes", &b));
  g_assert_true (rtp_config_file_parse_int ("-12", &i) && i == -12);
  g_assert_false (rtp_config_file_parse_int ("12abc", &i));
  g_assert_false (rtp_config_file_parse_int ("", &i));
  g_assert_false (rtp_config_file_parse_int ("99999999999999999999999", &i));
}

static void
test_import_malformed (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GString) text = g_string_new ("[EXPERIMENT];short_id=Q;human_readable_name=Queue\r\n");
  g_autoptr (RtpImportResult) result = NULL;
  g_autoptr (RtpExperiment) q = NULL;

  g_string_append (
    text, "[PROCESS_VARIABLE];pv_string=Q:ok;default_threshold_max=7;available_for_mqtt_publish=true\r\n"); /* 2 */
  g_string_append (text, "[PROCESS_VARIABLE];pv_string=\r\n");                                              /* 3 */
  g_string_append (text, "[PROCESS_VARIABLE];pv_string=Q:bad;default_threshold_min=1.5\r\n");               /* 4 */
  g_string_append (text, "[PROCESS_VARIABLE];pv_string=Q:noeq;broken\r\n");                                 /* 5 */
  g_string_append (text, "[PROCESS_VARIABLE];pv_string=Q:flag;available_for_mqtt_publish=yes\r\n");         /* 6 */
  g_string_append (text, "[PROCESS_VARIABLE];pv_string=");                                                  /* 7 */
  for (int i = 0; i < 1024 * 1024; i++)
    g_string_append_c (text, 'x');
  g_string_append (text, "\n[PROCESS_VARIABLE];pv_string=Q:ok;human_readable_name=second\n"); /* 8: update */

  result = rtp_experiment_store_import (f->store, text->str, text->len, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (result->experiments_in_file, ==, 1);
  g_assert_cmpuint (result->process_variables_in_file, ==, 7);
  g_assert_cmpuint (result->errors->len, ==, 5);
  g_assert_true (g_str_has_prefix (g_ptr_array_index (result->errors, 0), "line-3: "));
  g_assert_true (g_str_has_prefix (g_ptr_array_index (result->errors, 4), "line-7: "));
  g_assert_cmpuint (result->process_variables_in_database, ==, 1);
  {
    g_autoptr (RtpProcessVariable) pv = rtp_experiment_store_get_pv (f->store, "Q:ok", &error);
    g_assert_cmpstr (pv->human_readable_name, ==, "second");
    g_assert_true (pv->has_threshold_max); /* absent on the update line: unchanged */
    g_assert_cmpint (pv->threshold_max, ==, 7);
    g_assert_true (pv->available_for_mqtt_publish);
  }
  q = rtp_experiment_store_get_experiment (f->store, "Q", &error);
  g_assert_cmpstr (q->human_readable_name, ==, "Queue");

  g_clear_pointer (&result, rtp_import_result_free);
  result = rtp_experiment_store_import (f->store, " \n\t", 3, &error);
  g_assert_null (result);
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_assert_cmpstr (error->message, ==, "No data found. Nothing could be imported.");
}

static void
test_export_import_roundtrip (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  const char *pvs[] = {
    "{\"pv_string\":\"Lab;1:Fan<Speed>\",\"human_readable_name\":\"Lüfter \\\"A\\\"; Drehzahl = schnell\",\"available_for_mqtt_publish\":true,\"default_threshold_min\":0,\"default_threshold_max\":-5}",
    "{\"pv_string\":\"Lab;1:T\",\"human_readable_name\":null}",
    "{\"pv_string\":\"Zurich:T[1].VAL\",\"human_readable_name\":\"it's 'quoted'\",\"default_threshold_max\":9007199254740993}",
  };
  g_autofree char *exported = NULL;
  g_autofree char *again = NULL;
  g_autoptr (GPtrArray) before = NULL;
  g_autoptr (GPtrArray) after = NULL;
  g_autoptr (RtpImportResult) result = NULL;
  g_autoptr (GPtrArray) errors = g_ptr_array_new_with_free_func (g_free);

  for (gsize i = 0; i < G_N_ELEMENTS (pvs); i++)
    {
      g_autoptr (RtpProcessVariable) pv = create_pv (f, pvs[i], &error);
      g_assert_no_error (error);
      if (i == 2)
        {
          /* beyond 32 bits, and beyond a double's exact range */
          g_assert_true (pv->has_threshold_max);
          g_assert_cmpint (pv->threshold_max, ==, G_GINT64_CONSTANT (9007199254740993));
        }
    }
  {
    RtpExperimentChanges changes = { .name_state = RTP_FIELD_SET, .human_readable_name = "Lab = one; two" };
    g_autoptr (RtpExperiment) e = rtp_experiment_store_update_experiment (f->store, "Lab;1", &changes, errors, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (e->human_readable_name, ==, "Lab = one; two");
  }
  before = rtp_experiment_store_list_pvs (f->store, NULL, &error);
  exported = rtp_experiment_store_export (f->store, &error);
  g_assert_nonnull (strstr (exported, "[EXPERIMENT];short_id=Lab&SMKL&1;human_readable_name=Lab = one&SMKL& two\n"));

  /* into an empty database */
  g_assert_cmpint (rtp_database_exec (f->db, &error, "DELETE FROM experiments", NULL), >=, 1);
  result = rtp_experiment_store_import (f->store, exported, strlen (exported), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (result->errors->len, ==, 0);
  after = rtp_experiment_store_list_pvs (f->store, NULL, &error);
  g_assert_cmpuint (after->len, ==, before->len);
  for (guint i = 0; i < before->len; i++)
    {
      RtpProcessVariable *x = g_ptr_array_index (before, i);
      RtpProcessVariable *y = g_ptr_array_index (after, i);
      g_assert_cmpstr (x->pv_string, ==, y->pv_string);
      g_assert_cmpstr (x->human_readable_name, ==, y->human_readable_name);
      g_assert_cmpstr (x->experiment_short_id, ==, y->experiment_short_id);
      g_assert_cmpint (x->available_for_mqtt_publish, ==, y->available_for_mqtt_publish);
      g_assert_cmpint (x->has_threshold_min, ==, y->has_threshold_min);
      g_assert_cmpint (x->threshold_min, ==, y->threshold_min);
      g_assert_cmpint (x->has_threshold_max, ==, y->has_threshold_max);
      g_assert_cmpint (x->threshold_max, ==, y->threshold_max);
    }
  again = rtp_experiment_store_export (f->store, &error);
  /* identical but for the time stamp line */
  g_assert_cmpstr (strstr (again, "\n\n"), ==, strstr (exported, "\n\n"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/experiment-store/create-and-cascades", Fixture, NULL, setup, test_create_and_cascades, teardown);
  g_test_add ("/experiment-store/rename", Fixture, NULL, setup, test_rename_moves_experiment, teardown);
  g_test_add ("/experiment-store/delete-experiment", Fixture, NULL, setup, test_delete_experiment, teardown);
  g_test_add ("/experiment-store/deleting-user", Fixture, NULL, setup, test_deleting_user_removes_assignments,
              teardown);
  g_test_add_func ("/experiment-store/parser", test_parser);
  g_test_add ("/experiment-store/import-malformed", Fixture, NULL, setup, test_import_malformed, teardown);
  g_test_add ("/experiment-store/export-import-roundtrip", Fixture, NULL, setup, test_export_import_roundtrip,
              teardown);
  return g_test_run ();
}
