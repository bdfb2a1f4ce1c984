/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz_env.c: the environment over the configuration
 * (core/cfg_env.c): EMH_CONTEXT_<NAME>_<KEY>, EMH_CONTEXT_<NAME>_URL,
 * EMH_DEFAULT_CONTEXT, then every context checked against its driver
 * (cfg_check.c) as the host does.  The input is the environment, one
 * NAME=value a line.
 */
#include "config.h"

#include "cfg.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_str(data, size), *env[65];
	if (!s)
		return 0;
	size_t n = fuzz_lines(s, env, 64);
	env[n] = NULL;
	const char *const *envp = (const char *const *)env;
	emh__config cfg;
	emh_error err;
	if (emh__config_parse(&cfg, NULL, envp, &err) == 0) {
		if (emh__config_apply_env(&cfg, envp, fuzz_drivers, FUZZ_NDRIVERS, &err) == 0)
			for (size_t i = 0; i < cfg.ncontexts; i++) {
				const emh_driver *d = fuzz_driver(emh__ctxconf_get(&cfg.contexts[i], "driver"));
				if (d && emh__config_check_context(&cfg.contexts[i], d, envp, &err) != 0)
					break;
			}
		emh__config_release(&cfg);
	}
	free(s);
	return 0;
}
