/* SPDX-License-Identifier: MIT */
/*
 * core/cli/migrate.c: `emhost migrate status|up|down|new` and `emhost schema
 * diff` (public API only).  These commands take options of their own
 * (--context, --all, --to ...) anywhere on the line, so they parse the whole
 * command line here; emhost.c hands it over when the command is one of them.
 */
#include "config.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <emhost/emhost.h>

#include "cli.h"

enum { EXIT_USAGE = 2 };

static const char usage_text[] =
	"usage: emhost [-c FILE] [-p PLUGIN_DIR] migrate status [--context NAME | --all]\n"
	"       emhost [-c FILE] [-p PLUGIN_DIR] migrate up [--context NAME | --all] [--to N]\n"
	"       emhost [-c FILE] [-p PLUGIN_DIR] migrate down --to N [--context NAME | --all]\n"
	"       emhost [-c FILE] [-p PLUGIN_DIR] migrate new NAME [--context NAME] [--from-diff [--drop]]\n"
	"       emhost [-c FILE] [-p PLUGIN_DIR] schema diff [--context NAME] [--drop] [--exit-code]\n"
	"\n"
	"  migrate status  every migration of the context's folder (its `migrations` setting):\n"
	"                  applied (when, how long), pending, changed since applied, missing\n"
	"  migrate up      apply the pending migrations (up to N with --to), each recorded in\n"
	"                  the context's emh_migrations table, one run at a time per database\n"
	"  migrate down    undo the applied migrations above N (--to 0: all) with their down files\n"
	"  migrate new     write the next numbered file; --from-diff fills it from the schema diff\n"
	"  schema diff     what would bring the context's database to the entities its services\n"
	"                  register: statements to stdout (columns no entity knows are only\n"
	"                  reported, unless --drop)\n"
	"\n"
	"  --context NAME  the context (default: the default context); --all: every context\n"
	"                  that has a migrations folder\n"
	"  --exit-code     schema diff exits 3 when there are differences\n"
	"\n"
	"exit status: 0 ok, 1 failure (or a changed or missing migration in status), 2 usage\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	char msg[1024]; /* an argument of the command line, cut if longer */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	cli_fail("%s", msg);
	fputs("emhost: try 'emhost migrate --help'\n", stderr);
	return EXIT_USAGE;
}

/* Log lines name paths and values from outside: cleaned (cli_clean). */
static void log_sink(void *ud, int level, const char *context, const char *msg)
{
	(void)ud;
	const char *lv = level <= EMH_LOG_ERROR ? "error" : level == EMH_LOG_WARN ? "warning" : "info";
	char *cm = cli_clean(msg), *cc = context ? cli_clean(context) : NULL;
	if (cc)
		fprintf(stderr, "emhost: %s: context '%s': %s\n", lv, cc, cm ? cm : "(out of memory)");
	else
		fprintf(stderr, "emhost: %s: %s\n", lv, cm ? cm : "(out of memory)");
	free(cm);
	free(cc);
}

/* The context's migrations folder, cleaned for the terminal; the caller frees. */
static char *folder_of(emh_host *h, const char *name)
{
	return cli_clean(emh_host_context_setting(h, name, "migrations"));
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * An option that takes the next word as its argument: -c, -p, and the long
 * options of parse() with an argument, also abbreviated as getopt_long
 * allows ("--cont main").  Without them here, "emhost --context main
 * migrate status" took "main" for the command (found by review).
 */
static bool takes_argument(const char *a)
{
	static const char *const with_arg[] = { "config", "plugin-dir", "context", "to", NULL };
	if (strcmp(a, "-c") == 0 || strcmp(a, "-p") == 0)
		return true;
	if (strncmp(a, "--", 2) != 0 || !a[2] || strchr(a, '='))
		return false;
	for (const char *const *o = with_arg; *o; o++)
		if (strncmp(*o, a + 2, strlen(a + 2)) == 0)
			return true;
	return false;
}

bool cli_is_migrate(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (takes_argument(a)) {
			i++;
			continue;
		}
		if (a[0] == '-' && strcmp(a, "--") != 0)
			continue;
		if (strcmp(a, "--") == 0 && ++i >= argc)
			return false;
		a = argv[i];
		return strcmp(a, "migrate") == 0 || strcmp(a, "schema") == 0;
	}
	return false;
}

