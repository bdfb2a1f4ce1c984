/* SPDX-License-Identifier: MIT */
/*
 * core/loader.c: driver plugins.  Every *.so of the plugin directory is
 * opened with RTLD_NOW | RTLD_LOCAL (a missing symbol fails now, not
 * mid-request, and libpq/libmysqlclient/libmongoc never collide), its one
 * descriptor symbol is validated before any of its code runs -- ABI, size,
 * a file named after its driver, the members of its kind, every capability
 * bit against the members that serve it -- and a refusal is a warning naming
 * the file and the reason.  It stops the host only when a configured context
 * needs that driver (host.c).  Static drivers get the same checks but the
 * file name's.
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

/* The capability bits this host knows, for refusals that name them.  A bit
 * appended to driver.h gets its line here and its check in check_caps. */
static const struct {
	uint64_t bit;
	const char *name;
} cap_names[] = {
	{EMH_CAP_TRANSACTIONS, "EMH_CAP_TRANSACTIONS"}, {EMH_CAP_SAVEPOINTS, "EMH_CAP_SAVEPOINTS"},
	{EMH_CAP_RETURNING, "EMH_CAP_RETURNING"},       {EMH_CAP_UPSERT, "EMH_CAP_UPSERT"},
	{EMH_CAP_TWO_PHASE, "EMH_CAP_TWO_PHASE"},       {EMH_CAP_SQL, "EMH_CAP_SQL"},
	{EMH_CAP_ATOMIC_FLUSH, "EMH_CAP_ATOMIC_FLUSH"}, {EMH_CAP_AGGREGATE, "EMH_CAP_AGGREGATE"},
};
#define NCAPS (sizeof cap_names / sizeof cap_names[0])
#define CAPS_KNOWN ((UINT64_C(1) << NCAPS) - 1)
_Static_assert(EMH_CAP_AGGREGATE == UINT64_C(1) << (NCAPS - 1), "cap_names must list every EMH_CAP_* bit");

/* "EMH_CAP_UPSERT (bit 3)" */
static const char *cap_str(uint64_t bit, char *buf, size_t cap)
{
	for (size_t i = 0; i < NCAPS; i++)
		if (cap_names[i].bit == bit) {
			snprintf(buf, cap, "%s (bit %zu)", cap_names[i].name, i);
			return buf;
		}
	snprintf(buf, cap, "bit %d", __builtin_ctzll(bit));
	return buf;
}

/* A member's name and whether the descriptor sets it. */
typedef struct member {
	const char *name;
	bool set;
} member;

/* "'rollback'" or "'find', 'count'": the members of m[] that are not set; NULL when all are. */
static const char *missing(const member *m, size_t n, char *buf, size_t cap)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++)
		if (!m[i].set && off < cap)
			off += (size_t)snprintf(buf + off, cap - off, "%s'%s'", off ? ", " : "", m[i].name);
	return off ? buf : NULL;
}
#define MISSING(buf, ...)                                                                    \
	missing((const member[]){__VA_ARGS__}, sizeof((const member[]){__VA_ARGS__}) / sizeof(member), buf, \
		sizeof buf)
#define M(d, x) {#x, (d)->x != NULL}

/*
 * The capability bits against the members that serve them, for both kinds of
 * driver (d->dialect set: SQL; NULL: document).  False with why[] naming the
 * bit and the missing member.
 */
