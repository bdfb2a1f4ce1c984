/* SPDX-License-Identifier: MIT */
/*
 * core/loader.c: driver plugins.  Every *.so of the plugin directory is
 * opened with RTLD_NOW | RTLD_LOCAL (a missing symbol fails now, not
 * mid-request, and libpq/libmysqlclient/libmongoc never collide), its one
 * descriptor symbol is validated before any of its code runs, and a refusal
 * is a warning naming the file and the reason.  It stops the host only when a
 * configured context needs that driver (host.c).
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* The descriptor must reach at least the last required member of ABI 1.0. */
#define MIN_STRUCT_SIZE (offsetof(emh_driver, sync) + sizeof(void *))

static int refuse(emh_host *h, const char *file, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(emh_host *h, const char *file, const char *fmt, ...)
{
	char reason[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	emh__refused *r = realloc(h->refused, (h->nrefused + 1) * sizeof *r);
	if (!r)
		return EMH_ENOMEM; /* the callers turn it into an error message */
	h->refused = r;
	r[h->nrefused].file = strdup(file);
	r[h->nrefused].reason = strdup(reason);
	if (!r[h->nrefused].file || !r[h->nrefused].reason) {
		free(r[h->nrefused].file);
		free(r[h->nrefused].reason);
		return EMH_ENOMEM;
	}
	h->nrefused++;
	emh__log(&h->log, EMH_LOG_WARN, NULL, "plugin '%s' refused: %s", file, reason);
	return 0;
}

/* Why a descriptor cannot be used, or NULL.  d is the zero-extended copy. */
static const char *check_members(const emh_driver *d)
{
	if (!d->name || !emh_ident_valid(d->name))
		return "descriptor has no valid name";
	if (!d->version)
		return "descriptor has no version";
	if (!d->connect || !d->disconnect || !d->ping || !d->execute || !d->sync)
		return "a required member is NULL (connect, disconnect, ping, execute, sync)";
	bool sql = d->dialect && d->stmt_exec;
	bool doc = d->insert && d->update && d->remove && d->find && d->count;
	if (!!d->dialect != !!d->stmt_exec)
		return "dialect and stmt_exec must be set together (a SQL driver has both, a document driver neither)";
	if (!sql && !doc)
		return "neither SQL members (dialect, stmt_exec) nor entity members (insert, update, remove, find, count) are all set";
	if (sql && !d->dialect->column_type)
		return "dialect has no column_type";
	if ((d->caps & EMH_CAP_SQL) && !sql)
		return "advertises EMH_CAP_SQL without dialect and stmt_exec";
	if ((d->caps & EMH_CAP_TRANSACTIONS) && !d->dialect && !(d->begin && d->commit && d->rollback))
		return "advertises EMH_CAP_TRANSACTIONS without begin, commit and rollback";
	if ((d->caps & EMH_CAP_SAVEPOINTS) && !d->dialect &&
	    !(d->savepoint && d->release && d->rollback_to))
		return "advertises EMH_CAP_SAVEPOINTS without savepoint, release and rollback_to";
	if ((d->caps & EMH_CAP_UPSERT) && d->dialect && d->dialect->upsert == EMH_SQL_UPSERT_NONE)
		return "advertises EMH_CAP_UPSERT but its dialect has no upsert style";
	if (!!d->context_open != !!d->context_close)
		return "context_open and context_close must be set together";
	return NULL;
}

/* The 1.0 size of an emh_param_spec entry: a plugin built then sets no param_spec_size. */
#define PARAM_SPEC_MIN_SIZE offsetof(emh_param_spec, def)
#define PARAM_SPEC_MAX 256

/*
 * Copy the plugin's key specs, read with the stride it was built with, into a
 * zero-extended array of this ABI's entries, so everything after the loader
 * reads d.params as one layout.  NULL with why set when the array is bad.
 */
static emh_param_spec *params_copy(const emh_driver *d, const char **why)
{
	size_t stride = d->param_spec_size ? d->param_spec_size : PARAM_SPEC_MIN_SIZE;
	size_t n = 0;
	*why = NULL;
	if (stride < PARAM_SPEC_MIN_SIZE) {
		*why = "param_spec_size is smaller than an ABI 1.0 emh_param_spec";
		return NULL;
	}
	const unsigned char *p = (const unsigned char *)d->params;
	while (p && ((const emh_param_spec *)(const void *)(p + n * stride))->key)
		if (++n > PARAM_SPEC_MAX) {
			*why = "params has no { NULL } terminator within 256 entries";
			return NULL;
		}
	emh_param_spec *out = calloc(n + 1, sizeof *out);
	if (!out) {
		*why = "out of memory";
		return NULL;
	}
	size_t each = stride < sizeof *out ? stride : sizeof *out;
	for (size_t i = 0; i < n; i++)
		memcpy(&out[i], p + i * stride, each);
	return out;
}

int emh__add_driver(emh_host *h, const emh_driver *src, void *dl, const char *file, emh_error *err)
{
	if (!src)
		return refuse(h, file, "descriptor is NULL");
	if ((src->abi_version >> 16) != EMH_DRIVER_ABI_MAJOR)
		return refuse(h, file, "ABI major %u, this host speaks %u (rebuild the plugin against this emhost)",
			      (unsigned)(src->abi_version >> 16), EMH_DRIVER_ABI_MAJOR);
	if (src->struct_size < MIN_STRUCT_SIZE)
		return refuse(h, file, "descriptor struct_size %u is smaller than the minimum %zu of ABI %u.0",
			      (unsigned)src->struct_size, MIN_STRUCT_SIZE, EMH_DRIVER_ABI_MAJOR);
	emh_driver local;
	memset(&local, 0, sizeof local);
	memcpy(&local, src, src->struct_size < sizeof local ? src->struct_size : sizeof local);
	const char *why = check_members(&local);
	if (why)
		return refuse(h, file, "%s", why);
	for (size_t i = 0; i < h->ndrivers; i++)
		if (strcmp(h->drivers[i].d.name, local.name) == 0)
			return refuse(h, file, "duplicate driver name '%s' (already loaded from %s)", local.name,
				      h->drivers[i].file);
	emh_param_spec *params = params_copy(&local, &why);
	if (!params)
		return strcmp(why, "out of memory") == 0 ? emh_error_set(err, EMH_ENOMEM, "out of memory")
							 : refuse(h, file, "%s", why);
	local.params = params;
	emh__driver *nd = realloc(h->drivers, (h->ndrivers + 1) * sizeof *nd);
	if (!nd) {
		free(params);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	h->drivers = nd;
	nd[h->ndrivers].d = local;
	nd[h->ndrivers].dl = dl;
	nd[h->ndrivers].params = params;
	nd[h->ndrivers].file = strdup(file);
	if (!nd[h->ndrivers].file) {
		free(params);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	h->ndrivers++;
	emh__log(&h->log, EMH_LOG_INFO, NULL, "driver '%s' %s loaded from %s", local.name, local.version, file);
	return 1; /* kept */
}

static bool is_elf(const char *path)
{
	unsigned char magic[4] = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, magic, sizeof magic);
	close(fd);
	return n == 4 && magic[0] == 0x7f && magic[1] == 'E' && magic[2] == 'L' && magic[3] == 'F';
}

static int so_filter(const struct dirent *e)
{
	size_t n = strlen(e->d_name);
	return n > 3 && strcmp(e->d_name + n - 3, ".so") == 0;
}

/*
 * Open a plugin file with the checks every plugin gets, drivers and service
 * modules alike: a regular file, not writable by others, ELF; dlopen with
 * RTLD_NOW | RTLD_LOCAL (a missing symbol fails now, not mid-request); its one
 * descriptor symbol.  Returns the symbol with *dl open, or NULL with *dl
 * closed and why[] saying why ("not an emhost <kind>").
 */
const void *emh__plugin_open(const char *path, const char *symbol, const char *kind, void **dl, char *why,
			     size_t cap)
{
	struct stat st;
	*dl = NULL;
	if (stat(path, &st) != 0)
		return snprintf(why, cap, "cannot stat: %s", strerror(errno)), NULL;
	if (!S_ISREG(st.st_mode))
		return snprintf(why, cap, "not a regular file"), NULL;
	if (st.st_mode & S_IWOTH)
		return snprintf(why, cap, "file is writable by others (mode %03o): fix with chmod o-w",
				(unsigned)(st.st_mode & 0777)), NULL;
	if (!is_elf(path))
		return snprintf(why, cap, "not an ELF shared object"), NULL;
	if (!(*dl = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
		const char *e = dlerror();
		return snprintf(why, cap, "dlopen failed: %s (check its dependencies with ldd)", e ? e : "?"), NULL;
	}
	dlerror();
	const void *sym = dlsym(*dl, symbol);
	if (!sym) {
		dlclose(*dl);
		*dl = NULL;
		snprintf(why, cap, "no symbol '%s': not an emhost %s", symbol, kind);
	}
	return sym;
}

static int load_one(emh_host *h, const char *path, emh_error *err)
{
	char why[512];
	void *dl;
	const emh_driver *d = emh__plugin_open(path, EMH_DRIVER_SYMBOL, "driver plugin", &dl, why, sizeof why);
	if (!d)
		return refuse(h, path, "%s", why);
	int rc = emh__add_driver(h, d, dl, path, err);
	if (rc != 1)
		dlclose(dl);
	return rc < 0 ? rc : 0;
}

int emh__load_plugins(emh_host *h, const char *dir, emh_error *err)
{
	struct stat st;
	if (stat(dir, &st) != 0) {
		emh__log(&h->log, EMH_LOG_WARN, NULL, "plugin directory '%s': %s", dir, strerror(errno));
		return refuse(h, dir, "plugin directory cannot be read: %s", strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return refuse(h, dir, "plugin_dir is not a directory");
	if (st.st_mode & S_IWOTH)
		return refuse(h, dir, "plugin directory is writable by others (mode %03o): no plugin loaded from it",
			      (unsigned)(st.st_mode & 0777));
	struct dirent **names;
	int n = scandir(dir, &names, so_filter, alphasort);
	if (n < 0)
		return refuse(h, dir, "cannot list plugin directory: %s", strerror(errno));
	int rc = 0;
	for (int i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
		if (rc == 0)
			rc = load_one(h, path, err);
		free(names[i]);
	}
	free(names);
	return rc;
}

void emh__unload_drivers(emh_host *h)
{
	for (size_t i = 0; i < h->ndrivers; i++) {
		if (h->drivers[i].dl)
			dlclose(h->drivers[i].dl);
		free(h->drivers[i].file);
		free(h->drivers[i].params);
	}
	free(h->drivers);
	h->drivers = NULL;
	h->ndrivers = 0;
	for (size_t i = 0; i < h->nrefused; i++) {
		free(h->refused[i].file);
		free(h->refused[i].reason);
	}
	free(h->refused);
	h->refused = NULL;
	h->nrefused = 0;
}
