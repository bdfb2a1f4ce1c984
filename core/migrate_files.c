/* SPDX-License-Identifier: MIT */
/*
 * core/migrate_files.c: a context's migration folder (which file is which
 * migration for a driver) and splitting a migration into statements.
 *
 * Statements are split here, not left to the database, so that a failure
 * names the statement and its line, and so that a driver without
 * transactional DDL (MySQL) runs one statement at a time and a failure
 * part-way can say what already ran.  The splitter knows the quoting and
 * comment rules of each family, PostgreSQL's dollar quoting, blocks whose
 * semicolons do not end the statement (a SQLite trigger's BEGIN ... END,
 * PostgreSQL's BEGIN ATOMIC ... END), and the mysql client's DELIMITER
 * lines (and its executable comments, opened by slash-star-bang, which are
 * statement text); a quote, comment or block left open is an error before anything
 * runs.
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migrate_int.h"

/* ---- the folder ---- */

/* One file of the folder, as its name says. */
typedef struct rawfile {
	int64_t number;
	char *stem;   /* "0003_add_email" */
	char *driver; /* NULL: every driver */
	bool down;
	char *path;
} rawfile;

static bool name_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '-'; }

/* parse_name's answer for a name that has the form but number 0. */
#define NAME_NUMBER_ZERO 2

/*
 * Read "NNNN_name[.DRIVER][.down].EXT" into f (allocating stem and driver).
 * Returns 1 when fname has it, 0 when not, NAME_NUMBER_ZERO when its
 * number is 0 (nothing allocated), EMH_ENOMEM.
 */
static int parse_name(const char *fname, const char *ext, rawfile *f)
{
	const char *p = fname;
	int64_t number = 0;
	int digits = 0;
	while (isdigit((unsigned char)*p)) {
		if (++digits > 18)
			return 0;
		number = number * 10 + (*p++ - '0');
	}
	if (!digits || *p != '_' || !name_char(p[1]))
		return 0;
	p++;
	while (name_char(*p))
		p++;
	size_t stem_len = (size_t)(p - fname);
	/* The rest: ".a", ".a.b" or ".a.b.c", the last one ext. */
	const char *seg[4];
	size_t seglen[4], nseg = 0;
	while (*p == '.') {
		if (nseg == 3)
			return 0;
		seg[nseg] = ++p;
		while (*p && *p != '.')
			p++;
		seglen[nseg] = (size_t)(p - seg[nseg]);
		if (!seglen[nseg])
			return 0;
		nseg++;
	}
	if (*p || nseg == 0 || seglen[nseg - 1] != strlen(ext) || strncmp(seg[nseg - 1], ext, seglen[nseg - 1]) != 0)
		return 0;
	const char *drv = NULL;
	size_t drvlen = 0;
	bool down = false;
	if (nseg >= 2 && seglen[nseg - 2] == 4 && strncmp(seg[nseg - 2], "down", 4) == 0) {
		down = true;
		nseg--;
	}
	if (nseg == 3)
		return 0;
	if (nseg == 2) {
		drv = seg[0];
		drvlen = seglen[0];
		for (size_t i = 0; i < drvlen; i++)
			if (!islower((unsigned char)drv[i]) && !isdigit((unsigned char)drv[i]) && drv[i] != '_')
				return 0;
	}
	/* `migrate down --to 0` undoes everything above 0: a migration 0 could
	 * never be undone. */
	if (number == 0)
		return NAME_NUMBER_ZERO;
	f->number = number;
	f->down = down;
	f->stem = strndup(fname, stem_len);
	f->driver = drv ? strndup(drv, drvlen) : NULL;
	if (!f->stem || (drv && !f->driver)) {
		free(f->stem);
		free(f->driver);
		return EMH_ENOMEM;
	}
	return 1;
}

static void rawfile_release(rawfile *f)
{
	free(f->stem);
	free(f->driver);
	free(f->path);
}

