/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/t_robust.c: emhostd when things go wrong, over real HTTP on
 * SQLite, with the database locked from here by a second connection
 * holding BEGIN EXCLUSIVE:
 *
 *   - health and metrics answer while every worker is stuck on the lock;
 *     a full work queue answers 503 + Retry-After at once;
 *   - a locked database answers 503 (not 500) within emh_web_flush's budget,
 *     with a generic message (the driver's text goes to the log only);
 *   - driver text of a 409/400 never reaches the client; health has no
 *     last_error;
 *   - invalid UTF-8 in a path or method gives a JSON error, not a 500;
 *   - a chunked body far over max_body is not read to its end;
 *   - the latency histogram's +Inf bucket and _count agree;
 *   - SIGTERM with handlers stuck past shutdown_timeout_ms: queued requests
 *     get 503, the daemon exits (status 3) soon after the timeout; a second
 *     SIGTERM ends the wait at once.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../tap.h"
#include "dtest.h"

static dtest_daemon d;
static char dir[256], plug[1024], svc[512];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
}

/* A connection of our own holding the database's write lock. */
static sqlite3 *lock_db(const char *file)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	sqlite3 *db = NULL;
	if (sqlite3_open(path, &db) != SQLITE_OK) {
		diag("sqlite3_open %s: %s", path, db ? sqlite3_errmsg(db) : "?");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	char *msg = NULL;
	if (sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, &msg) != SQLITE_OK) {
		diag("BEGIN EXCLUSIVE: %s", msg ? msg : "?");
		sqlite3_free(msg);
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

static void unlock_db(sqlite3 *db)
{
	if (!db)
		return;
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(db);
}

/* A metric without labels, from a fresh scrape; -1 when it failed. */
static double metric(const char *name, double *seconds)
{
	CURL *c = dtest_curl();
	dtest_resp r;
	dtest_http(c, d.url, "GET", "/_emhost/metrics", NULL, 0, false, &r);
	double v = r.status == 200 ? dtest_metric(r.body ? r.body : "", name) : -1;
	if (seconds)
		*seconds = r.seconds;
	dtest_resp_free(&r);
	curl_easy_cleanup(c);
	return v;
}

/* Wait (up to 10 s) until the metrics show busy workers and queued requests. */
static bool wait_queue(double busy, double queued)
{
	for (double t0 = now_s(); now_s() - t0 < 10;) {
		if (metric("emhost_http_workers_busy", NULL) == busy && metric("emhost_http_queued", NULL) == queued)
			return true;
		sleep_s(0.02);
	}
	diag("busy %.0f queued %.0f", metric("emhost_http_workers_busy", NULL), metric("emhost_http_queued", NULL));
	return false;
}

/* A POST /users in its own thread. */
typedef struct poster {
	pthread_t th;
	int n;
	long status;
	char code[32];
	char retry_after[32];
	double seconds;
} poster;

static void *post_user(void *arg)
{
	poster *p = arg;
	CURL *c = dtest_curl();
	char body[128];
	snprintf(body, sizeof body, "{\"name\":\"p%d\",\"email\":\"p%d-%d@robust.test\"}", p->n, p->n, (int)getpid());
	dtest_resp r;
	double t0 = now_s();
	dtest_http(c, d.url, "POST", "/users", body, strlen(body), false, &r);
	p->seconds = now_s() - t0;
	p->status = r.status;
	json_t *j = dtest_json(&r);
	snprintf(p->code, sizeof p->code, "%s", dtest_jstr(j, "error", "code", NULL) ? dtest_jstr(j, "error", "code", NULL) : "");
	snprintf(p->retry_after, sizeof p->retry_after, "%s", r.retry_after);
	json_decref(j);
	dtest_resp_free(&r);
	curl_easy_cleanup(c);
	return NULL;
}

static int start(const char *busy_ms, const char *server)
{
	char conf[4096];
	snprintf(conf, sizeof conf,
		 "plugin_dir = \"%s\";\n"
		 "service_dir = \"%s\";\n"
		 "contexts = (\n"
		 "  { name = \"default\"; driver = \"sqlite\"; path = \"%s/app.db\"; schema = \"sync\"; required = true;\n"
		 "    busy_timeout_ms = %s; pool = { max = 4; }; },\n"
		 "  { name = \"analytics\"; driver = \"sqlite\"; path = \"%s/analytics.db\"; schema = \"sync\"; }\n"
		 ");\n"
		 "services = ( { name = \"users\"; }, { name = \"analytics\"; }, { name = \"good\"; module = \"fx_good\"; } );\n"
		 "server = { %s };\n",
		 plug, svc, dir, busy_ms, dir, server);
	return dtest_start(&d, dir, conf, NULL);
}

/* Health and metrics while every worker is stuck; the queue's cap. */
static void test_stuck_workers(void)
{
	sqlite3 *db = lock_db("app.db");
	ok(db != NULL, "the test holds the write lock of app.db");
	poster p[10];
	for (int i = 0; i < 10; i++) {
		memset(&p[i], 0, sizeof p[i]);
		p[i].n = i;
		pthread_create(&p[i].th, NULL, post_user, &p[i]);
		if (i == 1)
			wait_queue(2, 0); /* both workers stuck first */
	}
	ok(wait_queue(2, 8), "2 workers stuck on the lock, 8 requests queued (the cap is 4 x 2 threads)");
	double secs;
	ok(metric("emhost_http_queue_max", &secs) == 8, "metrics answer while the workers are stuck (%.3f s)", secs);
	ok(secs < 1.0, "at once");

	CURL *c = dtest_curl();
	dtest_resp r;
	double t0 = now_s();
	dtest_http(c, d.url, "GET", "/_emhost/health", NULL, 0, false, &r);
	double took = now_s() - t0;
	json_t *j = dtest_json(&r);
	is_int(r.status, 200, "health answers while every worker is stuck");
	ok(took < 2.0, "within its ping bound (%.3f s)", took);
	is_str(dtest_jstr(j, "contexts", "default", "status", NULL), "up", "the locked database is up (it is busy)");
	ok(!strstr(r.body ? r.body : "", "last_error"), "health carries no last_error");
	json_decref(j);
	dtest_resp_free(&r);

	t0 = now_s();
	const char *body = "{\"name\":\"late\",\"email\":\"late@robust.test\"}";
	dtest_http(c, d.url, "POST", "/users", body, strlen(body), false, &r);
	took = now_s() - t0;
	j = dtest_json(&r);
	is_int(r.status, 503, "a request over the queue's cap -> 503");
	ok(took < 1.0, "at once (%.3f s)", took);
	is_str(dtest_jstr(j, "error", "code", NULL), "unavailable", "error.code unavailable");
	is_str(r.retry_after, "1", "Retry-After: 1");
	json_decref(j);
	dtest_resp_free(&r);
	ok(metric("emhost_http_rejected_total", NULL) >= 1, "counted in emhost_http_rejected_total");

	unlock_db(db);
	int created = 0;
	for (int i = 0; i < 10; i++) {
		pthread_join(p[i].th, NULL);
		created += p[i].status == 201;
		if (p[i].status != 201)
			diag("poster %d: %ld %s after %.2f s", i, p[i].status, p[i].code, p[i].seconds);
	}
	is_int(created, 10, "once the lock is gone every queued request is answered 201");
	curl_easy_cleanup(c);
}

/* A database that stays locked: 503 within emh_web_flush's budget, generic text. */
static void test_locked(void)
{
	sqlite3 *db = lock_db("app.db");
	poster p = {.n = 100};
	post_user(&p);
	is_int(p.status, 503, "POST while the database stays locked -> 503, not 500");
	is_str(p.code, "unavailable", "error.code unavailable");
	is_str(p.retry_after, "1", "with Retry-After: 1");
	ok(p.seconds >= 1.5 && p.seconds < 4.0, "after emh_web_flush's 2 s budget, not 5 busy timeouts (%.2f s)", p.seconds);
	unlock_db(db);

	/* the message: generic, naming the context; the driver's in the log */
	db = lock_db("app.db");
	CURL *c = dtest_curl();
	dtest_resp r;
	const char *body = "{\"name\":\"x\",\"email\":\"x@robust.test\"}";
	dtest_http(c, d.url, "POST", "/users", body, strlen(body), false, &r);
	json_t *j = dtest_json(&r);
	is_str(dtest_jstr(j, "error", "message", NULL), "context 'default' is unavailable, retry later",
	       "the 503 message is the generic one");
	ok(!strstr(r.body ? r.body : "", "sqlite") && !strstr(r.body ? r.body : "", "locked"),
	   "no driver text in the body");
	ok(dtest_log_contains(&d, "database is locked"), "the driver's message is in the log");
	json_decref(j);
	dtest_resp_free(&r);
	unlock_db(db);
	curl_easy_cleanup(c);
}

/* Driver text of 409/400 stays in the log; service text reaches the client. */
static void test_driver_messages(void)
{
	CURL *c = dtest_curl();
	dtest_resp r;
	dtest_http(c, d.url, "POST", "/good/raw-conflict", "x", 1, false, &r);
	json_t *j = dtest_json(&r);
	is_int(r.status, 409, "a duplicate key from the driver -> 409");
	is_str(dtest_jstr(j, "error", "message", NULL), "conflict", "with the generic message");
	is_str(dtest_jstr(j, "error", "context", NULL), "default", "naming the context");
	ok(!strstr(r.body ? r.body : "", "fx_notes") && !strstr(r.body ? r.body : "", "secret-row") &&
		   !strstr(r.body ? r.body : "", "UNIQUE"),
	   "no table, value or driver text in the body");
	json_decref(j);
	dtest_resp_free(&r);
	ok(dtest_log_contains(&d, "fx_notes"), "the driver's message is in the log");

	dtest_http(c, d.url, "POST", "/good/raw-invalid", "x", 1, false, &r);
	j = dtest_json(&r);
	is_int(r.status, 400, "a datatype mismatch from the driver -> 400");
	is_str(dtest_jstr(j, "error", "message", NULL), "invalid argument", "with the generic message");
	json_decref(j);
	dtest_resp_free(&r);

	/* a service's own 409 and 400 keep their text */
	const char *u = "{\"name\":\"Dup\",\"email\":\"dup@robust.test\"}";
	dtest_http(c, d.url, "POST", "/users", u, strlen(u), false, &r);
	dtest_resp_free(&r);
	dtest_http(c, d.url, "POST", "/users", u, strlen(u), false, &r);
	j = dtest_json(&r);
	is_int(r.status, 409, "users' duplicate email -> 409");
	like_str(dtest_jstr(j, "error", "message", NULL), "dup@robust.test", "keeps the service's message");
	json_decref(j);
	dtest_resp_free(&r);
	dtest_http(c, d.url, "POST", "/users", "{\"name\":", 8, false, &r);
	j = dtest_json(&r);
	like_str(dtest_jstr(j, "error", "message", NULL), "malformed JSON", "a parse error keeps its message");
	json_decref(j);
	dtest_resp_free(&r);
	curl_easy_cleanup(c);
}

/* Raw bytes that are not UTF-8 in the request line. */
static void test_utf8(void)
{
	static const struct {
		const char *req;
		long status;
		const char *code, *what;
	} cases[] = {
		{"GET /users/\xff HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404, "not_found", "GET /users/\\xff"},
		{"GET /\xffx/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404, "not_found", "GET /\\xffx/1"},
		{"G\xffT /users/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 405, "method_not_allowed",
		 "method G\\xffT"},
		{"GET /profile/\xc3\x28 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404, "not_found",
		 "GET /profile/\\xc3("},
		{"GET /analytics/\xed\xa0\x80 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404, "not_found",
		 "GET /analytics/<surrogate>"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		dtest_resp r;
		dtest_raw(d.url, cases[i].req, strlen(cases[i].req), &r);
		json_t *j = dtest_json(&r);
		is_int(r.status, cases[i].status, "%s -> %ld", cases[i].what, cases[i].status);
		is_str(dtest_jstr(j, "error", "code", NULL), cases[i].code, "%s: a JSON error body", cases[i].what);
		is_str(r.ctype, "application/json", "%s: application/json", cases[i].what);
		json_decref(j);
		dtest_resp_free(&r);
	}
	ok(!dtest_log_contains(&d, "\xff"), "no raw invalid byte in the log");
}

/* A chunked body far over max_body: the daemon stops reading. */
static void test_chunked_flood(void)
{
	int fd = dtest_connect(d.url);
	ok(fd >= 0, "connected for a chunked flood");
	if (fd < 0)
		return;
	const char *head = "POST /users HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
			   "Content-Type: application/json\r\n\r\n";
	send(fd, head, strlen(head), MSG_NOSIGNAL);
	static char chunk[65536 + 16];
	int k = snprintf(chunk, sizeof chunk, "%x\r\n", 65536);
	memset(chunk + k, 'x', 65536);
	memcpy(chunk + k + 65536, "\r\n", 2);
	size_t clen = (size_t)k + 65536 + 2, sent = 0, total = (size_t)64 << 20;
	bool refused = false;
	double t0 = now_s();
	while (sent < total && now_s() - t0 < 20) {
		ssize_t n = send(fd, chunk, clen, MSG_NOSIGNAL);
		if (n < 0) {
			refused = errno == EPIPE || errno == ECONNRESET;
			if (!refused)
				diag("send: %s", strerror(errno));
			break;
		}
		sent += (size_t)n;
	}
	close(fd);
	ok(refused, "the daemon closed the connection after %.1f MiB of a 64 MiB chunked body (max_body 64 KiB)",
	   (double)sent / (1 << 20));
	CURL *c = dtest_curl();
	dtest_resp r;
	is_int(dtest_http(c, d.url, "GET", "/users?limit=1", NULL, 0, false, &r), 200, "and serves on");
	dtest_resp_free(&r);
	curl_easy_cleanup(c);
}

/* The histogram: +Inf and _count agree, buckets never exceed them. */
static void test_histogram(void)
{
	CURL *c = dtest_curl();
	dtest_resp r;
	dtest_http(c, d.url, "GET", "/_emhost/metrics", NULL, 0, false, &r);
	const char *m = r.body ? r.body : "";
	double inf = dtest_metric(m, "emhost_http_request_duration_seconds_bucket{service=\"users\",le=\"+Inf\"}");
	double count = dtest_metric(m, "emhost_http_request_duration_seconds_count{service=\"users\"}");
	double last = dtest_metric(m, "emhost_http_request_duration_seconds_bucket{service=\"users\",le=\"10\"}");
	ok(inf > 0 && inf == count, "+Inf bucket (%.0f) == _count (%.0f)", inf, count);
	ok(last >= 0 && last <= inf, "the largest bound's bucket (%.0f) is within +Inf", last);
	dtest_resp_free(&r);
	curl_easy_cleanup(c);
}

/* Wait for the daemon to exit, up to timeout_s: its status as dtest_stop gives it, or -1. */
static int wait_exit(double timeout_s, double *took)
{
	double t0 = now_s();
	while (now_s() - t0 < timeout_s) {
		int st;
		if (waitpid(d.pid, &st, WNOHANG) == d.pid) {
			d.pid = 0;
			*took = now_s() - t0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		sleep_s(0.01);
	}
	*took = now_s() - t0;
	return -1;
}

/* SIGTERM while handlers are stuck far past shutdown_timeout_ms. */
static void test_shutdown_bounded(void)
{
	if (start("10000", "threads = 2; shutdown_timeout_ms = 500;") != 0) {
		ok(0, "emhostd starts (shutdown test)");
		return;
	}
	sqlite3 *db = lock_db("app.db");
	poster p[6];
	for (int i = 0; i < 6; i++) {
		memset(&p[i], 0, sizeof p[i]);
		p[i].n = 200 + i;
		pthread_create(&p[i].th, NULL, post_user, &p[i]);
		if (i == 1)
			wait_queue(2, 0);
	}
	ok(wait_queue(2, 4), "2 handlers stuck on the lock (busy timeout 10 s), 4 requests queued");
	kill(d.pid, SIGTERM);
	double took;
	int st = wait_exit(15, &took);
	ok(st >= 0 && took < 2.0, "SIGTERM: exit %.2f s later, shutdown_timeout_ms = 500", took);
	is_int(st, 3, "exit status 3: handlers were abandoned");
	int refused = 0, dropped = 0;
	for (int i = 0; i < 6; i++) {
		pthread_join(p[i].th, NULL);
		refused += p[i].status == 503 && strcmp(p[i].code, "unavailable") == 0;
		dropped += p[i].status == 0;
	}
	is_int(refused, 4, "the 4 queued requests got 503 'unavailable' without running");
	is_int(dropped, 2, "the 2 stuck ones lost their connection");
	ok(dtest_log_contains(&d, "handler(s) still running"), "the log says handlers were abandoned");
	if (st != 3)
		dtest_log_tail(&d, 20);
	unlock_db(db);
}

/* A second SIGTERM ends a graceful wait at once. */
static void test_second_signal(void)
{
	if (start("10000", "threads = 2; shutdown_timeout_ms = 30000;") != 0) {
		ok(0, "emhostd starts (second signal test)");
		return;
	}
	sqlite3 *db = lock_db("app.db");
	poster p = {.n = 300};
	pthread_create(&p.th, NULL, post_user, &p);
	wait_queue(1, 0);
	kill(d.pid, SIGTERM);
	double took;
	int st = wait_exit(0.5, &took);
	is_int(st, -1, "after one SIGTERM it waits for the stuck handler");
	kill(d.pid, SIGTERM);
	st = wait_exit(10, &took);
	ok(st >= 0 && took < 1.0, "a second SIGTERM ends it at once (%.2f s)", took);
	is_int(st, 128 + SIGTERM, "killed by SIGTERM");
	ok(dtest_log_contains(&d, "second SIGTERM"), "the log says so");
	if (d.pid > 0)
		dtest_stop(&d, SIGKILL, 5000);
	pthread_join(p.th, NULL);
	unlock_db(db);
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
	dtest_tmpdir(dir, sizeof dir, "robust");
	dtest_service_dir(dir, svc, sizeof svc);
	/* a busy timeout longer than the test: stuck handlers stay stuck until the lock goes */
	if (start("10000", "threads = 2; max_body = 65536; shutdown_timeout_ms = 5000;") != 0) {
		ok(0, "emhostd starts");
		return done_testing();
	}
	ok(1, "emhostd starts on %s", d.url);
	test_stuck_workers();
	test_driver_messages();
	test_utf8();
	test_chunked_flood();
	test_histogram();
	int st = dtest_stop(&d, SIGTERM, 30000);
	is_int(st, 0, "SIGTERM with nothing in flight: exit 0");
	if (st != 0)
		dtest_log_tail(&d, 30);

	/* a short busy timeout: emh_web_flush's budget is what bounds a locked write */
	if (start("300", "threads = 2; shutdown_timeout_ms = 5000;") != 0) {
		ok(0, "emhostd starts (busy timeout 300 ms)");
		return done_testing();
	}
	test_locked();
	is_int(dtest_stop(&d, SIGTERM, 30000), 0, "and stops with status 0");

	test_shutdown_bounded();
	test_second_signal();
	int rc = done_testing();
	if (rc == 0)
		dtest_rmtree(dir);
	else
		diag("kept %s", dir);
	return rc;
}