static bool check_caps(const emh_driver *d, char *why, size_t cap)
{
	char b1[64], b2[64], miss[160];
	const emh_sql_dialect *dl = d->dialect;
	uint64_t caps = d->caps;
	if (caps & ~CAPS_KNOWN) {
		uint64_t bad = caps & ~CAPS_KNOWN;
		snprintf(why, cap, "unknown capability %s (caps 0x%llx): this host knows bits 0-%zu, %s to %s",
			 cap_str(bad & -bad, b1, sizeof b1), (unsigned long long)caps, NCAPS - 1, cap_names[0].name,
			 cap_names[NCAPS - 1].name);
		return false;
	}
	if ((caps & EMH_CAP_SQL) && !(dl && d->stmt_exec)) {
		snprintf(why, cap, "advertises %s without %s", cap_str(EMH_CAP_SQL, b1, sizeof b1),
			 MISSING(miss, M(d, dialect), M(d, stmt_exec)));
		return false;
	}
	if ((caps & EMH_CAP_TRANSACTIONS) && !dl &&
	    MISSING(miss, M(d, begin), M(d, commit), M(d, rollback))) {
		snprintf(why, cap, "advertises %s without %s (a driver without a dialect implements begin, commit and rollback)",
			 cap_str(EMH_CAP_TRANSACTIONS, b1, sizeof b1), miss);
		return false;
	}
	/* Savepoints nest inside a transaction, and a flush is made atomic by one. */
	static const uint64_t needs_tx[] = {EMH_CAP_SAVEPOINTS, EMH_CAP_ATOMIC_FLUSH};
	for (size_t i = 0; i < sizeof needs_tx / sizeof *needs_tx; i++)
		if ((caps & needs_tx[i]) && !(caps & EMH_CAP_TRANSACTIONS)) {
			snprintf(why, cap, "advertises %s without %s", cap_str(needs_tx[i], b1, sizeof b1),
				 cap_str(EMH_CAP_TRANSACTIONS, b2, sizeof b2));
			return false;
		}
	if ((caps & EMH_CAP_SAVEPOINTS) && !dl &&
	    MISSING(miss, M(d, savepoint), M(d, release), M(d, rollback_to))) {
		snprintf(why, cap,
			 "advertises %s without %s (a driver without a dialect implements savepoint, release and rollback_to)",
			 cap_str(EMH_CAP_SAVEPOINTS, b1, sizeof b1), miss);
		return false;
	}
	if ((caps & EMH_CAP_RETURNING) && !(dl && dl->returning)) {
		snprintf(why, cap, "advertises %s %s", cap_str(EMH_CAP_RETURNING, b1, sizeof b1),
			 dl ? "but its dialect says returning = false"
			    : "without a 'dialect' (INSERT ... RETURNING is SQL; a document driver's insert returns the key)");
		return false;
	}
	if ((caps & EMH_CAP_UPSERT) && dl && dl->upsert == EMH_SQL_UPSERT_NONE) {
		snprintf(why, cap, "advertises %s but its dialect has no upsert style",
			 cap_str(EMH_CAP_UPSERT, b1, sizeof b1));
		return false;
	}
	if ((caps & EMH_CAP_UPSERT) && !dl && !d->upsert) {
		snprintf(why, cap, "advertises %s without 'upsert' (a document driver implements it)",
			 cap_str(EMH_CAP_UPSERT, b1, sizeof b1));
		return false;
	}
	if ((caps & EMH_CAP_AGGREGATE) && !dl && !d->aggregate) {
		snprintf(why, cap, "advertises %s without 'aggregate' (a document driver implements it)",
			 cap_str(EMH_CAP_AGGREGATE, b1, sizeof b1));
		return false;
	}
	if (caps & EMH_CAP_TWO_PHASE) {
		snprintf(why, cap, "advertises %s, which no member of this ABI serves (the bit is reserved)",
			 cap_str(EMH_CAP_TWO_PHASE, b1, sizeof b1));
		return false;
	}
	return true;
}

/* Why a descriptor cannot be used: false with why[] set.  d is the zero-extended copy. */
static bool check_members(const emh_driver *d, char *why, size_t cap)
{
	char miss[160];
	if (!d->version)
		return snprintf(why, cap, "descriptor has no version"), false;
	if (MISSING(miss, M(d, connect), M(d, disconnect), M(d, ping), M(d, execute), M(d, sync)))
		return snprintf(why, cap, "required member %s is NULL (every driver sets connect, disconnect, ping, execute, sync)",
				miss), false;
	if (!!d->dialect != !!d->stmt_exec)
		return snprintf(why, cap, "'%s' is set without '%s' (a SQL driver sets both, a document driver neither)",
				d->dialect ? "dialect" : "stmt_exec", d->dialect ? "stmt_exec" : "dialect"), false;
	if (d->dialect && !d->dialect->column_type)
		return snprintf(why, cap, "dialect has no column_type"), false;
	if (!d->dialect && !d->insert && !d->update && !d->remove && !d->find && !d->count)
		return snprintf(why, cap, "neither a SQL driver (dialect, stmt_exec) nor a document driver "
				"(insert, update, remove, find, count)"), false;
	if (!d->dialect && MISSING(miss, M(d, insert), M(d, update), M(d, remove), M(d, find), M(d, count)))
		return snprintf(why, cap, "document driver (no dialect) without %s: it implements insert, update, remove, "
				"find and count", miss), false;
	if (!!d->context_open != !!d->context_close)
		return snprintf(why, cap, "context_open and context_close must be set together"), false;
	return check_caps(d, why, cap);
}

