/* SPDX-License-Identifier: MIT */
/* plugins/mongo/mongo.c: the MongoDB document driver, on libmongoc (one client pool per context). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include <emhost/driver.h>
#include <emhost/host.h>

/*
 * Storage layout (docs/drivers/mongo.md says the same to users):
 *
 *   entity              collection named entity->table
 *   primary key         _id, as int32 / int64 / utf8 (its own type)
 *   generated key       counter document {_id: "<collection>", seq: int64} in
 *                       MG_COUNTERS, bumped with findAndModify $inc + upsert
 *                       outside any transaction (like an SQL sequence)
 *   bool int32 int64 double text
 *                       bool int32 int64 double utf8
 *   blob                binary subtype 0
 *   timestamp           sub-document {t: BSON date (ms), us: int64 µs}; queries,
 *                       sorts and indexes use "<column>.us"
 *   json                an object or array is stored as an embedded document /
 *                       array when it reads back exactly (modulo whitespace);
 *                       anything else (scalars, keys with '$' or '.', numbers
 *                       written as 1e2 or 1.50, \u escapes) as its text, utf8
 *   NULL                BSON null, except a nullable field with a unique
 *                       index: absent (its index is sparse, so several NULLs
 *                       may coexist as in SQL)
 */
#define MG_COUNTERS "emh_counters"
#define MG_DEFAULT_DB "emh"
#define MG_DEFAULT_SST_MS 2000
#define MG_TS_DATE "t"
#define MG_TS_US "us"
#define MG_JSON_MAX_DEPTH 1000 /* deeper JSON is refused (recursion bound) */
#define MG_BSON_MAX_DEPTH 90   /* deeper JSON is kept as text (server limit 100) */
#define MG_KEY_RETRIES 16

/* Server error codes the driver maps. */
enum {
	MG_E_HOST_UNREACHABLE = 6,
	MG_E_UNAUTHORIZED = 13,
	MG_E_AUTHENTICATION_FAILED = 18,
	MG_E_HOST_NOT_FOUND = 7,
	MG_E_NAMESPACE_NOT_FOUND = 26,
	MG_E_NAMESPACE_EXISTS = 48,
	MG_E_NETWORK_TIMEOUT = 89,
	MG_E_SHUTDOWN_IN_PROGRESS = 91,
	MG_E_INDEX_OPTIONS_CONFLICT = 85,
	MG_E_INDEX_KEY_SPECS_CONFLICT = 86,
	MG_E_WRITE_CONFLICT = 112,
	MG_E_PRIMARY_STEPPED_DOWN = 189,
	MG_E_NO_SUCH_TRANSACTION = 251,
	MG_E_NOT_WRITABLE_PRIMARY = 10107,
	MG_E_DUPLICATE_KEY = 11000,
	MG_E_DUPLICATE_KEY_OLD = 11001,
	MG_E_INTERRUPTED_AT_SHUTDOWN = 11600,
	MG_E_INTERRUPTED_REPL_CHANGE = 11602,
	MG_E_NOT_PRIMARY_NO_SECONDARY_OK = 13435,
	MG_E_NOT_PRIMARY_OR_SECONDARY = 13436,
};

struct emh_dctx {
	mongoc_client_pool_t *pool;
	char *database;
	uint32_t max_pool;
	atomic_bool warned_standalone; /* the "no transactions" warning, once per context */
	atomic_uint down_gen;          /* bumped each time an operation finds the server gone */
};

/* Per-connection facts about one entity, cached by emh_meta.id. */
typedef struct mg_coll {
	mongoc_collection_t *coll;
	const emh_meta *meta;
} mg_coll;

struct emh_conn {
	emh_dctx *dc;
	mongoc_client_t *client;
	mongoc_client_session_t *session; /* kept for the connection's life once made */
	bool in_txn;
	uint64_t caps;
	unsigned gen; /* dc->down_gen when this connection last reached the server */
	mg_coll *colls;
	size_t ncolls;
	mongoc_collection_t *counters;
};

/* Process-wide libmongoc state (not per host): initialisation and the log handler. */
static pthread_once_t mg_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t mg_log_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned mg_log_users; /* open contexts, of every host */

static void mg_init_once(void)
{
	mongoc_init();
}

/*
 * libmongoc's default handler prints every level, monitoring DEBUG lines
 * included, to stderr.  The handler is process-wide and the driver cannot
 * reach a host's log sink from it, so while a context is open it keeps only
 * errors and critical messages (through libmongoc's default handler);
 * everything the driver needs to say goes through emh_error and
 * emh_params_log.  The default handler is put back when the last context
 * closes: the plugin may be unloaded after that while libmongoc stays loaded
 * (a program using libmongoc itself), which must not call into it.
 */
static void mg_log_handler(mongoc_log_level_t level, const char *domain, const char *message, void *ud)
{
	if (level <= MONGOC_LOG_LEVEL_ERROR)
		mongoc_log_default_handler(level, domain, message, ud);
}

static void mg_log_hold(bool hold)
{
	pthread_mutex_lock(&mg_log_mu);
	if (hold && mg_log_users++ == 0)
		mongoc_log_set_handler(mg_log_handler, NULL);
	else if (!hold && --mg_log_users == 0)
		mongoc_log_set_handler(mongoc_log_default_handler, NULL);
	pthread_mutex_unlock(&mg_log_mu);
}

/* ---- errors ---- */

static bool mg_code_unavailable(uint32_t code)
{
	switch (code) {
	case MG_E_HOST_UNREACHABLE:
	case MG_E_HOST_NOT_FOUND:
	case MG_E_NETWORK_TIMEOUT:
	case MG_E_SHUTDOWN_IN_PROGRESS:
	case MG_E_PRIMARY_STEPPED_DOWN:
	case MG_E_NOT_WRITABLE_PRIMARY:
	case MG_E_INTERRUPTED_AT_SHUTDOWN:
	case MG_E_INTERRUPTED_REPL_CHANGE:
	case MG_E_NOT_PRIMARY_NO_SECONDARY_OK:
	case MG_E_NOT_PRIMARY_OR_SECONDARY:
		return true;
	default:
		return false;
	}
}

static bool mg_is_dup(const bson_error_t *e)
{
	return (e->domain == MONGOC_ERROR_SERVER || e->domain == MONGOC_ERROR_COLLECTION ||
		e->domain == MONGOC_ERROR_WRITE_CONCERN || e->domain == MONGOC_ERROR_QUERY) &&
	       (e->code == MG_E_DUPLICATE_KEY || e->code == MG_E_DUPLICATE_KEY_OLD);
}

/* The index named in a duplicate-key message ("... index: email_1 dup key: ..."). */
static void mg_dup_index(const bson_error_t *e, char *out, size_t cap)
{
	const char *p = strstr(e->message, "index: ");
	size_t n = 0;
	out[0] = '\0';
	if (!p)
		return;
	p += strlen("index: ");
	while (p[n] && p[n] != ' ' && n + 1 < cap)
		n++;
	memcpy(out, p, n);
	out[n] = '\0';
}

/*
 * Map a libmongoc failure to an emhost status.  The message never quotes the
 * server's duplicate-key text, which holds the duplicated value.
 */
static int mg_fail(emh_dctx *dc, emh_error *err, const bson_error_t *e, const bson_t *reply, const char *what,
		   const char *coll)
{
	int code = EMH_EDRIVER, rc;
	bool transient = reply && mongoc_error_has_label(reply, "TransientTransactionError");
	const char *on = coll ? " on collection '" : "", *on_end = coll ? "'" : "";

	if (!coll)
		coll = "";
	if ((e->domain == MONGOC_ERROR_CLIENT && e->code == MONGOC_ERROR_CLIENT_AUTHENTICATE) ||
	    (e->domain == MONGOC_ERROR_SERVER &&
	     (e->code == MG_E_AUTHENTICATION_FAILED || e->code == MG_E_UNAUTHORIZED))) {
		/* Refused credentials or privileges: the settings are wrong, as
		 * the SQL drivers report them (retrying cannot help). */
		rc = emh_error_set(err, EMH_ECONFIG, "%s%s%s%s: authentication or authorization failed: %s", what,
				   on, coll, on_end, e->message);
	} else if (e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM ||
	    e->domain == MONGOC_ERROR_PROTOCOL ||
	    ((e->domain == MONGOC_ERROR_SERVER || e->domain == MONGOC_ERROR_QUERY) &&
	     mg_code_unavailable(e->code))) {
		rc = emh_error_set(err, EMH_EUNAVAILABLE, "mongodb unavailable during %s%s%s%s: %s", what, on,
				   coll, on_end, e->message);
	} else if (mg_is_dup(e)) {
		char index[128];
		mg_dup_index(e, index, sizeof index);
		rc = emh_error_set(err, EMH_ECONFLICT, "%s%s%s%s: duplicate key (index '%s')", what, on, coll,
				   on_end, index[0] ? index : "?");
	} else if (transient || e->code == MG_E_WRITE_CONFLICT || e->code == MG_E_NO_SUCH_TRANSACTION) {
		rc = emh_error_set(err, EMH_ERETRY, "%s%s%s%s: transient transaction failure: %s", what, on,
				   coll, on_end, e->message);
	} else {
		rc = emh_error_set(err, code, "%s%s%s%s: %s", what, on, coll, on_end, e->message);
	}
	if (err) {
		err->native = (int)e->code;
		err->retryable = transient || rc == EMH_ERETRY;
	}
	if (rc == EMH_EUNAVAILABLE && dc)
		atomic_fetch_add(&dc->down_gen, 1);
	return rc;
}

/* ---- context and connections ---- */

/* Host names go into mongoc_uri_new_for_host_port's URI text: accept host-name,
 * IPv4 and bracketed IPv6 characters only, so no user text can add URI parts. */
static bool mg_host_valid(const char *h)
{
	if (!*h || strlen(h) > 255)
		return false;
	for (const char *p = h; *p; p++) {
		char ch = *p;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '-' || ch == '_' || ch == ':' || ch == '[' || ch == ']'))
			return false;
	}
	return true;
}

/* MongoDB database names: no empty name, none of / \ . " $ space, under 64 bytes. */
static bool mg_dbname_valid(const char *d)
{
	size_t n = strlen(d);
	return n > 0 && n < 64 && strpbrk(d, "/\\. \"$*<>:|?") == NULL;
}

static int mg_param_int(const emh_params *p, const char *key, long long def, long long lo, long long hi,
			long long *out, emh_error *err)
{
	int rc = emh_params_int(p, key, def, out, err);
	if (rc)
		return rc;
	if (*out < lo || *out > hi)
		return emh_error_set(err, EMH_ECONFIG, "'%s' must be between %lld and %lld", key, lo, hi);
	return 0;
}

/*
 * MongoDB URI options accepted as context settings under their usual
 * spelling.  The core turns a URL's query ("?replicaSet=rs0") into settings,
 * so they must be known keys; applying them with setters also lets a
 * host/port context use them.  The snake_case keys of the issue
 * (server_selection_timeout_ms, ...) are applied after and win.
 */
