/* rtp-validate.h: the rules every value from outside meets, in one room */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* One field of a request as the caller sent it. The adapter (a route reading JSON, the control
 * interface reading GVariant) only says what arrived; the service decides which refusal comes
 * first (a missing PV before a field of the wrong type, as the contract orders them). */
typedef enum {
  RTP_FIELD_ABSENT,     /* not given */
  RTP_FIELD_SET,        /* given, and the value is in the typed member next to it */
  RTP_FIELD_NULL,       /* given as null (where a field may be null, the service says what it means) */
  RTP_FIELD_WRONG_TYPE, /* given, but not of the field's type */
} RtpFieldState;

/* Text fields (API.md): valid UTF-8, at most @max_chars, no control characters. */
gboolean rtp_validate_text (const char *field, const char *value, guint max_chars, GError **error);
/* The same for a text read from an export file, which may hold the line breaks a value of the
 * original service's database had (the file escapes them): an export and its import keep them. */
gboolean rtp_validate_imported_text (const char *field, const char *value, guint max_chars, GError **error);

/* TRUE when @value is valid UTF-8 holding nothing but white space (Unicode's), or nothing. */
gboolean rtp_validate_is_blank (const char *value);

/* One RFC 5322 addr-spec (local@domain.tld) and nothing else: no "<>,;", quotes or spaces, which
 * would let one address become several SMTP recipients. */
gboolean rtp_validate_email (const char *email);

/* A login name: a text field that is NFC-normalised, without white space around it and without
 * format, control or separator characters (Unicode Cc, Cf, Zl, Zp), so that two login names
 * that look the same are the same. */
gboolean rtp_validate_login_name (const char *value, GError **error);

/* EPICS record names: letters, digits and `_ - + : [ ] < > ;`, optionally followed by `.FIELD`. */
gboolean rtp_pv_name_is_epics (const char *name);
/* No MQTT topic may be built from a name holding `+`, `#` or `/`. */
gboolean rtp_pv_name_is_mqtt_safe (const char *name);

G_END_DECLS
