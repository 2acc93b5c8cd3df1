/* rtp-mailer.h: sending one mail over SMTP (libcurl), off the main loop */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct {
  const char *url; /* smtp://host:port or smtps://host:port */
  const char *from;
  const char *user;     /* (nullable) */
  const char *password; /* (nullable) */
  double timeout_s;
  gboolean insecure; /* RTP_SMTP_INSECURE: credentials may go out without TLS */
} RtpMailSettings;

/* Whether mail with these settings carries credentials (RTP_SMTP_USER or in the URL). */
gboolean rtp_mailer_has_credentials (const RtpMailSettings *settings);

/* Sends in a worker thread. With credentials over smtp:// STARTTLS is required (the mail fails
 * rather than sending AUTH in clear text) unless @insecure; without, it is used when offered. */
void rtp_mailer_send_async (const RtpMailSettings *settings, const char *to, const char *subject, const char *body,
                            GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
gboolean rtp_mailer_send_finish (GAsyncResult *result, GError **error);

G_END_DECLS
