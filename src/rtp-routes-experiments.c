/* rtp-routes-experiments.c: /experiments and /experiments/pvs (API.md "Experiments and process variables") */
#define G_LOG_DOMAIN "RtpRoutesExperiments"

#include "rtp-error.h"
#include "rtp-i18n.h"
#include "rtp-services.h"

#include <string.h>

static void
add_url_array (JsonObject *o, const char *member, const char *prefix, GPtrArray *ids)
{
  JsonArray *array = json_array_sized_new (ids->len);

  for (guint i = 0; i < ids->len; i++)
    {
      g_autofree char *url = rtp_url_for (prefix, g_ptr_array_index (ids, i));
      json_array_add_string_element (array, url);
    }
  json_object_set_array_member (o, member, array);
}

static void
set_nullable_string (JsonObject *o, const char *member, const char *value)
{
  if (value != NULL)
    json_object_set_string_member (o, member, value);
  else
    json_object_set_null_member (o, member);
}

JsonObject *
rtp_experiment_to_json (const RtpExperiment *e, gboolean with_users)
{
  JsonObject *o = json_object_new ();

  json_object_set_string_member (o, "short_id", e->short_id);
  set_nullable_string (o, "human_readable_name", e->human_readable_name);
  add_url_array (o, "process_variable_urls", "/experiments/pvs/", e->pv_strings);
  if (with_users)
    add_url_array (o, "user_urls", "/auth/users/", e->user_ids);
  return o;
}

JsonObject *
rtp_process_variable_to_json (const RtpProcessVariable *pv)
{
  JsonObject *o = json_object_new ();

  json_object_set_string_member (o, "pv_string", pv->pv_string);
  set_nullable_string (o, "human_readable_name", pv->human_readable_name);
  json_object_set_string_member (o, "experiment_short_id", pv->experiment_short_id);
  json_object_set_boolean_member (o, "available_for_mqtt_publish", pv->available_for_mqtt_publish);
  if (pv->has_threshold_min)
    json_object_set_int_member (o, "default_threshold_min", pv->threshold_min);
  else
    json_object_set_null_member (o, "default_threshold_min");
  if (pv->has_threshold_max)
    json_object_set_int_member (o, "default_threshold_max", pv->threshold_max);
  else
    json_object_set_null_member (o, "default_threshold_max");
  /* the guard rails only when set: a PV without them is the JSON the frontend knows */
  {
    const char *const names[3] = { "setpoint_min", "setpoint_max", "setpoint_max_step" };
    const char *const texts[3] = { pv->setpoint_min, pv->setpoint_max, pv->setpoint_max_step };
    for (guint i = 0; i < 3; i++)
      if (texts[i] != NULL)
        {
          gint64 n;
          if (g_ascii_string_to_signed (texts[i], 10, G_MININT64, G_MAXINT64, &n, NULL))
            json_object_set_int_member (o, names[i], n);
          else
            json_object_set_double_member (o, names[i], g_ascii_strtod (texts[i], NULL));
        }
    if (pv->readback_pv != NULL)
      json_object_set_string_member (o, "readback_pv", pv->readback_pv);
  }
  return o;
}

gboolean
rtp_routes_check_access (RtpServices *services, RtpRequest *request, const char *short_id, RtpAccess access)
{
  g_autoptr (GError) error = NULL;

  if (rtp_experiment_store_check_access (services->experiments, rtp_request_get_caller (request), short_id, access,
                                         &error))
    return TRUE;
  rtp_request_respond_error (request, error);
  return FALSE;
}

static JsonArray *
strings_to_json (GPtrArray *strings)
{
  JsonArray *array = json_array_new ();
  for (guint i = 0; i < strings->len; i++)
    json_array_add_string_element (array, g_ptr_array_index (strings, i));
  return array;
}

/* ---- experiments ---------------------------------------------------------------- */

static void
list_experiments (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) list = NULL;
  JsonArray *array;
  JsonObject *o;
  guint64 stamp = 0;

  if (rtp_routes_respond_kept (request, services, "experiments", &stamp))
    return;
  list = rtp_experiment_store_list_experiments (services->experiments, &error);
  if (list == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  array = json_array_sized_new (list->len);
  for (guint i = 0; i < list->len; i++)
    json_array_add_object_element (array, rtp_experiment_to_json (g_ptr_array_index (list, i), TRUE));
  o = json_object_new ();
  json_object_set_array_member (o, "experiments", array);
  rtp_routes_respond_and_keep (request, services, "experiments", stamp, o);
}

