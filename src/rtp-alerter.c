/* rtp-alerter.c: alert episodes of subscribed PVs and the mails they send
 *
 * The alerter listens to the live values. On the one instance that leads (several may share a
 * database), a number outside a subscriber's band opens an episode and queues a mail in the
 * same transaction; reminders follow every renotify interval while the episode is open, and it
 * closes inside the band by the hysteresis. Mails leave from the alert_mails table, one at a
 * time, with back-off: nothing is lost while the SMTP server is away. */
#define G_LOG_DOMAIN "RtpAlerter"

#include "rtp-alerter.h"
#include "rtp-i18n.h"

#include <math.h>

struct _RtpAlerter {
  GObject parent_instance;

  RtpDatabase *db;     /* (owned) */
  RtpLiveValues *live; /* (owned) */
  gulong value_id;
  gboolean alerting;
  char *unit;           /* (owned) */
  RtpMailSettings mail; /* strings (owned) */
  gint64 renotify_us;
  double hysteresis;
  GTimeZone *tz; /* (owned) */
  guint mail_id;
  guint mail_idle_id;
  gboolean mail_sending;
};

enum { SIGNAL_BREACHED, N_SIGNALS };
static guint signals[N_SIGNALS];

static gboolean send_mails_idle (gpointer user_data);

G_DEFINE_TYPE (RtpAlerter, rtp_alerter, G_TYPE_OBJECT)

static void
alert_mail_free (RtpAlertMail *mail)
{
  g_free (mail->recipient);
  g_free (mail->subject);
  g_free (mail->last_error);
  g_free (mail);
}

void
rtp_alert_episode_free (RtpAlertEpisode *episode)
{
  if (episode == NULL)
    return;
  g_free (episode->id);
  g_free (episode->user_id);
  g_free (episode->pv_string);
  g_free (episode->breach_value);
  g_clear_pointer (&episode->mails, g_ptr_array_unref);
  g_free (episode);
}

static void
rtp_alerter_dispose (GObject *object)
{
  RtpAlerter *self = RTP_ALERTER (object);

  g_clear_handle_id (&self->mail_id, g_source_remove);
  g_clear_handle_id (&self->mail_idle_id, g_source_remove);
  if (self->live != NULL)
    g_clear_signal_handler (&self->value_id, self->live);
  g_clear_object (&self->live);
  g_clear_object (&self->db);
  G_OBJECT_CLASS (rtp_alerter_parent_class)->dispose (object);
}

static void
rtp_alerter_finalize (GObject *object)
{
  RtpAlerter *self = RTP_ALERTER (object);

  g_free (self->unit);
  g_free ((char *) self->mail.url);
  g_free ((char *) self->mail.from);
  g_free ((char *) self->mail.user);
  g_free ((char *) self->mail.password);
  g_clear_pointer (&self->tz, g_time_zone_unref);
  G_OBJECT_CLASS (rtp_alerter_parent_class)->finalize (object);
}

static void
rtp_alerter_class_init (RtpAlerterClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = rtp_alerter_dispose;
  G_OBJECT_CLASS (klass)->finalize = rtp_alerter_finalize;
  /**
   * RtpAlerter::threshold-breached:
   * @pv: the PV
   * @value: the value that left the band
   * @min: @max: the subscriber's band
   */
  signals[SIGNAL_BREACHED] = g_signal_new ("threshold-breached", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                                           NULL, NULL, G_TYPE_NONE, 4, G_TYPE_STRING, G_TYPE_DOUBLE, G_TYPE_INT64,
                                           G_TYPE_INT64);
}

static void
rtp_alerter_init (RtpAlerter *self)
{
}

/* ---- episodes ---------------------------------------------------------------- */

