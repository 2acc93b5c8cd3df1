/* rtp-mqtt-publisher.c: MQTT over paho.mqtt.c's asynchronous client
 *
 * paho calls back on its own threads. Those callbacks only copy what they were given and
 * hand it to the main context with rtp_context_post() (g_main_context_invoke_full() would run the
 * handler right there on paho's thread whenever the main loop is between two iterations); messages are queued instead, and
 * one dispatch hands a batch of them on (a value topic may bring tens of thousands a second: one
 * main-loop source each cost more than judging the value). No GObject is touched
 * from paho's threads. The object is reached through a small shared record whose pointer
 * to it is cleared (under a lock) when the object goes away, so late callbacks do nothing.
 *
 * paho's automatic reconnect only starts after a first successful connection, so failed
 * first connections are retried here, with back-off. */
#define G_LOG_DOMAIN "RtpMqtt"

#include "rtp-metrics.h"
#include "rtp-mqtt-publisher.h"
#include "rtp-marshal.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-post.h"

#include <MQTTAsync.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  gatomicrefcount ref_count;
  GMutex lock;
  RtpMqttPublisher *self; /* (nullable) cleared on dispose */
  GMainContext *context;  /* (owned) */
  GQueue messages;        /* Event of EV_MESSAGE, under @lock, oldest first */
  gboolean drain_pending; /* a dispatch of @messages is on its way */
  guint64 dropped;        /* messages not queued: the queue was full (under @lock) */
  /* set once before the first subscription, read on paho's thread: messages it settles are not queued */
  RtpMqttFilterFunc filter;
  gpointer filter_data;
  GDestroyNotify filter_destroy;
} Shared;

/* What the queue of received messages holds at most: past it, messages are dropped and counted
 * (the main loop is that far behind; memory stays bounded whatever the broker sends). */
#define MAX_QUEUED_MESSAGES 100000
/* Messages handed on per dispatch, and the time one dispatch may take: between two batches the
 * main loop answers requests. Most messages cost microseconds; one whose PV must be read from the
 * database first (after a band change, every subscribed PV's next value) costs a few hundred. */
#define MESSAGES_PER_DISPATCH 256
#define DISPATCH_BUDGET_US 4000
/* How long the first message into an empty queue waits for others before the main loop is woken:
 * values that trickle in one at a time (thousands of PVs each sending one a second) cost a wakeup
 * each otherwise, which on a machine with dear system calls is most of what handling one costs. A
 * backlog is handed on without waiting (drain_messages). */
#define DRAIN_COALESCE_MS 2

struct _RtpMqttPublisher {
  GObject parent_instance;

  Shared *shared;  /* (owned) */
  char *url;       /* (owned) (nullable) tcp://host:port */
  char *client_id; /* (owned) */
  char *username;  /* (owned) (nullable) */
  char *password;  /* (owned) (nullable) */
  double timeout_s;
  MQTTAsync client;
  gboolean connected;
  gboolean ever_connected;
  gboolean stopped;
  guint retry_id;
  guint retry_delay_s;
  guint next_op;
  GHashTable *pending;       /* (owned) op id → GTask */
  gint64 message_arrival_us; /* while "message" is emitted: when it arrived (monotonic) */
  GPtrArray *subscriptions;  /* (owned) topic filters */
};

