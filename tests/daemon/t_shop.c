/* SPDX-License-Identifier: MIT */
/*
 * tests/daemon/t_shop.c: the `shop` example service (services/shop) in a
 * real emhostd, products in one SQLite database and orders in another:
 * every route and every error case (per-field 400s, 404s of objects and of
 * routes, 405 + Allow, 409 out of stock), the compensation when the orders
 * write fails (a trigger refuses it: the stock comes back), the OpenAPI
 * document, and 8 parallel clients x 300 orders against a stock smaller
 * than the demand: every answer is 201 or 409, and sold + remaining =
 * initial, with the orders database holding exactly what was sold.
 *
 * EMH_SHOP_CLIENTS / EMH_SHOP_ORDERS change the load's shape.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../tap.h"
#include "dtest.h"

static dtest_daemon d;
static CURL *c;
static char dir[256];

static long req(const char *method, const char *path, const char *body, json_t **j, dtest_resp *out)
{
	return dtest_req(c, d.url, method, path, body, j, out);
}

/* The problems listed for field in an error body's "fields". */
static const char *field_problem(json_t *j, const char *field)
{
	json_t *fields = json_object_get(json_object_get(j, "error"), "fields");
	for (size_t i = 0; i < json_array_size(fields); i++)
		if (strcmp(dtest_jstr(json_array_get(fields, i), "field", NULL), field) == 0)
			return dtest_jstr(json_array_get(fields, i), "problem", NULL);
	return NULL;
}

static long long product_stock(long long id)
{
	char path[64];
	json_t *j;
	snprintf(path, sizeof path, "/shop/products/%lld", id);
	req("GET", path, NULL, &j, NULL);
	long long s = dtest_jint(j, "stock", NULL);
	json_decref(j);
	return s;
}

static long long new_product(const char *name, long long price, long long stock)
{
	char body[256];
	json_t *j;
	snprintf(body, sizeof body, "{\"name\":\"%s\",\"price_cents\":%lld,\"stock\":%lld}", name, price, stock);
	long st = req("POST", "/shop/products", body, &j, NULL);
	long long id = st == 201 ? dtest_jint(j, "id", NULL) : -1;
	json_decref(j);
	return id;
}

static int sql(const char *db, const char *stmt, long long *out)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, db);
	sqlite3 *h;
	sqlite3_stmt *st;
	int rc = sqlite3_open(path, &h);
	sqlite3_busy_timeout(h, 10000);
	if (rc == SQLITE_OK && (rc = sqlite3_prepare_v2(h, stmt, -1, &st, NULL)) == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (out && rc == SQLITE_ROW)
			*out = sqlite3_column_int64(st, 0);
		rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : rc;
		sqlite3_finalize(st);
	}
	if (rc)
		diag("%s: %s", stmt, sqlite3_errmsg(h));
	sqlite3_close(h);
	return rc;
}

