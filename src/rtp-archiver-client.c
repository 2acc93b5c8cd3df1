/* rtp-archiver-client.c: libcurl's multi interface driven by the GLib main loop
 *
 * Chosen over curl_easy in worker threads: one thread, no locks, connection reuse across
 * requests, every PV of an experiment fetched concurrently, and back-pressure is a plain
 * curl_easy_pause() from the main loop. curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION → g_unix_fd_add) and when to wake up (CURLMOPT_TIMERFUNCTION
 * → g_timeout_add); completed transfers are collected with curl_multi_info_read(). */
#define G_LOG_DOMAIN "RtpArchiver"

#include "rtp-metrics.h"
#include "rtp-archiver-client.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-time.h"

#include <curl/curl.h>
#include <glib-unix.h>
#include <string.h>

#define MAX_CONNECTIONS 16
#define MAX_ERROR_BODY 4096

struct _RtpArchiverClient {
  GObject parent_instance;

  char *base_url; /* (owned) (nullable) without trailing '/' */
  double timeout_s;
  guint64 max_bytes; /* decoded bytes one answer may have (a gzip answer counts decoded) */
  CURLM *multi;
  guint timer_id;
  GHashTable *sources;   /* fd → GSource id */
  GHashTable *transfers; /* RtpArchiverTransfer set */
};

typedef enum { KIND_DATA, KIND_METADATA, KIND_BODY } Kind;

/* A whole JSON answer (search, values at a moment) is held: at most this many bytes. */
#define MAX_BODY_BYTES ((guint64) 16 * 1024 * 1024)

struct _RtpArchiverTransfer {
  RtpArchiverClient *client; /* (unowned) the client outlives its transfers */
  CURL *easy;
  GTask *task; /* (owned) */
  Kind kind;
  char *url;                 /* (owned) */
  RtpArchiverParser *parser; /* (owned) (nullable) */
  RtpSampleFunc on_sample;
  gpointer sample_data;
  GError *parse_error;        /* (owned) (nullable) */
  GString *error_body;        /* (owned) start of a non-200 answer, for the log */
  char *pv;                   /* (owned) (nullable) the PV asked for, for messages */
  GString *body;              /* (owned) (nullable) KIND_BODY: the answer */
  struct curl_slist *headers; /* (owned) (nullable) */
  guint64 received;           /* decoded bytes so far */
  guint64 max_bytes;          /* decoded bytes this answer may have */
  gboolean too_large;
  gboolean answered; /* the answer's headers arrived */
  guint deadline_id; /* no answer within the timeout: also for transfers queued for a free connection */
  gboolean want_pause;
  gboolean is_paused;
  gulong cancel_id;
  gint64 started_us;
  char error_buf[CURL_ERROR_SIZE];
};

G_DEFINE_TYPE (RtpArchiverClient, rtp_archiver_client, G_TYPE_OBJECT)

static void check_done (RtpArchiverClient *self);

static void
transfer_free (RtpArchiverTransfer *t)
{
  if (t->easy != NULL)
    {
      curl_multi_remove_handle (t->client->multi, t->easy);
      curl_easy_cleanup (t->easy);
    }
  if (t->cancel_id != 0)
    g_cancellable_disconnect (g_task_get_cancellable (t->task), t->cancel_id);
  g_clear_handle_id (&t->deadline_id, g_source_remove);
  g_clear_object (&t->task);
  g_free (t->url);
  g_free (t->pv);
  g_clear_pointer (&t->parser, rtp_archiver_parser_free);
  g_clear_error (&t->parse_error);
  g_string_free (t->error_body, TRUE);
  if (t->body != NULL)
    g_string_free (t->body, TRUE);
  curl_slist_free_all (t->headers);
  g_free (t);
}

/* ---- GLib ↔ curl ---------------------------------------------------------------- */

static gboolean
fd_ready (gint fd, GIOCondition condition, gpointer user_data)
{
  RtpArchiverClient *self = user_data;
  int running = 0;
  int action = 0;

  if (condition & G_IO_IN)
    action |= CURL_CSELECT_IN;
  if (condition & G_IO_OUT)
    action |= CURL_CSELECT_OUT;
  if (condition & (G_IO_ERR | G_IO_HUP))
    action |= CURL_CSELECT_ERR;
  curl_multi_socket_action (self->multi, fd, action, &running);
  check_done (self);
  return G_SOURCE_CONTINUE;
}

