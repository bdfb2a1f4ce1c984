/* SPDX-License-Identifier: MIT */
/*
 * core/loader.c: driver plugins.  Every *.so of the plugin directory is
 * checked as a file (ELF, every segment inside it: emh__plugin_open), opened
 * with RTLD_NOW | RTLD_LOCAL (a missing symbol fails now, not mid-request,
 * and libpq/libmysqlclient/libmongoc never collide; its constructors run
 * there), and its one descriptor symbol is validated before any of its
 * members is called -- the symbol's size, ABI, struct size, a file named
 * after its driver, the members of its kind, every capability bit against
 * the members that serve it -- and a refusal is a warning naming the file
 * and the reason.  It stops the host only when a configured context
 * needs that driver (host.c).  Static drivers get the same checks but the
 * file name's.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
	{EMH_CAP_ATOMIC_FLUSH, "EMH_CAP_ATOMIC_FLUSH"}, {EMH_CAP_CONDITIONAL_WRITES, "EMH_CAP_CONDITIONAL_WRITES"},
	{EMH_CAP_LOCKS, "EMH_CAP_LOCKS"},               {EMH_CAP_ISOLATION, "EMH_CAP_ISOLATION"},
	{EMH_CAP_AGGREGATE, "EMH_CAP_AGGREGATE"},       {EMH_CAP_REPLICAS, "EMH_CAP_REPLICAS"},
};
#define NCAPS (sizeof cap_names / sizeof cap_names[0])
#define CAPS_KNOWN ((UINT64_C(1) << NCAPS) - 1)
_Static_assert(EMH_CAP_REPLICAS == UINT64_C(1) << (NCAPS - 1), "cap_names must list every EMH_CAP_* bit");

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
	/* Savepoints nest inside a transaction, a flush is made atomic by one,
	 * and an isolation level is a transaction's. */
	static const uint64_t needs_tx[] = {EMH_CAP_SAVEPOINTS, EMH_CAP_ATOMIC_FLUSH, EMH_CAP_ISOLATION};
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
	if ((caps & EMH_CAP_CONDITIONAL_WRITES) && !dl && MISSING(miss, M(d, update_where), M(d, delete_where))) {
		snprintf(why, cap, "advertises %s without %s (a document driver implements update_where and delete_where)",
			 cap_str(EMH_CAP_CONDITIONAL_WRITES, b1, sizeof b1), miss);
		return false;
	}
	if ((caps & EMH_CAP_LOCKS) && !(dl && d->lock_clause)) {
		snprintf(why, cap, "advertises %s %s", cap_str(EMH_CAP_LOCKS, b1, sizeof b1),
			 dl ? "without 'lock_clause'"
			    : "without a 'dialect' (row locks are SQL's FOR UPDATE/FOR SHARE in this ABI)");
		return false;
	}
	if ((caps & EMH_CAP_ISOLATION) && !d->begin_isolation) {
		snprintf(why, cap, "advertises %s without 'begin_isolation'", cap_str(EMH_CAP_ISOLATION, b1, sizeof b1));
		return false;
	}
	if ((caps & EMH_CAP_AGGREGATE) && !dl && !d->aggregate) {
		snprintf(why, cap, "advertises %s without 'aggregate' (a document driver implements it)",
			 cap_str(EMH_CAP_AGGREGATE, b1, sizeof b1));
		return false;
	}
	if ((caps & EMH_CAP_REPLICAS) && (!d->position || !d->replayed)) {
		snprintf(why, cap, "advertises %s without 'position' and 'replayed'", cap_str(EMH_CAP_REPLICAS, b1, sizeof b1));
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

int emh__add_driver(emh_host *h, const emh_driver *src, size_t sym_size, void *dl, const char *file,
		    emh_error *err)
{
	char reason[512];
	if (!src)
		return refuse(h, file, "descriptor is NULL");
	if (dl && !emh__desc_fits(EMH_DRIVER_SYMBOL, sym_size, MIN_STRUCT_SIZE, EMH_DRIVER_ABI_MAJOR, src, reason,
				  sizeof reason))
		return refuse(h, file, "%s", reason);
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
	if ((src->abi_version & 0xffff) == 0) {
		/* ABI 1.0 had no url_form: the 1.0 core read "sqlite:" URLs as file
		 * paths and every other scheme as a network URL.  A 1.0 plugin gets
		 * that reading still, so its URLs mean what they meant. */
		for (const char *const *sc = local.url_schemes; sc && *sc; sc++)
			if (strcmp(*sc, "sqlite") == 0)
				local.url_form = EMH_URL_FILE;
	}
	if (!local.name || !emh_ident_valid(local.name))
		return refuse(h, file, "descriptor has no valid name");
	if (dl && !check_file_name(file, local.name, reason, sizeof reason))
		return refuse(h, file, "%s", reason);
	if (!check_members(&local, reason, sizeof reason))
		return refuse(h, file, "%s", reason);
	for (size_t i = 0; i < h->ndrivers; i++)
		if (strcmp(h->drivers[i]->d.name, local.name) == 0)
			return refuse(h, file, "duplicate driver name '%s' (already loaded from %s)", local.name,
				      h->drivers[i]->file);
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
	/* Each driver on its own: contexts keep pointers to it while a reload
	 * appends more to the array. */
	emh__driver *nd = calloc(1, sizeof *nd);
	char *fcopy = strdup(file);
	if (h->ndrivers == h->capdrivers) {
		size_t cap = h->capdrivers ? 2 * h->capdrivers : 8;
		emh__driver **v = nd && fcopy ? realloc(h->drivers, cap * sizeof *v) : NULL;
		if (v) {
			h->drivers = v;
			h->capdrivers = cap;
		}
	}
	if (!nd || !fcopy || h->ndrivers == h->capdrivers) {
		free(nd);
		free(fcopy);
		free(params);
		free(dialect);
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	*nd = (emh__driver){.d = local, .dl = dl, .file = fcopy, .params = params, .dialect = dialect};
	h->drivers[h->ndrivers++] = nd;
	emh__log(&h->log, EMH_LOG_INFO, NULL, "driver '%s' %s loaded from %s", local.name, local.version, file);
	/* A url scheme two drivers declare picks neither (cfg_url.c): say so now, with both files. */
	for (size_t i = 0; i + 1 < h->ndrivers; i++)
		for (const char *const *a = local.url_schemes; a && *a; a++)
			for (const char *const *b = h->drivers[i]->d.url_schemes; b && *b; b++)
				if (strcasecmp(*a, *b) == 0)
					emh__log(&h->log, EMH_LOG_WARN, NULL, "url scheme '%s' of driver '%s' (%s) is "
						 "declared by driver '%s' (%s) too: a url with it needs the context's "
						 "driver set", *a, local.name, file, h->drivers[i]->d.name,
						 h->drivers[i]->file);
	return 1; /* kept */
}

/* ---- the plugin file ---- */

bool emh__desc_fits(const char *symbol, size_t sym_size, size_t min, unsigned major, const void *desc, char *why,
		    size_t cap)
{
	if (sym_size < min)
		return snprintf(why, cap, "symbol '%s' is %zu bytes, smaller than an ABI %u.0 descriptor (%zu bytes)",
				symbol, sym_size, major, min), false;
	uint32_t struct_size; /* the second member of every descriptor (pinned in driver.h, service.h) */
	memcpy(&struct_size, (const char *)desc + sizeof(uint32_t), sizeof struct_size);
	if (struct_size > sym_size)
		return snprintf(why, cap, "descriptor struct_size %u is larger than its symbol '%s' (%zu bytes): "
				"the loader would read past it", (unsigned)struct_size, symbol, sym_size), false;
	return true;
}

/* This host's ELF class, byte order and machine: a plugin must match them. */
#if UINTPTR_MAX == UINT64_MAX
#define HOST_CLASS ELFCLASS64
#else
#define HOST_CLASS ELFCLASS32
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_DATA ELFDATA2LSB
#else
#define HOST_DATA ELFDATA2MSB
#endif
#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#elif defined(__i386__)
#define HOST_MACHINE EM_386
#elif defined(__arm__)
#define HOST_MACHINE EM_ARM
#elif defined(__riscv)
#define HOST_MACHINE EM_RISCV
#elif defined(__powerpc64__)
#define HOST_MACHINE EM_PPC64
#elif defined(__s390x__)
#define HOST_MACHINE EM_S390
#else
#define HOST_MACHINE EM_NONE /* not listed here: dlopen alone checks the machine */
#endif

/* "LOAD", "DYNAMIC", ...: the program header types a refusal may name. */
static const char *segment_type(uint32_t t, char *buf, size_t cap)
{
	switch (t) {
	case PT_LOAD: return "LOAD";
	case PT_DYNAMIC: return "DYNAMIC";
	case PT_INTERP: return "INTERP";
	case PT_NOTE: return "NOTE";
	case PT_PHDR: return "PHDR";
	case PT_TLS: return "TLS";
	case PT_GNU_EH_FRAME: return "GNU_EH_FRAME";
	case PT_GNU_RELRO: return "GNU_RELRO";
	default: break;
	}
	snprintf(buf, cap, "type 0x%x", (unsigned)t);
	return buf;
}

/*
 * Can dlopen map the ELF object in fd (size bytes) without touching a byte
 * past its end?  It maps every loadable segment from the file and relocates
 * in place: a segment that runs past the end (a half-copied file) is a
 * SIGBUS in the middle of dlopen, before any message.  So the header, every
 * program header and every segment's file range are checked against the
 * size first, overflow-safe.  False with why[] set.
 */
static bool elf_check(int fd, uint64_t size, char *why, size_t cap)
{
	ElfW(Ehdr) eh;
	ssize_t got = pread(fd, &eh, sizeof eh, 0);
	if (got < 0)
		return snprintf(why, cap, "cannot read its ELF header: %s", strerror(errno)), false;
	if (got < SELFMAG || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
		return snprintf(why, cap, "not an ELF shared object"), false;
	if (size < sizeof eh || got != (ssize_t)sizeof eh)
		return snprintf(why, cap, "truncated: %llu bytes, shorter than an ELF header (%zu bytes)",
				(unsigned long long)size, sizeof eh), false;
	if (eh.e_ident[EI_CLASS] != HOST_CLASS)
		return snprintf(why, cap, "a %s ELF object, this host is %s",
				eh.e_ident[EI_CLASS] == ELFCLASS32 ? "32-bit" : eh.e_ident[EI_CLASS] == ELFCLASS64 ? "64-bit" : "malformed",
				HOST_CLASS == ELFCLASS64 ? "64-bit" : "32-bit"), false;
	if (eh.e_ident[EI_DATA] != HOST_DATA)
		return snprintf(why, cap, "an ELF object of the other byte order"), false;
	if (eh.e_type != ET_DYN)
		return snprintf(why, cap, "not an ELF shared object (ELF type %u)", (unsigned)eh.e_type), false;
	if (HOST_MACHINE != EM_NONE && eh.e_machine != HOST_MACHINE)
		return snprintf(why, cap, "built for ELF machine %u, this host is machine %u", (unsigned)eh.e_machine,
				(unsigned)HOST_MACHINE), false;
	if (eh.e_phentsize != sizeof(ElfW(Phdr)) || eh.e_phnum == 0 || eh.e_phnum == PN_XNUM)
		return snprintf(why, cap, "malformed ELF header: %u program headers of %u bytes", (unsigned)eh.e_phnum,
				(unsigned)eh.e_phentsize), false;
	uint64_t phsize = (uint64_t)eh.e_phnum * sizeof(ElfW(Phdr)), phend;
	if (__builtin_add_overflow((uint64_t)eh.e_phoff, phsize, &phend) || phend > size)
		return snprintf(why, cap, "truncated: its program headers end at byte %llu, file has %llu",
				(unsigned long long)eh.e_phoff + (unsigned long long)phsize, (unsigned long long)size), false;
	ElfW(Phdr) *ph = malloc(phsize);
	if (!ph)
		return snprintf(why, cap, "out of memory"), false;
	bool good = pread(fd, ph, phsize, (off_t)eh.e_phoff) == (ssize_t)phsize;
	if (!good)
		snprintf(why, cap, "cannot read its program headers: %s", strerror(errno));
	unsigned nload = 0;
	for (unsigned i = 0; good && i < eh.e_phnum; i++) {
		uint64_t off = ph[i].p_offset, len = ph[i].p_filesz, end;
		char tb[24];
		if (ph[i].p_type == PT_LOAD)
			nload++;
		if (__builtin_add_overflow(off, len, &end)) {
			good = false;
			snprintf(why, cap, "malformed: segment %u (%s) has offset %llu + size %llu past 2^64", i,
				 segment_type(ph[i].p_type, tb, sizeof tb), (unsigned long long)off, (unsigned long long)len);
		} else if (len && end > size) {
			good = false;
			snprintf(why, cap, "truncated: segment %u (%s) ends at byte %llu, file has %llu", i,
				 segment_type(ph[i].p_type, tb, sizeof tb), (unsigned long long)end, (unsigned long long)size);
		} else if (ph[i].p_type == PT_LOAD && len > ph[i].p_memsz) {
			good = false;
			snprintf(why, cap, "malformed: segment %u (LOAD) has %llu bytes in the file but %llu in memory", i,
				 (unsigned long long)len, (unsigned long long)ph[i].p_memsz);
		}
	}
	free(ph);
	if (good && nload == 0)
		return snprintf(why, cap, "malformed: no loadable segment"), false;
	return good;
}

/* "staff" for a group id, or its number. */
static const char *group_name(gid_t gid, char *buf, size_t cap)
{
	struct group gr, *res = NULL;
	char tmp[1024];
	if (getgrgid_r(gid, &gr, tmp, sizeof tmp, &res) == 0 && res)
		snprintf(buf, cap, "'%s'", res->gr_name);
	else
		snprintf(buf, cap, "%u", (unsigned)gid);
	return buf;
}

/*
 * A directory plugins are loaded from: refused when others may write it
 * (they could put any file there, or rename one over a plugin); a warning
 * naming it when its group may, since every member of that group can.
 * False with why[] set.
 */
bool emh__plugin_dir_ok(const emh__logger *log, const char *dir, const char *what, char *why, size_t cap)
{
	struct stat st;
	if (stat(dir, &st) != 0)
		return snprintf(why, cap, "%s cannot be read: %s", what, strerror(errno)), false;
	if (!S_ISDIR(st.st_mode))
		return snprintf(why, cap, "%s: not a directory", what), false;
	if (st.st_mode & S_IWOTH)
		return snprintf(why, cap, "%s is writable by others (mode %03o): no plugin is loaded from it", what,
				(unsigned)(st.st_mode & 0777)), false;
	if (st.st_mode & S_IWGRP) {
		char g[96];
		emh__log(log, EMH_LOG_WARN, NULL, "%s '%s' is writable by its group %s (mode %03o): every member can "
			 "replace what is loaded from it (fix with chmod g-w)", what, dir, group_name(st.st_gid, g, sizeof g),
			 (unsigned)(st.st_mode & 0777));
	}
	return true;
}

/*
 * Open a plugin file with the checks every plugin gets, drivers and service
 * modules alike: a regular file, not writable by others (its group: a
 * warning), an ELF shared object for this machine whose segments all lie
 * inside the file; then dlopen with RTLD_NOW | RTLD_LOCAL (a missing symbol
 * fails now, not mid-request) and its one descriptor symbol with the
 * symbol's size, which bounds what the caller may read of it.  Returns the
 * symbol with *dl open, or NULL with *dl closed and why[] saying why ("not
 * an emhost <kind>").
 *
 * The file is opened once and checked through that descriptor; dlopen then
 * opens it again by path, so a file renamed over it in between would be
 * loaded unchecked.  Afterwards the path must still name the file that was
 * checked, or the plugin is refused: what runs is then always the checked
 * file, but a swapped-in file's constructors (or a truncated one's SIGBUS)
 * happen inside that window.  dlopen("/proc/self/fd/N") would close it, at
 * the price of every crash report and symbolizer naming the plugin
 * "/proc/self/fd/N", and it would not help against what matters in
 * practice, a deploy writing into the file in place (same inode).  The
 * window needs write access to the directory, which the checks above keep
 * to its owner and group.
 *
 * A plugin's constructors run inside dlopen, before its descriptor is seen:
 * the line "loading <kind> 'FILE'" is logged (info) just before, so that the
 * last line of a process killed by one names the file.
 */
const void *emh__plugin_open(const emh__logger *log, const char *path, const char *symbol, const char *kind,
			     void **dl, size_t *sym_size, char *why, size_t cap)
{
	struct stat st, now;
	const void *sym = NULL;
	*dl = NULL;
	*sym_size = 0;
	/* O_NONBLOCK: a FIFO named like a plugin must not hang the start; it is refused below */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return snprintf(why, cap, "cannot open: %s", strerror(errno)), NULL;
	if (fstat(fd, &st) != 0) {
		snprintf(why, cap, "cannot stat: %s", strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, cap, "not a regular file");
		goto out_close;
	}
	if (st.st_mode & S_IWOTH) {
		snprintf(why, cap, "file is writable by others (mode %03o): fix with chmod o-w",
			 (unsigned)(st.st_mode & 0777));
		goto out_close;
	}
	if (!elf_check(fd, (uint64_t)st.st_size, why, cap))
		goto out_close;
	if (st.st_mode & S_IWGRP) {
		char g[96];
		emh__log(log, EMH_LOG_WARN, NULL, "%s '%s' is writable by its group %s (mode %03o): every member can "
			 "replace it (fix with chmod g-w)", kind, path, group_name(st.st_gid, g, sizeof g),
			 (unsigned)(st.st_mode & 0777));
	}
	emh__log(log, EMH_LOG_INFO, NULL, "loading %s '%s'", kind, path);
	if (!(*dl = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
		const char *e = dlerror();
		snprintf(why, cap, "dlopen failed: %s (check its dependencies with ldd)", e ? e : "?");
		goto out_close;
	}
	if (stat(path, &now) != 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
		snprintf(why, cap, "the file was replaced while it was being loaded: try again");
		goto out_dlclose;
	}
	dlerror();
	if (!(sym = dlsym(*dl, symbol))) {
		snprintf(why, cap, "no symbol '%s': not an emhost %s", symbol, kind);
		goto out_dlclose;
	}
	Dl_info info;
	const ElfW(Sym) *es = NULL;
	if (!dladdr1(sym, &info, (void **)&es, RTLD_DL_SYMENT) || !es || info.dli_saddr != sym) {
		sym = NULL;
		snprintf(why, cap, "cannot find the size of symbol '%s'", symbol);
		goto out_dlclose;
	}
	*sym_size = es->st_size;
	close(fd);
	return sym;
out_dlclose:
	dlclose(*dl);
	*dl = NULL;
out_close:
	close(fd);
	return sym;
}

static int so_filter(const struct dirent *e)
{
	size_t n = strlen(e->d_name);
	return n > 3 && strcmp(e->d_name + n - 3, ".so") == 0;
}

int emh__load_plugin(emh_host *h, const char *path, emh_error *err)
{
	char why[512];
	void *dl;
	size_t size;
	const emh_driver *d = emh__plugin_open(&h->log, path, EMH_DRIVER_SYMBOL, "driver plugin", &dl, &size, why,
					       sizeof why);
	if (!d)
		return refuse(h, path, "%s", why);
	int rc = emh__add_driver(h, d, size, dl, path, err);
	if (rc != 1)
		dlclose(dl);
	return rc < 0 ? rc : 0;
}

/* Was path loaded as a driver already? */
static bool loaded_from(const emh_host *h, const char *path)
{
	for (size_t i = 0; i < h->ndrivers; i++)
		if (strcmp(h->drivers[i]->file, path) == 0)
			return true;
	return false;
}

/* Forget the refusal of path, if any: it is about to be tried again.  Its
 * strings may still be borrowed (emh_host_refused), so they are retired. */
static void unrefuse(emh_host *h, const char *path)
{
	for (size_t i = 0; i < h->nrefused; i++)
		if (strcmp(h->refused[i].file, path) == 0) {
			emh__host_retire(h, h->refused[i].file);
			emh__host_retire(h, h->refused[i].reason);
			memmove(&h->refused[i], &h->refused[i + 1], (h->nrefused - i - 1) * sizeof *h->refused);
			h->nrefused--;
			return;
		}
}

/* A rescan's step: a file no driver came from is tried (again), and the
 * name of a driver it gives is appended to *loaded. */
typedef struct rescan {
	emh_host *h;
	emh_buf *loaded;
} rescan;

static int rescan_each(void *ud, const char *path)
{
	rescan *r = ud;
	emh_host *h = r->h;
	char why[512];
	void *dl;
	size_t size;
	/* drivers change only in a reload, and this is one: read without the lock */
	if (loaded_from(h, path))
		return 0;
	/* The file is opened, checked and dlopened -- its constructors run, for
	 * as long as they take -- without the host lock, so forks go on. */
	const emh_driver *d = emh__plugin_open(&h->log, path, EMH_DRIVER_SYMBOL, "driver plugin", &dl, &size, why,
					       sizeof why);
	pthread_rwlock_wrlock(&h->lock);
	size_t before = h->ndrivers;
	unrefuse(h, path);
	int rc = d ? emh__add_driver(h, d, size, dl, path, NULL) : refuse(h, path, "%s", why);
	if (h->ndrivers > before)
		emh_buf_addf(r->loaded, "%s%s", r->loaded->len ? ", " : "", h->drivers[before]->d.name);
	pthread_rwlock_unlock(&h->lock);
	if (d && rc != 1)
		dlclose(dl);
	return rc < 0 ? rc : 0;
}

int emh__plugin_foreach(const char *dir, int (*fn)(void *ud, const char *path), void *ud, int *list_errno)
{
	struct dirent **names;
	int n = scandir(dir, &names, so_filter, alphasort);
	*list_errno = n < 0 ? errno : 0;
	int rc = 0;
	for (int i = 0; i < n; i++) {
		char path[4096];
		int len = snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
		if (rc == 0 && len > 0 && (size_t)len < sizeof path) /* a longer name is no file of dir's */
			rc = fn(ud, path);
		free(names[i]);
	}
	if (n >= 0)
		free(names);
	return rc;
}

static int load_each(void *h, const char *path) { return emh__load_plugin(h, path, NULL); }

/* A refusal of the directory, in place of the one it may have had. */
static int refuse_dir(emh_host *h, const char *dir, const char *why)
{
	pthread_rwlock_wrlock(&h->lock);
	unrefuse(h, dir);
	int rc = why ? refuse(h, dir, "%s", why) : 0;
	pthread_rwlock_unlock(&h->lock);
	return rc;
}

int emh__rescan_plugins(emh_host *h, const char *dir, emh_buf *loaded, emh_error *err)
{
	char why[512];
	int list_errno;
	/* a directory refused at start may be fine now */
	if (!emh__plugin_dir_ok(&h->log, dir, "plugin directory", why, sizeof why)) {
		int rc = refuse_dir(h, dir, why);
		return rc < 0 ? emh_error_set(err, rc, "out of memory") : 0;
	}
	int rc = refuse_dir(h, dir, NULL);
	if (rc == 0)
		rc = emh__plugin_foreach(dir, rescan_each, &(rescan){.h = h, .loaded = loaded}, &list_errno);
	if (rc == 0 && list_errno) {
		snprintf(why, sizeof why, "cannot list plugin directory: %s", strerror(list_errno));
		rc = refuse_dir(h, dir, why);
	}
	return rc < 0 ? emh_error_set(err, rc, "out of memory") : 0;
}

int emh__load_plugins(emh_host *h, const char *dir, emh_error *err)
{
	char why[512];
	int list_errno;
	if (!emh__plugin_dir_ok(&h->log, dir, "plugin directory", why, sizeof why))
		return refuse(h, dir, "%s", why);
	int rc = emh__plugin_foreach(dir, load_each, h, &list_errno);
	if (list_errno)
		return refuse(h, dir, "cannot list plugin directory: %s", strerror(list_errno));
	return rc < 0 ? emh_error_set(err, rc, "out of memory") : rc;
}

#ifndef EMH_PLUGIN_DIR
#define EMH_PLUGIN_DIR "/usr/local/lib/emhost/plugins"
#endif

const char *emh__plugin_dir_for(const char *given, const emh__config *cfg, const char *const *env)
{
	const char *e = emh__getenv(env, "EMH_PLUGIN_DIR");
	return given ? given : cfg->plugin_dir.value ? cfg->plugin_dir.value : e ? e : EMH_PLUGIN_DIR;
}

void emh__unload_drivers(emh_host *h)
{
	for (size_t i = 0; i < h->ndrivers; i++) {
		emh__driver *d = h->drivers[i];
		if (d->dl)
			dlclose(d->dl);
		free(d->file);
		free(d->params);
		free(d->dialect);
		free(d);
	}
	free(h->drivers);
	h->drivers = NULL;
	h->ndrivers = h->capdrivers = 0;
	for (size_t i = 0; i < h->nrefused; i++) {
		free(h->refused[i].file);
		free(h->refused[i].reason);
	}
	free(h->refused);
	h->refused = NULL;
	h->nrefused = 0;
}
