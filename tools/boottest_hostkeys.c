/* SPDX-License-Identifier: Apache-2.0 */
/* The ssh host keys a guest prints on its console, checked against the
 * fingerprints it prints with them (boottest.h). */
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"
#include "boottest_int.h"

/* The key types of OpenSSH's .pub files, in its order of preference, and
 * the HostKeyAlgorithms that check each.  OpenSSH signs with an RSA key as
 * rsa-sha2-*: "ssh-rsa" as an algorithm is SHA-1, which it no longer
 * accepts by default. */
static const struct {
	const char *type, *algs;
} bt_key_types[] = {
	{ "ssh-ed25519", "ssh-ed25519" },
	{ "sk-ssh-ed25519@openssh.com", "sk-ssh-ed25519@openssh.com" },
	{ "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256" },
	{ "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384" },
	{ "ecdsa-sha2-nistp521", "ecdsa-sha2-nistp521" },
	{ "sk-ecdsa-sha2-nistp256@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com" },
	{ "ssh-rsa", "rsa-sha2-512,rsa-sha2-256" },
	{ "ssh-dss", "ssh-dss" },
};

static bool bt_is_b64(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

char *boottest_key_fingerprint(const char *type, const char *blob)
{
	size_t len = strlen(blob), pad = 0;
	while (pad < 2 && pad < len && blob[len - 1 - pad] == '=')
		pad++;
	if (len == 0 || len % 4 || len > 16384)
		return NULL;
	for (size_t i = 0; i < len - pad; i++)
		if (!bt_is_b64(blob[i]))
			return NULL;
	_cleanup_free_ unsigned char *raw = xmalloc(len / 4 * 3 + 1);
	int n = EVP_DecodeBlock(raw, (const unsigned char *)blob, (int)len);
	if (n < 0 || (size_t)n < pad)
		return NULL;
	size_t rl = (size_t)n - pad;
	/* The blob starts with its type as an SSH string: a key printed
	 * under another type's name is not that key. */
	size_t tl = strlen(type);
	size_t got = (size_t)raw[0] << 24 | (size_t)raw[1] << 16 | (size_t)raw[2] << 8 | raw[3];
	if (rl < 4 + tl || got != tl || memcmp(raw + 4, type, tl) != 0)
		return NULL;
	unsigned char md[32];
	char b64[45];
	SHA256(raw, rl, md);
	EVP_EncodeBlock((unsigned char *)b64, md, sizeof(md));  /* 44 characters, the last '=' */
	b64[43] = '\0';
	return xasprintf("SHA256:%s", b64);
}

char *bt_line_fingerprint(const char *line)
{
	for (const char *p = line; (p = strstr(p, "SHA256:")); p++) {
		const char *fp = p + strlen("SHA256:");
		size_t n = 0;
		while (bt_is_b64(fp[n]))
			n++;
		if (n == 43 && fp[n] != '=')
			return xstrndup(p, strlen("SHA256:") + 43);
	}
	return NULL;
}

/* The public key in a line of the keys block ("ssh-ed25519 AAAA... root@host"
 * after whatever prefix), or false. */
static bool bt_line_key(const char *line, char **type, char **blob)
{
	for (const char *p = line; *p; p++) {
		if (p != line && p[-1] != ' ')
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(bt_key_types); i++) {
			size_t tl = strlen(bt_key_types[i].type);
			if (strncmp(p, bt_key_types[i].type, tl) || p[tl] != ' ')
				continue;
			const char *b = p + tl + 1;
			size_t bl = strcspn(b, " ");
			if (bl == 0)
				continue;
			*type = xstrdup(bt_key_types[i].type);
			*blob = xstrndup(b, bl);
			return true;
		}
	}
	return false;
}

/* The lines between the last BEGIN marker that has an END marker after it
 * and that END marker, "\r" removed; NULL when there is no such block. */
static char **bt_last_block(char **lines, size_t n, const char *begin, const char *end,
			    size_t *count)
{
	for (size_t i = n; i-- > 0;) {
		if (!strstr(lines[i], begin))
			continue;
		for (size_t j = i + 1; j < n; j++)
			if (strstr(lines[j], end)) {
				*count = j - i - 1;
				return lines + i + 1;
			}
	}
	return NULL;
}

