/* SPDX-License-Identifier: MIT */
/* tests/config/test_config.c: the configuration file, the environment, checks against a driver. */
#include "config.h"

#include <sys/stat.h>

#include "cfg_int.h"
#include "cfgtest.h"

/* ---- the tests ---- */

static void test_no_file(void)
{
	emh__config cfg;
	emh_error err;
	const char *env[] = { NULL };
	is_int(load(NULL, env, &cfg, &err), 0, "no file and no environment: empty configuration");
	is_int(cfg.ncontexts, 0, "no contexts");
	ok(cfg.default_context.value == NULL, "no default context");
	ok(cfg.path == NULL, "no path");
	emh__config_release(&cfg);
	emh__config_release(&cfg); /* twice is harmless */
}

static const char full_conf[] =
	"# a full configuration\n"                                                          /* 1 */
	"plugin_dir = \"${PLUGINS:-/opt/emh/plugins}\";\n"                                  /* 2 */
	"service_dir = \"services\";\n"                                                     /* 3 */
	"log_level = \"info\";\n"                                                           /* 4 */
	"default_context = \"main\";\n"                                                     /* 5 */
	"contexts = (\n"                                                                    /* 6 */
	"  { name = \"main\"; driver = \"sqlite\"; path = \"${DATA:-var}/app.db\";\n"       /* 7 */
	"    schema = \"sync\"; required = true; busy_timeout = 250; },\n"                  /* 8 */
	"  { name = \"analytics\";\n"                                                       /* 9 */
	"    driver = \"tdb\";\n"                                                           /* 10 */
	"    host = \"${DB_HOST:-127.0.0.1}\";\n"                                           /* 11 */
	"    port = 5432;\n"                                                                /* 12 */
	"    password_env = \"DB_PW\";\n"                                                   /* 13 */
	"    pool = { min = 1; max = 4; acquire_timeout_ms = 2000;\n"                       /* 14 */
	"             idle_timeout_ms = 30000; max_lifetime_ms = 3600000; };\n"             /* 15 */
	"    migrations = \"migrations/analytics\"; }\n"                                    /* 16 */
	");\n"                                                                              /* 17 */
	"services = (\n"                                                                    /* 18 */
	"  { name = \"users\"; contexts = { store = \"analytics\"; };\n"                    /* 19 */
	"    settings = { greeting = \"hi ${WHO:-there}\"; limit = 10; ratio = 0.5; on = true; }; },\n" /* 20 */
	"  { name = \"reports\"; module = \"reports_v2\"; }\n"                              /* 21 */
	");\n"                                                                              /* 22 */
	"server = { listen = \"127.0.0.1:8080\"; threads = 8; max_body = 1048576; shutdown_timeout_ms = 500; };\n"; /* 23 */

static void test_full_file(void)
{
	emh__config cfg;
	emh_error err;
	const char *env[] = { "DB_HOST=db.example", "DB_PW=s3cret", "WHO=world", NULL };
	int rc = load(full_conf, env, &cfg, &err);
	is_int(rc, 0, "full file parses");
	if (rc) {
		diag("%s", err.message);
		return;
	}
	is_str(cfg.plugin_dir.value, "/opt/emh/plugins", "plugin_dir: fallback used");
	is_str(cfg.plugin_dir.origin, at(2), "plugin_dir origin is FILE:LINE");
	is_str(cfg.service_dir.value, "services", "service_dir");
	is_str(cfg.log_level.value, "info", "log_level");
	is_str(cfg.default_context.value, "main", "default_context from the file");
	is_int(cfg.ncontexts, 2, "two contexts");
	emh__ctxconf *m = ctx(&cfg, "main"), *a = ctx(&cfg, "analytics");
	ok(m && a, "both contexts by name");
	if (!m || !a)
		return;
	is_str(m->origin, at(7), "context origin is where its group starts");
	is_str(emh__ctxconf_get(m, "path"), "var/app.db", "${DATA:-var} expands to the fallback");
	is_str(emh__ctxconf_get(m, "required"), "true", "bool kept as \"true\"");
	is_str(emh__ctxconf_get(m, "busy_timeout"), "250", "driver key kept as a string");
	is_str(origin_of(m, "busy_timeout"), at(8), "driver key origin");
	const emh__setting *bt = emh__settings_find(&m->s, "busy_timeout");
	is_str(bt ? bt->path : NULL, "contexts.[0].busy_timeout", "config path of a key");
	is_int(bt ? bt->ltype : -1, EMH_PARAM_INT, "libconfig type recorded");
	is_str(emh__ctxconf_get(a, "host"), "db.example", "${DB_HOST:-...} takes the variable when set");
	is_str(emh__ctxconf_get(a, "pool.max"), "4", "pool flattened to pool.max");
	is_str(origin_of(a, "pool.max"), at(14), "pool.max origin");
	is_str(emh__ctxconf_get(a, "pool.max_lifetime_ms"), "3600000", "pool.max_lifetime_ms");
	is_str(emh__ctxconf_get(a, "migrations"), "migrations/analytics", "migrations");

	/* check against the drivers */
	is_int(emh__config_check_context(m, &lite, env, &err), 0, "main checks against sqlite");
	rc = emh__config_check_context(a, &tdb, env, &err);
	is_int(rc, 0, "analytics checks against tdb");
	if (rc)
		diag("%s", err.message);
	is_str(emh__ctxconf_get(a, "password"), "s3cret", "password_env resolved into password");
	ok(secret_of(a, "password"), "resolved password is secret");
	is_str(origin_of(a, "password"), "env DB_PW", "resolved password origin names the variable");
	is_str(emh__ctxconf_get(a, "schema"), "none", "schema default");
	is_str(origin_of(a, "schema"), "default", "default origin");
	is_str(emh__ctxconf_get(m, "pool.max"), "8", "pool.max default");
	is_int(emh__config_check_context(a, &tdb, env, &err), 0, "checking twice is harmless");

	/* services and server */
	is_int(cfg.nservices, 2, "two services");
	emh__svcconf *u = &cfg.services[0];
	is_str(u->name, "users", "service name");
	is_str(u->module, "users", "module defaults to the name");
	is_str(emh__settings_find(&u->remap, "store") ? emh__settings_find(&u->remap, "store")->value : NULL,
	       "analytics", "context remap");
	const emh__setting *g = emh__settings_find(&u->s, "greeting");
	is_str(g ? g->value : NULL, "hi world", "service setting expanded");
	is_str(g ? g->origin : NULL, at(20), "service setting origin");
	is_str(emh__settings_find(&u->s, "limit") ? emh__settings_find(&u->s, "limit")->value : NULL, "10",
	       "service int setting");
	is_str(emh__settings_find(&u->s, "ratio") ? emh__settings_find(&u->s, "ratio")->value : NULL, "0.5",
	       "service float setting");
	is_str(emh__settings_find(&u->s, "on") ? emh__settings_find(&u->s, "on")->value : NULL, "true",
	       "service bool setting");
	is_str(cfg.services[1].module, "reports_v2", "explicit module");
	is_str(emh__settings_find(&cfg.server, "listen") ? emh__settings_find(&cfg.server, "listen")->value : NULL,
	       "127.0.0.1:8080", "server.listen");
	is_str(emh__settings_find(&cfg.server, "threads") ? emh__settings_find(&cfg.server, "threads")->value : NULL,
	       "8", "server.threads");
	is_str(emh__settings_find(&cfg.server, "shutdown_timeout_ms") ? emh__settings_find(&cfg.server, "shutdown_timeout_ms")->origin : NULL,
	       at(23), "server setting origin");
	emh__config_release(&cfg);
}

