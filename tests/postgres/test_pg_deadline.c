/* SPDX-License-Identifier: MIT */
/*
 * tests/postgres/test_pg_deadline.c: the postgres driver's deadlines and
 * back-pressure against the real test server: the session's
 * statement_timeout is a backstop, statement_timeout_ms + connect_timeout_ms
 * (an options value wins); a call past its deadline has the server cancel its
 * statement (pg_stat_activity shows the backend stop running it); a
 * server-side statement timeout (57014, here one set by hand) is
 * EMH_ETIMEOUT, "too many connections" (53300) is retryable EMH_ETIMEOUT
 * that does not mark the context down, and last_error clears once the
 * context works again; COPY in raw SQL is refused and drained without
 * blocking; every connection has TCP keepalives and tcp_user_timeout (a
 * URL's own value wins); a connect out of file descriptors is EMH_ENOFD; a
 * migration past its deadline costs its own connection only.  (A server
 * that stops answering: tests/fault/test_hang.)  Time bounds only tell
 * "returned" from "hung".
 */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

/* The server's settings, through an entity on the pg_settings view. */
typedef struct pg_setting {
	const char *name;
	const char *setting;
} pg_setting;
static const emh_field pg_setting_fields[] = {
	EMH_FIELD(pg_setting, name, EMH_T_TEXT, EMH_F_PK),
	EMH_FIELD(pg_setting, setting, EMH_T_TEXT, 0),
};
static const emh_entity pg_setting_entity = EMH_ENTITY(pg_setting, "pg_settings", pg_setting_fields);

/* The server's backends, through an entity on the pg_stat_activity view. */
typedef struct pg_backend {
	int32_t pid;
	const char *application_name;
	const char *state;
} pg_backend;
static const emh_field pg_backend_fields[] = {
	EMH_FIELD(pg_backend, pid, EMH_T_INT32, EMH_F_PK),
	EMH_FIELD(pg_backend, application_name, EMH_T_TEXT, 0),
	EMH_FIELD(pg_backend, state, EMH_T_TEXT, 0),
};
static const emh_entity pg_backend_entity = EMH_ENTITY(pg_backend, "pg_stat_activity", pg_backend_fields);

static char g_user[128], g_pw[128], g_host[128], g_port[16], g_db[128];

static int parse_url(const char *url)
{
	/* postgres://user:pw@host:port/db as written by scripts/servers/pg.sh */
	const char *p = strstr(url, "://");
	if (!p)
		return -1;
	return sscanf(p + 3, "%127[^:]:%127[^@]@%127[^:]:%15[^/]/%127[^?]", g_user, g_pw, g_host, g_port, g_db) == 5
		       ? 0
		       : -1;
}

static void add_ctx(emh_host *h, const char *name, const char *const *kv)
{
	emh_error err;
	if (emh_host_add_context(h, name, kv, &err))
		bail("add context '%s': %s", name, err.message);
}

/* The session's statement_timeout as the server shows it, through a fork of ctx. */
static void is_server_timeout(emh_host *h, const char *ctx, const char *want, const char *name)
{
	emh_error err;
	emh_em *em = fixture_fork(h, ctx);
	emh_repo *r = fixture_repo(em, &pg_setting_entity);
	pg_setting *s = NULL;
	int rc = emh_repo_get(r, emh_v_text("statement_timeout"), (void **)&s, &err);
	if (rc)
		diag("pg_settings on '%s': %s", ctx, err.message);
	is_str(rc == 0 && s ? s->setting : "(none)", want, "%s", name);
	emh_em_close(em);
}

