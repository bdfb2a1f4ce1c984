/* SPDX-License-Identifier: MIT */
/*
 * plugins/postgres/errors.c: SQLSTATEs as portable emhost errors, server
 * messages cleaned for logs, and the one helper that runs a command and
 * reports its failure.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include <emhost/error.h>

#include "postgres_int.h"

/* PostgreSQL's own packing of a SQLSTATE into an int (MAKE_SQLSTATE in
 * utils/elog.h): 6 bits per character, first character lowest. */
static int pg_sqlstate_pack(const char *s)
{
	unsigned v = 0;
	for (int i = 0; i < 5 && s[i]; i++)
		v |= ((unsigned)(s[i] - '0') & 0x3Fu) << (6 * i);
	return (int)v;
}

/*
 * Portable code for a SQLSTATE.  Class 08 (connection exception) and the
 * shutdown states mean the server is gone or refuses us; 40001/40P01
 * (serialization failure, deadlock) are worth retrying the transaction, and
 * so is 55P03 (a lock not available: NOWAIT, lock_timeout), a conflict with
 * the transaction holding it.  57014 (a statement cancelled:
 * statement_timeout, or a cancel request) is a call past its deadline, and
 * 53300 (too many connections) back-pressure: both EMH_ETIMEOUT, retryable,
 * and neither marks the context down.
 */
int pg_sqlstate_code(const char *s, bool *retryable)
{
	*retryable = false;
	if (!s || strlen(s) != 5)
		return EMH_EDRIVER;
	if (strcmp(s, "23505") == 0)
		return EMH_ECONFLICT;
	if (strcmp(s, "57014") == 0 || strcmp(s, "53300") == 0) {
		*retryable = true;
		return EMH_ETIMEOUT;
	}
	if (strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
	    strcmp(s, "57P03") == 0)
		return EMH_EUNAVAILABLE;
	if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0) {
		*retryable = true;
		return EMH_ERETRY;
	}
	if (strcmp(s, "55P03") == 0) {
		*retryable = true;
		return EMH_ECONFLICT;
	}
	if (strcmp(s, "23502") == 0 || strcmp(s, "23514") == 0 || strncmp(s, "22", 2) == 0)
		return EMH_EINVAL;
	if (strncmp(s, "25", 2) == 0)
		return EMH_ESTATE;
	if (strncmp(s, "28", 2) == 0 || strcmp(s, "3D000") == 0)
		return EMH_EUNAVAILABLE;
	return EMH_EDRIVER;
}

/*
 * Copy a libpq/server message into dst on one line: "ERROR:  " and
 * "FATAL:  " prefixes dropped, newlines and tabs folded into single
 * spaces, trailing space trimmed, and every occurrence of each of the npw
 * passwords (those not NULL and at least 4 bytes long, so a tiny one cannot
 * mangle the text) replaced by "********".
 */
void pg_clean_message(char *dst, size_t cap, const char *src, const char *const *passwords, size_t npw)
{
	size_t n = 0;
	bool space = false;
	if (!src)
		src = "";
	if (cap == 0)
		return;
	while (*src && n + 1 < cap) {
		size_t pwlen = 0;
		for (size_t i = 0; i < npw && !pwlen; i++) {
			size_t len = passwords[i] ? strlen(passwords[i]) : 0;
			if (len >= 4 && strncmp(src, passwords[i], len) == 0)
				pwlen = len;
		}
		if (pwlen) {
			const char *mask = "********";
			while (*mask && n + 1 < cap)
				dst[n++] = *mask++;
			src += pwlen;
			space = false;
			continue;
		}
		if ((strncmp(src, "ERROR:  ", 8) == 0 || strncmp(src, "FATAL:  ", 8) == 0) &&
		    (n == 0 || space || (n >= 2 && dst[n - 2] == ':'))) {
			src += 8;
			continue;
		}
		char ch = *src++;
		if (ch == '\n' && n > 0 && n + 2 < cap && !(n >= 2 && dst[n - 2] == ';' && space) &&
		    src[strspn(src, " \t\r\n")]) {
			/* a line break inside a message: "refused; Is the server running..." */
			if (space)
				n--;
			dst[n++] = ';';
			dst[n++] = ' ';
			space = true;
			continue;
		}
		if (ch == '\n' || ch == '\t' || ch == '\r' || ch == ' ') {
			if (n > 0 && !space)
				dst[n++] = ' ';
			space = true;
			continue;
		}
		space = false;
		dst[n++] = ch;
	}
	while (n > 0 && dst[n - 1] == ' ')
		n--;
	dst[n] = '\0';
}

