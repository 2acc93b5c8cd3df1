/* rtp-history.c: the one room for reading archived data
 *
 * /data, the live view and the monitor read the EPICS Archiver Appliance through here, so that
 * the rules of API.md "Archived data" exist once: what a missing since means, when a window is
 * empty, how many points a PV may have, which expression the appliance is asked, and in which
 * time zone times are read and written. The HTTP route only reads the body and writes JSON. */
#define G_LOG_DOMAIN "RtpHistory"

#include "rtp-history.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-time.h"

#include <string.h>

struct _RtpHistory {
  GObject parent_instance;
  RtpConfig **config;          /* (unowned) the application's current configuration */
  RtpArchiverClient *archiver; /* (owned) */
  GTimeZone *tz;               /* (owned) (nullable) built for @tz_name */
  char *tz_name;               /* (owned) (nullable) ARCHIVER_TIMEZONE when @tz was built */
};

G_DEFINE_TYPE (RtpHistory, rtp_history, G_TYPE_OBJECT)

static void
rtp_history_finalize (GObject *object)
{
  RtpHistory *self = RTP_HISTORY (object);

  g_clear_object (&self->archiver);
  g_clear_pointer (&self->tz, g_time_zone_unref);
  g_free (self->tz_name);
  G_OBJECT_CLASS (rtp_history_parent_class)->finalize (object);
}

static void
rtp_history_class_init (RtpHistoryClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_history_finalize;
}

static void
rtp_history_init (RtpHistory *self)
{
}

RtpHistory *
rtp_history_new (RtpConfig **config_source, RtpArchiverClient *archiver)
{
  RtpHistory *self = g_object_new (RTP_TYPE_HISTORY, NULL);

  self->config = config_source;
  self->archiver = g_object_ref (archiver);
  return self;
}

gboolean
rtp_history_is_configured (RtpHistory *self)
{
  return rtp_archiver_client_is_configured (self->archiver);
}

void
rtp_history_window_clear (RtpHistoryWindow *window)
{
  g_clear_pointer (&window->defaulted, g_free);
}

GTimeZone *
rtp_history_get_time_zone (RtpHistory *self)
{
  RtpConfig *config = *self->config;
  const char *name = rtp_config_is_set (config, "ARCHIVER_TIMEZONE")
                       ? rtp_config_get_string (config, "ARCHIVER_TIMEZONE")
                       : NULL;

  if (self->tz == NULL || g_strcmp0 (name, self->tz_name) != 0)
    {
      g_clear_pointer (&self->tz, g_time_zone_unref);
      g_free (self->tz_name);
      self->tz_name = g_strdup (name);
      /* the configuration checked the name at start and at every reload */
      self->tz = name != NULL ? g_time_zone_new_identifier (name) : g_time_zone_new_local ();
      if (self->tz == NULL)
        self->tz = g_time_zone_new_utc ();
    }
  return self->tz;
}

/* The appliance's post-processors that the API offers. The N-second ones take bin_s. */
static const struct {
  const char *name;
  gboolean takes_bin_s;
} operators[] = {
  { "raw", FALSE },        { "optimized", FALSE }, { "optimLastSample", FALSE },
  { "mean", TRUE },        { "median", TRUE },     { "min", TRUE },
  { "max", TRUE },         { "std", TRUE },        { "count", TRUE },
  { "firstSample", TRUE }, { "lastSample", TRUE }, { "firstFill", TRUE },
  { "lastFill", TRUE },    { "linear", TRUE },     { "nth", TRUE },
};

#define MAX_BIN_S ((gint64) 366 * 24 * 3600)

static gboolean
read_operator (const RtpHistoryQuery *query, RtpHistoryWindow *window, GError **error)
{
  gboolean takes_bin_s = FALSE;

  for (guint i = 0; query->operator_state == RTP_FIELD_SET && i < G_N_ELEMENTS (operators); i++)
    if (g_str_equal (query->operator_name, operators[i].name))
      {
        window->operator= operators[i].name;
        takes_bin_s = operators[i].takes_bin_s;
      }
  if (query->operator_state == RTP_FIELD_WRONG_TYPE ||
      (query->operator_state == RTP_FIELD_SET && window->operator== NULL))
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                           _ ("operator: Unknown operator. Use one of raw, optimized, optimLastSample, mean, "
                              "median, min, max, std, count, firstSample, lastSample, firstFill, lastFill, "
                              "linear, nth."));
      return FALSE;
    }
  if (query->bin_s_state == RTP_FIELD_WRONG_TYPE ||
      (query->bin_s_state == RTP_FIELD_SET && (query->bin_s < 1 || query->bin_s > MAX_BIN_S)))
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                   _ ("bin_s: Value must be a whole number of seconds from 1 to %lld."), (long long) MAX_BIN_S);
      return FALSE;
    }
  if (takes_bin_s && query->bin_s_state != RTP_FIELD_SET)
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("bin_s: The operator %s needs a bin width in seconds."),
                   window->operator);
      return FALSE;
    }
  if (!takes_bin_s && query->bin_s_state == RTP_FIELD_SET)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                           _ ("bin_s: Only the N-second operators (mean, median, min, max, std, count, firstSample, "
                              "lastSample, firstFill, lastFill, linear, nth) take a bin width."));
      return FALSE;
    }
  window->bin_s = takes_bin_s ? query->bin_s : 0;
  return TRUE;
}

