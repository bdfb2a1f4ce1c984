/* SPDX-License-Identifier: MIT */
/*
 * services/shop/shop.c: the `shop` example, written with the toolkit
 * (emhost/web.h) and declared routes: products in the context it knows as
 * "catalog", orders in "orders" (two databases, possibly of two kinds).
 *
 *   GET  /shop/products?limit=&offset=        -> 200 {"items":[...],"total":n,...}
 *   POST /shop/products  {"name","price_cents","stock"}   -> 201 + Location
 *   GET  /shop/products/:id                   -> 200 | 404
 *   PATCH /shop/products/:id {"name"?,"price_cents"?,"stock"?} -> 200 | 404
 *   GET  /shop/orders?limit=&offset=&product_id= -> 200 page
 *   POST /shop/orders    {"product_id","quantity"} -> 201 | 404 | 409 (stock)
 *   GET  /shop/orders/:id                     -> 200 | 404
 *
 * An order takes its stock with one guarded update in the catalog ("stock
 * = stock - q WHERE id = ? AND stock >= q": never below zero, whatever runs
 * at once), then writes the order in the other database.  No transaction
 * spans two databases: when the order's write fails, the stock is given
 * back (the compensation), so sold + remaining = initial holds.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <emhost/emhost.h>
#include <emhost/service.h>
#include <emhost/web.h>

typedef struct product {
	int64_t id;
	const char *name;
	int64_t price_cents;
	int64_t stock;
} product;

static const emh_field product_fields[] = {
	EMH_FIELD(product, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD_LEN(product, name, EMH_T_TEXT, 0, 200),
	EMH_FIELD(product, price_cents, EMH_T_INT64, 0),
	EMH_FIELD(product, stock, EMH_T_INT64, 0),
};
static const emh_entity product_entity = EMH_ENTITY(product, "products", product_fields);

typedef struct order {
	int64_t id;
	int64_t product_id;
	int32_t quantity;
	int64_t total_cents;
	emh_time created_at;
} order;

static const emh_field order_fields[] = {
	EMH_FIELD(order, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(order, product_id, EMH_T_INT64, EMH_F_INDEXED),
	EMH_FIELD(order, quantity, EMH_T_INT32, 0),
	EMH_FIELD(order, total_cents, EMH_T_INT64, EMH_F_READONLY),
	EMH_FIELD(order, created_at, EMH_T_TIMESTAMP, EMH_F_READONLY),
};
static const emh_entity order_entity = EMH_ENTITY(order, "orders", order_fields);

enum { NEED_PRODUCTS, NEED_ORDERS };
static const emh_need shop_needs[] = {
	[NEED_PRODUCTS] = EMH_NEED_REPO(&product_entity, "catalog"),
	[NEED_ORDERS] = EMH_NEED_REPO(&order_entity, "orders"),
};

/* Both repositories of the scope. */
static int repos(emh_scope *s, emh_repo **products, emh_repo **orders, emh_error *err)
{
	int rc = emh_scope_repo_at(s, NEED_PRODUCTS, products, err);
	return rc || !orders ? rc : emh_scope_repo_at(s, NEED_ORDERS, orders, err);
}

/* A product by the route's :id; EMH_ENOTFOUND naming it. */
static int product_get(emh_repo *r, int64_t id, product **out, emh_error *err)
{
	int rc = emh_repo_get(r, emh_v_int64(id), (void **)out, err);
	if (rc == EMH_ENOTFOUND)
		return emh_error_set(err, rc, "no product %lld", (long long)id);
	return rc;
}

static int products_list(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *p;
	int rc = repos(s, &p, NULL, err);
	return rc ? rc : emh_web_list(p, NULL, req, &(emh_web_list_opts){.flags = emh_web_json_flags(s)}, res, err);
}

/* Prices and stock are never negative. */
static int product_check(const product *p, emh_error *err)
{
	if (p->price_cents < 0 || p->stock < 0)
		return emh_error_set(err, EMH_EINVAL, "'price_cents' and 'stock' must not be negative");
	return 0;
}

