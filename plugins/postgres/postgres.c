/* SPDX-License-Identifier: MIT */
/* plugins/postgres/postgres.c: the PostgreSQL driver (libpq, binary prepared statements). */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libpq-fe.h>

#include <emhost/driver.h>
#include <emhost/prepcache.h>
#include <emhost/sql.h>

/*
 * Type OIDs of the built-in types we bind and read (pg_type.oid; they are
 * fixed across server versions).  libpq-dev ships no header with them.
 */
enum {
	PG_BOOLOID = 16,
	PG_BYTEAOID = 17,
	PG_CHAROID = 18,
	PG_NAMEOID = 19,
	PG_INT8OID = 20,
	PG_INT2OID = 21,
	PG_INT4OID = 23,
	PG_TEXTOID = 25,
	PG_OIDOID = 26,
	PG_JSONOID = 114,
	PG_FLOAT4OID = 700,
	PG_FLOAT8OID = 701,
	PG_UNKNOWNOID = 705,
	PG_BPCHAROID = 1042,
	PG_VARCHAROID = 1043,
	PG_DATEOID = 1082,
	PG_TIMESTAMPOID = 1114,
	PG_TIMESTAMPTZOID = 1184,
	PG_JSONBOID = 3802,
};

/* Microseconds between 1970-01-01 (emhost) and 2000-01-01 (PostgreSQL) epochs. */
#define PG_EPOCH_OFFSET_US INT64_C(946684800000000)
#define PG_DEFAULT_CONNECT_TIMEOUT_MS 5000

struct emh_conn {
	PGconn *pg;
	/* BEGIN asked for but not sent yet: it goes out with the next statement */
	bool begin_pending;
	/* statements prepared on this connection, as "emh_<id>", by id (PG_PREPARED each) */
	emh_prepcache *stmts;
	/* parameter scratch, grown to the largest statement seen */
	const char **pvals;
	int *plens;
	int *pfmts;
	uint64_t *pbuf;
	size_t pcap;
	/* decoded row scratch */
	emh_value *row;
	Oid *rowtypes;
	size_t rowcap;
};

/*
 * The statement cache's handle for a statement prepared on the server: the
 * server keeps it by name, so the client has nothing to release.
 */
static char pg_prepared_mark;
#define PG_PREPARED ((void *)&pg_prepared_mark)

/* ---- errors ---- */

/* PostgreSQL's own packing of a SQLSTATE into an int (MAKE_SQLSTATE in
 * utils/elog.h): 6 bits per character, first character lowest. */
static int pg_sqlstate_pack(const char *s)
{
	unsigned v = 0;
	for (int i = 0; i < 5 && s[i]; i++)
		v |= ((unsigned)(s[i] - '0') & 0x3Fu) << (6 * i);
	return (int)v;
}

/*
 * Portable code for a SQLSTATE.  Class 08 (connection exception) and the
 * shutdown/too-many-connections states mean the server is gone or refuses
 * us; 40001/40P01 (and 55P03, a lock not available) are worth retrying.
 */
static int pg_sqlstate_code(const char *s, bool *retryable)
{
	*retryable = false;
	if (!s || strlen(s) != 5)
		return EMH_EDRIVER;
	if (strcmp(s, "23505") == 0)
		return EMH_ECONFLICT;
	if (strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
	    strcmp(s, "57P03") == 0 || strcmp(s, "53300") == 0)
		return EMH_EUNAVAILABLE;
	if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 || strcmp(s, "55P03") == 0) {
		*retryable = true;
		return EMH_ERETRY;
	}
	if (strcmp(s, "23502") == 0 || strcmp(s, "23514") == 0 || strncmp(s, "22", 2) == 0)
		return EMH_EINVAL;
	if (strncmp(s, "25", 2) == 0)
		return EMH_ESTATE;
	if (strncmp(s, "28", 2) == 0 || strcmp(s, "3D000") == 0)
		return EMH_EUNAVAILABLE;
	return EMH_EDRIVER;
}

/*
 * Copy a libpq/server message into dst on one line: "ERROR:  " and
 * "FATAL:  " prefixes dropped, newlines and tabs folded into single
 * spaces, trailing space trimmed, and every occurrence of the password
 * (when at least 4 bytes long, so a tiny one cannot mangle the text)
 * replaced by "********".
 */
static void pg_clean_message(char *dst, size_t cap, const char *src, const char *password)
{
	size_t n = 0, pwlen = password ? strlen(password) : 0;
	bool space = false;
	if (!src)
		src = "";
	if (cap == 0)
		return;
	while (*src && n + 1 < cap) {
		if (pwlen >= 4 && strncmp(src, password, pwlen) == 0) {
			const char *mask = "********";
			while (*mask && n + 1 < cap)
				dst[n++] = *mask++;
			src += pwlen;
			space = false;
			continue;
		}
		if ((strncmp(src, "ERROR:  ", 8) == 0 || strncmp(src, "FATAL:  ", 8) == 0) &&
		    (n == 0 || space || (n >= 2 && dst[n - 2] == ':'))) {
			src += 8;
			continue;
		}
		char ch = *src++;
		if (ch == '\n' && n > 0 && n + 2 < cap && !(n >= 2 && dst[n - 2] == ';' && space) &&
		    src[strspn(src, " \t\r\n")]) {
			/* a line break inside a message: "refused; Is the server running..." */
			if (space)
				n--;
			dst[n++] = ';';
			dst[n++] = ' ';
			space = true;
			continue;
		}
		if (ch == '\n' || ch == '\t' || ch == '\r' || ch == ' ') {
			if (n > 0 && !space)
				dst[n++] = ' ';
			space = true;
			continue;
		}
		space = false;
		dst[n++] = ch;
	}
	while (n > 0 && dst[n - 1] == ' ')
		n--;
	dst[n] = '\0';
}

static void pg_error_state(emh_error *err, const char *state, bool retryable)
{
	if (!err)
		return;
	if (state && strlen(state) == 5) {
		memcpy(err->sqlstate, state, 6);
		err->native = pg_sqlstate_pack(state);
	}
	err->retryable = retryable;
}

/*
 * Fill err from a failed result (res may be NULL) of what ("insert into
 * 'users'").  Only the server's primary message is used: DETAIL lines carry
 * row values ("Key (email)=(x) already exists").  A connection that is
 * now bad makes the failure EMH_EUNAVAILABLE whatever the SQLSTATE, so the
 * core discards it; without a SQLSTATE it gets 08006 (connection failure).
 */
