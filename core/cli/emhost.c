/* SPDX-License-Identifier: MIT */
/* core/cli/emhost.c: the emhost tool: check-config, plugins, contexts (public API only). */
#include "config.h"

#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/driver.h>
#include <emhost/emhost.h>

enum { EXIT_USAGE = 2 };

static const char usage_text[] =
	"usage: emhost [-c FILE] [-p PLUGIN_DIR] COMMAND\n"
	"\n"
	"commands:\n"
	"  check-config   validate the configuration, load the plugins and print every\n"
	"                 context's effective settings with where each came from\n"
	"                 (secrets masked); exit 1 when the configuration is invalid\n"
	"  plugins        list the loaded drivers (name, version, ABI, capabilities, file)\n"
	"                 and every refused plugin file with the reason\n"
	"  contexts       list the contexts with their driver, which is the default, the\n"
	"                 connections each holds (open, idle, in use) and whether each is\n"
	"                 reachable, then the host's connection budget; exit 1 when one\n"
	"                 is not reachable\n"
	"\n"
	"options:\n"
	"  -c, --config FILE       configuration file (default: $EMH_CONFIG, else none:\n"
	"                          contexts come from EMH_CONTEXT_* variables only)\n"
	"  -p, --plugin-dir DIR    load driver plugins from DIR (overrides plugin_dir)\n"
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

