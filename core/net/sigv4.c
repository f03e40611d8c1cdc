/* aletheia: AWS Signature Version 4 signing, done here rather than by libcurl because curl 7.88
 * builds wrong canonical queries for multi-parameter and value-less queries (?uploads). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <pthread.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include "core/buf.h"
#include "core/net/sigv4.h"

#define ALGORITHM "AWS4-HMAC-SHA256"

/* Header names and the request method are HTTP tokens (RFC 9110). */
static int is_token_char(unsigned char c)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return 1;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '-' || c == '_' || c == '.' || c == '~';
}

/* A value that goes into a header line: no CR, LF or other control bytes but tab. */
static int is_header_safe(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

static int check_field(const char *value, const char *what)
{
	if (!value || !*value)
		return al_error_set(AL_EINVAL, "sigv4: %s is missing", what);
	if (!is_header_safe(value) || strpbrk(value, " \t"))
		return al_error_set(AL_EINVAL, "sigv4: %s has spaces or control characters", what);
	return 0;
}

static int check_credentials(const al_sigv4_credentials *cred)
{
	int rc;
	if (!cred)
		return al_error_set(AL_EINVAL, "sigv4: no credentials");
	if ((rc = check_field(cred->access_key, "access key")) ||
	    (rc = check_field(cred->secret_key, "secret key")) ||
	    (rc = check_field(cred->region, "region")) ||
	    (rc = check_field(cred->service, "service")))
		return rc;
	/* These end up between the '/' of the credential scope. */
	if (strchr(cred->access_key, '/') || strchr(cred->region, '/') || strchr(cred->service, '/'))
		return al_error_set(AL_EINVAL, "sigv4: access key, region and service cannot hold '/'");
	if (cred->session_token && !is_header_safe(cred->session_token))
		return al_error_set(AL_EINVAL, "sigv4: session token has control characters");
	return 0;
}

void al_sigv4_hex(char *out, const unsigned char *bytes, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;
	for (i = 0; i < len; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 0xf];
	}
	out[2 * len] = '\0';
}

/* OpenSSL 3 looks a digest or MAC up in its provider tables on every one-shot call (EVP_sha256(),
 * HMAC()): fetched once here, and HMACs made from a context that already holds the digest. */
static pthread_once_t evp_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_fetched;
static EVP_MAC_CTX *hmac_template;

static void evp_init(void)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (mac && (hmac_template = EVP_MAC_CTX_new(mac)) && !EVP_MAC_CTX_set_params(hmac_template, params)) {
		EVP_MAC_CTX_free(hmac_template);
		hmac_template = NULL;
	}
	EVP_MAC_free(mac);   /* the context keeps its own reference */
}

static const EVP_MD *sha256_md(void)
{
	pthread_once(&evp_once, evp_init);
	return sha256_fetched ? sha256_fetched : EVP_sha256();
}

int al_sigv4_sha256_hex(char *out, const void *data, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	if (!EVP_Digest(data, len, md, &md_len, sha256_md(), NULL) || md_len != 32)
		return al_error_set(AL_ERROR, "sigv4: SHA-256 failed in libcrypto");
	al_sigv4_hex(out, md, md_len);
	return 0;
}

static int hmac_sha256(unsigned char out[32], const void *key, size_t key_len, const char *msg)
{
	EVP_MAC_CTX *ctx;
	size_t len = 0;
	int ok;
	pthread_once(&evp_once, evp_init);
	if (!hmac_template) {
		unsigned int n = 0;
		ok = HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), out, &n) &&
			n == 32;
	} else {
		ok = (ctx = EVP_MAC_CTX_dup(hmac_template)) != NULL &&
			EVP_MAC_init(ctx, key, key_len, NULL) &&
			EVP_MAC_update(ctx, (const unsigned char *)msg, strlen(msg)) &&
			EVP_MAC_final(ctx, out, &len, 32) && len == 32;
		EVP_MAC_CTX_free(ctx);
	}
	if (!ok)
		return al_error_set(AL_ERROR, "sigv4: HMAC-SHA256 failed in libcrypto");
	return 0;
}

