/* rtp-mailer.c: SMTP with libcurl's easy interface in a worker thread
 *
 * Mail is rare (alerts) but comes in floods; blocking transfers in a worker, several over one
 * connection (rtp-curl-batch), are simpler than driving SMTP through the multi handle, and never
 * block the main loop. */
#define G_LOG_DOMAIN "RtpMailer"

#include "rtp-mailer.h"
#include "rtp-error.h"
#include "rtp-curl-batch.h"

#include <curl/curl.h>
#include <string.h>

/* What every mail of a batch shares. */
typedef struct {
  char *url, *from, *user, *password;
  long timeout_ms;
  gboolean require_tls;
} Session;

/* One mail of a batch, as it goes over the wire. */
typedef struct {
  char *to;
  char *message; /* headers and body, CRLF line ends */
  gsize sent;
} Mail;

static void
session_free (gpointer data)
{
  Session *s = data;
  g_free (s->url);
  g_free (s->from);
  g_free (s->user);
  if (s->password != NULL)
    explicit_bzero (s->password, strlen (s->password));
  g_free (s->password);
  g_free (s);
}

static void
mail_free (gpointer data)
{
  Mail *m = data;
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

/* The server's latest reply line (libcurl hands SMTP replies to the header callback), for the log
 * of a failure: libcurl's own message for a refusal at the end of DATA is "Weird server reply". */
typedef struct {
  char line[160];
} Reply;

static size_t
reply_cb (char *data, size_t size, size_t n, void *userp)
{
  Reply *r = userp;
  gsize len = MIN (size * n, sizeof r->line - 1);

  while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n'))
    len--;
  memcpy (r->line, data, len);
  r->line[len] = '\0';
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isprint (r->line[i]))
      r->line[i] = '?'; /* the log gets no control characters from a server */
  return size * n;
}

/* In the worker, with the batch's handle: libcurl keeps the connection open from one mail to the
 * next (one EHLO, one STARTTLS and one AUTH for the batch) and says QUIT when the batch is over. */
static GError *
send_mail (CURL *easy, gpointer item, gpointer shared)
{
  Mail *m = item;
  Session *s = shared;
  struct curl_slist *rcpt = curl_slist_append (NULL, m->to);
  char errbuf[CURL_ERROR_SIZE] = "";
  Reply reply = { "" };
  CURLcode rc;

  curl_easy_setopt (easy, CURLOPT_URL, s->url);
  curl_easy_setopt (easy, CURLOPT_HEADERFUNCTION, reply_cb);
  curl_easy_setopt (easy, CURLOPT_HEADERDATA, &reply);
  curl_easy_setopt (easy, CURLOPT_MAIL_FROM, s->from);
  curl_easy_setopt (easy, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt (easy, CURLOPT_READFUNCTION, read_cb);
  curl_easy_setopt (easy, CURLOPT_READDATA, m);
  curl_easy_setopt (easy, CURLOPT_UPLOAD, 1L);
  /* CURLUSESSL_TRY would send AUTH in clear text to a server (or a man in the middle) that
   * offers no STARTTLS */
  curl_easy_setopt (easy, CURLOPT_USE_SSL, (long) (s->require_tls ? CURLUSESSL_ALL : CURLUSESSL_TRY));
  curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, s->timeout_ms);
  /* the limit of each wait for a reply, QUIT's too (at the end of the batch; libcurl's default 120 s) */
  curl_easy_setopt (easy, CURLOPT_SERVER_RESPONSE_TIMEOUT, MAX (s->timeout_ms / 1000, 1L));
  curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  if (s->user != NULL)
    curl_easy_setopt (easy, CURLOPT_USERNAME, s->user);
  if (s->password != NULL)
    curl_easy_setopt (easy, CURLOPT_PASSWORD, s->password);
  rc = curl_easy_perform (easy);
  /* nothing of this mail stays in the handle: the caller frees it after the batch, maybe before QUIT */
  curl_easy_setopt (easy, CURLOPT_READDATA, NULL);
  curl_easy_setopt (easy, CURLOPT_MAIL_RCPT, NULL);
  curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, NULL);
  curl_easy_setopt (easy, CURLOPT_HEADERFUNCTION, NULL);
  curl_easy_setopt (easy, CURLOPT_HEADERDATA, NULL);
  curl_slist_free_all (rcpt);
  if (rc != CURLE_OK)
    return g_error_new (RTP_ERROR, RTP_ERROR_UPSTREAM, "sending mail to %s failed: %s%s%s%s", m->to,
                        errbuf[0] != '\0' ? errbuf : curl_easy_strerror (rc),
                        reply.line[0] != '\0' ? " (the server's last reply: " : "", reply.line,
                        reply.line[0] != '\0' ? ")" : "");
  return NULL;
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

/* Whether @id may stand left of the @ of a Message-ID as it is (the outbox's ids are UUIDs). */
static gboolean
message_id_part (const char *id)
{
  if (id == NULL || id[0] == '\0' || strlen (id) > 64)
    return FALSE;
  for (const char *p = id; *p != '\0'; p++)
    if (!g_ascii_isalnum (*p) && *p != '-')
      return FALSE;
  return TRUE;
}

/* The message as it goes out: headers and body with CRLF line ends. Date: is when the mail was
 * written (RFC 5322: when it was ready to go), not when an attempt got through: a mail delivered after
 * a relay's outage sorts among the others by the time of its alarm. Message-ID: is the outbox row's,
 * so that a mail sent again (a restart right after the relay took it) is known as the same one. */
static char *
format_message (const RtpMailSettings *settings, const RtpMail *mail)
{
  g_autoptr (GDateTime) when = mail->created_us > 0 ? g_date_time_new_from_unix_utc (mail->created_us / G_USEC_PER_SEC)
                                                    : g_date_time_new_now_utc ();
  g_autofree char *date = g_date_time_format (when, "%a, %d %b %Y %H:%M:%S +0000");
  g_autofree char *subj = header_text (mail->subject);
  g_autofree char *id = message_id_part (mail->id) ? g_strdup (mail->id) : g_uuid_string_random ();
  g_auto (GStrv) lines = g_strsplit (mail->body, "\n", -1);
  g_autofree char *crlf_body = g_strjoinv ("\r\n", lines);

  return g_strdup_printf ("Date: %s\r\nTo: <%s>\r\nFrom: <%s>\r\nMessage-ID: <%s@realtimeplot>\r\n"
                          "Subject: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                          "Content-Transfer-Encoding: 8bit\r\n\r\n%s\r\n",
                          date, mail->to, settings->from, id, subj, crlf_body);
}

void
rtp_mailer_send_batch (const RtpMailSettings *settings, const RtpMail *mails, guint n_mails, RtpCurlBatchSentFunc sent,
                       GDestroyNotify done, gpointer user_data)
{
  Session *s = g_new0 (Session, 1);
  GPtrArray *items = g_ptr_array_new_full (n_mails, mail_free);

  s->url = g_strdup (settings->url);
  s->from = g_strdup (settings->from);
  s->user = g_strdup (settings->user);
  s->password = g_strdup (settings->password);
  s->timeout_ms = (long) (MAX (settings->timeout_s, 1) * 1000);
  s->require_tls = rtp_mailer_has_credentials (settings) && !settings->insecure;
  for (guint i = 0; i < n_mails; i++)
    {
      Mail *m = g_new0 (Mail, 1);
      m->to = g_strdup (mails[i].to);
      m->message = format_message (settings, &mails[i]);
      g_ptr_array_add (items, m);
    }
  rtp_curl_batch_run (items, send_mail, s, session_free, sent, done, user_data);
}
