/* rtp-request-line.c: the request lines of a connection, as the client sent them
 *
 * libsoup turns "GET /experiments/Test/.. HTTP/1.1" into the URI http://host/experiments/:
 * GLib's URI parser removes dot segments (RFC 3986 5.2.4, "%2e" spellings included) before any
 * signal or handler sees the request, so the server could no longer tell that the client asked
 * for a dot segment, which the contract answers with 404. The watch sees the bytes of one
 * connection as libsoup reads them (it never changes them), finds each line that has the shape
 * of a request line, and keeps the normalized target (path and query, as libsoup will have them)
 * of those with a dot segment. Once a request's headers are read, the server asks whether its
 * target is one of them (rtp_line_watch_take()).
 *
 * The watch does not follow HTTP framing. A line in a request body that looks like a request
 * line with a dot segment is kept too, and makes a later request on the same connection for
 * exactly the same normalized target a 404: only the connection that sent it is concerned.
 * Memory is bounded: one partial line of at most WATCH_LINE_MAX bytes (longer lines cannot be request
 * lines: libsoup refuses headers over 64 KiB) and KEPT_MAX targets; lines that cannot start a
 * request line (not an upper-case method) are never copied. */
#define G_LOG_DOMAIN "RtpHttpServer"

#include "rtp-request-line.h"

#include <libsoup/soup.h>
#include <string.h>

#define WATCH_LINE_MAX (64 * 1024 + 64)
#define KEPT_MAX 8

typedef struct {
  char *path;
  char *query; /* (nullable) */
} Kept;

struct _RtpLineWatch {
  GString *partial;  /* (nullable) the start of a line that may be a request line */
  gboolean skipping; /* in a line that cannot be one: until its end */
  GQueue kept;       /* Kept, oldest first */
};

static void
kept_free (gpointer data)
{
  Kept *k = data;

  g_free (k->path);
  g_free (k->query);
  g_free (k);
}

static void
watch_clear (gpointer data)
{
  RtpLineWatch *self = data;

  if (self->partial != NULL)
    g_string_free (self->partial, TRUE);
  g_queue_clear_full (&self->kept, kept_free);
}

RtpLineWatch *
rtp_line_watch_new (void)
{
  RtpLineWatch *self = g_atomic_rc_box_new0 (RtpLineWatch);

  g_queue_init (&self->kept);
  return self;
}

RtpLineWatch *
rtp_line_watch_ref (RtpLineWatch *self)
{
  return g_atomic_rc_box_acquire (self);
}

void
rtp_line_watch_unref (RtpLineWatch *self)
{
  g_atomic_rc_box_release_full (self, watch_clear);
}

/* One path segment that is "." or "..", each dot possibly spelled "%2e" or "%2E". */
static gboolean
is_dot_segment (const char *s, gsize len)
{
  guint dots = 0;

  for (gsize i = 0; i < len;)
    {
      if (s[i] == '.')
        i++;
      else if (len - i >= 3 && s[i] == '%' && s[i + 1] == '2' && (s[i + 2] == 'e' || s[i + 2] == 'E'))
        i += 3;
      else
        return FALSE;
      if (++dots > 2)
        return FALSE;
    }
  return dots > 0;
}

/**
 * rtp_request_target_has_dot_segment:
 * @target: a request target (origin form "/a/b?q" or absolute form "http://host/a/b")
 *
 * Returns: whether a segment of its path is "." or "..", in any spelling that GLib's URI
 * parser removes.
 */
gboolean
rtp_request_target_has_dot_segment (const char *target, gsize len)
{
  const char *p = target, *end = target + len;
  const char *q;

  if (len == 0)
    return FALSE;
  if (*p != '/')
    {
      /* absolute form: the path starts after "scheme://authority" */
      const char *colon = memchr (p, ':', len);
      if (colon == NULL || end - colon < 3 || colon[1] != '/' || colon[2] != '/')
        return FALSE;
      p = colon + 3;
      while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
      if (p == end || *p != '/')
        return FALSE;
    }
  for (q = p; q < end && *q != '?' && *q != '#'; q++)
    ;
  end = q;
  while (p < end)
    {
      const char *seg = p + 1, *next;
      for (next = seg; next < end && *next != '/'; next++)
        ;
      if (is_dot_segment (seg, (gsize) (next - seg)))
        return TRUE;
      p = next;
    }
  return FALSE;
}

