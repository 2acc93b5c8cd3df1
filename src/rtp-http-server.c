/* rtp-http-server.c: routing, checks in API.md's order, CORS, body limits, envelopes
 *
 * The server runs with raw-paths so that each path segment is percent-decoded on its
 * own ("%2F" stays inside its segment; "..", "%00" and bad UTF-8 never reach a handler).
 * Checks run in the contract's order: route (404/405) → token (401/403) → role (403) →
 * body (400/413) → the handler (exists 404, assignment 403, the rest). */
#define G_LOG_DOMAIN "RtpHttpServer"

#include "rtp-http-server.h"
#include "rtp-error.h"
#include "rtp-http-listener.h"
#include "rtp-i18n.h"
#include "rtp-json.h"
#include "rtp-log.h"
#include "rtp-metrics.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

/* What /metrics tells of one route (or of requests that matched none, per method): written by the
 * main thread only, which answers every request, so no lock and no atomic is needed. */
typedef struct {
  char *route;   /* the registered pattern, or "none" */
  char *method;  /* the route's, or for "none" one of a fixed few */
  GArray *codes; /* CodeCount */
  RtpHistogram duration;
} RouteStats;

typedef struct {
  guint code;
  guint64 count;
} CodeCount;

typedef struct {
  char *method;
  char *pattern;
  RouteStats stats;
  GStrv segments;      /* pattern; "*" matches one segment */
  guint32 specificity; /* literal segments, leftmost weighs most */
  guint n_segments;
  guint64 wildcards; /* bit i: segment i is "*" */
  RtpRouteFlags flags;
  RtpRouteFunc func;
  gpointer user_data;
} Route;

struct _RtpHttpServer {
  GObject parent_instance;

  SoupServer *soup;          /* (owned) */
  RtpHttpListener *listener; /* (owned) (nullable) once it listens */
  RtpUserManager *users;     /* (owned) */
  RtpDatabase *db;           /* (owned) (nullable) for the stamp fence */
  GPtrArray *routes;         /* (owned) Route */
  gsize max_body_bytes;
  gsize max_import_bytes;
  char *cors_origin; /* (owned) (nullable) */
  char *url;         /* (owned) (nullable) where it listens, once it does */
  guint client_timeout_ms;
  guint max_connections;
  GHashTable *conns; /* GSocket * (unowned, weakly referenced) → Conn */
  GQueue conn_order; /* Conn.link, least recently active first */
  GQueue guards;     /* Guard.link of the requests being read, soonest deadline first */
  guint sweep_id;    /* the timer that closes connections past their deadline, while @guards is not empty */
  guint in_flight;
  guint64 served;
  gboolean accepting;
  gboolean access_log;
  GHashTable *unmatched; /* method → RouteStats of requests that matched no route */
};

struct _RtpRequest {
  gatomicrefcount ref_count;
  RtpHttpServer *server;  /* (owned) */
  SoupServerMessage *msg; /* (owned) */
  GStrv params;           /* (owned) */
  RtpUser *caller;        /* (owned) (nullable) */
  JsonObject *body;       /* (owned) (nullable) */
  GBytes *raw_body;       /* (owned) (nullable) */
  GHashTable *query;      /* (owned) (nullable) */
  char *language;         /* (owned) */
  locale_t saved_locale;
  gboolean responded;
  gboolean paused;
  gboolean finished;
  gint64 start_us;
  GCancellable *cancellable; /* (owned) (nullable) made when a handler first asks for it */
  gboolean streaming;
  gsize queued;
  RtpDrainFunc drained;
  gpointer drained_data;
  gulong wrote_id;
  gint64 progress_us;          /* when the client last took streamed bytes (or the stream began) */
  guint stall_id;              /* checks that a streamed answer's client keeps reading */
  GSource *gone_source;        /* (owned) (nullable) watches the client's socket while a handler waits */
  gboolean disconnect_watched; /* "disconnected" is connected: the request waits (paused or streaming) */
  char *id;                    /* (owned) X-Request-Id: the client's when sane, else made here */
  const char *saved_id;        /* the request id that was current before rtp_request_enter */
  Route *route;                /* (unowned) (nullable) the route it matched */
  gint64 arrived_us;           /* when its headers had been read (monotonic) */
  guint64 bytes_out;           /* of a streamed answer */
};

static void stop_watching_client (RtpRequest *request);

/* Per request being read: the body limit, and a deadline against clients that trickle (libsoup
 * 3.2 has no header or idle timeouts of its own: a slowloris would hold a connection forever).
 * Every deadline is "now + the client timeout", so the server's queue of guards stays in
 * deadline order when a rearmed guard moves to its tail; one timer sweeps its head a few times
 * per timeout, instead of a timer source added and removed twice per request. */
typedef struct {
  RtpHttpServer *server;
  SoupServerMessage *msg; /* (unowned) the guard lives no longer than the message */
  gsize limit;
  gsize received;
  gboolean answered; /* refused before the body was read: the body is discarded, not kept */
  GSocket *socket;   /* (unowned) the connection's, for its count */
  char *id;          /* (owned) (nullable) the request id, once the headers are there */
  gint64 start_us;
  gint64 headers_us; /* when the headers were read: the request had arrived (a keep-alive connection
                      * starts waiting for its next request long before it comes) */
  Route *route;      /* (unowned) (nullable) the route found before the body, for the count of a refusal */
  gint64 deadline_us;
  GList link;          /* in server->guards while armed (link.data != NULL) */
  RtpRequest *request; /* (owned) (nullable) the handler's, from server_callback() until the message ends */
} Guard;

G_DEFINE_QUARK (rtp - http - guard, guard)

/* (nullable) the guard request_started() gave @msg */
static Guard *
guard_of (SoupServerMessage *msg)
{
  return g_object_get_qdata (G_OBJECT (msg), guard_quark ());
}

static void request_finished (SoupServerMessage *msg, gpointer user_data);

/* A request that waits (paused, or streaming its answer) learns when its connection is closed under
 * it (the server stopping): libsoup would not finish its message then. */
static void
watch_disconnect (RtpRequest *request)
{
  if (request->disconnect_watched)
    return;
  request->disconnect_watched = TRUE;
  g_signal_connect (request->msg, "disconnected", G_CALLBACK (request_finished), request);
}

/* The client's X-Request-Id when it is sane (1 to 64 of [A-Za-z0-9._-]: nothing a log line or a
 * header could be made to carry), else 16 random hex digits. */
static char *
request_id (const char *given)
{
  gsize n = given != NULL ? strlen (given) : 0;
  gboolean sane = n > 0 && n <= 64;

  for (gsize i = 0; sane && i < n; i++)
    sane = g_ascii_isalnum (given[i]) || given[i] == '.' || given[i] == '_' || given[i] == '-';
  if (sane)
    return g_strdup (given);
  {
    /* xorshift64*, seeded once per thread from GLib's generator (whose global one takes a lock per
     * call): ids to tell requests apart in logs, not secrets */
    static const char hex[] = "0123456789abcdef";
    static __thread guint64 state;
    guint64 r;

    while (state == 0)
      state = ((guint64) g_random_int () << 32) | g_random_int ();
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    r = state * 0x2545F4914F6CDD1DULL;
    char *id = g_malloc (17);
    for (int i = 15; i >= 0; i--, r >>= 4)
      id[i] = hex[r & 0xf];
    id[16] = '\0';
    return id;
  }
}
static void stream_stop (RtpRequest *request);

G_DEFINE_TYPE (RtpHttpServer, rtp_http_server, G_TYPE_OBJECT)

static void
route_stats_clear (RouteStats *stats)
{
  g_free (stats->route);
  g_free (stats->method);
  g_clear_pointer (&stats->codes, g_array_unref);
}

static void
route_stats_free (RouteStats *stats)
{
  route_stats_clear (stats);
  g_free (stats);
}

