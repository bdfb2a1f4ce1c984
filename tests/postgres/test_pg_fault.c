/* SPDX-License-Identifier: MIT */
/* tests/postgres/test_pg_fault.c: the PostgreSQL server goes down and comes back under a running host (run by fault.sh). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../tap.h"
#include "../fault.h"

static char g_table[64]; /* pgt_fault_<pid> */
static emh_entity fault_item_entity = EMH_ENTITY(fault_item, g_table, fault_item_fields);

#define NROWS 20
#define ACQUIRE_MS 1000
#define CONNECT_MS 2000
/* the bound a failing fork must return within: not a performance figure,
 * just "it returned an error instead of hanging" */
#define BOUND_MS (ACQUIRE_MS + CONNECT_MS + 3000)

static const char *g_script, *g_state;
static char g_pw[128];

/* The password of postgres://user:password@host... ("" when none). */
static void url_password(const char *url)
{
	const char *p = strstr(url, "://"), *at, *colon;
	if (!p)
		return;
	p += 3;
	at = strchr(p, '@');
	colon = strchr(p, ':');
	if (at && colon && colon < at && (size_t)(at - colon - 1) < sizeof g_pw)
		snprintf(g_pw, sizeof g_pw, "%.*s", (int)(at - colon - 1), colon + 1);
}

