/* rtp-alerter.c: alert episodes of subscribed PVs and the mails they send
 *
 * The alerter listens to the live values. On the one instance that leads (several may share a
 * database), a number outside a subscriber's band opens an episode and queues a mail in the
 * same transaction; reminders follow every renotify interval while the episode is open, and it
 * closes inside the band by the hysteresis. Mails leave from the alert_mails table, one at a
 * time, with back-off: nothing is lost while the SMTP server is away. */
#define G_LOG_DOMAIN "RtpAlerter"

#include "rtp-metrics.h"
#include "rtp-alerter.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-json.h"
#include "rtp-stamp-cache.h"
#include "rtp-webhook.h"

#include <math.h>
#include <string.h>

struct _RtpAlerter {
  GObject parent_instance;

  RtpDatabase *db;     /* (owned) */
  RtpLiveValues *live; /* (owned) */
  gulong value_id;
  gulong heard_id;
  gboolean alerting;
  char *unit;           /* (owned) */
  RtpMailSettings mail; /* strings (owned) */
  gint64 renotify_us;
  double hysteresis;
  GTimeZone *tz; /* (owned) */
  guint mail_id;
  guint outbox_idle_id;
  gboolean mail_sending;
  gboolean disposed; /* a batch that ends later schedules nothing */
  /* alarms */
  RtpSubscriptions *subscriptions; /* (owned) */
  char *channel_prefix;            /* (owned) */
  char *webhook_url;               /* (owned) (nullable) */
  char *webhook_secret;            /* (owned) (nullable) */
  gboolean webhook_sending;
  gboolean mail_on; /* SMTP configured */
  gint64 max_shelve_us;
  guint history_seq;      /* orders transitions of the same microsecond */
  GHashTable *last_value; /* (owned) pv → double *: the last number judged, for re-judging */
  GHashTable *last_seen;  /* (owned) pv → gint64 * monotonic µs of its last value */
  GHashTable *silent;     /* (owned) PVs judged INVALID since their last value */
  GQueue rejudging;       /* (owned) Rejudging: PVs rejudge found due, not yet judged (rejudge_some) */
  GHashTable *due_queued; /* (owned) PVs in @rejudging for their last value (not for a silence) */
  guint rejudging_id;     /* rejudge_some while @rejudging is not empty */
  RtpStampCache *pv_subs; /* (owned) pv → PvSubs */
  /* (owned) alarm id → the latest value (text) of an alarm whose level stood still: written once a
   * second (write_latest_values), not at every value: a commit (an fsync on SQLite) per value of
   * every alarmed PV */
  GHashTable *latest_values;
  guint latest_id;   /* write_latest_some while @latest_values are being written */
  gint64 started_us; /* monotonic: PVs never heard of count as silent from here */
  gint64 silence_us; /* 3 monitor intervals without a value: INVALID (0: never) */
};

enum { SIGNAL_BREACHED, SIGNAL_ALARM_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

static gboolean send_outboxes_idle (gpointer user_data);
static void write_latest_values (RtpAlerter *self, guint max);

G_DEFINE_TYPE (RtpAlerter, rtp_alerter, G_TYPE_OBJECT)

/* A PV rejudge found due: silent for three monitor intervals, or to be judged again with its last
 * value (a delay running, a shelve expired) */
typedef struct {
  char *pv; /* (owned) */
  gboolean silent;
} Rejudging;

static void
rejudging_free (gpointer data)
{
  Rejudging *r = data;
  g_free (r->pv);
  g_free (r);
}

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

  self->disposed = TRUE;
  g_clear_handle_id (&self->mail_id, g_source_remove);
  g_clear_handle_id (&self->outbox_idle_id, g_source_remove);
  g_clear_handle_id (&self->rejudging_id, g_source_remove);
  g_clear_handle_id (&self->latest_id, g_source_remove);
  g_queue_clear_full (&self->rejudging, rejudging_free);
  if (self->live != NULL)
    {
      g_clear_signal_handler (&self->value_id, self->live);
      g_clear_signal_handler (&self->heard_id, self->live);
    }
  g_clear_object (&self->live);
  g_clear_object (&self->subscriptions);
  if (self->db != NULL)
    write_latest_values (self, G_MAXUINT);
  g_clear_object (&self->db);
  G_OBJECT_CLASS (rtp_alerter_parent_class)->dispose (object);
}

static void
rtp_alerter_finalize (GObject *object)
{
  RtpAlerter *self = RTP_ALERTER (object);

  g_hash_table_unref (self->last_value);
  g_hash_table_unref (self->last_seen);
  g_hash_table_unref (self->silent);
  g_hash_table_unref (self->due_queued);
  g_hash_table_unref (self->latest_values);
  g_clear_pointer (&self->pv_subs, rtp_stamp_cache_free);
  g_free (self->unit);
  g_free (self->channel_prefix);
  g_free (self->webhook_url);
  g_free (self->webhook_secret);
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
  /**
   * RtpAlerter::alarm-changed:
   * @id: the alarm
   * @pv: its PV
   * @severity: MINOR, MAJOR or INVALID
   * @event: the transition (opened, escalated, deescalated, cleared, acknowledged, shelved, unshelved, ended)
   *
   * Emitted after the transition was stored.
   */
  signals[SIGNAL_ALARM_CHANGED] = g_signal_new ("alarm-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                                                NULL, NULL, G_TYPE_NONE, 4, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_STRING,
                                                G_TYPE_STRING);
}

static void
rtp_alerter_init (RtpAlerter *self)
{
  self->last_value = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->last_seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->silent = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->due_queued = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->latest_values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->started_us = g_get_monotonic_time ();
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

/* ---- alarms ---------------------------------------------------------------- */

typedef enum { LEVEL_NONE, LEVEL_MINOR, LEVEL_MAJOR, LEVEL_INVALID } Level;

static const char *const level_names[] = { "NONE", "MINOR", "MAJOR", "INVALID" };

static Level
level_from_name (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (level_names); i++)
    if (g_strcmp0 (name, level_names[i]) == 0)
      return i;
  return LEVEL_MAJOR;
}

/* One subscription with its user and PV, as the decision needs it. */
typedef struct {
  const char *user_id;
  const char *email;
  gint64 min, max;
  gboolean has_wmin, has_wmax;
  gint64 wmin, wmax;
  gint64 delay_us;
  gboolean latch, notify_clear;
  gboolean has_out_since;
  gint64 out_since_us;
  const char *first_name, *last_name, *language, *pv_name, *experiment;
} Sub;

/* A subscription's alarm that has not ended, as the decision needs it (kept with the PV's
 * subscriptions, see PvSubs). */
typedef struct {
  const char *id;
  Level severity;
  gboolean active, acknowledged, shelved;
  gint64 shelved_until_us, last_notified_us, opened_us;
} OpenAlarm;

/* after SUB_COLUMNS, from columns 15 on: the subscription's open alarm, if any (SUB_OPEN_ALARM) */
#define OPEN_ALARM_COLUMNS                                                                                             \
  "a.id, a.severity, a.active, a.last_notified_us, a.acknowledged_by, a.shelved_until_us, a.opened_us"
#define OPEN_ALARM_FIRST_COLUMN 15

#define SUB_COLUMNS                                                                                                    \
  "s.user_id, s.email, s.threshold_min, s.threshold_max, u.first_name, u.last_name, u.preferred_language, "            \
  "p.human_readable_name, s.warning_min, s.warning_max, s.delay_s, s.latch, s.notify_clear, s.out_since_us, "          \
  "p.experiment_short_id"
#define SUB_FROM                                                                                                       \
  " FROM subscriptions s JOIN users u ON u.user_id = s.user_id JOIN process_variables p ON p.pv_string = s.pv_string "

/* A text of a result, copied into @texts for keeping: the model itself is not kept (libgda keeps a
 * list of the live data models, and releasing one walks it: with 5 000 PVs kept, emptying the cache
 * after a change took seconds on the main loop — perf: g_slist_remove). */
static const char *
kept_text (GStringChunk *texts, GdaDataModel *m, guint i, guint column)
{
  const char *text = rtp_db_str (m, i, column);
  return text != NULL ? g_string_chunk_insert_const (texts, text) : NULL;
}

/* Row @i of SUB_COLUMNS, its texts in @texts. */
static void
sub_from_row (GdaDataModel *m, guint i, GStringChunk *texts, Sub *s)
{
  memset (s, 0, sizeof *s);
  s->user_id = kept_text (texts, m, i, 0);
  s->email = kept_text (texts, m, i, 1);
  s->min = rtp_db_int0 (m, i, 2);
  s->max = rtp_db_int0 (m, i, 3);
  s->first_name = kept_text (texts, m, i, 4);
  s->last_name = kept_text (texts, m, i, 5);
  s->language = kept_text (texts, m, i, 6);
  s->pv_name = kept_text (texts, m, i, 7);
  s->has_wmin = rtp_db_int (m, i, 8, &s->wmin);
  s->has_wmax = rtp_db_int (m, i, 9, &s->wmax);
  s->delay_us = rtp_db_int0 (m, i, 10) * G_USEC_PER_SEC;
  s->latch = rtp_db_int0 (m, i, 11) != 0;
  s->notify_clear = rtp_db_int0 (m, i, 12) != 0;
  s->has_out_since = rtp_db_int (m, i, 13, &s->out_since_us);
  s->experiment = kept_text (texts, m, i, 14);
}

/* The band a value is in, with the hysteresis at every edge: a band left is only re-entered
 * by h inside it. @prev is the level the alarm had while active (LEVEL_NONE when none). */
static Level
judge (const Sub *s, double v, double h, Level prev)
{
  gboolean major_out = v < (double) s->min || v > (double) s->max;
  gboolean major_back = v >= (double) s->min + h && v <= (double) s->max - h;
  gboolean minor_out = (s->has_wmin && v < (double) s->wmin) || (s->has_wmax && v > (double) s->wmax);
  gboolean minor_back = (!s->has_wmin || v >= (double) s->wmin + h) && (!s->has_wmax || v <= (double) s->wmax - h);

  if (major_out || (prev == LEVEL_MAJOR && !major_back))
    return LEVEL_MAJOR;
  if (minor_out || ((prev == LEVEL_MAJOR || prev == LEVEL_MINOR) && !minor_back && (s->has_wmin || s->has_wmax)))
    return LEVEL_MINOR;
  return LEVEL_NONE;
}

