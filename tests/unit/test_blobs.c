/* aletheia unit tests: the local-folder blob store and blob-store URIs. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "aletheia/blobs.h"
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

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "chmod -R u+w %s && rm -rf %s", root, root);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_DONE();
}
