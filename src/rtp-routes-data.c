/* rtp-routes-data.c: POST /data/<short_id>[/<pv>] and validate_pv_string (API.md "Archived data")
 *
 * The route reads the body and writes the answer; the rules (window, max_points, time zone, the
 * archiver expression) are the history service's (rtp-history.c). Every PV is fetched at once and
 * written PV after PV into one answer, streamed with bounded buffers (see "the answer" below). */
#define G_LOG_DOMAIN "RtpRoutesData"

#include "rtp-archiver-client.h"
#include "rtp-csv.h"
#include "rtp-history.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-json.h"
#include "rtp-services.h"
#include "rtp-time.h"

#include <string.h>

#define FLUSH_AT ((gsize) 64 * 1024)
#define HIGH_WATER ((gsize) 4 * 1024 * 1024)
#define LOW_WATER ((gsize) 1 * 1024 * 1024)

static void
append_json_string (GString *out, const char *s)
{
  g_string_append_c (out, '"');
  for (const char *p = s; *p != '\0'; p++)
    {
      guchar c = (guchar) *p;
      if (c == '"' || c == '\\')
        {
          g_string_append_c (out, '\\');
          g_string_append_c (out, (char) c);
        }
      else if (c < 0x20)
        g_string_append_printf (out, "\\u%04x", c);
      else
        g_string_append_c (out, (char) c);
    }
  g_string_append_c (out, '"');
}

/* How the answer is written (API "format", "align", "include", "time_format"). */
typedef enum { FORMAT_JSON, FORMAT_CSV, FORMAT_TSV } Format;
typedef enum { TIME_LOCAL, TIME_ISO, TIME_EPOCH } TimeForm;

typedef struct {
  Format format;
  gboolean align_previous; /* CSV/TSV: a PV without a sample at a row's time repeats its last cells */
  gboolean severity;       /* points carry severity (CSV: <pv>.severity and <pv>.status) */
  gboolean status;         /* points carry status */
  TimeForm time_form;
} Options;

/* A sample waiting in a PV's queue for the CSV merge: its time and its cells in PvFetch.cells. */
typedef struct {
  gint64 secs;
  gint32 nanos;
  gsize off, len;
} QueuedRow;

typedef struct _Job Job;

typedef struct {
  Job *job;
  guint index;
  GString *waiting; /* this PV's points while an earlier PV is still being written (without brackets) */
  RtpArchiverTransfer *transfer;
  gboolean done;
  gboolean budget_paused; /* paused because the PVs waiting their turn hold WAITING_BUDGET bytes */
  guint64 points;
  guint64 binned;
  guint64 too_deep;  /* samples skipped: values nested deeper than RTP_JSON_MAX_DEPTH */
  guint64 nonfinite; /* numbers written as null */
  /* CSV/TSV: the samples rendered as this PV's cells, until the merge writes their row */
  GArray *rows;   /* (owned) of QueuedRow */
  guint head;     /* the first row not yet written */
  GString *cells; /* (owned) */
  GString *last;  /* (owned) align previous: the cells of the last row written */
  gboolean has_last;
  gboolean queue_paused; /* paused: the queue holds more than its share of WAITING_BUDGET */
  gboolean out_paused;   /* paused: the client has not read what was written */
  gboolean paused;       /* what the transfer was told */
} PvFetch;

struct _Job {
  RtpServices *services;
  RtpRequest *request;       /* (owned) */
  GCancellable *cancellable; /* (owned) cancels every transfer: the client went away, or one PV failed */
  gulong request_cancel_id;
  GTimeZone *tz;             /* (owned) */
  RtpExperiment *experiment; /* (owned) */
  GPtrArray *pvs;            /* (owned) pv strings to return */
  RtpHistoryWindow window;
  Options options;
  char sep;           /* CSV/TSV: ',' or '\t' */
  guint n_cols;       /* CSV/TSV: the columns of one PV */
  gsize queue_budget; /* CSV/TSV: bytes one PV's queue may hold before its transfer pauses */
  const char *content_type;
  char *disposition;   /* (owned) (nullable) CSV/TSV: Content-Disposition */
  GPtrArray *warnings; /* (owned) */
  PvFetch *fetches;    /* (owned) one per PV */
  guint outstanding;   /* transfers not yet completed */
  guint current;       /* the PV whose points are being written */
  gsize waiting_bytes; /* held in the fetches' waiting buffers */
  GString *out;        /* (owned) not yet handed to libsoup */
  gboolean started;    /* the 200 and the first bytes went out */
  gboolean finished;   /* answered (or failed): the job only waits for its transfers now */
};

static void
job_free (Job *job)
{
  for (guint i = 0; i < job->pvs->len; i++)
    {
      PvFetch *f = &job->fetches[i];
      if (f->waiting != NULL)
        g_string_free (f->waiting, TRUE);
      if (f->rows != NULL)
        g_array_unref (f->rows);
      if (f->cells != NULL)
        g_string_free (f->cells, TRUE);
      if (f->last != NULL)
        g_string_free (f->last, TRUE);
    }
  g_free (job->fetches);
  if (job->request_cancel_id != 0)
    g_cancellable_disconnect (rtp_request_get_cancellable (job->request), job->request_cancel_id);
  g_object_unref (job->cancellable);
  rtp_request_unref (job->request);
  rtp_history_window_clear (&job->window);
  g_time_zone_unref (job->tz);
  rtp_experiment_free (job->experiment);
  g_ptr_array_unref (job->pvs);
  g_ptr_array_unref (job->warnings);
  g_free (job->disposition);
  if (job->out != NULL)
    g_string_free (job->out, TRUE);
  g_free (job);
}

