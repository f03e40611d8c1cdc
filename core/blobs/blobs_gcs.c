/* aletheia: the Google Cloud Storage blob store (gs://BUCKET[/PREFIX]) over the JSON API through the
 * pooled HTTP client: create-only uploads (multipart up to 8 MiB, resumable above) that carry the
 * content's MD5 and CRC32C and check the server's, ranged GET, metadata. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <isa-l/crc.h>
#include <openssl/evp.h>
#include "core/net/auth.h"
#include "core/blobs/blobs.h"
#include "aletheia/hash.h"
#include "core/net/http.h"
#include "core/blobs/blobs_internal.h"

#define DEFAULT_ORIGIN "https://storage.googleapis.com"
#define SINGLE_UPLOAD_MAX ((uint64_t)8 << 20)  /* as Google's clients: larger goes resumable */
#define CHUNK_SIZE ((uint64_t)8 << 20)         /* a multiple of 256 KiB, as GCS requires */
#define MAX_STALLS 5          /* resumable rounds in a row that store nothing new */
#define MAX_SESSIONS 3        /* resumable sessions started for one put */
#define MAX_UPLOADS 3         /* uploads of one put refused or stored damaged before EIO */
#define SUMS_BLOCK (1u << 20)

typedef struct {
	al_blobs_backend base;
	al_http *http;
	al_auth *auth;      /* NULL with an emulator: no Authorization header */
	char *bucket;
	char *prefix;       /* no leading or trailing '/', may be "" */
	char *origin;       /* "https://storage.googleapis.com" or "http://127.0.0.1:PORT" */
	char *ebucket;      /* bucket, percent-encoded */
	char *user_project; /* "x-goog-user-project: P" (authorized_user quota project) or NULL */
} gcs_blobs;

static char *object_name(const gcs_blobs *g, const char *hash)
{
	return al__blobs_object_key(g->prefix, hash);
}

/* origin + path, where path's "%s" takes the encoded bucket and then the encoded object name. */
static char *object_url(const gcs_blobs *g, const char *fmt, const char *name)
{
	char *ename = al_http_escape(name), *path = NULL, *url = NULL;
	if (ename && asprintf(&path, fmt, g->ebucket, ename) >= 0 &&
		asprintf(&url, "%s%s", g->origin, path) < 0)
		url = NULL;
	free(path);
	free(ename);
	return url;
}

/* Sends a request with the bearer token (unless talking to an emulator) and extra headers; io
 * (may be NULL) streams the bodies. 0 once GCS answered, whatever the status. */
static int gcs_send(al_http_response *resp, gcs_blobs *g, const char *method, const char *url,
	const char *const *extra, const void *body, size_t body_len, al_http_stream *io,
	unsigned flags)
{
	const char *all[12];
	char *token = NULL, *auth_hdr = NULL;
	size_t n = 0;
	int rc = 0, refused = 0;

again:
	if (g->auth) {
		if ((rc = al_auth_token(&token, g->auth)) != 0)
			goto cleanup;
		if (asprintf(&auth_hdr, "Authorization: Bearer %s", token) < 0) {
			auth_hdr = NULL;
			rc = al_error_set(AL_ENOMEM, "out of memory building a GCS request");
			goto cleanup;
		}
		all[n++] = auth_hdr;
	}
	if (g->user_project)
		all[n++] = g->user_project;
	for (size_t i = 0; extra && extra[i] && n < 11; i++)
		all[n++] = extra[i];
	all[n] = NULL;
	rc = io ? al_http_request_stream(resp, g->http, method, url, all, io, flags) :
		al_http_request(resp, g->http, method, url, all, body, body_len, flags);
	if (rc == 0 && g->auth && resp->status == 401 && !refused++) {
		/* A refused token (revoked, expired early): once more with a fresh one. */
		al_auth_invalidate(g->auth, token);
		memset(token, 0, strlen(token));
		memset(auth_hdr, 0, strlen(auth_hdr));
		free(token);
		free(auth_hdr);
		token = auth_hdr = NULL;
		n = 0;
		goto again;
	}
cleanup:
	if (token) {
		/* the token must not outlive its use in memory we hand back */
		memset(token, 0, strlen(token));
		free(token);
	}
	if (auth_hdr) {
		memset(auth_hdr, 0, strlen(auth_hdr));
		free(auth_hdr);
	}
	return rc;
}

