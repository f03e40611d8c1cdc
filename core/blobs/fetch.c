/* aletheia: reading objects named by URL (imported datasets): http(s) with or without Range
 * support, s3:// signed with SigV4 from the AWS_* environment, gs:// through the GCS JSON API. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <isa-l/crc.h>
#include <openssl/evp.h>
#include "core/net/auth.h"
#include "aletheia/fetch.h"
#include "core/net/http.h"
#include "core/net/sigv4.h"
#include "core/blobs/blobs_internal.h"

#define STREAM_CHUNK ((uint64_t)8 << 20)  /* ranged GETs of al_fetcher_stream */
#define MAX_ORIGINS 64                    /* remembered Range support, per origin */
#define MAX_HOPS 10                       /* redirects followed */
#define REDIRECT_TTL_US (60 * 1000000LL)  /* a redirect's target is reused this long */
/* Every request here reads: safe to repeat, and nobody needs it once the daemon stops. */
#define READ_FLAGS (AL_HTTP_IDEMPOTENT | AL_HTTP_ABANDON)
#define STREAM_TRIES 3                    /* reads of an object whose bytes miss its checksum */

enum { S_HTTP, S_S3, S_GS };

/* What an http(s) origin did with Range: 0 unknown, 1 honoured, -1 ignored. */
typedef struct {
	char *origin;
	int ranges;
} origin_note;

/* Where an http(s) URL redirected to (download links often point at a CDN). */
typedef struct {
	char *from, *to;
	int64_t at_us;
} redirect_note;

struct al_fetcher {
	al_http *http;
	pthread_mutex_t lock;     /* guards auth, notes, redirects */
	al_auth *auth;            /* gs:// without an emulator; created on first use */
	origin_note notes[MAX_ORIGINS];
	size_t n_notes, next_note;
	redirect_note redirects[MAX_ORIGINS];
	size_t n_redirects, next_redirect;
};

/* A parsed URL: what to request and how to sign it. */
typedef struct {
	int scheme;
	const char *url;          /* as given, for messages */
	char *bucket, *key;       /* s3, gs: raw, unencoded */
	char *origin;             /* http(s): "scheme://authority"; s3: the endpoint */
	char *host;               /* s3: the Host header curl sends */
	char *path_base;          /* s3: "/BUCKET" (path-style) or "" */
	char *region;
	char *eff;                /* http(s): where redirects led, or NULL */
} target;

int al_fetcher_new(al_fetcher **out)
{
	al_fetcher *f;
	al_http_options opt = AL_HTTP_OPTIONS_INIT;
	int rc;

	*out = NULL;
	if (!(f = calloc(1, sizeof(*f))))
		return al_error_set(AL_ENOMEM, "out of memory creating a URL fetcher");
	/* Whole objects from servers without Range support can be large: give each attempt time. */
	opt.timeout_ms = 600000;
	opt.stall_ms = AL__BLOBS_STALL_MS;
	opt.max_stalls = AL__BLOBS_MAX_STALLS;
	opt.max_idle = AL__BLOBS_MAX_IDLE;
	if ((rc = al_http_new(&f->http, &opt)) != 0) {
		free(f);
		return rc;
	}
	pthread_mutex_init(&f->lock, NULL);
	*out = f;
	return 0;
}

void al_fetcher_free(al_fetcher *f)
{
	if (!f)
		return;
	al_http_free(f->http);
	al_auth_free(f->auth);
	for (size_t i = 0; i < f->n_notes; i++)
		free(f->notes[i].origin);
	for (size_t i = 0; i < f->n_redirects; i++) {
		free(f->redirects[i].from);
		free(f->redirects[i].to);
	}
	pthread_mutex_destroy(&f->lock);
	free(f);
}


static void target_dispose(target *t)
{
	free(t->bucket);
	free(t->key);
	free(t->origin);
	free(t->host);
	free(t->path_base);
	free(t->region);
	free(t->eff);
	memset(t, 0, sizeof(*t));
}

/* "BUCKET/KEY" after the scheme into t->bucket and t->key, both non-empty. */
static int split_bucket(target *t, const char *rest)
{
	const char *slash = strchr(rest, '/');
	if (!slash || slash == rest || !slash[1])
		return al_error_set(AL_EINVAL, "%s: expected %s://BUCKET/KEY", t->url,
			t->scheme == S_S3 ? "s3" : "gs");
	if (!(t->bucket = strndup(rest, (size_t)(slash - rest))) || !(t->key = strdup(slash + 1)))
		return al_error_set(AL_ENOMEM, "out of memory");
	return 0;
}

/* The S3 endpoint: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (path-style), else virtual-hosted
 * https://BUCKET.s3.REGION.amazonaws.com. As in blobs_s3.c, Host must match what curl sends. */
