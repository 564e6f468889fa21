/* SPDX-License-Identifier: Apache-2.0 */
/* The remote agent (remote_agent.h): a forked process with a queue of
 * requests read from a SOCK_SEQPACKET socket (one JSON object a message),
 * answering "sync" and "finish" with {"n":N,"ok":BOOL,"error":MSG}.
 *
 * A process rather than a thread: the build forks stage processes, and a
 * thread inside curl or OpenSSL at the moment of a fork would leave their
 * locks held in the child. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/checkpoint.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/mem.h"
#include "amiforge/remote_agent.h"
#include "amiforge/util.h"

#define MSG_MAX 65536
#define JOURNAL_BATCH_SECONDS 1.0

struct remote_agent {
	int sock;
	pid_t pid;
	unsigned n;   /* the last request number */
	bool dead;    /* the agent is gone: requests are dropped */
	bool required;
};

/* ---- the agent process ------------------------------------------------------ */

struct agent {
	struct remote *r;
	const struct remote_agent_opts *o;
	struct remote_lease lease;
	char *etag;            /* the remote journal's */
	int sock;
	json_t *queue;         /* requests to do, in order */
	json_t *known;         /* block hashes the store has */
	bool journal_pending;
	double journal_last;
	char *failure;         /* the first error that fails the build */
	bool lease_lost;
	struct remote_xfer total;
	unsigned ckpts;
};

static void agent_fail(struct agent *g, bool fatal, struct af_error *e)
{
	log_warn("remote %s: %s%s", g->r->url, af_error_msg(e),
		 fatal || g->o->required ? "" : "; the build goes on with local state only");
	if (!g->failure && (fatal || g->o->required))
		g->failure = xstrdup(af_error_msg(e));
}

static void agent_reply(struct agent *g, json_int_t n, const char *error)
{
	_cleanup_json_ json_t *m = error ? json_pack("{s:I, s:b, s:s}", "n", n, "ok", 0, "error", error)
					 : json_pack("{s:I, s:b}", "n", n, "ok", 1);
	_cleanup_free_ char *text = json_dumps(m, JSON_COMPACT);
	if (send(g->sock, text, strlen(text), MSG_NOSIGNAL) < 0)
		_exit(0); /* the build is gone */
}

/* The journal up to its last whole line: the build may be mid-append. */
static char *journal_text(struct agent *g, size_t *len, struct af_error **err)
{
	char *text = read_file(g->o->journal_path, len, err);
	if (!text)
		return NULL;
	char *nl = memrchr(text, '\n', *len);
	*len = nl ? (size_t)(nl - text) + 1 : 0;
	return text;
}

static void push_journal(struct agent *g)
{
	_cleanup_error_ struct af_error *err = NULL;
	if (g->lease_lost)
		return;
	size_t len;
	_cleanup_free_ char *text = journal_text(g, &len, &err);
	char *etag = NULL;
	g->journal_pending = false;
	g->journal_last = now_monotonic();
	if (!text || remote_journal_put(g->r, g->o->state, text, len, g->etag, &etag, &err) < 0) {
		bool lost = af_error_errno(err) == S3_CONDITION_FAILED;
		g->lease_lost |= lost;
		agent_fail(g, lost, err);
		if (!lost)
			g->journal_pending = true; /* try again with the next batch */
		return;
	}
	free(g->etag);
	g->etag = etag;
}

static void renew_lease(struct agent *g)
{
	_cleanup_error_ struct af_error *err = NULL;
	if (g->lease_lost || !g->lease.name)
		return;
	if (remote_lease_renew(g->r, &g->lease, &err) < 0) {
		bool lost = af_error_errno(err) == S3_CONDITION_FAILED;
		g->lease_lost |= lost;
		agent_fail(g, lost, err);
	}
}

static double lease_due(const struct agent *g)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	/* Renewed at a third of the TTL: two renewals may fail before it lapses. */
	return g->lease.expires - g->lease.ttl * 2 / 3 - (double)ts.tv_sec;
}

static void handle(struct agent *g, json_t *m);

/* Reads what the build sent; with TIMEOUT_MS > 0 waits that long for it. */
static void read_requests(struct agent *g, int timeout_ms)
{
	static char buf[MSG_MAX];
	struct pollfd p = { .fd = g->sock, .events = POLLIN };
	while (poll(&p, 1, timeout_ms) > 0) {
		ssize_t n = recv(g->sock, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			/* The build ended without finish (it crashed): save what it
			 * journaled, and let the state go. */
			push_journal(g);
			_cleanup_error_ struct af_error *err = NULL;
			remote_lease_release(g->r, &g->lease, &err);
			_exit(0);
		}
		if (n < 0)
			break;
		json_error_t jerr;
		json_t *m = json_loadb(buf, (size_t)n, 0, &jerr);
		if (m)
			handle(g, m);
		timeout_ms = 0;
	}
}

