/* SPDX-License-Identifier: MIT */
/*
 * bench/raw_http.c: emh-raw-http, the hand-written server `make bench-http`
 * measures emhostd against.  It answers GET /users/<id> with the body and
 * status emhostd's bundled `users` service gives for the same row, the way a
 * competent server without a framework would: libmicrohttpd's internal
 * thread pool (one I/O thread per core), the handler on the I/O thread, one
 * database connection per I/O thread with one prepared statement.  No
 * emhost code is linked.
 *
 *   emh-raw-http (--sqlite PATH | --pg CONNINFO) [--port N] [--threads N]
 *   emh-raw-http (--sqlite PATH | --pg CONNINFO) --seed N
 *
 * --seed makes sure users 1..N exist ("user I", "userI@bench.test") in the
 * table emhostd's schema sync created, then exits.  Serving, it prints
 * "listening on PORT" once ready and runs until SIGTERM or SIGINT.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <unistd.h>

#include <microhttpd.h>
#include <sqlite3.h>
#ifdef RAW_HTTP_HAVE_PG
#include <libpq-fe.h>
#endif

#define GET_SQL_SQLITE "SELECT id, name, email FROM users WHERE id = ?1"
#define GET_SQL_PG "SELECT id, name, email FROM users WHERE id = $1"

typedef struct server {
	const char *sqlite_path;
	const char *pg_conninfo;
	pthread_key_t conn_key; /* the I/O thread's database connection */
} server;

/* One I/O thread's connection and statement. */
typedef struct tconn {
	sqlite3 *db;
	sqlite3_stmt *get;
#ifdef RAW_HTTP_HAVE_PG
	PGconn *pg;
#endif
} tconn;

static void tconn_free(void *p)
{
	tconn *t = p;
	if (!t)
		return;
	sqlite3_finalize(t->get);
	sqlite3_close(t->db);
#ifdef RAW_HTTP_HAVE_PG
	if (t->pg)
		PQfinish(t->pg);
#endif
	free(t);
}

/* The calling I/O thread's connection, opened on first use; NULL when it cannot be. */
static tconn *thread_conn(server *s)
{
	tconn *t = pthread_getspecific(s->conn_key);
	if (t)
		return t;
	if (!(t = calloc(1, sizeof *t)))
		return NULL;
	if (s->sqlite_path) {
		if (sqlite3_open_v2(s->sqlite_path, &t->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) ||
		    sqlite3_busy_timeout(t->db, 5000) ||
		    sqlite3_prepare_v3(t->db, GET_SQL_SQLITE, -1, SQLITE_PREPARE_PERSISTENT, &t->get, NULL)) {
			fprintf(stderr, "emh-raw-http: '%s': %s\n", s->sqlite_path, sqlite3_errmsg(t->db));
			tconn_free(t);
			return NULL;
		}
	}
#ifdef RAW_HTTP_HAVE_PG
	else {
		t->pg = PQconnectdb(s->pg_conninfo);
		PGresult *r = PQstatus(t->pg) == CONNECTION_OK ? PQprepare(t->pg, "get", GET_SQL_PG, 1, NULL) : NULL;
		bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
		if (!ok)
			fprintf(stderr, "emh-raw-http: postgres: %s\n", PQerrorMessage(t->pg));
		PQclear(r);
		if (!ok) {
			tconn_free(t);
			return NULL;
		}
	}
#endif
	pthread_setspecific(s->conn_key, t);
	return t;
}

/* s as a JSON string into b (what jansson writes for ASCII and UTF-8 text). */
static size_t json_str(char *b, size_t cap, const char *s)
{
	size_t n = 0;
#define PUT(c) do { if (n < cap) b[n] = (c); n++; } while (0)
	PUT('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			PUT('\\');
			PUT((char)c);
		} else if (c < 0x20) {
			char e[8];
			const char *esc = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : c == '\b' ? "\\b"
					: c == '\f' ? "\\f" : (snprintf(e, sizeof e, "\\u%04X", c), e);
			for (; *esc; esc++)
				PUT(*esc);
		} else {
			PUT((char)c);
		}
	}
	PUT('"');