static void
route_stats_count (RouteStats *stats, guint code, gint64 duration_us)
{
  guint i;

  for (i = 0; i < stats->codes->len; i++)
    if (g_array_index (stats->codes, CodeCount, i).code == code)
      break;
  if (i == stats->codes->len)
    {
      CodeCount c = { code, 0 };
      g_array_append_val (stats->codes, c);
    }
  g_array_index (stats->codes, CodeCount, i).count++;
  rtp_histogram_observe (&stats->duration, duration_us);
}

/* The statistics of a request that matched no route: by method, the few a client may send
 * (anything else is "other", so that no label value comes from a client). */
static RouteStats *
unmatched_stats (RtpHttpServer *self, const char *method)
{
  static const char *const known[] = { "GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", NULL };
  const char *m = method != NULL && g_strv_contains (known, method) ? method : "other";
  RouteStats *stats = g_hash_table_lookup (self->unmatched, m);

  if (stats == NULL)
    {
      stats = g_new0 (RouteStats, 1);
      stats->route = g_strdup ("none");
      stats->method = g_strdup (m);
      stats->codes = g_array_new (FALSE, FALSE, sizeof (CodeCount));
      g_hash_table_insert (self->unmatched, stats->method, stats);
    }
  return stats;
}

static void
route_free (Route *route)
{
  route_stats_clear (&route->stats);
  g_free (route->pattern);
  g_free (route->method);
  g_strfreev (route->segments);
  g_free (route);
}

static void
rtp_http_server_dispose (GObject *object)
{
  RtpHttpServer *self = RTP_HTTP_SERVER (object);

  g_clear_pointer (&self->listener, rtp_http_listener_free);
  if (self->soup != NULL)
    soup_server_disconnect (self->soup);
  g_clear_object (&self->soup);
  g_clear_handle_id (&self->sweep_id, g_source_remove);
  while (!g_queue_is_empty (&self->guards))
    g_queue_pop_head_link (&self->guards)->data = NULL; /* Guard.link is embedded: unlinked, marked disarmed */
  g_clear_object (&self->users);
  g_clear_object (&self->db);
  G_OBJECT_CLASS (rtp_http_server_parent_class)->dispose (object);
}

static void
rtp_http_server_finalize (GObject *object)
{
  RtpHttpServer *self = RTP_HTTP_SERVER (object);

  g_ptr_array_unref (self->routes);
  g_hash_table_unref (self->unmatched);
  g_hash_table_unref (self->conns);
  g_free (self->cors_origin);
  g_free (self->url);
  G_OBJECT_CLASS (rtp_http_server_parent_class)->finalize (object);
}

static void
rtp_http_server_class_init (RtpHttpServerClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = rtp_http_server_dispose;
  G_OBJECT_CLASS (klass)->finalize = rtp_http_server_finalize;
}

static void
rtp_http_server_init (RtpHttpServer *self)
{
  self->routes = g_ptr_array_new_with_free_func ((GDestroyNotify) route_free);
  self->conns = g_hash_table_new (NULL, NULL);
  self->unmatched = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) route_stats_free);
  self->accepting = TRUE;
}

/* ---- path handling ---------------------------------------------------------------- */

GStrv
rtp_http_split_path (const char *raw_path)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  const char *p = raw_path;

  if (p == NULL || p[0] != '/')
    return NULL;
  while (*p == '/')
    {
      const char *start = p + 1;
      const char *end = strchr (start, '/');
      g_autofree char *segment = NULL;

      if (end == NULL)
        end = start + strlen (start);
      if (end == start)
        {
          /* an empty segment: allowed only as the trailing slash */
          if (*end == '\0')
            break;
          return NULL;
        }
      segment = g_uri_unescape_segment (start, end, NULL);
      if (segment == NULL || !g_utf8_validate (segment, -1, NULL) || g_str_equal (segment, ".") ||
          g_str_equal (segment, ".."))
        return NULL;
      g_strv_builder_add (builder, segment);
      p = end;
    }
  return g_strv_builder_end (builder);
}

void
rtp_http_server_add_route (RtpHttpServer *self, const char *method, const char *pattern, RtpRouteFlags flags,
                           RtpRouteFunc func, gpointer user_data)
{
  Route *route = g_new0 (Route, 1);

  route->method = g_strdup (method);
  route->pattern = g_strdup (pattern);
  route->stats.route = g_strdup (pattern);
  route->stats.method = g_strdup (method);
  route->stats.codes = g_array_new (FALSE, FALSE, sizeof (CodeCount));
  route->segments = rtp_http_split_path (pattern);
  g_assert (route->segments != NULL);
  for (guint i = 0; route->segments[i] != NULL; i++)
    if (!g_str_equal (route->segments[i], "*"))
      route->specificity |= 1u << (31 - MIN (i, 31));
    else
      route->wildcards |= G_GUINT64_CONSTANT (1) << MIN (i, 63);
  route->n_segments = g_strv_length (route->segments);
  route->flags = flags;
  route->func = func;
  route->user_data = user_data;
  g_ptr_array_add (self->routes, route);
}

static gboolean
route_matches (const Route *route, const char *const *segments, guint n_segments)
{
  if (route->n_segments != n_segments)
    return FALSE;
  for (guint i = 0; i < n_segments; i++)
    if (!(route->wildcards & (G_GUINT64_CONSTANT (1) << MIN (i, 63))) && strcmp (route->segments[i], segments[i]) != 0)
      return FALSE;
  return TRUE;
}

/* Finds the most specific route for @segments and @method (or NULL) and, in @allowed (nullable:
 * only a 405 or a preflight needs them), the methods of every route the path matches. A literal
 * segment wins only for the methods it has: PUT /experiments/pvs reaches the experiment "pvs", since
 * /experiments/pvs has GET and POST only. */
static Route *
find_route (RtpHttpServer *self, const char *const *segments, const char *method, GString *allowed)
{
  Route *found = NULL;
  guint n = g_strv_length ((GStrv) segments);

  for (guint i = 0; i < self->routes->len; i++)
    {
      Route *r = g_ptr_array_index (self->routes, i);
      if (!route_matches (r, segments, n))
        continue;
      if (allowed != NULL && strstr (allowed->str, r->method) == NULL)
        {
          if (allowed->len > 0)
            g_string_append (allowed, ", ");
          g_string_append (allowed, r->method);
        }
      if (g_str_equal (r->method, method) && (found == NULL || r->specificity > found->specificity))
        found = r;
    }
  if (allowed != NULL && allowed->len > 0)
    g_string_append (allowed, ", OPTIONS");
  return found;
}

/* ---- requests ---------------------------------------------------------------- */

RtpRequest *
rtp_request_ref (RtpRequest *request)
{
  g_atomic_ref_count_inc (&request->ref_count);
  return request;
}

void
rtp_request_unref (RtpRequest *request)
{
  if (!g_atomic_ref_count_dec (&request->ref_count))
    return;
  g_object_unref (request->server);
  g_object_unref (request->msg);
  g_strfreev (request->params);
  rtp_user_free (request->caller);
  g_clear_pointer (&request->body, json_object_unref);
  g_clear_pointer (&request->raw_body, g_bytes_unref);
  g_clear_pointer (&request->query, g_hash_table_unref);
  g_free (request->language);
  stop_watching_client (request);
  g_free (request->id);
  g_clear_object (&request->cancellable);
  g_free (request);
}

const char *
rtp_request_get_param (RtpRequest *request, guint index)
{
  g_return_val_if_fail (index < g_strv_length (request->params), NULL);
  return request->params[index];
}

guint
rtp_request_get_n_params (RtpRequest *request)
{
  return g_strv_length (request->params);
}

const RtpUser *
rtp_request_get_caller (RtpRequest *request)
{
  return request->caller;
}

JsonObject *
rtp_request_get_body (RtpRequest *request)
{
  return request->body;
}

GBytes *
rtp_request_get_raw_body (RtpRequest *request)
{
  return request->raw_body;
}

const char *
rtp_request_get_query (RtpRequest *request, const char *name)
{
  return request->query != NULL ? g_hash_table_lookup (request->query, name) : NULL;
}

const char *
rtp_request_get_header (RtpRequest *request, const char *name)
{
  return soup_message_headers_get_one (soup_server_message_get_request_headers (request->msg), name);
}

