/* rtp-user-manager.c: users, password checks, access tokens
 *
 * All database work happens on the main thread; password hashing and verification run
 * in GTask worker threads (a hash costs tens of milliseconds on purpose), so a burst of
 * logins never stalls other requests. */
#define G_LOG_DOMAIN "RtpUserManager"

#include "rtp-user-manager.h"

#include "rtp-stamp-cache.h"
#include "rtp-error.h"
#include "rtp-validate.h"
#include "rtp-i18n.h"
#include "rtp-jwt.h"
#include "rtp-password.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#define USER_COLUMNS                                                                                                   \
  "user_id, login_name, first_name, last_name, email, user_type, preferred_language, password_version, source"

struct _RtpUserManager {
  GObject parent_instance;

  RtpDatabase *db;   /* (owned) */
  GBytes *key;       /* (owned) signing key */
  char *legacy_salt; /* (owned) (nullable) */
  gint64 token_validity_s;
  guint max_failures;
  guint lockout_s;
  guint max_pending; /* password checks of logins queued or running at most */
  guint pending;
  GHashTable *failures;  /* (owned) "login\nclient" → Failures */
  char *dummy_hash;      /* (owned) verified against for unknown logins, against timing probes */
  char *select_by_id;    /* (owned) the SQL of user_from_row()'s columns, built once for the dialect */
  char *select_by_login; /* (owned) the same with password_hash */
  char *select_all;      /* (owned) */
  /* the token check's two memories, main thread only (see verify_token) */
  GHashTable *verified;    /* (owned) token → VerifiedToken: tokens whose signature was checked */
  RtpStampCache *users;    /* (owned) user_id → RtpUser */
  RtpDirectory *directory; /* (owned) (nullable) */
};

typedef struct {
  char *user_id;
  gint64 pwv;
  gint64 exp;
} VerifiedToken;

/* rtp_database_serialize()'s key for changes that may remove an admin */
#define ADMINS_LOCK_KEY G_GINT64_CONSTANT (0x52545041444d494e) /* "RTPADMIN" */

/* past this many tokens the memory starts again empty */
#define MAX_VERIFIED_TOKENS 4096

typedef struct {
  GQueue times;        /* monotonic seconds of recent failures */
  gint64 locked_until; /* monotonic seconds, 0 when not locked */
  guint in_progress;   /* attempts being hashed now: each counts as a failure until it is decided */
} Failures;

G_DEFINE_TYPE (RtpUserManager, rtp_user_manager, G_TYPE_OBJECT)

enum { SIGNAL_USER_DELETING, N_SIGNALS };
static guint signals[N_SIGNALS];

/* ---- RtpUser ---------------------------------------------------------------- */

void
rtp_user_free (RtpUser *user)
{
  if (user == NULL)
    return;
  g_free (user->user_id);
  g_free (user->login_name);
  g_free (user->first_name);
  g_free (user->last_name);
  g_free (user->email);
  g_free (user->user_type);
  g_free (user->preferred_language);
  g_clear_pointer (&user->experiment_ids, g_ptr_array_unref);
  g_free (user);
}

RtpUser *
rtp_user_copy (const RtpUser *user)
{
  RtpUser *copy = g_new0 (RtpUser, 1);

  copy->user_id = g_strdup (user->user_id);
  copy->login_name = g_strdup (user->login_name);
  copy->first_name = g_strdup (user->first_name);
  copy->last_name = g_strdup (user->last_name);
  copy->email = g_strdup (user->email);
  copy->user_type = g_strdup (user->user_type);
  copy->preferred_language = g_strdup (user->preferred_language);
  copy->password_version = user->password_version;
  copy->from_directory = user->from_directory;
  copy->experiment_ids = rtp_str_list_copy (user->experiment_ids);
  return copy;
}

gboolean
rtp_user_is_admin (const RtpUser *user)
{
  return user != NULL && g_strcmp0 (user->user_type, "Admin") == 0;
}

/**
 * rtp_user_get_assigned:
 * @assigned: (out): whether @short_id is among the user's experiments
 *
 * Answers from the assignments read together with the user (the token check's user is as
 * current as a query made now would be).
 *
 * Returns: %FALSE when the user was read without its assignments: ask the database
 */
gboolean
rtp_user_get_assigned (const RtpUser *user, const char *short_id, gboolean *assigned)
{
  if (user->experiment_ids == NULL)
    return FALSE;
  *assigned = FALSE;
  for (guint i = 0; i < user->experiment_ids->len && !*assigned; i++)
    *assigned = g_str_equal (g_ptr_array_index (user->experiment_ids, i), short_id);
  return TRUE;
}

/* The columns user_from_row() reads (the assignments aggregated with @agg, so that a user costs one
 * statement), with password_hash after them when asked for, then @tail. */
static char *
select_users (const char *agg, gboolean with_hash, const char *tail)
{
  return g_strdup_printf ("SELECT " USER_COLUMNS
                          ", (SELECT %s FROM user_experiments ue WHERE ue.user_id = users.user_id)"
                          "%s FROM users %s",
                          agg, with_hash ? ", password_hash" : "", tail);
}

static RtpUser *
user_from_row (GdaDataModel *model, guint row)
{
  RtpUser *user = g_new0 (RtpUser, 1);

  user->user_id = g_strdup (rtp_db_str (model, row, 0));
  user->login_name = g_strdup (rtp_db_str (model, row, 1));
  user->first_name = g_strdup (rtp_db_str (model, row, 2));
  user->last_name = g_strdup (rtp_db_str (model, row, 3));
  user->email = g_strdup (rtp_db_str (model, row, 4));
  user->user_type = g_strdup (rtp_db_str (model, row, 5));
  user->preferred_language = g_strdup (rtp_db_str (model, row, 6));
  user->password_version = rtp_db_int0 (model, row, 7);
  user->from_directory = g_strcmp0 (rtp_db_str (model, row, 8), "directory") == 0;
  user->experiment_ids = rtp_db_str_list (model, row, 9);
  return user;
}

/* ---- object ---------------------------------------------------------------- */

static void
failures_free (gpointer data)
{
  Failures *f = data;
  g_queue_clear (&f->times);
  g_free (f);
}

static void
verified_token_free (gpointer data)
{
  VerifiedToken *t = data;
  g_free (t->user_id);
  g_free (t);
}

static void
rtp_user_manager_finalize (GObject *object)
{
  RtpUserManager *self = RTP_USER_MANAGER (object);

  g_clear_object (&self->db);
  g_clear_pointer (&self->key, g_bytes_unref);
  g_free (self->legacy_salt);
  g_hash_table_unref (self->failures);
  g_free (self->dummy_hash);
  g_free (self->select_by_id);
  g_free (self->select_by_login);
  g_free (self->select_all);
  g_hash_table_unref (self->verified);
  rtp_stamp_cache_free (self->users);
  g_clear_object (&self->directory);
  G_OBJECT_CLASS (rtp_user_manager_parent_class)->finalize (object);
}

static void
rtp_user_manager_class_init (RtpUserManagerClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_user_manager_finalize;
  /**
   * RtpUserManager::user-deleting:
   * @user_id: the user about to be deleted
   * @error: (type gpointer): a `GError **` a handler sets to refuse (the delete is rolled back)
   *
   * Emitted inside the deleting transaction, so that what hangs on the user can be
   * handled atomically with it.
   */
  signals[SIGNAL_USER_DELETING] = g_signal_new ("user-deleting", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                                                NULL, NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_POINTER);
}

static void
rtp_user_manager_init (RtpUserManager *self)
{
  self->failures = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, failures_free);
  self->verified = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, verified_token_free);
}

RtpUserManager *
rtp_user_manager_new (RtpDatabase *db, const guint8 *signing_key, gsize key_len, const RtpUserManagerSettings *settings)
{
  RtpUserManager *self = g_object_new (RTP_TYPE_USER_MANAGER, NULL);
  g_autofree char *agg = rtp_database_list_agg (db, "short_id");

  self->db = g_object_ref (db);
  self->users = rtp_stamp_cache_new (db, (GBoxedCopyFunc) rtp_user_copy, (GDestroyNotify) rtp_user_free);
  self->select_by_id = select_users (agg, FALSE, "WHERE user_id = :id");
  self->select_by_login = select_users (agg, TRUE, "WHERE login_name = :login");
  self->select_all = select_users (agg, FALSE, "ORDER BY login_name");
  self->key = g_bytes_new (signing_key, key_len);
  self->legacy_salt = g_strdup (settings->legacy_salt);
  self->token_validity_s = settings->token_validity_s > 0 ? settings->token_validity_s : 7200;
  self->max_failures = settings->max_failures > 0 ? settings->max_failures : 10;
  self->lockout_s = settings->lockout_s > 0 ? settings->lockout_s : 60;
  self->max_pending = settings->max_pending > 0 ? settings->max_pending : 64;
  return self;
}

