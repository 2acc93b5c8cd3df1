/* rtp-threshold-monitor.c: subscriptions and their announcements on MQTT
 *
 * A subscription made or removed through the API is written only after its announcement
 * reached the broker; no transaction is held open while waiting. Subscriptions removed by
 * a cascade (a user, PV or experiment deleted, a PV renamed) are announced through the
 * outbox table: the rows are written in the same transaction as the delete and sent once
 * the broker acknowledges them — nothing is dropped while the broker is away. */
#define G_LOG_DOMAIN "RtpMonitor"

#include "rtp-threshold-monitor.h"
#include "rtp-error.h"
#include "rtp-validate.h"
#include "rtp-i18n.h"
#include "rtp-json.h"

#include <errno.h>
#include <math.h>
#include <string.h>


#define OUTBOX_RETRY_S 5
#define OUTBOX_BATCH 100

struct _RtpThresholdMonitor {
  GObject parent_instance;

  RtpDatabase *db;                 /* (owned) */
  RtpUserManager *users;           /* (owned) */
  RtpExperimentStore *experiments; /* (owned) */
  RtpMqttPublisher *mqtt;          /* (owned) */
  char *topic;                     /* (owned) */
  char *unit;                      /* (owned) */
  gboolean flushing;
  guint flush_idle_id;
  guint flush_timer_id;
  gulong user_deleting_id;
  gulong pv_deleting_id;
  gulong pv_renaming_id;
  gulong user_unassigning_id;
  gulong connected_id;
  gulong message_id;
  /* alerting */
  gboolean alerting;
  RtpArchiverClient *archiver;     /* (owned) (nullable) */
  char *value_prefix;              /* (owned) (nullable) */
  RtpMailSettings mail;            /* strings (owned) */
  gint64 renotify_us;
  double hysteresis;
  GTimeZone *tz;                   /* (owned) (nullable) */
  GHashTable *last_seen;           /* (owned) pv → gint64 * sample time judged last */
  GHashTable *warned_too_deep;     /* (owned) PVs whose too deeply nested values were logged once */
  guint poll_id;
  guint mail_id;
  guint mail_idle_id;
  guint polls_outstanding;
  gboolean mail_sending;
  GHashTable *watched;             /* (owned) pv → viewer count */
  GHashTable *latest;              /* (owned) pv → latest value's JSON text, for new viewers */
  GHashTable *latest_time;         /* (owned) pv → gint64 * µs */
};

enum { SIGNAL_BREACHED, SIGNAL_VALUE, N_SIGNALS };
static guint signals[N_SIGNALS];

static gboolean send_mails_idle (gpointer user_data);

G_DEFINE_TYPE (RtpThresholdMonitor, rtp_threshold_monitor, G_TYPE_OBJECT)

void
rtp_subscription_free (RtpSubscription *sub)
{
  if (sub == NULL)
    return;
  g_free (sub->user_id);
  g_free (sub->pv_string);
  g_free (sub->email);
  g_free (sub);
}

/* ---- announcements ---------------------------------------------------------------- */

static char *
announcement (RtpThresholdMonitor *self, const char *email, const char *pv, gint64 min, gint64 max, gboolean active,
              const char *first_name, const char *last_name)
{
  g_autoptr (JsonObject) o = json_object_new ();
  g_autoptr (JsonNode) node = NULL;
  g_autofree char *message = g_strdup_printf ("Hello %s %s.\nPlease check the %s process variable! A threshold value has been breached.",
                                              first_name, last_name, pv);

  json_object_set_string_member (o, "email", email);
  json_object_set_string_member (o, "pv", pv);
  json_object_set_int_member (o, "min_threshold", min);
  json_object_set_int_member (o, "max_threshold", max);
  json_object_set_string_member (o, "threshold_unit", self->unit);
  json_object_set_int_member (o, "active", active ? 1 : 0);
  json_object_set_string_member (o, "message", message);
  node = json_node_init_object (json_node_alloc (), o);
  return json_to_string (node, FALSE);
}

static gboolean
queue (RtpThresholdMonitor *self, const char *payload, GError **error)
{
  g_autofree char *id = g_uuid_string_random ();

  return rtp_database_exec (self->db, error,
                            "INSERT INTO mqtt_outbox (id, created_us, topic, payload) VALUES (:id, :t, :topic, :p)",
                            "id", RTP_DB_STR, id, "t", RTP_DB_INT, g_get_real_time (), "topic", RTP_DB_STR,
                            self->topic, "p", RTP_DB_STR, payload, NULL) >= 0;
}

static gboolean
flush_idle (gpointer user_data)
{
  RtpThresholdMonitor *self = user_data;
  self->flush_idle_id = 0;
  rtp_threshold_monitor_flush_outbox (self);
  return G_SOURCE_REMOVE;
}

static void
schedule_flush (RtpThresholdMonitor *self)
{
  /* after the current transaction has committed: the main loop runs it next */
  if (self->flush_idle_id == 0)
    self->flush_idle_id = g_idle_add (flush_idle, self);
}

/* The subscriptions of one user to the PVs of one experiment (parameters :v and :e). */
#define OF_USER_IN_EXPERIMENT \
  "user_id = :v AND pv_string IN (SELECT pv_string FROM process_variables WHERE experiment_short_id = :e)"

