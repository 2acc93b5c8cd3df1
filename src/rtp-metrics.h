/* rtp-metrics.h: counters for GET /metrics (Prometheus text exposition format 0.0.4)
 *
 * Counting is one atomic add: no lock on any path that counts, from any thread. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  RTP_METRIC_ARCHIVER_OK,
  RTP_METRIC_ARCHIVER_NOT_FOUND,
  RTP_METRIC_ARCHIVER_ERROR,
  RTP_METRIC_ARCHIVER_CANCELLED,
  RTP_METRIC_MQTT_PUBLISHED,
  RTP_METRIC_MQTT_FAILED,
  RTP_METRIC_MQTT_UNCONFIRMED,
  RTP_METRIC_MQTT_RECEIVED,
  RTP_METRIC_MQTT_DROPPED,
  RTP_METRIC_MQTT_SETTLED,
  RTP_METRIC_ALERT_EMAIL_SENT,
  RTP_METRIC_ALERT_EMAIL_FAILED,
  RTP_METRIC_ALERT_WEBHOOK_SENT,
  RTP_METRIC_ALERT_WEBHOOK_FAILED,
  RTP_METRIC_DB_ERRORS,
  RTP_METRIC_LOGIN_SUCCESS,
  RTP_METRIC_LOGIN_FAILURE,
  RTP_METRIC_LOGIN_LOCKED,
  RTP_METRIC_LOGIN_UNAVAILABLE,
  RTP_N_METRICS
} RtpMetric;

typedef enum { RTP_GAUGE_LIVE_VIEWERS, RTP_GAUGE_MQTT_CONNECTED, RTP_N_GAUGES } RtpGauge;

void rtp_metrics_inc (RtpMetric metric);
guint64 rtp_metrics_get (RtpMetric metric);
void rtp_metrics_gauge_add (RtpGauge gauge, gint64 delta);
void rtp_metrics_gauge_set (RtpGauge gauge, gint64 value);

/* Seconds, in Prometheus' default buckets (5 ms … 10 s). */
#define RTP_HISTOGRAM_BUCKETS 11
typedef struct {
  guint64 buckets[RTP_HISTOGRAM_BUCKETS]; /* not cumulative: each observation in one bucket (or +Inf) */
  guint64 count;
  guint64 sum_us;
} RtpHistogram;

void rtp_histogram_observe (RtpHistogram *histogram, gint64 duration_us);
/* Writes the _bucket, _sum and _count lines of @name with @labels (e.g. `route="/x"` or ""). */
void rtp_histogram_write (GString *out, const char *name, const char *labels, const RtpHistogram *histogram);
/* The archiver requests' durations */
RtpHistogram *rtp_metrics_archiver_duration (void);

/* Appends a label value with Prometheus' escaping (\\, \" and \n). */
void rtp_metrics_append_label (GString *out, const char *value);

/* The counters, gauges, the archiver histogram, rtp_build_info and the process_* metrics. */
void rtp_metrics_write (GString *out);

G_END_DECLS
