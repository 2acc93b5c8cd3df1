/* rtp-http-listener.c: accepts the connections of the SoupServer, watching their request lines
 *
 * soup_server_listen_socket() would hand each connection to libsoup, whose URI parser removes dot
 * segments before the server sees a request (see rtp-request-line.c). So the server accepts its
 * connections itself and gives libsoup, through soup_server_accept_iostream(), a TCP connection
 * whose input stream lets an RtpLineWatch see every byte on its way (the bytes are not changed,
 * copied or delayed; the input stays pollable, as libsoup needs).
 *
 * libsoup 3.2 keeps a connection open after an answer only while the server has a listener of its
 * own (soup-server.c, request_finished(): "priv->listeners"); without one every connection would be
 * closed after its first answer. So libsoup is also given a "listener" that can never accept
 * anything: one end of a socket pair whose other end is never written to.
 *
 * A connection accepted this way has no GSocket in libsoup's eyes (soup_server_message_get_socket()
 * answers NULL), so the client's socket and the watch ride on the remote address object, which
 * libsoup keeps for the connection's whole life and hands out per message.
 *
 * The connection's output stream sends an answer's head and body in one TCP segment: libsoup writes
 * them in two calls, one right after the other, and each send on its own would go out as a segment
 * of its own and wake the client twice (measured: one segment per small answer instead of two is
 * 8-10 % more small GETs a second). A head that announces a body (a Content-Length above 0) is kept
 * and goes out with the body's first write in one sendmsg(); the answer to a HEAD, which has no
 * body, and a head too long to keep are sent with MSG_MORE, so the kernel keeps them until the
 * body's send or libsoup's flush at the end of the answer.
 *
 * Each connection has one poll record for its whole life (ConnPoll, below): libsoup's waits for the
 * connection do not add and remove descriptors, which GLib pays for with an eventfd write and one
 * more main-loop iteration each. */
#define G_LOG_DOMAIN "RtpHttpServer"

#include "rtp-http-listener.h"
#include "rtp-request-line.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define ACCEPT_BATCH 16
#define ACCEPT_PAUSE_MS 100u /* after an error such as EMFILE: not a busy loop, not a dead listener */

G_DEFINE_QUARK (rtp - http - client - socket, client_socket)
G_DEFINE_QUARK (rtp - http - line - watch, line_watch)
G_DEFINE_QUARK (rtp - http - conn - state, conn_state)

/* ---- what libsoup does with the connection ------------------------------------------------- */

/* libsoup 3.2 leaves open a connection whose client closed it between two requests: the next message
 * reads the end of stream before it was announced (no "request-started", no completion handler), so
 * nothing disconnects it — its socket stays in CLOSE-WAIT and its objects stay in the server's list
 * until the server stops (fixed in libsoup 3.3, commit d20c6601: "do not leak idle connections closed
 * by the client"). Every client that closes a kept-alive connection would leak a file descriptor,
 * until accept() fails. So the server takes such a connection back from libsoup itself:
 * soup_server_message_steal_connection() of the connection's latest message, before libsoup sees the
 * end of the stream (after it, libsoup's stealing would dereference the message it dropped). */
typedef struct {
  gatomicrefcount ref_count;
  SoupServerMessage *last; /* (owned) (nullable) the latest message announced, until the connection closes */
  gboolean busy;           /* a message was announced and has not ended: libsoup reads for it */
  gboolean closed;
  guint reap_id;
} ConnState;

static ConnState *
conn_state_ref (ConnState *state)
{
  g_atomic_ref_count_inc (&state->ref_count);
  return state;
}

static void
conn_state_unref (ConnState *state)
{
  if (!g_atomic_ref_count_dec (&state->ref_count))
    return;
  g_clear_handle_id (&state->reap_id, g_source_remove);
  g_clear_object (&state->last);
  g_free (state);
}

static void
conn_state_closed (ConnState *state)
{
  state->closed = TRUE;
  g_clear_handle_id (&state->reap_id, g_source_remove);
  g_clear_object (&state->last); /* the message holds libsoup's connection, which holds this */
}

static gboolean
reap (gpointer user_data)
{
  ConnState *state = user_data;
  g_autoptr (SoupServerMessage) last = NULL;
  g_autoptr (GIOStream) stream = NULL;

  state->reap_id = 0;
  if (state->closed || state->busy || state->last == NULL)
    return G_SOURCE_REMOVE; /* libsoup closed it, or reads for a message of its own and will */
  last = g_steal_pointer (&state->last);
  g_debug ("closing a connection its client closed between requests");
  stream = soup_server_message_steal_connection (last);
  if (stream != NULL)
    g_io_stream_close (stream, NULL, NULL);
  return G_SOURCE_REMOVE;
}

