/* aletheia: a small HTTP client over libcurl for the cloud backends: a pool of reusable
 * connections, bounded response bodies, timeouts, and retries with jittered exponential backoff. */
#ifndef ALETHEIA_HTTP_H
#define ALETHEIA_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include "core/buf.h"
#include "aletheia/common.h"

typedef struct al_http al_http;

typedef struct al_http_options {
	unsigned version;        /* AL_HTTP_OPTIONS_VERSION */
	long connect_timeout_ms; /* 0: 5,000 */
	long timeout_ms;         /* whole exchange, per attempt; 0: 30,000 */
	int max_tries;           /* attempts in all, first included; 0: 5 */
	long backoff_ms;         /* delay before the first retry, doubled each time; 0: 100 */
	long backoff_max_ms;     /* cap of the delay; 0: 5,000 */
	size_t max_body;         /* largest response body accepted; 0: 64 MiB */
	size_t max_idle;         /* idle connections kept for reuse; 0: 8 */
	/* Added in version 2. An attempt that moves no byte either way (body bytes sent or
	 * received) for stall_ms is stalled: given up at once instead of waiting for timeout_ms,
	 * and retried like a timeout (idempotent requests only). 0: no stall detection. */
	long stall_ms;
	int max_stalls;          /* stalled attempts before the call fails; 0: 3 */
} al_http_options;

#define AL_HTTP_OPTIONS_VERSION 2
#define AL_HTTP_OPTIONS_INIT {AL_HTTP_OPTIONS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0}

/* Request flags. */
enum {
	/* Sending the request twice has the effect of sending it once (reads, deletes, writes
	 * guarded by create-only preconditions): it may be retried after it may have reached the
	 * server (timeouts, resets, 500/502/504). Without this flag a request is retried only when
	 * it certainly was not processed: the connection could not be made, or the server answered
	 * 429 (RESOURCE_EXHAUSTED) or 503 (UNAVAILABLE), which Google's APIs give before doing
	 * anything and on which Google's own clients retry commits. Such a request also goes
	 * out on a fresh connection: on a kept-alive one that died, curl would re-send it. */
	AL_HTTP_IDEMPOTENT = 1,
	/* A read that nobody needs once the daemon stops (blob and URL fetches): given up within
	 * about a second of al__shutdown_begin (core/util.h), and not retried, like the requests
	 * of a background thread. */
	AL_HTTP_ABANDON = 2,
};

typedef struct al_http_response {
	long status;   /* HTTP status of the last attempt; 0 when none answered */
	al_buf body;   /* its body, NUL-terminated (ptr may be NULL when empty) */
} al_http_response;

#define AL_HTTP_RESPONSE_INIT {0, AL_BUF_INIT}

typedef struct al_http_stats {
	uint64_t requests;  /* al_http_request calls */
	uint64_t attempts;  /* exchanges tried, retries included */
	uint64_t retries;
	uint64_t failures;  /* calls that returned an error */
} al_http_stats;

/* opts may be NULL for the defaults. */
int al_http_new(al_http **out, const al_http_options *opts);
void al_http_free(al_http *h);

/* Sends method url with headers (a NULL-terminated array of "Name: value", may be NULL) and
 * body (body_len bytes, may be NULL) and waits for the answer, retrying as flags allow.
 * Returns 0 once a definitive answer arrived, whatever its status (2xx, 3xx, 4xx but 429): the
 * caller interprets it. Errors, with a message naming the method and URL (without user info or
 * query) and the status:
 *   AL_EAGAIN  still 429 after the last try;
 *   AL_EIO     still 5xx after the last try, 5xx not retried (non-idempotent), connection
 *              failures, timeouts, resets, and a body larger than max_body.
 * On error *resp still holds the last answer, if any. resp is reset first; dispose it after.
 * When the calling thread has a wait budget (the metastore decorators set one for requests that
 * answer a file operation), the whole call, retries and backoff included, ends within it: each
 * attempt's timeout is cut to what is left, and no retry starts past it (AL_EIO). A request of
 * a background thread (core/util.h), or one flagged AL_HTTP_ABANDON, ends within about a second
 * once the daemon is stopping. */
int al_http_request(al_http_response *resp, al_http *h, const char *method, const char *url,
	const char *const *headers, const void *body, size_t body_len, unsigned flags);
void al_http_response_dispose(al_http_response *resp);

#define AL_HTTP_CAPTURE_MAX 8

/* Streaming for bodies too large to hold in memory (blob stores). */
typedef struct al_http_stream {
	int src_fd;             /* request body: src_len bytes of src_fd from src_off (pread, read
				 * again on each try), or -1 for none */
	uint64_t src_off, src_len;
	int dst_fd;             /* a 2xx response body goes to dst_fd from dst_off (pwrite), at
				 * most dst_max bytes (more is AL_EIO); -1 keeps it in resp->body.
				 * Other statuses' bodies always land in resp->body. */
	uint64_t dst_off, dst_max;
	/* A 2xx body cut short (closed without framing) is a failed attempt, retried like a reset
	 * for idempotent requests: shorter than a 206's Content-Range, or than dst_expect (when
	 * not 0; for answers without Content-Range). */
	uint64_t dst_expect;
	uint64_t dst_written;   /* out: bytes written to dst_fd by the last attempt */
	const char *header;     /* a response header to capture ("ETag"), or NULL */
	char *header_value;     /* out: its value (trimmed, malloc'd) or NULL; caller frees */
	/* Bytes sent before and after the src_fd range (a multipart body's framing), or NULL;
	 * they need src_fd >= 0 (src_len may be 0). */
	const void *src_head, *src_tail;
	size_t src_head_len, src_tail_len;
	/* More response headers to capture (names; unused slots NULL), and their values as
	 * header_value's (out, malloc'd or NULL; a header sent several times gives its values
	 * joined by ", "). al_http_stream_dispose frees every value. */
	const char *capture[AL_HTTP_CAPTURE_MAX];
	char *captured[AL_HTTP_CAPTURE_MAX];
} al_http_stream;

#define AL_HTTP_STREAM_INIT {-1, 0, 0, -1, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0, 0, {NULL}, {NULL}}

/* al_http_request with the request and/or response body streamed through files as io says;
 * same retries, errors and status handling. */
int al_http_request_stream(al_http_response *resp, al_http *h, const char *method,
	const char *url, const char *const *headers, al_http_stream *io, unsigned flags);

/* Frees the captured header values (header_value, captured[]) and sets them to NULL. */
void al_http_stream_dispose(al_http_stream *io);

/* Counters since al_http_new. */
void al_http_get_stats(al_http_stats *out, al_http *h);

/* Percent-encodes s for one URL path segment: everything but A-Z a-z 0-9 - . _ ~ ( ) becomes
 * %XX (so '/', '%', ':' and non-ASCII bytes are encoded). Caller frees; NULL on out of memory. */
char *al_http_escape(const char *s);

#endif
