/* test-value-gate.c: which MQTT values the reader's thread settles itself, and that hostile topics
 * and payloads are left to the main loop */
#include "rtp-value-gate.h"

#include <math.h>
#include <string.h>

static gboolean
take (RtpValueGate *gate, const char *topic, const char *payload)
{
  return rtp_value_gate_take (gate, topic, strlen (topic), payload, strlen (payload));
}

/* Nothing is settled before the main loop said the PV is quiet; then numbers inside the range
 * are, and nothing else. */
static void
test_quiet_range (void)
{
  g_autoptr (RtpValueGate) gate = rtp_value_gate_new ("lab/values");
  gint64 t = 0;
  double v = 0;

  g_assert_false (take (gate, "lab/values/E1/A", "5"));
  g_assert_false (rtp_value_gate_get_latest (gate, "E1:A", &t, &v));
  rtp_value_gate_set_quiet (gate, "E1:A", 0, 100);
  g_assert_cmpuint (rtp_value_gate_count_quiet (gate), ==, 1);
  g_assert_true (take (gate, "lab/values/E1/A", "5"));
  g_assert_true (
    take (gate, "lab/values/E1/A", " 100\n")); /* the edge is inside; white space as the main loop reads it */
  g_assert_true (take (gate, "lab/values/E1/A", "0"));
  g_assert_true (take (gate, "lab/values/E1/A", "-0"));
  g_assert_true (take (gate, "lab/values/E1/A", "7.25"));
  g_assert_true (rtp_value_gate_get_latest (gate, "E1:A", &t, &v));
  g_assert_cmpfloat (v, ==, 7.25);
  g_assert_cmpint (t, >, 0);
  g_assert_false (take (gate, "lab/values/E1/A", "100.5"));
  g_assert_false (take (gate, "lab/values/E1/A", "-1"));
  g_assert_false (take (gate, "lab/values/E1/B", "5")); /* another PV */
  g_assert_cmpfloat (v, ==, 7.25);
  /* an empty range is not taken */
  rtp_value_gate_set_quiet (gate, "E1:C", 1, 0);
  g_assert_false (take (gate, "lab/values/E1/C", "0.5"));
  /* no bands at all: every number */
  rtp_value_gate_set_quiet (gate, "E1:D", -INFINITY, INFINITY);
  g_assert_true (take (gate, "lab/values/E1/D", "-1e300"));
}

/* A range with a deadline (a PV with an open alarm): settled until then, and the first value after
 * it goes to the main loop; a range set again counts from its own deadline. */
static void
test_deadline (void)
{
  g_autoptr (RtpValueGate) gate = rtp_value_gate_new ("lab/values");
  gint64 t = 0;
  double v = 0;

  rtp_value_gate_set_quiet_until (gate, "E1:A", 100.5, INFINITY, g_get_monotonic_time () + 60 * G_USEC_PER_SEC);
  g_assert_true (take (gate, "lab/values/E1/A", "150"));
  g_assert_false (take (gate, "lab/values/E1/A", "50")); /* outside: the main loop decides */
  rtp_value_gate_set_quiet_until (gate, "E1:A", 100.5, INFINITY, g_get_monotonic_time () + 50 * 1000);
  g_assert_true (take (gate, "lab/values/E1/A", "160"));
  g_assert_cmpuint (rtp_value_gate_count_quiet (gate), ==, 1);
  g_usleep (60 * 1000);
  g_assert_false (take (gate, "lab/values/E1/A", "170")); /* past the deadline */
  g_assert_cmpuint (rtp_value_gate_count_quiet (gate), ==, 0);
  g_assert_true (rtp_value_gate_get_latest (gate, "E1:A", &t, &v));
  g_assert_cmpfloat (v, ==, 160); /* what went to the main loop is not the gate's */
  /* a deadline already past: nothing is settled */
  rtp_value_gate_set_quiet_until (gate, "E1:A", 100.5, INFINITY, g_get_monotonic_time () - 1);
  g_assert_false (take (gate, "lab/values/E1/A", "150"));
  /* without one (set_quiet): no deadline */
  rtp_value_gate_set_quiet (gate, "E1:A", 0, 100);
  g_assert_true (take (gate, "lab/values/E1/A", "50"));
}