static int pg_fail(emh_conn *c, const PGresult *res, const char *what, emh_error *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char msg[384];
	bool retryable;
	int code;

	if (!primary && res)
		primary = PQresultErrorMessage(res);
	if (!primary || !*primary)
		primary = PQerrorMessage(c->pg);
	pg_clean_message(msg, sizeof msg, primary, NULL);
	if (!*msg)
		snprintf(msg, sizeof msg, "unknown error");
	code = pg_sqlstate_code(state, &retryable);
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		code = EMH_EUNAVAILABLE;
		retryable = false;
		if (!state || !*state)
			state = "08006";
	}
	emh_error_set(err, code, "%s: %s", what, msg);
	pg_error_state(err, state, retryable);
	return code;
}

/* Run a command through the simple protocol; 0 or the mapped failure. */
static int pg_command(emh_conn *c, const char *sql, const char *what, emh_error *err)
{
	PGresult *res = PQexec(c->pg, sql);
	ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	int rc = 0;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY)
		rc = pg_fail(c, res, what, err);
	PQclear(res);
	return rc;
}

/* ---- parameters and connection ---- */

static const char *const pg_url_schemes[] = {"postgres", "postgresql", NULL};

static const emh_param_spec pg_params[] = {
	{"host", EMH_PARAM_STRING, 0, "server host name, address or unix socket directory (libpq default when unset)"},
	{"port", EMH_PARAM_INT, 0, "server port (default 5432)"},
	{"database", EMH_PARAM_STRING, 0, "database name (default: the user name)"},
	{"user", EMH_PARAM_STRING, 0, "role to connect as"},
	{"sslmode", EMH_PARAM_STRING, 0, "disable, allow, prefer (default), require, verify-ca or verify-full"},
	{"sslrootcert", EMH_PARAM_STRING, 0, "file of CA certificates for verify-ca / verify-full"},
	{"connect_timeout_ms", EMH_PARAM_INT, 0, "deadline for establishing a connection in ms (default 5000, 0 = none)"},
	{"application_name", EMH_PARAM_STRING, 0, "application_name reported to the server (default emhost)"},
	{"options", EMH_PARAM_STRING, 0, "server options sent at connection start, e.g. \"-c search_path=app\""},
	{NULL, 0, 0, NULL},
};

static const char *const pg_sslmodes[] = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full", NULL};

static int64_t pg_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Best-effort SQLSTATE for a failed connection attempt.  libpq does not
 * expose the server's error fields for a connection that never opened, so
 * the (English) message is matched; anything unrecognised is 08001
 * (unable to establish connection).
 */
static const char *pg_connect_sqlstate(const char *msg)
{
	if (strstr(msg, "password authentication failed") || strstr(msg, "SCRAM") ||
	    strstr(msg, "no password supplied") || strstr(msg, "password is required"))
		return "28P01";
	if (strstr(msg, "no pg_hba.conf entry") || (strstr(msg, "role \"") && strstr(msg, "does not exist")))
		return "28000";
	if (strstr(msg, "database \"") && strstr(msg, "does not exist"))
		return "3D000";
	if (strstr(msg, "too many clients") || strstr(msg, "remaining connection slots"))
		return "53300";
	if (strstr(msg, "starting up") || strstr(msg, "shutting down") || strstr(msg, "in recovery mode"))
		return "57P03";
	return "08001";
}

static int pg_connect_fail(const emh_params *p, PGconn *pg, const char *why, emh_error *err)
{
	const char *db = emh_params_get(p, "database");
	const char *user = emh_params_get(p, "user");
	const char *state;
	char msg[400];

	pg_clean_message(msg, sizeof msg, why ? why : (pg ? PQerrorMessage(pg) : "out of memory"),
			 emh_params_get(p, "password"));
	state = pg_connect_sqlstate(msg);
	/* Refused credentials (28xxx) or an unknown database (3D000) are the
	 * configuration's fault, not an outage (host.h's contract). */
	int code = state && (strncmp(state, "28", 2) == 0 || strcmp(state, "3D000") == 0) ? EMH_ECONFIG
											    : EMH_EUNAVAILABLE;
	emh_error_set(err, code, "cannot connect to database '%s' as '%s': %s",
		      db ? db : "(default)", user ? user : "(default)", *msg ? msg : "unknown error");
	pg_error_state(err, state, false);
	PQfinish(pg);
	return code;
}

/*
 * Wait for PQconnectPoll to finish with a deadline in milliseconds:
 * libpq's own connect_timeout counts whole seconds (at least 2) per host
 * and is not applied to non-blocking connections, so we poll ourselves.
 * Host name resolution, done inside PQconnectStartParams/PQconnectPoll, is
 * not covered.
 */
static int pg_connect_wait(const emh_params *p, PGconn *pg, long long timeout_ms, emh_error *err)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	int64_t deadline = timeout_ms > 0 ? pg_now_ms() + timeout_ms : 0;

	for (;;) {
		if (st == PGRES_POLLING_OK)
			return 0;
		if (st == PGRES_POLLING_FAILED)
			return pg_connect_fail(p, pg, NULL, err);
		struct pollfd pfd = {.fd = PQsocket(pg), .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
		int wait = -1;
		if (pfd.fd < 0)
			return pg_connect_fail(p, pg, NULL, err);
		if (deadline) {
			int64_t left = deadline - pg_now_ms();
			if (left <= 0)
				goto timed_out;
			wait = left > 60000 ? 60000 : (int)left;
		}
		int r = poll(&pfd, 1, wait);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return pg_connect_fail(p, pg, strerror(errno), err);
		if (r == 0)
			continue; /* the deadline check above decides */
		st = PQconnectPoll(pg);
	}
timed_out:;
	char why[128];
	snprintf(why, sizeof why, "no connection within connect_timeout_ms=%lld", timeout_ms);
	return pg_connect_fail(p, pg, why, err);
}

/* Server notices ("relation ... already exists, skipping") would go to
 * stderr by default; a driver does not write there. */
