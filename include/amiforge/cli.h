/* SPDX-License-Identifier: Apache-2.0 */
/* The command line: a table of subcommands (git's commands[]), each a
 * cmd_<verb>(argc, argv) returning the exit code. */
#ifndef AMIFORGE_CLI_H
#define AMIFORGE_CLI_H

#include <stddef.h>

/* A command that is not a build (tools/): it parses its own argv, argv[0]
 * being its name. */
struct cli_tool {
	const char *name;
	int (*run)(int argc, char **argv);
};

/* The global options, then a build command of the table in cli.c or one
 * of TOOLS.  Returns the exit code. */
int cli_main(int argc, char **argv, const struct cli_tool *tools, size_t n_tools);

/* Prints "WHO: MESSAGE" and then USAGE to stderr; returns the usage exit
 * code (2), so that `return cli_usage_error(...)` ends a command. */
int cli_usage_error(const char *who, const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
