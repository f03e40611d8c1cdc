/* aletheia: the S3 blob store (s3://BUCKET[/PREFIX]): SigV4-signed requests through the pooled
 * HTTP client; create-only PUT (multipart above 64 MiB), ranged GET, HEAD. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "core/blobs/blobs.h"
#include "core/buf.h"
#include "aletheia/hash.h"
#include "core/net/http.h"
#include "core/net/sigv4.h"
#include "core/blobs/blobs_internal.h"

#define SINGLE_PUT_MAX ((uint64_t)64 << 20)  /* larger files go multipart */
#define PART_SIZE ((uint64_t)16 << 20)
#define MAX_PARTS 10000
#define HASH_BLOCK (1u << 20)
#define MAX_UPLOADS 3   /* uploads of one put that leave another object before EIO */

typedef struct {
	al_blobs_backend base;
	al_http *http;
	char *bucket;
	char *prefix;     /* no leading or trailing '/', may be "" */
	char *origin;     /* "http://127.0.0.1:9000" or "https://b.s3.us-east-1.amazonaws.com" */
	char *host;       /* the Host header curl sends: origin's authority */
	char *path_base;  /* "/BUCKET" for path-style URLs, "" for virtual-hosted ones */
	char *access_key, *secret_key, *session_token, *region;
} s3_blobs;

/* One request's parts, so helpers take one argument instead of a dozen. */
typedef struct {
	const char *method;
	const char *key;           /* object key, unencoded */
	const char *query;         /* raw, or NULL */
	const char *extra[3];      /* signed "Name: value" headers, NULL-terminated */
	const char *payload_hex;   /* NULL: empty body */
	const char *body;          /* in-memory body, or NULL */
	size_t body_len;
	unsigned flags;
} s3_req;

static char *object_key(const s3_blobs *s, const char *hash)
{
	return al__blobs_object_key(s->prefix, hash);
}

/* The raw query with each value percent-encoded (names here never need it). */
static int encode_query(char **out, const char *query)
{
	al_buf b = AL_BUF_INIT;
	char *copy = NULL, *part, *save = NULL, *enc = NULL;
	int rc = 0;

	*out = NULL;
	if (!(copy = strdup(query)))
		goto nomem;
	for (part = strtok_r(copy, "&", &save); part; part = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(part, '=');
		if (eq)
			*eq = '\0';
		if ((rc = al_buf_printf(&b, "%s%s%s", b.len ? "&" : "", part, eq ? "=" : "")) != 0)
			goto cleanup;
		if (eq) {
			if ((rc = al_sigv4_uri_encode(&enc, eq + 1, 0)) != 0 ||
				(rc = al_buf_puts(&b, enc)) != 0)
				goto cleanup;
			free(enc);
			enc = NULL;
		}
	}
	if ((rc = al_buf_puts(&b, "")) != 0)
		goto cleanup;
	*out = al_buf_detach(&b, NULL);
	goto cleanup;
nomem:
	rc = al_error_set(AL_ENOMEM, "out of memory building an S3 query");
cleanup:
	free(enc);
	free(copy);
	al_buf_dispose(&b);
	return rc;
}

/* Signs and sends r; io (may be NULL) streams the bodies. 0 once S3 answered, any status. */
static int s3_send(al_http_response *resp, s3_blobs *s, const s3_req *r, al_http_stream *io)
{
	al_sigv4_credentials cred = {s->access_key, s->secret_key, s->session_token, s->region, "s3"};
	al_sigv4_request sr = {r->method, s->host, NULL, r->query, r->extra, r->payload_hex};
	char *path = NULL, *epath = NULL, *equery = NULL, *url = NULL, **signed_hdrs = NULL;
	const char *all[16];
	size_t n = 0;
	int rc;

	if (asprintf(&path, "%s/%s", s->path_base, r->key) < 0) {
		path = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory building an S3 request");
		goto cleanup;
	}
	sr.path = path;
	if ((rc = al_sigv4_uri_encode(&epath, path, 1)) != 0)
		goto cleanup;
	if (r->query && (rc = encode_query(&equery, r->query)) != 0)
		goto cleanup;
	if (asprintf(&url, "%s%s%s%s", s->origin, epath, equery ? "?" : "", equery ? equery : "") < 0) {
		url = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory building an S3 request");
		goto cleanup;
	}
	if ((rc = al_sigv4_sign(&signed_hdrs, &sr, &cred, (int64_t)time(NULL))) != 0)
		goto cleanup;
	for (size_t i = 0; r->extra[i] && n < 15; i++)
		all[n++] = r->extra[i];
	for (size_t i = 0; signed_hdrs[i] && n < 15; i++)
		all[n++] = signed_hdrs[i];
	all[n] = NULL;
	rc = io ? al_http_request_stream(resp, s->http, r->method, url, all, io, r->flags) :
		al_http_request(resp, s->http, r->method, url, all, r->body, r->body_len, r->flags);
cleanup:
	al_sigv4_headers_free(signed_hdrs);
	free(url);
	free(equery);
	free(epath);
	free(path);
	return rc;
}

