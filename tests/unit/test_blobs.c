/* aletheia unit tests: the local-folder blob store (put, fetch, verification of damaged blobs) and
 * blob-store URIs. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>
#include "core/blobs/blobs.h"
#include "aletheia/hash.h"
#include "check.h"

static char root[64];

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK_EQ_INT(write(fd, data, len), (long long)len);
	close(fd);
}

static int count_files(const char *dir)
{
	char cmd[256];
	int n = 0;
	snprintf(cmd, sizeof(cmd), "find %s -type f | wc -l", dir);
	FILE *p = popen(cmd, "r");
	if (p) {
		if (fscanf(p, "%d", &n) != 1)
			n = -1;
		pclose(p);
	}
	return n;
}

/* verify() through the table; AL_ERROR when the backend has none. */
static int verify(int *fd, al_blobs_backend *b, const char *hash, uint64_t size, unsigned flags)
{
	CHECK(b->verify != NULL);
	return b->verify ? b->verify(fd, b, hash, size, flags) : AL_ERROR;
}

/* Overwrites len bytes of the blob file at off (as bit rot or a stray write would), keeping the
 * mtime when keep_mtime. */
static void damage(const char *path, uint64_t off, const char *bytes, size_t len, int keep_mtime)
{
	struct stat st;
	CHECK(stat(path, &st) == 0);
	CHECK(chmod(path, 0644) == 0);
	int fd = open(path, O_WRONLY);
	CHECK(fd >= 0);
	CHECK_EQ_INT(pwrite(fd, bytes, len, (off_t)off), (long long)len);
	close(fd);
	CHECK(chmod(path, 0444) == 0);
	if (keep_mtime) {
		struct timespec ts[2] = {st.st_atim, st.st_mtim};
		CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0);
	}
}

static int same_content(const char *path, const void *data, size_t len)
{
	char *buf = malloc(len + 1);
	int fd = open(path, O_RDONLY), ok;
	ok = fd >= 0 && read(fd, buf, len + 1) == (ssize_t)len && memcmp(buf, data, len) == 0;
	if (fd >= 0)
		close(fd);
	free(buf);
	return ok;
}

typedef struct {
	al_blobs_backend *b;
	const char *hash;
	uint64_t size;
	int rc;
} verifier;

