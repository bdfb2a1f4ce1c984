/* SPDX-License-Identifier: MIT */
/*
 * tests/config/test_url.c: connection URLs in the three forms drivers
 * declare (network, file, whole), and passwords in every way they can be
 * given: never shown, never in an error, never taken for a host or a
 * database.
 */
#include "config.h"

#include <emhost/emhost.h>

#include "cfgtest.h"
#include "internal.h" /* struct emh_params, to read settings as a driver does */
#include "../unit/memdrv.h"

/*
 * memdoc: a third-party document driver the core has never heard of.  Its
 * URLs (memdoc:, memdoc://h/db, several hosts...) are handed to it whole.
 * Built from memdrv (a working driver) with its own name, schemes and keys.
 */
static const emh_param_spec memdoc_params[] = {
	{ .key = "host", .kind = EMH_PARAM_STRING, .help = "overrides the url's host" },
	{ .key = "timeout_ms", .kind = EMH_PARAM_INT, .help = "ms", .def = "250", .min = 1, .max = 60000 },
	{ .key = "token", .kind = EMH_PARAM_STRING, .flags = EMH_PARAM_SECRET, .help = "access token" },
	{ .key = NULL },
};
static const char *const memdoc_schemes[] = { "memdoc", "memdoc+srv", NULL };
static emh_driver memdoc;

/* What memdoc's context_open was handed, for the test to compare. */
static char seen_url[512], seen_password[128];

static int memdoc_open(const emh_params *p, emh_dctx **out, emh_error *err)
{
	(void)err;
	const char *u = emh_params_get(p, "url"), *pw = emh_params_get(p, "password");
	snprintf(seen_url, sizeof seen_url, "%s", u ? u : "(unset)");
	snprintf(seen_password, sizeof seen_password, "%s", pw ? pw : "(unset)");
	*out = NULL;
	return 0;
}
static void memdoc_close(emh_dctx *dc) { (void)dc; }

static void memdoc_init(void)
{
	memdoc = memdrv;
	memdoc.name = "memdoc";
	memdoc.url_schemes = memdoc_schemes;
	memdoc.url_form = EMH_URL_WHOLE;
	memdoc.params = memdoc_params;
	memdoc.context_open = memdoc_open;
	memdoc.context_close = memdoc_close;
	drivers[ndrivers++] = &memdoc;
}

/* Apply url to a fresh context c (released by the caller). */
static int url(const char *u, emh__ctxconf *c, emh_error *err)
{
	*c = (emh__ctxconf){ 0 };
	c->name = strdup("u");
	emh_error_clear(err);
	return emh__url_apply(c, u, "url (test)", drivers, ndrivers, err);
}

static void test_file_form(void)
{
	emh__ctxconf c;
	emh_error err;

	is_int(url("sqlite:///var/lib/app%20x.db", &c, &err), 0, "sqlite:///abs");
	is_str(emh__ctxconf_get(&c, "driver"), "sqlite", "the driver declaring the scheme");
	is_str(emh__ctxconf_get(&c, "path"), "/var/lib/app x.db", "absolute path, percent-decoded");
	is_str(emh__ctxconf_get(&c, "url"), "sqlite:///var/lib/app%20x.db", "url kept");
	is_str(origin_of(&c, "url"), "test", "url origin is the outer origin");
	is_str(origin_of(&c, "path"), "url (test)", "path origin");
	ok(!secret_of(&c, "url"), "url without password not secret");
	is_str(shown_of(&c, "url"), "sqlite:///var/lib/app%20x.db", "shown as is");
	emh__ctxconf_release(&c);

	is_int(url("SQLite3://data/app.db?busy_timeout=50", &c, &err), 0, "sqlite3://rel (scheme case ignored)");
	is_str(emh__ctxconf_get(&c, "path"), "data/app.db", "relative path");
	is_str(emh__ctxconf_get(&c, "busy_timeout"), "50", "query key");
	emh__ctxconf_release(&c);

	is_int(url("sqlite::memory:", &c, &err), 0, "sqlite::memory:");
	is_str(emh__ctxconf_get(&c, "path"), ":memory:", "memory path");
	emh__ctxconf_release(&c);

	is_int(url("sqlite://", &c, &err), EMH_ECONFIG, "no path");
	like_str(err.message, "url (test): the url names no file (sqlite:///abs/path", "says what is missing");
	emh__ctxconf_release(&c);
}

