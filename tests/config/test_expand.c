/* SPDX-License-Identifier: MIT */
/* tests/config/test_expand.c: ${VAR} / ${VAR:-fallback} expansion of configuration strings. */
#include "config.h"

#include <stdint.h>

#include <emhost/buf.h>

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

/* "${X:-" n times, then "end", then "}" n times: n nested fallbacks. */
static char *nested(size_t n)
{
	char *s = malloc(n * 7 + 4);
	if (!s)
		bail("out of memory");
	size_t k = 0;
	for (size_t i = 0; i < n; i++, k += 5)
		memcpy(s + k, "${X:-", 5);
	memcpy(s + k, "end", 3);
	k += 3;
	memset(s + k, '}', n);
	s[k + n] = '\0';
	return s;
}

/* Issue 11 item 3: nesting is capped with a FILE:LINE error, never a stack overflow. */
static void test_nesting(void)
{
	const char *env[] = { "X=", NULL };
	emh_error err;
	char *out, *s = nested(16);
	is_int(emh__config_expand(s, env, "f.conf:3: path", &out, &err), 0, "16 nested fallbacks expand");
	is_str(out, "end", "to the innermost");
	free(out);
	free(s);

	s = nested(17);
	is_int(emh__config_expand(s, env, "f.conf:3: path", &out, &err), EMH_ECONFIG, "17 nested fallbacks: refused");
	is_str(err.message, "f.conf:3: path: '${NAME:-fallback}' nested more than 16 deep", "says where and why");
	ok(out == NULL, "no output");
	free(s);

	const char *set[] = { "X=v", NULL };
	s = nested(17);
	is_int(emh__config_expand(s, set, "f.conf:3: path", &out, &err), EMH_ECONFIG,
	       "refused even when the variable is set (the limit is on the text, not the environment)");
	free(s);

	static const size_t deep[] = { 20000, 50000, 200000 };
	for (size_t i = 0; i < sizeof deep / sizeof *deep; i++) {
		s = nested(deep[i]);
		is_int(emh__config_expand(s, env, "f.conf:3: path", &out, &err), EMH_ECONFIG, "%zu nested levels fail",
		       deep[i]);
		like_str(err.message, "nested more than 16 deep", "%zu levels: with the nesting error", deep[i]);
		free(s);
	}

	/* through the file: FILE:LINE and the path */
	char *conf = malloc(20000 * 7 + 200);
	s = nested(20000);
	sprintf(conf, "contexts = (\n { name = \"x\"; driver = \"sqlite\";\n   path = \"%s\"; } );\n", s);
	fails(conf, env, at(3), "contexts.[0].path: '${NAME:-fallback}' nested more than 16 deep",
	      "20,000 levels in a file: FILE:LINE: path");
	free(s);
	free(conf);
}

/* Long inputs expand in one pass: many references side by side, long literals, long names. */
static void test_long_inputs(void)
{
	const char *env[] = { "A=xy", "EMPTY=", NULL };
	emh_error err;
	char *out;
	size_t n = 200000;
	emh_buf in = EMH_BUF_INIT, want = EMH_BUF_INIT;
	for (size_t i = 0; i < n; i++) {
		emh_buf_adds(&in, "${A}-${EMPTY:-${A}}$$");
		emh_buf_adds(&want, "xy-xy$");
	}
	if (in.oom || want.oom)
		bail("out of memory");
	is_int(emh__config_expand(in.ptr, env, "w", &out, &err), 0, "200,000 references side by side");
	ok(out && strcmp(out, want.ptr) == 0, "expand to the right %zu bytes", want.len);
	free(out);
	emh_buf_reset(&in);
	for (size_t i = 0; i < 1000000; i++)
		emh_buf_add(&in, "}", 1);
	is_int(emh__config_expand(in.ptr, env, "w", &out, &err), 0, "a million literal '}'");
	ok(out && strlen(out) == 1000000, "kept");
	free(out);
	emh_buf_reset(&in);
	emh_buf_adds(&in, "${");
	for (size_t i = 0; i < 100000; i++)
		emh_buf_add(&in, "V", 1);
	emh_buf_adds(&in, ":-fb}");
	is_int(emh__config_expand(in.ptr, env, "w", &out, &err), 0, "a 100,000-byte variable name: looked up, not cut");
	is_str(out, "fb", "unset: the fallback");
	free(out);
	emh_buf_release(&in);
	emh_buf_release(&want);
}

