/* rtp-http-listener.h: accepts the connections of the SoupServer, watching their request lines */
#pragma once

#include <libsoup/soup.h>

G_BEGIN_DECLS

typedef struct _RtpHttpListener RtpHttpListener;

/* Returns: (transfer full) */
RtpHttpListener *rtp_http_listener_new (SoupServer *soup, GSocket *listening);
void rtp_http_listener_free (RtpHttpListener *self);

/* Returns: (transfer none) (nullable) the client's socket */
GSocket *rtp_http_message_get_socket (SoupServerMessage *msg);
gboolean rtp_http_message_take_dot_segment (SoupServerMessage *msg);
void rtp_http_message_started (SoupServerMessage *msg);
void rtp_http_message_ended (SoupServerMessage *msg);

/* Whether @buffer is a whole HTTP response head announcing a body of at least one byte */
gboolean rtp_http_head_announces_body (const char *buffer, gsize count);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpHttpListener, rtp_http_listener_free)

G_END_DECLS
