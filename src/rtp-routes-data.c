/* rtp-routes-data.c: POST /data/<short_id>[/<pv>] and validate_pv_string (API.md "Archived data")
 *
 * The route reads the body and writes the answer; the rules (window, max_points, time zone, the
 * archiver expression) are the history service's (rtp-history.c). Every PV is fetched at once and
 * written PV after PV into one answer, streamed with bounded buffers (see "the answer" below). */
#define G_LOG_DOMAIN "RtpRoutesData"

#include "rtp-archiver-client.h"
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
    if (job->fetches[i].waiting != NULL)
      g_string_free (job->fetches[i].waiting, TRUE);
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
  if (job->out != NULL)
    g_string_free (job->out, TRUE);
  g_free (job);
}

/* One point: {"time": "…", "data": v} or, for a bin, with min, max and count too. */
static void
append_sample (GString *out, GTimeZone *tz, const RtpSample *s, gboolean first)
{
  char time_buf[64];
  gsize n = rtp_time_format (tz, s->secs, s->nanos, time_buf);

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
      g_string_append_len (out, s->count, (gssize) s->count_len);
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

static void
stream_drained (gsize queued, gpointer user_data)
{
  Job *job = user_data;
  PvFetch *f = job->current < job->pvs->len ? &job->fetches[job->current] : NULL;

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
      rtp_request_stream_begin (job->request, 200, "application/json; charset=utf-8", stream_drained, job);
    }
  rtp_request_stream_write (job->request, job->out);
  if (rtp_request_stream_queued (job->request) > HIGH_WATER && f != NULL && f->transfer != NULL)
    rtp_archiver_transfer_set_paused (f->transfer, TRUE);
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
  out = f->index == job->current ? job->out : f->waiting;
  before = out->len;
  append_sample (out, job->tz, sample, f->points == 0);
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
  job->finished = TRUE;
  append_suffix (job, job->out);
  if (job->started)
    {
      stream_flush (job);
      rtp_request_stream_end (job->request);
    }
  else
    {
      gsize len = job->out->len;
      g_autoptr (GBytes) bytes = g_bytes_new_take (g_string_free (g_steal_pointer (&job->out), FALSE), len);
      rtp_request_respond_bytes (job->request, 200, "application/json; charset=utf-8", bytes);
    }
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
  append_prefix (job, job->out);
  if (job->pvs->len == 0)
    {
      /* an experiment always has PVs; answer the empty shape all the same */
      job->outstanding = 1;
      advance (job);
      job_free (job);
      return;
    }
  open_pv (job, 0);
  job->request_cancel_id = g_cancellable_connect (rtp_request_get_cancellable (request), G_CALLBACK (request_gone), job,
                                                  NULL);
  job->outstanding = job->pvs->len;
  for (guint i = 0; i < job->pvs->len; i++)
    {
      PvFetch *f = &job->fetches[i];
      f->job = job;
      f->index = i;
      f->waiting = i > 0 ? g_string_new (NULL) : NULL;
      f->transfer = rtp_history_fetch_async (services->history, g_ptr_array_index (job->pvs, i), &job->window,
                                             on_sample, f, job->cancellable, fetch_done, f);
    }
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
  rtp_http_server_add_route (http, "GET", "/data/validate_pv_string/*", RTP_ROUTE_ADMIN, validate_pv, services);
  rtp_http_server_add_route (http, "GET", "/validate_pv_string/*", RTP_ROUTE_ADMIN, validate_pv, services);
}
