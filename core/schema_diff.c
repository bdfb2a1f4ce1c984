/* SPDX-License-Identifier: MIT */
/*
 * core/schema_diff.c: a context's database against the entities registered
 * in it: what `emhost schema diff` prints, what `migrate new --from-diff`
 * writes, and what schema = "check" refuses on.
 *
 * SQL drivers describe a table (columns with type and nullability, indexes
 * with their columns) and the core compares, writing statements from the
 * dialect: CREATE TABLE with its indexes, ADD COLUMN (a NOT NULL one with
 * the dialect's default, or refused saying why), type and nullability
 * changes where the dialect can alter a column, indexes to create and to
 * drop.  Indexes match by columns and uniqueness, not by name: a UNIQUE
 * field's index is named by each database its own way.  Columns no entity
 * knows are reported and only dropped when asked.  Document drivers compare
 * their collections themselves (.diff) and add their commands here.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <emhost/buf.h>

#include "migrate_int.h"

/* ---- a table as described ---- */

typedef struct desc_col {
	char *name, *type;
	bool nullable, used;
} desc_col;

typedef struct desc_idx {
	char *name;
	char **cols;
	size_t ncols;
	bool unique, constraint, used;
} desc_idx;

struct emh_table_desc {
	desc_col *cols;
	size_t ncols, capcols;
	desc_idx *idx;
	size_t nidx, capidx;
	char *suffix;
};

/* Room for one more element of an array of size elem. */
static int grow(void **v, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 8;
	void *p = realloc(*v, ncap * elem);
	if (!p)
		return EMH_ENOMEM;
	*v = p;
	*cap = ncap;
	return 0;
}

int emh_table_desc_column(emh_table_desc *t, const char *name, const char *type, bool nullable)
{
	if (grow((void **)&t->cols, &t->capcols, t->ncols, sizeof *t->cols))
		return EMH_ENOMEM;
	desc_col *c = &t->cols[t->ncols];
	*c = (desc_col){.name = strdup(name ? name : ""), .type = strdup(type ? type : ""), .nullable = nullable};
	if (!c->name || !c->type) {
		free(c->name);
		free(c->type);
		return EMH_ENOMEM;
	}
	t->ncols++;
	return 0;
}

int emh_table_desc_index(emh_table_desc *t, const char *name, bool unique, bool constraint,
			 const char *const *columns, size_t ncolumns)
{
	if (grow((void **)&t->idx, &t->capidx, t->nidx, sizeof *t->idx))
		return EMH_ENOMEM;
	desc_idx *x = &t->idx[t->nidx];
	*x = (desc_idx){.name = strdup(name ? name : ""), .unique = unique, .constraint = constraint};
	x->cols = calloc(ncolumns ? ncolumns : 1, sizeof *x->cols);
	bool ok = x->name && x->cols;
	for (size_t i = 0; ok && i < ncolumns; i++, x->ncols++)
		ok = (x->cols[i] = strdup(columns[i] ? columns[i] : "")) != NULL;
	if (!ok) {
		for (size_t i = 0; x->cols && i < x->ncols; i++)
			free(x->cols[i]);
		free(x->cols);
		free(x->name);
		return EMH_ENOMEM;
	}
	t->nidx++;
	return 0;
}

int emh_table_desc_create_suffix(emh_table_desc *t, const char *suffix)
{
	char *s = strdup(suffix ? suffix : "");
	if (!s)
		return EMH_ENOMEM;
	free(t->suffix);
	t->suffix = s;
	return 0;
}

static void desc_release(emh_table_desc *t)
{
	for (size_t i = 0; i < t->ncols; i++) {
		free(t->cols[i].name);
		free(t->cols[i].type);
	}
	for (size_t i = 0; i < t->nidx; i++) {
		for (size_t k = 0; k < t->idx[i].ncols; k++)
			free(t->idx[i].cols[k]);
		free(t->idx[i].cols);
		free(t->idx[i].name);
	}
	free(t->cols);
	free(t->idx);
	free(t->suffix);
	memset(t, 0, sizeof *t);
}

/* ---- the diff ---- */

