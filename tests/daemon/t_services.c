/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/t_services.c: service modules and dependency injection with
 * fixture modules built as real shared objects (tests/daemon/.libs/fx_*.so)
 * on SQLite contexts: loading, ABI refusals, missing and remapped contexts,
 * entity clashes, scopes (lazy forks, undeclared needs, no implicit flush),
 * contexts that keep working after the modules are unloaded, and
 * emh_services_check (check-config) refusing what loading refuses while
 * loading nothing.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <emhost/emhost.h>
#include <emhost/service.h>

#include "../tap.h"
#include "fx_entities.h"

static char tmp[256], fxdir[1024], plugdir[1024];

/* Services first: they are a layer over the host. */
static void host_free(emh_host *h, emh_services *svcs)
{
	emh_services_free(svcs);
	emh_host_free(h);
}

/* Write a config whose services section is services_body, and make a host on it (offline: no ping). */
static int host_on(const char *services_body, bool offline, emh_host **h, emh_error *err)
{
	char path[512];
	snprintf(path, sizeof path, "%s/emhost.conf", tmp);
	FILE *f = fopen(path, "w");
	if (!f)
		bail("cannot write %s: %s", path, strerror(errno));
	fprintf(f,
		"service_dir = \"%s\";\n"
		"contexts = (\n"
		"  { name = \"default\"; driver = \"sqlite\"; path = \"%s/default.db\"; schema = \"sync\"; },\n"
		"  { name = \"analytics_eu\"; driver = \"sqlite\"; path = \"%s/eu.db\"; schema = \"sync\"; }\n"
		");\n"
		"services = ( %s );\n",
		fxdir, tmp, tmp, services_body);
	fclose(f);
	emh_host_opts o = {.config_path = path, .plugin_dir = plugdir, .log_level = EMH_LOG_ERROR, .offline = offline};
	*h = NULL;
	return emh_host_new(&o, h, err);
}

/* Write a config whose services section is services_body, and make a host and its services. */
static int host_with(const char *services_body, emh_host **h, emh_services **svcs, emh_error *err)
{
	*svcs = NULL;
	int rc = host_on(services_body, false, h, err);
	if (rc)
		return rc;
	if ((rc = emh_services_new(*h, svcs, err)) != 0)
		return rc;
	return emh_services_load(*svcs, err);
}

/* What emh_services_check says of services_body, on an offline host (`emhost check-config --offline`). */
static int check_with(const char *services_body, emh_error *err)
{
	emh_host *h;
	emh_services *svcs = NULL;
	int rc = host_on(services_body, true, &h, err);
	if (rc == 0 && (rc = emh_services_new(h, &svcs, err)) == 0)
		rc = emh_services_check(svcs, err);
	host_free(h, svcs);
	return rc;
}

/* host_with as one test named what; on failure says why, frees and returns false. */
static bool host_loaded(const char *services_body, const char *what, emh_host **h, emh_services **svcs)
{
	emh_error err;
	if (ok(host_with(services_body, h, svcs, &err) == 0, "%s", what))
		return true;
	diag("%s", err.message);
	host_free(*h, *svcs);
	return false;
}

/* Run one request on service svc; returns the handler's code, body into buf. */
static int call(emh_services *svcs, const char *svc, const char *method, const char *path, const char *query,
		const char *body, char *buf, size_t cap, emh_error *err)
{
	emh_kv args[4];
	size_t nargs = 0;
	char qcopy[256];
	snprintf(qcopy, sizeof qcopy, "%s", query ? query : "");
	for (char *save = NULL, *kv = strtok_r(qcopy, "&", &save); kv && nargs < 4;
	     kv = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(kv, '=');
		if (eq)
			*eq++ = '\0';
		args[nargs].name = kv;
		args[nargs++].value = eq ? eq : "";
	}
	emh_request req = {.method = method, .path = path, .query = query ? query : "", .args = args,
			   .nargs = nargs, .body = body, .body_len = body ? strlen(body) : 0};
	emh_scope *scope;
	buf[0] = '\0';
	int rc = emh_scope_open(svcs, svc, &scope, err);
	if (rc)
		return rc;
	emh_response *res = emh_response_new();
	rc = emh_scope_handle(scope, &req, res, err);
	if (rc == 0) {
		size_t len;
		const char *b = emh_response_body(res, &len);
		snprintf(buf, cap, "%.*s", (int)len, b ? b : "");
	}
	emh_response_free(res);
	emh_scope_close(scope);
	return rc;
}

