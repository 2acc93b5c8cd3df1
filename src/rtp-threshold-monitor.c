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
#include "rtp-i18n.h"

#include <errno.h>
#include <string.h>

G_DEFINE_QUARK (rtp-missing-fields-error-quark, rtp_missing_fields_error)

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
  gulong handlers[4];
};

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

/* Queues removal (and, for a rename, re-creation) announcements of the subscriptions
 * matching @column = @value. Runs inside the caller's transaction. */
static gboolean
queue_cascade (RtpThresholdMonitor *self, const char *column, const char *value, const char *renamed_to, GError **error)
{
  g_autofree char *sql = g_strdup_printf ("SELECT s.email, s.pv_string, s.threshold_min, s.threshold_max, u.first_name, "
                                          "u.last_name FROM subscriptions s JOIN users u ON u.user_id = s.user_id "
                                          "WHERE s.%s = :v ORDER BY s.user_id, s.pv_string",
                                          column);
  g_autoptr (GdaDataModel) m = rtp_database_select (self->db, error, sql, "v", RTP_DB_STR, value, NULL);

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
      g_message ("queued announcements for %u subscriptions of %s %s", rtp_db_rows (m), column, value);
      schedule_flush (self);
    }
  return TRUE;
}

static void
on_user_deleting (RtpUserManager *users, const char *user_id, gpointer error, gpointer user_data)
{
  queue_cascade (user_data, "user_id", user_id, NULL, error);
}

static void
on_pv_deleting (RtpExperimentStore *store, const char *pv, gpointer error, gpointer user_data)
{
  queue_cascade (user_data, "pv_string", pv, NULL, error);
}

static void
on_pv_renaming (RtpExperimentStore *store, const char *from, const char *to, gpointer error, gpointer user_data)
{
  queue_cascade (user_data, "pv_string", from, to, error);
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
  g_autoptr (GdaDataModel) m = rtp_database_select (self->db, NULL, "SELECT COUNT(*) FROM mqtt_outbox", NULL);
  return m != NULL ? (guint) rtp_db_int0 (m, 0, 0) : 0;
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
  if (self->users != NULL)
    g_clear_signal_handler (&self->handlers[0], self->users);
  if (self->experiments != NULL)
    {
      g_clear_signal_handler (&self->handlers[1], self->experiments);
      g_clear_signal_handler (&self->handlers[2], self->experiments);
    }
  if (self->mqtt != NULL)
    g_clear_signal_handler (&self->handlers[3], self->mqtt);
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
  G_OBJECT_CLASS (rtp_threshold_monitor_parent_class)->finalize (object);
}

static void
rtp_threshold_monitor_class_init (RtpThresholdMonitorClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = rtp_threshold_monitor_dispose;
  G_OBJECT_CLASS (klass)->finalize = rtp_threshold_monitor_finalize;
}

static void
rtp_threshold_monitor_init (RtpThresholdMonitor *self)
{
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
  self->handlers[0] = g_signal_connect (users, "user-deleting", G_CALLBACK (on_user_deleting), self);
  self->handlers[1] = g_signal_connect (experiments, "pv-deleting", G_CALLBACK (on_pv_deleting), self);
  self->handlers[2] = g_signal_connect (experiments, "pv-renaming", G_CALLBACK (on_pv_renaming), self);
  self->handlers[3] = g_signal_connect (mqtt, "notify::connected", G_CALLBACK (on_connected_changed), self);
  self->flush_timer_id = g_timeout_add_seconds (OUTBOX_RETRY_S, flush_timer, self);
  return self;
}

const char *
rtp_threshold_monitor_get_topic (RtpThresholdMonitor *self)
{
  return self->topic;
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
  gboolean assigned = FALSE;

  if (pv == NULL)
    return NULL;
  if (!rtp_experiment_store_is_assigned (self->experiments, caller->user_id, pv->experiment_short_id, &assigned, error))
    return NULL;
  if (!assigned)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_FORBIDDEN,
                           _("Only users that are assigned to the experiment can access it."));
      return NULL;
    }
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
  g_autoptr (GString) missing = g_string_new (NULL);
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
    g_string_append_printf (missing, "%s\n", _("email: Missing email."));
  if (!have_min)
    g_string_append_printf (missing, "%s\n", _("threshold_min: Missing threshold_min."));
  if (!have_max)
    g_string_append_printf (missing, "%s\n", _("threshold_max: Missing threshold_max."));
  if (missing->len > 0)
    {
      g_string_truncate (missing, missing->len - 1);
      g_task_return_new_error (task, RTP_MISSING_FIELDS_ERROR, 0, "%s", missing->str);
      return;
    }
  if (!rtp_validate_text ("email", email, 100, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  if (!g_regex_match_simple ("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", email, 0, 0))
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
