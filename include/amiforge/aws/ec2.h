/* SPDX-License-Identifier: Apache-2.0 */
/* The EC2 Query API, Version 2016-11-15 (reference/FORMATS.md §4).
 *
 * Requests are POST / with an application/x-www-form-urlencoded body
 * (Action=X&Version=2016-11-15&...; lists as Name.1, Name.2, nested members
 * with dots), SigV4-signed for service "ec2" (request.h), sent through http.c (retries,
 * timeouts).  Responses are parsed with libxml2; list results follow
 * NextToken to the end.  Errors become one message through http.c's
 * classifier: "ec2 ACTION: CODE: MESSAGE (HTTP N, request id R) ...".
 *
 * Every function returns 0 on success or -1 + err; output parameters are
 * set only on success and are owned by the caller (release functions
 * below).  Request structs borrow their strings.  A client is not
 * thread-safe to modify but may be shared by threads that only call. */
#ifndef AMIFORGE_AWS_EC2_H
#define AMIFORGE_AWS_EC2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct af_error;
struct aws_creds_chain;
struct http_options;

#define EC2_API_VERSION "2016-11-15"

/* A tag (borrowed strings).  value may be NULL: "" when creating, "any
 * value" in ec2_delete_tags. */
struct aws_tag {
	const char *key;
	const char *value;
};

/* ---- client ------------------------------------------------------------ */

struct ec2_client {
	char *region;                   /* owned */
	char *endpoint;                 /* owned, no trailing slash */
	struct aws_creds_chain *creds;  /* borrowed */
	const struct http_options *opts; /* borrowed, NULL: defaults; a session's: deadline-bound */
};

/* Client for REGION at aws_endpoint_url("ec2", region) (AWS_ENDPOINT_URL_EC2,
 * AWS_ENDPOINT_URL, or https://ec2.REGION.amazonaws.com).  Never fails. */
void ec2_client_init(struct ec2_client *c, const char *region, struct aws_creds_chain *creds,
		     const struct http_options *opts);
void ec2_client_release(struct ec2_client *c);

/* ---- request encoding (exposed for tests and for calls not wrapped) ----- */

struct ec2_params {
	struct ec2_param {
		char *name;
		char *value;
	} *v;                           /* owned */
	size_t n, alloc;
};
#define EC2_PARAMS_INIT { NULL, 0, 0 }

/* Adds NAME=VALUE (both copied).  A NULL value adds nothing. */
void ec2_params_add(struct ec2_params *p, const char *name, const char *value);
/* Adds a parameter whose name is formatted: ("Filter.%zu.Name", i). */
void ec2_params_addf(struct ec2_params *p, const char *value, const char *name_fmt, ...)
	__attribute__((format(printf, 3, 4)));
void ec2_params_add_bool(struct ec2_params *p, const char *name, bool value);
void ec2_params_add_int(struct ec2_params *p, const char *name, int64_t value);
/* PREFIX.1=v[0], PREFIX.2=v[1], ... */
void ec2_params_add_list(struct ec2_params *p, const char *prefix, const char *const *v, size_t n);
/* PREFIX.N.Key / PREFIX.N.Value (Value omitted when NULL and omit_null). */
void ec2_params_add_tags(struct ec2_params *p, const char *prefix, const struct aws_tag *tags,
			 size_t n, bool omit_null);
/* TagSpecification.1.ResourceType=TYPE + .Tag.N.Key/Value (nothing if n is 0). */
void ec2_params_add_tag_spec(struct ec2_params *p, const char *resource_type,
			     const struct aws_tag *tags, size_t n);

/* Filter.N.Name and Filter.N.Value.M. */
struct ec2_filter {
	const char *name;
	const char *const *values;
	size_t n_values;
};
void ec2_params_add_filters(struct ec2_params *p, const struct ec2_filter *f, size_t n);

/* "Action=ACTION&Version=2016-11-15&k=v..." with AWS's encoding (RFC 3986
 * unreserved kept, space as %20), in the order added.  Caller frees. */
char *ec2_params_encode(const struct ec2_params *p, const char *action);
void ec2_params_release(struct ec2_params *p);

/* Sends ACTION with P and returns the parsed response document in *doc
 * (caller frees with xmlFreeDoc; pass NULL to discard).  Errors as above. */
struct _xmlDoc;
int ec2_call(const struct ec2_client *c, const char *action, const struct ec2_params *p,
	     struct _xmlDoc **doc, struct af_error **err);

/* Calls ACTION repeatedly, following NextToken, and hands each page's
 * document to PAGE (which returns 0, or -1 + err to stop).  P is not
 * modified. */