typedef enum {
  NOTE_OPENED,
  NOTE_ESCALATED,
  NOTE_REMINDER,
  NOTE_CLEARED,
  NOTE_SHELVE_ENDED,
} Note;

/* Subject and body in the subscriber's language (a catalogue exists for German). */
static void
compose (RtpAlerter *self, const Sub *s, Note note, Level level, const char *pv, const char *v, gint64 since_us,
         char **subject, char **body)
{
  g_autoptr (GDateTime) now = g_date_time_new_now (self->tz);
  g_autofree char *when = g_date_time_format (now, "%Y-%m-%d %H:%M:%S %Z");
  const char *unit = self->unit;
  const char *lang = s->language;
  g_autofree char *label = s->pv_name != NULL && s->pv_name[0] != '\0' ? g_strdup_printf ("%s (%s)", pv, s->pv_name)
                                                                       : g_strdup (pv);
  g_autoptr (GString) text = g_string_new (NULL);
  switch (note)
    {
      case NOTE_REMINDER:
        *subject = g_strdup_printf (rtp_i18n_translate (lang, N_ ("Reminder: %s is still out of its band: %s %s")), pv,
                                    v, unit);
        break;
      case NOTE_CLEARED:
        *subject = g_strdup_printf (rtp_i18n_translate (lang, N_ ("Back in its band: %s is %s %s")), pv, v, unit);
        break;
      case NOTE_SHELVE_ENDED:
        *subject = g_strdup_printf (rtp_i18n_translate (lang,
                                                        N_ ("Shelving ended, still out of its band: %s is %s %s")),
                                    pv, v, unit);
        break;
      case NOTE_ESCALATED:
        if (level == LEVEL_INVALID)
          *subject = g_strdup_printf (rtp_i18n_translate (lang, N_ ("No valid value: %s has sent none for a while")),
                                      pv);
        else
          *subject = g_strdup_printf (rtp_i18n_translate (lang, N_ ("Escalated to MAJOR: %s is %s %s")), pv, v, unit);
        break;
      case NOTE_OPENED:
      default:
        if (level == LEVEL_INVALID)
          *subject = g_strdup_printf (rtp_i18n_translate (lang, N_ ("No valid value: %s has sent none for a while")),
                                      pv);
        else if (level == LEVEL_MINOR)
          *subject = g_strdup_printf (rtp_i18n_translate (lang, N_ ("Warning (MINOR): %s is %s %s")), pv, v, unit);
        else
          *subject = g_strdup_printf (rtp_i18n_translate (lang, N_ ("Threshold breached: %s is %s %s")), pv, v, unit);
        break;
    }
  g_string_append_printf (text,
                          rtp_i18n_translate (lang, N_ ("Hello %s %s,\n\n"
                                                        "the process variable %s has the value %s %s at %s.\n"
                                                        "Your band is from %lld to %lld %s.\n\n"
                                                        "-- \nRealtimeplot Server\n")),
                          s->first_name, s->last_name, label, v, unit, when, (long long) s->min, (long long) s->max,
                          unit);
  /* the severity (and since when) before the signature */
  {
    gsize sig = text->len - strlen ("\n-- \nRealtimeplot Server\n");
    g_autoptr (GString) extra = g_string_new (NULL);
    if (note != NOTE_CLEARED)
      g_string_append_printf (extra, rtp_i18n_translate (lang, N_ ("Severity: %s\n")), level_names[level]);
    if (note == NOTE_REMINDER || note == NOTE_SHELVE_ENDED)
      {
        g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (since_us / G_USEC_PER_SEC);
        g_autoptr (GDateTime) local = g_date_time_to_timezone (t, self->tz);
        g_autofree char *since = g_date_time_format (local, "%Y-%m-%d %H:%M:%S %Z");
        g_string_append_printf (extra, rtp_i18n_translate (lang, N_ ("Out of its band since %s.\n")), since);
      }
    if (g_str_has_suffix (text->str, "\n-- \nRealtimeplot Server\n"))
      g_string_insert (text, (gssize) sig, extra->str);
    else
      g_string_append (text, extra->str);
  }
  *body = g_string_free (g_steal_pointer (&text), FALSE);
}

static gboolean
history (RtpAlerter *self, const char *alarm, gint64 now, const char *event, Level level, const char *value,
         const char *by, const char *comment, const char *channel, GError **error)
{
  g_autofree char *id = g_uuid_string_random ();

  self->history_seq++;
  return rtp_database_exec (self->db, error,
                            "INSERT INTO alarm_history (id, alarm_id, time_us, seq, event, severity, value, by_user, "
                            "comment, channel) VALUES (:id, :a, :t, :q, :e, :s, :v, :b, :c, :ch)",
                            "id", RTP_DB_STR, id, "a", RTP_DB_STR, alarm, "t", RTP_DB_INT, now, "q", RTP_DB_INT,
                            (gint64) self->history_seq, "e", RTP_DB_STR, event, "s", RTP_DB_STR, level_names[level],
                            "v", RTP_DB_STR, value, "b", RTP_DB_STR, by, "c", RTP_DB_STR, comment, "ch", RTP_DB_STR,
                            channel, NULL) >= 0;
}

/* What changed, emitted as "alarm-changed" once the transaction has committed. */
typedef struct {
  char *id;
  char *pv;
  char *severity;
  char *event;
  gboolean breached; /* and "threshold-breached" (the MAJOR band left) with: */
  double value;
  gint64 min, max;
} Change;

static void
change_free (Change *c)
{
  g_free (c->id);
  g_free (c->pv);
  g_free (c->severity);
  g_free (c->event);
  g_free (c);
}

static Change *
changed (GPtrArray *changes, const char *id, const char *pv, Level level, const char *event)
{
  Change *c = g_new0 (Change, 1);
  c->id = g_strdup (id);
  c->pv = g_strdup (pv);
  c->severity = g_strdup (level_names[level]);
  c->event = g_strdup (event);
  g_ptr_array_add (changes, c);
  return c;
}

static void
breached (Change *c, double value, const Sub *s)
{
  c->breached = TRUE;
  c->value = value;
  c->min = s->min;
  c->max = s->max;
}

/* The text of a webhook or MQTT message: {"event", "alarm": {…}, "text"}. */
static char *
alarm_message (const char *event, const char *id, const char *pv, const char *experiment, const char *user, Level level,
               const char *value, const char *text)
{
  GString *out = g_string_new ("{\"event\":");

  rtp_json_append_string (out, event);
  g_string_append (out, ",\"alarm\":{\"id\":");
  rtp_json_append_string (out, id);
  g_string_append (out, ",\"pv_string\":");
  rtp_json_append_string (out, pv);
  g_string_append (out, ",\"experiment_short_id\":");
  rtp_json_append_string (out, experiment);
  g_string_append (out, ",\"user_id\":");
  rtp_json_append_string (out, user);
  g_string_append (out, ",\"severity\":");
  rtp_json_append_string (out, level_names[level]);
  g_string_append (out, ",\"value\":");
  rtp_json_append_string (out, value);
  g_string_append (out, "},\"text\":");
  rtp_json_append_string (out, text);
  g_string_append_c (out, '}');
  return g_string_free (out, FALSE);
}

/* Mail, webhook and MQTT for one transition; counted on the alarm, each channel in its history. */
static gboolean
notify (RtpAlerter *self, const Sub *s, const char *alarm, const char *pv, Note note, Level level, const char *v,
        gint64 since_us, gint64 now, GError **error)
{
  g_autofree char *subject = NULL;
  g_autofree char *body = NULL;
  g_autofree char *message = NULL;
  static const char *const events[] = { "opened", "escalated", "reminder", "cleared", "unshelved" };

  compose (self, s, note, level, pv, v, since_us, &subject, &body);
  if (self->mail_on)
    {
      queue_mail (self, alarm, s->email, subject, body, error);
      if (*error != NULL || !history (self, alarm, now, "notified", level, v, NULL, NULL, "email", error))
        return FALSE;
    }
  message = alarm_message (events[note], alarm, pv, s->experiment, s->user_id, level, v, subject);
  if (self->webhook_url != NULL)
    {
      g_autofree char *id = g_uuid_string_random ();
      if (rtp_database_exec (self->db, error,
                             "INSERT INTO alarm_webhooks (id, alarm_id, created_us, payload, attempts, next_attempt_us) "
                             "VALUES (:id, :a, :now, :p, 0, :now)",
                             "id", RTP_DB_STR, id, "a", RTP_DB_STR, alarm, "now", RTP_DB_INT, now, "p", RTP_DB_STR,
                             message, NULL) < 0 ||
          !history (self, alarm, now, "notified", level, v, NULL, NULL, "webhook", error))
        return FALSE;
    }
  return rtp_database_exec (self->db, error,
                            "UPDATE alert_episodes SET last_notified_us = :now, notifications = notifications + 1 "
                            "WHERE id = :id",
                            "now", RTP_DB_INT, now, "id", RTP_DB_STR, alarm, NULL) >= 0;
}

static gboolean
end_alarm (RtpAlerter *self, const char *alarm, Level level, const char *v, gint64 now, GError **error)
{
  return rtp_database_exec (
           self->db, error,
           "UPDATE alert_episodes SET closed_us = :now, active = 0, last_change_us = :now WHERE id = :id", "now",
           RTP_DB_INT, now, "id", RTP_DB_STR, alarm, NULL) >= 0 &&
         history (self, alarm, now, "ended", level, v, NULL, NULL, NULL, error);
}

/* The alarm's value is written with each transition; while its level stands still the latest
 * value waits in latest_values (write_latest_values). */
static void
keep_latest_value (RtpAlerter *self, const char *id, const char *value)
{
  g_hash_table_replace (self->latest_values, g_strdup (id), g_strdup (value));
}

/* When (real time) the next reminder of an active alarm falls due: one per RTP_ALERT_RENOTIFY_S while
 * it is neither acknowledged nor shelved; G_MAXINT64: none. */
static gint64
reminder_due_at (RtpAlerter *self, gboolean acknowledged, gboolean shelved, gint64 last_notified_us)
{
  return self->renotify_us > 0 && !acknowledged && !shelved ? last_notified_us + self->renotify_us : G_MAXINT64;
}

