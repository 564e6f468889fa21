/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c; `make fuzz`): the
 * library's logging turned down, and the input as a file for the entry
 * points that read one. */
#ifndef AMIFORGE_FUZZ_H
#define AMIFORGE_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "amiforge/error.h"
#include "amiforge/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init(LOG_LEVEL_ERROR, false);
	return 0;
}

/* The input as the contents of one memfd, named "/proc/self/fd/N" (every
 * open() of that name starts at offset 0): no file is left anywhere. */
static inline const char *fuzz_file(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	if (fd < 0) {
		fd = memfd_create("amiforge-fuzz", MFD_CLOEXEC);
		if (fd < 0) {
			perror("memfd_create");
			abort();
		}
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
		perror("fuzz input");
		abort();
	}
	return path;
}

/* A NUL-terminated copy of the input (caller frees): what the HTTP client
 * hands the response parsers (http.h: the body is NUL-terminated, the NUL
 * not counted in body_len). */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		abort();
	for (size_t i = 0; i < size; i++)
		s[i] = (char)data[i];
	s[size] = '\0';
	return s;
}
#endif
