/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/emhostd.c: the emhost daemon.  Loads the configuration, the
 * driver plugins, the contexts and the services, then serves HTTP until
 * SIGTERM or SIGINT, when it stops accepting, lets the requests in flight
 * finish (bounded by server.shutdown_timeout_ms), closes the pools and
 * exits 0.  SIGHUP reloads the configuration (emh_host_reload: contexts,
 * pools, new drivers; services and the server section stay as started)
 * while requests go on.  Under systemd it speaks the notify protocol
 * (READY, RELOADING, STOPPING) and, when stderr is the journal, writes
 * syslog priorities instead of timestamps.
 *
 * Exit status: 0 after a clean stop (requests still queued at the shutdown
 * deadline are answered 503 and do not change that); 3 when a handler was
 * still running at the deadline (plus a short grace): the daemon then
 * exits without closing its pools -- the databases roll back the open
 * transactions when the connections drop.  (A health ping still running
 * then also makes it exit without closing the pools, with status 0.)  A
 * second SIGTERM or SIGINT while stopping ends the process at once (killed
 * by that signal).  1 on a startup failure, 2 on a usage error.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>
#include <emhost/service.h>

#include "httpd.h"
#include "notify.h"
#include "srvconf.h"

#ifndef EMH_CONFIG_FILE
#define EMH_CONFIG_FILE "/usr/local/etc/emhost/emhost.conf"
#endif

#define EXIT_ABANDONED 3

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* syslog priorities of the levels: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */
static const int level_prio[] = {3, 4, 6, 7};

/* Where log lines go: stderr, which may be the journal. */
typedef struct log_sink {
	bool journal;
} log_sink;

/*
 * Is stderr the journal?  systemd sets JOURNAL_STREAM to "DEV:INODE" of
 * the stream it connected; stderr may have been redirected since (a shell
 * in between), hence the comparison with stderr itself.
 */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/*
 * One line per message on stderr: "2024-05-01T12:00:00.123Z emhostd: info
 * [context] req=ID: message", the request's id when a request is being
 * handled on this thread.  To the journal: "<6>info [context] ..." -- the
 * priority as a syslog prefix, and no timestamp (the journal has its own).
 */
static void log_stderr(void *ud, int level, const char *context, const char *msg)
{
	const log_sink *sink = ud;
	/* a cleaned string is at most 4 bytes per input byte (\xNN); a request id is visible ASCII */
	char clean[4 * 2048 + 8], ctx[4 * 64 + 8], cctx[sizeof ctx + 4] = "", req[sizeof " req=:" + 128] = "";
	msg = emh_text_clean(msg, clean, sizeof clean);
	if (context)
		snprintf(cctx, sizeof cctx, " [%s]", emh_text_clean(context, ctx, sizeof ctx));
	const char *rid = emhd_request_id();
	if (rid)
		snprintf(req, sizeof req, " req=%s:", rid);
	bool known = level >= 0 && level <= EMH_LOG_DEBUG;
	const char *lv = known ? level_names[level] : "log";
	if (sink && sink->journal) {
		fprintf(stderr, "<%d>%s%s%s %s\n", known ? level_prio[level] : 6, lv, cctx, req, msg);
		return;
	}
	struct timespec ts;
	struct tm tm;
	char when[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ emhostd: %s%s%s %s\n", when, ts.tv_nsec / 1000000, lv, cctx, req, msg);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: emhostd [-c FILE] [options]\n"
		"  -c, --config FILE      configuration file (libconfig); default " EMH_CONFIG_FILE "\n"
		"  -l, --listen ADDR      listen address, overrides server.listen (host:port, [v6]:port)\n"
		"  -p, --plugin-dir DIR   driver plugin directory, overrides plugin_dir\n"
		"      --ready-file FILE  write the server's URL to FILE once it accepts requests\n"
		"      --pid-file FILE    write the daemon's pid to FILE (for emhost reload)\n"
		"  -v, --verbose          more log output (repeat for debug)\n"
		"  -q, --quiet            only warnings and errors\n"
		"  -h, --help             this help\n"
		"      --version          print the version and exit\n"
		"SIGHUP reloads the configuration (contexts, pools, new driver plugins) without a restart.\n"
		"SIGTERM/SIGINT stop it gracefully within server.shutdown_timeout_ms; a second one at once.\n"
		"exit status: 0 stopped cleanly, 1 startup failure, 2 usage, 3 handlers abandoned at the\n"
		"shutdown deadline (pools not closed)\n");
}

/* Write line to path through a temporary file, so that a reader never sees half of it. */
static int write_file(const char *path, const char *line)
{
	char tmp[PATH_MAX];
	int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof tmp) {
		errno = ENAMETOOLONG; /* a cut name would be some other file */
		return -1;
	}
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "%s\n", line);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* The files to remove on the way out. */
typedef struct run_files {
	const char *ready;
	const char *pid;
} run_files;

