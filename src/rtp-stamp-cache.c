/* rtp-stamp-cache.c: values read from the database, kept between requests while nothing changed
 *
 * A read costs a libgda statement (about a third of a small request); what was read is kept
 * under the database's change stamp (rtp_database_get_change_stamp), which moves with every
 * change of kept rows (users, assignments, experiments, PVs, subscriptions, alarm state) by any
 * connection — this instance, another instance, any other client — and is 0 when such changes
 * cannot be seen (then nothing is kept). Main thread only, as RtpDatabase. */
#define G_LOG_DOMAIN "RtpStampCache"

#include "rtp-stamp-cache.h"

/* past this many values the table starts again empty (rtp_stamp_cache_set_max changes it) */
#define MAX_KEPT 4096
/* On PostgreSQL a value is read again after this long even when no change was heard of: it bounds
 * what a notification connection that died without a word (a network cut, no FIN) could hide. On
 * SQLite the WAL index's header, which every commit of every connection changes, says when to read
 * the change counter: no age is needed, and none is applied (thousands of PVs re-read at once
 * stalled the main loop). */
#define MAX_AGE_US (G_GINT64_CONSTANT (5) * G_USEC_PER_SEC)

struct _RtpStampCache {
  RtpDatabase *db; /* (owned) */
  GBoxedCopyFunc copy;
  GDestroyNotify free_value;
  GHashTable *values; /* (owned) key → Value, read while the stamp was @stamp */
  guint64 stamp;
  guint max_kept;
  gboolean aged; /* values expire after MAX_AGE_US (PostgreSQL) */
};

typedef struct {
  RtpStampCache *kept; /* (unowned) for free_value */
  gpointer value;      /* (owned) */
  gint64 read_us;      /* monotonic time of the read */
} Value;

static void
value_free (gpointer data)
{
  Value *v = data;
  v->kept->free_value (v->value);
  g_free (v);
}

RtpStampCache *
rtp_stamp_cache_new (RtpDatabase *db, GBoxedCopyFunc copy, GDestroyNotify free_value)
{
  RtpStampCache *kept = g_new0 (RtpStampCache, 1);

  kept->db = g_object_ref (db);
  kept->copy = copy;
  kept->free_value = free_value;
  kept->values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, value_free);
  kept->max_kept = MAX_KEPT;
  kept->aged = rtp_database_get_kind (db) != RTP_DATABASE_SQLITE;
  return kept;
}

void
rtp_stamp_cache_free (RtpStampCache *kept)
{
  if (kept == NULL)
    return;
  g_hash_table_unref (kept->values);
  g_object_unref (kept->db);
  g_free (kept);
}

/* The value kept for @key while it may still be used; *stamp is the database's stamp now. A moved
 * stamp drops every value. */
static Value *
kept_value (RtpStampCache *kept, const char *key, guint64 *stamp)
{
  Value *v;

  *stamp = rtp_database_get_change_stamp (kept->db);
  if (*stamp == 0 || *stamp != kept->stamp)
    {
      g_hash_table_remove_all (kept->values);
      kept->stamp = *stamp;
      return NULL;
    }
  v = g_hash_table_lookup (kept->values, key);
  if (v == NULL || (kept->aged && g_get_monotonic_time () - v->read_us >= MAX_AGE_US))
    return NULL;
  return v;
}

/**
 * rtp_stamp_cache_lookup:
 * @stamp: (out): the change stamp now, for rtp_stamp_cache_store() after a read
 *
 * Returns: (transfer full) (nullable): a copy of the value kept for @key, or %NULL: read it
 */
gpointer
rtp_stamp_cache_lookup (RtpStampCache *kept, const char *key, guint64 *stamp)
{
  Value *v = kept_value (kept, key, stamp);

  return v != NULL ? kept->copy (v->value) : NULL;
}

/* Whether a value is kept for @key, without copying it. */
gboolean
rtp_stamp_cache_contains (RtpStampCache *kept, const char *key)
{
  guint64 stamp;

  return kept_value (kept, key, &stamp) != NULL;
}

/**
 * rtp_stamp_cache_store:
 * @stamp: what rtp_stamp_cache_lookup() gave before the read
 *
 * Keeps a copy of @value, read after rtp_stamp_cache_lookup(), unless anything changed meanwhile.
 */
void
rtp_stamp_cache_store (RtpStampCache *kept, guint64 stamp, const char *key, gconstpointer value)
{
  Value *v;

  if (stamp == 0 || rtp_database_get_change_stamp (kept->db) != stamp)
    return;
  if (g_hash_table_size (kept->values) >= kept->max_kept)
    g_hash_table_remove_all (kept->values);
  v = g_new0 (Value, 1);
  v->kept = kept;
  v->value = kept->copy ((gpointer) value);
  v->read_us = g_get_monotonic_time ();
  g_hash_table_replace (kept->values, g_strdup (key), v);
}

void
rtp_stamp_cache_set_max (RtpStampCache *kept, guint max_kept)
{
  g_return_if_fail (kept != NULL && max_kept > 0);
  kept->max_kept = max_kept;
}