enum { PROP_0, PROP_CONNECTED, N_PROPS };
static GParamSpec *props[N_PROPS];
enum { SIGNAL_MESSAGE, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_TYPE (RtpMqttPublisher, rtp_mqtt_publisher, G_TYPE_OBJECT)

static void event_free (gpointer data);

static Shared *
shared_ref (Shared *s)
{
  g_atomic_ref_count_inc (&s->ref_count);
  return s;
}

static void
shared_unref (Shared *s)
{
  if (!g_atomic_ref_count_dec (&s->ref_count))
    return;
  g_main_context_unref (s->context);
  g_queue_clear_full (&s->messages, event_free);
  if (s->filter_destroy != NULL)
    s->filter_destroy (s->filter_data);
  g_mutex_clear (&s->lock);
  g_free (s);
}

/* ---- marshalling home ---------------------------------------------------------------- */

typedef enum { EV_CONNECTED, EV_CONNECT_FAILED, EV_LOST, EV_ACK, EV_NACK, EV_MESSAGE } EventKind;

typedef struct {
  Shared *shared; /* (owned) */
  EventKind kind;
  guint op;
  char *text; /* (owned) cause, error, or topic */
  GBytes *payload;
  gint64 arrived_us;
} Event;

static void
event_free (gpointer data)
{
  Event *ev = data;
  if (ev->shared != NULL)
    shared_unref (ev->shared);
  g_free (ev->text);
  g_clear_pointer (&ev->payload, g_bytes_unref);
  g_free (ev);
}

static gboolean handle_event (gpointer data);

static gboolean drain_messages (gpointer data);

/* Called on paho's threads: copy, and send home. */
static void
post (Shared *shared, EventKind kind, guint op, const char *text, GBytes *payload)
{
  Event *ev = g_new0 (Event, 1);

  ev->kind = kind;
  ev->op = op;
  ev->text = g_strdup (text);
  ev->payload = payload;
  if (kind == EV_MESSAGE)
    {
      gboolean schedule = FALSE;

      ev->arrived_us = g_get_monotonic_time ();
      g_mutex_lock (&shared->lock);
      if (g_queue_get_length (&shared->messages) >= MAX_QUEUED_MESSAGES)
        {
          shared->dropped++;
          rtp_metrics_inc (RTP_METRIC_MQTT_DROPPED);
        }
      else
        {
          rtp_metrics_inc (RTP_METRIC_MQTT_RECEIVED);
          g_queue_push_tail (&shared->messages, g_steal_pointer (&ev));
          schedule = !shared->drain_pending;
          shared->drain_pending = TRUE;
        }
      g_mutex_unlock (&shared->lock);
      g_clear_pointer (&ev, event_free);
      if (schedule)
        rtp_context_post_after (shared->context, G_PRIORITY_DEFAULT, DRAIN_COALESCE_MS, drain_messages,
                                shared_ref (shared), (GDestroyNotify) shared_unref);
      return;
    }
  ev->shared = shared_ref (shared);
  rtp_context_post (shared->context, G_PRIORITY_DEFAULT, handle_event, ev, event_free);
  /* cppcheck-suppress memleak ; ev belongs to the main context now, event_free releases it */
}

static void
on_connected (void *context, char *cause)
{
  post (context, EV_CONNECTED, 0, cause, NULL);
}

static void
on_connect_failure (void *context, MQTTAsync_failureData *response)
{
  post (context, EV_CONNECT_FAILED, 0,
        response != NULL && response->message != NULL ? response->message : "connection failed", NULL);
}

static void
on_connection_lost (void *context, char *cause)
{
  post (context, EV_LOST, 0, cause != NULL ? cause : "connection lost", NULL);
}

static int
on_message (void *context, char *topic, int topic_len, MQTTAsync_message *message)
{
  Shared *shared = context;
  RtpMqttFilterFunc filter = g_atomic_pointer_get (&shared->filter);

  if (filter != NULL && message->payloadlen >= 0 &&
      filter (topic, topic_len > 0 ? (gsize) topic_len : strlen (topic), message->payload, (gsize) message->payloadlen,
              shared->filter_data))
    rtp_metrics_inc (RTP_METRIC_MQTT_SETTLED);
  else
    {
      g_autofree char *t = topic_len > 0 ? g_strndup (topic, (gsize) topic_len) : g_strdup (topic);
      post (context, EV_MESSAGE, 0, t, g_bytes_new (message->payload, (gsize) message->payloadlen));
    }
  MQTTAsync_freeMessage (&message);
  MQTTAsync_free (topic);
  return 1;
}

typedef struct {
  Shared *shared;
  guint op;
} OpContext;

static void
on_send_success (void *context, MQTTAsync_successData *response)
{
  OpContext *c = context;
  post (c->shared, EV_ACK, c->op, NULL, NULL);
  shared_unref (c->shared);
  g_free (c);
}

static void
on_send_failure (void *context, MQTTAsync_failureData *response)
{
  OpContext *c = context;
  post (c->shared, EV_NACK, c->op, response != NULL && response->message != NULL ? response->message : "not delivered",
        NULL);
  shared_unref (c->shared);
  g_free (c);
}

/* ---- main context ---------------------------------------------------------------- */

static void connect_now (RtpMqttPublisher *self);

static void
set_connected (RtpMqttPublisher *self, gboolean connected)
{
  if (self->connected == connected)
    return;
  self->connected = connected;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_CONNECTED]);
}

