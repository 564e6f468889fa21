/* SPDX-License-Identifier: Apache-2.0 */
/* The pure parts of the instance-store bundle format (reference/FORMATS.md
 * §1 and §6): part names, the manifest text, the PV-GRUB AKI table, the
 * old-GNU sparse tar header, and where the EC2 certificates are found. */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "amiforge/bundle_format.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

size_t bundle_part_count(uint64_t bytes)
{
	return (size_t)((bytes + BUNDLE_PART_SIZE - 1) / BUNDLE_PART_SIZE);
}

char *bundle_part_name(const char *name, size_t index, size_t nparts)
{
	int width = snprintf(NULL, 0, "%zu", nparts);
	return xasprintf("%s.part.%0*zu", name, width, index);
}

/* EC2UG UserProvidedKernels.md, PV-GRUB 1.05 hd0 (FORMATS.md §6). */
static const struct {
	const char *region, *i386, *x86_64;
} bundle_akis[] = {
	{ "ap-northeast-1", "aki-f975a998", "aki-7077ab11" },
	{ "ap-southeast-1", "aki-17a40074", "aki-73a50110" },
	{ "ap-southeast-2", "aki-ba5665d9", "aki-66506305" },
	{ "eu-central-1", "aki-1419e57b", "aki-931fe3fc" },
	{ "eu-west-1", "aki-1c9fd86f", "aki-dc9ed9af" },
	{ "sa-east-1", "aki-7cd34110", "aki-912fbcfd" },
	{ "us-east-1", "aki-04206613", "aki-5c21674b" },
	{ "us-gov-west-1", "aki-5ee9573f", "aki-9ee55bff" },
	{ "us-west-1", "aki-43cf8123", "aki-59cc8239" },
	{ "us-west-2", "aki-7a69931a", "aki-70cb0e10" },
};

const char *bundle_pvgrub_aki(const char *region, const char *arch)
{
	if (!region || !arch)
		return NULL;
	bool x64 = !strcmp(arch, "x86_64") || !strcmp(arch, "amd64");
	if (!x64 && strcmp(arch, "i386") != 0)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(bundle_akis); i++)
		if (!strcmp(bundle_akis[i].region, region))
			return x64 ? bundle_akis[i].x86_64 : bundle_akis[i].i386;
	return NULL;
}

const char *bundle_ec2_cert_name(const char *region)
{
	if (region && str_has_prefix(region, "us-gov-"))
		return "cert-ec2-gov.pem";
	if (region && str_has_prefix(region, "cn-"))
		return "cert-ec2-cn-north-1.pem";
	return "cert-ec2.pem";
}

char *bundle_find_cert(const char *file, struct af_error **err)
{
	struct strbuf tried = STRBUF_INIT;
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';
	char *exe_dir = dirname(exe);
	const char *env = getenv("AMIFORGE_DATA_DIR");
	char *candidates[] = {
		env && *env ? path_join(env, file) : NULL,
		xasprintf("%s/data/ec2-certs/%s", exe_dir, file),
		xasprintf("%s/../data/ec2-certs/%s", exe_dir, file),
		xasprintf("%s/../../data/ec2-certs/%s", exe_dir, file),
		xasprintf("%s/../share/amiforge/ec2-certs/%s", exe_dir, file),
	};
	char *found = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(candidates); i++) {
		if (!candidates[i])
			continue;
		if (!found && access(candidates[i], R_OK) == 0) {
			found = candidates[i];
			continue;
		}
		if (!found)
			strbuf_addf(&tried, "%s%s", tried.len ? ", " : "", candidates[i]);
		free(candidates[i]);
	}
	if (!found)
		af_error_set(err, 0, "EC2 certificate '%s' not found (looked at %s); give ec2_cert: or set AMIFORGE_DATA_DIR",
			     file, tried.buf ? tried.buf : "nothing");
	strbuf_release(&tried);
	return found;
}

/* ---- manifest ---- */

static void bundle_xml_text(struct strbuf *sb, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': strbuf_addstr(sb, "&amp;"); break;
		case '<': strbuf_addstr(sb, "&lt;"); break;
		case '>': strbuf_addstr(sb, "&gt;"); break;
		default: strbuf_add(sb, s, 1);
		}
	}
}