static void test_parse_errors(void)
{
	const char *env[] = { NULL };
	emh__config cfg;
	emh_error err;

	emh_error_clear(&err);
	snprintf(cfgpath, sizeof cfgpath, "%s/missing.conf", tmpdir);
	is_int(emh__config_parse(&cfg, cfgpath, env, &err), EMH_ECONFIG, "missing file: EMH_ECONFIG");
	like_str(err.message, "missing.conf: cannot read the configuration file", "missing file: names the file");

	fails("contexts = (\n  { name = ; driver = \"sqlite\"; }\n);\n", env, at(2), "syntax error",
	      "syntax error");
	fails("plugin_dir = \"x\";\nplugindir = \"y\";\n", env, at(2) , "unknown top-level key 'plugindir'",
	      "unknown top-level key");
	fails("plugindir = \"y\";\n", env, "did you mean 'plugin_dir'?", "valid: plugin_dir, default_context",
	      "unknown top-level key lists the valid ones");
	fails("server = { listen = \"x\"; thread = 4; };\n", env, "server.thread: unknown server key 'thread'",
	      "valid: listen, threads, max_body, shutdown_timeout_ms", "unknown server key");
	fails("contexts = ( { name = \"a\"; driver = \"sqlite\"; pool = { maxi = 3; }; } );\n", env,
	      "contexts.[0].pool.maxi: unknown pool key 'maxi'", "valid: min, max, acquire_timeout_ms",
	      "unknown pool key");
	fails("services = ( { name = \"s\"; modul = \"x\"; } );\n", env, "services.[0].modul: unknown service key",
	      "valid: name, module, contexts, settings", "unknown service key");
	fails("contexts = (\n { name = \"a\"; driver = \"sqlite\"; },\n { name = \"b\"; driver = \"sqlite\";\n"
	      "   required = 5; }\n);\n",
	      env, at(4), "contexts.[1].required: expected boolean", "wrong type of a common key");
	fails("contexts = ( { name = \"a\"; driver = \"sqlite\"; pool = { max = \"many\"; }; } );\n", env,
	      "contexts.[0].pool.max: expected integer", NULL, "pool.max not an integer");
	fails("contexts = ( { name = \"a\"; driver = \"sqlite\"; pool = { max = 0; }; } );\n", env,
	      "contexts.[0].pool.max: 'pool.max' must be in [1, 2147483647], got 0", NULL, "pool.max >= 1");
	fails("contexts = ( { name = \"a\"; driver = \"sqlite\"; pool = { min = -1; }; } );\n", env,
	      "contexts.[0].pool.min: 'pool.min' must be in [0, 2147483647], got -1", NULL, "pool.min >= 0");
	fails("contexts = ( { name = \"a\"; driver = 3; } );\n", env, "contexts.[0].driver: expected string", NULL,
	      "driver must be a string");
	fails("contexts = ( { name = \"a\"; driver = \"sqlite\"; schema = \"auto\"; } );\n", env,
	      "contexts.[0].schema: expected \"none\", \"sync\" or \"check\"", NULL, "schema values");
	fails("contexts = ( { name = \"a\"; driver = \"sqlite\"; migrate = \"always\"; } );\n", env,
	      "contexts.[0].migrate: expected \"none\", \"on-start\" or \"check\"", NULL, "migrate values");
	fails("contexts = ( { name = \"a\"; driver = \"sqlite\"; opts = (1, 2); } );\n", env,
	      "contexts.[0].opts: expected a string, integer or boolean, not a list", NULL, "aggregate driver key");
	fails("contexts = { name = \"a\"; };\n", env, "contexts: expected a list", NULL, "contexts must be a list");
	fails("contexts = ( \"a\" );\n", env, "contexts.[0]: expected a group", NULL, "context must be a group");
	fails("contexts = (\n { driver = \"sqlite\"; }\n);\n", env, at(2), "contexts.[0]: context has no 'name'",
	      "context without a name");
	fails("contexts = (\n { nmae = \"a\"; driver = \"sqlite\"; }\n);\n", env, at(2),
	      "contexts.[0]: context has no 'name' (is 'nmae' a misspelling of it?)", "a misspelt name is suggested");
	fails("contexts = ( { name = \"Main\"; driver = \"sqlite\"; } );\n", env, "'Main' is not a valid context name",
	      NULL, "context names are lowercase identifiers");
	fails("contexts = (\n { name = \"a\"; driver = \"sqlite\"; },\n\n { name = \"a\"; driver = \"tdb\"; }\n);\n",
	      env, at(4), at(2), "duplicate context names both places");
	fails("services = (\n { name = \"s\"; },\n { name = \"s\"; }\n);\n", env, "duplicate service 's'", at(2),
	      "duplicate service names both places");
	fails("services = ( { name = \"s\"; module = \"../evil\"; } );\n", env, "is not a module name", NULL,
	      "module is a stem, not a path");
	fails("log_level = \"loud\";\n", env, "log_level: expected one of error, warn, info, debug", NULL,
	      "log_level values");
	fails("server = { threads = 0; };\n", env, "server.threads: 'threads' must be in [1, 2147483647], got 0", NULL, "server.threads >= 1");
	fails("server = { listen = 80; };\n", env, "server.listen: expected string", NULL, "server.listen string");
}