const char *
rtp_request_get_client (RtpRequest *request)
{
  return soup_server_message_get_remote_host (request->msg);
}

void
rtp_request_enter (RtpRequest *request)
{
  locale_t loc = rtp_i18n_get_locale (request->language);
  request->saved_locale = uselocale (loc != (locale_t) 0 ? loc : LC_GLOBAL_LOCALE);
  request->saved_id = rtp_log_set_request_id (request->id);
  /* what the request reads must show every change committed before it arrived, no more is needed */
  rtp_database_set_changes_since (request->arrived_us);
}

void
rtp_request_leave (RtpRequest *request)
{
  uselocale (request->saved_locale != (locale_t) 0 ? request->saved_locale : LC_GLOBAL_LOCALE);
  rtp_log_set_request_id (request->saved_id);
  rtp_database_set_changes_since (G_MAXINT64);
}

/**
 * rtp_request_get_basic_auth:
 *
 * Returns: %TRUE when the request carries `Authorization: Basic` with a `login:password` pair
 *   (the login may be empty)
 */
gboolean
rtp_request_get_basic_auth (RtpRequest *request, char **login, char **password)
{
  const char *header = soup_message_headers_get_one (soup_server_message_get_request_headers (request->msg),
                                                     "Authorization");
  g_autofree guchar *decoded = NULL;
  gsize len = 0;
  g_autofree char *text = NULL;
  char *colon;

  *login = NULL;
  *password = NULL;
  if (header == NULL || g_ascii_strncasecmp (header, "Basic ", 6) != 0)
    return FALSE;
  decoded = g_base64_decode (header + 6, &len);
  if (decoded == NULL || len == 0)
    return FALSE;
  text = g_strndup ((const char *) decoded, len);
  if (strlen (text) != len || !g_utf8_validate (text, -1, NULL))
    return FALSE;
  colon = strchr (text, ':');
  if (colon == NULL)
    return FALSE;
  *colon = '\0';
  *login = g_strdup (text);
  *password = g_strdup (colon + 1);
  return TRUE;
}

/**
 * rtp_request_basic_auth_unusable:
 *
 * Returns: %TRUE when the request carries `Authorization: Basic` with a `login:password` pair that no
 *   account can have (a NUL byte, text that is not UTF-8): a login attempt that matches nobody
 */
gboolean
rtp_request_basic_auth_unusable (RtpRequest *request)
{
  const char *header = soup_message_headers_get_one (soup_server_message_get_request_headers (request->msg),
                                                     "Authorization");
  g_autofree guchar *decoded = NULL;
  gsize len = 0;

  if (header == NULL || g_ascii_strncasecmp (header, "Basic ", 6) != 0)
    return FALSE;
  decoded = g_base64_decode (header + 6, &len);
  return decoded != NULL && len > 2 && memchr (decoded, ':', len) != NULL &&
         (memchr (decoded, 0, len) != NULL || !g_utf8_validate ((const char *) decoded, (gssize) len, NULL));
}

void
rtp_request_pause (RtpRequest *request)
{
  if (request->responded || request->paused)
    return;
  request->paused = TRUE;
  watch_disconnect (request);
  soup_server_message_pause (request->msg);
}

void
rtp_request_add_header (RtpRequest *request, const char *name, const char *value)
{
  soup_message_headers_replace (soup_server_message_get_response_headers (request->msg), name, value);
}

void
rtp_request_respond_bytes (RtpRequest *request, guint status, const char *content_type, GBytes *body)
{
  gsize len = 0;
  const char *data = body != NULL ? g_bytes_get_data (body, &len) : NULL;

  if (request->responded)
    {
      g_critical ("a request was answered twice");
      return;
    }
  request->responded = TRUE;
  if (request->finished)
    return; /* the client went away while we worked */
  soup_server_message_set_status (request->msg, status, NULL);
  if (body != NULL && len > 4096)
    {
      /* a large answer (a kept list) goes out as it is, without a copy */
      SoupMessageBody *b = soup_server_message_get_response_body (request->msg);
      soup_message_headers_replace (soup_server_message_get_response_headers (request->msg), "Content-Type",
                                    content_type);
      soup_message_body_truncate (b);
      soup_message_body_append_bytes (b, body);
    }
  else
    soup_server_message_set_response (request->msg, content_type, SOUP_MEMORY_COPY, data, len);
  if (request->paused)
    {
      request->paused = FALSE;
      soup_server_message_unpause (request->msg);
    }
}

/**
 * rtp_json_object_to_bytes:
 * @object: (transfer full)
 *
 * Returns: (transfer full): @object as compact JSON text
 */
GBytes *
rtp_json_object_to_bytes (JsonObject *object)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  JsonNode *node = json_node_init_object (json_node_alloc (), object);
  gsize len = 0;
  char *text;

  json_object_unref (object);
  json_generator_set_root (gen, node);
  text = json_generator_to_data (gen, &len);
  json_node_unref (node);
  return g_bytes_new_take (text, len);
}

void
rtp_request_respond_json (RtpRequest *request, guint status, JsonNode *node)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (GBytes) bytes = NULL;
  gsize len = 0;
  char *text;

  json_generator_set_root (gen, node);
  text = json_generator_to_data (gen, &len);
  bytes = g_bytes_new_take (text, len);
  rtp_request_respond_bytes (request, status, "application/json; charset=utf-8", bytes);
  json_node_unref (node);
}

void
rtp_request_respond_object (RtpRequest *request, guint status, JsonObject *object)
{
  JsonNode *node = json_node_init_object (json_node_alloc (), object);
  json_object_unref (object);
  rtp_request_respond_json (request, status, node);
}

void
rtp_request_respond_error_message (RtpRequest *request, guint status, const char *message)
{
  JsonObject *object = json_object_new ();
  JsonArray *errors = json_array_new ();

  json_array_add_string_element (errors, message);
  json_object_set_array_member (object, "errors", errors);
  rtp_request_respond_object (request, status, object);
}

void
rtp_request_respond_error (RtpRequest *request, const GError *error)
{
  guint status = rtp_error_to_http_status (error);

  if (status == 500)
    {
      g_warning ("%s %s failed: %s", soup_server_message_get_method (request->msg),
                 g_uri_get_path (soup_server_message_get_uri (request->msg)), error != NULL ? error->message : "?");
      rtp_request_respond_error_message (request, 500,
                                         _ ("An internal error occurred. It was logged for the operators."));
      return;
    }
  if (rtp_error_get_fields (error) != NULL)
    {
      /* API.md: several fields at once come as a list of one-element lists */
      const char *const *fields = rtp_error_get_fields (error);
      JsonObject *object = json_object_new ();
      JsonArray *errors = json_array_new ();
      for (guint i = 0; fields[i] != NULL; i++)
        {
          JsonArray *one = json_array_new ();
          json_array_add_string_element (one, fields[i]);
          json_array_add_array_element (errors, one);
        }
      json_object_set_array_member (object, "errors", errors);
      rtp_request_respond_object (request, status, object);
      return;
    }
  if (rtp_error_get_retry_after (error) > 0)
    {
      char secs[16];
      g_snprintf (secs, sizeof secs, "%u", rtp_error_get_retry_after (error));
      rtp_request_add_header (request, "Retry-After", secs);
    }
  rtp_request_respond_error_message (request, status, error->message);
}

void
rtp_request_respond_messages (RtpRequest *request, const char *message)
{
  JsonObject *object = json_object_new ();
  JsonArray *messages = json_array_new ();

  json_array_add_string_element (messages, message);
  json_object_set_array_member (object, "messages", messages);
  rtp_request_respond_object (request, 200, object);
}

static void
stop_watching_client (RtpRequest *request)
{
  if (request->gone_source != NULL)
    {
      g_source_destroy (request->gone_source);
      g_clear_pointer (&request->gone_source, g_source_unref);
    }
}

/* The client's socket became readable while the request waits: an end of stream (or an error)
 * means it went away — libsoup reads nothing while a message is paused, so it would only notice
 * when the answer is written. Bytes of a pipelined request end the watch (they stay unread). */
