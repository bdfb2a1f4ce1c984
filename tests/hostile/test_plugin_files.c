/* SPDX-License-Identifier: MIT */
/*
 * tests/hostile/test_plugin_files.c: plugin files that used to kill the
 * process loading them, or were read past their end (issue 11, items 1, 2,
 * 7 and 9), against real shared objects:
 *
 *   - a real plugin cut short (inside the ELF header, the program headers,
 *     a segment) is refused with the byte where it ends, not a SIGBUS;
 *   - a segment whose offset + size overflows is refused;
 *   - a descriptor symbol smaller than its struct_size (8 bytes claiming a
 *     whole descriptor), or struct_size 0xffffffff, is refused, for drivers
 *     and service modules;
 *   - a group-writable plugin directory or file loads, with a warning naming it;
 *   - "loading driver plugin 'FILE'" is logged before the plugin's code runs;
 *   - emh_host_probe_plugins reports a constructor calling _Exit(3) and one
 *     raising SIGSEGV as those files' refusals, and the caller lives on.
 */
#include "config.h"

#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <emhost/emhost.h>
#include <emhost/service.h>

#include "../tap.h"

static char tmp[256];
static const char *builddir;

/* ---- files ---- */

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		bail("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	unsigned char *p = malloc((size_t)n);
	if (n <= 0 || !p || fread(p, 1, (size_t)n, f) != (size_t)n)
		bail("cannot read %s", path);
	fclose(f);
	*len = (size_t)n;
	return p;
}

static void spit(const char *dir, const char *name, const void *p, size_t len, mode_t mode)
{
	char path[700];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, len, f) != len || fclose(f) != 0)
		bail("cannot write %s", path);
	if (chmod(path, mode) != 0)
		bail("chmod %s", path);
}

static void subdir(const char *name, char *out, size_t cap, mode_t mode)
{
	snprintf(out, cap, "%s/%s", tmp, name);
	if (mkdir(out, 0700) != 0 || chmod(out, mode) != 0)
		bail("mkdir %s", out);
}

static void fixture_file(const char *sub, const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/tests/%s/.libs/%s", builddir, sub, name);
}

/* ---- a host's log, kept ---- */

typedef struct logged {
	char lines[64][600];
	int n;
} logged;

static void keep_log(void *ud, int level, const char *context, const char *msg)
{
	logged *l = ud;
	if (l->n < 64)
		snprintf(l->lines[l->n++], sizeof l->lines[0], "%d %s", level, msg);
}

/* Index of the first line containing needle, or -1. */
static int line_with(const logged *l, const char *needle)
{
	for (int i = 0; i < l->n; i++)
		if (strstr(l->lines[i], needle))
			return i;
	return -1;
}

static emh_host *host_on(const char *dir, logged *l)
{
	const char *noenv[] = {NULL};
	emh_host_opts o = {.plugin_dir = dir, .envp = noenv, .log = keep_log, .log_ud = l, .log_level = EMH_LOG_INFO};
	emh_host *h = NULL;
	emh_error err;
	if (emh_host_new(&o, &h, &err) != 0)
		bail("emh_host_new on %s: %s", dir, err.message);
	return h;
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

static bool loaded(emh_host *h, const char *name)
{
	const emh_driver_info *d;
	size_t n = emh_host_drivers(h, &d);
	for (size_t i = 0; i < n; i++)
		if (strcmp(d[i].name, name) == 0)
			return true;
	return false;
}

/* ---- truncated and malformed ELF files ---- */

/* The last loadable segment of an ELF image: the data that relocation writes into. */
static int last_load(const unsigned char *so, const char *name)
{
	const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)so;
	const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(so + eh->e_phoff);
	int last = -1;
	for (int i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && ph[i].p_filesz)
			last = i;
	if (last < 0)
		bail("%s has no loadable segment", name);
	return last;
}

