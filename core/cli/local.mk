# core/cli: the emhost command-line tool (public API only).
bin_PROGRAMS += core/cli/emhost
# srvconf: the server section, read and checked exactly as emhostd does (check-config)
core_cli_emhost_SOURCES = core/cli/emhost.c core/daemon/srvconf.c core/daemon/srvconf.h core/daemon/httpd.h
# migrate and schema: their own command line and functions
core_cli_emhost_SOURCES += core/cli/cli.h core/cli/migrate.c
core_cli_emhost_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
# where the shipped systemd unit has emhostd write its pid (emhost reload's default)
core_cli_emhost_CPPFLAGS = $(AM_CPPFLAGS) -DEMH_PID_FILE='"/run/emhost/emhostd.pid"'
