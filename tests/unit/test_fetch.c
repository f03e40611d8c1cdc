/* aletheia: the URL fetcher against range_server.py (ranges, a server without Range support,
 * truncated bodies, GCS JSON API paths) and against s3rver (s3:// signed with SigV4). */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "core/blobs/blobs.h"
#include "aletheia/fetch.h"
#include "aletheia/hash.h"
#include "core/net/http.h"
#include "check.h"
#include "server.h"

#define SIZE 300000
#define BIG_SIZE ((9u << 20) + 12345)   /* more than one 8 MiB stream chunk */
#define BUCKET "fetch-bucket"

static char tmp[] = "/tmp/al_test_fetch_XXXXXX";
static char root[PATH_MAX], base[256], src_data[SIZE];
static pid_t srv_pid = -1, s3_pid = -1;
static int port;

static void path_in(char *out, const char *dir, const char *name)
{
	CHECK(snprintf(out, PATH_MAX, "%s/%s", dir, name) < PATH_MAX);
}

/* Writes size pseudo-random bytes to path (seeded); keeps a copy in keep if not NULL. */
static void make_file(const char *path, size_t size, unsigned seed, char *keep)
{
	char *buf = malloc(size ? size : 1);
	FILE *f = fopen(path, "wb");
	CHECK(buf && f);
	for (size_t i = 0; i < size; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (char)(seed >> 16);
	}
	CHECK(fwrite(buf, 1, size, f) == size);
	fclose(f);
	if (keep)
		memcpy(keep, buf, size);
	free(buf);
}

/* range_server.py ($AL_RANGE_SERVER overrides) serving root, on a free port it writes to a file. */
static int start_server(void)
{
	char port_path[PATH_MAX];
	path_in(port_path, tmp, "port");
	return test_start_python_server(&srv_pid, "range_server.py", "AL_RANGE_SERVER", port_path,
		(char *[]){root, "--port-file", port_path, "--gcs", NULL});
}

/* Sets the server's modes ("ranges=0&truncate=1") and returns a counter from its answer. */
static long ctl(const char *query, const char *counter)
{
	al_http *h = NULL;
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	char url[512], key[64];
	const char *p;
	long v = -1;

	snprintf(url, sizeof(url), "%s/_ctl?%s", base, query);
	CHECK_OK(al_http_new(&h, NULL));
	CHECK_OK(al_http_request(&resp, h, "GET", url, NULL, NULL, 0, 0));
	snprintf(key, sizeof(key), "\"%s\": ", counter);
	if (resp.body.ptr && (p = strstr(resp.body.ptr, key)))
		v = atol(p + strlen(key));
	al_http_response_dispose(&resp);
	al_http_free(h);
	return v;
}

/* A fresh file for fetched bytes. */
static int dst_file(void)
{
	char p[PATH_MAX];
	path_in(p, tmp, "dst");
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	return fd;
}

static void check_bytes(int fd, uint64_t at, const char *want, size_t len)
{
	char *got = malloc(len);
	CHECK(got && pread(fd, got, len, (off_t)at) == (ssize_t)len);
	CHECK(got && memcmp(got, want, len) == 0);
	free(got);
}

typedef struct {
	al_hasher *h;
	uint64_t bytes;
	int calls;
	int fail_after;   /* >0: the sink refuses its n-th piece */
	int restarts;     /* calls with data NULL: the object is read again */
} hash_sink;

static int sink(void *ctx, const void *data, size_t len)
{
	hash_sink *s = ctx;
	if (!data) {    /* read again: start over */
		al_hasher_free(s->h);
		s->bytes = 0;
		s->restarts++;
		return al_hasher_new(&s->h);
	}
	if (s->fail_after && ++s->calls >= s->fail_after)
		return AL_ENOSPC;
	al_hasher_update(s->h, data, len);
	s->bytes += len;
	return 0;
}

/* Streams url and compares size and hash with the local file. */
static void check_stream(al_fetcher *f, const char *url, const char *local)
{
	hash_sink s = {0};
	char want[AL_HASH_HEX_LEN + 1], got[AL_HASH_HEX_LEN + 1];
	uint64_t size = 0;
	int fd = open(local, O_RDONLY);

	CHECK(fd >= 0);
	CHECK_OK(al_hash_fd(want, &size, fd));
	close(fd);
	CHECK_OK(al_hasher_new(&s.h));
	CHECK_OK(al_fetcher_stream(f, url, sink, &s));
	al_hasher_final(got, s.h);
	al_hasher_free(s.h);
	CHECK_EQ_INT(s.bytes, size);
	CHECK_EQ_STR(got, want);
}

