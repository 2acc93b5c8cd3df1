/* rtp-routes-json.c: reading the members of a JSON body into the services' typed fields
 *
 * Each reader says what arrived (RtpFieldState) and leaves the refusal to the service, which
 * knows the contract's order; only JSON's own types are told apart here. */
#define G_LOG_DOMAIN "RtpRoutes"

#include "rtp-services.h"

static JsonNode *
member (JsonObject *body, const char *name, RtpFieldState *state)
{
  JsonNode *node = body != NULL ? json_object_get_member (body, name) : NULL;

  if (node == NULL)
    *state = RTP_FIELD_ABSENT;
  else if (JSON_NODE_HOLDS_NULL (node))
    *state = RTP_FIELD_NULL;
  else
    *state = RTP_FIELD_WRONG_TYPE; /* until the reader finds its type */
  return *state == RTP_FIELD_WRONG_TYPE ? node : NULL;
}

static gboolean
holds (JsonNode *node, GType type)
{
  return node != NULL && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == type;
}

RtpFieldState
rtp_routes_read_string (JsonObject *body, const char *name, const char **out)
{
  RtpFieldState state;
  JsonNode *node = member (body, name, &state);

  if (holds (node, G_TYPE_STRING))
    {
      *out = json_node_get_string (node);
      return RTP_FIELD_SET;
    }
  return state;
}

RtpFieldState
rtp_routes_read_boolean (JsonObject *body, const char *name, gboolean *out)
{
  RtpFieldState state;
  JsonNode *node = member (body, name, &state);

  if (holds (node, G_TYPE_BOOLEAN))
    {
      *out = json_node_get_boolean (node);
      return RTP_FIELD_SET;
    }
  return state;
}

RtpFieldState
rtp_routes_read_integer (JsonObject *body, const char *name, gint64 *out)
{
  RtpFieldState state;
  JsonNode *node = member (body, name, &state);

  if (holds (node, G_TYPE_INT64))
    {
      *out = json_node_get_int (node);
      return RTP_FIELD_SET;
    }
  return state;
}

RtpFieldState
rtp_routes_read_number (JsonObject *body, const char *name, double *out)
{
  RtpFieldState state;
  JsonNode *node = member (body, name, &state);

  if (holds (node, G_TYPE_INT64))
    *out = (double) json_node_get_int (node);
  else if (holds (node, G_TYPE_DOUBLE))
    *out = json_node_get_double (node);
  else
    return state;
  return RTP_FIELD_SET;
}

RtpFieldState
rtp_routes_read_strings (JsonObject *body, const char *name, GStrv *out)
{
  RtpFieldState state;
  JsonNode *node = member (body, name, &state);
  g_autoptr (GStrvBuilder) builder = NULL;
  JsonArray *array;

  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
    return state;
  array = json_node_get_array (node);
  builder = g_strv_builder_new ();
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *e = json_array_get_element (array, i);
      if (!holds (e, G_TYPE_STRING))
        return RTP_FIELD_WRONG_TYPE;
      g_strv_builder_add (builder, json_node_get_string (e));
    }
  *out = g_strv_builder_end (builder);
  return RTP_FIELD_SET;
}

RtpStampCache *
rtp_routes_answers_new (RtpDatabase *db)
{
  return rtp_stamp_cache_new (db, (GBoxedCopyFunc) g_bytes_ref, (GDestroyNotify) g_bytes_unref);
}

gboolean
rtp_routes_respond_kept (RtpRequest *request, RtpServices *services, const char *key, guint64 *stamp)
{
  g_autoptr (GBytes) kept = rtp_stamp_cache_lookup (services->answers, key, stamp);

  if (kept == NULL)
    return FALSE;
  rtp_request_respond_bytes (request, 200, "application/json; charset=utf-8", kept);
  return TRUE;
}

void
rtp_routes_send (RtpRequest *request, GBytes *answer)
{
  rtp_request_respond_bytes (request, 200, "application/json; charset=utf-8", answer);
}

void
rtp_routes_respond_and_keep (RtpRequest *request, RtpServices *services, const char *key, guint64 stamp,
                             JsonObject *answer)
{
  g_autoptr (GBytes) bytes = rtp_json_object_to_bytes (answer);

  rtp_stamp_cache_store (services->answers, stamp, key, bytes);
  rtp_request_respond_bytes (request, 200, "application/json; charset=utf-8", bytes);
}

JsonObject *
rtp_routes_list_answer (const char *key, JsonArray *items)
{
  JsonObject *o = json_object_new ();

  json_object_set_array_member (o, key, items);
  return o;
}

/* The alarm settings of a subscription (POST /email/subscribe and PUT /alarms/subscriptions share them). */
void
rtp_routes_read_alarm_changes (JsonObject *body, RtpAlarmChanges *c)
{
  c->warning_min_state = rtp_routes_read_integer (body, "warning_min", &c->warning_min);
  c->warning_max_state = rtp_routes_read_integer (body, "warning_max", &c->warning_max);
  c->delay_state = rtp_routes_read_integer (body, "delay_s", &c->delay_s);
  c->latch_state = rtp_routes_read_boolean (body, "latch", &c->latch);
  c->notify_clear_state = rtp_routes_read_boolean (body, "notify_clear", &c->notify_clear);
}
