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
#include "rtp-json.h"
#include "rtp-time.h"

#include <string.h>

struct _RtpHistory {
  GObject parent_instance;
  RtpConfig **config;          /* (unowned) the application's current configuration */
  RtpArchiverClient *archiver; /* (owned) */
  GTimeZone *tz;               /* (owned) (nullable) built for @tz_name */
  char *tz_name;               /* (owned) (nullable) ARCHIVER_TIMEZONE when @tz was built */
  GHashTable *metadata;        /* (owned) pv → CachedMetadata */
};

typedef struct {
  char *json; /* (owned) (nullable) the metadata object's text; NULL: the appliance does not know the PV */
  gint64 fetched_us;
} CachedMetadata;

static void
cached_metadata_free (CachedMetadata *c)
{
  g_free (c->json);
  g_free (c);
}

#define MAX_CACHED_METADATA 65536
#define MAX_METADATA_BYTES ((gsize) 256 * 1024)

G_DEFINE_TYPE (RtpHistory, rtp_history, G_TYPE_OBJECT)

static void
rtp_history_finalize (GObject *object)
{
  RtpHistory *self = RTP_HISTORY (object);

  g_clear_object (&self->archiver);
  g_clear_pointer (&self->tz, g_time_zone_unref);
  g_free (self->tz_name);
  g_hash_table_unref (self->metadata);
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
  self->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) cached_metadata_free);
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

gboolean
rtp_history_resolve_moment (RtpHistory *self, const char *name, const char *text, gint64 *out_us, GError **error)
{
  gboolean given;

  if (!read_time (self, name, text, &given, out_us, error))
    return FALSE;
  if (!given)
    *out_us = g_get_real_time ();
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

RtpArchiverTransfer *
rtp_history_fetch_many_async (RtpHistory *self, const char *const *pvs, const RtpHistoryWindow *window,
                              RtpPvStartFunc on_pv, RtpSampleFunc on_sample, gpointer sample_data,
                              GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GPtrArray) exprs = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; pvs[i] != NULL; i++)
    g_ptr_array_add (exprs, rtp_history_expression (window, pvs[i]));
  g_ptr_array_add (exprs, NULL);
  return rtp_archiver_client_fetch_many_async (self->archiver, (const char *const *) exprs->pdata, window->from_us,
                                               window->to_us, rtp_history_window_has_bins (window), on_pv, on_sample,
                                               sample_data, cancellable, callback, user_data);
}

gboolean
rtp_history_fetch_finish (RtpHistory *self, GAsyncResult *result, gboolean *found, GError **error)
{
  g_return_val_if_fail (RTP_IS_HISTORY (self), FALSE);
  return rtp_archiver_client_fetch_finish (self->archiver, result, found, error);
}

/* ---- values at a moment ---------------------------------------------------------------- */

void
rtp_value_at_free (RtpValueAt *value)
{
  if (value == NULL)
    return;
  g_free (value->value);
  g_free (value);
}

typedef struct {
  GHashTable *values; /* (owned) pv → RtpValueAt; every PV asked for is a key of @wanted */
  GHashTable *wanted; /* (owned) set of the PVs asked for */
  gint64 at_us;
  guint outstanding; /* fallback transfers not yet done */
  GError *error;     /* (owned) (nullable) the first fallback failure */
} AtJob;

static void
at_job_free (AtJob *job)
{
  g_hash_table_unref (job->values);
  g_hash_table_unref (job->wanted);
  g_clear_error (&job->error);
  g_free (job);
}

static gboolean
sample_after (const RtpSample *s, gint64 at_us)
{
  return s->secs > at_us / G_USEC_PER_SEC ||
         (s->secs == at_us / G_USEC_PER_SEC && (gint64) s->nanos / 1000 > at_us % G_USEC_PER_SEC);
}

/* Keeps @sample as @pv's value when it is the latest at or before the moment. */
static gboolean
keep_value (const char *pv, const RtpSample *sample, gpointer user_data)
{
  AtJob *job = user_data;
  RtpValueAt *old;
  RtpValueAt *v;

  if (!g_hash_table_contains (job->wanted, pv) || sample_after (sample, job->at_us))
    return TRUE;
  if (sample->too_deep)
    {
      g_warning ("the archiver's value of %s at the moment asked is nested deeper than %d levels; it is left out", pv,
                 RTP_JSON_MAX_DEPTH);
      return TRUE;
    }
  old = g_hash_table_lookup (job->values, pv);
  if (old != NULL && (old->secs > sample->secs || (old->secs == sample->secs && old->nanos > sample->nanos)))
    return TRUE;
  v = g_new0 (RtpValueAt, 1);
  v->secs = sample->secs;
  v->nanos = sample->nanos;
  v->value = g_strndup (sample->value, sample->value_len);
  v->severity = sample->severity;
  v->status = sample->status;
  g_hash_table_replace (job->values, g_strdup (pv), v);
  return TRUE;
}

typedef struct {
  GTask *task; /* (unowned) the task holds the job; each fallback transfer holds a task reference */
  const char *pv;
} AtFetch;

