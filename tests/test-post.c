/* test-post.c: work handed from another thread runs in the main context's thread */
#include "rtp-post.h"

typedef struct {
  GThread *home;
  gint ran;
  gint ran_elsewhere;
  gint released;
} Counts;

static gboolean
count_cb (gpointer data)
{
  Counts *c = data;
  g_atomic_int_inc (&c->ran);
  if (g_thread_self () != c->home)
    g_atomic_int_inc (&c->ran_elsewhere);
  return G_SOURCE_REMOVE;
}

static void
count_release (gpointer data)
{
  Counts *c = data;
  g_atomic_int_inc (&c->released);
}

static gpointer
post_once (gpointer data)
{
  rtp_context_post (g_main_context_default (), G_PRIORITY_DEFAULT, count_cb, data, count_release);
  return NULL;
}

/* The global default context, acquired by nobody at that moment (as between two iterations of
 * GApplication's loop): g_main_context_invoke_full() would call the function right there, in the
 * posting thread. */
static void
test_post_from_thread_while_released (void)
{
  Counts c = { g_thread_self (), 0, 0, 0 };
  GThread *thread = g_thread_new ("poster", post_once, &c);

  g_thread_join (thread);
  g_assert_cmpint (g_atomic_int_get (&c.ran), ==, 0);
  for (int i = 0; i < 100 && g_atomic_int_get (&c.ran) == 0; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpint (c.ran, ==, 1);
  g_assert_cmpint (c.ran_elsewhere, ==, 0);
  g_assert_cmpint (c.released, ==, 1);
}

/* Posted in order from one thread at one priority, run in that order. */
typedef struct {
  GArray *seen;
  guint value;
} Step;

static gboolean
step_cb (gpointer data)
{
  Step *s = data;
  g_array_append_val (s->seen, s->value);
  return G_SOURCE_REMOVE;
}

static gpointer
post_steps (gpointer data)
{
  for (guint i = 0; i < 1000; i++)
    {
      Step *s = g_new0 (Step, 1);
      s->seen = data;
      s->value = i;
      rtp_context_post (g_main_context_default (), G_PRIORITY_DEFAULT, step_cb, s, g_free);
    }
  return NULL;
}

static void
test_post_keeps_order (void)
{
  g_autoptr (GArray) seen = g_array_new (FALSE, FALSE, sizeof (guint));
  GThread *thread = g_thread_new ("poster", post_steps, seen);

  /* iterating meanwhile: the posts arrive while the loop runs */
  while (seen->len < 1000)
    g_main_context_iteration (NULL, TRUE);
  g_thread_join (thread);
  for (guint i = 0; i < seen->len; i++)
    g_assert_cmpuint (g_array_index (seen, guint, i), ==, i);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/post/from-a-thread-while-released", test_post_from_thread_while_released);
  g_test_add_func ("/post/keeps-order", test_post_keeps_order);
  return g_test_run ();
}
