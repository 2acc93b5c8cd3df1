/* rtp-notify.h: systemd's notification protocol (sd_notify), for Type=notify and the watchdog */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Sends @state ("READY=1", "STOPPING=1", "STATUS=…", "WATCHDOG=1", newline-separated) to
 * $NOTIFY_SOCKET; nothing when it is unset. FALSE when the socket could not be written. */
gboolean rtp_notify (const char *state);

/* The watchdog interval systemd asked for (WATCHDOG_USEC, for this process), or 0. */
guint64 rtp_notify_watchdog_usec (void);

G_END_DECLS
