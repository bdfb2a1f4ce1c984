/* SPDX-License-Identifier: MIT */
/*
 * plugins/mongo/mongo_schema.c: an entity's collection and indexes (sync,
 * drop) and raw commands (execute).
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include <emhost/driver.h>

#include "mongo_int.h"

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

int mg_sync(emh_conn *c, const emh_meta *m, emh_error *err)
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
		char path[MG_PATH_MAX], name[MG_PATH_MAX + 16];
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
		char bufs[EMH_ENTITY_MAX_FIELDS][MG_PATH_MAX];
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
 * Drop the collection of m and its key counter, as DROP TABLE takes a
 * table's sequence with it: a collection made again numbers its keys from 1.
 * A collection that does not exist is no error.  Outside any transaction
 * (MongoDB has no transactional drop).
 */
int mg_drop(emh_conn *c, const emh_meta *m, emh_error *err)
{
	mongoc_collection_t *coll;
	bson_error_t be;
	int rc;

	if ((rc = mg_coll_get(c, m, &coll, err)))
		return rc;
	if (!mongoc_collection_drop_with_opts(coll, NULL, &be) && be.code != MG_E_NAMESPACE_NOT_FOUND)
		return mg_fail(c->dc, err, &be, NULL, "drop", m->entity->table);
	return mg_key_reset(c, m->entity->table, err);
}

/*
 * A write command (insert, update, delete ...) answers ok: 1 even when a
 * document failed: the failure is in writeErrors (or writeConcernError).
 * The first one into *be, as a server error; false when there is none.
 */
static bool mg_write_error(const bson_t *reply, bson_error_t *be)
{
	static const char *const keys[] = {"writeErrors.0", "writeConcernError"};
	for (size_t k = 0; k < 2; k++) {
		bson_iter_t it, code, msg;
		if (!bson_iter_init(&it, reply) || !bson_iter_find_descendant(&it, keys[k], &it) ||
		    !BSON_ITER_HOLDS_DOCUMENT(&it))
			continue;
		bson_iter_t sub;
		bson_iter_recurse(&it, &sub);
		code = sub;
		msg = sub;
		bson_set_error(be, MONGOC_ERROR_SERVER,
			       bson_iter_find(&code, "code") ? (uint32_t)bson_iter_as_int64(&code) : 0, "%s",
			       bson_iter_find(&msg, "errmsg") && BSON_ITER_HOLDS_UTF8(&msg) ? bson_iter_utf8(&msg, NULL)
											  : "write error");
		return true;
	}
	return false;
}

/*
 * Raw commands: text holds one or more JSON command documents (extended JSON
 * allowed: these are the user's own commands), run in order on the
 * context's database.  All are parsed before any runs.  A {"drop": ...} of a
 * collection that does not exist succeeds.
 */
int mg_execute(emh_conn *c, const char *text, emh_error *err)
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
		} else if (mg_write_error(&reply, &be)) {
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