/* The text of <tag>…</tag> in an XML body, malloc'd, or NULL. */
static char *xml_text(const al_buf *body, const char *tag)
{
	char open_tag[64], close_tag[64];
	const char *a, *b;

	if (!body->ptr)
		return NULL;
	snprintf(open_tag, sizeof(open_tag), "<%s>", tag);
	snprintf(close_tag, sizeof(close_tag), "</%s>", tag);
	if (!(a = strstr(body->ptr, open_tag)))
		return NULL;
	a += strlen(open_tag);
	if (!(b = strstr(a, close_tag)))
		return NULL;
	return strndup(a, (size_t)(b - a));
}

/* One line for an unexpected answer: AL_EACCES for 403, AL_ENOTFOUND for 404, AL_EIO else. */
static int status_error(const s3_blobs *s, const char *what, const char *key,
	const al_http_response *resp)
{
	char *code = xml_text(&resp->body, "Code");
	int rc = resp->status == 403 ? AL_EACCES : resp->status == 404 ? AL_ENOTFOUND : AL_EIO;
	al_error_set(rc, "S3 %s s3://%s/%s: HTTP %ld%s%s", what, s->bucket, key, resp->status,
		code ? " " : "", code ? code : "");
	free(code);
	return rc;
}

/* SHA-256 (hex) of len bytes of fd from off. */
static int sha256_fd(char *hex, int fd, uint64_t off, uint64_t len, const char *path)
{
	unsigned char md[32];
	unsigned int md_len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char *buf = malloc(HASH_BLOCK);
	int rc = 0;

	if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = al_error_set(AL_ENOMEM, "cannot start a SHA-256 of %s", path);
		goto cleanup;
	}
	while (len) {
		ssize_t n = pread(fd, buf, len < HASH_BLOCK ? (size_t)len : HASH_BLOCK, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? al_error_set_errno(AL_EIO, errno, "cannot read %s", path) :
				al_error_set(AL_EIO, "%s is shorter than expected", path);
			goto cleanup;
		}
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	EVP_DigestFinal_ex(ctx, md, &md_len);
	al_sigv4_hex(hex, md, 32);
cleanup:
	free(buf);
	EVP_MD_CTX_free(ctx);
	return rc;
}


/* What S3 says of an object (HEAD). */
typedef struct {
	int found;
	uint64_t size;
	char etag[80];      /* quotes dropped; "" when none */
	int etag_is_sum;    /* the ETag is a checksum of the bytes: not for SSE-KMS or SSE-C objects */
} s3_object;

/* An ETag as S3 compares them: without quotes (or a weak prefix), lower case. */
static void etag_norm(char *out, size_t size, const char *v)
{
	size_t n = 0;
	if (v && strncmp(v, "W/", 2) == 0)
		v += 2;
	for (; v && *v && n + 1 < size; v++)
		if (*v != '"')
			out[n++] = (char)(*v >= 'A' && *v <= 'Z' ? *v - 'A' + 'a' : *v);
	out[n] = '\0';
}