static void run_files_remove(const run_files *rf)
{
	if (rf->ready)
		unlink(rf->ready);
	if (rf->pid)
		unlink(rf->pid);
}

/* The first signal started a graceful stop; a second one ends it now. */
struct second_signal {
	sigset_t sigs;
	run_files files;
	const log_sink *sink;
};

static void *second_signal_main(void *arg)
{
	struct second_signal *ss = arg;
	int sig = 0;
	/* SIGHUP stays blocked while stopping: there is nothing left to reload */
	while (sigwait(&ss->sigs, &sig) != 0 || sig == SIGHUP)
		;
	log_stderr((void *)ss->sink, EMH_LOG_WARN, NULL, sig == SIGINT ? "second SIGINT: exiting at once" :
			  "second SIGTERM: exiting at once");
	run_files_remove(&ss->files);
	fflush(stderr);
	signal(sig, SIG_DFL);
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, sig);
	pthread_sigmask(SIG_UNBLOCK, &one, NULL);
	raise(sig);
	_exit(128 + sig);
}

/*
 * The contexts the services use, as emh_host_reload's pinned list
 * ("context", "service 'name'", ..., NULL): services are not reloaded, so a
 * context one of them was given must stay.  NULL when out of memory.
 */
static char **services_pins(emh_services *svcs)
{
	size_t n = 0, cap = 16;
	char **v = calloc(cap + 1, sizeof *v);
	emh_svc *svc;
	for (size_t i = 0; v && (svc = emh_services_at(svcs, i)) != NULL; i++) {
		const emh_service *d = emh_svc_descriptor(svc);
		for (size_t j = 0; j < d->nneeds; j++) {
			const char *ctx = emh_svc_context(svc, d->needs[j].context);
			if (!ctx)
				continue;
			if (n + 2 > cap) {
				char **w = realloc(v, (2 * cap + 1) * sizeof *v);
				if (!w)
					goto out_oom;
				memset(w + cap + 1, 0, cap * sizeof *w);
				v = w;
				cap *= 2;
			}
			size_t len = strlen(emh_svc_name(svc)) + sizeof "service ''";
			if (!(v[n] = strdup(ctx)) || !(v[n + 1] = malloc(len)))
				goto out_oom;
			snprintf(v[n + 1], len, "service '%s'", emh_svc_name(svc));
			n += 2;
			v[n] = NULL;
		}
	}
	return v;
out_oom:
	for (size_t i = 0; i < n + 2 && i <= cap; i++) /* the pair being made may be half done */
		free(v[i]);
	free(v);
	return NULL;
}

/* SIGHUP: reload the host's configuration; the host logs what changed, or why it refused. */
static void reload(emh_host *h, emh_services *svcs, emhd_server *srv)
{
	emh_host_log(h, EMH_LOG_INFO, NULL, "SIGHUP: reloading the configuration");
	emhd_notify("RELOADING=1\nMONOTONIC_USEC=%llu", emhd_monotonic_usec());
	char **pins = services_pins(svcs);
	emh_error err;
	int rc = pins ? emh_host_reload(h, &(emh_reload_opts){.pinned = (const char *const *)pins}, NULL, 0, &err)
		      : emh_error_set(&err, EMH_ENOMEM, "out of memory");
	if (!pins)
		emh_host_log(h, EMH_LOG_ERROR, NULL, "reload refused: %s", err.message);
	for (size_t i = 0; pins && pins[i]; i++)
		free(pins[i]);
	free(pins);
	if (rc == 0)
		emhd_contexts_changed(srv);
	emhd_notify("READY=1\nSTATUS=%s", rc ? "reload refused: serving the previous configuration" : "serving");
}

/* Stop: graceful, bounded by shutdown_ms; exits the process itself when handlers are abandoned. */
static void stop(emh_host *h, emh_services *svcs, emhd_server *srv, unsigned shutdown_ms, int sig,
		 struct second_signal *ss)
{
	emh_host_log(h, EMH_LOG_INFO, NULL, "%s: stopping (waiting up to %u ms for requests in flight)",
		     sig == SIGINT ? "SIGINT" : "SIGTERM", shutdown_ms);
	emhd_notify("STOPPING=1");
	pthread_t watcher;
	if (pthread_create(&watcher, NULL, second_signal_main, ss) == 0)
		pthread_detach(watcher);
	emhd_stop_stats st;
	int rc = emhd_stop(srv, shutdown_ms, &st);
	if (st.refused)
		emh_host_log(h, EMH_LOG_WARN, NULL, "%u queued request(s) answered 503 at the shutdown deadline",
			     st.refused);
	if (st.unanswered)
		emh_host_log(h, EMH_LOG_WARN, NULL, "%u request(s) still open at the shutdown deadline were dropped",
			     st.unanswered);
	if (rc != 0) {
		if (st.abandoned)
			emh_host_log(h, EMH_LOG_ERROR, NULL,
				     "%u handler(s) still running at the shutdown deadline (%u ms): exiting without"
				     " closing the pools (their transactions roll back when the connections drop)",
				     st.abandoned, shutdown_ms);
		if (st.probes)
			emh_host_log(h, EMH_LOG_WARN, NULL,
				     "%u health ping(s) still running: exiting without closing the pools", st.probes);
		run_files_remove(&ss->files);
		fflush(stdout);
		fflush(stderr);
		_exit(st.abandoned ? EXIT_ABANDONED : 0);
	}
	emh_services_free(svcs);
	emh_host_free(h);
	run_files_remove(&ss->files);
}

