/* SPDX-License-Identifier: Apache-2.0 */
/* The instance-store bundle: part names, the AKI table, the manifest text
 * (the shape FORMATS.md §1.3 shows from the real tool), the signed
 * substrings, the old-GNU sparse tar header, and a round trip through
 * bundle_create and bundle_unbundle of a sparse image with many extents and
 * several parts (damaged part and wrong key refused). */
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "amiforge/bundle_create.h"
#include "amiforge/error.h"
#include "amiforge/unbundle.h"
#include "amiforge/util.h"

static void test_part_names(void **state)
{
	(void)state;
	static const struct {
		size_t index, nparts;
		const char *want;
	} cases[] = {
		{ 0, 1, "img.part.0" },   { 8, 9, "img.part.8" },      { 0, 10, "img.part.00" },
		{ 9, 10, "img.part.09" }, { 14, 15, "img.part.14" },   { 0, 15, "img.part.00" },
		{ 5, 100, "img.part.005" }, { 99, 100, "img.part.099" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *n = bundle_part_name("img", cases[i].index, cases[i].nparts);
		assert_string_equal(n, cases[i].want);
		free(n);
	}
	assert_int_equal(bundle_part_count(0), 0);
	assert_int_equal(bundle_part_count(1), 1);
	assert_int_equal(bundle_part_count(BUNDLE_PART_SIZE), 1);
	assert_int_equal(bundle_part_count(BUNDLE_PART_SIZE + 1), 2);
	assert_int_equal(bundle_part_count(15ull * BUNDLE_PART_SIZE - 3), 15);
}

static void test_aki_and_certs(void **state)
{
	(void)state;
	assert_string_equal(bundle_pvgrub_aki("us-east-1", "x86_64"), "aki-5c21674b");
	assert_string_equal(bundle_pvgrub_aki("us-east-1", "amd64"), "aki-5c21674b");
	assert_string_equal(bundle_pvgrub_aki("eu-west-1", "i386"), "aki-1c9fd86f");
	assert_string_equal(bundle_pvgrub_aki("us-gov-west-1", "x86_64"), "aki-9ee55bff");
	assert_string_equal(bundle_pvgrub_aki("ap-southeast-2", "x86_64"), "aki-66506305");
	assert_null(bundle_pvgrub_aki("ap-northeast-3", "x86_64"));
	assert_null(bundle_pvgrub_aki("us-east-1", "arm64"));
	assert_null(bundle_pvgrub_aki(NULL, "x86_64"));
	assert_string_equal(bundle_ec2_cert_name("eu-west-1"), "cert-ec2.pem");
	assert_string_equal(bundle_ec2_cert_name(NULL), "cert-ec2.pem");
	assert_string_equal(bundle_ec2_cert_name("us-gov-west-1"), "cert-ec2-gov.pem");
	assert_string_equal(bundle_ec2_cert_name("cn-northwest-1"), "cert-ec2-cn-north-1.pem");
	/* The shipped certificates are found from the build tree. */
	struct af_error *err = NULL;
	char *p = bundle_find_cert("cert-ec2.pem", &err);
	assert_non_null(p);
	assert_true(str_has_suffix(p, "data/ec2-certs/cert-ec2.pem"));
	free(p);
	assert_null(bundle_find_cert("no-such-cert.pem", &err));
	assert_non_null(strstr(af_error_msg(err), "no-such-cert.pem"));
	af_error_free(err);
}

static char *names1[] = { "test.img.part.0" };
static char *digests1[] = { "3ddb" };

static const struct bundle_manifest example = {
	.arch = "x86_64", .name = "test.img", .user = "111122223333", .digest = "2f7c", .size = 3145728,
	.bundled_size = 1048976, .ec2_encrypted_key = "7c94", .user_encrypted_key = "7325",
	.ec2_encrypted_iv = "449c", .user_encrypted_iv = "8a7e", .n_parts = 1, .part_names = names1,
	.part_digests = digests1,
};

/* FORMATS.md §1.3: the real ec2-bundle-image 1.5.3 output (hex shortened). */
static const char example_text[] =
	"<?xml version='1.0'?><manifest><version>2007-10-10</version><bundler><name>ec2-ami-tools</name><version>1.5</version><release>3</release></bundler><machine_configuration><architecture>x86_64</architecture></machine_configuration><image><name>test.img</name><user>111122223333</user><type>machine</type><digest algorithm='SHA1'>2f7c</digest><size>3145728</size><bundled_size>1048976</bundled_size><ec2_encrypted_key algorithm='AES-128-CBC'>7c94</ec2_encrypted_key><user_encrypted_key algorithm='AES-128-CBC'>7325</user_encrypted_key><ec2_encrypted_iv>449c</ec2_encrypted_iv><user_encrypted_iv>8a7e</user_encrypted_iv><parts count='1'><part index='0'><filename>test.img.part.0</filename><digest algorithm='SHA1'>3ddb</digest></part></parts></image><signature>50c8</signature></manifest>";

static void test_manifest_text(void **state)
{
	(void)state;
	char *t = bundle_manifest_text(&example, "50c8");
	assert_string_equal(t, example_text);
	char *signed_data = bundle_signed_data(t);
	const char *mc = strstr(example_text, "<machine_configuration>");
	const char *img = strstr(example_text, "<image>");
	size_t mc_len = (size_t)(strstr(mc, "</machine_configuration>") - mc) + strlen("</machine_configuration>");
	size_t img_len = (size_t)(strstr(img, "</image>") - img) + strlen("</image>");
	assert_int_equal(strlen(signed_data), mc_len + img_len);
	assert_memory_equal(signed_data, mc, mc_len);
	assert_memory_equal(signed_data + mc_len, img, img_len);
	free(signed_data);
	free(t);
	assert_null(bundle_signed_data("<manifest></manifest>"));
}

static void test_manifest_machine(void **state)
{
	(void)state;
	struct bundle_mapping maps[] = { { "swap", "sda3" }, { "ami", "sda1" }, { "root", "/dev/sda1" } };
	struct bundle_manifest m = example;
	m.mappings = maps;
	m.n_mappings = 3;
	m.kernel_id = "aki-dc9ed9af";
	m.name = "a&b<c>";
	char *t = bundle_manifest_text(&m, NULL);
	assert_non_null(strstr(t, "<machine_configuration><architecture>x86_64</architecture><block_device_mapping>"
				  "<mapping><virtual>ami</virtual><device>sda1</device></mapping>"
				  "<mapping><virtual>root</virtual><device>/dev/sda1</device></mapping>"
				  "<mapping><virtual>swap</virtual><device>sda3</device></mapping>"
				  "</block_device_mapping><kernel_id>aki-dc9ed9af</kernel_id></machine_configuration>"));
	assert_non_null(strstr(t, "<name>a&amp;b&lt;c&gt;</name>"));
	assert_non_null(strstr(t, "<signature></signature></manifest>"));
	free(t);
}

static unsigned tar_sum(const unsigned char *h)
{
	unsigned s = 0;
	for (int i = 0; i < 512; i++)
		s += (i >= 148 && i < 156) ? ' ' : h[i];
	return s;
}

static void test_tar_header(void **state)
{
	(void)state;
	uint64_t map[6][2] = { { 0, 8192 }, { 28672, 4096 }, { 94208, 4096 }, { 159744, 4096 },
			       { 3305472, 4096 }, { 50331648, 0 } };
	struct bundle_tar_member m = { .name = "disk", .mode = 0644, .mtime = 1700000000, .realsize = 50331648,
				       .stored = 24576, .sparse = true, .map = (const uint64_t(*)[2])map, .n_map = 6 };
	assert_int_equal(bundle_tar_header_size(4), 512);
	assert_int_equal(bundle_tar_header_size(5), 1024);
	assert_int_equal(bundle_tar_header_size(25), 1024);
	assert_int_equal(bundle_tar_header_size(26), 1536);
	unsigned char h[1024];
	assert_int_equal(bundle_tar_header(&m, h), 1024);
	assert_string_equal((char *)h, "disk");
	assert_memory_equal(h + 100, "0000644\0", 8);
	assert_memory_equal(h + 124, "00000060000\0", 12);
	assert_int_equal(h[156], 'S');
	assert_memory_equal(h + 257, "ustar  \0", 8);
	assert_string_equal((char *)h + 265, "root");
	assert_int_equal(strtoul((char *)h + 148, NULL, 8), tar_sum(h));
	assert_memory_equal(h + 386 + 24, "00000070000\0", 12);  /* map[1] offset */
	assert_int_equal(h[482], 1);                               /* extended */
	assert_memory_equal(h + 483, "00300000000\0", 12);       /* realsize */
	assert_memory_equal(h + 512, "00014470000\0", 12);       /* map[4] in the extension */
	assert_memory_equal(h + 512 + 24, "00300000000\0", 12);  /* the trailing hole's entry */
	assert_int_equal(h[512 + 504], 0);
	/* No holes: a regular member, one block. */
	m.sparse = false;
	m.stored = m.realsize;
	assert_int_equal(bundle_tar_header(&m, h), 512);
	assert_int_equal(h[156], '0');
	assert_memory_equal(h + 124, "00300000000\0", 12);
	assert_int_equal(h[482], 0);
	assert_int_equal(strtoul((char *)h + 148, NULL, 8), tar_sum(h));
	/* Beyond 8 GiB: GNU base-256. */
	m.sparse = true;
	m.realsize = 20ull << 30;
	m.n_map = 1;
	bundle_tar_header(&m, h);
	assert_int_equal(h[483], 0x80);
	assert_int_equal(h[483 + 7], 0x05);
}

/* ---- round trip ---- */

static void write_random_extents(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	unsigned char *buf = malloc(4u << 20);
	unsigned x = 12345;
	for (size_t i = 0; i < (4u << 20); i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (unsigned char)(x >> 16);
	}
	/* Seven random extents (4 MiB each, one half text-like), holes between. */
	for (int e = 0; e < 7; e++) {
		if (e == 3)
			memset(buf, 'a' + e, 1u << 20);
		assert_int_equal(pwrite(fd, buf, 4u << 20, (off_t)e * (6u << 20) + 4096), 4u << 20);
	}
	free(buf);
	close(fd);
}

static int files_equal(const char *a, const char *b)
{
	char *cmd = NULL;
	if (asprintf(&cmd, "cmp -s '%s' '%s'", a, b) < 0)
		abort();
	int r = system(cmd);
	free(cmd);
	return r == 0;
}

static void test_round_trip(void **state)
{
	(void)state;
	char *dir = test_mkdtemp();
	char *img = path_join(dir, "disk.img"), *x509 = path_join(dir, "x509"), *out = path_join(dir, "bundle");
	char *cert = path_join(x509, "cert.pem"), *key = path_join(x509, "key.pem");
	char *back = path_join(dir, "back.img");
	write_random_extents(img, 48u << 20);
	struct af_error *err = NULL;
	bool created = false;
	assert_int_equal(bundle_x509_generate(x509, &created, &err), 0);
	assert_true(created);
	struct stat st;
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(bundle_x509_generate(x509, &created, &err), 0);
	assert_false(created);

	char *ec2 = bundle_find_cert("cert-ec2.pem", &err);
	assert_non_null(ec2);
	struct bundle_opts o = { .image = img, .name = "rt.img", .dir = out, .user_cert = cert, .user_key = key,
				 .ec2_cert = ec2, .account = "111122223333", .arch = "x86_64", .level = 6, .threads = 2 };
	struct bundle_result r = { 0 };
	assert_int_equal(bundle_create(&o, &r, &err), 0);
	assert_int_equal(r.size, 48u << 20);
	assert_true(r.n_parts >= 2);
	assert_int_equal(r.n_parts, bundle_part_count(r.bundled_size));
	assert_int_equal(strlen(r.digest), 40);
	for (size_t i = 0; i < r.n_parts; i++) {
		char *n = bundle_part_name("rt.img", i, r.n_parts), *p = path_join(out, n);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal((uint64_t)st.st_size,
				 i + 1 < r.n_parts ? BUNDLE_PART_SIZE : r.bundled_size - i * (uint64_t)BUNDLE_PART_SIZE);
		free(n);
		free(p);
	}
	assert_int_equal(unbundle_image(r.manifest_path, key, NULL, back, &err), 0);
	assert_true(files_equal(img, back));
	assert_int_equal(stat(back, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < (32u << 20));  /* holes stayed holes */

	/* The EC2 certificate's key is not ours: unbundling with a fresh pair fails. */
	char *other = path_join(dir, "other");
	assert_int_equal(bundle_x509_generate(other, &created, &err), 0);
	char *other_key = path_join(other, "key.pem");
	assert_int_equal(unbundle_image(r.manifest_path, other_key, NULL, back, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "cannot decrypt"));
	af_error_clear(&err);

	/* A damaged part is named. */
	char *n0 = bundle_part_name("rt.img", 1, r.n_parts), *p0 = path_join(out, n0);
	int fd = open(p0, O_WRONLY);
	assert_int_equal(pwrite(fd, "X", 1, 1000), 1);
	close(fd);
	assert_int_equal(unbundle_image(r.manifest_path, key, NULL, back, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "damaged"));
	assert_non_null(strstr(af_error_msg(err), n0));
	af_error_clear(&err);

	free(n0);
	free(p0);
	free(other);
	free(other_key);
	bundle_result_release(&r);
	free(ec2);
	free(img);
	free(x509);
	free(out);
	free(cert);
	free(key);
	free(back);
	test_rmdir_r(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_part_names),   cmocka_unit_test(test_aki_and_certs),
		cmocka_unit_test(test_manifest_text), cmocka_unit_test(test_manifest_machine),
		cmocka_unit_test(test_tar_header),   cmocka_unit_test(test_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