static void test_env_overrides(void)
{
	emh__config cfg;
	emh_error err;
	static const char text[] =
		"contexts = (\n"
		"  { name = \"default\"; driver = \"sqlite\"; path = \"a.db\"; },\n"
		"  { name = \"app_db\"; driver = \"tdb\"; host = \"h\"; port = 1; password_env = \"APP_PW\"; },\n"
		"  { name = \"app\"; driver = \"tdb\"; host = \"h\"; }\n"
		");\n";
	const char *env[] = {
		"EMH_CONTEXT_APP_DB_HOST=db2",
		"EMH_CONTEXT_APP_DB_POOL_MAX=16",
		"EMH_CONTEXT_APP_DB_CONNECT_TIMEOUT=7",
		"EMH_CONTEXT_APP_DB_PASSWORD=envpw",
		"EMH_CONTEXT_APP_PORT=6000",
		"EMH_CONTEXT_DEFAULT_PATH=/tmp/x.db",
		"EMH_CONTEXT_APP_DB_HOST=ignored-second-occurrence",
		"UNRELATED=1",
		NULL,
	};
	int rc = load(text, env, &cfg, &err);
	is_int(rc, 0, "environment overrides apply");
	if (rc) {
		diag("%s", err.message);
		return;
	}
	emh__ctxconf *d = ctx(&cfg, "app_db"), *a = ctx(&cfg, "app"), *df = ctx(&cfg, "default");
	is_str(emh__ctxconf_get(d, "host"), "db2", "EMH_CONTEXT_APP_DB_HOST -> app_db.host (longest name)");
	is_str(origin_of(d, "host"), "env EMH_CONTEXT_APP_DB_HOST", "origin names the variable");
	ok(emh__settings_find(&d->s, "host")->path == NULL, "no config path for env values");
	is_str(emh__ctxconf_get(d, "pool.max"), "16", "POOL_MAX -> pool.max");
	is_str(emh__ctxconf_get(d, "connect_timeout"), "7", "driver key with '_' -> connect_timeout");
	is_str(emh__ctxconf_get(a, "port"), "6000", "EMH_CONTEXT_APP_PORT -> app.port");
	is_str(emh__ctxconf_get(a, "host"), "h", "app.host untouched");
	is_str(emh__ctxconf_get(df, "path"), "/tmp/x.db", "default.path overridden");
	ok(emh__settings_find(&d->s, "password_env") == NULL, "env password replaces the file's password_env");
	ok(secret_of(d, "password"), "env password is secret");
	is_int(emh__config_check_context(d, &tdb, env, &err), 0, "app_db checks");
	is_str(emh__ctxconf_get(d, "password"), "envpw", "password from the environment");
	is_str(cfg.default_context.value, "default", "context named default is the default");
	is_str(cfg.default_context.origin, "default", "default origin");
	emh__config_release(&cfg);

	/* ambiguous names: contexts "app" and "app_pool" */
	const char *env2[] = { "EMH_CONTEXT_APP_POOL_MAX=3", "EMH_CONTEXT_APP_POOL_HOST=hp", NULL };
	rc = load("default_context = \"app\";\ncontexts = ( { name = \"app\"; driver = \"tdb\"; },\n"
		  " { name = \"app_pool\"; driver = \"tdb\"; } );\n",
		  env2, &cfg, &err);
	is_int(rc, 0, "ambiguous split resolves");
	is_str(emh__ctxconf_get(ctx(&cfg, "app"), "pool.max"), "3", "APP_POOL_MAX: app + known key pool.max");
	is_str(emh__ctxconf_get(ctx(&cfg, "app_pool"), "host"), "hp", "APP_POOL_HOST: app_pool + host");
	emh__config_release(&cfg);

	/* int/bool from the environment checked naming the variable */
	const char *env3[] = { "EMH_CONTEXT_A_PORT=abc", NULL };
	rc = load("contexts = ( { name = \"a\"; driver = \"tdb\"; } );\n", env3, &cfg, &err);
	is_int(rc, 0, "bad int from env parses");
	rc = emh__config_check_context(ctx(&cfg, "a"), &tdb, env3, &err);
	is_int(rc, EMH_ECONFIG, "bad int from env: EMH_ECONFIG at check");
	like_str(err.message, "env EMH_CONTEXT_A_PORT", "names the variable");
	like_str(err.message, "expected integer, got 'abc'", "says what was expected");
	emh__config_release(&cfg);

	const char *env4[] = { "EMH_CONTEXT_A_VERBOSE=yes", "EMH_CONTEXT_A_REQUIRED=maybe", NULL };
	rc = load("contexts = ( { name = \"a\"; driver = \"tdb\"; } );\n", env4, &cfg, &err);
	rc = emh__config_check_context(ctx(&cfg, "a"), &tdb, env4, &err);
	is_int(rc, EMH_ECONFIG, "bad bool from env");
	like_str(err.message, "env EMH_CONTEXT_A_REQUIRED", "names the variable");
	like_str(err.message, "expected boolean", "says boolean");
	is_str(emh__ctxconf_get(ctx(&cfg, "a"), "verbose"), "true", "\"yes\" normalised to true");
	emh__config_release(&cfg);

	/* unknown key from env: rejected at check naming the variable */
	const char *env5[] = { "EMH_CONTEXT_A_HOTS=x", NULL };
	rc = load("contexts = ( { name = \"a\"; driver = \"tdb\"; } );\n", env5, &cfg, &err);
	is_int(rc, 0, "unknown key from env parses");
	rc = emh__config_check_context(ctx(&cfg, "a"), &tdb, env5, &err);
	is_int(rc, EMH_ECONFIG, "unknown key from env rejected at check");
	like_str(err.message, "env EMH_CONTEXT_A_HOTS", "names the variable");
	like_str(err.message, "unknown key 'hots' for driver 'tdb'", "names the key and driver");
	like_str(err.message, "did you mean 'host'?", "suggests the likely key");
	emh__config_release(&cfg);

	fails("contexts = ( { name = \"a\"; driver = \"tdb\"; } );\n",
	      (const char *const[]){ "EMH_CONTEXT_A_NAME=b", NULL }, "EMH_CONTEXT_A_NAME", "cannot be renamed",
	      "renaming from env is refused");
	fails("contexts = ( { name = \"a\"; driver = \"tdb\"; } );\n",
	      (const char *const[]){ "EMH_CONTEXT_FROB=1", NULL }, "env EMH_CONTEXT_FROB: cannot tell the context",
	      NULL, "unsplittable variable");
}

