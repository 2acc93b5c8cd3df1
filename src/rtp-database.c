/* rtp-database.c: one libgda connection, used from the main thread only
 *
 * SQL is written with `:name` placeholders; they are rewritten once per statement into
 * libgda's typed form (`##name::string::null`) from the types the caller passes, and
 * the parsed statement is cached. No SQL is ever built from user input. */
#define G_LOG_DOMAIN "RtpDatabase"

#include "rtp-metrics.h"
#include "rtp-database.h"

#include <libgda/gda-connection-private.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sql-parser/gda-sql-parser.h>
#include "rtp-error.h"
#include "rtp-i18n.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <unistd.h>
#include <string.h>

#define MIGRATIONS_PATH "/org/realtimeplot/Server/migrations"

typedef struct {
  GdaStatement *stmt; /* (owned) */
  GdaSet *params;     /* (owned) (nullable) */
} CachedStatement;

/* A statement as a caller wrote it, with which of its parameters were NULL (those are written into
 * the SQL, see append_null), and what it became: so that the SQL is rewritten once, not per call. */
typedef struct {
  guint32 nulls; /* the XOR of the names' hashes of the NULL parameters, 0: none */
  guint n_params;
  CachedStatement *cached; /* (unowned) in self->cache */
} Prepared;

struct _RtpDatabase {
  GObject parent_instance;

  GdaConnection *cnc; /* (owned) */
  RtpDatabaseKind kind;
  char *sqlite_path;     /* (owned) (nullable) */
  GHashTable *cache;     /* (owned) rewritten SQL → CachedStatement */
  GHashTable *prepared;  /* (owned) SQL as written → GArray of Prepared: what it became, per NULL pattern */
  GdaSqlParser *delimit; /* (owned) a parser that only splits: its statements are passed through untracked */
  GHashTable *raw_cache; /* (owned) SQL → GdaStatement parsed by @delimit */
  gboolean in_transaction;
  gboolean wrote; /* a write in the open transaction: the change counter is read after its commit */
  /* to reconnect after the server went away (PostgreSQL restarted) */
  char *provider;    /* (owned) */
  char *cnc_string;  /* (owned) */
  char *auth_string; /* (owned) (nullable) */
  gboolean broken;
  gint64 last_attempt_us;
  gboolean leader;      /* PostgreSQL: holds the advisory lock on this connection; SQLite: the lock of @lead_fd */
  char *lead_path;      /* (owned) (nullable) SQLite: the file beside the database whose lock says who leads */
  int lead_fd;          /* SQLite: @lead_path, or -1 */
  gint64 lead_tried_us; /* when leading was last tried and failed (monotonic), 0: not since leading */
  PGconn *pconn;        /* (unowned) (nullable) libpq's connection under libgda's, for probing */
  char *pg_dbname;      /* (owned) (nullable) */
  /* rtp_database_get_change_stamp() */
  gboolean changed_pending;      /* the stamp moved inside the open transaction: "changed" at its end */
  gboolean beginning;            /* BEGIN is being sent */
  guint64 stamp;                 /* raised at every change of kept rows this connection makes or learns of */
  gint64 pg_count;               /* PostgreSQL: rtp_change_count.n as last read */
  gint64 pg_read_us;             /* PostgreSQL: when that read was sent (monotonic), 0: never or not valid */
  PGconn *pg_prepared;           /* PostgreSQL: the connection on which the counter read is prepared, or NULL */
  char *shm_path;                /* (owned) (nullable) SQLite: the WAL index of the file SQLite opened */
  int shm_fd;                    /* SQLite: @shm_path, read-only, or -1 */
  gboolean sqlite_counted;       /* SQLite: rtp_change_count exists (migration 0014 ran) */
  gint64 shm_retry_us;           /* SQLite: when opening the WAL index may be tried again */
  guint8 shm_header[48];         /* SQLite: its header as last read */
  gint64 shm_read_us;            /* SQLite: when it was read (monotonic), 0: not valid */
  gint64 sqlite_count;           /* SQLite: rtp_change_count.n as last read, -1: unknown */
  gint64 sqlite_count_looked_us; /* SQLite: when it was last looked for (monotonic) */
  /* PostgreSQL: the counter read shared by the requests waiting for it (see "stamp fence") */
  PGconn *fence_conn;    /* (owned) (nullable) a connection of its own, made like libgda's */
  GSource *fence_source; /* (owned) (nullable) @fence_conn's socket readable */
  guint fence_timer;     /* while @fence_conn exists: gives up on a read that takes too long */
  gboolean fence_busy;   /* a read is on its way */
  gint64 fence_sent_us;  /* when it was sent */
  gint64 fence_retry_us; /* when connecting may be tried again after a failure */
  GQueue fence_waiters;  /* FenceWaiter, in arrival order */
};

typedef struct {
  gint64 since_us;
  RtpStampReadyFunc func;
  gpointer user_data;
} FenceWaiter;

G_DEFINE_TYPE (RtpDatabase, rtp_database, G_TYPE_OBJECT)

enum { SIGNAL_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

/* The data may have changed (a change of ours, or one of another connection learnt of). Inside a
 * transaction "changed" waits for its end: a handler that reads then sees what was committed
 * (PostgreSQL's deferred triggers run at COMMIT). */
static void
bump_stamp (RtpDatabase *self)
{
  self->stamp++;
  if (self->in_transaction || self->beginning)
    self->changed_pending = TRUE;
  else
    g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
}

static void
emit_pending_change (RtpDatabase *self)
{
  if (!self->changed_pending)
    return;
  self->changed_pending = FALSE;
  g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
}

static void
cached_statement_free (gpointer data)
{
  CachedStatement *c = data;
  g_clear_object (&c->stmt);
  g_clear_object (&c->params);
  g_free (c);
}

static void
rtp_database_finalize (GObject *object)
{
  RtpDatabase *self = RTP_DATABASE (object);

  rtp_database_close (self);
  g_hash_table_unref (self->prepared);
  g_hash_table_unref (self->cache);
  g_clear_object (&self->delimit);
  g_free (self->provider);
  g_free (self->cnc_string);
  g_free (self->auth_string);
  g_free (self->pg_dbname);
  g_free (self->shm_path);
  g_hash_table_unref (self->raw_cache);
  g_free (self->sqlite_path);
  g_free (self->lead_path);
  G_OBJECT_CLASS (rtp_database_parent_class)->finalize (object);
}

static void
rtp_database_class_init (RtpDatabaseClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = rtp_database_finalize;
  /**
   * RtpDatabase::changed:
   *
   * Emitted whenever the change stamp moves (see rtp_database_get_change_stamp()): by a change
   * this connection made, or one of another connection it learnt of while reading the stamp.
   */
  signals[SIGNAL_CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                          G_TYPE_NONE, 0);
}

static void
rtp_database_init (RtpDatabase *self)
{
  self->cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, cached_statement_free);
  self->prepared = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_array_unref);
  self->delimit = gda_sql_parser_new ();
  g_object_set (self->delimit, "mode", GDA_SQL_PARSER_MODE_DELIMIT, NULL);
  self->raw_cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  self->stamp = 1;
  self->shm_fd = -1;
  self->sqlite_count = -1;
  self->sqlite_count_looked_us = G_MININT64 / 2;
  self->lead_fd = -1;
}

static void fence_drop (RtpDatabase *self, const char *why);

void
rtp_database_close (RtpDatabase *self)
{
  /* the lock goes with the file: another instance leads at its next try */
  if (self->lead_fd >= 0)
    close (self->lead_fd);
  self->lead_fd = -1;
  self->leader = FALSE;
  fence_drop (self, NULL);
  self->pconn = NULL;
  self->stamp++; /* no "changed": this also runs in finalize */
  if (self->shm_fd >= 0)
    close (self->shm_fd);
  self->shm_fd = -1;
  g_hash_table_remove_all (self->prepared);
  g_hash_table_remove_all (self->cache);
  if (self->cnc != NULL)
    {
      if (self->in_transaction)
        rtp_database_rollback (self);
      gda_connection_close (self->cnc);
      g_clear_object (&self->cnc);
    }
}

/* The one place where a libgda error is classified. libgda gives no usable SQLSTATE
 * on either provider, so the message text is all there is. */
