/* rtp-live-values.c: the newest value of each watched PV
 *
 * Two sources: the archiver, polled every interval for the last second of samples of each PV
 * that a live viewer watches (and, on the instance that alerts, each subscribed PV), and MQTT
 * topics <prefix>/<pv with : as /> that carry one number each. Each archived sample is emitted
 * once ("value"); the latest one is kept so that a new viewer sees a value at once. Only PVs of
 * the database are kept: the table must not grow with every topic anyone publishes.
 *
 * MQTT values that need nothing but being kept (a number inside the bands of a PV without alarms
 * and without viewers) are settled on paho's thread by the value gate (rtp-value-gate.c) and never
 * reach the main loop; the alerter says which PVs are quiet, and a change of a band (a subscription
 * or a PV, here or on another instance: rtp_band_changes) makes every value go through the main
 * loop again until it has judged it. */

/* How often a change made by another instance is looked for while values are settled by the gate
 * (changes of this process reach it at once): the longest a new subscription or band set elsewhere
 * may wait before values are judged against it. */
#define GATE_CHECK_MS 100
#define G_LOG_DOMAIN "RtpLiveValues"

#include "rtp-live-values.h"
#include "rtp-marshal.h"
#include "rtp-json.h"
#include "rtp-database.h"
#include "rtp-value-gate.h"

#include <math.h>
#include <string.h>

/* A PV's latest value */
typedef struct {
  gint64 time_us;
  char *value; /* (owned) its JSON text */
} Latest;

static void
latest_free (gpointer data)
{
  Latest *l = data;

  g_free (l->value);
  g_free (l);
}

struct _RtpLiveValues {
  GObject parent_instance;

  RtpDatabase *db;                 /* (owned) */
  RtpExperimentStore *experiments; /* (owned) */
  RtpMqttPublisher *mqtt;          /* (owned) */
  RtpArchiverClient *archiver;     /* (owned) (nullable) */
  RtpSubscriptions *subscriptions; /* (owned) (nullable) polled too, when leading */
  char *value_prefix;              /* (owned) (nullable) */
  GHashTable *watched;             /* (owned) pv → viewer count */
  GHashTable *latest;              /* (owned) pv → Latest, for new viewers */
  GHashTable *last_seen;           /* (owned) pv → gint64 * sample time emitted last */
  GHashTable *warned_too_deep;     /* (owned) PVs whose too deeply nested values were logged once */
  RtpValueGate *gate;              /* (owned) (nullable) while MQTT values are read */
  gulong message_id;
  gulong db_changed_id;
  guint gate_check_id;
  gboolean gate_check_pending; /* a stamp read for the gate is on its way */
  gboolean checking_bands;
  gint64 band_changes; /* rtp_band_changes.n as last read, -1: unknown */
  gint64 gate_check_since;
  guint poll_id;
  guint polls_outstanding;
};

enum { SIGNAL_VALUE, SIGNAL_HEARD, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_TYPE (RtpLiveValues, rtp_live_values, G_TYPE_OBJECT)

static void
rtp_live_values_dispose (GObject *object)
{
  RtpLiveValues *self = RTP_LIVE_VALUES (object);

  g_clear_handle_id (&self->poll_id, g_source_remove);
  g_clear_handle_id (&self->gate_check_id, g_source_remove);
  if (self->db != NULL)
    g_clear_signal_handler (&self->db_changed_id, self->db);
  if (self->mqtt != NULL)
    g_clear_signal_handler (&self->message_id, self->mqtt);
  g_clear_object (&self->archiver);
  g_clear_object (&self->subscriptions);
  g_clear_object (&self->mqtt);
  g_clear_object (&self->experiments);
  g_clear_object (&self->db);
  G_OBJECT_CLASS (rtp_live_values_parent_class)->dispose (object);
}

static void
rtp_live_values_finalize (GObject *object)
{
  RtpLiveValues *self = RTP_LIVE_VALUES (object);

  g_free (self->value_prefix);
  g_clear_pointer (&self->gate, rtp_value_gate_unref);
  g_hash_table_unref (self->watched);
  g_hash_table_unref (self->latest);
  g_hash_table_unref (self->last_seen);
  g_hash_table_unref (self->warned_too_deep);
  G_OBJECT_CLASS (rtp_live_values_parent_class)->finalize (object);
}

static void
rtp_live_values_class_init (RtpLiveValuesClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = rtp_live_values_dispose;
  G_OBJECT_CLASS (klass)->finalize = rtp_live_values_finalize;
  /**
   * RtpLiveValues::value:
   * @pv: the PV
   * @time_us: the sample's time, µs since the epoch
   * @value: the value as JSON text
   */
  signals[SIGNAL_VALUE] = g_signal_new ("value", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                        rtp_marshal_VOID__STRING_INT64_STRING, G_TYPE_NONE, 3, G_TYPE_STRING,
                                        G_TYPE_INT64, G_TYPE_STRING);
  g_signal_set_va_marshaller (signals[SIGNAL_VALUE], G_TYPE_FROM_CLASS (klass), rtp_marshal_VOID__STRING_INT64_STRINGv);
  /**
   * RtpLiveValues::heard:
   * @pv: the PV
   * @severity: the EPICS alarm severity of its latest sample (3: INVALID), -1 when the source gives none
   *
   * The source answered for @pv: a poll returned a sample (new or the one already emitted), or a
   * number arrived on its MQTT topic. A PV not heard of for a while has no valid value.
   */
  signals[SIGNAL_HEARD] = g_signal_new ("heard", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                        rtp_marshal_VOID__STRING_INT, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_INT);
  g_signal_set_va_marshaller (signals[SIGNAL_HEARD], G_TYPE_FROM_CLASS (klass), rtp_marshal_VOID__STRING_INTv);
}

static void
rtp_live_values_init (RtpLiveValues *self)
{
  self->watched = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->latest = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, latest_free);
  self->last_seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->warned_too_deep = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}