static void test_session_timeout(emh_host *h, const char *url)
{
	diag("the session's statement_timeout is statement_timeout_ms + connect_timeout_ms (the cancel's bound); "
	     "an options value wins on the server");
	add_ctx(h, "st", (const char *const[]){"url", url, "statement_timeout_ms", "4321", "connect_timeout_ms", "1000",
					       NULL});
	add_ctx(h, "st_dflt", (const char *const[]){"url", url, "statement_timeout_ms", "4321", NULL});
	add_ctx(h, "st_opt", (const char *const[]){"url", url, "options", "-c statement_timeout=765", NULL});
	add_ctx(h, "st_none", (const char *const[]){"url", url, "statement_timeout_ms", "0", NULL});
	fixture_register(h, "st", &pg_setting_entity);
	fixture_register(h, "st_dflt", &pg_setting_entity);
	fixture_register(h, "st_opt", &pg_setting_entity);
	fixture_register(h, "st_none", &pg_setting_entity);
	is_server_timeout(h, "st", "5321",
			  "statement_timeout_ms=4321, connect_timeout_ms=1000: the server's statement_timeout is 5321");
	is_server_timeout(h, "st_dflt", "9321",
			  "statement_timeout_ms=4321, connect_timeout_ms by default (5000): the server's is 9321");
	is_server_timeout(h, "st_opt", "765", "options -c statement_timeout=765: the options value wins");
	is_server_timeout(h, "st_none", "0", "statement_timeout_ms=0: no server-side timeout either");
}

static void test_server_side_timeout(emh_host *h, const char *url)
{
	emh_error err;
	diag("a statement cancelled by the server's statement_timeout (57014) is EMH_ETIMEOUT");
	add_ctx(h, "srv", (const char *const[]){"url", url, "pool.max", "2", NULL});
	emh_em *em = fixture_fork(h, "srv");
	if (emh_em_execute(em, "SET statement_timeout = 150", &err))
		bail("SET statement_timeout: %s", err.message);
	uint64_t discarded = fixture_context_info(h, "srv").discarded;
	double t0 = fixture_now_ms();
	int rc = emh_em_execute(em, "SELECT pg_sleep(20)", &err);
	double took = fixture_now_ms() - t0;
	is_int(rc, EMH_ETIMEOUT, "pg_sleep past a hand-set statement_timeout: EMH_ETIMEOUT");
	is_str(err.sqlstate, "57014", "sqlstate 57014 (query_canceled)");
	ok(err.retryable, "retryable");
	is_str(err.context, "srv", "naming the context");
	ok(took < 150 + 1000, "returned at the server's deadline (%.0f ms for 150 ms)", took);
	is_int((int)(fixture_context_info(h, "srv").discarded - discarded), 1, "the connection was discarded, not pooled");
	is_int(emh_em_execute(em, "SELECT 1", &err), 0, "the same fork goes on, on a fresh connection");
	emh_em_close(em);
	ok(fixture_context_info(h, "srv").up, "the context is not reported down");
}

/* How many backends of application_name app are running a statement (state 'active'); -1: failed. */
static int64_t active_backends(emh_host *h, const char *app)
{
	emh_error err;
	emh_em *em = fixture_fork(h, "watch");
	emh_repo *r = fixture_repo(em, &pg_backend_entity);
	emh_query *q = NULL;
	int64_t n = -1;
	if (emh_repo_query(r, &q, &err) == 0) {
		emh_q_where(q, emh_q_and(q, emh_q_eq(q, "application_name", emh_v_text(app)),
					 emh_q_eq(q, "state", emh_v_text("active"))));
		if (emh_repo_count(r, q, &n, &err) != 0) {
			diag("pg_stat_activity: %s", err.message);
			n = -1;
		}
	}
	emh_em_close(em);
	return n;
}

