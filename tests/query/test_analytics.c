/* SPDX-License-Identifier: MIT */
/*
 * tests/query/test_analytics.c: the analytics service's counts in constant
 * memory.  The module is loaded from the build (services/.libs) on a SQLite
 * context with EMH_TEST_ANALYTICS_ROWS events (default 200,000, generated in
 * one statement); GET /analytics/counts must answer the hand counts while
 * the live heap, sampled during the request, grows by less than 8 MB --
 * under a fifth of what holding the events takes (measured here on a
 * sample), which is what the service did before it counted through an
 * aggregate.
 */
#include "config.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <emhost/service.h>

#include "../../services/common/entities.h" /* the events table as the service declares it */
#include "../fixture.h"
#include "peak.h"
#include "../tap.h"

#define NTYPES 5
#define BOUND (8ll << 20)
#define SAMPLE 20000

/* Events of type "t<k>": i % 7 folded onto 5 types, so the counts differ. */
static int64_t hand_count(int64_t rows, int k)
{
	static const int type_of[7] = {0, 1, 2, 3, 4, 0, 1};
	int64_t n = 0;
	for (int r = 0; r < 7; r++)
		if (type_of[r] == k)
			n += rows / 7 + (r >= 1 && r <= rows % 7 ? 1 : 0); /* i runs 1..rows */
	return n;
}

static int get_counts(emh_services *svcs, json_t **out, emh_error *err)
{
	emh_scope *sc;
	emh_response *res = emh_response_new();
	emh_request req = {.method = "GET", .path = "/counts", .query = ""};
	int rc = emh_scope_open(svcs, "analytics", &sc, err);
	if (rc == 0) {
		rc = emh_scope_handle(sc, &req, res, err);
		emh_scope_close(sc);
	}
	size_t len = 0;
	const char *body = emh_response_body(res, &len);
	*out = rc == 0 && body ? json_loadb(body, len, 0, NULL) : NULL;
	emh_response_free(res);
	return rc;
}

int main(void)
{
	fixture fx;
	emh_error err;
	const char *env = getenv("EMH_TEST_ANALYTICS_ROWS");
	int64_t rows = env ? strtoll(env, NULL, 10) : 200000;
	if (rows < SAMPLE)
		rows = SAMPLE;
	const char *bdir = getenv("EMH_BUILDDIR");
	if (!bdir)
		bail("EMH_BUILDDIR is not set (run through make check)");

	fixture_init(&fx, "analytics");
	char conf[PATH_MAX], db[PATH_MAX], text[3 * PATH_MAX];
	fixture_path(&fx, "emhost.conf", conf, sizeof conf);
	fixture_path(&fx, "analytics.db", db, sizeof db);
	snprintf(text, sizeof text,
		 "service_dir = \"%s/services/.libs\";\n"
		 "contexts = ( { name = \"analytics\"; driver = \"sqlite\"; path = \"%s\"; schema = \"sync\"; } );\n"
		 "services = ( { name = \"analytics\"; } );\n",
		 bdir, db);
	FILE *f = fopen(conf, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		bail("cannot write %s", conf);
	emh_host_opts opts = {.config_path = conf, .plugin_dir = fx.plugin_dir, .log_level = EMH_LOG_WARN,
			      .envp = (const char *const[]){NULL}};
	emh_host *h;
	emh_services *svcs;
	if (emh_host_new(&opts, &h, &err) != 0 || emh_services_new(h, &svcs, &err) != 0 ||
	    emh_services_load(svcs, &err) != 0)
		bail("host with the analytics service: %s", err.message);

	fixture_register(h, "analytics", &event_entity); /* the service's declaration, another copy */
	emh_em *em = fixture_fork(h, "analytics");
	char sql[512];
	snprintf(sql, sizeof sql,
		 "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %" PRId64 ") "
		 "INSERT INTO events (user_id, type, created_at) "
		 "SELECT i %% 100 + 1, 't' || (CASE i %% 7 WHEN 5 THEN 0 WHEN 6 THEN 1 ELSE i %% 7 END), i FROM c",
		 rows);
	if (emh_em_execute(em, sql, &err) != 0)
		bail("generating %" PRId64 " events: %s", rows, err.message);

	/* What holding events costs, measured on a sample. */
	emh_repo *r = fixture_repo(em, &event_entity);
	emh_query *q = fixture_query(r);
	emh_list l;
	size_t before = peak_heap_live();
	emh_q_limit(q, SAMPLE);
	if (emh_repo_find(r, q, &l, &err) != 0)
		bail("find: %s", err.message);
	double per_row = (double)(peak_heap_live() - before) / SAMPLE;
	emh_em_close(em);
	diag("holding the events would take %.0f MB (%.0f bytes each)", per_row * (double)rows / 1048576, per_row);
	ok(per_row * (double)rows > 5.0 * (double)BOUND, "the bound (%lld MB) is under a fifth of it", BOUND >> 20);

	json_t *j;
	if (get_counts(svcs, &j, &err) != 0) /* warm up: statements, the module's first request */
		bail("GET /analytics/counts: %s", err.message);
	json_decref(j);
	peak_measure pm;
	peak_measure_start(&pm);
	int rc = get_counts(svcs, &j, &err);
	peak_measure_stop(&pm);
	if (!ok(rc == 0 && j, "GET /analytics/counts answers"))
		diag("  %s", err.message);
	is_int(json_integer_value(json_object_get(j, "total")), rows, "total: every event");
	json_t *counts = json_object_get(j, "counts");
	is_int(json_object_size(counts), NTYPES, "one count per type");
	for (int k = 0; k < NTYPES; k++) {
		char type[8];
		snprintf(type, sizeof type, "t%d", k);
		is_int(json_integer_value(json_object_get(counts, type)), hand_count(rows, k), "count of %s", type);
	}
	json_decref(j);
	diag("live heap during the request: +%lld kB", pm.heap_growth >> 10);
	ok(pm.heap_growth < BOUND, "the live heap grows by less than %lld MB over %" PRId64 " events", BOUND >> 20,
	   rows);
	if (pm.rss_why) {
		skip_named("peak RSS stays within the bound", pm.rss_why);
	} else {
		diag("RSS during the request: +%lld kB", pm.rss_growth >> 10);
		ok(pm.rss_growth < BOUND, "peak RSS grows by less than %lld MB", BOUND >> 20);
	}

	emh_services_free(svcs);
	emh_host_free(h);
	fixture_release(&fx);
	return done_testing();
}
