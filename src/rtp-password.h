/* rtp-password.h: password hashing (argon2id), the original service's MD5 form, random secrets */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Returns: (transfer full) */
char *rtp_password_hash (const char *password, GError **error);
gboolean rtp_password_verify (const char *stored_hash, const char *password, const char *legacy_salt,
                              gboolean *needs_upgrade);
gboolean rtp_password_is_legacy (const char *stored_hash);
/* Returns: (transfer full) */
char *rtp_password_generate (gsize length, GError **error);
gboolean rtp_random_bytes (guint8 *buf, gsize len, GError **error);
gboolean rtp_constant_time_equal (const void *a, gsize a_len, const void *b, gsize b_len);

G_END_DECLS
