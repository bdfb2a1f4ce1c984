/* SPDX-License-Identifier: MIT */
/*
 * emhost/service.h: the service module ABI, dependency injection, scopes.
 *
 * A service is a shared object in the host's service_dir exporting exactly one
 * symbol, EMH_SERVICE_SYMBOL, a const emh_service filled with designated
 * initialisers that start with EMH_SERVICE_HEADER:
 *
 *   static const emh_need users_needs[] = {
 *       EMH_NEED_REPO(&user_entity, NULL),        // users in the default context
 *   };
 *   EMH_SERVICE_EXPORT const emh_service emh_service_descriptor = {
 *       EMH_SERVICE_HEADER,
 *       .name = "users", .version = "1.0",
 *       .needs = users_needs, .nneeds = EMH_NEEDS_COUNT(users_needs),
 *       .routes = users_routes, .nroutes = EMH_ROUTES_COUNT(users_routes),
 *   };
 *
 * where users_routes is a table of declared routes (ABI 1.1, see emh_route):
 *
 *   static const emh_route users_routes[] = {
 *       EMH_ROUTE("GET", "/:id", get_user),   // GET /users/42
 *       EMH_ROUTE("POST", "", create_user),    // POST /users
 *   };
 *
 * (A 1.0 module has one handle function instead, and keeps working.)  The
 * toolkit for what handlers do -- JSON of entities, standard answers,
 * listings, OpenAPI -- is emhost/web.h (libemhost-web).
 *
 * The loader opens the file with RTLD_NOW | RTLD_LOCAL, checks the ABI major
 * and struct_size, copies min(struct_size, sizeof(emh_service)) bytes into a
 * zeroed local copy (an older module's missing members read as NULL, a newer
 * module's extra ones are ignored) and checks the required members.  Members
 * are only ever appended.  Every refusal names the file and the reason.
 *
 * Dependency injection: a service declares what it needs as data (emh_need):
 * an entity manager of a context, or a repository of (entity, context).
 * Context names are the module's own; the host's configuration may remap
 * them (services = ({ name = "stats"; module = "analytics";
 * contexts = { analytics = "analytics_eu"; }; })), so one module serves
 * different deployments.  At load the host resolves every need, registers
 * each entity in its context (tables created when the context has
 * schema = "sync"), and refuses the service if anything is missing, naming
 * the service, the need and what exists.
 *
 * A scope is one unit of work of one service (an HTTP request, a queue
 * message, a timer tick).  It hands out the declared entity managers and
 * repositories; each fork is made on first ask and closed with the scope.
 * Nothing is flushed implicitly: a handler that does not flush loses its
 * changes.  Asking for something the service did not declare is refused.
 *
 * Lifecycle: services are a layer over the host.  The caller makes an
 * emh_services on a host, loads or adds services into it, opens scopes on
 * it, and frees it before the host:
 *
 *   emh_host_new -> emh_services_new -> emh_services_load / _add
 *     -> emh_scope_open ... emh_scope_close (per unit of work)
 *   -> emh_services_free (fini of each service, module unloaded at once)
 *   -> emh_host_free
 *
 * The host keeps its own copy of every entity a service registered, so the
 * contexts go on working after the services object is gone; the module's
 * entity addresses stop being keys for them when it is unloaded.
 */
#ifndef EMHOST_SERVICE_H
#define EMHOST_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <emhost/em.h>
#include <emhost/entity.h>
#include <emhost/error.h>
#include <emhost/host.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EMH_SERVICE_ABI_MAJOR 1u
#define EMH_SERVICE_ABI_MINOR 1u
#define EMH_SERVICE_ABI_VERSION ((EMH_SERVICE_ABI_MAJOR << 16) | EMH_SERVICE_ABI_MINOR)
#define EMH_SERVICE_SYMBOL "emh_service_descriptor"
#define EMH_SERVICE_HEADER                                                     \
	.abi_version = EMH_SERVICE_ABI_VERSION, .struct_size = sizeof(emh_service)
#define EMH_SERVICE_EXPORT __attribute__((visibility("default")))

