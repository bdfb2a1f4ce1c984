/* SPDX-License-Identifier: MIT */
/*
 * tests/concurrency/test_orders.c: an order service on PostgreSQL at READ
 * COMMITTED, the level at which "check the stock, then decrement it"
 * oversells (issue 14).  16 clients buy random quantities of a few products
 * with limited stock until everything is sold out.  Each purchase is one
 * transaction: a guarded update
 *
 *   UPDATE products SET stock = stock - q, sold = sold + q WHERE id = ? AND stock >= q
 *
 * and, when it matched a row, the order row.  Afterwards, per product: the
 * stock never went below zero, sold + remaining = initial, and the orders
 * stored add up to exactly what was sold and to what the clients were told
 * they bought.
 *
 * Scale: EMH_TEST_ORDER_CLIENTS (default 16), EMH_TEST_ORDER_STOCK per
 * product (default 150; 5 products, 1 to 5 units an order).
 */
#include "config.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <emhost/driver.h>
#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"

typedef struct product {
	int64_t id;
	const char *name;
	int64_t stock;
	int64_t sold;
} product;

static const emh_field product_fields[] = {
	EMH_FIELD(product, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(product, name, EMH_T_TEXT, 0),
	EMH_FIELD(product, stock, EMH_T_INT64, 0),
	EMH_FIELD(product, sold, EMH_T_INT64, 0),
};

typedef struct order {
	int64_t id;
	int64_t product_id;
	int32_t client;
	int64_t qty;
} order;

static const emh_field order_fields[] = {
	EMH_FIELD(order, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(order, product_id, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD(order, client, EMH_T_INT32, 0),
	EMH_FIELD(order, qty, EMH_T_INT64, 0),
};

#define PRODUCTS 5
#define MAX_QTY 5

static emh_entity product_entity, order_entity;

typedef struct shop {
	emh_host *h;
	int64_t ids[PRODUCTS];
	int64_t initial;
} shop;

typedef struct client {
	shop *s;
	pthread_t tid;
	int n;
	uint64_t rng;
	int64_t bought[PRODUCTS]; /* acknowledged: the purchase committed */
	int64_t refused, failed, retried;
	char first_error[EMH_ERROR_MSG_MAX + 32];
} client;

typedef struct purchase {
	client *c;
	int product;
	int64_t qty;
	bool sold_out;
	int attempts;
} purchase;

/* One purchase: the guarded decrement, then the order, in one transaction. */
static int buy(emh_em *em, void *ud, emh_error *err)
{
	purchase *p = ud;
	emh_repo *products, *orders;
	emh_query *q;
	emh_sets *s;
	int64_t n = 0;
	p->attempts++;
	p->sold_out = false;
	int rc = emh_em_repo(em, &product_entity, &products, err);
	if (!rc)
		rc = emh_em_repo(em, &order_entity, &orders, err);
	if (!rc)
		rc = emh_repo_query(products, &q, err);
	if (!rc)
		rc = emh_repo_sets(products, &s, err);
	if (rc)
		return rc;
	emh_q_where(q, emh_q_and(q, emh_q_eq(q, "id", emh_v_int64(p->c->s->ids[p->product])),
				 emh_q_ge(q, "stock", emh_v_int64(p->qty))));
	emh_sets_add(s, "stock", emh_v_int64(-p->qty));
	emh_sets_add(s, "sold", emh_v_int64(p->qty));
	if ((rc = emh_repo_update_where(products, q, s, &n, err)) != 0)
		return rc;
	if (n == 0) {
		p->sold_out = true; /* not enough left: nothing to write */
		return 0;
	}
	order *o;
	if ((rc = emh_repo_new(orders, (void **)&o, err)) != 0)
		return rc;
	o->product_id = p->c->s->ids[p->product];
	o->client = p->c->n;
	o->qty = p->qty;
	return emh_em_flush(em, err);
}

static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * UINT64_C(2685821657736338717);
}

static void *client_main(void *arg)
{
	client *c = arg;
	int open = PRODUCTS;
	bool gone[PRODUCTS] = {false};
	while (open > 0) {
		purchase p = {.c = c, .product = (int)(next_rand(&c->rng) % PRODUCTS),
			      .qty = (int64_t)(next_rand(&c->rng) % MAX_QTY) + 1};
		if (gone[p.product])
			continue;
		emh_em *em;
		emh_error err;
		int rc = emh_host_fork(c->s->h, NULL, &em, &err);
		if (rc == 0) {
			rc = emh_em_transaction_retry_opts(em, &(emh_tx_opts){.isolation = EMH_ISO_READ_COMMITTED}, buy,
							   &p, 100, &err);
			emh_em_close(em);
		}
		c->retried += p.attempts > 1 ? p.attempts - 1 : 0;
		if (rc) {
			if (!c->failed++)
				snprintf(c->first_error, sizeof c->first_error, "%s: %s", emh_status_name(rc), err.message);
			if (c->failed > 100)
				break;
			continue;
		}
		if (p.sold_out) {
			c->refused++;
			/* One unit of it may still be left for a smaller order. */
			if (p.qty == 1) {
				gone[p.product] = true;
				open--;
			}
			continue;
		}
		c->bought[p.product] += p.qty;
	}
	return NULL;
}

static int env_int(const char *name, int def)
{
	const char *s = getenv(name);
	int v = s && *s ? atoi(s) : def;
	return v > 0 ? v : def;
}

int main(void)
{
	fixture fx;
	emh_error err;
	const char *url = getenv("EMH_TEST_PG_URL");
	int nclients = env_int("EMH_TEST_ORDER_CLIENTS", 16);
	shop s = {.initial = env_int("EMH_TEST_ORDER_STOCK", 150)};

	plan(2 + 3 * PRODUCTS + 1);
	fixture_init(&fx, "orders");
	char so[1100];
	snprintf(so, sizeof so, "%s/postgres.so", fx.plugin_dir);
	if (access(so, R_OK) != 0) {
		diag("SKIPPING: the postgres driver is not built (%s)", so);
		skip(2 + 3 * PRODUCTS + 1, "postgres driver not built");
		fixture_release(&fx);
		return done_testing();
	}
	if (!url || !*url) {
		need_server(2 + 3 * PRODUCTS + 1, "postgres: EMH_TEST_PG_URL not set");
		fixture_release(&fx);
		return done_testing();
	}
	char url_var[600], pool_var[64], tables[2][64];
	snprintf(url_var, sizeof url_var, "EMH_CONTEXT_DEFAULT_URL=%s", url);
	snprintf(pool_var, sizeof pool_var, "EMH_CONTEXT_DEFAULT_POOL_MAX=%d", nclients);
	const char *env[] = {url_var, pool_var, NULL};
	snprintf(tables[0], sizeof tables[0], "conc_%ld_products", (long)getpid());
	snprintf(tables[1], sizeof tables[1], "conc_%ld_orders", (long)getpid());
	product_entity = (emh_entity)EMH_ENTITY(product, tables[0], product_fields);
	order_entity = (emh_entity)EMH_ENTITY(order, tables[1], order_fields);
	if (fixture_host(&fx, env, &s.h, &err))
		bail("host on EMH_TEST_PG_URL: %s", err.message);
	fixture_register(s.h, NULL, &product_entity);
	fixture_register(s.h, NULL, &order_entity);
	fixture_sync(s.h, NULL);

	emh_em *em = fixture_fork(s.h, NULL);
	emh_repo *pr = fixture_repo(em, &product_entity);
	product *ps[PRODUCTS];
	for (int i = 0; i < PRODUCTS; i++) {
		ps[i] = fixture_new(pr);
		ps[i]->name = "widget";
		ps[i]->stock = s.initial;
	}
	if (emh_em_flush(em, &err))
		bail("stock the products: %s", err.message);
	for (int i = 0; i < PRODUCTS; i++)
		s.ids[i] = ps[i]->id;
	emh_em_close(em);

	client *c = calloc((size_t)nclients, sizeof *c);
	if (!c)
		bail("out of memory");
	for (int i = 0; i < nclients; i++) {
		c[i] = (client){.s = &s, .n = i, .rng = UINT64_C(0x9E3779B97F4A7C15) * (uint64_t)(i + 1)};
		fixture_thread(&c[i].tid, client_main, &c[i]);
	}
	int64_t acked[PRODUCTS] = {0}, refused = 0, failed = 0, retried = 0;
	for (int i = 0; i < nclients; i++) {
		pthread_join(c[i].tid, NULL);
		for (int k = 0; k < PRODUCTS; k++)
			acked[k] += c[i].bought[k];
		refused += c[i].refused;
		failed += c[i].failed;
		retried += c[i].retried;
		if (c[i].failed)
			diag("client %d: %" PRId64 " purchases failed, the first: %s", i, c[i].failed, c[i].first_error);
	}
	diag("%d clients, %d products of %" PRId64 ": %" PRId64 " purchases refused for want of stock, %" PRId64
	     " retried", nclients, PRODUCTS, s.initial, refused, retried);
	is_int(failed, 0, "every purchase either committed or was refused for want of stock");
	ok(refused > 0, "demand exceeded supply (the guard refused purchases)");

	em = fixture_fork(s.h, NULL);
	pr = fixture_repo(em, &product_entity);
	emh_repo *orr = fixture_repo(em, &order_entity);
	int64_t total = 0;
	for (int k = 0; k < PRODUCTS; k++) {
		product *p;
		if (emh_repo_get(pr, emh_v_int64(s.ids[k]), (void **)&p, &err))
			bail("read product back: %s", err.message);
		emh_query *q = fixture_query(orr);
		emh_q_where(q, emh_q_eq(q, "product_id", emh_v_int64(s.ids[k])));
		emh_list l;
		if (emh_repo_find(orr, q, &l, &err))
			bail("read orders back: %s", err.message);
		int64_t ordered = 0;
		for (size_t i = 0; i < l.count; i++)
			ordered += ((order *)l.items[i])->qty;
		ok(p->stock == 0, "product %d: sold out, never oversold (%" PRId64 " left)", k, p->stock);
		ok(p->sold + p->stock == s.initial && p->sold == acked[k],
		   "product %d: sold %" PRId64 " + remaining %" PRId64 " = initial %" PRId64 ", and the clients were told %" PRId64,
		   k, p->sold, p->stock, s.initial, acked[k]);
		is_int(ordered, p->sold, "product %d: the orders stored add up to what was sold", k);
		total += ordered;
	}
	int64_t n = 0;
	if (emh_repo_count(orr, NULL, &n, &err))
		bail("count orders: %s", err.message);
	ok(n > 0 && total > 0, "%" PRId64 " orders for %" PRId64 " units", n, total);
	emh_em_close(em);
	if (emh_host_drop_schema(s.h, NULL, &err))
		diag("drop the test tables: %s", err.message);
	emh_host_free(s.h);
	free(c);
	fixture_release(&fx);
	return done_testing();
}
