/* SPDX-License-Identifier: Apache-2.0 */
/* The recipe loader (recipe_load: libyaml, variables, the stages' parameter
 * schemas) on arbitrary YAML.  Seeds: tests/fuzz/corpus/recipe/. */
#include "fuzz.h"

#include "amiforge/recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct recipe *r = NULL;
	struct diag_list d = { 0 };
	if (recipe_load(fuzz_file(data, size), NULL, 0, &r, &d) == 0)
		recipe_free(r);
	recipe_diags_release(&d);
	return 0;
}
