/* SPDX-License-Identifier: MIT */
/* tests/mysql/test_mysql_fault.c: the MySQL server stops and comes back under a live host (run by fault.sh). */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../tap.h"
#include "../fault.h"

#define NTESTS 19
#define TABLE "emh_myfault_items"
#define ACQUIRE_MS 3000

static const emh_entity fault_entity = EMH_ENTITY(fault_item, TABLE, fault_item_fields);

static int server(const char *cmd)
{
	char script[1024];
	const char *src = getenv("EMH_SRCDIR");
	snprintf(script, sizeof script, "%s/scripts/servers/mariadb.sh", src ? src : ".");
	return fault_server(script, cmd, getenv("EMH_TEST_STATE_DIR"));
}

/* Load key in ctx; the loaded name into name (when given). */
static int get_item(emh_host *h, const char *ctx, int64_t key, char *name, size_t cap, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	fault_item *it;
	int rc = emh_host_fork(h, ctx, &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &fault_entity, &r, err)) == 0 &&
	    (rc = emh_repo_get(r, emh_v_int64(key), (void **)&it, err)) == 0 && name)
		snprintf(name, cap, "%s", it->name);
	emh_em_close(em);
	return rc;
}

static int insert_items(emh_host *h, const char *ctx, int n, int64_t *first, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	fault_item *it[8];
	int rc = emh_host_fork(h, ctx, &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &fault_entity, &r, err)) == 0) {
		for (int i = 0; i < n && rc == 0; i++) {
			if ((rc = emh_repo_new(r, (void **)&it[i], err)) == 0) {
				char buf[32];
				snprintf(buf, sizeof buf, "item-%d", i);
				it[i]->name = emh_em_strdup(em, buf);
				it[i]->n = i;
			}
		}
		if (rc == 0 && (rc = emh_em_flush(em, err)) == 0 && first)
			*first = it[0]->id;
	}
	emh_em_close(em);
	return rc;
}