/* Poll until app has want active backends, for at most ms; the last count seen. */
static int64_t await_active(emh_host *h, const char *app, int64_t want, double ms)
{
	double until = fixture_now_ms() + ms;
	int64_t n;
	while ((n = active_backends(h, app)) != want && fixture_now_ms() < until) {
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
	return n;
}

typedef struct slow_call {
	emh_em *em;
	int rc;
	emh_error err;
	atomic_bool done;
} slow_call;

static void *slow_main(void *arg)
{
	slow_call *s = arg;
	s->rc = emh_em_execute(s->em, "SELECT pg_sleep(60)", &s->err);
	atomic_store(&s->done, true);
	return NULL;
}

/*
 * A call past its deadline on a live server, whose own statement_timeout is
 * off for the session ("-c statement_timeout=0"): nothing but the driver's
 * cancel request can stop the statement before its 60 s.  The backend is
 * seen running it while the call waits, and not running it (cancelled, then
 * gone with the abandoned connection) soon after the call's EMH_ETIMEOUT:
 * within 20 s, polling, so only a statement that runs on fails.
 */
static void test_cancel_at_deadline(emh_host *h, const char *url)
{
	char app[64];
	emh_error err;
	slow_call s = {0};
	pthread_t t;
	diag("a call past its deadline: EMH_ETIMEOUT at once, and the server cancels its statement");
	snprintf(app, sizeof app, "emh_cancel_%ld", (long)getpid());
	add_ctx(h, "watch", (const char *const[]){"url", url, NULL});
	fixture_register(h, "watch", &pg_backend_entity);
	add_ctx(h, "cxl", (const char *const[]){"url", url, "application_name", app, "options", "-c statement_timeout=0",
						"statement_timeout_ms", "2000", "pool.max", "2", NULL});
	s.em = fixture_fork(h, "cxl");
	if (emh_em_execute(s.em, "SELECT 1", &err))
		bail("'cxl': %s", err.message);
	fixture_thread(&t, slow_main, &s);
	int64_t n = await_active(h, app, 1, 1800);
	bool running = n == 1 && !atomic_load(&s.done);
	ok(running, "the backend runs pg_sleep(60) while the call waits (%lld active)", (long long)n);
	pthread_join(t, NULL);
	is_int(s.rc, EMH_ETIMEOUT, "pg_sleep(60) past statement_timeout_ms=2000: EMH_ETIMEOUT");
	like_str(s.err.message, "statement_timeout_ms=2000", "the client's deadline, not the server's: %s", s.err.message);
	emh_em_close(s.em);
	n = await_active(h, app, 0, 20000);
	is_int((int)n, 0, "the server stopped running the statement (cancel request), long before its 60 s");
	emh_em *em = fixture_fork(h, "cxl");
	is_int(emh_em_execute(em, "SELECT 1", &err), 0, "the context serves on");
	emh_em_close(em);
	ok(fixture_context_info(h, "cxl").up, "the context is not reported down");
}

/* ---- TCP keepalives and tcp_user_timeout ---- */

typedef struct tcp_opts {
	int keepalive, idle, intvl, cnt, user_timeout;
} tcp_opts;

/* The options of every TCP socket of this process connected to port, into
 * out (at most cap); how many there are. */
static int sockets_to(int port, tcp_opts *out, int cap)
{
	int n = 0;
	for (int fd = 0; fd < 4096 && n < cap; fd++) {
		struct sockaddr_storage a;
		socklen_t len = sizeof a;
		int type = 0;
		socklen_t tl = sizeof type;
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM ||
		    getpeername(fd, (struct sockaddr *)&a, &len) != 0)
			continue;
		int p = a.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&a)->sin_port)
			: a.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a)->sin6_port)
						  : -1;
		if (p != port)
			continue;
		tcp_opts *o = &out[n++];
		socklen_t ol = sizeof(int);
		getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &o->keepalive, &ol);
		getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &o->idle, &ol);
		getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &o->intvl, &ol);
		getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &o->cnt, &ol);
		getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &o->user_timeout, &ol);
	}
	return n;
}

/*
 * Every connection to the server (this process is the client) has TCP
 * keepalives (30 s idle, 10 s apart, 3 probes) and tcp_user_timeout 60 s,
 * unless its URL sets one: a URL's keepalives_idle=45 is kept.
 */
