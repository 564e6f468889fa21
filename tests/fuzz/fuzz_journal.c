/* SPDX-License-Identifier: Apache-2.0 */
/* Journal lines: journal_read (the line parser behind it is static in
 * engine/journal.c) on STATE/journal holding the input, then every query
 * over the events it kept.  Seeds: tests/fuzz/corpus/journal/. */
#include "fuzz.h"

#include <fcntl.h>
#include <string.h>

#include "amiforge/journal.h"

static char state[] = "/tmp/amiforge-fuzz-journal.XXXXXX";
static char journal[sizeof(state) + 16];

static void cleanup(void)
{
	unlink(journal);
	rmdir(state);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!journal[0]) {
		if (!mkdtemp(state))
			abort();
		snprintf(journal, sizeof(journal), "%s/journal", state);
		atexit(cleanup);
	}
	int fd = open(journal, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size) || close(fd) < 0)
		abort();
	struct af_error *err = NULL;
	struct journal_log *log = journal_read(state, &err);
	if (!log) {
		af_error_free(err);
		return 0;
	}
	size_t n = journal_log_size(log);
	for (size_t i = 0; i < n; i++) {
		const struct journal_event *e = journal_log_at(log, i);
		if (e->stage.index > 0) {
			journal_find_done(log, &e->stage);
			journal_last_stage_event(log, e->stage.index);
		}
		if (e->stage.key) {
			size_t nr = 0;
			free(journal_resources(log, e->stage.key, &nr));
			json_decref(journal_stage_resources(log, e->stage.key));
		}
	}
	journal_last_stage_event(log, 0);
	size_t nr = 0;
	free(journal_resources(log, NULL, &nr));
	struct journal_build b;
	journal_last_build(log, &b);
	journal_build_release(&b);
	journal_log_free(log);
	return 0;
}