void
rtp_user_manager_set_directory (RtpUserManager *self, RtpDirectory *directory)
{
  g_set_object (&self->directory, directory);
}

static gboolean
valid_user_type (const char *type)
{
  return g_strcmp0 (type, "Admin") == 0 || g_strcmp0 (type, "User") == 0;
}

const char *const rtp_user_field_names[RTP_USER_N_FIELDS] = {
  "login_name", "first_name", "last_name", "email", "user_type", "preferred_language", "password",
};

RtpUserChanges *
rtp_user_changes_new (void)
{
  return g_new0 (RtpUserChanges, 1);
}

void
rtp_user_changes_set (RtpUserChanges *changes, RtpUserField field, RtpFieldState state, const char *text)
{
  g_return_if_fail (changes != NULL && field < RTP_USER_N_FIELDS);
  g_return_if_fail (state != RTP_FIELD_SET || text != NULL);
  changes->state[field] = state;
  g_free (changes->text[field]);
  changes->text[field] = state == RTP_FIELD_SET ? g_strdup (text) : NULL;
}

static RtpUserChanges *
user_changes_copy (const RtpUserChanges *changes)
{
  RtpUserChanges *copy = rtp_user_changes_new ();
  for (guint i = 0; i < RTP_USER_N_FIELDS; i++)
    rtp_user_changes_set (copy, i, changes->state[i], changes->text[i]);
  return copy;
}

void
rtp_user_changes_free (RtpUserChanges *changes)
{
  if (changes == NULL)
    return;
  for (guint i = 0; i < RTP_USER_N_FIELDS; i++)
    g_free (changes->text[i]);
  g_free (changes);
}

static gboolean
given (const RtpUserChanges *c, RtpUserField f)
{
  return c->state[f] != RTP_FIELD_ABSENT;
}

/* A field that must be a string (or, when @nullable, null) when given. */
static gboolean
is_string (const RtpUserChanges *c, RtpUserField f, gboolean nullable)
{
  switch (c->state[f])
    {
      case RTP_FIELD_ABSENT:
      case RTP_FIELD_SET:
        return TRUE;
      case RTP_FIELD_NULL:
        return nullable;
      case RTP_FIELD_WRONG_TYPE:
      default:
        return FALSE;
    }
}

static const char *
text_of (const RtpUserChanges *c, RtpUserField f)
{
  return c->state[f] == RTP_FIELD_SET ? c->text[f] : NULL;
}

static gboolean
type_error (GError **error)
{
  g_propagate_error (error, rtp_error_new_wrong_type ());
  return FALSE;
}

/* ---- queries ---------------------------------------------------------------- */

RtpUser *
rtp_user_manager_get (RtpUserManager *self, const char *user_id, GError **error)
{
  g_autoptr (GdaDataModel)
    model = rtp_database_select (self->db, error, self->select_by_id, "id", RTP_DB_STR, user_id, NULL);
  if (model == NULL)
    return NULL;
  if (rtp_db_rows (model) == 0)
    {
      g_propagate_error (error, rtp_error_new_not_found (_ ("user"), user_id));
      return NULL;
    }
  return user_from_row (model, 0);
}

static RtpUser *
get_by_login (RtpUserManager *self, const char *login, char **password_hash, GError **error)
{
  g_autoptr (GdaDataModel)
    model = rtp_database_select (self->db, error, self->select_by_login, "login", RTP_DB_STR, login, NULL);
  if (model == NULL)
    return NULL;
  if (rtp_db_rows (model) == 0)
    {
      g_propagate_error (error, rtp_error_new_not_found (_ ("user"), login));
      return NULL;
    }
  if (password_hash != NULL)
    *password_hash = g_strdup (rtp_db_str (model, 0, 10));
  return user_from_row (model, 0);
}

GPtrArray *
rtp_user_manager_list (RtpUserManager *self, GError **error)
{
  g_autoptr (GdaDataModel) model = rtp_database_select (self->db, error, self->select_all, NULL);
  GPtrArray *users;

  if (model == NULL)
    return NULL;
  users = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_user_free);
  for (guint i = 0; i < rtp_db_rows (model); i++)
    g_ptr_array_add (users, user_from_row (model, i));
  return users;
}

gint64
rtp_user_manager_count (RtpUserManager *self, GError **error)
{
  return rtp_database_select_int (self->db, error, "SELECT COUNT(*) FROM users", NULL);
}

static gint64
count_admins (RtpUserManager *self, GError **error)
{
  return rtp_database_select_int (self->db, error, "SELECT COUNT(*) FROM users WHERE user_type = 'Admin'", NULL);
}

/**
 * rtp_user_manager_ensure_admin:
 * @generated_password: (out): set to a new password when none was configured and the admin was created
 *
 * Creates the bootstrap admin (user_id "0") when the database has no admin at all.
 */
gboolean
rtp_user_manager_ensure_admin (RtpUserManager *self, const char *login, const char *password, char **generated_password,
                               GError **error)
{
  gint64 admins = count_admins (self, error);
  g_autofree char *generated = NULL;
  g_autofree char *hash = NULL;

  *generated_password = NULL;
  if (admins < 0)
    return FALSE;
  if (admins > 0)
    return TRUE;
  if ((password == NULL || password[0] == '\0') && (password = generated = rtp_password_generate (16, error)) == NULL)
    return FALSE;
  hash = rtp_password_hash (password, error);
  if (hash == NULL)
    return FALSE;
  if (rtp_database_exec (self->db, error,
                         "INSERT INTO users (user_id, login_name, first_name, last_name, email, password_hash, "
                         "user_type, preferred_language, password_version) "
                         "VALUES ('0', :login, 'Admin', 'Admin', NULL, :hash, 'Admin', 'en', 0)",
                         "login", RTP_DB_STR, login, "hash", RTP_DB_STR, hash, NULL) < 0)
    {
      g_prefix_error (error, "cannot create the admin user %s: ", login);
      return FALSE;
    }
  g_message ("created the administrator '%s' (user_id 0)", login);
  *generated_password = g_steal_pointer (&generated);
  return TRUE;
}

/* ---- password work in a thread ---------------------------------------------------- */

typedef struct {
  char *verify_hash; /* (nullable) stored hash to check against */
  char *verify_password;
  char *legacy_salt;
  char *new_password; /* (nullable) to hash */
  gboolean verified;
  gboolean needs_upgrade;
  char *new_hash; /* result */
} PasswordJob;

static void
password_job_free (PasswordJob *job)
{
  g_free (job->verify_hash);
  if (job->verify_password != NULL)
    explicit_bzero (job->verify_password, strlen (job->verify_password));
  g_free (job->verify_password);
  g_free (job->legacy_salt);
  if (job->new_password != NULL)
    explicit_bzero (job->new_password, strlen (job->new_password));
  g_free (job->new_password);
  g_free (job->new_hash);
  g_free (job);
}

static void
password_job_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  PasswordJob *job = task_data;
  GError *error = NULL;

  if (job->verify_hash != NULL)
    {
      job->verified = rtp_password_verify (job->verify_hash, job->verify_password, job->legacy_salt,
                                           &job->needs_upgrade);
      if (job->verified && job->needs_upgrade && job->new_password == NULL)
        {
          job->new_hash = rtp_password_hash (job->verify_password, &error);
          if (job->new_hash == NULL)
            {
              g_task_return_error (task, error);
              return;
            }
        }
    }
  if (job->new_password != NULL && (job->verify_hash == NULL || job->verified))
    {
      job->new_hash = rtp_password_hash (job->new_password, &error);
      if (job->new_hash == NULL)
        {
          g_task_return_error (task, error);
          return;
        }
    }
  g_task_return_boolean (task, TRUE);
}

static void
pool_func (gpointer data, gpointer user_data)
{
  GTask *task = data;
  password_job_thread (task, g_task_get_source_object (task), g_task_get_task_data (task),
                       g_task_get_cancellable (task));
  g_object_unref (task);
}

/* Runs @job in a worker; @task's callback gets it back through g_task_get_task_data.
 * At most one hash per core at a time: each argon2id hash takes 19 MiB, and a burst of
 * logins would otherwise run in as many threads as GLib's shared pool grows to. */