static gsize
format_time (const Job *job, gint64 secs, gint32 nanos, char *buf)
{
  switch (job->options.time_form)
    {
      case TIME_ISO:
        return rtp_time_format_utc (secs, nanos, buf);
      case TIME_EPOCH:
        return rtp_time_format_epoch (secs, nanos, buf);
      case TIME_LOCAL:
      default:
        return rtp_time_format (job->tz, secs, nanos, buf);
    }
}

/* One point: {"time": "…", "data": v}; for a bin with min, max, count (an integer) and std; with
 * severity and status when asked (null when the appliance gave none). */
static void
append_sample (Job *job, GString *out, const RtpSample *s, gboolean first)
{
  char time_buf[64];
  gsize n = format_time (job, s->secs, s->nanos, time_buf);

  if (!first)
    g_string_append_c (out, ',');
  g_string_append (out, "{\"time\":\"");
  g_string_append_len (out, time_buf, (gssize) n);
  g_string_append (out, "\",\"data\":");
  g_string_append_len (out, s->value, (gssize) s->value_len);
  if (s->binned)
    {
      g_string_append (out, ",\"min\":");
      g_string_append_len (out, s->min, (gssize) s->min_len);
      g_string_append (out, ",\"max\":");
      g_string_append_len (out, s->max, (gssize) s->max_len);
      g_string_append (out, ",\"count\":");
      rtp_csv_append_count (out, s->count, s->count_len);
      g_string_append (out, ",\"std\":");
      g_string_append_len (out, s->std, (gssize) s->std_len);
    }
  if (job->options.severity)
    {
      if (s->severity >= 0)
        g_string_append_printf (out, ",\"severity\":%d", s->severity);
      else
        g_string_append (out, ",\"severity\":null");
    }
  if (job->options.status)
    {
      if (s->status >= 0)
        g_string_append_printf (out, ",\"status\":%d", s->status);
      else
        g_string_append (out, ",\"status\":null");
    }
  g_string_append_c (out, '}');
}

static void
append_prefix (Job *job, GString *out)
{
  g_autoptr (JsonNode)
    node = json_node_init_object (json_node_alloc (), rtp_experiment_to_json (job->experiment, FALSE));
  g_autofree char *experiment = json_to_string (node, FALSE);

  json_object_unref (json_node_get_object (node)); /* init_object took its own reference */
  g_string_append (out, "{\"data\":{\"experiment\":");
  g_string_append (out, experiment);
  g_string_append (out, ",\"process_variables_data\":{");
}

static void
append_suffix (Job *job, GString *out)
{
  g_string_append (out, "}},\"warnings\":[");
  for (guint i = 0; i < job->warnings->len; i++)
    {
      if (i > 0)
        g_string_append_c (out, ',');
      append_json_string (out, g_ptr_array_index (job->warnings, i));
    }
  g_string_append (out, "]}");
}

static void
note_reduced (Job *job, guint index)
{
  PvFetch *f = &job->fetches[index];
  const char *pv = g_ptr_array_index (job->pvs, index);

  if (f->binned > 0)
    g_ptr_array_add (job->warnings, g_strdup_printf (_ ("The data of %s was reduced to %llu points."), pv,
                                                     (unsigned long long) f->points));
  if (f->too_deep > 0)
    {
      g_warning ("the archiver sent %llu values of %s nested deeper than %d levels; they were skipped",
                 (unsigned long long) f->too_deep, pv, RTP_JSON_MAX_DEPTH);
      g_ptr_array_add (job->warnings, g_strdup_printf (_ ("%llu values of %s were nested too deeply and were skipped."),
                                                       (unsigned long long) f->too_deep, pv));
    }
  if (f->nonfinite > 0)
    g_ptr_array_add (
      job->warnings,
      g_strdup_printf (_ ("%llu numbers of %s were not finite (infinite or not a number) and are given as null."),
                       (unsigned long long) f->nonfinite, pv));
}

/* ---- the answer: every PV fetched at once, written PV after PV ----------------------------------
 *
 * The PV being written streams into the answer (its transfer paused while more than HIGH_WATER
 * bytes wait for the client); the PVs after it collect their points meanwhile, up to
 * WAITING_BUDGET bytes together, past which their transfers pause until their turn. So the
 * fetches run in parallel and one request holds a bounded amount, whatever max_points and the
 * window. The reply starts only once FLUSH_AT bytes are ready: an answer that fits is sent with
 * a Content-Length, and an archiver that fails early still gets a clean 502 — only a failure deep
 * into a long stream cuts the answer off. */

#define WAITING_BUDGET ((gsize) 16 * 1024 * 1024)

/* A transfer pauses while its queue is over budget or the client is behind. */
static void
update_pause (PvFetch *f)
{
  gboolean want = f->queue_paused || f->out_paused;

  if (f->transfer != NULL && want != f->paused)
    {
      f->paused = want;
      rtp_archiver_transfer_set_paused (f->transfer, want);
    }
}

static void
stream_drained (gsize queued, gpointer user_data)
{
  Job *job = user_data;
  PvFetch *f = job->current < job->pvs->len ? &job->fetches[job->current] : NULL;

  if (job->options.format != FORMAT_JSON)
    {
      if (queued < LOW_WATER)
        for (guint i = 0; i < job->pvs->len; i++)
          {
            job->fetches[i].out_paused = FALSE;
            update_pause (&job->fetches[i]);
          }
      return;
    }
  if (queued < LOW_WATER && f != NULL && f->transfer != NULL && !f->budget_paused)
    rtp_archiver_transfer_set_paused (f->transfer, FALSE);
}

