/* SPDX-License-Identifier: MIT */
/*
 * plugins/postgres/postgres.c: the PostgreSQL driver (libpq, binary prepared
 * statements): its descriptor, its keys, and opening and closing
 * connections.  The other files: errors.c (SQLSTATEs and messages),
 * session.c (ping, raw SQL, transactions), statements.c (compiled
 * statements and the binary format of their values), schema.c (dialect and
 * schema sync).
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include <emhost/driver.h>
#include <emhost/prepcache.h>
#include <emhost/sql.h>

#include "postgres_int.h"

/* The common keys' defaults (core/cfg_check.c), should a host not fill them. */
#define PG_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define PG_DEFAULT_STATEMENT_TIMEOUT_MS 30000

/* ---- parameters and connection ---- */

static const char *const pg_url_schemes[] = {"postgres", "postgresql", NULL};

/* No default where unset means "libpq's" (PGHOST, PGPORT, PGSSLMODE, PGAPPNAME...). */
static const emh_param_spec pg_params[] = {
	{.key = "host", .kind = EMH_PARAM_STRING,
	 .help = "server host name, address or unix socket directory (unset: libpq's)"},
	{.key = "port", .kind = EMH_PARAM_INT, .min = 1, .max = 65535, .help = "server port (unset: libpq's, 5432)"},
	{.key = "database", .kind = EMH_PARAM_STRING, .help = "database name (unset: the user name)"},
	{.key = "user", .kind = EMH_PARAM_STRING, .help = "role to connect as"},
	{.key = "sslmode", .kind = EMH_PARAM_STRING,
	 .help = "disable, allow, prefer, require, verify-ca or verify-full (unset: libpq's, prefer)"},
	{.key = "sslrootcert", .kind = EMH_PARAM_STRING, .help = "file of CA certificates for verify-ca / verify-full"},
	{.key = "application_name", .kind = EMH_PARAM_STRING,
	 .help = "application_name reported to the server (unset: PGAPPNAME, else emhost)"},
	{.key = "options", .kind = EMH_PARAM_STRING,
	 .help = "server options sent at connection start, e.g. \"-c search_path=app\""},
	{.key = NULL},
};

/* Keys every context has (core/cfg_check.c) that look like libpq options, for
 * the hint when one is written in a URL's query. */
static const char *const pg_common_keys[] = {"connect_timeout_ms", "statement_timeout_ms", NULL};

static const char *const pg_sslmodes[] = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full", NULL};

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
	if (strstr(msg, "too many clients") || strstr(msg, "remaining connection slots") ||
	    strstr(msg, "too many connections for"))
		return "53300";
	if (strstr(msg, "starting up") || strstr(msg, "shutting down") || strstr(msg, "in recovery mode"))
		return "57P03";
	return "08001";
}

/* EMFILE or ENFILE when a connect failed for want of a file descriptor
 * (libpq words it "could not create socket: " + strerror), else 0.  ENFILE
 * first: EMFILE's text is the start of its. */
static int pg_fd_errno(const char *msg)
{
	if (strstr(msg, strerror(ENFILE)))
		return ENFILE;
	return strstr(msg, strerror(EMFILE)) ? EMFILE : 0;
}

/*
 * Refused credentials (28xxx) or an unknown database (3D000) are the
 * configuration's fault, not an outage (host.h's contract).  A server with
 * no connection slot free (53300) and one that did not answer within
 * connect_timeout_ms (timed_out) are EMH_ETIMEOUT, retryable: back-pressure
 * or a stopped server, which does not mark the context down.  A process out
 * of file descriptors is EMH_ENOFD, retryable (driver.h): the database is
 * not down.
 */
