/* rtp-value-gate.c: MQTT values that need nothing of the main loop, settled on the reader's thread
 *
 * At thousands of PVs × 10 values/s nearly every value is a number inside the bands of a PV that
 * has no alarm: the alerter decides "nothing to do", and the only lasting effect is the PV's
 * latest value and the time it was heard. Handing each such value to the main loop cost the
 * requests' latency (each one a queued event, then lookups on the main thread). So the main loop,
 * after judging a value as quiet, tells the gate the range of values that would be judged the same
 * way ([lo, hi], the intersection of the PV's bands); from then on paho's reader thread keeps a
 * number inside that range here and hands nothing on. A PV with an open alarm gets such a range too
 * — the values that leave its alarm as it was — but only until a deadline (a second at most, or when
 * a reminder falls due or a shelve runs out): then a value goes to the main loop, which writes it
 * as the alarm's latest and decides what is due. Everything else goes to the main loop as
 * before: a value outside the range, a PV with viewers (they get every value), a PV that is not
 * quiet (an alarm, a delay running, silent), text that is not a plain finite number, and every
 * value after a change of a band (the generation moves: a new subscription or band is judged at
 * the next value; see rtp-live-values.c).
 *
 * One mutex guards the table; the reader holds it for one hash lookup. No GObject is touched on
 * the reader's thread. */
#define G_LOG_DOMAIN "RtpValueGate"

#include "rtp-value-gate.h"

#include <math.h>
#include <string.h>

typedef struct {
  double lo, hi;      /* values judged quiet */
  guint64 generation; /* @lo/@hi hold while this is the gate's generation */
  gint64 until_us;    /* … and until this (monotonic); G_MAXINT64: no deadline */
  gboolean quiet;
  gboolean watched; /* viewers get every value: never quiet */
  gint64 heard_us;  /* monotonic, when a value was last taken here; 0: never (then no @latest) */
  gint64 latest_us; /* real time */
  double latest;
} Entry;

struct _RtpValueGate {
  gatomicrefcount ref_count;
  GMutex lock;
  char *prefix; /* (owned) topic prefix, without the trailing / */
  gsize prefix_len;
  guint64 generation;  /* under @lock */
  GHashTable *entries; /* (owned) pv → Entry, under @lock */
};

RtpValueGate *
rtp_value_gate_new (const char *topic_prefix)
{
  RtpValueGate *gate;

  g_return_val_if_fail (topic_prefix != NULL, NULL);
  gate = g_new0 (RtpValueGate, 1);
  g_atomic_ref_count_init (&gate->ref_count);
  g_mutex_init (&gate->lock);
  gate->prefix = g_strdup (topic_prefix);
  gate->prefix_len = strlen (topic_prefix);
  gate->generation = 1;
  gate->entries = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return gate;
}

RtpValueGate *
rtp_value_gate_ref (RtpValueGate *gate)
{
  g_atomic_ref_count_inc (&gate->ref_count);
  return gate;
}

void
rtp_value_gate_unref (RtpValueGate *gate)
{
  if (!g_atomic_ref_count_dec (&gate->ref_count))
    return;
  g_hash_table_unref (gate->entries);
  g_mutex_clear (&gate->lock);
  g_free (gate->prefix);
  g_free (gate);
}

/* The number a payload is, as the main loop reads it (surrounding white space as g_strstrip() sees
 * it: no vertical tab), or FALSE for anything else (then the main loop decides, and says why). */
static gboolean
parse_number (const char *payload, gsize len, double *value)
{
  char buf[RTP_VALUE_GATE_MAX_PAYLOAD + 1];
  char *end = NULL;
  gsize start = 0;

  while (len > 0 && g_ascii_isspace (payload[len - 1]))
    len--;
  while (start < len && g_ascii_isspace (payload[start]))
    start++;
  if (start == len || len - start > RTP_VALUE_GATE_MAX_PAYLOAD || memchr (payload + start, '\0', len - start) != NULL)
    return FALSE;
  memcpy (buf, payload + start, len - start);
  buf[len - start] = '\0';
  *value = g_ascii_strtod (buf, &end);
  return end == buf + (len - start) && isfinite (*value);
}

/* Under @lock: whether values of @e's PV inside [lo, hi] are settled at @now (monotonic). */
static gboolean
entry_is_quiet (const RtpValueGate *gate, const Entry *e, gint64 now)
{
  return e->quiet && !e->watched && e->generation == gate->generation && now < e->until_us;
}

gboolean
rtp_value_gate_take (RtpValueGate *gate, const char *topic, gsize topic_len, const void *payload, gsize len)
{
  char pv[RTP_VALUE_GATE_MAX_PV + 1];
  gsize pv_len;
  double value;
  Entry *e;
  gboolean taken = FALSE;
  gint64 now;

  if (topic_len <= gate->prefix_len + 1 || memcmp (topic, gate->prefix, gate->prefix_len) != 0 ||
      topic[gate->prefix_len] != '/')
    return FALSE;
  pv_len = topic_len - gate->prefix_len - 1;
  if (pv_len > RTP_VALUE_GATE_MAX_PV || memchr (topic + gate->prefix_len + 1, '\0', pv_len) != NULL)
    return FALSE;
  for (gsize i = 0; i < pv_len; i++)
    {
      char c = topic[gate->prefix_len + 1 + i];
      pv[i] = c == '/' ? ':' : c;
    }
  pv[pv_len] = '\0';
  if (payload == NULL || !parse_number (payload, len, &value))
    return FALSE;

  now = g_get_monotonic_time ();
  g_mutex_lock (&gate->lock);
  e = g_hash_table_lookup (gate->entries, pv);
  if (e != NULL && entry_is_quiet (gate, e, now) && value >= e->lo && value <= e->hi)
    {
      e->heard_us = now;
      e->latest_us = g_get_real_time ();
      e->latest = value;
      taken = TRUE;
    }
  g_mutex_unlock (&gate->lock);
  return taken;
}