static gboolean
client_readable (GSocket *socket, GIOCondition condition, gpointer user_data)
{
  RtpRequest *request = user_data;
  char byte;
  gssize n = recv (g_socket_get_fd (socket), &byte, 1, MSG_PEEK | MSG_DONTWAIT);

  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return G_SOURCE_CONTINUE;
  g_clear_pointer (&request->gone_source, g_source_unref);
  if (n <= 0 && !request->finished)
    {
      RtpRequest *hold = rtp_request_ref (request); /* the cancel handlers may drop the others */
      g_debug ("the client of %s went away while its request waited",
               g_uri_get_path (soup_server_message_get_uri (request->msg)));
      if (request->cancellable != NULL)
        g_cancellable_cancel (request->cancellable);
      /* and the message ends now, answered or not: a paused message would hold its connection
       * (and a place among RTP_MAX_CONNECTIONS) until the server stops */
      if (!request->finished)
        {
          stream_stop (request);
          g_socket_shutdown (socket, TRUE, TRUE, NULL);
          request->paused = FALSE;
          soup_server_message_unpause (request->msg);
        }
      rtp_request_unref (hold);
    }
  return G_SOURCE_REMOVE;
}

GCancellable *
rtp_request_get_cancellable (RtpRequest *request)
{
  if (request->cancellable == NULL)
    {
      GSocket *socket = request->finished ? NULL : rtp_http_message_get_socket (request->msg);
      request->cancellable = g_cancellable_new ();
      if (request->finished)
        g_cancellable_cancel (request->cancellable); /* the client is gone already */
      else if (socket != NULL)
        {
          request->gone_source = g_socket_create_source (socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
          g_source_set_callback (request->gone_source, G_SOURCE_FUNC (client_readable), request, NULL);
          g_source_attach (request->gone_source, NULL);
        }
    }
  return request->cancellable;
}

static void
wrote_body_data (SoupServerMessage *msg, guint chunk_size, gpointer user_data)
{
  RtpRequest *request = user_data;

  request->queued -= MIN (request->queued, chunk_size);
  request->progress_us = g_get_monotonic_time ();
  if (request->drained != NULL)
    request->drained (request->queued, request->drained_data);
}

/* A client that takes no bytes of a streamed answer for the client timeout is dropped: it would
 * hold the archiver transfer (and one of its connections) paused for ever. */
static gboolean
stream_stalled (gpointer user_data)
{
  RtpRequest *request = user_data;
  gint64 timeout_us = (gint64) request->server->client_timeout_ms * 1000;

  if (request->queued == 0 || g_get_monotonic_time () - request->progress_us < timeout_us)
    return G_SOURCE_CONTINUE;
  g_message ("dropping %s: it took nothing of its streamed answer for %.0f s",
             soup_server_message_get_remote_host (request->msg), request->server->client_timeout_ms / 1000.0);
  request->stall_id = 0;
  rtp_request_stream_abort (request);
  return G_SOURCE_REMOVE;
}

void
rtp_request_stream_begin (RtpRequest *request, guint status, const char *content_type, RtpDrainFunc drained,
                          gpointer user_data)
{
  SoupMessageHeaders *headers = soup_server_message_get_response_headers (request->msg);

  g_return_if_fail (!request->responded);
  request->responded = TRUE;
  request->streaming = TRUE;
  request->drained = drained;
  request->drained_data = user_data;
  if (request->finished)
    return;
  soup_server_message_set_status (request->msg, status, NULL);
  soup_message_headers_set_encoding (headers, SOUP_ENCODING_CHUNKED);
  /* written chunks are dropped, not kept for the whole answer */
  soup_message_body_set_accumulate (soup_server_message_get_response_body (request->msg), FALSE);
  soup_message_headers_replace (headers, "Content-Type", content_type);
  request->wrote_id = g_signal_connect (request->msg, "wrote-body-data", G_CALLBACK (wrote_body_data), request);
  watch_disconnect (request);
  request->progress_us = g_get_monotonic_time ();
  if (request->server->client_timeout_ms > 0)
    request->stall_id = g_timeout_add_full (G_PRIORITY_DEFAULT, MAX (request->server->client_timeout_ms / 4, 10),
                                            stream_stalled, rtp_request_ref (request),
                                            (GDestroyNotify) rtp_request_unref);
}

void
rtp_request_stream_write (RtpRequest *request, GString *text)
{
  gsize len = text->len;

  g_return_if_fail (request->streaming);
  if (request->finished || len == 0)
    {
      g_string_truncate (text, 0);
      return;
    }
  soup_message_body_append (soup_server_message_get_response_body (request->msg), SOUP_MEMORY_COPY, text->str, len);
  g_string_truncate (text, 0);
  request->queued += len;
  request->bytes_out += len;
  /* libsoup pauses a chunked answer by itself when it runs out of chunks */
  request->paused = FALSE;
  soup_server_message_unpause (request->msg);
}

gsize
rtp_request_stream_queued (RtpRequest *request)
{
  return request->queued;
}

static void
stream_stop (RtpRequest *request)
{
  g_clear_handle_id (&request->stall_id, g_source_remove);
  if (request->wrote_id != 0)
    g_clear_signal_handler (&request->wrote_id, request->msg);
  request->drained = NULL;
}

void
rtp_request_stream_end (RtpRequest *request)
{
  g_return_if_fail (request->streaming);
  stream_stop (request);
  if (request->finished)
    return;
  soup_message_body_complete (soup_server_message_get_response_body (request->msg));
  soup_server_message_unpause (request->msg);
}

void
rtp_request_stream_abort (RtpRequest *request)
{
  GSocket *socket;

  stream_stop (request);
  if (request->finished)
    return;
  socket = rtp_http_message_get_socket (request->msg);
  if (socket != NULL)
    g_socket_shutdown (socket, TRUE, TRUE, NULL);
  soup_server_message_unpause (request->msg);
}

/* ---- dispatch ---------------------------------------------------------------- */

static void
add_cors_headers (RtpHttpServer *self, SoupServerMessage *msg, gboolean fresh)
{
  SoupMessageHeaders *req = soup_server_message_get_request_headers (msg);
  SoupMessageHeaders *resp = soup_server_message_get_response_headers (msg);
  const char *origin = soup_message_headers_get_one (req, "Origin");
  /* on fresh headers (none of these yet) an append does not look for one to replace */
  void (*set) (SoupMessageHeaders *, const char *, const char *) = fresh ? soup_message_headers_append
                                                                         : soup_message_headers_replace;

  if (self->cors_origin != NULL)
    set (resp, "Access-Control-Allow-Origin", self->cors_origin);
  else
    {
      set (resp, "Access-Control-Allow-Origin", origin != NULL ? origin : "*");
      if (fresh || soup_message_headers_get_one (resp, "Vary") == NULL)
        soup_message_headers_append (resp, "Vary", "Origin");
    }
  set (resp, "Access-Control-Expose-Headers", "Content-Disposition");
}

/* Counts a request for /metrics and writes its access log line: method, route (never the raw path,
 * so never a query string with a token), status, bytes, duration, user and request id. */
static void
request_done (RtpHttpServer *self, SoupServerMessage *msg, Route *route, const RtpUser *caller, const char *id,
              gint64 start_us, guint64 streamed)
{
  const char *method = soup_server_message_get_method (msg);
  RouteStats *stats = route != NULL ? &route->stats : unmatched_stats (self, method);
  guint status = soup_server_message_get_status (msg);
  gint64 duration_us = g_get_monotonic_time () - start_us;
  SoupMessageBody *body = soup_server_message_get_response_body (msg);
  guint64 bytes = streamed > 0 ? streamed : (guint64) MAX (body->length, 0);

  route_stats_count (stats, status, duration_us);
  if (self->access_log)
    g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "CODE_FILE", __FILE__, "CODE_LINE", G_STRINGIFY (__LINE__),
                      "CODE_FUNC", G_STRFUNC, "RTP_REQUEST_ID", "%s", id != NULL ? id : "-", "RTP_USER_ID", "%s",
                      caller != NULL ? caller->user_id : "-", "RTP_ROUTE", "%s", stats->route, "RTP_STATUS", "%u",
                      status, "MESSAGE", "%s %s %u %" G_GUINT64_FORMAT " B %.1f ms user=%s id=%s", stats->method,
                      route != NULL ? route->pattern : "(no route)", status, bytes, (double) duration_us / 1000.0,
                      caller != NULL ? caller->user_id : "-", id != NULL ? id : "-");
  else if (!g_log_writer_default_would_drop (G_LOG_LEVEL_DEBUG, G_LOG_DOMAIN))
    /* (the check first: g_debug formats its line even when nobody reads it) */
    g_debug ("%s %s → %u (%.1f ms) [%s]", method, g_uri_get_path (soup_server_message_get_uri (msg)), status,
             (double) duration_us / 1000.0, id != NULL ? id : "-");
}