/* One line for an unexpected answer: AL_EACCES for 401/403, AL_ENOTFOUND for 404, AL_EIO else;
 * Google's error message is quoted when the body has one. */
static int status_error(const gcs_blobs *g, const char *what, const char *name,
	const al_http_response *resp)
{
	cJSON *j = resp->body.ptr ? cJSON_Parse(resp->body.ptr) : NULL;
	cJSON *msg = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"),
		"message");
	int rc = resp->status == 401 || resp->status == 403 ? AL_EACCES :
		resp->status == 404 ? AL_ENOTFOUND : AL_EIO;
	al_error_set(rc, "GCS %s gs://%s/%s: HTTP %ld%s%.200s", what, g->bucket, name, resp->status,
		cJSON_IsString(msg) ? ": " : "", cJSON_IsString(msg) ? msg->valuestring : "");
	cJSON_Delete(j);
	return rc;
}

/* The checksums GCS keeps of an object, base64 as in its object resources. */
typedef struct {
	char md5[32];     /* md5Hash: 16 bytes (24 characters) */
	char crc32c[16];  /* crc32c: CRC-32C (Castagnoli), 4 bytes big-endian (8 characters) */
} gcs_sums;

/* What the server says of an object. */
typedef struct {
	int found;
	uint64_t size;
	unsigned long long generation;
	gcs_sums sums;    /* "" where the resource has none */
} gcs_object;

/* One read of the upload's source: its MD5 and CRC32C, and its xxh3-128, which must still be the
 * blob's name (a source changed since it was hashed must not be stored under that name). */
static int content_sums(gcs_sums *out, int fd, uint64_t size, const char *hash, const char *path)
{
	unsigned char md[EVP_MAX_MD_SIZE], be[4];
	unsigned int md_len = 0, crc = 0xffffffffu;
	char got[AL_HASH_HEX_LEN + 1];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *buf = malloc(SUMS_BLOCK);
	al_hasher *h = NULL;
	uint64_t off = 0;
	int rc = 0;

	if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_md5(), NULL)) {
		rc = al_error_set(AL_ENOMEM, "cannot start the checksums of %s", path);
		goto cleanup;
	}
	if ((rc = al_hasher_new(&h)) != 0)
		goto cleanup;
	while (off < size) {
		size_t want = size - off < SUMS_BLOCK ? (size_t)(size - off) : SUMS_BLOCK;
		ssize_t n = pread(fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? al_error_set_errno(AL_EIO, errno, "cannot read %s", path) :
				al_error_set(AL_EIO, "%s is shorter than expected", path);
			goto cleanup;
		}
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		crc = crc32_iscsi(buf, (int)n, crc);
		al_hasher_update(h, buf, (size_t)n);
		off += (uint64_t)n;
	}
	al_hasher_final(got, h);
	if (strcmp(got, hash) != 0) {
		rc = al_error_set(AL_EIO, "%s changed since it was hashed (xxh3-128 %s, not %s)", path,
			got, hash);
		goto cleanup;
	}
	EVP_DigestFinal_ex(ctx, md, &md_len);
	EVP_EncodeBlock((unsigned char *)out->md5, md, (int)md_len);
	crc ^= 0xffffffffu;
	be[0] = (unsigned char)(crc >> 24);
	be[1] = (unsigned char)(crc >> 16);
	be[2] = (unsigned char)(crc >> 8);
	be[3] = (unsigned char)crc;
	EVP_EncodeBlock((unsigned char *)out->crc32c, be, 4);
cleanup:
	al_hasher_free(h);
	EVP_MD_CTX_free(ctx);
	free(buf);
	return rc;
}

static int json_u64(unsigned long long *out, const cJSON *j, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	char *end = NULL;
	if (!cJSON_IsString(v) || !v->valuestring[0] || v->valuestring[0] == '-')
		return -1;
	errno = 0;
	*out = strtoull(v->valuestring, &end, 10);
	return errno || *end ? -1 : 0;
}

static void json_copy(char *out, size_t size, const cJSON *j, const char *key)
{
	const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, key));
	snprintf(out, size, "%s", v && strlen(v) < size ? v : "");
}

