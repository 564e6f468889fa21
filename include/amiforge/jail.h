/* SPDX-License-Identifier: Apache-2.0 */
/* The jail: where code from the image or the package archive runs
 * (DESIGN §6).  spawn_run() (spawn.h) uses it for every command with
 * .chroot or .host_view set; this header is the jail's inside, for spawn.c
 * and the tests.
 *
 * A jailed command runs after pivot_root into the image (or into a
 * read-only view of the host with the image as the only writable place),
 * in new mount, PID, UTS, IPC, cgroup and network namespaces, with a fresh
 * /proc whose kernel-wide knobs are read-only or masked, a private /dev, a
 * read-only /sys, the image mounted nodev,nosuid, no_new_privs, the
 * capability bounding set cut to what dpkg needs, and a seccomp filter.
 * Its PID 1 is ours (a small reaper), so nothing in the namespace outlives
 * the command. */
#ifndef AMIFORGE_JAIL_H
#define AMIFORGE_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/capability.h>
#include <sys/types.h>

struct af_error;
struct spawn_opts;

/* The resolver address jailed commands see; pasta forwards DNS sent there
 * to the build host's resolver. */
#define JAIL_DNS_ADDR "10.0.2.3"

/* In the forked child of spawn_run(), outside the jail: makes the jail's
 * PID 1, starts pasta for it when O asks for network, waits, and exits with
 * the command's exit status.  Anything that goes wrong is written as a
 * struct exec_report (exec.h) on REPORT_FD. */
_Noreturn void jail_keeper(const struct spawn_opts *o, int report_fd);

/* ---- pieces, exported for the unit tests ---- */

/* Drops every capability not in jail_policy_kept_caps() from the bounding, permitted,
 * effective and inheritable sets, clears the ambient set, sets no_new_privs
 * and loads the seccomp filter.  0 or -1 + err. */
int jail_policy_restrict(struct af_error **err);
const cap_value_t *jail_policy_kept_caps(size_t *n);
const char *const *jail_policy_denied_syscalls(size_t *n);

/* In the jail's new network namespace: loopback up, unreachable routes for
 * the metadata networks.  0 or -1 + err. */
int jail_net_setup(struct af_error **err);
/* Waits (bounded) until pasta has configured the namespace.  0 or -1 + err. */
int jail_net_wait(struct af_error **err);
/* In the keeper: starts pasta (foreground, our child) for the network
 * namespace of HOST_PID (a pid as the host's /proc names it).  Returns its
 * pid or -1 + err. */
pid_t jail_net_pasta_start(pid_t host_pid, int log_fd, struct af_error **err);
/* The resolv.conf a networked jail sees. */
const char *jail_resolv_conf(void);

#endif