static unsigned forks_open(emh_host *h, const char *ctx)
{
	emh_context_info *infos;
	size_t n;
	unsigned forks = 999;
	if (emh_host_contexts(h, &infos, &n, NULL) != 0)
		return forks;
	for (size_t i = 0; i < n; i++)
		if (strcmp(infos[i].name, ctx) == 0)
			forks = infos[i].forks_open;
	emh_context_info_free(infos, n);
	return forks;
}

static void test_good(void)
{
	emh_host *h;
	emh_services *svcs;
	emh_error err;
	char buf[256];
	int rc = host_with("{ name = \"good\"; module = \"fx_good\"; contexts = { analytics = \"analytics_eu\"; };"
			   "  settings = { greeting = \"hi there\"; }; }",
			   &h, &svcs, &err);
	if (!ok(rc == 0, "fixture service loads with a remapped context")) {
		diag("%s", err.message);
		host_free(h, svcs);
		skip(19, "no host");
		return;
	}
	emh_svc *svc = emh_services_get(svcs, "good");
	ok(svc != NULL, "emh_services_get finds it by name");
	is_str(emh_svc_context(svc, "analytics"), "analytics_eu", "declared 'analytics' resolved through the remap");
	is_str(emh_svc_context(svc, NULL), "default", "declared NULL resolved to the default context");
	ok(emh_svc_context(svc, "billing") == NULL, "an undeclared context resolves to nothing");
	ok(emh_services_at(svcs, 0) == svc && emh_services_at(svcs, 1) == NULL, "emh_services_at lists it");
	like_str(emh_svc_file(svc), "fx_good.so", "emh_svc_file names the module");

	is_int(call(svcs, "good", "GET", "/state", NULL, NULL, buf, sizeof buf, &err), 0, "handler runs");
	is_str(buf, "hi there", "init saw the service's settings and its state reaches the scope");

	/* forks are lazy and close with the scope */
	emh_scope *scope;
	emh_scope_open(svcs, "good", &scope, &err);
	is_int(emh_scope_forks_open(scope), 0, "a new scope has opened no fork");
	is_int(forks_open(h, "default") + forks_open(h, "analytics_eu"), 0, "and the host counts none");
	emh_em *em, *em2;
	emh_scope_em(scope, NULL, &em, &err);
	emh_scope_em_at(scope, 1, &em2, &err);
	ok(em && em == em2, "asking twice (by name, by index) gives the same fork");
	is_str(emh_em_context(em), "default", "the fork is on the resolved context");
	is_int(forks_open(h, "default"), 1, "one fork open on 'default' while the scope lives");
	emh_scope_close(scope);
	is_int(forks_open(h, "default"), 0, "closing the scope closed the fork");
	is_int(call(svcs, "good", "GET", "/forks", NULL, NULL, buf, sizeof buf, &err), 0, "scope with every need asked");
	is_str(buf, "2", "three needs on two contexts share two forks");

	/* nothing is flushed implicitly; the remap reaches the data */
	call(svcs, "good", "POST", "/add", "ctx=analytics", "lost", buf, sizeof buf, &err);
	call(svcs, "good", "GET", "/count", "ctx=analytics", NULL, buf, sizeof buf, &err);
	is_str(buf, "0", "an unflushed insert is discarded when the scope closes");
	is_int(call(svcs, "good", "POST", "/add", "ctx=analytics&flush=1", "kept", buf, sizeof buf, &err), 0,
	       "flushed insert");
	call(svcs, "good", "GET", "/count", "ctx=analytics", NULL, buf, sizeof buf, &err);
	is_str(buf, "1", "a flushed insert stays");
	emh_em *raw;
	emh_repo *repo;
	int64_t n = -1;
	/* the module's declaration is a key of the entity registered in the host */
	const emh_entity *note = emh_svc_descriptor(svc)->needs[0].entity;
	if (emh_host_fork(h, "analytics_eu", &raw, &err) == 0 && emh_em_repo(raw, note, &repo, &err) == 0)
		emh_repo_count(repo, NULL, &n, &err);
	else
		diag("%s", err.message);
	emh_em_close(raw);
	is_int(n, 1, "the row is in the remapped context analytics_eu");
	call(svcs, "good", "GET", "/count", NULL, NULL, buf, sizeof buf, &err);
	is_str(buf, "0", "and not in the default context");

	/* undeclared needs at run time */
	rc = call(svcs, "good", "GET", "/undeclared-context", NULL, NULL, buf, sizeof buf, &err);
	is_int(rc, EMH_ENOCONTEXT, "an undeclared context is refused");
	like_str(err.message, "did not declare context 'billing' (declares: analytics, default)",
		 "the error names the context and what was declared");
	rc = call(svcs, "good", "GET", "/undeclared-entity", NULL, NULL, buf, sizeof buf, &err);
	is_int(rc, EMH_ENOENTITY, "an undeclared entity is refused");
	like_str(err.message, "entity 'fx_other' in context 'default'", "the error names entity and context");
	is_int(call(svcs, "good", "GET", "/em-as-repo", NULL, NULL, buf, sizeof buf, &err), EMH_EINVAL,
	       "a repository asked of an EM-only need is refused");
	is_int(call(svcs, "good", "GET", "/nowhere", NULL, NULL, buf, sizeof buf, &err), EMH_ENOTFOUND,
	       "the handler's own error comes back");

	rc = call(svcs, "nosuch", "GET", "/", NULL, NULL, buf, sizeof buf, &err);
	is_int(rc, EMH_ENOSERVICE, "a scope of an unknown service is refused");
	like_str(err.message, "no service 'nosuch' (services: good)", "listing the services");

	/* static registration with the same module's descriptor under another name */
	const emh_service *desc = emh_svc_descriptor(svc);
	const char *remap[] = {"analytics", "default", NULL};
	emh_service_opts so = {.name = "good_local", .remap = remap};
	rc = emh_services_add(svcs, desc, &so, &err);
	is_int(rc, 0, "emh_services_add registers a static service with a remap");
	is_str(emh_svc_context(emh_services_get(svcs, "good_local"), "analytics"), "default",
	       "its 'analytics' is the default context");
	is_str(emh_svc_file(emh_services_get(svcs, "good_local")), "(static)", "and it says it is static");
	call(svcs, "good_local", "GET", "/count", "ctx=analytics", NULL, buf, sizeof buf, &err);
	is_str(buf, "0", "the same code now reads the default context");
	so.remap = NULL;
	is_int(emh_services_add(svcs, desc, &so, &err), EMH_ECONFIG, "a second service of the same name is refused");
	host_free(h, svcs);
}

