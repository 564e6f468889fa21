/* SPDX-License-Identifier: Apache-2.0 */
/* The facts stages hand each other: every one, its type and meaning, in one
 * list.  A stage declares the facts it needs from earlier stages and the ones
 * it provides (struct stage_type, stage.h); the recipe loader checks the
 * order with facts_check() before anything runs, and the runner refuses a
 * stage output the stage did not declare or of the wrong type
 * (facts_check_outputs), so the declarations cannot drift from the code.
 *
 * Adding a fact: one line here, then the stage's provides (and the needs of
 * whoever reads it unconditionally). */
#ifndef AMIFORGE_FACTS_H
#define AMIFORGE_FACTS_H

#include <stddef.h>
#include <jansson.h>

#include "amiforge/stage.h"

struct af_error;

enum fact_type { FACT_STRING, FACT_INT, FACT_BOOL };

/* X(name, type, meaning).  A name ending in ".*" is a family: any name
 * with that prefix and a non-empty rest. */
#define AMIFORGE_FACTS(X)                                                                                   \
	X("disk.path", FACT_STRING, "the image: STATE/disk.img or the block device")                      \
	X("disk.size", FACT_INT, "the image's size in bytes")                                               \
	X("disk.is_device", FACT_BOOL, "the image is a block device, not a file")                          \
	X("disk.id", FACT_STRING, "the MBR disk id or GPT disk GUID")                                       \
	X("partition.table", FACT_STRING, "none, mbr or gpt")                                               \
	X("root.offset", FACT_INT, "byte offset of the root filesystem in the image")                      \
	X("root.size", FACT_INT, "bytes of the root filesystem's partition (or the whole disk)")          \
	X("root.partnum", FACT_INT, "the root partition's number, 0 without a partition table")           \
	X("root.fstype", FACT_STRING, "the root filesystem's type (ext4, ext3, ext2)")                     \
	X("root.uuid", FACT_STRING, "the root filesystem's UUID")                                          \
	X("root.label", FACT_STRING, "the root filesystem's label (may be empty)")                         \
	X("root.pvgrub_compatible", FACT_BOOL, "PV-GRUB (GRUB legacy) can read the root filesystem")      \
	X("esp.offset", FACT_INT, "byte offset of the EFI system partition")                               \
	X("esp.size", FACT_INT, "bytes of the EFI system partition")                                       \
	X("esp.partnum", FACT_INT, "the EFI system partition's number")                                    \
	X("esp.fstype", FACT_STRING, "the EFI system partition's filesystem (vfat)")                       \
	X("bios_boot.partnum", FACT_INT, "the GPT BIOS boot partition's number")                           \
	X("debootstrap.tool", FACT_STRING, "mmdebstrap or debootstrap")                                     \
	X("debootstrap.suite", FACT_STRING, "the Debian suite installed")                                   \
	X("debootstrap.mirror", FACT_STRING, "the mirror it was installed from")                            \
	X("files.count", FACT_INT, "files written by the files stage")                                      \
	X("network.backend", FACT_STRING, "ifupdown, networkd or netplan")                                  \
	X("network.hostname", FACT_STRING, "the image's hostname")                                          \
	X("user.name", FACT_STRING, "the login user the image was given")                                   \
	X("user.home", FACT_STRING, "that user's home directory")                                           \
	X("ssh.user", FACT_STRING, "the user that receives the instance's SSH key")                        \
	X("ssh.prep_instance", FACT_BOOL, "/etc/prep-instance and its unit are installed")                  \
	X("kernel.package", FACT_STRING, "the kernel package installed")                                    \
	X("kernel.version", FACT_STRING, "its version (uname -r)")                                          \
	X("kernel.image", FACT_STRING, "/boot path of the kernel")                                          \
	X("kernel.initrd", FACT_STRING, "/boot path of the initrd")                                         \
	X("kernel.cmdline", FACT_STRING, "the kernel command line the bootloader wrote")                   \
	X("bootloader.type", FACT_STRING, "grub, pvgrub or none")                                           \
	X("bootloader.firmware", FACT_STRING, "bios, uefi or both (grub)")                                  \
	X("bootloader.config", FACT_STRING, "path of the boot menu in the image")                          \
	X("bootloader.pvgrub_root", FACT_STRING, "the GRUB legacy root device of menu.lst")                \
	X("sanitize.removed", FACT_INT, "files removed by sanitize")                                        \
	X("sanitize.files_scanned", FACT_INT, "files scanned for secrets")                                  \
	X("bundle.dir", FACT_STRING, "the directory holding the bundle")                                    \
	X("bundle.name", FACT_STRING, "the bundle's image name")                                            \
	X("bundle.manifest", FACT_STRING, "path of NAME.manifest.xml")                                      \
	X("bundle.digest", FACT_STRING, "SHA-1 of the image as the manifest states it")                     \
	X("bundle.parts", FACT_INT, "number of bundle parts")                                               \
	X("bundle.size", FACT_INT, "bytes of the bundled (compressed, encrypted) image")                   \
	X("bundle.arch", FACT_STRING, "the manifest's architecture")                                        \
	X("bundle.kernel_id", FACT_STRING, "the AKI the manifest names (absent: none)")                    \
	X("bundle.region", FACT_STRING, "the region the bundle's EC2 certificate is for")                  \
	X("bundle.x509_cert", FACT_STRING, "path of the user certificate the bundle was made with")        \
	X("bundle.bucket", FACT_STRING, "the S3 bucket the bundle was uploaded to")                        \
	X("bundle.bucket_region", FACT_STRING, "that bucket's region")                                      \
	X("bundle.prefix", FACT_STRING, "the key prefix of the uploaded parts")                            \
	X("bundle.manifest_location", FACT_STRING, "BUCKET/PREFIX/NAME.manifest.xml, what register takes") \
	X("snapshot.id", FACT_STRING, "the EBS snapshot made from the image")                               \
	X("snapshot.region", FACT_STRING, "the snapshot's region")                                          \
	X("snapshot.volume_size", FACT_INT, "the snapshot's volume size in GiB")                           \
	X("snapshot.parent", FACT_STRING, "the snapshot it was made over (absent: a full snapshot)")      \
	X("snapshot.blocks_sent", FACT_INT, "blocks written to the snapshot (ChangedBlocksCount)")       \
	X("snapshot.image_key", FACT_STRING, "the disk key of the image the snapshot holds")             \
	X("snapshot.blocks_sha256", FACT_STRING, "SHA-256 naming the block list the snapshot holds")      \
	X("ami.id", FACT_STRING, "the registered AMI")                                                      \
	X("ami.name", FACT_STRING, "its name")                                                              \
	X("ami.*", FACT_STRING, "the AMI in region * (ami.eu-west-1): the registered one and each copy")   \
	X("register.snapshots.*", FACT_STRING, "the snapshots of the AMI in region *, comma-separated")   \
	X("register.expires", FACT_STRING, "the AMIs' expiry (amiforge:expires tag, deprecation time)")  \
	X("register.shares", FACT_STRING, "the launch permissions granted, comma-separated")

