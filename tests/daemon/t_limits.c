/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/t_limits.c: emhostd's bounds on what one request costs
 * (issue 11, item 5), over real HTTP on SQLite:
 *
 *   - a user's name over its max_len is a 400 naming the field and the limit;
 *   - an answer over server.max_response is a 500 with a fixed body and a
 *     log line, never a partial body; a smaller one is answered whole;
 *   - four clients reading their large answers slowly (a byte a second,
 *     through a small receive buffer) hold no database connection: on a
 *     pool of 2, other requests keep succeeding meanwhile, and the pool
 *     shows no connection in use and no fork open.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../../services/common/entities.h"
#include "../tap.h"
#include "dtest.h"

#define NUSERS 1000
#define NSLOW 4
/* Between the answer to ?limit=700 (about 176 KB) and to ?limit=1000 (about 252 KB). */
#define MAX_RESPONSE (200 * 1024)

static dtest_daemon d;

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* NUSERS users with names and emails near their limits, written through the library. */
static void seed(const char *dir)
{
	char plug[1024], url[600];
	snprintf(plug, sizeof plug, "%s/plugins-build", dtest_builddir());
	snprintf(url, sizeof url, "EMH_CONTEXT_DEFAULT_URL=sqlite://%s/app.db", dir);
	const char *env[] = {url, "EMH_CONTEXT_DEFAULT_SCHEMA=sync", NULL};
	emh_host_opts o = {.plugin_dir = plug, .envp = env};
	emh_host *h;
	emh_em *em;
	emh_repo *r;
	emh_error err;
	if (emh_host_new(&o, &h, &err) || emh_host_register_entity(h, NULL, &user_entity, &err) ||
	    emh_host_fork(h, NULL, &em, &err) || emh_em_repo(em, &user_entity, &r, &err))
		bail("seed host: %s", err.message);
	char name[USER_NAME_MAX + 1];
	memset(name, 'n', USER_NAME_MAX);
	name[USER_NAME_MAX] = '\0';
	emh_em_begin(em, &err);
	for (int i = 0; i < NUSERS; i++) {
		user *u;
		char email[64];
		snprintf(email, sizeof email, "user%04d@example.com", i);
		if (emh_repo_new(r, (void **)&u, &err))
			bail("new user: %s", err.message);
		u->name = name;
		u->email = emh_em_strdup(em, email);
	}
	if (emh_em_flush(em, &err) || emh_em_commit(em, &err))
		bail("seed: %s", err.message);
	emh_em_close(em);
	emh_host_free(h);
}

/* A client that reads slowly: a small receive buffer, so the server cannot hand it everything at once. */
typedef struct slow {
	int fd;
	size_t got;
	char head[64];
} slow;

static bool slow_open(slow *s, const char *path)
{
	memset(s, 0, sizeof *s);
	s->fd = dtest_connect(d.url);
	if (s->fd < 0)
		return false;
	int small = 4096;
	setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	char req[256];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
	return write(s->fd, req, (size_t)n) == n;
}

/* Read one byte (waiting for it at most 10 s). */
static bool slow_byte(slow *s)
{
	struct pollfd p = {.fd = s->fd, .events = POLLIN};
	char c;
	if (poll(&p, 1, 10000) != 1 || read(s->fd, &c, 1) != 1)
		return false;
	if (s->got < sizeof s->head - 1)
		s->head[s->got] = c;
	s->got++;
	return true;
}

/* Read everything that is left; the total bytes read. */
static size_t slow_finish(slow *s)
{
	char buf[65536];
	ssize_t n;
	while ((n = read(s->fd, buf, sizeof buf)) > 0)
		s->got += (size_t)n;
	close(s->fd);
	return s->got;
}

static long get(CURL *c, const char *path, dtest_resp *r)
{
	return dtest_http(c, d.url, "GET", path, NULL, 0, false, r);
}

static void t_max_len(CURL *c)
{
	char body[512], name[301];
	memset(name, 'x', 300);
	name[300] = '\0';
	snprintf(body, sizeof body, "{\"name\":\"%s\",\"email\":\"long-name@example.com\"}", name);
	dtest_resp r;
	is_int(dtest_http(c, d.url, "POST", "/users", body, strlen(body), false, &r), 400,
	       "a name over its max_len -> 400");
	json_t *j = dtest_json(&r);
	like_str(dtest_jstr(j, "error", "message", NULL), "field 'name' is 300 bytes, longer than its max_len of 200",
		 "naming the field and the limit");
	json_decref(j);
	dtest_resp_free(&r);
}

static void t_max_response(CURL *c)
{
	dtest_resp r;
	is_int(get(c, "/users?limit=1000", &r), 500, "an answer over server.max_response -> 500");
	json_t *j = dtest_json(&r);
	is_str(dtest_jstr(j, "error", "message", NULL), "the answer is too large", "with a fixed body");
	ok(r.len < 1024, "not a part of the answer (%zu bytes)", r.len);
	json_decref(j);
	dtest_resp_free(&r);
	ok(dtest_log_contains(&d, "/users?limit=1000: the answer of ") &&
	   dtest_log_contains(&d, "is over server.max_response (204800 bytes)"), "and a log line naming the request");
	is_int(get(c, "/users?limit=700", &r), 200, "an answer under the cap is answered");
	json_t *u = dtest_json(&r);
	is_int(json_array_size(json_object_get(u, "users")), 700, "whole (%zu bytes)", r.len);
	json_decref(u);
	dtest_resp_free(&r);
}

