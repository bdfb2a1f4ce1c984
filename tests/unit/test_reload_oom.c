/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_reload_oom.c: emh_host_reload is all or nothing when
 * memory runs out.  The Nth realloc of a reload fails, for every N until
 * one reload needs no more: each ends either applied (0) or refused
 * (EMH_ENOMEM) with the running configuration whole, and the host then
 * works and frees cleanly.
 *
 * realloc is replaced in this program (glibc's __libc_realloc does the
 * work), which a sanitizer build cannot have next to its own allocator:
 * there the cases are skipped, saying so.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../fixture.h"
#include "../tap.h"

#if defined(__SANITIZE_ADDRESS__)
#define INJECT 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define INJECT 0
#endif
#endif
#ifndef INJECT
#define INJECT 1
#endif

#if INJECT
extern void *__libc_realloc(void *p, size_t n);

/* 0: off; else libemhost's realloc call that fails, counted down. */
static unsigned long fail_at;
static void *emhost_base; /* where libemhost is loaded */

/* Only libemhost's own calls fail: libconfig (1.5) crashes on a failed
 * realloc of its own, which is not what this tests. */
void *realloc(void *p, size_t n)
{
	Dl_info di;
	if (fail_at && dladdr(__builtin_return_address(0), &di) && di.dli_fbase == emhost_base &&
	    --fail_at == 0)
		return NULL;
	return __libc_realloc(p, n);
}
#endif

static fixture fx;
static char conf[256];

static void write_conf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void write_conf(const char *fmt, ...)
{
	FILE *f = fopen(conf, "w");
	if (!f)
		bail("cannot write %s: %s", conf, strerror(errno));
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

/* The configuration: contexts default, a (pool max amax) and third (b or c). */
static void conf_with(int amax, const char *third)
{
	write_conf("default_context = \"default\";\ncontexts = (\n"
		   "  { name = \"default\"; driver = \"sqlite\"; path = \"%s/default.db\"; },\n"
		   "  { name = \"a\"; driver = \"sqlite\"; path = \"%s/a.db\"; pool = { max = %d; }; },\n"
		   "  { name = \"%s\"; driver = \"sqlite\"; path = \"%s/%s.db\"; }\n);\n",
		   fx.dir, fx.dir, amax, third, fx.dir, third);
}

/* "default,a,c:2": the contexts and a's pool max. */
static const char *state(emh_host *h, char *buf, size_t cap)
{
	emh_context_info *ci;
	size_t n, off = 0;
	emh_error err;
	if (emh_host_contexts(h, &ci, &n, &err) != 0)
		bail("emh_host_contexts: %s", err.message);
	int amax = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? "," : "", ci[i].name);
		if (strcmp(ci[i].name, "a") == 0)
			amax = ci[i].pool_max;
	}
	snprintf(buf + off, cap - off, ":%d", amax);
	emh_context_info_free(ci, n);
	return buf;
}

/* The refusals of a thousand rounds: nothing to read. */
static void quiet(void *ud, int level, const char *context, const char *msg)
{
	(void)ud, (void)level, (void)context, (void)msg;
}

int main(void)
{
#if !INJECT
	printf("1..0 # SKIP allocation failures are injected in the build without sanitizers only\n");
	return 0;
#else
	Dl_info di;
	if (!dladdr((void *)emh_host_reload, &di))
		bail("dladdr(emh_host_reload) failed");
	emhost_base = di.dli_fbase;
	fixture_init(&fx, "reload-oom");
	fixture_path(&fx, "emhost.conf", conf, sizeof conf);
	/* a plugin directory of sqlite.so alone: every round makes a host */
	char plugdir[256], cmd[2048];
	fixture_path(&fx, "plugins", plugdir, sizeof plugdir);
	snprintf(cmd, sizeof cmd, "mkdir -m 755 '%s' && cp '%s/sqlite.so' '%s/'", plugdir, fx.plugin_dir, plugdir);
	if (system(cmd) != 0)
		bail("cannot run: %s", cmd);
	static const char *const no_env[] = {NULL};
	emh_host_opts ho = {.config_path = conf, .plugin_dir = plugdir, .envp = no_env, .log = quiet};
	emh_reload_opts ro = {.envp = no_env};
	unsigned long refused = 0, applied_at = 0, bad = 0;
	for (unsigned long nth = 1; nth < 100000 && !applied_at; nth++) {
		conf_with(2, "c");
		emh_host *h;
		emh_error err;
		if (emh_host_new(&ho, &h, &err) != 0)
			bail("emh_host_new: %s", err.message);
		conf_with(4, "b");
		char sum[256], st[128];
		fail_at = nth;
		int rc = emh_host_reload(h, &ro, sum, sizeof sum, &err);
		bool injected = fail_at == 0;
		fail_at = 0;
		state(h, st, sizeof st);
		if (rc == 0 && strcmp(st, "default,a,b:4") == 0) {
			if (!injected)
				applied_at = nth;
		} else if (rc == EMH_ENOMEM && strcmp(st, "default,a,c:2") == 0) {
			refused++;
		} else {
			if (bad++ < 5)
				diag("realloc %lu failed: rc %d (%s), contexts %s", nth, rc, rc ? err.message : "",
				     st);
		}
		/* whatever happened, the host still works */
		if (emh_host_ping(h, "a", &err) != 0 && bad++ < 5)
			diag("realloc %lu failed: then a ping of 'a': %s", nth, err.message);
		emh_host_free(h);
	}
	ok(applied_at > 0, "a reload with no failed realloc applies (after %lu injected failures)",
	   applied_at ? applied_at - 1 : 0);
	ok(refused > 0, "failed reallocs refused %lu reloads with the configuration kept", refused);
	is_int(bad, 0, "every other one applied it whole, none half");
	fixture_release(&fx);
	return done_testing();
#endif
}
