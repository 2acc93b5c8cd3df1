/* rtp-jwt.c: HS256 JWTs with GLib's HMAC; interoperable with PyJWT
 *
 * Only `alg: HS256` is accepted; the signature is compared in constant time before the
 * payload is even parsed, and `exp` is required. */
#define G_LOG_DOMAIN "RtpJwt"

#include "rtp-jwt.h"
#include "rtp-json.h"
#include "rtp-error.h"
#include "rtp-password.h"

#include <string.h>

char *
rtp_base64url_encode (const guint8 *data, gsize len)
{
  char *s = g_base64_encode (data, len);
  gsize n = strlen (s);

  for (gsize i = 0; i < n; i++)
    {
      if (s[i] == '+')
        s[i] = '-';
      else if (s[i] == '/')
        s[i] = '_';
    }
  while (n > 0 && s[n - 1] == '=')
    s[--n] = '\0';
  return s;
}

/* Strict: only the URL-safe alphabet, no padding, no stray characters. */
guint8 *
rtp_base64url_decode (const char *text, gsize *out_len)
{
  gsize n = strlen (text);
  g_autofree char *std = NULL;
  gsize i;

  if (n % 4 == 1)
    return NULL;
  std = g_malloc (n + 4);
  for (i = 0; i < n; i++)
    {
      char c = text[i];
      if (c == '-')
        c = '+';
      else if (c == '_')
        c = '/';
      else if (!g_ascii_isalnum (c))
        return NULL;
      std[i] = c;
    }
  while (i % 4 != 0)
    std[i++] = '=';
  std[i] = '\0';
  return g_base64_decode (std, out_len);
}

static char *
sign (const char *signing_input, const guint8 *key, gsize key_len)
{
  g_autoptr (GHmac) hmac = g_hmac_new (G_CHECKSUM_SHA256, key, key_len);
  guint8 digest[32];
  gsize digest_len = sizeof digest;

  g_hmac_update (hmac, (const guchar *) signing_input, strlen (signing_input));
  g_hmac_get_digest (hmac, digest, &digest_len);
  return rtp_base64url_encode (digest, digest_len);
}

static char *
encode_json_part (JsonObject *object)
{
  g_autoptr (JsonNode) node = json_node_init_object (json_node_alloc (), object);
  g_autofree char *text = json_to_string (node, FALSE);
  return rtp_base64url_encode ((const guint8 *) text, strlen (text));
}

char *
rtp_jwt_encode (JsonObject *claims, const guint8 *key, gsize key_len)
{
  g_autoptr (JsonObject) header = json_object_new ();
  g_autofree char *h = NULL;
  g_autofree char *p = NULL;
  g_autofree char *input = NULL;
  g_autofree char *sig = NULL;

  json_object_set_string_member (header, "alg", "HS256");
  json_object_set_string_member (header, "typ", "JWT");
  h = encode_json_part (header);
  p = encode_json_part (claims);
  input = g_strconcat (h, ".", p, NULL);
  sig = sign (input, key, key_len);
  return g_strconcat (input, ".", sig, NULL);
}

static JsonObject *
decode_json_part (const char *part)
{
  gsize len = 0;
  g_autofree guint8 *raw = rtp_base64url_decode (part, &len);
  g_autoptr (JsonParser) parser = NULL;
  JsonNode *root;

  if (raw == NULL || len == 0)
    return NULL;
  {
    g_autofree char *key = NULL;
    g_autofree char *value = NULL;
    if (rtp_json_check ((const char *) raw, len, RTP_JSON_MAX_DEPTH, &key, &value) != RTP_JSON_OK)
      return NULL; /* never handed to json-glib: deep nesting would overflow its stack */
  }
  parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, (const char *) raw, (gssize) len, NULL))
    return NULL;
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return NULL;
  return json_object_ref (json_node_get_object (root));
}

static gboolean
invalid (GError **error, const char *why)
{
  g_set_error (error, RTP_ERROR, RTP_ERROR_FORBIDDEN, "invalid token: %s", why);
  return FALSE;
}

