/* aletheia: the HTTP client (libcurl easy handles in a pool, so connections are kept alive and
 * reused across threads), with bounded bodies, timeouts and a retry policy. */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "core/net/http.h"
#include "config.h"
#include "core/util.h"

struct al_http {
	al_http_options opt;
	pthread_mutex_t lock; /* guards idle and n_idle */
	CURL **idle;          /* handles with their live connections, ready for reuse */
	size_t n_idle;
	atomic_uint_fast64_t requests, attempts, retries, failures;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int al_http_new(al_http **out, const al_http_options *opts)
{
	al_http *h;

	*out = NULL;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return al_error_set(AL_EIO, "cannot initialise libcurl: %s",
			curl_easy_strerror(global_rc));
	if (opts && opts->version != AL_HTTP_OPTIONS_VERSION)
		return al_error_set(AL_EINVAL, "HTTP options version %u, expected %u", opts->version,
			AL_HTTP_OPTIONS_VERSION);
	h = calloc(1, sizeof(*h));
	if (!h)
		return al_error_set(AL_ENOMEM, "out of memory creating an HTTP client");
	if (opts)
		h->opt = *opts;
	if (h->opt.connect_timeout_ms <= 0)
		h->opt.connect_timeout_ms = 5000;
	if (h->opt.timeout_ms <= 0)
		h->opt.timeout_ms = 30000;
	if (h->opt.max_tries <= 0)
		h->opt.max_tries = 5;
	if (h->opt.backoff_ms <= 0)
		h->opt.backoff_ms = 100;
	if (h->opt.backoff_max_ms <= 0)
		h->opt.backoff_max_ms = 5000;
	if (h->opt.max_body == 0)
		h->opt.max_body = (size_t)64 << 20;
	if (h->opt.max_idle == 0)
		h->opt.max_idle = 8;
	if (h->opt.stall_ms < 0)
		h->opt.stall_ms = 0;
	if (h->opt.max_stalls <= 0)
		h->opt.max_stalls = 3;
	h->idle = calloc(h->opt.max_idle, sizeof(*h->idle));
	if (!h->idle) {
		free(h);
		return al_error_set(AL_ENOMEM, "out of memory creating an HTTP client");
	}
	pthread_mutex_init(&h->lock, NULL);
	*out = h;
	return 0;
}

void al_http_free(al_http *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n_idle; i++)
		curl_easy_cleanup(h->idle[i]);
	free(h->idle);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

void al_http_get_stats(al_http_stats *out, al_http *h)
{
	out->requests = atomic_load(&h->requests);
	out->attempts = atomic_load(&h->attempts);
	out->retries = atomic_load(&h->retries);
	out->failures = atomic_load(&h->failures);
}

void al_http_stream_dispose(al_http_stream *io)
{
	if (!io)
		return;
	free(io->header_value);
	io->header_value = NULL;
	for (int i = 0; i < AL_HTTP_CAPTURE_MAX; i++) {
		free(io->captured[i]);
		io->captured[i] = NULL;
	}
}

void al_http_response_dispose(al_http_response *resp)
{
	if (!resp)
		return;
	al_buf_dispose(&resp->body);
	resp->status = 0;
}

/* RFC 3986 unreserved characters, plus the parentheses of Firestore's "(default)". */
static int kept_in_segment(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		(ch && strchr("-._~()", ch));
}

char *al_http_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	char *out, *o;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		n += kept_in_segment(*p) ? 1 : 3;
	out = o = malloc(n + 1);
	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (kept_in_segment(*p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

static CURL *take_handle(al_http *h)
{
	CURL *c = NULL;
	pthread_mutex_lock(&h->lock);
	if (h->n_idle)
		c = h->idle[--h->n_idle];
	pthread_mutex_unlock(&h->lock);
	return c ? c : curl_easy_init();
}

static void give_handle(al_http *h, CURL *c)
{
	pthread_mutex_lock(&h->lock);
	if (h->n_idle < h->opt.max_idle) {
		h->idle[h->n_idle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&h->lock);
	if (c)
		curl_easy_cleanup(c);
}

/* The URL for messages: no user info (may hold a password) and no query (may hold a key, and
 * page tokens are long). */
static void clean_url(char *out, size_t size, const char *url)
{
	const char *scheme = strstr(url, "://"), *host = scheme ? scheme + 3 : url;
	const char *end = host + strcspn(host, "/?#"), *at = NULL;
	size_t n;

	for (const char *p = host; p < end; p++)
		if (*p == '@')
			at = p;
	n = (size_t)(host - url);
	snprintf(out, size, "%.*s%.*s", (int)n, url, (int)strcspn(at ? at + 1 : host, "?#"),
		at ? at + 1 : host);
}

/* Up to 200 bytes of a body for an error message, control characters as spaces. */
static void excerpt(char *out, size_t size, const al_buf *b)
{
	size_t n = 0;
	if (size > 201)
		size = 201;
	for (size_t i = 0; b->ptr && i < b->len && n + 1 < size; i++) {
		unsigned char ch = (unsigned char)b->ptr[i];
		if (ch < 32 || ch == 127) {
			if (n && out[n - 1] == ' ')
				continue;
			ch = ' ';
		}
		out[n++] = (char)ch;
	}
	out[n] = '\0';
}

typedef struct {
	al_buf *buf;
	int rc;   /* al_buf_put's error: AL_ENOSPC past max_body, or AL_ENOMEM */
	/* al_http_request_stream only: */
	al_http_stream *io;
	CURL *c;
	int to_fd;          /* 0 undecided, 1 into io->dst_fd, -1 into buf */
	uint64_t read_pos;  /* request body bytes handed to curl this attempt */
	char why[160];      /* set with rc for failures other than al_buf_put's */
	uint64_t range_len; /* bytes a 206's Content-Range announces (0: none seen) */
	/* Progress of this attempt (on_progress): */
	int abandon;        /* give up once the daemon is stopping */
	int64_t stall_us;   /* 0: no stall detection */
	int64_t moved_us;   /* when a body byte last moved either way */
	curl_off_t moved;   /* body bytes moved so far, both ways */
	int stalled, stopping;
	/* A 2xx body for dst_fd is gathered here and written in pieces of up to WBUF_MAX, each
	 * ending on a WBUF_MAX boundary of the file: curl hands over 16 KiB at a time, and a file
	 * whose page cache is filled by small writes is read back from it at a third of the speed
	 * of one written in large pieces (small folios; README "Benchmarks: S3"). Nobody reads
	 * dst_fd's range before the request returns, so holding bytes back changes nothing else. */
	char *wbuf;
	size_t wlen, wcap;
} sink;

#define WBUF_MAX ((size_t)2 << 20)

/* Writes len bytes at dst_off + dst_written; 0, or sets s->rc and s->why. */
static int write_out(sink *s, const char *p, size_t len)
{
	al_http_stream *io = s->io;
	for (size_t done = 0; done < len;) {
		ssize_t w = pwrite(io->dst_fd, p + done, len - done,
			(off_t)(io->dst_off + io->dst_written));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			s->rc = w < 0 && errno == ENOSPC ? AL_ENOSPC : AL_EIO;
			snprintf(s->why, sizeof(s->why), "cannot write the response body: %s",
				w < 0 ? strerror(errno) : "no progress");
			return -1;
		}
		done += (size_t)w;
		io->dst_written += (uint64_t)w;
	}
	return 0;
}

/* Writes what was gathered; called at each boundary and once the transfer ended. */
static int wbuf_flush(sink *s)
{
	int rc = s->wlen ? write_out(s, s->wbuf, s->wlen) : 0;
	s->wlen = 0;
	return rc;
}

/* A 2xx body into io->dst_fd; decided on the first bytes, once the status is known. */
static size_t to_fd(sink *s, const char *data, size_t n)
{
	al_http_stream *io = s->io;
	size_t total = n;
	if (io->dst_written + s->wlen + n > io->dst_max) {
		s->rc = AL_EIO;
		snprintf(s->why, sizeof(s->why), "response body longer than the %llu bytes expected",
			(unsigned long long)io->dst_max);
		return 0;
	}
	if (!s->wbuf && !s->wcap) {
		/* No larger than the body can be (a small object needs a small buffer). */
		size_t cap = io->dst_max < WBUF_MAX ? (size_t)io->dst_max : WBUF_MAX;
		s->wcap = SIZE_MAX;    /* tried */
		if (cap && (s->wbuf = malloc(cap)) != NULL)
			s->wcap = cap;
	}
	if (!s->wbuf)
		return write_out(s, data, n) ? 0 : n;    /* out of memory: as it comes */
	while (n) {
		uint64_t pos = io->dst_off + io->dst_written + s->wlen;
		/* Up to the next WBUF_MAX boundary of the file, so pieces line up with large folios. */
		size_t room = WBUF_MAX - (size_t)(pos % WBUF_MAX), take;
		if (room > s->wcap - s->wlen)
			room = s->wcap - s->wlen;
		take = n < room ? n : room;
		memcpy(s->wbuf + s->wlen, data, take);
		s->wlen += take;
		data += take;
		n -= take;
		if (take == room && wbuf_flush(s))
			return 0;
	}
	return total;
}

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
	sink *s = arg;
	size_t n = size * nmemb;
	if (s->io && s->io->dst_fd >= 0 && s->to_fd == 0) {
		long status = 0;
		curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &status);
		s->to_fd = status >= 200 && status < 300 ? 1 : -1;
	}
	if (s->to_fd == 1)
		return to_fd(s, data, n);
	if ((s->rc = al_buf_put(s->buf, data, n)) != 0)
		return 0; /* curl aborts the transfer with CURLE_WRITE_ERROR */
	return n;
}

/* Total bytes of a streamed request body: head, the src_fd range, tail. */
static uint64_t body_size(const al_http_stream *io)
{
	return io->src_head_len + io->src_len + io->src_tail_len;
}

/* The request body: io->src_head, then src_len bytes of io->src_fd, then io->src_tail. */
static size_t on_read(char *data, size_t size, size_t nmemb, void *arg)
{
	sink *s = arg;
	al_http_stream *io = s->io;
	uint64_t pos = s->read_pos, head = io->src_head_len, file_end = head + io->src_len;
	size_t want = size * nmemb;
	ssize_t n;

	if (pos < head) {
		n = (ssize_t)(want < head - pos ? want : (size_t)(head - pos));
		memcpy(data, (const char *)io->src_head + pos, (size_t)n);
	} else if (pos < file_end) {
		if (want > file_end - pos)
			want = (size_t)(file_end - pos);
		do
			n = pread(io->src_fd, data, want, (off_t)(io->src_off + pos - head));
		while (n < 0 && errno == EINTR);
		if (n <= 0) {
			s->rc = AL_EIO;
			snprintf(s->why, sizeof(s->why), "cannot read the request body: %s",
				n < 0 ? strerror(errno) : "file shorter than expected");
			return CURL_READFUNC_ABORT;
		}
	} else {
		uint64_t left = body_size(io) - pos;
		n = (ssize_t)(want < left ? want : (size_t)left);
		if (n)
			memcpy(data, (const char *)io->src_tail + (pos - file_end), (size_t)n);
	}
	s->read_pos += (uint64_t)n;
	return (size_t)n;
}

/* Keeps the value of io->header from the last response's header block. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	sink *s = arg;
	size_t n = size * nmemb, name_len;

	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		al_http_stream_dispose(s->io); /* a new response (after a 1xx) */
		s->range_len = 0;
	} else if (n > 14 && strncasecmp(data, "Content-Range:", 14) == 0) {
		unsigned long long a, b;
		if (sscanf(data + 14, " bytes %llu-%llu/", &a, &b) == 2 && b >= a)
			s->range_len = b - a + 1;
	}
	for (int i = -1; i < AL_HTTP_CAPTURE_MAX; i++) {
		const char *name = i < 0 ? s->io->header : s->io->capture[i];
		char **value = i < 0 ? &s->io->header_value : &s->io->captured[i];
		char *end = data + n, *v;
		name_len = name ? strlen(name) : 0;
		if (!name_len || n <= name_len || data[name_len] != ':' ||
			strncasecmp(data, name, name_len) != 0)
			continue;
		v = data + name_len + 1;
		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
			end--;
		if (i >= 0 && *value) {
			/* a header sent again: its values joined, as RFC 9110 reads them */
			char *joined = NULL;
			if (asprintf(&joined, "%s, %.*s", *value, (int)(end - v), v) < 0)
				joined = NULL;
			free(*value);
			*value = joined;
		} else {
			free(*value);
			*value = strndup(v, (size_t)(end - v));
		}
		if (!*value) {
			s->rc = AL_ENOMEM;
			return 0;
		}
	}
	return n;
}

