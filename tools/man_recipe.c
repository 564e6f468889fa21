/* SPDX-License-Identifier: Apache-2.0 */
/* amiforge-recipe(5) in scdoc, from the stage registry (man_recipe.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "amiforge/exitcodes.h"
#include "amiforge/facts.h"
#include "amiforge/man_recipe.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"

/* The format, before the stages.  scdoc source: *bold*, _underline_, a tab
 * indents, ``` fences a literal block. */
static const char man_head[] =
	"amiforge-recipe(5) \"amiforge\" \"File Formats Manual\"\n"
	"\n"
	"# NAME\n"
	"\n"
	"amiforge-recipe - the YAML recipes amiforge builds machine images from\n"
	"\n"
	"# SYNOPSIS\n"
	"\n"
	"```\n"
	"name: debian-12-${BUILD_DATE}\n"
	"arch: x86_64                       # x86_64 | arm64\n"
	"env: [MIRROR]                      # names the environment may feed\n"
	"vars: {DISK: 2GiB}                 # defaults for ${VAR}\n"
	"stages:\n"
	"  - allocate: {size: \"${DISK}\"}\n"
	"  - partition: {table: gpt, esp: 256MiB, bios_boot: true}\n"
	"  - mkfs: {type: ext4, label: rootfs}\n"
	"  - debootstrap: {suite: bookworm, variant: minbase, include: [systemd-sysv, sudo]}\n"
	"  - run: {id: motd, command: \"echo hello > /etc/motd\", timeout: 5m, checkpoint: always}\n"
	"```\n"
	"\n"
	"# DESCRIPTION\n"
	"\n"
	"A recipe is a YAML mapping that *amiforge*(1) builds into a disk image and, with the output "
	"stages, into an AMI.  *amiforge validate* checks one, *amiforge plan* shows what a build would "
	"run, *amiforge build* runs it.  Its stages run in order; each one's key (a SHA-256 over the "
	"previous stage's key, the arch, the stage type, its parameters after variable expansion and the "
	"content of local files it reads) decides whether a resumed build reuses it: a change anywhere "
	"re-runs that stage and every stage after it.\n"
	"\n"
	"# TOP-LEVEL KEYS\n"
	"\n"
	"*name*\n"
	"\tThe image's name (variables allowed); the default of the AMI and bundle names.\n"
	"\n"
	"*arch*\n"
	"\t*x86\\_64* or *arm64*; part of every stage key.\n"
	"\n"
	"*env*\n"
	"\tA list of variable names the environment may feed.\n"
	"\n"
	"*vars*\n"
	"\tA mapping of variable names to defaults; the environment and *--set* override them.\n"
	"\n"
	"*stages*\n"
	"\tThe list of stages, run in order.  Each item is a mapping with one key, the stage type "
	"(see *STAGES*), whose value is the mapping of the stage's parameters.\n"
	"\n"
	"# PARAMETERS EVERY STAGE TAKES\n"
	"\n"
	"*id* (string)\n"
	"\tThe stage's name in the plan, the journal, logs and *build --from*.  Default: the type, "
	"_type_-2 for a second stage of that type.\n"
	"\n"
	"*timeout* (duration)\n"
	"\tKill the stage after that long (90s, 10m, 2h).  Default: the stage type's, if any.\n"
	"\n"
	"*checkpoint* (auto, always or never)\n"
	"\tWhether to checkpoint the disk after the stage.  *auto* (the default) checkpoints after every "
	"stage that touches the image while it holds at most 4 GiB of data, and on larger images when "
	"the checkpoint is cheap compared with the stage.\n"
	"\n"
	"# VARIABLES\n"
	"\n"
	"*${VAR}* and *${VAR:-default}* expand in any value; *$$* is a literal *$*.  A name is looked "
	"up in *--set*, then the environment, then the recipe's *vars*, then *BUILD\\_DATE* and "
	"*BUILD\\_TIME* (UTC, from *SOURCE\\_DATE\\_EPOCH* when it is set).\n"
	"\n"
	"The environment feeds only the names the recipe declares, under *env* or *vars*; any other "
	"name is never read from it.  A credential-looking name (*AWS\\_SECRET\\_ACCESS\\_KEY*, "
	"*AWS\\_SESSION\\_TOKEN*, *AWS\\_SECURITY\\_TOKEN*, or any name containing SECRET, TOKEN, "
	"PASSWORD, PASSWD or PRIVATE\\_KEY, in any case) is never expanded: a *${...}* of one is an "
	"error, and so is such a name under *vars* or *env*.  A name ending in \\_FILE or \\_PATH "
	"(*BUNDLE\\_PRIVATE\\_KEY\\_FILE*) says it holds where a secret is kept, not the secret, and "
	"is allowed: give a bundle's key that way, e.g. *env: [BUNDLE\\_PRIVATE\\_KEY\\_FILE]* and "
	"*key: ${BUNDLE\\_PRIVATE\\_KEY\\_FILE}*, with the file outside the repository.\n"
	"\n"
	"# VALUES\n"
	"\n"
	"The parameter types below are:\n"
	"\n"
	"- *string*, *int*, *bool* (true or false)\n"
	"- *size*: digits with K, KiB, M, MiB, G, GiB, T or TiB (binary) or B: 2GiB, 512M\n"
	"- *duration*: digits with s, m, h or d: 90s, 10m, 2h, 7d (bare digits are seconds)\n"
	"- *enum*: one of the listed words\n"
	"- *strings*: a list of strings (a single string is a list of one)\n"
	"- *map*: a mapping of strings to strings\n"
	"- *list*: a list of mappings, each with the parameters listed under it\n"
	"- *object*: a mapping with the parameters listed under it\n"
	"- *path*: a file or directory beside the recipe; its content counts in the stage key.  Those "
	"marked _anywhere_ (a bundle's certificate and key, a manifest to upload) hold secrets or "
	"per-machine files that need not sit beside the recipe: an absolute path may name a file "
	"anywhere (a relative one is still relative to the recipe), and the stage key holds the "
	"file's SHA-256 fingerprint, not its path, so the same file elsewhere (another runner, "
	"another checkout) gives the same key\n"
	"- *command*: a string run with /bin/sh -c, or a list of strings (argv)\n"
	"\n"
	"# CHECKS\n"
	"\n"
	"A recipe over 1 MiB, or nested deeper than 64 levels, is refused.  Every error is reported as "
	"_FILE_:_LINE_:_COLUMN_: _message_, all of them, and nothing runs (exit status 65).  The order "
	"of the stages is checked too: a stage whose *needs* no earlier stage *provides* (facts such as "
	"*root.offset* or *snapshot.id*), or a combination that cannot boot, is an error at that "
	"stage.\n"
	"\n"
	"# STAGES\n"
	"\n"
	"Each section names the stage type, what it does, the facts it needs from earlier stages and "
	"provides to later ones, and its parameters.  *amiforge stages* prints the same table.\n"
	"\n";