static void test_bad_urls(al_fetcher *f)
{
	uint64_t size = 1;
	char *etag = (char *)"x";
	int whole = 1, fd = dst_file();

	CHECK_EQ_INT(al_fetcher_stat(&size, &etag, f, "ftp://host/x"), AL_EINVAL);
	CHECK(etag == NULL && size == 0);
	CHECK(strstr(al_error_last(), "ftp://host/x") != NULL);
	CHECK_EQ_INT(al_fetcher_stat(&size, NULL, f, "http:///nohost"), AL_EINVAL);
	CHECK_EQ_INT(al_fetcher_stat(&size, NULL, f, "s3://bucket-only"), AL_EINVAL);
	CHECK_EQ_INT(al_fetcher_stat(&size, NULL, f, "gs:///key"), AL_EINVAL);
	CHECK_EQ_INT(al_fetcher_stat(&size, NULL, f, "relative/path"), AL_EINVAL);
	CHECK_EQ_INT(al_fetcher_fetch(f, "file:///etc/passwd", 0, 10, fd, &whole), AL_EINVAL);
	CHECK_EQ_INT(whole, 0);
	CHECK_EQ_INT(al_fetcher_stream(f, "nope", sink, NULL), AL_EINVAL);
	close(fd);
}

static void test_stat(al_fetcher *f)
{
	char url[512], *etag = NULL;
	uint64_t size = 0;

	snprintf(url, sizeof(url), "%s/data.bin", base);
	CHECK_OK(al_fetcher_stat(&size, &etag, f, url));
	CHECK_EQ_INT(size, SIZE);
	CHECK(etag && etag[0] == '"');
	free(etag);
	snprintf(url, sizeof(url), "%s/empty", base);
	CHECK_OK(al_fetcher_stat(&size, NULL, f, url));
	CHECK_EQ_INT(size, 0);
	snprintf(url, sizeof(url), "%s/sub/with%%20space.bin", base);
	CHECK_OK(al_fetcher_stat(&size, NULL, f, url));
	CHECK_EQ_INT(size, 1000);
	snprintf(url, sizeof(url), "%s/missing.bin", base);
	etag = (char *)"x";
	CHECK_EQ_INT(al_fetcher_stat(&size, &etag, f, url), AL_ENOTFOUND);
	CHECK(etag == NULL);
	CHECK(strstr(al_error_last(), "404") != NULL);
	/* nothing listening */
	CHECK_EQ_INT(al_fetcher_stat(&size, NULL, f, "http://127.0.0.1:1/x"), AL_EIO);
}

static void test_ranges(al_fetcher *f)
{
	char url[512];
	int whole = -1, fd = dst_file();
	long ranged0 = ctl("", "ranged");
	struct stat st;

	snprintf(url, sizeof(url), "%s/data.bin", base);
	CHECK_OK(al_fetcher_fetch(f, url, 0, 1000, fd, &whole));
	CHECK_EQ_INT(whole, 0);
	check_bytes(fd, 0, src_data, 1000);
	CHECK_OK(al_fetcher_fetch(f, url, 123457, 65536, fd, &whole));
	CHECK_EQ_INT(whole, 0);
	check_bytes(fd, 123457, src_data + 123457, 65536);
	CHECK(fstat(fd, &st) == 0 && st.st_size == 123457 + 65536);
	/* the last bytes, and a range running past the end: only what exists */
	CHECK_OK(al_fetcher_fetch(f, url, SIZE - 100, 100, fd, &whole));
	check_bytes(fd, SIZE - 100, src_data + SIZE - 100, 100);
	CHECK_OK(al_fetcher_fetch(f, url, SIZE - 10, 1000, fd, &whole));
	CHECK(fstat(fd, &st) == 0 && st.st_size == SIZE);
	CHECK_EQ_INT(ctl("", "ranged"), ranged0 + 4);
	CHECK_EQ_INT(ctl("", "whole"), 0);
	/* zero bytes: nothing asked */
	CHECK_OK(al_fetcher_fetch(f, url, 5, 0, fd, &whole));
	CHECK_EQ_INT(ctl("", "ranged"), ranged0 + 4);
	/* past the end */
	CHECK_EQ_INT(al_fetcher_fetch(f, url, SIZE + 10, 10, fd, &whole), AL_EINVAL);
	/* missing */
	snprintf(url, sizeof(url), "%s/missing.bin", base);
	CHECK_EQ_INT(al_fetcher_fetch(f, url, 0, 10, fd, &whole), AL_ENOTFOUND);
	close(fd);
}

