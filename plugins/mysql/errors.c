/* SPDX-License-Identifier: MIT */
/*
 * plugins/mysql/errors.c: MySQL/MariaDB error numbers as portable emhost
 * errors, with the values and SQL text that server messages quote removed.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <mysql.h>

#include <emhost/error.h>

#include "mysql_int.h"

static bool my_errno_is_gone(unsigned no)
{
	switch (no) {
	case MY_CR_CONNECTION_ERROR:
	case MY_CR_CONN_HOST_ERROR:
	case MY_CR_UNKNOWN_HOST:
	case MY_CR_SERVER_GONE:
	case MY_CR_SERVER_LOST:
	case MY_CR_SERVER_LOST_EXTENDED:
	case MY_CR_COMMANDS_OUT_OF_SYNC:
	case MY_CR_SSL_CONNECTION_ERROR:
	case MY_ER_CON_COUNT:
	case MY_ER_HOST_BLOCKED:
	case MY_ER_SERVER_SHUTDOWN:
	case MY_ER_ABORTING_CONNECTION:
	case MY_ER_CONNECTION_KILLED:
	case MY_ER_CLIENT_INTERACTION_TIMEOUT:
		return true;
	default:
		return no >= MY_ER_NET_READ_ERROR && no <= MY_ER_NET_WRITE_INTERRUPTED;
	}
}

/* Portable code of a MySQL error number. */
static int my_code(unsigned no)
{
	if (my_errno_is_gone(no))
		return EMH_EUNAVAILABLE;
	switch (no) {
	case MY_ER_DUP_ENTRY:
	case MY_ER_DUP_ENTRY_WITH_KEY_NAME:
	case MY_ER_DUP_KEY:
		return EMH_ECONFLICT;
	case MY_ER_LOCK_DEADLOCK:
	case MY_ER_CHECKREAD:
		return EMH_ERETRY;
	/* A lock that could not be had: NOWAIT (MariaDB reports it as a lock
	 * wait timeout) or innodb_lock_wait_timeout.  A conflict with the
	 * transaction holding it, retryable (my_fail). */
	case MY_ER_LOCK_WAIT_TIMEOUT:
	case MY_ER_LOCK_NOWAIT:
		return EMH_ECONFLICT;
	case MY_ER_STATEMENT_TIMEOUT:
	case MY_ER_QUERY_TIMEOUT:
		return EMH_ETIMEOUT;
	case MY_ER_ACCESS_DENIED:
	case MY_ER_DBACCESS_DENIED:
	case MY_ER_ACCESS_DENIED_NO_PASSWORD:
	case MY_ER_BAD_DB:
	case MY_ER_NO_DB:
	case MY_ER_HOST_NOT_PRIVILEGED:
	case MY_ER_NOT_SUPPORTED_AUTH_MODE:
	case MY_CR_AUTH_PLUGIN_CANNOT_LOAD:
	case MY_CR_CANT_READ_CHARSET:
		return EMH_ECONFIG;
	case MY_ER_NO_SUCH_TABLE:
	case MY_ER_BAD_FIELD:
	case MY_ER_TOO_LONG_KEY:
	case MY_ER_TOO_LONG_IDENT:
	case MY_ER_BLOB_KEY_WITHOUT_LENGTH:
		return EMH_ESCHEMA;
	case MY_ER_BAD_NULL:
	case MY_ER_DATA_TOO_LONG:
	case MY_ER_NET_PACKET_TOO_LARGE:
	case MY_CR_NET_PACKET_TOO_LARGE:
	case MY_ER_WARN_DATA_OUT_OF_RANGE:
	case MY_ER_DATA_OUT_OF_RANGE:
	case MY_ER_WARN_DATA_TRUNCATED:
	case MY_ER_TRUNCATED_WRONG_VALUE:
	case MY_ER_TRUNCATED_WRONG_VALUE_FOR_FIELD:
		return EMH_EINVAL;
	default:
		return EMH_EDRIVER;
	}
}

/*
 * Copy a server message without the values or SQL text some messages quote
 * ("Duplicate entry 'x' for key", "Incorrect string value: 'x' for column",
 * "syntax to use near '...' at line 1"): a bound value, or a literal of raw
 * SQL such as a password, must never reach a log.
 */
static void my_redact(char *dst, size_t cap, const char *msg)
{
	static const char *const marks[] = {"entry '", "value: '", "value '", "value of '", "near '", NULL};
	const char *start = NULL, *end = NULL;
	for (size_t i = 0; marks[i] && !start; i++) {
		const char *p = strstr(msg, marks[i]);
		if (p)
			start = p + strlen(marks[i]);
	}
	if (start) {
		for (const char *p = start; (p = strstr(p, "' for ")) != NULL; p++)
			end = p;
		if (!end)
			end = strrchr(start, '\'');
	}
	if (!start || !end || end < start) {
		snprintf(dst, cap, "%s", msg);
		return;
	}
	snprintf(dst, cap, "%.*s...%s", (int)(start - msg), msg, end);
}