static void
run_password_job (GTask *task, PasswordJob *job)
{
  static GThreadPool *pool;
  static gsize once = 0;

  if (g_once_init_enter (&once))
    {
      pool = g_thread_pool_new (pool_func, NULL, (gint) MAX (1, g_get_num_processors ()), TRUE, NULL);
      g_once_init_leave (&once, 1);
    }
  g_task_set_task_data (task, job, (GDestroyNotify) password_job_free);
  g_thread_pool_push (pool, g_object_ref (task), NULL);
}

/* ---- the signing key ---------------------------------------------------------------- */

/* Several instances on one PostgreSQL database must sign alike: the first to start stores a
 * key in the settings table, the others read it (a race ends in one insert and one re-read). */
static GBytes *
shared_signing_key (RtpDatabase *db, GError **error)
{
  for (int attempt = 0; attempt < 2; attempt++)
    {
      g_autoptr (GdaDataModel)
        m = rtp_database_select (db, error, "SELECT value FROM settings WHERE name = 'signing_key'", NULL);
      guint8 raw[32];
      g_autofree char *hex = NULL;
      g_autoptr (GError) insert_error = NULL;

      if (m == NULL)
        return NULL;
      if (rtp_db_rows (m) > 0)
        {
          const char *key = rtp_db_str (m, 0, 0);
          return g_bytes_new (key, strlen (key));
        }
      if (!rtp_random_bytes (raw, sizeof raw, error))
        return NULL;
      hex = g_compute_checksum_for_data (G_CHECKSUM_SHA256, raw, sizeof raw);
      if (rtp_database_exec (db, &insert_error, "INSERT INTO settings (name, value) VALUES ('signing_key', :v)", "v",
                             RTP_DB_STR, hex, NULL) >= 0)
        {
          g_message ("generated a new signing key, shared with every instance through the database");
          return g_bytes_new (hex, strlen (hex));
        }
      if (!g_error_matches (insert_error, RTP_ERROR, RTP_ERROR_EXISTS))
        {
          g_propagate_error (error, g_steal_pointer (&insert_error));
          return NULL;
        }
    }
  g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "cannot read the shared signing key");
  return NULL;
}

/**
 * rtp_user_manager_load_signing_key:
 * @configured: (nullable): SECRET_KEY from the keyring or the configuration
 * @state_dir: where a generated key is kept on SQLite
 *
 * The key that signs tokens: @configured, else 32 random bytes kept 0600 in the state directory
 * (SQLite) or in the database's settings (PostgreSQL, shared by all instances).
 *
 * Returns: (transfer full): the key, or NULL with @error set
 */
GBytes *
rtp_user_manager_load_signing_key (RtpDatabase *db, const char *configured, const char *state_dir, GError **error)
{
  g_autofree char *path = NULL;
  g_autofree char *contents = NULL;
  gsize len = 0;

  if (configured != NULL && configured[0] != '\0')
    return g_bytes_new (configured, strlen (configured));
  if (rtp_database_get_kind (db) == RTP_DATABASE_POSTGRESQL)
    return shared_signing_key (db, error);
  path = g_build_filename (state_dir, "secret_key", NULL);
  if (g_file_get_contents (path, &contents, &len, NULL) && len >= 32)
    {
      g_strstrip (contents);
      return g_bytes_new (contents, strlen (contents));
    }
  {
    guint8 raw[32];
    g_autofree char *hex = NULL;
    int fd;

    if (!rtp_random_bytes (raw, sizeof raw, error))
      return NULL;
    hex = g_compute_checksum_for_data (G_CHECKSUM_SHA256, raw, sizeof raw);
    fd = g_open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write (fd, hex, strlen (hex)) != (ssize_t) strlen (hex) || fsync (fd) != 0)
      {
        g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "cannot write the signing key %s: %s", path,
                     g_strerror (errno));
        if (fd >= 0)
          close (fd);
        return NULL;
      }
    close (fd);
    g_message ("generated a new signing key in %s", path);
    return g_bytes_new (hex, strlen (hex));
  }
}

/* ---- logins ---------------------------------------------------------------- */

static char *
failure_key (const char *login, const char *client)
{
  return g_strconcat (login, "\n", client != NULL ? client : "", NULL);
}

static gint64
now_s (void)
{
  return g_get_monotonic_time () / G_USEC_PER_SEC;
}

/**
 * rtp_user_manager_get_lockout:
 *
 * Returns: the seconds until @login may try again from @client, or 0
 */
guint
rtp_user_manager_get_lockout (RtpUserManager *self, const char *login, const char *client)
{
  g_autofree char *key = failure_key (login, client);
  Failures *f = g_hash_table_lookup (self->failures, key);
  gint64 now = now_s ();

  if (f == NULL || f->locked_until <= now)
    return 0;
  return (guint) (f->locked_until - now);
}

/* The entry of @login from @client, made when missing, with failures older than the window
 * forgotten. */
static Failures *
failures_of (RtpUserManager *self, const char *login, const char *client)
{
  g_autofree char *key = failure_key (login, client);
  Failures *f = g_hash_table_lookup (self->failures, key);
  gint64 now = now_s ();

  /* keep the table bounded: forget pairs with nothing recent */
  if (f == NULL && g_hash_table_size (self->failures) > 10000)
    {
      GHashTableIter iter;
      gpointer value;
      g_hash_table_iter_init (&iter, self->failures);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        {
          Failures *old = value;
          gint64 *last = g_queue_peek_tail (&old->times);
          if (old->in_progress == 0 && old->locked_until <= now &&
              (last == NULL || GPOINTER_TO_SIZE (last) + 60 < (gsize) now))
            g_hash_table_iter_remove (&iter);
        }
    }
  if (f == NULL)
    {
      f = g_new0 (Failures, 1);
      g_hash_table_insert (self->failures, g_steal_pointer (&key), f);
    }
  while (!g_queue_is_empty (&f->times) && (gint64) GPOINTER_TO_SIZE (g_queue_peek_head (&f->times)) + 60 <= now)
    g_queue_pop_head (&f->times);
  return f;
}

static void
record_failure (RtpUserManager *self, const char *login, const char *client)
{
  Failures *f = failures_of (self, login, client);
  gint64 now = now_s ();

  g_queue_push_tail (&f->times, GSIZE_TO_POINTER ((gsize) now));
  if (g_queue_get_length (&f->times) >= self->max_failures)
    {
      f->locked_until = now + self->lockout_s;
      g_queue_clear (&f->times);
      g_message ("login '%s' from %s locked for %u s after %u failures", login, client, self->lockout_s,
                 self->max_failures);
    }
}

/* Counts an attempt before its password is hashed: concurrent guesses take the slots of the
 * window one by one, so at most max_failures attempts per login and client are ever hashed in
 * it, however many arrive at once. Also bounds the hashing queue of the whole server. Every
 * successful reservation is ended by finish_attempt(). */
static gboolean
reserve_attempt (RtpUserManager *self, const char *login, const char *client, GError **error)
{
  Failures *f;
  gint64 now = now_s ();

  if (self->pending >= self->max_pending)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_BUSY, _ ("Too many logins at the moment; try again shortly."));
      rtp_error_set_retry_after (*error, 1);
      return FALSE;
    }
  f = failures_of (self, login, client);
  if (f->locked_until > now || g_queue_get_length (&f->times) + f->in_progress >= self->max_failures)
    {
      gint64 wait = f->locked_until > now ? f->locked_until - now
                    : g_queue_is_empty (&f->times)
                      ? 1
                      : (gint64) GPOINTER_TO_SIZE (g_queue_peek_head (&f->times)) + 60 - now;
      g_set_error (error, RTP_ERROR, RTP_ERROR_TOO_MANY, _ ("Too many failed logins for %s. Try again in %u seconds."),
                   login, (guint) MAX (wait, 1));
      rtp_error_set_retry_after (*error, (guint) MAX (wait, 1));
      return FALSE;
    }
  f->in_progress++;
  self->pending++;
  return TRUE;
}

static void
finish_attempt (RtpUserManager *self, const char *login, const char *client, gboolean failed)
{
  Failures *f = failures_of (self, login, client);

  f->in_progress--;
  self->pending--;
  if (failed)
    record_failure (self, login, client);
  else
    g_queue_clear (&f->times); /* failures counted for other clients stay */
}

typedef struct {
  char *login;
  char *client;
  RtpUser *user; /* (nullable) */
} LoginData;