/* Under @lock: @pv's entry, made when @create and there is room. */
static Entry *
entry_get (RtpValueGate *gate, const char *pv, gboolean create)
{
  Entry *e = g_hash_table_lookup (gate->entries, pv);

  if (e != NULL || !create || g_hash_table_size (gate->entries) >= RTP_VALUE_GATE_MAX_ENTRIES)
    return e;
  e = g_new0 (Entry, 1);
  g_hash_table_insert (gate->entries, g_strdup (pv), e);
  return e;
}

/* Values of @pv in [@lo, @hi] need nothing of the main loop until the next change of a band
 * (rtp_value_gate_forward_all), of @pv (rtp_value_gate_forward) or a viewer. */
void
rtp_value_gate_set_quiet (RtpValueGate *gate, const char *pv, double lo, double hi)
{
  rtp_value_gate_set_quiet_until (gate, pv, lo, hi, G_MAXINT64);
}

/* The same, and only until @until_us (monotonic): the first value after it goes to the main loop. */
void
rtp_value_gate_set_quiet_until (RtpValueGate *gate, const char *pv, double lo, double hi, gint64 until_us)
{
  Entry *e;

  g_return_if_fail (pv != NULL);
  if (strlen (pv) > RTP_VALUE_GATE_MAX_PV || !(lo <= hi))
    return;
  g_mutex_lock (&gate->lock);
  e = entry_get (gate, pv, TRUE);
  if (e != NULL && !e->watched)
    {
      e->lo = lo;
      e->hi = hi;
      e->quiet = TRUE;
      e->generation = gate->generation;
      e->until_us = until_us;
    }
  g_mutex_unlock (&gate->lock);
}

/* Every value of @pv goes to the main loop again (until it is quiet once more). */
void
rtp_value_gate_forward (RtpValueGate *gate, const char *pv)
{
  Entry *e;

  g_mutex_lock (&gate->lock);
  if ((e = entry_get (gate, pv, FALSE)) != NULL)
    e->quiet = FALSE;
  g_mutex_unlock (&gate->lock);
}

void
rtp_value_gate_set_watched (RtpValueGate *gate, const char *pv, gboolean watched)
{
  Entry *e;

  g_mutex_lock (&gate->lock);
  if ((e = entry_get (gate, pv, watched)) != NULL)
    {
      e->watched = watched;
      e->quiet = FALSE;
    }
  g_mutex_unlock (&gate->lock);
}

/* A band may have changed: what was judged quiet may not be any more. */
void
rtp_value_gate_forward_all (RtpValueGate *gate)
{
  g_mutex_lock (&gate->lock);
  gate->generation++;
  g_mutex_unlock (&gate->lock);
}

/**
 * rtp_value_gate_claim_silence:
 *
 * For a PV that the main loop has not heard of since @heard_before_us (monotonic): FALSE when the
 * gate took a value of it since then (it is not silent); otherwise TRUE, and from now on every value
 * of it goes to the main loop (which then learns that it is heard again). One step under the lock,
 * so that no value can slip through between the two.
 */
gboolean
rtp_value_gate_claim_silence (RtpValueGate *gate, const char *pv, gint64 heard_before_us)
{
  Entry *e;
  gboolean silent = TRUE;

  g_mutex_lock (&gate->lock);
  if ((e = entry_get (gate, pv, FALSE)) != NULL)
    {
      if (e->heard_us != 0 && e->heard_us >= heard_before_us)
        silent = FALSE;
      else
        e->quiet = FALSE;
    }
  g_mutex_unlock (&gate->lock);
  return silent;
}

/* The latest value the gate took for @pv (real time), if any. */
gboolean
rtp_value_gate_get_latest (RtpValueGate *gate, const char *pv, gint64 *time_us, double *value)
{
  Entry *e;
  gboolean have = FALSE;

  g_mutex_lock (&gate->lock);
  if ((e = entry_get (gate, pv, FALSE)) != NULL && e->heard_us != 0)
    {
      *time_us = e->latest_us;
      *value = e->latest;
      have = TRUE;
    }
  g_mutex_unlock (&gate->lock);
  return have;
}

/* How many PVs are quiet now (for the log and the tests). */
guint
rtp_value_gate_count_quiet (RtpValueGate *gate)
{
  GHashTableIter iter;
  gpointer value;
  guint n = 0;
  gint64 now = g_get_monotonic_time ();

  g_mutex_lock (&gate->lock);
  g_hash_table_iter_init (&iter, gate->entries);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      n += entry_is_quiet (gate, value, now);
    }
  g_mutex_unlock (&gate->lock);
  return n;
}