static const char *const mg_uri_options[] = {
	"replicaSet", "authSource", "authMechanism", "appName", "compressors", "w", "readPreference",
	"tls", "directConnection", "retryWrites", "retryReads", "journal",
	"serverSelectionTimeoutMS", "connectTimeoutMS", "socketTimeoutMS", "heartbeatFrequencyMS",
	"localThresholdMS", "maxIdleTimeMS", "wtimeoutMS", "tlsCAFile", "tlsCertificateKeyFile",
	"tlsAllowInvalidCertificates", "tlsAllowInvalidHostnames", "tlsInsecure", "zlibCompressionLevel",
	NULL,
};

static int mg_uri_option(mongoc_uri_t *uri, const char *key, const char *value, emh_error *err)
{
	char lower[64];
	size_t i = 0;
	bool ok;

	for (; key[i] && i + 1 < sizeof lower; i++)
		lower[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] - 'A' + 'a' : key[i]);
	lower[i] = '\0';
	if (strcmp(lower, MONGOC_URI_AUTHSOURCE) == 0) {
		ok = mongoc_uri_set_auth_source(uri, value);
	} else if (strcmp(lower, MONGOC_URI_AUTHMECHANISM) == 0) {
		ok = mongoc_uri_set_auth_mechanism(uri, value);
	} else if (strcmp(lower, MONGOC_URI_APPNAME) == 0) {
		ok = mongoc_uri_set_appname(uri, value);
	} else if (strcmp(lower, MONGOC_URI_COMPRESSORS) == 0) {
		ok = mongoc_uri_set_compressors(uri, value);
	} else if (strcmp(lower, MONGOC_URI_W) == 0) {
		mongoc_write_concern_t *wc = mongoc_write_concern_copy(mongoc_uri_get_write_concern(uri));
		char *end;
		long w = strtol(value, &end, 10);
		ok = wc != NULL;
		if (ok && strcmp(value, "majority") == 0)
			mongoc_write_concern_set_w(wc, MONGOC_WRITE_CONCERN_W_MAJORITY);
		else if (ok && *value && !*end && w >= 0 && w <= INT32_MAX)
			mongoc_write_concern_set_w(wc, (int32_t)w);
		else if (ok)
			mongoc_write_concern_set_wtag(wc, value);
		if (ok)
			mongoc_uri_set_write_concern(uri, wc);
		mongoc_write_concern_destroy(wc);
	} else if (strcmp(lower, MONGOC_URI_READPREFERENCE) == 0) {
		static const struct {
			const char *name;
			mongoc_read_mode_t mode;
		} modes[] = {
			{"primary", MONGOC_READ_PRIMARY},
			{"primaryPreferred", MONGOC_READ_PRIMARY_PREFERRED},
			{"secondary", MONGOC_READ_SECONDARY},
			{"secondaryPreferred", MONGOC_READ_SECONDARY_PREFERRED},
			{"nearest", MONGOC_READ_NEAREST},
		};
		ok = false;
		for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++)
			if (strcmp(value, modes[k].name) == 0) {
				mongoc_read_prefs_t *rp = mongoc_read_prefs_new(modes[k].mode);
				mongoc_uri_set_read_prefs_t(uri, rp);
				mongoc_read_prefs_destroy(rp);
				ok = true;
			}
	} else if (mongoc_uri_option_is_bool(lower)) {
		ok = (strcmp(value, "true") == 0 || strcmp(value, "false") == 0) &&
		     mongoc_uri_set_option_as_bool(uri, lower, strcmp(value, "true") == 0);
	} else if (mongoc_uri_option_is_int32(lower)) {
		char *end;
		errno = 0;
		long v = strtol(value, &end, 10);
		ok = *value && !*end && !errno && v >= INT32_MIN && v <= INT32_MAX &&
		     mongoc_uri_set_option_as_int32(uri, lower, (int32_t)v);
	} else if (mongoc_uri_option_is_utf8(lower)) {
		ok = mongoc_uri_set_option_as_utf8(uri, lower, value);
	} else {
		ok = false;
	}
	return ok ? 0 : emh_error_set(err, EMH_ECONFIG, "invalid value '%s' for mongodb option '%s'", value, key);
}

/*
 * Build the URI (from url, else host/port/user/password with setters) and the
 * client pool.  No I/O happens here: libmongoc starts its monitoring thread
 * at the first pop, so a server that is down does not stop the host.
 */
static int mg_context_open(const emh_params *p, emh_dctx **out, emh_error *err)
{
	const char *url = emh_params_get(p, "url");
	const char *user = emh_params_get(p, "user");
	const char *password = emh_params_get(p, "password");
	const char *database = emh_params_get(p, "database");
	const char *auth_source = emh_params_get(p, "auth_source");
	const char *app_name = emh_params_get(p, "app_name");
	long long sst, cto, port, pool_max;
	mongoc_uri_t *uri = NULL;
	bson_error_t e;
	emh_dctx *dc;
	int rc;

	pthread_once(&mg_once, mg_init_once);
	*out = NULL;
	if ((rc = mg_param_int(p, "server_selection_timeout_ms", -1, -1, INT32_MAX, &sst, err)) ||
	    (rc = mg_param_int(p, "connect_timeout_ms", -1, -1, INT32_MAX, &cto, err)) ||
	    (rc = mg_param_int(p, "port", 27017, 1, 65535, &port, err)) ||
	    (rc = mg_param_int(p, "pool.max", 10, 0, INT32_MAX, &pool_max, err)))
		return rc;

	if (url && *url) {
		uri = mongoc_uri_new_with_error(url, &e);
		if (!uri)
			return emh_error_set(err, EMH_ECONFIG, "invalid mongodb url: %s", e.message);
	} else {
		const char *host = emh_params_get(p, "host");
		if (!host || !*host)
			host = "127.0.0.1";
		if (!mg_host_valid(host))
			return emh_error_set(err, EMH_ECONFIG, "invalid host '%s'", host);
		uri = mongoc_uri_new_for_host_port(host, (uint16_t)port);
		if (!uri)
			return emh_error_set(err, EMH_ECONFIG, "invalid host '%s' or port %lld", host, port);
	}
	/* The URL's own credentials win; the settings fill what it lacks
	 * (e.g. a URL with a user and password_env). */
	if (user && *user && !mongoc_uri_get_username(uri) && !mongoc_uri_set_username(uri, user)) {
		rc = emh_error_set(err, EMH_ECONFIG, "invalid user name");
		goto out_free_uri;
	}
	if (password && *password && !mongoc_uri_get_password(uri) && !mongoc_uri_set_password(uri, password)) {
		rc = emh_error_set(err, EMH_ECONFIG, "invalid password (not UTF-8)");
		goto out_free_uri;
	}
	for (const char *const *k = mg_uri_options; *k; k++) {
		const char *v = emh_params_get(p, *k);
		if (v && (rc = mg_uri_option(uri, *k, v, err)))
			goto out_free_uri;
	}
	if (auth_source && *auth_source && !mongoc_uri_set_auth_source(uri, auth_source)) {
		rc = emh_error_set(err, EMH_ECONFIG, "invalid auth_source '%s'", auth_source);
		goto out_free_uri;
	}
	if (!database || !*database)
		database = mongoc_uri_get_database(uri);
	if (!database || !*database)
		database = MG_DEFAULT_DB;
	if (!mg_dbname_valid(database)) {
		rc = emh_error_set(err, EMH_ECONFIG, "invalid database name '%s'", database);
		goto out_free_uri;
	}
	if (sst >= 0)
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, (int32_t)sst);
	else if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, MG_DEFAULT_SST_MS);
	if (cto >= 0)
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, (int32_t)cto);
	if (app_name && *app_name && !mongoc_uri_set_appname(uri, app_name)) {
		rc = emh_error_set(err, EMH_ECONFIG, "invalid app_name (at most 128 bytes)");
		goto out_free_uri;
	}

	dc = calloc(1, sizeof *dc);
	if (!dc || !(dc->database = strdup(database))) {
		free(dc);
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_free_uri;
	}
	/* emhost's pool is the one that limits: libmongoc's must never be the
	 * one that blocks, so it is at least as large. */
	int32_t mongoc_max = mongoc_uri_get_option_as_int32(uri, MONGOC_URI_MAXPOOLSIZE, 100);
	dc->max_pool = (uint32_t)(pool_max > mongoc_max ? pool_max : mongoc_max);
	dc->pool = mongoc_client_pool_new_with_error(uri, &e);
	if (!dc->pool) {
		rc = emh_error_set(err, EMH_ECONFIG, "cannot create the mongodb client pool: %s", e.message);
		goto out_free_dc;
	}
	mongoc_client_pool_set_error_api(dc->pool, MONGOC_ERROR_API_VERSION_2);
	mongoc_client_pool_max_size(dc->pool, dc->max_pool);
	if (!(app_name && *app_name) && !mongoc_uri_get_appname(uri))
		mongoc_client_pool_set_appname(dc->pool, "emhost");
	mongoc_uri_destroy(uri);
	mg_log_hold(true);
	*out = dc;
	return 0;

out_free_dc:
	free(dc->database);
	free(dc);
out_free_uri:
	mongoc_uri_destroy(uri);
	return rc;
}

static void mg_context_close(emh_dctx *dc)
{
	if (!dc)
		return;
	mongoc_client_pool_destroy(dc->pool);
	free(dc->database);
	free(dc);
	mg_log_hold(false);
}

static int mg_command_ping(emh_dctx *dc, mongoc_client_t *client, emh_error *err)
{
	bson_t cmd = BSON_INITIALIZER, reply;
	bson_error_t e;
	bool ok;

	BSON_APPEND_INT32(&cmd, "ping", 1);
	ok = mongoc_client_command_simple(client, "admin", &cmd, NULL, &reply, &e);
	bson_destroy(&cmd);
	if (!ok) {
		int rc = mg_fail(dc, err, &e, &reply, "ping", NULL);
		bson_destroy(&reply);
		return rc;
	}
	bson_destroy(&reply);
	return 0;
}

/*
 * Transactions need a replica set member (hello has setName) or a mongos
 * (msg "isdbgrid"), with sessions (logicalSessionTimeoutMinutes).  Read from
 * the topology's last hello, so this costs no round trip.
 */
static uint64_t mg_server_caps(mongoc_client_t *client)
{
	mongoc_server_description_t *sd;
	const bson_t *hello;
	bson_iter_t it;
	bool replset = false, mongos = false, sessions = false;
	bson_error_t e;

	sd = mongoc_client_select_server(client, true, NULL, &e);
	if (!sd)
		return 0;
	hello = mongoc_server_description_hello_response(sd);
	if (bson_iter_init_find(&it, hello, "setName") && BSON_ITER_HOLDS_UTF8(&it))
		replset = true;
	if (bson_iter_init_find(&it, hello, "msg") && BSON_ITER_HOLDS_UTF8(&it) &&
	    strcmp(bson_iter_utf8(&it, NULL), "isdbgrid") == 0)
		mongos = true;
	if (bson_iter_init_find(&it, hello, "logicalSessionTimeoutMinutes") &&
	    !BSON_ITER_HOLDS_NULL(&it))
		sessions = true;
	mongoc_server_description_destroy(sd);
	return (replset || mongos) && sessions ? EMH_CAP_TRANSACTIONS | EMH_CAP_ATOMIC_FLUSH : 0;
}

