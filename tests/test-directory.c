/* test-directory.c: the directory's settings and the RFC 4515 escaping of a login in the user filter
 * (the logins themselves are tested against a real slapd in tests/integration/test_directory.py) */
#include "rtp-directory.h"
#include "rtp-error.h"

#include <string.h>

static void
test_filter_escaping (void)
{
  static const struct {
    const char *login;
    const char *filter;
  } cases[] = {
    { "alice", "(&(objectClass=person)(uid=alice))" },
    { "*", "(&(objectClass=person)(uid=\\2A))" },
    { "*)(uid=*", "(&(objectClass=person)(uid=\\2A\\29\\28uid=\\2A))" },
    { "admin)(|(uid=*", "(&(objectClass=person)(uid=admin\\29\\28|\\28uid=\\2A))" },
    { "a\\b", "(&(objectClass=person)(uid=a\\5Cb))" },
    { "", "(&(objectClass=person)(uid=))" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *f = rtp_directory_build_filter ("(&(objectClass=person)(uid=%s))", cases[i].login);
      g_assert_cmpstr (f, ==, cases[i].filter);
    }
  /* every %s is filled; nothing else of the filter changes */
  {
    g_autofree char *f = rtp_directory_build_filter ("(|(uid=%s)(mail=%s))", "x*");
    g_assert_cmpstr (f, ==, "(|(uid=x\\2A)(mail=x\\2A))");
  }
}

static RtpDirectorySettings
good_settings (void)
{
  RtpDirectorySettings s = {
    .urls = "ldap://127.0.0.1:1 ldap://127.0.0.1:2",
    .starttls = -1,
    .base_dn = "dc=lab,dc=test",
    .user_filter = "(&(objectClass=person)(uid=%s))",
    .attr_first_name = "givenName",
    .attr_last_name = "sn",
    .attr_email = "mail",
    .admin_group = "cn=admins,dc=lab,dc=test",
    .experiment_groups = "cn=a,dc=lab,dc=test=EXPA; cn=b, dc=lab, dc=test = EXPB;",
    .timeout_s = 1,
  };
  return s;
}

static void
expect_refused (const RtpDirectorySettings *s, const char *key)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpDirectory) d = rtp_directory_new (s, &error);

  g_assert_null (d);
  g_assert_error (error, RTP_ERROR, RTP_ERROR_INVALID);
  g_assert_true (g_str_has_prefix (error->message, key));
}

static void
test_settings (void)
{
  RtpDirectorySettings s = good_settings ();
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpDirectory) d = rtp_directory_new (&s, &error);

  g_assert_no_error (error);
  g_assert_true (rtp_directory_is_configured (d));
  g_assert_cmpstr (rtp_directory_get_state (d), ==, "unknown");

  s = good_settings ();
  s.urls = "http://example.org";
  expect_refused (&s, "RTP_LDAP_URL");
  s.urls = "ldap://a:1 ldaps://b:2";
  expect_refused (&s, "RTP_LDAP_URL");
  s.urls = "ldap://";
  expect_refused (&s, "RTP_LDAP_URL");
  s = good_settings ();
  s.starttls = 0;
  expect_refused (&s, "RTP_LDAP_STARTTLS");
  s = good_settings ();
  s.urls = "ldaps://127.0.0.1:1";
  s.starttls = 1;
  expect_refused (&s, "RTP_LDAP_STARTTLS");
  s = good_settings ();
  s.base_dn = NULL;
  expect_refused (&s, "RTP_LDAP_BASE_DN");
  s.base_dn = "not a dn";
  expect_refused (&s, "RTP_LDAP_BASE_DN");
  s = good_settings ();
  s.user_filter = "(uid=alice)";
  expect_refused (&s, "RTP_LDAP_USER_FILTER");
  s = good_settings ();
  s.experiment_groups = "cn=a,dc=lab";
  expect_refused (&s, "RTP_LDAP_EXPERIMENT_GROUPS");
  s.experiment_groups = "not a dn=EXPA";
  expect_refused (&s, "RTP_LDAP_EXPERIMENT_GROUPS");
  s = good_settings ();
  s.admin_group = "nonsense";
  expect_refused (&s, "RTP_LDAP_ADMIN_GROUP");
  s = good_settings ();
  s.ca_file = "/nonexistent/ca.pem";
  expect_refused (&s, "RTP_LDAP_CA_FILE");
}

static void
test_unconfigured (void)
{
  RtpDirectorySettings s = { .starttls = -1 };
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpDirectory) d = rtp_directory_new (&s, &error);

  g_assert_no_error (error);
  g_assert_false (rtp_directory_is_configured (d));
  g_assert_cmpstr (rtp_directory_get_state (d), ==, "unconfigured");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/directory/filter-escaping", test_filter_escaping);
  g_test_add_func ("/directory/settings", test_settings);
  g_test_add_func ("/directory/unconfigured", test_unconfigured);
  return g_test_run ();
}