static void
add_answer_headers (Job *job)
{
  if (job->disposition != NULL)
    rtp_request_add_header (job->request, "Content-Disposition", job->disposition);
}

static void
stream_flush (Job *job)
{
  PvFetch *f = job->current < job->pvs->len ? &job->fetches[job->current] : NULL;

  if (!job->started)
    {
      job->started = TRUE;
      add_answer_headers (job);
      rtp_request_stream_begin (job->request, 200, job->content_type, stream_drained, job);
    }
  rtp_request_stream_write (job->request, job->out);
  if (rtp_request_stream_queued (job->request) <= HIGH_WATER)
    return;
  if (job->options.format != FORMAT_JSON)
    for (guint i = 0; i < job->pvs->len; i++)
      {
        job->fetches[i].out_paused = TRUE;
        update_pause (&job->fetches[i]);
      }
  else if (f != NULL && f->transfer != NULL)
    rtp_archiver_transfer_set_paused (f->transfer, TRUE);
}

/* The whole answer is in job->out: sent with a Content-Length, or as the stream's end. */
static void
finish_answer (Job *job)
{
  job->finished = TRUE;
  if (job->started)
    {
      stream_flush (job);
      rtp_request_stream_end (job->request);
    }
  else
    {
      gsize len = job->out->len;
      g_autoptr (GBytes) bytes = g_bytes_new_take (g_string_free (g_steal_pointer (&job->out), FALSE), len);
      add_answer_headers (job);
      rtp_request_respond_bytes (job->request, 200, job->content_type, bytes);
    }
}

/* ---- CSV/TSV: one row per distinct time over all PVs ----------------------------------------
 *
 * Every PV is fetched at once; each renders its samples as its cells into a queue. The merge
 * writes the earliest time of the queue heads as a row whenever every PV still running has a
 * sample queued, so rows come out in time order while the transfers run. A queue past its share
 * of WAITING_BUDGET pauses its transfer until the merge has caught up; all transfers pause while
 * the client is behind. */

static void
csv_header (Job *job)
{
  static const char *const bin_cols[] = { ".min", ".max", ".count", ".std" };

  rtp_csv_append_text (job->out, "time", 4, job->sep);
  for (guint i = 0; i < job->pvs->len; i++)
    {
      const char *pv = g_ptr_array_index (job->pvs, i);
      g_autoptr (GString) name = g_string_new (NULL);

#define COLUMN(suffix)                                                                                                 \
  do                                                                                                                   \
    {                                                                                                                  \
      g_string_assign (name, pv);                                                                                      \
      g_string_append (name, suffix);                                                                                  \
      g_string_append_c (job->out, job->sep);                                                                          \
      rtp_csv_append_text (job->out, name->str, name->len, job->sep);                                                  \
    }                                                                                                                  \
  while (0)
      COLUMN ("");
      for (guint k = 0; rtp_history_window_has_bins (&job->window) && k < G_N_ELEMENTS (bin_cols); k++)
        COLUMN (bin_cols[k]);
      if (job->options.severity)
        COLUMN (".severity");
      if (job->options.severity || job->options.status)
        COLUMN (".status");
#undef COLUMN
    }
  g_string_append (job->out, "\r\n");
}

static void
csv_render (Job *job, GString *out, const RtpSample *s)
{
  char sep = job->sep;

  rtp_csv_append_value (out, s->value, s->value_len, sep);
  if (rtp_history_window_has_bins (&job->window))
    {
      if (s->binned)
        {
          g_string_append_c (out, sep);
          g_string_append_len (out, s->min, (gssize) s->min_len);
          g_string_append_c (out, sep);
          g_string_append_len (out, s->max, (gssize) s->max_len);
          g_string_append_c (out, sep);
          rtp_csv_append_count (out, s->count, s->count_len);
          g_string_append_c (out, sep);
          g_string_append_len (out, s->std, (gssize) s->std_len);
        }
      else
        for (int k = 0; k < 4; k++)
          g_string_append_c (out, sep);
    }
  if (job->options.severity)
    {
      g_string_append_c (out, sep);
      if (s->severity >= 0)
        g_string_append_printf (out, "%d", s->severity);
    }
  if (job->options.severity || job->options.status)
    {
      g_string_append_c (out, sep);
      if (s->status >= 0)
        g_string_append_printf (out, "%d", s->status);
    }
}

static gboolean
queue_empty (const PvFetch *f)
{
  return f->head == f->rows->len;
}

/* Drops the rows written; keeps the queue's memory to its unwritten part. */
static void
queue_compact (PvFetch *f)
{
  if (queue_empty (f))
    {
      g_array_set_size (f->rows, 0);
      g_string_truncate (f->cells, 0);
      f->head = 0;
    }
  else if (f->head > 1024 && f->head * 2 > f->rows->len)
    {
      gsize drop = g_array_index (f->rows, QueuedRow, f->head).off;
      g_array_remove_range (f->rows, 0, f->head);
      g_string_erase (f->cells, 0, (gssize) drop);
      for (guint i = 0; i < f->rows->len; i++)
        g_array_index (f->rows, QueuedRow, i).off -= drop;
      f->head = 0;
    }
}

