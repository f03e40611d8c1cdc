/* aletheia unit test: the HTTP client (core/net/http.c) against a small Python server started here:
 * keep-alive reuse, retries and their limits by idempotency, body limits, timeouts. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "core/net/http.h"
#include "core/util.h"
#include "check.h"

/* Paths: /status/CODE/FAILS/name answers CODE the first FAILS times, then 200; /drop/FAILS/name
 * closes the connection without an answer FAILS times; /hits/PATH counts requests to PATH;
 * /conns counts distinct client connections; /echo describes the request; /big/N sends N bytes;
 * /hang answers after 8 s; /drip/N sends N bytes one every 80 ms; /headers sends X-One once and
 * X-Two twice. */
static const char server_py[] =
	"import http.server, socketserver, socket, time, threading, json\n"
	"hits = {}\n"
	"conns = set()\n"
	"lock = threading.Lock()\n"
	"class H(http.server.BaseHTTPRequestHandler):\n"
	"    protocol_version = 'HTTP/1.1'\n"
	"    def log_message(self, *a): pass\n"
	"    def reply(self, code, body=b''):\n"
	"        self.send_response(code)\n"
	"        self.send_header('Content-Length', str(len(body)))\n"
	"        self.end_headers()\n"
	"        self.wfile.write(body)\n"
	"    def any(self):\n"
	"        n = int(self.headers.get('Content-Length') or 0)\n"
	"        body = self.rfile.read(n) if n else b''\n"
	"        path, _, query = self.path.partition('?')\n"
	"        parts = path.strip('/').split('/')\n"
	"        with lock:\n"
	"            hits[path] = hits.get(path, 0) + 1\n"
	"            h = hits[path]\n"
	"            conns.add(self.client_address)\n"
	"        kind = parts[0]\n"
	"        if kind == 'hits':\n"
	"            return self.reply(200, str(hits.get('/' + '/'.join(parts[1:]), 0)).encode())\n"
	"        if kind == 'conns':\n"
	"            return self.reply(200, str(len(conns)).encode())\n"
	"        if kind == 'status':\n"
	"            if h <= int(parts[2]):\n"
	"                return self.reply(int(parts[1]), b'{\"error\":\\n \"injected\"}')\n"
	"            return self.reply(200, b'ok after %d' % h)\n"
	"        if kind == 'echo':\n"
	"            return self.reply(200, json.dumps({'method': self.command, 'body': body.decode(),\n"
	"                'auth': self.headers.get('Authorization'), 'query': query,\n"
	"                'ae': self.headers.get('Accept-Encoding')}).encode())\n"
	"        if kind == 'big':\n"
	"            return self.reply(200, b'x' * int(parts[1]))\n"
	"        if kind == 'pattern':\n"
	"            return self.reply(200, bytes(i % 251 for i in range(int(parts[1]))))\n"
	"        if kind == 'hang':\n"
	"            time.sleep(8)\n"
	"            return self.reply(200, b'late')\n"
	"        if kind == 'drip':\n"
	"            self.send_response(200)\n"
	"            self.send_header('Content-Length', parts[1])\n"
	"            self.end_headers()\n"
	"            for i in range(int(parts[1])):\n"
	"                self.wfile.write(b'd')\n"
	"                self.wfile.flush()\n"
	"                time.sleep(0.08)\n"
	"            return\n"
	"        if kind == 'headers':\n"
	"            self.send_response(200)\n"
	"            self.send_header('X-One', 'a')\n"
	"            self.send_header('X-Two', 'b')\n"
	"            self.send_header('x-two', 'c')\n"
	"            self.send_header('Content-Length', '0')\n"
	"            self.end_headers()\n"
	"            return\n"
	"        if kind == 'drop':\n"
	"            if h <= int(parts[1]):\n"
	"                self.close_connection = True\n"
	"                self.connection.shutdown(socket.SHUT_RDWR)\n"
	"                return\n"
	"            return self.reply(200, b'ok')\n"
	"        self.reply(404, b'no such path')\n"
	"    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = any\n"
	"class S(socketserver.ThreadingMixIn, http.server.HTTPServer):\n"
	"    daemon_threads = True\n"
	"s = S(('127.0.0.1', 0), H)\n"
	"print(s.server_address[1], flush=True)\n"
	"s.serve_forever()\n";

