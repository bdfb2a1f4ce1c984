/* SPDX-License-Identifier: MIT */
/*
 * tests/mysql/test_mysql_deadline.c: the MySQL/MariaDB driver's deadlines
 * against the real test server: the session's own statement deadline
 * (MariaDB max_statement_time, MySQL 8 MAX_EXECUTION_TIME) is
 * statement_timeout_ms (nothing else sets it: the server stopping SLEEP at
 * 1.5 s shows it) and its error (1969 / 3024) is EMH_ETIMEOUT; the
 * socket read timeout (here the older read_timeout_ms, which wins) ends a
 * call the server does not answer in time, as EMH_ETIMEOUT too.  Either
 * way the connection is discarded and the context stays up.  The migration
 * lock's wait is its own deadline, longer than statement_timeout_ms: the
 * server's statement deadline does not cut it short.  (A server that stops
 * answering altogether: tests/fault/test_hang.)  Time bounds only tell
 * "returned" from "hung".
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

/* SELECT SLEEP(20) on ctx: EMH_ETIMEOUT within bound_ms, with native code want_native (or want_native2). */
static void sleep_times_out(emh_host *h, const char *ctx, double bound_ms, int want_native, int want_native2,
			    const char *key, const char *what)
{
	emh_error err;
	emh_em *em = fixture_fork(h, ctx);
	if (emh_em_execute(em, "SELECT 1", &err))
		bail("'%s': %s", ctx, err.message);
	uint64_t discarded = fixture_context_info(h, ctx).discarded;
	double t0 = fixture_now_ms();
	int rc = emh_em_execute(em, "SELECT SLEEP(20)", &err);
	double took = fixture_now_ms() - t0;
	is_int(rc, EMH_ETIMEOUT, "%s: EMH_ETIMEOUT", what);
	diag("%s", err.message);
	ok(err.native == want_native || err.native == want_native2, "%s: native %d (%d or %d)", what, err.native,
	   want_native, want_native2);
	ok(err.retryable, "%s: retryable", what);
	is_str(err.context, ctx, "%s: naming the context", what);
	if (key)
		like_str(err.message, key, "%s: and the deadline's key", what);
	ok(took < bound_ms, "%s: returned instead of hanging (%.0f ms, bound %.0f ms)", what, took, bound_ms);
	is_int((int)(fixture_context_info(h, ctx).discarded - discarded), 1, "%s: the connection was discarded", what);
	is_int(emh_em_execute(em, "SELECT 1", &err), 0, "%s: the fork goes on, on a fresh connection", what);
	emh_em_close(em);
	ok(fixture_context_info(h, ctx).up, "%s: the context is not reported down", what);
}

/* The lock name the driver takes (plugins/mysql/session.c), here of the connection's database. */
#define MIGRATE_LOCK "CONCAT('emh_migrate_', LEFT(SHA2(COALESCE(DATABASE(), ''), 256), 40))"

/*
 * Another session holds the migration lock for longer than the statement
 * deadline: a run on a context with statement_timeout_ms=1500 waits its
 * lock_wait_ms (4 s) and says the lock was held, instead of ending at the
 * server's max_statement_time / the read timeout (1969 / 2013).  The
 * contexts name no database, so the lock is not the one tests/migrate
 * takes on the test database at the same time.
 */
