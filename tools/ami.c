/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami SUBCOMMAND ...`: the dispatcher (ami.h). */
#include <stdio.h>
#include <string.h>

#include "amiforge/ami.h"
#include "amiforge/exitcodes.h"
#include "amiforge/mem.h"

struct ami_sub {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct ami_sub subs[] = {
	{ "list", ami_list_main, "the caller's AMIs: name, id, created, expiry, state, snapshots, sharing" },
	{ "create", ami_create_main, "an AMI of a running instance (default: this one), with expiry and copies" },
	{ "copy", ami_copy_main, "copy an AMI to other regions (and accounts), with its tags" },
	{ "share", ami_share_main, "launch permission and the snapshots' createVolumePermission" },
	{ "expire", ami_expire_main, "set or clear the expiry tag and deprecation time" },
	{ "deregister", ami_deregister_main, "deregister AMIs, with their snapshots or S3 bundles" },
	{ "purge", ami_purge_main, "report (or, with --yes, delete) expired, old or surplus AMIs not in use" },
	{ "convert", ami_convert_main, "an instance-store AMI to an EBS-backed one, through the EBS direct APIs" },
};

static void ami_usage(FILE *f)
{
	fprintf(f, "usage: amiforge ami SUBCOMMAND [OPTIONS]   (amiforge ami SUBCOMMAND --help)\n\n");
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++)
		fprintf(f, "  %-11s %s\n", subs[i].name, subs[i].summary);
	fprintf(f, "\nevery subcommand takes --profile NAME, --region R, --json; those that change\n"
		   "anything take --dry-run.  exit: 0 ok, 1 a call failed, 2 usage, 69 AWS unreachable,\n"
		   "77 permission refused\n");
}

int ami_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		ami_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++)
		if (!strcmp(argv[1], subs[i].name))
			return subs[i].run(argc - 1, argv + 1);
	fprintf(stderr, "amiforge ami: unknown subcommand '%s'\n", argv[1]);
	ami_usage(stderr);
	return EXIT_USAGE;
}