static void test_stream(al_fetcher *f)
{
	char url[512], local[PATH_MAX];
	hash_sink s = {0};

	snprintf(url, sizeof(url), "%s/data.bin", base);
	path_in(local, root, "data.bin");
	check_stream(f, url, local);
	snprintf(url, sizeof(url), "%s/big.bin", base);
	path_in(local, root, "big.bin");
	check_stream(f, url, local);
	snprintf(url, sizeof(url), "%s/empty", base);
	path_in(local, root, "empty");
	check_stream(f, url, local);
	/* the sink's error comes back as is */
	snprintf(url, sizeof(url), "%s/big.bin", base);
	CHECK_OK(al_hasher_new(&s.h));
	s.fail_after = 2;
	CHECK_EQ_INT(al_fetcher_stream(f, url, sink, &s), AL_ENOSPC);
	al_hasher_free(s.h);
	snprintf(url, sizeof(url), "%s/missing.bin", base);
	CHECK_EQ_INT(al_fetcher_stream(f, url, sink, NULL), AL_ENOTFOUND);
}

/* Streams url whose bytes arrive damaged `corrupt` times, the server giving `digest` checksums:
 * the stream's result, the sink's restarts, and whether it hashed to local's hash. */
static int stream_damaged(int *restarts, int *right, al_fetcher *f, const char *url,
	const char *local, const char *digest, int corrupt)
{
	hash_sink s = {0};
	char want[AL_HASH_HEX_LEN + 1], got[AL_HASH_HEX_LEN + 1], q[64];
	uint64_t size = 0;
	int rc, fd = open(local, O_RDONLY);

	CHECK(fd >= 0);
	CHECK_OK(al_hash_fd(want, &size, fd));
	close(fd);
	snprintf(q, sizeof(q), "digest=%s&corrupt=%d", digest, corrupt);
	ctl(q, "GET");
	CHECK_OK(al_hasher_new(&s.h));
	rc = al_fetcher_stream(f, url, sink, &s);
	al_hasher_final(got, s.h);
	al_hasher_free(s.h);
	*restarts = s.restarts;
	*right = rc == 0 && s.bytes == size && strcmp(got, want) == 0;
	ctl("digest=none&corrupt=0", "GET");
	return rc;
}

/* The server's own checksums of an object (README "Importing files"): bytes damaged on the way are
 * read again, up to 3 reads; a server without checksums is trusted as received. */
static void test_checksums(al_fetcher *f)
{
	static const char *const modes[] = {"md5", "digest", "repr", "goog"};
	char url[512], local[PATH_MAX], host[64];
	int restarts = 0, right = 0;

	snprintf(url, sizeof(url), "%s/data.bin", base);
	path_in(local, root, "data.bin");
	for (size_t i = 0; i < sizeof(modes) / sizeof(*modes); i++) {
		CHECK_OK(stream_damaged(&restarts, &right, f, url, local, modes[i], 1));
		CHECK_EQ_INT(restarts, 1);
		CHECK(right);
		CHECK_OK(stream_damaged(&restarts, &right, f, url, local, modes[i], 0));
		CHECK_EQ_INT(restarts, 0);
		CHECK(right);
	}
	/* damaged every time: AL_EIO after 3 reads, naming the checksum */
	CHECK_EQ_INT(stream_damaged(&restarts, &right, f, url, local, "digest", 10), AL_EIO);
	CHECK_EQ_INT(restarts, 2);
	CHECK(strstr(al_error_last(), "do not match the server's MD5 (from its Digest)") != NULL);
	CHECK(strstr(al_error_last(), "(3 reads)") != NULL);
	/* a checksum of other bytes: never accepted */
	CHECK_EQ_INT(stream_damaged(&restarts, &right, f, url, local, "bad", 0), AL_EIO);
	/* no checksum: the bytes as received (what the README says is trusted) */
	CHECK_OK(stream_damaged(&restarts, &right, f, url, local, "none", 1));
	CHECK_EQ_INT(restarts, 0);
	CHECK(!right);
	/* gs://: the metadata's md5Hash and crc32c */
	snprintf(host, sizeof(host), "127.0.0.1:%d", port);
	setenv("STORAGE_EMULATOR_HOST", host, 1);
	path_in(local, root, "bkt/dir/obj.bin");
	CHECK_OK(stream_damaged(&restarts, &right, f, "gs://bkt/dir/obj.bin", local, "none", 1));
	CHECK_EQ_INT(restarts, 1);
	CHECK(right);
	unsetenv("STORAGE_EMULATOR_HOST");
}