static void
classify_error (RtpDatabase *self, GError *gda_error, GError **error)
{
  const char *m = gda_error != NULL && gda_error->message != NULL ? gda_error->message : "";

  if (strstr (m, "UNIQUE constraint failed") != NULL || strstr (m, "duplicate key value") != NULL ||
      strstr (m, "PRIMARY KEY must be unique") != NULL || strstr (m, "is not unique") != NULL)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_EXISTS, m);
      return;
    }
  if (strstr (m, "FOREIGN KEY constraint failed") != NULL || strstr (m, "violates foreign key constraint") != NULL)
    {
      /* a row that refers to one removed meanwhile: a race the caller reports */
      g_debug ("foreign key violation: %s", m);
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_CONFLICT, m);
      return;
    }
  /* past the constraint violations (answers, not failures): an error to count */
  rtp_metrics_inc (RTP_METRIC_DB_ERRORS);
  if (strstr (m, "readonly database") != NULL || strstr (m, "database or disk is full") != NULL ||
      strstr (m, "disk I/O error") != NULL || strstr (m, "No space left") != NULL ||
      strstr (m, "read-only transaction") != NULL || strstr (m, "could not extend file") != NULL)
    {
      g_warning ("database cannot store changes: %s", m);
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_READONLY,
                           _ ("The database cannot store changes at the moment."));
      return;
    }
  if (strstr (m, "server closed the connection") != NULL || strstr (m, "no connection to the server") != NULL ||
      strstr (m, "terminating connection") != NULL || strstr (m, "could not connect") != NULL ||
      strstr (m, "Connection refused") != NULL || strstr (m, "connection is closed") != NULL ||
      strstr (m, "the database system is") != NULL || strstr (m, "could not send data") != NULL ||
      strstr (m, "could not receive data") != NULL || strstr (m, "SSL SYSCALL") != NULL)
    self->broken = TRUE; /* the next statement reconnects */
  if (self->cnc == NULL || !gda_connection_is_opened (self->cnc) || strstr (m, "database is locked") != NULL ||
      strstr (m, "server closed the connection") != NULL || strstr (m, "no connection to the server") != NULL ||
      strstr (m, "terminating connection") != NULL || strstr (m, "could not connect") != NULL ||
      strstr (m, "Connection refused") != NULL || strstr (m, "connection is closed") != NULL ||
      strstr (m, "the database system is") != NULL)
    {
      g_warning ("database not available: %s", m);
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_UNAVAILABLE, _ ("The database is not available."));
      return;
    }
  if (strstr (m, "no transaction is active") != NULL)
    g_debug ("database error: %s", m);
  else
    g_warning ("database error: %s", m);
  g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "database error: %s", m);
}

/* libgda 5.2's PostgreSQL provider crashes (strtoul on a NULL SQLSTATE) when a statement
 * meets a connection the server has just terminated. So before each statement the socket
 * underneath is probed: data waiting there unasked is the server's goodbye (or EOF), and
 * libpq then reports the connection bad; the connection is replaced instead of used.
 * libgda keeps its PGconn in a private struct that starts {reuseable, cnc, pconn}; it is
 * used only after that layout is confirmed, else probing stays off. */
static void
find_pconn (RtpDatabase *self)
{
  gpointer *data;
  PGconn *pconn;

  self->pconn = NULL;
  self->pg_prepared = NULL; /* a new connection knows no prepared statement */
  if (self->kind != RTP_DATABASE_POSTGRESQL || self->cnc == NULL)
    return;
  data = gda_connection_internal_get_provider_data_error (self->cnc, NULL);
  if (data == NULL || data[1] != (gpointer) self->cnc)
    {
      g_debug ("libgda's PostgreSQL connection data has an unknown layout: no connection probing");
      return;
    }
  pconn = data[2];
  if (pconn == NULL || PQstatus (pconn) != CONNECTION_OK || g_strcmp0 (PQdb (pconn), self->pg_dbname) != 0)
    {
      g_debug ("libgda's PostgreSQL connection does not look like ours: no connection probing");
      return;
    }
  self->pconn = pconn;
}

static void
probe_connection (RtpDatabase *self)
{
  struct pollfd pfd;

  if (self->pconn == NULL || self->broken)
    return;
  pfd.fd = PQsocket (self->pconn);
  pfd.events = POLLIN;
  pfd.revents = 0;
  if (pfd.fd < 0 || poll (&pfd, 1, 0) <= 0)
    return;
  /* we LISTEN to nothing: anything arriving on an idle connection is the server leaving
   * ("terminating connection …" and EOF); PQconsumeInput() alone still calls that OK */
  PQconsumeInput (self->pconn);
  g_warning ("the database server closed the connection (%s)", PQerrorMessage (self->pconn));
  self->broken = TRUE;
  bump_stamp (self);
}

/* PostgreSQL: every committed change to the tables whose rows are kept (users, assignments,
 * experiments, PVs) raises rtp_change_count.n (triggers of migration 0006), whoever makes it.
 * One round trip on libgda's libpq connection, far cheaper than a libgda statement; a change
 * committed before it is seen by it. */
/* What the change counter must reflect: changes committed before this monotonic time (the arrival of
 * the request being handled, rtp_database_set_changes_since); G_MAXINT64 outside requests: every call
 * reads the counter. Main thread only, as RtpDatabase. */
static gint64 changes_since_us = G_MAXINT64;

/**
 * rtp_database_set_changes_since:
 * @since_us: a monotonic time, or G_MAXINT64
 *
 * Until the next call, rtp_database_get_change_stamp() needs to see only the changes committed before
 * @since_us: a read of the change counter (PostgreSQL) or of the WAL index header (SQLite) made after
 * @since_us is reused instead of asking again, so that one request (or several that arrived before
 * one read) pays one round trip or pread(), and a change committed before a request arrived is still
 * seen by it. Changes of this process bump the stamp themselves. The HTTP server sets it to a
 * request's arrival while it is handled, the live values to an MQTT message's arrival while it is
 * judged, and both back to G_MAXINT64 after.
 */
void
rtp_database_set_changes_since (gint64 since_us)
{
  changes_since_us = since_us;
}

/* The statement both counter reads run: prepared once per connection, so that the server only
 * executes it (no parse and plan per request). */
#define COUNT_STATEMENT "rtp_change_count_read"
#define COUNT_SQL "SELECT n FROM rtp_change_count"

/* The answer of a counter read sent at @sent_us: the stamp moves when the count did, and every
 * change committed before @sent_us is now known. FALSE when it is not a count. */
static gboolean
take_count (RtpDatabase *self, PGresult *r, gint64 sent_us)
{
  gint64 n;

  if (PQresultStatus (r) != PGRES_TUPLES_OK || PQntuples (r) != 1 || PQnfields (r) != 1)
    return FALSE;
  n = g_ascii_strtoll (PQgetvalue (r, 0, 0), NULL, 10);
  if (n != self->pg_count)
    {
      self->pg_count = n;
      bump_stamp (self);
    }
  if (sent_us > self->pg_read_us)
    self->pg_read_us = sent_us;
  return TRUE;
}

static gboolean
pg_changes_known (RtpDatabase *self)
{
  PGresult *r;
  gboolean ok;
  gint64 sent_us;

  probe_connection (self);
  if (self->pconn == NULL || self->broken)
    return FALSE;
  if (self->pg_read_us != 0 && self->pg_read_us > changes_since_us)
    return TRUE; /* read after the request arrived: every change committed before it is counted */
  sent_us = g_get_monotonic_time ();
  self->pg_read_us = 0;
  if (self->pg_prepared != self->pconn)
    {
      PGresult *p = PQprepare (self->pconn, COUNT_STATEMENT, COUNT_SQL, 0, NULL);
      if (PQresultStatus (p) == PGRES_COMMAND_OK)
        self->pg_prepared = self->pconn;
      PQclear (p);
    }
  if (self->pg_prepared == self->pconn)
    r = PQexecPrepared (self->pconn, COUNT_STATEMENT, 0, NULL, NULL, NULL, 0);
  else
    r = PQexec (self->pconn, COUNT_SQL);
  ok = take_count (self, r, sent_us);
  if (!ok && PQstatus (self->pconn) == CONNECTION_OK)
    self->pg_prepared = NULL; /* prepared again at the next read */
  else if (!ok)
    {
      g_warning ("the database connection failed (%s)", PQerrorMessage (self->pconn));
      self->broken = TRUE;
      bump_stamp (self);
    }
  PQclear (r);
  return ok;
}

/* ---- stamp fence (PostgreSQL) ----------------------------------------------------------------
 *
 * Every request must see the changes committed before it arrived, so on PostgreSQL each one paid a
 * synchronous round trip for the change counter, one after the other on the main thread. Instead,
 * a request whose arrival no completed read covers waits (rtp_database_when_stamp_known) for a
 * read sent after it arrived; one read, sent on a connection of its own without blocking, serves
 * every request that arrived before it was sent. Requests that arrive while it is on its way wait
 * for the next one. When the fence cannot work (its connection fails) the waiters go on at once and
 * their own synchronous read decides, as before. */

/* How long the fence stays off after it failed. */
#define FENCE_RETRY_S 5

static void
fence_wake (RtpDatabase *self, gboolean all)
{
  GQueue ready = G_QUEUE_INIT;

  for (GList *l = self->fence_waiters.head; l != NULL;)
    {
      GList *next = l->next;
      FenceWaiter *w = l->data;
      if (all || (self->pg_read_us != 0 && self->pg_read_us > w->since_us))
        {
          g_queue_unlink (&self->fence_waiters, l);
          g_queue_push_tail_link (&ready, l);
        }
      l = next;
    }
  while (!g_queue_is_empty (&ready))
    {
      FenceWaiter *w = g_queue_pop_head (&ready);
      w->func (w->user_data);
      g_free (w);
    }
}

static void
fence_drop (RtpDatabase *self, const char *why)
{
  if (why != NULL)
    g_message ("the shared change-counter read is off for %d s (%s); each request reads it itself", FENCE_RETRY_S, why);
  if (self->fence_source != NULL)
    {
      g_source_destroy (self->fence_source);
      g_clear_pointer (&self->fence_source, g_source_unref);
    }
  g_clear_handle_id (&self->fence_timer, g_source_remove);
  g_clear_pointer (&self->fence_conn, PQfinish);
  self->fence_busy = FALSE;
  self->fence_retry_us = g_get_monotonic_time () + (gint64) FENCE_RETRY_S * G_USEC_PER_SEC;
  fence_wake (self, TRUE);
}

