/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/t_inline.c: emhostd's fast path (issue 19): a GET whose
 * SQLite contexts have an idle connection runs on the I/O thread; the rest
 * is handed to a worker.  One I/O thread and one worker (threads = 1), so
 * that "another client on the same I/O thread" is every other client:
 *
 *   - a POST goes to a worker; a GET with an idle connection runs inline
 *     (emhost_http_handled_inline_total / _handed_off_total);
 *   - a GET whose pool (max 1) has no idle connection -- a POST holds it,
 *     waiting for a write lock the test holds -- is queued for a worker
 *     (seen in emhost_http_queued), never run on the I/O thread, and is
 *     answered 200 once the lock goes;
 *   - a handler on a hung database (PostgreSQL on a socket that never
 *     answers: the test's own listener) holds the only worker, and another
 *     client's GET on SQLite is answered meanwhile, while the hung request
 *     is still open; once the "database" goes away the hung one ends too;
 *   - server.inline = false hands every request off;
 *   - on a database not in WAL mode (journal_mode = delete), where a reader
 *     waits for a writer's lock, a GET is handed off even with an idle
 *     connection, and the I/O thread answers while it waits;
 *   - with 2 I/O threads, a pool of 1 and several clients, an inline
 *     handler whose connection was taken first is handed off (its fork may
 *     not wait) and every request is answered and counted once.
 * No timing is asserted: each step waits for what the metrics say.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../tap.h"
#include "dtest.h"

static dtest_daemon d;
static char dir[256], svc[512], plug[1024];

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* A metric from a fresh scrape; -1 when it failed. */
static double metric(const char *name)
{
	CURL *c = dtest_curl();
	dtest_resp r;
	dtest_http(c, d.url, "GET", "/_emhost/metrics", NULL, 0, false, &r);
	double v = r.status == 200 ? dtest_metric(r.body ? r.body : "", name) : -1;
	dtest_resp_free(&r);
	curl_easy_cleanup(c);
	return v;
}

/* Wait (up to 20 s) until metric name reads want. */
static bool wait_metric(const char *name, double want)
{
	for (int i = 0; i < 400; i++) {
		if (metric(name) == want)
			return true;
		sleep_ms(50);
	}
	diag("%s stayed at %g, not %g", name, metric(name), want);
	return false;
}

/* One request on a thread of its own. */
typedef struct call {
	pthread_t th;
	const char *method, *path, *body;
	long status;
	char text[256];
	_Atomic bool done;
} call;

static void *call_main(void *arg)
{
	call *k = arg;
	CURL *c = dtest_curl();
	dtest_resp r;
	k->status = dtest_http(c, d.url, k->method, k->path, k->body, k->body ? strlen(k->body) : 0, false, &r);
	snprintf(k->text, sizeof k->text, "%s", r.body ? r.body : "");
	dtest_resp_free(&r);
	curl_easy_cleanup(c);
	atomic_store(&k->done, true);
	return NULL;
}

static void call_start(call *k, const char *method, const char *path, const char *body)
{
	*k = (call){.method = method, .path = path, .body = body};
	pthread_create(&k->th, NULL, call_main, k);
}

static long get(const char *path, char *body, size_t cap)
{
	CURL *c = dtest_curl();
	dtest_resp r;
	long st = dtest_http(c, d.url, "GET", path, NULL, 0, false, &r);
	if (body)
		snprintf(body, cap, "%s", r.body ? r.body : "");
	dtest_resp_free(&r);
	curl_easy_cleanup(c);
	return st;
}

/* A socket that takes connections (the kernel's backlog) and never answers: a hung database. */
static int blackhole(unsigned *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 16) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
		bail("blackhole socket: cannot listen on loopback");
	*port = ntohs(sa.sin_port);
	return fd;
}

/* db: the default context's file in dir; sqlite: more of its settings; threads 1 unless server sets it. */
static int start_db(const char *server, unsigned hole_port, const char *db, const char *sqlite)
{
	char conf[4096];
	snprintf(conf, sizeof conf,
		 "plugin_dir = \"%s\";\n"
		 "service_dir = \"%s\";\n"
		 "contexts = (\n"
		 "  { name = \"default\"; driver = \"sqlite\"; path = \"%s/%s\"; schema = \"sync\"; %s\n"
		 "    busy_timeout_ms = 30000; pool = { max = 1; acquire_timeout_ms = 30000; }; },\n"
		 "  { name = \"analytics\"; driver = \"postgres\"; url = \"postgres://emh:x@127.0.0.1:%u/emh\"; }\n"
		 ");\n"
		 "services = ( { name = \"users\"; }, { name = \"good\"; module = \"fx_good\"; } );\n"
		 "server = { %s shutdown_timeout_ms = 5000; %s };\n",
		 plug, svc, dir, db, sqlite, hole_port, strstr(server, "threads") ? "" : "threads = 1;", server);
	return dtest_start(&d, dir, conf, NULL);
}