static void pg_notice_ignore(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static void pg_conn_free(emh_conn *c)
{
	if (!c)
		return;
	PQfinish(c->pg);
	emh_prepcache_free(c->stmts);
	free(c->pvals);
	free(c->plens);
	free(c->pfmts);
	free(c->pbuf);
	free(c->row);
	free(c->rowtypes);
	free(c);
}

/*
 * Open a connection.  Every setting goes to libpq as a keyword array
 * (PQconnectStartParams with expand_dbname = 0), never pasted into a
 * conninfo string, so a value cannot smuggle in another keyword.  The
 * session is pinned to UTF8, TimeZone UTC and standard_conforming_strings
 * (the dialect's LIKE ... ESCAPE '\' depends on it).
 */
static int pg_connect(const emh_params *p, emh_dctx *dc, emh_conn **out, emh_error *err)
{
	const char *kw[16], *val[16];
	int n = 0;
	long long port = 0, timeout_ms = 0;
	char portbuf[24], optbuf[1024];
	const char *s;
	emh_conn *c;
	int rc;

	(void)dc;
	rc = emh_params_int(p, "port", 0, &port, err);
	if (rc)
		return rc;
	if (port < 0 || port > 65535)
		return emh_error_set(err, EMH_ECONFIG, "port %lld out of range (1-65535)", port);
	rc = emh_params_int(p, "connect_timeout_ms", PG_DEFAULT_CONNECT_TIMEOUT_MS, &timeout_ms, err);
	if (rc)
		return rc;
	if (timeout_ms < 0)
		return emh_error_set(err, EMH_ECONFIG, "connect_timeout_ms must be >= 0 (got %lld)", timeout_ms);
	s = emh_params_get(p, "sslmode");
	if (s) {
		size_t i;
		for (i = 0; pg_sslmodes[i] && strcmp(pg_sslmodes[i], s) != 0; i++)
			;
		if (!pg_sslmodes[i])
			return emh_error_set(err, EMH_ECONFIG,
					     "sslmode '%s' is not one of disable, allow, prefer, require, verify-ca, verify-full",
					     s);
	}
	s = emh_params_get(p, "options");
	if ((size_t)snprintf(optbuf, sizeof optbuf, "-c TimeZone=UTC -c standard_conforming_strings=on%s%s",
			     s ? " " : "", s ? s : "") >= sizeof optbuf)
		return emh_error_set(err, EMH_ECONFIG, "options is too long (at most 960 bytes)");

#define PG_KW(k, v)                                                            \
	do {                                                                   \
		const char *v_ = (v);                                          \
		if (v_ && *v_) {                                               \
			kw[n] = (k);                                           \
			val[n] = v_;                                           \
			n++;                                                   \
		}                                                              \
	} while (0)
	PG_KW("host", emh_params_get(p, "host"));
	if (port > 0) {
		snprintf(portbuf, sizeof portbuf, "%lld", port);
		PG_KW("port", portbuf);
	}
	PG_KW("dbname", emh_params_get(p, "database"));
	PG_KW("user", emh_params_get(p, "user"));
	PG_KW("password", emh_params_get(p, "password"));
	PG_KW("sslmode", emh_params_get(p, "sslmode"));
	PG_KW("sslrootcert", emh_params_get(p, "sslrootcert"));
	PG_KW("application_name", emh_params_get(p, "application_name"));
	PG_KW("fallback_application_name", "emhost");
	PG_KW("client_encoding", "UTF8");
	PG_KW("options", optbuf);
#undef PG_KW
	kw[n] = NULL;
	val[n] = NULL;

	c = calloc(1, sizeof *c);
	if (!c)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	if ((rc = emh_prepcache_new(NULL, NULL, &c->stmts, err)) != 0) {
		free(c);
		return rc;
	}
	c->pg = PQconnectStartParams(kw, val, 0);
	if (!c->pg) {
		pg_conn_free(c);
		return emh_error_set(err, EMH_ENOMEM, "out of memory starting a connection");
	}
	PQsetNoticeProcessor(c->pg, pg_notice_ignore, NULL);
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		PGconn *pg = c->pg;
		c->pg = NULL;
		pg_conn_free(c);
		return pg_connect_fail(p, pg, NULL, err);
	}
	{
		PGconn *pg = c->pg;
		c->pg = NULL; /* pg_connect_wait frees pg on failure */
		rc = pg_connect_wait(p, pg, timeout_ms, err);
		if (rc) {
			pg_conn_free(c);
			return rc;
		}
		c->pg = pg;
	}
	if (PQserverVersion(c->pg) < 100000) {
		int v = PQserverVersion(c->pg);
		pg_conn_free(c);
		return emh_error_set(err, EMH_EUNSUPPORTED,
				     "server version %d.%d is too old: the postgres driver needs 10 or later",
				     v / 10000, v % 10000 / 100);
	}
	s = PQparameterStatus(c->pg, "standard_conforming_strings");
	if (!s || strcmp(s, "on") != 0) {
		rc = pg_command(c, "SET standard_conforming_strings = on", "session setup", err);
		if (rc) {
			pg_conn_free(c);
			return rc;
		}
	}
	emh_params_log(p, EMH_LOG_DEBUG, "connected to PostgreSQL %s", PQparameterStatus(c->pg, "server_version"));
	*out = c;
	return 0;
}

static void pg_disconnect(emh_conn *c)
{
	pg_conn_free(c);
}

/* Send a BEGIN that begin() deferred, on its own (paths that cannot carry it). */
static int pg_send_begin(emh_conn *c, emh_error *err)
{
	if (!c->begin_pending)
		return 0;
	c->begin_pending = false;
	return pg_command(c, "BEGIN", "begin", err);
}

/*
 * A live connection answers an empty query.  A transaction left open (the
 * core always ends its own; raw SQL may not) is rolled back first, so a
 * pooled connection never carries one to its next user.
 */
static int pg_ping(emh_conn *c, emh_error *err)
{
	PGTransactionStatusType ts;
	if (PQstatus(c->pg) != CONNECTION_OK) {
		emh_error_set(err, EMH_EUNAVAILABLE, "connection lost");
		pg_error_state(err, "08006", false);
		return EMH_EUNAVAILABLE;
	}
	c->begin_pending = false;
	ts = PQtransactionStatus(c->pg);
	if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
		return pg_command(c, "ROLLBACK", "ping", err);
	return pg_command(c, "", "ping", err);
}

/* Forget every prepared statement (after DEALLOCATE / DISCARD in raw SQL). */
static void pg_forget_prepared(emh_conn *c)
{
	emh_prepcache_clear(c->stmts);
}

/* Bring a COPY started by raw SQL to an end so the connection stays usable. */
static void pg_drain_copy(emh_conn *c, ExecStatusType s)
{
	PGresult *r;
	if (s == PGRES_COPY_IN)
		PQputCopyEnd(c->pg, "COPY is not supported through emhost");
	else if (s == PGRES_COPY_OUT) {
		char *buf;
		while (PQgetCopyData(c->pg, &buf, 0) > 0)
			PQfreemem(buf);
	}
	while ((r = PQgetResult(c->pg)) != NULL)
		PQclear(r);
}

/*
 * Raw SQL through the simple protocol: several statements, run as one
 * implicit transaction unless they hold their own BEGIN/COMMIT.
 */
