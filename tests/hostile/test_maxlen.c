/* SPDX-License-Identifier: MIT */
/*
 * tests/hostile/test_maxlen.c: field size limits (issue 11, item 5).  A
 * text, json or blob field's max_len is enforced by every flush (insert,
 * update, upsert, the immediate repository calls) with EMH_EINVAL naming
 * the entity, the field and the limit, before anything is sent; counted in
 * bytes; only what is written is checked.  On a real SQLite file, and on
 * memdoc (a document driver) to show the core does it for every driver.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

typedef struct note {
	const char *key; /* natural key: upsert needs one */
	const char *title;
	const char *body;
	emh_blob data;
	int64_t n;
} note;
static const emh_field note_fields[] = {
	EMH_FIELD_LEN(note, key, EMH_T_TEXT, EMH_F_PK, 16),
	EMH_FIELD_LEN(note, title, EMH_T_TEXT, EMH_F_NULLABLE, 8),
	EMH_FIELD_LEN(note, body, EMH_T_JSON, EMH_F_NULLABLE, 12),
	EMH_FIELD_LEN(note, data, EMH_T_BLOB, EMH_F_NULLABLE, 4),
	EMH_FIELD(note, n, EMH_T_INT64, 0),
};
static const emh_entity note_entity = EMH_ENTITY(note, "notes", note_fields);

static int64_t count_notes(emh_host *h)
{
	emh_em *em = fixture_fork(h, NULL);
	int64_t n = -1;
	emh_error err;
	if (emh_repo_count(fixture_repo(em, &note_entity), NULL, &n, &err))
		diag("count: %s", err.message);
	emh_em_close(em);
	return n;
}

static note *new_note(emh_repo *r, const char *key, const char *title)
{
	note *x = fixture_new(r);
	x->key = key;
	x->title = title;
	return x;
}

static void t_limits(emh_host *h, const char *driver)
{
	emh_error err;
	emh_em *em = fixture_fork(h, NULL);
	emh_repo *r = fixture_repo(em, &note_entity);

	/* at the limit: stored */
	note *a = new_note(r, "a", "12345678");
	a->body = "[1,2,3,4,5]";
	a->data = (emh_blob){"\0\1\2\3", 4};
	is_int(emh_em_flush(em, &err), 0, "%s: values exactly at their limits are stored", driver);

	/* one byte over: refused before anything is sent, naming entity, field, limit */
	note *b = new_note(r, "b", "123456789");
	is_int(emh_em_flush(em, &err), EMH_EINVAL, "%s: a text one byte over its max_len is refused", driver);
	like_str(err.message, "entity 'note' (key 'b'): field 'title' is 9 bytes, longer than its max_len of 8",
		 "%s: naming the entity, the field, the size and the limit", driver);
	is_int(count_notes(h), 1, "%s: nothing was sent", driver);
	b->title = "éééé"; /* 4 characters, 8 bytes */
	is_int(emh_em_flush(em, &err), 0, "%s: counted in bytes: 4 two-byte characters fit 8", driver);
	note *c = new_note(r, "c", "ééééé");
	is_int(emh_em_flush(em, &err), EMH_EINVAL, "%s: 5 two-byte characters (10 bytes) do not", driver);
	like_str(err.message, "field 'title' is 10 bytes", "%s: bytes, not characters", driver);
	c->title = NULL;
	c->body = "{\"a\":\"12345\"}";
	is_int(emh_em_flush(em, &err), EMH_EINVAL, "%s: a json field over its limit is refused", driver);
	like_str(err.message, "field 'body' is 13 bytes, longer than its max_len of 12", "%s: naming it", driver);
	c->body = NULL;
	c->data = (emh_blob){"12345", 5};
	is_int(emh_em_flush(em, &err), EMH_EINVAL, "%s: a blob over its limit is refused", driver);
	c->data = (emh_blob){NULL, 0};
	c->key = "a-key-of-17-bytes";
	is_int(emh_em_flush(em, &err), EMH_EINVAL, "%s: so is a text primary key", driver);
	like_str(err.message, "field 'key' is 17 bytes, longer than its max_len of 16", "%s: naming it", driver);
	c->key = "c";
	is_int(emh_em_flush(em, &err), 0, "%s: NULL is no length: stored once the key fits", driver);

	/* update: the changed field is checked */
	a->title = "too long a title";
	is_int(emh_em_flush(em, &err), EMH_EINVAL, "%s: an update over the limit is refused", driver);
	a->title = "short";
	is_int(emh_em_flush(em, &err), 0, "%s: and stored once it fits", driver);
	/* the immediate calls check too */
	a->title = "too long a title";
	is_int(emh_repo_update(r, a, &err), EMH_EINVAL, "%s: emh_repo_update checks", driver);
	a->title = "short";
	note *d = new_note(r, "d", "too long a title");
	is_int(emh_repo_insert(r, d, &err), EMH_EINVAL, "%s: emh_repo_insert checks", driver);
	is_int(emh_repo_upsert(r, d, &err), EMH_EINVAL, "%s: emh_repo_upsert checks", driver);
	like_str(err.message, "field 'title' is 16 bytes, longer than its max_len of 8", "%s: naming it", driver);
	emh_em_close(em);
	is_int(count_notes(h), 3, "%s: only the rows that fit were stored", driver);
}

