/* SPDX-License-Identifier: Apache-2.0 */
/* Memory: allocation that aborts on failure, a growable string, BUG().
 * The bottom of the tree: error.c and everything else build on it. */
#ifndef AMIFORGE_MEM_H
#define AMIFORGE_MEM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define BUG(...) mem_bug(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void mem_bug(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* All abort with a message on allocation failure or size overflow. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* A growable string. */
struct strbuf {
	char *buf;  /* always NUL-terminated once anything was added */
	size_t len, alloc;
};
#define STRBUF_INIT { NULL, 0, 0 }
void strbuf_add(struct strbuf *sb, const void *data, size_t n);
void strbuf_addstr(struct strbuf *sb, const char *s);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *strbuf_detach(struct strbuf *sb);  /* returns "" (allocated) when empty */
void strbuf_release(struct strbuf *sb);

/* True if the N bytes at P are all zero.  P must be 8-byte aligned when N
 * is at least a page (it reads whole words a page at a time). */
bool mem_is_zero(const void *p, size_t n);

#endif
