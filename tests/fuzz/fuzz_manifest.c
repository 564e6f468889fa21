/* SPDX-License-Identifier: Apache-2.0 */
/* The bundle manifest: bundle_signed_data (the signed substrings) and
 * bundle_unbundle, whose first step is the manifest reader (libxml2 +
 * XPath: digest, keys, size, parts).  The reader is static in
 * engine/unbundle.c, so the input goes through the public entry point; the
 * user key does not exist, so nothing past the manifest is read or written.
 * Seeds: tests/fuzz/corpus/manifest/. */
#include "fuzz.h"

#include "amiforge/bundle_format.h"
#include "amiforge/unbundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_string(data, size);
	free(bundle_signed_data(text));
	free(text);
	struct af_error *err = NULL;
	if (unbundle_image(fuzz_file(data, size), "/nonexistent/amiforge-fuzz/key.pem", "/nonexistent",
			    "/nonexistent/amiforge-fuzz/image", &err) == 0)
		abort(); /* cannot succeed without the key */
	af_error_free(err);
	return 0;
}