static gboolean fence_readable (gint fd, GIOCondition condition, gpointer user_data);

/* A read not answered within FENCE_TIMEOUT_S (a hung server, a connection that died without a
 * word): the waiting requests go on and read the counter themselves, the fence is dropped and
 * made again later. */
#define FENCE_TIMEOUT_S 5

static gboolean
fence_check (gpointer user_data)
{
  RtpDatabase *self = user_data;

  if (self->fence_busy && g_get_monotonic_time () - self->fence_sent_us > (gint64) FENCE_TIMEOUT_S * G_USEC_PER_SEC)
    {
      self->fence_timer = 0; /* removed by returning G_SOURCE_REMOVE */
      fence_drop (self, "no answer within " G_STRINGIFY (FENCE_TIMEOUT_S) " s");
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
fence_send (RtpDatabase *self)
{
  if (!PQsendQueryPrepared (self->fence_conn, COUNT_STATEMENT, 0, NULL, NULL, NULL, 0))
    {
      fence_drop (self, PQerrorMessage (self->fence_conn));
      return FALSE;
    }
  self->fence_sent_us = g_get_monotonic_time ();
  self->fence_busy = TRUE;
  if (PQflush (self->fence_conn) < 0)
    {
      fence_drop (self, PQerrorMessage (self->fence_conn));
      return FALSE;
    }
  return TRUE;
}

/* A connection like libgda's (its parameters read back from libpq), in non-blocking mode, with the
 * counter read prepared. Made at the first need, synchronously (once). */
static gboolean
fence_connect (RtpDatabase *self)
{
  PQconninfoOption *info;
  g_autoptr (GPtrArray) keys = g_ptr_array_new ();
  g_autoptr (GPtrArray) values = g_ptr_array_new ();
  PGresult *r;

  if (self->pconn == NULL || g_get_monotonic_time () < self->fence_retry_us)
    return FALSE;
  info = PQconninfo (self->pconn);
  if (info == NULL)
    return FALSE;
  for (PQconninfoOption *o = info; o->keyword != NULL; o++)
    if (o->val != NULL && o->val[0] != '\0')
      {
        g_ptr_array_add (keys, o->keyword);
        g_ptr_array_add (values, o->val);
      }
  g_ptr_array_add (keys, "application_name");
  g_ptr_array_add (values, "realtimeplot-server change counter");
  g_ptr_array_add (keys, NULL);
  g_ptr_array_add (values, NULL);
  self->fence_conn = PQconnectdbParams ((const char *const *) keys->pdata, (const char *const *) values->pdata, 0);
  PQconninfoFree (info);
  if (PQstatus (self->fence_conn) != CONNECTION_OK)
    {
      fence_drop (self, PQerrorMessage (self->fence_conn));
      return FALSE;
    }
  r = PQprepare (self->fence_conn, COUNT_STATEMENT, COUNT_SQL, 0, NULL);
  if (PQresultStatus (r) != PGRES_COMMAND_OK)
    {
      PQclear (r);
      fence_drop (self, PQerrorMessage (self->fence_conn));
      return FALSE;
    }
  PQclear (r);
  PQsetnonblocking (self->fence_conn, 1);
  self->fence_source = g_unix_fd_source_new (PQsocket (self->fence_conn), G_IO_IN | G_IO_HUP | G_IO_ERR);
  g_source_set_callback (self->fence_source, G_SOURCE_FUNC (fence_readable), self, NULL);
  g_source_attach (self->fence_source, NULL);
  self->fence_timer = g_timeout_add_seconds (1, fence_check, self);
  return TRUE;
}

static gboolean
fence_readable (gint fd, GIOCondition condition, gpointer user_data)
{
  RtpDatabase *self = user_data;
  PGresult *r;
  gboolean ok = FALSE;

  if (!PQconsumeInput (self->fence_conn) || PQstatus (self->fence_conn) != CONNECTION_OK ||
      (condition & (G_IO_HUP | G_IO_ERR)) != 0)
    {
      fence_drop (self, PQerrorMessage (self->fence_conn)); /* destroys this source too */
      return G_SOURCE_REMOVE;
    }
  if (PQisBusy (self->fence_conn))
    return G_SOURCE_CONTINUE;
  while ((r = PQgetResult (self->fence_conn)) != NULL)
    {
      ok = take_count (self, r, self->fence_sent_us) || ok;
      PQclear (r);
    }
  if (!self->fence_busy)
    return G_SOURCE_CONTINUE; /* nothing was asked: the server speaking up on an idle connection */
  self->fence_busy = FALSE;
  if (!ok)
    {
      fence_drop (self, "the counter read failed");
      return G_SOURCE_REMOVE;
    }
  fence_wake (self, FALSE); /* handlers run here: one of them may have closed the database */
  if (self->fence_conn == NULL)
    return G_SOURCE_REMOVE;
  if (!g_queue_is_empty (&self->fence_waiters) && !self->fence_busy)
    fence_send (self); /* those that arrived while it was on its way */
  return self->fence_conn != NULL ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/**
 * rtp_database_stamp_known_since:
 *
 * Returns: whether rtp_database_get_change_stamp() can answer for a request that arrived at @since_us
 *   without asking the database server: always on SQLite (one pread), on PostgreSQL when a counter
 *   read sent after @since_us has completed.
 */
gboolean
rtp_database_stamp_known_since (RtpDatabase *self, gint64 since_us)
{
  if (self->kind != RTP_DATABASE_POSTGRESQL || self->in_transaction)
    return TRUE;
  return self->pg_read_us != 0 && self->pg_read_us > since_us;
}

/**
 * rtp_database_when_stamp_known:
 * @since_us: the request's arrival
 * @func: called once, from the main loop, when a counter read sent after @since_us completed — or at
 *   once when that cannot happen (no PostgreSQL, the fence's connection failed): the request's own
 *   read then decides
 *
 * Several requests waiting at the same moment share one read.
 */
void
rtp_database_when_stamp_known (RtpDatabase *self, gint64 since_us, RtpStampReadyFunc func, gpointer user_data)
{
  FenceWaiter *w;

  if (rtp_database_stamp_known_since (self, since_us) || (self->fence_conn == NULL && !fence_connect (self)))
    {
      func (user_data);
      return;
    }
  w = g_new (FenceWaiter, 1);
  w->since_us = since_us;
  w->func = func;
  w->user_data = user_data;
  g_queue_push_tail (&self->fence_waiters, w);
  if (!self->fence_busy)
    fence_send (self); /* on failure the waiters were woken */
}

/* SQLite in WAL mode: every commit, by any connection of any process, rewrites the header of
 * the WAL index (the "-shm" file; its change counter, frame count, salts and checksum; SQLite's
 * file format, section "WAL-index format"), the same header SQLite's readers look at. One
 * pread() of it tells whether anything changed. */
static gboolean
sqlite_changes_known (RtpDatabase *self)
{
  guint8 header[sizeof self->shm_header];

  if (self->shm_fd < 0)
    {
      gint64 now = g_get_monotonic_time ();

      if (self->cnc == NULL || self->shm_path == NULL || now < self->shm_retry_us)
        return FALSE;
      self->shm_fd = g_open (self->shm_path, O_RDONLY | O_CLOEXEC, 0);
      if (self->shm_fd < 0)
        {
          g_debug ("cannot open %s (%s): nothing read from the database is reused", self->shm_path, g_strerror (errno));
          self->shm_retry_us = now + G_USEC_PER_SEC;
          return FALSE;
        }
      memset (self->shm_header, 0, sizeof self->shm_header);
      self->shm_read_us = 0;
      bump_stamp (self);
    }
  if (self->shm_read_us != 0 && self->shm_read_us > changes_since_us)
    return TRUE; /* read after the request (or message) arrived: as on PostgreSQL */
  self->shm_read_us = g_get_monotonic_time ();
  if (pread (self->shm_fd, header, sizeof header, 0) != (ssize_t) sizeof header)
    {
      self->shm_read_us = 0;
      return FALSE;
    }
  if (memcmp (header, self->shm_header, sizeof header) != 0 || self->sqlite_count < 0)
    {
      /* something was committed (or checkpointed): whether it changed kept rows, the counter says;
       * read after the header, it counts at least what the header shows */
      g_autoptr (GError) error = NULL;
      gint64 n = -1;

      if (!self->sqlite_counted && self->shm_read_us - self->sqlite_count_looked_us >= G_USEC_PER_SEC)
        {
          /* not before migrations: looked for at most once a second, quietly */
          self->sqlite_count_looked_us = self->shm_read_us;
          self->sqlite_counted = rtp_database_select_int (self, &error,
                                                          "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                                                          "AND name = 'rtp_change_count'",
                                                          NULL) == 1;
        }
      if (self->sqlite_counted)
        n = rtp_database_select_int (self, &error, COUNT_SQL, NULL);
      if (n < 0)
        {
          g_debug ("cannot read the change counter (%s): nothing read from the database is reused",
                   error != NULL ? error->message : "no row");
          self->shm_read_us = 0;
          return FALSE;
        }
      memcpy (self->shm_header, header, sizeof header);
      if (n != self->sqlite_count)
        {
          self->sqlite_count = n;
          bump_stamp (self);
        }
    }
  return TRUE;
}

/**
 * rtp_database_get_change_stamp:
 *
 * For reusing what was read before: a number that changes whenever kept data may have
 * changed since it was last returned, by this connection or by any other (another
 * instance, another process). Reads made while it keeps the same value saw the same data.
 * Kept data are the rows whose changes raise the change counter rtp_change_count (users,
 * assignments, experiments, PVs, subscriptions, the state of alarms; migrations 0006, 0013,
 * 0014, 0015): a read of other tables must not be kept under it.
 *
 * Returns: the stamp, or 0 when changes by others cannot be seen right now (no WAL index,
 *   no change counter, connection lost): then nothing may be reused.
 */
guint64
rtp_database_get_change_stamp (RtpDatabase *self)
{
  if (self->in_transaction)
    return 0; /* what is read now may still be rolled back */
  if (self->kind == RTP_DATABASE_SQLITE)
    return sqlite_changes_known (self) ? self->stamp : 0;
  return pg_changes_known (self) ? self->stamp : 0;
}

/* A write of this connection: whether it changed kept rows, the change counter says (its triggers,
 * migrations 0006, 0013, 0014 and 0015), read at once — at the commit, inside a transaction — so that
 * "changed" is told before the next value or request is handled. A write of rows nobody keeps (an
 * outbox row sent, an alarm's latest value) leaves the stamp, and with it everything kept. */
static void
learn_own_changes (RtpDatabase *self)
{
  self->shm_read_us = 0; /* not a read made before this write */
  self->pg_read_us = 0;
  (void) rtp_database_get_change_stamp (self);
}

static void
note_write (RtpDatabase *self)
{
  if (self->in_transaction || self->beginning)
    self->wrote = TRUE;
  else
    learn_own_changes (self);
}

static char *
rfc1738 (const char *s)
{
  return gda_rfc1738_encode (s);
}

/**
 * rtp_database_parse_uri:
 *
 * Turns `sqlite:///path` (relative to the working directory, `sqlite:////abs` absolute, as
 * SQLAlchemy reads it) or `postgresql://user:pw@host:port/db` into libgda's provider name,
 * connection string and authentication string.
 */
gboolean
rtp_database_parse_uri (const char *uri, RtpDatabaseKind *kind, char **provider, char **cnc_string, char **auth_string,
                        char **sqlite_path, GError **error)
{
  if (g_str_has_prefix (uri, "sqlite:///"))
    {
      const char *rest = uri + strlen ("sqlite:///");
      g_autofree char *path = NULL;
      g_autofree char *dir = NULL;
      g_autofree char *base = NULL;
      g_autofree char *dir_enc = NULL;
      g_autofree char *name_enc = NULL;

      if (rest[0] == '\0')
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "SQLALCHEMY_DATABASE_URI: '%s' names no file", uri);
          return FALSE;
        }
      path = g_canonicalize_filename (rest, NULL);
      dir = g_path_get_dirname (path);
      base = g_path_get_basename (path);
      /* libgda's SQLite provider looks for DB_NAME + ".db" first, then DB_NAME itself */
      if (g_str_has_suffix (base, ".db"))
        base[strlen (base) - 3] = '\0';
      dir_enc = rfc1738 (dir);
      name_enc = rfc1738 (base);
      *kind = RTP_DATABASE_SQLITE;
      *provider = g_strdup ("SQLite");
      *cnc_string = g_strdup_printf ("DB_DIR=%s;DB_NAME=%s", dir_enc, name_enc);
      *auth_string = NULL;
      *sqlite_path = g_steal_pointer (&path);
      return TRUE;
    }
  else
    {
      g_autoptr (GUri) parsed = NULL;
      g_autoptr (GString) cnc = g_string_new (NULL);
      g_autoptr (GString) auth = g_string_new (NULL);
      const char *host;
      const char *path;
      const char *userinfo;
      const char *query;
      g_autoptr (GError) local_error = NULL;

      if (!g_str_has_prefix (uri, "postgresql://") && !g_str_has_prefix (uri, "postgresql+psycopg2://") &&
          !g_str_has_prefix (uri, "postgres://"))
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "SQLALCHEMY_DATABASE_URI: unsupported database '%s'", uri);
          return FALSE;
        }
      parsed = g_uri_parse (uri, G_URI_FLAGS_HAS_PASSWORD | G_URI_FLAGS_ENCODED, &local_error);
      if (parsed == NULL)
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "SQLALCHEMY_DATABASE_URI: %s", local_error->message);
          return FALSE;
        }
      host = g_uri_get_host (parsed);
      path = g_uri_get_path (parsed);
      userinfo = g_uri_get_user (parsed);
      query = g_uri_get_query (parsed);
      if (path == NULL || path[0] != '/' || path[1] == '\0')
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_INVALID, "SQLALCHEMY_DATABASE_URI: no database name in the URI");
          return FALSE;
        }
      {
        g_autofree char *db = g_uri_unescape_string (path + 1, NULL);
        g_autofree char *db_enc = rfc1738 (db != NULL ? db : path + 1);
        g_string_append_printf (cnc, "DB_NAME=%s", db_enc);
      }
      if (host != NULL && host[0] != '\0')
        {
          g_autofree char *h = g_uri_unescape_string (host, NULL);
          g_autofree char *h_enc = rfc1738 (h);
          g_string_append_printf (cnc, ";HOST=%s", h_enc);
        }
      if (g_uri_get_port (parsed) > 0)
        g_string_append_printf (cnc, ";PORT=%d", g_uri_get_port (parsed));
      if (query != NULL)
        {
          /* ?host=/run/postgresql selects a unix socket directory, as libpq does */
          g_autoptr (GHashTable) q = g_uri_parse_params (query, -1, "&", G_URI_PARAMS_NONE, NULL);
          const char *qhost = q != NULL ? g_hash_table_lookup (q, "host") : NULL;
          if (qhost != NULL)
            {
              g_autofree char *h_enc = rfc1738 (qhost);
              g_string_append_printf (cnc, ";HOST=%s", h_enc);
            }
        }
      if (userinfo != NULL)
        {
          g_autofree char *u = g_uri_unescape_string (userinfo, NULL);
          g_autofree char *u_enc = rfc1738 (u);
          g_string_append_printf (auth, "USERNAME=%s", u_enc);
        }
      if (g_uri_get_password (parsed) != NULL)
        {
          g_autofree char *p = g_uri_unescape_string (g_uri_get_password (parsed), NULL);
          g_autofree char *p_enc = rfc1738 (p);
          g_string_append_printf (auth, "%sPASSWORD=%s", auth->len > 0 ? ";" : "", p_enc);
        }
      *kind = RTP_DATABASE_POSTGRESQL;
      *provider = g_strdup ("PostgreSQL");
      *cnc_string = g_string_free (g_steal_pointer (&cnc), FALSE);
      *auth_string = auth->len > 0 ? g_string_free (g_steal_pointer (&auth), FALSE) : NULL;
      *sqlite_path = NULL;
      return TRUE;
    }
}

