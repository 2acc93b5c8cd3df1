/* rtp-mailer.c: SMTP with libcurl's easy interface in a GTask worker thread
 *
 * Mail is rare (alerts) but comes in floods; blocking transfers in a worker, several over one
 * connection, are simpler than driving SMTP through the multi handle, and never block the main loop. */
#define G_LOG_DOMAIN "RtpMailer"

#include "rtp-mailer.h"
#include "rtp-error.h"
#include "rtp-post.h"

#include <curl/curl.h>
#include <string.h>

/* One mail of a batch, as it goes over the wire. */
typedef struct {
  char *to;
  char *message; /* headers and body, CRLF line ends */
  gsize sent;
} Mail;

typedef struct {
  char *url, *from, *user, *password;
  long timeout_ms;
  gboolean require_tls;
  GPtrArray *mails;      /* (element-type Mail) */
  GMainContext *context; /* the caller's */
  RtpMailerSentFunc sent;
  GDestroyNotify done;
  gpointer user_data;
} Batch;

static void
mail_free (gpointer data)
{
  Mail *m = data;
  g_free (m->to);
  g_free (m->message);
  g_free (m);
}

static void
batch_free (Batch *b)
{
  g_free (b->url);
  g_free (b->from);
  g_free (b->user);
  if (b->password != NULL)
    explicit_bzero (b->password, strlen (b->password));
  g_free (b->password);
  g_ptr_array_unref (b->mails);
  g_main_context_unref (b->context);
  g_free (b);
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

/* The outcome of one mail (index < mails->len), or the end of the batch (index == mails->len), on the
 * caller's context. Both come from the worker in order, at one priority: the end after every outcome. */
typedef struct {
  Batch *batch;
  guint index;
  GError *error;
} Report;

static gboolean
report_cb (gpointer data)
{
  Report *r = data;
  Batch *b = r->batch;

  if (r->index < b->mails->len)
    b->sent (r->index, r->error, b->user_data);
  else
    {
      b->done (b->user_data);
      batch_free (b);
    }
  return G_SOURCE_REMOVE;
}

static void
report_free (gpointer data)
{
  Report *r = data;
  g_clear_error (&r->error);
  g_free (r);
}

static void
report (Batch *b, guint index, GError *error)
{
  Report *r = g_new0 (Report, 1);
  r->batch = b;
  r->index = index;
  r->error = error;
  rtp_context_post (b->context, G_PRIORITY_DEFAULT, report_cb, r, report_free);
  /* cppcheck-suppress memleak ; r belongs to the caller's context now, report_free releases it */
}

static void
send_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  Batch *b = task_data;
  CURL *easy = curl_easy_init ();
  char errbuf[CURL_ERROR_SIZE] = "";

  curl_easy_setopt (easy, CURLOPT_URL, b->url);
  curl_easy_setopt (easy, CURLOPT_MAIL_FROM, b->from);
  curl_easy_setopt (easy, CURLOPT_READFUNCTION, read_cb);
  curl_easy_setopt (easy, CURLOPT_UPLOAD, 1L);
  /* CURLUSESSL_TRY would send AUTH in clear text to a server (or a man in the middle) that
   * offers no STARTTLS */
  curl_easy_setopt (easy, CURLOPT_USE_SSL, (long) (b->require_tls ? CURLUSESSL_ALL : CURLUSESSL_TRY));
  curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, b->timeout_ms);
  curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  if (b->user != NULL)
    curl_easy_setopt (easy, CURLOPT_USERNAME, b->user);
  if (b->password != NULL)
    curl_easy_setopt (easy, CURLOPT_PASSWORD, b->password);
  /* the same handle for each: libcurl keeps the connection open between them (one EHLO, one
   * STARTTLS and one AUTH for the batch) and says QUIT at curl_easy_cleanup */
  for (guint i = 0; i < b->mails->len; i++)
    {
      Mail *m = g_ptr_array_index (b->mails, i);
      struct curl_slist *rcpt = curl_slist_append (NULL, m->to);
      CURLcode rc;

      errbuf[0] = '\0';
      curl_easy_setopt (easy, CURLOPT_MAIL_RCPT, rcpt);
      curl_easy_setopt (easy, CURLOPT_READDATA, m);
      rc = curl_easy_perform (easy);
      curl_easy_setopt (easy, CURLOPT_MAIL_RCPT, NULL);
      curl_slist_free_all (rcpt);
      if (rc != CURLE_OK)
        {
          report (b, i,
                  g_error_new (RTP_ERROR, RTP_ERROR_UPSTREAM, "sending mail to %s failed: %s", m->to,
                               errbuf[0] != '\0' ? errbuf : curl_easy_strerror (rc)));
          break; /* the rest wait for the next attempt */
        }
      report (b, i, NULL);
    }
  curl_easy_cleanup (easy);
  report (b, b->mails->len, NULL);
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

/* The message as it goes out: headers and body with CRLF line ends. */
static char *
format_message (const RtpMailSettings *settings, const RtpMail *mail)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *date = g_date_time_format (now, "%a, %d %b %Y %H:%M:%S +0000");
  g_autofree char *subj = header_text (mail->subject);
  g_autofree char *id = g_uuid_string_random ();
  g_auto (GStrv) lines = g_strsplit (mail->body, "\n", -1);
  g_autofree char *crlf_body = g_strjoinv ("\r\n", lines);

  return g_strdup_printf ("Date: %s\r\nTo: <%s>\r\nFrom: <%s>\r\nMessage-ID: <%s@realtimeplot>\r\n"
                          "Subject: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                          "Content-Transfer-Encoding: 8bit\r\n\r\n%s\r\n",
                          date, mail->to, settings->from, id, subj, crlf_body);
}

void
rtp_mailer_send_batch (const RtpMailSettings *settings, const RtpMail *mails, guint n_mails, RtpMailerSentFunc sent,
                       GDestroyNotify done, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (NULL, NULL, NULL, NULL);
  Batch *b = g_new0 (Batch, 1);

  b->url = g_strdup (settings->url);
  b->from = g_strdup (settings->from);
  b->user = g_strdup (settings->user);
  b->password = g_strdup (settings->password);
  b->timeout_ms = (long) (MAX (settings->timeout_s, 1) * 1000);
  b->require_tls = rtp_mailer_has_credentials (settings) && !settings->insecure;
  b->mails = g_ptr_array_new_full (n_mails, mail_free);
  for (guint i = 0; i < n_mails; i++)
    {
      Mail *m = g_new0 (Mail, 1);
      m->to = g_strdup (mails[i].to);
      m->message = format_message (settings, &mails[i]);
      g_ptr_array_add (b->mails, m);
    }
  b->context = g_main_context_ref_thread_default ();
  b->sent = sent;
  b->done = done;
  b->user_data = user_data;
  g_task_set_task_data (task, b, NULL); /* the worker hands it back with the last report */
  g_task_run_in_thread (task, send_thread);
}
