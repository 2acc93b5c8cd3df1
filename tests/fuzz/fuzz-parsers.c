/* fuzz-parsers.c: libFuzzer targets for the server's parsers, one binary per target chosen at
 * build time with -DFUZZ_TARGET=n: 1 JWT, 2 .rtpdb import file, 3 archiver answer (fed in two
 * pieces), 4 path splitting, 5 time windows, 6 configuration file, 7 JSON request bodies through
 * the body parser of the routes and the PV/experiment validation of create and update, 8 the JSON
 * checks every input passes before json-glib (rtp-json.c), 9 the cells of the CSV/TSV export
 * (rtp-csv.c: a cell must read back as one cell), 10 the request-line watch of a connection
 * (rtp-request-line.c: what it keeps does not depend on how the bytes were cut into reads), 11 the
 * value gate on paho's thread (rtp-value-gate.c: topic, a newline, payload; what it settles is
 * exactly what the main loop would have read as a number in range). The archiver target also reads the input as a
 * getDataAtTime answer, a getMatchingPVs answer and an answer of several PVs. Each must never crash,
 * leak or hang, whatever the input. */
#include "rtp-archiver-parser.h"
#include "rtp-config-file.h"
#include "rtp-csv.h"
#include "rtp-config.h"
#include "rtp-database.h"
#include "rtp-error.h"
#include "rtp-experiment-store.h"
#include "rtp-services.h"
#include "rtp-http-server.h"
#include "rtp-json.h"
#include "rtp-request-line.h"
#include "rtp-jwt.h"
#include "rtp-time.h"
#include "rtp-value-gate.h"

#include <math.h>

#include <stdlib.h>
#include <string.h>

#include "../rtp-test-util.h"

G_GNUC_UNUSED static gboolean
count_sample (const RtpSample *s, gpointer user_data)
{
  (*(guint *) user_data)++;
  return s->too_deep ? s->value == NULL : s->value_len > 0;
}

G_GNUC_UNUSED static gboolean
count_named (const char *pv, const RtpSample *s, gpointer user_data)
{
  g_assert (pv != NULL);
  return count_sample (s, user_data);
}

G_GNUC_UNUSED static gboolean
count_pv (const char *name, gpointer user_data)
{
  g_assert (name == NULL || g_utf8_validate (name, -1, NULL));
  return TRUE;
}

/* A cell as rtp-csv.c wrote it reads back as one cell: quoted with every inner quote doubled, or
 * holding none of the separator, a quote, CR or LF. */
G_GNUC_UNUSED static void
check_cell (const GString *cell, char sep)
{
  if (cell->len > 0 && cell->str[0] == '"')
    {
      g_assert (cell->len >= 2 && cell->str[cell->len - 1] == '"');
      for (gsize i = 1; i + 1 < cell->len; i++)
        if (cell->str[i] == '"')
          g_assert (cell->str[++i] == '"' && i + 1 < cell->len);
    }
  else
    for (gsize i = 0; i < cell->len; i++)
      g_assert (cell->str[i] != sep && cell->str[i] != '"' && cell->str[i] != '\r' && cell->str[i] != '\n');
  {
    /* never a formula: = + @ or a tab never start what a spreadsheet reads ('-' starts numbers only) */
    gsize first = cell->len > 0 && cell->str[0] == '"' ? 1 : 0;
    if (first < cell->len)
      g_assert (memchr ("=+@\t", cell->str[first], 4) == NULL);
  }
}

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

#if FUZZ_TARGET == 7
/* One store on a migrated SQLite file (on tmpfs when there is one) for the whole run. */
static RtpDatabase *db;
static RtpExperimentStore *store;
static char *dir;

static void
remove_store (void)
{
  g_clear_object (&store);
  g_clear_object (&db);
  rtp_test_remove_dir (dir);
  g_free (dir);
}

static void
open_store (void)
{
  g_autofree char *uri = NULL;
  g_autoptr (GError) error = NULL;

  if (g_file_test ("/dev/shm", G_FILE_TEST_IS_DIR))
    g_setenv ("TMPDIR", "/dev/shm", TRUE);
  dir = rtp_test_make_dir ();
  uri = g_strdup_printf ("sqlite:///%s/fuzz.db", dir);
  db = rtp_database_open (uri, &error);
  g_assert_no_error (error);
  g_assert_true (rtp_database_migrate (db, &error));
  store = rtp_experiment_store_new (db);
  atexit (remove_store);
}

