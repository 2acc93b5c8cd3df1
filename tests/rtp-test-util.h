/* rtp-test-util.h: temporary directories and async helpers for the unit tests */
#pragma once

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <signal.h>

static inline char *
rtp_test_make_dir (void)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_dir_make_tmp ("rtp-test-XXXXXX", &error);
  g_assert_no_error (error);
  return dir;
}

static inline void
rtp_test_remove_dir (const char *path)
{
  g_autoptr (GFile) file = g_file_new_for_path (path);
  g_autoptr (GFileEnumerator) e = g_file_enumerate_children (file, G_FILE_ATTRIBUTE_STANDARD_NAME,
                                                             G_FILE_QUERY_INFO_NOFOLLOW_SYMLINKS, NULL, NULL);
  GFileInfo *info;

  while (e != NULL && (info = g_file_enumerator_next_file (e, NULL, NULL)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, g_file_info_get_name (info), NULL);
      if (g_file_info_get_file_type (info) == G_FILE_TYPE_DIRECTORY)
        rtp_test_remove_dir (child);
      else
        g_unlink (child);
      g_object_unref (info);
    }
  g_rmdir (path);
}

/* Collects an async result and spins the default main context until it arrives. */
static inline void
rtp_test_async_ready (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

static inline GAsyncResult *
rtp_test_wait (GAsyncResult **slot)
{
  while (*slot == NULL)
    g_main_context_iteration (NULL, TRUE);
  return *slot;
}

/* Spins the default main context until *@flag is set or @seconds passed; returns *@flag. */
static inline gboolean
rtp_test_wait_flag (const gboolean *flag, double seconds)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) (seconds * G_USEC_PER_SEC);

  while (!*flag && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE), g_usleep (1000);
  return *flag;
}

/* A port that was free a moment ago on 127.0.0.1. */
static inline guint16
rtp_test_free_port (void)
{
  g_autoptr (GSocket) s = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) any = g_inet_socket_address_new (lo, 0);
  g_autoptr (GSocketAddress) bound = NULL;

  g_assert_nonnull (s);
  g_assert_true (g_socket_bind (s, any, TRUE, NULL));
  bound = g_socket_get_local_address (s, NULL);
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

static inline gboolean
rtp_test_can_connect (guint16 port)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) c = NULL;

  g_socket_client_set_timeout (client, 1);
  c = g_socket_client_connect_to_host (client, "127.0.0.1", port, NULL, NULL);
  return c != NULL;
}

/* A real mosquitto on 127.0.0.1 and a free port, stopped by rtp_test_broker_stop. */
typedef struct {
  GSubprocess *proc;
  char *dir;
  guint16 port;
} RtpTestBroker;

static inline void
rtp_test_broker_start (RtpTestBroker *b)
{
  b->dir = rtp_test_make_dir ();
  for (guint attempt = 0; attempt < 5 && b->proc == NULL; attempt++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *conf = g_build_filename (b->dir, "mosquitto.conf", NULL);
      g_autofree char *text = NULL;
      gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

      b->port = rtp_test_free_port ();
      text = g_strdup_printf ("listener %u 127.0.0.1\nallow_anonymous true\n", b->port);
      g_assert_true (g_file_set_contents (conf, text, -1, &error));
      b->proc = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_SILENCE, &error,
                                  g_file_test ("/usr/sbin/mosquitto", G_FILE_TEST_IS_EXECUTABLE) ? "/usr/sbin/mosquitto"
                                                                                                 : "mosquitto",
                                  "-c", conf, NULL);
      g_assert_no_error (error);
      while (g_get_monotonic_time () < deadline && !rtp_test_can_connect (b->port))
        g_usleep (20000);
      if (!rtp_test_can_connect (b->port))
        {
          g_subprocess_force_exit (b->proc);
          g_subprocess_wait (b->proc, NULL, NULL);
          g_clear_object (&b->proc);
        }
    }
  g_assert_nonnull (b->proc);
}

static inline void
rtp_test_broker_stop (RtpTestBroker *b)
{
  if (b->proc != NULL)
    {
      g_subprocess_send_signal (b->proc, SIGTERM);
      g_subprocess_wait (b->proc, NULL, NULL);
      g_clear_object (&b->proc);
    }
  rtp_test_remove_dir (b->dir);
  g_clear_pointer (&b->dir, g_free);
}

/* The server logs with the structured API (G_LOG_USE_STRUCTURED: journald gets CODE_FILE…), which
 * g_test_expect_message() cannot see: one expected message at a time is caught by this writer
 * instead. A test program installs it with g_log_set_writer_func (rtp_test_log_writer, NULL, NULL). */
static struct {
  const char *domain;
  GLogLevelFlags level;
  const char *pattern;
  gboolean seen;
} rtp_test_expected_log;

static inline GLogWriterOutput
rtp_test_log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  const char *domain = NULL, *message = NULL;

  for (gsize i = 0; i < n_fields; i++)
    {
      if (g_str_equal (fields[i].key, "GLIB_DOMAIN"))
        domain = fields[i].value;
      else if (g_str_equal (fields[i].key, "MESSAGE"))
        message = fields[i].value;
    }
  if (rtp_test_expected_log.pattern != NULL && (level & rtp_test_expected_log.level) &&
      g_strcmp0 (domain, rtp_test_expected_log.domain) == 0 && message != NULL &&
      g_pattern_match_simple (rtp_test_expected_log.pattern, message))
    {
      rtp_test_expected_log.seen = TRUE;
      return G_LOG_WRITER_HANDLED;
    }
  return g_log_writer_default (level, fields, n_fields, user_data);
}

static inline void
rtp_test_expect_log (const char *domain, GLogLevelFlags level, const char *pattern)
{
  rtp_test_expected_log.domain = domain;
  rtp_test_expected_log.level = level;
  rtp_test_expected_log.pattern = pattern;
  rtp_test_expected_log.seen = FALSE;
}

static inline void
rtp_test_assert_expected_log (void)
{
  g_assert_true (rtp_test_expected_log.seen);
  rtp_test_expected_log.pattern = NULL;
}