static void test_products(void)
{
	json_t *j;
	dtest_resp r;
	long st = req("POST", "/shop/products", "{\"name\":\"pen\",\"price_cents\":150,\"stock\":10}", &j, &r);
	is_int(st, 201, "POST /shop/products -> 201");
	long long id = dtest_jint(j, "id", NULL);
	char loc[64];
	snprintf(loc, sizeof loc, "/shop/products/%lld", id);
	is_str(r.location, loc, "Location names it under the mount");
	dtest_resp_free(&r);
	json_decref(j);

	st = req("POST", "/shop/products", "{\"name\":7,\"stock\":-1,\"colour\":\"red\"}", &j, NULL);
	is_int(st, 400, "a bad product -> 400");
	is_str(dtest_jstr(j, "error", "code", NULL), "invalid_argument", "invalid_argument");
	is_str(field_problem(j, "name"), "type", "name: wrong type");
	is_str(field_problem(j, "colour"), "unknown", "colour: unknown field");
	is_str(field_problem(j, "price_cents"), "missing", "price_cents: missing");
	json_decref(j);
	st = req("POST", "/shop/products", "{\"name\":\"x\",\"price_cents\":1,\"stock\":-1}", &j, NULL);
	is_int(st, 400, "a negative stock -> 400");
	like_str(dtest_jstr(j, "error", "message", NULL), "must not be negative", "says why");
	json_decref(j);
	is_int(req("POST", "/shop/products", "{\"name\":", NULL, NULL), 400, "malformed JSON -> 400");

	st = req("GET", loc, NULL, &j, NULL);
	is_int(st, 200, "GET /shop/products/:id -> 200");
	is_str(dtest_jstr(j, "name", NULL), "pen", "the product");
	json_decref(j);
	st = req("GET", "/shop/products/999999", NULL, &j, NULL);
	is_int(st, 404, "a missing product -> 404");
	like_str(dtest_jstr(j, "error", "message", NULL), "no product 999999", "naming it");
	json_decref(j);
	st = req("GET", "/shop/products/pen", NULL, &j, NULL);
	is_int(st, 404, "a non-integer id -> 404 (no route)");
	like_str(dtest_jstr(j, "error", "message", NULL), "no route GET /shop/products/pen", "naming the path");
	json_decref(j);
	is_int(req("GET", "/shop/nothing", NULL, NULL, NULL), 404, "an unknown route -> 404");

	st = req("PATCH", loc, "{\"price_cents\":175}", &j, NULL);
	is_int(st, 200, "PATCH /shop/products/:id -> 200");
	ok(dtest_jint(j, "price_cents", NULL) == 175 && dtest_jint(j, "stock", NULL) == 10,
	   "the price changed, the stock kept");
	json_decref(j);
	is_int(req("PATCH", "/shop/products/999999", "{\"stock\":1}", NULL, NULL), 404, "PATCH of a missing product -> 404");
	st = req("PATCH", loc, "{\"stock\":\"many\"}", &j, NULL);
	is_int(st, 400, "PATCH with a bad field -> 400");
	is_str(field_problem(j, "stock"), "type", "naming it");
	json_decref(j);
	st = req("PATCH", loc, "{\"id\":99}", &j, NULL);
	is_int(st, 200, "PATCH of the key: ignored (read-only)");
	is_int(dtest_jint(j, "id", NULL), id, "the key unchanged");
	json_decref(j);

	st = req("DELETE", loc, NULL, &j, &r);
	is_int(st, 405, "DELETE /shop/products/:id -> 405");
	is_str(r.allow, "GET, PATCH, HEAD", "Allow lists the path's methods (HEAD with GET)");
	is_str(dtest_jstr(j, "error", "code", NULL), "method_not_allowed", "method_not_allowed");
	dtest_resp_free(&r);
	json_decref(j);
	st = req("PUT", "/shop/orders", "{}", NULL, &r);
	is_int(st, 405, "PUT /shop/orders -> 405");
	is_str(r.allow, "GET, POST, HEAD", "Allow: GET, POST, HEAD");
	dtest_resp_free(&r);

	new_product("ink", 300, 5);
	st = req("GET", "/shop/products?limit=1&offset=1", NULL, &j, NULL);
	is_int(st, 200, "GET /shop/products?limit=1&offset=1 -> 200");
	ok(json_array_size(json_object_get(j, "items")) == 1 && dtest_jint(j, "total", NULL) == 2,
	   "one item of two in all");
	is_str(dtest_jstr(json_array_get(json_object_get(j, "items"), 0), "name", NULL), "ink", "the second one");
	json_decref(j);
	st = req("GET", "/shop/products?limit=0", NULL, &j, NULL);
	is_int(st, 400, "limit=0 -> 400");
	like_str(dtest_jstr(j, "error", "message", NULL), "'limit'", "naming the argument");
	json_decref(j);
	is_int(req("GET", "/shop/products?offset=-1", NULL, NULL, NULL), 400, "a negative offset -> 400");
}

