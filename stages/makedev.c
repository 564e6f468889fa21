/* SPDX-License-Identifier: Apache-2.0 */
/* makedev: device nodes in the image's /dev as Debian's MAKEDEV (package makedev,
 * /sbin/MAKEDEV 2.3.1-97) makes them: the same names, majors, minors, owner
 * root, groups and modes, made with mknod by the engine so the image needs
 * no makedev package.
 *
 * Faithful on purpose, including MAKEDEV's quirks:
 * - "null" and "zero" make the whole "std" set (MAKEDEV's cvt() maps them);
 * - inside "std" urandom is 0666, but "urandom" alone is 0444 ("readable");
 * - "generic" is MAKEDEV's generic-<arch> list: generic-i386 for amd64.
 *   MAKEDEV has no generic for arm64; we use generic-arm, its nearest kin.
 * Deliberate differences:
 * - majors are MAKEDEV's built-in defaults, not the host's /proc/devices
 *   (the host kernel is not the image's; builds must not depend on it);
 * - "tty" and "mem" make those single nodes (MAKEDEV's cvt() drops them);
 * - extensions MAKEDEV lacks, numbered per the kernel's devices.txt: Xen
 *   disks xvda..xvdp (block 202, 16 minors each), hvc0..hvc7 (char 229),
 *   and single partitions by name (sda1, xvda1).
 * Groups are resolved in the image's /etc/group, else Debian's base-passwd
 * ids.  Nodes are made through the in-root API (inroot.h): the image's /dev
 * and its subdirectories are resolved inside the image, never on the host. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/inroot.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define MD_GROUP_MAX (16u << 20)

static const struct param_spec makedev_params[] = {
	{ .name = "devices", .type = PT_STRINGS, .flags = PARAM_REQUIRED,
	  .help = "sets (generic, std, console, pty, fd, ...) and nodes (tty1, ttyS0, sda, xvda1, loop0, hvc0, ptmx, random)" },
	{ .name = NULL },
};

/* MAKEDEV's permission classes: "user group perm", user always root. */
enum md_class {
	MDC_PUBLIC, MDC_PRIVATE, MDC_SYSTEM, MDC_KMEM, MDC_TTY, MDC_CONS, MDC_DIALOUT, MDC_DIP, MDC_MOUSE,
	MDC_PRINTER, MDC_FLOPPY, MDC_DISK, MDC_SCSI, MDC_CDROM, MDC_TAPE, MDC_AUDIO, MDC_VIDEO, MDC_READABLE,
};
static const struct { const char *group; mode_t mode; } md_classes[] = {
	[MDC_PUBLIC] = { "root", 0666 },    [MDC_PRIVATE] = { "root", 0600 }, [MDC_SYSTEM] = { "root", 0660 },
	[MDC_KMEM] = { "kmem", 0640 },      [MDC_TTY] = { "tty", 0666 },      [MDC_CONS] = { "tty", 0600 },
	[MDC_DIALOUT] = { "dialout", 0660 }, [MDC_DIP] = { "dip", 0660 },     [MDC_MOUSE] = { "root", 0660 },
	[MDC_PRINTER] = { "lp", 0660 },     [MDC_FLOPPY] = { "floppy", 0660 }, [MDC_DISK] = { "disk", 0660 },
	[MDC_SCSI] = { "root", 0600 },      [MDC_CDROM] = { "cdrom", 0660 },  [MDC_TAPE] = { "tape", 0660 },
	[MDC_AUDIO] = { "audio", 0660 },    [MDC_VIDEO] = { "video", 0660 },  [MDC_READABLE] = { "root", 0444 },
};

/* Debian base-passwd's fixed group ids, used when the image has no
 * /etc/group yet. */
static const struct { const char *name; gid_t gid; } md_default_gids[] = {
	{ "root", 0 }, { "tty", 5 }, { "disk", 6 }, { "lp", 7 }, { "kmem", 15 }, { "dialout", 20 },
	{ "cdrom", 24 }, { "floppy", 25 }, { "tape", 26 }, { "audio", 29 }, { "dip", 30 }, { "video", 44 },
};

/* A node to make: 'c', 'b', or 'l' (symlink to target). */
struct md_node {
	char name[48];
	char type;
	unsigned major, minor;
	enum md_class cls;
	const char *target;
};

