/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_host.c: hosts and contexts: two hosts in one process,
 * contexts added and removed at run time, registration and lookup errors,
 * cross-context objects.  Uses the real SQLite plugin from plugins-build.
 * (test_context.c: contexts at scale and removal; test_meta.c: registration.)
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <emhost/emhost.h>

#include "../tap.h"

typedef struct note {
	int64_t id;
	const char *body;
} note;
static const emh_field note_fields[] = {
	EMH_FIELD(note, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(note, body, EMH_T_TEXT, 0),
};
static const emh_entity note_entity = EMH_ENTITY(note, "notes", note_fields);
static const emh_entity note_twin = EMH_ENTITY(note, "notes", note_fields);
static const emh_field other_fields[] = {EMH_FIELD(note, id, EMH_T_INT64, EMH_F_PK)};
static const emh_entity note_other = EMH_ENTITY(note, "notes", other_fields);

static char plugdir[512], tmp[64];

static emh_host *new_host(const char *const *env, emh_error *err)
{
	emh_host_opts o = {.plugin_dir = plugdir, .envp = env};
	emh_host *h = NULL;
	emh_host_new(&o, &h, err);
	return h;
}

static int add_note(emh_host *h, const char *ctx, const char *body, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	note *n;
	int rc = emh_host_fork(h, ctx, &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, &note_entity, &r, err)) == 0 && (rc = emh_repo_new(r, (void **)&n, err)) == 0) {
		n->body = body;
		rc = emh_em_flush(em, err);
	}
	emh_em_close(em);
	return rc;
}

static int64_t count_notes(emh_host *h, const char *ctx)
{
	emh_em *em;
	emh_repo *r;
	emh_error err;
	int64_t n = -1;
	if (emh_host_fork(h, ctx, &em, &err) == 0) {
		if (emh_em_repo(em, &note_entity, &r, &err) == 0)
			emh_repo_count(r, NULL, &n, &err);
		emh_em_close(em);
	}
	return n;
}

typedef struct remover {
	emh_host *h;
	int rc;
	volatile int done;
} remover;

static void *remove_tenant(void *arg)
{
	remover *rm = arg;
	emh_error err;
	rm->rc = emh_host_remove_context(rm->h, "tenant1", &err);
	rm->done = 1;
	return NULL;
}

typedef struct filler {
	emh_host *h;
	int fails;
} filler;

static void *fill(void *arg)
{
	filler *f = arg;
	emh_error err;
	for (int i = 0; i < 50; i++)
		if (add_note(f->h, NULL, "x", &err) != 0)
			f->fails++;
	return NULL;
}

