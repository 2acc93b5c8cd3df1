/* rtp-control.c: org.realtimeplot.Server1 on D-Bus
 *
 * Each method is a thin adapter over the service calls the HTTP handlers use, so no rule
 * exists twice; callers act as administrators — who may call is the bus policy's business
 * (data/org.realtimeplot.Server1.conf lets root and the realtimeplot group on the system bus).
 * The name is owned with g_bus_own_name(); a name already taken is a warning, not an exit. */
#define G_LOG_DOMAIN "RtpControl"

#include "rtp-control.h"
#include "rtp-export.h"
#include "rtp-time.h"
#include "rtp-dbus-generated.h"
#include "rtp-error.h"
#include "rtp-i18n.h"

#include <gio/gunixfdlist.h>
#include <gio/gunixoutputstream.h>
#include <glib-unix.h>
#include <unistd.h>
#include <string.h>

#define BUS_NAME "org.realtimeplot.Server1"
#define OBJECT_PATH "/org/realtimeplot/Server1"

struct _RtpControl {
  GObject parent_instance;

  RtpServices *services;    /* (unowned) the application outlives us */
  RtpDbusServer1 *skeleton; /* (owned) */
  char *listen_address;     /* (owned) */
  RtpReloadFunc reload;
  gpointer reload_data;
  guint owner_id;
  GDBusConnection *connection; /* (owned) (nullable) */
  gint64 started_us;
  guint refresh_id;
  gulong value_set_id;
  gulong mqtt_id;
  gulong breached_id;
  gulong alarm_id;
};

G_DEFINE_TYPE (RtpControl, rtp_control, G_TYPE_OBJECT)

static void
return_error (GDBusMethodInvocation *invocation, const GError *error)
{
  if (error == NULL) /* a service broke its contract: still answer the caller */
    g_dbus_method_invocation_return_error_literal (invocation, RTP_ERROR, RTP_ERROR_FAILED, "internal error");
  else
    g_dbus_method_invocation_return_gerror (invocation, error);
}

/* ---- helpers ---------------------------------------------------------------- */

static GVariant *
user_to_variant (gconstpointer item)
{
  const RtpUser *u = item;
  GVariantDict d;

  g_variant_dict_init (&d, NULL);
  g_variant_dict_insert (&d, "user_id", "s", u->user_id);
  g_variant_dict_insert (&d, "login_name", "s", u->login_name);
  g_variant_dict_insert (&d, "first_name", "s", u->first_name);
  g_variant_dict_insert (&d, "last_name", "s", u->last_name);
  g_variant_dict_insert (&d, "email", "s", u->email != NULL ? u->email : "");
  g_variant_dict_insert (&d, "user_type", "s", u->user_type);
  g_variant_dict_insert (&d, "preferred_language", "s", u->preferred_language);
  g_variant_dict_insert (&d, "source", "s", u->from_directory ? "directory" : "local");
  return g_variant_dict_end (&d);
}

static GVariant *
strings_variant (GPtrArray *strings)
{
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("as"));
  for (guint i = 0; i < strings->len; i++)
    g_variant_builder_add (&b, "s", (const char *) g_ptr_array_index (strings, i));
  return g_variant_builder_end (&b);
}

/* One a{sv} per item, in list order: the shape of every List* method's reply. */
static GVariant *
list_variant (GPtrArray *list, GVariant *(*to_variant) (gconstpointer item))
{
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("aa{sv}"));
  for (guint i = 0; i < list->len; i++)
    g_variant_builder_add_value (&b, to_variant (g_ptr_array_index (list, i)));
  return g_variant_builder_end (&b);
}

/* A D-Bus caller acts as this administrator in the services. */
static RtpUser *
dbus_admin (const char *actor)
{
  RtpUser *u = g_new0 (RtpUser, 1);
  u->user_id = g_strdup (actor);
  u->login_name = g_strdup (actor);
  u->first_name = g_strdup ("D-Bus");
  u->last_name = g_strdup ("caller");
  u->user_type = g_strdup ("Admin");
  u->preferred_language = g_strdup ("en");
  return u;
}

typedef struct _Call {
  RtpControl *self;
  GDBusMethodInvocation *invocation; /* (owned) */
  char *a;
  char *b;
  char *c3; /* (nullable) more arguments of the methods that have them */
  char *c4;
  GStrv strv;
  gboolean flag;
  gint64 n;
  void (*then) (struct _Call *c, const RtpUser *admin, const char *actor); /* (nullable) after the uid lookup */
} Call;

static Call *
call_new (RtpControl *self, GDBusMethodInvocation *invocation, const char *a, const char *b)
{
  Call *c = g_new0 (Call, 1);
  c->self = g_object_ref (self);
  c->invocation = g_object_ref (invocation);
  c->a = g_strdup (a);
  c->b = g_strdup (b);
  return c;
}

static void
call_free (Call *c)
{
  g_object_unref (c->self);
  g_object_unref (c->invocation);
  g_free (c->a);
  g_free (c->b);
  g_free (c->c3);
  g_free (c->c4);
  g_strfreev (c->strv);
  g_free (c);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Call, call_free)

/* ---- methods ---------------------------------------------------------------- */

static gboolean
handle_get_status (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, gpointer user_data)
{
  RtpControl *self = user_data;
  RtpServices *s = self->services;
  g_autoptr (GError) error = NULL;
  guint experiments = 0, pvs = 0;
  gint64 users = rtp_user_manager_count (s->users, &error);
  GVariantDict d;

  if (users < 0 || !rtp_experiment_store_count (s->experiments, &experiments, &pvs, &error))
    {
      return_error (invocation, error);
      return TRUE;
    }
  g_variant_dict_init (&d, NULL);
  g_variant_dict_insert (&d, "version", "s", RTP_VERSION);
  g_variant_dict_insert (&d, "uptime_s", "t",
                         (guint64) ((g_get_monotonic_time () - self->started_us) / G_USEC_PER_SEC));
  g_variant_dict_insert (&d, "listen_address", "s", self->listen_address);
  g_variant_dict_insert (&d, "database_kind", "s", rtp_database_get_kind_name (s->db));
  g_variant_dict_insert (&d, "users", "u", (guint32) users);
  g_variant_dict_insert (&d, "experiments", "u", experiments);
  g_variant_dict_insert (&d, "process_variables", "u", pvs);
  g_variant_dict_insert (&d, "mqtt_connected", "b", rtp_mqtt_publisher_get_connected (s->mqtt));
  g_variant_dict_insert (&d, "archiver_configured", "b", rtp_archiver_client_is_configured (s->archiver));
  g_variant_dict_insert (&d, "directory", "s", rtp_directory_get_state (s->directory));
  g_variant_dict_insert (&d, "requests_served", "t", rtp_http_server_get_requests_served (s->http));
  g_variant_dict_insert (&d, "mqtt_outbox", "u", rtp_subscriptions_outbox_length (s->subscriptions));
  rtp_dbus_server1_complete_get_status (skeleton, invocation, g_variant_dict_end (&d));
  return TRUE;
}

