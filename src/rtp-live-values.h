/* rtp-live-values.h: the newest value of each PV somebody watches, from the archiver or MQTT */
#pragma once

#include <gio/gio.h>

#include "rtp-archiver-client.h"
#include "rtp-database.h"
#include "rtp-experiment-store.h"
#include "rtp-mqtt-publisher.h"
#include "rtp-subscriptions.h"

G_BEGIN_DECLS

#define RTP_TYPE_LIVE_VALUES (rtp_live_values_get_type ())
G_DECLARE_FINAL_TYPE (RtpLiveValues, rtp_live_values, RTP, LIVE_VALUES, GObject)

typedef struct {
  RtpArchiverClient *archiver;    /* (nullable) poll the latest samples */
  const char *value_topic_prefix; /* (nullable) or read values from MQTT topics */
  double interval_s;
} RtpLiveSettings;

/* Returns: (transfer full) */
RtpLiveValues *rtp_live_values_new (RtpDatabase *db, RtpExperimentStore *experiments, RtpMqttPublisher *mqtt);

/* Starts polling the archiver every interval (when it is configured) and reading the MQTT value
 * topics (when a prefix is set). Every new value of a watched PV is emitted once as "value"
 * (pv, time in µs, the value as JSON text: a finite number, or an archiver value checked by
 * rtp_json_normalize). */
void rtp_live_values_start (RtpLiveValues *self, const RtpLiveSettings *settings);

/* Live viewers: a PV is watched while at least one viewer wants it (every instance polls its own). */
void rtp_live_values_watch (RtpLiveValues *self, const char *pv_string);
void rtp_live_values_unwatch (RtpLiveValues *self, const char *pv_string);
/* The alerter's PVs: every subscribed PV is polled too, on the one instance that alerts. */
void rtp_live_values_poll_subscribed (RtpLiveValues *self, RtpSubscriptions *subscriptions);

/* The last value emitted (or settled on arrival) for @pv_string: @value (transfer full). */
gboolean rtp_live_values_get_latest (RtpLiveValues *self, const char *pv_string, gint64 *time_us, char **value);

/* The alerter's word on MQTT values (see rtp-value-gate.h): values of @pv_string in [@lo, @hi]
 * need nothing until the database changes; every value of @pv_string is judged again; a PV not
 * heard of is claimed silent unless a settled value says otherwise. */
gboolean rtp_live_values_get_settled (RtpLiveValues *self, const char *pv_string, gint64 *time_us, double *value);
void rtp_live_values_set_quiet (RtpLiveValues *self, const char *pv_string, double lo, double hi, gint64 until_us);
void rtp_live_values_forward (RtpLiveValues *self, const char *pv_string);
gboolean rtp_live_values_claim_silence (RtpLiveValues *self, const char *pv_string, gint64 heard_before_us);

G_END_DECLS
