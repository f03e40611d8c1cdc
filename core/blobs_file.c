/* aletheia: the local-folder blob store: objects at DIR/<xx>/<hash>, read-only, written through
 * DIR/tmp/ with fsync and a create-only rename so a blob is never seen half-written or overwritten. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>
#include "aletheia/blobs.h"
#include "aletheia/hash.h"
#include "blobs_internal.h"
#include "util.h"

#define COPY_BLOCK (1u << 20)

typedef struct {
	al_blobs_backend base;
	char *dir;    /* absolute, no trailing slash */
} file_blobs;

static char *object_path(const file_blobs *fb, const char *hash)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%.2s/%s", fb->dir, hash, hash) < 0)
		return NULL;
	return p;
}


static int fsync_dir(const char *path)
{
	int rc = 0;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return al_error_set_errno(AL_EIO, errno, "cannot open folder %s to sync it", path);
	if (fsync(fd) != 0)
		rc = al_error_set_errno(AL_EIO, errno, "cannot sync folder %s", path);
	close(fd);
	return rc;
}

/* Writes at off; a pipe or socket (no offsets) gets the bytes in order instead. */
static int write_all(int fd, const char *buf, size_t len, uint64_t off)
{
	int seekable = 1;
	while (len) {
		ssize_t n = seekable ? pwrite(fd, buf, len, (off_t)off) : write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ESPIPE && seekable) {
				seekable = 0;
				continue;
			}
			return al_error_set_errno(al_error_from_errno(errno) == AL_ENOSPC ? AL_ENOSPC : AL_EIO,
				errno, "cannot write blob data");
		}
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Copies up to len bytes (len UINT64_MAX: to end of file) from src at src_off to dst at dst_off;
 * *copied gets the count. copy_file_range first (in-kernel, may reflink), then pread/pwrite. */
static int copy_range(uint64_t *copied, int src, uint64_t src_off, int dst, uint64_t dst_off,
	uint64_t len)
{
	int rc = 0;
	char *buf = NULL;
	uint64_t done = 0;
	int use_cfr = 1;

	while (done < len) {
		size_t want = len - done > COPY_BLOCK ? COPY_BLOCK : (size_t)(len - done);
		ssize_t n;
		if (use_cfr) {
			loff_t in = (loff_t)(src_off + done), out = (loff_t)(dst_off + done);
			n = copy_file_range(src, &in, dst, &out, want, 0);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
				    errno == EBADF || errno == ETXTBSY) {
					use_cfr = 0;
					continue;
				}
				rc = al_error_set_errno(errno == ENOSPC || errno == EDQUOT ? AL_ENOSPC : AL_EIO,
					errno, "cannot copy blob data");
				goto cleanup;
			}
		} else {
			if (!buf && !(buf = malloc(COPY_BLOCK))) {
				rc = al_error_set(AL_ENOMEM, "out of memory for a copy buffer");
				goto cleanup;
			}
			n = pread(src, buf, want, (off_t)(src_off + done));
			if (n < 0) {
				if (errno == EINTR)
					continue;
				rc = al_error_set_errno(AL_EIO, errno, "cannot read blob data");
				goto cleanup;
			}
			if (n > 0 && (rc = write_all(dst, buf, (size_t)n, dst_off + done)) != 0)
				goto cleanup;
		}
		if (n == 0)
			break;
		done += (uint64_t)n;
	}
	*copied = done;
cleanup:
	free(buf);
	return rc;
}

