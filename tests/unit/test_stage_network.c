/* SPDX-License-Identifier: Apache-2.0 */
/* network: the generated interfaces file, networkd unit, hosts and hostname
 * against expected text, and the parameter check.  The stage file is
 * included so its static helpers can be tested. */
#include "stagetest.h"

#include "../../stages/network.c"

static void test_interfaces(void **state)
{
	json_t *p = load_json("{}");
	char *t = net_render_interfaces(p);
	assert_string_equal(t, "# /etc/network/interfaces: written by amiforge (network stage).\n"
			       "source /etc/network/interfaces.d/*\n"
			       "\n"
			       "auto lo\n"
			       "iface lo inet loopback\n"
			       "\n"
			       "allow-hotplug eth0\n"
			       "iface eth0 inet dhcp\n");
	free(t);
	json_decref(p);
	p = load_json("{\"interfaces\": [{\"name\": \"ens5\", \"method\": \"dhcp\"}, {\"name\": \"eth1\"}]}");
	t = net_render_interfaces(p);
	assert_non_null(strstr(t, "iface lo inet loopback\n\nallow-hotplug ens5\niface ens5 inet dhcp\n\n"
				  "allow-hotplug eth1\niface eth1 inet dhcp\n"));
	free(t);
	json_decref(p);
}

static void test_networkd_unit(void **state)
{
	char *t = net_render_networkd();
	assert_string_equal(t, "# written by amiforge (network stage): DHCP on every Ethernet interface.\n"
			       "[Match]\n"
			       "Name=en* eth*\n"
			       "\n"
			       "[Network]\n"
			       "DHCP=yes\n");
	free(t);
}

static void test_hosts(void **state)
{
	json_t *p = load_json("{\"hostname\": \"web-1\", \"domain\": \"example.org\"}");
	char *t = net_render_hosts(p);
	assert_string_equal(t, "127.0.0.1\tlocalhost\n"
			       "127.0.1.1\tweb-1.example.org\tweb-1\n"
			       "\n"
			       "# The following lines are desirable for IPv6 capable hosts\n"
			       "::1\tlocalhost ip6-localhost ip6-loopback\n"
			       "ff02::1\tip6-allnodes\n"
			       "ff02::2\tip6-allrouters\n");
	free(t);
	char *h = net_render_hostname(p);
	assert_string_equal(h, "web-1\n");
	free(h);
	json_decref(p);
	p = load_json("{}");
	t = net_render_hosts(p);
	assert_non_null(strstr(t, "\n127.0.1.1\tdebian\n"));
	free(t);
	json_decref(p);
}

static void test_network_check(void **state)
{
	static const char *const bad[] = {
		"{\"hostname\": \"bad_name\"}",
		"{\"hostname\": \"-x\"}",
		"{\"hostname\": \"a..b\"}",
		"{\"interfaces\": [{\"name\": \"eth0 up\"}]}",
		"{\"interfaces\": [{\"name\": \"averyveryverylongname\"}]}",
		"{\"backend\": \"networkd\", \"interfaces\": [{\"name\": \"eth0\"}]}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *p = load_json(bad[i]);
		struct af_error *err = NULL;
		assert_int_equal(net_check(p, &err), -1);
		af_error_free(err);
		json_decref(p);
	}
	json_t *p = load_json("{\"hostname\": \"ip-10-0-0-1.eu-west-1\", \"interfaces\": [{\"name\": \"ens5\"}]}");
	struct af_error *err = NULL;
	assert_int_equal(net_check(p, &err), 0);
	json_decref(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_interfaces),
		cmocka_unit_test(test_networkd_unit),
		cmocka_unit_test(test_hosts),
		cmocka_unit_test(test_network_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
