/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/t_reload.c: SIGHUP reloads emhostd while 8 clients keep
 * sending requests, none of which may fail: a reload adding a context on a
 * driver copied into the plugin directory after start and another on
 * SQLite, removing a third and growing a pool; then reloads the daemon
 * must refuse (a syntax error, a context a service uses) while it goes on
 * serving the configuration it has.  emhostd speaks systemd's notify
 * protocol to a socket the test binds: READY=1 at start, RELOADING=1 with
 * MONOTONIC_USEC and READY=1 again around each reload, STOPPING=1 on
 * SIGTERM.  A context added and removed by 40 reloads leaves no health
 * prober thread behind.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../tap.h"
#include "dtest.h"

#define NCLIENTS 8

static dtest_daemon d;
static char dir[256], plug[512], svc[512];
static _Atomic bool load_over;
static _Atomic long requests, failed;
static int notify_fd = -1;

/* GETs a client repeats: the users service on the default context, the
 * fixture on analytics; 200 and 404 are answers, anything else a failure. */
static void *client(void *arg)
{
	int cn = (int)(intptr_t)arg;
	CURL *c = dtest_curl();
	dtest_resp r;
	for (long i = 0; !atomic_load(&load_over); i++) {
		const char *path = (i + cn) % 3 == 0 ? "/good/count?ctx=analytics" : (i + cn) % 3 == 1 ? "/users/1" : "/users";
		dtest_http(c, d.url, "GET", path, NULL, 0, false, &r);
		atomic_fetch_add(&requests, 1);
		if (r.status != 200 && r.status != 404 && atomic_fetch_add(&failed, 1) < 10)
			diag("client %d: GET %s: status %ld %s %.200s", cn, path, r.status, r.curl_error,
			     r.body ? r.body : "");
		dtest_resp_free(&r);
		usleep(500); /* a steady load, not a CPU hog on a shared machine */
	}
	curl_easy_cleanup(c);
	return NULL;
}

/* The configuration: the services' two contexts, then extra_contexts. */
static const char *config_text(char *text, size_t cap, const char *extra_contexts, const char *pool_max)
{
	snprintf(text, cap,
		 "plugin_dir = \"%s\";\n"
		 "service_dir = \"%s\";\n"
		 "default_context = \"default\";\n"
		 "contexts = (\n"
		 "  { name = \"default\"; driver = \"sqlite\"; path = \"%s/app.db\"; schema = \"sync\"; pool = { max = %s; }; },\n"
		 "  { name = \"analytics\"; driver = \"sqlite\"; path = \"%s/analytics.db\"; schema = \"sync\"; }%s\n"
		 ");\n"
		 "services = ( { name = \"users\"; }, { name = \"good\"; module = \"fx_good\"; } );\n"
		 "server = { threads = 4; };\n",
		 plug, svc, dir, pool_max, dir, extra_contexts);
	return text;
}

