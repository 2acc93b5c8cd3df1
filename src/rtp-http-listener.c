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
 * libsoup keeps for the connection's whole life and hands out per message. */
#define G_LOG_DOMAIN "RtpHttpServer"

#include "rtp-http-listener.h"
#include "rtp-request-line.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define ACCEPT_BATCH 16
#define ACCEPT_PAUSE_MS 100u /* after an error such as EMFILE: not a busy loop, not a dead listener */

G_DEFINE_QUARK (rtp - http - client - socket, client_socket)
G_DEFINE_QUARK (rtp - http - line - watch, line_watch)

/* ---- the input stream: the socket's, seen by the watch ------------------------------------ */

#define RTP_TYPE_WATCHED_INPUT (rtp_watched_input_get_type ())
G_DECLARE_FINAL_TYPE (RtpWatchedInput, rtp_watched_input, RTP, WATCHED_INPUT, GFilterInputStream)

struct _RtpWatchedInput {
  GFilterInputStream parent_instance;
  RtpLineWatch *watch; /* (owned) */
};

static void rtp_watched_input_pollable_init (GPollableInputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (RtpWatchedInput, rtp_watched_input, G_TYPE_FILTER_INPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_INPUT_STREAM, rtp_watched_input_pollable_init))

static GInputStream *
base_of (gpointer stream)
{
  return g_filter_input_stream_get_base_stream (G_FILTER_INPUT_STREAM (stream));
}

static gssize
watched_read (GInputStream *stream, void *buffer, gsize count, GCancellable *cancellable, GError **error)
{
  gssize n = g_input_stream_read (base_of (stream), buffer, count, cancellable, error);

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
  GInputStream *base = base_of (stream);

  return G_IS_POLLABLE_INPUT_STREAM (base) && g_pollable_input_stream_can_poll (G_POLLABLE_INPUT_STREAM (base));
}

static gboolean
watched_is_readable (GPollableInputStream *stream)
{
  return g_pollable_input_stream_is_readable (G_POLLABLE_INPUT_STREAM (base_of (stream)));
}

static GSource *
watched_create_source (GPollableInputStream *stream, GCancellable *cancellable)
{
  g_autoptr (GSource)
    base_source = g_pollable_input_stream_create_source (G_POLLABLE_INPUT_STREAM (base_of (stream)), NULL);

  return g_pollable_source_new_full (stream, base_source, cancellable);
}

static gssize
watched_read_nonblocking (GPollableInputStream *stream, void *buffer, gsize count, GError **error)
{
  gssize n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (base_of (stream)), buffer, count, NULL,
                                                       error);

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

/* ---- the connection: a TCP connection whose input stream is the watched one ------------------ */

#define RTP_TYPE_WATCHED_CONNECTION (rtp_watched_connection_get_type ())
G_DECLARE_FINAL_TYPE (RtpWatchedConnection, rtp_watched_connection, RTP, WATCHED_CONNECTION, GTcpConnection)

struct _RtpWatchedConnection {
  GTcpConnection parent_instance;
  RtpLineWatch *watch; /* (owned) */
  GInputStream *input; /* (owned) (nullable) made at the first ask */
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
      self->input = G_INPUT_STREAM (input);
    }
  return self->input;
}

static void
rtp_watched_connection_finalize (GObject *object)
{
  RtpWatchedConnection *self = RTP_WATCHED_CONNECTION (object);

  g_clear_object (&self->input);
  g_clear_pointer (&self->watch, rtp_line_watch_unref);
  G_OBJECT_CLASS (rtp_watched_connection_parent_class)->finalize (object);
}

static void
rtp_watched_connection_class_init (RtpWatchedConnectionClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_watched_connection_finalize;
  G_IO_STREAM_CLASS (klass)->get_input_stream = watched_connection_get_input_stream;
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
  g_object_set_qdata_full (G_OBJECT (remote), client_socket_quark (), g_object_ref (client), g_object_unref);
  g_object_set_qdata_full (G_OBJECT (remote), line_watch_quark (), rtp_line_watch_ref (conn->watch),
                           (GDestroyNotify) rtp_line_watch_unref);
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
