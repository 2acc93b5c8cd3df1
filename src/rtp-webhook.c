/* rtp-webhook.c: HTTP POSTs with libcurl's easy interface in a worker thread
 *
 * Like the mailer: alarm messages are rare but come in floods; blocking transfers in a worker,
 * several over one connection (rtp-curl-batch), never block the main loop. Only http and https;
 * redirects are not followed (a webhook URL is where it says). */
#define G_LOG_DOMAIN "RtpWebhook"

#include "rtp-webhook.h"
#include "rtp-error.h"
#include "rtp-curl-batch.h"

#include <curl/curl.h>
#include <string.h>

/* What every post of a batch shares. */
typedef struct {
  char *url;
  char *secret; /* (nullable) */
  long timeout_ms;
} Target;

static void
target_free (gpointer data)
{
  Target *t = data;
  g_free (t->url);
  if (t->secret != NULL)
    explicit_bzero (t->secret, strlen (t->secret));
  g_free (t->secret);
  g_free (t);
}

char *
rtp_webhook_signature (const char *secret, const char *body)
{
  g_autofree char *hex = g_compute_hmac_for_string (G_CHECKSUM_SHA256, (const guchar *) secret, strlen (secret), body,
                                                    -1);
  return g_strconcat ("sha256=", hex, NULL);
}

/* The answer's body is not needed: read and dropped, at most what curl hands over. */
static size_t
discard (char *data, size_t size, size_t n, void *user_data)
{
  return size * n;
}

/* In the worker, with the batch's handle: libcurl keeps the connection (and its TLS session) from
 * one post to the next when the receiver keeps it alive. */
static GError *
send_post (CURL *easy, gpointer item, gpointer shared)
{
  const char *body = item;
  Target *t = shared;
  struct curl_slist *headers = curl_slist_append (NULL, "Content-Type: application/json");
  char errbuf[CURL_ERROR_SIZE] = "";
  long status = 0;
  CURLcode rc;

  if (t->secret != NULL)
    {
      g_autofree char *signature = rtp_webhook_signature (t->secret, body);
      g_autofree char *h = g_strconcat ("X-Rtp-Signature: ", signature, NULL);
      headers = curl_slist_append (headers, h);
    }
  curl_easy_setopt (easy, CURLOPT_URL, t->url);
  curl_easy_setopt (easy, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE, (long) strlen (body));
  curl_easy_setopt (easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, t->timeout_ms);
  curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, 0L);
  rc = curl_easy_perform (easy);
  if (rc == CURLE_OK)
    curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
  /* nothing of this post stays in the handle: the caller frees it after the batch */
  curl_easy_setopt (easy, CURLOPT_POSTFIELDS, NULL);
  curl_easy_setopt (easy, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, NULL);
  curl_slist_free_all (headers);
  if (rc != CURLE_OK)
    return g_error_new (RTP_ERROR, RTP_ERROR_UPSTREAM, "webhook: %s",
                        errbuf[0] != '\0' ? errbuf : curl_easy_strerror (rc));
  /* the post itself refused (its body): it would be again. Not 401, 403, 404, 410 …: a wrong URL or a
   * revoked token refuses every post, and they all go once it is set right */
  if (status == 400 || status == 413 || status == 415 || status == 422)
    return g_error_new (RTP_ERROR, RTP_ERROR_INVALID, "webhook: the receiver answered %ld", status);
  if (status < 200 || status > 299)
    return g_error_new (RTP_ERROR, RTP_ERROR_UPSTREAM, "webhook: the receiver answered %ld", status);
  return NULL;
}

void
rtp_webhook_post_batch (const char *url, const char *secret, const char *const *bodies, guint n_bodies,
                        double timeout_s, RtpCurlBatchSentFunc sent, GDestroyNotify done, gpointer user_data)
{
  Target *t = g_new0 (Target, 1);
  GPtrArray *items = g_ptr_array_new_full (n_bodies, g_free);

  g_return_if_fail (url != NULL);
  t->url = g_strdup (url);
  t->secret = secret != NULL && secret[0] != '\0' ? g_strdup (secret) : NULL;
  t->timeout_ms = (long) (timeout_s * 1000);
  for (guint i = 0; i < n_bodies; i++)
    g_ptr_array_add (items, g_strdup (bodies[i]));
  rtp_curl_batch_run (items, send_post, t, target_free, sent, done, user_data);
}
