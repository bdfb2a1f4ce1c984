/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/t_edges.c: the service API's edges as a third-party service
 * meets them through emhostd -- a status that is not one (500, logged), a
 * Content-Type added as a header (one header, replaced), '+' and %2B in
 * query arguments, not-found answers not counted as errors -- and request
 * ids: taken from X-Request-Id when valid, generated otherwise, echoed on
 * every answer, seen by the handler and on every log line of the request.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../tap.h"
#include "dtest.h"

static dtest_daemon d;

/* A GET with extra header lines ("Name: value\r\n"...), on its own
 * connection; the raw answer (headers and body) into a malloc'd string. */
static char *raw_get(const char *path, const char *headers)
{
	char req[2048];
	snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n", path,
		 headers ? headers : "");
	int fd = dtest_connect(d.url);
	if (fd < 0)
		return NULL;
	size_t len = strlen(req), sent = 0;
	while (sent < len) {
		ssize_t k = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
		if (k <= 0)
			break;
		sent += (size_t)k;
	}
	size_t n = 0, cap = 8192;
	char *buf = malloc(cap);
	for (ssize_t k; buf && (k = recv(fd, buf + n, cap - n - 1, 0)) > 0;) {
		n += (size_t)k;
		if (cap - n < 1024) {
			char *b = realloc(buf, cap * 2);
			if (!b)
				break;
			buf = b;
			cap *= 2;
		}
	}
	close(fd);
	if (buf)
		buf[n] = '\0';
	return buf;
}

static int status_of(const char *raw)
{
	int st = 0;
	return raw && sscanf(raw, "HTTP/1.%*d %d", &st) == 1 ? st : 0;
}

/* How many header lines called name, and the last one's value into val. */
static int header_count(const char *raw, const char *name, char *val, size_t cap)
{
	int count = 0;
	size_t n = strlen(name);
	const char *end = raw ? strstr(raw, "\r\n\r\n") : NULL;
	if (val && cap)
		val[0] = '\0';
	for (const char *l = raw ? strstr(raw, "\r\n") : NULL; l && l < end; l = strstr(l + 2, "\r\n")) {
		const char *h = l + 2;
		if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
			count++;
			const char *v = h + n + 1;
			while (*v == ' ')
				v++;
			if (val)
				snprintf(val, cap, "%.*s", (int)strcspn(v, "\r\n"), v);
		}
	}
	return count;
}

static const char *body_of(const char *raw)
{
	const char *b = raw ? strstr(raw, "\r\n\r\n") : NULL;
	return b ? b + 4 : "";
}

