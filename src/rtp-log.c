/* rtp-log.c: the log writer that adds the current request's id to every line
 *
 * Handlers run on the main thread between rtp_request_enter() and rtp_request_leave() (also in their
 * asynchronous callbacks), which set the current request id of the thread. The writer adds it to the
 * message (plain stderr) and as the field RTP_REQUEST_ID (journald, where GLib's default writer sends
 * every field it is given), then lets GLib's default writer do the rest. */
#define G_LOG_DOMAIN "RtpLog"

#include "rtp-log.h"

#include <stdio.h>
#include <string.h>

static GPrivate current_id; /* const char * (unowned): the request's own id, alive while it is current */

const char *
rtp_log_set_request_id (const char *id)
{
  const char *previous = g_private_get (&current_id);
  g_private_set (&current_id, (gpointer) id);
  return previous;
}

gboolean
rtp_log_to_journal (void)
{
  return g_log_writer_is_journald (fileno (stderr));
}

static GLogWriterOutput
writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  const char *id = g_private_get (&current_id);
  g_autofree GLogField *more = NULL;
  g_autofree char *message = NULL;
  gboolean has_id = FALSE;
  gsize n = 0;

  if (id == NULL)
    return g_log_writer_default (level, fields, n_fields, user_data);
  for (gsize i = 0; i < n_fields; i++)
    has_id |= g_str_equal (fields[i].key, "RTP_REQUEST_ID");
  more = g_new (GLogField, n_fields + 1);
  for (gsize i = 0; i < n_fields; i++)
    {
      more[n] = fields[i];
      if (g_str_equal (fields[i].key, "MESSAGE") && !has_id)
        {
          /* the access log line names its request already */
          message = g_strdup_printf ("%.*s [request %s]",
                                     fields[i].length < 0 ? (int) strlen (fields[i].value) : (int) fields[i].length,
                                     (const char *) fields[i].value, id);
          more[n].value = message;
          more[n].length = -1;
        }
      n++;
    }
  if (!has_id)
    {
      more[n].key = "RTP_REQUEST_ID";
      more[n].value = id;
      more[n].length = -1;
      n++;
    }
  return g_log_writer_default (level, more, n, user_data);
}

void
rtp_log_install (void)
{
  g_log_set_writer_func (writer, NULL, NULL);
}
