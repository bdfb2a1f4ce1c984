/* SPDX-License-Identifier: MIT */
/*
 * tests/fault/test_hang.c: servers that stop answering, for the PostgreSQL,
 * MariaDB/MySQL and MongoDB drivers: every call and every connect returns
 * EMH_ETIMEOUT at its deadline (statement_timeout_ms, connect_timeout_ms)
 * instead of hanging, while forks of other contexts go on, and the context
 * serves again once the server answers.  Run by tests/fault/hang.sh, after
 * every other test (tests/local.mk FAULT_TESTS), because it stops the
 * PostgreSQL test server.
 *
 * The cases, for each driver whose test server is set:
 *
 *   silent server   a socket that accepts and never reads or writes (a
 *                   thread of this program): connect and ping time out
 *   muted server    a relay in front of the real server stops relaying
 *                   mid-session: a call on a live connection times out
 *                   (meanwhile a SQLite context serves), so do a new
 *                   connection and a ping; relaying again, the context works
 *   muted catalog   the same for the schema diff's and migrate's calls
 *                   (describing a table, taking the migration lock)
 *   SIGSTOP         (PostgreSQL, when scripts/servers/pg.sh started it) the
 *                   whole cluster stopped mid-call: the call, a ping and a
 *                   connect time out; after SIGCONT the context serves.  The
 *                   cluster is continued on every way out of this program,
 *                   and hang.sh continues it again should the program die.
 *   stopped close   (the same) a call past its deadline leaves a cancel
 *                   request (a child process) waiting on the stopped
 *                   server; removing its context and freeing a second host
 *                   with one return at once and leave no process behind.
 *
 * Time bounds say "returned instead of hanging": the deadline plus a second
 * (ten under EMH_TEST_WRAPPER, a tool such as valgrind).
 */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

/* The deadlines of the contexts under test (ms). */
#define STMT_MS 1500
#define CONNECT_MS 1000
/* The call left hanging while another context serves waits this long. */
#define LONG_STMT_MS 3000

static double g_slack_ms = 1000;

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- a relay that can go silent, or a socket that is silent from the start ---- */

#define RELAY_MAX 64

typedef struct relay {
	int lfd, port;
	int upstream;     /* port of the real server; 0: silent (accept, never read or write) */
	atomic_bool mute; /* stop relaying: whatever is sent stays unread */
	atomic_bool stop;
	int fd[RELAY_MAX][2]; /* [client, server] pairs; -1: free */
	pthread_t t;
} relay;

static void relay_close_pair(relay *r, int i)
{
	for (int k = 0; k < 2; k++)
		if (r->fd[i][k] >= 0) {
			close(r->fd[i][k]);
			r->fd[i][k] = -1;
		}
}

static void relay_accept(relay *r)
{
	int c = accept(r->lfd, NULL, NULL), s = -1;
	if (c < 0)
		return;
	if (r->upstream) {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->upstream)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
			if (s >= 0)
				close(s);
			close(c);
			return;
		}
	}
	for (int i = 0; i < RELAY_MAX; i++)
		if (r->fd[i][0] < 0) {
			r->fd[i][0] = c;
			r->fd[i][1] = s;
			return;
		}
	close(c);
	if (s >= 0)
		close(s);
}

