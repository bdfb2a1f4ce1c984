/* SPDX-License-Identifier: MIT */
/*
 * tests/replicas/test_mongo_rs.c: MongoDB replica-set URLs, as far as a
 * machine without a replica set can test them (docs/replicas.md says what
 * is and is not verified).  Against the test server (standalone, or the
 * mongod of EMH_TEST_MONGO_URI):
 *
 *   - readPreference, readPreferenceTags, maxStalenessSeconds and
 *     replicaSet in a URL survive the configuration and reach the client:
 *     the driver logs, once per context, the client's URI and read
 *     preference as libmongoc parsed them, and this reads that line;
 *   - a readPreference key next to a URL in the file changes the mode only:
 *     the URL's tags and maxStalenessSeconds stay;
 *   - readPreference=secondaryPreferred against the standalone server
 *     writes and reads;
 *   - a replicaSet= URL naming a set the server is not in fails with
 *     EMH_EUNAVAILABLE (not a timeout, never a hang), and the next fork
 *     fails the same way.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

typedef struct rs_item {
	int64_t id;
	const char *v;
} rs_item;
static const emh_field rs_item_fields[] = {
	EMH_FIELD(rs_item, id, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(rs_item, v, EMH_T_TEXT, 0),
};
static char g_table[64];
static emh_entity g_item;

/* The driver's "mongo: client:" line of each context, as logged. */
typedef struct capture {
	pthread_mutex_t mu;
	char line[4][1024];
	char ctx[4][32];
	int n;
} capture;

static void capture_log(void *ud, int level, const char *context, const char *msg)
{
	(void)level;
	capture *c = ud;
	if (!context || !strstr(msg, "mongo: client:"))
		return;
	pthread_mutex_lock(&c->mu);
	if (c->n < 4) {
		snprintf(c->ctx[c->n], sizeof c->ctx[0], "%s", context);
		snprintf(c->line[c->n], sizeof c->line[0], "%s", msg);
		c->n++;
	}
	pthread_mutex_unlock(&c->mu);
}

static const char *client_line(capture *c, const char *ctx)
{
	const char *out = "";
	pthread_mutex_lock(&c->mu);
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->ctx[i], ctx) == 0)
			out = c->line[i];
	pthread_mutex_unlock(&c->mu);
	return out;
}

/* The first read of a fresh fork of ctx: its status; the error in err. */
static int read_in(emh_host *h, const char *ctx, int64_t id, emh_error *err)
{
	emh_em *em;
	int rc = emh_host_fork(h, ctx, &em, err);
	if (rc)
		return rc;
	emh_repo *r;
	rs_item *it = NULL;
	rc = emh_em_repo(em, &g_item, &r, err);
	if (!rc)
		rc = emh_repo_get(r, emh_v_int64(id), (void **)&it, err);
	emh_em_close(em);
	return rc;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		bail("cannot write %s", path);
}

