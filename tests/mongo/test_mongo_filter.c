/* SPDX-License-Identifier: MIT */
/*
 * tests/mongo/test_mongo_filter.c: the mongo driver's query compiler
 * (plugins/mongo/mongo_filter.c, built into this program) without a server:
 * the BSON filter it makes of a query, where what a server would do with it
 * differs between servers.  A LIKE pattern's regex must end so that nothing
 * may follow, on every server: mongod's PCRE reads '$' as "at the end or
 * before a final newline" (so LIKE 'abc' matched "abc\n"), JavaScript (the
 * mongo-wire test server) as "at the end" only; so the test server cannot
 * show the difference, and this program checks the regex itself.
 *
 * The queries are built by the host on a mongo context that is never
 * connected (its URL points at a closed port): a fork, a repository and a
 * query need no server.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include <emhost/driver.h>
#include <emhost/emhost.h>

#include "../fixture.h"
#include "../tap.h"
#include "../../plugins/mongo/mongo_int.h"

typedef struct ft_doc {
	int64_t id;
	const char *txt;
} ft_doc;

static const emh_field ft_doc_fields[] = {
	EMH_FIELD(ft_doc, id, EMH_T_INT64, EMH_F_PK),
	EMH_FIELD(ft_doc, txt, EMH_T_TEXT, EMH_F_NULLABLE),
};
static const emh_entity ft_doc_entity = EMH_ENTITY(ft_doc, "ft_docs", ft_doc_fields);

/* The regex under txt's operator op ("$regex", or "$not" for NOT LIKE) of q's filter, malloc'd, or NULL. */
static char *filter_regex(const emh_query *q, const char *op, char *msg, size_t cap)
{
	emh_meta m = {.entity = &ft_doc_entity, .pk = 0};
	bson_t filter;
	bson_iter_t it, sub;
	emh_error err;
	char *out = NULL;
	msg[0] = '\0';
	if (mg_filter(&filter, &m, q, &err)) {
		snprintf(msg, cap, "mg_filter: %.400s", err.message);
		return NULL;
	}
	char *json = bson_as_relaxed_extended_json(&filter, NULL);
	snprintf(msg, cap, "%s", json ? json : "?");
	bson_free(json);
	if (bson_iter_init_find(&it, &filter, "txt") && BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sub) &&
	    bson_iter_find(&sub, op) && BSON_ITER_HOLDS_REGEX(&sub)) {
		const char *re = bson_iter_regex(&sub, NULL);
		out = re ? strdup(re) : NULL;
	}
	bson_destroy(&filter);
	return out;
}

/* The regex of txt LIKE pat (or NOT LIKE), checked against want. */
static void regex_is(emh_repo *r, const char *pat, bool negated, const char *want)
{
	emh_query *q = fixture_query(r);
	char msg[512];
	emh_q_where(q, negated ? emh_q_not(q, emh_q_like(q, "txt", pat)) : emh_q_like(q, "txt", pat));
	char *re = filter_regex(q, negated ? "$not" : "$regex", msg, sizeof msg);
	if (!re || strcmp(re, want) != 0)
		diag("filter: %s", msg);
	is_str(re, want, "%slike '%s': regex %s", negated ? "not " : "", pat, want);
	free(re);
}

int main(void)
{
	fixture fx;
	emh_error err;
	emh_host *h;

	plan_lazy();
	fixture_init(&fx, "mgfilter");
	const char *envp[] = {"EMH_CONTEXT_MG_URL=mongodb://127.0.0.1:1/emh_filter_test", NULL};
	if (fixture_host(&fx, envp, &h, &err))
		bail("host with a mongo context: %s", err.message);
	fixture_register(h, "mg", &ft_doc_entity);
	emh_em *em = fixture_fork(h, "mg");
	emh_repo *r = fixture_repo(em, &ft_doc_entity);

	diag("like: the regex ends where the text must end, with nothing after it (not '$')");
	regex_is(r, "abc", false, "^abc(?![\\s\\S])");
	regex_is(r, "abc", true, "^abc(?![\\s\\S])");
	regex_is(r, "a%", false, "^a[\\s\\S]*(?![\\s\\S])");
	regex_is(r, "a_", false, "^a[\\s\\S](?![\\s\\S])");
	regex_is(r, "%$", false, "^[\\s\\S]*\\$(?![\\s\\S])");
	regex_is(r, "", false, "^(?![\\s\\S])");

	emh_em_close(em);
	emh_host_free(h);
	fixture_release(&fx);
	return done_testing();
}