RtpLiveValues *
rtp_live_values_new (RtpDatabase *db, RtpExperimentStore *experiments, RtpMqttPublisher *mqtt)
{
  RtpLiveValues *self;

  g_return_val_if_fail (RTP_IS_DATABASE (db), NULL);
  g_return_val_if_fail (RTP_IS_EXPERIMENT_STORE (experiments), NULL);
  g_return_val_if_fail (RTP_IS_MQTT_PUBLISHER (mqtt), NULL);

  self = g_object_new (RTP_TYPE_LIVE_VALUES, NULL);
  self->db = g_object_ref (db);
  self->experiments = g_object_ref (experiments);
  self->mqtt = g_object_ref (mqtt);
  return self;
}

static void
emit_value (RtpLiveValues *self, const char *pv, gint64 t, const char *value)
{
  Latest *l = g_hash_table_lookup (self->latest, pv);

  /* updated in place: every value of every PV comes here */
  if (l == NULL)
    {
      l = g_new0 (Latest, 1);
      g_hash_table_insert (self->latest, g_strdup (pv), l);
    }
  if (l->value == NULL || strcmp (l->value, value) != 0)
    {
      g_free (l->value);
      l->value = g_strdup (value);
    }
  l->time_us = t;
  g_signal_emit (self, signals[SIGNAL_VALUE], 0, pv, t, value);
}

gboolean
rtp_live_values_get_latest (RtpLiveValues *self, const char *pv, gint64 *time_us, char **value)
{
  Latest *l;
  gint64 settled_us;
  double settled;

  g_return_val_if_fail (RTP_IS_LIVE_VALUES (self), FALSE);
  l = g_hash_table_lookup (self->latest, pv);
  /* a newer value may have been settled by the gate without reaching the main loop */
  if (rtp_live_values_get_settled (self, pv, &settled_us, &settled))
    {
      char buf[G_ASCII_DTOSTR_BUF_SIZE];
      *time_us = settled_us;
      *value = g_strdup (g_ascii_dtostr (buf, sizeof buf, settled));
      return TRUE;
    }
  if (l == NULL)
    return FALSE;
  *time_us = l->time_us;
  *value = g_strdup (l->value);
  return TRUE;
}

/* The latest value the value gate settled for @pv, when it is newer than the latest that reached
 * the main loop (only the judging instance's gate settles values). */
gboolean
rtp_live_values_get_settled (RtpLiveValues *self, const char *pv, gint64 *time_us, double *value)
{
  Latest *l;

  g_return_val_if_fail (RTP_IS_LIVE_VALUES (self), FALSE);
  if (self->gate == NULL || !rtp_value_gate_get_latest (self->gate, pv, time_us, value))
    return FALSE;
  l = g_hash_table_lookup (self->latest, pv);
  return l == NULL || *time_us > l->time_us;
}

