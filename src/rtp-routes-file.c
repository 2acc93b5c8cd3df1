/* rtp-routes-file.c: /file/export and /file/import (API.md "Import and export") */
#define G_LOG_DOMAIN "RtpRoutesFile"

#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-services.h"

#include <string.h>

static void
export_config (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  g_autoptr (GError) error = NULL;
  char *text = rtp_experiment_store_export (services->experiments, &error);
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%d-%H%M%S");
  g_autofree char *disposition = g_strdup_printf ("attachment; filename=%s-rtpserver-export.rtpdb", stamp);
  g_autoptr (GBytes) bytes = NULL;

  if (text == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  bytes = g_bytes_new_take (text, strlen (text));
  rtp_request_add_header (request, "Content-Disposition", disposition);
  rtp_request_respond_bytes (request, 200, "text/plain; charset=utf-8", bytes);
}

static void
import_config (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  GBytes *body = rtp_request_get_raw_body (request);
  gsize len = 0;
  const char *data = g_bytes_get_data (body, &len);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpImportResult)
    result = rtp_experiment_store_import (services->experiments, data != NULL ? data : "", len, &error);
  JsonObject *o;
  JsonArray *messages;
  JsonArray *errors;

  if (result == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  o = json_object_new ();
  messages = json_array_new ();
  json_array_add_string_element (
    messages,
    _ (
      "Import complete. Please check the number of entries found, compare them with the number in the database, and consult the error messages if necessary!"));
  json_object_set_array_member (o, "messages", messages);
  errors = json_array_new ();
  for (guint i = 0; i < result->errors->len; i++)
    json_array_add_string_element (errors, g_ptr_array_index (result->errors, i));
  json_object_set_array_member (o, "errors", errors);
  json_object_set_int_member (o, "number_of_experiments_found_in_file", result->experiments_in_file);
  json_object_set_int_member (o, "number_of_process_variables_found_in_file", result->process_variables_in_file);
  json_object_set_int_member (o, "number_of_experiments_now_in_database", result->experiments_in_database);
  json_object_set_int_member (o, "number_of_process_variables_now_in_database", result->process_variables_in_database);
  rtp_request_respond_object (request, 200, o);
}

void
rtp_routes_file_register (RtpHttpServer *http, RtpServices *services)
{
  rtp_http_server_add_route (http, "GET", "/file/export", RTP_ROUTE_ADMIN, export_config, services);
  rtp_http_server_add_route (http, "POST", "/file/import", RTP_ROUTE_ADMIN | RTP_ROUTE_RAW | RTP_ROUTE_LARGE_BODY,
                             import_config, services);
}