static int rawfile_cmp(const void *a, const void *b)
{
	const rawfile *x = a, *y = b;
	if (x->number != y->number)
		return x->number < y->number ? -1 : 1;
	return strcmp(x->path, y->path);
}

void emh__migdir_release(emh__migdir *d)
{
	for (size_t i = 0; d && i < d->n; i++) {
		emh__migfile *f = &d->v[i];
		free(f->stem);
		free(f->up);
		free(f->down);
		free(f->other);
	}
	if (d) {
		free(d->v);
		d->v = NULL;
		d->n = 0;
	}
}

static int oom(emh_error *err) { return emh_error_set(err, EMH_ENOMEM, "out of memory"); }

/* Take f's path into slot (the driver's own file wins over the common one). */
static void take(char **slot, bool *own, rawfile *f)
{
	bool is_own = f->driver != NULL;
	if (*slot && *own && !is_own)
		return;
	free(*slot);
	*slot = f->path;
	*own = is_own;
	f->path = NULL;
}

/* Merge the sorted files into migrations, checking numbers, stems and drivers. */
static int migdir_merge(const char *dir, const char *driver, const char *ext, rawfile *raw, size_t nraw,
			emh__migdir *out, emh_error *err)
{
	out->v = calloc(nraw ? nraw : 1, sizeof *out->v);
	if (!out->v)
		return oom(err);
	for (size_t i = 0; i < nraw; i++) {
		rawfile *f = &raw[i];
		emh__migfile *m = out->n ? &out->v[out->n - 1] : NULL;
		if (!m || m->number != f->number) {
			m = &out->v[out->n++];
			m->number = f->number;
			if (!(m->stem = strdup(f->stem)))
				return oom(err);
			m->name = strchr(m->stem, '_') + 1;
		} else if (strcmp(m->stem, f->stem) != 0) {
			const char *first = m->up ? m->up : m->down ? m->down : m->other ? m->other : raw[i - 1].path;
			return emh_error_set(err, EMH_ECONFIG,
					     "migrations folder '%s': '%s' and '%s' have one number (%lld): "
					     "renumber one of them",
					     dir, first ? first : m->stem, f->path, (long long)f->number);
		}
		if (f->driver && strcmp(f->driver, driver) != 0) {
			if (!m->other) {
				m->other = f->path;
				f->path = NULL;
			}
			continue;
		}
		if (f->down)
			take(&m->down, &m->down_own, f);
		else
			take(&m->up, &m->up_own, f);
	}
	for (size_t i = 0; i < out->n; i++) {
		emh__migfile *m = &out->v[i];
		if (m->up)
			continue;
		if (m->down)
			return emh_error_set(err, EMH_ECONFIG,
					     "migrations folder '%s': '%s' undoes migration %s, which has no file "
					     "(%s.%s or %s.%s.%s)",
					     dir, m->down, m->stem, m->stem, ext, m->stem, driver, ext);
		return emh_error_set(err, EMH_ECONFIG,
				     "migrations folder '%s': migration %s has files for other drivers only ('%s'); "
				     "driver '%s' needs %s.%s or %s.%s.%s (an empty file if it has nothing to do)",
				     dir, m->stem, m->other, driver, m->stem, ext, m->stem, driver, ext);
	}
	return 0;
}