static int pg_execute(emh_conn *c, const char *text, emh_error *err)
{
	PGresult *res;
	ExecStatusType s;
	int rc = pg_send_begin(c, err);

	if (rc)
		return rc;
	res = PQexec(c->pg, text);
	s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	if (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH) {
		PQclear(res);
		pg_drain_copy(c, s);
		return emh_error_set(err, EMH_EUNSUPPORTED, "COPY is not supported through execute");
	}
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY)
		rc = pg_fail(c, res, "execute", err);
	/* Forget every prepared statement only when the server dropped them all;
	 * a single one dropped by name is noticed (26000) and re-prepared by
	 * pg_stmt_exec.  Guessing from the text would misfire on any SQL that
	 * merely contains the word. */
	const char *tag = res && rc == 0 ? PQcmdStatus(res) : NULL;
	if (tag && (strcmp(tag, "DISCARD ALL") == 0 || strcmp(tag, "DEALLOCATE ALL") == 0))
		pg_forget_prepared(c);
	PQclear(res);
	return rc;
}

/* ---- transactions ---- */

/*
 * BEGIN is not sent at once: it travels with the transaction's first
 * statement (one round trip instead of two, as PgJDBC does).  Nothing is
 * lost: PostgreSQL takes a transaction's snapshot at its first statement,
 * not at BEGIN, and a transaction that runs nothing has nothing to commit.
 */
static int pg_begin(emh_conn *c, emh_error *err)
{
	if (PQstatus(c->pg) != CONNECTION_OK) {
		emh_error_set(err, EMH_EUNAVAILABLE, "begin: connection lost");
		pg_error_state(err, "08006", false);
		return EMH_EUNAVAILABLE;
	}
	c->begin_pending = true;
	return 0;
}

/*
 * COMMIT of a transaction that had failed is answered by the server with
 * the tag ROLLBACK and no error: report it, the transaction is gone.
 */
static int pg_commit(emh_conn *c, emh_error *err)
{
	PGresult *res;
	int rc = 0;

	if (c->begin_pending) {
		c->begin_pending = false;
		return 0;
	}
	res = PQexec(c->pg, "COMMIT");
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
		rc = pg_fail(c, res, "commit", err);
	} else if (strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
		rc = emh_error_set(err, EMH_ESTATE,
				   "commit: the transaction had failed on an earlier error and was rolled back");
		pg_error_state(err, "25P02", false);
	}
	PQclear(res);
	return rc;
}

static int pg_rollback(emh_conn *c, emh_error *err)
{
	if (c->begin_pending) {
		c->begin_pending = false;
		return 0;
	}
	return pg_command(c, "ROLLBACK", "rollback", err);
}

/* Savepoint commands; a deferred BEGIN goes in the same simple-protocol message. */
static int pg_savepoint_sql(emh_conn *c, const char *verb, const char *name, const char *what, emh_error *err)
{
	char sql[160];
	if (!emh_ident_valid(name))
		return emh_error_set(err, EMH_EINVAL, "invalid savepoint name");
	snprintf(sql, sizeof sql, "%s%s \"%s\"", c->begin_pending ? "BEGIN; " : "", verb, name);
	c->begin_pending = false;
	return pg_command(c, sql, what, err);
}

static int pg_savepoint(emh_conn *c, const char *name, emh_error *err)
{
	return pg_savepoint_sql(c, "SAVEPOINT", name, "savepoint", err);
}

static int pg_release(emh_conn *c, const char *name, emh_error *err)
{
	return pg_savepoint_sql(c, "RELEASE SAVEPOINT", name, "release savepoint", err);
}

static int pg_rollback_to(emh_conn *c, const char *name, emh_error *err)
{
	return pg_savepoint_sql(c, "ROLLBACK TO SAVEPOINT", name, "rollback to savepoint", err);
}

/* ---- dialect and schema ---- */

static void pg_column_type(const emh_meta *m, int field, char *buf, size_t cap)
{
	const emh_field *f = &m->entity->fields[field];
	const char *t = "TEXT";
	bool identity = field == m->pk && m->generated;

	switch (f->type) {
	case EMH_T_BOOL: t = "BOOLEAN"; break;
	case EMH_T_INT32: t = identity ? "INTEGER GENERATED BY DEFAULT AS IDENTITY" : "INTEGER"; break;
	case EMH_T_INT64: t = identity ? "BIGINT GENERATED BY DEFAULT AS IDENTITY" : "BIGINT"; break;
	case EMH_T_DOUBLE: t = "DOUBLE PRECISION"; break;
	case EMH_T_TEXT: t = "TEXT"; break;
	case EMH_T_BLOB: t = "BYTEA"; break;
	case EMH_T_TIMESTAMP: t = "TIMESTAMPTZ"; break;
	case EMH_T_JSON: t = "JSON"; break;
	}
	snprintf(buf, cap, "%s", t);
}

static const emh_sql_dialect pg_dialect = {
	.quote = '"',
	.numbered_params = true,
	.returning = true,
	.limit_all = NULL,
	.like_escape = " ESCAPE '\\'",
	.column_type = pg_column_type,
	.upsert = EMH_SQL_UPSERT_ON_CONFLICT,
};

/* Which existing column types (pg_type.typname) a field can live in: ones
 * the binary decoder below reads exactly into the field's C type. */
static bool pg_type_compatible(const emh_meta *m, int field, const char *type)
{
	static const char *const ok[][6] = {
		[EMH_T_BOOL] = {"bool"},
		[EMH_T_INT32] = {"int4", "int2"},
		[EMH_T_INT64] = {"int8", "int4", "int2"},
		[EMH_T_DOUBLE] = {"float8", "float4"},
		[EMH_T_TEXT] = {"text", "varchar", "bpchar"},
		[EMH_T_BLOB] = {"bytea"},
		[EMH_T_TIMESTAMP] = {"timestamptz", "timestamp"},
		[EMH_T_JSON] = {"json", "jsonb", "text", "varchar"},
	};
	emh_type t = m->entity->fields[field].type;
	if (t < EMH_T_BOOL || t > EMH_T__MAX)
		return false;
	for (size_t i = 0; i < 6 && ok[t][i]; i++)
		if (strcmp(ok[t][i], type) == 0)
			return true;
	return false;
}

/*
 * The columns of the table m names as the compiled statements will see it
 * (to_regclass resolves the quoted name through search_path, exactly like
 * the unqualified name in a statement).  Fills names/types (strings borrowed
 * from *res) and *n = 0 when the table does not exist.
 */
