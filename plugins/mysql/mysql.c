/* SPDX-License-Identifier: MIT */
/* plugins/mysql/mysql.c: the MySQL/MariaDB driver: server-side prepared statements through the client library. */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mysql.h>

#include <emhost/driver.h>
#include <emhost/host.h> /* EMH_LOG_* for emh_params_log */
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
	MY_ER_LOCK_WAIT_TIMEOUT = 1205,
	MY_ER_LOCK_DEADLOCK = 1213,
	MY_ER_UNKNOWN_STMT_HANDLER = 1243,
	MY_ER_NOT_SUPPORTED_AUTH_MODE = 1251,
	MY_ER_TRUNCATED_WRONG_VALUE = 1292,
	MY_ER_WARN_DATA_OUT_OF_RANGE = 1264,
	MY_ER_WARN_DATA_TRUNCATED = 1265,
	MY_ER_TRUNCATED_WRONG_VALUE_FOR_FIELD = 1366,
	MY_ER_DATA_TOO_LONG = 1406,
	MY_ER_DUP_ENTRY_WITH_KEY_NAME = 1586,
	MY_ER_NEED_REPREPARE = 1615,
	MY_ER_ACCESS_DENIED_NO_PASSWORD = 1698,
	MY_ER_CONNECTION_KILLED = 1927, /* MariaDB */
	MY_ER_CLIENT_INTERACTION_TIMEOUT = 4031, /* MySQL 8 */
	MY_CR_CONNECTION_ERROR = 2002,
	MY_CR_CONN_HOST_ERROR = 2003,
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

/* Session settings every connection starts with (see docs/drivers/mysql.md). */
#define MY_SESSION_SQL                                                         \
	"SET SESSION time_zone = '+00:00', "                                   \
	"SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"
#define MY_DEFAULT_CONNECT_TIMEOUT_MS 10000
/* Length of the VARCHAR used for key, unique and indexed text columns. */
#define MY_INDEXED_TEXT_LEN 255
/* First size of a text/blob result buffer; grown on truncation. */
#define MY_RESULT_BUF_INIT 256

/* ---- process-wide library state ---- */

static pthread_once_t my_once = PTHREAD_ONCE_INIT;
static int my_lib_failed;
static bool my_lib_ready;
static pthread_key_t my_thread_key;
static bool my_thread_key_ok;

/* Thread exit: release what mysql_thread_init allocated for that thread. */
static void my_thread_done(void *unused)
{
	(void)unused;
	mysql_thread_end();
}

static void my_lib_init(void)
{
	if (mysql_library_init(0, NULL, NULL) != 0) {
		my_lib_failed = 1;
		return;
	}
	my_lib_ready = true;
	my_thread_key_ok = pthread_key_create(&my_thread_key, my_thread_done) == 0;
}

/*
 * Unloading the plugin: forget the thread-exit hook first (its code is about
 * to be unmapped), then release the library's global state so that nothing
 * it allocated outlives the mapping.
 */
__attribute__((destructor)) static void my_lib_unload(void)
{
	if (!my_lib_ready)
		return;
	if (my_thread_key_ok) {
		if (pthread_getspecific(my_thread_key))
			mysql_thread_end();
		pthread_key_delete(my_thread_key);
		my_thread_key_ok = false;
	}
	mysql_library_end();
	my_lib_ready = false;
}

/*
 * Every entry point runs this first: mysql_library_init once per process,
 * mysql_thread_init once per thread that touches the library (pooled
 * connections move between threads), mysql_thread_end at that thread's exit.
 */
static int my_thread_enter(emh_error *err)
{
	pthread_once(&my_once, my_lib_init);
	if (my_lib_failed)
		return emh_error_set(err, EMH_EPLUGIN, "mysql_library_init failed");
	if (my_thread_key_ok && pthread_getspecific(my_thread_key) == NULL) {
		if (mysql_thread_init() != 0)
			return emh_error_set(err, EMH_EPLUGIN, "mysql_thread_init failed");
		pthread_setspecific(my_thread_key, &my_thread_key);
	}
	return 0;
}

/* ---- connection ---- */

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
	emh_prepcache *stmts; /* MYSQL_STMT * of each emh_stmt, by id */
	MYSQL_BIND *pbind;
	my_param *pval;
	size_t npcap;
	MYSQL_BIND *rbind;
	my_col *rcol;
	emh_value *rvals;
	size_t nrcap;
	char collation[64]; /* table collation, found at the first sync */
	char where[192];    /* "'host:port'" or "socket '/path'", for messages */
};

/* ---- errors ---- */

static bool my_errno_is_gone(unsigned no)
{
	switch (no) {
	case MY_CR_CONNECTION_ERROR:
	case MY_CR_CONN_HOST_ERROR:
	case MY_CR_UNKNOWN_HOST:
	case MY_CR_SERVER_GONE:
	case MY_CR_SERVER_LOST:
	case MY_CR_SERVER_LOST_EXTENDED:
	case MY_CR_COMMANDS_OUT_OF_SYNC:
	case MY_CR_SSL_CONNECTION_ERROR:
	case MY_ER_CON_COUNT:
	case MY_ER_HOST_BLOCKED:
	case MY_ER_SERVER_SHUTDOWN:
	case MY_ER_ABORTING_CONNECTION:
	case MY_ER_CONNECTION_KILLED:
	case MY_ER_CLIENT_INTERACTION_TIMEOUT:
		return true;
	default:
		return no >= MY_ER_NET_READ_ERROR && no <= MY_ER_NET_WRITE_INTERRUPTED;
	}
}