static void *verify_thread(void *arg)
{
	verifier *v = arg;
	int fd = -1;
	v->rc = v->b->verify(&fd, v->b, v->hash, v->size, 0);
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* Issue item 8: a damaged local blob is never served, and a new copy of its content replaces it. */
static void test_verify(const char *dir)
{
	al_blobs_backend *b = NULL;
	char src[256], obj[400], hash[AL_HASH_HEX_LEN + 1], stamp[64], aside[300];
	size_t n = 3 * 1024 * 1024 + 5;
	char *data = malloc(n);
	uint64_t size = 0;
	int fd = -1;

	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 7 + (i >> 12));
	al_hash_buffer(hash, data, n);
	snprintf(src, sizeof(src), "%s/v-src.bin", root);
	snprintf(obj, sizeof(obj), "%s/%.2s/%s", dir, hash, hash);
	snprintf(aside, sizeof(aside), "%s/damaged", dir);
	write_file(src, data, n);
	CHECK_OK(al_blobs_file_new(&b, dir));

	/* Absent. */
	CHECK_EQ_INT(verify(&fd, b, hash, n, 0), AL_ENOTFOUND);
	CHECK(fd == -1);
	CHECK(b->stat && b->stat(&size, b, hash) == AL_ENOTFOUND);

	/* A blob written by put is known good: its size and mtime are recorded with it. */
	CHECK_OK(b->put(b, hash, src, n, 0));
	CHECK(getxattr(obj, "user.aletheia.verified", stamp, sizeof(stamp)) > 0);
	CHECK_OK(verify(&fd, b, hash, n, 0));
	CHECK(fd >= 0);
	{
		char head[8];
		CHECK_EQ_INT(pread(fd, head, 8, 0), 8);
		CHECK(memcmp(head, data, 8) == 0);
		close(fd);
		fd = -1;
	}
	CHECK(b->stat && b->stat(&size, b, hash) == 0 && size == n);

	/* The reproduction: 4 bytes overwritten. The next open hashes it, refuses it and
	 * moves it aside; nothing is served. */
	damage(obj, 1000, "XXXX", 4, 0);
	CHECK_EQ_INT(verify(&fd, b, hash, n, 0), AL_EIO);
	CHECK(fd == -1);
	CHECK(strstr(al_error_last(), "damaged") != NULL);
	CHECK(strstr(al_error_last(), "/damaged/") != NULL);
	CHECK(access(obj, F_OK) != 0);
	CHECK_EQ_INT(count_files(aside), 1);
	CHECK_EQ_INT(verify(&fd, b, hash, n, 0), AL_ENOTFOUND);
	/* A new copy of the content is stored afresh and reads back right. */
	CHECK_OK(b->put(b, hash, src, n, 0));
	CHECK(same_content(obj, data, n));
	CHECK_OK(verify(NULL, b, hash, n, 0));

	/* Damaged, then put again without any read in between: put checks what is there. */
	damage(obj, n - 3, "zz", 2, 0);
	CHECK_OK(b->put(b, hash, src, n, 0));
	CHECK(same_content(obj, data, n));
	CHECK_EQ_INT(count_files(aside), 2);
	CHECK_OK(verify(NULL, b, hash, n, 0));

	/* Truncated: the size is checked at every open, even with a matching record. */
	{
		struct stat st;
		CHECK(stat(obj, &st) == 0);
		CHECK(chmod(obj, 0644) == 0 && truncate(obj, (off_t)n - 1) == 0 && chmod(obj, 0444) == 0);
		CHECK_EQ_INT(verify(&fd, b, hash, n, 0), AL_EIO);
		CHECK(strstr(al_error_last(), "bytes") != NULL);
		CHECK_EQ_INT(count_files(aside), 3);
		CHECK_OK(b->put(b, hash, src, n, AL_BLOBS_PUT_MOVE));
		CHECK(same_content(obj, data, n));
		write_file(src, data, n);    /* moved away: write it again */
	}

	/* Bit rot that keeps size and mtime passes the cheap check (documented) but not a full one. */
	damage(obj, 77, "!", 1, 1);
	CHECK_OK(verify(NULL, b, hash, n, 0));
	CHECK_EQ_INT(verify(NULL, b, hash, n, AL_BLOBS_VERIFY_FULL), AL_EIO);
	CHECK(access(obj, F_OK) != 0);
	CHECK_EQ_INT(count_files(aside), 4);
	CHECK_OK(b->put(b, hash, src, n, 0));
	CHECK_OK(verify(NULL, b, hash, n, AL_BLOBS_VERIFY_FULL));

	/* A good blob without a record (stored by an older version) is hashed once and recorded. */
	CHECK(removexattr(obj, "user.aletheia.verified") == 0);
	CHECK(getxattr(obj, "user.aletheia.verified", stamp, sizeof(stamp)) < 0);
	CHECK_OK(verify(NULL, b, hash, n, 0));
	CHECK(getxattr(obj, "user.aletheia.verified", stamp, sizeof(stamp)) > 0);
	CHECK_EQ_INT(count_files(aside), 4);

	/* Many first openers of an unrecorded blob: all get it, one verdict. */
	{
		pthread_t th[6];
		verifier v[6];
		CHECK(removexattr(obj, "user.aletheia.verified") == 0);
		for (int i = 0; i < 6; i++) {
			v[i] = (verifier){b, hash, n, -99};
			pthread_create(&th[i], NULL, verify_thread, &v[i]);
		}
		for (int i = 0; i < 6; i++) {
			pthread_join(th[i], NULL);
			CHECK_OK(v[i].rc);
		}
	}
	al_blobs_free(b);
	unlink(src);
	free(data);
}