static gboolean
pragma (RtpDatabase *self, const char *sql, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GdaDataModel) model = gda_connection_execute_select_command (self->cnc, sql, &local_error);

  if (model == NULL)
    {
      classify_error (self, local_error, error);
      return FALSE;
    }
  return TRUE;
}

static RtpDatabase *open_full (const char *uri, gboolean read_only, const char *password, GError **error);

RtpDatabase *
rtp_database_open (const char *uri, GError **error)
{
  return open_full (uri, FALSE, NULL, error);
}

/* @password: for a PostgreSQL URI that names none (it may come from the keyring) */
RtpDatabase *
rtp_database_open_with_password (const char *uri, const char *password, GError **error)
{
  return open_full (uri, FALSE, password, error);
}

/* A connection that changes nothing in the file (no WAL switch): for looking before acting. */
RtpDatabase *
rtp_database_open_read_only (const char *uri, GError **error)
{
  return open_full (uri, TRUE, NULL, error);
}

static RtpDatabase *
open_full (const char *uri, gboolean read_only, const char *password, GError **error)
{
  g_autoptr (RtpDatabase) self = g_object_new (RTP_TYPE_DATABASE, NULL);
  g_autofree char *provider = NULL;
  g_autofree char *cnc_string = NULL;
  g_autofree char *auth_string = NULL;
  g_autoptr (GError) local_error = NULL;

  if (!rtp_database_parse_uri (uri, &self->kind, &provider, &cnc_string, &auth_string, &self->sqlite_path, error))
    return NULL;

  if (self->kind == RTP_DATABASE_SQLITE)
    {
      g_autofree char *dir = g_path_get_dirname (self->sqlite_path);
      if (g_mkdir_with_parents (dir, 0700) != 0)
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_UNAVAILABLE, "Cannot create the directory %s: %s", dir,
                       g_strerror (errno));
          return NULL;
        }
      /* libgda would create DB_NAME.db for a missing file; an empty file is an empty database */
      if (!g_file_test (self->sqlite_path, G_FILE_TEST_EXISTS))
        {
          int fd = g_open (self->sqlite_path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
          if (fd < 0)
            {
              g_set_error (error, RTP_ERROR, RTP_ERROR_UNAVAILABLE, "Cannot create the database %s: %s",
                           self->sqlite_path, g_strerror (errno));
              return NULL;
            }
          close (fd);
        }
    }

  if (self->kind == RTP_DATABASE_POSTGRESQL && password != NULL && password[0] != '\0' &&
      (auth_string == NULL || strstr (auth_string, "PASSWORD=") == NULL))
    {
      g_autofree char *enc = rfc1738 (password);
      char *with = g_strdup_printf ("%s%sPASSWORD=%s", auth_string != NULL ? auth_string : "",
                                    auth_string != NULL ? ";" : "", enc);
      g_free (auth_string);
      auth_string = with;
    }
  self->provider = g_strdup (provider);
  self->cnc_string = g_strdup (cnc_string);
  self->auth_string = g_strdup (auth_string);
  self->cnc = gda_connection_open_from_string (provider, cnc_string, auth_string,
                                               read_only ? GDA_CONNECTION_OPTIONS_READ_ONLY
                                                         : GDA_CONNECTION_OPTIONS_NONE,
                                               &local_error);
  if (self->cnc == NULL)
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_UNAVAILABLE, "Cannot open the database: %s",
                   local_error != NULL ? local_error->message : "unknown error");
      return NULL;
    }
  if (self->kind == RTP_DATABASE_POSTGRESQL)
    {
      g_autoptr (GUri) parsed = g_uri_parse (uri, G_URI_FLAGS_HAS_PASSWORD | G_URI_FLAGS_ENCODED, NULL);
      const char *path = parsed != NULL ? g_uri_get_path (parsed) : NULL;
      self->pg_dbname = path != NULL && path[0] == '/' ? g_uri_unescape_string (path + 1, NULL) : NULL;
      find_pconn (self);
    }

  if (self->kind == RTP_DATABASE_SQLITE && !read_only)
    {
      if (!pragma (self, "PRAGMA journal_mode=WAL", error) || !pragma (self, "PRAGMA foreign_keys=ON", error) ||
          !pragma (self, "PRAGMA busy_timeout=5000", error) || !pragma (self, "PRAGMA synchronous=FULL", error))
        return NULL;
      if (g_access (self->sqlite_path, W_OK) != 0)
        g_warning ("the database file %s is not writable (%s): reads work, changes are answered 503", self->sqlite_path,
                   g_strerror (errno));
      /* the file SQLite really opened (libgda tries DB_NAME.db before DB_NAME), for its WAL index and the
       * leader lock beside it */
      {
        g_autoptr (GdaDataModel) list = gda_connection_execute_select_command (self->cnc, "PRAGMA database_list", NULL);
        const char *file = NULL;
        for (guint i = 0; list != NULL && i < rtp_db_rows (list) && file == NULL; i++)
          if (g_strcmp0 (rtp_db_str (list, i, 1), "main") == 0 && rtp_db_str (list, i, 2) != NULL &&
              rtp_db_str (list, i, 2)[0] != '\0')
            file = rtp_db_str (list, i, 2);
        if (file != NULL)
          self->shm_path = g_strconcat (file, "-shm", NULL);
        else
          g_warning ("cannot tell which file SQLite opened: every request reads its user again");
        self->lead_path = g_strconcat (file != NULL ? file : self->sqlite_path, "-leader", NULL);
      }
    }
  return g_steal_pointer (&self);
}