static void
queue_mail (RtpAlerter *self, const char *episode, const char *to, const char *subject, const char *body,
            GError **error)
{
  g_autofree char *id = g_uuid_string_random ();
  gint64 now = g_get_real_time ();

  rtp_database_exec (self->db, error,
                     "INSERT INTO alert_mails (id, episode_id, created_us, recipient, subject, body, attempts, "
                     "next_attempt_us) VALUES (:id, :ep, :now, :to, :subj, :body, 0, :now)",
                     "id", RTP_DB_STR, id, "ep", RTP_DB_STR, episode, "now", RTP_DB_INT, now, "to", RTP_DB_STR, to,
                     "subj", RTP_DB_STR, subject, "body", RTP_DB_STR, body, NULL);
}

static char *
format_value (double value)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  return g_strdup (g_ascii_dtostr (buf, sizeof buf, value));
}

/* Subject and body in the subscriber's language (a catalogue exists for German). */
static void
compose (RtpAlerter *self, const char *lang, gboolean reminder, const char *first, const char *last, const char *pv,
         const char *name, double value, gint64 min, gint64 max, char **subject, char **body)
{
  g_autofree char *v = format_value (value);
  g_autoptr (GDateTime) now = g_date_time_new_now (self->tz);
  g_autofree char *when = g_date_time_format (now, "%Y-%m-%d %H:%M:%S %Z");
  const char *unit = self->unit;
  g_autofree char *label = name != NULL && name[0] != '\0' ? g_strdup_printf ("%s (%s)", pv, name) : g_strdup (pv);

  *subject = g_strdup_printf (rtp_i18n_translate (lang, reminder ? N_ ("Reminder: %s is still out of its band: %s %s")
                                                                 : N_ ("Threshold breached: %s is %s %s")),
                              pv, v, unit);
  *body = g_strdup_printf (rtp_i18n_translate (lang, N_ ("Hello %s %s,\n\n"
                                                         "the process variable %s has the value %s %s at %s.\n"
                                                         "Your band is from %lld to %lld %s.\n\n"
                                                         "-- \nRealtimeplot Server\n")),
                           first, last, label, v, unit, when, (long long) min, (long long) max, unit);
}