/* Portable code of a MySQL error number. */
static int my_code(unsigned no)
{
	if (my_errno_is_gone(no))
		return EMH_EUNAVAILABLE;
	switch (no) {
	case MY_ER_DUP_ENTRY:
	case MY_ER_DUP_ENTRY_WITH_KEY_NAME:
	case MY_ER_DUP_KEY:
		return EMH_ECONFLICT;
	case MY_ER_LOCK_DEADLOCK:
	case MY_ER_LOCK_WAIT_TIMEOUT:
		return EMH_ERETRY;
	case MY_ER_ACCESS_DENIED:
	case MY_ER_DBACCESS_DENIED:
	case MY_ER_ACCESS_DENIED_NO_PASSWORD:
	case MY_ER_BAD_DB:
	case MY_ER_NO_DB:
	case MY_ER_HOST_NOT_PRIVILEGED:
	case MY_ER_NOT_SUPPORTED_AUTH_MODE:
	case MY_CR_AUTH_PLUGIN_CANNOT_LOAD:
	case MY_CR_CANT_READ_CHARSET:
		return EMH_ECONFIG;
	case MY_ER_NO_SUCH_TABLE:
	case MY_ER_BAD_FIELD:
	case MY_ER_TOO_LONG_KEY:
	case MY_ER_TOO_LONG_IDENT:
	case MY_ER_BLOB_KEY_WITHOUT_LENGTH:
		return EMH_ESCHEMA;
	case MY_ER_BAD_NULL:
	case MY_ER_DATA_TOO_LONG:
	case MY_ER_NET_PACKET_TOO_LARGE:
	case MY_CR_NET_PACKET_TOO_LARGE:
	case MY_ER_WARN_DATA_OUT_OF_RANGE:
	case MY_ER_WARN_DATA_TRUNCATED:
	case MY_ER_TRUNCATED_WRONG_VALUE:
	case MY_ER_TRUNCATED_WRONG_VALUE_FOR_FIELD:
		return EMH_EINVAL;
	default:
		return EMH_EDRIVER;
	}
}

/*
 * Copy a server message without the values or SQL text some messages quote
 * ("Duplicate entry 'x' for key", "Incorrect string value: 'x' for column",
 * "syntax to use near '...' at line 1"): a bound value, or a literal of raw
 * SQL such as a password, must never reach a log.
 */
static void my_redact(char *dst, size_t cap, const char *msg)
{
	static const char *const marks[] = {"entry '", "value: '", "value '", "value of '", "near '", NULL};
	const char *start = NULL, *end = NULL;
	for (size_t i = 0; marks[i] && !start; i++) {
		const char *p = strstr(msg, marks[i]);
		if (p)
			start = p + strlen(marks[i]);
	}
	if (start) {
		for (const char *p = start; (p = strstr(p, "' for ")) != NULL; p++)
			end = p;
		if (!end)
			end = strrchr(start, '\'');
	}
	if (!start || !end || end < start) {
		snprintf(dst, cap, "%s", msg);
		return;
	}
	snprintf(dst, cap, "%.*s...%s", (int)(start - msg), msg, end);
}

/* Name of the key in "Duplicate entry '...' for key 'name'", into buf. */
static const char *my_dup_key_name(const char *msg, char *buf, size_t cap)
{
	const char *p = NULL;
	for (const char *q = msg; (q = strstr(q, "for key '")) != NULL; q++)
		p = q + strlen("for key '");
	if (!p)
		return "?";
	size_t n = strcspn(p, "'");
	snprintf(buf, cap, "%.*s", (int)n, p);
	return buf;
}

/*
 * Fill err from a MySQL error: portable code, native number, SQLSTATE,
 * retryable, and "<what>: <server message, values removed>".
 */
static int my_fail(emh_error *err, unsigned no, const char *sqlstate, const char *msg,
		   const char *what, const char *table)
{
	char clean[EMH_ERROR_MSG_MAX], key[96];
	int code = my_code(no);
	/* SQLSTATE class 08 (e.g. 1153 packet too large, 08S01) means the server
	 * closed the connection: say so, so that the core discards it. */
	if (sqlstate && strncmp(sqlstate, "08", 2) == 0)
		code = EMH_EUNAVAILABLE;
	if (!msg || !*msg)
		msg = "unknown error";
	if (code == EMH_ECONFLICT && table)
		emh_error_set(err, code, "duplicate value for unique key '%s' of table '%s' (mysql error %u)",
			      my_dup_key_name(msg, key, sizeof key), table, no);
	else if (code == EMH_ECONFLICT)
		emh_error_set(err, code, "%s: duplicate value for unique key '%s' (mysql error %u)", what,
			      my_dup_key_name(msg, key, sizeof key), no);
	else {
		my_redact(clean, sizeof clean, msg);
		if (table && no == MY_ER_DATA_TOO_LONG)
			emh_error_set(err, code,
				      "%s on table '%s': %s (mysql error %u; key, unique and indexed text "
				      "columns are VARCHAR(%d): at most %d characters)",
				      what, table, clean, no, MY_INDEXED_TEXT_LEN, MY_INDEXED_TEXT_LEN);
		else if (no == MY_ER_NET_PACKET_TOO_LARGE || no == MY_CR_NET_PACKET_TOO_LARGE)
			emh_error_set(err, code,
				      "%s%s%s%s: %s (mysql error %u; a value is larger than max_allowed_packet, "
				      "see docs/drivers/mysql.md%s)",
				      what, table ? " on table '" : "", table ? table : "", table ? "'" : "", clean, no,
				      code == EMH_EUNAVAILABLE ? "; the server closed the connection" : "");
		else if (table)
			emh_error_set(err, code, "%s on table '%s': %s (mysql error %u)", what, table, clean, no);
		else
			emh_error_set(err, code, "%s: %s (mysql error %u)", what, clean, no);
	}
	if (err) {
		err->native = (int)no;
		if (sqlstate)
			snprintf(err->sqlstate, sizeof err->sqlstate, "%s", sqlstate);
		err->retryable = code == EMH_ERETRY;
	}
	return code;
}

static int my_conn_fail(emh_conn *c, const char *what, const char *table, emh_error *err)
{
	return my_fail(err, mysql_errno(c->my), mysql_sqlstate(c->my), mysql_error(c->my), what, table);
}

static int my_stmt_fail(MYSQL_STMT *s, const char *what, const char *table, emh_error *err)
{
	return my_fail(err, mysql_stmt_errno(s), mysql_stmt_sqlstate(s), mysql_stmt_error(s), what, table);
}

/* ---- raw SQL ---- */