static void t_truncated(void)
{
	char good[600], dir[300], want[200];
	size_t len;
	fixture_file("fixtures", "fx_good.so", good, sizeof good);
	unsigned char *so = slurp(good, &len);
	const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)so;
	const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(so + eh->e_phoff);
	int last = last_load(so, good);
	size_t seg_end = ph[last].p_offset + ph[last].p_filesz, mid = ph[last].p_offset + ph[last].p_filesz / 2;
	size_t phend = eh->e_phoff + (size_t)eh->e_phnum * sizeof *ph;
	diag("fx_good.so: %zu bytes, %u program headers end at %zu, segment %d ends at %zu", len,
	     (unsigned)eh->e_phnum, phend, last, seg_end);

	subdir("cut", dir, sizeof dir, 0755);
	spit(dir, "fx_good.so", so, len, 0755);
	spit(dir, "cut_ident.so", so, 10, 0755);
	spit(dir, "cut_header.so", so, sizeof *eh, 0755);
	spit(dir, "cut_phdrs.so", so, eh->e_phoff + sizeof *ph + sizeof *ph / 2, 0755);
	spit(dir, "cut_segment.so", so, mid, 0755);
	spit(dir, "cut_last_byte.so", so, seg_end - 1, 0755);
	/* the same file whole, but a segment's offset + size past 2^64 */
	unsigned char *bad = malloc(len);
	if (!bad)
		bail("out of memory");
	memcpy(bad, so, len);
	((ElfW(Phdr) *)(bad + eh->e_phoff))[last].p_offset = (ElfW(Off))-16;
	spit(dir, "overflow.so", bad, len, 0755);
	/* another machine's object: the header says so before dlopen reads on */
	memcpy(bad, so, len);
	((ElfW(Ehdr) *)bad)->e_machine = EM_SPARCV9 == eh->e_machine ? EM_S390 : EM_SPARCV9;
	spit(dir, "machine.so", bad, len, 0755);
	free(bad);

	logged l = {0};
	emh_host *h = host_on(dir, &l);
	ok(loaded(h, "fx_good"), "the whole file loads next to its cut copies (the host lived)");
	like_str(reason_of(h, "cut_ident.so"), "truncated: 10 bytes, shorter than an ELF header", "cut inside the ELF header");
	snprintf(want, sizeof want, "truncated: its program headers end at byte %zu, file has %zu", phend, sizeof *eh);
	like_str(reason_of(h, "cut_header.so"), want, "cut after the ELF header: the program headers are missing");
	snprintf(want, sizeof want, "truncated: its program headers end at byte %zu, file has %zu", phend,
		 (size_t)eh->e_phoff + sizeof *ph + sizeof *ph / 2);
	like_str(reason_of(h, "cut_phdrs.so"), want, "cut in the middle of the program headers");
	snprintf(want, sizeof want, "truncated: segment %d (LOAD) ends at byte %zu, file has %zu", last, seg_end, mid);
	like_str(reason_of(h, "cut_segment.so"), want, "cut in the middle of a segment (a SIGBUS inside dlopen before)");
	snprintf(want, sizeof want, "truncated: segment %d (LOAD) ends at byte %zu, file has %zu", last, seg_end,
		 seg_end - 1);
	like_str(reason_of(h, "cut_last_byte.so"), want, "one byte short of its last segment");
	like_str(reason_of(h, "overflow.so"), "past 2^64", "a segment whose offset + size overflows");
	like_str(reason_of(h, "machine.so"), "built for ELF machine", "an object for another machine");
	ok(line_with(&l, "loading driver plugin") >= 0 && line_with(&l, "cut_segment.so") >= 0,
	   "every refusal is logged");
	emh_host_free(h);
	free(so);
}

/* ---- descriptor symbols and struct_size ---- */