static int put_encoded(al_buf *b, const char *s, size_t len, int keep_slash)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t i;
	int rc = 0;
	for (i = 0; i < len && !rc; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_unreserved(c) || (keep_slash && c == '/')) {
			rc = al_buf_put(b, &s[i], 1);
		} else {
			char esc[3] = { '%', digits[c >> 4], digits[c & 0xf] };
			rc = al_buf_put(b, esc, 3);
		}
	}
	return rc;
}

int al_sigv4_uri_encode(char **out, const char *s, int keep_slash)
{
	al_buf b = AL_BUF_INIT;
	int rc;

	*out = NULL;
	if (!s)
		return al_error_set(AL_EINVAL, "sigv4: nothing to encode");
	if ((rc = al_buf_put(&b, "", 0)) || (rc = put_encoded(&b, s, strlen(s), keep_slash)))
		goto cleanup;
	*out = al_buf_detach(&b, NULL);
cleanup:
	al_buf_dispose(&b);
	return rc;
}

typedef struct query_param {
	char *name;   /* encoded */
	char *value;  /* encoded, "" for a value-less parameter */
} query_param;

static int cmp_param(const void *a, const void *b)
{
	const query_param *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->value, y->value);
}

int al_sigv4_canonical_query(char **out, const char *query)
{
	query_param *params = NULL;
	size_t n = 0, cap = 1, i;
	const char *p, *end, *eq;
	al_buf b = AL_BUF_INIT;
	int rc = 0;

	*out = NULL;
	if (!query)
		query = "";
	for (p = query; *p; p++)
		cap += (*p == '&');
	params = calloc(cap, sizeof(*params));
	if (!params) {
		rc = al_error_set(AL_ENOMEM, "sigv4: out of memory for query parameters");
		goto cleanup;
	}
	for (p = query; *p; p = *end ? end + 1 : end) {
		end = strchr(p, '&');
		if (!end)
			end = p + strlen(p);
		if (end == p)
			continue;   /* "a&&b" or a trailing '&' */
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq == p) {
			rc = al_error_set(AL_EINVAL, "sigv4: query parameter without a name in \"%s\"", query);
			goto cleanup;
		}
		if ((rc = al_buf_put(&b, "", 0)) ||
		    (rc = put_encoded(&b, p, (size_t)((eq ? eq : end) - p), 0)))
			goto cleanup;
		params[n].name = al_buf_detach(&b, NULL);
		n++;
		if ((rc = al_buf_put(&b, "", 0)) ||
		    (eq && (rc = put_encoded(&b, eq + 1, (size_t)(end - eq - 1), 0))))
			goto cleanup;
		params[n - 1].value = al_buf_detach(&b, NULL);
	}
	qsort(params, n, sizeof(*params), cmp_param);
	if ((rc = al_buf_put(&b, "", 0)))
		goto cleanup;
	for (i = 0; i < n; i++) {
		if ((i && (rc = al_buf_puts(&b, "&"))) || (rc = al_buf_puts(&b, params[i].name)) ||
		    (rc = al_buf_puts(&b, "=")) || (rc = al_buf_puts(&b, params[i].value)))
			goto cleanup;
	}
	*out = al_buf_detach(&b, NULL);
cleanup:
	for (i = 0; i < n; i++) {
		free(params[i].name);
		free(params[i].value);
	}
	free(params);
	al_buf_dispose(&b);
	return rc;
}

typedef struct header_entry {
	char *name;    /* lowercased */
	char *value;   /* trimmed, inner runs of spaces collapsed */
	size_t order;  /* position in the input, so repeated names keep their order */
} header_entry;

