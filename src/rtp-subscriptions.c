/* rtp-subscriptions.c: threshold subscriptions and their announcements on MQTT
 *
 * A subscription made or removed through the API is written only after its announcement
 * reached the broker; no transaction is held open while waiting. Subscriptions removed by
 * a cascade (a user, PV or experiment deleted, a PV renamed) are announced through the
 * outbox table: the rows are written in the same transaction as the delete and sent once
 * the broker acknowledges them — nothing is dropped while the broker is away. */
#define G_LOG_DOMAIN "RtpSubscriptions"

#include "rtp-subscriptions.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-json.h"

#include <string.h>

#define OUTBOX_RETRY_S 5

struct _RtpSubscriptions {
  GObject parent_instance;

  RtpDatabase *db;                 /* (owned) */
  RtpUserManager *users;           /* (owned) */
  RtpExperimentStore *experiments; /* (owned) */
  RtpMqttPublisher *mqtt;          /* (owned) */
  char *topic;                     /* (owned) */
  char *unit;                      /* (owned) */
  guint flush_idle_id;
  guint flush_timer_id;
  gulong user_deleting_id;
  gulong pv_deleting_id;
  gulong pv_renaming_id;
  gulong user_unassigning_id;
  gulong connected_id;
  gboolean flushing;
};

G_DEFINE_TYPE (RtpSubscriptions, rtp_subscriptions, G_TYPE_OBJECT)

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
announcement (RtpSubscriptions *self, const char *email, const char *pv, gint64 min, gint64 max, gboolean active,
              const char *first_name, const char *last_name)
{
  GString *out = g_string_new ("{\"email\":");
  g_autofree char *message = g_strdup_printf (
    "Hello %s %s.\nPlease check the %s process variable! A threshold value has been breached.", first_name, last_name,
    pv);

  /* the alert service's format, as the original service wrote it */
  rtp_json_append_string (out, email);
  g_string_append (out, ",\"pv\":");
  rtp_json_append_string (out, pv);
  g_string_append_printf (out,
                          ",\"min_threshold\":%" G_GINT64_FORMAT ",\"max_threshold\":%" G_GINT64_FORMAT
                          ",\"threshold_unit\":",
                          min, max);
  rtp_json_append_string (out, self->unit);
  g_string_append_printf (out, ",\"active\":%d,\"message\":", active ? 1 : 0);
  rtp_json_append_string (out, message);
  g_string_append_c (out, '}');
  return g_string_free (out, FALSE);
}

static gboolean
queue_to (RtpSubscriptions *self, const char *topic, const char *payload, GError **error)
{
  g_autofree char *id = g_uuid_string_random ();

  return rtp_database_exec (self->db, error,
                            "INSERT INTO mqtt_outbox (id, created_us, topic, payload) VALUES (:id, :t, :topic, :p)",
                            "id", RTP_DB_STR, id, "t", RTP_DB_INT, g_get_real_time (), "topic", RTP_DB_STR, topic, "p",
                            RTP_DB_STR, payload, NULL) >= 0;
}

static gboolean
queue (RtpSubscriptions *self, const char *payload, GError **error)
{
  return queue_to (self, self->topic, payload, error);
}

static gboolean
flush_idle (gpointer user_data)
{
  RtpSubscriptions *self = user_data;
  self->flush_idle_id = 0;
  rtp_subscriptions_flush_outbox (self);
  return G_SOURCE_REMOVE;
}

static void
schedule_flush (RtpSubscriptions *self)
{
  /* after the current transaction has committed: the main loop runs it next */
  if (self->flush_idle_id == 0)
    self->flush_idle_id = g_idle_add (flush_idle, self);
}

/* The subscriptions of one user to the PVs of one experiment (parameters :v and :e). */
#define OF_USER_IN_EXPERIMENT                                                                                          \
  "user_id = :v AND pv_string IN (SELECT pv_string FROM process_variables WHERE experiment_short_id = :e)"

/* Queues removal (and, for a rename, re-creation) announcements of the subscriptions matching
 * @where (on the subscriptions' columns, with :v = @value and :e = @extra). Runs inside the
 * caller's transaction. */