int emh__migdir_read(const char *dir, const char *driver, const char *ext, emh__migdir *out, emh_error *err)
{
	out->v = NULL;
	out->n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return emh_error_set(err, EMH_ECONFIG, "migrations folder '%s': %s", dir, strerror(errno));
	rawfile *raw = NULL;
	size_t nraw = 0, cap = 0;
	int rc = 0;
	size_t extlen = strlen(ext);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *fn = de->d_name;
		size_t fl = strlen(fn);
		if (fn[0] == '.' || fl <= extlen + 1 || fn[fl - extlen - 1] != '.' || strcmp(fn + fl - extlen, ext) != 0)
			continue; /* not a migration of this kind (README, .json beside .sql, editor files) */
		if (nraw == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			rawfile *v = realloc(raw, ncap * sizeof *v);
			if (!v) {
				rc = oom(err);
				break;
			}
			raw = v;
			cap = ncap;
		}
		rawfile *f = &raw[nraw];
		memset(f, 0, sizeof *f);
		int got = parse_name(fn, ext, f);
		if (got < 0) {
			rc = oom(err);
			break;
		}
		if (got == 0) {
			rc = emh_error_set(err, EMH_ECONFIG,
					   "migrations folder '%s': file '%s' is not named NNNN_name.%s "
					   "(or NNNN_name.DRIVER.%s, NNNN_name[.DRIVER].down.%s)",
					   dir, fn, ext, ext, ext);
			break;
		}
		if (got == NAME_NUMBER_ZERO) {
			rc = emh_error_set(err, EMH_ECONFIG,
					   "migrations folder '%s': file '%s' is numbered 0: numbers start at 1 "
					   "(`migrate down --to 0` undoes every migration above 0); renumber it",
					   dir, fn);
			break;
		}
		size_t pl = strlen(dir) + 1 + fl + 1;
		if (!(f->path = malloc(pl))) {
			rawfile_release(f);
			rc = oom(err);
			break;
		}
		snprintf(f->path, pl, "%s/%s", dir, fn);
		nraw++;
	}
	closedir(d);
	if (rc == 0) {
		if (nraw)
			qsort(raw, nraw, sizeof *raw, rawfile_cmp);
		rc = migdir_merge(dir, driver, ext, raw, nraw, out, err);
	}
	for (size_t i = 0; i < nraw; i++)
		rawfile_release(&raw[i]);
	free(raw);
	if (rc)
		emh__migdir_release(out);
	return rc;
}

int emh__file_read(const char *path, char **text, size_t *len, emh_error *err)
{
	*text = NULL;
	*len = 0;
	/* O_NONBLOCK: a FIFO named like a migration must not hang the run (it is refused below) */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	if (fd < 0)
		return emh_error_set(err, EMH_EIO, "cannot read '%s': %s", path, strerror(errno));
	const char *why = fstat(fd, &st) != 0 ? strerror(errno) : !S_ISREG(st.st_mode) ? "not a regular file" : NULL;
	if (why) {
		close(fd);
		return emh_error_set(err, EMH_EIO, "cannot read '%s': %s", path, why);
	}
	FILE *f = fdopen(fd, "rb");
	if (!f) {
		int e = errno;
		close(fd);
		return emh_error_set(err, EMH_EIO, "cannot read '%s': %s", path, strerror(e));
	}
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	for (;;) {
		if (cap - n < 4096) {
			size_t ncap = cap ? cap * 2 : 8192;
			char *b = realloc(buf, ncap);
			if (!b) {
				rc = oom(err);
				break;
			}
			buf = b;
			cap = ncap;
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0) {
			if (ferror(f))
				rc = emh_error_set(err, EMH_EIO, "cannot read '%s': %s", path, strerror(errno));
			break;
		}
	}
	fclose(f);
	if (rc) {
		free(buf);
		return rc;
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
}

/* ---- splitting ---- */

typedef struct splitter {
	const char *s;
	size_t len, i;
	unsigned line;
	int how;
	char delim[32]; /* MySQL: changed by DELIMITER lines */
	size_t dlen;
	emh__span *v;
	size_t n, cap;
	emh_error *err;
} splitter;

static bool word_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '$'; }

static int split_fail(splitter *sp, unsigned line, const char *what)
{
	return emh_error_set(sp->err, EMH_EINVAL, "line %u: %s", line, what);
}

/* Add [start, end) trimmed of trailing blanks as a statement starting at line. */
static int emit(splitter *sp, size_t start, size_t end, unsigned line)
{
	while (end > start && isspace((unsigned char)sp->s[end - 1]))
		end--;
	if (end == start)
		return 0;
	if (sp->n == sp->cap) {
		size_t ncap = sp->cap ? sp->cap * 2 : 16;
		emh__span *v = realloc(sp->v, ncap * sizeof *v);
		if (!v)
			return oom(sp->err);
		sp->v = v;
		sp->cap = ncap;
	}
	sp->v[sp->n++] = (emh__span){.off = start, .len = end - start, .line = line};
	return 0;
}

