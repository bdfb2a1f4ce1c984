/* SPDX-License-Identifier: MIT */
/*
 * plugins/postgres/values.c: emhost values in PostgreSQL's binary format:
 * parameters encoded for the statement's declared types, result columns
 * checked and decoded by type OID.
 */
#include "config.h"

#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include <emhost/driver.h>

#include "postgres_int.h"

/*
 * Type OIDs of the built-in types we bind and read (pg_type.oid; they are
 * fixed across server versions).  libpq-dev ships no header with them.
 */
enum {
	PG_BOOLOID = 16,
	PG_BYTEAOID = 17,
	PG_CHAROID = 18,
	PG_NAMEOID = 19,
	PG_INT8OID = 20,
	PG_INT2OID = 21,
	PG_INT4OID = 23,
	PG_TEXTOID = 25,
	PG_OIDOID = 26,
	PG_JSONOID = 114,
	PG_FLOAT4OID = 700,
	PG_FLOAT8OID = 701,
	PG_UNKNOWNOID = 705,
	PG_BPCHAROID = 1042,
	PG_VARCHAROID = 1043,
	PG_DATEOID = 1082,
	PG_TIMESTAMPOID = 1114,
	PG_TIMESTAMPTZOID = 1184,
	PG_JSONBOID = 3802,
};

/* Microseconds between 1970-01-01 (emhost) and 2000-01-01 (PostgreSQL) epochs. */
#define PG_EPOCH_OFFSET_US INT64_C(946684800000000)

Oid pg_type_oid(emh_type t)
{
	switch (t) {
	case EMH_T_BOOL: return PG_BOOLOID;
	case EMH_T_INT32: return PG_INT4OID;
	case EMH_T_INT64: return PG_INT8OID;
	case EMH_T_DOUBLE: return PG_FLOAT8OID;
	case EMH_T_TEXT: return PG_TEXTOID;
	case EMH_T_BLOB: return PG_BYTEAOID;
	case EMH_T_TIMESTAMP: return PG_TIMESTAMPTZOID;
	case EMH_T_JSON: return PG_JSONOID;
	}
	return 0;
}

static int64_t pg_value_int(const emh_value *v)
{
	switch (v->type) {
	case EMH_T_INT32: return v->u.i32;
	case EMH_T_BOOL: return v->u.b;
	case EMH_T_DOUBLE: return v->u.d >= -9.2e18 && v->u.d <= 9.2e18 ? (int64_t)v->u.d : 0;
	default: return v->u.i64;
	}
}

/*
 * Encode params[i] in PostgreSQL's binary format for the statement's
 * declared type (the value may be of a kindred type: int32 for int64,
 * int64 for a timestamp).  Numbers go through c->pbuf[i].
 */
int pg_bind(emh_conn *c, const emh_stmt *st, const emh_value *params, emh_error *err)
{
	for (uint16_t i = 0; i < st->nparams; i++) {
		const emh_value *v = &params[i];
		emh_type t = st->param_types[i];
		char *b = (char *)&c->pbuf[i];
		uint64_t u;
		int64_t x;

		c->pfmts[i] = 1;
		if (v->is_null) {
			c->pvals[i] = NULL;
			c->plens[i] = 0;
			continue;
		}
		switch (t) {
		case EMH_T_BOOL:
			b[0] = v->type == EMH_T_BOOL ? (char)v->u.b : (char)(pg_value_int(v) != 0);
			c->plens[i] = 1;
			break;
		case EMH_T_INT32: {
			uint32_t be;
			x = pg_value_int(v);
			if (x < INT32_MIN || x > INT32_MAX)
				return emh_error_set(err, EMH_EINVAL, "parameter %u out of int32 range", (unsigned)i + 1);
			be = htobe32((uint32_t)(int32_t)x);
			memcpy(b, &be, 4);
			c->plens[i] = 4;
			break;
		}
		case EMH_T_INT64:
			u = htobe64((uint64_t)pg_value_int(v));
			memcpy(b, &u, 8);
			c->plens[i] = 8;
			break;
		case EMH_T_DOUBLE: {
			double d = v->type == EMH_T_DOUBLE ? v->u.d : (double)pg_value_int(v);
			memcpy(&u, &d, 8);
			u = htobe64(u);
			memcpy(b, &u, 8);
			c->plens[i] = 8;
			break;
		}
		case EMH_T_TIMESTAMP:
			x = pg_value_int(v);
			if (x < INT64_MIN + PG_EPOCH_OFFSET_US)
				return emh_error_set(err, EMH_EINVAL, "parameter %u: timestamp out of range",
						     (unsigned)i + 1);
			u = htobe64((uint64_t)(x - PG_EPOCH_OFFSET_US));
			memcpy(b, &u, 8);
			c->plens[i] = 8;
			break;
		case EMH_T_TEXT:
		case EMH_T_JSON:
		case EMH_T_BLOB:
			if (v->u.s.len > INT32_MAX)
				return emh_error_set(err, EMH_EINVAL, "parameter %u is larger than 2 GiB",
						     (unsigned)i + 1);
			c->pvals[i] = v->u.s.ptr ? v->u.s.ptr : "";
			c->plens[i] = (int)v->u.s.len;
			continue;
		default:
			return emh_error_set(err, EMH_EINVAL, "parameter %u has unknown type %d", (unsigned)i + 1,
					     (int)t);
		}
		c->pvals[i] = b;
	}
	return 0;
}