static gboolean
handle_list_users (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) users = rtp_user_manager_list (self->services->users, &error);

  if (users == NULL)
    return_error (invocation, error);
  else
    rtp_dbus_server1_complete_list_users (skeleton, invocation, list_variant (users, user_to_variant));
  return TRUE;
}

static void
create_user_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) c = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *password = NULL;
  g_autoptr (RtpUser) user = rtp_user_manager_create_finish (RTP_USER_MANAGER (source), result, &password, &error);

  if (user == NULL)
    return_error (c->invocation, error);
  else
    rtp_dbus_server1_complete_create_user (c->self->skeleton, c->invocation, user->user_id, password);
}

static gboolean
handle_create_user (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *login, const char *first,
                    const char *last, const char *type, const char *email, gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (RtpUserChanges) fields = rtp_user_changes_new ();

  rtp_user_changes_set (fields, RTP_USER_FIELD_LOGIN_NAME, RTP_FIELD_SET, login);
  rtp_user_changes_set (fields, RTP_USER_FIELD_FIRST_NAME, RTP_FIELD_SET, first);
  rtp_user_changes_set (fields, RTP_USER_FIELD_LAST_NAME, RTP_FIELD_SET, last);
  rtp_user_changes_set (fields, RTP_USER_FIELD_USER_TYPE, RTP_FIELD_SET, type);
  if (email[0] != '\0')
    rtp_user_changes_set (fields, RTP_USER_FIELD_EMAIL, RTP_FIELD_SET, email);
  rtp_user_manager_create_async (self->services->users, fields, NULL, create_user_done,
                                 call_new (self, invocation, NULL, NULL));
  return TRUE;
}

static void
reset_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) c = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *password = rtp_user_manager_reset_password_finish (RTP_USER_MANAGER (source), result, &error);

  if (password == NULL)
    return_error (c->invocation, error);
  else
    rtp_dbus_server1_complete_reset_password (c->self->skeleton, c->invocation, password);
}

static gboolean
handle_reset_password (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *login,
                       gpointer user_data)
{
  RtpControl *self = user_data;
  rtp_user_manager_reset_password_async (self->services->users, login, NULL, reset_done,
                                         call_new (self, invocation, NULL, NULL));
  return TRUE;
}

/* A user by id, else by login name. */
static char *
resolve_user (RtpControl *self, const char *user, GError **error)
{
  g_autoptr (RtpUser) by_id = rtp_user_manager_get (self->services->users, user, NULL);
  g_autoptr (GPtrArray) all = NULL;

  if (by_id != NULL)
    return g_strdup (by_id->user_id);
  all = rtp_user_manager_list (self->services->users, error);
  if (all == NULL)
    return NULL;
  for (guint i = 0; i < all->len; i++)
    {
      RtpUser *u = g_ptr_array_index (all, i);
      if (g_str_equal (u->login_name, user))
        return g_strdup (u->user_id);
    }
  g_propagate_error (error, rtp_error_new_not_found (_ ("user"), user));
  return NULL;
}

static gboolean
handle_delete_user (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *user, gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *id = resolve_user (self, user, &error);
  g_autoptr (RtpUser) deleted = id != NULL ? rtp_user_manager_delete (self->services->users, id, &error) : NULL;

  if (deleted == NULL)
    return_error (invocation, error);
  else
    rtp_dbus_server1_complete_delete_user (skeleton, invocation);
  return TRUE;
}

static GVariant *
experiment_to_variant (gconstpointer item)
{
  const RtpExperiment *e = item;
  GVariantDict d;

  g_variant_dict_init (&d, NULL);
  g_variant_dict_insert (&d, "short_id", "s", e->short_id);
  g_variant_dict_insert (&d, "human_readable_name", "s", e->human_readable_name != NULL ? e->human_readable_name : "");
  g_variant_dict_insert_value (&d, "process_variables", strings_variant (e->pv_strings));
  g_variant_dict_insert_value (&d, "user_ids", strings_variant (e->user_ids));
  return g_variant_dict_end (&d);
}

static gboolean
handle_list_experiments (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) list = rtp_experiment_store_list_experiments (self->services->experiments, &error);

  if (list == NULL)
    return_error (invocation, error);
  else
    rtp_dbus_server1_complete_list_experiments (skeleton, invocation, list_variant (list, experiment_to_variant));
  return TRUE;
}

static GVariant *
pv_to_variant (gconstpointer item)
{
  const RtpProcessVariable *pv = item;
  GVariantDict d;

  g_variant_dict_init (&d, NULL);
  g_variant_dict_insert (&d, "pv_string", "s", pv->pv_string);
  g_variant_dict_insert (&d, "human_readable_name", "s",
                         pv->human_readable_name != NULL ? pv->human_readable_name : "");
  g_variant_dict_insert (&d, "experiment_short_id", "s", pv->experiment_short_id);
  g_variant_dict_insert (&d, "available_for_mqtt_publish", "b", pv->available_for_mqtt_publish);
  if (pv->has_threshold_min)
    g_variant_dict_insert (&d, "default_threshold_min", "x", pv->threshold_min);
  if (pv->has_threshold_max)
    g_variant_dict_insert (&d, "default_threshold_max", "x", pv->threshold_max);
  if (pv->setpoint_min != NULL)
    g_variant_dict_insert (&d, "setpoint_min", "d", g_ascii_strtod (pv->setpoint_min, NULL));
  if (pv->setpoint_max != NULL)
    g_variant_dict_insert (&d, "setpoint_max", "d", g_ascii_strtod (pv->setpoint_max, NULL));
  if (pv->setpoint_max_step != NULL)
    g_variant_dict_insert (&d, "setpoint_max_step", "d", g_ascii_strtod (pv->setpoint_max_step, NULL));
  if (pv->readback_pv != NULL)
    g_variant_dict_insert (&d, "readback_pv", "s", pv->readback_pv);
  return g_variant_dict_end (&d);
}

static gboolean
handle_list_pvs (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) list = rtp_experiment_store_list_pvs (self->services->experiments, NULL, &error);

  if (list == NULL)
    return_error (invocation, error);
  else
    rtp_dbus_server1_complete_list_pvs (skeleton, invocation, list_variant (list, pv_to_variant));
  return TRUE;
}

static RtpFieldState
variant_integer (GVariant *v, gint64 *out)
{
  if (v == NULL)
    return RTP_FIELD_ABSENT;
  if (g_variant_is_of_type (v, G_VARIANT_TYPE_INT64))
    *out = g_variant_get_int64 (v);
  else if (g_variant_is_of_type (v, G_VARIANT_TYPE_INT32))
    *out = g_variant_get_int32 (v);
  else
    return RTP_FIELD_WRONG_TYPE;
  return RTP_FIELD_SET;
}