static int products_create(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	product *p;
	int rc;
	if ((rc = repos(s, &r, NULL, err)) || (rc = emh_repo_new(r, (void **)&p, err)) ||
	    (rc = emh_web_read_body(req, emh_repo_em(r), &product_entity, p, emh_web_json_flags(s), res, err)) ||
	    (rc = product_check(p, err)) || (rc = emh_repo_insert(r, p, err)))
		return rc;
	return emh_web_reply_created(s, res, "/products", emh_repo_em(r), &product_entity, p, err);
}

static int products_get(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	product *p;
	int rc;
	if ((rc = repos(s, &r, NULL, err)) || (rc = product_get(r, emh_request_param_int64(req, "id"), &p, err)))
		return rc;
	return emh_web_reply_object(res, 200, emh_repo_em(r), &product_entity, p, emh_web_json_flags(s), err);
}

static int products_patch(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *r;
	product *p;
	int rc;
	unsigned flags = emh_web_json_flags(s) | EMH_JSON_PARTIAL;
	if ((rc = repos(s, &r, NULL, err)) || (rc = product_get(r, emh_request_param_int64(req, "id"), &p, err)) ||
	    (rc = emh_web_read_body(req, emh_repo_em(r), &product_entity, p, flags, res, err)) ||
	    (rc = product_check(p, err)) || (rc = emh_repo_update(r, p, err)))
		return rc;
	return emh_web_reply_object(res, 200, emh_repo_em(r), &product_entity, p, emh_web_json_flags(s), err);
}

/* One step of an order, run by emh_web_retry: a busy database is retried. */
typedef struct order_step {
	int64_t product_id, delta; /* stock += delta */
	int64_t matched;
	order *o;                  /* the order to insert, for the insert step */
} order_step;

/* stock = stock + delta, guarded by stock >= -delta when it takes. */
static int stock_move(emh_scope *s, void *ud, emh_error *err)
{
	order_step *st = ud;
	emh_repo *r;
	emh_query *q;
	emh_sets *sets;
	int rc;
	if ((rc = repos(s, &r, NULL, err)) || (rc = emh_repo_query(r, &q, err)) || (rc = emh_repo_sets(r, &sets, err)))
		return rc;
	emh_cond *c = emh_q_eq(q, "id", emh_v_int64(st->product_id));
	emh_q_where(q, st->delta < 0 ? emh_q_and(q, c, emh_q_ge(q, "stock", emh_v_int64(-st->delta))) : c);
	emh_sets_add(sets, "stock", emh_v_int64(st->delta));
	return emh_repo_update_where(r, q, sets, &st->matched, err);
}

static int order_insert(emh_scope *s, void *ud, emh_error *err)
{
	order_step *st = ud;
	emh_repo *p, *r;
	order *o;
	int rc;
	if ((rc = repos(s, &p, &r, err)) || (rc = emh_repo_new(r, (void **)&o, err)))
		return rc;
	*o = *st->o;
	if ((rc = emh_repo_insert(r, o, err)))
		return rc;
	st->o = o;
	return 0;
}