static gboolean
retry_connect (gpointer user_data)
{
  RtpMqttPublisher *self = user_data;
  self->retry_id = 0;
  connect_now (self);
  return G_SOURCE_REMOVE;
}

static void
fail_pending (RtpMqttPublisher *self, guint op, const char *why)
{
  GTask *task = g_hash_table_lookup (self->pending, GUINT_TO_POINTER (op));

  if (task == NULL)
    return; /* timed out already */
  g_debug ("publish %u failed: %s", op, why);
  g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                           _ ("The MQTT server to which this request should be forwarded cannot be reached."));
  g_hash_table_remove (self->pending, GUINT_TO_POINTER (op));
}

/* The message went to paho, which may still deliver it: not a failure, an unknown outcome. */
static void
unconfirmed (RtpMqttPublisher *self, guint op)
{
  GTask *task = g_hash_table_lookup (self->pending, GUINT_TO_POINTER (op));

  if (task == NULL)
    return;
  g_debug ("publish %u: no acknowledgement within the timeout", op);
  g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UNCONFIRMED, "%s",
                           _ ("The broker did not confirm in time; the value may still arrive."));
  g_hash_table_remove (self->pending, GUINT_TO_POINTER (op));
}

static void
subscribe_all (RtpMqttPublisher *self)
{
  for (guint i = 0; i < self->subscriptions->len; i++)
    {
      MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
      int rc = MQTTAsync_subscribe (self->client, g_ptr_array_index (self->subscriptions, i), 1, &opts);
      if (rc != MQTTASYNC_SUCCESS)
        g_warning ("cannot subscribe to %s: %d", (const char *) g_ptr_array_index (self->subscriptions, i), rc);
    }
}

static gboolean
handle_event (gpointer data)
{
  Event *ev = data;
  RtpMqttPublisher *self;

  g_mutex_lock (&ev->shared->lock);
  self = ev->shared->self != NULL ? g_object_ref (ev->shared->self) : NULL;
  g_mutex_unlock (&ev->shared->lock);
  if (self == NULL)
    return G_SOURCE_REMOVE;

  switch (ev->kind)
    {
      case EV_CONNECTED:
        g_message ("connected to the MQTT broker %s", self->url);
        self->ever_connected = TRUE;
        self->retry_delay_s = 1;
        set_connected (self, TRUE);
        subscribe_all (self);
        break;
      case EV_CONNECT_FAILED:
        if (self->connected)
          break;
        if (!self->ever_connected && !self->stopped && self->retry_id == 0)
          {
            g_warning ("cannot connect to the MQTT broker %s (%s); retrying in %u s", self->url, ev->text,
                       self->retry_delay_s);
            self->retry_id = g_timeout_add_seconds (self->retry_delay_s, retry_connect, self);
            self->retry_delay_s = MIN (self->retry_delay_s * 2, 30);
          }
        else
          g_debug ("reconnect to %s failed: %s", self->url, ev->text);
        break;
      case EV_LOST:
        g_warning ("lost the connection to the MQTT broker %s (%s); reconnecting", self->url, ev->text);
        set_connected (self, FALSE);
        break;
      case EV_ACK:
        {
          GTask *task = g_hash_table_lookup (self->pending, GUINT_TO_POINTER (ev->op));
          if (task != NULL)
            {
              g_task_return_boolean (task, TRUE);
              g_hash_table_remove (self->pending, GUINT_TO_POINTER (ev->op));
            }
          break;
        }
      case EV_NACK:
        fail_pending (self, ev->op, ev->text);
        break;
      case EV_MESSAGE:
        g_signal_emit (self, signals[SIGNAL_MESSAGE], 0, ev->text, ev->payload);
        break;
    }
  g_object_unref (self);
  return G_SOURCE_REMOVE;
}

/* On the main context: queued messages in order, up to MESSAGES_PER_DISPATCH or for
 * DISPATCH_BUDGET_US; again at the next dispatch while more are queued (an idle source: no
 * DRAIN_COALESCE_MS for a backlog), so that requests are answered between two batches. */
