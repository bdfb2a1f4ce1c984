/* SPDX-License-Identifier: MIT */
/* tests/unit/memdrv.c: the watchable test driver (see memdrv.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memdrv.h"

memdrv_state md;

struct emh_conn {
	int generation;
};

static int md_connect(const emh_params *p, emh_dctx *dc, emh_conn **out, emh_error *err)
{
	(void)dc;
	if (atomic_load(&md.down))
		return emh_error_set(err, EMH_EUNAVAILABLE, "memdrv: connection refused (server '%s' down)",
				     emh_params_context(p));
	if (atomic_load(&md.nofd)) {
		emh_error_set(err, EMH_ENOFD, "memdrv: socket: out of file descriptors (Too many open files)");
		if (err)
			err->retryable = true;
		return EMH_ENOFD;
	}
	if (atomic_load(&md.busy)) {
		emh_error_set(err, EMH_ETIMEOUT, "memdrv: too many clients already (server '%s')",
			      emh_params_context(p));
		if (err)
			err->retryable = true;
		return EMH_ETIMEOUT;
	}
	*out = malloc(sizeof **out);
	if (!*out)
		return emh_error_set(err, EMH_ENOMEM, "out of memory");
	(*out)->generation = atomic_load(&md.generation);
	int live = atomic_fetch_add(&md.live, 1) + 1;
	atomic_fetch_add(&md.opened, 1);
	for (int m = atomic_load(&md.max_live); live > m && !atomic_compare_exchange_weak(&md.max_live, &m, live);)
		;
	return 0;
}

static void md_disconnect(emh_conn *c)
{
	atomic_fetch_sub(&md.live, 1);
	free(c);
}

static int alive(emh_conn *c, emh_error *err)
{
	if (atomic_load(&md.down) || c->generation != atomic_load(&md.generation))
		return emh_error_set(err, EMH_EUNAVAILABLE, "memdrv: server closed the connection");
	return 0;
}

static int md_ping(emh_conn *c, emh_error *err)
{
	atomic_fetch_add(&md.pings, 1);
	if (atomic_load(&md.slow_ping)) {
		emh_error_set(err, EMH_ETIMEOUT, "memdrv: ping: no answer within the deadline");
		if (err)
			err->retryable = true;
		return EMH_ETIMEOUT;
	}
	return alive(c, err);
}

static int md_execute(emh_conn *c, const char *t, emh_error *err)
{
	int rc = alive(c, err);
	if (rc)
		return rc;
	if (strcmp(t, "fail") == 0)
		return emh_error_set(err, EMH_EDRIVER, "memdrv: statement failed");
	if (strcmp(t, "lose") == 0)
		return emh_error_set(err, EMH_EUNAVAILABLE, "memdrv: connection lost");
	if (strcmp(t, "slow") == 0) {
		emh_error_set(err, EMH_ETIMEOUT, "memdrv: no answer within the deadline");
		if (err)
			err->retryable = true;
		return EMH_ETIMEOUT;
	}
	if (strcmp(t, "hold") == 0)
		usleep((useconds_t)atomic_load(&md.hold_us));
	return 0;
}

static int md_sync(emh_conn *c, const emh_meta *m, emh_error *err) { (void)m; return alive(c, err); }
static int md_unsupported(emh_error *err) { return emh_error_set(err, EMH_EUNSUPPORTED, "memdrv stores nothing"); }
static int md_insert(emh_conn *c, const emh_meta *m, const emh_value *v, emh_value *k, emh_error *err)
{
	(void)c, (void)m, (void)v, (void)k;
	return md_unsupported(err);
}
static int md_update(emh_conn *c, const emh_meta *m, const emh_value *v, uint64_t mask, emh_error *err)
{
	(void)c, (void)m, (void)v, (void)mask;
	return md_unsupported(err);
}
static int md_remove(emh_conn *c, const emh_meta *m, const emh_value *k, emh_error *err)
{
	(void)c, (void)m, (void)k;
	return md_unsupported(err);
}
static int md_find(emh_conn *c, const emh_meta *m, const emh_query *q, emh_rowsink *s, emh_error *err)
{
	(void)m, (void)q, (void)s;
	return alive(c, err);
}
static int md_count(emh_conn *c, const emh_meta *m, const emh_query *q, int64_t *n, emh_error *err)
{
	(void)m, (void)q;
	*n = 0;
	return alive(c, err);
}

static unsigned md_conn_fds(const emh_dctx *dc)
{
	(void)dc;
	int n = atomic_load(&md.conn_fds);
	return n > 0 ? (unsigned)n : 1;
}

const emh_driver memdrv = {
	EMH_DRIVER_HEADER,
	.name = "memdrv",
	.version = "test",
	.connect = md_connect,
	.disconnect = md_disconnect,
	.ping = md_ping,
	.execute = md_execute,
	.sync = md_sync,
	.insert = md_insert,
	.update = md_update,
	.remove = md_remove,
	.find = md_find,
	.count = md_count,
	.conn_fds = md_conn_fds,
};