static void test_env_new_contexts(void)
{
	emh__config cfg;
	emh_error err;
	const char *env[] = {
		"EMH_CONTEXT_CACHE_DRIVER=sqlite",
		"EMH_CONTEXT_CACHE_BUSY_TIMEOUT=100",
		"EMH_CONTEXT_CACHE_PATH=/tmp/cache.db",
		"EMH_CONTEXT_REPORTING_URL=postgres://rep:p%40ss@db.example:6543/reports?sslmode=require",
		"EMH_CONTEXT_REPORTING_PORT=7000",
		"EMH_DEFAULT_CONTEXT=reporting",
		NULL,
	};
	int rc = load(NULL, env, &cfg, &err);
	is_int(rc, 0, "environment only: contexts created");
	if (rc) {
		diag("%s", err.message);
		return;
	}
	is_int(cfg.ncontexts, 2, "two new contexts");
	is_str(cfg.contexts[0].name, "cache", "new contexts in name order (1)");
	is_str(cfg.contexts[1].name, "reporting", "new contexts in name order (2)");
	emh__ctxconf *c = ctx(&cfg, "cache"), *r = ctx(&cfg, "reporting");
	is_str(c->origin, "env EMH_CONTEXT_CACHE_DRIVER", "a new context's origin is its DRIVER variable");
	is_str(emh__ctxconf_get(c, "path"), "/tmp/cache.db", "cache.path");
	is_str(emh__ctxconf_get(c, "busy_timeout"), "100", "cache.busy_timeout (driver key)");
	is_str(emh__ctxconf_get(r, "driver"), "tdb", "scheme postgres -> driver declaring it");
	is_str(origin_of(r, "driver"), "url (env EMH_CONTEXT_REPORTING_URL)", "driver origin from url");
	is_str(emh__ctxconf_get(r, "user"), "rep", "user from url");
	is_str(emh__ctxconf_get(r, "password"), "p@ss", "password from url, percent-decoded");
	ok(secret_of(r, "password"), "url password secret");
	ok(secret_of(r, "url"), "url with a password is secret");
	is_str(origin_of(r, "url"), "env EMH_CONTEXT_REPORTING_URL", "url origin is the variable");
	is_str(emh__ctxconf_get(r, "host"), "db.example", "host from url");
	is_str(emh__ctxconf_get(r, "port"), "7000", "PORT variable beats the url's port");
	is_str(emh__ctxconf_get(r, "database"), "reports", "database from url");
	is_str(emh__ctxconf_get(r, "sslmode"), "require", "query key from url");
	is_str(cfg.default_context.value, "reporting", "EMH_DEFAULT_CONTEXT picks the default");
	is_str(cfg.default_context.origin, "env EMH_DEFAULT_CONTEXT", "default origin is the variable");
	is_int(emh__config_check_context(r, &tdb, env, &err), 0, "url context checks against tdb");
	is_int(emh__config_check_context(c, &lite, env, &err), 0, "env context checks against sqlite");
	emh__config_release(&cfg);

	/* process environment (envp NULL) is read too: empty of EMH_CONTEXT_* here */
	rc = emh__config_parse(&cfg, NULL, NULL, &err);
	rc = rc ? rc : emh__config_apply_env(&cfg, NULL, drivers, ndrivers, &err);
	is_int(rc, 0, "process environment (envp NULL)");
	emh__config_release(&cfg);

	fails(NULL, (const char *const[]){ "EMH_CONTEXT_LONELY_HOST=h", NULL }, "env EMH_CONTEXT_LONELY_HOST",
	      "context 'lonely' has no driver", "new context without a driver names the variable");
	fails("contexts = ( { name = \"a\"; host = \"h\"; } );\n", (const char *const[]){ NULL }, at(1),
	      "context 'a' has no 'driver'", "file context without a driver");
	/* issue 13: a misspelt key is reported before the driver it left missing */
	fails("contexts = ( { name = \"x\"; drvier = \"sqlite\"; } );\n", (const char *const[]){ NULL },
	      "contexts.[0].drvier: unknown key 'drvier' (did you mean 'driver'? valid: name, driver, url,",
	      "and the keys of its driver)", "drvier: unknown key first, with the hint");
	fails("contexts = ( { name = \"x\"; path = \"p\"; sslmod = \"on\"; } );\n", (const char *const[]){ NULL },
	      "unknown key 'sslmod' (did you mean 'sslmode'?", NULL, "the hint may be any driver's key");
	fails("contexts = ( { name = \"x\"; path = \"p\"; mode = \"slow\"; } );\n", (const char *const[]){ NULL },
	      "context 'x' has no 'driver'", NULL, "keys some driver knows: the missing driver is what is said");
	fails("contexts = ( { name = \"a\"; host = \"h\"; } );\n", (const char *const[]){ "EMH_CONTEXT_A_PORT=1", NULL },
	      "env EMH_CONTEXT_A_PORT", "has no driver", "env-touched context without driver names the variable");
	fails(NULL, (const char *const[]){ "EMH_CONTEXT_X_DRIVER=sqlite", "EMH_CONTEXT_Y_DRIVER=sqlite", NULL },
	      "none is the default", "have: x, y", "several contexts, no default");
	fails("contexts = ( { name = \"a\"; driver = \"sqlite\"; } );\n",
	      (const char *const[]){ "EMH_DEFAULT_CONTEXT=nope", NULL }, "env EMH_DEFAULT_CONTEXT: no context 'nope'",
	      "have: a", "EMH_DEFAULT_CONTEXT naming a missing context lists the contexts");
	fails("default_context = \"b\";\ncontexts = ( { name = \"a\"; driver = \"sqlite\"; } );\n",
	      (const char *const[]){ NULL }, at(1), "no context 'b' (have: a)", "default_context naming a missing context");

	rc = load(NULL, (const char *const[]){ "EMH_CONTEXT_X_DRIVER=sqlite", "EMH_CONTEXT_Y_DRIVER=sqlite",
					      "EMH_DEFAULT_CONTEXT=Y", NULL },
		  &cfg, &err);
	is_int(rc, 0, "EMH_DEFAULT_CONTEXT upper-cased");
	is_str(cfg.default_context.value, "y", "EMH_DEFAULT_CONTEXT=Y names context y");
	emh__config_release(&cfg);

	/* the only context is the default */
	rc = load("contexts = ( { name = \"solo\"; driver = \"sqlite\"; } );\n", (const char *const[]){ NULL }, &cfg,
		  &err);
	is_int(rc, 0, "single context");
	is_str(cfg.default_context.value, "solo", "the only context is the default");
	emh__config_release(&cfg);
}