void pg_error_state(emh_error *err, const char *state, bool retryable)
{
	if (!err)
		return;
	if (state && strlen(state) == 5) {
		memcpy(err->sqlstate, state, 6);
		err->native = pg_sqlstate_pack(state);
	}
	err->retryable = retryable;
}

/*
 * The scanner's errors end with the statement's text where it failed
 * (syntax error at or near "Hunter2Secret"; unterminated quoted string at
 * or near "'Hunter2Secret").  That token can be a password (CREATE ROLE ...
 * PASSWORD mistyped): keep where, withhold what, as the MySQL driver does
 * with its "near '...'".  The token runs to the end of the primary
 * message (scanner_yyerror's format), quotes included.  Only the English
 * wording is known: a server whose lc_messages is another language quotes
 * it its own way.
 */
static const char *pg_unquote_token(const char *primary, char *buf, size_t cap)
{
	static const char near[] = "at or near \"";
	const char *at = strstr(primary, near);
	if (!at)
		return primary;
	snprintf(buf, cap, "%.*s...\"", (int)(at + sizeof near - 1 - primary), primary);
	return buf;
}

/*
 * Did a prepared statement fail because its result columns changed type
 * since it was planned (an ALTER TABLE)?  0A000 alone is any unsupported
 * feature, and the message ("cached plan must not change result type") is
 * translated under another lc_messages: the server function raising it
 * says, in every language.  A server (or proxy) that sends no function name
 * is judged by the English message.
 */
static bool pg_plan_changed(const PGresult *res, const char *state)
{
	const char *fn, *msg;
	if (!res || !state || strcmp(state, "0A000") != 0)
		return false;
	if ((fn = PQresultErrorField(res, PG_DIAG_SOURCE_FUNCTION)))
		return strcmp(fn, "RevalidateCachedQuery") == 0;
	msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	return msg && strstr(msg, "cached plan must not change result type");
}

/*
 * Fill err from a failed result (res may be NULL) of what ("insert into
 * 'users'").  Only the server's primary message is used: DETAIL lines carry
 * row values ("Key (email)=(x) already exists"); a syntax error's quoted
 * token is withheld (pg_unquote_token).  A connection that is
 * now bad makes the failure EMH_EUNAVAILABLE whatever the SQLSTATE, so the
 * core discards it; without a SQLSTATE it gets 08006 (connection failure).
 */
int pg_fail(emh_conn *c, const PGresult *res, const char *what, emh_error *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char msg[384], unquoted[384];
	bool retryable;
	int code;

	if (!primary && res)
		primary = PQresultErrorMessage(res);
	if (!primary || !*primary)
		primary = PQerrorMessage(c->pg);
	primary = pg_unquote_token(primary, unquoted, sizeof unquoted);
	c->plan_changed = pg_plan_changed(res, state);
	pg_clean_message(msg, sizeof msg, primary, NULL, 0);
	if (!*msg)
		snprintf(msg, sizeof msg, "unknown error");
	code = pg_sqlstate_code(state, &retryable);
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		code = EMH_EUNAVAILABLE;
		retryable = false;
		if (!state || !*state)
			state = "08006";
	}
	emh_error_set(err, code, "%s: %s", what, msg);
	pg_error_state(err, state, retryable);
	return code;
}

/* Run a command through the simple protocol under the call's deadline; 0 or the mapped failure. */
int pg_command(emh_conn *c, const char *sql, const char *what, emh_error *err)
{
	PGresult *res;
	int rc = pg_run(c, sql, what, &res, err);
	if (rc)
		return rc;
	ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY)
		rc = pg_fail(c, res, what, err);
	PQclear(res);
	return rc;
}
