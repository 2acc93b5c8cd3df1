/* rtp-metrics.c: what GET /metrics tells, counted with atomic adds
 *
 * The HTTP server keeps its per-route counters itself (one main thread writes them); everything
 * else — the archiver, the broker, the alert channels, database errors, logins — counts here, from
 * whichever thread, with one atomic add and no lock. */
#define G_LOG_DOMAIN "RtpMetrics"

#include "rtp-metrics.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static guint64 counters[RTP_N_METRICS];
static gint64 gauges[RTP_N_GAUGES];
static RtpHistogram archiver_duration;

static const double bucket_bounds[RTP_HISTOGRAM_BUCKETS] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };

typedef struct {
  const char *family;
  const char *help;
  const char *labels;
} CounterInfo;

/* in RtpMetric's order; one family's members next to each other */
static const CounterInfo counter_info[RTP_N_METRICS] = {
  { "rtp_archiver_requests_total", "Requests to the archiver, by outcome.", "outcome=\"ok\"" },
  { "rtp_archiver_requests_total", NULL, "outcome=\"not_found\"" },
  { "rtp_archiver_requests_total", NULL, "outcome=\"error\"" },
  { "rtp_archiver_requests_total", NULL, "outcome=\"cancelled\"" },
  { "rtp_mqtt_publish_total", "Set-points and announcements published to the broker, by outcome.",
    "outcome=\"published\"" },
  { "rtp_mqtt_publish_total", NULL, "outcome=\"failed\"" },
  { "rtp_mqtt_publish_total", NULL, "outcome=\"unconfirmed\"" },
  { "rtp_mqtt_received_total",
    "Messages received on the subscribed topics (values), by outcome: queued for the main loop, dropped "
    "because too many were waiting, or settled on arrival (a number inside the bands of a PV without alarms).",
    "outcome=\"queued\"" },
  { "rtp_mqtt_received_total", NULL, "outcome=\"dropped\"" },
  { "rtp_mqtt_received_total", NULL, "outcome=\"settled\"" },
  { "rtp_alerts_total", "Alarm notifications, by channel and outcome.", "channel=\"email\",outcome=\"sent\"" },
  { "rtp_alerts_total", NULL, "channel=\"email\",outcome=\"failed\"" },
  { "rtp_alerts_total", NULL, "channel=\"webhook\",outcome=\"sent\"" },
  { "rtp_alerts_total", NULL, "channel=\"webhook\",outcome=\"failed\"" },
  { "rtp_db_errors_total", "Database statements that failed.", NULL },
  { "rtp_logins_total", "Logins (POST /auth/get_access_token), by outcome.", "outcome=\"success\"" },
  { "rtp_logins_total", NULL, "outcome=\"failure\"" },
  { "rtp_logins_total", NULL, "outcome=\"locked\"" },
  { "rtp_logins_total", NULL, "outcome=\"unavailable\"" },
};

void
rtp_metrics_inc (RtpMetric metric)
{
  g_return_if_fail (metric < RTP_N_METRICS);
  __atomic_fetch_add (&counters[metric], 1, __ATOMIC_RELAXED);
}

guint64
rtp_metrics_get (RtpMetric metric)
{
  g_return_val_if_fail (metric < RTP_N_METRICS, 0);
  return __atomic_load_n (&counters[metric], __ATOMIC_RELAXED);
}

void
rtp_metrics_gauge_add (RtpGauge gauge, gint64 delta)
{
  g_return_if_fail (gauge < RTP_N_GAUGES);
  __atomic_fetch_add (&gauges[gauge], delta, __ATOMIC_RELAXED);
}

void
rtp_metrics_gauge_set (RtpGauge gauge, gint64 value)
{
  g_return_if_fail (gauge < RTP_N_GAUGES);
  __atomic_store_n (&gauges[gauge], value, __ATOMIC_RELAXED);
}

void
rtp_histogram_observe (RtpHistogram *h, gint64 duration_us)
{
  double seconds = (double) MAX (duration_us, 0) / G_USEC_PER_SEC;
  guint i = 0;

  while (i < RTP_HISTOGRAM_BUCKETS && seconds > bucket_bounds[i])
    i++;
  if (i < RTP_HISTOGRAM_BUCKETS)
    __atomic_fetch_add (&h->buckets[i], 1, __ATOMIC_RELAXED);
  __atomic_fetch_add (&h->count, 1, __ATOMIC_RELAXED);
  __atomic_fetch_add (&h->sum_us, (guint64) MAX (duration_us, 0), __ATOMIC_RELAXED);
}

RtpHistogram *
rtp_metrics_archiver_duration (void)
{
  return &archiver_duration;
}

void
rtp_metrics_append_label (GString *out, const char *value)
{
  for (const char *p = value; *p != '\0'; p++)
    {
      if (*p == '\\' || *p == '"')
        g_string_append_c (out, '\\');
      if (*p == '\n')
        g_string_append (out, "\\n");
      else
        g_string_append_c (out, *p);
    }
}