/* Empty once the white space around it is trimmed: such a password is refused, as by the original. */
static void
login_data_free (LoginData *d)
{
  g_free (d->login);
  g_free (d->client);
  rtp_user_free (d->user);
  g_free (d);
}

/* One refusal for every failed login (unknown name, wrong password, a directory entry in no
 * configured group, a name that cannot be a login): nothing tells a guesser which it was. */
static void
refuse_login (GTask *task)
{
  g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_FORBIDDEN, "%s",
                           _ ("The login_name and password combination is not present in the database."));
}

static void
login_hashed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) outer = user_data;
  RtpUserManager *self = g_task_get_source_object (outer);
  LoginData *d = g_task_get_task_data (outer);
  PasswordJob *job = g_task_get_task_data (G_TASK (result));
  g_autoptr (GError) error = NULL;

  finish_attempt (self, d->login, d->client, error != NULL || d->user == NULL || !job->verified);
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      g_task_return_error (outer, g_steal_pointer (&error));
      return;
    }
  if (d->user == NULL || !job->verified)
    {
      refuse_login (outer);
      return;
    }
  if (job->needs_upgrade && job->new_hash != NULL)
    {
      g_autoptr (GError) upgrade_error = NULL;
      /* the password is unchanged, so password_version (and every token) stays valid */
      if (rtp_database_exec (self->db, &upgrade_error, "UPDATE users SET password_hash = :h WHERE user_id = :id", "h",
                             RTP_DB_STR, job->new_hash, "id", RTP_DB_STR, d->user->user_id, NULL) < 0)
        g_warning ("could not upgrade the password hash of %s: %s", d->login, upgrade_error->message);
      else
        g_message ("upgraded the password hash of '%s' from the original service's MD5 to argon2id", d->login);
    }
  g_task_return_pointer (outer, rtp_user_manager_issue_token (self, d->user), g_free);
}

/* ---- directory logins ------------------------------------------------------------ */

static gboolean
experiment_exists (RtpUserManager *self, const char *short_id, gboolean *exists, GError **error)
{
  gint64 n = rtp_database_select_int (self->db, error, "SELECT COUNT(*) FROM experiments WHERE short_id = :id", "id",
                                      RTP_DB_STR, short_id, NULL);
  if (n < 0)
    return FALSE;
  *exists = n > 0;
  return TRUE;
}

/* The row of a directory user whose login the directory no longer accepts as a member: every token of
 * theirs ends (password_version rises) and the assignments their groups gave go. */
static void
retire_directory_user (RtpUserManager *self, const RtpUser *user, const char *why)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpTransaction) tx = rtp_database_begin_transaction (self->db, &error);

  if (tx == NULL ||
      rtp_database_exec (self->db, &error,
                         "UPDATE users SET password_version = password_version + 1 WHERE user_id = :id", "id",
                         RTP_DB_STR, user->user_id, NULL) < 0 ||
      rtp_database_exec (self->db, &error, "DELETE FROM user_experiments WHERE user_id = :id AND source = 'directory'",
                         "id", RTP_DB_STR, user->user_id, NULL) < 0 ||
      !rtp_transaction_commit (tx, &error))
    {
      g_warning ("could not revoke the tokens of the directory user '%s': %s", user->login_name, error->message);
      return;
    }
  g_message ("directory user '%s' %s: their tokens are revoked", user->login_name, why);
}

/* Creates or updates the row of the directory user @login from @entry, in one transaction.
 * Returns: (transfer full): the user id */
static char *
sync_directory_user (RtpUserManager *self, const char *login, const RtpDirectoryEntry *entry, GError **error)
{
  g_autoptr (RtpTransaction) tx = rtp_database_begin_transaction (self->db, error);
  g_autoptr (GdaDataModel) row = NULL;
  g_autoptr (GdaDataModel) assigned = NULL;
  g_autofree char *user_id = NULL;
  const char *type = entry->admin ? "Admin" : "User";
  const char *first = entry->first_name != NULL ? entry->first_name : login;
  const char *last = entry->last_name != NULL ? entry->last_name : "";
  const char *email = entry->email != NULL && rtp_validate_email (entry->email) ? entry->email : NULL;
  gboolean changed = FALSE;

  if (tx == NULL)
    return NULL;
  /* the entry is the identity: the row of its DN, else the directory row of this login */
  row = rtp_database_select (
    self->db, error,
    "SELECT user_id, user_type, login_name FROM users WHERE source = 'directory' AND "
    "(directory_dn = :dn OR login_name = :login) ORDER BY CASE WHEN directory_dn = :dn THEN 0 ELSE 1 END",
    "dn", RTP_DB_STR, entry->dn, "login", RTP_DB_STR, login, NULL);
  if (row == NULL)
    return NULL;
  if (rtp_db_rows (row) == 0)
    {
      user_id = g_uuid_string_random ();
      if (rtp_database_exec (self->db, error,
                             "INSERT INTO users (user_id, login_name, first_name, last_name, email, password_hash, "
                             "user_type, preferred_language, password_version, source, directory_dn) "
                             "VALUES (:id, :login, :first, :last, :email, :hash, :type, 'en', 0, 'directory', :dn)",
                             "id", RTP_DB_STR, user_id, "login", RTP_DB_STR, login, "first", RTP_DB_STR, first, "last",
                             RTP_DB_STR, last, "email", RTP_DB_STR, email, "hash", RTP_DB_STR,
                             RTP_DIRECTORY_PASSWORD_MARKER, "type", RTP_DB_STR, type, "dn", RTP_DB_STR, entry->dn,
                             NULL) < 0)
        return NULL;
      g_message ("created the directory user '%s' (%s, %s) from %s", login, user_id, type, entry->dn);
    }
  else
    {
      gboolean demoted = g_strcmp0 (rtp_db_str (row, 0, 1), "Admin") == 0 && !entry->admin;
      user_id = g_strdup (rtp_db_str (row, 0, 0));
      changed = g_strcmp0 (rtp_db_str (row, 0, 1), type) != 0;
      if (rtp_database_exec (self->db, error,
                             "UPDATE users SET first_name = :first, last_name = :last, email = :email, "
                             "user_type = :type, directory_dn = :dn, password_version = password_version + :bump "
                             "WHERE user_id = :id",
                             "first", RTP_DB_STR, first, "last", RTP_DB_STR, last, "email", RTP_DB_STR, email, "type",
                             RTP_DB_STR, type, "dn", RTP_DB_STR, entry->dn, "bump", RTP_DB_INT, (gint64) demoted, "id",
                             RTP_DB_STR, user_id, NULL) < 0)
        return NULL;
      if (changed)
        g_message ("directory user '%s' is now %s (from the directory's groups)", rtp_db_str (row, 0, 2), type);
    }

  /* the groups' assignments follow the groups; those made here stay */
  assigned = rtp_database_select (self->db, error, "SELECT short_id, source FROM user_experiments WHERE user_id = :id",
                                  "id", RTP_DB_STR, user_id, NULL);
  if (assigned == NULL)
    return NULL;
  for (guint i = 0; i < rtp_db_rows (assigned); i++)
    {
      const char *short_id = rtp_db_str (assigned, i, 0);
      if (g_strcmp0 (rtp_db_str (assigned, i, 1), "directory") == 0 &&
          !g_ptr_array_find_with_equal_func (entry->experiments, short_id, g_str_equal, NULL) &&
          rtp_database_exec (self->db, error, "DELETE FROM user_experiments WHERE user_id = :id AND short_id = :e",
                             "id", RTP_DB_STR, user_id, "e", RTP_DB_STR, short_id, NULL) < 0)
        return NULL;
    }
  for (guint i = 0; i < entry->experiments->len; i++)
    {
      const char *short_id = g_ptr_array_index (entry->experiments, i);
      gboolean present = FALSE, exists = FALSE;

      for (guint j = 0; j < rtp_db_rows (assigned) && !present; j++)
        present = g_strcmp0 (rtp_db_str (assigned, j, 0), short_id) == 0;
      if (present)
        continue;
      if (!experiment_exists (self, short_id, &exists, error))
        return NULL;
      if (!exists)
        {
          g_warning ("RTP_LDAP_EXPERIMENT_GROUPS names the experiment '%s', which does not exist", short_id);
          continue;
        }
      if (rtp_database_exec (self->db, error,
                             "INSERT INTO user_experiments (user_id, short_id, source) VALUES (:id, :e, 'directory')",
                             "id", RTP_DB_STR, user_id, "e", RTP_DB_STR, short_id, NULL) < 0)
        return NULL;
    }
  if (!rtp_transaction_commit (tx, error))
    return NULL;
  return g_steal_pointer (&user_id);
}

