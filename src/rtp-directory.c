/* rtp-directory.c: logins against the institute's directory with OpenLDAP's client library
 *
 * A login searches the user's entry with the search account, reads the configured groups, then
 * binds as the entry's DN with the given password. libldap's calls block, so each call runs in a
 * worker of a small pool of our own (never the password hashers' pool), on a connection taken from
 * a small set of idle ones (kept bound as whoever used them last: the search account binds again
 * at every use). Every libldap call has the timeout; on top of that the caller's task ends with
 * RTP_ERROR_UNAVAILABLE at the deadline on the main loop, so a directory that stops answering in
 * the middle of a TLS handshake delays nobody past the timeout: the worker's late answer is dropped. */
#define G_LOG_DOMAIN "RtpDirectory"

#include "rtp-directory.h"

#include "rtp-error.h"
#include "rtp-i18n.h"

#include <ldap.h>
#include <string.h>

#define MAX_IDLE 4
#define MAX_WORKERS 4
#define MAX_LOGIN_BYTES 256

typedef struct {
  char *dn; /* normalized */
  char *short_id;
} ExperimentGroup;

struct _RtpDirectory {
  GObject parent_instance;

  /* read by the workers; never changed after rtp_directory_new */
  char *urls;
  gboolean starttls;
  char *ca_file;
  char *bind_dn;
  char *bind_password;
  char *base_dn;
  char *user_filter;
  char *attrs[5];     /* first, last, email, memberOf, NULL */
  char *admin_group;  /* normalized, nullable */
  GArray *exp_groups; /* ExperimentGroup */
  double timeout_s;

  GMutex lock;
  GPtrArray *idle; /* (element-type LDAP) connections to reuse, under @lock */

  char *state; /* main thread */
};

G_DEFINE_TYPE (RtpDirectory, rtp_directory, G_TYPE_OBJECT)

void
rtp_directory_entry_free (RtpDirectoryEntry *entry)
{
  if (entry == NULL)
    return;
  g_free (entry->dn);
  g_free (entry->first_name);
  g_free (entry->last_name);
  g_free (entry->email);
  g_clear_pointer (&entry->experiments, g_ptr_array_unref);
  g_free (entry);
}

static void
unbind (gpointer ld)
{
  ldap_unbind_ext_s (ld, NULL, NULL);
}

static void
rtp_directory_finalize (GObject *object)
{
  RtpDirectory *self = RTP_DIRECTORY (object);

  g_free (self->urls);
  g_free (self->ca_file);
  g_free (self->bind_dn);
  if (self->bind_password != NULL)
    explicit_bzero (self->bind_password, strlen (self->bind_password));
  g_free (self->bind_password);
  g_free (self->base_dn);
  g_free (self->user_filter);
  for (guint i = 0; i < 3; i++)
    g_free (self->attrs[i]);
  g_free (self->admin_group);
  for (guint i = 0; self->exp_groups != NULL && i < self->exp_groups->len; i++)
    {
      ExperimentGroup *g = &g_array_index (self->exp_groups, ExperimentGroup, i);
      g_free (g->dn);
      g_free (g->short_id);
    }
  g_clear_pointer (&self->exp_groups, g_array_unref);
  g_ptr_array_unref (self->idle);
  g_mutex_clear (&self->lock);
  g_free (self->state);
  G_OBJECT_CLASS (rtp_directory_parent_class)->finalize (object);
}

static void
rtp_directory_class_init (RtpDirectoryClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_directory_finalize;
}

static void
rtp_directory_init (RtpDirectory *self)
{
  g_mutex_init (&self->lock);
  self->idle = g_ptr_array_new_with_free_func (unbind);
  self->state = g_strdup ("unknown");
}