static void test_check_context(void)
{
	emh__config cfg;
	emh_error err;
	const char *const none[] = { NULL };
	int rc = load("contexts = (\n { name = \"a\"; driver = \"tdb\";\n   hots = \"x\"; } );\n", none, &cfg, &err);
	is_int(rc, 0, "unknown driver key parses");
	if (rc)
		bail("%s", err.message);
	rc = emh__config_check_context(ctx(&cfg, "a"), &tdb, none, &err);
	is_int(rc, EMH_ECONFIG, "unknown driver key rejected");
	like_str(err.message, at(3), "FILE:LINE");
	like_str(err.message, "contexts.[0].hots: unknown key 'hots' for driver 'tdb'", "names key and driver");
	like_str(err.message, "valid: host, port, user", "lists the driver's keys");
	like_str(err.message, "pool.max", "and the common ones");
	emh__config_release(&cfg);

	rc = load("default_context = \"a\"; contexts = (\n { name = \"a\"; driver = \"tdb\"; },\n { name = \"b\"; driver = \"tdb\";\n"
		  "   port = \"abc\"; } );\n",
		  none, &cfg, &err);
	rc = emh__config_check_context(ctx(&cfg, "b"), &tdb, none, &err);
	is_int(rc, EMH_ECONFIG, "string for an int key");
	like_str(err.message, "t.conf:4: contexts.[1].port: expected integer", "FILE:LINE: path: expected integer");
	emh__config_release(&cfg);

	rc = load("contexts = ( { name = \"b\"; driver = \"tdb\"; port = \"${PORT:-5433}\"; host = 7; } );\n", none, &cfg,
		  &err);
	rc = emh__config_check_context(ctx(&cfg, "b"), &tdb, none, &err);
	is_int(rc, EMH_ECONFIG, "int for a string key");
	like_str(err.message, "contexts.[0].host: expected string", "expected string");
	is_str(emh__ctxconf_get(ctx(&cfg, "b"), "port"), "5433", "a string spelling an integer is accepted");
	emh__config_release(&cfg);

	rc = load("contexts = ( { name = \"b\"; driver = \"tdb\"; verbose = 1; } );\n", none, &cfg, &err);
	rc = emh__config_check_context(ctx(&cfg, "b"), &tdb, none, &err);
	is_int(rc, EMH_ECONFIG, "integer for a bool key");
	like_str(err.message, "contexts.[0].verbose: expected boolean", "expected boolean");
	emh__config_release(&cfg);

	rc = load("contexts = (\n { name = \"b\"; driver = \"tdb\";\n pool = { min = 12; }; } );\n", none, &cfg, &err);
	rc = emh__config_check_context(ctx(&cfg, "b"), &tdb, none, &err);
	is_int(rc, EMH_ECONFIG, "pool.min above the default max");
	like_str(err.message, "pool.min (12) is greater than pool.max (8, default)", "names both values");
	like_str(err.message, at(3), "and where min is");
	emh__config_release(&cfg);

	const char *env[] = { "EMH_CONTEXT_B_POOL_MAX=0", NULL };
	rc = load("contexts = ( { name = \"b\"; driver = \"tdb\"; } );\n", env, &cfg, &err);
	rc = emh__config_check_context(ctx(&cfg, "b"), &tdb, env, &err);
	is_int(rc, EMH_ECONFIG, "pool.max 0 from env");
	like_str(err.message, "env EMH_CONTEXT_B_POOL_MAX", "names the variable");
	like_str(err.message, "'pool.max' must be in [1, 2147483647], got 0", "says the range and the value");
	emh__config_release(&cfg);

	/* no driver given: only the common keys are valid */
	rc = load("contexts = ( { name = \"b\"; driver = \"tdb\"; host = \"h\"; } );\n", none, &cfg, &err);
	rc = emh__config_check_context(ctx(&cfg, "b"), NULL, none, &err);
	is_int(rc, EMH_ECONFIG, "NULL driver: driver keys unknown");
	emh__config_release(&cfg);
}

