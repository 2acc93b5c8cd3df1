/* rtp-webhook.h: posting one alarm message to a chat webhook (libcurl), off the main loop */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* The X-Rtp-Signature value for @body: "sha256=<hex HMAC-SHA256 with @secret>".
 * Returns: (transfer full) */
char *rtp_webhook_signature (const char *secret, const char *body);

/* POSTs @body (JSON) to @url in a worker thread; with @secret it carries X-Rtp-Signature. Succeeds on
 * a 2xx answer; anything else (no answer within @timeout_s, another status) fails with
 * RTP_ERROR_UPSTREAM naming it. */
void rtp_webhook_post_async (const char *url, const char *secret, const char *body, double timeout_s,
                             GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
gboolean rtp_webhook_post_finish (GAsyncResult *result, GError **error);

G_END_DECLS