/* A DN in libldap's normal form (case and spaces), or NULL when it is not a DN. */
static char *
normalize_dn (const char *dn)
{
  char *out = NULL;
  char *copy;

  if (dn == NULL || ldap_dn_normalize (dn, LDAP_DN_FORMAT_LDAP, &out, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS ||
      out == NULL)
    return NULL;
  copy = g_ascii_strdown (out, -1);
  ldap_memfree (out);
  return copy;
}

char *
rtp_directory_build_filter (const char *filter, const char *login)
{
  struct berval in = { strlen (login), (char *) login };
  struct berval out = { 0, NULL };
  g_auto (GStrv) parts = NULL;
  char *result;

  if (ldap_bv2escaped_filter_value (&in, &out) != 0 || (out.bv_val == NULL && in.bv_len > 0))
    return NULL;
  parts = g_strsplit (filter, "%s", -1);
  result = g_strjoinv (out.bv_val != NULL ? out.bv_val : "", parts);
  if (out.bv_val != NULL)
    ber_memfree (out.bv_val);
  return result;
}

static gboolean
bad_setting (GError **error, const char *key, const char *why)
{
  g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "%s: %s", key, why);
  return FALSE;
}

static gboolean
parse_groups (RtpDirectory *self, const char *text, GError **error)
{
  g_auto (GStrv) pairs = g_strsplit (text, ";", -1);

  self->exp_groups = g_array_new (FALSE, TRUE, sizeof (ExperimentGroup));
  for (guint i = 0; pairs[i] != NULL; i++)
    {
      const char *pair = g_strstrip (pairs[i]);
      const char *eq = strrchr (pair, '=');
      g_autofree char *dn = NULL;
      ExperimentGroup g;

      if (pair[0] == '\0')
        continue;
      if (eq == NULL || eq[1] == '\0' || eq == pair)
        {
          g_autofree char *why = g_strdup_printf ("'%s' is not <group DN>=<short_id>", pair);
          return bad_setting (error, "RTP_LDAP_EXPERIMENT_GROUPS", why);
        }
      dn = g_strndup (pair, (gsize) (eq - pair));
      g.dn = normalize_dn (g_strstrip (dn));
      if (g.dn == NULL)
        {
          g_autofree char *why = g_strdup_printf ("'%s' is not a DN", dn);
          return bad_setting (error, "RTP_LDAP_EXPERIMENT_GROUPS", why);
        }
      g.short_id = g_strstrip (g_strdup (eq + 1));
      g_array_append_val (self->exp_groups, g);
    }
  return TRUE;
}

