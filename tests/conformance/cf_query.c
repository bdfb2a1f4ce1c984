/* SPDX-License-Identifier: MIT */
/*
 * tests/conformance/cf_query.c: query power on every driver -- aggregates
 * against a hand count, iterators against find, pages, and global filters
 * (two tenants in one table, every operation checked for leaks).
 *
 * The rows are made by a generator (agg_row), so every expected result is
 * computed here from the same generator, in C, not written down.  A
 * context without EMH_CAP_AGGREGATE shows the refusal (EMH_EUNSUPPORTED)
 * and prints the aggregate cases as not applicable.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/driver.h>

#include "conformance.h"

/* ---- entities ---- */

typedef struct conf_agg {
	int64_t id;
	const char *grp;
	bool flag;
	int32_t n;
	int64_t big;
	double x;
	emh_time ts;
	const char *note;
	emh_blob blob;
} conf_agg;

static const emh_field conf_agg_fields[] = {
	EMH_FIELD(conf_agg, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(conf_agg, grp, EMH_T_TEXT, EMH_F_NULLABLE),
	EMH_FIELD(conf_agg, flag, EMH_T_BOOL, 0),
	EMH_FIELD(conf_agg, n, EMH_T_INT32, EMH_F_NULLABLE),
	EMH_FIELD(conf_agg, big, EMH_T_INT64, EMH_F_NULLABLE),
	EMH_FIELD(conf_agg, x, EMH_T_DOUBLE, EMH_F_NULLABLE),
	EMH_FIELD(conf_agg, ts, EMH_T_TIMESTAMP, EMH_F_NULLABLE),
	EMH_FIELD(conf_agg, note, EMH_T_TEXT, EMH_F_NULLABLE),
	EMH_FIELD(conf_agg, blob, EMH_T_BLOB, EMH_F_NULLABLE),
};

/* Sums beyond int64. */
typedef struct conf_aggbig {
	int64_t id;
	int64_t v;
} conf_aggbig;

static const emh_field conf_aggbig_fields[] = {
	EMH_FIELD(conf_aggbig, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(conf_aggbig, v, EMH_T_INT64, 0),
};

/* Two tenants in one table. */
typedef struct conf_ten {
	int64_t id;
	const char *tenant;
	const char *name;
	int64_t v;
} conf_ten;

static const emh_field conf_ten_fields[] = {
	EMH_FIELD(conf_ten, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(conf_ten, tenant, EMH_T_TEXT, EMH_F_FILTER | EMH_F_INDEXED),
	EMH_FIELD(conf_ten, name, EMH_T_TEXT, 0),
	EMH_FIELD(conf_ten, v, EMH_T_INT64, 0),
};

/* Natural keys (upsert) under an integer filter. */
typedef struct conf_tenkv {
	const char *k;
	int64_t org;
	const char *val;
} conf_tenkv;

static const emh_field conf_tenkv_fields[] = {
	EMH_FIELD(conf_tenkv, k, EMH_T_TEXT, EMH_F_PK),
	EMH_FIELD(conf_tenkv, org, EMH_T_INT64, EMH_F_FILTER),
	EMH_FIELD(conf_tenkv, val, EMH_T_TEXT, 0),
};

enum { Q_AGG, Q_AGGBIG, Q_TEN, Q_TENKV, Q__N };
static const char *const q_suffix[Q__N] = {"agg", "aggbig", "ten", "tenkv"};

typedef struct qsuite {
	suite *s;
	char tables[Q__N][64];
	emh_entity e[Q__N];
	bool agg;  /* EMH_CAP_AGGREGATE */
	int null_order;
} qsuite;

/* ---- the generated rows ---- */

#define AGG_ROWS 40
static const char *const grp_names[] = {"a", "b", "c"};

/* Row i as stored (id not set); NULL flags in *nulls (bit per field index). */
static void agg_row(int i, conf_agg *o, uint64_t *nulls)
{
	static char notes[AGG_ROWS][8];
	*nulls = 0;
	memset(o, 0, sizeof *o);
	o->grp = i % 7 == 6 ? NULL : grp_names[i % 3];
	o->flag = i % 2 == 0;
	if (i % 5 == 3)
		*nulls |= 1u << 3;
	else
		o->n = (int32_t)((i * 7) % 13 - 4);
	if (i % 4 == 1)
		*nulls |= 1u << 4;
	else
		o->big = (int64_t)i * INT64_C(1000000007);
	if (i % 6 == 5)
		*nulls |= 1u << 5;
	else
		o->x = i * 0.25 - 3.0;
	if (i % 8 == 7)
		*nulls |= 1u << 6;
	else
		o->ts = INT64_C(1700000000000000) + (int64_t)i * 1000;
	if (i % 9 == 0) {
		o->note = NULL;
	} else {
		snprintf(notes[i], sizeof notes[i], "n%02d", (i * 5) % 17);
		o->note = notes[i];
	}
}

static int agg_seed(qsuite *q)
{
	emh_em *em = xfork(q->s, NULL);
	emh_repo *r = xrepo(em, &q->e[Q_AGG]);
	emh_error err;
	int rc = 0;
	static const char *const nullable[] = {NULL, NULL, NULL, "n", "big", "x", "ts"};
	for (int i = 0; i < AGG_ROWS && !rc; i++) {
		void *p;
		conf_agg want;
		uint64_t nulls;
		if ((rc = emh_repo_new(r, &p, &err)) != 0)
			break;
		agg_row(i, &want, &nulls);
		want.id = 0;
		*(conf_agg *)p = want;
		for (int f = 3; f <= 6 && !rc; f++)
			if ((nulls >> f) & 1)
				rc = emh_em_set_null(em, p, nullable[f], true, &err);
	}
	if (!rc)
		rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "aggregates: seed %d generated rows", AGG_ROWS);
	emh_em_close(em);
	return rc;
}

/* ---- hand counts ---- */

/* What one group (or the whole set) holds, computed from the generator. */
typedef struct hand {
	int64_t count, n_nonnull, big_nonnull, x_nonnull, ts_nonnull, note_nonnull;
	int64_t sum_n, sum_big;
	double sum_x;
	int32_t min_n, max_n;
	int64_t min_big;
	double max_x;
	emh_time min_ts, max_ts;
	char min_note[8], max_note[8];
	int distinct_n;
	bool seen_n[32]; /* n is in -4..8 */
	bool seen_flag[2];
} hand;

static void hand_add(hand *h, const conf_agg *o, uint64_t nulls)
{
	h->count++;
	h->seen_flag[o->flag] = true;
	if (!((nulls >> 3) & 1)) {
		if (!h->n_nonnull || o->n < h->min_n)
			h->min_n = o->n;
		if (!h->n_nonnull || o->n > h->max_n)
			h->max_n = o->n;
		h->n_nonnull++;
		h->sum_n += o->n;
		if (!h->seen_n[o->n + 4]) {
			h->seen_n[o->n + 4] = true;
			h->distinct_n++;
		}
	}
	if (!((nulls >> 4) & 1)) {
		if (!h->big_nonnull || o->big < h->min_big)
			h->min_big = o->big;
		h->big_nonnull++;
		h->sum_big += o->big;
	}
	if (!((nulls >> 5) & 1)) {
		if (!h->x_nonnull || o->x > h->max_x)
			h->max_x = o->x;
		h->x_nonnull++;
		h->sum_x += o->x;
	}
	if (!((nulls >> 6) & 1)) {
		if (!h->ts_nonnull || o->ts < h->min_ts)
			h->min_ts = o->ts;
		if (!h->ts_nonnull || o->ts > h->max_ts)
			h->max_ts = o->ts;
		h->ts_nonnull++;
	}
	if (o->note) {
		if (!h->note_nonnull || strcmp(o->note, h->min_note) < 0)
			snprintf(h->min_note, sizeof h->min_note, "%s", o->note);
		if (!h->note_nonnull || strcmp(o->note, h->max_note) > 0)
			snprintf(h->max_note, sizeof h->max_note, "%s", o->note);
		h->note_nonnull++;
	}
}

/* Which group a row is in: 0..2 for a..c, 3 for NULL. */
static int grp_index(const char *g)
{
	if (!g)
		return 3;
	for (int k = 0; k < 3; k++)
		if (strcmp(g, grp_names[k]) == 0)
			return k;
	return -1;
}

/* The hand counts of rows accepted by keep (NULL: all), per group and over all. */
static void hand_count(hand groups[4], hand *all, bool (*keep)(const conf_agg *o, uint64_t nulls))
{
	memset(groups, 0, 4 * sizeof *groups);
	memset(all, 0, sizeof *all);
	for (int i = 0; i < AGG_ROWS; i++) {
		conf_agg o;
		uint64_t nulls;
		agg_row(i, &o, &nulls);
		if (keep && !keep(&o, nulls))
			continue;
		hand_add(&groups[grp_index(o.grp)], &o, nulls);
		hand_add(all, &o, nulls);
	}
}

/* ---- checking rows ---- */

static const emh_value *cell(const emh_rows *rows, size_t row, const char *name)
{
	int c = emh_rows_col(rows, name);
	return c < 0 ? NULL : emh_rows_value(rows, row, (size_t)c);
}

static void is_i64_cell(const emh_rows *rows, size_t row, const char *name, int64_t want, const char *label)
{
	const emh_value *v = cell(rows, row, name);
	if (!ok(v && !v->is_null && v->type == EMH_T_INT64 && v->u.i64 == want, "%s: %s = %" PRId64, label, name, want))
		diag("  got %s%s %" PRId64, v ? emh_type_name(v->type) : "no column", v && v->is_null ? " NULL" : "",
		     v && !v->is_null ? (v->type == EMH_T_INT32 ? v->u.i32 : v->u.i64) : 0);
}

static void is_i32_cell(const emh_rows *rows, size_t row, const char *name, int32_t want, const char *label)
{
	const emh_value *v = cell(rows, row, name);
	if (!ok(v && !v->is_null && v->type == EMH_T_INT32 && v->u.i32 == want, "%s: %s = %d", label, name, want))
		diag("  got %s%s", v ? emh_type_name(v->type) : "no column", v && v->is_null ? " NULL" : "");
}

static void is_dbl_cell(const emh_rows *rows, size_t row, const char *name, double want, const char *label)
{
	const emh_value *v = cell(rows, row, name);
	if (!ok(v && !v->is_null && v->type == EMH_T_DOUBLE && v->u.d == want, "%s: %s = %.17g", label, name, want))
		diag("  got %s%s %.17g", v ? emh_type_name(v->type) : "no column", v && v->is_null ? " NULL" : "",
		     v && !v->is_null && v->type == EMH_T_DOUBLE ? v->u.d : 0.0);
}

static void is_time_cell(const emh_rows *rows, size_t row, const char *name, emh_time want, const char *label)
{
	const emh_value *v = cell(rows, row, name);
	if (!ok(v && !v->is_null && v->type == EMH_T_TIMESTAMP && v->u.i64 == want, "%s: %s = %" PRId64, label, name,
		want))
		diag("  got %s%s", v ? emh_type_name(v->type) : "no column", v && v->is_null ? " NULL" : "");
}

static void is_text_cell(const emh_rows *rows, size_t row, const char *name, const char *want, const char *label)
{
	const emh_value *v = cell(rows, row, name);
	bool good = v && v->type == EMH_T_TEXT &&
		    (want ? !v->is_null && strcmp(v->u.s.ptr, want) == 0 : v->is_null);
	if (!ok(good, "%s: %s = %s%s%s", label, name, want ? "'" : "", want ? want : "NULL", want ? "'" : ""))
		diag("  got %s%s '%s'", v ? emh_type_name(v->type) : "no column", v && v->is_null ? " NULL" : "",
		     v && !v->is_null && v->type == EMH_T_TEXT ? v->u.s.ptr : "");
}

static void is_null_cell(const emh_rows *rows, size_t row, const char *name, emh_type type, const char *label)
{
	const emh_value *v = cell(rows, row, name);
	if (!ok(v && v->is_null && v->type == type, "%s: %s is a NULL %s", label, name, emh_type_name(type)))
		diag("  got %s%s", v ? emh_type_name(v->type) : "no column", v && v->is_null ? " NULL" : " (not NULL)");
}

/* Run a on q; ok() the status; the rows or NULL. */
static emh_rows *agg_run(emh_repo *r, const emh_query *q, const emh_agg *a, const char *label)
{
	emh_rows *rows = NULL;
	emh_error err;
	int rc = emh_repo_aggregate(r, q, a, &rows, &err);
	return OK_RC(rc, err, "%s: aggregate runs", label) ? rows : NULL;
}

static emh_agg *xagg(emh_repo *r)
{
	emh_agg *a = NULL;
	emh_error err;
	int rc = emh_repo_agg(r, &a, &err);
	if (rc)
		bail("cannot make an aggregate: %s: %s", st_name(rc), err.message);
	return a;
}

/* ---- aggregate cases ---- */

static void t_agg_whole(emh_repo *r)
{
	const char *L = "aggregate over every row";
	hand g[4], h;
	hand_count(g, &h, NULL);
	emh_agg *a = xagg(r);
	emh_agg_count(a, NULL);
	emh_agg_count_distinct(a, "grp", NULL);
	emh_agg_count_distinct(a, "n", NULL);
	emh_agg_count_distinct(a, "flag", NULL);
	emh_agg_sum(a, "n", NULL);
	emh_agg_sum(a, "big", NULL);
	emh_agg_sum(a, "x", NULL);
	emh_agg_min(a, "n", NULL);
	emh_agg_max(a, "n", NULL);
	emh_agg_min(a, "big", NULL);
	emh_agg_max(a, "x", NULL);
	emh_agg_min(a, "ts", NULL);
	emh_agg_max(a, "ts", NULL);
	emh_agg_min(a, "note", NULL);
	emh_agg_max(a, "note", NULL);
	emh_agg_avg(a, "n", NULL);
	emh_agg_avg(a, "x", "mean_x");
	emh_rows *rows = agg_run(r, NULL, a, L);
	if (!rows)
		return;
	is_int(emh_rows_count(rows), 1, "%s: one row", L);
	is_int(emh_rows_ncols(rows), 17, "%s: one column per aggregate", L);
	is_str(emh_rows_name(rows, 16), "mean_x", "%s: a column named by the caller", L);
	is_str(emh_rows_name(rows, 0), "count", "%s: count's default name", L);
	is_int(emh_rows_type(rows, 4), EMH_T_INT64, "%s: sum of an int32 field is int64", L);
	is_i64_cell(rows, 0, "count", h.count, L);
	is_i64_cell(rows, 0, "count_distinct_grp", 3, L);
	is_i64_cell(rows, 0, "count_distinct_n", h.distinct_n, L);
	is_i64_cell(rows, 0, "count_distinct_flag", 2, L);
	is_i64_cell(rows, 0, "sum_n", h.sum_n, L);
	is_i64_cell(rows, 0, "sum_big", h.sum_big, L);
	is_dbl_cell(rows, 0, "sum_x", h.sum_x, L);
	is_i32_cell(rows, 0, "min_n", h.min_n, L);
	is_i32_cell(rows, 0, "max_n", h.max_n, L);
	is_i64_cell(rows, 0, "min_big", h.min_big, L);
	is_dbl_cell(rows, 0, "max_x", h.max_x, L);
	is_time_cell(rows, 0, "min_ts", h.min_ts, L);
	is_time_cell(rows, 0, "max_ts", h.max_ts, L);
	is_text_cell(rows, 0, "min_note", h.min_note, L);
	is_text_cell(rows, 0, "max_note", h.max_note, L);
	is_dbl_cell(rows, 0, "avg_n", (double)h.sum_n / (double)h.n_nonnull, L);
	is_dbl_cell(rows, 0, "mean_x", h.sum_x / (double)h.x_nonnull, L);
}

static void t_agg_group(emh_repo *r)
{
	const char *L = "group by grp";
	hand g[4], h;
	hand_count(g, &h, NULL);
	emh_agg *a = xagg(r);
	emh_agg_group_by(a, "grp");
	emh_agg_count(a, "rows");
	emh_agg_sum(a, "n", NULL);
	emh_agg_avg(a, "x", NULL);
	emh_agg_max(a, "ts", NULL);
	emh_agg_count_distinct(a, "flag", NULL);
	emh_rows *rows = agg_run(r, NULL, a, L);
	if (!rows)
		return;
	is_int(emh_rows_count(rows), 4, "%s: a row per group, NULL one of them", L);
	is_str(emh_rows_name(rows, 0), "grp", "%s: the group column comes first, named after its field", L);
	bool seen[4] = {false};
	for (size_t i = 0; i < emh_rows_count(rows); i++) {
		const emh_value *gv = emh_rows_value(rows, i, 0);
		int k = gv->is_null ? 3 : grp_index(gv->u.s.ptr);
		if (!ok(k >= 0 && !seen[k], "%s: row %zu is a distinct known group", L, i))
			continue;
		seen[k] = true;
		char lab[64];
		snprintf(lab, sizeof lab, "%s, group %s", L, k == 3 ? "NULL" : grp_names[k]);
		is_i64_cell(rows, i, "rows", g[k].count, lab);
		is_i64_cell(rows, i, "sum_n", g[k].sum_n, lab);
		is_dbl_cell(rows, i, "avg_x", g[k].sum_x / (double)g[k].x_nonnull, lab);
		is_time_cell(rows, i, "max_ts", g[k].max_ts, lab);
		is_i64_cell(rows, i, "count_distinct_flag", g[k].seen_flag[0] + g[k].seen_flag[1], lab);
	}

	/* two group fields, one of them bool */
	L = "group by grp and flag";
	a = xagg(r);
	emh_agg_group_by(a, "grp");
	emh_agg_group_by(a, "flag");
	emh_agg_count(a, NULL);
	emh_agg_min(a, "n", NULL);
	if (!(rows = agg_run(r, NULL, a, L)))
		return;
	int64_t cnt[4][2] = {{0}}, groups = 0;
	int32_t mn[4][2];
	bool mn_set[4][2] = {{false}};
	for (int i = 0; i < AGG_ROWS; i++) {
		conf_agg o;
		uint64_t nulls;
		agg_row(i, &o, &nulls);
		int k = grp_index(o.grp);
		groups += cnt[k][o.flag]++ == 0;
		if (!((nulls >> 3) & 1) && (!mn_set[k][o.flag] || o.n < mn[k][o.flag])) {
			mn[k][o.flag] = o.n;
			mn_set[k][o.flag] = true;
		}
	}
	is_int(emh_rows_count(rows), groups, "%s: a row per (grp, flag) pair present", L);
	bool good = true;
	for (size_t i = 0; i < emh_rows_count(rows); i++) {
		const emh_value *gv = emh_rows_value(rows, i, 0), *fv = emh_rows_value(rows, i, 1);
		const emh_value *c = emh_rows_value(rows, i, 2), *m = emh_rows_value(rows, i, 3);
		int k = gv->is_null ? 3 : grp_index(gv->u.s.ptr);
		if (k < 0 || fv->type != EMH_T_BOOL || fv->is_null || c->u.i64 != cnt[k][fv->u.b] ||
		    m->is_null != !mn_set[k][fv->u.b] || (!m->is_null && m->u.i32 != mn[k][fv->u.b])) {
			diag("  row %zu: group %d flag %d count %" PRId64, i, k, fv->u.b, c->u.i64);
			good = false;
		}
	}
	ok(good, "%s: every pair's count and min(n) match the hand count", L);
}

static bool keep_not_null_grp(const conf_agg *o, uint64_t nulls) { (void)nulls; return o->grp != NULL; }

static void t_agg_having_order(emh_repo *r)
{
	const char *L = "having, order by an aggregate, limit";
	hand g[4], h;
	hand_count(g, &h, keep_not_null_grp);
	/* The groups a..c sorted by count descending, then name. */
	int order[3] = {0, 1, 2};
	for (int i = 0; i < 3; i++)
		for (int j = i + 1; j < 3; j++)
			if (g[order[j]].count > g[order[i]].count ||
			    (g[order[j]].count == g[order[i]].count && order[j] < order[i])) {
				int t = order[i];
				order[i] = order[j];
				order[j] = t;
			}
	emh_query *q = xquery(r);
	emh_q_where(q, emh_q_not_null(q, "grp"));
	emh_agg *a = xagg(r);
	emh_agg_group_by(a, "grp");
	emh_agg_count(a, "c");
	emh_agg_sum(a, "n", "s");
	emh_agg_order_by(a, "c", true);
	emh_agg_order_by(a, "grp", false);
	emh_agg_limit(a, 2);
	emh_rows *rows = agg_run(r, q, a, L);
	if (rows) {
		is_int(emh_rows_count(rows), 2, "%s: limit 2", L);
		for (size_t i = 0; i < 2 && i < emh_rows_count(rows); i++) {
			char lab[96];
			snprintf(lab, sizeof lab, "%s, row %zu", L, i);
			is_text_cell(rows, i, "grp", grp_names[order[i]], lab);
			is_i64_cell(rows, i, "c", g[order[i]].count, lab);
		}
	}

	/* having on a count and on a sum: which groups pass is computed */
	for (int pass = 0; pass < 2; pass++) {
		int64_t min_count = g[order[1]].count;
		int64_t sum_limit = g[1].sum_n;
		emh_agg *b = xagg(r);
		emh_agg_group_by(b, "grp");
		emh_agg_count(b, "c");
		emh_agg_sum(b, "n", "s");
		emh_agg_having(b, "c", EMH_OP_GE, emh_v_int32((int32_t)min_count));
		if (pass)
			emh_agg_having(b, "s", EMH_OP_NE, emh_v_int64(sum_limit));
		emh_agg_order_by(b, "grp", false);
		char lab[96];
		snprintf(lab, sizeof lab, "having count >= %" PRId64 "%s", min_count, pass ? " and sum <> b's" : "");
		if (!(rows = agg_run(r, q, b, lab)))
			continue;
		char got[32] = "", want[32] = "";
		for (int k = 0; k < 3; k++)
			if (g[k].count >= min_count && (!pass || g[k].sum_n != sum_limit))
				strcat(want, grp_names[k]);
		for (size_t i = 0; i < emh_rows_count(rows); i++) {
			const emh_value *v = emh_rows_value(rows, i, 0);
			if (!v->is_null && v->u.s.len == 1)
				strncat(got, v->u.s.ptr, 1);
		}
		is_str(got, want, "%s: the groups that pass, in order", lab);
	}

	/* the same shape again with other values: values are never cached */
	emh_agg *c = xagg(r);
	emh_agg_group_by(c, "grp");
	emh_agg_count(c, "c");
	emh_agg_sum(c, "n", "s");
	emh_agg_having(c, "c", EMH_OP_GE, emh_v_int64(INT64_C(1000000)));
	emh_agg_order_by(c, "grp", false);
	if ((rows = agg_run(r, q, c, "having count >= 1000000")))
		is_int(emh_rows_count(rows), 0, "having count >= 1000000: no group (the having value is bound, not cached)");
}

/*
 * Two specifications whose statement-cache keys once read the same bytes
 * (the lists' lengths were not in the key): whichever ran first, the other
 * ran its SQL -- the orderings lost, or a HAVING dropped, or bound to a
 * parameter nobody gave.  Each must run its own.
 */
static void t_agg_shapes(emh_repo *r)
{
	const char *L = "aggregate shapes";
	emh_query *q = xquery(r);
	emh_q_where(q, emh_q_not_null(q, "grp"));
	for (int first = 0; first < 2; first++) {
		/* a: group, count, two orderings: every group */
		emh_agg *a = xagg(r);
		emh_agg_group_by(a, "grp");
		emh_agg_count(a, first ? "c1" : "c"); /* names are not in the shape */
		emh_agg_order_by(a, first ? "c1" : "c", true);
		emh_agg_order_by(a, "grp", true);
		/* b: group, two counts, having grp = 'zzz': no group */
		emh_agg *b = xagg(r);
		emh_agg_group_by(b, "grp");
		emh_agg_count(b, "c");
		emh_agg_count(b, "c2");
		emh_agg_having(b, "grp", EMH_OP_EQ, emh_v_text("zzz"));
		emh_rows *ra = NULL, *rb = NULL;
		char la[96], lb[96];
		snprintf(la, sizeof la, "%s: group, count, two orderings (%s)", L, first ? "second" : "first");
		snprintf(lb, sizeof lb, "%s: group, two counts, having grp = 'zzz' (%s)", L, first ? "first" : "second");
		if (first) {
			rb = agg_run(r, q, b, lb);
			ra = agg_run(r, q, a, la);
		} else {
			ra = agg_run(r, q, a, la);
			rb = agg_run(r, q, b, lb);
		}
		if (ra) {
			is_int(emh_rows_count(ra), 3, "%s: the 3 groups", la);
			is_int(emh_rows_ncols(ra), 2, "%s: 2 columns", la);
			bool sorted = true;
			for (size_t i = 1; i < emh_rows_count(ra); i++)
				if (emh_rows_value(ra, i, 1)->u.i64 > emh_rows_value(ra, i - 1, 1)->u.i64)
					sorted = false;
			ok(sorted, "%s: by count, descending", la);
		}
		if (rb) {
			is_int(emh_rows_count(rb), 0, "%s: no group", lb);
			is_int(emh_rows_ncols(rb), 3, "%s: 3 columns", lb);
		}
	}
}

static bool keep_n_null(const conf_agg *o, uint64_t nulls) { (void)o; return (nulls >> 3) & 1; }

static void t_agg_empty(emh_repo *r)
{
	const char *L = "aggregate over no row";
	emh_query *q = xquery(r);
	emh_q_where(q, emh_q_eq(q, "grp", emh_v_text("no such group")));
	emh_agg *a = xagg(r);
	emh_agg_count(a, NULL);
	emh_agg_count_distinct(a, "n", NULL);
	emh_agg_sum(a, "n", NULL);
	emh_agg_sum(a, "x", NULL);
	emh_agg_avg(a, "n", NULL);
	emh_agg_min(a, "note", NULL);
	emh_agg_max(a, "ts", NULL);
	emh_rows *rows = agg_run(r, q, a, L);
	if (rows) {
		is_int(emh_rows_count(rows), 1, "%s: still one row without group fields, as in SQL", L);
		is_i64_cell(rows, 0, "count", 0, L);
		is_i64_cell(rows, 0, "count_distinct_n", 0, L);
		is_null_cell(rows, 0, "sum_n", EMH_T_INT64, L);
		is_null_cell(rows, 0, "sum_x", EMH_T_DOUBLE, L);
		is_null_cell(rows, 0, "avg_n", EMH_T_DOUBLE, L);
		is_null_cell(rows, 0, "min_note", EMH_T_TEXT, L);
		is_null_cell(rows, 0, "max_ts", EMH_T_TIMESTAMP, L);
	}
	emh_agg *b = xagg(r);
	emh_agg_count(b, "c");
	emh_agg_having(b, "c", EMH_OP_GT, emh_v_int64(0));
	if ((rows = agg_run(r, q, b, "no row, having count > 0")))
		is_int(emh_rows_count(rows), 0, "no row, having count > 0: having rejects the one row");
	emh_agg *c = xagg(r);
	emh_agg_group_by(c, "grp");
	emh_agg_count(c, "c");
	if ((rows = agg_run(r, q, c, "no row, group by grp")))
		is_int(emh_rows_count(rows), 0, "no row, group by grp: no group");

	/* groups whose n is NULL throughout: SUM/AVG/MIN are NULL, not 0 */
	L = "groups of NULLs only";
	hand g[4], h;
	hand_count(g, &h, keep_n_null);
	q = xquery(r);
	emh_q_where(q, emh_q_is_null(q, "n"));
	emh_agg *d = xagg(r);
	emh_agg_count(d, NULL);
	emh_agg_count_distinct(d, "n", NULL);
	emh_agg_sum(d, "n", NULL);
	emh_agg_avg(d, "n", NULL);
	emh_agg_min(d, "n", NULL);
	if ((rows = agg_run(r, q, d, L))) {
		is_i64_cell(rows, 0, "count", h.count, L);
		is_i64_cell(rows, 0, "count_distinct_n", 0, L);
		is_null_cell(rows, 0, "sum_n", EMH_T_INT64, L);
		is_null_cell(rows, 0, "avg_n", EMH_T_DOUBLE, L);
		is_null_cell(rows, 0, "min_n", EMH_T_INT32, L);
	}
}

static void t_agg_overflow(qsuite *qs)
{
	emh_em *em = xfork(qs->s, NULL);
	emh_repo *r = xrepo(em, &qs->e[Q_AGGBIG]);
	emh_error err;
	int rc = 0;
	static const int64_t vals[] = {INT64_MAX - 5, 10, 3};
	for (size_t i = 0; i < 3 && !rc; i++) {
		void *p;
		if ((rc = emh_repo_new(r, &p, &err)) == 0)
			((conf_aggbig *)p)->v = vals[i];
	}
	if (!rc)
		rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "sum overflow: seed INT64_MAX - 5, 10 and 3");
	emh_agg *a = xagg(r);
	emh_agg_sum(a, "v", NULL);
	emh_rows *rows = NULL;
	rc = emh_repo_aggregate(r, NULL, a, &rows, &err);
	if (!ok(rc != 0, "a sum beyond int64 fails (never a wrapped or rounded value)")) {
		const emh_value *v = rows ? emh_rows_value(rows, 0, 0) : NULL;
		diag("  got %s %" PRId64, v ? emh_type_name(v->type) : "?", v ? v->u.i64 : 0);
	} else {
		diag("  %s: %s", st_name(rc), err.message);
	}
	emh_em_close(em);
}

static void t_agg_errors(qsuite *qs, emh_repo *r)
{
	emh_rows *rows;
	emh_error err;
	int rc;
	struct {
		const char *label;
		void (*build)(emh_agg *a);
	} const bad[] = {
		{"sum of a text field", NULL}, {"group by an unknown field", NULL}, {"having on an unknown column", NULL},
		{"count with a field", NULL},  {"group by a blob field", NULL},     {"two columns of one name", NULL},
		{"no column at all", NULL},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		emh_agg *a = xagg(r);
		switch (i) {
		case 0: emh_agg_sum(a, "grp", NULL); break;
		case 1: emh_agg_group_by(a, "nope"); break;
		case 2: emh_agg_count(a, NULL); emh_agg_having(a, "nope", EMH_OP_GT, emh_v_int64(1)); break;
		case 3: emh_agg_add(a, EMH_AGG_COUNT, "n", NULL); break;
		case 4: emh_agg_group_by(a, "blob"); break;
		case 5: emh_agg_count(a, "c"); emh_agg_sum(a, "n", "c"); break;
		default: break;
		}
		rc = emh_repo_aggregate(r, NULL, a, &rows, &err);
		if (expect_rc(rc, EMH_EINVAL, &err, "aggregate error: %s is EMH_EINVAL", bad[i].label))
			diag("  message: %s", err.message);
	}
	emh_query *q = xquery(r);
	emh_q_order_by(q, "n", false);
	emh_agg *a = xagg(r);
	emh_agg_count(a, NULL);
	rc = emh_repo_aggregate(r, q, a, &rows, &err);
	expect_rc(rc, EMH_EINVAL, &err, "aggregate error: a query with an ordering is EMH_EINVAL (it belongs to the spec)");
	emh_repo *other = xrepo(emh_repo_em(r), &qs->e[Q_AGGBIG]);
	rc = emh_repo_aggregate(other, NULL, a, &rows, &err);
	expect_rc(rc, EMH_EINVAL, &err, "aggregate error: a spec of another entity is EMH_EINVAL");
}

static void t_aggregates(qsuite *qs)
{
	emh_em *em = xfork(qs->s, NULL);
	emh_repo *r = xrepo(em, &qs->e[Q_AGG]);
	if (!qs->agg) {
		emh_agg *a = xagg(r);
		emh_rows *rows;
		emh_error err;
		emh_agg_count(a, NULL);
		int rc = emh_repo_aggregate(r, NULL, a, &rows, &err);
		expect_rc(rc, EMH_EUNSUPPORTED, &err, "aggregate without EMH_CAP_AGGREGATE is refused (EMH_EUNSUPPORTED)");
		static const char *const cases[] = {"aggregate over every row", "group by", "having and order",
						    "aggregate shapes", "aggregate over no row", "sum overflow",
						    "aggregate errors"};
		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
			na(cases[i], "driver '%s' has no EMH_CAP_AGGREGATE", qs->s->driver);
		emh_em_close(em);
		return;
	}
	t_agg_whole(r);
	t_agg_group(r);
	t_agg_having_order(r);
	t_agg_shapes(r);
	t_agg_empty(r);
	t_agg_errors(qs, r);
	emh_em_close(em);
	t_agg_overflow(qs);
}

/* ---- iterators ---- */

/* The ids of q's rows through find, into ids (at most cap); the count, or -1. */
static long find_ids(emh_repo *r, emh_query *q, int64_t *ids, size_t cap)
{
	emh_list l;
	emh_error err;
	int rc = emh_repo_find(r, q, &l, &err);
	if (rc) {
		diag_err(rc, &err);
		return -1;
	}
	for (size_t i = 0; i < l.count && i < cap; i++)
		ids[i] = ((conf_agg *)l.items[i])->id;
	return (long)l.count;
}

/* The ids of q's rows through an iterator of pages of page rows. */
static long iter_ids(emh_repo *r, emh_query *q, size_t page, int64_t *ids, size_t cap, emh_error *err)
{
	emh_iter *it = NULL;
	void *obj;
	long n = 0;
	int rc = emh_repo_iter(r, q, &it, err);
	if (rc == 0 && page)
		rc = emh_iter_set_page_size(it, page, err);
	int more = rc;
	while (rc == 0 && (more = emh_iter_next(it, &obj, err)) == 1) {
		if ((size_t)n < cap)
			ids[n] = ((conf_agg *)obj)->id;
		n++;
	}
	if (more < 0)
		rc = more;
	if (rc == 0 && emh_iter_next(it, &obj, err) != 0)
		rc = EMH_EINVAL; /* the end is sticky */
	emh_iter_close(it);
	return rc ? rc : n;
}

static void same_ids(emh_repo *r, emh_query *fq, emh_query *iq, size_t page, const char *label)
{
	int64_t a[AGG_ROWS + 1], b[AGG_ROWS + 1];
	emh_error err;
	long nf = find_ids(r, fq, a, AGG_ROWS + 1);
	long ni = iter_ids(r, iq, page, b, AGG_ROWS + 1, &err);
	if (ni < 0) {
		ok(0, "iterator %s", label);
		diag_err((int)ni, &err);
		return;
	}
	bool same = nf == ni && memcmp(a, b, (size_t)nf * sizeof *a) == 0;
	if (!ok(same, "iterator %s (pages of %zu): the rows and order of find", label, page)) {
		diag("  find %ld rows, iterator %ld", nf, ni);
		for (long i = 0; i < nf && i < ni && i < AGG_ROWS; i++)
			if (a[i] != b[i]) {
				diag("  first difference at %ld: find id %" PRId64 ", iterator id %" PRId64, i, a[i], b[i]);
				break;
			}
	}
}

/* Build the same ordering (and condition) on a query for find and one for the iterator. */
#define BOTH(stmt)                                                                                 \
	do {                                                                                       \
		emh_query *q = fq;                                                                 \
		stmt;                                                                              \
		q = iq;                                                                            \
		stmt;                                                                              \
	} while (0)

static void t_iter(qsuite *qs)
{
	emh_em *em = xfork(qs->s, NULL);
	emh_repo *r = xrepo(em, &qs->e[Q_AGG]);
	emh_query *fq, *iq;
	emh_error err;

	fq = xquery(r), iq = xquery(r);
	BOTH(emh_q_order_by(q, "id", false));
	same_ids(r, fq, iq, 7, "without an ordering (by the key)");

	/* nullable keys with ties: the keyset continues after NULLs and ties */
	fq = xquery(r), iq = xquery(r);
	BOTH(emh_q_order_by(q, "n", false));
	emh_q_order_by(fq, "id", false);
	same_ids(r, fq, iq, 3, "by a nullable int32 ascending");
	fq = xquery(r), iq = xquery(r);
	BOTH(emh_q_order_by(q, "n", true); emh_q_order_by(q, "grp", false));
	emh_q_order_by(fq, "id", false);
	same_ids(r, fq, iq, 4, "by n descending, then a nullable text");
	fq = xquery(r), iq = xquery(r);
	BOTH(emh_q_order_by(q, "ts", true); emh_q_order_by(q, "id", true));
	same_ids(r, fq, iq, 5, "by a nullable timestamp and the key, both descending");
	fq = xquery(r), iq = xquery(r);
	BOTH(emh_q_order_by(q, "flag", false); emh_q_order_by(q, "x", false));
	emh_q_order_by(fq, "id", false);
	same_ids(r, fq, iq, 1, "by bool then a nullable double, one row per page");

	/* condition, limit and offset over several pages */
	fq = xquery(r), iq = xquery(r);
	BOTH(emh_q_where(q, emh_q_or(q, emh_q_gt(q, "n", emh_v_int32(0)), emh_q_is_null(q, "grp")));
	     emh_q_order_by(q, "grp", false); emh_q_limit(q, 7); emh_q_offset(q, 5));
	emh_q_order_by(fq, "id", false);
	same_ids(r, fq, iq, 3, "with a condition, limit 7 and offset 5");

	/* objects are read-only, the fork stays usable between rows */
	emh_iter *it;
	void *obj, *got = NULL;
	int rc = emh_repo_iter(r, NULL, &it, &err);
	if (rc == 0)
		rc = emh_iter_set_page_size(it, 2, &err);
	int rows = 0, gets = 0, more = rc;
	bool readonly = true;
	while (rc == 0 && (more = emh_iter_next(it, &obj, &err)) == 1) {
		rows++;
		emh_error e2;
		if (rows == 1) {
			((conf_agg *)obj)->flag = !((conf_agg *)obj)->flag;
			readonly = emh_repo_update(r, obj, &e2) == EMH_ESTATE;
		}
		if (emh_repo_get(r, emh_v_int64(((conf_agg *)obj)->id), &got, &e2) == 0 && got != obj)
			gets++;
	}
	OK_RC(rc ? rc : more, err, "iterator with a get of each row between two rows");
	is_int(rows, AGG_ROWS, "iterator: every row once");
	is_int(gets, AGG_ROWS, "iterator: each get, between pages, found its row as a managed object of its own");
	ok(readonly, "iterator: an object read by an iterator is not stored by emh_repo_update (EMH_ESTATE)");
	rc = emh_iter_set_page_size(it, 10, &err);
	expect_rc(rc, EMH_ESTATE, &err, "iterator: the page size is refused once rows were read");
	emh_iter_close(it);

	rc = emh_repo_iter(r, NULL, &it, &err);
	if (rc == 0) {
		rc = emh_iter_set_page_size(it, 0, &err);
		expect_rc(rc, EMH_EINVAL, &err, "iterator: page size 0 is EMH_EINVAL");
	}
	/* left open: emh_em_close closes it */
	iq = xquery(r);
	emh_q_order_by(iq, "blob", false);
	rc = emh_repo_iter(r, iq, &it, &err);
	expect_rc(rc, EMH_EINVAL, &err, "iterator: an ordering by a blob field is EMH_EINVAL");
	emh_em_close(em);
}

/* ---- pages ---- */

static void t_pages(qsuite *qs)
{
	emh_em *em = xfork(qs->s, NULL);
	emh_repo *r = xrepo(em, &qs->e[Q_AGG]);
	emh_error err;
	hand g[4], h;
	hand_count(g, &h, keep_not_null_grp);
	static const struct {
		int64_t limit, offset, count;
		const char *label;
	} cases[] = {
		{10, 0, 10, "first page"},
		{10, 30, -1, "a short last page"},
		{10, 1000, 0, "a page past the end"},
		{-1, -1, -1, "no limit"},
		{0, 0, 0, "limit 0"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		emh_query *q = xquery(r);
		emh_q_where(q, emh_q_not_null(q, "grp"));
		emh_q_order_by(q, "id", false);
		if (cases[i].limit >= 0)
			emh_q_limit(q, cases[i].limit);
		if (cases[i].offset >= 0)
			emh_q_offset(q, cases[i].offset);
		emh_page p;
		int rc = emh_repo_find_page(r, q, &p, &err);
		if (!OK_RC(rc, err, "find_page, %s", cases[i].label))
			continue;
		int64_t want = cases[i].count >= 0 ? cases[i].count
			       : cases[i].limit < 0 ? h.count : h.count - cases[i].offset;
		is_int(p.total, h.count, "find_page, %s: total counts every matching row", cases[i].label);
		is_int(p.count, want, "find_page, %s: the page's items", cases[i].label);
		bool good = true;
		for (size_t k = 0; k < p.count; k++)
			good &= ((conf_agg *)p.items[k])->grp != NULL;
		ok(good, "find_page, %s: items match the condition", cases[i].label);
	}
	/* A page the fork's pending removal makes short still counts that
	 * row, as emh_repo_count does (it is not deleted yet): the page once
	 * took itself for the last one and gave its item count as the total. */
	emh_query *q = xquery(r);
	emh_q_where(q, emh_q_not_null(q, "grp"));
	emh_q_order_by(q, "id", false);
	void *first = NULL;
	int rc = emh_repo_find_one(r, q, &first, &err);
	if (OK_RC(rc, err, "find_page, pending removal: load the first row") &&
	    OK_RC(emh_em_remove(em, first, &err), err, "find_page, pending removal: remove it, not flushed")) {
		emh_q_limit(q, 10);
		emh_page p;
		rc = emh_repo_find_page(r, q, &p, &err);
		if (OK_RC(rc, err, "find_page, pending removal: the first page")) {
			is_int(p.count, 9, "find_page, pending removal: the removed row is not among the items");
			is_int(p.total, h.count, "find_page, pending removal: total counts it, as emh_repo_count does");
		}
	}
	emh_em_close(em);
}

/* ---- locked queries ---- */

/* What loads no object refuses a lock, on every driver, before anything else. */
static void t_locked(qsuite *qs)
{
	emh_em *em = xfork(qs->s, NULL);
	emh_repo *r = xrepo(em, &qs->e[Q_AGG]);
	emh_error err;
	emh_query *q = xquery(r);
	emh_q_where(q, emh_q_not_null(q, "grp"));
	emh_q_lock(q, EMH_LOCK_UPDATE, EMH_LOCK_WAIT);
	emh_agg *a = xagg(r);
	emh_rows *rows;
	emh_agg_count(a, NULL);
	expect_rc(emh_repo_aggregate(r, q, a, &rows, &err), EMH_EINVAL, &err, "locks: an aggregate of a locked query is EMH_EINVAL");
	emh_iter *it = NULL;
	expect_rc(emh_repo_iter(r, q, &it, &err), EMH_EINVAL, &err, "locks: an iterator over a locked query is EMH_EINVAL");
	emh_iter_close(it);
	emh_page p;
	expect_rc(emh_repo_find_page(r, q, &p, &err), EMH_EINVAL, &err, "locks: find_page of a locked query is EMH_EINVAL");
	emh_em_close(em);
}

/* ---- global filters ---- */

#define TEN_A "tenant-a"
#define TEN_B "tenant-b"

static emh_em *ten_fork(qsuite *qs, const char *tenant)
{
	emh_em *em = xfork(qs->s, NULL);
	emh_error err;
	if (tenant && emh_em_set_param(em, "tenant", emh_v_text(tenant), &err) != 0)
		bail("emh_em_set_param: %s", err.message);
	return em;
}

/* Insert rows of names for tenant; their ids into ids. */
static int ten_seed(qsuite *qs, const char *tenant, const char *const *names, size_t n, int64_t *ids)
{
	emh_em *em = ten_fork(qs, tenant);
	emh_repo *r = xrepo(em, &qs->e[Q_TEN]);
	emh_error err;
	conf_ten *o[8];
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		void *p;
		if ((rc = emh_repo_new(r, &p, &err)) == 0) {
			o[i] = p;
			o[i]->name = names[i];
			o[i]->v = (int64_t)i + 1;
		}
	}
	if (!rc)
		rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "filters: %zu rows inserted by a fork of %s (tenant left unset in the objects)", n, tenant);
	bool stamped = true;
	for (size_t i = 0; i < n && !rc; i++) {
		ids[i] = o[i]->id;
		stamped &= o[i]->tenant && strcmp(o[i]->tenant, tenant) == 0;
	}
	if (!rc)
		ok(stamped, "filters: every insert stored the fork's tenant in the object");
	emh_em_close(em);
	return rc;
}

