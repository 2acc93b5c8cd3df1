/* rtp-post.c: handing work from a library's thread to a main context */
#include "rtp-post.h"

void
rtp_context_post (GMainContext *context, gint priority, GSourceFunc func, gpointer data, GDestroyNotify notify)
{
  GSource *source = g_idle_source_new ();

  g_source_set_priority (source, priority);
  g_source_set_callback (source, func, data, notify);
  g_source_set_static_name (source, "[rtp] posted");
  g_source_attach (source, context);
  g_source_unref (source);
}