int main(void)
{
	const char *b = getenv("EMH_BUILDDIR");
	if (!b)
		bail("EMH_BUILDDIR is not set (run through make check)");
	snprintf(plugdir, sizeof plugdir, "%s/plugins-build", b);
	snprintf(tmp, sizeof tmp, "/tmp/emh-host-XXXXXX");
	if (!mkdtemp(tmp))
		bail("mkdtemp");
	char e1[128], e2[128], e3[128];
	snprintf(e1, sizeof e1, "EMH_CONTEXT_DEFAULT_URL=sqlite://%s/one.db", tmp);
	snprintf(e2, sizeof e2, "EMH_CONTEXT_DEFAULT_URL=sqlite://%s/two.db", tmp);
	snprintf(e3, sizeof e3, "EMH_CONTEXT_DEFAULT_SCHEMA=sync");
	const char *env1[] = {e1, e3, NULL}, *env2[] = {e2, e3, NULL};
	emh_error err;

	/* two hosts in one process */
	emh_host *h1 = new_host(env1, &err), *h2 = new_host(env2, &err);
	if (!ok(h1 && h2, "two hosts in one process"))
		bail("host: %s", err.message);
	ok(emh_host_register_entity(h1, NULL, &note_entity, &err) == 0 &&
	   emh_host_register_entity(h2, NULL, &note_entity, &err) == 0,
	   "the same entity registered in both");
	filler f1 = {h1, 0}, f2 = {h2, 0};
	pthread_t t1, t2;
	pthread_create(&t1, NULL, fill, &f1);
	pthread_create(&t2, NULL, fill, &f2);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	is_int(f1.fails + f2.fails, 0, "both used concurrently");
	is_int(count_notes(h1, NULL), 50, "host 1 sees its own 50 rows");
	is_int(add_note(h2, NULL, "y", &err), 0, "host 2 adds one more");
	is_int(count_notes(h2, NULL), 51, "host 2 sees its own 51 rows");
	is_int(count_notes(h1, NULL), 50, "host 1 unaffected");
	emh_host_free(h2);
	is_int(count_notes(h1, NULL), 50, "freeing one host leaves the other working");

	/* lookups and registration */
	emh_em *em;
	is_int(emh_host_fork(h1, "nosuch", &em, &err), EMH_ENOCONTEXT, "fork of an unknown context");
	like_str(err.message, "no context 'nosuch' (contexts: default)", "lists the contexts");
	is_int(emh_host_register_entity(h1, NULL, &note_entity, &err), 0, "registering twice is a no-op");
	is_int(emh_host_register_entity(h1, NULL, &note_twin, &err), 0,
	       "the same declaration at another address is accepted");
	emh_repo *r1, *r2;
	if (emh_host_fork(h1, NULL, &em, &err) != 0)
		bail("fork: %s", err.message);
	ok(emh_em_repo(em, &note_entity, &r1, &err) == 0 && emh_em_repo(em, &note_twin, &r2, &err) == 0 && r1 == r2,
	   "as another name of the same entity");
	emh_em_close(em);
	is_int(emh_host_register_entity(h1, NULL, &note_other, &err), EMH_ECONFIG, "another entity on the same table");
	like_str(err.message, "both map to table 'notes'", "is refused, naming the table");

	/* contexts added and removed at run time (tenants) */
	char path[128];
	snprintf(path, sizeof path, "%s/tenant1.db", tmp);
	const char *kv[] = {"driver", "sqlite", "path", path, "schema", "sync", NULL};
	is_int(emh_host_add_context(h1, "tenant1", kv, &err), 0, "add a context at run time");
	is_int(emh_host_add_context(h1, "tenant1", kv, &err), EMH_ECONFIG, "adding the same name again");
	like_str(err.message, "duplicate context name 'tenant1'", "is refused");
	const char *nodrv[] = {"driver", "nosuch", NULL};
	is_int(emh_host_add_context(h1, "t2", nodrv, &err), EMH_EPLUGIN, "adding a context with an unknown driver");
	like_str(err.message, "loaded drivers:", "lists the loaded drivers");
	ok(emh_host_register_entity(h1, "tenant1", &note_entity, &err) == 0, "register an entity in it");
	is_int(add_note(h1, "tenant1", "t", &err), 0, "use it");
	is_int(count_notes(h1, "tenant1"), 1, "its data is its own");

	emh_repo *r;
	note *n;
	emh_host_fork(h1, "tenant1", &em, &err);
	emh_em_repo(em, &note_entity, &r, &err);
	emh_repo_get(r, emh_v_int64(1), (void **)&n, &err);
	remover rm = {.h = h1};
	pthread_t rt;
	pthread_create(&rt, NULL, remove_tenant, &rm);
	usleep(200 * 1000);
	ok(!rm.done, "removal waits while a fork on the context is open");
	emh_em *other;
	is_int(emh_host_fork(h1, "tenant1", &other, &err), EMH_ENOCONTEXT, "no new fork on a context being removed");

	/* cross-context: an object of tenant1 handed to a fork of default */
	emh_em *def;
	emh_host_fork(h1, NULL, &def, &err);
	is_int(emh_em_remove(def, n, &err), EMH_ECROSSCTX, "an object of another context is refused");
	like_str(err.message, "belongs to context 'tenant1'", "naming its context");
	emh_em_close(def);

	emh_em_close(em);
	pthread_join(rt, NULL);
	ok(rm.done && rm.rc == 0, "removal finishes once the fork is closed");
	is_int(emh_host_fork(h1, "tenant1", &em, &err), EMH_ENOCONTEXT, "the removed context is gone");
	is_int(emh_host_remove_context(h1, "default", &err), EMH_ESTATE, "the default context cannot be removed");
	is_int(count_notes(h1, NULL), 50, "the default context kept working");

	/* repository of an entity not registered in the context */
	static const emh_field lonely_fields[] = {EMH_FIELD(note, id, EMH_T_INT64, EMH_F_PK)};
	static const emh_entity lonely = EMH_ENTITY(note, "lonely", lonely_fields);
	emh_host_fork(h1, NULL, &em, &err);
	is_int(emh_em_repo(em, &lonely, &r, &err), EMH_ENOENTITY, "repository of an unregistered entity");
	like_str(err.message, "entity 'note' is not registered in context 'default'", "names entity and context");
	emh_em_close(em);
	emh_host_free(h1);

	/* Two hosts, one long context name on sqlite::memory:: each must get its
	 * own database.  The instance string that names it once held the name
	 * first and was cut at 64 bytes, so the part that told the hosts apart
	 * was lost and both opened one shared in-memory database. */
	{
		const char *long_name = "tenant_with_a_rather_long_name_to_fill_the_instance_buffer_x";
		const char *mem[] = {"url", "sqlite::memory:", "schema", "sync", NULL};
		emh_host *a = new_host(env1, &err), *hb = new_host(env2, &err);
		if (!a || !hb)
			bail("hosts: %s", err.message);
		if (emh_host_add_context(a, long_name, mem, &err) || emh_host_add_context(hb, long_name, mem, &err) ||
		    emh_host_register_entity(a, long_name, &note_entity, &err) ||
		    emh_host_register_entity(hb, long_name, &note_entity, &err))
			bail("long-named contexts: %s", err.message);
		is_int(add_note(a, long_name, "only in a", &err), 0, "a row in host a's long-named memory context");
		is_int(count_notes(hb, long_name), 0, "host b's context of the same long name is another database");
		is_int(count_notes(a, long_name), 1, "host a sees its row");
		emh_host_free(a);
		emh_host_free(hb);
	}

	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		diag("could not remove %s", tmp);
	return done_testing();
}
