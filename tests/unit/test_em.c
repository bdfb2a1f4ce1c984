/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/test_em.c: entity-manager bookkeeping corner cases on a real
 * SQLite file (the conformance suite covers the common paths on every
 * driver): rollback after remove, members re-pointed at equal content, a
 * commit that fails inside the callback form.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/emhost.h>

#include "../tap.h"

typedef struct item {
	int64_t id;
	const char *name;
} item;
static const emh_field item_fields[] = {
	EMH_FIELD(item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(item, name, EMH_T_TEXT, 0),
};
static const emh_entity item_entity = EMH_ENTITY(item, "items", item_fields);

static int insert_orphan(emh_em *em, void *ud, emh_error *err)
{
	(void)ud;
	/* violates a deferred foreign key: only COMMIT fails */
	return emh_em_execute(em, "INSERT INTO child (parent) VALUES (12345)", err);
}

int main(void)
{
	const char *b = getenv("EMH_BUILDDIR");
	if (!b)
		bail("EMH_BUILDDIR is not set (run through make check)");
	char plugdir[512], dir[64], url[128];
	snprintf(plugdir, sizeof plugdir, "%s/plugins-build", b);
	snprintf(dir, sizeof dir, "/tmp/emh-em-XXXXXX");
	if (!mkdtemp(dir))
		bail("mkdtemp");
	snprintf(url, sizeof url, "EMH_CONTEXT_DEFAULT_URL=sqlite://%s/em.db", dir);
	const char *env[] = {url, "EMH_CONTEXT_DEFAULT_SCHEMA=sync", NULL};
	emh_host_opts o = {.plugin_dir = plugdir, .envp = env};
	emh_host *h;
	emh_error err;
	if (emh_host_new(&o, &h, &err) || emh_host_register_entity(h, NULL, &item_entity, &err))
		bail("host: %s", err.message);
	emh_em *em;
	emh_repo *r;
	item *it, *got;

	/* insert in a transaction, remove it (not flushed), roll back */
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	is_int(emh_em_begin(em, &err), 0, "begin");
	emh_repo_new(r, (void **)&it, &err);
	it->name = "a";
	is_int(emh_em_flush(em, &err), 0, "insert flushed inside the transaction");
	int64_t id = it->id;
	is_int(emh_em_remove(em, it, &err), 0, "then scheduled for removal");
	is_int(emh_em_rollback(em, &err), 0, "rollback");
	is_int(it->id, 0, "the generated key is reset");
	is_int(emh_repo_get(r, emh_v_int64(id), (void **)&got, &err), EMH_ENOTFOUND,
	       "the rolled-back row is neither in the database nor in the identity map");
	is_int(emh_em_flush(em, &err), 0, "a flush after the rollback");
	is_int(emh_repo_get(r, emh_v_int64(id), (void **)&got, &err), EMH_ENOTFOUND,
	       "does not insert the object the caller had removed");
	item *n2;
	emh_repo_new(r, (void **)&n2, &err);
	n2->name = "b";
	is_int(emh_em_flush(em, &err), 0, "a new object reusing the freed key");
	ok(emh_repo_get(r, emh_v_int64(n2->id), (void **)&got, &err) == 0 && got == n2,
	   "is found by its key (identity map intact)");
	emh_em_close(em);

	/* insert, delete, both in one level, rolled back */
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	emh_em_begin(em, &err);
	emh_repo_new(r, (void **)&it, &err);
	it->name = "c";
	emh_em_flush(em, &err);
	emh_em_remove(em, it, &err);
	is_int(emh_em_flush(em, &err), 0, "insert and delete flushed in one transaction");
	int64_t cid = it->id;
	emh_em_rollback(em, &err);
	is_int(it->id, 0, "rolled back: the key is reset");
	is_int(emh_em_flush(em, &err), 0, "flushed again outside the transaction");
	is_int(it->id, 0, "the caller's removal stands: the object is not inserted");
	int64_t cnt = -1;
	emh_repo_count(r, NULL, &cnt, &err);
	is_int(cnt, 1, "only the earlier row exists");
	ok(emh_repo_get(r, emh_v_int64(cid), (void **)&got, &err) != 0 || got != it,
	   "the object is not found under its rolled-back key");
	emh_em_close(em);

	/* a member pointed at other memory with equal content */
	emh_host_fork(h, NULL, &em, &err);
	emh_em_repo(em, &item_entity, &r, &err);
	emh_repo_get(r, emh_v_int64(n2->id), (void **)&got, &err);
	char *mine = strdup(got->name);
	got->name = mine;
	is_int(emh_em_flush(em, &err), 0, "flush with an equal but re-pointed text member");
	ok(got->name != mine, "the member points at the fork's copy afterwards");
	free(mine);
	is_int(emh_em_flush(em, &err), 0, "so the caller's buffer may be freed (no read of it: ASan/valgrind)");
	emh_em_close(em);

	/* commit failing inside emh_em_transaction */
	emh_host_fork(h, NULL, &em, &err);
	emh_em_execute(em, "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
			   "CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)",
		       &err);
	int rc = emh_em_transaction(em, insert_orphan, NULL, &err);
	ok(rc != 0, "a commit that fails is reported by the callback form (%s)", emh_status_name(rc));
	is_int(emh_em_tx_depth(em), 0, "and the level is rolled back, not left open");
	is_int(emh_em_execute(em, "INSERT INTO parent (id) VALUES (1)", &err), 0, "the fork works on");
	emh_em_close(em);

	emh_host_free(h);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	return done_testing();
}