int main(int argc, char **argv)
{
	const char *config = EMH_CONFIG_FILE, *listen = NULL, *plugin_dir = NULL;
	run_files files = {0};
	int level = EMH_LOG_INFO;
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},     {"listen", required_argument, NULL, 'l'},
		{"plugin-dir", required_argument, NULL, 'p'}, {"ready-file", required_argument, NULL, 'R'},
		{"pid-file", required_argument, NULL, 'P'},   {"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},            {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},          {NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "c:l:p:vqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'l': listen = optarg; break;
		case 'p': plugin_dir = optarg; break;
		case 'R': files.ready = optarg; break;
		case 'P': files.pid = optarg; break;
		case 'v': if (level < EMH_LOG_DEBUG) level++; break;
		case 'q': level = EMH_LOG_WARN; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("emhostd %s\n", EMH_VERSION_STRING); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	static log_sink sink; /* read by every thread's log calls until exit */
	sink.journal = stderr_is_journal();

	/* Signals are taken by sigwait in this thread only: block them before
	 * any thread (pools, libmicrohttpd workers) exists. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	emh_host_opts ho = {
		.config_path = config, .plugin_dir = plugin_dir, .log = log_stderr, .log_ud = &sink, .log_level = level,
	};
	emh_host *h = NULL;
	emh_error err;
	if (emh_host_new(&ho, &h, &err) != 0) {
		log_stderr(&sink, EMH_LOG_ERROR, err.context[0] ? err.context : NULL, err.message);
		return 1;
	}
	/* migrate = "on-start" | "check": before the services, which may use the tables */
	if (emh_migrate_startup(h, NULL, &err) != 0) {
		emh_host_log(h, EMH_LOG_ERROR, NULL, "%s", err.message);
		emh_host_free(h);
		return 1;
	}
	emh_services *svcs = NULL;
	if (emh_services_new(h, &svcs, &err) != 0 || emh_services_load(svcs, &err) != 0) {
		emh_host_log(h, EMH_LOG_ERROR, err.context[0] ? err.context : NULL, "%s", err.message);
		emh_services_free(svcs);
		emh_host_free(h);
		return 1;
	}
	if (!emh_services_at(svcs, 0))
		emh_host_log(h, EMH_LOG_WARN, NULL, "no service configured: only /_emhost/ answers");

	/* the server section, read and checked as `emhost check-config` does */
	emhd_opts o;
	unsigned shutdown_ms;
	emhd_server *srv;
	char why[512];
	if (emhd_conf_read(h, listen, &o, &shutdown_ms, why, sizeof why) != 0 ||
	    emhd_start(svcs, &o, &srv, why, sizeof why) != 0) {
		emh_host_log(h, EMH_LOG_ERROR, NULL, "%s", why);
		emh_services_free(svcs);
		emh_host_free(h);
		return 1;
	}
	emh_host_log(h, EMH_LOG_INFO, NULL, "listening on %s (%u threads, queue of %u, max body %zu bytes%s)",
		     emhd_url(srv), o.threads, emhd_queue_max(srv), o.max_body,
		     o.reuse_port ? ", address shared: server.reuse_port" : "");
	char pid[32];
	snprintf(pid, sizeof pid, "%ld", (long)getpid());
	if (files.pid && write_file(files.pid, pid) != 0)
		emh_host_log(h, EMH_LOG_WARN, NULL, "cannot write pid file '%s': %s", files.pid, strerror(errno));
	if (files.ready && write_file(files.ready, emhd_url(srv)) != 0)
		emh_host_log(h, EMH_LOG_WARN, NULL, "cannot write ready file '%s': %s", files.ready, strerror(errno));
	emhd_notify("READY=1\nSTATUS=serving on %s", emhd_url(srv));

	int sig = 0;
	for (;;) {
		while (sigwait(&sigs, &sig) != 0)
			;
		if (sig != SIGHUP)
			break;
		reload(h, svcs, srv);
	}
	static struct second_signal ss;
	ss.sigs = sigs;
	ss.files = files;
	ss.sink = &sink;
	stop(h, svcs, srv, shutdown_ms, sig, &ss);
	if (level >= EMH_LOG_INFO)
		log_stderr(&sink, EMH_LOG_INFO, NULL, "stopped");
	return 0;
}