struct md_list {
	struct md_node *v;
	size_t n, alloc;
};

/* Single nodes.  Names starting with '.' are internal (members of sets
 * only); the node gets the name after the dot. */
static const struct md_single {
	const char *name;
	char type;
	unsigned major, minor;
	enum md_class cls;
} md_singles[] = {
	{ "mem", 'c', 1, 1, MDC_KMEM },       { "kmem", 'c', 1, 2, MDC_KMEM },
	{ ".null", 'c', 1, 3, MDC_PUBLIC },    { "port", 'c', 1, 4, MDC_KMEM },
	{ ".zero", 'c', 1, 5, MDC_PUBLIC },    { "full", 'c', 1, 7, MDC_PUBLIC },
	{ "random", 'c', 1, 8, MDC_PUBLIC },   { ".urandom", 'c', 1, 9, MDC_PUBLIC },
	{ "urandom", 'c', 1, 9, MDC_READABLE }, { "tty", 'c', 5, 0, MDC_TTY },
	{ ".console", 'c', 5, 1, MDC_CONS },   { "ptmx", 'c', 5, 2, MDC_TTY },
	{ "tty0", 'c', 4, 0, MDC_CONS },       { "initrd", 'b', 1, 250, MDC_DISK },
	{ "ppp", 'c', 108, 0, MDC_DIP },       { "fuse", 'c', 10, 229, MDC_SYSTEM },
	{ "net/tun", 'c', 10, 200, MDC_SYSTEM }, { "rtc", 'c', 10, 135, MDC_MOUSE },
	{ "nvram", 'c', 10, 144, MDC_MOUSE },  { "hwrng", 'c', 10, 183, MDC_PRIVATE },
	{ "sunmouse", 'c', 10, 6, MDC_MOUSE },
	/* busmice */
	{ "logibm", 'c', 10, 0, MDC_MOUSE },   { "psaux", 'c', 10, 1, MDC_MOUSE },
	{ "inportbm", 'c', 10, 2, MDC_MOUSE }, { "atibm", 'c', 10, 3, MDC_MOUSE },
	{ "jbm", 'c', 10, 4, MDC_MOUSE },
	{ "input/mice", 'c', 13, 63, MDC_MOUSE },
	/* old CD-ROM drives of generic-i386 */
	{ "sonycd", 'b', 15, 0, MDC_CDROM },   { "mcd", 'b', 23, 0, MDC_CDROM },
	{ "cdu535", 'b', 24, 0, MDC_CDROM },   { "lmscd", 'b', 24, 0, MDC_CDROM },
	{ "optcd", 'b', 17, 0, MDC_CDROM },    { "sjcd", 'b', 18, 0, MDC_CDROM },
	{ "bpcd", 'b', 41, 0, MDC_CDROM },     { "aztcd0", 'b', 29, 0, MDC_CDROM },
	{ "cm206cd0", 'b', 30, 0, MDC_CDROM }, { "gscd0", 'b', 16, 0, MDC_CDROM },
	{ "dac960_gam", 'c', 10, 252, MDC_DISK }, { "i2o/ctl", 'c', 10, 166, MDC_DISK },
	{ ".isdninfo", 'c', 45, 255, MDC_DIALOUT }, { "isdninfo", 'c', 45, 255, MDC_PRIVATE },
	/* audio (OSS) */
	{ "mixer", 'c', 14, 0, MDC_AUDIO },    { "mixer1", 'c', 14, 16, MDC_AUDIO },
	{ "mixer2", 'c', 14, 32, MDC_AUDIO },  { "mixer3", 'c', 14, 48, MDC_AUDIO },
	{ "sequencer", 'c', 14, 1, MDC_AUDIO }, { "midi00", 'c', 14, 2, MDC_AUDIO },
	{ "midi01", 'c', 14, 18, MDC_AUDIO },  { "midi02", 'c', 14, 34, MDC_AUDIO },
	{ "midi03", 'c', 14, 50, MDC_AUDIO },  { "dsp", 'c', 14, 3, MDC_AUDIO },
	{ "dsp1", 'c', 14, 19, MDC_AUDIO },    { "dsp2", 'c', 14, 35, MDC_AUDIO },
	{ "dsp3", 'c', 14, 51, MDC_AUDIO },    { ".audio", 'c', 14, 4, MDC_AUDIO },
	{ "audio1", 'c', 14, 20, MDC_AUDIO },  { "audio2", 'c', 14, 36, MDC_AUDIO },
	{ "audio3", 'c', 14, 52, MDC_AUDIO },  { "sndstat", 'c', 14, 6, MDC_AUDIO },
	{ "audioctl", 'c', 14, 7, MDC_AUDIO }, { "mpu401data", 'c', 31, 0, MDC_AUDIO },
	{ "mpu401stat", 'c', 31, 1, MDC_AUDIO },
};