void
rtp_alerter_handle_value (RtpAlerter *self, const char *pv, double value)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GdaDataModel) subs = NULL;
  gint64 now = g_get_real_time ();
  gboolean queued = FALSE;

  g_return_if_fail (RTP_IS_ALERTER (self));
  g_return_if_fail (pv != NULL);

  if (!self->alerting || !isfinite (value))
    return;
  subs = rtp_database_select (
    self->db, &error,
    "SELECT s.user_id, s.email, s.threshold_min, s.threshold_max, u.first_name, u.last_name, "
    "u.preferred_language, p.human_readable_name FROM subscriptions s "
    "JOIN users u ON u.user_id = s.user_id JOIN process_variables p ON p.pv_string = s.pv_string "
    "WHERE s.pv_string = :pv",
    "pv", RTP_DB_STR, pv, NULL);
  if (subs == NULL)
    {
      g_warning ("monitor: %s", error->message);
      return;
    }
  for (guint i = 0; i < rtp_db_rows (subs); i++)
    {
      const char *user = rtp_db_str (subs, i, 0);
      gint64 min = rtp_db_int0 (subs, i, 2), max = rtp_db_int0 (subs, i, 3);
      gboolean out = value < (double) min || value > (double) max;
      gboolean back = value >= (double) min + self->hysteresis && value <= (double) max - self->hysteresis;
      g_autoptr (GdaDataModel) open = rtp_database_select (
        self->db, &error,
        "SELECT id, last_notified_us FROM alert_episodes WHERE user_id = :u AND pv_string = :pv AND closed_us IS NULL",
        "u", RTP_DB_STR, user, "pv", RTP_DB_STR, pv, NULL);
      g_autofree char *subject = NULL;
      g_autofree char *body = NULL;
      g_autofree char *v = format_value (value);

      if (open == NULL)
        break;
      if (rtp_db_rows (open) == 0 && out)
        {
          g_autofree char *id = g_uuid_string_random ();
          g_autoptr (RtpTransaction) tx = NULL;
          compose (self, rtp_db_str (subs, i, 6), FALSE, rtp_db_str (subs, i, 4), rtp_db_str (subs, i, 5), pv,
                   rtp_db_str (subs, i, 7), value, min, max, &subject, &body);
          if ((tx = rtp_database_begin_transaction (self->db, &error)) == NULL)
            break;
          rtp_database_exec (
            self->db, &error,
            "INSERT INTO alert_episodes (id, user_id, pv_string, opened_us, closed_us, last_notified_us, "
            "breach_value, threshold_min, threshold_max) VALUES (:id, :u, :pv, :now, NULL, :now, :v, :min, :max)",
            "id", RTP_DB_STR, id, "u", RTP_DB_STR, user, "pv", RTP_DB_STR, pv, "now", RTP_DB_INT, now, "v", RTP_DB_STR,
            v, "min", RTP_DB_INT, min, "max", RTP_DB_INT, max, NULL);
          if (error == NULL)
            queue_mail (self, id, rtp_db_str (subs, i, 1), subject, body, &error);
          if (error != NULL || !rtp_transaction_commit (tx, &error))
            break; /* rolled back as tx goes */
          g_message ("%s = %s left the band [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] of %s: alert opened", pv, v,
                     min, max, user);
          g_signal_emit (self, signals[SIGNAL_BREACHED], 0, pv, value, min, max);
          queued = TRUE;
        }
      else if (rtp_db_rows (open) > 0 && back)
        {
          rtp_database_exec (self->db, &error, "UPDATE alert_episodes SET closed_us = :now WHERE id = :id", "now",
                             RTP_DB_INT, now, "id", RTP_DB_STR, rtp_db_str (open, 0, 0), NULL);
          g_message ("%s = %s is back in the band of %s: alert closed", pv, v, user);
        }
      else if (rtp_db_rows (open) > 0 && out && self->renotify_us > 0 &&
               now - rtp_db_int0 (open, 0, 1) >= self->renotify_us)
        {
          g_autoptr (RtpTransaction) tx = NULL;
          compose (self, rtp_db_str (subs, i, 6), TRUE, rtp_db_str (subs, i, 4), rtp_db_str (subs, i, 5), pv,
                   rtp_db_str (subs, i, 7), value, min, max, &subject, &body);
          if ((tx = rtp_database_begin_transaction (self->db, &error)) == NULL)
            break;
          rtp_database_exec (self->db, &error, "UPDATE alert_episodes SET last_notified_us = :now WHERE id = :id",
                             "now", RTP_DB_INT, now, "id", RTP_DB_STR, rtp_db_str (open, 0, 0), NULL);
          if (error == NULL)
            queue_mail (self, rtp_db_str (open, 0, 0), rtp_db_str (subs, i, 1), subject, body, &error);
          if (error != NULL || !rtp_transaction_commit (tx, &error))
            break; /* rolled back as tx goes */
          queued = TRUE;
        }
    }
  if (error != NULL)
    g_warning ("monitor: %s", error->message);
  if (queued && self->mail_idle_id == 0)
    self->mail_idle_id = g_idle_add (send_mails_idle, self);
}

/* ---- mail queue ---------------------------------------------------------------- */

typedef struct {
  RtpAlerter *self; /* (owned) */
  char *id;
  gint64 attempts;
} MailJob;