static void lock_wait_outlasts_statement(emh_host *h, const fixture *fx, const char *url)
{
	char nodb[1024], mig[1100];
	const char *auth = strstr(url, "://");
	size_t cut = auth ? (size_t)(auth + 3 - url) + strcspn(auth + 3, "/?") : strlen(url);
	snprintf(nodb, sizeof nodb, "%.*s", (int)cut, url);
	fixture_path(fx, "migrations", mig, sizeof mig);
	if (mkdir(mig, 0700) != 0)
		bail("mkdir %s", mig);
	emh_error err;
	if (emh_host_add_context(h, "holder", (const char *const[]){"url", nodb, NULL}, &err) ||
	    emh_host_add_context(h, "mig",
				 (const char *const[]){"url", nodb, "statement_timeout_ms", "1500", "migrations", mig,
						       NULL},
				 &err))
		bail("contexts: %s", err.message);
	emh_em *holder = fixture_fork(h, "holder");
	if (emh_em_execute(holder, "SELECT GET_LOCK(" MIGRATE_LOCK ", 0)", &err))
		bail("holder: %s", err.message);
	emh_migrate_opts o = {.lock_wait_ms = 4000};
	double t0 = fixture_now_ms();
	int rc = emh_migrate_up(h, "mig", &o, NULL, &err);
	diag("after %.0f ms: %s", fixture_now_ms() - t0, err.message);
	is_int(rc, EMH_ETIMEOUT, "a lock wait longer than statement_timeout_ms: EMH_ETIMEOUT");
	like_str(err.message, "another migration run held the database's migration lock", "the lock was held, "
		 "not a statement past its deadline");
	like_str(err.message, "for 4000 ms", "for the whole lock wait");
	if (emh_em_execute(holder, "SELECT RELEASE_LOCK(" MIGRATE_LOCK ")", &err))
		bail("holder: %s", err.message);
	emh_em_close(holder);
	ok(fixture_context_info(h, "mig").up, "the context is not reported down");
}

/*
 * A connect with no file descriptor left: EMH_ENOFD, retryable, "out of file
 * descriptors" (driver.h), not EMH_EUNAVAILABLE marking the context down.
 */
static void out_of_fds(emh_host *h, const char *url)
{
	emh_error err;
	diag("a connect with no file descriptor left: EMH_ENOFD, not 'database down'");
	if (emh_host_add_context(h, "nofd", (const char *const[]){"url", url, NULL}, &err))
		bail("add 'nofd': %s", err.message);
	int rc = fixture_ping_without_fds(h, "nofd", &err);
	is_int(rc, EMH_ENOFD, "EMH_ENOFD");
	like_str(err.message, "out of file descriptors", "the message says so: %s", err.message);
	ok(err.retryable, "retryable");
	ok(fixture_context_info(h, "nofd").up, "the context is not marked down");
	is_int(emh_host_ping(h, "nofd", &err), 0, "descriptors back: it connects");
	if (emh_host_remove_context(h, "nofd", &err))
		bail("remove 'nofd': %s", err.message);
}

int main(void)
{
	const char *url = getenv("EMH_TEST_MYSQL_URL");
	fixture fx;
	emh_host *h;
	emh_error err;

	plan_lazy();
	if (!url || !*url) {
		need_server(1, "mysql: EMH_TEST_MYSQL_URL not set (scripts/servers/mariadb.sh start DIR)");
		return done_testing();
	}
	fixture_init(&fx, "mydeadline");
	if (fixture_host(&fx, NULL, &h, &err))
		bail("host: %s", err.message);
	if (emh_host_add_context(h, "srv", (const char *const[]){"url", url, "statement_timeout_ms", "1500", NULL},
				 &err) ||
	    emh_host_add_context(h, "rd",
				 (const char *const[]){"url", url, "statement_timeout_ms", "0", "read_timeout_ms", "1000",
						       NULL},
				 &err))
		bail("contexts: %s", err.message);
	diag("the session's statement deadline is statement_timeout_ms (MariaDB 1969, MySQL 8 3024)");
	sleep_times_out(h, "srv", 1500 + 1000, 1969, 3024, NULL, "the server's statement deadline");

	diag("the socket read timeout (read_timeout_ms wins over statement_timeout_ms)");
	sleep_times_out(h, "rd", 1000 + 1000, 2013, 2013, "read_timeout_ms=1000",
			"a read that waited out read_timeout_ms");

	diag("the migration lock's wait is its own deadline");
	lock_wait_outlasts_statement(h, &fx, url);

	out_of_fds(h, url);

	emh_host_free(h);
	fixture_release(&fx);
	return done_testing();
}
