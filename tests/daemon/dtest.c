/* SPDX-License-Identifier: MIT */
/* tests/daemon/dtest.c: start/stop a real emhostd and speak HTTP to it (see dtest.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tap.h"
#include "dtest.h"

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

const char *dtest_builddir(void)
{
	const char *b = getenv("EMH_BUILDDIR");
	return b && *b ? b : ".";
}

const char *dtest_tmpdir(char *buf, size_t cap, const char *tag)
{
	snprintf(buf, cap, "/tmp/emh-%s-XXXXXX", tag);
	if (!mkdtemp(buf))
		bail("mkdtemp %s: %s", buf, strerror(errno));
	chmod(buf, 0755);
	return buf;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

void dtest_rmtree(const char *dir)
{
	if (dir && strncmp(dir, "/tmp/emh-", 9) == 0)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *dtest_service_dir(const char *dir, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/svc", dir);
	mkdir(buf, 0755);
	static const char *const mods[][2] = {
		{"services/.libs", "users"},         {"services/.libs", "analytics"},
		{"services/.libs", "profile"},       {"tests/daemon/.libs", "fx_good"},
		{"services/.libs", "shop"},
	};
	for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) {
		char src[1024], dst[1024];
		snprintf(src, sizeof src, "%s/%s/%s.so", dtest_builddir(), mods[i][0], mods[i][1]);
		if (src[0] != '/') {
			char cwd[512];
			if (getcwd(cwd, sizeof cwd))
				snprintf(src, sizeof src, "%s/%s/%s/%s.so", cwd, dtest_builddir(), mods[i][0], mods[i][1]);
		}
		snprintf(dst, sizeof dst, "%s/%s.so", buf, mods[i][1]);
		unlink(dst);
		if (symlink(src, dst) != 0)
			diag("symlink %s: %s", dst, strerror(errno));
	}
	return buf;
}

int dtest_start(dtest_daemon *d, const char *dir, const char *config, const char *const *env)
{
	memset(d, 0, sizeof *d);
	snprintf(d->dir, sizeof d->dir, "%s", dir);
	char conf[512], ready[512], bin[1024];
	snprintf(conf, sizeof conf, "%s/emhost.conf", dir);
	snprintf(ready, sizeof ready, "%s/ready", dir);
	snprintf(d->log, sizeof d->log, "%s/emhostd.log", dir);
	snprintf(bin, sizeof bin, "%s/core/daemon/emhostd", dtest_builddir());
	unlink(ready);
	FILE *f = fopen(conf, "w");
	if (!f) {
		diag("cannot write %s: %s", conf, strerror(errno));
		return -1;
	}
	fputs(config, f);
	fclose(f);
	const char *wrap = getenv("EMH_TEST_DAEMON_WRAP");
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		diag("fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		for (size_t i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		if (wrap && *wrap) {
			char cmd[4096];
			snprintf(cmd, sizeof cmd, "exec %s/libtool --mode=execute %s %s -c %s -l 127.0.0.1:0 --ready-file %s",
				 dtest_builddir(), wrap, bin, conf, ready);
			execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		} else {
			execl(bin, "emhostd", "-c", conf, "-l", "127.0.0.1:0", "--ready-file", ready, (char *)NULL);
		}
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	d->pid = pid;
	for (int waited = 0; waited < 60000; waited += 20) {
		FILE *r = fopen(ready, "r");
		if (r) {
			char line[128] = "";
			if (fgets(line, sizeof line, r)) {
				line[strcspn(line, "\r\n")] = '\0';
				snprintf(d->url, sizeof d->url, "%s", line);
			}
			fclose(r);
			if (d->url[0])
				return 0;
		}
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			d->pid = 0;
			diag("emhostd exited before it was ready (status %d)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			dtest_log_tail(d, 20);
			return -1;
		}
		sleep_ms(20);
	}
	diag("emhostd not ready after 60 s");
	dtest_log_tail(d, 20);
	dtest_stop(d, SIGKILL, 5000);
	return -1;
}

int dtest_stop(dtest_daemon *d, int sig, int timeout_ms)
{
	if (d->pid <= 0)
		return -1;
	kill(d->pid, sig);
	int st;
	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		pid_t r = waitpid(d->pid, &st, WNOHANG);
		if (r == d->pid) {
			d->pid = 0;
			if (WIFEXITED(st))
				return WEXITSTATUS(st);
			return 128 + WTERMSIG(st);
		}
		sleep_ms(10);
	}
	kill(d->pid, SIGKILL);
	waitpid(d->pid, &st, 0);
	d->pid = 0;
	return -1;
}

bool dtest_log_contains(const dtest_daemon *d, const char *needle)
{
	FILE *f = fopen(d->log, "r");
	if (!f)
		return false;
	char line[4096];
	bool found = false;
	while (!found && fgets(line, sizeof line, f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

void dtest_log_tail(const dtest_daemon *d, int lines)
{
	FILE *f = fopen(d->log, "r");
	if (!f)
		return;
	char **ring = calloc((size_t)lines, sizeof *ring);
	char line[4096];
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		free(ring[n % lines]);
		ring[n % lines] = strdup(line);
		n++;
	}
	fclose(f);
	for (int i = n > lines ? n - lines : 0; i < n; i++) {
		char *l = ring[i % lines];
		l[strcspn(l, "\n")] = '\0';
		diag("log: %s", l);
	}
	for (int i = 0; i < lines; i++)
		free(ring[i]);
	free(ring);
}

/* ---- HTTP ---- */

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_ALL); }