/* Run text (several statements allowed) and drain every result. */
static int my_run_text(emh_conn *c, const char *text, size_t len, const char *what, const char *table,
		       emh_error *err)
{
	int status;
	if (mysql_real_query(c->my, text, (unsigned long)len) != 0) {
		if (mysql_errno(c->my) == MY_ER_EMPTY_QUERY)
			return 0;
		return my_conn_fail(c, what, table, err);
	}
	do {
		MYSQL_RES *res = mysql_store_result(c->my);
		if (res)
			mysql_free_result(res);
		else if (mysql_field_count(c->my) != 0)
			return my_conn_fail(c, what, table, err);
		status = mysql_next_result(c->my);
	} while (status == 0);
	if (status > 0 && mysql_errno(c->my) != MY_ER_EMPTY_QUERY)
		return my_conn_fail(c, what, table, err);
	return 0;
}

static bool my_blank(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != ';')
			return false;
	return true;
}

static int my_execute(emh_conn *c, const char *text, emh_error *err)
{
	int rc = my_thread_enter(err);
	if (rc)
		return rc;
	if (!text || my_blank(text))
		return 0;
	return my_run_text(c, text, strlen(text), "execute", NULL, err);
}

/* ---- connect ---- */

static const emh_param_spec my_params[] = {
	{"host", EMH_PARAM_STRING, 0,
	 "server host name or address (unset or \"localhost\": the Unix socket)"},
	{"port", EMH_PARAM_INT, 0, "TCP port (default 3306)"},
	{"socket", EMH_PARAM_STRING, 0, "Unix socket path, used when host is unset or \"localhost\""},
	{"database", EMH_PARAM_STRING, 0, "database (schema) to use"},
	{"user", EMH_PARAM_STRING, 0, "user name (default: the login name)"},
	{"connect_timeout_ms", EMH_PARAM_INT, 0,
	 "connect timeout in milliseconds, rounded up to whole seconds (default 10000)"},
	{"read_timeout_ms", EMH_PARAM_INT, 0,
	 "give up on a server silent this long during a query, rounded up to seconds (default: never)"},
	{"write_timeout_ms", EMH_PARAM_INT, 0,
	 "give up on a write blocked this long, rounded up to seconds (default: never)"},
	{"charset", EMH_PARAM_STRING, 0, "connection character set: utf8mb4 (default) or utf8mb3"},
	{NULL, 0, 0, NULL},
};

static int my_param_ms(const emh_params *p, const char *key, long long def, unsigned *secs, emh_error *err)
{
	long long v;
	int rc = emh_params_int(p, key, def, &v, err);
	if (rc)
		return rc;
	if (v < 0 || v > 86400000LL)
		return emh_error_set(err, EMH_ECONFIG, "'%s' must be between 0 and 86400000, not %lld", key, v);
	*secs = (unsigned)((v + 999) / 1000);
	return 0;
}

/* Destroy callback of the statement cache (called on the connection's thread). */
static void my_stmt_close(void *h, void *arg)
{
	(void)arg;
	mysql_stmt_close(h);
}

static void my_disconnect(emh_conn *c)
{
	if (!c)
		return;
	my_thread_enter(NULL);
	emh_prepcache_free(c->stmts);
	if (c->my)
		mysql_close(c->my);
	for (size_t i = 0; i < c->nrcap; i++)
		free(c->rcol[i].buf);
	free(c->pbind);
	free(c->pval);
	free(c->rbind);
	free(c->rcol);
	free(c->rvals);
	free(c);
}

static int my_connect(const emh_params *p, emh_dctx *dc, emh_conn **out, emh_error *err)
{
	const char *host = emh_params_get(p, "host");
	const char *sock = emh_params_get(p, "socket");
	const char *db = emh_params_get(p, "database");
	const char *user = emh_params_get(p, "user");
	const char *pw = emh_params_get(p, "password");
	const char *cs = emh_params_get(p, "charset");
	unsigned cto, rto, wto;
	long long port;
	emh_conn *c;
	int rc;

	(void)dc;
	*out = NULL;
	if ((rc = emh_params_int(p, "port", 0, &port, err)))
		return rc;
	if (port < 0 || port > 65535)
		return emh_error_set(err, EMH_ECONFIG, "'port' must be between 1 and 65535, not %lld", port);
	if ((rc = my_param_ms(p, "connect_timeout_ms", MY_DEFAULT_CONNECT_TIMEOUT_MS, &cto, err)) ||
	    (rc = my_param_ms(p, "read_timeout_ms", 0, &rto, err)) ||
	    (rc = my_param_ms(p, "write_timeout_ms", 0, &wto, err)))
		return rc;
	if (!cs || !*cs)
		cs = "utf8mb4";
	if (strcmp(cs, "utf8mb4") != 0 && strcmp(cs, "utf8mb3") != 0 && strcmp(cs, "utf8") != 0)
		return emh_error_set(err, EMH_ECONFIG,
				     "'charset' must be utf8mb4 or utf8mb3 (text is UTF-8), not '%s'", cs);
	if (host && !*host)
		host = NULL;
	if (sock && !*sock)
		sock = NULL;
	if ((rc = my_thread_enter(err)))
		return rc;

	c = calloc(1, sizeof *c);
	if (!c)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	if ((rc = emh_prepcache_new(my_stmt_close, NULL, &c->stmts, err)))
		goto out_free;
	if (sock && (!host || strcmp(host, "localhost") == 0))
		snprintf(c->where, sizeof c->where, "socket '%s'", sock);
	else if (!host || strcmp(host, "localhost") == 0)
		snprintf(c->where, sizeof c->where, "'localhost' (default socket)");
	else
		snprintf(c->where, sizeof c->where, "'%s:%u'", host, port ? (unsigned)port : 3306u);
	c->my = mysql_init(NULL);
	if (!c->my) {
		rc = emh_error_set(err, EMH_ENOMEM, "mysql_init: out of memory");
		goto out_free;
	}
	if (cto)
		mysql_options(c->my, MYSQL_OPT_CONNECT_TIMEOUT, &cto);
	if (rto)
		mysql_options(c->my, MYSQL_OPT_READ_TIMEOUT, &rto);
	if (wto)
		mysql_options(c->my, MYSQL_OPT_WRITE_TIMEOUT, &wto);
	mysql_options(c->my, MYSQL_SET_CHARSET_NAME, cs);

	if (!mysql_real_connect(c->my, host, user, pw, db, (unsigned)port, sock,
				CLIENT_FOUND_ROWS | CLIENT_MULTI_STATEMENTS)) {
		char what[400];
		snprintf(what, sizeof what, "cannot connect to mysql server at %s as user '%s'%s%s%s", c->where,
			 user ? user : "(login name)", db ? ", database '" : "", db ? db : "", db ? "'" : "");
		rc = my_conn_fail(c, what, NULL, err);
		/* Whatever fails at connect, the connection does not exist: a
		 * network-class error or an unexpected one is "unavailable". */
		if (rc == EMH_EDRIVER || rc == EMH_ERETRY) {
			rc = EMH_EUNAVAILABLE;
			if (err) {
				err->code = rc;
				err->retryable = false;
			}
		}
		goto out_free;
	}
	if ((rc = my_run_text(c, MY_SESSION_SQL, strlen(MY_SESSION_SQL), "setting up the session", NULL, err)))
		goto out_free;
	emh_params_log(p, EMH_LOG_DEBUG, "mysql: connected to %s, server %s", c->where,
		       mysql_get_server_info(c->my));
	*out = c;
	return 0;

out_free:
	my_disconnect(c);
	return rc;
}