static int s3_endpoint(target *t)
{
	const char *ep = al__env("AWS_ENDPOINT_URL_S3"), *auth, *end;
	int https;
	size_t n;

	if (!ep)
		ep = al__env("AWS_ENDPOINT_URL");
	if (!(t->region = strdup(al__env("AWS_REGION") ? al__env("AWS_REGION") : "us-east-1")))
		return al_error_set(AL_ENOMEM, "out of memory");
	if (!ep) {
		if (asprintf(&t->host, "%s.s3.%s.amazonaws.com", t->bucket, t->region) < 0 ||
			asprintf(&t->origin, "https://%s", t->host) < 0 || !(t->path_base = strdup(""))) {
			t->origin = NULL;
			return al_error_set(AL_ENOMEM, "out of memory");
		}
		return 0;
	}
	if (strncmp(ep, "http://", 7) == 0)
		auth = ep + 7, https = 0;
	else if (strncmp(ep, "https://", 8) == 0)
		auth = ep + 8, https = 1;
	else
		return al_error_set(AL_EINVAL, "S3 endpoint \"%s\" is not an http:// or https:// URL", ep);
	end = auth + strcspn(auth, "/?#");
	if (end == auth || (*end && strcmp(end, "/") != 0))
		return al_error_set(AL_EINVAL, "S3 endpoint \"%s\": expected http[s]://HOST[:PORT]", ep);
	n = (size_t)(end - auth);
	if (!https && n > 3 && strncmp(end - 3, ":80", 3) == 0)
		n -= 3;
	if (https && n > 4 && strncmp(end - 4, ":443", 4) == 0)
		n -= 4;
	if (!(t->host = strndup(auth, n)) ||
		asprintf(&t->origin, "%s://%s", https ? "https" : "http", t->host) < 0 ||
		asprintf(&t->path_base, "/%s", t->bucket) < 0) {
		t->origin = t->path_base = NULL;
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	return 0;
}

static int target_parse(target *t, const char *url)
{
	memset(t, 0, sizeof(*t));
	t->url = url ? url : "(null)";
	if (!url)
		return al_error_set(AL_EINVAL, "no URL given");
	if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
		const char *auth = strstr(url, "://") + 3;
		size_t n = strcspn(auth, "/?#");
		t->scheme = S_HTTP;
		if (n == 0)
			return al_error_set(AL_EINVAL, "%s: the URL has no host", url);
		if (!(t->origin = strndup(url, (size_t)(auth + n - url))))
			return al_error_set(AL_ENOMEM, "out of memory");
		return 0;
	}
	if (strncmp(url, "s3://", 5) == 0) {
		int rc;
		t->scheme = S_S3;
		if ((rc = split_bucket(t, url + 5)) != 0)
			return rc;
		if (!al__env("AWS_ACCESS_KEY_ID") || !al__env("AWS_SECRET_ACCESS_KEY"))
			return al_error_set(AL_EACCES, "%s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
				"to read from S3", url);
		return s3_endpoint(t);
	}
	if (strncmp(url, "gs://", 5) == 0) {
		t->scheme = S_GS;
		return split_bucket(t, url + 5);
	}
	return al_error_set(AL_EINVAL, "%s: unsupported URL (expected http://, https://, s3:// or gs://)",
		url);
}

/* The GCS JSON API object URL (media when media is set); the object name is one segment. */
static int gs_url(char **out, target *t, int media)
{
	const char *emu = al__env("STORAGE_EMULATOR_HOST");
	char *b = al_http_escape(t->bucket), *o = al_http_escape(t->key);
	int rc = 0;

	*out = NULL;
	if (!b || !o || asprintf(out, "%s%s/storage/v1/b/%s/o/%s%s",
		emu && !strstr(emu, "://") ? "http://" : "", emu ? emu : "https://storage.googleapis.com",
		b, o, media ? "?alt=media" : "") < 0) {
		*out = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory");
	}
	free(b);
	free(o);
	return rc;
}

static int gs_token(char **out, al_fetcher *f)
{
	int rc = 0;
	*out = NULL;
	pthread_mutex_lock(&f->lock);
	if (!f->auth)
		rc = al_auth_new(&f->auth, NULL);
	pthread_mutex_unlock(&f->lock);
	return rc ? rc : al_auth_token(out, f->auth);
}

static int is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* loc (a Location value) against base: absolute, scheme-relative, path-absolute or relative. */
static char *resolve_location(const char *base, const char *loc)
{
	const char *auth = strstr(base, "://"), *path, *q;
	char *out = NULL;

	if (strncmp(loc, "http://", 7) == 0 || strncmp(loc, "https://", 8) == 0)
		return strdup(loc);
	if (!auth || strstr(loc, "://"))
		return NULL;   /* another scheme: not followed */
	auth += 3;
	path = auth + strcspn(auth, "/?#");
	if (strncmp(loc, "//", 2) == 0) {
		if (asprintf(&out, "%.*s%s", (int)(auth - 2 - base), base, loc) < 0)
			out = NULL;
	} else if (*loc == '/') {
		if (asprintf(&out, "%.*s%s", (int)(path - base), base, loc) < 0)
			out = NULL;
	} else {
		q = path + strcspn(path, "?#");
		while (q > path && q[-1] != '/')
			q--;
		if (asprintf(&out, "%.*s%s%s", (int)(q - base), base, q == path ? "/" : "", loc) < 0)
			out = NULL;
	}
	return out;
}

