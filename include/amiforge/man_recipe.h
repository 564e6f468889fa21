/* SPDX-License-Identifier: Apache-2.0 */
/* amiforge-recipe(5), generated from the stage registry so that the page
 * cannot drift from the code: the Makefile pipes `amiforge __man-recipe`
 * through scdoc. */
#ifndef AMIFORGE_MAN_RECIPE_H
#define AMIFORGE_MAN_RECIPE_H

#include <stdio.h>

/* Writes the page's scdoc source to F: the recipe format, then one section
 * per stage type of registry_all().  Returns 0, or -1 with errno set when
 * writing failed. */
int man_recipe_write(FILE *f);

/* The hidden tool `amiforge __man-recipe`: man_recipe_write(stdout).
 * Returns the exit code (0, 1 on a write error, 2 on arguments). */
int man_recipe_main(int argc, char **argv);

#endif