static void
mail_sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  MailJob *job = user_data;
  RtpAlerter *self = job->self;
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) db_error = NULL;
  gint64 now = g_get_real_time ();

  if (rtp_mailer_send_finish (result, &error))
    rtp_database_exec (self->db, &db_error,
                       "UPDATE alert_mails SET sent_us = :now, attempts = attempts + 1 WHERE id = :id", "now",
                       RTP_DB_INT, now, "id", RTP_DB_STR, job->id, NULL);
  else
    {
      /* back-off: 1, 2, 4 … 60 s */
      gint64 delay = MIN ((gint64) 1 << MIN (job->attempts, 6), 60) * G_USEC_PER_SEC;
      g_warning ("%s; retrying in %" G_GINT64_FORMAT " s", error->message, delay / G_USEC_PER_SEC);
      rtp_database_exec (self->db, &db_error,
                         "UPDATE alert_mails SET attempts = attempts + 1, next_attempt_us = :next, last_error = :e "
                         "WHERE id = :id",
                         "next", RTP_DB_INT, now + delay, "e", RTP_DB_STR, error->message, "id", RTP_DB_STR, job->id,
                         NULL);
    }
  if (db_error != NULL)
    g_warning ("mail queue: %s", db_error->message);
  self->mail_sending = FALSE;
  if (error == NULL && self->mail_idle_id == 0)
    self->mail_idle_id = g_idle_add (send_mails_idle, self); /* the next one at once */
  g_free (job->id);
  g_object_unref (job->self);
  g_free (job);
}

/* One mail at a time, oldest due first. */
static void
send_next_mail (RtpAlerter *self)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GdaDataModel) m = NULL;
  MailJob *job;

  if (self->mail_sending || self->mail.url == NULL || !rtp_database_try_leadership (self->db))
    return;
  m = rtp_database_select (self->db, &error,
                           "SELECT id, recipient, subject, body, attempts FROM alert_mails "
                           "WHERE sent_us IS NULL AND next_attempt_us <= :now ORDER BY created_us LIMIT 1",
                           "now", RTP_DB_INT, g_get_real_time (), NULL);
  if (m == NULL || rtp_db_rows (m) == 0)
    return;
  job = g_new0 (MailJob, 1);
  job->self = g_object_ref (self);
  job->id = g_strdup (rtp_db_str (m, 0, 0));
  job->attempts = rtp_db_int0 (m, 0, 4);
  self->mail_sending = TRUE;
  rtp_mailer_send_async (&self->mail, rtp_db_str (m, 0, 1), rtp_db_str (m, 0, 2), rtp_db_str (m, 0, 3), NULL, mail_sent,
                         job);
}

static gboolean
send_mails_idle (gpointer user_data)
{
  RtpAlerter *self = user_data;
  self->mail_idle_id = 0;
  send_next_mail (self);
  return G_SOURCE_REMOVE;
}

static gboolean
mail_tick (gpointer user_data)
{
  send_next_mail (user_data);
  return G_SOURCE_CONTINUE;
}

/* Numbers only; each value once, as the live values emit it. */
static void
on_value (RtpLiveValues *live, const char *pv, gint64 time_us, const char *value, gpointer user_data)
{
  RtpAlerter *self = user_data;
  char *end = NULL;
  double number = g_ascii_strtod (value, &end);

  if (end == value || *end != '\0' || !rtp_database_try_leadership (self->db))
    return;
  rtp_alerter_handle_value (self, pv, number);
}