static int my_ping(emh_conn *c, emh_error *err)
{
	int rc = my_thread_enter(err);
	if (rc)
		return rc;
	if (mysql_ping(c->my) != 0) {
		my_conn_fail(c, "ping", NULL, err);
		/* A ping that fails for any reason means the connection is unusable. */
		if (err) {
			err->code = EMH_EUNAVAILABLE;
			err->retryable = false;
		}
		return EMH_EUNAVAILABLE;
	}
	return 0;
}

/* ---- timestamps: int64 microseconds <-> MYSQL_TIME (UTC) ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t my_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void my_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* DATETIME(6) holds years 1000..9999 (earlier ones "may work"); refuse what it cannot. */
static int my_time_from_us(int64_t us, MYSQL_TIME *t, emh_error *err)
{
	int64_t secs = us / 1000000, frac = us % 1000000, days, sod, y;
	unsigned m, d;
	if (frac < 0) {
		frac += 1000000;
		secs--;
	}
	days = secs / 86400;
	sod = secs % 86400;
	if (sod < 0) {
		sod += 86400;
		days--;
	}
	my_civil_from_days(days, &y, &m, &d);
	if (y < 1 || y > 9999)
		return emh_error_set(err, EMH_EINVAL,
				     "timestamp %lld us is outside the DATETIME range (years 1 to 9999)",
				     (long long)us);
	memset(t, 0, sizeof *t);
	t->year = (unsigned)y;
	t->month = m;
	t->day = d;
	t->hour = (unsigned)(sod / 3600);
	t->minute = (unsigned)(sod % 3600 / 60);
	t->second = (unsigned)(sod % 60);
	t->second_part = (unsigned long)frac;
	t->time_type = MYSQL_TIMESTAMP_DATETIME;
	return 0;
}

static int64_t my_us_from_time(const MYSQL_TIME *t)
{
	unsigned m = t->month ? t->month : 1, d = t->day ? t->day : 1;
	int64_t days = my_days_from_civil(t->year, m, d);
	int64_t secs = days * 86400 + (int64_t)t->hour * 3600 + (int64_t)t->minute * 60 + t->second;
	int64_t us = secs * 1000000 + (int64_t)t->second_part;
	return t->neg ? -us : us;
}

/* ---- prepared statements ---- */

static int my_grow_params(emh_conn *c, size_t n)
{
	if (n <= c->npcap)
		return 0;
	MYSQL_BIND *b = realloc(c->pbind, n * sizeof *b);
	if (!b)
		return EMH_ENOMEM;
	c->pbind = b;
	my_param *v = realloc(c->pval, n * sizeof *v);
	if (!v)
		return EMH_ENOMEM;
	c->pval = v;
	c->npcap = n;
	return 0;
}

static int my_grow_cols(emh_conn *c, size_t n)
{
	if (n <= c->nrcap)
		return 0;
	MYSQL_BIND *b = realloc(c->rbind, n * sizeof *b);
	if (!b)
		return EMH_ENOMEM;
	c->rbind = b;
	emh_value *v = realloc(c->rvals, n * sizeof *v);
	if (!v)
		return EMH_ENOMEM;
	c->rvals = v;
	my_col *col = realloc(c->rcol, n * sizeof *col);
	if (!col)
		return EMH_ENOMEM;
	memset(col + c->nrcap, 0, (n - c->nrcap) * sizeof *col);
	c->rcol = col;
	c->nrcap = n;
	return 0;
}

static const char *my_table_of(const emh_stmt *st)
{
	return st->meta && st->meta->entity ? st->meta->entity->table : NULL;
}

/* The connection's prepared handle for st, preparing it on first use. */
static int my_stmt_get(emh_conn *c, const emh_stmt *st, MYSQL_STMT **out, emh_error *err)
{
	MYSQL_STMT *h = emh_prepcache_get(c->stmts, st->id, st);
	int rc;
	if (h) {
		*out = h;
		return 0;
	}
	/* Not prepared yet, or the id stood for another statement: close that
	 * one first (max_prepared_stmt_count limits them server-wide). */
	emh_prepcache_drop(c->stmts, st->id);
	h = mysql_stmt_init(c->my);
	if (!h)
		return emh_error_set(err, EMH_ENOMEM, "mysql_stmt_init: out of memory");
	if (mysql_stmt_prepare(h, st->sql, (unsigned long)st->sql_len) != 0) {
		rc = my_stmt_fail(h, "preparing a statement", my_table_of(st), err);
		mysql_stmt_close(h);
		return rc;
	}
	if (mysql_stmt_param_count(h) != st->nparams) {
		unsigned long got = mysql_stmt_param_count(h);
		mysql_stmt_close(h);
		return emh_error_set(err, EMH_EPLUGIN, "statement on table '%s' has %lu parameters, %u bound",
				     my_table_of(st) ? my_table_of(st) : "?", got, (unsigned)st->nparams);
	}
	if ((rc = emh_prepcache_put(c->stmts, st->id, st, h, err))) {
		mysql_stmt_close(h);
		return rc;
	}
	*out = h;
	return 0;
}

