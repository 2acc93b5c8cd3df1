/* test-http-server.c: RtpHttpServer's router and pipeline in-process (as libsoup's own tests do):
 * a real SoupServer on 127.0.0.1, a SoupSession client, a temporary SQLite file for the tokens */
#include "rtp-database.h"
#include "rtp-http-listener.h"
#include "rtp-http-server.h"
#include "rtp-request-line.h"
#include "rtp-test-services.h"

#include <string.h>

typedef struct {
  char *dir;
  RtpDatabase *db;
  RtpUserManager *users;
  RtpHttpServer *http;
  SoupSession *session;
  char *url;
  char *admin_token;
  char *user_token;
} Fixture;

/* Each handler answers {"handler": NAME, "param": first parameter or null, "a": body member or null}. */
static void
echo (RtpRequest *request, gpointer user_data)
{
  JsonObject *o = json_object_new ();
  JsonObject *body = rtp_request_get_body (request);
  GBytes *raw = rtp_request_get_raw_body (request);

  json_object_set_string_member (o, "handler", user_data);
  if (rtp_request_get_n_params (request) > 0)
    json_object_set_string_member (o, "param", rtp_request_get_param (request, 0));
  else
    json_object_set_null_member (o, "param");
  if (body != NULL && json_object_has_member (body, "a"))
    json_object_set_member (o, "a", json_node_copy (json_object_get_member (body, "a")));
  if (raw != NULL)
    json_object_set_int_member (o, "raw_bytes", (gint64) g_bytes_get_size (raw));
  if (rtp_request_get_caller (request) != NULL)
    json_object_set_string_member (o, "caller", rtp_request_get_caller (request)->login_name);
  rtp_request_respond_object (request, 200, o);
}

static void
setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpUser) admin = NULL;
  g_autoptr (RtpUser) user = NULL;
  RtpHttpSettings settings = { .max_body_bytes = 1024,
                               .max_import_bytes = 8192,
                               .cors_origin = "https://lab.example.org",
                               .client_timeout_s = 10,
                               .max_connections = 64 };

  f->dir = rtp_test_make_dir ();
  f->db = rtp_test_open_database (f->dir, "http.db");
  f->users = rtp_test_user_manager (f->db);
  {
    g_autofree char *generated = NULL;
    g_assert_true (rtp_user_manager_ensure_admin (f->users, "admin", "admin secret", &generated, &error));
  }
  rtp_test_sql (f->db,
                "INSERT INTO users (user_id, login_name, first_name, last_name, password_hash) "
                "VALUES ('u1', 'user1', 'U', 'One', 'x')",
                1);
  admin = rtp_user_manager_get (f->users, "0", &error);
  g_assert_no_error (error);
  user = rtp_user_manager_get (f->users, "u1", &error);
  g_assert_no_error (error);
  f->admin_token = rtp_user_manager_issue_token (f->users, admin);
  f->user_token = rtp_user_manager_issue_token (f->users, user);

  f->http = rtp_http_server_new (f->users, &settings);
  rtp_http_server_add_route (f->http, "GET", "/things", RTP_ROUTE_PUBLIC, echo, "list");
  rtp_http_server_add_route (f->http, "GET", "/things/special", RTP_ROUTE_PUBLIC, echo, "special");
  rtp_http_server_add_route (f->http, "GET", "/things/*", RTP_ROUTE_PUBLIC, echo, "one");
  rtp_http_server_add_route (f->http, "PUT", "/things/*", RTP_ROUTE_AUTH | RTP_ROUTE_JSON, echo, "put");
  rtp_http_server_add_route (f->http, "POST", "/admin", RTP_ROUTE_ADMIN | RTP_ROUTE_JSON_OPTIONAL, echo, "admin");
  rtp_http_server_add_route (f->http, "POST", "/import", RTP_ROUTE_ADMIN | RTP_ROUTE_RAW | RTP_ROUTE_LARGE_BODY, echo,
                             "import");
  g_assert_true (rtp_http_server_listen (f->http, "127.0.0.1", 0, &error));
  g_assert_no_error (error);
  f->url = rtp_http_server_dup_url (f->http);
  f->session = soup_session_new ();
}