RtpDirectory *
rtp_directory_new (const RtpDirectorySettings *settings, GError **error)
{
  g_autoptr (RtpDirectory) self = g_object_new (RTP_TYPE_DIRECTORY, NULL);
  g_auto (GStrv) urls = NULL;
  gboolean plain = FALSE, secure = FALSE;

  /* libldap's global options are set up by the first call: make it here, on one thread */
  {
    int version = 0;
    ldap_get_option (NULL, LDAP_OPT_PROTOCOL_VERSION, &version);
  }
  if (settings->urls == NULL || settings->urls[0] == '\0')
    {
      g_free (self->state);
      self->state = g_strdup ("unconfigured");
      return g_steal_pointer (&self);
    }
  urls = g_strsplit_set (settings->urls, " \t", -1);
  for (guint i = 0; urls[i] != NULL; i++)
    {
      LDAPURLDesc *desc = NULL;
      if (urls[i][0] == '\0')
        continue;
      if (ldap_url_parse (urls[i], &desc) != LDAP_URL_SUCCESS || desc->lud_host == NULL || desc->lud_host[0] == '\0' ||
          (g_strcmp0 (desc->lud_scheme, "ldap") != 0 && g_strcmp0 (desc->lud_scheme, "ldaps") != 0))
        {
          g_autofree char *why = g_strdup_printf ("'%s' is not an ldap://host[:port] or ldaps://host[:port] URL",
                                                  urls[i]);
          if (desc != NULL)
            ldap_free_urldesc (desc);
          return bad_setting (error, "RTP_LDAP_URL", why), NULL;
        }
      if (g_str_equal (desc->lud_scheme, "ldap"))
        plain = TRUE;
      else
        secure = TRUE;
      ldap_free_urldesc (desc);
    }
  if (!plain && !secure)
    return bad_setting (error, "RTP_LDAP_URL", "no URL given"), NULL;
  if (plain && secure)
    return bad_setting (error, "RTP_LDAP_URL", "use either ldap:// (with STARTTLS) or ldaps:// URLs, not both"), NULL;
  self->urls = g_strjoinv (" ", urls);
  self->starttls = plain && settings->starttls != 0;
  if (plain && !self->starttls)
    {
      if (!settings->insecure)
        return bad_setting (error, "RTP_LDAP_STARTTLS",
                            "0 sends passwords in plain text; set RTP_LDAP_INSECURE=1 to allow it"),
               NULL;
      g_warning ("RTP_LDAP_INSECURE=1: passwords go to the directory %s in plain text", self->urls);
    }
  if (!plain && settings->starttls == 1)
    return bad_setting (error, "RTP_LDAP_STARTTLS", "STARTTLS is for ldap:// URLs; ldaps:// is TLS already"), NULL;
  if (settings->ca_file != NULL && settings->ca_file[0] != '\0')
    {
      if (!g_file_test (settings->ca_file, G_FILE_TEST_IS_REGULAR))
        return bad_setting (error, "RTP_LDAP_CA_FILE", "no such file"), NULL;
      self->ca_file = g_strdup (settings->ca_file);
    }
  if (settings->base_dn == NULL || settings->base_dn[0] == '\0')
    return bad_setting (error, "RTP_LDAP_BASE_DN", "must be set with RTP_LDAP_URL"), NULL;
  {
    g_autofree char *norm = normalize_dn (settings->base_dn);
    if (norm == NULL)
      return bad_setting (error, "RTP_LDAP_BASE_DN", "not a DN"), NULL;
  }
  self->base_dn = g_strdup (settings->base_dn);
  if (settings->bind_dn != NULL && settings->bind_dn[0] != '\0')
    {
      g_autofree char *norm = normalize_dn (settings->bind_dn);
      if (norm == NULL)
        return bad_setting (error, "RTP_LDAP_BIND_DN", "not a DN"), NULL;
      self->bind_dn = g_strdup (settings->bind_dn);
      self->bind_password = g_strdup (settings->bind_password != NULL ? settings->bind_password : "");
    }
  {
    const char *f = settings->user_filter;
    g_autofree char *probe = NULL;
    if (f == NULL || strstr (f, "%s") == NULL || f[0] != '(')
      return bad_setting (error, "RTP_LDAP_USER_FILTER", "must be an LDAP filter in parentheses with %s for the login"),
             NULL;
    probe = rtp_directory_build_filter (f, "x");
    if (probe == NULL)
      return bad_setting (error, "RTP_LDAP_USER_FILTER", "not a filter"), NULL;
    self->user_filter = g_strdup (f);
  }
  self->attrs[0] = g_strdup (settings->attr_first_name);
  self->attrs[1] = g_strdup (settings->attr_last_name);
  self->attrs[2] = g_strdup (settings->attr_email);
  self->attrs[3] = (char *) "memberOf";
  if (settings->admin_group != NULL && settings->admin_group[0] != '\0')
    {
      self->admin_group = normalize_dn (settings->admin_group);
      if (self->admin_group == NULL)
        return bad_setting (error, "RTP_LDAP_ADMIN_GROUP", "not a DN"), NULL;
    }
  if (!parse_groups (self, settings->experiment_groups != NULL ? settings->experiment_groups : "", error))
    return NULL;
  self->timeout_s = settings->timeout_s > 0 ? settings->timeout_s : 5;
  g_message ("directory logins: %s (%s), base %s", self->urls,
             secure           ? "TLS"
             : self->starttls ? "STARTTLS"
                              : "plain text",
             self->base_dn);
  return g_steal_pointer (&self);
}

gboolean
rtp_directory_is_configured (RtpDirectory *self)
{
  return self->urls != NULL;
}

const char *
rtp_directory_get_state (RtpDirectory *self)
{
  return self->state;
}

/* ---- in the workers ---------------------------------------------------------------- */

