/* SPDX-License-Identifier: MIT */
/*
 * core/scope.c: scopes, one unit of work of one service.  A scope maps the
 * service's needs, resolved once at load (service.c), to forks made on first
 * ask and to repositories of the host's copies of the declared entities; it
 * closes every fork it made.  A request pays no lookup by name beyond the
 * service's.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "relation_int.h"
#include "service_int.h"

/* A parameter set on the scope (emh_scope_set_param): name and text malloc'd. */
typedef struct scope_param {
	char *name;
	emh_value v;
} scope_param;

struct emh_scope {
	emh_svc *svc;
	size_t nopen;
	emh_em **ems;     /* per svc->ctx */
	emh_repo **repos; /* per need */
	scope_param *params;
	size_t nparams;
	unsigned fork_flags; /* emh_scope_fork_opts: EMH_FORK_* of every fork it opens */
	char *after;         /* "ctx=pos;ctx=pos" (emh_scope_fork_opts), malloc'd; NULL: none */
};

int emh_scope_open(emh_services *s, const char *service, emh_scope **out, emh_error *err)
{
	*out = NULL;
	if (!s || !service)
		return emh_error_set(err, EMH_EINVAL, "no services object or service name given");
	if (s->magic != EMH__SERVICES_MAGIC)
		return emh_error_set(err, EMH_EINVAL,
				     "emh_scope_open: first argument is not an emh_services (scopes are opened on "
				     "the services object since emhost 1.1, not on the host)");
	emh_svc *svc;
	char list[1024] = "";
	pthread_rwlock_rdlock(&s->lock);
	if (!(svc = emh__services_find_locked(s, service)))
		for (size_t i = 0; i < s->n; i++)
			emh__list_add(list, sizeof list, s->v[i]->name);
	pthread_rwlock_unlock(&s->lock);
	if (!svc)
		return emh_error_set(err, EMH_ENOSERVICE, "no service '%s' (services: %s)", service,
				     list[0] ? list : "none");
	emh_scope *sc = calloc(1, sizeof *sc + (svc->nctx + svc->nneeds) * sizeof(void *));
	if (!sc)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	sc->svc = svc;
	sc->ems = (emh_em **)(sc + 1);
	sc->repos = (emh_repo **)(sc->ems + svc->nctx);
	*out = sc;
	return 0;
}

void emh_scope_close(emh_scope *scope)
{
	if (!scope)
		return;
	for (size_t i = 0; i < scope->svc->nctx; i++)
		emh_em_close(scope->ems[i]);
	for (size_t i = 0; i < scope->nparams; i++) {
		free(scope->params[i].name);
		if (scope->params[i].v.type == EMH_T_TEXT)
			free((void *)scope->params[i].v.u.s.ptr);
	}
	free(scope->params);
	free(scope->after);
	free(scope);
}

int emh_scope_handle(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err)
{
	if (!scope || !req || !res)
		return emh_error_set(err, EMH_EINVAL, "scope, request and response are required");
	emh_error scratch;
	if (!err)
		err = &scratch;
	emh_error_clear(err);
	/* the 1.0 members only: a caller built against 1.0 has no more, and the
	 * 1.1 ones (params, route) are the router's to set */
	emh_request r = {
		.method = req->method, .path = req->path ? req->path : "", .query = req->query,
		.args = req->args, .nargs = req->nargs, .headers = req->headers, .nheaders = req->nheaders,
		.body = req->body, .body_len = req->body_len,
	};
	int rc = scope->svc->desc.nroutes ? emh__routes_dispatch(scope, scope->svc, &r, res, err)
					  : scope->svc->desc.handle(scope, &r, res, err);
	if (rc && err->code != rc) {
		/* the handler returned a code without saying why */
		emh_error_set(err, rc, "service '%s': %s", scope->svc->name, emh_strerror(rc));
	}
	return rc;
}

void emh_scope_reset(emh_scope *scope)
{
	if (!scope)
		return;
	for (size_t i = 0; i < scope->svc->nctx; i++) {
		emh_em *em = scope->ems[i];
		if (!em)
			continue;
		/* every level, even after a rollback failed (each closes its level) */
		while (emh_em_tx_depth(em) > 0)
			emh_em_rollback(em, NULL);
		emh_em_clear(em);
	}
}

static const emh__em_owner scope_owner;

/* The position for context ctx in tokens "ctx=pos;ctx=pos" into buf, or NULL when none is there. */
static const char *token_for(const char *tokens, const char *ctx, char *buf, size_t cap)
{
	size_t n = ctx ? strlen(ctx) : 0;
	for (const char *t = tokens; t && *t && n;) {
		const char *end = strchr(t, ';');
		size_t len = end ? (size_t)(end - t) : strlen(t);
		while (len && *t == ' ')
			t++, len--;
		if (len > n && strncmp(t, ctx, n) == 0 && t[n] == '=' && len - n - 1 < cap) {
			memcpy(buf, t + n + 1, len - n - 1);
			buf[len - n - 1] = '\0';
			return buf;
		}
		t = end ? end + 1 : NULL;
	}
	return NULL;
}

