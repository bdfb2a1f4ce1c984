# core/cli: the emhost command-line tool (public API only).
bin_PROGRAMS += core/cli/emhost
core_cli_emhost_SOURCES = core/cli/emhost.c
# migrate and schema: their own command line and functions
core_cli_emhost_SOURCES += core/cli/cli.h core/cli/migrate.c
core_cli_emhost_LDADD = core/libemhost.la $(EMH_PTHREAD_LIBS)