static void test_orders(void)
{
	json_t *j;
	dtest_resp r;
	char body[128], path[64];
	long long pid = new_product("cup", 250, 4);
	snprintf(body, sizeof body, "{\"product_id\":%lld,\"quantity\":3}", pid);
	long st = req("POST", "/shop/orders", body, &j, &r);
	is_int(st, 201, "POST /shop/orders -> 201");
	long long oid = dtest_jint(j, "id", NULL);
	is_int(dtest_jint(j, "total_cents", NULL), 750, "total = price x quantity");
	ok(dtest_jstr(j, "created_at", NULL) && strlen(dtest_jstr(j, "created_at", NULL)) == 27, "created_at in RFC 3339");
	snprintf(path, sizeof path, "/shop/orders/%lld", oid);
	is_str(r.location, path, "Location of the order");
	dtest_resp_free(&r);
	json_decref(j);
	is_int(product_stock(pid), 1, "the stock taken");

	st = req("POST", "/shop/orders", body, &j, NULL);
	is_int(st, 409, "more than the stock -> 409");
	like_str(dtest_jstr(j, "error", "message", NULL), "not enough stock", "says so");
	json_decref(j);
	is_int(product_stock(pid), 1, "the stock untouched");
	is_int(req("POST", "/shop/orders", "{\"product_id\":999999,\"quantity\":1}", NULL, NULL), 404,
	       "an unknown product -> 404");
	snprintf(body, sizeof body, "{\"product_id\":%lld,\"quantity\":0}", pid);
	is_int(req("POST", "/shop/orders", body, NULL, NULL), 400, "quantity 0 -> 400");
	st = req("POST", "/shop/orders", "{\"quantity\":1,\"total_cents\":1}", &j, NULL);
	is_int(st, 400, "no product_id -> 400");
	is_str(field_problem(j, "product_id"), "missing", "product_id: missing");
	ok(!field_problem(j, "total_cents"), "a read-only member is ignored, not refused");
	json_decref(j);

	st = req("GET", path, NULL, &j, NULL);
	is_int(st, 200, "GET /shop/orders/:id -> 200");
	is_int(dtest_jint(j, "quantity", NULL), 3, "the order");
	json_decref(j);
	is_int(req("GET", "/shop/orders/999999", NULL, NULL, NULL), 404, "a missing order -> 404");
	snprintf(path, sizeof path, "/shop/orders?product_id=%lld", pid);
	st = req("GET", path, NULL, &j, NULL);
	ok(st == 200 && dtest_jint(j, "total", NULL) == 1, "GET /shop/orders?product_id= -> the product's orders");
	json_decref(j);
	is_int(req("GET", "/shop/orders?product_id=x", NULL, NULL, NULL), 400, "a bad product_id -> 400");

	/* the compensation: the orders database refuses the write, the stock comes back */
	long long pid2 = new_product("bowl", 100, 50);
	if (sql("orders.db", "CREATE TRIGGER refuse_13 BEFORE INSERT ON orders WHEN NEW.quantity = 13 "
			     "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END", NULL) != 0)
		bail("cannot create the trigger");
	snprintf(body, sizeof body, "{\"product_id\":%lld,\"quantity\":13}", pid2);
	st = req("POST", "/shop/orders", body, &j, NULL);
	/* SQLite reports a trigger's RAISE as a constraint: the driver's EMH_EINVAL */
	ok(st == 400 || st == 500, "the orders write fails -> an error (%ld)", st);
	ok(!strstr(dtest_jstr(j, "error", "message", NULL) ? dtest_jstr(j, "error", "message", NULL) : "", "refused"),
	   "with no database text in the answer");
	json_decref(j);
	is_int(product_stock(pid2), 50, "and the stock was given back (the compensation)");
	snprintf(body, sizeof body, "{\"product_id\":%lld,\"quantity\":12}", pid2);
	is_int(req("POST", "/shop/orders", body, NULL, NULL), 201, "another quantity still orders");
	is_int(product_stock(pid2), 38, "taking its stock");
}

static void test_openapi(void)
{
	json_t *j;
	long st = req("GET", "/_emhost/openapi.json", NULL, &j, NULL);
	is_int(st, 200, "GET /_emhost/openapi.json -> 200");
	is_str(dtest_jstr(j, "openapi", NULL), "3.1.0", "OpenAPI 3.1");
	json_t *paths = json_object_get(j, "paths");
	ok(json_object_get(json_object_get(paths, "/shop/orders"), "post") &&
	   json_object_get(json_object_get(paths, "/shop/products/{id}"), "patch"),
	   "the shop's routes");
	json_decref(j);
}

/* ---- the load ---- */

static int nclients = 8, norders = 300;
static long long load_pid;
static _Atomic long sold, created, refused, bad;

static void *client(void *arg)
{
	int cn = (int)(intptr_t)arg;
	CURL *h = dtest_curl();
	char body[128];
	for (int i = 0; i < norders; i++) {
		int q = 1 + (cn + i) % 3;
		snprintf(body, sizeof body, "{\"product_id\":%lld,\"quantity\":%d}", load_pid, q);
		dtest_resp r;
		dtest_http(h, d.url, "POST", "/shop/orders", body, strlen(body), false, &r);
		if (r.status == 201) {
			atomic_fetch_add(&sold, q);
			atomic_fetch_add(&created, 1);
		} else if (r.status == 409) {
			atomic_fetch_add(&refused, 1);
		} else if (atomic_fetch_add(&bad, 1) < 5) {
			diag("client %d order %d: %ld %s %.200s", cn, i, r.status, r.curl_error, r.body ? r.body : "");
		}
		dtest_resp_free(&r);
	}
	curl_easy_cleanup(h);
	return NULL;
}