static int pg_table_columns(emh_conn *c, const emh_meta *m, PGresult **res, const char ***names,
			    const char ***types, size_t *n, emh_error *err)
{
	static const char sql[] =
		"SELECT a.attname::text, t.typname::text FROM pg_catalog.pg_attribute a"
		" JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
		" WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped"
		" ORDER BY a.attnum";
	char qname[80];
	const char *pv[1] = {qname};
	int rows;

	snprintf(qname, sizeof qname, "\"%s\"", m->entity->table);
	*res = PQexecParams(c->pg, sql, 1, NULL, pv, NULL, NULL, 0);
	if (!*res || PQresultStatus(*res) != PGRES_TUPLES_OK) {
		char what[128];
		snprintf(what, sizeof what, "schema sync of '%s': reading columns", m->entity->table);
		int rc = pg_fail(c, *res, what, err);
		PQclear(*res);
		*res = NULL;
		return rc;
	}
	rows = PQntuples(*res);
	*n = (size_t)rows;
	*names = NULL;
	*types = NULL;
	if (rows == 0)
		return 0;
	*names = calloc((size_t)rows, sizeof **names);
	*types = calloc((size_t)rows, sizeof **types);
	if (!*names || !*types) {
		free(*names);
		free(*types);
		PQclear(*res);
		*res = NULL;
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	for (int i = 0; i < rows; i++) {
		(*names)[i] = PQgetvalue(*res, i, 0);
		(*types)[i] = PQgetvalue(*res, i, 1);
	}
	return 0;
}

/*
 * Create the table and indexes of m when missing, or check an existing
 * table's columns.  Runs in its own transaction (or the caller's) under an
 * advisory lock on the table name, so that connections syncing the same
 * entity at once do not race on CREATE TABLE IF NOT EXISTS (which can still
 * fail on the catalog's unique index when two run concurrently).
 */
static int pg_sync(emh_conn *c, const emh_meta *m, emh_error *err)
{
	const char *table = m->entity->table;
	bool own_tx = PQtransactionStatus(c->pg) == PQTRANS_IDLE;
	emh_buf sql = EMH_BUF_INIT;
	PGresult *cols = NULL;
	const char **names = NULL, **types = NULL;
	size_t n = 0, nidx;
	char what[160];
	int rc;

	snprintf(what, sizeof what, "schema sync of '%s'", table);
	if (c->begin_pending) {
		rc = pg_send_begin(c, err);
		if (rc)
			return rc;
		own_tx = false;
	}
	if (own_tx) {
		rc = pg_command(c, "BEGIN", what, err);
		if (rc)
			return rc;
	}
	{
		const char *pv[1] = {table};
		PGresult *res = PQexecParams(c->pg, "SELECT pg_advisory_xact_lock(1701669888, hashtext($1))", 1,
					     NULL, pv, NULL, NULL, 0);
		if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
			rc = pg_fail(c, res, what, err);
			PQclear(res);
			goto out_rollback;
		}
		PQclear(res);
	}
	rc = pg_table_columns(c, m, &cols, &names, &types, &n, err);
	if (rc)
		goto out_rollback;
	if (n == 0) {
		rc = emh_sql_create_table(&pg_dialect, m, &sql);
		if (rc) {
			emh_error_set(err, rc, "%s: out of memory", what);
			goto out_rollback;
		}
		rc = pg_command(c, sql.ptr, what, err);
		if (rc)
			goto out_rollback;
	} else {
		rc = emh_sql_check_columns(m, names, types, n, pg_type_compatible, err);
		if (rc)
			goto out_rollback;
	}
	nidx = emh_sql_index_count(m);
	for (size_t i = 0; i < nidx; i++) {
		const char *name = NULL;
		emh_buf_reset(&sql);
		rc = emh_sql_create_index(&pg_dialect, m, i, true, &sql, &name);
		if (rc) {
			emh_error_set(err, rc, "%s: out of memory", what);
			goto out_rollback;
		}
		char iwhat[200];
		snprintf(iwhat, sizeof iwhat, "schema sync of '%s': index '%s'", table, name ? name : "?");
		rc = pg_command(c, sql.ptr, iwhat, err);
		if (rc)
			goto out_rollback;
	}
	if (own_tx) {
		rc = pg_commit(c, err);
		own_tx = false;
		if (rc)
			goto out_rollback;
	}
	free(names);
	free(types);
	PQclear(cols);
	emh_buf_release(&sql);
	return 0;

out_rollback:
	if (own_tx && PQstatus(c->pg) == CONNECTION_OK) {
		PGresult *r = PQexec(c->pg, "ROLLBACK");
		PQclear(r);
	}
	free(names);
	free(types);
	PQclear(cols);
	emh_buf_release(&sql);
	return rc;
}

/* ---- statements ---- */

static Oid pg_type_oid(emh_type t)
{
	switch (t) {
	case EMH_T_BOOL: return PG_BOOLOID;
	case EMH_T_INT32: return PG_INT4OID;
	case EMH_T_INT64: return PG_INT8OID;
	case EMH_T_DOUBLE: return PG_FLOAT8OID;
	case EMH_T_TEXT: return PG_TEXTOID;
	case EMH_T_BLOB: return PG_BYTEAOID;
	case EMH_T_TIMESTAMP: return PG_TIMESTAMPTZOID;
	case EMH_T_JSON: return PG_JSONOID;
	}
	return 0;
}

static const char *pg_stmt_what(const emh_stmt *st, char *buf, size_t cap)
{
	const char *table = st->meta && st->meta->entity ? st->meta->entity->table : NULL;
	const char *verb;
	switch (st->kind) {
	case EMH_STMT_SELECT: verb = "select from"; break;
	case EMH_STMT_COUNT: verb = "count of"; break;
	case EMH_STMT_INSERT: verb = "insert into"; break;
	case EMH_STMT_UPDATE: verb = "update of"; break;
	case EMH_STMT_DELETE: verb = "delete from"; break;
	default: verb = "statement on"; break;
	}
	if (table)
		snprintf(buf, cap, "%s '%s'", verb, table);
	else
		snprintf(buf, cap, "statement");
	return buf;
}

static int pg_grow(void **p, size_t *cap, size_t want, size_t elem)
{
	void *np;
	if (want <= *cap)
		return 0;
	np = realloc(*p, want * elem);
	if (!np)
		return -1;
	*p = np;
	*cap = want;
	return 0;
}

static int64_t pg_value_int(const emh_value *v)
{
	switch (v->type) {
	case EMH_T_INT32: return v->u.i32;
	case EMH_T_BOOL: return v->u.b;
	case EMH_T_DOUBLE: return v->u.d >= -9.2e18 && v->u.d <= 9.2e18 ? (int64_t)v->u.d : 0;
	default: return v->u.i64;
	}
}

/*
 * Encode params[i] in PostgreSQL's binary format for the statement's
 * declared type (the value may be of a kindred type: int32 for int64,
 * int64 for a timestamp).  Numbers go through c->pbuf[i].
 */