static GError *
ldap_error (int code, RtpError kind, const char *what)
{
  return g_error_new (RTP_ERROR, kind, "%s: %s", what, ldap_err2string (code));
}

/* Whether @code says the connection or the server is at fault (rather than the request). */
static gboolean
is_down (int code)
{
  return code == LDAP_SERVER_DOWN || code == LDAP_TIMEOUT || code == LDAP_CONNECT_ERROR || code == LDAP_BUSY ||
         code == LDAP_UNAVAILABLE || code == LDAP_TIMELIMIT_EXCEEDED || code == LDAP_LOCAL_ERROR ||
         code == LDAP_PROTOCOL_ERROR || code == LDAP_OTHER || code == LDAP_NO_MEMORY ||
         code == LDAP_ADMINLIMIT_EXCEEDED || code == LDAP_UNWILLING_TO_PERFORM || code == LDAP_ENCODING_ERROR ||
         code == LDAP_DECODING_ERROR || code == LDAP_CONFIDENTIALITY_REQUIRED;
}

static void
timeval_of (double seconds, struct timeval *tv)
{
  tv->tv_sec = (time_t) seconds;
  tv->tv_usec = (suseconds_t) ((seconds - (double) tv->tv_sec) * 1e6);
}

static LDAP *
connect_new (RtpDirectory *self, GError **error)
{
  LDAP *ld = NULL;
  int version = LDAP_VERSION3;
  int demand = LDAP_OPT_X_TLS_DEMAND;
  int zero = 0;
  int time_limit = (int) MAX (1, self->timeout_s);
  struct timeval tv;
  int rc;

  rc = ldap_initialize (&ld, self->urls);
  if (rc != LDAP_SUCCESS)
    {
      g_propagate_error (error, ldap_error (rc, RTP_ERROR_UNAVAILABLE, "cannot set up the directory connection"));
      return NULL;
    }
  timeval_of (self->timeout_s, &tv);
  ldap_set_option (ld, LDAP_OPT_PROTOCOL_VERSION, &version);
  ldap_set_option (ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
  ldap_set_option (ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
  ldap_set_option (ld, LDAP_OPT_TIMEOUT, &tv);
  ldap_set_option (ld, LDAP_OPT_TIMELIMIT, &time_limit);
  ldap_set_option (ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
  if (self->ca_file != NULL)
    ldap_set_option (ld, LDAP_OPT_X_TLS_CACERTFILE, self->ca_file);
  /* the options above take effect for this connection only in a context of its own */
  ldap_set_option (ld, LDAP_OPT_X_TLS_NEWCTX, &zero);
  if (self->starttls)
    {
      rc = ldap_start_tls_s (ld, NULL, NULL);
      if (rc != LDAP_SUCCESS)
        {
          g_propagate_error (error, ldap_error (rc, RTP_ERROR_UNAVAILABLE, "STARTTLS with the directory failed"));
          ldap_unbind_ext_s (ld, NULL, NULL);
          return NULL;
        }
    }
  return ld;
}

static LDAP *
take (RtpDirectory *self, gboolean *reused, GError **error)
{
  LDAP *ld = NULL;

  g_mutex_lock (&self->lock);
  if (self->idle->len > 0)
    ld = g_ptr_array_steal_index_fast (self->idle, self->idle->len - 1);
  g_mutex_unlock (&self->lock);
  *reused = ld != NULL;
  return ld != NULL ? ld : connect_new (self, error);
}

static void
give_back (RtpDirectory *self, LDAP *ld)
{
  g_mutex_lock (&self->lock);
  if (self->idle->len < MAX_IDLE)
    {
      g_ptr_array_add (self->idle, ld);
      ld = NULL;
    }
  g_mutex_unlock (&self->lock);
  if (ld != NULL)
    ldap_unbind_ext_s (ld, NULL, NULL);
}

static int
simple_bind (LDAP *ld, const char *dn, const char *password)
{
  struct berval cred = { strlen (password), (char *) password };
  return ldap_sasl_bind_s (ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
}

static int
bind_search_account (RtpDirectory *self, LDAP *ld)
{
  return simple_bind (ld, self->bind_dn != NULL ? self->bind_dn : "",
                      self->bind_password != NULL ? self->bind_password : "");
}

static char *
first_value (LDAP *ld, LDAPMessage *entry, const char *attr)
{
  struct berval **values = ldap_get_values_len (ld, entry, attr);
  char *v = NULL;

  if (values != NULL && values[0] != NULL && values[0]->bv_len > 0 &&
      memchr (values[0]->bv_val, 0, values[0]->bv_len) == NULL)
    v = g_strndup (values[0]->bv_val, values[0]->bv_len);
  if (values != NULL)
    ldap_value_free_len (values);
  if (v != NULL && !g_utf8_validate (v, -1, NULL))
    g_clear_pointer (&v, g_free);
  return v;
}

/* Whether the entry @dn (@member_of: its normalized memberOf values) is in @group (normalized). */
static int
in_group (RtpDirectory *self, LDAP *ld, const char *group, const char *dn, const char *login, GPtrArray *member_of,
          gboolean *member)
{
  g_autofree char *f_dn = rtp_directory_build_filter ("%s", dn);
  g_autofree char *f_login = rtp_directory_build_filter ("%s", login);
  g_autofree char *filter = NULL;
  LDAPMessage *res = NULL;
  struct timeval tv;
  char *no_attrs[] = { (char *) LDAP_NO_ATTRS, NULL };
  int rc;

  *member = FALSE;
  for (guint i = 0; i < member_of->len; i++)
    if (g_str_equal (g_ptr_array_index (member_of, i), group))
      {
        *member = TRUE;
        return LDAP_SUCCESS;
      }
  /* OpenLDAP without the memberof overlay: ask the group (groupOfNames, groupOfUniqueNames, posixGroup) */
  filter = g_strdup_printf ("(|(member=%s)(uniqueMember=%s)(memberUid=%s))", f_dn, f_dn, f_login);
  timeval_of (self->timeout_s, &tv);
  rc = ldap_search_ext_s (ld, group, LDAP_SCOPE_BASE, filter, no_attrs, 0, NULL, NULL, &tv, 1, &res);
  if (rc == LDAP_SUCCESS)
    *member = ldap_count_entries (ld, res) > 0;
  else if (rc == LDAP_NO_SUCH_OBJECT)
    {
      g_warning ("the directory has no group %s", group);
      rc = LDAP_SUCCESS;
    }
  ldap_msgfree (res);
  return rc;
}

typedef struct {
  char *login;
  char *password;
  RtpDirectoryEntry *entry;
} AuthJob;

static void
auth_job_free (AuthJob *job)
{
  g_free (job->login);
  if (job->password != NULL)
    explicit_bzero (job->password, strlen (job->password));
  g_free (job->password);
  rtp_directory_entry_free (job->entry);
  g_free (job);
}

/* One attempt on @ld. Returns the libldap code that ended it (LDAP_SUCCESS with @error unset when the
 * password was accepted); @error is set for every refusal. */
static int
authenticate_on (RtpDirectory *self, LDAP *ld, AuthJob *job, GError **error)
{
  g_autofree char *filter = rtp_directory_build_filter (self->user_filter, job->login);
  g_autoptr (GPtrArray) member_of = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (RtpDirectoryEntry) entry = g_new0 (RtpDirectoryEntry, 1);
  LDAPMessage *res = NULL;
  LDAPMessage *e;
  struct timeval tv;
  int rc, n;

  rc = bind_search_account (self, ld);
  if (rc != LDAP_SUCCESS)
    {
      if (!is_down (rc))
        g_warning ("the directory refused the search account %s: %s",
                   self->bind_dn != NULL ? self->bind_dn : "(anonymous)", ldap_err2string (rc));
      g_propagate_error (error, ldap_error (rc, RTP_ERROR_UNAVAILABLE, "the search account's bind failed"));
      return is_down (rc) ? rc : LDAP_SERVER_DOWN;
    }
  timeval_of (self->timeout_s, &tv);
  rc = ldap_search_ext_s (ld, self->base_dn, LDAP_SCOPE_SUBTREE, filter, self->attrs, 0, NULL, NULL, &tv, 2, &res);
  if (rc == LDAP_SIZELIMIT_EXCEEDED || (rc == LDAP_SUCCESS && ldap_count_entries (ld, res) > 1))
    {
      g_warning ("the login '%s' matches several directory entries: refused", job->login);
      ldap_msgfree (res);
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_FORBIDDEN, "several entries");
      return LDAP_SUCCESS;
    }
  if (rc == LDAP_NO_SUCH_OBJECT || rc == LDAP_FILTER_ERROR)
    {
      if (rc == LDAP_NO_SUCH_OBJECT)
        g_warning ("the directory has no %s (RTP_LDAP_BASE_DN)", self->base_dn);
      ldap_msgfree (res);
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_NOT_FOUND, "no such entry");
      return LDAP_SUCCESS;
    }
  if (rc != LDAP_SUCCESS)
    {
      ldap_msgfree (res);
      g_propagate_error (error, ldap_error (rc, RTP_ERROR_UNAVAILABLE, "the user search failed"));
      return rc;
    }
  e = ldap_first_entry (ld, res);
  n = ldap_count_entries (ld, res);
  if (n == 0 || e == NULL)
    {
      ldap_msgfree (res);
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_NOT_FOUND, "no such entry");
      return LDAP_SUCCESS;
    }
  {
    char *dn = ldap_get_dn (ld, e);
    entry->dn = g_strdup (dn);
    ldap_memfree (dn);
  }
  entry->first_name = first_value (ld, e, self->attrs[0]);
  entry->last_name = first_value (ld, e, self->attrs[1]);
  entry->email = first_value (ld, e, self->attrs[2]);
  {
    struct berval **values = ldap_get_values_len (ld, e, "memberOf");
    for (guint i = 0; values != NULL && values[i] != NULL; i++)
      {
        g_autofree char *v = g_strndup (values[i]->bv_val, values[i]->bv_len);
        char *norm = normalize_dn (v);
        if (norm != NULL)
          g_ptr_array_add (member_of, norm);
      }
    if (values != NULL)
      ldap_value_free_len (values);
  }
  ldap_msgfree (res);
  if (entry->dn == NULL || entry->dn[0] == '\0')
    {
      /* an empty DN would be an anonymous bind: never a login */
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_FORBIDDEN, "empty DN");
      return LDAP_SUCCESS;
    }

  entry->experiments = g_ptr_array_new_with_free_func (g_free);
  entry->grouped = self->admin_group == NULL && self->exp_groups->len == 0;
  if (self->admin_group != NULL)
    {
      rc = in_group (self, ld, self->admin_group, entry->dn, job->login, member_of, &entry->admin);
      if (rc != LDAP_SUCCESS)
        {
          g_propagate_error (error, ldap_error (rc, RTP_ERROR_UNAVAILABLE, "the group search failed"));
          return rc;
        }
      entry->grouped |= entry->admin;
    }
  for (guint i = 0; i < self->exp_groups->len; i++)
    {
      ExperimentGroup *g = &g_array_index (self->exp_groups, ExperimentGroup, i);
      gboolean member = FALSE;
      rc = in_group (self, ld, g->dn, entry->dn, job->login, member_of, &member);
      if (rc != LDAP_SUCCESS)
        {
          g_propagate_error (error, ldap_error (rc, RTP_ERROR_UNAVAILABLE, "the group search failed"));
          return rc;
        }
      if (member && !g_ptr_array_find_with_equal_func (entry->experiments, g->short_id, g_str_equal, NULL))
        g_ptr_array_add (entry->experiments, g_strdup (g->short_id));
      entry->grouped |= member;
    }

  rc = simple_bind (ld, entry->dn, job->password);
  if (rc == LDAP_INVALID_CREDENTIALS || rc == LDAP_INAPPROPRIATE_AUTH || rc == LDAP_INVALID_DN_SYNTAX ||
      rc == LDAP_NO_SUCH_OBJECT)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_FORBIDDEN, "invalid credentials");
      return LDAP_SUCCESS;
    }
  if (rc != LDAP_SUCCESS)
    {
      g_propagate_error (error, ldap_error (rc, RTP_ERROR_UNAVAILABLE, "the user's bind failed"));
      return rc;
    }
  job->entry = g_steal_pointer (&entry);
  return LDAP_SUCCESS;
}