static const char man_tail[] =
	"# FILES\n"
	"\n"
	"_PREFIX_/share/amiforge/recipes/\n"
	"\tThe example recipes: debian-12-minimal.yaml (a root filesystem), debian-12-hvm.yaml "
	"(MBR, GRUB for BIOS, ssh), debian-12-uefi.yaml (GPT and an ESP), debian-12-pvgrub.yaml "
	"(PV-GRUB's menu.lst) and debian-12-ebs.yaml (an EBS-backed AMI).\n"
	"\n"
	"_PREFIX_/share/amiforge/schemas/\n"
	"\tJSON Schemas of recipes and of manifest.json, when shipped.\n"
	"\n"
	"# SEE ALSO\n"
	"\n"
	"*amiforge*(1)\n";

/* Text with scdoc's markup characters escaped. */
static void put_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '*' || *s == '_')
			fputc('\\', f);
		/* A line break would end the paragraph's indentation. */
		fputc(*s == '\n' ? ' ' : *s, f);
	}
}

static void put_params(FILE *f, const struct param_spec *ps, int depth);

static void put_param(FILE *f, const struct param_spec *p, int depth)
{
	for (int i = 0; i < depth; i++)
		fputc('\t', f);
	fputc('*', f);
	put_text(f, p->name);
	fprintf(f, "* (%s%s%s)\n", param_type_name(p->type), (p->flags & PARAM_REQUIRED) ? ", required" : "",
		p->type == PT_PATH && (p->flags & PARAM_HOST_FILE) ? ", anywhere" : "");
	for (int i = 0; i <= depth; i++)
		fputc('\t', f);
	put_text(f, p->help && *p->help ? p->help : "(undocumented)");
	if (p->type == PT_ENUM && p->choices) {
		fputs(".  One of:", f);
		for (const char *const *c = p->choices; *c; c++) {
			fputs(c == p->choices ? " *" : ", *", f);
			put_text(f, *c);
			fputc('*', f);
		}
	}
	if (p->defval) {
		fputs(".  Default: ", f);
		put_text(f, p->defval);
	}
	fputs(".\n\n", f);
	if (p->sub) {
		for (int i = 0; i <= depth; i++)
			fputc('\t', f);
		fprintf(f, "%s *", p->type == PT_LIST ? "Each item of" : "The mapping");
		put_text(f, p->name);
		fputs("* takes:\n\n", f);
		put_params(f, p->sub, depth + 1);
	}
}