/* A change of the database, an alarm of the PV or a viewer: every value goes to the main loop
 * again until it says otherwise. */
static void
test_opened (void)
{
  g_autoptr (RtpValueGate) gate = rtp_value_gate_new ("lab/values");

  rtp_value_gate_set_quiet (gate, "E1:A", 0, 100);
  rtp_value_gate_set_quiet (gate, "E1:B", 0, 100);
  rtp_value_gate_forward_all (gate);
  g_assert_false (take (gate, "lab/values/E1/A", "5"));
  g_assert_false (take (gate, "lab/values/E1/B", "5"));
  g_assert_cmpuint (rtp_value_gate_count_quiet (gate), ==, 0);

  rtp_value_gate_set_quiet (gate, "E1:A", 0, 100);
  rtp_value_gate_set_quiet (gate, "E1:B", 0, 100);
  rtp_value_gate_forward (gate, "E1:A");
  g_assert_false (take (gate, "lab/values/E1/A", "5"));
  g_assert_true (take (gate, "lab/values/E1/B", "5"));

  rtp_value_gate_set_watched (gate, "E1:B", TRUE);
  g_assert_false (take (gate, "lab/values/E1/B", "5"));
  rtp_value_gate_set_quiet (gate, "E1:B", 0, 100); /* refused while watched */
  g_assert_false (take (gate, "lab/values/E1/B", "5"));
  rtp_value_gate_set_watched (gate, "E1:B", FALSE);
  g_assert_false (take (gate, "lab/values/E1/B", "5"));
  rtp_value_gate_set_quiet (gate, "E1:B", 0, 100);
  g_assert_true (take (gate, "lab/values/E1/B", "5"));
}

/* Silence: a PV whose values were settled is not silent; one that was not is claimed, and its
 * values reach the main loop from then on. */
static void
test_silence (void)
{
  g_autoptr (RtpValueGate) gate = rtp_value_gate_new ("lab/values");
  gint64 before = g_get_monotonic_time ();

  g_assert_true (rtp_value_gate_claim_silence (gate, "E1:Never", before)); /* no record */
  rtp_value_gate_set_quiet (gate, "E1:A", 0, 100);
  g_assert_true (rtp_value_gate_claim_silence (gate, "E1:A", before)); /* nothing taken yet */
  g_assert_false (take (gate, "lab/values/E1/A", "5"));                /* claimed: forwarded */
  rtp_value_gate_set_quiet (gate, "E1:A", 0, 100);
  g_assert_true (take (gate, "lab/values/E1/A", "5"));
  g_assert_false (rtp_value_gate_claim_silence (gate, "E1:A", before)); /* heard since */
  g_assert_true (take (gate, "lab/values/E1/A", "6"));                  /* and still quiet */
  g_assert_true (rtp_value_gate_claim_silence (gate, "E1:A", g_get_monotonic_time () + 1));
  g_assert_false (take (gate, "lab/values/E1/A", "6"));
}

