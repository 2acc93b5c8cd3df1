/* test-jwt.c: HS256 tokens: round trip and every way a token can be forged or broken */
#include "rtp-error.h"
#include "rtp-jwt.h"

#include <string.h>

static const guint8 key[] = "0123456789abcdef0123456789abcdef";
#define KEY_LEN (sizeof key - 1)
#define NOW 1700000000

static char *
make_token (gint64 exp)
{
  g_autoptr (JsonObject) claims = json_object_new ();
  json_object_set_string_member (claims, "user_id", "0");
  json_object_set_int_member (claims, "iat", NOW);
  json_object_set_int_member (claims, "exp", exp);
  json_object_set_int_member (claims, "pwv", 3);
  return rtp_jwt_encode (claims, key, KEY_LEN);
}

static void
test_roundtrip (void)
{
  g_autofree char *token = make_token (NOW + 60);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) claims = rtp_jwt_decode (token, key, KEY_LEN, NOW, &error);

  g_assert_no_error (error);
  g_assert_nonnull (claims);
  g_assert_cmpstr (json_object_get_string_member (claims, "user_id"), ==, "0");
  g_assert_cmpint (json_object_get_int_member (claims, "pwv"), ==, 3);
  /* the header is exactly what PyJWT writes */
  g_assert_true (g_str_has_prefix (token, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
}

/* A token as PyJWT writes it (compact JSON, HS256), made with Python's hmac:
 * jwt.encode({"user_id": "0", "exp": 4102444800}, "secret", algorithm="HS256") */
static void
test_pyjwt_interop (void)
{
  const char *token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoiMCIsImV4cCI6NDEwMjQ0NDgwMH0."
                      "deOWUPoCWwTMSLcuF8RdGsWS3k5d4_TuRy_wVfd0OBA";
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) claims = rtp_jwt_decode (token, (const guint8 *) "secret", 6, NOW, &error);

  g_assert_no_error (error);
  g_assert_cmpstr (json_object_get_string_member (claims, "user_id"), ==, "0");
}

static void
assert_refused (const char *token, gint64 now)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) claims = rtp_jwt_decode (token, key, KEY_LEN, now, &error);
  g_assert_null (claims);
  g_assert_error (error, RTP_ERROR, RTP_ERROR_FORBIDDEN);
}

static char *
b64 (const char *text)
{
  return rtp_base64url_encode ((const guint8 *) text, strlen (text));
}

static void
test_refusals (void)
{
  g_autofree char *good = make_token (NOW + 60);
  g_auto (GStrv) parts = g_strsplit (good, ".", -1);
  g_autofree char *none_header = b64 ("{\"alg\":\"none\",\"typ\":\"JWT\"}");
  g_autofree char *hs384_header = b64 ("{\"alg\":\"HS384\",\"typ\":\"JWT\"}");
  g_autofree char *alg_none = g_strconcat (none_header, ".", parts[1], ".", NULL);
  g_autofree char *alg_none_sig = g_strconcat (none_header, ".", parts[1], ".", parts[2], NULL);
  g_autofree char *hs384 = g_strconcat (hs384_header, ".", parts[1], ".", parts[2], NULL);
  g_autofree char *forged_payload = b64 ("{\"user_id\":\"0\",\"exp\":99999999999,\"pwv\":3}");
  g_autofree char *tampered = g_strconcat (parts[0], ".", forged_payload, ".", parts[2], NULL);
  g_autofree char *expired = make_token (NOW - 1);
  g_autofree char *wrong_key = NULL;
  g_autofree char *bad_sig = g_strdup (good);

  {
    g_autoptr (JsonObject) claims = json_object_new ();
    json_object_set_string_member (claims, "user_id", "0");
    json_object_set_int_member (claims, "exp", NOW + 60);
    wrong_key = rtp_jwt_encode (claims, (const guint8 *) "another key", 11);
  }
  bad_sig[strlen (bad_sig) - 2] = bad_sig[strlen (bad_sig) - 2] == 'A' ? 'B' : 'A';

  assert_refused (alg_none, NOW);
  assert_refused (alg_none_sig, NOW);
  assert_refused (hs384, NOW);
  assert_refused (tampered, NOW);
  assert_refused (expired, NOW);
  assert_refused (good, NOW + 60); /* exp is exclusive */
  assert_refused (wrong_key, NOW);
  assert_refused (bad_sig, NOW);
  assert_refused ("", NOW);
  assert_refused ("abc", NOW);
  assert_refused ("a.b", NOW);
  assert_refused ("a.b.c.d", NOW);
  assert_refused ("..", NOW);
  assert_refused ("!!!.@@@.###", NOW);
  assert_refused ("eyJhbGciOiJIUzI1NiJ9.e30.", NOW); /* {} payload, empty signature */
}

static void
test_no_exp (void)
{
  g_autoptr (JsonObject) claims = json_object_new ();
  g_autofree char *token = NULL;

  json_object_set_string_member (claims, "user_id", "0");
  token = rtp_jwt_encode (claims, key, KEY_LEN);
  assert_refused (token, NOW);
}

static void
test_base64url (void)
{
  const guint8 data[] = { 0xfb, 0xff, 0xfe, 0x00, 0x01 };
  g_autofree char *enc = rtp_base64url_encode (data, sizeof data);
  gsize len = 0;
  g_autofree guint8 *dec = rtp_base64url_decode (enc, &len);

  g_assert_null (strchr (enc, '+'));
  g_assert_null (strchr (enc, '/'));
  g_assert_null (strchr (enc, '='));
  g_assert_cmpmem (dec, len, data, sizeof data);
  g_assert_null (rtp_base64url_decode ("a", &len));
  g_assert_null (rtp_base64url_decode ("ab+c", &len));
  g_assert_null (rtp_base64url_decode ("ab=c", &len));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/jwt/roundtrip", test_roundtrip);
  g_test_add_func ("/jwt/pyjwt-interop", test_pyjwt_interop);
  g_test_add_func ("/jwt/refusals", test_refusals);
  g_test_add_func ("/jwt/no-exp", test_no_exp);
  g_test_add_func ("/jwt/base64url", test_base64url);
  return g_test_run ();
}
