/* SPDX-License-Identifier: MIT */
/*
 * tests/abi/host.c: an application built out of tree against an installed
 * emhost (pkg-config --cflags --libs emhost, no config.h, nothing from the
 * source tree), which loads the memdoc driver built by the guide's Makefile
 * from the installed plugin directory and stores, finds and upserts through
 * it.  Usage: host PLUGIN_DIR.  Prints "PASS what" / "FAIL what" lines, which
 * tests/abi/outoftree.sh turns into TAP; exits non-zero when one failed.
 */
#include <stdio.h>
#include <string.h>

#include <emhost/driver.h> /* EMH_DRIVER_ABI_* */
#include <emhost/emhost.h>

typedef struct note {
	int64_t id;
	const char *title;
	int32_t stars;
} note;
static const emh_field note_fields[] = {
	EMH_FIELD(note, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(note, title, EMH_T_TEXT, EMH_F_UNIQUE),
	EMH_FIELD(note, stars, EMH_T_INT32, 0),
};
static const emh_entity note_entity = EMH_ENTITY(note, "notes", note_fields);

typedef struct tag {
	const char *name;
	int32_t uses;
} tag;
static const emh_field tag_fields[] = {
	EMH_FIELD(tag, name, EMH_T_TEXT, EMH_F_PK),
	EMH_FIELD(tag, uses, EMH_T_INT32, 0),
};
static const emh_entity tag_entity = EMH_ENTITY(tag, "tags", tag_fields);

static int failed;

static int check(int cond, const char *what, const emh_error *err)
{
	printf("%s %s\n", cond ? "PASS" : "FAIL", what);
	if (!cond) {
		failed++;
		if (err)
			printf("  error: %s\n", err->message);
	}
	return cond;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: host PLUGIN_DIR\n");
		return 2;
	}
	const char *env[] = {"EMH_CONTEXT_DEFAULT_DRIVER=memdoc", "EMH_CONTEXT_DEFAULT_SCHEMA=sync", NULL};
	emh_host_opts o = {.plugin_dir = argv[1], .envp = env};
	emh_host *h = NULL;
	emh_error err = {0};
	if (!check(emh_host_new(&o, &h, &err) == 0, "a host on the memdoc driver starts", &err))
		return 1;
	/* the installed drivers are there too: memdoc among them */
	const emh_driver_info *d, *md = NULL;
	size_t nd = emh_host_drivers(h, &d);
	for (size_t i = 0; i < nd; i++)
		if (strcmp(d[i].name, "memdoc") == 0)
			md = &d[i];
	char want[1024];
	snprintf(want, sizeof want, "%s/memdoc.so", argv[1]);
	check(md && strcmp(md->file, want) == 0, "memdoc is loaded from the installed plugin directory", NULL);
	check(md && md->abi_major == EMH_DRIVER_ABI_MAJOR && md->abi_minor == EMH_DRIVER_ABI_MINOR,
	      "with the ABI of the installed headers", NULL);

	emh_em *em = NULL;
	emh_repo *r = NULL, *tr = NULL;
	note *a = NULL, *b = NULL, *got = NULL;
	if (!check(emh_host_register_entity(h, NULL, &note_entity, &err) == 0 &&
			   emh_host_register_entity(h, NULL, &tag_entity, &err) == 0 && emh_host_fork(h, NULL, &em, &err) == 0 &&
			   emh_em_repo(em, &note_entity, &r, &err) == 0 && emh_em_repo(em, &tag_entity, &tr, &err) == 0,
		   "entities registered, a fork and its repositories", &err))
		goto out;
	if (emh_repo_new(r, (void **)&a, &err) == 0 && emh_repo_new(r, (void **)&b, &err) == 0) {
		*a = (note){.title = "first", .stars = 3};
		*b = (note){.title = "second", .stars = 5};
	}
	check(a && b && emh_em_flush(em, &err) == 0 && a->id > 0 && b->id > a->id,
	      "two inserts flushed, generated keys written back in order", &err);
	int64_t second = b ? b->id : 0; /* the objects die with their fork */
	emh_em_close(em);

	em = NULL;
	emh_query *q;
	emh_list l = {0};
	int64_t n = -1;
	if (emh_host_fork(h, NULL, &em, &err) || emh_em_repo(em, &note_entity, &r, &err) ||
	    emh_em_repo(em, &tag_entity, &tr, &err) || emh_repo_query(r, &q, &err))
		goto out;
	emh_q_where(q, emh_q_ge(q, "stars", emh_v_int32(4)));
	check(emh_repo_find(r, q, &l, &err) == 0 && l.count == 1 && strcmp(((note *)l.items[0])->title, "second") == 0,
	      "a query runs in the driver", &err);
	check(emh_repo_get(r, emh_v_int64(second), (void **)&got, &err) == 0 && got == l.items[0],
	      "get by key returns the object the fork already holds", &err);
	note *dup = NULL;
	if (emh_repo_new(r, (void **)&dup, &err) == 0)
		*dup = (note){.title = "first", .stars = 1};
	check(dup && emh_repo_insert(r, dup, &err) == EMH_ECONFLICT, "the driver enforces a unique field", &err);
	tag *t = NULL;
	if (emh_repo_new(tr, (void **)&t, &err) == 0)
		*t = (tag){.name = "c", .uses = 7};
	check(t && emh_repo_upsert(tr, t, &err) == 0 && emh_repo_count(tr, NULL, &n, &err) == 0 && n == 1,
	      "upsert goes through the driver's member", &err);
out:
	emh_em_close(em);
	emh_host_free(h);
	return failed ? 1 : 0;
}