/* HEAD of key into *o (o->found 0 when there is none). */
static int object_head(s3_object *o, s3_blobs *s, const char *key)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	s3_req r = {"HEAD", key, NULL, {NULL}, NULL, NULL, 0, AL_HTTP_IDEMPOTENT};
	char *end = NULL;
	int rc;

	memset(o, 0, sizeof(*o));
	io.header = "Content-Length";
	io.capture[0] = "ETag";
	io.capture[1] = "x-amz-server-side-encryption";
	io.capture[2] = "x-amz-server-side-encryption-customer-algorithm";
	if ((rc = s3_send(&resp, s, &r, &io)) != 0)
		goto cleanup;
	if (resp.status == 404)
		goto cleanup;
	if (resp.status != 200) {
		rc = status_error(s, "HEAD", key, &resp);
		goto cleanup;
	}
	errno = 0;
	o->size = io.header_value ? strtoull(io.header_value, &end, 10) : 0;
	if (!io.header_value || errno || !end || *end) {
		rc = al_error_set(AL_EIO, "S3 HEAD s3://%s/%s: no Content-Length", s->bucket, key);
		goto cleanup;
	}
	o->found = 1;
	etag_norm(o->etag, sizeof(o->etag), io.captured[0]);
	o->etag_is_sum = al__s3_etag_is_checksum(io.captured[1], io.captured[2]);
cleanup:
	al_http_stream_dispose(&io);
	al_http_response_dispose(&resp);
	return rc;
}

/* The object's size from a HEAD (for fsck); AL_ENOTFOUND when absent. */
static int s3_stat(uint64_t *size_out, al_blobs_backend *b, const char *hash)
{
	s3_blobs *s = (s3_blobs *)b;
	s3_object o;
	char *key = NULL;
	int rc;

	*size_out = 0;
	if ((rc = al__blobs_check_hash(hash)) != 0)
		return rc;
	if (!(key = object_key(s, hash)))
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((rc = object_head(&o, s, key)) == 0 && !o.found)
		rc = al_error_set(AL_ENOTFOUND, "no object s3://%s/%s", s->bucket, key);
	if (rc == 0)
		*size_out = o.size;
	free(key);
	return rc;
}

/* A multipart upload's layout: at most MAX_PARTS parts, each a whole number of MiB. */
static void part_layout(uint64_t *part, int *parts, uint64_t size)
{
	*part = PART_SIZE;
	if (size / *part >= MAX_PARTS)
		*part = ((size / MAX_PARTS) | (((uint64_t)1 << 20) - 1)) + 1;
	*parts = (int)((size + *part - 1) / *part);
}

/* What names the content in S3's answers, from one read of the upload's source: the MD5 that a
 * single-part object's ETag is, the ETag this upload's multipart layout gives, and for a single
 * PUT the SHA-256 its payload is signed over. */
typedef struct {
	char md5[33];                       /* hex */
	char mp_etag[48];                   /* hex MD5 of the parts' MD5s, "-N"; "" single PUT */
	char sha256[AL_SIGV4_HEX_LEN + 1];  /* "" for a multipart upload */
	uint64_t part;                      /* multipart: the part size */
	int parts;                          /* multipart: how many; 0 for a single PUT */
} s3_sums;