/* A number: d, or an integer (x, i). */
static RtpFieldState
variant_number (GVariant *v, double *out)
{
  gint64 n;
  RtpFieldState state;

  if (v != NULL && g_variant_is_of_type (v, G_VARIANT_TYPE_DOUBLE))
    {
      *out = g_variant_get_double (v);
      return RTP_FIELD_SET;
    }
  state = variant_integer (v, &n);
  if (state == RTP_FIELD_SET)
    *out = (double) n;
  return state;
}

static gboolean
handle_create_pv (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *pv_string, GVariant *fields,
                  gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpProcessVariable) pv = NULL;
  g_autoptr (GVariant) name = g_variant_lookup_value (fields, "human_readable_name", NULL);
  g_autoptr (GVariant) publish = g_variant_lookup_value (fields, "available_for_mqtt_publish", NULL);
  g_autoptr (GVariant) min = g_variant_lookup_value (fields, "default_threshold_min", NULL);
  g_autoptr (GVariant) max = g_variant_lookup_value (fields, "default_threshold_max", NULL);
  RtpPvFields f = { .pv_string_state = RTP_FIELD_SET, .pv_string = pv_string };

  /* the same names and types as the JSON body of POST /experiments/pvs; integers may be x or i */
  if (name != NULL)
    {
      f.name_state = g_variant_is_of_type (name, G_VARIANT_TYPE_STRING) ? RTP_FIELD_SET : RTP_FIELD_WRONG_TYPE;
      f.human_readable_name = f.name_state == RTP_FIELD_SET ? g_variant_get_string (name, NULL) : NULL;
    }
  if (publish != NULL)
    {
      f.publish_state = g_variant_is_of_type (publish, G_VARIANT_TYPE_BOOLEAN) ? RTP_FIELD_SET : RTP_FIELD_WRONG_TYPE;
      f.available_for_mqtt_publish = f.publish_state == RTP_FIELD_SET && g_variant_get_boolean (publish);
    }
  f.threshold_min_state = variant_integer (min, &f.default_threshold_min);
  f.threshold_max_state = variant_integer (max, &f.default_threshold_max);
  {
    g_autoptr (GVariant) sp_min = g_variant_lookup_value (fields, "setpoint_min", NULL);
    g_autoptr (GVariant) sp_max = g_variant_lookup_value (fields, "setpoint_max", NULL);
    g_autoptr (GVariant) sp_step = g_variant_lookup_value (fields, "setpoint_max_step", NULL);
    g_autoptr (GVariant) readback = g_variant_lookup_value (fields, "readback_pv", NULL);
    f.setpoint_min_state = variant_number (sp_min, &f.setpoint_min);
    f.setpoint_max_state = variant_number (sp_max, &f.setpoint_max);
    f.setpoint_max_step_state = variant_number (sp_step, &f.setpoint_max_step);
    if (readback != NULL)
      {
        f.readback_pv_state = g_variant_is_of_type (readback, G_VARIANT_TYPE_STRING) ? RTP_FIELD_SET
                                                                                     : RTP_FIELD_WRONG_TYPE;
        f.readback_pv = f.readback_pv_state == RTP_FIELD_SET ? g_variant_get_string (readback, NULL) : NULL;
      }
    pv = rtp_experiment_store_create_pv (self->services->experiments, &f, &error);
  }
  if (pv == NULL)
    return_error (invocation, error);
  else
    rtp_dbus_server1_complete_create_pv (skeleton, invocation);
  return TRUE;
}

static gboolean
handle_delete_pv (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *pv_string,
                  gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *deleted_experiment = NULL;
  g_autoptr (RtpProcessVariable)
    pv = rtp_experiment_store_delete_pv (self->services->experiments, pv_string, &deleted_experiment, &error);
  if (pv == NULL)
    return_error (invocation, error);
  else
    rtp_dbus_server1_complete_delete_pv (skeleton, invocation);
  return TRUE;
}

static gboolean
handle_assign_user (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *short_id,
                    const char *user_id, gpointer user_data)
{
  RtpControl *self = user_data;
  const char *add[] = { user_id, NULL };
  RtpExperimentChanges changes = { .users_to_add_state = RTP_FIELD_SET, .users_to_add = add };
  g_autoptr (GPtrArray) errors = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpExperiment) e = NULL;

  /* the same rule as PUT /experiments/<id> {"users_to_add": [...]} */
  e = rtp_experiment_store_update_experiment (self->services->experiments, short_id, &changes, errors, &error);
  if (e == NULL)
    return_error (invocation, error);
  else if (errors->len > 0)
    g_dbus_method_invocation_return_error_literal (invocation, RTP_ERROR, RTP_ERROR_NOT_FOUND,
                                                   g_ptr_array_index (errors, 0));
  else
    rtp_dbus_server1_complete_assign_user (skeleton, invocation);
  return TRUE;
}

static gboolean
handle_export_config (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *text = rtp_experiment_store_export (self->services->experiments, &error);

  if (text == NULL)
    return_error (invocation, error);
  else
    rtp_dbus_server1_complete_export_config (skeleton, invocation, text);
  return TRUE;
}

static gboolean
handle_import_config (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *content,
                      gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpImportResult)
    r = rtp_experiment_store_import (self->services->experiments, content, strlen (content), &error);
  GVariantDict d;

  if (r == NULL)
    {
      return_error (invocation, error);
      return TRUE;
    }
  g_variant_dict_init (&d, NULL);
  g_variant_dict_insert (&d, "experiments_in_file", "u", r->experiments_in_file);
  g_variant_dict_insert (&d, "process_variables_in_file", "u", r->process_variables_in_file);
  g_variant_dict_insert (&d, "experiments_in_database", "u", r->experiments_in_database);
  g_variant_dict_insert (&d, "process_variables_in_database", "u", r->process_variables_in_database);
  g_variant_dict_insert_value (&d, "errors", strings_variant (r->errors));
  rtp_dbus_server1_complete_import_config (skeleton, invocation, g_variant_dict_end (&d));
  return TRUE;
}

static void
publish_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) c = user_data;
  g_autoptr (GError) error = NULL;

  if (!rtp_setpoints_set_finish (RTP_SETPOINTS (source), result, &error))
    return_error (c->invocation, error);
  else
    rtp_dbus_server1_complete_publish_value (c->self->skeleton, c->invocation);
}

static void
publish_as (Call *c, const RtpUser *admin, const char *actor)
{
  RtpSetpointValue value = { .kind = RTP_SETPOINT_TEXT, .text = c->b }; /* D-Bus gives the payload text */

  rtp_setpoints_set_async (c->self->services->setpoints, admin, actor, TRUE, c->a, &value, NULL, publish_done,
                           call_new (c->self, c->invocation, NULL, NULL));
}

