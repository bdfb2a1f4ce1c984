/* SPDX-License-Identifier: MIT */
/*
 * plugins/mongo/mongo.c: the MongoDB document driver, on libmongoc (one
 * client pool per context): its descriptor, the process-wide libmongoc
 * state, error mapping, contexts and connections, transactions.  The other
 * jobs have their own files (mongo_int.h lists them).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mongoc/mongoc.h>

#include <emhost/driver.h>
#include <emhost/host.h>

#include "mongo_int.h"

#define MG_DEFAULT_DB "emh"
#define MG_DEFAULT_SST_MS 2000
/* The common keys' defaults (core/cfg_check.c), should a host not fill them. */
#define MG_DEFAULT_CONNECT_MS 5000
#define MG_DEFAULT_STATEMENT_MS 30000

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

bool mg_is_dup(const bson_error_t *e)
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

bool mg_dup_on_id(const bson_error_t *e)
{
	char index[128];
	mg_dup_index(e, index, sizeof index);
	return strcmp(index, "_id_") == 0;
}

int64_t mg_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mg_call(emh_conn *c)
{
	c->call_ms = mg_now_ms();
}

/*
 * A failure that is a deadline, not a lost server (EMH_ETIMEOUT: the
 * context is not marked down, the connection is discarded alone).
 * libmongoc words a read that waited out socketTimeoutMS as it words a
 * closed connection ("socket error or timeout"), so the time the call took
 * (since since_ms, when known) tells them apart.  A server selection that
 * expired met a server that accepts connections but does not answer (or
 * closes them at once: no free slot) when the server's last error, in
 * brackets, is such an error or when there is none yet (its check was still
 * waiting); a refused connect ("Failed to connect") is a server down.
 */
static bool mg_timed_out(const emh_dctx *dc, int64_t since_ms, const bson_error_t *e, bool answered)
{
	const char *why = strchr(e->message, '[');
	if (e->domain == MONGOC_ERROR_SERVER_SELECTION)
		return !answered && (!why || (strstr(why, "timeout") && !strstr(why, "Failed to connect")));
	return e->domain == MONGOC_ERROR_STREAM && strstr(e->message, "timeout") && dc && dc->sock_ms > 0 &&
	       since_ms > 0 && mg_now_ms() - since_ms >= dc->sock_ms - 100;
}

/*
 * After a server selection failed: did every server of the client's
 * topology answer its check, none of them suiting (a replica set with no
 * primary now: its secondaries answer; a URL's replicaSet that a server is
 * not a member of: libmongoc drops that server, and an empty topology is
 * answered too)?  Then the set is unavailable, not silent.  libmongoc lists
 * only the servers that answered, so the topology's size comes from its
 * monitoring events (dc->servers).  What the topology holds goes into why
 * ("127.0.0.1:27017 RSSecondary", or what is missing).
 */
static bool mg_topology_answered(const emh_dctx *dc, mongoc_client_t *client, char *why, size_t cap)
{
	size_t n = 0, used = 0;
	why[0] = '\0';
	if (!client || !dc)
		return false;
	mongoc_server_description_t **sds = mongoc_client_get_server_descriptions(client, &n);
	bool answered = (int)n >= atomic_load(&dc->servers);
	for (size_t i = 0; i < n; i++) {
		const char *type = mongoc_server_description_type(sds[i]);
		const mongoc_host_list_t *host = mongoc_server_description_host(sds[i]);
		answered &= strcmp(type, "Unknown") != 0;
		if (used < cap) {
			int k = snprintf(why + used, cap - used, "%s%s %s", i ? ", " : "", host->host_and_port, type);
			used += k > 0 ? (size_t)k : 0;
		}
	}
	mongoc_server_descriptions_destroy_all(sds, n);
	const char *set = mongoc_uri_get_replica_set(mongoc_client_get_uri(client));
	if (n == 0 && set)
		snprintf(why, cap, "no host of the url is a member of replica set '%s'", set);
	else if (n == 0)
		snprintf(why, cap, "no host left in the topology");
	return answered;
}

