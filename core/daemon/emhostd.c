/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/emhostd.c: the emhost daemon.  Loads the configuration, the
 * driver plugins, the contexts and the services, then serves HTTP until
 * SIGTERM or SIGINT, when it stops accepting, lets the requests in flight
 * finish (bounded by server.shutdown_timeout_ms), closes the pools and
 * exits 0.
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
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <emhost/emhost.h>
#include <emhost/service.h>

#include "httpd.h"

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define DEFAULT_THREADS 4
#define DEFAULT_MAX_BODY (1024 * 1024)
#define DEFAULT_MAX_RESPONSE (8 * 1024 * 1024)
#define DEFAULT_SHUTDOWN_MS 10000
#define EXIT_ABANDONED 3

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* "2024-05-01T12:00:00.123Z emhostd: info [context] message" on stderr. */
static void log_stderr(void *ud, int level, const char *context, const char *msg)
{
	char clean[4 * 2048 + 8], cctx[4 * 64 + 8];
	msg = emh_text_clean(msg, clean, sizeof clean);
	if (context)
		context = emh_text_clean(context, cctx, sizeof cctx);
	struct timespec ts;
	struct tm tm;
	char when[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	const char *lv = level >= 0 && level <= EMH_LOG_DEBUG ? level_names[level] : "log";
	if (context)
		fprintf(stderr, "%s.%03ldZ emhostd: %s [%s] %s\n", when, ts.tv_nsec / 1000000, lv, context, msg);
	else
		fprintf(stderr, "%s.%03ldZ emhostd: %s %s\n", when, ts.tv_nsec / 1000000, lv, msg);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: emhostd -c FILE [options]\n"
		"  -c, --config FILE      configuration file (libconfig)\n"
		"  -l, --listen ADDR      listen address, overrides server.listen (host:port, [v6]:port)\n"
		"  -p, --plugin-dir DIR   driver plugin directory, overrides plugin_dir\n"
		"      --ready-file FILE  write the server's URL to FILE once it accepts requests\n"
		"  -v, --verbose          more log output (repeat for debug)\n"
		"  -q, --quiet            only warnings and errors\n"
		"  -h, --help             this help\n"
		"      --version          print the version and exit\n"
		"SIGTERM/SIGINT stop it gracefully within server.shutdown_timeout_ms; a second one at once.\n"
		"exit status: 0 stopped cleanly, 1 startup failure, 2 usage, 3 handlers abandoned at the\n"
		"shutdown deadline (pools not closed)\n");
}

/* An integer server setting, or def; a malformed value is reported and def used. */
static long server_int(emh_host *h, const char *key, long def, long min)
{
	const char *v = emh_host_server_setting(h, key);
	if (!v)
		return def;
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || *end || n < min) {
		emh_host_log(h, EMH_LOG_WARN, NULL, "server.%s = '%s' is not an integer >= %ld; using %ld", key, v,
			     min, def);
		return def;
	}
	return n;
}

static int write_ready_file(const char *path, const char *url)
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
	fprintf(f, "%s\n", url);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* The first signal started a graceful stop; a second one ends it now. */
struct second_signal {
	sigset_t sigs;
	const char *ready_file;
};

static void *second_signal_main(void *arg)
{
	struct second_signal *ss = arg;
	int sig = 0;
	while (sigwait(&ss->sigs, &sig) != 0)
		;
	log_stderr(NULL, EMH_LOG_WARN, NULL, sig == SIGINT ? "second SIGINT: exiting at once" :
			  "second SIGTERM: exiting at once");
	if (ss->ready_file)
		unlink(ss->ready_file);
	fflush(stderr);
	signal(sig, SIG_DFL);
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, sig);
	pthread_sigmask(SIG_UNBLOCK, &one, NULL);
	raise(sig);
	_exit(128 + sig);
}

int main(int argc, char **argv)
{
	const char *config = NULL, *listen = NULL, *plugin_dir = NULL, *ready_file = NULL;
	int level = EMH_LOG_INFO;
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
		{"plugin-dir", required_argument, NULL, 'p'}, {"ready-file", required_argument, NULL, 'R'},
		{"verbose", no_argument, NULL, 'v'},         {"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},            {"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "c:l:p:vqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'l': listen = optarg; break;
		case 'p': plugin_dir = optarg; break;
		case 'R': ready_file = optarg; break;
		case 'v': if (level < EMH_LOG_DEBUG) level++; break;
		case 'q': level = EMH_LOG_WARN; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("emhostd %s\n", EMH_VERSION_STRING); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!config || optind != argc) {
		usage(stderr);
		return 2;
	}

	/* Signals are taken by sigwait in this thread only: block them before
	 * any thread (pools, libmicrohttpd workers) exists. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	emh_host_opts ho = {
		.config_path = config, .plugin_dir = plugin_dir, .log = log_stderr, .log_level = level,
	};
	emh_host *h = NULL;
	emh_error err;
	if (emh_host_new(&ho, &h, &err) != 0) {
		log_stderr(NULL, EMH_LOG_ERROR, err.context[0] ? err.context : NULL, err.message);
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

	const char *cfg_listen = emh_host_server_setting(h, "listen");
	emhd_opts o = {
		.listen = listen ? listen : cfg_listen ? cfg_listen : DEFAULT_LISTEN,
		.threads = (unsigned)server_int(h, "threads", DEFAULT_THREADS, 1),
		.max_body = (size_t)server_int(h, "max_body", DEFAULT_MAX_BODY, 0),
		.max_response = (size_t)server_int(h, "max_response", DEFAULT_MAX_RESPONSE, 1024),
		.conn_timeout_s = 30,
	};
	unsigned shutdown_ms = (unsigned)server_int(h, "shutdown_timeout_ms", DEFAULT_SHUTDOWN_MS, 0);
	emhd_server *srv;
	char why[512];
	if (emhd_start(svcs, &o, &srv, why, sizeof why) != 0) {
		emh_host_log(h, EMH_LOG_ERROR, NULL, "%s", why);
		emh_services_free(svcs);
		emh_host_free(h);
		return 1;
	}
	emh_host_log(h, EMH_LOG_INFO, NULL, "listening on %s (%u threads, queue of %u, max body %zu bytes)",
		     emhd_url(srv), o.threads, emhd_queue_max(srv), o.max_body);
	if (ready_file && write_ready_file(ready_file, emhd_url(srv)) != 0)
		emh_host_log(h, EMH_LOG_WARN, NULL, "cannot write ready file '%s': %s", ready_file, strerror(errno));

	int sig = 0;
	while (sigwait(&sigs, &sig) != 0)
		;
	emh_host_log(h, EMH_LOG_INFO, NULL, "%s: stopping (waiting up to %u ms for requests in flight)",
		     sig == SIGINT ? "SIGINT" : "SIGTERM", shutdown_ms);
	static struct second_signal ss;
	ss.sigs = sigs;
	ss.ready_file = ready_file;
	pthread_t watcher;
	if (pthread_create(&watcher, NULL, second_signal_main, &ss) == 0)
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
		if (ready_file)
			unlink(ready_file);
		fflush(stdout);
		fflush(stderr);
		_exit(st.abandoned ? EXIT_ABANDONED : 0);
	}
	emh_services_free(svcs);
	emh_host_free(h);
	if (ready_file)
		unlink(ready_file);
	if (level >= EMH_LOG_INFO)
		log_stderr(NULL, EMH_LOG_INFO, NULL, "stopped");
	return 0;
}