static void
request_finished (SoupServerMessage *msg, gpointer user_data)
{
  g_autoptr (RtpRequest) request = rtp_request_ref (user_data);
  Guard *g = guard_of (msg);

  /* The request holds the message and the message's guard holds the request: cut the cycle; the
   * handlers of a waiting request go too. */
  if (g != NULL && g->request == request)
    rtp_request_unref (g_steal_pointer (&g->request));
  g_signal_handlers_disconnect_by_data (msg, request);
  if (!request->finished)
    {
      request->finished = TRUE;
      g_clear_handle_id (&request->stall_id, g_source_remove);
      stop_watching_client (request);
      if (request->cancellable != NULL)
        g_cancellable_cancel (request->cancellable);
      request->server->in_flight--;
      request_done (request->server, msg, request->route, request->caller, request->id, request->start_us,
                    request->streaming ? request->bytes_out : 0);
    }
}

gboolean
rtp_http_parse_json_body (const char *data, gsize len, gboolean optional, JsonObject **object, GError **error)
{
  g_autoptr (JsonParser) parser = NULL;
  JsonNode *root;
  gboolean empty = TRUE;

  *object = NULL;
  /* whitespace only counts as no body */
  for (gsize i = 0; i < len && empty; i++)
    empty = g_ascii_isspace (data[i]);
  if (empty && optional)
    return TRUE;
  if (!empty)
    {
      g_autofree char *key = NULL;
      g_autofree char *value = NULL;

      /* before json-glib: it would overflow its stack on deep nesting, wrap huge integers and cut
       * strings at an escaped NUL */
      switch (rtp_json_check (data, len, RTP_JSON_MAX_DEPTH, &key, &value))
        {
          case RTP_JSON_OK:
            break;
          case RTP_JSON_NUMBER:
            g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID,
                         _ ("%s: The number %s is outside the range this server accepts."), key != NULL ? key : "value",
                         value);
            return FALSE;
          case RTP_JSON_NUL:
            g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("%s: The text must not contain a NUL character."),
                         key != NULL ? key : "value");
            return FALSE;
          case RTP_JSON_SYNTAX:
          case RTP_JSON_TOO_DEEP:
          default:
            g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID,
                                 _ ("You must provide the data in the body as JSON."));
            return FALSE;
        }
      parser = json_parser_new_immutable ();
      if (json_parser_load_from_data (parser, data, (gssize) len, NULL))
        {
          root = json_parser_get_root (parser);
          if (root != NULL && JSON_NODE_HOLDS_OBJECT (root))
            {
              *object = json_object_ref (json_node_get_object (root));
              return TRUE;
            }
        }
    }
  g_set_error_literal (error, RTP_ERROR, RTP_ERROR_INVALID, _ ("You must provide the data in the body as JSON."));
  return FALSE;
}

static gboolean
parse_body (RtpRequest *request, RtpRouteFlags flags, GError **error)
{
  SoupMessageBody *body = soup_server_message_get_request_body (request->msg);
  g_autoptr (GBytes) bytes = soup_message_body_flatten (body);
  gsize len;
  const char *data = g_bytes_get_data (bytes, &len);

  if (flags & RTP_ROUTE_RAW)
    {
      request->raw_body = g_steal_pointer (&bytes);
      return TRUE;
    }
  if (!(flags & (RTP_ROUTE_JSON | RTP_ROUTE_JSON_OPTIONAL)))
    return TRUE;
  return rtp_http_parse_json_body (data, len, (flags & RTP_ROUTE_JSON_OPTIONAL) != 0, &request->body, error);
}

static void
answer_preflight (SoupServerMessage *msg, const char *allowed)
{
  SoupMessageHeaders *req = soup_server_message_get_request_headers (msg);
  SoupMessageHeaders *resp = soup_server_message_get_response_headers (msg);
  const char *want = soup_message_headers_get_one (req, "Access-Control-Request-Headers");

  soup_message_headers_replace (resp, "Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS");
  soup_message_headers_replace (resp, "Access-Control-Allow-Headers",
                                want != NULL ? want : "x-access-tokens, content-type, authorization");
  soup_message_headers_replace (resp, "Access-Control-Max-Age", "600");
  soup_message_headers_replace (resp, "Allow", allowed);
  soup_server_message_set_status (msg, 204, NULL);
}

static const char *guard_request_id (Guard *g);
static void guard_disarm (Guard *g);

/* The token, role and body checks, then the route's handler; inside rtp_request_enter(). */
static void
dispatch (RtpRequest *request)
{
  RtpHttpServer *self = request->server;
  Route *route = request->route;
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (request->msg);
  g_autoptr (GError) error = NULL;
  const char *token;

  if (route->flags & RTP_ROUTE_AUTH)
    {
      token = soup_message_headers_get_one (headers, "x-access-tokens");
      request->caller = rtp_http_server_authenticate (self, token, &error);
      if (request->caller == NULL)
        {
          rtp_request_respond_error (request, error);
          return;
        }
      g_free (request->language);
      request->language = g_strdup (request->caller->preferred_language);
      rtp_request_leave (request);
      rtp_request_enter (request);
      if ((route->flags & RTP_ROUTE_ADMIN) == RTP_ROUTE_ADMIN && !rtp_user_is_admin (request->caller))
        {
          rtp_request_respond_error_message (request, 403,
                                             _ ("Only administrators are allowed to access this endpoint."));
          return;
        }
    }
  if (!parse_body (request, route->flags, &error))
    {
      rtp_request_respond_error (request, error);
      return;
    }

  route->func (request, route->user_data);
  if (!request->responded && !request->paused)
    {
      g_critical ("handler for %s %s neither answered nor paused", soup_server_message_get_method (request->msg),
                  g_uri_get_path (soup_server_message_get_uri (request->msg)));
      rtp_request_respond_error_message (request, 500,
                                         _ ("An internal error occurred. It was logged for the operators."));
    }
}

static void
fence_passed (gpointer user_data)
{
  g_autoptr (RtpRequest) request = user_data;

  if (request->finished)
    return; /* the client went away meanwhile */
  rtp_request_enter (request);
  request->paused = FALSE; /* a handler that answers later pauses again */
  soup_server_message_unpause (request->msg);
  dispatch (request);
  rtp_request_leave (request);
}

