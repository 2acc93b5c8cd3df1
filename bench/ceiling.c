/* ceiling.c: a bare SoupServer answering constant JSON — the stack's own ceiling for bench/http_bench.py */
#include <libsoup/soup.h>
#include <stdio.h>

static void
handler (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer user_data)
{
  static const char body[] = "{\"user\":{\"user_id\":\"0\",\"login_name\":\"admin\"}}";
  soup_server_message_set_status (msg, 200, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_STATIC, body, sizeof body - 1);
}

int
main (void)
{
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr (SoupServer) server = soup_server_new (NULL, NULL);
  g_autoptr (GError) error = NULL;
  GSList *uris;
  g_autofree char *url = NULL;

  g_autoptr (GSocket) socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &error);
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) address = g_inet_socket_address_new (loopback, 0);

  soup_server_add_handler (server, NULL, handler, NULL, NULL);
  /* the same listen backlog as the server's (rtp-http-server.c), so that both see the same connects */
  if (socket != NULL)
    g_socket_set_listen_backlog (socket, 1024);
  if (socket == NULL || !g_socket_bind (socket, address, TRUE, &error) || !g_socket_listen (socket, &error) ||
      !soup_server_listen_socket (server, socket, 0, &error))
    {
      g_printerr ("%s\n", error->message);
      return 1;
    }
  uris = soup_server_get_uris (server);
  url = g_uri_to_string (uris->data);
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  printf ("Listening on %s\n", url);
  fflush (stdout);
  g_main_loop_run (loop);
  return 0;
}