/* Reads an object resource (the answer to an upload or a metadata GET). */
static int parse_object(gcs_object *o, const gcs_blobs *g, const char *name,
	const al_http_response *resp)
{
	cJSON *j = resp->body.ptr ? cJSON_Parse(resp->body.ptr) : NULL;
	unsigned long long size = 0;
	int rc = 0;

	memset(o, 0, sizeof(*o));
	if (json_u64(&size, j, "size") != 0 || json_u64(&o->generation, j, "generation") != 0) {
		rc = al_error_set(AL_EIO, "GCS gs://%s/%s: no object size or generation in the answer",
			g->bucket, name);
		goto cleanup;
	}
	o->found = 1;
	o->size = size;
	json_copy(o->sums.md5, sizeof(o->sums.md5), j, "md5Hash");
	json_copy(o->sums.crc32c, sizeof(o->sums.crc32c), j, "crc32c");
cleanup:
	cJSON_Delete(j);
	return rc;
}

/* 0 when the server's object is the content: its size, and the checksums sent (GCS always keeps
 * a CRC32C; an MD5 is compared when it has one). Else AL_EIO saying what differs. */
static int check_object(const gcs_blobs *g, const char *name, const gcs_object *o,
	const gcs_sums *want, uint64_t size)
{
	if (o->size != size)
		return al_error_set(AL_EIO, "GCS gs://%s/%s: the server holds %llu bytes, not %llu",
			g->bucket, name, (unsigned long long)o->size, (unsigned long long)size);
	if (strcmp(o->sums.crc32c, want->crc32c) != 0 ||
		(o->sums.md5[0] && strcmp(o->sums.md5, want->md5) != 0))
		return al_error_set(AL_EIO, "GCS gs://%s/%s: the server holds crc32c \"%s\" md5 \"%s\", "
			"not the content's crc32c \"%s\" md5 \"%s\"", g->bucket, name, o->sums.crc32c,
			o->sums.md5, want->crc32c, want->md5);
	return 0;
}

/* The object resource sent ahead of an upload's bytes: the checksums make GCS refuse a body
 * that does not match them (400) instead of storing it. NULL when out of memory. */
static char *upload_metadata(const char *name, const gcs_sums *sums)
{
	cJSON *j = cJSON_CreateObject();
	char *out = NULL;
	if (j && cJSON_AddStringToObject(j, "name", name) &&
		cJSON_AddStringToObject(j, "contentType", "application/octet-stream") &&
		cJSON_AddStringToObject(j, "md5Hash", sums->md5) &&
		cJSON_AddStringToObject(j, "crc32c", sums->crc32c))
		out = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	return out;
}

/* Metadata GET of an object: o->found is 0 when there is none. */
static int object_get(gcs_object *o, gcs_blobs *g, const char *name)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	char *url = object_url(g, "/storage/v1/b/%s/o/%s?fields=size,generation,md5Hash,crc32c",
		name);
	int rc;

	memset(o, 0, sizeof(*o));
	if (!url)
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((rc = gcs_send(&resp, g, "GET", url, NULL, NULL, 0, NULL, AL_HTTP_IDEMPOTENT)) != 0)
		goto cleanup;
	if (resp.status == 200)
		rc = parse_object(o, g, name, &resp);
	else if (resp.status != 404)
		rc = status_error(g, "metadata GET", name, &resp);
cleanup:
	al_http_response_dispose(&resp);
	free(url);
	return rc;
}


/* The object's size from its metadata (for fsck); AL_ENOTFOUND when absent. */
static int gcs_stat(uint64_t *size_out, al_blobs_backend *b, const char *hash)
{
	gcs_blobs *g = (gcs_blobs *)b;
	gcs_object o;
	char *name = NULL;
	int rc;

	*size_out = 0;
	if ((rc = al__blobs_check_hash(hash)) != 0)
		return rc;
	if (!(name = object_name(g, hash)))
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((rc = object_get(&o, g, name)) == 0 && !o.found)
		rc = al_error_set(AL_ENOTFOUND, "no object gs://%s/%s", g->bucket, name);
	if (rc == 0)
		*size_out = o.size;
	free(name);
	return rc;
}