/* A server that ignores Range: the whole object lands at offset 0 and *whole says so. */
static void test_no_range(void)
{
	al_fetcher *f = NULL;
	char url[512], local[PATH_MAX];
	int whole = 0, fd = dst_file();
	long whole0;
	uint64_t size = 0;
	struct stat st;

	ctl("ranges=0", "GET");
	whole0 = ctl("", "whole");
	CHECK_OK(al_fetcher_new(&f));
	snprintf(url, sizeof(url), "%s/data.bin", base);
	CHECK_OK(al_fetcher_stat(&size, NULL, f, url));
	CHECK_EQ_INT(size, SIZE);
	CHECK_OK(al_fetcher_fetch(f, url, 100000, 1000, fd, &whole));
	CHECK_EQ_INT(whole, 1);
	check_bytes(fd, 0, src_data, SIZE);
	CHECK(fstat(fd, &st) == 0 && st.st_size == SIZE);
	/* known now: straight to the whole object */
	close(fd);
	fd = dst_file();
	whole = 0;
	CHECK_OK(al_fetcher_fetch(f, url, 5, 10, fd, &whole));
	CHECK_EQ_INT(whole, 1);
	check_bytes(fd, 0, src_data, SIZE);
	al_fetcher_free(f);
	/* a fresh fetcher asking from offset 0 for at least the size gets it in one GET */
	CHECK_OK(al_fetcher_new(&f));
	close(fd);
	fd = dst_file();
	CHECK_OK(al_fetcher_fetch(f, url, 0, SIZE, fd, &whole));
	CHECK_EQ_INT(whole, 1);
	check_bytes(fd, 0, src_data, SIZE);
	path_in(local, root, "big.bin");
	snprintf(url, sizeof(url), "%s/big.bin", base);
	check_stream(f, url, local);
	CHECK(ctl("", "whole") >= whole0 + 4);
	al_fetcher_free(f);
	close(fd);
	ctl("ranges=1", "GET");
}

/* Bodies cut short: with the length announced (curl notices) and without (our count does);
 * retried, then AL_EIO. The next read after the fault works. */
static void test_truncated(void)
{
	al_fetcher *f = NULL;
	char url[512];
	int whole = 0, fd = dst_file();
	long gets0;
	hash_sink s = {0};

	CHECK_OK(al_fetcher_new(&f));
	snprintf(url, sizeof(url), "%s/data.bin", base);
	gets0 = ctl("truncate=1", "GET");
	CHECK_EQ_INT(al_fetcher_fetch(f, url, 1000, 50000, fd, &whole), AL_EIO);
	CHECK(ctl("", "GET") >= gets0 + 3);   /* retried */
	CHECK_OK(al_hasher_new(&s.h));
	CHECK_EQ_INT(al_fetcher_stream(f, url, sink, &s), AL_EIO);
	al_hasher_free(s.h);
	gets0 = ctl("truncate=0&nolength=1", "GET");
	CHECK_EQ_INT(al_fetcher_fetch(f, url, 1000, 50000, fd, &whole), AL_EIO);
	CHECK(strstr(al_error_last(), "truncated") != NULL);
	CHECK(ctl("", "GET") >= gets0 + 3);
	/* without Range support and without a length: the HEAD's size tells */
	ctl("ranges=0", "GET");
	al_fetcher_free(f);
	CHECK_OK(al_fetcher_new(&f));
	CHECK_EQ_INT(al_fetcher_fetch(f, url, 1000, 50000, fd, &whole), AL_EIO);
	CHECK(strstr(al_error_last(), "truncated") != NULL);
	ctl("ranges=1&nolength=0", "GET");
	al_fetcher_free(f);
	CHECK_OK(al_fetcher_new(&f));
	CHECK_OK(al_fetcher_fetch(f, url, 1000, 50000, fd, &whole));
	check_bytes(fd, 1000, src_data + 1000, 50000);
	al_fetcher_free(f);
	close(fd);
}

typedef struct {
	al_fetcher *f;
	int fd;
	uint64_t off, len;
	int rc;
} job;

static void *run_job(void *arg)
{
	job *j = arg;
	char url[512];
	int whole = 0;
	snprintf(url, sizeof(url), "%s/data.bin", base);
	for (int i = 0; i < 5 && j->rc == 0; i++)
		j->rc = al_fetcher_fetch(j->f, url, j->off, j->len, j->fd, &whole);
	return NULL;
}