static void test_load(void)
{
	/* about five sixths of the demand: the stock runs out during the run */
	long long initial = (long long)nclients * norders * 2 * 5 / 6;
	load_pid = new_product("load", 1, initial);
	ok(load_pid > 0, "a product with %lld in stock for %d clients x %d orders", initial, nclients, norders);
	pthread_t *th = calloc((size_t)nclients, sizeof *th);
	for (int i = 0; i < nclients; i++)
		pthread_create(&th[i], NULL, client, (void *)(intptr_t)i);
	for (int i = 0; i < nclients; i++)
		pthread_join(th[i], NULL);
	free(th);
	is_int(bad, 0, "every answer was 201 or 409 (%ld created, %ld refused)", (long)created, (long)refused);
	long long remaining = product_stock(load_pid);
	ok(remaining >= 0, "the stock never went below zero (%lld left)", remaining);
	is_int(sold + remaining, initial, "sold (%ld) + remaining (%lld) = initial (%lld)", (long)sold, remaining, initial);
	ok(refused > 0 && remaining < 3, "the stock ran out during the run");
	long long in_db = -1, n_db = -1;
	char q[128];
	snprintf(q, sizeof q, "SELECT COALESCE(SUM(quantity), 0) FROM orders WHERE product_id = %lld", load_pid);
	sql("orders.db", q, &in_db);
	snprintf(q, sizeof q, "SELECT COUNT(*) FROM orders WHERE product_id = %lld", load_pid);
	sql("orders.db", q, &n_db);
	is_int(in_db, sold, "the orders database holds what was sold");
	is_int(n_db, created, "one order per 201");
}

int main(void)
{
	if (getenv("EMH_SHOP_CLIENTS"))
		nclients = atoi(getenv("EMH_SHOP_CLIENTS"));
	if (getenv("EMH_SHOP_ORDERS"))
		norders = atoi(getenv("EMH_SHOP_ORDERS"));
	if (nclients < 1 || nclients > 64 || norders < 1)
		bail("bad EMH_SHOP_CLIENTS/EMH_SHOP_ORDERS");
	char svc[512], conf[4096], plug[1024], probe[1200];
	snprintf(plug, sizeof plug, "%s/plugins-build", dtest_builddir());
	snprintf(probe, sizeof probe, "%s/sqlite.so", plug);
	if (access(probe, R_OK) != 0) {
		printf("1..0 # SKIP sqlite driver not built\n");
		return 0;
	}
	dtest_tmpdir(dir, sizeof dir, "shop");
	dtest_service_dir(dir, svc, sizeof svc);
	snprintf(conf, sizeof conf,
		 "plugin_dir = \"%s\";\n"
		 "service_dir = \"%s\";\n"
		 "contexts = (\n"
		 "  { name = \"default\"; driver = \"sqlite\"; path = \"%s/catalog.db\"; schema = \"sync\"; required = true;\n"
		 "    pool = { max = 4; acquire_timeout_ms = 20000; }; },\n"
		 "  { name = \"orders\"; driver = \"sqlite\"; path = \"%s/orders.db\"; schema = \"sync\";\n"
		 "    pool = { max = 4; acquire_timeout_ms = 20000; }; }\n"
		 ");\n"
		 "services = ( { name = \"shop\"; contexts = { catalog = \"default\"; }; } );\n"
		 "server = { threads = 8; shutdown_timeout_ms = 10000; };\n",
		 plug, svc, dir, dir);
	if (dtest_start(&d, dir, conf, NULL) != 0) {
		ok(0, "emhostd starts");
		return done_testing();
	}
	ok(1, "emhostd starts on %s", d.url);
	c = dtest_curl();
	test_products();
	test_orders();
	test_openapi();
	test_load();
	curl_easy_cleanup(c);
	is_int(dtest_stop(&d, SIGTERM, 20000), 0, "emhostd stops cleanly");
	dtest_rmtree(dir);
	return done_testing();
}