static void
server_callback (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer user_data)
{
  RtpHttpServer *self = user_data;
  const char *method = soup_server_message_get_method (msg);
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);
  Guard *g = guard_of (msg);
  g_autoptr (RtpRequest) request = NULL;
  g_autoptr (GString) allowed = NULL;
  g_auto (GStrv) segments = NULL;
  Route *route;

  if (g != NULL && g->answered)
    return; /* answered when the headers arrived; the body was discarded (libsoup does not call then) */
  add_cors_headers (self, msg, TRUE);

  request = g_new0 (RtpRequest, 1);
  g_atomic_ref_count_init (&request->ref_count);
  request->server = g_object_ref (self);
  request->msg = g_object_ref (msg);
  request->start_us = g_get_monotonic_time ();
  request->arrived_us = g != NULL && g->headers_us != 0 ? g->headers_us : request->start_us;
  request->id = g_strdup (guard_request_id (g));
  request->language = g_strdup (rtp_i18n_negotiate (soup_message_headers_get_one (headers, "Accept-Language")));
  self->in_flight++;
  self->served++;
  if (g != NULL)
    {
      guard_disarm (g);                       /* read completely: the handler's time now */
      g->request = rtp_request_ref (request); /* message_done() finishes it; "disconnected" is watched
                                               * only while it waits (watch_disconnect) */
    }
  else
    g_signal_connect_data (msg, "finished", G_CALLBACK (request_finished), rtp_request_ref (request),
                           (GClosureNotify) (void (*) (void)) rtp_request_unref, 0);

  rtp_request_enter (request);

  if (!self->accepting)
    {
      soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Connection", "close");
      rtp_request_respond_error_message (request, 503, _ ("The server is shutting down."));
      goto out;
    }

  segments = rtp_http_split_path (path);
  route = segments != NULL ? find_route (self, (const char *const *) segments, method, NULL) : NULL;
  if (segments != NULL && (route == NULL || g_str_equal (method, "OPTIONS")))
    {
      /* the methods the path has: only a preflight, a 404 or a 405 needs them */
      allowed = g_string_new (NULL);
      find_route (self, (const char *const *) segments, method, allowed);
      if (allowed->len > 0 && g_str_equal (method, "OPTIONS"))
        {
          request->responded = TRUE;
          answer_preflight (msg, allowed->str);
          goto out;
        }
      if (allowed->len > 0 && route == NULL)
        {
          rtp_request_add_header (request, "Allow", allowed->str);
          rtp_request_respond_error_message (request, 405, _ ("The method is not allowed for the requested URL."));
          goto out;
        }
    }
  if (route == NULL)
    {
      rtp_request_respond_error_message (request, 404, _ ("The requested URL was not found on the server."));
      goto out;
    }
  request->route = route;

  /* path parameters, in order */
  {
    g_autoptr (GStrvBuilder) params = g_strv_builder_new ();
    for (guint i = 0; route->segments[i] != NULL; i++)
      if (g_str_equal (route->segments[i], "*"))
        g_strv_builder_add (params, segments[i]);
    request->params = g_strv_builder_end (params);
  }
  if (query != NULL)
    request->query = g_hash_table_ref (query);
  if (self->db != NULL && !rtp_database_stamp_known_since (self->db, request->arrived_us))
    {
      /* wait, without blocking, for a read of the change counter that every request arrived by
       * then shares (PostgreSQL); the handler runs from fence_passed() */
      rtp_request_pause (request);
      rtp_request_leave (request);
      rtp_database_when_stamp_known (self->db, request->arrived_us, fence_passed, rtp_request_ref (request));
      return;
    }
  dispatch (request);

out:
  rtp_request_leave (request);
}

/* ---- connections ---------------------------------------------------------------- *
 *
 * libsoup accepts every connection. Past max_connections the least recently active idle one is
 * closed (a keep-alive connection costs a descriptor and a buffer for ever otherwise); when none
 * is idle, the newcomer is. A connection is known by its GSocket, which lives exactly as long as
 * the connection: a weak reference tells when it went. */

typedef struct {
  RtpHttpServer *server;
  GSocket *socket;   /* (unowned) */
  guint active;      /* requests being read, handled or answered */
  gboolean upgraded; /* a WebSocket now: never idle */
  gboolean closing;
  GList link; /* in server->conn_order */
} Conn;

static void
conn_gone (gpointer data, GObject *where_the_socket_was)
{
  Conn *c = data;
  RtpHttpServer *self = c->server;

  g_queue_unlink (&self->conn_order, &c->link);
  g_hash_table_remove (self->conns, where_the_socket_was);
  g_object_unref (self);
  g_free (c);
}

static void
conn_close (Conn *c, const char *why)
{
  c->closing = TRUE;
  g_debug ("closing a connection: %s", why);
  g_socket_shutdown (c->socket, TRUE, TRUE, NULL);
}

/* A request starts on @socket: the connection is counted, and the limit kept. */
static void
conn_request_started (RtpHttpServer *self, GSocket *socket)
{
  Conn *c = g_hash_table_lookup (self->conns, socket);

  if (c == NULL)
    {
      guint open = 0;
      Conn *victim = NULL;

      c = g_new0 (Conn, 1);
      c->server = g_object_ref (self);
      c->socket = socket;
      c->link.data = c;
      g_hash_table_insert (self->conns, socket, c);
      g_object_weak_ref (G_OBJECT (socket), conn_gone, c);
      for (GList *l = self->conn_order.head; l != NULL; l = l->next)
        {
          Conn *o = l->data;
          if (o->closing)
            continue;
          open++;
          if (victim == NULL && o->active == 0 && !o->upgraded)
            victim = o;
        }
      if (self->max_connections > 0 && open + 1 > self->max_connections)
        {
          if (victim != NULL)
            conn_close (victim, "the oldest idle one, past RTP_MAX_CONNECTIONS");
          else
            {
              g_message ("refusing a connection: %u are open and busy (RTP_MAX_CONNECTIONS)", open);
              g_queue_push_tail_link (&self->conn_order, &c->link);
              conn_close (c, "no idle connection to make room");
              return;
            }
        }
    }
  else
    g_queue_unlink (&self->conn_order, &c->link);
  c->active++;
  g_queue_push_tail_link (&self->conn_order, &c->link);
}

static void
conn_request_finished (RtpHttpServer *self, GSocket *socket, gboolean upgraded)
{
  Conn *c = socket != NULL ? g_hash_table_lookup (self->conns, socket) : NULL;

  if (c == NULL)
    return;
  if (c->active > 0)
    c->active--;
  c->upgraded = c->upgraded || upgraded;
  g_queue_unlink (&self->conn_order, &c->link);
  g_queue_push_tail_link (&self->conn_order, &c->link);
}

/* ---- body limits ---------------------------------------------------------------- */

static void
client_too_slow (Guard *g)
{
  GSocket *socket = rtp_http_message_get_socket (g->msg);

  g_debug ("closing a connection from %s: nothing complete arrived within the client timeout",
           soup_server_message_get_remote_host (g->msg));
  if (socket != NULL)
    g_socket_shutdown (socket, TRUE, TRUE, NULL);
}

