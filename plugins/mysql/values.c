/* SPDX-License-Identifier: MIT */
/*
 * plugins/mysql/values.c: emhost values in the client library's binary
 * protocol: parameters bound for the statement's declared types, result
 * columns bound to the connection's storage and read back, and timestamps
 * as MYSQL_TIME in UTC.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include <mysql.h>

#include <emhost/driver.h>

#include "mysql_int.h"

/* ---- timestamps: int64 microseconds <-> MYSQL_TIME (UTC) ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t my_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void my_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* DATETIME(6) holds years 1000..9999 (earlier ones "may work"); refuse what it cannot. */
static int my_time_from_us(int64_t us, MYSQL_TIME *t, emh_error *err)
{
	int64_t secs = us / 1000000, frac = us % 1000000, days, sod, y;
	unsigned m, d;
	if (frac < 0) {
		frac += 1000000;
		secs--;
	}
	days = secs / 86400;
	sod = secs % 86400;
	if (sod < 0) {
		sod += 86400;
		days--;
	}
	my_civil_from_days(days, &y, &m, &d);
	if (y < 1 || y > 9999)
		return emh_error_set(err, EMH_EINVAL,
				     "timestamp %lld us is outside the DATETIME range (years 1 to 9999)",
				     (long long)us);
	memset(t, 0, sizeof *t);
	t->year = (unsigned)y;
	t->month = m;
	t->day = d;
	t->hour = (unsigned)(sod / 3600);
	t->minute = (unsigned)(sod % 3600 / 60);
	t->second = (unsigned)(sod % 60);
	t->second_part = (unsigned long)frac;
	t->time_type = MYSQL_TIMESTAMP_DATETIME;
	return 0;
}

static int64_t my_us_from_time(const MYSQL_TIME *t)
{
	unsigned m = t->month ? t->month : 1, d = t->day ? t->day : 1;
	int64_t days = my_days_from_civil(t->year, m, d);
	int64_t secs = days * 86400 + (int64_t)t->hour * 3600 + (int64_t)t->minute * 60 + t->second;
	int64_t us = secs * 1000000 + (int64_t)t->second_part;
	return t->neg ? -us : us;
}

/* ---- binding ---- */

/* Bind params[i] as st->param_types[i] says (a timestamp field compared with an int64 is a timestamp). */
int my_bind_param(MYSQL_BIND *b, my_param *pv, emh_type type, const emh_value *v, unsigned i,
		  emh_error *err)
{
	memset(b, 0, sizeof *b);
	pv->is_null = v->is_null;
	b->is_null = &pv->is_null;
	switch (type) {
	case EMH_T_TIMESTAMP:
		b->buffer_type = MYSQL_TYPE_DATETIME;
		b->buffer = &pv->s.t;
		b->buffer_length = sizeof pv->s.t;
		if (!v->is_null) {
			int64_t us = v->type == EMH_T_INT32 ? v->u.i32 : v->u.i64;
			int rc = my_time_from_us(us, &pv->s.t, err);
			if (rc)
				return rc;
		}
		return 0;
	case EMH_T_BOOL:
	case EMH_T_INT32:
	case EMH_T_INT64:
		if (v->type == EMH_T_BOOL) {
			b->buffer_type = MYSQL_TYPE_TINY;
			pv->s.b = v->u.b ? 1 : 0;
			b->buffer = &pv->s.b;
		} else if (v->type == EMH_T_INT32) {
			b->buffer_type = MYSQL_TYPE_LONG;
			pv->s.i32 = v->u.i32;
			b->buffer = &pv->s.i32;
		} else if (v->type == EMH_T_INT64 || v->type == EMH_T_TIMESTAMP || v->is_null) {
			b->buffer_type = type == EMH_T_BOOL ? MYSQL_TYPE_TINY : MYSQL_TYPE_LONGLONG;
			pv->s.i64 = v->is_null ? 0 : v->u.i64;
			b->buffer = &pv->s.i64;
			if (type == EMH_T_BOOL) {
				pv->s.b = (signed char)(pv->s.i64 != 0);
				b->buffer = &pv->s.b;
			}
		} else
			goto mismatch;
		return 0;
	case EMH_T_DOUBLE:
		b->buffer_type = MYSQL_TYPE_DOUBLE;
		b->buffer = &pv->s.d;
		if (v->is_null || v->type == EMH_T_DOUBLE)
			pv->s.d = v->is_null ? 0 : v->u.d;
		else if (v->type == EMH_T_INT32)
			pv->s.d = v->u.i32;
		else if (v->type == EMH_T_INT64)
			pv->s.d = (double)v->u.i64;
		else
			goto mismatch;
		return 0;
	case EMH_T_TEXT:
	case EMH_T_JSON:
	case EMH_T_BLOB:
		b->buffer_type = type == EMH_T_BLOB ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
		if (v->is_null)
			return 0;
		if (v->type != EMH_T_TEXT && v->type != EMH_T_JSON && v->type != EMH_T_BLOB)
			goto mismatch;
		/* The library only reads parameter buffers. */
		b->buffer = (void *)(uintptr_t)(v->u.s.ptr ? v->u.s.ptr : "");
		pv->len = (unsigned long)v->u.s.len;
		b->buffer_length = pv->len;
		b->length = &pv->len;
		return 0;
	default:
		break;
	}
mismatch:
	return emh_error_set(err, EMH_EINVAL, "parameter %u: a %s value where %s is expected", i + 1,
			     emh_type_name(v->type), emh_type_name(type));
}

/* Bind result column i of type t to the connection's column storage. */
void my_bind_col(MYSQL_BIND *b, my_col *col, emh_type t)
{
	memset(b, 0, sizeof *b);
	b->is_null = &col->is_null;
	b->error = &col->error;
	b->length = &col->len;
	switch (t) {
	case EMH_T_BOOL:
		b->buffer_type = MYSQL_TYPE_TINY;
		b->buffer = &col->s.b;
		break;
	case EMH_T_INT32:
		b->buffer_type = MYSQL_TYPE_LONG;
		b->buffer = &col->s.i32;
		break;
	case EMH_T_INT64:
		b->buffer_type = MYSQL_TYPE_LONGLONG;
		b->buffer = &col->s.i64;
		break;
	case EMH_T_DOUBLE:
		b->buffer_type = MYSQL_TYPE_DOUBLE;
		b->buffer = &col->s.d;
		break;
	case EMH_T_TIMESTAMP:
		b->buffer_type = MYSQL_TYPE_DATETIME;
		b->buffer = &col->s.t;
		b->buffer_length = sizeof col->s.t;
		break;
	default: /* text, json, blob */
		b->buffer_type = t == EMH_T_BLOB ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
		b->buffer = col->buf;
		b->buffer_length = col->cap;
		break;
	}
}

emh_value my_col_value(const my_col *col, emh_type t)
{
	emh_value v = {.type = t, .is_null = col->is_null != 0};
	if (v.is_null)
		return v;
	switch (t) {
	case EMH_T_BOOL:
		v.u.b = col->s.b != 0;
		break;
	case EMH_T_INT32:
		v.u.i32 = col->s.i32;
		break;
	case EMH_T_INT64:
		v.u.i64 = col->s.i64;
		break;
	case EMH_T_DOUBLE:
		v.u.d = col->s.d;
		break;
	case EMH_T_TIMESTAMP:
		v.u.i64 = my_us_from_time(&col->s.t);
		break;
	default:
		v.u.s.ptr = col->buf ? col->buf : "";
		v.u.s.len = col->len;
		break;
	}
	return v;
}