/* How one upload ended. */
enum { U_STORED, U_EXISTS, U_REFUSED, U_FAILED };

/* Maps an upload's final answer: 200/201 (the object resource into *o), 412 (the precondition
 * failed: an object is there), 400 (refused: GCS answers so when the body does not match the
 * checksums sent; AL_EIO with its message). */
static int upload_answer(int *what, gcs_object *o, const gcs_blobs *g, const char *name,
	const al_http_response *resp)
{
	*what = U_FAILED;
	if (resp->status == 412) {
		*what = U_EXISTS;
		return 0;
	}
	if (resp->status == 200 || resp->status == 201) {
		int rc = parse_object(o, g, name, resp);
		if (rc == 0)
			*what = U_STORED;
		return rc;
	}
	if (resp->status == 400)
		*what = U_REFUSED;
	return status_error(g, "upload", name, resp);
}

/* One upload in a single request (uploadType=multipart: the object resource with the checksums,
 * then the bytes), only over generation gen (0: create-only). */
static int put_multipart(int *what, gcs_object *o, gcs_blobs *g, const char *name, int fd,
	uint64_t size, const gcs_sums *sums, unsigned long long gen)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	unsigned char rnd[12] = {0};
	char boundary[40], ctype[96], *head = NULL, *tail = NULL, *meta = NULL, *base = NULL;
	char *url = NULL;
	const char *hdrs[] = {ctype, NULL};
	int rc;

	*what = U_FAILED;
	/* A random boundary: were it ever in the bytes, the body would not match its checksums. */
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		memcpy(rnd, &size, sizeof(size) < sizeof(rnd) ? sizeof(size) : sizeof(rnd));
	snprintf(boundary, sizeof(boundary), "aletheia_");
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(boundary + 9 + 2 * i, 3, "%02x", rnd[i]);
	snprintf(ctype, sizeof(ctype), "Content-Type: multipart/related; boundary=%s", boundary);
	if (!(meta = upload_metadata(name, sums)) ||
		!(base = object_url(g, "/upload/storage/v1/b/%s/o?uploadType=multipart&name=%s", name)) ||
		asprintf(&url, "%s&ifGenerationMatch=%llu", base, gen) < 0 ||
		asprintf(&head, "--%s\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n%s\r\n"
			"--%s\r\nContent-Type: application/octet-stream\r\n\r\n", boundary, meta,
			boundary) < 0 ||
		asprintf(&tail, "\r\n--%s--\r\n", boundary) < 0) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	io.src_fd = fd;
	io.src_len = size;
	io.src_head = head;
	io.src_head_len = strlen(head);
	io.src_tail = tail;
	io.src_tail_len = strlen(tail);
	/* ifGenerationMatch makes a repeat harmless: it fails with 412 once the first landed. */
	if ((rc = gcs_send(&resp, g, "POST", url, hdrs, NULL, 0, &io, AL_HTTP_IDEMPOTENT)) != 0)
		goto cleanup;
	rc = upload_answer(what, o, g, name, &resp);
cleanup:
	al_http_response_dispose(&resp);
	free(head);
	free(tail);
	free(meta);
	free(base);
	free(url);
	return rc;
}

/* Starts a resumable session whose object resource carries the checksums (GCS checks them when
 * the last byte arrives), only over generation gen; *session is its URI, or NULL with *what
 * U_EXISTS when the precondition already fails. */