/* Whether a reminder of an active alarm is due at @now. */
static gboolean
reminder_due (RtpAlerter *self, gboolean acknowledged, gboolean shelved, gint64 last_notified_us, gint64 now)
{
  return now >= reminder_due_at (self, acknowledged, shelved, last_notified_us);
}

/* Whether @value leaves @open as it is — the same level, no shelve run out, no reminder due — so
 * that decide() would only keep it as the alarm's latest value: told from what is kept, without a
 * transaction (an alarmed PV's values, ten a second each, cost a BEGIN and a COMMIT apiece before). */
static gboolean
value_keeps_alarm (RtpAlerter *self, const Sub *s, const OpenAlarm *open, double value, gint64 now)
{
  Level level;

  if (open->shelved && open->shelved_until_us <= now)
    return FALSE;
  level = judge (s, value, self->hysteresis, open->active ? open->severity : LEVEL_NONE);
  if (!open->active)
    return level == LEVEL_NONE; /* latched, still waiting for an acknowledgement */
  if (level != open->severity)
    return FALSE;
  return !reminder_due (self, open->acknowledged, open->shelved, open->last_notified_us, now);
}

/* How long at most the values of a PV with an open alarm are settled on arrival (the value gate)
 * before one reaches the main loop again: it becomes the alarm's latest value (written once a
 * second) and the alarm is decided again with what the database holds then. */
#define KEEP_ALARM_US G_USEC_PER_SEC

/* The values around @value that leave @open as it is (value_keeps_alarm said @value does): [*lo, *hi],
 * the same comparisons as judge() with the open level, and its edges checked with judge(). FALSE
 * when no such range can be told (then every value goes to the main loop, as before). */
static gboolean
alarm_keep_range (const Sub *s, const OpenAlarm *open, double value, double h, double *lo, double *hi)
{
  Level level = open->active ? open->severity : LEVEL_NONE;

  if (!open->active)
    {
      /* latched, waiting for an acknowledgement: the values in band */
      *lo = MAX ((double) s->min, s->has_wmin ? (double) s->wmin : -INFINITY);
      *hi = MIN ((double) s->max, s->has_wmax ? (double) s->wmax : INFINITY);
    }
  else if (level == LEVEL_MAJOR && value < (double) s->min + h)
    {
      *lo = -INFINITY;
      *hi = nextafter ((double) s->min + h, -INFINITY);
    }
  else if (level == LEVEL_MAJOR && value > (double) s->max - h)
    {
      *lo = nextafter ((double) s->max - h, INFINITY);
      *hi = INFINITY;
    }
  else if (level == LEVEL_MINOR && s->has_wmin && value < (double) s->wmin + h)
    {
      *lo = (double) s->min;
      *hi = nextafter ((double) s->wmin + h, -INFINITY);
    }
  else if (level == LEVEL_MINOR && s->has_wmax && value > (double) s->wmax - h)
    {
      *lo = nextafter ((double) s->wmax - h, INFINITY);
      *hi = (double) s->max;
    }
  else
    return FALSE;
  return *lo <= value && value <= *hi && judge (s, *lo, h, level) == level && judge (s, *hi, h, level) == level;
}

/* Until when (monotonic) the values of @open's PV may be settled on arrival: KEEP_ALARM_US from now at
 * most, and not past a reminder falling due or a shelve running out (the value after it decides). */
static gint64
alarm_keep_until (RtpAlerter *self, const OpenAlarm *open, gint64 now)
{
  /* between half of KEEP_ALARM_US and all of it: PVs whose alarms opened together do not all send
   * their next value to the main loop in the same moment, second after second */
  gint64 due = now + KEEP_ALARM_US / 2 + g_random_int_range (0, KEEP_ALARM_US / 2);

  if (open->active)
    due = MIN (due, reminder_due_at (self, open->acknowledged, open->shelved, open->last_notified_us));
  if (open->shelved)
    due = MIN (due, open->shelved_until_us);
  return g_get_monotonic_time () + MAX (0, due - now);
}

/* One subscription's decision for one value, inside the caller's transaction; @open is its alarm
 * that has not ended, as the database held it when the value arrived (NULL: none). */
static gboolean
decide (RtpAlerter *self, const Sub *s, const OpenAlarm *open, const char *pv, double value, gint64 now,
        GPtrArray *changes, gboolean *notified, GError **error)
{
  g_autofree char *v = format_value (value);
  const char *id;
  Level prev, level;
  gboolean active, acknowledged, shelved, expired = FALSE;
  gint64 shelved_until, opened_us, last_notified;

  if (open == NULL)
    {
      g_autofree char *new_id = NULL;
      level = judge (s, value, self->hysteresis, LEVEL_NONE);
      if (level == LEVEL_NONE)
        return !s->has_out_since ||
               rtp_database_exec (self->db, error,
                                  "UPDATE subscriptions SET out_since_us = NULL WHERE user_id = :u AND pv_string = :pv",
                                  "u", RTP_DB_STR, s->user_id, "pv", RTP_DB_STR, pv, NULL) >= 0;
      if (s->delay_us > 0 && !s->has_out_since)
        return rtp_database_exec (self->db, error,
                                  "UPDATE subscriptions SET out_since_us = :now WHERE user_id = :u AND pv_string = :pv",
                                  "now", RTP_DB_INT, now, "u", RTP_DB_STR, s->user_id, "pv", RTP_DB_STR, pv, NULL) >= 0;
      if (s->delay_us > 0 && now - s->out_since_us < s->delay_us)
        return TRUE; /* not out long enough yet */
      new_id = g_uuid_string_random ();
      if (rtp_database_exec (
            self->db, error,
            "INSERT INTO alert_episodes (id, user_id, pv_string, opened_us, closed_us, last_notified_us, "
            "breach_value, threshold_min, threshold_max, severity, value, active, last_change_us) "
            "VALUES (:id, :u, :pv, :now, NULL, :now, :v, :min, :max, :sev, :v, 1, :now)",
            "id", RTP_DB_STR, new_id, "u", RTP_DB_STR, s->user_id, "pv", RTP_DB_STR, pv, "now", RTP_DB_INT, now, "v",
            RTP_DB_STR, v, "min", RTP_DB_INT, s->min, "max", RTP_DB_INT, s->max, "sev", RTP_DB_STR, level_names[level],
            NULL) < 0 ||
          rtp_database_exec (self->db, error,
                             "UPDATE subscriptions SET out_since_us = NULL WHERE user_id = :u AND pv_string = :pv", "u",
                             RTP_DB_STR, s->user_id, "pv", RTP_DB_STR, pv, NULL) < 0 ||
          !history (self, new_id, now, "opened", level, v, NULL, NULL, NULL, error) ||
          !notify (self, s, new_id, pv, NOTE_OPENED, level, v, now, now, error))
        return FALSE;
      g_message ("%s = %s left the band [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] of %s: %s alarm opened", pv, v,
                 s->min, s->max, s->user_id, level_names[level]);
      {
        Change *c = changed (changes, new_id, pv, level, "opened");
        if (level == LEVEL_MAJOR)
          breached (c, value, s);
      }
      *notified = TRUE;
      return TRUE;
    }

  id = open->id;
  prev = open->severity;
  active = open->active;
  last_notified = open->last_notified_us;
  acknowledged = open->acknowledged;
  shelved = open->shelved;
  shelved_until = open->shelved_until_us;
  opened_us = open->opened_us;
  /* a transition below writes this value; otherwise it is kept again (keep_latest_value) */
  g_hash_table_remove (self->latest_values, id);
  if (shelved && shelved_until <= now)
    {
      /* the shelve ran out: said once, and one notification below when still out of band */
      if (rtp_database_exec (
            self->db, error,
            "UPDATE alert_episodes SET shelved_by = NULL, shelved_until_us = NULL, shelve_reason = NULL "
            "WHERE id = :id",
            "id", RTP_DB_STR, id, NULL) < 0 ||
          !history (self, id, now, "unshelved", prev, v, NULL, "expired", NULL, error))
        return FALSE;
      changed (changes, id, pv, prev, "unshelved");
      shelved = FALSE;
      expired = TRUE;
    }
  level = judge (s, value, self->hysteresis, active ? prev : LEVEL_NONE);
  if (level == LEVEL_NONE)
    {
      if (!active)
        {
          keep_latest_value (self, id, v);
          return TRUE; /* latched, waiting for an acknowledgement */
        }
      if (rtp_database_exec (
            self->db, error,
            "UPDATE alert_episodes SET active = 0, last_change_us = :now, latched = :l, value = :v WHERE id = :id",
            "now", RTP_DB_INT, now, "l", RTP_DB_INT, (gint64) (s->latch && !acknowledged), "v", RTP_DB_STR, v, "id",
            RTP_DB_STR, id, NULL) < 0 ||
          !history (self, id, now, "cleared", prev, v, NULL, NULL, NULL, error))
        return FALSE;
      changed (changes, id, pv, prev, "cleared");
      if (s->notify_clear && !shelved)
        {
          if (!notify (self, s, id, pv, NOTE_CLEARED, prev, v, opened_us, now, error))
            return FALSE;
          *notified = TRUE;
        }
      g_message ("%s = %s is back in the band of %s: alarm cleared", pv, v, s->user_id);
      if (s->latch && !acknowledged)
        return TRUE;
      if (!end_alarm (self, id, prev, v, now, error))
        return FALSE;
      changed (changes, id, pv, prev, "ended");
      return TRUE;
    }
  if (!active || level > prev)
    {
      /* out again after a latched return, or MINOR → MAJOR: said at once */
      if (rtp_database_exec (
            self->db, error,
            "UPDATE alert_episodes SET active = 1, severity = :s, last_change_us = :now, value = :v WHERE id = :id",
            "s", RTP_DB_STR, level_names[level], "now", RTP_DB_INT, now, "v", RTP_DB_STR, v, "id", RTP_DB_STR, id,
            NULL) < 0 ||
          !history (self, id, now, "escalated", level, v, NULL, NULL, NULL, error))
        return FALSE;
      {
        Change *c = changed (changes, id, pv, level, "escalated");
        if (level == LEVEL_MAJOR)
          breached (c, value, s);
      }
      if (!shelved)
        {
          if (!notify (self, s, id, pv, level == LEVEL_MAJOR ? NOTE_ESCALATED : NOTE_OPENED, level, v, opened_us, now,
                       error))
            return FALSE;
          *notified = TRUE;
        }
      return TRUE;
    }
  if (level < prev)
    {
      if (rtp_database_exec (self->db, error,
                             "UPDATE alert_episodes SET severity = :s, last_change_us = :now, value = :v WHERE id = :id",
                             "s", RTP_DB_STR, level_names[level], "now", RTP_DB_INT, now, "v", RTP_DB_STR, v, "id",
                             RTP_DB_STR, id, NULL) < 0 ||
          !history (self, id, now, "deescalated", level, v, NULL, NULL, NULL, error))
        return FALSE;
      changed (changes, id, pv, level, "deescalated");
      return TRUE;
    }
  keep_latest_value (self, id, v);
  if (expired || reminder_due (self, acknowledged, shelved, last_notified, now))
    {
      if (!notify (self, s, id, pv, expired ? NOTE_SHELVE_ENDED : NOTE_REMINDER, level, v, opened_us, now, error))
        return FALSE;
      *notified = TRUE;
    }
  return TRUE;
}