typedef int (*Operation) (RtpDirectory *self, LDAP *ld, gpointer job, GError **error);

/* Runs @op on a connection; a reused one that turns out dead is replaced once. */
static void
run_operation (RtpDirectory *self, Operation op, gpointer job, GError **error)
{
  for (int attempt = 0; attempt < 2; attempt++)
    {
      gboolean reused = FALSE;
      GError *local = NULL;
      LDAP *ld = take (self, &reused, &local);
      int rc;

      if (ld == NULL)
        {
          g_propagate_error (error, local);
          return;
        }
      rc = op (self, ld, job, &local);
      if (rc == LDAP_SUCCESS)
        {
          give_back (self, ld);
          if (local != NULL)
            g_propagate_error (error, local);
          return;
        }
      ldap_unbind_ext_s (ld, NULL, NULL);
      if (!reused || rc != LDAP_SERVER_DOWN || attempt == 1)
        {
          g_propagate_error (error, local);
          return;
        }
      g_clear_error (&local);
    }
}

static int
authenticate_op (RtpDirectory *self, LDAP *ld, gpointer job, GError **error)
{
  return authenticate_on (self, ld, job, error);
}

static int
probe_op (RtpDirectory *self, LDAP *ld, gpointer job, GError **error)
{
  int rc = bind_search_account (self, ld);
  if (rc != LDAP_SUCCESS)
    {
      g_propagate_error (error, ldap_error (rc, RTP_ERROR_UNAVAILABLE, "bind"));
      return is_down (rc) ? rc : LDAP_SERVER_DOWN;
    }
  return LDAP_SUCCESS;
}