/* Hostile topics and payloads: never settled, never read past their length. */
static void
test_hostile (void)
{
  g_autoptr (RtpValueGate) gate = rtp_value_gate_new ("lab/values");
  g_autofree char *long_pv = g_strnfill (RTP_VALUE_GATE_MAX_PV + 1, 'x');
  g_autofree char *long_topic = g_strconcat ("lab/values/", long_pv, NULL);
  g_autofree char *long_payload = g_strnfill (RTP_VALUE_GATE_MAX_PAYLOAD + 1, '1');
  const char *padded = " \t5\r\n";
  static const char *const bad[] = { "",        " ",    "nan", "NaN",      "inf",   "-inf",  "1e999", "-1e999",
                                     "5 volts", "0x",   "5,5", "++5",      "5e",    "\"5\"", "[5]",   "{}",
                                     "true",    "null", "5;",  "\xff\xfe", "5\x80", "5\v" };

  rtp_value_gate_set_quiet (gate, "E1:A", -INFINITY, INFINITY);
  g_assert_true (take (gate, "lab/values/E1/A", padded));
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    g_assert_false (take (gate, "lab/values/E1/A", bad[i]));
  g_assert_false (take (gate, "lab/values/E1/A", long_payload));
  g_assert_false (rtp_value_gate_take (gate, "lab/values/E1/A", 15, NULL, 0));
  /* NUL inside the payload or the topic */
  g_assert_false (rtp_value_gate_take (gate, "lab/values/E1/A", 15,
                                       "5\0"
                                       "9",
                                       3));
  g_assert_false (rtp_value_gate_take (gate, "lab/values/E1/A\0x", 17, "5", 1));
  /* the topic only counts up to its length: "lab/values/E1/AB" cut after A is E1:A */
  g_assert_true (rtp_value_gate_take (gate, "lab/values/E1/AB", 15, "5", 1));
  /* other prefixes, the prefix alone, a PV too long */
  g_assert_false (take (gate, "lab/valuesX/E1/A", "5"));
  g_assert_false (take (gate, "lab/value", "5"));
  g_assert_false (take (gate, "lab/values", "5"));
  g_assert_false (take (gate, "lab/values/", "5"));
  g_assert_false (take (gate, "", "5"));
  rtp_value_gate_set_quiet (gate, long_pv, 0, 1); /* too long to be kept */
  g_assert_false (take (gate, long_topic, "0.5"));
}

/* The reader's thread takes while the main thread changes the table: consistent answers, no
 * crash (run under ASan in CI). */
typedef struct {
  RtpValueGate *gate;
  gint stop;
  gint taken;
} Reader;

static gpointer
reader_thread (gpointer data)
{
  Reader *r = data;
  guint n = 0;

  while (!g_atomic_int_get (&r->stop) && n < 10000000)
    {
      char topic[32];
      g_snprintf (topic, sizeof topic, "lab/values/E/%u", n % 64);
      if (take (r->gate, topic, "50"))
        g_atomic_int_inc (&r->taken);
      n++;
    }
  return NULL;
}

static void
test_threads (void)
{
  Reader r = { .gate = rtp_value_gate_new ("lab/values") };
  GThread *thread = g_thread_new ("reader", reader_thread, &r);

  for (guint round = 0; round < 2000; round++)
    {
      char pv[16];
      g_snprintf (pv, sizeof pv, "E:%u", round % 64);
      rtp_value_gate_set_quiet (r.gate, pv, 0, 100);
      if (round % 7 == 0)
        rtp_value_gate_forward (r.gate, pv);
      if (round % 13 == 0)
        rtp_value_gate_set_watched (r.gate, pv, round % 26 == 0);
      if (round % 101 == 0)
        rtp_value_gate_forward_all (r.gate);
      rtp_value_gate_claim_silence (r.gate, pv, 0);
    }
  /* then all quiet: the reader settles values (it may not have run at all yet) */
  for (guint i = 0; i < 64; i++)
    {
      char pv[16];
      g_snprintf (pv, sizeof pv, "E:%u", i);
      rtp_value_gate_set_watched (r.gate, pv, FALSE);
      rtp_value_gate_set_quiet (r.gate, pv, 0, 100);
    }
  for (guint i = 0; i < 5000 && g_atomic_int_get (&r.taken) == 0; i++)
    g_usleep (1000);
  g_atomic_int_set (&r.stop, 1);
  g_thread_join (thread);
  g_assert_cmpint (r.taken, >, 0);
  g_assert_cmpuint (rtp_value_gate_count_quiet (r.gate), ==, 64);
  rtp_value_gate_unref (r.gate);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/value-gate/quiet-range", test_quiet_range);
  g_test_add_func ("/value-gate/deadline", test_deadline);
  g_test_add_func ("/value-gate/opened", test_opened);
  g_test_add_func ("/value-gate/silence", test_silence);
  g_test_add_func ("/value-gate/hostile", test_hostile);
  g_test_add_func ("/value-gate/threads", test_threads);
  return g_test_run ();
}