int emh_scope_fork_opts(emh_scope *scope, unsigned flags, const char *after, emh_error *err)
{
	if (!scope)
		return emh_error_set(err, EMH_EINVAL, "no scope given");
	if (flags & ~EMH__FORK_FLAGS)
		return emh_error_set(err, EMH_EINVAL, "emh_scope_fork_opts: unknown flags 0x%x", flags & ~EMH__FORK_FLAGS);
	char *copy = after && *after ? strdup(after) : NULL;
	if (after && *after && !copy)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	free(scope->after);
	scope->after = copy;
	/* NOWAIT stays: whoever runs the scope where it must not block set it,
	 * and a handler asking for read-only forks must not lift it */
	scope->fork_flags = flags | (scope->fork_flags & EMH_FORK_NOWAIT);
	return 0;
}

bool emh_scope_would_wait(const emh_scope *scope)
{
	for (size_t i = 0; scope && i < scope->svc->nctx; i++)
		if (scope->ems[i] && emh__em_would_wait(scope->ems[i]))
			return true;
	return false;
}

int emh_scope_token(emh_scope *scope, char *buf, size_t len, emh_error *err)
{
	if (!scope || !buf || !len)
		return emh_error_set(err, EMH_EINVAL, "emh_scope_token: no scope or buffer");
	emh_buf out = EMH_BUF_INIT;
	buf[0] = '\0';
	for (size_t i = 0; i < scope->svc->nctx; i++) {
		emh_em *em = scope->ems[i];
		if (!em || !emh__em_wrote(em) || emh_em_tx_depth(em) > 0 ||
		    !(emh__em_context(em)->drv->d.caps & EMH_CAP_REPLICAS))
			continue;
		char pos[256];
		int rc = emh_em_token(em, pos, sizeof pos, err);
		if (rc) {
			emh_buf_release(&out);
			return rc;
		}
		emh_buf_addf(&out, "%s%s=%s", out.len ? ";" : "", emh_em_context(em), pos);
	}
	int rc = 0;
	if (out.oom)
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
	else if (out.len >= len)
		rc = emh_error_set(err, EMH_EINVAL, "emh_scope_token: the token needs %zu bytes", out.len + 1);
	else if (out.len)
		memcpy(buf, out.ptr, out.len + 1);
	emh_buf_release(&out);
	return rc;
}

/* The fork of context index ci, made on first ask. */
static int scope_fork(emh_scope *scope, size_t ci, emh_em **out, emh_error *err)
{
	if (!scope->ems[ci]) {
		char pos[256];
		const char *ctxname = scope->svc->ctx[ci] ? scope->svc->ctx[ci]
							   : emh_host_default_context(scope->svc->host);
		emh_fork_opts fo = {.flags = scope->fork_flags,
				    .after = token_for(scope->after, ctxname, pos, sizeof pos)};
		int rc = emh_host_fork_opts(scope->svc->host, scope->svc->ctx[ci], &fo, &scope->ems[ci], err);
		if (rc)
			return rc;
		scope->nopen++;
		/* its relations lead to the scope's other forks */
		emh__em_set_owner(scope->ems[ci], &scope_owner, scope);
		for (size_t i = 0; i < scope->nparams; i++)
			if ((rc = emh_em_set_param(scope->ems[ci], scope->params[i].name, scope->params[i].v, err)) != 0)
				return rc;
	}
	*out = scope->ems[ci];
	return 0;
}

/* The scope's fork of the context relation r targets, as resolved when the service loaded. */
static int scope_rel_fork(void *ud, emh_em *em, const emh__rel *r, emh_em **out, emh_error *err)
{
	emh_scope *scope = ud;
	emh_svc *s = scope->svc;
	for (size_t i = 0; i < s->nrels; i++)
		if (s->rels[i].rel == r)
			return scope_fork(scope, s->rels[i].ctx, out, err);
	emh_error_set(err, EMH_ENOCONTEXT,
		      "service '%s' did not declare the context of relation '%s' (to entity '%s'): declare a "
		      "repository of '%s' and the entity with the relation",
		      s->name, r->name, r->target_name, r->target_name);
	return emh_error_context(err, EMH_ENOCONTEXT, emh_em_context(em));
}

/* A fork of the scope begins a transaction while another one has one open: say so, once per service. */
static void scope_begin(void *ud, emh_em *em)
{
	emh_scope *scope = ud;
	emh_svc *s = scope->svc;
	for (size_t i = 0; i < s->nctx; i++) {
		emh_em *f = scope->ems[i];
		if (!f || f == em || emh_em_tx_depth(f) == 0)
			continue;
		if (!atomic_exchange_explicit(&s->xtx_warned, true, memory_order_relaxed))
			emh_svc_log(s, EMH_LOG_WARN,
				    "a transaction begins on context '%s' while one is open on context '%s' in the same "
				    "scope: the two commit separately, no transaction spans two databases "
				    "(docs/cross-context.md; logged once)",
				    emh_em_context(em), emh_em_context(f));
		return;
	}
}