/* emh_param_spec.def/min/max: defaults filled with origin "default", one range check for every source. */
static void test_defaults_and_ranges(void)
{
	emh__config cfg;
	emh_error err;
	const char *const none[] = { NULL };
	int rc = load("contexts = ( { name = \"a\"; driver = \"tdb\"; any_int = -5000000000L; } );\n", none, &cfg, &err);
	is_int(rc, 0, "loads");
	emh__ctxconf *a = ctx(&cfg, "a");
	is_int(emh__config_check_context(a, &tdb, none, &err), 0, "checks");
	is_str(emh__ctxconf_get(a, "retries"), "3", "an unset driver key gets its default");
	is_str(origin_of(a, "retries"), "default", "origin default");
	is_str(emh__ctxconf_get(a, "mode"), "fast", "string default");
	ok(emh__ctxconf_get(a, "port") == NULL, "a key without a default stays unset");
	is_str(emh__ctxconf_get(a, "pool.max"), "8", "common default");
	is_str(emh__ctxconf_get(a, "any_int"), "-5000000000", "no range: any integer");
	emh__config_release(&cfg);

	static const struct {
		const char *text, *env[3], *want, *name;
	} bad[] = {
		{ "contexts = (\n { name = \"a\"; driver = \"tdb\";\n   port = 70000; } );\n", { NULL },
		  "t.conf:3: contexts.[0].port: 'port' must be in [1, 65535], got 70000", "driver key from the file" },
		{ "contexts = ( { name = \"a\"; driver = \"tdb\"; port = \"${P:-0}\"; } );\n", { NULL },
		  "contexts.[0].port: 'port' must be in [1, 65535], got 0", "a string spelling an integer" },
		{ "contexts = ( { name = \"a\"; driver = \"tdb\"; } );\n", { "EMH_CONTEXT_A_PORT=65536", NULL },
		  "env EMH_CONTEXT_A_PORT: context 'a', key 'port': 'port' must be in [1, 65535], got 65536",
		  "driver key from the environment" },
		{ "contexts = ( { name = \"a\"; driver = \"tdb\"; retries = 11; } );\n", { NULL },
		  "'retries' must be in [0, 10], got 11", "above max" },
		{ "contexts = ( { name = \"a\"; url = \"postgres://h/db?retries=-1\"; } );\n", { NULL },
		  "/t.conf:1): context 'a', key 'retries': 'retries' must be in [0, 10], got -1", "from a url's query" },
		{ "contexts = ( { name = \"a\"; driver = \"tdb\"; } );\n", { "EMH_CONTEXT_A_POOL_IDLE_TIMEOUT_MS=2147483648", NULL },
		  "'pool.idle_timeout_ms' must be in [0, 2147483647], got 2147483648", "common key from the environment" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		rc = load(bad[i].text, bad[i].env, &cfg, &err);
		is_int(rc, 0, "%s: loads", bad[i].name);
		rc = rc ? rc : emh__config_check_context(ctx(&cfg, "a"), &tdb, bad[i].env, &err);
		is_int(rc, EMH_ECONFIG, "%s: EMH_ECONFIG", bad[i].name);
		like_str(err.message, bad[i].want, "%s: names where, the key, the range and the value", bad[i].name);
		emh__config_release(&cfg);
	}
	fails("contexts = ( { name = \"a\"; driver = \"tdb\"; pool = { acquire_timeout_ms = 4294967296L; }; } );\n", none,
	      "contexts.[0].pool.acquire_timeout_ms: 'pool.acquire_timeout_ms' must be in [0, 2147483647], got 4294967296",
	      NULL, "common key from the file: at parse time");
	fails("server = { max_body = -1; };\n", none, "server.max_body: 'max_body' must be in [0, 2147483647], got -1",
	      NULL, "server key");

	/* a driver whose default is not of its kind: named as the default */
	static const emh_param_spec badspec[] = {
		{ .key = "n", .kind = EMH_PARAM_INT, .def = "many" },
		{ .key = "m", .kind = EMH_PARAM_INT, .def = "0", .min = 1, .max = 2 },
		{ .key = NULL },
	};
	emh_driver bd = tdb;
	bd.params = badspec;
	rc = load("contexts = ( { name = \"a\"; driver = \"tdb\"; } );\n", none, &cfg, &err);
	rc = rc ? rc : emh__config_check_context(ctx(&cfg, "a"), &bd, none, &err);
	is_int(rc, EMH_ECONFIG, "a driver's bad default");
	like_str(err.message, "default: context 'a', key 'n': expected integer, got 'many'", "is named as the default");
	emh__config_release(&cfg);
	bd.params = badspec + 1;
	rc = load("contexts = ( { name = \"a\"; driver = \"tdb\"; } );\n", none, &cfg, &err);
	rc = rc ? rc : emh__config_check_context(ctx(&cfg, "a"), &bd, none, &err);
	is_int(rc, EMH_ECONFIG, "a driver's default outside its range");
	like_str(err.message, "default: context 'a', key 'm': 'm' must be in [1, 2], got 0", "is named as the default");
	emh__config_release(&cfg);
}

/* A string of n copies of c (static storage, one at a time per slot). */
static const char *rep(int slot, char c, size_t n)
{
	static char buf[4][1200];
	if (n >= sizeof buf[slot])
		bail("rep: %zu is too long", n);
	memset(buf[slot], c, n);
	buf[slot][n] = '\0';
	return buf[slot];
}

/* Issue 11 item 6 and its kin: no name, key or variable is ever cut to fit; too long is an error naming it. */
static void test_long_names(void)
{
	emh__config cfg;
	emh_error err;
	char text[4000], var[1500];
	const char *const none[] = { NULL };

	/* the issue: a 127-byte context and EMH_DEFAULT_CONTEXT = it + more used to select it */
	snprintf(text, sizeof text,
		 "contexts = ( { name = \"%s\"; driver = \"sqlite\"; }, { name = \"b\"; driver = \"sqlite\"; } );\n",
		 rep(0, 'n', 127));
	snprintf(var, sizeof var, "EMH_DEFAULT_CONTEXT=%sXYZ", rep(1, 'N', 127));
	int rc = load(text, (const char *const[]){ var, NULL }, &cfg, &err);
	is_int(rc, EMH_ECONFIG, "a 127-byte context name and a longer EMH_DEFAULT_CONTEXT: an error, not a pick");
	like_str(err.message, "is not a valid context name (longer than 63 bytes)", "the name is too long");
	emh__config_release(&cfg);

	snprintf(text, sizeof text,
		 "contexts = ( { name = \"%s\"; driver = \"sqlite\"; }, { name = \"b\"; driver = \"sqlite\"; } );\n",
		 rep(0, 'n', 63));
	snprintf(var, sizeof var, "EMH_DEFAULT_CONTEXT=%s", rep(1, 'N', 63));
	rc = load(text, (const char *const[]){ var, NULL }, &cfg, &err);
	is_int(rc, 0, "a 63-byte name is fine, and EMH_DEFAULT_CONTEXT in capitals names it");
	is_str(cfg.default_context.value, rep(0, 'n', 63), "the default");
	emh__config_release(&cfg);
	snprintf(var, sizeof var, "EMH_DEFAULT_CONTEXT=%s", rep(1, 'n', 64));
	rc = load(text, (const char *const[]){ var, NULL }, &cfg, &err);
	is_int(rc, EMH_ECONFIG, "EMH_DEFAULT_CONTEXT one byte longer than a name");
	like_str(err.message, "(64 bytes) is longer than a context name can be (63 bytes)", "says so");
	like_str(err.message, rep(0, 'n', 64), "naming it");
	emh__config_release(&cfg);
	snprintf(var, sizeof var, "EMH_DEFAULT_CONTEXT=%s", rep(1, 'n', 1000));
	rc = load(text, (const char *const[]){ var, NULL }, &cfg, &err);
	like_str(err.message, "...' (1000 bytes) is longer than a context name can be", "a very long one: its start and size");
	emh__config_release(&cfg);

	/* context and service names from the file and the environment */
	snprintf(text, sizeof text, "contexts = ( { name = \"%s\"; driver = \"sqlite\"; } );\n", rep(0, 'c', 64));
	fails(text, none, "contexts.[0].name: '", "(longer than 63 bytes)", "a 64-byte context name in the file");
	snprintf(text, sizeof text, "services = ( { name = \"%s\"; } );\n", rep(0, 's', 64));
	fails(text, none, "is not a valid service name (longer than 63 bytes)", NULL, "a 64-byte service name");
	snprintf(var, sizeof var, "EMH_CONTEXT_%s_DRIVER=sqlite", rep(1, 'E', 64));
	fails(NULL, (const char *const[]){ var, NULL }, "is not a valid context name (longer than 63 bytes)",
	      "env EMH_CONTEXT_EEEE", "a 64-byte context name from the environment names the variable");

	/* a long driver key with a '.' set from the environment (a 64-byte buffer used to drop it) */
	rc = load("contexts = ( { name = \"a\"; driver = \"tdb\"; } );\n",
		  (const char *const[]){ "EMH_CONTEXT_A_OPTS_A_DRIVER_KEY_LONGER_THAN_THE_SIXTY_FOUR_BYTES_A_BUFFER_ONCE_HELD=v",
					 NULL },
		  &cfg, &err);
	is_int(rc, 0, "a 70-byte driver key from the environment");
	is_str(emh__ctxconf_get(ctx(&cfg, "a"), "opts.a_driver_key_longer_than_the_sixty_four_bytes_a_buffer_once_held"),
	       "v", "sets that key");
	is_int(emh__config_check_context(ctx(&cfg, "a"), &tdb, none, &err), 0, "and checks");
	emh__config_release(&cfg);

	/* a password_env variable of 400 bytes: its origin whole */
	snprintf(var, sizeof var, "%s=pw", rep(1, 'P', 400));
	snprintf(text, sizeof text, "contexts = ( { name = \"a\"; driver = \"tdb\"; password_env = \"%s\"; } );\n",
		 rep(0, 'P', 400));
	const char *env[] = { var, NULL };
	rc = load(text, env, &cfg, &err);
	rc = rc ? rc : emh__config_check_context(ctx(&cfg, "a"), &tdb, env, &err);
	is_int(rc, 0, "a 400-byte password_env");
	char want[1600];
	snprintf(want, sizeof want, "env %s", rep(0, 'P', 400));
	is_str(origin_of(ctx(&cfg, "a"), "password"), want, "the password's origin names the variable whole");
	is_int(emh__config_check_context(ctx(&cfg, "a"), &tdb, env, &err), 0, "checking again agrees");
	emh__config_release(&cfg);

	/* a configuration file deep in directories: FILE:LINE whole (a 256-byte buffer used to cut it) */
	char top[1500], dir[3000];
	snprintf(top, sizeof top, "%s/%s", tmpdir, rep(0, 'd', 200));
	snprintf(dir, sizeof dir, "%s/%s", top, rep(1, 'e', 200));
	if (mkdir(top, 0700) != 0 || mkdir(dir, 0700) != 0)
		bail("mkdir %s", dir);
	char path[3100];
	snprintf(path, sizeof path, "%s/deep.conf", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		bail("cannot write %s", path);
	fputs("contexts = (\n { name = \"a\"; driver = \"sqlite\";\n   path = \"x.db\"; } );\n", f);
	fclose(f);
	rc = emh__config_parse(&cfg, path, none, &err);
	is_int(rc, 0, "a file with a %zu-byte path", strlen(path));
	snprintf(want, sizeof want, "%s:3", path);
	is_str(rc ? NULL : origin_of(&cfg.contexts[0], "path"), want, "origins carry its whole path");
	emh__config_release(&cfg);
}

static void test_settings_api(void)
{
	emh__settings s = { 0 };
	is_int(emh__settings_set(&s, "k", "v1", "o1", NULL, 0, false), 0, "set");
	is_int(emh__settings_set(&s, "k2", "v", "o", "p", 1, true), 0, "set another");
	is_int(emh__settings_set(&s, "k", "v2", "o2", NULL, 0, false), 0, "replace");
	is_int(s.n, 2, "replace keeps one entry");
	is_str(emh__settings_find(&s, "k")->value, "v2", "replaced value");
	is_str(emh__settings_find(&s, "k")->origin, "o2", "replaced origin");
	ok(emh__settings_find(&s, "nope") == NULL, "absent key");
	ok(emh__settings_find(NULL, "k") == NULL, "NULL settings");
	emh__settings_release(&s);
	is_int(s.n, 0, "released");
	ok(emh__getenv((const char *const[]){ "AB=1", "A=2", NULL }, "A") != NULL &&
		   strcmp(emh__getenv((const char *const[]){ "AB=1", "A=2", NULL }, "A"), "2") == 0,
	   "getenv matches whole names");
	ok(emh__common_context_keys[0].key && strcmp(emh__common_context_keys[0].key, "name") == 0,
	   "common keys start with name");
	size_t n = 0;
	while (emh__common_context_keys[n].key)
		n++;
	is_int(n, 21, "21 common keys");
	ok(emh__spec_find(emh__common_context_keys, "replica_urls") &&
		   (emh__spec_find(emh__common_context_keys, "replica_urls")->flags & EMH_PARAM_SECRET) &&
		   emh__spec_find(emh__common_context_keys, "max_replica_lag_ms"),
	   "the replicas' keys are common keys, replica_urls secret");
	ok(emh__spec_find(emh__common_context_keys, "log_queries") &&
		   emh__spec_find(emh__common_context_keys, "log_query_values") &&
		   emh__spec_find(emh__common_context_keys, "slow_query_ms"),
	   "the query log's keys are common keys");
	ok(emh__spec_find(emh__common_context_keys, "statement_timeout_ms") &&
		   emh__spec_find(emh__common_context_keys, "connect_timeout_ms"),
	   "the deadlines' keys are common keys");
}

/*
 * A url from the environment replaces the file's url whole: no piece of the
 * file's url stays, its password least of all; the file's explicit keys do
 * (found by review: password, connect_timeout and sslmode of the file's url
 * stayed under the env url).
 */
static void test_env_url_over_file_url(void)
{
	emh__config cfg;
	emh_error err;
	const char *env[] = { "EMH_CONTEXT_MY_URL=postgres://other@db2/app2", NULL };
	int rc = load("contexts = ( { name = \"my\";\n"
		      "  url = \"postgres://app:oldpw@db1/app?sslmode=verify-full&connect_timeout=100\";\n"
		      "  verbose = true; } );\n",
		      env, &cfg, &err);
	is_int(rc, 0, "env url over a file url: loads");
	if (rc) {
		diag("%s", err.message);
		return;
	}
	emh__ctxconf *c = ctx(&cfg, "my");
	is_str(emh__ctxconf_get(c, "user"), "other", "user from the env url");
	is_str(emh__ctxconf_get(c, "host"), "db2", "host from the env url");
	is_str(emh__ctxconf_get(c, "database"), "app2", "database from the env url");
	ok(emh__ctxconf_get(c, "password") == NULL, "the file url's password is gone");
	ok(emh__ctxconf_get(c, "sslmode") == NULL, "the file url's query key sslmode is gone");
	ok(emh__ctxconf_get(c, "connect_timeout") == NULL, "the file url's query key connect_timeout is gone");
	is_str(emh__ctxconf_get(c, "verbose"), "true", "an explicit key of the file stays");
	is_str(origin_of(c, "verbose"), at(3), "with its origin");
	for (size_t i = 0; i < c->s.n; i++)
		if (c->s.v[i].origin && strstr(c->s.v[i].origin, "t.conf") && strcmp(c->s.v[i].key, "verbose") != 0)
			diag("left from the file: %s (%s)", c->s.v[i].key, c->s.v[i].origin);
	is_int(emh__config_check_context(c, &tdb, env, &err), 0, "and checks");
	emh__config_release(&cfg);
}

/*
 * A url whose scheme is not one of the context's driver's: the driver never
 * reads the url and would connect elsewhere (found by review: driver =
 * "mysql" next to a postgres:// url checked fine).  Refused at check time.
 */
static void test_url_scheme_driver(void)
{
	/* myq: tdb's keys under other schemes, as mysql beside postgres */
	static const char *const myq_schemes[] = { "myq", "mariadbq", NULL };
	emh_driver myq = tdb;
	myq.name = "myq";
	myq.url_schemes = myq_schemes;
	emh__config cfg;
	emh_error err;
	const char *const none[] = { NULL };
	int rc = load("contexts = (\n { name = \"db\"; driver = \"myq\";\n"
		      "   url = \"postgres://app:Pw-Mis-1@pg.example:5432/app\"; } );\n",
		      none, &cfg, &err);
	is_int(rc, 0, "file: driver myq with a postgres url loads");
	rc = rc ? rc : emh__config_check_context(ctx(&cfg, "db"), &myq, none, &err);
	is_int(rc, EMH_ECONFIG, "file: scheme and driver disagree: EMH_ECONFIG");
	like_str(err.message, "url scheme 'postgres' is not one of driver 'myq' (myq, mariadbq)",
		 "file: says which scheme and driver");
	like_str(err.message, at(3), "file: and where the url is");
	ok(strstr(err.message, "Pw-Mis-1") == NULL, "file: without the password");
	emh__config_release(&cfg);

	const char *env[] = { "EMH_CONTEXT_X_URL=postgres://app:Pw-Mis-2@pg.example/app", "EMH_CONTEXT_X_DRIVER=myq",
			      NULL };
	rc = load(NULL, env, &cfg, &err);
	is_int(rc, 0, "env: driver myq with a postgres url loads");
	rc = rc ? rc : emh__config_check_context(ctx(&cfg, "x"), &myq, env, &err);
	is_int(rc, EMH_ECONFIG, "env: scheme and driver disagree: EMH_ECONFIG");
	like_str(err.message, "url scheme 'postgres' is not one of driver 'myq'", "env: says so");
	like_str(err.message, "EMH_CONTEXT_X_URL", "env: names the variable");
	ok(strstr(err.message, "Pw-Mis-2") == NULL, "env: without the password");
	emh__config_release(&cfg);

	/* agreeing: any of the driver's schemes, any case */
	rc = load("contexts = ( { name = \"db\"; driver = \"tdb\"; url = \"PostgreSQL://h/app\"; } );\n", none, &cfg,
		  &err);
	rc = rc ? rc : emh__config_check_context(ctx(&cfg, "db"), &tdb, none, &err);
	is_int(rc, 0, "a scheme of the driver, another case: fine");
	emh__config_release(&cfg);
}

int main(void)
{
	cfgtest_init();
	test_no_file();
	test_full_file();
	test_parse_errors();
	test_env_overrides();
	test_env_new_contexts();
	test_check_context();
	test_defaults_and_ranges();
	test_long_names();
	test_settings_api();
	test_env_url_over_file_url();
	test_url_scheme_driver();
	return cfgtest_done();
}