static void set_origin(target *t)
{
	const char *u = t->eff ? t->eff : t->url, *auth = strstr(u, "://");
	char *o;
	if (!auth)
		return;
	auth += 3;
	if ((o = strndup(u, (size_t)(auth + strcspn(auth, "/?#") - u)))) {
		free(t->origin);
		t->origin = o;
	}
}

/* Follows t's redirects with HEADs to where the object is (t->eff), and remembers it. */
static int follow(al_fetcher *f, target *t)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	char *cur = strdup(t->eff ? t->eff : t->url), *next;
	int rc = 0;

	for (int hops = 0; cur; hops++) {
		al_http_stream io = AL_HTTP_STREAM_INIT;
		const char *hdrs[] = {"Accept-Encoding: identity", NULL};
		io.header = "Location";
		if ((rc = al_http_request_stream(&resp, f->http, "HEAD", cur, hdrs, &io,
			READ_FLAGS)) != 0) {
			free(io.header_value);
			goto cleanup;
		}
		if (!is_redirect(resp.status) || !io.header_value) {
			free(io.header_value);
			break;
		}
		if (hops >= MAX_HOPS) {
			free(io.header_value);
			rc = al_error_set(AL_EIO, "%s: more than %d redirects", t->url, MAX_HOPS);
			goto cleanup;
		}
		next = resolve_location(cur, io.header_value);
		free(io.header_value);
		if (!next) {
			rc = al_error_set(AL_EIO, "%s: redirected to a URL that cannot be read", t->url);
			goto cleanup;
		}
		free(cur);
		cur = next;
	}
	if (!cur) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	free(t->eff);
	t->eff = cur;
	cur = NULL;
	set_origin(t);
	pthread_mutex_lock(&f->lock);
	{
		size_t i;
		for (i = 0; i < f->n_redirects; i++)
			if (f->redirects[i].from && strcmp(f->redirects[i].from, t->url) == 0)
				break;
		if (i == f->n_redirects)
			i = f->n_redirects < MAX_ORIGINS ? f->n_redirects++ :
				f->next_redirect++ % MAX_ORIGINS;
		free(f->redirects[i].from);
		free(f->redirects[i].to);
		/* Out of memory here only means the next call follows the redirect again. */
		f->redirects[i].from = strdup(t->url);
		f->redirects[i].to = strdup(t->eff);
		f->redirects[i].at_us = al_now_us();
	}
	pthread_mutex_unlock(&f->lock);
cleanup:
	free(cur);
	al_http_response_dispose(&resp);
	return rc;
}

/* A redirect of t->url followed lately: start there. */
static void recall_redirect(al_fetcher *f, target *t)
{
	int64_t now = al_now_us();
	if (t->scheme != S_HTTP)
		return;
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->n_redirects; i++)
		if (f->redirects[i].from && f->redirects[i].to && strcmp(f->redirects[i].from, t->url) == 0 &&
			now - f->redirects[i].at_us < REDIRECT_TTL_US) {
			t->eff = strdup(f->redirects[i].to);
			break;
		}
	pthread_mutex_unlock(&f->lock);
	if (t->eff)
		set_origin(t);
}

/* Sends one request for t: extra is an optional "Range: …" header; media selects a GCS object's
 * content rather than its metadata. 0 once the server answered, whatever the status. */
