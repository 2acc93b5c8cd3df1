/* rtp-error.c: the project's error domain */
#include "rtp-error.h"

G_DEFINE_QUARK (rtp-error-quark, rtp_error)

/* The one place where RtpError becomes an HTTP status. */
guint
rtp_error_to_http_status (const GError *error)
{
  static const struct {
    RtpError code;
    guint status;
  } map[] = {
    { RTP_ERROR_FAILED, 500 },         { RTP_ERROR_INVALID, 400 },
    { RTP_ERROR_UNAUTHORIZED, 401 },   { RTP_ERROR_FORBIDDEN, 403 },
    { RTP_ERROR_NOT_FOUND, 404 },      { RTP_ERROR_NOT_ACCEPTABLE, 406 },
    { RTP_ERROR_EXISTS, 409 },         { RTP_ERROR_CONFLICT, 409 },
    { RTP_ERROR_TOO_LARGE, 413 },      { RTP_ERROR_TOO_MANY, 429 },
    { RTP_ERROR_UPSTREAM, 502 },       { RTP_ERROR_UNAVAILABLE, 503 },
    { RTP_ERROR_READONLY, 503 },       { RTP_ERROR_BUSY, 503 },
    { RTP_ERROR_UNCONFIRMED, 502 },
  };

  if (error == NULL || error->domain != RTP_ERROR)
    return 500;
  for (gsize i = 0; i < G_N_ELEMENTS (map); i++)
    if (map[i].code == (RtpError) error->code)
      return map[i].status;
  return 500;
}
