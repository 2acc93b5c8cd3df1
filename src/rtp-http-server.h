/* rtp-http-server.h: SoupServer with routing, authentication, CORS and JSON envelopes */
#pragma once

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "rtp-user-manager.h"

G_BEGIN_DECLS

#define RTP_TYPE_HTTP_SERVER (rtp_http_server_get_type ())
G_DECLARE_FINAL_TYPE (RtpHttpServer, rtp_http_server, RTP, HTTP_SERVER, GObject)

typedef struct _RtpRequest RtpRequest;
typedef void (*RtpRouteFunc) (RtpRequest *request, gpointer user_data);

typedef enum {
  RTP_ROUTE_PUBLIC = 0,
  RTP_ROUTE_AUTH = 1 << 0,          /* needs a valid x-access-tokens */
  RTP_ROUTE_ADMIN = 1 << 1 | 1,     /* needs an admin's token */
  RTP_ROUTE_JSON = 1 << 2,          /* body must be a JSON object */
  RTP_ROUTE_JSON_OPTIONAL = 1 << 3, /* body may be absent; when present, a JSON object */
  RTP_ROUTE_RAW = 1 << 4,           /* body handed over as bytes */
  RTP_ROUTE_LARGE_BODY = 1 << 5,    /* RTP_MAX_IMPORT_BYTES instead of RTP_MAX_BODY_BYTES */
} RtpRouteFlags;

typedef struct {
  gsize max_body_bytes;
  gsize max_import_bytes;
  const char *cors_origin; /* NULL: echo the request's Origin, or "*" */
  double client_timeout_s; /* headers within, a whole body within, and no stalled stream longer than, this */
  guint max_connections;   /* open client connections at most (0: no limit); the oldest idle ones go first */
  gboolean access_log;     /* one line per request (RTP_ACCESS_LOG) */
} RtpHttpSettings;

/* Returns: (transfer full) */
RtpHttpServer *rtp_http_server_new (RtpUserManager *users, const RtpHttpSettings *settings);
void rtp_http_server_add_route (RtpHttpServer *self, const char *method, const char *pattern, RtpRouteFlags flags,
                                RtpRouteFunc func, gpointer user_data);
void rtp_http_server_set_database (RtpHttpServer *self, RtpDatabase *db);
gboolean rtp_http_server_listen (RtpHttpServer *self, const char *host, guint port, GError **error);
/* Returns: (transfer full) */
char *rtp_http_server_dup_url (RtpHttpServer *self);
guint rtp_http_server_get_in_flight (RtpHttpServer *self);
void rtp_http_server_write_metrics (RtpHttpServer *self, GString *out);
void rtp_http_server_foreach_route (RtpHttpServer *self,
                                    void (*func) (const char *method, const char *pattern, gpointer data),
                                    gpointer data);
guint64 rtp_http_server_get_requests_served (RtpHttpServer *self);
void rtp_http_server_stop_accepting (RtpHttpServer *self);
void rtp_http_server_disconnect (RtpHttpServer *self);
/* Returns: (transfer none) */
SoupServer *rtp_http_server_get_soup_server (RtpHttpServer *self);
void rtp_http_server_guard_path (RtpHttpServer *self, const char *path);
void rtp_http_server_answer_error (RtpHttpServer *self, SoupServerMessage *msg, guint status, const char *message);

/* The token check every authenticated route and /live make: no token → RTP_ERROR_UNAUTHORIZED with the
 * contract's message; else the user manager's verdict (RTP_ERROR_FORBIDDEN for a token it refuses).
 * Returns: (transfer full) (nullable) */
RtpUser *rtp_http_server_authenticate (RtpHttpServer *self, const char *token, GError **error);

/* Splits and percent-decodes a raw path; NULL when a segment is invalid ('..', '%00', bad UTF-8). */
GStrv rtp_http_split_path (const char *raw_path);

/* Requests */
/* Returns: (transfer full) */
RtpRequest *rtp_request_ref (RtpRequest *request);
void rtp_request_unref (RtpRequest *request);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpRequest, rtp_request_unref)

/* Returns: (transfer none) */
const char *rtp_request_get_param (RtpRequest *request, guint index);
guint rtp_request_get_n_params (RtpRequest *request);
/* Returns: (transfer none) */
const RtpUser *rtp_request_get_caller (RtpRequest *request);
/* A request body as the routes see it: a JSON object, or (when @optional) nothing for an empty or
 * whitespace-only body (*object = NULL). Anything else → RTP_ERROR_INVALID with the API's message. */
gboolean rtp_http_parse_json_body (const char *data, gsize len, gboolean optional, JsonObject **object, GError **error);
/* Returns: (transfer none) */
JsonObject *rtp_request_get_body (RtpRequest *request);
/* Returns: (transfer none) */
GBytes *rtp_request_get_raw_body (RtpRequest *request);
/* Returns: (transfer none) */
const char *rtp_request_get_query (RtpRequest *request, const char *name);
/* (nullable): a request header, as sent */
const char *rtp_request_get_header (RtpRequest *request, const char *name);
/* Returns: (transfer none) */
const char *rtp_request_get_client (RtpRequest *request);
gboolean rtp_request_get_basic_auth (RtpRequest *request, char **login, char **password);
gboolean rtp_request_basic_auth_unusable (RtpRequest *request);

/* A handler that cannot answer at once pauses; any respond call resumes. */
void rtp_request_pause (RtpRequest *request);
/* Makes the request's language current on this thread; pair with rtp_request_leave. */
void rtp_request_enter (RtpRequest *request);
void rtp_request_leave (RtpRequest *request);

void rtp_request_respond_json (RtpRequest *request, guint status, JsonNode *node);
void rtp_request_respond_object (RtpRequest *request, guint status, JsonObject *object);
void rtp_request_respond_error (RtpRequest *request, const GError *error);
void rtp_request_respond_error_message (RtpRequest *request, guint status, const char *message);
void rtp_request_respond_messages (RtpRequest *request, const char *message);
void rtp_request_respond_bytes (RtpRequest *request, guint status, const char *content_type, GBytes *body);
/* Returns: (transfer full) */
GBytes *rtp_json_object_to_bytes (JsonObject *object);
void rtp_request_add_header (RtpRequest *request, const char *name, const char *value);

/* Cancelled when the client goes away, so that work for it can stop. */
/* Returns: (transfer none) */
GCancellable *rtp_request_get_cancellable (RtpRequest *request);

/* Streaming (chunked) answers. @drained is called as bytes reach the network, with the
 * number of bytes still queued, so that a producer can pause and resume. */
typedef void (*RtpDrainFunc) (gsize queued, gpointer user_data);
void rtp_request_stream_begin (RtpRequest *request, guint status, const char *content_type, RtpDrainFunc drained,
                               gpointer user_data);
void rtp_request_stream_write (RtpRequest *request, GString *text);
gsize rtp_request_stream_queued (RtpRequest *request);
void rtp_request_stream_end (RtpRequest *request);
/* Ends a stream that cannot be completed: the connection is closed, the client sees a truncated answer. */
void rtp_request_stream_abort (RtpRequest *request);

G_END_DECLS