static void
respond_experiment (RtpRequest *request, const RtpExperiment *e, GPtrArray *errors)
{
  JsonObject *o = json_object_new ();

  json_object_set_object_member (o, "experiment",
                                 rtp_experiment_to_json (e, rtp_user_is_admin (rtp_request_get_caller (request))));
  if (errors != NULL)
    json_object_set_array_member (o, "errors", strings_to_json (errors));
  rtp_request_respond_object (request, 200, o);
}

static void
get_experiment (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *short_id = rtp_request_get_param (request, 0);
  gboolean admin = rtp_user_is_admin (rtp_request_get_caller (request));
  g_autofree char *key = g_strconcat (admin ? "experiment\nadmin\n" : "experiment\nuser\n", short_id, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpExperiment) e = NULL;
  guint64 stamp = 0;
  g_autoptr (GBytes) kept = rtp_stamp_cache_lookup (services->answers, key, &stamp);
  JsonObject *o;

  if (kept != NULL)
    {
      /* kept at the current stamp: the experiment exists, so the access check comes next, as after a read */
      if (rtp_routes_check_access (services, request, short_id, RTP_ACCESS_READ))
        rtp_routes_send (request, kept);
      return;
    }
  e = rtp_experiment_store_get_experiment (services->experiments, short_id, &error);
  if (e == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  if (!rtp_routes_check_access (services, request, short_id, RTP_ACCESS_READ))
    return;
  o = json_object_new ();
  json_object_set_object_member (o, "experiment", rtp_experiment_to_json (e, admin));
  rtp_routes_respond_and_keep (request, services, key, stamp, o);
}

static void
update_experiment (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  JsonObject *body = rtp_request_get_body (request);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) errors = g_ptr_array_new_with_free_func (g_free);
  g_auto (GStrv) add = NULL;
  g_auto (GStrv) remove = NULL;
  RtpExperimentChanges changes = { 0 };
  g_autoptr (RtpExperiment) e = NULL;

  changes.short_id_state = rtp_routes_read_string (body, "short_id", &changes.short_id);
  changes.name_state = rtp_routes_read_string (body, "human_readable_name", &changes.human_readable_name);
  changes.users_to_add_state = rtp_routes_read_strings (body, "users_to_add", &add);
  changes.users_to_add = (const char *const *) add;
  changes.users_to_remove_state = rtp_routes_read_strings (body, "users_to_remove", &remove);
  changes.users_to_remove = (const char *const *) remove;
  e = rtp_experiment_store_update_experiment (services->experiments, rtp_request_get_param (request, 0), &changes,
                                              errors, &error);

  if (e == NULL)
    rtp_request_respond_error (request, error);
  else
    respond_experiment (request, e, errors);
}

static char *
deleted_message (const char *type, const char *id)
{
  return g_strdup_printf (_ ("The %s (%s) was successfully deleted from the database."), type, id);
}