/* Every row of the table, unfiltered: (tenant, name) pairs as "t:name,..." sorted. */
static void ten_dump(qsuite *qs, char *out, size_t cap)
{
	emh_em *em = ten_fork(qs, NULL);
	emh_repo *r = xrepo(em, &qs->e[Q_TEN]);
	emh_query *q = xquery(r);
	emh_list l = {0};
	emh_error err;
	emh_q_unfiltered(q);
	emh_q_order_by(q, "id", false);
	out[0] = '\0';
	if (emh_repo_find(r, q, &l, &err) == 0)
		for (size_t i = 0; i < l.count; i++) {
			const conf_ten *o = l.items[i];
			size_t len = strlen(out);
			snprintf(out + len, cap - len, "%s%c:%s:%" PRId64, i ? "," : "", o->tenant[7], o->name, o->v);
		}
	emh_em_close(em);
}

static void t_filter_unset(qsuite *qs)
{
	emh_em *em = ten_fork(qs, NULL);
	emh_repo *r = xrepo(em, &qs->e[Q_TEN]);
	emh_error err;
	emh_list l;
	int64_t n;
	bool b;
	void *obj;
	emh_page p;
	emh_iter *it;
	emh_query *q = xquery(r);
	emh_q_where(q, emh_q_eq(q, "name", emh_v_text("shared")));
	const char *W = "filters, tenant unset";
	expect_rc(emh_repo_find(r, NULL, &l, &err), EMH_ESTATE, &err, "%s: find is EMH_ESTATE, never an unfiltered read", W);
	expect_rc(emh_repo_find(r, q, &l, &err), EMH_ESTATE, &err, "%s: find with a condition is EMH_ESTATE", W);
	expect_rc(emh_repo_find_one(r, q, &obj, &err), EMH_ESTATE, &err, "%s: find_one is EMH_ESTATE", W);
	expect_rc(emh_repo_count(r, NULL, &n, &err), EMH_ESTATE, &err, "%s: count is EMH_ESTATE", W);
	expect_rc(emh_repo_exists(r, q, &b, &err), EMH_ESTATE, &err, "%s: exists is EMH_ESTATE", W);
	expect_rc(emh_repo_get(r, emh_v_int64(1), &obj, &err), EMH_ESTATE, &err, "%s: get is EMH_ESTATE", W);
	expect_rc(emh_repo_find_page(r, q, &p, &err), EMH_ESTATE, &err, "%s: find_page is EMH_ESTATE", W);
	expect_rc(emh_repo_iter(r, NULL, &it, &err), EMH_ESTATE, &err, "%s: an iterator is EMH_ESTATE", W);
	if (qs->agg) {
		emh_agg *a = xagg(r);
		emh_rows *rows;
		emh_agg_count(a, NULL);
		expect_rc(emh_repo_aggregate(r, NULL, a, &rows, &err), EMH_ESTATE, &err, "%s: aggregate is EMH_ESTATE", W);
	} else {
		na("filters, tenant unset: aggregate is EMH_ESTATE", "driver '%s' has no EMH_CAP_AGGREGATE", qs->s->driver);
	}
	emh_sets *s = NULL;
	if (emh_repo_sets(r, &s, &err))
		bail("set list: %s", err.message);
	emh_sets_add(s, "v", emh_v_int64(1));
	expect_rc(emh_repo_update_where(r, q, s, &n, &err), EMH_ESTATE, &err, "%s: update_where is EMH_ESTATE", W);
	expect_rc(emh_repo_delete_where(r, NULL, &n, &err), EMH_ESTATE, &err, "%s: delete_where is EMH_ESTATE", W);
	emh_repo_new(r, &obj, &err);
	((conf_ten *)obj)->name = "orphan";
	expect_rc(emh_em_flush(em, &err), EMH_ESTATE, &err, "%s: an insert is EMH_ESTATE", W);
	emh_em_close(em);

	em = xfork(qs->s, NULL);
	r = xrepo(em, &qs->e[Q_TENKV]);
	emh_repo_new(r, &obj, &err);
	((conf_tenkv *)obj)->k = "k-unset";
	((conf_tenkv *)obj)->val = "x";
	expect_rc(emh_repo_upsert(r, obj, &err), EMH_ESTATE, &err, "%s: an upsert is EMH_ESTATE", W);
	emh_em_close(em);
}

