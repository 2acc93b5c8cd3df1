/* rtp-mailer.h: sending one mail over SMTP (libcurl), off the main loop */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct {
  const char *url;       /* smtp://host:port or smtps://host:port */
  const char *from;
  const char *user;      /* (nullable) */
  const char *password;  /* (nullable) */
  double timeout_s;
} RtpMailSettings;

/* Sends in a worker thread; STARTTLS when the server offers it. */
void     rtp_mailer_send_async (const RtpMailSettings *settings, const char *to, const char *subject, const char *body,
                                GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
gboolean rtp_mailer_send_finish (GAsyncResult *result, GError **error);

G_END_DECLS
