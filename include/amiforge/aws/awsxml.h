/* SPDX-License-Identifier: Apache-2.0 */
/* Small libxml2 helpers shared by the EC2 and S3 clients: parse a response
 * safely, walk elements by local name (namespaces ignored, as AWS documents
 * use one default namespace or none), read text. */
#ifndef AMIFORGE_AWS_AWSXML_H
#define AMIFORGE_AWS_AWSXML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libxml/tree.h>

struct af_error;

static inline void cleanup_xmldocp(xmlDoc **d) { if (*d) xmlFreeDoc(*d); }
#define _cleanup_xmldoc_ __attribute__((cleanup(cleanup_xmldocp)))

/* Parses BODY without network access or entity expansion.  Returns the
 * document (caller frees with xmlFreeDoc) or NULL + err naming WHAT. */
xmlDoc *awsxml_parse(const char *body, size_t len, const char *what, struct af_error **err);

/* First element child of PARENT (NULL-safe) whose local name is NAME, or
 * NULL.  awsxml_next: the next such sibling after NODE. */
xmlNode *awsxml_child(const xmlNode *parent, const char *name);
xmlNode *awsxml_next(const xmlNode *node, const char *name);
/* Follows a path of child names ("imagesSet", "item", NULL-terminated). */
xmlNode *awsxml_path(const xmlNode *from, ...) __attribute__((sentinel));

#define awsxml_foreach(var, parent, name) \
	for (xmlNode *var = awsxml_child((parent), (name)); var; var = awsxml_next(var, (name)))

/* Text content of NODE, or of PARENT's child NAME: a malloc'd copy, or NULL
 * when the element is absent. */
char *awsxml_node_text(const xmlNode *node);
char *awsxml_text(const xmlNode *parent, const char *name);
/* Child NAME as an integer (def when absent or not a number) or boolean
 * ("true"). */
int64_t awsxml_int(const xmlNode *parent, const char *name, int64_t def);
bool awsxml_bool(const xmlNode *parent, const char *name);

#endif
