/* rtp-user-manager.h: users, password checks, access tokens */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "rtp-database.h"

G_BEGIN_DECLS

typedef struct {
  char *user_id;
  char *login_name;
  char *first_name;
  char *last_name;
  char *email;              /* (nullable) */
  char *user_type;          /* "Admin" or "User" */
  char *preferred_language;
  gint64 password_version;
  GPtrArray *experiment_ids; /* (nullable) short_ids the user is assigned to, sorted; NULL for a user not read
                              * from the database (the D-Bus caller) */
} RtpUser;

void     rtp_user_free (RtpUser *user);
RtpUser *rtp_user_copy (const RtpUser *user);
gboolean rtp_user_is_admin (const RtpUser *user);
gboolean rtp_user_get_assigned (const RtpUser *user, const char *short_id, gboolean *assigned);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpUser, rtp_user_free)

#define RTP_TYPE_USER_MANAGER (rtp_user_manager_get_type ())
G_DECLARE_FINAL_TYPE (RtpUserManager, rtp_user_manager, RTP, USER_MANAGER, GObject)

typedef struct {
  const char *legacy_salt;     /* PASSWORD_SALT of the original service, or NULL */
  gint64 token_validity_s;
  guint max_failures;          /* failed logins per login name and client before 429 */
  guint lockout_s;
  guint max_pending;           /* logins and password checks waiting for a hash, at most (then 503) */
} RtpUserManagerSettings;

GBytes         *rtp_user_manager_load_signing_key (RtpDatabase *db, const char *configured, const char *state_dir,
                                                    GError **error);
RtpUserManager *rtp_user_manager_new (RtpDatabase *db, const guint8 *signing_key, gsize key_len,
                                      const RtpUserManagerSettings *settings);

gboolean   rtp_user_manager_ensure_admin (RtpUserManager *self, const char *login, const char *password,
                                          char **generated_password, GError **error);

RtpUser   *rtp_user_manager_get (RtpUserManager *self, const char *user_id, GError **error);
GPtrArray *rtp_user_manager_list (RtpUserManager *self, GError **error);
gint64     rtp_user_manager_count (RtpUserManager *self, GError **error);

/* Logins */
guint      rtp_user_manager_get_lockout (RtpUserManager *self, const char *login, const char *client);
void       rtp_user_manager_login_async (RtpUserManager *self, const char *login, const char *password,
                                         const char *client, GCancellable *cancellable,
                                         GAsyncReadyCallback callback, gpointer user_data);
char      *rtp_user_manager_login_finish (RtpUserManager *self, GAsyncResult *result, RtpUser **user,
                                          GError **error);

char      *rtp_user_manager_issue_token (RtpUserManager *self, const RtpUser *user);
RtpUser   *rtp_user_manager_verify_token (RtpUserManager *self, const char *token, GError **error);

/* Changes. @fields and @changes are the JSON objects of API.md. */
void       rtp_user_manager_create_async (RtpUserManager *self, JsonObject *fields, GCancellable *cancellable,
                                          GAsyncReadyCallback callback, gpointer user_data);
RtpUser   *rtp_user_manager_create_finish (RtpUserManager *self, GAsyncResult *result, char **temporary_password,
                                           GError **error);

void       rtp_user_manager_update_async (RtpUserManager *self, const RtpUser *caller, const char *user_id,
                                          JsonObject *changes, const char *basic_login, const char *basic_password,
                                          const char *client, GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
RtpUser   *rtp_user_manager_update_finish (RtpUserManager *self, GAsyncResult *result, GPtrArray **field_errors,
                                           GError **error);

void       rtp_user_manager_reset_password_async (RtpUserManager *self, const char *login, GCancellable *cancellable,
                                                  GAsyncReadyCallback callback, gpointer user_data);
char      *rtp_user_manager_reset_password_finish (RtpUserManager *self, GAsyncResult *result, GError **error);

RtpUser   *rtp_user_manager_delete (RtpUserManager *self, const char *user_id, GError **error);


G_END_DECLS