static void hex_of(char *out, const unsigned char *md, unsigned len)
{
	static const char digits[] = "0123456789abcdef";
	for (unsigned i = 0; i < len; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[2 * len] = '\0';
}

/* The sums of fd's size bytes, whose xxh3-128 must still be the blob's name (a source changed
 * since it was hashed must not be stored under that name). */
static int content_sums(s3_sums *out, int fd, uint64_t size, const char *hash, const char *path)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	char got[AL_HASH_HEX_LEN + 1];
	EVP_MD_CTX *whole = EVP_MD_CTX_new(), *part = EVP_MD_CTX_new(), *of_parts = EVP_MD_CTX_new();
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	char *buf = malloc(HASH_BLOCK);
	al_hasher *h = NULL;
	uint64_t off = 0, part_end;
	int rc = 0, multi = size > SINGLE_PUT_MAX;

	memset(out, 0, sizeof(*out));
	if (multi)
		part_layout(&out->part, &out->parts, size);
	part_end = multi ? out->part : size;
	if (!whole || !part || !of_parts || !sha || !buf ||
		!EVP_DigestInit_ex(whole, EVP_md5(), NULL) || !EVP_DigestInit_ex(part, EVP_md5(), NULL) ||
		!EVP_DigestInit_ex(of_parts, EVP_md5(), NULL) ||
		!EVP_DigestInit_ex(sha, EVP_sha256(), NULL)) {
		rc = al_error_set(AL_ENOMEM, "cannot start the checksums of %s", path);
		goto cleanup;
	}
	if ((rc = al_hasher_new(&h)) != 0)
		goto cleanup;
	while (off < size) {
		uint64_t left = part_end - off;
		ssize_t n = pread(fd, buf, left < HASH_BLOCK ? (size_t)left : HASH_BLOCK, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? al_error_set_errno(AL_EIO, errno, "cannot read %s", path) :
				al_error_set(AL_EIO, "%s is shorter than expected", path);
			goto cleanup;
		}
		EVP_DigestUpdate(whole, buf, (size_t)n);
		al_hasher_update(h, buf, (size_t)n);
		if (multi)
			EVP_DigestUpdate(part, buf, (size_t)n);
		else
			EVP_DigestUpdate(sha, buf, (size_t)n);
		off += (uint64_t)n;
		if (multi && off == part_end) {
			EVP_DigestFinal_ex(part, md, &md_len);
			EVP_DigestUpdate(of_parts, md, md_len);
			EVP_DigestInit_ex(part, EVP_md5(), NULL);
			part_end = size - off < out->part ? size : off + out->part;
		}
	}
	al_hasher_final(got, h);
	if (strcmp(got, hash) != 0) {
		rc = al_error_set(AL_EIO, "%s changed since it was hashed (xxh3-128 %s, not %s)", path,
			got, hash);
		goto cleanup;
	}
	EVP_DigestFinal_ex(whole, md, &md_len);
	hex_of(out->md5, md, md_len);
	if (multi) {
		EVP_DigestFinal_ex(of_parts, md, &md_len);
		hex_of(out->mp_etag, md, md_len);
		snprintf(out->mp_etag + 2 * md_len, sizeof(out->mp_etag) - 2 * md_len, "-%d", out->parts);
	} else {
		EVP_DigestFinal_ex(sha, md, &md_len);
		al_sigv4_hex(out->sha256, md, md_len);
	}
cleanup:
	al_hasher_free(h);
	EVP_MD_CTX_free(whole);
	EVP_MD_CTX_free(part);
	EVP_MD_CTX_free(of_parts);
	EVP_MD_CTX_free(sha);
	free(buf);
	return rc;
}

/* Whether an object's ETag says it holds other bytes than the content: a single-part ETag (32 hex
 * digits) that is not the content's MD5, or a multipart ETag of this upload's layout (as many
 * parts) that is not this layout's. Other ETags (SSE-KMS, SSE-C, another tool's part size) are
 * no checksum of ours: the size alone counts. */
static int etag_differs(const s3_object *o, const s3_sums *sums)
{
	const char *dash = strchr(o->etag, '-');
	if (!o->etag_is_sum || !o->etag[0])
		return 0;
	if (!dash)
		return strlen(o->etag) == 32 && strspn(o->etag, "0123456789abcdef") == 32 &&
			strcmp(o->etag, sums->md5) != 0;
	return sums->parts && atoi(dash + 1) == sums->parts && strcmp(o->etag, sums->mp_etag) != 0;
}

/* What is under the blob's name. */
enum { OBJ_ABSENT, OBJ_SAME, OBJ_OTHER };

/* *state: OBJ_SAME when the object's size, and its ETag where that is a checksum, are the
 * content's; OBJ_OTHER (damaged, or another object: the message says what differs). */
static int object_check(int *state, s3_blobs *s, const char *key, const s3_sums *sums,
	uint64_t size)
{
	s3_object o;
	int rc = object_head(&o, s, key);

	*state = OBJ_ABSENT;
	if (rc || !o.found)
		return rc;
	*state = OBJ_SAME;
	if (o.size != size) {
		*state = OBJ_OTHER;
		al_error_set(AL_EIO, "S3 s3://%s/%s holds %llu bytes, not the blob's %llu", s->bucket,
			key, (unsigned long long)o.size, (unsigned long long)size);
	} else if (etag_differs(&o, sums)) {
		*state = OBJ_OTHER;
		al_error_set(AL_EIO, "S3 s3://%s/%s has ETag \"%s\", not the content's \"%s\"", s->bucket,
			key, o.etag, sums->parts && strchr(o.etag, '-') ? sums->mp_etag : sums->md5);
	}
	return 0;
}

/* Best effort: drops an unfinished multipart upload's parts (the first failure's message stays). */
static void abort_upload(s3_blobs *s, const char *key, const char *upload_id)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	s3_req r = {"DELETE", key, NULL, {NULL}, NULL, NULL, 0, AL_HTTP_IDEMPOTENT};
	char *saved = strdup(al_error_last()), *q = NULL;
	if (asprintf(&q, "uploadId=%s", upload_id) >= 0) {
		r.query = q;
		s3_send(&resp, s, &r, NULL);
		free(q);
	}
	al_http_response_dispose(&resp);
	if (saved)
		al_error_set(AL_EIO, "%s", saved);
	free(saved);
}

