/* test-password.c: argon2id hashes, the original service's MD5 form, generated passwords */
#include "rtp-password.h"

#include <string.h>

static void
test_hash_verify (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *hash = rtp_password_hash ("correct horse", &error);
  g_autofree char *hash2 = rtp_password_hash ("correct horse", &error);
  gboolean upgrade = TRUE;

  g_assert_no_error (error);
  g_assert_true (g_str_has_prefix (hash, "$argon2id$v=19$m=19456,t=2,p=1$"));
  g_assert_cmpstr (hash, !=, hash2); /* per-hash salt */
  g_assert_true (rtp_password_verify (hash, "correct horse", NULL, &upgrade));
  g_assert_false (upgrade);
  g_assert_false (rtp_password_verify (hash, "correct horsE", NULL, NULL));
  g_assert_false (rtp_password_verify (hash, "", NULL, NULL));
  g_assert_false (rtp_password_is_legacy (hash));
}

static void
test_legacy_md5 (void)
{
  /* md5("pepper" + "secret"), as the original service stored it */
  g_autofree char *md5 = g_compute_checksum_for_string (G_CHECKSUM_MD5, "peppersecret", -1);
  g_autofree char *upper = g_ascii_strup (md5, -1);
  gboolean upgrade = FALSE;

  g_assert_true (rtp_password_is_legacy (md5));
  g_assert_true (rtp_password_verify (md5, "secret", "pepper", &upgrade));
  g_assert_true (upgrade);
  g_assert_true (rtp_password_verify (upper, "secret", "pepper", NULL));
  g_assert_false (rtp_password_verify (md5, "secret", "other salt", &upgrade));
  g_assert_false (upgrade);
  g_assert_false (rtp_password_verify (md5, "secret", NULL, NULL));
  g_assert_false (rtp_password_verify ("not a hash", "secret", "pepper", NULL));
  g_assert_false (rtp_password_verify (NULL, "secret", "pepper", NULL));
}

static void
test_generate (void)
{
  g_autofree char *a = rtp_password_generate (16, NULL);
  g_autofree char *b = rtp_password_generate (16, NULL);

  g_assert_cmpuint (strlen (a), ==, 16);
  g_assert_cmpstr (a, !=, b);
  for (const char *p = a; *p != '\0'; p++)
    g_assert_true (g_ascii_isalnum (*p) && *p != '0' && *p != 'O' && *p != 'l' && *p != '1');
}

static void
test_constant_time_equal (void)
{
  g_assert_true (rtp_constant_time_equal ("abc", 3, "abc", 3));
  g_assert_false (rtp_constant_time_equal ("abc", 3, "abd", 3));
  g_assert_false (rtp_constant_time_equal ("abc", 3, "abcd", 4));
  g_assert_true (rtp_constant_time_equal ("", 0, "", 0));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/password/hash-verify", test_hash_verify);
  g_test_add_func ("/password/legacy-md5", test_legacy_md5);
  g_test_add_func ("/password/generate", test_generate);
  g_test_add_func ("/password/constant-time-equal", test_constant_time_equal);
  return g_test_run ();
}