/* Replace the daemon's configuration file (mode "w") or append to it ("a"). */
static void write_config(const char *mode, const char *text)
{
	char path[512];
	snprintf(path, sizeof path, "%s/emhost.conf", dir);
	FILE *f = fopen(path, mode);
	if (!f)
		bail("cannot write %s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

/* The next notification, or "" after 60 s. */
static const char *notification(char *buf, size_t cap)
{
	ssize_t n = recv(notify_fd, buf, cap - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* Wait (up to 60 s) until the log holds needle. */
static bool log_wait(const char *needle)
{
	for (int i = 0; i < 6000; i++) {
		if (dtest_log_contains(&d, needle))
			return true;
		usleep(10000);
	}
	return false;
}

static void copy_file(const char *from, const char *to)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "cp '%s' '%s' && chmod 755 '%s'", from, to, to);
	if (system(cmd) != 0)
		bail("cannot run: %s", cmd);
}

/*
 * The thread stacks mapped in process pid, -1 when unknown: anonymous
 * read-write mappings of a thread stack's size (stack_kb less its guard
 * page; up to 64 kB of slack).  A thread's stack stays mapped until the
 * thread is joined.  Counted by shape rather than read from VmSize, which
 * also grows by 64 MB whenever glibc's malloc opens another arena for a
 * thread that met contention.
 */
static long stacks_mapped(pid_t pid, long stack)
{
	char path[64], line[512];
	snprintf(path, sizeof path, "/proc/%ld/maps", (long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long n = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi, inode;
		char perms[8], dev[16];
		unsigned long long off;
		int name = 0;
		if (sscanf(line, "%lx-%lx %7s %llx %15s %lu %n", &lo, &hi, perms, &off, dev, &inode, &name) < 6)
			continue;
		long kb = (long)((hi - lo) / 1024);
		bool anon = inode == 0 && (name == 0 || line[name] == '\n' || line[name] == '\0');
		n += anon && strcmp(perms, "rw-p") == 0 && kb <= stack && kb >= stack - 64;
	}
	fclose(f);
	return n;
}

/* The stack size of a new thread in kB (the daemon's: it inherits the limits). */
static long stack_kb(void)
{
	pthread_attr_t a;
	size_t sz = 0;
	pthread_attr_init(&a);
	pthread_attr_getstacksize(&a, &sz);
	pthread_attr_destroy(&a);
	return (long)(sz / 1024);
}

static char *get(const char *path, long *status)
{
	CURL *c = dtest_curl();
	dtest_resp r;
	*status = dtest_http(c, d.url, "GET", path, NULL, 0, false, &r);
	curl_easy_cleanup(c);
	return r.body;
}

int main(void)
{
	char src[1200], dst[1200], buf[512];
	dtest_tmpdir(dir, sizeof dir, "reload");
	dtest_service_dir(dir, svc, sizeof svc);
	snprintf(src, sizeof src, "%s/plugins-build/sqlite.so", dtest_builddir());
	if (access(src, R_OK) != 0) {
		printf("1..0 # SKIP sqlite driver not built\n");
		dtest_rmtree(dir);
		return 0;
	}
	/* a plugin directory of its own, where a driver is dropped later */
	snprintf(plug, sizeof plug, "%s/plugins", dir);
	mkdir(plug, 0755);
	snprintf(dst, sizeof dst, "%s/sqlite.so", plug);
	copy_file(src, dst);

	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(dir) + sizeof "/notify" > sizeof sa.sun_path)
		bail("temporary directory '%s' is too long for a socket path", dir);
	memcpy(sa.sun_path, dir, strlen(dir));
	memcpy(sa.sun_path + strlen(dir), "/notify", sizeof "/notify");
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {60, 0};
	setsockopt(notify_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (notify_fd < 0 || bind(notify_fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		bail("notify socket %s: %s", sa.sun_path, strerror(errno));
	char env_notify[256];
	snprintf(env_notify, sizeof env_notify, "NOTIFY_SOCKET=%s", sa.sun_path);
	const char *env[] = {env_notify, NULL};

	char extra[1024], conf[4096];
	snprintf(extra, sizeof extra, ",\n  { name = \"extra\"; driver = \"sqlite\"; path = \"%s/extra.db\"; }", dir);
	config_text(conf, sizeof conf, extra, "4");
	if (dtest_start(&d, dir, conf, env) != 0) {
		ok(0, "emhostd starts");
		return done_testing();
	}
	ok(1, "emhostd starts on %s", d.url);
	like_str(notification(buf, sizeof buf), "READY=1", "it tells systemd it is ready");

	pthread_t th[NCLIENTS];
	for (int i = 0; i < NCLIENTS; i++)
		pthread_create(&th[i], NULL, client, (void *)(intptr_t)i);
	while (atomic_load(&requests) < 200)
		usleep(1000);

	/* ---- a reload that changes things ---- */
	snprintf(src, sizeof src, "%s/tests/fixtures/.libs/memdoc.so", dtest_builddir());
	snprintf(dst, sizeof dst, "%s/memdoc.so", plug);
	copy_file(src, dst);
	snprintf(extra, sizeof extra,
		 ",\n  { name = \"tenant\"; driver = \"sqlite\"; path = \"%s/tenant.db\"; },\n"
		 "  { name = \"docs\"; driver = \"memdoc\"; }",
		 dir);
	write_config("w", config_text(conf, sizeof conf, extra, "8"));
	long before = atomic_load(&requests);
	kill(d.pid, SIGHUP);
	const char *nt = notification(buf, sizeof buf);
	like_str(nt, "RELOADING=1\nMONOTONIC_USEC=", "SIGHUP: RELOADING=1 with MONOTONIC_USEC");
	like_str(notification(buf, sizeof buf), "READY=1", "then READY=1 once it is done");
	ok(log_wait("reload: added contexts tenant, docs; removed extra; pool of default: max 4 -> 8; drivers loaded: memdoc"),
	   "one log line says what changed");
	long status;
	char *health = get("/_emhost/health", &status);
	ok(health && strstr(health, "\"tenant\"") && strstr(health, "\"docs\"") && !strstr(health, "\"extra\""),
	   "health lists the new contexts and not the removed one");
	free(health);
	char *metrics = get("/_emhost/metrics", &status);
	is_int((long long)dtest_metric(metrics ? metrics : "", "emhost_pool_max{context=\"default\"}"), 8,
	       "the default pool's max is the new one");
	free(metrics);
	while (atomic_load(&requests) < before + 200)
		usleep(1000);

	/* ---- a context added and removed again and again: the health prober
	 * of each removed one ends, and is joined, leaving no thread stack ---- */
	char churn[2048];
	snprintf(churn, sizeof churn, "%s,\n  { name = \"churn\"; driver = \"sqlite\"; path = \"%s/churn.db\"; }", extra,
		 dir);
	long st_warm = 0, stack = stack_kb();
	int served = 0;
	for (int i = 0; i < 40; i++) {
		write_config("w", config_text(conf, sizeof conf, i % 2 ? extra : churn, "8"));
		kill(d.pid, SIGHUP);
		notification(buf, sizeof buf);
		served += strstr(notification(buf, sizeof buf), "STATUS=serving") != NULL;
		/* a round of pings: the prober of a removed context finds it gone */
		free(get("/_emhost/health", &status));
		if (i == 9)
			st_warm = stacks_mapped(d.pid, stack);
	}
	long st_end = stacks_mapped(d.pid, stack);
	is_int(served, 40, "40 reloads adding and removing context 'churn' all applied");
	/* 15 removed contexts' probers left unjoined would be 15 more stacks;
	 * a few may come and go with the daemon's own threads */
	ok(st_warm > 0 && st_end >= 0 && st_end - st_warm < 4,
	   "the last 30 of them leave no thread stack behind (%ld stacks of %ld kB mapped, then %ld)", st_warm,
	   stack, st_end);

	/* ---- reloads it refuses: the daemon serves on as it was ---- */
	write_config("a", "contexts = oops\n");
	kill(d.pid, SIGHUP);
	notification(buf, sizeof buf);
	like_str(notification(buf, sizeof buf), "READY=1", "a refused reload ends with READY=1 too");
	like_str(buf, "STATUS=reload refused", "and says so in STATUS");
	ok(log_wait("reload refused, the running configuration is kept: "), "a config with an error is refused, logged");
	ok(dtest_log_contains(&d, "emhost.conf:"), "naming the file and line");

	/* analytics gone from the file: the fixture service uses it */
	snprintf(conf, sizeof conf,
		 "plugin_dir = \"%s\";\nservice_dir = \"%s\";\ncontexts = ( { name = \"default\"; driver = \"sqlite\"; "
		 "path = \"%s/app.db\"; schema = \"sync\"; pool = { max = 8; }; } );\n"
		 "services = ( { name = \"users\"; }, { name = \"good\"; module = \"fx_good\"; } );\n",
		 plug, svc, dir);
	write_config("w", conf);
	kill(d.pid, SIGHUP);
	notification(buf, sizeof buf);
	notification(buf, sizeof buf);
	ok(log_wait("context 'analytics' cannot be removed: service 'good' uses it"),
	   "removing a context a service uses is refused, naming the service");
	before = atomic_load(&requests);
	while (atomic_load(&requests) < before + 200)
		usleep(1000);

	atomic_store(&load_over, true);
	for (int i = 0; i < NCLIENTS; i++)
		pthread_join(th[i], NULL);
	is_int(atomic_load(&failed), 0, "%ld requests from %d clients across three reloads: none failed",
	       atomic_load(&requests), NCLIENTS);
	health = get("/_emhost/health", &status);
	ok(health && strstr(health, "\"docs\"") && strstr(health, "\"analytics\""),
	   "after the refused reloads the contexts are those of the last good one");
	free(health);

	int st = dtest_stop(&d, SIGTERM, 30000);
	like_str(notification(buf, sizeof buf), "STOPPING=1", "SIGTERM: STOPPING=1");
	is_int(st, 0, "emhostd stops with status 0");
	if (st != 0)
		dtest_log_tail(&d, 30);
	close(notify_fd);
	int rc = done_testing();
	if (rc == 0)
		dtest_rmtree(dir);
	else
		diag("kept %s for inspection", dir);
	return rc;
}