/* Queues removal (and, for a rename, re-creation) announcements of the subscriptions matching
 * @where (on the subscriptions' columns, with :v = @value and :e = @extra). Runs inside the
 * caller's transaction. */
static gboolean
queue_cascade (RtpThresholdMonitor *self, const char *where, const char *value, const char *extra,
               const char *renamed_to, GError **error)
{
  g_autofree char *sql = g_strdup_printf ("SELECT s.email, s.pv_string, s.threshold_min, s.threshold_max, u.first_name, "
                                          "u.last_name FROM subscriptions s JOIN users u ON u.user_id = s.user_id "
                                          "WHERE s.%s ORDER BY s.user_id, s.pv_string",
                                          where);
  g_autoptr (GdaDataModel) m = rtp_database_select (self->db, error, sql, "v", RTP_DB_STR, value, "e", RTP_DB_STR,
                                                    extra, NULL);

  if (m == NULL)
    return FALSE;
  for (guint i = 0; i < rtp_db_rows (m); i++)
    {
      g_autofree char *off = announcement (self, rtp_db_str (m, i, 0), rtp_db_str (m, i, 1), rtp_db_int0 (m, i, 2),
                                           rtp_db_int0 (m, i, 3), FALSE, rtp_db_str (m, i, 4), rtp_db_str (m, i, 5));
      if (!queue (self, off, error))
        return FALSE;
      if (renamed_to != NULL)
        {
          g_autofree char *on = announcement (self, rtp_db_str (m, i, 0), renamed_to, rtp_db_int0 (m, i, 2),
                                              rtp_db_int0 (m, i, 3), TRUE, rtp_db_str (m, i, 4), rtp_db_str (m, i, 5));
          if (!queue (self, on, error))
            return FALSE;
        }
    }
  if (rtp_db_rows (m) > 0)
    {
      g_message ("queued announcements for %u subscriptions of %s", rtp_db_rows (m), value);
      schedule_flush (self);
    }
  return TRUE;
}

static void
on_user_deleting (RtpUserManager *users, const char *user_id, gpointer error, gpointer user_data)
{
  queue_cascade (user_data, "user_id = :v", user_id, NULL, NULL, error);
}

static void
on_pv_deleting (RtpExperimentStore *store, const char *pv, gpointer error, gpointer user_data)
{
  queue_cascade (user_data, "pv_string = :v", pv, NULL, NULL, error);
}

static void
on_pv_renaming (RtpExperimentStore *store, const char *from, const char *to, gpointer error, gpointer user_data)
{
  queue_cascade (user_data, "pv_string = :v", from, NULL, to, error);
}

/* A user removed from an experiment keeps no subscription to its PVs (mails would go on). */
static void
on_user_unassigning (RtpExperimentStore *store, const char *user_id, const char *short_id, gpointer error,
                     gpointer user_data)
{
  RtpThresholdMonitor *self = user_data;

  if (queue_cascade (self, OF_USER_IN_EXPERIMENT, user_id, short_id, NULL, error))
    rtp_database_exec (self->db, error, "DELETE FROM subscriptions WHERE " OF_USER_IN_EXPERIMENT, "v", RTP_DB_STR,
                       user_id, "e", RTP_DB_STR, short_id, NULL);
}

/* ---- outbox ---------------------------------------------------------------- */

typedef struct {
  RtpThresholdMonitor *self;
  char *id;
} OutboxItem;

static void flush_next (RtpThresholdMonitor *self);

static void
outbox_sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  OutboxItem *item = user_data;
  RtpThresholdMonitor *self = item->self;
  g_autoptr (GError) error = NULL;

  if (!rtp_mqtt_publisher_publish_finish (RTP_MQTT_PUBLISHER (source), result, &error))
    {
      g_debug ("outbox: %s; will retry", error->message);
      self->flushing = FALSE;
    }
  else if (rtp_database_exec (self->db, &error, "DELETE FROM mqtt_outbox WHERE id = :id", "id", RTP_DB_STR, item->id,
                              NULL) < 0)
    {
      g_warning ("outbox: sent but cannot remove %s: %s", item->id, error->message);
      self->flushing = FALSE;
    }
  else
    flush_next (self);
  g_free (item->id);
  g_free (item);
  g_object_unref (self);
}

/* One message at a time, oldest first, so that announcements keep their order. */
static void
flush_next (RtpThresholdMonitor *self)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GdaDataModel) m = NULL;
  OutboxItem *item;
  const char *payload;

  if (!rtp_mqtt_publisher_get_connected (self->mqtt))
    {
      self->flushing = FALSE;
      return;
    }
  m = rtp_database_select (self->db, &error, "SELECT id, topic, payload FROM mqtt_outbox ORDER BY created_us, id LIMIT 1",
                           NULL);
  if (m == NULL || rtp_db_rows (m) == 0)
    {
      if (m == NULL)
        g_warning ("outbox: %s", error->message);
      self->flushing = FALSE;
      return;
    }
  item = g_new0 (OutboxItem, 1);
  item->self = g_object_ref (self);
  item->id = g_strdup (rtp_db_str (m, 0, 0));
  payload = rtp_db_str (m, 0, 2);
  rtp_mqtt_publisher_publish_async (self->mqtt, rtp_db_str (m, 0, 1), payload, strlen (payload), 1, NULL, outbox_sent,
                                    item);
}

