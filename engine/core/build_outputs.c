/* SPDX-License-Identifier: Apache-2.0 */
/* What a build made (build_outputs.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amiforge/build_outputs.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/mem.h"
#include "amiforge/util.h"

static void copy_string(json_t *to, const char *key, const json_t *facts, const char *fact)
{
	const char *v = json_string_value(json_object_get(facts, fact));
	if (v && *v)
		json_object_set_new(to, key, json_string(v));
}

/* {REGION: AMI} from the ami.REGION family of facts. */
static json_t *ami_ids(const json_t *facts)
{
	json_t *ids = json_object();
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)facts, k, v)
		if (str_has_prefix(k, "ami.") && strcmp(k, "ami.id") && strcmp(k, "ami.name") &&
		    json_is_string(v))
			json_object_set(ids, k + 4, (json_t *)v);
	return ids;
}

json_t *build_outputs_summary(const json_t *facts, const char *image, const char *manifest)
{
	json_t *o = json_object();
	struct stat st;
	if (image && !json_is_true(json_object_get(facts, "disk.is_device")) && stat(image, &st) == 0) {
		json_object_set_new(o, "image", json_string(image));
		json_object_set_new(o, "image_size", json_integer((json_int_t)st.st_size));
	}
	copy_string(o, "snapshot_id", facts, "snapshot.id");
	copy_string(o, "snapshot_region", facts, "snapshot.region");
	copy_string(o, "ami_id", facts, "ami.id");
	json_t *ids = ami_ids(facts);
	if (json_object_size(ids))
		json_object_set_new(o, "ami_ids", ids);
	else
		json_decref(ids);
	copy_string(o, "bundle", facts, "bundle.manifest");
	copy_string(o, "bundle", facts, "bundle.manifest_location");
	if (manifest)
		json_object_set_new(o, "manifest", json_string(manifest));
	return o;
}

void build_outputs_print(const json_t *s)
{
	const json_t *ids = json_object_get(s, "ami_ids");
	if (!json_object_size(s))
		return;
	printf("made:\n");
	const char *image = json_string_value(json_object_get(s, "image"));
	if (image) {
		char sz[32];
		printf("  image      %s (%s)\n", image,
		       format_size((uint64_t)json_integer_value(json_object_get(s, "image_size")), sz, sizeof(sz)));
	}
	const char *snap = json_string_value(json_object_get(s, "snapshot_id"));
	if (snap)
		printf("  snapshot   %s (%s)\n", snap, json_string_value(json_object_get(s, "snapshot_region")) ?: "?");
	const char *region;
	const json_t *id;
	json_object_foreach((json_t *)ids, region, id)
		printf("  ami        %s (%s)\n", json_string_value(id), region);
	if (!json_object_size(ids) && json_object_get(s, "ami_id"))
		printf("  ami        %s\n", json_string_value(json_object_get(s, "ami_id")));
	if (json_object_get(s, "bundle"))
		printf("  bundle     %s\n", json_string_value(json_object_get(s, "bundle")));
	if (json_object_get(s, "manifest"))
		printf("  manifest   %s\n", json_string_value(json_object_get(s, "manifest")));
}

static int add_line(struct strbuf *sb, const char *key, const char *value, const char *path,
		    struct af_error **err)
{
	if (!value)
		return 0;
	if (strchr(value, '\n') || strchr(value, '\r'))
		return af_error_set(err, 0, "%s: the value of %s holds a line break; not written", path, key);
	strbuf_addf(sb, "%s=%s\n", key, value);
	return 0;
}

int build_outputs_append(const char *path, const json_t *s, struct af_error **err)
{
	struct strbuf sb = STRBUF_INIT;
	_cleanup_free_ char *ids = json_object_get(s, "ami_ids")
					   ? json_dumps(json_object_get(s, "ami_ids"), JSON_COMPACT | JSON_SORT_KEYS)
					   : NULL;
	static const char *const keys[] = { "ami_id", "snapshot_id", "image", "manifest", "bundle" };
	int rc = 0;
	for (size_t i = 0; i < ARRAY_SIZE(keys) && rc == 0; i++)
		rc = add_line(&sb, keys[i], json_string_value(json_object_get(s, keys[i])), path, err);
	if (rc == 0)
		rc = add_line(&sb, "ami_ids", ids, path, err);
	if (rc == 0) {
		_cleanup_fd_ int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd < 0 || write_all(fd, sb.buf, sb.len) < 0)
			rc = af_error_set(err, errno, "cannot write the build's outputs to '%s'", path);
	}
	strbuf_release(&sb);
	return rc;
}