/* Numbered nodes PREFIX<unit>, minor = base + unit * step.  A set name
 * makes units set_first..set_last; a node name PREFIX<n> is accepted for
 * n in set_first..ind_max (ind_max < set_first: not by name). */
static const struct md_series {
	const char *set;
	const char *prefix;
	char type;
	unsigned major;
	int base, step;
	unsigned set_first, set_last, ind_max;
	enum md_class cls;
	const char *link_prefix;  /* also make LINK<unit> -> PREFIX<unit> */
} md_series[] = {
	{ ".ttys", "tty", 'c', 4, 0, 1, 1, 63, 63, MDC_CONS, NULL },
	{ ".vcs", "vcs", 'c', 7, 0, 1, 0, 63, 0, MDC_CONS, NULL },
	{ ".vcsa", "vcsa", 'c', 7, 128, 1, 0, 63, 0, MDC_CONS, NULL },
	{ "ttyS", "ttyS", 'c', 4, 64, 1, 0, 4, 63, MDC_DIALOUT, NULL },
	{ "loop", "loop", 'b', 7, 0, 1, 0, 7, 255, MDC_DISK, NULL },
	{ ".ram", "ram", 'b', 1, 0, 1, 0, 16, 16, MDC_DISK, NULL },
	{ "fb", "fb", 'c', 29, 0, 1, 0, 7, 7, MDC_VIDEO, NULL },
	{ "sg", "sg", 'c', 21, 0, 1, 0, 16, 0, MDC_SCSI, NULL },
	{ "scd", "scd", 'b', 11, 0, 1, 0, 16, 19, MDC_CDROM, "sr" },
	{ ".mcdx", "mcdx", 'b', 20, 0, 1, 0, 4, 4, MDC_CDROM, NULL },
	{ ".sbpcd", "sbpcd", 'b', 25, 0, 1, 0, 3, 0, MDC_CDROM, NULL },
	{ "lp", "lp", 'c', 6, 0, 1, 0, 2, 0, MDC_PRINTER, NULL },
	{ "par", "par", 'c', 6, 0, 1, 0, 2, 0, MDC_PRINTER, NULL },
	{ "dpti", "dpti", 'c', 151, -1, 1, 1, 7, 0, MDC_DISK, NULL },
	{ ".isdn", "isdn", 'c', 45, 0, 1, 0, 7, 63, MDC_DIALOUT, NULL },
	{ ".isdnctrl", "isdnctrl", 'c', 45, 64, 1, 0, 7, 63, MDC_DIALOUT, NULL },
	{ ".ippp", "ippp", 'c', 45, 128, 1, 0, 7, 63, MDC_DIALOUT, NULL },
	{ ".input-js", "input/js", 'c', 13, 0, 1, 0, 3, 0, MDC_MOUSE, NULL },
	{ ".input-mouse", "input/mouse", 'c', 13, 32, 1, 0, 3, 0, MDC_MOUSE, NULL },
	{ ".input-event", "input/event", 'c', 13, 64, 1, 0, 3, 0, MDC_MOUSE, NULL },
	{ ".midi", "midi", 'c', 35, 0, 1, 0, 3, 0, MDC_AUDIO, NULL },
	{ ".rmidi", "rmidi", 'c', 35, 64, 1, 0, 3, 0, MDC_AUDIO, NULL },
	{ ".smpte", "smpte", 'c', 35, 128, 1, 0, 3, 0, MDC_AUDIO, NULL },
	{ "hvc", "hvc", 'c', 229, 0, 1, 0, 7, 7, MDC_CONS, NULL }, /* extension */
};

