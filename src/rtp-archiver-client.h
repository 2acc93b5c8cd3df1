/* rtp-archiver-client.h: the EPICS Archiver Appliance's retrieval API over libcurl */
#pragma once

#include <gio/gio.h>

#include "rtp-archiver-parser.h"

G_BEGIN_DECLS

#define RTP_TYPE_ARCHIVER_CLIENT (rtp_archiver_client_get_type ())
G_DECLARE_FINAL_TYPE (RtpArchiverClient, rtp_archiver_client, RTP, ARCHIVER_CLIENT, GObject)

typedef struct _RtpArchiverTransfer RtpArchiverTransfer;

/* Returns: (transfer full) */
RtpArchiverClient *rtp_archiver_client_new (const char *base_url, double timeout_s);
gboolean rtp_archiver_client_is_configured (RtpArchiverClient *self);
/* Decoded bytes one answer may have; past it the fetch fails with RTP_ERROR_UPSTREAM. */
void rtp_archiver_client_set_max_bytes (RtpArchiverClient *self, guint64 max_bytes);

/**
 * rtp_archiver_client_fetch_async:
 * @pv_expr: the PV, or an operator on it such as `optimized_500(X:Y)`
 * @from_us: @to_us: the window, microseconds since the epoch
 * @bins: read 5-number arrays as optimized_N bins
 * @on_sample: called on the main thread for every sample as it arrives
 * @streaming: a long transfer: no total time limit, only a stall limit
 *
 * Completes when the answer has been read. An unknown PV (404, or `[]`) is no error:
 * finish reports @found FALSE. Unreachable, slow (past the timeout) or garbled answers
 * fail with RTP_ERROR_UPSTREAM. Returns the transfer, for rtp_archiver_transfer_set_paused().
 */
RtpArchiverTransfer *rtp_archiver_client_fetch_async (RtpArchiverClient *self, const char *pv_expr, gint64 from_us,
                                                      gint64 to_us, gboolean bins, gboolean streaming,
                                                      RtpSampleFunc on_sample, gpointer sample_data,
                                                      GCancellable *cancellable, GAsyncReadyCallback callback,
                                                      gpointer user_data);
gboolean rtp_archiver_client_fetch_finish (RtpArchiverClient *self, GAsyncResult *result, gboolean *found,
                                           GError **error);

/* As rtp_archiver_client_fetch_async() for several PVs in one request (POST getDataForPVs.json with
 * `pv=` repeated; a long transfer): @on_pv announces each PV's samples. An appliance without the
 * endpoint answers 404: finish reports @found FALSE and nothing was delivered. */
RtpArchiverTransfer *rtp_archiver_client_fetch_many_async (RtpArchiverClient *self, const char *const *pv_exprs,
                                                           gint64 from_us, gint64 to_us, gboolean bins,
                                                           RtpPvStartFunc on_pv, RtpSampleFunc on_sample,
                                                           gpointer sample_data, GCancellable *cancellable,
                                                           GAsyncReadyCallback callback, gpointer user_data);

/* Back-pressure: a paused transfer reads nothing more from the network. */
void rtp_archiver_transfer_set_paused (RtpArchiverTransfer *transfer, gboolean paused);

/* Whether the appliance knows @pv (getMetadata: 200 → TRUE, 404 → FALSE, else error). */
void rtp_archiver_client_exists_async (RtpArchiverClient *self, const char *pv, GCancellable *cancellable,
                                       GAsyncReadyCallback callback, gpointer user_data);
gboolean rtp_archiver_client_exists_finish (RtpArchiverClient *self, GAsyncResult *result, gboolean *exists,
                                            GError **error);

/**
 * rtp_archiver_client_request_async:
 * @path_and_query: from the first '/', escaped, e.g. `/retrieval/bpl/getMatchingPVs?pv=X%3A*&limit=100`
 * @post_json: (nullable): POSTed as application/json; NULL: a GET
 *
 * A whole answer of at most 16 MB (a larger one fails with RTP_ERROR_UPSTREAM). A 404 is no error:
 * finish reports @found FALSE (an appliance without the endpoint, or an unknown PV).
 */
void rtp_archiver_client_request_async (RtpArchiverClient *self, const char *path_and_query, const char *post_json,
                                        GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
/* Returns: (transfer full): the answer's bytes (empty when not @found), or NULL with @error */
GBytes *rtp_archiver_client_request_finish (RtpArchiverClient *self, GAsyncResult *result, gboolean *found,
                                            GError **error);

G_END_DECLS
