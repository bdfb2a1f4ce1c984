# tests/install: make install into a temporary prefix (a scratch build of this
# source configured for it, SQLite only), then the installed emhostd with the
# installed configuration and no environment serves the bundled services.
if HAVE_DAEMON
if HAVE_SQLITE
TESTS += tests/install/install.sh
endif
endif
EXTRA_DIST += tests/install/install.sh
