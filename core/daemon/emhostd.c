/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/emhostd.c: the emhost daemon.  Loads the configuration, the
 * driver plugins, the contexts and the services, then serves HTTP until
 * SIGTERM or SIGINT, when it stops accepting, lets the requests in flight
 * finish (bounded by server.shutdown_timeout_ms), closes the pools and
 * exits 0.
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
#define DEFAULT_SHUTDOWN_MS 10000

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* "2024-05-01T12:00:00.123Z emhostd: info [context] message" on stderr. */
static void log_stderr(void *ud, int level, const char *context, const char *msg)
{
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
		"  -h, --help             this help\n");
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
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
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

int main(int argc, char **argv)
{
	const char *config = NULL, *listen = NULL, *plugin_dir = NULL, *ready_file = NULL;
	int level = EMH_LOG_INFO;
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
		{"plugin-dir", required_argument, NULL, 'p'}, {"ready-file", required_argument, NULL, 'R'},
		{"verbose", no_argument, NULL, 'v'},         {"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0},
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
	if (emh_host_load_services(h, &err) != 0) {
		emh_host_log(h, EMH_LOG_ERROR, err.context[0] ? err.context : NULL, "%s", err.message);
		emh_host_free(h);
		return 1;
	}
	if (!emh_host_service_at(h, 0))
		emh_host_log(h, EMH_LOG_WARN, NULL, "no service configured: only /_emhost/ answers");

	const char *cfg_listen = emh_host_server_setting(h, "listen");
	emhd_opts o = {
		.listen = listen ? listen : cfg_listen ? cfg_listen : DEFAULT_LISTEN,
		.threads = (unsigned)server_int(h, "threads", DEFAULT_THREADS, 1),
		.max_body = (size_t)server_int(h, "max_body", DEFAULT_MAX_BODY, 0),
		.conn_timeout_s = 30,
	};
	unsigned shutdown_ms = (unsigned)server_int(h, "shutdown_timeout_ms", DEFAULT_SHUTDOWN_MS, 0);
	emhd_server *srv;
	char why[512];
	if (emhd_start(h, &o, &srv, why, sizeof why) != 0) {
		emh_host_log(h, EMH_LOG_ERROR, NULL, "%s", why);
		emh_host_free(h);
		return 1;
	}
	emh_host_log(h, EMH_LOG_INFO, NULL, "listening on %s (%u threads, max body %zu bytes)", emhd_url(srv),
		     o.threads, o.max_body);
	if (ready_file && write_ready_file(ready_file, emhd_url(srv)) != 0)
		emh_host_log(h, EMH_LOG_WARN, NULL, "cannot write ready file '%s': %s", ready_file, strerror(errno));

	int sig = 0;
	while (sigwait(&sigs, &sig) != 0)
		;
	emh_host_log(h, EMH_LOG_INFO, NULL, "%s: stopping (waiting up to %u ms for requests in flight)",
		     sig == SIGINT ? "SIGINT" : "SIGTERM", shutdown_ms);
	unsigned left = emhd_stop(srv, shutdown_ms);
	if (left)
		emh_host_log(h, EMH_LOG_WARN, NULL, "%u request(s) still in flight at the shutdown timeout", left);
	emh_host_free(h);
	if (ready_file)
		unlink(ready_file);
	if (level >= EMH_LOG_INFO)
		log_stderr(NULL, EMH_LOG_INFO, NULL, "stopped");
	return 0;
}