static gboolean
fallback_sample (const RtpSample *sample, gpointer user_data)
{
  AtFetch *f = user_data;
  return keep_value (f->pv, sample, g_task_get_task_data (f->task));
}

static void
fallback_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AtFetch *f = user_data;
  g_autoptr (GTask) task = f->task;
  AtJob *job = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  gboolean found;

  if (!rtp_archiver_client_fetch_finish (RTP_ARCHIVER_CLIENT (source), result, &found, &error) && job->error == NULL)
    job->error = g_steal_pointer (&error);
  g_free (f);
  if (--job->outstanding > 0)
    return;
  if (job->error != NULL)
    g_task_return_error (task, g_steal_pointer (&job->error));
  else
    g_task_return_pointer (task, g_hash_table_ref (job->values), (GDestroyNotify) g_hash_table_unref);
}

static void
at_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  RtpHistory *self = g_task_get_source_object (task);
  AtJob *job = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) body = NULL;
  gboolean found = FALSE;
  GHashTableIter iter;
  gpointer pv;

  body = rtp_archiver_client_request_finish (RTP_ARCHIVER_CLIENT (source), result, &found, &error);
  if (body == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  if (found)
    {
      gsize len;
      const char *data = g_bytes_get_data (body, &len);
      if (!rtp_archiver_parse_values_at (data, len, keep_value, job, &error))
        {
          g_warning ("getDataAtTime: %s", error->message);
          g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                                   _ ("Could not get process variable data from archiver."));
        }
      else
        g_task_return_pointer (task, g_hash_table_ref (job->values), (GDestroyNotify) g_hash_table_unref);
      return;
    }
  /* an appliance without getDataAtTime: the last sample of a window ending at the moment (the
   * appliance adds the last sample before a window's start, so a window of one instant is enough) */
  g_debug ("the archiver has no getDataAtTime; asking getData per PV");
  job->outstanding = g_hash_table_size (job->wanted);
  g_hash_table_iter_init (&iter, job->wanted);
  while (g_hash_table_iter_next (&iter, &pv, NULL))
    {
      AtFetch *f = g_new0 (AtFetch, 1);
      f->task = g_object_ref (task);
      f->pv = pv;
      rtp_archiver_client_fetch_async (self->archiver, pv, job->at_us, job->at_us, FALSE, FALSE, fallback_sample, f,
                                       g_task_get_cancellable (task), fallback_done, f);
    }
}

void
rtp_history_values_at_async (RtpHistory *self, const char *const *pvs, gint64 at_us, GCancellable *cancellable,
                             GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  AtJob *job = g_new0 (AtJob, 1);
  g_autoptr (GString) names = g_string_new ("[");
  g_autofree char *at = rtp_time_iso_utc (at_us);
  g_autofree char *at_enc = g_uri_escape_string (at, NULL, FALSE);
  g_autofree char *path = g_strdup_printf ("/retrieval/data/getDataAtTime?at=%s&includeProxies=true", at_enc);

  g_task_set_source_tag (task, rtp_history_values_at_async);
  job->values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) rtp_value_at_free);
  job->wanted = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  job->at_us = at_us;
  g_task_set_task_data (task, job, (GDestroyNotify) at_job_free);
  for (guint i = 0; pvs[i] != NULL; i++)
    {
      if (i > 0)
        g_string_append_c (names, ',');
      rtp_json_append_string (names, pvs[i]);
      g_hash_table_add (job->wanted, g_strdup (pvs[i]));
    }
  g_string_append_c (names, ']');
  if (g_hash_table_size (job->wanted) == 0)
    {
      g_task_return_pointer (task, g_hash_table_ref (job->values), (GDestroyNotify) g_hash_table_unref);
      return;
    }
  rtp_archiver_client_request_async (self->archiver, path, names->str, cancellable, at_done, g_object_ref (task));
}

GHashTable *
rtp_history_values_at_finish (RtpHistory *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- search ---------------------------------------------------------------- */

static void
search_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  guint limit = GPOINTER_TO_UINT (g_task_get_task_data (task));
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) body = NULL;
  gboolean found = FALSE;
  GStrv names;
  gsize len;
  const char *data;

  body = rtp_archiver_client_request_finish (RTP_ARCHIVER_CLIENT (source), result, &found, &error);
  if (body == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  data = g_bytes_get_data (body, &len);
  names = found ? rtp_archiver_parse_names (data, len, limit, &error) : NULL;
  if (names == NULL)
    {
      g_warning ("getMatchingPVs: %s", found ? error->message : "the archiver does not know the endpoint (404)");
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                               _ ("Could not get process variable data from archiver."));
      return;
    }
  g_task_return_pointer (task, names, (GDestroyNotify) g_strfreev);
}