static void
teardown (Fixture *f, gconstpointer data)
{
  g_clear_object (&f->session);
  rtp_http_server_disconnect (f->http);
  g_clear_object (&f->http);
  g_clear_object (&f->users);
  g_clear_object (&f->db);
  g_free (f->url);
  g_free (f->admin_token);
  g_free (f->user_token);
  rtp_test_remove_dir (f->dir);
  g_free (f->dir);
}

typedef struct {
  guint status;
  JsonObject *body; /* (nullable) */
  SoupMessage *msg;
} Answer;

static void
answer_clear (Answer *a)
{
  g_clear_pointer (&a->body, json_object_unref);
  g_clear_object (&a->msg);
}

static void
sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GBytes **) user_data = soup_session_send_and_read_finish (SOUP_SESSION (source), result, NULL);
}

static Answer
request (Fixture *f, const char *method, const char *path, const char *token, const char *body, gsize body_len)
{
  g_autofree char *url = g_strconcat (f->url, path + (f->url[strlen (f->url) - 1] == '/' ? 1 : 0), NULL);
  Answer a = { 0 };
  GBytes *bytes = NULL;
  g_autoptr (JsonNode) node = NULL;

  a.msg = soup_message_new (method, url);
  g_assert_nonnull (a.msg);
  if (token != NULL)
    soup_message_headers_replace (soup_message_get_request_headers (a.msg), "x-access-tokens", token);
  soup_message_headers_replace (soup_message_get_request_headers (a.msg), "Origin", "https://elsewhere.example.org");
  if (body != NULL)
    {
      g_autoptr (GBytes) b = g_bytes_new (body, body_len);
      soup_message_set_request_body_from_bytes (a.msg, "application/json", b);
    }
  /* the server runs in this main context: send asynchronously and spin */
  soup_session_send_and_read_async (f->session, a.msg, G_PRIORITY_DEFAULT, NULL, sent, &bytes);
  while (bytes == NULL)
    g_main_context_iteration (NULL, TRUE);
  a.status = soup_message_get_status (a.msg);
  node = json_from_string (g_bytes_get_size (bytes) > 0 ? g_bytes_get_data (bytes, NULL) : "null", NULL);
  if (node != NULL && JSON_NODE_HOLDS_OBJECT (node))
    a.body = json_object_ref (json_node_get_object (node));
  g_bytes_unref (bytes);
  return a;
}

static const char *
member (const Answer *a, const char *name)
{
  g_assert_nonnull (a->body);
  return json_object_get_string_member_with_default (a->body, name, NULL);
}

static const char *
first_error (const Answer *a)
{
  JsonArray *errors;
  g_assert_nonnull (a->body);
  errors = json_object_get_array_member (a->body, "errors");
  g_assert_nonnull (errors);
  return json_array_get_string_element (errors, 0);
}

/* A literal segment wins over * only for the methods it is registered for; parameters are
 * percent-decoded; unknown paths 404, known paths with another method 405. */
static void
test_routing (Fixture *f, gconstpointer data)
{
  Answer a = request (f, "GET", "/things/special", NULL, NULL, 0);
  g_assert_cmpuint (a.status, ==, 200);
  g_assert_cmpstr (member (&a, "handler"), ==, "special");
  answer_clear (&a);

  a = request (f, "PUT", "/things/special", f->user_token, "{\"a\": 1}", 8);
  g_assert_cmpuint (a.status, ==, 200);
  g_assert_cmpstr (member (&a, "handler"), ==, "put");
  g_assert_cmpstr (member (&a, "param"), ==, "special");
  answer_clear (&a);

  a = request (f, "GET", "/things/Lab%3AOne%20two", NULL, NULL, 0);
  g_assert_cmpstr (member (&a, "param"), ==, "Lab:One two");
  answer_clear (&a);

  a = request (f, "GET", "/things", NULL, NULL, 0);
  g_assert_cmpstr (member (&a, "handler"), ==, "list");
  g_assert_cmpstr (soup_message_headers_get_one (soup_message_get_response_headers (a.msg),
                                                 "Access-Control-Allow-Origin"),
                   ==, "https://lab.example.org");
  answer_clear (&a);

  a = request (f, "GET", "/nothing/here", NULL, NULL, 0);
  g_assert_cmpuint (a.status, ==, 404);
  g_assert_cmpstr (first_error (&a), ==, "The requested URL was not found on the server.");
  answer_clear (&a);

  a = request (f, "DELETE", "/things", NULL, NULL, 0);
  g_assert_cmpuint (a.status, ==, 405);
  g_assert_cmpstr (first_error (&a), ==, "The method is not allowed for the requested URL.");
  answer_clear (&a);

  a = request (f, "GET", "/things/a%00b", NULL, NULL, 0); /* a NUL in a segment */
  g_assert_cmpuint (a.status, ==, 404);
  answer_clear (&a);
}