static int fetch_send(al_http_response *resp, al_fetcher *f, target *t, const char *method,
	const char *extra, int media, al_http_stream *io)
{
	const char *hdrs[16];
	char *url = NULL, *path = NULL, *epath = NULL, **sig = NULL, *token = NULL, *bearer = NULL;
	size_t n = 0;
	int rc = 0;

	/* Hashes are of the stored bytes: no transfer compression. */
	hdrs[n++] = "Accept-Encoding: identity";
	if (extra)
		hdrs[n++] = extra;
	switch (t->scheme) {
	case S_HTTP:
		break;
	case S_S3: {
		const char *signed_hdrs[] = {extra, NULL};
		al_sigv4_credentials cred = {al__env("AWS_ACCESS_KEY_ID"), al__env("AWS_SECRET_ACCESS_KEY"),
			al__env("AWS_SESSION_TOKEN"), t->region, "s3"};
		al_sigv4_request sr = {method, t->host, NULL, NULL, signed_hdrs, AL_SIGV4_EMPTY_SHA256};
		if (asprintf(&path, "%s/%s", t->path_base, t->key) < 0) {
			path = NULL;
			goto nomem;
		}
		sr.path = path;
		if ((rc = al_sigv4_uri_encode(&epath, path, 1)) != 0)
			goto cleanup;
		if (asprintf(&url, "%s%s", t->origin, epath) < 0) {
			url = NULL;
			goto nomem;
		}
		if (!cred.access_key || !cred.secret_key) {
			rc = al_error_set(AL_EACCES, "%s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
				"to read from S3", t->url);
			goto cleanup;
		}
		if ((rc = al_sigv4_sign(&sig, &sr, &cred, (int64_t)time(NULL))) != 0)
			goto cleanup;
		for (size_t i = 0; sig[i] && n < 15; i++)
			hdrs[n++] = sig[i];
		break;
	}
	case S_GS:
		if ((rc = gs_url(&url, t, media)) != 0)
			goto cleanup;
		if (!al__env("STORAGE_EMULATOR_HOST")) {
			if ((rc = gs_token(&token, f)) != 0)
				goto cleanup;
			if (asprintf(&bearer, "Authorization: Bearer %s", token) < 0) {
				bearer = NULL;
				goto nomem;
			}
			hdrs[n++] = bearer;
		}
		break;
	}
	hdrs[n] = NULL;
	if (!url && !(url = strdup(t->eff ? t->eff : t->url)))
		goto nomem;
	for (int hops = 0;; hops++) {
		/* reads only: nobody needs them once the daemon stops */
		rc = io ? al_http_request_stream(resp, f->http, method, url, hdrs, io, READ_FLAGS) :
			al_http_request(resp, f->http, method, url, hdrs, NULL, 0, READ_FLAGS);
		if (rc || t->scheme != S_HTTP || !is_redirect(resp->status))
			break;
		/* The answer's Location was not captured (one header per request): ask again. */
		if (hops >= MAX_HOPS) {
			rc = al_error_set(AL_EIO, "%s: more than %d redirects", t->url, MAX_HOPS);
			break;
		}
		if ((rc = follow(f, t)) != 0)
			break;
		free(url);
		if (!(url = strdup(t->eff)))
			goto nomem;
	}
	goto cleanup;
nomem:
	rc = al_error_set(AL_ENOMEM, "out of memory building a request for %s", t->url);
cleanup:
	al_sigv4_headers_free(sig);
	if (token)
		memset(token, 0, strlen(token));
	if (bearer)
		memset(bearer, 0, strlen(bearer));
	free(token);
	free(bearer);
	free(url);
	free(epath);
	free(path);
	return rc;
}

/* One line for an unexpected answer. */
static int status_error(target *t, const char *what, long status)
{
	int rc = status == 404 ? AL_ENOTFOUND : status == 401 || status == 403 ? AL_EACCES :
		status == 416 ? AL_EINVAL : AL_EIO;
	return al_error_set(rc, "%s %s: HTTP %ld%s", what, t->url, status,
		status == 404 ? " (no such object)" : status == 401 || status == 403 ?
		" (access denied: check the credentials)" : "");
}

static int parse_u64(uint64_t *out, const char *s)
{
	char *end;
	unsigned long long v;
	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

/* "bytes S-E/T" (T may be "*"). */
static int parse_content_range(uint64_t *start, uint64_t *end, uint64_t *total, const char *v)
{
	unsigned long long s, e;
	char tot[32] = "";
	if (!v || sscanf(v, "bytes %llu-%llu/%31s", &s, &e, tot) != 3 || e < s)
		return -1;
	*start = s;
	*end = e;
	if (parse_u64(total, tot) != 0)
		*total = UINT64_MAX;
	return 0;
}

/* The Range support remembered for an http(s) origin. */
static int origin_ranges(al_fetcher *f, target *t)
{
	int r = 0;
	if (t->scheme != S_HTTP)
		return 1;   /* S3 and GCS honour Range */
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->n_notes; i++)
		if (strcmp(f->notes[i].origin, t->origin) == 0)
			r = f->notes[i].ranges;
	pthread_mutex_unlock(&f->lock);
	return r;
}

static void note_ranges(al_fetcher *f, target *t, int ranges)
{
	char *copy;
	if (t->scheme != S_HTTP)
		return;
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->n_notes; i++)
		if (strcmp(f->notes[i].origin, t->origin) == 0) {
			f->notes[i].ranges = ranges;
			pthread_mutex_unlock(&f->lock);
			return;
		}
	if ((copy = strdup(t->origin))) {
		/* A small table; when full, the slots are reused in turn. */
		size_t i = f->n_notes < MAX_ORIGINS ? f->n_notes++ : f->next_note++ % MAX_ORIGINS;
		free(f->notes[i].origin);
		f->notes[i].origin = copy;
		f->notes[i].ranges = ranges;
	}
	pthread_mutex_unlock(&f->lock);
}