RtpDatabaseKind
rtp_database_get_kind (RtpDatabase *self)
{
  return self->kind;
}

const char *
rtp_database_get_kind_name (RtpDatabase *self)
{
  return self->kind == RTP_DATABASE_SQLITE ? "sqlite" : "postgresql";
}

const char *
rtp_database_get_sqlite_path (RtpDatabase *self)
{
  return self->sqlite_path;
}

/* ---- statements ---------------------------------------------------------------- */

typedef struct {
  const char *name;
  RtpDbType type;
  const char *s;
  gint64 i;
  gboolean is_null;
} Param;

static const char *
type_name (RtpDbType type)
{
  switch (type)
    {
      case RTP_DB_STR:
        return "string";
      case RTP_DB_INT:
      case RTP_DB_INT_NULL:
      case RTP_DB_BOOL:
        return "gint64";
      case RTP_DB_END:
      default:
        g_assert_not_reached ();
    }
}

static const Param *
find_param (GArray *params, const char *name, gsize len)
{
  for (guint i = 0; i < params->len; i++)
    {
      const Param *p = &g_array_index (params, Param, i);
      if (strlen (p->name) == len && strncmp (p->name, name, len) == 0)
        return p;
    }
  return NULL;
}

/* A NULL value is written into the SQL instead of being bound: libgda rewrites every statement that
 * has a NULL parameter on each execution and leaks the copy (about 1 KB a statement with Debian's
 * 5.2.10). Its rewrite turns "x = NULL-parameter" into "x IS NULL" (and <>/!= into IS NOT NULL);
 * so does this one, except in the SET list of an UPDATE, where "=" assigns. */
static void
append_null (GString *out, gboolean in_set)
{
  gsize end = out->len;

  while (end > 0 && out->str[end - 1] == ' ')
    end--;
  if (!in_set && end >= 2 && (strncmp (out->str + end - 2, "<>", 2) == 0 || strncmp (out->str + end - 2, "!=", 2) == 0))
    {
      g_string_truncate (out, end - 2);
      g_string_append (out, " IS NOT NULL");
    }
  else if (!in_set && end >= 1 && out->str[end - 1] == '=' && (end < 2 || strchr ("<>!", out->str[end - 2]) == NULL))
    {
      g_string_truncate (out, end - 1);
      g_string_append (out, " IS NULL");
    }
  else
    g_string_append (out, "NULL");
}

/* Rewrites `:name` into `##name::type::null` (or NULL, see append_null); leaves `::casts` and quoted
 * text alone. */
static char *
rewrite_sql (const char *sql, GArray *params, GError **error)
{
  g_autoptr (GString) out = g_string_sized_new (strlen (sql) + 32);
  gboolean in_quote = FALSE;
  gboolean in_set = FALSE;

  for (const char *p = sql; *p != '\0'; p++)
    {
      if (*p == '\'')
        in_quote = !in_quote;
      if (!in_quote && g_ascii_isalpha (*p) && (p == sql || !(g_ascii_isalnum (p[-1]) || p[-1] == '_')))
        {
          /* keywords that open and close the SET list of an UPDATE */
          if (g_ascii_strncasecmp (p, "SET", 3) == 0 && !(g_ascii_isalnum (p[3]) || p[3] == '_'))
            in_set = TRUE;
          else if (g_ascii_strncasecmp (p, "WHERE", 5) == 0 && !(g_ascii_isalnum (p[5]) || p[5] == '_'))
            in_set = FALSE;
        }
      if (!in_quote && *p == ':' && p[1] == ':')
        {
          g_string_append (out, "::");
          p++;
          continue;
        }
      if (!in_quote && *p == ':' && (g_ascii_isalpha (p[1]) || p[1] == '_'))
        {
          const char *start = p + 1;
          const char *end = start;
          const Param *param;
          while (g_ascii_isalnum (*end) || *end == '_')
            end++;
          param = find_param (params, start, end - start);
          if (param == NULL)
            {
              g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "SQL parameter :%.*s has no value", (int) (end - start),
                           start);
              return NULL;
            }
          if (param->is_null)
            append_null (out, in_set);
          else
            g_string_append_printf (out, "##%s::%s::null", param->name, type_name (param->type));
          p = end - 1;
          continue;
        }
      g_string_append_c (out, *p);
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

static GArray *
collect_params (va_list args)
{
  GArray *params = g_array_new (FALSE, TRUE, sizeof (Param));
  const char *name;

  while ((name = va_arg (args, const char *)) != NULL)
    {
      Param p = { .name = name };
      p.type = va_arg (args, RtpDbType);
      switch (p.type)
        {
          case RTP_DB_STR:
            p.s = va_arg (args, const char *);
            p.is_null = p.s == NULL;
            break;
          case RTP_DB_INT:
            p.i = va_arg (args, gint64);
            break;
          case RTP_DB_INT_NULL:
            {
              const gint64 *v = va_arg (args, const gint64 *);
              p.is_null = v == NULL;
              p.i = v != NULL ? *v : 0;
              break;
            }
          case RTP_DB_BOOL:
            p.i = va_arg (args, gboolean) ? 1 : 0;
            break;
          case RTP_DB_END:
          default:
            g_assert_not_reached ();
        }
      g_array_append_val (params, p);
    }
  return params;
}

/* After the database server went away: a new connection, at most one attempt a second,
 * so that a request finds the database again by itself once it is back. */
static gboolean
ensure_connection (RtpDatabase *self, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  gint64 now = g_get_monotonic_time ();

  probe_connection (self);
  if (self->cnc != NULL && !self->broken)
    return TRUE;
  /* within a transaction the caller must roll back first: its earlier statements are lost */
  if (self->in_transaction || self->provider == NULL || now - self->last_attempt_us < G_USEC_PER_SEC)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_UNAVAILABLE, _ ("The database is not available."));
      return FALSE;
    }
  self->last_attempt_us = now;
  if (self->cnc != NULL)
    {
      g_hash_table_remove_all (self->prepared);
      g_hash_table_remove_all (self->cache);
      g_hash_table_remove_all (self->raw_cache);
      self->pconn = NULL;
      bump_stamp (self);
      gda_connection_close (self->cnc);
      g_clear_object (&self->cnc);
    }
  self->in_transaction = FALSE;
  self->wrote = FALSE;
  self->cnc = gda_connection_open_from_string (self->provider, self->cnc_string, self->auth_string,
                                               GDA_CONNECTION_OPTIONS_NONE, &local_error);
  if (self->cnc == NULL)
    {
      g_warning ("reconnecting to the database failed: %s", local_error != NULL ? local_error->message : "?");
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_UNAVAILABLE, _ ("The database is not available."));
      return FALSE;
    }
  self->broken = FALSE;
  self->leader = FALSE; /* a session lock goes with its connection */
  find_pconn (self);
  bump_stamp (self);
  g_message ("reconnected to the database");
  return TRUE;
}

