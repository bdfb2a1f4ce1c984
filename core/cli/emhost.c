/* SPDX-License-Identifier: MIT */
/*
 * core/cli/emhost.c: the emhost tool: check-config, plugins, contexts, reload
 * (public API only; the server section is read by the daemon's own
 * srvconf.c, so that check-config refuses what emhostd refuses); migrate and
 * schema are in migrate.c.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/driver.h>
#include <emhost/emhost.h>
#include <emhost/service.h>

#include "../daemon/srvconf.h"

#include "cli.h"

enum { EXIT_USAGE = 2 };

static const char usage_text[] =
	"usage: emhost [-c FILE] [-p PLUGIN_DIR] COMMAND\n"
	"\n"
	"commands:\n"
	"  check-config   validate everything emhostd validates before it serves (the\n"
	"                 configuration, the plugins, the service modules with their\n"
	"                 needs and remaps, the server section and listen address, and\n"
	"                 that every required database answers) and print every\n"
	"                 context's effective settings with where each came from\n"
	"                 (secrets masked); exit 1 with emhostd's message when invalid\n"
	"  plugins        list the loaded drivers (name, version, ABI, capabilities, file)\n"
	"                 and every refused plugin file with the reason\n"
	"  plugins --probe  the same, each plugin loaded in a process of its own: a\n"
	"                 plugin whose code crashes or exits while loading is listed as\n"
	"                 refused instead of ending emhost (use it when emhost dies\n"
	"                 loading plugins)\n"
	"  contexts       list the contexts with their driver, which is the default, the\n"
	"                 connections each holds (open, idle, in use) and whether each is\n"
	"                 reachable, each one's read replicas (URL masked, connections;\n"
	"                 not pinged), then the host's connection budget; exit 1 when\n"
	"                 one is not reachable\n"
	"  reload         make the running emhostd reload its configuration (SIGHUP to the\n"
	"                 pid in --pid-file); it logs what changed or why it refused\n"
	"  migrate        status, up, down, new: the context's migrations (emhost migrate --help)\n"
	"  schema diff    what would bring a context's database to its entities\n"
	"\n"
	"options:\n"
	"  -c, --config FILE       configuration file (default: $EMH_CONFIG, else none:\n"
	"                          contexts come from EMH_CONTEXT_* variables only)\n"
	"  -p, --plugin-dir DIR    load driver plugins from DIR (overrides plugin_dir)\n"
	"      --offline           check-config without connecting to any database\n"
	"                          (required contexts are not pinged): for CI\n"
	"      --pid-file FILE     emhostd's pid file, for reload (default " EMH_PID_FILE ")\n"
	"  -h, --help              show this help\n"
	"      --version           show the version\n"
	"\n"
	"exit status: 0 ok, 1 failure, 2 usage error\n";

/* ---- log lines: held back while the host starts, so each command decides ---- */

struct logbuf {
	pthread_mutex_t mu;
	char **lines;
	size_t n;
	bool direct; /* print at once instead of holding */
};

/* Log text names files and values from outside: no terminal escape reaches the terminal. */
#define CLEAN_MAX (4 * EMH_ERROR_MSG_MAX)

static void log_print(int level, const char *context, const char *msg)
{
	const char *lv = level <= EMH_LOG_ERROR ? "error" : level == EMH_LOG_WARN ? "warning" : "info";
	char needle[EMH_ERROR_CTX_MAX + 4], cmsg[CLEAN_MAX], cctx[4 * EMH_ERROR_CTX_MAX];
	msg = emh_text_clean(msg, cmsg, sizeof cmsg);
	context = context ? emh_text_clean(context, cctx, sizeof cctx) : NULL;
	snprintf(needle, sizeof needle, "'%s'", context ? context : "");
	if (context && !strstr(msg, needle))
		fprintf(stderr, "emhost: %s: context '%s': %s\n", lv, context, msg);
	else
		fprintf(stderr, "emhost: %s: %s\n", lv, msg);
}