static gboolean
queue_cascade (RtpSubscriptions *self, const char *where, const char *value, const char *extra, const char *renamed_to,
               GError **error)
{
  g_autofree char *sql = g_strdup_printf ("SELECT s.email, s.pv_string, s.threshold_min, s.threshold_max, u.first_name, "
                                          "u.last_name FROM subscriptions s JOIN users u ON u.user_id = s.user_id "
                                          "WHERE s.%s ORDER BY s.user_id, s.pv_string",
                                          where);
  g_autoptr (GdaDataModel)
    m = rtp_database_select (self->db, error, sql, "v", RTP_DB_STR, value, "e", RTP_DB_STR, extra, NULL);

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
  RtpSubscriptions *self = user_data;

  if (queue_cascade (self, OF_USER_IN_EXPERIMENT, user_id, short_id, NULL, error))
    rtp_database_exec (self->db, error, "DELETE FROM subscriptions WHERE " OF_USER_IN_EXPERIMENT, "v", RTP_DB_STR,
                       user_id, "e", RTP_DB_STR, short_id, NULL);
}

/* ---- outbox ---------------------------------------------------------------- */

typedef struct {
  RtpSubscriptions *self;
  char *id;
} OutboxItem;

static void flush_next (RtpSubscriptions *self);

static void
outbox_sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  OutboxItem *item = user_data;
  RtpSubscriptions *self = item->self;
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
flush_next (RtpSubscriptions *self)
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
  m = rtp_database_select (self->db, &error,
                           "SELECT id, topic, payload FROM mqtt_outbox ORDER BY created_us, id LIMIT 1", NULL);
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
rtp_subscriptions_flush_outbox (RtpSubscriptions *self)
{
  if (self->flushing || !rtp_mqtt_publisher_get_connected (self->mqtt))
    return;
  /* of several instances on one database, one sends the outbox */
  if (!rtp_database_try_leadership (self->db))
    return;
  self->flushing = TRUE;
  flush_next (self);
}

gboolean
rtp_subscriptions_queue_message (RtpSubscriptions *self, const char *topic, const char *payload, GError **error)
{
  g_return_val_if_fail (RTP_IS_SUBSCRIPTIONS (self), FALSE);
  g_return_val_if_fail (topic != NULL && payload != NULL, FALSE);
  if (!queue_to (self, topic, payload, error))
    return FALSE;
  schedule_flush (self);
  return TRUE;
}

guint
rtp_subscriptions_outbox_length (RtpSubscriptions *self)
{
  gint64 n = rtp_database_select_int (self->db, NULL, "SELECT COUNT(*) FROM mqtt_outbox", NULL);
  return n > 0 ? (guint) n : 0;
}

static gboolean
flush_timer (gpointer user_data)
{
  rtp_subscriptions_flush_outbox (user_data);
  return G_SOURCE_CONTINUE;
}

static void
on_connected_changed (GObject *mqtt, GParamSpec *pspec, gpointer user_data)
{
  RtpSubscriptions *self = user_data;
  if (rtp_mqtt_publisher_get_connected (self->mqtt))
    schedule_flush (self);
}

/* ---- object ---------------------------------------------------------------- */

static void
rtp_subscriptions_dispose (GObject *object)
{
  RtpSubscriptions *self = RTP_SUBSCRIPTIONS (object);

  g_clear_handle_id (&self->flush_idle_id, g_source_remove);
  g_clear_handle_id (&self->flush_timer_id, g_source_remove);
  if (self->users != NULL)
    g_clear_signal_handler (&self->user_deleting_id, self->users);
  if (self->experiments != NULL)
    {
      g_clear_signal_handler (&self->pv_deleting_id, self->experiments);
      g_clear_signal_handler (&self->pv_renaming_id, self->experiments);
      g_clear_signal_handler (&self->user_unassigning_id, self->experiments);
    }
  if (self->mqtt != NULL)
    g_clear_signal_handler (&self->connected_id, self->mqtt);
  g_clear_object (&self->db);
  g_clear_object (&self->users);
  g_clear_object (&self->experiments);
  g_clear_object (&self->mqtt);
  G_OBJECT_CLASS (rtp_subscriptions_parent_class)->dispose (object);
}

static void
rtp_subscriptions_finalize (GObject *object)
{
  RtpSubscriptions *self = RTP_SUBSCRIPTIONS (object);
  g_free (self->topic);
  g_free (self->unit);
  G_OBJECT_CLASS (rtp_subscriptions_parent_class)->finalize (object);
}