static void
login_directory_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) outer = user_data;
  RtpUserManager *self = g_task_get_source_object (outer);
  LoginData *d = g_task_get_task_data (outer);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpDirectoryEntry) entry = rtp_directory_authenticate_finish (RTP_DIRECTORY (source), result, &error);
  g_autofree char *user_id = NULL;

  if (entry == NULL && g_error_matches (error, RTP_ERROR, RTP_ERROR_UNAVAILABLE))
    {
      finish_attempt (self, d->login, d->client, FALSE);
      g_task_return_new_error (outer, RTP_ERROR, RTP_ERROR_UNAVAILABLE, "%s",
                               _ ("The directory service is not available."));
      return;
    }
  if (entry == NULL || !entry->grouped)
    {
      /* a directory user the directory no longer knows, or whose groups were all taken away */
      if (d->user != NULL && entry != NULL)
        retire_directory_user (self, d->user, "is in no configured group");
      else if (d->user != NULL && g_error_matches (error, RTP_ERROR, RTP_ERROR_NOT_FOUND))
        retire_directory_user (self, d->user, "is gone from the directory");
      finish_attempt (self, d->login, d->client, TRUE);
      refuse_login (outer);
      return;
    }
  finish_attempt (self, d->login, d->client, FALSE);
  user_id = sync_directory_user (self, d->login, entry, &error);
  if (user_id == NULL && g_error_matches (error, RTP_ERROR, RTP_ERROR_EXISTS))
    {
      /* another instance made the row at the same moment: it is there now */
      g_clear_error (&error);
      user_id = sync_directory_user (self, d->login, entry, &error);
    }
  if (user_id == NULL)
    {
      g_task_return_error (outer, g_steal_pointer (&error));
      return;
    }
  rtp_user_free (d->user);
  d->user = rtp_user_manager_get (self, user_id, &error);
  if (d->user == NULL)
    {
      g_task_return_error (outer, g_steal_pointer (&error));
      return;
    }
  g_task_return_pointer (outer, rtp_user_manager_issue_token (self, d->user), g_free);
}

void
rtp_user_manager_login_async (RtpUserManager *self, const char *login, const char *password, const char *client,
                              GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) outer = g_task_new (self, cancellable, callback, user_data);
  g_autoptr (GTask) inner = NULL;
  LoginData *d = g_new0 (LoginData, 1);
  PasswordJob *job = g_new0 (PasswordJob, 1);
  g_autofree char *stored = NULL;
  g_autoptr (GError) error = NULL;

  g_task_set_source_tag (outer, rtp_user_manager_login_async);
  d->login = g_strdup (login);
  d->client = g_strdup (client);
  g_task_set_task_data (outer, d, (GDestroyNotify) login_data_free);

  if (!reserve_attempt (self, login, client, &error))
    {
      password_job_free (job);
      g_task_return_error (outer, g_steal_pointer (&error));
      return;
    }
  d->user = get_by_login (self, login, &stored, &error);
  if (d->user == NULL && !g_error_matches (error, RTP_ERROR, RTP_ERROR_NOT_FOUND))
    {
      finish_attempt (self, login, client, FALSE);
      password_job_free (job);
      g_task_return_error (outer, g_steal_pointer (&error));
      return;
    }
  if (self->directory != NULL && rtp_directory_is_configured (self->directory) &&
      (d->user == NULL || d->user->from_directory))
    {
      /* not a local password: the directory decides, for a name that could be a login here
       * (the directory's matching ignores case and outer spaces: "alice " would be alice) */
      password_job_free (job);
      if (!rtp_validate_login_name (login, NULL))
        {
          finish_attempt (self, login, client, TRUE);
          refuse_login (outer);
          return;
        }
      rtp_directory_authenticate_async (self->directory, login, password, cancellable, login_directory_done,
                                        g_steal_pointer (&outer));
      return;
    }
  if (self->dummy_hash == NULL)
    self->dummy_hash = rtp_password_hash ("no such user", NULL);
  /* an unknown login costs the same time as a wrong password */
  job->verify_hash = g_strdup (d->user != NULL ? stored : self->dummy_hash);
  job->verify_password = g_strdup (password);
  job->legacy_salt = g_strdup (self->legacy_salt);
  inner = g_task_new (self, cancellable, login_hashed, g_steal_pointer (&outer));
  run_password_job (inner, job);
}

/**
 * rtp_user_manager_login_finish:
 *
 * Returns: (transfer full): an access token
 */
char *
rtp_user_manager_login_finish (RtpUserManager *self, GAsyncResult *result, RtpUser **user, GError **error)
{
  char *token;
  LoginData *d;

  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  token = g_task_propagate_pointer (G_TASK (result), error);
  d = g_task_get_task_data (G_TASK (result));

  if (token != NULL && user != NULL)
    *user = rtp_user_copy (d->user);
  return token;
}

/* ---- tokens ---------------------------------------------------------------- */

char *
rtp_user_manager_issue_token (RtpUserManager *self, const RtpUser *user)
{
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  gsize key_len;
  const guint8 *key = g_bytes_get_data (self->key, &key_len);

  return rtp_jwt_encode_access (user->user_id, now, now + self->token_validity_s, user->password_version, key, key_len);
}

/* The token's claims when its signature is right and it has not expired; a checked token is
 * remembered with its claims (until it expires) so that its signature is checked once. */
static const VerifiedToken *
check_signature (RtpUserManager *self, const char *token, gint64 now)
{
  gsize key_len;
  const guint8 *key = g_bytes_get_data (self->key, &key_len);
  g_autofree char *user_id = NULL;
  gint64 exp = 0, pwv = 0;
  VerifiedToken *t = g_hash_table_lookup (self->verified, token);

  if (t != NULL)
    return t->exp > now ? t : NULL;
  if (!rtp_jwt_decode_access (token, key, key_len, now, &user_id, &exp, &pwv))
    return NULL;
  t = g_new0 (VerifiedToken, 1);
  t->user_id = g_steal_pointer (&user_id);
  t->pwv = pwv;
  t->exp = exp;
  if (g_hash_table_size (self->verified) >= MAX_VERIFIED_TOKENS)
    g_hash_table_remove_all (self->verified);
  g_hash_table_insert (self->verified, g_strdup (token), t);
  return t;
}

/* The user as the database has it now: kept from an earlier read while nothing changed since
 * (by this instance or any other, see RtpStampCache), else read again. */
static RtpUser *
current_user (RtpUserManager *self, const char *user_id, GError **error)
{
  guint64 stamp;
  RtpUser *user = rtp_stamp_cache_lookup (self->users, user_id, &stamp);

  if (user != NULL)
    return user;
  user = rtp_user_manager_get (self, user_id, error);
  if (user != NULL)
    rtp_stamp_cache_store (self->users, stamp, user_id, user);
  return user;
}

/**
 * rtp_user_manager_verify_token:
 *
 * A token's signature is checked once (then remembered with its claims until it expires);
 * its user is read from the database, or kept from an earlier read while the database
 * reports no change since — so a deleted user or a changed password ends the token with
 * the change, also when another instance made it.
 *
 * Returns: (transfer full): the token's user, or %NULL with RTP_ERROR_FORBIDDEN (bad,
 *   expired, deleted user, changed password) or a database error
 */
RtpUser *
rtp_user_manager_verify_token (RtpUserManager *self, const char *token, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (RtpUser) user = NULL;
  const VerifiedToken *t = check_signature (self, token, g_get_real_time () / G_USEC_PER_SEC);

  if (t == NULL)
    goto refused;
  user = current_user (self, t->user_id, &local_error);
  if (user == NULL)
    {
      if (!g_error_matches (local_error, RTP_ERROR, RTP_ERROR_NOT_FOUND))
        {
          g_propagate_error (error, g_steal_pointer (&local_error));
          return NULL;
        }
      goto refused;
    }
  if (user->password_version != t->pwv)
    goto refused;
  return g_steal_pointer (&user);

refused:
  g_set_error_literal (error, RTP_ERROR, RTP_ERROR_FORBIDDEN,
                       _ ("The access-token sent is invalid or no longer accepted."));
  return NULL;
}

/* ---- create ---------------------------------------------------------------- */

typedef struct {
  char *login_name, *first_name, *last_name, *user_type, *email, *preferred_language;
  char *temporary_password;
} CreateData;

static void
create_data_free (CreateData *d)
{
  g_free (d->login_name);
  g_free (d->first_name);
  g_free (d->last_name);
  g_free (d->user_type);
  g_free (d->email);
  g_free (d->preferred_language);
  g_free (d->temporary_password);
  g_free (d);
}