/**
 * rtp_live_values_set_quiet:
 *
 * The alerter judged a value of @pv and found nothing to do but keep it; any value in [@lo, @hi]
 * would be judged the same until the database changes, or until @until_us (monotonic; G_MAXINT64:
 * no deadline) for a PV with an open alarm. Such MQTT values are then settled on arrival.
 */
void
rtp_live_values_set_quiet (RtpLiveValues *self, const char *pv, double lo, double hi, gint64 until_us)
{
  g_return_if_fail (RTP_IS_LIVE_VALUES (self));
  if (self->gate != NULL)
    rtp_value_gate_set_quiet_until (self->gate, pv, lo, hi, until_us); /* refused for a watched PV */
}

/* Every value of @pv reaches the main loop again (it has an alarm now). */
void
rtp_live_values_forward (RtpLiveValues *self, const char *pv)
{
  g_return_if_fail (RTP_IS_LIVE_VALUES (self));
  if (self->gate != NULL)
    rtp_value_gate_forward (self->gate, pv);
}

/**
 * rtp_live_values_claim_silence:
 *
 * @pv was not heard on the main loop since @heard_before_us (monotonic): FALSE when a value of it
 * was settled since then; otherwise TRUE, and every later value of it reaches the main loop.
 */
gboolean
rtp_live_values_claim_silence (RtpLiveValues *self, const char *pv, gint64 heard_before_us)
{
  g_return_val_if_fail (RTP_IS_LIVE_VALUES (self), TRUE);
  return self->gate == NULL || rtp_value_gate_claim_silence (self->gate, pv, heard_before_us);
}

void
rtp_live_values_watch (RtpLiveValues *self, const char *pv)
{
  guint n;

  g_return_if_fail (RTP_IS_LIVE_VALUES (self));
  n = GPOINTER_TO_UINT (g_hash_table_lookup (self->watched, pv));
  g_hash_table_replace (self->watched, g_strdup (pv), GUINT_TO_POINTER (n + 1));
  if (n == 0 && self->gate != NULL)
    rtp_value_gate_set_watched (self->gate, pv, TRUE); /* a viewer gets every value */
}

void
rtp_live_values_unwatch (RtpLiveValues *self, const char *pv)
{
  guint n;

  g_return_if_fail (RTP_IS_LIVE_VALUES (self));
  n = GPOINTER_TO_UINT (g_hash_table_lookup (self->watched, pv));
  if (n <= 1)
    {
      g_hash_table_remove (self->watched, pv);
      if (self->gate != NULL)
        rtp_value_gate_set_watched (self->gate, pv, FALSE);
    }
  else
    g_hash_table_replace (self->watched, g_strdup (pv), GUINT_TO_POINTER (n - 1));
}

void
rtp_live_values_poll_subscribed (RtpLiveValues *self, RtpSubscriptions *subscriptions)
{
  g_return_if_fail (RTP_IS_LIVE_VALUES (self));
  g_set_object (&self->subscriptions, subscriptions);
}

/* ---- the archiver ---------------------------------------------------------------- */

typedef struct {
  RtpLiveValues *self; /* (owned) */
  char *pv;
  gint64 secs;
  gint32 nanos;
  char *value;
  gint severity;
  gboolean have;
} PollCtx;

static void
poll_ctx_free (PollCtx *c)
{
  g_object_unref (c->self);
  g_free (c->pv);
  g_free (c->value);
  g_free (c);
}

static gboolean
keep_latest (const RtpSample *s, gpointer user_data)
{
  PollCtx *c = user_data;

  if (s->too_deep)
    {
      /* a bad sample: said once per PV, polling goes on */
      if (g_hash_table_add (c->self->warned_too_deep, g_strdup (c->pv)))
        g_warning ("monitor: the archiver sent a value of %s nested deeper than %d levels; such samples are skipped",
                   c->pv, RTP_JSON_MAX_DEPTH);
      return TRUE;
    }
  if (!c->have || s->secs > c->secs || (s->secs == c->secs && s->nanos > c->nanos))
    {
      c->have = TRUE;
      c->secs = s->secs;
      c->nanos = s->nanos;
      c->severity = s->severity;
      g_free (c->value);
      c->value = g_strndup (s->value, s->value_len);
    }
  return TRUE;
}