static gsize
queue_bytes (const PvFetch *f)
{
  return queue_empty (f) ? 0 : f->cells->len - g_array_index (f->rows, QueuedRow, f->head).off;
}

static void
csv_merge (Job *job)
{
  char time_buf[64];

  while (!job->finished)
    {
      gboolean have = FALSE, waiting = FALSE;
      gint64 secs = 0;
      gint32 nanos = 0;

      for (guint i = 0; i < job->pvs->len && !waiting; i++)
        {
          PvFetch *f = &job->fetches[i];
          const QueuedRow *r;
          if (queue_empty (f))
            {
              waiting = !f->done;
              continue;
            }
          r = &g_array_index (f->rows, QueuedRow, f->head);
          if (!have || r->secs < secs || (r->secs == secs && r->nanos < nanos))
            {
              have = TRUE;
              secs = r->secs;
              nanos = r->nanos;
            }
        }
      if (waiting)
        break;
      if (!have)
        {
          finish_answer (job); /* every PV is done and written */
          return;
        }
      g_string_append_len (job->out, time_buf, (gssize) format_time (job, secs, nanos, time_buf));
      for (guint i = 0; i < job->pvs->len; i++)
        {
          PvFetch *f = &job->fetches[i];
          const QueuedRow *r = queue_empty (f) ? NULL : &g_array_index (f->rows, QueuedRow, f->head);
          g_string_append_c (job->out, job->sep);
          if (r != NULL && r->secs == secs && r->nanos == nanos)
            {
              g_string_append_len (job->out, f->cells->str + r->off, (gssize) r->len);
              if (job->options.align_previous)
                {
                  g_string_overwrite_len (f->last, 0, f->cells->str + r->off, (gssize) r->len);
                  g_string_truncate (f->last, r->len);
                  f->has_last = TRUE;
                }
              f->head++;
            }
          else if (f->has_last)
            g_string_append_len (job->out, f->last->str, (gssize) f->last->len);
          else
            for (guint k = 1; k < job->n_cols; k++)
              g_string_append_c (job->out, job->sep);
        }
      g_string_append (job->out, "\r\n");
      if (job->out->len >= FLUSH_AT)
        stream_flush (job);
    }
  for (guint i = 0; i < job->pvs->len && !job->finished; i++)
    {
      PvFetch *f = &job->fetches[i];
      queue_compact (f);
      if (f->queue_paused && queue_bytes (f) < job->queue_budget / 2)
        {
          f->queue_paused = FALSE;
          update_pause (f);
        }
    }
}

static void
csv_on_sample (Job *job, PvFetch *f, const RtpSample *sample)
{
  gboolean was_empty = queue_empty (f);
  QueuedRow row = { .secs = sample->secs, .nanos = sample->nanos, .off = f->cells->len };

  csv_render (job, f->cells, sample);
  row.len = f->cells->len - row.off;
  g_array_append_val (f->rows, row);
  f->points++;
  if (sample->binned)
    f->binned++;
  if (was_empty)
    csv_merge (job); /* only an empty queue held the merge back */
  if (!job->finished && !f->queue_paused && queue_bytes (f) > job->queue_budget)
    {
      f->queue_paused = TRUE;
      update_pause (f);
    }
}

static void
open_pv (Job *job, guint index)
{
  if (index > 0)
    g_string_append_c (job->out, ',');
  append_json_string (job->out, g_ptr_array_index (job->pvs, index));
  g_string_append (job->out, ":[");
}

static gboolean
on_sample (const RtpSample *sample, gpointer user_data)
{
  PvFetch *f = user_data;
  Job *job = f->job;
  GString *out;
  gsize before;

  f->nonfinite += sample->nonfinite;
  if (sample->too_deep)
    {
      f->too_deep++;
      return TRUE;
    }
  if (job->finished)
    return TRUE;
  if (job->options.format != FORMAT_JSON)
    {
      csv_on_sample (job, f, sample);
      return TRUE;
    }
  out = f->index == job->current ? job->out : f->waiting;
  before = out->len;
  append_sample (job, out, sample, f->points == 0);
  f->points++;
  if (sample->binned)
    f->binned++;
  if (f->index == job->current)
    {
      if (job->out->len >= FLUSH_AT)
        stream_flush (job);
    }
  else if ((job->waiting_bytes += out->len - before) > WAITING_BUDGET && !f->budget_paused)
    {
      f->budget_paused = TRUE;
      rtp_archiver_transfer_set_paused (f->transfer, TRUE);
    }
  return TRUE;
}

static void
fail (Job *job, const GError *error)
{
  job->finished = TRUE;
  g_cancellable_cancel (job->cancellable);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return; /* the client went away */
  if (!job->started)
    rtp_request_respond_error (job->request, error);
  else
    {
      g_warning ("the archiver failed while %s was streamed; the answer is cut off",
                 (const char *) g_ptr_array_index (job->pvs, job->current));
      rtp_request_stream_abort (job->request);
    }
}

/* Closes the PVs that are complete, in order, and hands the next one the pen. */
static void
advance (Job *job)
{
  while (job->current < job->pvs->len && job->fetches[job->current].done)
    {
      g_string_append_c (job->out, ']');
      note_reduced (job, job->current);
      job->current++;
      if (job->current == job->pvs->len)
        break;
      {
        PvFetch *next = &job->fetches[job->current];
        open_pv (job, job->current);
        g_string_append_len (job->out, next->waiting->str, (gssize) next->waiting->len);
        job->waiting_bytes -= MIN (job->waiting_bytes, next->waiting->len);
        g_string_free (next->waiting, TRUE);
        next->waiting = NULL;
        if (next->budget_paused && next->transfer != NULL)
          {
            next->budget_paused = FALSE;
            rtp_archiver_transfer_set_paused (next->transfer, FALSE);
          }
        if (job->out->len >= FLUSH_AT)
          stream_flush (job);
      }
    }
  if (job->current < job->pvs->len)
    return;
  append_suffix (job, job->out);
  finish_answer (job);
}