static gboolean
drain_messages (gpointer data)
{
  Shared *shared = data;
  g_autoptr (RtpMqttPublisher) self = NULL;
  gint64 deadline = g_get_monotonic_time () + DISPATCH_BUDGET_US;
  guint64 dropped;
  gboolean more = TRUE;

  g_mutex_lock (&shared->lock);
  self = shared->self != NULL ? g_object_ref (shared->self) : NULL;
  dropped = shared->dropped;
  shared->dropped = 0;
  g_mutex_unlock (&shared->lock);
  if (dropped > 0)
    g_warning ("%" G_GUINT64_FORMAT " MQTT messages were dropped: %u were waiting to be handled already", dropped,
               MAX_QUEUED_MESSAGES);
  for (guint i = 0; i < MESSAGES_PER_DISPATCH && more; i++)
    {
      Event *ev;

      g_mutex_lock (&shared->lock);
      ev = g_queue_pop_head (&shared->messages);
      more = !g_queue_is_empty (&shared->messages);
      shared->drain_pending = more;
      g_mutex_unlock (&shared->lock);
      if (ev == NULL)
        break;
      if (self != NULL)
        {
          self->message_arrival_us = ev->arrived_us;
          g_signal_emit (self, signals[SIGNAL_MESSAGE], 0, ev->text, ev->payload);
        }
      event_free (ev);
      if (g_get_monotonic_time () >= deadline)
        break;
    }
  if (more)
    rtp_context_post (shared->context, G_PRIORITY_DEFAULT, drain_messages, shared_ref (shared),
                      (GDestroyNotify) shared_unref);
  return G_SOURCE_REMOVE;
}

/**
 * rtp_mqtt_publisher_set_filter:
 * @func: called on paho's thread for every message received, before it is queued; when it
 *   returns TRUE the message is settled and "message" is not emitted for it
 *
 * Once, before the first rtp_mqtt_publisher_subscribe(). @func must be thread-safe and touch no
 * GObject; @destroy frees @user_data when the last callback can no longer run.
 */
void
rtp_mqtt_publisher_set_filter (RtpMqttPublisher *self, RtpMqttFilterFunc func, gpointer user_data,
                               GDestroyNotify destroy)
{
  g_return_if_fail (RTP_IS_MQTT_PUBLISHER (self));
  g_return_if_fail (self->shared->filter == NULL);
  self->shared->filter_data = user_data;
  self->shared->filter_destroy = destroy;
  g_atomic_pointer_set (&self->shared->filter, func);
}

/**
 * rtp_mqtt_publisher_get_message_arrival:
 *
 * Returns: while "message" is emitted, when that message arrived (g_get_monotonic_time()); what
 * was in the database before then is what a handler needs to see of it.
 */
gint64
rtp_mqtt_publisher_get_message_arrival (RtpMqttPublisher *self)
{
  g_return_val_if_fail (RTP_IS_MQTT_PUBLISHER (self), 0);
  return self->message_arrival_us;
}

static void
connect_now (RtpMqttPublisher *self)
{
  MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
  int rc;

  if (self->stopped || self->client == NULL)
    return;
  opts.keepAliveInterval = 20;
  opts.cleansession = 1;
  opts.automaticReconnect = 1;
  opts.minRetryInterval = 1;
  opts.maxRetryInterval = 16;
  opts.connectTimeout = MAX (1, (int) (self->timeout_s + 0.999));
  /* one protocol version: a silent listener then costs one timeout, not several */
  opts.MQTTVersion = MQTTVERSION_3_1_1;
  opts.onFailure = on_connect_failure;
  opts.context = self->shared;
  opts.username = self->username;
  opts.password = self->password;
  rc = MQTTAsync_connect (self->client, &opts);
  if (rc != MQTTASYNC_SUCCESS && self->retry_id == 0)
    {
      g_warning ("cannot start connecting to %s (paho error %d); retrying in %u s", self->url, rc, self->retry_delay_s);
      self->retry_id = g_timeout_add_seconds (self->retry_delay_s, retry_connect, self);
      self->retry_delay_s = MIN (self->retry_delay_s * 2, 30);
    }
}

/* ---- object ---------------------------------------------------------------- */

static void
rtp_mqtt_publisher_dispose (GObject *object)
{
  RtpMqttPublisher *self = RTP_MQTT_PUBLISHER (object);

  rtp_mqtt_publisher_stop (self);
  if (self->shared != NULL)
    {
      g_mutex_lock (&self->shared->lock);
      self->shared->self = NULL;
      g_mutex_unlock (&self->shared->lock);
    }
  G_OBJECT_CLASS (rtp_mqtt_publisher_parent_class)->dispose (object);
}

