/* rtp-application.h: the GApplication that owns every service */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define RTP_TYPE_APPLICATION (rtp_application_get_type ())
G_DECLARE_FINAL_TYPE (RtpApplication, rtp_application, RTP, APPLICATION, GApplication)

/* Returns: (transfer full) */
RtpApplication *rtp_application_new (void);
int rtp_application_get_exit_status (RtpApplication *self);

G_END_DECLS