static void t_slow_readers(CURL *c)
{
	slow s[NSLOW];
	int opened = 0;
	for (int i = 0; i < NSLOW; i++)
		opened += slow_open(&s[i], "/users?limit=700") && slow_byte(&s[i]);
	is_int(opened, NSLOW, "%d slow clients asked for a large answer and got its first byte", NSLOW);
	for (int i = 0; i < NSLOW; i++) /* the status line's start, to check it at the end */
		for (int k = 0; k < 11; k++)
			slow_byte(&s[i]);
	/* every second each slow client reads one more byte; meanwhile others are served */
	int served = 0, asked = 0;
	for (int sec = 0; sec < 3; sec++) {
		for (int k = 0; k < 8; k++) {
			dtest_resp r;
			char body[128];
			long st;
			if (k % 2) {
				st = get(c, "/users?limit=5", &r);
				served += st == 200;
			} else {
				snprintf(body, sizeof body, "{\"name\":\"Quick\",\"email\":\"quick%d-%d@example.com\"}", sec, k);
				st = dtest_http(c, d.url, "POST", "/users", body, strlen(body), false, &r);
				served += st == 201;
			}
			if (st != 200 && st != 201)
				diag("request %d.%d: %ld %s", sec, k, st, r.body ? r.body : r.curl_error);
			asked++;
			dtest_resp_free(&r);
		}
		sleep_ms(1000);
		for (int i = 0; i < NSLOW; i++)
			slow_byte(&s[i]);
	}
	is_int(served, asked, "every other request succeeded meanwhile, on a pool of 2");
	dtest_resp r;
	get(c, "/_emhost/metrics", &r);
	ok(r.body && dtest_metric(r.body, "emhost_pool_in_use{context=\"default\"}") == 0 &&
	   dtest_metric(r.body, "emhost_forks_open{context=\"default\"}") == 0,
	   "while they read, no connection is in use and no fork is open");
	ok(r.body && dtest_metric(r.body, "emhost_pool_timeouts_total{context=\"default\"}") == 0,
	   "no acquire timed out");
	dtest_resp_free(&r);
	int unread = 0;
	for (int i = 0; i < NSLOW; i++) {
		int pending = 0;
		ioctl(s[i].fd, FIONREAD, &pending);
		diag("slow client %d: %zu bytes read, %d waiting in its receive buffer", i, s[i].got, pending);
		unread += s[i].got < 32 && pending < 150000; /* most of the answer is still on its way */
	}
	is_int(unread, NSLOW, "the slow clients had read a few bytes of their answers");
	size_t whole = 0;
	for (int i = 0; i < NSLOW; i++) {
		bool status_ok = strncmp(s[i].head, "HTTP/1.1 200", 12) == 0;
		size_t got = slow_finish(&s[i]);
		if (!status_ok || got <= 150000)
			diag("slow client %d: %zu bytes in all, starting '%.12s'", i, got, s[i].head);
		whole += status_ok && got > 150000;
	}
	is_int(whole, NSLOW, "and then got them whole (200, over 150 KB each)");
}

int main(void)
{
	char dir[256], svc[512], conf[4096], plug[1024], probe[1200];
	snprintf(plug, sizeof plug, "%s/plugins-build", dtest_builddir());
	snprintf(probe, sizeof probe, "%s/sqlite.so", plug);
	if (access(probe, R_OK) != 0) {
		printf("1..0 # SKIP sqlite driver not built\n");
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	dtest_tmpdir(dir, sizeof dir, "limits");
	dtest_service_dir(dir, svc, sizeof svc);
	seed(dir);
	snprintf(conf, sizeof conf,
		 "plugin_dir = \"%s\";\n"
		 "service_dir = \"%s\";\n"
		 "contexts = (\n"
		 "  { name = \"default\"; driver = \"sqlite\"; path = \"%s/app.db\"; schema = \"sync\";\n"
		 "    pool = { max = 2; acquire_timeout_ms = 2000; }; }\n"
		 ");\n"
		 "services = ( { name = \"users\"; } );\n"
		 "server = { threads = 4; max_response = %d; shutdown_timeout_ms = 5000; };\n",
		 plug, svc, dir, MAX_RESPONSE);
	if (dtest_start(&d, dir, conf, NULL) != 0) {
		ok(0, "emhostd starts");
		return done_testing();
	}
	ok(1, "emhostd starts on %s", d.url);
	CURL *c = dtest_curl();
	t_max_len(c);
	t_max_response(c);
	t_slow_readers(c);
	curl_easy_cleanup(c);
	int st = dtest_stop(&d, SIGTERM, 30000);
	is_int(st, 0, "emhostd exits 0");
	if (st != 0)
		dtest_log_tail(&d, 30);
	int rc = done_testing();
	if (rc == 0)
		dtest_rmtree(dir);
	else
		diag("kept %s", dir);
	return rc;
}