#undef PUT
	return n;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned status, const char *code, const char *msg,
				   const char *context)
{
	char body[512];
	int n = snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"context\":\"%s\"}}", code,
			 msg, context);
	return reply(conn, status, body, (size_t)n);
}

/* The user as the users service writes it: {"id":N,"name":"...","email":"..."}. */
static enum MHD_Result reply_user(struct MHD_Connection *conn, long long id, const char *name, const char *email)
{
	char body[2048];
	size_t n = (size_t)snprintf(body, sizeof body, "{\"id\":%lld,\"name\":", id);
	n += json_str(body + n, sizeof body - n, name);
	n += (size_t)snprintf(body + n, n < sizeof body ? sizeof body - n : 0, ",\"email\":");
	n += json_str(body + n, n < sizeof body ? sizeof body - n : 0, email);
	if (n + 2 > sizeof body)
		return reply_error(conn, 500, "internal", "internal error", "");
	body[n++] = '}';
	return reply(conn, 200, body, n);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				 const char *version, const char *upload_data, size_t *upload_data_size,
				 void **con_cls)
{
	server *s = cls;
	static int seen;
	(void)version;
	(void)upload_data;
	if (!*con_cls) {
		/* the headers: answered on the next call, once the request is read
		 * whole (an answer queued before would close the connection) */
		*con_cls = &seen;
		return MHD_YES;
	}
	if (*upload_data_size) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	const char *p = strncmp(url, "/users/", 7) == 0 ? url + 7 : NULL;
	char *end = NULL;
	errno = 0;
	long long id = p && *p >= '0' && *p <= '9' ? strtoll(p, &end, 10) : 0;
	if (strcmp(method, "GET") != 0 || !end || *end || errno) {
		char msg[300];
		snprintf(msg, sizeof msg, "no route %.8s %.200s", method, url);
		return reply_error(conn, 404, "not_found", msg, "");
	}
	tconn *t = thread_conn(s);
	if (!t)
		return reply_error(conn, 503, "unavailable", "the database is unavailable", "default");
	char msg[64];
	snprintf(msg, sizeof msg, "no user %lld", id);
	if (t->get) {
		sqlite3_bind_int64(t->get, 1, id);
		int rc = sqlite3_step(t->get);
		enum MHD_Result ret;
		if (rc == SQLITE_ROW)
			ret = reply_user(conn, sqlite3_column_int64(t->get, 0), (const char *)sqlite3_column_text(t->get, 1),
					 (const char *)sqlite3_column_text(t->get, 2));
		else if (rc == SQLITE_DONE)
			ret = reply_error(conn, 404, "not_found", msg, "default");
		else
			ret = reply_error(conn, 500, "internal", "internal error", "");
		sqlite3_reset(t->get);
		return ret;
	}
#ifdef RAW_HTTP_HAVE_PG
	char idtext[24];
	snprintf(idtext, sizeof idtext, "%lld", id);
	const char *params[1] = {idtext};
	PGresult *r = PQexecPrepared(t->pg, "get", 1, params, NULL, NULL, 0);
	enum MHD_Result ret;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		ret = reply_error(conn, 500, "internal", "internal error", "");
	else if (PQntuples(r) == 0)
		ret = reply_error(conn, 404, "not_found", msg, "default");
	else
		ret = reply_user(conn, strtoll(PQgetvalue(r, 0, 0), NULL, 10), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
	PQclear(r);
	return ret;
#else
	return reply_error(conn, 500, "internal", "internal error", "");
#endif
}

/* Users 1..n into the table emhostd created (ids given, existing rows kept; on
 * PostgreSQL the key's sequence moved past them). */
static int seed(server *s, long n)
{
	tconn *t = thread_conn(s);
	if (!t)
		return 1;
	if (t->db) {
		sqlite3_stmt *ins;
		if (sqlite3_exec(t->db, "BEGIN", NULL, NULL, NULL) ||
		    sqlite3_prepare_v2(t->db, "INSERT OR IGNORE INTO users (id, name, email) VALUES (?1, ?2, ?3)", -1,
				       &ins, NULL))
			goto sqlite_fail;
		for (long i = 1; i <= n; i++) {
			char name[32], email[64];
			snprintf(name, sizeof name, "user %ld", i);
			snprintf(email, sizeof email, "user%ld@bench.test", i);
			sqlite3_bind_int64(ins, 1, i);
			sqlite3_bind_text(ins, 2, name, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(ins, 3, email, -1, SQLITE_TRANSIENT);
			if (sqlite3_step(ins) != SQLITE_DONE)
				goto sqlite_fail;
			sqlite3_reset(ins);
		}
		sqlite3_finalize(ins);
		if (sqlite3_exec(t->db, "COMMIT", NULL, NULL, NULL))
			goto sqlite_fail;
		tconn_free(t);
		return 0;
sqlite_fail:
		fprintf(stderr, "emh-raw-http: seeding: %s\n", sqlite3_errmsg(t->db));
		tconn_free(t);
		return 1;
	}
#ifdef RAW_HTTP_HAVE_PG
	char sql[192];
	snprintf(sql, sizeof sql,
		 "INSERT INTO users (id, name, email) SELECT i, 'user ' || i, 'user' || i || '@bench.test' "
		 "FROM generate_series(1, %ld) i ON CONFLICT DO NOTHING",
		 n);
	PGresult *r = PQexec(t->pg, sql);
	int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : 1;
	PQclear(r);
	if (rc == 0) {
		/* the ids were given: the key's sequence moves past them, or the
		 * next user added through emhost (a test on the same database)
		 * would take id 1 again and fail as a duplicate */
		r = PQexec(t->pg, "SELECT setval(pg_get_serial_sequence('users', 'id'), "
				  "GREATEST((SELECT max(id) FROM users), 1))");
		rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : 1;
		PQclear(r);
	}
	if (rc)
		fprintf(stderr, "emh-raw-http: seeding: %s\n", PQerrorMessage(t->pg));
	tconn_free(t);
	return rc;
#else
	return 1;
#endif
}

static void usage(void)
{
	fprintf(stderr, "usage: emh-raw-http (--sqlite PATH | --pg CONNINFO) [--port N] [--threads N] [--seed N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	server s = {0};
	unsigned port = 0, threads = 0;
	long nseed = -1;
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--sqlite") == 0)
			s.sqlite_path = argv[++i];
		else if (strcmp(argv[i], "--pg") == 0)
			s.pg_conninfo = argv[++i];
		else if (strcmp(argv[i], "--port") == 0)
			port = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--threads") == 0)
			threads = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--seed") == 0)
			nseed = atol(argv[++i]);
		else
			usage();
	}
	if (!s.sqlite_path == !s.pg_conninfo)
		usage();
#ifndef RAW_HTTP_HAVE_PG
	if (s.pg_conninfo) {
		fprintf(stderr, "emh-raw-http: built without libpq\n");
		return 2;
	}
#endif
	pthread_key_create(&s.conn_key, tconn_free);
	if (nseed >= 0)
		return seed(&s, nseed);
	if (!threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (unsigned)n : 1;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* MHD's threads inherit the mask */
	/* loopback only, like emhostd's default */
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL,
						NULL, on_access, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
						MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
						MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "emh-raw-http: cannot listen on port %u\n", port);
		return 1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	printf("listening on %u (%u threads)\n", info ? info->port : port, threads);
	fflush(stdout);
	int sig;
	sigwait(&set, &sig);
	MHD_stop_daemon(d);
	return 0;
}