struct emh_schema_diff {
	bool json; /* a document driver's: statements are JSON commands */
	emh_schema_change *v;
	size_t n, cap;
	char *script;
};

int emh__schema_diff_make(const emh_context *c, emh_schema_diff **out, emh_error *err)
{
	emh_schema_diff *d = calloc(1, sizeof *d);
	if (!d)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	d->json = c->drv->d.dialect == NULL;
	*out = d;
	return 0;
}

void emh_schema_diff_free(emh_schema_diff *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++) {
		free((char *)d->v[i].table);
		free((char *)d->v[i].what);
		free((char *)d->v[i].statement);
		free((char *)d->v[i].note);
	}
	free(d->v);
	free(d->script);
	free(d);
}

int emh_schema_diff_add(emh_schema_diff *d, int kind, const char *table, const char *what, const char *statement,
			const char *note)
{
	if (!d || grow((void **)&d->v, &d->cap, d->n, sizeof *d->v))
		return EMH_ENOMEM;
	emh_schema_change c = {
		.kind = kind,
		.table = strdup(table ? table : ""),
		.what = what ? strdup(what) : NULL,
		.statement = statement ? strdup(statement) : NULL,
		.note = note ? strdup(note) : NULL,
	};
	if (!c.table || (what && !c.what) || (statement && !c.statement) || (note && !c.note)) {
		free((char *)c.table);
		free((char *)c.what);
		free((char *)c.statement);
		free((char *)c.note);
		return EMH_ENOMEM;
	}
	d->v[d->n++] = c;
	free(d->script); /* written again on demand */
	d->script = NULL;
	return 0;
}

size_t emh_schema_diff_count(const emh_schema_diff *d) { return d ? d->n : 0; }

const emh_schema_change *emh_schema_diff_at(const emh_schema_diff *d, size_t i)
{
	return d && i < d->n ? &d->v[i] : NULL;
}

bool emh_schema_diff_differs(const emh_schema_diff *d)
{
	for (size_t i = 0; d && i < d->n; i++)
		if (d->v[i].kind != EMH_CHANGE_UNKNOWN_COLUMN)
			return true;
	return false;
}

/* "-- " before every line of note. */
static void add_comment(emh_buf *b, const char *prefix, const char *note)
{
	emh_buf_addf(b, "-- %s", prefix);
	for (const char *p = note; *p; p++) {
		emh_buf_add(b, p, 1);
		if (*p == '\n' && p[1])
			emh_buf_adds(b, "-- ");
	}
	emh_buf_adds(b, "\n");
}

const char *emh_schema_diff_script(emh_schema_diff *d)
{
	if (!d)
		return NULL;
	if (d->script)
		return d->script;
	emh_buf b = EMH_BUF_INIT;
	if (d->json) {
		size_t k = 0;
		emh_buf_adds(&b, "[");
		for (size_t i = 0; i < d->n; i++)
			if (d->v[i].statement)
				emh_buf_addf(&b, "%s\n  %s", k++ ? "," : "", d->v[i].statement);
		emh_buf_adds(&b, k ? "\n]\n" : "]\n");
	} else {
		const char *table = NULL;
		for (size_t i = 0; i < d->n; i++) {
			const emh_schema_change *c = &d->v[i];
			if (!table || strcmp(table, c->table) != 0) {
				emh_buf_addf(&b, "%s-- table %s\n", table ? "\n" : "", c->table);
				table = c->table;
			}
			if (c->note)
				add_comment(&b, c->kind == EMH_CHANGE_REFUSED ? "refused: " : "", c->note);
			if (c->statement)
				emh_buf_addf(&b, "%s;\n", c->statement);
		}
	}
	d->script = emh_buf_take(&b);
	return d->script;
}

/* ---- comparing a table with an entity (SQL) ---- */

/* name quoted for the dialect, with the quote doubled: names read from a
 * database were never validated. */
static void add_ident(emh_buf *b, const emh_sql_dialect *dl, const char *name)
{
	char q = dl->quote ? dl->quote : '"';
	emh_buf_add(b, &q, 1);
	for (const char *p = name; *p; p++) {
		emh_buf_add(b, p, 1);
		if (*p == q)
			emh_buf_add(b, &q, 1);
	}
	emh_buf_add(b, &q, 1);
}

