/* SPDX-License-Identifier: Apache-2.0 */
/* partition: write an MBR or GPT partition table with libfdisk straight into
 * the image file (or device), every partition aligned to 1 MiB, and read it
 * back.  Identifiers (MBR disk id, GPT disk and partition GUIDs) are derived
 * from the stage key, so rebuilding the same recipe gives the same bytes. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <libfdisk.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define PART_MIB (UINT64_C(1) << 20)
/* GPT keeps a backup header (1 sector) and entry array (32 sectors for 128
 * entries of 128 bytes at 512-byte sectors; 4 at 4096) at the end. */
#define PART_GPT_TAIL_BYTES (UINT64_C(33) * 512)

#define PART_TYPE_BIOS "21686148-6449-6E6F-744E-656564454649"
#define PART_TYPE_ESP "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
#define PART_TYPE_LINUX "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
#define PART_MBR_LINUX 0x83

static const char *const partition_tables[] = { "none", "mbr", "gpt", NULL };

static const struct param_spec partition_params[] = {
	{ .name = "table", .type = PT_ENUM, .flags = PARAM_REQUIRED, .choices = partition_tables,
	  .help = "partition table: none (filesystem on the whole disk), mbr or gpt" },
	{ .name = "esp", .type = PT_SIZE, .help = "size of an EFI system partition before the root (gpt only)" },
	{ .name = "bios_boot", .type = PT_BOOL, .help = "add a 1MiB BIOS boot partition for GRUB (gpt only)",
	  .defval = "false" },
	{ .name = "root_size", .type = PT_SIZE, .help = "size of the root partition", .defval = "the rest of the disk" },
	{ .name = NULL },
};

/* Byte geometry of the partitions to create (0 size: absent). */
struct part_plan {
	uint64_t bios_off, bios_size;
	uint64_t esp_off, esp_size;
	uint64_t root_off, root_size;
};

static int partition_check(const json_t *params, struct af_error **err)
{
	const char *table = params_str(params, "table", "none");
	if (strcmp(table, "gpt") != 0) {
		if (params_get(params, "esp"))
			return af_error_set(err, 0, "esp needs table: gpt (an EFI system partition lives in a GPT)");
		if (params_get(params, "bios_boot"))
			return af_error_set(err, 0, "bios_boot needs table: gpt");
	}
	return 0;
}

/* GPT GUIDs are written in upper case, as fdisk prints them. */
static void uuid_derive_upper(const char *key, const char *purpose, char out[37])
{
	uuid_derive(key, purpose, out);
	for (char *c = out; *c; c++)
		*c = (char)toupper((unsigned char)*c);
}

static uint64_t partition_align_down(uint64_t v) { return v / PART_MIB * PART_MIB; }
static uint64_t partition_align_up(uint64_t v) { return (v + PART_MIB - 1) / PART_MIB * PART_MIB; }

/* Lays out [bios boot][esp] root from 1 MiB, every start and size a
 * multiple of 1 MiB.  Pure: unit-tested. */
static int partition_plan(bool gpt, uint64_t disk_bytes, uint64_t esp, bool bios, uint64_t root_size,
			  struct part_plan *out, struct af_error **err)
{
	char b1[32], b2[32];
	struct part_plan p = { 0 };
	uint64_t end = gpt ? (disk_bytes > PART_GPT_TAIL_BYTES ? disk_bytes - PART_GPT_TAIL_BYTES : 0)
			   : disk_bytes;
	end = partition_align_down(end);
	uint64_t pos = PART_MIB;
	if (bios) {
		p.bios_off = pos;
		p.bios_size = PART_MIB;
		pos += PART_MIB;
	}
	if (esp) {
		p.esp_off = pos;
		p.esp_size = partition_align_up(esp);
		pos += p.esp_size;
	}
	p.root_off = pos;
	if (root_size)
		p.root_size = partition_align_up(root_size);
	else
		p.root_size = end > pos ? end - pos : 0;
	if (p.root_size < PART_MIB)
		return af_error_set(err, 0, "no room for a root partition of at least 1MiB on a disk of %s (partitions before it end at %s); allocate a bigger disk",
				    format_size(disk_bytes, b1, sizeof(b1)), format_size(pos, b2, sizeof(b2)));
	if (p.root_off + p.root_size > end)
		return af_error_set(err, 0, "root_size %s does not fit on the disk of %s; lower root_size or allocate a bigger disk",
				    format_size(p.root_size, b1, sizeof(b1)), format_size(disk_bytes, b2, sizeof(b2)));
	*out = p;
	return 0;
}

