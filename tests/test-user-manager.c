/* test-user-manager.c: RtpUserManager against a temporary SQLite file */
#include "rtp-database.h"
#include "rtp-error.h"
#include "rtp-jwt.h"
#include "rtp-password.h"
#include "rtp-test-util.h"

#include <json-glib/json-glib.h>
#include "rtp-user-manager.h"
#include "rtp-validate.h"

#include <string.h>

typedef struct {
  char *dir;
  RtpDatabase *db;
  RtpUserManager *users;
  char *admin_password;
} Fixture;

static const guint8 key[] = "test signing key, 32 bytes long!";

static void
setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *uri = NULL;
  RtpUserManagerSettings settings = {
    .legacy_salt = "pepper", .token_validity_s = 60, .max_failures = 3, .lockout_s = 60
  };

  f->dir = rtp_test_make_dir ();
  uri = g_strdup_printf ("sqlite:///%s/users.db", f->dir);
  f->db = rtp_database_open (uri, &error);
  g_assert_no_error (error);
  g_assert_true (rtp_database_migrate (f->db, &error));
  f->users = rtp_user_manager_new (f->db, key, sizeof key - 1, &settings);
  g_assert_true (rtp_user_manager_ensure_admin (f->users, "admin", NULL, &f->admin_password, &error));
  g_assert_no_error (error);
  g_assert_nonnull (f->admin_password);
}

static void
teardown (Fixture *f, gconstpointer data)
{
  g_clear_object (&f->users);
  g_clear_object (&f->db);
  rtp_test_remove_dir (f->dir);
  g_free (f->dir);
  g_free (f->admin_password);
}

static char *
login (Fixture *f, const char *name, const char *password, const char *client, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;
  rtp_user_manager_login_async (f->users, name, password, client, NULL, rtp_test_async_ready, &result);
  return rtp_user_manager_login_finish (f->users, rtp_test_wait (&result), NULL, error);
}

/* The test writes fields as the API's JSON; the service takes them typed. */
static RtpUserChanges *
changes_from_json (const char *json)
{
  g_autoptr (JsonNode) node = json_from_string (json, NULL);
  JsonObject *o = json_node_get_object (node);
  RtpUserChanges *changes = rtp_user_changes_new ();

  for (guint i = 0; i < RTP_USER_N_FIELDS; i++)
    {
      JsonNode *m = json_object_get_member (o, rtp_user_field_names[i]);
      if (m == NULL)
        continue;
      if (JSON_NODE_HOLDS_NULL (m))
        rtp_user_changes_set (changes, i, RTP_FIELD_NULL, NULL);
      else if (JSON_NODE_HOLDS_VALUE (m) && json_node_get_value_type (m) == G_TYPE_STRING)
        rtp_user_changes_set (changes, i, RTP_FIELD_SET, json_node_get_string (m));
      else
        rtp_user_changes_set (changes, i, RTP_FIELD_WRONG_TYPE, NULL);
    }
  return changes;
}

static RtpUser *
create (Fixture *f, const char *json, char **password, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (RtpUserChanges) fields = changes_from_json (json);
  rtp_user_manager_create_async (f->users, fields, NULL, rtp_test_async_ready, &result);
  return rtp_user_manager_create_finish (f->users, rtp_test_wait (&result), password, error);
}

static RtpUser *
update (Fixture *f, const RtpUser *caller, const char *id, const char *json, const char *basic_password,
        GPtrArray **errors, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (RtpUserChanges) changes = changes_from_json (json);
  RtpPasswordProof proof = { .password = basic_password };
  rtp_user_manager_update_async (f->users, caller, id, changes, basic_password != NULL ? &proof : NULL, "127.0.0.1",
                                 NULL, rtp_test_async_ready, &result);
  return rtp_user_manager_update_finish (f->users, rtp_test_wait (&result), errors, NULL, error);
}