static void
got_caller_uid (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) c = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autofree char *actor = NULL;
  g_autoptr (RtpUser) admin = NULL;
  guint32 uid = 0;

  if (reply == NULL)
    {
      g_dbus_method_invocation_return_gerror (c->invocation, error);
      return;
    }
  g_variant_get (reply, "(u)", &uid);
  actor = g_strdup_printf ("dbus:uid=%u", uid);
  admin = dbus_admin (actor);
  c->then (c, admin, actor);
}

/* Runs @c->then with the caller as an administrator named by its Unix user, as the bus daemon
 * vouches for it (what the audit log and alarm histories record). */
static void
as_caller (Call *c)
{
  g_dbus_connection_call (g_dbus_method_invocation_get_connection (c->invocation), "org.freedesktop.DBus",
                          "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetConnectionUnixUser",
                          g_variant_new ("(s)", g_dbus_method_invocation_get_sender (c->invocation)),
                          G_VARIANT_TYPE ("(u)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, got_caller_uid, c);
}

static gboolean
handle_publish_value (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *pv, const char *value,
                      gpointer user_data)
{
  RtpControl *self = user_data;
  Call *c = call_new (self, invocation, pv, value);

  c->then = publish_as;
  as_caller (c);
  return TRUE;
}

/* ---- alarms ---------------------------------------------------------------- */

static GVariant *
alarm_to_variant (RtpControl *self, const RtpAlarm *a)
{
  GTimeZone *tz = rtp_history_get_time_zone (self->services->history);
  GVariantDict d;
  char buf[64];

  g_variant_dict_init (&d, NULL);
  g_variant_dict_insert (&d, "id", "s", a->id);
  g_variant_dict_insert (&d, "pv_string", "s", a->pv_string);
  g_variant_dict_insert (&d, "experiment_short_id", "s", a->experiment_short_id);
  g_variant_dict_insert (&d, "user_id", "s", a->user_id);
  g_variant_dict_insert (&d, "severity", "s", a->severity);
  g_variant_dict_insert (&d, "value", "s", a->value != NULL ? a->value : "");
  g_variant_dict_insert (&d, "active", "b", a->active);
  g_variant_dict_insert (&d, "latched", "b", a->latched);
  rtp_time_format (tz, a->since_us / G_USEC_PER_SEC, 0, buf);
  g_variant_dict_insert (&d, "since", "s", buf);
  rtp_time_format (tz, a->last_change_us / G_USEC_PER_SEC, 0, buf);
  g_variant_dict_insert (&d, "last_change", "s", buf);
  g_variant_dict_insert (&d, "notifications", "x", a->notifications);
  if (a->ended_us != 0)
    {
      rtp_time_format (tz, a->ended_us / G_USEC_PER_SEC, 0, buf);
      g_variant_dict_insert (&d, "ended", "s", buf);
    }
  if (a->acknowledged_by != NULL)
    g_variant_dict_insert (&d, "acknowledged_by", "s", a->acknowledged_by);
  if (a->shelved_by != NULL)
    {
      g_variant_dict_insert (&d, "shelved_by", "s", a->shelved_by);
      rtp_time_format (tz, a->shelved_until_us / G_USEC_PER_SEC, 0, buf);
      g_variant_dict_insert (&d, "shelved_until", "s", buf);
      g_variant_dict_insert (&d, "shelve_reason", "s", a->shelve_reason != NULL ? a->shelve_reason : "");
    }
  return g_variant_dict_end (&d);
}

static gboolean
handle_list_alarms (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *state, gpointer user_data)
{
  RtpControl *self = user_data;
  static const char *const states[] = { "", "active", "unacknowledged", "shelved", "all" };
  RtpAlarmFilter filter = { 0 };
  g_autoptr (RtpUser) admin = dbus_admin ("dbus");
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) alarms = NULL;
  GVariantBuilder b;
  guint i;

  for (i = 0; i < G_N_ELEMENTS (states) && !g_str_equal (state, states[i]); i++)
    ;
  if (i == G_N_ELEMENTS (states))
    {
      g_dbus_method_invocation_return_error (invocation, RTP_ERROR, RTP_ERROR_INVALID,
                                             "state: “%s” is not one of \"\", active, unacknowledged, shelved, all",
                                             state);
      return TRUE;
    }
  filter.state = i;
  alarms = rtp_alerter_list_alarms (self->services->alerter, admin, &filter, &error);
  if (alarms == NULL)
    {
      return_error (invocation, error);
      return TRUE;
    }
  g_variant_builder_init (&b, G_VARIANT_TYPE ("aa{sv}"));
  for (guint j = 0; j < alarms->len; j++)
    g_variant_builder_add_value (&b, alarm_to_variant (self, g_ptr_array_index (alarms, j)));
  rtp_dbus_server1_complete_list_alarms (skeleton, invocation, g_variant_builder_end (&b));
  return TRUE;
}

static void
acknowledge_as (Call *c, const RtpUser *admin, const char *actor)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpAlarm) alarm = rtp_alerter_acknowledge (c->self->services->alerter, admin, actor, c->a,
                                                        c->b[0] != '\0' ? c->b : NULL, &error);

  if (alarm == NULL)
    return_error (c->invocation, error);
  else
    rtp_dbus_server1_complete_acknowledge_alarm (c->self->skeleton, c->invocation);
}

static gboolean
handle_acknowledge_alarm (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *id,
                          const char *comment, gpointer user_data)
{
  Call *c = call_new (user_data, invocation, id, comment);

  c->then = acknowledge_as;
  as_caller (c);
  return TRUE;
}

static void
shelve_as (Call *c, const RtpUser *admin, const char *actor)
{
  g_autoptr (GError) error = NULL;
  gint64 seconds = CLAMP (c->n, 0, G_MAXINT32);
  g_autoptr (RtpAlarm) alarm = rtp_alerter_shelve (c->self->services->alerter, admin, actor, c->a,
                                                   g_get_real_time () + seconds * G_USEC_PER_SEC, c->b, &error);

  if (alarm == NULL)
    return_error (c->invocation, error);
  else
    rtp_dbus_server1_complete_shelve_alarm (c->self->skeleton, c->invocation);
}

static gboolean
handle_shelve_alarm (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *id, gint64 seconds,
                     const char *reason, gpointer user_data)
{
  Call *c = call_new (user_data, invocation, id, reason);

  c->n = seconds;
  c->then = shelve_as;
  as_caller (c);
  return TRUE;
}

static void
unshelve_as (Call *c, const RtpUser *admin, const char *actor)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpAlarm) alarm = rtp_alerter_unshelve (c->self->services->alerter, admin, actor, c->a, &error);

  if (alarm == NULL)
    return_error (c->invocation, error);
  else
    rtp_dbus_server1_complete_unshelve_alarm (c->self->skeleton, c->invocation);
}