/* The services loaded on one host (opaque); made and freed by the caller. */
typedef struct emh_services emh_services;
/* A service loaded into an emh_services (opaque); lives until that is freed. */
typedef struct emh_svc emh_svc;
/* One unit of work of a service (opaque); used by one thread at a time. */
typedef struct emh_scope emh_scope;
/* What a handler answers (opaque); see emh_response_* below. */
typedef struct emh_response emh_response;

/* ---- needs ---- */

/*
 * One need.  context is the context name as the module knows it (NULL = the
 * host's default context; remapped under the name "default").  entity NULL
 * asks for an entity manager only; otherwise for the repository of entity
 * in that context (which implies the entity manager).  The entity should
 * be static data of the module: the host registers a copy of it, and the
 * module's address is how emh_scope_repo finds the need while the module is
 * loaded.
 */
typedef struct emh_need {
	const char *context;
	const emh_entity *entity;
} emh_need;

#define EMH_NEED_EM(ctx) { .context = (ctx), .entity = NULL }
#define EMH_NEED_REPO(ent, ctx) { .context = (ctx), .entity = (ent) }
#define EMH_NEEDS_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- requests ---- */

/* A name/value pair: a header or a decoded query argument. */
typedef struct emh_kv {
	const char *name;
	const char *value;
} emh_kv;

/*
 * A request given to a handler, filled by whoever opened the scope (the
 * daemon, a test, a queue worker).  Everything is borrowed for the duration
 * of the handle call.  Members are only ever appended; zero-initialise.
 *
 *   method   "GET", "POST", ...
 *   path     the path below the service's mount: "/42" for "/users/42",
 *            "" for "/users"; not decoded
 *   query    the raw query string without '?', "" when none
 *   args     the query arguments, in order, decoded as HTML forms encode
 *            them (application/x-www-form-urlencoded): %XX escapes are
 *            decoded and '+' is a space, so "?q=a+b" gives "a b" and a
 *            literal plus is sent as %2B ("?email=ada%2Bshop%40example.com"
 *            gives "ada+shop@example.com"); query holds the text undecoded
 *   headers  the request headers (names as sent); the daemon adds
 *            X-Request-Id when the client sent none, so a handler always
 *            finds the id its log lines and its answer carry
 *   body     the request body, body_len bytes (not NUL-terminated; NULL
 *            when there is none)
 *   params   (1.1) the path parameters of the declared route that matched
 *            (emh_route), in the order of the pattern, values %XX-decoded;
 *            set by emh_scope_handle, which passes a copy of the request
 *            to the route's function (the caller leaves them zero)
 *   route    (1.1) that route, or NULL for a service without routes
 */
typedef struct emh_request {
	const char *method;
	const char *path;
	const char *query;
	const emh_kv *args;
	size_t nargs;
	const emh_kv *headers;
	size_t nheaders;
	const char *body;
	size_t body_len;
	/* 1.1 */
	const emh_kv *params;
	size_t nparams;
	const struct emh_route *route;
} emh_request;

/* Value of the first header called name (case-insensitive), or NULL. */
const char *emh_request_header(const emh_request *req, const char *name);
/* Value of the first query argument called name, or NULL. */
const char *emh_request_arg(const emh_request *req, const char *name);
/* Value of the path parameter called name of the matched route, or NULL. */
const char *emh_request_param(const emh_request *req, const char *name);
/*
 * The path parameter called name as an int64: the route's pattern already
 * refused any other text (an int64 parameter that is not one does not
 * match), so this is 0 only for a parameter the route does not have.
 */
int64_t emh_request_param_int64(const emh_request *req, const char *name);

/* ---- declared routes (service ABI 1.1) ---- */

/* What handle and every route function look like. */
typedef int (*emh_handler_fn)(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err);

/* Route flags (emh_route_doc.flags): what the answer is, for OpenAPI. */
enum {
	EMH_ROUTE_LIST = 1u << 0,       /* reply is a page: {items_key: [reply...], total, limit, offset},
					 * and the route takes ?limit=&offset= (emh_web_list) */
	EMH_ROUTE_CREATED = 1u << 1,    /* answers 201 + Location */
	EMH_ROUTE_NO_CONTENT = 1u << 2, /* answers 204, no body */
	EMH_ROUTE_PARTIAL = 1u << 3,    /* body fields are all optional (an update) */
};

