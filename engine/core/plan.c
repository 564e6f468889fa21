/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "amiforge/checkpoint.h"
#include "amiforge/cleanup.h"
#include "amiforge/journal.h"
#include "amiforge/plan.h"
#include "amiforge/util.h"

/* A copy of PARAMS in which every PT_PATH value is relative to the recipe's
 * directory: the key must not depend on where the repository is checked
 * out (the file's content is hashed separately).  A PARAM_HOST_FILE value
 * is dropped: such a file (a bundle's private key) sits wherever each
 * machine keeps it, so only its fingerprint, in the key's "files", counts. */
static json_t *params_for_key(const struct param_spec *spec, const json_t *params, const char *dir)
{
	json_t *copy = json_deep_copy(params);
	size_t dl = strlen(dir);
	for (const struct param_spec *ps = spec; ps && ps->name; ps++) {
		json_t *v = json_object_get(copy, ps->name);
		if (!v)
			continue;
		if (ps->type == PT_PATH && (ps->flags & PARAM_HOST_FILE)) {
			json_object_del(copy, ps->name);
		} else if (ps->type == PT_PATH && json_is_string(v)) {
			const char *p = json_string_value(v);
			if (strncmp(p, dir, dl) == 0 && p[dl] == '/')
				json_object_set_new(copy, ps->name, json_string(p + dl + 1));
		} else if (ps->type == PT_OBJECT && ps->sub) {
			json_object_set_new(copy, ps->name, params_for_key(ps->sub, v, dir));
		} else if (ps->type == PT_LIST && ps->sub && json_is_array(v)) {
			for (size_t k = 0; k < json_array_size(v); k++)
				json_array_set_new(v, k,
						   params_for_key(ps->sub, json_array_get(v, k), dir));
		}
	}
	return copy;
}

static void stage_key(const struct recipe *r, size_t i, const char *prev, char key[65])
{
	const struct stage_inst *s = &r->stages[i];
	_cleanup_json_ json_t *params = params_for_key(s->type->params, s->params,
						       r->dir ? r->dir : "/");
	_cleanup_json_ json_t *doc = json_pack("{s:i, s:s, s:s, s:s, s:O, s:O}", "v", 1, "prev", prev,
					       "arch", r->arch, "type", s->type->name, "params",
					       params, "files",
					       s->file_hashes ? s->file_hashes : json_object());
	if (!doc)
		BUG("cannot build key document for stage %zu", i + 1);
	_cleanup_free_ char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	if (!text)
		BUG("cannot encode key document");
	sha256_hex(text, strlen(text), key);
}

void plan_keys(const struct recipe *r, char (*keys)[65])
{
	for (size_t i = 0; i < r->n_stages; i++)
		stage_key(r, i, i ? keys[i - 1] : "", keys[i]);
}

static bool touches_image(const struct stage_inst *s)
{
	return (s->type->flags & STAGE_NEEDS_IMAGE) != 0;
}

/* True if the journal's last stage event is the final stage's stage_done
 * with this key: no stage touched the image after the build finished. */
static bool final_image_intact(const struct journal_log *log, const char *last_key)
{
	const struct journal_event *last = log ? journal_last_stage_event(log, 0) : NULL;
	return last && last->kind == JOURNAL_STAGE_DONE && last->stage.key &&
	       !strcmp(last->stage.key, last_key);
}

bool plan_ckpt_local(void *ckpt_dir, const char *disk_key)
{
	return ckpt_usable(ckpt_dir, disk_key);
}

void plan_make(const struct recipe *r, const struct plan_input *in, struct plan *out)
{
	const struct journal_log *log = in->log;
	bool fresh = in->fresh;
	int from = in->from;
	size_t n = r->n_stages;
	struct plan_stage *st = xcalloc(n, sizeof(*st));
	char (*keys)[65] = xcalloc(n, sizeof(*keys));
	plan_keys(r, keys);

	int first_undone = (int)n;
	for (size_t i = 0; i < n; i++) {
		memcpy(st[i].key, keys[i], 65);
		memcpy(st[i].disk_key, touches_image(&r->stages[i]) || i == 0 ? keys[i]
									    : st[i - 1].disk_key,
		       65);
		if (!fresh && log) {
			struct journal_stage js = { (int)i + 1, r->stages[i].id, keys[i] };
			st[i].done_event = journal_find_done(log, &js);
		}
		st[i].journal_done = st[i].done_event != NULL;
		if (!st[i].journal_done && first_undone == (int)n)
			first_undone = (int)i;
	}
	free(keys);
	if (from >= 0 && from < first_undone)
		first_undone = from;

	/* Everything done and nothing ran since the last stage finished: the
	 * image on disk is the final one. */
	if (first_undone == (int)n && !fresh && in->image_here && final_image_intact(log, st[n - 1].key)) {
		for (size_t i = 0; i < n; i++)
			st[i].status = PLAN_DONE;
		out->stages = st;
		out->n = n;
		out->first_undone = first_undone;
		out->restore = -1;
		return;
	}
	/* The disk before first_undone must come from a checkpoint: the newest
	 * done stage whose disk state was checkpointed. */
	int restore = -1;
	for (int j = first_undone - 1; j >= 0; j--) {
		if (in->ckpt_usable(in->ckpt_arg, st[j].disk_key)) {
			restore = j;
			break;
		}
	}
	for (size_t i = 0; i < n; i++) {
		bool before = (int)i < first_undone;
		bool replay = (int)i > restore && touches_image(&r->stages[i]);
		st[i].status = before && !replay ? PLAN_DONE : PLAN_RUN;
	}
	out->stages = st;
	out->n = n;
	out->first_undone = first_undone;
	out->restore = restore;
}

void plan_release(struct plan *p)
{
	free(p->stages);
	p->stages = NULL;
	p->n = 0;
}