/* The client's end of stream was read. Returns: whether libsoup must not see it (yet): the connection
 * is between requests, and reap() takes it back before libsoup reads again. */
static gboolean
conn_state_peer_closed (ConnState *state)
{
  if (state->closed || state->busy || state->last == NULL)
    return FALSE;
  if (state->reap_id == 0)
    state->reap_id = g_idle_add_full (G_PRIORITY_HIGH, reap, conn_state_ref (state), (GDestroyNotify) conn_state_unref);
  return TRUE;
}

/* ---- the socket under both streams ---------------------------------------------------------- */

static gboolean
socket_ready (GSocket *socket, GIOCondition condition)
{
  return (g_socket_condition_check (socket, condition) & condition) != 0;
}

/* the socket's own source under the pollable one, as GSocketInputStream and GSocketOutputStream make
 * it: what a stream waits with when the connection's poll record cannot serve (below) */
static GSource *
socket_stream_source (gpointer stream, GSocket *socket, GIOCondition condition, GCancellable *cancellable)
{
  g_autoptr (GSource) socket_source = g_socket_create_source (socket, condition, NULL);

  return g_pollable_source_new_full (stream, socket_source, cancellable);
}

/* ---- waiting for the socket without changing what the main loop polls ----------------------------
 *
 * libsoup makes a new source each time it waits for a connection (for every request on a kept-alive
 * connection) and destroys it when it is dispatched. With the socket's own source, each one adds the
 * descriptor to the main context's poll records and removes it again, and blocks and unblocks it
 * around its dispatch; GLib 2.74 writes its wake-up eventfd at every one of these changes and, since
 * the set changed, throws away the next poll's results and polls again (gmain.c,
 * g_main_context_add_poll_unlocked(), g_main_context_check(): "poll_changed"). Measured: 8 eventfd
 * writes, one read and one extra main-loop iteration per request, for the bare SoupServer too.
 *
 * So each connection has one poll record for its whole life: a ConnPoll, attached once, whose GPollFD
 * asks for what the connection's waiters ask for at this iteration. A waiter (ConnWait) has no
 * descriptor of its own: its prepare() adds its condition to the record's events, its check() reads
 * the record's revents (GLib fills them before any check(); the record has a higher priority than
 * any waiter, so it is polled whenever a waiter may be checked). The record's check() clears the
 * events again after each poll, so a descriptor nobody waits for is polled for nothing: a readable
 * connection whose request is being answered does not wake the loop. GLib copies every record's
 * events into poll()'s array at each iteration (g_main_context_query(), which says it allows
 * changing them behind its back). A connection that hangs up while nobody waits would make poll()
 * return at once at every iteration: the record then leaves the poll set, and every later waiter is
 * ready at once (the read or write that follows tells libsoup what happened). */
typedef struct {
  GSource source;
  GPollFD pollfd;
  gboolean dead; /* the descriptor is no longer polled: closed, or hung up while nobody waited */
} ConnPoll;

static gboolean
conn_poll_check (GSource *source)
{
  ConnPoll *cp = (ConnPoll *) source;
  gboolean nobody_waited = cp->pollfd.events == 0;

  cp->pollfd.events = 0; /* asked for again by the waiters' next prepare() */
  return !cp->dead && nobody_waited && (cp->pollfd.revents & (G_IO_ERR | G_IO_HUP | G_IO_NVAL)) != 0;
}

static gboolean
conn_poll_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  ConnPoll *cp = (ConnPoll *) source;

  g_debug ("a connection hung up while nobody waited for it: its descriptor is no longer polled");
  cp->dead = TRUE;
  g_source_remove_poll (source, &cp->pollfd);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs conn_poll_funcs = {
  .check = conn_poll_check,
  .dispatch = conn_poll_dispatch,
};

static GSource *
conn_poll_new (GSocket *socket)
{
  GSource *source = g_source_new (&conn_poll_funcs, sizeof (ConnPoll));
  ConnPoll *cp = (ConnPoll *) source;

  cp->pollfd.fd = g_socket_get_fd (socket);
  g_source_add_poll (source, &cp->pollfd);
  g_source_set_priority (source, G_PRIORITY_HIGH);
  g_source_set_static_name (source, "rtp connection poll");
  return source;
}

/* before the connection's descriptor is closed: the main context must not poll it any more */
static void
conn_poll_close (GSource *source)
{
  ((ConnPoll *) source)->dead = TRUE;
  g_source_destroy (source);
}