static void test_network_form(void)
{
	emh__ctxconf c;
	emh_error err;

	is_int(url("postgresql://alice@[::1]:5433/app", &c, &err), 0, "postgresql:// with ipv6 host");
	is_str(emh__ctxconf_get(&c, "driver"), "tdb", "postgresql scheme -> the driver declaring it");
	is_str(emh__ctxconf_get(&c, "host"), "::1", "ipv6 host");
	is_str(emh__ctxconf_get(&c, "port"), "5433", "port");
	is_str(emh__ctxconf_get(&c, "user"), "alice", "user without password");
	ok(emh__ctxconf_get(&c, "password") == NULL, "no password");
	ok(secret_of(&c, "url"), "any url with userinfo is secret");
	is_str(shown_of(&c, "url"), "postgresql://alice@[::1]:5433/app", "no password to mask: shown as is");
	emh__ctxconf_release(&c);

	is_int(url("postgres://root:pw%3Ax@db:03307/shop?connect_timeout=5&verbose", &c, &err), 0, "postgres://");
	is_str(emh__ctxconf_get(&c, "password"), "pw:x", "password decoded");
	is_str(emh__ctxconf_get(&c, "port"), "3307", "port in decimal");
	is_str(emh__ctxconf_get(&c, "database"), "shop", "database");
	is_str(emh__ctxconf_get(&c, "connect_timeout"), "5", "query key");
	is_str(emh__ctxconf_get(&c, "verbose"), "true", "query key without value");
	ok(secret_of(&c, "url") && secret_of(&c, "password"), "secrets marked");
	is_str(shown_of(&c, "url"), "postgres://root:********@db:03307/shop?connect_timeout=5&verbose",
	       "url shown with its password masked");
	is_str(shown_of(&c, "password"), "********", "password shown masked");
	emh__ctxconf_release(&c);

	/*
	 * several hosts: a network url is split into one host and port, so the
	 * others would be dropped without a word (found by review:
	 * mysql://app@db1:3306,db2:3307/app connected to db1 only).  Refused.
	 */
	static const char *const multi[] = {
		"postgres://u:Pw-Multi-1@h1:27017,h2:27018,[::1]:27019/appdb?replicaSet=rs0&w=majority",
		"postgres://app@db1:3306,db2:3307/app",
		"postgres://[::1]:1,h2/app",
		"postgres://h1,/app",
	};
	for (size_t i = 0; i < sizeof multi / sizeof *multi; i++) {
		is_int(url(multi[i], &c, &err), EMH_ECONFIG, "several hosts in a network url refused (%zu)", i);
		like_str(err.message, "url (test): the url names several hosts", "says so (%zu)", i);
		like_str(err.message, "a network url takes one host", "and what it takes (%zu)", i);
		ok(!strstr(err.message, "Pw-Multi-1") && !strstr(err.message, "db2"), "without echoing the url (%zu)", i);
		emh__ctxconf_release(&c);
	}

	is_int(url("postgres://h/db?password=qp&sslpassword=kp", &c, &err), 0, "passwords in the query");
	ok(secret_of(&c, "password") && secret_of(&c, "url"), "query password secret, url too");
	ok(secret_of(&c, "sslpassword"), "any key naming a password is secret");
	is_str(shown_of(&c, "url"), "postgres://h/db?password=********&sslpassword=********", "both masked");
	emh__ctxconf_release(&c);

	/* replace: a url from the environment or the api drops the connection keys the context had */
	c = (emh__ctxconf){ 0 };
	c.name = strdup("u");
	emh__settings_set(&c.s, "driver", "sqlite", "f:1", NULL, 0, false);
	emh__settings_set(&c.s, "path", "/x.db", "f:2", NULL, 0, false);
	emh__settings_set(&c.s, "pool.max", "3", "f:3", NULL, 0, false);
	emh__settings_set(&c.s, "password_env", "PW", "f:4", NULL, 0, false);
	is_int(emh__url_apply(&c, "postgres://h/db", "url (env X)", drivers, ndrivers, &err), 0, "url over a context");
	ok(emh__ctxconf_get(&c, "path") == NULL, "old connection key dropped");
	is_str(emh__ctxconf_get(&c, "pool.max"), "3", "pool kept");
	is_str(emh__ctxconf_get(&c, "password_env"), "PW", "password_env kept when the url has no password");
	is_str(emh__ctxconf_get(&c, "driver"), "tdb", "driver replaced");
	emh__ctxconf_release(&c);
}

