/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz_request.c: emhostd's request path without a socket
 * (emhd_call_service, core/daemon/call.c): routing, the scope, the bundled
 * services (users, analytics, profile) with their JSON bodies and query
 * arguments, the error bodies and the answer's cap, on in-memory SQLite
 * contexts.  The plugin and the modules are the build's own
 * ($EMH_BUILDDIR/plugins-build, services/.libs), loaded as emhostd loads
 * them.
 *
 * Input: the method on the first line, the raw URI on the second, then
 * "Name: value" header lines up to an empty line, then the body.  The query
 * is split into decoded arguments as libmicrohttpd does (%XX, '+').
 * FUZZ_VERBOSE=1 prints each answer (reproducing a finding by hand).
 */
#include "config.h"

#include <stdio.h>
#include <unistd.h>

#include <emhost/emhost.h>
#include <emhost/service.h>

#include "../../core/daemon/httpd.h"
#include "fuzz.h"

#define MAX_KV 64

static emh_host *host;
static emh_services *svcs;
static bool verbose;

static void quiet(void *ud, int level, const char *context, const char *msg)
{
	(void)ud, (void)level, (void)context, (void)msg;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	const char *b = getenv("EMH_BUILDDIR");
	char conf[4096], path[128];
	snprintf(conf, sizeof conf,
		 "plugin_dir = \"%s/plugins-build\";\n"
		 "service_dir = \"%s/services/.libs\";\n"
		 "contexts = (\n"
		 "  { name = \"default\"; driver = \"sqlite\"; path = \":memory:\"; schema = \"sync\"; },\n"
		 "  { name = \"analytics\"; driver = \"sqlite\"; path = \":memory:\"; schema = \"sync\"; }\n"
		 ");\n"
		 "services = ( { name = \"users\"; }, { name = \"analytics\"; }, { name = \"profile\"; } );\n",
		 b ? b : ".", b ? b : ".");
	snprintf(path, sizeof path, "/tmp/emh-fuzz-request-%ld.conf", (long)getpid());
	FILE *f = fopen(path, "w");
	if (!f || fputs(conf, f) < 0 || fclose(f) != 0) {
		fprintf(stderr, "fuzz_request: cannot write %s\n", path);
		exit(1);
	}
	emh_host_opts o = {.config_path = path, .log = quiet};
	emh_error err;
	if (emh_host_new(&o, &host, &err) != 0 || emh_services_new(host, &svcs, &err) != 0 ||
	    emh_services_load(svcs, &err) != 0) {
		fprintf(stderr, "fuzz_request: set-up failed (is EMH_BUILDDIR the build tree?): %s\n", err.message);
		exit(1);
	}
	unlink(path);
	verbose = getenv("FUZZ_VERBOSE") && strcmp(getenv("FUZZ_VERBOSE"), "1") == 0;
	return 0;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* %XX and '+' decoded in place. */
static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (*s == '+') {
			*o++ = ' ';
		} else if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
			*o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* The query of uri as decoded arguments in kv; its strings live in buf (a copy of the query). */
static size_t split_query(char *buf, emh_kv *kv)
{
	size_t n = 0;
	for (char *p = buf, *next; p && *p && n < MAX_KV; p = next) {
		next = strchr(p, '&');
		if (next)
			*next++ = '\0';
		char *eq = strchr(p, '=');
		if (eq)
			*eq++ = '\0';
		unescape(p);
		if (eq)
			unescape(eq);
		kv[n].name = p;
		kv[n].value = eq ? eq : "";
		n++;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the head (request line and headers) up to "\n\n", the body after it */
	const uint8_t *end = memmem(data, size, "\n\n", 2);
	size_t head_len = end ? (size_t)(end - data) : size;
	char *head = fuzz_str(data, head_len), *lines[MAX_KV + 2];
	if (!head)
		return 0;
	/* a request line, like a header, never holds a NUL: it would end the string anyway */
	size_t n = fuzz_lines(head, lines, MAX_KV + 2);
	if (n < 2) {
		free(head);
		return 0;
	}
	emh_kv hdrs[MAX_KV], args[MAX_KV];
	size_t nh = 0;
	for (size_t i = 2; i < n; i++) {
		char *colon = strchr(lines[i], ':');
		if (!colon)
			continue;
		*colon++ = '\0';
		hdrs[nh].name = lines[i];
		hdrs[nh].value = colon + strspn(colon, " \t");
		nh++;
	}
	const char *q = strchr(lines[1], '?');
	char *query = strdup(q ? q + 1 : "");
	/* the body as the daemon keeps it: NUL-terminated, NULL when empty */
	size_t body_len = end ? size - head_len - 2 : 0;
	char *body = body_len ? fuzz_str(end + 2, body_len) : NULL;
	emh_response *res = emh_response_new();
	if (query && res && (body || !body_len)) {
		emhd_call c = {
			.method = lines[0],
			.uri = lines[1],
			.args = args,
			.nargs = split_query(query, args),
			.headers = hdrs,
			.nheaders = nh,
			.body = body,
			.body_len = body_len,
		};
		emhd_call_service(svcs, &c, 1024 * 1024, res);
		size_t len;
		emh_response_body(res, &len);
		int st = emh_response_status(res);
		if (verbose)
			fprintf(stderr, "%s %s -> %d %.200s\n", c.method, c.uri, st, emh_response_body(res, NULL));
		if (st < 200 || st > 599 || len > 1024 * 1024)
			abort(); /* a status out of range, or an answer past the cap */
	}
	emh_response_free(res);
	free(body);
	free(query);
	free(head);
	return 0;
}
