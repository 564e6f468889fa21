/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/parser.h>

#include "amiforge/aws/awsxml.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

xmlDoc *awsxml_parse(const char *body, size_t len, const char *what, struct af_error **err)
{
	if (len > INT32_MAX) {
		af_error_set(err, 0, "%s: response of %zu bytes is too large to parse", what, len);
		return NULL;
	}
	/* NONET and no NOENT: a response never makes us fetch or expand anything. */
	xmlDoc *doc = xmlReadMemory(body, (int)len, "response.xml", NULL,
				    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc || !xmlDocGetRootElement(doc)) {
		if (doc)
			xmlFreeDoc(doc);
		/* BODY need not end in a NUL: print at most LEN bytes of it. */
		af_error_set(err, 0, "%s: the response is not XML (%zu bytes: %.*s)", what, len,
			     len ? (int)(len < 40 ? len : 40) : 5, len ? body : "empty");
		return NULL;
	}
	return doc;
}

static bool awsxml_is(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

xmlNode *awsxml_child(const xmlNode *parent, const char *name)
{
	if (!parent)
		return NULL;
	for (xmlNode *n = parent->children; n; n = n->next)
		if (awsxml_is(n, name))
			return n;
	return NULL;
}

xmlNode *awsxml_next(const xmlNode *node, const char *name)
{
	for (xmlNode *n = node ? node->next : NULL; n; n = n->next)
		if (awsxml_is(n, name))
			return n;
	return NULL;
}

xmlNode *awsxml_path(const xmlNode *from, ...)
{
	va_list ap;
	const xmlNode *n = from;
	va_start(ap, from);
	for (const char *name; n && (name = va_arg(ap, const char *));)
		n = awsxml_child(n, name);
	va_end(ap);
	return (xmlNode *)n;
}

char *awsxml_node_text(const xmlNode *node)
{
	if (!node)
		return NULL;
	xmlChar *t = xmlNodeGetContent(node);
	char *s = xstrdup(t ? (const char *)t : "");
	xmlFree(t);
	return s;
}

char *awsxml_text(const xmlNode *parent, const char *name)
{
	return awsxml_node_text(awsxml_child(parent, name));
}

int64_t awsxml_int(const xmlNode *parent, const char *name, int64_t def)
{
	char *t = awsxml_text(parent, name), *end = NULL;
	int64_t v = def;
	if (t && *t) {
		long long x = strtoll(t, &end, 10);
		if (end && *end == '\0')
			v = x;
	}
	free(t);
	return v;
}

bool awsxml_bool(const xmlNode *parent, const char *name)
{
	char *t = awsxml_text(parent, name);
	bool v = t && strcmp(t, "true") == 0;
	free(t);
	return v;
}
