/* rtp-takeover.c: reading the original service's database
 *
 * The original (Flask/SQLAlchemy) kept tables `user` (user_type "admin"/"user", password_hash
 * = hex md5 of PASSWORD_SALT + password), `experiment`, `process_variable`,
 * `users_to_experiments` and `subscription`, and no schema_version. Its exact column types
 * are not ours to rely on, so columns are discovered from the file and every value is read
 * as text (CAST … AS TEXT) and converted here. */
#define G_LOG_DOMAIN "RtpTakeover"

#include "rtp-takeover.h"
#include "rtp-error.h"

#include <gio/gio.h>
#include <string.h>

static gboolean
table_exists (RtpDatabase *db, const char *name, gboolean *exists, GError **error)
{
  const char *sql = rtp_database_get_kind (db) == RTP_DATABASE_SQLITE
                      ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = :n"
                      : "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() "
                        "AND table_name = :n";
  gint64 n = rtp_database_select_int (db, error, sql, "n", RTP_DB_STR, name, NULL);

  if (n < 0)
    return FALSE;
  *exists = n > 0;
  return TRUE;
}

gboolean
rtp_takeover_is_legacy (RtpDatabase *db, gboolean *legacy, GError **error)
{
  gboolean has_user = FALSE, has_ours = FALSE;

  if (!table_exists (db, "user", &has_user, error) || !table_exists (db, "schema_version", &has_ours, error))
    return FALSE;
  *legacy = has_user && !has_ours;
  return TRUE;
}

/* Rows of @table as hash tables column → text (NULL for SQL NULL). */
static GPtrArray *
read_table (RtpDatabase *db, const char *table, GError **error)
{
  g_autoptr (GString) sql = g_string_new ("SELECT ");
  g_autoptr (GdaDataModel) info = NULL;
  g_autoptr (GdaDataModel) rows = NULL;
  g_autoptr (GPtrArray) columns = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_hash_table_unref);
  g_autofree char *pragma = NULL;
  gboolean exists = FALSE;

  if (!table_exists (db, table, &exists, error))
    return NULL;
  if (!exists)
    return g_steal_pointer (&out);
  if (rtp_database_get_kind (db) == RTP_DATABASE_SQLITE)
    {
      pragma = g_strdup_printf ("SELECT name FROM pragma_table_info('%s')", table); /* a fixed table name of ours */
      info = rtp_database_select (db, error, pragma, NULL);
    }
  else
    info = rtp_database_select (db, error,
                                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                "current_schema() AND table_name = :t ORDER BY ordinal_position",
                                "t", RTP_DB_STR, table, NULL);
  if (info == NULL)
    return NULL;
  for (guint i = 0; i < rtp_db_rows (info); i++)
    {
      const char *name = rtp_db_str (info, i, 0);
      /* identifiers come from the file's own schema; refuse anything odd rather than quote it */
      for (const char *p = name; *p != '\0'; p++)
        if (!g_ascii_isalnum (*p) && *p != '_')
          {
            g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "unexpected column name in %s", table);
            return NULL;
          }
      g_string_append_printf (sql, "%sCAST(\"%s\" AS TEXT)", i > 0 ? ", " : "", name);
      g_ptr_array_add (columns, g_strdup (name));
    }
  g_string_append_printf (sql, " FROM \"%s\"", table);
  rows = rtp_database_select (db, error, sql->str, NULL);
  if (rows == NULL)
    return NULL;
  for (guint r = 0; r < rtp_db_rows (rows); r++)
    {
      GHashTable *row = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      for (guint c = 0; c < columns->len; c++)
        g_hash_table_insert (row, g_strdup (g_ptr_array_index (columns, c)), g_strdup (rtp_db_str (rows, r, c)));
      g_ptr_array_add (out, row);
    }
  return g_steal_pointer (&out);
}

static const char *
col (GHashTable *row, const char *a, const char *b)
{
  const char *v = g_hash_table_lookup (row, a);
  if (v == NULL && b != NULL)
    v = g_hash_table_lookup (row, b);
  return v;
}

static gboolean
parse_int (const char *text, gint64 *out)
{
  char *end = NULL;
  double d;

  if (text == NULL || text[0] == '\0')
    return FALSE;
  *out = g_ascii_strtoll (text, &end, 10);
  if (*end == '\0')
    return TRUE;
  d = g_ascii_strtod (text, &end); /* "5.0" from a REAL column */
  if (*end != '\0')
    return FALSE;
  *out = (gint64) d;
  return TRUE;
}

static gboolean
truthy (const char *text)
{
  return text != NULL &&
         (g_str_equal (text, "1") || g_ascii_strcasecmp (text, "true") == 0 || g_ascii_strcasecmp (text, "t") == 0);
}

