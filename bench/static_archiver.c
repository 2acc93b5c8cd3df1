/* static_archiver.c: an EPICS Archiver Appliance stand-in for benchmarks that is never the bottleneck
 *
 *   static_archiver DIR
 *
 * Serves on 127.0.0.1 and a free port (printed as "Listening on http://127.0.0.1:PORT") the answers
 * found in DIR, read once at start: a file named by a PV expression (`Bench:A`, `optimized_500(Bench:A)`)
 * holds the appliance's getData.json answer for it, `[{"meta": …, "data": […]}]`, without the window
 * (the same answer for every from/to). Routes:
 *   GET  /retrieval/data/getData.json?pv=EXPR&…             the file, or 404 as the appliance
 *   POST /retrieval/data/getDataForPVs.json?pv=EXPR&pv=EXPR  the files' PV objects in one array
 * HTTP/1.1 with keep-alive, one thread per connection, answers written with writev from memory. */
#include <gio/gio.h>

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static GHashTable *answers; /* expression → GBytes */

static gboolean
write_all (int fd, struct iovec *iov, int n)
{
  while (n > 0)
    {
      ssize_t w = writev (fd, iov, n); /* SIGPIPE is ignored: a reader that went away is an error here */
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        return FALSE;
      while (n > 0 && (size_t) w >= iov->iov_len)
        {
          w -= (ssize_t) iov->iov_len;
          iov++;
          n--;
        }
      if (n > 0)
        {
          iov->iov_base = (char *) iov->iov_base + w;
          iov->iov_len -= (size_t) w;
        }
    }
  return TRUE;
}

static gboolean
respond (int fd, int status, GPtrArray *parts)
{
  gsize total = 0;
  g_autofree struct iovec *iov = g_new0 (struct iovec, parts->len + 1);
  char head[256];

  for (guint i = 0; i < parts->len; i++)
    {
      gsize len;
      iov[i + 1].iov_base = (void *) g_bytes_get_data (g_ptr_array_index (parts, i), &len);
      iov[i + 1].iov_len = len;
      total += len;
    }
  iov[0].iov_base = head;
  iov[0].iov_len = (size_t) g_snprintf (head, sizeof head,
                                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                                        status, status == 200 ? "OK" : "Not Found", total);
  return write_all (fd, iov, (int) parts->len + 1);
}

/* Every `pv=` of the query, decoded. */
static GPtrArray *
pv_params (const char *query)
{
  GPtrArray *pvs = g_ptr_array_new_with_free_func (g_free);
  g_auto (GStrv) pairs = g_strsplit (query, "&", -1);

  for (guint i = 0; pairs[i] != NULL; i++)
    if (g_str_has_prefix (pairs[i], "pv="))
      {
        char *v = g_uri_unescape_string (pairs[i] + 3, NULL);
        if (v != NULL)
          g_ptr_array_add (pvs, v);
      }
  return pvs;
}

static void
answer (int fd, const char *method, const char *target)
{
  const char *q = strchr (target, '?');
  g_autofree char *path = g_strndup (target, q != NULL ? (gsize) (q - target) : strlen (target));
  g_autoptr (GPtrArray) pvs = pv_params (q != NULL ? q + 1 : "");
  g_autoptr (GPtrArray) parts = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);

  if (g_str_equal (method, "GET") && g_str_equal (path, "/retrieval/data/getData.json") && pvs->len == 1 &&
      g_hash_table_contains (answers, g_ptr_array_index (pvs, 0)))
    {
      g_ptr_array_add (parts, g_bytes_ref (g_hash_table_lookup (answers, g_ptr_array_index (pvs, 0))));
      respond (fd, 200, parts);
      return;
    }
  if (g_str_equal (method, "POST") && g_str_equal (path, "/retrieval/data/getDataForPVs.json"))
    {
      gboolean first = TRUE;
      g_ptr_array_add (parts, g_bytes_new_static ("[", 1));
      for (guint i = 0; i < pvs->len; i++)
        {
          GBytes *b = g_hash_table_lookup (answers, g_ptr_array_index (pvs, i));
          gsize len;
          if (b == NULL)
            continue;
          g_bytes_get_data (b, &len);
          if (!first)
            g_ptr_array_add (parts, g_bytes_new_static (",", 1));
          first = FALSE;
          g_ptr_array_add (parts, g_bytes_new_from_bytes (b, 1, len - 2)); /* without the outer [ ] */
        }
      g_ptr_array_add (parts, g_bytes_new_static ("]", 1));
      respond (fd, 200, parts);
      return;
    }
  g_ptr_array_add (parts, g_bytes_new_static ("not found", 9));
  respond (fd, 404, parts);
}

static gpointer
serve (gpointer data)
{
  int fd = GPOINTER_TO_INT (data);
  g_autoptr (GString) in = g_string_new (NULL);
  char buf[16384];

  while (TRUE)
    {
      char *end = strstr (in->str, "\r\n\r\n");
      if (end == NULL)
        {
          ssize_t n = read (fd, buf, sizeof buf);
          if (n <= 0 || in->len > 65536)
            break;
          g_string_append_len (in, buf, n);
          continue;
        }
      {
        gsize head_len = (gsize) (end - in->str) + 4;
        g_autofree char *head = g_strndup (in->str, head_len);
        g_auto (GStrv) line = g_strsplit (head, " ", 3);
        const char *cl = strcasestr (head, "\r\nContent-Length:");
        gsize body = cl != NULL ? (gsize) g_ascii_strtoull (cl + 17, NULL, 10) : 0;

        while (in->len < head_len + body)
          {
            ssize_t n = read (fd, buf, sizeof buf);
            if (n <= 0)
              goto out;
            g_string_append_len (in, buf, n);
          }
        if (line[0] == NULL || line[1] == NULL)
          break;
        answer (fd, line[0], line[1]);
        g_string_erase (in, 0, (gssize) (head_len + body));
      }
    }
out:
  close (fd);
  return NULL;
}

int
main (int argc, char **argv)
{
  g_autoptr (GDir) dir = NULL;
  g_autoptr (GError) error = NULL;
  struct sockaddr_in addr = { .sin_family = AF_INET };
  socklen_t addr_len = sizeof addr;
  const char *name;
  int one = 1;
  int s;

  if (argc != 2)
    {
      fprintf (stderr, "usage: static_archiver DIR\n");
      return 2;
    }
  signal (SIGPIPE, SIG_IGN);
  answers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_bytes_unref);
  dir = g_dir_open (argv[1], 0, &error);
  if (dir == NULL)
    {
      fprintf (stderr, "%s\n", error->message);
      return 1;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (argv[1], name, NULL);
      char *text;
      gsize len;
      if (!g_file_get_contents (path, &text, &len, &error))
        {
          fprintf (stderr, "%s\n", error->message);
          return 1;
        }
      g_hash_table_insert (answers, g_strdup (name), g_bytes_new_take (text, len));
    }
  s = socket (AF_INET, SOCK_STREAM, 0);
  setsockopt (s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (bind (s, (struct sockaddr *) &addr, sizeof addr) != 0 || listen (s, 1024) != 0 ||
      getsockname (s, (struct sockaddr *) &addr, &addr_len) != 0)
    {
      perror ("static_archiver");
      return 1;
    }
  printf ("Listening on http://127.0.0.1:%d\n", ntohs (addr.sin_port));
  fflush (stdout);
  while (TRUE)
    {
      int c = accept (s, NULL, NULL);
      if (c < 0)
        continue;
      setsockopt (c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      g_thread_unref (g_thread_new ("conn", serve, GINT_TO_POINTER (c)));
    }
}
