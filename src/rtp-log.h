/* rtp-log.h: every log line about a request names it (X-Request-Id); journald gets fields */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Makes @id (nullable) the request that the log lines of this thread are about, until the next call.
 * Returns: the previous one, to be set back */
const char *rtp_log_set_request_id (const char *id);

/* Installs the writer: lines written while a request is current end with "[request <id>]", and under
 * journald carry the field RTP_REQUEST_ID (and every field the caller gave, e.g. RTP_USER_ID). */
void rtp_log_install (void);

/* Whether stderr goes to the journal (then the access log is on by default). */
gboolean rtp_log_to_journal (void);

G_END_DECLS