static void
fetch_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  PvFetch *f = user_data;
  Job *job = f->job;
  g_autoptr (GError) error = NULL;
  gboolean found = FALSE;

  f->transfer = NULL;
  f->done = TRUE;
  rtp_request_enter (job->request);
  if (!rtp_history_fetch_finish (job->services->history, result, &found, &error))
    {
      if (!job->finished)
        fail (job, error);
    }
  else if (!job->finished && job->options.format != FORMAT_JSON)
    {
      if (f->too_deep > 0)
        g_warning ("the archiver sent %llu values of %s nested deeper than %d levels; they were skipped",
                   (unsigned long long) f->too_deep, (const char *) g_ptr_array_index (job->pvs, f->index),
                   RTP_JSON_MAX_DEPTH);
      csv_merge (job);
    }
  else if (!job->finished)
    advance (job);
  rtp_request_leave (job->request);
  if (--job->outstanding == 0)
    job_free (job);
}

static gboolean
cancel_later (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

/* The client went away. The transfers are cancelled from an idle: cancelling them here could end
 * the job, whose disconnection from the request's cancellable would then wait for this very
 * handler to return. */
static void
request_gone (GCancellable *cancellable, gpointer user_data)
{
  Job *job = user_data;
  job->finished = TRUE;
  g_idle_add_full (G_PRIORITY_DEFAULT, cancel_later, g_object_ref (job->cancellable), g_object_unref);
}

/* ---- the request ---------------------------------------------------------------- */

/* A time member: absent or null, or a string (the history service reads it); anything else is
 * answered here with the contract's message, which shows the JSON as it was sent. */
static gboolean
time_member (RtpRequest *request, JsonObject *body, const char *name, const char **out)
{
  JsonNode *node = body != NULL ? json_object_get_member (body, name) : NULL;
  g_autofree char *text = NULL;
  g_autofree char *message = NULL;

  *out = NULL;
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    {
      *out = json_node_get_string (node);
      return TRUE;
    }
  text = json_to_string (node, FALSE);
  message = g_strdup_printf (_ ("%s: The time (%s) is not valid. Use YYYY-MM-DD HH:MM:SS or ISO 8601."), name, text);
  rtp_request_respond_error_message (request, 400, message);
  return FALSE;
}

/* The presentation keys (format, align, include, time_format). FALSE: answered with a 400 naming the key. */
static gboolean
read_options (RtpRequest *request, JsonObject *body, Options *options)
{
  const char *text = NULL;
  g_auto (GStrv) include = NULL;
  RtpFieldState state;

  memset (options, 0, sizeof *options);
  state = rtp_routes_read_string (body, "format", &text);
  if (state == RTP_FIELD_SET && g_str_equal (text, "json"))
    options->format = FORMAT_JSON;
  else if (state == RTP_FIELD_SET && g_str_equal (text, "csv"))
    options->format = FORMAT_CSV;
  else if (state == RTP_FIELD_SET && g_str_equal (text, "tsv"))
    options->format = FORMAT_TSV;
  else if (state == RTP_FIELD_ABSENT || state == RTP_FIELD_NULL)
    {
      const char *accept = rtp_request_get_header (request, "Accept");
      if (accept != NULL && strstr (accept, "text/csv") != NULL)
        options->format = FORMAT_CSV;
      else if (accept != NULL && strstr (accept, "text/tab-separated-values") != NULL)
        options->format = FORMAT_TSV;
    }
  else
    {
      rtp_request_respond_error_message (request, 400, _ ("format: Value must be \"json\", \"csv\" or \"tsv\"."));
      return FALSE;
    }

  state = rtp_routes_read_string (body, "align", &text);
  if (state == RTP_FIELD_SET && (g_str_equal (text, "none") || g_str_equal (text, "previous")))
    options->align_previous = g_str_equal (text, "previous");
  else if (state != RTP_FIELD_ABSENT && state != RTP_FIELD_NULL)
    {
      rtp_request_respond_error_message (request, 400, _ ("align: Value must be \"none\" or \"previous\"."));
      return FALSE;
    }

  state = rtp_routes_read_string (body, "time_format", &text);
  if (state == RTP_FIELD_SET && g_str_equal (text, "local"))
    options->time_form = TIME_LOCAL;
  else if (state == RTP_FIELD_SET && g_str_equal (text, "iso"))
    options->time_form = TIME_ISO;
  else if (state == RTP_FIELD_SET && g_str_equal (text, "epoch"))
    options->time_form = TIME_EPOCH;
  else if (state != RTP_FIELD_ABSENT && state != RTP_FIELD_NULL)
    {
      rtp_request_respond_error_message (request, 400,
                                         _ ("time_format: Value must be \"local\", \"iso\" or \"epoch\"."));
      return FALSE;
    }

  state = rtp_routes_read_strings (body, "include", &include);
  for (guint i = 0; state == RTP_FIELD_SET && include[i] != NULL; i++)
    {
      if (g_str_equal (include[i], "severity"))
        options->severity = TRUE;
      else if (g_str_equal (include[i], "status"))
        options->status = TRUE;
      else
        state = RTP_FIELD_WRONG_TYPE;
    }
  if (state == RTP_FIELD_WRONG_TYPE)
    {
      rtp_request_respond_error_message (request, 400,
                                         _ ("include: Value must be a list of \"severity\" and \"status\"."));
      return FALSE;
    }
  if (options->format != FORMAT_JSON && options->severity)
    options->status = TRUE; /* <pv>.severity comes with <pv>.status */
  return TRUE;
}

/* "<exp>_<since>_<until>.csv", the times in ARCHIVER_TIMEZONE as YYYYMMDDTHHMMSS; characters a
 * file name had better not have become '_'. */
static char *
export_disposition (Job *job)
{
  char since[64], until[64];
  g_autoptr (GString) name = g_string_new (NULL);

  rtp_time_format_compact (job->tz, job->window.from_us / G_USEC_PER_SEC, since);
  rtp_time_format_compact (job->tz, job->window.to_us / G_USEC_PER_SEC, until);
  for (const char *p = job->experiment->short_id; *p != '\0'; p++)
    g_string_append_c (name, g_ascii_isalnum (*p) || *p == '-' || *p == '.' ? *p : '_');
  return g_strdup_printf ("attachment; filename=\"%s_%s_%s.%s\"", name->str, since, until,
                          job->options.format == FORMAT_TSV ? "tsv" : "csv");
}

static void
get_data (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *short_id = rtp_request_get_param (request, 0);
  const char *only_pv = rtp_request_get_n_params (request) > 1 ? rtp_request_get_param (request, 1) : NULL;
  JsonObject *body = rtp_request_get_body (request);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpExperiment) experiment = NULL;
  JsonNode *mp = body != NULL ? json_object_get_member (body, "max_points") : NULL;
  RtpHistoryQuery query = { 0 };
  RtpHistoryWindow window = { 0 };
  Options options;
  Job *job;

  experiment = rtp_experiment_store_get_experiment (services->experiments, short_id, &error);
  if (experiment == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  if (only_pv != NULL && !g_ptr_array_find_with_equal_func (experiment->pv_strings, only_pv, g_str_equal, NULL))
    {
      g_autoptr (GError) missing = rtp_error_new_not_found (_ ("process variable"), only_pv);
      rtp_request_respond_error (request, missing);
      return;
    }
  /* Deviation (API.md): admins may read every experiment */
  if (!rtp_routes_check_access (services, request, short_id, RTP_ACCESS_READ))
    return;

  if (!time_member (request, body, "since", &query.since) || !time_member (request, body, "until", &query.until))
    return;
  if (mp != NULL && !JSON_NODE_HOLDS_NULL (mp))
    {
      if (!JSON_NODE_HOLDS_VALUE (mp) || json_node_get_value_type (mp) != G_TYPE_INT64)
        {
          rtp_request_respond_error_message (request, 400, _ ("max_points: Value must be a non-negative integer."));
          return;
        }
      query.has_max_points = TRUE;
      query.max_points = json_node_get_int (mp);
    }
  query.operator_state = rtp_routes_read_string (body, "operator", &query.operator_name);
  query.bin_s_state = rtp_routes_read_integer (body, "bin_s", &query.bin_s);
  if (!read_options (request, body, &options))
    return;
  if (!rtp_history_resolve (services->history, &query, &window, &error))
    {
      rtp_request_respond_error (request, error);
      return;
    }
  job = g_new0 (Job, 1);
  job->warnings = g_ptr_array_new_with_free_func (g_free);
  if (window.defaulted != NULL)
    g_ptr_array_add (job->warnings, g_steal_pointer (&window.defaulted));
  job->window = window;
  job->options = options;
  job->content_type = options.format == FORMAT_CSV   ? "text/csv; charset=utf-8"
                      : options.format == FORMAT_TSV ? "text/tab-separated-values; charset=utf-8"
                                                     : "application/json; charset=utf-8";
  job->sep = options.format == FORMAT_TSV ? '\t' : ',';
  job->n_cols = 1 + (rtp_history_window_has_bins (&window) ? 4 : 0) + (options.severity ? 1 : 0) +
                (options.severity || options.status ? 1 : 0);

  job->services = services;
  job->request = rtp_request_ref (request);
  job->tz = g_time_zone_ref (rtp_history_get_time_zone (services->history));
  job->experiment = g_steal_pointer (&experiment);
  job->pvs = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < job->experiment->pv_strings->len; i++)
    {
      const char *pv = g_ptr_array_index (job->experiment->pv_strings, i);
      if (only_pv == NULL || g_str_equal (pv, only_pv))
        g_ptr_array_add (job->pvs, g_strdup (pv));
    }
  job->fetches = g_new0 (PvFetch, MAX (job->pvs->len, 1));
  job->cancellable = g_cancellable_new ();
  job->out = g_string_sized_new (FLUSH_AT * 2);

  if (!rtp_history_is_configured (services->history))
    {
      g_autoptr (GError)
        e = g_error_new (RTP_ERROR, RTP_ERROR_UPSTREAM, "%s", _ ("Could not get process variable data from archiver."));
      rtp_request_respond_error (request, e);
      job_free (job);
      return;
    }
  rtp_request_pause (request);
  if (options.format != FORMAT_JSON)
    {
      job->disposition = export_disposition (job);
      job->queue_budget = MAX (WAITING_BUDGET / MAX (job->pvs->len, 1), (gsize) 256 * 1024);
      csv_header (job);
      for (guint i = 0; i < job->pvs->len; i++)
        {
          PvFetch *f = &job->fetches[i];
          f->rows = g_array_new (FALSE, FALSE, sizeof (QueuedRow));
          f->cells = g_string_new (NULL);
          f->last = g_string_new (NULL);
        }
      if (job->pvs->len == 0)
        {
          finish_answer (job);
          job_free (job);
          return;
        }
    }
  else
    append_prefix (job, job->out);
  if (job->pvs->len == 0)
    {
      /* an experiment always has PVs; answer the empty shape all the same */
      job->outstanding = 1;
      advance (job);
      job_free (job);
      return;
    }
  if (options.format == FORMAT_JSON)
    open_pv (job, 0);
  job->request_cancel_id = g_cancellable_connect (rtp_request_get_cancellable (request), G_CALLBACK (request_gone), job,
                                                  NULL);
  job->outstanding = job->pvs->len;
  for (guint i = 0; i < job->pvs->len; i++)
    {
      PvFetch *f = &job->fetches[i];
      f->job = job;
      f->index = i;
      f->waiting = i > 0 && options.format == FORMAT_JSON ? g_string_new (NULL) : NULL;
      f->transfer = rtp_history_fetch_async (services->history, g_ptr_array_index (job->pvs, i), &job->window,
                                             on_sample, f, job->cancellable, fetch_done, f);
    }
}

