/* SPDX-License-Identifier: MIT */
/*
 * plugins/mysql/mysql.c: the MySQL/MariaDB driver (server-side prepared
 * statements through the client library): its descriptor, its keys, the
 * library's process-wide and per-thread state, and opening and closing
 * connections.  The other files: errors.c (error numbers and messages),
 * session.c (ping, raw SQL), statements.c (compiled statements, their
 * MYSQL_BIND values and timestamps), schema.c (dialect and schema sync).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mysql.h>

#include <emhost/driver.h>
#include <emhost/host.h> /* EMH_LOG_* for emh_params_log */
#include <emhost/prepcache.h>
#include <emhost/sql.h>

#include "mysql_int.h"

/* Session settings every connection starts with (see docs/drivers/mysql.md). */
#define MY_SESSION_SQL                                                         \
	"SET SESSION time_zone = '+00:00', "                                   \
	"SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"
/* The common keys' defaults (core/cfg_check.c), should a host not fill them. */
#define MY_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define MY_DEFAULT_STATEMENT_TIMEOUT_MS 30000

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
int my_thread_enter(emh_error *err)
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

int64_t my_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The coarse clock (a tick of the kernel's, a few ms) is cheaper than
 * my_now_ms on every call, and fine against my_deadline's 100 ms margin. */
int64_t my_call_clock_ms(void)
{
#ifdef CLOCK_MONOTONIC_COARSE
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#else
	return my_now_ms();
#endif
}

int my_call_enter(emh_conn *c, emh_error *err)
{
	int rc = my_thread_enter(err);
	c->call_ms = my_call_clock_ms();
	return rc;
}

/* ---- connect ---- */

static const emh_param_spec my_params[] = {
	{.key = "host", .kind = EMH_PARAM_STRING,
	 .help = "server host name or address (unset or \"localhost\": the Unix socket)"},
	{.key = "port", .kind = EMH_PARAM_INT, .min = 1, .max = 65535, .help = "TCP port (unset: the library's, 3306)"},
	{.key = "socket", .kind = EMH_PARAM_STRING, .help = "Unix socket path, used when host is unset or \"localhost\""},
	{.key = "database", .kind = EMH_PARAM_STRING, .help = "database (schema) to use"},
	{.key = "user", .kind = EMH_PARAM_STRING, .help = "user name (unset: the login name)"},
	{.key = "read_timeout_ms", .kind = EMH_PARAM_INT, .def = "0", .min = 0, .max = 86400000,
	 .help = "give up on a server silent this long during a call, rounded up to seconds; "
		 "0 = statement_timeout_ms's"},
	{.key = "write_timeout_ms", .kind = EMH_PARAM_INT, .def = "0", .min = 0, .max = 86400000,
	 .help = "give up on a write blocked this long, rounded up to seconds; 0 = statement_timeout_ms's"},
	{.key = "charset", .kind = EMH_PARAM_STRING, .def = "utf8mb4",
	 .help = "connection character set: utf8mb4 or utf8mb3"},
	{.key = NULL},
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

/*
 * Which server this is, from its version string ("8.0.36", "10.11.19-MariaDB-0+deb12u1";
 * MariaDB once prefixed "5.5.5-" for old replication clients): what its SQL
 * can say differs (conn_caps, lock_clause).
 */
static void my_server_kind(emh_conn *c, const char *info)
{
	unsigned long major = 0, minor = 0, patch = 0;
	if (!info)
		info = "";
	c->mariadb = strstr(info, "MariaDB") != NULL;
	if (c->mariadb && strncmp(info, "5.5.5-", 6) == 0)
		info += 6;
	if (sscanf(info, "%lu.%lu.%lu", &major, &minor, &patch) < 2)
		major = minor = patch = 0;
	c->server_version = major * 10000 + minor * 100 + patch;
}

/*
 * The server's own statement deadline, set per session: a live server then
 * stops a statement at statement_timeout_ms by itself (MariaDB: 1969,
 * max_statement_time in seconds, every statement; MySQL 8: 3024,
 * MAX_EXECUTION_TIME in ms, SELECTs only).  The socket read timeout, the
 * same value rounded up to seconds, is for a server that does not answer at
 * all.
 */
static int my_session_setup(emh_conn *c, long long stmt_ms, emh_error *err)
{
	char sql[256];
	size_t n = (size_t)snprintf(sql, sizeof sql, "%s", MY_SESSION_SQL);
	if (stmt_ms > 0 && c->mariadb)
		n += (size_t)snprintf(sql + n, sizeof sql - n, ", SESSION max_statement_time = %lld.%03lld",
				      stmt_ms / 1000, stmt_ms % 1000);
	else if (stmt_ms > 0)
		n += (size_t)snprintf(sql + n, sizeof sql - n, ", SESSION MAX_EXECUTION_TIME = %lld", stmt_ms);
	return my_run_text(c, sql, n, "setting up the session", NULL, err);
}

/*
 * EMFILE or ENFILE when the connect failed for want of a file descriptor,
 * else 0: the client library reports a socket it could not create (2001
 * for a Unix socket, 2004 for TCP) with the system's errno in parentheses
 * at the end of its message, "Can't create TCP/IP socket (24)".
 */
static int my_fd_errno(MYSQL *my)
{
	unsigned no = mysql_errno(my);
	if (no != MY_CR_SOCKET_CREATE_ERROR && no != MY_CR_IPSOCK_ERROR)
		return 0;
	const char *open = strrchr(mysql_error(my), '(');
	int e = open ? atoi(open + 1) : 0;
	return e == EMFILE || e == ENFILE ? e : 0;
}

static int my_connect(const emh_params *p, emh_dctx *dc, emh_conn **out, emh_error *err)
{
	const char *host = emh_params_get(p, "host");
	const char *sock = emh_params_get(p, "socket");
	const char *db = emh_params_get(p, "database");
	const char *user = emh_params_get(p, "user");
	const char *pw = emh_params_get(p, "password");
	const char *cs = emh_params_get(p, "charset");
	unsigned cto, rto, wto, sto;
	long long port, stmt_ms, rto_ms = 0;
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
	    (rc = my_param_ms(p, "write_timeout_ms", 0, &wto, err)) ||
	    (rc = emh_params_int(p, "statement_timeout_ms", MY_DEFAULT_STATEMENT_TIMEOUT_MS, &stmt_ms, err)) ||
	    (rc = emh_params_int(p, "read_timeout_ms", 0, &rto_ms, err)))
		return rc;
	if (stmt_ms < 0 || stmt_ms > INT32_MAX)
		return emh_error_set(err, EMH_ECONFIG, "'statement_timeout_ms' must be between 0 and %d, not %lld",
				     INT32_MAX, stmt_ms);
	sto = (unsigned)((stmt_ms + 999) / 1000);
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
	if ((rc = emh_prepcache_new(my_prep_close, NULL, &c->stmts, err)))
		goto out_free;
	c->bind_gen = 1;
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
	/*
	 * Timeouts count whole seconds.  The read and write timeouts are the
	 * call's deadline unless read_timeout_ms / write_timeout_ms say
	 * otherwise (they win).  MariaDB Connector/C applies the read timeout
	 * once per read (measured: a silent server ends a call after it, not
	 * three times it as old libmysqlclient documentation says), so rounding
	 * up keeps a call within statement_timeout_ms + 1 s.  The connect
	 * timeout covers the server's greeting too.
	 */
	c->rto_key = rto ? "read_timeout_ms" : "statement_timeout_ms";
	c->rto_ms = rto ? rto_ms : stmt_ms;
	if (!rto)
		rto = sto;
	if (!wto)
		wto = sto;
	c->rto_s = rto;
	c->stmt_ms = stmt_ms;
	if (cto)
		mysql_options(c->my, MYSQL_OPT_CONNECT_TIMEOUT, &cto);
	if (rto)
		mysql_options(c->my, MYSQL_OPT_READ_TIMEOUT, &rto);
	if (wto)
		mysql_options(c->my, MYSQL_OPT_WRITE_TIMEOUT, &wto);
	mysql_options(c->my, MYSQL_SET_CHARSET_NAME, cs);

	int64_t t0 = my_now_ms();
	if (!mysql_real_connect(c->my, host, user, pw, db, (unsigned)port, sock,
				CLIENT_FOUND_ROWS | CLIENT_MULTI_STATEMENTS)) {
		char what[400];
		snprintf(what, sizeof what, "cannot connect to mysql server at %s as user '%s'%s%s%s", c->where,
			 user ? user : "(login name)", db ? ", database '" : "", db ? db : "", db ? "'" : "");
		int fd_errno = my_fd_errno(c->my);
		rc = my_conn_fail(c, what, NULL, err);
		/* Out of file descriptors: the database is not down (driver.h). */
		if (fd_errno) {
			emh_error_prefix(err, rc, "out of file descriptors: ");
			rc = EMH_ENOFD;
			if (err) {
				err->code = rc;
				err->native = fd_errno;
				err->retryable = true;
			}
			goto out_free;
		}
		/* Whatever fails at connect, the connection does not exist: a
		 * network-class error or an unexpected one is "unavailable". */
		if (rc == EMH_EDRIVER || rc == EMH_ERETRY) {
			rc = EMH_EUNAVAILABLE;
			if (err) {
				err->code = rc;
				err->retryable = false;
			}
		}
		/* A server that accepted but did not greet us within the connect
		 * timeout (the library calls that a lost connection too), or one
		 * with every connection slot taken (1040): EMH_ETIMEOUT, like a
		 * call past its deadline; neither marks the context down. */
		bool silent = rc == EMH_EUNAVAILABLE && cto && my_now_ms() - t0 >= (int64_t)cto * 1000 - 100;
		if (silent || mysql_errno(c->my) == MY_ER_CON_COUNT) {
			if (silent)
				emh_error_prefix(err, rc, "no answer within connect_timeout_ms (%u s): ", cto);
			rc = EMH_ETIMEOUT;
			if (err) {
				err->code = rc;
				err->retryable = true;
			}
		}
		goto out_free;
	}
	my_server_kind(c, mysql_get_server_info(c->my));
	c->call_ms = my_call_clock_ms();
	if ((rc = my_deadline(c, my_session_setup(c, stmt_ms, err), err)))
		goto out_free;
	emh_params_log(p, EMH_LOG_DEBUG, "mysql: connected to %s, server %s", c->where,
		       mysql_get_server_info(c->my));
	*out = c;
	return 0;

out_free:
	my_disconnect(c);
	return rc;
}

static const char *const my_schemes[] = {"mysql", "mariadb", NULL};

EMH_DRIVER_EXPORT const emh_driver emh_driver_descriptor = {
	EMH_DRIVER_HEADER,
	.name = "mysql",
	.version = "1.0",
	.description = "MySQL 8 and MariaDB 10.11+ through the C client library (server-side prepared statements)",
	.caps = EMH_CAP_SQL | EMH_CAP_TRANSACTIONS | EMH_CAP_SAVEPOINTS | EMH_CAP_UPSERT |
		EMH_CAP_ATOMIC_FLUSH | EMH_CAP_CONDITIONAL_WRITES | EMH_CAP_LOCKS | EMH_CAP_ISOLATION |
		EMH_CAP_AGGREGATE | EMH_CAP_REPLICAS,
	.url_schemes = my_schemes,
	.url_form = EMH_URL_NETWORK,
	.params = my_params,
	.connect = my_connect,
	.disconnect = my_disconnect,
	.ping = my_ping,
	.execute = my_execute,
	.sync = my_sync,
	.conn_caps = my_conn_caps,
	.dialect = &my_dialect,
	.stmt_exec = my_stmt_exec,
	.lock_clause = my_lock_clause,
	.begin_isolation = my_begin_isolation,
	.describe = my_describe,
	.migrate_lock = my_migrate_lock,
	.migrate_unlock = my_migrate_unlock,
	.position = my_position,
	.replayed = my_replayed,
	.lag_ms = my_lag_ms,
};
