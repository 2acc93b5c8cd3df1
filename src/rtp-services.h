/* rtp-services.h: the services RtpApplication owns, handed to route and D-Bus adapters */
#pragma once

#include "rtp-archiver-client.h"
#include "rtp-history.h"
#include "rtp-config.h"
#include "rtp-database.h"
#include "rtp-experiment-store.h"
#include "rtp-mqtt-publisher.h"
#include "rtp-setpoints.h"
#include "rtp-snapshots.h"
#include "rtp-health.h"
#include "rtp-subscriptions.h"
#include "rtp-live-values.h"
#include "rtp-alerter.h"
#include "rtp-http-server.h"
#include "rtp-user-manager.h"
#include "rtp-stamp-cache.h"

G_BEGIN_DECLS

typedef struct {
  RtpConfig *config;
  RtpDatabase *db;
  RtpUserManager *users;
  RtpExperimentStore *experiments;
  RtpMqttPublisher *mqtt;
  RtpSubscriptions *subscriptions;
  RtpLiveValues *live;
  RtpAlerter *alerter;
  RtpSetpoints *setpoints;
  RtpSnapshots *snapshots;
  RtpHealth *health; /* /ready's probes */
  RtpArchiverClient *archiver;
  RtpArchiverClient *monitor_archiver; /* the live values' own connections: their polls never wait behind /data */
  RtpHistory *history;                 /* every read of archived data for HTTP and D-Bus */
  RtpHttpServer *http;
  RtpDirectory *directory; /* directory logins (unconfigured when RTP_LDAP_URL is unset) */
  RtpStampCache *answers;  /* finished answers that change only with the database (rtp_routes_respond_kept) */
  char *metrics_token;     /* (nullable) RTP_METRICS_TOKEN: a Bearer token that may read /metrics */
  gboolean metrics_public; /* RTP_METRICS_PUBLIC=1: anyone may read /metrics */
} RtpServices;

/* Route registration, one per rtp-routes-<area>.c */
void rtp_routes_auth_register (RtpHttpServer *http, RtpServices *services);
void rtp_routes_experiments_register (RtpHttpServer *http, RtpServices *services);
void rtp_routes_file_register (RtpHttpServer *http, RtpServices *services);
void rtp_routes_publish_register (RtpHttpServer *http, RtpServices *services);
void rtp_routes_email_register (RtpHttpServer *http, RtpServices *services);
void rtp_routes_data_register (RtpHttpServer *http, RtpServices *services);
void rtp_routes_live_register (RtpHttpServer *http, RtpServices *services);
void rtp_routes_alarms_register (RtpHttpServer *http, RtpServices *services);
void rtp_routes_snapshots_register (RtpHttpServer *http, RtpServices *services);
void rtp_routes_health_register (RtpHttpServer *http, RtpServices *services);

/* Shared JSON representations */
/* Returns: (transfer full) */
char *rtp_url_for (const char *prefix, const char *id);
/* Returns: (transfer full) */
JsonObject *rtp_user_to_json (const RtpUser *user);
/* Returns: (transfer full) */
JsonObject *rtp_experiment_to_json (const RtpExperiment *experiment, gboolean with_users);
/* Returns: (transfer full) */
JsonObject *rtp_process_variable_to_json (const RtpProcessVariable *pv);

/* Reading a body's member into a service's typed field (rtp-routes-json.c): what arrived; the
 * service decides the refusal. Strings stay owned by @body; rtp_routes_read_strings gives a new
 * vector (only when the result is RTP_FIELD_SET). */
RtpFieldState rtp_routes_read_string (JsonObject *body, const char *name, const char **out);
RtpFieldState rtp_routes_read_boolean (JsonObject *body, const char *name, gboolean *out);
RtpFieldState rtp_routes_read_integer (JsonObject *body, const char *name, gint64 *out);
/* an integer or a fraction */
RtpFieldState rtp_routes_read_number (JsonObject *body, const char *name, double *out);
RtpFieldState rtp_routes_read_strings (JsonObject *body, const char *name, GStrv *out);
/* Alarms and subscriptions as the API writes them (rtp-routes-alarms.c, rtp-routes-email.c). */
/* Returns: (transfer full) */
JsonObject *rtp_alarm_to_json (const RtpAlarm *alarm, GTimeZone *tz);
/* Returns: (transfer full) */
JsonObject *rtp_subscription_to_json (const RtpSubscription *sub);
void rtp_routes_read_alarm_changes (JsonObject *body, RtpAlarmChanges *changes);

/* Kept answers (rtp-routes-json.c): the finished bytes of answers that only change when the database
 * does, under its change stamp (the mechanism of the kept users: any change by this instance, another
 * one or direct SQL moves it; nothing is kept while it is 0), so that a list is built once per change
 * instead of once per request. Keys name the answer and the caller class it was made for. */
RtpStampCache *rtp_routes_answers_new (RtpDatabase *db);
/* Answers @request from what is kept under @key and returns TRUE; else sets @stamp for
 * rtp_routes_respond_and_keep() and returns FALSE. Check the caller's access first. */
gboolean rtp_routes_respond_kept (RtpRequest *request, RtpServices *services, const char *key, guint64 *stamp);
/* Sends a kept answer (from rtp_stamp_cache_lookup (services->answers, …), after the caller's checks). */
void rtp_routes_send (RtpRequest *request, GBytes *answer);
/* Answers @request with @answer (taken) and keeps its bytes under @key when nothing changed since @stamp. */
void rtp_routes_respond_and_keep (RtpRequest *request, RtpServices *services, const char *key, guint64 stamp,
                                  JsonObject *answer);

/* The contract's list answers: {"<key>": [ … ]}; takes @items. */
/* Returns: (transfer full) */
JsonObject *rtp_routes_list_answer (const char *key, JsonArray *items);

/* The experiment store's access rule for the caller (rtp_experiment_store_check_access); answers
 * the refusal (403 with the contract's message, or a database error) and returns FALSE. */
gboolean rtp_routes_check_access (RtpServices *services, RtpRequest *request, const char *short_id, RtpAccess access);

G_END_DECLS