/* ---- values at a moment: POST /data/<short_id>/at ---------------------------------------- */

typedef struct {
  RtpRequest *request; /* (owned) */
  RtpServices *services;
  GTimeZone *tz;  /* (owned) */
  GPtrArray *pvs; /* (owned) the experiment's PVs, NULL-terminated */
  gint64 at_us;
} AtRequest;

static void
at_request_free (AtRequest *r)
{
  rtp_request_unref (r->request);
  g_time_zone_unref (r->tz);
  g_ptr_array_unref (r->pvs);
  g_free (r);
}

static void
values_at_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AtRequest *r = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GHashTable) values = rtp_history_values_at_finish (RTP_HISTORY (source), result, &error);
  char time_buf[64];

  rtp_request_enter (r->request);
  if (values == NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        rtp_request_respond_error (r->request, error);
    }
  else
    {
      g_autoptr (GString) out = g_string_new ("{\"at\":\"");
      gint64 secs = r->at_us / G_USEC_PER_SEC - (r->at_us % G_USEC_PER_SEC < 0 ? 1 : 0);
      gint32 nanos = (gint32) ((r->at_us - secs * G_USEC_PER_SEC) * 1000);
      gsize len;
      GBytes *bytes;

      g_string_append_len (out, time_buf, (gssize) rtp_time_format (r->tz, secs, nanos, time_buf));
      g_string_append (out, "\",\"values\":{");
      for (guint i = 0; g_ptr_array_index (r->pvs, i) != NULL; i++)
        {
          const char *pv = g_ptr_array_index (r->pvs, i);
          const RtpValueAt *v = g_hash_table_lookup (values, pv);
          if (i > 0)
            g_string_append_c (out, ',');
          rtp_json_append_string (out, pv);
          if (v == NULL)
            {
              g_string_append (out, ":null");
              continue;
            }
          g_string_append (out, ":{\"time\":\"");
          g_string_append_len (out, time_buf, (gssize) rtp_time_format (r->tz, v->secs, v->nanos, time_buf));
          g_string_append (out, "\",\"data\":");
          g_string_append (out, v->value);
          if (v->severity >= 0)
            g_string_append_printf (out, ",\"severity\":%d", v->severity);
          else
            g_string_append (out, ",\"severity\":null");
          if (v->status >= 0)
            g_string_append_printf (out, ",\"status\":%d}", v->status);
          else
            g_string_append (out, ",\"status\":null}");
        }
      g_string_append (out, "}}");
      len = out->len;
      bytes = g_bytes_new_take (g_string_free (g_steal_pointer (&out), FALSE), len);
      rtp_request_respond_bytes (r->request, 200, "application/json; charset=utf-8", bytes);
      g_bytes_unref (bytes);
    }
  rtp_request_leave (r->request);
  at_request_free (r);
}

