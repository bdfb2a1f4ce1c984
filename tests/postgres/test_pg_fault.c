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

typedef struct fault_item {
	int64_t id;
	const char *name;
	int64_t n;
} fault_item;

static const emh_field fault_item_fields[] = {
	EMH_FIELD(fault_item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(fault_item, name, EMH_T_TEXT, 0),
	EMH_FIELD(fault_item, n, EMH_T_INT64, 0),
};
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

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int server(const char *cmd)
{
	char line[2048];
	snprintf(line, sizeof line, "'%s' %s '%s'", g_script, cmd, g_state);
	return system(line);
}

static int insert_rows(emh_host *h, const char *ctx, int n, const char *prefix, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	int rc = emh_host_fork(h, ctx, &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &fault_item_entity, &r, err)) == 0) {
		for (int i = 0; i < n && rc == 0; i++) {
			fault_item *it;
			char name[64];
			rc = emh_repo_new(r, (void **)&it, err);
			if (rc)
				break;
			snprintf(name, sizeof name, "%s-%d", prefix, i);
			it->name = emh_em_strdup(em, name);
			it->n = i;
		}
		if (rc == 0)
			rc = emh_em_flush(em, err);
	}
	emh_em_close(em);
	return rc;
}

static int count_rows(emh_host *h, const char *ctx, int64_t *n, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	int rc = emh_host_fork(h, ctx, &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &fault_item_entity, &r, err)) == 0)
		rc = emh_repo_count(r, NULL, n, err);
	emh_em_close(em);
	return rc;
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
	rc = insert_rows(h, "pg", NROWS, "before", &err);
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

	rc = server("stop");
	is_int(rc, 0, "server stopped");

	int unavailable = 0, other = 0, slow = 0;
	for (int i = 0; i < 6; i++) {
		int64_t n = 0;
		double t0 = now_ms();
		rc = count_rows(h, "pg", &n, &err);
		double dt = now_ms() - t0;
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
		rc = insert_rows(h, "lite", 5, "lite", &err);
		is_int(rc, 0, "sqlite context still writes");
		rc = count_rows(h, "lite", &n, &err);
		ok(rc == 0 && n == 5, "sqlite context still reads (%lld rows)", (long long)n);
	} else {
		skip(2, "no sqlite driver");
	}

	rc = server("restart");
	is_int(rc, 0, "server restarted on the same port");
	{
		int64_t n = -1;
		double t0 = now_ms();
		rc = count_rows(h, "pg", &n, &err);
		is_int(rc, 0, "the next fork works without restarting the host");
		if (rc)
			diag("%s", err.message);
		is_int(n, NROWS, "every row committed before the stop is there");
		diag("first fork after restart took %.0f ms", now_ms() - t0);
	}
	rc = insert_rows(h, "pg", 3, "after", &err);
	is_int(rc, 0, "writes work again");
	rc = emh_host_ping(h, "pg", &err);
	is_int(rc, 0, "ping works again");
	{
		emh_context_info *infos;
		size_t n;
		if (emh_host_contexts(h, &infos, &n, &err) == 0) {
			for (size_t i = 0; i < n; i++)
				if (strcmp(infos[i].name, "pg") == 0) {
					ok(infos[i].up, "context pg reported up again");
					diag("pg pool: opened %llu discarded %llu unavailable errors %llu",
					     (unsigned long long)infos[i].opened,
					     (unsigned long long)infos[i].discarded,
					     (unsigned long long)infos[i].errors[-EMH_EUNAVAILABLE]);
				}
			emh_context_info_free(infos, n);
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