static void test_edges(void)
{
	char *raw = raw_get("/good/status?code=999", NULL);
	is_int(status_of(raw), 500, "a handler answering status 999 sends 500 (a server bug, not the client's)");
	like_str(body_of(raw), "\"internal\"", "with the internal error body");
	ok(dtest_log_contains(&d, "answered HTTP status 999, which is not a final answer's (200-599): sent 500"),
	   "and the log says which status the service set");
	free(raw);
	/* a 1xx is no final answer: sent as one, it left an HTTP/1.1 client
	 * waiting for the real one until the idle timeout */
	raw = raw_get("/good/status?code=102", NULL);
	is_int(status_of(raw), 500, "a handler answering status 102 sends 500, not an interim answer");
	ok(dtest_log_contains(&d, "answered HTTP status 102, which is not a final answer's (200-599): sent 500"),
	   "and the log says so");
	free(raw);
	raw = raw_get("/good/status?code=101", NULL);
	is_int(status_of(raw), 500, "a handler answering status 101 sends 500, not a protocol switch");
	free(raw);
	raw = raw_get("/good/status?code=201", NULL);
	is_int(status_of(raw), 201, "a real status goes through as set");
	free(raw);

	char val[256];
	raw = raw_get("/good/ctype", NULL);
	is_int(header_count(raw, "Content-Type", val, sizeof val), 1,
	       "a Content-Type added as a header is sent once");
	is_str(val, "application/x-fx", "and replaces the content type set before");
	free(raw);

	raw = raw_get("/good/arg?v=ada+shop@example.com", NULL);
	is_str(body_of(raw), "[ada shop@example.com]", "'+' in a query argument is a space (form decoding)");
	free(raw);

	/* every argument and header reaches the handler, however many: past
	 * 64 they were dropped, the request's own id with them */
	char path[1024], hdrs[1024];
	size_t off = (size_t)snprintf(path, sizeof path, "/good/arg?");
	for (int i = 0; i < 80; i++)
		off += (size_t)snprintf(path + off, sizeof path - off, "a%d=%d&", i, i);
	snprintf(path + off, sizeof path - off, "v=hello");
	raw = raw_get(path, NULL);
	is_str(body_of(raw), "[hello]", "an argument after 80 others reaches the handler");
	free(raw);
	off = 0;
	for (int i = 0; i < 80; i++)
		off += (size_t)snprintf(hdrs + off, sizeof hdrs - off, "X-F%d: %d\r\n", i, i);
	snprintf(hdrs + off, sizeof hdrs - off, "X-Request-Id: many-headers-1\r\n");
	raw = raw_get("/good/reqid", hdrs);
	is_str(body_of(raw), "many-headers-1", "the request id after 80 other headers reaches the handler");
	free(raw);
	raw = raw_get("/good/arg?v=ada%2Bshop%40example.com", NULL);
	is_str(body_of(raw), "[ada+shop@example.com]", "%%2B is how a plus is sent");
	free(raw);

	raw = raw_get("/users/987654", NULL);
	is_int(status_of(raw), 404, "a lookup of a missing user is 404");
	free(raw);

	/* the path below the service reaches it whole, short (copied on the stack) or long */
	for (size_t len = 254; len <= 300; len += 46) {
		char seg[320], path[400], want[400];
		memset(seg, 'p', len);
		seg[len] = '\0';
		snprintf(path, sizeof path, "/good/%s?q=1", seg);
		snprintf(want, sizeof want, "no route '/%s'", seg);
		raw = raw_get(path, NULL);
		ok(status_of(raw) == 404 && strstr(body_of(raw), want), "a path of %zu bytes below the service, whole",
		   len + 1);
		free(raw);
	}
	dtest_resp m;
	CURL *c = dtest_curl();
	dtest_http(c, d.url, "GET", "/_emhost/metrics", NULL, 0, false, &m);
	ok(m.body && !strstr(m.body, "kind=\"EMH_ENOTFOUND\""), "not-found answers are not counted in emhost_errors_total");
	ok(m.body && strstr(m.body, "emhost_http_requests_total{service=\"users\",code=\"404\"}"),
	   "they are in the request counts, as 404");
	dtest_resp_free(&m);
	curl_easy_cleanup(c);
}

/* A generated id: "%08x-%llx", lower-case hex. */
static bool gen_id_ok(const char *v)
{
	size_t n = strlen(v);
	if (n < 10 || n > 25 || v[8] != '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (i != 8 && !((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f')))
			return false;
	return v[9] != '0' || n == 10;
}

