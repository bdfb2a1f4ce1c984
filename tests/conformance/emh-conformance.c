/* SPDX-License-Identifier: MIT */
/*
 * tests/conformance/emh-conformance.c: the driver conformance suite, one TAP
 * program run unchanged against one context of any driver.
 *
 * Usage:
 *   emh-conformance [-c FILE] [-p PLUGIN_DIR] [-v] [--no-native-codes] --context NAME
 *
 *   -c FILE        libconfig file with contexts (optional)
 *   -p DIR         plugin directory; default $EMH_PLUGIN_DIR, else
 *                  $EMH_BUILDDIR/plugins-build, else the file's plugin_dir
 *   --context NAME the context under test (matched case-insensitively, so
 *                  EMH_CONTEXT_PG_URL=... gives "--context pg")
 *   -v             log the host's warnings and info lines to stderr
 *   --no-native-codes  the driver's client has no error numbers of its own:
 *                  err.native must then be 0 (driver.h), where it must
 *                  otherwise be kept non-zero
 *
 * Contexts come exactly as the host takes them: the file given with -c
 * and/or EMH_CONTEXT_<NAME>_<KEY> / EMH_CONTEXT_<NAME>_URL variables of the
 * process environment.  Examples (from a build directory):
 *
 *   EMH_CONTEXT_CONF_URL=sqlite:///tmp/c.db tests/conformance/emh-conformance --context conf
 *   EMH_CONTEXT_PG_URL=postgres://u:p@127.0.0.1:5432/db tests/conformance/emh-conformance --context pg
 *   EMH_CONTEXT_M_URL=mongodb://127.0.0.1:27017/t tests/conformance/emh-conformance --context m
 *
 * Output is TAP; the exit status is non-zero when any test failed.  A case
 * that depends on a capability the context lacks (emh_em_caps) is printed as
 * "ok N - case # SKIP not applicable: reason", never left out.
 *
 * Isolation: every table is named conf_<pid>_<name>, created with
 * emh_host_sync_schema and dropped at the end with emh_host_drop_schema (the
 * driver's drop member, or DROP TABLE for a SQL driver without one).
 *
 * Comparison rules: timestamps compare exactly (microseconds), doubles
 * exactly (they must round-trip bit for bit), text and blobs byte for byte.
 * JSON compares semantically: whitespace outside strings is insignificant,
 * object members may come back in another order, numbers compare by value
 * and strings after decoding escapes, because a document driver (or jsonb)
 * may reformat a document.
 *
 * A second context, "conf_other" (in-memory SQLite when the sqlite driver is
 * loaded), is added at run time for the cross-context case.
 */
#include "config.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <emhost/driver.h>
#include <emhost/emhost.h>

#define EMH_TAP_OWNER /* the program's TAP count (tap.h): the cf_*.c files add to it */
#include "conformance.h"

/* ---- entities (tables are named at run time) ---- */

/* Every type, nullable, plus a unique tag to find rows by. */
typedef struct conf_all {
	int64_t id;
	const char *tag;
	bool b;
	int32_t i32;
	int64_t i64;
	double d;
	const char *txt;
	emh_blob blob;
	emh_time ts;
	const char *js;
} conf_all;