static const char *
user_type (const char *old)
{
  return old != NULL && g_ascii_strcasecmp (old, "admin") == 0 ? "Admin" : "User";
}

gboolean
rtp_takeover_copy (RtpDatabase *from, gboolean legacy, RtpDatabase *to, RtpTakeoverCounts *counts, GError **error)
{
  g_autoptr (GPtrArray) users = NULL, experiments = NULL, pvs = NULL, assignments = NULL, subscriptions = NULL;

  memset (counts, 0, sizeof *counts);
  users = read_table (from, legacy ? "user" : "users", error);
  experiments = users != NULL ? read_table (from, legacy ? "experiment" : "experiments", error) : NULL;
  pvs = experiments != NULL ? read_table (from, legacy ? "process_variable" : "process_variables", error) : NULL;
  assignments = pvs != NULL ? read_table (from, legacy ? "users_to_experiments" : "user_experiments", error) : NULL;
  subscriptions = assignments != NULL ? read_table (from, legacy ? "subscription" : "subscriptions", error) : NULL;
  if (subscriptions == NULL)
    return FALSE;

  if (!rtp_database_begin (to, error))
    return FALSE;
  for (guint i = 0; i < users->len; i++)
    {
      GHashTable *u = g_ptr_array_index (users, i);
      const char *lang = col (u, "preferred_language", NULL);
      gint64 pwv = 0;
      parse_int (col (u, "password_version", NULL), &pwv);
      if (rtp_database_exec (
            to, error,
            "INSERT INTO users (user_id, login_name, first_name, last_name, email, password_hash, "
            "user_type, preferred_language, password_version) "
            "VALUES (:id, :login, :first, :last, :email, :hash, :type, :lang, :pwv)",
            "id", RTP_DB_STR, col (u, "user_id", "id"), "login", RTP_DB_STR, col (u, "login_name", NULL), "first",
            RTP_DB_STR, col (u, "first_name", NULL) != NULL ? col (u, "first_name", NULL) : "", "last", RTP_DB_STR,
            col (u, "last_name", NULL) != NULL ? col (u, "last_name", NULL) : "", "email", RTP_DB_STR,
            col (u, "email", NULL) != NULL && col (u, "email", NULL)[0] != '\0' ? col (u, "email", NULL) : NULL, "hash",
            RTP_DB_STR, col (u, "password_hash", "password") != NULL ? col (u, "password_hash", "password") : "",
            "type", RTP_DB_STR, user_type (col (u, "user_type", NULL)), "lang", RTP_DB_STR,
            lang != NULL && lang[0] != '\0' ? lang : "en", "pwv", RTP_DB_INT, pwv, NULL) < 0)
        goto fail;
      counts->users++;
    }
  for (guint i = 0; i < experiments->len; i++)
    {
      GHashTable *e = g_ptr_array_index (experiments, i);
      if (rtp_database_exec (to, error, "INSERT INTO experiments (short_id, human_readable_name) VALUES (:id, :name)",
                             "id", RTP_DB_STR, col (e, "short_id", NULL), "name", RTP_DB_STR,
                             col (e, "human_readable_name", NULL), NULL) < 0)
        goto fail;
      counts->experiments++;
    }
  for (guint i = 0; i < pvs->len; i++)
    {
      GHashTable *p = g_ptr_array_index (pvs, i);
      const char *pv = col (p, "pv_string", NULL);
      const char *colon = pv != NULL ? strchr (pv, ':') : NULL;
      g_autofree char *short_id = colon != NULL ? g_strndup (pv, (gsize) (colon - pv)) : NULL;
      gint64 min = 0, max = 0;
      gboolean has_min = parse_int (col (p, "default_threshold_min", NULL), &min);
      gboolean has_max = parse_int (col (p, "default_threshold_max", NULL), &max);
      const char *exp = col (p, "experiment_short_id", NULL);

      if (exp == NULL)
        exp = short_id;
      if (rtp_database_exec (to, error,
                             "INSERT INTO process_variables (pv_string, human_readable_name, experiment_short_id, "
                             "available_for_mqtt_publish, default_threshold_min, default_threshold_max) "
                             "VALUES (:pv, :name, :e, :pub, :min, :max)",
                             "pv", RTP_DB_STR, pv, "name", RTP_DB_STR, col (p, "human_readable_name", NULL), "e",
                             RTP_DB_STR, exp, "pub", RTP_DB_BOOL, truthy (col (p, "available_for_mqtt_publish", NULL)),
                             "min", RTP_DB_INT_NULL, has_min ? &min : NULL, "max", RTP_DB_INT_NULL,
                             has_max ? &max : NULL, NULL) < 0)
        goto fail;
      counts->process_variables++;
    }
  for (guint i = 0; i < assignments->len; i++)
    {
      GHashTable *a = g_ptr_array_index (assignments, i);
      if (rtp_database_exec (to, error, "INSERT INTO user_experiments (user_id, short_id) VALUES (:u, :e)", "u",
                             RTP_DB_STR, col (a, "user_id", NULL), "e", RTP_DB_STR,
                             col (a, "experiment_short_id", "short_id"), NULL) < 0)
        {
          /* the original did not prevent duplicate rows here */
          if (!g_error_matches (*error, RTP_ERROR, RTP_ERROR_EXISTS))
            goto fail;
          g_clear_error (error);
          continue;
        }
      counts->assignments++;
    }
  for (guint i = 0; i < subscriptions->len; i++)
    {
      GHashTable *s = g_ptr_array_index (subscriptions, i);
      gint64 min = 0, max = 0;
      if (!parse_int (col (s, "threshold_min", NULL), &min) || !parse_int (col (s, "threshold_max", NULL), &max))
        {
          g_warning ("skipping a subscription of %s to %s without integer thresholds", col (s, "user_id", NULL),
                     col (s, "pv_string", NULL));
          continue;
        }
      if (rtp_database_exec (to, error,
                             "INSERT INTO subscriptions (user_id, pv_string, email, threshold_min, threshold_max) "
                             "VALUES (:u, :pv, :e, :min, :max)",
                             "u", RTP_DB_STR, col (s, "user_id", NULL), "pv", RTP_DB_STR, col (s, "pv_string", NULL),
                             "e", RTP_DB_STR, col (s, "email", NULL) != NULL ? col (s, "email", NULL) : "", "min",
                             RTP_DB_INT, min, "max", RTP_DB_INT, max, NULL) < 0)
        {
          if (!g_error_matches (*error, RTP_ERROR, RTP_ERROR_EXISTS))
            goto fail;
          g_clear_error (error);
          continue;
        }
      counts->subscriptions++;
    }
  if (legacy && rtp_database_get_kind (from) == RTP_DATABASE_SQLITE && from == to)
    {
      static const char *const old[] = { "subscription", "users_to_experiments", "process_variable", "experiment",
                                         "user" };
      for (gsize i = 0; i < G_N_ELEMENTS (old); i++)
        {
          g_autofree char *drop = g_strdup_printf ("DROP TABLE IF EXISTS \"%s\"", old[i]);
          if (!rtp_database_exec_script (to, drop, error))
            goto fail;
        }
    }
  if (!rtp_database_commit (to, error))
    return FALSE;
  return TRUE;

fail:
  rtp_database_rollback (to);
  g_prefix_error (error, "copying the data failed, nothing was changed: ");
  return FALSE;
}