/* Disks PREFIX<letter> with partitions PREFIX<letter><1..nparts>.
 * minor = (index % per_major) * stride + part, major = majors[index / per_major]. */
static const unsigned md_hd_majors[] = { 3, 22, 33, 34, 56, 57, 88, 89, 90, 91 };
static const unsigned md_sd_majors[] = { 8, 65 };
static const unsigned md_xd_majors[] = { 13 };
static const unsigned md_ed_majors[] = { 36 };
static const unsigned md_i2o_majors[] = { 80, 81 };
static const unsigned md_xvd_majors[] = { 202 };
static const struct md_disk {
	const char *req;   /* the request name prefix */
	const char *node;  /* the node name prefix */
	const char *letters;
	const unsigned *majors;
	unsigned per_major, stride, nparts;
} md_disks[] = {
	{ "hd", "hd", "abcdefghijklmnopqrst", md_hd_majors, 2, 64, 24 },
	{ "sd", "sd", "abcdefghijklmnopqrstuvwxyz", md_sd_majors, 16, 16, 15 },
	{ "xd", "xd", "abcd", md_xd_majors, 4, 64, 8 },
	{ "ed", "ed", "ab", md_ed_majors, 2, 64, 8 },
	{ "i2o.hd", "i2o/hd", "abcdefghijklmnopqrstuvwxyz", md_i2o_majors, 16, 16, 15 },
	{ "xvd", "xvd", "abcdefghijklmnop", md_xvd_majors, 16, 16, 15 }, /* extension */
};

/* RAID controllers: DIR/c<ctr>d<ld>[p<part>], major = base + ctr. */
static const struct md_ctrl {
	const char *name, *dir;
	unsigned major_base, nctrl, nld, nparts;
} md_ctrls[] = {
	{ "dac960", "rd", 48, 8, 32, 7 },
	{ "ida", "ida", 72, 3, 16, 15 },
	{ "cciss", "cciss", 104, 3, 16, 15 },
};

/* Sets: space-separated members (sets, nodes, series sets, "@link=target"). */
static const struct md_set {
	const char *name;
	const char *members;
} md_sets[] = {
	{ "std", "mem kmem .null port .zero @core=/proc/kcore full random .urandom tty ram loop" },
	{ "null", "std" },
	{ "zero", "std" },
	{ "ram", ".ram @ram=ram1" },
	{ "consoleonly", "tty0 .console" },
	{ "console", "consoleonly .vcs @vcs=vcs0 .vcsa @vcsa=vcsa0 .ttys" },
	{ "fd", "@fd=/proc/self/fd @stdin=fd/0 @stdout=fd/1 @stderr=fd/2" },
	{ "hd", "hda hdb hdc hdd hde hdf hdg hdh hdi hdj hdk hdl hdm hdn hdo hdp" },
	{ "sd", "sda sdb sdc sdd sde sdf sdg sdh sdi sdj sdk sdl sdm sdn sdo sdp" },
	{ "pty", "ptyp ptyq ptyr ptys ptyt ptyu ptyv ptyw ptyx ptyy ptyz ptya ptyb ptyc ptyd ptye ptmx" },
	{ "busmice", "logibm psaux inportbm atibm jbm" },
	{ "input", ".input-js .input-mouse .input-event input/mice" },
	{ "audio", "mixer mixer1 mixer2 mixer3 sequencer midi00 midi01 midi02 midi03 dsp dsp1 dsp2 dsp3 .audio "
		   "audio1 audio2 audio3 sndstat audioctl mpu401data mpu401stat .midi .rmidi .smpte" },
	{ "isdn-io", ".isdn .isdnctrl .ippp .isdninfo" },
	{ "mcdx", ".mcdx @mcdx=mcdx0" },
	{ "sbpcd", ".sbpcd @sbpcd=sbpcd0" },
	{ "aztcd", "aztcd0" },
	{ "cm206cd", "cm206cd0" },
	{ "gscd", "gscd0" },
	{ "ataraid", ".ataraid" },
	{ "generic-i386",
	  "std fd fd0 fd1 hd sd xda xdb scd0 scd1 st0 st1 sg pty console ttyS0 ttyS1 ttyS2 ttyS3 ttyS4 busmice "
	  "input lp par audio fb isdn-io eda edb sonycd mcd mcdx cdu535 optcd sjcd cm206cd gscd lmscd sbpcd aztcd "
	  "bpcd dac960 dpti ida ataraid cciss i2o.hda i2o.hdb i2o.hdc i2o.hdd" },
	{ "generic-arm",
	  "std fd fd0 fd1 hd sd xda xdb scd0 scd1 st0 st1 sg pty console ttyS0 ttyS1 ttyS2 ttyS3 ttyS4 busmice "
	  "sunmouse lp par audio fb" },
};