void
rtp_threshold_monitor_flush_outbox (RtpThresholdMonitor *self)
{
  if (self->flushing || !rtp_mqtt_publisher_get_connected (self->mqtt))
    return;
  /* of several instances on one database, one sends the outbox */
  if (!rtp_database_try_leadership (self->db))
    return;
  self->flushing = TRUE;
  flush_next (self);
}

guint
rtp_threshold_monitor_outbox_length (RtpThresholdMonitor *self)
{
  gint64 n = rtp_database_select_int (self->db, NULL, "SELECT COUNT(*) FROM mqtt_outbox", NULL);
  return n > 0 ? (guint) n : 0;
}

static gboolean
flush_timer (gpointer user_data)
{
  rtp_threshold_monitor_flush_outbox (user_data);
  return G_SOURCE_CONTINUE;
}

static void
on_connected_changed (GObject *mqtt, GParamSpec *pspec, gpointer user_data)
{
  RtpThresholdMonitor *self = user_data;
  if (rtp_mqtt_publisher_get_connected (self->mqtt))
    schedule_flush (self);
}

/* ---- object ---------------------------------------------------------------- */

static void
rtp_threshold_monitor_dispose (GObject *object)
{
  RtpThresholdMonitor *self = RTP_THRESHOLD_MONITOR (object);

  g_clear_handle_id (&self->flush_idle_id, g_source_remove);
  g_clear_handle_id (&self->flush_timer_id, g_source_remove);
  g_clear_handle_id (&self->poll_id, g_source_remove);
  g_clear_handle_id (&self->mail_id, g_source_remove);
  g_clear_handle_id (&self->mail_idle_id, g_source_remove);
  g_clear_object (&self->archiver);
  if (self->users != NULL)
    g_clear_signal_handler (&self->user_deleting_id, self->users);
  if (self->experiments != NULL)
    {
      g_clear_signal_handler (&self->pv_deleting_id, self->experiments);
      g_clear_signal_handler (&self->pv_renaming_id, self->experiments);
      g_clear_signal_handler (&self->user_unassigning_id, self->experiments);
    }
  if (self->mqtt != NULL)
    {
      g_clear_signal_handler (&self->connected_id, self->mqtt);
      g_clear_signal_handler (&self->message_id, self->mqtt);
    }
  g_clear_object (&self->db);
  g_clear_object (&self->users);
  g_clear_object (&self->experiments);
  g_clear_object (&self->mqtt);
  G_OBJECT_CLASS (rtp_threshold_monitor_parent_class)->dispose (object);
}

static void
rtp_threshold_monitor_finalize (GObject *object)
{
  RtpThresholdMonitor *self = RTP_THRESHOLD_MONITOR (object);
  g_free (self->topic);
  g_free (self->unit);
  g_free (self->value_prefix);
  g_free ((char *) self->mail.url);
  g_free ((char *) self->mail.from);
  g_free ((char *) self->mail.user);
  g_free ((char *) self->mail.password);
  g_clear_pointer (&self->tz, g_time_zone_unref);
  g_hash_table_unref (self->last_seen);
  g_hash_table_unref (self->warned_too_deep);
  g_hash_table_unref (self->watched);
  g_hash_table_unref (self->latest);
  g_hash_table_unref (self->latest_time);
  G_OBJECT_CLASS (rtp_threshold_monitor_parent_class)->finalize (object);
}

static void
rtp_threshold_monitor_class_init (RtpThresholdMonitorClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = rtp_threshold_monitor_dispose;
  G_OBJECT_CLASS (klass)->finalize = rtp_threshold_monitor_finalize;
  /**
   * RtpThresholdMonitor::threshold-breached:
   * @pv: the PV
   * @value: the value that left the band
   * @min: @max: the subscriber's band
   */
  signals[SIGNAL_BREACHED] = g_signal_new ("threshold-breached", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                                           NULL, NULL, G_TYPE_NONE, 4, G_TYPE_STRING, G_TYPE_DOUBLE, G_TYPE_INT64,
                                           G_TYPE_INT64);
  /**
   * RtpThresholdMonitor::value:
   * @pv: the PV
   * @time_us: the sample's time, µs since the epoch
   * @value: the value as JSON text
   */
  signals[SIGNAL_VALUE] = g_signal_new ("value", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                        G_TYPE_NONE, 3, G_TYPE_STRING, G_TYPE_INT64, G_TYPE_STRING);
}