/*
 * Load failures: each config is expected to fail with code and message,
 * and emh_services_check (what `emhost check-config` runs) to refuse it
 * the same way, word for word, without loading anything -- except what
 * only init can tell (checked says whether the check sees it).
 */
static void expect_fail_as(const char *body, int code, const char *msg, const char *name, bool checked)
{
	emh_host *h;
	emh_services *svcs;
	emh_error err, cerr;
	memset(&err, 0, sizeof err);
	memset(&cerr, 0, sizeof cerr);
	int rc = host_with(body, &h, &svcs, &err);
	is_int(rc, code, "%s: refused", name);
	like_str(err.message, msg, "%s: message", name);
	host_free(h, svcs);
	rc = check_with(body, &cerr);
	if (!checked) {
		is_int(rc, 0, "%s: emh_services_check passes (only init tells)", name);
		return;
	}
	is_int(rc, code, "%s: emh_services_check refuses it too", name);
	is_str(cerr.message, err.message, "%s: with the same message", name);
}

static void expect_fail(const char *body, int code, const char *msg, const char *name)
{
	expect_fail_as(body, code, msg, name, true);
}

static void test_failures(void)
{
	expect_fail("{ name = \"billing\"; module = \"fx_ledger\"; }", EMH_ENOCONTEXT,
		    "service 'billing' needs context 'ledger'; contexts: default, analytics_eu", "missing context");
	expect_fail("{ name = \"good\"; module = \"fx_good\"; }", EMH_ENOCONTEXT,
		    "service 'good' needs context 'analytics'; contexts: default, analytics_eu",
		    "declared context not remapped");
	expect_fail("{ name = \"good\"; module = \"fx_good\"; contexts = { analytics = \"analytics_us\"; }; }",
		    EMH_ENOCONTEXT, "needs context 'analytics_us' (declared as 'analytics', remapped at", "remap to a missing context");
	expect_fail("{ name = \"good\"; module = \"fx_good\"; contexts = { analytics = \"analytics_eu\"; "
		    "ledger = \"default\"; }; }",
		    EMH_ECONFIG, "remaps context 'ledger' but declares no such context (declares: analytics, default)",
		    "remap of an undeclared context");
	expect_fail("{ name = \"x\"; module = \"fx_badabi\"; }", EMH_EPLUGIN, "fx_badabi.so': service ABI major 2",
		    "bad ABI major");
	expect_fail("{ name = \"x\"; module = \"fx_small\"; }", EMH_EPLUGIN, "fx_small.so': descriptor struct_size",
		    "descriptor too small");
	expect_fail("{ name = \"x\"; module = \"fx_nohandle\"; }", EMH_EPLUGIN, "required member handle is NULL",
		    "no handle");
	expect_fail("{ name = \"x\"; module = \"fx_nosym\"; }", EMH_EPLUGIN,
		    "no symbol 'emh_service_descriptor': not an emhost service", "no descriptor symbol");
	expect_fail("{ name = \"x\"; module = \"fx_missing\"; }", EMH_EPLUGIN,
		    "service 'x': no module 'fx_missing.so' in ", "missing module file");
	expect_fail("{ name = \"x\"; module = \"fx_god\"; }", EMH_EPLUGIN, "(did you mean 'fx_good'? modules there: ",
		    "misspelt module: the closest one is suggested");
	expect_fail_as("{ name = \"x\"; module = \"fx_initfail\"; }", EMH_EUNAVAILABLE,
		       "service 'x': init failed: cache server", "init failure", false);
	expect_fail("{ name = \"good\"; module = \"fx_good\"; contexts = { analytics = \"analytics_eu\"; }; },"
		    "{ name = \"clash\"; module = \"fx_clash\"; }",
		    EMH_ECONFIG,
		    "service 'clash' needs entity 'fx_clash' on table 'fx_notes' in context 'default', but service "
		    "'good' registered a different entity 'fx_note'",
		    "different entity on a registered table");

	/* the same entity compiled into two modules resolves to one */
	emh_host *h;
	emh_services *svcs;
	emh_error err;
	char buf[64];
	int rc;
	if (host_loaded("{ name = \"good\"; module = \"fx_good\"; contexts = { analytics = \"analytics_eu\"; }; },"
			"{ name = \"twin\"; module = \"fx_twin\"; }",
			"two modules declaring the same entity load together", &h, &svcs)) {
		call(svcs, "good", "POST", "/add", "flush=1", "twin", buf, sizeof buf, &err);
		rc = call(svcs, "twin", "GET", "/", NULL, NULL, buf, sizeof buf, &err);
		is_int(rc, 0, "the second module's repository works");
		is_str(buf, "1", "and sees the row the first one wrote");
		host_free(h, svcs);
	}

	/* a module writable by others is refused */
	char src[1200], dst[600], dir[512];
	snprintf(dir, sizeof dir, "%s/wdir", tmp);
	mkdir(dir, 0755);
	snprintf(src, sizeof src, "%s/fx_good.so", fxdir);
	snprintf(dst, sizeof dst, "%s/fx_good.so", dir);
	FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
	if (in && out) {
		char b[8192];
		size_t k;
		while ((k = fread(b, 1, sizeof b, in)) > 0)
			fwrite(b, 1, k, out);
	}
	if (in)
		fclose(in);
	if (out)
		fclose(out);
	chmod(dst, 0666);
	rc = emh_service_check_file(dst, &err);
	is_int(rc, EMH_EPLUGIN, "a module writable by others is refused");
	like_str(err.message, "writable by others", "saying why");
	chmod(dst, 0755);
	is_int(emh_service_check_file(dst, &err), 0, "emh_service_check_file accepts it once fixed");
	unlink(dst);
	rmdir(dir);
}

