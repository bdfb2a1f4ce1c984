/* SPDX-License-Identifier: MIT */
/*
 * plugins/mysql/mysql_int.h: what the MySQL/MariaDB driver's files share:
 * the error numbers it maps, the connection and its bind storage, and the
 * functions one file calls in another (never exported: the plugin exports
 * only its descriptor).
 */
#ifndef EMH_MYSQL_INT_H
#define EMH_MYSQL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mysql.h>

#include <emhost/driver.h>
#include <emhost/prepcache.h>
#include <emhost/sql.h>

/*
 * MariaDB Connector/C (and MySQL before 8.0) spell the flag type my_bool;
 * libmysqlclient 8 uses bool.  MYSQL_BIND.is_null/.error point to it.
 */
#if defined(MARIADB_PACKAGE_VERSION_ID) || !defined(MYSQL_VERSION_ID) || MYSQL_VERSION_ID < 80000
typedef my_bool my_flag;
#else
typedef bool my_flag;
#endif

/* Error numbers we map (stable across MySQL and MariaDB unless noted). */
enum {
	MY_ER_DUP_KEY = 1022,
	MY_ER_CON_COUNT = 1040,
	MY_ER_DBACCESS_DENIED = 1044,
	MY_ER_ACCESS_DENIED = 1045,
	MY_ER_NO_DB = 1046,
	MY_ER_BAD_NULL = 1048,
	MY_ER_BAD_DB = 1049,
	MY_ER_SERVER_SHUTDOWN = 1053,
	MY_ER_BAD_FIELD = 1054,
	MY_ER_TOO_LONG_IDENT = 1059,
	MY_ER_DUP_KEYNAME = 1061,
	MY_ER_DUP_ENTRY = 1062,
	MY_ER_EMPTY_QUERY = 1065,
	MY_ER_TOO_LONG_KEY = 1071,
	MY_ER_HOST_BLOCKED = 1129,
	MY_ER_HOST_NOT_PRIVILEGED = 1130,
	MY_ER_NO_SUCH_TABLE = 1146,
	MY_ER_ABORTING_CONNECTION = 1152,
	MY_ER_NET_PACKET_TOO_LARGE = 1153,
	MY_ER_NET_READ_ERROR = 1158,
	MY_ER_NET_WRITE_INTERRUPTED = 1161,
	MY_ER_BLOB_KEY_WITHOUT_LENGTH = 1170,
	MY_ER_CHECKREAD = 1020, /* "Record has changed since last read" (MariaDB snapshot isolation) */
	MY_ER_LOCK_WAIT_TIMEOUT = 1205, /* also MariaDB's NOWAIT */
	MY_ER_LOCK_DEADLOCK = 1213,
	MY_ER_UNKNOWN_STMT_HANDLER = 1243,
	MY_ER_NOT_SUPPORTED_AUTH_MODE = 1251,
	MY_ER_TRUNCATED_WRONG_VALUE = 1292,
	MY_ER_WARN_DATA_OUT_OF_RANGE = 1264,
	MY_ER_DATA_OUT_OF_RANGE = 1690, /* "BIGINT value is out of range in ...": an expression's overflow */
	MY_ER_WARN_DATA_TRUNCATED = 1265,
	MY_ER_TRUNCATED_WRONG_VALUE_FOR_FIELD = 1366,
	MY_ER_DATA_TOO_LONG = 1406,
	MY_ER_DUP_ENTRY_WITH_KEY_NAME = 1586,
	MY_ER_NEED_REPREPARE = 1615,
	MY_ER_ACCESS_DENIED_NO_PASSWORD = 1698,
	MY_ER_STATEMENT_TIMEOUT = 1969, /* MariaDB: max_statement_time exceeded */
	MY_ER_QUERY_TIMEOUT = 3024,     /* MySQL 8: MAX_EXECUTION_TIME exceeded */
	MY_ER_CONNECTION_KILLED = 1927, /* MariaDB */
	MY_ER_CLIENT_INTERACTION_TIMEOUT = 4031, /* MySQL 8 */
	MY_ER_LOCK_NOWAIT = 3572,               /* MySQL 8 */
	MY_CR_SOCKET_CREATE_ERROR = 2001,
	MY_CR_CONNECTION_ERROR = 2002,
	MY_CR_CONN_HOST_ERROR = 2003,
	MY_CR_IPSOCK_ERROR = 2004,
	MY_CR_UNKNOWN_HOST = 2005,
	MY_CR_SERVER_GONE = 2006,
	MY_CR_SERVER_LOST = 2013,
	MY_CR_COMMANDS_OUT_OF_SYNC = 2014,
	MY_CR_CANT_READ_CHARSET = 2019,
	MY_CR_NET_PACKET_TOO_LARGE = 2020,
	MY_CR_SSL_CONNECTION_ERROR = 2026,
	MY_CR_AUTH_PLUGIN_CANNOT_LOAD = 2059,
	MY_CR_SERVER_LOST_EXTENDED = 2055,
};

/* Length of the VARCHAR used for key, unique and indexed text columns. */
#define MY_INDEXED_TEXT_LEN 255

typedef union my_scalar {
	signed char b;
	int32_t i32;
	long long i64;
	double d;
	MYSQL_TIME t;
} my_scalar;

