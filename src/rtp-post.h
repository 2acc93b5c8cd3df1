/* rtp-post.h: handing work from a library's thread to a main context */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Calls @func (@data) from @context's dispatch, at @priority, whatever thread calls this; @notify
 * (nullable) releases @data afterwards, there too. Unlike g_main_context_invoke_full(), never calls
 * @func in the calling thread: that one does when @context is the global default context and is
 * not acquired at that moment — which the server's main thread, iterating GApplication's loop,
 * leaves it between any two iterations. */
void rtp_context_post (GMainContext *context, gint priority, GSourceFunc func, gpointer data, GDestroyNotify notify);
/* The same, @delay_ms later at the earliest. */
void rtp_context_post_after (GMainContext *context, gint priority, guint delay_ms, GSourceFunc func, gpointer data,
                             GDestroyNotify notify);

G_END_DECLS
