/* SPDX-License-Identifier: Apache-2.0 */
/* fstab: the text written from parameters and the root's identity (the
 * stage run for real is in test_stage_mkfs.c, after mkfs).  The stage file
 * is included so its static helpers can be tested. */
#include "stagetest.h"

#include "../../stages/fstab.c"

static void test_fstab_text(void **state)
{
	json_t *p = json_loads("{}", 0, NULL);
	char *t = fstab_render(p, "LABEL=rootfs", "ext4");
	assert_string_equal(t, "# /etc/fstab: static file system information, written by amiforge.\n"
			       "# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n"
			       "LABEL=rootfs\t/\text4\tdefaults\t0\t1\n"
			       "proc\t/proc\tproc\tdefaults\t0\t0\n"
			       "sysfs\t/sys\tsysfs\tdefaults\t0\t0\n");
	free(t);
	json_decref(p);
	p = json_loads("{\"proc\": false, \"root_options\": \"noatime,errors=remount-ro\", \"swap\": \"/dev/xvdb\","
		       " \"ephemeral\": \"/dev/xvdc\", \"entries\": [{\"spec\": \"tmpfs\", \"file\": \"/tmp\","
		       " \"type\": \"tmpfs\", \"options\": \"size=1G\"}, {\"spec\": \"/dev/xvdd\", \"file\": \"/srv\","
		       " \"type\": \"ext4\", \"pass\": 2}]}", 0, NULL);
	t = fstab_render(p, "UUID=0f2e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "ext3");
	assert_non_null(strstr(t, "\nUUID=0f2e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b\t/\text3\tnoatime,errors=remount-ro\t0\t1\n"
				  "/dev/xvdb\tnone\tswap\tsw,nofail\t0\t0\n"
				  "/dev/xvdc\t/mnt\tauto\tdefaults,nofail\t0\t2\n"
				  "tmpfs\t/tmp\ttmpfs\tsize=1G\t0\t0\n"
				  "/dev/xvdd\t/srv\text4\tdefaults\t0\t2\n"));
	assert_null(strstr(t, "proc"));
	free(t);
	json_decref(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fstab_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
