/* rtp-mailer.c: SMTP with libcurl's easy interface in a GTask worker thread
 *
 * Mail is rare (alerts); a blocking transfer in a worker is simpler than driving SMTP
 * through the multi handle, and never blocks the main loop. */
#define G_LOG_DOMAIN "RtpMailer"

#include "rtp-mailer.h"
#include "rtp-error.h"

#include <curl/curl.h>
#include <string.h>

typedef struct {
  char *url, *from, *user, *password, *to;
  char *message; /* headers and body, CRLF line ends */
  gsize sent;
  long timeout_ms;
  gboolean require_tls;
} Mail;

static void
mail_free (Mail *m)
{
  g_free (m->url);
  g_free (m->from);
  g_free (m->user);
  if (m->password != NULL)
    explicit_bzero (m->password, strlen (m->password));
  g_free (m->password);
  g_free (m->to);
  g_free (m->message);
  g_free (m);
}

static size_t
read_cb (char *buffer, size_t size, size_t nitems, void *userp)
{
  Mail *m = userp;
  gsize left = strlen (m->message) - m->sent;
  gsize n = MIN (left, size * nitems);

  memcpy (buffer, m->message + m->sent, n);
  m->sent += n;
  return n;
}

static void
send_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  Mail *m = task_data;
  CURL *easy = curl_easy_init ();
  struct curl_slist *rcpt = curl_slist_append (NULL, m->to);
  char errbuf[CURL_ERROR_SIZE] = "";
  CURLcode rc;

  curl_easy_setopt (easy, CURLOPT_URL, m->url);
  curl_easy_setopt (easy, CURLOPT_MAIL_FROM, m->from);
  curl_easy_setopt (easy, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt (easy, CURLOPT_READFUNCTION, read_cb);
  curl_easy_setopt (easy, CURLOPT_READDATA, m);
  curl_easy_setopt (easy, CURLOPT_UPLOAD, 1L);
  /* CURLUSESSL_TRY would send AUTH in clear text to a server (or a man in the middle) that
   * offers no STARTTLS */
  curl_easy_setopt (easy, CURLOPT_USE_SSL, (long) (m->require_tls ? CURLUSESSL_ALL : CURLUSESSL_TRY));
  curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, m->timeout_ms);
  curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  if (m->user != NULL)
    curl_easy_setopt (easy, CURLOPT_USERNAME, m->user);
  if (m->password != NULL)
    curl_easy_setopt (easy, CURLOPT_PASSWORD, m->password);
  rc = curl_easy_perform (easy);
  curl_slist_free_all (rcpt);
  curl_easy_cleanup (easy);
  if (rc != CURLE_OK)
    g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "sending mail to %s failed: %s", m->to,
                             errbuf[0] != '\0' ? errbuf : curl_easy_strerror (rc));
  else
    g_task_return_boolean (task, TRUE);
}

/* Header values are ASCII here, or RFC 2047 encoded when not. */
static char *
header_text (const char *text)
{
  g_autofree char *b64 = NULL;

  for (const char *p = text; *p != '\0'; p++)
    if ((guchar) *p >= 0x80 || *p == '\r' || *p == '\n')
      {
        b64 = g_base64_encode ((const guchar *) text, strlen (text));
        return g_strdup_printf ("=?UTF-8?B?%s?=", b64);
      }
  return g_strdup (text);
}

gboolean
rtp_mailer_has_credentials (const RtpMailSettings *settings)
{
  g_autoptr (GUri) uri = settings->url != NULL ? g_uri_parse (settings->url, G_URI_FLAGS_NONE, NULL) : NULL;

  return (settings->user != NULL && settings->user[0] != '\0') ||
         (settings->password != NULL && settings->password[0] != '\0') ||
         (uri != NULL && g_uri_get_userinfo (uri) != NULL);
}

void
rtp_mailer_send_async (const RtpMailSettings *settings, const char *to, const char *subject, const char *body,
                       GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  Mail *m = g_new0 (Mail, 1);
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *date = g_date_time_format (now, "%a, %d %b %Y %H:%M:%S +0000");
  g_autofree char *subj = header_text (subject);
  g_autofree char *id = g_uuid_string_random ();
  g_auto (GStrv) lines = g_strsplit (body, "\n", -1);
  g_autofree char *crlf_body = g_strjoinv ("\r\n", lines);

  m->url = g_strdup (settings->url);
  m->from = g_strdup (settings->from);
  m->user = g_strdup (settings->user);
  m->password = g_strdup (settings->password);
  m->to = g_strdup (to);
  m->timeout_ms = (long) (MAX (settings->timeout_s, 1) * 1000);
  m->require_tls = rtp_mailer_has_credentials (settings) && !settings->insecure;
  m->message = g_strdup_printf ("Date: %s\r\nTo: <%s>\r\nFrom: <%s>\r\nMessage-ID: <%s@realtimeplot>\r\n"
                                "Subject: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                "Content-Transfer-Encoding: 8bit\r\n\r\n%s\r\n",
                                date, to, settings->from, id, subj, crlf_body);
  g_task_set_task_data (task, m, (GDestroyNotify) mail_free);
  g_task_run_in_thread (task, send_thread);
}

gboolean
rtp_mailer_send_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}
