/* SPDX-License-Identifier: MIT */
/*
 * tests/conformance/cf_concurrency.c: the suite's concurrency-control cases
 * (docs/concurrency.md), on every driver: version fields (conflicts on
 * update and delete, a failed or rolled back flush restoring the version,
 * timestamp versions), row locks between two forks (NOWAIT, SKIP LOCKED,
 * share locks, a locked load reloading the identity map), set-based
 * updates and deletes (affected counts, the guard, stale objects, the
 * checks of a set list, deltas past an integer field's range), the
 * retrying transaction, refresh, and isolation levels.  A case the context cannot run is printed "# SKIP not
 * applicable" with the capability that is missing, and where a capability
 * is missing the refusal itself is checked.
 *
 * SQLite is named here: its transactions exclude each other (BEGIN
 * IMMEDIATE), so a second fork's transaction would wait at its BEGIN for
 * the busy timeout; the cases that need two transactions at once are not
 * applicable there, and tests/concurrency/test_sqlite_locks.c shows the
 * waiting instead.
 */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "conformance.h"

/* ---- entities (tables conf_<pid>_<name>) ---- */

/* An int64 version. */
typedef struct cf_ver {
	int64_t id;
	const char *name;
	int64_t qty;
	int64_t version;
} cf_ver;

static const emh_field cf_ver_fields[] = {
	EMH_FIELD(cf_ver, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(cf_ver, name, EMH_T_TEXT, 0),
	EMH_FIELD(cf_ver, qty, EMH_T_INT64, 0),
	EMH_FIELD(cf_ver, version, EMH_T_INT64, EMH_F_VERSION),
};

/* A timestamp version. */
typedef struct cf_tver {
	int64_t id;
	int64_t qty;
	emh_time stamp;
} cf_tver;

static const emh_field cf_tver_fields[] = {
	EMH_FIELD(cf_tver, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(cf_tver, qty, EMH_T_INT64, 0),
	EMH_FIELD(cf_tver, stamp, EMH_T_TIMESTAMP, EMH_F_VERSION),
};

/* Stock without a version: set-based writes and locks. */
typedef struct cf_stock {
	int64_t id;
	const char *sku;
	int64_t stock;
	double price;
	const char *note;
	int32_t sold;
	int32_t rating;
} cf_stock;

static const emh_field cf_stock_fields[] = {
	EMH_FIELD(cf_stock, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(cf_stock, sku, EMH_T_TEXT, EMH_F_UNIQUE),
	EMH_FIELD(cf_stock, stock, EMH_T_INT64, 0),
	EMH_FIELD(cf_stock, price, EMH_T_DOUBLE, 0),
	EMH_FIELD(cf_stock, note, EMH_T_TEXT, EMH_F_NULLABLE),
	EMH_FIELD(cf_stock, sold, EMH_T_INT32, 0),
	EMH_FIELD(cf_stock, rating, EMH_T_INT32, EMH_F_NULLABLE),
};

enum { E_VER, E_TVER, E_STOCK, E__N };
static const char *const table_suffix[E__N] = {"ver", "tver", "stock"};

typedef struct cc {
	const suite *cx;
	char tables[E__N][64];
	emh_entity e[E__N];
	bool tx, locks, isolation, atomic; /* capabilities */
	bool serial;                       /* transactions exclude each other (SQLite) */
	int seq;                           /* for unique names */
} cc;

/* ---- helpers ---- */

static const char *st(int rc) { return rc == 0 ? "EMH_OK" : emh_status_name(rc); }

static emh_em *fork_(cc *c)
{
	emh_em *em = NULL;
	emh_error err;
	if (emh_host_fork(c->cx->h, c->cx->ctx, &em, &err))
		bail("fork of '%s': %s", c->cx->ctx, err.message);
	return em;
}

static emh_repo *repo(emh_em *em, cc *c, int t)
{
	emh_repo *r = NULL;
	emh_error err;
	if (emh_em_repo(em, &c->e[t], &r, &err))
		bail("repository of '%s': %s", c->e[t].name, err.message);
	return r;
}

static emh_query *query(emh_repo *r)
{
	emh_query *q = NULL;
	emh_error err;
	if (emh_repo_query(r, &q, &err))
		bail("query: %s", err.message);
	return q;
}

static emh_sets *sets(emh_repo *r)
{
	emh_sets *s = NULL;
	emh_error err;
	if (emh_repo_sets(r, &s, &err))
		bail("set list: %s", err.message);
	return s;
}

static void *get(emh_em *em, cc *c, int t, int64_t id)
{
	void *p = NULL;
	emh_error err;
	if (emh_repo_get(repo(em, c, t), emh_v_int64(id), &p, &err))
		bail("get %s %" PRId64 ": %s", c->e[t].name, id, err.message);
	return p;
}

/* A stored cf_ver row; its id. */
static int64_t seed_ver(cc *c, int64_t qty)
{
	emh_em *em = fork_(c);
	cf_ver *v;
	char name[32];
	emh_error err;
	if (emh_repo_new(repo(em, c, E_VER), (void **)&v, &err))
		bail("new cf_ver: %s", err.message);
	snprintf(name, sizeof name, "v%d", ++c->seq);
	v->name = name;
	v->qty = qty;
	if (emh_em_flush(em, &err))
		bail("insert cf_ver: %s", err.message);
	int64_t id = v->id;
	emh_em_close(em);
	return id;
}

/* A stored cf_stock row with that stock and sold; its id. */
static int64_t seed_stock_sold(cc *c, const char *prefix, int64_t stock, int32_t sold)
{
	emh_em *em = fork_(c);
	cf_stock *p;
	char sku[48];
	emh_error err;
	if (emh_repo_new(repo(em, c, E_STOCK), (void **)&p, &err))
		bail("new cf_stock: %s", err.message);
	snprintf(sku, sizeof sku, "%s-%d", prefix, ++c->seq);
	p->sku = sku;
	p->stock = stock;
	p->sold = sold;
	p->price = 1.0;
	if (emh_em_flush(em, &err))
		bail("insert cf_stock (stock %" PRId64 ", sold %" PRId32 "): %s", stock, sold, err.message);
	int64_t id = p->id;
	emh_em_close(em);
	return id;
}

/* A stored cf_stock row, nothing sold; its id. */
static int64_t seed_stock(cc *c, const char *prefix, int64_t stock)
{
	return seed_stock_sold(c, prefix, stock, 0);
}

/* Column values of a row read in a fresh fork. */
static cf_ver ver_row(cc *c, int64_t id)
{
	emh_em *em = fork_(c);
	cf_ver v = *(cf_ver *)get(em, c, E_VER, id);
	v.name = NULL; /* lives in the closed fork's arena */
	emh_em_close(em);
	return v;
}

static int64_t stock_of(cc *c, int64_t id)
{
	emh_em *em = fork_(c);
	int64_t s = ((cf_stock *)get(em, c, E_STOCK, id))->stock;
	emh_em_close(em);
	return s;
}

/* Bump a cf_ver row's qty by d in its own fork (another writer). */
static void bump_ver(cc *c, int64_t id, int64_t d)
{
	emh_em *em = fork_(c);
	emh_error err;
	((cf_ver *)get(em, c, E_VER, id))->qty += d;
	if (emh_em_flush(em, &err))
		bail("another fork's update of cf_ver %" PRId64 ": %s", id, err.message);
	emh_em_close(em);
}

/* ---- versions ---- */

static void t_version_basics(cc *c)
{
	emh_error err;
	emh_em *em = fork_(c);
	cf_ver *v;
	int rc = emh_repo_new(repo(em, c, E_VER), (void **)&v, &err);
	if (rc)
		bail("new: %s", err.message);
	v->name = "basics";
	v->qty = 1;
	v->version = 42; /* emhost's to set */
	rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "versions: insert of a versioned object");
	is_int(v->version, 1, "versions: insert sets the version to 1");
	is_int(ver_row(c, v->id).version, 1, "versions: and stores it");
	v->qty = 2;
	rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "versions: update");
	is_int(v->version, 2, "versions: each flushed update moves it on by one (object)");
	is_int(ver_row(c, v->id).version, 2, "versions: and in the row");
	rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "versions: a flush with nothing changed");
	is_int(ver_row(c, v->id).version, 2, "versions: writes nothing, the version stays");
	v->version = 7;
	rc = emh_em_flush(em, &err);
	expect_rc(rc, EMH_EINVAL, &err, "versions: changing the version member yourself is EMH_EINVAL");
	like_str(err.message, "version", "versions: the message names the version field");
	v->version = 2;
	emh_em_close(em);

	/* timestamps: set at insert, strictly later at each update */
	em = fork_(c);
	cf_tver *t;
	if (emh_repo_new(repo(em, c, E_TVER), (void **)&t, &err))
		bail("new cf_tver: %s", err.message);
	t->qty = 1;
	rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "versions (timestamp): insert");
	ok(t->stamp > INT64_C(1500000000000000), "versions (timestamp): insert sets it to the current time (%" PRId64 ")",
	   (int64_t)t->stamp);
	emh_time prev = t->stamp;
	bool later = true;
	for (int i = 0; i < 5; i++) { /* faster than the clock moves on, on purpose */
		t->qty++;
		if ((rc = emh_em_flush(em, &err)) != 0 || t->stamp <= prev)
			later = false;
		prev = t->stamp;
	}
	ok(later, "versions (timestamp): five quick updates, each strictly later");
	emh_em *em2 = fork_(c);
	cf_tver *t2 = get(em2, c, E_TVER, t->id);
	is_int(t2->stamp, t->stamp, "versions (timestamp): the row holds the last one, to the microsecond");
	t2->qty = 100;
	OK_RC(emh_em_flush(em2, &err), err, "versions (timestamp): another fork updates it");
	t->qty = 200;
	rc = emh_em_flush(em, &err);
	expect_rc(rc, EMH_ECONFLICT, &err, "versions (timestamp): the stale fork's update is EMH_ECONFLICT");
	emh_em_close(em2);
	emh_em_close(em);
}