static void test_request_ids(void)
{
	char val[256], val2[256];
	char *raw = raw_get("/good/reqid", "X-Request-Id: trace-7f3a.42\r\n");
	is_int(header_count(raw, "X-Request-Id", val, sizeof val), 1, "X-Request-Id is echoed once");
	is_str(val, "trace-7f3a.42", "the client's id, as sent");
	is_str(body_of(raw), "trace-7f3a.42", "the handler sees it");
	ok(dtest_log_contains(&d, "req=trace-7f3a.42: service 'good': fx saw request trace-7f3a.42"),
	   "a line the service logs during the request carries the id");
	free(raw);

	raw = raw_get("/good/reqid", NULL);
	header_count(raw, "X-Request-Id", val, sizeof val);
	ok(strlen(val) > 9 && val[8] == '-', "without one, an id is generated (%s)", val);
	is_str(body_of(raw), val, "the handler sees the generated id");
	free(raw);
	raw = raw_get("/good/reqid", NULL);
	header_count(raw, "X-Request-Id", val2, sizeof val2);
	ok(val2[0] && strcmp(val, val2) != 0, "each request gets its own (%s, %s)", val, val2);
	ok(gen_id_ok(val) && gen_id_ok(val2) && strncmp(val, val2, 9) == 0 &&
	   strtoull(val2 + 9, NULL, 16) > strtoull(val + 9, NULL, 16),
	   "generated: 8 hex digits of the run, '-', a hex counter that grows (%s, %s)", val, val2);
	free(raw);

	char longid[300], hdr[400];
	memset(longid, 'y', 128);
	longid[128] = '\0';
	snprintf(hdr, sizeof hdr, "X-Request-Id: %s\r\n", longid);
	raw = raw_get("/good/reqid", hdr);
	header_count(raw, "X-Request-Id", val, sizeof val);
	is_str(val, longid, "an id of 128 characters is kept whole");
	free(raw);
	memset(longid, 'x', 200);
	longid[200] = '\0';
	snprintf(hdr, sizeof hdr, "X-Request-Id: %s\r\n", longid);
	raw = raw_get("/good/reqid", hdr);
	header_count(raw, "X-Request-Id", val, sizeof val);
	ok(strlen(val) < 100 && val[8] == '-', "an id over 128 characters is replaced by a generated one");
	free(raw);
	raw = raw_get("/good/reqid", "X-Request-Id: two words\r\n");
	header_count(raw, "X-Request-Id", val, sizeof val);
	ok(strcmp(val, "two words") != 0 && val[8] == '-', "so is one with a space");
	free(raw);

	raw = raw_get("/good/status?code=999", "X-Request-Id: bad-status-1\r\n");
	free(raw);
	ok(dtest_log_contains(&d, "req=bad-status-1: /good/status?code=999: service 'good' answered HTTP status 999"),
	   "the daemon's own line about the request carries the id");
	raw = raw_get("/nosuchservice/x", "X-Request-Id: unrouted-1\r\n");
	is_int(header_count(raw, "X-Request-Id", val, sizeof val), 1, "answers that reach no service carry it too");
	is_str(val, "unrouted-1", "the same id");
	free(raw);
	raw = raw_get("/_emhost/health", "X-Request-Id: health-1\r\n");
	header_count(raw, "X-Request-Id", val, sizeof val);
	is_str(val, "health-1", "and so do health answers");
	free(raw);
}

int main(void)
{
	char dir[256], svc[512], conf[4096], plug[1024], probe[1200];
	dtest_tmpdir(dir, sizeof dir, "edges");
	dtest_service_dir(dir, svc, sizeof svc);
	snprintf(plug, sizeof plug, "%s/plugins-build", dtest_builddir());
	snprintf(probe, sizeof probe, "%s/sqlite.so", plug);
	if (access(probe, R_OK) != 0) {
		printf("1..0 # SKIP sqlite driver not built\n");
		dtest_rmtree(dir);
		return 0;
	}
	snprintf(conf, sizeof conf,
		 "plugin_dir = \"%s\";\n"
		 "service_dir = \"%s\";\n"
		 "contexts = (\n"
		 "  { name = \"default\"; driver = \"sqlite\"; path = \"%s/app.db\"; schema = \"sync\"; },\n"
		 "  { name = \"analytics\"; driver = \"sqlite\"; path = \"%s/analytics.db\"; schema = \"sync\"; }\n"
		 ");\n"
		 "services = ( { name = \"users\"; }, { name = \"good\"; module = \"fx_good\"; } );\n"
		 "server = { threads = 2; };\n",
		 plug, svc, dir, dir);
	if (dtest_start(&d, dir, conf, NULL) != 0) {
		ok(0, "emhostd starts");
		return done_testing();
	}
	ok(1, "emhostd starts on %s", d.url);
	test_edges();
	test_request_ids();
	int st = dtest_stop(&d, SIGTERM, 30000);
	is_int(st, 0, "SIGTERM stops emhostd with status 0");
	int rc = done_testing();
	if (rc == 0)
		dtest_rmtree(dir);
	else
		diag("kept %s for inspection", dir);
	return rc;
}