/* Is the module file loaded in this process?  RTLD_NOLOAD only looks. */
static bool module_mapped(const char *module)
{
	char path[1200];
	snprintf(path, sizeof path, "%s/%s.so", fxdir, module);
	void *dl = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	if (dl)
		dlclose(dl);
	return dl != NULL;
}

/* Insert a note through the host's copy, then find it by a query, get it by key and count. */
static void use_notes(emh_host *h, const char *ctx, const emh_entity *copy, const char *text, int64_t want)
{
	emh_em *em;
	emh_repo *repo;
	emh_error err;
	fx_note *n, *got = NULL;
	emh_query *q;
	emh_list ls = {0};
	int64_t count = -1;
	if (emh_host_fork(h, ctx, &em, &err) != 0 || emh_em_repo(em, copy, &repo, &err) != 0)
		bail("%s: %s", ctx, err.message);
	int rc = emh_repo_new(repo, (void **)&n, &err);
	if (rc == 0) {
		n->text = text;
		rc = emh_em_flush(em, &err);
	}
	is_int(rc, 0, "%s: insert and flush through the host's copy", ctx);
	if (emh_repo_query(repo, &q, &err) == 0) {
		emh_q_where(q, emh_q_eq(q, "text", emh_v_text(text)));
		rc = emh_repo_find(repo, q, &ls, &err);
	}
	ok(rc == 0 && ls.count == 1, "%s: a query finds it", ctx);
	emh_em_close(em);
	if (emh_host_fork(h, ctx, &em, &err) != 0 || emh_em_repo(em, copy, &repo, &err) != 0)
		bail("%s: %s", ctx, err.message);
	rc = emh_repo_get(repo, emh_v_int64(n->id), (void **)&got, &err);
	ok(rc == 0 && got && strcmp(got->text, text) == 0, "%s: another fork gets it by key", ctx);
	emh_repo_count(repo, NULL, &count, &err);
	is_int(count, want, "%s: count", ctx);
	emh_em_close(em);
}

