/* SPDX-License-Identifier: MIT */
/*
 * core/cfg_model.c: the configuration model (core/cfg.h): settings with
 * their origins, contexts, services, their release and lookups; and the
 * small helpers the configuration files share.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_int.h"

/* ---- small helpers ---- */

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

char *emh__strf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *s = n < 0 ? NULL : malloc((size_t)n + 1);
	if (!s)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

bool emh__in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

const char *emh__name_problem(const char *s)
{
	if (!s || !(*s == '_' || (*s >= 'a' && *s <= 'z')))
		return "lowercase letters, digits and '_', not starting with a digit";
	size_t n = 1;
	for (const char *p = s + 1; *p; p++, n++)
		if (!(*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			return "lowercase letters, digits and '_', not starting with a digit";
	return n > EMH__NAME_MAX ? "longer than 63 bytes" : NULL;
}

/* An environment variable name: [A-Za-z_][A-Za-z0-9_]*. */
bool emh__valid_varname(const char *s, size_t n)
{
	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

/* Levenshtein distance, capped for the short keys compared here. */
size_t emh__edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 63 || lb > 63)
		return 64;
	size_t row[64];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* ---- settings ---- */

emh__setting *emh__settings_find_mut(emh__settings *s, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].key, key) == 0)
			return &s->v[i];
	return NULL;
}

const emh__setting *emh__settings_find(const emh__settings *s, const char *key)
{
	return s ? emh__settings_find_mut((emh__settings *)s, key) : NULL;
}

const char *emh__ctxconf_get(const emh__ctxconf *c, const char *key)
{
	const emh__setting *st = c ? emh__settings_find(&c->s, key) : NULL;
	return st ? st->value : NULL;
}

static void setting_release(emh__setting *st)
{
	free(st->key);
	free(st->value);
	free(st->origin);
	free(st->path);
	free(st->shown);
	*st = (emh__setting){ 0 };
}

const char *emh__setting_shown(const emh__setting *st)
{
	if (st->secret)
		return st->shown ? st->shown : "********";
	return st->value ? st->value : "";
}

int emh__settings_set_shown(emh__settings *s, const char *key, const char *shown)
{
	emh__setting *st = emh__settings_find_mut(s, key);
	if (!st)
		return EMH_EINVAL;
	char *d = xstrdup(shown);
	if (shown && !d)
		return EMH_ENOMEM;
	free(st->shown);
	st->shown = d;
	return 0;
}

int emh__settings_set(emh__settings *s, const char *key, const char *value, const char *origin,
		      const char *path, int ltype, bool secret)
{
	emh__setting nw = {
		.key = xstrdup(key),
		.value = xstrdup(value),
		.origin = xstrdup(origin),
		.path = xstrdup(path),
		.ltype = ltype,
		.secret = secret,
	};
	if (!nw.key || (value && !nw.value) || (origin && !nw.origin) || (path && !nw.path)) {
		setting_release(&nw);
		return EMH_ENOMEM;
	}
	emh__setting *old = emh__settings_find_mut(s, key);
	if (old) {
		setting_release(old);
		*old = nw;
		return 0;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		emh__setting *v = realloc(s->v, cap * sizeof *v);
		if (!v) {
			setting_release(&nw);
			return EMH_ENOMEM;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = nw;
	return 0;
}

/* Remove key, keeping the order of the others. */
void emh__settings_remove(emh__settings *s, const char *key)
{
	emh__setting *st = emh__settings_find_mut(s, key);
	if (!st)
		return;
	size_t i = (size_t)(st - s->v);
	setting_release(st);
	memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
	s->n--;
}

void emh__settings_release(emh__settings *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		setting_release(&s->v[i]);
	free(s->v);
	*s = (emh__settings){ 0 };
}

void emh__ctxconf_release(emh__ctxconf *c)
{
	if (!c)
		return;
	free(c->name);
	free(c->origin);
	emh__settings_release(&c->s);
	*c = (emh__ctxconf){ 0 };
}

static void svcconf_release(emh__svcconf *sv)
{
	free(sv->name);
	free(sv->module);
	free(sv->origin);
	emh__settings_release(&sv->remap);
	emh__settings_release(&sv->s);
	*sv = (emh__svcconf){ 0 };
}

/* Safe to call twice: the struct is zeroed. */
void emh__config_release(emh__config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	setting_release(&cfg->plugin_dir);
	setting_release(&cfg->default_context);
	setting_release(&cfg->service_dir);
	setting_release(&cfg->log_level);
	setting_release(&cfg->max_connections);
	emh__settings_release(&cfg->server);
	for (size_t i = 0; i < cfg->ncontexts; i++)
		emh__ctxconf_release(&cfg->contexts[i]);
	free(cfg->contexts);
	for (size_t i = 0; i < cfg->nservices; i++)
		svcconf_release(&cfg->services[i]);
	free(cfg->services);
	*cfg = (emh__config){ 0 };
}

int emh__setting_assign(emh__setting *st, const char *key, const char *value, const char *origin,
			const char *path, int ltype)
{
	setting_release(st);
	st->key = xstrdup(key);
	st->value = xstrdup(value);
	st->origin = xstrdup(origin);
	st->path = xstrdup(path);
	st->ltype = ltype;
	if (!st->key || (value && !st->value) || (origin && !st->origin) || (path && !st->path)) {
		setting_release(st);
		return EMH_ENOMEM;
	}
	return 0;
}

/* Append a zeroed context; returns it or NULL when memory ran out. */
emh__ctxconf *emh__config_add_context(emh__config *cfg)
{
	emh__ctxconf *v = realloc(cfg->contexts, (cfg->ncontexts + 1) * sizeof *v);
	if (!v)
		return NULL;
	cfg->contexts = v;
	v[cfg->ncontexts] = (emh__ctxconf){ 0 };
	return &v[cfg->ncontexts++];
}

emh__ctxconf *emh__config_find_context(emh__config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->ncontexts; i++)
		if (cfg->contexts[i].name && strcmp(cfg->contexts[i].name, name) == 0)
			return &cfg->contexts[i];
	return NULL;
}