static int mg_connect(const emh_params *p, emh_dctx *dc, emh_conn **out, emh_error *err)
{
	mongoc_client_t *client;
	emh_conn *c;
	int rc;

	*out = NULL;
	client = mongoc_client_pool_try_pop(dc->pool);
	if (!client)
		return emh_error_set(err, EMH_ETIMEOUT, "libmongoc client pool exhausted (%u clients)", dc->max_pool);
	/* Selects the server (at most server_selection_timeout_ms) and makes a
	 * round trip, so a server that is down is reported now. */
	unsigned gen = atomic_load(&dc->down_gen);
	if ((rc = mg_command_ping(dc, client, err)))
		goto out_push;
	c = calloc(1, sizeof *c);
	if (!c) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_push;
	}
	c->dc = dc;
	c->client = client;
	c->gen = gen;
	c->caps = mg_server_caps(client);
	if (!(c->caps & EMH_CAP_TRANSACTIONS) && !atomic_exchange(&dc->warned_standalone, true))
		emh_params_log(p, EMH_LOG_WARN,
			       "mongo: the server is standalone (no replica set or mongos): no transactions, "
			       "and a flush is not atomic across documents");
	*out = c;
	return 0;

out_push:
	mongoc_client_pool_push(dc->pool, client);
	return rc;
}

static void mg_disconnect(emh_conn *c)
{
	if (!c)
		return;
	/* Destroying a session aborts its open transaction, if any. */
	if (c->session)
		mongoc_client_session_destroy(c->session);
	for (size_t i = 0; i < c->ncolls; i++)
		if (c->colls[i].coll)
			mongoc_collection_destroy(c->colls[i].coll);
	free(c->colls);
	if (c->counters)
		mongoc_collection_destroy(c->counters);
	mongoc_client_pool_push(c->dc->pool, c->client);
	free(c);
}

/*
 * The pool pings every idle connection after one of them lost the server.
 * While the server is down each ping would wait server_selection_timeout_ms;
 * a connection idle since before the last failure is reported lost at once
 * instead (the pool then connects afresh, which waits once).
 */
static int mg_ping(emh_conn *c, emh_error *err)
{
	unsigned gen = atomic_load(&c->dc->down_gen);
	if (c->gen != gen)
		return emh_error_set(err, EMH_EUNAVAILABLE,
				     "mongodb: the server was lost since this connection was last used");
	int rc = mg_command_ping(c->dc, c->client, err);
	if (rc == 0)
		c->gen = gen;
	return rc;
}

static uint64_t mg_conn_caps(emh_conn *c)
{
	return c->caps;
}

/* Options of an operation: the session while a transaction is open. */
static int mg_opts(emh_conn *c, bson_t *opts, emh_error *err)
{
	bson_error_t e;
	bson_init(opts);
	if (c->in_txn && !mongoc_client_session_append(c->session, opts, &e)) {
		bson_destroy(opts);
		bson_init(opts);
		return emh_error_set(err, EMH_EDRIVER, "cannot attach the session: %s", e.message);
	}
	return 0;
}

/* The collection handle of entity m on this connection (cached by m->id). */
static int mg_coll_get(emh_conn *c, const emh_meta *m, mongoc_collection_t **out, emh_error *err)
{
	const emh_entity *e = m->entity;

	if (m->id < c->ncolls && c->colls[m->id].coll && c->colls[m->id].meta == m) {
		*out = c->colls[m->id].coll;
		return 0;
	}
	for (size_t i = 0; i < e->nfields; i++)
		if ((int)i != m->pk && strcmp(e->fields[i].column, "_id") == 0)
			return emh_error_set(err, EMH_EINVAL,
					     "entity '%s': column '_id' is reserved for the primary key "
					     "by the mongo driver", e->name);
	if (strcmp(e->table, MG_COUNTERS) == 0)
		return emh_error_set(err, EMH_EINVAL, "entity '%s': collection '%s' is reserved by the mongo driver",
				     e->name, MG_COUNTERS);
	mongoc_collection_t *coll = mongoc_client_get_collection(c->client, c->dc->database, e->table);
	if (!coll)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	if (m->id < 4096) {
		if (m->id >= c->ncolls) {
			size_t n = (size_t)m->id + 8;
			mg_coll *v = realloc(c->colls, n * sizeof *v);
			if (!v) {
				mongoc_collection_destroy(coll);
				return emh_error_set(err, EMH_ENOMEM, "out of memory");
			}
			memset(v + c->ncolls, 0, (n - c->ncolls) * sizeof *v);
			c->colls = v;
			c->ncolls = n;
		}
		if (c->colls[m->id].coll)
			mongoc_collection_destroy(c->colls[m->id].coll);
		c->colls[m->id].coll = coll;
		c->colls[m->id].meta = m;
		*out = coll;
		return 0;
	}
	return emh_error_set(err, EMH_EINVAL, "entity '%s': metadata id %u out of range", e->name, m->id);
}

/* ---- JSON <-> BSON ---- */

/*
 * A strict RFC 8259 parser building BSON.  Its own (and not libbson's) so
 * that extended JSON ({"$numberLong": "5"}, {"$date": ...}) is never
 * interpreted, trailing text is an error, and the cases BSON cannot keep
 * exactly are flagged (verbatim: the caller then stores the text).
 */
typedef struct mg_json {
	const char *s;
	size_t n, i;
	bool verbatim;
	char *buf; /* scratch for decoded strings */
	size_t cap;
	const char *why;
} mg_json;

static void mgj_ws(mg_json *j)
{
	while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r'))
		j->i++;
}

static int mgj_fail(mg_json *j, const char *why)
{
	if (!j->why)
		j->why = why;
	return -1;
}

static int mgj_put(mg_json *j, size_t *len, const char *p, size_t n)
{
	if (*len + n + 1 > j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 64;
		while (cap < *len + n + 1)
			cap *= 2;
		char *b = realloc(j->buf, cap);
		if (!b)
			return mgj_fail(j, "out of memory");
		j->buf = b;
		j->cap = cap;
	}
	memcpy(j->buf + *len, p, n);
	*len += n;
	j->buf[*len] = '\0';
	return 0;
}

static int mgj_hex4(mg_json *j, unsigned *out)
{
	unsigned v = 0;
	if (j->i + 4 > j->n)
		return mgj_fail(j, "truncated \\u escape");
	for (int k = 0; k < 4; k++) {
		char ch = j->s[j->i++];
		v <<= 4;
		if (ch >= '0' && ch <= '9')
			v |= (unsigned)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v |= (unsigned)(ch - 'a' + 10);
		else if (ch >= 'A' && ch <= 'F')
			v |= (unsigned)(ch - 'A' + 10);
		else
			return mgj_fail(j, "bad \\u escape");
	}
	*out = v;
	return 0;
}

/* A string at j->i (the opening quote), decoded into j->buf; *len its length. */
static int mgj_string(mg_json *j, size_t *len)
{
	*len = 0;
	if (mgj_put(j, len, "", 0))
		return -1;
	j->i++; /* the quote */
	for (;;) {
		if (j->i >= j->n)
			return mgj_fail(j, "unterminated string");
		unsigned char ch = (unsigned char)j->s[j->i];
		if (ch == '"') {
			j->i++;
			return 0;
		}
		if (ch < 0x20)
			return mgj_fail(j, "control character in string");
		if (ch != '\\') {
			size_t start = j->i;
			while (j->i < j->n && j->s[j->i] != '"' && j->s[j->i] != '\\' &&
			       (unsigned char)j->s[j->i] >= 0x20)
				j->i++;
			if (mgj_put(j, len, j->s + start, j->i - start))
				return -1;
			continue;
		}
		if (++j->i >= j->n)
			return mgj_fail(j, "unterminated string");
		char esc = j->s[j->i++], c1;
		switch (esc) {
		case '"': case '\\': case '/': c1 = esc; break;
		case 'b': c1 = '\b'; break;
		case 'f': c1 = '\f'; break;
		case 'n': c1 = '\n'; break;
		case 'r': c1 = '\r'; break;
		case 't': c1 = '\t'; break;
		case 'u': {
			unsigned cp, lo;
			char u[4];
			size_t un;
			if (mgj_hex4(j, &cp))
				return -1;
			if (cp >= 0xD800 && cp <= 0xDBFF && j->i + 1 < j->n && j->s[j->i] == '\\' &&
			    j->s[j->i + 1] == 'u') {
				size_t save = j->i;
				j->i += 2;
				if (mgj_hex4(j, &lo))
					return -1;
				if (lo >= 0xDC00 && lo <= 0xDFFF)
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				else
					j->i = save;
			}
			if (cp >= 0xD800 && cp <= 0xDFFF) {
				j->verbatim = true; /* a lone surrogate has no UTF-8 form */
				cp = 0xFFFD;
			}
			if (cp == 0)
				j->verbatim = true; /* BSON keys cannot hold NUL; keep the text */
			if (cp < 0x80) {
				u[0] = (char)cp;
				un = 1;
			} else if (cp < 0x800) {
				u[0] = (char)(0xC0 | (cp >> 6));
				u[1] = (char)(0x80 | (cp & 0x3F));
				un = 2;
			} else if (cp < 0x10000) {
				u[0] = (char)(0xE0 | (cp >> 12));
				u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
				u[2] = (char)(0x80 | (cp & 0x3F));
				un = 3;
			} else {
				u[0] = (char)(0xF0 | (cp >> 18));
				u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
				u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
				u[3] = (char)(0x80 | (cp & 0x3F));
				un = 4;
			}
			if (mgj_put(j, len, u, un))
				return -1;
			continue;
		}
		default:
			return mgj_fail(j, "bad escape in string");
		}
		if (mgj_put(j, len, &c1, 1))
			return -1;
	}
}

static int mgj_value(mg_json *j, bson_t *parent, const char *key, int depth);