static int file_put(al_blobs_backend *b, const char *hash, const char *src_path, uint64_t size,
	unsigned flags)
{
	file_blobs *fb = (file_blobs *)b;
	int rc = 0, src = -1, tmp = -1;
	char *dst = NULL, *tmp_path = NULL, *sub = NULL;
	struct stat st;
	uint64_t copied = 0;

	if ((rc = al__blobs_check_hash(hash)) != 0)
		goto cleanup;
	if (!(dst = object_path(fb, hash)) || asprintf(&sub, "%s/%.2s", fb->dir, hash) < 0 ||
	    asprintf(&tmp_path, "%s/tmp/put-XXXXXX", fb->dir) < 0) {
		sub = tmp_path = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	if (stat(dst, &st) == 0)
		goto cleanup;    /* content-addressed: present means identical */
	if ((src = open(src_path, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "cannot open %s to store it",
			src_path);
		goto cleanup;
	}
	if ((rc = al__mkdir(sub, 0755)) != 0)
		goto cleanup;
	if ((flags & AL_BLOBS_PUT_MOVE) && fstat(src, &st) == 0 && (uint64_t)st.st_size == size &&
	    fchmod(src, 0444) == 0 && fsync(src) == 0) {
		/* A handed-over file on the same disk is renamed into place: no second copy. */
		if (renameat2(AT_FDCWD, src_path, AT_FDCWD, dst, RENAME_NOREPLACE) == 0) {
			rc = fsync_dir(sub);
			goto cleanup;
		}
		if (errno == EEXIST)
			goto cleanup;    /* identical content won the race */
		/* EXDEV and the like: copy as below */
	}
	/* A private copy otherwise, never link(2): the source (an artifact of a running run) may be
	 * rewritten later, and the blob must stay immutable. FICLONE shares extents when it can. */
	if ((tmp = mkostemp(tmp_path, O_CLOEXEC)) < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno) == AL_ENOSPC ? AL_ENOSPC : AL_EIO, errno,
			"cannot create a temp file in %s/tmp", fb->dir);
		goto cleanup;
	}
	if (ioctl(tmp, FICLONE, src) == 0) {
		if (fstat(tmp, &st) != 0) {
			rc = al_error_set_errno(AL_EIO, errno, "cannot stat %s", tmp_path);
			goto cleanup;
		}
		copied = (uint64_t)st.st_size;
	} else if ((rc = copy_range(&copied, src, 0, tmp, 0, UINT64_MAX)) != 0) {
		goto cleanup;
	}
	if (copied != size) {
		rc = al_error_set(AL_EIO, "%s holds %llu bytes, expected %llu (changed while storing?)",
			src_path, (unsigned long long)copied, (unsigned long long)size);
		goto cleanup;
	}
	if (fchmod(tmp, 0444) != 0 || fsync(tmp) != 0) {
		rc = al_error_set_errno(al_error_from_errno(errno) == AL_ENOSPC ? AL_ENOSPC : AL_EIO, errno,
			"cannot sync blob %s", hash);
		goto cleanup;
	}
	/* Create-only: a concurrent put of the same content may have won; then ours is redundant. */
	if (renameat2(AT_FDCWD, tmp_path, AT_FDCWD, dst, RENAME_NOREPLACE) != 0) {
		int e = errno;
		if (e == EINVAL || e == ENOSYS) {
			if (link(tmp_path, dst) != 0 && errno != EEXIST) {
				rc = al_error_set_errno(AL_EIO, errno, "cannot place blob %s", dst);
				goto cleanup;
			}
		} else if (e != EEXIST) {
			rc = al_error_set_errno(al_error_from_errno(e) == AL_ENOSPC ? AL_ENOSPC : AL_EIO, e,
				"cannot place blob %s", dst);
			goto cleanup;
		}
		/* tmp_path still exists: unlinked below */
	} else {
		free(tmp_path);
		tmp_path = NULL;
	}
	rc = fsync_dir(sub);
cleanup:
	if (tmp >= 0)
		close(tmp);
	if (src >= 0)
		close(src);
	if (tmp >= 0 && tmp_path)
		unlink(tmp_path);
	free(tmp_path);
	free(sub);
	free(dst);
	return rc;
}

static int open_object(int *fd_out, file_blobs *fb, const char *hash)
{
	int rc;
	char *p;
	*fd_out = -1;
	if ((rc = al__blobs_check_hash(hash)) != 0)
		return rc;
	if (!(p = object_path(fb, hash)))
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((*fd_out = open(p, O_RDONLY | O_CLOEXEC)) < 0)
		rc = errno == ENOENT ? al_error_set(AL_ENOTFOUND, "blob %s not found in %s", hash, fb->dir)
			: al_error_set_errno(AL_EIO, errno, "cannot open blob %s", p);
	free(p);
	return rc;
}