/* A refusal is fine; an error that would become a 500 (or none at all) is a bug. */
static void
check_refusal (const GError *error)
{
  g_assert_nonnull (error);
  g_assert_true (error->domain == RTP_ERROR);
  g_assert_cmpint (error->code, !=, RTP_ERROR_FAILED);
  g_assert_true (error->message != NULL && g_utf8_validate (error->message, -1, NULL));
}
#endif

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  G_GNUC_UNUSED g_autofree char *text = g_strndup ((const char *) data, size); /* NUL-terminated copy */

#if FUZZ_TARGET == 1
  {
    static const guint8 key[] = "fuzzing key";
    g_autoptr (JsonObject) claims = rtp_jwt_decode (text, key, sizeof key - 1, 1700000000, NULL);
    (void) claims;
  }
#elif FUZZ_TARGET == 2
  {
    g_autoptr (GPtrArray) lines = rtp_config_file_parse ((const char *) data, size);
    for (guint i = 0; i < lines->len; i++)
      {
        RtpConfigLine *l = g_ptr_array_index (lines, i);
        gboolean b;
        gint64 n;
        rtp_config_file_parse_bool (g_hash_table_lookup (l->attributes, "available_for_mqtt_publish"), &b);
        rtp_config_file_parse_int (g_hash_table_lookup (l->attributes, "default_threshold_min"), &n);
      }
  }
#elif FUZZ_TARGET == 3
  {
    guint n = 0;
    g_autoptr (RtpArchiverParser) p = rtp_archiver_parser_new (size % 2 == 0, count_sample, &n);
    gsize half = size / 2;
    g_autoptr (RtpArchiverParser) many = rtp_archiver_parser_new (FALSE, count_sample, &n);
    g_auto (GStrv) names = rtp_archiver_parse_names ((const char *) data, size, 100, NULL);
    if (rtp_archiver_parser_feed (p, (const char *) data, half, NULL) &&
        rtp_archiver_parser_feed (p, (const char *) data + half, size - half, NULL))
      rtp_archiver_parser_finish (p, NULL);
    rtp_archiver_parser_set_pv_func (many, count_pv);
    if (rtp_archiver_parser_feed (many, (const char *) data, size, NULL))
      rtp_archiver_parser_finish (many, NULL);
    rtp_archiver_parse_values_at ((const char *) data, size, count_named, &n, NULL);
    for (guint i = 0; names != NULL && names[i] != NULL; i++)
      g_assert (g_utf8_validate (names[i], -1, NULL) && names[i][0] != '\0' && i < 100);
  }
#elif FUZZ_TARGET == 4
  {
    g_auto (GStrv) segments = rtp_http_split_path (text);
    for (guint i = 0; segments != NULL && segments[i] != NULL; i++)
      g_assert (g_utf8_validate (segments[i], -1, NULL) && strcmp (segments[i], "..") != 0);
  }
#elif FUZZ_TARGET == 5
  {
    static GTimeZone *tz;
    gint64 us;
    char buf[64];
    if (tz == NULL)
      tz = g_time_zone_new_identifier ("Europe/Berlin");
    if (rtp_time_parse (text, tz, &us))
      rtp_time_format (tz, us / G_USEC_PER_SEC, 0, buf);
  }
#elif FUZZ_TARGET == 6
  {
    g_autoptr (RtpConfig) config = rtp_config_new ();
    if (rtp_config_load_data (config, text, "fuzz.env", NULL))
      rtp_config_validate (config, NULL);
  }
