/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge aws request`: one signed request, for debugging an endpoint
 * (include/amiforge/aws/awscli.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/awscli.h"
#include "amiforge/aws/awsconfig.h"
#include "amiforge/aws/creds.h"
#include "amiforge/aws/http.h"
#include "amiforge/aws/request.h"
#include "amiforge/aws/sigv4.h"
#include "amiforge/cleanup.h"
#include "amiforge/cli.h"
#include "amiforge/error.h"
#include "amiforge/exitcodes.h"
#include "amiforge/log.h"
#include "amiforge/util.h"

static const char awscli_usage[] =
	"usage: amiforge aws request METHOD URL [options]\n"
	"  --service S          signing name (ec2, ebs, s3, ...); inferred from AWS host names\n"
	"  --region R           signing region; inferred from AWS host names, else AWS_REGION...\n"
	"  -H 'Name: value'     add a request header (repeatable)\n"
	"  -d TEXT | -d @FILE   request body (@- reads standard input)\n"
	"  --unsigned-payload   sign with UNSIGNED-PAYLOAD (EBS PutSnapshotBlock)\n"
	"  --profile P          AWS profile (else AWS_PROFILE or default)\n"
	"  --date YYYYMMDDTHHMMSSZ   fixed signing time\n"
	"  --dry-run            print the canonical request, string to sign and Authorization\n"
	"                       header (session token redacted; the secret is never printed)\n"
	"  -i, --include        print the response status and headers before the body\n"
	"exit: 0 a 2xx answer, 1 an error answer or failure, 2 usage\n";

struct awscli_opts {
	const char *method, *url, *service, *region, *date, *profile, *data;
	struct sigv4_header *h;
	size_t nh;
	bool dry_run, include, unsigned_payload;
};

#define awscli_usage_error(...) cli_usage_error("amiforge aws", awscli_usage, __VA_ARGS__)

static void awscli_free_headers(struct awscli_opts *o)
{
	for (size_t i = 0; i < o->nh; i++) {
		free((char *)o->h[i].name);
		free((char *)o->h[i].value);
	}
	free(o->h);
}

static int awscli_add_header(struct awscli_opts *o, const char *arg)
{
	const char *colon = strchr(arg, ':');
	if (!colon || colon == arg)
		return awscli_usage_error("-H '%s': expected 'Name: value'", arg);
	o->h = xreallocarray(o->h, o->nh + 1, sizeof(*o->h));
	const char *v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	o->h[o->nh].name = xstrndup(arg, (size_t)(colon - arg));
	o->h[o->nh].value = xstrdup(v);
	o->nh++;
	return 0;
}

enum { AO_SERVICE = 256, AO_REGION, AO_DATE, AO_PROFILE, AO_DRY, AO_UNSIGNED };

static const struct option awscli_options[] = {
	{ "service", required_argument, NULL, AO_SERVICE },
	{ "region", required_argument, NULL, AO_REGION },
	{ "date", required_argument, NULL, AO_DATE },
	{ "profile", required_argument, NULL, AO_PROFILE },
	{ "dry-run", no_argument, NULL, AO_DRY },
	{ "unsigned-payload", no_argument, NULL, AO_UNSIGNED },
	{ "header", required_argument, NULL, 'H' },
	{ "data", required_argument, NULL, 'd' },
	{ "include", no_argument, NULL, 'i' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* 0, -1 after --help, or an exit code. */
static int awscli_parse(int argc, char **argv, struct awscli_opts *o)
{
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "H:d:ih", awscli_options, NULL)) != -1) {
		switch (c) {
		case AO_SERVICE: o->service = optarg; break;
		case AO_REGION: o->region = optarg; break;
		case AO_DATE: o->date = optarg; break;
		case AO_PROFILE: o->profile = optarg; break;
		case AO_DRY: o->dry_run = true; break;
		case AO_UNSIGNED: o->unsigned_payload = true; break;
		case 'd': o->data = optarg; break;
		case 'i': o->include = true; break;
		case 'H':
			if (awscli_add_header(o, optarg))
				return EXIT_USAGE;
			break;
		case 'h':
			fputs(awscli_usage, stdout);
			return -1;
		default:
			return awscli_usage_error("%s", "unexpected option");
		}
	}
	if (argc - optind != 2)
		return awscli_usage_error("%s", "request takes METHOD and URL");
	o->method = argv[optind];
	o->url = argv[optind + 1];
	return 0;
}

static char *awscli_read_body(const char *data, size_t *len, struct af_error **err)
{
	if (!data) {
		*len = 0;
		return xstrdup("");
	}
	if (data[0] != '@') {
		*len = strlen(data);
		return xstrdup(data);
	}
	return read_file(strcmp(data + 1, "-") ? data + 1 : "/dev/stdin", len, err);
}

/* Service and region: the options, else the AWS host name, else (region
 * only) the usual chain. */
static int awscli_scope(struct awscli_opts *o, const char *host, char **service, char **region,
			struct af_error **err)
{
	char *is = NULL, *ir = NULL;
	bool inferred = aws_host_infer(host, &is, &ir) == 0;
	*service = xstrdup(o->service ? o->service : inferred ? is : "");
	if (o->region)
		*region = xstrdup(o->region);
	else if (inferred)
		*region = xstrdup(ir);
	free(is);
	free(ir);
	if (!**service)
		return af_error_set(err, 0, "cannot infer the service from host '%s' (give --service)",
				    host);
	if (!o->region && !inferred) {
		struct aws_creds_opts co = { .profile = o->profile };
		if (aws_region_resolve(NULL, &co, region, NULL, err) < 0)
			return af_error_hint(err, "or give --region");
	}
	return 0;
}

static unsigned awscli_flags(const struct awscli_opts *o, const char *service)
{
	unsigned f = 0;
	if (!strcmp(service, "s3"))
		f |= SIGV4_S3;
	if (o->unsigned_payload)
		f |= SIGV4_UNSIGNED_PAYLOAD;
	return f;
}

static int awscli_dry_run(struct awscli_opts *o, const char *service, const char *region,
			  const char *body, size_t body_len, struct af_error **err)
{
	_cleanup_free_ char *host = NULL, *path = NULL, *query = NULL;
	if (http_url_split(o->url, &host, &path, &query, err) < 0)
		return -1;
	struct aws_creds_opts co = { .profile = o->profile };
	struct aws_creds c = { 0 };
	if (aws_creds_resolve(&co, &c, err) < 0)
		return -1;
	struct sigv4_header *all = xcalloc(o->nh + 1, sizeof(*all));
	memcpy(all, o->h, o->nh * sizeof(*all));
	size_t n = o->nh;
	bool has_host = false;
	for (size_t i = 0; i < n; i++)
		has_host |= !strcasecmp(all[i].name, "host");
	if (!has_host)
		all[n++] = (struct sigv4_header){ "Host", host };
	struct sigv4_key key = { c.access_key_id, c.secret_access_key, c.session_token };
	struct sigv4_request req = {
		.method = o->method, .path = path, .query = query, .headers = all, .n_headers = n,
		.body = body, .body_len = body_len, .region = region, .service = service,
		.amz_date = o->date, .flags = awscli_flags(o, service),
	};
	struct sigv4_result r;
	int rc = sigv4_sign(&req, &key, &r, err);
	free(all);
	if (rc == 0) {
		_cleanup_free_ char *creq = aws_redact(r.canonical_request, &c);
		printf("--- canonical request\n%s\n--- string to sign\n%s\n--- authorization\n%s\n",
		       creq, r.string_to_sign, r.authorization);
		printf("--- credentials\nfrom %s\n", c.source);
		sigv4_result_release(&r);
	}
	aws_creds_release(&c);
	return rc;
}

static void awscli_print_response(const struct awscli_opts *o, const struct http_response *resp)
{
	if (o->include && resp->status) {
		printf("HTTP %ld\n", resp->status);
		for (size_t i = 0; i < resp->n_headers; i++)
			printf("%s: %s\n", resp->headers[i].name, resp->headers[i].value);
		printf("\n");
	}
	if (resp->body_len)
		fwrite(resp->body, 1, resp->body_len, stdout);
	if (resp->body_len && resp->body[resp->body_len - 1] != '\n' && isatty(STDOUT_FILENO))
		putchar('\n');
}

static int awscli_send(struct awscli_opts *o, const char *service, const char *region,
		       const char *body, size_t body_len, struct af_error **err)
{
	struct aws_creds_opts co = { .profile = o->profile };
	struct aws_creds_chain *chain = aws_creds_chain_new(&co);
	const struct aws_signer sign = {
		.creds = chain, .region = region, .service = service,
		.sigv4_flags = awscli_flags(o, service), .amz_date = o->date,
	};
	_cleanup_free_ char *action = xasprintf("%s %s %.*s", service, o->method,
						(int)strcspn(o->url, "?"), o->url);
	struct http_request req = {
		.action = action, .method = o->method, .url = o->url, .headers = o->h,
		.n_headers = o->nh, .body = body, .body_len = body_len,
	};
	struct http_response resp;
	int r = aws_request_do(&sign, &req, &resp, err);
	awscli_print_response(o, &resp);
	http_response_release(&resp);
	aws_creds_chain_free(chain);
	return r;
}

static int awscli_request(int argc, char **argv)
{
	struct awscli_opts o = { 0 };
	int rc = awscli_parse(argc, argv, &o);
	if (rc) {
		awscli_free_headers(&o);
		return rc < 0 ? EXIT_OK : rc;
	}
	_cleanup_error_ struct af_error *err = NULL;
	_cleanup_free_ char *host = NULL, *path = NULL, *query = NULL;
	_cleanup_free_ char *service = NULL, *region = NULL, *body = NULL;
	size_t body_len = 0;
	int r = http_url_split(o.url, &host, &path, &query, &err);
	if (r == 0)
		r = awscli_scope(&o, host, &service, &region, &err);
	if (r == 0 && !(body = awscli_read_body(o.data, &body_len, &err)))
		r = -1;
	if (r == 0)
		r = o.dry_run ? awscli_dry_run(&o, service, region, body, body_len, &err) :
				awscli_send(&o, service, region, body, body_len, &err);
	awscli_free_headers(&o);
	if (r < 0) {
		_cleanup_free_ char *msg = aws_redact(af_error_msg(err), NULL);
		log_error("aws request: %s", msg);
		return EXIT_STAGE_FAILED;
	}
	return EXIT_OK;
}

static const struct awscli_command {
	const char *name;
	int (*fn)(int argc, char **argv);
} awscli_commands[] = {
	{ "request", awscli_request },
};

int awscli_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(awscli_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	for (size_t i = 0; i < ARRAY_SIZE(awscli_commands); i++)
		if (!strcmp(argv[1], awscli_commands[i].name))
			return awscli_commands[i].fn(argc - 1, argv + 1);
	return awscli_usage_error("'%s' is not an aws subcommand", argv[1]);
}
