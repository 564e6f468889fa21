/* SPDX-License-Identifier: Apache-2.0 */
/* The program: the build commands (cli.c) and the tools, which are not
 * builds and parse their own options.  The only file that knows both. */
#include "amiforge/ami.h"
#include "amiforge/awscli.h"
#include "amiforge/boottest.h"
#include "amiforge/cli.h"
#include "amiforge/iam_policy.h"
#include "amiforge/imds_responder.h"
#include "amiforge/man_recipe.h"
#include "amiforge/mem.h"
#include "amiforge/unbundle.h"

static const struct cli_tool all_tools[] = {
	{ "__imds-responder", imds_responder_main }, /* hidden: QEMU's guestfwd runs it */
	{ "__man-recipe", man_recipe_main },         /* hidden: make man pipes it into scdoc */
	{ "ami", ami_main },
	{ "aws", awscli_main },
	{ "boot-test", boottest_main },
	{ "iam-policy", iam_policy_main },
	{ "unbundle", unbundle_main },
};

int main(int argc, char **argv)
{
	return cli_main(argc, argv, all_tools, ARRAY_SIZE(all_tools));
}