static void t_descriptors(void)
{
	char dir[300], src[600], dst[700];
	size_t len;
	subdir("desc", dir, sizeof dir, 0755);
	const char *files[] = {"fx_good.so", "fx_sym8.so", "fx_huge.so"};
	for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
		fixture_file("fixtures", files[i], src, sizeof src);
		unsigned char *so = slurp(src, &len);
		spit(dir, files[i], so, len, 0755);
		free(so);
	}
	logged l = {0};
	emh_host *h = host_on(dir, &l);
	ok(loaded(h, "fx_good"), "a good plugin next to them loads");
	like_str(reason_of(h, "fx_sym8.so"),
		 "symbol 'emh_driver_descriptor' is 8 bytes, smaller than an ABI 1.0 descriptor",
		 "an 8-byte descriptor symbol is refused before anything past it is read");
	like_str(reason_of(h, "fx_huge.so"), "descriptor struct_size 4294967295 is larger than its symbol "
		 "'emh_driver_descriptor'", "struct_size 0xffffffff is refused");
	emh_host_free(h);

	emh_error err;
	fixture_file("daemon", "fx_sym8.so", dst, sizeof dst);
	is_int(emh_service_check_file(dst, &err), EMH_EPLUGIN, "a service module's 8-byte descriptor symbol is refused");
	like_str(err.message, "symbol 'emh_service_descriptor' is 8 bytes, smaller than an ABI 1.0 descriptor",
		 "saying so");
	fixture_file("daemon", "fx_huge.so", dst, sizeof dst);
	is_int(emh_service_check_file(dst, &err), EMH_EPLUGIN, "a service module's struct_size 0xffffffff is refused");
	like_str(err.message, "descriptor struct_size 4294967295 is larger than its symbol 'emh_service_descriptor'",
		 "saying so");
	fixture_file("daemon", "fx_good.so", dst, sizeof dst);
	is_int(emh_service_check_file(dst, &err), 0, "a good service module passes the same checks");
}

/* ---- permissions and the log ---- */

static void t_group_writable(void)
{
	char dir[300], src[600];
	size_t len;
	subdir("group", dir, sizeof dir, 0775);
	fixture_file("fixtures", "fx_good.so", src, sizeof src);
	unsigned char *so = slurp(src, &len);
	spit(dir, "fx_good.so", so, len, 0775);
	free(so);
	logged l = {0};
	emh_host *h = host_on(dir, &l);
	ok(loaded(h, "fx_good"), "a group-writable plugin in a group-writable directory loads");
	int wd = line_with(&l, "plugin directory '"), wf = line_with(&l, "driver plugin '");
	ok(wd >= 0 && strstr(l.lines[wd], dir) && strstr(l.lines[wd], "writable by its group") &&
	   l.lines[wd][0] == '0' + EMH_LOG_WARN, "a warning names the directory");
	ok(wf >= 0 && strstr(l.lines[wf], "/fx_good.so' is writable by its group") && l.lines[wf][0] == '0' + EMH_LOG_WARN,
	   "and one names the file");
	int loading = line_with(&l, "loading driver plugin"), done = line_with(&l, "driver 'fx_good'");
	ok(loading >= 0 && done > loading && strstr(l.lines[loading], "/fx_good.so'") &&
	   l.lines[loading][0] == '0' + EMH_LOG_INFO, "'loading driver plugin FILE' is logged (info) before its code runs");
	for (int i = 0; i < l.n; i++)
		diag("log: %s", l.lines[i]);
	emh_host_free(h);
}

/* ---- constructors that end the process: the probe ---- */

typedef struct verdicts {
	char file[8][600];
	char what[8][600];
	int n;
} verdicts;

static void on_verdict(void *ud, const char *file, const emh_driver_info *d, const char *refused)
{
	verdicts *v = ud;
	if (v->n >= 8)
		return;
	snprintf(v->file[v->n], sizeof v->file[0], "%s", file);
	if (d)
		snprintf(v->what[v->n], sizeof v->what[0], "loaded %s %s %u.%u", d->name, d->version, d->abi_major,
			 d->abi_minor);
	else
		snprintf(v->what[v->n], sizeof v->what[0], "refused %s", refused);
	v->n++;
}

