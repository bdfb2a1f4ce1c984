/* SPDX-License-Identifier: MIT */
/* bench/raw_mysql.c: the raw MySQL/MariaDB side of emh-bench (mysql_stmt_* prepared statements, as the driver uses). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include "bench.h"

#if defined(MARIADB_PACKAGE_VERSION_ID) || !defined(MYSQL_VERSION_ID) || MYSQL_VERSION_ID < 80000
typedef my_bool raw_flag;
#else
typedef bool raw_flag;
#endif

typedef struct raw_my {
	MYSQL *my;
	MYSQL_STMT *get, *upd, *ins, *updw, *agg, *find;
	/* get: one key in, four columns out */
	long long key;
	MYSQL_BIND get_in[1], get_out[4];
	long long r_id, r_counter;
	double r_score;
	char r_name[256];
	unsigned long r_name_len;
	raw_flag r_null[4], r_err[4];
	/* update: counter, id */
	long long u_counter, u_id;
	MYSQL_BIND upd_in[2];
	/* insert: name, counter, score */
	char i_name[256];
	unsigned long i_name_len;
	long long i_counter;
	double i_score;
	MYSQL_BIND ins_in[3];
	/* aggregate: lo, hi in; counter, count, sum out */
	long long a_lo, a_hi, a_counter, a_count;
	double a_sum;
	MYSQL_BIND agg_in[2], agg_out[3];
	raw_flag a_null[3], a_err[3];
} raw_my;

static const char raw_get_sql[] = "SELECT `id`, `name`, `counter`, `score` FROM `" BENCH_TABLE "` WHERE `id` = ?";
static const char raw_update_sql[] = "UPDATE `" BENCH_TABLE "` SET `counter` = ? WHERE `id` = ?";
static const char raw_update_where_sql[] = "UPDATE `" BENCH_TABLE "` SET `counter` = `counter` + ? WHERE `id` = ?";
static const char raw_agg_sql[] = "SELECT `counter`, COUNT(*), SUM(`score`) FROM `" BENCH_TABLE
				  "` WHERE `id` >= ? AND `id` < ? GROUP BY `counter`";
static const char raw_find_sql[] =
	"SELECT `id`, `name`, `counter`, `score` FROM `" BENCH_TABLE "` WHERE `id` >= ? AND `id` < ?";
static const char raw_insert_sql[] = "INSERT INTO `" BENCH_TABLE "` (`name`, `counter`, `score`) VALUES (?, ?, ?)";

static MYSQL_STMT *raw_my_prepare(MYSQL *my, const char *sql)
{
	MYSQL_STMT *s = mysql_stmt_init(my);
	if (!s)
		return NULL;
	if (mysql_stmt_prepare(s, sql, (unsigned long)strlen(sql)) != 0) {
		fprintf(stderr, "raw mysql: prepare '%s': %s\n", sql, mysql_stmt_error(s));
		mysql_stmt_close(s);
		return NULL;
	}
	return s;
}

static void raw_my_close(void *p)
{
	raw_my *raw = p;
	if (!raw)
		return;
	if (raw->get)
		mysql_stmt_close(raw->get);
	if (raw->upd)
		mysql_stmt_close(raw->upd);
	if (raw->ins)
		mysql_stmt_close(raw->ins);
	if (raw->updw)
		mysql_stmt_close(raw->updw);
	if (raw->agg)
		mysql_stmt_close(raw->agg);
	if (raw->find)
		mysql_stmt_close(raw->find);
	mysql_close(raw->my);
	free(raw);
}

static void raw_my_bind_ll(MYSQL_BIND *b, long long *v)
{
	memset(b, 0, sizeof *b);
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = v;
}