/* Between blocks of a long push: the journal and the lease must not wait. */
static void agent_tick(void *arg)
{
	struct agent *g = arg;
	read_requests(g, 0);
	if (g->journal_pending && now_monotonic() - g->journal_last >= JOURNAL_BATCH_SECONDS)
		push_journal(g);
	if (lease_due(g) <= 0)
		renew_lease(g);
}

static void handle(struct agent *g, json_t *m)
{
	const char *op = json_string_value(json_object_get(m, "op"));
	if (op && !strcmp(op, "journal")) {
		g->journal_pending = true;
	} else if (op && !strcmp(op, "sync")) {
		push_journal(g);
		agent_reply(g, json_integer_value(json_object_get(m, "n")), g->failure);
	} else if (op) {
		json_array_append(g->queue, m);
	}
	json_decref(m);
}

static void do_checkpoint(struct agent *g, const char *dkey)
{
	_cleanup_error_ struct af_error *err = NULL;
	struct remote_xfer st;
	if (remote_ckpt_push(g->r, g->o->ckpt_dir, dkey, g->known, g->o->parallel, agent_tick, g, &st,
			     &err) < 0) {
		agent_fail(g, false, err);
		return;
	}
	g->ckpts++;
	g->total.blocks += st.blocks;
	g->total.blocks_skip += st.blocks_skip;
	g->total.bytes += st.bytes;
	g->total.seconds += st.seconds;
	log_debug("remote: checkpoint %.12s pushed: %llu blocks sent, %llu there already, %.1fs", dkey,
		  (unsigned long long)st.blocks, (unsigned long long)st.blocks_skip, st.seconds);
}

static void do_known(struct agent *g, const char *dkey)
{
	struct ckpt_list l = { 0 };
	_cleanup_error_ struct af_error *err = NULL;
	if (ckpt_list_load(g->o->ckpt_dir, dkey, &l, &err) < 0)
		return;
	for (uint64_t b = 0; b < l.nblocks; b++) {
		char hex[65];
		if (!l.is_data[b])
			continue;
		hex_encode(l.hash[b], BLOCKSTORE_HASH_LEN, hex);
		json_object_set_new(g->known, hex, json_true());
	}
	ckpt_list_release(&l);
}

static void do_finish(struct agent *g, json_int_t n)
{
	_cleanup_error_ struct af_error *err = NULL;
	push_journal(g);
	if (!g->lease_lost && remote_lease_release(g->r, &g->lease, &err) < 0)
		agent_fail(g, false, err);
	char sz[32];
	if (g->ckpts)
		log_info("remote: %u checkpoints pushed to %s: %llu blocks (%s) sent, %llu already there, %.1fs in the background",
			 g->ckpts, g->r->url, (unsigned long long)g->total.blocks,
			 format_size(g->total.bytes, sz, sizeof(sz)),
			 (unsigned long long)g->total.blocks_skip, g->total.seconds);
	agent_reply(g, n, g->failure);
	_exit(0);
}

static void do_request(struct agent *g, json_t *m)
{
	const char *op = json_string_value(json_object_get(m, "op"));
	const char *key = json_string_value(json_object_get(m, "key"));
	_cleanup_error_ struct af_error *err = NULL;
	if (!strcmp(op, "ckpt") && key)
		do_checkpoint(g, key);
	else if (!strcmp(op, "known") && key)
		do_known(g, key);
	else if (!strcmp(op, "stage") && key &&
		 remote_stage_put(g->r, key, json_object_get(m, "record"), &err) < 0)
		agent_fail(g, false, err);
	else if (!strcmp(op, "finish"))
		do_finish(g, json_integer_value(json_object_get(m, "n")));
	else if (!strcmp(op, "flush")) {
		push_journal(g);
		agent_reply(g, json_integer_value(json_object_get(m, "n")), g->failure);
	}
}

static _Noreturn void agent_main(struct agent *g)
{
	log_set_stage_fd(-1);
	for (;;) {
		double due = lease_due(g);
		int wait_ms = json_array_size(g->queue) ? 0 : due <= 0 ? 0 : (int)(due * 1000) + 1;
		if (g->journal_pending)
			wait_ms = wait_ms < 200 ? wait_ms : 200;
		read_requests(g, wait_ms);
		agent_tick(g);
		if (json_array_size(g->queue)) {
			json_t *m = json_incref(json_array_get(g->queue, 0));
			json_array_remove(g->queue, 0);
			do_request(g, m);
			json_decref(m);
		}
	}
}

/* ---- the build's side ---------------------------------------------------------- */