/* After the commit: each transition goes to <prefix>/alarms/<experiment> (through the outbox, QoS 1)
 * and is signalled. */
static void
emit_changes (RtpAlerter *self, GPtrArray *changes)
{
  for (guint i = 0; i < changes->len; i++)
    {
      Change *c = g_ptr_array_index (changes, i);
      g_autoptr (GdaDataModel) m = rtp_database_select (
        self->db, NULL,
        "SELECT a.user_id, p.experiment_short_id, COALESCE(a.value, a.breach_value) FROM alert_episodes a "
        "JOIN process_variables p ON p.pv_string = a.pv_string WHERE a.id = :id",
        "id", RTP_DB_STR, c->id, NULL);

      if (m != NULL && rtp_db_rows (m) > 0)
        {
          g_autoptr (GError) error = NULL;
          g_autofree char *topic = g_strdup_printf ("%s/alarms/%s", self->channel_prefix, rtp_db_str (m, 0, 1));
          g_autofree char *text = g_strdup_printf ("%s: %s alarm %s (value %s)", c->pv, c->severity, c->event,
                                                   rtp_db_str (m, 0, 2) != NULL ? rtp_db_str (m, 0, 2) : "-");
          g_autofree char *message = alarm_message (c->event, c->id, c->pv, rtp_db_str (m, 0, 1), rtp_db_str (m, 0, 0),
                                                    level_from_name (c->severity), rtp_db_str (m, 0, 2), text);
          if (!rtp_subscriptions_queue_message (self->subscriptions, topic, message, &error))
            g_warning ("alarms: %s", error->message);
        }
      g_signal_emit (self, signals[SIGNAL_ALARM_CHANGED], 0, c->id, c->pv, c->severity, c->event);
      if (c->breached)
        g_signal_emit (self, signals[SIGNAL_BREACHED], 0, c->pv, c->value, c->min, c->max);
    }
}

static void
wake_senders (RtpAlerter *self)
{
  if (self->outbox_idle_id == 0)
    self->outbox_idle_id = g_idle_add_full (G_PRIORITY_DEFAULT, send_outboxes_idle, self, NULL);
  if (self->subscriptions != NULL)
    rtp_subscriptions_flush_outbox (self->subscriptions);
}

/* No value for a while: the alarm is INVALID (opened, or escalated from a band), inside the caller's
 * transaction. */
static gboolean
decide_invalid (RtpAlerter *self, const Sub *s, const char *pv, gint64 now, GPtrArray *changes, gboolean *notified,
                GError **error)
{
  g_autoptr (GdaDataModel) open = NULL;
  const char *v = "";
  const char *id;
  gboolean shelved;
  gint64 shelved_until = 0;

  open = rtp_database_select (self->db, error,
                              "SELECT id, severity, active, shelved_until_us, opened_us FROM alert_episodes "
                              "WHERE user_id = :u AND pv_string = :pv AND closed_us IS NULL",
                              "u", RTP_DB_STR, s->user_id, "pv", RTP_DB_STR, pv, NULL);
  if (open == NULL)
    return FALSE;
  if (rtp_db_rows (open) == 0)
    {
      g_autofree char *new_id = g_uuid_string_random ();
      if (rtp_database_exec (
            self->db, error,
            "INSERT INTO alert_episodes (id, user_id, pv_string, opened_us, closed_us, last_notified_us, "
            "breach_value, threshold_min, threshold_max, severity, value, active, last_change_us) "
            "VALUES (:id, :u, :pv, :now, NULL, :now, '', :min, :max, 'INVALID', NULL, 1, :now)",
            "id", RTP_DB_STR, new_id, "u", RTP_DB_STR, s->user_id, "pv", RTP_DB_STR, pv, "now", RTP_DB_INT, now, "min",
            RTP_DB_INT, s->min, "max", RTP_DB_INT, s->max, NULL) < 0 ||
          !history (self, new_id, now, "opened", LEVEL_INVALID, NULL, NULL, NULL, NULL, error) ||
          !notify (self, s, new_id, pv, NOTE_OPENED, LEVEL_INVALID, v, now, now, error))
        return FALSE;
      g_message ("%s has sent no value for a while: INVALID alarm of %s opened", pv, s->user_id);
      changed (changes, new_id, pv, LEVEL_INVALID, "opened");
      *notified = TRUE;
      return TRUE;
    }
  id = rtp_db_str (open, 0, 0);
  if (level_from_name (rtp_db_str (open, 0, 1)) == LEVEL_INVALID && rtp_db_int0 (open, 0, 2) != 0)
    return TRUE;
  shelved = rtp_db_int (open, 0, 3, &shelved_until) && shelved_until > now;
  if (rtp_database_exec (
        self->db, error,
        "UPDATE alert_episodes SET active = 1, severity = 'INVALID', last_change_us = :now WHERE id = :id", "now",
        RTP_DB_INT, now, "id", RTP_DB_STR, id, NULL) < 0 ||
      !history (self, id, now, "escalated", LEVEL_INVALID, NULL, NULL, NULL, NULL, error))
    return FALSE;
  changed (changes, id, pv, LEVEL_INVALID, "escalated");
  if (!shelved)
    {
      if (!notify (self, s, id, pv, NOTE_ESCALATED, LEVEL_INVALID, v, rtp_db_int0 (open, 0, 4), now, error))
        return FALSE;
      *notified = TRUE;
    }
  return TRUE;
}

static void judge_pv (RtpAlerter *self, const char *pv, gboolean invalid, double value);

/* How long one dispatch of rejudge_some may judge PVs rejudge found due: a PV costs a transaction
 * (an alarm, its history and its notifications), and when a power cut silences thousands at once,
 * or the delays of thousands run out together, the main loop answers requests between batches, as
 * it does between batches of MQTT values. */
#define REJUDGE_BUDGET_US 4000

/* Every subscription of @pv has no valid value: INVALID. */
static void
mark_invalid (RtpAlerter *self, const char *pv)
{
  rtp_live_values_forward (self->live, pv); /* its next value ends the silence */
  judge_pv (self, pv, TRUE, 0);
}

/* @pv's newest number: the value gate may have settled newer values than @last, the last judged. */
static double
newest_value (RtpAlerter *self, const char *pv, double last)
{
  gint64 settled_us;
  double settled;

  return self->live != NULL && rtp_live_values_get_settled (self->live, pv, &settled_us, &settled) ? settled : last;
}

/* The PVs rejudge found due, judged in arrival order for at most REJUDGE_BUDGET_US per dispatch (at
 * the priority of requests and MQTT values, so that neither starves the other): a silent one INVALID
 * — unless heard again meanwhile (on_heard): its value was judged instead —, the others with their
 * last value, as it is when their turn comes. */
static gboolean
rejudge_some (gpointer user_data)
{
  RtpAlerter *self = user_data;
  gint64 deadline = g_get_monotonic_time () + REJUDGE_BUDGET_US;
  const double *last;
  gboolean judging;
  Rejudging *r;

  while ((r = g_queue_pop_head (&self->rejudging)) != NULL)
    {
      if (!r->silent)
        g_hash_table_remove (self->due_queued, r->pv);
      /* not when another instance leads now: it judges them */
      judging = self->alerting && rtp_database_try_leadership (self->db);
      if (judging && r->silent && g_hash_table_contains (self->silent, r->pv))
        mark_invalid (self, r->pv);
      else if (judging && !r->silent && (last = g_hash_table_lookup (self->last_value, r->pv)) != NULL)
        rtp_alerter_handle_value (self, r->pv, newest_value (self, r->pv, *last));
      rejudging_free (r);
      if (g_get_monotonic_time () >= deadline && !g_queue_is_empty (&self->rejudging))
        {
          g_debug ("monitor: %u PVs wait for the next dispatch", g_queue_get_length (&self->rejudging));
          return G_SOURCE_CONTINUE;
        }
    }
  self->rejudging_id = 0;
  return G_SOURCE_REMOVE;
}

static void
queue_rejudging (RtpAlerter *self, const char *pv, gboolean silent)
{
  Rejudging *r = g_new0 (Rejudging, 1);

  r->pv = g_strdup (pv);
  r->silent = silent;
  g_queue_push_tail (&self->rejudging, r);
  if (self->rejudging_id == 0)
    self->rejudging_id = g_idle_add_full (G_PRIORITY_DEFAULT, rejudge_some, self, NULL);
}

/* Once a second on the leading instance: a delay that ran out or a shelve that expired is decided
 * with the PV's last value even when no new one comes (an archived value is emitted once); a
 * subscribed PV silent for three monitor intervals is INVALID. */
