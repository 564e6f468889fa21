/* SPDX-License-Identifier: Apache-2.0 */
/* The one list of stage types, sorted by name (tests/unit/test_registry.c
 * checks the order and that every entry is complete). */
#include <string.h>

#include "amiforge/stage.h"
#include "amiforge/util.h"

extern const struct stage_type stage_allocate;
extern const struct stage_type stage_bootloader;
extern const struct stage_type stage_bundle;
extern const struct stage_type stage_debootstrap;
extern const struct stage_type stage_files;
extern const struct stage_type stage_fstab;
extern const struct stage_type stage_kernel;
extern const struct stage_type stage_makedev;
extern const struct stage_type stage_mkfs;
extern const struct stage_type stage_network;
extern const struct stage_type stage_packages;
extern const struct stage_type stage_partition;
extern const struct stage_type stage_register;
extern const struct stage_type stage_run;
extern const struct stage_type stage_sanitize;
extern const struct stage_type stage_snapshot;
extern const struct stage_type stage_ssh;
extern const struct stage_type stage_upload;
extern const struct stage_type stage_user;

static const struct stage_type *const registry[] = {
	&stage_allocate,
	&stage_bootloader,
	&stage_bundle,
	&stage_debootstrap,
	&stage_files,
	&stage_fstab,
	&stage_kernel,
	&stage_makedev,
	&stage_mkfs,
	&stage_network,
	&stage_packages,
	&stage_partition,
	&stage_register,
	&stage_run,
	&stage_sanitize,
	&stage_snapshot,
	&stage_ssh,
	&stage_upload,
	&stage_user,
};

const struct stage_type *const *registry_all(size_t *count)
{
	*count = ARRAY_SIZE(registry);
	return registry;
}

const struct stage_type *registry_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(registry); i++)
		if (strcmp(registry[i]->name, name) == 0)
			return registry[i];
	return NULL;
}