/*
 * EMFILE or ENFILE when this process cannot open a socket now, else 0.
 * libmongoc reports a socket it could not create as "Failed to connect to
 * target host", without the errno, so after a connection failure the driver
 * asks the system itself: out of file descriptors is EMH_ENOFD (driver.h),
 * the database is not down.
 */
static int mg_fd_errno(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	return errno == EMFILE || errno == ENFILE ? errno : 0;
}

static int mg_fail_at(emh_dctx *dc, mongoc_client_t *client, int64_t since_ms, emh_error *err, const bson_error_t *e,
		      const bson_t *reply, const char *what, const char *coll)
{
	int code = EMH_EDRIVER, rc;
	char topo[256] = "";
	bool answered = e->domain == MONGOC_ERROR_SERVER_SELECTION && mg_topology_answered(dc, client, topo, sizeof topo);
	int fd_errno = e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM ? mg_fd_errno() : 0;
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
	} else if (fd_errno) {
		rc = emh_error_set(err, EMH_ENOFD, "cannot reach mongodb during %s%s%s%s: out of file descriptors: %s",
				   what, on, coll, on_end, e->message);
	} else if (mg_timed_out(dc, since_ms, e, answered)) {
		if (e->domain == MONGOC_ERROR_SERVER_SELECTION)
			rc = emh_error_set(err, EMH_ETIMEOUT, "no answer from mongodb during %s%s%s%s: %s", what, on,
					   coll, on_end, e->message);
		else
			rc = emh_error_set(err, EMH_ETIMEOUT, "no answer from mongodb within %s=%d during %s%s%s%s: %s",
					   dc->sock_key, (int)dc->sock_ms, what, on, coll, on_end, e->message);
	} else if (e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM ||
	    e->domain == MONGOC_ERROR_PROTOCOL ||
	    ((e->domain == MONGOC_ERROR_SERVER || e->domain == MONGOC_ERROR_QUERY) &&
	     mg_code_unavailable(e->code))) {
		rc = emh_error_set(err, EMH_EUNAVAILABLE, "mongodb unavailable during %s%s%s%s: %s%s%s%s", what, on,
				   coll, on_end, e->message, answered ? " (" : "", answered ? topo : "",
				   answered ? ")" : "");
	} else if ((e->domain == MONGOC_ERROR_SERVER || e->domain == MONGOC_ERROR_QUERY) &&
		   e->code == MG_E_MAX_TIME_EXPIRED) {
		rc = emh_error_set(err, EMH_ETIMEOUT, "%s%s%s%s: past maxTimeMS (statement_timeout_ms): %s", what, on,
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
		err->native = fd_errno ? fd_errno : (int)e->code;
		err->retryable = transient || rc == EMH_ERETRY || rc == EMH_ETIMEOUT || rc == EMH_ENOFD;
	}
	if (rc == EMH_EUNAVAILABLE && dc)
		atomic_fetch_add(&dc->down_gen, 1);
	return rc;
}