static void t_version_conflicts(cc *c)
{
	emh_error err;
	int64_t id = seed_ver(c, 10);
	emh_em *a = fork_(c), *b = fork_(c);
	cf_ver *va = get(a, c, E_VER, id), *vb = get(b, c, E_VER, id);
	va->qty = 11;
	OK_RC(emh_em_flush(a, &err), err, "conflict: fork A updates the row (version 1 -> 2)");
	vb->qty = 12;
	memset(&err, 0, sizeof err);
	int rc = emh_em_flush(b, &err);
	expect_rc(rc, EMH_ECONFLICT, &err, "conflict: fork B's update of version 1 is EMH_ECONFLICT");
	ok(err.retryable, "conflict: retryable");
	like_str(err.message, "changed by someone else since it was loaded", "conflict: saying why");
	char want[96];
	snprintf(want, sizeof want, "'%s' (id %" PRId64 ")", c->e[E_VER].name, id);
	like_str(err.message, want, "conflict: naming the entity and the key");
	is_int(vb->version, 1, "conflict: B's object keeps the version it was loaded with");
	is_int(vb->qty, 12, "conflict: and its change, still pending");
	cf_ver row = ver_row(c, id);
	ok(row.qty == 11 && row.version == 2, "conflict: the row is A's (qty %" PRId64 ", version %" PRId64 ")", row.qty,
	   row.version);

	/* refresh: B starts over from the row */
	OK_RC(emh_em_refresh(b, vb, &err), err, "conflict: B refreshes its object");
	ok(vb->qty == 11 && vb->version == 2, "conflict: refresh drops B's change and loads version 2");
	vb->qty = 13;
	OK_RC(emh_em_flush(b, &err), err, "conflict: B's update on the fresh version succeeds");
	is_int(ver_row(c, id).version, 3, "conflict: version 3");

	/* delete of a changed row */
	cf_ver *va2 = va; /* A still holds version 2 */
	OK_RC(emh_em_remove(a, va2, &err), err, "conflict: A removes its (stale) object");
	rc = emh_em_flush(a, &err);
	expect_rc(rc, EMH_ECONFLICT, &err, "conflict: the delete of a row changed since is EMH_ECONFLICT");
	ok(err.retryable, "conflict: retryable too");
	is_int(ver_row(c, id).qty, 13, "conflict: the row is still there");
	OK_RC(emh_em_refresh(a, va2, &err), err, "conflict: A refreshes (cancelling its removal)");
	is_int(va2->version, 3, "conflict: at version 3");
	OK_RC(emh_em_remove(a, va2, &err), err, "conflict: A removes it again");
	OK_RC(emh_em_flush(a, &err), err, "conflict: the delete at the current version succeeds");
	emh_em_close(a);
	emh_em_close(b);
	emh_em *f = fork_(c);
	void *gone = NULL;
	rc = emh_repo_get(repo(f, c, E_VER), emh_v_int64(id), &gone, &err);
	expect_rc(rc, EMH_ENOTFOUND, &err, "conflict: the row is gone");
	emh_em_close(f);
}