static gboolean
handle_unshelve_alarm (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *id, gpointer user_data)
{
  Call *c = call_new (user_data, invocation, id, NULL);

  c->then = unshelve_as;
  as_caller (c);
  return TRUE;
}

static void
on_alarm_changed (RtpAlerter *alerter, const char *id, const char *pv, const char *severity, const char *event,
                  gpointer user_data)
{
  RtpControl *self = user_data;
  rtp_dbus_server1_emit_alarm_changed (self->skeleton, id, pv, severity, event);
}

static gboolean
handle_reload_config (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) restart = self->reload (self->reload_data, &error);

  if (restart == NULL)
    return_error (invocation, error);
  else
    rtp_dbus_server1_complete_reload_config (skeleton, invocation, (const char *const *) restart);
  return TRUE;
}

/* ---- snapshots ---------------------------------------------------------------- */

static char *
control_local_time (RtpControl *self, gint64 us)
{
  char buf[64];

  rtp_time_format_us (rtp_history_get_time_zone (self->services->history), us, buf);
  return g_strdup (buf);
}

static GVariant *
snapshot_to_variant (RtpControl *self, const RtpSnapshot *s)
{
  GVariantDict d;
  g_autofree char *taken = control_local_time (self, s->taken_us);
  g_autofree char *at = s->has_at ? control_local_time (self, s->at_us) : g_strdup ("");

  g_variant_dict_init (&d, NULL);
  g_variant_dict_insert (&d, "id", "s", s->id);
  g_variant_dict_insert (&d, "experiment_short_id", "s", s->experiment_short_id);
  g_variant_dict_insert (&d, "name", "s", s->name);
  g_variant_dict_insert (&d, "comment", "s", s->comment != NULL ? s->comment : "");
  g_variant_dict_insert (&d, "taken_at", "s", taken);
  g_variant_dict_insert (&d, "taken_by", "s", s->taken_by);
  g_variant_dict_insert (&d, "at", "s", at);
  if (s->values != NULL)
    {
      GVariantBuilder values;
      g_variant_builder_init (&values, G_VARIANT_TYPE_VARDICT);
      for (guint i = 0; i < s->values->len; i++)
        {
          const RtpSnapshotValue *v = g_ptr_array_index (s->values, i);
          g_variant_builder_add (&values, "{sv}", v->pv_string,
                                 g_variant_new_string (v->value != NULL ? v->value : ""));
        }
      g_variant_dict_insert_value (&d, "values", g_variant_builder_end (&values));
    }
  return g_variant_dict_end (&d);
}

static void
snapshot_taken (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) c = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpSnapshot) s = rtp_snapshots_take_finish (RTP_SNAPSHOTS (source), result, &error);

  if (s == NULL)
    return_error (c->invocation, error);
  else
    rtp_dbus_server1_complete_take_snapshot (c->self->skeleton, c->invocation, snapshot_to_variant (c->self, s));
}

static void
take_snapshot_as (Call *c, const RtpUser *admin, const char *actor)
{
  RtpServices *services = c->self->services;
  g_autoptr (GError) error = NULL;
  gint64 at_us = 0;
  gboolean has_at = c->c4 != NULL && c->c4[0] != '\0';

  if (has_at && !rtp_history_resolve_moment (services->history, "at", c->c4, &at_us, &error))
    {
      return_error (c->invocation, error);
      return;
    }
  rtp_snapshots_take_async (services->snapshots, c->a, c->b, c->c3 != NULL && c->c3[0] != '\0' ? c->c3 : NULL, has_at,
                            at_us, actor, NULL, snapshot_taken, call_new (c->self, c->invocation, NULL, NULL));
}

static gboolean
handle_take_snapshot (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *short_id,
                      const char *name, const char *comment, const char *at, gpointer user_data)
{
  Call *c = call_new (user_data, invocation, short_id, name);

  c->c3 = g_strdup (comment);
  c->c4 = g_strdup (at);
  c->then = take_snapshot_as;
  as_caller (c);
  return TRUE;
}

static gboolean
handle_list_snapshots (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *short_id,
                       gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) list = rtp_snapshots_list (self->services->snapshots, short_id, &error);
  GVariantBuilder b;

  if (list == NULL)
    {
      return_error (invocation, error);
      return TRUE;
    }
  g_variant_builder_init (&b, G_VARIANT_TYPE ("aa{sv}"));
  for (guint i = 0; i < list->len; i++)
    g_variant_builder_add_value (&b, snapshot_to_variant (self, g_ptr_array_index (list, i)));
  rtp_dbus_server1_complete_list_snapshots (skeleton, invocation, g_variant_builder_end (&b));
  return TRUE;
}

static gboolean
handle_get_snapshot (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *short_id, const char *id,
                     gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpSnapshot) s = rtp_snapshots_get (self->services->snapshots, short_id, id, &error);

  if (s == NULL)
    return_error (invocation, error);
  else
    rtp_dbus_server1_complete_get_snapshot (skeleton, invocation, snapshot_to_variant (self, s));
  return TRUE;
}

static void
snapshot_restored (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (Call) c = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) list = rtp_snapshots_restore_finish (RTP_SNAPSHOTS (source), result, &error);
  GVariantBuilder b;

  if (list == NULL)
    {
      return_error (c->invocation, error);
      return;
    }
  g_variant_builder_init (&b, G_VARIANT_TYPE ("aa{sv}"));
  for (guint i = 0; i < list->len; i++)
    {
      const RtpRestoreResult *r = g_ptr_array_index (list, i);
      GVariantDict d;
      g_variant_dict_init (&d, NULL);
      g_variant_dict_insert (&d, "pv_string", "s", r->pv_string);
      g_variant_dict_insert (&d, "outcome", "s", r->outcome);
      if (r->reason != NULL)
        g_variant_dict_insert (&d, "reason", "s", r->reason);
      g_variant_builder_add_value (&b, g_variant_dict_end (&d));
    }
  rtp_dbus_server1_complete_restore_snapshot (c->self->skeleton, c->invocation, g_variant_builder_end (&b));
}

static void
restore_snapshot_as (Call *c, const RtpUser *admin, const char *actor)
{
  rtp_snapshots_restore_async (c->self->services->snapshots, admin, actor, TRUE, c->a, c->b,
                               c->strv != NULL && c->strv[0] != NULL ? (const char *const *) c->strv : NULL, c->flag,
                               NULL, snapshot_restored, call_new (c->self, c->invocation, NULL, NULL));
}

static gboolean
handle_restore_snapshot (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, const char *short_id,
                         const char *id, const char *const *pvs, gboolean dry_run, gpointer user_data)
{
  Call *c = call_new (user_data, invocation, short_id, id);

  c->strv = g_strdupv ((char **) pvs);
  c->flag = dry_run;
  c->then = restore_snapshot_as;
  as_caller (c);
  return TRUE;
}

/* ---- GetData: the /data answer written into the caller's file descriptor ------------------ */