/* What the command line asked for. */
typedef struct cli_opts {
	const char *config, *plugin_dir, *context;
	bool all, from_diff, drop, exit_code, have_to;
	long long to;
	const char *words[4]; /* "migrate", "up", NAME ... */
	int nwords;
} cli_opts;

/* ---- the contexts a command runs on ---- */

/* The names asked for (--context, --all: those with a migrations folder, else the default). */
static int pick_contexts(emh_host *h, const cli_opts *o, bool need_folder, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!o->all) {
		const char *name = o->context ? o->context : emh_host_default_context(h);
		if (!name || !emh_host_context_driver(h, name))
			return cli_fail("no context '%s'", name ? name : "(default)");
		char **v = calloc(1, sizeof *v);
		if (!v || !(v[0] = strdup(name))) {
			free(v);
			return cli_fail("out of memory");
		}
		*out = v;
		*n = 1;
		return 0;
	}
	emh_context_info *ci;
	size_t nc;
	emh_error err;
	if (emh_host_contexts(h, &ci, &nc, &err))
		return cli_fail("%s", err.message);
	char **v = calloc(nc ? nc : 1, sizeof *v);
	size_t k = 0;
	for (size_t i = 0; v && i < nc; i++) {
		if (need_folder && !emh_host_context_setting(h, ci[i].name, "migrations")) {
			printf("context %s: no migrations folder (skipped)\n", ci[i].name);
			continue;
		}
		if (!(v[k] = strdup(ci[i].name)))
			break;
		k++;
	}
	emh_context_info_free(ci, nc);
	if (!v)
		return cli_fail("out of memory");
	*out = v;
	*n = k;
	return 0;
}

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- migrate status ---- */

static const char *state_name(int s)
{
	switch (s) {
	case EMH_MIGRATION_APPLIED: return "applied";
	case EMH_MIGRATION_PENDING: return "pending";
	case EMH_MIGRATION_CHANGED: return "CHANGED";
	case EMH_MIGRATION_MISSING: return "MISSING";
	default: return "?";
	}
}