/* Move what one side sent to the other; false when either side is done. */
static bool relay_pass(int from, int to)
{
	char buf[65536];
	ssize_t n = recv(from, buf, sizeof buf, 0);
	if (n <= 0)
		return false;
	for (ssize_t off = 0; off < n;) {
		ssize_t w = send(to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		off += w;
	}
	return true;
}

static void *relay_main(void *arg)
{
	relay *r = arg;
	while (!atomic_load(&r->stop)) {
		struct pollfd p[1 + 2 * RELAY_MAX];
		int idx[1 + 2 * RELAY_MAX], n = 0;
		bool mute = atomic_load(&r->mute) || !r->upstream;
		p[n] = (struct pollfd){.fd = r->lfd, .events = POLLIN};
		idx[n++] = -1;
		for (int i = 0; i < RELAY_MAX && !mute; i++)
			for (int k = 0; k < 2; k++)
				if (r->fd[i][k] >= 0) {
					p[n] = (struct pollfd){.fd = r->fd[i][k], .events = POLLIN};
					idx[n++] = i * 2 + k;
				}
		if (poll(p, (nfds_t)n, 50) <= 0)
			continue;
		if (p[0].revents & POLLIN)
			relay_accept(r);
		for (int j = 1; j < n; j++) {
			int i = idx[j] / 2, k = idx[j] % 2;
			if (!p[j].revents || r->fd[i][k] < 0)
				continue;
			if (!relay_pass(r->fd[i][k], r->fd[i][1 - k]))
				relay_close_pair(r, i);
		}
	}
	for (int i = 0; i < RELAY_MAX; i++)
		relay_close_pair(r, i);
	close(r->lfd);
	return NULL;
}

/* Start a relay to upstream (0: a silent socket) on a loopback port of its own. */
static void relay_start(relay *r, int upstream)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof a;
	memset(r, 0, sizeof *r);
	memset(r->fd, -1, sizeof r->fd);
	r->upstream = upstream;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (r->lfd < 0 || bind(r->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(r->lfd, 64) != 0 ||
	    getsockname(r->lfd, (struct sockaddr *)&a, &len) != 0)
		bail("relay: listening socket: %s", strerror(errno));
	r->port = ntohs(a.sin_port);
	fixture_thread(&r->t, relay_main, r);
}

static void relay_stop(relay *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->t, NULL);
}

/* ---- the drivers ---- */

typedef struct hang_driver {
	const char *name;    /* the driver */
	const char *url_var; /* the variable holding its test server's URL */
	const char *probe;   /* a cheap call in the driver's own language */
} hang_driver;

static const hang_driver hang_drivers[] = {
	{.name = "postgres", .url_var = "EMH_TEST_PG_URL", .probe = "SELECT 1"},
	{.name = "mysql", .url_var = "EMH_TEST_MYSQL_URL", .probe = "SELECT 1"},
	{.name = "mongo", .url_var = "EMH_TEST_MONGO_URI", .probe = "{\"ping\": 1}"},
};

/* url with its (first) port replaced by port, into out; the old port into *old (0 if none). */
static bool url_with_port(const char *url, int port, int *old, char *out, size_t cap)
{
	const char *auth = strstr(url, "://");
	if (!auth)
		return false;
	auth += 3;
	const char *end = auth + strcspn(auth, "/?"), *at = NULL;
	for (const char *p = auth; p < end; p++)
		if (*p == '@')
			at = p;
	const char *host = at ? at + 1 : auth, *colon = memchr(host, ':', (size_t)(end - host));
	if (!colon)
		return false;
	*old = atoi(colon + 1);
	int n = snprintf(out, cap, "%.*s:%d%s", (int)(colon - url), url, port, end);
	return n > 0 && (size_t)n < cap;
}

static emh_host *g_host;
static fixture g_fx;

static bool driver_loaded(const char *name)
{
	const emh_driver_info *di;
	size_t n = emh_host_drivers(g_host, &di);
	for (size_t i = 0; i < n; i++)
		if (strcmp(di[i].name, name) == 0)
			return true;
	return false;
}

/* A context on url with these deadlines; migrations: its migration folder (NULL: none). */
static void add_ctx_mig(const char *name, const char *url, int stmt_ms, const char *migrations)
{
	emh_error err;
	char cto[16], sto[16];
	snprintf(cto, sizeof cto, "%d", CONNECT_MS);
	snprintf(sto, sizeof sto, "%d", stmt_ms);
	const char *kv[] = {"url", url, "statement_timeout_ms", sto, "connect_timeout_ms", cto, "pool.max", "3",
			    "pool.acquire_timeout_ms", "20000", migrations ? "migrations" : NULL, migrations, NULL};
	if (emh_host_add_context(g_host, name, kv, &err))
		bail("add context '%s': %s", name, err.message);
}