struct remote_agent *remote_agent_start(const struct remote_agent_opts *o, struct af_error **err)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return af_error_set(err, errno, "cannot make the remote agent's socket"), NULL;
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return af_error_set(err, errno, "cannot fork the remote agent"), NULL;
	}
	if (pid == 0) {
		close(sv[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		signal(SIGINT, SIG_IGN); /* the build decides when to stop */
		signal(SIGTERM, SIG_DFL);
		struct agent g = { .r = o->remote, .o = o, .lease = *o->lease, .sock = sv[1],
				   .queue = json_array(), .known = json_object(),
				   .etag = o->journal_etag ? xstrdup(o->journal_etag) : NULL,
				   .journal_pending = true };
		agent_main(&g);
	}
	close(sv[1]);
	/* The lease is the agent's now: the build must not release it too. */
	free(o->lease->name);
	free(o->lease->etag);
	*o->lease = (struct remote_lease){ 0 };
	struct remote_agent *a = xcalloc(1, sizeof(*a));
	a->sock = sv[0];
	a->pid = pid;
	a->required = o->required;
	return a;
}

static void agent_send(struct remote_agent *a, json_t *m)
{
	_cleanup_json_ json_t *msg = m;
	if (!a || a->dead || !msg)
		return;
	_cleanup_free_ char *text = json_dumps(msg, JSON_COMPACT);
	if (strlen(text) > MSG_MAX) {
		/* Only a stage record can be this large: it is not shared. */
		log_warn("remote agent: a request of %zu bytes is over %d; not sent", strlen(text), MSG_MAX);
		return;
	}
	if (send(a->sock, text, strlen(text), MSG_NOSIGNAL) < 0) {
		log_warn("remote agent: cannot send a request (%s); the build goes on with local state only",
			 strerror(errno));
		a->dead = true;
	}
}

static int agent_gone(const struct remote_agent *a, struct af_error **err)
{
	if (!a->required)
		return 0;
	return af_error_set(err, 0, "the remote agent ended unexpectedly (--remote-required)");
}

/* Waits for the answer to request N. */
static int agent_wait(struct remote_agent *a, unsigned n, struct af_error **err)
{
	static char buf[MSG_MAX];
	for (;;) {
		ssize_t got = recv(a->sock, buf, sizeof(buf), 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			a->dead = true;
			return agent_gone(a, err);
		}
		_cleanup_json_ json_t *m = json_loadb(buf, (size_t)got, 0, NULL);
		if ((unsigned)json_integer_value(json_object_get(m, "n")) != n)
			continue;
		if (json_is_true(json_object_get(m, "ok")))
			return 0;
		return af_error_set(err, 0, "remote store: %s",
				    json_string_value(json_object_get(m, "error")));
	}
}

void remote_agent_journal(struct remote_agent *a)
{
	agent_send(a, json_pack("{s:s}", "op", "journal"));
}

int remote_agent_sync(struct remote_agent *a, struct af_error **err)
{
	if (!a)
		return 0;
	if (a->dead)
		return agent_gone(a, err);
	unsigned n = ++a->n;
	agent_send(a, json_pack("{s:s, s:i}", "op", "sync", "n", (int)n));
	return a->dead ? agent_gone(a, err) : agent_wait(a, n, err);
}

int remote_agent_flush(struct remote_agent *a, struct af_error **err)
{
	if (!a)
		return 0;
	if (a->dead)
		return agent_gone(a, err);
	unsigned n = ++a->n;
	agent_send(a, json_pack("{s:s, s:i}", "op", "flush", "n", (int)n));
	return a->dead ? agent_gone(a, err) : agent_wait(a, n, err);
}

void remote_agent_checkpoint(struct remote_agent *a, const char *dkey)
{
	agent_send(a, json_pack("{s:s, s:s}", "op", "ckpt", "key", dkey));
}

void remote_agent_stage(struct remote_agent *a, const char *key, const json_t *record)
{
	agent_send(a, json_pack("{s:s, s:s, s:O}", "op", "stage", "key", key, "record", record));
}

void remote_agent_known(struct remote_agent *a, const char *dkey)
{
	agent_send(a, json_pack("{s:s, s:s}", "op", "known", "key", dkey));
}

int remote_agent_finish(struct remote_agent *a, struct af_error **err)
{
	if (!a)
		return 0;
	int rc = 0;
	if (!a->dead) {
		unsigned n = ++a->n;
		agent_send(a, json_pack("{s:s, s:i}", "op", "finish", "n", (int)n));
		if (!a->dead)
			rc = agent_wait(a, n, err);
	}
	close(a->sock);
	waitpid(a->pid, NULL, 0);
	free(a);
	return rc;
}