/* A random delay in [d/2, d] for retry number n (0 = first), d = backoff·2^n capped. */
static long backoff_ms(const al_http *h, int n)
{
	static _Thread_local unsigned seed;
	long d = h->opt.backoff_ms;
	for (int i = 0; i < n && d < h->opt.backoff_max_ms; i++)
		d *= 2;
	if (d > h->opt.backoff_max_ms)
		d = h->opt.backoff_max_ms;
	if (!seed)
		seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)&seed ^ (unsigned)clock();
	return d / 2 + (long)(rand_r(&seed) % (unsigned)(d / 2 + 1));
}

/* Called by curl at least once a second: background requests and abandoned reads end early
 * when the daemon stops (util.h al__shutdown_begin), and an attempt whose body bytes stopped
 * moving both ways for the stall time ends instead of waiting for its whole timeout. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
	curl_off_t ulnow)
{
	sink *s = arg;
	int64_t now;
	(void)dltotal, (void)ultotal;
	if (s->abandon && al__shutting_down()) {
		s->stopping = 1;
		return 1;
	}
	if (!s->stall_us)
		return 0;
	now = al__mono_us();
	if (dlnow + ulnow != s->moved) {
		s->moved = dlnow + ulnow;
		s->moved_us = now;
	} else if (now - s->moved_us >= s->stall_us) {
		s->stalled = 1;
		return 1;
	}
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Sets up one exchange on a (reset) handle. */
static CURLcode prepare(CURL *c, long connect_ms, long timeout_ms, const char *method,
	const char *url, struct curl_slist *hdrs, const void *body, size_t body_len, int idempotent,
	sink *s, char *errbuf)
{
	CURLcode rc = CURLE_OK;
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val); } while (0)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	SET(CURLOPT_TIMEOUT_MS, timeout_ms);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	/* JSON answers may come compressed; a body streamed into a file (a blob, a range of one)
	 * is asked for as stored: a Range counts stored bytes, and nothing needs decoding */
	SET(CURLOPT_ACCEPT_ENCODING, s->io && s->io->dst_fd >= 0 ? NULL : "");
	SET(CURLOPT_USERAGENT, "aletheia/" AL_VERSION);
	SET(CURLOPT_HTTPHEADER, hdrs);
	SET(CURLOPT_WRITEFUNCTION, on_data);
	SET(CURLOPT_WRITEDATA, s);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	/* curl silently re-sends a request once when a kept-alive connection dies before any
	 * answer: right for idempotent requests, a blind retry for the others. */
	SET(CURLOPT_FRESH_CONNECT, idempotent ? 0L : 1L);
	if (s->abandon || s->stall_us) {
		SET(CURLOPT_XFERINFOFUNCTION, on_progress);
		SET(CURLOPT_XFERINFODATA, s);
		SET(CURLOPT_NOPROGRESS, 0L);
	}
	if (s->io && s->io->dst_fd >= 0)   /* bulk downloads: fewer, larger writes into the file */
		SET(CURLOPT_BUFFERSIZE, 512L * 1024);
	if (s->io && s->io->src_fd >= 0)
		SET(CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024);
	if (s->io) {
		SET(CURLOPT_HEADERFUNCTION, on_header);
		SET(CURLOPT_HEADERDATA, s);
	}
	if (s->io && s->io->src_fd >= 0) {
		SET(CURLOPT_UPLOAD, 1L);
		SET(CURLOPT_READFUNCTION, on_read);
		SET(CURLOPT_READDATA, s);
		SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)body_size(s->io));
		if (strcmp(method, "PUT") != 0)
			SET(CURLOPT_CUSTOMREQUEST, method);
	} else if (body) {
		SET(CURLOPT_POST, 1L);
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
		SET(CURLOPT_POSTFIELDS, body);
		if (strcmp(method, "POST") != 0)
			SET(CURLOPT_CUSTOMREQUEST, method);
	} else if (strcmp(method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "GET") != 0) {
		SET(CURLOPT_CUSTOMREQUEST, method);
	}
