/* SPDX-License-Identifier: Apache-2.0 */
/* The jail's network namespace (DESIGN §6).  Without network it holds only
 * a loopback: a connect() anywhere fails at once with "network is
 * unreachable".  With network, pasta (from the passt package) runs outside
 * the jail and forwards the namespace's traffic through ordinary sockets of
 * the build host, with the host's loopback never mapped in; link-local
 * 169.254.0.0/16 (the instance metadata service, ECS credentials) and the
 * IPv6 metadata address get "unreachable" routes inside, so the jail can
 * never ask the build host's role for credentials. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/jail.h"
#include "amiforge/util.h"

#define JAIL_NET_WAIT_SECONDS 10.0

const char *jail_resolv_conf(void)
{
	return "# amiforge: the build host's resolver, through the sandbox's user-mode network\n"
	       "nameserver " JAIL_DNS_ADDR "\n";
}

static int jail_lo_up(struct af_error **err)
{
	_cleanup_fd_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = { 0 };

	if (s < 0)
		return af_error_set(err, errno, "cannot open a socket in the jail's network namespace");
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return af_error_set(err, errno, "cannot read the jail's loopback flags");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		return af_error_set(err, errno, "cannot bring up the jail's loopback");
	return 0;
}

struct jail_blocked {
	int family;
	const char *addr;
	unsigned prefix;
};

/* Never reachable from inside, whatever pasta would forward. */
static const struct jail_blocked jail_blocked_nets[] = {
	{ AF_INET, "169.254.0.0", 16 },  /* IMDS, ECS task credentials, Amazon DNS/NTP */
	{ AF_INET6, "fd00:ec2::", 32 },  /* IMDS over IPv6 on Nitro instances */
};

/* RTM_NEWROUTE of type RTN_UNREACHABLE for one network.  0 or -errno. */
static int jail_route_unreachable(struct mnl_socket *nl, const struct jail_blocked *b, unsigned seq)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *rtm;
	unsigned char addr[16];

	nlh->nlmsg_type = RTM_NEWROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
	nlh->nlmsg_seq = seq;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (unsigned char)b->family;
	rtm->rtm_dst_len = (unsigned char)b->prefix;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNREACHABLE;
	if (inet_pton(b->family, b->addr, addr) != 1)
		BUG("bad blocked network %s", b->addr);
	mnl_attr_put(nlh, RTA_DST, b->family == AF_INET ? 4 : 16, addr);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0)
		return -errno;
	if (mnl_cb_run(buf, (size_t)n, seq, mnl_socket_get_portid(nl), NULL, NULL) < 0)
		return -errno;
	return 0;
}

static int jail_block_metadata(struct af_error **err)
{
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	int rc = 0;

	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		rc = af_error_set(err, errno, "cannot open a netlink socket in the jail");
		goto out;
	}
	for (size_t i = 0; i < ARRAY_SIZE(jail_blocked_nets) && rc == 0; i++) {
		const struct jail_blocked *b = &jail_blocked_nets[i];
		int e = jail_route_unreachable(nl, b, (unsigned)i + 1);
		/* A host without IPv6 has no IPv6 routing in a new namespace either. */
		if (e < 0 && !(b->family == AF_INET6 && (e == -EAFNOSUPPORT || e == -EOPNOTSUPP)))
			rc = af_error_set(err, -e, "cannot add an unreachable route for %s/%u in the jail",
					  b->addr, b->prefix);
	}
out:
	if (nl)
		mnl_socket_close(nl);
	return rc;
}

int jail_net_setup(struct af_error **err)
{
	if (jail_lo_up(err) < 0 || jail_block_metadata(err) < 0)
		return -1;
	return 0;
}

/* True once pasta has given the namespace a default route (it configures
 * addresses first).  /proc/self/net is the reader's network namespace. */
static bool jail_has_default_route(void)
{
	_cleanup_file_ FILE *f = fopen("/proc/self/net/route", "re");
	_cleanup_free_ char *line = NULL;
	size_t n = 0;
	char dev[64];
	unsigned long dst;

	while (f && getline(&line, &n, f) > 0) {
		if (sscanf(line, "%63s %lx", dev, &dst) == 2 && dst == 0)
			return true;
	}
	return false;
}

int jail_net_wait(struct af_error **err)
{
	double end = now_monotonic() + JAIL_NET_WAIT_SECONDS;
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	while (!jail_has_default_route()) {
		if (now_monotonic() > end)
			return af_error_set(err, 0, "pasta did not configure the sandbox's network within %.0fs; "
					    "see the stage log for its messages",
					    JAIL_NET_WAIT_SECONDS);
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* pasta refuses /proc/PID/ns/net once it has dropped its capabilities (it
 * may no longer ptrace-access the target), so it gets the namespace the way
 * `ip netns` hands one out: bind-mounted on a file.  That happens in a mount
 * namespace of the keeper's own, on a tmpfs, so nothing appears on the host. */
static int jail_netns_file(pid_t host_pid, char *path, size_t len, struct af_error **err)
{
	static const char dir[] = "/run";
	_cleanup_free_ char *src = xasprintf("/proc/%d/ns/net", (int)host_pid);
	_cleanup_fd_ int fd = -1;

	if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return af_error_set(err, errno, "cannot make a mount namespace for pasta");
	if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k") < 0)
		return af_error_set(err, errno, "cannot mount a tmpfs on %s for pasta", dir);
	snprintf(path, len, "%s/netns", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || mount(src, path, NULL, MS_BIND, NULL) < 0)
		return af_error_set(err, errno, "cannot bind the jail's network namespace on %s", path);
	return 0;
}

pid_t jail_net_pasta_start(pid_t host_pid, int log_fd, struct af_error **err)
{
	char nspath[64];
	pid_t pid;

	if (jail_netns_file(host_pid, nspath, sizeof(nspath), err) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return af_error_set(err, errno, "cannot fork to start pasta");
	if (pid == 0) {
		/* --runas 0: as nobody, pasta could not setns() into a namespace
		 * owned by the initial user namespace (it still confines
		 * itself: its own namespaces and seccomp filter);
		 * -t/-u none: nothing of the host is forwarded into the jail;
		 * -T/-U none: no port of the jail's loopback leads to the host's;
		 * --no-map-gw: the gateway address is not the host's loopback. */
		char *const argv[] = {
			"pasta", "--foreground", "--quiet", "--runas", "0:0", "--netns", nspath, "--netns-only",
			"--config-net", "--no-map-gw", "-t", "none", "-u", "none", "-T", "none",
			"-U", "none", "--dns-forward", JAIL_DNS_ADDR, NULL,
		};
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (log_fd >= 0) {
			dup2(log_fd, STDOUT_FILENO);
			dup2(log_fd, STDERR_FILENO);
		}
		/* Nothing of the engine's environment (credentials) reaches it. */
		char *const env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
		execvpe(argv[0], argv, env);
		dprintf(STDERR_FILENO, "amiforge: cannot run pasta: %s; install the passt package\n",
			strerror(errno));
		_exit(127);
	}
	return pid;
}