int main(void)
{
	const char *uri = getenv("EMH_TEST_MONGO_URI");
	plan_lazy();
	if (!uri || !*uri) {
		need_server(13, "mongo: EMH_TEST_MONGO_URI not set (scripts/test-servers.sh start)");
		return done_testing();
	}
	snprintf(g_table, sizeof g_table, "emh_rs_%ld", (long)getpid());
	g_item = (emh_entity){.name = "rs_item", .table = g_table, .size = sizeof(rs_item), .fields = rs_item_fields,
			      .nfields = sizeof rs_item_fields / sizeof rs_item_fields[0]};
	fixture fx;
	fixture_init(&fx, "mongo-rs");
	char conf[1024], text[8192], base[1024];
	fixture_path(&fx, "emhost.conf", conf, sizeof conf);
	snprintf(base, sizeof base, "%s%s", uri, strchr(uri, '?') ? "&" : "?");
	/*
	 * sp: the read preference options in the URL alone.  kp: the same URL
	 * and a readPreference key next to it (the key wins, for the mode).
	 * rs: a replica set the server is not a member of.
	 */
	snprintf(text, sizeof text,
		 "default_context = \"sp\";\n"
		 "contexts = (\n"
		 "  { name = \"sp\"; url = \"%sreadPreference=secondaryPreferred&readPreferenceTags=dc:ny,rack:2"
		 "&maxStalenessSeconds=120\"; },\n"
		 "  { name = \"kp\"; url = \"%sreadPreference=secondaryPreferred&readPreferenceTags=dc:ny"
		 "&maxStalenessSeconds=150\"; readPreference = \"nearest\"; },\n"
		 "  { name = \"rs\"; url = \"%sreplicaSet=emh_no_such_set&readPreference=secondaryPreferred"
		 "&serverSelectionTimeoutMS=400&connectTimeoutMS=400\"; } );\n",
		 base, base, base);
	write_file(conf, text);
	static const char *const none[] = {NULL};
	capture cap = {.mu = PTHREAD_MUTEX_INITIALIZER};
	emh_host_opts o = {.config_path = conf, .plugin_dir = fx.plugin_dir, .envp = none,
			   .log = capture_log, .log_ud = &cap, .log_level = EMH_LOG_DEBUG};
	emh_host *h;
	emh_error err;
	if (emh_host_new(&o, &h, &err))
		bail("host: %s", err.message);
	for (const char *const *c = (const char *const[]){"sp", "kp", "rs", NULL}; *c; c++)
		fixture_register(h, *c, &g_item);

	/* secondaryPreferred against the standalone server: writes and reads work */
	emh_em *em = fixture_fork(h, "sp");
	emh_repo *r = fixture_repo(em, &g_item);
	rs_item *it = fixture_new(r);
	it->id = 1;
	it->v = "one";
	ok(emh_em_flush(em, &err) == 0, "secondaryPreferred: a write (%s)", err.message);
	emh_em_close(em);
	is_int(read_in(h, "sp", 1, &err), 0, "secondaryPreferred: a fresh fork reads the row");

	const char *l = client_line(&cap, "sp");
	diag("sp: %s", l);
	ok(strstr(l, "readPreference secondaryPreferred;") != NULL, "the URL's readPreference reaches the client");
	ok(strstr(l, "\"dc\" : \"ny\"") && strstr(l, "\"rack\" : \"2\""),
	   "the URL's readPreferenceTags reach the client");
	ok(strstr(l, "maxStalenessSeconds 120;") != NULL, "the URL's maxStalenessSeconds reaches the client");
	ok(strstr(l, "replicaSet (none)") != NULL, "no replicaSet in the URL: none in the client");

	is_int(read_in(h, "kp", 1, &err), 0, "kp: a fork reads");
	l = client_line(&cap, "kp");
	diag("kp: %s", l);
	ok(strstr(l, "readPreference nearest;") && strstr(l, "\"dc\" : \"ny\"") &&
		   strstr(l, "maxStalenessSeconds 150;"),
	   "a readPreference key next to the URL sets the mode; the URL's tags and maxStalenessSeconds stay");

	/* a replica set the server is not in: unavailable within serverSelectionTimeoutMS, fork after fork */
	int rc = read_in(h, "rs", 1, &err);
	is_int(rc, EMH_EUNAVAILABLE, "replicaSet the server is not in: EMH_EUNAVAILABLE (%s)", err.message);
	ok(strstr(err.message, "emh_no_such_set") != NULL, "the message names the replica set");
	l = client_line(&cap, "rs");
	diag("rs: %s", l);
	ok(strstr(l, "replicaSet emh_no_such_set;") && strstr(l, "readPreference secondaryPreferred;"),
	   "the URL's replicaSet reaches the client");
	is_int(read_in(h, "rs", 1, &err), EMH_EUNAVAILABLE, "the next fork: EMH_EUNAVAILABLE again (%s)",
	       err.message);

	/*
	 * A readPreference key of primary next to a URL with tags: libmongoc
	 * refuses a primary read preference with tags (in a URL too), so the
	 * context's configuration is refused when it is added.  Before, it was
	 * taken, and the first connect's ping crashed the process (libmongoc
	 * refuses the call without initialising its reply).
	 */
	char purl[1200];
	snprintf(purl, sizeof purl, "%sreadPreference=secondary&readPreferenceTags=dc:ny", base);
	rc = emh_host_add_context(h, "pk", (const char *const[]){"url", purl, "readPreference", "primary", NULL}, &err);
	ok(rc == EMH_ECONFIG && strstr(err.message, "readPreference"),
	   "readPreference = primary with the URL's tags is refused as the configuration's error (%d: %s)", rc,
	   rc ? err.message : "added");
	if (rc == 0) {
		if (emh_host_remove_context(h, "pk", &err))
			bail("remove 'pk': %s", err.message);
	}

	if (emh_host_drop_schema(h, "sp", &err))
		diag("dropping the test collection: %s", err.message);
	emh_host_free(h);
	fixture_release(&fx);
	return done_testing();
}