static void log_print(int level, const char *context, const char *msg)
{
	const char *lv = level <= EMH_LOG_ERROR ? "error" : level == EMH_LOG_WARN ? "warning" : "info";
	char needle[EMH_ERROR_CTX_MAX + 4];
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
		char line[EMH_ERROR_MSG_MAX + 200];
		const char *lv = level <= EMH_LOG_ERROR ? "error" : level == EMH_LOG_WARN ? "warning" : "info";
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

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("emhost: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

/* Belt and braces: the host masks secrets; never print a password even if it did not. */
static const char *shown(const emh_setting_info *s)
{
	if (strcmp(s->key, "password") == 0 || strstr(s->key, "secret"))
		return "********";
	return s->value ? s->value : "";
}

static int cmd_check_config(emh_host *h, const char *path)
{
	const emh_driver_info *drv;
	size_t ndrv = emh_host_drivers(h, &drv);
	emh_context_info *ci;
	size_t n;
	emh_error err;

	if (emh_host_contexts(h, &ci, &n, &err))
		return fail("%s", err.message);
	printf("configuration: %s\n", path ? path : "(no file: environment only)");
	printf("drivers:");
	for (size_t i = 0; i < ndrv; i++)
		printf("%s %s %s", i ? "," : "", drv[i].name, drv[i].version);
	printf("%s\n", ndrv ? "" : " none");
	const char *def = emh_host_default_context(h);
	printf("default context: %s\n", def ? def : "(none)");
	for (size_t i = 0; i < n; i++) {
		const emh_context_info *c = &ci[i];
		size_t kw = 3, vw = 5;
		printf("\ncontext %s (driver %s%s%s)\n", c->name, c->driver, c->is_default ? ", default" : "",
		       c->required ? ", required" : "");
		for (size_t j = 0; j < c->nsettings; j++) {
			size_t kl = strlen(c->settings[j].key), vl = strlen(shown(&c->settings[j]));
			kw = kl > kw ? kl : kw;
			vw = vl > vw ? vl : vw;
		}
		if (vw > 48)
			vw = 48;
		printf("  %-*s  %-*s  %s\n", (int)kw, "KEY", (int)vw, "VALUE", "ORIGIN");
		for (size_t j = 0; j < c->nsettings; j++)
			printf("  %-*s  %-*s  %s\n", (int)kw, c->settings[j].key, (int)vw, shown(&c->settings[j]),
			       c->settings[j].origin ? c->settings[j].origin : "");
	}
	printf("\nconfiguration ok: %zu context%s, %zu driver%s\n", n, n == 1 ? "" : "s", ndrv, ndrv == 1 ? "" : "s");
	emh_context_info_free(ci, n);
	return 0;
}

static int cmd_plugins(emh_host *h)
{
	const emh_driver_info *drv;
	const emh_refused_info *ref;
	size_t ndrv = emh_host_drivers(h, &drv), nref = emh_host_refused(h, &ref);
	size_t nw = 4, vw = 7, cw = 12;
	char caps[512];

	for (size_t i = 0; i < ndrv; i++) {
		size_t l = strlen(drv[i].name);
		nw = l > nw ? l : nw;
		l = strlen(drv[i].version);
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
			printf("%-*s  %-*s  %-5s  %-*s  %s\n", (int)nw, drv[i].name, (int)vw, drv[i].version, abi, (int)cw,
			       emh_caps_string(drv[i].caps, caps, sizeof caps), drv[i].file);
		}
	} else {
		printf("no drivers loaded\n");
	}
	if (nref) {
		printf("\nrefused:\n");
		for (size_t i = 0; i < nref; i++)
			printf("  %s: %s\n", ref[i].file, ref[i].reason);
	}
	return 0;
}

/*
 * Each context pinged first, then listed with the connections it holds
 * (this process's: the ping's, now idle), and the host's budget last.
 */
static int cmd_contexts(emh_host *h)
{
	emh_context_info *ci;
	size_t n;
	emh_error err;
	int status = 0;
	size_t nw = 4, dw = 6;

	if (emh_host_contexts(h, &ci, &n, &err))
		return fail("%s", err.message);
	emh_error *pinged = calloc(n ? n : 1, sizeof *pinged);
	if (!pinged) {
		emh_context_info_free(ci, n);
		return fail("out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		emh_error_clear(&pinged[i]);
		pinged[i].code = emh_host_ping(h, ci[i].name, &pinged[i]);
	}
	emh_context_info_free(ci, n);
	size_t n2;
	if (emh_host_contexts(h, &ci, &n2, &err)) {
		free(pinged);
		return fail("%s", err.message);
	}
	n = n2 < n ? n2 : n;
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
			printf("error: %s\n", *pinged[i].message ? pinged[i].message : emh_strerror(rc));
			status = 1;
		}
	}
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

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "plugin-dir", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = getenv("EMH_CONFIG"), *plugin_dir = NULL;
	int ch;

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
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			printf("emhost %s (driver ABI %u.%u)\n", EMH_VERSION_STRING, EMH_DRIVER_ABI_MAJOR,
			       EMH_DRIVER_ABI_MINOR);
			return 0;
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
	if (strcmp(cmd, "plugins") == 0)
		run = cmd_plugins;
	else if (strcmp(cmd, "contexts") == 0)
		run = cmd_contexts;
	else if (!check) {
		fprintf(stderr, "emhost: unknown command '%s' (commands: check-config, plugins, contexts)\n", cmd);
		return EXIT_USAGE;
	}
	if (optind + 1 < argc) {
		fprintf(stderr, "emhost: unexpected argument '%s' after '%s'\n", argv[optind + 1], cmd);
		return EXIT_USAGE;
	}

	struct logbuf lb = { .mu = PTHREAD_MUTEX_INITIALIZER };
	emh_host_opts opts = {
		.config_path = config,
		.plugin_dir = plugin_dir,
		.log = log_sink,
		.log_ud = &lb,
		.log_level = EMH_LOG_WARN,
	};
	emh_host *h = NULL;
	emh_error err;
	emh_error_clear(&err);
	int rc = emh_host_new(&opts, &h, &err);
	/* `plugins` lists refusals itself; elsewhere they are warnings worth seeing */
	log_release(&lb, rc != 0 || run != cmd_plugins);
	if (rc) {
		fail("%s", *err.message ? err.message : emh_strerror(rc));
		pthread_mutex_destroy(&lb.mu);
		return 1;
	}
	int status = check ? cmd_check_config(h, config) : run(h);
	emh_host_free(h);
	pthread_mutex_destroy(&lb.mu);
	if (fflush(stdout) != 0)
		return fail("cannot write the output");
	return status;
}