static void t_version_rollback(cc *c)
{
	emh_error err;
	int64_t x = seed_ver(c, 1), y = seed_ver(c, 1);
	emh_em *em = fork_(c);
	cf_ver *vx = get(em, c, E_VER, x), *vy = get(em, c, E_VER, y);
	bump_ver(c, y, 1); /* y's row moves to version 2 under the fork */
	vx->qty = 5;
	vy->qty = 5;
	int rc = emh_em_flush(em, &err);
	expect_rc(rc, EMH_ECONFLICT, &err, "rollback: a flush of x (fine) and y (changed since) fails on y");
	is_int(vy->version, 1, "rollback: y keeps its version");
	if (c->atomic) {
		is_int(vx->version, 1, "rollback: x, flushed before y, has its version back too");
		cf_ver row = ver_row(c, x);
		ok(row.version == 1 && row.qty == 1, "rollback: and x's row is untouched (the flush was rolled back)");
	} else {
		na("rollback: x, flushed before y, has its version back too",
		   "driver '%s' has no atomic flush here (caps: %s): x stays written", c->cx->driver, c->cx->capstr);
		na("rollback: and x's row is untouched", "no atomic flush");
	}
	emh_em_close(em);

	if (!c->tx) {
		na("rollback: a rolled back transaction restores the version", "driver '%s' has no transactions here (caps: %s)",
		   c->cx->driver, c->cx->capstr);
		return;
	}
	em = fork_(c);
	vx = get(em, c, E_VER, x);
	int64_t before = vx->version;
	OK_RC(emh_em_begin(em, &err), err, "rollback: begin");
	vx->qty = 6;
	OK_RC(emh_em_flush(em, &err), err, "rollback: flush inside the transaction");
	is_int(vx->version, before + 1, "rollback: the version moved on");
	OK_RC(emh_em_rollback(em, &err), err, "rollback: roll back");
	is_int(vx->version, before, "rollback: a rolled back transaction restores the version");
	is_int(ver_row(c, x).version, before, "rollback: as the row has it");
	OK_RC(emh_em_flush(em, &err), err, "rollback: the change, pending again, flushes");
	is_int(ver_row(c, x).qty, 6, "rollback: and is stored");
	emh_em_close(em);
}

/* ---- set-based writes ---- */

static int64_t update_where_stock(emh_em *em, cc *c, int64_t id, int64_t take, int *rc, emh_error *err)
{
	emh_repo *r = repo(em, c, E_STOCK);
	emh_query *q = query(r);
	emh_sets *s = sets(r);
	int64_t n = -1;
	emh_q_where(q, emh_q_and(q, emh_q_eq(q, "id", emh_v_int64(id)), emh_q_ge(q, "stock", emh_v_int64(take))));
	emh_sets_add(s, "stock", emh_v_int64(-take));
	emh_sets_add(s, "sold", emh_v_int32((int32_t)take));
	*rc = emh_repo_update_where(r, q, s, &n, err);
	return n;
}

static void t_update_where(cc *c)
{
	emh_error err;
	int rc;
	int64_t id = seed_stock(c, "uw", 10);
	emh_em *em = fork_(c);
	int64_t takes[] = {3, 3, 3, 3}, want_affected[] = {1, 1, 1, 0};
	bool as_wanted = true;
	for (size_t i = 0; i < 4; i++) {
		int64_t n = update_where_stock(em, c, id, takes[i], &rc, &err);
		if (rc || n != want_affected[i]) {
			as_wanted = false;
			diag("  take %zu: %s affected %" PRId64 " %s", i, st(rc), n, rc ? err.message : "");
		}
	}
	ok(as_wanted, "update_where: stock = stock - 3 WHERE id = ? AND stock >= 3, four times: 1, 1, 1, then 0 "
		      "(not enough stock)");
	is_int(stock_of(c, id), 1, "update_where: 10 - 9 = 1 left, never below");
	cf_stock *p = get(em, c, E_STOCK, id);
	is_int(p->sold, 9, "update_where: the int32 column took its delta too");

	/* several rows, a value, a NULL, a double delta */
	int64_t ids[3];
	for (int i = 0; i < 3; i++)
		ids[i] = seed_stock(c, "many", 5);
	emh_repo *r = repo(em, c, E_STOCK);
	emh_query *q = query(r);
	emh_sets *s = sets(r);
	emh_q_where(q, emh_q_like(q, "sku", "many-%"));
	emh_sets_value(s, "note", emh_v_text("on sale"));
	emh_sets_add(s, "price", emh_v_double(0.5));
	int64_t n = -1;
	rc = emh_repo_update_where(r, q, s, &n, &err);
	OK_RC(rc, err, "update_where: three rows by a condition");
	is_int(n, 3, "update_where: affected 3");
	cf_stock *m0 = get(em, c, E_STOCK, ids[0]);
	ok(m0->note && strcmp(m0->note, "on sale") == 0 && m0->price == 1.5, "update_where: value and double delta stored");
	s = sets(r);
	emh_sets_value(s, "note", emh_v_null(EMH_T_TEXT));
	rc = emh_repo_update_where(r, q, s, &n, &err);
	OK_RC(rc, err, "update_where: set a nullable field to NULL");
	ok(get(em, c, E_STOCK, ids[1]) && ((cf_stock *)get(em, c, E_STOCK, ids[1]))->note == NULL,
	   "update_where: the field is NULL");
	q = query(r);
	emh_q_where(q, emh_q_eq(q, "sku", emh_v_text("no-such-sku")));
	s = sets(r);
	emh_sets_value(s, "stock", emh_v_int64(0));
	rc = emh_repo_update_where(r, q, s, &n, &err);
	OK_RC(rc, err, "update_where: no row matches");
	is_int(n, 0, "update_where: affected 0");
	emh_em_close(em);
}

/* A cf_stock row as read back by t_where_overflow. */
typedef struct ovf_row {
	int rc;
	int64_t stock;
	int32_t sold;
	char why[160];
} ovf_row;

/* The row read in a fresh fork; .rc and .why when it cannot be read (the defect this case guards against). */
static ovf_row ovf_read(cc *c, int64_t id)
{
	emh_em *em = fork_(c);
	emh_error err;
	cf_stock *p = NULL;
	ovf_row r = {.rc = emh_repo_get(repo(em, c, E_STOCK), emh_v_int64(id), (void **)&p, &err)};
	if (r.rc)
		snprintf(r.why, sizeof r.why, ": %.150s,", err.message);
	else
		r.stock = p->stock, r.sold = p->sold;
	emh_em_close(em);
	return r;
}

/* update_where stock += dstock, sold += dsold (each when non-zero) WHERE id IN (ids). */
static int ovf_add(cc *c, const int64_t *ids, size_t nids, int64_t dstock, int32_t dsold, int64_t *n, emh_error *err)
{
	emh_em *em = fork_(c);
	emh_repo *r = repo(em, c, E_STOCK);
	emh_query *q = query(r);
	emh_sets *s = sets(r);
	emh_value keys[4];
	if (nids > 4)
		bail("ovf_add: %zu keys, at most 4", nids);
	for (size_t i = 0; i < nids; i++)
		keys[i] = emh_v_int64(ids[i]);
	emh_q_where(q, emh_q_in(q, "id", keys, nids));
	if (dstock)
		emh_sets_add(s, "stock", emh_v_int64(dstock));
	if (dsold)
		emh_sets_add(s, "sold", emh_v_int32(dsold));
	*n = -1;
	int rc = emh_repo_update_where(r, q, s, n, err);
	emh_em_close(em);
	return rc;
}

