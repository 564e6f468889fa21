/* SPDX-License-Identifier: Apache-2.0 */
/* The jail's privilege limits (jail_policy.c): what a restricted process can
 * no longer do, probed syscall by syscall in a forked child.  Root only:
 * dropping from the bounding set needs CAP_SETPCAP. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "amiforge/error.h"
#include "amiforge/jail.h"
#include "amiforge/util.h"

/* The bounding set the issue asks for, as /proc/self/status prints it. */
#define JAIL_CAPBND "00000000a80400fb"

static void test_kept_caps_are_the_listed_ones(void **state)
{
	size_t n = 0;
	const cap_value_t *caps = jail_policy_kept_caps(&n);
	unsigned long long mask = 0;
	static const cap_value_t never[] = { CAP_SYS_ADMIN, CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_PTRACE,
					     CAP_NET_ADMIN, CAP_SYS_BOOT, CAP_SYS_TIME, CAP_MAC_ADMIN };

	for (size_t i = 0; i < n; i++)
		mask |= 1ull << caps[i];
	for (size_t i = 0; i < ARRAY_SIZE(never); i++)
		assert_int_equal((mask >> never[i]) & 1, 0);
	assert_int_equal(mask, 0xa80400fbull);
}

static void test_denied_syscalls_named(void **state)
{
	size_t n = 0;
	const char *const *names = jail_policy_denied_syscalls(&n);
	static const char *const must[] = { "mount", "umount2", "pivot_root", "kexec_load", "init_module",
					    "finit_module", "bpf", "perf_event_open", "keyctl", "add_key",
					    "open_by_handle_at", "reboot", "swapon", "ptrace", "unshare", "setns" };

	for (size_t i = 0; i < ARRAY_SIZE(must); i++) {
		bool found = false;
		for (size_t k = 0; k < n && !found; k++)
			found = strcmp(names[k], must[i]) == 0;
		if (!found)
			fail_msg("'%s' is not denied", must[i]);
	}
}

static bool status_has(const char *line)
{
	char *s = read_file("/proc/self/status", NULL, NULL);
	bool ok = s && strstr(s, line);
	free(s);
	return ok;
}

/* -1 with errno EXPECTED, else a failure code. */
static int denied(long rc, int expected)
{
	return rc == -1 && errno == expected ? 0 : 1;
}

/* In the restricted child: the number of the first probe that was not
 * refused, 0 when all were. */
static int probe_restricted(void)
{
	struct af_error *err = NULL;
	int fds[2];
	int n = 0;

	if (jail_policy_restrict(&err) < 0) {
		printf("jail_policy_restrict: %s\n", af_error_msg(err));
		return 100;
	}
	n++;
	if (!status_has("CapBnd:\t" JAIL_CAPBND "\n") || !status_has("CapEff:\t" JAIL_CAPBND "\n") ||
	    !status_has("CapAmb:\t0000000000000000\n"))
		return n;
	n++;
	if (!status_has("NoNewPrivs:\t1\n") || !status_has("Seccomp:\t2\n"))
		return n;
	n++;
	if (denied(mount("none", "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), EPERM))
		return n;
	n++;
	if (denied(umount2("/proc", MNT_DETACH), EPERM))
		return n;
	n++;
	if (denied(unshare(CLONE_NEWUSER), EPERM) || denied(unshare(CLONE_NEWNS), EPERM))
		return n;
	n++;
	/* clone with a namespace flag, and clone3 (ENOSYS: glibc falls back). */
	if (denied(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0), EPERM) ||
	    denied(syscall(SYS_clone3, NULL, 0), ENOSYS))
		return n;
	n++;
	if (denied(syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, 0), EPERM))
		return n;
	n++;
	if (denied(syscall(SYS_keyctl, 0, 0, 0, 0, 0), EPERM) || denied(syscall(SYS_bpf, 0, NULL, 0), EPERM) ||
	    denied(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0), EPERM))
		return n;
	n++;
	if (denied(syscall(SYS_init_module, NULL, 0, ""), EPERM) ||
	    denied(syscall(SYS_kexec_load, 0, 0, NULL, 0), EPERM) ||
	    denied(syscall(SYS_reboot, 0, 0, 0, NULL), EPERM) || denied(syscall(SYS_swapon, "/x", 0), EPERM))
		return n;
	n++;
	if (denied(ptrace(PTRACE_ATTACH, getppid(), NULL, NULL), EPERM))
		return n;
	n++;
	if (denied(sethostname("x", 1), EPERM))
		return n;
	n++;
	if (denied(ioctl(0, TIOCSTI, "x"), EPERM))
		return n;
	n++;
	/* What packages need still works: chown, fork, pipes, chroot to "/". */
	if (pipe(fds) < 0 || fchown(fds[0], 0, 0) < 0 || chroot("/") < 0)
		return n;
	close(fds[0]);
	close(fds[1]);
	return 0;
}

static void test_restrict_refuses_escapes(void **state)
{
	pid_t pid;
	int status = 0;

	if (geteuid() != 0)
		test_skip_because("needs root (the bounding set can only be cut with CAP_SETPCAP)");
	REQUIRE_NO_VALGRIND();
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(probe_restricted());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("probe %d was not refused", WEXITSTATUS(status));
}

static void test_resolv_conf_names_forwarder(void **state)
{
	assert_non_null(strstr(jail_resolv_conf(), "\nnameserver " JAIL_DNS_ADDR "\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kept_caps_are_the_listed_ones),
		cmocka_unit_test(test_denied_syscalls_named),
		cmocka_unit_test(test_restrict_refuses_escapes),
		cmocka_unit_test(test_resolv_conf_names_forwarder),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