static int mgj_number(mg_json *j, bson_t *parent, const char *key)
{
	size_t start = j->i;
	bool integer = true;
	char tmp[64];

	if (j->s[j->i] == '-')
		j->i++;
	if (j->i >= j->n)
		return mgj_fail(j, "bad number");
	if (j->s[j->i] == '0')
		j->i++;
	else if (j->s[j->i] >= '1' && j->s[j->i] <= '9')
		while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9')
			j->i++;
	else
		return mgj_fail(j, "bad number");
	if (j->i < j->n && j->s[j->i] == '.') {
		integer = false;
		j->i++;
		if (j->i >= j->n || j->s[j->i] < '0' || j->s[j->i] > '9')
			return mgj_fail(j, "bad number");
		while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9')
			j->i++;
	}
	if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
		integer = false;
		j->i++;
		if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-'))
			j->i++;
		if (j->i >= j->n || j->s[j->i] < '0' || j->s[j->i] > '9')
			return mgj_fail(j, "bad number");
		while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9')
			j->i++;
	}
	size_t len = j->i - start;
	if (len >= sizeof tmp) {
		/* Valid but longer than any exactly kept number. */
		j->verbatim = true;
		return bson_append_null(parent, key, -1) ? 0 : mgj_fail(j, "document too large");
	}
	memcpy(tmp, j->s + start, len);
	tmp[len] = '\0';
	errno = 0;
	if (integer) {
		long long v = strtoll(tmp, NULL, 10);
		if (errno == ERANGE) {
			j->verbatim = true;
			return bson_append_null(parent, key, -1) ? 0 : mgj_fail(j, "document too large");
		}
		if (v >= INT32_MIN && v <= INT32_MAX)
			return bson_append_int32(parent, key, -1, (int32_t)v) ? 0 : mgj_fail(j, "document too large");
		return bson_append_int64(parent, key, -1, v) ? 0 : mgj_fail(j, "document too large");
	}
	double d = strtod(tmp, NULL);
	if (!isfinite(d))
		j->verbatim = true;
	return bson_append_double(parent, key, -1, d) ? 0 : mgj_fail(j, "document too large");
}

static int mgj_literal(mg_json *j, const char *word)
{
	size_t n = strlen(word);
	if (j->n - j->i < n || memcmp(j->s + j->i, word, n) != 0)
		return mgj_fail(j, "unexpected character");
	j->i += n;
	return 0;
}

/* Key checks: what the server would refuse or interpret as an operator or path. */
static void mgj_check_key(mg_json *j, const char *k, size_t len)
{
	if (len == 0 || k[0] == '$' || memchr(k, '.', len) || strlen(k) != len)
		j->verbatim = true;
}

static int mgj_container(mg_json *j, bson_t *parent, const char *key, int depth, bool object)
{
	bson_t child;
	char close = object ? '}' : ']';
	uint32_t idx = 0;
	bool ok;

	if (depth > MG_JSON_MAX_DEPTH)
		return mgj_fail(j, "nested too deeply");
	if (depth > MG_BSON_MAX_DEPTH)
		j->verbatim = true;
	ok = object ? bson_append_document_begin(parent, key, -1, &child)
		    : bson_append_array_begin(parent, key, -1, &child);
	if (!ok)
		return mgj_fail(j, "document too large");
	j->i++;
	mgj_ws(j);
	if (j->i < j->n && j->s[j->i] == close) {
		j->i++;
		goto out_end;
	}
	for (;;) {
		char ikey[16];
		const char *k;
		char *kcopy = NULL;
		int rc;

		mgj_ws(j);
		if (object) {
			size_t klen;
			if (j->i >= j->n || j->s[j->i] != '"')
				return mgj_fail(j, "expected a member name");
			if (mgj_string(j, &klen))
				return -1;
			mgj_check_key(j, j->buf, klen);
			kcopy = strdup(j->buf);
			if (!kcopy)
				return mgj_fail(j, "out of memory");
			k = kcopy;
			mgj_ws(j);
			if (j->i >= j->n || j->s[j->i] != ':') {
				free(kcopy);
				return mgj_fail(j, "expected ':'");
			}
			j->i++;
		} else {
			const char *kp;
			bson_uint32_to_string(idx++, &kp, ikey, sizeof ikey);
			k = kp;
		}
		rc = mgj_value(j, &child, k, depth + 1);
		free(kcopy);
		if (rc)
			return -1;
		mgj_ws(j);
		if (j->i < j->n && j->s[j->i] == ',') {
			j->i++;
			continue;
		}
		if (j->i < j->n && j->s[j->i] == close) {
			j->i++;
			break;
		}
		return mgj_fail(j, object ? "expected ',' or '}'" : "expected ',' or ']'");
	}
out_end:
	ok = object ? bson_append_document_end(parent, &child) : bson_append_array_end(parent, &child);
	return ok ? 0 : mgj_fail(j, "document too large");
}

static int mgj_value(mg_json *j, bson_t *parent, const char *key, int depth)
{
	mgj_ws(j);
	if (j->i >= j->n)
		return mgj_fail(j, "unexpected end");
	switch (j->s[j->i]) {
	case '{':
		return mgj_container(j, parent, key, depth, true);
	case '[':
		return mgj_container(j, parent, key, depth, false);
	case '"': {
		size_t len;
		if (mgj_string(j, &len))
			return -1;
		return bson_append_utf8(parent, key, -1, j->buf, (int)len) ? 0 : mgj_fail(j, "document too large");
	}
	case 't':
		return mgj_literal(j, "true") || !bson_append_bool(parent, key, -1, true) ? -1 : 0;
	case 'f':
		return mgj_literal(j, "false") || !bson_append_bool(parent, key, -1, false) ? -1 : 0;
	case 'n':
		return mgj_literal(j, "null") || !bson_append_null(parent, key, -1) ? -1 : 0;
	default:
		if (j->s[j->i] == '-' || (j->s[j->i] >= '0' && j->s[j->i] <= '9'))
			return mgj_number(j, parent, key);
		return mgj_fail(j, "unexpected character");
	}
}

/* A growable output buffer for the BSON -> JSON writer. */
typedef struct mg_buf {
	char *p;
	size_t len, cap;
	bool oom;
} mg_buf;