/*
 * A delta that would take an integer field past its type's range: the whole
 * update_where is refused with EMH_EINVAL, as PostgreSQL refuses the overflow
 * of an int4 or int8 column, and every row stays as it was and readable.
 * Neither wrapped (int32 read back negative), nor widened to a type the field
 * cannot be read as (a document store's int64 or double), nor clamped.
 */
static void t_where_overflow(cc *c)
{
	static const struct {
		const char *name;
		int64_t stock, dstock;
		int32_t sold, dsold;
		bool int64; /* the overflow is the int64 field's */
	} cases[] = {
		{"int32 + 1 at INT32_MAX", 0, 0, INT32_MAX, 1, false},
		{"int32 - 1 at INT32_MIN", 0, 0, INT32_MIN, -1, false},
		{"int32 + INT32_MAX at 1", 0, 0, 1, INT32_MAX, false},
		{"int64 + 1 at INT64_MAX", INT64_MAX, 1, 0, 0, true},
		{"int64 - 1 at INT64_MIN", INT64_MIN, -1, 0, 0, true},
		{"int64 - 1 that fits with int32 + 1 that does not", 5, -1, INT32_MAX, 1, false},
	};
	emh_error err;
	int64_t n;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int64_t id = seed_stock_sold(c, "ovf", cases[i].stock, cases[i].sold);
		int rc = ovf_add(c, &id, 1, cases[i].dstock, cases[i].dsold, &n, &err);
		expect_rc(rc, EMH_EINVAL, &err, "overflow: update_where %s: EMH_EINVAL", cases[i].name);
		ovf_row r = ovf_read(c, id);
		ok(r.rc == 0 && r.stock == cases[i].stock && r.sold == cases[i].sold,
		   "overflow: %s: the row is unchanged and readable (%s%s stock %" PRId64 ", sold %" PRId32 ")",
		   cases[i].name, st(r.rc), r.why, r.stock, r.sold);
	}

	/*
	 * Up to the edge, not past it: stored exactly.  int32 only: the test
	 * MongoDB-wire server (CongoDB) cannot $inc an int64 beyond +-2^53 at
	 * all, so the int64 edges are in tests/mongo (a real mongod) instead.
	 */
	int64_t edge = seed_stock_sold(c, "ovf", 0, INT32_MAX - 1);
	int64_t low = seed_stock_sold(c, "ovf", 0, INT32_MIN + 1);
	OK_RC(ovf_add(c, &edge, 1, 0, 1, &n, &err), err, "overflow: int32 + 1 up to INT32_MAX exactly is no overflow");
	ovf_row r = ovf_read(c, edge);
	ok(r.rc == 0 && r.sold == INT32_MAX, "overflow: and reads back INT32_MAX (%s%s sold %" PRId32 ")", st(r.rc), r.why,
	   r.sold);
	OK_RC(ovf_add(c, &low, 1, 0, -1, &n, &err), err, "overflow: int32 - 1 down to INT32_MIN exactly");
	r = ovf_read(c, low);
	ok(r.rc == 0 && r.sold == INT32_MIN, "overflow: and reads back INT32_MIN (%s%s sold %" PRId32 ")", st(r.rc), r.why,
	   r.sold);

	/* several rows, one of which would overflow: none is changed */
	int64_t two[2] = {seed_stock_sold(c, "ovf", 1, 1), seed_stock_sold(c, "ovf", 1, INT32_MAX)};
	expect_rc(ovf_add(c, two, 2, 0, 1, &n, &err), EMH_EINVAL, &err,
		  "overflow: update_where over two rows, one of which would overflow: EMH_EINVAL");
	ovf_row a = ovf_read(c, two[0]), b = ovf_read(c, two[1]);
	ok(a.rc == 0 && a.sold == 1 && b.rc == 0 && b.sold == INT32_MAX,
	   "overflow: neither row is changed (sold %" PRId32 " and %" PRId32 "%s%s)", a.sold, b.sold, a.why, b.why);
}

static void t_stale(cc *c)
{
	emh_error err;
	int rc;
	int64_t id = seed_stock(c, "stale", 10);
	emh_em *em = fork_(c);
	cf_stock *p = get(em, c, E_STOCK, id);
	update_where_stock(em, c, id, 4, &rc, &err);
	OK_RC(rc, err, "stale: update_where in the fork that holds the object");
	is_int(p->stock, 10, "stale: the object is not changed behind your back");
	cf_stock *again = get(em, c, E_STOCK, id);
	ok(again == p, "stale: a later get returns the same object (identity)");
	is_int(p->stock, 6, "stale: reloaded from its row");

	/* with unflushed changes: kept, and only they are written */
	p->note = "mine";
	update_where_stock(em, c, id, 1, &rc, &err);
	OK_RC(rc, err, "stale: another update_where while the object has a change");
	again = get(em, c, E_STOCK, id);
	ok(again == p && p->stock == 6 && p->note && strcmp(p->note, "mine") == 0,
	   "stale: an object with unflushed changes is not reloaded (they are kept)");
	OK_RC(emh_em_flush(em, &err), err, "stale: its flush");
	emh_em *f = fork_(c);
	cf_stock *row = get(f, c, E_STOCK, id);
	ok(row->stock == 5 && row->note && strcmp(row->note, "mine") == 0,
	   "stale: writes only the changed field: stock 5 from update_where, note from the object");
	emh_em_close(f);

	/* delete_where */
	emh_repo *r = repo(em, c, E_STOCK);
	emh_query *q = query(r);
	emh_q_where(q, emh_q_eq(q, "id", emh_v_int64(id)));
	int64_t n = -1;
	rc = emh_repo_delete_where(r, q, &n, &err);
	OK_RC(rc, err, "delete_where: by key");
	is_int(n, 1, "delete_where: affected 1");
	void *gone = NULL;
	rc = emh_repo_get(r, emh_v_int64(id), &gone, &err);
	expect_rc(rc, EMH_ENOTFOUND, &err, "delete_where: a get of the deleted row's object, stale, is EMH_ENOTFOUND");
	rc = emh_repo_delete_where(r, q, &n, &err);
	ok(rc == 0 && n == 0, "delete_where: again: affected 0");
	emh_em_close(em);

	/* a set-based update moves versions on */
	int64_t vid = seed_ver(c, 1);
	emh_em *a = fork_(c), *b = fork_(c);
	cf_ver *va = get(a, c, E_VER, vid);
	emh_repo *rb = repo(b, c, E_VER);
	q = query(rb);
	emh_q_where(q, emh_q_eq(q, "id", emh_v_int64(vid)));
	emh_sets *s = sets(rb);
	emh_sets_add(s, "qty", emh_v_int64(1));
	rc = emh_repo_update_where(rb, q, s, &n, &err);
	OK_RC(rc, err, "versions: update_where on a versioned entity");
	is_int(ver_row(c, vid).version, 2, "versions: update_where moved the row's version on");
	va->qty = 50;
	rc = emh_em_flush(a, &err);
	expect_rc(rc, EMH_ECONFLICT, &err, "versions: an object loaded before it then fails its flush");
	emh_em_close(a);
	emh_em_close(b);
}