static void log_sink(void *ud, int level, const char *context, const char *msg)
{
	struct logbuf *lb = ud;
	pthread_mutex_lock(&lb->mu);
	if (lb->direct) {
		log_print(level, context, msg);
	} else {
		char line[CLEAN_MAX + 4 * EMH_ERROR_CTX_MAX + 64], cmsg[CLEAN_MAX], cctx[4 * EMH_ERROR_CTX_MAX];
		const char *lv = level <= EMH_LOG_ERROR ? "error" : level == EMH_LOG_WARN ? "warning" : "info";
		msg = emh_text_clean(msg, cmsg, sizeof cmsg);
		context = context ? emh_text_clean(context, cctx, sizeof cctx) : NULL;
		if (context)
			snprintf(line, sizeof line, "emhost: %s: context '%s': %s", lv, context, msg);
		else
			snprintf(line, sizeof line, "emhost: %s: %s", lv, msg);
		char **v = realloc(lb->lines, (lb->n + 1) * sizeof *v);
		if (v) {
			lb->lines = v;
			if ((v[lb->n] = strdup(line)))
				lb->n++;
		}
	}
	pthread_mutex_unlock(&lb->mu);
}

/* Print (or drop) the held lines and print later ones at once. */
static void log_release(struct logbuf *lb, bool print)
{
	pthread_mutex_lock(&lb->mu);
	for (size_t i = 0; i < lb->n; i++) {
		if (print)
			fprintf(stderr, "%s\n", lb->lines[i]);
		free(lb->lines[i]);
	}
	free(lb->lines);
	lb->lines = NULL;
	lb->n = 0;
	lb->direct = true;
	pthread_mutex_unlock(&lb->mu);
}

/* ---- commands ---- */

char *cli_clean(const char *s)
{
	size_t cap = 4 * strlen(s ? s : "") + 1; /* each byte becomes at most \xNN */
	char *out = malloc(cap);
	return out ? (char *)emh_text_clean(s, out, cap) : NULL;
}