#elif FUZZ_TARGET == 7
  {
    /* the body as a route gets it, then through the PV and experiment validation of create and update */
    g_autoptr (JsonObject) body = NULL;
    g_autoptr (GError) error = NULL;
    g_auto (GStrv) add = NULL;
    g_auto (GStrv) remove = NULL;
    RtpPvFields base = { .pv_string_state = RTP_FIELD_SET, .pv_string = "Fz:base" };
    RtpPvFields fields = { 0 };
    RtpExperimentChanges changes = { 0 };
    g_autoptr (GPtrArray) field_errors = g_ptr_array_new_with_free_func (g_free);
    RtpProcessVariable *pv;
    RtpExperiment *e;

    if (!rtp_http_parse_json_body ((const char *) data, size, size % 2 == 0, &body, &error))
      {
        g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
        return 0;
      }
    if (body == NULL)
      return 0;
    if (store == NULL)
      open_store ();
    g_assert_cmpint (rtp_database_exec (db, NULL, "DELETE FROM process_variables", NULL), >=, 0);
    g_assert_cmpint (rtp_database_exec (db, NULL, "DELETE FROM experiments", NULL), >=, 0);
    pv = rtp_experiment_store_create_pv (store, &base, &error);
    g_assert_no_error (error);
    rtp_process_variable_free (pv);

    /* read as the routes read it (rtp-routes-json.c) */
    fields.pv_string_state = rtp_routes_read_string (body, "pv_string", &fields.pv_string);
    fields.name_state = rtp_routes_read_string (body, "human_readable_name", &fields.human_readable_name);
    fields.publish_state = rtp_routes_read_boolean (body, "available_for_mqtt_publish",
                                                    &fields.available_for_mqtt_publish);
    fields.threshold_min_state = rtp_routes_read_integer (body, "default_threshold_min", &fields.default_threshold_min);
    fields.threshold_max_state = rtp_routes_read_integer (body, "default_threshold_max", &fields.default_threshold_max);
    fields.experiment_state = rtp_routes_read_string (body, "experiment_short_id", &fields.experiment_short_id);
    changes.short_id_state = rtp_routes_read_string (body, "short_id", &changes.short_id);
    changes.name_state = rtp_routes_read_string (body, "human_readable_name", &changes.human_readable_name);
    changes.users_to_add_state = rtp_routes_read_strings (body, "users_to_add", &add);
    changes.users_to_add = (const char *const *) add;
    changes.users_to_remove_state = rtp_routes_read_strings (body, "users_to_remove", &remove);
    changes.users_to_remove = (const char *const *) remove;

    pv = rtp_experiment_store_create_pv (store, &fields, &error);
    if (pv != NULL)
      {
        /* what was acknowledged can be read back */
        RtpProcessVariable *again = rtp_experiment_store_get_pv (store, pv->pv_string, &error);
        g_assert_no_error (error);
        g_assert_cmpstr (again->pv_string, ==, pv->pv_string);
        rtp_process_variable_free (again);
        rtp_process_variable_free (pv);
      }
    else
      check_refusal (error);
    g_clear_error (&error);

    pv = rtp_experiment_store_update_pv (store, "Fz:base", &fields, field_errors, &error);
    if (pv != NULL)
      rtp_process_variable_free (pv);
    else
      check_refusal (error);
    g_clear_error (&error);

    e = rtp_experiment_store_update_experiment (store, "Fz", &changes, field_errors, &error);
    if (e != NULL)
      rtp_experiment_free (e);
    else if (!g_error_matches (error, RTP_ERROR, RTP_ERROR_NOT_FOUND)) /* the PV update may have moved it */
      check_refusal (error);
    for (guint i = 0; i < field_errors->len; i++)
      g_assert_true (g_utf8_validate (g_ptr_array_index (field_errors, i), -1, NULL));
  }
#elif FUZZ_TARGET == 10
  {
    g_autoptr (RtpLineWatch) whole = rtp_line_watch_new ();
    g_autoptr (RtpLineWatch) halves = rtp_line_watch_new ();
    g_autoptr (RtpLineWatch) bytes = rtp_line_watch_new ();
    gsize cut = size > 0 ? data[0] % size : 0;

    rtp_line_watch_feed (whole, (const char *) data, size);
    rtp_line_watch_feed (halves, (const char *) data, cut);
    rtp_line_watch_feed (halves, (const char *) data + cut, size - cut);
    for (gsize i = 0; i < size && size <= 4096; i++)
      rtp_line_watch_feed (bytes, (const char *) data + i, 1);
    g_assert_cmpuint (rtp_line_watch_get_pending (whole), <=, 8);
    g_assert_cmpuint (rtp_line_watch_get_pending (whole), ==, rtp_line_watch_get_pending (halves));
    if (size <= 4096)
      g_assert_cmpuint (rtp_line_watch_get_pending (whole), ==, rtp_line_watch_get_pending (bytes));
    if (memchr (data, '\n', size) == NULL)
      g_assert_cmpuint (rtp_line_watch_get_pending (whole), ==, 0); /* only complete lines count */
    g_assert (rtp_line_watch_take (whole, "/", NULL) == rtp_line_watch_take (halves, "/", NULL));
    rtp_request_target_has_dot_segment ((const char *) data, size);
  }
#elif FUZZ_TARGET == 9
  if (size > 0)
    {
      char sep = data[0] % 2 == 0 ? ',' : '\t';
      g_autoptr (GString) json = g_string_new (NULL);
      g_autoptr (GString) cell = g_string_new (NULL);
      guint replaced = 0;

      /* the input's rest as a value from the archiver (normalized, as the parser hands it on) */
      if (rtp_json_normalize ((const char *) data + 1, size - 1, RTP_JSON_MAX_DEPTH, json, &replaced) == RTP_JSON_OK)
        {
          rtp_csv_append_value (cell, json->str, json->len, sep);
          check_cell (cell, sep);
          if (json->str[0] != '[' && json->str[0] != '{')
            g_assert (g_utf8_validate (cell->str, (gssize) cell->len, NULL));
        }
      /* and as text */
      g_string_truncate (cell, 0);
      if (g_utf8_validate ((const char *) data + 1, (gssize) size - 1, NULL))
        {
          rtp_csv_append_text (cell, (const char *) data + 1, size - 1, sep);
          if (memchr (data + 1, '\0', size - 1) == NULL)
            check_cell (cell, sep);
        }
      g_string_truncate (cell, 0);
      rtp_csv_append_count (cell, (const char *) data + 1, size - 1);
    }
