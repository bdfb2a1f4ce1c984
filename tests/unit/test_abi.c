/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_abi.c: the driver ABI only grows.  A driver built against
 * the 1.0 headers (a smaller descriptor, 24-byte emh_param_spec entries and
 * no param_spec_size) must load and have every one of its keys understood.
 */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <emhost/emhost.h>
#include <emhost/driver.h>

#include "../tap.h"
#include "memdrv.h"

/* emh_param_spec as the 1.0 headers declared it */
typedef struct spec_1_0 {
	const char *key;
	int kind;
	unsigned flags;
	const char *help;
} spec_1_0;

static const spec_1_0 params_1_0[] = {
	{"tenant", EMH_PARAM_STRING, 0, "tenant name"},
	{"depth", EMH_PARAM_INT, 0, "how deep"},
	{"token", EMH_PARAM_STRING, EMH_PARAM_SECRET, "secret token"},
	{NULL, 0, 0, NULL},
};

static emh_host *host_with(const emh_driver *d, const char *const *env, emh_error *err)
{
	const emh_driver *statics[] = {d};
	emh_host_opts o = {.no_plugins = true, .drivers = statics, .ndrivers = 1, .envp = env};
	emh_host *h = NULL;
	return emh_host_new(&o, &h, err) == 0 ? h : NULL;
}

int main(void)
{
	_Static_assert(sizeof(spec_1_0) == offsetof(emh_param_spec, def), "1.0 entry size");
	emh_driver d10 = memdrv;
	d10.name = "md10";
	d10.abi_version = EMH_DRIVER_ABI_MAJOR << 16; /* 1.0 */
	d10.struct_size = (uint32_t)offsetof(emh_driver, param_spec_size);
	d10.param_spec_size = 0xdead; /* past struct_size: the loader must not read it */
	d10.params = (const emh_param_spec *)(const void *)params_1_0;

	emh_error err;
	const char *env[] = {"EMH_CONTEXT_T_DRIVER=md10", "EMH_CONTEXT_T_TENANT=acme", "EMH_CONTEXT_T_DEPTH=3",
			     "EMH_CONTEXT_T_TOKEN=s3cret", NULL};
	emh_host *h = host_with(&d10, env, &err);
	if (!ok(h != NULL, "a 1.0 driver with 1.0 param specs loads"))
		bail("%s", err.message);
	const emh_driver_info *di;
	ok(emh_host_drivers(h, &di) == 1 && di[0].abi_minor == 0, "recorded as ABI 1.0");
	is_str(emh_host_context_setting(h, "t", "tenant"), "acme", "its first key is accepted");
	is_str(emh_host_context_setting(h, "t", "depth"), "3", "its second key is read at the 1.0 stride");
	emh_context_info *ci;
	size_t n;
	bool masked = false;
	if (emh_host_contexts(h, &ci, &n, &err) != 0)
		bail("emh_host_contexts: %s", err.message);
	for (size_t i = 0; i < ci[0].nsettings; i++)
		if (strcmp(ci[0].settings[i].key, "token") == 0)
			masked = strcmp(ci[0].settings[i].value, "********") == 0;
	emh_context_info_free(ci, n);
	ok(masked, "its third key keeps its secret flag");
	emh_host_free(h);

	const char *bad[] = {"EMH_CONTEXT_T_DRIVER=md10", "EMH_CONTEXT_T_DEPTH=deep", NULL};
	h = host_with(&d10, bad, &err);
	ok(h == NULL && err.code == EMH_ECONFIG, "its key kinds are checked");
	like_str(err.message, "depth", "naming the key");
	emh_host_free(h);

	/* ABI 1.0 had no url_form: its core read "sqlite:" URLs as file paths.  A
	 * 1.0 driver answering that scheme keeps that reading (zero-extended it
	 * would be a network URL, and the path a host and a database). */
	static const char *const sq_schemes[] = {"sqlite", NULL};
	static const spec_1_0 sq_params[] = {
		{"path", EMH_PARAM_STRING, 0, "file"}, {"busy_timeout_ms", EMH_PARAM_INT, 0, "busy"}, {NULL, 0, 0, NULL}};
	emh_driver sq10 = d10;
	sq10.name = "sq10";
	sq10.url_schemes = sq_schemes;
	sq10.params = (const emh_param_spec *)(const void *)sq_params;
	const char *sqenv[] = {"EMH_CONTEXT_F_URL=sqlite:///var/lib/app/x.db", NULL};
	h = host_with(&sq10, sqenv, &err);
	ok(h != NULL, "a 1.0 driver of the sqlite: scheme takes a sqlite:/// URL");
	if (!h)
		diag("%s", err.message);
	is_str(h ? emh_host_context_setting(h, "f", "path") : NULL, "/var/lib/app/x.db", "read as a file path");
	is_str(h ? emh_host_context_setting(h, "f", "host") : NULL, NULL, "not as a host");
	emh_host_free(h);

	/* a current driver whose param_spec_size is too small for even 1.0 entries */
	emh_driver tiny = memdrv;
	tiny.name = "mdtiny";
	tiny.param_spec_size = 8;
	const char *noenv[] = {NULL};
	h = host_with(&tiny, noenv, &err);
	const emh_refused_info *r;
	ok(h && emh_host_refused(h, &r) == 1 && strstr(r[0].reason, "param_spec_size"),
	   "a param_spec_size below the 1.0 entry is refused, saying so");
	emh_host_free(h);
	return done_testing();
}