typedef struct {
  GSource source;
  GSource *poll;   /* (owned) the ConnPoll */
  GObject *stream; /* (owned) what the callback (a GPollableSourceFunc) is given */
  GIOCondition condition;
} ConnWait;

static gboolean
conn_wait_prepare (GSource *source, gint *timeout)
{
  ConnWait *w = (ConnWait *) source;
  ConnPoll *cp = (ConnPoll *) w->poll;

  *timeout = -1;
  if (cp->dead)
    return TRUE;
  cp->pollfd.events |= w->condition;
  return FALSE;
}

static gboolean
conn_wait_check (GSource *source)
{
  ConnWait *w = (ConnWait *) source;
  ConnPoll *cp = (ConnPoll *) w->poll;

  return cp->dead || (cp->pollfd.revents & (w->condition | G_IO_ERR | G_IO_HUP | G_IO_NVAL)) != 0;
}

/* the waiter is the stream's pollable source itself, as g_pollable_source_new() makes one (not one
 * more source and closure under it) */
static gboolean
conn_wait_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  ConnWait *w = (ConnWait *) source;

  return callback != NULL ? ((GPollableSourceFunc) (void (*) (void)) callback) (w->stream, user_data)
                          : G_SOURCE_CONTINUE;
}

static void
conn_wait_finalize (GSource *source)
{
  g_source_unref (((ConnWait *) source)->poll);
  g_object_unref (((ConnWait *) source)->stream);
}

/* a closure as the callback (libsoup gives the source a dummy one) */
static gboolean
conn_wait_closure_callback (GObject *stream, gpointer data)
{
  GValue param = G_VALUE_INIT;
  GValue result = G_VALUE_INIT;
  gboolean again;

  g_value_init (&result, G_TYPE_BOOLEAN);
  g_value_init (&param, G_TYPE_OBJECT);
  g_value_set_object (&param, stream);
  g_closure_invoke (data, &result, 1, &param, NULL);
  again = g_value_get_boolean (&result);
  g_value_unset (&result);
  g_value_unset (&param);
  return again;
}

static GSourceFuncs conn_wait_funcs = {
  .prepare = conn_wait_prepare,
  .check = conn_wait_check,
  .dispatch = conn_wait_dispatch,
  .finalize = conn_wait_finalize,
  .closure_callback = (GSourceFunc) (void (*) (void)) conn_wait_closure_callback,
};

/* A pollable source for @stream: ready when @socket is ready for @condition */
static GSource *
conn_stream_source (gpointer stream, GSource *poll, GSocket *socket, GIOCondition condition, GCancellable *cancellable)
{
  GMainContext *context = g_main_context_default ();
  g_autoptr (GSource) wait = NULL;

  /* the record serves waiters of the main context (all of the server's; it is attached there and
   * nowhere else); anything else (a context pushed as a thread's default, a cancellable, a closed
   * connection) waits with the socket's source */
  if (cancellable != NULL || g_main_context_get_thread_default () != NULL || g_source_is_destroyed (poll))
    return socket_stream_source (stream, socket, condition, cancellable);
  if (g_source_get_context (poll) == NULL)
    g_source_attach (poll, context);
  wait = g_source_new (&conn_wait_funcs, sizeof (ConnWait));
  ((ConnWait *) wait)->poll = g_source_ref (poll);
  ((ConnWait *) wait)->stream = g_object_ref (stream);
  ((ConnWait *) wait)->condition = condition;
  g_source_set_static_name (wait, "rtp connection wait");
  return g_steal_pointer (&wait);
}

/* ---- the input stream: the socket's, seen by the watch ------------------------------------ */

#define RTP_TYPE_WATCHED_INPUT (rtp_watched_input_get_type ())
G_DECLARE_FINAL_TYPE (RtpWatchedInput, rtp_watched_input, RTP, WATCHED_INPUT, GFilterInputStream)

struct _RtpWatchedInput {
  GFilterInputStream parent_instance;
  RtpLineWatch *watch; /* (owned) */
  GSocket *socket;     /* (unowned) the connection's, held by the base stream (a GSocketInputStream) */
  ConnState *state;    /* (owned) */
  GSource *poll;       /* (owned) the connection's ConnPoll */
};

static void rtp_watched_input_pollable_init (GPollableInputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (RtpWatchedInput, rtp_watched_input, G_TYPE_FILTER_INPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_INPUT_STREAM, rtp_watched_input_pollable_init))

static GInputStream *
base_of (gpointer stream)
{
  return g_filter_input_stream_get_base_stream (G_FILTER_INPUT_STREAM (stream));
}

