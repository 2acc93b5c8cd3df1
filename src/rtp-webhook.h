/* rtp-webhook.h: posting alarm messages to a chat webhook (libcurl), off the main loop */
#pragma once

#include "rtp-curl-batch.h"

#include <gio/gio.h>

G_BEGIN_DECLS

/* The X-Rtp-Signature value for @body: "sha256=<hex HMAC-SHA256 with @secret>".
 * Returns: (transfer full) */
char *rtp_webhook_signature (const char *secret, const char *body);

/* POSTs each of @bodies (JSON) to @url, in order, over one connection when the receiver keeps it
 * alive, in a worker thread; with @secret each carries X-Rtp-Signature. A post succeeds on a 2xx
 * answer. A 400, 413, 415 or 422 answer — the receiver refuses that post's body and would refuse it
 * again — fails with RTP_ERROR_INVALID; anything else (no answer within @timeout_s, another status)
 * with RTP_ERROR_UPSTREAM; both name it. @sent and @done as for rtp_curl_batch_run(). */
void rtp_webhook_post_batch (const char *url, const char *secret, const char *const *bodies, guint n_bodies,
                             double timeout_s, RtpCurlBatchSentFunc sent, GDestroyNotify done, gpointer user_data);

G_END_DECLS