/* Floppy formats of fd[0-7]: suffix, minor offset from the drive's base. */
static const char *const md_floppy_suffixes[] = {
	"", "d360", "h1200", "u360", "u720", "h360", "h720", "u1440", "u2880", "CompaQ", "h1440", "u1680",
	"h410", "u820", "h1476", "u1722", "h420", "u830", "h1494", "u1743", "h880", "u1040", "u1120",
	"h1600", "u1760", "u1920", "u3200", "u3520", "u3840", "u1840", "u800", "u1600",
};

static void md_push(struct md_list *l, const char *name, char type, unsigned ma, unsigned mi, enum md_class cls,
		    const char *target)
{
	if (l->n == l->alloc) {
		l->alloc = l->alloc ? 2 * l->alloc : 256;
		l->v = xreallocarray(l->v, l->alloc, sizeof(*l->v));
	}
	struct md_node *n = &l->v[l->n++];
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->type = type;
	n->major = ma;
	n->minor = mi;
	n->cls = cls;
	n->target = target;
}

static void md_pushf(struct md_list *l, char type, unsigned ma, unsigned mi, enum md_class cls, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static void md_pushf(struct md_list *l, char type, unsigned ma, unsigned mi, enum md_class cls, const char *fmt, ...)
{
	char name[48];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	md_push(l, name, type, ma, mi, cls, NULL);
}

/* Parses "<prefix><decimal>" into *n. */
static bool md_numbered(const char *name, const char *prefix, unsigned *n)
{
	size_t pl = strlen(prefix);
	if (strncmp(name, prefix, pl) != 0 || !name[pl] || strspn(name + pl, "0123456789") != strlen(name + pl))
		return false;
	if (name[pl] == '0' && name[pl + 1])
		return false;
	*n = (unsigned)strtoul(name + pl, NULL, 10);
	return true;
}

static void md_series_unit(struct md_list *l, const struct md_series *s, unsigned u)
{
	md_pushf(l, s->type, s->major, (unsigned)(s->base + (int)u * s->step), s->cls, "%s%u", s->prefix, u);
	if (s->link_prefix) {
		/* 'L': a symlink to the same unit's node (scd0 <- sr0). */
		char name[48];
		snprintf(name, sizeof(name), "%s%u", s->link_prefix, u);
		md_push(l, name, 'L', u, (unsigned)(s - md_series), s->cls, NULL);
	}
}

/* One disk: the whole device and all its partitions, or one partition. */
static bool md_disk_expand(struct md_list *l, const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(md_disks); i++) {
		const struct md_disk *d = &md_disks[i];
		size_t pl = strlen(d->req);
		if (strncmp(name, d->req, pl) != 0 || !name[pl])
			continue;
		const char *lp = strchr(d->letters, name[pl]);
		if (!lp || !name[pl])
			continue;
		unsigned idx = (unsigned)(lp - d->letters), part = 0;
		const char *rest = name + pl + 1;
		if (*rest && (!md_numbered(rest, "", &part) || part < 1 || part > d->nparts))
			continue;
		unsigned major = d->majors[idx / d->per_major], base = (idx % d->per_major) * d->stride;
		char letter = d->letters[idx];
		if (*rest) {
			md_pushf(l, 'b', major, base + part, MDC_DISK, "%s%c%u", d->node, letter, part);
			return true;
		}
		md_pushf(l, 'b', major, base, MDC_DISK, "%s%c", d->node, letter);
		for (unsigned p = 1; p <= d->nparts; p++)
			md_pushf(l, 'b', major, base + p, MDC_DISK, "%s%c%u", d->node, letter, p);
		return true;
	}
	return false;
}

