/* aletheia unit tests: source files of known content for the blob store tests, and checks of
 * ranges fetched back from a store. */
#ifndef AL_TEST_BLOB_FILES_H
#define AL_TEST_BLOB_FILES_H

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/blobs/blobs.h"
#include "aletheia/hash.h"
#include "check.h"

/* Writes size pseudo-random bytes to path (seeded), and its hash into hash. */
static inline void make_file(char *hash, const char *path, size_t size, unsigned seed)
{
	char *buf = malloc(1 << 20);
	uint64_t got = 0;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0 && buf);
	for (size_t off = 0; fd >= 0 && buf && off < size; off += 1 << 20) {
		size_t n = size - off < (1u << 20) ? size - off : (1u << 20);
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			buf[i] = (char)(seed >> 16);
		}
		CHECK(pwrite(fd, buf, n, (off_t)off) == (ssize_t)n);
	}
	CHECK_OK(al_hash_fd(hash, &got, fd));
	CHECK_EQ_INT(got, size);
	close(fd);
	free(buf);
}

/* Fetches [off, off+len) into a fresh file (in tmpdir) at dst_off and compares with the source bytes. */
static inline void check_range(al_blobs_backend *b, const char *hash, int src, uint64_t off,
	uint64_t len, uint64_t dst_off, const char *tmpdir)
{
	char dst_path[PATH_MAX], *want = malloc(len), *got = malloc(len);
	int fd;

	snprintf(dst_path, sizeof(dst_path), "%s/range", tmpdir);
	fd = open(dst_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && want && got);
	CHECK_OK(b->fetch(b, hash, off, len, fd, dst_off));
	CHECK(pread(src, want, len, (off_t)off) == (ssize_t)len);
	CHECK(pread(fd, got, len, (off_t)dst_off) == (ssize_t)len);
	CHECK(memcmp(want, got, len) == 0);
	struct stat st;
	CHECK(fstat(fd, &st) == 0 && (uint64_t)st.st_size == dst_off + len);
	close(fd);
	free(want);
	free(got);
}

#endif