/* ---- the pool and the deadline ------------------------------------------------------ */

typedef struct {
  Operation op;
  gpointer job;
  GDestroyNotify job_free;
  GError *error;
  GTask *outer; /* (owned) (nullable) until answered */
  GSource *deadline;
} Call;

static void
call_free (Call *call)
{
  if (call->job_free != NULL)
    call->job_free (call->job);
  g_clear_error (&call->error);
  g_clear_object (&call->outer);
  if (call->deadline != NULL)
    {
      g_source_destroy (call->deadline);
      g_source_unref (call->deadline);
    }
  g_free (call);
}

static void
set_state (RtpDirectory *self, const GError *error)
{
  g_autofree char *state = NULL;

  if (error == NULL || !g_error_matches (error, RTP_ERROR, RTP_ERROR_UNAVAILABLE))
    state = g_strdup ("ok");
  else
    state = g_strdup_printf ("error: %s", error->message);
  if (!g_str_equal (state, self->state))
    {
      if (error != NULL && g_error_matches (error, RTP_ERROR, RTP_ERROR_UNAVAILABLE))
        g_warning ("the directory is not available: %s", error->message);
      else if (!g_str_equal (self->state, "unknown"))
        g_message ("the directory is available again");
      g_free (self->state);
      self->state = g_steal_pointer (&state);
    }
}

