/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge aws request METHOD URL [--service S] [--region R] [-H 'K: V']...
 *  [-d @FILE|-d TEXT] [--dry-run] [--date YYYYMMDDTHHMMSSZ] [--profile P]`:
 * a signed-request tool for debugging an endpoint (awscurl's spirit).  With
 * --dry-run it prints the canonical request, the string to sign and the
 * Authorization header (the session token redacted, the secret never
 * printed) and sends nothing.  Service and region are inferred from AWS host
 * names when not given.  Returns the process exit code (exitcodes.h). */
#ifndef AMIFORGE_AWS_AWSCLI_H
#define AMIFORGE_AWS_AWSCLI_H

/* argv[0] is "aws". */
int awscli_main(int argc, char **argv);

#endif