static void test_whole_form(void)
{
	emh__ctxconf c;
	emh_error err;

	is_int(url("memdoc:", &c, &err), 0, "memdoc: (a driver the core does not know)");
	is_str(emh__ctxconf_get(&c, "driver"), "memdoc", "driver from its declared scheme");
	is_str(emh__ctxconf_get(&c, "url"), "memdoc:", "url kept");
	ok(!secret_of(&c, "url"), "nothing secret");
	is_int(c.s.n, 2, "only url and driver");
	emh__ctxconf_release(&c);

	is_int(url("memdoc://h/db", &c, &err), 0, "memdoc://h/db");
	is_str(emh__ctxconf_get(&c, "url"), "memdoc://h/db", "url kept whole");
	ok(emh__ctxconf_get(&c, "host") == NULL && emh__ctxconf_get(&c, "database") == NULL, "not split");
	emh__ctxconf_release(&c);

	static const char multi[] = "memdoc://u:Pw-Multi-1@h1:5432,h2:5433/db?target_session_attrs=read-write";
	is_int(url(multi, &c, &err), 0, "several hosts and an option only the client knows");
	is_str(emh__ctxconf_get(&c, "url"), multi, "kept intact for the driver");
	ok(secret_of(&c, "url"), "secret: it has userinfo");
	is_str(shown_of(&c, "url"), "memdoc://u:********@h1:5432,h2:5433/db?target_session_attrs=read-write",
	       "shown with the password masked");
	ok(emh__ctxconf_get(&c, "password") == NULL && emh__ctxconf_get(&c, "user") == NULL,
	   "userinfo left to the driver");
	emh__ctxconf_release(&c);

	is_int(url("MEMDOC+SRV://cluster.example/db", &c, &err), 0, "scheme with '+', any case");
	is_str(emh__ctxconf_get(&c, "driver"), "memdoc", "memdoc+srv -> memdoc");
	emh__ctxconf_release(&c);

	/* over a context: the keys the url covers go, so the environment still beats the file */
	c = (emh__ctxconf){ 0 };
	c.name = strdup("u");
	emh__settings_set(&c.s, "driver", "tdb", "f:1", NULL, 0, false);
	emh__settings_set(&c.s, "host", "filehost", "f:2", NULL, 0, false);
	emh__settings_set(&c.s, "timeout_ms", "9", "f:3", NULL, 0, false);
	emh__settings_set(&c.s, "token", "t", "f:4", NULL, 0, false);
	emh__settings_set(&c.s, "password_env", "PW", "f:5", NULL, 0, false);
	is_int(emh__url_apply(&c, "memdoc://h2/db?timeout_ms=100", "url (env X)", drivers, ndrivers, &err), 0,
	       "whole url over a context");
	ok(emh__ctxconf_get(&c, "host") == NULL, "host covered by the url: dropped");
	ok(emh__ctxconf_get(&c, "timeout_ms") == NULL, "a key the url's query names: dropped");
	is_str(emh__ctxconf_get(&c, "token"), "t", "other keys kept");
	is_str(emh__ctxconf_get(&c, "password_env"), "PW", "password_env kept: no password in the url");
	is_int(emh__url_apply(&c, "memdoc://u:p@h3/db", "url (env X)", drivers, ndrivers, &err), 0, "again, with a password");
	ok(emh__ctxconf_get(&c, "password_env") == NULL, "a password in the url replaces password_env");
	emh__ctxconf_release(&c);

	is_int(url("memdoc://u:a/b@h/db", &c, &err), EMH_ECONFIG, "a '/' in a whole url's password is refused");
	like_str(err.message, "percent-encode it (%2F)", "says how to write it");
	ok(strstr(err.message, "a/b") == NULL, "without echoing it");
	emh__ctxconf_release(&c);
}