/*
 * What a route is, for documentation (GET /_emhost/openapi.json).  Members
 * are only ever appended; struct_size (set by EMH_ROUTE_DOC) says how many
 * a declaration has.
 *   summary    one line
 *   body       the request body is an object of this entity (its writable
 *              fields: not read-only, generated, version or hidden), or NULL
 *   reply      the answer is an object (or a page: EMH_ROUTE_LIST) of this
 *              entity (its fields but hidden ones), or NULL
 *   items_key  EMH_ROUTE_LIST: the member holding the items (NULL = "items")
 */
typedef struct emh_route_doc {
	uint32_t struct_size;
	const char *summary;
	const emh_entity *body;
	const emh_entity *reply;
	unsigned flags;
	const char *items_key;
} emh_route_doc;

/*
 * One declared route: method ("GET", "POST", ...: an upper-case token) and
 * the path below the service's mount ("" or "/" is the mount itself).  A
 * path is segments separated by '/': a literal ([A-Za-z0-9._~-]+), or a
 * parameter -- ":id" is an int64 ("-" and digits, in range), "{name:text}"
 * is any non-empty segment (%XX-decoded), "{id:int64}" the same as ":id".
 * A trailing '/' of a request path is ignored.  The route's fn is called
 * like handle, with req->params and req->route set.
 *
 * emh_scope_handle matches the table: no route for the path is
 * EMH_ENOTFOUND; a path that only other methods have is answered 405 with
 * an Allow header listing them (and returns 0).  HEAD on a path with a GET
 * route and no HEAD route runs the GET route (req->method "GET"; the server
 * sends the headers only), and Allow lists HEAD beside GET.  A service may have
 * routes and handle both: handle then gets what no route's path matches.
 * Checked at load: a malformed pattern, a missing fn, or two routes of one
 * method that can match the same path (a shadowing pair: "/:id" and
 * "/{name:text}", or "/{x:text}" and "/all") refuse the service, naming
 * both.  An array element: emh_route never grows (doc does).
 */
typedef struct emh_route {
	const char *method;
	const char *path;
	emh_handler_fn fn;
	const emh_route_doc *doc;
} emh_route;

/* A route without documentation, and one with: EMH_ROUTE_DOC("GET", "/:id",
 * get_user, .summary = "a user", .reply = &user_entity).  The doc is a
 * compound literal: the table must be at file scope. */
#define EMH_ROUTE(m, p, f) { .method = (m), .path = (p), .fn = (f), .doc = NULL }
#define EMH_ROUTE_DOC(m, p, f, ...)                                            \
	{                                                                      \
		.method = (m), .path = (p), .fn = (f),                         \
		.doc = &(const emh_route_doc){                                 \
			.struct_size = sizeof(emh_route_doc), __VA_ARGS__},    \
	}
#define EMH_ROUTES_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Service flags (emh_service.flags). */
enum {
	/* the toolkit's JSON (emhost/web.h) gives int64 values beyond +-2^53
	 * as strings, and OpenAPI says so: for clients whose numbers are doubles */
	EMH_SVC_INT64_STRINGS = 1u << 0,
};

/* ---- the descriptor ---- */

/*
 * init     optional; called once when the service is loaded, after every
 *          need was resolved.  *state is handed back by emh_scope_state and
 *          to fini.  A non-zero return refuses the service (err says why).
 * handle   required unless routes are given (1.1); called once per scope
 *          given to emh_scope_handle (with routes: for paths no route has).
 *          Answer with emh_response_set*() and return 0, or return an
 *          EMH_E* code with err filled: the caller maps it (the daemon to an
 *          HTTP status and a JSON error body).  Runs on many threads at
 *          once, each with its own scope.
 * fini     optional; called once when the services object is freed (every
 *          scope must be closed by then), before the host: release state, do
 *          no database work.  The module is unloaded right after.
 * routes   (1.1) the declared routes, nroutes of them (see emh_route)
 * flags    (1.1) EMH_SVC_*
 */
