/* rtp-directory.h: logins against the institute's directory (LDAP / Active Directory) */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct {
  const char *urls;          /* (nullable) RTP_LDAP_URL: one or more ldap:// or ldaps:// URLs, space separated */
  int starttls;              /* -1: the default (on for ldap://), 0 or 1 */
  gboolean insecure;         /* RTP_LDAP_INSECURE: plain text allowed */
  const char *ca_file;       /* (nullable) */
  const char *bind_dn;       /* (nullable) the search account; NULL: anonymous searches */
  const char *bind_password; /* (nullable) */
  const char *base_dn;
  const char *user_filter; /* with %s for the escaped login name */
  const char *attr_first_name;
  const char *attr_last_name;
  const char *attr_email;
  const char *admin_group;       /* (nullable) a group DN */
  const char *experiment_groups; /* (nullable) "<group DN>=<short_id>;…" */
  double timeout_s;
} RtpDirectorySettings;

/* What the directory says of a user whose password it accepted. */
typedef struct {
  char *dn;
  char *first_name; /* (nullable) */
  char *last_name;  /* (nullable) */
  char *email;      /* (nullable) */
  gboolean admin;
  GPtrArray *experiments; /* (element-type utf8) the short_ids of the experiment groups the user is in */
  gboolean grouped;       /* member of at least one configured group, or no group is configured */
} RtpDirectoryEntry;

void rtp_directory_entry_free (RtpDirectoryEntry *entry);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpDirectoryEntry, rtp_directory_entry_free)

#define RTP_TYPE_DIRECTORY (rtp_directory_get_type ())
G_DECLARE_FINAL_TYPE (RtpDirectory, rtp_directory, RTP, DIRECTORY, GObject)

/* Returns: (transfer full): the directory, or NULL with @error naming the key when a setting is wrong.
 * With no URL the directory is unconfigured: rtp_directory_is_configured() says FALSE. */
RtpDirectory *rtp_directory_new (const RtpDirectorySettings *settings, GError **error);
gboolean rtp_directory_is_configured (RtpDirectory *self);
/* "ok", "unconfigured", "unknown" (never asked yet) or "error: <reason>": the outcome of the last call */
const char *rtp_directory_get_state (RtpDirectory *self);

/* Checks @login's @password: RTP_ERROR_NOT_FOUND (no such user), RTP_ERROR_FORBIDDEN (refused),
 * RTP_ERROR_UNAVAILABLE (directory unreachable, too slow, TLS refused). Never waits longer than the
 * timeout, whatever the directory does. */
void rtp_directory_authenticate_async (RtpDirectory *self, const char *login, const char *password,
                                       GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full) */
RtpDirectoryEntry *rtp_directory_authenticate_finish (RtpDirectory *self, GAsyncResult *result, GError **error);

/* Connects and binds as the search account (the readiness probe). */
void rtp_directory_probe_async (RtpDirectory *self, GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data);
gboolean rtp_directory_probe_finish (RtpDirectory *self, GAsyncResult *result, GError **error);

/* RFC 4515: @login with every special character of a filter value escaped, put in @filter's %s places.
 * Returns: (transfer full) */
char *rtp_directory_build_filter (const char *filter, const char *login);

G_END_DECLS