static void
worker_func (gpointer data, gpointer user_data)
{
  GTask *inner = data;
  Call *call = g_task_get_task_data (inner);

  run_operation (g_task_get_source_object (inner), call->op, call->job, &call->error);
  g_task_return_boolean (inner, TRUE);
  g_object_unref (inner);
}

/* Back on the main loop: answers the caller unless the deadline did already. */
static void
worker_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  RtpDirectory *self = RTP_DIRECTORY (source);
  Call *call = g_task_get_task_data (G_TASK (result));
  g_autoptr (GTask) outer = g_steal_pointer (&call->outer);

  if (outer == NULL)
    return; /* too late */
  g_source_destroy (call->deadline);
  set_state (self, call->error);
  if (call->error != NULL)
    g_task_return_error (outer, g_steal_pointer (&call->error));
  else
    g_task_return_pointer (outer, call, NULL);
}

static gboolean
deadline_passed (gpointer data)
{
  Call *call = data;
  g_autoptr (GTask) outer = g_steal_pointer (&call->outer);

  if (outer != NULL)
    {
      RtpDirectory *self = g_task_get_source_object (outer);
      GError *error = g_error_new (RTP_ERROR, RTP_ERROR_UNAVAILABLE, "no answer within %g s", self->timeout_s);
      set_state (self, error);
      g_task_return_error (outer, error);
    }
  return G_SOURCE_REMOVE;
}

