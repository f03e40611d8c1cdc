/* aletheia: the S3 blob store against s3rver (npm, scripts/node_modules, started here on a free
 * loopback port): put/exists/fetch, create-only puts, multipart above 64 MiB, errors. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "core/blobs/blobs.h"
#include "aletheia/hash.h"
#include "check.h"
#include "blob_files.h"
#include "server.h"

#define BUCKET "test-bucket"

static pid_t srv_pid;
static char tmp[] = "/tmp/al_test_blobs_s3_XXXXXX";
static char log_path[PATH_MAX], endpoint[600];

/* Starts s3rver (port 0: it picks a free one) and waits for "S3rver listening on H:P". */
static int start_s3rver(void)
{
	char script[PATH_MAX], data[PATH_MAX], hostport[512];

	if (!test_have_node() || test_find_source(script, sizeof(script),
		"scripts/node_modules/s3rver/bin/s3rver.js"))
		return 77;
	snprintf(data, sizeof(data), "%s/data", tmp);
	snprintf(log_path, sizeof(log_path), "%s/s3rver.log", tmp);
	if (mkdir(data, 0700) != 0)
		return -1;
	srv_pid = test_start_server(hostport, sizeof(hostport), log_path, "S3rver listening on ",
		(char *[]){"node", script, "-d", data, "-a", "127.0.0.1", "-p", "0",
			"--configure-bucket", BUCKET, NULL});
	if (srv_pid < 0)
		return -1;
	snprintf(endpoint, sizeof(endpoint), "http://%s", hostport);
	return 0;
}

static void stop_s3rver(void)
{
	test_stop_server(&srv_pid);
}

static void cleanup(void)
{
	char cmd[PATH_MAX + 16];
	stop_s3rver();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp);
}

/* Lines of the s3rver log holding both needles. */
static int log_count(const char *a, const char *b)
{
	char line[1024];
	int n = 0;
	FILE *f = fopen(log_path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, a) && strstr(line, b))
			n++;
	if (f)
		fclose(f);
	return n;
}

static void test_open_errors(void)
{
	al_blobs_backend *b = NULL;

	CHECK_EQ_INT(al_blobs_open(&b, "s3://"), AL_EINVAL);
	CHECK(b == NULL);
	CHECK_EQ_INT(al_blobs_open(&b, "s3:///prefix"), AL_EINVAL);
	setenv("AWS_ENDPOINT_URL_S3", "ftp://127.0.0.1:1", 1);
	CHECK_EQ_INT(al_blobs_open(&b, "s3://" BUCKET), AL_EINVAL);
	CHECK(strstr(al_error_last(), "ftp://") != NULL);
	setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1/some/path", 1);
	CHECK_EQ_INT(al_blobs_open(&b, "s3://" BUCKET), AL_EINVAL);
	unsetenv("AWS_ENDPOINT_URL_S3");
	/* AWS itself: virtual-hosted URIs, nothing sent on open */
	CHECK_OK(al_blobs_open(&b, "s3://" BUCKET "/p"));
	if (b) {
		char *u = b->uri(b, "0123456789abcdef0123456789abcdef");
		CHECK_EQ_STR(u, "s3://" BUCKET "/p/01/0123456789abcdef0123456789abcdef");
		free(u);
		CHECK_EQ_STR(b->name, "s3");
	}
	al_blobs_free(b);
}