/* A read of @n bytes (-1: @error) found the client gone — an end of stream or an error such as a
 * reset — between two requests: @error becomes G_IO_ERROR_WOULD_BLOCK, so that libsoup waits for the
 * socket again, and reap() (of a higher priority than libsoup's source) takes the connection back.
 * Returns: whether it did. */
static gboolean
peer_closed (RtpWatchedInput *self, gssize n, gsize count, GError **error)
{
  if (n > 0 || count == 0)
    return FALSE;
  if (n < 0 && (error == NULL || *error == NULL || g_error_matches (*error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)))
    return FALSE;
  if (!conn_state_peer_closed (self->state))
    return FALSE;
  g_clear_error (error);
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "the connection is being closed");
  return TRUE;
}

static gssize
watched_read (GInputStream *stream, void *buffer, gsize count, GCancellable *cancellable, GError **error)
{
  gssize n = g_input_stream_read (base_of (stream), buffer, count, cancellable, error);

  if (peer_closed (RTP_WATCHED_INPUT (stream), n, count, error))
    return -1;
  if (n > 0)
    rtp_line_watch_feed (RTP_WATCHED_INPUT (stream)->watch, buffer, (gsize) n);
  return n;
}

/* GFilterInputStream's skip would go around the watch */
static gssize
watched_skip (GInputStream *stream, gsize count, GCancellable *cancellable, GError **error)
{
  char buffer[8192];

  return watched_read (stream, buffer, MIN (count, sizeof buffer), cancellable, error);
}

static gboolean
watched_can_poll (GPollableInputStream *stream)
{
  return TRUE;
}

static gboolean
watched_is_readable (GPollableInputStream *stream)
{
  return socket_ready (RTP_WATCHED_INPUT (stream)->socket, G_IO_IN);
}

static GSource *
watched_create_source (GPollableInputStream *stream, GCancellable *cancellable)
{
  RtpWatchedInput *self = RTP_WATCHED_INPUT (stream);

  return conn_stream_source (stream, self->poll, self->socket, G_IO_IN, cancellable);
}

static gssize
watched_read_nonblocking (GPollableInputStream *stream, void *buffer, gsize count, GError **error)
{
  gssize n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (base_of (stream)), buffer, count, NULL,
                                                       error);

  if (peer_closed (RTP_WATCHED_INPUT (stream), n, count, error))
    return -1;
  if (n > 0)
    rtp_line_watch_feed (RTP_WATCHED_INPUT (stream)->watch, buffer, (gsize) n);
  return n;
}

static void
rtp_watched_input_pollable_init (GPollableInputStreamInterface *iface)
{
  iface->can_poll = watched_can_poll;
  iface->is_readable = watched_is_readable;
  iface->create_source = watched_create_source;
  iface->read_nonblocking = watched_read_nonblocking;
}

static void
rtp_watched_input_finalize (GObject *object)
{
  g_clear_pointer (&RTP_WATCHED_INPUT (object)->watch, rtp_line_watch_unref);
  g_clear_pointer (&RTP_WATCHED_INPUT (object)->state, conn_state_unref);
  g_clear_pointer (&RTP_WATCHED_INPUT (object)->poll, g_source_unref);
  G_OBJECT_CLASS (rtp_watched_input_parent_class)->finalize (object);
}

static void
rtp_watched_input_class_init (RtpWatchedInputClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_watched_input_finalize;
  G_INPUT_STREAM_CLASS (klass)->read_fn = watched_read;
  G_INPUT_STREAM_CLASS (klass)->skip = watched_skip;
}

static void
rtp_watched_input_init (RtpWatchedInput *self)
{
}

/* ---- the output stream: an answer's head and body in one segment -------------------------------- */

#define RTP_TYPE_CONN_OUTPUT (rtp_conn_output_get_type ())
#define CONN_OUTPUT_HEAD_MAX 2048 /* a longer head goes out at once, with MSG_MORE */
G_DECLARE_FINAL_TYPE (RtpConnOutput, rtp_conn_output, RTP, CONN_OUTPUT, GOutputStream)

struct _RtpConnOutput {
  GOutputStream parent_instance;
  GSocket *socket;  /* (owned) the connection's (libsoup may keep the stream a moment longer) */
  GSource *poll;    /* (owned) the connection's ConnPoll */
  ConnState *state; /* (owned) whose latest message is the one answered */
  gboolean held;    /* a head was sent with MSG_MORE and waits in the kernel for its body */
  /* a head kept back to go out with the first write of its body, in one sendmsg() */
  char head[CONN_OUTPUT_HEAD_MAX];
  gsize head_len;
  gsize head_sent; /* of head_len: what a partial sendmsg() sent of it */
};