typedef struct differ {
	emh__meta *m;
	const emh_sql_dialect *dl;
	const emh_entity *e;
	emh_schema_diff *d;
	unsigned flags;
	emh_buf sql, note;
	emh_error *err;
} differ;

/* Add a change from the differ's buffers (either may be empty: none), then empty them. */
static int add(differ *df, int kind, const char *what)
{
	int rc = df->sql.oom || df->note.oom
			 ? EMH_ENOMEM
			 : emh_schema_diff_add(df->d, kind, df->e->table, what, df->sql.len ? df->sql.ptr : NULL,
					       df->note.len ? df->note.ptr : NULL);
	emh_buf_reset(&df->sql);
	emh_buf_reset(&df->note);
	return rc ? emh_error_set(df->err, EMH_ENOMEM, "out of memory") : 0;
}

/* "ALTER TABLE t " */
static void alter_table(differ *df)
{
	emh_buf_adds(&df->sql, "ALTER TABLE ");
	add_ident(&df->sql, df->dl, df->e->table);
	emh_buf_adds(&df->sql, " ");
}

static void column_type(differ *df, int field, char *buf, size_t cap)
{
	buf[0] = '\0';
	df->dl->column_type(&df->m->pub, field, buf, cap);
}

static int diff_create_table(differ *df, const emh_table_desc *t)
{
	int rc = emh_sql_create_table(df->dl, &df->m->pub, &df->sql);
	if (rc)
		return emh_error_set(df->err, rc, "out of memory");
	if (t->suffix)
		emh_buf_adds(&df->sql, t->suffix);
	if ((rc = add(df, EMH_CHANGE_CREATE_TABLE, NULL)))
		return rc;
	for (size_t i = 0, n = emh_sql_index_count(&df->m->pub); i < n; i++) {
		const char *name = NULL;
		if (emh_sql_create_index(df->dl, &df->m->pub, i, false, &df->sql, &name))
			return emh_error_set(df->err, EMH_ENOMEM, "out of memory");
		char nm[160];
		snprintf(nm, sizeof nm, "%s", name ? name : "");
		if ((rc = add(df, EMH_CHANGE_CREATE_INDEX, nm)))
			return rc;
	}
	return 0;
}

static desc_col *find_col(emh_table_desc *t, const char *name)
{
	for (size_t i = 0; i < t->ncols; i++)
		if (strcasecmp(t->cols[i].name, name) == 0)
			return &t->cols[i];
	return NULL;
}

/* A field whose column the table lacks. */
static int diff_missing_column(differ *df, int i)
{
	const emh_field *f = &df->e->fields[i];
	char type[128], def[128];
	column_type(df, i, type, sizeof type);
	if (i == df->m->pub.pk) {
		emh_buf_addf(&df->note,
			     "table '%s' has no column '%s' for the key of entity '%s': a key column cannot be added "
			     "to a table that holds rows; create the table anew, or add the column by hand",
			     df->e->table, f->column, df->e->name);
		return add(df, EMH_CHANGE_REFUSED, f->column);
	}
	bool nullable = f->flags & EMH_F_NULLABLE;
	def[0] = '\0';
	if (!nullable && df->dl->column_default)
		df->dl->column_default(&df->m->pub, i, def, sizeof def);
	if (!nullable && (f->flags & EMH_F_UNIQUE)) {
		emh_buf_addf(&df->note,
			     "column '%s' (field '%s') is unique and NOT NULL: every row already in '%s' would get "
			     "the same default and break the uniqueness; add it nullable, fill it, then make it NOT NULL",
			     f->column, f->name, df->e->table);
		return add(df, EMH_CHANGE_REFUSED, f->column);
	}
	if (!nullable && !def[0]) {
		emh_buf_addf(&df->note,
			     "column '%s' (field '%s', %s, NOT NULL) has no default this driver can give the rows "
			     "already in '%s'; add it nullable, fill it, then make it NOT NULL",
			     f->column, f->name, emh_type_name(f->type), df->e->table);
		return add(df, EMH_CHANGE_REFUSED, f->column);
	}
	alter_table(df);
	emh_buf_adds(&df->sql, "ADD COLUMN ");
	add_ident(&df->sql, df->dl, f->column);
	emh_buf_addf(&df->sql, " %s", type);
	if (!nullable)
		emh_buf_addf(&df->sql, " NOT NULL DEFAULT %s", def);
	return add(df, EMH_CHANGE_ADD_COLUMN, f->column);
}