static void mgb_put(mg_buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 128;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void mgb_str(mg_buf *b, const char *s)
{
	mgb_put(b, s, strlen(s));
}

static void mgb_jstring(mg_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = 0;
	mgb_put(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		const char *esc = NULL;
		char u[7];
		if (ch == '"')
			esc = "\\\"";
		else if (ch == '\\')
			esc = "\\\\";
		else if (ch == '\n')
			esc = "\\n";
		else if (ch == '\r')
			esc = "\\r";
		else if (ch == '\t')
			esc = "\\t";
		else if (ch == '\b')
			esc = "\\b";
		else if (ch == '\f')
			esc = "\\f";
		else if (ch < 0x20) {
			memcpy(u, "\\u00", 4);
			u[4] = hex[ch >> 4];
			u[5] = hex[ch & 15];
			u[6] = '\0';
			esc = u;
		}
		if (esc) {
			mgb_put(b, s + start, i - start);
			mgb_str(b, esc);
			start = i + 1;
		}
	}
	mgb_put(b, s + start, n - start);
	mgb_put(b, "\"", 1);
}

/* The shortest text that reads back as d, always with a '.' or an exponent. */
static void mgb_double(mg_buf *b, double d)
{
	char tmp[40];
	if (!isfinite(d)) {
		mgb_str(b, isnan(d) ? "{\"$numberDouble\":\"NaN\"}"
				    : d > 0 ? "{\"$numberDouble\":\"Infinity\"}" : "{\"$numberDouble\":\"-Infinity\"}");
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	if (!strpbrk(tmp, ".eE"))
		strcat(tmp, ".0");
	mgb_str(b, tmp);
}

static void mgb_iter(mg_buf *b, bson_iter_t *it);

static void mgb_container(mg_buf *b, bson_iter_t *it, bool object)
{
	bson_iter_t child;
	bool first = true;
	mgb_put(b, object ? "{" : "[", 1);
	if (bson_iter_recurse(it, &child)) {
		while (bson_iter_next(&child)) {
			if (!first)
				mgb_put(b, ",", 1);
			first = false;
			if (object) {
				mgb_jstring(b, bson_iter_key(&child), bson_iter_key_len(&child));
				mgb_put(b, ":", 1);
			}
			mgb_iter(b, &child);
		}
	}
	mgb_put(b, object ? "}" : "]", 1);
}

static void mgb_iter(mg_buf *b, bson_iter_t *it)
{
	char tmp[32];
	switch (bson_iter_type(it)) {
	case BSON_TYPE_DOCUMENT:
		mgb_container(b, it, true);
		break;
	case BSON_TYPE_ARRAY:
		mgb_container(b, it, false);
		break;
	case BSON_TYPE_UTF8: {
		uint32_t n;
		const char *s = bson_iter_utf8(it, &n);
		mgb_jstring(b, s, n);
		break;
	}
	case BSON_TYPE_INT32:
		snprintf(tmp, sizeof tmp, "%" PRId32, bson_iter_int32(it));
		mgb_str(b, tmp);
		break;
	case BSON_TYPE_INT64:
		snprintf(tmp, sizeof tmp, "%" PRId64, bson_iter_int64(it));
		mgb_str(b, tmp);
		break;
	case BSON_TYPE_DOUBLE:
		mgb_double(b, bson_iter_double(it));
		break;
	case BSON_TYPE_BOOL:
		mgb_str(b, bson_iter_bool(it) ? "true" : "false");
		break;
	case BSON_TYPE_NULL:
		mgb_str(b, "null");
		break;
	default: {
		/* Written by another tool: relaxed extended JSON of the value. */
		bson_t one = BSON_INITIALIZER;
		char *s;
		size_t n;
		bson_append_iter(&one, "v", 1, it);
		s = bson_as_relaxed_extended_json(&one, &n);
		bson_destroy(&one);
		if (!s) {
			mgb_str(b, "null");
			break;
		}
		/* "{ "v" : VALUE }" */
		if (n > 10 && strncmp(s, "{ \"v\" : ", 8) == 0)
			mgb_put(b, s + 8, n - 10);
		else
			mgb_str(b, "null");
		bson_free(s);
		break;
	}
	}
}

/* Compare JSON texts ignoring whitespace outside strings. */
static bool mg_json_same(const char *a, size_t an, const char *b, size_t bn)
{
	size_t i = 0, k = 0;
	bool in = false;
	for (;;) {
		if (!in) {
			while (i < an && (a[i] == ' ' || a[i] == '\t' || a[i] == '\n' || a[i] == '\r'))
				i++;
			while (k < bn && (b[k] == ' ' || b[k] == '\t' || b[k] == '\n' || b[k] == '\r'))
				k++;
		}
		if (i == an || k == bn)
			return i == an && k == bn;
		if (a[i] != b[k])
			return false;
		char ch = a[i];
		i++;
		k++;
		if (in && ch == '\\') { /* an escape: the next byte is part of it */
			if (i == an || k == bn || a[i] != b[k])
				return false;
			i++;
			k++;
		} else if (ch == '"') {
			in = !in;
		}
	}
}

/*
 * Append the JSON text (s, n) under key: as an embedded document or array
 * when it reads back as the same text (modulo whitespace), else as its text
 * (utf8).  EMH_EINVAL when it is not valid JSON.
 */
static int mg_json_append(bson_t *doc, const char *key, const char *s, size_t n, const char *field,
			  emh_error *err)
{
	mg_json j = {.s = s, .n = n};
	bson_t tmp = BSON_INITIALIZER;
	bson_iter_t it;
	int rc = 0;

	mgj_ws(&j);
	bool container = j.i < n && (s[j.i] == '{' || s[j.i] == '[');
	if (mgj_value(&j, &tmp, "v", 0) == 0) {
		mgj_ws(&j);
		if (j.i != n)
			mgj_fail(&j, "trailing characters");
	}
	if (j.why) {
		rc = emh_error_set(err, strcmp(j.why, "out of memory") == 0 ? EMH_ENOMEM : EMH_EINVAL,
				   "field '%s': invalid json: %s at byte %zu", field, j.why, j.i);
		goto out;
	}
	if (container && !j.verbatim && bson_iter_init_find(&it, &tmp, "v")) {
		mg_buf b = {0};
		mgb_iter(&b, &it);
		if (b.oom) {
			free(b.p);
			rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
			goto out;
		}
		bool same = mg_json_same(b.p, b.len, s, n);
		free(b.p);
		if (same) {
			if (!bson_append_iter(doc, key, -1, &it))
				rc = emh_error_set(err, EMH_EINVAL, "field '%s': document too large", field);
			goto out;
		}
	}
	if (!bson_append_utf8(doc, key, -1, s, (int)n))
		rc = emh_error_set(err, EMH_EINVAL, "field '%s': document too large", field);
out:
	free(j.buf);
	bson_destroy(&tmp);
	return rc;
}

/* ---- values ---- */

/* Stored absent rather than null: a nullable field with a unique (sparse) index. */
static bool mg_null_absent(const emh_field *f)
{
	return (f->flags & EMH_F_UNIQUE) && (f->flags & EMH_F_NULLABLE) && !(f->flags & EMH_F_PK);
}

static int64_t mg_floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/*
 * Append value v under key as field f is stored.  Values of query calls may
 * be int64 for an int32 field (they mix freely) and int64 for a timestamp.
 */
static int mg_append_value(bson_t *doc, const char *key, const emh_field *f, const emh_value *v, emh_error *err)
{
	bool ok = true;

	if (v->is_null)
		return bson_append_null(doc, key, -1) ? 0 : emh_error_set(err, EMH_EINVAL, "document too large");
	switch (f->type) {
	case EMH_T_BOOL:
		ok = bson_append_bool(doc, key, -1, v->u.b);
		break;
	case EMH_T_INT32:
	case EMH_T_INT64:
		if (v->type == EMH_T_INT32)
			ok = bson_append_int32(doc, key, -1, v->u.i32);
		else if (v->type == EMH_T_DOUBLE)
			ok = bson_append_double(doc, key, -1, v->u.d);
		else if (f->type == EMH_T_INT32 && v->u.i64 >= INT32_MIN && v->u.i64 <= INT32_MAX)
			ok = bson_append_int32(doc, key, -1, (int32_t)v->u.i64);
		else
			ok = bson_append_int64(doc, key, -1, v->u.i64);
		break;
	case EMH_T_DOUBLE:
		if (v->type == EMH_T_INT32)
			ok = bson_append_double(doc, key, -1, v->u.i32);
		else if (v->type == EMH_T_INT64)
			ok = bson_append_double(doc, key, -1, (double)v->u.i64);
		else
			ok = bson_append_double(doc, key, -1, v->u.d);
		break;
	case EMH_T_TEXT:
		if (v->u.s.len > INT32_MAX - 1)
			return emh_error_set(err, EMH_EINVAL, "field '%s': text too long", f->name);
		ok = bson_append_utf8(doc, key, -1, v->u.s.ptr ? v->u.s.ptr : "", (int)v->u.s.len);
		break;
	case EMH_T_BLOB:
		if (v->u.s.len > INT32_MAX - 1)
			return emh_error_set(err, EMH_EINVAL, "field '%s': blob too long", f->name);
		ok = bson_append_binary(doc, key, -1, BSON_SUBTYPE_BINARY,
					(const uint8_t *)(v->u.s.ptr ? v->u.s.ptr : ""), (uint32_t)v->u.s.len);
		break;
	case EMH_T_TIMESTAMP: {
		bson_t sub;
		ok = bson_append_document_begin(doc, key, -1, &sub) &&
		     bson_append_date_time(&sub, MG_TS_DATE, -1, mg_floor_div(v->u.i64, 1000)) &&
		     bson_append_int64(&sub, MG_TS_US, -1, v->u.i64) && bson_append_document_end(doc, &sub);
		break;
	}
	case EMH_T_JSON:
		return mg_json_append(doc, key, v->u.s.ptr ? v->u.s.ptr : "", v->u.s.len, f->name, err);
	default:
		return emh_error_set(err, EMH_EINVAL, "field '%s': unsupported type %d", f->name, (int)f->type);
	}
	return ok ? 0 : emh_error_set(err, EMH_EINVAL, "field '%s': document too large", f->name);
}

/* Where field i lives in a document: "_id", "<column>", or "<column>.us" for
 * comparisons and sorts on a timestamp.  buf must hold 64 + 4 bytes. */
static const char *mg_path(const emh_meta *m, int i, bool compare, char *buf, size_t cap)
{
	const emh_field *f = &m->entity->fields[i];
	if (i == m->pk)
		return "_id";
	if (compare && f->type == EMH_T_TIMESTAMP) {
		snprintf(buf, cap, "%s.%s", f->column, MG_TS_US);
		return buf;
	}
	return f->column;
}

/* Read value of field f from it (its type as stored) into out; *owned gets
 * a malloc'd buffer the value points into (json), to free after the row. */
static int mg_read_value(bson_iter_t *it, const emh_meta *m, const emh_field *f, emh_value *out, char **owned,
			 emh_error *err)
{
	bson_type_t t = bson_iter_type(it);
	memset(out, 0, sizeof *out);
	out->type = f->type;
	if (t == BSON_TYPE_NULL || t == BSON_TYPE_UNDEFINED) {
		out->is_null = true;
		return 0;
	}
	switch (f->type) {
	case EMH_T_BOOL:
		if (t != BSON_TYPE_BOOL)
			goto out_type;
		out->u.b = bson_iter_bool(it);
		return 0;
	case EMH_T_INT32:
	case EMH_T_INT64: {
		int64_t v;
		if (t == BSON_TYPE_INT32)
			v = bson_iter_int32(it);
		else if (t == BSON_TYPE_INT64)
			v = bson_iter_int64(it);
		else if (t == BSON_TYPE_DOUBLE && bson_iter_double(it) == (double)(int64_t)bson_iter_double(it))
			v = (int64_t)bson_iter_double(it);
		else
			goto out_type;
		if (f->type == EMH_T_INT32) {
			if (v < INT32_MIN || v > INT32_MAX)
				goto out_type;
			out->u.i32 = (int32_t)v;
		} else {
			out->u.i64 = v;
		}
		return 0;
	}
	case EMH_T_DOUBLE:
		if (t != BSON_TYPE_DOUBLE && t != BSON_TYPE_INT32 && t != BSON_TYPE_INT64)
			goto out_type;
		out->u.d = bson_iter_as_double(it);
		return 0;
	case EMH_T_TEXT: {
		uint32_t n;
		if (t != BSON_TYPE_UTF8)
			goto out_type;
		out->u.s.ptr = bson_iter_utf8(it, &n);
		out->u.s.len = n;
		return 0;
	}
	case EMH_T_BLOB: {
		bson_subtype_t st;
		uint32_t n;
		const uint8_t *data;
		if (t != BSON_TYPE_BINARY)
			goto out_type;
		bson_iter_binary(it, &st, &n, &data);
		out->u.s.ptr = data ? (const char *)data : "";
		out->u.s.len = n;
		return 0;
	}
	case EMH_T_TIMESTAMP: {
		bson_iter_t sub;
		/* us is written as int64; wire-compatible servers may hand back
		 * an int32 or an integral double of the same value. */
		if (t == BSON_TYPE_DOCUMENT && bson_iter_recurse(it, &sub) && bson_iter_find(&sub, MG_TS_US) &&
		    (BSON_ITER_HOLDS_INT64(&sub) || BSON_ITER_HOLDS_INT32(&sub) ||
		     (BSON_ITER_HOLDS_DOUBLE(&sub) &&
		      bson_iter_double(&sub) == (double)(int64_t)bson_iter_double(&sub)))) {
			out->u.i64 = bson_iter_as_int64(&sub);
			return 0;
		}
		if (t == BSON_TYPE_DATE_TIME) { /* written by another tool */
			out->u.i64 = bson_iter_date_time(it) * 1000;
			return 0;
		}
		goto out_type;
	}
	case EMH_T_JSON: {
		if (t == BSON_TYPE_UTF8) {
			uint32_t n;
			out->u.s.ptr = bson_iter_utf8(it, &n);
			out->u.s.len = n;
			return 0;
		}
		mg_buf b = {0};
		mgb_iter(&b, it);
		if (b.oom) {
			free(b.p);
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
		}
		*owned = b.p;
		out->u.s.ptr = b.p;
		out->u.s.len = b.len;
		return 0;
	}
	default:
		break;
	}
out_type:
	return emh_error_set(err, EMH_ESCHEMA, "collection '%s' field '%s': stored as BSON type 0x%02x, expected %s",
			     m->entity->table, f->column, (unsigned)t, emh_type_name(f->type));
}

/* Deliver document doc to sink as a row in field order. */
static int mg_deliver(const bson_t *doc, const emh_meta *m, emh_rowsink *sink, emh_error *err)
{
	const emh_entity *e = m->entity;
	emh_value vals[EMH_ENTITY_MAX_FIELDS];
	char *owned[EMH_ENTITY_MAX_FIELDS];
	bool seen[EMH_ENTITY_MAX_FIELDS] = {false};
	bson_iter_t it;
	size_t nowned = 0;
	int rc = 0;

	if (!bson_iter_init(&it, doc))
		return emh_error_set(err, EMH_EDRIVER, "collection '%s': corrupt document", e->table);
	while (bson_iter_next(&it)) {
		const char *k = bson_iter_key(&it);
		for (size_t i = 0; i < e->nfields; i++) {
			const char *col = (int)i == m->pk ? "_id" : e->fields[i].column;
			if (seen[i] || strcmp(k, col) != 0)
				continue;
			char *o = NULL;
			rc = mg_read_value(&it, m, &e->fields[i], &vals[i], &o, err);
			if (o)
				owned[nowned++] = o;
			if (rc)
				goto out;
			seen[i] = true;
			break;
		}
	}
	for (size_t i = 0; i < e->nfields; i++) {
		if (!seen[i]) {
			memset(&vals[i], 0, sizeof vals[i]);
			vals[i].type = e->fields[i].type;
			vals[i].is_null = true;
		}
	}
	rc = sink->row(sink, vals, err);
out:
	for (size_t i = 0; i < nowned; i++)
		free(owned[i]);
	return rc;
}

/* ---- query compilation ---- */

/* LIKE pattern -> anchored regex: % -> [\s\S]*, _ -> [\s\S], \x -> x; every
 * regex metacharacter of the user's text escaped.  [\s\S] rather than '.'
 * with the "s" option: it matches a newline as SQL's '_' does, with no
 * option to honour (some wire-compatible servers drop "s"). */
static int mg_like_regex(const char *pat, size_t n, mg_buf *b, emh_error *err)
{
	mgb_put(b, "^", 1);
	for (size_t i = 0; i < n; i++) {
		char ch = pat[i];
		if (ch == '%') {
			mgb_str(b, "[\\s\\S]*");
			continue;
		}
		if (ch == '_') {
			mgb_str(b, "[\\s\\S]");
			continue;
		}
		if (ch == '\\') {
			if (++i >= n)
				return emh_error_set(err, EMH_EINVAL, "like pattern ends with a lone backslash");
			ch = pat[i];
		}
		if (strchr("\\^$.|?*+()[]{}/", ch) && ch != '\0')
			mgb_put(b, "\\", 1);
		if (ch == '\0') {
			mgb_put(b, "\\x00", 4);
			continue;
		}
		mgb_put(b, &ch, 1);
	}
	mgb_put(b, "$", 1);
	return b->oom ? emh_error_set(err, EMH_ENOMEM, "out of memory") : 0;
}

static int mg_cond(bson_t *doc, const emh_meta *m, const emh_cond *c, bool neg, emh_error *err);

static int mg_cond_list(bson_t *doc, const char *op, const emh_meta *m, const emh_cond *c, bool neg, emh_error *err)
{
	bson_t arr, child;
	size_t n = emh_cond_nchildren(c);
	int rc = 0;

	bson_append_array_begin(doc, op, -1, &arr);
	for (size_t i = 0; i < n && !rc; i++) {
		char ikey[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, ikey, sizeof ikey);
		bson_append_document_begin(&arr, k, -1, &child);
		rc = mg_cond(&child, m, emh_cond_child(c, i), neg, err);
		bson_append_document_end(&arr, &child);
	}
	bson_append_array_end(doc, &arr);
	return rc;
}

/*
 * Append condition c (negated when neg) to doc.  Negation is pushed down to
 * the leaves (De Morgan) so that results match SQL's three-valued logic: a
 * negated comparison never matches a NULL field, exactly as NOT (a = 1) is
 * not true in SQL when a is NULL.  Values are always typed BSON scalars under
 * an explicit operator ($eq, $in, ...): never a document a value could turn
 * into an operator.
 */
static int mg_cond(bson_t *doc, const emh_meta *m, const emh_cond *c, bool neg, emh_error *err)
{
	emh_op op = emh_cond_op(c);
	int fi = emh_cond_field(c);
	const emh_entity *e = m->entity;
	const emh_field *f;
	const emh_value *vals;
	size_t nv;
	char pbuf[80];
	const char *path;
	bson_t sub, arr;
	int rc = 0;

	switch (op) {
	case EMH_OP_AND:
		return mg_cond_list(doc, neg ? "$or" : "$and", m, c, neg, err);
	case EMH_OP_OR:
		return mg_cond_list(doc, neg ? "$and" : "$or", m, c, neg, err);
	case EMH_OP_NOT:
		if (emh_cond_nchildren(c) != 1)
			return emh_error_set(err, EMH_EINVAL, "malformed not condition");
		return mg_cond(doc, m, emh_cond_child(c, 0), !neg, err);
	default:
		break;
	}
	if (fi < 0 || (size_t)fi >= e->nfields)
		return emh_error_set(err, EMH_EINVAL, "condition on an unknown field");
	f = &e->fields[fi];
	vals = emh_cond_values(c);
	nv = emh_cond_nvalues(c);
	if (op == EMH_OP_IS_NULL || op == EMH_OP_NOT_NULL) {
		bool want_null = (op == EMH_OP_IS_NULL) != neg;
		path = mg_path(m, fi, false, pbuf, sizeof pbuf);
		bson_append_document_begin(doc, path, -1, &sub);
		bson_append_null(&sub, want_null ? "$eq" : "$ne", -1);
		bson_append_document_end(doc, &sub);
		return 0;
	}
	if (f->type == EMH_T_JSON)
		return emh_error_set(err, EMH_EUNSUPPORTED,
				     "field '%s': the mongo driver compares json fields only with is null / not null",
				     f->name);
	path = mg_path(m, fi, true, pbuf, sizeof pbuf);
	/* The value as it is compared: a timestamp through its µs. */
	emh_field cf = *f;
	if (f->type == EMH_T_TIMESTAMP)
		cf.type = EMH_T_INT64;

	if (op == EMH_OP_LIKE) {
		mg_buf re = {0};
		if (nv != 1 || vals[0].is_null)
			return emh_error_set(err, EMH_EINVAL, "field '%s': like needs one pattern", f->name);
		if ((rc = mg_like_regex(vals[0].u.s.ptr ? vals[0].u.s.ptr : "", vals[0].u.s.len, &re, err))) {
			free(re.p);
			return rc;
		}
		bson_append_document_begin(doc, path, -1, &sub);
		if (neg) {
			bson_append_regex(&sub, "$not", -1, re.p, "");
			bson_append_null(&sub, "$ne", -1);
		} else {
			bson_append_regex(&sub, "$regex", -1, re.p, "");
		}
		bson_append_document_end(doc, &sub);
		free(re.p);
		return 0;
	}
	if (op == EMH_OP_IN) {
		if (neg && nv == 0)
			return 0; /* NOT IN () holds for every row */
		bson_append_document_begin(doc, path, -1, &sub);
		bson_append_array_begin(&sub, neg ? "$nin" : "$in", -1, &arr);
		for (size_t i = 0; i < nv && !rc; i++) {
			char ikey[16];
			const char *k;
			bson_uint32_to_string((uint32_t)i, &k, ikey, sizeof ikey);
			rc = mg_append_value(&arr, k, &cf, &vals[i], err);
		}
		if (neg && !rc) {
			char ikey[16];
			const char *k;
			bson_uint32_to_string((uint32_t)nv, &k, ikey, sizeof ikey);
			bson_append_null(&arr, k, -1);
		}
		bson_append_array_end(&sub, &arr);
		bson_append_document_end(doc, &sub);
		return rc;
	}
	if (nv != 1 || vals[0].is_null)
		return emh_error_set(err, EMH_EINVAL, "field '%s': comparison needs one non-null value", f->name);

	/* Equality on the key: the plain form {_id: v} (v is a typed scalar, so
	 * it cannot act as an operator) lets servers take their _id fast path. */
	if (op == EMH_OP_EQ && !neg && fi == m->pk)
		return mg_append_value(doc, "_id", &cf, &vals[0], err);

	const char *mop;
	bool ne = false;
	switch (op) {
	case EMH_OP_EQ: mop = neg ? NULL : "$eq"; ne = neg; break;
	case EMH_OP_NE: mop = neg ? "$eq" : NULL; ne = !neg; break;
	case EMH_OP_LT: mop = neg ? "$gte" : "$lt"; break;
	case EMH_OP_LE: mop = neg ? "$gt" : "$lte"; break;
	case EMH_OP_GT: mop = neg ? "$lte" : "$gt"; break;
	case EMH_OP_GE: mop = neg ? "$lt" : "$gte"; break;
	default:
		return emh_error_set(err, EMH_EUNSUPPORTED, "unknown condition operator %d", (int)op);
	}
	bson_append_document_begin(doc, path, -1, &sub);
	if (ne) {
		/* a <> v is not true for a NULL a: $nin [v, null]. */
		bson_append_array_begin(&sub, "$nin", -1, &arr);
		rc = mg_append_value(&arr, "0", &cf, &vals[0], err);
		bson_append_null(&arr, "1", -1);
		bson_append_array_end(&sub, &arr);
	} else {
		rc = mg_append_value(&sub, mop, &cf, &vals[0], err);
	}
	bson_append_document_end(doc, &sub);
	return rc;
}

static int mg_filter(bson_t *filter, const emh_meta *m, const emh_query *q, emh_error *err)
{
	const emh_cond *c = q ? emh_query_cond(q) : NULL;
	bson_init(filter);
	if (!c)
		return 0;
	int rc = mg_cond(filter, m, c, false, err);
	if (rc)
		bson_destroy(filter);
	return rc;
}

/* ---- entity operations ---- */

static int mg_reply_count(const bson_t *reply, const char *key, int64_t *out)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it)) {
		*out = bson_iter_as_int64(&it);
		return 0;
	}
	return -1;
}

