/* rtp-health.h: readiness of the server's dependencies, probed at most once per 5 s each */
#pragma once

#include <gio/gio.h>

#include "rtp-archiver-client.h"
#include "rtp-config.h"
#include "rtp-database.h"
#include "rtp-directory.h"
#include "rtp-mqtt-publisher.h"

G_BEGIN_DECLS

#define RTP_TYPE_HEALTH (rtp_health_get_type ())
G_DECLARE_FINAL_TYPE (RtpHealth, rtp_health, RTP, HEALTH, GObject)

typedef enum {
  RTP_CHECK_DATABASE,
  RTP_CHECK_ARCHIVER,
  RTP_CHECK_MQTT,
  RTP_CHECK_SMTP,
  RTP_CHECK_DIRECTORY,
  RTP_N_CHECKS,
} RtpCheck;

/* The names of the checks as /ready writes them. */
const char *rtp_check_name (RtpCheck check);

/* Returns: (transfer full) */
RtpHealth *rtp_health_new (RtpConfig **config_source, RtpDatabase *db, RtpArchiverClient *archiver,
                           RtpMqttPublisher *mqtt, RtpDirectory *directory);

/* The state of every dependency: "ok", "unconfigured" or "error: <reason>" — a reason that names no
 * host, URL or secret. A probe older than 5 s is repeated; callers meanwhile share the one running. */
void rtp_health_check_async (RtpHealth *self, GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data);
/* Returns: (transfer full) (array length=RTP_N_CHECKS): the states, in RtpCheck order */
GStrv rtp_health_check_finish (RtpHealth *self, GAsyncResult *result, GError **error);

/* How many probes of @check ran (tests: the rate limit). */
guint rtp_health_get_probe_count (RtpHealth *self, RtpCheck check);

G_END_DECLS
