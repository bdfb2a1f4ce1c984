/* SPDX-License-Identifier: MIT */
/* core/cli/cli.h: what the emhost tool's files share. */
#ifndef EMH_CLI_CLI_H
#define EMH_CLI_CLI_H

#include <stdbool.h>

/* "emhost: <message>" on stderr; returns 1, the exit status of a failure. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Is the command on this command line `migrate` or `schema`? */
bool cli_is_migrate(int argc, char **argv);
/* Run `emhost migrate ...` / `emhost schema ...` from the whole command line; the exit status. */
int cli_migrate_main(int argc, char **argv);

#endif