int mg_fail(emh_conn *c, emh_error *err, const bson_error_t *e, const bson_t *reply, const char *what,
	    const char *coll)
{
	return mg_fail_at(c->dc, c->client, c->call_ms, err, e, reply, what, coll);
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
				/* the mode only: tags and maxStalenessSeconds of the url stay */
				mongoc_read_prefs_t *rp = mongoc_read_prefs_copy(mongoc_uri_get_read_prefs_t(uri));
				mongoc_read_prefs_set_mode(rp, modes[k].mode);
				/* primary with the url's tags or maxStalenessSeconds: what
				 * libmongoc refuses in a url, and every call would fail */
				bool valid = mongoc_read_prefs_is_valid(rp);
				if (valid)
					mongoc_uri_set_read_prefs_t(uri, rp);
				mongoc_read_prefs_destroy(rp);
				if (!valid)
					return emh_error_set(err, EMH_ECONFIG, "mongodb option '%s' = '%s' cannot go with the "
							     "url's readPreferenceTags or maxStalenessSeconds", key, value);
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

/* The servers in the pool's topology: seeds and members found open, servers dropped close. */
static void mg_server_opening(const mongoc_apm_server_opening_t *ev)
{
	emh_dctx *dc = mongoc_apm_server_opening_get_context(ev);
	atomic_fetch_add(&dc->servers, 1);
}

static void mg_server_closed(const mongoc_apm_server_closed_t *ev)
{
	emh_dctx *dc = mongoc_apm_server_closed_get_context(ev);
	atomic_fetch_sub(&dc->servers, 1);
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
	long long sst, cto, stmt, port, pool_max;
	mongoc_uri_t *uri = NULL;
	bson_error_t e;
	emh_dctx *dc;
	int rc;

	pthread_once(&mg_once, mg_init_once);
	*out = NULL;
	if ((rc = mg_param_int(p, "server_selection_timeout_ms", -1, -1, INT32_MAX, &sst, err)) ||
	    (rc = mg_param_int(p, "connect_timeout_ms", MG_DEFAULT_CONNECT_MS, 0, INT32_MAX, &cto, err)) ||
	    (rc = mg_param_int(p, "statement_timeout_ms", MG_DEFAULT_STATEMENT_MS, 0, INT32_MAX, &stmt, err)) ||
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
	/* Single settings override the URL (EMH_URL_WHOLE): the core dropped
	 * the ones of lower precedence when it applied the URL, so a user or
	 * password still set was set on purpose (password_env, an env key). */
	if (user && *user && !mongoc_uri_set_username(uri, user)) {
		rc = emh_error_set(err, EMH_ECONFIG, "invalid user name");
		goto out_free_uri;
	}
	if (password && *password && !mongoc_uri_set_password(uri, password)) {
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
	/*
	 * The deadlines.  The URL's own options (or the same options given as
	 * settings) win over the common keys, which always have a value;
	 * server_selection_timeout_ms, the driver's own key, wins over
	 * everything.  Waiting for a usable server is part of connecting, so it
	 * is at most connect_timeout_ms (2 s when that is longer: a server that
	 * is down is reported that fast).  socketTimeoutMS ends a call whose
	 * server does not answer; 0 leaves libmongoc's (5 minutes).  A read is
	 * one attempt, not libmongoc's two (retryReads), or a read on a silent
	 * server would take twice the deadline; writes keep retryWrites, whose
	 * second attempt is what makes a write safe to retry on a replica set.
	 */
	if (sst >= 0)
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, (int32_t)sst);
	else if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
					       cto > 0 && cto < MG_DEFAULT_SST_MS ? (int32_t)cto : MG_DEFAULT_SST_MS);
	if (cto > 0 && !mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, (int32_t)cto);
	if (stmt > 0 && !mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS))
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, (int32_t)stmt);
	if (stmt > 0 && !mongoc_uri_has_option(uri, MONGOC_URI_RETRYREADS))
		mongoc_uri_set_option_as_bool(uri, MONGOC_URI_RETRYREADS, false);
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
	dc->stmt_ms = stmt;
	dc->sock_ms = mongoc_uri_get_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, 0);
	dc->sock_key = mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS) && dc->sock_ms != stmt
			       ? "socketTimeoutMS"
			       : "statement_timeout_ms";
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
	mongoc_apm_callbacks_t *apm = mongoc_apm_callbacks_new();
	if (!apm) {
		rc = emh_error_set(err, EMH_ENOMEM, "out of memory");
		goto out_free_pool;
	}
	mongoc_apm_set_server_opening_cb(apm, mg_server_opening);
	mongoc_apm_set_server_closed_cb(apm, mg_server_closed);
	bool set = mongoc_client_pool_set_apm_callbacks(dc->pool, apm, dc);
	mongoc_apm_callbacks_destroy(apm);
	if (!set) {
		rc = emh_error_set(err, EMH_EDRIVER, "cannot watch the mongodb client pool's servers");
		goto out_free_pool;
	}
	mongoc_client_pool_max_size(dc->pool, dc->max_pool);
	if (!(app_name && *app_name) && !mongoc_uri_get_appname(uri))
		mongoc_client_pool_set_appname(dc->pool, "emhost");
	mongoc_uri_destroy(uri);
	mg_log_hold(true);
	*out = dc;
	return 0;

