/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz_config.c: the configuration file reader (core/cfg_file.c
 * and the ${} expansion of its strings, libconfig underneath).  The input
 * is the file's text, written to a file of this process: libconfig reads
 * files.  Inputs naming @include are skipped: they would make libconfig
 * read whatever file they name (/dev/zero never ends).
 *
 * libconfig 1.5 (Debian 12) leaks the string it was reading when a file
 * ends inside it (regress/config/leak-69fb...: 64 bytes per such file, its
 * scanner's strbuf, even around a bare config_read_file/config_destroy).
 * That leak is suppressed here, by its function's name, and nothing else.
 */
#include "config.h"

#include <stdio.h>
#include <unistd.h>

#include "cfg.h"
#include "fuzz.h"

static char path[64];

/* Read by LeakSanitizer when the target runs under it (fuzzer, sanitizer build). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:strbuf_append\n"; }
static const char *const env[] = {"HOME=/home/fuzz", "EMH_PG_PASSWORD=pw", "EMPTY=", "PORT=5432", NULL};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	snprintf(path, sizeof path, "/tmp/emh-fuzz-config-%ld.conf", (long)getpid());
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (memmem(data, size, "@include", 8))
		return 0;
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	size_t w = fwrite(data, 1, size, f);
	if (fclose(f) != 0 || w != size)
		return 0;
	emh__config cfg;
	emh_error err;
	if (emh__config_parse(&cfg, path, env, &err) == 0)
		emh__config_release(&cfg);
	unlink(path);
	return 0;
}
