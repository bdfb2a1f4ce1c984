/* SPDX-License-Identifier: MIT */
/*
 * tests/migrate/t_daemon.c: emhostd's start-up policy over HTTP.  Context
 * "default" has migrate = "on-start" (its migration creates the table its
 * service counts, with one row); context "old" has migrate = "check" and a
 * pending migration: the daemon starts, serves the first, refuses the
 * second (its service's requests fail, /_emhost/health says "refused", the
 * log says why) and stops cleanly.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../daemon/dtest.h"
#include "../tap.h"

static void put(const char *dir, const char *sub, const char *name, const char *text)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, sub);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
	FILE *f = fopen(path, "w");
	if (!f)
		bail("cannot write %s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

int main(void)
{
	plan_lazy();
	char dir[256], svc[512], src[1024], dst[600], conf[4096];
	dtest_tmpdir(dir, sizeof dir, "migd");
	snprintf(svc, sizeof svc, "%s/svc", dir);
	mkdir(svc, 0755);
	snprintf(src, sizeof src, "%s/tests/migrate/.libs/fxm_v1.so", dtest_builddir());
	snprintf(dst, sizeof dst, "%s/fxm_v1.so", svc);
	if (symlink(src, dst) != 0)
		bail("symlink %s: %s", dst, strerror(errno));
	put(dir, "good", "0001_things.sql",
	    "CREATE TABLE mig_things (id INTEGER PRIMARY KEY, title TEXT NOT NULL, email TEXT UNIQUE,\n"
	    "  created INTEGER NOT NULL);\nCREATE INDEX mig_things_created_idx ON mig_things (created);\n"
	    "INSERT INTO mig_things (title, created) VALUES ('first', 0);\n");
	put(dir, "old", "0001_pending.sql", "CREATE TABLE x (x INTEGER);\n");
	snprintf(conf, sizeof conf,
		 "plugin_dir = \"%s/plugins-build\";\nservice_dir = \"%s\";\n"
		 "contexts = (\n"
		 "  { name = \"default\"; url = \"sqlite://%s/good.db\"; migrations = \"%s/good\"; migrate = \"on-start\"; },\n"
		 "  { name = \"old\"; url = \"sqlite://%s/old.db\"; migrations = \"%s/old\"; migrate = \"check\"; }\n);\n"
		 "services = ( { name = \"things\"; module = \"fxm_v1\"; },\n"
		 "  { name = \"oldthings\"; module = \"fxm_v1\"; contexts = { default = \"old\"; }; } );\n"
		 "server = { threads = 2; };\n",
		 dtest_builddir(), svc, dir, dir, dir, dir);
	dtest_daemon d;
	if (dtest_start(&d, dir, conf, NULL) != 0) {
		ok(0, "emhostd starts with one context refused");
		dtest_rmtree(dir);
		return done_testing();
	}
	ok(1, "emhostd starts with one context refused");
	CURL *c = dtest_curl();
	dtest_resp r;
	is_int(dtest_http(c, d.url, "GET", "/things", NULL, 0, false, &r), 200,
	       "the on-start context serves: its migration ran at start");
	is_str(r.body, "1", "the row its migration wrote is there");
	dtest_resp_free(&r);
	long st = dtest_http(c, d.url, "GET", "/oldthings", NULL, 0, false, &r);
	ok(st >= 500, "a request on the refused context fails (%ld)", st);
	dtest_resp_free(&r);
	ok(dtest_log_contains(&d, "refusing to serve the context: migrate = \"check\": 1 migration not applied"),
	   "the log says why it is refused");
	ok(dtest_log_contains(&d, "refuses forks"), "and why the request failed");
	is_int(dtest_http(c, d.url, "GET", "/_emhost/health", NULL, 0, false, &r), 200,
	       "health answers 200 (no required context is down)");
	json_t *j = dtest_json(&r);
	is_str(dtest_jstr(j, "contexts", "old", "status", NULL), "refused", "health shows the context refused");
	is_str(dtest_jstr(j, "contexts", "default", "status", NULL), "up", "and the other one up");
	json_decref(j);
	dtest_resp_free(&r);
	curl_easy_cleanup(c);
	is_int(dtest_stop(&d, SIGTERM, 30000), 0, "emhostd stops cleanly");
	dtest_rmtree(dir);
	return done_testing();
}
