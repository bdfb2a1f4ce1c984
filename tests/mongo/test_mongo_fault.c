/* SPDX-License-Identifier: MIT */
/* tests/mongo/test_mongo_fault.c: the MongoDB server goes down and comes back under a running host (run by fault.sh). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../tap.h"
#include "../fault.h"

static char g_table[64];
static emh_entity g_item;

#define NROWS 20
/* A fork on a stopped server must fail within the pool's acquire timeout:
 * the driver waits server_selection_timeout_ms for its ping, twice at most
 * for the first fork (the stale pooled connection's retried read, then the
 * fresh connection's ping). */
#define ACQUIRE_MS 3000
#define SELECT_MS 1000
#define BOUND_MS ACQUIRE_MS

static const char *g_script, *g_state;

int main(void)
{
	const char *uri = getenv("EMH_TEST_MONGO_URI");
	const char *builddir = getenv("EMH_BUILDDIR");
	const char *srcdir = getenv("EMH_SRCDIR");
	const char *kind = getenv("EMH_TEST_MONGO_KIND");
	const char *persistent = getenv("EMH_TEST_MONGO_PERSISTENT");
	char plugin_dir[1024], script[1024], litepath[256], sst[16], acq[16];
	emh_host *h = NULL;
	emh_error err;
	int rc;
	bool have_lite;

	plan_lazy();
	g_state = getenv("EMH_TEST_STATE_DIR");
	if (!uri || !*uri || !g_state || !*g_state) {
		need_server(1, "mongo fault test: EMH_TEST_MONGO_URI or EMH_TEST_STATE_DIR not set "
			       "(run scripts/servers/mongo.sh start STATE_DIR)");
		return done_testing();
	}
	if (kind && strcmp(kind, "external") == 0) {
		skip(1, "mongo fault test: the server is external (EMH_TEST_MONGO_URI given), cannot stop it");
		return done_testing();
	}
	snprintf(g_table, sizeof g_table, "mgt_%ld_fault", (long)getpid());
	g_item = (emh_entity){.name = "fault_item", .table = g_table, .size = sizeof(fault_item),
			      .fields = fault_item_fields,
			      .nfields = sizeof fault_item_fields / sizeof fault_item_fields[0]};
	snprintf(script, sizeof script, "%s/scripts/servers/mongo.sh", srcdir ? srcdir : ".");
	g_script = script;
	snprintf(plugin_dir, sizeof plugin_dir, "%s/plugins-build", builddir ? builddir : ".");
	snprintf(litepath, sizeof litepath, "/tmp/emh-mgfault-%ld.db", (long)getpid());
	snprintf(sst, sizeof sst, "%d", SELECT_MS);
	snprintf(acq, sizeof acq, "%d", ACQUIRE_MS);
	unlink(litepath);

	const char *envp[] = {NULL};
	emh_host_opts o = {.plugin_dir = plugin_dir, .envp = envp, .log_level = EMH_LOG_ERROR};
	if (emh_host_new(&o, &h, &err))
		bail("emh_host_new: %s", err.message);
	if (emh_host_add_context(h, "mg",
				 (const char *const[]){"url", uri, "pool.max", "4", "pool.acquire_timeout_ms", acq,
						       "server_selection_timeout_ms", sst, NULL},
				 &err) ||
	    emh_host_register_entity(h, "mg", &g_item, &err))
		bail("context mg: %s", err.message);
	have_lite = emh_host_add_context(h, "lite", (const char *const[]){"driver", "sqlite", "path", litepath, NULL},
					 &err) == 0 &&
		    emh_host_register_entity(h, "lite", &g_item, &err) == 0;
	if (!have_lite)
		diag("no sqlite context (%s): the 'other context unaffected' checks are skipped", err.message);

	rc = emh_host_sync_schema(h, "mg", &err);
	is_int(rc, 0, "sync mg");
	if (have_lite) {
		rc = emh_host_sync_schema(h, "lite", &err);
		is_int(rc, 0, "sync lite");
	}
	rc = fault_insert(h, "mg", &g_item, NROWS, "before", &err);
	is_int(rc, 0, "%d rows written on mg", NROWS);
	/* Fill the pool with several idle connections that the stop will break. */
	{
		emh_em *ems[3];
		for (int i = 0; i < 3; i++) {
			emh_repo *r;
			int64_t n;
			ems[i] = NULL;
			if (emh_host_fork(h, "mg", &ems[i], &err) == 0 && emh_em_repo(ems[i], &g_item, &r, &err) == 0)
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
		rc = fault_count(h, "mg", &g_item, &n, &err);
		double dt = fault_now_ms() - t0;
		if (rc == EMH_EUNAVAILABLE)
			unavailable++;
		else
			other++;
		if (dt > BOUND_MS)
			slow++;
		diag("fork %d on the stopped server: %s after %.0f ms: %s", i, emh_status_name(rc), dt,
		     rc ? err.message : "(no error)");
		if (i == 0)
			ok(strcmp(err.context, "mg") == 0 || strstr(err.message, "mg"), "the error names context mg");
	}
	is_int(unavailable, 6, "every fork on the stopped server got EMH_EUNAVAILABLE");
	is_int(other, 0, "no other outcome");
	is_int(slow, 0, "each returned within acquire_timeout_ms (%d ms)", ACQUIRE_MS);
	{
		double t0 = fault_now_ms();
		rc = emh_host_ping(h, "mg", &err);
		is_int(rc, EMH_EUNAVAILABLE, "ping: EMH_EUNAVAILABLE (%.0f ms)", fault_now_ms() - t0);
	}

	if (have_lite) {
		int64_t n = -1;
		rc = fault_insert(h, "lite", &g_item, 5, "lite", &err);
		is_int(rc, 0, "sqlite context still writes");
		rc = fault_count(h, "lite", &g_item, &n, &err);
		ok(rc == 0 && n == 5, "sqlite context still reads (%lld rows)", (long long)n);
	} else {
		skip(2, "no sqlite driver");
	}

	rc = fault_server(g_script, "restart", g_state);
	is_int(rc, 0, "server restarted on the same port");
	{
		int64_t n = -1;
		double t0 = fault_now_ms();
		rc = fault_count(h, "mg", &g_item, &n, &err);
		is_int(rc, 0, "the next fork works without restarting the host");
		if (rc)
			diag("%s", err.message);
		diag("first fork after restart took %.0f ms", fault_now_ms() - t0);
		if (persistent && strcmp(persistent, "1") == 0)
			is_int(n, NROWS, "every row written before the stop is there");
		else
			skip(1, "the test server keeps data in memory only (mongo-wire/CongoDB): rows written "
				"before a restart are gone, so 'data intact' cannot hold; checked with mongod");
	}
	rc = fault_insert(h, "mg", &g_item, 3, "after", &err);
	is_int(rc, 0, "writes work again");
	rc = emh_host_ping(h, "mg", &err);
	is_int(rc, 0, "ping works again");
	{
		emh_context_info ci;
		if (fault_context_info(h, "mg", &ci)) {
			ok(ci.up, "context mg reported up again");
			diag("mg pool: opened %llu discarded %llu unavailable errors %llu", (unsigned long long)ci.opened,
			     (unsigned long long)ci.discarded, (unsigned long long)ci.errors[-EMH_EUNAVAILABLE]);
		}
	}
	{
		emh_em *em;
		char cmd[128];
		snprintf(cmd, sizeof cmd, "{\"drop\": \"%s\"}", g_table);
		if (emh_host_fork(h, "mg", &em, &err) == 0) {
			rc = emh_em_execute(em, cmd, &err);
			is_int(rc, 0, "drop the test collection");
			emh_em_close(em);
		}
	}
	emh_host_free(h);
	unlink(litepath);
	return done_testing();
}