static void
delete_experiment (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *short_id = rtp_request_get_param (request, 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) pvs = rtp_experiment_store_delete_experiment (services->experiments, short_id, &error);
  JsonObject *o;
  JsonArray *messages;

  if (pvs == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  messages = json_array_new ();
  for (guint i = 0; i < pvs->len; i++)
    {
      g_autofree char *m = deleted_message (_ ("process variable"), g_ptr_array_index (pvs, i));
      json_array_add_string_element (messages, m);
    }
  {
    g_autofree char *m = deleted_message (_ ("experiment"), short_id);
    json_array_add_string_element (messages, m);
  }
  o = json_object_new ();
  json_object_set_array_member (o, "messages", messages);
  json_object_set_array_member (o, "deleted_process_variables", strings_to_json (pvs));
  json_object_set_string_member (o, "deleted_experiment", short_id);
  rtp_request_respond_object (request, 200, o);
}

/* ---- process variables ---------------------------------------------------------------- */

static void
read_pv_fields (JsonObject *body, RtpPvFields *f)
{
  f->pv_string_state = rtp_routes_read_string (body, "pv_string", &f->pv_string);
  f->name_state = rtp_routes_read_string (body, "human_readable_name", &f->human_readable_name);
  f->publish_state = rtp_routes_read_boolean (body, "available_for_mqtt_publish", &f->available_for_mqtt_publish);
  f->threshold_min_state = rtp_routes_read_integer (body, "default_threshold_min", &f->default_threshold_min);
  f->threshold_max_state = rtp_routes_read_integer (body, "default_threshold_max", &f->default_threshold_max);
  f->experiment_state = rtp_routes_read_string (body, "experiment_short_id", &f->experiment_short_id);
  f->setpoint_min_state = rtp_routes_read_number (body, "setpoint_min", &f->setpoint_min);
  f->setpoint_max_state = rtp_routes_read_number (body, "setpoint_max", &f->setpoint_max);
  f->setpoint_max_step_state = rtp_routes_read_number (body, "setpoint_max_step", &f->setpoint_max_step);
  f->readback_pv_state = rtp_routes_read_string (body, "readback_pv", &f->readback_pv);
}

static void
respond_pv (RtpRequest *request, const RtpProcessVariable *pv, GPtrArray *errors)
{
  JsonObject *o = json_object_new ();

  json_object_set_object_member (o, "process_variable", rtp_process_variable_to_json (pv));
  if (errors != NULL)
    json_object_set_array_member (o, "errors", strings_to_json (errors));
  rtp_request_respond_object (request, 200, o);
}

static void
list_pvs (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) list = NULL;
  JsonArray *array;
  JsonObject *o;
  guint64 stamp = 0;

  if (rtp_routes_respond_kept (request, services, "pvs", &stamp))
    return;
  list = rtp_experiment_store_list_pvs (services->experiments, NULL, &error);
  if (list == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  array = json_array_sized_new (list->len);
  for (guint i = 0; i < list->len; i++)
    json_array_add_object_element (array, rtp_process_variable_to_json (g_ptr_array_index (list, i)));
  o = json_object_new ();
  json_object_set_array_member (o, "process_variables", array);
  rtp_routes_respond_and_keep (request, services, "pvs", stamp, o);
}

static void
create_pv (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpProcessVariable) pv = NULL;
  RtpPvFields fields = { 0 };

  read_pv_fields (rtp_request_get_body (request), &fields);
  fields.experiment_state = RTP_FIELD_ABSENT; /* creating: it follows from pv_string */
  if (fields.pv_string_state == RTP_FIELD_ABSENT || fields.pv_string_state == RTP_FIELD_NULL)
    {
      /* API.md: this one error is an object naming the field */
      JsonObject *o = json_object_new ();
      JsonArray *errors = json_array_new ();
      JsonObject *field = json_object_new ();
      json_object_set_string_member (
        field, "pv_string",
        _ (
          "No pv_string was specified. To create a process variable, you must provide a pv_string because it serves as primary_key."));
      json_array_add_object_element (errors, field);
      json_object_set_array_member (o, "errors", errors);
      rtp_request_respond_object (request, 400, o);
      return;
    }
  pv = rtp_experiment_store_create_pv (services->experiments, &fields, &error);
  if (pv == NULL)
    rtp_request_respond_error (request, error);
  else
    respond_pv (request, pv, NULL);
}

