/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_entity.c: entity validation, the query builder's errors,
 * and the SQL the dialect helper compiles (text, parameters, caching).
 * Links the core's internals to look at compiled statements directly.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "query_int.h"
#include "sql_int.h"

#include "../tap.h"

typedef struct item {
	int64_t id;
	const char *name;
	int32_t qty;
	double price;
	bool active;
	emh_blob data;
	emh_time at;
	const char *meta;
} item;

static const emh_field item_fields[] = {
	EMH_FIELD(item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD_COL(item, name, "item_name", EMH_T_TEXT, EMH_F_UNIQUE),
	EMH_FIELD(item, qty, EMH_T_INT32, EMH_F_INDEXED),
	EMH_FIELD(item, price, EMH_T_DOUBLE, EMH_F_NULLABLE),
	EMH_FIELD(item, active, EMH_T_BOOL, 0),
	EMH_FIELD(item, data, EMH_T_BLOB, EMH_F_NULLABLE),
	EMH_FIELD(item, at, EMH_T_TIMESTAMP, EMH_F_NULLABLE),
	EMH_FIELD(item, meta, EMH_T_JSON, EMH_F_NULLABLE),
};
static const char *const by_qty_price[] = {"qty", "price", NULL};
static const emh_index item_idx[] = {{"item_qty_price", by_qty_price, true}};
static const emh_entity item_entity = EMH_ENTITY_IDX(item, "items", item_fields, item_idx);

static void ctype(const emh_meta *m, int field, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", emh_type_name(m->entity->fields[field].type));
}

static const emh_sql_dialect dq = {.quote = '"', .returning = true, .limit_all = "-1",
				   .like_escape = " ESCAPE '\\'", .column_type = ctype};
static const emh_sql_dialect pg = {.quote = '"', .numbered_params = true, .returning = true,
				   .like_escape = " ESCAPE '\\'", .column_type = ctype};

static int validate_fields(const emh_field *f, size_t n, emh_error *err)
{
	emh_entity e = {.name = "bad", .table = "bad", .size = sizeof(item), .fields = f, .nfields = n};
	return emh_entity_validate(&e, err);
}

/* ---- the statement cache: found by a hash of the shape, checked against the shape ---- */

enum { NSHAPES = 16 };

/* Query number k: each differs from the others in one thing its SQL depends on. */
static emh_query *shape_query(emh__arena *a, int k)
{
	emh_query *q = emh__query_new(a, &item_entity);
	emh_value in3[3] = {emh_v_int32(1), emh_v_int32(2), emh_v_int32(3)};
	emh_cond *ge = emh_q_ge(q, "qty", emh_v_int32(1)), *lt = emh_q_lt(q, "price", emh_v_double(2));
	switch (k) {
	case 0: emh_q_where(q, emh_q_and(q, ge, lt)); break;
	case 1: emh_q_where(q, emh_q_and(q, emh_q_gt(q, "qty", emh_v_int32(1)), lt)); break; /* operator */
	case 2: emh_q_where(q, emh_q_and(q, emh_q_ge(q, "id", emh_v_int64(1)), lt)); break; /* field */
	case 3: emh_q_where(q, emh_q_in(q, "qty", in3, 3)); break;
	case 4: emh_q_where(q, emh_q_in(q, "qty", in3, 2)); break; /* IN length */
	case 5: emh_q_where(q, emh_q_or(q, ge, lt)); break;       /* junction */
	case 6: emh_q_where(q, emh_q_not(q, emh_q_and(q, ge, lt))); break;
	case 7: emh_q_where(q, emh_q_is_null(q, "price")); break;
	case 8: emh_q_where(q, emh_q_not_null(q, "price")); break;
	case 9: emh_q_where(q, emh_q_and(q, ge, lt)); emh_q_order_by(q, "price", true); break;
	case 10: emh_q_where(q, emh_q_and(q, ge, lt)); emh_q_order_by(q, "price", false); break;
	case 11: emh_q_where(q, emh_q_and(q, ge, lt)); emh_q_limit(q, 3); break;
	case 12: emh_q_where(q, emh_q_and(q, ge, emh_q_and(q, lt, emh_q_eq(q, "active", emh_v_bool(true))))); break;
	case 13: emh_q_where(q, emh_q_and(q, emh_q_and(q, ge, lt), emh_q_eq(q, "active", emh_v_bool(true)))); break;
	case 14: emh_q_where(q, emh_q_and(q, lt, ge)); break; /* order of the children */
	case 15: emh_q_where(q, emh_q_like(q, "name", "a%")); break;
	}
	return q;
}

/* What follows WHERE in the SQL of query k. */
static const char *const shape_sql[NSHAPES] = {
	"(\"qty\" >= ? AND \"price\" < ?)",
	"(\"qty\" > ? AND \"price\" < ?)",
	"(\"id\" >= ? AND \"price\" < ?)",
	"\"qty\" IN (?, ?, ?)",
	"\"qty\" IN (?, ?)",
	"(\"qty\" >= ? OR \"price\" < ?)",
	"NOT ((\"qty\" >= ? AND \"price\" < ?))",
	"\"price\" IS NULL",
	"\"price\" IS NOT NULL",
	"(\"qty\" >= ? AND \"price\" < ?) ORDER BY \"price\" DESC",
	"(\"qty\" >= ? AND \"price\" < ?) ORDER BY \"price\" ASC",
	"(\"qty\" >= ? AND \"price\" < ?) LIMIT ?",
	"(\"qty\" >= ? AND (\"price\" < ? AND \"active\" = ?))",
	"((\"qty\" >= ? AND \"price\" < ?) AND \"active\" = ?)",
	"(\"price\" < ? AND \"qty\" >= ?)",
	"\"item_name\" LIKE ? ESCAPE '\\'",
};

/* Does st's SQL end with " WHERE " and want? */
static bool where_is(const emh_stmt *st, const char *want)
{
	const char *w = st ? strstr(st->sql, " WHERE ") : NULL;
	return w && strcmp(w + 7, want) == 0;
}

static void init_meta(emh__meta *m, emh_context *ctx)
{
	emh_error err;
	memset(m, 0, sizeof *m);
	m->ctx = ctx;
	m->pub.entity = &item_entity;
	m->pub.generated = true;
	if (emh__sql_prepare_meta(m, &dq, &err))
		bail("compile the statements: %s", err.message);
}

static void t_shapes(emh_context *ctx)
{
	emh_error err;
	emh__meta m;
	init_meta(&m, ctx);
	emh__arena a;
	emh__arena_init(&a, NULL, 0);
	const emh_stmt *st[NSHAPES];
	bool right = true, distinct = true, again = true;
	for (int k = 0; k < NSHAPES; k++) {
		st[k] = emh__sql_query_stmt(&m, &dq, shape_query(&a, k), false, &err);
		if (!where_is(st[k], shape_sql[k]))
			right = false, diag("shape %d: %s", k, st[k] ? st[k]->sql : err.message);
		for (int j = 0; j < k; j++)
			distinct &= st[j] != st[k];
	}
	for (int k = 0; k < NSHAPES; k++)
		again &= emh__sql_query_stmt(&m, &dq, shape_query(&a, k), false, &err) == st[k];
	ok(right, "%d shapes, each differing in one thing, compile to their own SQL", NSHAPES);
	ok(distinct, "no two of them share a statement");
	ok(again, "the same shape built again finds its statement");

	/* Every shape under one hash: each hit is checked against the shape,
	 * so each still gets its own SQL, and finds it again. */
	const emh_stmt *hs[NSHAPES];
	right = distinct = again = true;
	for (int k = 0; k < NSHAPES; k++) {
		hs[k] = emh__sql_query_stmt_hashed(&m, &dq, shape_query(&a, k), false, NULL, 42, &err);
		if (!where_is(hs[k], shape_sql[k]))
			right = false, diag("shape %d under one hash: %s", k, hs[k] ? hs[k]->sql : err.message);
		for (int j = 0; j < k; j++)
			distinct &= hs[j] != hs[k];
	}
	for (int k = NSHAPES - 1; k >= 0; k--)
		again &= emh__sql_query_stmt_hashed(&m, &dq, shape_query(&a, k), false, NULL, 42, &err) == hs[k];
	ok(right, "shapes forced onto one hash still compile to their own SQL");
	ok(distinct, "and share no statement");
	ok(again, "and each finds its own statement again among them");
	const emh_stmt *cnt = emh__sql_query_stmt_hashed(&m, &dq, shape_query(&a, 0), true, NULL, 42, &err);
	like_str(cnt ? cnt->sql : NULL, "SELECT COUNT(*) FROM \"items\" WHERE (", "a count under the same hash is a count");
	const emh_stmt *up = emh__sql_query_stmt_hashed(&m, &dq, shape_query(&a, 0), false, " FOR UPDATE", 42, &err);
	const emh_stmt *sh = emh__sql_query_stmt_hashed(&m, &dq, shape_query(&a, 0), false, " FOR SHARE", 42, &err);
	ok(up && sh && up != sh && up != hs[0] && strstr(up->sql, "< ?) FOR UPDATE") && strstr(sh->sql, "< ?) FOR SHARE"),
	   "lock clauses under the same hash: their own statements");
	ok(emh__sql_select_stmt(&m, &dq, shape_query(&a, 0), " FOR UPDATE", &err) ==
		   emh__sql_select_stmt(&m, &dq, shape_query(&a, 0), " FOR UPDATE", &err) &&
	   emh__sql_select_stmt(&m, &dq, shape_query(&a, 0), " FOR UPDATE", &err) != st[0],
	   "a locked select is cached apart from the plain one");

	/* A condition built by hand (uow.c's versioned write) has no shape
	 * from the builder: it is hashed and counted by walking it, and finds
	 * the statement of the same shape built by the builder. */
	emh_query *built = shape_query(&a, 12);
	emh_value vals[3] = {emh_v_int32(5), emh_v_double(1.5), emh_v_bool(true)};
	emh_cond l1 = {.op = EMH_OP_GE, .field = 2, .vals = &vals[0], .nvals = 1};
	emh_cond l2 = {.op = EMH_OP_LT, .field = 3, .vals = &vals[1], .nvals = 1};
	emh_cond l3 = {.op = EMH_OP_EQ, .field = 4, .vals = &vals[2], .nvals = 1};
	emh_cond *inner_kids[2] = {&l2, &l3};
	emh_cond inner = {.op = EMH_OP_AND, .field = -1, .kids = inner_kids, .nkids = 2};
	emh_cond *outer_kids[2] = {&l1, &inner};
	emh_cond outer = {.op = EMH_OP_AND, .field = -1, .kids = outer_kids, .nkids = 2};
	emh_query hand = {.e = &item_entity, .arena = &a, .where = &outer, .limit = -1, .offset = -1};
	ok(emh__sql_query_stmt(&m, &dq, &hand, false, &err) == st[12] && built->where->shape != 0,
	   "a condition built by hand finds the statement of its shape");
	emh_value pv[3];
	is_int(emh__query_nparams(&hand, false), 3, "its parameters counted by walking it");
	emh__query_params(&hand, false, pv);
	ok(pv[0].u.i32 == 5 && pv[1].u.d == 1.5 && pv[2].u.b, "and given in binding order");
	is_int(emh__query_nparams(built, false), 3, "the builder's count agrees");

	/* A filter (emh__query_restrict) adds a node to a built condition. */
	emh_query *r = shape_query(&a, 0);
	emh__query_restrict(r, emh_q_eq(r, "active", emh_v_bool(true)));
	const emh_stmt *rs = emh__sql_query_stmt(&m, &dq, r, false, &err);
	ok(where_is(rs, "(\"active\" = ? AND (\"qty\" >= ? AND \"price\" < ?))"), "a restricted query: its own SQL");
	is_int(emh__query_nparams(r, false), 3, "and three parameters");

	emh__sql_free_meta(&m);
	emh__arena_release(&a);
}

/* Threads looking up and adding shapes at once: readers take no lock while
 * the table grows under them. */
typedef struct shape_thread {
	emh__meta *m;
	int seed;
	bool right;
} shape_thread;

enum { NIN = 96 };

static void *shape_worker(void *arg)
{
	shape_thread *t = arg;
	emh_error err;
	emh_value in[NIN];
	for (int i = 0; i < NIN; i++)
		in[i] = emh_v_int32(i);
	t->right = true;
	for (int round = 0; round < 20; round++) {
		emh__arena a;
		emh__arena_init(&a, NULL, 0);
		for (int i = 0; i < NIN; i++) {
			int n = 1 + (i * 7 + t->seed * 13 + round) % NIN; /* every thread, every size, another order */
			emh_query *q = emh__query_new(&a, &item_entity);
			emh_q_where(q, emh_q_in(q, "qty", in, (size_t)n));
			const emh_stmt *st = emh__sql_query_stmt(t->m, &dq, q, false, &err);
			if (!st || st->nparams != n || !strstr(st->sql, " IN (")) {
				t->right = false;
				diag("IN of %d: %s", n, st ? st->sql : err.message);
			}
		}
		emh__arena_release(&a);
	}
	return NULL;
}

static void t_shapes_threads(emh_context *ctx)
{
	emh__meta m;
	init_meta(&m, ctx);
	shape_thread t[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		t[i] = (shape_thread){.m = &m, .seed = i};
		if (pthread_create(&th[i], NULL, shape_worker, &t[i]))
			bail("pthread_create");
	}
	bool right = true;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		right &= t[i].right;
	}
	ok(right, "4 threads adding and finding %d IN sizes at once: each size its own statement", NIN);
	emh__sql_free_meta(&m);
}