void
rtp_histogram_write (GString *out, const char *name, const char *labels, const RtpHistogram *h)
{
  guint64 cumulative = 0;
  guint64 count = __atomic_load_n (&h->count, __ATOMIC_RELAXED);
  const char *sep = labels[0] != '\0' ? "," : "";

  for (guint i = 0; i < RTP_HISTOGRAM_BUCKETS; i++)
    {
      char bound[G_ASCII_DTOSTR_BUF_SIZE];
      cumulative += __atomic_load_n (&h->buckets[i], __ATOMIC_RELAXED);
      g_string_append_printf (out, "%s_bucket{%s%sle=\"%s\"} %" G_GUINT64_FORMAT "\n", name, labels, sep,
                              g_ascii_dtostr (bound, sizeof bound, bucket_bounds[i]), cumulative);
    }
  /* +Inf is the count: an observation counted between the reads above is in neither */
  g_string_append_printf (out, "%s_bucket{%s%sle=\"+Inf\"} %" G_GUINT64_FORMAT "\n", name, labels, sep,
                          MAX (count, cumulative));
  g_string_append_printf (out, "%s_sum%s%s%s %.6f\n", name, labels[0] != '\0' ? "{" : "", labels,
                          labels[0] != '\0' ? "}" : "",
                          (double) __atomic_load_n (&h->sum_us, __ATOMIC_RELAXED) / G_USEC_PER_SEC);
  g_string_append_printf (out, "%s_count%s%s%s %" G_GUINT64_FORMAT "\n", name, labels[0] != '\0' ? "{" : "", labels,
                          labels[0] != '\0' ? "}" : "", MAX (count, cumulative));
}

/* ---- process_* -------------------------------------------------------------------- */

static void
write_process (GString *out)
{
  g_autofree char *stat = NULL;
  long ticks = sysconf (_SC_CLK_TCK);
  long page = sysconf (_SC_PAGESIZE);
  guint open_fds = 0;
  g_autoptr (GDir) fds = g_dir_open ("/proc/self/fd", 0, NULL);

  if (g_file_get_contents ("/proc/self/stat", &stat, NULL, NULL))
    {
      /* the fields after the command's closing parenthesis (the command may contain anything) */
      const char *p = strrchr (stat, ')');
      unsigned long utime = 0, stime = 0, vsize = 0;
      unsigned long long starttime = 0;
      long rss = 0;
      if (p != NULL &&
          sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %llu %lu %ld",
                  &utime, &stime, &starttime, &vsize, &rss) == 5 &&
          ticks > 0)
        {
          g_autofree char *uptime = NULL;
          double boot = 0;

          /* the start time is in ticks after boot; boot = now - uptime */
          if (g_file_get_contents ("/proc/uptime", &uptime, NULL, NULL))
            boot = (double) g_get_real_time () / G_USEC_PER_SEC - g_ascii_strtod (uptime, NULL);
          g_string_append_printf (out,
                                  "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
                                  "# TYPE process_cpu_seconds_total counter\n"
                                  "process_cpu_seconds_total %.2f\n",
                                  (double) (utime + stime) / (double) ticks);
          g_string_append_printf (out,
                                  "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                                  "# TYPE process_resident_memory_bytes gauge\n"
                                  "process_resident_memory_bytes %" G_GINT64_FORMAT "\n",
                                  (gint64) rss * page);
          g_string_append_printf (out,
                                  "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                                  "# TYPE process_virtual_memory_bytes gauge\n"
                                  "process_virtual_memory_bytes %lu\n",
                                  vsize);
          g_string_append_printf (out,
                                  "# HELP process_start_time_seconds Start time of the process since unix epoch in "
                                  "seconds.\n"
                                  "# TYPE process_start_time_seconds gauge\n"
                                  "process_start_time_seconds %.2f\n",
                                  boot + (double) starttime / (double) ticks);
        }
    }
  while (fds != NULL && g_dir_read_name (fds) != NULL)
    open_fds++;
  if (fds != NULL)
    g_string_append_printf (out,
                            "# HELP process_open_fds Number of open file descriptors.\n"
                            "# TYPE process_open_fds gauge\n"
                            "process_open_fds %u\n",
                            open_fds > 0 ? open_fds - 1 : 0); /* not the directory's own */
  {
    long max_fds = sysconf (_SC_OPEN_MAX);
    if (max_fds > 0)
      g_string_append_printf (out,
                              "# HELP process_max_fds Maximum number of open file descriptors.\n"
                              "# TYPE process_max_fds gauge\n"
                              "process_max_fds %ld\n",
                              max_fds);
  }
}

void
rtp_metrics_write (GString *out)
{
  for (guint i = 0; i < RTP_N_METRICS; i++)
    {
      const CounterInfo *c = &counter_info[i];
      if (c->help != NULL)
        g_string_append_printf (out, "# HELP %s %s\n# TYPE %s counter\n", c->family, c->help, c->family);
      g_string_append_printf (out, "%s%s%s%s %" G_GUINT64_FORMAT "\n", c->family, c->labels != NULL ? "{" : "",
                              c->labels != NULL ? c->labels : "", c->labels != NULL ? "}" : "", rtp_metrics_get (i));
    }
  g_string_append (out, "# HELP rtp_archiver_request_duration_seconds Time until the archiver's answer was read.\n"
                        "# TYPE rtp_archiver_request_duration_seconds histogram\n");
  rtp_histogram_write (out, "rtp_archiver_request_duration_seconds", "", &archiver_duration);
  g_string_append_printf (out,
                          "# HELP rtp_mqtt_connected Whether the MQTT connection is up.\n"
                          "# TYPE rtp_mqtt_connected gauge\n"
                          "rtp_mqtt_connected %" G_GINT64_FORMAT "\n",
                          __atomic_load_n (&gauges[RTP_GAUGE_MQTT_CONNECTED], __ATOMIC_RELAXED));
  g_string_append_printf (out,
                          "# HELP rtp_live_viewers Open /live WebSocket connections.\n"
                          "# TYPE rtp_live_viewers gauge\n"
                          "rtp_live_viewers %" G_GINT64_FORMAT "\n",
                          __atomic_load_n (&gauges[RTP_GAUGE_LIVE_VIEWERS], __ATOMIC_RELAXED));
  g_string_append (out, "# HELP rtp_build_info The server's version.\n# TYPE rtp_build_info gauge\n"
                        "rtp_build_info{version=\"" RTP_VERSION "\"} 1\n");
  write_process (out);
}
