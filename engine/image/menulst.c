/* SPDX-License-Identifier: Apache-2.0 */
/* GRUB legacy's menu.lst (see menulst.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/menulst.h"
#include "amiforge/util.h"

static char *ml_trim(char *s)
{
	s += strspn(s, " \t");
	size_t n = strlen(s);
	while (n && strchr(" \t\r", s[n - 1]))
		s[--n] = '\0';
	return s;
}

static int ml_number(const char *arg, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(arg, &end, 10);
	if (errno || end == arg || (*end && !strchr(" \t", *end)) || v < 0 || v > 1000)
		return -1;
	*out = (int)v;
	return 0;
}

static void ml_entry_release(struct menulst_entry *e)
{
	free(e->title);
	free(e->root);
	free(e->kernel);
	free(e->args);
	free(e->initrd);
}

void menulst_release(struct menulst *m)
{
	for (size_t i = 0; i < m->n; i++)
		ml_entry_release(&m->entries[i]);
	free(m->entries);
	*m = (struct menulst){ 0 };
}

/* A kernel line: GRUB options ("--type=netbsd"), the path, the arguments. */
static int ml_kernel(struct menulst_entry *e, char *arg)
{
	while (str_has_prefix(arg, "--")) {
		arg += strcspn(arg, " \t");
		arg += strspn(arg, " \t");
	}
	size_t pl = strcspn(arg, " \t");
	if (pl == 0)
		return -1;
	free(e->kernel);
	free(e->args);
	e->kernel = xstrndup(arg, pl);
	e->args = xstrdup(ml_trim(arg + pl));
	return 0;
}

static int ml_global(struct menulst *m, const char *cmd, const char *arg)
{
	if (!strcmp(cmd, "default"))
		return !strcmp(arg, "saved") ? (m->default_entry = 0) : ml_number(arg, &m->default_entry);
	if (!strcmp(cmd, "fallback"))
		return ml_number(arg, &m->fallback);
	return 0;  /* timeout, hiddenmenu, serial, color...: nothing to boot by */
}

static int ml_in_entry(struct menulst_entry *e, const char *cmd, char *arg)
{
	if (!strcmp(cmd, "root") || !strcmp(cmd, "rootnoverify")) {
		if (!*arg)
			return -1;
		free(e->root);
		e->root = xstrndup(arg, strcspn(arg, " \t"));
	} else if (!strcmp(cmd, "kernel")) {
		return ml_kernel(e, arg);
	} else if (!strcmp(cmd, "initrd")) {
		if (!*arg)
			return -1;
		free(e->initrd);
		e->initrd = xstrndup(arg, strcspn(arg, " \t"));
	}
	return 0;
}

int menulst_parse(const char *text, struct menulst *out, struct af_error **err)
{
	struct menulst m = { .fallback = -1 };
	_cleanup_free_ char *copy = xstrdup(text);
	int lineno = 0;

	for (char *p = copy, *line; (line = strsep(&p, "\n")); ) {
		lineno++;
		line = ml_trim(line);
		if (!*line || *line == '#')
			continue;
		size_t cl = strcspn(line, " \t=");
		char *arg = line + cl;
		if (*arg)
			*arg++ = '\0';
		arg = ml_trim(arg + strspn(arg, " \t="));
		int rc = 0;
		if (!strcmp(line, "title")) {
			m.entries = xreallocarray(m.entries, m.n + 1, sizeof(*m.entries));
			m.entries[m.n++] = (struct menulst_entry){ .title = xstrdup(arg) };
		} else if (m.n == 0) {
			rc = ml_global(&m, line, arg);
		} else {
			rc = ml_in_entry(&m.entries[m.n - 1], line, arg);
		}
		if (rc < 0) {
			menulst_release(&m);
			return af_error_set(err, 0, "menu.lst line %d: '%s' needs %s", lineno, line,
					    !strcmp(line, "default") || !strcmp(line, "fallback")
						    ? "an entry number" : "a device or path");
		}
	}
	if (m.n == 0) {
		menulst_release(&m);
		return af_error_set(err, 0, "menu.lst has no 'title' entry: nothing to boot");
	}
	*out = m;
	return 0;
}

const struct menulst_entry *menulst_default(const struct menulst *m, struct af_error **err)
{
	if ((size_t)m->default_entry >= m->n) {
		af_error_set(err, 0, "menu.lst: default entry %d does not exist (entries 0 to %zu)",
			     m->default_entry, m->n - 1);
		return NULL;
	}
	const struct menulst_entry *e = &m->entries[m->default_entry];
	if (!e->kernel) {
		af_error_set(err, 0, "menu.lst: default entry %d ('%s') has no kernel line", m->default_entry,
			     e->title);
		return NULL;
	}
	return e;
}

char *menulst_split_path(const char *path, char **device)
{
	*device = NULL;
	if (path[0] == '(') {
		const char *close = strchr(path, ')');
		if (close) {
			*device = xstrndup(path, (size_t)(close - path + 1));
			path = close + 1;
		}
	}
	return xstrdup(*path ? path : "/");
}

int menulst_device_partition(const char *device, int *partition, struct af_error **err)
{
	int part = -1, used = 0;
	if (!strcmp(device, "(hd0)")) {
		*partition = -1;
		return 0;
	}
	if (sscanf(device, "(hd0,%d)%n", &part, &used) == 1 && device[used] == '\0' && part >= 0 && part < 128) {
		*partition = part;
		return 0;
	}
	return af_error_set(err, 0, "menu.lst: device '%s' is not one PV-GRUB reads: use (hd0) or (hd0,N)", device);
}