typedef struct emh_service {
	uint32_t abi_version; /* EMH_SERVICE_ABI_VERSION */
	uint32_t struct_size; /* sizeof(emh_service) the module was built with */

	const char *name;    /* required: the default mount name, an identifier */
	const char *version; /* required */
	const char *description;

	const emh_need *needs;
	size_t nneeds;

	int (*init)(emh_svc *svc, void **state, emh_error *err);
	int (*handle)(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err);
	void (*fini)(emh_svc *svc, void *state);

	/* 1.1 */
	const emh_route *routes;
	size_t nroutes;
	unsigned flags;
} emh_service;

_Static_assert(offsetof(emh_service, abi_version) == 0, "abi_version must come first");
_Static_assert(offsetof(emh_service, struct_size) == 4, "struct_size must come second");

/* ---- the services object: loading and registration ---- */

/*
 * A new, empty services object on h, into *out: what loads services and
 * opens their scopes.  h must outlive it (free it with emh_services_free
 * before emh_host_free).  Several may share a host.  Returns 0, EMH_EINVAL,
 * EMH_ENOMEM.
 */
int emh_services_new(emh_host *h, emh_services **out, emh_error *err);

/*
 * Free the services object: for each service, in reverse load order, its
 * fini, then its module is unloaded at once.  Every scope must be closed
 * before.  The contexts keep the entities the services registered (the
 * host's copies), so forks on them go on working.  NULL is a no-op.
 */
void emh_services_free(emh_services *s);

/* The host s was made on. */
emh_host *emh_services_host(const emh_services *s);

/*
 * Load every service named in the host configuration's services list, in
 * order, from service_dir (the file's service_dir, else $EMH_SERVICE_DIR of
 * the host's environment, else the compiled-in $(pkglibdir)/services; a
 * relative directory is taken from the current directory): module M is the
 * file M.so.  For each, resolve and register its
 * needs and run its init.  Stops at the first failure, which names the
 * file or service and the reason ("service 'billing' needs context
 * 'ledger'; contexts: default, analytics"); the module that failed is
 * unloaded at once, services loaded before it stay loaded.  Call once,
 * before serving.  Returns 0, EMH_EPLUGIN (file refused), EMH_ENOCONTEXT,
 * EMH_ENOENTITY, EMH_ECONFIG, EMH_ENOMEM, or init's code.
 */
int emh_services_load(emh_services *s, emh_error *err);

/*
 * Check the configuration's services list as emh_services_load would, and
 * load nothing: each module found in service_dir, opened and its
 * descriptor checked, its needs resolved to contexts of the host through
 * the remaps (a remap of a context the module does not declare, a context
 * the host lacks), no two different entities on one table of a context.
 * No entity is registered, no init runs, no database is touched, and every
 * module is closed again before the call returns.  What it cannot tell is
 * what init would refuse.  For `emhost check-config`.  Returns 0 or the
 * error emh_services_load would give for the first problem.  Thread-safe.
 */
int emh_services_check(emh_services *s, emh_error *err);

/*
 * Options for emh_services_add.  Zero-initialise:
 *   name      mount name (NULL = desc->name)
 *   remap     "declared", "actual", ... NULL: context names to remap
 *   settings  "key", "value", ... NULL: what emh_svc_setting answers
 */
typedef struct emh_service_opts {
	const char *name;
	const char *const *remap;
	const char *const *settings;
} emh_service_opts;

/*
 * Register a statically linked service (tests, embedders), checked, resolved
 * and initialised exactly like a module.  desc must outlive s.  opts may be
 * NULL.  Errors as for emh_services_load; a second service of the same name
 * is EMH_ECONFIG.  Thread-safe.
 */
int emh_services_add(emh_services *s, const emh_service *desc, const emh_service_opts *opts,
		     emh_error *err);

/* The service mounted as name, or NULL.  Borrowed until s is freed.  Thread-safe. */
emh_svc *emh_services_get(emh_services *s, const char *name);
/* Service number i in load order, or NULL past the end.  Thread-safe. */
emh_svc *emh_services_at(emh_services *s, size_t i);

/*
 * Check a service module file without keeping it: open it as the loader
 * would and check its descriptor.  For `emhost` and tests.  Returns 0 or
 * EMH_EPLUGIN with the reason.
 */
int emh_service_check_file(const char *path, emh_error *err);

