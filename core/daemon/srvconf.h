/* SPDX-License-Identifier: MIT */
/*
 * core/daemon/srvconf.h: the server section of the configuration as
 * emhostd reads it (listen address, threads, body limit, shutdown
 * timeout) into emhd_opts.  One piece that emhostd and `emhost check-config` both call, so
 * that the check refuses exactly what the daemon refuses, with the same
 * words.  Public API only: no libmicrohttpd, no core internals (httpd.h
 * only declares).
 */
#ifndef EMH_DAEMON_SRVCONF_H
#define EMH_DAEMON_SRVCONF_H

#include <stddef.h>
#include <sys/socket.h>

#include <emhost/emhost.h>

#include "httpd.h"

#define EMHD_DEFAULT_LISTEN "127.0.0.1:8080"

/*
 * "host:port", "[v6]:port", ":port" or "port" into a socket address (the
 * host resolved; no socket is opened).  On failure err (cap bytes, cut like
 * snprintf: a message) says why, naming the address.  Returns 0 or -1.
 */
int emhd_listen_parse(const char *listen, struct sockaddr_storage *ss, socklen_t *sl, char *err, size_t cap);

/*
 * The server section of h's configuration into *o (emhd_start's options)
 * and *shutdown_ms, with the daemon's defaults for what is unset (listen
 * EMHD_DEFAULT_LISTEN, a thread per core up to 8, 1 MiB bodies, 8 MiB answers, 10 s to shut down) and
 * listen_override (emhostd -l; may be NULL) in place of server.listen.
 * The listen address is parsed and resolved as emhd_start will; the
 * configuration already checked each key's type and range.  o->listen is
 * borrowed from h or listen_override.  Returns 0, or -1 with the reason in
 * err.
 */
int emhd_conf_read(const emh_host *h, const char *listen_override, emhd_opts *o, unsigned *shutdown_ms, char *err,
		   size_t cap);

#endif
