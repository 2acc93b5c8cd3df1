/* test-database.c: RtpDatabase on a real SQLite file: URIs, statements, transactions, migrations */
#include "rtp-database.h"
#include "rtp-error.h"
#include "rtp-test-util.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <glib/gstdio.h>
#include <unistd.h>

typedef struct {
  char *dir;
  char *uri;
  RtpDatabase *db;
} Fixture;

static void
setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  f->dir = rtp_test_make_dir ();
  f->uri = g_strdup_printf ("sqlite:///%s/test.db", f->dir);
  f->db = rtp_database_open (f->uri, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->db);
}

static void
teardown (Fixture *f, gconstpointer data)
{
  g_clear_object (&f->db);
  rtp_test_remove_dir (f->dir);
  g_free (f->dir);
  g_free (f->uri);
}

static void
test_parse_uri (void)
{
  RtpDatabaseKind kind;
  g_autofree char *provider = NULL, *cnc = NULL, *auth = NULL, *path = NULL;
  g_autoptr (GError) error = NULL;

  g_assert_true (rtp_database_parse_uri ("postgresql+psycopg2://rtp:p%40ss;x@db.example:5433/lab", &kind, &provider,
                                         &cnc, &auth, &path, &error));
  g_assert_no_error (error);
  g_assert_cmpint (kind, ==, RTP_DATABASE_POSTGRESQL);
  g_assert_cmpstr (provider, ==, "PostgreSQL");
  g_assert_cmpstr (cnc, ==, "DB_NAME=lab;HOST=db.example;PORT=5433");
  g_assert_cmpstr (auth, ==, "USERNAME=rtp;PASSWORD=p%40ss%3bx");
  g_assert_null (path);
  g_clear_pointer (&provider, g_free);
  g_clear_pointer (&cnc, g_free);
  g_clear_pointer (&auth, g_free);

  g_assert_true (
    rtp_database_parse_uri ("sqlite:////var/lib/rtp/app.db", &kind, &provider, &cnc, &auth, &path, &error));
  g_assert_cmpint (kind, ==, RTP_DATABASE_SQLITE);
  g_assert_cmpstr (cnc, ==, "DB_DIR=%2fvar%2flib%2frtp;DB_NAME=app");
  g_assert_cmpstr (path, ==, "/var/lib/rtp/app.db");
  g_clear_pointer (&provider, g_free);
  g_clear_pointer (&cnc, g_free);
  g_clear_pointer (&path, g_free);

  g_assert_false (rtp_database_parse_uri ("sqlite:///", &kind, &provider, &cnc, &auth, &path, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_false (rtp_database_parse_uri ("postgresql://host", &kind, &provider, &cnc, &auth, &path, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
}

static void
test_statements (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GdaDataModel) model = NULL;
  gint64 five = 5;
  gint64 v = -1;

  g_assert_true (rtp_database_exec_script (
    f->db,
    "CREATE TABLE t (name TEXT PRIMARY KEY, n INTEGER,\n  -- a whole-line comment; with a semicolon\n flag INTEGER)",
    &error));
  g_assert_no_error (error);
  g_assert_cmpint (rtp_database_exec (f->db, &error, "INSERT INTO t (name, n, flag) VALUES (:name, :n, :flag)", "name",
                                      RTP_DB_STR, "it's; DROP TABLE t; --", "n", RTP_DB_INT_NULL, &five, "flag",
                                      RTP_DB_BOOL, TRUE, NULL),
                   ==, 1);
  g_assert_no_error (error);
  g_assert_cmpint (rtp_database_exec (f->db, &error, "INSERT INTO t (name, n, flag) VALUES (:name, :n, :flag)", "name",
                                      RTP_DB_STR, "zero", "n", RTP_DB_INT_NULL, NULL, "flag", RTP_DB_BOOL, FALSE, NULL),
                   ==, 1);

  /* a duplicate primary key is classified once, as EXISTS */
  g_assert_cmpint (rtp_database_exec (f->db, &error, "INSERT INTO t (name) VALUES (:name)", "name", RTP_DB_STR, "zero",
                                      NULL),
                   ==, -1);
  g_assert_error (error, RTP_ERROR, RTP_ERROR_EXISTS);
  g_clear_error (&error);

  model = rtp_database_select (f->db, &error, "SELECT name, n, flag FROM t WHERE name <> :x ORDER BY name", "x",
                               RTP_DB_STR, "", NULL);
  g_assert_no_error (error);
  g_assert_cmpuint (rtp_db_rows (model), ==, 2);
  g_assert_cmpstr (rtp_db_str (model, 0, 0), ==, "it's; DROP TABLE t; --");
  g_assert_true (rtp_db_int (model, 0, 1, &v));
  g_assert_cmpint (v, ==, 5);
  g_assert_cmpint (rtp_db_int0 (model, 0, 2), ==, 1);
  g_assert_false (rtp_db_int (model, 1, 1, &v)); /* NULL */
}

/* NULL values are written into the SQL rather than bound (libgda leaks a statement copy per execution
 * with a NULL parameter; bench/soak shows the growth): "= NULL" must still compare as IS NULL (and <>
 * as IS NOT NULL), as libgda's own rewrite did, while in an UPDATE's SET list "=" assigns NULL. */
static void
test_null_values (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  gint64 one = 1;

  g_assert_true (rtp_database_exec_script (f->db, "CREATE TABLE u (id TEXT PRIMARY KEY, tag TEXT, n INTEGER)", &error));
  g_assert_cmpint (rtp_database_exec (f->db, &error, "INSERT INTO u (id, tag, n) VALUES ('a', 'x', 1), ('b', NULL, 2)",
                                      NULL),
                   ==, 2);
  for (int i = 0; i < 20; i++)
    {
      g_assert_cmpint (rtp_database_select_int (f->db, &error, "SELECT COUNT(*) FROM u WHERE tag = :t", "t", RTP_DB_STR,
                                                NULL, NULL),
                       ==, 1);
      g_assert_cmpint (rtp_database_select_int (f->db, &error, "SELECT COUNT(*) FROM u WHERE tag <> :t", "t",
                                                RTP_DB_STR, NULL, NULL),
                       ==, 1);
      g_assert_cmpint (rtp_database_select_int (f->db, &error, "SELECT COUNT(*) FROM u WHERE tag != :t AND n >= :n",
                                                "t", RTP_DB_STR, NULL, "n", RTP_DB_INT, (gint64) 1, NULL),
                       ==, 1);
      g_assert_cmpint (rtp_database_select_int (f->db, &error, "SELECT COUNT(*) FROM u WHERE COALESCE(:t, tag) = tag",
                                                "t", RTP_DB_STR, NULL, NULL),
                       ==, 1);
    }
  g_assert_no_error (error);
  g_assert_cmpint (rtp_database_exec (f->db, &error, "UPDATE u SET tag = :t, n = :n WHERE id = :id", "t", RTP_DB_STR,
                                      NULL, "n", RTP_DB_INT_NULL, NULL, "id", RTP_DB_STR, "a", NULL),
                   ==, 1);
  g_assert_cmpint (rtp_database_select_int (f->db, &error, "SELECT COUNT(*) FROM u WHERE tag IS NULL", NULL), ==, 2);
  g_assert_cmpint (rtp_database_select_int (f->db, &error, "SELECT COUNT(*) FROM u WHERE n IS NULL", NULL), ==, 1);
  g_assert_cmpint (rtp_database_exec (f->db, &error, "UPDATE u SET n = :n WHERE id = :id", "n", RTP_DB_INT_NULL, &one,
                                      "id", RTP_DB_STR, "a", NULL),
                   ==, 1);
  g_assert_cmpint (rtp_database_select_int (f->db, &error, "SELECT n FROM u WHERE id = 'a'", NULL), ==, 1);
  g_assert_no_error (error);
}

static void
test_transactions (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GdaDataModel) model = NULL;

  g_assert_true (rtp_database_exec_script (f->db, "CREATE TABLE t (name TEXT PRIMARY KEY)", &error));
  g_assert_true (rtp_database_begin (f->db, &error));
  rtp_database_exec (f->db, &error, "INSERT INTO t VALUES (:n)", "n", RTP_DB_STR, "rolled back", NULL);
  rtp_database_rollback (f->db);

  g_assert_true (rtp_database_begin (f->db, &error));
  rtp_database_exec (f->db, &error, "INSERT INTO t VALUES (:n)", "n", RTP_DB_STR, "kept", NULL);
  g_assert_true (rtp_database_savepoint (f->db, "line2", &error));
  rtp_database_exec (f->db, &error, "INSERT INTO t VALUES (:n)", "n", RTP_DB_STR, "savepoint undone", NULL);
  rtp_database_rollback_to (f->db, "line2");
  g_assert_true (rtp_database_commit (f->db, &error));
  g_assert_no_error (error);

  model = rtp_database_select (f->db, &error, "SELECT name FROM t", NULL);
  g_assert_cmpuint (rtp_db_rows (model), ==, 1);
  g_assert_cmpstr (rtp_db_str (model, 0, 0), ==, "kept");
}

static void
test_migrations (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GdaDataModel) model = NULL;
  gint64 latest = rtp_database_get_latest_schema_version ();

  g_assert_cmpint (latest, >=, 1);
  /* an old file: only the first migration, with a user in it */
  g_assert_true (rtp_database_migrate_to (f->db, 1, &error));
  g_assert_no_error (error);
  g_assert_cmpint (rtp_database_get_schema_version (f->db, &error), ==, 1);
  g_assert_cmpint (rtp_database_exec (f->db, &error,
                                      "INSERT INTO users (user_id, login_name, first_name, last_name, password_hash) "
                                      "VALUES ('7', 'old', 'O', 'L', 'x')",
                                      NULL),
                   ==, 1);
  g_clear_object (&f->db);

  /* reopened and migrated forward: the data is still there, the version is the newest */
  f->db = rtp_database_open (f->uri, &error);
  g_assert_true (rtp_database_migrate (f->db, &error));
  g_assert_no_error (error);
  g_assert_cmpint (rtp_database_get_schema_version (f->db, &error), ==, latest);
  model = rtp_database_select (f->db, &error, "SELECT login_name, user_type, preferred_language FROM users", NULL);
  g_assert_cmpuint (rtp_db_rows (model), ==, 1);
  g_assert_cmpstr (rtp_db_str (model, 0, 0), ==, "old");
  g_assert_cmpstr (rtp_db_str (model, 0, 1), ==, "User");

  /* a second run changes nothing */
  g_assert_true (rtp_database_migrate (f->db, &error));
  g_clear_object (&model);
  model = rtp_database_select (f->db, &error, "SELECT COUNT(*) FROM schema_version", NULL);
  g_assert_cmpint (rtp_db_int0 (model, 0, 0), ==, latest);
}

static void
test_wal_and_foreign_keys (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (rtp_database_exec_script (f->db,
                                           "CREATE TABLE p (id TEXT PRIMARY KEY);"
                                           "CREATE TABLE c (pid TEXT REFERENCES p(id) ON DELETE CASCADE)",
                                           &error));
  g_assert_cmpint (rtp_database_exec (f->db, &error, "INSERT INTO c VALUES ('missing')", NULL), ==, -1);
  g_assert_nonnull (error); /* foreign keys are enforced */
  g_clear_error (&error);
  g_assert_cmpint (rtp_database_exec (f->db, &error, "INSERT INTO p VALUES ('a')", NULL), ==, 1);
  g_assert_cmpint (rtp_database_exec (f->db, &error, "INSERT INTO c VALUES ('a')", NULL), ==, 1);
  g_assert_cmpint (rtp_database_exec (f->db, &error, "DELETE FROM p", NULL), ==, 1);
  {
    g_autoptr (GdaDataModel) model = rtp_database_select (f->db, &error, "SELECT COUNT(*) FROM c", NULL);
    g_assert_cmpint (rtp_db_int0 (model, 0, 0), ==, 0);
  }
  {
    g_autofree char *wal = g_strdup_printf ("%s/test.db-wal", f->dir);
    g_assert_true (g_file_test (wal, G_FILE_TEST_EXISTS));
  }
}

/* Whatever changes the file, this connection or another one (another instance, another process),
 * changes the stamp; reads alone do not; inside a transaction nothing read may be reused. */
static void
test_change_stamp (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpDatabase) other = rtp_database_open (f->uri, &error);
  guint64 s1, s2, s3;

  g_assert_no_error (error);
  g_assert_true (rtp_database_migrate (f->db, &error));
  g_assert_no_error (error);
  s1 = rtp_database_get_change_stamp (f->db);
  g_assert_cmpuint (s1, !=, 0);
  g_assert_cmpint (rtp_database_select_int (f->db, &error, "SELECT COUNT(*) FROM users", NULL), ==, 0);
  g_assert_cmpint (rtp_database_select_int (other, &error, "SELECT COUNT(*) FROM users", NULL), ==, 0);
  g_assert_cmpuint (rtp_database_get_change_stamp (f->db), ==, s1);

  /* a commit by the other connection */
  g_assert_cmpint (rtp_database_exec (other, &error,
                                      "INSERT INTO users (user_id, login_name, first_name, last_name, password_hash) "
                                      "VALUES ('u1', 'ada', 'Ada', 'L', 'x')",
                                      NULL),
                   ==, 1);
  s2 = rtp_database_get_change_stamp (f->db);
  g_assert_cmpuint (s2, !=, 0);
  g_assert_cmpuint (s2, !=, s1);
  g_assert_cmpuint (rtp_database_get_change_stamp (f->db), ==, s2);

  /* its own write */
  g_assert_cmpint (rtp_database_exec (f->db, &error, "UPDATE users SET first_name = 'Grace'", NULL), ==, 1);
  s3 = rtp_database_get_change_stamp (f->db);
  g_assert_cmpuint (s3, !=, 0);
  g_assert_cmpuint (s3, !=, s2);

  /* a transaction of the other connection counts when it commits, and only then */
  g_assert_true (rtp_database_begin (other, &error));
  g_assert_cmpuint (rtp_database_get_change_stamp (other), ==, 0);
  g_assert_cmpint (rtp_database_exec (other, &error, "UPDATE users SET last_name = 'H'", NULL), ==, 1);
  g_assert_cmpuint (rtp_database_get_change_stamp (f->db), ==, s3);
  g_assert_true (rtp_database_commit (other, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (rtp_database_get_change_stamp (f->db), !=, s3);

  /* a transaction that only reads changes nothing (the alerter's, for a value that leaves an alarm
   * as it was: kept values must stay); one that writes does, and so does a rollback */
  s1 = rtp_database_get_change_stamp (f->db);
  s2 = rtp_database_get_change_stamp (other);
  g_assert_true (rtp_database_begin (f->db, &error));
  g_assert_cmpint (rtp_database_select_int (f->db, &error, "SELECT COUNT(*) FROM users", NULL), ==, 1);
  g_assert_true (rtp_database_commit (f->db, &error));
  g_assert_cmpuint (rtp_database_get_change_stamp (f->db), ==, s1);
  g_assert_cmpuint (rtp_database_get_change_stamp (other), ==, s2);
  g_assert_true (rtp_database_begin (f->db, &error));
  g_assert_cmpint (rtp_database_exec (f->db, &error, "UPDATE users SET email = 'a@example.org'", NULL), ==, 1);
  g_assert_true (rtp_database_commit (f->db, &error));
  g_assert_cmpuint (rtp_database_get_change_stamp (f->db), !=, s1);
  g_assert_cmpuint (rtp_database_get_change_stamp (other), !=, s2);
  s1 = rtp_database_get_change_stamp (f->db);
  g_assert_true (rtp_database_begin (f->db, &error));
  rtp_database_rollback (f->db);
  g_assert_cmpuint (rtp_database_get_change_stamp (f->db), !=, s1);
  g_assert_no_error (error);
}

/* Only changes of what is kept move the stamp (users, assignments, experiments, PVs, subscriptions,
 * the state of alarms): a write of anything else — a mail marked sent, an alarm's latest value —
 * by this connection or another leaves every kept value in place; during an alarm flood each of
 * hundreds of notifications made every alarmed PV read its subscriptions again. */
static void
test_change_stamp_of_kept_rows_only (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpDatabase) other = rtp_database_open (f->uri, &error);
  const char *setup_sql[] = {
    "INSERT INTO users (user_id, login_name, first_name, last_name, password_hash) VALUES ('u1', 'ada', 'A', 'L', 'x')",
    "INSERT INTO experiments (short_id) VALUES ('E1')",
    "INSERT INTO process_variables (pv_string, experiment_short_id) VALUES ('PV:1', 'E1')",
    "INSERT INTO subscriptions (user_id, pv_string, email, threshold_min, threshold_max) "
    "VALUES ('u1', 'PV:1', 'a@example.org', 0, 10)",
    "INSERT INTO alert_episodes (id, user_id, pv_string, opened_us, last_notified_us, breach_value, threshold_min, "
    "threshold_max) VALUES ('a1', 'u1', 'PV:1', 1, 1, '11', 0, 10)",
    "INSERT INTO alert_mails (id, episode_id, created_us, recipient, subject, body, next_attempt_us) "
    "VALUES ('m1', 'a1', 1, 'a@example.org', 's', 'b', 1)",
  };
  /* (connection, statement, whether it changes what is kept) */
  const struct {
    gboolean on_other;
    const char *sql;
    gboolean kept;
  } writes[] = {
    { FALSE, "UPDATE alert_mails SET sent_us = 2, attempts = attempts + 1 WHERE id = 'm1'", FALSE },
    { TRUE, "UPDATE alert_mails SET attempts = attempts + 1 WHERE id = 'm1'", FALSE },
    { FALSE, "UPDATE alert_episodes SET value = '12' WHERE id = 'a1'", FALSE },
    { TRUE, "UPDATE alert_episodes SET value = '13', last_change_us = 3 WHERE id = 'a1'", FALSE },
    { FALSE, "INSERT INTO settings (name, value) VALUES ('x', '1')", FALSE },
    { FALSE, "UPDATE alert_episodes SET acknowledged_by = 'u1' WHERE id = 'a1'", TRUE },
    { TRUE, "UPDATE alert_episodes SET severity = 'MINOR' WHERE id = 'a1'", TRUE },
    { TRUE, "UPDATE alert_episodes SET closed_us = 5 WHERE id = 'a1'", TRUE },
    { FALSE, "UPDATE subscriptions SET out_since_us = 4", TRUE },
    { TRUE, "UPDATE subscriptions SET delay_s = 3", TRUE },
    { TRUE, "UPDATE process_variables SET human_readable_name = 'p'", TRUE },
    { FALSE, "UPDATE experiments SET human_readable_name = 'e'", TRUE },
    { TRUE, "INSERT INTO user_experiments (user_id, short_id) VALUES ('u1', 'E1')", TRUE },
    { FALSE, "DELETE FROM user_experiments", TRUE },
  };

  g_assert_no_error (error);
  g_assert_true (rtp_database_migrate (f->db, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (setup_sql); i++)
    g_assert_cmpint (rtp_database_exec (f->db, &error, setup_sql[i], NULL), ==, 1);
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (writes); i++)
    {
      guint64 mine = rtp_database_get_change_stamp (f->db);
      guint64 theirs = rtp_database_get_change_stamp (other);

      g_test_message ("%s", writes[i].sql);
      g_assert_cmpuint (mine, !=, 0);
      g_assert_cmpuint (theirs, !=, 0);
      g_assert_cmpint (rtp_database_exec (writes[i].on_other ? other : f->db, &error, writes[i].sql, NULL), ==, 1);
      g_assert_no_error (error);
      if (writes[i].kept)
        {
          g_assert_cmpuint (rtp_database_get_change_stamp (f->db), !=, mine);
          g_assert_cmpuint (rtp_database_get_change_stamp (other), !=, theirs);
        }
      else
        {
          g_assert_cmpuint (rtp_database_get_change_stamp (f->db), ==, mine);
          g_assert_cmpuint (rtp_database_get_change_stamp (other), ==, theirs);
        }
    }
}

/* no change counter (a database not migrated): nothing may be kept */
static void
test_change_stamp_without_counter (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (rtp_database_exec_script (f->db, "CREATE TABLE c (n INTEGER)", &error));
  g_assert_cmpuint (rtp_database_get_change_stamp (f->db), ==, 0);
}

/* libgda opens DB_NAME.db when it exists, before DB_NAME: the WAL index watched must be that
 * file's, whichever name the URI gave */
static void
test_change_stamp_of_the_file_opened (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = rtp_test_make_dir ();
  g_autofree char *uri = g_strdup_printf ("sqlite:///%s/lab", dir);
  g_autofree char *with_suffix = g_strdup_printf ("%s/lab.db", dir);
  RtpDatabase *db;
  RtpDatabase *other;
  guint64 s1;

  g_assert_true (g_file_set_contents (with_suffix, "", 0, &error));
  db = rtp_database_open (uri, &error);
  g_assert_no_error (error);
  other = rtp_database_open (uri, &error);
  g_assert_no_error (error);
  g_assert_true (rtp_database_migrate (other, &error));
  g_assert_true (g_file_test (with_suffix, G_FILE_TEST_EXISTS));
  s1 = rtp_database_get_change_stamp (db);
  g_assert_cmpuint (s1, !=, 0);
  g_assert_cmpint (rtp_database_exec (other, &error, "INSERT INTO experiments (short_id) VALUES ('E1')", NULL), ==, 1);
  g_assert_cmpuint (rtp_database_get_change_stamp (db), !=, s1);
  g_object_unref (other);
  g_object_unref (db);
  rtp_test_remove_dir (dir);
}

/* Several servers on one SQLite file: one of them leads (a lock on "<file>-leader") until it closes
 * or its process ends, whoever holds the lock. */
static void
test_leadership (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpDatabase) other = NULL;
  g_autoptr (RtpDatabase) third = NULL;
  g_autofree char *lock = g_strdup_printf ("%s/test.db-leader", f->dir);
  int ready[2];
  char c;
  pid_t holder;
  guint64 stamp;

  other = rtp_database_open (f->uri, &error);
  g_assert_no_error (error);
  g_assert_true (rtp_database_migrate (f->db, &error));

  stamp = rtp_database_get_change_stamp (other);
  g_assert_cmpuint (stamp, !=, 0);
  g_assert_true (rtp_database_try_leadership (f->db));
  g_assert_false (rtp_database_try_leadership (other));
  g_assert_true (rtp_database_try_leadership (f->db));
  g_assert_false (rtp_database_try_leadership (other));
  g_assert_cmpuint (rtp_database_get_change_stamp (other), ==, stamp); /* leading writes nothing */

  /* closed: the other one takes over at its next try — not one right after a failed one, whose
   * answer stands for a quarter of a second (it is asked at every MQTT value) */
  rtp_database_close (f->db);
  g_assert_false (rtp_database_try_leadership (other));
  g_usleep (300000);
  g_assert_true (rtp_database_try_leadership (other));
  rtp_database_close (other);

  /* held by another process: not while it lives; at once when it ended (killed: no valgrind report
   * of the child; it calls only async-signal-safe functions) */
  g_assert_cmpint (pipe (ready), ==, 0);
  holder = fork ();
  g_assert_cmpint (holder, >=, 0);
  if (holder == 0)
    {
      int fd = open (lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (fd < 0 || flock (fd, LOCK_EX) != 0 || write (ready[1], "x", 1) != 1)
        _exit (1); /* the parent reads nothing and fails */
      for (;;)
        pause ();
    }
  close (ready[1]);
  g_assert_cmpint (read (ready[0], &c, 1), ==, 1);
  close (ready[0]);
  third = rtp_database_open (f->uri, &error);
  g_assert_no_error (error);
  g_assert_false (rtp_database_try_leadership (third));
  g_assert_false (rtp_database_try_leadership (third));
  kill (holder, SIGKILL);
  g_assert_cmpint (waitpid (holder, NULL, 0), ==, holder);
  g_usleep (300000);
  g_assert_true (rtp_database_try_leadership (third));
}

/* No lock file to be had (here: a directory in its place): one server on its file still alerts. */
static void
test_leadership_without_lock_file (Fixture *f, gconstpointer data)
{
  g_autofree char *lock = g_strdup_printf ("%s/test.db-leader", f->dir);

  g_assert_cmpint (g_mkdir (lock, 0700), ==, 0);
  rtp_test_expect_log ("RtpDatabase", G_LOG_LEVEL_WARNING, "cannot open *test.db-leader*without the lock*");
  g_assert_true (rtp_database_try_leadership (f->db));
  rtp_test_assert_expected_log ();
  g_assert_true (rtp_database_try_leadership (f->db));
  g_assert_cmpint (g_rmdir (lock), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_log_set_writer_func (rtp_test_log_writer, NULL, NULL);
  g_test_add_func ("/database/parse-uri", test_parse_uri);
  g_test_add ("/database/statements", Fixture, NULL, setup, test_statements, teardown);
  g_test_add ("/database/null-values", Fixture, NULL, setup, test_null_values, teardown);
  g_test_add ("/database/transactions", Fixture, NULL, setup, test_transactions, teardown);
  g_test_add ("/database/migrations", Fixture, NULL, setup, test_migrations, teardown);
  g_test_add ("/database/change-stamp", Fixture, NULL, setup, test_change_stamp, teardown);
  g_test_add ("/database/change-stamp-of-kept-rows-only", Fixture, NULL, setup, test_change_stamp_of_kept_rows_only,
              teardown);
  g_test_add ("/database/change-stamp-without-counter", Fixture, NULL, setup, test_change_stamp_without_counter,
              teardown);
  g_test_add_func ("/database/change-stamp-of-the-file-opened", test_change_stamp_of_the_file_opened);
  g_test_add ("/database/leadership", Fixture, NULL, setup, test_leadership, teardown);
  g_test_add ("/database/leadership-without-lock-file", Fixture, NULL, setup, test_leadership_without_lock_file,
              teardown);
  g_test_add ("/database/wal-and-foreign-keys", Fixture, NULL, setup, test_wal_and_foreign_keys, teardown);
  return g_test_run ();
}