/* Bind params[i] as st->param_types[i] says (a timestamp field compared with an int64 is a timestamp). */
static int my_bind_param(MYSQL_BIND *b, my_param *pv, emh_type type, const emh_value *v, unsigned i,
			 emh_error *err)
{
	memset(b, 0, sizeof *b);
	pv->is_null = v->is_null;
	b->is_null = &pv->is_null;
	switch (type) {
	case EMH_T_TIMESTAMP:
		b->buffer_type = MYSQL_TYPE_DATETIME;
		b->buffer = &pv->s.t;
		b->buffer_length = sizeof pv->s.t;
		if (!v->is_null) {
			int64_t us = v->type == EMH_T_INT32 ? v->u.i32 : v->u.i64;
			int rc = my_time_from_us(us, &pv->s.t, err);
			if (rc)
				return rc;
		}
		return 0;
	case EMH_T_BOOL:
	case EMH_T_INT32:
	case EMH_T_INT64:
		if (v->type == EMH_T_BOOL) {
			b->buffer_type = MYSQL_TYPE_TINY;
			pv->s.b = v->u.b ? 1 : 0;
			b->buffer = &pv->s.b;
		} else if (v->type == EMH_T_INT32) {
			b->buffer_type = MYSQL_TYPE_LONG;
			pv->s.i32 = v->u.i32;
			b->buffer = &pv->s.i32;
		} else if (v->type == EMH_T_INT64 || v->type == EMH_T_TIMESTAMP || v->is_null) {
			b->buffer_type = type == EMH_T_BOOL ? MYSQL_TYPE_TINY : MYSQL_TYPE_LONGLONG;
			pv->s.i64 = v->is_null ? 0 : v->u.i64;
			b->buffer = &pv->s.i64;
			if (type == EMH_T_BOOL) {
				pv->s.b = (signed char)(pv->s.i64 != 0);
				b->buffer = &pv->s.b;
			}
		} else
			goto mismatch;
		return 0;
	case EMH_T_DOUBLE:
		b->buffer_type = MYSQL_TYPE_DOUBLE;
		b->buffer = &pv->s.d;
		if (v->is_null || v->type == EMH_T_DOUBLE)
			pv->s.d = v->is_null ? 0 : v->u.d;
		else if (v->type == EMH_T_INT32)
			pv->s.d = v->u.i32;
		else if (v->type == EMH_T_INT64)
			pv->s.d = (double)v->u.i64;
		else
			goto mismatch;
		return 0;
	case EMH_T_TEXT:
	case EMH_T_JSON:
	case EMH_T_BLOB:
		b->buffer_type = type == EMH_T_BLOB ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
		if (v->is_null)
			return 0;
		if (v->type != EMH_T_TEXT && v->type != EMH_T_JSON && v->type != EMH_T_BLOB)
			goto mismatch;
		/* The library only reads parameter buffers. */
		b->buffer = (void *)(uintptr_t)(v->u.s.ptr ? v->u.s.ptr : "");
		pv->len = (unsigned long)v->u.s.len;
		b->buffer_length = pv->len;
		b->length = &pv->len;
		return 0;
	default:
		break;
	}
mismatch:
	return emh_error_set(err, EMH_EINVAL, "parameter %u: a %s value where %s is expected", i + 1,
			     emh_type_name(v->type), emh_type_name(type));
}

/* Bind result column i of type t to the connection's column storage. */
static void my_bind_col(MYSQL_BIND *b, my_col *col, emh_type t)
{
	memset(b, 0, sizeof *b);
	b->is_null = &col->is_null;
	b->error = &col->error;
	b->length = &col->len;
	switch (t) {
	case EMH_T_BOOL:
		b->buffer_type = MYSQL_TYPE_TINY;
		b->buffer = &col->s.b;
		break;
	case EMH_T_INT32:
		b->buffer_type = MYSQL_TYPE_LONG;
		b->buffer = &col->s.i32;
		break;
	case EMH_T_INT64:
		b->buffer_type = MYSQL_TYPE_LONGLONG;
		b->buffer = &col->s.i64;
		break;
	case EMH_T_DOUBLE:
		b->buffer_type = MYSQL_TYPE_DOUBLE;
		b->buffer = &col->s.d;
		break;
	case EMH_T_TIMESTAMP:
		b->buffer_type = MYSQL_TYPE_DATETIME;
		b->buffer = &col->s.t;
		b->buffer_length = sizeof col->s.t;
		break;
	default: /* text, json, blob */
		b->buffer_type = t == EMH_T_BLOB ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
		b->buffer = col->buf;
		b->buffer_length = col->cap;
		break;
	}
}

static emh_value my_col_value(const my_col *col, emh_type t)
{
	emh_value v = {.type = t, .is_null = col->is_null != 0};
	if (v.is_null)
		return v;
	switch (t) {
	case EMH_T_BOOL:
		v.u.b = col->s.b != 0;
		break;
	case EMH_T_INT32:
		v.u.i32 = col->s.i32;
		break;
	case EMH_T_INT64:
		v.u.i64 = col->s.i64;
		break;
	case EMH_T_DOUBLE:
		v.u.d = col->s.d;
		break;
	case EMH_T_TIMESTAMP:
		v.u.i64 = my_us_from_time(&col->s.t);
		break;
	default:
		v.u.s.ptr = col->buf ? col->buf : "";
		v.u.s.len = col->len;
		break;
	}
	return v;
}

