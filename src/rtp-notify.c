/* rtp-notify.c: systemd's notification protocol without libsystemd
 *
 * The protocol is one datagram of "KEY=VALUE" lines to the AF_UNIX socket named by $NOTIFY_SOCKET
 * (a path, or '@' for the abstract namespace) — small enough to speak directly, so the service has
 * no dependency outside its stack and runs the same without systemd. */
#define G_LOG_DOMAIN "RtpNotify"

#include "rtp-notify.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

gboolean
rtp_notify (const char *state)
{
  const char *path = g_getenv ("NOTIFY_SOCKET");
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  gsize len;
  socklen_t addr_len;
  int fd;
  gssize sent;

  if (path == NULL || path[0] == '\0')
    return TRUE;
  len = strlen (path);
  if ((path[0] != '/' && path[0] != '@') || len >= sizeof addr.sun_path)
    {
      g_warning ("NOTIFY_SOCKET is not a socket path: systemd is not told how the service is");
      return FALSE;
    }
  memcpy (addr.sun_path, path, len);
  if (path[0] == '@')
    addr.sun_path[0] = '\0'; /* the abstract namespace */
  addr_len = (socklen_t) (offsetof (struct sockaddr_un, sun_path) + len);
  fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return FALSE;
  sent = sendto (fd, state, strlen (state), MSG_NOSIGNAL, (struct sockaddr *) &addr, addr_len);
  if (sent < 0)
    g_debug ("cannot notify systemd: %s", g_strerror (errno));
  close (fd);
  return sent >= 0;
}

guint64
rtp_notify_watchdog_usec (void)
{
  const char *usec = g_getenv ("WATCHDOG_USEC");
  const char *pid = g_getenv ("WATCHDOG_PID");
  guint64 value = 0;

  if (usec == NULL || !g_ascii_string_to_unsigned (usec, 10, 1, G_MAXUINT64, &value, NULL))
    return 0;
  if (pid != NULL && g_ascii_strtoull (pid, NULL, 10) != (guint64) getpid ())
    return 0; /* meant for another process */
  return value;
}