static void
rejudge (RtpAlerter *self)
{
  g_autoptr (GdaDataModel) due = NULL;
  g_auto (GStrv) subscribed = NULL;
  gint64 now = g_get_real_time ();
  gint64 mono = g_get_monotonic_time ();

  if (!self->alerting || !rtp_database_try_leadership (self->db))
    return;
  due = rtp_database_select (self->db, NULL,
                             "SELECT pv_string FROM subscriptions WHERE out_since_us IS NOT NULL UNION "
                             "SELECT pv_string FROM alert_episodes WHERE closed_us IS NULL AND shelved_until_us <= :now",
                             "now", RTP_DB_INT, now, NULL);
  for (guint i = 0; due != NULL && i < rtp_db_rows (due); i++)
    {
      const char *pv = rtp_db_str (due, i, 0);
      if (g_hash_table_contains (self->last_value, pv) && g_hash_table_add (self->due_queued, g_strdup (pv)))
        queue_rejudging (self, pv, FALSE); /* not twice: a backlog of the second before still waits */
    }
  if (self->silence_us <= 0)
    return;
  subscribed = rtp_subscriptions_list_pvs (self->subscriptions, NULL);
  for (guint i = 0; subscribed != NULL && subscribed[i] != NULL; i++)
    {
      const gint64 *seen = g_hash_table_lookup (self->last_seen, subscribed[i]);
      if (mono - (seen != NULL ? *seen : self->started_us) < self->silence_us ||
          g_hash_table_contains (self->silent, subscribed[i]) ||
          !rtp_live_values_claim_silence (self->live, subscribed[i], mono - self->silence_us))
        continue; /* heard (on the main loop, or settled on arrival) */
      g_hash_table_add (self->silent, g_strdup (subscribed[i]));
      queue_rejudging (self, subscribed[i], TRUE);
    }
}

/* A PV's subscriptions and their alarms that have not ended, kept while the database's change
 * stamp stands still (any change by any instance drops it): an in-band value of a PV without
 * alarms then costs no query at all, and a value that leaves an alarm's level as it was neither
 * a query nor a write. */
typedef struct {
  gint ref;
  Sub *rows; /* (owned) read once: every value runs through them */
  guint n_rows;
  GStringChunk *texts; /* (owned) the texts of @rows and @open: no GdaDataModel is kept (see kept_text) */
  GHashTable *open;    /* (owned) user_id → OpenAlarm */
} PvSubs;

static PvSubs *
pv_subs_ref (PvSubs *p)
{
  g_atomic_int_inc (&p->ref);
  return p;
}

static void
pv_subs_unref (PvSubs *p)
{
  if (!g_atomic_int_dec_and_test (&p->ref))
    return;
  g_free (p->rows);
  g_string_chunk_free (p->texts);
  g_hash_table_unref (p->open);
  g_free (p);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PvSubs, pv_subs_unref)

static PvSubs *
pv_subs_get (RtpAlerter *self, const char *pv, GError **error)
{
  guint64 stamp = 0;
  PvSubs *p = rtp_stamp_cache_lookup (self->pv_subs, pv, &stamp);
  g_autoptr (GdaDataModel) subs = NULL;
  const guint a = OPEN_ALARM_FIRST_COLUMN;

  if (p != NULL)
    return p;
  /* one statement: after a change every PV's next value reads this again */
  subs = rtp_database_select (self->db, error,
                              "SELECT " SUB_COLUMNS ", " OPEN_ALARM_COLUMNS SUB_FROM
                              "LEFT JOIN alert_episodes a ON a.user_id = s.user_id AND a.pv_string = s.pv_string "
                              "AND a.closed_us IS NULL WHERE s.pv_string = :pv ORDER BY s.user_id, a.opened_us, a.id",
                              "pv", RTP_DB_STR, pv, NULL);
  if (subs == NULL)
    return NULL;
  p = g_new0 (PvSubs, 1);
  p->ref = 1;
  p->texts = g_string_chunk_new (256);
  p->open = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  p->rows = g_new (Sub, MAX (rtp_db_rows (subs), 1));
  for (guint i = 0; i < rtp_db_rows (subs); i++)
    {
      Sub *row = &p->rows[p->n_rows];
      OpenAlarm *alarm;

      if (i > 0 && g_strcmp0 (rtp_db_str (subs, i, 0), rtp_db_str (subs, i - 1, 0)) == 0)
        continue; /* one alarm per subscription is open at a time; were there two, the oldest is the one */
      sub_from_row (subs, i, p->texts, row);
      p->n_rows++;
      if (row->user_id == NULL || rtp_db_str (subs, i, a) == NULL)
        continue;
      alarm = g_new0 (OpenAlarm, 1);
      alarm->id = kept_text (p->texts, subs, i, a);
      alarm->severity = level_from_name (rtp_db_str (subs, i, a + 1));
      alarm->active = rtp_db_int0 (subs, i, a + 2) != 0;
      alarm->last_notified_us = rtp_db_int0 (subs, i, a + 3);
      alarm->acknowledged = rtp_db_str (subs, i, a + 4) != NULL;
      alarm->shelved = rtp_db_int (subs, i, a + 5, &alarm->shelved_until_us);
      alarm->opened_us = rtp_db_int0 (subs, i, a + 6);
      g_hash_table_insert (p->open, (gpointer) row->user_id, alarm);
    }
  rtp_stamp_cache_store (self->pv_subs, stamp, pv, p);
  return p;
}

/* Decides @pv's subscriptions, each in a transaction of its own, with @value — or, when @invalid,
 * with no valid value at all; then mails, the outbox and the alarm-changed signals. */
static void
judge_pv (RtpAlerter *self, const char *pv, gboolean invalid, double value)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (PvSubs) cached = NULL;
  g_autoptr (GPtrArray) changes = g_ptr_array_new_with_free_func ((GDestroyNotify) change_free);
  gint64 now = g_get_real_time ();
  gboolean notified = FALSE;
  gboolean quiet = !invalid;
  double lo = -INFINITY, hi = INFINITY;
  gint64 until = G_MAXINT64;

  cached = pv_subs_get (self, pv, &error);
  if (cached == NULL)
    {
      g_warning ("monitor: %s", error->message);
      return;
    }
  for (guint i = 0; i < cached->n_rows; i++)
    {
      g_autoptr (RtpTransaction) tx = NULL;
      g_autoptr (GPtrArray) mine = NULL;
      gboolean sent = FALSE;
      gboolean done;
      const OpenAlarm *open;
      Sub s;

      s = cached->rows[i];
      open = g_hash_table_lookup (cached->open, s.user_id);
      /* nothing to decide: no alarm, no delay running, and the value in band */
      if (!invalid && open == NULL && !s.has_out_since && judge (&s, value, self->hysteresis, LEVEL_NONE) == LEVEL_NONE)
        {
          /* the values this row judges the same way: inside both bands */
          lo = MAX (lo, MAX ((double) s.min, s.has_wmin ? (double) s.wmin : -INFINITY));
          hi = MIN (hi, MIN ((double) s.max, s.has_wmax ? (double) s.wmax : INFINITY));
          continue;
        }
      if (!invalid && open != NULL && value_keeps_alarm (self, &s, open, value, now))
        {
          g_autofree char *v = format_value (value);
          double keep_lo, keep_hi;

          keep_latest_value (self, open->id, v);
          /* the values that would be kept the same way are settled on arrival for a while */
          if (alarm_keep_range (&s, open, value, self->hysteresis, &keep_lo, &keep_hi))
            {
              lo = MAX (lo, keep_lo);
              hi = MIN (hi, keep_hi);
              until = MIN (until, alarm_keep_until (self, open, now));
            }
          else
            quiet = FALSE;
          continue;
        }
      quiet = FALSE;
      mine = g_ptr_array_new_with_free_func ((GDestroyNotify) change_free);
      if ((tx = rtp_database_begin_transaction (self->db, &error)) == NULL)
        break;
      done = invalid ? decide_invalid (self, &s, pv, now, mine, &sent, &error)
                     : decide (self, &s, open, pv, value, now, mine, &sent, &error);
      if (!done || !rtp_transaction_commit (tx, &error))
        break; /* rolled back as tx goes */
      g_ptr_array_extend_and_steal (changes, g_steal_pointer (&mine));
      notified |= sent;
    }
  if (error != NULL)
    g_warning ("monitor: %s", error->message);
  if (error == NULL && quiet)
    rtp_live_values_set_quiet (self->live, pv, lo, hi, until); /* its next such values are settled on arrival */
  else
    rtp_live_values_forward (self->live, pv); /* the range settled before does not hold after this value */
  if (notified)
    wake_senders (self);
  emit_changes (self, changes);
}

void
rtp_alerter_handle_value (RtpAlerter *self, const char *pv, double value)
{
  double *last;

  g_return_if_fail (RTP_IS_ALERTER (self));
  g_return_if_fail (pv != NULL);

  if (!self->alerting || !isfinite (value))
    return;
  /* kept for re-judging (rejudge); overwritten in place: this runs for every value */
  if ((last = g_hash_table_lookup (self->last_value, pv)) != NULL)
    *last = value;
  else
    g_hash_table_insert (self->last_value, g_strdup (pv), g_memdup2 (&value, sizeof value));
  judge_pv (self, pv, FALSE, value);
}

/* ---- mail and webhook queues ---------------------------------------------------------------- */

/* One row of alert_mails or alarm_webhooks on its way out. */
typedef struct {
  RtpAlerter *self; /* (owned) */
  const char *table;
  char *id;
  gint64 attempts;
} OutboxJob;

static OutboxJob *
outbox_job_new (RtpAlerter *self, const char *table, GdaDataModel *m, guint row, guint id_column, guint attempts_column)
{
  OutboxJob *job = g_new0 (OutboxJob, 1);

  job->self = g_object_ref (self);
  job->table = table;
  job->id = g_strdup (rtp_db_str (m, row, id_column));
  job->attempts = rtp_db_int0 (m, row, attempts_column);
  return job;
}

static void
outbox_job_free (OutboxJob *job)
{
  g_free (job->id);
  g_object_unref (job->self);
  g_free (job);
}

/* Whether @error says that the receiver refuses the item as it is and would refuse it again (a
 * webhook's 400, 413, 415 or 422, see rtp_webhook_post_batch): it is not retried. */
static gboolean
refused_for_good (const GError *error)
{
  return g_error_matches (error, RTP_ERROR, RTP_ERROR_INVALID);
}

/* Records one attempt of @job: sent; refused for good (kept as refused, not retried); or the error
 * and the next attempt after a back-off of 1, 2, 4 … 60 s. */