static int start(const char *server, unsigned hole_port) { return start_db(server, hole_port, "app.db", ""); }

/* A POST goes to a worker; a GET with an idle SQLite connection runs on the I/O thread. */
static void t_paths(void)
{
	call k;
	call_start(&k, "POST", "/users", "{\"name\":\"ann\",\"email\":\"ann@example.com\"}");
	pthread_join(k.th, NULL);
	is_int(k.status, 201, "POST /users: 201");
	ok(metric("emhost_http_handed_off_total") == 1 && metric("emhost_http_handled_inline_total") == 0,
	   "the POST was handed to a worker");
	char body[256];
	is_int(get("/users/1", body, sizeof body), 200, "GET /users/1: 200");
	ok(strstr(body, "\"ann@example.com\"") != NULL, "with the user (%s)", body);
	ok(metric("emhost_http_handled_inline_total") == 1 && metric("emhost_http_handed_off_total") == 1,
	   "the GET ran on the I/O thread (its pool had an idle connection)");
	is_int(get("/users/99", NULL, 0), 404, "GET of a missing user on the fast path: 404");
}

/* The database file name in dir, opened and write-locked (BEGIN EXCLUSIVE) by the test. */
static sqlite3 *lock_db(const char *name)
{
	char path[600];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	sqlite3 *db = NULL;
	char *msg = NULL;
	if (sqlite3_open(path, &db) != SQLITE_OK || sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, &msg) != SQLITE_OK)
		bail("lock %s: %s", path, msg ? msg : sqlite3_errmsg(db));
	return db;
}

/* A GET whose pool has no idle connection waits for a worker, not on the I/O thread. */
static void t_no_idle(void)
{
	sqlite3 *db = lock_db("app.db");
	double inl = metric("emhost_http_handled_inline_total");
	call post, g;
	call_start(&post, "POST", "/users", "{\"name\":\"bob\",\"email\":\"bob@example.com\"}");
	ok(wait_metric("emhost_pool_in_use{context=\"default\"}", 1) && wait_metric("emhost_http_workers_busy", 1),
	   "a POST waits for the write lock on the worker, holding the pool's only connection");
	call_start(&g, "GET", "/users/1", NULL);
	ok(wait_metric("emhost_http_queued", 1), "a GET meanwhile is queued for a worker (no idle connection)");
	ok(!atomic_load(&g.done), "and not answered while the connection is held");
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(db);
	pthread_join(post.th, NULL);
	pthread_join(g.th, NULL);
	is_int(post.status, 201, "the POST: 201 once the lock goes");
	is_int(g.status, 200, "the queued GET: 200 through the worker");
	ok(strstr(g.text, "ann@example.com") != NULL, "with the user (%s)", g.text);
	ok(metric("emhost_http_handled_inline_total") == inl, "neither ran on the I/O thread");
}

/* emhostd on a database file of its own (start_db) with user 1 in it; false when it did not start. */
static bool start_with_user(const char *server, const char *db, const char *sqlite, const char *what)
{
	if (start_db(server, 1, db, sqlite) != 0) {
		ok(0, "%s: emhostd starts", what);
		return false;
	}
	call k;
	call_start(&k, "POST", "/users", "{\"name\":\"cy\",\"email\":\"cy@example.com\"}");
	pthread_join(k.th, NULL);
	is_int(k.status, 201, "%s: POST /users: 201", what);
	return true;
}

/*
 * Not in WAL mode, a reader waits for a writer's lock (busy_timeout_ms): a
 * GET there is handed off even with an idle connection, and while it waits
 * the I/O thread still answers.
 */
static void t_rollback_journal(void)
{
	if (!start_with_user("", "rj.db", "journal_mode = \"delete\";", "journal_mode = delete"))
		return;
	is_int(get("/users/1", NULL, 0), 200, "GET /users/1: 200 (the connection is idle after it)");
	double inl = metric("emhost_http_handled_inline_total");
	sqlite3 *db = lock_db("rj.db");
	call g;
	call_start(&g, "GET", "/users/1", NULL);
	/* the scrape is answered by the only I/O thread: it is not held by the GET */
	ok(wait_metric("emhost_http_workers_busy", 1) && !atomic_load(&g.done),
	   "a GET waiting for a writer's lock waits on the worker, and the I/O thread answers meanwhile");
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(db);
	pthread_join(g.th, NULL);
	is_int(g.status, 200, "the GET: 200 once the lock goes (%s)", g.text);
	ok(metric("emhost_http_handled_inline_total") == inl, "it did not run on the I/O thread");
	is_int(dtest_stop(&d, SIGTERM, 30000), 0, "emhostd exits 0");
}