/* Move sp->i to end (exclusive), counting lines on the way. */
static void advance_to(splitter *sp, size_t end)
{
	for (; sp->i < end && sp->i < sp->len; sp->i++)
		if (sp->s[sp->i] == '\n')
			sp->line++;
}

/* A quoted run starting at sp->i (the quote): doubled quotes, and backslash escapes when asked. */
static int skip_quoted(splitter *sp, char q, bool backslash)
{
	unsigned line = sp->line;
	size_t j = sp->i + 1;
	for (; j < sp->len; j++) {
		char c = sp->s[j];
		if (backslash && c == '\\' && j + 1 < sp->len) {
			j++;
			continue;
		}
		if (c == q) {
			if (j + 1 < sp->len && sp->s[j + 1] == q) {
				j++;
				continue;
			}
			advance_to(sp, j + 1);
			return 0;
		}
	}
	return split_fail(sp, line, q == '\'' ? "string not closed" : q == '`' ? "quoted name not closed"
								   : "quoted name or string not closed");
}

/*
 * A block comment at sp->i; nested ones count in SQL (PostgreSQL nests
 * them).  SQL_FLAT (SQLite): the comment ends at the first star-slash, and
 * a slash-star before it is refused: read either way, the file would run
 * what its author took for comment, or the other way round.
 */
static int skip_block_comment(splitter *sp)
{
	unsigned line = sp->line;
	int depth = 0;
	size_t j = sp->i;
	while (j + 1 < sp->len) {
		if (sp->s[j] == '/' && sp->s[j + 1] == '*' && depth > 0 && sp->how == EMH__SPLIT_SQL_FLAT) {
			advance_to(sp, j);
			return split_fail(sp, sp->line, "'/*' inside a comment: this database ends a comment at its "
					  "first '*/' (comments do not nest), so what follows that would run; remove "
					  "the inner '/*'");
		} else if (sp->s[j] == '/' && sp->s[j + 1] == '*' && (depth == 0 || sp->how == EMH__SPLIT_SQL)) {
			depth++;
			j += 2;
		} else if (sp->s[j] == '*' && sp->s[j + 1] == '/') {
			j += 2;
			if (--depth == 0) {
				advance_to(sp, j);
				return 0;
			}
		} else {
			j++;
		}
	}
	return split_fail(sp, line, "comment not closed");
}

/* A line comment: up to the newline, which is left for the caller. */
static void skip_line(splitter *sp)
{
	while (sp->i < sp->len && sp->s[sp->i] != '\n')
		sp->i++;
}

/* PostgreSQL $tag$ ... $tag$ at sp->i, when it is one.  *quoted says whether it was. */
static int skip_dollar(splitter *sp, bool *quoted)
{
	size_t j = sp->i + 1;
	*quoted = false;
	if (j < sp->len && (isalpha((unsigned char)sp->s[j]) || sp->s[j] == '_'))
		while (j < sp->len && (isalnum((unsigned char)sp->s[j]) || sp->s[j] == '_'))
			j++;
	if (j >= sp->len || sp->s[j] != '$')
		return 0; /* $1, or a lone $ */
	size_t taglen = j + 1 - sp->i;
	const char *tag = sp->s + sp->i;
	unsigned line = sp->line;
	for (size_t k = j + 1; k + taglen <= sp->len; k++)
		if (sp->s[k] == '$' && memcmp(sp->s + k, tag, taglen) == 0) {
			advance_to(sp, k + taglen);
			*quoted = true;
			return 0;
		}
	return split_fail(sp, line, "dollar-quoted text not closed");
}