/* Fetch every stored row of s into sink. */
static int my_stmt_rows(emh_conn *c, const emh_stmt *st, MYSQL_STMT *s, unsigned nf, emh_rowsink *sink,
			emh_error *err)
{
	const char *table = my_table_of(st);
	int rc = 0, f;
	if (mysql_stmt_store_result(s) != 0)
		return my_stmt_fail(s, "reading rows", table, err);
	if (st->ncols && nf != st->ncols) {
		mysql_stmt_free_result(s);
		return emh_error_set(err, EMH_EPLUGIN, "statement on table '%s' returns %u columns, %u expected",
				     table ? table : "?", nf, (unsigned)st->ncols);
	}
	if (my_grow_cols(c, nf)) {
		mysql_stmt_free_result(s);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	for (unsigned i = 0; i < nf; i++) {
		emh_type t = i < st->ncols ? st->col_types[i] : EMH_T_TEXT;
		my_col *col = &c->rcol[i];
		if ((t == EMH_T_TEXT || t == EMH_T_JSON || t == EMH_T_BLOB) && !col->buf) {
			col->buf = malloc(MY_RESULT_BUF_INIT);
			col->cap = col->buf ? MY_RESULT_BUF_INIT : 0;
		}
		my_bind_col(&c->rbind[i], col, t);
	}
	if (mysql_stmt_bind_result(s, c->rbind) != 0) {
		rc = my_stmt_fail(s, "binding results", table, err);
		goto out_free_result;
	}
	while ((f = mysql_stmt_fetch(s)) == 0 || f == MYSQL_DATA_TRUNCATED) {
		bool rebind = false;
		if (f == MYSQL_DATA_TRUNCATED) {
			/* A text or blob longer than its buffer: grow it and fetch that column again. */
			for (unsigned i = 0; i < nf; i++) {
				my_col *col = &c->rcol[i];
				if (!col->error || c->rbind[i].buffer_type == MYSQL_TYPE_DATETIME)
					continue;
				if (c->rbind[i].buffer_type != MYSQL_TYPE_STRING &&
				    c->rbind[i].buffer_type != MYSQL_TYPE_BLOB) {
					rc = emh_error_set(err, EMH_EDRIVER,
							   "column %u of table '%s' does not fit its field type", i + 1,
							   table ? table : "?");
					goto out_free_result;
				}
				unsigned long need = col->len + 1;
				char *nb = realloc(col->buf, need);
				if (!nb) {
					rc = emh_error_set(err, EMH_ENOMEM, "out of memory reading a %lu-byte value",
							   col->len);
					goto out_free_result;
				}
				col->buf = nb;
				col->cap = need;
				c->rbind[i].buffer = nb;
				c->rbind[i].buffer_length = need;
				if (mysql_stmt_fetch_column(s, &c->rbind[i], i, 0) != 0) {
					rc = my_stmt_fail(s, "reading a column", table, err);
					goto out_free_result;
				}
				rebind = true;
			}
		}
		for (unsigned i = 0; i < nf; i++)
			c->rvals[i] = my_col_value(&c->rcol[i], i < st->ncols ? st->col_types[i] : EMH_T_TEXT);
		if (sink && sink->row && (rc = sink->row(sink, c->rvals, err)) != 0)
			goto out_free_result;
		if (rebind && mysql_stmt_bind_result(s, c->rbind) != 0) {
			rc = my_stmt_fail(s, "binding results", table, err);
			goto out_free_result;
		}
	}
	if (f != MYSQL_NO_DATA)
		rc = my_stmt_fail(s, "reading rows", table, err);
out_free_result:
	mysql_stmt_free_result(s);
	return rc;
}

/* One execution of a prepared statement; *stale when the server forgot it. */
static int my_stmt_run(emh_conn *c, const emh_stmt *st, MYSQL_STMT *s, const emh_value *params,
		       emh_rowsink *sink, bool *stale, emh_error *err)
{
	const char *table = my_table_of(st);
	unsigned np = st->nparams, nf;
	int rc;

	*stale = false;
	if (np) {
		if (my_grow_params(c, np))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		for (unsigned i = 0; i < np; i++) {
			emh_type t = st->param_types ? st->param_types[i] : params[i].type;
			if ((rc = my_bind_param(&c->pbind[i], &c->pval[i], t, &params[i], i, err)))
				return rc;
		}
		if (mysql_stmt_bind_param(s, c->pbind) != 0)
			return my_stmt_fail(s, "binding parameters", table, err);
	}
	if (mysql_stmt_execute(s) != 0) {
		unsigned no = mysql_stmt_errno(s);
		*stale = no == MY_ER_UNKNOWN_STMT_HANDLER || no == MY_ER_NEED_REPREPARE;
		return my_stmt_fail(s, "executing a statement", table, err);
	}
	nf = mysql_stmt_field_count(s);
	if (nf)
		return my_stmt_rows(c, st, s, nf, sink, err);
	if (sink) {
		sink->affected = (int64_t)mysql_stmt_affected_rows(s);
		if (st->kind == EMH_STMT_INSERT)
			sink->last_id = (int64_t)mysql_stmt_insert_id(s);
	}
	return 0;
}

static int my_stmt_exec(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_rowsink *sink,
			emh_error *err)
{
	MYSQL_STMT *s = NULL;
	bool stale = false;
	int rc = my_thread_enter(err);
	if (rc)
		return rc;
	for (int attempt = 0;; attempt++) {
		if ((rc = my_stmt_get(c, st, &s, err)))
			return rc;
		stale = false;
		rc = my_stmt_run(c, st, s, params, sink, &stale, err);
		/* rc > 0 is the sink's "enough rows": delivered, never resent */
		if (rc < 0 && stale && attempt == 0) {
			emh_prepcache_drop(c->stmts, st->id);
			continue;
		}
		return rc;
	}
}

/* ---- dialect and schema sync ---- */

/* True when field i is the key, unique, indexed, or in a composite index. */
static bool my_field_indexed(const emh_meta *m, int i)
{
	const emh_entity *e = m->entity;
	if (i == m->pk || (e->fields[i].flags & (EMH_F_PK | EMH_F_UNIQUE | EMH_F_INDEXED)))
		return true;
	for (size_t k = 0; k < e->nindexes; k++)
		for (const char *const *f = e->indexes[k].fields; f && *f; f++)
			if (strcmp(*f, e->fields[i].name) == 0)
				return true;
	return false;
}

/*
 * Column types.  Text that is a key or indexed is VARCHAR(255): InnoDB
 * indexes at most 3072 bytes, and a full-length index (255 x 4 bytes of
 * utf8mb4 = 1020) keeps uniqueness exact where a prefix index would not.
 * Other text and JSON are LONGTEXT (stored verbatim; MySQL's JSON type
 * would reformat it).  The collation comes from the table default.
 */
static void my_column_type(const emh_meta *m, int field, char *buf, size_t cap)
{
	const emh_field *f = &m->entity->fields[field];
	bool gen = field == m->pk && m->generated;
	switch (f->type) {
	case EMH_T_BOOL:
		snprintf(buf, cap, "TINYINT(1)");
		break;
	case EMH_T_INT32:
		snprintf(buf, cap, "INT%s", gen ? " AUTO_INCREMENT" : "");
		break;
	case EMH_T_INT64:
		snprintf(buf, cap, "BIGINT%s", gen ? " AUTO_INCREMENT" : "");
		break;
	case EMH_T_DOUBLE:
		snprintf(buf, cap, "DOUBLE");
		break;
	case EMH_T_TEXT:
		if (my_field_indexed(m, field))
			snprintf(buf, cap, "VARCHAR(%d)", MY_INDEXED_TEXT_LEN);
		else
			snprintf(buf, cap, "LONGTEXT");
		break;
	case EMH_T_BLOB:
		snprintf(buf, cap, "LONGBLOB");
		break;
	case EMH_T_TIMESTAMP:
		snprintf(buf, cap, "DATETIME(6)");
		break;
	case EMH_T_JSON:
		snprintf(buf, cap, "LONGTEXT");
		break;
	default:
		snprintf(buf, cap, "LONGTEXT");
		break;
	}
}

static const emh_sql_dialect my_dialect = {
	.quote = '`',
	.numbered_params = false,
	.returning = false,
	.limit_all = "18446744073709551615",
	/* sql_mode never has NO_BACKSLASH_ESCAPES (set at connect), so '\\' is one backslash. */
	.like_escape = " ESCAPE '\\\\'",
	.begin_sql = "START TRANSACTION",
	.column_type = my_column_type,
	.upsert = EMH_SQL_UPSERT_ON_DUPLICATE_KEY,
};

/* Base name of a reported column type: "varchar(255)" -> "varchar". */
static bool my_type_is(const char *type, const char *const *names)
{
	size_t n = strcspn(type, "( ");
	for (; *names; names++)
		if (strlen(*names) == n && strncasecmp(type, *names, n) == 0)
			return true;
	return false;
}

static bool my_compatible(const emh_meta *m, int field, const char *type)
{
	static const char *const small_ints[] = {"tinyint", "smallint", "mediumint", "int", "integer", NULL};
	/* Not "bit": the client library returns BIT as bytes, which no integer
	 * field can read. */
	static const char *const ints[] = {"tinyint", "smallint", "mediumint", "int", "integer",
					   "bigint", "bool", "boolean", NULL};
	static const char *const reals[] = {"double", "float", "real", "decimal", "numeric", NULL};
	static const char *const texts[] = {"varchar", "char", "text", "tinytext", "mediumtext",
					    "longtext", NULL};
	static const char *const jsons[] = {"varchar", "char", "text", "tinytext", "mediumtext",
					    "longtext", "json", NULL};
	static const char *const blobs[] = {"blob", "tinyblob", "mediumblob", "longblob",
					    "binary", "varbinary", NULL};
	static const char *const times[] = {"datetime", "timestamp", NULL};
	switch (m->entity->fields[field].type) {
	case EMH_T_BOOL:
	case EMH_T_INT64:
		return my_type_is(type, ints);
	case EMH_T_INT32:
		return my_type_is(type, small_ints);
	case EMH_T_DOUBLE:
		return my_type_is(type, reals);
	case EMH_T_TEXT:
		return my_type_is(type, texts);
	case EMH_T_JSON:
		return my_type_is(type, jsons);
	case EMH_T_BLOB:
		return my_type_is(type, blobs);
	case EMH_T_TIMESTAMP:
		return my_type_is(type, times);
	default:
		return false;
	}
}

/* Rows of strings from a catalogue query (row-major, n rows of ncols). */
typedef struct my_strtab {
	char **v;
	size_t n, ncols;
} my_strtab;

static void my_strtab_release(my_strtab *t)
{
	for (size_t i = 0; i < t->n * t->ncols; i++)
		free(t->v[i]);
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

/*
 * Run a catalogue query with at most one string parameter (a table name:
 * bound, never pasted) and collect its rows as strings, each cut at 511 bytes
 * (names and type names are far shorter).
 */
static int my_select_strings(emh_conn *c, const char *sql, const char *param, unsigned ncols,
			     my_strtab *out, const char *what, const char *table, emh_error *err)
{
	enum { CAP = 512, MAXCOLS = 4 };
	char bufs[MAXCOLS][CAP];
	unsigned long lens[MAXCOLS], plen = param ? (unsigned long)strlen(param) : 0;
	my_flag nulls[MAXCOLS], errs[MAXCOLS];
	MYSQL_BIND pb, rb[MAXCOLS];
	MYSQL_STMT *s;
	size_t cap = 0;
	int rc = 0, f;

	out->v = NULL;
	out->n = 0;
	out->ncols = ncols;
	s = mysql_stmt_init(c->my);
	if (!s)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	if (mysql_stmt_prepare(s, sql, (unsigned long)strlen(sql)) != 0) {
		rc = my_stmt_fail(s, what, table, err);
		goto out_close;
	}
	if (param) {
		memset(&pb, 0, sizeof pb);
		pb.buffer_type = MYSQL_TYPE_STRING;
		pb.buffer = (void *)(uintptr_t)param;
		pb.buffer_length = plen;
		pb.length = &plen;
		if (mysql_stmt_bind_param(s, &pb) != 0) {
			rc = my_stmt_fail(s, what, table, err);
			goto out_close;
		}
	}
	if (mysql_stmt_execute(s) != 0 || mysql_stmt_store_result(s) != 0) {
		rc = my_stmt_fail(s, what, table, err);
		goto out_close;
	}
	memset(rb, 0, sizeof rb);
	for (unsigned i = 0; i < ncols; i++) {
		rb[i].buffer_type = MYSQL_TYPE_STRING;
		rb[i].buffer = bufs[i];
		rb[i].buffer_length = CAP;
		rb[i].length = &lens[i];
		rb[i].is_null = &nulls[i];
		rb[i].error = &errs[i];
	}
	if (mysql_stmt_bind_result(s, rb) != 0) {
		rc = my_stmt_fail(s, what, table, err);
		goto out_free;
	}
	while ((f = mysql_stmt_fetch(s)) == 0 || f == MYSQL_DATA_TRUNCATED) {
		if (out->n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			char **v = realloc(out->v, ncap * ncols * sizeof *v);
			if (!v) {
				rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
				goto out_free;
			}
			out->v = v;
			cap = ncap;
		}
		for (unsigned i = 0; i < ncols; i++) {
			size_t n = nulls[i] ? 0 : (lens[i] < CAP ? lens[i] : CAP - 1);
			char *sv = malloc(n + 1);
			if (!sv) {
				for (unsigned k = 0; k < i; k++)
					free(out->v[out->n * ncols + k]);
				rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
				goto out_free;
			}
			memcpy(sv, bufs[i], n);
			sv[n] = '\0';
			out->v[out->n * ncols + i] = sv;
		}
		out->n++;
	}
	if (f != MYSQL_NO_DATA)
		rc = my_stmt_fail(s, what, table, err);
out_free:
	mysql_stmt_free_result(s);
out_close:
	mysql_stmt_close(s);
	if (rc)
		my_strtab_release(out);
	return rc;
}

/*
 * Collation of new tables: binary and NO PAD where the server has one, so
 * that text compares, sorts and is unique exactly as the other drivers
 * ('a' and 'a ' differ; 'A' and 'a' differ).  utf8mb4_nopad_bin (MariaDB),
 * utf8mb4_0900_bin (MySQL 8), else utf8mb4_bin.
 */
static int my_table_collation(emh_conn *c, const char **out, emh_error *err)
{
	my_strtab t;
	int rc;
	if (c->collation[0]) {
		*out = c->collation;
		return 0;
	}
	rc = my_select_strings(c,
			       "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME"
			       " IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin') ORDER BY COLLATION_NAME DESC",
			       NULL, 1, &t, "looking up collations", NULL, err);
	if (rc)
		return rc;
	snprintf(c->collation, sizeof c->collation, "%s", t.n ? t.v[0] : "utf8mb4_bin");
	my_strtab_release(&t);
	*out = c->collation;
	return 0;
}

static int my_sync(emh_conn *c, const emh_meta *m, emh_error *err)
{
	const char *table = m->entity->table, *coll, *name;
	emh_buf b = EMH_BUF_INIT;
	my_strtab cols = {0}, idx = {0};
	int rc = my_thread_enter(err);
	if (rc)
		return rc;
	rc = my_select_strings(c,
			       "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS"
			       " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
			       table, 2, &cols, "reading the columns", table, err);
	if (rc)
		return rc;
	if (cols.n == 0) {
		if ((rc = my_table_collation(c, &coll, err)))
			goto out;
		if ((rc = emh_sql_create_table(&my_dialect, m, &b)) || b.oom || !b.ptr) {
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out;
		}
		while (b.len && (b.ptr[b.len - 1] == ';' || b.ptr[b.len - 1] == ' ' || b.ptr[b.len - 1] == '\n'))
			b.ptr[--b.len] = '\0';
		emh_buf_addf(&b, " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=%s", coll);
		if (b.oom) {
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out;
		}
		if ((rc = my_run_text(c, b.ptr, b.len, "creating the table", table, err)))
			goto out;
	} else {
		const char **names = malloc(cols.n * sizeof *names), **types = malloc(cols.n * sizeof *types);
		if (!names || !types) {
			free(names);
			free(types);
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < cols.n; i++) {
			names[i] = cols.v[i * 2];
			types[i] = cols.v[i * 2 + 1];
		}
		rc = emh_sql_check_columns(m, names, types, cols.n, my_compatible, err);
		free(names);
		free(types);
		if (rc)
			goto out;
	}
	rc = my_select_strings(c,
			       "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS"
			       " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
			       table, 1, &idx, "reading the indexes", table, err);
	if (rc)
		goto out;
	for (size_t i = 0, n = emh_sql_index_count(m); i < n; i++) {
		bool have = false;
		emh_buf_reset(&b);
		name = NULL;
		if ((rc = emh_sql_create_index(&my_dialect, m, i, false, &b, &name)) || b.oom || !b.ptr) {
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out;
		}
		for (size_t k = 0; name && k < idx.n && !have; k++)
			have = strcasecmp(idx.v[k], name) == 0;
		if (have)
			continue;
		rc = my_run_text(c, b.ptr, b.len, "creating an index", table, err);
		/* Another connection synced the same entity first. */
		if (rc && mysql_errno(c->my) == MY_ER_DUP_KEYNAME)
			rc = 0;
		if (rc)
			goto out;
	}
out:
	emh_buf_release(&b);
	my_strtab_release(&cols);
	my_strtab_release(&idx);
	return rc;
}

static const char *const my_schemes[] = {"mysql", "mariadb", NULL};

EMH_DRIVER_EXPORT const emh_driver emh_driver_descriptor = {
	EMH_DRIVER_HEADER,
	.name = "mysql",
	.version = "1.0",
	.description = "MySQL 8 and MariaDB 10.11+ through the C client library (server-side prepared statements)",
	.caps = EMH_CAP_SQL | EMH_CAP_TRANSACTIONS | EMH_CAP_SAVEPOINTS | EMH_CAP_UPSERT |
		EMH_CAP_ATOMIC_FLUSH,
	.url_schemes = my_schemes,
	.params = my_params,
	.connect = my_connect,
	.disconnect = my_disconnect,
	.ping = my_ping,
	.execute = my_execute,
	.sync = my_sync,
	.dialect = &my_dialect,
	.stmt_exec = my_stmt_exec,
};