/* The sink of an export: what the export writes is queued and written to the descriptor
 * asynchronously (the descriptor is made non-blocking), one write at a time; the caller's call
 * returns when everything is written, or with the error. */
typedef struct {
  gint ref_count;
  RtpControl *self;                  /* (owned) */
  GDBusMethodInvocation *invocation; /* (owned) (nullable) until answered */
  GOutputStream *out;                /* (owned) */
  GQueue pending;                    /* of GBytes */
  gsize queued;
  gboolean writing;
  gboolean ended;
  RtpExport *export;         /* (nullable) until the export released the sink */
  GCancellable *cancellable; /* (owned) cancelled when the descriptor cannot be written */
  GError *write_error;       /* (owned) (nullable) */
} FdSink;

static FdSink *
fd_sink_ref (FdSink *s)
{
  g_atomic_int_inc (&s->ref_count);
  return s;
}

static void
fd_sink_unref (FdSink *s)
{
  if (!g_atomic_int_dec_and_test (&s->ref_count))
    return;
  g_queue_clear_full (&s->pending, (GDestroyNotify) g_bytes_unref);
  g_object_unref (s->out);
  g_object_unref (s->cancellable);
  g_clear_error (&s->write_error);
  g_clear_object (&s->invocation);
  g_object_unref (s->self);
  g_free (s);
}

static void
fd_sink_answer (FdSink *s, const GError *error)
{
  GDBusMethodInvocation *invocation = g_steal_pointer (&s->invocation);

  if (invocation == NULL)
    return;
  if (error != NULL)
    return_error (invocation, error);
  else
    rtp_dbus_server1_complete_get_data (s->self->skeleton, invocation, NULL);
  g_object_unref (invocation);
}

static void fd_sink_kick (FdSink *s);

static void
fd_sink_wrote (GObject *source, GAsyncResult *result, gpointer user_data)
{
  FdSink *s = user_data;
  g_autoptr (GError) error = NULL;
  gssize n = g_output_stream_write_bytes_finish (G_OUTPUT_STREAM (source), result, &error);
  GBytes *head = g_queue_pop_head (&s->pending);

  s->writing = FALSE;
  if (n < 0)
    {
      g_bytes_unref (head);
      if (s->write_error == NULL)
        {
          g_message ("GetData: the caller's descriptor cannot be written (%s); the export stops", error->message);
          s->write_error = g_error_new (RTP_ERROR, RTP_ERROR_FAILED, "cannot write the answer: %s", error->message);
          g_cancellable_cancel (s->cancellable);
          fd_sink_answer (s, s->write_error);
        }
      fd_sink_unref (s);
      return;
    }
  s->queued -= (gsize) n;
  if ((gsize) n < g_bytes_get_size (head))
    g_queue_push_head (&s->pending, g_bytes_new_from_bytes (head, (gsize) n, g_bytes_get_size (head) - (gsize) n));
  g_bytes_unref (head);
  if (s->export != NULL && !s->ended)
    rtp_export_drained (s->export, s->queued);
  fd_sink_kick (s);
  fd_sink_unref (s);
}

static void
fd_sink_kick (FdSink *s)
{
  if (s->writing || s->write_error != NULL)
    return;
  if (g_queue_is_empty (&s->pending))
    {
      if (s->ended)
        {
          g_output_stream_close (s->out, NULL, NULL);
          fd_sink_answer (s, NULL);
        }
      return;
    }
  s->writing = TRUE;
  g_output_stream_write_bytes_async (s->out, g_queue_peek_head (&s->pending), G_PRIORITY_DEFAULT, NULL, fd_sink_wrote,
                                     fd_sink_ref (s));
}

static void
fd_sink_push (FdSink *s, GBytes *bytes)
{
  if (s->write_error != NULL || g_bytes_get_size (bytes) == 0)
    {
      g_bytes_unref (bytes);
      return;
    }
  s->queued += g_bytes_get_size (bytes);
  g_queue_push_tail (&s->pending, bytes);
  fd_sink_kick (s);
}

static void
fd_begin (gpointer sink, RtpExport *export, const char *content_type, const char *disposition)
{
  FdSink *s = sink;
  s->export = export;
}

static void
fd_write (gpointer sink, GString *text)
{
  gsize len = text->len;

  fd_sink_push (sink, g_bytes_new (text->str, len));
  g_string_truncate (text, 0);
}

static gsize
fd_queued (gpointer sink)
{
  return ((FdSink *) sink)->queued;
}

static void
fd_end (gpointer sink)
{
  FdSink *s = sink;
  s->ended = TRUE;
  s->export = NULL;
  fd_sink_kick (s);
}

static void
fd_abort (gpointer sink)
{
  FdSink *s = sink;
  g_autoptr (GError) error = g_error_new_literal (RTP_ERROR, RTP_ERROR_UPSTREAM,
                                                  _ ("Could not get process variable data from archiver."));
  s->export = NULL;
  fd_sink_answer (s, error); /* what was written stays, cut off */
}

static void
fd_complete (gpointer sink, const char *content_type, const char *disposition, GBytes *body)
{
  FdSink *s = sink;
  fd_sink_push (s, g_bytes_ref (body));
  fd_end (s);
}

static void
fd_fail (gpointer sink, const GError *error)
{
  FdSink *s = sink;
  s->export = NULL;
  fd_sink_answer (s, error);
}

/* The export is done with the sink: whatever it did not answer (it was cancelled) is answered here. */
static void
fd_release (gpointer sink)
{
  FdSink *s = sink;
  s->export = NULL;
  if (s->write_error == NULL && !s->ended)
    {
      g_autoptr (GError) error = g_error_new_literal (RTP_ERROR, RTP_ERROR_FAILED, "the export was cancelled");
      fd_sink_answer (s, error);
    }
  fd_sink_unref (s);
}

static const RtpExportSinkFuncs fd_sink_funcs = {
  .begin = fd_begin,
  .write = fd_write,
  .queued = fd_queued,
  .end = fd_end,
  .abort = fd_abort,
  .complete = fd_complete,
  .fail = fd_fail,
};

/* One option of GetData: absent, of @type (SET), or of another type. */
static RtpFieldState
option (GVariant *options, const char *key, const GVariantType *type, GVariant **out)
{
  g_autoptr (GVariant) v = g_variant_lookup_value (options, key, NULL);

  if (v == NULL)
    return RTP_FIELD_ABSENT;
  if (!g_variant_is_of_type (v, type))
    return RTP_FIELD_WRONG_TYPE;
  *out = g_steal_pointer (&v);
  return RTP_FIELD_SET;
}