/* A column whose type or nullability the field does not match. */
static int diff_column(differ *df, int i, const desc_col *col)
{
	const emh_field *f = &df->e->fields[i];
	bool key = i == df->m->pub.pk;
	bool fits = !df->dl->column_fits || df->dl->column_fits(&df->m->pub, i, col->type);
	bool nullable = f->flags & EMH_F_NULLABLE;
	bool null_differs = !key && col->nullable != nullable;
	char type[128];
	if (fits && !null_differs)
		return 0;
	column_type(df, i, type, sizeof type);
	if (key || df->dl->alter == EMH_SQL_ALTER_NONE) {
		emh_buf_addf(&df->note, "column '%s' of '%s' is %s%s; field '%s' wants %s%s. ", f->column,
			     df->e->table, col->type, col->nullable ? " NULL" : " NOT NULL", f->name, type,
			     key || !nullable ? " NOT NULL" : " NULL");
		emh_buf_adds(&df->note, key ? "A key column is not altered by schema diff: do it by hand"
					    : "This database cannot alter a column in place: rebuild the table "
					      "(create the new one, copy the rows, drop the old, rename)");
		return add(df, EMH_CHANGE_REFUSED, f->column);
	}
	if (df->dl->alter == EMH_SQL_ALTER_MODIFY) {
		alter_table(df);
		emh_buf_adds(&df->sql, "MODIFY COLUMN ");
		add_ident(&df->sql, df->dl, f->column);
		emh_buf_addf(&df->sql, " %s %s", fits ? col->type : type, nullable ? "NULL" : "NOT NULL");
		if (!fits)
			emh_buf_addf(&df->note, "column '%s' has type %s, field '%s' needs %s", f->column, col->type,
				     f->name, type);
		if (null_differs && !nullable)
			emh_buf_addf(&df->note, "%sfails while a row holds NULL in '%s'", df->note.len ? "; " : "",
				     f->column);
		return add(df, EMH_CHANGE_ALTER_COLUMN, f->column);
	}
	int rc;
	if (!fits) {
		alter_table(df);
		emh_buf_adds(&df->sql, "ALTER COLUMN ");
		add_ident(&df->sql, df->dl, f->column);
		emh_buf_addf(&df->sql, " TYPE %s USING ", type);
		add_ident(&df->sql, df->dl, f->column);
		emh_buf_addf(&df->sql, "::%s", type);
		emh_buf_addf(&df->note, "column '%s' has type %s, field '%s' needs %s (fails if a value does not convert)",
			     f->column, col->type, f->name, type);
		if ((rc = add(df, EMH_CHANGE_ALTER_COLUMN, f->column)))
			return rc;
	}
	if (null_differs) {
		alter_table(df);
		emh_buf_adds(&df->sql, "ALTER COLUMN ");
		add_ident(&df->sql, df->dl, f->column);
		emh_buf_adds(&df->sql, nullable ? " DROP NOT NULL" : " SET NOT NULL");
		if (!nullable)
			emh_buf_addf(&df->note, "fails while a row holds NULL in '%s'", f->column);
		if ((rc = add(df, EMH_CHANGE_ALTER_COLUMN, f->column)))
			return rc;
	}
	return 0;
}

/* FNV-1a, to shorten an index name that would be too long for an identifier. */
static unsigned name_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* An index the entity declares: its columns, uniqueness, and the statement creating it. */
typedef struct want_idx {
	const char *cols[EMH_ENTITY_MAX_FIELDS];
	size_t ncols;
	bool unique;
	char name[80];
	int sql_index; /* index of emh_sql_create_index, or -1: a UNIQUE field's */
} want_idx;