static CachedStatement *
prepare (RtpDatabase *self, const char *sql, GArray *params, GError **error)
{
  g_autofree char *rewritten = NULL;
  CachedStatement *cached;
  g_autoptr (GError) local_error = NULL;

  if (!ensure_connection (self, error))
    return NULL;
  {
    GArray *variants = g_hash_table_lookup (self->prepared, sql);
    guint32 nulls = 0;

    for (guint i = 0; i < params->len; i++)
      if (g_array_index (params, Param, i).is_null)
        nulls ^= g_str_hash (g_array_index (params, Param, i).name) | 1u;
    cached = NULL;
    for (guint i = 0; variants != NULL && i < variants->len && cached == NULL; i++)
      {
        Prepared *v = &g_array_index (variants, Prepared, i);
        if (v->nulls == nulls && v->n_params == params->len)
          cached = v->cached;
      }
    if (cached == NULL)
      {
        rewritten = rewrite_sql (sql, params, error);
        if (rewritten == NULL)
          return NULL;
        cached = g_hash_table_lookup (self->cache, rewritten);
        if (cached == NULL)
          {
            GdaSet *set = NULL;
            GdaStatement *stmt = gda_connection_parse_sql_string (self->cnc, rewritten, &set, &local_error);
            if (stmt == NULL)
              {
                g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "cannot parse SQL '%s': %s", sql,
                             local_error != NULL ? local_error->message : "?");
                return NULL;
              }
            cached = g_new0 (CachedStatement, 1);
            cached->stmt = stmt;
            cached->params = set;
            g_hash_table_insert (self->cache, g_steal_pointer (&rewritten), cached);
          }
        if (variants == NULL)
          {
            variants = g_array_new (FALSE, FALSE, sizeof (Prepared));
            g_hash_table_insert (self->prepared, g_strdup (sql), variants);
          }
        {
          Prepared v = { nulls, params->len, cached };
          g_array_append_val (variants, v);
        }
      }
  }

  for (guint i = 0; i < params->len; i++)
    {
      const Param *p = &g_array_index (params, Param, i);
      GdaHolder *holder = cached->params != NULL ? gda_set_get_holder (cached->params, p->name) : NULL;
      GValue value = G_VALUE_INIT;
      gboolean ok;

      if (holder == NULL)
        continue; /* passed but unused in this statement */
      if (p->is_null)
        {
          ok = gda_holder_set_value (holder, NULL, &local_error);
        }
      else if (p->type == RTP_DB_STR)
        {
          g_value_init (&value, G_TYPE_STRING);
          g_value_set_string (&value, p->s);
          ok = gda_holder_set_value (holder, &value, &local_error);
          g_value_unset (&value);
        }
      else
        {
          g_value_init (&value, G_TYPE_INT64);
          g_value_set_int64 (&value, p->i);
          ok = gda_holder_set_value (holder, &value, &local_error);
          g_value_unset (&value);
        }
      if (!ok)
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "cannot bind :%s: %s", p->name,
                       local_error != NULL ? local_error->message : "?");
          return NULL;
        }
    }
  return cached;
}

GdaDataModel *
rtp_database_select_valist (RtpDatabase *self, GError **error, const char *sql, va_list args)
{
  g_autoptr (GArray) params = collect_params (args);
  CachedStatement *cached = prepare (self, sql, params, error);
  g_autoptr (GError) local_error = NULL;
  GdaDataModel *model;

  if (cached == NULL)
    return NULL;
  model = gda_connection_statement_execute_select (self->cnc, cached->stmt, cached->params, &local_error);
  if (model == NULL)
    classify_error (self, local_error, error);
  return model;
}

GdaDataModel *
rtp_database_select (RtpDatabase *self, GError **error, const char *sql, ...)
{
  va_list args;
  GdaDataModel *model;

  va_start (args, sql);
  model = rtp_database_select_valist (self, error, sql, args);
  va_end (args);
  return model;
}

gint64
rtp_database_select_int (RtpDatabase *self, GError **error, const char *sql, ...)
{
  va_list args;
  g_autoptr (GdaDataModel) model = NULL;

  va_start (args, sql);
  model = rtp_database_select_valist (self, error, sql, args);
  va_end (args);
  return model != NULL ? rtp_db_int0 (model, 0, 0) : -1;
}

gint
rtp_database_exec_valist (RtpDatabase *self, GError **error, const char *sql, va_list args)
{
  g_autoptr (GArray) params = collect_params (args);
  CachedStatement *cached = prepare (self, sql, params, error);
  g_autoptr (GError) local_error = NULL;
  gint rows;

  if (cached == NULL)
    return -1;
  rows = gda_connection_statement_execute_non_select (self->cnc, cached->stmt, cached->params, NULL, &local_error);
  note_write (self);
  if (rows < 0 && local_error != NULL)
    {
      classify_error (self, local_error, error);
      return -1;
    }
  if (rows < -1)
    {
      /* libgda reports some failures only by the count */
      g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "database error: statement failed (%d): %s", rows, sql);
      return -1;
    }
  return MAX (rows, 0);
}

/**
 * rtp_database_exec:
 *
 * Returns: the number of rows changed, or -1 with @error set.
 */
gint
rtp_database_exec (RtpDatabase *self, GError **error, const char *sql, ...)
{
  va_list args;
  gint rows;

  va_start (args, sql);
  rows = rtp_database_exec_valist (self, error, sql, args);
  va_end (args);
  return rows;
}

gboolean
rtp_database_exec_script (RtpDatabase *self, const char *script, GError **error)
{
  g_auto (GStrv) lines = g_strsplit (script, "\n", -1);
  g_autoptr (GString) code = g_string_new (NULL);
  g_auto (GStrv) parts = NULL;

  /* comment lines go first, so that a ';' inside a comment does not split a statement */
  for (guint j = 0; lines[j] != NULL; j++)
    {
      const char *l = lines[j];
      while (g_ascii_isspace (*l))
        l++;
      if (g_str_has_prefix (l, "--"))
        continue;
      g_string_append (code, lines[j]);
      g_string_append_c (code, '\n');
    }
  parts = g_strsplit (code->str, ";", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    {
      g_autoptr (GError) local_error = NULL;
      g_autoptr (GString) joined = NULL;
      char *stmt = g_strstrip (parts[i]);

      if (stmt[0] == '\0')
        continue;
      /* a trigger's body holds statements ending in ';': up to its END */
      if (g_ascii_strncasecmp (stmt, "CREATE TRIGGER", strlen ("CREATE TRIGGER")) == 0)
        {
          joined = g_string_new (stmt);
          while (!(joined->len >= 3 && g_ascii_strcasecmp (joined->str + joined->len - 3, "END") == 0) &&
                 parts[i + 1] != NULL)
            {
              g_string_append_c (joined, ';');
              g_string_append (joined, g_strstrip (parts[++i]));
            }
          stmt = joined->str;
        }
      bump_stamp (self);
      self->sqlite_count_looked_us = G_MININT64 / 2; /* the script may create the change counter */
      if (gda_connection_execute_non_select_command (self->cnc, stmt, &local_error) < 0 && local_error != NULL)
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "%s (in: %s)", local_error->message, stmt);
          return FALSE;
        }
    }
  return TRUE;
}

/* ---- transactions ---------------------------------------------------------------- */

/* Transactions and savepoints are sent as SQL parsed in libgda's "delimit" mode: such
 * statements have no known type, so libgda passes them through and keeps no "transaction
 * status" — which it would otherwise grow by one event per statement and walk on every
 * statement, making a 10 000-line import quadratic (27 s instead of 0.7 s on SQLite; on
 * PostgreSQL 18 s instead of 4 s). */
static gboolean run_sql (RtpDatabase *self, const char *sql, gboolean undoes, GError **error);

gboolean
rtp_database_begin (RtpDatabase *self, GError **error)
{
  g_return_val_if_fail (!self->in_transaction, FALSE);
  /* a stamp move while beginning (a broken connection replaced: only outside a transaction) is
   * told at the transaction's end */
  self->beginning = TRUE;
  if (!run_sql (self, "BEGIN", FALSE, error))
    {
      self->beginning = FALSE;
      emit_pending_change (self);
      return FALSE;
    }
  self->beginning = FALSE;
  self->in_transaction = TRUE;
  return TRUE;
}

struct _RtpTransaction {
  RtpDatabase *db; /* (owned) */
  gboolean done;   /* committed, or rolled back by a failed commit */
};