static int pg_connect_fail(const emh_params *p, PGconn *pg, const char *why, bool timed_out, emh_error *err)
{
	const char *db = emh_params_get(p, "database");
	const char *user = emh_params_get(p, "user");
	const char *state;
	char msg[400];
	int code;

	/* the password key, and the one a URL holds: a message quoting a piece
	 * of the URL (a host or user name) must not show it either */
	const char *url = emh_params_get(p, "url");
	PQconninfoOption *uo = url && *url ? PQconninfoParse(url, NULL) : NULL;
	const char *pws[] = {emh_params_get(p, "password"), NULL, NULL};
	for (PQconninfoOption *o = uo; o && o->keyword; o++)
		if (strcmp(o->keyword, "password") == 0)
			pws[1] = o->val;
	pg_clean_message(msg, sizeof msg, why ? why : (pg ? PQerrorMessage(pg) : "out of memory"), pws, 2);
	PQconninfoFree(uo);
	int fd_errno = timed_out ? 0 : pg_fd_errno(msg);
	if (fd_errno) {
		emh_error_set(err, EMH_ENOFD, "cannot connect to database '%s' as '%s': %s: out of file descriptors",
			      db ? db : "(default)", user ? user : "(default)", msg);
		if (err) {
			err->native = fd_errno;
			err->retryable = true;
		}
		PQfinish(pg);
		return EMH_ENOFD;
	}
	state = timed_out ? "08001" : pg_connect_sqlstate(msg);
	if (timed_out || strcmp(state, "53300") == 0)
		code = EMH_ETIMEOUT;
	else if (strncmp(state, "28", 2) == 0 || strcmp(state, "3D000") == 0)
		code = EMH_ECONFIG;
	else
		code = EMH_EUNAVAILABLE;
	emh_error_set(err, code, "cannot connect to database '%s' as '%s': %s",
		      db ? db : "(default)", user ? user : "(default)", *msg ? msg : "unknown error");
	pg_error_state(err, state, code == EMH_ETIMEOUT);
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
			return pg_connect_fail(p, pg, NULL, false, err);
		struct pollfd pfd = {.fd = PQsocket(pg), .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
		int wait = -1;
		if (pfd.fd < 0)
			return pg_connect_fail(p, pg, NULL, false, err);
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
			return pg_connect_fail(p, pg, strerror(errno), false, err);
		if (r == 0)
			continue; /* the deadline check above decides */
		st = PQconnectPoll(pg);
	}
timed_out:;
	char why[128];
	snprintf(why, sizeof why, "no connection within connect_timeout_ms=%lld", timeout_ms);
	return pg_connect_fail(p, pg, why, true, err);
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
	free(c);
}

/*
 * Why libpq refused a URL, without ever quoting its password: libpq quotes
 * the part it cannot read, so a message quoting anything inside the
 * password is withheld.  An emhost key written as a query option
 * (?connect_timeout_ms=) gets a hint: a whole URL holds libpq's options only.
 */
static int pg_url_refusal(const char *url, const char *why, emh_error *err)
{
	const char *q1 = strchr(why, '"'), *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
	size_t qn = q2 ? (size_t)(q2 - q1 - 1) : 0;
	const char *auth = strstr(url, "://"), *at = NULL;
	auth = auth ? auth + 3 : url;
	for (const char *x = auth; *x && *x != '?' && *x != '#'; x++)
		if (*x == '@')
			at = x; /* the userinfo ends at the last '@' before the query */
	const char *pw = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	size_t pwn = pw ? (size_t)(at - pw - 1) : 0;
	/* A quoted piece can hold password text only by lying inside the
	 * password or by crossing its ':' or '@' boundary. */
	bool quotes_pw = pw && qn &&
			 (memchr(q1 + 1, ':', qn) || memchr(q1 + 1, '@', qn) || memmem(pw + 1, pwn, q1 + 1, qn));
	if (quotes_pw)
		return emh_error_set(err, EMH_ECONFIG, "url: libpq cannot read it (its message is withheld: "
						      "it quotes part of the password)");
	if (qn && strstr(why, "invalid URI query parameter")) {
		const char *key = NULL;
		for (const emh_param_spec *sp = pg_params; !key && sp->key; sp++)
			if (strlen(sp->key) == qn && memcmp(sp->key, q1 + 1, qn) == 0)
				key = sp->key;
		for (const char *const *k = pg_common_keys; !key && *k; k++)
			if (strlen(*k) == qn && memcmp(*k, q1 + 1, qn) == 0)
				key = *k;
		if (key)
			return emh_error_set(err, EMH_ECONFIG,
					     "url: '%s' is an emhost key, not a libpq option: a postgres "
					     "url holds libpq's options only, so set '%s' beside it",
					     key, key);
	}
	size_t n = strlen(why);
	while (n && (why[n - 1] == '\n' || why[n - 1] == ' '))
		n--;
	return emh_error_set(err, EMH_ECONFIG, "url: %.*s", (int)n, why);
}