static void print_when(emh_time t)
{
	time_t s = (time_t)(t / 1000000);
	struct tm tm;
	char buf[32];
	gmtime_r(&s, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
	printf("  %s UTC", buf);
}

/* One context's status; 1 when it cannot be read or history and folder disagree. */
static int status_one(emh_host *h, const char *name)
{
	emh_migration *v;
	size_t n;
	emh_error err;
	int64_t t0 = now_ms();
	if (emh_migrate_status(h, name, &v, &n, &err) != 0) {
		printf("context %s: error\n", name);
		return cli_fail("%s", err.message);
	}
	size_t applied = 0, pending = 0, changed = 0, missing = 0;
	size_t w = 4;
	for (size_t i = 0; i < n; i++) {
		applied += v[i].state == EMH_MIGRATION_APPLIED;
		pending += v[i].state == EMH_MIGRATION_PENDING;
		changed += v[i].state == EMH_MIGRATION_CHANGED;
		missing += v[i].state == EMH_MIGRATION_MISSING;
		size_t l = (size_t)snprintf(NULL, 0, "%04lld_%s", (long long)v[i].number, v[i].name);
		w = l > w ? l : w;
	}
	char *folder = folder_of(h, name);
	printf("context %s (%s, folder %s): %zu applied, %zu pending", name, emh_host_context_driver(h, name),
	       folder ? folder : "(out of memory)", applied, pending);
	free(folder);
	if (changed)
		printf(", %zu changed since applied", changed);
	if (missing)
		printf(", %zu missing", missing);
	printf(" (%lld ms)\n", (long long)(now_ms() - t0));
	for (size_t i = 0; i < n; i++) {
		char label[160];
		snprintf(label, sizeof label, "%04lld_%s", (long long)v[i].number, v[i].name);
		printf("  %-*s  %-7s", (int)w, label, state_name(v[i].state));
		if (v[i].state != EMH_MIGRATION_PENDING) {
			print_when(v[i].applied_at);
			printf("  (%lld ms)", (long long)(v[i].duration_us / 1000));
		}
		if (v[i].state == EMH_MIGRATION_CHANGED)
			printf("  file %s now has checksum %.12s, %.12s was applied", v[i].file, v[i].checksum,
			       v[i].recorded);
		if (v[i].state == EMH_MIGRATION_MISSING)
			printf("  no file has this number");
		printf("\n");
	}
	emh_migrations_free(v, n);
	return changed || missing ? 1 : 0;
}

/* ---- migrate up / down ---- */

static void progress(void *ud, const char *context, const emh_migration *m, int event, int64_t us)
{
	bool up = *(const bool *)ud;
	(void)context;
	if (event == EMH_MIGRATE_START) {
		printf("  %s %s ... ", up ? "applying" : "undoing", up ? m->file : m->down_file);
		fflush(stdout);
	} else {
		printf("%s (%lld ms)\n", up ? "applied" : "undone", (long long)(us / 1000));
	}
}

static int run_one(emh_host *h, const char *name, const cli_opts *o, bool up)
{
	emh_migrate_opts mo = {.to = o->have_to ? o->to : 0, .progress = progress, .ud = &up};
	size_t done = 0;
	emh_error err;
	int64_t t0 = now_ms();
	char *folder = folder_of(h, name);
	printf("context %s (%s, folder %s):\n", name, emh_host_context_driver(h, name),
	       folder ? folder : "(out of memory)");
	free(folder);
	fflush(stdout);
	int rc = up ? emh_migrate_up(h, name, &mo, &done, &err) : emh_migrate_down(h, name, &mo, &done, &err);
	if (rc) {
		printf("FAILED\ncontext %s: %zu migration%s %s before the failure (%lld ms)\n", name, done,
		       done == 1 ? "" : "s", up ? "applied" : "undone", (long long)(now_ms() - t0));
		return cli_fail("%s", err.message);
	}
	if (done == 0)
		printf("context %s: nothing to %s (%lld ms)\n", name, up ? "apply, up to date" : "undo",
		       (long long)(now_ms() - t0));
	else
		printf("context %s: %zu migration%s %s in %lld ms\n", name, done, done == 1 ? "" : "s",
		       up ? "applied" : "undone", (long long)(now_ms() - t0));
	return 0;
}

static int cmd_run(emh_host *h, const cli_opts *o, bool up)
{
	char **names;
	size_t n;
	if (pick_contexts(h, o, true, &names, &n))
		return 1;
	int status = 0;
	/* With several contexts, nothing runs while one of them is in a bad state. */
	if (n > 1) {
		for (size_t i = 0; i < n; i++) {
			emh_migration *v;
			size_t nv;
			emh_error err;
			if (emh_migrate_status(h, names[i], &v, &nv, &err) != 0) {
				status = cli_fail("%s", err.message);
				continue;
			}
			for (size_t k = 0; k < nv; k++)
				if (v[k].state == EMH_MIGRATION_CHANGED || v[k].state == EMH_MIGRATION_MISSING) {
					status = cli_fail("context '%s': migration %04lld_%s is %s: nothing runs in any context",
						      names[i], (long long)v[k].number, v[k].name,
						      v[k].state == EMH_MIGRATION_CHANGED ? "changed since it was applied"
											   : "applied but its file is missing");
					break;
				}
			emh_migrations_free(v, nv);
		}
	}
	for (size_t i = 0; i < n && status == 0; i++)
		status = run_one(h, names[i], o, up);
	free_names(names, n);
	return status;
}

/* ---- schema diff, migrate new ---- */

/* The diff of the context, after loading the configured services (which
 * register their entities) with every context's schema mode set to none. */
static int load_diff(emh_host *h, const char *name, const cli_opts *o, emh_schema_diff **out)
{
	emh_context_info *ci;
	size_t nc;
	emh_error err;
	*out = NULL;
	if (emh_host_contexts(h, &ci, &nc, &err))
		return cli_fail("%s", err.message);
	for (size_t i = 0; i < nc; i++)
		emh_host_set_schema_mode(h, ci[i].name, "none", NULL);
	emh_context_info_free(ci, nc);
	emh_services *svcs = NULL;
	int status = 0;
	if (emh_services_new(h, &svcs, &err) != 0 || emh_services_load(svcs, &err) != 0)
		status = cli_fail("loading the services: %s", err.message);
	if (!status && emh_schema_diff_new(h, name, o->drop ? EMH_DIFF_DROP : 0, out, &err) != 0)
		status = cli_fail("%s", err.message);
	emh_services_free(svcs);
	return status;
}

static int cmd_diff(emh_host *h, const cli_opts *o)
{
	const char *name = o->context ? o->context : emh_host_default_context(h);
	if (!name || !emh_host_context_driver(h, name))
		return cli_fail("no context '%s'", name ? name : "(default)");
	emh_schema_diff *d;
	if (load_diff(h, name, o, &d))
		return 1;
	int status = 0;
	if (!emh_schema_diff_differs(d) && emh_schema_diff_count(d) == 0) {
		printf("-- context %s: the database matches the entities\n", name);
	} else {
		const char *script = emh_schema_diff_script(d);
		if (!script) {
			emh_schema_diff_free(d);
			return cli_fail("out of memory");
		}
		fputs(script, stdout);
		for (size_t i = 0; i < emh_schema_diff_count(d); i++) {
			const emh_schema_change *c = emh_schema_diff_at(d, i);
			/* JSON has no comments: the notes go to stderr */
			if (c->note && script[0] == '[')
				fprintf(stderr, "emhost: note: %s: %s\n", c->table, c->note);
		}
		if (o->exit_code && emh_schema_diff_differs(d))
			status = 3;
	}
	emh_schema_diff_free(d);
	return status;
}

static int cmd_new(emh_host *h, const cli_opts *o)
{
	const char *name = o->context ? o->context : emh_host_default_context(h);
	if (!name || !emh_host_context_driver(h, name))
		return cli_fail("no context '%s'", name ? name : "(default)");
	emh_schema_diff *d = NULL;
	const char *text = NULL;
	if (o->from_diff) {
		if (load_diff(h, name, o, &d))
			return 1;
		if (!emh_schema_diff_differs(d)) {
			printf("context %s: the database matches the entities: no migration written\n", name);
			emh_schema_diff_free(d);
			return 0;
		}
		if (!(text = emh_schema_diff_script(d))) {
			emh_schema_diff_free(d);
			return cli_fail("out of memory");
		}
	}
	char path[4096];
	emh_error err;
	int status = 0;
	if (emh_migrate_create(h, name, o->words[2], text, path, sizeof path, &err) != 0)
		status = cli_fail("%s", err.message);
	else
		printf("%s\n", path);
	emh_schema_diff_free(d);
	return status;
}

/* ---- the command line ---- */

static int parse(int argc, char **argv, cli_opts *o)
{
	enum { OPT_CONTEXT = 256, OPT_ALL, OPT_TO, OPT_FROM_DIFF, OPT_DROP, OPT_EXIT_CODE };
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},      {"plugin-dir", required_argument, NULL, 'p'},
		{"context", required_argument, NULL, OPT_CONTEXT}, {"all", no_argument, NULL, OPT_ALL},
		{"to", required_argument, NULL, OPT_TO},       {"from-diff", no_argument, NULL, OPT_FROM_DIFF},
		{"drop", no_argument, NULL, OPT_DROP},         {"exit-code", no_argument, NULL, OPT_EXIT_CODE},
		{"help", no_argument, NULL, 'h'},              {NULL, 0, NULL, 0},
	};
	int ch;
	char *end;
	memset(o, 0, sizeof *o);
	o->config = getenv("EMH_CONFIG");
	if (o->config && !*o->config)
		o->config = NULL;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:p:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 'p': o->plugin_dir = optarg; break;
		case OPT_CONTEXT: o->context = optarg; break;
		case OPT_ALL: o->all = true; break;
		case OPT_FROM_DIFF: o->from_diff = true; break;
		case OPT_DROP: o->drop = true; break;
		case OPT_EXIT_CODE: o->exit_code = true; break;
		case OPT_TO:
			o->to = strtoll(optarg, &end, 10);
			if (!*optarg || *end || o->to < 0)
				return usage_error("--to needs a migration number >= 0, not '%s'", optarg);
			o->have_to = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return -1;
		case ':':
			return usage_error("option '%s' needs an argument", argv[optind - 1]);
		default:
			return optopt ? usage_error("unknown option '-%c'", optopt)
				      : usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	for (int i = optind; i < argc; i++) {
		if (o->nwords == 4)
			return usage_error("unexpected argument '%s'", argv[i]);
		o->words[o->nwords++] = argv[i];
	}
	if (o->all && o->context)
		return usage_error("--context and --all exclude each other");
	const char *w0 = o->words[0], *w1 = o->nwords > 1 ? o->words[1] : NULL;
	if (strcmp(w0, "schema") == 0) {
		if (!w1 || strcmp(w1, "diff") != 0)
			return usage_error("schema takes one subcommand: diff");
		if (o->nwords > 2)
			return usage_error("unexpected argument '%s'", o->words[2]);
		if (o->all || o->have_to || o->from_diff)
			return usage_error("schema diff takes --context, --drop and --exit-code");
		return 0;
	}
	if (!w1)
		return usage_error("migrate needs a subcommand: status, up, down or new");
	bool st = strcmp(w1, "status") == 0, up = strcmp(w1, "up") == 0, down = strcmp(w1, "down") == 0,
	     nw = strcmp(w1, "new") == 0;
	if (!st && !up && !down && !nw)
		return usage_error("unknown migrate subcommand '%s' (status, up, down, new)", w1);
	if (o->nwords > (nw ? 3 : 2))
		return usage_error("unexpected argument '%s'", o->words[nw ? 3 : 2]);
	if (nw && o->nwords < 3)
		return usage_error("migrate new needs the migration's name");
	if (down && !o->have_to)
		return usage_error("migrate down needs --to N (--to 0 undoes every migration)");
	if ((st || nw) && o->have_to)
		return usage_error("--to is for up and down");
	if (nw && o->all)
		return usage_error("migrate new writes into one context's folder: use --context");
	if (!nw && o->from_diff)
		return usage_error("--from-diff is for migrate new");
	if (o->drop && !o->from_diff)
		return usage_error("--drop is for schema diff and migrate new --from-diff");
	if (o->exit_code)
		return usage_error("--exit-code is for schema diff");
	return 0;
}