static gboolean
is_blank (char c)
{
  return c == ' ' || c == '\t';
}

/* A complete line (without its "\n"): if it has the shape libsoup parses as a request line
 * (soup_headers_parse_request: method, blanks, target, blanks, "HTTP/") and its target has a dot
 * segment, the target is kept as libsoup's URI parser will have it. */
static void
check_line (RtpLineWatch *self, const char *line, gsize len)
{
  gsize i = 0, target, target_end;
  g_autofree char *url = NULL;
  g_autoptr (GUri) uri = NULL;
  Kept *k;

  if (len > WATCH_LINE_MAX)
    return; /* as when it arrives in pieces: longer than a request line can be */
  while (i < len && g_ascii_isupper (line[i]))
    i++;
  if (i == 0 || i == len || !is_blank (line[i]))
    return;
  while (i < len && is_blank (line[i]))
    i++;
  target = i;
  while (i < len && !is_blank (line[i]))
    i++;
  target_end = i;
  while (i < len && is_blank (line[i]))
    i++;
  if (target == target_end || len - i < 5 || memcmp (line + i, "HTTP/", 5) != 0 ||
      !rtp_request_target_has_dot_segment (line + target, target_end - target))
    return;
  /* as soup-server-message-io-http1.c builds it; the host does not change the path */
  if (line[target] == '/')
    url = g_strdup_printf ("http://h%.*s", (int) (target_end - target), line + target);
  else
    url = g_strndup (line + target, target_end - target);
  uri = g_uri_parse (url, SOUP_HTTP_URI_FLAGS, NULL);
  if (uri == NULL)
    return; /* libsoup answers 400 itself */
  k = g_new (Kept, 1);
  k->path = g_strdup (g_uri_get_path (uri));
  k->query = g_strdup (g_uri_get_query (uri));
  g_queue_push_tail (&self->kept, k);
  if (g_queue_get_length (&self->kept) > KEPT_MAX)
    kept_free (g_queue_pop_head (&self->kept));
}

/**
 * rtp_line_watch_feed:
 *
 * Looks at the next @len bytes the client sent on the connection.
 */
void
rtp_line_watch_feed (RtpLineWatch *self, const char *data, gsize len)
{
  const char *p = data, *end = data + len;

  while (p < end)
    {
      const char *nl = memchr (p, '\n', (gsize) (end - p));
      const char *stop = nl != NULL ? nl : end;
      gboolean started = self->partial != NULL && self->partial->len > 0;

      if (!self->skipping && !started && !g_ascii_isupper (*p) && *p != '\r' && *p != '\n')
        self->skipping = TRUE; /* not a method: nothing of this line is needed */
      if (self->skipping)
        ;
      else if (started || nl == NULL)
        {
          if (self->partial == NULL)
            self->partial = g_string_new (NULL);
          if (self->partial->len + (gsize) (stop - p) > WATCH_LINE_MAX)
            {
              self->skipping = TRUE;
              g_string_free (self->partial, TRUE); /* up to 64 KiB: not kept for the next line */
              self->partial = NULL;
            }
          else
            {
              g_string_append_len (self->partial, p, stop - p);
              if (nl != NULL)
                {
                  check_line (self, self->partial->str, self->partial->len);
                  g_string_truncate (self->partial, 0);
                }
            }
        }
      else
        check_line (self, p, (gsize) (nl - p));
      if (nl == NULL)
        break;
      self->skipping = FALSE;
      p = nl + 1;
    }
}

/**
 * rtp_line_watch_take:
 * @path: the path of a request whose headers were read, as libsoup parsed it
 * @query: (nullable): its query
 *
 * Returns: whether the client spelled this request's target with a dot segment. The target is
 * then forgotten, with every one kept before it.
 */
gboolean
rtp_line_watch_take (RtpLineWatch *self, const char *path, const char *query)
{
  for (GList *l = self->kept.head; l != NULL; l = l->next)
    {
      Kept *k = l->data;

      if (g_str_equal (k->path, path) && g_strcmp0 (k->query, query) == 0)
        {
          while (self->kept.head != l)
            kept_free (g_queue_pop_head (&self->kept));
          kept_free (g_queue_pop_head (&self->kept));
          return TRUE;
        }
    }
  return FALSE;
}

guint
rtp_line_watch_get_pending (RtpLineWatch *self)
{
  return g_queue_get_length (&self->kept);
}