static void
test_bootstrap_and_login (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *token = login (f, "admin", f->admin_password, "127.0.0.1", &error);
  g_autoptr (RtpUser) user = NULL;
  g_autofree char *again = NULL;

  g_assert_no_error (error);
  user = rtp_user_manager_verify_token (f->users, token, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (user->user_id, ==, "0");
  g_assert_true (rtp_user_is_admin (user));

  /* the admin exists: nothing is created or printed a second time */
  g_assert_true (rtp_user_manager_ensure_admin (f->users, "admin", NULL, &again, &error));
  g_assert_null (again);
  g_assert_cmpint (rtp_user_manager_count (f->users, &error), ==, 1);
}

static void
test_wrong_password_and_lockout (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *token = NULL;

  for (int i = 0; i < 3; i++)
    {
      g_autofree char *t = login (f, "admin", "wrong", "10.0.0.66", &error);
      g_assert_null (t);
      g_assert_error (error, RTP_ERROR, RTP_ERROR_FORBIDDEN);
      g_clear_error (&error);
    }
  g_assert_cmpuint (rtp_user_manager_get_lockout (f->users, "admin", "10.0.0.66"), >, 0);
  /* the lock is per client: the admin elsewhere is not locked out by a stranger */
  g_assert_cmpuint (rtp_user_manager_get_lockout (f->users, "admin", "127.0.0.1"), ==, 0);
  token = login (f, "admin", f->admin_password, "127.0.0.1", &error);
  g_assert_no_error (error);

  /* an unknown login is refused the same way */
  g_clear_pointer (&token, g_free);
  token = login (f, "nobody", "x", "127.0.0.1", &error);
  g_assert_error (error, RTP_ERROR, RTP_ERROR_FORBIDDEN);
}

static void
test_legacy_upgrade (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *md5 = g_compute_checksum_for_string (G_CHECKSUM_MD5, "pepperoldpass", -1);
  g_autofree char *token = NULL;
  g_autoptr (GdaDataModel) model = NULL;

  g_assert_cmpint (rtp_database_exec (f->db, &error,
                                      "INSERT INTO users (user_id, login_name, first_name, last_name, password_hash) "
                                      "VALUES ('u1', 'legacy', 'L', 'E', :h)",
                                      "h", RTP_DB_STR, md5, NULL),
                   ==, 1);
  token = login (f, "legacy", "oldpass", "127.0.0.1", &error);
  g_assert_no_error (error);
  g_assert_nonnull (token);
  model = rtp_database_select (f->db, &error, "SELECT password_hash FROM users WHERE user_id = 'u1'", NULL);
  g_assert_true (g_str_has_prefix (rtp_db_str (model, 0, 0), "$argon2id$"));
  /* the upgraded hash still takes the same password, and the old token stays valid */
  g_clear_pointer (&token, g_free);
  token = login (f, "legacy", "oldpass", "127.0.0.1", &error);
  g_assert_no_error (error);
}

static void
test_create_update_delete (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *password = NULL;
  g_autoptr (RtpUser) admin = rtp_user_manager_get (f->users, "0", &error);
  g_autoptr (RtpUser) bob = create (
    f,
    "{\"login_name\":\"bob\",\"first_name\":\"Bob\",\"last_name\":\"B\",\"user_type\":\"User\",\"email\":\"bob@lab.org\"}",
    &password, &error);
  g_autoptr (RtpUser) changed = NULL;
  g_autoptr (GPtrArray) errors = NULL;
  g_autofree char *token = NULL;
  g_autoptr (RtpUser) deleted = NULL;

  g_assert_no_error (error);
  g_assert_cmpstr (bob->email, ==, "bob@lab.org");
  g_assert_cmpuint (strlen (bob->user_id), ==, 36);
  token = login (f, "bob", password, "127.0.0.1", &error);
  g_assert_no_error (error);

  /* duplicate login → EXISTS; missing field → INVALID */
  g_assert_null (create (f, "{\"login_name\":\"bob\",\"first_name\":\"B\",\"last_name\":\"B\",\"user_type\":\"User\"}",
                         NULL, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_EXISTS);
  g_clear_error (&error);
  g_assert_null (create (f, "{\"login_name\":\"x\",\"first_name\":\"B\",\"user_type\":\"User\"}", NULL, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_clear_error (&error);

  /* without proving the current password a user's own change of it is refused (the HTTP route
   * words how the proof should have come); the other fields still apply */
  {
    g_autoptr (GAsyncResult) result = NULL;
    g_autoptr (RtpUserChanges) changes = changes_from_json ("{\"password\":\"new secret\",\"first_name\":\"Bobby\"}");
    g_autoptr (GPtrArray) none = NULL;
    gboolean proof_missing = FALSE;
    rtp_user_manager_update_async (f->users, bob, bob->user_id, changes, NULL, "127.0.0.1", NULL, rtp_test_async_ready,
                                   &result);
    changed = rtp_user_manager_update_finish (f->users, rtp_test_wait (&result), &none, &proof_missing, &error);
    g_assert_no_error (error);
    g_assert_true (proof_missing);
    g_assert_cmpuint (none->len, ==, 0);
    g_assert_cmpstr (changed->first_name, ==, "Bobby");
    g_assert_cmpint (changed->password_version, ==, 0);
    g_clear_pointer (&changed, rtp_user_free);
  }

  /* bob changes his own password with the right current one: old tokens die */
  changed = update (f, bob, bob->user_id,
                    "{\"password\":\"new secret\",\"email\":\"not-an-email\",\"user_type\":\"Admin\"}", password,
                    &errors, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (errors->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (errors, 0), ==, "email: not-an-email is not a valid email address");
  g_assert_cmpstr (g_ptr_array_index (errors, 1), ==, "user_type: Only administrators can change the user_type.");
  g_assert_cmpint (changed->password_version, ==, 1);
  g_assert_cmpstr (changed->user_type, ==, "User");
  g_assert_null (rtp_user_manager_verify_token (f->users, token, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_FORBIDDEN);
  g_clear_error (&error);

  /* the last admin cannot be demoted or deleted */
  g_clear_pointer (&errors, g_ptr_array_unref);
  g_clear_pointer (&changed, rtp_user_free);
  changed = update (f, admin, "0", "{\"user_type\":\"User\"}", NULL, &errors, &error);
  g_assert_cmpuint (errors->len, ==, 1);
  g_assert_cmpstr (changed->user_type, ==, "Admin");
  g_assert_null (rtp_user_manager_delete (f->users, "0", &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_CONFLICT);
  g_clear_error (&error);

  /* a wrong JSON type fails the whole update and changes nothing */
  g_clear_pointer (&errors, g_ptr_array_unref);
  g_assert_null (update (f, admin, bob->user_id, "{\"first_name\":\"Robert\",\"last_name\":5}", NULL, &errors, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_clear_error (&error);
  {
    g_autoptr (RtpUser) again = rtp_user_manager_get (f->users, bob->user_id, &error);
    g_assert_cmpstr (again->first_name, ==, "Bobby") /* as the proof-less update above left it */;
  }

  deleted = rtp_user_manager_delete (f->users, bob->user_id, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (deleted->login_name, ==, "bob");
  g_assert_null (rtp_user_manager_get (f->users, bob->user_id, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_NOT_FOUND);
}

/* The token check keeps the user and the checked signature between calls; a change in the
 * database by another connection counts at the next call, and a kept token still expires. */
static void
test_kept_between_checks (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *token = login (f, "admin", f->admin_password, "127.0.0.1", &error);
  g_autofree char *uri = g_strdup_printf ("sqlite:///%s/users.db", f->dir);
  g_autoptr (RtpDatabase) other = rtp_database_open (uri, &error);
  g_autoptr (JsonObject) claims = json_object_new ();
  g_autofree char *short_lived = NULL;
  gint64 exp;

  g_assert_no_error (error);
  for (int i = 0; i < 3; i++)
    {
      g_autoptr (RtpUser) user = rtp_user_manager_verify_token (f->users, token, &error);
      g_assert_no_error (error);
      g_assert_cmpstr (user->user_type, ==, "Admin");
    }
  g_assert_cmpint (rtp_database_exec (other, &error, "UPDATE users SET first_name = 'Changed' WHERE user_id = '0'",
                                      NULL),
                   ==, 1);
  {
    g_autoptr (RtpUser) user = rtp_user_manager_verify_token (f->users, token, &error);
    g_assert_cmpstr (user->first_name, ==, "Changed");
  }
  g_assert_cmpint (rtp_database_exec (other, &error, "UPDATE users SET password_version = password_version + 1", NULL),
                   ==, 1);
  g_assert_null (rtp_user_manager_verify_token (f->users, token, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_FORBIDDEN);
  g_clear_error (&error);

  /* a valid token that runs out between two checks (exp is in whole seconds: two of them leave the
   * first check at least one second, also under valgrind) */
  exp = g_get_real_time () / G_USEC_PER_SEC + 2;
  json_object_set_string_member (claims, "user_id", "0");
  json_object_set_int_member (claims, "exp", exp);
  json_object_set_int_member (claims, "pwv", 1);
  short_lived = rtp_jwt_encode (claims, key, sizeof key - 1);
  {
    g_autoptr (RtpUser) user = rtp_user_manager_verify_token (f->users, short_lived, &error);
    g_assert_no_error (error);
    g_assert_nonnull (user);
  }
  while (g_get_real_time () / G_USEC_PER_SEC < exp)
    g_usleep (50000);
  g_assert_null (rtp_user_manager_verify_token (f->users, short_lived, &error));
  g_assert_error (error, RTP_ERROR, RTP_ERROR_FORBIDDEN);
}

static void
test_validate_text (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *long_text = g_strnfill (101, 'x');

  g_assert_true (rtp_validate_text ("f", "Grüße, 你好 <b>&amp;</b>", 100, &error));
  g_assert_false (rtp_validate_text ("first_name", long_text, 100, &error));
  g_assert_cmpstr (error->message, ==, "first_name: The value is longer than 100 characters.");
  g_clear_error (&error);
  g_assert_false (rtp_validate_text ("f", "a\nb", 100, &error));
  g_clear_error (&error);
  /* 100 two-byte characters are 100 characters */
  {
    g_autoptr (GString) s = g_string_new (NULL);
    for (int i = 0; i < 100; i++)
      g_string_append (s, "ü");
    g_assert_true (rtp_validate_text ("f", s->str, 100, &error));
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/user-manager/bootstrap-and-login", Fixture, NULL, setup, test_bootstrap_and_login, teardown);
  g_test_add ("/user-manager/lockout", Fixture, NULL, setup, test_wrong_password_and_lockout, teardown);
  g_test_add ("/user-manager/legacy-upgrade", Fixture, NULL, setup, test_legacy_upgrade, teardown);
  g_test_add ("/user-manager/create-update-delete", Fixture, NULL, setup, test_create_update_delete, teardown);
  g_test_add ("/user-manager/kept-between-checks", Fixture, NULL, setup, test_kept_between_checks, teardown);
  g_test_add_func ("/user-manager/validate-text", test_validate_text);
  return g_test_run ();
}
