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
#include "aletheia/blobs.h"
#include "aletheia/buf.h"
#include "aletheia/hash.h"
#include "aletheia/http.h"
#include "aletheia/sigv4.h"
#include "blobs_internal.h"

#define SINGLE_PUT_MAX ((uint64_t)64 << 20)  /* larger files go multipart */
#define PART_SIZE ((uint64_t)16 << 20)
#define MAX_PARTS 10000
#define HASH_BLOCK (1u << 20)

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


/* The object's size from a HEAD (for fsck); AL_ENOTFOUND when absent. */
static int s3_stat(uint64_t *size_out, al_blobs_backend *b, const char *hash)
{
	s3_blobs *s = (s3_blobs *)b;
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	s3_req r = {"HEAD", NULL, NULL, {NULL}, NULL, NULL, 0, AL_HTTP_IDEMPOTENT};
	char *key = NULL, *end = NULL;
	int rc;

	*size_out = 0;
	if ((rc = al__blobs_check_hash(hash)) != 0)
		return rc;
	if (!(key = object_key(s, hash))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	r.key = key;
	io.header = "Content-Length";
	if ((rc = s3_send(&resp, s, &r, &io)) != 0)
		goto cleanup;
	if (resp.status == 404) {
		rc = al_error_set(AL_ENOTFOUND, "no object s3://%s/%s", s->bucket, key);
	} else if (resp.status != 200) {
		rc = status_error(s, "HEAD", key, &resp);
	} else {
		errno = 0;
		*size_out = io.header_value ? strtoull(io.header_value, &end, 10) : 0;
		if (!io.header_value || errno || !end || *end)
			rc = al_error_set(AL_EIO, "S3 HEAD s3://%s/%s: no Content-Length", s->bucket, key);
	}
cleanup:
	free(io.header_value);
	al_http_response_dispose(&resp);
	free(key);
	return rc;
}

/* Multipart upload of fd (size bytes) to key, aborted on any failure. */
static int put_multipart(s3_blobs *s, const char *key, int fd, uint64_t size, const char *src)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	al_buf xml = AL_BUF_INIT;
	char *upload_id = NULL, *query = NULL, *saved = NULL, hex[AL_SIGV4_HEX_LEN + 1];
	uint64_t part = PART_SIZE;
	int rc, parts;

	/* At most MAX_PARTS parts, each a whole number of MiB. */
	if (size / part >= MAX_PARTS)
		part = ((size / MAX_PARTS) | (((uint64_t)1 << 20) - 1)) + 1;
	parts = (int)((size + part - 1) / part);
	{
		s3_req r = {"POST", key, "uploads", {NULL}, NULL, "", 0, 0};
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
	for (int i = 1; i <= parts; i++) {
		uint64_t off = (uint64_t)(i - 1) * part, len = size - off < part ? size - off : part;
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
		/* Create-only here too: a 412 means the object appeared meanwhile. */
		s3_req r = {"POST", key, query, {"If-None-Match: *", NULL}, hex, xml.ptr, xml.len, 0};
		char *err;
		if ((rc = s3_send(&resp, s, &r, NULL)) != 0)
			goto abort;
		if (resp.status == 412 || resp.status == 409) {
			rc = 0;
			goto abort; /* drop the parts; the existing object stands */
		}
		if (resp.status != 200) {
			rc = status_error(s, "CompleteMultipartUpload", key, &resp);
			goto abort;
		}
		/* A 200 can still carry an <Error>. */
		if (resp.body.ptr && strstr(resp.body.ptr, "<Error>")) {
			err = xml_text(&resp.body, "Code");
			rc = al_error_set(AL_EIO, "S3 CompleteMultipartUpload s3://%s/%s: %s", s->bucket,
				key, err ? err : "error in a 200 answer");
			free(err);
			goto abort;
		}
	}
	goto cleanup;
abort:
	{
		/* Best effort; keep the first failure's message. */
		s3_req r = {"DELETE", key, NULL, {NULL}, NULL, NULL, 0, AL_HTTP_IDEMPOTENT};
		char *q = NULL;
		saved = rc ? strdup(al_error_last()) : NULL;
		if (asprintf(&q, "uploadId=%s", upload_id) >= 0) {
			r.query = q;
			s3_send(&resp, s, &r, NULL);
			free(q);
		}
		if (rc)
			al_error_set(rc, "%s", saved ? saved : "S3 multipart upload failed");
	}
cleanup:
	free(saved);
	free(io.header_value);
	free(query);
	free(upload_id);
	al_buf_dispose(&xml);
	al_http_response_dispose(&resp);
	return rc;
}

static int s3_put(al_blobs_backend *b, const char *hash, const char *src_path, uint64_t size,
	unsigned flags)
{
	s3_blobs *s = (s3_blobs *)b;
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	char *key = NULL, hex[AL_SIGV4_HEX_LEN + 1];
	struct stat st;
	int rc, fd = -1, present = 0;

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
	/* Content-addressed: a blob already there needs no upload (a cheap HEAD first). */
	if ((rc = al__blobs_exists(&present, b, hash)) != 0 || present)
		goto cleanup;
	if (size > SINGLE_PUT_MAX) {
		rc = put_multipart(s, key, fd, size, src_path);
		goto cleanup;
	}
	if ((rc = sha256_fd(hex, fd, 0, size, src_path)) != 0)
		goto cleanup;
	{
		/* Create-only, so a retry after an unseen success is harmless. */
		s3_req r = {"PUT", key, NULL, {"If-None-Match: *", NULL}, hex, NULL, 0,
			AL_HTTP_IDEMPOTENT};
		io.src_fd = fd;
		io.src_len = size;
		if ((rc = s3_send(&resp, s, &r, &io)) != 0)
			goto cleanup;
		if (resp.status != 200 && resp.status != 412 && resp.status != 409)
			rc = status_error(s, "PUT", key, &resp);
	}
cleanup:
	if (fd >= 0)
		close(fd);
	al_http_response_dispose(&resp);
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