void
rtp_history_search_async (RtpHistory *self, const char *glob, const char *regex, guint limit, GCancellable *cancellable,
                          GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autofree char *enc = g_uri_escape_string (regex != NULL ? regex : glob, NULL, FALSE);
  g_autofree char *path = g_strdup_printf ("/retrieval/bpl/getMatchingPVs?%s=%s&limit=%u",
                                           regex != NULL ? "regex" : "pv", enc, limit);

  g_task_set_source_tag (task, rtp_history_search_async);
  g_task_set_task_data (task, GUINT_TO_POINTER (limit), NULL);
  rtp_archiver_client_request_async (self->archiver, path, NULL, cancellable, search_done, g_object_ref (task));
}

GStrv
rtp_history_search_finish (RtpHistory *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- metadata ---------------------------------------------------------------- */

typedef struct {
  GHashTable *result; /* (owned) pv → metadata text */
  guint outstanding;
  GError *error; /* (owned) (nullable) */
} MetaJob;

static void
meta_job_free (MetaJob *job)
{
  g_hash_table_unref (job->result);
  g_clear_error (&job->error);
  g_free (job);
}

typedef struct {
  GTask *task; /* (owned) */
  char *pv;    /* (owned) */
} MetaFetch;

static void
meta_fetch_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  MetaFetch *f = user_data;
  GTask *task = f->task;
  RtpHistory *self = g_task_get_source_object (task);
  MetaJob *job = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  gboolean found = FALSE;
  g_autoptr (GBytes) body = rtp_archiver_client_request_finish (RTP_ARCHIVER_CLIENT (source), result, &found, &error);

  if (body == NULL)
    {
      if (job->error == NULL)
        job->error = g_steal_pointer (&error);
    }
  else
    {
      g_autoptr (GString) text = g_string_new (NULL);
      gsize len;
      const char *data = g_bytes_get_data (body, &len);
      guint replaced = 0;
      CachedMetadata *c = g_new0 (CachedMetadata, 1);

      if (found)
        {
          gsize i = 0;
          while (i < len && g_ascii_isspace (data[i]))
            i++;
          if (len > MAX_METADATA_BYTES || i >= len || data[i] != '{' ||
              rtp_json_normalize (data, len, RTP_JSON_MAX_DEPTH, text, &replaced) != RTP_JSON_OK)
            {
              g_warning ("getMetadata of %s: not a JSON object of at most %zu bytes", f->pv, MAX_METADATA_BYTES);
              if (job->error == NULL)
                job->error = g_error_new (RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                                          _ ("Could not get process variable data from archiver."));
              cached_metadata_free (c);
              c = NULL;
            }
          else
            c->json = g_strdup (text->str);
        }
      if (c != NULL)
        {
          c->fetched_us = g_get_monotonic_time ();
          if (c->json != NULL)
            g_hash_table_replace (job->result, g_strdup (f->pv), g_strdup (c->json));
          if (g_hash_table_size (self->metadata) >= MAX_CACHED_METADATA)
            g_hash_table_remove_all (self->metadata);
          g_hash_table_replace (self->metadata, g_strdup (f->pv), c);
        }
    }
  g_free (f->pv);
  g_free (f);
  if (--job->outstanding == 0)
    {
      if (job->error != NULL)
        g_task_return_error (task, g_steal_pointer (&job->error));
      else
        g_task_return_pointer (task, g_hash_table_ref (job->result), (GDestroyNotify) g_hash_table_unref);
    }
  g_object_unref (task);
}

void
rtp_history_metadata_async (RtpHistory *self, const char *const *pvs, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  MetaJob *job = g_new0 (MetaJob, 1);
  gint64 max_age_us = rtp_config_get_int (*self->config, "RTP_METADATA_CACHE_S") * G_USEC_PER_SEC;
  gint64 now = g_get_monotonic_time ();

  g_task_set_source_tag (task, rtp_history_metadata_async);
  job->result = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_task_set_task_data (task, job, (GDestroyNotify) meta_job_free);
  job->outstanding = 1; /* until every fetch has started */
  for (guint i = 0; pvs[i] != NULL; i++)
    {
      CachedMetadata *c = g_hash_table_lookup (self->metadata, pvs[i]);
      g_autofree char *enc = NULL;
      g_autofree char *path = NULL;
      MetaFetch *f;

      if (c != NULL && now - c->fetched_us < max_age_us)
        {
          if (c->json != NULL)
            g_hash_table_replace (job->result, g_strdup (pvs[i]), g_strdup (c->json));
          continue;
        }
      enc = g_uri_escape_string (pvs[i], NULL, FALSE);
      path = g_strdup_printf ("/retrieval/bpl/getMetadata?pv=%s", enc);
      f = g_new0 (MetaFetch, 1);
      f->task = g_object_ref (task);
      f->pv = g_strdup (pvs[i]);
      job->outstanding++;
      rtp_archiver_client_request_async (self->archiver, path, NULL, cancellable, meta_fetch_done, f);
    }
  if (--job->outstanding == 0)
    g_task_return_pointer (task, g_hash_table_ref (job->result), (GDestroyNotify) g_hash_table_unref);
}

GHashTable *
rtp_history_metadata_finish (RtpHistory *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}