/*
 * Next generated key of collection table: an atomic findAndModify {$inc}
 * with upsert on its counter document.  Never inside the transaction (no
 * session), so concurrent transactions do not conflict on the counter; a
 * rolled back insert leaves a gap, as an SQL sequence does.
 */
static int mg_next_id(emh_conn *c, const char *table, int64_t *out, emh_error *err)
{
	mongoc_find_and_modify_opts_t *fm;
	bson_t query = BSON_INITIALIZER, update = BSON_INITIALIZER, inc, reply;
	bson_error_t e;
	bson_iter_t it, val;
	int rc = 0;

	if (!c->counters) {
		c->counters = mongoc_client_get_collection(c->client, c->dc->database, MG_COUNTERS);
		if (!c->counters)
			return emh_error_set(err, EMH_ENOMEM, "out of memory");
	}
	fm = mongoc_find_and_modify_opts_new();
	if (!fm)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	BSON_APPEND_UTF8(&query, "_id", table);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
	BSON_APPEND_INT64(&inc, "seq", 1);
	bson_append_document_end(&update, &inc);
	mongoc_find_and_modify_opts_set_update(fm, &update);
	mongoc_find_and_modify_opts_set_flags(fm, MONGOC_FIND_AND_MODIFY_UPSERT | MONGOC_FIND_AND_MODIFY_RETURN_NEW);
	for (int attempt = 0;; attempt++) {
		if (mongoc_collection_find_and_modify_with_opts(c->counters, &query, fm, &reply, &e))
			break;
		/* Two first upserts of the same counter race on its _id: retry. */
		if (mg_is_dup(&e) && attempt < 3) {
			bson_destroy(&reply);
			continue;
		}
		rc = mg_fail(c->dc, err, &e, &reply, "key generation", MG_COUNTERS);
		bson_destroy(&reply);
		goto out;
	}
	if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
	    bson_iter_recurse(&it, &val) && bson_iter_find(&val, "seq") && BSON_ITER_HOLDS_NUMBER(&val))
		*out = bson_iter_as_int64(&val);
	else
		rc = emh_error_set(err, EMH_EDRIVER, "key generation for '%s': no counter in the reply", table);
	bson_destroy(&reply);
out:
	mongoc_find_and_modify_opts_destroy(fm);
	bson_destroy(&query);
	bson_destroy(&update);
	return rc;
}