/* The names of tenant's rows through every read of the API, each checked. */
static void t_filter_reads(qsuite *qs, const char *tenant, const int64_t *own, size_t nown, const int64_t *other,
			   size_t nother)
{
	emh_em *em = ten_fork(qs, tenant);
	emh_repo *r = xrepo(em, &qs->e[Q_TEN]);
	emh_error err;
	char W[64];
	snprintf(W, sizeof W, "filters, %s", tenant);

	emh_list l;
	int rc = emh_repo_find(r, NULL, &l, &err);
	bool mine = rc == 0 && l.count == nown;
	for (size_t i = 0; rc == 0 && i < l.count; i++)
		mine &= strcmp(((conf_ten *)l.items[i])->tenant, tenant) == 0;
	if (!ok(mine, "%s: find of every row gives its %zu rows only", W, nown))
		diag("  rc %s, %zu rows", st_name(rc), rc ? 0 : l.count);

	emh_query *q = xquery(r);
	emh_q_where(q, emh_q_eq(q, "name", emh_v_text("shared")));
	rc = emh_repo_find(r, q, &l, &err);
	ok(rc == 0 && l.count == 1 && strcmp(((conf_ten *)l.items[0])->tenant, tenant) == 0,
	   "%s: find of a name both tenants use gives its own row", W);

	void *obj;
	rc = emh_repo_find_one(r, q, &obj, &err);
	ok(rc == 0 && strcmp(((conf_ten *)obj)->tenant, tenant) == 0, "%s: find_one gives its own row", W);
	emh_query *q2 = xquery(r);
	emh_q_where(q2, emh_q_eq(q2, "name", emh_v_text(strcmp(tenant, TEN_A) == 0 ? "only-b" : "only-a")));
	expect_rc(emh_repo_find_one(r, q2, &obj, &err), EMH_ENOTFOUND, &err,
		  "%s: find_one of a name only the other tenant has is EMH_ENOTFOUND", W);

	int64_t n = -1;
	rc = emh_repo_count(r, NULL, &n, &err);
	ok(rc == 0 && n == (int64_t)nown, "%s: count of every row is %zu", W, nown);
	bool b = true;
	rc = emh_repo_exists(r, q2, &b, &err);
	ok(rc == 0 && !b, "%s: exists of the other tenant's name is false", W);

	rc = emh_repo_get(r, emh_v_int64(own[0]), &obj, &err);
	OK_RC(rc, err, "%s: get of its own row", W);
	for (size_t i = 0; i < nother; i++) {
		rc = emh_repo_get(r, emh_v_int64(other[i]), &obj, &err);
		if (!expect_rc(rc, EMH_ENOTFOUND, &err, "%s: get of the other tenant's id %" PRId64 " is EMH_ENOTFOUND",
			       W, other[i]) && rc == 0)
			diag("  leaked: tenant '%s'", ((conf_ten *)obj)->tenant);
	}

	emh_page p;
	q = xquery(r);
	emh_q_order_by(q, "id", false);
	emh_q_limit(q, 1);
	rc = emh_repo_find_page(r, q, &p, &err);
	ok(rc == 0 && p.total == (int64_t)nown && p.count == 1 && strcmp(((conf_ten *)p.items[0])->tenant, tenant) == 0,
	   "%s: find_page's items and total are its own", W);

	emh_iter *it = NULL;
	size_t seen = 0;
	bool all_mine = true;
	rc = emh_repo_iter(r, NULL, &it, &err);
	if (rc == 0)
		rc = emh_iter_set_page_size(it, 2, &err);
	int more = rc;
	while (rc == 0 && (more = emh_iter_next(it, &obj, &err)) == 1) {
		seen++;
		all_mine &= strcmp(((conf_ten *)obj)->tenant, tenant) == 0;
	}
	emh_iter_close(it);
	ok(rc == 0 && more == 0 && seen == nown && all_mine, "%s: an iterator reads its %zu rows only", W, nown);

	if (qs->agg) {
		emh_agg *a = xagg(r);
		emh_rows *rows;
		emh_agg_group_by(a, "tenant");
		emh_agg_count(a, "c");
		emh_agg_sum(a, "v", "s");
		rc = emh_repo_aggregate(r, NULL, a, &rows, &err);
		const emh_value *t = rc == 0 ? emh_rows_value(rows, 0, 0) : NULL;
		ok(rc == 0 && emh_rows_count(rows) == 1 && t && strcmp(t->u.s.ptr, tenant) == 0 &&
			   emh_rows_value(rows, 0, 1)->u.i64 == (int64_t)nown,
		   "%s: aggregate grouped by tenant sees one group, its own, of %zu rows", W, nown);
	} else {
		na("filters: aggregate sees its own rows", "driver '%s' has no EMH_CAP_AGGREGATE", qs->s->driver);
	}

	/* explicit opt-out: every row */
	q = xquery(r);
	emh_q_unfiltered(q);
	rc = emh_repo_count(r, q, &n, &err);
	ok(rc == 0 && n == (int64_t)(nown + nother), "%s: count of an emh_q_unfiltered query sees both tenants", W);
	emh_em_close(em);
}

