/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami convert`: the bundle in S3 (ami_convert.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "amiforge/bundle_format.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/mem.h"
#include "amiforge/util.h"
#include "ami_convert.h"

void conv_manifest_release(struct conv_manifest *m)
{
	free(m->bucket);
	free(m->key);
	free(m->text);
	free(m->name);
	free(m->architecture);
	free(m->kernel_id);
	free(m->ramdisk_id);
	free(m->signature);
	free(m->digest);
	*m = (struct conv_manifest){ 0 };
}

int conv_split_location(const char *text, int url, char **bucket, char **key, struct af_error **err)
{
	const char *p = text;
	if (url) {
		if (strncmp(p, "s3://", 5) != 0)
			return af_error_set(err, 0, "'%s' is not an s3://BUCKET/KEY URL", text);
		p += 5;
	}
	const char *slash = strchr(p, '/');
	if (!slash || slash == p || !slash[1] || !str_has_suffix(p, ".manifest.xml"))
		return af_error_set(err, 0, "'%s' does not name a bundle manifest (BUCKET/PREFIX/NAME.manifest.xml)", text);
	*bucket = xstrndup(p, (size_t)(slash - p));
	*key = xstrdup(slash + 1);
	return 0;
}

static char *conv_text(xmlXPathContextPtr x, const char *expr)
{
	xmlXPathObjectPtr o = xmlXPathEvalExpression((const xmlChar *)expr, x);
	char *s = NULL;
	if (o && o->nodesetval && o->nodesetval->nodeNr > 0) {
		xmlChar *c = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
		s = c && *c ? xstrdup((const char *)c) : NULL;
		xmlFree(c);
	}
	xmlXPathFreeObject(o);
	return s;
}

static size_t conv_count(xmlXPathContextPtr x, const char *expr)
{
	xmlXPathObjectPtr o = xmlXPathEvalExpression((const xmlChar *)expr, x);
	size_t n = o && o->nodesetval ? (size_t)o->nodesetval->nodeNr : 0;
	xmlXPathFreeObject(o);
	return n;
}

static int conv_manifest_parse(struct conv_manifest *m, const char *url, struct af_error **err)
{
	xmlDocPtr doc = xmlReadMemory(m->text, (int)m->len, NULL, NULL,
				      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc)
		return af_error_set(err, 0, "manifest '%s' is not well-formed XML", url);
	xmlXPathContextPtr x = xmlXPathNewContext(doc);
	m->name = conv_text(x, "/manifest/image/name");
	m->architecture = conv_text(x, "/manifest/machine_configuration/architecture");
	m->kernel_id = conv_text(x, "/manifest/machine_configuration/kernel_id");
	m->ramdisk_id = conv_text(x, "/manifest/machine_configuration/ramdisk_id");
	m->signature = conv_text(x, "/manifest/signature");
	m->digest = conv_text(x, "/manifest/image/digest");
	_cleanup_free_ char *size = conv_text(x, "/manifest/image/size");
	m->n_parts = conv_count(x, "/manifest/image/parts/part");
	xmlXPathFreeContext(x);
	xmlFreeDoc(doc);
	if (!m->name || !size || !m->digest || !m->n_parts)
		return af_error_set(err, 0, "manifest '%s' lacks the image's name, size, digest or parts: not an ec2-bundle-image manifest",
				    url);
	m->size = strtoull(size, NULL, 10);
	if (!m->size)
		return af_error_set(err, 0, "manifest '%s': image size '%s' is not a positive number", url, size);
	return 0;
}

int conv_manifest_fetch(const struct s3_client *s3, char *bucket, char *key, struct conv_manifest *m,
			struct af_error **err)
{
	*m = (struct conv_manifest){ .bucket = bucket, .key = key };
	_cleanup_free_ char *url = xasprintf("s3://%s/%s", bucket, key);
	bool found = false;
	if (s3_get_object_found(s3, bucket, key, &m->text, &m->len, NULL, &found, err) < 0)
		return af_error_wrap(err, "fetch manifest '%s'", url);
	if (!found)
		return af_error_set(err, ENOENT, "manifest '%s' does not exist (deleted bundle? check the AMI's ImageLocation)",
				    url);
	return conv_manifest_parse(m, url, err);
}

/* ---- the signature ---- */

static EVP_PKEY *conv_public_key(const char *key_pem, const char *cert_pem, struct af_error **err)
{
	const char *path = cert_pem ? cert_pem : key_pem;
	_cleanup_file_ FILE *f = fopen(path, "re");
	if (!f) {
		af_error_set(err, errno, "open %s '%s'", cert_pem ? "certificate" : "private key", path);
		return NULL;
	}
	EVP_PKEY *k = NULL;
	if (cert_pem) {
		X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
		k = c ? X509_get_pubkey(c) : NULL;
		X509_free(c);
	} else {
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	}
	if (!k)
		af_error_openssl(err, "'%s' is not %s", path,
				 cert_pem ? "a PEM X.509 certificate" : "an unencrypted PEM private key");
	return k;
}

int conv_verify_signature(const struct conv_manifest *m, const char *key_pem, const char *cert_pem,
			  struct af_error **err)
{
	_cleanup_free_ char *url = xasprintf("s3://%s/%s", m->bucket, m->key);
	_cleanup_free_ char *data = bundle_signed_data(m->text);
	size_t cap = m->signature ? strlen(m->signature) / 2 + 1 : 1, n = 0;
	_cleanup_free_ unsigned char *sig = xmalloc(cap);
	if (!m->signature || !data || hex_decode(m->signature, sig, cap, &n) < 0 || !n)
		return af_error_set(err, 0, "manifest '%s' has no signature (or no machine_configuration/image to sign): refusing an unsigned bundle",
				    url);
	EVP_PKEY *k = conv_public_key(key_pem, cert_pem, err);
	if (!k)
		return -1;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha1(), NULL, k) == 1 &&
		 EVP_DigestVerify(md, sig, n, (const unsigned char *)data, strlen(data)) == 1;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
	if (ok)
		return 0;
	if (cert_pem)
		return af_error_set(err, 0, "manifest '%s': the signature does not verify with certificate '%s' (altered manifest, or another signer)",
				    url, cert_pem);
	return af_error_set(err, 0, "manifest '%s': the signature does not verify with the public half of --key (altered manifest, or signed by another key: give the signer's certificate with --cert CERT.pem)",
			    url);
}

/* ---- parts ---- */

int conv_fetch_part(void *arg, size_t index, const char *filename, char **data, size_t *len,
		    char **where, struct af_error **err)
{
	struct conv_fetch *f = arg;
	const char *slash = strrchr(f->m->key, '/');
	_cleanup_free_ char *key = slash ? xasprintf("%.*s/%s", (int)(slash - f->m->key), f->m->key, filename)
					  : xstrdup(filename);
	*where = xasprintf("s3://%s/%s", f->m->bucket, key);
	bool found = false;
	log_info("part %zu of %zu: %s", index + 1, f->m->n_parts, *where);
	if (s3_get_object_found(f->s3, f->m->bucket, key, data, len, NULL, &found, err) < 0)
		return af_error_wrap(err, "fetch bundle part '%s'", *where);
	if (!found)
		return af_error_set(err, ENOENT, "bundle part '%s' does not exist: the bundle is incomplete", *where);
	return 0;
}

int conv_sink(void *arg, uint64_t off, const void *data, size_t len, struct af_error **err)
{
	struct conv_fetch *f = arg;
	return f->sink(f->sink_arg, off, data, len, err);
}