static uint16_t pg_be16(const char *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return be16toh(v);
}

static uint32_t pg_be32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static uint64_t pg_be64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

/* Can a column of type oid be read as want?  (Checked once per result.) */
bool pg_readable(Oid oid, emh_type want)
{
	switch (want) {
	case EMH_T_BOOL: return oid == PG_BOOLOID;
	case EMH_T_INT32:
	case EMH_T_INT64: return oid == PG_INT2OID || oid == PG_INT4OID || oid == PG_INT8OID || oid == PG_OIDOID;
	case EMH_T_DOUBLE:
		return oid == PG_FLOAT8OID || oid == PG_FLOAT4OID || oid == PG_INT2OID || oid == PG_INT4OID ||
		       oid == PG_INT8OID;
	case EMH_T_TEXT:
	case EMH_T_JSON:
		return oid == PG_TEXTOID || oid == PG_VARCHAROID || oid == PG_BPCHAROID || oid == PG_NAMEOID ||
		       oid == PG_JSONOID || oid == PG_JSONBOID || oid == PG_UNKNOWNOID || oid == PG_CHAROID;
	case EMH_T_BLOB: return oid == PG_BYTEAOID;
	case EMH_T_TIMESTAMP: return oid == PG_TIMESTAMPTZOID || oid == PG_TIMESTAMPOID || oid == PG_DATEOID;
	}
	return false;
}

/* Integer of a binary int2/int4/int8/oid value; false on a bad length. */
static bool pg_read_int(Oid oid, const char *p, int len, int64_t *out)
{
	if (oid == PG_INT2OID && len == 2)
		*out = (int16_t)pg_be16(p);
	else if (oid == PG_INT4OID && len == 4)
		*out = (int32_t)pg_be32(p);
	else if (oid == PG_OIDOID && len == 4)
		*out = pg_be32(p);
	else if (oid == PG_INT8OID && len == 8)
		*out = (int64_t)pg_be64(p);
	else
		return false;
	return true;
}

/* Decode one binary field (already known readable) into v of type want. */
int pg_decode(Oid oid, const char *p, int len, emh_type want, emh_value *v, const char *col,
	      emh_error *err)
{
	int64_t x;
	uint64_t u;

	v->type = want;
	v->is_null = false;
	switch (want) {
	case EMH_T_BOOL:
		if (len != 1)
			goto bad;
		v->u.b = p[0] != 0;
		return 0;
	case EMH_T_INT32:
		if (!pg_read_int(oid, p, len, &x))
			goto bad;
		if (x < INT32_MIN || x > INT32_MAX)
			return emh_error_set(err, EMH_EINVAL, "column '%s': value out of int32 range", col);
		v->u.i32 = (int32_t)x;
		return 0;
	case EMH_T_INT64:
		if (!pg_read_int(oid, p, len, &x))
			goto bad;
		v->u.i64 = x;
		return 0;
	case EMH_T_DOUBLE:
		if (oid == PG_FLOAT8OID && len == 8) {
			u = pg_be64(p);
			memcpy(&v->u.d, &u, 8);
		} else if (oid == PG_FLOAT4OID && len == 4) {
			uint32_t w = pg_be32(p);
			float f;
			memcpy(&f, &w, 4);
			v->u.d = f;
		} else if (pg_read_int(oid, p, len, &x)) {
			v->u.d = (double)x;
		} else {
			goto bad;
		}
		return 0;
	case EMH_T_TEXT:
	case EMH_T_JSON:
	case EMH_T_BLOB:
		if (oid == PG_JSONBOID) {
			/* binary jsonb: a version byte (1), then the text */
			if (len < 1 || p[0] != 1)
				goto bad;
			p++;
			len--;
		}
		v->u.s.ptr = p;
		v->u.s.len = (size_t)len;
		return 0;
	case EMH_T_TIMESTAMP:
		if (oid == PG_DATEOID && len == 4) {
			x = (int64_t)(int32_t)pg_be32(p);
			if (x == INT32_MAX || x == INT32_MIN) /* +-infinity */
				v->u.i64 = x == INT32_MAX ? INT64_MAX : INT64_MIN;
			else if (x > 100000000 || x < -100000000) /* beyond ~273,000 years */
				return emh_error_set(err, EMH_EINVAL, "column '%s': date out of range", col);
			else
				v->u.i64 = x * INT64_C(86400000000) + PG_EPOCH_OFFSET_US;
			return 0;
		}
		if (len != 8)
			goto bad;
		x = (int64_t)pg_be64(p);
		/* +-infinity stay at the int64 extremes */
		if (x == INT64_MAX || x == INT64_MIN)
			v->u.i64 = x;
		else if (x > INT64_MAX - PG_EPOCH_OFFSET_US)
			return emh_error_set(err, EMH_EINVAL, "column '%s': timestamp out of range", col);
		else
			v->u.i64 = x + PG_EPOCH_OFFSET_US;
		return 0;
	}
bad:
	return emh_error_set(err, EMH_EDRIVER, "column '%s': unexpected binary value (type oid %u, %d bytes)", col,
			     (unsigned)oid, len);
}