/* Tokens and roles before the handler; JSON bodies checked before it too. */
static void
test_pipeline (Fixture *f, gconstpointer data)
{
  g_autoptr (GString) deep = g_string_new ("{\"a\": ");
  g_autofree char *big = g_strnfill (2000, 'x');
  g_autofree char *big_body = g_strdup_printf ("{\"a\": \"%s\"}", big);
  Answer a;

  a = request (f, "PUT", "/things/x", NULL, "{\"a\": 1}", 8);
  g_assert_cmpuint (a.status, ==, 401);
  g_assert_cmpstr (first_error (&a), ==, "Access to this resource requires a valid access-token.");
  answer_clear (&a);

  a = request (f, "PUT", "/things/x", "not.a.token", "{\"a\": 1}", 8);
  g_assert_cmpuint (a.status, ==, 403);
  answer_clear (&a);

  a = request (f, "PUT", "/things/x", f->user_token, "[1, 2]", 6);
  g_assert_cmpuint (a.status, ==, 400);
  g_assert_cmpstr (first_error (&a), ==, "You must provide the data in the body as JSON.");
  answer_clear (&a);

  for (guint i = 0; i < 64; i++)
    g_string_append_c (deep, '[');
  for (guint i = 0; i < 64; i++)
    g_string_append_c (deep, ']');
  g_string_append_c (deep, '}');
  a = request (f, "PUT", "/things/x", f->user_token, deep->str, deep->len); /* 65 levels with the object */
  g_assert_cmpuint (a.status, ==, 400);
  answer_clear (&a);

  a = request (f, "PUT", "/things/x", f->user_token, "{\"a\": \"x\\u0000y\"}", 17);
  g_assert_cmpuint (a.status, ==, 400);
  g_assert_cmpstr (first_error (&a), ==, "a: The text must not contain a NUL character.");
  answer_clear (&a);

  a = request (f, "PUT", "/things/x", f->user_token, "{\"a\": \"ok\"}", 11);
  g_assert_cmpuint (a.status, ==, 200);
  g_assert_cmpstr (member (&a, "a"), ==, "ok");
  g_assert_cmpstr (member (&a, "caller"), ==, "user1");
  answer_clear (&a);

  a = request (f, "POST", "/admin", f->user_token, NULL, 0);
  g_assert_cmpuint (a.status, ==, 403);
  g_assert_cmpstr (first_error (&a), ==, "Only administrators are allowed to access this endpoint.");
  answer_clear (&a);

  a = request (f, "POST", "/admin", f->admin_token, NULL, 0); /* the body is optional */
  g_assert_cmpuint (a.status, ==, 200);
  answer_clear (&a);

  /* RTP_MAX_BODY_BYTES for ordinary routes; the large limit only where the route says so */
  a = request (f, "PUT", "/things/x", f->user_token, big_body, strlen (big_body));
  g_assert_cmpuint (a.status, ==, 413);
  answer_clear (&a);
  a = request (f, "POST", "/import", f->admin_token, big_body, strlen (big_body));
  g_assert_cmpuint (a.status, ==, 200);
  g_assert_cmpint (json_object_get_int_member (a.body, "raw_bytes"), ==, (gint64) strlen (big_body));
  answer_clear (&a);
  a = request (f, "POST", "/import", f->user_token, big_body, strlen (big_body)); /* not for a non-admin */
  g_assert_cmpuint (a.status, ==, 403);
  answer_clear (&a);
}

