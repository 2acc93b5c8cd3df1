/* rtp-jwt.h: JSON Web Tokens signed with HS256 */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Returns: (transfer full) */
char *rtp_base64url_encode (const guint8 *data, gsize len);
/* Returns: (transfer full) */
guint8 *rtp_base64url_decode (const char *text, gsize *out_len);

/* Returns: (transfer full) */
char *rtp_jwt_encode (JsonObject *claims, const guint8 *key, gsize key_len);
/* Returns: (transfer full) */
JsonObject *rtp_jwt_decode (const char *token, const guint8 *key, gsize key_len, gint64 now, GError **error);

/* The server's own access tokens: {"user_id", "iat", "exp", "pwv"} (pwv: the password version the
 * token was issued for). */
/* Returns: (transfer full) */
char *rtp_jwt_encode_access (const char *user_id, gint64 issued_at, gint64 expires, gint64 password_version,
                             const guint8 *key, gsize key_len);
/* TRUE when the signature is right, it has not expired at @now and the claims have their types. */
gboolean rtp_jwt_decode_access (const char *token, const guint8 *key, gsize key_len, gint64 now, char **user_id,
                                gint64 *expires, gint64 *password_version);

G_END_DECLS
