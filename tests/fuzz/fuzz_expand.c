/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz_expand.c: ${VAR} / ${VAR:-fallback} / $$ expansion
 * (core/cfg_expand.c).  The input is the text to expand, then after a NUL
 * byte the environment, one NAME=value a line.
 */
#include "config.h"

#include "cfg.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_str(data, size), *out = NULL, *env[33];
	if (!s)
		return 0;
	size_t n = strlen(s);
	size_t nenv = n < size ? fuzz_lines(s + n + 1, env, 32) : 0;
	env[nenv] = NULL;
	emh_error err;
	if (emh__config_expand(s, (const char *const *)env, "fuzz:1", &out, &err) == 0 && !out)
		abort(); /* success hands out a string */
	free(out);
	free(s);
	return 0;
}