/* Multipart upload of fd (size bytes) to key; create_only: only where there is no object yet.
 * *done = 1 when S3 assembled it. Both POSTs are repeated after a fault: a second
 * CreateMultipartUpload only starts another upload (one whose answer was lost stays empty: a
 * lifecycle rule removes it), and a Complete that fails after it may have been processed ends
 * with *done = 0 and rc 0, leaving the caller to look at the object (HEAD). Other failures abort
 * the upload. */
static int put_multipart(int *done, s3_blobs *s, const char *key, int fd, uint64_t size,
	const s3_sums *sums, int create_only, const char *src)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	al_buf xml = AL_BUF_INIT;
	char *upload_id = NULL, *query = NULL, hex[AL_SIGV4_HEX_LEN + 1];
	int rc;

	*done = 0;
	{
		s3_req r = {"POST", key, "uploads", {NULL}, NULL, "", 0, AL_HTTP_IDEMPOTENT};
		if ((rc = s3_send(&resp, s, &r, NULL)) != 0)
			goto cleanup;
		if (resp.status != 200) {
			rc = status_error(s, "CreateMultipartUpload", key, &resp);
			goto cleanup;
		}
		if (!(upload_id = xml_text(&resp.body, "UploadId")) || !*upload_id) {
			free(upload_id);
			upload_id = NULL;
			rc = al_error_set(AL_EIO, "S3 CreateMultipartUpload s3://%s/%s: no UploadId in "
				"the answer", s->bucket, key);
			goto cleanup;
		}
	}
	if ((rc = al_buf_puts(&xml, "<CompleteMultipartUpload>")) != 0)
		goto abort;
	io.header = "ETag";
	for (int i = 1; i <= sums->parts; i++) {
		uint64_t off = (uint64_t)(i - 1) * sums->part;
		uint64_t len = size - off < sums->part ? size - off : sums->part;
		s3_req r = {"PUT", key, NULL, {NULL}, hex, NULL, 0, AL_HTTP_IDEMPOTENT};

		if ((rc = sha256_fd(hex, fd, off, len, src)) != 0)
			goto abort;
		free(query);
		if (asprintf(&query, "partNumber=%d&uploadId=%s", i, upload_id) < 0) {
			query = NULL;
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto abort;
		}
		r.query = query;
		io.src_fd = fd;
		io.src_off = off;
		io.src_len = len;
		if ((rc = s3_send(&resp, s, &r, &io)) != 0)
			goto abort;
		if (resp.status != 200) {
			rc = status_error(s, "UploadPart", key, &resp);
			goto abort;
		}
		if (!io.header_value) {
			rc = al_error_set(AL_EIO, "S3 UploadPart %d s3://%s/%s: no ETag in the answer", i,
				s->bucket, key);
			goto abort;
		}
		if ((rc = al_buf_printf(&xml, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
			i, io.header_value)) != 0)
			goto abort;
	}
	if ((rc = al_buf_puts(&xml, "</CompleteMultipartUpload>")) != 0 ||
		(rc = al_sigv4_sha256_hex(hex, xml.ptr, xml.len)) != 0)
		goto abort;
	free(query);
	if (asprintf(&query, "uploadId=%s", upload_id) < 0) {
		query = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto abort;
	}
	{
		s3_req r = {"POST", key, query, {create_only ? "If-None-Match: *" : NULL, NULL}, hex,
			xml.ptr, xml.len, AL_HTTP_IDEMPOTENT};
		char *err = NULL;
		rc = s3_send(&resp, s, &r, NULL);
		if (rc == 0 && resp.status == 200 && !(resp.body.ptr && strstr(resp.body.ptr, "<Error>"))) {
			*done = 1;
			goto cleanup;
		}
		if (rc == 0 && resp.status != 200 && resp.status != 404 && resp.status != 409 &&
			resp.status != 412 && resp.status < 500) {
			rc = status_error(s, "CompleteMultipartUpload", key, &resp);
			goto abort;
		}
		if (rc == AL_ENOMEM)
			goto abort;
		/* A 200 can carry an <Error>; a 412 is an object there now (another writer's, or ours
		 * when an earlier try was processed, as a 404 NoSuchUpload may be, or a failure after
		 * the retries): the object tells. */
		if (rc == 0 && resp.status == 200)
			err = xml_text(&resp.body, "Code");
		if (rc == 0)
			rc = status_error(s, "CompleteMultipartUpload", key, &resp);
		fprintf(stderr, "aletheia: %s%s%s; checking the object\n", al_error_last(),
			err ? ": " : "", err ? err : "");
		free(err);
		rc = 0;
	}