/* A row stored before the limit (raw SQL) stays readable, and its other fields writable. */
static void t_older_rows(emh_host *h)
{
	emh_error err;
	emh_em *em = fixture_fork(h, NULL);
	if (emh_em_execute(em, "INSERT INTO notes (key, title, n) VALUES ('old', 'a title from before the limit', 1)",
			   &err))
		bail("raw insert: %s", err.message);
	emh_repo *r = fixture_repo(em, &note_entity);
	note *o = NULL;
	is_int(emh_repo_get(r, emh_v_text("old"), (void **)&o, &err), 0, "a row longer than a limit added later loads");
	if (o) {
		o->n = 2;
		is_int(emh_em_flush(em, &err), 0, "and its other fields can be changed: only what is written is checked");
		o->title = "new";
		is_int(emh_em_flush(em, &err), 0, "its long field can be shortened");
	}
	emh_em_close(em);
}

static void t_validate(void)
{
	emh_error err;
	typedef struct bad { int64_t id; int64_t n; } bad;
	static const emh_field bad_fields[] = {
		EMH_FIELD(bad, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
		EMH_FIELD_LEN(bad, n, EMH_T_INT64, 0, 10),
	};
	static const emh_entity bad_entity = EMH_ENTITY(bad, "bad", bad_fields);
	is_int(emh_entity_validate(&bad_entity, &err), EMH_EINVAL, "max_len on an int64 field is refused");
	like_str(err.message, "entity 'bad', field 'n': max_len 10 on a int64 field", "saying where");
	is_int(emh_entity_validate(&note_entity, &err), 0, "max_len on text, json and blob is valid");
	/* a 1.0 declaration (no max_len) has zeroed padding there: no limit */
	typedef struct plain { int64_t id; const char *s; } plain;
	static const emh_field plain_fields[] = {
		EMH_FIELD(plain, id, EMH_T_INT64, EMH_F_PK),
		EMH_FIELD(plain, s, EMH_T_TEXT, 0),
	};
	is_int(plain_fields[1].max_len, 0, "a field declared without a limit has none");
}

int main(void)
{
	fixture fx;
	fixture_init(&fx, "maxlen");
	t_validate();

	const char *sync[] = {"EMH_CONTEXT_DEFAULT_SCHEMA=sync", NULL};
	const emh_entity *ents[] = {&note_entity, NULL};
	emh_host *h = fixture_sqlite_host(&fx, "maxlen.db", sync, ents);
	t_limits(h, "sqlite");
	t_older_rows(h);
	emh_host_free(h);

	/* memdoc: the example document driver, loaded as a plugin from a directory of its own */
	char dir[128], src[1200], cmd[2048];
	const char *b = getenv("EMH_BUILDDIR");
	fixture_path(&fx, "plugins", dir, sizeof dir);
	snprintf(src, sizeof src, "%s/tests/fixtures/.libs/memdoc.so", b ? b : ".");
	snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/' && chmod 755 '%s' '%s/memdoc.so'", dir, src, dir, dir,
		 dir);
	if (system(cmd) != 0)
		bail("cannot copy %s", src);
	const char *env[] = {"EMH_CONTEXT_DEFAULT_DRIVER=memdoc", "EMH_CONTEXT_DEFAULT_SCHEMA=sync", NULL};
	emh_host_opts o = {.plugin_dir = dir, .envp = env};
	emh_error err;
	if (emh_host_new(&o, &h, &err) || emh_host_register_entity(h, NULL, &note_entity, &err))
		bail("memdoc host: %s", err.message);
	t_limits(h, "memdoc");
	emh_host_free(h);

	fixture_release(&fx);
	return done_testing();
}