/*
 * A context's URL is libpq's to read (url_form EMH_URL_WHOLE: several hosts,
 * target_session_attrs, every option libpq knows).  Check it now, at
 * start-up, so a typo stops the host instead of failing every connect:
 * libpq parses it (unknown options and malformed URLs are refused there),
 * and the values we can judge without a server are judged here.
 */
static int pg_url_check(const char *url, emh_error *err)
{
	/* libpq ends the userinfo at the first '@' (the core at the last): the
	 * rest of a password holding an unescaped '@' would become part of the
	 * host name, which connection errors quote.  Refused, never echoed. */
	const char *auth = strstr(url, "://");
	size_t nat = 0;
	auth = auth ? auth + 3 : url;
	for (const char *x = auth; *x && *x != '/' && *x != '?' && *x != '#'; x++)
		nat += *x == '@';
	if (nat > 1)
		return emh_error_set(err, EMH_ECONFIG, "url: more than one '@' before the host: write '@' in the "
						      "user name or password as %%40");

	char *why = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, &why);
	if (!opts) {
		int rc = !why ? emh_error_set(err, EMH_ENOMEM, "out of memory") : pg_url_refusal(url, why, err);
		PQfreemem(why);
		return rc;
	}
	int rc = 0;
	for (PQconninfoOption *o = opts; o->keyword && rc == 0; o++) {
		if (!o->val)
			continue;
		if (strcmp(o->keyword, "port") == 0) {
			/* "5432", or one per host: "5432,5433" (an empty one is the default) */
			for (const char *q = o->val; rc == 0; q++) {
				char *end = (char *)q;
				long v = *q && *q != ',' ? strtol(q, &end, 10) : 5432;
				if (v < 1 || v > 65535 || (*end && *end != ','))
					rc = emh_error_set(err, EMH_ECONFIG, "url: 'port' must be in [1, 65535], got '%s'",
							   o->val);
				q = end;
				if (!*q)
					break;
			}
		} else if (strcmp(o->keyword, "sslmode") == 0) {
			size_t i;
			for (i = 0; pg_sslmodes[i] && strcmp(pg_sslmodes[i], o->val) != 0; i++)
				;
			if (!pg_sslmodes[i])
				rc = emh_error_set(err, EMH_ECONFIG, "url: sslmode '%s' is not one of disable, allow, "
								      "prefer, require, verify-ca, verify-full",
						   o->val);
		}
	}
	PQconninfoFree(opts);
	return rc;
}

/* How long a cancel request may run, and how far past statement_timeout_ms
 * the server's own statement_timeout lies: connect_timeout_ms (its default
 * when 0, "none": a cancel is always bounded). */
static long long pg_cancel_bound_ms(long long connect_timeout_ms)
{
	return connect_timeout_ms > 0 ? connect_timeout_ms : PG_DEFAULT_CONNECT_TIMEOUT_MS;
}

/* Check the URL before the host starts; the state holds the context's cancel
 * requests (io.c).  A malformed connect_timeout_ms is pg_connect's to report. */
static int pg_context_open(const emh_params *p, emh_dctx **out, emh_error *err)
{
	const char *url = emh_params_get(p, "url");
	long long cto = PG_DEFAULT_CONNECT_TIMEOUT_MS;
	int rc;
	*out = NULL;
	if (url && *url && (rc = pg_url_check(url, err)) != 0)
		return rc;
	if (emh_params_int(p, "connect_timeout_ms", PG_DEFAULT_CONNECT_TIMEOUT_MS, &cto, NULL) != 0 || cto < 0 ||
	    cto > INT32_MAX)
		cto = PG_DEFAULT_CONNECT_TIMEOUT_MS;
	*out = pg_dctx_new((int)pg_cancel_bound_ms(cto));
	return *out ? 0 : emh_error_set(err, EMH_ENOMEM, "out of memory");
}