static void
rtp_subscriptions_class_init (RtpSubscriptionsClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = rtp_subscriptions_dispose;
  G_OBJECT_CLASS (klass)->finalize = rtp_subscriptions_finalize;
}

static void
rtp_subscriptions_init (RtpSubscriptions *self)
{
}

RtpSubscriptions *
rtp_subscriptions_new (RtpDatabase *db, RtpUserManager *users, RtpExperimentStore *experiments, RtpMqttPublisher *mqtt,
                       const RtpSubscriptionSettings *settings)
{
  RtpSubscriptions *self;

  g_return_val_if_fail (RTP_IS_DATABASE (db), NULL);
  g_return_val_if_fail (RTP_IS_USER_MANAGER (users), NULL);
  g_return_val_if_fail (RTP_IS_EXPERIMENT_STORE (experiments), NULL);
  g_return_val_if_fail (RTP_IS_MQTT_PUBLISHER (mqtt), NULL);
  g_return_val_if_fail (settings != NULL, NULL);

  self = g_object_new (RTP_TYPE_SUBSCRIPTIONS, NULL);
  self->db = g_object_ref (db);
  self->users = g_object_ref (users);
  self->experiments = g_object_ref (experiments);
  self->mqtt = g_object_ref (mqtt);
  self->topic = g_strdup_printf ("/%s/%s", settings->channel_prefix, settings->email_channel);
  self->unit = g_strdup (settings->threshold_unit != NULL ? settings->threshold_unit : "");
  self->user_deleting_id = g_signal_connect (users, "user-deleting", G_CALLBACK (on_user_deleting), self);
  self->pv_deleting_id = g_signal_connect (experiments, "pv-deleting", G_CALLBACK (on_pv_deleting), self);
  self->pv_renaming_id = g_signal_connect (experiments, "pv-renaming", G_CALLBACK (on_pv_renaming), self);
  self->user_unassigning_id = g_signal_connect (experiments, "user-unassigning", G_CALLBACK (on_user_unassigning),
                                                self);
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
  sub->alarm.has_warning_min = rtp_db_int (m, row, 5, &sub->alarm.warning_min);
  sub->alarm.has_warning_max = rtp_db_int (m, row, 6, &sub->alarm.warning_max);
  sub->alarm.delay_s = rtp_db_int0 (m, row, 7);
  sub->alarm.latch = rtp_db_int0 (m, row, 8) != 0;
  sub->alarm.notify_clear = rtp_db_int0 (m, row, 9) != 0;
  return sub;
}

static char *
subscription_id (const char *user_id, const char *pv)
{
  return g_strdup_printf ("user_id=%s,pv_string=%s", user_id, pv);
}

#define SUBSCRIPTION_COLUMNS                                                                                           \
  "user_id, pv_string, email, threshold_min, threshold_max, warning_min, warning_max, delay_s, latch, notify_clear"

/* Applies @c to @alarm and checks the result against the band [@min, @max]; FALSE with a 400 naming
 * the key. */