#undef SET
	return rc;
}

static int retryable_status(long status, int idempotent)
{
	return status == 429 || status == 503 ||
		(idempotent && (status == 500 || status == 502 || status == 504));
}

/* Transport errors that prove the request never left: safe to retry whatever it does. */
static int not_sent(CURL *c, CURLcode code)
{
	curl_off_t pre = 0;
	switch (code) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
		return 1;
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SSL_CONNECT_ERROR:
		/* pretransfer is 0 until the connection (and TLS) is up */
		return curl_easy_getinfo(c, CURLINFO_PRETRANSFER_TIME_T, &pre) == CURLE_OK && pre == 0;
	default:
		return 0;
	}
}

static int perform(al_http_response *resp, al_http *h, const char *method, const char *url,
	const char *const *headers, const void *body, size_t body_len, al_http_stream *io,
	unsigned flags)
{
	int idempotent = (flags & AL_HTTP_IDEMPOTENT) != 0, rc = 0, tries = 0, stalls = 0;
	int abandon = al__thread_background() || (flags & AL_HTTP_ABANDON);
	/* The calling thread's bound on the whole call (util.h), retries and backoff included:
	 * each attempt gets what is left of it. */
	long budget = al__wait_budget();
	int64_t deadline = budget ? al__mono_us() + (int64_t)budget * 1000 : 0;
	struct curl_slist *hdrs = NULL, *grown;
	char shown[512], errbuf[CURL_ERROR_SIZE], text[201];
	CURL *c = NULL;
	CURLcode code = CURLE_OK;
	sink s = {&resp->body, 0, io, NULL, 0, 0, "", 0, abandon, (int64_t)h->opt.stall_ms * 1000, 0, 0,
		0, 0, NULL, 0, 0};

	al_http_response_dispose(resp);
	resp->body.max = h->opt.max_body + 1; /* room for the NUL */
	atomic_fetch_add(&h->requests, 1);
	clean_url(shown, sizeof(shown), url ? url : "(null)");
	if (!method || !url) {
		rc = al_error_set(AL_EINVAL, "HTTP request without %s", method ? "URL" : "method");
		goto cleanup;
	}
	/* No "Expect: 100-continue" round trip for larger bodies. */
	if (!(hdrs = curl_slist_append(NULL, "Expect:")))
		goto nomem;
	for (size_t i = 0; headers && headers[i]; i++) {
		if (!(grown = curl_slist_append(hdrs, headers[i])))
			goto nomem;
		hdrs = grown;
	}
	if (!(c = take_handle(h)))
		goto nomem;

	for (;;) {
		int retry, short_body = 0, out_of_time = 0;
		long connect_ms = h->opt.connect_timeout_ms, timeout_ms = h->opt.timeout_ms, wait = 0;
		if (deadline) {
			long left = (long)((deadline - al__mono_us()) / 1000);
			if (left < 1)
				left = 1;
			if (timeout_ms > left)
				timeout_ms = left;
			if (connect_ms > left)
				connect_ms = left;
		}
		tries++;
		atomic_fetch_add(&h->attempts, 1);
		resp->status = 0;
		al_buf_clear(&resp->body);
		s.rc = 0;
		s.c = c;
		s.to_fd = 0;
		s.read_pos = 0;
		s.why[0] = '\0';
		s.range_len = 0;
		s.moved_us = al__mono_us();
		s.moved = 0;
		s.stalled = s.stopping = 0;
		s.wlen = 0;
		if (io) {
			io->dst_written = 0;
			al_http_stream_dispose(io);
		}
		errbuf[0] = '\0';
		curl_easy_reset(c); /* keeps the live connections */
		code = prepare(c, connect_ms, timeout_ms, method, url, hdrs, body, body_len, idempotent,
			&s, errbuf);
		if (code == CURLE_OK)
			code = curl_easy_perform(c);
		if (s.to_fd == 1 && !s.rc)
			wbuf_flush(&s);    /* the tail gathered since the last boundary */
		if (code == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
		if (s.rc && s.why[0]) {
			rc = al_error_set(s.rc, "%s %s: %s", method, shown, s.why);
			goto cleanup;
		}
		if (s.rc) {
			rc = s.rc == AL_ENOMEM ? al_error_set(AL_ENOMEM, "%s %s: out of memory for the "
				"response", method, shown) : al_error_set(AL_EIO, "%s %s: response larger "
				"than %zu bytes", method, shown, h->opt.max_body);
			goto cleanup;
		}
		if (code == CURLE_OK && resp->status < 500 && resp->status != 429) {
			/* A body that ended early without framing (closed connection, no
			 * Content-Length): shorter than its Content-Range or than expected. */
			uint64_t want = s.to_fd == 1 ? (resp->status == 206 && s.range_len ?
				s.range_len : io->dst_expect) : 0;
			if (!want || io->dst_written >= want)
				break; /* a definitive answer */
			short_body = 1;
			snprintf(errbuf, sizeof(errbuf), "truncated body: %llu of %llu bytes received",
				(unsigned long long)io->dst_written, (unsigned long long)want);
			code = CURLE_PARTIAL_FILE;
		}
		if (s.stalled) {
			/* Like a timeout, only sooner: the request may have been processed. */
			stalls++;
			snprintf(errbuf, sizeof(errbuf), "stalled: no byte sent or received for %ld s",
				(h->opt.stall_ms + 999) / 1000);
		}
		retry = short_body ? idempotent : code == CURLE_OK ?
			retryable_status(resp->status, idempotent) : idempotent || not_sent(c, code);
		if (retry && tries < h->opt.max_tries) {
			wait = backoff_ms(h, tries - 1);
			out_of_time = deadline && al__mono_us() + (int64_t)wait * 1000 >= deadline;
		}
		if (abandon && al__shutting_down())
			retry = 0;
		if (!retry || tries >= h->opt.max_tries || out_of_time || stalls >= h->opt.max_stalls) {
			char why[96] = "";
			if (abandon && al__shutting_down())
				snprintf(why, sizeof(why), " (given up: the daemon is stopping)");
			else if (stalls >= h->opt.max_stalls)
				snprintf(why, sizeof(why), " (%d stalled: the server stopped answering)",
					stalls);
			else if (out_of_time)
				snprintf(why, sizeof(why), " (gave up: the %ld ms bound on waiting passed)",
					budget);
			else if (!retry && tries < h->opt.max_tries)
				snprintf(why, sizeof(why), " (not retried: the request may have been processed)");
			if (code != CURLE_OK) {
				rc = al_error_set(AL_EIO, "%s %s: %s after %d tr%s%s", method, shown,
					errbuf[0] ? errbuf : curl_easy_strerror(code), tries,
					tries == 1 ? "y" : "ies", why);
			} else {
				excerpt(text, sizeof(text), &resp->body);
				rc = al_error_set(resp->status == 429 ? AL_EAGAIN : AL_EIO,
					"%s %s: HTTP %ld after %d tr%s%s: %s", method, shown, resp->status,
					tries, tries == 1 ? "y" : "ies", why, text);
			}
			goto cleanup;
		}
		atomic_fetch_add(&h->retries, 1);
		sleep_ms(wait);
	}
	goto cleanup;
nomem:
	rc = al_error_set(AL_ENOMEM, "%s %s: out of memory", method, shown);
cleanup:
	if (c) {
		/* Drop the pointers to this call's stack; live connections stay (curl checks a
		 * kept connection is alive before reusing it). */
		curl_easy_reset(c);
		give_handle(h, c);
	}
	curl_slist_free_all(hdrs);
	free(s.wbuf);
	if (rc)
		atomic_fetch_add(&h->failures, 1);
	return rc;
}

int al_http_request(al_http_response *resp, al_http *h, const char *method, const char *url,
	const char *const *headers, const void *body, size_t body_len, unsigned flags)
{
	return perform(resp, h, method, url, headers, body, body_len, NULL, flags);
}

int al_http_request_stream(al_http_response *resp, al_http *h, const char *method,
	const char *url, const char *const *headers, al_http_stream *io, unsigned flags)
{
	if (!io)
		return al_error_set(AL_EINVAL, "HTTP stream request without its stream settings");
	return perform(resp, h, method, url, headers, NULL, 0, io, flags);
}