static void
start_call (RtpDirectory *self, GTask *outer, Operation op, gpointer job, GDestroyNotify job_free)
{
  static GThreadPool *pool;
  static gsize once = 0;
  Call *call = g_new0 (Call, 1);
  GTask *inner = g_task_new (self, NULL, worker_done, NULL);

  if (g_once_init_enter (&once))
    {
      pool = g_thread_pool_new (worker_func, NULL, MAX_WORKERS, FALSE, NULL);
      g_once_init_leave (&once, 1);
    }
  call->op = op;
  call->job = job;
  call->job_free = job_free;
  call->outer = g_object_ref (outer);
  call->deadline = g_timeout_source_new ((guint) (self->timeout_s * 1000));
  g_source_set_callback (call->deadline, deadline_passed, call, NULL);
  g_source_attach (call->deadline, g_main_context_get_thread_default ());
  g_task_set_task_data (inner, call, (GDestroyNotify) call_free);
  /* the caller's task keeps the call (its job's answer) alive until it is finished */
  g_task_set_task_data (outer, g_object_ref (inner), g_object_unref);
  g_thread_pool_push (pool, inner, NULL);
}

void
rtp_directory_authenticate_async (RtpDirectory *self, const char *login, const char *password,
                                  GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) outer = g_task_new (self, cancellable, callback, user_data);
  AuthJob *job;

  g_task_set_source_tag (outer, rtp_directory_authenticate_async);
  if (!rtp_directory_is_configured (self))
    {
      g_task_return_new_error (outer, RTP_ERROR, RTP_ERROR_NOT_FOUND, "no directory");
      return;
    }
  /* an empty password would make a simple bind "unauthenticated", which succeeds: never a login */
  if (password == NULL || password[0] == '\0')
    {
      g_task_return_new_error (outer, RTP_ERROR, RTP_ERROR_FORBIDDEN, "empty password");
      return;
    }
  if (login == NULL || login[0] == '\0' || strlen (login) > MAX_LOGIN_BYTES || !g_utf8_validate (login, -1, NULL))
    {
      g_task_return_new_error (outer, RTP_ERROR, RTP_ERROR_NOT_FOUND, "not a login name");
      return;
    }
  job = g_new0 (AuthJob, 1);
  job->login = g_strdup (login);
  job->password = g_strdup (password);
  start_call (self, outer, authenticate_op, job, (GDestroyNotify) auth_job_free);
}

RtpDirectoryEntry *
rtp_directory_authenticate_finish (RtpDirectory *self, GAsyncResult *result, GError **error)
{
  Call *call;
  AuthJob *job;

  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  call = g_task_propagate_pointer (G_TASK (result), error);
  if (call == NULL)
    return NULL;
  job = call->job;
  return g_steal_pointer (&job->entry);
}

void
rtp_directory_probe_async (RtpDirectory *self, GCancellable *cancellable, GAsyncReadyCallback callback,
                           gpointer user_data)
{
  g_autoptr (GTask) outer = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (outer, rtp_directory_probe_async);
  if (!rtp_directory_is_configured (self))
    {
      g_task_return_new_error (outer, RTP_ERROR, RTP_ERROR_NOT_FOUND, "unconfigured");
      return;
    }
  start_call (self, outer, probe_op, NULL, NULL);
}

gboolean
rtp_directory_probe_finish (RtpDirectory *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_pointer (G_TASK (result), error) != NULL;
}
