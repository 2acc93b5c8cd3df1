/* rtp-mailer.h: sending mail over SMTP (libcurl), off the main loop */
#pragma once

#include "rtp-curl-batch.h"

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

/* One mail: to one recipient, a subject and a plain-text body (UTF-8, \n line ends). */
typedef struct {
  const char *to;
  const char *subject;
  const char *body;
  const char *id;    /* (nullable) the outbox row's: Message-ID <id@realtimeplot>, the same at every attempt */
  gint64 created_us; /* when the mail was written (its Date: header); 0: now */
} RtpMail;

/* Sends @mails in order over one SMTP connection, in a worker thread (a flood of alarms is not one
 * connection, one STARTTLS and one AUTH per mail). @sent is called on the caller's thread-default
 * context after each mail (@error NULL: the server took it), right after the server's answer; after
 * a failure the rest are not tried (no call for them). Then @done is called once with @user_data,
 * after every call of @sent.
 * With credentials over smtp:// STARTTLS is required (the mail fails rather than sending AUTH in
 * clear text) unless @insecure; without, it is used when offered. */
void rtp_mailer_send_batch (const RtpMailSettings *settings, const RtpMail *mails, guint n_mails,
                            RtpCurlBatchSentFunc sent, GDestroyNotify done, gpointer user_data);

G_END_DECLS