static void
rtp_threshold_monitor_init (RtpThresholdMonitor *self)
{
  self->last_seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->warned_too_deep = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->watched = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->latest = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->latest_time = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

static void
emit_value (RtpThresholdMonitor *self, const char *pv, gint64 t, const char *value)
{
  g_hash_table_replace (self->latest, g_strdup (pv), g_strdup (value));
  g_hash_table_replace (self->latest_time, g_strdup (pv), g_memdup2 (&t, sizeof t));
  g_signal_emit (self, signals[SIGNAL_VALUE], 0, pv, t, value);
}

gboolean
rtp_threshold_monitor_get_latest (RtpThresholdMonitor *self, const char *pv, gint64 *time_us, const char **value)
{
  gint64 *t = g_hash_table_lookup (self->latest_time, pv);
  if (t == NULL)
    return FALSE;
  *time_us = *t;
  *value = g_hash_table_lookup (self->latest, pv);
  return TRUE;
}

void
rtp_threshold_monitor_watch (RtpThresholdMonitor *self, const char *pv)
{
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (self->watched, pv));
  g_hash_table_replace (self->watched, g_strdup (pv), GUINT_TO_POINTER (n + 1));
}

void
rtp_threshold_monitor_unwatch (RtpThresholdMonitor *self, const char *pv)
{
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (self->watched, pv));
  if (n <= 1)
    g_hash_table_remove (self->watched, pv);
  else
    g_hash_table_replace (self->watched, g_strdup (pv), GUINT_TO_POINTER (n - 1));
}

RtpThresholdMonitor *
rtp_threshold_monitor_new (RtpDatabase *db, RtpUserManager *users, RtpExperimentStore *experiments,
                           RtpMqttPublisher *mqtt, const RtpMonitorSettings *settings)
{
  RtpThresholdMonitor *self = g_object_new (RTP_TYPE_THRESHOLD_MONITOR, NULL);

  self->db = g_object_ref (db);
  self->users = g_object_ref (users);
  self->experiments = g_object_ref (experiments);
  self->mqtt = g_object_ref (mqtt);
  self->topic = g_strdup_printf ("/%s/%s", settings->channel_prefix, settings->email_channel);
  self->unit = g_strdup (settings->threshold_unit != NULL ? settings->threshold_unit : "");
  self->user_deleting_id = g_signal_connect (users, "user-deleting", G_CALLBACK (on_user_deleting), self);
  self->pv_deleting_id = g_signal_connect (experiments, "pv-deleting", G_CALLBACK (on_pv_deleting), self);
  self->pv_renaming_id = g_signal_connect (experiments, "pv-renaming", G_CALLBACK (on_pv_renaming), self);
  self->user_unassigning_id = g_signal_connect (experiments, "user-unassigning", G_CALLBACK (on_user_unassigning), self);
  self->connected_id = g_signal_connect (mqtt, "notify::connected", G_CALLBACK (on_connected_changed), self);
  self->flush_timer_id = g_timeout_add_seconds (OUTBOX_RETRY_S, flush_timer, self);
  return self;
}

/* ---- listing ---------------------------------------------------------------- */

static RtpSubscription *
subscription_from_row (GdaDataModel *m, guint row)
{
  RtpSubscription *sub = g_new0 (RtpSubscription, 1);
  sub->user_id = g_strdup (rtp_db_str (m, row, 0));
  sub->pv_string = g_strdup (rtp_db_str (m, row, 1));
  sub->email = g_strdup (rtp_db_str (m, row, 2));
  sub->threshold_min = rtp_db_int0 (m, row, 3);
  sub->threshold_max = rtp_db_int0 (m, row, 4);
  return sub;
}

GPtrArray *
rtp_threshold_monitor_list (RtpThresholdMonitor *self, const char *user_id, const char *pv_string, GError **error)
{
  g_autoptr (GdaDataModel) m = rtp_database_select (
      self->db, error,
      "SELECT user_id, pv_string, email, threshold_min, threshold_max FROM subscriptions "
      "WHERE user_id = :u AND COALESCE(:pv, pv_string) = pv_string ORDER BY pv_string",
      "u", RTP_DB_STR, user_id, "pv", RTP_DB_STR, pv_string, NULL);
  GPtrArray *out;

  if (m == NULL)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) rtp_subscription_free);
  for (guint i = 0; i < rtp_db_rows (m); i++)
    g_ptr_array_add (out, subscription_from_row (m, i));
  return out;
}

static gboolean
get_subscription (RtpThresholdMonitor *self, const char *user_id, const char *pv, RtpSubscription **out, GError **error)
{
  g_autoptr (GPtrArray) list = rtp_threshold_monitor_list (self, user_id, pv, error);

  if (list == NULL)
    return FALSE;
  *out = list->len > 0 ? g_ptr_array_steal_index (list, 0) : NULL;
  return TRUE;
}

/* ---- subscribe / unsubscribe ---------------------------------------------------------------- */

typedef struct {
  RtpSubscription *sub;
  char *payload_on;   /* announcement of the subscription */
  char *payload_off;  /* its reverse */
  gboolean subscribing;
} ChangeData;

static void
change_data_free (ChangeData *d)
{
  rtp_subscription_free (d->sub);
  g_free (d->payload_on);
  g_free (d->payload_off);
  g_free (d);
}

/* Reads an integer or an integer string. */
static int
read_threshold (JsonObject *body, const char *name, gint64 *out)
{
  JsonNode *node = body != NULL ? json_object_get_member (body, name) : NULL;

  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return 0; /* not given */
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_INT64)
    {
      *out = json_node_get_int (node);
      return 1;
    }
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    {
      const char *s = json_node_get_string (node);
      char *end = NULL;
      g_autofree char *stripped = g_strstrip (g_strdup (s));
      errno = 0;
      *out = g_ascii_strtoll (stripped, &end, 10);
      if (stripped[0] != '\0' && *end == '\0' && errno == 0)
        return 1;
    }
  return -1; /* not an integer */
}

