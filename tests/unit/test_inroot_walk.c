/* SPDX-License-Identifier: Apache-2.0 */
/* test_inroot.c again with openat2 answering ENOSYS (a seccomp filter, as
 * on Linux < 5.6): the in-root API's one-component-at-a-time fallback
 * against the same traps. */
#define INROOT_TEST_NO_OPENAT2 1
#include "test_inroot.c"
