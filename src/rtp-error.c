/* rtp-error.c: the project's error domain */
#include "rtp-error.h"
#include "rtp-i18n.h"

#include <gio/gio.h>

/* An extended error domain: a refusal that a client may try again later carries the seconds,
 * for Retry-After (they used to be parsed back out of the translated message). */
typedef struct {
  guint retry_after_s;
  GStrv fields; /* (owned) (nullable) one message per missing field */
} RtpErrorPrivate;

static void
rtp_error_private_init (RtpErrorPrivate *priv)
{
  priv->retry_after_s = 0;
  priv->fields = NULL;
}

static void
rtp_error_private_copy (const RtpErrorPrivate *src, RtpErrorPrivate *dest)
{
  dest->retry_after_s = src->retry_after_s;
  dest->fields = g_strdupv (src->fields);
}

static void
rtp_error_private_clear (RtpErrorPrivate *priv)
{
  g_clear_pointer (&priv->fields, g_strfreev);
}

G_DEFINE_EXTENDED_ERROR (RtpError, rtp_error)

void
rtp_error_set_retry_after (GError *error, guint seconds)
{
  g_return_if_fail (error != NULL && error->domain == RTP_ERROR);
  rtp_error_get_private (error)->retry_after_s = seconds;
}

/* RTP_ERROR_INVALID for several fields at once: the message joins them with newlines (D-Bus), and
 * HTTP answers them as API.md's list of one-element lists. */
GError *
rtp_error_new_fields (const char *const *fields)
{
  g_autofree char *joined = g_strjoinv ("\n", (GStrv) fields);
  GError *error = g_error_new_literal (RTP_ERROR, RTP_ERROR_INVALID, joined);

  rtp_error_get_private (error)->fields = g_strdupv ((GStrv) fields);
  return error;
}

const char *const *
rtp_error_get_fields (const GError *error)
{
  if (error == NULL || error->domain != RTP_ERROR)
    return NULL;
  return (const char *const *) rtp_error_get_private (error)->fields;
}

guint
rtp_error_get_retry_after (const GError *error)
{
  if (error == NULL || error->domain != RTP_ERROR)
    return 0;
  return rtp_error_get_private (error)->retry_after_s;
}

/* The one place where RtpError becomes an HTTP status. */
guint
rtp_error_to_http_status (const GError *error)
{
  static const struct {
    RtpError code;
    guint status;
  } map[] = {
    { RTP_ERROR_FAILED, 500 },        { RTP_ERROR_INVALID, 400 },   { RTP_ERROR_UNAUTHORIZED, 401 },
    { RTP_ERROR_FORBIDDEN, 403 },     { RTP_ERROR_NOT_FOUND, 404 }, { RTP_ERROR_NOT_ACCEPTABLE, 406 },
    { RTP_ERROR_EXISTS, 409 },        { RTP_ERROR_CONFLICT, 409 },  { RTP_ERROR_TOO_LARGE, 413 },
    { RTP_ERROR_TOO_MANY, 429 },      { RTP_ERROR_UPSTREAM, 502 },  { RTP_ERROR_UNAVAILABLE, 503 },
    { RTP_ERROR_READONLY, 503 },      { RTP_ERROR_BUSY, 503 },      { RTP_ERROR_UNCONFIRMED, 502 },
    { RTP_ERROR_UNPROCESSABLE, 422 },
  };

  if (error == NULL || error->domain != RTP_ERROR)
    return 500;
  for (gsize i = 0; i < G_N_ELEMENTS (map); i++)
    if (map[i].code == (RtpError) error->code)
      return map[i].status;
  return 500;
}

/* The one GDBusErrorEntry table: RtpError ↔ D-Bus error names, for the server and rtpctl. */
void
rtp_error_register_dbus_names (void)
{
  static const GDBusErrorEntry entries[] = {
    { RTP_ERROR_FAILED, "org.realtimeplot.Server1.Error.Failed" },
    { RTP_ERROR_INVALID, "org.realtimeplot.Server1.Error.Invalid" },
    { RTP_ERROR_UNAUTHORIZED, "org.realtimeplot.Server1.Error.Unauthorized" },
    { RTP_ERROR_FORBIDDEN, "org.realtimeplot.Server1.Error.Forbidden" },
    { RTP_ERROR_NOT_FOUND, "org.realtimeplot.Server1.Error.NotFound" },
    { RTP_ERROR_NOT_ACCEPTABLE, "org.realtimeplot.Server1.Error.NotAcceptable" },
    { RTP_ERROR_EXISTS, "org.realtimeplot.Server1.Error.Exists" },
    { RTP_ERROR_CONFLICT, "org.realtimeplot.Server1.Error.Conflict" },
    { RTP_ERROR_TOO_LARGE, "org.realtimeplot.Server1.Error.TooLarge" },
    { RTP_ERROR_TOO_MANY, "org.realtimeplot.Server1.Error.TooMany" },
    { RTP_ERROR_BUSY, "org.realtimeplot.Server1.Error.Busy" },
    { RTP_ERROR_UNCONFIRMED, "org.realtimeplot.Server1.Error.Unconfirmed" },
    { RTP_ERROR_UPSTREAM, "org.realtimeplot.Server1.Error.Upstream" },
    { RTP_ERROR_UNAVAILABLE, "org.realtimeplot.Server1.Error.Unavailable" },
    { RTP_ERROR_READONLY, "org.realtimeplot.Server1.Error.ReadOnly" },
    { RTP_ERROR_UNPROCESSABLE, "org.realtimeplot.Server1.Error.Unprocessable" },
  };
  static gsize done = 0;

  if (g_once_init_enter (&done))
    {
      for (gsize i = 0; i < G_N_ELEMENTS (entries); i++)
        g_dbus_error_register_error (RTP_ERROR, entries[i].error_code, entries[i].dbus_error_name);
      g_once_init_leave (&done, 1);
    }
}

GError *
rtp_error_new_not_found (const char *kind, const char *id)
{
  return g_error_new (RTP_ERROR, RTP_ERROR_NOT_FOUND, _ ("The %s (%s) is not present in the database."), kind, id);
}

GError *
rtp_error_new_exists (const char *kind, const char *id)
{
  return g_error_new (RTP_ERROR, RTP_ERROR_EXISTS, _ ("A %s (%s) is already present in the database."), kind, id);
}

GError *
rtp_error_new_wrong_type (void)
{
  return g_error_new_literal (
    RTP_ERROR, RTP_ERROR_INVALID,
    _ (
      "Some or more values in the JSON body were null or do not correspond to the required column type in the database."));
}