static void rtp_conn_output_pollable_init (GPollableOutputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (RtpConnOutput, rtp_conn_output, G_TYPE_OUTPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_OUTPUT_STREAM, rtp_conn_output_pollable_init))

/* Whether @buffer is a whole response head (libsoup writes it with one call) that announces a body
 * of at least one byte, which libsoup writes next. */
gboolean
rtp_http_head_announces_body (const char *buffer, gsize count)
{
  static const char field[] = "\r\nContent-Length: ";
  const char *at;

  if (count < 16 || memcmp (buffer, "HTTP/1.", 7) != 0 || memcmp (buffer + count - 4, "\r\n\r\n", 4) != 0)
    return FALSE;
  at = memmem (buffer, count - 2, field, sizeof field - 1);
  if (at == NULL)
    return FALSE;
  at += sizeof field - 1;
  while (*at == '0')
    at++; /* "Content-Length: 0" (and 00...) announces nothing */
  return *at >= '1' && *at <= '9';
}

/* libsoup's head has gone out with MSG_MORE and no body followed: out it goes now */
static void
conn_output_push (RtpConnOutput *self)
{
  if (!self->held)
    return;
  self->held = FALSE;
  g_socket_set_option (self->socket, IPPROTO_TCP, TCP_NODELAY, TRUE, NULL); /* pushes what waits */
}

static gssize
send_error (RtpConnOutput *self, int saved, GError **error)
{
  conn_output_push (self); /* whatever waits in the kernel goes out */
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "%s", g_strerror (saved));
  return -1;
}

/* A head kept back, and @count bytes of its body, in one sendmsg(). Returns: the bytes of the body
 * sent; would-block while not even the head has gone out whole. */