static int
socket_cb (CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
  RtpArchiverClient *self = userp;
  guint id = GPOINTER_TO_UINT (g_hash_table_lookup (self->sources, GINT_TO_POINTER (fd)));
  GIOCondition condition = 0;

  if (id != 0)
    {
      g_source_remove (id);
      g_hash_table_remove (self->sources, GINT_TO_POINTER (fd));
    }
  if (what == CURL_POLL_REMOVE)
    return 0;
  if (what & CURL_POLL_IN)
    condition |= G_IO_IN;
  if (what & CURL_POLL_OUT)
    condition |= G_IO_OUT;
  id = g_unix_fd_add (fd, condition | G_IO_ERR | G_IO_HUP, fd_ready, self);
  g_hash_table_insert (self->sources, GINT_TO_POINTER (fd), GUINT_TO_POINTER (id));
  return 0;
}

static gboolean
timer_fired (gpointer user_data)
{
  RtpArchiverClient *self = user_data;
  int running = 0;

  self->timer_id = 0; /* cleared before curl may ask for a new one */
  curl_multi_socket_action (self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done (self);
  return G_SOURCE_REMOVE;
}

static int
timer_cb (CURLM *multi, long timeout_ms, void *userp)
{
  RtpArchiverClient *self = userp;

  g_clear_handle_id (&self->timer_id, g_source_remove);
  if (timeout_ms >= 0)
    self->timer_id = g_timeout_add ((guint) timeout_ms, timer_fired, self);
  return 0;
}

/* Starts curl on a newly added handle (the timer callback will then take over). */
static gboolean
kick (gpointer user_data)
{
  RtpArchiverClient *self = user_data;
  int running = 0;
  curl_multi_socket_action (self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done (self);
  return G_SOURCE_REMOVE;
}

/* ---- transfers ---------------------------------------------------------------- */

static long
response_code (RtpArchiverTransfer *t)
{
  long code = 0;
  curl_easy_getinfo (t->easy, CURLINFO_RESPONSE_CODE, &code);
  return code;
}

static size_t
write_cb (char *data, size_t size, size_t nmemb, void *userp)
{
  RtpArchiverTransfer *t = userp;
  gsize len = size * nmemb;

  if (t->want_pause)
    {
      t->is_paused = TRUE;
      return CURL_WRITEFUNC_PAUSE;
    }
  t->received += len;
  if (t->received > t->max_bytes)
    {
      t->too_large = TRUE;
      return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
  if (response_code (t) != 200 || t->kind == KIND_METADATA)
    {
      if (t->error_body->len < MAX_ERROR_BODY)
        g_string_append_len (t->error_body, data, (gssize) MIN (len, MAX_ERROR_BODY - t->error_body->len));
      return len;
    }
  if (t->kind == KIND_BODY)
    {
      g_string_append_len (t->body, data, (gssize) len);
      return len;
    }
  if (t->parse_error == NULL && !rtp_archiver_parser_feed (t->parser, data, len, &t->parse_error))
    return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
  if (rtp_archiver_parser_get_pv_bytes (t->parser) > t->client->max_bytes)
    {
      t->too_large = TRUE; /* one PV of an answer of several */
      return 0;
    }
  return len;
}

static void
complete (RtpArchiverTransfer *t, CURLcode result)
{
  long code = response_code (t);
  GTask *task = g_object_ref (t->task);
  RtpMetric outcome = RTP_METRIC_ARCHIVER_ERROR;

  g_hash_table_steal (t->client->transfers, t);
  /* Returning the task may run its callback at once, and a callback that cancels (the export
   * cancels its other transfers when one fails) would otherwise reach on_cancelled() for this
   * transfer too, returning the task a second time. */
  if (t->cancel_id != 0)
    {
      g_cancellable_disconnect (g_task_get_cancellable (task), t->cancel_id);
      t->cancel_id = 0;
    }
  if (g_task_return_error_if_cancelled (task))
    {
      outcome = RTP_METRIC_ARCHIVER_CANCELLED;
      goto out;
    }
  if (t->too_large)
    {
      const char *name = t->parser != NULL ? rtp_archiver_parser_get_name (t->parser) : NULL;
      g_warning ("%s: the answer is larger than RTP_ARCHIVER_MAX_BYTES (%" G_GUINT64_FORMAT " bytes per PV)", t->url,
                 t->client->max_bytes);
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, _ ("The archiver's answer for %s is too large."),
                               name != NULL    ? name
                               : t->pv != NULL ? t->pv
                                               : _ ("several process variables"));
      goto out;
    }
  if (t->parse_error != NULL)
    {
      g_warning ("%s: %s", t->url, t->parse_error->message);
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                               _ ("Could not get process variable data from archiver."));
      goto out;
    }
  if (result != CURLE_OK)
    {
      g_warning ("archiver request %s failed: %s", t->url,
                 t->error_buf[0] != '\0' ? t->error_buf : curl_easy_strerror (result));
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                               _ ("Could not get process variable data from archiver."));
      goto out;
    }
  if (code == 404)
    {
      g_debug ("%s: not known to the archiver", t->url);
      outcome = RTP_METRIC_ARCHIVER_NOT_FOUND;
      g_task_set_task_data (task, GINT_TO_POINTER (0), NULL);
      g_task_return_boolean (task, TRUE);
      goto out;
    }
  if (code != 200)
    {
      g_warning ("archiver answered %ld for %s: %.200s", code, t->url, t->error_body->str);
      g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                               _ ("Could not get process variable data from archiver."));
      goto out;
    }
  if (t->kind == KIND_DATA)
    {
      GError *error = NULL;
      if (!rtp_archiver_parser_finish (t->parser, &error))
        {
          g_warning ("%s: %s", t->url, error->message);
          g_error_free (error);
          g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                                   _ ("Could not get process variable data from archiver."));
          goto out;
        }
    }
  /* found; an empty list (how some versions say "unknown PV") simply yields no samples */
  if (t->kind == KIND_BODY)
    {
      gsize len = t->body->len;
      g_task_set_task_data (task, g_bytes_new_take (g_string_free (g_steal_pointer (&t->body), FALSE), len),
                            (GDestroyNotify) g_bytes_unref);
    }
  else
    g_task_set_task_data (task, GINT_TO_POINTER (1), NULL);
  outcome = RTP_METRIC_ARCHIVER_OK;
  g_task_return_boolean (task, TRUE);
