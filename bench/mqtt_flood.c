/* mqtt_flood.c: MQTT values for bench/alarm_bench.py, from C so that the publisher takes little of
 * the machine's CPU (two Python publishers took about a core at 50 000 values/s).
 *
 *   mqtt_flood PORT PREFIX FIRST COUNT RATE SECONDS
 *
 * publishes to PREFIX/Bench/P<i> (i from FIRST, COUNT PVs) RATE values per PV per second (0: as fast
 * as it can, SECONDS rounds) for SECONDS seconds, QoS 0, values 40..59 (in every band of the bench);
 * prints the number of values sent. */
#include <MQTTAsync.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int
main (int argc, char **argv)
{
  MQTTAsync client;
  MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
  g_autofree char *url = NULL;
  g_autofree char *id = g_strdup_printf ("mqtt-flood-%d", (int) getpid ());
  guint first, count;
  double rate, seconds;
  gint64 start, end;
  guint64 sent = 0;

  if (argc != 7)
    {
      fprintf (stderr, "usage: %s PORT PREFIX FIRST COUNT RATE SECONDS\n", argv[0]);
      return 2;
    }
  url = g_strdup_printf ("tcp://127.0.0.1:%s", argv[1]);
  first = (guint) atoi (argv[3]);
  count = (guint) atoi (argv[4]);
  rate = g_ascii_strtod (argv[5], NULL);
  seconds = g_ascii_strtod (argv[6], NULL);
  if (MQTTAsync_create (&client, url, id, MQTTCLIENT_PERSISTENCE_NONE, NULL) != MQTTASYNC_SUCCESS)
    return 1;
  opts.keepAliveInterval = 30;
  opts.cleansession = 1;
  if (MQTTAsync_connect (client, &opts) != MQTTASYNC_SUCCESS)
    return 1;
  for (int i = 0; i < 100 && !MQTTAsync_isConnected (client); i++)
    g_usleep (50000);
  if (!MQTTAsync_isConnected (client))
    return 1;
  start = g_get_monotonic_time ();
  end = start + (gint64) (seconds * G_USEC_PER_SEC);
  for (guint64 round = 0; rate > 0 ? g_get_monotonic_time () < end : round < (guint64) seconds; round++)
    {
      for (guint i = 0; i < count; i++)
        {
          char topic[256];
          char value[8];
          int len = g_snprintf (value, sizeof value, "%u", 40 + (guint) ((round + i) % 20));
          MQTTAsync_message msg = MQTTAsync_message_initializer;

          g_snprintf (topic, sizeof topic, "%s/Bench/P%u", argv[2], first + i);
          msg.payload = value;
          msg.payloadlen = len;
          msg.qos = 0;
          while (MQTTAsync_sendMessage (client, topic, &msg, NULL) != MQTTASYNC_SUCCESS)
            g_usleep (1000); /* paho's queue is full: let it drain */
          sent++;
        }
      if (rate > 0)
        {
          gint64 next = start + (gint64) ((double) (round + 1) / rate * G_USEC_PER_SEC);
          gint64 now = g_get_monotonic_time ();
          if (next > now)
            g_usleep ((gulong) (next - now));
        }
    }
  g_usleep (200000); /* what paho still holds goes out */
  MQTTAsync_disconnect (client, NULL);
  g_usleep (100000);
  MQTTAsync_destroy (&client);
  printf ("%" G_GUINT64_FORMAT "\n", sent);
  return 0;
}
