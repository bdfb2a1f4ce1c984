/* SPDX-License-Identifier: MIT */
/* bench/raw_mongo.c: the benchmark's raw MongoDB side (libmongoc, a client from a client pool). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include "bench.h"

/*
 * What each workload does, matching the mongo driver (plugins/mongo/mongo.c)
 * operation for operation:
 *
 *   get_by_key  find {_id: id} limit 1 and read every field
 *   update      find {_id: id}, then update_one {_id: id} {$set: {counter}};
 *               inside a session transaction only when the server has
 *               transactions (replica set or mongos) -- emhost's flush then
 *               runs in one too; on a standalone server neither side has one
 *   insert      findAndModify {$inc: {seq: 1}} upsert on the emh_counters
 *               document of the collection (the driver's key generator),
 *               then insert_one {_id: seq, name, counter, score} (in a
 *               transaction under the same condition as update)
 *   update_where update_many {_id: id} {$inc: {counter: delta}}, alone
 */
typedef struct raw_mg {
	mongoc_client_pool_t *pool;
	mongoc_client_t *client;
	mongoc_collection_t *coll, *counters;
	mongoc_client_session_t *session;
	bool txn;
	char name[256]; /* last name read, so reading it is real work */
} raw_mg;

static void raw_mg_close(void *raw)
{
	raw_mg *r = raw;
	if (!r)
		return;
	if (r->session)
		mongoc_client_session_destroy(r->session);
	if (r->coll)
		mongoc_collection_destroy(r->coll);
	if (r->counters)
		mongoc_collection_destroy(r->counters);
	if (r->client)
		mongoc_client_pool_push(r->pool, r->client);
	if (r->pool)
		mongoc_client_pool_destroy(r->pool);
	free(r);
}

/* The server has transactions: a replica set member or a mongos (as the driver decides). */
static bool raw_mg_has_txn(mongoc_client_t *client)
{
	bson_error_t e;
	bson_iter_t it;
	bool yes = false;
	mongoc_server_description_t *sd = mongoc_client_select_server(client, true, NULL, &e);
	if (!sd)
		return false;
	const bson_t *hello = mongoc_server_description_hello_response(sd);
	if (bson_iter_init_find(&it, hello, "setName"))
		yes = true;
	if (bson_iter_init_find(&it, hello, "msg") && BSON_ITER_HOLDS_UTF8(&it) &&
	    strcmp(bson_iter_utf8(&it, NULL), "isdbgrid") == 0)
		yes = true;
	mongoc_server_description_destroy(sd);
	return yes;
}

static void *raw_mg_open(emh_host *h, const char *ctx)
{
	const char *url = emh_host_context_setting(h, ctx, "url");
	const char *host = emh_host_context_setting(h, ctx, "host");
	const char *port = emh_host_context_setting(h, ctx, "port");
	const char *user = emh_host_context_setting(h, ctx, "user");
	const char *password = emh_host_context_setting(h, ctx, "password");
	const char *database = emh_host_context_setting(h, ctx, "database");
	mongoc_uri_t *uri;
	bson_error_t e;
	bson_t cmd = BSON_INITIALIZER;
	raw_mg *r;

	mongoc_init();
	if (url && *url) {
		uri = mongoc_uri_new_with_error(url, &e);
	} else {
		uri = mongoc_uri_new_for_host_port(host ? host : "127.0.0.1", (uint16_t)(port ? atoi(port) : 27017));
		snprintf(e.message, sizeof e.message, "bad host or port");
	}
	if (!uri) {
		fprintf(stderr, "raw mongo: context '%s': %s\n", ctx ? ctx : "(default)", e.message);
		return NULL;
	}
	if (user && *user && !mongoc_uri_get_username(uri))
		mongoc_uri_set_username(uri, user);
	if (password && *password && !mongoc_uri_get_password(uri))
		mongoc_uri_set_password(uri, password);
	if (!database || !*database)
		database = mongoc_uri_get_database(uri);
	if (!database || !*database)
		database = "emh";
	r = calloc(1, sizeof *r);
	if (!r) {
		mongoc_uri_destroy(uri);
		return NULL;
	}
	r->pool = mongoc_client_pool_new_with_error(uri, &e);
	mongoc_uri_destroy(uri);
	if (!r->pool) {
		fprintf(stderr, "raw mongo: %s\n", e.message);
		goto out_close;
	}
	mongoc_client_pool_set_error_api(r->pool, MONGOC_ERROR_API_VERSION_2);
	r->client = mongoc_client_pool_pop(r->pool);
	BSON_APPEND_INT32(&cmd, "ping", 1);
	if (!mongoc_client_command_simple(r->client, "admin", &cmd, NULL, NULL, &e)) {
		fprintf(stderr, "raw mongo: ping: %s\n", e.message);
		goto out_close;
	}
	r->coll = mongoc_client_get_collection(r->client, database, BENCH_TABLE);
	r->counters = mongoc_client_get_collection(r->client, database, "emh_counters");
	r->txn = raw_mg_has_txn(r->client);
	if (r->txn && !(r->session = mongoc_client_start_session(r->client, NULL, &e))) {
		fprintf(stderr, "raw mongo: start session: %s\n", e.message);
		goto out_close;
	}
	bson_destroy(&cmd);
	return r;

out_close:
	bson_destroy(&cmd);
	raw_mg_close(r);
	return NULL;
}