static int pg_bind(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_error *err)
{
	for (uint16_t i = 0; i < st->nparams; i++) {
		const emh_value *v = &params[i];
		emh_type t = st->param_types[i];
		char *b = (char *)&c->pbuf[i];
		uint64_t u;
		int64_t x;

		c->pfmts[i] = 1;
		if (v->is_null) {
			c->pvals[i] = NULL;
			c->plens[i] = 0;
			continue;
		}
		switch (t) {
		case EMH_T_BOOL:
			b[0] = v->type == EMH_T_BOOL ? (char)v->u.b : (char)(pg_value_int(v) != 0);
			c->plens[i] = 1;
			break;
		case EMH_T_INT32: {
			uint32_t be;
			x = pg_value_int(v);
			if (x < INT32_MIN || x > INT32_MAX)
				return emh_error_set(err, EMH_EINVAL, "parameter %u out of int32 range", (unsigned)i + 1);
			be = htobe32((uint32_t)(int32_t)x);
			memcpy(b, &be, 4);
			c->plens[i] = 4;
			break;
		}
		case EMH_T_INT64:
			u = htobe64((uint64_t)pg_value_int(v));
			memcpy(b, &u, 8);
			c->plens[i] = 8;
			break;
		case EMH_T_DOUBLE: {
			double d = v->type == EMH_T_DOUBLE ? v->u.d : (double)pg_value_int(v);
			memcpy(&u, &d, 8);
			u = htobe64(u);
			memcpy(b, &u, 8);
			c->plens[i] = 8;
			break;
		}
		case EMH_T_TIMESTAMP:
			x = pg_value_int(v);
			if (x < INT64_MIN + PG_EPOCH_OFFSET_US)
				return emh_error_set(err, EMH_EINVAL, "parameter %u: timestamp out of range",
						     (unsigned)i + 1);
			u = htobe64((uint64_t)(x - PG_EPOCH_OFFSET_US));
			memcpy(b, &u, 8);
			c->plens[i] = 8;
			break;
		case EMH_T_TEXT:
		case EMH_T_JSON:
		case EMH_T_BLOB:
			if (v->u.s.len > INT32_MAX)
				return emh_error_set(err, EMH_EINVAL, "parameter %u is larger than 2 GiB",
						     (unsigned)i + 1);
			c->pvals[i] = v->u.s.ptr ? v->u.s.ptr : "";
			c->plens[i] = (int)v->u.s.len;
			continue;
		default:
			return emh_error_set(err, EMH_EINVAL, "parameter %u has unknown type %d", (unsigned)i + 1,
					     (int)t);
		}
		c->pvals[i] = b;
	}
	return 0;
}

static uint16_t pg_be16(const char *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return be16toh(v);
}

static uint32_t pg_be32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static uint64_t pg_be64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

/* Can a column of type oid be read as want?  (Checked once per result.) */
static bool pg_readable(Oid oid, emh_type want)
{
	switch (want) {
	case EMH_T_BOOL: return oid == PG_BOOLOID;
	case EMH_T_INT32:
	case EMH_T_INT64: return oid == PG_INT2OID || oid == PG_INT4OID || oid == PG_INT8OID || oid == PG_OIDOID;
	case EMH_T_DOUBLE:
		return oid == PG_FLOAT8OID || oid == PG_FLOAT4OID || oid == PG_INT2OID || oid == PG_INT4OID ||
		       oid == PG_INT8OID;
	case EMH_T_TEXT:
	case EMH_T_JSON:
		return oid == PG_TEXTOID || oid == PG_VARCHAROID || oid == PG_BPCHAROID || oid == PG_NAMEOID ||
		       oid == PG_JSONOID || oid == PG_JSONBOID || oid == PG_UNKNOWNOID || oid == PG_CHAROID;
	case EMH_T_BLOB: return oid == PG_BYTEAOID;
	case EMH_T_TIMESTAMP: return oid == PG_TIMESTAMPTZOID || oid == PG_TIMESTAMPOID || oid == PG_DATEOID;
	}
	return false;
}

/* Integer of a binary int2/int4/int8/oid value; false on a bad length. */
static bool pg_read_int(Oid oid, const char *p, int len, int64_t *out)
{
	if (oid == PG_INT2OID && len == 2)
		*out = (int16_t)pg_be16(p);
	else if (oid == PG_INT4OID && len == 4)
		*out = (int32_t)pg_be32(p);
	else if (oid == PG_OIDOID && len == 4)
		*out = pg_be32(p);
	else if (oid == PG_INT8OID && len == 8)
		*out = (int64_t)pg_be64(p);
	else
		return false;
	return true;
}

/* Decode one binary field (already known readable) into v of type want. */
static int pg_decode(Oid oid, const char *p, int len, emh_type want, emh_value *v, const char *col,
		     emh_error *err)
{
	int64_t x;
	uint64_t u;

	v->type = want;
	v->is_null = false;
	switch (want) {
	case EMH_T_BOOL:
		if (len != 1)
			goto bad;
		v->u.b = p[0] != 0;
		return 0;
	case EMH_T_INT32:
		if (!pg_read_int(oid, p, len, &x))
			goto bad;
		if (x < INT32_MIN || x > INT32_MAX)
			return emh_error_set(err, EMH_EINVAL, "column '%s': value out of int32 range", col);
		v->u.i32 = (int32_t)x;
		return 0;
	case EMH_T_INT64:
		if (!pg_read_int(oid, p, len, &x))
			goto bad;
		v->u.i64 = x;
		return 0;
	case EMH_T_DOUBLE:
		if (oid == PG_FLOAT8OID && len == 8) {
			u = pg_be64(p);
			memcpy(&v->u.d, &u, 8);
		} else if (oid == PG_FLOAT4OID && len == 4) {
			uint32_t w = pg_be32(p);
			float f;
			memcpy(&f, &w, 4);
			v->u.d = f;
		} else if (pg_read_int(oid, p, len, &x)) {
			v->u.d = (double)x;
		} else {
			goto bad;
		}
		return 0;
	case EMH_T_TEXT:
	case EMH_T_JSON:
	case EMH_T_BLOB:
		if (oid == PG_JSONBOID) {
			/* binary jsonb: a version byte (1), then the text */
			if (len < 1 || p[0] != 1)
				goto bad;
			p++;
			len--;
		}
		v->u.s.ptr = p;
		v->u.s.len = (size_t)len;
		return 0;
	case EMH_T_TIMESTAMP:
		if (oid == PG_DATEOID && len == 4) {
			x = (int64_t)(int32_t)pg_be32(p);
			if (x == INT32_MAX || x == INT32_MIN) /* +-infinity */
				v->u.i64 = x == INT32_MAX ? INT64_MAX : INT64_MIN;
			else if (x > 100000000 || x < -100000000) /* beyond ~273,000 years */
				return emh_error_set(err, EMH_EINVAL, "column '%s': date out of range", col);
			else
				v->u.i64 = x * INT64_C(86400000000) + PG_EPOCH_OFFSET_US;
			return 0;
		}
		if (len != 8)
			goto bad;
		x = (int64_t)pg_be64(p);
		/* +-infinity stay at the int64 extremes */
		if (x == INT64_MAX || x == INT64_MIN)
			v->u.i64 = x;
		else if (x > INT64_MAX - PG_EPOCH_OFFSET_US)
			return emh_error_set(err, EMH_EINVAL, "column '%s': timestamp out of range", col);
		else
			v->u.i64 = x + PG_EPOCH_OFFSET_US;
		return 0;
	}
bad:
	return emh_error_set(err, EMH_EDRIVER, "column '%s': unexpected binary value (type oid %u, %d bytes)", col,
			     (unsigned)oid, len);
}

