/* rtp-password.c: password hashes
 *
 * New hashes are argon2id at OWASP's minimum (t=2, m=19 MiB, p=1) with a 16-byte random
 * salt, in the PHC string form that carries its own parameters. Hashes carried over
 * from the original service are hex md5(PASSWORD_SALT + password); they are accepted
 * and reported as needing an upgrade. These functions are slow on purpose: call them
 * from a worker thread. */
#define G_LOG_DOMAIN "RtpPassword"

#include "rtp-password.h"
#include "rtp-error.h"

#include <argon2.h>
#include <string.h>
#include <sys/random.h>

#define ARGON2_T 2
#define ARGON2_M_KIB 19456
#define ARGON2_P 1
#define SALT_LEN 16
#define HASH_LEN 32

/* FALSE when the kernel gives no randomness: nothing that needs it (salts, keys, passwords) is
 * made then, and the request or the start fails with the reason, rather than the server. */
gboolean
rtp_random_bytes (guint8 *buf, gsize len, GError **error)
{
  gsize done = 0;

  while (done < len)
    {
      ssize_t n = getrandom (buf + done, len - done, 0);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "no randomness from the kernel: getrandom failed: %s",
                       g_strerror (errno));
          return FALSE;
        }
      done += (gsize) n;
    }
  return TRUE;
}

gboolean
rtp_constant_time_equal (const void *a, gsize a_len, const void *b, gsize b_len)
{
  const guint8 *x = a;
  const guint8 *y = b;
  guint8 diff = 0;

  if (a_len != b_len)
    return FALSE;
  for (gsize i = 0; i < a_len; i++)
    diff |= x[i] ^ y[i];
  return diff == 0;
}

char *
rtp_password_hash (const char *password, GError **error)
{
  guint8 salt[SALT_LEN];
  gsize encoded_len = argon2_encodedlen (ARGON2_T, ARGON2_M_KIB, ARGON2_P, SALT_LEN, HASH_LEN, Argon2_id);
  g_autofree char *encoded = g_malloc0 (encoded_len);
  int rc;

  if (!rtp_random_bytes (salt, sizeof salt, error))
    return NULL;
  rc = argon2id_hash_encoded (ARGON2_T, ARGON2_M_KIB, ARGON2_P, password, strlen (password), salt, sizeof salt,
                              HASH_LEN, encoded, encoded_len);
  if (rc != ARGON2_OK)
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "password hashing failed: %s", argon2_error_message (rc));
      return NULL;
    }
  return g_steal_pointer (&encoded);
}

gboolean
rtp_password_is_legacy (const char *stored_hash)
{
  if (stored_hash == NULL || strlen (stored_hash) != 32)
    return FALSE;
  for (const char *p = stored_hash; *p != '\0'; p++)
    if (!g_ascii_isxdigit (*p))
      return FALSE;
  return TRUE;
}

/**
 * rtp_password_verify:
 * @legacy_salt: (nullable): PASSWORD_SALT of the original service
 * @needs_upgrade: (out) (optional): set when the hash is of the old MD5 form
 */
gboolean
rtp_password_verify (const char *stored_hash, const char *password, const char *legacy_salt, gboolean *needs_upgrade)
{
  if (needs_upgrade != NULL)
    *needs_upgrade = FALSE;
  if (stored_hash == NULL || password == NULL)
    return FALSE;

  if (g_str_has_prefix (stored_hash, "$argon2id$"))
    return argon2id_verify (stored_hash, password, strlen (password)) == ARGON2_OK;

  if (rtp_password_is_legacy (stored_hash))
    {
      g_autofree char *salted = g_strconcat (legacy_salt != NULL ? legacy_salt : "", password, NULL);
      g_autofree char *md5 = g_compute_checksum_for_string (G_CHECKSUM_MD5, salted, -1);
      g_autofree char *lower = g_ascii_strdown (stored_hash, -1);
      gboolean ok = rtp_constant_time_equal (md5, strlen (md5), lower, strlen (lower));
      if (ok && needs_upgrade != NULL)
        *needs_upgrade = TRUE;
      return ok;
    }
  return FALSE;
}

/* A password from an alphabet without look-alike characters. */
char *
rtp_password_generate (gsize length, GError **error)
{
  static const char alphabet[] = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  const gsize n = sizeof alphabet - 1;
  char *out = g_malloc (length + 1);
  gsize i = 0;

  while (i < length)
    {
      guint8 b;
      if (!rtp_random_bytes (&b, 1, error))
        {
          g_free (out);
          return NULL;
        }
      if (b >= 256 - (256 % n)) /* reject to stay unbiased */
        continue;
      out[i++] = alphabet[b % n];
    }
  out[length] = '\0';
  return out;
}