static void test_bad_urls(void)
{
	emh__ctxconf c;
	emh_error err;
	static const struct {
		const char *u, *want, *name;
	} bad[] = {
		{ "redis://u:p@h", "unknown url scheme 'redis' (schemes of the loaded drivers: tdb, postgres, postgresql, "
				   "sqlite, sqlite3, memdoc, memdoc+srv)", "unknown scheme lists the loaded drivers' schemes" },
		{ "postgres://u:p@h:99999/db", "url (test): 'port' must be in [1, 65535], got 99999", "port range" },
		{ "postgres://u:p@h:0/db", "'port' must be in [1, 65535], got 0", "port 0" },
		{ "postgres://u:p@h:5x/db", "bad port", "bad port" },
		{ "postgres://u:p%zz@h/db", "bad percent-escape", "bad percent escape" },
		{ "postgres://u:p%0@h/db", "bad percent-escape", "short percent escape" },
		{ "postgres://u:p%00@h/db", "bad percent-escape", "no NUL through %00" },
		{ "postgres:u:p@h/db", "expected '//'", "missing //" },
		{ "u:p@h not a url", "unknown url scheme 'u'", "no scheme" },
		{ "not a url", "not a url", "not a url" },
		{ "postgres://u:p@[::1/db", "unterminated '['", "bad ipv6" },
		{ "postgres://u:p@h/db?=x", "empty parameter name", "empty query key" },
		{ "postgres://u:1?x@h/db", "'@' in a parameter name", "a '?' in a password is refused" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		int rc = url(bad[i].u, &c, &err);
		is_int(rc, EMH_ECONFIG, "%s: EMH_ECONFIG", bad[i].name);
		like_str(err.message, bad[i].want, "%s: message", bad[i].name);
		ok(strstr(err.message, "u:p") == NULL && strstr(err.message, "u:1") == NULL,
		   "%s: message does not echo the url", bad[i].name);
		emh__ctxconf_release(&c);
	}
	c = (emh__ctxconf){ 0 };
	is_int(emh__url_apply(&c, "memdoc://h", "api", NULL, 0, &err), EMH_ECONFIG, "no drivers loaded");
	like_str(err.message, "(no loaded driver declares a url scheme)", "says so");
	emh__ctxconf_release(&c);
}

static void test_file_url(void)
{
	emh__config cfg;
	emh_error err;
	int rc = load("contexts = (\n"
		      "  { name = \"pg\";\n"
		      "    url = \"postgres://app:pw@db:5432/main?sslmode=disable\";\n"
		      "    host = \"override\"; }\n"
		      ");\n",
		      (const char *const[]){ NULL }, &cfg, &err);
	is_int(rc, 0, "url in the file");
	emh__ctxconf *c = ctx(&cfg, "pg");
	is_str(emh__ctxconf_get(c, "driver"), "tdb", "driver from the file's url");
	char want[700];
	snprintf(want, sizeof want, "url (%s)", at(3));
	is_str(origin_of(c, "driver"), want, "url-derived origin is url (FILE:LINE)");
	is_str(emh__ctxconf_get(c, "host"), "override", "an explicit key beats the url's piece");
	is_str(origin_of(c, "host"), at(4), "explicit key keeps its origin");
	is_str(emh__ctxconf_get(c, "user"), "app", "user from the url");
	is_str(emh__ctxconf_get(c, "password"), "pw", "password from the url");
	ok(secret_of(c, "password") && secret_of(c, "url"), "url and password secret");
	is_str(shown_of(c, "url"), "postgres://app:********@db:5432/main?sslmode=disable", "file url shown masked");
	is_str(origin_of(c, "url"), at(3), "url keeps its FILE:LINE");
	is_str(emh__ctxconf_get(c, "sslmode"), "disable", "query key");
	is_int(emh__config_check_context(c, &tdb, NULL, &err), 0, "file url context checks");
	emh__config_release(&cfg);

	/* an env url replaces the file's connection keys */
	rc = load("contexts = (\n  { name = \"pg\"; driver = \"sqlite\"; path = \"/a.db\"; pool = { max = 2; }; }\n);\n",
		  (const char *const[]){ "EMH_CONTEXT_PG_URL=postgres://h2/db2", NULL }, &cfg, &err);
	is_int(rc, 0, "env url over a file context");
	c = ctx(&cfg, "pg");
	is_str(emh__ctxconf_get(c, "driver"), "tdb", "driver from env url");
	ok(emh__ctxconf_get(c, "path") == NULL, "file's path dropped");
	is_str(emh__ctxconf_get(c, "pool.max"), "2", "file's pool kept");
	is_str(origin_of(c, "host"), "url (env EMH_CONTEXT_PG_URL)", "origin url (env VAR)");
	emh__config_release(&cfg);

	/* a whole url in the file, a single key next to it, the environment over both */
	rc = load("contexts = ( { name = \"docs\"; url = \"memdoc://filehost/db\"; host = \"h\"; } );\n",
		  (const char *const[]){ "EMH_CONTEXT_DOCS_URL=memdoc://envhost/db", "EMH_CONTEXT_DOCS_TIMEOUT_MS=7",
					 NULL },
		  &cfg, &err);
	is_int(rc, 0, "whole url in the file and the environment");
	c = ctx(&cfg, "docs");
	is_str(emh__ctxconf_get(c, "url"), "memdoc://envhost/db", "env url beats the file's");
	ok(emh__ctxconf_get(c, "host") == NULL, "the file's host (covered by the env url) is gone");
	is_str(emh__ctxconf_get(c, "timeout_ms"), "7", "a single env key applies over the url");
	emh__config_release(&cfg);
}

/*
 * Every way of giving a password.  Each case's secret must come out as the
 * password (or inside the url a whole-url driver gets), be marked secret,
 * and appear in no shown value and no error.
 */
struct pwcase {
	const char *name;
	const char *file;        /* config text (context "a"), or NULL */
	const char *env[4];
	const char *secret;      /* the password as given */
	const char *want;        /* the resolved "password" setting; NULL: the whole url keeps it */
	const char *want_db;     /* expected database, when the url has one */
};

static const struct pwcase pwcases[] = {
	{ "file password", "password = \"Pw-File-01\";", { NULL }, "Pw-File-01", "Pw-File-01", NULL },
	{ "file password from ${VAR}", "password = \"${PWV}\";", { "PWV=Pw-Var-02", NULL }, "Pw-Var-02", "Pw-Var-02", NULL },
	{ "password_env", "password_env = \"PWE\";", { "PWE=Pw-Env-03", NULL }, "Pw-Env-03", "Pw-Env-03", NULL },
	{ "file url", "url = \"postgres://app:Pw-Url-04@h:1/app\";", { NULL }, "Pw-Url-04", "Pw-Url-04", "app" },
	{ "percent-encoded url", "url = \"postgres://app:Pw%40Enc%2F05%3A@h/app\";", { NULL }, "Pw%40Enc%2F05%3A",
	  "Pw@Enc/05:", "app" },
	{ "unescaped '@' in the url", "url = \"postgres://app:Pw@At-06@h/app\";", { NULL }, "Pw@At-06", "Pw@At-06", "app" },
	{ "unescaped '/' in the url (issue 11)", "url = \"postgres://app:2024/SEKRIT@h:1/app\";", { NULL }, "2024/SEKRIT",
	  "2024/SEKRIT", "app" },
	{ "':' in the url", "url = \"postgres://app:Pw:Colon-08@h/app\";", { NULL }, "Pw:Colon-08", "Pw:Colon-08", "app" },
	{ "'/', '@' and ':' in the url", "url = \"postgres://app:a/b@c:Pw-Mix-09@h/app\";", { NULL }, "a/b@c:Pw-Mix-09",
	  "a/b@c:Pw-Mix-09", "app" },
	{ "url query password", "url = \"postgres://h/app?password=Pw-Query-10\";", { NULL }, "Pw-Query-10",
	  "Pw-Query-10", "app" },
	{ "env url", NULL, { "EMH_CONTEXT_A_URL=postgres://app:Pw-EnvUrl-11@h/app", NULL }, "Pw-EnvUrl-11",
	  "Pw-EnvUrl-11", "app" },
	{ "env url, '/' in the password", NULL, { "EMH_CONTEXT_A_URL=postgres://app:x/Pw-EnvSlash-12@h:1/app", NULL },
	  "x/Pw-EnvSlash-12", "x/Pw-EnvSlash-12", "app" },
	{ "env password over the file's", "password = \"old\";", { "EMH_CONTEXT_A_PASSWORD=Pw-EnvPw-13", NULL },
	  "Pw-EnvPw-13", "Pw-EnvPw-13", NULL },
	{ "env password_env", NULL,
	  { "EMH_CONTEXT_A_DRIVER=tdb", "EMH_CONTEXT_A_PASSWORD_ENV=PWX", "PWX=Pw-EnvPwEnv-14", NULL }, "Pw-EnvPwEnv-14",
	  "Pw-EnvPwEnv-14", NULL },
	{ "file url without password + password_env", "url = \"postgres://app@h/app\"; password_env = \"PWF\";",
	  { "PWF=Pw-Fill-15", NULL }, "Pw-Fill-15", "Pw-Fill-15", "app" },
	{ "env url password over the file's password_env", "driver = \"tdb\"; password_env = \"PWG\";",
	  { "PWG=unused", "EMH_CONTEXT_A_URL=postgres://app:Pw-Over-16@h/app", NULL }, "Pw-Over-16", "Pw-Over-16", "app" },
	{ "empty password in the url", "url = \"postgres://app:@h/app\";", { NULL }, "", "", "app" },
	{ "whole url (memdoc)", "url = \"memdoc://app:Pw-Whole-18@h1,h2/app\";", { NULL }, "Pw-Whole-18", NULL, NULL },
	{ "whole url from the environment", NULL, { "EMH_CONTEXT_A_URL=memdoc://app:Pw-Whole-19@h/app", NULL },
	  "Pw-Whole-19", NULL, NULL },
};

/* No setting of c shows secret, and every setting holding it is secret. */
static void no_leak(emh__ctxconf *c, const char *secret, const char *name)
{
	bool leak = false, unmarked = false;
	for (size_t i = 0; i < c->s.n && *secret; i++) {
		const emh__setting *st = &c->s.v[i];
		leak = leak || strstr(emh__setting_shown(st), secret);
		unmarked = unmarked || (st->value && strstr(st->value, secret) && !st->secret);
		if (strstr(emh__setting_shown(st), secret) || (st->value && strstr(st->value, secret) && !st->secret))
			diag("%s: key '%s' shows '%s'", name, st->key, emh__setting_shown(st));
	}
	ok(!leak, "%s: shown nowhere", name);
	ok(!unmarked, "%s: every setting holding it is secret", name);
}

static void test_passwords(void)
{
	for (size_t i = 0; i < sizeof pwcases / sizeof *pwcases; i++) {
		const struct pwcase *pc = &pwcases[i];
		char text[600];
		emh__config cfg;
		emh_error err;
		if (pc->file)
			snprintf(text, sizeof text, "contexts = ( { name = \"a\"; %s%s } );\n",
				 strstr(pc->file, "url =") || strstr(pc->file, "driver =") ? "" : "driver = \"tdb\"; ",
				 pc->file);
		int rc = load(pc->file ? text : NULL, pc->env, &cfg, &err);
		emh__ctxconf *c = rc ? NULL : ctx(&cfg, "a");
		const char *dname = c ? emh__ctxconf_get(c, "driver") : NULL;
		if (!rc)
			rc = emh__config_check_context(c, dname && strcmp(dname, "memdoc") == 0 ? &memdoc : &tdb, pc->env, &err);
		is_int(rc, 0, "%s: loads and checks", pc->name);
		if (rc) {
			ok(strstr(err.message, pc->secret) == NULL, "%s: the error does not show it", pc->name);
			emh__config_release(&cfg);
			continue;
		}
		if (pc->want) {
			is_str(emh__ctxconf_get(c, "password"), pc->want, "%s: the password", pc->name);
			ok(secret_of(c, "password"), "%s: password secret", pc->name);
		} else {
			like_str(emh__ctxconf_get(c, "url"), pc->secret, "%s: in the url the driver gets", pc->name);
			ok(emh__ctxconf_get(c, "password") == NULL, "%s: not split out", pc->name);
		}
		if (pc->want_db)
			is_str(emh__ctxconf_get(c, "database"), pc->want_db, "%s: database not taken from the password",
			       pc->name);
		if (emh__ctxconf_get(c, "host"))
			ok(!strstr(emh__ctxconf_get(c, "host"), "Pw") && !strstr(emh__ctxconf_get(c, "host"), "SEKRIT"),
			   "%s: host not taken from the password", pc->name);
		no_leak(c, pc->secret, pc->name);
		emh__config_release(&cfg);
	}

	/* checks that name a password never show it */
	emh__config cfg;
	emh_error err;
	int rc = load("contexts = ( { name = \"a\"; driver = \"tdb\"; password = \"filepw\"; password_env = \"PW\"; } );\n",
		      (const char *const[]){ "PW=x", NULL }, &cfg, &err);
	is_int(rc, 0, "password and password_env parse");
	rc = emh__config_check_context(ctx(&cfg, "a"), &tdb, (const char *const[]){ "PW=x", NULL }, &err);
	is_int(rc, EMH_ECONFIG, "password and password_env both set: error");
	like_str(err.message, "both password", "says both");
	like_str(err.message, at(1), "names the place");
	ok(strstr(err.message, "filepw") == NULL, "never prints the password");
	emh__config_release(&cfg);

	rc = load("contexts = (\n { name = \"a\"; driver = \"tdb\";\n   password_env = \"NOT_SET_PW\"; } );\n",
		  (const char *const[]){ NULL }, &cfg, &err);
	rc = emh__config_check_context(ctx(&cfg, "a"), &tdb, (const char *const[]){ NULL }, &err);
	is_int(rc, EMH_ECONFIG, "password_env variable missing");
	like_str(err.message, "environment variable 'NOT_SET_PW' is not set", "names the variable");
	like_str(err.message, at(3), "and the place");
	emh__config_release(&cfg);

	fails("contexts = ( { name = \"a\"; driver = \"tdb\"; password_env = \"not a var\"; } );\n",
	      (const char *const[]){ NULL }, "is not an environment variable name", NULL, "password_env must be a name");

	rc = load("contexts = ( { name = \"a\"; driver = \"tdb\"; api_key = \"k3y\"; } );\n", (const char *const[]){ NULL },
		  &cfg, &err);
	is_int(emh__config_check_context(ctx(&cfg, "a"), &tdb, NULL, &err), 0, "secret driver key");
	ok(secret_of(ctx(&cfg, "a"), "api_key"), "secret flag from the driver's spec");
	is_str(shown_of(ctx(&cfg, "a"), "api_key"), "********", "shown masked");
	emh__config_release(&cfg);
}

/* What a driver reads through emh_params never echoes a secret in its errors. */
static void test_params_no_echo(void)
{
	emh__settings s = { 0 };
	if (emh__settings_set(&s, "password", "Pw-Params-1", "f:1", NULL, 0, true) ||
	    emh__settings_set(&s, "port", "x1", "f:2", NULL, 0, false))
		bail("out of memory");
	struct emh_params p = { .context = "a", .settings = &s };
	long long v;
	bool b;
	emh_error err;
	is_int(emh_params_int(&p, "password", 0, &v, &err), EMH_ECONFIG, "a secret read as an integer");
	ok(strstr(err.message, "Pw-Params-1") == NULL, "the error does not show it");
	is_int(emh_params_bool(&p, "password", false, &b, &err), EMH_ECONFIG, "a secret read as a boolean");
	ok(strstr(err.message, "Pw-Params-1") == NULL, "the error does not show it");
	is_int(emh_params_int(&p, "port", 0, &v, &err), EMH_ECONFIG, "a bad integer");
	like_str(err.message, "f:2: 'port' must be an integer, got 'x1'", "is shown when not secret");
	emh__settings_release(&s);
}

/* The whole path through a host: the driver gets the url intact, emh_host_contexts masks it. */
static void test_host_whole_url(void)
{
	static const char multi[] = "memdoc://u:Pw-Host-1@h1:5432,h2:5433/db?target_session_attrs=read-write";
	char var[200];
	snprintf(var, sizeof var, "EMH_CONTEXT_DOCS_URL=%s", multi);
	const char *env[] = { var, NULL };
	const emh_driver *dl[] = { &memdoc };
	emh_host_opts opts = { .no_plugins = true, .drivers = dl, .ndrivers = 1, .envp = env };
	emh_host *h = NULL;
	emh_error err;
	int rc = emh_host_new(&opts, &h, &err);
	is_int(rc, 0, "host with a whole memdoc url");
	if (rc) {
		diag("%s", err.message);
		return;
	}
	is_str(seen_url, multi, "the driver got the url intact (emh_params_get(p, \"url\"))");
	is_str(seen_password, "(unset)", "and no password split out of it");
	emh_context_info *ci;
	size_t n;
	is_int(emh_host_contexts(h, &ci, &n, &err), 0, "emh_host_contexts");
	const char *shown = NULL, *timeout = NULL, *torigin = NULL;
	bool leak = false;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < ci[i].nsettings; j++) {
			const emh_setting_info *s = &ci[i].settings[j];
			leak = leak || strstr(s->value, "Pw-Host-1");
			if (strcmp(s->key, "url") == 0)
				shown = s->value;
			if (strcmp(s->key, "timeout_ms") == 0)
				timeout = s->value, torigin = s->origin;
		}
	is_str(shown, "memdoc://u:********@h1:5432,h2:5433/db?target_session_attrs=read-write",
	       "contexts show the url with its password masked");
	ok(!leak, "the password is in no shown value");
	is_str(timeout, "250", "the driver's default for an unset key");
	is_str(torigin, "default", "with origin default");
	emh_context_info_free(ci, n);
	emh_host_free(h);
}

