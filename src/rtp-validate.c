/* rtp-validate.c: the rules every value from outside meets, in one room
 *
 * Services call these; the routes and the control interface never check values themselves. */
#define G_LOG_DOMAIN "RtpValidate"

#include "rtp-validate.h"
#include "rtp-error.h"
#include "rtp-i18n.h"

#include <string.h>

static gboolean
check_text (const char *field, const char *value, guint max_chars, gboolean line_breaks, GError **error)
{
  if (!g_utf8_validate (value, -1, NULL))
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("%s: The value is not valid UTF-8."), field);
      return FALSE;
    }
  if (g_utf8_strlen (value, -1) > max_chars)
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("%s: The value is longer than %u characters."), field,
                   max_chars);
      return FALSE;
    }
  for (const char *p = value; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      if (g_unichar_iscntrl (c) && !(line_breaks && (c == '\n' || c == '\r')))
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("%s: The value must not contain control characters."),
                       field);
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
rtp_validate_text (const char *field, const char *value, guint max_chars, GError **error)
{
  return check_text (field, value, max_chars, FALSE, error);
}

gboolean
rtp_validate_imported_text (const char *field, const char *value, guint max_chars, GError **error)
{
  return check_text (field, value, max_chars, TRUE, error);
}

gboolean
rtp_validate_is_blank (const char *value)
{
  if (!g_utf8_validate (value, -1, NULL))
    return FALSE;
  for (const char *p = value; *p != '\0'; p = g_utf8_next_char (p))
    if (!g_unichar_isspace (g_utf8_get_char (p)))
      return FALSE;
  return TRUE;
}

gboolean
rtp_validate_email (const char *email)
{
  /* atext of RFC 5322 without the characters that mean something to SMTP or to a mail header */
  return g_regex_match_simple ("^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.[A-Za-z0-9-]{2,}$",
                               email, 0, 0) &&
         strstr (email, "..") == NULL && email[0] != '.' && strstr (email, ".@") == NULL;
}

gboolean
rtp_validate_login_name (const char *value, GError **error)
{
  g_autofree char *normal = NULL;

  if (!rtp_validate_text ("login_name", value, 100, error))
    return FALSE;
  normal = g_utf8_normalize (value, -1, G_NORMALIZE_NFC);
  for (const char *p = value; *p != '\0'; p = g_utf8_next_char (p))
    {
      GUnicodeType type = g_unichar_type (g_utf8_get_char (p));
      if (type == G_UNICODE_FORMAT || type == G_UNICODE_CONTROL || type == G_UNICODE_LINE_SEPARATOR ||
          type == G_UNICODE_PARAGRAPH_SEPARATOR)
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                       _ ("login_name: The login_name (%s) contains invisible or control characters."), value);
          return FALSE;
        }
    }
  if (value[0] != '\0' && (g_unichar_isspace (g_utf8_get_char (value)) ||
                           g_unichar_isspace (g_utf8_get_char (g_utf8_find_prev_char (value, value + strlen (value))))))
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                   _ ("login_name: The login_name (%s) must not begin or end with white space."), value);
      return FALSE;
    }
  if (normal == NULL || strcmp (normal, value) != 0)
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                   _ ("login_name: The login_name (%s) is not in Unicode normal form C."), value);
      return FALSE;
    }
  return TRUE;
}

/**
 * rtp_pv_name_is_epics:
 *
 * Returns: whether @name is an EPICS record name (letters, digits and `_ - + : [ ] < > ;`),
 *   optionally followed by `.FIELD` (letters, digits, `_`)
 */
gboolean
rtp_pv_name_is_epics (const char *name)
{
  const char *p = name;

  for (; *p != '\0' && *p != '.'; p++)
    if (!g_ascii_isalnum (*p) && strchr ("_-+:[]<>;", *p) == NULL)
      return FALSE;
  if (p == name)
    return FALSE;
  if (*p == '.')
    {
      if (p[1] == '\0')
        return FALSE;
      for (p++; *p != '\0'; p++)
        if (!g_ascii_isalnum (*p) && *p != '_')
          return FALSE;
    }
  return TRUE;
}

/* No MQTT topic may be built from a name holding a wildcard (`+`, `#`) or a level separator:
 * the broker drops a connection that publishes to one, and `A/B:x` would be PV `A:B:x`'s topic. */
gboolean
rtp_pv_name_is_mqtt_safe (const char *name)
{
  return strpbrk (name, "+#/") == NULL;
}
