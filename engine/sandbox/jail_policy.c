/* SPDX-License-Identifier: Apache-2.0 */
/* What a process in the jail may still do (DESIGN §6): the capabilities
 * dpkg, apt and maintainer scripts need, nothing that reaches past the
 * jail's namespaces, and a seccomp filter in the spirit of Docker's and
 * systemd-nspawn's defaults.  libcap and libseccomp do the kernel ABI. */
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>

#include "amiforge/error.h"
#include "amiforge/jail.h"
#include "amiforge/util.h"

/* What package installs need: file ownership and modes, switching users
 * (apt's _apt sandbox, adduser), chroot (apt's DPkg::Chroot-Directory,
 * mmdebstrap), image-local device nodes (the image is mounted nodev, so a
 * node made there opens nothing), signals to its own processes. */
static const cap_value_t jail_caps_kept[] = {
	CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_SETUID, CAP_SETGID,
	CAP_SETFCAP, CAP_KILL, CAP_SYS_CHROOT, CAP_AUDIT_WRITE, CAP_MKNOD,
};

const cap_value_t *jail_policy_kept_caps(size_t *n)
{
	*n = ARRAY_SIZE(jail_caps_kept);
	return jail_caps_kept;
}

static bool jail_cap_kept(cap_value_t c)
{
	for (size_t i = 0; i < ARRAY_SIZE(jail_caps_kept); i++)
		if (jail_caps_kept[i] == c)
			return true;
	return false;
}

/* The bounding set is what matters for uid 0: every execve() gives root
 * its bounding set as permitted capabilities. */
static int jail_drop_caps(struct af_error **err)
{
	cap_t caps = cap_init();
	int rc = 0;

	for (cap_value_t c = 0; c <= CAP_LAST_CAP && rc == 0; c++) {
		if (!jail_cap_kept(c) && CAP_IS_SUPPORTED(c) && cap_drop_bound(c) < 0)
			rc = af_error_set(err, errno, "cannot drop capability %d from the bounding set", c);
	}
	if (rc == 0 &&
	    (cap_set_flag(caps, CAP_EFFECTIVE, (int)ARRAY_SIZE(jail_caps_kept), jail_caps_kept, CAP_SET) < 0 ||
	     cap_set_flag(caps, CAP_PERMITTED, (int)ARRAY_SIZE(jail_caps_kept), jail_caps_kept, CAP_SET) < 0 ||
	     cap_set_flag(caps, CAP_INHERITABLE, (int)ARRAY_SIZE(jail_caps_kept), jail_caps_kept, CAP_SET) < 0 ||
	     cap_set_proc(caps) < 0))
		rc = af_error_set(err, errno, "cannot set the jail's capabilities");
	if (rc == 0 && cap_reset_ambient() < 0 && errno != EINVAL)
		rc = af_error_set(err, errno, "cannot clear the ambient capabilities");
	cap_free(caps);
	return rc;
}

/* Syscalls that reach the kernel as a whole rather than the jail: mounts
 * (a remount would make the image's binds writable), new namespaces (a
 * user namespace hands back every capability inside it), module and kexec
 * loading, BPF and perf, the kernel keyring, file handles (open_by_handle_at
 * walks out of any mount: the "shocker" escape), swap, reboot, clocks,
 * ptrace and cross-process memory access, io_uring (its own syscall
 * surface, not covered by this filter). */
static const char *const jail_denied[] = {
	"mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
	"fsmount", "fspick", "mount_setattr", "unshare", "setns", "kexec_load", "kexec_file_load",
	"init_module", "finit_module", "delete_module", "bpf", "perf_event_open", "keyctl", "add_key",
	"request_key", "open_by_handle_at", "name_to_handle_at", "reboot", "swapon", "swapoff",
	"acct", "quotactl", "quotactl_fd", "lookup_dcookie", "uselib", "vm86", "vm86old", "nfsservctl",
	"syslog", "iopl", "ioperm", "settimeofday", "stime", "clock_settime", "clock_adjtime",
	"adjtimex", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register", "sethostname", "setdomainname",
	"fanotify_init", "lsm_set_self_attr",
};

const char *const *jail_policy_denied_syscalls(size_t *n)
{
	*n = ARRAY_SIZE(jail_denied);
	return jail_denied;
}

/* Namespace flags clone(2) must not be given (its flags are argument 0 on
 * every architecture libseccomp knows). */
static const unsigned long jail_ns_flags[] = {
	CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
	CLONE_NEWCGROUP, CLONE_NEWTIME,
};

static int jail_seccomp_rules(scmp_filter_ctx ctx)
{
	int rc = 0;

	for (size_t i = 0; i < ARRAY_SIZE(jail_denied) && rc == 0; i++) {
		int nr = seccomp_syscall_resolve_name(jail_denied[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not a syscall on this architecture */
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
	}
	for (size_t i = 0; i < ARRAY_SIZE(jail_ns_flags) && rc == 0; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, jail_ns_flags[i], jail_ns_flags[i]));
	/* clone3 passes its flags in memory a filter cannot read: ENOSYS makes
	 * glibc fall back to clone(), which the rules above see. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	/* Typing into, or taking over, a terminal the jail still reaches. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX));
	return rc;
}

/* The 32-bit ABIs too: without them `int 0x80` would walk past every rule. */
static int jail_seccomp_arches(scmp_filter_ctx ctx)
{
#if defined(__x86_64__)
	static const uint32_t extra[] = { SCMP_ARCH_X86, SCMP_ARCH_X32 };
#elif defined(__aarch64__)
	static const uint32_t extra[] = { SCMP_ARCH_ARM };
#else
	static const uint32_t extra[] = { 0 };
#endif
	for (size_t i = 0; i < ARRAY_SIZE(extra); i++) {
		int rc = extra[i] ? seccomp_arch_add(ctx, extra[i]) : 0;
		if (rc < 0 && rc != -EEXIST)
			return rc;
	}
	return 0;
}

static int jail_seccomp(struct af_error **err)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int rc;

	if (!ctx)
		return af_error_set(err, ENOMEM, "cannot create the seccomp filter");
	rc = jail_seccomp_arches(ctx);
	if (rc == 0)
		rc = jail_seccomp_rules(ctx);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0)
		return af_error_set(err, -rc, "cannot load the jail's seccomp filter");
	return 0;
}

int jail_policy_restrict(struct af_error **err)
{
	if (jail_drop_caps(err) < 0)
		return -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return af_error_set(err, errno, "cannot set no_new_privs");
	return jail_seccomp(err);
}
