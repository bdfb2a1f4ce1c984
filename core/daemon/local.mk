# core/daemon: emhostd, the HTTP front of services (libmicrohttpd + jansson).
if HAVE_DAEMON
bin_PROGRAMS += core/daemon/emhostd
core_daemon_emhostd_SOURCES = core/daemon/emhostd.c core/daemon/httpd.h core/daemon/httpd_int.h \
	core/daemon/server.c core/daemon/httpd.c core/daemon/call.c core/daemon/reply.c core/daemon/health.c \
	core/daemon/metrics.c core/daemon/srvconf.c core/daemon/srvconf.h core/daemon/notify.c core/daemon/notify.h
# the configuration read when -c is not given: what make install puts there
core_daemon_emhostd_CPPFLAGS = $(AM_CPPFLAGS) -DEMH_CONFIG_FILE='"$(sysconfdir)/emhost/emhost.conf"'
core_daemon_emhostd_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS)
core_daemon_emhostd_LDADD = core/web/libemhost-web.la core/libemhost.la $(MHD_LIBS)
endif