/*
 * A setting of the configuration's server section ("listen", "threads",
 * "max_body", "shutdown_timeout_ms"), ${VAR} expanded, or NULL when unset.
 * Borrowed until the host is freed.  For the daemon in front of services.
 */
const char *emh_host_server_setting(const emh_host *h, const char *key);

/* ---- a loaded service ---- */

/* Mount name. */
const char *emh_svc_name(const emh_svc *svc);
/* The descriptor as the loader copied it. */
const emh_service *emh_svc_descriptor(const emh_svc *svc);
/* The .so it came from, or "(static)". */
const char *emh_svc_file(const emh_svc *svc);
/* The host. */
emh_host *emh_svc_host(const emh_svc *svc);
/* The services object it was loaded into: to open scopes of itself
 * (emh_scope_open(emh_svc_services(svc), emh_svc_name(svc), ...)). */
emh_services *emh_svc_services(const emh_svc *svc);
/* The context a declared context name (NULL = default) resolved to, or NULL
 * when the service did not declare it. */
const char *emh_svc_context(const emh_svc *svc, const char *declared);
/* A setting of the service's configuration entry (other than name, module,
 * contexts), or NULL.  Borrowed until the services object is freed. */
const char *emh_svc_setting(const emh_svc *svc, const char *key);
/*
 * Whether a scope of svc could take its connections right now without
 * waiting: every context its needs resolved to has an idle pooled
 * connection at this instant and, when driver is not NULL, is served by the
 * driver of that name.  Nothing is reserved: a connection seen idle may be
 * taken by another thread before the scope asks.  False for a service with
 * no context.  For the daemon's choice of running a handler on its I/O
 * thread.  Thread-safe.
 */