static int cmp_header(const void *a, const void *b)
{
	const header_entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Splits "Name: value" into a lowercased name and a canonical value. */
static int parse_header(header_entry *e, const char *line, size_t order)
{
	const char *colon = strchr(line, ':'), *v, *v_end;
	size_t i, name_len;
	char *w;

	if (!colon || colon == line)
		return al_error_set(AL_EINVAL, "sigv4: header \"%s\" is not \"Name: value\"", line);
	name_len = (size_t)(colon - line);
	for (i = 0; i < name_len; i++) {
		if (!is_token_char((unsigned char)line[i]))
			return al_error_set(AL_EINVAL, "sigv4: bad header name in \"%s\"", line);
	}
	if (!is_header_safe(colon + 1))
		return al_error_set(AL_EINVAL, "sigv4: header \"%.*s\" has control characters in its value",
			(int)name_len, line);
	e->name = malloc(name_len + 1);
	e->value = malloc(strlen(colon + 1) + 1);
	e->order = order;
	if (!e->name || !e->value)
		return al_error_set(AL_ENOMEM, "sigv4: out of memory for a header");
	for (i = 0; i < name_len; i++) {
		char c = line[i];
		e->name[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	e->name[name_len] = '\0';
	v = colon + 1;
	v_end = v + strlen(v);
	while (v < v_end && (*v == ' ' || *v == '\t'))
		v++;
	while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
		v_end--;
	for (w = e->value; v < v_end; v++) {
		int blank = (*v == ' ' || *v == '\t');
		if (blank && w > e->value && w[-1] == ' ')
			continue;
		*w++ = blank ? ' ' : *v;
	}
	*w = '\0';
	return 0;
}

int al_sigv4_canonical_headers(char **out, char **signed_headers, const char *host,
	const char *const *headers)
{
	header_entry *entries = NULL;
	size_t n = 0, count = 1, i;
	al_buf canon = AL_BUF_INIT, names = AL_BUF_INIT;
	char *host_line = NULL;
	int rc;

	if (out)
		*out = NULL;
	if (signed_headers)
		*signed_headers = NULL;
	if ((rc = check_field(host, "host")))
		return rc;
	for (i = 0; headers && headers[i]; i++)
		count++;
	entries = calloc(count, sizeof(*entries));
	host_line = malloc(strlen(host) + sizeof("host:"));
	if (!entries || !host_line) {
		rc = al_error_set(AL_ENOMEM, "sigv4: out of memory for headers");
		goto cleanup;
	}
	strcpy(host_line, "host:");
	strcat(host_line, host);
	for (n = 0; n < count; n++) {
		const char *line = n == 0 ? host_line : headers[n - 1];
		if ((rc = parse_header(&entries[n], line, n))) {
			n++;   /* free what parse_header allocated */
			goto cleanup;
		}
		if (n > 0 && strcmp(entries[n].name, "host") == 0) {
			n++;
			rc = al_error_set(AL_EINVAL, "sigv4: pass the host in the request, not as a header");
			goto cleanup;
		}
	}
	qsort(entries, n, sizeof(*entries), cmp_header);
	if ((rc = al_buf_put(&canon, "", 0)) || (rc = al_buf_put(&names, "", 0)))
		goto cleanup;
	for (i = 0; i < n; i++) {
		int same = i > 0 && strcmp(entries[i].name, entries[i - 1].name) == 0;
		if (same) {
			rc = al_buf_put(&canon, ",", 1);
		} else {
			if ((i && ((rc = al_buf_puts(&canon, "\n")) || (rc = al_buf_puts(&names, ";")))) ||
			    (rc = al_buf_puts(&names, entries[i].name)) ||
			    (rc = al_buf_puts(&canon, entries[i].name)))
				goto cleanup;
			rc = al_buf_puts(&canon, ":");
		}
		if (rc || (rc = al_buf_puts(&canon, entries[i].value)))
			goto cleanup;
	}
	if ((rc = al_buf_puts(&canon, "\n")))
		goto cleanup;
	if (out)
		*out = al_buf_detach(&canon, NULL);
	if (signed_headers)
		*signed_headers = al_buf_detach(&names, NULL);
cleanup:
	for (i = 0; i < n; i++) {
		free(entries[i].name);
		free(entries[i].value);
	}
	free(entries);
	free(host_line);
	al_buf_dispose(&canon);
	al_buf_dispose(&names);
	return rc;
}

static int is_payload_hash(const char *s)
{
	size_t i;
	if (strcmp(s, AL_SIGV4_UNSIGNED_PAYLOAD) == 0)
		return 1;
	for (i = 0; s[i]; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	}
	return i == AL_SIGV4_HEX_LEN;
}

int al_sigv4_canonical_request(char **out, char **signed_headers, const al_sigv4_request *req)
{
	char *path = NULL, *query = NULL, *headers = NULL, *names = NULL;
	const char *payload, *m;
	al_buf b = AL_BUF_INIT;
	int rc = 0;

	*out = NULL;
	if (signed_headers)
		*signed_headers = NULL;
	if (!req || !req->method || !*req->method)
		return al_error_set(AL_EINVAL, "sigv4: request without a method");
	for (m = req->method; *m; m++) {
		if (!is_token_char((unsigned char)*m))
			return al_error_set(AL_EINVAL, "sigv4: bad method \"%s\"", req->method);
	}
	if (!req->path || req->path[0] != '/')
		return al_error_set(AL_EINVAL, "sigv4: the path must start with '/'");
	payload = req->payload_sha256_hex ? req->payload_sha256_hex : AL_SIGV4_EMPTY_SHA256;
	if (!is_payload_hash(payload))
		return al_error_set(AL_EINVAL, "sigv4: payload hash \"%s\" is neither 64 lowercase hex "
			"digits nor " AL_SIGV4_UNSIGNED_PAYLOAD, payload);
	if ((rc = al_sigv4_uri_encode(&path, req->path, 1)) ||
	    (rc = al_sigv4_canonical_query(&query, req->query)) ||
	    (rc = al_sigv4_canonical_headers(&headers, &names, req->host, req->headers)))
		goto cleanup;
	if ((rc = al_buf_printf(&b, "%s\n%s\n%s\n%s\n%s\n%s", req->method, path, query, headers, names,
			payload)))
		goto cleanup;
	*out = al_buf_detach(&b, NULL);
	if (signed_headers) {
		*signed_headers = names;
		names = NULL;
	}
cleanup:
	free(path);
	free(query);
	free(headers);
	free(names);
	al_buf_dispose(&b);
	return rc;
}

int al_sigv4_amz_date(char *out, int64_t now)
{
	struct tm tm;
	time_t t = (time_t)now;

	out[0] = '\0';
	/* Four-digit years only: the format has no room for more. */
	if (now < 0 || now > INT64_C(253402300799) || !gmtime_r(&t, &tm))
		return al_error_set(AL_EINVAL, "sigv4: time %lld is out of range", (long long)now);
	if (strftime(out, AL_SIGV4_AMZ_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm) != AL_SIGV4_AMZ_DATE_LEN)
		return al_error_set(AL_EINVAL, "sigv4: cannot format time %lld", (long long)now);
	return 0;
}

static int check_amz_date(const char *amz_date)
{
	size_t i;
	if (!amz_date || strlen(amz_date) != AL_SIGV4_AMZ_DATE_LEN || amz_date[8] != 'T' ||
	    amz_date[15] != 'Z')
		return al_error_set(AL_EINVAL, "sigv4: \"%s\" is not a YYYYMMDDTHHMMSSZ date",
			amz_date ? amz_date : "(null)");
	for (i = 0; i < AL_SIGV4_AMZ_DATE_LEN; i++) {
		if (i != 8 && i != 15 && !(amz_date[i] >= '0' && amz_date[i] <= '9'))
			return al_error_set(AL_EINVAL, "sigv4: \"%s\" is not a YYYYMMDDTHHMMSSZ date",
				amz_date);
	}
	return 0;
}

int al_sigv4_string_to_sign(char **out, const char *amz_date, const char *region,
	const char *service, const char *canonical_request)
{
	char hash[AL_SIGV4_HEX_LEN + 1];
	al_buf b = AL_BUF_INIT;
	int rc;

	*out = NULL;
	if ((rc = check_amz_date(amz_date)) || (rc = check_field(region, "region")) ||
	    (rc = check_field(service, "service")))
		return rc;
	if (!canonical_request)
		return al_error_set(AL_EINVAL, "sigv4: no canonical request");
	if ((rc = al_sigv4_sha256_hex(hash, canonical_request, strlen(canonical_request))) ||
	    (rc = al_buf_printf(&b, ALGORITHM "\n%s\n%.8s/%s/%s/aws4_request\n%s", amz_date, amz_date,
			region, service, hash)))
		goto cleanup;
	*out = al_buf_detach(&b, NULL);
cleanup:
	al_buf_dispose(&b);
	return rc;
}

int al_sigv4_signing_key(unsigned char key[32], const char *secret_key, const char *date8,
	const char *region, const char *service)
{
	char *secret = NULL;
	unsigned char k[32];
	size_t len;
	int rc;

	if ((rc = check_field(secret_key, "secret key")) || (rc = check_field(region, "region")) ||
	    (rc = check_field(service, "service")))
		return rc;
	if (!date8 || strlen(date8) != 8 || strspn(date8, "0123456789") != 8)
		return al_error_set(AL_EINVAL, "sigv4: \"%s\" is not a YYYYMMDD date",
			date8 ? date8 : "(null)");
	len = strlen(secret_key) + 4;
	secret = malloc(len + 1);
	if (!secret)
		return al_error_set(AL_ENOMEM, "sigv4: out of memory for the signing key");
	strcpy(secret, "AWS4");
	strcat(secret, secret_key);
	if ((rc = hmac_sha256(k, secret, len, date8)) || (rc = hmac_sha256(k, k, 32, region)) ||
	    (rc = hmac_sha256(k, k, 32, service)) || (rc = hmac_sha256(k, k, 32, "aws4_request")))
		goto cleanup;
	memcpy(key, k, 32);
cleanup:
	/* The derived keys are as good as the secret for a day; do not leave them around. */
	OPENSSL_cleanse(secret, len);
	OPENSSL_cleanse(k, sizeof(k));
	free(secret);
	return rc;
}

/* The signing key is one per day, region and service: each thread keeps its last one, so a
 * request costs one HMAC instead of five (every prefetched blob is a signed GET). It is as good
 * as the secret for that day, and the process holds the secret itself anyway. */
static _Thread_local struct {
	int valid;
	unsigned char key[32];
	unsigned char secret_sha[32];   /* which secret, without keeping a second copy of it */
	char date8[9], region[64], service[32];
} key_memo;

static int signing_key_cached(unsigned char key[32], const al_sigv4_credentials *cred,
	const char *date8)
{
	unsigned char secret_sha[32];
	int rc;
	if (!EVP_Digest(cred->secret_key, strlen(cred->secret_key), secret_sha, NULL, sha256_md(), NULL))
		return al_error_set(AL_ERROR, "sigv4: SHA-256 failed in libcrypto");
	if (key_memo.valid && memcmp(key_memo.secret_sha, secret_sha, 32) == 0 &&
	    strcmp(key_memo.date8, date8) == 0 && strcmp(key_memo.region, cred->region) == 0 &&
	    strcmp(key_memo.service, cred->service) == 0) {
		memcpy(key, key_memo.key, 32);
		return 0;
	}
	if ((rc = al_sigv4_signing_key(key, cred->secret_key, date8, cred->region, cred->service)))
		return rc;
	key_memo.valid = strlen(cred->region) < sizeof(key_memo.region) &&
		strlen(cred->service) < sizeof(key_memo.service);
	if (key_memo.valid) {
		memcpy(key_memo.key, key, 32);
		memcpy(key_memo.secret_sha, secret_sha, 32);
		strcpy(key_memo.date8, date8);
		strcpy(key_memo.region, cred->region);
		strcpy(key_memo.service, cred->service);
	}
	return 0;
}

int al_sigv4_authorization(char **out, const char *canonical_request, const char *signed_headers,
	const al_sigv4_credentials *cred, const char *amz_date)
{
	char *sts = NULL, date8[9], sig_hex[AL_SIGV4_HEX_LEN + 1];
	unsigned char key[32], sig[32];
	al_buf b = AL_BUF_INIT;
	int rc;

	*out = NULL;
	if ((rc = check_credentials(cred)) || (rc = check_amz_date(amz_date)))
		return rc;
	if (!signed_headers || !*signed_headers)
		return al_error_set(AL_EINVAL, "sigv4: no signed headers");
	memcpy(date8, amz_date, 8);
	date8[8] = '\0';
	if ((rc = al_sigv4_string_to_sign(&sts, amz_date, cred->region, cred->service,
			canonical_request)) ||
	    (rc = signing_key_cached(key, cred, date8)) ||
	    (rc = hmac_sha256(sig, key, sizeof(key), sts)))
		goto cleanup;
	al_sigv4_hex(sig_hex, sig, sizeof(sig));
	if ((rc = al_buf_printf(&b, ALGORITHM " Credential=%s/%s/%s/%s/aws4_request, "
			"SignedHeaders=%s, Signature=%s", cred->access_key, date8, cred->region,
			cred->service, signed_headers, sig_hex)))
		goto cleanup;
	*out = al_buf_detach(&b, NULL);
cleanup:
	OPENSSL_cleanse(key, sizeof(key));
	free(sts);
	al_buf_dispose(&b);
	return rc;
}

void al_sigv4_headers_free(char **headers)
{
	size_t i;
	if (!headers)
		return;
	for (i = 0; headers[i]; i++)
		free(headers[i]);
	free(headers);
}

/* The headers al_sigv4_sign generates; the caller's own copies would be signed twice. */
static int is_generated_header(const char *line)
{
	static const char *const names[] = {
		"authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token",
	};
	const char *colon = strchr(line, ':');
	size_t len = colon ? (size_t)(colon - line) : strlen(line), i;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strlen(names[i]) == len && strncasecmp(line, names[i], len) == 0)
			return 1;
	}
	return 0;
}

static char *format_header(const char *name, const char *value)
{
	char *s = malloc(strlen(name) + strlen(value) + 3);
	if (!s) {
		al_error_set(AL_ENOMEM, "sigv4: out of memory for a header");
		return NULL;
	}
	strcpy(s, name);
	strcat(s, ": ");
	strcat(s, value);
	return s;
}

int al_sigv4_sign(char ***out, const al_sigv4_request *req, const al_sigv4_credentials *cred,
	int64_t now)
{
	enum { MAX_ADDED = 4 };
	char amz_date[AL_SIGV4_AMZ_DATE_LEN + 1], *creq = NULL, *names = NULL, *auth = NULL;
	char **added = NULL;
	const char **all = NULL;
	al_sigv4_request signed_req;
	size_t n_req = 0, n_added = 0, i;
	int rc;

	*out = NULL;
	if (!req)
		return al_error_set(AL_EINVAL, "sigv4: no request");
	if ((rc = check_credentials(cred)) || (rc = al_sigv4_amz_date(amz_date, now)))
		return rc;
	for (n_req = 0; req->headers && req->headers[n_req]; n_req++) {
		if (is_generated_header(req->headers[n_req]))
			return al_error_set(AL_EINVAL, "sigv4: header \"%.40s\" is generated by the "
				"signer; leave it out", req->headers[n_req]);
	}
	added = calloc(MAX_ADDED + 1, sizeof(*added));
	all = calloc(n_req + MAX_ADDED + 1, sizeof(*all));
	if (!added || !all) {
		rc = al_error_set(AL_ENOMEM, "sigv4: out of memory for headers");
		goto cleanup;
	}
	signed_req = *req;
	if (!signed_req.payload_sha256_hex)
		signed_req.payload_sha256_hex = AL_SIGV4_EMPTY_SHA256;
	if (!(added[n_added++] = format_header("X-Amz-Date", amz_date)) ||
	    !(added[n_added++] = format_header("X-Amz-Content-Sha256", signed_req.payload_sha256_hex)) ||
	    (cred->session_token && *cred->session_token &&
	     !(added[n_added++] = format_header("X-Amz-Security-Token", cred->session_token)))) {
		rc = AL_ENOMEM;
		goto cleanup;
	}
	for (i = 0; i < n_req; i++)
		all[i] = req->headers[i];
	for (i = 0; i < n_added; i++)
		all[n_req + i] = added[i];
	signed_req.headers = all;
	if ((rc = al_sigv4_canonical_request(&creq, &names, &signed_req)) ||
	    (rc = al_sigv4_authorization(&auth, creq, names, cred, amz_date)))
		goto cleanup;
	if (!(added[n_added++] = format_header("Authorization", auth))) {
		rc = AL_ENOMEM;
		goto cleanup;
	}
	*out = added;
	added = NULL;
cleanup:
	al_sigv4_headers_free(added);
	free(all);
	free(creq);
	free(names);
	free(auth);
	return rc;
}