static gssize
send_head_and_body (RtpConnOutput *self, const void *buffer, gsize count, GError **error)
{
  struct iovec iov[2] = { { self->head + self->head_sent, self->head_len - self->head_sent },
                          { (void *) buffer, count } };
  struct msghdr msg = { .msg_iov = iov, .msg_iovlen = count > 0 ? 2 : 1 };
  gsize rest = self->head_len - self->head_sent;
  ssize_t n;

  do
    n = sendmsg (g_socket_get_fd (self->socket), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return send_error (self, errno, error);
  if ((gsize) n < rest || ((gsize) n == rest && count > 0))
    {
      self->head_sent += (gsize) n; /* n <= rest here */
      if (self->head_sent == self->head_len)
        self->head_len = self->head_sent = 0;
      return send_error (self, EAGAIN, error); /* the head was reported written already; the body waits */
    }
  self->head_len = self->head_sent = 0;
  return (gssize) ((gsize) n - rest);
}

static gssize
conn_output_send (RtpConnOutput *self, const void *buffer, gsize count, GError **error)
{
  int flags = MSG_DONTWAIT | MSG_NOSIGNAL;
  gboolean head;
  ssize_t n;

  if (self->head_len > 0)
    return send_head_and_body (self, buffer, count, error);
  head = rtp_http_head_announces_body (buffer, count);
  /* a head whose body follows (not the answer to a HEAD) is kept and sent with the body's first
   * write: one system call for a small answer instead of two */
  if (head && count <= sizeof self->head && self->state->last != NULL &&
      soup_server_message_get_method (self->state->last) != SOUP_METHOD_HEAD)
    {
      memcpy (self->head, buffer, count);
      self->head_len = count;
      self->head_sent = 0;
      return (gssize) count;
    }
  if (head)
    flags |= MSG_MORE;
  do
    n = send (g_socket_get_fd (self->socket), buffer, count, flags);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return send_error (self, errno, error);
  /* a head sent in part is followed by its rest, then its body, both without MSG_MORE */
  self->held = head && (gsize) n == count;
  return n;
}

static gssize
conn_output_write_nonblocking (GPollableOutputStream *stream, const void *buffer, gsize count, GError **error)
{
  return conn_output_send (RTP_CONN_OUTPUT (stream), buffer, count, error);
}

static gssize
conn_output_write (GOutputStream *stream, const void *buffer, gsize count, GCancellable *cancellable, GError **error)
{
  RtpConnOutput *self = RTP_CONN_OUTPUT (stream);

  for (;;)
    {
      g_autoptr (GError) local = NULL;
      gssize n = conn_output_send (self, buffer, count, &local);

      if (n >= 0 || !g_error_matches (local, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          if (local != NULL)
            g_propagate_error (error, g_steal_pointer (&local));
          return n;
        }
      if (!g_socket_condition_wait (self->socket, G_IO_OUT, cancellable, error))
        return -1;
    }
}

/* a kept head whose body never came (an answer libsoup ended early) goes out on its own */
static gboolean
conn_output_send_kept (RtpConnOutput *self, GError **error)
{
  return self->head_len == 0 || send_head_and_body (self, NULL, 0, error) >= 0;
}

/* also what closing the stream does: g_output_stream_close() flushes first, and there is nothing
 * else to close (the socket is the connection's) */
static gboolean
conn_output_flush (GOutputStream *stream, GCancellable *cancellable, GError **error)
{
  RtpConnOutput *self = RTP_CONN_OUTPUT (stream);

  conn_output_push (self);
  return conn_output_send_kept (self, error);
}

static gboolean
conn_output_can_poll (GPollableOutputStream *stream)
{
  return TRUE;
}

static gboolean
conn_output_is_writable (GPollableOutputStream *stream)
{
  return socket_ready (RTP_CONN_OUTPUT (stream)->socket, G_IO_OUT);
}

static GSource *
conn_output_create_source (GPollableOutputStream *stream, GCancellable *cancellable)
{
  RtpConnOutput *self = RTP_CONN_OUTPUT (stream);

  return conn_stream_source (stream, self->poll, self->socket, G_IO_OUT, cancellable);
}

static void
rtp_conn_output_pollable_init (GPollableOutputStreamInterface *iface)
{
  iface->can_poll = conn_output_can_poll;
  iface->is_writable = conn_output_is_writable;
  iface->create_source = conn_output_create_source;
  iface->write_nonblocking = conn_output_write_nonblocking;
}

static void
rtp_conn_output_finalize (GObject *object)
{
  g_clear_object (&RTP_CONN_OUTPUT (object)->socket);
  g_clear_pointer (&RTP_CONN_OUTPUT (object)->poll, g_source_unref);
  g_clear_pointer (&RTP_CONN_OUTPUT (object)->state, conn_state_unref);
  G_OBJECT_CLASS (rtp_conn_output_parent_class)->finalize (object);
}

static void
rtp_conn_output_class_init (RtpConnOutputClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_conn_output_finalize;
  G_OUTPUT_STREAM_CLASS (klass)->write_fn = conn_output_write;
  G_OUTPUT_STREAM_CLASS (klass)->flush = conn_output_flush;
}

static void
rtp_conn_output_init (RtpConnOutput *self)
{
}

/* ---- the connection: a TCP connection whose input stream is the watched one ------------------ */

#define RTP_TYPE_WATCHED_CONNECTION (rtp_watched_connection_get_type ())
G_DECLARE_FINAL_TYPE (RtpWatchedConnection, rtp_watched_connection, RTP, WATCHED_CONNECTION, GTcpConnection)

struct _RtpWatchedConnection {
  GTcpConnection parent_instance;
  RtpLineWatch *watch;   /* (owned) */
  ConnState *state;      /* (owned) */
  GSource *poll;         /* (owned) the ConnPoll of its socket, attached at the first wait */
  GInputStream *input;   /* (owned) (nullable) made at the first ask */
  GOutputStream *output; /* (owned) (nullable) made at the first ask */
};

G_DEFINE_FINAL_TYPE (RtpWatchedConnection, rtp_watched_connection, G_TYPE_TCP_CONNECTION)

static GInputStream *
watched_connection_get_input_stream (GIOStream *stream)
{
  RtpWatchedConnection *self = RTP_WATCHED_CONNECTION (stream);

  if (self->input == NULL)
    {
      GInputStream *base = G_IO_STREAM_CLASS (rtp_watched_connection_parent_class)->get_input_stream (stream);
      RtpWatchedInput *input = g_object_new (RTP_TYPE_WATCHED_INPUT, "base-stream", base, NULL);

      input->watch = rtp_line_watch_ref (self->watch);
      input->state = conn_state_ref (self->state);
      input->socket = g_socket_connection_get_socket (G_SOCKET_CONNECTION (self));
      input->poll = g_source_ref (self->poll);
      self->input = G_INPUT_STREAM (input);
    }
  return self->input;
}

static GOutputStream *
watched_connection_get_output_stream (GIOStream *stream)
{
  RtpWatchedConnection *self = RTP_WATCHED_CONNECTION (stream);

  if (self->output == NULL)
    {
      RtpConnOutput *output = g_object_new (RTP_TYPE_CONN_OUTPUT, NULL);

      output->socket = g_object_ref (g_socket_connection_get_socket (G_SOCKET_CONNECTION (self)));
      output->poll = g_source_ref (self->poll);
      output->state = conn_state_ref (self->state);
      self->output = G_OUTPUT_STREAM (output);
    }
  return self->output;
}

static gboolean
watched_connection_close (GIOStream *stream, GCancellable *cancellable, GError **error)
{
  RtpWatchedConnection *self = RTP_WATCHED_CONNECTION (stream);

  conn_state_closed (self->state);
  conn_poll_close (self->poll);
  if (self->output != NULL)
    g_output_stream_close (self->output, cancellable, NULL);
  return G_IO_STREAM_CLASS (rtp_watched_connection_parent_class)->close_fn (stream, cancellable, error);
}

static void
rtp_watched_connection_finalize (GObject *object)
{
  RtpWatchedConnection *self = RTP_WATCHED_CONNECTION (object);

  g_clear_object (&self->input);
  g_clear_object (&self->output);
  g_clear_pointer (&self->watch, rtp_line_watch_unref);
  conn_state_closed (self->state);
  g_clear_pointer (&self->state, conn_state_unref);
  if (self->poll != NULL)
    conn_poll_close (self->poll);
  g_clear_pointer (&self->poll, g_source_unref);
  G_OBJECT_CLASS (rtp_watched_connection_parent_class)->finalize (object);
}

static void
rtp_watched_connection_class_init (RtpWatchedConnectionClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_watched_connection_finalize;
  G_IO_STREAM_CLASS (klass)->get_input_stream = watched_connection_get_input_stream;
  G_IO_STREAM_CLASS (klass)->get_output_stream = watched_connection_get_output_stream;
  G_IO_STREAM_CLASS (klass)->close_fn = watched_connection_close;
}

static void
rtp_watched_connection_init (RtpWatchedConnection *self)
{
}

/* ---- accepting ---------------------------------------------------------------------------- */

struct _RtpHttpListener {
  SoupServer *soup; /* (owned) */
  GSocket *socket;  /* (owned) listening */
  GSource *source;  /* (owned) (nullable) readable listening socket, while accepting */
  guint pause_id;   /* accepting again after an error */
  GSocket *idle[2]; /* (owned) (nullable) the socket pair of libsoup's listener that never accepts */
};

static void listener_watch (RtpHttpListener *self);

static void
source_destroy_and_unref (GSource *source)
{
  g_source_destroy (source);
  g_source_unref (source);
}

static void
accept_client (RtpHttpListener *self, GSocket *client)
{
  g_autoptr (GSocketAddress) local = g_socket_get_local_address (client, NULL);
  g_autoptr (GSocketAddress) remote = g_socket_get_remote_address (client, NULL);
  g_autoptr (RtpWatchedConnection) conn = NULL;

  if (local == NULL || remote == NULL)
    {
      g_socket_close (client, NULL); /* gone before it was looked at */
      return;
    }
  g_socket_set_option (client, IPPROTO_TCP, TCP_NODELAY, TRUE, NULL); /* as libsoup's own listener does */
  conn = g_object_new (RTP_TYPE_WATCHED_CONNECTION, "socket", client, NULL);
  conn->watch = rtp_line_watch_new ();
  conn->state = g_new0 (ConnState, 1);
  conn->poll = conn_poll_new (client);
  g_atomic_ref_count_init (&conn->state->ref_count);
  g_object_set_qdata_full (G_OBJECT (remote), client_socket_quark (), g_object_ref (client), g_object_unref);
  g_object_set_qdata_full (G_OBJECT (remote), line_watch_quark (), rtp_line_watch_ref (conn->watch),
                           (GDestroyNotify) rtp_line_watch_unref);
  g_object_set_qdata_full (G_OBJECT (remote), conn_state_quark (), conn_state_ref (conn->state),
                           (GDestroyNotify) conn_state_unref);
  soup_server_accept_iostream (self->soup, G_IO_STREAM (conn), local, remote, NULL);
}

static gboolean
accept_again (gpointer user_data)
{
  RtpHttpListener *self = user_data;

  self->pause_id = 0;
  listener_watch (self);
  return G_SOURCE_REMOVE;
}

static gboolean
accept_ready (GSocket *listening, GIOCondition condition, gpointer user_data)
{
  RtpHttpListener *self = user_data;

  for (guint i = 0; i < ACCEPT_BATCH; i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GSocket) client = g_socket_accept (listening, NULL, &error);

      if (client != NULL)
        {
          accept_client (self, client);
          continue;
        }
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        break;
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TOO_MANY_OPEN_FILES) &&
          !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE))
        {
          g_debug ("accepting a connection: %s", error->message); /* e.g. a client that gave up */
          continue;
        }
      g_warning ("Cannot accept a connection: %s; trying again in %u ms", error->message, ACCEPT_PAUSE_MS);
      g_clear_pointer (&self->source, source_destroy_and_unref);
      self->pause_id = g_timeout_add (ACCEPT_PAUSE_MS, accept_again, self);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static void