/* Deliver the rows of res to sink, typed as st->col_types. */
static int pg_deliver(emh_conn *c, const emh_stmt *st, PGresult *res, emh_rowsink *sink, emh_error *err)
{
	int nrows = PQntuples(res), ncols = PQnfields(res);
	char what[120];

	if (!sink || !sink->row || nrows == 0)
		return 0;
	if (ncols != st->ncols)
		return emh_error_set(err, EMH_EDRIVER, "%s: %d columns returned, expected %u",
				     pg_stmt_what(st, what, sizeof what), ncols, (unsigned)st->ncols);
	if ((size_t)ncols > c->rowcap) {
		size_t cap = c->rowcap;
		if (pg_grow((void **)&c->row, &cap, (size_t)ncols, sizeof *c->row))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		cap = c->rowcap;
		if (pg_grow((void **)&c->rowtypes, &cap, (size_t)ncols, sizeof *c->rowtypes))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		c->rowcap = (size_t)ncols;
	}
	for (int j = 0; j < ncols; j++) {
		c->rowtypes[j] = PQftype(res, j);
		if (PQfformat(res, j) != 1 || !pg_readable(c->rowtypes[j], st->col_types[j]))
			return emh_error_set(err, EMH_ESCHEMA,
					     "%s: column '%s' has type oid %u, which cannot be read as %s",
					     pg_stmt_what(st, what, sizeof what), PQfname(res, j),
					     (unsigned)c->rowtypes[j], emh_type_name(st->col_types[j]));
	}
	for (int i = 0; i < nrows; i++) {
		for (int j = 0; j < ncols; j++) {
			if (PQgetisnull(res, i, j)) {
				c->row[j] = emh_v_null(st->col_types[j]);
				continue;
			}
			int rc = pg_decode(c->rowtypes[j], PQgetvalue(res, i, j), PQgetlength(res, i, j),
					   st->col_types[j], &c->row[j], PQfname(res, j), err);
			if (rc)
				return rc;
		}
		int rc = sink->row(sink, c->row, err);
		if (rc)
			return rc;
	}
	return 0;
}

/* Size the parameter scratch for n parameters. */
static int pg_params_reserve(emh_conn *c, size_t n, emh_error *err)
{
	size_t cap;
	if (n <= c->pcap)
		return 0;
	cap = c->pcap;
	if (pg_grow((void **)&c->pvals, &cap, n, sizeof *c->pvals))
		goto out_nomem;
	cap = c->pcap;
	if (pg_grow((void **)&c->plens, &cap, n, sizeof *c->plens))
		goto out_nomem;
	cap = c->pcap;
	if (pg_grow((void **)&c->pfmts, &cap, n, sizeof *c->pfmts))
		goto out_nomem;
	cap = c->pcap;
	if (pg_grow((void **)&c->pbuf, &cap, n, sizeof *c->pbuf))
		goto out_nomem;
	c->pcap = n;
	return 0;
out_nomem:
	return emh_error_set(err, EMH_ENOMEM, "out of memory");
}

/*
 * Send [BEGIN,] [PREPARE,] EXECUTE and one Sync in a single round trip
 * (libpq pipeline mode) and collect the results in order.  On success *out
 * is the EXECUTE's result; on failure err holds the first failing step's
 * error (later steps only report "pipeline aborted").
 */
#ifdef LIBPQ_HAS_PIPELINING
static int pg_exec_pipeline(emh_conn *c, const emh_stmt *st, const char *name, bool begin, bool prepare,
			    PGresult **out, emh_error *err)
{
	Oid oids_local[32], *oids = oids_local;
	char what[120];
	int nsteps = (begin ? 1 : 0) + (prepare ? 1 : 0) + 1, step = 0, rc = 0;
	int nulls = 0;
	bool synced = false;

	*out = NULL;
	pg_stmt_what(st, what, sizeof what);
	if (prepare && st->nparams > 32 && !(oids = malloc(st->nparams * sizeof *oids)))
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	for (uint16_t i = 0; prepare && i < st->nparams; i++)
		oids[i] = pg_type_oid(st->param_types[i]);
	if (!PQenterPipelineMode(c->pg)) {
		rc = pg_fail(c, NULL, what, err);
		goto out_free;
	}
	if ((begin && !PQsendQueryParams(c->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0)) ||
	    (prepare && !PQsendPrepare(c->pg, name, st->sql, st->nparams, oids)) ||
	    !PQsendQueryPrepared(c->pg, name, st->nparams, c->pvals, c->plens, c->pfmts, 1) ||
	    !PQpipelineSync(c->pg)) {
		rc = pg_fail(c, NULL, what, err);
		goto out_exit;
	}
	/* Each step yields one result then NULL; the Sync yields PIPELINE_SYNC. */
	while (!synced) {
		PGresult *res = PQgetResult(c->pg);
		if (!res) {
			/* one NULL ends each step; more means the connection is gone */
			if (PQstatus(c->pg) == CONNECTION_BAD || ++nulls > nsteps) {
				if (!rc)
					rc = pg_fail(c, NULL, what, err);
				break;
			}
			continue;
		}
		ExecStatusType s = PQresultStatus(res);
		if (s == PGRES_PIPELINE_SYNC) {
			synced = true;
		} else if (step >= nsteps) {
			/* nothing more was sent: ignore */
		} else if (s == PGRES_PIPELINE_ABORTED) {
			step++;
		} else if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
			if (!rc)
				rc = pg_fail(c, res, step < nsteps - 1 && begin && step == 0 ? "begin" : what, err);
			step++;
		} else {
			if (prepare && step == nsteps - 2) /* reserved by pg_stmt_exec: cannot fail */
				(void)emh_prepcache_put(c->stmts, st->id, st, PG_PREPARED, NULL);
			if (step == nsteps - 1 && !rc) {
				*out = res;
				res = NULL;
			}
			step++;
		}
		PQclear(res);
	}