static int resumable_start(char **session, int *what, gcs_blobs *g, const char *name, int fd,
	uint64_t size, const gcs_sums *sums, unsigned long long gen)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	char len_hdr[64], *meta = NULL, *base = NULL, *url = NULL;
	const char *hdrs[] = {len_hdr, "X-Upload-Content-Type: application/octet-stream",
		"Content-Type: application/json; charset=UTF-8", NULL};
	int rc;

	*session = NULL;
	*what = U_FAILED;
	if (!(meta = upload_metadata(name, sums)) ||
		!(base = object_url(g, "/upload/storage/v1/b/%s/o?uploadType=resumable&name=%s", name)) ||
		asprintf(&url, "%s&ifGenerationMatch=%llu", base, gen) < 0) {
		url = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	snprintf(len_hdr, sizeof(len_hdr), "X-Upload-Content-Length: %llu", (unsigned long long)size);
	/* The body is the object resource only (src_len 0: no bytes of the file yet). */
	io.src_fd = fd;
	io.src_len = 0;
	io.src_head = meta;
	io.src_head_len = strlen(meta);
	io.header = "Location";
	/* A second session after a lost answer costs nothing: unused sessions expire. */
	if ((rc = gcs_send(&resp, g, "POST", url, hdrs, NULL, 0, &io, AL_HTTP_IDEMPOTENT)) != 0)
		goto cleanup;
	if (resp.status == 412) {
		*what = U_EXISTS;
		goto cleanup;
	}
	if (resp.status != 200 && resp.status != 201) {
		rc = status_error(g, "resumable upload start", name, &resp);
		goto cleanup;
	}
	if (!io.header_value || strncmp(io.header_value, "http", 4) != 0) {
		rc = al_error_set(AL_EIO, "GCS resumable upload start gs://%s/%s: no session URI in the "
			"answer", g->bucket, name);
		goto cleanup;
	}
	*session = io.header_value;
	io.header_value = NULL;
cleanup:
	free(io.header_value);
	al_http_response_dispose(&resp);
	free(meta);
	free(base);
	free(url);
	return rc;
}

/* The next offset from a 308's "Range: bytes=0-N" (none: nothing stored yet). */
static int stored_up_to(uint64_t *next, const char *range, uint64_t size)
{
	unsigned long long end;
	char extra;

	if (!range) {
		*next = 0;
		return 0;
	}
	if (sscanf(range, "bytes=0-%llu%c", &end, &extra) != 1 || end >= size)
		return -1;
	*next = (uint64_t)end + 1;
	return 0;
}

/* Outcome of one resumable exchange: more to send, the upload's end (*what says how), the session
 * gone, or a failure to ask the session about. */
enum { R_MORE, R_END, R_GONE, R_FAILED };

/* Classifies an answer to a chunk PUT or a status query; *next is set for R_MORE, *what and *o
 * for R_END. */
static int resumable_answer(int *step, uint64_t *next, int *what, gcs_object *o, gcs_blobs *g,
	const char *name, const al_http_response *resp, const char *range, uint64_t size)
{
	switch (resp->status) {
	case 308:
		if (stored_up_to(next, range, size) != 0)
			return al_error_set(AL_EIO, "GCS resumable upload gs://%s/%s: bad Range \"%s\" for a "
				"%llu-byte object", g->bucket, name, range, (unsigned long long)size);
		*step = R_MORE;
		return 0;
	case 200:
	case 201:
	case 400:
	case 412:
		*step = R_END;
		return upload_answer(what, o, g, name, resp);
	case 404:
	case 410:
		*step = R_GONE; /* the session expired or failed: start again */
		return 0;
	default:
		*step = R_FAILED;
		if (resp->status >= 500 || resp->status == 429 || resp->status == 408)
			return 0; /* ask the session where it stands */
		return status_error(g, "resumable upload", name, resp);
	}
}

/* Resumable upload in CHUNK_SIZE pieces, only over generation gen. After a failed chunk the
 * session is asked how much it holds (an empty PUT with "Content-Range: bytes * /TOTAL") and the
 * upload goes on from there. Ends as put_multipart does. */
