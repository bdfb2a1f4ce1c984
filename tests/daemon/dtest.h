/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/dtest.h: start a real emhostd on a free port and talk to it
 * over HTTP with libcurl, for the daemon tests (HTTP, load, fault, shutdown).
 *
 * EMH_TEST_DAEMON_WRAP, when set, is a command put in front of emhostd
 * (through libtool --mode=execute), e.g. "valgrind --leak-check=full
 * --errors-for-leak-kinds=definite --error-exitcode=99".
 */
#ifndef EMH_TESTS_DTEST_H
#define EMH_TESTS_DTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <jansson.h>

typedef struct dtest_daemon {
	pid_t pid;
	char url[128];
	char dir[256]; /* where emhost.conf, the log and the ready file are */
	char log[300];
} dtest_daemon;

/* A new temporary directory (mkdtemp), path into buf. */
const char *dtest_tmpdir(char *buf, size_t cap, const char *tag);
/* Remove a directory tree made by the tests. */
void dtest_rmtree(const char *dir);

/* $EMH_BUILDDIR (or "."). */
const char *dtest_builddir(void);

/*
 * A service directory in dir/svc holding symlinks to the bundled modules
 * (services/.libs) and the fixture fx_good.so.  Its path into buf.
 */
const char *dtest_service_dir(const char *dir, char *buf, size_t cap);

/*
 * Write config to dir/emhost.conf and start emhostd -c it -l 127.0.0.1:0,
 * environment env (NULL-terminated "K=V" added to ours, may be NULL).  Waits
 * for its ready file (up to 60 s).  Returns 0, or -1 after printing the log
 * as diagnostics.
 */
int dtest_start(dtest_daemon *d, const char *dir, const char *config, const char *const *env);

/*
 * Send sig and wait up to timeout_ms for the daemon to exit.  Returns its
 * exit status, 128+signal when killed by one, or -1 after a timeout (then
 * it is killed).
 */
int dtest_stop(dtest_daemon *d, int sig, int timeout_ms);

/* True when the daemon's log contains needle. */
bool dtest_log_contains(const dtest_daemon *d, const char *needle);
/* Print the log's last lines as TAP diagnostics. */
void dtest_log_tail(const dtest_daemon *d, int lines);

typedef struct dtest_resp {
	long status; /* 0 when the request failed (connection refused, reset) */
	char *body;
	size_t len;
	char ctype[128];
	char location[128];
	char allow[128];
	char retry_after[32];
	char emh_after[256]; /* X-Emhost-After (read replicas' causal tokens) */
	char curl_error[CURL_ERROR_SIZE];
	double seconds;
} dtest_resp;

/* A curl handle for one thread (keep-alive across requests). */
CURL *dtest_curl(void);

/*
 * One request: method, base URL + path, optional body (len bytes; chunked
 * sends it with Transfer-Encoding: chunked).  Fills out (free with
 * dtest_resp_free).  Returns out->status.
 */
long dtest_http(CURL *c, const char *base, const char *method, const char *path, const char *body, size_t len,
		bool chunked, dtest_resp *out);
void dtest_resp_free(dtest_resp *r);
/*
 * Send len raw bytes (a whole request, however malformed) to the daemon at
 * base ("http://127.0.0.1:PORT") on a new connection and read the answer
 * until the server closes (send "Connection: close").  Fills status, body,
 * ctype, retry_after and emh_after of out.  Returns out->status (0 on failure).
 */
long dtest_raw(const char *base, const char *req, size_t len, dtest_resp *out);

/* A TCP connection to base, or -1. */
int dtest_connect(const char *base);

/* The body parsed as JSON, or NULL. */
json_t *dtest_json(const dtest_resp *r);
/*
 * dtest_http without a chunked body, and parsed: returns the status; *j (if
 * j) the JSON body or NULL; the response in out (free it), or freed when
 * out is NULL.
 */
long dtest_req(CURL *c, const char *base, const char *method, const char *path, const char *body, json_t **j,
	       dtest_resp *out);

/* The string at a path of object members ("error", "code", NULL), or NULL. */
const char *dtest_jstr(json_t *j, ...);
/* The integer at a path of object members, or -1. */
long long dtest_jint(json_t *j, ...);

/* Value of a Prometheus sample line that starts with prefix ("emhost_pool_max{context=\"default\"}"); -1 when absent. */
double dtest_metric(const char *text, const char *prefix);

#endif
