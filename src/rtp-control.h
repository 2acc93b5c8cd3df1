/* rtp-control.h: the org.realtimeplot.Server1 D-Bus interface */
#pragma once

#include <gio/gio.h>

#include "rtp-services.h"

G_BEGIN_DECLS

#define RTP_TYPE_CONTROL (rtp_control_get_type ())
G_DECLARE_FINAL_TYPE (RtpControl, rtp_control, RTP, CONTROL, GObject)

/* Re-reads the configuration; returns the keys whose change needs a restart, or NULL with @error. */
typedef GStrv (*RtpReloadFunc) (gpointer user_data, GError **error);

/* Returns: (transfer full) */
RtpControl *rtp_control_new (RtpServices *services, const char *listen_address, RtpReloadFunc reload,
                             gpointer reload_data);
/* bus: "session", "system" or "none" */
gboolean rtp_control_start (RtpControl *self, const char *bus, GError **error);
void rtp_control_stop (RtpControl *self);
void rtp_control_emit_threshold_breached (RtpControl *self, const char *pv, double value, gint64 min, gint64 max);

/* The one table from RtpError to D-Bus error names. */

G_END_DECLS