listener_watch (RtpHttpListener *self)
{
  self->source = g_socket_create_source (self->socket, G_IO_IN, NULL);
  g_source_set_callback (self->source, G_SOURCE_FUNC (accept_ready), self, NULL);
  g_source_attach (self->source, NULL);
}

/**
 * rtp_http_listener_new:
 * @listening: a bound socket that listens
 *
 * Accepts the connections that arrive on @listening, and hands them to @soup, until freed.
 */
RtpHttpListener *
rtp_http_listener_new (SoupServer *soup, GSocket *listening)
{
  RtpHttpListener *self = g_new0 (RtpHttpListener, 1);
  g_autoptr (GError) error = NULL;
  int fds[2];

  self->soup = g_object_ref (soup);
  self->socket = g_object_ref (listening);
  g_socket_set_blocking (listening, FALSE);
  listener_watch (self);
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0 &&
      (self->idle[0] = g_socket_new_from_fd (fds[0], &error)) != NULL &&
      (self->idle[1] = g_socket_new_from_fd (fds[1], &error)) != NULL &&
      soup_server_listen_socket (soup, self->idle[0], 0, &error))
    return self;
  g_warning ("Connections will not be kept open between requests: %s",
             error != NULL ? error->message : g_strerror (errno));
  return self;
}

