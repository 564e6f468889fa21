/* SPDX-License-Identifier: Apache-2.0 */
/* The command line: a table of subcommands (git's commands[]), each a
 * cmd_<verb>(argc, argv) returning the exit code. */
#ifndef AMIFORGE_CLI_H
#define AMIFORGE_CLI_H

int cli_main(int argc, char **argv);

#endif
