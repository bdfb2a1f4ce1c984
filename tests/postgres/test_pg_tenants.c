/* SPDX-License-Identifier: MIT */
/*
 * tests/postgres/test_pg_tenants.c: 200 PostgreSQL tenant contexts, a
 * schema each (options=-c search_path=tN), against a server whose
 * max_connections is 50, within a host budget of 40 (issue 12).  24
 * threads each write to a random tenant and, holding that connection, read
 * from another (48 connections wanted at the peak), for a bounded time,
 * while a raw libpq connection samples pg_stat_activity: never more client
 * connections than the budget, no failure but bounded EMH_ETIMEOUT waits,
 * every acknowledged write readable afterwards.
 *
 * Run by tenants.sh, which starts the dedicated server (EMH_TEST_PGT_URL).
 * Knobs: EMH_TEST_PG_TENANTS_SECONDS (the run, default 5).
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

#define TENANTS 200
#define BUDGET 40
#define THREADS 24
#define ACQUIRE_MS 3000

typedef struct pt_row {
	int64_t id;
	int64_t seq;
	const char *note;
} pt_row;
static const emh_field pt_row_fields[] = {
	EMH_FIELD(pt_row, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(pt_row, seq, EMH_T_INT64, 0),
	EMH_FIELD(pt_row, note, EMH_T_TEXT, 0),
};
static const emh_entity pt_row_entity = EMH_ENTITY(pt_row, "pt_rows", pt_row_fields);

typedef struct run {
	emh_host *h;
	PGconn *mon;
	atomic_int stop;
	_Atomic long acked[TENANTS];
	atomic_long writes, timeouts, other;
	double max_timeout_ms; /* under mu */
	int max_backends;      /* under mu */
	pthread_mutex_t mu;
	char other_msg[EMH_ERROR_MSG_MAX + 64];
} run;

static void *worker(void *arg)
{
	run *r = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed ^ (unsigned)time(NULL);
	for (long k = 0; !atomic_load(&r->stop); k++) {
		int i = (int)(rand_r(&seed) % TENANTS);
		char name[16];
		emh_error err;
		emh_em *em;
		emh_repo *repo;
		void *p;
		snprintf(name, sizeof name, "t%d", i);
		double t0 = fixture_now_ms();
		int rc = emh_host_fork(r->h, name, &em, &err);
		if (rc)
			goto out_failed;
		rc = emh_em_repo(em, &pt_row_entity, &repo, &err);
		if (!rc)
			rc = emh_repo_new(repo, &p, &err);
		if (!rc) {
			((pt_row *)p)->seq = k;
			((pt_row *)p)->note = "tenant row";
			rc = emh_em_flush(em, &err);
		}
		if (!rc) {
			atomic_fetch_add(&r->acked[i], 1);
			atomic_fetch_add(&r->writes, 1);
			/* another tenant while holding this one's connection */
			char other[16];
			emh_em *em2;
			snprintf(other, sizeof other, "t%d", (i + 1 + (int)(rand_r(&seed) % (TENANTS - 1))) % TENANTS);
			if ((rc = emh_host_fork(r->h, other, &em2, &err)) == 0) {
				emh_repo *r2;
				int64_t n;
				rc = emh_em_repo(em2, &pt_row_entity, &r2, &err);
				if (!rc)
					rc = emh_repo_count(r2, NULL, &n, &err);
				emh_em_close(em2);
			}
			void *got;
			if (!rc)
				rc = emh_repo_get(repo, emh_v_int64(((pt_row *)p)->id), &got, &err);
			if (!rc && ((pt_row *)got)->seq != k)
				rc = emh_error_set(&err, EMH_EINVAL, "read back seq %lld, not %ld",
						   (long long)((pt_row *)got)->seq, k);
		}
		emh_em_close(em);
		if (!rc)
			continue;
	out_failed:
		if (rc == EMH_ETIMEOUT) {
			/* a bounded wait for room: fine, if it was bounded */
			double waited = fixture_now_ms() - t0;
			atomic_fetch_add(&r->timeouts, 1);
			pthread_mutex_lock(&r->mu);
			r->max_timeout_ms = waited > r->max_timeout_ms ? waited : r->max_timeout_ms;
			pthread_mutex_unlock(&r->mu);
		} else if (atomic_fetch_add(&r->other, 1) == 0) {
			snprintf(r->other_msg, sizeof r->other_msg, "%s: %s: %s", name, emh_status_name(rc), err.message);
		}
	}
	return NULL;
}