void
rtp_http_listener_free (RtpHttpListener *self)
{
  if (self == NULL)
    return;
  g_clear_pointer (&self->source, source_destroy_and_unref);
  g_clear_handle_id (&self->pause_id, g_source_remove);
  g_socket_close (self->socket, NULL);
  g_object_unref (self->socket);
  for (guint i = 0; i < G_N_ELEMENTS (self->idle); i++)
    if (self->idle[i] != NULL)
      {
        g_socket_close (self->idle[i], NULL);
        g_object_unref (self->idle[i]);
      }
  g_object_unref (self->soup);
  g_free (self);
}

/* ---- per message ---------------------------------------------------------------------------- */

/* What accept_client() put on the remote address of @msg's connection, or NULL for a connection
 * of libsoup's own listener (which has a GSocket of its own and no such data). */
static gpointer
connection_data (SoupServerMessage *msg, GQuark quark)
{
  GSocketAddress *remote;

  if (soup_server_message_get_socket (msg) != NULL)
    return NULL;
  remote = soup_server_message_get_remote_address (msg);
  return remote != NULL ? g_object_get_qdata (G_OBJECT (remote), quark) : NULL;
}

GSocket *
rtp_http_message_get_socket (SoupServerMessage *msg)
{
  GSocket *socket = soup_server_message_get_socket (msg);

  return socket != NULL ? socket : connection_data (msg, client_socket_quark ());
}

/**
 * rtp_http_message_take_dot_segment:
 *
 * Returns: whether the client spelled the target of @msg, whose headers were just read, with a
 * "." or ".." segment that libsoup removed.
 */
gboolean
rtp_http_message_take_dot_segment (SoupServerMessage *msg)
{
  RtpLineWatch *watch = connection_data (msg, line_watch_quark ());
  GUri *uri;

  if (watch == NULL || rtp_line_watch_get_pending (watch) == 0)
    return FALSE;
  uri = soup_server_message_get_uri (msg);
  return rtp_line_watch_take (watch, g_uri_get_path (uri), g_uri_get_query (uri));
}

/* libsoup announced @msg ("request-started"): it reads for it until it ends */
void
rtp_http_message_started (SoupServerMessage *msg)
{
  ConnState *state = connection_data (msg, conn_state_quark ());

  if (state == NULL || state->closed)
    return;
  state->busy = TRUE;
  g_set_object (&state->last, msg);
}

/* @msg was answered or given up ("request-finished", "request-aborted") */
void
rtp_http_message_ended (SoupServerMessage *msg)
{
  ConnState *state = connection_data (msg, conn_state_quark ());

  if (state == NULL || state->last != msg)
    return;
  state->busy = FALSE;
  /* kept only for its connection: not its bodies (an import's could be large) */
  soup_message_body_truncate (soup_server_message_get_request_body (msg));
  soup_message_body_truncate (soup_server_message_get_response_body (msg));
}
