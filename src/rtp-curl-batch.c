/* rtp-curl-batch.c: several transfers over one libcurl handle, in a worker thread
 *
 * The outboxes (mail, webhooks) send one item at a time, oldest first. An alarm flood makes many
 * due at once; sending them through one handle spares a connection, a TLS handshake and a login
 * per item. Each outcome goes home at once, so that the caller records it before the next one
 * goes out: a restart sends again at most the one in flight, as before. */
#define G_LOG_DOMAIN "RtpCurlBatch"

#include "rtp-curl-batch.h"
#include "rtp-post.h"

typedef struct {
  GPtrArray *items;
  RtpCurlBatchSendFunc send;
  gpointer shared;
  GDestroyNotify shared_free;
  GMainContext *context; /* the caller's */
  RtpCurlBatchSentFunc sent;
  GDestroyNotify done;
  gpointer user_data;
} Batch;

static void
batch_free (Batch *b)
{
  g_ptr_array_unref (b->items);
  if (b->shared_free != NULL)
    b->shared_free (b->shared);
  g_main_context_unref (b->context);
  g_free (b);
}

/* The outcome of one item (index < items->len), or the end of the batch (index == items->len), on
 * the caller's context. Both are posted by the worker in order, at one priority: the end comes
 * after every outcome. */
typedef struct {
  Batch *batch;
  guint index;
  GError *error;
} Report;

static gboolean
report_cb (gpointer data)
{
  Report *r = data;
  Batch *b = r->batch;

  if (r->index < b->items->len)
    b->sent (r->index, r->error, b->user_data);
  else
    {
      b->done (b->user_data);
      batch_free (b);
    }
  return G_SOURCE_REMOVE;
}

static void
report_free (gpointer data)
{
  Report *r = data;
  g_clear_error (&r->error);
  g_free (r);
}

static void
report (Batch *b, guint index, GError *error)
{
  Report *r = g_new0 (Report, 1);
  r->batch = b;
  r->index = index;
  r->error = error;
  rtp_context_post (b->context, G_PRIORITY_DEFAULT, report_cb, r, report_free);
  /* cppcheck-suppress memleak ; r belongs to the caller's context now, report_free releases it */
}

static void
batch_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  Batch *b = task_data;
  CURL *easy = curl_easy_init ();

  curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
  for (guint i = 0; i < b->items->len; i++)
    {
      GError *error = b->send (easy, g_ptr_array_index (b->items, i), b->shared);

      report (b, i, error);
      if (error != NULL)
        break; /* the rest wait for the next attempt */
    }
  report (b, b->items->len, NULL); /* b is the caller's again: not touched below */
  curl_easy_cleanup (easy);        /* closes the connection (SMTP: QUIT); the next batch need not wait */
  g_task_return_boolean (task, TRUE);
}

void
rtp_curl_batch_run (GPtrArray *items, RtpCurlBatchSendFunc send, gpointer shared, GDestroyNotify shared_free,
                    RtpCurlBatchSentFunc sent, GDestroyNotify done, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (NULL, NULL, NULL, NULL);
  Batch *b = g_new0 (Batch, 1);

  b->items = items;
  b->send = send;
  b->shared = shared;
  b->shared_free = shared_free;
  b->context = g_main_context_ref_thread_default ();
  b->sent = sent;
  b->done = done;
  b->user_data = user_data;
  g_task_set_task_data (task, b, NULL); /* the worker hands it back with the last report */
  g_task_run_in_thread (task, batch_thread);
}
