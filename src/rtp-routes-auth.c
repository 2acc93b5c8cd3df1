/* rtp-routes-auth.c: /auth — login, users (API.md "Users and authentication") */
#define G_LOG_DOMAIN "RtpRoutesAuth"

#include "rtp-metrics.h"
#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-services.h"

#include <string.h>

char *
rtp_url_for (const char *prefix, const char *id)
{
  g_autofree char *escaped = g_uri_escape_string (id, G_URI_RESERVED_CHARS_ALLOWED_IN_PATH_ELEMENT, FALSE);
  return g_strconcat (prefix, escaped, NULL);
}

JsonObject *
rtp_user_to_json (const RtpUser *user)
{
  JsonObject *o = json_object_new ();
  JsonArray *experiments = json_array_new ();
  GPtrArray *ids = user->experiment_ids;

  json_object_set_string_member (o, "user_id", user->user_id);
  json_object_set_string_member (o, "login_name", user->login_name);
  json_object_set_string_member (o, "first_name", user->first_name);
  json_object_set_string_member (o, "last_name", user->last_name);
  if (user->email != NULL)
    json_object_set_string_member (o, "email", user->email);
  else
    json_object_set_null_member (o, "email");
  json_object_set_string_member (o, "user_type", user->user_type);
  json_object_set_string_member (o, "preferred_language", user->preferred_language);
  if (user->from_directory)
    json_object_set_string_member (o, "source", "directory");
  for (guint i = 0; ids != NULL && i < ids->len; i++)
    {
      g_autofree char *url = rtp_url_for ("/experiments/", g_ptr_array_index (ids, i));
      json_array_add_string_element (experiments, url);
    }
  json_object_set_array_member (o, "experiment_urls", experiments);
  {
    g_autofree char *url = rtp_url_for ("/auth/users/", user->user_id);
    json_object_set_string_member (o, "url", url);
  }
  return o;
}

static JsonObject *
wrap_user (const RtpUser *user)
{
  JsonObject *o = json_object_new ();
  json_object_set_object_member (o, "user", rtp_user_to_json (user));
  return o;
}

/* ---- POST /auth/get_access_token ---------------------------------------------------- */

static void
login_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (RtpRequest) request = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpUser) user = NULL;
  g_autofree char *token = NULL;

  rtp_request_enter (request);
  token = rtp_user_manager_login_finish (RTP_USER_MANAGER (source), result, &user, &error);
  rtp_metrics_inc (token != NULL                                             ? RTP_METRIC_LOGIN_SUCCESS
                   : g_error_matches (error, RTP_ERROR, RTP_ERROR_TOO_MANY)  ? RTP_METRIC_LOGIN_LOCKED
                   : g_error_matches (error, RTP_ERROR, RTP_ERROR_FORBIDDEN) ? RTP_METRIC_LOGIN_FAILURE
                                                                             : RTP_METRIC_LOGIN_UNAVAILABLE);
  if (token == NULL)
    rtp_request_respond_error (request, error);
  else
    {
      JsonObject *o = json_object_new ();
      g_autofree char *url = rtp_url_for ("/auth/users/", user->user_id);
      json_object_set_string_member (o, "access_token", token);
      json_object_set_string_member (o, "user_url", url);
      rtp_request_respond_object (request, 200, o);
    }
  rtp_request_leave (request);
}

static void
get_access_token (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  g_autofree char *login = NULL;
  g_autofree char *password = NULL;

  if (rtp_request_basic_auth_unusable (request))
    {
      rtp_metrics_inc (RTP_METRIC_LOGIN_FAILURE);
      /* a NUL or bytes that are not UTF-8: nobody's login, and never cut short into someone's */
      rtp_request_respond_error_message (request, 403,
                                         _ ("The login_name and password combination is not present in the database."));
      return;
    }
  if (!rtp_request_get_basic_auth (request, &login, &password) || login[0] == '\0' || password[0] == '\0')
    {
      rtp_request_respond_error_message (request, 401,
                                         _ ("Access requires authorization via login_name and password (Basic Auth)."));
      return;
    }
  rtp_request_pause (request);
  rtp_user_manager_login_async (services->users, login, password, rtp_request_get_client (request), NULL, login_done,
                                rtp_request_ref (request));
}

/* ---- /auth/users ---------------------------------------------------------------- */

static void
list_users (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) users = NULL;
  JsonObject *o;
  JsonArray *array;
  guint64 stamp = 0;

  if (rtp_routes_respond_kept (request, services, "users", &stamp))
    return;
  users = rtp_user_manager_list (services->users, &error);
  if (users == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  array = json_array_sized_new (users->len);
  for (guint i = 0; i < users->len; i++)
    json_array_add_object_element (array, rtp_user_to_json (g_ptr_array_index (users, i)));
  o = json_object_new ();
  json_object_set_array_member (o, "users", array);
  rtp_routes_respond_and_keep (request, services, "users", stamp, o);
}

/* Each user field of the body as it arrived (string, null, another type, or absent). */
static RtpUserChanges *
read_user_changes (JsonObject *body)
{
  RtpUserChanges *changes = rtp_user_changes_new ();

  for (guint i = 0; i < RTP_USER_N_FIELDS; i++)
    {
      const char *text = NULL;
      RtpFieldState state = rtp_routes_read_string (body, rtp_user_field_names[i], &text);
      rtp_user_changes_set (changes, i, state, text);
    }
  return changes;
}