static gboolean
apply_alarm_changes (const RtpAlarmChanges *c, gint64 min, gint64 max, RtpSubscriptionAlarm *alarm, GError **error)
{
  if (c->warning_min_state == RTP_FIELD_WRONG_TYPE || c->warning_max_state == RTP_FIELD_WRONG_TYPE)
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("%s: Value must be an integer."),
                   c->warning_min_state == RTP_FIELD_WRONG_TYPE ? "warning_min" : "warning_max");
      return FALSE;
    }
  if (c->delay_state == RTP_FIELD_WRONG_TYPE || c->delay_state == RTP_FIELD_NULL ||
      (c->delay_state == RTP_FIELD_SET && (c->delay_s < 0 || c->delay_s > RTP_ALARM_MAX_DELAY_S)))
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                   _ ("delay_s: Value must be a whole number of seconds from 0 to %d."), RTP_ALARM_MAX_DELAY_S);
      return FALSE;
    }
  if (c->latch_state == RTP_FIELD_WRONG_TYPE || c->latch_state == RTP_FIELD_NULL ||
      c->notify_clear_state == RTP_FIELD_WRONG_TYPE || c->notify_clear_state == RTP_FIELD_NULL)
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("%s: Value must be either true or false."),
                   c->latch_state == RTP_FIELD_WRONG_TYPE || c->latch_state == RTP_FIELD_NULL ? "latch"
                                                                                              : "notify_clear");
      return FALSE;
    }
  if (c->warning_min_state != RTP_FIELD_ABSENT)
    {
      alarm->has_warning_min = c->warning_min_state == RTP_FIELD_SET;
      alarm->warning_min = c->warning_min;
    }
  if (c->warning_max_state != RTP_FIELD_ABSENT)
    {
      alarm->has_warning_max = c->warning_max_state == RTP_FIELD_SET;
      alarm->warning_max = c->warning_max;
    }
  if (c->delay_state == RTP_FIELD_SET)
    alarm->delay_s = c->delay_s;
  if (c->latch_state == RTP_FIELD_SET)
    alarm->latch = c->latch;
  if (c->notify_clear_state == RTP_FIELD_SET)
    alarm->notify_clear = c->notify_clear;
  if ((alarm->has_warning_min && (alarm->warning_min < min || alarm->warning_min > max)) ||
      (alarm->has_warning_max && (alarm->warning_max < min || alarm->warning_max > max)))
    {
      gboolean low = alarm->has_warning_min && (alarm->warning_min < min || alarm->warning_min > max);
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                   _ ("%s: The warning band must lie inside the threshold band [%lld, %lld]."),
                   low ? "warning_min" : "warning_max", (long long) min, (long long) max);
      return FALSE;
    }
  if (alarm->has_warning_min && alarm->has_warning_max && alarm->warning_min > alarm->warning_max)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                           _ ("warning_min: warning_min must not be greater than warning_max."));
      return FALSE;
    }
  return TRUE;
}

GPtrArray *
rtp_subscriptions_list (RtpSubscriptions *self, const char *user_id, const char *pv_string, GError **error)
{
  g_autoptr (GdaDataModel)
    m = rtp_database_select (self->db, error,
                             "SELECT " SUBSCRIPTION_COLUMNS " FROM subscriptions "
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
get_subscription (RtpSubscriptions *self, const char *user_id, const char *pv, RtpSubscription **out, GError **error)
{
  g_autoptr (GPtrArray) list = rtp_subscriptions_list (self, user_id, pv, error);

  if (list == NULL)
    return FALSE;
  *out = list->len > 0 ? g_ptr_array_steal_index (list, 0) : NULL;
  return TRUE;
}

RtpSubscription *
rtp_subscriptions_update_alarm (RtpSubscriptions *self, const RtpUser *caller, const char *user_id,
                                const char *pv_string, const RtpAlarmChanges *changes, GError **error)
{
  g_autoptr (RtpTransaction) tx = NULL;
  g_autoptr (RtpSubscription) sub = NULL;
  RtpSubscriptionAlarm alarm;

  g_return_val_if_fail (RTP_IS_SUBSCRIPTIONS (self), NULL);
  g_return_val_if_fail (caller != NULL && pv_string != NULL && changes != NULL, NULL);
  if (user_id == NULL)
    user_id = caller->user_id;
  if (!g_str_equal (user_id, caller->user_id) && !rtp_user_is_admin (caller))
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_FORBIDDEN,
                           _ ("Only administrators can change the subscriptions of other users."));
      return NULL;
    }
  if ((tx = rtp_database_begin_transaction (self->db, error)) == NULL ||
      !get_subscription (self, user_id, pv_string, &sub, error))
    return NULL;
  if (sub == NULL)
    {
      g_autofree char *id = subscription_id (user_id, pv_string);
      g_propagate_error (error, rtp_error_new_not_found (_ ("subscription"), id));
      return NULL;
    }
  alarm = sub->alarm;
  if (!apply_alarm_changes (changes, sub->threshold_min, sub->threshold_max, &alarm, error) ||
      rtp_database_exec (self->db, error,
                         "UPDATE subscriptions SET warning_min = :wmin, warning_max = :wmax, delay_s = :delay, "
                         "latch = :latch, notify_clear = :clear WHERE user_id = :u AND pv_string = :pv",
                         "wmin", RTP_DB_INT_NULL, alarm.has_warning_min ? &alarm.warning_min : NULL, "wmax",
                         RTP_DB_INT_NULL, alarm.has_warning_max ? &alarm.warning_max : NULL, "delay", RTP_DB_INT,
                         alarm.delay_s, "latch", RTP_DB_INT, (gint64) alarm.latch, "clear", RTP_DB_INT,
                         (gint64) alarm.notify_clear, "u", RTP_DB_STR, user_id, "pv", RTP_DB_STR, pv_string,
                         NULL) < 0 ||
      !rtp_transaction_commit (tx, error))
    return NULL;
  g_message ("alarm settings of the subscription (user_id=%s,pv_string=%s) changed by %s", user_id, pv_string,
             caller->user_id);
  sub->alarm = alarm;
  return g_steal_pointer (&sub);
}