static void partition_free_context(struct fdisk_context **c)
{
	if (*c)
		fdisk_unref_context(*c);
}
#define _cleanup_fdisk_ __attribute__((cleanup(partition_free_context)))

static int partition_fdisk_err(struct af_error **err, int rc, const char *what, const char *image)
{
	return af_error_set(err, rc < 0 ? -rc : 0, "%s on '%s'", what, image);
}

/* Adds one partition of bytes [off, off+size) with a type and GUID. */
static int partition_add(struct fdisk_context *cxt, const char *image, size_t partno, uint64_t off, uint64_t size,
			 struct fdisk_parttype *type, const char *guid, const char *name, struct af_error **err)
{
	uint64_t ss = fdisk_get_sector_size(cxt);
	struct fdisk_partition *pa = fdisk_new_partition();
	if (!pa)
		BUG("out of memory");
	int rc = fdisk_partition_set_partno(pa, partno);
	if (!rc)
		rc = fdisk_partition_set_start(pa, off / ss);
	if (!rc)
		rc = fdisk_partition_set_size(pa, size / ss);
	if (!rc)
		rc = fdisk_partition_set_type(pa, type);
	if (!rc && guid)
		rc = fdisk_partition_set_uuid(pa, guid);
	if (!rc && name)
		rc = fdisk_partition_set_name(pa, name);
	if (!rc)
		rc = fdisk_add_partition(cxt, pa, NULL);
	fdisk_unref_partition(pa);
	if (rc)
		return af_error_set(err, rc < 0 ? -rc : 0, "add partition %zu on '%s'", partno + 1, image);
	return 0;
}

static struct fdisk_parttype *partition_type(struct fdisk_context *cxt, bool gpt, const char *guid)
{
	struct fdisk_label *lb = fdisk_get_label(cxt, NULL);
	struct fdisk_parttype *t = gpt ? fdisk_label_get_parttype_from_string(lb, guid)
				       : fdisk_label_get_parttype_from_code(lb, PART_MBR_LINUX);
	if (!t)
		BUG("libfdisk has no partition type %s", gpt ? guid : "0x83");
	return t;
}

static int partition_write(const char *image, const char *key, bool gpt, uint64_t esp, bool bios,
			   uint64_t root_size, struct part_plan *plan, struct af_error **err)
{
	_cleanup_fdisk_ struct fdisk_context *cxt = fdisk_new_context();
	char id[40];
	int rc;

	if (!cxt)
		BUG("out of memory");
	fdisk_disable_dialogs(cxt, 1);
	/* The grain is read when the device is assigned; starts and sizes are
	 * explicit anyway, this makes libfdisk agree with them. */
	if ((rc = fdisk_save_user_grain(cxt, PART_MIB)))
		return partition_fdisk_err(err, rc, "set 1MiB alignment", image);
	if ((rc = fdisk_assign_device(cxt, image, 0)))
		return partition_fdisk_err(err, rc, "open for partitioning", image);
	uint64_t disk_bytes = (uint64_t)fdisk_get_nsectors(cxt) * fdisk_get_sector_size(cxt);
	if (partition_plan(gpt, disk_bytes, esp, bios, root_size, plan, err) < 0)
		return -1;
	if ((rc = fdisk_create_disklabel(cxt, gpt ? "gpt" : "dos")))
		return partition_fdisk_err(err, rc, "create partition table", image);
	if (gpt) {
		uuid_derive_upper(key, "gpt-disk", id);
	} else {
		/* The MBR disk signature: 32 bits of the key's hash, never 0. */
		char g[37];
		uuid_derive_upper(key, "mbr-disk", g);
		unsigned long sig = strtoul((char[9]){ g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], 0 }, NULL, 16);
		snprintf(id, sizeof(id), "0x%08lx", sig ? sig : 1ul);
	}
	if ((rc = fdisk_set_disklabel_id_from_string(cxt, id)))
		return partition_fdisk_err(err, rc, "set disk id", image);

	size_t n = 0;
	char guid[37];
	if (plan->bios_size) {
		uuid_derive_upper(key, "part-bios", guid);
		if (partition_add(cxt, image, n++, plan->bios_off, plan->bios_size,
				  partition_type(cxt, gpt, PART_TYPE_BIOS), guid, "BIOS boot", err) < 0)
			return -1;
	}
	if (plan->esp_size) {
		uuid_derive_upper(key, "part-esp", guid);
		if (partition_add(cxt, image, n++, plan->esp_off, plan->esp_size,
				  partition_type(cxt, gpt, PART_TYPE_ESP), guid, "EFI System", err) < 0)
			return -1;
	}
	uuid_derive_upper(key, "part-root", guid);
	if (partition_add(cxt, image, n, plan->root_off, plan->root_size, partition_type(cxt, gpt, PART_TYPE_LINUX),
			  gpt ? guid : NULL, gpt ? "rootfs" : NULL, err) < 0)
		return -1;
	if (!gpt && (rc = fdisk_toggle_partition_flag(cxt, n, DOS_FLAG_ACTIVE)))
		return partition_fdisk_err(err, rc, "set the bootable flag", image);
	if ((rc = fdisk_write_disklabel(cxt)))
		return partition_fdisk_err(err, rc, "write partition table", image);
	if ((rc = fdisk_deassign_device(cxt, 0)))
		return partition_fdisk_err(err, rc, "sync partition table", image);
	return 0;
}