/* Access and existence, in the contract's order: PV (404), assignment (403). */
static RtpProcessVariable *
check_access (RtpThresholdMonitor *self, const RtpUser *caller, const char *pv_string, GError **error)
{
  g_autoptr (RtpProcessVariable) pv = rtp_experiment_store_get_pv (self->experiments, pv_string, error);

  if (pv == NULL ||
      !rtp_experiment_store_check_access (self->experiments, caller, pv->experiment_short_id, RTP_ACCESS_WATCH, error))
    return NULL;
  return g_steal_pointer (&pv);
}

static void
change_written_or_reverted (RtpThresholdMonitor *self, GTask *task, ChangeData *d, GError *write_error)
{
  if (write_error == NULL)
    {
      g_message ("subscription (user_id=%s,pv_string=%s) %s", d->sub->user_id, d->sub->pv_string,
                 d->subscribing ? "created" : "removed");
      if (d->subscribing)
        g_task_return_pointer (task, g_steal_pointer (&d->sub), (GDestroyNotify) rtp_subscription_free);
      else
        g_task_return_boolean (task, TRUE);
      return;
    }
  /* announced but not written: announce the reverse so the alert service agrees with us */
  {
    g_autoptr (GError) queue_error = NULL;
    if (!queue (self, d->subscribing ? d->payload_off : d->payload_on, &queue_error))
      g_warning ("cannot queue the reverse announcement: %s", queue_error->message);
    else
      schedule_flush (self);
  }
  g_task_return_error (task, write_error);
}

