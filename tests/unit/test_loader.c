/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_loader.c: the plugin loader against fixture plugins built
 * as real shared objects (tests/fixtures/), each with one defect.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <emhost/emhost.h>
#include <emhost/driver.h>

#include "../tap.h"

static char dir[256];

static void copy(const char *from, const char *to_name, mode_t mode)
{
	char dst[512], cmd[1200];
	snprintf(dst, sizeof dst, "%s/%s", dir, to_name);
	snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, dst);
	if (system(cmd) != 0)
		bail("cannot copy %s", from);
	chmod(dst, mode);
}

static const char *reason_of(emh_host *h, const char *file_part)
{
	const emh_refused_info *r;
	size_t n = emh_host_refused(h, &r);
	for (size_t i = 0; i < n; i++)
		if (strstr(r[i].file, file_part))
			return r[i].reason;
	return NULL;
}

static emh_host *host_on(const char *const *env, emh_error *err)
{
	emh_host_opts o = {.plugin_dir = dir, .envp = env};
	emh_host *h = NULL;
	emh_host_new(&o, &h, err);
	return h;
}

int main(void)
{
	const char *b = getenv("EMH_BUILDDIR");
	if (!b)
		bail("EMH_BUILDDIR is not set (run through make check)");
	snprintf(dir, sizeof dir, "/tmp/emh-loader-XXXXXX");
	if (!mkdtemp(dir))
		bail("mkdtemp");
	chmod(dir, 0755);
	static const char *const fx[] = {"fx_good", "fx_badabi", "fx_small", "fx_nosym", "fx_noconnect", "fx_zzdup"};
	for (size_t i = 0; i < sizeof fx / sizeof *fx; i++) {
		char src[512], name[64];
		snprintf(src, sizeof src, "%s/tests/fixtures/.libs/%s.so", b, fx[i]);
		snprintf(name, sizeof name, "%s.so", fx[i]);
		copy(src, name, 0755);
	}
	char src[512];
	snprintf(src, sizeof src, "%s/tests/fixtures/.libs/fx_good.so", b);
	copy(src, "fx_worldwritable.so", 0757);
	chmod(strcat(strcpy(src, dir), "/fx_worldwritable.so"), 0666);
	FILE *f = fopen(strcat(strcpy(src, dir), "/notelf.so"), "w");
	fputs("this is not a shared object\n", f);
	fclose(f);
	f = fopen(strcat(strcpy(src, dir), "/README.txt"), "w");
	fputs("ignored: not *.so\n", f);
	fclose(f);

	emh_error err;
	const char *noenv[] = {NULL};
	emh_host *h = host_on(noenv, &err);
	if (!ok(h != NULL, "refused plugins do not stop a host whose contexts do not need them"))
		bail("%s", err.message);
	const emh_driver_info *d;
	size_t nd = emh_host_drivers(h, &d);
	is_int(nd, 1, "exactly one driver loaded");
	is_str(nd ? d[0].name : NULL, "fxgood", "the good fixture");
	ok(nd && strstr(d[0].file, "fx_good.so"), "its file is recorded");
	is_int(nd ? (int)d[0].abi_major : -1, EMH_DRIVER_ABI_MAJOR, "its ABI major is recorded");
	const emh_refused_info *r;
	size_t nr = emh_host_refused(h, &r);
	is_int(nr, 7, "seven files refused, README.txt not even considered");
	for (size_t i = 0; i < nr; i++)
		diag("refused %s: %s", r[i].file, r[i].reason);
	like_str(reason_of(h, "fx_badabi"), "ABI major 99", "wrong ABI major refused, saying which");
	like_str(reason_of(h, "fx_small"), "struct_size 8", "too-small descriptor refused");
	like_str(reason_of(h, "fx_nosym"), "no symbol 'emh_driver_descriptor'", "missing descriptor symbol refused");
	like_str(reason_of(h, "fx_noconnect"), "required member", "missing required member refused");
	like_str(reason_of(h, "fx_zzdup"), "duplicate driver name 'fxgood'", "duplicate name refused");
	like_str(reason_of(h, "fx_zzdup"), "fx_good.so", "naming where the first one came from");
	like_str(reason_of(h, "fx_worldwritable"), "writable by others", "world-writable file refused");
	like_str(reason_of(h, "notelf"), "not an ELF", "non-ELF file refused");
	emh_host_free(h);

	/* a context that needs a refused driver stops the host, with the reason */
	const char *needs[] = {"EMH_CONTEXT_X_DRIVER=fx_small", NULL};
	h = host_on(needs, &err);
	ok(h == NULL, "a context needing a refused driver stops the host");
	is_int(err.code, EMH_EPLUGIN, "with EMH_EPLUGIN");
	like_str(err.message, "fx_small.so' was refused: descriptor struct_size 8", "saying which file and why");
	emh_host_free(h);

	const char *unknown[] = {"EMH_CONTEXT_X_DRIVER=nosuch", NULL};
	h = host_on(unknown, &err);
	ok(h == NULL && err.code == EMH_EPLUGIN, "an unknown driver stops the host");
	like_str(err.message, "unknown driver 'nosuch' (loaded drivers: fxgood)", "listing the loaded drivers");
	emh_host_free(h);

	const char *good[] = {"EMH_CONTEXT_X_DRIVER=fxgood", NULL};
	h = host_on(good, &err);
	ok(h != NULL, "a context on the good plugin works");
	emh_em *em;
	ok(h && emh_host_fork(h, "x", &em, &err) == 0 && emh_em_execute(em, "noop", &err) == 0,
	   "and reaches the plugin's code");
	if (h)
		emh_em_close(em);
	emh_host_free(h);

	/* a directory writable by others: nothing is loaded from it */
	chmod(dir, 0777);
	h = host_on(noenv, &err);
	ok(h != NULL, "host starts with a world-writable plugin directory");
	is_int(h ? emh_host_drivers(h, &d) : 99, 0, "but loads nothing from it");
	like_str(h && emh_host_refused(h, &r) ? r[0].reason : NULL, "directory is writable by others",
		 "and says why");
	emh_host_free(h);
	chmod(dir, 0755);

	/* static registration is checked like a plugin */
	static emh_driver bad_static;
	bad_static = (emh_driver){.abi_version = 7u << 16, .struct_size = sizeof(emh_driver), .name = "st"};
	const emh_driver *statics[] = {&bad_static};
	emh_host_opts o = {.no_plugins = true, .drivers = statics, .ndrivers = 1, .envp = noenv};
	h = NULL;
	ok(emh_host_new(&o, &h, &err) == 0, "host with a bad static driver starts");
	like_str(h && emh_host_refused(h, &r) ? r[0].reason : NULL, "ABI major 7", "the static driver is refused too");
	emh_host_free(h);

	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	return done_testing();
}
