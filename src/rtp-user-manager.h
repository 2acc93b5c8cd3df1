/* rtp-user-manager.h: users, password checks, access tokens */
#pragma once

#include <gio/gio.h>

#include "rtp-database.h"
#include "rtp-directory.h"
#include "rtp-validate.h"

G_BEGIN_DECLS

typedef struct {
  char *user_id;
  char *login_name;
  char *first_name;
  char *last_name;
  char *email;     /* (nullable) */
  char *user_type; /* "Admin" or "User" */
  char *preferred_language;
  gint64 password_version;
  gboolean from_directory;   /* made and kept up to date by directory logins (no password here) */
  GPtrArray *experiment_ids; /* (nullable) short_ids the user is assigned to, sorted; NULL for a user not read
                              * from the database (the D-Bus caller) */
} RtpUser;

void rtp_user_free (RtpUser *user);
/* Returns: (transfer full) */
RtpUser *rtp_user_copy (const RtpUser *user);
gboolean rtp_user_is_admin (const RtpUser *user);
gboolean rtp_user_get_assigned (const RtpUser *user, const char *short_id, gboolean *assigned);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpUser, rtp_user_free)

#define RTP_TYPE_USER_MANAGER (rtp_user_manager_get_type ())
G_DECLARE_FINAL_TYPE (RtpUserManager, rtp_user_manager, RTP, USER_MANAGER, GObject)

/* The password_hash of a directory user: no password matches it. */
#define RTP_DIRECTORY_PASSWORD_MARKER "!directory"

typedef struct {
  const char *legacy_salt; /* PASSWORD_SALT of the original service, or NULL */
  gint64 token_validity_s;
  guint max_failures; /* failed logins per login name and client before 429 */
  guint lockout_s;
  guint max_pending; /* logins and password checks waiting for a hash, at most (then 503) */
} RtpUserManagerSettings;

/* Returns: (transfer full) */
GBytes *rtp_user_manager_load_signing_key (RtpDatabase *db, const char *configured, const char *state_dir,
                                           GError **error);
/* Returns: (transfer full) */
RtpUserManager *rtp_user_manager_new (RtpDatabase *db, const guint8 *signing_key, gsize key_len,
                                      const RtpUserManagerSettings *settings);
/* Logins of users without a local password go to @directory (when it is configured). */
void rtp_user_manager_set_directory (RtpUserManager *self, RtpDirectory *directory);

gboolean rtp_user_manager_ensure_admin (RtpUserManager *self, const char *login, const char *password,
                                        char **generated_password, GError **error);

/* Returns: (transfer full) */
RtpUser *rtp_user_manager_get (RtpUserManager *self, const char *user_id, GError **error);
/* Returns: (transfer full) */
GPtrArray *rtp_user_manager_list (RtpUserManager *self, GError **error);
gint64 rtp_user_manager_count (RtpUserManager *self, GError **error);

/* Logins */
guint rtp_user_manager_get_lockout (RtpUserManager *self, const char *login, const char *client);
void rtp_user_manager_login_async (RtpUserManager *self, const char *login, const char *password, const char *client,
                                   GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full) */
char *rtp_user_manager_login_finish (RtpUserManager *self, GAsyncResult *result, RtpUser **user, GError **error);

/* Returns: (transfer full) */
char *rtp_user_manager_issue_token (RtpUserManager *self, const RtpUser *user);
/* Returns: (transfer full) */
RtpUser *rtp_user_manager_verify_token (RtpUserManager *self, const char *token, GError **error);

/* The fields of a user a caller may give, as API.md names them (rtp_user_field_names). */
typedef enum {
  RTP_USER_FIELD_LOGIN_NAME,
  RTP_USER_FIELD_FIRST_NAME,
  RTP_USER_FIELD_LAST_NAME,
  RTP_USER_FIELD_EMAIL,
  RTP_USER_FIELD_USER_TYPE,
  RTP_USER_FIELD_PREFERRED_LANGUAGE,
  RTP_USER_FIELD_PASSWORD,
  RTP_USER_N_FIELDS,
} RtpUserField;

extern const char *const rtp_user_field_names[RTP_USER_N_FIELDS];

/* A new user's fields or the changes to one, each as the caller sent it. */
typedef struct {
  RtpFieldState state[RTP_USER_N_FIELDS];
  char *text[RTP_USER_N_FIELDS]; /* (owned) (nullable) the value of a field in RTP_FIELD_SET */
} RtpUserChanges;

/* Returns: (transfer full) */
RtpUserChanges *rtp_user_changes_new (void);
void rtp_user_changes_set (RtpUserChanges *changes, RtpUserField field, RtpFieldState state, const char *text);
void rtp_user_changes_free (RtpUserChanges *changes);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpUserChanges, rtp_user_changes_free)

/* How a caller proved the current password (HTTP: Basic auth sent with the token). */
typedef struct {
  const char *login; /* (nullable) the login the proof is for; must be the caller's */
  const char *password;
} RtpPasswordProof;

/* Creating: all of login_name, first_name, last_name, user_type; email and preferred_language may
 * be null or absent; password is ignored (a temporary one is made). */
void rtp_user_manager_create_async (RtpUserManager *self, const RtpUserChanges *fields, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full) */
RtpUser *rtp_user_manager_create_finish (RtpUserManager *self, GAsyncResult *result, char **temporary_password,
                                         GError **error);

void rtp_user_manager_update_async (RtpUserManager *self, const RtpUser *caller, const char *user_id,
                                    const RtpUserChanges *changes, const RtpPasswordProof *proof, const char *client,
                                    GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
/* @proof_missing: set TRUE when a non-admin asked to change the password without @proof (the
 * password is then not changed, and the adapter says how the proof should have come). */
/* Returns: (transfer full) */
RtpUser *rtp_user_manager_update_finish (RtpUserManager *self, GAsyncResult *result, GPtrArray **field_errors,
                                         gboolean *proof_missing, GError **error);

void rtp_user_manager_reset_password_async (RtpUserManager *self, const char *login, GCancellable *cancellable,
                                            GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full) */
char *rtp_user_manager_reset_password_finish (RtpUserManager *self, GAsyncResult *result, GError **error);

/* Returns: (transfer full) */
RtpUser *rtp_user_manager_delete (RtpUserManager *self, const char *user_id, GError **error);

G_END_DECLS