/**
 * rtp_jwt_decode:
 * @now: seconds since the epoch, to check `exp`
 *
 * Returns: (transfer full): the claims, or %NULL with an RTP_ERROR_FORBIDDEN error
 */
JsonObject *
rtp_jwt_decode (const char *token, const guint8 *key, gsize key_len, gint64 now, GError **error)
{
  g_auto (GStrv) parts = NULL;
  g_autoptr (JsonObject) header = NULL;
  g_autoptr (JsonObject) claims = NULL;
  g_autofree char *input = NULL;
  g_autofree char *expected = NULL;
  JsonNode *exp;

  if (token == NULL || strlen (token) > 8192)
    return invalid (error, "missing or too long"), NULL;
  parts = g_strsplit (token, ".", -1);
  if (g_strv_length (parts) != 3 || parts[0][0] == '\0' || parts[1][0] == '\0')
    return invalid (error, "malformed"), NULL;

  header = decode_json_part (parts[0]);
  if (header == NULL)
    return invalid (error, "malformed header"), NULL;
  if (!json_object_has_member (header, "alg") ||
      json_node_get_value_type (json_object_get_member (header, "alg")) != G_TYPE_STRING ||
      g_strcmp0 (json_object_get_string_member (header, "alg"), "HS256") != 0)
    return invalid (error, "algorithm not accepted"), NULL;

  input = g_strconcat (parts[0], ".", parts[1], NULL);
  expected = sign (input, key, key_len);
  if (!rtp_constant_time_equal (expected, strlen (expected), parts[2], strlen (parts[2])))
    return invalid (error, "bad signature"), NULL;

  claims = decode_json_part (parts[1]);
  if (claims == NULL)
    return invalid (error, "malformed payload"), NULL;
  exp = json_object_get_member (claims, "exp");
  if (exp == NULL || !JSON_NODE_HOLDS_VALUE (exp) ||
      (json_node_get_value_type (exp) != G_TYPE_INT64 && json_node_get_value_type (exp) != G_TYPE_DOUBLE))
    return invalid (error, "no expiry"), NULL;
  if ((json_node_get_value_type (exp) == G_TYPE_INT64 ? json_node_get_int (exp)
                                                      : (gint64) json_node_get_double (exp)) <= now)
    return invalid (error, "expired"), NULL;
  return g_steal_pointer (&claims);
}

char *
rtp_jwt_encode_access (const char *user_id, gint64 issued_at, gint64 expires, gint64 password_version,
                       const guint8 *key, gsize key_len)
{
  g_autoptr (JsonObject) claims = json_object_new ();

  json_object_set_string_member (claims, "user_id", user_id);
  json_object_set_int_member (claims, "iat", issued_at);
  json_object_set_int_member (claims, "exp", expires);
  json_object_set_int_member (claims, "pwv", password_version);
  return rtp_jwt_encode (claims, key, key_len);
}

gboolean
rtp_jwt_decode_access (const char *token, const guint8 *key, gsize key_len, gint64 now, char **user_id, gint64 *expires,
                       gint64 *password_version)
{
  g_autoptr (JsonObject) claims = rtp_jwt_decode (token, key, key_len, now, NULL);
  JsonNode *id;
  JsonNode *pwv;
  JsonNode *exp;

  if (claims == NULL)
    return FALSE;
  id = json_object_get_member (claims, "user_id");
  pwv = json_object_get_member (claims, "pwv");
  if (id == NULL || !JSON_NODE_HOLDS_VALUE (id) || json_node_get_value_type (id) != G_TYPE_STRING || pwv == NULL ||
      !JSON_NODE_HOLDS_VALUE (pwv) || json_node_get_value_type (pwv) != G_TYPE_INT64)
    return FALSE;
  exp = json_object_get_member (claims, "exp"); /* rtp_jwt_decode() checked it is an integer or a double */
  *user_id = g_strdup (json_node_get_string (id));
  *password_version = json_node_get_int (pwv);
  *expires = json_node_get_value_type (exp) == G_TYPE_INT64 ? json_node_get_int (exp)
                                                            : (gint64) json_node_get_double (exp);
  return TRUE;
}
