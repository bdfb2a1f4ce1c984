/* SPDX-License-Identifier: MIT */
/* core/cfg_expand.c: ${VAR} and ${VAR:-fallback} expansion of configuration strings. */
#include "config.h"

#include <ctype.h>
#include <string.h>

#include <emhost/buf.h>

#include "cfg_int.h"

/*
 * Expand s[0..len) into out: ${NAME} is the variable, ${NAME:-fallback} the
 * variable when set and not empty, else the (itself expanded) fallback; $$ is
 * one literal '$'; any other '$' is kept.  where names the value in errors.
 */
static int expand_into(emh_buf *out, const char *s, size_t len, const char *const *envp, const char *where,
		       emh_error *err)
{
	size_t i = 0;
	while (i < len) {
		if (s[i] != '$' || i + 1 >= len || (s[i + 1] != '$' && s[i + 1] != '{')) {
			emh_buf_add(out, &s[i++], 1);
			continue;
		}
		if (s[i + 1] == '$') {
			emh_buf_add(out, "$", 1);
			i += 2;
			continue;
		}
		size_t name = i + 2, j = name;
		while (j < len && (isalnum((unsigned char)s[j]) || s[j] == '_'))
			j++;
		size_t nlen = j - name;
		const char *fb = NULL;
		size_t fblen = 0, end;
		if (j < len && s[j] == '}') {
			end = j;
		} else if (j + 1 < len && s[j] == ':' && s[j + 1] == '-') {
			/* find the '}' closing this reference, skipping nested ${...} */
			size_t k = j + 2;
			int depth = 1;
			while (k < len) {
				if (s[k] == '$' && k + 1 < len && (s[k + 1] == '$' || s[k + 1] == '{')) {
					depth += s[k + 1] == '{';
					k += 2;
					continue;
				}
				if (s[k] == '}' && --depth == 0)
					break;
				k++;
			}
			if (k >= len)
				return emh_error_set(err, EMH_ECONFIG, "%s: unterminated '${' (write $$ for a literal '$')",
						     where);
			fb = s + j + 2;
			fblen = k - (j + 2);
			end = k;
		} else if (j >= len) {
			return emh_error_set(err, EMH_ECONFIG, "%s: unterminated '${' (write $$ for a literal '$')", where);
		} else {
			return emh_error_set(err, EMH_ECONFIG,
					     "%s: bad variable reference (use ${NAME} or ${NAME:-fallback}, "
					     "$$ for a literal '$')",
					     where);
		}
		if (!emh__valid_varname(s + name, nlen))
			return emh_error_set(err, EMH_ECONFIG,
					     "%s: bad variable name in '${' (use ${NAME} or ${NAME:-fallback})", where);
		char var[256];
		if (nlen >= sizeof var)
			return emh_error_set(err, EMH_ECONFIG, "%s: variable name too long", where);
		memcpy(var, s + name, nlen);
		var[nlen] = '\0';
		const char *v = emh__getenv(envp, var);
		if (v && (!fb || *v)) {
			emh_buf_adds(out, v);
		} else if (fb) {
			int rc = expand_into(out, fb, fblen, envp, where, err);
			if (rc)
				return rc;
		} else {
			return emh_error_set(err, EMH_ECONFIG,
					     "%s: environment variable '%s' is not set (write ${%s:-fallback} for a default)",
					     where, var, var);
		}
		i = end + 1;
	}
	return out->oom ? emh__cfg_oom(err) : 0;
}

int emh__config_expand(const char *s, const char *const *envp, const char *where, char **out, emh_error *err)
{
	emh_buf b = EMH_BUF_INIT;
	*out = NULL;
	int rc = expand_into(&b, s, strlen(s), envp, where, err);
	if (rc) {
		emh_buf_release(&b);
		return rc;
	}
	*out = emh_buf_take(&b);
	return *out ? 0 : emh__cfg_oom(err);
}