static void
record_attempt (OutboxJob *job, const GError *error)
{
  RtpAlerter *self = job->self;
  g_autoptr (GError) db_error = NULL;
  g_autofree char *sql = NULL;
  gint64 now = g_get_real_time ();

  if (error == NULL)
    {
      sql = g_strdup_printf ("UPDATE %s SET sent_us = :now, attempts = attempts + 1 WHERE id = :id", job->table);
      rtp_database_exec (self->db, &db_error, sql, "now", RTP_DB_INT, now, "id", RTP_DB_STR, job->id, NULL);
    }
  else if (refused_for_good (error))
    {
      g_warning ("%s; not retried: the post after it goes on", error->message);
      sql = g_strdup_printf ("UPDATE %s SET attempts = attempts + 1, refused_us = :now, last_error = :e WHERE id = :id",
                             job->table);
      rtp_database_exec (self->db, &db_error, sql, "now", RTP_DB_INT, now, "e", RTP_DB_STR, error->message, "id",
                         RTP_DB_STR, job->id, NULL);
    }
  else
    {
      gint64 delay = MIN ((gint64) 1 << MIN (job->attempts, 6), 60) * G_USEC_PER_SEC;
      g_warning ("%s; retrying in %" G_GINT64_FORMAT " s", error->message, delay / G_USEC_PER_SEC);
      sql = g_strdup_printf ("UPDATE %s SET attempts = attempts + 1, next_attempt_us = :next, last_error = :e "
                             "WHERE id = :id",
                             job->table);
      rtp_database_exec (self->db, &db_error, sql, "next", RTP_DB_INT, now + delay, "e", RTP_DB_STR, error->message,
                         "id", RTP_DB_STR, job->id, NULL);
    }
  if (db_error != NULL)
    g_warning ("%s: %s", job->table, db_error->message);
}

/* Due rows of one outbox table, sent together over one connection (rtp-curl-batch). */
typedef struct {
  RtpAlerter *self;  /* (owned) */
  GPtrArray *jobs;   /* (element-type OutboxJob) */
  gboolean *sending; /* the queue's flag in self: set while the batch goes out */
  RtpMetric sent_metric, failed_metric;
  gboolean failed;
} OutboxBatch;

/* At most this many rows go over one connection; then it is closed and the next opened. */
#define OUTBOX_BATCH 20

/* A batch of the first @n rows of @m. */
static OutboxBatch *
outbox_batch_new (RtpAlerter *self, const char *table, GdaDataModel *m, guint n, guint id_column, guint attempts_column,
                  gboolean *sending, RtpMetric sent_metric, RtpMetric failed_metric)
{
  OutboxBatch *batch = g_new0 (OutboxBatch, 1);

  batch->self = g_object_ref (self);
  batch->jobs = g_ptr_array_new_full (n, (GDestroyNotify) outbox_job_free);
  for (guint i = 0; i < n; i++)
    g_ptr_array_add (batch->jobs, outbox_job_new (self, table, m, i, id_column, attempts_column));
  batch->sending = sending;
  *sending = TRUE;
  batch->sent_metric = sent_metric;
  batch->failed_metric = failed_metric;
  return batch;
}

static void
outbox_item_sent (guint index, const GError *error, gpointer user_data)
{
  OutboxBatch *batch = user_data;

  rtp_metrics_inc (error == NULL ? batch->sent_metric : batch->failed_metric);
  record_attempt (g_ptr_array_index (batch->jobs, index), error); /* at once: a restart now sends it not again */
  batch->failed |= error != NULL && !refused_for_good (error);    /* after a refusal the next batch goes at once */
}

static void
outbox_batch_done (gpointer user_data)
{
  OutboxBatch *batch = user_data;
  RtpAlerter *self = batch->self;

  *batch->sending = FALSE;
  /* the next ones at once; after a failure, at the next tick */
  if (!batch->failed && !self->disposed && self->outbox_idle_id == 0)
    self->outbox_idle_id = g_idle_add_full (G_PRIORITY_DEFAULT, send_outboxes_idle, self, NULL);
  g_ptr_array_unref (batch->jobs);
  g_object_unref (batch->self);
  g_free (batch);
}

/* The oldest due rows of an outbox @table, one batch at most: @columns are "id, …, attempts"; *n_due
 * is how many of the rows go out now. With @in_order (webhooks; the table has refused_us) the batch is
 * the oldest unsent rows that were not refused, up to the first that waits out its back-off: that one
 * holds the later ones.
 * Returns: (transfer full) (nullable): NULL when none is due (or they cannot be read now; the next
 * tick tries again) */
static GdaDataModel *
select_due (RtpAlerter *self, const char *table, const char *columns, gboolean in_order, guint *n_due)
{
  gint64 now = g_get_real_time ();
  g_autofree char *sql = in_order
                           ? g_strdup_printf (
                               "SELECT %s, next_attempt_us FROM %s WHERE sent_us IS NULL AND refused_us IS NULL "
                               "ORDER BY created_us, id LIMIT %d",
                               columns, table, OUTBOX_BATCH)
                           : g_strdup_printf ("SELECT %s FROM %s WHERE sent_us IS NULL AND next_attempt_us <= :now "
                                              "ORDER BY created_us, id LIMIT %d",
                                              columns, table, OUTBOX_BATCH);
  GdaDataModel *m = rtp_database_select (self->db, NULL, sql, "now", RTP_DB_INT, now, NULL);
  guint n = m != NULL ? (guint) rtp_db_rows (m) : 0;

  if (in_order && n > 0)
    {
      const guint next_column = (guint) gda_data_model_get_n_columns (m) - 1; /* next_attempt_us */
      for (guint i = 0; i < n; i++)
        if (rtp_db_int0 (m, i, next_column) > now)
          {
            n = i;
            break;
          }
    }
  if (n == 0)
    g_clear_object (&m);
  *n_due = n;
  return m;
}

/* The oldest due mails, one batch at a time. */
static void
send_next_mail (RtpAlerter *self)
{
  g_autoptr (GdaDataModel) m = NULL;
  g_autofree RtpMail *mails = NULL;
  guint n = 0;

  if (self->mail_sending || !self->mail_on || !rtp_database_try_leadership (self->db) ||
      (m = select_due (self, "alert_mails", "id, recipient, subject, body, attempts, created_us", FALSE, &n)) == NULL)
    return;
  mails = g_new0 (RtpMail, n);
  for (guint i = 0; i < n; i++)
    mails[i] = (RtpMail){ .to = rtp_db_str (m, i, 1),
                          .subject = rtp_db_str (m, i, 2),
                          .body = rtp_db_str (m, i, 3),
                          .id = rtp_db_str (m, i, 0),
                          .created_us = rtp_db_int0 (m, i, 5) };
  rtp_mailer_send_batch (&self->mail, mails, n, outbox_item_sent, outbox_batch_done,
                         outbox_batch_new (self, "alert_mails", m, n, 0, 4, &self->mail_sending,
                                           RTP_METRIC_ALERT_EMAIL_SENT, RTP_METRIC_ALERT_EMAIL_FAILED));
}

/* The oldest webhook posts, one batch at a time, strictly in order: the receiver sees the
 * transitions in the order they happened, also after a failure (the failed post's back-off holds the
 * later ones; one refused for good leaves the queue). */
static void
send_next_webhook (RtpAlerter *self)
{
  g_autoptr (GdaDataModel) m = NULL;
  g_autofree const char **bodies = NULL;
  guint n = 0;

  if (self->webhook_sending || self->webhook_url == NULL || !rtp_database_try_leadership (self->db) ||
      (m = select_due (self, "alarm_webhooks", "id, payload, attempts", TRUE, &n)) == NULL)
    return;
  bodies = g_new0 (const char *, n);
  for (guint i = 0; i < n; i++)
    bodies[i] = rtp_db_str (m, i, 1);
  rtp_webhook_post_batch (self->webhook_url, self->webhook_secret, bodies, n, self->mail.timeout_s, outbox_item_sent,
                          outbox_batch_done,
                          outbox_batch_new (self, "alarm_webhooks", m, n, 0, 2, &self->webhook_sending,
                                            RTP_METRIC_ALERT_WEBHOOK_SENT, RTP_METRIC_ALERT_WEBHOOK_FAILED));
}

static gboolean
send_outboxes_idle (gpointer user_data)
{
  RtpAlerter *self = user_data;
  self->outbox_idle_id = 0;
  send_next_mail (self);
  send_next_webhook (self);
  return G_SOURCE_REMOVE;
}

/* How many latest values one transaction writes (write_latest_some): with thousands of PVs in alarm,
 * writing them all at once held the main loop for a tenth of a second and more every second. */
#define LATEST_VALUES_PER_WRITE 250

/* Up to @max latest values of alarms whose level stood still (keep_latest_value), in one transaction:
 * GET /alarms on another instance shows them at most two seconds late (a PV whose values the gate
 * settles reaches the main loop once a second). Alarms that ended meanwhile
 * keep the value they ended with. */
static void
write_latest_values (RtpAlerter *self, guint max)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpTransaction) tx = NULL;
  GHashTableIter iter;
  gpointer id, value;
  guint n = 0;

  if (g_hash_table_size (self->latest_values) == 0)
    return;
  if ((tx = rtp_database_begin_transaction (self->db, &error)) != NULL)
    {
      g_hash_table_iter_init (&iter, self->latest_values);
      while (error == NULL && n < max && g_hash_table_iter_next (&iter, &id, &value))
        {
          rtp_database_exec (self->db, &error,
                             "UPDATE alert_episodes SET value = :v WHERE id = :id AND closed_us IS NULL", "v",
                             RTP_DB_STR, value, "id", RTP_DB_STR, id, NULL);
          g_hash_table_iter_remove (&iter); /* written, or lost with the rest: the next value comes in a moment */
          n++;
        }
      if (error == NULL)
        rtp_transaction_commit (tx, &error);
    }
  if (error != NULL)
    {
      g_warning ("monitor: the latest values of %u alarms were not written: %s",
                 n + g_hash_table_size (self->latest_values), error->message);
      g_hash_table_remove_all (self->latest_values);
    }
}

/* The latest values, LATEST_VALUES_PER_WRITE per dispatch at the priority of requests: the main loop
 * answers between the transactions. */
static gboolean
write_latest_some (gpointer user_data)
{
  RtpAlerter *self = user_data;

  write_latest_values (self, LATEST_VALUES_PER_WRITE);
  if (g_hash_table_size (self->latest_values) > 0)
    return G_SOURCE_CONTINUE;
  self->latest_id = 0;
  return G_SOURCE_REMOVE;
}

static gboolean
mail_tick (gpointer user_data)
{
  RtpAlerter *self = user_data;

  if (self->latest_id == 0 && g_hash_table_size (self->latest_values) > 0)
    self->latest_id = g_idle_add_full (G_PRIORITY_DEFAULT, write_latest_some, self, NULL);
  send_next_mail (self);
  send_next_webhook (self);
  rtp_alerter_sweep (self);
  rejudge (self);
  return G_SOURCE_CONTINUE;
}