static void
rtp_mqtt_publisher_finalize (GObject *object)
{
  RtpMqttPublisher *self = RTP_MQTT_PUBLISHER (object);

  g_clear_pointer (&self->shared, shared_unref);
  g_free (self->url);
  g_free (self->client_id);
  g_free (self->username);
  if (self->password != NULL)
    explicit_bzero (self->password, strlen (self->password));
  g_free (self->password);
  g_hash_table_unref (self->pending);
  g_ptr_array_unref (self->subscriptions);
  G_OBJECT_CLASS (rtp_mqtt_publisher_parent_class)->finalize (object);
}

static void
rtp_mqtt_publisher_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  RtpMqttPublisher *self = RTP_MQTT_PUBLISHER (object);

  switch (prop_id)
    {
      case PROP_CONNECTED:
        g_value_set_boolean (value, self->connected);
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
rtp_mqtt_publisher_class_init (RtpMqttPublisherClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = rtp_mqtt_publisher_dispose;
  object_class->finalize = rtp_mqtt_publisher_finalize;
  object_class->get_property = rtp_mqtt_publisher_get_property;
  props[PROP_CONNECTED] = g_param_spec_boolean ("connected", NULL, NULL, FALSE,
                                                G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
  /**
   * RtpMqttPublisher::message:
   * @topic: the topic
   * @payload: the payload (GBytes)
   */
  signals[SIGNAL_MESSAGE] = g_signal_new ("message", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                          rtp_marshal_VOID__STRING_BOXED, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_BYTES);
  g_signal_set_va_marshaller (signals[SIGNAL_MESSAGE], G_TYPE_FROM_CLASS (klass), rtp_marshal_VOID__STRING_BOXEDv);
}

static void
rtp_mqtt_publisher_init (RtpMqttPublisher *self)
{
  self->pending = g_hash_table_new_full (NULL, NULL, NULL, g_object_unref);
  self->subscriptions = g_ptr_array_new_with_free_func (g_free);
  self->retry_delay_s = 1;
}

char *
rtp_mqtt_normalize_url (const char *url)
{
  const char *rest = url;

  if (url == NULL || url[0] == '\0')
    return NULL;
  if (g_str_has_prefix (rest, "tcp://"))
    rest += strlen ("tcp://");
  else if (g_str_has_prefix (rest, "mqtt://"))
    rest += strlen ("mqtt://");
  if (strchr (rest, ':') != NULL)
    return g_strconcat ("tcp://", rest, NULL);
  return g_strconcat ("tcp://", rest, ":1883", NULL);
}

RtpMqttPublisher *
rtp_mqtt_publisher_new (const RtpMqttSettings *settings)
{
  RtpMqttPublisher *self = g_object_new (RTP_TYPE_MQTT_PUBLISHER, NULL);
  guint32 nonce = g_random_int ();

  self->shared = g_new0 (Shared, 1);
  g_atomic_ref_count_init (&self->shared->ref_count);
  g_mutex_init (&self->shared->lock);
  self->shared->self = self;
  self->shared->context = g_main_context_ref_thread_default ();
  self->url = rtp_mqtt_normalize_url (settings->server_url);
  self->client_id = g_strdup_printf ("rtp-%s-%d-%08x", g_get_host_name (), (int) getpid (), nonce);
  self->username = g_strdup (settings->username);
  self->password = g_strdup (settings->password);
  self->timeout_s = settings->timeout_s > 0 ? settings->timeout_s : 2;
  return self;
}

gboolean
rtp_mqtt_publisher_is_configured (RtpMqttPublisher *self)
{
  return self->url != NULL;
}

gboolean
rtp_mqtt_publisher_get_connected (RtpMqttPublisher *self)
{
  return self->connected;
}

void
rtp_mqtt_publisher_start (RtpMqttPublisher *self)
{
  MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
  int rc;

  if (self->url == NULL || self->client != NULL)
    return;
  create.MQTTVersion = MQTTVERSION_3_1_1;
  rc = MQTTAsync_createWithOptions (&self->client, self->url, self->client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL,
                                    &create);
  if (rc != MQTTASYNC_SUCCESS)
    {
      g_warning ("cannot create an MQTT client for %s: paho error %d", self->url, rc);
      self->client = NULL;
      return;
    }
  /* paho records every function entry and exit in a trace buffer and formats its trace lines
   * whenever the level lets them through, even with no trace destination: at the default level
   * that was 30 % of its CPU per value received. Only errors, unless paho's own variables ask
   * for a trace (MQTT_C_CLIENT_TRACE and MQTT_C_CLIENT_TRACE_LEVEL, read by paho). */
  if (g_getenv ("MQTT_C_CLIENT_TRACE") == NULL && g_getenv ("MQTT_C_CLIENT_TRACE_LEVEL") == NULL)
    MQTTAsync_setTraceLevel (MQTTASYNC_TRACE_ERROR);
  MQTTAsync_setCallbacks (self->client, self->shared, on_connection_lost, on_message, NULL);
  MQTTAsync_setConnected (self->client, self->shared, on_connected);
  g_message ("connecting to the MQTT broker %s as %s", self->url, self->client_id);
  connect_now (self);
}

void
rtp_mqtt_publisher_stop (RtpMqttPublisher *self)
{
  GHashTableIter iter;
  gpointer task;

  self->stopped = TRUE;
  g_clear_handle_id (&self->retry_id, g_source_remove);
  if (self->client != NULL)
    {
      MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;
      opts.timeout = 500;
      if (MQTTAsync_isConnected (self->client))
        MQTTAsync_disconnect (self->client, &opts);
      /* waits for paho's threads; callbacks posted meanwhile find no object */
      MQTTAsync_destroy (&self->client);
      self->client = NULL;
    }
  g_hash_table_iter_init (&iter, self->pending);
  while (g_hash_table_iter_next (&iter, NULL, &task))
    {
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                               _ ("The MQTT server to which this request should be forwarded cannot be reached."));
      g_hash_table_iter_remove (&iter);
    }
  set_connected (self, FALSE);
}

static gboolean
publish_timeout (gpointer user_data)
{
  GTask *task = user_data;
  RtpMqttPublisher *self = g_task_get_source_object (task);
  guint op = GPOINTER_TO_UINT (g_task_get_task_data (task));

  unconfirmed (self, op);
  return G_SOURCE_REMOVE;
}

void
rtp_mqtt_publisher_publish_async (RtpMqttPublisher *self, const char *topic, const char *payload, gsize length, int qos,
                                  GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  MQTTAsync_message msg = MQTTAsync_message_initializer;
  MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
  OpContext *c;
  guint op;
  int rc;

  g_task_set_source_tag (task, rtp_mqtt_publisher_publish_async);
  if (self->client == NULL || !self->connected || !MQTTAsync_isConnected (self->client))
    {
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                               _ ("The MQTT server to which this request should be forwarded cannot be reached."));
      return;
    }
  op = ++self->next_op;
  g_task_set_task_data (task, GUINT_TO_POINTER (op), NULL);
  c = g_new0 (OpContext, 1);
  c->shared = shared_ref (self->shared);
  c->op = op;
  opts.onSuccess = on_send_success;
  opts.onFailure = on_send_failure;
  opts.context = c;
  msg.payload = (void *) payload;
  msg.payloadlen = (int) length;
  msg.qos = qos;
  msg.retained = 0;
  g_hash_table_insert (self->pending, GUINT_TO_POINTER (op), g_object_ref (task));
  rc = MQTTAsync_sendMessage (self->client, topic, &msg, &opts);
  if (rc != MQTTASYNC_SUCCESS)
    {
      shared_unref (c->shared);
      g_free (c);
      fail_pending (self, op, "paho refused the message");
      return;
    }
  if (qos == 0)
    return; /* onSuccess fires when written */
  {
    GSource *timeout = g_timeout_source_new ((guint) (self->timeout_s * 1000));
    g_task_attach_source (task, timeout, publish_timeout);
    g_source_unref (timeout);
  }
}

gboolean
rtp_mqtt_publisher_publish_finish (RtpMqttPublisher *self, GAsyncResult *result, GError **error)
{
  GError *local = NULL;
  gboolean ok;

  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  ok = g_task_propagate_boolean (G_TASK (result), &local);
  rtp_metrics_inc (ok                                                          ? RTP_METRIC_MQTT_PUBLISHED
                   : g_error_matches (local, RTP_ERROR, RTP_ERROR_UNCONFIRMED) ? RTP_METRIC_MQTT_UNCONFIRMED
                                                                               : RTP_METRIC_MQTT_FAILED);
  if (local != NULL)
    g_propagate_error (error, local);
  return ok;
}

void
rtp_mqtt_publisher_subscribe (RtpMqttPublisher *self, const char *topic_filter)
{
  g_ptr_array_add (self->subscriptions, g_strdup (topic_filter));
  if (self->connected)
    subscribe_all (self);
}
