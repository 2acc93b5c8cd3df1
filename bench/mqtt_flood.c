/* mqtt_flood.c: MQTT values for bench/alarm_bench.py, from a publisher that is never the bottleneck.
 *
 *   mqtt_flood PORT PREFIX FIRST COUNT RATE SECONDS [BASE]
 *   mqtt_flood PORT FILTER sink SECONDS
 *
 * publishes to PREFIX/Bench/P<i> (i from FIRST, COUNT PVs) RATE values per PV per second (0: as fast
 * as it can, SECONDS rounds) for SECONDS seconds, QoS 0, values BASE..BASE+19 (default 40..59: in
 * every band of the bench);
 * prints the number of values sent. As a sink it subscribes to FILTER (QoS 0) and reads whatever
 * comes for SECONDS seconds, in large reads, and prints the bytes read: a subscriber that costs the
 * broker what the server's subscription costs it, and itself almost nothing.
 *
 * It speaks MQTT 3.1.1 itself over one blocking socket (CONNECT, PUBLISH at QoS 0, DISCONNECT) and
 * writes the values due every 2 ms in one write(): the broker sees them spread evenly over each
 * second, as from many IOCs. A paho client here took about 40 % of a core per 25 000 values/s
 * (its queue, its threads, a send per message) — CPU the server under test did not get. */
#include <glib.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TICK_US 2000

static void
put_length (GByteArray *out, gsize n)
{
  do
    {
      guint8 b = n % 128;
      n /= 128;
      if (n > 0)
        b |= 0x80;
      g_byte_array_append (out, &b, 1);
    }
  while (n > 0);
}

static void
put_string (GByteArray *out, const char *s, gsize len)
{
  guint8 be[2] = { (guint8) (len >> 8), (guint8) (len & 0xff) };
  g_byte_array_append (out, be, 2);
  g_byte_array_append (out, (const guint8 *) s, len);
}

static gboolean
write_all (int fd, const guint8 *data, gsize len)
{
  while (len > 0)
    {
      ssize_t n = write (fd, data, len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return FALSE;
      data += n;
      len -= (gsize) n;
    }
  return TRUE;
}

/* SUBSCRIBE to @filter, then read and drop for @seconds. */
static int
sink (int fd, const char *filter, double seconds)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GByteArray) body = g_byte_array_new ();
  gint64 end = g_get_monotonic_time () + (gint64) (seconds * G_USEC_PER_SEC);
  guint64 total = 0;
  static char buf[1 << 16];

  g_byte_array_append (body, (const guint8 *) "\x00\x01", 2); /* packet id 1 */
  put_string (body, filter, strlen (filter));
  g_byte_array_append (body, (const guint8 *) "\x00", 1); /* QoS 0 */
  g_byte_array_append (out, (const guint8 *) "\x82", 1);
  put_length (out, body->len);
  g_byte_array_append (out, body->data, body->len);
  if (!write_all (fd, out->data, out->len))
    return 1;
  while (g_get_monotonic_time () < end)
    {
      struct timeval tv = { 0, 100000 };
      ssize_t n;

      setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      n = read (fd, buf, sizeof buf);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        break;
      if (n > 0)
        total += (guint64) n;
    }
  write_all (fd, (const guint8 *) "\xe0\x00", 2);
  close (fd);
  printf ("%" G_GUINT64_FORMAT "\n", total);
  return 0;
}

int
main (int argc, char **argv)
{
  struct sockaddr_in addr = { .sin_family = AF_INET };
  g_autofree char *id = g_strdup_printf ("mqtt-flood-%d", (int) getpid ());
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GByteArray) body = g_byte_array_new ();
  guint8 connack[4];
  guint first, count, base = 40;
  double rate, seconds;
  gint64 start, end;
  guint64 sent = 0;
  int fd, one = 1;

  if (argc != 7 && argc != 8 && !(argc == 5 && strcmp (argv[3], "sink") == 0))
    {
      fprintf (stderr, "usage: %s PORT PREFIX FIRST COUNT RATE SECONDS [BASE]\n       %s PORT FILTER sink SECONDS\n",
               argv[0], argv[0]);
      return 2;
    }
  first = argc >= 7 ? (guint) atoi (argv[3]) : 0;
  count = argc >= 7 ? (guint) atoi (argv[4]) : 0;
  rate = argc >= 7 ? g_ascii_strtod (argv[5], NULL) : 0;
  seconds = g_ascii_strtod (argv[argc == 8 ? 6 : argc - 1], NULL);
  if (argc == 8)
    base = (guint) atoi (argv[7]);
  addr.sin_port = htons ((guint16) atoi (argv[1]));
  addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  fd = socket (AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect (fd, (struct sockaddr *) &addr, sizeof addr) != 0)
    {
      perror ("connect");
      return 1;
    }
  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  /* CONNECT: MQTT 3.1.1, clean session, no keep-alive */
  put_string (body, "MQTT", 4);
  g_byte_array_append (body, (const guint8 *) "\x04\x02\x00\x00", 4);
  put_string (body, id, strlen (id));
  g_byte_array_append (out, (const guint8 *) "\x10", 1);
  put_length (out, body->len);
  g_byte_array_append (out, body->data, body->len);
  if (!write_all (fd, out->data, out->len) || recv (fd, connack, sizeof connack, MSG_WAITALL) != 4 ||
      connack[0] != 0x20 || connack[3] != 0)
    {
      fprintf (stderr, "the broker refused the connection\n");
      return 1;
    }
  if (argc == 5)
    return sink (fd, argv[2], seconds);

  start = g_get_monotonic_time ();
  end = start + (gint64) (seconds * G_USEC_PER_SEC);
  while (rate > 0 ? g_get_monotonic_time () < end : sent < (guint64) seconds * count)
    {
      /* every value due by now, in one write */
      guint64 due = rate > 0 ? (guint64) ((double) (g_get_monotonic_time () - start) / G_USEC_PER_SEC * rate * count)
                             : sent + count;
      g_byte_array_set_size (out, 0);
      for (; sent < due; sent++)
        {
          char topic[256];
          char value[8];
          guint i = (guint) (sent % count);
          int tlen = g_snprintf (topic, sizeof topic, "%s/Bench/P%u", argv[2], first + i);
          int vlen = g_snprintf (value, sizeof value, "%u", base + (guint) ((sent / count + i) % 20));

          g_byte_array_append (out, (const guint8 *) "\x30", 1);
          put_length (out, 2 + (gsize) tlen + (gsize) vlen);
          put_string (out, topic, (gsize) tlen);
          g_byte_array_append (out, (const guint8 *) value, (guint) vlen);
        }
      if (out->len > 0 && !write_all (fd, out->data, out->len))
        {
          perror ("write");
          return 1;
        }
      if (rate > 0)
        g_usleep (TICK_US);
    }
  write_all (fd, (const guint8 *) "\xe0\x00", 2); /* DISCONNECT */
  close (fd);
  printf ("%" G_GUINT64_FORMAT "\n", sent);
  return 0;
}