static void
subscribe_announced (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  RtpThresholdMonitor *self = g_task_get_source_object (task);
  ChangeData *d = g_task_get_task_data (task);
  GError *error = NULL;

  if (!rtp_mqtt_publisher_publish_finish (RTP_MQTT_PUBLISHER (source), result, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  if (d->subscribing)
    rtp_database_exec (self->db, &error,
                       "INSERT INTO subscriptions (user_id, pv_string, email, threshold_min, threshold_max) "
                       "VALUES (:u, :pv, :e, :min, :max)",
                       "u", RTP_DB_STR, d->sub->user_id, "pv", RTP_DB_STR, d->sub->pv_string, "e", RTP_DB_STR,
                       d->sub->email, "min", RTP_DB_INT, d->sub->threshold_min, "max", RTP_DB_INT,
                       d->sub->threshold_max, NULL);
  else
    rtp_database_exec (self->db, &error, "DELETE FROM subscriptions WHERE user_id = :u AND pv_string = :pv", "u",
                       RTP_DB_STR, d->sub->user_id, "pv", RTP_DB_STR, d->sub->pv_string, NULL);
  if (error != NULL && g_error_matches (error, RTP_ERROR, RTP_ERROR_EXISTS))
    {
      /* another request subscribed meanwhile */
      g_autofree char *id = g_strdup_printf ("user_id=%s,pv_string=%s", d->sub->user_id, d->sub->pv_string);
      g_clear_error (&error);
      g_set_error (&error, RTP_ERROR, RTP_ERROR_EXISTS, _("A %s (%s) is already present in the database."),
                   _("subscription"), id);
    }
  change_written_or_reverted (self, task, d, error);
}

static char *
subscription_id (const char *user_id, const char *pv)
{
  return g_strdup_printf ("user_id=%s,pv_string=%s", user_id, pv);
}

void
rtp_threshold_monitor_subscribe_async (RtpThresholdMonitor *self, const RtpUser *caller, const char *pv_string,
                                       JsonObject *body, GCancellable *cancellable, GAsyncReadyCallback callback,
                                       gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr (RtpProcessVariable) pv = NULL;
  g_autoptr (RtpSubscription) existing = NULL;
  g_autoptr (GStrvBuilder) missing = g_strv_builder_new ();
  GError *error = NULL;
  JsonNode *email_node = body != NULL ? json_object_get_member (body, "email") : NULL;
  const char *email = NULL;
  gint64 min = 0, max = 0;
  int have_min, have_max;
  ChangeData *d;

  g_task_set_source_tag (task, rtp_threshold_monitor_subscribe_async);
  pv = check_access (self, caller, pv_string, &error);
  if (pv == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  if (email_node != NULL && !JSON_NODE_HOLDS_NULL (email_node))
    {
      if (!JSON_NODE_HOLDS_VALUE (email_node) || json_node_get_value_type (email_node) != G_TYPE_STRING)
        {
          g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_INVALID, "%s",
                                   _("Some or more values in the JSON body were null or do not correspond to the required column type in the database."));
          return;
        }
      email = json_node_get_string (email_node);
    }
  if (email == NULL || email[0] == '\0')
    email = caller->email;
  have_min = read_threshold (body, "threshold_min", &min);
  have_max = read_threshold (body, "threshold_max", &max);
  if (have_min < 0 || have_max < 0)
    {
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_INVALID, "%s",
                               _("threshold_min and threshold_max must be integers."));
      return;
    }
  if (have_min == 0 && pv->has_threshold_min)
    {
      min = pv->threshold_min; /* 0 is a value */
      have_min = 1;
    }
  if (have_max == 0 && pv->has_threshold_max)
    {
      max = pv->threshold_max;
      have_max = 1;
    }
  if (email == NULL || email[0] == '\0')
    g_strv_builder_add (missing, _("email: Missing email."));
  if (!have_min)
    g_strv_builder_add (missing, _("threshold_min: Missing threshold_min."));
  if (!have_max)
    g_strv_builder_add (missing, _("threshold_max: Missing threshold_max."));
  {
    g_auto (GStrv) fields = g_strv_builder_end (missing);
    if (fields[0] != NULL)
      {
        g_task_return_error (task, rtp_error_new_fields ((const char *const *) fields));
        return;
      }
  }
  if (!rtp_validate_text ("email", email, 100, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  if (!rtp_validate_email (email))
    {
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_INVALID, _("email: %s is not a valid email address"), email);
      return;
    }
  if (!get_subscription (self, caller->user_id, pv_string, &existing, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  if (existing != NULL)
    {
      g_autofree char *id = subscription_id (caller->user_id, pv_string);
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_EXISTS, _("A %s (%s) is already present in the database."),
                               _("subscription"), id);
      return;
    }

  d = g_new0 (ChangeData, 1);
  d->subscribing = TRUE;
  d->sub = g_new0 (RtpSubscription, 1);
  d->sub->user_id = g_strdup (caller->user_id);
  d->sub->pv_string = g_strdup (pv_string);
  d->sub->email = g_strdup (email);
  d->sub->threshold_min = min;
  d->sub->threshold_max = max;
  d->payload_on = announcement (self, email, pv_string, min, max, TRUE, caller->first_name, caller->last_name);
  d->payload_off = announcement (self, email, pv_string, min, max, FALSE, caller->first_name, caller->last_name);
  g_task_set_task_data (task, d, (GDestroyNotify) change_data_free);
  rtp_mqtt_publisher_publish_async (self->mqtt, self->topic, d->payload_on, strlen (d->payload_on), 1, cancellable,
                                    subscribe_announced, g_object_ref (task));
}

RtpSubscription *
rtp_threshold_monitor_subscribe_finish (RtpThresholdMonitor *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

void
rtp_threshold_monitor_unsubscribe_async (RtpThresholdMonitor *self, const RtpUser *caller, const char *pv_string,
                                         GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  RtpSubscription *existing = NULL;
  GError *error = NULL;
  ChangeData *d;

  g_task_set_source_tag (task, rtp_threshold_monitor_unsubscribe_async);
  if (!get_subscription (self, caller->user_id, pv_string, &existing, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  if (existing == NULL)
    {
      g_autofree char *id = subscription_id (caller->user_id, pv_string);
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_NOT_FOUND, _("The %s (%s) is not present in the database."),
                               _("subscription"), id);
      return;
    }
  d = g_new0 (ChangeData, 1);
  d->sub = existing;
  d->payload_on = announcement (self, existing->email, pv_string, existing->threshold_min, existing->threshold_max,
                                TRUE, caller->first_name, caller->last_name);
  d->payload_off = announcement (self, existing->email, pv_string, existing->threshold_min, existing->threshold_max,
                                 FALSE, caller->first_name, caller->last_name);
  g_task_set_task_data (task, d, (GDestroyNotify) change_data_free);
  rtp_mqtt_publisher_publish_async (self->mqtt, self->topic, d->payload_off, strlen (d->payload_off), 1, cancellable,
                                    subscribe_announced, g_object_ref (task));
}

gboolean
rtp_threshold_monitor_unsubscribe_finish (RtpThresholdMonitor *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ---- alerting ---------------------------------------------------------------- */

typedef struct {
  RtpThresholdMonitor *self;  /* (owned) */
  char *pv;
  gint64 secs;
  gint32 nanos;
  char *value;
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
      /* a bad sample: said once per PV, the monitor goes on */
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
      g_free (c->value);
      c->value = g_strndup (s->value, s->value_len);
    }
  return TRUE;
}

static void
queue_mail (RtpThresholdMonitor *self, const char *episode, const char *to, const char *subject, const char *body,
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
compose (RtpThresholdMonitor *self, const char *lang, gboolean reminder, const char *first, const char *last,
         const char *pv, const char *name, double value, gint64 min, gint64 max, char **subject, char **body)
{
  g_autofree char *v = format_value (value);
  g_autoptr (GDateTime) now = g_date_time_new_now (self->tz);
  g_autofree char *when = g_date_time_format (now, "%Y-%m-%d %H:%M:%S %Z");
  const char *unit = self->unit;
  g_autofree char *label = name != NULL && name[0] != '\0' ? g_strdup_printf ("%s (%s)", pv, name) : g_strdup (pv);

  *subject = g_strdup_printf (rtp_i18n_translate (lang, reminder ? N_("Reminder: %s is still out of its band: %s %s")
                                                                  : N_("Threshold breached: %s is %s %s")),
                              pv, v, unit);
  *body = g_strdup_printf (rtp_i18n_translate (lang, N_("Hello %s %s,\n\n"
                                                        "the process variable %s has the value %s %s at %s.\n"
                                                        "Your band is from %lld to %lld %s.\n\n"
                                                        "-- \nRealtimeplot Server\n")),
                           first, last, label, v, unit, when, (long long) min, (long long) max, unit);
}

void
rtp_threshold_monitor_handle_value (RtpThresholdMonitor *self, const char *pv, double value)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GdaDataModel) subs = NULL;
  gint64 now = g_get_real_time ();
  gboolean queued = FALSE;

  if (!self->alerting || !isfinite (value))
    return;
  subs = rtp_database_select (self->db, &error,
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
          rtp_database_exec (self->db, &error,
                             "INSERT INTO alert_episodes (id, user_id, pv_string, opened_us, closed_us, last_notified_us, "
                             "breach_value, threshold_min, threshold_max) VALUES (:id, :u, :pv, :now, NULL, :now, :v, :min, :max)",
                             "id", RTP_DB_STR, id, "u", RTP_DB_STR, user, "pv", RTP_DB_STR, pv, "now", RTP_DB_INT, now,
                             "v", RTP_DB_STR, v, "min", RTP_DB_INT, min, "max", RTP_DB_INT, max, NULL);
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
          rtp_database_exec (self->db, &error, "UPDATE alert_episodes SET last_notified_us = :now WHERE id = :id", "now",
                             RTP_DB_INT, now, "id", RTP_DB_STR, rtp_db_str (open, 0, 0), NULL);
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

static void
poll_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  PollCtx *c = user_data;
  RtpThresholdMonitor *self = c->self;
  g_autoptr (GError) error = NULL;
  gboolean found = FALSE;

  self->polls_outstanding--;
  if (!rtp_archiver_client_fetch_finish (RTP_ARCHIVER_CLIENT (source), result, &found, &error))
    g_debug ("monitor: %s: %s", c->pv, error->message);
  else if (c->have)
    {
      gint64 t = c->secs * G_USEC_PER_SEC + c->nanos / 1000;
      gint64 *seen = g_hash_table_lookup (self->last_seen, c->pv);
      char *end = NULL;
      double value = g_ascii_strtod (c->value, &end);

      /* each archived sample is shown and judged once; only numbers are judged */
      if (seen == NULL || t > *seen)
        {
          g_hash_table_replace (self->last_seen, g_strdup (c->pv), g_memdup2 (&t, sizeof t));
          emit_value (self, c->pv, t, c->value);
          if (end != c->value && *end == '\0')
            rtp_threshold_monitor_handle_value (self, c->pv, value);
        }
    }
  poll_ctx_free (c);
}

static gboolean
poll_tick (gpointer user_data)
{
  RtpThresholdMonitor *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GdaDataModel) pvs = NULL;
  gint64 now = g_get_real_time ();

  g_autoptr (GHashTable) todo = g_hash_table_new (g_str_hash, g_str_equal);
  GHashTableIter iter;
  gpointer pv;

  if (self->polls_outstanding > 0)
    return G_SOURCE_CONTINUE;
  /* subscribed PVs on the one instance that alerts; PVs with live viewers on every instance */
  if (self->alerting && rtp_database_try_leadership (self->db))
    {
      pvs = rtp_database_select (self->db, &error, "SELECT DISTINCT pv_string FROM subscriptions ORDER BY pv_string", NULL);
      for (guint i = 0; pvs != NULL && i < rtp_db_rows (pvs); i++)
        g_hash_table_add (todo, (gpointer) rtp_db_str (pvs, i, 0));
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

static void
on_value_message (RtpMqttPublisher *mqtt, const char *topic, GBytes *payload, gpointer user_data)
{
  RtpThresholdMonitor *self = user_data;
  gsize n = strlen (self->value_prefix);
  g_autofree char *text = NULL;
  g_autofree char *pv = NULL;
  char *end = NULL;
  double value;
  gsize len = 0;
  const char *data = g_bytes_get_data (payload, &len);

  if (strncmp (topic, self->value_prefix, n) != 0 || topic[n] != '/')
    return;
  pv = g_strdelimit (g_strdup (topic + n + 1), "/", ':');
  {
    /* only PVs of the database: the latest-value table must not grow with every topic anyone publishes */
    g_autoptr (RtpProcessVariable) known = rtp_experiment_store_get_pv (self->experiments, pv, NULL);
    if (known == NULL)
      {
        g_debug ("monitor: %s: no such process variable", topic);
        return;
      }
  }
  text = g_strstrip (g_strndup (data, len));
  value = g_ascii_strtod (text, &end);
  if (end == text || *end != '\0' || !isfinite (value))
    {
      g_debug ("monitor: %s: not a finite number", topic);
      return;
    }
  {
    g_autofree char *json = format_value (value);
    emit_value (self, pv, g_get_real_time (), json);
  }
  if (rtp_database_try_leadership (self->db))
    rtp_threshold_monitor_handle_value (self, pv, value);
}

/* ---- mail queue ---------------------------------------------------------------- */

typedef struct {
  RtpThresholdMonitor *self; /* (owned) */
  char *id;
  gint64 attempts;
} MailJob;

static void
mail_sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  MailJob *job = user_data;
  RtpThresholdMonitor *self = job->self;
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) db_error = NULL;
  gint64 now = g_get_real_time ();

  if (rtp_mailer_send_finish (result, &error))
    rtp_database_exec (self->db, &db_error, "UPDATE alert_mails SET sent_us = :now, attempts = attempts + 1 WHERE id = :id",
                       "now", RTP_DB_INT, now, "id", RTP_DB_STR, job->id, NULL);
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
send_next_mail (RtpThresholdMonitor *self)
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
  RtpThresholdMonitor *self = user_data;
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

void
rtp_threshold_monitor_start_alerting (RtpThresholdMonitor *self, const RtpAlertSettings *s)
{
  if (s->mail.url == NULL || s->mail.url[0] == '\0' || s->mail.from == NULL)
    g_message ("RTP_SMTP_URL or RTP_SMTP_FROM is not set: threshold alerting is off (live values still flow)");
  else
    self->alerting = TRUE;
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
  g_clear_pointer (&self->tz, g_time_zone_unref);
  self->tz = g_time_zone_ref (s->time_zone);
  if (s->archiver != NULL && rtp_archiver_client_is_configured (s->archiver))
    {
      self->archiver = g_object_ref (s->archiver);
      self->poll_id = g_timeout_add ((guint) (s->interval_s * 1000), poll_tick, self);
      g_message ("threshold alerting: polling the archiver every %.1f s", s->interval_s);
    }
  if (s->value_topic_prefix != NULL && s->value_topic_prefix[0] != '\0')
    {
      g_autofree char *filter = g_strconcat (s->value_topic_prefix, "/#", NULL);
      self->value_prefix = g_strdup (s->value_topic_prefix);
      rtp_mqtt_publisher_subscribe (self->mqtt, filter);
      self->message_id = g_signal_connect (self->mqtt, "message", G_CALLBACK (on_value_message), self);
      g_message ("threshold alerting: reading values from MQTT topics %s", filter);
    }
  if (self->alerting)
    self->mail_id = g_timeout_add_seconds (1, mail_tick, self);
}

JsonArray *
rtp_threshold_monitor_list_alerts (RtpThresholdMonitor *self, const char *user_id, GError **error)
{
  g_autoptr (GdaDataModel) eps = rtp_database_select (
      self->db, error,
      "SELECT id, user_id, pv_string, opened_us, closed_us, breach_value, threshold_min, threshold_max "
      "FROM alert_episodes WHERE COALESCE(:u, user_id) = user_id ORDER BY opened_us DESC LIMIT 1000",
      "u", RTP_DB_STR, user_id, NULL);
  JsonArray *out;

  if (eps == NULL)
    return NULL;
  out = json_array_new ();
  for (guint i = 0; i < rtp_db_rows (eps); i++)
    {
      JsonObject *o = json_object_new ();
      JsonArray *mails = json_array_new ();
      gint64 closed = 0;
      g_autoptr (GdaDataModel) m = rtp_database_select (
          self->db, NULL,
          "SELECT recipient, subject, sent_us, attempts, last_error FROM alert_mails WHERE episode_id = :e ORDER BY created_us",
          "e", RTP_DB_STR, rtp_db_str (eps, i, 0), NULL);
      g_autoptr (GDateTime) opened = g_date_time_new_from_unix_utc (rtp_db_int0 (eps, i, 3) / G_USEC_PER_SEC);
      g_autofree char *opened_text = g_date_time_format_iso8601 (opened);

      json_object_set_string_member (o, "id", rtp_db_str (eps, i, 0));
      json_object_set_string_member (o, "user_id", rtp_db_str (eps, i, 1));
      json_object_set_string_member (o, "pv_string", rtp_db_str (eps, i, 2));
      json_object_set_string_member (o, "opened", opened_text);
      if (rtp_db_int (eps, i, 4, &closed))
        {
          g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (closed / G_USEC_PER_SEC);
          g_autofree char *text = g_date_time_format_iso8601 (t);
          json_object_set_string_member (o, "closed", text);
        }
      else
        json_object_set_null_member (o, "closed");
      json_object_set_string_member (o, "breach_value", rtp_db_str (eps, i, 5));
      json_object_set_int_member (o, "threshold_min", rtp_db_int0 (eps, i, 6));
      json_object_set_int_member (o, "threshold_max", rtp_db_int0 (eps, i, 7));
      for (guint j = 0; m != NULL && j < rtp_db_rows (m); j++)
        {
          JsonObject *mail = json_object_new ();
          gint64 sent = 0;
          json_object_set_string_member (mail, "recipient", rtp_db_str (m, j, 0));
          json_object_set_string_member (mail, "subject", rtp_db_str (m, j, 1));
          json_object_set_boolean_member (mail, "sent", rtp_db_int (m, j, 2, &sent));
          json_object_set_int_member (mail, "attempts", rtp_db_int0 (m, j, 3));
          if (rtp_db_str (m, j, 4) != NULL)
            json_object_set_string_member (mail, "last_error", rtp_db_str (m, j, 4));
          json_array_add_object_element (mails, mail);
        }
      json_object_set_array_member (o, "mails", mails);
      json_array_add_object_element (out, o);
    }
  return out;
}