static gboolean
sweep_guards (gpointer user_data)
{
  RtpHttpServer *self = user_data;
  gint64 now = g_get_monotonic_time ();
  GList *head;

  while ((head = g_queue_peek_head_link (&self->guards)) != NULL && ((Guard *) head->data)->deadline_us <= now)
    {
      Guard *g = head->data;
      g_queue_unlink (&self->guards, head);
      head->data = NULL;
      client_too_slow (g);
    }
  if (g_queue_is_empty (&self->guards))
    {
      self->sweep_id = 0;
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static void
guard_disarm (Guard *g)
{
  if (g->link.data == NULL)
    return;
  g_queue_unlink (&g->server->guards, &g->link);
  g->link.data = NULL;
}

static void
guard_rearm (Guard *g)
{
  RtpHttpServer *self = g->server;

  guard_disarm (g);
  if (self->client_timeout_ms == 0 || self->soup == NULL)
    return;
  g->deadline_us = g_get_monotonic_time () + (gint64) self->client_timeout_ms * 1000;
  g->link.data = g;
  g_queue_push_tail_link (&self->guards, &g->link);
  if (self->sweep_id == 0)
    self->sweep_id = g_timeout_add (CLAMP (self->client_timeout_ms / 8, 10, 1000), sweep_guards, self);
}

static void
guard_free (gpointer data)
{
  Guard *g = data;
  guard_disarm (g);
  g_clear_pointer (&g->request, rtp_request_unref);
  g_free (g->id);
  g_free (g);
}

/* The request id of the guard's message: made when its headers arrived, so that a refusal before
 * the body carries it too. */
static const char *
guard_request_id (Guard *g)
{
  if (g == NULL)
    return "-";
  if (g->id == NULL)
    {
      g->id = request_id (
        soup_message_headers_get_one (soup_server_message_get_request_headers (g->msg), "X-Request-Id"));
      soup_message_headers_replace (soup_server_message_get_response_headers (g->msg), "X-Request-Id", g->id);
    }
  return g->id;
}

/* Answers before the body is read: the body is drained without being kept (libsoup reads it
 * all the same before it writes the answer), within the deadline the guard already has. */
/**
 * rtp_http_server_answer_error:
 *
 * Answers @msg outside a route handler (a refusal before the body, the WebSocket handshake of
 * /live) as every route does: the JSON error envelope and the CORS headers of RTP_CORS_ORIGIN.
 * @message is already in the caller's language.
 */
void
rtp_http_server_answer_error (RtpHttpServer *self, SoupServerMessage *msg, guint status, const char *message)
{
  g_autoptr (JsonObject) o = json_object_new ();
  g_autoptr (JsonNode) node = NULL;
  JsonArray *errors = json_array_new ();
  char *text;

  json_array_add_string_element (errors, message);
  json_object_set_array_member (o, "errors", errors);
  node = json_node_init_object (json_node_alloc (), o);
  text = json_to_string (node, FALSE);
  add_cors_headers (self, msg, FALSE);
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "application/json; charset=utf-8", SOUP_MEMORY_TAKE, text, strlen (text));
}

static void
refuse_early (Guard *g, guint status, const char *message)
{
  SoupServerMessage *msg = g->msg;
  SoupMessageHeaders *req = soup_server_message_get_request_headers (msg);
  const char *language = rtp_i18n_negotiate (soup_message_headers_get_one (req, "Accept-Language"));

  if (g->answered)
    return;
  g->answered = TRUE;
  rtp_http_server_answer_error (g->server, msg, status, rtp_i18n_translate (language, message));
  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Connection", "close");
  soup_message_body_set_accumulate (soup_server_message_get_request_body (msg), FALSE);
}

/* The body limit of a request, decided before its body is read. The large limit of an import
 * route is only for an admin whose token was checked here: anyone else is answered at once
 * (401/403, in the contract's order), so that nobody without a token can make the server
 * read a large body. */
static gsize
body_limit (Guard *g)
{
  RtpHttpServer *self = g->server;
  SoupServerMessage *msg = g->msg;
  g_auto (GStrv) segments = rtp_http_split_path (g_uri_get_path (soup_server_message_get_uri (msg)));
  g_autoptr (GString) allowed = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpUser) caller = NULL;
  const char *token;
  Route *route;

  route = segments != NULL
            ? find_route (self, (const char *const *) segments, soup_server_message_get_method (msg), allowed)
            : NULL;
  g->route = route;
  if (route == NULL || !(route->flags & RTP_ROUTE_LARGE_BODY))
    return self->max_body_bytes;
  token = soup_message_headers_get_one (soup_server_message_get_request_headers (msg), "x-access-tokens");
  if (token == NULL || token[0] == '\0')
    refuse_early (g, 401, N_ ("Access to this resource requires a valid access-token."));
  else if ((caller = rtp_user_manager_verify_token (self->users, token, &error)) == NULL)
    {
      guint status = rtp_error_to_http_status (error);
      if (status == 403)
        refuse_early (g, 403, N_ ("The access-token sent is invalid or no longer accepted."));
      else
        refuse_early (g, status == 500 ? 503 : status,
                      status == 503 ? N_ ("The database is not available.")
                                    : N_ ("An internal error occurred. It was logged for the operators."));
    }
  else if ((route->flags & RTP_ROUTE_ADMIN) == RTP_ROUTE_ADMIN && !rtp_user_is_admin (caller))
    refuse_early (g, 403, N_ ("Only administrators are allowed to access this endpoint."));
  else
    return self->max_import_bytes;
  return self->max_body_bytes;
}

static void got_chunk (SoupServerMessage *msg, GBytes *chunk, gpointer user_data);

static void
got_headers (SoupServerMessage *msg, gpointer user_data)
{
  Guard *limit = user_data;
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);
  goffset length = soup_message_headers_get_content_length (headers);

  guard_rearm (limit); /* the body, if any, must be complete within the client timeout */
  limit->headers_us = g_get_monotonic_time ();
  guard_request_id (limit);
  if (rtp_http_message_take_dot_segment (msg))
    refuse_early (limit, 404, N_ ("The requested URL was not found on the server.")); /* "..": see rtp-request-line.c */
  if (soup_message_headers_get_encoding (headers) == SOUP_ENCODING_NONE ||
      (soup_message_headers_get_encoding (headers) == SOUP_ENCODING_CONTENT_LENGTH && length == 0))
    return;
  limit->limit = body_limit (limit);
  if (limit->answered)
    return;
  if (soup_message_headers_get_encoding (headers) == SOUP_ENCODING_CONTENT_LENGTH && length > (goffset) limit->limit)
    refuse_early (limit, 413, N_ ("The request body is too large."));
  else if (soup_message_headers_get_encoding (headers) == SOUP_ENCODING_CHUNKED || length > 0)
    g_signal_connect (msg, "got-chunk", G_CALLBACK (got_chunk), limit); /* counted as it comes */
}

static void
message_finished (SoupServerMessage *msg, gpointer user_data)
{
  Guard *g = user_data;

  guard_disarm (g);
  if (g->answered)
    {
      /* refused before the body: no handler saw it, so it is counted and logged here */
      rtp_log_set_request_id (g->id);
      request_done (g->server, msg, g->route, NULL, g->id, g->headers_us != 0 ? g->headers_us : g->start_us, 0);
      rtp_log_set_request_id (NULL);
    }
  conn_request_finished (g->server, g->socket, soup_server_message_get_status (msg) == SOUP_STATUS_SWITCHING_PROTOCOLS);
  g->socket = NULL;
}

static void
got_chunk (SoupServerMessage *msg, GBytes *chunk, gpointer user_data)
{
  Guard *limit = user_data;

  /* not rearmed: the whole body must arrive within the client timeout of its start, so that
   * a byte every few seconds does not hold a connection forever */
  limit->received += g_bytes_get_size (chunk);
  if (limit->received > limit->limit && !limit->answered)
    {
      /* a chunked body that grew past the limit: 413 once the client has finished sending (or
       * the connection is closed at the deadline); what was kept of it is dropped now */
      refuse_early (limit, 413, N_ ("The request body is too large."));
      soup_message_body_truncate (soup_server_message_get_request_body (msg));
    }
}

/* Called by libsoup when the headers of a request have been read (an early handler: no signal
 * handlers connected per message). */
static void
early_callback (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer user_data)
{
  Guard *g = guard_of (msg);

  if (g != NULL)
    got_headers (msg, g);
}

/* "request-finished" and "request-aborted": the message was answered or given up */
static void
message_done (SoupServer *server, SoupServerMessage *msg, gpointer user_data)
{
  Guard *g = guard_of (msg);

  rtp_http_message_ended (msg);
  if (g == NULL)
    return;
  message_finished (msg, g);
  if (g->request != NULL)
    request_finished (msg, g->request);
}

static void
request_started (SoupServer *server, SoupServerMessage *msg, gpointer user_data)
{
  Guard *g = g_new0 (Guard, 1);

  rtp_http_message_started (msg);
  g->server = user_data;
  g->msg = msg;
  g->start_us = g_get_monotonic_time ();
  g->socket = rtp_http_message_get_socket (msg);
  if (g->socket != NULL)
    conn_request_started (g->server, g->socket);
  guard_rearm (g); /* the request line and headers must arrive in time */
  g_object_set_qdata_full (G_OBJECT (msg), guard_quark (), g, guard_free);
}

/**
 * rtp_http_server_guard_path:
 *
 * Requests under @path, which libsoup hands to a handler registered there, get the checks every
 * request gets when its headers arrive (deadline, request id, dot segments, body limit).
 */
void
rtp_http_server_guard_path (RtpHttpServer *self, const char *path)
{
  soup_server_add_early_handler (self->soup, path, early_callback, self, NULL);
}

