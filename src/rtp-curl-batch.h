/* rtp-curl-batch.h: several transfers over one libcurl handle, in a worker thread */
#pragma once

#include <curl/curl.h>
#include <gio/gio.h>

G_BEGIN_DECLS

/* In the worker: sets @easy up for @item and performs it. Returns NULL, or the error of this item.
 * The options set for one item stay for the next unless set again. */
typedef GError *(*RtpCurlBatchSendFunc) (CURL *easy, gpointer item, gpointer shared);

/* On the caller's context: the outcome of item @index (@error NULL: it went out). */
typedef void (*RtpCurlBatchSentFunc) (guint index, const GError *error, gpointer user_data);

/* Sends @items (transfer full; freed by their array's free function) in order, one at a time, with
 * one easy handle in a worker thread: libcurl keeps the connection (and its TLS session, and an SMTP
 * login) from one to the next. @sent is called on the caller's thread-default context after each,
 * right after it; after a failure the rest are not tried (no call for them). Then @done is called
 * once with @user_data, after every call of @sent, and @shared is freed with @shared_free. */
void rtp_curl_batch_run (GPtrArray *items, RtpCurlBatchSendFunc send, gpointer shared, GDestroyNotify shared_free,
                         RtpCurlBatchSentFunc sent, GDestroyNotify done, gpointer user_data);

G_END_DECLS