/* The source answered for @pv: it is not silent (see rejudge). A sample whose EPICS severity is
 * INVALID makes the alarms INVALID, and its value is not judged against the bands. */
static void
on_heard (RtpLiveValues *live, const char *pv, gint severity, gpointer user_data)
{
  RtpAlerter *self = user_data;
  gint64 seen = g_get_monotonic_time ();
  gint64 *last = g_hash_table_lookup (self->last_seen, pv);

  /* overwritten in place: this runs for every value heard */
  if (last != NULL)
    *last = seen;
  else
    g_hash_table_insert (self->last_seen, g_strdup (pv), g_memdup2 (&seen, sizeof seen));
  if (severity != RTP_EPICS_SEVERITY_INVALID)
    {
      g_hash_table_remove (self->silent, pv);
      return;
    }
  if (g_hash_table_add (self->silent, g_strdup (pv)) && self->alerting && rtp_database_try_leadership (self->db))
    mark_invalid (self, pv);
}

/* Numbers only; each value once, as the live values emit it. */
static void
on_value (RtpLiveValues *live, const char *pv, gint64 time_us, const char *value, gpointer user_data)
{
  RtpAlerter *self = user_data;
  char *end = NULL;
  double number = g_ascii_strtod (value, &end);

  if (end == value || *end != '\0' || g_hash_table_contains (self->silent, pv) ||
      !rtp_database_try_leadership (self->db))
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
  self->pv_subs = rtp_stamp_cache_new (db, (GBoxedCopyFunc) pv_subs_ref, (GDestroyNotify) pv_subs_unref);
  rtp_stamp_cache_set_max (self->pv_subs, 65536); /* one per subscribed PV: a lab's thousands all kept */
  self->live = g_object_ref (live);
  self->mail_on = s->mail.url != NULL && s->mail.url[0] != '\0' && s->mail.from != NULL;
  self->alerting = self->mail_on || (s->webhook_url != NULL && s->webhook_url[0] != '\0');
  if (!self->alerting)
    g_message ("RTP_SMTP_URL or RTP_SMTP_FROM is not set: threshold alerting is off (live values still flow)");
  else if (!self->mail_on)
    g_message ("RTP_SMTP_URL or RTP_SMTP_FROM is not set: alarms go to the webhook and MQTT only");
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
  self->subscriptions = g_object_ref (subscriptions);
  self->channel_prefix = g_strdup (s->channel_prefix != NULL ? s->channel_prefix : "rtp");
  self->webhook_url = s->webhook_url != NULL && s->webhook_url[0] != '\0' ? g_strdup (s->webhook_url) : NULL;
  self->webhook_secret = g_strdup (s->webhook_secret);
  self->max_shelve_us = (s->max_shelve_s > 0 ? s->max_shelve_s : (gint64) 7 * 24 * 3600) * G_USEC_PER_SEC;
  self->silence_us = (gint64) (s->silence_intervals * s->interval_s * G_USEC_PER_SEC);
  if (self->webhook_url != NULL)
    {
      /* only the host: chat webhook URLs carry their secret in the path */
      g_autoptr (GUri) uri = g_uri_parse (self->webhook_url, G_URI_FLAGS_NONE, NULL);
      g_message ("alarm transitions also go to a webhook on %s%s", uri != NULL ? g_uri_get_host (uri) : "?",
                 self->webhook_secret != NULL ? " (signed)" : "");
    }
  if (self->alerting)
    {
      rtp_live_values_poll_subscribed (live, subscriptions);
      self->value_id = g_signal_connect (live, "value", G_CALLBACK (on_value), self);
      self->heard_id = g_signal_connect (live, "heard", G_CALLBACK (on_heard), self);
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

/* ---- alarms: reading and acting ---------------------------------------------------------------- */

void
rtp_alarm_free (RtpAlarm *a)
{
  if (a == NULL)
    return;
  g_free (a->id);
  g_free (a->user_id);
  g_free (a->pv_string);
  g_free (a->experiment_short_id);
  g_free (a->severity);
  g_free (a->value);
  g_free (a->acknowledged_by);
  g_free (a->acknowledge_comment);
  g_free (a->shelved_by);
  g_free (a->shelve_reason);
  g_free (a);
}

void
rtp_alarm_event_free (RtpAlarmEvent *e)
{
  if (e == NULL)
    return;
  g_free (e->event);
  g_free (e->severity);
  g_free (e->value);
  g_free (e->by);
  g_free (e->comment);
  g_free (e->channel);
  g_free (e);
}

#define ALARM_COLUMNS                                                                                                  \
  "a.id, a.user_id, a.pv_string, p.experiment_short_id, a.severity, COALESCE(a.value, a.breach_value), a.active, "     \
  "a.latched, a.opened_us, a.last_change_us, a.closed_us, a.acknowledged_by, "                                         \
  "a.acknowledged_us, a.acknowledge_comment, a.shelved_by, a.shelved_until_us, a.shelve_reason, a.notifications"
#define ALARM_FROM " FROM alert_episodes a JOIN process_variables p ON p.pv_string = a.pv_string "
/* what a caller may see: own alarms and those of its experiments; :admin 1 sees all */
#define ALARM_VISIBLE                                                                                                  \
  "(:admin = 1 OR a.user_id = :me OR p.experiment_short_id IN "                                                        \
  "(SELECT short_id FROM user_experiments WHERE user_id = :me))"

/* An alarm as listed; its value the latest this instance judged or settled (written a moment later). */
static RtpAlarm *
alarm_from_row (RtpAlerter *self, GdaDataModel *m, guint i)
{
  RtpAlarm *a = g_new0 (RtpAlarm, 1);
  const char *latest;
  gint64 settled_us;
  double settled;

  a->id = g_strdup (rtp_db_str (m, i, 0));
  a->user_id = g_strdup (rtp_db_str (m, i, 1));
  a->pv_string = g_strdup (rtp_db_str (m, i, 2));
  a->experiment_short_id = g_strdup (rtp_db_str (m, i, 3));
  a->severity = g_strdup (rtp_db_str (m, i, 4));
  a->value = g_strdup (rtp_db_str (m, i, 5));
  a->active = rtp_db_int0 (m, i, 6) != 0;
  a->latched = rtp_db_int0 (m, i, 7) != 0;
  a->since_us = rtp_db_int0 (m, i, 8);
  a->last_change_us = rtp_db_int0 (m, i, 9);
  a->ended_us = rtp_db_int0 (m, i, 10);
  a->acknowledged_by = g_strdup (rtp_db_str (m, i, 11));
  a->acknowledged_us = rtp_db_int0 (m, i, 12);
  a->acknowledge_comment = g_strdup (rtp_db_str (m, i, 13));
  a->shelved_by = g_strdup (rtp_db_str (m, i, 14));
  a->shelved_until_us = rtp_db_int0 (m, i, 15);
  a->shelve_reason = g_strdup (rtp_db_str (m, i, 16));
  a->notifications = rtp_db_int0 (m, i, 17);
  /* newer than the row: a value the gate settled since (it leaves the alarm as it was), or one judged */
  if (a->ended_us == 0 && self->live != NULL &&
      rtp_live_values_get_settled (self->live, a->pv_string, &settled_us, &settled))
    {
      g_free (a->value);
      a->value = format_value (settled);
    }
  else if (a->ended_us == 0 && (latest = g_hash_table_lookup (self->latest_values, a->id)) != NULL)
    {
      g_free (a->value);
      a->value = g_strdup (latest);
    }
  return a;
}

GPtrArray *
rtp_alerter_list_alarms (RtpAlerter *self, const RtpUser *caller, const RtpAlarmFilter *filter, GError **error)
{
  static const char *const states[] = {
    [RTP_ALARM_NOT_ENDED] = "a.closed_us IS NULL",
    [RTP_ALARM_ACTIVE] = "a.closed_us IS NULL AND a.active = 1",
    [RTP_ALARM_UNACKNOWLEDGED] = "a.closed_us IS NULL AND a.acknowledged_by IS NULL",
    [RTP_ALARM_SHELVED] = "a.closed_us IS NULL AND a.shelved_by IS NOT NULL",
    [RTP_ALARM_ALL] = "1 = 1",
  };
  g_autofree char *sql = NULL;
  g_autoptr (GdaDataModel) m = NULL;
  GPtrArray *out;

  g_return_val_if_fail (RTP_IS_ALERTER (self), NULL);
  g_return_val_if_fail (caller != NULL && filter != NULL && filter->state <= RTP_ALARM_ALL, NULL);
  sql = g_strdup_printf ("SELECT " ALARM_COLUMNS ALARM_FROM "WHERE " ALARM_VISIBLE " AND %s "
                         "AND COALESCE(:e, p.experiment_short_id) = p.experiment_short_id "
                         "AND COALESCE(:s, a.severity) = a.severity ORDER BY a.opened_us DESC, a.id LIMIT 1000",
                         states[filter->state]);
  m = rtp_database_select (self->db, error, sql, "admin", RTP_DB_INT, (gint64) rtp_user_is_admin (caller), "me",
                           RTP_DB_STR, caller->user_id, "e", RTP_DB_STR, filter->experiment, "s", RTP_DB_STR,
                           filter->severity, NULL);
  if (m == NULL)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_alarm_free);
  for (guint i = 0; i < rtp_db_rows (m); i++)
    g_ptr_array_add (out, alarm_from_row (self, m, i));
  return out;
}

RtpAlarm *
rtp_alerter_get_alarm (RtpAlerter *self, const RtpUser *caller, const char *id, GError **error)
{
  g_autoptr (GdaDataModel) m = NULL;

  g_return_val_if_fail (RTP_IS_ALERTER (self), NULL);
  g_return_val_if_fail (caller != NULL && id != NULL, NULL);
  m = rtp_database_select (self->db, error, "SELECT " ALARM_COLUMNS ALARM_FROM "WHERE a.id = :id AND " ALARM_VISIBLE,
                           "id", RTP_DB_STR, id, "admin", RTP_DB_INT, (gint64) rtp_user_is_admin (caller), "me",
                           RTP_DB_STR, caller->user_id, NULL);
  if (m == NULL)
    return NULL;
  if (rtp_db_rows (m) == 0)
    {
      g_propagate_error (error, rtp_error_new_not_found (_ ("alarm"), id));
      return NULL;
    }
  return alarm_from_row (self, m, 0);
}

GPtrArray *
rtp_alerter_get_history (RtpAlerter *self, const RtpUser *caller, const char *id, GError **error)
{
  g_autoptr (RtpAlarm) alarm = rtp_alerter_get_alarm (self, caller, id, error);
  g_autoptr (GdaDataModel) m = NULL;
  GPtrArray *out;

  if (alarm == NULL)
    return NULL;
  m = rtp_database_select (self->db, error,
                           "SELECT time_us, event, severity, value, by_user, comment, channel FROM alarm_history "
                           "WHERE alarm_id = :id ORDER BY time_us, seq, id",
                           "id", RTP_DB_STR, id, NULL);
  if (m == NULL)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_alarm_event_free);
  for (guint i = 0; i < rtp_db_rows (m); i++)
    {
      RtpAlarmEvent *e = g_new0 (RtpAlarmEvent, 1);
      e->time_us = rtp_db_int0 (m, i, 0);
      e->event = g_strdup (rtp_db_str (m, i, 1));
      e->severity = g_strdup (rtp_db_str (m, i, 2));
      e->value = g_strdup (rtp_db_str (m, i, 3));
      e->by = g_strdup (rtp_db_str (m, i, 4));
      e->comment = g_strdup (rtp_db_str (m, i, 5));
      e->channel = g_strdup (rtp_db_str (m, i, 6));
      g_ptr_array_add (out, e);
    }
  return out;
}