/* Storage behind one bound parameter. */
typedef struct my_param {
	my_scalar s;
	unsigned long len;
	my_flag is_null;
} my_param;

/* Storage behind one result column. */
typedef struct my_col {
	my_scalar s;
	char *buf; /* text/blob */
	unsigned long cap;
	unsigned long len;
	my_flag is_null;
	my_flag error;
} my_col;

struct emh_conn {
	MYSQL *my;
	emh_prepcache *stmts; /* my_prep of each emh_stmt, by id */
	MYSQL_BIND *pbind;
	my_param *pval;
	size_t npcap;
	MYSQL_BIND *rbind;
	my_col *rcol;
	emh_value *rvals;
	size_t nrcap;
	/* Changes whenever rcol, pval or a column's buf moves: a statement whose
	 * results or parameters were bound at another generation (my_prep) is
	 * bound again. */
	uint64_t bind_gen;
	char collation[64]; /* table collation, found at the first sync */
	bool migrate_locked; /* holds the migration lock (GET_LOCK) */
	char where[192];    /* "'host:port'" or "socket '/path'", for messages */
	bool mariadb;       /* the server is MariaDB (its SQL differs: LOCK IN SHARE MODE) */
	unsigned long server_version; /* major * 10000 + minor * 100 + patch */
	/* The socket read timeout in whole seconds (0: none), the setting in ms it
	 * comes from and its key; when the call in progress started (ms). */
	unsigned rto_s;
	long long rto_ms;
	const char *rto_key;
	int64_t call_ms;
	long long stmt_ms; /* statement_timeout_ms: the session's own statement deadline (0: none) */
};

/* mysql.c */
int my_thread_enter(emh_error *err);
/* Every entry point on a connection starts with this: my_thread_enter, and the call's start time. */
int my_call_enter(emh_conn *c, emh_error *err);
int64_t my_now_ms(void);
/* CLOCK_MONOTONIC_COARSE ms: what emh_conn.call_ms and my_deadline measure a call by. */
int64_t my_call_clock_ms(void);

/* errors.c */
int my_conn_fail(emh_conn *c, const char *what, const char *table, emh_error *err);
int my_stmt_fail(MYSQL_STMT *s, const char *what, const char *table, emh_error *err);
/* Every entry point on a connection ends with this: a lost connection after
 * the read timeout's wait is the call's deadline, EMH_ETIMEOUT. */
int my_deadline(emh_conn *c, int rc, emh_error *err);

/* session.c */
int my_run_text(emh_conn *c, const char *text, size_t len, const char *what, const char *table, emh_error *err);
int my_execute(emh_conn *c, const char *text, emh_error *err);
int my_ping(emh_conn *c, emh_error *err);
int my_begin_isolation(emh_conn *c, int isolation, emh_error *err);
const char *my_lock_clause(emh_conn *c, int mode, int wait);
uint64_t my_conn_caps(emh_conn *c);
int my_migrate_lock(emh_conn *c, int64_t wait_ms, bool *in_txn, emh_error *err);
int my_migrate_unlock(emh_conn *c, bool commit, emh_error *err);
int my_position(emh_conn *c, char *buf, size_t cap, emh_error *err);
int my_replayed(emh_conn *c, const char *pos, int64_t wait_ms, bool *yes, emh_error *err);
int my_lag_ms(emh_conn *c, int64_t *lag, emh_error *err);

/* statements.c */
/*
 * A statement prepared on a connection (the statement cache's handle), and
 * how its parameters and result columns are bound: the library keeps a
 * statement's bindings across executions and reads the bound buffers at
 * each, so each is bound again only when it changes, not every call.
 */
typedef struct my_prep {
	MYSQL_STMT *h;
	uint64_t bound_gen;  /* the connection's bind_gen when results were bound (0: never) */
	unsigned bound_nf;   /* how many columns were bound */
	uint64_t pbound_gen; /* the connection's bind_gen when parameters were bound (0: never) */
	/* per parameter, what its MYSQL_BIND said when bound (the rest is fixed) */
	struct my_pbound {
		void *buffer;
		unsigned long buffer_length;
		unsigned long *length;
		int type; /* enum_field_types */
	} pb[];
} my_prep;
/* The statement cache's destroy callback: closes and frees a my_prep. */
void my_prep_close(void *handle, void *arg);
int my_stmt_exec(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_rowsink *sink, emh_error *err);

/* schema.c */
extern const emh_sql_dialect my_dialect;
/* Rows of strings from a catalogue query (row-major, n rows of ncols). */
typedef struct my_strtab {
	char **v;
	size_t n, ncols;
} my_strtab;
/*
 * Run a catalogue query with at most one string parameter (bound, never
 * pasted) and collect its rows as strings (NULL as ""), each cut at 511 bytes.
 */
int my_select_strings(emh_conn *c, const char *sql, const char *param, unsigned ncols, my_strtab *out,
		      const char *what, const char *table, emh_error *err);
void my_strtab_release(my_strtab *t);
int my_describe(emh_conn *c, const char *table, emh_table_desc *out, emh_error *err);
int my_sync(emh_conn *c, const emh_meta *m, emh_error *err);

#endif