/* The indexes m declares, in the order emh_sql_create_index numbers them, then UNIQUE fields'. */
static size_t wanted_indexes(const emh_meta *m, want_idx *w, size_t cap)
{
	const emh_entity *e = m->entity;
	size_t n = 0;
	for (size_t f = 0; f < e->nfields && n < cap; f++) {
		unsigned fl = e->fields[f].flags;
		if ((fl & EMH_F_INDEXED) && !(fl & (EMH_F_UNIQUE | EMH_F_PK))) {
			/* n read and incremented in one expression would be unsequenced */
			w[n] = (want_idx){.cols = {e->fields[f].column}, .ncols = 1, .sql_index = (int)n};
			n++;
		}
	}
	for (size_t k = 0; k < e->nindexes && n < cap; k++) {
		want_idx *x = &w[n];
		*x = (want_idx){.unique = e->indexes[k].unique, .sql_index = (int)n};
		for (const char *const *fp = e->indexes[k].fields; *fp && x->ncols < EMH_ENTITY_MAX_FIELDS; fp++)
			x->cols[x->ncols++] = e->fields[emh_entity_field_index(e, *fp)].column;
		n++;
	}
	for (size_t f = 0; f < e->nfields && n < cap; f++) {
		const emh_field *fd = &e->fields[f];
		if (!(fd->flags & EMH_F_UNIQUE) || (int)f == m->pk)
			continue;
		want_idx *x = &w[n++];
		*x = (want_idx){.cols = {fd->column}, .ncols = 1, .unique = true, .sql_index = -1};
		snprintf(x->name, sizeof x->name, "%s_%s_key", e->table, fd->column);
		if (!emh_ident_valid(x->name)) {
			char full[160];
			snprintf(full, sizeof full, "%s.%s", e->table, fd->column);
			snprintf(x->name, sizeof x->name, "%.30s_%.20s_%08x_key", e->table, fd->column, name_hash(full));
		}
	}
	return n;
}

static bool index_matches(const desc_idx *x, const want_idx *w)
{
	if (x->used || x->unique != w->unique || x->ncols != w->ncols)
		return false;
	for (size_t i = 0; i < w->ncols; i++)
		if (strcasecmp(x->cols[i], w->cols[i]) != 0)
			return false;
	return true;
}

static int diff_indexes(differ *df, emh_table_desc *t)
{
	want_idx *w = calloc(EMH_ENTITY_MAX_FIELDS * 2 + df->e->nindexes, sizeof *w);
	if (!w)
		return emh_error_set(df->err, EMH_ENOMEM, "out of memory");
	size_t nw = wanted_indexes(&df->m->pub, w, EMH_ENTITY_MAX_FIELDS * 2 + df->e->nindexes);
	bool *have = calloc(nw ? nw : 1, sizeof *have);
	int rc = have ? 0 : emh_error_set(df->err, EMH_ENOMEM, "out of memory");
	for (size_t i = 0; !rc && i < nw; i++)
		for (size_t k = 0; k < t->nidx && !have[i]; k++)
			if (index_matches(&t->idx[k], &w[i]))
				have[i] = t->idx[k].used = true;
	/* Drops first: an index of the same name may be created next. */
	for (size_t k = 0; !rc && k < t->nidx; k++) {
		const desc_idx *x = &t->idx[k];
		if (x->used)
			continue;
		emh_buf_addf(&df->note, "no entity declares index '%s'", x->name);
		if (x->constraint && df->dl->alter != EMH_SQL_ALTER_COLUMN) {
			emh_buf_adds(&df->note, ": it belongs to a UNIQUE constraint, which this database cannot drop "
						"in place; rebuild the table");
			rc = add(df, EMH_CHANGE_REFUSED, x->name);
			continue;
		}
		if (x->constraint) {
			alter_table(df);
			emh_buf_adds(&df->sql, "DROP CONSTRAINT ");
			add_ident(&df->sql, df->dl, x->name);
		} else {
			emh_buf_adds(&df->sql, "DROP INDEX ");
			add_ident(&df->sql, df->dl, x->name);
			if (df->dl->drop_index_on_table) {
				emh_buf_adds(&df->sql, " ON ");
				add_ident(&df->sql, df->dl, df->e->table);
			}
		}
		rc = add(df, EMH_CHANGE_DROP_INDEX, x->name);
	}
	for (size_t i = 0; !rc && i < nw; i++) {
		if (have[i])
			continue;
		const char *name = w[i].name;
		if (w[i].sql_index >= 0) {
			if (emh_sql_create_index(df->dl, &df->m->pub, (size_t)w[i].sql_index, false, &df->sql, &name)) {
				rc = emh_error_set(df->err, EMH_ENOMEM, "out of memory");
				break;
			}
			snprintf(w[i].name, sizeof w[i].name, "%s", name ? name : "");
		} else {
			emh_buf_adds(&df->sql, "CREATE UNIQUE INDEX ");
			add_ident(&df->sql, df->dl, w[i].name);
			emh_buf_adds(&df->sql, " ON ");
			add_ident(&df->sql, df->dl, df->e->table);
			emh_buf_adds(&df->sql, " (");
			add_ident(&df->sql, df->dl, w[i].cols[0]);
			emh_buf_adds(&df->sql, ")");
		}
		rc = add(df, EMH_CHANGE_CREATE_INDEX, w[i].name);
	}
	free(have);
	free(w);
	return rc;
}