static bool word_is(const char *w, size_t n, const char *kw)
{
	return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

/* MySQL: a DELIMITER line at sp->i (start of a statement): takes the new delimiter. */
static bool delimiter_line(splitter *sp)
{
	const char *p = sp->s + sp->i;
	size_t left = sp->len - sp->i;
	if (left < 10 || strncasecmp(p, "DELIMITER", 9) != 0 || (p[9] != ' ' && p[9] != '\t'))
		return false;
	size_t j = 9;
	while (j < left && (p[j] == ' ' || p[j] == '\t'))
		j++;
	size_t k = j;
	while (k < left && !isspace((unsigned char)p[k]))
		k++;
	if (k == j || k - j >= sizeof sp->delim)
		return false;
	memcpy(sp->delim, p + j, k - j);
	sp->dlen = k - j;
	sp->delim[sp->dlen] = '\0';
	sp->i += k;
	skip_line(sp);
	return true;
}

static int split_sql(splitter *sp)
{
	size_t start = SIZE_MAX; /* of the statement being read */
	unsigned start_line = 0, block_line = 0;
	int depth = 0; /* BEGIN/CASE ... END blocks open in it */
	bool mysql = sp->how == EMH__SPLIT_MYSQL;
	int rc;
	while (sp->i < sp->len) {
		const char *s = sp->s;
		size_t i = sp->i;
		char c = s[i], d = i + 1 < sp->len ? s[i + 1] : '\0';
		if (c == '\n') {
			sp->line++;
			sp->i++;
			continue;
		}
		if (isspace((unsigned char)c)) {
			sp->i++;
			continue;
		}
		if (c == '-' && d == '-' && (!mysql || i + 2 >= sp->len || isspace((unsigned char)s[i + 2]))) {
			skip_line(sp);
			continue;
		}
		if (mysql && c == '#') {
			skip_line(sp);
			continue;
		}
		if (mysql && c == '/' && d == '*' && i + 2 < sp->len &&
		    (s[i + 2] == '!' || (s[i + 2] == 'M' && i + 3 < sp->len && s[i + 3] == '!'))) {
			/* An executable comment (slash-star-bang, MariaDB's also with M!
			 * before the bang) is code the server runs: the mysql client
			 * reads it as statement text, delimiters and all, and so does
			 * this (mysqldump writes whole statements so). */
			if (start == SIZE_MAX) {
				start = i;
				start_line = sp->line;
			}
			sp->i += s[i + 2] == '!' ? 3 : 4;
			continue;
		}
		if (c == '/' && d == '*') {
			if ((rc = skip_block_comment(sp)))
				return rc;
			continue;
		}
		if (mysql && start == SIZE_MAX && delimiter_line(sp))
			continue;
		if (depth == 0 && sp->len - i >= sp->dlen && memcmp(s + i, sp->delim, sp->dlen) == 0) {
			if (start != SIZE_MAX && (rc = emit(sp, start, i, start_line)))
				return rc;
			start = SIZE_MAX;
			sp->i += sp->dlen;
			continue;
		}
		if (start == SIZE_MAX) {
			start = i;
			start_line = sp->line;
		}
		if (c == '\'' || (mysql && c == '"')) {
			if ((rc = skip_quoted(sp, c, mysql)))
				return rc;
		} else if (c == '"' || (mysql && c == '`')) {
			if ((rc = skip_quoted(sp, c, false)))
				return rc;
		} else if (!mysql && c == '$') {
			bool quoted;
			if ((rc = skip_dollar(sp, &quoted)))
				return rc;
			if (!quoted)
				sp->i++;
		} else if (isalpha((unsigned char)c) || c == '_') {
			size_t j = i;
			while (j < sp->len && word_char(s[j]))
				j++;
			size_t n = j - i;
			sp->i = j;
			if (!mysql && n == 1 && (c == 'E' || c == 'e') && j < sp->len && s[j] == '\'') {
				if ((rc = skip_quoted(sp, '\'', true))) /* E'...': backslash escapes */
					return rc;
			} else if (!mysql && word_is(s + i, n, "BEGIN") && i != start) {
				/* BEGIN inside a statement opens a block (a trigger's body,
				 * BEGIN ATOMIC); BEGIN that starts one is a transaction. */
				if (depth++ == 0)
					block_line = sp->line;
			} else if (!mysql && depth > 0 && word_is(s + i, n, "CASE")) {
				depth++;
			} else if (!mysql && depth > 0 && word_is(s + i, n, "END")) {
				depth--;
			}
		} else {
			sp->i++;
		}
	}
	if (depth > 0)
		return split_fail(sp, block_line, "BEGIN without its END");
	return start != SIZE_MAX ? emit(sp, start, sp->len, start_line) : 0;
}

static void skip_json_space(splitter *sp)
{
	while (sp->i < sp->len && isspace((unsigned char)sp->s[sp->i]))
		advance_to(sp, sp->i + 1);
}

/* One JSON value starting at sp->i (an object: checked by the caller). */
static int skip_json_value(splitter *sp)
{
	unsigned line = sp->line;
	int depth = 0;
	while (sp->i < sp->len) {
		char c = sp->s[sp->i];
		if (c == '"') {
			unsigned sline = sp->line;
			size_t j = sp->i + 1;
			while (j < sp->len && sp->s[j] != '"')
				j += sp->s[j] == '\\' ? 2 : 1;
			if (j >= sp->len)
				return split_fail(sp, sline, "JSON string not closed");
			advance_to(sp, j + 1);
			continue;
		}
		if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']')
			depth--;
		advance_to(sp, sp->i + 1);
		if (depth == 0)
			return 0;
		if (depth < 0)
			break;
	}
	return split_fail(sp, line, "JSON value not closed");
}

