/* rtp-kept.h: values read from the database, kept between requests while nothing changed */
#pragma once

#include "rtp-database.h"

G_BEGIN_DECLS

typedef struct _RtpKept RtpKept;

RtpKept *rtp_kept_new (RtpDatabase *db, GBoxedCopyFunc copy, GDestroyNotify free_value);
void     rtp_kept_free (RtpKept *kept);
gpointer rtp_kept_lookup (RtpKept *kept, const char *key, guint64 *stamp);
void     rtp_kept_store (RtpKept *kept, guint64 stamp, const char *key, gconstpointer value);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpKept, rtp_kept_free)

G_END_DECLS