bool emh_svc_idle_now(const emh_svc *svc, const char *driver);
/* Log through the host's sink, prefixed with the service's name. */
void emh_svc_log(const emh_svc *svc, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- scopes ---- */

/*
 * Open a scope of the service mounted as service in s.  Does no I/O and
 * opens no fork.  Returns 0, EMH_ENOSERVICE (the message lists the
 * services), EMH_ENOMEM, EMH_EINVAL (s is not a services object: before
 * emhost 1.1 this took the host).  Thread-safe.
 */
int emh_scope_open(emh_services *s, const char *service, emh_scope **out, emh_error *err);

/*
 * Close the scope: every fork it opened is closed (rolling back an open
 * transaction and discarding unflushed changes).  NULL is a no-op.
 */
void emh_scope_close(emh_scope *scope);

/*
 * Run the service's handler in this scope.  res collects the answer
 * (emh_response_new).  Returns what the handler returned.
 */
int emh_scope_handle(emh_scope *scope, const emh_request *req, emh_response *res, emh_error *err);

/*
 * The entity manager of a declared context (NULL = the default), forked on
 * first ask; borrowed until the scope closes.  EMH_ENOCONTEXT naming what the
 * service declared when context is not one of its needs; errors of
 * emh_host_fork otherwise.
 */
int emh_scope_em(emh_scope *scope, const char *context, emh_em **out, emh_error *err);

/*
 * The repository of a declared (entity, context) need, borrowed until the
 * scope closes.  EMH_ENOENTITY naming the entity and context when the
 * service did not declare that pair.
 */
int emh_scope_repo(emh_scope *scope, const emh_entity *e, const char *context, emh_repo **out,
		   emh_error *err);

/* The same by the index of the need in the descriptor's needs array:
 * emh_scope_repo_at is EMH_EINVAL for a need without an entity. */
int emh_scope_em_at(emh_scope *scope, size_t need, emh_em **out, emh_error *err);
int emh_scope_repo_at(emh_scope *scope, size_t need, emh_repo **out, emh_error *err);

/*
 * Set the fork parameter name to v (emh_em_set_param) on every fork of the
 * scope: the ones open now and every one it opens later.  For global filters
 * (EMH_F_FILTER): a handler sets the tenant once per request, before it
 * reads.  v is copied.  Returns 0, EMH_EINVAL (name or value as
 * emh_em_set_param refuses them), EMH_ENOMEM.
 */
int emh_scope_set_param(emh_scope *scope, const char *name, emh_value v, emh_error *err);

/*
 * Make the scope as new for another try of its unit of work: every fork it
 * opened rolls back an open transaction and forgets its objects
 * (emh_em_clear); the forks stay open.  For retry wrappers (emh_web_retry).
 */
void emh_scope_reset(emh_scope *scope);

/*
 * How the forks the scope opens from now on read (docs/replicas.md):
 * flags EMH_FORK_PRIMARY and EMH_FORK_READONLY (emh_fork_opts: a handler
 * that only reads skips the snapshots and the identity map), and after,
 * causal tokens in the form emh_scope_token gives, "ctx=pos;ctx=pos" (NULL
 * or "": none): a fork of a context named there gets its position as
 * emh_fork_opts.after.
 * Forks already open keep how they were opened.  emhostd sets after from
 * the X-Emhost-After request header, and EMH_FORK_NOWAIT when it runs the
 * handler on an I/O thread (emh_scope_would_wait); once set, NOWAIT stays
 * for the scope's life (a later call cannot lift it).
 */
int emh_scope_fork_opts(emh_scope *scope, unsigned flags, const char *after, emh_error *err);
/*
 * The causal tokens of the scope's forks that wrote (outside a
 * transaction, on a driver with EMH_CAP_REPLICAS) as "ctx=pos;ctx=pos"
 * into buf, "" when none wrote.  Before emh_scope_close.  emhostd returns
 * it as the X-Emhost-After response header.
 */
int emh_scope_token(emh_scope *scope, char *buf, size_t len, emh_error *err);
/*
 * True when a fork of the scope opened with EMH_FORK_NOWAIT refused a call
 * because it would have waited for a connection: what the handler answered
 * is then not the request's answer, and the request is to be run again
 * where waiting is allowed (emhostd hands it from its I/O thread to a
 * worker).  Before emh_scope_close.
 */
bool emh_scope_would_wait(const emh_scope *scope);

/* The service's state from init, the service, and the number of forks the
 * scope holds open. */
void *emh_scope_state(const emh_scope *scope);
emh_svc *emh_scope_service(const emh_scope *scope);
size_t emh_scope_forks_open(const emh_scope *scope);

/* ---- responses ---- */

/* A new empty response (status 200, no body).  NULL on out of memory. */
emh_response *emh_response_new(void);
/* Empty it again for reuse. */
void emh_response_reset(emh_response *res);
void emh_response_free(emh_response *res);

/*
 * Set status, content type (NULL = none) and body (len bytes copied; body
 * may be NULL for none).  Returns 0, EMH_ENOMEM, or EMH_EINVAL for a status
 * outside 200-599 (a 1xx is no final answer): that is a bug of the handler,
 * not of the request, so the
 * status is kept (the body dropped) and emhostd answers 500 and logs it,
 * whatever the handler returns.
 */
int emh_response_set(emh_response *res, int status, const char *content_type, const void *body,
		     size_t len, emh_error *err);
/* Take ownership of a malloc'd body instead of copying it (freed with free()). */
int emh_response_set_owned(emh_response *res, int status, const char *content_type, char *body,
			   size_t len, emh_error *err);
/*
 * Add a response header (copied).  "Content-Type" (any case) replaces the
 * content type instead of adding a second one.  Returns 0, EMH_EINVAL
 * (CR/LF in it, ':' in the name), EMH_ENOMEM.
 */
int emh_response_add_header(emh_response *res, const char *name, const char *value,
			    emh_error *err);

int emh_response_status(const emh_response *res);
const char *emh_response_content_type(const emh_response *res);
/* Body and its length; borrowed until the response is reset or freed. */
const char *emh_response_body(const emh_response *res, size_t *len);
/*
 * Take the body out of res: the caller owns it (free() it) and res keeps
 * its status, content type and headers but no body, as if set with none.
 * NULL (*len 0) when it has none.  For a server handing the body to its
 * HTTP library without a copy (emhostd does).
 */
char *emh_response_take_body(emh_response *res, size_t *len);
size_t emh_response_nheaders(const emh_response *res);
const emh_kv *emh_response_header(const emh_response *res, size_t i);

#ifdef __cplusplus
}
#endif
#endif