/*
 * Issue 10's defect: contexts pointed into the service modules that
 * registered their entities, so a module could only be closed after the
 * contexts, through a hook in the host; and when that hook could not
 * allocate its unload array it closed the modules at once, leaving the
 * contexts pointing into unmapped memory.  Now a context keeps its own deep
 * copy of every entity: freeing the services object runs each fini and
 * unloads the module at once, and the contexts go on working on the copies
 * (under ASan, in the sanitizer run, any read of the unmapped module is
 * reported).  The old out-of-memory path is gone by construction: unloading
 * allocates nothing and nothing in a context points into a module.
 */
static void test_unload_keeps_contexts(void)
{
	emh_host *h;
	emh_services *svcs;
	emh_error err;
	char buf[64];
	if (!host_loaded("{ name = \"good\"; module = \"fx_good\"; contexts = { analytics = \"analytics_eu\"; }; },"
			 "{ name = \"twin\"; module = \"fx_twin\"; }",
			 "two modules registering the note entity load", &h, &svcs))
		return;
	int64_t before = -1, before_eu = -1;
	call(svcs, "good", "POST", "/add", "flush=1", "by the module", buf, sizeof buf, &err);
	call(svcs, "good", "GET", "/count", NULL, NULL, buf, sizeof buf, &err);
	before = strtoll(buf, NULL, 10);
	call(svcs, "good", "GET", "/count", "ctx=analytics", NULL, buf, sizeof buf, &err);
	before_eu = strtoll(buf, NULL, 10);
	const emh_entity *module_entity = emh_svc_descriptor(emh_services_get(svcs, "good"))->needs[0].entity;
	const emh_entity *copy = NULL, *copy_eu = NULL;
	ok(emh_host_entity(h, NULL, "fx_notes", &copy, &err) == 0 &&
	   emh_host_entity(h, "analytics_eu", "fx_notes", &copy_eu, &err) == 0,
	   "the host has its copy of the entity in both contexts");
	ok(copy && copy != module_entity && copy_eu != module_entity && copy != copy_eu,
	   "one copy per context, none of them the module's");
	ok(module_mapped("fx_good") && module_mapped("fx_twin"), "both modules are mapped while loaded");

	emh_services_free(svcs);
	ok(!module_mapped("fx_good") && !module_mapped("fx_twin"), "freeing the services unmapped both modules");
	use_notes(h, "default", copy, "after unload", before + 1);
	use_notes(h, "analytics_eu", copy_eu, "after unload, eu", before_eu + 1);
	is_int(emh_host_sync_schema(h, NULL, &err), 0, "schema sync reads the copy, not the module");
	emh_host_free(h);

	/* A module that registered an entity and then failed its init is
	 * unloaded at once (no orphan kept for the host), and the context keeps
	 * the entity it registered. */
	int rc = host_with("{ name = \"x\"; module = \"fx_initfail\"; }", &h, &svcs, &err);
	is_int(rc, EMH_EUNAVAILABLE, "a module whose init fails after registering is refused");
	ok(!module_mapped("fx_initfail"), "and unmapped at once");
	if (h && emh_host_entity(h, NULL, "fx_notes", &copy, &err) == 0)
		use_notes(h, "default", copy, "after a failed load", before + 2);
	else
		ok(0, "the entity it registered stays in the context: %s", err.message);
	host_free(h, svcs);
}

