/* aletheia: AWS Signature Version 4 request signing for S3 (HMAC-SHA256 via OpenSSL libcrypto). */
#ifndef ALETHEIA_SIGV4_H
#define ALETHEIA_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include "aletheia/common.h"

/* SHA-256 of the empty string, and the literal S3 accepts instead of a body hash. */
#define AL_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define AL_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define AL_SIGV4_HEX_LEN 64       /* a SHA-256 digest as lowercase hex */
#define AL_SIGV4_AMZ_DATE_LEN 16  /* "YYYYMMDDTHHMMSSZ" */

typedef struct al_sigv4_request {
	const char *method;             /* "GET", "PUT"... */
	const char *host;               /* as curl sends it in Host:, with ":port" if not the default */
	const char *path;               /* raw, unencoded, starts with '/': "/bucket/key with space" */
	const char *query;              /* raw "a=1&b" (value-less allowed) or NULL; no '&' inside
					 * names or values, a name has no '=' */
	const char *const *headers;     /* "Name: value" strings, NULL-terminated, may be NULL; all are
					 * signed; no Host (it comes from host) */
	const char *payload_sha256_hex; /* hex, or AL_SIGV4_UNSIGNED_PAYLOAD; NULL = empty body */
} al_sigv4_request;

typedef struct al_sigv4_credentials {
	const char *access_key;
	const char *secret_key;
	const char *session_token;      /* may be NULL */
	const char *region;             /* "us-east-1" */
	const char *service;            /* "s3" */
} al_sigv4_credentials;

/* Signs req at time now (Unix seconds) and returns the headers to add to the request:
 * X-Amz-Date, X-Amz-Content-Sha256, X-Amz-Security-Token (when cred has a session token) and
 * Authorization, as a NULL-terminated malloc'd array of "Name: value" strings (free it with
 * al_sigv4_headers_free). The request must then be sent with exactly req's method, host, path
 * and query (encoded with al_sigv4_uri_encode) and headers. req->headers must not carry the
 * generated headers themselves. */
int al_sigv4_sign(char ***out, const al_sigv4_request *req, const al_sigv4_credentials *cred,
	int64_t now);
void al_sigv4_headers_free(char **headers);

/* Building blocks, exposed for tests and for building URLs that match what was signed. */

/* Percent-encodes every byte except A-Z a-z 0-9 - _ . ~ (uppercase hex); '/' is kept when
 * keep_slash is set (paths; S3 does not double-encode them), encoded otherwise (query parts). */
int al_sigv4_uri_encode(char **out, const char *s, int keep_slash);
/* Canonical query string of a raw query: each name and value encoded, sorted by name then
 * value, a value-less "b" becoming "b=", empty parts dropped. NULL or "" gives "". */
int al_sigv4_canonical_query(char **out, const char *query);
/* Canonical headers block ("name:value\n" per header, names lowercased and sorted, values
 * trimmed with inner runs of spaces collapsed, repeated names joined with ',' in the order
 * given) and the signed-headers list ("host;range;x-amz-date"). The Host header is taken
 * from host; headers may be NULL. Either out-parameter may be NULL. */
int al_sigv4_canonical_headers(char **out, char **signed_headers, const char *host,
	const char *const *headers);
/* The canonical request of req (method, encoded path, canonical query, canonical headers,
 * signed headers, payload hash); *signed_headers (if not NULL) gets the signed-headers list. */
int al_sigv4_canonical_request(char **out, char **signed_headers, const al_sigv4_request *req);
/* "YYYYMMDDTHHMMSSZ" (UTC) for Unix seconds now, into out[AL_SIGV4_AMZ_DATE_LEN + 1]. */
int al_sigv4_amz_date(char *out, int64_t now);
/* "AWS4-HMAC-SHA256\n<amz_date>\n<yyyymmdd>/<region>/<service>/aws4_request\n<hex sha256>". */
int al_sigv4_string_to_sign(char **out, const char *amz_date, const char *region,
	const char *service, const char *canonical_request);
/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date8), region), service), "aws4_request"). */
int al_sigv4_signing_key(unsigned char key[32], const char *secret_key, const char *date8,
	const char *region, const char *service);
/* The Authorization value for a canonical request: "AWS4-HMAC-SHA256 Credential=<key>/<scope>,
 * SignedHeaders=<list>, Signature=<hex>". */
int al_sigv4_authorization(char **out, const char *canonical_request, const char *signed_headers,
	const al_sigv4_credentials *cred, const char *amz_date);
/* Lowercase hex of len bytes into out[2 * len + 1]. */
void al_sigv4_hex(char *out, const unsigned char *bytes, size_t len);
/* SHA-256 of a buffer as lowercase hex into out[AL_SIGV4_HEX_LEN + 1]. */
int al_sigv4_sha256_hex(char *out, const void *data, size_t len);

#endif