static bool mg_dup_on_id(const bson_error_t *e)
{
	char index[128];
	mg_dup_index(e, index, sizeof index);
	return strcmp(index, "_id_") == 0;
}

static int mg_insert(emh_conn *c, const emh_meta *m, const emh_value *vals, emh_value *key, emh_error *err)
{
	const emh_entity *e = m->entity;
	const emh_field *kf = &e->fields[m->pk];
	mongoc_collection_t *coll;
	bool generate = vals[m->pk].is_null;
	emh_value k = vals[m->pk];
	int rc;

	if ((rc = mg_coll_get(c, m, &coll, err)))
		return rc;
	if (generate && !m->generated)
		return emh_error_set(err, EMH_EINVAL, "entity '%s': primary key '%s' is null", e->name, kf->name);

	/* A generated key can meet a document inserted with an explicit key: a
	 * duplicate on _id then takes the next number. */
	for (int attempt = 0;; attempt++) {
		bson_t doc = BSON_INITIALIZER, opts, reply;
		bson_error_t be;

		if (generate) {
			int64_t id = 0;
			if ((rc = mg_next_id(c, e->table, &id, err)))
				return rc;
			if (kf->type == EMH_T_INT32) {
				if (id > INT32_MAX)
					return emh_error_set(err, EMH_EINVAL, "entity '%s': generated key %" PRId64
							     " overflows int32", e->name, id);
				k = emh_v_int32((int32_t)id);
			} else {
				k = emh_v_int64(id);
			}
		}
		rc = mg_append_value(&doc, "_id", kf, &k, err);
		for (size_t i = 0; i < e->nfields && !rc; i++) {
			const emh_field *f = &e->fields[i];
			if ((int)i == m->pk || (vals[i].is_null && mg_null_absent(f)))
				continue;
			rc = mg_append_value(&doc, f->column, f, &vals[i], err);
		}
		if (!rc)
			rc = mg_opts(c, &opts, err);
		if (rc) {
			bson_destroy(&doc);
			return rc;
		}
		bool ok = mongoc_collection_insert_one(coll, &doc, &opts, &reply, &be);
		bson_destroy(&doc);
		bson_destroy(&opts);
		if (ok) {
			bson_destroy(&reply);
			break;
		}
		if (generate && !c->in_txn && mg_is_dup(&be) && mg_dup_on_id(&be) && attempt < MG_KEY_RETRIES) {
			bson_destroy(&reply);
			continue;
		}
		rc = mg_fail(c->dc, err, &be, &reply, "insert", e->table);
		bson_destroy(&reply);
		return rc;
	}
	if (key)
		*key = k;
	return 0;
}

static int mg_update(emh_conn *c, const emh_meta *m, const emh_value *vals, uint64_t mask, emh_error *err)
{
	const emh_entity *e = m->entity;
	mongoc_collection_t *coll;
	bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, set, unset, opts, reply;
	bson_error_t be;
	bool have_set = false, have_unset = false, ok;
	int64_t matched = 0;
	int rc;

	if ((rc = mg_coll_get(c, m, &coll, err)))
		goto out_filter;
	if ((rc = mg_append_value(&filter, "_id", &e->fields[m->pk], &vals[m->pk], err)))
		goto out_filter;
	for (size_t i = 0; i < e->nfields; i++)
		if ((int)i != m->pk && (mask & (UINT64_C(1) << i))) {
			if (vals[i].is_null && mg_null_absent(&e->fields[i]))
				have_unset = true;
			else
				have_set = true;
		}
	if (have_set) {
		bson_append_document_begin(&update, "$set", -1, &set);
		for (size_t i = 0; i < e->nfields && !rc; i++) {
			const emh_field *f = &e->fields[i];
			if ((int)i == m->pk || !(mask & (UINT64_C(1) << i)) || (vals[i].is_null && mg_null_absent(f)))
				continue;
			rc = mg_append_value(&set, f->column, f, &vals[i], err);
		}
		bson_append_document_end(&update, &set);
	}
	if (have_unset) {
		bson_append_document_begin(&update, "$unset", -1, &unset);
		for (size_t i = 0; i < e->nfields; i++)
			if ((int)i != m->pk && (mask & (UINT64_C(1) << i)) && vals[i].is_null &&
			    mg_null_absent(&e->fields[i]))
				bson_append_utf8(&unset, e->fields[i].column, -1, "", 0);
		bson_append_document_end(&update, &unset);
	}
	if (rc || (rc = mg_opts(c, &opts, err)))
		goto out_filter;
	if (!have_set && !have_unset) {
		/* Nothing changed: still say whether the document exists. */
		bson_append_int64(&opts, "limit", -1, 1);
		matched = mongoc_collection_count_documents(coll, &filter, &opts, NULL, &reply, &be);
		ok = matched >= 0;
	} else {
		ok = mongoc_collection_update_one(coll, &filter, &update, &opts, &reply, &be);
		if (ok && mg_reply_count(&reply, "matchedCount", &matched))
			matched = 1;
	}
	bson_destroy(&opts);
	if (!ok)
		rc = mg_fail(c->dc, err, &be, &reply, "update", e->table);
	else if (matched == 0)
		rc = emh_error_set(err, EMH_ENOTFOUND, "update of '%s': no document with that key", e->table);
	bson_destroy(&reply);
out_filter:
	bson_destroy(&filter);
	bson_destroy(&update);
	return rc;
}

static int mg_remove(emh_conn *c, const emh_meta *m, const emh_value *key, emh_error *err)
{
	const emh_entity *e = m->entity;
	mongoc_collection_t *coll;
	bson_t filter = BSON_INITIALIZER, opts, reply;
	bson_error_t be;
	int rc;

	if ((rc = mg_coll_get(c, m, &coll, err)) ||
	    (rc = mg_append_value(&filter, "_id", &e->fields[m->pk], key, err)) || (rc = mg_opts(c, &opts, err))) {
		bson_destroy(&filter);
		return rc;
	}
	/* Deleting a document that is already gone succeeds, as an SQL DELETE
	 * of no row does. */
	if (!mongoc_collection_delete_one(coll, &filter, &opts, &reply, &be))
		rc = mg_fail(c->dc, err, &be, &reply, "delete", e->table);
	bson_destroy(&reply);
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

static int mg_find(emh_conn *c, const emh_meta *m, const emh_query *q, emh_rowsink *sink, emh_error *err)
{
	const emh_entity *e = m->entity;
	mongoc_collection_t *coll;
	mongoc_cursor_t *cur;
	const bson_t *doc;
	bson_t filter, opts;
	bson_error_t be;
	int64_t limit = q ? emh_query_limit(q) : -1, offset = q ? emh_query_offset(q) : -1;
	int rc;

	if ((rc = mg_coll_get(c, m, &coll, err)))
		return rc;
	if ((rc = mg_filter(&filter, m, q, err)))
		return rc;
	if (limit == 0) { /* Mongo reads limit 0 as "no limit" */
		bson_destroy(&filter);
		return 0;
	}
	if ((rc = mg_opts(c, &opts, err))) {
		bson_destroy(&filter);
		return rc;
	}
	size_t norder = q ? emh_query_norder(q) : 0;
	if (norder) {
		bson_t sort;
		bool by_key = false;
		bson_append_document_begin(&opts, "sort", -1, &sort);
		for (size_t i = 0; i < norder; i++) {
			int fi;
			bool desc;
			char pbuf[80];
			emh_query_order(q, i, &fi, &desc);
			if (fi < 0 || (size_t)fi >= e->nfields)
				continue;
			by_key |= fi == m->pk;
			bson_append_int32(&sort, mg_path(m, fi, true, pbuf, sizeof pbuf), -1, desc ? -1 : 1);
		}
		/* A total order, so that offset/limit pages are stable. */
		if (!by_key)
			bson_append_int32(&sort, "_id", -1, 1);
		bson_append_document_end(&opts, &sort);
	}
	if (offset > 0)
		bson_append_int64(&opts, "skip", -1, offset);
	if (limit > 0)
		bson_append_int64(&opts, "limit", -1, limit);
	cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
	bson_destroy(&filter);
	bson_destroy(&opts);
	while (!rc && mongoc_cursor_next(cur, &doc))
		rc = mg_deliver(doc, m, sink, err);
	if (!rc && mongoc_cursor_error_document(cur, &be, &doc))
		rc = mg_fail(c->dc, err, &be, doc, "find", e->table);
	mongoc_cursor_destroy(cur);
	return rc;
}

static int mg_count(emh_conn *c, const emh_meta *m, const emh_query *q, int64_t *n, emh_error *err)
{
	mongoc_collection_t *coll;
	bson_t filter, opts, reply;
	bson_error_t be;
	int rc;

	if ((rc = mg_coll_get(c, m, &coll, err)) || (rc = mg_filter(&filter, m, q, err)))
		return rc;
	if ((rc = mg_opts(c, &opts, err))) {
		bson_destroy(&filter);
		return rc;
	}
	*n = mongoc_collection_count_documents(coll, &filter, &opts, NULL, &reply, &be);
	if (*n < 0)
		rc = mg_fail(c->dc, err, &be, &reply, "count", m->entity->table);
	bson_destroy(&reply);
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

/* ---- schema ---- */

static int mg_run_command(emh_conn *c, const bson_t *cmd, bool use_session, bson_t *reply, bson_error_t *be)
{
	bson_t opts;
	bool ok;
	bson_init(&opts);
	if (use_session && c->in_txn && !mongoc_client_session_append(c->session, &opts, be)) {
		bson_destroy(&opts);
		bson_init(reply);
		return -1;
	}
	ok = mongoc_client_read_write_command_with_opts(c->client, c->dc->database, cmd, NULL, &opts, reply, be);
	bson_destroy(&opts);
	return ok ? 0 : -1;
}

/* Create one index; an existing one of that name with other keys/options is EMH_ESCHEMA. */
static int mg_create_index(emh_conn *c, const emh_meta *m, const char *name, const char *const *paths,
			   size_t npaths, bool unique, bool sparse, const char *column, emh_error *err)
{
	const char *table = m->entity->table;
	bson_t cmd = BSON_INITIALIZER, arr, idx, key, reply;
	bson_error_t be;
	int rc = 0;

	BSON_APPEND_UTF8(&cmd, "createIndexes", table);
	bson_append_array_begin(&cmd, "indexes", -1, &arr);
	bson_append_document_begin(&arr, "0", -1, &idx);
	bson_append_document_begin(&idx, "key", -1, &key);
	for (size_t i = 0; i < npaths; i++)
		bson_append_int32(&key, paths[i], -1, 1);
	bson_append_document_end(&idx, &key);
	BSON_APPEND_UTF8(&idx, "name", name);
	if (unique)
		BSON_APPEND_BOOL(&idx, "unique", true);
	if (sparse)
		BSON_APPEND_BOOL(&idx, "sparse", true);
	bson_append_document_end(&arr, &idx);
	bson_append_array_end(&cmd, &arr);
	if (mg_run_command(c, &cmd, false, &reply, &be)) {
		if (be.code == MG_E_INDEX_OPTIONS_CONFLICT || be.code == MG_E_INDEX_KEY_SPECS_CONFLICT)
			rc = emh_error_set(err, EMH_ESCHEMA,
					   "collection '%s' column '%s': existing index '%s' differs (%s)", table,
					   column, name, be.message);
		else if (mg_is_dup(&be))
			rc = emh_error_set(err, EMH_ESCHEMA,
					   "collection '%s' column '%s': cannot create unique index '%s': "
					   "duplicate values exist", table, column, name);
		else
			rc = mg_fail(c->dc, err, &be, &reply, "create index", table);
		if (err && rc == EMH_ESCHEMA)
			err->native = (int)be.code;
	}
	bson_destroy(&reply);
	bson_destroy(&cmd);
	return rc;
}

static int mg_sync(emh_conn *c, const emh_meta *m, emh_error *err)
{
	const emh_entity *e = m->entity;
	mongoc_collection_t *coll;
	bson_t cmd = BSON_INITIALIZER, reply;
	bson_error_t be;
	int rc;

	if ((rc = mg_coll_get(c, m, &coll, err)))
		return rc;
	BSON_APPEND_UTF8(&cmd, "create", e->table);
	if (mg_run_command(c, &cmd, false, &reply, &be) && be.code != MG_E_NAMESPACE_EXISTS)
		rc = mg_fail(c->dc, err, &be, &reply, "create collection", e->table);
	bson_destroy(&reply);
	bson_destroy(&cmd);
	if (rc)
		return rc;

	for (size_t i = 0; i < e->nfields && !rc; i++) {
		const emh_field *f = &e->fields[i];
		char path[80], name[96];
		const char *paths[1];
		if ((int)i == m->pk || !(f->flags & (EMH_F_UNIQUE | EMH_F_INDEXED)))
			continue;
		paths[0] = mg_path(m, (int)i, true, path, sizeof path);
		snprintf(name, sizeof name, "%s_1", paths[0]);
		bool unique = f->flags & EMH_F_UNIQUE;
		rc = mg_create_index(c, m, name, paths, 1, unique, unique && mg_null_absent(f), f->column, err);
	}
	for (size_t i = 0; i < e->nindexes && !rc; i++) {
		const emh_index *ix = &e->indexes[i];
		const char *paths[EMH_ENTITY_MAX_FIELDS];
		char bufs[EMH_ENTITY_MAX_FIELDS][80];
		size_t n = 0;
		for (const char *const *fn = ix->fields; *fn && n < EMH_ENTITY_MAX_FIELDS; fn++) {
			int fi = emh_entity_field_index(e, *fn);
			if (fi < 0)
				return emh_error_set(err, EMH_EINVAL, "index '%s' of '%s': no field '%s'", ix->name,
						     e->name, *fn);
			paths[n] = mg_path(m, fi, true, bufs[n], sizeof bufs[n]);
			n++;
		}
		rc = mg_create_index(c, m, ix->name, paths, n, ix->unique, false, ix->fields[0] ? ix->fields[0] : "",
				     err);
	}
	return rc;
}

/*
 * Raw commands: text holds one or more JSON command documents (extended JSON
 * allowed: these are the user's own commands), run in order on the
 * context's database.  All are parsed before any runs.  A {"drop": ...} of a
 * collection that does not exist succeeds.
 */
static int mg_execute(emh_conn *c, const char *text, emh_error *err)
{
	bson_json_reader_t *r;
	bson_t *cmds = NULL;
	size_t n = 0, cap = 0;
	bson_error_t be;
	int rc = 0, got;

	r = bson_json_data_reader_new(false, 0);
	if (!r)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	bson_json_data_reader_ingest(r, (const uint8_t *)text, strlen(text));
	for (;;) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			bson_t *v = realloc(cmds, ncap * sizeof *v);
			if (!v) {
				rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
				goto out;
			}
			cmds = v;
			cap = ncap;
		}
		bson_init(&cmds[n]);
		got = bson_json_reader_read(r, &cmds[n], &be);
		if (got == 1) {
			n++;
			continue;
		}
		bson_destroy(&cmds[n]);
		if (got < 0)
			rc = emh_error_set(err, EMH_EINVAL, "invalid json command: %s", be.message);
		break;
	}
	if (!rc && n == 0)
		rc = emh_error_set(err, EMH_EINVAL, "no json command document in the text");
	for (size_t i = 0; i < n && !rc; i++) {
		bson_t reply;
		bson_iter_t it;
		if (mg_run_command(c, &cmds[i], true, &reply, &be)) {
			bool drop = bson_iter_init(&it, &cmds[i]) && bson_iter_next(&it) &&
				    strcmp(bson_iter_key(&it), "drop") == 0;
			if (!(drop && be.code == MG_E_NAMESPACE_NOT_FOUND))
				rc = mg_fail(c->dc, err, &be, &reply, "command", NULL);
		}
		bson_destroy(&reply);
	}
out:
	for (size_t i = 0; i < n; i++)
		bson_destroy(&cmds[i]);
	free(cmds);
	bson_json_reader_destroy(r);
	return rc;
}