/*
 * emh_services_check loads nothing: no module stays mapped, no entity is
 * registered, no database is touched (the contexts are SQLite files with
 * schema = "sync": a registration would create them), and an entity the
 * application registered on a table is refused as load refuses it.
 */
static void test_check_loads_nothing(void)
{
	const char *two = "{ name = \"good\"; module = \"fx_good\"; contexts = { analytics = \"analytics_eu\"; }; },"
			  "{ name = \"twin\"; module = \"fx_twin\"; }";
	char db[600], eu[600];
	snprintf(db, sizeof db, "%s/default.db", tmp);
	snprintf(eu, sizeof eu, "%s/eu.db", tmp);
	unlink(db);
	unlink(eu);
	emh_host *h;
	emh_services *svcs = NULL;
	emh_error err;
	const emh_entity *copy;
	int rc = host_on(two, true, &h, &err);
	if (rc == 0 && (rc = emh_services_new(h, &svcs, &err)) == 0)
		rc = emh_services_check(svcs, &err);
	is_int(rc, 0, "check: two modules declaring the same entity pass");
	if (rc)
		diag("%s", err.message);
	ok(!module_mapped("fx_good") && !module_mapped("fx_twin"), "check: no module stays mapped");
	is_int(h ? emh_host_entity(h, NULL, "fx_notes", &copy, &err) : -1, EMH_ENOENTITY,
	       "check: no entity is registered");
	ok(access(db, F_OK) != 0 && access(eu, F_OK) != 0, "check: no database file was created");
	ok(emh_services_at(svcs, 0) == NULL, "check: no service is loaded");
	host_free(h, svcs);

	/* an entity the application registered: the same refusal, word for word */
	emh_error lerr, cerr;
	memset(&lerr, 0, sizeof lerr);
	memset(&cerr, 0, sizeof cerr);
	int lrc = -1, crc = -1;
	const char *good = "{ name = \"good\"; module = \"fx_good\"; contexts = { analytics = \"analytics_eu\"; }; }";
	if (host_on(good, true, &h, &err) == 0 && emh_host_register_entity(h, NULL, &fx_clash_entity, &err) == 0 &&
	    emh_services_new(h, &svcs, &err) == 0) {
		crc = emh_services_check(svcs, &cerr);
		lrc = emh_services_load(svcs, &lerr);
	}
	is_int(crc, EMH_ECONFIG, "check: a module's entity on a table the application registered another on");
	like_str(cerr.message, "service 'good' needs entity 'fx_note' in context 'default': context 'default': "
			       "entities 'fx_clash' and 'fx_note' both map to table 'fx_notes'", "check: names both");
	is_int(lrc, crc, "load refuses it too");
	is_str(lerr.message, cerr.message, "with the same message");
	host_free(h, svcs);
	unlink(db);
	unlink(eu);
}

int main(void)
{
	const char *b = getenv("EMH_BUILDDIR");
	if (!b)
		b = ".";
	snprintf(fxdir, sizeof fxdir, "%s/tests/daemon/.libs", b);
	snprintf(plugdir, sizeof plugdir, "%s/plugins-build", b);
	snprintf(tmp, sizeof tmp, "/tmp/emh-tsvc-XXXXXX");
	if (!mkdtemp(tmp))
		bail("mkdtemp: %s", strerror(errno));
	char f[1100];
	snprintf(f, sizeof f, "%s/fx_good.so", fxdir);
	if (access(f, R_OK) != 0)
		bail("fixture modules not built: %s", f);
	snprintf(f, sizeof f, "%s/sqlite.so", plugdir);
	if (access(f, R_OK) != 0) {
		printf("1..0 # SKIP sqlite driver not built (%s)\n", f);
		return 0;
	}
	test_good();
	test_failures();
	test_check_loads_nothing();
	test_unload_keeps_contexts();
	const char *files[] = {"emhost.conf", "default.db", "eu.db", "default.db-wal", "default.db-shm",
			       "eu.db-wal", "eu.db-shm", "default.db-journal", "eu.db-journal", NULL};
	for (int i = 0; files[i]; i++) {
		snprintf(f, sizeof f, "%s/%s", tmp, files[i]);
		unlink(f);
	}
	rmdir(tmp);
	return done_testing();
}