/* Returns: (transfer full) (nullable): the open transaction, or NULL with @error set */
RtpTransaction *
rtp_database_begin_transaction (RtpDatabase *self, GError **error)
{
  RtpTransaction *tx;

  if (!rtp_database_begin (self, error))
    return NULL;
  tx = g_new0 (RtpTransaction, 1);
  tx->db = g_object_ref (self);
  return tx;
}

gboolean
rtp_transaction_commit (RtpTransaction *tx, GError **error)
{
  g_return_val_if_fail (tx != NULL && !tx->done, FALSE);
  tx->done = TRUE; /* a failed commit rolls back itself */
  return rtp_database_commit (tx->db, error);
}

void
rtp_transaction_free (RtpTransaction *tx)
{
  if (tx == NULL)
    return;
  if (!tx->done)
    rtp_database_rollback (tx->db);
  g_object_unref (tx->db);
  g_free (tx);
}

gboolean
rtp_database_commit (RtpDatabase *self, GError **error)
{
  g_return_val_if_fail (self->in_transaction, FALSE);
  if (!run_sql (self, "COMMIT", FALSE, error))
    {
      rtp_database_rollback (self);
      return FALSE;
    }
  self->in_transaction = FALSE;
  if (self->wrote)
    {
      self->wrote = FALSE;
      learn_own_changes (self);
    }
  emit_pending_change (self);
  return TRUE;
}

void
rtp_database_rollback (RtpDatabase *self)
{
  g_autoptr (GError) local_error = NULL;

  if (!self->in_transaction)
    return;
  self->in_transaction = FALSE;
  self->wrote = FALSE; /* the rollback moves the stamp */
  if (self->cnc != NULL && !self->broken && !run_sql (self, "ROLLBACK", TRUE, &local_error))
    {
      /* SQLite ends the transaction itself after an I/O error or a full disk: nothing is left to undo */
      if (strstr (local_error->message, "no transaction is active") != NULL)
        g_debug ("rollback: %s", local_error->message);
      else
        g_warning ("rollback failed: %s", local_error->message);
    }
  emit_pending_change (self);
}

/* Transaction control. BEGIN, COMMIT, SAVEPOINT and RELEASE change no data: the writes between
 * them move the stamp, so a transaction that only read (the alerter's, for a value that leaves an
 * alarm as it was) leaves every kept value in place. A rollback (@undoes) may undo writes: it
 * moves the stamp. */
static gboolean
run_sql (RtpDatabase *self, const char *sql, gboolean undoes, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  GdaStatement *stmt;

  probe_connection (self);
  /* a broken connection is replaced when a transaction starts, never in the middle of one */
  if ((self->broken || self->cnc == NULL) && g_str_equal (sql, "BEGIN") && !self->in_transaction &&
      !ensure_connection (self, error))
    return FALSE;
  if (self->cnc == NULL || self->broken)
    {
      g_set_error_literal (error, RTP_ERROR, RTP_ERROR_UNAVAILABLE, _ ("The database is not available."));
      return FALSE;
    }
  stmt = g_hash_table_lookup (self->raw_cache, sql);
  if (stmt == NULL)
    {
      stmt = gda_sql_parser_parse_string (self->delimit, sql, NULL, &local_error);
      if (stmt == NULL)
        {
          g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "cannot parse “%s”: %s", sql, local_error->message);
          return FALSE;
        }
      g_hash_table_insert (self->raw_cache, g_strdup (sql), stmt);
    }
  if (undoes)
    bump_stamp (self);
  if (gda_connection_statement_execute_non_select (self->cnc, stmt, NULL, NULL, &local_error) < 0 &&
      local_error != NULL)
    {
      classify_error (self, local_error, error);
      return FALSE;
    }
  return TRUE;
}

static gboolean
valid_savepoint_name (const char *name)
{
  for (const char *p = name; *p != '\0'; p++)
    if (!g_ascii_isalnum (*p) && *p != '_')
      return FALSE;
  return name[0] != '\0';
}

gboolean
rtp_database_savepoint (RtpDatabase *self, const char *name, GError **error)
{
  g_autofree char *sql = NULL;

  g_return_val_if_fail (valid_savepoint_name (name), FALSE);
  sql = g_strdup_printf ("SAVEPOINT %s", name);
  return run_sql (self, sql, FALSE, error);
}

void
rtp_database_rollback_to (RtpDatabase *self, const char *name)
{
  g_autofree char *sql = NULL;
  g_autoptr (GError) error = NULL;

  g_return_if_fail (valid_savepoint_name (name));
  sql = g_strdup_printf ("ROLLBACK TO SAVEPOINT %s", name);
  if (!run_sql (self, sql, TRUE, &error))
    g_warning ("rollback to savepoint failed: %s", error->message);
}

gboolean
rtp_database_release (RtpDatabase *self, const char *name, GError **error)
{
  g_autofree char *sql = NULL;

  g_return_val_if_fail (valid_savepoint_name (name), FALSE);
  sql = g_strdup_printf ("RELEASE SAVEPOINT %s", name);
  return run_sql (self, sql, FALSE, error);
}

/* ---- several instances ---------------------------------------------------------------- */

#define LEADER_LOCK_KEY G_GINT64_CONSTANT (0x5254505345525631) /* "RTPSERV1" */

/**
 * rtp_database_serialize:
 * @key: which kind of change (a constant of the caller's)
 *
 * Called first in a transaction whose decision depends on rows another instance may change at
 * the same moment (e.g. "is this the last admin?"): transactions that call it with the same
 * @key run one after the other, and what this one reads next includes what the one before
 * committed. PostgreSQL: a transaction-level advisory lock (READ COMMITTED reads each statement
 * afresh). SQLite: the file's write lock, taken before anything is read, so that the snapshot
 * starts after the other writer's commit.
 */
gboolean
rtp_database_serialize (RtpDatabase *self, gint64 key, GError **error)
{
  g_return_val_if_fail (self->in_transaction, FALSE);
  if (self->kind == RTP_DATABASE_SQLITE)
    return rtp_database_exec (self, error, "UPDATE settings SET name = name WHERE 1 = 0", NULL) >= 0;
  return rtp_database_select_int (self, error, "SELECT 1 FROM (SELECT pg_advisory_xact_lock (:k)) AS l", "k",
                                  RTP_DB_INT, key, NULL) >= 0;
}

/* A failed try is the answer for LEAD_RETRY_US: an instance that does not lead is asked at every
 * MQTT value it hears; it must not send the database a statement (PostgreSQL) or the kernel a
 * system call (SQLite) for each. Another instance so takes over within this much of its next try. */
#define LEAD_RETRY_US (G_USEC_PER_SEC / 4)

static gboolean
tried_just_now (RtpDatabase *self)
{
  gint64 now = g_get_monotonic_time ();

  if (self->lead_tried_us != 0 && now - self->lead_tried_us < LEAD_RETRY_US)
    return TRUE;
  self->lead_tried_us = now;
  return FALSE;
}

static void
became_leader (RtpDatabase *self)
{
  if (!self->leader)
    g_message ("this instance now runs the jobs of one instance only (outboxes, monitor)");
  self->leader = TRUE;
  self->lead_tried_us = 0;
}

/* SQLite: several servers may share one file (docs/operating.md); the one that holds an exclusive
 * flock() on "<file>-leader" leads. Like PostgreSQL's session lock it is held while the process
 * lives and released by the kernel when it ends, however it ends; no write to the database (a lease
 * row moved the change stamp at every renewal, which emptied every kept value). flock() locks belong
 * to the open file, so two connections of one process exclude each other too. */
static gboolean
sqlite_try_leadership (RtpDatabase *self)
{
  if (self->leader)
    return TRUE;
  if (self->lead_path == NULL)
    return FALSE; /* opened read-only (rtpctl): runs no jobs */
  if (tried_just_now (self))
    return FALSE;
  if (self->lead_fd < 0)
    {
      self->lead_fd = g_open (self->lead_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (self->lead_fd < 0)
        {
          /* one server on its file is the common case: it must not stop alerting for want of the lock */
          g_warning ("cannot open %s (%s): this instance runs the jobs of one instance only without the lock; "
                     "another server on the same file would run them too",
                     self->lead_path, g_strerror (errno));
          self->leader = TRUE;
          return TRUE;
        }
    }
  if (flock (self->lead_fd, LOCK_EX | LOCK_NB) != 0)
    {
      if (errno != EWOULDBLOCK && errno != EINTR)
        g_debug ("flock %s: %s", self->lead_path, g_strerror (errno));
      return FALSE;
    }
  became_leader (self);
  return TRUE;
}

/**
 * rtp_database_try_leadership:
 *
 * Whether this instance is the one that runs the jobs only one instance may run (the outboxes,
 * the threshold monitor). On PostgreSQL a session-level advisory lock decides: it is released
 * when the holder's connection ends, so another instance takes over on its next try. On SQLite
 * a lock on a file beside the database decides (see sqlite_try_leadership). Cheap while held:
 * called for every value the alerter judges.
 */
gboolean
rtp_database_try_leadership (RtpDatabase *self)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GdaDataModel) m = NULL;
  gint64 got = 0;

  if (self->kind == RTP_DATABASE_SQLITE)
    return sqlite_try_leadership (self);
  if (self->leader && !self->broken)
    return TRUE;
  if (self->in_transaction || tried_just_now (self))
    return FALSE;
  m = rtp_database_select (self, &error, "SELECT pg_try_advisory_lock (:k)", "k", RTP_DB_INT, LEADER_LOCK_KEY, NULL);
  if (m == NULL || !rtp_db_int (m, 0, 0, &got))
    return FALSE;
  if (got)
    became_leader (self);
  else
    self->leader = FALSE;
  return self->leader;
}