int ec2_call_paged(const struct ec2_client *c, const char *action, const struct ec2_params *p,
		   int (*page)(struct _xmlDoc *doc, void *data, struct af_error **err), void *data,
		   struct af_error **err);

/* Parses an EC2 error body (<Response><Errors><Error><Code/><Message/>...
 * <RequestID/>).  Returns 0 and sets the three (caller frees; any may be
 * NULL if absent), or -1 when BODY is not an EC2 error document. */
int ec2_parse_error(const char *body, size_t len, char **code, char **message, char **request_id);

/* ---- results ----------------------------------------------------------- */

struct ec2_tag_list {
	struct ec2_kv {
		char *key;
		char *value;
	} *v;
	size_t n;
};

struct ec2_block_mapping {
	char *device_name;
	char *snapshot_id;       /* NULL for ephemeral / no-device */
	char *volume_type;
	int64_t volume_size;     /* GiB, 0 if none */
	bool delete_on_termination;
};

struct ec2_image {
	char *image_id, *name, *state, *owner_id, *architecture, *virtualization_type;
	char *root_device_type, *root_device_name, *description, *creation_date;
	char *image_location, *kernel_id, *ramdisk_id, *boot_mode, *deprecation_time;
	char *state_reason;      /* "code: message" when the image failed */
	bool ena_support, is_public;
	struct ec2_block_mapping *bdm;
	size_t n_bdm;
	struct ec2_tag_list tags;
};

struct ec2_image_list {
	struct ec2_image *v;
	size_t n;
};
void ec2_image_list_release(struct ec2_image_list *l);

struct ec2_snapshot {
	char *snapshot_id, *volume_id, *state, *progress, *start_time, *description, *owner_id;
	char *state_message;
	int64_t volume_size;
	bool encrypted;
	struct ec2_tag_list tags;
};

struct ec2_snapshot_list {
	struct ec2_snapshot *v;
	size_t n;
};
void ec2_snapshot_list_release(struct ec2_snapshot_list *l);

struct ec2_instance {
	char *instance_id, *image_id, *state, *instance_type, *availability_zone;
	struct ec2_tag_list tags;
};

struct ec2_instance_list {
	struct ec2_instance *v;
	size_t n;
};
void ec2_instance_list_release(struct ec2_instance_list *l);

/* Parsers for one response document (exposed for unit tests).  They append
 * to *out.  0, or -1 + err when the document is not the expected response. */
int ec2_parse_images(struct _xmlDoc *doc, struct ec2_image_list *out, struct af_error **err);
int ec2_parse_snapshots(struct _xmlDoc *doc, struct ec2_snapshot_list *out, struct af_error **err);
int ec2_parse_instances(struct _xmlDoc *doc, struct ec2_instance_list *out, struct af_error **err);

/* ---- calls --------------------------------------------------------------- */

/* A block device mapping for RegisterImage / CreateImage.  Zero values are
 * omitted; tri-state ints: -1 omit, 0 false, 1 true. */
struct ec2_block_device {
	const char *device_name;   /* required: "/dev/xvda" */
	const char *snapshot_id;
	const char *volume_type;   /* "gp3" */
	const char *virtual_name;  /* "ephemeral0" */
	const char *kms_key_id;
	int64_t volume_size;       /* GiB */
	int64_t iops, throughput;
	int delete_on_termination; /* tri-state */
	int encrypted;             /* tri-state */
	bool no_device;
};

struct ec2_register_image {
	const char *name;                 /* required, 3-128 characters */
	const char *description;
	const char *architecture;         /* i386 | x86_64 | arm64 */
	const char *image_location;       /* instance-store: "bucket/prefix.manifest.xml" */
	const char *root_device_name;     /* "/dev/xvda" */
	const char *virtualization_type;  /* hvm | paravirtual */
	const char *kernel_id, *ramdisk_id;
	const char *sriov_net_support;    /* "simple" */
	const char *boot_mode;            /* legacy-bios | uefi | uefi-preferred */
	const char *tpm_support, *imds_support, *uefi_data;
	int ena_support;                  /* tri-state */
	const struct ec2_block_device *bdm;
	size_t n_bdm;
	const struct aws_tag *tags;       /* TagSpecification ResourceType=image */
	size_t n_tags;
	/* Only check permission: success is AWS's DryRunOperation answer, and
	 * *image_id is then set to NULL. */
	bool dry_run;
};
int ec2_register_image(const struct ec2_client *c, const struct ec2_register_image *r,
		       char **image_id, struct af_error **err);