/* pty banks: ptyXN (master, major 2) and ttyXN (slave, major 3). */
static bool md_pty_expand(struct md_list *l, const char *name)
{
	static const char banks[] = "pqrstuvwxyzabcde";
	const char *b;
	if (strncmp(name, "pty", 3) != 0 || strlen(name) != 4 || !(b = strchr(banks, name[3])))
		return false;
	unsigned base = (unsigned)(b - banks) * 16;
	for (unsigned j = 0; j < 16; j++) {
		md_pushf(l, 'c', 2, base + j, MDC_TTY, "pty%c%x", name[3], j);
		md_pushf(l, 'c', 3, base + j, MDC_TTY, "tty%c%x", name[3], j);
	}
	return true;
}

static bool md_floppy_expand(struct md_list *l, const char *name)
{
	unsigned drive;
	if (!md_numbered(name, "fd", &drive) || drive > 7)
		return false;
	unsigned base = drive >= 4 ? drive + 124 : drive;
	for (size_t i = 0; i < ARRAY_SIZE(md_floppy_suffixes); i++)
		md_pushf(l, 'b', 2, base + 4 * (unsigned)i, MDC_FLOPPY, "%s%s", name, md_floppy_suffixes[i]);
	return true;
}

static bool md_tape_expand(struct md_list *l, const char *name)
{
	static const struct { const char *fmt; unsigned off; } t[] = {
		{ "st%u", 0 },    { "nst%u", 128 },  { "st%ul", 32 },  { "nst%ul", 160 },
		{ "st%um", 64 },  { "nst%um", 192 }, { "st%ua", 96 },  { "nst%ua", 224 },
	};
	unsigned u;
	if (!md_numbered(name, "st", &u) || u > 7)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		char n[16];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		snprintf(n, sizeof(n), t[i].fmt, u);
#pragma GCC diagnostic pop
		md_push(l, n, 'c', 9, u + t[i].off, MDC_TAPE, NULL);
	}
	return true;
}

static bool md_ctrl_expand(struct md_list *l, const char *name)
{
	if (strcmp(name, ".ataraid") == 0) {
		for (unsigned u = 0; u < 3; u++) {
			md_pushf(l, 'b', 114, u * 16, MDC_DISK, "ataraid/d%u", u);
			for (unsigned p = 1; p <= 15; p++)
				md_pushf(l, 'b', 114, u * 16 + p, MDC_DISK, "ataraid/d%up%u", u, p);
		}
		return true;
	}
	for (size_t i = 0; i < ARRAY_SIZE(md_ctrls); i++) {
		const struct md_ctrl *c = &md_ctrls[i];
		if (strcmp(name, c->name) != 0)
			continue;
		for (unsigned ctr = 0; ctr < c->nctrl; ctr++) {
			unsigned minor = 0;
			for (unsigned ld = 0; ld < c->nld; ld++) {
				md_pushf(l, 'b', c->major_base + ctr, minor++, MDC_DISK, "%s/c%ud%u", c->dir, ctr, ld);
				for (unsigned p = 1; p <= c->nparts; p++)
					md_pushf(l, 'b', c->major_base + ctr, minor++, MDC_DISK, "%s/c%ud%up%u", c->dir,
						 ctr, ld, p);
			}
		}
		if (strcmp(c->name, "dac960") == 0)
			md_push(l, "dac960_gam", 'c', 10, 252, MDC_DISK, NULL);
		return true;
	}
	return false;
}

static int md_expand(const char *name, const char *arch, struct md_list *l, int depth, struct af_error **err);

static int md_expand_set(const struct md_set *s, const char *arch, struct md_list *l, int depth,
			 struct af_error **err)
{
	_cleanup_free_ char *copy = xstrdup(s->members);
	char *save = NULL;
	for (char *m = strtok_r(copy, " ", &save); m; m = strtok_r(NULL, " ", &save)) {
		if (m[0] == '@') {
			char *eq = strchr(m, '=');
			*eq = '\0';
			/* The target points into the static table: stable. */
			md_push(l, m + 1, 'l', 0, 0, MDC_PUBLIC, s->members + (eq + 1 - copy));
			continue;
		}
		if (md_expand(m, arch, l, depth + 1, err) < 0)
			return -1;
	}
	return 0;
}