/* Name of the key in "Duplicate entry '...' for key 'name'", into buf. */
static const char *my_dup_key_name(const char *msg, char *buf, size_t cap)
{
	const char *p = NULL;
	for (const char *q = msg; (q = strstr(q, "for key '")) != NULL; q++)
		p = q + strlen("for key '");
	if (!p)
		return "?";
	size_t n = strcspn(p, "'");
	snprintf(buf, cap, "%.*s", (int)n, p);
	return buf;
}

/*
 * Fill err from a MySQL error: portable code, native number, SQLSTATE,
 * retryable, and "<what>: <server message, values removed>".
 */
static int my_fail(emh_error *err, unsigned no, const char *sqlstate, const char *msg,
		   const char *what, const char *table)
{
	char clean[EMH_ERROR_MSG_MAX], key[96];
	int code = my_code(no);
	/* SQLSTATE class 08 (e.g. 1153 packet too large, 08S01) means the server
	 * closed the connection: say so, so that the core discards it. */
	if (sqlstate && strncmp(sqlstate, "08", 2) == 0)
		code = EMH_EUNAVAILABLE;
	if (!msg || !*msg)
		msg = "unknown error";
	bool lock = no == MY_ER_LOCK_WAIT_TIMEOUT || no == MY_ER_LOCK_NOWAIT;
	if (code == EMH_ECONFLICT && !lock && table)
		emh_error_set(err, code, "duplicate value for unique key '%s' of table '%s' (mysql error %u)",
			      my_dup_key_name(msg, key, sizeof key), table, no);
	else if (code == EMH_ECONFLICT && !lock)
		emh_error_set(err, code, "%s: duplicate value for unique key '%s' (mysql error %u)", what,
			      my_dup_key_name(msg, key, sizeof key), no);
	else {
		my_redact(clean, sizeof clean, msg);
		if (table && no == MY_ER_DATA_TOO_LONG)
			emh_error_set(err, code,
				      "%s on table '%s': %s (mysql error %u; key, unique and indexed text "
				      "columns are VARCHAR(%d): at most %d characters)",
				      what, table, clean, no, MY_INDEXED_TEXT_LEN, MY_INDEXED_TEXT_LEN);
		else if (no == MY_ER_NET_PACKET_TOO_LARGE || no == MY_CR_NET_PACKET_TOO_LARGE)
			emh_error_set(err, code,
				      "%s%s%s%s: %s (mysql error %u; a value is larger than max_allowed_packet, "
				      "see docs/drivers/mysql.md%s)",
				      what, table ? " on table '" : "", table ? table : "", table ? "'" : "", clean, no,
				      code == EMH_EUNAVAILABLE ? "; the server closed the connection" : "");
		else if (table)
			emh_error_set(err, code, "%s on table '%s': %s (mysql error %u)", what, table, clean, no);
		else
			emh_error_set(err, code, "%s: %s (mysql error %u)", what, clean, no);
	}
	if (err) {
		err->native = (int)no;
		if (sqlstate)
			snprintf(err->sqlstate, sizeof err->sqlstate, "%s", sqlstate);
		err->retryable = code == EMH_ERETRY || code == EMH_ETIMEOUT || lock;
	}
	return code;
}

int my_conn_fail(emh_conn *c, const char *what, const char *table, emh_error *err)
{
	return my_fail(err, mysql_errno(c->my), mysql_sqlstate(c->my), mysql_error(c->my), what, table);
}

int my_stmt_fail(MYSQL_STMT *s, const char *what, const char *table, emh_error *err)
{
	return my_fail(err, mysql_stmt_errno(s), mysql_stmt_sqlstate(s), mysql_stmt_error(s), what, table);
}

/*
 * The client library reports a read that waited out its timeout as a lost
 * connection (2013), like any other: the time the call took tells them
 * apart.  The connection is discarded either way.
 */
int my_deadline(emh_conn *c, int rc, emh_error *err)
{
	if (rc != EMH_EUNAVAILABLE || !c->rto_s || my_call_clock_ms() - c->call_ms < (int64_t)c->rto_s * 1000 - 100)
		return rc;
	emh_error_prefix(err, rc, "no answer from the server within %s=%lld (a %u s read timeout): ", c->rto_key,
			 c->rto_ms, c->rto_s);
	if (err) {
		err->code = EMH_ETIMEOUT;
		err->retryable = true;
	}
	return EMH_ETIMEOUT;
}