/* Client connections the server has besides this one. */
static int backends(PGconn *mon)
{
	PGresult *res = PQexec(mon, "SELECT count(*) FROM pg_stat_activity "
				    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
	int n = PQresultStatus(res) == PGRES_TUPLES_OK ? atoi(PQgetvalue(res, 0, 0)) : -1;
	PQclear(res);
	return n;
}

static void *monitor(void *arg)
{
	run *r = arg;
	while (!atomic_load(&r->stop)) {
		int n = backends(r->mon);
		pthread_mutex_lock(&r->mu);
		if (n < 0)
			r->max_backends = 1 << 20; /* a failed sample fails the test */
		else if (n > r->max_backends)
			r->max_backends = n;
		pthread_mutex_unlock(&r->mu);
		usleep(10000);
	}
	return NULL;
}

static void admin(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		bail("%s: %s", sql, PQerrorMessage(c));
	PQclear(res);
}

int main(void)
{
	const char *url = getenv("EMH_TEST_PGT_URL");
	long seconds = getenv("EMH_TEST_PG_TENANTS_SECONDS") ? atol(getenv("EMH_TEST_PG_TENANTS_SECONDS")) : 5;
	emh_error err;
	fixture fx;
	if (!url || !*url) {
		const char *why = getenv("EMH_TEST_PGT_WHY");
		need_server(1, why ? why : "postgres: EMH_TEST_PGT_URL not set (run tests/postgres/tenants.sh)");
		return done_testing();
	}
	if (seconds < 1)
		bail("EMH_TEST_PG_TENANTS_SECONDS must be at least 1");
	fixture_init(&fx, "pgtenants");
	static run r;
	pthread_mutex_init(&r.mu, NULL);
	r.mon = PQconnectdb(url);
	if (PQstatus(r.mon) != CONNECTION_OK)
		bail("raw connection: %s", PQerrorMessage(r.mon));
	PGresult *res = PQexec(r.mon, "SHOW max_connections");
	int server_max = PQresultStatus(res) == PGRES_TUPLES_OK ? atoi(PQgetvalue(res, 0, 0)) : -1;
	PQclear(res);
	is_int(server_max, 50, "the server's max_connections is 50");
	for (int i = 0; i < TENANTS; i++) {
		char sql[64];
		snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS t%d CASCADE", i);
		admin(r.mon, sql);
		snprintf(sql, sizeof sql, "CREATE SCHEMA t%d", i);
		admin(r.mon, sql);
	}

	char budget[32];
	snprintf(budget, sizeof budget, "EMH_MAX_CONNECTIONS=%d", BUDGET);
	if (fixture_host(&fx, (const char *[]){budget, NULL}, &r.h, &err) != 0)
		bail("host: %s", err.message);
	double t0 = fixture_now_ms();
	for (int i = 0; i < TENANTS; i++) {
		char name[16], opts[48], acq[16];
		snprintf(name, sizeof name, "t%d", i);
		snprintf(opts, sizeof opts, "-c search_path=t%d", i);
		snprintf(acq, sizeof acq, "%d", ACQUIRE_MS);
		const char *kv[] = {"url", url, "options", opts, "schema", "sync", "pool.max", "4",
				    "pool.acquire_timeout_ms", acq, NULL};
		if (emh_host_add_context(r.h, name, kv, &err) != 0 ||
		    emh_host_register_entity(r.h, name, &pt_row_entity, &err) != 0)
			bail("tenant %s: %s", name, err.message);
	}
	diag("%d tenants added, each with its table in its own schema, in %.0f ms", TENANTS, fixture_now_ms() - t0);
	int after_setup = backends(r.mon);
	ok(after_setup >= 1 && after_setup <= BUDGET, "after setting up %d tenants the server has %d of our connections",
	   TENANTS, after_setup);

	diag("%d threads on random tenants for %ld s, budget %d, server max_connections 50", THREADS, seconds, BUDGET);
	pthread_t t[THREADS], mt;
	for (int i = 0; i < THREADS; i++)
		fixture_thread(&t[i], worker, &r);
	fixture_thread(&mt, monitor, &r);
	sleep((unsigned)seconds);
	atomic_store(&r.stop, 1);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_join(mt, NULL);

	emh_budget_info bi;
	emh_host_budget(r.h, &bi, sizeof bi);
	diag("%ld writes acknowledged; %ld bounded waits ended in EMH_ETIMEOUT (longest %.0f ms); at most %d "
	     "server connections; %llu closed for room, %llu waits",
	     atomic_load(&r.writes), atomic_load(&r.timeouts), r.max_timeout_ms, r.max_backends,
	     (unsigned long long)bi.evicted, (unsigned long long)bi.waits);
	ok(atomic_load(&r.writes) > 0, "writes were acknowledged (%ld)", atomic_load(&r.writes));
	if (!ok(atomic_load(&r.other) == 0, "no failure but EMH_ETIMEOUT (%ld)", atomic_load(&r.other)))
		diag("first: %s", r.other_msg);
	ok(r.max_timeout_ms < ACQUIRE_MS + 10000, "every EMH_ETIMEOUT came from a bounded wait (longest %.0f ms)",
	   r.max_timeout_ms);
	ok(r.max_backends <= BUDGET, "pg_stat_activity never showed more than the budget: %d of %d", r.max_backends,
	   BUDGET);
	ok(bi.evicted > 0, "idle connections of other tenants were closed for room (%llu)",
	   (unsigned long long)bi.evicted);

	long missing = 0;
	char first[EMH_ERROR_MSG_MAX + 64] = "";
	for (int i = 0; i < TENANTS; i++) {
		char name[16];
		emh_em *em;
		emh_repo *repo;
		int64_t n = -1;
		snprintf(name, sizeof name, "t%d", i);
		int rc = emh_host_fork(r.h, name, &em, &err);
		if (!rc) {
			rc = emh_em_repo(em, &pt_row_entity, &repo, &err);
			if (!rc)
				rc = emh_repo_count(repo, NULL, &n, &err);
			emh_em_close(em);
		}
		if (rc || n != atomic_load(&r.acked[i])) {
			if (!first[0])
				snprintf(first, sizeof first, "%s: %s (%lld rows, %ld acknowledged)", name,
					 rc ? err.message : "count differs", (long long)n, atomic_load(&r.acked[i]));
			missing++;
		}
	}
	if (!ok(missing == 0, "every acknowledged write is readable in all %d tenants", TENANTS))
		diag("%ld tenants differ; first: %s", missing, first);
	emh_host_free(r.h);
	int left = backends(r.mon);
	for (int i = 0; i < 500 && left > 0; i++) { /* backends end a moment after their client */
		usleep(10000);
		left = backends(r.mon);
	}
	is_int(left, 0, "freeing the host closed its connections");
	for (int i = 0; i < TENANTS; i++) {
		char sql[64];
		snprintf(sql, sizeof sql, "DROP SCHEMA t%d CASCADE", i);
		admin(r.mon, sql);
	}
	PQfinish(r.mon);
	pthread_mutex_destroy(&r.mu);
	fixture_release(&fx);
	return done_testing();
}