static void bundle_xml_elem(struct strbuf *sb, const char *tag, const char *attrs, const char *text)
{
	strbuf_addf(sb, "<%s%s>", tag, attrs ? attrs : "");
	bundle_xml_text(sb, text);
	strbuf_addf(sb, "</%s>", tag);
}

static int bundle_mapping_cmp(const void *a, const void *b)
{
	const struct bundle_mapping *x = a, *y = b;
	return strcmp(x->virtual_name, y->virtual_name);
}

static void bundle_manifest_machine(struct strbuf *sb, const struct bundle_manifest *m)
{
	strbuf_addstr(sb, "<machine_configuration>");
	bundle_xml_elem(sb, "architecture", NULL, m->arch);
	if (m->n_mappings) {
		/* bundlemachineparameters.rb keeps a hash; manifestv20071010.rb
		 * writes its keys sorted. */
		struct bundle_mapping *sorted = xcalloc(m->n_mappings, sizeof(*sorted));
		memcpy(sorted, m->mappings, m->n_mappings * sizeof(*sorted));
		qsort(sorted, m->n_mappings, sizeof(*sorted), bundle_mapping_cmp);
		strbuf_addstr(sb, "<block_device_mapping>");
		for (size_t i = 0; i < m->n_mappings; i++) {
			strbuf_addstr(sb, "<mapping>");
			bundle_xml_elem(sb, "virtual", NULL, sorted[i].virtual_name);
			bundle_xml_elem(sb, "device", NULL, sorted[i].device);
			strbuf_addstr(sb, "</mapping>");
		}
		strbuf_addstr(sb, "</block_device_mapping>");
		free(sorted);
	}
	if (m->kernel_id)
		bundle_xml_elem(sb, "kernel_id", NULL, m->kernel_id);
	if (m->ramdisk_id)
		bundle_xml_elem(sb, "ramdisk_id", NULL, m->ramdisk_id);
	strbuf_addstr(sb, "</machine_configuration>");
}

static void bundle_manifest_image(struct strbuf *sb, const struct bundle_manifest *m)
{
	static const char alg[] = " algorithm='AES-128-CBC'";
	char num[32];
	strbuf_addstr(sb, "<image>");
	bundle_xml_elem(sb, "name", NULL, m->name);
	bundle_xml_elem(sb, "user", NULL, m->user);
	bundle_xml_elem(sb, "type", NULL, "machine");
	bundle_xml_elem(sb, "digest", " algorithm='SHA1'", m->digest);
	snprintf(num, sizeof(num), "%" PRIu64, m->size);
	bundle_xml_elem(sb, "size", NULL, num);
	snprintf(num, sizeof(num), "%" PRIu64, m->bundled_size);
	bundle_xml_elem(sb, "bundled_size", NULL, num);
	bundle_xml_elem(sb, "ec2_encrypted_key", alg, m->ec2_encrypted_key);
	bundle_xml_elem(sb, "user_encrypted_key", alg, m->user_encrypted_key);
	bundle_xml_elem(sb, "ec2_encrypted_iv", NULL, m->ec2_encrypted_iv);
	bundle_xml_elem(sb, "user_encrypted_iv", NULL, m->user_encrypted_iv);
	strbuf_addf(sb, "<parts count='%zu'>", m->n_parts);
	for (size_t i = 0; i < m->n_parts; i++) {
		strbuf_addf(sb, "<part index='%zu'>", i);
		bundle_xml_elem(sb, "filename", NULL, m->part_names[i]);
		bundle_xml_elem(sb, "digest", " algorithm='SHA1'", m->part_digests[i]);
		strbuf_addstr(sb, "</part>");
	}
	strbuf_addstr(sb, "</parts></image>");
}

char *bundle_manifest_text(const struct bundle_manifest *m, const char *signature)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "<?xml version='1.0'?><manifest><version>2007-10-10</version>"
			   "<bundler><name>ec2-ami-tools</name><version>1.5</version><release>3</release></bundler>");
	bundle_manifest_machine(&sb, m);
	bundle_manifest_image(&sb, m);
	strbuf_addf(&sb, "<signature>%s</signature></manifest>", signature ? signature : "");
	return strbuf_detach(&sb);
}