static void test_tcp_keepalives(emh_host *h, const char *url)
{
	tcp_opts o[64];
	char kurl[800];
	emh_error err;
	int port = atoi(g_port), good = 0;
	diag("TCP keepalives and tcp_user_timeout on every connection; a URL's own value wins");
	emh_em *em = fixture_fork(h, "srv");
	if (emh_em_execute(em, "SELECT 1", &err))
		bail("'srv': %s", err.message);
	int n = sockets_to(port, o, 64);
	for (int i = 0; i < n; i++)
		good += o[i].keepalive == 1 && o[i].idle == 30 && o[i].intvl == 10 && o[i].cnt == 3 &&
			o[i].user_timeout == 60000;
	ok(n > 0 && good == n, "%d of %d connections: SO_KEEPALIVE, TCP_KEEPIDLE 30, TCP_KEEPINTVL 10, TCP_KEEPCNT 3, "
			       "TCP_USER_TIMEOUT 60000", good, n);
	emh_em_close(em);

	snprintf(kurl, sizeof kurl, "%s%skeepalives_idle=45", url, strchr(url, '?') ? "&" : "?");
	add_ctx(h, "kal", (const char *const[]){"url", kurl, NULL});
	em = fixture_fork(h, "kal");
	if (emh_em_execute(em, "SELECT 1", &err))
		bail("'kal': %s", err.message);
	n = sockets_to(port, o, 64);
	good = 0;
	for (int i = 0; i < n; i++)
		good += o[i].keepalive == 1 && o[i].idle == 45 && o[i].user_timeout == 60000;
	is_int(good, 1, "the URL's keepalives_idle=45 is kept (the other defaults stay)");
	emh_em_close(em);
	if (emh_host_remove_context(h, "kal", &err))
		bail("remove 'kal': %s", err.message);
}

/* ---- out of file descriptors ---- */

/*
 * A connect with no file descriptor left (the soft RLIMIT_NOFILE lowered to
 * just above the highest open one, the rest taken): EMH_ENOFD, retryable,
 * "out of file descriptors", not "database down"; the context stays up and
 * connects once descriptors are back.
 */
static void test_out_of_fds(emh_host *h, const char *url)
{
	emh_error err;
	diag("a connect with no file descriptor left: EMH_ENOFD, not 'database down'");
	add_ctx(h, "nofd", (const char *const[]){"url", url, NULL});
	int rc = fixture_ping_without_fds(h, "nofd", &err);
	is_int(rc, EMH_ENOFD, "EMH_ENOFD");
	like_str(err.message, "out of file descriptors", "the message says so: %s", err.message);
	like_str(err.message, "context 'nofd'", "naming the context");
	ok(err.retryable, "retryable");
	ok(fixture_context_info(h, "nofd").up, "the context is not marked down");
	is_int(emh_host_ping(h, "nofd", &err), 0, "descriptors back: it connects");
	if (emh_host_remove_context(h, "nofd", &err))
		bail("remove 'nofd': %s", err.message);
}

/* COPY in raw SQL is refused and drained under the deadline: the connection stays usable. */
static void test_copy_drained(emh_host *h)
{
	emh_error err;
	diag("COPY through execute: refused, drained without blocking, the connection usable");
	emh_em *em = fixture_fork(h, "srv");
	is_int(emh_em_execute(em, "COPY (SELECT g FROM generate_series(1, 20000) g) TO STDOUT", &err),
	       EMH_EUNSUPPORTED, "COPY TO STDOUT: EMH_EUNSUPPORTED");
	is_int(emh_em_execute(em, "SELECT 1", &err), 0, "the same connection answers next");
	is_int(emh_em_execute(em, "CREATE TEMP TABLE emh_copy_in (x int); COPY emh_copy_in FROM STDIN", &err),
	       EMH_EUNSUPPORTED, "COPY FROM STDIN: EMH_EUNSUPPORTED");
	is_int(emh_em_execute(em, "SELECT 1", &err), 0, "the same connection answers next");
	emh_em_close(em);
}

/*
 * The test server's unix socket directory (scripts/servers/pg.sh writes it to
 * STATE_DIR/pg/root), where the postgres superuser is trusted: only there can
 * a role with a connection limit be made.  "" when unknown.
 */
static void pg_socket_dir(char *out, size_t cap)
{
	const char *state = getenv("EMH_TEST_STATE_DIR");
	char path[1024], kind[32] = "";
	FILE *f;
	out[0] = '\0';
	if (!state || !*state)
		return;
	snprintf(path, sizeof path, "%s/pg/kind", state);
	if ((f = fopen(path, "r"))) {
		if (!fgets(kind, sizeof kind, f))
			kind[0] = '\0';
		fclose(f);
	}
	if (strncmp(kind, "postgres", 8) != 0)
		return;
	snprintf(path, sizeof path, "%s/pg/root", state);
	if ((f = fopen(path, "r"))) {
		if (fgets(out, (int)cap, f))
			out[strcspn(out, "\n")] = '\0';
		else
			out[0] = '\0';
		fclose(f);
	}
}

