/* rtp-stamp-cache.h: values read from the database, kept between requests while nothing changed */
#pragma once

#include "rtp-database.h"

G_BEGIN_DECLS

typedef struct _RtpStampCache RtpStampCache;

/* Returns: (transfer full) */
RtpStampCache *rtp_stamp_cache_new (RtpDatabase *db, GBoxedCopyFunc copy, GDestroyNotify free_value);
void rtp_stamp_cache_free (RtpStampCache *cache);
gpointer rtp_stamp_cache_lookup (RtpStampCache *cache, const char *key, guint64 *stamp);
gboolean rtp_stamp_cache_contains (RtpStampCache *cache, const char *key);
void rtp_stamp_cache_store (RtpStampCache *cache, guint64 stamp, const char *key, gconstpointer value);
/* How many values are kept at most (4096 unless set): one per PV for caches that every value of
 * every PV passes through. */
void rtp_stamp_cache_set_max (RtpStampCache *cache, guint max_kept);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpStampCache, rtp_stamp_cache_free)

G_END_DECLS
