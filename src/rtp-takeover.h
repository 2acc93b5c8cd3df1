/* rtp-takeover.h: taking over the data of the original service (or of another server of ours) */
#pragma once

#include "rtp-database.h"

G_BEGIN_DECLS

typedef struct {
  guint users, experiments, process_variables, assignments, subscriptions;
} RtpTakeoverCounts;

/* Whether @db holds the original Flask service's tables (`user`, `experiment`, …) and none of ours. */
gboolean rtp_takeover_is_legacy (RtpDatabase *db, gboolean *legacy, GError **error);

/* Copies users, experiments, PVs, assignments and subscriptions from @from (the original
 * service's layout when @legacy, else ours) into @to (migrated to our newest schema), in one
 * transaction of @to. User ids, login names and MD5 password hashes are kept as they are. */
gboolean rtp_takeover_copy (RtpDatabase *from, gboolean legacy, RtpDatabase *to, RtpTakeoverCounts *counts,
                            GError **error);

/* Upgrades an original service's SQLite file in place: a copy goes to <file>.pre-migration.bak
 * first; afterwards the file has our schema with the same data and no old tables. */
gboolean rtp_takeover_upgrade_in_place (const char *uri, GError **error);

G_END_DECLS