static gboolean
login_taken (RtpUserManager *self, const char *login, const char *except_id, gboolean *taken, GError **error)
{
  gint64 n = rtp_database_select_int (self->db, error,
                                      "SELECT COUNT(*) FROM users WHERE login_name = :login AND user_id <> :id",
                                      "login", RTP_DB_STR, login, "id", RTP_DB_STR, except_id != NULL ? except_id : "",
                                      NULL);
  if (n < 0)
    return FALSE;
  *taken = n > 0;
  return TRUE;
}

static void
create_hashed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) outer = user_data;
  RtpUserManager *self = g_task_get_source_object (outer);
  CreateData *d = g_task_get_task_data (outer);
  PasswordJob *job = g_task_get_task_data (G_TASK (result));
  g_autoptr (GError) error = NULL;
  g_autofree char *user_id = g_uuid_string_random ();
  gboolean taken = FALSE;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      g_task_return_error (outer, g_steal_pointer (&error));
      return;
    }
  /* checked again: another request may have taken the login while we hashed */
  if (!login_taken (self, d->login_name, NULL, &taken, &error))
    {
      g_task_return_error (outer, g_steal_pointer (&error));
      return;
    }
  if (taken ||
      rtp_database_exec (self->db, &error,
                         "INSERT INTO users (user_id, login_name, first_name, last_name, email, password_hash, "
                         "user_type, preferred_language, password_version) "
                         "VALUES (:id, :login, :first, :last, :email, :hash, :type, :lang, 0)",
                         "id", RTP_DB_STR, user_id, "login", RTP_DB_STR, d->login_name, "first", RTP_DB_STR,
                         d->first_name, "last", RTP_DB_STR, d->last_name, "email", RTP_DB_STR, d->email, "hash",
                         RTP_DB_STR, job->new_hash, "type", RTP_DB_STR, d->user_type, "lang", RTP_DB_STR,
                         d->preferred_language, NULL) < 0)
    {
      if (taken || g_error_matches (error, RTP_ERROR, RTP_ERROR_EXISTS))
        {
          g_task_return_error (outer, rtp_error_new_exists (_ ("user"), d->login_name));
          return;
        }
      g_task_return_error (outer, g_steal_pointer (&error));
      return;
    }
  g_message ("created user '%s' (%s, %s)", d->login_name, user_id, d->user_type);
  g_task_return_pointer (outer, rtp_user_manager_get (self, user_id, NULL), (GDestroyNotify) rtp_user_free);
}

void
rtp_user_manager_create_async (RtpUserManager *self, const RtpUserChanges *fields, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) outer = g_task_new (self, cancellable, callback, user_data);
  static const RtpUserField required[] = { RTP_USER_FIELD_LOGIN_NAME, RTP_USER_FIELD_FIRST_NAME,
                                           RTP_USER_FIELD_LAST_NAME, RTP_USER_FIELD_USER_TYPE };
  static const RtpUserField text_fields[] = { RTP_USER_FIELD_LOGIN_NAME, RTP_USER_FIELD_FIRST_NAME,
                                              RTP_USER_FIELD_LAST_NAME };
  CreateData *d;
  PasswordJob *job;
  GError *error = NULL;
  gboolean taken = FALSE;
  GTask *inner;

  g_task_set_source_tag (outer, rtp_user_manager_create_async);
  g_return_if_fail (RTP_IS_USER_MANAGER (self));
  g_return_if_fail (fields != NULL);

  for (guint i = 0; i < G_N_ELEMENTS (required); i++)
    if (!given (fields, required[i]))
      {
        g_task_return_new_error (outer, RTP_ERROR, RTP_ERROR_INVALID, "%s",
                                 _ ("The user creation request did not contain all of the information required."));
        return;
      }
  for (guint i = 0; i < G_N_ELEMENTS (required); i++)
    if (!is_string (fields, required[i], FALSE))
      {
        type_error (&error);
        g_task_return_error (outer, error);
        return;
      }
  if (!is_string (fields, RTP_USER_FIELD_EMAIL, TRUE) || !is_string (fields, RTP_USER_FIELD_PREFERRED_LANGUAGE, TRUE))
    {
      type_error (&error);
      g_task_return_error (outer, error);
      return;
    }
  if (!valid_user_type (text_of (fields, RTP_USER_FIELD_USER_TYPE)))
    {
      g_task_return_new_error (outer, RTP_ERROR, RTP_ERROR_INVALID,
                               _ ("user_type: The user_type (%s) is not valid and was therefore not accepted."),
                               text_of (fields, RTP_USER_FIELD_USER_TYPE));
      return;
    }
  for (guint i = 0; i < G_N_ELEMENTS (text_fields); i++)
    if (!rtp_validate_text (rtp_user_field_names[text_fields[i]], text_of (fields, text_fields[i]), 100, &error))
      {
        g_task_return_error (outer, error);
        return;
      }
  if (text_of (fields, RTP_USER_FIELD_LOGIN_NAME)[0] == '\0')
    {
      g_task_return_new_error (outer, RTP_ERROR, RTP_ERROR_INVALID, "%s",
                               _ ("login_name: The login_name must not be empty."));
      return;
    }
  if (!rtp_validate_login_name (text_of (fields, RTP_USER_FIELD_LOGIN_NAME), &error))
    {
      g_task_return_error (outer, error);
      return;
    }
  if (text_of (fields, RTP_USER_FIELD_EMAIL) != NULL && text_of (fields, RTP_USER_FIELD_EMAIL)[0] != '\0' &&
      (!rtp_validate_text ("email", text_of (fields, RTP_USER_FIELD_EMAIL), 100, &error) ||
       !rtp_validate_email (text_of (fields, RTP_USER_FIELD_EMAIL))))
    {
      if (error == NULL)
        g_set_error (&error, RTP_ERROR, RTP_ERROR_INVALID, _ ("email: %s is not a valid email address"),
                     text_of (fields, RTP_USER_FIELD_EMAIL));
      g_task_return_error (outer, error);
      return;
    }
  if (text_of (fields, RTP_USER_FIELD_PREFERRED_LANGUAGE) != NULL &&
      !rtp_validate_text ("preferred_language", text_of (fields, RTP_USER_FIELD_PREFERRED_LANGUAGE), 10, &error))
    {
      g_task_return_error (outer, error);
      return;
    }
  if (!login_taken (self, text_of (fields, RTP_USER_FIELD_LOGIN_NAME), NULL, &taken, &error))
    {
      g_task_return_error (outer, error);
      return;
    }
  if (taken)
    {
      g_task_return_error (outer, rtp_error_new_exists (_ ("user"), text_of (fields, RTP_USER_FIELD_LOGIN_NAME)));
      return;
    }

  d = g_new0 (CreateData, 1);
  d->login_name = g_strdup (text_of (fields, RTP_USER_FIELD_LOGIN_NAME));
  d->first_name = g_strdup (text_of (fields, RTP_USER_FIELD_FIRST_NAME));
  d->last_name = g_strdup (text_of (fields, RTP_USER_FIELD_LAST_NAME));
  d->user_type = g_strdup (text_of (fields, RTP_USER_FIELD_USER_TYPE));
  d->email = text_of (fields, RTP_USER_FIELD_EMAIL) != NULL && text_of (fields, RTP_USER_FIELD_EMAIL)[0] != '\0'
               ? g_strdup (text_of (fields, RTP_USER_FIELD_EMAIL))
               : NULL;
  d->preferred_language = g_strdup (text_of (fields, RTP_USER_FIELD_PREFERRED_LANGUAGE) != NULL &&
                                        text_of (fields, RTP_USER_FIELD_PREFERRED_LANGUAGE)[0] != '\0'
                                      ? text_of (fields, RTP_USER_FIELD_PREFERRED_LANGUAGE)
                                      : "en");
  d->temporary_password = rtp_password_generate (16, &error);
  g_task_set_task_data (outer, d, (GDestroyNotify) create_data_free);
  if (d->temporary_password == NULL)
    {
      g_task_return_error (outer, error);
      return;
    }

  job = g_new0 (PasswordJob, 1);
  job->new_password = g_strdup (d->temporary_password);
  inner = g_task_new (self, cancellable, create_hashed, g_steal_pointer (&outer));
  run_password_job (inner, job);
  g_object_unref (inner);
}