/* ---- migrations ---------------------------------------------------------------- */

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(const char *const *) a, *(const char *const *) b);
}

GResource *rtp_get_resource (void);
void rtp_register_resource (void);

static GPtrArray *
list_migrations (void)
{
  static gsize registered = 0;
  g_auto (GStrv) names = NULL;
  GPtrArray *out;

  if (g_once_init_enter (&registered))
    {
      rtp_register_resource ();
      g_once_init_leave (&registered, 1);
    }
  names = g_resources_enumerate_children (MIGRATIONS_PATH, G_RESOURCE_LOOKUP_FLAGS_NONE, NULL);
  out = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; names != NULL && names[i] != NULL; i++)
    if (g_str_has_suffix (names[i], ".sql"))
      g_ptr_array_add (out, g_strdup (names[i]));
  g_ptr_array_sort (out, compare_names);
  return out;
}

gint64
rtp_database_get_latest_schema_version (void)
{
  g_autoptr (GPtrArray) names = list_migrations ();
  if (names->len == 0)
    return 0;
  return g_ascii_strtoll (g_ptr_array_index (names, names->len - 1), NULL, 10);
}

gint64
rtp_database_get_schema_version (RtpDatabase *self, GError **error)
{
  return rtp_database_select_int (self, error, "SELECT MAX(version) FROM schema_version", NULL);
}

/**
 * rtp_database_migrate:
 *
 * Applies every embedded migration newer than the database's schema_version, each in
 * its own transaction together with its version row.
 */
gboolean
rtp_database_migrate (RtpDatabase *self, GError **error)
{
  return rtp_database_migrate_to (self, G_MAXINT64, error);
}

/* NNNN-name.sql runs on both dialects, statement by statement through libgda;
 * NNNN-name.sqlite.sql the same, only on SQLite (triggers: their bodies are kept whole);
 * NNNN-name.postgresql.sql only on PostgreSQL (on SQLite only its version is recorded),
 * sent whole to the server so that it may define functions ($$ … $$ bodies hold ';'). */
static gboolean
exec_migration_script (RtpDatabase *self, const char *name, const char *script, GError **error)
{
  PGresult *r;
  gboolean ok;

  if (g_str_has_suffix (name, ".sqlite.sql"))
    return self->kind != RTP_DATABASE_SQLITE || rtp_database_exec_script (self, script, error);
  if (!g_str_has_suffix (name, ".postgresql.sql"))
    return rtp_database_exec_script (self, script, error);
  if (self->kind != RTP_DATABASE_POSTGRESQL)
    return TRUE;
  if (self->pconn == NULL)
    {
      g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "no access to libgda's PostgreSQL connection to run %s", name);
      return FALSE;
    }
  bump_stamp (self);
  r = PQexec (self->pconn, script);
  ok = PQresultStatus (r) == PGRES_COMMAND_OK;
  if (!ok)
    g_set_error (error, RTP_ERROR, RTP_ERROR_FAILED, "%s", PQerrorMessage (self->pconn));
  PQclear (r);
  return ok;
}

gboolean
rtp_database_migrate_to (RtpDatabase *self, gint64 target, GError **error)
{
  g_autoptr (GPtrArray) names = list_migrations ();
  gint64 current;

  if (!rtp_database_exec_script (self, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", error))
    return FALSE;
  current = rtp_database_get_schema_version (self, error);
  if (current < 0)
    return FALSE;

  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      gint64 version = g_ascii_strtoll (name, NULL, 10);
      g_autofree char *path = NULL;
      g_autoptr (GBytes) bytes = NULL;
      g_autofree char *script = NULL;

      if (version <= current || version > target)
        continue;
      path = g_build_path ("/", MIGRATIONS_PATH, name, NULL);
      bytes = g_resources_lookup_data (path, G_RESOURCE_LOOKUP_FLAGS_NONE, error);
      if (bytes == NULL)
        return FALSE;
      script = g_strndup (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
      {
        /* libgda's SQLite provider reads BIGINT (and INTEGER) columns as 32-bit int and
         * fails on larger values; a declared INT64 is read as gint64. PostgreSQL wants BIGINT. */
        g_autoptr (GString) s = g_string_new (script);
        g_clear_pointer (&script, g_free);
        g_string_replace (s, "@BIGINT@", self->kind == RTP_DATABASE_SQLITE ? "INT64" : "BIGINT", 0);
        script = g_string_free (g_steal_pointer (&s), FALSE);
      }
      if (!rtp_database_begin (self, error))
        return FALSE;
      if (!exec_migration_script (self, name, script, error) ||
          rtp_database_exec (self, error, "INSERT INTO schema_version (version) VALUES (:v)", "v", RTP_DB_INT, version,
                             NULL) < 0 ||
          !rtp_database_commit (self, error))
        {
          rtp_database_rollback (self);
          g_prefix_error (error, "migration %s: ", name);
          return FALSE;
        }
      g_info ("database migrated to schema version %" G_GINT64_FORMAT " (%s)", version, name);
    }
  return TRUE;
}

/* ---- results ---------------------------------------------------------------- */

guint
rtp_db_rows (GdaDataModel *model)
{
  gint n = gda_data_model_get_n_rows (model);
  return n > 0 ? (guint) n : 0;
}

/* A value libgda cannot read is a bug of ours (a column type it maps wrongly): say so. */
static const GValue *
value_at (GdaDataModel *model, guint row, guint col)
{
  g_autoptr (GError) error = NULL;
  const GValue *v = gda_data_model_get_value_at (model, col, row, &error);

  if (v == NULL)
    g_critical ("cannot read row %u column %u: %s", row, col, error != NULL ? error->message : "?");
  return v;
}

const char *
rtp_db_str (GdaDataModel *model, guint row, guint col)
{
  const GValue *v = value_at (model, row, col);

  if (v == NULL || gda_value_is_null (v))
    return NULL;
  if (G_VALUE_HOLDS_STRING (v))
    return g_value_get_string (v);
  g_critical ("column %u is not text but %s", col, G_VALUE_TYPE_NAME (v));
  return NULL;
}

gboolean
rtp_db_int (GdaDataModel *model, guint row, guint col, gint64 *out)
{
  const GValue *v = value_at (model, row, col);

  if (v == NULL || gda_value_is_null (v))
    return FALSE;
  if (G_VALUE_HOLDS_INT64 (v))
    *out = g_value_get_int64 (v);
  else if (G_VALUE_HOLDS_INT (v))
    *out = g_value_get_int (v);
  else if (G_VALUE_HOLDS_UINT (v))
    *out = g_value_get_uint (v);
  else if (G_VALUE_HOLDS_LONG (v))
    *out = g_value_get_long (v);
  else if (G_VALUE_HOLDS_BOOLEAN (v))
    *out = g_value_get_boolean (v);
  else if (G_VALUE_HOLDS_DOUBLE (v))
    *out = (gint64) g_value_get_double (v);
  else if (G_VALUE_HOLDS_STRING (v))
    *out = g_ascii_strtoll (g_value_get_string (v), NULL, 10);
  else if (G_VALUE_TYPE (v) == GDA_TYPE_SHORT)
    *out = gda_value_get_short (v);
  else
    {
      g_critical ("column %u is not a number but %s", col, G_VALUE_TYPE_NAME (v));
      return FALSE;
    }
  return TRUE;
}

gint64
rtp_db_int0 (GdaDataModel *model, guint row, guint col)
{
  gint64 v = 0;
  rtp_db_int (model, row, col, &v);
  return v;
}

char *
rtp_database_list_agg (RtpDatabase *self, const char *column)
{
  return self->kind == RTP_DATABASE_POSTGRESQL ? g_strdup_printf ("string_agg(%s, chr(31))", column)
                                               : g_strdup_printf ("group_concat(%s, char(31))", column);
}

static int
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

GPtrArray *
rtp_db_str_list (GdaDataModel *model, guint row, guint col)
{
  const char *joined = rtp_db_str (model, row, col);
  GPtrArray *list = g_ptr_array_new_with_free_func (g_free);

  if (joined != NULL)
    {
      g_auto (GStrv) parts = g_strsplit (joined, "\x1f", -1);
      for (guint i = 0; parts[i] != NULL; i++)
        g_ptr_array_add (list, g_steal_pointer (&parts[i]));
      g_ptr_array_sort (list, compare_strings);
    }
  return list;
}

static gpointer
copy_string (gconstpointer string, gpointer unused)
{
  return g_strdup (string);
}

/**
 * rtp_str_list_copy:
 *
 * Returns: (transfer full) (nullable): a deep copy of a list of strings such as
 *   rtp_db_str_list() makes, or %NULL for %NULL
 */
GPtrArray *
rtp_str_list_copy (GPtrArray *list)
{
  GPtrArray *copy;

  if (list == NULL)
    return NULL;
  copy = g_ptr_array_copy (list, copy_string, NULL);
  g_ptr_array_set_free_func (copy, g_free);
  return copy;
}
