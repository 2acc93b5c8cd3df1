/* rtp-mqtt-publisher.h: one persistent MQTT connection (paho.mqtt.c async client) */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define RTP_TYPE_MQTT_PUBLISHER (rtp_mqtt_publisher_get_type ())
G_DECLARE_FINAL_TYPE (RtpMqttPublisher, rtp_mqtt_publisher, RTP, MQTT_PUBLISHER, GObject)

typedef struct {
  const char *server_url; /* host, host:port or tcp://host:port; NULL: no broker configured */
  const char *username;   /* (nullable) */
  const char *password;   /* (nullable) */
  double timeout_s;       /* connect and publish acknowledgement timeout */
} RtpMqttSettings;

/* Returns: (transfer full) */
RtpMqttPublisher *rtp_mqtt_publisher_new (const RtpMqttSettings *settings);
/* Starts connecting (and keeps reconnecting with back-off). */
void rtp_mqtt_publisher_start (RtpMqttPublisher *self);
void rtp_mqtt_publisher_stop (RtpMqttPublisher *self);
gint64 rtp_mqtt_publisher_get_message_arrival (RtpMqttPublisher *self);
gboolean rtp_mqtt_publisher_is_configured (RtpMqttPublisher *self);
gboolean rtp_mqtt_publisher_get_connected (RtpMqttPublisher *self);
/* Returns: (transfer full) */
char *rtp_mqtt_normalize_url (const char *url);

/* Completes when the broker acknowledged (QoS 1), or fails with RTP_ERROR_UPSTREAM when
 * the broker is not connected or does not acknowledge within the timeout. */
void rtp_mqtt_publisher_publish_async (RtpMqttPublisher *self, const char *topic, const char *payload, gsize length,
                                       int qos, GCancellable *cancellable, GAsyncReadyCallback callback,
                                       gpointer user_data);
gboolean rtp_mqtt_publisher_publish_finish (RtpMqttPublisher *self, GAsyncResult *result, GError **error);

/* Called on paho's thread for each message received: TRUE when it needs nothing more (no "message"). */
typedef gboolean (*RtpMqttFilterFunc) (const char *topic, gsize topic_len, const void *payload, gsize len,
                                       gpointer user_data);
void rtp_mqtt_publisher_set_filter (RtpMqttPublisher *self, RtpMqttFilterFunc func, gpointer user_data,
                                    GDestroyNotify destroy);

/* Subscribes to @topic_filter (kept across reconnects); "message" is emitted for each message. */
void rtp_mqtt_publisher_subscribe (RtpMqttPublisher *self, const char *topic_filter);

G_END_DECLS