out:
  rtp_metrics_inc (outcome);
  rtp_histogram_observe (rtp_metrics_archiver_duration (), g_get_monotonic_time () - t->started_us);
  transfer_free (t);
  g_object_unref (task);
}

static void
check_done (RtpArchiverClient *self)
{
  CURLMsg *msg;
  int left = 0;

  while ((msg = curl_multi_info_read (self->multi, &left)) != NULL)
    {
      RtpArchiverTransfer *t = NULL;
      if (msg->msg != CURLMSG_DONE)
        continue;
      curl_easy_getinfo (msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
      complete (t, msg->data.result);
    }
}

static void
on_cancelled (GCancellable *cancellable, gpointer user_data)
{
  RtpArchiverTransfer *t = user_data;
  /* from the main thread only: our cancellables are cancelled there */
  GTask *task = g_object_ref (t->task);
  t->cancel_id = 0;
  g_hash_table_remove (t->client->transfers, t);
  g_task_return_error_if_cancelled (task);
  g_object_unref (task);
}

static size_t
header_cb (char *data, size_t size, size_t nmemb, void *userp)
{
  RtpArchiverTransfer *t = userp;
  t->answered = TRUE;
  return size * nmemb;
}

/* curl's own timeouts do not reach a transfer that waits for one of the MAX_CONNECTIONS, and a
 * streaming transfer has only a stall limit: an answer must at least begin within the timeout. */
static gboolean
deadline_passed (gpointer user_data)
{
  RtpArchiverTransfer *t = user_data;
  GTask *task;

  t->deadline_id = 0;
  if (t->answered)
    return G_SOURCE_REMOVE;
  g_warning ("archiver request %s: no answer within %.0f s (all %d connections busy, or the archiver is slow)", t->url,
             t->client->timeout_s, MAX_CONNECTIONS);
  task = g_object_ref (t->task);
  g_hash_table_remove (t->client->transfers, t);
  g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                           _ ("Could not get process variable data from archiver."));
  g_object_unref (task);
  return G_SOURCE_REMOVE;
}