/* Size from a one-byte ranged GET, for servers whose HEAD gives none (or refuse HEAD). */
static int size_by_get(uint64_t *size, al_fetcher *f, target *t)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	uint64_t s, e;
	int rc;

	io.header = "Content-Range";
	if ((rc = fetch_send(&resp, f, t, "GET", "Range: bytes=0-0", 1, &io)) != 0)
		goto cleanup;
	if (resp.status == 206 && parse_content_range(&s, &e, size, io.header_value) == 0 &&
		*size != UINT64_MAX)
		goto cleanup;
	if (resp.status == 416 && io.header_value && sscanf(io.header_value, "bytes */%llu",
		(unsigned long long *)size) == 1)
		goto cleanup;   /* an empty object */
	if (resp.status == 200) {
		*size = resp.body.len;   /* no Range support: the whole (bounded) body came */
		goto cleanup;
	}
	rc = resp.status / 100 == 2 ? al_error_set(AL_EIO, "GET %s: no object size in the answer",
		t->url) : status_error(t, "GET", resp.status);
cleanup:
	free(io.header_value);
	al_http_response_dispose(&resp);
	return rc;
}

/* The checksums a server gives of a whole object, to check a stream against (README "Importing
 * files"): S3's ETag where it is the MD5 (blobs.c al__s3_etag_is_md5), GCS's md5Hash and crc32c,
 * an http(s) server's Content-MD5, Digest (RFC 3230), Repr-Digest (RFC 9530) or x-goog-hash. */
typedef struct {
	int md5, sha256, crc32c;            /* which ones are known */
	unsigned char md5_v[16], sha256_v[32];
	uint32_t crc32c_v;
	char from[64];                      /* where they came from, for messages */
} object_sums;

/* Base64 (padded or not) into exactly len bytes; -1 when it is not that. */
static int b64_exact(unsigned char *out, size_t len, const char *in, size_t n)
{
	unsigned char buf[96];
	char text[132];
	int got;

	while (n && (in[n - 1] == '=' || in[n - 1] == ' '))
		n--;
	if (n == 0 || n + 4 > sizeof(text))
		return -1;
	memcpy(text, in, n);
	while (n % 4)
		text[n++] = '=';
	text[n] = '\0';
	if ((got = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)n)) < 0)
		return -1;
	/* EVP_DecodeBlock counts the padding as zero bytes */
	got -= (int)(strlen(text) - strcspn(text, "="));
	if (got != (int)len)
		return -1;
	memcpy(out, buf, len);
	return 0;
}

static int hexval(int ch)
{
	return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 :
		ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* "alg=value, alg=:value:" lists (Digest, Repr-Digest, x-goog-hash): md5, sha-256, crc32c. */
static void sums_from_list(object_sums *o, const char *list, const char *header)
{
	const char *p = list;
	while (p && *p) {
		const char *item = p + strspn(p, " \t,"), *end = item + strcspn(item, ","), *eq;
		const char *v, *ve;
		p = *end ? end + 1 : end;
		if (!(eq = memchr(item, '=', (size_t)(end - item))))
			continue;
		v = eq + 1;
		ve = end;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (ve > v && *v == ':' && ve[-1] == ':')
			v++, ve--;     /* RFC 9530 byte sequences */
		if (eq - item == 3 && strncasecmp(item, "md5", 3) == 0 &&
			b64_exact(o->md5_v, 16, v, (size_t)(ve - v)) == 0)
			o->md5 = 1;
		else if (eq - item == 7 && strncasecmp(item, "sha-256", 7) == 0 &&
			b64_exact(o->sha256_v, 32, v, (size_t)(ve - v)) == 0)
			o->sha256 = 1;
		else if (eq - item == 6 && strncasecmp(item, "crc32c", 6) == 0) {
			unsigned char be[4];
			if (b64_exact(be, 4, v, (size_t)(ve - v)) == 0) {
				o->crc32c = 1;
				o->crc32c_v = (uint32_t)be[0] << 24 | (uint32_t)be[1] << 16 |
					(uint32_t)be[2] << 8 | be[3];
			}
		} else {
			continue;
		}
		snprintf(o->from, sizeof(o->from), "%s", header);
	}
}

/* The checksums in a HEAD's captured headers (see head_object). */
static void sums_from_head(object_sums *o, const target *t, char *const *v)
{
	memset(o, 0, sizeof(*o));
	if (t->scheme == S_S3) {
		/* a single-part upload's ETag, its MD5 (a multipart one's cannot be checked without
		 * knowing its part size) */
		const char *e = v[0] ? v[0] + strspn(v[0], "W/\"") : NULL;
		if (e && strspn(e, "0123456789abcdefABCDEF") == 32 && (e[32] == '"' || !e[32]) &&
			al__s3_etag_is_checksum(v[5], v[6])) {
			for (int i = 0; i < 16; i++)
				o->md5_v[i] = (unsigned char)(hexval(e[2 * i]) * 16 + hexval(e[2 * i + 1]));
			o->md5 = 1;
			snprintf(o->from, sizeof(o->from), "ETag");
		}
		return;
	}
	/* http(s): an ETag is opaque there */
	if (v[1] && b64_exact(o->md5_v, 16, v[1], strlen(v[1])) == 0) {
		o->md5 = 1;
		snprintf(o->from, sizeof(o->from), "Content-MD5");
	}
	sums_from_list(o, v[2], "Digest");
	sums_from_list(o, v[3], "Repr-Digest");
	sums_from_list(o, v[4], "x-goog-hash");
}

static int stat_gs(uint64_t *size, char **etag, object_sums *sums, al_fetcher *f, target *t)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	cJSON *j = NULL;
	const cJSON *sz, *gen;
	const char *md5, *crc;
	int rc;

	if ((rc = fetch_send(&resp, f, t, "GET", NULL, 0, NULL)) != 0)
		goto cleanup;
	if (resp.status != 200) {
		rc = status_error(t, "GET", resp.status);
		goto cleanup;
	}
	j = resp.body.ptr ? cJSON_Parse(resp.body.ptr) : NULL;
	sz = cJSON_GetObjectItemCaseSensitive(j, "size");
	gen = cJSON_GetObjectItemCaseSensitive(j, "generation");
	if (!cJSON_IsString(sz) || parse_u64(size, sz->valuestring) != 0) {
		rc = al_error_set(AL_EIO, "GET %s: no object size in the metadata", t->url);
		goto cleanup;
	}
	if (sums) {
		/* GCS keeps a CRC32C of every object, and an MD5 of those not composed */
		md5 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "md5Hash"));
		crc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "crc32c"));
		memset(sums, 0, sizeof(*sums));
		if (md5 && b64_exact(sums->md5_v, 16, md5, strlen(md5)) == 0)
			sums->md5 = 1;
		if (crc) {
			char list[64];
			snprintf(list, sizeof(list), "crc32c=%s", crc);
			sums_from_list(sums, list, "metadata");
		}
		snprintf(sums->from, sizeof(sums->from), "metadata");
	}
	if (etag && cJSON_IsString(gen) && !(*etag = strdup(gen->valuestring)))
		rc = al_error_set(AL_ENOMEM, "out of memory");