int main(void)
{
	al_blobs_backend *b = NULL;
	char src[128], dir[128], uri[160], hash[AL_HASH_HEX_LEN + 1], hash2[AL_HASH_HEX_LEN + 1];
	char objdir[256], tmpdir[160];
	char data[5000];
	struct stat st;

	strcpy(root, "/tmp/al-test-blobs-XXXXXX");
	CHECK(mkdtemp(root) != NULL);
	snprintf(src, sizeof(src), "%s/src.bin", root);
	snprintf(dir, sizeof(dir), "%s/store/nested", root);
	snprintf(uri, sizeof(uri), "file://%s", dir);
	snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", dir);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 31 + 7);
	write_file(src, data, sizeof(data));
	al_hash_buffer(hash, data, sizeof(data));

	/* Bad URIs. */
	unsetenv("AWS_ACCESS_KEY_ID"); /* s3:// needs credentials (tests/unit/test_blobs_s3.c) */
	CHECK(al_blobs_open(&b, "s3://bucket/prefix") == AL_EINVAL && b == NULL);
	CHECK(strstr(al_error_last(), "AWS_ACCESS_KEY_ID") != NULL);
	CHECK(al_blobs_open(&b, "gs://Bad_Bucket") == AL_EINVAL && b == NULL); /* tests/unit/test_blobs_gcs.c */
	CHECK(strstr(al_error_last(), "not a valid bucket name") != NULL);
	CHECK(al_blobs_open(&b, "http://x/y") == AL_EINVAL);
	CHECK(strstr(al_error_last(), "file:///DIR") != NULL);
	CHECK(al_blobs_open(&b, "/plain/path") == AL_EINVAL);
	CHECK(al_blobs_open(&b, "file://relative/dir") == AL_EINVAL);
	CHECK(al_blobs_open(&b, "") == AL_EINVAL);
	CHECK(al_blobs_open(&b, NULL) == AL_EINVAL);

	/* Open creates the folder (with parents). */
	CHECK_OK(al_blobs_open(&b, uri));
	CHECK(b != NULL);
	if (!b)
		CHECK_DONE();
	CHECK_EQ_INT(b->version, AL_BLOBS_BACKEND_VERSION);
	CHECK_EQ_STR(b->name, "file");
	CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));

	/* Missing blob. */
	int present = -1;
	char *path = NULL;
	CHECK_OK(b->exists(&present, b, hash));
	CHECK_EQ_INT(present, 0);
	CHECK(b->local_path(&path, b, hash) == AL_ENOTFOUND && path == NULL);
	CHECK(b->fetch(b, hash, 0, 1, 1, 0) == AL_ENOTFOUND);

	/* Put, twice: one object, read-only, at DIR/xx/hash; no temp files left. */
	CHECK_OK(b->put(b, hash, src, sizeof(data), 0));
	CHECK_OK(b->put(b, hash, src, sizeof(data), 0));
	snprintf(objdir, sizeof(objdir), "%s/%.2s/%s", dir, hash, hash);
	CHECK(stat(objdir, &st) == 0);
	CHECK_EQ_INT(st.st_mode & 0777, 0444);
	CHECK_EQ_INT(st.st_size, sizeof(data));
	CHECK_EQ_INT(count_files(dir), 1);
	CHECK_EQ_INT(count_files(tmpdir), 0);
	CHECK_OK(b->exists(&present, b, hash));
	CHECK_EQ_INT(present, 1);
	CHECK_OK(b->local_path(&path, b, hash));
	CHECK_EQ_STR(path, objdir);
	free(path);
	char *u = b->uri(b, hash);
	char want_uri[320];
	snprintf(want_uri, sizeof(want_uri), "file://%s", objdir);
	CHECK_EQ_STR(u, want_uri);
	free(u);

	/* The blob is a copy: changing the source afterwards does not change it. */
	write_file(src, "changed", 7);
	uint64_t size = 0;
	int ofd = open(objdir, O_RDONLY);
	CHECK_OK(al_hash_fd(hash2, &size, ofd));
	close(ofd);
	CHECK_EQ_STR(hash2, hash);
	CHECK_EQ_INT(size, sizeof(data));

	/* A put whose declared size does not match the file is refused and leaves nothing. */
	al_hash_buffer(hash2, "changed", 7);
	CHECK(b->put(b, hash2, src, 99, 0) == AL_EIO);
	CHECK_OK(b->exists(&present, b, hash2));
	CHECK_EQ_INT(present, 0);
	CHECK_EQ_INT(count_files(tmpdir), 0);
	CHECK_OK(b->put(b, hash2, src, 7, 0));
	CHECK_EQ_INT(count_files(dir), 2);

	/* A handed-over source is renamed into place, not copied; present content leaves it. */
	{
		char moved[160], mhash[AL_HASH_HEX_LEN + 1], mobj[400];
		snprintf(moved, sizeof(moved), "%s/moved.bin", root);
		write_file(moved, "moved!", 6);
		al_hash_buffer(mhash, "moved!", 6);
		CHECK_OK(b->put(b, mhash, moved, 6, AL_BLOBS_PUT_MOVE));
		CHECK(access(moved, F_OK) != 0);
		snprintf(mobj, sizeof(mobj), "%s/%.2s/%s", dir, mhash, mhash);
		CHECK(stat(mobj, &st) == 0 && st.st_size == 6 && (st.st_mode & 0777) == 0444);
		CHECK_EQ_INT(count_files(dir), 3);
		write_file(moved, "moved!", 6);
		CHECK_OK(b->put(b, mhash, moved, 6, AL_BLOBS_PUT_MOVE));
		CHECK(access(moved, F_OK) == 0);
		CHECK_EQ_INT(count_files(dir), 3);
		unlink(moved);
	}

	/* Fetch ranges into a file at an offset. */
	char dst[128];
	snprintf(dst, sizeof(dst), "%s/dst.bin", root);
	int dfd = open(dst, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(dfd >= 0);
	CHECK_OK(b->fetch(b, hash, 0, sizeof(data), dfd, 0));
	char back[sizeof(data)];
	CHECK_EQ_INT(pread(dfd, back, sizeof(back), 0), sizeof(back));
	CHECK(memcmp(back, data, sizeof(data)) == 0);
	CHECK_OK(b->fetch(b, hash, 1000, 123, dfd, 7000));
	CHECK_EQ_INT(pread(dfd, back, 123, 7000), 123);
	CHECK(memcmp(back, data + 1000, 123) == 0);
	CHECK_OK(b->fetch(b, hash, sizeof(data), 0, dfd, 0));
	CHECK(b->fetch(b, hash, 4990, 11, dfd, 0) == AL_EINVAL);
	CHECK(b->fetch(b, hash, 6000, 1, dfd, 0) == AL_EINVAL);
	/* Fetch into a pipe (copy_file_range cannot; the read/write fallback does). */
	int pfd[2];
	CHECK(pipe(pfd) == 0);
	CHECK_OK(b->fetch(b, hash, 10, 20, pfd[1], 0));
	CHECK_EQ_INT(read(pfd[0], back, 20), 20);
	CHECK(memcmp(back, data + 10, 20) == 0);
	close(pfd[0]);
	close(pfd[1]);
	close(dfd);

	/* Bad hashes and sources. */
	CHECK(b->put(b, "nothex", src, 7, 0) == AL_EINVAL);
	CHECK(b->exists(&present, b, "ABCDEF0123456789abcdef0123456789") == AL_EINVAL);
	CHECK(b->local_path(&path, b, "../../etc/passwd") == AL_EINVAL);
	CHECK(b->put(b, "00000000000000000000000000000000", "/nonexistent/file", 1, 0) == AL_ENOTFOUND);
	al_blobs_free(b);
	al_blobs_free(NULL);

	/* al_blobs_file_new directly, on the existing folder. */
	CHECK_OK(al_blobs_file_new(&b, dir));
	CHECK_OK(b->exists(&present, b, hash));
	CHECK_EQ_INT(present, 1);
	al_blobs_free(b);

	test_verify(dir);

	char cmd[256];
	snprintf(cmd, sizeof(cmd), "chmod -R u+w %s && rm -rf %s", root, root);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_DONE();
}