static void test_threads(al_fetcher *f)
{
	pthread_t th[6];
	job jobs[6];
	int fd = dst_file();

	for (int i = 0; i < 6; i++) {
		jobs[i] = (job){f, fd, (uint64_t)i * 50000, 50000, 0};
		CHECK(pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(jobs[i].rc, 0);
	}
	check_bytes(fd, 0, src_data, SIZE);
	close(fd);
}

/* Download links that redirect (to a CDN): followed, relative ones too, loops refused. */
static void test_redirects(al_fetcher *f)
{
	char url[512], local[PATH_MAX];
	uint64_t size = 0;
	int whole = 0, fd = dst_file();
	const char *paths[] = {"_redirect/1/data.bin", "_redirect/3/data.bin", "_rel/data.bin"};

	path_in(local, root, "data.bin");
	for (int i = 0; i < 3; i++) {
		snprintf(url, sizeof(url), "%s/%s", base, paths[i]);
		CHECK_OK(al_fetcher_stat(&size, NULL, f, url));
		CHECK_EQ_INT(size, SIZE);
		CHECK_OK(al_fetcher_fetch(f, url, 1000 * (uint64_t)i, 5000, fd, &whole));
		CHECK_EQ_INT(whole, 0);
		check_bytes(fd, 1000 * (uint64_t)i, src_data + 1000 * i, 5000);
		check_stream(f, url, local);
	}
	snprintf(url, sizeof(url), "%s/_redirect/2/missing.bin", base);
	CHECK_EQ_INT(al_fetcher_stat(&size, NULL, f, url), AL_ENOTFOUND);
	snprintf(url, sizeof(url), "%s/_redirect/loop/data.bin", base);
	CHECK_EQ_INT(al_fetcher_stat(&size, NULL, f, url), AL_EIO);
	CHECK(strstr(al_error_last(), "redirects") != NULL);
	CHECK_EQ_INT(al_fetcher_fetch(f, url, 0, 10, fd, &whole), AL_EIO);
	close(fd);
}

/* gs:// through STORAGE_EMULATOR_HOST (the server's GCS paths), no credentials. */
static void test_gs(al_fetcher *f)
{
	char host[64], local[PATH_MAX], *etag = NULL;
	uint64_t size = 0;
	int whole = 0, fd = dst_file();

	snprintf(host, sizeof(host), "127.0.0.1:%d", port);
	setenv("STORAGE_EMULATOR_HOST", host, 1);
	CHECK_OK(al_fetcher_stat(&size, &etag, f, "gs://bkt/dir/obj.bin"));
	CHECK_EQ_INT(size, SIZE);
	CHECK(etag && *etag);
	free(etag);
	CHECK_OK(al_fetcher_fetch(f, "gs://bkt/dir/obj.bin", 777, 3000, fd, &whole));
	CHECK_EQ_INT(whole, 0);
	check_bytes(fd, 777, src_data + 777, 3000);
	path_in(local, root, "bkt/dir/obj.bin");
	check_stream(f, "gs://bkt/dir/obj.bin", local);
	CHECK_EQ_INT(al_fetcher_stat(&size, NULL, f, "gs://bkt/none"), AL_ENOTFOUND);
	/* "http://" prefix accepted too */
	snprintf(host, sizeof(host), "http://127.0.0.1:%d", port);
	setenv("STORAGE_EMULATOR_HOST", host, 1);
	CHECK_OK(al_fetcher_stat(&size, NULL, f, "gs://bkt/dir/obj.bin"));
	unsetenv("STORAGE_EMULATOR_HOST");
	close(fd);
}

/* ---- s3:// against s3rver ------------------------------------------------------------- */

static int start_s3rver(char *endpoint, size_t size)
{
	char script[PATH_MAX], data[PATH_MAX], log_path[PATH_MAX], hostport[512];

	if (!test_have_node() || test_find_source(script, sizeof(script),
		"scripts/node_modules/s3rver/bin/s3rver.js"))
		return 77;
	path_in(data, tmp, "s3data");
	path_in(log_path, tmp, "s3rver.log");
	if (mkdir(data, 0700) != 0)
		return -1;
	s3_pid = test_start_server(hostport, sizeof(hostport), log_path, "S3rver listening on ",
		(char *[]){"node", script, "-d", data, "-a", "127.0.0.1", "-p", "0",
			"--configure-bucket", BUCKET, NULL});
	if (s3_pid < 0)
		return -1;
	snprintf(endpoint, size, "http://%s", hostport);
	return 0;
}

static void test_s3(al_fetcher *f)
{
	char endpoint[600], local[PATH_MAX], hash[AL_HASH_HEX_LEN + 1], *url = NULL, *etag = NULL;
	char missing[700];
	al_blobs_backend *b = NULL;
	uint64_t size = 0;
	int whole = 0, fd, rc = start_s3rver(endpoint, sizeof(endpoint));

	if (rc == 77) {
		printf("s3rver not installed (scripts/node_modules): s3:// tests skipped\n");
		return;
	}
	CHECK_EQ_INT(rc, 0);
	if (rc)
		return;
	setenv("AWS_ENDPOINT_URL_S3", endpoint, 1);
	setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
	unsetenv("AWS_SESSION_TOKEN");
	unsetenv("AWS_REGION");
	/* the object, put by the S3 blob store: its URI is an s3:// URL */
	path_in(local, root, "data.bin");
	fd = open(local, O_RDONLY);
	CHECK_OK(al_hash_fd(hash, &size, fd));
	close(fd);
	CHECK_OK(al_blobs_s3_new(&b, BUCKET "/imported"));
	if (!b)
		return;
	CHECK_OK(b->put(b, hash, local, size, 0));
	url = b->uri(b, hash);
	CHECK(url && strncmp(url, "s3://" BUCKET "/imported/", strlen("s3://" BUCKET "/imported/")) == 0);
	CHECK_OK(al_fetcher_stat(&size, &etag, f, url));
	CHECK_EQ_INT(size, SIZE);
	CHECK(etag != NULL);
	free(etag);
	fd = dst_file();
	CHECK_OK(al_fetcher_fetch(f, url, 4096, 100000, fd, &whole));
	CHECK_EQ_INT(whole, 0);
	check_bytes(fd, 4096, src_data + 4096, 100000);
	close(fd);
	check_stream(f, url, local);
	snprintf(missing, sizeof(missing), "s3://%s/imported/none", BUCKET);
	CHECK_EQ_INT(al_fetcher_stat(&size, NULL, f, missing), AL_ENOTFOUND);
	CHECK_EQ_INT(al_fetcher_stream(f, missing, sink, NULL), AL_ENOTFOUND);
	/* no credentials: one clear line, nothing sent */
	unsetenv("AWS_ACCESS_KEY_ID");
	CHECK_EQ_INT(al_fetcher_stat(&size, NULL, f, url), AL_EACCES);
	CHECK(strstr(al_error_last(), "AWS_ACCESS_KEY_ID") != NULL);
	setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
	free(url);
	al_blobs_free(b);
}

static void cleanup(void)
{
	char cmd[PATH_MAX + 16];
	if (srv_pid > 0) {
		kill(srv_pid, SIGKILL);
		waitpid(srv_pid, NULL, 0);
	}
	test_stop_server(&s3_pid);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp);
}