/* xmlutil.rb get_xml: a plain substring search, start tag to end tag. */
static void bundle_substring(struct strbuf *sb, const char *text, const char *tag)
{
	_cleanup_free_ char *open = xasprintf("<%s>", tag);
	_cleanup_free_ char *close = xasprintf("</%s>", tag);
	const char *s = strstr(text, open);
	const char *e = s ? strstr(s, close) : NULL;
	if (s && e)
		strbuf_add(sb, s, (size_t)(e - s) + strlen(close));
}

char *bundle_signed_data(const char *text)
{
	struct strbuf sb = STRBUF_INIT;
	bundle_substring(&sb, text, "machine_configuration");
	size_t before = sb.len;
	bundle_substring(&sb, text, "image");
	if (sb.len == before) {
		strbuf_release(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}

/* ---- old-GNU sparse tar header (GNU tar 1.34 `tar -c -S --owner 0 --group 0`) ---- */

#define TAR_BLOCK 512
#define TAR_MAP_IN_HEADER 4
#define TAR_MAP_IN_EXT 21

/* Octal with a trailing NUL in a field of WIDTH bytes; base-256 (GNU) when
 * the value does not fit. */
static void tar_number(unsigned char *field, size_t width, uint64_t v)
{
	if (v < (1ull << (3 * (width - 1)))) {
		char tmp[32];
		snprintf(tmp, sizeof(tmp), "%0*" PRIo64, (int)(width - 1), v);
		memcpy(field, tmp, width - 1);
		field[width - 1] = '\0';
		return;
	}
	memset(field, 0, width);
	field[0] = 0x80;
	for (size_t i = width - 1; i > 0 && v; i--, v >>= 8)
		field[i] = (unsigned char)(v & 0xff);
}

size_t bundle_tar_header_size(size_t n_map)
{
	if (n_map == 0)
		return TAR_BLOCK;
	size_t ext = n_map > TAR_MAP_IN_HEADER ? (n_map - TAR_MAP_IN_HEADER + TAR_MAP_IN_EXT - 1) / TAR_MAP_IN_EXT : 0;
	return (1 + ext) * TAR_BLOCK;
}

static void tar_checksum(unsigned char *h)
{
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (size_t i = 0; i < TAR_BLOCK; i++)
		sum += h[i];
	char tmp[16];
	snprintf(tmp, sizeof(tmp), "%06o", sum);
	memcpy(h + 148, tmp, 6);
	h[154] = '\0';
	h[155] = ' ';
}

size_t bundle_tar_header(const struct bundle_tar_member *m, unsigned char *out)
{
	size_t total = bundle_tar_header_size(m->n_map);
	memset(out, 0, total);
	unsigned char *h = out;
	size_t nl = strlen(m->name);
	memcpy(h, m->name, nl < 100 ? nl : 99);
	tar_number(h + 100, 8, m->mode & 07777);
	tar_number(h + 108, 8, 0);
	tar_number(h + 116, 8, 0);
	tar_number(h + 124, 12, m->stored);
	tar_number(h + 136, 12, m->mtime > 0 ? (uint64_t)m->mtime : 0);
	h[156] = m->sparse ? 'S' : '0';
	memcpy(h + 257, "ustar  ", 8);  /* old GNU magic + version, NUL-terminated */
	memcpy(h + 265, "root", 4);
	memcpy(h + 297, "root", 4);
	if (!m->sparse) {
		tar_checksum(h);
		return TAR_BLOCK;
	}
	size_t i = 0;
	for (; i < m->n_map && i < TAR_MAP_IN_HEADER; i++) {
		tar_number(h + 386 + i * 24, 12, m->map[i][0]);
		tar_number(h + 386 + i * 24 + 12, 12, m->map[i][1]);
	}
	h[482] = i < m->n_map ? 1 : 0;
	tar_number(h + 483, 12, m->realsize);
	tar_checksum(h);
	for (unsigned char *x = h + TAR_BLOCK; i < m->n_map; x += TAR_BLOCK) {
		size_t j = 0;
		for (; j < TAR_MAP_IN_EXT && i < m->n_map; j++, i++) {
			tar_number(x + j * 24, 12, m->map[i][0]);
			tar_number(x + j * 24 + 12, 12, m->map[i][1]);
		}
		x[504] = i < m->n_map ? 1 : 0;
	}
	return total;
}
