/* SPDX-License-Identifier: Apache-2.0 */
/* network: DHCP on the instance's interfaces, the hostname and /etc/hosts.
 * backend ifupdown writes /etc/network/interfaces (lo + one stanza per
 * named interface, `allow-hotplug` so that a name the instance does not have
 * does not fail networking.service); backend networkd writes one
 * systemd-networkd unit matching every en* and eth* name (EC2 calls the
 * first NIC eth0 or ens5 depending on the kernel and instance type) and
 * enables systemd-networkd. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/inroot.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/spawn.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define NET_NETWORKD_UNIT "/etc/systemd/network/50-amiforge-dhcp.network"

static const char *const net_backends[] = { "ifupdown", "networkd", NULL };
static const char *const net_methods[] = { "dhcp", NULL };

static const struct param_spec net_iface_params[] = {
	{ .name = "name", .type = PT_STRING, .flags = PARAM_REQUIRED, .help = "interface name, e.g. eth0" },
	{ .name = "method", .type = PT_ENUM, .choices = net_methods, .help = "how it gets its address",
	  .defval = "dhcp" },
	{ .name = NULL },
};

static const struct param_spec net_params[] = {
	{ .name = "backend", .type = PT_ENUM, .choices = net_backends,
	  .help = "ifupdown (/etc/network/interfaces) or networkd (a unit matching en* and eth*)",
	  .defval = "ifupdown" },
	{ .name = "interfaces", .type = PT_LIST, .sub = net_iface_params,
	  .help = "interfaces configured with DHCP (ifupdown)", .defval = "[{name: eth0, method: dhcp}]" },
	{ .name = "hostname", .type = PT_STRING, .help = "/etc/hostname and the 127.0.1.1 line of /etc/hosts",
	  .defval = "debian" },
	{ .name = "domain", .type = PT_STRING, .help = "domain for the fully qualified name in /etc/hosts" },
	{ .name = NULL },
};

/* Linux interface names: 1-15 bytes, no '/', no whitespace, not "." or "..";
 * here also nothing that ifupdown's parser would read as syntax. */
static bool net_ifname_valid(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > 15 || !strcmp(n, ".") || !strcmp(n, ".."))
		return false;
	for (const char *p = n; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_.:@", *p))
			return false;
	return true;
}

/* RFC 1123 labels joined by dots, 253 bytes at most. */
static bool net_hostname_valid(const char *h)
{
	size_t len = strlen(h), label = 0;
	if (len == 0 || len > 253)
		return false;
	for (const char *p = h; *p; p++) {
		if (*p == '.') {
			if (label == 0 || p[-1] == '-')
				return false;
			label = 0;
		} else if (isalnum((unsigned char)*p) || (*p == '-' && label > 0)) {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0 && h[len - 1] != '-';
}

static int net_check(const json_t *params, struct af_error **err)
{
	const char *host = params_str(params, "hostname", "debian");
	const char *domain = params_str(params, "domain", NULL);
	if (!net_hostname_valid(host))
		return af_error_set(err, 0, "hostname '%s' is not a valid host name (letters, digits, '-', '.')", host);
	if (domain && !net_hostname_valid(domain))
		return af_error_set(err, 0, "domain '%s' is not a valid domain name", domain);
	size_t i;
	json_t *e;
	json_array_foreach(params_get(params, "interfaces"), i, e) {
		const char *name = params_str(e, "name", "");
		if (!net_ifname_valid(name))
			return af_error_set(err, 0, "interface name '%s' is not valid (1-15 letters, digits, '-', '_', '.', ':', '@')",
					    name);
	}
	if (!strcmp(params_str(params, "backend", "ifupdown"), "networkd") && params_get(params, "interfaces"))
		return af_error_set(err, 0, "backend networkd matches every en* and eth* interface; drop interfaces:");
	return 0;
}

/* ---- generated text (pure, unit-tested) ---- */

static char *net_render_interfaces(const json_t *params)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "# /etc/network/interfaces: written by amiforge (network stage).\n"
			   "source /etc/network/interfaces.d/*\n"
			   "\n"
			   "auto lo\n"
			   "iface lo inet loopback\n");
	const json_t *list = params_get(params, "interfaces");
	if (!list) {
		strbuf_addstr(&sb, "\nallow-hotplug eth0\niface eth0 inet dhcp\n");
		return strbuf_detach(&sb);
	}
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e) {
		const char *name = params_str(e, "name", "eth0");
		strbuf_addf(&sb, "\nallow-hotplug %s\niface %s inet %s\n", name, name, params_str(e, "method", "dhcp"));
	}
	return strbuf_detach(&sb);
}

static char *net_render_networkd(void)
{
	return xstrdup("# written by amiforge (network stage): DHCP on every Ethernet interface.\n"
		       "[Match]\n"
		       "Name=en* eth*\n"
		       "\n"
		       "[Network]\n"
		       "DHCP=yes\n");
}

static char *net_render_hostname(const json_t *params)
{
	return xasprintf("%s\n", params_str(params, "hostname", "debian"));
}