RtpUser *
rtp_user_manager_create_finish (RtpUserManager *self, GAsyncResult *result, char **temporary_password, GError **error)
{
  RtpUser *user;
  CreateData *d;

  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  user = g_task_propagate_pointer (G_TASK (result), error);
  d = g_task_get_task_data (G_TASK (result));

  if (user != NULL && temporary_password != NULL)
    *temporary_password = g_strdup (d->temporary_password);
  return user;
}

/* ---- update ---------------------------------------------------------------- */

typedef struct {
  RtpUser *caller;
  char *user_id;
  RtpUserChanges *changes;
  GPtrArray *errors;      /* (element-type utf8) per-field messages */
  gboolean proof_missing; /* a non-admin's password change came without the current password */
  gboolean change_password;
  char *client;      /* (nullable) where the request came from: the current password's check is a login attempt */
  gboolean reserved; /* an attempt of the caller's login from @client was reserved */
} UpdateData;

static void
update_data_free (UpdateData *d)
{
  rtp_user_free (d->caller);
  g_free (d->user_id);
  g_free (d->client);
  rtp_user_changes_free (d->changes);
  g_ptr_array_unref (d->errors);
  g_free (d);
}

static void
add_error (GPtrArray *errors, GError *error)
{
  g_ptr_array_add (errors, g_strdup (error->message));
}

/* Applies every valid change of @d in one transaction; collects the invalid ones. */
static RtpUser *
apply_update (RtpUserManager *self, UpdateData *d, const char *new_hash, GError **error)
{
  g_autoptr (RtpTransaction) tx = NULL;
  g_autoptr (RtpUser) target = NULL;
  const RtpUserChanges *c = d->changes;
  gboolean caller_is_admin = rtp_user_is_admin (d->caller);

  tx = rtp_database_begin_transaction (self->db, error);
  if (tx == NULL)
    return NULL;
  if (given (c, RTP_USER_FIELD_USER_TYPE) && !rtp_database_serialize (self->db, ADMINS_LOCK_KEY, error))
    return NULL;
  target = rtp_user_manager_get (self, d->user_id, error);
  if (target == NULL)
    return NULL;

#define SET_TEXT(column, value)                                                                                        \
  if (rtp_database_exec (self->db, error, "UPDATE users SET " column " = :v WHERE user_id = :id", "v", RTP_DB_STR,     \
                         value, "id", RTP_DB_STR, d->user_id, NULL) < 0)                                               \
    return NULL;

  if (given (c, RTP_USER_FIELD_LOGIN_NAME))
    {
      const char *v = text_of (c, RTP_USER_FIELD_LOGIN_NAME);
      g_autoptr (GError) e = NULL;
      gboolean taken = FALSE;

      if (g_strcmp0 (v, target->login_name) == 0)
        ; /* Deviation (API.md): one's own unchanged login_name is not an error */
      else if (!rtp_validate_login_name (v, &e))
        add_error (d->errors, e);
      else if (v[0] == '\0')
        g_ptr_array_add (d->errors, g_strdup (_ ("login_name: The login_name must not be empty.")));
      else if (!login_taken (self, v, d->user_id, &taken, error))
        return NULL;
      else if (taken)
        g_ptr_array_add (d->errors, g_strdup_printf (_ ("login_name: The login_name (%s) is already in use."), v));
      else
        {
          SET_TEXT ("login_name", v);
        }
    }
  if (given (c, RTP_USER_FIELD_FIRST_NAME))
    {
      g_autoptr (GError) e = NULL;
      if (!rtp_validate_text ("first_name", text_of (c, RTP_USER_FIELD_FIRST_NAME), 100, &e))
        add_error (d->errors, e);
      else
        {
          SET_TEXT ("first_name", text_of (c, RTP_USER_FIELD_FIRST_NAME));
        }
    }
  if (given (c, RTP_USER_FIELD_LAST_NAME))
    {
      g_autoptr (GError) e = NULL;
      if (!rtp_validate_text ("last_name", text_of (c, RTP_USER_FIELD_LAST_NAME), 100, &e))
        add_error (d->errors, e);
      else
        {
          SET_TEXT ("last_name", text_of (c, RTP_USER_FIELD_LAST_NAME));
        }
    }
  if (given (c, RTP_USER_FIELD_EMAIL))
    {
      const char *v = text_of (c, RTP_USER_FIELD_EMAIL);
      g_autoptr (GError) e = NULL;
      if (v == NULL || v[0] == '\0')
        {
          SET_TEXT ("email", NULL);
        }
      else if (!rtp_validate_text ("email", v, 100, &e))
        add_error (d->errors, e);
      else if (!rtp_validate_email (v))
        g_ptr_array_add (d->errors, g_strdup_printf (_ ("email: %s is not a valid email address"), v));
      else
        {
          SET_TEXT ("email", v);
        }
    }
  if (given (c, RTP_USER_FIELD_PREFERRED_LANGUAGE))
    {
      const char *v = text_of (c, RTP_USER_FIELD_PREFERRED_LANGUAGE);
      g_autoptr (GError) e = NULL;
      if (v == NULL || v[0] == '\0')
        v = "en";
      if (!rtp_validate_text ("preferred_language", v, 10, &e))
        add_error (d->errors, e);
      else
        {
          SET_TEXT ("preferred_language", v);
        }
    }
  if (given (c, RTP_USER_FIELD_USER_TYPE))
    {
      const char *v = text_of (c, RTP_USER_FIELD_USER_TYPE);
      if (g_strcmp0 (v, target->user_type) == 0)
        ; /* unchanged */
      else if (!caller_is_admin)
        g_ptr_array_add (d->errors, g_strdup (_ ("user_type: Only administrators can change the user_type.")));
      else if (!valid_user_type (v))
        g_ptr_array_add (
          d->errors,
          g_strdup_printf (_ ("user_type: The user_type (%s) is not valid and was therefore not accepted."), v));
      else
        {
          gint64 admins = count_admins (self, error);
          if (admins < 0)
            return NULL;
          if (rtp_user_is_admin (target) && admins <= 1)
            g_ptr_array_add (
              d->errors,
              g_strdup_printf (
                _ (
                  "user_type: The user_type cannot be changed from 'admin' to 'user' because the user '%s' is the last registered admin in the database."),
                target->login_name));
          else
            {
              SET_TEXT ("user_type", v);
            }
        }
    }
  if (new_hash != NULL)
    {
      if (rtp_database_exec (self->db, error,
                             "UPDATE users SET password_hash = :h, password_version = password_version + 1 "
                             "WHERE user_id = :id",
                             "h", RTP_DB_STR, new_hash, "id", RTP_DB_STR, d->user_id, NULL) < 0)
        return NULL;
      g_message ("password of '%s' changed", target->login_name);
    }
#undef SET_TEXT

  if (!rtp_transaction_commit (tx, error))
    return NULL;
  return rtp_user_manager_get (self, d->user_id, error);
}

static void
update_hashed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) outer = user_data;
  RtpUserManager *self = g_task_get_source_object (outer);
  UpdateData *d = g_task_get_task_data (outer);
  PasswordJob *job = g_task_get_task_data (G_TASK (result));
  g_autoptr (GError) error = NULL;
  RtpUser *user;
  const char *new_hash = NULL;

  if (d->reserved)
    finish_attempt (self, d->caller->login_name, d->client, job->verify_hash != NULL && !job->verified);
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      g_task_return_error (outer, g_steal_pointer (&error));
      return;
    }
  if (job->verify_hash != NULL && !job->verified)
    g_ptr_array_add (
      d->errors,
      g_strdup_printf (
        _ (
          "password: You are not authorized to change the password. Only administrators and the user %s which must authenticate with their access-token + password are allowed to change the password."),
        d->caller->login_name));
  else
    new_hash = job->new_hash;

  user = apply_update (self, d, new_hash, &error);
  if (user == NULL)
    g_task_return_error (outer, g_steal_pointer (&error));
  else
    g_task_return_pointer (outer, user, (GDestroyNotify) rtp_user_free);
}

/**
 * rtp_user_manager_update_async:
 * @caller: the user making the change (rights are checked against it)
 * @proof: (nullable): how a non-admin proved the current password (needed to change it)
 *
 * A partial update: every valid key is applied, every invalid one explained in
 * @field_errors of the finish call. Unknown keys are ignored. A value of the wrong JSON
 * type fails the whole request with RTP_ERROR_INVALID and changes nothing.
 */
