/* rtp-export.c: archived data of an experiment written as one answer (see rtp-export.h)
 *
 * JSON is written PV after PV, as /data always answered; CSV/TSV is one row per distinct time,
 * merged while the transfers run. Both keep what one answer holds bounded (see "the answer" and
 * "CSV/TSV" below). The history service decides the window and the appliance's expression. */
#define G_LOG_DOMAIN "RtpExport"

#include "rtp-export.h"
#include "rtp-csv.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-json.h"
#include "rtp-time.h"

#include <string.h>

#define FLUSH_AT ((gsize) 64 * 1024)
#define HIGH_WATER ((gsize) 4 * 1024 * 1024)
#define LOW_WATER ((gsize) 1 * 1024 * 1024)

/* A sample waiting in a PV's queue for the CSV merge: its time and its cells in PvFetch.cells. */
typedef struct {
  gint64 secs;
  gint32 nanos;
  gsize off, len;
} QueuedRow;

typedef RtpExport Job;

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

struct _RtpExport {
  RtpHistory *history; /* (owned) */
  const RtpExportSinkFuncs *sink_funcs;
  gpointer sink;
  GDestroyNotify sink_free;
  GCancellable *cancellable;        /* (owned) cancels every transfer: the reader went away, or one PV failed */
  GCancellable *reader_cancellable; /* (owned) (nullable) the reader's: cancelled when it went away */
  gulong reader_cancel_id;
  GTimeZone *tz;             /* (owned) */
  RtpExperiment *experiment; /* (owned) */
  GPtrArray *pvs;            /* (owned) pv strings to return */
  RtpHistoryWindow window;
  RtpExportOptions options;
  char sep;           /* CSV/TSV: ',' or '\t' */
  guint n_cols;       /* CSV/TSV: the columns of one PV */
  gsize queue_budget; /* CSV/TSV: bytes one PV's queue may hold before its transfer pauses */
  const char *content_type;
  char *disposition;                   /* (owned) (nullable) CSV/TSV: Content-Disposition */
  GPtrArray *warnings;                 /* (owned) */
  GHashTable *meta;                    /* (owned) (nullable) include meta: pv → metadata text, once fetched */
  RtpArchiverTransfer *multi_transfer; /* (nullable) the one getDataForPVs.json transfer */
  gboolean *multi_seen;                /* (owned) (nullable) which PVs its answer has given */
  gboolean multi_opened;               /* a PV's array is open in the answer */
  gboolean meta_pending;
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
  if (job->reader_cancel_id != 0)
    g_cancellable_disconnect (job->reader_cancellable, job->reader_cancel_id);
  g_clear_object (&job->reader_cancellable);
  g_object_unref (job->cancellable);
  if (job->sink_free != NULL)
    job->sink_free (job->sink);
  g_object_unref (job->history);
  rtp_history_window_clear (&job->window);
  g_time_zone_unref (job->tz);
  rtp_experiment_free (job->experiment);
  g_ptr_array_unref (job->pvs);
  g_ptr_array_unref (job->warnings);
  g_free (job->disposition);
  g_clear_pointer (&job->meta, g_hash_table_unref);
  g_free (job->multi_seen);
  if (job->out != NULL)
    g_string_free (job->out, TRUE);
  g_free (job);
}

static gsize
format_time (const Job *job, gint64 secs, gint32 nanos, char *buf)
{
  switch (job->options.time_form)
    {
      case RTP_EXPORT_TIME_ISO:
        return rtp_time_format_utc (secs, nanos, buf);
      case RTP_EXPORT_TIME_EPOCH:
        return rtp_time_format_epoch (secs, nanos, buf);
      case RTP_EXPORT_TIME_LOCAL:
      default:
        return rtp_time_format (job->tz, secs, nanos, buf);
    }
}

/* One point: {"time": "…", "data": v}; for a bin with min, max, count (an integer) and std; with
 * severity and status when asked (null when the appliance gave none). */
