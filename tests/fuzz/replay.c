/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/replay.c: a fuzz target without libFuzzer, for make check.
 * Feeds every file of tests/fuzz/corpus/<target>/ and of
 * tests/fuzz/regress/<target>/ (the inputs that once crashed it) through the
 * target's LLVMFuzzerTestOneInput, so that a regression fails make check in
 * every build, with or without clang.  TAP: one result per crash input, one
 * for the whole corpus; a crash or a sanitizer report ends the program, and
 * the test fails.  Built once per target with -DFUZZ_TARGET="name".
 */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../tap.h"
#include "fuzz.h"

#ifndef FUZZ_TARGET
#error "build with -DFUZZ_TARGET=\"name\""
#endif

/* A target without set-up has none; its own definition replaces this one. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	return 0;
}

/* Feed one file; false when it cannot be read. */
static bool feed(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return false;
	}
	size_t n = (size_t)st.st_size;
	uint8_t *buf = malloc(n ? n : 1);
	bool good = buf && fread(buf, 1, n, f) == n;
	fclose(f);
	if (good)
		LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return good;
}

/* Every regular file of dir in name order, fed; the count, or -1 when one cannot be read. */
static int feed_dir(const char *dir, bool one_result_each)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort), fed = 0;
	if (n < 0)
		return 0; /* no such directory: nothing to replay (regress/ is empty until a crash is found) */
	for (int i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
		struct stat st;
		if (names[i]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			bool good = feed(path);
			if (one_result_each)
				ok(good, "%s: %s went through without a crash", FUZZ_TARGET, names[i]->d_name);
			fed = fed >= 0 && good ? fed + 1 : -1;
		}
		free(names[i]);
	}
	free(names);
	return fed;
}

int main(int argc, char **argv)
{
	const char *src = getenv("EMH_SRCDIR");
	if (!src)
		bail("EMH_SRCDIR is not set (run through make check)");
	LLVMFuzzerInitialize(&argc, &argv);
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/tests/fuzz/regress/%s", src, FUZZ_TARGET);
	feed_dir(dir, true);
	snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", src, FUZZ_TARGET);
	int n = feed_dir(dir, false);
	ok(n > 0, "%s: the %d inputs of its seed corpus went through without a crash", FUZZ_TARGET, n);
	return done_testing();
}