static const emh__em_owner scope_owner = {.rel_fork = scope_rel_fork, .begin = scope_begin};

int emh_scope_em(emh_scope *scope, const char *context, emh_em **out, emh_error *err)
{
	*out = NULL;
	if (!scope)
		return emh_error_set(err, EMH_EINVAL, "no scope given");
	emh_svc *s = scope->svc;
	for (size_t i = 0; i < s->nneeds; i++) {
		const char *d = s->needs[i].declared;
		if ((!d && !context) || (d && context && strcmp(d, context) == 0))
			return scope_fork(scope, s->needs[i].ctx, out, err);
	}
	char list[512];
	return emh_error_set(err, EMH_ENOCONTEXT, "service '%s' did not declare context '%s' (declares: %s)",
			     s->name, emh__declared_name(context), emh__declared_list(&s->desc, list, sizeof list));
}

static int scope_repo_need(emh_scope *scope, size_t i, emh_repo **out, emh_error *err)
{
	if (!scope->repos[i]) {
		emh_em *em;
		int rc = scope_fork(scope, scope->svc->needs[i].ctx, &em, err);
		if (rc)
			return rc;
		if ((rc = emh_em_repo(em, scope->svc->needs[i].reg, &scope->repos[i], err)) != 0)
			return rc;
	}
	*out = scope->repos[i];
	return 0;
}

int emh_scope_repo(emh_scope *scope, const emh_entity *e, const char *context, emh_repo **out, emh_error *err)
{
	*out = NULL;
	if (!scope || !e)
		return emh_error_set(err, EMH_EINVAL, "no scope or entity given");
	emh_svc *s = scope->svc;
	for (size_t i = 0; i < s->nneeds; i++) {
		const char *d = s->needs[i].declared;
		if (s->needs[i].entity == e && ((!d && !context) || (d && context && strcmp(d, context) == 0)))
			return scope_repo_need(scope, i, out, err);
	}
	return emh_error_set(err, EMH_ENOENTITY,
			     "service '%s' did not declare a repository of entity '%s' in context '%s'",
			     s->name, e->name ? e->name : "?", emh__declared_name(context));
}

int emh_scope_em_at(emh_scope *scope, size_t need, emh_em **out, emh_error *err)
{
	*out = NULL;
	if (!scope || need >= scope->svc->nneeds)
		return emh_error_set(err, EMH_EINVAL, "service '%s' has no need %zu",
				     scope ? scope->svc->name : "?", need);
	return scope_fork(scope, scope->svc->needs[need].ctx, out, err);
}

int emh_scope_repo_at(emh_scope *scope, size_t need, emh_repo **out, emh_error *err)
{
	*out = NULL;
	if (!scope || need >= scope->svc->nneeds)
		return emh_error_set(err, EMH_EINVAL, "service '%s' has no need %zu",
				     scope ? scope->svc->name : "?", need);
	if (!scope->svc->needs[need].entity)
		return emh_error_set(err, EMH_EINVAL, "service '%s': need %zu declares no entity",
				     scope->svc->name, need);
	return scope_repo_need(scope, need, out, err);
}

int emh_scope_set_param(emh_scope *scope, const char *name, emh_value v, emh_error *err)
{
	if (!scope)
		return emh_error_set(err, EMH_EINVAL, "no scope given");
	int rc = emh__param_check(name, &v, err);
	if (rc)
		return rc;
	scope_param *p = NULL;
	for (size_t i = 0; i < scope->nparams && !p; i++)
		if (strcmp(scope->params[i].name, name) == 0)
			p = &scope->params[i];
	char *text = NULL;
	if (v.type == EMH_T_TEXT) {
		if (!(text = malloc(v.u.s.len + 1)))
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		memcpy(text, v.u.s.ptr, v.u.s.len);
		text[v.u.s.len] = '\0';
		v.u.s.ptr = text;
	}
	if (!p) {
		scope_param *nv = realloc(scope->params, (scope->nparams + 1) * sizeof *nv);
		char *n = nv ? strdup(name) : NULL;
		if (!n) {
			if (nv)
				scope->params = nv;
			free(text);
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		}
		scope->params = nv;
		p = &nv[scope->nparams++];
		*p = (scope_param){.name = n};
	} else if (p->v.type == EMH_T_TEXT) {
		free((void *)p->v.u.s.ptr);
	}
	p->v = v;
	/* The forks open now; scope_fork sets it on the later ones. */
	for (size_t i = 0; i < scope->svc->nctx; i++)
		if (scope->ems[i] && (rc = emh_em_set_param(scope->ems[i], name, v, err)) != 0)
			return rc;
	return 0;
}

void *emh_scope_state(const emh_scope *scope) { return scope ? scope->svc->state : NULL; }
emh_svc *emh_scope_service(const emh_scope *scope) { return scope ? scope->svc : NULL; }
size_t emh_scope_forks_open(const emh_scope *scope) { return scope ? scope->nopen : 0; }
