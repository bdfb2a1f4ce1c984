/* SPDX-License-Identifier: MIT */
/* tests/config/test_expand.c: ${VAR} / ${VAR:-fallback} expansion of configuration strings. */
#include "config.h"

#include "cfgtest.h"

static void test_expansion(void)
{
	emh__config cfg;
	emh_error err;
	const char *env[] = { "A=alpha", "EMPTY=", "B=beta", NULL };
	int rc = load("contexts = ( { name = \"x\"; driver = \"sqlite\";\n"
		      "  path = \"${A}/${EMPTY:-e}/${NOPE:-${B}}/${NOPE:-${NOPE2:-deep}}/$${A}/a$b/100$\"; } );\n",
		      env, &cfg, &err);
	is_int(rc, 0, "expansion parses");
	if (rc)
		diag("%s", err.message);
	else
		is_str(emh__ctxconf_get(ctx(&cfg, "x"), "path"), "alpha/e/beta/deep/${A}/a$b/100$",
		       "${VAR}, empty -> fallback, nested fallbacks, $$, lone $ kept");
	emh__config_release(&cfg);

	fails("plugin_dir = \"x\";\ncontexts = ( { name = \"x\"; driver = \"sqlite\";\n  path = \"${MISSING}/db\"; } );\n",
	      env, at(3), "contexts.[0].path: environment variable 'MISSING' is not set", "missing variable names it and FILE:LINE");
	fails("plugin_dir = \"${UNTERMINATED\";\n", env, "plugin_dir: unterminated '${'", NULL, "unterminated ${");
	fails("plugin_dir = \"${A:-x\";\n", env, "unterminated", NULL, "unterminated fallback");
	fails("plugin_dir = \"${A B}\";\n", env, "bad variable reference", NULL, "bad reference");
	fails("plugin_dir = \"${}\";\n", env, "bad variable name", NULL, "empty variable name");
	fails("services = ( { name = \"s\"; settings = { k = \"${NOPE}\"; }; } );\n", env,
	      "services.[0].settings.k: environment variable 'NOPE' is not set", NULL, "expansion in service settings");
}

int main(void)
{
	cfgtest_init();
	test_expansion();
	return cfgtest_done();
}
