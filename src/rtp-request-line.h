/* rtp-request-line.h: the request lines of a connection, as the client sent them */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _RtpLineWatch RtpLineWatch;

RtpLineWatch *rtp_line_watch_new (void);
RtpLineWatch *rtp_line_watch_ref (RtpLineWatch *self);
void rtp_line_watch_unref (RtpLineWatch *self);
void rtp_line_watch_feed (RtpLineWatch *self, const char *data, gsize len);
gboolean rtp_line_watch_take (RtpLineWatch *self, const char *path, const char *query);
guint rtp_line_watch_get_pending (RtpLineWatch *self);

gboolean rtp_request_target_has_dot_segment (const char *target, gsize len);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpLineWatch, rtp_line_watch_unref)

G_END_DECLS
