/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/srvconf.c: the server section as emhostd reads it, shared
 * with `emhost check-config` (srvconf.h): the listen address parsed and
 * resolved, the integer keys with the daemon's defaults.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <emhost/service.h>

#include "srvconf.h"

/* server.threads by default: one per core, at most the core's default
 * pool.max (8), so that the workers never outnumber a default pool */
#define MAX_DEFAULT_THREADS 8
#define DEFAULT_MAX_BODY (1024 * 1024)
#define DEFAULT_MAX_RESPONSE (8 * 1024 * 1024)
#define DEFAULT_SHUTDOWN_MS 10000

/* n bytes of s into dst as a string; false when they do not fit (never cut:
 * part of a host name or port is another address). */
static bool copy_part(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		return false;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return true;
}

int emhd_listen_parse(const char *listen, struct sockaddr_storage *ss, socklen_t *sl, char *err, size_t cap)
{
	char host[256] = "127.0.0.1", port[16];
	const char *colon;
	bool host_fits = true;
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (!close || close[1] != ':') {
			snprintf(err, cap, "listen address '%s': expected [address]:port", listen);
			return -1;
		}
		host_fits = copy_part(host, sizeof host, listen + 1, (size_t)(close - listen - 1));
		colon = close + 1;
	} else if ((colon = strrchr(listen, ':')) != NULL) {
		if (colon > listen)
			host_fits = copy_part(host, sizeof host, listen, (size_t)(colon - listen));
	} else {
		colon = listen - 1; /* just a port */
	}
	if (!host_fits) {
		snprintf(err, cap, "listen address '%s': host is longer than %zu bytes", listen, sizeof host - 1);
		return -1;
	}
	char *end;
	long pn = copy_part(port, sizeof port, colon + 1, strlen(colon + 1)) ? strtol(port, &end, 10) : -1;
	if (pn < 0 || !port[0] || *end || pn > 65535) {
		snprintf(err, cap, "listen address '%s': bad port '%s'", listen, colon + 1);
		return -1;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		snprintf(err, cap, "listen address '%s': %s", listen, gai_strerror(rc));
		return -1;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*sl = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

/* The default of server.threads: the cores online, 1 to MAX_DEFAULT_THREADS. */
static long long default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > MAX_DEFAULT_THREADS ? MAX_DEFAULT_THREADS : n;
}

/* A boolean the configuration checked (cfg_file.c): "true", "1", "yes", "on" are true. */
static bool server_bool(const emh_host *h, const char *key, bool def)
{
	const char *v = emh_host_server_setting(h, key);
	if (!v)
		return def;
	return strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "on") == 0;
}

/* An integer server key, or def when unset.  The configuration checked its
 * kind and range (cfg_file.c's server keys); a value that still does not
 * read is refused rather than guessed. */
static int server_int(const emh_host *h, const char *key, long long def, long long *out, char *err, size_t cap)
{
	const char *v = emh_host_server_setting(h, key);
	*out = def;
	if (!v)
		return 0;
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < 0 || n > INT32_MAX) {
		snprintf(err, cap, "server.%s = '%s' is not an integer in [0, %d]", key, v, INT32_MAX);
		return -1;
	}
	*out = n;
	return 0;
}

int emhd_conf_read(const emh_host *h, const char *listen_override, emhd_opts *o, unsigned *shutdown_ms, char *err,
		   size_t cap)
{
	const char *listen = emh_host_server_setting(h, "listen");
	long long threads, max_body, max_response, shutdown;
	if (server_int(h, "threads", default_threads(), &threads, err, cap) ||
	    server_int(h, "max_body", DEFAULT_MAX_BODY, &max_body, err, cap) ||
	    server_int(h, "max_response", DEFAULT_MAX_RESPONSE, &max_response, err, cap) ||
	    server_int(h, "shutdown_timeout_ms", DEFAULT_SHUTDOWN_MS, &shutdown, err, cap))
		return -1;
	*o = (emhd_opts){
		/* threads left to the cores: the queue the most of them get, so
		 * that a machine of few cores does not turn clients away sooner */
		.queue_max = emh_host_server_setting(h, "threads") ? 0 : 4 * MAX_DEFAULT_THREADS,
		.listen = listen_override ? listen_override : listen ? listen : EMHD_DEFAULT_LISTEN,
		.threads = threads > 0 ? (unsigned)threads : 1,
		.max_body = (size_t)max_body,
		.max_response = (size_t)max_response,
		.conn_timeout_s = 30,
		.reuse_port = server_bool(h, "reuse_port", false),
		.no_inline = !server_bool(h, "inline", true),
	};
	*shutdown_ms = (unsigned)shutdown;
	struct sockaddr_storage ss;
	socklen_t sl;
	return emhd_listen_parse(o->listen, &ss, &sl, err, cap);
}