static void pg_context_close(emh_dctx *dc)
{
	pg_dctx_free(dc);
}

/*
 * TCP keepalives and tcp_user_timeout on every connection: a peer that
 * vanished (host down, network cut) is detected on an idle pooled
 * connection within about a minute instead of the kernel's quarter of an
 * hour, and data the peer never acknowledges errors the socket after the
 * same minute.  Calls have their own, usually shorter, deadline.  A URL that
 * sets one of these keywords keeps its value.  Unix sockets ignore them.
 */
static const struct {
	const char *key, *val;
} pg_tcp_defaults[] = {
	{"keepalives", "1"},           {"keepalives_idle", "30"},        {"keepalives_interval", "10"},
	{"keepalives_count", "3"},     {"tcp_user_timeout", "60000"},
};
#define PG_NTCP (sizeof pg_tcp_defaults / sizeof pg_tcp_defaults[0])

/* What a URL itself says: its options= (libpq "options", kept beside ours)
 * and which of pg_tcp_defaults it sets (url_has[i]). */
static char *pg_url_facts(const char *url, bool *url_has)
{
	PQconninfoOption *opts = PQconninfoParse(url, NULL);
	char *v = NULL;
	for (PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (!o->val)
			continue;
		if (strcmp(o->keyword, "options") == 0)
			v = strdup(o->val);
		for (size_t i = 0; i < PG_NTCP; i++)
			if (strcmp(o->keyword, pg_tcp_defaults[i].key) == 0)
				url_has[i] = true;
	}
	PQconninfoFree(opts);
	return v;
}

/*
 * Open a connection.  Every setting goes to libpq as a keyword array
 * (PQconnectStartParams), never pasted into a conninfo string, so a value
 * cannot smuggle in another keyword.  A context's whole URL goes first as
 * the one expanded "dbname" (expand_dbname = 1 expands only the first
 * occurrence); single settings come after it and so override it.  The
 * session is pinned to UTF8, TimeZone UTC and standard_conforming_strings
 * (the dialect's LIKE ... ESCAPE '\' depends on it).  Its statement_timeout
 * is a backstop: statement_timeout_ms plus the cancel request's own bound
 * (connect_timeout_ms), so the client's deadline always decides, its cancel
 * request stops the statement, and the server's timer ends it only when no
 * cancel could be sent (io.c, pg_cancel_send).  An options value that sets
 * statement_timeout comes after ours and wins on the server.  The connection
 * is put in non-blocking mode: no send may wait for a server that stopped
 * reading.
 */
