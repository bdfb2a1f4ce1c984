# core/daemon: emhostd, the HTTP front of services (libmicrohttpd + jansson).
if HAVE_DAEMON
bin_PROGRAMS += core/daemon/emhostd
core_daemon_emhostd_SOURCES = core/daemon/emhostd.c core/daemon/httpd.h core/daemon/httpd_int.h \
	core/daemon/server.c core/daemon/httpd.c core/daemon/call.c core/daemon/reply.c core/daemon/health.c core/daemon/metrics.c
core_daemon_emhostd_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS)
core_daemon_emhostd_LDADD = core/libemhost.la $(MHD_LIBS)
endif
