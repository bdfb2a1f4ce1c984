/* SPDX-License-Identifier: MIT */
/*
 * tests/fault.h: what the driver fault tests share (header-only): the row
 * they count across a server stop/restart, the server script runner, and a
 * clock for the "returned instead of hanging" bounds.
 */
#ifndef EMH_TESTS_FAULT_H
#define EMH_TESTS_FAULT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <emhost/emhost.h>

typedef struct fault_item {
	int64_t id;
	const char *name;
	int64_t n;
} fault_item;

static const emh_field fault_item_fields[] = {
	EMH_FIELD(fault_item, id, EMH_T_INT64, EMH_F_PK | EMH_F_GENERATED),
	EMH_FIELD(fault_item, name, EMH_T_TEXT, 0),
	EMH_FIELD(fault_item, n, EMH_T_INT64, 0),
};

static inline double fault_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Run `SCRIPT CMD STATE_DIR` (scripts/servers/<kind>.sh start|stop|restart); its exit status. */
static inline int fault_server(const char *script, const char *cmd, const char *state)
{
	char line[2048];
	snprintf(line, sizeof line, "'%s' %s '%s' >&2", script, cmd, state);
	return system(line);
}

/* Insert n rows named PREFIX-i in one flush on ctx. */
static inline int fault_insert(emh_host *h, const char *ctx, const emh_entity *e, int n, const char *prefix,
			       emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	int rc = emh_host_fork(h, ctx, &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, e, &r, err)) == 0) {
		for (int i = 0; i < n && rc == 0; i++) {
			fault_item *it;
			char name[64];
			if ((rc = emh_repo_new(r, (void **)&it, err)) != 0)
				break;
			snprintf(name, sizeof name, "%s-%d", prefix, i);
			it->name = emh_em_strdup(em, name);
			it->n = i;
		}
		if (rc == 0)
			rc = emh_em_flush(em, err);
	}
	emh_em_close(em);
	return rc;
}

static inline int fault_count(emh_host *h, const char *ctx, const emh_entity *e, int64_t *n, emh_error *err)
{
	emh_em *em;
	emh_repo *r;
	int rc = emh_host_fork(h, ctx, &em, err);
	if (rc)
		return rc;
	if ((rc = emh_em_repo(em, e, &r, err)) == 0)
		rc = emh_repo_count(r, NULL, n, err);
	emh_em_close(em);
	return rc;
}

/* The counters and state of context name (strings not kept); false when absent. */
static inline bool fault_context_info(emh_host *h, const char *name, emh_context_info *out)
{
	emh_context_info *v;
	size_t n;
	emh_error err;
	bool found = false;
	if (emh_host_contexts(h, &v, &n, &err) != 0)
		return false;
	for (size_t i = 0; i < n && !found; i++)
		if (strcmp(v[i].name, name) == 0) {
			*out = v[i];
			out->name = out->driver = NULL;
			out->settings = NULL;
			out->nsettings = 0;
			found = true;
		}
	emh_context_info_free(v, n);
	return found;
}

#endif