static int diff_table(differ *df, emh_table_desc *t)
{
	int rc = 0;
	for (size_t i = 0; !rc && i < df->e->nfields; i++) {
		desc_col *col = find_col(t, df->e->fields[i].column);
		if (!col) {
			rc = diff_missing_column(df, (int)i);
			continue;
		}
		col->used = true;
		rc = diff_column(df, (int)i, col);
	}
	if (!rc)
		rc = diff_indexes(df, t);
	for (size_t k = 0; !rc && k < t->ncols; k++) {
		const desc_col *col = &t->cols[k];
		if (col->used)
			continue;
		if (df->flags & EMH_DIFF_DROP) {
			alter_table(df);
			emh_buf_adds(&df->sql, "DROP COLUMN ");
			add_ident(&df->sql, df->dl, col->name);
			emh_buf_addf(&df->note, "no field of entity '%s' maps to column '%s': dropped with its data",
				     df->e->name, col->name);
			rc = add(df, EMH_CHANGE_DROP_COLUMN, col->name);
			continue;
		}
		emh_buf_addf(&df->note, "no field of entity '%s' maps to column '%s' (%s%s): kept (--drop drops it)",
			     df->e->name, col->name, col->type, col->nullable ? "" : " NOT NULL");
		if (!col->nullable)
			emh_buf_adds(&df->note, "; inserts fail unless it has a default");
		rc = add(df, EMH_CHANGE_UNKNOWN_COLUMN, col->name);
	}
	return rc;
}

int emh__schema_diff_meta(emh__meta *m, emh_conn *conn, unsigned flags, emh_schema_diff *d, emh_error *err)
{
	const emh_driver *drv = &m->ctx->drv->d;
	const emh_entity *e = m->pub.entity;
	if (strcmp(e->table, EMH__MIGRATIONS_TABLE) == 0)
		return 0;
	if (!drv->dialect) {
		if (!drv->diff)
			return emh_error_set(err, EMH_EUNSUPPORTED, "driver '%s' cannot compare its collections (no diff member)",
					     drv->name);
		return drv->diff(conn, &m->pub, flags, d, err);
	}
	if (!drv->describe)
		return emh_error_set(err, EMH_EUNSUPPORTED, "driver '%s' cannot describe its tables (no describe member)",
				     drv->name);
	emh_table_desc t = {0};
	differ df = {.m = m, .dl = drv->dialect, .e = e, .d = d, .flags = flags, .err = err};
	int rc = drv->describe(conn, e->table, &t, err);
	if (rc == EMH_ENOTFOUND)
		rc = diff_create_table(&df, &t);
	else if (rc == 0)
		rc = diff_table(&df, &t);
	else
		emh_error_prefix(err, rc, "describing table '%s': ", e->table);
	emh_buf_release(&df.sql);
	emh_buf_release(&df.note);
	desc_release(&t);
	return rc;
}