static gboolean
handle_get_data (RtpDbusServer1 *skeleton, GDBusMethodInvocation *invocation, GUnixFDList *fd_list,
                 const char *short_id, const char *pv, GVariant *options, GVariant *fd_handle, gpointer user_data)
{
  static const char *const known[] = { "since",  "until", "max_points",  "operator", "bin_s",
                                       "format", "align", "time_format", "include",  NULL };
  RtpControl *self = user_data;
  RtpServices *services = self->services;
  g_autoptr (GError) error = NULL;
  g_autoptr (RtpExperiment) experiment = NULL;
  g_autoptr (GVariant) since = NULL, until = NULL, max_points = NULL, op = NULL, bin_s = NULL;
  g_autoptr (GVariant) format = NULL, align = NULL, time_format = NULL, include = NULL;
  g_autofree const char **include_list = NULL;
  RtpHistoryQuery query = { 0 };
  RtpHistoryWindow window = { 0 };
  RtpExportRequest request = { 0 };
  RtpExportOptions export_options;
  GVariantIter iter;
  const char *key;
  FdSink *s;
  int fd;

  g_variant_iter_init (&iter, options);
  while (g_variant_iter_next (&iter, "{&sv}", &key, NULL))
    if (!g_strv_contains (known, key))
      {
        g_dbus_method_invocation_return_error (invocation, RTP_ERROR, RTP_ERROR_INVALID, "%s: not an option of GetData",
                                               key);
        return TRUE;
      }
  if (fd_list == NULL || g_unix_fd_list_get_length (fd_list) != 1 || g_variant_get_handle (fd_handle) != 0)
    {
      g_dbus_method_invocation_return_error_literal (invocation, RTP_ERROR, RTP_ERROR_INVALID,
                                                     "fd: pass one file descriptor open for writing");
      return TRUE;
    }
  experiment = rtp_experiment_store_get_experiment (services->experiments, short_id, &error);
  if (experiment == NULL)
    {
      return_error (invocation, error);
      return TRUE;
    }
  if (pv[0] != '\0' && !g_ptr_array_find_with_equal_func (experiment->pv_strings, pv, g_str_equal, NULL))
    {
      g_autoptr (GError) missing = rtp_error_new_not_found (_ ("process variable"), pv);
      return_error (invocation, missing);
      return TRUE;
    }
  /* the same keys and types as the /data body; a number may come as x, i or u */
  if (option (options, "since", G_VARIANT_TYPE_STRING, &since) == RTP_FIELD_WRONG_TYPE ||
      option (options, "until", G_VARIANT_TYPE_STRING, &until) == RTP_FIELD_WRONG_TYPE)
    {
      g_dbus_method_invocation_return_error_literal (invocation, RTP_ERROR, RTP_ERROR_INVALID,
                                                     "since, until: a time is a string (s)");
      return TRUE;
    }
  query.since = since != NULL ? g_variant_get_string (since, NULL) : NULL;
  query.until = until != NULL ? g_variant_get_string (until, NULL) : NULL;
  if (option (options, "max_points", G_VARIANT_TYPE_INT64, &max_points) == RTP_FIELD_WRONG_TYPE)
    {
      g_dbus_method_invocation_return_error_literal (invocation, RTP_ERROR, RTP_ERROR_INVALID,
                                                     _ ("max_points: Value must be a non-negative integer."));
      return TRUE;
    }
  if (max_points != NULL)
    {
      query.has_max_points = TRUE;
      query.max_points = g_variant_get_int64 (max_points);
    }
  query.operator_state = option (options, "operator", G_VARIANT_TYPE_STRING, &op);
  query.operator_name = op != NULL ? g_variant_get_string (op, NULL) : NULL;
  query.bin_s_state = option (options, "bin_s", G_VARIANT_TYPE_INT64, &bin_s);
  query.bin_s = bin_s != NULL ? g_variant_get_int64 (bin_s) : 0;
  request.format_state = option (options, "format", G_VARIANT_TYPE_STRING, &format);
  request.format = format != NULL ? g_variant_get_string (format, NULL) : NULL;
  request.align_state = option (options, "align", G_VARIANT_TYPE_STRING, &align);
  request.align = align != NULL ? g_variant_get_string (align, NULL) : NULL;
  request.time_format_state = option (options, "time_format", G_VARIANT_TYPE_STRING, &time_format);
  request.time_format = time_format != NULL ? g_variant_get_string (time_format, NULL) : NULL;
  request.include_state = option (options, "include", G_VARIANT_TYPE_STRING_ARRAY, &include);
  include_list = include != NULL ? g_variant_get_strv (include, NULL) : NULL;
  request.include = include_list;
  if (!rtp_export_read_options (&request, &export_options, &error) ||
      !rtp_history_resolve (services->history, &query, &window, &error))
    {
      return_error (invocation, error);
      return TRUE;
    }
  if (!rtp_history_is_configured (services->history))
    {
      rtp_history_window_clear (&window);
      g_dbus_method_invocation_return_error_literal (invocation, RTP_ERROR, RTP_ERROR_UPSTREAM,
                                                     _ ("Could not get process variable data from archiver."));
      return TRUE;
    }
  fd = g_unix_fd_list_get (fd_list, 0, &error);
  if (fd < 0 || !g_unix_set_fd_nonblocking (fd, TRUE, &error))
    {
      if (fd >= 0)
        close (fd);
      rtp_history_window_clear (&window);
      return_error (invocation, error);
      return TRUE;
    }
  s = g_new0 (FdSink, 1);
  s->ref_count = 1;
  s->self = g_object_ref (self);
  s->invocation = g_object_ref (invocation);
  s->out = g_unix_output_stream_new (fd, TRUE);
  s->cancellable = g_cancellable_new ();
  g_queue_init (&s->pending);
  g_message ("GetData %s%s%s as %s for a D-Bus caller", short_id, pv[0] != '\0' ? "/" : "", pv,
             export_options.format == RTP_EXPORT_JSON  ? "JSON"
             : export_options.format == RTP_EXPORT_CSV ? "CSV"
                                                       : "TSV");
  rtp_export_start (services->history, experiment, pv[0] != '\0' ? pv : NULL, &window, &export_options, &fd_sink_funcs,
                    s, fd_release, s->cancellable);
  return TRUE;
}

/* ---- signals and properties ---------------------------------------------------------------- */

static void
on_value_set (RtpSetpoints *setpoints, const char *pv, const char *value, const char *actor, gpointer user_data)
{
  RtpControl *self = user_data;
  rtp_dbus_server1_emit_value_set (self->skeleton, pv, value, actor);
}

void
rtp_control_emit_threshold_breached (RtpControl *self, const char *pv, double value, gint64 min, gint64 max)
{
  rtp_dbus_server1_emit_threshold_breached (self->skeleton, pv, value, min, max);
}

static void
on_breached (RtpAlerter *alerter, const char *pv, double value, gint64 min, gint64 max, gpointer user_data)
{
  rtp_control_emit_threshold_breached (user_data, pv, value, min, max);
}

