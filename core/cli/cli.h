/* SPDX-License-Identifier: MIT */
/* core/cli/cli.h: what the emhost tool's files share. */
#ifndef EMH_CLI_CLI_H
#define EMH_CLI_CLI_H

#include <stdbool.h>

/* "emhost: <message>" on stderr, each line cleaned (cli_clean); returns 1, the exit status of a failure. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * s (NULL: "") with control characters and invalid UTF-8 written as \xNN
 * (emh_text_clean), in a new string the caller frees; NULL when out of
 * memory.  Values, origins and messages hold text from outside (a path from
 * the environment, a file name): no terminal escape may reach the terminal.
 */
char *cli_clean(const char *s);
/* Is the command on this command line `migrate` or `schema`? */
bool cli_is_migrate(int argc, char **argv);
/* Run `emhost migrate ...` / `emhost schema ...` from the whole command line; the exit status. */
int cli_migrate_main(int argc, char **argv);

#endif