/*
 * A set-based write inside a transaction that is then rolled back: what the
 * fork read of its effects inside the level (a stale object reloaded, a row
 * loaded for the first time, a deleted row's object detached) is undone with
 * it, so the fork matches the database again (em.h).
 */
static void t_where_rollback(cc *c)
{
	emh_error err;
	int rc;
	if (!c->tx) {
		na("where rollback: a rolled back set-based write leaves no trace in the fork",
		   "driver '%s' has no transactions here (caps: %s)", c->cx->driver, c->cx->capstr);
		return;
	}
	int64_t id = seed_stock(c, "wrb", 10), other = seed_stock(c, "wrb", 10);
	emh_em *em = fork_(c);
	cf_stock *p = get(em, c, E_STOCK, id);
	OK_RC(emh_em_begin(em, &err), err, "where rollback: begin");
	update_where_stock(em, c, id, 3, &rc, &err);
	OK_RC(rc, err, "where rollback: update_where of a loaded row inside the transaction");
	update_where_stock(em, c, other, 3, &rc, &err);
	OK_RC(rc, err, "where rollback: and of a row not loaded yet");
	ok(get(em, c, E_STOCK, id) == p && p->stock == 7, "where rollback: the stale object reloads 7 inside it");
	cf_stock *o = get(em, c, E_STOCK, other);
	is_int(o->stock, 7, "where rollback: the other row loads 7 inside it");
	OK_RC(emh_em_rollback(em, &err), err, "where rollback: roll back");
	bool same = get(em, c, E_STOCK, id) == p;
	ok(same && p->stock == 10,
	   "where rollback: the reloaded object is the row's again after the rollback (stock %" PRId64 ")", p->stock);
	same = get(em, c, E_STOCK, other) == o;
	ok(same && o->stock == 10,
	   "where rollback: so is the object first loaded inside the transaction (stock %" PRId64 ")", o->stock);
	p->stock += 1;
	OK_RC(emh_em_flush(em, &err), err, "where rollback: a change after it");
	is_int(stock_of(c, id), 11, "where rollback: is made on the row as it is (10 + 1, not 7 + 1)");

	/* delete_where: the object detached inside the level is managed again */
	OK_RC(emh_em_begin(em, &err), err, "where rollback: begin (delete_where)");
	emh_repo *r = repo(em, c, E_STOCK);
	emh_query *q = query(r);
	emh_q_where(q, emh_q_eq(q, "id", emh_v_int64(id)));
	int64_t n = -1;
	OK_RC(emh_repo_delete_where(r, q, &n, &err), err, "where rollback: delete_where inside the transaction");
	void *gone = NULL;
	rc = emh_repo_get(r, emh_v_int64(id), &gone, &err);
	expect_rc(rc, EMH_ENOTFOUND, &err, "where rollback: its object's get is EMH_ENOTFOUND inside it");
	OK_RC(emh_em_rollback(em, &err), err, "where rollback: roll back");
	same = get(em, c, E_STOCK, id) == p;
	ok(same && p->stock == 11,
	   "where rollback: the row is back, and the fork's object for it is the same one, managed (stock %" PRId64 ")",
	   p->stock);
	p->stock = 12;
	OK_RC(emh_em_flush(em, &err), err, "where rollback: a change of it");
	is_int(stock_of(c, id), 12, "where rollback: is stored (not dropped as a detached object's)");
	emh_em_close(em);

	/* a version field: a flushed change, then a set-based write, then a reload, all rolled back */
	int64_t vid = seed_ver(c, 1);
	em = fork_(c);
	cf_ver *v = get(em, c, E_VER, vid);
	OK_RC(emh_em_begin(em, &err), err, "where rollback: begin (versions)");
	v->qty = 5;
	OK_RC(emh_em_flush(em, &err), err, "where rollback: flush of a change (version 1 -> 2)");
	emh_repo *rv = repo(em, c, E_VER);
	q = query(rv);
	emh_q_where(q, emh_q_eq(q, "id", emh_v_int64(vid)));
	emh_sets *s = sets(rv);
	emh_sets_add(s, "qty", emh_v_int64(100));
	OK_RC(emh_repo_update_where(rv, q, s, &n, &err), err, "where rollback: update_where qty + 100 (version 3)");
	same = get(em, c, E_VER, vid) == v;
	ok(same && v->qty == 105 && v->version == 3, "where rollback: the object reloads 105, 3");
	OK_RC(emh_em_rollback(em, &err), err, "where rollback: roll back");
	ok(v->qty == 5 && v->version == 1,
	   "where rollback: the object holds its own change again at version 1 (qty %" PRId64 ", version %" PRId64 ")",
	   v->qty, v->version);
	OK_RC(emh_em_flush(em, &err), err, "where rollback: its change, pending again, flushes");
	cf_ver row = ver_row(c, vid);
	ok(row.qty == 5 && row.version == 2,
	   "where rollback: the row has that change only (qty %" PRId64 ", version %" PRId64 ")", row.qty, row.version);
	emh_em_close(em);
}