abort:
	abort_upload(s, key, upload_id);
cleanup:
	al_http_stream_dispose(&io);
	free(query);
	free(upload_id);
	al_buf_dispose(&xml);
	al_http_response_dispose(&resp);
	return rc;
}

/* One single-request upload of fd; create_only: only where there is no object yet (else over the
 * damaged object found: any copy of the content is the same bytes, so no condition is needed).
 * *done = 1 when S3 stored it, its answer's ETag (where a checksum) the content's MD5. */
static int put_single(int *done, s3_blobs *s, const char *key, int fd, uint64_t size,
	const s3_sums *sums, int create_only)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	/* Create-only, so a retry after an unseen success is harmless; a replacement is too. */
	s3_req r = {"PUT", key, NULL, {create_only ? "If-None-Match: *" : NULL, NULL}, sums->sha256,
		NULL, 0, AL_HTTP_IDEMPOTENT};
	s3_object o = {1, size, "", 0};
	int rc;

	*done = 0;
	io.src_fd = fd;
	io.src_len = size;
	io.capture[0] = "ETag";
	io.capture[1] = "x-amz-server-side-encryption";
	io.capture[2] = "x-amz-server-side-encryption-customer-algorithm";
	if ((rc = s3_send(&resp, s, &r, &io)) != 0)
		goto cleanup;
	if (resp.status == 412 || resp.status == 409)
		goto cleanup;   /* an object appeared meanwhile: the caller looks at it */
	if (resp.status != 200) {
		rc = status_error(s, "PUT", key, &resp);
		goto cleanup;
	}
	etag_norm(o.etag, sizeof(o.etag), io.captured[0]);
	o.etag_is_sum = al__s3_etag_is_checksum(io.captured[1], io.captured[2]);
	if (etag_differs(&o, sums))
		fprintf(stderr, "aletheia: S3 PUT s3://%s/%s: stored with ETag \"%s\", not the content's "
			"MD5 \"%s\"; checking the object\n", s->bucket, key, o.etag, sums->md5);
	else
		*done = 1;
cleanup:
	al_http_stream_dispose(&io);
	al_http_response_dispose(&resp);
	return rc;
}

/* Uploads until the bucket holds the content under the blob's name. An object already there
 * counts only when its size, and its ETag where that is a checksum, are the content's; another
 * one (damaged in the bucket, cut short) is replaced. A put never ends on an object that is not
 * the content as far as S3's answers tell (README "Object storage"). */