/* ---- transactions (replica set / mongos only) ---- */

static int mg_begin(emh_conn *c, emh_error *err)
{
	bson_error_t be;
	if (!(c->caps & EMH_CAP_TRANSACTIONS))
		return emh_error_set(err, EMH_EUNSUPPORTED,
				     "the mongodb server is standalone: transactions need a replica set or mongos");
	if (c->in_txn)
		return emh_error_set(err, EMH_ESTATE, "a transaction is already open (no savepoints on mongo)");
	if (!c->session) {
		c->session = mongoc_client_start_session(c->client, NULL, &be);
		if (!c->session)
			return mg_fail(c->dc, err, &be, NULL, "start session", NULL);
	}
	if (!mongoc_client_session_start_transaction(c->session, NULL, &be))
		return mg_fail(c->dc, err, &be, NULL, "start transaction", NULL);
	c->in_txn = true;
	return 0;
}

static int mg_commit(emh_conn *c, emh_error *err)
{
	bson_t reply;
	bson_error_t be;
	int rc = 0;
	if (!c->in_txn)
		return emh_error_set(err, EMH_ESTATE, "no open transaction");
	c->in_txn = false;
	if (!mongoc_client_session_commit_transaction(c->session, &reply, &be))
		rc = mg_fail(c->dc, err, &be, &reply, "commit", NULL);
	bson_destroy(&reply);
	return rc;
}

static int mg_rollback(emh_conn *c, emh_error *err)
{
	bson_error_t be;
	if (!c->in_txn)
		return emh_error_set(err, EMH_ESTATE, "no open transaction");
	c->in_txn = false;
	if (!mongoc_client_session_abort_transaction(c->session, &be))
		return mg_fail(c->dc, err, &be, NULL, "rollback", NULL);
	return 0;
}

/* ---- descriptor ---- */

static const char *const mg_schemes[] = {"mongodb", "mongodb+srv", NULL};

/* No default where the url's own option would otherwise apply (host, port, timeouts, appName). */
static const emh_param_spec mg_params[] = {
	{.key = "host", .kind = EMH_PARAM_STRING, .help = "server host name or address, without url (unset: 127.0.0.1)"},
	{.key = "port", .kind = EMH_PARAM_INT, .min = 1, .max = 65535,
	 .help = "server port, without url (unset: 27017)"},
	{.key = "user", .kind = EMH_PARAM_STRING, .help = "user name (none: no authentication)"},
	{.key = "database", .kind = EMH_PARAM_STRING, .help = "database (unset: the url's, else \"emh\")"},
	{.key = "auth_source", .kind = EMH_PARAM_STRING, .help = "database holding the user (unset: MongoDB's rule)"},
	{.key = "server_selection_timeout_ms", .kind = EMH_PARAM_INT, .min = 0, .max = INT32_MAX,
	 .help = "how long an operation waits for a usable server before EMH_EUNAVAILABLE (unset: the url's, else 2000)"},
	{.key = "connect_timeout_ms", .kind = EMH_PARAM_INT, .min = 0, .max = INT32_MAX,
	 .help = "TCP connect timeout (unset: libmongoc's, 10000)"},
	{.key = "app_name", .kind = EMH_PARAM_STRING, .help = "client name shown in the server's logs (unset: \"emhost\")"},
#define MG_URI_OPTION(k) {.key = k, .kind = EMH_PARAM_STRING, .help = "MongoDB connection string option " k}
	MG_URI_OPTION("replicaSet"), MG_URI_OPTION("authSource"), MG_URI_OPTION("authMechanism"),
	MG_URI_OPTION("appName"), MG_URI_OPTION("compressors"), MG_URI_OPTION("w"),
	MG_URI_OPTION("readPreference"), MG_URI_OPTION("tls"), MG_URI_OPTION("directConnection"),
	MG_URI_OPTION("retryWrites"), MG_URI_OPTION("retryReads"), MG_URI_OPTION("journal"),
	MG_URI_OPTION("serverSelectionTimeoutMS"), MG_URI_OPTION("connectTimeoutMS"),
	MG_URI_OPTION("socketTimeoutMS"), MG_URI_OPTION("heartbeatFrequencyMS"),
	MG_URI_OPTION("localThresholdMS"), MG_URI_OPTION("maxIdleTimeMS"), MG_URI_OPTION("wtimeoutMS"),
	MG_URI_OPTION("tlsCAFile"), MG_URI_OPTION("tlsCertificateKeyFile"),
	MG_URI_OPTION("tlsAllowInvalidCertificates"), MG_URI_OPTION("tlsAllowInvalidHostnames"),
	MG_URI_OPTION("tlsInsecure"), MG_URI_OPTION("zlibCompressionLevel"),
#undef MG_URI_OPTION
	{.key = NULL},
};

EMH_DRIVER_EXPORT const emh_driver emh_driver_descriptor = {
	EMH_DRIVER_HEADER,
	.name = "mongo",
	.version = "1.0",
	.description = "MongoDB through libmongoc (transactions on replica sets and mongos)",
	.caps = EMH_CAP_TRANSACTIONS | EMH_CAP_ATOMIC_FLUSH,
	.url_schemes = mg_schemes,
	.url_form = EMH_URL_NETWORK, /* EMH_URL_WHOLE once the driver reads the whole "url" */
	.params = mg_params,
	.context_open = mg_context_open,
	.context_close = mg_context_close,
	.connect = mg_connect,
	.disconnect = mg_disconnect,
	.ping = mg_ping,
	.execute = mg_execute,
	.sync = mg_sync,
	.conn_caps = mg_conn_caps,
	.begin = mg_begin,
	.commit = mg_commit,
	.rollback = mg_rollback,
	.insert = mg_insert,
	.update = mg_update,
	.remove = mg_remove,
	.find = mg_find,
	.count = mg_count,
};