static void t_filter_writes(qsuite *qs, const int64_t *a_ids, const int64_t *b_ids)
{
	char before[1024], after[1024];
	emh_error err;
	void *obj;
	const char *W = "filters, writes";
	ten_dump(qs, before, sizeof before);

	/* an object of B reached through an unfiltered read, in a fork of A */
	emh_em *em = ten_fork(qs, TEN_A);
	emh_repo *r = xrepo(em, &qs->e[Q_TEN]);
	emh_query *q = xquery(r);
	emh_q_unfiltered(q);
	emh_q_where(q, emh_q_eq(q, "id", emh_v_int64(b_ids[0])));
	int rc = emh_repo_find_one(r, q, &obj, &err);
	if (OK_RC(rc, err, "%s: a fork of A reads B's row through emh_q_unfiltered", W)) {
		conf_ten *o = obj;
		void *again = NULL;
		/* in A's identity map now: get must not hand it out */
		rc = emh_repo_get(r, emh_v_int64(b_ids[0]), &again, &err);
		expect_rc(rc, EMH_ENOTFOUND, &err, "%s: B's object in A's identity map is not returned by get", W);
		o->v = 999;
		expect_rc(emh_em_flush(em, &err), EMH_ESTATE, &err, "%s: updating B's object from a fork of A is EMH_ESTATE",
			  W);
		o->v = 1;
		expect_rc(emh_repo_remove(r, obj, &err), EMH_ESTATE, &err,
			  "%s: removing B's object from a fork of A is EMH_ESTATE", W);
	}
	emh_em_close(em);

	/* changing the filter field; an insert naming the other tenant */
	em = ten_fork(qs, TEN_A);
	r = xrepo(em, &qs->e[Q_TEN]);
	rc = emh_repo_get(r, emh_v_int64(a_ids[0]), &obj, &err);
	if (OK_RC(rc, err, "%s: A's row in A's fork", W)) {
		((conf_ten *)obj)->tenant = TEN_B;
		expect_rc(emh_em_flush(em, &err), EMH_EINVAL, &err, "%s: moving a row to another tenant is EMH_EINVAL", W);
		((conf_ten *)obj)->tenant = TEN_A;
	}
	emh_em_clear(em);
	emh_repo_new(r, &obj, &err);
	((conf_ten *)obj)->tenant = TEN_B;
	((conf_ten *)obj)->name = "smuggled";
	expect_rc(emh_em_flush(em, &err), EMH_EINVAL, &err, "%s: inserting a row of B from a fork of A is EMH_EINVAL", W);
	emh_em_close(em);

	/* the parameter changed mid-fork: the map's objects of the old value hide */
	em = ten_fork(qs, TEN_A);
	r = xrepo(em, &qs->e[Q_TEN]);
	rc = emh_repo_get(r, emh_v_int64(a_ids[1]), &obj, &err);
	emh_em_set_param(em, "tenant", emh_v_text(TEN_B), &err);
	rc = emh_repo_get(r, emh_v_int64(a_ids[1]), &obj, &err);
	expect_rc(rc, EMH_ENOTFOUND, &err, "%s: after the parameter changes to B, A's object in the map is not returned", W);
	emh_em_set_param(em, "tenant", emh_v_int64(7), &err);
	rc = emh_repo_count(r, NULL, &(int64_t){0}, &err);
	expect_rc(rc, EMH_EINVAL, &err, "%s: an int64 parameter for a text filter field is EMH_EINVAL", W);
	const emh_value *pv = emh_em_param(em, "tenant");
	ok(pv && pv->type == EMH_T_INT64 && pv->u.i64 == 7 && !emh_em_param(em, "nope"),
	   "%s: emh_em_param gives the value set, NULL for an unset name", W);
	emh_em_close(em);

	ten_dump(qs, after, sizeof after);
	is_str(after, before, "%s: the refused writes changed no row", W);

	/* writes of its own rows go through */
	em = ten_fork(qs, TEN_B);
	r = xrepo(em, &qs->e[Q_TEN]);
	rc = emh_repo_get(r, emh_v_int64(b_ids[1]), &obj, &err);
	if (rc == 0) {
		((conf_ten *)obj)->v = 42;
		rc = emh_repo_update(r, obj, &err);
	}
	OK_RC(rc, err, "%s: B updates its own row", W);
	emh_em_close(em);
}