static int put_resumable(int *what, gcs_object *o, gcs_blobs *g, const char *name, int fd,
	uint64_t size, const gcs_sums *sums, unsigned long long gen)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	char *session = NULL, range_hdr[96];
	const char *hdrs[] = {range_hdr, NULL};
	uint64_t off = 0, next = 0;
	int rc = 0, step = R_FAILED, stalls = 0, sessions = 0, need_status = 0;

	*what = U_FAILED;
	for (;;) {
		if (!session) {
			if (++sessions > MAX_SESSIONS) {
				rc = al_error_set(AL_EIO, "GCS resumable upload gs://%s/%s: %d sessions lost",
					g->bucket, name, MAX_SESSIONS);
				goto cleanup;
			}
			if ((rc = resumable_start(&session, what, g, name, fd, size, sums, gen)) != 0 ||
				!session)
				goto cleanup; /* failed, or already there */
			off = 0;
			need_status = 0;
		}
		io = (al_http_stream)AL_HTTP_STREAM_INIT;
		io.src_fd = fd;
		io.header = "Range";
		if (need_status) {
			snprintf(range_hdr, sizeof(range_hdr), "Content-Range: bytes */%llu",
				(unsigned long long)size);
			io.src_len = 0;
			/* asking changes nothing: safe to repeat */
			rc = gcs_send(&resp, g, "PUT", session, hdrs, NULL, 0, &io, AL_HTTP_IDEMPOTENT);
		} else {
			uint64_t len = size - off < CHUNK_SIZE ? size - off : CHUNK_SIZE;
			snprintf(range_hdr, sizeof(range_hdr), "Content-Range: bytes %llu-%llu/%llu",
				(unsigned long long)off, (unsigned long long)(off + len - 1),
				(unsigned long long)size);
			io.src_off = off;
			io.src_len = len;
			/* Not retried blindly after a reset: the status query tells where to go on. */
			rc = gcs_send(&resp, g, "PUT", session, hdrs, NULL, 0, &io, 0);
		}
		if (rc == AL_ENOMEM)
			goto cleanup;
		if (rc == 0)
			rc = resumable_answer(&step, &next, what, o, g, name, &resp, io.header_value, size);
		else
			step = R_FAILED; /* transport failure: the message stays if we give up */
		free(io.header_value);
		io.header_value = NULL;
		if (step == R_END || (rc && step != R_FAILED))
			goto cleanup;
		if (step == R_GONE) {
			free(session);
			session = NULL;
			rc = 0;
			continue;
		}
		if (step == R_MORE) {
			/* a status answer with no progress was already counted with its failure */
			if (next > off)
				stalls = 0;
			else if (!need_status)
				stalls++;
			off = next;
			need_status = 0;
			rc = 0;
		} else {
			stalls++;
			need_status = 1;
		}
		if (stalls >= MAX_STALLS) {
			if (!rc)
				rc = al_error_set(AL_EIO, "GCS resumable upload gs://%s/%s: no progress after %d "
					"tries at byte %llu", g->bucket, name, MAX_STALLS, (unsigned long long)off);
			goto cleanup;
		}
		if (stalls)
			nanosleep(&(struct timespec){0, 100000000L * stalls}, NULL);
		rc = 0;
	}
cleanup:
	free(io.header_value);
	free(session);
	al_http_response_dispose(&resp);
	return rc;
}

/* Uploads until the server holds the content: a body refused for its checksums (damaged on the
 * way) is sent again; an object whose checksums are not the content's (stored damaged by a server
 * that ignored them, or found under the blob's name) is replaced, only over its generation. A
 * put never ends on an object that is not the content (README "Object storage"). */