out_exit:
	if (!PQexitPipelineMode(c->pg) && !rc && PQstatus(c->pg) == CONNECTION_BAD)
		rc = pg_fail(c, NULL, what, err);
	if (rc && *out) {
		PQclear(*out);
		*out = NULL;
	}
out_free:
	if (oids != oids_local)
		free(oids);
	return rc;
}
#else
/* libpq older than 14 has no pipeline mode: the same steps, one round trip each. */
static int pg_exec_pipeline(emh_conn *c, const emh_stmt *st, const char *name, bool begin, bool prepare,
			    PGresult **out, emh_error *err)
{
	Oid oids_local[32], *oids = oids_local;
	char what[120];
	PGresult *res;
	int rc = 0;

	*out = NULL;
	if (begin && (rc = pg_command(c, "BEGIN", "begin", err)))
		return rc;
	if (prepare) {
		if (st->nparams > 32 && !(oids = malloc(st->nparams * sizeof *oids)))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		for (uint16_t i = 0; i < st->nparams; i++)
			oids[i] = pg_type_oid(st->param_types[i]);
		res = PQprepare(c->pg, name, st->sql, st->nparams, oids);
		if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
			rc = pg_fail(c, res, pg_stmt_what(st, what, sizeof what), err);
		else /* reserved by pg_stmt_exec: cannot fail */
			(void)emh_prepcache_put(c->stmts, st->id, st, PG_PREPARED, NULL);
		PQclear(res);
		if (oids != oids_local)
			free(oids);
		if (rc)
			return rc;
	}
	*out = PQexecPrepared(c->pg, name, st->nparams, c->pvals, c->plens, c->pfmts, 1);
	return 0;
}
#endif

/*
 * Run a compiled statement: prepared once per connection as "emh_<id>",
 * then executed with every parameter and result column in binary format
 * (no text escaping of bytea, exact doubles and microsecond timestamps).
 * The first execution on a connection, and the first statement after
 * begin(), go out pipelined with their PREPARE / BEGIN in one round trip.
 */
/*
 * The server's copy of a cached statement can go away or go stale behind the
 * driver's back: dropped by a raw DEALLOCATE (26000), already there though
 * the driver thought not (42P05), or planned for a column type that an ALTER
 * TABLE changed since (0A000 "cached plan must not change result type").
 * Fix the bookkeeping; the caller resends once when no transaction was open
 * (inside one, the failed statement aborted it, and the next transaction
 * re-prepares).
 */
static bool pg_stale_statement(emh_conn *c, const emh_stmt *st, const char *name, const emh_error *err)
{
	if (!err)
		return false;
	if (strcmp(err->sqlstate, "26000") == 0) {
		emh_prepcache_drop(c->stmts, st->id);
	} else if (strcmp(err->sqlstate, "42P05") == 0) {
		(void)emh_prepcache_put(c->stmts, st->id, st, PG_PREPARED, NULL); /* reserved: cannot fail */
	} else if (strcmp(err->sqlstate, "0A000") == 0 && strstr(err->message, "cached plan")) {
		if (PQtransactionStatus(c->pg) == PQTRANS_IDLE) {
			char sql[48];
			snprintf(sql, sizeof sql, "DEALLOCATE \"%s\"", name);
			PQclear(PQexec(c->pg, sql));
		}
		emh_prepcache_drop(c->stmts, st->id);
	} else {
		return false;
	}
	return PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

static int pg_stmt_exec_once(emh_conn *c, const emh_stmt *st, const char *name, emh_rowsink *sink,
			     emh_error *err);

static int pg_stmt_exec(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_rowsink *sink,
			emh_error *err)
{
	char name[24];
	emh_error local;
	int rc;

	if (!err)
		err = &local;
	snprintf(name, sizeof name, "emh_%" PRIu32, st->id);
	if ((rc = emh_prepcache_reserve(c->stmts, st->id, err)) || (rc = pg_params_reserve(c, st->nparams, err)) ||
	    (rc = pg_bind(c, st, params, err)))
		return rc;
	rc = pg_stmt_exec_once(c, st, name, sink, err);
	/* rc > 0 is the sink's "enough rows", not an error (err is untouched) */
	if (rc < 0 && pg_stale_statement(c, st, name, err))
		rc = pg_stmt_exec_once(c, st, name, sink, err);
	return rc;
}

static int pg_stmt_exec_once(emh_conn *c, const emh_stmt *st, const char *name, emh_rowsink *sink,
			     emh_error *err)
{
	char what[120];
	PGresult *res;
	ExecStatusType s;
	bool prepare, begin;
	int rc;

	prepare = !emh_prepcache_get(c->stmts, st->id, st);
	begin = c->begin_pending;
	if (prepare || begin) {
		c->begin_pending = false;
		rc = pg_exec_pipeline(c, st, name, begin, prepare, &res, err);
		if (rc)
			return rc;
	} else {
		res = PQexecPrepared(c->pg, name, st->nparams, c->pvals, c->plens, c->pfmts, 1);
	}
	s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (s == PGRES_TUPLES_OK) {
		rc = pg_deliver(c, st, res, sink, err);
	} else if (s != PGRES_COMMAND_OK) {
		rc = pg_fail(c, res, pg_stmt_what(st, what, sizeof what), err);
		PQclear(res);
		return rc;
	}
	if (sink) {
		const char *t = PQcmdTuples(res);
		sink->affected = (t && *t) ? strtoll(t, NULL, 10) : 0;
	}
	PQclear(res);
	return rc;
}

EMH_DRIVER_EXPORT const emh_driver emh_driver_descriptor = {
	EMH_DRIVER_HEADER,
	.name = "postgres",
	.version = "1.0",
	.description = "PostgreSQL 10+ through libpq (binary prepared statements)",
	.caps = EMH_CAP_SQL | EMH_CAP_TRANSACTIONS | EMH_CAP_SAVEPOINTS | EMH_CAP_RETURNING | EMH_CAP_UPSERT |
		EMH_CAP_ATOMIC_FLUSH,
	.url_schemes = pg_url_schemes,
	.params = pg_params,
	.connect = pg_connect,
	.disconnect = pg_disconnect,
	.ping = pg_ping,
	.execute = pg_execute,
	.sync = pg_sync,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.savepoint = pg_savepoint,
	.release = pg_release,
	.rollback_to = pg_rollback_to,
	.dialect = &pg_dialect,
	.stmt_exec = pg_stmt_exec,
};