static void
append_sample (Job *job, GString *out, const RtpSample *s, gboolean first)
{
  static const char head[] = ",{\"time\":\"";
  static const char middle[] = "\",\"data\":";
  gsize at = out->len;
  char *p;

  /* the common part written in place: one size change instead of six appends (a million points
   * per answer) */
  g_string_set_size (out, at + sizeof head + 64 + sizeof middle + s->value_len + 1);
  p = out->str + at;
  if (first)
    {
      memcpy (p, head + 1, sizeof head - 2);
      p += sizeof head - 2;
    }
  else
    {
      memcpy (p, head, sizeof head - 1);
      p += sizeof head - 1;
    }
  p += format_time (job, s->secs, s->nanos, p);
  memcpy (p, middle, sizeof middle - 1);
  p += sizeof middle - 1;
  memcpy (p, s->value, s->value_len);
  p += s->value_len;
  g_string_truncate (out, (gsize) (p - out->str));
  if (!s->binned && !job->options.severity && !job->options.status)
    {
      g_string_append_c (out, '}');
      return;
    }
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

/* {"data": {"experiment": {short_id, human_readable_name, process_variable_urls}, … as
 * rtp_experiment_to_json() writes it for GET /experiments, without the user URLs. */
static void
append_prefix (Job *job, GString *out)
{
  const RtpExperiment *e = job->experiment;

  g_string_append (out, "{\"data\":{\"experiment\":{\"short_id\":");
  rtp_json_append_string (out, e->short_id);
  g_string_append (out, ",\"human_readable_name\":");
  rtp_json_append_string (out, e->human_readable_name);
  g_string_append (out, ",\"process_variable_urls\":[");
  for (guint i = 0; i < e->pv_strings->len; i++)
    {
      /* as rtp_url_for() */
      g_autofree char *escaped = g_uri_escape_string (g_ptr_array_index (e->pv_strings, i),
                                                      G_URI_RESERVED_CHARS_ALLOWED_IN_PATH_ELEMENT, FALSE);
      g_autofree char *url = g_strconcat ("/experiments/pvs/", escaped, NULL);
      if (i > 0)
        g_string_append_c (out, ',');
      rtp_json_append_string (out, url);
    }
  g_string_append (out, "]},\"process_variables_data\":{");
}

static void
append_suffix (Job *job, GString *out)
{
  g_string_append (out, "}");
  if (job->options.meta)
    {
      g_string_append (out, ",\"process_variables_meta\":{");
      for (guint i = 0; i < job->pvs->len; i++)
        {
          const char *pv = g_ptr_array_index (job->pvs, i);
          const char *meta = job->meta != NULL ? g_hash_table_lookup (job->meta, pv) : NULL;
          if (i > 0)
            g_string_append_c (out, ',');
          rtp_json_append_string (out, pv);
          g_string_append_c (out, ':');
          g_string_append (out, meta != NULL ? meta : "null");
        }
      g_string_append_c (out, '}');
    }
  g_string_append (out, "},\"warnings\":[");
  for (guint i = 0; i < job->warnings->len; i++)
    {
      if (i > 0)
        g_string_append_c (out, ',');
      rtp_json_append_string (out, g_ptr_array_index (job->warnings, i));
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

void
rtp_export_drained (RtpExport *job, gsize queued)
{
  PvFetch *f = job->current < job->pvs->len ? &job->fetches[job->current] : NULL;

  if (job->options.format != RTP_EXPORT_JSON)
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
stream_flush (Job *job)
{
  PvFetch *f = job->current < job->pvs->len ? &job->fetches[job->current] : NULL;

  if (!job->started)
    {
      job->started = TRUE;
      job->sink_funcs->begin (job->sink, job, job->content_type, job->disposition);
    }
  job->sink_funcs->write (job->sink, job->out);
  if (job->sink_funcs->queued (job->sink) <= HIGH_WATER)
    return;
  if (job->options.format != RTP_EXPORT_JSON)
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
      job->sink_funcs->end (job->sink);
    }
  else
    {
      gsize len = job->out->len;
      g_autoptr (GBytes) bytes = g_bytes_new_take (g_string_free (g_steal_pointer (&job->out), FALSE), len);
      job->sink_funcs->complete (job->sink, job->content_type, job->disposition, bytes);
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
  rtp_json_append_string (job->out, g_ptr_array_index (job->pvs, index));
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
  if (job->options.format != RTP_EXPORT_JSON)
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
    job->sink_funcs->fail (job->sink, error);
  else
    {
      g_warning ("the archiver failed while %s was streamed; the answer is cut off",
                 (const char *) g_ptr_array_index (job->pvs, MIN (job->current, job->pvs->len - 1)));
      job->sink_funcs->abort (job->sink);
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
  if (job->current < job->pvs->len || job->meta_pending)
    return; /* the metadata's arrival calls again */
  append_suffix (job, job->out);
  finish_answer (job);
}

/* Around the export's callbacks: the sink's context (an HTTP request's language) */
static void
sink_enter (Job *job)
{
  if (job->sink_funcs->enter != NULL)
    job->sink_funcs->enter (job->sink);
}

/* ...and after one: a completed operation gives up its hold on the job; the last frees it. */
static void
sink_leave_and_release (Job *job)
{
  if (job->sink_funcs->leave != NULL)
    job->sink_funcs->leave (job->sink);
  if (--job->outstanding == 0)
    job_free (job);
}

static void
metadata_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Job *job = user_data;
  g_autoptr (GError) error = NULL;

  job->meta = rtp_history_metadata_finish (job->history, result, &error);
  job->meta_pending = FALSE;
  sink_enter (job);
  if (job->meta == NULL && !job->finished)
    fail (job, error);
  else if (!job->finished)
    advance (job);
  sink_leave_and_release (job);
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
  sink_enter (job);
  if (!rtp_history_fetch_finish (job->history, result, &found, &error))
    {
      if (!job->finished)
        fail (job, error);
    }
  else if (!job->finished && job->options.format != RTP_EXPORT_JSON)
    {
      if (f->too_deep > 0)
        g_warning ("the archiver sent %llu values of %s nested deeper than %d levels; they were skipped",
                   (unsigned long long) f->too_deep, (const char *) g_ptr_array_index (job->pvs, f->index),
                   RTP_JSON_MAX_DEPTH);
      csv_merge (job);
    }
  else if (!job->finished)
    advance (job);
  sink_leave_and_release (job);
}

static gboolean
cancel_later (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

/* The reader went away. The transfers are cancelled from an idle: cancelling them here could end
 * the job, whose disconnection from the reader's cancellable would then wait for this very
 * handler to return. */
static void
reader_gone (GCancellable *cancellable, gpointer user_data)
{
  Job *job = user_data;
  job->finished = TRUE;
  g_idle_add_full (G_PRIORITY_DEFAULT, cancel_later, g_object_ref (job->cancellable), g_object_unref);
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
                          job->options.format == RTP_EXPORT_TSV ? "tsv" : "csv");
}

/* One transfer per PV, all at once. */
static void
start_fetches (Job *job)
{
  if (job->options.format == RTP_EXPORT_JSON)
    open_pv (job, 0);
  job->outstanding += job->pvs->len;
  for (guint i = 0; i < job->pvs->len; i++)
    {
      PvFetch *f = &job->fetches[i];
      f->waiting = i > 0 && job->options.format == RTP_EXPORT_JSON ? g_string_new (NULL) : NULL;
      f->transfer = rtp_history_fetch_async (job->history, g_ptr_array_index (job->pvs, i), &job->window, on_sample, f,
                                             job->cancellable, fetch_done, f);
    }
}

/* ---- JSON of several PVs: one getDataForPVs.json request ------------------------------------
 *
 * The appliance answers PV after PV, which is the order the JSON answer is written in, so the
 * samples go straight into the answer (the object's keys in the appliance's order). A PV the
 * appliance left out is written as [] at the end, as an unknown PV always was. An appliance
 * without the endpoint answers 404 before any sample: then every PV is fetched on its own. */

static gboolean
name_is (const char *name, const char *pv)
{
  gsize n, p;

  if (g_str_equal (name, pv))
    return TRUE;
  /* some appliance versions name the PV by the expression asked, optimized_500(X:Y) */
  n = strlen (name);
  p = strlen (pv);
  return n > p + 2 && name[n - 1] == ')' && name[n - p - 2] == '(' && memcmp (name + n - p - 1, pv, p) == 0;
}

static gboolean
multi_on_pv (const char *name, gpointer user_data)
{
  Job *job = user_data;
  guint index = G_MAXUINT;

  if (job->finished)
    return TRUE;
  for (guint i = 0; name != NULL && i < job->pvs->len && index == G_MAXUINT; i++)
    if (!job->multi_seen[i] && name_is (name, g_ptr_array_index (job->pvs, i)))
      index = i;
  for (guint i = 0; index == G_MAXUINT && i < job->pvs->len; i++)
    if (!job->multi_seen[i])
      index = i; /* no name, or one we cannot place: the PVs come in the order asked */
  if (index == G_MAXUINT)
    {
      g_warning ("getDataForPVs.json answered more PVs than asked (%s)", name != NULL ? name : "no name");
      return FALSE;
    }
  if (job->multi_opened)
    {
      g_string_append_c (job->out, ']');
      note_reduced (job, job->current);
    }
  job->fetches[job->current].transfer = NULL;
  job->multi_seen[index] = TRUE;
  job->current = index;
  job->fetches[index].transfer = job->multi_transfer; /* for the back-pressure of stream_flush */
  if (job->multi_opened)
    g_string_append_c (job->out, ',');
  job->multi_opened = TRUE;
  rtp_json_append_string (job->out, g_ptr_array_index (job->pvs, index));
  g_string_append (job->out, ":[");
  return TRUE;
}

static gboolean
multi_on_sample (const RtpSample *sample, gpointer user_data)
{
  Job *job = user_data;

  if (job->finished)
    return TRUE; /* answered (or the reader went away): the rest is read and dropped until the cancel */
  if (!job->multi_opened)
    return FALSE; /* samples before any PV */
  return on_sample (sample, &job->fetches[job->current]);
}

static void
multi_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Job *job = user_data;
  g_autoptr (GError) error = NULL;
  gboolean found = FALSE;

  job->fetches[job->current].transfer = NULL;
  job->multi_transfer = NULL;
  sink_enter (job);
  if (!rtp_history_fetch_finish (job->history, result, &found, &error))
    {
      if (!job->finished)
        fail (job, error);
    }
  else if (!job->finished && !found && !job->multi_opened)
    {
      g_message ("the archiver has no getDataForPVs.json; asking getData.json per PV");
      job->current = 0;
      start_fetches (job);
    }
  else if (!job->finished)
    {
      if (job->multi_opened)
        {
          g_string_append_c (job->out, ']');
          note_reduced (job, job->current);
        }
      for (guint i = 0; i < job->pvs->len; i++)
        if (!job->multi_seen[i])
          {
            if (job->multi_opened)
              g_string_append_c (job->out, ',');
            job->multi_opened = TRUE;
            rtp_json_append_string (job->out, g_ptr_array_index (job->pvs, i));
            g_string_append (job->out, ":[]");
          }
      job->current = job->pvs->len;
      advance (job); /* the suffix, once the metadata is there too */
    }
  sink_leave_and_release (job);
}

static void
start_multi (Job *job)
{
  g_ptr_array_add (job->pvs, NULL); /* NULL-terminated for the call, then taken off again */
  job->multi_seen = g_new0 (gboolean, job->pvs->len);
  job->outstanding++;
  job->multi_transfer = rtp_history_fetch_many_async (job->history, (const char *const *) job->pvs->pdata, &job->window,
                                                      multi_on_pv, multi_on_sample, job, job->cancellable, multi_done,
                                                      job);
  g_ptr_array_set_size (job->pvs, job->pvs->len - 1);
  job->fetches[0].transfer = job->multi_transfer;
}

void
rtp_export_start (RtpHistory *history, const RtpExperiment *experiment, const char *only_pv, RtpHistoryWindow *window,
                  const RtpExportOptions *options, const RtpExportSinkFuncs *sink_funcs, gpointer sink,
                  GDestroyNotify sink_free, GCancellable *reader_cancellable)
{
  Job *job = g_new0 (Job, 1);

  job->warnings = g_ptr_array_new_with_free_func (g_free);
  if (window->defaulted != NULL)
    g_ptr_array_add (job->warnings, g_steal_pointer (&window->defaulted));
  job->window = *window;
  job->options = *options;
  job->content_type = options->format == RTP_EXPORT_CSV   ? "text/csv; charset=utf-8"
                      : options->format == RTP_EXPORT_TSV ? "text/tab-separated-values; charset=utf-8"
                                                          : "application/json; charset=utf-8";
  job->sep = options->format == RTP_EXPORT_TSV ? '\t' : ',';
  job->n_cols = 1 + (rtp_history_window_has_bins (window) ? 4 : 0) + (options->severity ? 1 : 0) +
                (options->severity || options->status ? 1 : 0);
  job->history = g_object_ref (history);
  job->sink_funcs = sink_funcs;
  job->sink = sink;
  job->sink_free = sink_free;
  job->tz = g_time_zone_ref (rtp_history_get_time_zone (history));
  job->experiment = rtp_experiment_copy (experiment);
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

  if (options->format != RTP_EXPORT_JSON)
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
  if (reader_cancellable != NULL)
    {
      job->reader_cancellable = g_object_ref (reader_cancellable);
      job->reader_cancel_id = g_cancellable_connect (reader_cancellable, G_CALLBACK (reader_gone), job, NULL);
    }
  for (guint i = 0; i < job->pvs->len; i++)
    {
      job->fetches[i].job = job;
      job->fetches[i].index = i;
    }
  if (options->meta)
    {
      g_ptr_array_add (job->pvs, NULL); /* NULL-terminated for the call, then taken off again */
      job->meta_pending = TRUE;
      job->outstanding++;
      rtp_history_metadata_async (history, (const char *const *) job->pvs->pdata, job->cancellable, metadata_done, job);
      g_ptr_array_set_size (job->pvs, job->pvs->len - 1);
    }
  if (options->format == RTP_EXPORT_JSON && job->pvs->len > 1)
    start_multi (job);
  else
    start_fetches (job);
}

static gboolean
pick (RtpFieldState state, const char *text, const char *const *names, int *out)
{
  if (state == RTP_FIELD_ABSENT || state == RTP_FIELD_NULL)
    return TRUE;
  for (int i = 0; state == RTP_FIELD_SET && names[i] != NULL; i++)
    if (g_str_equal (text, names[i]))
      {
        *out = i;
        return TRUE;
      }
  return FALSE;
}

gboolean
rtp_export_read_options (const RtpExportRequest *request, RtpExportOptions *options, GError **error)
{
  static const char *const formats[] = { "json", "csv", "tsv", NULL };
  static const char *const aligns[] = { "none", "previous", NULL };
  static const char *const times[] = { "local", "iso", "epoch", NULL };
  int format = 0, align = 0, time_form = 0;

  memset (options, 0, sizeof *options);
  if (!pick (request->format_state, request->format, formats, &format))
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                           _ ("format: Value must be \"json\", \"csv\" or \"tsv\"."));
      return FALSE;
    }
  if (!pick (request->align_state, request->align, aligns, &align))
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("align: Value must be \"none\" or \"previous\"."));
      return FALSE;
    }
  if (!pick (request->time_format_state, request->time_format, times, &time_form))
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                           _ ("time_format: Value must be \"local\", \"iso\" or \"epoch\"."));
      return FALSE;
    }
  options->format = (RtpExportFormat) format;
  options->align_previous = align == 1;
  options->time_form = (RtpExportTime) time_form;
  if (request->include_state == RTP_FIELD_SET)
    for (guint i = 0; request->include[i] != NULL; i++)
      {
        if (g_str_equal (request->include[i], "severity"))
          options->severity = TRUE;
        else if (g_str_equal (request->include[i], "status"))
          options->status = TRUE;
        else if (g_str_equal (request->include[i], "meta"))
          options->meta = TRUE;
        else
          {
            g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                                 _ ("include: Value must be a list of \"severity\", \"status\" and \"meta\"."));
            return FALSE;
          }
      }
  else if (request->include_state == RTP_FIELD_WRONG_TYPE)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                           _ ("include: Value must be a list of \"severity\", \"status\" and \"meta\"."));
      return FALSE;
    }
  if (options->meta && options->format != RTP_EXPORT_JSON)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                           _ (
                             "include: \"meta\" is given in JSON answers only; a CSV or TSV file has no room for it."));
      return FALSE;
    }
  if (options->format != RTP_EXPORT_JSON && options->severity)
    options->status = TRUE; /* <pv>.severity comes with <pv>.status */
  return TRUE;
}