cleanup:
	cJSON_Delete(j);
	al_http_response_dispose(&resp);
	return rc;
}

/* The size, version tag and checksums (each may be NULL) of t's object: one HEAD, or for a server
 * whose HEAD gives no size a one-byte GET (no checksums then). */
static int stat_target(uint64_t *size, char **etag, object_sums *sums, al_fetcher *f, target *t)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	static const char *const wanted[] = {"ETag", "Content-MD5", "Digest", "Repr-Digest",
		"x-goog-hash", "x-amz-server-side-encryption",
		"x-amz-server-side-encryption-customer-algorithm"};
	int rc;

	if (etag)
		*etag = NULL;
	if (sums)
		memset(sums, 0, sizeof(*sums));
	if (t->scheme == S_GS)
		return stat_gs(size, etag, sums, f, t);
	io.header = "Content-Length";
	for (size_t i = 0; i < sizeof(wanted) / sizeof(*wanted); i++)
		io.capture[i] = wanted[i];
	if ((rc = fetch_send(&resp, f, t, "HEAD", NULL, 0, &io)) != 0)
		goto cleanup;
	if (resp.status == 404) {
		rc = status_error(t, "HEAD", resp.status);
		goto cleanup;
	}
	if (resp.status != 200 || parse_u64(size, io.header_value) != 0) {
		/* Refused HEAD (405, a presigned GET URL's 403) or no length: ask with a GET. */
		rc = size_by_get(size, f, t);
		goto cleanup;
	}
	if (sums)
		sums_from_head(sums, t, io.captured);
	if (etag && io.captured[0] && !(*etag = strdup(io.captured[0])))
		rc = al_error_set(AL_ENOMEM, "out of memory");
cleanup:
	al_http_stream_dispose(&io);
	al_http_response_dispose(&resp);
	return rc;
}

int al_fetcher_stat(uint64_t *size_out, char **etag_out, al_fetcher *f, const char *url)
{
	target t;
	int rc;

	*size_out = 0;
	if (etag_out)
		*etag_out = NULL;
	if ((rc = target_parse(&t, url)) == 0) {
		recall_redirect(f, &t);
		rc = stat_target(size_out, etag_out, NULL, f, &t);
	}
	if (rc && etag_out) {
		free(*etag_out);
		*etag_out = NULL;
	}
	target_dispose(&t);
	return rc;
}

/* The whole object into fd from offset 0 (servers without Range support); *got its size. */
static int get_whole(uint64_t *got, al_fetcher *f, target *t, int fd)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	uint64_t size = 0;
	int rc;

	/* Without a Content-Range the expected length comes from a HEAD. */
	if ((rc = stat_target(&size, NULL, NULL, f, t)) != 0)
		return rc;
	io.dst_fd = fd;
	io.dst_max = size;
	io.dst_expect = size;   /* a body cut short is retried by the HTTP client */
	if ((rc = fetch_send(&resp, f, t, "GET", NULL, 1, &io)) == 0 && resp.status / 100 != 2)
		rc = status_error(t, "GET", resp.status);
	*got = io.dst_written;
	al_http_response_dispose(&resp);
	return rc;
}

