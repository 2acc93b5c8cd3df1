/* rtp-jwt.h: JSON Web Tokens signed with HS256 */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

char       *rtp_base64url_encode (const guint8 *data, gsize len);
guint8     *rtp_base64url_decode (const char *text, gsize *out_len);

char       *rtp_jwt_encode (JsonObject *claims, const guint8 *key, gsize key_len);
JsonObject *rtp_jwt_decode (const char *token, const guint8 *key, gsize key_len, gint64 now, GError **error);

G_END_DECLS