static int gcs_put(al_blobs_backend *b, const char *hash, const char *src_path, uint64_t size,
	unsigned flags)
{
	gcs_blobs *g = (gcs_blobs *)b;
	gcs_object o;
	gcs_sums sums;
	char *name = NULL;
	struct stat st;
	unsigned long long gen = 0; /* ifGenerationMatch: 0 creates only */
	int rc, fd = -1, what;

	(void)flags; /* nothing to move: the source is always copied up */
	if ((rc = al__blobs_check_hash(hash)) != 0)
		return rc;
	if (!(name = object_name(g, hash))) {
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
	/* Content-addressed: a blob already there needs no upload (a metadata GET first). */
	if ((rc = object_get(&o, g, name)) != 0 ||
		(rc = content_sums(&sums, fd, size, hash, src_path)) != 0)
		goto cleanup;
	for (int tries = 0, known = 1;; tries++) {
		/* known: o is what the server holds now (not after a refused upload: nothing changed) */
		if (known && o.found) {
			if ((rc = check_object(g, name, &o, &sums, size)) == 0)
				goto cleanup;
			gen = o.generation;
		} else if (known) {
			gen = 0;
		}
		if (tries == MAX_UPLOADS) {
			if (!rc) /* the object vanished after a 412 each time */
				rc = al_error_set(AL_EIO, "GCS upload gs://%s/%s: not stored after %d uploads",
					g->bucket, name, MAX_UPLOADS);
			goto cleanup; /* else the last failure's message stays */
		}
		if (rc)
			fprintf(stderr, "aletheia: %s; uploading again\n", al_error_last());
		rc = size <= SINGLE_UPLOAD_MAX ? put_multipart(&what, &o, g, name, fd, size, &sums, gen) :
			put_resumable(&what, &o, g, name, fd, size, &sums, gen);
		if (what == U_EXISTS)
			rc = object_get(&o, g, name); /* another writer's, or ours after a lost answer */
		if (rc && what != U_REFUSED)
			goto cleanup;
		known = what != U_REFUSED;
	}
cleanup:
	if (fd >= 0)
		close(fd);
	free(name);
	return rc;
}

static int gcs_fetch(al_blobs_backend *b, const char *hash, uint64_t offset, uint64_t len,
	int dst_fd, uint64_t dst_offset)
{
	gcs_blobs *g = (gcs_blobs *)b;
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	char *name = NULL, *url = NULL, range[64];
	const char *hdrs[] = {range, NULL};
	int rc;

	if ((rc = al__blobs_check_hash(hash)) != 0)
		return rc;
	if (len == 0)
		return 0;
	if (offset + len < offset)
		return al_error_set(AL_EINVAL, "blob range overflows");
	if (!(name = object_name(g, hash)) ||
		!(url = object_url(g, "/storage/v1/b/%s/o/%s?alt=media", name))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	snprintf(range, sizeof(range), "Range: bytes=%llu-%llu", (unsigned long long)offset,
		(unsigned long long)(offset + len - 1));
	io.dst_fd = dst_fd;
	io.dst_off = dst_offset;
	io.dst_max = len;
	io.dst_expect = len;   /* a body cut short is retried by the HTTP client */
	/* nobody needs the range once the daemon stops (a reader gone with the mount) */
	if ((rc = gcs_send(&resp, g, "GET", url, hdrs, NULL, 0, &io,
		AL_HTTP_IDEMPOTENT | AL_HTTP_ABANDON)) != 0)
		goto cleanup;
	if (resp.status == 416) {
		rc = al_error_set(AL_EINVAL, "GCS GET gs://%s/%s: bytes %llu-%llu are past the end",
			g->bucket, name, (unsigned long long)offset, (unsigned long long)(offset + len - 1));
		goto cleanup;
	}
	/* A 200 is the whole object: right only when the range starts at 0. */
	if (resp.status != 206 && !(resp.status == 200 && offset == 0)) {
		rc = resp.status == 200 ?
			al_error_set(AL_EIO, "GCS GET gs://%s/%s: the range was ignored", g->bucket, name) :
			status_error(g, "GET", name, &resp);
		goto cleanup;
	}
	/* Fewer bytes than asked and not cut short: the object ends sooner than the blob. */
	if (io.dst_written != len)
		rc = al_error_set(AL_EIO, "GCS GET gs://%s/%s: %llu bytes received for a %llu-byte "
			"range", g->bucket, name, (unsigned long long)io.dst_written,
			(unsigned long long)len);
cleanup:
	al_http_response_dispose(&resp);
	free(url);
	free(name);
	return rc;
}

static char *gcs_uri(al_blobs_backend *b, const char *hash)
{
	gcs_blobs *g = (gcs_blobs *)b;
	char *name = object_name(g, hash), *u = NULL;
	if (name && asprintf(&u, "gs://%s/%s", g->bucket, name) < 0)
		u = NULL;
	free(name);
	return u;
}

static void gcs_free(al_blobs_backend *b)
{
	gcs_blobs *g = (gcs_blobs *)b;
	if (!g)
		return;
	al_http_free(g->http);
	al_auth_free(g->auth);
	free(g->bucket);
	free(g->prefix);
	free(g->origin);
	free(g->ebucket);
	free(g->user_project);
	free(g);
}

/* STORAGE_EMULATOR_HOST: "host:port" or "http[s]://host:port[/]"; plain HTTP without a scheme. */
static int emulator_origin(char **out, const char *v)
{
	const char *auth = v, *scheme = "http";
	size_t n;

	*out = NULL;
	if (strncmp(v, "http://", 7) == 0)
		auth = v + 7;
	else if (strncmp(v, "https://", 8) == 0)
		auth = v + 8, scheme = "https";
	else if (strstr(v, "://"))
		return al_error_set(AL_EINVAL, "STORAGE_EMULATOR_HOST=\"%s\" is not http:// or https://", v);
	n = strcspn(auth, "/?#");
	if (n == 0 || (auth[n] && strspn(auth + n, "/") != strlen(auth + n)))
		return al_error_set(AL_EINVAL, "STORAGE_EMULATOR_HOST=\"%s\": expected [http://]HOST[:PORT]",
			v);
	if (asprintf(out, "%s://%.*s", scheme, (int)n, auth) < 0) {
		*out = NULL;
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	return 0;
}

static int valid_bucket(const char *b, size_t n)
{
	if (n < 3 || n > 222)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '-' ||
			b[i] == '_' || b[i] == '.'))
			return 0;
	return 1;
}

int al_blobs_gcs_new(al_blobs_backend **out, const char *bucket_and_prefix)
{
	gcs_blobs *g;
	const char *slash, *emu = getenv("STORAGE_EMULATOR_HOST"), *qp;
	al_http_options opt = AL_HTTP_OPTIONS_INIT;
	size_t bl, pl;
	int rc = 0;

	*out = NULL;
	if (!bucket_and_prefix || !*bucket_and_prefix || *bucket_and_prefix == '/')
		return al_error_set(AL_EINVAL, "GCS blob store without a bucket; use gs://BUCKET[/PREFIX]");
	slash = strchr(bucket_and_prefix, '/');
	bl = slash ? (size_t)(slash - bucket_and_prefix) : strlen(bucket_and_prefix);
	if (!valid_bucket(bucket_and_prefix, bl))
		return al_error_set(AL_EINVAL, "gs://%s: \"%.*s\" is not a valid bucket name", bucket_and_prefix,
			(int)bl, bucket_and_prefix);
	if (!(g = calloc(1, sizeof(*g))))
		return al_error_set(AL_ENOMEM, "out of memory");
	if (!(g->bucket = strndup(bucket_and_prefix, bl)) || !(g->ebucket = al_http_escape(g->bucket)))
		goto nomem;
	slash = slash ? slash + strspn(slash, "/") : "";
	pl = strlen(slash);
	while (pl && slash[pl - 1] == '/')
		pl--;
	if (!(g->prefix = strndup(slash, pl)))
		goto nomem;
	if (emu && *emu) {
		if ((rc = emulator_origin(&g->origin, emu)) != 0)
			goto cleanup;
	} else {
		if (!(g->origin = strdup(DEFAULT_ORIGIN)))
			goto nomem;
		if ((rc = al_auth_new(&g->auth, NULL)) != 0) {
			char *why = strdup(al_error_last());
			rc = al_error_set(rc, "GCS blob store gs://%s: no Google credentials: %s",
				bucket_and_prefix, why ? why : "");
			free(why);
			goto cleanup;
		}
		if ((qp = al_auth_quota_project(g->auth)) &&
			asprintf(&g->user_project, "x-goog-user-project: %s", qp) < 0) {
			g->user_project = NULL;
			goto nomem;
		}
	}
	/* 8 MiB chunks and uploads: give each attempt time. */
	opt.timeout_ms = 600000;
	opt.stall_ms = AL__BLOBS_STALL_MS;
	opt.max_stalls = AL__BLOBS_MAX_STALLS;
	opt.max_idle = AL__BLOBS_MAX_IDLE;
	if ((rc = al_http_new(&g->http, &opt)) != 0)
		goto cleanup;
	g->base.version = AL_BLOBS_BACKEND_VERSION;
	g->base.name = "gs";
	g->base.put = gcs_put;
	g->base.fetch = gcs_fetch;
	g->base.exists = al__blobs_exists;
	g->base.stat = gcs_stat;
	g->base.local_path = al__blobs_no_local_path;
	g->base.uri = gcs_uri;
	g->base.free = gcs_free;
	*out = &g->base;
	g = NULL;
	goto cleanup;
nomem:
	rc = al_error_set(AL_ENOMEM, "out of memory opening the GCS blob store");
cleanup:
	gcs_free(g ? &g->base : NULL);
	return rc;
}
