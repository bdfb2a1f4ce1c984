/* SPDX-License-Identifier: MIT */
/*
 * tests/config/cfgtest.h: what the configuration tests share: drivers
 * declared here as plugins would declare them, and helpers that write a
 * config file, load it with an environment and look at the result.
 * Header-only, because tap.h keeps its counters per program file.
 */
#ifndef EMH_TESTS_CFGTEST_H
#define EMH_TESTS_CFGTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "../tap.h"

#define CFGTEST_UNUSED __attribute__((unused))

/* tdb: a network database answering postgres:// URLs (one host each), with keys of every kind. */
static const emh_param_spec tdb_params[] = {
	{ .key = "host", .kind = EMH_PARAM_STRING, .help = "server host" },
	{ .key = "port", .kind = EMH_PARAM_INT, .help = "server port", .min = 1, .max = 65535 },
	{ .key = "user", .kind = EMH_PARAM_STRING, .help = "user name" },
	{ .key = "database", .kind = EMH_PARAM_STRING, .help = "database name" },
	{ .key = "sslmode", .kind = EMH_PARAM_STRING, .help = "ssl mode" },
	{ .key = "connect_timeout", .kind = EMH_PARAM_INT, .help = "seconds" },
	{ .key = "verbose", .kind = EMH_PARAM_BOOL, .help = "chatty" },
	{ .key = "api_key", .kind = EMH_PARAM_STRING, .flags = EMH_PARAM_SECRET, .help = "a secret driver key" },
	{ .key = "replicaSet", .kind = EMH_PARAM_STRING, .help = "mongo-style option" },
	{ .key = "sslpassword", .kind = EMH_PARAM_STRING, .help = "a password-like key the driver forgot to flag" },
	{ .key = "retries", .kind = EMH_PARAM_INT, .def = "3", .min = 0, .max = 10, .help = "a default and a range" },
	{ .key = "mode", .kind = EMH_PARAM_STRING, .def = "fast", .help = "a string default" },
	{ .key = "any_int", .kind = EMH_PARAM_INT, .help = "no range: min == max == 0" },
	{ .key = "opts.a_driver_key_longer_than_the_sixty_four_bytes_a_buffer_once_held", .kind = EMH_PARAM_STRING,
	  .help = "a long key with a dot, set from the environment" },
	{ .key = NULL },
};
static const char *const tdb_schemes[] = { "tdb", "postgres", "postgresql", NULL };
static const emh_driver tdb = {
	EMH_DRIVER_HEADER,
	.name = "tdb",
	.version = "1.0",
	.url_schemes = tdb_schemes,
	.url_form = EMH_URL_NETWORK,
	.params = tdb_params,
};

/* lite: a file database (the sqlite plugin's URL form, not its code). */
static const emh_param_spec lite_params[] = {
	{ .key = "path", .kind = EMH_PARAM_STRING, .help = "database file" },
	{ .key = "busy_timeout", .kind = EMH_PARAM_INT, .help = "ms" },
	{ .key = NULL },
};
static const char *const lite_schemes[] = { "sqlite", "sqlite3", NULL };
static const emh_driver lite = {
	EMH_DRIVER_HEADER,
	.name = "sqlite",
	.version = "1.0",
	.url_schemes = lite_schemes,
	.url_form = EMH_URL_FILE,
	.params = lite_params,
};

/* The drivers the helpers load with; a test may append one (memdoc). */
static const emh_driver *drivers[8] = { &tdb, &lite };
static size_t ndrivers = 2;

static char tmpdir[256];
static char cfgpath[512];

static CFGTEST_UNUSED void cfgtest_init(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/emh-test-config-XXXXXX");
	if (!mkdtemp(tmpdir))
		bail("mkdtemp failed");
	plan_lazy();
}

static CFGTEST_UNUSED int cfgtest_done(void)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		diag("could not remove %s", tmpdir);
	return done_testing();
}

/* Write text as the test's config file; returns its path. */
static CFGTEST_UNUSED const char *write_conf(const char *name, const char *text)
{
	snprintf(cfgpath, sizeof cfgpath, "%s/%s", tmpdir, name);
	FILE *f = fopen(cfgpath, "w");
	if (!f)
		bail("cannot write %s", cfgpath);
	fputs(text, f);
	fclose(f);
	return cfgpath;
}

/* Parse text (written to a file; NULL: no file) and apply envp; returns the status. */
static CFGTEST_UNUSED int load(const char *text, const char *const *envp, emh__config *cfg, emh_error *err)
{
	emh_error_clear(err);
	const char *path = text ? write_conf("t.conf", text) : NULL;
	int rc = emh__config_parse(cfg, path, envp, err);
	if (rc)
		return rc;
	return emh__config_apply_env(cfg, envp, drivers, ndrivers, err);
}

/* A context by name; a missing one is a broken test, not a failure to count. */
static CFGTEST_UNUSED emh__ctxconf *ctx(emh__config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->ncontexts; i++)
		if (strcmp(cfg->contexts[i].name, name) == 0)
			return &cfg->contexts[i];
	bail("no context '%s' in the configuration (did it load?)", name);
}

static CFGTEST_UNUSED const char *origin_of(emh__ctxconf *c, const char *key)
{
	const emh__setting *s = c ? emh__settings_find(&c->s, key) : NULL;
	return s ? s->origin : NULL;
}

static CFGTEST_UNUSED bool secret_of(emh__ctxconf *c, const char *key)
{
	const emh__setting *s = c ? emh__settings_find(&c->s, key) : NULL;
	return s && s->secret;
}

/* What check-config and emh_host_contexts print for key. */
static CFGTEST_UNUSED const char *shown_of(emh__ctxconf *c, const char *key)
{
	const emh__setting *s = c ? emh__settings_find(&c->s, key) : NULL;
	return s ? emh__setting_shown(s) : NULL;
}

/* "<tmpdir>/t.conf:LINE" */
static CFGTEST_UNUSED const char *at(int line)
{
	static char buf[4][600];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof buf[i], "%s/t.conf:%d", tmpdir, line);
	return buf[i];
}

/* Parse + env, expecting failure with a message containing want (and want2). */
static CFGTEST_UNUSED void fails(const char *text, const char *const *envp, const char *want, const char *want2,
				 const char *name)
{
	emh__config cfg;
	emh_error err;
	int rc = load(text, envp, &cfg, &err);
	is_int(rc, EMH_ECONFIG, "%s: EMH_ECONFIG", name);
	like_str(err.message, want, "%s: message", name);
	if (want2)
		like_str(err.message, want2, "%s: message names the other part", name);
	emh__config_release(&cfg);
}

#endif