int cli_migrate_main(int argc, char **argv)
{
	cli_opts o;
	int rc = parse(argc, argv, &o);
	if (rc)
		return rc < 0 ? 0 : rc;
	emh_host_opts ho = {
		.config_path = o.config,
		.plugin_dir = o.plugin_dir,
		.log = log_sink,
		.log_level = EMH_LOG_WARN,
	};
	emh_host *h = NULL;
	emh_error err;
	if (emh_host_new(&ho, &h, &err) != 0)
		return cli_fail("%s", *err.message ? err.message : emh_strerror(err.code));
	int status;
	const char *w1 = o.words[1];
	if (strcmp(o.words[0], "schema") == 0) {
		status = cmd_diff(h, &o);
	} else if (strcmp(w1, "status") == 0) {
		char **names;
		size_t n;
		status = pick_contexts(h, &o, true, &names, &n);
		for (size_t i = 0; i < n; i++)
			if (status_one(h, names[i]))
				status = 1; /* the other contexts are still shown */
		free_names(names, n);
	} else if (strcmp(w1, "new") == 0) {
		status = cmd_new(h, &o);
	} else {
		status = cmd_run(h, &o, strcmp(w1, "up") == 0);
	}
	emh_host_free(h);
	if (fflush(stdout) != 0)
		return cli_fail("cannot write the output");
	return status;
}