/* @url for the log: a password in ARCHIVER_URL's user info is never written out. */
static char *
redacted (const char *url)
{
  g_autoptr (GUri) uri = g_uri_parse (url, G_URI_FLAGS_HAS_PASSWORD | G_URI_FLAGS_ENCODED, NULL);

  if (uri == NULL || g_uri_get_password (uri) == NULL)
    return g_strdup (url);
  return g_uri_to_string_partial (uri, G_URI_HIDE_PASSWORD);
}

static RtpArchiverTransfer *
start (RtpArchiverClient *self, Kind kind, const char *url, gboolean streaming, GTask *task)
{
  RtpArchiverTransfer *t = g_new0 (RtpArchiverTransfer, 1);
  long timeout_ms = (long) (self->timeout_s * 1000);

  t->client = self;
  t->started_us = g_get_monotonic_time ();
  t->kind = kind;
  t->max_bytes = kind == KIND_BODY ? MIN (self->max_bytes, MAX_BODY_BYTES) : self->max_bytes;
  t->url = redacted (url);
  t->task = g_object_ref (task);
  t->error_body = g_string_new (NULL);
  t->easy = curl_easy_init ();
  curl_easy_setopt (t->easy, CURLOPT_URL, url);
  curl_easy_setopt (t->easy, CURLOPT_PRIVATE, t);
  curl_easy_setopt (t->easy, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt (t->easy, CURLOPT_WRITEDATA, t);
  curl_easy_setopt (t->easy, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt (t->easy, CURLOPT_HEADERDATA, t);
  curl_easy_setopt (t->easy, CURLOPT_ERRORBUFFER, t->error_buf);
  curl_easy_setopt (t->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (t->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt (t->easy, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt (t->easy, CURLOPT_USERAGENT, "realtimeplot-server/" RTP_VERSION);
  curl_easy_setopt (t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
  if (streaming)
    {
      /* a million points take a while: give up only when nothing arrives for the timeout */
      curl_easy_setopt (t->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
      /* long answers: fewer, larger reads (and parser feeds) than curl's 16 KB */
      curl_easy_setopt (t->easy, CURLOPT_BUFFERSIZE, 256L * 1024L);
      curl_easy_setopt (t->easy, CURLOPT_LOW_SPEED_TIME, MAX (1L, timeout_ms / 1000));
    }
  else
    curl_easy_setopt (t->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
  g_hash_table_add (self->transfers, t);
  if (g_task_get_cancellable (task) != NULL)
    t->cancel_id = g_cancellable_connect (g_task_get_cancellable (task), G_CALLBACK (on_cancelled), t, NULL);
  t->deadline_id = g_timeout_add ((guint) MAX (1, timeout_ms), deadline_passed, t);
  curl_multi_add_handle (self->multi, t->easy);
  g_idle_add_full (G_PRIORITY_DEFAULT, kick, g_object_ref (self), g_object_unref);
  return t;
}

void
rtp_archiver_transfer_set_paused (RtpArchiverTransfer *t, gboolean paused)
{
  t->want_pause = paused;
  if (!paused && t->is_paused)
    {
      t->is_paused = FALSE;
      curl_easy_pause (t->easy, CURLPAUSE_CONT); /* may deliver buffered data right away */
      g_idle_add_full (G_PRIORITY_DEFAULT, kick, g_object_ref (t->client), g_object_unref);
    }
}

/* ---- object ---------------------------------------------------------------- */

static void
rtp_archiver_client_dispose (GObject *object)
{
  RtpArchiverClient *self = RTP_ARCHIVER_CLIENT (object);
  GHashTableIter iter;
  gpointer id;

  if (self->transfers != NULL)
    g_hash_table_remove_all (self->transfers);
  g_clear_handle_id (&self->timer_id, g_source_remove);
  if (self->sources != NULL)
    {
      g_hash_table_iter_init (&iter, self->sources);
      while (g_hash_table_iter_next (&iter, NULL, &id))
        g_source_remove (GPOINTER_TO_UINT (id));
      g_hash_table_remove_all (self->sources);
    }
  G_OBJECT_CLASS (rtp_archiver_client_parent_class)->dispose (object);
}

static void
rtp_archiver_client_finalize (GObject *object)
{
  RtpArchiverClient *self = RTP_ARCHIVER_CLIENT (object);

  g_hash_table_unref (self->transfers);
  if (self->multi != NULL)
    curl_multi_cleanup (self->multi);
  g_hash_table_unref (self->sources);
  g_free (self->base_url);
  G_OBJECT_CLASS (rtp_archiver_client_parent_class)->finalize (object);
}

static void
rtp_archiver_client_class_init (RtpArchiverClientClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = rtp_archiver_client_dispose;
  G_OBJECT_CLASS (klass)->finalize = rtp_archiver_client_finalize;
  curl_global_init (CURL_GLOBAL_DEFAULT);
}

static void
rtp_archiver_client_init (RtpArchiverClient *self)
{
  self->sources = g_hash_table_new (NULL, NULL);
  self->transfers = g_hash_table_new_full (NULL, NULL, (GDestroyNotify) transfer_free, NULL);
}

RtpArchiverClient *
rtp_archiver_client_new (const char *base_url, double timeout_s)
{
  RtpArchiverClient *self = g_object_new (RTP_TYPE_ARCHIVER_CLIENT, NULL);

  if (base_url != NULL && base_url[0] != '\0')
    {
      self->base_url = g_strdup (base_url);
      while (g_str_has_suffix (self->base_url, "/"))
        self->base_url[strlen (self->base_url) - 1] = '\0';
    }
  self->timeout_s = timeout_s > 0 ? timeout_s : 10;
  self->max_bytes = G_MAXUINT64;
  self->multi = curl_multi_init ();
  curl_multi_setopt (self->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt (self->multi, CURLMOPT_SOCKETDATA, self);
  curl_multi_setopt (self->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt (self->multi, CURLMOPT_TIMERDATA, self);
  curl_multi_setopt (self->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) MAX_CONNECTIONS);
  return self;
}

void
rtp_archiver_client_set_max_bytes (RtpArchiverClient *self, guint64 max_bytes)
{
  self->max_bytes = max_bytes;
}

gboolean
rtp_archiver_client_is_configured (RtpArchiverClient *self)
{
  return self->base_url != NULL;
}

static gboolean
not_configured (GTask *task)
{
  if (task == NULL)
    return FALSE;
  g_task_return_new_error (task, RTP_ERROR, RTP_ERROR_UPSTREAM, "%s",
                           _ ("Could not get process variable data from archiver."));
  return TRUE;
}

/* The PV of an expression such as optimized_500(X:Y). */
static char *
operand (const char *expr)
{
  const char *open = strchr (expr, '(');
  gsize len = strlen (expr);

  if (open != NULL && len > 0 && expr[len - 1] == ')')
    return g_strndup (open + 1, (gsize) (expr + len - 1 - open - 1));
  return g_strdup (expr);
}

RtpArchiverTransfer *
rtp_archiver_client_fetch_async (RtpArchiverClient *self, const char *pv_expr, gint64 from_us, gint64 to_us,
                                 gboolean bins, gboolean streaming, RtpSampleFunc on_sample, gpointer sample_data,
                                 GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autofree char *from = rtp_time_iso_utc (from_us);
  g_autofree char *to = rtp_time_iso_utc (to_us);
  g_autofree char *pv_enc = NULL;
  g_autofree char *from_enc = NULL;
  g_autofree char *to_enc = NULL;
  g_autofree char *url = NULL;
  RtpArchiverTransfer *t;

  g_task_set_source_tag (task, rtp_archiver_client_fetch_async);
  if (self->base_url == NULL)
    {
      not_configured (task);
      return NULL;
    }
  pv_enc = g_uri_escape_string (pv_expr, NULL, FALSE);
  from_enc = g_uri_escape_string (from, NULL, FALSE);
  to_enc = g_uri_escape_string (to, NULL, FALSE);
  url = g_strdup_printf ("%s/retrieval/data/getData.json?pv=%s&from=%s&to=%s", self->base_url, pv_enc, from_enc,
                         to_enc);
  t = start (self, KIND_DATA, url, streaming, task);
  t->pv = operand (pv_expr);
  t->parser = rtp_archiver_parser_new (bins, on_sample, sample_data);
  return t;
}

gboolean
rtp_archiver_client_fetch_finish (RtpArchiverClient *self, GAsyncResult *result, gboolean *found, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return FALSE;
  *found = GPOINTER_TO_INT (g_task_get_task_data (G_TASK (result))) != 0;
  return TRUE;
}

void
rtp_archiver_client_exists_async (RtpArchiverClient *self, const char *pv, GCancellable *cancellable,
                                  GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autofree char *pv_enc = NULL;
  g_autofree char *url = NULL;

  if (self->base_url == NULL)
    {
      not_configured (task);
      return;
    }
  pv_enc = g_uri_escape_string (pv, NULL, FALSE);
  url = g_strdup_printf ("%s/retrieval/bpl/getMetadata?pv=%s", self->base_url, pv_enc);
  start (self, KIND_METADATA, url, FALSE, task);
}

gboolean
rtp_archiver_client_exists_finish (RtpArchiverClient *self, GAsyncResult *result, gboolean *exists, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return FALSE;
  *exists = GPOINTER_TO_INT (g_task_get_task_data (G_TASK (result))) != 0;
  return TRUE;
}

void
rtp_archiver_client_request_async (RtpArchiverClient *self, const char *path_and_query, const char *post_json,
                                   GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autofree char *url = NULL;
  RtpArchiverTransfer *t;

  g_task_set_source_tag (task, rtp_archiver_client_request_async);
  if (self->base_url == NULL)
    {
      not_configured (task);
      return;
    }
  url = g_strdup_printf ("%s%s", self->base_url, path_and_query);
  t = start (self, KIND_BODY, url, FALSE, task);
  t->body = g_string_new (NULL);
  if (post_json != NULL)
    {
      t->headers = curl_slist_append (NULL, "Content-Type: application/json");
      curl_easy_setopt (t->easy, CURLOPT_HTTPHEADER, t->headers);
      curl_easy_setopt (t->easy, CURLOPT_COPYPOSTFIELDS, post_json);
    }
}

GBytes *
rtp_archiver_client_request_finish (RtpArchiverClient *self, GAsyncResult *result, gboolean *found, GError **error)
{
  GBytes *body;

  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  *found = FALSE;
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return NULL;
  body = g_task_get_task_data (G_TASK (result));
  *found = body != NULL;
  return body != NULL ? g_bytes_ref (body) : g_bytes_new (NULL, 0);
}

RtpArchiverTransfer *
rtp_archiver_client_fetch_many_async (RtpArchiverClient *self, const char *const *pv_exprs, gint64 from_us,
                                      gint64 to_us, gboolean bins, RtpPvStartFunc on_pv, RtpSampleFunc on_sample,
                                      gpointer sample_data, GCancellable *cancellable, GAsyncReadyCallback callback,
                                      gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autofree char *from = rtp_time_iso_utc (from_us);
  g_autofree char *to = rtp_time_iso_utc (to_us);
  g_autofree char *from_enc = NULL;
  g_autofree char *to_enc = NULL;
  g_autoptr (GString) url = NULL;
  RtpArchiverTransfer *t;

  g_task_set_source_tag (task, rtp_archiver_client_fetch_many_async);
  if (self->base_url == NULL)
    {
      not_configured (task);
      return NULL;
    }
  from_enc = g_uri_escape_string (from, NULL, FALSE);
  to_enc = g_uri_escape_string (to, NULL, FALSE);
  url = g_string_new (self->base_url);
  g_string_append_printf (url, "/retrieval/data/getDataForPVs.json?from=%s&to=%s", from_enc, to_enc);
  for (guint i = 0; pv_exprs[i] != NULL; i++)
    {
      g_autofree char *enc = g_uri_escape_string (pv_exprs[i], NULL, FALSE);
      g_string_append_printf (url, "&pv=%s", enc);
    }
  t = start (self, KIND_DATA, url->str, TRUE, task);
  {
    guint n = MAX (g_strv_length ((char **) pv_exprs), 1); /* the limit is per PV */
    t->max_bytes = self->max_bytes > G_MAXUINT64 / n ? G_MAXUINT64 : self->max_bytes * n;
  }
  curl_easy_setopt (t->easy, CURLOPT_POSTFIELDS, "");
  curl_easy_setopt (t->easy, CURLOPT_POSTFIELDSIZE, 0L);
  t->parser = rtp_archiver_parser_new (bins, on_sample, sample_data);
  rtp_archiver_parser_set_pv_func (t->parser, on_pv);
  return t;
}
