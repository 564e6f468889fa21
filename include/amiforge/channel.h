/* SPDX-License-Identifier: Apache-2.0 */
/* The channel between the runner and a stage child: newline-separated JSON
 * messages over a pipe, and an acknowledgement pipe back.
 *
 * A stage reports remote resources (a snapshot id, an upload id, blocks
 * acknowledged) the moment they exist: the child sends {"resource": R} and
 * blocks until the runner has journaled it (fsync'd) and acknowledged, so a
 * crash at any moment leaves no resource the journal does not know.  At the
 * end the child sends one result message, {"result": R}.  A line that is
 * neither message is ignored. */
#ifndef AMIFORGE_CHANNEL_H
#define AMIFORGE_CHANNEL_H

#include <jansson.h>

#include "amiforge/util.h"

struct af_error;

struct stage_channel {
	int msg_rd, msg_wr;   /* child -> runner */
	int ack_rd, ack_wr;   /* runner -> child */
	struct strbuf pending; /* runner: bytes of an incomplete message */
};

/* Opens both pipes (close-on-exec; the runner's read end non-blocking).
 * 0 or -1 + err. */
int channel_open(struct stage_channel *ch, struct af_error **err);
/* After fork: each side closes the ends it does not use. */
void channel_child_side(struct stage_channel *ch);
void channel_parent_side(struct stage_channel *ch);
void channel_close(struct stage_channel *ch);

/* Child: sends {"resource": RESOURCE} and waits for the runner's
 * acknowledgement.  0 or -1 + err (the runner is gone or refused). */
int channel_send_resource(struct stage_channel *ch, const json_t *resource, struct af_error **err);
/* Child: sends {"result": RESULT} (RESULT borrowed), the final message.
 * 0 or -1 (errno). */
int channel_send_result(struct stage_channel *ch, const json_t *result);

/* Runner: reads what is available without blocking; for each complete
 * resource message calls on_resource (which journals it) and then
 * acknowledges it (a refused resource is acknowledged with a failure byte);
 * the RESULT of a result message is stored in *result (owned by the
 * caller; replaces an earlier one).  0, or -1 + err when on_resource failed. */
int channel_pump(struct stage_channel *ch,
		 int (*on_resource)(void *arg, const json_t *resource, struct af_error **err),
		 void *arg, json_t **result, struct af_error **err);

#endif