static int split_json(splitter *sp)
{
	int rc;
	skip_json_space(sp);
	if (sp->i >= sp->len || sp->s[sp->i] != '[')
		return split_fail(sp, sp->line, "expected a JSON array of commands ('[')");
	advance_to(sp, sp->i + 1);
	skip_json_space(sp);
	if (sp->i < sp->len && sp->s[sp->i] == ']') {
		advance_to(sp, sp->i + 1);
	} else {
		for (;;) {
			skip_json_space(sp);
			if (sp->i >= sp->len)
				return split_fail(sp, sp->line, "JSON array not closed");
			if (sp->s[sp->i] != '{') {
				char what[64];
				snprintf(what, sizeof what, "command %zu is not a JSON object", sp->n + 1);
				return split_fail(sp, sp->line, what);
			}
			size_t start = sp->i;
			unsigned line = sp->line;
			if ((rc = skip_json_value(sp)) || (rc = emit(sp, start, sp->i, line)))
				return rc;
			skip_json_space(sp);
			if (sp->i < sp->len && sp->s[sp->i] == ',') {
				advance_to(sp, sp->i + 1);
				continue;
			}
			if (sp->i < sp->len && sp->s[sp->i] == ']') {
				advance_to(sp, sp->i + 1);
				break;
			}
			return split_fail(sp, sp->line, sp->i < sp->len ? "expected ',' or ']' after a command"
									: "JSON array not closed");
		}
	}
	skip_json_space(sp);
	if (sp->i < sp->len)
		return split_fail(sp, sp->line, "text after the array of commands");
	return 0;
}

int emh__split(const char *text, size_t len, int how, emh__span **out, size_t *n, emh_error *err)
{
	splitter sp = {.s = text, .len = len, .line = 1, .how = how, .delim = ";", .dlen = 1, .err = err};
	/* Statements go to the driver as C strings: one would end at a NUL byte,
	 * inside a string or comment too, and what follows it would never run
	 * though the file's checksum is recorded as applied. */
	const char *nul = memchr(text, '\0', len);
	int rc;
	if (nul) {
		advance_to(&sp, (size_t)(nul - text));
		rc = split_fail(&sp, sp.line, "a NUL byte: a migration is text");
	} else {
		rc = how == EMH__SPLIT_JSON ? split_json(&sp) : split_sql(&sp);
	}
	if (rc) {
		free(sp.v);
		*out = NULL;
		*n = 0;
		return rc;
	}
	*out = sp.v;
	*n = sp.n;
	return 0;
}