RtpAlerter *
rtp_alerter_new (RtpDatabase *db, RtpLiveValues *live, RtpSubscriptions *subscriptions, const RtpAlertSettings *s)
{
  RtpAlerter *self;

  g_return_val_if_fail (RTP_IS_DATABASE (db), NULL);
  g_return_val_if_fail (RTP_IS_LIVE_VALUES (live), NULL);
  g_return_val_if_fail (RTP_IS_SUBSCRIPTIONS (subscriptions), NULL);
  g_return_val_if_fail (s != NULL && s->time_zone != NULL, NULL);

  self = g_object_new (RTP_TYPE_ALERTER, NULL);
  self->db = g_object_ref (db);
  self->live = g_object_ref (live);
  if (s->mail.url == NULL || s->mail.url[0] == '\0' || s->mail.from == NULL)
    g_message ("RTP_SMTP_URL or RTP_SMTP_FROM is not set: threshold alerting is off (live values still flow)");
  else
    self->alerting = TRUE;
  self->unit = g_strdup (s->threshold_unit != NULL ? s->threshold_unit : "");
  self->mail.url = g_strdup (s->mail.url);
  self->mail.from = g_strdup (s->mail.from);
  self->mail.user = g_strdup (s->mail.user);
  self->mail.password = g_strdup (s->mail.password);
  self->mail.timeout_s = s->mail.timeout_s;
  self->mail.insecure = s->mail.insecure;
  if (self->alerting && rtp_mailer_has_credentials (&self->mail) && g_str_has_prefix (self->mail.url, "smtp://"))
    {
      if (self->mail.insecure)
        g_warning ("RTP_SMTP_INSECURE=1: the SMTP credentials go out in plain text when the server offers no STARTTLS");
      else
        g_message ("SMTP with credentials over smtp://: STARTTLS is required (RTP_SMTP_INSECURE=1 allows plain text)");
    }
  self->renotify_us = s->renotify_s * G_USEC_PER_SEC;
  self->hysteresis = s->hysteresis;
  self->tz = g_time_zone_ref (s->time_zone);
  if (self->alerting)
    {
      rtp_live_values_poll_subscribed (live, subscriptions);
      self->value_id = g_signal_connect (live, "value", G_CALLBACK (on_value), self);
      self->mail_id = g_timeout_add_seconds (1, mail_tick, self);
    }
  return self;
}

gboolean
rtp_alerter_is_on (RtpAlerter *self)
{
  g_return_val_if_fail (RTP_IS_ALERTER (self), FALSE);
  return self->alerting;
}

GPtrArray *
rtp_alerter_list_episodes (RtpAlerter *self, const char *user_id, GError **error)
{
  g_autoptr (GdaDataModel) eps = NULL;
  GPtrArray *out;

  g_return_val_if_fail (RTP_IS_ALERTER (self), NULL);
  eps = rtp_database_select (
    self->db, error,
    "SELECT id, user_id, pv_string, opened_us, closed_us, breach_value, threshold_min, threshold_max "
    "FROM alert_episodes WHERE COALESCE(:u, user_id) = user_id ORDER BY opened_us DESC LIMIT 1000",
    "u", RTP_DB_STR, user_id, NULL);
  if (eps == NULL)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_alert_episode_free);
  for (guint i = 0; i < rtp_db_rows (eps); i++)
    {
      RtpAlertEpisode *e = g_new0 (RtpAlertEpisode, 1);
      g_autoptr (GdaDataModel) m = rtp_database_select (
        self->db, NULL,
        "SELECT recipient, subject, sent_us, attempts, last_error FROM alert_mails WHERE episode_id = :e ORDER BY created_us",
        "e", RTP_DB_STR, rtp_db_str (eps, i, 0), NULL);

      e->id = g_strdup (rtp_db_str (eps, i, 0));
      e->user_id = g_strdup (rtp_db_str (eps, i, 1));
      e->pv_string = g_strdup (rtp_db_str (eps, i, 2));
      e->opened_us = rtp_db_int0 (eps, i, 3);
      e->closed_us = rtp_db_int0 (eps, i, 4);
      e->breach_value = g_strdup (rtp_db_str (eps, i, 5));
      e->threshold_min = rtp_db_int0 (eps, i, 6);
      e->threshold_max = rtp_db_int0 (eps, i, 7);
      e->mails = g_ptr_array_new_with_free_func ((GDestroyNotify) alert_mail_free);
      for (guint j = 0; m != NULL && j < rtp_db_rows (m); j++)
        {
          RtpAlertMail *mail = g_new0 (RtpAlertMail, 1);
          gint64 sent = 0;
          mail->recipient = g_strdup (rtp_db_str (m, j, 0));
          mail->subject = g_strdup (rtp_db_str (m, j, 1));
          mail->sent = rtp_db_int (m, j, 2, &sent);
          mail->attempts = rtp_db_int0 (m, j, 3);
          mail->last_error = g_strdup (rtp_db_str (m, j, 4));
          g_ptr_array_add (e->mails, mail);
        }
      g_ptr_array_add (out, e);
    }
  return out;
}