/* A plugin file must be named after its driver (postgres.so provides
 * postgres): otherwise a stray copy could serve a context in the real one's
 * place, and a context could not find which file to blame. */
static bool check_file_name(const char *path, const char *name, char *why, size_t cap)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t n = strlen(name);
	if (strncmp(base, name, n) == 0 && strcmp(base + n, ".so") == 0)
		return true;
	snprintf(why, cap, "file '%s' declares driver '%s': a plugin file is named after its driver (%s.so)", base,
		 name, name);
	return false;
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
	if ((src->abi_version & 0xffff) > EMH_DRIVER_ABI_MINOR && (local.caps & ~CAPS_KNOWN)) {
		/* Built against a newer minor: its newer bits are like its newer
		 * members, ignored (this host uses none of them).  A bit unknown to
		 * the minor a plugin was built for is a bug: check_caps refuses it. */
		emh__log(&h->log, EMH_LOG_INFO, NULL, "plugin '%s' (ABI %u.%u): capability bits 0x%llx are newer than "
			 "this host's ABI %u.%u and are ignored", file, EMH_DRIVER_ABI_MAJOR,
			 (unsigned)(src->abi_version & 0xffff), (unsigned long long)(local.caps & ~CAPS_KNOWN),
			 EMH_DRIVER_ABI_MAJOR, EMH_DRIVER_ABI_MINOR);
		local.caps &= CAPS_KNOWN;
	}
	char reason[512];
	if (!local.name || !emh_ident_valid(local.name))
		return refuse(h, file, "descriptor has no valid name");
	if (dl && !check_file_name(file, local.name, reason, sizeof reason))
		return refuse(h, file, "%s", reason);
	if (!check_members(&local, reason, sizeof reason))
		return refuse(h, file, "%s", reason);
	for (size_t i = 0; i < h->ndrivers; i++)
		if (strcmp(h->drivers[i].d.name, local.name) == 0)
			return refuse(h, file, "duplicate driver name '%s' (already loaded from %s)", local.name,
				      h->drivers[i].file);
	const char *why;
	emh_param_spec *params = params_copy(&local, &why);
	if (!params)
		return strcmp(why, "out of memory") == 0 ? emh_error_set(err, EMH_ENOMEM, "out of memory")
							 : refuse(h, file, "%s", why);
	local.params = params;
	/* The dialect is driver data without a size of its own: its members
	 * appended in minor N exist only in drivers built against N or later,
	 * so an older driver's is copied up to the size its minor knew and the
	 * rest reads as zero. */
	emh_sql_dialect *dialect = NULL;
	if (local.dialect) {
		size_t have = (local.abi_version & 0xffff) >= 1 ? sizeof *dialect : EMH__SQL_DIALECT_1_0_SIZE;
		if (!(dialect = calloc(1, sizeof *dialect))) {
			free(params);
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		}
		memcpy(dialect, local.dialect, have);
		local.dialect = dialect;
	}
	emh__driver *nd = realloc(h->drivers, (h->ndrivers + 1) * sizeof *nd);
	if (!nd) {
		free(params);
		free(dialect);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	h->drivers = nd;
	nd[h->ndrivers].d = local;
	nd[h->ndrivers].dl = dl;
	nd[h->ndrivers].params = params;
	nd[h->ndrivers].dialect = dialect;
	nd[h->ndrivers].file = strdup(file);
	if (!nd[h->ndrivers].file) {
		free(params);
		free(dialect);
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
		free(h->drivers[i].dialect);
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