/* Appends the nodes NAME stands for to L.  0, or -1 + err for an unknown
 * name.  Names starting with '.' are internal members of sets. */
static int md_expand(const char *name, const char *arch, struct md_list *l, int depth, struct af_error **err)
{
	if (depth > 8)
		BUG("makedev set recursion at %s", name);
	if (strcmp(name, "generic") == 0)
		name = arch && strcmp(arch, "arm64") == 0 ? "generic-arm" : "generic-i386";
	for (size_t i = 0; i < ARRAY_SIZE(md_sets); i++)
		if (strcmp(md_sets[i].name, name) == 0)
			return md_expand_set(&md_sets[i], arch, l, depth, err);
	for (size_t i = 0; i < ARRAY_SIZE(md_singles); i++) {
		const struct md_single *s = &md_singles[i];
		if (strcmp(s->name, name) == 0) {
			md_push(l, s->name[0] == '.' ? s->name + 1 : s->name, s->type, s->major, s->minor, s->cls, NULL);
			return 0;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(md_series); i++) {
		const struct md_series *s = &md_series[i];
		if (strcmp(s->set, name) == 0) {
			for (unsigned u = s->set_first; u <= s->set_last; u++)
				md_series_unit(l, s, u);
			return 0;
		}
	}
	if (md_disk_expand(l, name) || md_pty_expand(l, name) || md_floppy_expand(l, name) ||
	    md_tape_expand(l, name) || md_ctrl_expand(l, name))
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(md_series); i++) {
		const struct md_series *s = &md_series[i];
		unsigned u;
		if (md_numbered(name, s->prefix, &u) && u >= s->set_first && u <= s->ind_max) {
			md_series_unit(l, s, u);
			return 0;
		}
	}
	return af_error_set(err, 0, "makedev does not know device '%s': use sets (generic, std, console, pty, fd, null, zero) or nodes like tty1, ttyS0, sda, xvda1, loop0, hvc0, ptmx, random",
			    name);
}

/* The gid of GROUP in an /etc/group text, else Debian's default. */
static gid_t md_group_gid(const char *group_file, const char *group)
{
	size_t gl = strlen(group);
	for (const char *line = group_file; line && *line;) {
		const char *nl = strchr(line, '\n');
		if (strncmp(line, group, gl) == 0 && line[gl] == ':') {
			const char *p = strchr(line + gl + 1, ':');
			if (p && (!nl || p < nl))
				return (gid_t)strtoul(p + 1, NULL, 10);
		}
		line = nl ? nl + 1 : NULL;
	}
	for (size_t i = 0; i < ARRAY_SIZE(md_default_gids); i++)
		if (strcmp(md_default_gids[i].name, group) == 0)
			return md_default_gids[i].gid;
	BUG("makedev: no gid for group %s", group);
}

static const char *md_link_target(const struct md_node *n, char *buf, size_t bufsz)
{
	if (n->type == 'L') {
		const struct md_series *s = &md_series[n->minor];
		snprintf(buf, bufsz, "%s%u", s->prefix, n->major);
		return buf;
	}
	const char *end = strchr(n->target, ' ');
	snprintf(buf, bufsz, "%.*s", end ? (int)(end - n->target) : (int)strlen(n->target), n->target);
	return buf;
}

/* True if what lstat found (ST, EXISTS) is already node N with GID. */
static bool md_same(const struct md_node *n, bool exists, const struct stat *st, int dfd, const char *base, gid_t gid)
{
	if (!exists)
		return false;
	if (n->type == 'l' || n->type == 'L') {
		char target[64], cur[128];
		md_link_target(n, target, sizeof(target));
		ssize_t len = S_ISLNK(st->st_mode) ? readlinkat(dfd, base, cur, sizeof(cur) - 1) : -1;
		return len >= 0 && (cur[len] = '\0', strcmp(cur, target) == 0);
	}
	mode_t fmt = n->type == 'b' ? S_IFBLK : S_IFCHR;
	return (st->st_mode & S_IFMT) == fmt && st->st_rdev == makedev(n->major, n->minor) &&
	       (st->st_mode & 07777) == md_classes[n->cls].mode && st->st_uid == 0 && st->st_gid == gid;
}

