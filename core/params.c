/* SPDX-License-Identifier: MIT */
/* core/params.c: the read-only view of a context's settings handed to drivers (secrets never echoed). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

const char *emh_params_get(const emh_params *p, const char *key)
{
	if (!p || !key)
		return NULL;
	const emh__setting *s = emh__settings_find(p->settings, key);
	return s ? s->value : NULL;
}

int emh_params_int(const emh_params *p, const char *key, long long def, long long *out, emh_error *err)
{
	const emh__setting *s = p ? emh__settings_find(p->settings, key) : NULL;
	if (!s || !s->value) {
		*out = def;
		return 0;
	}
	char *end;
	errno = 0;
	long long v = strtoll(s->value, &end, 10);
	if (errno || end == s->value || *end)
		return emh_error_set(err, EMH_ECONFIG, "%s: '%s' must be an integer, got '%s'",
				     s->origin ? s->origin : "setting", key, emh__setting_shown(s));
	*out = v;
	return 0;
}

int emh_params_bool(const emh_params *p, const char *key, bool def, bool *out, emh_error *err)
{
	static const char *const yes[] = {"true", "1", "yes", "on"}, *const no[] = {"false", "0", "no", "off"};
	const emh__setting *s = p ? emh__settings_find(p->settings, key) : NULL;
	*out = def;
	if (!s || !s->value)
		return 0;
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s->value, yes[i]) == 0)
			return *out = true, 0;
		if (strcasecmp(s->value, no[i]) == 0)
			return *out = false, 0;
	}
	return emh_error_set(err, EMH_ECONFIG, "%s: '%s' must be true or false, got '%s'",
			     s->origin ? s->origin : "setting", key, emh__setting_shown(s));
}

const char *emh_params_context(const emh_params *p) { return p ? p->context : NULL; }
const char *emh_params_instance(const emh_params *p) { return p ? p->instance : NULL; }