static void
poll_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  PollCtx *c = user_data;
  RtpLiveValues *self = c->self;
  g_autoptr (GError) error = NULL;
  gboolean found = FALSE;

  self->polls_outstanding--;
  if (!rtp_archiver_client_fetch_finish (RTP_ARCHIVER_CLIENT (source), result, &found, &error))
    g_debug ("monitor: %s: %s", c->pv, error->message);
  else if (c->have)
    {
      gint64 t = c->secs * G_USEC_PER_SEC + c->nanos / 1000;

      g_signal_emit (self, signals[SIGNAL_HEARD], 0, c->pv, c->severity);
      gint64 *seen = g_hash_table_lookup (self->last_seen, c->pv);

      /* each archived sample is emitted once */
      if (seen == NULL || t > *seen)
        {
          g_hash_table_replace (self->last_seen, g_strdup (c->pv), g_memdup2 (&t, sizeof t));
          emit_value (self, c->pv, t, c->value);
        }
    }
  poll_ctx_free (c);
}

static gboolean
poll_tick (gpointer user_data)
{
  RtpLiveValues *self = user_data;
  g_auto (GStrv) subscribed = NULL;
  gint64 now = g_get_real_time ();
  g_autoptr (GHashTable) todo = g_hash_table_new (g_str_hash, g_str_equal);
  GHashTableIter iter;
  gpointer pv;

  if (self->polls_outstanding > 0)
    return G_SOURCE_CONTINUE;
  /* subscribed PVs on the one instance that alerts; PVs with live viewers on every instance */
  if (self->subscriptions != NULL && rtp_database_try_leadership (self->db))
    {
      g_autoptr (GError) error = NULL;
      subscribed = rtp_subscriptions_list_pvs (self->subscriptions, &error);
      if (subscribed == NULL)
        g_warning ("monitor: %s", error->message);
      for (guint i = 0; subscribed != NULL && subscribed[i] != NULL; i++)
        g_hash_table_add (todo, subscribed[i]);
    }
  g_hash_table_iter_init (&iter, self->watched);
  while (g_hash_table_iter_next (&iter, &pv, NULL))
    g_hash_table_add (todo, pv);
  /* one request per PV, all at once */
  g_hash_table_iter_init (&iter, todo);
  while (g_hash_table_iter_next (&iter, &pv, NULL))
    {
      PollCtx *c = g_new0 (PollCtx, 1);
      c->self = g_object_ref (self);
      c->pv = g_strdup (pv);
      self->polls_outstanding++;
      rtp_archiver_client_fetch_async (self->archiver, c->pv, now - G_USEC_PER_SEC, now, FALSE, FALSE, keep_latest, c,
                                       NULL, poll_done, c);
    }
  return G_SOURCE_CONTINUE;
}

/* ---- MQTT value topics ---------------------------------------------------------------- */

static void handle_message_value (RtpLiveValues *self, const char *topic, const char *pv, const char *data, gsize len);

static void
on_value_message (RtpMqttPublisher *mqtt, const char *topic, GBytes *payload, gpointer user_data)
{
  RtpLiveValues *self = user_data;
  gsize n = strlen (self->value_prefix);
  g_autofree char *pv = NULL;
  gsize len = 0;
  const char *data = g_bytes_get_data (payload, &len);

  if (strncmp (topic, self->value_prefix, n) != 0 || topic[n] != '/')
    return;
  pv = g_strdelimit (g_strdup (topic + n + 1), "/", ':');
  /* what the database held when the message arrived is what it is judged against: one read of the
   * change stamp serves the messages of one batch */
  rtp_database_set_changes_since (rtp_mqtt_publisher_get_message_arrival (mqtt));
  handle_message_value (self, topic, pv, data, len);
  rtp_database_set_changes_since (G_MAXINT64);
}

static void
handle_message_value (RtpLiveValues *self, const char *topic, const char *pv, const char *data, gsize len)
{
  g_autofree char *text = NULL;
  char *end = NULL;
  double value;

  if (!rtp_experiment_store_has_pv (self->experiments, pv))
    {
      g_debug ("monitor: %s: no such process variable", topic);
      return;
    }
  text = g_strstrip (g_strndup (data, len));
  value = g_ascii_strtod (text, &end);
  if (end == text || *end != '\0' || !isfinite (value))
    {
      g_debug ("monitor: %s: not a finite number", topic);
      return;
    }
  g_signal_emit (self, signals[SIGNAL_HEARD], 0, pv, -1);
  {
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    emit_value (self, pv, g_get_real_time (), g_ascii_dtostr (buf, sizeof buf, value));
  }
}