/* The entries of one tenant ('a' or 'b') of a ten_dump, in order; with add
 * (a name, or "" for every row) each value raised by delta. */
static void ten_part(const char *dump, char tenant, const char *add, int64_t delta, char *out, size_t cap)
{
	out[0] = '\0';
	for (const char *p = dump; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char name[64];
		int64_t v;
		if (len > 2 && p[0] == tenant && sscanf(p + 2, "%63[^:]:%" SCNd64, name, &v) == 2) {
			size_t used = strlen(out);
			if (!*add || strcmp(add, name) == 0)
				v += delta;
			snprintf(out + used, cap - used, "%s%c:%s:%" PRId64, used ? "," : "", tenant, name, v);
		}
		p += len + (end != NULL);
	}
}

/* update_where and delete_where of a fork of A reach A's rows only. */
static void t_filter_set_writes(qsuite *qs)
{
	const char *W = "filters, set-based writes";
	if (!(qs->s->caps & EMH_CAP_CONDITIONAL_WRITES)) {
		na(W, "driver '%s' has no EMH_CAP_CONDITIONAL_WRITES", qs->s->driver);
		return;
	}
	char before[1024], after[1024], want[1024], got[1024];
	emh_error err;
	int64_t n = -1;
	ten_dump(qs, before, sizeof before);
	emh_em *em = ten_fork(qs, TEN_A);
	emh_repo *r = xrepo(em, &qs->e[Q_TEN]);
	emh_sets *s = NULL, *move = NULL;
	if (emh_repo_sets(r, &s, &err) || emh_repo_sets(r, &move, &err))
		bail("set list: %s", err.message);
	emh_sets_add(s, "v", emh_v_int64(100));
	emh_query *q = xquery(r);
	emh_q_where(q, emh_q_eq(q, "name", emh_v_text("shared")));
	int rc = emh_repo_update_where(r, q, s, &n, &err);
	if (OK_RC(rc, err, "%s: update_where of a name both tenants use", W))
		is_int(n, 1, "%s: it matched A's row only", W);
	rc = emh_repo_update_where(r, NULL, s, &n, &err);
	if (OK_RC(rc, err, "%s: update_where of every row", W))
		is_int(n, 4, "%s: it matched A's 4 rows only", W);
	q = xquery(r);
	emh_q_where(q, emh_q_eq(q, "name", emh_v_text("only-b")));
	rc = emh_repo_delete_where(r, q, &n, &err);
	if (OK_RC(rc, err, "%s: delete_where of a name only B has", W))
		is_int(n, 0, "%s: it matched nothing", W);
	emh_sets_value(move, "tenant", emh_v_text(TEN_B));
	expect_rc(emh_repo_update_where(r, NULL, move, &n, &err), EMH_EINVAL, &err,
		  "%s: a set list assigning the filter field is EMH_EINVAL", W);
	q = xquery(r);
	emh_q_unfiltered(q);
	expect_rc(emh_repo_delete_where(r, q, &n, &err), EMH_EINVAL, &err,
		  "%s: an emh_q_unfiltered query is EMH_EINVAL (writes stay filtered)", W);
	emh_em_close(em);

	ten_dump(qs, after, sizeof after);
	ten_part(before, 'b', "", 0, want, sizeof want);
	ten_part(after, 'b', "", 0, got, sizeof got);
	is_str(got, want, "%s: B's rows are as they were", W);
	char mid[1024];
	ten_part(before, 'a', "shared", 100, mid, sizeof mid);
	ten_part(mid, 'a', "", 100, want, sizeof want);
	ten_part(after, 'a', "", 0, got, sizeof got);
	is_str(got, want, "%s: A's rows got both updates", W);
}