static void
on_mqtt_connected (GObject *mqtt, GParamSpec *pspec, gpointer user_data)
{
  RtpControl *self = user_data;
  rtp_dbus_server1_set_mqtt_connected (self->skeleton, rtp_mqtt_publisher_get_connected (self->services->mqtt));
}

static gboolean
refresh_properties (gpointer user_data)
{
  RtpControl *self = user_data;
  guint64 served = rtp_http_server_get_requests_served (self->services->http);

  /* PropertiesChanged only when the figure moved */
  if (rtp_dbus_server1_get_requests_served (self->skeleton) != served)
    rtp_dbus_server1_set_requests_served (self->skeleton, served);
  return G_SOURCE_CONTINUE;
}

/* ---- bus ---------------------------------------------------------------- */

static void
on_bus_acquired (GDBusConnection *connection, const char *name, gpointer user_data)
{
  RtpControl *self = user_data;
  g_autoptr (GError) error = NULL;

  g_set_object (&self->connection, connection);
  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (self->skeleton), connection, OBJECT_PATH, &error))
    g_warning ("cannot export %s: %s", OBJECT_PATH, error->message);
}

static void
on_name_acquired (GDBusConnection *connection, const char *name, gpointer user_data)
{
  g_message ("owning the D-Bus name %s", name);
}

static void
on_name_lost (GDBusConnection *connection, const char *name, gpointer user_data)
{
  if (connection == NULL)
    g_warning ("no D-Bus connection: local control over D-Bus is off, HTTP goes on");
  else
    g_warning ("the D-Bus name %s is taken by another process; HTTP goes on, D-Bus control is with the other one",
               name);
}

static void
rtp_control_dispose (GObject *object)
{
  RtpControl *self = RTP_CONTROL (object);

  rtp_control_stop (self);
  g_clear_object (&self->skeleton);
  G_OBJECT_CLASS (rtp_control_parent_class)->dispose (object);
}

static void
rtp_control_finalize (GObject *object)
{
  RtpControl *self = RTP_CONTROL (object);
  g_free (self->listen_address);
  G_OBJECT_CLASS (rtp_control_parent_class)->finalize (object);
}

static void
rtp_control_class_init (RtpControlClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = rtp_control_dispose;
  G_OBJECT_CLASS (klass)->finalize = rtp_control_finalize;
}

static void
rtp_control_init (RtpControl *self)
{
}

RtpControl *
rtp_control_new (RtpServices *services, const char *listen_address, RtpReloadFunc reload, gpointer reload_data)
{
  RtpControl *self = g_object_new (RTP_TYPE_CONTROL, NULL);

  rtp_error_register_dbus_names ();
  self->services = services;
  self->listen_address = g_strdup (listen_address);
  self->reload = reload;
  self->reload_data = reload_data;
  self->started_us = g_get_monotonic_time ();
  self->skeleton = rtp_dbus_server1_skeleton_new ();
  rtp_dbus_server1_set_version (self->skeleton, RTP_VERSION);
  rtp_dbus_server1_set_listen_address (self->skeleton, listen_address);
  rtp_dbus_server1_set_database_kind (self->skeleton, rtp_database_get_kind_name (services->db));
  rtp_dbus_server1_set_mqtt_connected (self->skeleton, rtp_mqtt_publisher_get_connected (services->mqtt));
#define CONNECT(sig, fn) g_signal_connect (self->skeleton, "handle-" sig, G_CALLBACK (fn), self)
  CONNECT ("get-status", handle_get_status);
  CONNECT ("list-users", handle_list_users);
  CONNECT ("create-user", handle_create_user);
  CONNECT ("reset-password", handle_reset_password);
  CONNECT ("delete-user", handle_delete_user);
  CONNECT ("list-experiments", handle_list_experiments);
  CONNECT ("list-pvs", handle_list_pvs);
  CONNECT ("create-pv", handle_create_pv);
  CONNECT ("delete-pv", handle_delete_pv);
  CONNECT ("assign-user", handle_assign_user);
  CONNECT ("export-config", handle_export_config);
  CONNECT ("import-config", handle_import_config);
  CONNECT ("publish-value", handle_publish_value);
  CONNECT ("reload-config", handle_reload_config);
  CONNECT ("list-alarms", handle_list_alarms);
  CONNECT ("acknowledge-alarm", handle_acknowledge_alarm);
  CONNECT ("shelve-alarm", handle_shelve_alarm);
  CONNECT ("unshelve-alarm", handle_unshelve_alarm);
  CONNECT ("get-data", handle_get_data);
  CONNECT ("take-snapshot", handle_take_snapshot);
  CONNECT ("list-snapshots", handle_list_snapshots);
  CONNECT ("get-snapshot", handle_get_snapshot);
  CONNECT ("restore-snapshot", handle_restore_snapshot);
#undef CONNECT
  self->value_set_id = g_signal_connect (services->setpoints, "value-set", G_CALLBACK (on_value_set), self);
  self->mqtt_id = g_signal_connect (services->mqtt, "notify::connected", G_CALLBACK (on_mqtt_connected), self);
  self->breached_id = g_signal_connect (services->alerter, "threshold-breached", G_CALLBACK (on_breached), self);
  self->alarm_id = g_signal_connect (services->alerter, "alarm-changed", G_CALLBACK (on_alarm_changed), self);
  return self;
}

gboolean
rtp_control_start (RtpControl *self, const char *bus, GError **error)
{
  GBusType type;

  if (g_strcmp0 (bus, "none") == 0)
    return TRUE;
  if (g_strcmp0 (bus, "system") == 0)
    type = G_BUS_TYPE_SYSTEM;
  else if (g_strcmp0 (bus, "session") == 0)
    type = G_BUS_TYPE_SESSION;
  else
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "--bus: “%s” is not session, system or none", bus);
      return FALSE;
    }
  self->owner_id = g_bus_own_name (type, BUS_NAME, G_BUS_NAME_OWNER_FLAGS_NONE, on_bus_acquired, on_name_acquired,
                                   on_name_lost, self, NULL);
  self->refresh_id = g_timeout_add_seconds (1, refresh_properties, self);
  return TRUE;
}

void
rtp_control_stop (RtpControl *self)
{
  g_clear_handle_id (&self->owner_id, g_bus_unown_name);
  g_clear_handle_id (&self->refresh_id, g_source_remove);
  if (self->skeleton != NULL && self->connection != NULL)
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (self->skeleton));
  g_clear_object (&self->connection);
  if (self->value_set_id != 0)
    g_clear_signal_handler (&self->value_set_id, self->services->setpoints);
  if (self->mqtt_id != 0)
    g_clear_signal_handler (&self->mqtt_id, self->services->mqtt);
  if (self->alarm_id != 0)
    g_clear_signal_handler (&self->alarm_id, self->services->alerter);
  if (self->breached_id != 0)
    g_clear_signal_handler (&self->breached_id, self->services->alerter);
}