/* The alarm for acting on it: seen (404), allowed (403: the subscriber, an assigned user, an
 * admin — seeing is the same rule), not ended (409). Runs inside the caller's transaction. */
static RtpAlarm *
alarm_for_action (RtpAlerter *self, const RtpUser *caller, const char *id, GError **error)
{
  g_autoptr (RtpAlarm) alarm = NULL;
  gboolean exists;

  alarm = rtp_alerter_get_alarm (self, caller, id, error);
  if (alarm == NULL)
    {
      /* one that exists but is not the caller's to see is refused as forbidden, not hidden */
      exists = rtp_database_select_int (self->db, NULL, "SELECT COUNT(*) FROM alert_episodes WHERE id = :id", "id",
                                        RTP_DB_STR, id, NULL) > 0;
      if (exists && g_error_matches (*error, RTP_ERROR, RTP_ERROR_NOT_FOUND))
        {
          g_clear_error (error);
          g_set_error_literal (
            error, RTP_ERROR, RTP_ERROR_FORBIDDEN,
            _ ("Only the subscriber, users assigned to the experiment and administrators may act on this alarm."));
        }
      return NULL;
    }
  if (alarm->ended_us != 0)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_CONFLICT, _ ("The alarm has already ended."));
      return NULL;
    }
  return g_steal_pointer (&alarm);
}

static RtpAlarm *
finish_action (RtpAlerter *self, const RtpUser *caller, RtpTransaction *tx, const char *id, GPtrArray *changes,
               GError **error)
{
  if (!rtp_transaction_commit (tx, error))
    return NULL;
  emit_changes (self, changes);
  return rtp_alerter_get_alarm (self, caller, id, error);
}

RtpAlarm *
rtp_alerter_acknowledge (RtpAlerter *self, const RtpUser *caller, const char *actor, const char *id,
                         const char *comment, GError **error)
{
  g_autoptr (RtpTransaction) tx = NULL;
  g_autoptr (RtpAlarm) alarm = NULL;
  g_autoptr (GPtrArray) changes = g_ptr_array_new_with_free_func ((GDestroyNotify) change_free);
  gint64 now = g_get_real_time ();
  Level level;

  g_return_val_if_fail (RTP_IS_ALERTER (self), NULL);
  g_return_val_if_fail (caller != NULL && actor != NULL && id != NULL, NULL);
  if (comment != NULL && !rtp_validate_text ("comment", comment, 1000, error))
    return NULL;
  if ((tx = rtp_database_begin_transaction (self->db, error)) == NULL ||
      (alarm = alarm_for_action (self, caller, id, error)) == NULL)
    return NULL;
  level = level_from_name (alarm->severity);
  if (alarm->acknowledged_by == NULL)
    {
      if (rtp_database_exec (self->db, error,
                             "UPDATE alert_episodes SET acknowledged_by = :b, acknowledged_us = :now, "
                             "acknowledge_comment = :c, last_change_us = :now WHERE id = :id",
                             "b", RTP_DB_STR, actor, "now", RTP_DB_INT, now, "c", RTP_DB_STR, comment, "id", RTP_DB_STR,
                             id, NULL) < 0 ||
          !history (self, id, now, "acknowledged", level, alarm->value, actor, comment, NULL, error))
        return NULL;
      changed (changes, id, alarm->pv_string, level, "acknowledged");
      g_message ("alarm %s of %s acknowledged by %s", id, alarm->pv_string, actor);
    }
  /* back in band and only kept for the acknowledgement: it ends now */
  if (!alarm->active)
    {
      if (!end_alarm (self, id, level, alarm->value, now, error))
        return NULL;
      changed (changes, id, alarm->pv_string, level, "ended");
    }
  return finish_action (self, caller, tx, id, changes, error);
}

RtpAlarm *
rtp_alerter_shelve (RtpAlerter *self, const RtpUser *caller, const char *actor, const char *id, gint64 until_us,
                    const char *reason, GError **error)
{
  g_autoptr (RtpTransaction) tx = NULL;
  g_autoptr (RtpAlarm) alarm = NULL;
  g_autoptr (GPtrArray) changes = g_ptr_array_new_with_free_func ((GDestroyNotify) change_free);
  gint64 now = g_get_real_time ();

  g_return_val_if_fail (RTP_IS_ALERTER (self), NULL);
  g_return_val_if_fail (caller != NULL && actor != NULL && id != NULL, NULL);
  if (reason == NULL || rtp_validate_is_blank (reason))
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("reason: A reason for shelving is required."));
      return NULL;
    }
  if (!rtp_validate_text ("reason", reason, 1000, error))
    return NULL;
  if (until_us <= now || until_us - now > self->max_shelve_us)
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                   _ ("until: The end of the shelving must lie in the future and at most %lld seconds ahead."),
                   (long long) (self->max_shelve_us / G_USEC_PER_SEC));
      return NULL;
    }
  if ((tx = rtp_database_begin_transaction (self->db, error)) == NULL ||
      (alarm = alarm_for_action (self, caller, id, error)) == NULL)
    return NULL;
  if (rtp_database_exec (self->db, error,
                         "UPDATE alert_episodes SET shelved_by = :b, shelved_until_us = :u, shelve_reason = :r, "
                         "last_change_us = :now WHERE id = :id",
                         "b", RTP_DB_STR, actor, "u", RTP_DB_INT, until_us, "r", RTP_DB_STR, reason, "now", RTP_DB_INT,
                         now, "id", RTP_DB_STR, id, NULL) < 0 ||
      !history (self, id, now, "shelved", level_from_name (alarm->severity), alarm->value, actor, reason, NULL, error))
    return NULL;
  changed (changes, id, alarm->pv_string, level_from_name (alarm->severity), "shelved");
  g_message ("alarm %s of %s shelved by %s", id, alarm->pv_string, actor);
  return finish_action (self, caller, tx, id, changes, error);
}

RtpAlarm *
rtp_alerter_unshelve (RtpAlerter *self, const RtpUser *caller, const char *actor, const char *id, GError **error)
{
  g_autoptr (RtpTransaction) tx = NULL;
  g_autoptr (RtpAlarm) alarm = NULL;
  g_autoptr (GPtrArray) changes = g_ptr_array_new_with_free_func ((GDestroyNotify) change_free);
  gint64 now = g_get_real_time ();

  g_return_val_if_fail (RTP_IS_ALERTER (self), NULL);
  g_return_val_if_fail (caller != NULL && actor != NULL && id != NULL, NULL);
  if ((tx = rtp_database_begin_transaction (self->db, error)) == NULL ||
      (alarm = alarm_for_action (self, caller, id, error)) == NULL)
    return NULL;
  if (alarm->shelved_by != NULL)
    {
      if (rtp_database_exec (
            self->db, error,
            "UPDATE alert_episodes SET shelved_by = NULL, shelved_until_us = NULL, shelve_reason = NULL, "
            "last_change_us = :now WHERE id = :id",
            "now", RTP_DB_INT, now, "id", RTP_DB_STR, id, NULL) < 0 ||
          !history (self, id, now, "unshelved", level_from_name (alarm->severity), alarm->value, actor, NULL, NULL,
                    error))
        return NULL;
      changed (changes, id, alarm->pv_string, level_from_name (alarm->severity), "unshelved");
    }
  return finish_action (self, caller, tx, id, changes, error);
}

void
rtp_alerter_sweep (RtpAlerter *self)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GdaDataModel) m = NULL;
  g_autoptr (GPtrArray) changes = g_ptr_array_new_with_free_func ((GDestroyNotify) change_free);
  gint64 now = g_get_real_time ();

  g_return_if_fail (RTP_IS_ALERTER (self));
  if (!rtp_database_try_leadership (self->db))
    return;
  m = rtp_database_select (
    self->db, &error,
    "SELECT a.id, a.pv_string, a.severity, a.value FROM alert_episodes a LEFT JOIN subscriptions s "
    "ON s.user_id = a.user_id AND s.pv_string = a.pv_string "
    "WHERE a.closed_us IS NULL AND s.user_id IS NULL",
    NULL);
  for (guint i = 0; m != NULL && i < rtp_db_rows (m); i++)
    {
      g_autoptr (RtpTransaction) tx = rtp_database_begin_transaction (self->db, &error);
      Level level = level_from_name (rtp_db_str (m, i, 2));

      if (tx == NULL || !end_alarm (self, rtp_db_str (m, i, 0), level, rtp_db_str (m, i, 3), now, &error) ||
          !rtp_transaction_commit (tx, &error))
        break;
      g_message ("alarm %s of %s ended: its subscription is gone", rtp_db_str (m, i, 0), rtp_db_str (m, i, 1));
      changed (changes, rtp_db_str (m, i, 0), rtp_db_str (m, i, 1), level, "ended");
    }
  if (error != NULL)
    g_warning ("alarms: %s", error->message);
  emit_changes (self, changes);
}