static void t_filter_upsert(qsuite *qs)
{
	const char *W = "filters, upsert";
	if (!(qs->s->caps & EMH_CAP_UPSERT)) {
		na(W, "no EMH_CAP_UPSERT");
		return;
	}
	emh_error err;
	void *obj;
	emh_em *em = xfork(qs->s, NULL);
	emh_em_set_param(em, "org", emh_v_int64(1), &err);
	emh_repo *r = xrepo(em, &qs->e[Q_TENKV]);
	emh_repo_new(r, &obj, &err);
	((conf_tenkv *)obj)->k = "shared-key";
	((conf_tenkv *)obj)->val = "one";
	int rc = emh_repo_upsert(r, obj, &err);
	if (rc == EMH_EUNSUPPORTED) {
		ok(strstr(err.message, "filter") != NULL, "%s: refused where it cannot stay inside the filter (%s)", W,
		   err.message);
		emh_em_close(em);
		return;
	}
	OK_RC(rc, err, "%s: org 1 upserts a new key", W);
	ok(((conf_tenkv *)obj)->org == 1, "%s: the upsert stamped org 1", W);
	emh_repo_new(r, &obj, &err);
	((conf_tenkv *)obj)->k = "own-key";
	((conf_tenkv *)obj)->val = "v1";
	emh_repo_upsert(r, obj, &err);
	emh_em_close(em);

	em = xfork(qs->s, NULL);
	emh_em_set_param(em, "org", emh_v_int64(2), &err);
	r = xrepo(em, &qs->e[Q_TENKV]);
	emh_repo_new(r, &obj, &err);
	((conf_tenkv *)obj)->k = "shared-key";
	((conf_tenkv *)obj)->val = "two";
	rc = emh_repo_upsert(r, obj, &err);
	expect_rc(rc, EMH_ECONFLICT, &err, "%s: org 2 upserting org 1's key is EMH_ECONFLICT (not an overwrite)", W);
	emh_em_close(em);

	em = xfork(qs->s, NULL);
	emh_em_set_param(em, "org", emh_v_int64(1), &err);
	r = xrepo(em, &qs->e[Q_TENKV]);
	rc = emh_repo_get(r, emh_v_text("shared-key"), &obj, &err);
	ok(rc == 0 && strcmp(((conf_tenkv *)obj)->val, "one") == 0 && ((conf_tenkv *)obj)->org == 1,
	   "%s: org 1's row is as org 1 wrote it", W);
	emh_repo_new(r, &obj, &err);
	((conf_tenkv *)obj)->k = "own-key";
	((conf_tenkv *)obj)->val = "v2";
	rc = emh_repo_upsert(r, obj, &err);
	OK_RC(rc, err, "%s: org 1 upserts over its own row", W);
	emh_em_close(em);
	em = xfork(qs->s, NULL);
	emh_em_set_param(em, "org", emh_v_int32(1), &err);
	r = xrepo(em, &qs->e[Q_TENKV]);
	rc = emh_repo_get(r, emh_v_text("own-key"), &obj, &err);
	ok(rc == 0 && strcmp(((conf_tenkv *)obj)->val, "v2") == 0,
	   "%s: the overwrite is stored (int32 parameter, int64 field)", W);
	emh_em_close(em);
}