static void *raw_my_open(emh_host *h, const char *ctx)
{
	const char *host = emh_host_context_setting(h, ctx, "host");
	const char *port = emh_host_context_setting(h, ctx, "port");
	const char *sock = emh_host_context_setting(h, ctx, "socket");
	const char *db = emh_host_context_setting(h, ctx, "database");
	const char *user = emh_host_context_setting(h, ctx, "user");
	const char *pw = emh_host_context_setting(h, ctx, "password");
	raw_my *raw = calloc(1, sizeof *raw);
	if (!raw)
		return NULL;
	raw->my = mysql_init(NULL);
	if (!raw->my) {
		free(raw);
		return NULL;
	}
	mysql_options(raw->my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	if (!mysql_real_connect(raw->my, host && *host ? host : NULL, user, pw, db,
				port ? (unsigned)strtoul(port, NULL, 10) : 0, sock && *sock ? sock : NULL,
				CLIENT_FOUND_ROWS) ||
	    mysql_query(raw->my, "SET SESSION time_zone = '+00:00', "
				 "SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'") != 0) {
		fprintf(stderr, "raw mysql: cannot connect for context '%s': %s\n", ctx, mysql_error(raw->my));
		raw_my_close(raw);
		return NULL;
	}
	if (!(raw->get = raw_my_prepare(raw->my, raw_get_sql)) || !(raw->upd = raw_my_prepare(raw->my, raw_update_sql)) ||
	    !(raw->ins = raw_my_prepare(raw->my, raw_insert_sql)) ||
	    !(raw->updw = raw_my_prepare(raw->my, raw_update_where_sql)) ||
	    !(raw->agg = raw_my_prepare(raw->my, raw_agg_sql)) ||
	    !(raw->find = raw_my_prepare(raw->my, raw_find_sql))) {
		raw_my_close(raw);
		return NULL;
	}

	raw_my_bind_ll(&raw->get_in[0], &raw->key);
	raw_my_bind_ll(&raw->get_out[0], &raw->r_id);
	memset(&raw->get_out[1], 0, sizeof raw->get_out[1]);
	raw->get_out[1].buffer_type = MYSQL_TYPE_STRING;
	raw->get_out[1].buffer = raw->r_name;
	raw->get_out[1].buffer_length = sizeof raw->r_name;
	raw->get_out[1].length = &raw->r_name_len;
	raw_my_bind_ll(&raw->get_out[2], &raw->r_counter);
	memset(&raw->get_out[3], 0, sizeof raw->get_out[3]);
	raw->get_out[3].buffer_type = MYSQL_TYPE_DOUBLE;
	raw->get_out[3].buffer = &raw->r_score;
	for (int i = 0; i < 4; i++) {
		raw->get_out[i].is_null = &raw->r_null[i];
		raw->get_out[i].error = &raw->r_err[i];
	}

	raw_my_bind_ll(&raw->upd_in[0], &raw->u_counter);
	raw_my_bind_ll(&raw->upd_in[1], &raw->u_id);

	memset(&raw->ins_in[0], 0, sizeof raw->ins_in[0]);
	raw->ins_in[0].buffer_type = MYSQL_TYPE_STRING;
	raw->ins_in[0].buffer = raw->i_name;
	raw->ins_in[0].length = &raw->i_name_len;
	raw_my_bind_ll(&raw->ins_in[1], &raw->i_counter);
	memset(&raw->ins_in[2], 0, sizeof raw->ins_in[2]);
	raw->ins_in[2].buffer_type = MYSQL_TYPE_DOUBLE;
	raw->ins_in[2].buffer = &raw->i_score;

	raw_my_bind_ll(&raw->agg_in[0], &raw->a_lo);
	raw_my_bind_ll(&raw->agg_in[1], &raw->a_hi);
	raw_my_bind_ll(&raw->agg_out[0], &raw->a_counter);
	raw_my_bind_ll(&raw->agg_out[1], &raw->a_count);
	memset(&raw->agg_out[2], 0, sizeof raw->agg_out[2]);
	raw->agg_out[2].buffer_type = MYSQL_TYPE_DOUBLE;
	raw->agg_out[2].buffer = &raw->a_sum;
	for (int i = 0; i < 3; i++) {
		raw->agg_out[i].is_null = &raw->a_null[i];
		raw->agg_out[i].error = &raw->a_err[i];
	}
	return raw;
}

/* Run the prepared get and read every column (a longer name is fetched whole, as the driver does). */
static int raw_my_select(raw_my *raw, int64_t id)
{
	int f, rc = -1, rows = 0;
	raw->key = id;
	if (mysql_stmt_bind_param(raw->get, raw->get_in) != 0 || mysql_stmt_execute(raw->get) != 0 ||
	    mysql_stmt_bind_result(raw->get, raw->get_out) != 0)
		return -1;
	while ((f = mysql_stmt_fetch(raw->get)) == 0 || f == MYSQL_DATA_TRUNCATED) {
		if (f == MYSQL_DATA_TRUNCATED && raw->r_err[1]) {
			char *big = malloc(raw->r_name_len + 1);
			MYSQL_BIND b = raw->get_out[1];
			if (!big)
				break;
			b.buffer = big;
			b.buffer_length = raw->r_name_len + 1;
			mysql_stmt_fetch_column(raw->get, &b, 1, 0);
			free(big);
		}
		volatile long long rid = raw->r_id, counter = raw->r_counter;
		volatile double score = raw->r_score;
		(void)rid, (void)counter, (void)score;
		rows++;
	}
	if (f == MYSQL_NO_DATA && rows == 1)
		rc = 0;
	mysql_stmt_free_result(raw->get);
	return rc;
}

static int raw_my_get_by_key(void *p, int64_t id)
{
	return raw_my_select(p, id);
}

static int raw_my_command(raw_my *raw, const char *sql)
{
	return mysql_real_query(raw->my, sql, (unsigned long)strlen(sql)) == 0 ? 0 : -1;
}

static int raw_my_update(void *p, int64_t id, int64_t counter)
{
	raw_my *raw = p;
	if (raw_my_command(raw, "START TRANSACTION"))
		return -1;
	if (raw_my_select(raw, id))
		goto out_rollback;
	raw->u_counter = counter;
	raw->u_id = id;
	if (mysql_stmt_bind_param(raw->upd, raw->upd_in) != 0 || mysql_stmt_execute(raw->upd) != 0 ||
	    mysql_stmt_affected_rows(raw->upd) != 1)
		goto out_rollback;
	return raw_my_command(raw, "COMMIT");
out_rollback:
	raw_my_command(raw, "ROLLBACK");
	return -1;
}

/* The same binds as update: (delta, id). */
static int raw_my_update_where(void *p, int64_t id, int64_t delta)
{
	raw_my *raw = p;
	raw->u_counter = delta;
	raw->u_id = id;
	if (mysql_stmt_bind_param(raw->updw, raw->upd_in) != 0 || mysql_stmt_execute(raw->updw) != 0)
		return -1;
	return mysql_stmt_affected_rows(raw->updw) == 1 ? 0 : -1;
}

static int raw_my_insert(void *p, const char *name, int64_t counter, double score)
{
	raw_my *raw = p;
	size_t n = strlen(name);
	if (n >= sizeof raw->i_name)
		n = sizeof raw->i_name - 1;
	memcpy(raw->i_name, name, n);
	raw->i_name_len = (unsigned long)n;
	raw->ins_in[0].buffer_length = (unsigned long)n;
	raw->i_counter = counter;
	raw->i_score = score;
	if (mysql_stmt_bind_param(raw->ins, raw->ins_in) != 0 || mysql_stmt_execute(raw->ins) != 0)
		return -1;
	volatile long long id = (long long)mysql_stmt_insert_id(raw->ins);
	return id > 0 ? 0 : -1;
}

static int raw_my_aggregate(void *p, int64_t lo, int64_t hi, int64_t *groups)
{
	raw_my *raw = p;
	int f;
	volatile double sink = 0;
	raw->a_lo = lo;
	raw->a_hi = hi;
	*groups = 0;
	/* Stored as the driver does, so that the two read the same way. */
	if (mysql_stmt_bind_param(raw->agg, raw->agg_in) != 0 || mysql_stmt_execute(raw->agg) != 0 ||
	    mysql_stmt_store_result(raw->agg) != 0 || mysql_stmt_bind_result(raw->agg, raw->agg_out) != 0)
		return -1;
	while ((f = mysql_stmt_fetch(raw->agg)) == 0) {
		sink += (double)raw->a_counter + (double)raw->a_count + raw->a_sum;
		(*groups)++;
	}
	mysql_stmt_free_result(raw->agg);
	return f == MYSQL_NO_DATA ? 0 : -1;
}

/* The rows of [lo, hi) into an array of bench_item: the get's result binds
 * (names cut at 255 bytes; the bench's are short), stored as the driver does. */
static int raw_my_find(void *p, int64_t lo, int64_t hi, size_t *rows)
{
	raw_my *raw = p;
	bench_rows out = {0};
	int f, rc = -1;
	raw->a_lo = lo;
	raw->a_hi = hi;
	*rows = 0;
	if (mysql_stmt_bind_param(raw->find, raw->agg_in) != 0 || mysql_stmt_execute(raw->find) != 0 ||
	    mysql_stmt_store_result(raw->find) != 0 || mysql_stmt_bind_result(raw->find, raw->get_out) != 0)
		return -1;
	while ((f = mysql_stmt_fetch(raw->find)) == 0 || f == MYSQL_DATA_TRUNCATED) {
		bench_item *it = bench_rows_push(&out);
		size_t n = raw->r_name_len < sizeof raw->r_name ? raw->r_name_len : sizeof raw->r_name - 1;
		char *name = it ? malloc(n + 1) : NULL;
		if (!name) {
			if (it)
				out.n--;
			f = -1;
			break;
		}
		memcpy(name, raw->r_name, n);
		name[n] = '\0';
		it->name = name;
		it->id = raw->r_id;
		it->counter = raw->r_null[2] ? 0 : raw->r_counter;
		it->score = raw->r_null[3] ? 0 : raw->r_score;
	}
	if (f == MYSQL_NO_DATA)
		rc = 0;
	mysql_stmt_free_result(raw->find);
	*rows = out.n;
	bench_rows_free(&out);
	return rc;
}

const bench_raw_ops bench_raw_mysql = {
	.driver = "mysql",
	.open = raw_my_open,
	.close = raw_my_close,
	.get_by_key = raw_my_get_by_key,
	.update = raw_my_update,
	.insert = raw_my_insert,
	.update_where = raw_my_update_where,
	.aggregate = raw_my_aggregate,
	.find = raw_my_find,
};