/* Debian's layout: the host's own name on 127.0.1.1 (so sudo and others
 * resolve it without a network), then the IPv6 defaults. */
static char *net_render_hosts(const json_t *params)
{
	const char *host = params_str(params, "hostname", "debian");
	const char *domain = params_str(params, "domain", NULL);
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "127.0.0.1\tlocalhost\n");
	if (domain)
		strbuf_addf(&sb, "127.0.1.1\t%s.%s\t%s\n", host, domain, host);
	else
		strbuf_addf(&sb, "127.0.1.1\t%s\n", host);
	strbuf_addstr(&sb, "\n# The following lines are desirable for IPv6 capable hosts\n"
			   "::1\tlocalhost ip6-localhost ip6-loopback\n"
			   "ff02::1\tip6-allnodes\n"
			   "ff02::2\tip6-allrouters\n");
	return strbuf_detach(&sb);
}

/* ---- run ---- */

static int net_write(int rootfd, const char *root, const char *path, char *text, struct af_error **err)
{
	_cleanup_free_ char *t = text;
	return inroot_write(rootfd, root, path, t, strlen(t), 0644, 0, 0, err);
}

static int net_enable_networkd(const struct stage_ctx *ctx, struct af_error **err)
{
	char *argv[] = { "systemctl", "enable", "systemd-networkd.service", NULL };
	struct spawn_opts so = { .argv = argv, .chroot = ctx->root, .out_fd = ctx->log_fd, .in_fd = -1,
				 .deadline = ctx->deadline };
	if (spawn_run(&so, err) < 0)
		return af_error_hint(err, "is systemd installed? add systemd-sysv to debootstrap include:");
	return 0;
}

static int net_run(struct stage_ctx *ctx, struct af_error **err)
{
	_cleanup_fd_ int rootfd = inroot_root_open(ctx->root, err);
	if (rootfd < 0)
		return -1;
	bool networkd = !strcmp(params_str(ctx->params, "backend", "ifupdown"), "networkd");
	if (networkd) {
		if (net_write(rootfd, ctx->root, NET_NETWORKD_UNIT, net_render_networkd(), err) < 0 ||
		    net_enable_networkd(ctx, err) < 0)
			return -1;
		log_info("wrote " NET_NETWORKD_UNIT " and enabled systemd-networkd");
	} else {
		if (!inroot_exists(rootfd, "/sbin/ifup"))
			log_warn("ifupdown is not installed in the image: add it to debootstrap include: or a packages stage");
		if (net_write(rootfd, ctx->root, "/etc/network/interfaces", net_render_interfaces(ctx->params), err) < 0)
			return -1;
		log_info("wrote /etc/network/interfaces");
	}
	if (net_write(rootfd, ctx->root, "/etc/hostname", net_render_hostname(ctx->params), err) < 0 ||
	    net_write(rootfd, ctx->root, "/etc/hosts", net_render_hosts(ctx->params), err) < 0)
		return -1;
	log_info("hostname %s", params_str(ctx->params, "hostname", "debian"));
	json_object_set_new(ctx->outputs, "network.hostname", json_string(params_str(ctx->params, "hostname", "debian")));
	json_object_set_new(ctx->outputs, "network.backend", json_string(networkd ? "networkd" : "ifupdown"));
	return 0;
}

/* For plan (stage.h). */
static char *net_describe(const struct stage_describe *d)
{
	const char *backend = params_str(d->params, "backend", "ifupdown");
	const char *host = params_str(d->params, "hostname", "debian");
	const char *domain = params_str(d->params, "domain", NULL);
	const json_t *ifs = params_get(d->params, "interfaces");
	struct strbuf sb = STRBUF_INIT;
	stage_describe_know(d, "network.backend", backend);
	stage_describe_know(d, "network.hostname", host);
	if (!strcmp(backend, "networkd")) {
		strbuf_addstr(&sb, "configure every en* and eth* interface by DHCP with systemd-networkd");
	} else if (!ifs) {
		strbuf_addstr(&sb, "configure eth0 (dhcp) with ifupdown");
	} else {
		strbuf_addstr(&sb, "configure ");
		for (size_t i = 0; i < json_array_size(ifs); i++) {
			const json_t *e = json_array_get(ifs, i);
			strbuf_addf(&sb, "%s%s (%s)", i ? ", " : "", params_str(e, "name", "?"),
				    params_str(e, "method", "dhcp"));
		}
		strbuf_addstr(&sb, " with ifupdown");
	}
	strbuf_addf(&sb, "; hostname %s%s%s", host, domain ? "." : "", domain ? domain : "");
	return strbuf_detach(&sb);
}

static const char *const network_provides[] = { "network.backend", "network.hostname", NULL };

const struct stage_type stage_network = {
	.name = "network",
	.summary = "DHCP with ifupdown or systemd-networkd, /etc/hostname and /etc/hosts",
	.params = net_params,
	.flags = STAGE_NEEDS_IMAGE | STAGE_NEEDS_MOUNT | STAGE_NEEDS_CHROOT,
	.provides = network_provides,
	.default_timeout = 300,
	.check = net_check,
	.describe = net_describe,
	.run = net_run,
};