struct fact_def {
	const char *name;
	enum fact_type type;
	const char *meaning;
};

/* NULL if the catalogue has no such fact. */
const struct fact_def *facts_find(const char *name);
const struct fact_def *facts_catalogue(size_t *count);
const char *facts_type_name(enum fact_type t);

/* The needs a stage type's flags imply (the runner mounts the root with
 * root.*): NULL-terminated, static. */
const struct fact_need *facts_implied(unsigned stage_flags);

/* One stage of a recipe, as the check sees it. */
struct fact_stage {
	const struct stage_type *type;
	const json_t *params;
	const char *id;
};

/* Every stage type (the registry's), to name the ones that provide a
 * missing fact. */
struct fact_types {
	const struct stage_type *const *all;
	size_t n;
};

/* Reports each stage whose needs no earlier stage provides, and each
 * combination a stage's plan_check refuses: report(data, stage index,
 * message) per problem.  Returns the number of problems. */
typedef void (*fact_report_fn)(void *data, size_t stage, const char *msg);
size_t facts_check(const struct fact_stage *stages, size_t n, const struct fact_types *types, fact_report_fn report,
		   void *data);

/* What the stages before the checked one will provide, for plan_check:
 * the latest earlier stage that may provide FACT, or NULL. */
struct fact_plan {
	const struct fact_stage *stages;
	size_t upto;
	const struct fact_types *types;
};
const struct fact_stage *facts_plan_provider(const struct fact_plan *p, const char *fact);

/* A finished stage's outputs against its declaration and the catalogue:
 * 0, or -1 + err naming the stage and the fact (a bug in the stage). */
int facts_check_outputs(const struct stage_type *type, const json_t *outputs, struct af_error **err);

#endif