static void test_small(al_blobs_backend *b)
{
	char src[PATH_MAX], hash[AL_HASH_HEX_LEN + 1], *u, *lp = (char *)"x";
	char missing[] = "ffffffffffffffffffffffffffffffff";
	int present = -1, fd;
	const size_t size = 100000;

	snprintf(src, sizeof(src), "%s/small", tmp);
	make_file(hash, src, size, 7);

	CHECK_OK(b->exists(&present, b, hash));
	CHECK_EQ_INT(present, 0);
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_OK(b->exists(&present, b, hash));
	CHECK_EQ_INT(present, 1);
	/* twice: still one object, stored once */
	CHECK_OK(b->put(b, hash, src, size, AL_BLOBS_PUT_MOVE));
	CHECK(access(src, R_OK) == 0); /* a remote store never consumes the source */
	CHECK_EQ_INT(log_count("Stored object", hash), 1);

	u = b->uri(b, hash);
	char want[256];
	snprintf(want, sizeof(want), "s3://" BUCKET "/runs/p1/%.2s/%s", hash, hash);
	CHECK_EQ_STR(u, want);
	free(u);
	CHECK_EQ_INT(b->local_path(&lp, b, hash), AL_ENOTFOUND);
	CHECK(lp == NULL);

	fd = open(src, O_RDONLY);
	CHECK(fd >= 0);
	check_range(b, hash, fd, 0, size, 0, tmp);
	check_range(b, hash, fd, 5, 1, 0, tmp);
	check_range(b, hash, fd, 1000, 4000, 7, tmp);
	check_range(b, hash, fd, size - 10, 10, 12345, tmp);
	close(fd);

	/* a range past the end, and one running over it (fewer bytes than asked) */
	char dst[PATH_MAX];
	snprintf(dst, sizeof(dst), "%s/dst", tmp);
	fd = open(dst, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(b->fetch(b, hash, size + 10, 5, fd, 0) != 0);
	CHECK_EQ_INT(b->fetch(b, hash, size - 10, 20, fd, 0), AL_EIO);
	CHECK(strstr(al_error_last(), "10 bytes received") != NULL);
	CHECK_OK(b->fetch(b, hash, 0, 0, fd, 0));
	/* s3rver reads "bytes=0-0" as "bytes=0-" and sends it all: more than asked is refused
	 * (and nothing past the asked length reaches the file) */
	CHECK(ftruncate(fd, 0) == 0);
	CHECK_EQ_INT(b->fetch(b, hash, 0, 1, fd, 0), AL_EIO);
	CHECK(strstr(al_error_last(), "longer than the 1 bytes expected") != NULL);
	struct stat st;
	CHECK(fstat(fd, &st) == 0 && st.st_size <= 1);

	/* missing blobs */
	CHECK_OK(b->exists(&present, b, missing));
	CHECK_EQ_INT(present, 0);
	{
		/* stat (for fsck): the stored size, or AL_ENOTFOUND */
		uint64_t sz = 1;
		CHECK_EQ_INT(b->stat(&sz, b, missing), AL_ENOTFOUND);
		CHECK_OK(b->stat(&sz, b, hash));
		CHECK_EQ_INT(sz, size);
		CHECK(b->verify == NULL);    /* no local files: the cache verifies what it streams */
	}
	CHECK_EQ_INT(b->fetch(b, missing, 0, 10, fd, 0), AL_ENOTFOUND);
	CHECK(strstr(al_error_last(), BUCKET) && strstr(al_error_last(), missing) &&
		strstr(al_error_last(), "404"));
	close(fd);

	/* bad input */
	CHECK_EQ_INT(b->exists(&present, b, "not-a-hash"), AL_EINVAL);
	CHECK_EQ_INT(b->put(b, "ABC", src, size, 0), AL_EINVAL);
	CHECK_EQ_INT(b->put(b, missing, src, size + 1, 0), AL_EINVAL);
	CHECK_EQ_INT(b->put(b, missing, "/nonexistent/file", 1, 0), AL_EIO);
	CHECK_OK(b->exists(&present, b, missing));
	CHECK_EQ_INT(present, 0);
}

/* The file s3rver keeps an object's bytes in (its data folder: KEY._S3rver_object), and the MD5
 * it answers as the ETag (KEY._S3rver_object.md5; recomputed when missing). */
static void object_file(char *out, size_t size, const char *hash, const char *suffix)
{
	snprintf(out, size, "%s/data/" BUCKET "/runs/p1/%.2s/%s._S3rver_object%s", tmp, hash, hash,
		suffix);
}

/* README "Object storage": an object under the blob's name counts only when its size, and its
 * ETag where that is the MD5, are the content's; another one (damaged in the bucket) is
 * replaced by the next put of the content. */
static void test_damaged(al_blobs_backend *b)
{
	char src[PATH_MAX], obj[PATH_MAX], md5[PATH_MAX], hash[AL_HASH_HEX_LEN + 1];
	const size_t size = 50000;
	int fd;

	snprintf(src, sizeof(src), "%s/damaged", tmp);
	make_file(hash, src, size, 31);
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_EQ_INT(log_count("Stored object", hash), 1);
	object_file(obj, sizeof(obj), hash, "");
	object_file(md5, sizeof(md5), hash, ".md5");
	/* same size, one byte flipped (s3rver then answers the damaged bytes' MD5) */
	fd = open(obj, O_RDWR);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, "\xff\x00", 2, 1000) == 2);
	close(fd);
	CHECK(unlink(md5) == 0);
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_EQ_INT(log_count("Stored object", hash), 2);
	fd = open(src, O_RDONLY);
	check_range(b, hash, fd, 0, size, 0, tmp);
	/* cut short (its ETag file left as it was: the size tells) */
	CHECK(truncate(obj, 1000) == 0);
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_EQ_INT(log_count("Stored object", hash), 3);
	check_range(b, hash, fd, 0, size, 0, tmp);
	/* intact: no upload */
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_EQ_INT(log_count("Stored object", hash), 3);
	close(fd);
	/* a source that no longer hashes to the blob's name is not stored under it */
	fd = open(src, O_RDWR);
	CHECK(pwrite(fd, "x", 1, 0) == 1);
	close(fd);
	CHECK_EQ_INT(b->put(b, "0123456789abcdef0123456789abcdef", src, size, 0), AL_EIO);
	CHECK(strstr(al_error_last(), "changed since it was hashed") != NULL);
	unlink(src);
}

