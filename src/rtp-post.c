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

void
rtp_context_post_after (GMainContext *context, gint priority, guint delay_ms, GSourceFunc func, gpointer data,
                        GDestroyNotify notify)
{
  GSource *source = g_timeout_source_new (delay_ms);

  g_source_set_priority (source, priority);
  g_source_set_callback (source, func, data, notify);
  g_source_set_static_name (source, "[rtp] posted later");
  g_source_attach (source, context);
  g_source_unref (source);
}