int main(void)
{
	const char *url = getenv("EMH_TEST_MYSQL_URL"), *state = getenv("EMH_TEST_STATE_DIR");
	const char *bdir = getenv("EMH_BUILDDIR");
	char env_url[1024], env_lite[1024], plugdir[1024], sqlite_so[1100], tmpl[] = "/tmp/emh-myfault.XXXXXX";
	bool lite;
	emh_error err;
	emh_host *h;
	emh_em *em;
	int rc;
	int64_t first = 0, lite_first = 0;

	plan(NTESTS);
	if (!url || !*url || !state || !*state) {
		need_server(NTESTS, "mysql fault: EMH_TEST_MYSQL_URL and EMH_TEST_STATE_DIR not set (scripts/servers/mariadb.sh start DIR)");
		return done_testing();
	}
	snprintf(plugdir, sizeof plugdir, "%s/plugins-build", bdir ? bdir : ".");
	snprintf(sqlite_so, sizeof sqlite_so, "%s/sqlite.so", plugdir);
	lite = access(sqlite_so, R_OK) == 0;
	if (!mkdtemp(tmpl))
		bail("mkdtemp failed");
	snprintf(env_url, sizeof env_url, "EMH_CONTEXT_MY_URL=%s", url);
	snprintf(env_lite, sizeof env_lite, "EMH_CONTEXT_LITE_PATH=%s/lite.db", tmpl);
	const char *envp[] = {env_url, "EMH_CONTEXT_MY_POOL_MAX=2",
			      "EMH_CONTEXT_MY_POOL_ACQUIRE_TIMEOUT_MS=" "3000",
			      "EMH_CONTEXT_MY_CONNECT_TIMEOUT_MS=2000", "EMH_DEFAULT_CONTEXT=my",
			      lite ? "EMH_CONTEXT_LITE_DRIVER=sqlite" : NULL, env_lite, NULL};
	emh_host_opts o = {.plugin_dir = plugdir, .envp = envp};
	if (emh_host_new(&o, &h, &err) != 0)
		bail("emh_host_new: %s", err.message);

	/* Setup: the table, three committed rows, a warm pool of two connections. */
	if (emh_host_fork(h, "my", &em, &err) != 0)
		bail("fork: %s", err.message);
	rc = emh_em_execute(em, "DROP TABLE IF EXISTS " TABLE, &err);
	emh_em_close(em);
	if (rc)
		bail("drop: %s", err.message);
	if (emh_host_register_entity(h, "my", &fault_entity, &err) || emh_host_sync_schema(h, "my", &err))
		bail("sync my: %s", err.message);
	if (lite && (emh_host_register_entity(h, "lite", &fault_entity, &err) ||
		     emh_host_sync_schema(h, "lite", &err)))
		bail("sync lite: %s", err.message);
	rc = insert_items(h, "my", 3, &first, &err);
	is_int(rc, 0, "three rows committed on mysql");
	if (lite)
		insert_items(h, "lite", 1, &lite_first, &err);
	{
		emh_em *a, *b;
		emh_host_fork(h, "my", &a, &err);
		emh_host_fork(h, "my", &b, &err);
		emh_em_execute(a, "SELECT 1", &err);
		emh_em_execute(b, "SELECT 1", &err);
		emh_em_close(a);
		emh_em_close(b);
	}

	/* The server goes away. */
	rc = server("stop");
	is_int(rc, 0, "mariadb.sh stop");

	for (int attempt = 1; attempt <= 4; attempt++) {
		double t0 = fault_now_ms();
		memset(&err, 0, sizeof err);
		rc = get_item(h, "my", first, NULL, 0, &err);
		double ms = fault_now_ms() - t0;
		if (attempt == 1) {
			is_str(emh_status_name(rc), "EMH_EUNAVAILABLE", "a load with the server down is EMH_EUNAVAILABLE");
			ok(strcmp(err.context, "my") == 0, "the error names the context (%s)", err.context);
			ok(ms < ACQUIRE_MS + 1000, "it fails within the acquire timeout (%.0f ms)", ms);
			diag("%s", err.message);
		} else if (rc != EMH_EUNAVAILABLE || ms > ACQUIRE_MS + 1000) {
			ok(0, "attempt %d: %s after %.0f ms", attempt, emh_status_name(rc), ms);
		}
	}
	ok(1, "every further attempt failed fast with EMH_EUNAVAILABLE");
	rc = emh_host_ping(h, "my", &err);
	is_str(emh_status_name(rc), "EMH_EUNAVAILABLE", "ping says unavailable");
	{
		emh_context_info ci;
		ok(fault_context_info(h, "my", &ci) && !ci.up && ci.errors[-EMH_EUNAVAILABLE] > 0,
		   "the context is reported down with unavailable errors counted");
	}

	/* Another context does not care. */
	if (lite) {
		char name[64] = "";
		rc = get_item(h, "lite", lite_first, name, sizeof name, &err);
		is_int(rc, 0, "the sqlite context still loads");
		is_str(name, "item-0", "with its data");
		rc = insert_items(h, "lite", 2, NULL, &err);
		is_int(rc, 0, "and writes");
	} else
		skip(3, "sqlite plugin not built");

	/* The server comes back: the same host recovers without a restart. */
	rc = server("restart");
	is_int(rc, 0, "mariadb.sh restart");
	{
		char name[64] = "";
		memset(&err, 0, sizeof err);
		rc = get_item(h, "my", first, name, sizeof name, &err);
		is_int(rc, 0, "the next fork works again, same host");
		if (rc)
			diag("%s", err.message);
		is_str(name, "item-0", "committed data is intact");
		rc = get_item(h, "my", first + 2, name, sizeof name, &err);
		ok(rc == 0 && strcmp(name, "item-2") == 0, "all three committed rows are there");
	}
	{
		emh_em *e1;
		emh_repo *r;
		int64_t n = -1;
		rc = emh_host_fork(h, "my", &e1, &err);
		if (rc == 0 && (rc = emh_em_repo(e1, &fault_entity, &r, &err)) == 0)
			rc = emh_repo_count(r, NULL, &n, &err);
		emh_em_close(e1);
		ok(rc == 0 && n == 3, "count is 3 (%lld)", (long long)n);
	}
	rc = insert_items(h, "my", 2, NULL, &err);
	is_int(rc, 0, "writes work after the restart");
	rc = emh_host_ping(h, "my", &err);
	is_int(rc, 0, "ping works");
	{
		emh_context_info ci;
		ok(fault_context_info(h, "my", &ci) && ci.up && ci.in_use + ci.idle <= 2,
		   "the context is up again, pool within its max");
	}

	emh_host_free(h);
	{
		char cmd[1200];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
		if (system(cmd) != 0)
			diag("could not remove %s", tmpl);
	}
	return done_testing();
}