/* Makes one node (or symlink) in the image's /dev, through the in-root
 * API: its directory resolved inside the image, the node made under a
 * random name and renamed over NAME.  An identical existing one is kept;
 * an empty directory in the way is removed. */
static int md_make(int rootfd, const char *root, const struct md_node *n, gid_t gid, int *made,
		   struct af_error **err)
{
	_cleanup_free_ char *path = xasprintf("/dev/%s", n->name);
	_cleanup_free_ char *base = NULL;
	_cleanup_fd_ int dfd = inroot_parent(rootfd, root, path, true, &base, err);
	if (dfd < 0)
		return -1;
	struct stat st;
	bool exists = fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (md_same(n, exists, &st, dfd, base, gid))
		return 0;
	if (exists && S_ISDIR(st.st_mode) && unlinkat(dfd, base, AT_REMOVEDIR) < 0)
		return af_error_set(err, errno, "cannot replace the directory '%s' in the image", path);
	if (n->type == 'l' || n->type == 'L') {
		char target[64];
		if (inroot_symlinkat(md_link_target(n, target, sizeof(target)), dfd, base, path, 0, 0, err) < 0)
			return -1;
	} else {
		mode_t fmt = n->type == 'b' ? S_IFBLK : S_IFCHR;
		if (inroot_mknodat(dfd, base, path, fmt | md_classes[n->cls].mode, makedev(n->major, n->minor), 0, gid,
				   err) < 0)
			return af_error_wrap(err, "mknod %c %u %u", n->type, n->major, n->minor);
	}
	(*made)++;
	return 0;
}

/* The image's /etc/group, or NULL when it has none yet (Debian's ids are
 * used then).  -1 + err when it is there but cannot be read. */
static int md_read_groups(int rootfd, const char *root, char **out, struct af_error **err)
{
	_cleanup_error_ struct af_error *why = NULL;
	*out = inroot_read(rootfd, root, "/etc/group", MD_GROUP_MAX, NULL, &why);
	if (*out || af_error_errno(why) == ENOENT)
		return 0;
	return af_error_set(err, 0, "makedev reads the groups of the nodes there: %s", af_error_msg(why));
}

/* Makes every node of L in the image's /dev.  0 or -1 + err. */
static int makedev_create(const char *root, const struct md_list *l, struct af_error **err)
{
	_cleanup_fd_ int rootfd = inroot_root_open(root, err);
	_cleanup_free_ char *groups = NULL;
	if (rootfd < 0 || md_read_groups(rootfd, root, &groups, err) < 0)
		return -1;
	int made = 0;
	for (size_t k = 0; k < l->n; k++)
		if (md_make(rootfd, root, &l->v[k], md_group_gid(groups, md_classes[l->v[k].cls].group), &made, err) < 0)
			return -1;
	log_info("makedev: %zu nodes requested, %d made or replaced in /dev", l->n, made);
	return 0;
}

static int makedev_run(struct stage_ctx *ctx, struct af_error **err)
{
	struct md_list l = { 0 };
	size_t i;
	json_t *d;
	int r = 0;
	json_array_foreach(params_get(ctx->params, "devices"), i, d)
		if ((r = md_expand(json_string_value(d), ctx->arch, &l, 0, err)) < 0)
			break;
	if (r == 0)
		r = makedev_create(ctx->root, &l, err);
	free(l.v);
	return r;
}

/* For plan (stage.h). */
static char *makedev_describe(const struct stage_describe *d)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "make device nodes in /dev: ");
	stage_describe_list(&sb, params_get(d->params, "devices"), 8);
	return strbuf_detach(&sb);
}

const struct stage_type stage_makedev = {
	.name = "makedev",
	.summary = "make device nodes in /dev as Debian's MAKEDEV does (generic, std, console, tty1, ...)",
	.params = makedev_params,
	.flags = STAGE_NEEDS_IMAGE | STAGE_NEEDS_MOUNT,
	.describe = makedev_describe,
	.run = makedev_run,
};