static void
get_values_at (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *short_id = rtp_request_get_param (request, 0);
  JsonObject *body = rtp_request_get_body (request);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpExperiment) experiment = NULL;
  const char *at = NULL;
  AtRequest *r;

  experiment = rtp_experiment_store_get_experiment (services->experiments, short_id, &error);
  if (experiment == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  if (!rtp_routes_check_access (services, request, short_id, RTP_ACCESS_READ) ||
      !time_member (request, body, "at", &at))
    return;
  r = g_new0 (AtRequest, 1);
  if (!rtp_history_resolve_moment (services->history, "at", at, &r->at_us, &error))
    {
      g_free (r);
      rtp_request_respond_error (request, error);
      return;
    }
  if (!rtp_history_is_configured (services->history))
    {
      g_autoptr (GError)
        e = g_error_new (RTP_ERROR, RTP_ERROR_UPSTREAM, "%s", _ ("Could not get process variable data from archiver."));
      g_free (r);
      rtp_request_respond_error (request, e);
      return;
    }
  r->request = rtp_request_ref (request);
  r->services = services;
  r->tz = g_time_zone_ref (rtp_history_get_time_zone (services->history));
  r->pvs = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < experiment->pv_strings->len; i++)
    g_ptr_array_add (r->pvs, g_strdup (g_ptr_array_index (experiment->pv_strings, i)));
  g_ptr_array_add (r->pvs, NULL);
  rtp_request_pause (request);
  rtp_history_values_at_async (services->history, (const char *const *) r->pvs->pdata, r->at_us,
                               rtp_request_get_cancellable (request), values_at_done, r);
}