out_free_pool:
	mongoc_client_pool_destroy(dc->pool);
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
	/* reply initialised here: a call refused before it starts (invalid
	 * read preferences) leaves it untouched, and mg_fail_at reads it */
	bson_t cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER;
	bson_error_t e;
	int64_t t0 = mg_now_ms();
	bool ok;

	BSON_APPEND_INT32(&cmd, "ping", 1);
	/* any server the client's reads may use (readPreference): not always the primary */
	ok = mongoc_client_command_simple(client, "admin", &cmd, mongoc_client_get_read_prefs(client), &reply, &e);
	bson_destroy(&cmd);
	if (!ok) {
		int rc = mg_fail_at(dc, client, t0, err, &e, &reply, "ping", NULL);
		bson_destroy(&reply);
		return rc;
	}
	bson_destroy(&reply);
	return 0;
}

/*
 * What holds on this connection's server.  Upsert (a replace with upsert on
 * _id) works on any server.  Transactions need a replica set member (hello
 * has setName) or a mongos (msg "isdbgrid"), with sessions
 * (logicalSessionTimeoutMinutes).  Read from the topology's last hello, so
 * this costs no round trip.
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
		return EMH_CAP_UPSERT | EMH_CAP_CONDITIONAL_WRITES | EMH_CAP_AGGREGATE;
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
	return EMH_CAP_UPSERT | EMH_CAP_CONDITIONAL_WRITES | EMH_CAP_AGGREGATE |
	       ((replset || mongos) && sessions ? EMH_CAP_TRANSACTIONS | EMH_CAP_ATOMIC_FLUSH : 0);
}

/*
 * What the client makes of the URL, as libmongoc parsed it (the hosts, the
 * replica set, the read preference its reads use): logged at debug level
 * once per context, so that what a replica-set URL means can be checked.
 */
static void mg_describe_client(const emh_params *p, emh_dctx *dc, mongoc_client_t *client)
{
	static const char *const modes[] = {
		[MONGOC_READ_PRIMARY] = "primary", [MONGOC_READ_SECONDARY] = "secondary",
		[MONGOC_READ_PRIMARY_PREFERRED] = "primaryPreferred",
		[MONGOC_READ_SECONDARY_PREFERRED] = "secondaryPreferred", [MONGOC_READ_NEAREST] = "nearest",
	};
	if (atomic_exchange(&dc->described, true))
		return;
	const mongoc_uri_t *uri = mongoc_client_get_uri(client);
	const mongoc_read_prefs_t *rp = mongoc_client_get_read_prefs(client);
	char hosts[512] = "";
	size_t used = 0;
	for (const mongoc_host_list_t *h = mongoc_uri_get_hosts(uri); h && used < sizeof hosts; h = h->next) {
		int k = snprintf(hosts + used, sizeof hosts - used, "%s%s", used ? "," : "", h->host_and_port);
		used += k > 0 ? (size_t)k : 0;
	}
	mongoc_read_mode_t mode = mongoc_read_prefs_get_mode(rp);
	const bson_t *tags = mongoc_read_prefs_get_tags(rp);
	char *tj = tags && bson_count_keys(tags) ? bson_array_as_json(tags, NULL) : NULL;
	const char *set = mongoc_uri_get_replica_set(uri);
	emh_params_log(p, EMH_LOG_DEBUG,
		       "mongo: client: hosts %s; replicaSet %s; readPreference %s; readPreferenceTags %s; "
		       "maxStalenessSeconds %lld; serverSelectionTimeoutMS %d",
		       hosts, set ? set : "(none)",
		       mode < sizeof modes / sizeof *modes && modes[mode] ? modes[mode] : "?", tj ? tj : "(none)",
		       (long long)mongoc_read_prefs_get_max_staleness_seconds(rp),
		       (int)mongoc_uri_get_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 0));
	bson_free(tj);
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
	mg_describe_client(p, dc, client);
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
	mg_call(c);
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
int mg_opts(emh_conn *c, bson_t *opts, emh_error *err)
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