static void test_too_many_connections(emh_host *h)
{
	char dir[1024], role[64], sql[256], url[700];
	emh_error err;
	pg_socket_dir(dir, sizeof dir);
	if (!dir[0]) {
		skip(1, "53300: the test server was not started by scripts/servers/pg.sh (no superuser to make a "
			"role with a connection limit)");
		return;
	}
	diag("too many connections (53300): retryable EMH_ETIMEOUT, the context stays up, last_error clears");
	snprintf(role, sizeof role, "emh_lim_%ld", (long)getpid());
	add_ctx(h, "su", (const char *const[]){"driver", "postgres", "host", dir, "port", g_port, "user", "postgres",
					       "database", g_db, NULL});
	emh_em *su = fixture_fork(h, "su");
	snprintf(sql, sizeof sql, "DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN PASSWORD 'lim-pw' CONNECTION LIMIT 1",
		 role, role);
	if (emh_em_execute(su, sql, &err))
		bail("create role %s: %s", role, err.message);
	emh_em_close(su);

	snprintf(url, sizeof url, "postgres://%s:lim-pw@%s:%s/%s", role, g_host, g_port, g_db);
	add_ctx(h, "lim", (const char *const[]){"url", url, "pool.max", "2", NULL});
	emh_em *a = fixture_fork(h, "lim");
	if (emh_em_execute(a, "SELECT 1", &err))
		bail("first connection of '%s': %s", role, err.message);
	emh_em *b = fixture_fork(h, "lim");
	int rc = emh_em_execute(b, "SELECT 1", &err);
	is_int(rc, EMH_ETIMEOUT, "a second connection over the role's limit: EMH_ETIMEOUT");
	is_str(err.sqlstate, "53300", "sqlstate 53300 (too_many_connections)");
	ok(err.retryable, "retryable");
	like_str(err.message, "context 'lim'", "naming the context: %s", err.message);
	emh_context_info ci = fixture_context_info(h, "lim");
	ok(ci.up, "the context is not marked down");
	like_str(ci.last_error, "too many connections", "last_error says why: %s", ci.last_error);
	emh_em_close(a);
	is_int(emh_em_execute(b, "SELECT 1", &err), 0, "once a slot is free, the same fork works");
	emh_em_close(b);
	is_int(emh_host_ping(h, "lim", &err), 0, "ping");
	ci = fixture_context_info(h, "lim");
	ok(ci.up && ci.last_error[0] == '\0', "last_error cleared after the recovery ('%s')", ci.last_error);

	if (emh_host_remove_context(h, "lim", &err))
		bail("remove 'lim': %s", err.message);
	su = fixture_fork(h, "su");
	snprintf(sql, sizeof sql, "DROP ROLE %s", role);
	is_int(emh_em_execute(su, sql, &err), 0, "drop role %s", role);
	emh_em_close(su);
}

/*
 * A migration (one transaction: PostgreSQL's DDL is transactional) whose
 * statement passes the client-side deadline: EMH_ETIMEOUT, and only its own
 * connection is closed; the context's idle ones stay pooled and it is not
 * reported down.  A database of its own, so that the migration lock and
 * emh_migrations are not the ones tests/migrate uses at the same time;
 * "-c statement_timeout=0" leaves the deadline to the client alone.
 */