static void
create_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (RtpRequest) request = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *password = NULL;
  g_autoptr (RtpUser) user = NULL;

  rtp_request_enter (request);
  user = rtp_user_manager_create_finish (RTP_USER_MANAGER (source), result, &password, &error);
  if (user == NULL)
    rtp_request_respond_error (request, error);
  else
    {
      JsonObject *o = wrap_user (user);
      json_object_set_string_member (json_object_get_object_member (o, "user"), "temporary_password", password);
      rtp_request_respond_object (request, 200, o);
    }
  rtp_request_leave (request);
}

static void
create_user (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  rtp_request_pause (request);
  g_autoptr (RtpUserChanges) fields = read_user_changes (rtp_request_get_body (request));

  rtp_user_manager_create_async (services->users, fields, NULL, create_done, rtp_request_ref (request));
}

/* Resolves "current" and applies "admins or that user"; answers and returns NULL when refused. */
static const char *
target_user_id (RtpRequest *request)
{
  const RtpUser *caller = rtp_request_get_caller (request);
  const char *id = rtp_request_get_param (request, 0);
  g_autofree char *message = NULL;

  if (g_str_equal (id, "current"))
    return caller->user_id;
  if (rtp_user_is_admin (caller) || g_str_equal (id, caller->user_id))
    return id;
  message = g_strdup_printf (_ ("Only administrators or the user with user_id %s can access this endpoint."), id);
  rtp_request_respond_error_message (request, 403, message);
  return NULL;
}

static void
get_user (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *id = target_user_id (request);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpUser) user = NULL;
  g_autofree char *key = NULL;
  guint64 stamp = 0;

  if (id == NULL)
    return;
  key = g_strconcat ("user\n", id, NULL);
  if (rtp_routes_respond_kept (request, services, key, &stamp))
    return;
  /* the caller was read from the database for this very request (token check): no second query */
  if (g_str_equal (id, rtp_request_get_caller (request)->user_id))
    user = rtp_user_copy (rtp_request_get_caller (request));
  else
    user = rtp_user_manager_get (services->users, id, &error);
  if (user == NULL)
    rtp_request_respond_error (request, error);
  else
    rtp_routes_respond_and_keep (request, services, key, stamp, wrap_user (user));
}

static void
update_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (RtpRequest) request = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) errors = NULL;
  g_autoptr (RtpUser) user = NULL;
  gboolean proof_missing = FALSE;

  rtp_request_enter (request);
  user = rtp_user_manager_update_finish (RTP_USER_MANAGER (source), result, &errors, &proof_missing, &error);
  /* the current password comes with Basic auth: the contract names it so */
  if (user != NULL && proof_missing)
    g_ptr_array_insert (errors, 0, g_strdup (_ ("Basic Auth is required for non-admins.")));
  if (user == NULL)
    rtp_request_respond_error (request, error);
  else
    {
      JsonObject *o = wrap_user (user);
      if (errors->len > 0)
        {
          JsonArray *array = json_array_new ();
          for (guint i = 0; i < errors->len; i++)
            json_array_add_string_element (array, g_ptr_array_index (errors, i));
          json_object_set_array_member (o, "errors", array);
        }
      rtp_request_respond_object (request, 200, o);
    }
  rtp_request_leave (request);
}

static void
update_user (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *id = target_user_id (request);
  g_autofree char *login = NULL;
  g_autofree char *password = NULL;

  g_autoptr (RtpUserChanges) changes = NULL;
  RtpPasswordProof proof = { 0 };

  if (id == NULL)
    return;
  changes = read_user_changes (rtp_request_get_body (request));
  rtp_request_get_basic_auth (request, &login, &password);
  proof.login = login;
  proof.password = password;
  rtp_request_pause (request);
  rtp_user_manager_update_async (services->users, rtp_request_get_caller (request), id, changes,
                                 password != NULL ? &proof : NULL, rtp_request_get_client (request), NULL, update_done,
                                 rtp_request_ref (request));
}

static void
delete_user (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *id = target_user_id (request);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpUser) user = NULL;
  g_autofree char *message = NULL;

  if (id == NULL)
    return;
  user = rtp_user_manager_delete (services->users, id, &error);
  if (user == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  message = g_strdup_printf (_ ("The %s (%s) was successfully deleted from the database."), _ ("user"),
                             user->login_name);
  rtp_request_respond_messages (request, message);
}

void
rtp_routes_auth_register (RtpHttpServer *http, RtpServices *services)
{
  rtp_http_server_add_route (http, "POST", "/auth/get_access_token", RTP_ROUTE_PUBLIC, get_access_token, services);
  rtp_http_server_add_route (http, "GET", "/auth/users", RTP_ROUTE_ADMIN, list_users, services);
  rtp_http_server_add_route (http, "POST", "/auth/users", RTP_ROUTE_ADMIN | RTP_ROUTE_JSON, create_user, services);
  rtp_http_server_add_route (http, "GET", "/auth/users/*", RTP_ROUTE_AUTH, get_user, services);
  rtp_http_server_add_route (http, "PUT", "/auth/users/*", RTP_ROUTE_AUTH | RTP_ROUTE_JSON, update_user, services);
  rtp_http_server_add_route (http, "DELETE", "/auth/users/*", RTP_ROUTE_ADMIN, delete_user, services);
}
