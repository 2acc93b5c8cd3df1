/* rtp-database.h: the libgda connection, migrations, parameterised statements, transactions */
#pragma once

#include <gio/gio.h>
#include <libgda/libgda.h>

/* libgda 5 declares no autoptr cleanups of its own */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GdaDataModel, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GdaStatement, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GdaSet, g_object_unref)

G_BEGIN_DECLS

#define RTP_TYPE_DATABASE (rtp_database_get_type ())
G_DECLARE_FINAL_TYPE (RtpDatabase, rtp_database, RTP, DATABASE, GObject)

typedef enum {
  RTP_DATABASE_SQLITE,
  RTP_DATABASE_POSTGRESQL,
} RtpDatabaseKind;

/* Parameter kinds for the variadic statement helpers. Each parameter is written
 * `:name` in the SQL and passed as (const char *name, RtpDbType type, value). */
typedef enum {
  RTP_DB_END = 0,
  RTP_DB_STR,      /* const char * (NULL stores NULL) */
  RTP_DB_INT,      /* gint64 */
  RTP_DB_INT_NULL, /* const gint64 * (NULL stores NULL) */
  RTP_DB_BOOL,     /* gboolean, stored as 0/1 */
} RtpDbType;

gboolean rtp_database_parse_uri (const char *uri, RtpDatabaseKind *kind, char **provider, char **cnc_string,
                                 char **auth_string, char **sqlite_path, GError **error);

/* Returns: (transfer full) */
RtpDatabase *rtp_database_open (const char *uri, GError **error);
/* Returns: (transfer full) */
RtpDatabase *rtp_database_open_read_only (const char *uri, GError **error);
/* Returns: (transfer full) */
RtpDatabase *rtp_database_open_with_password (const char *uri, const char *password, GError **error);
gboolean rtp_database_migrate (RtpDatabase *self, GError **error);
/* Applies migrations up to and including @target only (tests of old files). */
gboolean rtp_database_migrate_to (RtpDatabase *self, gint64 target, GError **error);
gint64 rtp_database_get_schema_version (RtpDatabase *self, GError **error);
gint64 rtp_database_get_latest_schema_version (void);
RtpDatabaseKind rtp_database_get_kind (RtpDatabase *self);
/* Returns: (transfer none) */
const char *rtp_database_get_kind_name (RtpDatabase *self);
/* Returns: (transfer none) */
const char *rtp_database_get_sqlite_path (RtpDatabase *self);
void rtp_database_close (RtpDatabase *self);

/* Statements; the variadic list is terminated by NULL. */
/* Returns: (transfer full) */
GdaDataModel *rtp_database_select (RtpDatabase *self, GError **error, const char *sql, ...) G_GNUC_NULL_TERMINATED;
gint rtp_database_exec (RtpDatabase *self, GError **error, const char *sql, ...) G_GNUC_NULL_TERMINATED;
/* First column of the first row as an integer (0 for SQL NULL), -1 on error: COUNT(*), MAX(…). */
gint64 rtp_database_select_int (RtpDatabase *self, GError **error, const char *sql, ...) G_GNUC_NULL_TERMINATED;
/* Returns: (transfer full) */
GdaDataModel *rtp_database_select_valist (RtpDatabase *self, GError **error, const char *sql, va_list args);
gint rtp_database_exec_valist (RtpDatabase *self, GError **error, const char *sql, va_list args);
/* Runs several `;`-separated statements without parameters (migrations). */
gboolean rtp_database_exec_script (RtpDatabase *self, const char *script, GError **error);

gboolean rtp_database_begin (RtpDatabase *self, GError **error);

/* A transaction that rolls back when it goes out of scope uncommitted (in the spirit of fwupd's
 * FuDeviceLocker): g_autoptr (RtpTransaction) tx = rtp_database_begin_transaction (db, error). */
typedef struct _RtpTransaction RtpTransaction;
/* Returns: (transfer full) */
RtpTransaction *rtp_database_begin_transaction (RtpDatabase *self, GError **error);
gboolean rtp_transaction_commit (RtpTransaction *tx, GError **error);
void rtp_transaction_free (RtpTransaction *tx);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpTransaction, rtp_transaction_free)
gboolean rtp_database_commit (RtpDatabase *self, GError **error);
void rtp_database_rollback (RtpDatabase *self);
guint64 rtp_database_get_change_stamp (RtpDatabase *self);
typedef void (*RtpStampReadyFunc) (gpointer user_data);
gboolean rtp_database_stamp_known_since (RtpDatabase *self, gint64 since_us);
void rtp_database_when_stamp_known (RtpDatabase *self, gint64 since_us, RtpStampReadyFunc func, gpointer user_data);
void rtp_database_set_changes_since (gint64 since_us);
gboolean rtp_database_savepoint (RtpDatabase *self, const char *name, GError **error);
void rtp_database_rollback_to (RtpDatabase *self, const char *name);
gboolean rtp_database_release (RtpDatabase *self, const char *name, GError **error);

gboolean rtp_database_try_leadership (RtpDatabase *self);
gboolean rtp_database_serialize (RtpDatabase *self, gint64 key, GError **error);

/* Result access. Strings are NULL for SQL NULL. */
guint rtp_db_rows (GdaDataModel *model);
/* Returns: (transfer none) */
const char *rtp_db_str (GdaDataModel *model, guint row, guint col);
gboolean rtp_db_int (GdaDataModel *model, guint row, guint col, gint64 *out);
gint64 rtp_db_int0 (GdaDataModel *model, guint row, guint col);

/* Lists in one column: rtp_database_list_agg() is the SQL aggregate of @column for this dialect
 * (a new string; services build their SQL with it once, at construction), joining the values with
 * 0x1f (identifiers cannot hold control characters); rtp_db_str_list() reads
 * such a column back as a sorted list of strings (empty for NULL, the aggregate over no rows). One row
 * per parent instead of one per child: libgda builds objects for every row it returns. */
/* Returns: (transfer full) */
char *rtp_database_list_agg (RtpDatabase *self, const char *column);
/* Returns: (transfer full) */
GPtrArray *rtp_db_str_list (GdaDataModel *model, guint row, guint col);
/* Returns: (transfer full) */
GPtrArray *rtp_str_list_copy (GPtrArray *list);

G_END_DECLS