static void t_where_errors(cc *c)
{
	emh_error err;
	emh_em *em = fork_(c);
	emh_repo *r = repo(em, c, E_STOCK), *rv = repo(em, c, E_VER);
	int64_t n;
	static const struct {
		const char *name, *field;
		bool add;
		int kind; /* 0 int64 1, 1 text, 2 NULL, 3 double */
		const char *says;
	} bad[] = {
		{"unknown field", "nope", false, 0, "no field 'nope'"},
		{"the key", "id", false, 0, "primary key"},
		{"a value of the wrong type", "stock", false, 1, "stock"},
		{"NULL in a non-nullable field", "stock", false, 2, "not nullable"},
		{"a delta on a text field", "sku", true, 0, "only int32, int64 and double"},
		{"a delta on a nullable field", "rating", true, 0, "nullable"},
		{"a double delta on an integer field", "stock", true, 3, "stock"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		emh_sets *s = sets(r);
		emh_value v = bad[i].kind == 0	 ? emh_v_int64(1)
			      : bad[i].kind == 1 ? emh_v_text("x")
			      : bad[i].kind == 2 ? emh_v_null(EMH_T_INT64)
						 : emh_v_double(0.5);
		if (bad[i].add)
			emh_sets_add(s, bad[i].field, v);
		else
			emh_sets_value(s, bad[i].field, v);
		int rc = emh_repo_update_where(r, NULL, s, &n, &err);
		if (expect_rc(rc, EMH_EINVAL, &err, "update_where refuses %s: EMH_EINVAL", bad[i].name))
			like_str(err.message, bad[i].says, "update_where: %s: saying why", bad[i].name);
	}
	emh_sets *s = sets(r);
	emh_sets_value(s, "stock", emh_v_int64(1));
	emh_sets_value(s, "stock", emh_v_int64(2));
	expect_rc(emh_repo_update_where(r, NULL, s, &n, &err), EMH_EINVAL, &err, "update_where refuses a field set twice");
	expect_rc(emh_repo_update_where(r, NULL, sets(r), &n, &err), EMH_EINVAL, &err, "update_where refuses an empty set list");
	s = sets(rv);
	emh_sets_value(s, "version", emh_v_int64(9));
	expect_rc(emh_repo_update_where(rv, NULL, s, &n, &err), EMH_EINVAL, &err, "update_where refuses the version field");
	s = sets(r);
	emh_sets_value(s, "stock", emh_v_int64(1));
	expect_rc(emh_repo_update_where(rv, NULL, s, &n, &err), EMH_EINVAL, &err,
	       "update_where refuses a set list of another entity");
	emh_query *q = query(r);
	emh_q_limit(q, 1);
	expect_rc(emh_repo_update_where(r, q, s, &n, &err), EMH_EINVAL, &err, "update_where refuses a query with a limit");
	expect_rc(emh_repo_delete_where(r, q, &n, &err), EMH_EINVAL, &err, "delete_where refuses a query with a limit");
	emh_em_close(em);

	em = fork_(c);
	if (emh_em_set_readonly(em, &err))
		bail("set_readonly: %s", err.message);
	r = repo(em, c, E_STOCK);
	s = sets(r);
	emh_sets_value(s, "stock", emh_v_int64(1));
	expect_rc(emh_repo_update_where(r, NULL, s, &n, &err), EMH_ESTATE, &err, "update_where on a read-only fork: EMH_ESTATE");
	emh_em_close(em);
}

/* ---- row locks ---- */

static int lock_get(emh_em *em, cc *c, int64_t id, int mode, int wait, void **out, emh_error *err)
{
	emh_get_opts o = {.lock = mode, .wait = wait};
	return emh_repo_get_opts(repo(em, c, E_STOCK), emh_v_int64(id), &o, out, err);
}

static void t_locks(cc *c)
{
	emh_error err;
	void *p = NULL;
	int rc;
	int64_t x = seed_stock(c, "lock", 5), y = seed_stock(c, "lock", 5);
	emh_em *a = fork_(c);
	if (!c->locks) {
		rc = c->tx ? emh_em_begin(a, &err) : 0;
		rc = rc ? rc : lock_get(a, c, x, EMH_LOCK_UPDATE, EMH_LOCK_WAIT, &p, &err);
		expect_rc(rc, EMH_EUNSUPPORTED, &err, "locks: without EMH_CAP_LOCKS (caps: %s) a locked get is EMH_EUNSUPPORTED",
		       c->cx->capstr);
		emh_em_close(a);
		return;
	}
	rc = lock_get(a, c, x, EMH_LOCK_UPDATE, EMH_LOCK_WAIT, &p, &err);
	expect_rc(rc, EMH_ESTATE, &err, "locks: a locked get outside a transaction is EMH_ESTATE");
	emh_query *q = query(repo(a, c, E_STOCK));
	emh_q_where(q, emh_q_eq(q, "id", emh_v_int64(x)));
	emh_q_lock(q, EMH_LOCK_UPDATE, EMH_LOCK_WAIT);
	int64_t n;
	expect_rc(emh_repo_count(repo(a, c, E_STOCK), q, &n, &err), EMH_EINVAL, &err, "locks: counting with a lock is EMH_EINVAL");

	/* a locked load reloads the identity map's object */
	cf_stock *ax = get(a, c, E_STOCK, x);
	emh_em *w = fork_(c);
	((cf_stock *)get(w, c, E_STOCK, x))->stock = 4;
	OK_RC(emh_em_flush(w, &err), err, "locks: another fork changes the row A has loaded");
	emh_em_close(w);
	OK_RC(emh_em_begin(a, &err), err, "locks: A begins");
	rc = lock_get(a, c, x, EMH_LOCK_UPDATE, EMH_LOCK_WAIT, &p, &err);
	OK_RC(rc, err, "locks: A's get FOR UPDATE");
	ok(p == ax && ax->stock == 4, "locks: returns A's object, reloaded from the locked row");
	emh_list l;
	OK_RC(emh_repo_find(repo(a, c, E_STOCK), q, &l, &err), err, "locks: a locked find inside the transaction");
	ok(l.count == 1 && l.items[0] == ax, "locks: finds the row, the same object");
	ax->note = "changed";
	rc = lock_get(a, c, x, EMH_LOCK_UPDATE, EMH_LOCK_WAIT, &p, &err);
	expect_rc(rc, EMH_ESTATE, &err, "locks: a locked get of an object with unflushed changes is EMH_ESTATE");
	ax->note = NULL;

	if (c->serial) {
		na("locks: NOWAIT on a row another transaction locked is EMH_ECONFLICT, retryable",
		   "SQLite transactions exclude each other (BEGIN IMMEDIATE): the lock is a no-op and a second "
		   "transaction waits at its BEGIN; tests/concurrency/test_sqlite_locks.c");
		na("locks: SKIP LOCKED leaves the locked row out", "SQLite: as above");
		na("locks: share locks", "SQLite: as above");
		emh_em_close(a);
		return;
	}
	emh_em *b = fork_(c);
	OK_RC(emh_em_begin(b, &err), err, "locks: B begins");
	memset(&err, 0, sizeof err);
	rc = lock_get(b, c, x, EMH_LOCK_UPDATE, EMH_LOCK_NOWAIT, &p, &err);
	expect_rc(rc, EMH_ECONFLICT, &err, "locks: B's get FOR UPDATE NOWAIT of the row A locked is EMH_ECONFLICT");
	ok(err.retryable, "locks: retryable");
	emh_em_rollback(b, &err);
	OK_RC(emh_em_begin(b, &err), err, "locks: B begins again");
	emh_query *qb = query(repo(b, c, E_STOCK));
	emh_value both[2] = {emh_v_int64(x), emh_v_int64(y)};
	emh_q_where(qb, emh_q_in(qb, "id", both, 2));
	emh_q_lock(qb, EMH_LOCK_UPDATE, EMH_LOCK_SKIP_LOCKED);
	rc = emh_repo_find(repo(b, c, E_STOCK), qb, &l, &err);
	OK_RC(rc, err, "locks: B's find of both rows FOR UPDATE SKIP LOCKED");
	ok(l.count == 1 && ((cf_stock *)l.items[0])->id == y, "locks: SKIP LOCKED leaves the locked row out");
	emh_em_rollback(b, &err);
	emh_em_rollback(a, &err);

	/* share locks share */
	OK_RC(emh_em_begin(a, &err), err, "locks: A begins");
	OK_RC(lock_get(a, c, x, EMH_LOCK_SHARE, EMH_LOCK_WAIT, &p, &err), err, "locks: A's get FOR SHARE");
	OK_RC(emh_em_begin(b, &err), err, "locks: B begins");
	OK_RC(lock_get(b, c, x, EMH_LOCK_SHARE, EMH_LOCK_NOWAIT, &p, &err), err,
	   "locks: B's get FOR SHARE NOWAIT of the same row succeeds (share locks share)");
	emh_em_rollback(b, &err);
	OK_RC(emh_em_begin(b, &err), err, "locks: B begins again");
	rc = lock_get(b, c, x, EMH_LOCK_UPDATE, EMH_LOCK_NOWAIT, &p, &err);
	expect_rc(rc, EMH_ECONFLICT, &err, "locks: B's get FOR UPDATE NOWAIT of a share-locked row is EMH_ECONFLICT");
	emh_em_close(b);
	emh_em_close(a);
}

/* ---- retried transactions ---- */

typedef struct retry_ud {
	cc *c;
	int64_t id;
	int attempts;
	int fail_with; /* a status fn returns itself, 0: none */
	bool quiet_second; /* the first attempt fails retryably, the next with EMH_EINVAL leaving err alone */
} retry_ud;

static int retry_fn(emh_em *em, void *arg, emh_error *err)
{
	retry_ud *u = arg;
	u->attempts++;
	if (u->quiet_second && u->attempts == 1) {
		emh_error_set(err, EMH_ECONFLICT, "a conflict on purpose");
		err->retryable = true;
		return EMH_ECONFLICT;
	}
	if (u->quiet_second)
		return EMH_EINVAL; /* a careless fn: err not filled */
	if (u->fail_with)
		return emh_error_set(err, u->fail_with, "failing on purpose (attempt %d)", u->attempts);
	void *p;
	int rc = emh_repo_get(repo(em, u->c, E_VER), emh_v_int64(u->id), &p, err);
	if (rc)
		return rc;
	((cf_ver *)p)->qty += 1;
	return emh_em_flush(em, err);
}

static void t_retry(cc *c)
{
	emh_error err;
	int64_t id = seed_ver(c, 0);
	emh_em *em = fork_(c);
	retry_ud u = {.c = c, .id = id};
	if (!c->tx) {
		int rc = emh_em_transaction_retry(em, retry_fn, &u, 3, &err);
		expect_rc(rc, EMH_EUNSUPPORTED, &err, "retry: without transactions (caps: %s) it is EMH_EUNSUPPORTED",
		       c->cx->capstr);
		emh_em_close(em);
		return;
	}
	/* The fork holds the row from before; another fork changes it: the first
	 * attempt's flush conflicts, the retry starts from the row as it is. */
	cf_ver *old = get(em, c, E_VER, id);
	bump_ver(c, id, 10);
	int rc = emh_em_transaction_retry(em, retry_fn, &u, 5, &err);
	OK_RC(rc, err, "retry: a version conflict, then success");
	is_int(u.attempts, 2, "retry: two attempts (the second reloaded the row: the fork was cleared)");
	cf_ver row = ver_row(c, id);
	ok(row.qty == 11 && row.version == 3, "retry: no increment lost (qty %" PRId64 ", version %" PRId64 ")", row.qty,
	   row.version);
	expect_rc(emh_em_remove(em, old, &err), EMH_ESTATE, &err, "retry: the object from before the call is detached");
	is_int(emh_em_tx_depth(em), 0, "retry: no transaction left open");

	u = (retry_ud){.c = c, .id = id, .fail_with = EMH_ERETRY};
	rc = emh_em_transaction_retry(em, retry_fn, &u, 3, &err);
	ok(rc == EMH_ERETRY && u.attempts == 3, "retry: always EMH_ERETRY: three attempts, then its status (%s, %d)",
	   st(rc), u.attempts);
	u = (retry_ud){.c = c, .id = id, .fail_with = EMH_EINVAL};
	rc = emh_em_transaction_retry(em, retry_fn, &u, 3, &err);
	ok(rc == EMH_EINVAL && u.attempts == 1, "retry: a failure that is not retryable is not retried (%s, %d)", st(rc),
	   u.attempts);
	u = (retry_ud){.c = c, .id = id, .quiet_second = true};
	rc = emh_em_transaction_retry(em, retry_fn, &u, 5, &err);
	ok(rc == EMH_EINVAL && u.attempts == 2,
	   "retry: a later failure is judged by its own error, not by the earlier attempt's retryable flag (%s, %d)",
	   st(rc), u.attempts);
	u = (retry_ud){.c = c, .id = id};
	expect_rc(emh_em_transaction_retry(em, retry_fn, &u, 0, &err), EMH_EINVAL, &err, "retry: max_attempts 0 is EMH_EINVAL");
	OK_RC(emh_em_begin(em, &err), err, "retry: begin");
	expect_rc(emh_em_transaction_retry(em, retry_fn, &u, 3, &err), EMH_ESTATE, &err,
	       "retry: inside a transaction it is EMH_ESTATE");
	emh_em_rollback(em, &err);
	emh_em_close(em);
}

/* ---- refresh ---- */

static void t_refresh(cc *c)
{
	emh_error err;
	int64_t id = seed_stock(c, "refresh", 3);
	emh_em *em = fork_(c);
	cf_stock *p = get(em, c, E_STOCK, id);
	p->stock = 99;
	p->note = "unsaved";
	OK_RC(emh_em_refresh(em, p, &err), err, "refresh: reload an object with changes");
	ok(p->stock == 3 && p->note == NULL, "refresh: its fields are the row's again");
	OK_RC(emh_em_flush(em, &err), err, "refresh: a flush afterwards");
	is_int(stock_of(c, id), 3, "refresh: writes nothing (no change left)");
	cf_stock *n;
	if (emh_repo_new(repo(em, c, E_STOCK), (void **)&n, &err))
		bail("new: %s", err.message);
	expect_rc(emh_em_refresh(em, n, &err), EMH_ESTATE, &err, "refresh: of a new object is EMH_ESTATE");
	emh_em *w = fork_(c);
	emh_repo *rw = repo(w, c, E_STOCK);
	OK_RC(emh_repo_remove(rw, get(w, c, E_STOCK, id), &err), err, "refresh: another fork deletes the row");
	emh_em_close(w);
	expect_rc(emh_em_refresh(em, p, &err), EMH_ENOTFOUND, &err, "refresh: of a deleted row is EMH_ENOTFOUND");
	expect_rc(emh_em_remove(em, p, &err), EMH_ESTATE, &err, "refresh: and the object is detached");
	emh_em_clear(em); /* the new object is not to be inserted */
	emh_em_close(em);
}

/* ---- isolation ---- */

static void t_isolation(cc *c)
{
	emh_error err;
	static const char *const names[] = {"", "read committed", "repeatable read", "serializable"};
	emh_em *em = fork_(c);
	if (!c->isolation) {
		int rc = emh_em_begin_opts(em, &(emh_tx_opts){.isolation = EMH_ISO_SERIALIZABLE}, &err);
		expect_rc(rc, EMH_EUNSUPPORTED, &err, "isolation: without EMH_CAP_ISOLATION (caps: %s) it is EMH_EUNSUPPORTED",
		       c->cx->capstr);
		emh_em_close(em);
		return;
	}
	int64_t id = seed_stock(c, "iso", 1);
	for (int iso = EMH_ISO_READ_COMMITTED; iso <= EMH_ISO_SERIALIZABLE; iso++) {
		int rc = emh_em_begin_opts(em, &(emh_tx_opts){.isolation = iso}, &err);
		OK_RC(rc, err, "isolation: begin %s", names[iso]);
		void *p;
		if (rc == 0) {
			OK_RC(emh_repo_get(repo(em, c, E_STOCK), emh_v_int64(id), &p, &err), err, "isolation: %s: a read",
			   names[iso]);
			OK_RC(emh_em_commit(em, &err), err, "isolation: %s: commit", names[iso]);
		}
		emh_em_clear(em);
	}
	OK_RC(emh_em_begin(em, &err), err, "isolation: begin");
	expect_rc(emh_em_begin_opts(em, &(emh_tx_opts){.isolation = EMH_ISO_SERIALIZABLE}, &err), EMH_ESTATE, &err,
	       "isolation: a level inside a transaction is EMH_ESTATE");
	emh_em_rollback(em, &err);
	expect_rc(emh_em_begin_opts(em, &(emh_tx_opts){.isolation = 9}, &err), EMH_EINVAL, &err,
	       "isolation: an unknown level is EMH_EINVAL");

	/* What a transaction sees of a change committed after its first read. */
	for (int iso = EMH_ISO_READ_COMMITTED; iso <= EMH_ISO_REPEATABLE_READ; iso++) {
		if (c->serial) {
			na("isolation: what a transaction sees of another's commit",
			   "SQLite transactions exclude each other (every level is serializable)");
			break;
		}
		emh_em_clear(em);
		OK_RC(emh_em_begin_opts(em, &(emh_tx_opts){.isolation = iso}, &err), err, "isolation: begin %s", names[iso]);
		cf_stock *v = get(em, c, E_STOCK, id);
		int64_t seen = v->stock;
		emh_em *w = fork_(c);
		((cf_stock *)get(w, c, E_STOCK, id))->stock = seen + 1;
		OK_RC(emh_em_flush(w, &err), err, "isolation: %s: another fork commits a change", names[iso]);
		emh_em_close(w);
		OK_RC(emh_em_refresh(em, v, &err), err, "isolation: %s: read the row again after it", names[iso]);
		if (iso == EMH_ISO_READ_COMMITTED)
			is_int(v->stock, seen + 1, "isolation: read committed sees the commit");
		else
			is_int(v->stock, seen, "isolation: repeatable read does not (it reads its snapshot)");
		emh_em_commit(em, &err);
	}
	emh_em_close(em);
}

/* ---- entry ---- */

void cf_concurrency(const suite *cx)
{
	cc c = {.cx = cx};
	emh_error err;
	c.e[E_VER] = (emh_entity)EMH_ENTITY(cf_ver, c.tables[E_VER], cf_ver_fields);
	c.e[E_TVER] = (emh_entity)EMH_ENTITY(cf_tver, c.tables[E_TVER], cf_tver_fields);
	c.e[E_STOCK] = (emh_entity)EMH_ENTITY(cf_stock, c.tables[E_STOCK], cf_stock_fields);
	for (int t = 0; t < E__N; t++) {
		snprintf(c.tables[t], sizeof c.tables[t], "conf_%ld_%s", cx->pid, table_suffix[t]);
		int rc = emh_host_register_entity(cx->h, cx->ctx, &c.e[t], &err);
		if (!(cx->caps & EMH_CAP_CONDITIONAL_WRITES) && t != E_STOCK) {
			/* A version needs conditional writes: refused at registration. */
			expect_rc(rc, EMH_EUNSUPPORTED, &err, "concurrency: a versioned entity on a driver without "
							   "EMH_CAP_CONDITIONAL_WRITES is refused");
			continue;
		}
		if (!OK_RC(rc, err, "concurrency: register '%s'", c.tables[t]))
			return;
	}
	if (!OK_RC(emh_host_sync_schema(cx->h, cx->ctx, &err), err, "concurrency: sync the conf_%ld_* tables", cx->pid))
		return;
	c.tx = cx->caps & EMH_CAP_TRANSACTIONS;
	c.atomic = (cx->caps & EMH_CAP_ATOMIC_FLUSH) && c.tx;
	c.locks = cx->caps & EMH_CAP_LOCKS;
	c.isolation = cx->caps & EMH_CAP_ISOLATION;
	c.serial = strcmp(cx->driver, "sqlite") == 0;
	if (!(cx->caps & EMH_CAP_CONDITIONAL_WRITES)) {
		emh_em *em = fork_(&c);
		emh_repo *r = repo(em, &c, E_STOCK);
		emh_sets *s = sets(r);
		emh_sets_value(s, "stock", emh_v_int64(1));
		int64_t n;
		expect_rc(emh_repo_update_where(r, NULL, s, &n, &err), EMH_EUNSUPPORTED, &err,
		       "concurrency: without EMH_CAP_CONDITIONAL_WRITES (caps: %s) update_where is EMH_EUNSUPPORTED",
		       cx->capstr);
		emh_em_close(em);
		t_locks(&c);
		t_refresh(&c);
		t_isolation(&c);
		return;
	}
	t_version_basics(&c);
	t_version_conflicts(&c);
	t_version_rollback(&c);
	t_update_where(&c);
	t_stale(&c);
	t_where_rollback(&c);
	t_where_errors(&c);
	t_where_overflow(&c);
	t_locks(&c);
	t_retry(&c);
	t_refresh(&c);
	t_isolation(&c);
}
