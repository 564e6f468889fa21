/* SPDX-License-Identifier: Apache-2.0 */
/* The command line: a table of subcommands (git's commands[]), each a
 * cmd_<verb>(argc, argv) returning the exit code. */
#ifndef AMIFORGE_CLI_H
#define AMIFORGE_CLI_H

int cli_main(int argc, char **argv);

/* Prints "WHO: MESSAGE" and then USAGE to stderr; returns the usage exit
 * code (2), so that `return cli_usage_error(...)` ends a command. */
int cli_usage_error(const char *who, const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