/* ---- lifecycle ---------------------------------------------------------------- */

/* The database whose change counter requests wait for without blocking (PostgreSQL; on SQLite nothing
 * waits). */
void
rtp_http_server_set_database (RtpHttpServer *self, RtpDatabase *db)
{
  g_set_object (&self->db, db);
}

RtpHttpServer *
rtp_http_server_new (RtpUserManager *users, const RtpHttpSettings *settings)
{
  RtpHttpServer *self = g_object_new (RTP_TYPE_HTTP_SERVER, NULL);

  self->users = g_object_ref (users);
  self->max_body_bytes = settings->max_body_bytes;
  self->max_import_bytes = settings->max_import_bytes;
  self->cors_origin = g_strdup (settings->cors_origin);
  self->client_timeout_ms = (guint) (settings->client_timeout_s * 1000);
  self->max_connections = settings->max_connections;
  self->access_log = settings->access_log;
  self->soup = soup_server_new ("raw-paths", TRUE, "server-header", NULL, NULL);
  soup_server_add_handler (self->soup, NULL, server_callback, self, NULL);
  soup_server_add_early_handler (self->soup, NULL, early_callback, self, NULL);
  g_signal_connect (self->soup, "request-started", G_CALLBACK (request_started), self);
  g_signal_connect (self->soup, "request-finished", G_CALLBACK (message_done), self);
  g_signal_connect (self->soup, "request-aborted", G_CALLBACK (message_done), self);
  return self;
}

#define LISTEN_BACKLOG 1024

gboolean
rtp_http_server_listen (RtpHttpServer *self, const char *host, guint port, GError **error)
{
  g_autoptr (GInetAddress) address = NULL;
  g_autoptr (GSocketAddress) socket_address = NULL;
  g_autoptr (GSocket) socket = NULL;

  if (g_strcmp0 (host, "localhost") == 0)
    host = "127.0.0.1";
  address = g_inet_address_new_from_string (host);
  if (address == NULL)
    {
      g_autoptr (GResolver) resolver = g_resolver_get_default ();
      GList *list = g_resolver_lookup_by_name (resolver, host, NULL, error);
      if (list == NULL)
        return FALSE;
      address = g_object_ref (list->data);
      g_resolver_free_addresses (list);
    }
  socket_address = g_inet_socket_address_new (address, (guint16) port);
  /* soup_server_listen() would leave GSocket's listen backlog of 10: 128 clients connecting at
   * once then see dropped SYNs and a one-second retransmission (p99 of 1.1 s in bench/) */
  socket = g_socket_new (g_socket_address_get_family (socket_address), G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                         error);
  if (socket == NULL)
    return FALSE;
  g_socket_set_listen_backlog (socket, LISTEN_BACKLOG);
  if (!g_socket_bind (socket, socket_address, TRUE, error) || !g_socket_listen (socket, error))
    return FALSE;
  g_clear_pointer (&self->listener, rtp_http_listener_free);
  self->listener = rtp_http_listener_new (self->soup, socket);
  /* from the socket itself: soup_server_get_uris() of libsoup 3.2 leaks the local address */
  {
    g_autoptr (GSocketAddress) local = g_socket_get_local_address (socket, error);
    GInetAddress *ip;
    g_autofree char *ip_text = NULL;

    if (local == NULL)
      return FALSE;
    ip = g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (local));
    ip_text = g_inet_address_to_string (ip);
    g_free (self->url);
    self->url = g_inet_address_get_family (ip) == G_SOCKET_FAMILY_IPV6
                  ? g_strdup_printf ("http://[%s]:%u/", ip_text,
                                     g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (local)))
                  : g_strdup_printf ("http://%s:%u/", ip_text,
                                     g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (local)));
  }
  return TRUE;
}

RtpUser *
rtp_http_server_authenticate (RtpHttpServer *self, const char *token, GError **error)
{
  g_return_val_if_fail (RTP_IS_HTTP_SERVER (self), NULL);
  if (token == NULL || token[0] == '\0')
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_UNAUTHORIZED,
                           _ ("Access to this resource requires a valid access-token."));
      return NULL;
    }
  return rtp_user_manager_verify_token (self->users, token, error);
}

char *
rtp_http_server_dup_url (RtpHttpServer *self)
{
  g_return_val_if_fail (RTP_IS_HTTP_SERVER (self), NULL);
  return g_strdup (self->url);
}

static void
write_route_stats (GString *out, const RouteStats *stats, gboolean histogram)
{
  g_autoptr (GString) labels = g_string_new ("route=\"");

  rtp_metrics_append_label (labels, stats->route);
  g_string_append (labels, "\",method=\"");
  rtp_metrics_append_label (labels, stats->method);
  g_string_append_c (labels, '"');
  if (histogram)
    {
      if (stats->duration.count > 0)
        rtp_histogram_write (out, "rtp_http_request_duration_seconds", labels->str, &stats->duration);
      return;
    }
  for (guint i = 0; i < stats->codes->len; i++)
    {
      const CodeCount *c = &g_array_index (stats->codes, CodeCount, i);
      g_string_append_printf (out, "rtp_http_requests_total{%s,code=\"%u\"} %" G_GUINT64_FORMAT "\n", labels->str,
                              c->code, c->count);
    }
}

/**
 * rtp_http_server_write_metrics:
 *
 * Appends the HTTP metrics in Prometheus' text format: requests by route (the registered pattern,
 * or "none"), method and status code, their durations by route, and the requests in flight. Label
 * values come from the route table only: however many distinct paths clients ask for, the number
 * of series stays bounded.
 */
void
rtp_http_server_write_metrics (RtpHttpServer *self, GString *out)
{
  GHashTableIter iter;
  gpointer value;

  g_string_append (out, "# HELP rtp_http_requests_total HTTP requests answered, by route, method and status code.\n"
                        "# TYPE rtp_http_requests_total counter\n");
  for (guint i = 0; i < self->routes->len; i++)
    write_route_stats (out, &((Route *) g_ptr_array_index (self->routes, i))->stats, FALSE);
  g_hash_table_iter_init (&iter, self->unmatched);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    write_route_stats (out, value, FALSE);
  g_string_append (out, "# HELP rtp_http_request_duration_seconds Time from the request's arrival to its answer.\n"
                        "# TYPE rtp_http_request_duration_seconds histogram\n");
  for (guint i = 0; i < self->routes->len; i++)
    write_route_stats (out, &((Route *) g_ptr_array_index (self->routes, i))->stats, TRUE);
  g_hash_table_iter_init (&iter, self->unmatched);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    write_route_stats (out, value, TRUE);
  g_string_append_printf (out,
                          "# HELP rtp_http_requests_in_flight Requests being handled or answered.\n"
                          "# TYPE rtp_http_requests_in_flight gauge\n"
                          "rtp_http_requests_in_flight %u\n",
                          self->in_flight);
}

/**
 * rtp_http_server_foreach_route:
 *
 * Calls @func with the method and pattern of every registered route, in registration order.
 */
void
rtp_http_server_foreach_route (RtpHttpServer *self,
                               void (*func) (const char *method, const char *pattern, gpointer data), gpointer data)
{
  for (guint i = 0; i < self->routes->len; i++)
    {
      Route *route = g_ptr_array_index (self->routes, i);
      func (route->method, route->pattern, data);
    }
}

guint
rtp_http_server_get_in_flight (RtpHttpServer *self)
{
  return self->in_flight;
}

guint64
rtp_http_server_get_requests_served (RtpHttpServer *self)
{
  return self->served;
}

/* New requests are answered 503 with Connection: close; those in flight finish. */
void
rtp_http_server_stop_accepting (RtpHttpServer *self)
{
  self->accepting = FALSE;
}

void
rtp_http_server_disconnect (RtpHttpServer *self)
{
  g_clear_pointer (&self->listener, rtp_http_listener_free);
  soup_server_disconnect (self->soup);
}

SoupServer *
rtp_http_server_get_soup_server (RtpHttpServer *self)
{
  return self->soup;
}
