/* SPDX-License-Identifier: MIT */
/*
 * tests/abi/test_abi10.c: the service ABI only grows.  A service module built
 * against the frozen 1.0 headers (tests/abi/v10_service.c, compiled with
 * tests/abi/v1.0 first on the include path) is loaded from a service
 * directory by today's host, exactly as emhostd loads modules, and answers
 * requests: its entity need is resolved and registered, its init state and
 * configured setting reach it, it writes and reads through the repository,
 * and an error it returns keeps its code.  Unloading it leaves its context
 * usable (the host keeps its own copy of the entity).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

static int handle(emh_services *svcs, const char *method, const char *path, const char *query,
		  const char *body, emh_response *res, emh_error *err)
{
	emh_kv args[1];
	size_t nargs = 0;
	if (query && *query)
		args[nargs++] = (emh_kv){.name = query, .value = ""};
	emh_request req = {.method = method, .path = path, .query = query ? query : "", .args = args,
			   .nargs = nargs, .body = body, .body_len = body ? strlen(body) : 0};
	emh_scope *sc;
	int rc = emh_scope_open(svcs, "notes", &sc, err);
	if (rc)
		return rc;
	emh_response_reset(res);
	rc = emh_scope_handle(sc, &req, res, err);
	emh_scope_close(sc);
	return rc;
}

static const char *body_of(const emh_response *res)
{
	size_t n;
	const char *b = emh_response_body(res, &n);
	return b ? b : "";
}

int main(void)
{
	const char *b = getenv("EMH_BUILDDIR");
	if (!b)
		bail("EMH_BUILDDIR is not set (run through make check)");
	fixture fx;
	fixture_init(&fx, "abi10");
	char conf[1100], db[1100], svcdir[1100];
	fixture_path(&fx, "app.conf", conf, sizeof conf);
	fixture_path(&fx, "notes.db", db, sizeof db);
	if ((size_t)snprintf(svcdir, sizeof svcdir, "%s/tests/abi/.libs", b) >= sizeof svcdir)
		bail("build directory path too long");
	FILE *f = fopen(conf, "w");
	if (!f)
		bail("cannot write %s", conf);
	fprintf(f,
		"plugin_dir = \"%s\";\nservice_dir = \"%s\";\n"
		"contexts = ({ name = \"default\"; driver = \"sqlite\"; path = \"%s\"; schema = \"sync\"; });\n"
		"services = ({ name = \"notes\"; module = \"abi10notes\"; settings = { greeting = \"hi\"; }; });\n",
		fx.plugin_dir, svcdir, db);
	if (fclose(f) != 0)
		bail("cannot write %s", conf);

	emh_error err;
	emh_host *h = NULL;
	emh_host_opts o = {.config_path = conf, .envp = (const char *const[]){NULL}, .log_level = EMH_LOG_WARN};
	if (emh_host_new(&o, &h, &err) != 0)
		bail("host: %s", err.message);
	emh_services *svcs = NULL;
	int rc = emh_services_new(h, &svcs, &err);
	if (rc == 0)
		rc = emh_services_load(svcs, &err);
	if (!ok(rc == 0, "a service module built against the 1.0 headers loads"))
		bail("%s", err.message);
	emh_svc *svc = emh_services_get(svcs, "notes");
	ok(svc && emh_svc_descriptor(svc)->abi_version == (1u << 16), "its descriptor says ABI 1.0");
	is_str(svc ? emh_svc_context(svc, NULL) : NULL, "default", "its default-context need resolved");

	emh_response *res = emh_response_new();
	if (!res)
		bail("out of memory");
	is_int(handle(svcs, "POST", "", "", "first note", res, &err), 0, "POST through the 1.0 module");
	is_int(emh_response_status(res), 201, "answered 201");
	is_str(body_of(res), "{\"id\":1}", "with the generated key");
	is_int(handle(svcs, "POST", "", "", "second", res, &err), 0, "a second POST");
	is_int(handle(svcs, "GET", "/1", "", NULL, res, &err), 0, "GET by key");
	is_str(body_of(res), "hi: first note", "the row, and the setting its init kept");
	is_int(handle(svcs, "GET", "", "count", NULL, res, &err), 0, "count");
	is_str(body_of(res), "2", "two rows");
	is_int(handle(svcs, "GET", "/99", "", NULL, res, &err), EMH_ENOTFOUND, "a missing key");
	is_int(handle(svcs, "DELETE", "/1", "", NULL, res, &err), EMH_EINVAL, "an error the module sets");
	like_str(err.message, "no route for DELETE /1", "keeps its message");
	emh_response_free(res);

	/* unloaded, its entity still serves the context through the host's copy */
	const emh_entity *copy = NULL;
	rc = emh_host_entity(h, NULL, "abi10_notes", &copy, &err);
	emh_services_free(svcs);
	ok(rc == 0 && copy, "the host holds its own copy of the module's entity");
	int64_t n = -1;
	if (copy) {
		emh_em *em = fixture_fork(h, NULL);
		emh_repo *r = fixture_repo(em, copy);
		emh_repo_count(r, NULL, &n, &err);
		emh_em_close(em);
	}
	is_int(n, 2, "and the context keeps working after the module is unloaded");
	emh_host_free(h);

	/* the driver half: memdoc built against the same 1.0 headers
	 * (memdoc10-conformance.sh runs the suite on it) is read as 1.0 */
	char v10dir[1100];
	if ((size_t)snprintf(v10dir, sizeof v10dir, "%s/tests/abi/v10/.libs", b) >= sizeof v10dir)
		bail("build directory path too long");
	emh_host_opts o10 = {.plugin_dir = v10dir, .envp = (const char *const[]){"EMH_CONTEXT_D_DRIVER=memdoc", NULL}};
	h = NULL;
	rc = emh_host_new(&o10, &h, &err);
	const emh_driver_info *di = NULL;
	ok(rc == 0 && emh_host_drivers(h, &di) == 1 && di[0].abi_major == 1 && di[0].abi_minor == 0,
	   "the 1.0 memdoc plugin loads and is recorded as ABI 1.0");
	emh_host_free(h);
	fixture_release(&fx);
	return done_testing();
}