/* Bytes [off, off+len) into fd at ranged_at; when the server sends the whole object instead, it
 * lands at offset 0 and *whole is set. *got: the bytes written. */
static int get_range(uint64_t *got, int *whole, al_fetcher *f, target *t, uint64_t off,
	uint64_t len, int fd, uint64_t ranged_at)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	char range[64];
	uint64_t s, e, total;
	int rc = 0, known = origin_ranges(f, t);

	*got = 0;
	*whole = 0;
	if (known < 0)
		goto whole;
	snprintf(range, sizeof(range), "Range: bytes=%llu-%llu", (unsigned long long)off,
		(unsigned long long)(off + len - 1));
	io.header = "Content-Range";
	io.dst_fd = fd;
	io.dst_off = ranged_at;
	io.dst_max = len;
	rc = fetch_send(&resp, f, t, "GET", range, 1, &io);
	if (rc != 0) {
		/* No Content-Range seen: perhaps a 200 with the whole, longer object. */
		if (rc == AL_EIO && !io.header_value && known == 0)
			goto whole;
		goto cleanup;
	}
	if (resp.status == 200) {
		note_ranges(f, t, -1);
		if (ranged_at == 0 && off == 0) {
			/* The whole object, already at offset 0; curl checked its length. */
			*got = io.dst_written;
			*whole = 1;
			goto cleanup;
		}
		goto whole;
	}
	if (resp.status == 416) {
		rc = al_error_set(AL_EINVAL, "GET %s: bytes %llu-%llu are past the end of the object",
			t->url, (unsigned long long)off, (unsigned long long)(off + len - 1));
		goto cleanup;
	}
	if (resp.status != 206) {
		rc = status_error(t, "GET", resp.status);
		goto cleanup;
	}
	note_ranges(f, t, 1);
	if (parse_content_range(&s, &e, &total, io.header_value) != 0 || s != off ||
		e - s >= len) {
		rc = al_error_set(AL_EIO, "GET %s: unexpected Content-Range \"%s\" for bytes %llu-%llu",
			t->url, io.header_value ? io.header_value : "", (unsigned long long)off,
			(unsigned long long)(off + len - 1));
		goto cleanup;
	}
	/* The HTTP client retried bodies shorter than their Content-Range. */
	*got = io.dst_written;
	goto cleanup;
whole:
	al_error_clear();
	if ((rc = get_whole(got, f, t, fd)) == 0) {
		*whole = 1;
		note_ranges(f, t, -1);
	}
cleanup:
	free(io.header_value);
	al_http_response_dispose(&resp);
	return rc;
}

int al_fetcher_fetch(al_fetcher *f, const char *url, uint64_t off, uint64_t len, int fd,
	int *whole)
{
	target t;
	uint64_t got = 0;
	int rc;

	*whole = 0;
	if ((rc = target_parse(&t, url)) != 0)
		goto cleanup;
	recall_redirect(f, &t);
	if (off + len < off) {
		rc = al_error_set(AL_EINVAL, "GET %s: range overflows", url);
		goto cleanup;
	}
	if (len > 0)
		rc = get_range(&got, whole, f, &t, off, len, fd, off);
cleanup:
	target_dispose(&t);
	return rc;
}

/* A scratch file for one chunk (or a whole object) on its way to the sink. */
static int scratch_file(int *fd)
{
	const char *dir = al__env("TMPDIR") ? al__env("TMPDIR") : "/tmp";
	char *tmpl = NULL;

	if ((*fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) >= 0)
		return 0;
	if (asprintf(&tmpl, "%s/aletheia-fetch-XXXXXX", dir) < 0)
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((*fd = mkostemp(tmpl, O_CLOEXEC)) >= 0)
		unlink(tmpl);
	free(tmpl);
	return *fd >= 0 ? 0 : al_error_set_errno(AL_EIO, errno, "cannot create a scratch file in %s",
		dir);
}

/* The checksums of what a stream received, as far as the server gave some to compare with. */
typedef struct {
	const object_sums *want;
	EVP_MD_CTX *md5, *sha256;
	uint32_t crc32c;
} stream_sums;

static int sums_start(stream_sums *ss, const object_sums *want)
{
	memset(ss, 0, sizeof(*ss));
	ss->want = want;
	ss->crc32c = 0xffffffffu;
	if ((want->md5 && (!(ss->md5 = EVP_MD_CTX_new()) ||
		!EVP_DigestInit_ex(ss->md5, EVP_md5(), NULL))) ||
		(want->sha256 && (!(ss->sha256 = EVP_MD_CTX_new()) ||
		!EVP_DigestInit_ex(ss->sha256, EVP_sha256(), NULL))))
		return al_error_set(AL_ENOMEM, "out of memory for checksums");
	return 0;
}

static void sums_update(stream_sums *ss, const void *data, size_t len)
{
	if (ss->md5)
		EVP_DigestUpdate(ss->md5, data, len);
	if (ss->sha256)
		EVP_DigestUpdate(ss->sha256, data, len);
	if (ss->want->crc32c)
		ss->crc32c = crc32_iscsi((unsigned char *)data, (int)len, ss->crc32c);
}