static void
get_pv (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  const char *name = rtp_request_get_param (request, 0);
  g_autofree char *key = g_strconcat ("pv\n", name, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpProcessVariable) pv = NULL;
  guint64 stamp = 0;
  /* kept: the PV's experiment (for the access check of the next caller), a NUL, then the answer */
  g_autoptr (GBytes) kept = rtp_stamp_cache_lookup (services->answers, key, &stamp);
  JsonObject *o;

  if (kept != NULL)
    {
      gsize size = 0;
      const char *experiment = g_bytes_get_data (kept, &size);
      const char *nul = memchr (experiment, '\0', size);

      if (nul != NULL)
        {
          gsize offset = (gsize) (nul - experiment) + 1;
          if (rtp_routes_check_access (services, request, experiment, RTP_ACCESS_READ))
            {
              g_autoptr (GBytes) answer = g_bytes_new_from_bytes (kept, offset, size - offset);
              rtp_routes_send (request, answer);
            }
          return;
        }
    }
  pv = rtp_experiment_store_get_pv (services->experiments, name, &error);
  if (pv == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  if (!rtp_routes_check_access (services, request, pv->experiment_short_id, RTP_ACCESS_READ))
    return;
  o = json_object_new ();
  json_object_set_object_member (o, "process_variable", rtp_process_variable_to_json (pv));
  {
    g_autoptr (GBytes) answer = rtp_json_object_to_bytes (o);
    gsize n = strlen (pv->experiment_short_id) + 1;
    GByteArray *both = g_byte_array_sized_new ((guint) (n + g_bytes_get_size (answer)));

    g_byte_array_append (both, (const guint8 *) pv->experiment_short_id, (guint) n);
    g_byte_array_append (both, g_bytes_get_data (answer, NULL), (guint) g_bytes_get_size (answer));
    {
      g_autoptr (GBytes) keep = g_byte_array_free_to_bytes (both);
      rtp_stamp_cache_store (services->answers, stamp, key, keep);
    }
    rtp_routes_send (request, answer);
  }
}

static void
update_pv (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) errors = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (RtpProcessVariable) pv = NULL;
  RtpPvFields changes = { 0 };

  read_pv_fields (rtp_request_get_body (request), &changes);
  pv = rtp_experiment_store_update_pv (services->experiments, rtp_request_get_param (request, 0), &changes, errors,
                                       &error);

  if (pv == NULL)
    rtp_request_respond_error (request, error);
  else
    respond_pv (request, pv, errors);
}

static void
delete_pv (RtpRequest *request, gpointer user_data)
{
  RtpServices *services = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *deleted_experiment = NULL;
  g_autoptr (RtpProcessVariable)
    pv = rtp_experiment_store_delete_pv (services->experiments, rtp_request_get_param (request, 0), &deleted_experiment,
                                         &error);
  JsonObject *o;
  JsonArray *messages;

  if (pv == NULL)
    {
      rtp_request_respond_error (request, error);
      return;
    }
  messages = json_array_new ();
  {
    g_autofree char *m = deleted_message (_ ("process variable"), pv->pv_string);
    json_array_add_string_element (messages, m);
  }
  if (deleted_experiment != NULL)
    {
      g_autofree char *m = deleted_message (_ ("experiment"), deleted_experiment);
      json_array_add_string_element (messages, m);
    }
  o = json_object_new ();
  json_object_set_array_member (o, "messages", messages);
  json_object_set_string_member (o, "deleted_process_variable", pv->pv_string);
  set_nullable_string (o, "deleted_experiment", deleted_experiment);
  rtp_request_respond_object (request, 200, o);
}

void
rtp_routes_experiments_register (RtpHttpServer *http, RtpServices *services)
{
  rtp_http_server_add_route (http, "GET", "/experiments", RTP_ROUTE_ADMIN, list_experiments, services);
  rtp_http_server_add_route (http, "GET", "/experiments/*", RTP_ROUTE_AUTH, get_experiment, services);
  rtp_http_server_add_route (http, "PUT", "/experiments/*", RTP_ROUTE_ADMIN | RTP_ROUTE_JSON, update_experiment,
                             services);
  rtp_http_server_add_route (http, "DELETE", "/experiments/*", RTP_ROUTE_ADMIN, delete_experiment, services);
  rtp_http_server_add_route (http, "GET", "/experiments/pvs", RTP_ROUTE_ADMIN, list_pvs, services);
  rtp_http_server_add_route (http, "POST", "/experiments/pvs", RTP_ROUTE_ADMIN | RTP_ROUTE_JSON, create_pv, services);
  rtp_http_server_add_route (http, "GET", "/experiments/pvs/*", RTP_ROUTE_AUTH, get_pv, services);
  rtp_http_server_add_route (http, "PUT", "/experiments/pvs/*", RTP_ROUTE_ADMIN | RTP_ROUTE_JSON, update_pv, services);
  rtp_http_server_add_route (http, "DELETE", "/experiments/pvs/*", RTP_ROUTE_ADMIN, delete_pv, services);
}