/* A hung database holds the only worker; a GET on SQLite on the only I/O thread is answered meanwhile. */
static void t_hung(int hole)
{
	call hung;
	call_start(&hung, "GET", "/good/count?ctx=analytics", NULL);
	ok(wait_metric("emhost_http_workers_busy", 1), "a GET on PostgreSQL that never answers holds the only worker");
	char body[256];
	is_int(get("/users/1", body, sizeof body), 200, "another client's GET /users/1 is answered meanwhile");
	ok(!atomic_load(&hung.done), "while the hung request is still open");
	is_int(get("/_emhost/health", NULL, 0) != 0, 1, "health answers too");
	close(hole); /* the "database" goes away: the hung connect fails */
	pthread_join(hung.th, NULL);
	ok(hung.status >= 500, "the hung request ends with a 5xx once its database goes (%ld)", hung.status);
}

/*
 * Many clients on 2 I/O threads against a pool of 1: an inline handler
 * whose idle connection another thread took first does not wait for it on
 * the I/O thread (its fork may not wait, EMH_FORK_NOWAIT) but is handed to
 * a worker (emhost_http_inline_missed_total); every request is answered 200
 * and is counted once, inline or handed off.
 */
enum { RACERS = 4, RACE_GETS = 40 };

static void *race_main(void *arg)
{
	int *ok200 = arg;
	CURL *c = dtest_curl();
	for (int i = 0; i < RACE_GETS; i++) {
		dtest_resp r;
		*ok200 += dtest_http(c, d.url, "GET", "/users/1", NULL, 0, false, &r) == 200;
		dtest_resp_free(&r);
	}
	curl_easy_cleanup(c);
	return NULL;
}

static void t_race(void)
{
	if (!start_with_user("threads = 2;", "race.db", "", "race"))
		return;
	pthread_t th[RACERS];
	int ok200[RACERS] = {0};
	for (int i = 0; i < RACERS; i++)
		pthread_create(&th[i], NULL, race_main, &ok200[i]);
	int all = 0;
	for (int i = 0; i < RACERS; i++) {
		pthread_join(th[i], NULL);
		all += ok200[i];
	}
	is_int(all, RACERS * RACE_GETS, "race: every GET answered 200 (pool max 1, 2 I/O threads, %d clients)", RACERS);
	double in = metric("emhost_http_handled_inline_total"), off = metric("emhost_http_handed_off_total"),
	       missed = metric("emhost_http_inline_missed_total");
	ok(in + off == RACERS * RACE_GETS + 1 && missed >= 0 && missed <= off,
	   "race: each request counted once (inline %.0f, handed off %.0f of which %.0f missed their connection)", in,
	   off, missed);
	is_int(dtest_stop(&d, SIGTERM, 30000), 0, "emhostd exits 0");
}

int main(void)
{
	char probe[1200];
	snprintf(plug, sizeof plug, "%s/plugins-build", dtest_builddir());
	snprintf(probe, sizeof probe, "%s/sqlite.so", plug);
	if (access(probe, R_OK) != 0) {
		printf("1..0 # SKIP sqlite driver not built\n");
		return 0;
	}
	snprintf(probe, sizeof probe, "%s/postgres.so", plug);
	bool have_pg = access(probe, R_OK) == 0;
	signal(SIGPIPE, SIG_IGN);
	dtest_tmpdir(dir, sizeof dir, "inline");
	dtest_service_dir(dir, svc, sizeof svc);
	unsigned port;
	int hole = blackhole(&port);
	if (start("", have_pg ? port : 1) != 0) {
		ok(0, "emhostd starts");
		return done_testing();
	}
	ok(1, "emhostd starts on %s (1 I/O thread, 1 worker)", d.url);
	t_paths();
	t_no_idle();
	if (have_pg) {
		t_hung(hole);
	} else {
		close(hole);
		skip(5, "postgres driver not built: the hung-database case needs it");
	}
	is_int(dtest_stop(&d, SIGTERM, 30000), 0, "emhostd exits 0");

	/* server.inline = false: every request to a worker */
	if (start("inline = false;", 1) != 0) {
		ok(0, "emhostd starts with server.inline = false");
		return done_testing();
	}
	get("/users/1", NULL, 0); /* the connection is idle after this one */
	is_int(get("/users/1", NULL, 0), 200, "inline = false: GET /users/1: 200");
	ok(metric("emhost_http_handled_inline_total") == 0 && metric("emhost_http_handed_off_total") == 2,
	   "both GETs were handed off");
	is_int(dtest_stop(&d, SIGTERM, 30000), 0, "emhostd exits 0");
	t_rollback_journal();
	t_race();
	dtest_rmtree(dir);
	return done_testing();
}