static int s3_put(al_blobs_backend *b, const char *hash, const char *src_path, uint64_t size,
	unsigned flags)
{
	s3_blobs *s = (s3_blobs *)b;
	s3_sums sums;
	char *key = NULL;
	struct stat st;
	int rc, fd = -1, state, done = 0;

	(void)flags; /* nothing to move: the source is always copied up */
	if ((rc = al__blobs_check_hash(hash)) != 0)
		return rc;
	if (!(key = object_key(s, hash))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	if ((fd = open(src_path, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = al_error_set_errno(AL_EIO, errno, "cannot open %s to upload it", src_path);
		goto cleanup;
	}
	if (fstat(fd, &st) != 0) {
		rc = al_error_set_errno(AL_EIO, errno, "cannot stat %s", src_path);
		goto cleanup;
	}
	if ((uint64_t)st.st_size != size) {
		rc = al_error_set(AL_EINVAL, "%s holds %lld bytes, not the %llu announced", src_path,
			(long long)st.st_size, (unsigned long long)size);
		goto cleanup;
	}
	if ((rc = content_sums(&sums, fd, size, hash, src_path)) != 0)
		goto cleanup;
	for (int tries = 0;; tries++) {
		/* Content-addressed: a blob already there needs no upload (a cheap HEAD first). */
		if ((rc = object_check(&state, s, key, &sums, size)) != 0 || state == OBJ_SAME)
			goto cleanup;
		if (tries == MAX_UPLOADS) {
			rc = al_error_set(AL_EIO, "S3 upload s3://%s/%s: not stored after %d uploads%s%s",
				s->bucket, key, MAX_UPLOADS, state == OBJ_OTHER ? ": " : "",
				state == OBJ_OTHER ? al_error_last() : "");
			goto cleanup;
		}
		if (state == OBJ_OTHER)
			fprintf(stderr, "aletheia: %s; uploading the blob over it\n", al_error_last());
		rc = size > SINGLE_PUT_MAX ?
			put_multipart(&done, s, key, fd, size, &sums, state == OBJ_ABSENT, src_path) :
			put_single(&done, s, key, fd, size, &sums, state == OBJ_ABSENT);
		if (rc || done)
			goto cleanup;
	}
cleanup:
	if (fd >= 0)
		close(fd);
	free(key);
	return rc;
}

static int s3_fetch(al_blobs_backend *b, const char *hash, uint64_t offset, uint64_t len,
	int dst_fd, uint64_t dst_offset)
{
	s3_blobs *s = (s3_blobs *)b;
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	char *key = NULL, range[64];
	int rc;

	if ((rc = al__blobs_check_hash(hash)) != 0)
		return rc;
	if (len == 0)
		return 0;
	if (offset + len < offset)
		return al_error_set(AL_EINVAL, "blob range overflows");
	if (!(key = object_key(s, hash))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	snprintf(range, sizeof(range), "Range: bytes=%llu-%llu", (unsigned long long)offset,
		(unsigned long long)(offset + len - 1));
	{
		/* nobody needs the range once the daemon stops (a reader gone with the mount) */
		s3_req r = {"GET", key, NULL, {range, NULL}, NULL, NULL, 0,
			AL_HTTP_IDEMPOTENT | AL_HTTP_ABANDON};
		io.dst_fd = dst_fd;
		io.dst_off = dst_offset;
		io.dst_max = len;
		io.dst_expect = len;   /* a body cut short is retried by the HTTP client */
		if ((rc = s3_send(&resp, s, &r, &io)) != 0)
			goto cleanup;
	}
	if (resp.status == 416) {
		rc = al_error_set(AL_EINVAL, "S3 GET s3://%s/%s: bytes %llu-%llu are past the end",
			s->bucket, key, (unsigned long long)offset, (unsigned long long)(offset + len - 1));
		goto cleanup;
	}
	if (resp.status != 206 && resp.status != 200) {
		rc = status_error(s, "GET", key, &resp);
		goto cleanup;
	}
	if (io.dst_written != len)
		rc = al_error_set(AL_EIO, "S3 GET s3://%s/%s: %llu bytes received for a %llu-byte range",
			s->bucket, key, (unsigned long long)io.dst_written, (unsigned long long)len);
cleanup:
	al_http_response_dispose(&resp);
	free(key);
	return rc;
}

static char *s3_uri(al_blobs_backend *b, const char *hash)
{
	s3_blobs *s = (s3_blobs *)b;
	char *key = object_key(s, hash), *u = NULL;
	if (key && asprintf(&u, "s3://%s/%s", s->bucket, key) < 0)
		u = NULL;
	free(key);
	return u;
}

static void s3_free(al_blobs_backend *b)
{
	s3_blobs *s = (s3_blobs *)b;
	if (!s)
		return;
	al_http_free(s->http);
	free(s->bucket);
	free(s->prefix);
	free(s->origin);
	free(s->host);
	free(s->path_base);
	free(s->access_key);
	free(s->secret_key);
	free(s->session_token);
	free(s->region);
	free(s);
}

/* origin and host from an endpoint URL "http[s]://host[:port][/]". */
static int parse_endpoint(s3_blobs *s, const char *url)
{
	const char *auth, *end;
	int https;
	size_t n;

	if (strncmp(url, "http://", 7) == 0)
		auth = url + 7, https = 0;
	else if (strncmp(url, "https://", 8) == 0)
		auth = url + 8, https = 1;
	else
		return al_error_set(AL_EINVAL, "S3 endpoint \"%s\" is not an http:// or https:// URL", url);
	end = auth + strcspn(auth, "/?#");
	if (end == auth || (*end && strcmp(end, "/") != 0))
		return al_error_set(AL_EINVAL, "S3 endpoint \"%s\": expected http[s]://HOST[:PORT]", url);
	n = (size_t)(end - auth);
	/* curl leaves a default port out of Host:, and the signature must match it. */
	if (!https && n > 3 && strncmp(end - 3, ":80", 3) == 0)
		n -= 3;
	if (https && n > 4 && strncmp(end - 4, ":443", 4) == 0)
		n -= 4;
	if (!(s->host = strndup(auth, n)) ||
		asprintf(&s->origin, "%s://%s", https ? "https" : "http", s->host) < 0) {
		s->origin = NULL;
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	return 0;
}

int al_blobs_s3_new(al_blobs_backend **out, const char *bucket_and_prefix)
{
	s3_blobs *s;
	const char *slash, *endpoint, *ak = al__env("AWS_ACCESS_KEY_ID"), *sk = al__env("AWS_SECRET_ACCESS_KEY");
	const char *token = al__env("AWS_SESSION_TOKEN"), *region = al__env("AWS_REGION");
	al_http_options opt = AL_HTTP_OPTIONS_INIT;
	size_t bl, pl;
	int rc = 0;

	*out = NULL;
	if (!bucket_and_prefix || !*bucket_and_prefix || *bucket_and_prefix == '/')
		return al_error_set(AL_EINVAL, "S3 blob store without a bucket; use s3://BUCKET[/PREFIX]");
	if (!ak || !sk)
		return al_error_set(AL_EINVAL, "S3 blob store s3://%s: set AWS_ACCESS_KEY_ID and "
			"AWS_SECRET_ACCESS_KEY", bucket_and_prefix);
	if (!(s = calloc(1, sizeof(*s))))
		return al_error_set(AL_ENOMEM, "out of memory");
	slash = strchr(bucket_and_prefix, '/');
	bl = slash ? (size_t)(slash - bucket_and_prefix) : strlen(bucket_and_prefix);
	if (!(s->bucket = strndup(bucket_and_prefix, bl)))
		goto nomem;
	slash = slash ? slash + strspn(slash, "/") : "";
	pl = strlen(slash);
	while (pl && slash[pl - 1] == '/')
		pl--;
	if (!(s->prefix = strndup(slash, pl)) || !(s->access_key = strdup(ak)) ||
		!(s->secret_key = strdup(sk)) || (token && !(s->session_token = strdup(token))) ||
		!(s->region = strdup(region ? region : "us-east-1")))
		goto nomem;
	endpoint = al__env("AWS_ENDPOINT_URL_S3");
	if (!endpoint)
		endpoint = al__env("AWS_ENDPOINT_URL");
	if (endpoint) {
		/* Local and S3-compatible servers: path-style, http://host:port/BUCKET/KEY. */
		if ((rc = parse_endpoint(s, endpoint)) != 0)
			goto cleanup;
		if (asprintf(&s->path_base, "/%s", s->bucket) < 0) {
			s->path_base = NULL;
			goto nomem;
		}
	} else {
		if (asprintf(&s->host, "%s.s3.%s.amazonaws.com", s->bucket, s->region) < 0) {
			s->host = NULL;
			goto nomem;
		}
		if (asprintf(&s->origin, "https://%s", s->host) < 0) {
			s->origin = NULL;
			goto nomem;
		}
		if (!(s->path_base = strdup("")))
			goto nomem;
	}
	/* Parts are up to 16 MiB and single PUTs up to 64 MiB: give each attempt time. */
	opt.timeout_ms = 600000;
	opt.stall_ms = AL__BLOBS_STALL_MS;
	opt.max_stalls = AL__BLOBS_MAX_STALLS;
	opt.max_idle = AL__BLOBS_MAX_IDLE;
	if ((rc = al_http_new(&s->http, &opt)) != 0)
		goto cleanup;
	s->base.version = AL_BLOBS_BACKEND_VERSION;
	s->base.name = "s3";
	s->base.put = s3_put;
	s->base.fetch = s3_fetch;
	s->base.exists = al__blobs_exists;
	s->base.stat = s3_stat;
	s->base.local_path = al__blobs_no_local_path;
	s->base.uri = s3_uri;
	s->base.free = s3_free;
	*out = &s->base;
	s = NULL;
	goto cleanup;
nomem:
	rc = al_error_set(AL_ENOMEM, "out of memory opening the S3 blob store");
cleanup:
	s3_free(s ? &s->base : NULL);
	return rc;
}
