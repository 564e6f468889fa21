/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge iam-policy [RECIPE... | --ami-commands] [--remote]`: the
 * least-privilege IAM policy for what a recipe's stages (or the `ami`
 * commands) call, from one table of the AWS actions each stage type, each
 * ami subcommand and the remote state store can send (tools/iam_policy.c).
 *
 * The table is checked against the code by tests/integration/iam_policy.sh
 * (tests/integration/iam_actions.py reads the actions off the sources'
 * call graph): every action the code can send is in it, and nothing more. */
#ifndef AMIFORGE_IAM_POLICY_H
#define AMIFORGE_IAM_POLICY_H

#include <stddef.h>

/* The actions KEY can call: a stage type's name, "ami SUB" for a
 * subcommand, "remote" for the state store.  A NULL-terminated static
 * list (empty for a key that calls nothing or is unknown). */
const char *const *iam_actions(const char *key);

int iam_policy_main(int argc, char **argv);

#endif