static int orders_create(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *pr, *or;
	order in = {0}; /* the body: a plain struct, written by order_insert once stock is taken */
	product *p;
	int rc;
	if ((rc = repos(s, &pr, &or, err)) ||
	    (rc = emh_web_read_body(req, emh_repo_em(or), &order_entity, &in, emh_web_json_flags(s), res, err)))
		return rc;
	if (in.quantity < 1 || in.quantity > 1000)
		return emh_error_set(err, EMH_EINVAL, "'quantity' must be from 1 to 1000");
	if ((rc = product_get(pr, in.product_id, &p, err)))
		return rc;
	in.total_cents = p->price_cents * in.quantity;
	in.created_at = emh_web_now();
	order_step take = {.product_id = in.product_id, .delta = -in.quantity};
	if ((rc = emh_web_retry(s, stock_move, &take, 10, err)))
		return rc;
	if (take.matched == 0)
		return emh_error_set(err, EMH_ECONFLICT, "not enough stock of product %lld for %d",
				     (long long)in.product_id, (int)in.quantity);
	order_step ins = {.o = &in};
	if ((rc = emh_web_retry(s, order_insert, &ins, 10, err))) {
		/* the compensation: give the stock back, answer the first error */
		emh_error undo_err = {0};
		order_step undo = {.product_id = in.product_id, .delta = in.quantity};
		if (emh_web_retry(s, stock_move, &undo, 20, &undo_err) || undo.matched != 1)
			emh_svc_log(emh_scope_service(s), EMH_LOG_ERROR, "order of %d x product %lld failed and its "
				    "stock was not given back: %s", (int)in.quantity, (long long)in.product_id,
				    undo_err.message);
		return rc;
	}
	return emh_web_reply_created(s, res, "/orders", emh_repo_em(or), &order_entity, ins.o, err);
}

static int orders_list(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *pr, *r;
	emh_query *q;
	int64_t pid;
	int rc;
	if ((rc = repos(s, &pr, &r, err)) || (rc = emh_repo_query(r, &q, err)) ||
	    (rc = emh_web_arg_int64(req, "product_id", 0, 1, INT64_MAX, &pid, err)))
		return rc;
	if (pid)
		emh_q_where(q, emh_q_eq(q, "product_id", emh_v_int64(pid)));
	emh_q_order_by(q, "id", false);
	return emh_web_list(r, q, req, &(emh_web_list_opts){.flags = emh_web_json_flags(s)}, res, err);
}

static int orders_get(emh_scope *s, const emh_request *req, emh_response *res, emh_error *err)
{
	emh_repo *pr, *r;
	order *o;
	int64_t id = emh_request_param_int64(req, "id");
	int rc = repos(s, &pr, &r, err);
	if (rc || (rc = emh_repo_get(r, emh_v_int64(id), (void **)&o, err)))
		return rc == EMH_ENOTFOUND ? emh_error_set(err, rc, "no order %lld", (long long)id) : rc;
	return emh_web_reply_object(res, 200, emh_repo_em(r), &order_entity, o, emh_web_json_flags(s), err);
}

static const emh_route shop_routes[] = {
	EMH_ROUTE_DOC("GET", "/products", products_list, .summary = "list products", .reply = &product_entity,
		      .flags = EMH_ROUTE_LIST),
	EMH_ROUTE_DOC("POST", "/products", products_create, .summary = "add a product", .body = &product_entity,
		      .reply = &product_entity, .flags = EMH_ROUTE_CREATED),
	EMH_ROUTE_DOC("GET", "/products/:id", products_get, .summary = "a product", .reply = &product_entity),
	EMH_ROUTE_DOC("PATCH", "/products/:id", products_patch, .summary = "change a product",
		      .body = &product_entity, .reply = &product_entity, .flags = EMH_ROUTE_PARTIAL),
	EMH_ROUTE_DOC("GET", "/orders", orders_list, .summary = "list orders (?product_id=)", .reply = &order_entity,
		      .flags = EMH_ROUTE_LIST),
	EMH_ROUTE_DOC("POST", "/orders", orders_create, .summary = "order a product: its stock is taken",
		      .body = &order_entity, .reply = &order_entity, .flags = EMH_ROUTE_CREATED),
	EMH_ROUTE_DOC("GET", "/orders/:id", orders_get, .summary = "an order", .reply = &order_entity),
};

EMH_SERVICE_EXPORT const emh_service emh_service_descriptor = {
	EMH_SERVICE_HEADER,
	.name = "shop",
	.version = "1.0",
	.description = "shop: products (context 'catalog') and orders (context 'orders') taking stock",
	.needs = shop_needs,
	.nneeds = EMH_NEEDS_COUNT(shop_needs),
	.routes = shop_routes,
	.nroutes = EMH_ROUTES_COUNT(shop_routes),
};
