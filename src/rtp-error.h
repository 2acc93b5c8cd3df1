/* rtp-error.h: the project's error domain and its one mapping to HTTP status codes */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define RTP_ERROR (rtp_error_quark ())

typedef enum {
  RTP_ERROR_FAILED,         /* 500: a bug or an unexpected failure */
  RTP_ERROR_INVALID,        /* 400: bad input */
  RTP_ERROR_UNAUTHORIZED,   /* 401: no credentials */
  RTP_ERROR_FORBIDDEN,      /* 403: credentials refused, or not allowed */
  RTP_ERROR_NOT_FOUND,      /* 404 */
  RTP_ERROR_NOT_ACCEPTABLE, /* 406 */
  RTP_ERROR_EXISTS,         /* 409: already present */
  RTP_ERROR_CONFLICT,       /* 409: refused because of the current state */
  RTP_ERROR_TOO_LARGE,      /* 413 */
  RTP_ERROR_TOO_MANY,       /* 429 */
  RTP_ERROR_UPSTREAM,       /* 502: archiver, broker, mail server failed */
  RTP_ERROR_UNAVAILABLE,    /* 503: database not available */
  RTP_ERROR_READONLY,       /* 503: database cannot store changes */
  RTP_ERROR_BUSY,           /* 503: a bounded queue is full; try again shortly (Retry-After: 1) */
  RTP_ERROR_UNCONFIRMED,    /* 502: sent, but the broker did not confirm in time: the outcome is not known */
  RTP_ERROR_UNPROCESSABLE,  /* 422: well formed, but a rule refuses it (a set-point's guard rails) */
} RtpError;

GQuark rtp_error_quark (void);

guint rtp_error_to_http_status (const GError *error);
/* Seconds after which the refused call may succeed (0: none given), for Retry-After. */
void rtp_error_set_retry_after (GError *error, guint seconds);
guint rtp_error_get_retry_after (const GError *error);
/* RTP_ERROR_INVALID naming several fields (e.g. the missing ones of a subscription). */
/* Returns: (transfer full) */
GError *rtp_error_new_fields (const char *const *fields);
const char *const *rtp_error_get_fields (const GError *error);
/* The common refusals, worded once (API.md's strings); @kind is the translated name of the thing
 * ("user", "process variable", …). */
/* Returns: (transfer full) */
GError *rtp_error_new_not_found (const char *kind, const char *id);
/* Returns: (transfer full) */
GError *rtp_error_new_exists (const char *kind, const char *id);
/* A value of the wrong type (API.md: "Some or more values in the JSON body were null or …"). */
/* Returns: (transfer full) */
GError *rtp_error_new_wrong_type (void);
void rtp_error_register_dbus_names (void);

G_END_DECLS