static const char *verdict_of(const verdicts *v, const char *file_part)
{
	for (int i = 0; i < v->n; i++)
		if (strstr(v->file[i], file_part))
			return v->what[i];
	return NULL;
}

static void t_probe(void)
{
	char dir[300], src[600];
	size_t len;
	subdir("probe", dir, sizeof dir, 0755);
	const char *files[] = {"fx_ctorexit.so", "fx_ctorsegv.so", "fx_good.so", "fx_sym8.so"};
	for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
		fixture_file("fixtures", files[i], src, sizeof src);
		unsigned char *so = slurp(src, &len);
		spit(dir, files[i], so, len, 0755);
		free(so);
	}
	fixture_file("fixtures", "fx_good.so", src, sizeof src);
	unsigned char *so = slurp(src, &len);
	/* cut inside the last segment: half the file may lie past every segment */
	const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(so + ((const ElfW(Ehdr) *)so)->e_phoff) + last_load(so, src);
	spit(dir, "half.so", so, ph->p_offset + ph->p_filesz / 2, 0755);
	free(so);

	const char *noenv[] = {NULL};
	logged l = {0};
	verdicts v = {0};
	emh_host_opts o = {.plugin_dir = dir, .envp = noenv, .log = keep_log, .log_ud = &l, .log_level = EMH_LOG_INFO};
	emh_error err;
	is_int(emh_host_probe_plugins(&o, on_verdict, &v, &err), 0, "emh_host_probe_plugins returns (the caller lives on)");
	is_int(v.n, 5, "one verdict per plugin file");
	like_str(verdict_of(&v, "fx_good.so"), "loaded fx_good 0.1 1.", "the good plugin loads, with its name and version");
	like_str(verdict_of(&v, "fx_ctorexit.so"), "refused its process exited with status 3 while loading",
		 "a constructor calling _Exit(3) is that file's refusal, with the status");
	like_str(verdict_of(&v, "fx_ctorsegv.so"), "refused its process was killed by signal 11",
		 "a constructor raising SIGSEGV is that file's refusal, with the signal");
	like_str(verdict_of(&v, "fx_sym8.so"), "refused symbol 'emh_driver_descriptor' is 8 bytes",
		 "the loader's own checks run in the child");
	like_str(verdict_of(&v, "half.so"), "refused truncated: segment", "and so do the file checks");
	int loading = line_with(&l, "loading driver plugin '"), segv = line_with(&l, "fx_ctorsegv.so");
	ok(loading >= 0 && segv >= 0 && strstr(l.lines[segv], "loading driver plugin"),
	   "the children's log lines reach the caller: the last one of the crashed child names its file");
	for (int i = 0; i < v.n; i++)
		diag("%s: %s", v.file[i], v.what[i]);

	/* the directory checks apply as when loading */
	if (chmod(dir, 0777) != 0)
		bail("chmod %s", dir);
	v.n = 0;
	is_int(emh_host_probe_plugins(&o, on_verdict, &v, &err), 0, "a directory writable by others is probed");
	ok(v.n == 1 && strcmp(v.file[0], dir) == 0 && strstr(v.what[0], "writable by others"),
	   "as one refusal of the directory, nothing loaded from it");
	chmod(dir, 0755);
}

int main(void)
{
	builddir = getenv("EMH_BUILDDIR");
	if (!builddir)
		bail("EMH_BUILDDIR is not set (run through make check)");
	snprintf(tmp, sizeof tmp, "/tmp/emh-plugfiles-XXXXXX");
	if (!mkdtemp(tmp))
		bail("mkdtemp");
	t_truncated();
	t_descriptors();
	t_group_writable();
	t_probe();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		diag("could not remove %s", tmp);
	return done_testing();
}