/* ---- search: GET /archiver/pvs ---------------------------------------------------------- */

typedef struct {
  RtpRequest *request; /* (owned) */
  RtpServices *services;
} SearchRequest;

static void
search_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SearchRequest *sr = user_data;
  g_autoptr (RtpRequest) request = sr->request;
  RtpServices *services = sr->services;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) names = rtp_history_search_finish (RTP_HISTORY (source), result, &error);
  JsonArray *pvs;

  g_free (sr);
  rtp_request_enter (request);
  if (names == NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        rtp_request_respond_error (request, error);
      rtp_request_leave (request);
      return;
    }
  pvs = json_array_new ();
  for (guint i = 0; names[i] != NULL; i++)
    {
      g_autoptr (GError) lookup_error = NULL;
      g_autoptr (RtpProcessVariable) pv = rtp_experiment_store_get_pv (services->experiments, names[i], &lookup_error);
      JsonObject *o;
      if (pv == NULL && !g_error_matches (lookup_error, RTP_ERROR, RTP_ERROR_NOT_FOUND))
        {
          json_array_unref (pvs);
          rtp_request_respond_error (request, lookup_error);
          rtp_request_leave (request);
          return;
        }
      o = json_object_new ();
      json_object_set_string_member (o, "pv_string", names[i]);
      json_object_set_boolean_member (o, "configured", pv != NULL);
      if (pv != NULL)
        json_object_set_string_member (o, "experiment_short_id", pv->experiment_short_id);
      else
        json_object_set_null_member (o, "experiment_short_id");
      json_array_add_object_element (pvs, o);
    }
  rtp_request_respond_object (request, 200, rtp_routes_list_answer ("pvs", pvs));
  rtp_request_leave (request);
}

static void
search_pvs (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *pattern = rtp_request_get_query (request, "pattern");
  const char *regex = rtp_request_get_query (request, "regex");
  const char *limit_text = rtp_request_get_query (request, "limit");
  guint64 limit = 100;
  SearchRequest *sr;

  if ((pattern == NULL) == (regex == NULL) || (pattern != NULL && *pattern == '\0') ||
      (regex != NULL && *regex == '\0'))
    {
      rtp_request_respond_error_message (
        request, 400, _ ("pattern: Give either a glob pattern (pattern=…) or a regular expression (regex=…)."));
      return;
    }
  if (limit_text != NULL && (!g_ascii_string_to_unsigned (limit_text, 10, 1, 1000, &limit, NULL)))
    {
      rtp_request_respond_error_message (request, 400, _ ("limit: Value must be an integer from 1 to 1000."));
      return;
    }
  if (!rtp_history_is_configured (services->history))
    {
      g_autoptr (GError)
        e = g_error_new (RTP_ERROR, RTP_ERROR_UPSTREAM, "%s", _ ("Could not get process variable data from archiver."));
      rtp_request_respond_error (request, e);
      return;
    }
  sr = g_new0 (SearchRequest, 1);
  sr->request = rtp_request_ref (request);
  sr->services = services;
  rtp_request_pause (request);
  rtp_history_search_async (services->history, pattern, regex, (guint) limit, rtp_request_get_cancellable (request),
                            search_done, sr);
}

/* ---- validate ---------------------------------------------------------------- */

static void
exists_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (RtpRequest) request = user_data;
  g_autoptr (GError) error = NULL;
  gboolean exists = FALSE;

  rtp_request_enter (request);
  if (!rtp_archiver_client_exists_finish (RTP_ARCHIVER_CLIENT (source), result, &exists, &error))
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        rtp_request_respond_error (request, error);
    }
  else
    {
      JsonObject *o = json_object_new ();
      json_object_set_boolean_member (o, "pv_string_exists", exists);
      rtp_request_respond_object (request, 200, o);
    }
  rtp_request_leave (request);
}

static void
validate_pv (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;

  rtp_request_pause (request);
  rtp_archiver_client_exists_async (services->archiver, rtp_request_get_param (request, 0),
                                    rtp_request_get_cancellable (request), exists_done, rtp_request_ref (request));
}

void
rtp_routes_data_register (RtpHttpServer *http, RtpServices *services)
{
  rtp_http_server_add_route (http, "POST", "/data/*", RTP_ROUTE_AUTH | RTP_ROUTE_JSON_OPTIONAL, get_data, services);
  rtp_http_server_add_route (http, "POST", "/data/*/*", RTP_ROUTE_AUTH | RTP_ROUTE_JSON_OPTIONAL, get_data, services);
  rtp_http_server_add_route (http, "POST", "/data/*/at", RTP_ROUTE_AUTH | RTP_ROUTE_JSON_OPTIONAL, get_values_at,
                             services);
  rtp_http_server_add_route (http, "GET", "/archiver/pvs", RTP_ROUTE_ADMIN, search_pvs, services);
  rtp_http_server_add_route (http, "GET", "/data/validate_pv_string/*", RTP_ROUTE_ADMIN, validate_pv, services);
  rtp_http_server_add_route (http, "GET", "/validate_pv_string/*", RTP_ROUTE_ADMIN, validate_pv, services);
}