int main(void)
{
	char p[PATH_MAX];
	al_fetcher *f = NULL;

	CHECK(mkdtemp(tmp) != NULL);
	path_in(root, tmp, "root");
	CHECK(mkdir(root, 0700) == 0);
	path_in(p, root, "data.bin");
	make_file(p, SIZE, 42, src_data);
	path_in(p, root, "big.bin");
	make_file(p, BIG_SIZE, 9, NULL);
	path_in(p, root, "empty");
	make_file(p, 0, 1, NULL);
	path_in(p, root, "sub");
	CHECK(mkdir(p, 0700) == 0);
	path_in(p, root, "sub/with space.bin");
	make_file(p, 1000, 3, NULL);
	path_in(p, root, "bkt");
	CHECK(mkdir(p, 0700) == 0);
	path_in(p, root, "bkt/dir");
	CHECK(mkdir(p, 0700) == 0);
	path_in(p, root, "bkt/dir/obj.bin");
	make_file(p, SIZE, 42, NULL);
	unsetenv("STORAGE_EMULATOR_HOST");

	port = start_server();
	CHECK(port > 0);
	if (port > 0) {
		snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
		CHECK_OK(al_fetcher_new(&f));
		test_bad_urls(f);
		test_stat(f);
		test_ranges(f);
		test_stream(f);
		test_threads(f);
		test_redirects(f);
		test_gs(f);
		test_checksums(f);
		test_no_range();
		test_truncated();
		test_s3(f);
		al_fetcher_free(f);
	}
	cleanup();
	CHECK_DONE();
}