int main(void)
{
	emh_error err;
	is_int(emh_entity_validate(&item_entity, &err), 0, "a full entity validates");

	/* validation errors name entity and field */
	emh_field f[2] = {EMH_FIELD(item, id, EMH_T_INT64, EMH_F_PK), EMH_FIELD(item, name, EMH_T_TEXT, 0)};
	f[0].flags = 0;
	is_int(validate_fields(f, 2, &err), EMH_EINVAL, "no primary key");
	like_str(err.message, "entity 'bad' has no primary key", "said so");
	f[0].flags = EMH_F_PK;
	f[1].column = "id";
	validate_fields(f, 2, &err);
	like_str(err.message, "fields 'id' and 'name' share column 'id'", "duplicate column named");
	f[1].column = "na-me";
	validate_fields(f, 2, &err);
	like_str(err.message, "field 'name': column 'na-me' is not a valid identifier", "bad identifier named");
	f[1] = (emh_field)EMH_FIELD(item, name, EMH_T_INT64, 0);
	validate_fields(f, 2, &err);
	like_str(err.message, "field 'name': type int64 needs a member of type int64_t", "member type mismatch caught");
	f[1] = (emh_field)EMH_FIELD(item, qty, EMH_T_INT64, 0);
	validate_fields(f, 2, &err);
	like_str(err.message, "field 'qty': type int64 needs a member of type int64_t", "int32 member declared int64 caught");
	f[1] = (emh_field)EMH_FIELD(item, name, EMH_T_TEXT, EMH_F_GENERATED);
	validate_fields(f, 2, &err);
	like_str(err.message, "EMH_F_GENERATED needs an int32/int64 primary key", "generated non-key refused");
	f[1] = (emh_field)EMH_FIELD(item, name, EMH_T_TEXT, EMH_F_PK);
	validate_fields(f, 2, &err);
	like_str(err.message, "both marked EMH_F_PK", "two keys refused");
	emh_entity badtab = item_entity;
	badtab.table = "items; drop";
	is_int(emh_entity_validate(&badtab, &err), EMH_EINVAL, "a bad table name is EMH_EINVAL");
	like_str(err.message, "table name 'items; drop' is not a valid identifier", "bad table name refused");
	ok(emh_ident_valid("_a1") && !emh_ident_valid("1a") && !emh_ident_valid("") && !emh_ident_valid("a\"b"),
	   "identifier rule [A-Za-z_][A-Za-z0-9_]*");

	/* like escape */
	char buf[64];
	is_int(emh_like_escape(buf, sizeof buf, "50%_a\\b"), 10, "escaped length");
	is_str(buf, "50\\%\\_a\\\\b", "%%, _ and backslash escaped");
	char small[3] = {'Z', 'Z', 'Z'};
	emh_like_escape(small, sizeof small, "a%b");
	ok(small[0] == 'a' && small[1] == '\0', "a cut result never ends inside an escape pair");

	/* text from outside, made fit for messages */
	char tc[32];
	is_str(emh_text_clean("caf\xc3\xa9 ok", tc, sizeof tc), "caf\xc3\xa9 ok", "valid UTF-8 kept");
	is_str(emh_text_clean("a\xff" "b\nc", tc, sizeof tc), "a\\xFFb\\x0Ac", "invalid byte and newline escaped");
	is_str(emh_text_clean("\xed\xa0\x80", tc, sizeof tc), "\\xED\\xA0\\x80", "a UTF-16 surrogate is not UTF-8");
	is_str(emh_text_clean("ab\xc3\xa9", tc, 4), "ab", "cut at a character boundary");
	is_str(emh_text_clean(NULL, tc, sizeof tc), "", "NULL is empty");

	/* query builder: sticky errors, reported by the running call */
	emh__arena arena;
	emh__arena_init(&arena, NULL, 0);
	emh_query *q = emh__query_new(&arena, &item_entity);
	emh_q_where(q, emh_q_and(q, emh_q_eq(q, "nope", emh_v_int64(1)), emh_q_gt(q, "qty", emh_v_int32(2))));
	is_int(emh__query_error(q, &err), EMH_EINVAL, "unknown field kept as the query's error");
	like_str(err.message, "no field 'nope' in entity 'item' (fields: id, name, qty", "listing the fields");
	q = emh__query_new(&arena, &item_entity);
	emh_q_eq(q, "qty", emh_v_text("x"));
	emh__query_error(q, &err);
	like_str(err.message, "field 'qty' is int32; the value given is text", "type mismatch");
	q = emh__query_new(&arena, &item_entity);
	emh_q_eq(q, "qty", emh_v_int64(INT64_C(1) << 40));
	emh__query_error(q, &err);
	like_str(err.message, "does not fit int32", "int32 overflow");
	q = emh__query_new(&arena, &item_entity);
	emh_q_eq(q, "name", emh_v_null(EMH_T_TEXT));
	emh__query_error(q, &err);
	like_str(err.message, "use emh_q_is_null", "NULL comparison refused");
	q = emh__query_new(&arena, &item_entity);
	emh_q_like(q, "name", "abc\\");
	emh__query_error(q, &err);
	like_str(err.message, "lone backslash", "trailing backslash in like refused");
	q = emh__query_new(&arena, &item_entity);
	emh_q_eq(q, "meta", emh_v_json("{}"));
	emh__query_error(q, &err);
	like_str(err.message, "field 'meta' (json) can only be tested with is_null/not_null", "json equality refused");
	q = emh__query_new(&arena, &item_entity);
	emh_q_lt(q, "data", emh_v_blob("a", 1));
	emh__query_error(q, &err);
	like_str(err.message, "field 'data' (blob) supports only eq/ne", "blob ordering refused");
	emh_query *q2 = emh__query_new(&arena, &item_entity);
	q = emh__query_new(&arena, &item_entity);
	emh_q_where(q, emh_q_not(q, emh_q_is_null(q2, "price")));
	emh__query_error(q, &err);
	like_str(err.message, "belongs to another query", "condition of another query refused");
	q = emh__query_new(&arena, &item_entity);
	emh_q_limit(q, -1);
	emh__query_error(q, &err);
	like_str(err.message, "limit -1 is negative", "negative limit refused");

	/* compiled SQL */
	emh_context ctx;
	memset(&ctx, 0, sizeof ctx);
	pthread_mutex_init(&ctx.mu, NULL);
	strcpy(ctx.name, "t");
	emh__meta m;
	memset(&m, 0, sizeof m);
	m.ctx = &ctx;
	m.pub.entity = &item_entity;
	m.pub.generated = true;
	is_int(emh__sql_prepare_meta(&m, &dq, &err), 0, "statements compiled at registration");
	is_str(m.st_get->sql,
	       "SELECT \"id\", \"item_name\", \"qty\", \"price\", \"active\", \"data\", \"at\", \"meta\" FROM \"items\" WHERE \"id\" = ?",
	       "get by key");
	is_str(m.st_insert->sql,
	       "INSERT INTO \"items\" (\"item_name\", \"qty\", \"price\", \"active\", \"data\", \"at\", \"meta\") VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING \"id\"",
	       "insert with RETURNING, generated key omitted");
	is_int(m.st_insert->nparams, 7, "insert binds 7 values");
	is_str(m.st_delete->sql, "DELETE FROM \"items\" WHERE \"id\" = ?", "delete");
	const emh_stmt *u = emh__sql_update_stmt(&m, &dq, (1u << 2) | (1u << 4), &err);
	is_str(u ? u->sql : NULL, "UPDATE \"items\" SET \"qty\" = ?, \"active\" = ? WHERE \"id\" = ?", "update of changed columns only");
	ok(u == emh__sql_update_stmt(&m, &dq, (1u << 2) | (1u << 4), &err), "the same mask reuses the cached statement");

	q = emh__query_new(&arena, &item_entity);
	emh_value in[3] = {emh_v_int32(1), emh_v_int32(2), emh_v_int32(3)};
	emh_q_where(q, emh_q_or(q, emh_q_and(q, emh_q_in(q, "qty", in, 3), emh_q_like(q, "name", "a%")),
				emh_q_not(q, emh_q_is_null(q, "price"))));
	emh_q_order_by(q, "price", true);
	emh_q_order_by(q, "id", false);
	emh_q_offset(q, 20);
	const emh_stmt *s1 = emh__sql_query_stmt(&m, &dq, q, false, &err);
	is_str(s1 ? s1->sql : NULL,
	       "SELECT \"id\", \"item_name\", \"qty\", \"price\", \"active\", \"data\", \"at\", \"meta\" FROM \"items\" "
	       "WHERE ((\"qty\" IN (?, ?, ?) AND \"item_name\" LIKE ? ESCAPE '\\') OR NOT (\"price\" IS NULL)) "
	       "ORDER BY \"price\" DESC, \"id\" ASC LIMIT -1 OFFSET ?",
	       "query compiled with nesting, ordering, offset without limit");
	is_int(emh__query_nparams(q, false), 5, "five parameters: 3 IN values, the pattern, the offset");
	emh_value pv[5];
	emh__query_params(q, false, pv);
	ok(pv[0].u.i32 == 1 && pv[2].u.i32 == 3 && pv[3].u.s.len == 2 && pv[4].u.i64 == 20, "parameters in binding order");

	emh_query *same = emh__query_new(&arena, &item_entity);
	emh_value in2[3] = {emh_v_int32(7), emh_v_int32(8), emh_v_int32(9)};
	emh_q_where(same, emh_q_or(same, emh_q_and(same, emh_q_in(same, "qty", in2, 3), emh_q_like(same, "name", "zz")),
				   emh_q_not(same, emh_q_is_null(same, "price"))));
	emh_q_order_by(same, "price", true);
	emh_q_order_by(same, "id", false);
	emh_q_offset(same, 40);
	ok(emh__sql_query_stmt(&m, &dq, same, false, &err) == s1, "same shape, other values: the cached statement");
	emh_q_limit(same, 5);
	ok(emh__sql_query_stmt(&m, &dq, same, false, &err) != s1, "adding a limit is another shape");
	const emh_stmt *c = emh__sql_query_stmt(&m, &dq, same, true, &err);
	is_str(c ? c->sql : NULL,
	       "SELECT COUNT(*) FROM \"items\" WHERE ((\"qty\" IN (?, ?, ?) AND \"item_name\" LIKE ? ESCAPE '\\') OR NOT (\"price\" IS NULL))",
	       "count ignores order, limit and offset");
	emh_query *empty_in = emh__query_new(&arena, &item_entity);
	emh_q_where(empty_in, emh_q_in(empty_in, "qty", NULL, 0));
	const emh_stmt *e0 = emh__sql_query_stmt(&m, &dq, empty_in, false, &err);
	like_str(e0 ? e0->sql : NULL, "WHERE 1 = 0", "an empty IN matches nothing");

	emh__meta mp;
	memset(&mp, 0, sizeof mp);
	mp.ctx = &ctx;
	mp.pub.entity = &item_entity;
	mp.pub.generated = true;
	if (emh__sql_prepare_meta(&mp, &pg, &err))
		bail("compile the statements for numbered parameters: %s", err.message);
	emh_query *pq = emh__query_new(&arena, &item_entity);
	emh_q_where(pq, emh_q_and(pq, emh_q_ge(pq, "qty", emh_v_int32(1)), emh_q_lt(pq, "price", emh_v_double(2))));
	emh_q_limit(pq, 10);
	emh_q_offset(pq, 5);
	const emh_stmt *ps = emh__sql_query_stmt(&mp, &pg, pq, false, &err);
	like_str(ps ? ps->sql : NULL, "WHERE (\"qty\" >= $1 AND \"price\" < $2) LIMIT $3 OFFSET $4", "numbered parameters");
	ok(ps && ps->id != s1->id, "statement ids are unique within the context");

	t_shapes(&ctx);
	t_shapes_threads(&ctx);

	/* upsert: natural keys only; MySQL's form refused with another unique column */
	typedef struct kv {
		const char *k;
		const char *v;
	} kv;
	static const emh_field kv_fields[] = {EMH_FIELD(kv, k, EMH_T_TEXT, EMH_F_PK), EMH_FIELD(kv, v, EMH_T_TEXT, 0)};
	static const emh_entity kv_entity = EMH_ENTITY(kv, "kv", kv_fields);
	emh_sql_dialect oc = dq, odk = dq;
	oc.upsert = EMH_SQL_UPSERT_ON_CONFLICT;
	odk.upsert = EMH_SQL_UPSERT_ON_DUPLICATE_KEY;
	odk.quote = '`';
	emh__meta mk;
	memset(&mk, 0, sizeof mk);
	mk.ctx = &ctx;
	mk.pub.entity = &kv_entity;
	if (emh__sql_prepare_meta(&mk, &oc, &err))
		bail("compile kv for ON CONFLICT: %s", err.message);
	is_str(mk.st_upsert ? mk.st_upsert->sql : NULL,
	       "INSERT INTO \"kv\" (\"k\", \"v\") VALUES (?, ?) ON CONFLICT (\"k\") DO UPDATE SET \"v\" = excluded.\"v\"",
	       "upsert, ON CONFLICT form");
	emh__sql_free_meta(&mk);
	if (emh__sql_prepare_meta(&mk, &odk, &err))
		bail("compile kv for ON DUPLICATE KEY: %s", err.message);
	is_str(mk.st_upsert ? mk.st_upsert->sql : NULL,
	       "INSERT INTO `kv` (`k`, `v`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `v` = VALUES(`v`)",
	       "upsert, ON DUPLICATE KEY form");
	emh__sql_free_meta(&mk);
	emh__meta mi;
	memset(&mi, 0, sizeof mi);
	mi.ctx = &ctx;
	mi.pub.entity = &item_entity;
	if (emh__sql_prepare_meta(&mi, &odk, &err))
		bail("compile item for ON DUPLICATE KEY: %s", err.message);
	ok(mi.st_upsert == NULL, "no ON DUPLICATE KEY upsert for an entity with another unique column");
	emh__sql_free_meta(&mi);
	if (emh__sql_prepare_meta(&mi, &oc, &err))
		bail("compile item for ON CONFLICT: %s", err.message);
	ok(mi.st_upsert != NULL, "ON CONFLICT names the key: other unique columns still raise a conflict");
	emh__sql_free_meta(&mi);

	emh_buf ddl = EMH_BUF_INIT;
	is_int(emh_sql_create_table(&dq, &m.pub, &ddl), 0, "CREATE TABLE written");
	is_str(ddl.ptr,
	       "CREATE TABLE IF NOT EXISTS \"items\" (\"id\" int64 PRIMARY KEY, \"item_name\" text NOT NULL UNIQUE, "
	       "\"qty\" int32 NOT NULL, \"price\" double, \"active\" bool NOT NULL, \"data\" blob, \"at\" timestamp, \"meta\" json)",
	       "CREATE TABLE");
	is_int(emh_sql_index_count(&m.pub), 2, "one single-field index and one composite");
	emh_buf_reset(&ddl);
	const char *iname;
	is_int(emh_sql_create_index(&dq, &m.pub, 0, true, &ddl, &iname), 0, "CREATE INDEX written");
	is_str(ddl.ptr, "CREATE INDEX IF NOT EXISTS \"items_qty_idx\" ON \"items\" (\"qty\")", "secondary index");
	emh_buf_reset(&ddl);
	is_int(emh_sql_create_index(&dq, &m.pub, 1, false, &ddl, &iname), 0, "CREATE UNIQUE INDEX written");
	is_str(ddl.ptr, "CREATE UNIQUE INDEX \"item_qty_price\" ON \"items\" (\"qty\", \"price\")", "composite unique index");
	const char *names[] = {"ID", "item_name", "qty"}, *types[] = {"int64", "text", "int32"};
	is_int(emh_sql_check_columns(&m.pub, names, types, 3, NULL, &err), EMH_ESCHEMA, "missing column detected");
	like_str(err.message, "table 'items' exists without column 'price'", "naming table and column");
	emh_buf_release(&ddl);
	emh__sql_free_meta(&m);
	emh__sql_free_meta(&mp);
	emh__arena_release(&arena);
	pthread_mutex_destroy(&ctx.mu);
	return done_testing();
}