GStrv
rtp_subscriptions_list_pvs (RtpSubscriptions *self, GError **error)
{
  g_autoptr (GdaDataModel) m = NULL;
  g_autoptr (GStrvBuilder) pvs = g_strv_builder_new ();

  g_return_val_if_fail (RTP_IS_SUBSCRIPTIONS (self), NULL);
  m = rtp_database_select (self->db, error, "SELECT pv_string FROM subscriptions GROUP BY pv_string ORDER BY pv_string",
                           NULL);
  if (m == NULL)
    return NULL;
  for (guint i = 0; i < rtp_db_rows (m); i++)
    g_strv_builder_add (pvs, rtp_db_str (m, i, 0));
  return g_strv_builder_end (pvs);
}

/* ---- subscribe / unsubscribe ---------------------------------------------------------------- */

typedef struct {
  RtpSubscription *sub;
  char *payload_on;  /* announcement of the subscription */
  char *payload_off; /* its reverse */
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

/* Access and existence, in the contract's order: PV (404), assignment (403). */
static RtpProcessVariable *
check_access (RtpSubscriptions *self, const RtpUser *caller, const char *pv_string, GError **error)
{
  g_autoptr (RtpProcessVariable) pv = rtp_experiment_store_get_pv (self->experiments, pv_string, error);

  if (pv == NULL ||
      !rtp_experiment_store_check_access (self->experiments, caller, pv->experiment_short_id, RTP_ACCESS_WATCH, error))
    return NULL;
  return g_steal_pointer (&pv);
}

static void
change_written_or_reverted (RtpSubscriptions *self, GTask *task, ChangeData *d, GError *write_error)
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
  RtpSubscriptions *self = g_task_get_source_object (task);
  ChangeData *d = g_task_get_task_data (task);
  GError *error = NULL;

  if (!rtp_mqtt_publisher_publish_finish (RTP_MQTT_PUBLISHER (source), result, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  if (d->subscribing)
    rtp_database_exec (self->db, &error,
                       "INSERT INTO subscriptions (user_id, pv_string, email, threshold_min, threshold_max, "
                       "warning_min, warning_max, delay_s, latch, notify_clear) "
                       "VALUES (:u, :pv, :e, :min, :max, :wmin, :wmax, :delay, :latch, :clear)",
                       "u", RTP_DB_STR, d->sub->user_id, "pv", RTP_DB_STR, d->sub->pv_string, "e", RTP_DB_STR,
                       d->sub->email, "min", RTP_DB_INT, d->sub->threshold_min, "max", RTP_DB_INT,
                       d->sub->threshold_max, "wmin", RTP_DB_INT_NULL,
                       d->sub->alarm.has_warning_min ? &d->sub->alarm.warning_min : NULL, "wmax", RTP_DB_INT_NULL,
                       d->sub->alarm.has_warning_max ? &d->sub->alarm.warning_max : NULL, "delay", RTP_DB_INT,
                       d->sub->alarm.delay_s, "latch", RTP_DB_INT, (gint64) d->sub->alarm.latch, "clear", RTP_DB_INT,
                       (gint64) d->sub->alarm.notify_clear, NULL);
  else
    rtp_database_exec (self->db, &error, "DELETE FROM subscriptions WHERE user_id = :u AND pv_string = :pv", "u",
                       RTP_DB_STR, d->sub->user_id, "pv", RTP_DB_STR, d->sub->pv_string, NULL);
  if (error != NULL && g_error_matches (error, RTP_ERROR, RTP_ERROR_EXISTS))
    {
      /* another request subscribed meanwhile */
      g_autofree char *id = g_strdup_printf ("user_id=%s,pv_string=%s", d->sub->user_id, d->sub->pv_string);
      g_clear_error (&error);
      error = rtp_error_new_exists (_ ("subscription"), id);
    }
  change_written_or_reverted (self, task, d, error);
}

void
rtp_subscriptions_subscribe_async (RtpSubscriptions *self, const RtpUser *caller, const char *pv_string,
                                   const RtpSubscriptionRequest *request, GCancellable *cancellable,
                                   GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr (RtpProcessVariable) pv = NULL;
  g_autoptr (RtpSubscription) existing = NULL;
  g_autoptr (GStrvBuilder) missing = g_strv_builder_new ();
  GError *error = NULL;
  const char *email = NULL;
  gint64 min = request->threshold_min, max = request->threshold_max;
  gboolean have_min = request->threshold_min_state == RTP_FIELD_SET;
  gboolean have_max = request->threshold_max_state == RTP_FIELD_SET;
  RtpSubscriptionAlarm alarm = { 0 };
  ChangeData *d;

  g_return_if_fail (RTP_IS_SUBSCRIPTIONS (self));
  g_return_if_fail (caller != NULL && pv_string != NULL && request != NULL);

  g_task_set_source_tag (task, rtp_subscriptions_subscribe_async);
  pv = check_access (self, caller, pv_string, &error);
  if (pv == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  if (request->email_state == RTP_FIELD_WRONG_TYPE)
    {
      g_task_return_error (task, rtp_error_new_wrong_type ());
      return;
    }
  if (request->email_state == RTP_FIELD_SET)
    email = request->email;
  if (email == NULL || email[0] == '\0')
    email = caller->email;
  if (request->threshold_min_state == RTP_FIELD_WRONG_TYPE || request->threshold_max_state == RTP_FIELD_WRONG_TYPE)
    {
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_INVALID, "%s",
                               _ ("threshold_min and threshold_max must be integers."));
      return;
    }
  if (!have_min && pv->has_threshold_min)
    {
      min = pv->threshold_min; /* 0 is a value */
      have_min = TRUE;
    }
  if (!have_max && pv->has_threshold_max)
    {
      max = pv->threshold_max;
      have_max = TRUE;
    }
  if (email == NULL || email[0] == '\0')
    g_strv_builder_add (missing, _ ("email: Missing email."));
  if (!have_min)
    g_strv_builder_add (missing, _ ("threshold_min: Missing threshold_min."));
  if (!have_max)
    g_strv_builder_add (missing, _ ("threshold_max: Missing threshold_max."));
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
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_INVALID, _ ("email: %s is not a valid email address"), email);
      return;
    }
  if (!apply_alarm_changes (&request->alarm, min, max, &alarm, &error))
    {
      g_task_return_error (task, error);
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
      g_task_return_error (task, rtp_error_new_exists (_ ("subscription"), id));
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
  d->sub->alarm = alarm;
  d->payload_on = announcement (self, email, pv_string, min, max, TRUE, caller->first_name, caller->last_name);
  d->payload_off = announcement (self, email, pv_string, min, max, FALSE, caller->first_name, caller->last_name);
  g_task_set_task_data (task, d, (GDestroyNotify) change_data_free);
  rtp_mqtt_publisher_publish_async (self->mqtt, self->topic, d->payload_on, strlen (d->payload_on), 1, cancellable,
                                    subscribe_announced, g_object_ref (task));
}

RtpSubscription *
rtp_subscriptions_subscribe_finish (RtpSubscriptions *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

void
rtp_subscriptions_unsubscribe_async (RtpSubscriptions *self, const RtpUser *caller, const char *pv_string,
                                     GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  RtpSubscription *existing = NULL;
  GError *error = NULL;
  ChangeData *d;

  g_task_set_source_tag (task, rtp_subscriptions_unsubscribe_async);
  if (!get_subscription (self, caller->user_id, pv_string, &existing, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  if (existing == NULL)
    {
      g_autofree char *id = subscription_id (caller->user_id, pv_string);
      g_task_return_error (task, rtp_error_new_not_found (_ ("subscription"), id));
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
rtp_subscriptions_unsubscribe_finish (RtpSubscriptions *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}