static int pg_connect(const emh_params *p, emh_dctx *dc, emh_conn **out, emh_error *err)
{
	const char *kw[24], *val[24];
	int n = 0;
	const char *url = emh_params_get(p, "url");
	long long port = 0, timeout_ms = 0, stmt_ms = 0;
	char portbuf[24], optbuf[1100], stmtopt[40] = "";
	bool url_has[PG_NTCP] = {false};
	const char *s;
	emh_conn *c;
	int rc;

	pg_cancel_reap(dc); /* collect cancel requests that ended: a place no hot path passes */
	rc = emh_params_int(p, "port", 0, &port, err);
	if (rc)
		return rc;
	if (port < 0 || port > 65535)
		return emh_error_set(err, EMH_ECONFIG, "port %lld out of range (1-65535)", port);
	rc = emh_params_int(p, "connect_timeout_ms", PG_DEFAULT_CONNECT_TIMEOUT_MS, &timeout_ms, err);
	if (rc)
		return rc;
	if (timeout_ms < 0 || timeout_ms > INT32_MAX)
		return emh_error_set(err, EMH_ECONFIG, "connect_timeout_ms must be in [0, %d] (got %lld)", INT32_MAX,
				     timeout_ms);
	rc = emh_params_int(p, PG_STMT_KEY, PG_DEFAULT_STATEMENT_TIMEOUT_MS, &stmt_ms, err);
	if (rc)
		return rc;
	if (stmt_ms < 0 || stmt_ms > INT32_MAX)
		return emh_error_set(err, EMH_ECONFIG, "statement_timeout_ms must be in [0, %d] (got %lld)", INT32_MAX,
				     stmt_ms);
	if (stmt_ms > 0) {
		long long backstop = stmt_ms + pg_cancel_bound_ms(timeout_ms);
		snprintf(stmtopt, sizeof stmtopt, " -c statement_timeout=%lld",
			 backstop > INT32_MAX ? (long long)INT32_MAX : backstop);
	}
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
	char *url_opts = url && *url ? pg_url_facts(url, url_has) : NULL;
	if (url_opts && !s)
		s = url_opts;
	int on = snprintf(optbuf, sizeof optbuf, "-c TimeZone=UTC -c standard_conforming_strings=on%s%s%s", stmtopt,
			  s ? " " : "", s ? s : "");
	free(url_opts);
	if ((size_t)on >= sizeof optbuf)
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
	if (url && *url)
		PG_KW("dbname", url); /* first: the one dbname libpq expands */
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
	for (size_t i = 0; i < PG_NTCP; i++)
		if (!url_has[i])
			PG_KW(pg_tcp_defaults[i].key, pg_tcp_defaults[i].val);
#undef PG_KW
	kw[n] = NULL;
	val[n] = NULL;

	c = calloc(1, sizeof *c);
	if (!c)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	c->dc = dc;
	if ((rc = emh_prepcache_new(pg_prep_free, NULL, &c->stmts, err)) != 0) {
		free(c);
		return rc;
	}
	c->pg = PQconnectStartParams(kw, val, url && *url ? 1 : 0);
	if (!c->pg) {
		pg_conn_free(c);
		return emh_error_set(err, EMH_ENOMEM, "out of memory starting a connection");
	}
	PQsetNoticeProcessor(c->pg, pg_notice_ignore, NULL);
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		PGconn *pg = c->pg;
		c->pg = NULL;
		pg_conn_free(c);
		return pg_connect_fail(p, pg, NULL, false, err);
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
	c->stmt_ms = (int)stmt_ms;
	c->ping_ms = (int)(timeout_ms && (!stmt_ms || timeout_ms < stmt_ms) ? timeout_ms : stmt_ms);
	c->ping_key = c->ping_ms == timeout_ms ? "connect_timeout_ms" : PG_STMT_KEY;
	if (PQsetnonblocking(c->pg, 1) != 0) {
		rc = pg_fail(c, NULL, "session setup", err);
		pg_conn_free(c);
		return rc;
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
		rc = pg_call(c, c->ping_ms, c->ping_key, err);
		if (!rc)
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

EMH_DRIVER_EXPORT const emh_driver emh_driver_descriptor = {
	EMH_DRIVER_HEADER,
	.name = "postgres",
	.version = "1.0",
	.description = "PostgreSQL 10+ through libpq (binary prepared statements)",
	.caps = EMH_CAP_SQL | EMH_CAP_TRANSACTIONS | EMH_CAP_SAVEPOINTS | EMH_CAP_RETURNING | EMH_CAP_UPSERT |
		EMH_CAP_ATOMIC_FLUSH | EMH_CAP_CONDITIONAL_WRITES | EMH_CAP_LOCKS | EMH_CAP_ISOLATION |
		EMH_CAP_AGGREGATE | EMH_CAP_REPLICAS,
	.url_schemes = pg_url_schemes,
	.url_form = EMH_URL_WHOLE, /* libpq reads it: several hosts, target_session_attrs, ... */
	.params = pg_params,
	.context_open = pg_context_open,
	.context_close = pg_context_close,
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
	.lock_clause = pg_lock_clause,
	.begin_isolation = pg_begin_isolation,
	.describe = pg_describe,
	.migrate_lock = pg_migrate_lock,
	.migrate_unlock = pg_migrate_unlock,
	.null_order = EMH_NULLS_HIGH, /* ORDER BY puts NULLs last ascending */
	.position = pg_position,
	.replayed = pg_replayed,
	.lag_ms = pg_lag_ms,
};