void
rtp_user_manager_update_async (RtpUserManager *self, const RtpUser *caller, const char *user_id,
                               const RtpUserChanges *changes, const RtpPasswordProof *proof, const char *client,
                               GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) outer = g_task_new (self, cancellable, callback, user_data);
  static const RtpUserField strings[] = { RTP_USER_FIELD_LOGIN_NAME, RTP_USER_FIELD_FIRST_NAME,
                                          RTP_USER_FIELD_LAST_NAME, RTP_USER_FIELD_USER_TYPE, RTP_USER_FIELD_PASSWORD };
  UpdateData *d;
  PasswordJob *job = NULL;
  GError *error = NULL;
  g_autoptr (RtpUser) target = NULL;

  g_return_if_fail (RTP_IS_USER_MANAGER (self));
  g_return_if_fail (caller != NULL && user_id != NULL && changes != NULL);

  g_task_set_source_tag (outer, rtp_user_manager_update_async);
  for (guint i = 0; i < G_N_ELEMENTS (strings); i++)
    if (!is_string (changes, strings[i], FALSE))
      {
        type_error (&error);
        g_task_return_error (outer, error);
        return;
      }
  if (!is_string (changes, RTP_USER_FIELD_EMAIL, TRUE) || !is_string (changes, RTP_USER_FIELD_PREFERRED_LANGUAGE, TRUE))
    {
      type_error (&error);
      g_task_return_error (outer, error);
      return;
    }
  target = rtp_user_manager_get (self, user_id, &error);
  if (target == NULL)
    {
      g_task_return_error (outer, error);
      return;
    }

  d = g_new0 (UpdateData, 1);
  d->caller = rtp_user_copy (caller);
  d->user_id = g_strdup (user_id);
  d->changes = user_changes_copy (changes);
  d->errors = g_ptr_array_new_with_free_func (g_free);
  d->client = g_strdup (client);
  g_task_set_task_data (outer, d, (GDestroyNotify) update_data_free);

  if (given (changes, RTP_USER_FIELD_PASSWORD))
    {
      const char *password = text_of (changes, RTP_USER_FIELD_PASSWORD);
      if (target->from_directory)
        g_ptr_array_add (d->errors,
                         g_strdup (_ ("password: The password of a directory account is changed in the directory.")));
      else if (!rtp_user_is_admin (caller) && (proof == NULL || proof->password == NULL))
        d->proof_missing = TRUE;
      else if (!rtp_user_is_admin (caller) && proof->login != NULL && proof->login[0] != '\0' &&
               g_strcmp0 (proof->login, caller->login_name) != 0)
        g_ptr_array_add (
          d->errors,
          g_strdup_printf (
            _ (
              "password: You are not authorized to change the password. Only administrators and the user %s which must authenticate with their access-token + password are allowed to change the password."),
            caller->login_name));
      else if (rtp_validate_is_blank (password))
        g_ptr_array_add (d->errors, g_strdup (_ ("password: The password must not be empty.")));
      else
        {
          job = g_new0 (PasswordJob, 1);
          job->new_password = g_strdup (password);
          if (!rtp_user_is_admin (caller))
            {
              g_autofree char *stored = NULL;
              g_autoptr (RtpUser) me = NULL;
              /* the same counter and lockout as logins: a stolen token must not be a free guessing oracle */
              if (!reserve_attempt (self, caller->login_name, client, &error))
                {
                  password_job_free (job);
                  g_task_return_error (outer, error);
                  return;
                }
              d->reserved = TRUE;
              me = get_by_login (self, caller->login_name, &stored, &error);
              if (me == NULL)
                {
                  d->reserved = FALSE;
                  finish_attempt (self, caller->login_name, client, FALSE);
                  password_job_free (job);
                  g_task_return_error (outer, error);
                  return;
                }
              job->verify_hash = g_steal_pointer (&stored);
              job->verify_password = g_strdup (proof->password);
              job->legacy_salt = g_strdup (self->legacy_salt);
            }
        }
    }

  if (job != NULL)
    {
      GTask *inner = g_task_new (self, cancellable, update_hashed, g_steal_pointer (&outer));
      run_password_job (inner, job);
      g_object_unref (inner);
      return;
    }
  {
    RtpUser *user = apply_update (self, d, NULL, &error);
    if (user == NULL)
      g_task_return_error (outer, error);
    else
      g_task_return_pointer (outer, user, (GDestroyNotify) rtp_user_free);
  }
}

RtpUser *
rtp_user_manager_update_finish (RtpUserManager *self, GAsyncResult *result, GPtrArray **field_errors,
                                gboolean *proof_missing, GError **error)
{
  RtpUser *user;
  UpdateData *d;

  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  user = g_task_propagate_pointer (G_TASK (result), error);
  d = g_task_get_task_data (G_TASK (result));
  if (user != NULL && field_errors != NULL)
    *field_errors = g_ptr_array_ref (d->errors);
  if (proof_missing != NULL)
    *proof_missing = user != NULL && d->proof_missing;
  return user;
}

/* ---- reset password ---------------------------------------------------------------- */

static void
reset_hashed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) outer = user_data;
  RtpUserManager *self = g_task_get_source_object (outer);
  const char *user_id = g_task_get_task_data (outer);
  PasswordJob *job = g_task_get_task_data (G_TASK (result));
  g_autoptr (GError) error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error) ||
      rtp_database_exec (
        self->db, &error,
        "UPDATE users SET password_hash = :h, password_version = password_version + 1 WHERE user_id = :id", "h",
        RTP_DB_STR, job->new_hash, "id", RTP_DB_STR, user_id, NULL) < 0)
    {
      g_task_return_error (outer, g_steal_pointer (&error));
      return;
    }
  g_task_return_pointer (outer, g_strdup (job->new_password), g_free);
}

void
rtp_user_manager_reset_password_async (RtpUserManager *self, const char *login, GCancellable *cancellable,
                                       GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) outer = g_task_new (self, cancellable, callback, user_data);
  GError *error = NULL;
  g_autoptr (RtpUser) user = get_by_login (self, login, NULL, &error);
  PasswordJob *job;
  GTask *inner;

  if (user == NULL)
    {
      g_task_return_error (outer, error);
      return;
    }
  if (user->from_directory)
    {
      g_task_return_new_error (outer, RTP_ERROR, RTP_ERROR_INVALID, "%s",
                               _ ("password: The password of a directory account is changed in the directory."));
      return;
    }
  g_task_set_task_data (outer, g_strdup (user->user_id), g_free);
  job = g_new0 (PasswordJob, 1);
  job->new_password = rtp_password_generate (16, &error);
  if (job->new_password == NULL)
    {
      password_job_free (job);
      g_task_return_error (outer, error);
      return;
    }
  inner = g_task_new (self, cancellable, reset_hashed, g_steal_pointer (&outer));
  run_password_job (inner, job);
  g_object_unref (inner);
}

char *
rtp_user_manager_reset_password_finish (RtpUserManager *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- delete ---------------------------------------------------------------- */

/**
 * rtp_user_manager_delete:
 *
 * Deletes the user (and, through foreign keys, what hangs on it) in one transaction.
 * The only admin cannot be deleted.
 *
 * Returns: (transfer full): the deleted user
 */
RtpUser *
rtp_user_manager_delete (RtpUserManager *self, const char *user_id, GError **error)
{
  g_autoptr (RtpTransaction) tx = NULL;
  g_autoptr (RtpUser) user = NULL;
  gint64 admins;

  tx = rtp_database_begin_transaction (self->db, error);
  if (tx == NULL)
    return NULL;
  /* "is this the last admin?" and the deletion are one step, also against another instance */
  if (!rtp_database_serialize (self->db, ADMINS_LOCK_KEY, error))
    return NULL;
  user = rtp_user_manager_get (self, user_id, error);
  if (user == NULL)
    return NULL;
  if (rtp_user_is_admin (user))
    {
      admins = count_admins (self, error);
      if (admins < 0)
        return NULL;
      if (admins <= 1)
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_CONFLICT,
                       _ ("The user (%s) is the only registered admin and therefore cannot be deleted."),
                       user->login_name);
          return NULL;
        }
    }
  {
    GError *hook_error = NULL;
    g_signal_emit (self, signals[SIGNAL_USER_DELETING], 0, user_id, &hook_error);
    if (hook_error != NULL)
      {
        g_propagate_error (error, hook_error);
        return NULL;
      }
  }
  if (rtp_database_exec (self->db, error, "DELETE FROM users WHERE user_id = :id", "id", RTP_DB_STR, user_id, NULL) <
        0 ||
      !rtp_transaction_commit (tx, error))
    return NULL;
  g_message ("deleted user '%s' (%s)", user->login_name, user->user_id);
  return g_steal_pointer (&user);
}