static void put_params(FILE *f, const struct param_spec *ps, int depth)
{
	for (; ps && ps->name; ps++)
		put_param(f, ps, depth);
}

static void put_needs(FILE *f, const struct fact_need *n, int *count)
{
	for (; n && n->facts; n++) {
		fputs((*count)++ ? ", " : "", f);
		put_text(f, n->facts);
		if (n->unless) {
			fputs(" (unless ", f);
			put_text(f, n->unless);
			fputc(')', f);
		}
	}
}

static void put_stage(FILE *f, const struct stage_type *t)
{
	fputs("## ", f);
	put_text(f, t->name);
	fputs("\n\n", f);
	put_text(f, t->summary && *t->summary ? t->summary : "(no summary)");
	fputs(".\n\n", f);

	int n = 0;
	fputs("Needs: ", f);
	put_needs(f, facts_implied(t->flags), &n);
	put_needs(f, t->needs, &n);
	fputs(n ? ". ++\n" : "nothing. ++\n", f);
	fputs("Provides: ", f);
	for (const char *const *p = t->provides; p && *p; p++) {
		fputs(p == t->provides ? "" : ", ", f);
		put_text(f, *p);
	}
	fputs(t->provides && *t->provides ? "." : "nothing.", f);
	if (t->flags & STAGE_NETWORK)
		fputs(" ++\nIt uses the network.", f);
	if (t->flags & STAGE_REMOTE)
		fputs(" ++\nIt makes AWS resources (credentials: *amiforge*(1), ENVIRONMENT).", f);
	if (t->default_timeout)
		fprintf(f, " ++\nDefault timeout: %llus.", (unsigned long long)t->default_timeout);
	fputc('\n', f);
	fputc('\n', f);

	if (t->params && t->params->name) {
		fputs("Parameters:\n\n", f);
		put_params(f, t->params, 1);
	} else {
		fputs("It takes no parameters of its own.\n\n", f);
	}
}

int man_recipe_write(FILE *f)
{
	size_t n;
	const struct stage_type *const *all = registry_all(&n);
	fputs(man_head, f);
	for (size_t i = 0; i < n; i++)
		put_stage(f, all[i]);
	fputs(man_tail, f);
	if (fflush(f) != 0 || ferror(f)) {
		if (!errno)
			errno = EIO;
		return -1;
	}
	return 0;
}

int man_recipe_main(int argc, char **argv)
{
	if (argc != 1) {
		fputs("usage: amiforge __man-recipe   (scdoc source of amiforge-recipe(5))\n", stderr);
		return EXIT_USAGE;
	}
	if (man_recipe_write(stdout) < 0) {
		fprintf(stderr, "amiforge __man-recipe: write: %s\n", strerror(errno));
		return EXIT_STAGE_FAILED;
	}
	return EXIT_OK;
}
