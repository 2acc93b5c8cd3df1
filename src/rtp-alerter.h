/* rtp-alerter.h: alert episodes of subscribed PVs, their reminders and the mail queue */
#pragma once

#include <gio/gio.h>

#include "rtp-database.h"
#include "rtp-live-values.h"
#include "rtp-mailer.h"
#include "rtp-subscriptions.h"

G_BEGIN_DECLS

typedef struct {
  char *recipient;
  char *subject;
  gboolean sent;
  gint64 attempts;
  char *last_error; /* (nullable) */
} RtpAlertMail;

typedef struct {
  char *id;
  char *user_id;
  char *pv_string;
  gint64 opened_us;
  gint64 closed_us;   /* 0 while open */
  char *breach_value; /* the value that opened it, as text */
  gint64 threshold_min;
  gint64 threshold_max;
  GPtrArray *mails; /* (element-type RtpAlertMail) oldest first */
} RtpAlertEpisode;

void rtp_alert_episode_free (RtpAlertEpisode *episode);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpAlertEpisode, rtp_alert_episode_free)

#define RTP_TYPE_ALERTER (rtp_alerter_get_type ())
G_DECLARE_FINAL_TYPE (RtpAlerter, rtp_alerter, RTP, ALERTER, GObject)

typedef struct {
  gint64 renotify_s; /* 0: never remind */
  double hysteresis;
  GTimeZone *time_zone;       /* for times in mails (the history service's ARCHIVER_TIMEZONE) */
  const char *threshold_unit; /* THRESHOLD_UNIT */
  RtpMailSettings mail;       /* mail.url or mail.from NULL: alerting off */
} RtpAlertSettings;

/* Judges every value @live emits for a subscribed PV, on the one instance that leads: a value
 * outside [min, max] opens an alert episode and mails the subscriber once; it closes at
 * min + h <= value <= max - h; reminders every renotify_s while open. Emits
 * "threshold-breached" (pv, value, min, max) on each opening. With no mail settings it only
 * says so in the log.
 * Returns: (transfer full) */
RtpAlerter *rtp_alerter_new (RtpDatabase *db, RtpLiveValues *live, RtpSubscriptions *subscriptions,
                             const RtpAlertSettings *settings);
gboolean rtp_alerter_is_on (RtpAlerter *self);
/* Judges one value (from any source); exposed for tests. */
void rtp_alerter_handle_value (RtpAlerter *self, const char *pv_string, double value);
/* Episodes with their mails, newest first (at most 1000); all of them when @user_id is NULL.
 * Returns: (transfer full) (element-type RtpAlertEpisode) (nullable): NULL on a database error */
GPtrArray *rtp_alerter_list_episodes (RtpAlerter *self, const char *user_id, GError **error);

G_END_DECLS
