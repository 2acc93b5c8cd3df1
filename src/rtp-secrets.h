/* rtp-secrets.h: secrets in the Secret Service (libsecret), with a fallback for headless hosts */
#pragma once

#include <glib-object.h>

#include "rtp-config.h"

G_BEGIN_DECLS

#define RTP_TYPE_SECRETS (rtp_secrets_get_type ())
G_DECLARE_FINAL_TYPE (RtpSecrets, rtp_secrets, RTP, SECRETS, GObject)

/* The secrets that may live in the keyring, by their configuration key. */
extern const char *const rtp_secret_names[];

/* Returns: (transfer full) */
RtpSecrets *rtp_secrets_new (void);
/* The secret @name from the Secret Service, or NULL (no service, locked, or not stored). */
/* Returns: (transfer full) */
char *rtp_secrets_lookup (RtpSecrets *self, const char *name);
/* The keyring's value of @name, else the configuration's (NULL when neither is set). */
/* Returns: (transfer full) */
char *rtp_secrets_lookup_with_fallback (RtpSecrets *self, RtpConfig *config, const char *name);
gboolean rtp_secrets_store (const char *name, const char *value, GError **error);

G_END_DECLS