gboolean
rtp_takeover_upgrade_in_place (const char *uri, GError **error)
{
  g_autoptr (RtpDatabase) db = rtp_database_open_read_only (uri, error);
  g_autofree char *backup = NULL;
  g_autofree char *path = NULL;
  g_autoptr (GFile) src = NULL;
  g_autoptr (GFile) dst = NULL;
  RtpTakeoverCounts counts;
  gboolean legacy = FALSE;

  if (db == NULL || !rtp_takeover_is_legacy (db, &legacy, error))
    return FALSE;
  if (!legacy || rtp_database_get_kind (db) != RTP_DATABASE_SQLITE)
    return TRUE;
  path = g_strdup (rtp_database_get_sqlite_path (db));
  rtp_database_close (db);
  g_clear_object (&db);

  backup = g_strconcat (path, ".pre-migration.bak", NULL);
  src = g_file_new_for_path (path);
  dst = g_file_new_for_path (backup);
  if (!g_file_copy (src, dst, G_FILE_COPY_NONE, NULL, NULL, NULL, error))
    {
      g_prefix_error (error, "cannot keep a copy of the original database in %s: ", backup);
      return FALSE;
    }
  g_message ("the database is the original service's; a copy of it is kept in %s", backup);
  db = rtp_database_open (uri, error);
  if (db == NULL || !rtp_database_migrate (db, error) || !rtp_takeover_copy (db, TRUE, db, &counts, error))
    return FALSE;
  g_message ("upgraded the original service's database in place: %u users, %u experiments, %u process variables, "
             "%u assignments, %u subscriptions; old password hashes are replaced at each user's next login",
             counts.users, counts.experiments, counts.process_variables, counts.assignments, counts.subscriptions);
  return TRUE;
}