/* The watch behind "path segments such as .. never reach a handler (404)" (rtp-request-line.c) */
static void
test_request_line (void)
{
  static const struct {
    const char *target;
    gboolean dotted;
  } targets[] = {
    { "/experiments/Test/..", TRUE },
    { "/./a", TRUE },
    { "/a/%2e", TRUE },
    { "/a/%2E%2e/b", TRUE },
    { "/a/.%2e?q", TRUE },
    { "http://h:1/a/../b", TRUE },
    { "/a/...", FALSE },
    { "/a/.b", FALSE },
    { "/a/%2e%2e%2e", FALSE },
    { "/a?x=/../", FALSE },
    { "/a#/..", FALSE },
    { "*", FALSE },
    { "http://h/..x", FALSE },
    { "http:/..", FALSE },
    { "", FALSE },
  };
  g_autoptr (RtpLineWatch) w = rtp_line_watch_new ();
  const char *stream = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /a/b/%2e%2e?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                       "{\"GET /c/.. HTTP/1.1\r\n"   /* not at a line start: not a request line */
                       "POST\t/d/./e\t HTTP/1.0\r\n" /* blanks as libsoup allows them */
                       "get /f/.. HTTP/1.1\r\n";     /* libsoup would take it, no route has it */

  for (guint i = 0; i < G_N_ELEMENTS (targets); i++)
    g_assert_cmpint (rtp_request_target_has_dot_segment (targets[i].target, strlen (targets[i].target)), ==,
                     targets[i].dotted);
  /* in pieces of 3 bytes: lines across reads are seen whole */
  for (gsize i = 0; i < strlen (stream); i += 3)
    rtp_line_watch_feed (w, stream + i, MIN (3, strlen (stream) - i));
  g_assert_cmpuint (rtp_line_watch_get_pending (w), ==, 2);
  g_assert_false (rtp_line_watch_take (w, "/a", NULL));
  g_assert_false (rtp_line_watch_take (w, "/a/", NULL)); /* the query differs */
  g_assert_true (rtp_line_watch_take (w, "/a/", "x=1"));
  g_assert_cmpuint (rtp_line_watch_get_pending (w), ==, 1);
  g_assert_true (rtp_line_watch_take (w, "/d/e", NULL));
  g_assert_cmpuint (rtp_line_watch_get_pending (w), ==, 0);
  /* bounded: only the last eight are kept */
  for (guint i = 0; i < 100; i++)
    {
      g_autofree char *line = g_strdup_printf ("GET /x%u/y/.. HTTP/1.1\r\n", i);
      rtp_line_watch_feed (w, line, strlen (line));
    }
  g_assert_cmpuint (rtp_line_watch_get_pending (w), ==, 8);
  g_assert_false (rtp_line_watch_take (w, "/x91/", NULL));
  g_assert_true (rtp_line_watch_take (w, "/x93/", NULL)); /* and the one before it goes with it */
  g_assert_cmpuint (rtp_line_watch_get_pending (w), ==, 6);
  g_assert_false (rtp_line_watch_take (w, "/x92/", NULL));
}

/* The output stream keeps a head back (to send it with its body in one sendmsg(), or with MSG_MORE)
 * only when a body of at least one byte follows it: a head kept without its body would wait for
 * libsoup's flush. */
static void
test_head_announces_body (void)
{
  static const struct {
    const char *head;
    gboolean body;
  } heads[] = {
    { "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 188\r\n\r\n", TRUE },
    { "HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\nX-Request-Id: a\r\n\r\n", TRUE },
    { "HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n", TRUE },
    { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", FALSE },
    { "HTTP/1.1 200 OK\r\nContent-Length: 000\r\n\r\n", FALSE },
    { "HTTP/1.1 204 No Content\r\nAllow: GET\r\n\r\n", FALSE },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", FALSE },
    { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", FALSE },
    { "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n", FALSE },              /* not a whole head */
    { "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"a\":1}", FALSE }, /* head and body: not a head */
    { "{\"text\": \"\r\nContent-Length: 5\r\n\r\n\"}", FALSE },          /* a body that looks like one */
    { "HTTP/1.1 200", FALSE },
    { "", FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (heads); i++)
    {
      g_test_message ("%s", heads[i].head);
      g_assert_cmpint (rtp_http_head_announces_body (heads[i].head, strlen (heads[i].head)), ==, heads[i].body);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/http-server/routing", Fixture, NULL, setup, test_routing, teardown);
  g_test_add ("/http-server/pipeline", Fixture, NULL, setup, test_pipeline, teardown);
  g_test_add_func ("/http-server/request-line", test_request_line);
  g_test_add_func ("/http-server/head-announces-body", test_head_announces_body);
  return g_test_run ();
}