/* xorshift64: reproducible random choices. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15u;
static unsigned rnd(unsigned n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (unsigned)(rnd_state % n);
}

/*
 * Append a random well-formed value to in and what it expands to to want
 * (when emit): the grammar's own answer, to compare with the expander's.
 */
static void gen(emh_buf *in, emh_buf *want, int depth, bool emit, int budget)
{
	static const char lit[] = "abc/.:-{ ";
	for (int k = rnd(6); k > 0 && budget > 0; k--, budget--) {
		switch (rnd(depth < 16 ? 9 : 6)) {
		case 0:
		case 1: {
			char c[2] = { lit[rnd(sizeof lit - 1)], 0 };
			if (depth == 0 && rnd(4) == 0)
				c[0] = '}'; /* a literal '}' outside any fallback */
			emh_buf_adds(in, c);
			if (emit)
				emh_buf_adds(want, c);
			break;
		}
		case 2:
			emh_buf_adds(in, "$$");
			if (emit)
				emh_buf_adds(want, "$");
			break;
		case 3:
			emh_buf_adds(in, "${SET}");
			if (emit)
				emh_buf_adds(want, "vS");
			break;
		case 4:
			emh_buf_adds(in, emit ? "${EMPTY}" : "${UNSET}");
			break;
		case 5:
			emh_buf_adds(in, "$a");
			if (emit)
				emh_buf_adds(want, "$a");
			break;
		case 6:
			emh_buf_adds(in, "${SET:-");
			if (emit)
				emh_buf_adds(want, "vS");
			gen(in, want, depth + 1, false, budget / 2);
			emh_buf_adds(in, "}");
			break;
		default:
			emh_buf_adds(in, rnd(2) ? "${EMPTY:-" : "${UNSET:-");
			gen(in, want, depth + 1, emit, budget / 2);
			emh_buf_adds(in, "}");
			break;
		}
	}
}

static void test_fuzz(void)
{
	const char *env[] = { "SET=vS", "EMPTY=", NULL };
	emh_error err;
	char *out;
	int mismatches = 0;
	for (int round = 0; round < 3000; round++) {
		emh_buf in = EMH_BUF_INIT, want = EMH_BUF_INIT;
		gen(&in, &want, 0, true, 400);
		emh_buf_adds(&in, "");
		emh_buf_adds(&want, "");
		int rc = emh__config_expand(in.ptr, env, "w", &out, &err);
		if (rc || strcmp(out, want.ptr) != 0) {
			if (mismatches++ < 3)
				diag("input '%s': want '%s', got %s '%s'", in.ptr, want.ptr, rc ? "error" : "",
				     rc ? err.message : out);
		}
		free(out);
		emh_buf_release(&in);
		emh_buf_release(&want);
	}
	is_int(mismatches, 0, "3,000 random well-formed values expand as the grammar says");

	/* random bytes from the syntax's alphabet: an answer, never a crash or a stray error */
	static const char alpha[] = "${}:-$AB_x9 ";
	int bad = 0;
	for (int round = 0; round < 3000; round++) {
		size_t len = rnd(3000);
		char *s = malloc(len + 1);
		for (size_t i = 0; i < len; i++)
			s[i] = alpha[rnd(sizeof alpha - 1)];
		s[len] = '\0';
		int rc = emh__config_expand(s, env, "w", &out, &err);
		if (!(rc == 0 && out) && !(rc == EMH_ECONFIG && !out && strncmp(err.message, "w: ", 3) == 0))
			bad++;
		free(out);
		free(s);
	}
	is_int(bad, 0, "3,000 random inputs: expanded or EMH_ECONFIG naming where");
}

int main(void)
{
	cfgtest_init();
	test_expansion();
	test_nesting();
	test_long_inputs();
	test_fuzz();
	return cfgtest_done();
}