int emh__table_exists(const emh_driver *drv, emh_conn *conn, const char *table, bool *exists, emh_error *err)
{
	emh_table_desc t = {0};
	int rc = drv->describe(conn, table, &t, err);
	desc_release(&t);
	*exists = rc == 0;
	return rc == EMH_ENOTFOUND ? 0 : rc;
}

/* The context's metas sorted by table, for a diff in a stable order. */
static emh__meta **sorted_metas(emh_context *c, size_t *n)
{
	size_t k = 0;
	for (emh__meta *m = atomic_load(&c->metas); m; m = m->next)
		k++;
	emh__meta **v = calloc(k ? k : 1, sizeof *v);
	if (!v)
		return NULL;
	k = 0;
	for (emh__meta *m = atomic_load(&c->metas); m; m = m->next)
		v[k++] = m;
	for (size_t i = 1; i < k; i++) /* few entities: insertion sort */
		for (size_t j = i; j > 0 && strcmp(v[j - 1]->pub.entity->table, v[j]->pub.entity->table) > 0; j--) {
			emh__meta *x = v[j];
			v[j] = v[j - 1];
			v[j - 1] = x;
		}
	*n = k;
	return v;
}

int emh_schema_diff_new(emh_host *h, const char *context, unsigned flags, emh_schema_diff **out, emh_error *err)
{
	*out = NULL;
	emh_context *c = emh__host_get_context(h, context, err);
	if (!c)
		return EMH_ENOCONTEXT;
	emh_schema_diff *d = NULL;
	size_t n = 0;
	emh__meta **metas = sorted_metas(c, &n);
	emh__pconn *pc = NULL;
	int rc = metas ? emh__schema_diff_make(c, &d, err) : emh_error_set(err, EMH_ENOMEM, "out of memory");
	if (!rc && n)
		rc = emh__pool_acquire(&c->pool, &pc, err);
	for (size_t i = 0; !rc && i < n; i++)
		rc = emh__schema_diff_meta(metas[i], pc->conn, flags, d, err);
	if (pc)
		emh__pool_release(&c->pool, pc, rc);
	free(metas);
	if (rc) {
		emh_schema_diff_free(d);
		emh__error_in_context(err, rc, c->name);
	} else {
		*out = d;
	}
	emh__context_put(c);
	return rc;
}

int emh__schema_check(emh__meta *m, emh_conn *conn, emh_error *err)
{
	emh_context *c = m->ctx;
	emh_schema_diff *d;
	int rc = emh__schema_diff_make(c, &d, err);
	if (rc)
		return rc;
	if ((rc = emh__schema_diff_meta(m, conn, 0, d, err)) == 0 && emh_schema_diff_differs(d)) {
		const char *script = emh_schema_diff_script(d);
		const emh_schema_change *first = NULL;
		for (size_t i = 0; i < d->n && !first; i++)
			if (d->v[i].kind != EMH_CHANGE_UNKNOWN_COLUMN)
				first = &d->v[i];
		emh__log(&c->host->log, EMH_LOG_ERROR, c->name,
			 "schema = \"check\": table '%s' differs from entity '%s'; what would bring it there:\n%s",
			 m->pub.entity->table, m->pub.entity->name, script ? script : "(out of memory)");
		char why[EMH_ERROR_MSG_MAX];
		emh__msgf(why, sizeof why,
			  "schema = \"check\": table '%s' differs from entity '%s' (%s%s); see `emhost schema diff "
			  "--context %s`",
			  m->pub.entity->table, m->pub.entity->name,
			  first->statement ? first->statement : first->note ? first->note : "",
			  d->n > 1 ? "; and more" : "", c->name);
		rc = emh__context_refuse(c, why) != 0
			     ? emh_error_set(err, EMH_ENOMEM, "out of memory refusing context '%s' (%s)", c->name, why)
			     : emh_error_set(err, EMH_ESCHEMA, "%s", why);
	}
	emh_schema_diff_free(d);
	return rc;
}