static void t_filters(qsuite *qs)
{
	static const char *const a_names[] = {"shared", "only-a", "a2", "a3"};
	static const char *const b_names[] = {"shared", "only-b", "b2"};
	int64_t a_ids[4], b_ids[3];
	t_filter_unset(qs);
	if (ten_seed(qs, TEN_A, a_names, 4, a_ids) || ten_seed(qs, TEN_B, b_names, 3, b_ids))
		return;
	t_filter_reads(qs, TEN_A, a_ids, 4, b_ids, 3);
	t_filter_reads(qs, TEN_B, b_ids, 3, a_ids, 4);
	t_filter_writes(qs, a_ids, b_ids);
	t_filter_set_writes(qs);
	t_filter_upsert(qs);
}

/* ---- the topic ---- */

void cf_query(suite *s)
{
	qsuite qs = {.s = s};
	emh_error err;
	qs.agg = (s->caps & EMH_CAP_AGGREGATE) != 0;
	for (int t = 0; t < Q__N; t++)
		snprintf(qs.tables[t], sizeof qs.tables[t], "conf_%ld_%s", s->pid, q_suffix[t]);
	qs.e[Q_AGG] = (emh_entity)EMH_ENTITY(conf_agg, qs.tables[Q_AGG], conf_agg_fields);
	qs.e[Q_AGGBIG] = (emh_entity)EMH_ENTITY(conf_aggbig, qs.tables[Q_AGGBIG], conf_aggbig_fields);
	qs.e[Q_TEN] = (emh_entity)EMH_ENTITY(conf_ten, qs.tables[Q_TEN], conf_ten_fields);
	qs.e[Q_TENKV] = (emh_entity)EMH_ENTITY(conf_tenkv, qs.tables[Q_TENKV], conf_tenkv_fields);
	for (int t = 0; t < Q__N; t++) {
		int rc = emh_host_register_entity(s->h, s->ctx, &qs.e[t], &err);
		if (!OK_RC(rc, err, "register entity '%s' as '%s'", qs.e[t].name, qs.e[t].table))
			return;
	}
	int rc = emh_host_sync_schema(s->h, s->ctx, &err);
	if (!OK_RC(rc, err, "sync the query-power tables") || agg_seed(&qs))
		return;
	t_aggregates(&qs);
	t_iter(&qs);
	t_pages(&qs);
	t_locked(&qs);
	t_filters(&qs);
}