gboolean
rtp_history_window_has_bins (const RtpHistoryWindow *window)
{
  if (window->operator== NULL)
    return window->max_points > 0;
  return window->max_points > 0 &&
         (g_str_equal (window->operator, "optimized") || g_str_equal (window->operator, "optimLastSample"));
}

char *
rtp_history_expression (const RtpHistoryWindow *window, const char *pv)
{
  /* optimized_N: the appliance answers raw samples when the window holds at most N, else ~N bins */
  if (window->operator== NULL || g_str_equal (window->operator, "optimized"))
    return window->max_points > 0 ? g_strdup_printf ("optimized_%" G_GINT64_FORMAT "(%s)", window->max_points, pv)
                                  : g_strdup (pv);
  if (g_str_equal (window->operator, "optimLastSample"))
    return window->max_points > 0 ? g_strdup_printf ("optimLastSample_%" G_GINT64_FORMAT "(%s)", window->max_points, pv)
                                  : g_strdup (pv);
  if (g_str_equal (window->operator, "raw"))
    return g_strdup (pv);
  return g_strdup_printf ("%s_%" G_GINT64_FORMAT "(%s)", window->operator, window->bin_s, pv);
}

static gboolean
read_time (RtpHistory *self, const char *name, const char *text, gboolean *given, gint64 *out_us, GError **error)
{
  *given = FALSE;
  if (text == NULL)
    return TRUE;
  if (!rtp_time_parse (text, rtp_history_get_time_zone (self), out_us))
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                   _ ("%s: The time (%s) is not valid. Use YYYY-MM-DD HH:MM:SS or ISO 8601."), name, text);
      return FALSE;
    }
  *given = TRUE;
  return TRUE;
}

gboolean
rtp_history_resolve (RtpHistory *self, const RtpHistoryQuery *query, RtpHistoryWindow *window, GError **error)
{
  RtpConfig *config = *self->config;
  gboolean have_since, have_until;
  gint64 limit = rtp_config_get_int (config, "RTP_MAX_POINTS_LIMIT");

  memset (window, 0, sizeof *window);
  if (!read_operator (query, window, error))
    return FALSE;
  if (!read_time (self, "since", query->since, &have_since, &window->from_us, error) ||
      !read_time (self, "until", query->until, &have_until, &window->to_us, error))
    return FALSE;
  window->max_points = rtp_config_get_int (config, "RTP_MAX_POINTS");
  if (query->has_max_points)
    {
      if (query->max_points < 0)
        {
          g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                               _ ("max_points: Value must be a non-negative integer."));
          return FALSE;
        }
      if (query->max_points > limit)
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("max_points: Value must be at most %lld."),
                       (long long) limit);
          return FALSE;
        }
      window->max_points = query->max_points;
    }
  if (!have_until)
    window->to_us = g_get_real_time ();
  if (!have_since)
    {
      gint64 hours = rtp_config_get_int (config, "DEFAULT_ARCHIVER_TIME_PERIOD");
      window->from_us = window->to_us - hours * 3600 * G_USEC_PER_SEC;
      window->defaulted = g_strdup_printf (
        _ (
          "Time frame not specified. The data is in a server-defined time frame of %lld hours up to the current time."),
        (long long) hours);
    }
  if (window->from_us > window->to_us)
    {
      rtp_history_window_clear (window);
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("The time frame is empty: since is after until."));
      return FALSE;
    }
  return TRUE;
}

RtpArchiverTransfer *
rtp_history_fetch_async (RtpHistory *self, const char *pv, const RtpHistoryWindow *window, RtpSampleFunc on_sample,
                         gpointer sample_data, GCancellable *cancellable, GAsyncReadyCallback callback,
                         gpointer user_data)
{
  g_autofree char *expr = rtp_history_expression (window, pv);

  return rtp_archiver_client_fetch_async (self->archiver, expr, window->from_us, window->to_us,
                                          rtp_history_window_has_bins (window), TRUE, on_sample, sample_data,
                                          cancellable, callback, user_data);
}

gboolean
rtp_history_fetch_finish (RtpHistory *self, GAsyncResult *result, gboolean *found, GError **error)
{
  g_return_val_if_fail (RTP_IS_HISTORY (self), FALSE);
  return rtp_archiver_client_fetch_finish (self->archiver, result, found, error);
}