/* find {_id: id} limit 1 (in the session's transaction when open), reading every field. */
static int raw_mg_read(raw_mg *r, int64_t id, const bson_t *opts_in)
{
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
	const bson_t *doc;
	bson_iter_t it;
	bson_error_t e;
	bench_item item = {0};
	int rc = -1;

	BSON_APPEND_INT64(&filter, "_id", id);
	if (opts_in)
		bson_concat(&opts, opts_in);
	BSON_APPEND_INT64(&opts, "limit", 1);
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(r->coll, &filter, &opts, NULL);
	if (mongoc_cursor_next(cur, &doc) && bson_iter_init(&it, doc)) {
		while (bson_iter_next(&it)) {
			const char *k = bson_iter_key(&it);
			if (strcmp(k, "_id") == 0) {
				item.id = bson_iter_as_int64(&it);
			} else if (strcmp(k, "name") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
				uint32_t n;
				const char *s = bson_iter_utf8(&it, &n);
				if (n >= sizeof r->name)
					n = sizeof r->name - 1;
				memcpy(r->name, s, n);
				r->name[n] = '\0';
				item.name = r->name;
			} else if (strcmp(k, "counter") == 0) {
				item.counter = bson_iter_as_int64(&it);
			} else if (strcmp(k, "score") == 0) {
				item.score = bson_iter_as_double(&it);
			}
		}
		rc = item.id == id && item.name ? 0 : -1;
	}
	if (mongoc_cursor_error(cur, &e)) {
		fprintf(stderr, "raw mongo: find: %s\n", e.message);
		rc = -1;
	}
	mongoc_cursor_destroy(cur);
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

static int raw_mg_get_by_key(void *raw, int64_t id)
{
	return raw_mg_read(raw, id, NULL);
}

static int raw_mg_update(void *raw, int64_t id, int64_t counter)
{
	raw_mg *r = raw;
	bson_t opts = BSON_INITIALIZER, filter = BSON_INITIALIZER, update = BSON_INITIALIZER, set, reply;
	bson_error_t e;
	int rc = -1;

	if (r->txn) {
		if (!mongoc_client_session_start_transaction(r->session, NULL, &e) ||
		    !mongoc_client_session_append(r->session, &opts, &e)) {
			fprintf(stderr, "raw mongo: begin: %s\n", e.message);
			goto out;
		}
	}
	if (raw_mg_read(r, id, &opts))
		goto out_abort;
	BSON_APPEND_INT64(&filter, "_id", id);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
	BSON_APPEND_INT64(&set, "counter", counter);
	bson_append_document_end(&update, &set);
	if (!mongoc_collection_update_one(r->coll, &filter, &update, &opts, &reply, &e)) {
		fprintf(stderr, "raw mongo: update: %s\n", e.message);
		bson_destroy(&reply);
		goto out_abort;
	}
	bson_destroy(&reply);
	if (r->txn && !mongoc_client_session_commit_transaction(r->session, NULL, &e)) {
		fprintf(stderr, "raw mongo: commit: %s\n", e.message);
		goto out;
	}
	rc = 0;
	goto out;

out_abort:
	if (r->txn)
		mongoc_client_session_abort_transaction(r->session, NULL);
out:
	bson_destroy(&opts);
	bson_destroy(&filter);
	bson_destroy(&update);
	return rc;
}

static int raw_mg_update_where(void *raw, int64_t id, int64_t delta)
{
	raw_mg *r = raw;
	bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, inc, reply;
	bson_iter_t it;
	bson_error_t e;
	int rc = -1;

	BSON_APPEND_INT64(&filter, "_id", id);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
	BSON_APPEND_INT64(&inc, "counter", delta);
	bson_append_document_end(&update, &inc);
	if (!mongoc_collection_update_many(r->coll, &filter, &update, NULL, &reply, &e))
		fprintf(stderr, "raw mongo: update_many: %s\n", e.message);
	else if (bson_iter_init_find(&it, &reply, "matchedCount") && bson_iter_as_int64(&it) == 1)
		rc = 0;
	bson_destroy(&reply);
	bson_destroy(&filter);
	bson_destroy(&update);
	return rc;
}

static int raw_mg_insert(void *raw, const char *name, int64_t counter, double score)
{
	raw_mg *r = raw;
	mongoc_find_and_modify_opts_t *fm = mongoc_find_and_modify_opts_new();
	bson_t query = BSON_INITIALIZER, update = BSON_INITIALIZER, inc, reply, doc = BSON_INITIALIZER;
	bson_t opts = BSON_INITIALIZER;
	bson_iter_t it, val;
	bson_error_t e;
	int64_t id = 0;
	int rc = -1;

	BSON_APPEND_UTF8(&query, "_id", BENCH_TABLE);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
	BSON_APPEND_INT64(&inc, "seq", 1);
	bson_append_document_end(&update, &inc);
	mongoc_find_and_modify_opts_set_update(fm, &update);
	mongoc_find_and_modify_opts_set_flags(fm, MONGOC_FIND_AND_MODIFY_UPSERT | MONGOC_FIND_AND_MODIFY_RETURN_NEW);
	if (!mongoc_collection_find_and_modify_with_opts(r->counters, &query, fm, &reply, &e)) {
		fprintf(stderr, "raw mongo: findAndModify: %s\n", e.message);
		bson_destroy(&reply);
		goto out;
	}
	if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
	    bson_iter_recurse(&it, &val) && bson_iter_find(&val, "seq"))
		id = bson_iter_as_int64(&val);
	bson_destroy(&reply);
	if (id <= 0)
		goto out;
	BSON_APPEND_INT64(&doc, "_id", id);
	BSON_APPEND_UTF8(&doc, "name", name);
	BSON_APPEND_INT64(&doc, "counter", counter);
	BSON_APPEND_DOUBLE(&doc, "score", score);
	/* emhost's flush is a transaction when the server has them: so is this one
	 * (the key generator stays outside it, as in the driver). */
	if (r->txn && (!mongoc_client_session_start_transaction(r->session, NULL, &e) ||
		       !mongoc_client_session_append(r->session, &opts, &e))) {
		fprintf(stderr, "raw mongo: begin: %s\n", e.message);
		goto out;
	}
	if (!mongoc_collection_insert_one(r->coll, &doc, &opts, NULL, &e)) {
		fprintf(stderr, "raw mongo: insert: %s\n", e.message);
		if (r->txn)
			mongoc_client_session_abort_transaction(r->session, NULL);
		goto out;
	}
	if (r->txn && !mongoc_client_session_commit_transaction(r->session, NULL, &e)) {
		fprintf(stderr, "raw mongo: commit: %s\n", e.message);
		goto out;
	}
	rc = 0;
out:
	bson_destroy(&opts);
	mongoc_find_and_modify_opts_destroy(fm);
	bson_destroy(&query);
	bson_destroy(&update);
	bson_destroy(&doc);
	return rc;
}

const bench_raw_ops bench_raw_mongo = {
	.driver = "mongo",
	.open = raw_mg_open,
	.close = raw_mg_close,
	.get_by_key = raw_mg_get_by_key,
	.update = raw_mg_update,
	.insert = raw_mg_insert,
	.update_where = raw_mg_update_where,
};
