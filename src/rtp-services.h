/* rtp-services.h: the services RtpApplication owns, handed to route and D-Bus adapters */
#pragma once

#include "rtp-config.h"
#include "rtp-database.h"
#include "rtp-http-server.h"
#include "rtp-user-manager.h"

G_BEGIN_DECLS

typedef struct {
  RtpConfig *config;
  RtpDatabase *db;
  RtpUserManager *users;
  RtpHttpServer *http;
} RtpServices;

/* Route registration, one per rtp-routes-<area>.c */
void rtp_routes_auth_register (RtpHttpServer *http, RtpServices *services);

/* Shared JSON representations */
char       *rtp_url_for (const char *prefix, const char *id);
JsonObject *rtp_user_to_json (RtpServices *services, const RtpUser *user);

G_END_DECLS