static void add_ctx(const char *name, const char *url, int stmt_ms)
{
	add_ctx_mig(name, url, stmt_ms, NULL);
}

static void remove_ctx(const char *name)
{
	emh_error err;
	if (emh_host_remove_context(g_host, name, &err))
		bail("remove context '%s': %s", name, err.message);
}

/* rc must be EMH_ETIMEOUT, retryable, naming ctx, within deadline_ms + slack of t0. */
static void is_timeout(int rc, const emh_error *err, const char *ctx, double t0, double deadline_ms,
		       const char *what)
{
	double took = fixture_now_ms() - t0;
	is_int(rc, EMH_ETIMEOUT, "%s: EMH_ETIMEOUT", what);
	if (rc)
		diag("%s: %s", what, err->message);
	ok(rc != EMH_ETIMEOUT || err->retryable, "%s: retryable", what);
	ok(rc == 0 || strcmp(err->context, ctx) == 0, "%s: names the context", what);
	ok(took < deadline_ms + g_slack_ms, "%s: returned instead of hanging (%.0f ms, deadline %.0f ms)", what, took,
	   deadline_ms);
}

/* ---- the SQLite context that keeps serving ---- */

typedef struct note {
	int64_t id;
	const char *text;
} note;
static const emh_field note_fields[] = {
	EMH_FIELD(note, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(note, text, EMH_T_TEXT, 0),
};
static const emh_entity note_entity = EMH_ENTITY(note, "hang_notes", note_fields);

/* Write a note on the SQLite context and read it back: 0 or the failure. */
static int lite_work(emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	note *n, *back;
	int rc = emh_host_fork(g_host, "lite", &em, err);
	if (rc)
		return rc;
	if (!(rc = emh_em_repo(em, &note_entity, &r, err)) && !(rc = emh_repo_new(r, (void **)&n, err))) {
		n->text = "written while another context hung";
		if (!(rc = emh_repo_insert(r, n, err)) && !(rc = emh_em_flush(em, err)))
			rc = emh_repo_get(r, emh_v_int64(n->id), (void **)&back, err);
	}
	emh_em_close(em);
	return rc;
}

/* ---- a call left hanging in a thread ---- */

typedef struct hung_call {
	emh_em *em;
	const char *text;
	int rc;
	emh_error err;
	double t0;
	atomic_bool done;
	pthread_t t;
} hung_call;

static void *hung_main(void *arg)
{
	hung_call *h = arg;
	h->t0 = fixture_now_ms();
	h->rc = emh_em_execute(h->em, h->text, &h->err);
	atomic_store(&h->done, true);
	return NULL;
}

/* Start text on em in a thread; the caller joins h->t. */
static void hung_start(hung_call *h, emh_em *em, const char *text)
{
	memset(h, 0, sizeof *h);
	h->em = em;
	h->text = text;
	fixture_thread(&h->t, hung_main, h);
}

/* While h hangs, the SQLite context serves: its work ends before h returns. */
static void lite_serves_meanwhile(hung_call *h, const char *what)
{
	emh_error err;
	int rc = lite_work(&err);
	bool before = !atomic_load(&h->done);
	is_int(rc, 0, "%s: meanwhile a fork of the SQLite context writes and reads", what);
	if (rc)
		diag("sqlite: %s", err.message);
	ok(before, "%s: while the call still hangs", what);
}

/* ---- the cases ---- */

static void case_silent(const hang_driver *d, const char *url)
{
	relay r;
	char surl[1024], ctx[32];
	int old;
	emh_error err;
	snprintf(ctx, sizeof ctx, "%.8s_silent", d->name);
	relay_start(&r, 0);
	if (!url_with_port(url, r.port, &old, surl, sizeof surl))
		bail("%s: no port in %s", d->name, d->url_var);
	diag("%s: a server that accepts and never answers", d->name);
	add_ctx(ctx, surl, STMT_MS);
	double t0 = fixture_now_ms();
	int rc = fixture_exec(g_host, ctx, d->probe, &err);
	is_timeout(rc, &err, ctx, t0, CONNECT_MS > STMT_MS ? CONNECT_MS : STMT_MS, "silent server, first call (connect)");
	t0 = fixture_now_ms();
	rc = emh_host_ping(g_host, ctx, &err);
	is_timeout(rc, &err, ctx, t0, CONNECT_MS > STMT_MS ? CONNECT_MS : STMT_MS, "silent server, ping");
	emh_context_info ci = fixture_context_info(g_host, ctx);
	ok(ci.last_error[0] != '\0', "silent server: last_error says why: %s", ci.last_error);
	remove_ctx(ctx);
	relay_stop(&r);
}

/* A relay in front of d's server, into r; murl: url through it. */
static void relay_to(const hang_driver *d, const char *url, relay *r, char *murl, size_t cap)
{
	int upstream;
	if (!url_with_port(url, 1, &upstream, murl, cap) || upstream <= 0)
		bail("%s: no port in %s", d->name, d->url_var);
	relay_start(r, upstream);
	url_with_port(url, r->port, &upstream, murl, cap);
}

/* Relaying again, ctx serves; then it and the relay go. */
static void relay_end(const hang_driver *d, relay *r, const char *ctx)
{
	emh_error err;
	atomic_store(&r->mute, false);
	int rc = fixture_exec(g_host, ctx, d->probe, &err);
	is_int(rc, 0, "%s: relaying again, the context serves", d->name);
	if (rc)
		diag("%s", err.message);
	remove_ctx(ctx);
	relay_stop(r);
}

static void case_muted(const hang_driver *d, const char *url)
{
	relay r;
	char murl[1024], ctx[32];
	emh_error err;
	hung_call h;
	snprintf(ctx, sizeof ctx, "%.8s_muted", d->name);
	relay_to(d, url, &r, murl, sizeof murl);
	diag("%s: a server that stops answering mid-session (statement_timeout_ms=%d)", d->name, LONG_STMT_MS);
	add_ctx(ctx, murl, LONG_STMT_MS);

	emh_em *em = fixture_fork(g_host, ctx);
	int rc = emh_em_execute(em, d->probe, &err);
	if (rc)
		bail("%s through the relay: %s", d->name, err.message);
	atomic_store(&r.mute, true);
	hung_start(&h, em, d->probe);
	lite_serves_meanwhile(&h, d->name);
	pthread_join(h.t, NULL);
	is_timeout(h.rc, &h.err, ctx, h.t0, LONG_STMT_MS, "muted server, a call on a live connection");
	emh_em_close(em);

	double t0 = fixture_now_ms();
	rc = fixture_exec(g_host, ctx, d->probe, &err);
	is_timeout(rc, &err, ctx, t0, LONG_STMT_MS, "muted server, a fork on a new connection");
	t0 = fixture_now_ms();
	rc = emh_host_ping(g_host, ctx, &err);
	is_timeout(rc, &err, ctx, t0, LONG_STMT_MS, "muted server, ping");

	relay_end(d, &r, ctx);
}

/*
 * The calls of the schema diff (describing a table) and of emhost migrate
 * (the migration lock) on a live connection whose server stops answering:
 * each returns EMH_ETIMEOUT at statement_timeout_ms like any other call
 * (the lock's own wait, 60 s here, does not stretch one call's deadline).
 */
static void case_muted_catalog(const hang_driver *d, const char *url)
{
	relay r;
	char murl[1024], ctx[32], mig[1100];
	emh_error err;
	snprintf(ctx, sizeof ctx, "%.8s_mcat", d->name);
	relay_to(d, url, &r, murl, sizeof murl);
	fixture_path(&g_fx, "migrations", mig, sizeof mig);
	if (mkdir(mig, 0700) != 0 && errno != EEXIST)
		bail("mkdir %s: %s", mig, strerror(errno));
	diag("%s: schema diff and migration lock on a server that stops answering (statement_timeout_ms=%d)",
	     d->name, LONG_STMT_MS);
	add_ctx_mig(ctx, murl, LONG_STMT_MS, mig);
	fixture_register(g_host, ctx, &note_entity);

	for (int k = 0; k < 2; k++) {
		/* a live idle connection, checked less than a second ago: taken without a ping */
		int rc = fixture_exec(g_host, ctx, d->probe, &err);
		if (rc)
			bail("%s through the relay: %s", d->name, err.message);
		atomic_store(&r.mute, true);
		double t0 = fixture_now_ms();
		if (k == 0) {
			emh_schema_diff *diff = NULL;
			rc = emh_schema_diff_new(g_host, ctx, 0, &diff, &err);
			emh_schema_diff_free(diff);
			is_timeout(rc, &err, ctx, t0, LONG_STMT_MS, "muted server, schema diff (describing a table)");
		} else {
			emh_migrate_opts o = {.lock_wait_ms = 60000};
			rc = emh_migrate_up(g_host, ctx, &o, NULL, &err);
			is_timeout(rc, &err, ctx, t0, LONG_STMT_MS, "muted server, migrate up (taking the lock)");
		}
		atomic_store(&r.mute, false);
	}
	relay_end(d, &r, ctx);
}

/* ---- PostgreSQL stopped with SIGSTOP ---- */

#define PG_MAX_PIDS 256
static pid_t g_stopped[PG_MAX_PIDS];
static volatile sig_atomic_t g_nstopped;

/* Continue every process this program stopped: async-signal-safe (kill only). */
static void pg_continue_all(void)
{
	for (int i = 0; i < g_nstopped; i++)
		kill(g_stopped[i], SIGCONT);
	g_nstopped = 0;
}

static void on_fatal(int sig)
{
	pg_continue_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* The processes whose parent is parent (zombies included), into out; how many. */
static int children_of(long parent, pid_t *out, int cap)
{
	char path[64];
	FILE *f;
	int n = 0;
	DIR *dir = opendir("/proc");
	struct dirent *de;
	while (dir && (de = readdir(dir)) && n < cap) {
		char stat[512];
		long pid = atol(de->d_name), ppid = 0;
		if (pid <= 0)
			continue;
		snprintf(path, sizeof path, "/proc/%ld/stat", pid);
		if (!(f = fopen(path, "r")))
			continue;
		if (fgets(stat, sizeof stat, f)) {
			const char *rp = strrchr(stat, ')'); /* the command may hold spaces */
			if (rp && sscanf(rp + 1, " %*c %ld", &ppid) == 1 && ppid == parent)
				out[n++] = (pid_t)pid;
		}
		fclose(f);
	}
	if (dir)
		closedir(dir);
	return n;
}

/* The postmaster's pid (STATE_DIR/pg/pid) and its children: the whole cluster. */
static int pg_cluster_pids(const char *state, pid_t *out, int cap)
{
	char path[1024];
	FILE *f;
	long pm = 0;
	snprintf(path, sizeof path, "%s/pg/pid", state);
	if (!(f = fopen(path, "r")))
		return 0;
	if (fscanf(f, "%ld", &pm) != 1)
		pm = 0;
	fclose(f);
	if (pm <= 0)
		return 0;
	out[0] = (pid_t)pm;
	return 1 + children_of(pm, out + 1, cap - 1);
}

/* This program's child processes: the drivers' cancel requests (zombies included). */
static int my_children(void)
{
	pid_t pids[PG_MAX_PIDS];
	return children_of((long)getpid(), pids, PG_MAX_PIDS);
}

static void pg_stop_cluster(const char *state)
{
	pid_t pids[PG_MAX_PIDS];
	int n = pg_cluster_pids(state, pids, PG_MAX_PIDS);
	for (int i = 0; i < n; i++) {
		g_stopped[g_nstopped] = pids[i];
		g_nstopped = g_nstopped + 1; /* recorded before the stop: continued on any way out */
		kill(pids[i], SIGSTOP);
	}
	diag("postgres: stopped the cluster (%d processes)", n);
}

/* The test server's state directory when scripts/servers/pg.sh started it (it can be stopped), else NULL. */
static const char *pg_stoppable(void)
{
	const char *state = getenv("EMH_TEST_STATE_DIR");
	char kind[32] = "", path[1024];
	FILE *f;
	if (state && *state) {
		snprintf(path, sizeof path, "%s/pg/kind", state);
		if ((f = fopen(path, "r"))) {
			if (!fgets(kind, sizeof kind, f))
				kind[0] = '\0';
			fclose(f);
		}
	}
	return strncmp(kind, "postgres", 8) == 0 ? state : NULL;
}

static void case_pg_sigstop(const char *url)
{
	const char *state = pg_stoppable();
	emh_error err;
	hung_call h;
	if (!state) {
		skip(1, "postgres SIGSTOP: the test server was not started by scripts/servers/pg.sh (it cannot be "
			"stopped)");
		return;
	}
	diag("postgres: the whole cluster stopped with SIGSTOP mid-call (statement_timeout_ms=%d)", LONG_STMT_MS);
	add_ctx("pg_stop", url, LONG_STMT_MS);
	emh_em *idle = fixture_fork(g_host, "pg_stop"), *em = fixture_fork(g_host, "pg_stop");
	if (emh_em_execute(idle, "SELECT 1", &err) || emh_em_execute(em, "SELECT 1", &err))
		bail("pg_stop: %s", err.message);
	emh_em_close(idle); /* one idle connection for the ping below */

	/* it would answer after 2 s; the stop lands well before */
	hung_start(&h, em, "SELECT pg_sleep(2)");
	sleep_ms(100);
	pg_stop_cluster(state);
	lite_serves_meanwhile(&h, "postgres stopped");
	pthread_join(h.t, NULL);
	is_timeout(h.rc, &h.err, "pg_stop", h.t0, LONG_STMT_MS, "stopped cluster, the call in flight");
	emh_em_close(em);

	double t0 = fixture_now_ms();
	int rc = emh_host_ping(g_host, "pg_stop", &err);
	is_timeout(rc, &err, "pg_stop", t0, CONNECT_MS, "stopped cluster, ping of the idle connection");
	t0 = fixture_now_ms();
	rc = fixture_exec(g_host, "pg_stop", "SELECT 1", &err);
	is_timeout(rc, &err, "pg_stop", t0, CONNECT_MS, "stopped cluster, a fork on a new connection");
	emh_context_info ci = fixture_context_info(g_host, "pg_stop");
	ok(ci.up && ci.last_error[0], "stopped cluster: the context is not down, last_error says why: %s",
	   ci.last_error);

	pg_continue_all();
	diag("postgres: cluster continued");
	rc = fixture_exec(g_host, "pg_stop", "SELECT 1", &err);
	is_int(rc, 0, "after SIGCONT the context serves again");
	if (rc)
		diag("%s", err.message);
	ci = fixture_context_info(g_host, "pg_stop");
	ok(ci.up && !ci.last_error[0], "after SIGCONT last_error is cleared ('%s')", ci.last_error);
	remove_ctx("pg_stop");
}

/* A fork of ctx on h runs probe: 0 or the failure. */
static int probe_on(emh_host *h, const char *ctx, emh_error *err)
{
	emh_em *em;
	int rc = emh_host_fork(h, ctx, &em, err);
	if (rc)
		return rc;
	rc = emh_em_execute(em, "SELECT 1", err);
	emh_em_close(em);
	return rc;
}

/*
 * Calls past their deadline while the cluster is stopped, on a context of
 * this host and on one of a second host: each leaves a cancel request, a
 * child process that waits on the stopped server for up to
 * connect_timeout_ms.  Removing the context and freeing the other host (its
 * plugins unloaded) return at once, and no child process is left behind.
 */
static void case_pg_stopped_close(const char *url)
{
	const char *state = pg_stoppable();
	emh_host *h2;
	emh_error err;
	if (!state) {
		skip(1, "postgres stopped close: the test server was not started by scripts/servers/pg.sh (it cannot "
			"be stopped)");
		return;
	}
	diag("postgres: contexts closed while their cancel requests wait on a stopped cluster");
	is_int(my_children(), 0, "no cancel process left from the cases before (their contexts were removed)");
	if (fixture_host(&g_fx, NULL, &h2, &err))
		bail("second host: %s", err.message);
	add_ctx("pg_rm", url, STMT_MS);
	char cto[16], sto[16];
	snprintf(cto, sizeof cto, "%d", CONNECT_MS);
	snprintf(sto, sizeof sto, "%d", STMT_MS);
	if (emh_host_add_context(h2, "pg_h2", (const char *const[]){"url", url, "statement_timeout_ms", sto,
								    "connect_timeout_ms", cto, NULL},
				 &err))
		bail("add context 'pg_h2': %s", err.message);
	if (probe_on(g_host, "pg_rm", &err) || probe_on(h2, "pg_h2", &err))
		bail("pg_rm / pg_h2: %s", err.message);

	pg_stop_cluster(state);
	double t0 = fixture_now_ms();
	int rc = probe_on(g_host, "pg_rm", &err);
	is_timeout(rc, &err, "pg_rm", t0, STMT_MS, "stopped cluster, a call on this host");
	t0 = fixture_now_ms();
	rc = probe_on(h2, "pg_h2", &err);
	is_timeout(rc, &err, "pg_h2", t0, STMT_MS, "stopped cluster, a call on a second host");
	int n = my_children();
	ok(n == 2, "a cancel request (child process) for each call (%d)", n);

	t0 = fixture_now_ms();
	remove_ctx("pg_rm");
	double took = fixture_now_ms() - t0;
	ok(took < g_slack_ms, "removing the context returned at once (%.0f ms)", took);
	t0 = fixture_now_ms();
	emh_host_free(h2);
	took = fixture_now_ms() - t0;
	ok(took < g_slack_ms, "freeing the second host returned at once (%.0f ms)", took);
	is_int(my_children(), 0, "no cancel process left behind, the cluster still stopped");
	pg_continue_all();
	diag("postgres: cluster continued");
}

int main(void)
{
	emh_error err;
	char lite[1100], liteurl[1200];
	const char *w = getenv("EMH_TEST_WRAPPER");

	plan_lazy();
	if (w && *w)
		g_slack_ms = 10000;
	atexit(pg_continue_all);
	signal(SIGINT, on_fatal);
	signal(SIGTERM, on_fatal);
	signal(SIGABRT, on_fatal);
	signal(SIGSEGV, on_fatal);
	signal(SIGBUS, on_fatal);

	fixture_init(&g_fx, "hang");
	fixture_path(&g_fx, "lite.db", lite, sizeof lite);
	snprintf(liteurl, sizeof liteurl, "EMH_CONTEXT_LITE_URL=sqlite://%s", lite);
	const char *env[] = {liteurl, "EMH_CONTEXT_LITE_SCHEMA=sync", NULL};
	if (fixture_host(&g_fx, env, &g_host, &err))
		bail("host: %s", err.message);
	fixture_register(g_host, "lite", &note_entity);

	for (size_t i = 0; i < sizeof hang_drivers / sizeof hang_drivers[0]; i++) {
		const hang_driver *d = &hang_drivers[i];
		const char *url = getenv(d->url_var);
		if (!url || !*url) {
			char why[160];
			snprintf(why, sizeof why, "%s: %s not set (scripts/test-servers.sh start STATE_DIR)", d->name,
				 d->url_var);
			need_server(1, why);
			continue;
		}
		if (!driver_loaded(d->name)) {
			char why[160];
			snprintf(why, sizeof why, "%s: the driver is not built", d->name);
			skip(1, why);
			continue;
		}
		case_silent(d, url);
		case_muted(d, url);
		case_muted_catalog(d, url);
		if (strcmp(d->name, "postgres") == 0) {
			case_pg_sigstop(url);
			case_pg_stopped_close(url);
		}
	}
	emh_host_free(g_host);
	fixture_release(&g_fx);
	return done_testing();
}