int cli_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *msg = n >= 0 ? malloc((size_t)n + 1) : NULL;
	if (msg) {
		va_start(ap, fmt);
		vsnprintf(msg, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	fputs("emhost: ", stderr);
	/* line by line: a message of several lines keeps them */
	for (char *line = msg, *next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		char *c = cli_clean(line);
		fprintf(stderr, "%s%s", c ? c : "(out of memory)", next ? "\n" : "");
		free(c);
	}
	fputs(msg ? "\n" : "out of memory\n", stderr);
	free(msg);
	return 1;
}

/* Belt and braces: the host masks secrets; never print a password even if it did not. */
static const char *shown(const emh_setting_info *s)
{
	if (strcmp(s->key, "password") == 0 || strstr(s->key, "secret"))
		return "********";
	return s->value ? s->value : "";
}

/*
 * What emhostd checks between emh_host_new and serving, in its order: the
 * services list (modules, needs, remaps; nothing initialised) and the
 * server section with its listen address, into *o.  0 or 1.
 */
static int check_services_and_server(emh_host *h, emhd_opts *o, unsigned *shutdown_ms)
{
	emh_services *svcs = NULL;
	emh_error err;
	if (emh_services_new(h, &svcs, &err) != 0 || emh_services_check(svcs, &err) != 0) {
		emh_services_free(svcs);
		return cli_fail("%s", err.message);
	}
	emh_services_free(svcs);
	char why[512];
	if (emhd_conf_read(h, NULL, o, shutdown_ms, why, sizeof why) != 0)
		return cli_fail("%s", why);
	return 0;
}

static int cmd_check_config(emh_host *h, const char *path, bool offline)
{
	const emh_driver_info *drv;
	size_t ndrv = emh_host_drivers(h, &drv);
	emh_context_info *ci;
	size_t n, nrequired = 0;
	emh_error err;
	emhd_opts o;
	unsigned shutdown_ms;

	if (check_services_and_server(h, &o, &shutdown_ms) != 0)
		return 1;
	if (emh_host_contexts(h, &ci, &n, &err))
		return cli_fail("%s", err.message);
	char *cpath = cli_clean(path ? path : "(no file: environment only)");
	printf("configuration: %s\n", cpath ? cpath : "(out of memory)");
	free(cpath);
	printf("drivers:");
	for (size_t i = 0; i < ndrv; i++)
		printf("%s %s %s", i ? "," : "", drv[i].name, drv[i].version);
	printf("%s\n", ndrv ? "" : " none");
	printf("server: listen %s, %u thread%s, max body %zu bytes, shutdown timeout %u ms\n", o.listen, o.threads,
	       o.threads == 1 ? "" : "s", o.max_body, shutdown_ms);
	const char *def = emh_host_default_context(h);
	printf("default context: %s\n", def ? def : "(none)");
	for (size_t i = 0; i < n; i++) {
		const emh_context_info *c = &ci[i];
		size_t kw = 3, vw = 5;
		nrequired += c->required;
		/* a required context was pinged by emh_host_new: it answered, or we would not be here */
		printf("\ncontext %s (driver %s%s%s)\n", c->name, c->driver, c->is_default ? ", default" : "",
		       !c->required ? "" : offline ? ", required, not contacted" : ", required, reachable");
		for (size_t j = 0; j < c->nsettings; j++) {
			char *v = cli_clean(shown(&c->settings[j]));
			size_t kl = strlen(c->settings[j].key), vl = v ? strlen(v) : 0;
			free(v);
			kw = kl > kw ? kl : kw;
			vw = vl > vw ? vl : vw;
		}
		if (vw > 48)
			vw = 48;
		printf("  %-*s  %-*s  %s\n", (int)kw, "KEY", (int)vw, "VALUE", "ORIGIN");
		for (size_t j = 0; j < c->nsettings; j++) {
			/* values and origins come from the environment and file names: cleaned */
			char *k = cli_clean(c->settings[j].key), *v = cli_clean(shown(&c->settings[j]));
			char *org = cli_clean(c->settings[j].origin);
			if (!k || !v || !org) {
				free(k), free(v), free(org);
				emh_context_info_free(ci, n);
				return cli_fail("out of memory");
			}
			printf("  %-*s  %-*s  %s\n", (int)kw, k, (int)vw, v, org);
			free(k), free(v), free(org);
		}
	}
	printf("\nconfiguration ok: %zu context%s, %zu driver%s", n, n == 1 ? "" : "s", ndrv, ndrv == 1 ? "" : "s");
	if (nrequired)
		printf("; required databases %s", offline ? "not contacted (--offline)" : "reachable");
	printf("\n");
	emh_context_info_free(ci, n);
	return 0;
}

/* One column of `plugins`: text from a plugin file (its name, version, file name, dlerror()), cleaned. */
#define COL_MAX 1024

static void print_plugins(const emh_driver_info *drv, size_t ndrv, const emh_refused_info *ref, size_t nref)
{
	size_t nw = 4, vw = 7, cw = 12;
	char caps[512], name[COL_MAX], version[COL_MAX], file[COL_MAX], reason[4 * 512];

	for (size_t i = 0; i < ndrv; i++) {
		size_t l = strlen(emh_text_clean(drv[i].name, name, sizeof name));
		nw = l > nw ? l : nw;
		l = strlen(emh_text_clean(drv[i].version, version, sizeof version));
		vw = l > vw ? l : vw;
		l = strlen(emh_caps_string(drv[i].caps, caps, sizeof caps));
		cw = l > cw ? l : cw;
	}
	if (ndrv) {
		printf("%-*s  %-*s  %-5s  %-*s  %s\n", (int)nw, "NAME", (int)vw, "VERSION", "ABI", (int)cw, "CAPABILITIES",
		       "FILE");
		for (size_t i = 0; i < ndrv; i++) {
			char abi[24];
			snprintf(abi, sizeof abi, "%u.%u", drv[i].abi_major, drv[i].abi_minor);
			printf("%-*s  %-*s  %-5s  %-*s  %s\n", (int)nw, emh_text_clean(drv[i].name, name, sizeof name),
			       (int)vw, emh_text_clean(drv[i].version, version, sizeof version), abi, (int)cw,
			       emh_caps_string(drv[i].caps, caps, sizeof caps), emh_text_clean(drv[i].file, file, sizeof file));
		}
	} else {
		printf("no drivers loaded\n");
	}
	if (nref) {
		printf("\nrefused:\n");
		for (size_t i = 0; i < nref; i++)
			printf("  %s: %s\n", emh_text_clean(ref[i].file, file, sizeof file),
			       emh_text_clean(ref[i].reason, reason, sizeof reason));
	}
}

static int cmd_plugins(emh_host *h)
{
	const emh_driver_info *drv;
	const emh_refused_info *ref;
	size_t ndrv = emh_host_drivers(h, &drv), nref = emh_host_refused(h, &ref);
	print_plugins(drv, ndrv, ref, nref);
	return 0;
}

/* What emh_host_probe_plugins reported, copied (its strings are borrowed for the call). */
struct probed {
	emh_driver_info *drv;
	size_t ndrv;
	emh_refused_info *ref;
	size_t nref;
	bool oom;
};

static char *dup_or(struct probed *p, const char *s)
{
	char *d = strdup(s ? s : "");
	p->oom |= !d;
	return d;
}

static void on_probed(void *ud, const char *file, const emh_driver_info *driver, const char *refused)
{
	struct probed *p = ud;
	if (driver) {
		emh_driver_info *v = realloc(p->drv, (p->ndrv + 1) * sizeof *v);
		if (!v) {
			p->oom = true;
			return;
		}
		p->drv = v;
		v[p->ndrv] = *driver;
		v[p->ndrv].name = dup_or(p, driver->name);
		v[p->ndrv].version = dup_or(p, driver->version);
		v[p->ndrv].file = dup_or(p, file);
		p->ndrv++;
	} else {
		emh_refused_info *v = realloc(p->ref, (p->nref + 1) * sizeof *v);
		if (!v) {
			p->oom = true;
			return;
		}
		p->ref = v;
		v[p->nref].file = dup_or(p, file);
		v[p->nref].reason = dup_or(p, refused);
		p->nref++;
	}
}

static int cmd_plugins_probe(const emh_host_opts *opts, struct logbuf *lb)
{
	struct probed p = {0};
	emh_error err;
	emh_error_clear(&err);
	int rc = emh_host_probe_plugins(opts, on_probed, &p, &err);
	/* the refusals are listed below; other lines only when the probe itself failed */
	log_release(lb, rc != 0);
	if (rc)
		cli_fail("%s", *err.message ? err.message : emh_strerror(rc));
	else if (p.oom)
		rc = cli_fail("out of memory");
	else
		print_plugins(p.drv, p.ndrv, p.ref, p.nref);
	for (size_t i = 0; i < p.ndrv; i++) {
		free((char *)p.drv[i].name);
		free((char *)p.drv[i].version);
		free((char *)p.drv[i].file);
	}
	for (size_t i = 0; i < p.nref; i++) {
		free((char *)p.ref[i].file);
		free((char *)p.ref[i].reason);
	}
	free(p.drv);
	free(p.ref);
	return rc ? 1 : 0;
}

/*
 * Context name's replicas, one line each under its row: where (passwords
 * masked), its pool's connections, and what this process knows of it (not
 * pinged: a fresh process has seen no failure; emhostd's /_emhost/health
 * has the running state).
 */
static void print_replicas(const emh_replica_info *reps, size_t nr, const char *name)
{
	for (size_t j = 0; j < nr; j++) {
		const emh_replica_info *ri = &reps[j];
		if (strcmp(ri->context, name) != 0)
			continue;
		printf("  replica %u  %s  open %u idle %u in-use %u  %s%s%s\n", ri->index, ri->where,
		       ri->in_use + ri->idle, ri->idle, ri->in_use, ri->up ? "not pinged" : "down: ",
		       ri->up ? "" : ri->last_error, ri->lagging ? " (lagging)" : "");
	}
}

/*
 * Each context pinged first, then listed with the connections it holds
 * (this process's: the ping's, now idle) and its read replicas, and the
 * host's budget last.
 */
static int cmd_contexts(emh_host *h)
{
	emh_context_info *ci;
	size_t n;
	emh_error err;
	int status = 0;
	size_t nw = 4, dw = 6;

	if (emh_host_contexts(h, &ci, &n, &err))
		return cli_fail("%s", err.message);
	emh_error *pinged = calloc(n ? n : 1, sizeof *pinged);
	if (!pinged) {
		emh_context_info_free(ci, n);
		return cli_fail("out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		emh_error_clear(&pinged[i]);
		pinged[i].code = emh_host_ping(h, ci[i].name, &pinged[i]);
	}
	emh_context_info_free(ci, n);
	size_t n2;
	if (emh_host_contexts(h, &ci, &n2, &err)) {
		free(pinged);
		return cli_fail("%s", err.message);
	}
	n = n2 < n ? n2 : n;
	emh_replica_info *reps = NULL;
	size_t nr = 0;
	if (emh_host_replicas(h, &reps, &nr, &err)) {
		emh_context_info_free(ci, n2);
		free(pinged);
		return cli_fail("%s", err.message);
	}
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(ci[i].name);
		nw = l > nw ? l : nw;
		l = strlen(ci[i].driver);
		dw = l > dw ? l : dw;
	}
	if (n == 0)
		printf("no contexts\n");
	else
		printf("%-*s  %-*s  %-7s  %4s  %4s  %6s  %s\n", (int)nw, "NAME", (int)dw, "DRIVER", "DEFAULT", "OPEN",
		       "IDLE", "IN-USE", "STATUS");
	for (size_t i = 0; i < n; i++) {
		int rc = pinged[i].code;
		printf("%-*s  %-*s  %-7s  %4u  %4u  %6u  ", (int)nw, ci[i].name, (int)dw, ci[i].driver,
		       ci[i].is_default ? "yes" : "no", ci[i].in_use + ci[i].idle, ci[i].idle, ci[i].in_use);
		if (rc == 0) {
			printf("reachable\n");
		} else {
			char *m = cli_clean(*pinged[i].message ? pinged[i].message : emh_strerror(rc));
			printf("error: %s\n", m ? m : "(out of memory)");
			free(m);
			status = 1;
		}
		print_replicas(reps, nr, ci[i].name);
	}
	free(reps);
	emh_context_info_free(ci, n2);
	free(pinged);
	emh_budget_info bi;
	emh_host_budget(h, &bi, sizeof bi);
	printf("budget: %u of %u connections open, %u of %u file descriptors (max_connections: %s; RLIMIT_NOFILE ",
	       bi.connections, bi.max_connections, bi.fds, bi.max_fds, bi.origin);
	if (bi.nofile < 0)
		printf("unlimited)\n");
	else
		printf("%lld)\n", bi.nofile);
	return status;
}

/*
 * emhost reload: SIGHUP to the emhostd whose pid the file holds.  The pid
 * is checked to be an emhostd first (/proc), so that a stale pid file
 * never signals whatever process got that number since.
 */
static int cmd_reload(const char *pid_file)
{
	FILE *f = fopen(pid_file, "r");
	if (!f)
		return cli_fail("cannot read pid file '%s': %s (is emhostd running with --pid-file?)", pid_file,
			    strerror(errno));
	long pid = 0;
	char extra;
	int n = fscanf(f, "%ld%c", &pid, &extra);
	fclose(f);
	if (n < 1 || pid <= 1)
		return cli_fail("pid file '%s' holds no process id", pid_file);
	char path[64], comm[64] = "";
	snprintf(path, sizeof path, "/proc/%ld/comm", pid);
	if ((f = fopen(path, "r")) != NULL) {
		if (!fgets(comm, sizeof comm, f))
			comm[0] = '\0';
		fclose(f);
		comm[strcspn(comm, "\n")] = '\0';
		if (strcmp(comm, "emhostd") != 0 && strcmp(comm, "lt-emhostd") != 0) /* lt-: libtool's, in a build tree */
			return cli_fail("process %ld of pid file '%s' is '%s', not emhostd (a stale pid file?)", pid,
				    pid_file, comm);
	}
	if (kill((pid_t)pid, SIGHUP) != 0)
		return cli_fail("cannot signal emhostd (pid %ld): %s%s", pid, strerror(errno),
			    errno == EPERM ? " (run as the daemon's user or root)"
			    : errno == ESRCH ? " (a stale pid file?)" : "");
	printf("sent SIGHUP to emhostd (pid %ld): its log says what the reload changed, or why it refused it\n", pid);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "plugin-dir", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "offline", no_argument, NULL, 'O' },
		{ "pid-file", required_argument, NULL, 'P' },
		{ "probe", no_argument, NULL, 'B' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = getenv("EMH_CONFIG"), *plugin_dir = NULL, *pid_file = EMH_PID_FILE;
	bool offline = false, probe = false;
	int ch;

	if (cli_is_migrate(argc, argv))
		return cli_migrate_main(argc, argv);

	if (config && !*config)
		config = NULL;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:p:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			config = optarg;
			break;
		case 'p':
			plugin_dir = optarg;
			break;
		case 'O':
			offline = true;
			break;
		case 'P':
			pid_file = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			printf("emhost %s (driver ABI %u.%u)\n", EMH_VERSION_STRING, EMH_DRIVER_ABI_MAJOR,
			       EMH_DRIVER_ABI_MINOR);
			return 0;
		case 'B':
			probe = true;
			break;
		case ':':
			fprintf(stderr, "emhost: option '%s' needs an argument\n", argv[optind - 1]);
			fputs("emhost: try 'emhost --help'\n", stderr);
			return EXIT_USAGE;
		default:
			if (optopt)
				fprintf(stderr, "emhost: unknown option '-%c'\n", optopt);
			else
				fprintf(stderr, "emhost: unknown option '%s'\n", argv[optind - 1]);
			fputs("emhost: try 'emhost --help'\n", stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fputs("emhost: no command given\n", stderr);
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[optind];
	int (*run)(emh_host *) = NULL;
	bool check = strcmp(cmd, "check-config") == 0;
	bool reload = strcmp(cmd, "reload") == 0;
	if (strcmp(cmd, "plugins") == 0)
		run = cmd_plugins;
	else if (strcmp(cmd, "contexts") == 0)
		run = cmd_contexts;
	else if (!check && !reload) {
		fprintf(stderr, "emhost: unknown command '%s' (commands: check-config, plugins, contexts, reload, migrate, schema)\n",
			cmd);
		return EXIT_USAGE;
	}
	if (optind + 1 < argc) {
		fprintf(stderr, "emhost: unexpected argument '%s' after '%s'\n", argv[optind + 1], cmd);
		return EXIT_USAGE;
	}
	if (offline && !check) {
		fprintf(stderr, "emhost: --offline applies to check-config only\n");
		return EXIT_USAGE;
	}
	if (probe && run != cmd_plugins) {
		fprintf(stderr, "emhost: --probe goes with 'plugins' only\n");
		return EXIT_USAGE;
	}
	if (reload) /* the daemon reads its own configuration: no host here */
		return cmd_reload(pid_file);

	struct logbuf lb = { .mu = PTHREAD_MUTEX_INITIALIZER };
	emh_host_opts opts = {
		.config_path = config,
		.plugin_dir = plugin_dir,
		.log = log_sink,
		.log_ud = &lb,
		.log_level = EMH_LOG_WARN,
		.offline = offline,
	};
	if (probe) {
		int status = cmd_plugins_probe(&opts, &lb);
		pthread_mutex_destroy(&lb.mu);
		if (fflush(stdout) != 0)
			return cli_fail("cannot write the output");
		return status;
	}
	emh_host *h = NULL;
	emh_error err;
	emh_error_clear(&err);
	int rc = emh_host_new(&opts, &h, &err);
	/* `plugins` lists refusals itself; elsewhere they are warnings worth seeing */
	log_release(&lb, rc != 0 || run != cmd_plugins);
	if (rc) {
		cli_fail("%s", *err.message ? err.message : emh_strerror(rc));
		pthread_mutex_destroy(&lb.mu);
		return 1;
	}
	int status = check ? cmd_check_config(h, config, offline) : run(h);
	emh_host_free(h);
	pthread_mutex_destroy(&lb.mu);
	if (fflush(stdout) != 0)
		return cli_fail("cannot write the output");
	return status;
}