int main(void)
{
	const char *url = getenv("EMH_TEST_PG_URL");
	const char *builddir = getenv("EMH_BUILDDIR");
	const char *srcdir = getenv("EMH_SRCDIR");
	const char *kind = getenv("EMH_TEST_PG_KIND");
	char plugin_dir[1024], script[1024], litepath[256];
	emh_host *h = NULL;
	emh_error err;
	int rc;
	bool have_lite;

	plan_lazy();
	snprintf(g_table, sizeof g_table, "pgt_fault_%ld", (long)getpid());
	g_state = getenv("EMH_TEST_STATE_DIR");
	if (!url || !*url || !g_state || !*g_state) {
		need_server(1, "postgres fault test: EMH_TEST_PG_URL or EMH_TEST_STATE_DIR not set "
			       "(run scripts/servers/pg.sh start STATE_DIR)");
		return done_testing();
	}
	if (kind && strcmp(kind, "external") == 0) {
		skip(1, "postgres fault test: the server is external (EMH_TEST_PG_EXTERNAL_URL), cannot stop it");
		return done_testing();
	}
	url_password(url);
	snprintf(script, sizeof script, "%s/scripts/servers/pg.sh", srcdir ? srcdir : ".");
	g_script = script;
	snprintf(plugin_dir, sizeof plugin_dir, "%s/plugins-build", builddir ? builddir : ".");
	snprintf(litepath, sizeof litepath, "/tmp/emh-pgfault-%ld.db", (long)getpid());
	unlink(litepath);

	const char *envp[] = {NULL};
	emh_host_opts o = {.plugin_dir = plugin_dir, .envp = envp, .log_level = EMH_LOG_ERROR};
	if (emh_host_new(&o, &h, &err))
		bail("emh_host_new: %s", err.message);
	if (emh_host_add_context(h, "pg",
				 (const char *const[]){"url", url, "pool.max", "4", "pool.acquire_timeout_ms", "1000",
						       "connect_timeout_ms", "2000", NULL},
				 &err) ||
	    emh_host_register_entity(h, "pg", &fault_item_entity, &err))
		bail("context pg: %s", err.message);
	have_lite = emh_host_add_context(h, "lite", (const char *const[]){"driver", "sqlite", "path", litepath, NULL},
					 &err) == 0 &&
		    emh_host_register_entity(h, "lite", &fault_item_entity, &err) == 0;
	if (!have_lite)
		diag("no sqlite context (%s): the 'other context unaffected' checks are skipped", err.message);

	{
		emh_em *em;
		char sql[120];
		snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", g_table);
		if (emh_host_fork(h, "pg", &em, &err) || emh_em_execute(em, sql, &err))
			bail("drop: %s", err.message);
		emh_em_close(em);
	}
	rc = emh_host_sync_schema(h, "pg", &err);
	is_int(rc, 0, "sync pg");
	if (have_lite) {
		rc = emh_host_sync_schema(h, "lite", &err);
		is_int(rc, 0, "sync lite");
	}
	rc = fault_insert(h, "pg", &fault_item_entity, NROWS, "before", &err);
	is_int(rc, 0, "%d rows committed on pg", NROWS);
	/* Fill the pool with several idle connections that the stop will kill. */
	{
		emh_em *ems[3];
		for (int i = 0; i < 3; i++) {
			emh_repo *r;
			int64_t n;
			ems[i] = NULL;
			if (emh_host_fork(h, "pg", &ems[i], &err) == 0 &&
			    emh_em_repo(ems[i], &fault_item_entity, &r, &err) == 0)
				emh_repo_count(r, NULL, &n, &err);
		}
		for (int i = 0; i < 3; i++)
			emh_em_close(ems[i]);
	}

	rc = fault_server(g_script, "stop", g_state);
	is_int(rc, 0, "server stopped");

	int unavailable = 0, other = 0, slow = 0;
	for (int i = 0; i < 6; i++) {
		int64_t n = 0;
		double t0 = fault_now_ms();
		rc = fault_count(h, "pg", &fault_item_entity, &n, &err);
		double dt = fault_now_ms() - t0;
		if (rc == EMH_EUNAVAILABLE)
			unavailable++;
		else
			other++;
		if (dt > BOUND_MS)
			slow++;
		diag("fork %d on the stopped server: %s after %.0f ms: %s", i, emh_status_name(rc), dt,
		     rc ? err.message : "(no error)");
		if (i == 0) {
			ok(strcmp(err.context, "pg") == 0 || strstr(err.message, "pg"), "the error names context pg");
			ok(!*g_pw || strstr(err.message, g_pw) == NULL, "no password in the error");
		}
	}
	is_int(unavailable, 6, "every fork on the stopped server got EMH_EUNAVAILABLE");
	is_int(other, 0, "no other outcome");
	is_int(slow, 0, "each returned within acquire_timeout_ms + connect_timeout_ms + 3 s");

	if (have_lite) {
		int64_t n = -1;
		rc = fault_insert(h, "lite", &fault_item_entity, 5, "lite", &err);
		is_int(rc, 0, "sqlite context still writes");
		rc = fault_count(h, "lite", &fault_item_entity, &n, &err);
		ok(rc == 0 && n == 5, "sqlite context still reads (%lld rows)", (long long)n);
	} else {
		skip(2, "no sqlite driver");
	}

	rc = fault_server(g_script, "restart", g_state);
	is_int(rc, 0, "server restarted on the same port");
	{
		int64_t n = -1;
		double t0 = fault_now_ms();
		rc = fault_count(h, "pg", &fault_item_entity, &n, &err);
		is_int(rc, 0, "the next fork works without restarting the host");
		if (rc)
			diag("%s", err.message);
		is_int(n, NROWS, "every row committed before the stop is there");
		diag("first fork after restart took %.0f ms", fault_now_ms() - t0);
	}
	rc = fault_insert(h, "pg", &fault_item_entity, 3, "after", &err);
	is_int(rc, 0, "writes work again");
	rc = emh_host_ping(h, "pg", &err);
	is_int(rc, 0, "ping works again");
	{
		emh_context_info ci;
		if (fault_context_info(h, "pg", &ci)) {
			ok(ci.up, "context pg reported up again");
			diag("pg pool: opened %llu discarded %llu unavailable errors %llu", (unsigned long long)ci.opened,
			     (unsigned long long)ci.discarded, (unsigned long long)ci.errors[-EMH_EUNAVAILABLE]);
		}
	}
	{
		emh_em *em;
		char sql[120];
		snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", g_table);
		if (emh_host_fork(h, "pg", &em, &err) == 0) {
			emh_em_execute(em, sql, &err);
			emh_em_close(em);
		}
	}
	emh_host_free(h);
	unlink(litepath);
	return done_testing();
}
