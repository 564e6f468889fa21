/* SPDX-License-Identifier: Apache-2.0 */
/* A small EC2 instance metadata service (FORMATS.md §5) for boot tests:
 * IMDSv2 tokens (PUT /latest/api/token), the public key the instance is
 * launched with, instance-id, placement, and IMDSv1 answers when allowed.
 *
 * `amiforge boot-test` runs it through QEMU's guestfwd `cmd:` form: QEMU
 * starts `amiforge __imds-responder DIR` for every connection the guest
 * opens to 169.254.169.254:80, with the connection on stdin/stdout.  Its
 * configuration lives in files of DIR (see imds_responder_config_load) so that every
 * connection's process hands out and accepts the same token; each request
 * is logged as one line in DIR/imds.log (never the token itself). */
#ifndef AMIFORGE_IMDS_RESPONDER_H
#define AMIFORGE_IMDS_RESPONDER_H

#include <stdbool.h>
#include <stddef.h>

#include "amiforge/util.h"

struct af_error;

enum imds_mode {
	IMDS_OPTIONAL,  /* tokens accepted, IMDSv1 GETs answered too (EC2's "optional") */
	IMDS_REQUIRED,  /* GET without a token: 401 (EC2's "required", IMDSv2 only) */
	IMDS_V1_ONLY,   /* PUT api/token: 403, as where IMDSv2 is unavailable */
};

struct imds_config {
	char *token;        /* handed out by PUT api/token and required on GETs that carry one */
	char *openssh_key;  /* public-keys/0/openssh-key, without the trailing newline */
	char *key_name;     /* public-keys/ listing: "0=KEY_NAME" */
	char *instance_id;
	char *region;       /* placement/region; the availability zone is REGION + "a" */
	enum imds_mode mode;
};

/* Reads DIR/token, DIR/openssh-key (both required), DIR/instance-id,
 * DIR/region, DIR/key-name and DIR/mode ("optional", "required" or
 * "v1-only"), which are optional with defaults.  0 or -1 + err. */
int imds_responder_config_load(const char *dir, struct imds_config *out, struct af_error **err);
/* Writes the files imds_responder_config_load reads (token, openssh-key, instance-id,
 * region, key-name, mode) into DIR, mode 0600.  0 or -1 + err. */
int imds_responder_config_save(const char *dir, const struct imds_config *c, struct af_error **err);
void imds_responder_config_release(struct imds_config *c);

/* One handled request. */
struct imds_reply {
	struct strbuf out;  /* the whole HTTP response */
	int status;
	bool close;         /* close the connection after sending it */
	char *log_line;     /* "GET /latest/meta-data/instance-id 200 v2" (no secrets) */
};
void imds_responder_reply_release(struct imds_reply *r);

/* Handles the first HTTP request in buf[0..len).  Returns the number of
 * bytes it used (> 0) and fills *r; 0 when the request is not complete yet
 * (r untouched).  A malformed or oversized request is answered with 400 and
 * r->close set, consuming everything. */
size_t imds_responder_handle(const struct imds_config *c, const char *buf, size_t len, struct imds_reply *r);

/* Serves requests read from in_fd, answers on out_fd, until EOF, a
 * "Connection: close", an idle time of idle_s seconds or an error.  Appends
 * one line per request to log_fd when it is >= 0.  0 or -1 + err. */
int imds_responder_serve(const struct imds_config *c, int in_fd, int out_fd, int log_fd, int idle_s,
	       struct af_error **err);

/* The hidden command `amiforge __imds-responder [--listen HOST:PORT] DIR`:
 * serves one connection on stdin/stdout, or with --listen accepts
 * connections on HOST:PORT (one child each) until killed (tests run it so).
 * Returns the exit code; messages go to stderr. */
int imds_responder_main(int argc, char **argv);

#endif