#elif FUZZ_TARGET == 11
  {
    const char *nl = memchr (data, '\n', size);
    gsize topic_len = nl != NULL ? (gsize) (nl - (const char *) data) : size;
    const char *payload = nl != NULL ? nl + 1 : "";
    gsize payload_len = nl != NULL ? size - topic_len - 1 : 0;
    g_autoptr (RtpValueGate) gate = rtp_value_gate_new ("lab/values");
    g_autofree char *topic = g_strndup ((const char *) data, topic_len);

    /* the PV the main loop would make of the topic, quiet in [-1e6, 1e6] */
    if (g_str_has_prefix (topic, "lab/values/"))
      {
        g_autofree char *pv = g_strdelimit (g_strdup (topic + strlen ("lab/values/")), "/", ':');
        rtp_value_gate_set_quiet (gate, pv, -1e6, 1e6);
        if (rtp_value_gate_take (gate, (const char *) data, topic_len, payload, payload_len))
          {
            g_autofree char *main_text = g_strstrip (g_strndup (payload, payload_len));
            char *end = NULL;
            double main_value = g_ascii_strtod (main_text, &end);
            gint64 t;
            double v;

            /* settled: the main loop reads the same finite number, inside the range, of that PV */
            g_assert_true (memchr (data, '\0', topic_len) == NULL && pv[0] != '\0');
            g_assert_true (end != main_text && *end == '\0' && isfinite (main_value));
            g_assert_true (rtp_value_gate_get_latest (gate, pv, &t, &v));
            g_assert_true (v == main_value && v >= -1e6 && v <= 1e6);
          }
      }
    else
      g_assert_false (rtp_value_gate_take (gate, (const char *) data, topic_len, payload, payload_len));
  }
#elif FUZZ_TARGET == 8
  {
    /* what the normaliser lets through is JSON that json-glib reads without trouble, and the same
     * text normalised again; the quick check agrees on the depth */
    g_autoptr (GString) out = g_string_new (NULL);
    g_autoptr (GString) again = g_string_new (NULL);
    g_autofree char *key = NULL;
    g_autofree char *value = NULL;
    guint replaced = 0;
    RtpJsonProblem checked = rtp_json_check ((const char *) data, size, RTP_JSON_MAX_DEPTH, &key, &value);

    if (rtp_json_normalize ((const char *) data, size, RTP_JSON_MAX_DEPTH, out, &replaced) == RTP_JSON_OK)
      {
        g_autoptr (JsonParser) parser = json_parser_new ();
        g_autofree char *k2 = NULL;
        g_autofree char *v2 = NULL;
        guint replaced_again = 0;
        g_assert_true (checked != RTP_JSON_TOO_DEEP);
        g_assert_true (json_parser_load_from_data (parser, out->str, (gssize) out->len, NULL));
        g_assert_true (rtp_json_normalize (out->str, out->len, RTP_JSON_MAX_DEPTH, again, &replaced_again) ==
                       RTP_JSON_OK);
        g_assert_cmpstr (again->str, ==, out->str);
        g_assert_cmpuint (replaced_again, ==, 0);
        g_assert_true (rtp_json_check (out->str, out->len, RTP_JSON_MAX_DEPTH, &k2, &v2) != RTP_JSON_TOO_DEEP);
      }
    if (checked == RTP_JSON_NUMBER || checked == RTP_JSON_NUL)
      g_assert_true (value != NULL && g_utf8_validate (value, -1, NULL) &&
                     (key == NULL || g_utf8_validate (key, -1, NULL)));
    /* the writer: any UTF-8 text becomes one JSON string that json-glib reads back unchanged */
    if (g_utf8_validate_len ((const char *) data, size, NULL))
      {
        g_autoptr (GString) written = g_string_new (NULL);
        g_autoptr (GString) normalized = g_string_new (NULL);
        g_autoptr (JsonNode) node = NULL;
        guint n = 0;

        rtp_json_append_string (written, text);
        g_assert_true (rtp_json_normalize (written->str, written->len, RTP_JSON_MAX_DEPTH, normalized, &n) ==
                       RTP_JSON_OK);
        node = json_from_string (written->str, NULL);
        g_assert_nonnull (node);
        g_assert_cmpstr (json_node_get_string (node), ==, text);
      }
  }
#endif
  return 0;
}