/* 0 when every checksum known matches; else AL_EIO naming the first that does not. */
static int sums_check(stream_sums *ss, const char *url)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	const char *bad = NULL;

	if (ss->md5 && (!EVP_DigestFinal_ex(ss->md5, md, &n) || memcmp(md, ss->want->md5_v, 16)))
		bad = "MD5";
	else if (ss->sha256 && (!EVP_DigestFinal_ex(ss->sha256, md, &n) ||
		memcmp(md, ss->want->sha256_v, 32)))
		bad = "SHA-256";
	else if (ss->want->crc32c && (ss->crc32c ^ 0xffffffffu) != ss->want->crc32c_v)
		bad = "CRC32C";
	return bad ? al_error_set(AL_EIO, "GET %s: the bytes received do not match the server's %s "
		"(from its %s): damaged on the way", url, bad, ss->want->from) : 0;
}

static void sums_end(stream_sums *ss)
{
	EVP_MD_CTX_free(ss->md5);
	EVP_MD_CTX_free(ss->sha256);
	ss->md5 = ss->sha256 = NULL;
}

/* len bytes of fd from offset 0 to the sink and the checksums. */
static int feed(int fd, uint64_t len, al_fetcher_sink_fn sink, void *ctx, stream_sums *ss,
	const char *url)
{
	static const size_t block = 1 << 20;
	char *buf = malloc(block);
	uint64_t off = 0;
	int rc = 0;

	if (!buf)
		return al_error_set(AL_ENOMEM, "out of memory");
	while (off < len && rc == 0) {
		size_t want = len - off < block ? (size_t)(len - off) : block;
		ssize_t n = pread(fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = al_error_set_errno(AL_EIO, n < 0 ? errno : EIO, "cannot read back %s", url);
			break;
		}
		sums_update(ss, buf, (size_t)n);
		rc = sink(ctx, buf, (size_t)n);
		off += (uint64_t)n;
	}
	free(buf);
	return rc;
}

/* One read of the whole object to the sink; *sums_rc: whether it matched the server's checksums
 * (0, or AL_EIO with the message set), when the server gave any. */
static int stream_once(int *sums_rc, al_fetcher *f, target *t, int fd, al_fetcher_sink_fn sink,
	void *ctx)
{
	object_sums want;
	stream_sums ss;
	uint64_t size = 0, off = 0, got;
	int rc, whole = 0;

	*sums_rc = 0;
	memset(&ss, 0, sizeof(ss));
	if ((rc = stat_target(&size, NULL, &want, f, t)) != 0 || (rc = sums_start(&ss, &want)) != 0)
		goto cleanup;
	/* Chunk by chunk through one scratch file: bounded disk use when Range works. */
	while (off < size && !whole) {
		uint64_t len = size - off < STREAM_CHUNK ? size - off : STREAM_CHUNK;
		if ((rc = get_range(&got, &whole, f, t, off, len, fd, 0)) != 0)
			goto cleanup;
		if (whole) {
			if (got != size) {
				rc = al_error_set(AL_EIO, "GET %s: %llu bytes received, %llu announced",
					t->url, (unsigned long long)got, (unsigned long long)size);
				goto cleanup;
			}
			off = 0;
		} else if (got != len) {
			rc = al_error_set(AL_EIO, "GET %s: %llu bytes received for bytes %llu-%llu (the "
				"object changed?)", t->url, (unsigned long long)got, (unsigned long long)off,
				(unsigned long long)(off + len - 1));
			goto cleanup;
		}
		if ((rc = feed(fd, got, sink, ctx, &ss, t->url)) != 0)
			goto cleanup;
		off += got;
	}
	*sums_rc = sums_check(&ss, t->url);
cleanup:
	sums_end(&ss);
	return rc;
}

int al_fetcher_stream(al_fetcher *f, const char *url, al_fetcher_sink_fn sink, void *ctx)
{
	target t;
	int rc, fd = -1, sums_rc = 0;

	if ((rc = target_parse(&t, url)) != 0 || (rc = scratch_file(&fd)) != 0)
		goto cleanup;
	recall_redirect(f, &t);
	/* Bytes damaged on the way are read again: the object's checksums are asked anew each
	 * time (it may have changed), and the sink starts over. */
	for (int tries = 1;; tries++) {
		if ((rc = stream_once(&sums_rc, f, &t, fd, sink, ctx)) != 0 || sums_rc == 0)
			break;
		if (tries == STREAM_TRIES) {
			char *why = strdup(al_error_last());
			rc = al_error_set(AL_EIO, "%s (%d reads)", why ? why : "damaged on the way",
				STREAM_TRIES);
			free(why);
			break;
		}
		if ((rc = sink(ctx, NULL, 0)) != 0)
			break;
	}
cleanup:
	if (fd >= 0)
		close(fd);
	target_dispose(&t);
	return rc;
}