static const emh_field conf_all_fields[] = {
	EMH_FIELD(conf_all, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(conf_all, tag, EMH_T_TEXT, EMH_F_UNIQUE),
	EMH_FIELD(conf_all, b, EMH_T_BOOL, EMH_F_NULLABLE),
	EMH_FIELD(conf_all, i32, EMH_T_INT32, EMH_F_NULLABLE),
	EMH_FIELD(conf_all, i64, EMH_T_INT64, EMH_F_NULLABLE),
	EMH_FIELD(conf_all, d, EMH_T_DOUBLE, EMH_F_NULLABLE),
	EMH_FIELD_COL(conf_all, txt, "txt_col", EMH_T_TEXT, EMH_F_NULLABLE),
	EMH_FIELD(conf_all, blob, EMH_T_BLOB, EMH_F_NULLABLE),
	EMH_FIELD(conf_all, ts, EMH_T_TIMESTAMP, EMH_F_NULLABLE),
	EMH_FIELD_COL(conf_all, js, "doc", EMH_T_JSON, EMH_F_NULLABLE),
};

/* The query data set. */
typedef struct conf_q {
	int64_t id;
	const char *name;
	int32_t n;
	int64_t big;
	double x;
	bool flag;
	const char *opt;
	emh_time ts;
} conf_q;

static const emh_field conf_q_fields[] = {
	EMH_FIELD(conf_q, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(conf_q, name, EMH_T_TEXT, EMH_F_INDEXED),
	EMH_FIELD(conf_q, n, EMH_T_INT32, 0),
	EMH_FIELD(conf_q, big, EMH_T_INT64, 0),
	EMH_FIELD(conf_q, x, EMH_T_DOUBLE, 0),
	EMH_FIELD(conf_q, flag, EMH_T_BOOL, 0),
	EMH_FIELD(conf_q, opt, EMH_T_TEXT, EMH_F_NULLABLE),
	EMH_FIELD(conf_q, ts, EMH_T_TIMESTAMP, 0),
};

/* Unit of work, unique violations, transactions. */
typedef struct conf_user {
	int64_t id;
	const char *email;
	int64_t a;
	const char *b;
	int32_t c;
} conf_user;

static const emh_field conf_user_fields[] = {
	EMH_FIELD(conf_user, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(conf_user, email, EMH_T_TEXT, EMH_F_UNIQUE),
	EMH_FIELD(conf_user, a, EMH_T_INT64, 0),
	EMH_FIELD(conf_user, b, EMH_T_TEXT, EMH_F_NULLABLE),
	EMH_FIELD(conf_user, c, EMH_T_INT32, EMH_F_NULLABLE),
};

/* A text primary key, for injection strings used as keys. */
typedef struct conf_kv {
	const char *k;
	const char *v;
	const char *doc;
} conf_kv;

static const emh_field conf_kv_fields[] = {
	EMH_FIELD(conf_kv, k, EMH_T_TEXT, EMH_F_PK),
	EMH_FIELD(conf_kv, v, EMH_T_TEXT, EMH_F_INDEXED),
	EMH_FIELD(conf_kv, doc, EMH_T_JSON, EMH_F_NULLABLE),
};

/* Concurrent writers. */
typedef struct conf_thr {
	int64_t id;
	int32_t worker;
	int64_t counter;
	const char *note;
} conf_thr;

static const emh_field conf_thr_fields[] = {
	EMH_FIELD(conf_thr, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(conf_thr, worker, EMH_T_INT32, EMH_F_INDEXED),
	EMH_FIELD(conf_thr, counter, EMH_T_INT64, 0),
	EMH_FIELD(conf_thr, note, EMH_T_TEXT, EMH_F_NULLABLE),
};

/* Never registered anywhere. */
typedef struct conf_unreg {
	int64_t id;
	const char *name;
} conf_unreg;

static const emh_field conf_unreg_fields[] = {
	EMH_FIELD(conf_unreg, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(conf_unreg, name, EMH_T_TEXT, 0),
};

/*
 * Relations: parents with children and tags (through a join) in the context
 * under test, and items whose owner lives in a second context.  Relations
 * point at entities, so these are file-scope (tables named in
 * suite_entities).
 */
typedef struct cr_parent {
	int64_t id;
	const char *name;
	emh_list children;
	emh_list tags;
} cr_parent;
typedef struct cr_child {
	int64_t id;
	int64_t parent_id;
	const char *label;
	struct cr_parent *parent;
} cr_child;
typedef struct cr_tag {
	int64_t id;
	const char *name;
} cr_tag;
typedef struct cr_join {
	int64_t id;
	int64_t parent_id;
	int64_t tag_id;
} cr_join;
typedef struct cr_owner {
	const char *code; /* a text key */
	const char *name;
} cr_owner;
typedef struct cr_item {
	int64_t id;
	const char *owner_code;
	struct cr_owner *owner;
} cr_item;

enum { R_PARENT, R_CHILD, R_TAG, R_JOIN, R_OWNER, R_ITEM, R__N };
static char rel_tables[R__N][64];
static emh_entity cr_parent_entity, cr_child_entity, cr_tag_entity, cr_join_entity, cr_owner_entity, cr_item_entity;

static const emh_field cr_parent_fields[] = {
	EMH_FIELD(cr_parent, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(cr_parent, name, EMH_T_TEXT, 0),
	EMH_HAS_MANY(cr_parent, children, &cr_child_entity, "parent_id", EMH_REL_RESTRICT),
	EMH_MANY_TO_MANY(cr_parent, tags, &cr_tag_entity, &cr_join_entity, "parent_id", "tag_id"),
};
static const emh_field cr_child_fields[] = {
	EMH_FIELD(cr_child, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(cr_child, parent_id, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD(cr_child, label, EMH_T_TEXT, 0),
	EMH_BELONGS_TO(cr_child, parent, &cr_parent_entity, "parent_id", EMH_REL_CHECKED),
};
static const emh_field cr_tag_fields[] = {
	EMH_FIELD(cr_tag, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(cr_tag, name, EMH_T_TEXT, 0),
};
static const emh_field cr_join_fields[] = {
	EMH_FIELD(cr_join, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(cr_join, parent_id, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD(cr_join, tag_id, EMH_T_INT64, 0),
};
static const emh_field cr_owner_fields[] = {
	EMH_FIELD(cr_owner, code, EMH_T_TEXT, EMH_F_PK),
	EMH_FIELD(cr_owner, name, EMH_T_TEXT, 0),
};
static const emh_field cr_item_fields[] = {
	EMH_FIELD(cr_item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(cr_item, owner_code, EMH_T_TEXT, EMH_F_INDEXED),
	EMH_BELONGS_TO(cr_item, owner, &cr_owner_entity, "owner_code", EMH_REL_CHECKED),
};
static emh_entity cr_parent_entity = EMH_ENTITY(cr_parent, rel_tables[R_PARENT], cr_parent_fields);
static emh_entity cr_child_entity = EMH_ENTITY(cr_child, rel_tables[R_CHILD], cr_child_fields);
static emh_entity cr_tag_entity = EMH_ENTITY(cr_tag, rel_tables[R_TAG], cr_tag_fields);
static emh_entity cr_join_entity = EMH_ENTITY(cr_join, rel_tables[R_JOIN], cr_join_fields);
static emh_entity cr_owner_entity = EMH_ENTITY(cr_owner, rel_tables[R_OWNER], cr_owner_fields);
static emh_entity cr_item_entity = EMH_ENTITY(cr_item, rel_tables[R_ITEM], cr_item_fields);
static const char *const rel_suffix[R__N] = {"rparent", "rchild", "rtag", "rjoin", "rowner", "ritem"};

static const char *const table_suffix[T__N] = {"all", "q", "user", "kv", "thr", "unreg"};

#define OTHER_CTX "conf_other"
#define BIG_BLOB (1u << 20)
#define THREADS 8
#define THR_ROWS 40

/* ---- small helpers ---- */

const char *st_name(int rc)
{
	return rc == 0 ? "EMH_OK" : emh_status_name(rc);
}

void diag_err(int rc, const emh_error *err)
{
	if (rc == 0) {
		diag("  got EMH_OK");
		return;
	}
	diag("  got %s (%d): %s", st_name(rc), rc, err ? err->message : "");
	if (err && (err->native || err->sqlstate[0]))
		diag("  native %d sqlstate '%s' context '%s'", err->native, err->sqlstate, err->context);
}

/* conformance.h */
int expect_rc(int rc, int want, const emh_error *err, const char *fmt, ...)
{
	char name[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	if (ok(rc == want, "%s", name))
		return 1;
	diag_err(rc, err);
	diag("  expected %s", st_name(want));
	return 0;
}

/* conformance.h */
void na(const char *name, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&tap__mu);
	printf("ok %d - %s # SKIP not applicable: %s\n", ++tap__n, name, why);
	fflush(stdout);
	pthread_mutex_unlock(&tap__mu);
}

emh_em *xfork(suite *s, const char *ctx)
{
	emh_em *em = NULL;
	emh_error err;
	int rc = emh_host_fork(s->h, ctx ? ctx : s->ctx, &em, &err);
	if (rc)
		bail("cannot fork context '%s': %s: %s", ctx ? ctx : s->ctx, st_name(rc), err.message);
	return em;
}

emh_repo *xrepo(emh_em *em, const emh_entity *e)
{
	emh_repo *r = NULL;
	emh_error err;
	int rc = emh_em_repo(em, e, &r, &err);
	if (rc)
		bail("no repository of '%s' in context '%s': %s: %s", e->name, emh_em_context(em),
		     st_name(rc), err.message);
	return r;
}

emh_query *xquery(emh_repo *r)
{
	emh_query *q = NULL;
	emh_error err;
	int rc = emh_repo_query(r, &q, &err);
	if (rc)
		bail("cannot make a query: %s: %s", st_name(rc), err.message);
	return q;
}

/* Rows where text field = val, counted in a fresh fork; -1 on error (diagnosed). */
static int64_t count_text(suite *s, int t, const char *field, const char *val)
{
	emh_em *em = xfork(s, NULL);
	emh_repo *r = xrepo(em, &s->e[t]);
	emh_query *q = xquery(r);
	emh_error err;
	int64_t n = -1;

	emh_q_where(q, emh_q_eq(q, field, emh_v_text(val)));
	int rc = emh_repo_count(r, q, &n, &err);
	if (rc) {
		diag("count of %s = '%s' failed:", field, val);
		diag_err(rc, &err);
		n = -1;
	}
	emh_em_close(em);
	return n;
}

/* Load one row by int64 key in a fresh fork; returns the status. The fork
 * stays open in *emp for the caller to read the object and close. */
static int load_fresh(suite *s, int t, int64_t id, emh_em **emp, void **out, emh_error *err)
{
	*emp = xfork(s, NULL);
	return emh_repo_get(xrepo(*emp, &s->e[t]), emh_v_int64(id), out, err);
}

static bool text_eq(const char *a, const char *b)
{
	return (a && b) ? strcmp(a, b) == 0 : a == b;
}

/* ---- JSON semantic comparison ---- */

typedef struct jnode {
	char kind; /* o a s n t f z(null) */
	double num;
	char *s;   /* string value (decoded) */
	size_t slen;
	char *key; /* member name inside an object (decoded) */
	size_t klen;
	struct jnode **kids;
	size_t n;
} jnode;

static void jfree(jnode *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n; i++)
		jfree(j->kids[i]);
	free(j->kids);
	free(j->s);
	free(j->key);
	free(j);
}

static void jws(const char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

static int jhex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t jutf8(unsigned cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Decode a JSON string at *p (on the opening quote) into a malloc'd buffer. */
static int jstring(const char **p, char **out, size_t *len)
{
	const char *q = *p + 1;
	size_t cap = strlen(q) + 1, n = 0;
	char *b = malloc(cap + 4);

	if (!b)
		return -1;
	while (*q && *q != '"') {
		if (*q != '\\') {
			b[n++] = *q++;
			continue;
		}
		q++;
		unsigned cp;
		switch (*q) {
		case '"': case '\\': case '/': b[n++] = *q; break;
		case 'b': b[n++] = '\b'; break;
		case 'f': b[n++] = '\f'; break;
		case 'n': b[n++] = '\n'; break;
		case 'r': b[n++] = '\r'; break;
		case 't': b[n++] = '\t'; break;
		case 'u':
			if (jhex4(q + 1, &cp))
				goto out_free;
			q += 4;
			if (cp >= 0xD800 && cp < 0xDC00 && q[1] == '\\' && q[2] == 'u') {
				unsigned lo;
				if (jhex4(q + 3, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					q += 6;
				}
			}
			n += jutf8(cp, b + n);
			break;
		default:
			goto out_free;
		}
		q++;
	}
	if (*q != '"')
		goto out_free;
	b[n] = '\0';
	*out = b;
	*len = n;
	*p = q + 1;
	return 0;

out_free:
	free(b);
	return -1;
}

static jnode *jvalue(const char **p, int depth);

static int jpush(jnode *j, jnode *kid)
{
	jnode **k = realloc(j->kids, (j->n + 1) * sizeof *k);
	if (!k)
		return -1;
	j->kids = k;
	j->kids[j->n++] = kid;
	return 0;
}

static jnode *jvalue(const char **p, int depth)
{
	jnode *j;

	if (depth > 64)
		return NULL;
	jws(p);
	j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	if (**p == '{' || **p == '[') {
		char close = **p == '{' ? '}' : ']';
		j->kind = **p == '{' ? 'o' : 'a';
		(*p)++;
		jws(p);
		if (**p == close) {
			(*p)++;
			return j;
		}
		for (;;) {
			char *key = NULL;
			size_t klen = 0;
			jws(p);
			if (j->kind == 'o') {
				if (**p != '"' || jstring(p, &key, &klen))
					goto out_free;
				jws(p);
				if (**p != ':') {
					free(key);
					goto out_free;
				}
				(*p)++;
			}
			jnode *kid = jvalue(p, depth + 1);
			if (!kid || jpush(j, kid)) {
				free(key);
				jfree(kid);
				goto out_free;
			}
			kid->key = key;
			kid->klen = klen;
			jws(p);
			if (**p == ',') {
				(*p)++;
				continue;
			}
			if (**p == close) {
				(*p)++;
				return j;
			}
			goto out_free;
		}
	}
	if (**p == '"') {
		j->kind = 's';
		if (jstring(p, &j->s, &j->slen))
			goto out_free;
		return j;
	}
	if (strncmp(*p, "true", 4) == 0) {
		j->kind = 't';
		*p += 4;
		return j;
	}
	if (strncmp(*p, "false", 5) == 0) {
		j->kind = 'f';
		*p += 5;
		return j;
	}
	if (strncmp(*p, "null", 4) == 0) {
		j->kind = 'z';
		*p += 4;
		return j;
	}
	if (**p == '-' || (**p >= '0' && **p <= '9')) {
		char *end;
		j->kind = 'n';
		j->num = strtod(*p, &end);
		if (end == *p)
			goto out_free;
		*p = end;
		return j;
	}
out_free:
	jfree(j);
	return NULL;
}

static jnode *jparse(const char *text)
{
	const char *p = text;
	jnode *j = jvalue(&p, 0);
	if (!j)
		return NULL;
	jws(&p);
	if (*p) {
		jfree(j);
		return NULL;
	}
	return j;
}

static bool jequal(const jnode *a, const jnode *b)
{
	if (a->kind != b->kind || a->n != b->n)
		return false;
	switch (a->kind) {
	case 'n':
		return a->num == b->num;
	case 's':
		return a->slen == b->slen && memcmp(a->s, b->s, a->slen) == 0;
	case 'a':
		for (size_t i = 0; i < a->n; i++)
			if (!jequal(a->kids[i], b->kids[i]))
				return false;
		return true;
	case 'o':
		for (size_t i = 0; i < a->n; i++) {
			const jnode *ka = a->kids[i], *kb = NULL;
			for (size_t k = 0; k < b->n && !kb; k++)
				if (b->kids[k]->klen == ka->klen && memcmp(b->kids[k]->key, ka->key, ka->klen) == 0)
					kb = b->kids[k];
			if (!kb || !jequal(ka, kb))
				return false;
		}
		return true;
	default:
		return true;
	}
}

/* 1 when got and want are the same JSON value, 0 when not, -1 when got is not JSON. */
static int json_same(const char *got, const char *want)
{
	jnode *g = jparse(got), *w = jparse(want);
	int r = !g ? -1 : w && jequal(g, w) ? 1 : 0;
	if (!w)
		diag("  BUG in the suite: expected value is not JSON: %s", want);
	jfree(g);
	jfree(w);
	return r;
}

static void is_json(const char *got, const char *want, const char *label)
{
	if (!want) {
		if (!ok(got == NULL, "%s: json NULL", label))
			diag("  got: '%s'", got);
		return;
	}
	int r = got ? json_same(got, want) : 0;
	if (!ok(r == 1, "%s: json", label)) {
		diag("  got: %s%s%s", got ? "'" : "", got ? got : "(null)", got ? "'" : "");
		diag("  expected (semantically): '%s'%s", want, r < 0 ? " (got is not valid JSON)" : "");
	}
}

/* ---- set up ---- */

static void suite_entities(suite *s)
{
	s->pid = (long)getpid();
	for (int t = 0; t < T__N; t++)
		snprintf(s->tables[t], sizeof s->tables[t], "conf_%ld_%s", s->pid, table_suffix[t]);
	for (int t = 0; t < R__N; t++)
		snprintf(rel_tables[t], sizeof rel_tables[t], "conf_%ld_%s", s->pid, rel_suffix[t]);
	s->e[T_ALL] = (emh_entity)EMH_ENTITY(conf_all, s->tables[T_ALL], conf_all_fields);
	s->e[T_Q] = (emh_entity)EMH_ENTITY(conf_q, s->tables[T_Q], conf_q_fields);
	s->e[T_USER] = (emh_entity)EMH_ENTITY(conf_user, s->tables[T_USER], conf_user_fields);
	s->e[T_KV] = (emh_entity)EMH_ENTITY(conf_kv, s->tables[T_KV], conf_kv_fields);
	s->e[T_THR] = (emh_entity)EMH_ENTITY(conf_thr, s->tables[T_THR], conf_thr_fields);
	s->e[T_UNREG] = (emh_entity)EMH_ENTITY(conf_unreg, s->tables[T_UNREG], conf_unreg_fields);
}

/* The context whose name matches want case-insensitively, copied into s->ctx. */
static int suite_resolve_context(suite *s, const char *want)
{
	emh_context_info *infos = NULL;
	size_t n = 0;
	emh_error err;
	char list[1024] = "";
	int found = 0;

	int rc = emh_host_contexts(s->h, &infos, &n, &err);
	if (rc) {
		ok(0, "list contexts");
		diag_err(rc, &err);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(list);
		snprintf(list + l, sizeof list - l, "%s%s (%s)", i ? ", " : "", infos[i].name, infos[i].driver);
		if (!found && strcasecmp(infos[i].name, want) == 0) {
			snprintf(s->ctx, sizeof s->ctx, "%s", infos[i].name);
			snprintf(s->driver, sizeof s->driver, "%s", infos[i].driver ? infos[i].driver : "?");
			found = 1;
		}
	}
	emh_context_info_free(infos, n);
	if (!ok(found, "context '%s' is configured", want)) {
		diag("  contexts: %s", n ? list : "(none)");
		char up[64];
		size_t i;
		for (i = 0; want[i] && i < sizeof up - 1; i++)
			up[i] = (char)(want[i] >= 'a' && want[i] <= 'z' ? want[i] - 'a' + 'A' : want[i]);
		up[i] = '\0';
		diag("  give it with -c FILE or EMH_CONTEXT_%s_URL=...", up);
		return -1;
	}
	diag("context '%s' driver '%s'", s->ctx, s->driver);
	return 0;
}

static int suite_setup(suite *s)
{
	emh_error err;
	emh_em *em;
	int rc;

	em = xfork(s, NULL);
	rc = emh_em_caps(em, &s->caps, &err);
	emh_em_close(em);
	if (!OK_RC(rc, err, "connect and read the capabilities of context '%s'", s->ctx))
		return -1;
	emh_caps_string(s->caps, s->capstr, sizeof s->capstr);
	diag("capabilities: %s", s->capstr[0] ? s->capstr : "(none)");
	s->sql = (s->caps & EMH_CAP_SQL) != 0;

	for (int t = 0; t < T__N; t++) {
		if (t == T_UNREG)
			continue;
		rc = emh_host_register_entity(s->h, s->ctx, &s->e[t], &err);
		if (!OK_RC(rc, err, "register entity '%s' as '%s'", s->e[t].name, s->e[t].table))
			return -1;
	}
	rc = emh_host_sync_schema(s->h, s->ctx, &err);
	if (!OK_RC(rc, err, "sync schema (create the conf_%ld_* tables)", s->pid))
		return -1;
	rc = emh_host_sync_schema(s->h, s->ctx, &err);
	OK_RC(rc, err, "sync schema again is a no-op");
	return 0;
}

/* ---- CRUD of every type ---- */

struct all_vals {
	const char *tag;
	bool null_scalars; /* b, i32, i64, d, ts are NULL */
	bool b;
	int32_t i32;
	int64_t i64;
	double d;
	emh_time ts;
	const char *txt; /* NULL = NULL */
	const void *blob; /* NULL = NULL */
	size_t blen;
	const char *js; /* NULL = NULL */
};

static const char *const all_scalars[] = {"b", "i32", "i64", "d", "ts"};
static const unsigned char empty_bytes[1];

#define UTF8_TEXT                                                                                  \
	"emoji \xF0\x9F\x98\x80 clef \xF0\x9D\x84\x9E cjk \xE4\xB8\xAD\xE6\x96\x87 "                 \
	"accents caf\xC3\xA9 na\xC3\xAFve \xE2\x82\xAC"

static int all_set(emh_em *em, conf_all *o, const struct all_vals *v, emh_error *err)
{
	o->tag = v->tag;
	o->b = v->b;
	o->i32 = v->i32;
	o->i64 = v->i64;
	o->d = v->d;
	o->ts = v->ts;
	o->txt = v->txt;
	o->blob.data = v->blob;
	o->blob.len = v->blob ? v->blen : 0;
	o->js = v->js;
	for (size_t i = 0; i < sizeof all_scalars / sizeof all_scalars[0]; i++) {
		int rc = emh_em_set_null(em, o, all_scalars[i], v->null_scalars, err);
		if (rc)
			return rc;
	}
	return 0;
}

static void all_check(emh_em *em, const conf_all *o, const struct all_vals *v, const char *label)
{
	is_str(o->tag, v->tag, "%s: text tag", label);
	if (v->null_scalars) {
		for (size_t i = 0; i < sizeof all_scalars / sizeof all_scalars[0]; i++)
			ok(emh_em_is_null(em, o, all_scalars[i]), "%s: %s is NULL", label, all_scalars[i]);
	} else {
		bool nb = emh_em_is_null(em, o, "b"), ni = emh_em_is_null(em, o, "i32"),
		     nl = emh_em_is_null(em, o, "i64"), nd = emh_em_is_null(em, o, "d"),
		     nt = emh_em_is_null(em, o, "ts");
		if (!ok(!nb && o->b == v->b, "%s: bool %s", label, v->b ? "true" : "false"))
			diag("  got %s%s", o->b ? "true" : "false", nb ? " (NULL flag set)" : "");
		if (!ok(!ni && o->i32 == v->i32, "%s: int32 %" PRId32, label, v->i32))
			diag("  got %" PRId32 "%s", o->i32, ni ? " (NULL flag set)" : "");
		if (!ok(!nl && o->i64 == v->i64, "%s: int64 %" PRId64, label, v->i64))
			diag("  got %" PRId64 "%s", o->i64, nl ? " (NULL flag set)" : "");
		if (!ok(!nd && o->d == v->d && signbit(o->d) == signbit(v->d), "%s: double %.17g", label, v->d))
			diag("  got %.17g%s", o->d, nd ? " (NULL flag set)" : "");
		if (!ok(!nt && o->ts == v->ts, "%s: timestamp %" PRId64 " us (exact microseconds)", label, v->ts))
			diag("  got %" PRId64 " us%s (off by %" PRId64 ")", o->ts, nt ? " (NULL flag set)" : "",
			     o->ts - v->ts);
	}
	if (!v->txt)
		ok(o->txt == NULL, "%s: text NULL", label);
	else if (!ok(text_eq(o->txt, v->txt), "%s: text (%zu bytes, UTF-8)", label, strlen(v->txt)))
		diag("  got: '%s'\n  expected: '%s'", o->txt ? o->txt : "(null)", v->txt);
	if (!v->blob) {
		if (!ok(o->blob.data == NULL, "%s: blob NULL", label))
			diag("  got %zu bytes", o->blob.len);
	} else {
		bool same = o->blob.data && o->blob.len == v->blen &&
			    (v->blen == 0 || memcmp(o->blob.data, v->blob, v->blen) == 0);
		if (!ok(same, "%s: blob of %zu bytes, exact bytes back%s", label, v->blen,
			v->blen ? "" : " (empty, not NULL)")) {
			if (!o->blob.data)
				diag("  got NULL");
			else if (o->blob.len != v->blen)
				diag("  got %zu bytes", o->blob.len);
			else
				for (size_t i = 0; i < v->blen; i++)
					if (((const unsigned char *)o->blob.data)[i] != ((const unsigned char *)v->blob)[i]) {
						diag("  first difference at byte %zu", i);
						break;
					}
		}
	}
	is_json(o->js, v->js, label);
}

/* Insert each of vals in one flush, then reload each in a fresh fork and compare. */
static void crud_insert(suite *s, const struct all_vals *vals, size_t n, int64_t *ids)
{
	emh_em *em = xfork(s, NULL);
	emh_repo *r = xrepo(em, &s->e[T_ALL]);
	conf_all *objs[8];
	emh_error err;
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i++) {
		void *p;
		rc = emh_repo_new(r, &p, &err);
		if (!rc) {
			objs[i] = p;
			ok(objs[i]->id == 0 && objs[i]->tag == NULL && objs[i]->txt == NULL && objs[i]->blob.data == NULL,
			   "emh_repo_new gives a zeroed object (%s)", vals[i].tag);
			rc = all_set(em, objs[i], &vals[i], &err);
		}
	}
	if (!OK_RC(rc, err, "crud: new objects of every type, NULL scalars via emh_em_set_null")) {
		emh_em_close(em);
		return;
	}
	rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "crud: flush inserts %zu rows", n);
	for (size_t i = 0; i < n; i++) {
		ids[i] = rc ? 0 : objs[i]->id;
		if (!rc && !ok(objs[i]->id > 0, "crud: generated key written back (%s)", vals[i].tag))
			diag("  got id %" PRId64, objs[i]->id);
	}
	emh_em_close(em);
}

static void crud_verify(suite *s, const struct all_vals *vals, size_t n, const int64_t *ids, const char *phase)
{
	for (size_t i = 0; i < n; i++) {
		char label[128];
		emh_em *em;
		void *p = NULL;
		emh_error err;

		snprintf(label, sizeof label, "%s '%s'", phase, vals[i].tag);
		int rc = load_fresh(s, T_ALL, ids[i], &em, &p, &err);
		if (OK_RC(rc, err, "%s: get by key in a fresh fork", label))
			all_check(em, p, &vals[i], label);
		emh_em_close(em);
	}
}

static void t_crud(suite *s)
{
	unsigned char bytes256[256];
	for (int i = 0; i < 256; i++)
		bytes256[i] = (unsigned char)i;

	const struct all_vals vals[] = {
		{.tag = "max", .b = true, .i32 = INT32_MAX, .i64 = INT64_MAX, .d = 3.141592653589793,
		 .ts = INT64_C(1700000000123456), .txt = UTF8_TEXT, .blob = s->big, .blen = BIG_BLOB,
		 .js = "{\"a\": [1, 2.5, {\"b\": null}], \"s\": \"x y\", \"t\": true}"},
		{.tag = "min", .b = false, .i32 = INT32_MIN, .i64 = INT64_MIN, .d = -12345.678901,
		 .ts = -INT64_C(86400000001), .txt = "", .blob = empty_bytes, .blen = 0, .js = "[]"},
		{.tag = "mid", .b = true, .i32 = -1, .i64 = (INT64_C(1) << 32) + 1, .d = 0.1, .ts = 0,
		 .txt = s->longtxt, .blob = bytes256, .blen = sizeof bytes256,
		 .js = "{ \"n\" : -1.5,\n \"nested\": {\"deep\": [true, false, null]}, \"u\": \"caf\\u00e9 \\ud83d\\ude00\" }"},
		{.tag = "nulls", .null_scalars = true},
		/* zeros are not NULLs (a driver may ask a column's type only when it reads a zero) */
		{.tag = "zeros", .b = false, .i32 = 0, .i64 = 0, .d = 0.0, .ts = 0, .txt = "", .blob = empty_bytes,
		 .blen = 0, .js = "{\"z\": 0}"},
	};
	const size_t n = sizeof vals / sizeof vals[0];
	int64_t ids[sizeof vals / sizeof vals[0]];

	diag("crud: every type, NULLs, extremes, UTF-8, empty and %u-byte blobs", BIG_BLOB);
	crud_insert(s, vals, n, ids);
	if (!ids[0]) {
		diag("crud: insert failed, skipping the rest of crud");
		return;
	}
	crud_verify(s, vals, n, ids, "insert");

	/* Update: every field of 'max' changed, 'min' to all NULL, 'nulls' to values. */
	const struct all_vals upd[] = {
		{.tag = "max", .b = false, .i32 = 123, .i64 = -9, .d = 1e300, .ts = INT64_C(1700000000999999),
		 .txt = "updated \xF0\x9F\x98\x80", .blob = s->big + 7, .blen = 1000, .js = "{\"updated\": true}"},
		{.tag = "min", .null_scalars = true},
		{.tag = "nulls", .b = true, .i32 = 7, .i64 = 7, .d = -2.5e-300, .ts = -1, .txt = "was null",
		 .blob = empty_bytes, .blen = 0, .js = "{}"},
	};
	const int64_t upd_ids[] = {ids[0], ids[1], ids[3]};
	emh_em *em = xfork(s, NULL);
	emh_repo *r = xrepo(em, &s->e[T_ALL]);
	emh_error err;
	int rc = 0;
	for (size_t i = 0; i < 3 && !rc; i++) {
		void *p;
		rc = emh_repo_get(r, emh_v_int64(upd_ids[i]), &p, &err);
		if (!rc)
			rc = all_set(em, p, &upd[i], &err);
	}
	if (OK_RC(rc, err, "crud: load and change every field (values, to NULL, from NULL)")) {
		rc = emh_em_flush(em, &err);
		OK_RC(rc, err, "crud: flush the updates");
	}
	emh_em_close(em);
	crud_verify(s, upd, 3, upd_ids, "update");

	/* Delete. */
	em = xfork(s, NULL);
	r = xrepo(em, &s->e[T_ALL]);
	void *p;
	rc = emh_repo_get(r, emh_v_int64(ids[2]), &p, &err);
	if (!rc)
		rc = emh_em_remove(em, p, &err);
	if (!rc)
		rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "crud: remove + flush");
	emh_em_close(em);
	rc = load_fresh(s, T_ALL, ids[2], &em, &p, &err);
	expect_rc(rc, EMH_ENOTFOUND, &err, "crud: removed row is gone (EMH_ENOTFOUND)");
	emh_em_close(em);
	is_int(count_text(s, T_ALL, "tag", "mid"), 0, "crud: count of the removed tag is 0");
	is_int(count_text(s, T_ALL, "tag", "max"), 1, "crud: other rows remain");

	/* A non-nullable field refuses NULL; unknown fields are EMH_EINVAL. */
	em = xfork(s, NULL);
	r = xrepo(em, &s->e[T_ALL]);
	rc = emh_repo_new(r, &p, &err);
	if (OK_RC(rc, err, "crud: new object for NULL checks")) {
		rc = emh_em_set_null(em, p, "id", true, &err);
		expect_rc(rc, EMH_EINVAL, &err, "set_null on a non-nullable field is EMH_EINVAL");
		rc = emh_em_set_null(em, p, "no_such_field", true, &err);
		expect_rc(rc, EMH_EINVAL, &err, "set_null on an unknown field is EMH_EINVAL");
		rc = emh_em_flush(em, &err);
		expect_rc(rc, EMH_EINVAL, &err, "flush with NULL in non-nullable text 'tag' is EMH_EINVAL");
		((conf_all *)p)->tag = "fixed-null-tag";
		rc = emh_em_flush(em, &err);
		OK_RC(rc, err, "same fork: after setting the field, flush succeeds");
		ok(((conf_all *)p)->id > 0, "retried insert got its generated key");
	}
	emh_em_close(em);
}

/* ---- queries ---- */

static const struct qrow {
	const char *name;
	int32_t n;
	int64_t big;
	double x;
	bool flag;
	const char *opt;
	emh_time ts;
} qrows[] = {
	{"alpha", 1, -INT64_C(5000000000), -1.5, true, "x", 1000},
	{"beta", 2, 0, 0.25, false, NULL, 2000},
	{"gamma", 3, INT64_C(5000000000), 2.5, true, "y", 3000},
	{"delta", 4, INT64_MAX, 3.75, false, NULL, 4000},
	{"Alpha", 5, INT64_MIN, -0.125, true, "x", 5000},
	{"50%", 6, 7, 10.0, false, "z", 6000},
	{"5_0", 7, 7, 10.0, true, NULL, 7000},
	{"500", 8, 7, -10.0, false, "y", 8000},
	{"a\\b", 2, 8, 0.0, true, "x", 9000},
	{"alphabet", 9, 9, 99.5, false, "z", 10000},
};
#define QROWS (sizeof qrows / sizeof qrows[0])

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Join names with ',' (sorted unless ordered). */
static void join_names(const char **names, size_t n, bool sorted, char *out, size_t cap)
{
	size_t len = 0;
	if (sorted)
		qsort(names, n, sizeof *names, cmp_str);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s%s", i ? "," : "", names[i]);
}

/* The comma-separated list want, normalised like join_names; returns its count. */
static size_t norm_csv(const char *want, bool sorted, char *out, size_t cap)
{
	char copy[1024];
	const char *names[64];
	size_t n = 0;

	snprintf(copy, sizeof copy, "%s", want);
	for (char *tok = copy, *next; *tok && n < 64; tok = next) {
		next = strchr(tok, ',');
		if (next)
			*next++ = '\0';
		else
			next = tok + strlen(tok);
		names[n++] = tok;
	}
	join_names(names, n, sorted, out, cap);
	return n;
}

enum { QX_ORDERED = 1, QX_NOCOUNT = 2 };

/* Run q with find (and count unless QX_NOCOUNT) and compare the names. */
static void q_expect(emh_repo *r, emh_query *q, int flags, const char *want, const char *label)
{
	bool sorted = !(flags & QX_ORDERED);
	emh_list l = {0};
	emh_error err;
	char got[1024], exp[1024];
	const char *names[64];
	size_t nwant = norm_csv(want, sorted, exp, sizeof exp);

	int rc = emh_repo_find(r, q, &l, &err);
	if (rc) {
		ok(0, "query %s", label);
		diag_err(rc, &err);
	} else {
		size_t n = l.count < 64 ? l.count : 64;
		for (size_t i = 0; i < n; i++)
			names[i] = ((conf_q *)l.items[i])->name ? ((conf_q *)l.items[i])->name : "(null)";
		join_names(names, n, sorted, got, sizeof got);
		is_str(got, exp, "query %s", label);
	}
	if (flags & QX_NOCOUNT)
		return;
	int64_t cnt = -1;
	rc = emh_repo_count(r, q, &cnt, &err);
	if (rc) {
		ok(0, "query %s: count", label);
		diag_err(rc, &err);
	} else {
		is_int(cnt, nwant, "query %s: count", label);
	}
}

static void q_error(emh_repo *r, emh_query *q, const char *label)
{
	emh_list l = {0};
	emh_error err;
	int rc = emh_repo_find(r, q, &l, &err);
	if (expect_rc(rc, EMH_EINVAL, &err, "query error: %s is EMH_EINVAL at find", label))
		diag("  message: %s", err.message);
}

static int t_query_seed(suite *s, int64_t *ids)
{
	emh_em *em = xfork(s, NULL);
	emh_repo *r = xrepo(em, &s->e[T_Q]);
	conf_q *o[QROWS];
	emh_error err;
	int rc = 0;

	for (size_t i = 0; i < QROWS && !rc; i++) {
		void *p;
		rc = emh_repo_new(r, &p, &err);
		if (rc)
			break;
		o[i] = p;
		o[i]->name = qrows[i].name;
		o[i]->n = qrows[i].n;
		o[i]->big = qrows[i].big;
		o[i]->x = qrows[i].x;
		o[i]->flag = qrows[i].flag;
		o[i]->opt = qrows[i].opt;
		o[i]->ts = qrows[i].ts;
	}
	if (!rc)
		rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "query: seed %zu rows in one flush", QROWS);
	if (!rc) {
		bool asc = true;
		for (size_t i = 0; i < QROWS; i++) {
			ids[i] = o[i]->id;
			if (i && o[i]->id <= o[i - 1]->id)
				asc = false;
		}
		ok(asc, "inserts run in creation order (generated keys ascend)");
	}
	emh_em_close(em);
	return rc;
}

/*
 * Q(flags, want, label, builder calls...): a fresh query on r, built by the
 * calls, then run and compared by q_expect; W(c) sets its condition.  For
 * the t_query_* subtests, which each have r and q in scope.
 */
#define Q(flags, want, label, ...)                                                                 \
	do {                                                                                       \
		q = xquery(r);                                                                     \
		__VA_ARGS__;                                                                       \
		q_expect(r, q, (flags), (want), (label));                                          \
	} while (0)
#define W(c) emh_q_where(q, (c))
/* paging needs a total order: n, then the key */
#define BY_N_ID emh_q_order_by(q, "n", false); emh_q_order_by(q, "id", false)

/* Comparisons on every type. */
static void t_query_compare(emh_repo *r)
{
	emh_query *q;

	diag("queries: comparisons on int32, int64, double, bool, text, timestamp");
	Q(0, "alpha,beta,gamma,delta,Alpha,50%,5_0,500,a\\b,alphabet", "no condition (every row)", (void)0);
	/* comparisons on int32 */
	Q(0, "beta,a\\b", "eq int32", W(emh_q_eq(q, "n", emh_v_int32(2))));
	Q(0, "alpha,gamma,delta,Alpha,50%,5_0,500,alphabet", "ne int32", W(emh_q_ne(q, "n", emh_v_int32(2))));
	Q(0, "alpha,beta,a\\b", "lt int32", W(emh_q_lt(q, "n", emh_v_int32(3))));
	Q(0, "alpha,beta,gamma,a\\b", "le int32", W(emh_q_le(q, "n", emh_v_int32(3))));
	Q(0, "500,alphabet", "gt int32", W(emh_q_gt(q, "n", emh_v_int32(7))));
	Q(0, "5_0,500,alphabet", "ge int32", W(emh_q_ge(q, "n", emh_v_int32(7))));
	Q(0, "Alpha", "eq int32 field with an int64 value", W(emh_q_eq(q, "n", emh_v_int64(5))));
	/* int64 */
	Q(0, "gamma,delta,50%,5_0,500,a\\b,alphabet", "gt int64 0", W(emh_q_gt(q, "big", emh_v_int64(0))));
	Q(0, "alpha,Alpha", "lt int64 0", W(emh_q_lt(q, "big", emh_v_int64(0))));
	Q(0, "Alpha", "eq INT64_MIN", W(emh_q_eq(q, "big", emh_v_int64(INT64_MIN))));
	Q(0, "delta", "eq INT64_MAX", W(emh_q_eq(q, "big", emh_v_int64(INT64_MAX))));
	Q(0, "alpha,Alpha", "le int64 -5000000000", W(emh_q_le(q, "big", emh_v_int64(-INT64_C(5000000000)))));
	Q(0, "beta,gamma,delta,50%,5_0,500,a\\b,alphabet", "ge int64 0", W(emh_q_ge(q, "big", emh_v_int64(0))));
	/* double */
	Q(0, "alpha,Alpha,500", "lt double 0", W(emh_q_lt(q, "x", emh_v_double(0))));
	Q(0, "beta", "eq double 0.25", W(emh_q_eq(q, "x", emh_v_double(0.25))));
	Q(0, "50%,5_0,alphabet", "ge double 10", W(emh_q_ge(q, "x", emh_v_double(10.0))));
	Q(0, "beta,gamma,delta,50%,5_0,a\\b,alphabet", "gt double -0.125", W(emh_q_gt(q, "x", emh_v_double(-0.125))));
	Q(0, "alpha,gamma,delta,Alpha,50%,5_0,500,beta,alphabet", "ne double 0", W(emh_q_ne(q, "x", emh_v_double(0))));
	/* bool */
	Q(0, "alpha,gamma,Alpha,5_0,a\\b", "eq bool true", W(emh_q_eq(q, "flag", emh_v_bool(true))));
	Q(0, "beta,delta,50%,500,alphabet", "ne bool true", W(emh_q_ne(q, "flag", emh_v_bool(true))));
	/* text: case-sensitive equality */
	Q(0, "alpha", "eq text (case-sensitive)", W(emh_q_eq(q, "name", emh_v_text("alpha"))));
	Q(0, "", "eq text ALPHA matches nothing", W(emh_q_eq(q, "name", emh_v_text("ALPHA"))));
	Q(0, "beta,gamma,delta,Alpha,50%,5_0,500,a\\b,alphabet", "ne text", W(emh_q_ne(q, "name", emh_v_text("alpha"))));
	Q(0, "a\\b", "eq text with a backslash", W(emh_q_eq(q, "name", emh_v_text("a\\b"))));
	/* timestamp */
	Q(0, "Alpha,50%,5_0", "timestamp range (ge and lt)",
	  W(emh_q_and(q, emh_q_ge(q, "ts", emh_v_time(5000)), emh_q_lt(q, "ts", emh_v_time(8000)))));
	Q(0, "a\\b", "eq timestamp with an int64 value", W(emh_q_eq(q, "ts", emh_v_int64(9000))));
	Q(0, "alphabet", "gt timestamp", W(emh_q_gt(q, "ts", emh_v_time(9500))));
}

static void t_query_in_like(emh_repo *r)
{
	emh_query *q;

	diag("queries: IN lists, LIKE patterns and escapes");
	{
		const emh_value ns[] = {emh_v_int32(1), emh_v_int32(3), emh_v_int32(5)};
		const emh_value names[] = {emh_v_text("beta"), emh_v_text("delta"), emh_v_text("nope")};
		const emh_value bigs[] = {emh_v_int64(INT64_MIN), emh_v_int64(7)};
		const emh_value xs[] = {emh_v_double(10.0), emh_v_double(0.0)};
		Q(0, "alpha,gamma,Alpha", "in int32", W(emh_q_in(q, "n", ns, 3)));
		Q(0, "beta,delta", "in text", W(emh_q_in(q, "name", names, 3)));
		Q(0, "Alpha,50%,5_0,500", "in int64", W(emh_q_in(q, "big", bigs, 2)));
		Q(0, "50%,5_0,a\\b", "in double", W(emh_q_in(q, "x", xs, 2)));
		Q(0, "", "in empty list matches nothing", W(emh_q_in(q, "n", NULL, 0)));
		Q(0, "alpha,beta,gamma,delta,Alpha,50%,5_0,500,a\\b,alphabet", "not (in empty list) matches every row",
		  W(emh_q_not(q, emh_q_in(q, "n", NULL, 0))));
		Q(0, "gamma", "in empty list or eq", W(emh_q_or(q, emh_q_in(q, "n", NULL, 0), emh_q_eq(q, "n", emh_v_int32(3)))));
	}
	/* LIKE */
	Q(0, "alpha,alphabet", "like 'al%' (case-sensitive)", W(emh_q_like(q, "name", "al%")));
	Q(0, "Alpha", "like 'Al%'", W(emh_q_like(q, "name", "Al%")));
	Q(0, "alpha,beta,gamma,delta,Alpha", "like '%a'", W(emh_q_like(q, "name", "%a")));
	Q(0, "alpha,Alpha", "like '_lpha'", W(emh_q_like(q, "name", "_lpha")));
	Q(0, "alpha,Alpha,alphabet", "like '%lph%'", W(emh_q_like(q, "name", "%lph%")));
	Q(0, "5_0,500", "like '5_0' (_ is a wildcard)", W(emh_q_like(q, "name", "5_0")));
	Q(0, "5_0", "like '5\\_0' (escaped _ is literal)", W(emh_q_like(q, "name", "5\\_0")));
	Q(0, "50%,500", "like '50%' (% is a wildcard)", W(emh_q_like(q, "name", "50%")));
	Q(0, "50%", "like '50\\%' (escaped % is literal)", W(emh_q_like(q, "name", "50\\%")));
	Q(0, "50%", "like '%\\%' (ends with a literal %)", W(emh_q_like(q, "name", "%\\%")));
	Q(0, "a\\b", "like 'a\\\\b' (escaped backslash is literal)", W(emh_q_like(q, "name", "a\\\\b")));
	Q(0, "alpha,beta,gamma,delta,Alpha,50%,5_0,500,a\\b,alphabet", "like '%'", W(emh_q_like(q, "name", "%")));
	Q(0, "", "like 'ALPHA' matches nothing (case-sensitive)", W(emh_q_like(q, "name", "ALPHA")));
	Q(0, "alpha", "like without wildcards", W(emh_q_like(q, "name", "alpha")));
	{
		char pat[64];
		size_t need = emh_like_escape(pat, sizeof pat, "50%_\\");
		if (!ok(strcmp(pat, "50\\%\\_\\\\") == 0 && need == strlen(pat), "emh_like_escape escapes %% _ and \\"))
			diag("  got '%s' (%zu)", pat, need);
		emh_like_escape(pat, sizeof pat, "50%");
		Q(0, "50%", "like with emh_like_escape('50%')", W(emh_q_like(q, "name", pat)));
	}
}

static void t_query_logic(emh_repo *r)
{
	emh_query *q;

	diag("queries: NULL tests, AND / OR / NOT nesting");
	Q(0, "beta,delta,5_0", "is_null", W(emh_q_is_null(q, "opt")));
	Q(0, "alpha,gamma,Alpha,50%,500,a\\b,alphabet", "not_null", W(emh_q_not_null(q, "opt")));
	Q(0, "alpha,Alpha,a\\b", "eq on a nullable column skips NULLs", W(emh_q_eq(q, "opt", emh_v_text("x"))));
	/* AND / OR / NOT nesting */
	Q(0, "alpha,5_0,a\\b", "and(flag, or(n<3, n>6))",
	  W(emh_q_and(q, emh_q_eq(q, "flag", emh_v_bool(true)),
		      emh_q_or(q, emh_q_lt(q, "n", emh_v_int32(3)), emh_q_gt(q, "n", emh_v_int32(6))))));
	Q(0, "alpha,gamma,a\\b", "not(or(is_null, n>=5))",
	  W(emh_q_not(q, emh_q_or(q, emh_q_is_null(q, "opt"), emh_q_ge(q, "n", emh_v_int32(5))))));
	Q(0, "beta,gamma,delta,Alpha,50%,5_0,500", "not(like 'a%')", W(emh_q_not(q, emh_q_like(q, "name", "a%"))));
	Q(0, "alpha,50%,500", "or(and(eq, eq), and(not(eq), eq))",
	  W(emh_q_or(q, emh_q_and(q, emh_q_eq(q, "name", emh_v_text("alpha")), emh_q_eq(q, "n", emh_v_int32(1))),
		     emh_q_and(q, emh_q_not(q, emh_q_eq(q, "flag", emh_v_bool(true))),
			       emh_q_eq(q, "big", emh_v_int64(7))))));
	Q(0, "beta,delta,50%,500", "and of three",
	  W(emh_q_and(q, emh_q_gt(q, "n", emh_v_int32(1)), emh_q_lt(q, "n", emh_v_int32(9)),
		      emh_q_eq(q, "flag", emh_v_bool(false)))));
	Q(0, "alpha", "or of one", W(emh_q_or(q, emh_q_eq(q, "n", emh_v_int32(1)))));
	Q(0, "alpha", "not(not(eq))", W(emh_q_not(q, emh_q_not(q, emh_q_eq(q, "n", emh_v_int32(1))))));
	Q(0, "alpha,Alpha", "where replaced by a later where",
	  W(emh_q_eq(q, "n", emh_v_int32(2))); W(emh_q_like(q, "name", "_lpha")));
}

static void t_query_order_paging(emh_repo *r)
{
	emh_query *q;

	diag("queries: ordering by several fields, limit and offset");
	Q(QX_ORDERED, "alphabet,50%,5_0,delta,gamma,beta,a\\b,Alpha,alpha,500", "order x desc, n asc",
	  emh_q_order_by(q, "x", true); emh_q_order_by(q, "n", false));
	Q(QX_ORDERED, "alphabet,500,50%,delta,beta,5_0,Alpha,gamma,a\\b,alpha", "order flag asc, n desc",
	  emh_q_order_by(q, "flag", false); emh_q_order_by(q, "n", true));
	Q(QX_ORDERED, "delta,gamma,alphabet,a\\b,50%,5_0,500,beta,alpha,Alpha", "order big desc, ts asc",
	  emh_q_order_by(q, "big", true); emh_q_order_by(q, "ts", false));
	Q(QX_ORDERED, "a\\b,5_0,Alpha,gamma,alpha", "where flag, order ts desc",
	  W(emh_q_eq(q, "flag", emh_v_bool(true))); emh_q_order_by(q, "ts", true));
	/* paging on a total order (n asc, id asc) */
	Q(QX_ORDERED | QX_NOCOUNT, "alpha,beta,a\\b,gamma,delta,Alpha,50%,5_0,500,alphabet", "order n, id (ties by key)",
	  BY_N_ID);
	Q(QX_ORDERED | QX_NOCOUNT, "alpha,beta,a\\b", "limit 3", BY_N_ID; emh_q_limit(q, 3));
	Q(QX_ORDERED | QX_NOCOUNT, "gamma,delta,Alpha", "limit 3 offset 3", BY_N_ID; emh_q_limit(q, 3); emh_q_offset(q, 3));
	Q(QX_ORDERED | QX_NOCOUNT, "alphabet", "limit 3 offset 9", BY_N_ID; emh_q_limit(q, 3); emh_q_offset(q, 9));
	Q(QX_ORDERED | QX_NOCOUNT, "500,alphabet", "offset 8 without limit", BY_N_ID; emh_q_offset(q, 8));
	Q(QX_ORDERED | QX_NOCOUNT, "", "offset past the end", BY_N_ID; emh_q_offset(q, 10));
	Q(QX_ORDERED | QX_NOCOUNT, "", "limit 0", BY_N_ID; emh_q_limit(q, 0));
	Q(QX_ORDERED | QX_NOCOUNT, "alpha,beta,a\\b,gamma,delta,Alpha,50%,5_0,500,alphabet", "limit larger than the table",
	  BY_N_ID; emh_q_limit(q, 100));
	Q(QX_ORDERED | QX_NOCOUNT, "delta,50%", "where + order + limit 2 offset 1",
	  W(emh_q_eq(q, "flag", emh_v_bool(false))); BY_N_ID; emh_q_limit(q, 2); emh_q_offset(q, 1));
}

static void t_query_count_find_one(emh_repo *r)
{
	emh_query *q;
	emh_error err;
	int rc;

	diag("queries: count, exists, find_one");
	int64_t n = -1;
	bool yes = false;
	rc = emh_repo_count(r, NULL, &n, &err);
	if (OK_RC(rc, err, "count every row (q NULL)"))
		is_int(n, QROWS, "count every row = %zu", QROWS);
	q = xquery(r);
	BY_N_ID;
	emh_q_limit(q, 2);
	emh_q_offset(q, 1);
	rc = emh_repo_count(r, q, &n, &err);
	if (OK_RC(rc, err, "count with limit/offset/order"))
		is_int(n, QROWS, "count ignores limit, offset and order");
	q = xquery(r);
	W(emh_q_eq(q, "n", emh_v_int32(1)));
	rc = emh_repo_exists(r, q, &yes, &err);
	if (OK_RC(rc, err, "exists (match)"))
		ok(yes, "exists is true for a matching row");
	q = xquery(r);
	W(emh_q_eq(q, "n", emh_v_int32(42)));
	yes = true;
	rc = emh_repo_exists(r, q, &yes, &err);
	if (OK_RC(rc, err, "exists (no match)"))
		ok(!yes, "exists is false without a match");
	rc = emh_repo_exists(r, NULL, &yes, &err);
	if (OK_RC(rc, err, "exists (q NULL)"))
		ok(yes, "exists on a non-empty table is true");

	/* find_one */
	void *p = NULL;
	q = xquery(r);
	W(emh_q_eq(q, "name", emh_v_text("gamma")));
	rc = emh_repo_find_one(r, q, &p, &err);
	if (OK_RC(rc, err, "find_one (one match)"))
		is_str(((conf_q *)p)->name, "gamma", "find_one returns the match");
	q = xquery(r);
	emh_q_order_by(q, "n", true);
	rc = emh_repo_find_one(r, q, &p, &err);
	if (OK_RC(rc, err, "find_one (many, ordered)"))
		is_str(((conf_q *)p)->name, "alphabet", "find_one returns the first in order");
	q = xquery(r);
	W(emh_q_eq(q, "n", emh_v_int32(42)));
	rc = emh_repo_find_one(r, q, &p, &err);
	expect_rc(rc, EMH_ENOTFOUND, &err, "find_one without a match is EMH_ENOTFOUND");
}

/* Builder mistakes surface at the call that runs the query. */
static void t_query_errors(emh_repo *r)
{
	emh_query *q;

	diag("queries: builder mistakes are EMH_EINVAL at find");
	q = xquery(r);
	W(emh_q_eq(q, "no_such_field", emh_v_int32(1)));
	q_error(r, q, "unknown field");
	q = xquery(r);
	W(emh_q_eq(q, "n", emh_v_text("1")));
	q_error(r, q, "text value on an int32 field");
	q = xquery(r);
	W(emh_q_eq(q, "n", emh_v_null(EMH_T_INT32)));
	q_error(r, q, "NULL value in a comparison");
	q = xquery(r);
	W(emh_q_like(q, "n", "1%"));
	q_error(r, q, "like on an int32 field");
	q = xquery(r);
	W(emh_q_like(q, "name", "abc\\"));
	q_error(r, q, "like pattern with a trailing lone backslash");
	q = xquery(r);
	emh_q_order_by(q, "no_such_field", false);
	q_error(r, q, "order by an unknown field");
}

/* One object per (entity, key) in a fork, another in another fork. */
static void t_identity_map(suite *s, const int64_t *ids)
{
	emh_em *em;
	emh_repo *r;
	emh_query *q;
	emh_error err;
	int rc;

	diag("identity map");
	emh_em *em2;
	void *p1 = NULL, *p2 = NULL, *p3 = NULL;
	em = xfork(s, NULL);
	r = xrepo(em, &s->e[T_Q]);
	rc = emh_repo_get(r, emh_v_int64(ids[0]), &p1, &err);
	if (OK_RC(rc, err, "get by key"))
		is_str(((conf_q *)p1)->name, "alpha", "get by key loads the row");
	rc = emh_repo_get(r, emh_v_int64(ids[0]), &p2, &err);
	if (OK_RC(rc, err, "get the same key again"))
		ok(p1 == p2, "same key twice in one fork: same object");
	q = xquery(r);
	W(emh_q_eq(q, "name", emh_v_text("alpha")));
	emh_list l = {0};
	rc = emh_repo_find(r, q, &l, &err);
	if (OK_RC(rc, err, "find the same row"))
		ok(l.count == 1 && l.items[0] == p1, "get then find in one fork: same object");
	q = xquery(r);
	W(emh_q_eq(q, "name", emh_v_text("beta")));
	rc = emh_repo_find_one(r, q, &p2, &err);
	if (OK_RC(rc, err, "find_one another row")) {
		rc = emh_repo_get(r, emh_v_int64(((conf_q *)p2)->id), &p3, &err);
		if (OK_RC(rc, err, "get the found row by key"))
			ok(p2 == p3, "find then get in one fork: same object");
	}
	rc = emh_repo_find(r, NULL, &l, &err);
	if (OK_RC(rc, err, "find every row")) {
		size_t hits = 0;
		for (size_t i = 0; i < l.count; i++)
			hits += l.items[i] == p1;
		ok(l.count == QROWS && hits == 1, "a full scan returns the mapped object once");
		/* more objects than the map's first table has buckets: it grew */
		size_t same = 0;
		for (size_t i = 0; i < l.count; i++)
			same += emh_repo_get(r, emh_v_int64(((conf_q *)l.items[i])->id), &p3, &err) == 0 &&
				p3 == l.items[i];
		is_int((int)same, (int)l.count, "after the map grew, every scanned row's key finds its object");
	}
	em2 = xfork(s, NULL);
	rc = emh_repo_get(xrepo(em2, &s->e[T_Q]), emh_v_int64(ids[0]), &p3, &err);
	if (OK_RC(rc, err, "get in another fork"))
		ok(p3 != p1 && text_eq(((conf_q *)p3)->name, "alpha"), "different forks: different objects");
	emh_em_close(em2);
	rc = emh_repo_get(r, emh_v_int64(INT64_C(2000000000)), &p3, &err);
	expect_rc(rc, EMH_ENOTFOUND, &err, "get by a key that does not exist is EMH_ENOTFOUND");
	rc = emh_repo_get(r, emh_v_int64(-5), &p3, &err);
	expect_rc(rc, EMH_ENOTFOUND, &err, "get by a negative key is EMH_ENOTFOUND");
	emh_em_close(em);
}

static void t_query(suite *s)
{
	int64_t ids[QROWS];

	diag("queries: every operator, nesting, ordering, paging, count, exists, find_one");
	if (t_query_seed(s, ids))
		return;
	emh_em *em = xfork(s, NULL);
	emh_repo *r = xrepo(em, &s->e[T_Q]);
	t_query_compare(r);
	t_query_in_like(r);
	t_query_logic(r);
	t_query_order_paging(r);
	t_query_count_find_one(r);
	t_query_errors(r);
	emh_em_close(em);
	t_identity_map(s, ids);
}
#undef Q
#undef W
#undef BY_N_ID

/* ---- unit of work ---- */

/*
 * A committed user row; returns its id, or 0 after a failed test: the
 * cases that need the row are left out, so the failure must show.
 */
static int64_t user_seed(suite *s, const char *email, int64_t a, const char *b)
{
	emh_em *em = xfork(s, NULL);
	emh_repo *r = xrepo(em, &s->e[T_USER]);
	emh_error err;
	void *p;
	int64_t id = 0;

	int rc = emh_repo_new(r, &p, &err);
	if (!rc) {
		conf_user *u = p;
		u->email = email;
		u->a = a;
		u->b = b;
		u->c = 1;
		rc = emh_em_flush(em, &err);
		id = rc ? 0 : u->id;
	}
	if (rc) {
		ok(0, "seed user '%s' (the cases that need it are left out)", email);
		diag_err(rc, &err);
	}
	emh_em_close(em);
	return id;
}

/* User id loaded in em; NULL after a failed test (the cases that need it are left out). */
static conf_user *user_get(emh_em *em, suite *s, int64_t id)
{
	void *p = NULL;
	emh_error err;
	int rc = emh_repo_get(xrepo(em, &s->e[T_USER]), emh_v_int64(id), &p, &err);
	if (rc) {
		ok(0, "load user %" PRId64 " (the cases that need it are left out)", id);
		diag_err(rc, &err);
		return NULL;
	}
	return p;
}

/* A new user object in em; NULL after a failed test (the cases that need it are left out). */
static conf_user *user_new(emh_em *em, suite *s, const char *email)
{
	void *p = NULL;
	emh_error err;
	int rc = emh_em_new(em, &s->e[T_USER], &p, &err);
	if (rc) {
		ok(0, "new user '%s' (the cases that need it are left out)", email);
		diag_err(rc, &err);
		return NULL;
	}
	((conf_user *)p)->email = email;
	return p;
}

/* The email of user id read in a fresh fork, into buf ("" when gone). */
static const char *user_email(suite *s, int64_t id, char *buf, size_t cap)
{
	emh_em *em;
	void *p = NULL;
	emh_error err;
	int rc = load_fresh(s, T_USER, id, &em, &p, &err);
	snprintf(buf, cap, "%s", rc == 0 && ((conf_user *)p)->email ? ((conf_user *)p)->email
				 : rc == EMH_ENOTFOUND ? "(gone)" : "(error)");
	emh_em_close(em);
	return buf;
}

/* new + flush: generated keys written back, in creation order */
static void t_uow_insert(suite *s)
{
	emh_error err;
	emh_em *em;
	conf_user *u1, *u2, *u3;
	char buf[128];
	int rc;

	diag("unit of work: inserts and generated keys");
	em = xfork(s, NULL);
	u1 = user_new(em, s, "gen-1");
	u2 = user_new(em, s, "gen-2");
	u3 = user_new(em, s, "gen-3");
	if (u1 && u2 && u3) {
		rc = emh_em_flush(em, &err);
		if (OK_RC(rc, err, "new x3 + flush")) {
			ok(u1->id > 0 && u2->id > u1->id && u3->id > u2->id,
			   "generated keys written back, ascending in creation order");
			rc = emh_em_flush(em, &err);
			OK_RC(rc, err, "flush with nothing pending is a no-op");
			is_str(user_email(s, u2->id, buf, sizeof buf), "gen-2", "the row is readable by its new key");
		}
	}
	emh_em_close(em);
}

/* An update sends changed columns only: forks A and B change different fields of one row. */
static void t_uow_update(suite *s)
{
	emh_error err;
	emh_em *em, *em2;
	conf_user *u1, *u2;
	int64_t id;
	int rc;

	diag("unit of work: updates send changed columns only; NULLs through updates");
	id = user_seed(s, "partial", 1, "one");
	if (id) {
		em = xfork(s, NULL);
		em2 = xfork(s, NULL);
		u1 = user_get(em, s, id);
		u2 = user_get(em2, s, id);
		if (u1 && u2) {
			u1->a = 2;
			u2->b = "two";
			rc = emh_em_flush(em, &err);
			OK_RC(rc, err, "fork A changes field a and flushes");
			rc = emh_em_flush(em2, &err);
			OK_RC(rc, err, "fork B changes field b of the same row and flushes");
		}
		emh_em_close(em);
		emh_em_close(em2);
		em = xfork(s, NULL);
		u1 = user_get(em, s, id);
		if (!ok(u1 && u1->a == 2 && text_eq(u1->b, "two") && u1->c == 1,
			"both changes survive: updates send changed columns only"))
			if (u1)
				diag("  got a=%" PRId64 " b='%s' c=%d (want a=2 b='two' c=1)", u1->a,
				     u1->b ? u1->b : "(null)", u1->c);
		/* setting a field to the value it has is not a change */
		if (u1) {
			u1->a = 2;
			rc = emh_em_flush(em, &err);
			OK_RC(rc, err, "flush after writing an unchanged value");
			/* set to NULL and back through the update path */
			u1->b = NULL;
			rc = emh_em_set_null(em, u1, "c", true, &err);
			if (!rc)
				rc = emh_em_flush(em, &err);
			OK_RC(rc, err, "update text and int32 to NULL");
		}
		emh_em_close(em);
		em = xfork(s, NULL);
		u1 = user_get(em, s, id);
		ok(u1 && u1->b == NULL && emh_em_is_null(em, u1, "c") && u1->a == 2, "NULLs written by update read back");
		emh_em_close(em);
	}
}

/* remove + flush deletes; removing a new object just drops it */
static void t_uow_remove(suite *s)
{
	emh_error err;
	emh_em *em;
	conf_user *u1;
	char buf[128];
	int64_t id;
	int rc;

	diag("unit of work: removes");
	id = user_seed(s, "to-remove", 1, NULL);
	if (id) {
		em = xfork(s, NULL);
		u1 = user_get(em, s, id);
		rc = u1 ? emh_em_remove(em, u1, &err) : EMH_ENOTFOUND;
		if (!rc)
			rc = emh_em_flush(em, &err);
		OK_RC(rc, err, "remove + flush");
		emh_em_close(em);
		is_str(user_email(s, id, buf, sizeof buf), "(gone)", "removed row is gone");
	}
	em = xfork(s, NULL);
	u1 = user_new(em, s, "new-then-removed");
	rc = u1 ? emh_em_remove(em, u1, &err) : EMH_ENOMEM;
	if (!rc)
		rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "new + remove + flush");
	emh_em_close(em);
	is_int(count_text(s, T_USER, "email", "new-then-removed"), 0, "a removed new object is never inserted");
}

/* A mixed flush: insert, update and delete of unrelated rows all apply. */
static void t_uow_mixed(suite *s)
{
	emh_error err;
	emh_em *em;
	conf_user *u1, *u2, *u3;
	int rc;

	diag("unit of work: one flush with an insert, an update and a delete");
	int64_t upd = user_seed(s, "mix-upd", 1, NULL), del = user_seed(s, "mix-del", 1, NULL);
	if (upd && del) {
		em = xfork(s, NULL);
		u1 = user_new(em, s, "mix-ins");
		u2 = user_get(em, s, upd);
		u3 = user_get(em, s, del);
		if (u1 && u2 && u3) {
			u2->a = 99;
			rc = emh_em_remove(em, u3, &err);
			if (!rc)
				rc = emh_em_flush(em, &err);
			OK_RC(rc, err, "one flush with an insert, an update and a delete");
		}
		emh_em_close(em);
		ok(count_text(s, T_USER, "email", "mix-ins") == 1 && count_text(s, T_USER, "email", "mix-del") == 0,
		   "mixed flush: inserted row present, deleted row gone");
		em = xfork(s, NULL);
		u2 = user_get(em, s, upd);
		ok(u2 && u2->a == 99, "mixed flush: updated column written");
		emh_em_close(em);
	}
}

static void t_uow_flush_order(suite *s)
{
	emh_error err;
	emh_em *em;
	conf_user *u1, *u2;
	char buf[128];
	int rc;

	/*
	 * Order: inserts, then updates, then deletes.  Each case below frees a
	 * unique value in a later phase and takes it in an earlier one, so the
	 * flush must fail with EMH_ECONFLICT at its FIRST write (nothing written,
	 * on any driver); had the phases run in another order it would succeed.
	 * Then the conflicting value is fixed and the same fork's flush succeeds.
	 */
	diag("flush order: inserts, then updates, then deletes (each case fails at its first write)");
	int64_t d1 = user_seed(s, "ord-a", 1, NULL);
	if (d1) {
		em = xfork(s, NULL);
		u1 = user_get(em, s, d1);
		u2 = user_new(em, s, "ord-a");
		rc = u1 && u2 ? emh_em_remove(em, u1, &err) : EMH_ENOMEM;
		if (!rc)
			rc = emh_em_flush(em, &err);
		expect_rc(rc, EMH_ECONFLICT, &err,
			  "delete row X + insert a row with X's unique value: EMH_ECONFLICT, inserts run before deletes");
		is_str(user_email(s, d1, buf, sizeof buf), "ord-a", "the row to delete is still there");
		if (u2) {
			ok(u2->id == 0, "the failed insert got no key");
			u2->email = "ord-a2";
			rc = emh_em_flush(em, &err);
			OK_RC(rc, err, "fixed value: the same fork flushes");
			is_str(user_email(s, d1, buf, sizeof buf), "(gone)", "delete applied after the fix");
			is_int(count_text(s, T_USER, "email", "ord-a2"), 1, "insert applied after the fix");
		}
		emh_em_close(em);
	}
	int64_t m1 = user_seed(s, "ord-b", 1, NULL);
	if (m1) {
		em = xfork(s, NULL);
		u1 = user_get(em, s, m1);
		u2 = user_new(em, s, "ord-b");
		if (u1 && u2) {
			u1->email = "ord-b-moved";
			rc = emh_em_flush(em, &err);
			expect_rc(rc, EMH_ECONFLICT, &err,
				  "update row X away from value V + insert V: EMH_ECONFLICT, inserts run before updates");
			is_str(user_email(s, m1, buf, sizeof buf), "ord-b", "the update was not written");
			u2->email = "ord-b-new";
			rc = emh_em_flush(em, &err);
			OK_RC(rc, err, "fixed value: the same fork flushes");
			is_str(user_email(s, m1, buf, sizeof buf), "ord-b-moved", "update applied after the fix");
			is_int(count_text(s, T_USER, "email", "ord-b-new"), 1, "insert applied after the fix");
		}
		emh_em_close(em);
	}
	int64_t pu = user_seed(s, "ord-c", 1, NULL), qd = user_seed(s, "ord-d", 1, NULL);
	if (pu && qd) {
		em = xfork(s, NULL);
		u1 = user_get(em, s, pu);
		u2 = user_get(em, s, qd);
		if (u1 && u2) {
			rc = emh_em_remove(em, u2, &err);
			u1->email = "ord-d";
			if (!rc)
				rc = emh_em_flush(em, &err);
			expect_rc(rc, EMH_ECONFLICT, &err,
				  "delete row Y + update row X to Y's unique value: EMH_ECONFLICT, updates run before deletes");
			is_str(user_email(s, qd, buf, sizeof buf), "ord-d", "the row to delete is still there");
			u1->email = "ord-c2";
			rc = emh_em_flush(em, &err);
			OK_RC(rc, err, "fixed value: the same fork flushes");
			is_str(user_email(s, qd, buf, sizeof buf), "(gone)", "delete applied after the fix");
			is_str(user_email(s, pu, buf, sizeof buf), "ord-c2", "update applied after the fix");
		}
		emh_em_close(em);
	}
	/* The same frees-then-takes, in two flushes, succeeds: the constraint is what the cases above hit. */
	int64_t d2 = user_seed(s, "ord-e", 1, NULL);
	if (d2) {
		em = xfork(s, NULL);
		u1 = user_get(em, s, d2);
		rc = u1 ? emh_em_remove(em, u1, &err) : EMH_ENOMEM;
		if (!rc)
			rc = emh_em_flush(em, &err);
		if (!rc && !user_new(em, s, "ord-e"))
			rc = EMH_ENOMEM;
		if (!rc)
			rc = emh_em_flush(em, &err);
		OK_RC(rc, err, "delete X, flush, insert X's value, flush: succeeds");
		emh_em_close(em);
	}
}

/* Repository shortcuts flush only their object. */
static void t_uow_shortcuts(suite *s)
{
	emh_error err;
	emh_em *em;
	emh_repo *r;
	conf_user *u1, *u2;
	char buf[128];
	int rc;

	diag("unit of work: emh_repo_insert / update / remove");
	em = xfork(s, NULL);
	r = xrepo(em, &s->e[T_USER]);
	u1 = user_new(em, s, "shortcut-pending");
	u2 = user_new(em, s, "shortcut");
	if (u1 && u2) {
		rc = emh_repo_insert(r, u2, &err);
		if (OK_RC(rc, err, "emh_repo_insert")) {
			ok(u2->id > 0 && u1->id == 0, "emh_repo_insert flushes only its object");
			is_int(count_text(s, T_USER, "email", "shortcut-pending"), 0, "the other new object is still pending");
			u2->a = 5;
			rc = emh_repo_update(r, u2, &err);
			OK_RC(rc, err, "emh_repo_update");
			emh_em *chk = xfork(s, NULL);
			conf_user *c = user_get(chk, s, u2->id);
			ok(c && c->a == 5, "emh_repo_update wrote the change");
			emh_em_close(chk);
			int64_t sid = u2->id;
			rc = emh_repo_remove(r, u2, &err);
			OK_RC(rc, err, "emh_repo_remove");
			is_str(user_email(s, sid, buf, sizeof buf), "(gone)", "emh_repo_remove deleted the row");
		}
	}
	emh_em_close(em);
	is_int(count_text(s, T_USER, "email", "shortcut-pending"), 0, "closing a fork discards unflushed objects");
}

/* Updating a row another fork deleted; an object of another fork. */
static void t_uow_other_forks(suite *s)
{
	emh_error err;
	emh_em *em, *em2;
	conf_user *u1, *u2;
	int64_t id;
	int rc;

	diag("unit of work: rows and objects of other forks");
	id = user_seed(s, "stale", 1, NULL);
	if (id) {
		em = xfork(s, NULL);
		em2 = xfork(s, NULL);
		u1 = user_get(em, s, id);
		u2 = user_get(em2, s, id);
		if (u1 && u2) {
			rc = emh_em_remove(em2, u2, &err);
			if (!rc)
				rc = emh_em_flush(em2, &err);
			OK_RC(rc, err, "fork B deletes the row");
			u1->a = 7;
			rc = emh_em_flush(em, &err);
			expect_rc(rc, EMH_ENOTFOUND, &err, "fork A updates the deleted row: EMH_ENOTFOUND");
		}
		emh_em_close(em);
		emh_em_close(em2);
	}

	/* objects of another fork of the same context */
	id = user_seed(s, "other-fork", 1, NULL);
	if (id) {
		em = xfork(s, NULL);
		em2 = xfork(s, NULL);
		u1 = user_get(em2, s, id);
		rc = u1 ? emh_em_remove(em, u1, &err) : EMH_ENOMEM;
		expect_rc(rc, EMH_EINVAL, &err, "remove an object of another fork of this context: EMH_EINVAL");
		emh_em_close(em);
		emh_em_close(em2);
	}
}

static void t_uow(suite *s)
{
	t_uow_insert(s);
	t_uow_update(s);
	t_uow_remove(s);
	t_uow_mixed(s);
	t_uow_flush_order(s);
	t_uow_shortcuts(s);
	t_uow_other_forks(s);
}

/* ---- unique violations and rollback of a failing flush ---- */

/* ---- upsert (natural keys) ---- */

static void t_upsert(suite *s)
{
	emh_error err;
	emh_em *em;
	emh_repo *r;
	conf_kv *kv;
	int rc;

	diag("upsert");
	em = xfork(s, NULL);
	r = xrepo(em, &s->e[T_KV]);
	if (!r || emh_repo_new(r, (void **)&kv, &err) != 0) {
		ok(0, "new kv for upsert");
		emh_em_close(em);
		return;
	}
	kv->k = "up-1";
	kv->v = "one";
	rc = emh_repo_upsert(r, kv, &err);
	if (!(s->caps & EMH_CAP_UPSERT)) {
		expect_rc(rc, EMH_EUNSUPPORTED, &err, "without EMH_CAP_UPSERT, upsert is EMH_EUNSUPPORTED");
		emh_em_close(em);
		na("upsert: insert then overwrite", "driver '%s' reports no upsert (caps: %s)", s->driver, s->capstr);
		return;
	}
	OK_RC(rc, err, "upsert of a new key inserts");
	conf_kv *again;
	if (emh_repo_new(r, (void **)&again, &err) == 0) {
		again->k = "up-1";
		again->v = "dup";
		expect_rc(emh_repo_upsert(r, again, &err), EMH_ESTATE, &err,
			  "upsert of a key this fork already manages: EMH_ESTATE");
		if (emh_em_remove(em, again, &err))
			diag("  dropping the refused object: %s", err.message);
	} else {
		ok(0, "new kv for the second upsert");
		diag("  %s", err.message);
	}
	emh_em_close(em);

	em = xfork(s, NULL);
	r = xrepo(em, &s->e[T_KV]);
	if (emh_repo_new(r, (void **)&kv, &err) == 0) {
		kv->k = "up-1";
		kv->v = "two";
		kv->doc = "{\"n\": 2}";
		OK_RC(emh_repo_upsert(r, kv, &err), err, "upsert of an existing key overwrites it");
		kv->v = "three";
		OK_RC(emh_em_flush(em, &err), err, "the upserted object is managed: a change flushes as an update");
	} else {
		ok(0, "new kv for the overwriting upsert");
		diag("  %s", err.message);
	}
	emh_em_close(em);

	em = xfork(s, NULL);
	r = xrepo(em, &s->e[T_KV]);
	void *p = NULL;
	if (r && OK_RC(emh_repo_get(r, emh_v_text("up-1"), &p, &err), err, "reload the upserted row")) {
		is_str(((conf_kv *)p)->v, "three", "it holds the last values");
		is_json(((conf_kv *)p)->doc, "{\"n\": 2}", "json written by the upsert");
	}
	emh_query *q;
	int64_t n = -1;
	if (r && emh_repo_query(r, &q, &err) == 0) {
		emh_q_where(q, emh_q_eq(q, "k", emh_v_text("up-1")));
		emh_repo_count(r, q, &n, &err);
	}
	is_int(n, 1, "one row for the key");
	if (p)
		OK_RC(emh_repo_remove(r, p, &err), err, "remove the upserted row (later cases count kv rows)");
	emh_repo *ur = xrepo(em, &s->e[T_USER]);
	void *u;
	if (emh_repo_new(ur, &u, &err) == 0)
		expect_rc(emh_repo_upsert(ur, u, &err), EMH_EINVAL, &err, "upsert of an entity with a generated key: EMH_EINVAL");
	else
		ok(0, "new user for the generated-key upsert: %s", err.message);
	emh_em_close(em);
}

static void t_conflict(suite *s)
{
	emh_error err;
	emh_em *em;
	conf_user *u1, *u2;
	char buf[128];
	int rc;

	diag("unique violations");
	int64_t id = user_seed(s, "uq-1", 1, NULL);
	int64_t id2 = user_seed(s, "uq-2", 1, NULL);
	if (!id || !id2)
		return;
	em = xfork(s, NULL);
	u1 = user_new(em, s, "uq-1");
	if (u1) {
		rc = emh_em_flush(em, &err);
		if (expect_rc(rc, EMH_ECONFLICT, &err, "insert of a duplicate unique value: EMH_ECONFLICT")) {
			if (!ok(s->no_native ? err.native == 0 : err.native != 0, "the driver's native code is kept (err.native %s)",
				s->no_native ? "== 0: --no-native-codes" : "!= 0"))
				diag("  message: %s", err.message);
			diag("  native %d sqlstate '%s': %s", err.native, err.sqlstate, err.message);
			like_str(err.message, "conf_user", "the message names the entity");
			is_str(err.context, s->ctx, "err.context names the context");
		}
	}
	emh_em_close(em);
	em = xfork(s, NULL);
	u2 = user_get(em, s, id2);
	if (u2) {
		u2->email = "uq-1";
		rc = emh_em_flush(em, &err);
		if (expect_rc(rc, EMH_ECONFLICT, &err, "update to a duplicate unique value: EMH_ECONFLICT"))
			ok(s->no_native ? err.native == 0 : err.native != 0, "native code kept on update");
	}
	emh_em_close(em);
	is_str(user_email(s, id2, buf, sizeof buf), "uq-2", "the conflicting update was not written");

	/* rollback of a failing flush */
	if (!(s->caps & EMH_CAP_ATOMIC_FLUSH)) {
		na("rollback on a failing flush",
		   "driver '%s' reports no atomic flush on this context (caps: %s)", s->driver, s->capstr);
		return;
	}
	diag("a failing flush rolls back everything it wrote");
	if (!user_seed(s, "rb-dup", 1, NULL))
		return;
	em = xfork(s, NULL);
	u1 = user_new(em, s, "rb-1");
	u2 = user_new(em, s, "rb-dup");
	if (u1 && u2) {
		rc = emh_em_flush(em, &err);
		if (expect_rc(rc, EMH_ECONFLICT, &err, "two inserts, the second violates a unique index: EMH_ECONFLICT"))
			like_str(err.message, "conf_user", "the error names the entity");
		is_int(count_text(s, T_USER, "email", "rb-1"), 0, "nothing committed: the first insert was rolled back");
		ok(u1->id == 0 && u2->id == 0, "fork state unchanged: no keys written back");
		u2->email = "rb-2";
		rc = emh_em_flush(em, &err);
		OK_RC(rc, err, "fixed value: the same fork flushes again");
		if (!ok(u1->id > 0 && u2->id > u1->id, "generated keys correct after the retry"))
			diag("  ids %" PRId64 " %" PRId64, u1->id, u2->id);
		is_str(user_email(s, u1->id, buf, sizeof buf), "rb-1", "first row committed under its key");
		is_str(user_email(s, u2->id, buf, sizeof buf), "rb-2", "second row committed under its key");
	}
	emh_em_close(em);

	/* an update already written then a later failure: the update is undone too */
	int64_t x = user_seed(s, "rb-x", 1, NULL), y = user_seed(s, "rb-y", 1, NULL);
	if (x && y) {
		em = xfork(s, NULL);
		u1 = user_get(em, s, x);
		u2 = user_get(em, s, y);
		if (u1 && u2) {
			u1->a = 42;
			u2->email = "rb-x";
			rc = emh_em_flush(em, &err);
			expect_rc(rc, EMH_ECONFLICT, &err, "update ok + conflicting update in one flush: EMH_ECONFLICT");
			emh_em *chk = xfork(s, NULL);
			conf_user *c = user_get(chk, s, x);
			ok(c && c->a == 1, "the first update was rolled back");
			emh_em_close(chk);
			u2->email = "rb-y2";
			rc = emh_em_flush(em, &err);
			OK_RC(rc, err, "fixed: flush writes both updates");
			chk = xfork(s, NULL);
			c = user_get(chk, s, x);
			ok(c && c->a == 42, "the first update is written by the retry");
			emh_em_close(chk);
		}
		emh_em_close(em);
	}
}

/* ---- explicit transactions ---- */

struct tx_ud {
	suite *s;
	const char *email;
	bool fail;
};

static int tx_body(emh_em *em, void *ud, emh_error *err)
{
	struct tx_ud *t = ud;
	if (!user_new(em, t->s, t->email))
		return emh_error_set(err, EMH_ENOMEM, "conformance: new failed");
	int rc = emh_em_flush(em, err);
	if (rc)
		return rc;
	if (t->fail)
		return emh_error_set(err, EMH_EINVAL, "conformance: deliberate failure");
	return 0;
}

/* Outer callback running a failing inner transaction, then succeeding. */
static int tx_outer(emh_em *em, void *ud, emh_error *err)
{
	struct tx_ud *t = ud;
	struct tx_ud inner = {t->s, "tx-cb-inner", true};
	emh_error ierr;
	if (!user_new(em, t->s, t->email))
		return emh_error_set(err, EMH_ENOMEM, "conformance: new failed");
	int rc = emh_em_flush(em, err);
	if (rc)
		return rc;
	rc = emh_em_transaction(em, tx_body, &inner, &ierr);
	if (rc != EMH_EINVAL)
		return emh_error_set(err, EMH_EDRIVER, "conformance: inner transaction returned %s, expected EMH_EINVAL",
				     st_name(rc));
	return 0;
}

static void t_transactions(suite *s)
{
	emh_error err;
	emh_em *em;
	conf_user *u;
	int rc;

	diag("explicit transactions");
	if (!(s->caps & EMH_CAP_TRANSACTIONS)) {
		const char *cases[] = {"transactions: begin/rollback", "transactions: begin/commit",
				       "transactions: callback form", "transactions: nested via savepoints"};
		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
			na(cases[i], "driver '%s' reports no transactions on this server (caps: %s)", s->driver,
			   s->capstr);
		em = xfork(s, NULL);
		rc = emh_em_begin(em, &err);
		expect_rc(rc, EMH_EUNSUPPORTED, &err, "begin without the transactions capability: EMH_EUNSUPPORTED");
		emh_em_close(em);
		return;
	}

	em = xfork(s, NULL);
	is_int(emh_em_tx_depth(em), 0, "depth 0 before begin");
	rc = emh_em_begin(em, &err);
	OK_RC(rc, err, "begin");
	is_int(emh_em_tx_depth(em), 1, "depth 1 after begin");
	u = user_new(em, s, "tx-rolled-back");
	rc = u ? emh_em_flush(em, &err) : EMH_ENOMEM;
	OK_RC(rc, err, "flush inside the transaction");
	int64_t cnt = -1;
	emh_query *q = xquery(xrepo(em, &s->e[T_USER]));
	emh_q_where(q, emh_q_eq(q, "email", emh_v_text("tx-rolled-back")));
	rc = emh_repo_count(xrepo(em, &s->e[T_USER]), q, &cnt, &err);
	if (OK_RC(rc, err, "count inside the transaction"))
		is_int(cnt, 1, "the transaction sees its own write");
	rc = emh_em_rollback(em, &err);
	OK_RC(rc, err, "rollback");
	is_int(emh_em_tx_depth(em), 0, "depth 0 after rollback");
	is_int(count_text(s, T_USER, "email", "tx-rolled-back"), 0, "rolled back: nothing committed");
	if (u) {
		ok(u->id == 0, "rollback restores the fork's bookkeeping (key cleared, object new again)");
		rc = emh_em_flush(em, &err);
		OK_RC(rc, err, "flush after the rollback");
		is_int(count_text(s, T_USER, "email", "tx-rolled-back"), 1, "the object is inserted by the next flush");
	}
	rc = emh_em_commit(em, &err);
	expect_rc(rc, EMH_ESTATE, &err, "commit without a transaction: EMH_ESTATE");
	emh_em_close(em);

	em = xfork(s, NULL);
	rc = emh_em_begin(em, &err);
	u = rc ? NULL : user_new(em, s, "tx-committed");
	rc = u ? emh_em_flush(em, &err) : rc ? rc : EMH_ENOMEM;
	if (!rc)
		rc = emh_em_commit(em, &err);
	OK_RC(rc, err, "begin, new, flush, commit");
	is_int(count_text(s, T_USER, "email", "tx-committed"), 1, "committed row visible to another fork");
	emh_em_close(em);

	/* closing a fork with an open transaction rolls it back */
	em = xfork(s, NULL);
	rc = emh_em_begin(em, &err);
	u = rc ? NULL : user_new(em, s, "tx-closed");
	rc = u ? emh_em_flush(em, &err) : rc ? rc : EMH_ENOMEM;
	OK_RC(rc, err, "begin, new, flush, then close without commit");
	emh_em_close(em);
	is_int(count_text(s, T_USER, "email", "tx-closed"), 0, "closing the fork rolled the transaction back");

	/* callback form */
	struct tx_ud good = {s, "tx-cb-ok", false}, bad = {s, "tx-cb-fail", true};
	em = xfork(s, NULL);
	rc = emh_em_transaction(em, tx_body, &good, &err);
	OK_RC(rc, err, "emh_em_transaction: fn returns 0");
	is_int(count_text(s, T_USER, "email", "tx-cb-ok"), 1, "emh_em_transaction committed");
	emh_error_clear(&err);
	rc = emh_em_transaction(em, tx_body, &bad, &err);
	expect_rc(rc, EMH_EINVAL, &err, "emh_em_transaction returns fn's status");
	is_str(err.message, "conformance: deliberate failure", "err is as fn filled it");
	is_int(count_text(s, T_USER, "email", "tx-cb-fail"), 0, "emh_em_transaction rolled back");
	is_int(emh_em_tx_depth(em), 0, "depth 0 after the callback");
	emh_em_close(em);

	/* nested */
	if (!(s->caps & EMH_CAP_SAVEPOINTS)) {
		na("transactions: nested via savepoints",
		   "driver '%s' reports no savepoints on this server (caps: %s)", s->driver, s->capstr);
		em = xfork(s, NULL);
		rc = emh_em_begin(em, &err);
		if (!rc)
			rc = emh_em_begin(em, &err);
		expect_rc(rc, EMH_EUNSUPPORTED, &err, "nested begin without savepoints: EMH_EUNSUPPORTED");
		emh_em_close(em);
		return;
	}
	em = xfork(s, NULL);
	rc = emh_em_begin(em, &err);
	u = rc ? NULL : user_new(em, s, "tx-outer");
	rc = u ? emh_em_flush(em, &err) : rc ? rc : EMH_ENOMEM;
	OK_RC(rc, err, "outer: begin, new, flush");
	rc = emh_em_begin(em, &err);
	OK_RC(rc, err, "inner begin (savepoint)");
	is_int(emh_em_tx_depth(em), 2, "depth 2");
	conf_user *inner = user_new(em, s, "tx-inner");
	rc = inner ? emh_em_flush(em, &err) : EMH_ENOMEM;
	OK_RC(rc, err, "inner: new, flush");
	rc = emh_em_rollback(em, &err);
	OK_RC(rc, err, "inner rollback (to the savepoint)");
	is_int(emh_em_tx_depth(em), 1, "depth 1 after the inner rollback");
	if (inner) {
		ok(inner->id == 0, "inner rollback restores the inner object's state (new again, no key)");
		/* It is pending again: drop it, or the next flush would insert it. */
		rc = emh_em_remove(em, inner, &err);
		OK_RC(rc, err, "drop the rolled-back inner object (remove of a new object)");
	}
	if (u)
		ok(u->id > 0, "the outer object keeps its key");
	conf_user *inner2 = user_new(em, s, "tx-inner-2");
	rc = emh_em_begin(em, &err);
	if (!rc)
		rc = inner2 ? emh_em_flush(em, &err) : EMH_ENOMEM;
	if (!rc)
		rc = emh_em_commit(em, &err);
	OK_RC(rc, err, "second inner level: begin, flush, commit (release)");
	rc = emh_em_commit(em, &err);
	OK_RC(rc, err, "outer commit");
	is_int(emh_em_tx_depth(em), 0, "depth 0");
	emh_em_close(em);
	is_int(count_text(s, T_USER, "email", "tx-outer"), 1, "outer row committed");
	is_int(count_text(s, T_USER, "email", "tx-inner"), 0, "rolled-back inner row absent");
	is_int(count_text(s, T_USER, "email", "tx-inner-2"), 1, "released inner row committed");

	/* nested callbacks: the inner one fails, the outer commits */
	struct tx_ud outer = {s, "tx-cb-outer", false};
	em = xfork(s, NULL);
	rc = emh_em_transaction(em, tx_outer, &outer, &err);
	OK_RC(rc, err, "nested emh_em_transaction: inner fails, outer succeeds");
	emh_em_close(em);
	is_int(count_text(s, T_USER, "email", "tx-cb-outer"), 1, "outer callback committed");
	is_int(count_text(s, T_USER, "email", "tx-cb-inner"), 0, "inner callback rolled back");

	/* a failing flush inside an explicit transaction rolls back only itself */
	if (!(s->caps & EMH_CAP_ATOMIC_FLUSH)) {
		na("failing flush inside a transaction", "driver '%s' reports no atomic flush (caps: %s)", s->driver,
		   s->capstr);
		return;
	}
	em = xfork(s, NULL);
	rc = emh_em_begin(em, &err);
	u = rc ? NULL : user_new(em, s, "tx-keep");
	rc = u ? emh_em_flush(em, &err) : rc ? rc : EMH_ENOMEM;
	OK_RC(rc, err, "begin, new, flush");
	conf_user *dup = user_new(em, s, "tx-keep");
	rc = dup ? emh_em_flush(em, &err) : EMH_ENOMEM;
	expect_rc(rc, EMH_ECONFLICT, &err, "a conflicting flush inside the transaction: EMH_ECONFLICT");
	is_int(emh_em_tx_depth(em), 1, "the transaction is still open");
	if (dup)
		dup->email = "tx-keep-2";
	rc = emh_em_flush(em, &err);
	if (!rc)
		rc = emh_em_commit(em, &err);
	OK_RC(rc, err, "fix, flush, commit");
	emh_em_close(em);
	ok(count_text(s, T_USER, "email", "tx-keep") == 1 && count_text(s, T_USER, "email", "tx-keep-2") == 1,
	   "both rows committed: the failed flush did not abort the transaction");
}

/*
 * A COMMIT that fails ends the transaction on some servers (PostgreSQL,
 * MySQL) and not on others (SQLite): either way the fork accepts only the
 * rollback then, so that a second COMMIT cannot "succeed" on no
 * transaction while the objects look stored.  Made to fail by a deferred
 * foreign key, checked only at COMMIT: PostgreSQL and SQLite have them.
 */
static void t_failed_commit(suite *s)
{
	const char *name = "transactions: a failed commit accepts only the rollback";
	if (!(s->caps & EMH_CAP_TRANSACTIONS) || !s->sql) {
		na(name, "driver '%s' has no SQL transactions: no deferred constraint to make COMMIT fail", s->driver);
		return;
	}
	if (strcmp(s->driver, "postgres") != 0 && strcmp(s->driver, "sqlite") != 0) {
		na(name, "driver '%s': no deferred constraints (checked at once), so no COMMIT can be made to fail",
		   s->driver);
		return;
	}
	emh_error err;
	char parent[96], sql[320];
	snprintf(parent, sizeof parent, "conf_%ld_dparent", s->pid);
	emh_em *em = xfork(s, NULL);
	snprintf(sql, sizeof sql, "CREATE TABLE %s (id INTEGER PRIMARY KEY)", parent);
	int rc = emh_em_execute(em, sql, &err);
	if (!rc) {
		snprintf(sql, sizeof sql,
			 "CREATE TABLE %s_c (parent INTEGER REFERENCES %s(id) DEFERRABLE INITIALLY DEFERRED)", parent,
			 parent);
		rc = emh_em_execute(em, sql, &err);
	}
	if (!OK_RC(rc, err, "failed commit: create a table with a deferred foreign key")) {
		emh_em_close(em);
		return;
	}
	rc = emh_em_begin(em, &err);
	conf_user *u = rc ? NULL : user_new(em, s, "tx-failed-commit");
	rc = u ? emh_em_flush(em, &err) : rc ? rc : EMH_ENOMEM;
	if (!rc) {
		snprintf(sql, sizeof sql, "INSERT INTO %s_c (parent) VALUES (12345)", parent);
		rc = emh_em_execute(em, sql, &err);
	}
	if (OK_RC(rc, err, "failed commit: begin, flush a user, insert a row breaking the deferred key")) {
		rc = emh_em_commit(em, &err);
		ok(rc != 0, "%s: the commit fails (%s)", name, st_name(rc));
		diag_err(rc, &err);
		rc = emh_em_commit(em, &err);
		expect_rc(rc, EMH_ESTATE, &err, "failed commit: a second commit is EMH_ESTATE, not a commit of nothing");
		rc = emh_em_flush(em, &err);
		expect_rc(rc, EMH_ESTATE, &err, "failed commit: so is a flush");
		is_int(emh_em_tx_depth(em), 1, "failed commit: the level is still open");
		rc = emh_em_rollback(em, &err);
		OK_RC(rc, err, "failed commit: the rollback is accepted");
		is_int(emh_em_tx_depth(em), 0, "failed commit: depth 0 after it");
		ok(u->id == 0, "failed commit: the flushed user is new again (key %lld)", (long long)u->id);
		emh_em_remove(em, u, &err); /* pending again: not inserted later */
		is_int(count_text(s, T_USER, "email", "tx-failed-commit"), 0, "failed commit: nothing was committed");
	}
	if (emh_em_tx_depth(em) > 0)
		emh_em_rollback(em, &err);
	snprintf(sql, sizeof sql, "DROP TABLE %s_c", parent);
	rc = emh_em_execute(em, sql, &err);
	if (!rc) {
		snprintf(sql, sizeof sql, "DROP TABLE %s", parent);
		rc = emh_em_execute(em, sql, &err);
	}
	OK_RC(rc, err, "failed commit: drop its tables");
	emh_em_close(em);
}

/* ---- read-only forks, clear ---- */

/* Do two forks' objects of conf_user hold the same row (NULLs included)? */
static bool same_user(emh_em *ea, const conf_user *a, emh_em *eb, const conf_user *b)
{
	return a->id == b->id && text_eq(a->email, b->email ? b->email : "") && a->a == b->a &&
	       (a->b == NULL) == (b->b == NULL) && (!a->b || text_eq(a->b, b->b)) &&
	       emh_em_is_null(ea, a, "c") == emh_em_is_null(eb, b, "c") && (emh_em_is_null(ea, a, "c") || a->c == b->c);
}

/*
 * A fork opened read-only (EMH_FORK_READONLY, the fast path for reads: no
 * snapshot, no identity map) reads exactly what a normal fork reads, get
 * and find alike, and refuses every write with EMH_ESTATE.
 */
static void t_readonly_fork(suite *s)
{
	emh_error err;
	emh_em *ro = NULL;
	void *pn = NULL;
	int64_t n = 0;
	int rc;

	diag("read-only forks opened with EMH_FORK_READONLY");
	int64_t ids[3] = {user_seed(s, "rof-1", 7, NULL), user_seed(s, "rof-2", -3, "x"), user_seed(s, "rof-3", 0, "")};
	if (!ids[0] || !ids[1] || !ids[2])
		return;
	emh_em *em = xfork(s, NULL);
	void *p = NULL;
	rc = emh_repo_get(xrepo(em, &s->e[T_USER]), emh_v_int64(ids[2]), &p, &err);
	if (!rc)
		rc = emh_em_set_null(em, p, "c", true, &err);
	if (!rc)
		rc = emh_em_flush(em, &err);
	emh_em_close(em);
	if (!OK_RC(rc, err, "rof-3's c set to NULL"))
		return;

	emh_fork_opts fo = {.flags = EMH_FORK_READONLY};
	rc = emh_host_fork_opts(s->h, s->ctx, &fo, &ro, &err);
	if (!OK_RC(rc, err, "fork with EMH_FORK_READONLY"))
		return;
	em = xfork(s, NULL);
	emh_repo *rr = xrepo(ro, &s->e[T_USER]), *rn = xrepo(em, &s->e[T_USER]);

	bool same = true;
	for (size_t i = 0; i < 3 && same; i++) {
		void *a = NULL, *b = NULL, *b2 = NULL;
		same = emh_repo_get(rn, emh_v_int64(ids[i]), &a, &err) == 0 &&
		       emh_repo_get(rr, emh_v_int64(ids[i]), &b, &err) == 0 &&
		       emh_repo_get(rr, emh_v_int64(ids[i]), &b2, &err) == 0 && same_user(em, a, ro, b) &&
		       same_user(ro, b, ro, b2) && b != b2;
	}
	ok(same, "read-only get: the same row as a normal fork's get (NULLs too), a new object each time");
	rc = emh_repo_get(rr, emh_v_int64(ids[2] + 1000000), &p, &err);
	expect_rc(rc, EMH_ENOTFOUND, &err, "read-only get of a missing key: EMH_ENOTFOUND");

	emh_query *qn = NULL, *qr = NULL;
	emh_list ln = {0}, lr = {0};
	rc = emh_repo_query(rn, &qn, &err);
	if (!rc)
		rc = emh_repo_query(rr, &qr, &err);
	if (!rc) {
		emh_q_where(qn, emh_q_like(qn, "email", "rof-%"));
		emh_q_order_by(qn, "id", false);
		emh_q_where(qr, emh_q_like(qr, "email", "rof-%"));
		emh_q_order_by(qr, "id", false);
		rc = emh_repo_find(rn, qn, &ln, &err);
	}
	if (!rc)
		rc = emh_repo_find(rr, qr, &lr, &err);
	if (OK_RC(rc, err, "find in both forks")) {
		same = ln.count == 3 && lr.count == 3;
		for (size_t i = 0; same && i < ln.count; i++)
			same = same_user(em, ln.items[i], ro, lr.items[i]);
		ok(same, "read-only find: the same rows as a normal fork's find (%zu, %zu)", ln.count, lr.count);
	}

	rc = emh_repo_new(rr, &pn, &err);
	expect_rc(rc, EMH_ESTATE, &err, "read-only fork: emh_repo_new refused with EMH_ESTATE");
	like_str(err.message, "read-only", "the error says the fork is read-only");
	if (lr.count)
		((conf_user *)lr.items[0])->a = 999;
	rc = emh_em_flush(ro, &err);
	expect_rc(rc, EMH_ESTATE, &err, "read-only fork: emh_em_flush refused with EMH_ESTATE");
	rc = lr.count ? emh_em_remove(ro, lr.items[0], &err) : EMH_ENOMEM;
	expect_rc(rc, EMH_ESTATE, &err, "read-only fork: emh_em_remove refused with EMH_ESTATE");
	rc = emh_repo_delete_where(rr, NULL, &n, &err);
	expect_rc(rc, EMH_ESTATE, &err, "read-only fork: emh_repo_delete_where refused with EMH_ESTATE");
	rc = emh_em_set_readonly(ro, &err);
	expect_rc(rc, EMH_ESTATE, &err, "emh_em_set_readonly after a load still says EMH_ESTATE");
	emh_em_close(ro);
	emh_em_close(em);
	conf_user *u = NULL;
	em = xfork(s, NULL);
	u = user_get(em, s, ids[0]);
	ok(u && u->a == 7, "nothing the read-only fork changed was written");
	emh_em_close(em);

	fo.flags = 1u << 7;
	ro = (emh_em *)&fo;
	rc = emh_host_fork_opts(s->h, s->ctx, &fo, &ro, &err);
	expect_rc(rc, EMH_EINVAL, &err, "an unknown fork flag is EMH_EINVAL");
	ok(ro == NULL, "and gives no fork");
}


static void t_readonly_clear(suite *s)
{
	emh_error err;
	emh_em *em;
	void *p1 = NULL, *p2 = NULL, *pn = NULL;
	char buf[128];
	int rc;

	diag("read-only forks and emh_em_clear");
	int64_t id = user_seed(s, "ro", 1, "b");
	if (!id)
		return;
	em = xfork(s, NULL);
	rc = emh_em_set_readonly(em, &err);
	OK_RC(rc, err, "set read-only before the first load");
	emh_repo *r = xrepo(em, &s->e[T_USER]);
	rc = emh_repo_get(r, emh_v_int64(id), &p1, &err);
	if (!rc)
		rc = emh_repo_get(r, emh_v_int64(id), &p2, &err);
	if (OK_RC(rc, err, "read-only: get twice"))
		ok(p1 != p2 && text_eq(((conf_user *)p1)->email, "ro") && text_eq(((conf_user *)p2)->email, "ro"),
		   "read-only fork has no identity map: two loads give two objects");
	rc = emh_em_new(em, &s->e[T_USER], &pn, &err);
	expect_rc(rc, EMH_ESTATE, &err, "read-only: emh_em_new refused with EMH_ESTATE");
	rc = p1 ? emh_em_remove(em, p1, &err) : EMH_ENOMEM;
	expect_rc(rc, EMH_ESTATE, &err, "read-only: emh_em_remove refused with EMH_ESTATE");
	if (p1)
		((conf_user *)p1)->a = 1000;
	rc = emh_em_flush(em, &err);
	expect_rc(rc, EMH_ESTATE, &err, "read-only: emh_em_flush refused with EMH_ESTATE");
	emh_list l = {0};
	rc = emh_repo_find(r, NULL, &l, &err);
	OK_RC(rc, err, "read-only: find works");
	emh_em_close(em);
	em = xfork(s, NULL);
	conf_user *u = user_get(em, s, id);
	ok(u && u->a == 1, "read-only: a change to a loaded object is never written");
	rc = emh_em_set_readonly(em, &err);
	expect_rc(rc, EMH_ESTATE, &err, "set read-only after a load: EMH_ESTATE");
	emh_em_close(em);

	/* clear */
	em = xfork(s, NULL);
	r = xrepo(em, &s->e[T_USER]);
	rc = emh_repo_get(r, emh_v_int64(id), &p1, &err);
	OK_RC(rc, err, "get before clear");
	if (!rc) {
		((conf_user *)p1)->a = 555;
		conf_user *n = user_new(em, s, "cleared-new");
		emh_em_clear(em);
		ok(text_eq(((conf_user *)p1)->email, "ro") && n && text_eq(n->email, "cleared-new"),
		   "objects stay readable after clear");
		rc = emh_em_flush(em, &err);
		OK_RC(rc, err, "flush after clear");
		is_int(count_text(s, T_USER, "email", "cleared-new"), 0, "clear dropped the pending insert");
		rc = emh_repo_get(r, emh_v_int64(id), &p2, &err);
		if (OK_RC(rc, err, "get after clear"))
			ok(p2 != p1 && ((conf_user *)p2)->a == 1, "clear emptied the identity map; the change was dropped");
		void *p3 = NULL;
		rc = emh_repo_get(r, emh_v_int64(id), &p3, &err);
		if (OK_RC(rc, err, "get after clear, again"))
			ok(p3 == p2, "the map after clear maps again: same object");
	}
	emh_em_close(em);
	is_str(user_email(s, id, buf, sizeof buf), "ro", "row intact after clear");
}

/* ---- errors naming contexts and entities ---- */

static bool driver_loaded(suite *s, const char *name)
{
	const emh_driver_info *d;
	size_t n = emh_host_drivers(s->h, &d);
	for (size_t i = 0; i < n; i++)
		if (strcmp(d[i].name, name) == 0)
			return true;
	return false;
}

static void t_errors(suite *s)
{
	emh_error err;
	emh_em *em = NULL, *other = NULL;
	emh_repo *r = NULL;
	void *p = NULL;
	int rc;

	diag("errors: unknown context, unregistered entity, cross-context objects");
	rc = emh_host_fork(s->h, "conf_no_such_context", &em, &err);
	if (expect_rc(rc, EMH_ENOCONTEXT, &err, "fork of an unknown context: EMH_ENOCONTEXT")) {
		like_str(err.message, "conf_no_such_context", "the error names the unknown context");
		like_str(err.message, s->ctx, "the error lists the contexts");
	}
	emh_em_close(rc ? NULL : em);

	em = xfork(s, NULL);
	rc = emh_em_repo(em, &s->e[T_UNREG], &r, &err);
	if (expect_rc(rc, EMH_ENOENTITY, &err, "repository of an unregistered entity: EMH_ENOENTITY")) {
		like_str(err.message, "conf_unreg", "the error names the entity");
		like_str(err.message, s->ctx, "the error names the context");
	}
	rc = emh_em_new(em, &s->e[T_UNREG], &p, &err);
	expect_rc(rc, EMH_ENOENTITY, &err, "emh_em_new of an unregistered entity: EMH_ENOENTITY");

	/* cross-context: a second context added at run time */
	const char *why = NULL;
	if (driver_loaded(s, "sqlite")) {
		rc = emh_host_add_context(s->h, OTHER_CTX,
					  (const char *const[]){"driver", "sqlite", "path", ":memory:", NULL}, &err);
		OK_RC(rc, err, "add context '%s' (in-memory sqlite) at run time", OTHER_CTX);
		s->have_other = rc == 0;
	} else if (emh_host_context_setting(s->h, s->ctx, "url")) {
		const char *url = emh_host_context_setting(s->h, s->ctx, "url");
		rc = emh_host_add_context(s->h, OTHER_CTX, (const char *const[]){"url", url, NULL}, &err);
		OK_RC(rc, err, "add context '%s' (same url as '%s') at run time", OTHER_CTX, s->ctx);
		s->have_other = rc == 0;
	} else {
		why = "the sqlite driver is not loaded and the context has no url to copy";
	}
	if (s->have_other) {
		rc = emh_host_register_entity(s->h, OTHER_CTX, &s->e[T_USER], &err);
		if (!rc)
			rc = emh_host_sync_schema(s->h, OTHER_CTX, &err);
		OK_RC(rc, err, "register and sync an entity in '%s'", OTHER_CTX);
		other = xfork(s, OTHER_CTX);
		conf_user *o = user_new(other, s, "cross");
		rc = o ? emh_em_flush(other, &err) : EMH_ENOMEM;
		if (!rc) {
			void *loaded = NULL;
			rc = emh_repo_get(xrepo(other, &s->e[T_USER]), emh_v_int64(o->id), &loaded, &err);
			if (!rc) {
				rc = emh_em_remove(em, loaded, &err);
				if (expect_rc(rc, EMH_ECROSSCTX, &err,
					      "emh_em_remove of another context's object: EMH_ECROSSCTX"))
					diag("  message: %s", err.message);
			} else {
				OK_RC(rc, err, "load in '%s'", OTHER_CTX);
			}
		} else {
			OK_RC(rc, err, "insert in '%s'", OTHER_CTX);
		}
		emh_em_close(other);
		rc = emh_host_remove_context(s->h, OTHER_CTX, &err);
		OK_RC(rc, err, "remove context '%s'", OTHER_CTX);
	} else {
		na("emh_em_remove of another context's object: EMH_ECROSSCTX", "%s",
		   why ? why : "the second context could not be added");
	}
	emh_em_close(em);
}

/* ---- injection strings ---- */

static void t_injection(suite *s)
{
	char robert[160];
	snprintf(robert, sizeof robert, "Robert'); DROP TABLE %s;--", s->tables[T_Q]);
	const char *const strs[] = {
		"'; DROP TABLE x; --",
		"\"; DROP TABLE x; --",
		robert,
		"{\"$gt\": \"\"}",
		"$where",
		"a.b.c",
		"$.x.$y",
		"back\\slash\\\\ \\' \\\"",
		"quote's \"double\" `back`",
		"%_%",
		"null",
		"ctrl\x01\t\n\r end",
		"1 OR 1=1",
	};
	const size_t n = sizeof strs / sizeof strs[0];
	const char *doc = "{\"$set\": {\"a.b\": 1}, \"$where\": \"1 == 1\", \"x.y\": \"'; DROP TABLE x; --\", "
			  "\"q\": \"\\\"quoted\\\" \\\\ back\"}";
	emh_error err;
	emh_em *em;
	emh_repo *r;
	int rc = 0;

	diag("injection strings stored verbatim and used as query values");
	em = xfork(s, NULL);
	r = xrepo(em, &s->e[T_KV]);
	for (size_t i = 0; i < n && !rc; i++) {
		void *p;
		rc = emh_repo_new(r, &p, &err);
		if (!rc) {
			((conf_kv *)p)->k = strs[i];
			((conf_kv *)p)->v = strs[i];
			((conf_kv *)p)->doc = doc;
		}
	}
	if (!rc)
		rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "insert %zu rows with injection strings as text keys, values and json", n);
	emh_em_close(em);
	if (rc)
		return;
	em = xfork(s, NULL);
	r = xrepo(em, &s->e[T_KV]);
	for (size_t i = 0; i < n; i++) {
		void *p = NULL;
		rc = emh_repo_get(r, emh_v_text(strs[i]), &p, &err);
		if (!OK_RC(rc, err, "get by text key #%zu", i))
			continue;
		const conf_kv *o = p;
		if (!ok(text_eq(o->k, strs[i]) && text_eq(o->v, strs[i]), "key and value #%zu read back verbatim", i))
			diag("  got k='%s' v='%s'\n  want '%s'", o->k ? o->k : "(null)", o->v ? o->v : "(null)", strs[i]);
		char label[64];
		snprintf(label, sizeof label, "row #%zu", i);
		is_json(o->doc, doc, label);
		emh_query *q = xquery(r);
		emh_q_where(q, emh_q_eq(q, "v", emh_v_text(strs[i])));
		int64_t cnt = -1;
		rc = emh_repo_count(r, q, &cnt, &err);
		if (OK_RC(rc, err, "count where v = string #%zu", i))
			is_int(cnt, 1, "eq on string #%zu matches exactly one row", i);
		char pat[256];
		emh_like_escape(pat, sizeof pat, strs[i]);
		q = xquery(r);
		emh_q_where(q, emh_q_like(q, "v", pat));
		emh_list l = {0};
		rc = emh_repo_find(r, q, &l, &err);
		if (OK_RC(rc, err, "like with the escaped string #%zu", i))
			ok(l.count == 1 && l.items[0] == p, "escaped like matches exactly that row");
	}
	int64_t cnt = -1;
	rc = emh_repo_count(r, NULL, &cnt, &err);
	if (OK_RC(rc, err, "count the injection table"))
		is_int(cnt, n, "the table still exists with every row");
	rc = emh_repo_count(xrepo(em, &s->e[T_Q]), NULL, &cnt, &err);
	if (OK_RC(rc, err, "count the query table named in an injection string"))
		is_int(cnt, QROWS, "the query table still exists");
	emh_em_close(em);
}

/* ---- concurrency ---- */

struct thr {
	suite *s;
	pthread_t tid;
	int worker;
	int retries;
	int failed_rc;
	char failed[EMH_ERROR_MSG_MAX + 64];
	int64_t ids[THR_ROWS];
};

static bool thr_transient(int rc, const emh_error *err)
{
	return rc == EMH_ERETRY || rc == EMH_ETIMEOUT || err->retryable;
}

/* Run call again while it fails transiently (busy database, pool timeout). */
#define THR_RETRY(t, call)                                                                        \
	do {                                                                                       \
		for (int tries_ = 0;; tries_++) {                                                  \
			rc = (call);                                                               \
			if (rc == 0 || !thr_transient(rc, &err) || tries_ >= 200)                  \
				break;                                                             \
			(t)->retries++;                                                            \
			usleep(5000);                                                              \
		}                                                                                  \
	} while (0)

static void thr_fail(struct thr *t, const char *what, int rc, const emh_error *err)
{
	t->failed_rc = rc;
	snprintf(t->failed, sizeof t->failed, "%s: %s: %s", what, st_name(rc), err->message);
}

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	suite *s = t->s;
	emh_error err;
	emh_list l;
	int rc = 0;

	/* insert, flushing every 10 rows */
	emh_em *em = xfork(s, NULL);
	emh_repo *r = xrepo(em, &s->e[T_THR]);
	conf_thr *objs[THR_ROWS];
	for (int i = 0; i < THR_ROWS; i++) {
		void *p;
		rc = emh_repo_new(r, &p, &err);
		if (rc) {
			thr_fail(t, "new", rc, &err);
			goto out_close;
		}
		objs[i] = p;
		objs[i]->worker = t->worker;
		objs[i]->counter = i;
		objs[i]->note = "inserted";
		if ((i + 1) % 10 == 0) {
			THR_RETRY(t, emh_em_flush(em, &err));
			if (rc) {
				thr_fail(t, "insert flush", rc, &err);
				goto out_close;
			}
		}
	}
	for (int i = 0; i < THR_ROWS; i++)
		t->ids[i] = objs[i]->id;
	emh_em_close(em);

	/* update every row of this worker in a new fork */
	em = xfork(s, NULL);
	r = xrepo(em, &s->e[T_THR]);
	emh_query *q = xquery(r);
	emh_q_where(q, emh_q_eq(q, "worker", emh_v_int32(t->worker)));
	THR_RETRY(t, emh_repo_find(r, q, &l, &err));
	if (rc) {
		thr_fail(t, "find", rc, &err);
		goto out_close;
	}
	if (l.count != THR_ROWS) {
		emh_error_set(&err, EMH_EINVAL, "found %zu rows, expected %d", l.count, THR_ROWS);
		thr_fail(t, "find", EMH_EINVAL, &err);
		goto out_close;
	}
	for (size_t i = 0; i < l.count; i++) {
		conf_thr *o = l.items[i];
		o->counter += 1000;
		o->note = "updated";
	}
	THR_RETRY(t, emh_em_flush(em, &err));
	if (rc) {
		thr_fail(t, "update flush", rc, &err);
		goto out_close;
	}
	emh_em_close(em);

	/* read each row back by key */
	em = xfork(s, NULL);
	r = xrepo(em, &s->e[T_THR]);
	for (int i = 0; i < THR_ROWS; i++) {
		void *p = NULL;
		THR_RETRY(t, emh_repo_get(r, emh_v_int64(t->ids[i]), &p, &err));
		if (rc) {
			thr_fail(t, "get", rc, &err);
			goto out_close;
		}
		const conf_thr *o = p;
		if (o->worker != t->worker || o->counter != i + 1000 || !text_eq(o->note, "updated")) {
			emh_error_set(&err, EMH_EINVAL, "row %" PRId64 " has worker %d counter %" PRId64 ", expected %d %d",
				      t->ids[i], o->worker, o->counter, t->worker, i + 1000);
			thr_fail(t, "verify", EMH_EINVAL, &err);
			goto out_close;
		}
	}
out_close:
	emh_em_close(em);
	return NULL;
}

static void t_threads(suite *s)
{
	struct thr th[THREADS];
	int started = 0, retries = 0;

	diag("%d threads, each with its own forks, inserting, updating and reading %d rows", THREADS, THR_ROWS);
	memset(th, 0, sizeof th);
	for (int i = 0; i < THREADS; i++) {
		th[i].s = s;
		th[i].worker = i + 1;
		if (pthread_create(&th[i].tid, NULL, thr_main, &th[i]) != 0)
			break;
		started++;
	}
	is_int(started, THREADS, "started %d threads", THREADS);
	for (int i = 0; i < started; i++) {
		pthread_join(th[i].tid, NULL);
		retries += th[i].retries;
		if (!ok(th[i].failed_rc == 0, "thread %d: inserts, updates and reads succeeded", th[i].worker))
			diag("  %s", th[i].failed);
	}
	if (retries)
		diag("threads retried %d transient failures (busy database or pool timeout)", retries);

	emh_em *em = xfork(s, NULL);
	emh_repo *r = xrepo(em, &s->e[T_THR]);
	emh_error err;
	int64_t n = -1;
	int rc = emh_repo_count(r, NULL, &n, &err);
	if (OK_RC(rc, err, "count every thread's rows"))
		is_int(n, THREADS * THR_ROWS, "final row count exact (%d)", THREADS * THR_ROWS);
	bool each = true;
	for (int i = 0; i < THREADS; i++) {
		emh_query *q = xquery(r);
		emh_q_where(q, emh_q_and(q, emh_q_eq(q, "worker", emh_v_int32(i + 1)),
					 emh_q_ge(q, "counter", emh_v_int64(1000))));
		rc = emh_repo_count(r, q, &n, &err);
		if (rc || n != THR_ROWS) {
			each = false;
			diag("  worker %d: %s, %" PRId64 " updated rows", i + 1, st_name(rc), n);
		}
	}
	ok(each, "every worker has exactly %d updated rows", THR_ROWS);
	emh_em_close(em);
}

/* ---- relations ---- */

/* Queries context ctx has received so far. */
static uint64_t ctx_queries(suite *s, const char *ctx)
{
	emh_context_info *ci = NULL;
	size_t n = 0;
	emh_error err;
	uint64_t q = 0;
	if (emh_host_contexts(s->h, &ci, &n, &err) != 0)
		bail("emh_host_contexts: %s", err.message);
	for (size_t i = 0; i < n; i++)
		if (strcmp(ci[i].name, ctx) == 0)
			q = ci[i].queries;
	emh_context_info_free(ci, n);
	return q;
}

#define REL_PARENTS 1200 /* past EMH_QUERY_MAX_IN: two IN lists */
#define REL_SMALL 30

static void t_relations_here(suite *s)
{
	emh_error err;
	int rc;
	const emh_entity *ents[] = {&cr_parent_entity, &cr_child_entity, &cr_tag_entity, &cr_join_entity};
	for (size_t i = 0; i < 4; i++)
		if ((rc = emh_host_register_entity(s->h, s->ctx, ents[i], &err)) != 0)
			break;
	if (rc == 0)
		rc = emh_host_sync_schema(s->h, s->ctx, &err);
	if (!OK_RC(rc, err, "relations: register and sync parents, children, tags and their join"))
		return;
	emh_em *em = xfork(s, NULL);
	emh_repo *rp = xrepo(em, &cr_parent_entity), *rc_ = xrepo(em, &cr_child_entity), *rt = xrepo(em, &cr_tag_entity),
		 *rj = xrepo(em, &cr_join_entity);
	void *pv[REL_PARENTS], *tv[3];
	for (size_t i = 0; i < REL_PARENTS; i++) {
		emh_repo_new(rp, &pv[i], &err);
		((cr_parent *)pv[i])->name = "p";
	}
	for (size_t i = 0; i < 3; i++) {
		emh_repo_new(rt, &tv[i], &err);
		((cr_tag *)tv[i])->name = i == 0 ? "red" : i == 1 ? "green" : "blue";
	}
	rc = emh_em_flush(em, &err);
	if (!OK_RC(rc, err, "insert %d parents and 3 tags", REL_PARENTS)) {
		emh_em_close(em);
		return;
	}
	size_t nchildren = 0;
	for (size_t i = 0; i < REL_PARENTS; i++) {
		for (size_t k = 0; k < (i < REL_SMALL ? i % 3 : i % 200 == 0); k++, nchildren++) {
			void *c;
			emh_repo_new(rc_, &c, &err);
			((cr_child *)c)->parent_id = ((cr_parent *)pv[i])->id;
			((cr_child *)c)->label = "c";
		}
		if (i < REL_SMALL) {
			void *j;
			emh_repo_new(rj, &j, &err);
			((cr_join *)j)->parent_id = ((cr_parent *)pv[i])->id;
			((cr_join *)j)->tag_id = ((cr_tag *)tv[i % 3])->id;
		}
	}
	rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "insert %zu children with a checked reference to their parent", nchildren);
	/* the objects die with their fork: keep the keys */
	static int64_t pid[REL_PARENTS], tid[3];
	for (size_t i = 0; i < REL_PARENTS; i++)
		pid[i] = ((cr_parent *)pv[i])->id;
	for (size_t i = 0; i < 3; i++)
		tid[i] = ((cr_tag *)tv[i])->id;
	emh_em_close(em);

	/* has_many on a small batch, then a big one */
	em = xfork(s, NULL);
	void *small[REL_SMALL];
	for (size_t i = 0; i < REL_SMALL; i++)
		emh_repo_get(xrepo(em, &cr_parent_entity), emh_v_int64(pid[i]), &small[i], &err);
	uint64_t q0 = ctx_queries(s, s->ctx);
	rc = emh_em_load(em, small, REL_SMALL, "children", &err);
	OK_RC(rc, err, "relations: load 'children' of %d parents", REL_SMALL);
	is_int(ctx_queries(s, s->ctx) - q0, 1, "relations: one query for the batch");
	bool each = true;
	for (size_t i = 0; i < REL_SMALL; i++) {
		const cr_parent *p = small[i];
		each &= p->children.count == i % 3 && emh_em_loaded(em, p, "children");
		for (size_t k = 0; k < p->children.count; k++)
			each &= ((cr_child *)p->children.items[k])->parent_id == p->id;
	}
	ok(each, "relations: every parent has its children (none: loaded and empty)");
	q0 = ctx_queries(s, s->ctx);
	rc = emh_em_load(em, ((cr_parent *)small[5])->children.items, 2, "parent", &err);
	ok(rc == 0 && ((cr_child *)((cr_parent *)small[5])->children.items[1])->parent == small[5] &&
		   ctx_queries(s, s->ctx) == q0,
	   "relations: belongs_to of managed parents: the same objects, no query");
	q0 = ctx_queries(s, s->ctx);
	rc = emh_em_load(em, small, REL_SMALL, "tags", &err);
	OK_RC(rc, err, "relations: load 'tags' (many_to_many)");
	is_int(ctx_queries(s, s->ctx) - q0, 2, "relations: many_to_many: the join rows, then the tags");
	each = true;
	for (size_t i = 0; i < REL_SMALL; i++) {
		const cr_parent *p = small[i];
		each &= p->tags.count == 1 && ((cr_tag *)p->tags.items[0])->id == tid[i % 3];
	}
	ok(each, "relations: every parent has its tag");
	int64_t n = -1;
	rc = emh_em_count_related(em, small[2], "children", &n, &err);
	ok(rc == 0 && n == 2, "relations: emh_em_count_related counts 2 children");
	emh_em_close(em);

	em = xfork(s, NULL);
	emh_repo *rp2 = xrepo(em, &cr_parent_entity);
	emh_list all;
	emh_query *q = xquery(rp2);
	emh_q_order_by(q, "id", false);
	rc = emh_repo_find(rp2, q, &all, &err);
	if (OK_RC(rc, err, "relations: find the %d parents", REL_PARENTS) && all.count == REL_PARENTS) {
		q0 = ctx_queries(s, s->ctx);
		rc = emh_em_load(em, all.items, all.count, "children", &err);
		OK_RC(rc, err, "relations: load 'children' of %d parents", REL_PARENTS);
		is_int(ctx_queries(s, s->ctx) - q0, 2, "relations: %d keys, two IN lists of at most %d", REL_PARENTS,
		       EMH_QUERY_MAX_IN);
		size_t got = 0;
		for (size_t i = 0; i < all.count; i++)
			got += ((cr_parent *)all.items[i])->children.count;
		is_int(got, nchildren, "relations: every child reached");
	}
	emh_em_close(em);

	/* checked reference and on_delete restrict in one context */
	em = xfork(s, NULL);
	void *c, *p;
	emh_repo_new(xrepo(em, &cr_child_entity), &c, &err);
	((cr_child *)c)->parent_id = 999999999;
	((cr_child *)c)->label = "orphan";
	rc = emh_em_flush(em, &err);
	if (expect_rc(rc, EMH_ECONFLICT, &err, "relations: a child of a missing parent: EMH_ECONFLICT"))
		like_str(err.message, "999999999", "relations: the error names the missing key");
	emh_em_clear(em);
	rc = emh_repo_get(xrepo(em, &cr_parent_entity), emh_v_int64(pid[2]), &p, &err);
	if (rc == 0)
		rc = emh_em_remove(em, p, &err);
	if (rc == 0)
		rc = emh_em_flush(em, &err);
	expect_rc(rc, EMH_ECONFLICT, &err, "relations: deleting a parent with children (restrict): EMH_ECONFLICT");
	rc = emh_em_load(em, &p, 1, "children", &err);
	for (size_t k = 0; rc == 0 && k < ((cr_parent *)p)->children.count; k++)
		rc = emh_em_remove(em, ((cr_parent *)p)->children.items[k], &err);
	if (rc == 0)
		rc = emh_em_flush(em, &err);
	OK_RC(rc, err, "relations: the parent deleted with its children in one flush");
	emh_em_close(em);
}

/* A checked belongs_to with a text key, to an entity of a second context. */
static void t_relations_across(suite *s)
{
	const char *other = "conf_rel_other";
	emh_error err;
	int rc;
	if (!driver_loaded(s, "sqlite")) {
		na("relations across two contexts", "the sqlite driver is not loaded (the second context is in-memory SQLite)");
		return;
	}
	rc = emh_host_add_context(s->h, other, (const char *const[]){"driver", "sqlite", "path", ":memory:", NULL}, &err);
	if (rc == 0)
		rc = emh_host_register_entity(s->h, other, &cr_owner_entity, &err);
	if (rc == 0)
		rc = emh_host_register_entity(s->h, s->ctx, &cr_item_entity, &err);
	if (rc == 0)
		rc = emh_host_sync_schema(s->h, other, &err);
	if (rc == 0)
		rc = emh_host_sync_schema(s->h, s->ctx, &err);
	if (!OK_RC(rc, err, "relations: owners in a second context '%s', items here", other))
		return;
	emh_em *fo = xfork(s, other), *fi = xfork(s, NULL);
	rc = emh_em_link(fi, fo, &err);
	const char *codes[] = {"a'b", "x", "z\\%"};
	for (size_t i = 0; rc == 0 && i < 3; i++) {
		void *o;
		emh_repo_new(xrepo(fo, &cr_owner_entity), &o, &err);
		((cr_owner *)o)->code = codes[i];
		((cr_owner *)o)->name = "owner";
	}
	if (rc == 0)
		rc = emh_em_flush(fo, &err);
	for (size_t i = 0; rc == 0 && i < 6; i++) {
		void *it;
		emh_repo_new(xrepo(fi, &cr_item_entity), &it, &err);
		((cr_item *)it)->owner_code = codes[i % 3];
	}
	uint64_t q0 = ctx_queries(s, other);
	if (rc == 0)
		rc = emh_em_flush(fi, &err);
	OK_RC(rc, err, "relations: items referring to owners in '%s' (checked)", other);
	is_int(ctx_queries(s, other) - q0, 1, "relations: their keys checked with one query there");
	void *bad;
	emh_repo_new(xrepo(fi, &cr_item_entity), &bad, &err);
	((cr_item *)bad)->owner_code = "nobody";
	rc = emh_em_flush(fi, &err);
	if (expect_rc(rc, EMH_ECONFLICT, &err, "relations: an item of a missing owner: EMH_ECONFLICT")) {
		like_str(err.message, other, "relations: the error names the owners' context");
		like_str(err.message, s->ctx, "relations: and this one");
	}
	emh_em_close(fi);
	emh_em_close(fo);

	fo = xfork(s, other);
	fi = xfork(s, NULL);
	emh_em_link(fo, fi, NULL);
	emh_list items;
	rc = emh_repo_find(xrepo(fi, &cr_item_entity), NULL, &items, &err);
	q0 = ctx_queries(s, other);
	if (rc == 0)
		rc = emh_em_load(fi, items.items, items.count, "owner", &err);
	OK_RC(rc, err, "relations: load 'owner' of the items from the second context");
	is_int(ctx_queries(s, other) - q0, 1, "relations: one query in the owners' context");
	bool each = rc == 0 && items.count == 6;
	for (size_t i = 0; each && i < items.count; i++) {
		const cr_item *it = items.items[i];
		each &= it->owner && strcmp(it->owner->code, it->owner_code) == 0;
		for (size_t k = 0; k < i; k++)
			if (strcmp(((cr_item *)items.items[k])->owner_code, it->owner_code) == 0)
				each &= ((cr_item *)items.items[k])->owner == it->owner;
	}
	ok(each, "relations: every item has its owner (text keys), one object per owner");
	emh_em_close(fi);
	emh_em_close(fo);
	rc = emh_host_remove_context(s->h, other, &err);
	OK_RC(rc, err, "relations: remove context '%s'", other);
}

static void t_relations(suite *s)
{
	diag("relations: has_many, belongs_to, many_to_many, counts and checks here; a belongs_to across contexts");
	t_relations_here(s);
	t_relations_across(s);
}

/* ---- tear down ---- */

/* Drop every table of the suite through the driver (its drop member, or
 * DROP TABLE for a SQL driver without one): no driver is known by name. */
static void suite_drop(suite *s)
{
	emh_error err;
	int rc = emh_host_drop_schema(s->h, s->ctx, &err);
	if (rc == EMH_EUNSUPPORTED) /* drop is an optional member (ABI 1.1); a 1.0 driver has none */
		skip(1, "not applicable: the driver has no drop member, the suite's tables stay behind");
	else
		OK_RC(rc, err, "drop the suite's tables (emh_host_drop_schema)");
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f, "usage: emh-conformance [-c FILE] [-p PLUGIN_DIR] [-v] [--no-native-codes] --context NAME\n"
		   "  contexts from FILE and/or EMH_CONTEXT_<NAME>_URL / EMH_CONTEXT_<NAME>_<KEY> variables\n");
}

int main(int argc, char **argv)
{
	const char *cfg = NULL, *pdir = NULL, *want = NULL;
	char pbuf[4096];
	bool verbose = false, no_native = false;
	suite s;
	emh_host_opts opts;
	emh_error err;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			cfg = argv[++i];
		else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc)
			pdir = argv[++i];
		else if ((strcmp(argv[i], "--context") == 0 || strcmp(argv[i], "-C") == 0) && i + 1 < argc)
			want = argv[++i];
		else if (strncmp(argv[i], "--context=", 10) == 0)
			want = argv[i] + 10;
		else if (strcmp(argv[i], "-v") == 0)
			verbose = true;
		else if (strcmp(argv[i], "--no-native-codes") == 0)
			no_native = true;
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!want) {
		usage(stderr);
		return 2;
	}
	if (!pdir)
		pdir = getenv("EMH_PLUGIN_DIR");
	if (!pdir && getenv("EMH_BUILDDIR")) {
		snprintf(pbuf, sizeof pbuf, "%s/plugins-build", getenv("EMH_BUILDDIR"));
		pdir = pbuf;
	}

	memset(&s, 0, sizeof s);
	s.no_native = no_native;
	memset(&opts, 0, sizeof opts);
	opts.config_path = cfg;
	opts.plugin_dir = pdir;
	opts.envp = NULL;
	opts.log_level = verbose ? EMH_LOG_INFO : EMH_LOG_WARN;
	suite_entities(&s);

	int rc = emh_host_new(&opts, &s.h, &err);
	if (rc == EMH_ECONFIG && !getenv("EMH_DEFAULT_CONTEXT")) {
		/* Several contexts in the environment (EMH_CONTEXT_PG_URL and
		 * EMH_CONTEXT_MY_URL, say) and none the default is a
		 * configuration error for the host: retry with the context under
		 * test as the default, and report the first error if that fails. */
		emh_error err2;
		if (setenv("EMH_DEFAULT_CONTEXT", want, 0) == 0 && emh_host_new(&opts, &s.h, &err2) == 0) {
			diag("no default context configured: using '%s' (EMH_DEFAULT_CONTEXT)", want);
			rc = 0;
		}
	}
	if (!OK_RC(rc, err, "host created (config %s, plugins %s)", cfg ? cfg : "(none)", pdir ? pdir : "(default)"))
		return done_testing();
	const emh_driver_info *drv;
	size_t nd = emh_host_drivers(s.h, &drv);
	for (size_t i = 0; i < nd; i++)
		diag("driver '%s' %s (%s)", drv[i].name, drv[i].version ? drv[i].version : "", drv[i].file);
	const emh_refused_info *ref;
	size_t nr = emh_host_refused(s.h, &ref);
	for (size_t i = 0; i < nr; i++)
		diag("refused plugin %s: %s", ref[i].file, ref[i].reason);

	s.big = malloc(BIG_BLOB);
	s.longtxt = malloc(1001);
	if (!s.big || !s.longtxt)
		bail("out of memory");
	for (size_t i = 0; i < BIG_BLOB; i++)
		s.big[i] = (unsigned char)((i * 31 + 7) ^ (i >> 11));
	for (size_t i = 0; i < 1000; i++)
		s.longtxt[i] = (char)('a' + i % 26);
	s.longtxt[1000] = '\0';

	if (suite_resolve_context(&s, want) == 0 && suite_setup(&s) == 0) {
		t_crud(&s);
		t_query(&s);
		t_uow(&s);
		t_conflict(&s);
		t_upsert(&s);
		cf_query(&s);
		t_transactions(&s);
		t_failed_commit(&s);
		t_readonly_clear(&s);
		t_readonly_fork(&s);
		t_errors(&s);
		t_injection(&s);
		t_relations(&s);
		t_threads(&s);
		cf_concurrency(&s);
		suite_drop(&s);
	}
	emh_host_free(s.h);
	free(s.big);
	free(s.longtxt);
	return done_testing();
}