/* The database changed (here, or elsewhere and now learnt of): if a band may have changed, every
 * value is judged again until the alerter says otherwise. Most changes are not about bands — an
 * alarmed PV's every value writes its alarm — and leave the gate as it is. */
static void
on_database_changed (RtpDatabase *db, gpointer user_data)
{
  RtpLiveValues *self = user_data;
  g_autoptr (GError) error = NULL;
  gint64 n;

  if (self->checking_bands)
    return; /* the read below reconnected (which moves the stamp too) */
  self->checking_bands = TRUE;
  n = rtp_database_select_int (db, &error, "SELECT n FROM rtp_band_changes", NULL);
  self->checking_bands = FALSE;
  if (n >= 0 && n == self->band_changes)
    return;
  if (n < 0)
    g_debug ("live values: cannot read the band counter (%s): every value is judged",
             error != NULL ? error->message : "no row");
  else if (self->band_changes >= 0)
    g_message ("live values: the bands may have changed (a subscription or a PV, here or on another instance): "
               "every value is judged again");
  self->band_changes = n;
  rtp_value_gate_forward_all (self->gate);
}

/* Changes made by other instances are learnt of when the change stamp is read: read it now and
 * then while nothing else does (the "changed" handler opens the gate); no stamp known, no gate.
 * On PostgreSQL the read goes through the stamp fence: no round trip on the main loop. */
static void
gate_stamp_known (gpointer user_data)
{
  RtpLiveValues *self = user_data;

  self->gate_check_pending = FALSE;
  rtp_database_set_changes_since (self->gate_check_since);
  if (rtp_database_get_change_stamp (self->db) == 0)
    rtp_value_gate_forward_all (self->gate);
  rtp_database_set_changes_since (G_MAXINT64);
  g_object_unref (self);
}

static gboolean
gate_check (gpointer user_data)
{
  RtpLiveValues *self = user_data;

  if (self->gate_check_pending)
    return G_SOURCE_CONTINUE;
  self->gate_check_pending = TRUE;
  self->gate_check_since = g_get_monotonic_time ();
  rtp_database_when_stamp_known (self->db, self->gate_check_since, gate_stamp_known, g_object_ref (self));
  return G_SOURCE_CONTINUE;
}

static gboolean
gate_take (const char *topic, gsize topic_len, const void *payload, gsize len, gpointer user_data)
{
  return rtp_value_gate_take (user_data, topic, topic_len, payload, len);
}

void
rtp_live_values_start (RtpLiveValues *self, const RtpLiveSettings *s)
{
  g_return_if_fail (RTP_IS_LIVE_VALUES (self));
  g_return_if_fail (s != NULL);
  g_return_if_fail (self->poll_id == 0 && self->message_id == 0);

  if (s->archiver != NULL && rtp_archiver_client_is_configured (s->archiver) && s->interval_s > 0)
    {
      self->archiver = g_object_ref (s->archiver);
      self->poll_id = g_timeout_add ((guint) (s->interval_s * 1000), poll_tick, self);
      g_message ("live values: polling the archiver every %.1f s", s->interval_s);
    }
  if (s->value_topic_prefix != NULL && s->value_topic_prefix[0] != '\0')
    {
      g_autofree char *filter = g_strconcat (s->value_topic_prefix, "/#", NULL);
      GHashTableIter iter;
      gpointer pv;

      self->value_prefix = g_strdup (s->value_topic_prefix);
      self->gate = rtp_value_gate_new (s->value_topic_prefix);
      g_hash_table_iter_init (&iter, self->watched);
      while (g_hash_table_iter_next (&iter, &pv, NULL))
        rtp_value_gate_set_watched (self->gate, pv, TRUE);
      self->band_changes = -1;
      self->db_changed_id = g_signal_connect (self->db, "changed", G_CALLBACK (on_database_changed), self);
      self->gate_check_id = g_timeout_add (GATE_CHECK_MS, gate_check, self);
      rtp_mqtt_publisher_set_filter (self->mqtt, gate_take, rtp_value_gate_ref (self->gate),
                                     (GDestroyNotify) rtp_value_gate_unref);
      rtp_mqtt_publisher_subscribe (self->mqtt, filter);
      self->message_id = g_signal_connect (self->mqtt, "message", G_CALLBACK (on_value_message), self);
      g_message ("live values: reading values from MQTT topics %s", filter);
    }
}