/*
 * A read's maxTimeMS (find, count): the server stops it at
 * statement_timeout_ms by itself (error 50, EMH_ETIMEOUT), which libmongoc
 * documents for these operations.  Writes get none: socketTimeoutMS bounds
 * the wait for them.
 */
void mg_max_time(const emh_conn *c, bson_t *opts)
{
	if (c->dc->stmt_ms > 0)
		bson_append_int64(opts, "maxTimeMS", -1, c->dc->stmt_ms);
}

/* The collection handle of entity m on this connection (cached by m->id). */
int mg_coll_get(emh_conn *c, const emh_meta *m, mongoc_collection_t **out, emh_error *err)
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
	if (strcmp(e->table, MG_COUNTERS) == 0 || strcmp(e->table, MG_LOCKS) == 0)
		return emh_error_set(err, EMH_EINVAL, "entity '%s': collection '%s' is reserved by the mongo driver",
				     e->name, e->table);
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

/* ---- transactions (replica set / mongos only) ---- */

static int mg_begin(emh_conn *c, emh_error *err)
{
	bson_error_t be;

	mg_call(c);
	if (!(c->caps & EMH_CAP_TRANSACTIONS))
		return emh_error_set(err, EMH_EUNSUPPORTED,
				     "the mongodb server is standalone: transactions need a replica set or mongos");
	if (c->in_txn)
		return emh_error_set(err, EMH_ESTATE, "a transaction is already open (no savepoints on mongo)");
	if (!c->session) {
		c->session = mongoc_client_start_session(c->client, NULL, &be);
		if (!c->session)
			return mg_fail(c, err, &be, NULL, "start session", NULL);
	}
	if (!mongoc_client_session_start_transaction(c->session, NULL, &be))
		return mg_fail(c, err, &be, NULL, "start transaction", NULL);
	c->in_txn = true;
	return 0;
}

static int mg_commit(emh_conn *c, emh_error *err)
{
	bson_t reply;
	bson_error_t be;
	int rc = 0;

	mg_call(c);
	if (!c->in_txn)
		return emh_error_set(err, EMH_ESTATE, "no open transaction");
	c->in_txn = false;
	if (!mongoc_client_session_commit_transaction(c->session, &reply, &be))
		rc = mg_fail(c, err, &be, &reply, "commit", NULL);
	bson_destroy(&reply);
	return rc;
}

static int mg_rollback(emh_conn *c, emh_error *err)
{
	bson_error_t be;

	mg_call(c);
	if (!c->in_txn)
		return emh_error_set(err, EMH_ESTATE, "no open transaction");
	c->in_txn = false;
	if (!mongoc_client_session_abort_transaction(c->session, &be))
		return mg_fail(c, err, &be, NULL, "rollback", NULL);
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
	.caps = EMH_CAP_TRANSACTIONS | EMH_CAP_ATOMIC_FLUSH | EMH_CAP_UPSERT | EMH_CAP_CONDITIONAL_WRITES |
		EMH_CAP_AGGREGATE,
	.url_schemes = mg_schemes,
	.url_form = EMH_URL_WHOLE, /* libmongoc reads it: replica sets, readPreference, ... */
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
	.drop = mg_drop,
	.upsert = mg_upsert,
	.update_where = mg_update_where,
	.delete_where = mg_delete_where,
	.diff = mg_diff,
	.migrate_lock = mg_migrate_lock,
	.migrate_unlock = mg_migrate_unlock,
	.aggregate = mg_aggregate,
};