struct ec2_image_query {
	const char *const *image_ids;
	size_t n_image_ids;
	const char *const *owners;        /* "self", "amazon", account ids */
	size_t n_owners;
	const char *const *executable_by;
	size_t n_executable_by;
	const struct ec2_filter *filters;
	size_t n_filters;
	bool include_deprecated;
	int max_results;                  /* page size (5-1000); 0: one unpaged call */
};
/* All matching images (every page). */
int ec2_describe_images(const struct ec2_client *c, const struct ec2_image_query *q,
			struct ec2_image_list *out, struct af_error **err);

/* DeregisterImage; with delete_snapshots, DeleteAssociatedSnapshots=true. */
int ec2_deregister_image(const struct ec2_client *c, const char *image_id, bool delete_snapshots,
			 struct af_error **err);

int ec2_create_tags(const struct ec2_client *c, const char *const *resource_ids, size_t n_ids,
		    const struct aws_tag *tags, size_t n_tags, struct af_error **err);
/* A tag whose value is NULL is deleted whatever its value; n_tags 0 deletes all. */
int ec2_delete_tags(const struct ec2_client *c, const char *const *resource_ids, size_t n_ids,
		    const struct aws_tag *tags, size_t n_tags, struct af_error **err);

/* ModifyImageAttribute LaunchPermission.Add/Remove.N.UserId (and .Group=all
 * when group_all). */
int ec2_modify_launch_permission(const struct ec2_client *c, const char *image_id, bool add,
				 const char *const *user_ids, size_t n_users, bool group_all,
				 struct af_error **err);
/* ModifyImageAttribute Description.Value. */
int ec2_modify_image_description(const struct ec2_client *c, const char *image_id,
				 const char *description, struct af_error **err);

/* DescribeImageAttribute launchPermission: account ids (NULL-terminated
 * vector, caller frees with the cleanup.h strv helper) and whether the
 * image is public. */
int ec2_describe_launch_permission(const struct ec2_client *c, const char *image_id,
				   char ***user_ids, bool *group_all, struct af_error **err);
/* DescribeImageAttribute for a single-valued ATTRIBUTE ("description",
 * "kernel", "ramdisk", "bootMode", "sriovNetSupport", "imdsSupport",
 * "deprecationTime"): *value (caller frees) or NULL when unset. */
int ec2_describe_image_attribute(const struct ec2_client *c, const char *image_id,
				 const char *attribute, char **value, struct af_error **err);

/* CopyImage, sent to C's region (the destination). */
struct ec2_copy_image {
	const char *source_region, *source_image_id, *name;  /* required */
	const char *description;
	const char *client_token;   /* idempotency (derived from the build) */
	const char *kms_key_id;
	int encrypted;              /* tri-state */
	bool copy_image_tags;
	const struct aws_tag *tags; /* TagSpecification ResourceType=image */
	size_t n_tags;
};
int ec2_copy_image(const struct ec2_client *c, const struct ec2_copy_image *r, char **image_id,
		   struct af_error **err);

/* EnableImageDeprecation at WHEN (UTC; AWS rounds to the minute). */
int ec2_enable_image_deprecation(const struct ec2_client *c, const char *image_id, time_t when,
				 struct af_error **err);

struct ec2_create_image {
	const char *instance_id, *name;  /* required */
	const char *description;
	bool no_reboot;
	const struct ec2_block_device *bdm;
	size_t n_bdm;
	const struct aws_tag *tags;      /* applied to the image and its snapshots */
	size_t n_tags;
};
int ec2_create_image(const struct ec2_client *c, const struct ec2_create_image *r,
		     char **image_id, struct af_error **err);

int ec2_create_snapshot(const struct ec2_client *c, const char *volume_id, const char *description,
			const struct aws_tag *tags, size_t n_tags, char **snapshot_id,
			struct af_error **err);

struct ec2_snapshot_query {
	const char *const *snapshot_ids;
	size_t n_snapshot_ids;
	const char *const *owners;
	size_t n_owners;
	const struct ec2_filter *filters;
	size_t n_filters;
	int max_results;                 /* page size (5-1000); 0: one unpaged call */
};
int ec2_describe_snapshots(const struct ec2_client *c, const struct ec2_snapshot_query *q,
			   struct ec2_snapshot_list *out, struct af_error **err);

int ec2_delete_snapshot(const struct ec2_client *c, const char *snapshot_id, struct af_error **err);

/* Region names enabled for the account (NULL-terminated; caller frees with
 * the strv helper). */
int ec2_describe_regions(const struct ec2_client *c, char ***regions, struct af_error **err);

int ec2_describe_instances(const struct ec2_client *c, const char *const *instance_ids,
			   size_t n_ids, const struct ec2_filter *filters, size_t n_filters,
			   struct ec2_instance_list *out, struct af_error **err);

#endif