/*
 * A '?' in a password, unescaped, ends the authority before its '@': what is
 * left of the password lands in the query and the url had no userinfo, so
 * it was shown in clear (found by review).  Refused when the authority has no
 * '@' but the query has one; with a userinfo an '@' in a query value is fine.
 */
static void test_query_at(void)
{
	static const struct {
		const char *u, *secret, *name;
	} bad[] = {
		{ "memdoc://app:Xy?a=Secr3t-1@db.example:5432/app", "Secr3t-1", "whole url, '?' in the password" },
		{ "memdoc://app:pw?x=Secr3t-2@db.example/app", "Secr3t-2", "whole url, mongodb-like" },
		{ "memdoc://app:x/y?a=Secr3t-3@h/app", "Secr3t-3", "whole url, '/' then '?' in the password" },
		{ "postgres://app:12?a=Secr3t-4@h/db", "Secr3t-4", "network url, digits before the '?'" },
	};
	emh__ctxconf c;
	emh_error err;
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		is_int(url(bad[i].u, &c, &err), EMH_ECONFIG, "%s: refused", bad[i].name);
		like_str(err.message, "percent-encode '?' and '@' in a password", "%s: says how to write it", bad[i].name);
		ok(strstr(err.message, bad[i].secret) == NULL, "%s: the message does not show the secret", bad[i].name);
		emh__ctxconf_release(&c);
	}

	/* from the environment, through the configuration */
	emh__config cfg;
	int rc = load(NULL, (const char *const[]){ "EMH_CONTEXT_PG_URL=memdoc://app:pw?x=Secr3t-5@db.example/app", NULL },
		      &cfg, &err);
	is_int(rc, EMH_ECONFIG, "env url with a '?' in the password: refused");
	ok(strstr(err.message, "Secr3t-5") == NULL, "env url: the message does not show the secret");
	like_str(err.message, "EMH_CONTEXT_PG_URL", "env url: the message names the variable");
	emh__config_release(&cfg);

	/* an '@' in a query value stays fine next to a userinfo, and in a file url */
	is_int(url("memdoc://app:pw@h/app?appname=a@b", &c, &err), 0, "'@' in a query value with a userinfo");
	emh__ctxconf_release(&c);
	is_int(url("sqlite:///x.db?busy_timeout=1&k=a@b", &c, &err), 0, "'@' in a file url's query value");
	emh__ctxconf_release(&c);
}

int main(void)
{
	cfgtest_init();
	memdoc_init();
	test_file_form();
	test_network_form();
	test_whole_form();
	test_bad_urls();
	test_file_url();
	test_passwords();
	test_params_no_echo();
	test_host_whole_url();
	test_query_at();
	return cfgtest_done();
}
