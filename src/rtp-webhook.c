/* rtp-webhook.c: an HTTP POST with libcurl's easy interface in a GTask worker thread
 *
 * Like the mailer: alarm messages are rare, a blocking transfer in a worker never blocks the main
 * loop. Only http and https; redirects are not followed (a webhook URL is where it says). */
#define G_LOG_DOMAIN "RtpWebhook"

#include "rtp-webhook.h"
#include "rtp-error.h"

#include <curl/curl.h>
#include <string.h>

typedef struct {
  char *url;
  char *signature; /* (nullable) */
  char *body;
  long timeout_ms;
} Post;

static void
post_free (Post *p)
{
  g_free (p->url);
  g_free (p->signature);
  g_free (p->body);
  g_free (p);
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

static void
post_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  Post *p = task_data;
  CURL *easy = curl_easy_init ();
  struct curl_slist *headers = curl_slist_append (NULL, "Content-Type: application/json");
  char errbuf[CURL_ERROR_SIZE] = "";
  long status = 0;
  CURLcode rc;

  if (p->signature != NULL)
    {
      g_autofree char *h = g_strconcat ("X-Rtp-Signature: ", p->signature, NULL);
      headers = curl_slist_append (headers, h);
    }
  curl_easy_setopt (easy, CURLOPT_URL, p->url);
  curl_easy_setopt (easy, CURLOPT_POSTFIELDS, p->body);
  curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE, (long) strlen (p->body));
  curl_easy_setopt (easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, p->timeout_ms);
  curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, 0L);
  rc = curl_easy_perform (easy);
  if (rc == CURLE_OK)
    curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup (easy);
  curl_slist_free_all (headers);
  if (rc != CURLE_OK)
    g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "webhook: %s",
                             errbuf[0] != '\0' ? errbuf : curl_easy_strerror (rc));
  else if (status < 200 || status > 299)
    g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "webhook: the receiver answered %ld", status);
  else
    g_task_return_boolean (task, TRUE);
}

void
rtp_webhook_post_async (const char *url, const char *secret, const char *body, double timeout_s,
                        GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  Post *p = g_new0 (Post, 1);

  g_return_if_fail (url != NULL && body != NULL);
  p->url = g_strdup (url);
  p->signature = secret != NULL && secret[0] != '\0' ? rtp_webhook_signature (secret, body) : NULL;
  p->body = g_strdup (body);
  p->timeout_ms = (long) (timeout_s * 1000);
  g_task_set_source_tag (task, rtp_webhook_post_async);
  g_task_set_task_data (task, p, (GDestroyNotify) post_free);
  g_task_run_in_thread (task, post_thread);
}

gboolean
rtp_webhook_post_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}