static void test_multipart(al_blobs_backend *b)
{
	char src[PATH_MAX], dst[PATH_MAX], hash[AL_HASH_HEX_LEN + 1], back[AL_HASH_HEX_LEN + 1];
	const size_t size = (size_t)70 << 20;
	uint64_t got = 0;
	int present = 0, fd;

	snprintf(src, sizeof(src), "%s/big", tmp);
	snprintf(dst, sizeof(dst), "%s/big.back", tmp);
	make_file(hash, src, size, 99);
	CHECK_OK(b->put(b, hash, src, size, 0));
	/* 16 MiB parts: 4 whole and a 6 MiB tail */
	CHECK_EQ_INT(log_count("Stored part", "of"), 5);
	CHECK_EQ_INT(log_count("Stored object", hash), 1);
	CHECK_OK(b->exists(&present, b, hash));
	CHECK_EQ_INT(present, 1);

	fd = open(dst, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_OK(b->fetch(b, hash, 0, size, fd, 0));
	CHECK_OK(al_hash_fd(back, &got, fd));
	CHECK_EQ_INT(got, size);
	CHECK_EQ_STR(back, hash);
	close(fd);
	unlink(dst);
	unlink(src);
}

static void test_bad_credentials(void)
{
	al_blobs_backend *b = NULL;
	int present = -1;

	/* s3rver checks the access key id but not SigV4 signatures, so only a wrong key id shows */
	setenv("AWS_ACCESS_KEY_ID", "NOT-A-KEY", 1);
	CHECK_OK(al_blobs_open(&b, "s3://" BUCKET));
	if (b) {
		CHECK_EQ_INT(b->exists(&present, b, "0123456789abcdef0123456789abcdef"), AL_EACCES);
		CHECK(strstr(al_error_last(), "403") && strstr(al_error_last(), BUCKET));
	}
	al_blobs_free(b);
	setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
}

static void test_stopped(al_blobs_backend *b)
{
	struct timespec t0, t1;
	int present = -1;

	stop_s3rver();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_EQ_INT(b->exists(&present, b, "0123456789abcdef0123456789abcdef"), AL_EIO);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(t1.tv_sec - t0.tv_sec < 30);
	CHECK(strstr(al_error_last(), "127.0.0.1") != NULL);
}

int main(void)
{
	al_blobs_backend *b = NULL;
	int rc;

	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
	unsetenv("AWS_SESSION_TOKEN");
	unsetenv("AWS_REGION");
	unsetenv("AWS_ENDPOINT_URL");
	unsetenv("AWS_ENDPOINT_URL_S3");
	test_open_errors();

	rc = start_s3rver();
	atexit(cleanup);
	if (rc == 77) {
		fprintf(stderr, "node or scripts/node_modules/s3rver missing: skipped\n");
		return 77;
	}
	CHECK_EQ_INT(rc, 0);
	if (rc)
		CHECK_DONE();
	setenv("AWS_ENDPOINT_URL", endpoint, 1);
	CHECK_OK(al_blobs_open(&b, "s3://" BUCKET "/runs/p1/"));
	if (!b)
		CHECK_DONE();
	test_small(b);
	test_damaged(b);
	test_multipart(b);
	test_bad_credentials();
	test_stopped(b);
	al_blobs_free(b);
	CHECK_DONE();
}