static int file_fetch(al_blobs_backend *b, const char *hash, uint64_t offset, uint64_t len,
	int dst_fd, uint64_t dst_offset)
{
	int rc, fd;
	struct stat st;
	uint64_t copied = 0;

	if ((rc = open_object(&fd, (file_blobs *)b, hash)) != 0)
		return rc;
	if (fstat(fd, &st) != 0) {
		rc = al_error_set_errno(AL_EIO, errno, "cannot stat blob %s", hash);
		goto cleanup;
	}
	if (offset > (uint64_t)st.st_size || len > (uint64_t)st.st_size - offset) {
		rc = al_error_set(AL_EINVAL, "range %llu+%llu is past the end of blob %s (%llu bytes)",
			(unsigned long long)offset, (unsigned long long)len, hash,
			(unsigned long long)st.st_size);
		goto cleanup;
	}
	if ((rc = copy_range(&copied, fd, offset, dst_fd, dst_offset, len)) != 0)
		goto cleanup;
	if (copied != len)
		rc = al_error_set(AL_EIO, "blob %s shrank while being read", hash);
cleanup:
	close(fd);
	return rc;
}

static int file_exists(int *out, al_blobs_backend *b, const char *hash)
{
	int rc;
	struct stat st;
	char *p;
	*out = 0;
	if ((rc = al__blobs_check_hash(hash)) != 0)
		return rc;
	if (!(p = object_path((file_blobs *)b, hash)))
		return al_error_set(AL_ENOMEM, "out of memory");
	if (stat(p, &st) == 0)
		*out = 1;
	else if (errno != ENOENT)
		rc = al_error_set_errno(AL_EIO, errno, "cannot stat blob %s", p);
	free(p);
	return rc;
}

static int file_local_path(char **out, al_blobs_backend *b, const char *hash)
{
	int rc, present;
	*out = NULL;
	if ((rc = file_exists(&present, b, hash)) != 0)
		return rc;
	if (!present)
		return al_error_set(AL_ENOTFOUND, "blob %s not found in %s", hash, ((file_blobs *)b)->dir);
	if (!(*out = object_path((file_blobs *)b, hash)))
		return al_error_set(AL_ENOMEM, "out of memory");
	return 0;
}

static char *file_uri(al_blobs_backend *b, const char *hash)
{
	char *u = NULL;
	if (asprintf(&u, "file://%s/%.2s/%s", ((file_blobs *)b)->dir, hash, hash) < 0)
		return NULL;
	return u;
}

static void file_free(al_blobs_backend *b)
{
	file_blobs *fb = (file_blobs *)b;
	if (!fb)
		return;
	free(fb->dir);
	free(fb);
}

int al_blobs_file_new(al_blobs_backend **out, const char *dir)
{
	int rc = 0;
	file_blobs *fb = NULL;
	char *tmp = NULL, *abs = NULL;

	*out = NULL;
	if (!dir || !*dir) {
		rc = al_error_set(AL_EINVAL, "empty blob store folder");
		goto cleanup;
	}
	if ((rc = al__mkdir_p(dir, 0755)) != 0)
		goto cleanup;
	if (!(abs = realpath(dir, NULL))) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "cannot resolve %s", dir);
		goto cleanup;
	}
	if (asprintf(&tmp, "%s/tmp", abs) < 0) {
		tmp = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	if ((rc = al__mkdir(tmp, 0755)) != 0)
		goto cleanup;
	if (!(fb = calloc(1, sizeof(*fb)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	fb->base.version = AL_BLOBS_BACKEND_VERSION;
	fb->base.name = "file";
	fb->base.put = file_put;
	fb->base.fetch = file_fetch;
	fb->base.exists = file_exists;
	fb->base.local_path = file_local_path;
	fb->base.uri = file_uri;
	fb->base.free = file_free;
	fb->dir = abs;
	abs = NULL;
	*out = &fb->base;
cleanup:
	free(abs);
	free(tmp);
	return rc;
}
