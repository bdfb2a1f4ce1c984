/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_timeout.c: what the core does with EMH_ETIMEOUT from a
 * driver: a call past its deadline loses its connection (never pooled
 * again) but not the idle ones, and the context is not reported down; a
 * check of an idle connection past its deadline is the acquire's answer (no
 * second wait on a fresh connect); a server refusing connections for lack
 * of slots (back-pressure) is not "down" either; last_error clears once the
 * context works again.
 */
#include "config.h"

#include <string.h>

#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"
#include "memdrv.h"

static const emh_driver *const drivers[] = {&memdrv};

/* Two connections of ctx left idle in its pool. */
static void warm_two(emh_host *h, const char *ctx)
{
	emh_error err;
	emh_em *a = fixture_fork(h, ctx), *b = fixture_fork(h, ctx);
	if (emh_em_execute(a, "ok", &err) || emh_em_execute(b, "ok", &err))
		bail("warming '%s': %s", ctx, err.message);
	emh_em_close(a);
	emh_em_close(b);
}

static void test_call_past_deadline(emh_host *h)
{
	emh_error err;
	diag("a call past its deadline: its connection is closed, the idle ones stay");
	warm_two(h, "t");
	emh_context_info before = fixture_context_info(h, "t");
	int live = atomic_load(&md.live);
	is_int((int)before.idle, 2, "two idle connections to start with");

	int rc = fixture_exec(h, "t", "slow", &err);
	is_int(rc, EMH_ETIMEOUT, "the call comes back as EMH_ETIMEOUT");
	ok(err.retryable, "retryable");
	is_str(err.context, "t", "naming the context");
	emh_context_info ci = fixture_context_info(h, "t");
	is_int(atomic_load(&md.live), live - 1, "its connection was closed, not given back");
	is_int((int)(ci.discarded - before.discarded), 1, "one discard counted");
	is_int((int)ci.idle, 1, "the other idle connection was kept");
	ok(ci.up, "the context is not reported down for a slow call");

	int opened = atomic_load(&md.opened);
	is_int(fixture_exec(h, "t", "ok", &err), 0, "the next fork works");
	is_int(atomic_load(&md.opened), opened, "on the connection that stayed idle");
	is_int(emh_host_ping(h, "t", &err), 0, "ping after it");
}

static void test_ping_past_deadline(emh_host *h)
{
	emh_error err;
	diag("the check of an idle connection passes its deadline: EMH_ETIMEOUT at once, no connect tried");
	is_int(fixture_exec(h, "t", "fail", &err), EMH_EDRIVER, "an error marks the connection for a check");
	int opened = atomic_load(&md.opened), pings = atomic_load(&md.pings);
	atomic_store(&md.slow_ping, 1);
	int rc = fixture_exec(h, "t", "ok", &err);
	atomic_store(&md.slow_ping, 0);
	is_int(rc, EMH_ETIMEOUT, "the fork's call fails with the check's EMH_ETIMEOUT");
	like_str(err.message, "context 't'", "naming the context");
	is_int(atomic_load(&md.pings), pings + 1, "one check");
	is_int(atomic_load(&md.opened), opened, "and no new connection tried after it");
	emh_context_info ci = fixture_context_info(h, "t");
	ok(ci.up, "the context is not reported down");
	like_str(ci.last_error, "ping", "last_error says why: %s", ci.last_error);
	is_int(fixture_exec(h, "t", "ok", &err), 0, "the next fork works");
}

static void test_back_pressure(emh_host *h)
{
	emh_error err;
	diag("a server with no connection slot free: EMH_ETIMEOUT, the context is not down");
	atomic_store(&md.busy, 1);
	int rc = fixture_exec(h, "b", "ok", &err);
	is_int(rc, EMH_ETIMEOUT, "the refused connect comes back as EMH_ETIMEOUT");
	ok(err.retryable, "retryable");
	like_str(err.message, "context 'b'", "naming the context");
	emh_context_info ci = fixture_context_info(h, "b");
	ok(ci.up, "the context is still reported up");
	like_str(ci.last_error, "too many clients", "last_error says why: %s", ci.last_error);
	atomic_store(&md.busy, 0);
	is_int(fixture_exec(h, "b", "ok", &err), 0, "a slot free again: the next fork works");
	ci = fixture_context_info(h, "b");
	ok(ci.up && ci.last_error[0] == '\0', "last_error cleared by the successful connect ('%s')", ci.last_error);
}

static void test_last_error_cleared(emh_host *h)
{
	emh_error err;
	diag("last_error clears when the context recovers");
	atomic_store(&md.down, 1);
	is_int(fixture_exec(h, "b", "ok", &err), EMH_EUNAVAILABLE, "database down: EMH_EUNAVAILABLE");
	is_int(fixture_exec(h, "b", "ok", &err), EMH_EUNAVAILABLE, "and again from a refused connect");
	emh_context_info ci = fixture_context_info(h, "b");
	ok(!ci.up && strstr(ci.last_error, "refused"), "down, with its last error: %s", ci.last_error);
	atomic_store(&md.down, 0);
	is_int(emh_host_ping(h, "b", &err), 0, "back: a ping succeeds");
	ci = fixture_context_info(h, "b");
	ok(ci.up, "reported up again");
	is_str(ci.last_error, "", "last_error no longer shows the old failure");
}

int main(void)
{
	emh_error err;
	const char *env[] = {"EMH_CONTEXT_T_DRIVER=memdrv", "EMH_CONTEXT_T_POOL_MAX=3",
			     "EMH_CONTEXT_B_DRIVER=memdrv", "EMH_CONTEXT_B_POOL_MAX=2",
			     "EMH_DEFAULT_CONTEXT=t", NULL};
	emh_host_opts o = {.no_plugins = true, .drivers = drivers, .ndrivers = 1, .envp = env};
	emh_host *h = NULL;
	if (!ok(emh_host_new(&o, &h, &err) == 0, "host with two memdrv contexts starts"))
		bail("host: %s", err.message);
	test_call_past_deadline(h);
	test_ping_past_deadline(h);
	test_back_pressure(h);
	test_last_error_cleared(h);
	emh_host_free(h);
	is_int(atomic_load(&md.live), 0, "freeing the host closed every connection");
	return done_testing();
}