/* Reads the table back from the disk and outputs what is really there. */
static int partition_readback(const char *image, bool gpt, json_t *out, struct af_error **err)
{
	_cleanup_fdisk_ struct fdisk_context *cxt = fdisk_new_context();
	struct fdisk_table *tb = NULL;
	int rc;

	if (!cxt)
		BUG("out of memory");
	if ((rc = fdisk_assign_device(cxt, image, 1)))
		return partition_fdisk_err(err, rc, "open to read the partition table", image);
	if (!fdisk_is_labeltype(cxt, gpt ? FDISK_DISKLABEL_GPT : FDISK_DISKLABEL_DOS))
		return af_error_set(err, 0, "reading back '%s': no %s partition table found after writing it", image,
				    gpt ? "GPT" : "MBR");
	if ((rc = fdisk_get_partitions(cxt, &tb)))
		return partition_fdisk_err(err, rc, "read partitions", image);
	uint64_t ss = fdisk_get_sector_size(cxt);
	bool root_seen = false;
	for (size_t i = 0; i < fdisk_table_get_nents(tb); i++) {
		struct fdisk_partition *pa = fdisk_table_get_partition(tb, i);
		struct fdisk_parttype *t = fdisk_partition_get_type(pa);
		uint64_t off = fdisk_partition_get_start(pa) * ss, size = fdisk_partition_get_size(pa) * ss;
		json_int_t num = (json_int_t)fdisk_partition_get_partno(pa) + 1;
		const char *what = "root";
		if (off % PART_MIB || size % PART_MIB) {
			fdisk_unref_table(tb);
			return af_error_set(err, 0, "partition %lld on '%s' is not 1MiB aligned", (long long)num, image);
		}
		if (gpt && t && strcasecmp(fdisk_parttype_get_string(t), PART_TYPE_BIOS) == 0) {
			json_object_set_new(out, "bios_boot.partnum", json_integer(num));
			continue;
		}
		if (gpt && t && strcasecmp(fdisk_parttype_get_string(t), PART_TYPE_ESP) == 0)
			what = "esp";
		else
			root_seen = true;
		char k[32];
		snprintf(k, sizeof(k), "%s.offset", what);
		json_object_set_new(out, k, json_integer((json_int_t)off));
		snprintf(k, sizeof(k), "%s.size", what);
		json_object_set_new(out, k, json_integer((json_int_t)size));
		snprintf(k, sizeof(k), "%s.partnum", what);
		json_object_set_new(out, k, json_integer(num));
		log_info("partition %lld: %s at %" PRIu64 " MiB, %" PRIu64 " MiB", (long long)num, what, off / PART_MIB,
			 size / PART_MIB);
	}
	fdisk_unref_table(tb);
	char *id = NULL;
	if (fdisk_get_disklabel_id(cxt, &id) == 0 && id) {
		json_object_set_new(out, "disk.id", json_string(id));
		free(id);
	}
	if (!root_seen)
		return af_error_set(err, 0, "reading back '%s': the root partition is missing", image);
	return 0;
}