static pid_t server_pid;
static char base[64];

static int start_server(void)
{
	int fd[2];
	char line[32] = "";
	FILE *f;

	if (access("/usr/bin/python3", X_OK) != 0)
		return -1;
	if (pipe(fd) != 0)
		return -1;
	server_pid = fork();
	if (server_pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		close(fd[1]);
		execl("/usr/bin/python3", "python3", "-c", server_py, (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	f = fdopen(fd[0], "r");
	if (!f || !fgets(line, sizeof(line), f) || atoi(line) <= 0)
		return -1;
	fclose(f);
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", atoi(line));
	return 0;
}

static void stop_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGTERM);
		waitpid(server_pid, NULL, 0);
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* GET base+path with flags; the status (or the error code when negative). */
static long fetch(al_http *h, const char *path, const char *method, unsigned flags)
{
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	char url[256];
	int rc;
	snprintf(url, sizeof(url), "%s%s", base, path);
	rc = al_http_request(&r, h, method, url, NULL, strcmp(method, "POST") == 0 ? "{}" : NULL,
		strcmp(method, "POST") == 0 ? 2 : 0, flags);
	if (rc == 0)
		rc = (int)r.status;
	al_http_response_dispose(&r);
	return rc;
}

/* How many requests the server saw for path. */
static long hits(al_http *h, const char *path)
{
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	char url[256];
	long n = -1;
	snprintf(url, sizeof(url), "%s/hits%s", base, path);
	if (al_http_request(&r, h, "GET", url, NULL, NULL, 0, AL_HTTP_IDEMPOTENT) == 0 &&
	    r.status == 200)
		n = atol(r.body.ptr);
	al_http_response_dispose(&r);
	return n;
}

static void test_basic(al_http *h)
{
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	const char *hdrs[] = {"Authorization: Bearer tok", "Content-Type: application/json", NULL};
	char url[256];

	snprintf(url, sizeof(url), "%s/echo?a=1&b=2", base);
	CHECK_OK(al_http_request(&r, h, "POST", url, hdrs, "{\"x\":1}", 7, 0));
	CHECK_EQ_INT(r.status, 200);
	CHECK(r.body.ptr && strstr(r.body.ptr, "\"method\": \"POST\""));
	CHECK(r.body.ptr && strstr(r.body.ptr, "\"body\": \"{\\\"x\\\":1}\""));
	CHECK(r.body.ptr && strstr(r.body.ptr, "\"auth\": \"Bearer tok\""));
	CHECK(r.body.ptr && strstr(r.body.ptr, "\"query\": \"a=1&b=2\""));
	CHECK_OK(al_http_request(&r, h, "PATCH", url, NULL, "", 0, 0));
	CHECK(r.body.ptr && strstr(r.body.ptr, "\"method\": \"PATCH\""));
	CHECK_OK(al_http_request(&r, h, "DELETE", url, NULL, NULL, 0, AL_HTTP_IDEMPOTENT));
	CHECK(r.body.ptr && strstr(r.body.ptr, "\"method\": \"DELETE\""));
	CHECK(r.body.ptr && strstr(r.body.ptr, "\"body\": \"\""));
	/* a 4xx is an answer for the caller, not an error */
	snprintf(url, sizeof(url), "%s/nothing", base);
	CHECK_OK(al_http_request(&r, h, "GET", url, NULL, NULL, 0, AL_HTTP_IDEMPOTENT));
	CHECK_EQ_INT(r.status, 404);
	CHECK_EQ_STR(r.body.ptr, "no such path");
	al_http_response_dispose(&r);

	/* bad input */
	CHECK_EQ_INT(al_http_request(&r, h, "GET", NULL, NULL, NULL, 0, 0), AL_EINVAL);
	CHECK_EQ_INT(al_http_request(&r, h, NULL, url, NULL, NULL, 0, 0), AL_EINVAL);
	al_http_options bad = AL_HTTP_OPTIONS_INIT;
	al_http *h2 = (al_http *)1;
	bad.version = 99;
	CHECK_EQ_INT(al_http_new(&h2, &bad), AL_EINVAL);
	CHECK(h2 == NULL);
	al_http_free(NULL);
	al_http_response_dispose(NULL);
}

/* A streamed body framed by in-memory bytes (a multipart upload's head and tail), also with
 * an empty file range between them. */
static void test_stream_framing(al_http *h)
{
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	char url[256], path[] = "/tmp/al_test_http_XXXXXX";
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	CHECK(write(fd, "0123456789", 10) == 10);
	snprintf(url, sizeof(url), "%s/echo", base);
	io.src_fd = fd;
	io.src_off = 2;
	io.src_len = 5;
	io.src_head = "head-";
	io.src_head_len = 5;
	io.src_tail = "-tail";
	io.src_tail_len = 5;
	CHECK_OK(al_http_request_stream(&r, h, "POST", url, NULL, &io, 0));
	CHECK_EQ_INT(r.status, 200);
	CHECK(r.body.ptr && strstr(r.body.ptr, "\"body\": \"head-23456-tail\""));
	io.src_len = 0;
	io.src_tail = NULL;
	io.src_tail_len = 0;
	CHECK_OK(al_http_request_stream(&r, h, "POST", url, NULL, &io, 0));
	CHECK(r.body.ptr && strstr(r.body.ptr, "\"body\": \"head-\""));
	al_http_response_dispose(&r);
	close(fd);
	unlink(path);
}

/* This thread's write calls so far (pwrite counts), or -1. */
static long long write_calls(void)
{
	char line[128];
	long long n = -1;
	FILE *f = fopen("/proc/thread-self/io", "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "syscw: %lld", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

/* A body streamed into a file lands whole at dst_off, in a few large writes rather than one per
 * piece curl hands over (16 KiB): the page cache of a file filled in small writes is read back
 * at a third of the speed (small folios; README "Benchmarks: S3"). */
static void test_stream_to_file(al_http *h)
{
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	const uint64_t n = 9 * 1024 * 1024 + 17, at = 256 * 1024 + 3;
	char url[256], path[] = "/tmp/al_test_http_XXXXXX";
	unsigned char *got = malloc(n);
	int fd = mkstemp(path), ok = 1;
	long long w0, w1;

	CHECK(fd >= 0 && got);
	snprintf(url, sizeof(url), "%s/pattern/%llu", base, (unsigned long long)n);
	io.dst_fd = fd;
	io.dst_off = at;
	io.dst_max = n;
	w0 = write_calls();
	CHECK_OK(al_http_request_stream(&r, h, "GET", url, NULL, &io, AL_HTTP_IDEMPOTENT));
	w1 = write_calls();
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_INT((long long)io.dst_written, (long long)n);
	/* 2 MiB pieces on 2 MiB boundaries of the file: 6 writes (was 500 or more). */
	CHECK(w0 >= 0 && w1 - w0 <= 8);
	CHECK(got && pread(fd, got, n, (off_t)at) == (ssize_t)n);
	for (uint64_t i = 0; got && i < n && ok; i++)
		ok = got[i] == i % 251;
	CHECK(ok);
	/* Longer than dst_max: refused, whatever was gathered. */
	io.dst_max = n - 1;
	CHECK(al_http_request_stream(&r, h, "GET", url, NULL, &io, AL_HTTP_IDEMPOTENT) == AL_EIO);
	/* A body into a file is asked for as stored (a Range counts stored bytes); one kept in
	 * memory (JSON) may come compressed. */
	snprintf(url, sizeof(url), "%s/echo", base);
	CHECK(ftruncate(fd, 0) == 0);
	io.dst_off = 0;
	io.dst_max = 4096;
	CHECK_OK(al_http_request_stream(&r, h, "GET", url, NULL, &io, AL_HTTP_IDEMPOTENT));
	{
		char echo[4097] = "";
		ssize_t k = pread(fd, echo, 4096, 0);
		CHECK(k > 0 && strstr(echo, "\"ae\": null"));
	}
	CHECK_OK(al_http_request(&r, h, "GET", url, NULL, NULL, 0, AL_HTTP_IDEMPOTENT));
	CHECK(r.body.ptr && strstr(r.body.ptr, "\"ae\": \"") && strstr(r.body.ptr, "gzip"));
	al_http_response_dispose(&r);
	free(got);
	close(fd);
	unlink(path);
}

static void test_keepalive(al_http *h)
{
	long before, after;
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	char url[256];
	snprintf(url, sizeof(url), "%s/conns", base);
	CHECK_OK(al_http_request(&r, h, "GET", url, NULL, NULL, 0, AL_HTTP_IDEMPOTENT));
	before = r.body.ptr ? atol(r.body.ptr) : -1;
	for (int i = 0; i < 10; i++)
		CHECK_EQ_INT(fetch(h, "/echo", i % 2 ? "GET" : "POST", AL_HTTP_IDEMPOTENT), 200);
	CHECK_OK(al_http_request(&r, h, "GET", url, NULL, NULL, 0, AL_HTTP_IDEMPOTENT));
	after = r.body.ptr ? atol(r.body.ptr) : -2;
	CHECK_EQ_INT(after, before); /* one thread, one connection, reused */
	/* a non-idempotent request gets a fresh connection (so curl never re-sends it on its own
	 * after a kept connection died), which is then kept for the next requests */
	CHECK_EQ_INT(fetch(h, "/echo", "POST", 0), 200);
	CHECK_EQ_INT(fetch(h, "/echo", "GET", AL_HTTP_IDEMPOTENT), 200);
	CHECK_OK(al_http_request(&r, h, "GET", url, NULL, NULL, 0, AL_HTTP_IDEMPOTENT));
	CHECK_EQ_INT(r.body.ptr ? atol(r.body.ptr) : -3, before + 1);
	al_http_response_dispose(&r);
}

static void test_retries(al_http *h)
{
	al_http_stats st0, st1;
	al_http_get_stats(&st0, h);

	/* 503 twice, then 200: retried, whatever the idempotency */
	CHECK_EQ_INT(fetch(h, "/status/503/2/a", "GET", AL_HTTP_IDEMPOTENT), 200);
	CHECK_EQ_INT(hits(h, "/status/503/2/a"), 3);
	CHECK_EQ_INT(fetch(h, "/status/503/1/e", "POST", 0), 200);
	CHECK_EQ_INT(hits(h, "/status/503/1/e"), 2);
	CHECK_EQ_INT(fetch(h, "/status/429/2/e", "POST", 0), 200);
	CHECK_EQ_INT(hits(h, "/status/429/2/e"), 3);
	al_http_get_stats(&st1, h);
	CHECK_EQ_INT(st1.retries - st0.retries, 5);

	/* 500/502/504 and lost answers: retried only when idempotent */
	CHECK_EQ_INT(fetch(h, "/status/500/1/d", "POST", 0), AL_EIO);
	CHECK(strstr(al_error_last(), "HTTP 500 after 1 try (not retried") != NULL);
	CHECK(strstr(al_error_last(), "/status/500/1/d") != NULL);
	CHECK(strstr(al_error_last(), "injected") != NULL); /* body excerpt, newline flattened */
	CHECK(strchr(al_error_last(), '\n') == NULL);
	CHECK_EQ_INT(hits(h, "/status/500/1/d"), 1);
	CHECK_EQ_INT(fetch(h, "/status/500/1/f", "POST", AL_HTTP_IDEMPOTENT), 200);
	CHECK_EQ_INT(hits(h, "/status/500/1/f"), 2);
	CHECK_EQ_INT(fetch(h, "/status/502/1/f", "GET", AL_HTTP_IDEMPOTENT), 200);
	CHECK_EQ_INT(fetch(h, "/status/504/1/f", "GET", AL_HTTP_IDEMPOTENT), 200);
	CHECK_EQ_INT(fetch(h, "/drop/1/g", "POST", 0), AL_EIO);
	CHECK(strstr(al_error_last(), "not retried") != NULL);
	CHECK_EQ_INT(hits(h, "/drop/1/g"), 1);
	CHECK_EQ_INT(fetch(h, "/drop/2/h", "GET", AL_HTTP_IDEMPOTENT), 200);
	CHECK_EQ_INT(hits(h, "/drop/2/h"), 3);
	/* 501 is never retried */
	CHECK_EQ_INT(fetch(h, "/status/501/1/i", "GET", AL_HTTP_IDEMPOTENT), AL_EIO);
	CHECK_EQ_INT(hits(h, "/status/501/1/i"), 1);
}

static void test_limits(void)
{
	al_http_options o = AL_HTTP_OPTIONS_INIT;
	al_http *h = NULL;
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	char url[256];
	double t0;
	int rc;

	o.max_tries = 3;
	o.backoff_ms = 20;
	o.backoff_max_ms = 40;
	o.max_body = 1000;
	o.timeout_ms = 400;
	CHECK_OK(al_http_new(&h, &o));
	if (!h)
		return;

	/* exhausted retries: the last status, the URL and the number of tries */
	CHECK_EQ_INT(fetch(h, "/status/503/9/b", "GET", AL_HTTP_IDEMPOTENT), AL_EIO);
	CHECK(strstr(al_error_last(), "GET http://127.0.0.1:") != NULL);
	CHECK(strstr(al_error_last(), "HTTP 503 after 3 tries") != NULL);
	CHECK_EQ_INT(hits(h, "/status/503/9/b"), 3);
	CHECK_EQ_INT(fetch(h, "/status/429/9/c", "GET", AL_HTTP_IDEMPOTENT), AL_EAGAIN);
	CHECK(strstr(al_error_last(), "HTTP 429") != NULL);

	/* body limit: exactly max_body passes, one more byte fails at once */
	snprintf(url, sizeof(url), "%s/big/1000", base);
	CHECK_OK(al_http_request(&r, h, "GET", url, NULL, NULL, 0, AL_HTTP_IDEMPOTENT));
	CHECK_EQ_INT(r.body.len, 1000);
	CHECK_EQ_INT(strlen(r.body.ptr), 1000);
	snprintf(url, sizeof(url), "%s/big/5000", base);
	CHECK_EQ_INT(al_http_request(&r, h, "GET", url, NULL, NULL, 0, AL_HTTP_IDEMPOTENT), AL_EIO);
	CHECK(strstr(al_error_last(), "larger than 1000 bytes") != NULL);
	CHECK_EQ_INT(hits(h, "/big/5000"), 1);
	al_http_response_dispose(&r);

	/* a hanging server: bounded by the timeout × tries (+ backoff) */
	t0 = now_s();
	CHECK_EQ_INT(fetch(h, "/hang", "GET", AL_HTTP_IDEMPOTENT), AL_EIO);
	CHECK(strstr(al_error_last(), "timed out") != NULL);
	CHECK(strstr(al_error_last(), "after 3 tries") != NULL);
	CHECK(now_s() - t0 < 3.0);
	t0 = now_s();
	CHECK_EQ_INT(fetch(h, "/hang", "POST", 0), AL_EIO); /* may have been processed: once */
	CHECK(strstr(al_error_last(), "after 1 try") != NULL);
	CHECK(now_s() - t0 < 1.5);
	CHECK_EQ_INT(hits(h, "/hang"), 4);

	/* nothing listens: a connect failure is retried even for a non-idempotent request;
	 * the message has neither the password nor the query */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(getsockname(s, (struct sockaddr *)&a, &len) == 0);
	close(s);
	snprintf(url, sizeof(url), "http://user:secret@127.0.0.1:%d/x?key=hidden",
		ntohs(a.sin_port));
	al_http_stats st0, st1;
	al_http_get_stats(&st0, h);
	rc = al_http_request(&r, h, "POST", url, NULL, "{}", 2, 0);
	CHECK_EQ_INT(rc, AL_EIO);
	al_http_get_stats(&st1, h);
	CHECK_EQ_INT(st1.attempts - st0.attempts, 3);
	CHECK_EQ_INT(st1.failures - st0.failures, 1);
	CHECK(strstr(al_error_last(), "after 3 tries") != NULL);
	CHECK(strstr(al_error_last(), "POST http://127.0.0.1:") != NULL);
	CHECK(strstr(al_error_last(), "secret") == NULL);
	CHECK(strstr(al_error_last(), "hidden") == NULL);
	CHECK_EQ_INT(r.status, 0);
	al_http_response_dispose(&r);
	al_http_free(h);
}

/* A thread's wait budget bounds a whole call, retries included, whatever the client's own
 * timeouts (30 s per attempt, 5 tries here): liveness bounds, far below what the unbounded
 * calls would take (40 s on /hang). */
static void test_budget(void)
{
	al_http *h = NULL;
	al_http_stats st0, st1;
	double t0;

	CHECK_OK(al_http_new(&h, NULL));
	if (!h)
		return;
	CHECK_EQ_INT(al__wait_budget_set(600), 0);
	t0 = now_s();
	CHECK_EQ_INT(fetch(h, "/hang", "GET", AL_HTTP_IDEMPOTENT), AL_EIO);
	CHECK(now_s() - t0 < 4.0);
	CHECK(strstr(al_error_last(), "timed out") != NULL);
	CHECK(strstr(al_error_last(), "600 ms bound") != NULL);
	/* dropped connections: retried while the bound allows, not 5 times */
	al_http_get_stats(&st0, h);
	al__wait_budget_set(250);
	CHECK_EQ_INT(fetch(h, "/drop/1000/b", "GET", AL_HTTP_IDEMPOTENT), AL_EIO);
	al_http_get_stats(&st1, h);
	CHECK(st1.attempts - st0.attempts >= 1 && st1.attempts - st0.attempts < 5);
	CHECK(strstr(al_error_last(), "250 ms bound") != NULL);
	/* within the bound nothing changes */
	CHECK_EQ_INT(fetch(h, "/status/503/1/budget", "GET", AL_HTTP_IDEMPOTENT), 200);
	CHECK_EQ_INT(al__wait_budget_set(0), 250);
	al_http_free(h);
}

/* A stalled attempt (no byte either way for stall_ms) ends long before its timeout and is retried
 * like one, max_stalls times; a slow transfer that keeps moving is not stalled. */
static void test_stall(void)
{
	al_http_options o = AL_HTTP_OPTIONS_INIT;
	al_http *h = NULL;
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	char url[256];

	o.timeout_ms = 30000;
	o.backoff_ms = 10;
	o.stall_ms = 250;
	o.max_stalls = 2;
	CHECK_OK(al_http_new(&h, &o));
	if (!h)
		return;
	CHECK_EQ_INT(fetch(h, "/hang/stall", "GET", AL_HTTP_IDEMPOTENT), AL_EIO);
	CHECK(strstr(al_error_last(), "stalled: no byte sent or received") != NULL);
	CHECK(strstr(al_error_last(), "after 2 tries (2 stalled") != NULL);
	CHECK_EQ_INT(hits(h, "/hang/stall"), 2);
	/* a request that may have been processed: not retried */
	CHECK_EQ_INT(fetch(h, "/hang/stall-post", "POST", 0), AL_EIO);
	CHECK(strstr(al_error_last(), "stalled") != NULL);
	CHECK_EQ_INT(hits(h, "/hang/stall-post"), 1);
	/* one byte every 80 ms: slow, never stalled */
	snprintf(url, sizeof(url), "%s/drip/8", base);
	CHECK_OK(al_http_request(&r, h, "GET", url, NULL, NULL, 0, AL_HTTP_IDEMPOTENT));
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_STR(r.body.ptr, "dddddddd");
	al_http_response_dispose(&r);
	al_http_free(h);
}

/* Response headers captured by name, a repeated one with its values joined. */
static void test_capture(al_http *h)
{
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	al_http_stream io = AL_HTTP_STREAM_INIT;
	char url[256];

	snprintf(url, sizeof(url), "%s/headers", base);
	io.capture[0] = "x-one";
	io.capture[1] = "X-Two";
	io.capture[2] = "X-None";
	CHECK_OK(al_http_request_stream(&r, h, "GET", url, NULL, &io, AL_HTTP_IDEMPOTENT));
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_STR(io.captured[0], "a");
	CHECK_EQ_STR(io.captured[1], "b, c");
	CHECK(io.captured[2] == NULL);
	al_http_stream_dispose(&io);
	CHECK(io.captured[0] == NULL && io.captured[1] == NULL);
	al_http_response_dispose(&r);
}

struct waiter {
	al_http *h;
	const char *path;
	unsigned flags;
	int rc;
	char msg[512];
};

static void *wait_one(void *arg)
{
	struct waiter *w = arg;
	w->rc = (int)fetch(w->h, w->path, "GET", w->flags);
	snprintf(w->msg, sizeof(w->msg), "%s", al_error_last());
	return NULL;
}

/* Once the daemon stops (al__shutdown_begin; last: it is not undone), a request flagged
 * AL_HTTP_ABANDON ends at once without a retry, where its server would keep it 8 s per try;
 * an unflagged one runs its course. */
static void test_abandon(void)
{
	al_http_options o = AL_HTTP_OPTIONS_INIT;
	al_http *h = NULL;
	pthread_t t[2];
	struct waiter w[2];

	o.timeout_ms = 2000;
	o.max_tries = 2;
	CHECK_OK(al_http_new(&h, &o));
	if (!h)
		return;
	w[0] = (struct waiter){h, "/hang/abandoned", AL_HTTP_IDEMPOTENT | AL_HTTP_ABANDON, 0, ""};
	w[1] = (struct waiter){h, "/hang/kept", AL_HTTP_IDEMPOTENT, 0, ""};
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, wait_one, &w[i]);
	usleep(300 * 1000);
	al__shutdown_begin();
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ_INT(w[0].rc, AL_EIO);
	CHECK(strstr(w[0].msg, "after 1 try (given up: the daemon is stopping)") != NULL);
	CHECK_EQ_INT(w[1].rc, AL_EIO);
	CHECK(strstr(w[1].msg, "timed out") != NULL && strstr(w[1].msg, "after 2 tries") != NULL);
	al_http_free(h);
}

static void test_escape(void)
{
	const char *in[] = {"a%2Fb", "(default)", "é", "a b/c:d", "A-Z_a.z~09", ""};
	const char *want[] = {"a%252Fb", "(default)", "%C3%A9", "a%20b%2Fc%3Ad", "A-Z_a.z~09", ""};
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		char *e = al_http_escape(in[i]);
		CHECK_EQ_STR(e, want[i]);
		free(e);
	}
}

struct worker {
	al_http *h;
	int ok;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 25; i++)
		w->ok += fetch(w->h, i % 5 ? "/echo" : "/status/503/1/t", "GET", AL_HTTP_IDEMPOTENT)
			== 200;
	return NULL;
}

static void test_threads(al_http *h)
{
	pthread_t t[4];
	struct worker w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){h, 0};
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ_INT(w[i].ok, 25);
	}
}

int main(void)
{
	al_http *h = NULL;
	double t0 = now_s();

	test_escape();
	if (start_server() != 0) {
		fprintf(stderr, "no /usr/bin/python3 test server: skipped\n");
		stop_server();
		return 77;
	}
	atexit(stop_server);
	CHECK_OK(al_http_new(&h, NULL));
	if (!h)
		CHECK_DONE();
	test_basic(h);
	test_stream_framing(h);
	test_stream_to_file(h);
	test_keepalive(h);
	test_retries(h);
	test_limits();
	test_budget();
	test_stall();
	test_capture(h);
	test_threads(h);
	al_http_stats st;
	al_http_get_stats(&st, h);
	CHECK(st.requests > 50 && st.attempts > st.requests && st.failures >= 3);
	al_http_free(h);
	test_abandon();
	CHECK(now_s() - t0 < 20.0);   /* liveness: a hang would take minutes */
	CHECK_DONE();
}