static void test_migration_deadline(emh_host *h, const fixture *fx)
{
	char dir[1024], db[64], sql[256], url[700], mig[1100], file[1200];
	emh_error err;
	pg_socket_dir(dir, sizeof dir);
	if (!dir[0]) {
		skip(1, "migration past its deadline: the test server was not started by scripts/servers/pg.sh (no "
			"superuser to create a database)");
		return;
	}
	diag("a migration past its deadline: EMH_ETIMEOUT, its connection alone discarded");
	snprintf(db, sizeof db, "emh_dlmig_%ld", (long)getpid());
	add_ctx(h, "su_mig", (const char *const[]){"driver", "postgres", "host", dir, "port", g_port, "user",
						   "postgres", "database", g_db, NULL});
	emh_em *su = fixture_fork(h, "su_mig");
	snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
	if (emh_em_execute(su, sql, &err))
		bail("%s: %s", sql, err.message);
	snprintf(sql, sizeof sql, "CREATE DATABASE %s OWNER \"%s\"", db, g_user);
	if (emh_em_execute(su, sql, &err))
		bail("%s: %s", sql, err.message);
	emh_em_close(su);

	fixture_path(fx, "pg_migrations", mig, sizeof mig);
	if (mkdir(mig, 0700) != 0)
		bail("mkdir %s", mig);
	snprintf(file, sizeof file, "%s/0001_slow.sql", mig);
	FILE *f = fopen(file, "w");
	if (!f || fputs("CREATE TABLE slow_t (x int);\nSELECT pg_sleep(20);\n", f) < 0 || fclose(f) != 0)
		bail("write %s", file);
	snprintf(url, sizeof url, "postgres://%s:%s@%s:%s/%s", g_user, g_pw, g_host, g_port, db);
	add_ctx(h, "migdl",
		(const char *const[]){"url", url, "options", "-c statement_timeout=0", "statement_timeout_ms", "400",
				      "pool.max", "3", "migrations", mig, NULL});

	/* two idle connections: a transaction holds one while another fork opens a second */
	emh_em *a = fixture_fork(h, "migdl"), *b = fixture_fork(h, "migdl");
	if (emh_em_begin(a, &err) || emh_em_execute(a, "SELECT 1", &err) || emh_em_execute(b, "SELECT 1", &err) ||
	    emh_em_commit(a, &err))
		bail("two connections on 'migdl': %s", err.message);
	emh_em_close(a);
	emh_em_close(b);
	emh_context_info before = fixture_context_info(h, "migdl");
	is_int((int)before.idle, 2, "two idle connections before the migration");

	emh_migrate_opts o = {.lock_wait_ms = 5000};
	double t0 = fixture_now_ms();
	int rc = emh_migrate_up(h, "migdl", &o, NULL, &err);
	double took = fixture_now_ms() - t0;
	is_int(rc, EMH_ETIMEOUT, "a migration past statement_timeout_ms: EMH_ETIMEOUT");
	if (rc)
		diag("%s", err.message);
	ok(took < 400 + 1000 * 3, "returned at the deadline, not after the statement (%.0f ms)", took);
	emh_context_info after = fixture_context_info(h, "migdl");
	is_int((int)(after.discarded - before.discarded), 1, "its connection alone was discarded");
	is_int((int)after.idle, 1, "the other idle connection stayed pooled");
	ok(after.up, "the context is not reported down");
	emh_em *c = fixture_fork(h, "migdl");
	is_int(emh_em_execute(c, "SELECT 1", &err), 0, "the context serves on");
	emh_em_close(c);

	if (emh_host_remove_context(h, "migdl", &err))
		bail("remove 'migdl': %s", err.message);
	su = fixture_fork(h, "su_mig");
	snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", db);
	is_int(emh_em_execute(su, sql, &err), 0, "drop database %s", db);
	emh_em_close(su);
}

int main(void)
{
	const char *url = getenv("EMH_TEST_PG_URL");
	fixture fx;
	emh_host *h;
	emh_error err;

	plan_lazy();
	if (!url || !*url) {
		need_server(1, "postgres: EMH_TEST_PG_URL not set (run scripts/servers/pg.sh start)");
		return done_testing();
	}
	if (parse_url(url))
		bail("cannot parse EMH_TEST_PG_URL '%s'", url);
	fixture_init(&fx, "pgdeadline");
	if (fixture_host(&fx, NULL, &h, &err))
		bail("host: %s", err.message);
	test_session_timeout(h, url);
	test_server_side_timeout(h, url);
	test_cancel_at_deadline(h, url);
	test_copy_drained(h);
	test_tcp_keepalives(h, url);
	test_out_of_fds(h, url);
	test_too_many_connections(h);
	test_migration_deadline(h, &fx);
	emh_host_free(h);
	fixture_release(&fx);
	return done_testing();
}