static int partition_run(struct stage_ctx *ctx, struct af_error **err)
{
	const char *table = params_str(ctx->params, "table", "none");
	json_object_set_new(ctx->outputs, "partition.table", json_string(table));
	if (strcmp(table, "none") == 0) {
		/* The filesystem goes on the whole disk: the allocate facts stand. */
		const json_t *size = json_object_get(ctx->facts, "disk.size");
		json_object_set_new(ctx->outputs, "root.offset", json_integer(0));
		if (size)
			json_object_set_new(ctx->outputs, "root.size", json_integer(json_integer_value(size)));
		json_object_set_new(ctx->outputs, "root.partnum", json_integer(0));
		log_info("no partition table: the root filesystem uses the whole disk");
		return 0;
	}
	bool gpt = strcmp(table, "gpt") == 0;
	struct part_plan plan = { 0 };
	if (partition_write(ctx->image, ctx->key, gpt, (uint64_t)params_int(ctx->params, "esp", 0),
			    params_bool(ctx->params, "bios_boot", false), (uint64_t)params_int(ctx->params, "root_size", 0),
			    &plan, err) < 0)
		return -1;
	return partition_readback(ctx->image, gpt, ctx->outputs, err);
}

/* For plan (stage.h): the layout partition_plan makes, in words, and the
 * facts it fixes without knowing the disk's size. */
static char *partition_describe(const struct stage_describe *d)
{
	const char *table = params_str(d->params, "table", "none");
	uint64_t esp = (uint64_t)params_int(d->params, "esp", 0), root = (uint64_t)params_int(d->params, "root_size", 0);
	bool bios = params_bool(d->params, "bios_boot", false);
	char b1[32], b2[32];
	stage_describe_know(d, "partition.table", table);
	if (!strcmp(table, "none"))
		return xstrdup("write no partition table: the filesystem takes the whole disk");
	uint64_t pos = PART_MIB;
	json_int_t num = 1;
	if (bios) {
		json_object_set_new(d->known, "bios_boot.partnum", json_integer(num++));
		pos += PART_MIB;
	}
	if (esp) {
		json_object_set_new(d->known, "esp.offset", json_integer((json_int_t)pos));
		json_object_set_new(d->known, "esp.size", json_integer((json_int_t)partition_align_up(esp)));
		json_object_set_new(d->known, "esp.partnum", json_integer(num++));
		pos += partition_align_up(esp);
	}
	json_object_set_new(d->known, "root.offset", json_integer((json_int_t)pos));
	json_object_set_new(d->known, "root.partnum", json_integer(num));
	_cleanup_free_ char *rootsz = root ? xstrdup(stage_describe_size(partition_align_up(root), b1, sizeof(b1)))
					   : xstrdup("the rest of the disk");
	if (!strcmp(table, "mbr"))
		return xasprintf("write an MBR table: one root partition (%s)", rootsz);
	return xasprintf("write a GPT: %s%s%s%sroot (%s)", bios ? "BIOS boot (1 MiB), " : "", esp ? "EFI system partition (" : "",
			 esp ? stage_describe_size(partition_align_up(esp), b2, sizeof(b2)) : "", esp ? "), " : "", rootsz);
}

static const struct fact_need partition_needs[] = { { "disk.size", NULL }, { NULL, NULL } };
static const char *const partition_provides[] = { "disk.id", "partition.table", "root.offset", "root.size", "root.partnum", "esp.offset", "esp.size", "esp.partnum", "bios_boot.partnum", NULL };

const struct stage_type stage_partition = {
	.name = "partition",
	.summary = "write an MBR or GPT partition table (1MiB aligned; gpt may add ESP and BIOS boot partitions)",
	.params = partition_params,
	.flags = STAGE_NEEDS_IMAGE,
	.needs = partition_needs,
	.provides = partition_provides,
	.check = partition_check,
	.describe = partition_describe,
	.run = partition_run,
};