CURL *dtest_curl(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, curl_init_once);
	return curl_easy_init();
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	dtest_resp *r = ud;
	size_t len = size * n;
	char *b = realloc(r->body, r->len + len + 1);
	if (!b)
		return 0;
	r->body = b;
	memcpy(r->body + r->len, p, len);
	r->len += len;
	r->body[r->len] = '\0';
	return len;
}

static void header_value(const char *line, size_t len, const char *name, char *out, size_t cap)
{
	size_t n = strlen(name);
	if (len <= n + 1 || strncasecmp(line, name, n) != 0 || line[n] != ':')
		return;
	const char *v = line + n + 1;
	while (*v == ' ')
		v++;
	size_t vl = len - (size_t)(v - line);
	while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
		vl--;
	snprintf(out, cap, "%.*s", (int)vl, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	dtest_resp *r = ud;
	size_t len = size * n;
	header_value(p, len, "Content-Type", r->ctype, sizeof r->ctype);
	header_value(p, len, "Location", r->location, sizeof r->location);
	header_value(p, len, "Allow", r->allow, sizeof r->allow);
	header_value(p, len, "Retry-After", r->retry_after, sizeof r->retry_after);
	header_value(p, len, "X-Emhost-After", r->emh_after, sizeof r->emh_after);
	return len;
}

typedef struct upload {
	const char *p;
	size_t left;
} upload;

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
	upload *u = ud;
	size_t k = size * n < u->left ? size * n : u->left;
	if (k > 4096)
		k = 4096; /* several chunks */
	memcpy(buf, u->p, k);
	u->p += k;
	u->left -= k;
	return k;
}

long dtest_http(CURL *c, const char *base, const char *method, const char *path, const char *body, size_t len,
		bool chunked, dtest_resp *out)
{
	memset(out, 0, sizeof *out);
	char url[2048];
	snprintf(url, sizeof url, "%s%s", base, path);
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, out->curl_error);
	struct curl_slist *hdrs = NULL;
	upload up = {body, len};
	if (body && chunked) {
		hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, &up);
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	} else if (body) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	} else if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L); /* no body follows the headers */
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	}
	if (hdrs)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	CURLcode cc = curl_easy_perform(c);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
		curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &out->seconds);
	} else {
		out->status = 0;
		if (!out->curl_error[0])
			snprintf(out->curl_error, sizeof out->curl_error, "%s", curl_easy_strerror(cc));
	}
	curl_slist_free_all(hdrs);
	return out->status;
}

int dtest_connect(const char *base)
{
	const char *hp = strstr(base, "://");
	hp = hp ? hp + 3 : base;
	char host[128];
	snprintf(host, sizeof host, "%s", hp);
	char *colon = strrchr(host, ':');
	if (!colon)
		return -1;
	*colon = '\0';
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = {30, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

long dtest_raw(const char *base, const char *req, size_t len, dtest_resp *out)
{
	memset(out, 0, sizeof *out);
	int fd = dtest_connect(base);
	if (fd < 0) {
		snprintf(out->curl_error, sizeof out->curl_error, "connect: %s", strerror(errno));
		return 0;
	}
	size_t sent = 0;
	while (sent < len) {
		ssize_t k = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
		if (k <= 0)
			break;
		sent += (size_t)k;
	}
	char *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			char *b = realloc(buf, cap);
			if (!b)
				break;
			buf = b;
		}
		ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	if (!buf || n == 0) {
		free(buf);
		snprintf(out->curl_error, sizeof out->curl_error, "no answer");
		return 0;
	}
	buf[n] = '\0';
	int st = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &st) != 1)
		st = 0;
	char *hend = strstr(buf, "\r\n\r\n");
	if (hend) {
		for (char *line = strstr(buf, "\r\n"); line && line < hend; line = strstr(line + 2, "\r\n")) {
			const char *l = line + 2;
			size_t ll = (size_t)(strstr(l, "\r\n") - l);
			header_value(l, ll, "Content-Type", out->ctype, sizeof out->ctype);
			header_value(l, ll, "Retry-After", out->retry_after, sizeof out->retry_after);
			header_value(l, ll, "Allow", out->allow, sizeof out->allow);
			header_value(l, ll, "X-Emhost-After", out->emh_after, sizeof out->emh_after);
		}
		out->len = n - (size_t)(hend + 4 - buf);
		out->body = malloc(out->len + 1);
		if (out->body) {
			memcpy(out->body, hend + 4, out->len);
			out->body[out->len] = '\0';
		}
	}
	free(buf);
	out->status = st;
	return st;
}

void dtest_resp_free(dtest_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

json_t *dtest_json(const dtest_resp *r)
{
	if (!r->body)
		return NULL;
	return json_loadb(r->body, r->len, 0, NULL);
}

long dtest_req(CURL *c, const char *base, const char *method, const char *path, const char *body, json_t **j,
	       dtest_resp *out)
{
	dtest_resp local;
	dtest_resp *r = out ? out : &local;
	dtest_http(c, base, method, path, body, body ? strlen(body) : 0, false, r);
	if (j)
		*j = dtest_json(r);
	long st = r->status;
	if (!out)
		dtest_resp_free(r);
	return st;
}

static json_t *jpath(json_t *j, va_list ap)
{
	const char *k;
	while (j && (k = va_arg(ap, const char *)) != NULL)
		j = json_object_get(j, k);
	return j;
}

const char *dtest_jstr(json_t *j, ...)
{
	va_list ap;
	va_start(ap, j);
	json_t *v = jpath(j, ap);
	va_end(ap);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

long long dtest_jint(json_t *j, ...)
{
	va_list ap;
	va_start(ap, j);
	json_t *v = jpath(j, ap);
	va_end(ap);
	return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

double dtest_metric(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);
	for (const char *p = text; p && *p;) {
		if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -1;
}