static bool bt_strv_has(char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], s))
			return true;
	return false;
}

static bool bt_hostkeys_has(const struct boottest_hostkeys *k, const char *type, const char *blob)
{
	for (size_t i = 0; i < k->n; i++)
		if (!strcmp(k->keys[i].type, type) && !strcmp(k->keys[i].blob, blob))
			return true;
	return false;
}

void boottest_hostkeys_release(struct boottest_hostkeys *k)
{
	for (size_t i = 0; i < k->n; i++) {
		free(k->keys[i].type);
		free(k->keys[i].blob);
		free(k->keys[i].fingerprint);
	}
	free(k->keys);
	*k = (struct boottest_hostkeys){ 0 };
}

/* Keys of the keys block whose fingerprint is in FPS. */
static void bt_match_keys(char **block, size_t nb, char **fps, size_t nfp,
			  struct boottest_hostkeys *k)
{
	for (size_t i = 0; i < nb; i++) {
		_cleanup_free_ char *type = NULL, *blob = NULL;
		if (!bt_line_key(block[i], &type, &blob) || bt_hostkeys_has(k, type, blob))
			continue;
		char *fp = boottest_key_fingerprint(type, blob);
		if (!fp || !bt_strv_has(fps, nfp, fp)) {
			free(fp);
			k->rejected++;
			continue;
		}
		k->keys = xreallocarray(k->keys, k->n + 1, sizeof(*k->keys));
		k->keys[k->n++] = (struct boottest_hostkey){ .type = steal_pointer(&type),
							     .blob = steal_pointer(&blob),
							     .fingerprint = fp };
	}
}

int boottest_console_hostkeys(const char *console, struct boottest_hostkeys *out,
			      struct af_error **err)
{
	_cleanup_free_ char *copy = xstrdup(console);
	_cleanup_free_ char **lines = NULL;
	size_t n = 0;
	for (char *p = copy, *line; (line = strsep(&p, "\n"));) {
		line[strcspn(line, "\r")] = '\0';
		lines = xreallocarray(lines, n + 1, sizeof(*lines));
		lines[n++] = line;
	}
	size_t nfb = 0, nkb = 0;
	char **fb = bt_last_block(lines, n, BT_FP_BEGIN, BT_FP_END, &nfb);
	char **kb = bt_last_block(lines, n, BT_KEYS_BEGIN, BT_KEYS_END, &nkb);
	if (!fb || !kb)
		return 0;
	_cleanup_strv_ char **fps = xcalloc(nfb + 1, sizeof(*fps));
	size_t nfp = 0;
	for (size_t i = 0; i < nfb; i++)
		if ((fps[nfp] = bt_line_fingerprint(fb[i])))
			nfp++;
	struct boottest_hostkeys k = { 0 };
	bt_match_keys(kb, nkb, fps, nfp, &k);
	if (nfp == 0 || k.n == 0) {
		size_t rejected = k.rejected;
		boottest_hostkeys_release(&k);
		if (nfp == 0)
			return af_error_set(err, 0, "the console's host key fingerprints block "
					    "holds no SHA256 fingerprint: nothing to check the "
					    "guest's key against");
		if (rejected)
			return af_error_set(err, 0, "none of the %zu public key(s) the guest "
					    "printed on its console matches a printed "
					    "fingerprint: refusing to trust them", rejected);
		return af_error_set(err, 0, "the console's host keys block holds no public key");
	}
	*out = k;
	return 1;
}

char *boottest_known_hosts(const struct boottest_hostkeys *k, const char *alias)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < k->n; i++)
		strbuf_addf(&sb, "%s %s %s\n", alias, k->keys[i].type, k->keys[i].blob);
	return strbuf_detach(&sb);
}

char *boottest_hostkey_algorithms(const struct boottest_hostkeys *k)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t t = 0; t < ARRAY_SIZE(bt_key_types); t++)
		for (size_t i = 0; i < k->n; i++)
			if (!strcmp(k->keys[i].type, bt_key_types[t].type)) {
				strbuf_addf(&sb, "%s%s", sb.len ? "," : "", bt_key_types[t].algs);
				break;
			}
	return strbuf_detach(&sb);
}
