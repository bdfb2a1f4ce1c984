/* SPDX-License-Identifier: MIT */
/* plugins/mysql/session.c: what runs on a connection outside compiled statements: raw SQL and ping. */
#include "config.h"

#include <stdbool.h>
#include <string.h>

#include <mysql.h>

#include <emhost/driver.h>

#include "mysql_int.h"

/* Run text (several statements allowed) and drain every result. */
int my_run_text(emh_conn *c, const char *text, size_t len, const char *what, const char *table,
		emh_error *err)
{
	int status;
	if (mysql_real_query(c->my, text, (unsigned long)len) != 0) {
		if (mysql_errno(c->my) == MY_ER_EMPTY_QUERY)
			return 0;
		return my_conn_fail(c, what, table, err);
	}
	do {
		MYSQL_RES *res = mysql_store_result(c->my);
		if (res)
			mysql_free_result(res);
		else if (mysql_field_count(c->my) != 0)
			return my_conn_fail(c, what, table, err);
		status = mysql_next_result(c->my);
	} while (status == 0);
	if (status > 0 && mysql_errno(c->my) != MY_ER_EMPTY_QUERY)
		return my_conn_fail(c, what, table, err);
	return 0;
}

static bool my_blank(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != ';')
			return false;
	return true;
}

int my_execute(emh_conn *c, const char *text, emh_error *err)
{
	int rc = my_call_enter(c, err);
	if (rc)
		return rc;
	if (!text || my_blank(text))
		return 0;
	return my_deadline(c, my_run_text(c, text, strlen(text), "execute", NULL, err), err);
}

/* A stopped server holds the ping for the read timeout (the client library
 * takes its timeouts at connect only): statement_timeout_ms, not connect_timeout_ms. */
int my_ping(emh_conn *c, emh_error *err)
{
	int rc = my_call_enter(c, err);
	if (rc)
		return rc;
	if (mysql_ping(c->my) != 0) {
		my_conn_fail(c, "ping", NULL, err);
		/* A ping that fails for any reason means the connection is unusable. */
		if (err) {
			err->code = EMH_EUNAVAILABLE;
			err->retryable = false;
		}
		return my_deadline(c, EMH_EUNAVAILABLE, err);
	}
	return 0;
}
