/* aletheia: the local-folder blob store: objects at DIR/<xx>/<hash>, read-only, written through
 * DIR/tmp/ with fsync and a create-only rename so a blob is never seen half-written or overwritten;
 * verified before it is served (size always, content once per change) and moved to DIR/damaged/
 * when it fails, so the next put of that content stores it afresh. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include "core/blobs/blobs.h"
#include "aletheia/hash.h"
#include "core/blobs/blobs_internal.h"
#include "core/util.h"

#define COPY_BLOCK (1u << 20)

/* A blob known good carries the size and mtime it had when it was stored or last hashed
 * ("1 SIZE SEC.NSEC"): while both stay, it is not hashed again at open. A change of either
 * (an overwrite, a truncation) makes the next open hash it. Bit rot that keeps both is found
 * by a full verify (fsck) only. */
#define VERIFIED_XATTR "user.aletheia.verified"
#define VREC_BUCKETS 4096

/* Where the file system takes no user xattrs (or the blob is another user's): the same records,
 * in memory for the daemon's life, so such a blob is hashed once per mount. */
typedef struct vrec {
	char hash[AL_HASH_HEX_LEN + 1];
	char stamp[64];
	struct vrec *next;
} vrec;

/* A blob being hashed: other verifiers of the same blob wait for its verdict. */
typedef struct busy_blob {
	char hash[AL_HASH_HEX_LEN + 1];
	struct busy_blob *next;
} busy_blob;

typedef struct {
	al_blobs_backend base;
	char *dir;    /* absolute, no trailing slash */
	pthread_mutex_t mu;
	pthread_cond_t done;
	busy_blob *busy;
	vrec **vrecs;
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

static void stamp_of(char *out, size_t n, const struct stat *st)
{
	snprintf(out, n, "1 %llu %lld.%09ld", (unsigned long long)st->st_size,
		(long long)st->st_mtim.tv_sec, (long)st->st_mtim.tv_nsec);
}

static vrec **vrec_slot(file_blobs *fb, const char *hash)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 4 | (uint64_t)(hash[i] <= '9' ? hash[i] - '0' : hash[i] - 'a' + 10);
	return &fb->vrecs[v % VREC_BUCKETS];
}

/* 1 when the open blob (st) is as it was when last found good. */
static int known_good(file_blobs *fb, int fd, const char *hash, const struct stat *st)
{
	char want[64], got[64];
	ssize_t n;
	int found = 0;
	stamp_of(want, sizeof(want), st);
	n = fgetxattr(fd, VERIFIED_XATTR, got, sizeof(got) - 1);
	if (n > 0) {
		got[n] = '\0';
		return strcmp(got, want) == 0;
	}
	pthread_mutex_lock(&fb->mu);
	for (vrec *r = *vrec_slot(fb, hash); r; r = r->next)
		if (strcmp(r->hash, hash) == 0) {
			found = strcmp(r->stamp, want) == 0;
			break;
		}
	pthread_mutex_unlock(&fb->mu);
	return found;
}

/* Records that the blob open at fd, as st describes it, is good. Setting a user xattr needs
 * write permission: blobs are 0444, so their owner lends itself u+w for a moment. */
static void mark_good(file_blobs *fb, int fd, const char *hash, const struct stat *st)
{
	char stamp[64];
	vrec *r;
	stamp_of(stamp, sizeof(stamp), st);
	if (fsetxattr(fd, VERIFIED_XATTR, stamp, strlen(stamp), 0) == 0)
		return;
	if ((errno == EACCES || errno == EPERM) && st->st_uid == geteuid() &&
	    fchmod(fd, (st->st_mode & 07777) | S_IWUSR) == 0) {
		int ok = fsetxattr(fd, VERIFIED_XATTR, stamp, strlen(stamp), 0) == 0;
		fchmod(fd, st->st_mode & 07777);
		if (ok)
			return;
	}
	pthread_mutex_lock(&fb->mu);
	for (r = *vrec_slot(fb, hash); r && strcmp(r->hash, hash) != 0; r = r->next)
		;
	if (!r && (r = calloc(1, sizeof(*r))) != NULL) {
		memcpy(r->hash, hash, AL_HASH_HEX_LEN);
		r->next = *vrec_slot(fb, hash);
		*vrec_slot(fb, hash) = r;
	}
	if (r)
		snprintf(r->stamp, sizeof(r->stamp), "%s", stamp);
	pthread_mutex_unlock(&fb->mu);
}

/* Marks hash as being hashed, first waiting while another thread hashes it: 1 when this thread
 * had to wait (the caller then looks at the blob anew). */
static int busy_begin(file_blobs *fb, busy_blob *me, const char *hash)
{
	int waited = 0;
	pthread_mutex_lock(&fb->mu);
	for (;;) {
		busy_blob *o = fb->busy;
		while (o && strcmp(o->hash, hash) != 0)
			o = o->next;
		if (!o)
			break;
		waited = 1;
		pthread_cond_wait(&fb->done, &fb->mu);
	}
	if (!waited) {
		memcpy(me->hash, hash, AL_HASH_HEX_LEN + 1);
		me->next = fb->busy;
		fb->busy = me;
	}
	pthread_mutex_unlock(&fb->mu);
	return waited;
}

static void busy_end(file_blobs *fb, busy_blob *me)
{
	pthread_mutex_lock(&fb->mu);
	for (busy_blob **p = &fb->busy; *p; p = &(*p)->next)
		if (*p == me) {
			*p = me->next;
			break;
		}
	pthread_cond_broadcast(&fb->done);
	pthread_mutex_unlock(&fb->mu);
}

/* Moves the damaged blob at path (the file open as st) to DIR/damaged/<hash>.<µs>, unless the
 * name already holds another file. Returns AL_EIO with why and where it went. */
static int set_damaged(file_blobs *fb, const char *path, const char *hash, const struct stat *st,
	const char *why)
{
	char *aside = NULL, *dir = NULL;
	struct stat now;
	int moved = 0;
	if (asprintf(&dir, "%s/damaged", fb->dir) >= 0 &&
	    asprintf(&aside, "%s/%s.%lld", dir, hash, (long long)al_now_us()) >= 0 &&
	    al__mkdir(dir, 0755) == 0 && lstat(path, &now) == 0 && now.st_ino == st->st_ino &&
	    now.st_dev == st->st_dev && rename(path, aside) == 0)
		moved = 1;
	al_error_clear();
	if (moved)
		al_error_set(AL_EIO, "blob %s is damaged (%s); moved aside to %s: write the file's content "
			"again to store it afresh", hash, why, aside);
	else
		al_error_set(AL_EIO, "blob %s is damaged (%s)", hash, why);
	fprintf(stderr, "aletheia: %s\n", al_error_last());
	free(aside);
	free(dir);
	return AL_EIO;
}

/* AL_ENOTFOUND, saying so when the blob was moved aside as damaged. */
static int not_found(file_blobs *fb, const char *hash)
{
	char *pattern = NULL;
	glob_t g;
	int aside = 0;
	if (asprintf(&pattern, "%s/damaged/%s.*", fb->dir, hash) >= 0) {
		aside = glob(pattern, GLOB_NOSORT, NULL, &g) == 0 && g.gl_pathc > 0;
		if (aside)
			globfree(&g);
		free(pattern);
	}
	if (aside)
		return al_error_set(AL_ENOTFOUND, "blob %s is not in %s: it was found damaged and moved "
			"to %s/damaged/; write the file's content again to store it afresh", hash, fb->dir,
			fb->dir);
	return al_error_set(AL_ENOTFOUND, "blob %s not found in %s", hash, fb->dir);
}

static int file_verify(int *fd_out, al_blobs_backend *b, const char *hash, uint64_t size,
	unsigned flags)
{
	file_blobs *fb = (file_blobs *)b;
	busy_blob me;
	char *p = NULL, got[AL_HASH_HEX_LEN + 1], why[128];
	struct stat st, after;
	uint64_t n = 0;
	int rc = 0, fd = -1, busy = 0;

	if (fd_out)
		*fd_out = -1;
	if ((rc = al__blobs_check_hash(hash)) != 0)
		return rc;
	if (!(p = object_path(fb, hash)))
		return al_error_set(AL_ENOMEM, "out of memory");
again:
	if ((fd = open(p, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = errno == ENOENT ? not_found(fb, hash) : al_error_set_errno(AL_EIO, errno,
			"cannot open blob %s", p);
		goto cleanup;
	}
	if (fstat(fd, &st) != 0) {
		rc = al_error_set_errno(AL_EIO, errno, "cannot stat blob %s", p);
		goto cleanup;
	}
	/* The size is always checked: a truncated or extended blob is damaged. */
	if ((uint64_t)st.st_size != size) {
		snprintf(why, sizeof(why), "it holds %llu bytes, not %llu", (unsigned long long)st.st_size,
			(unsigned long long)size);
		rc = set_damaged(fb, p, hash, &st, why);
		goto cleanup;
	}
	if (!(flags & AL_BLOBS_VERIFY_FULL) && known_good(fb, fd, hash, &st))
		goto cleanup;
	if (!busy) {
		if (busy_begin(fb, &me, hash)) {
			close(fd);    /* another thread had it: look at the blob again, with its verdict */
			fd = -1;
			goto again;
		}
		busy = 1;
	}
	if ((rc = al_hash_fd(got, &n, fd)) != 0) {
		snprintf(why, sizeof(why), "cannot be read: %.100s", al_error_last());
		rc = set_damaged(fb, p, hash, &st, why);
		goto cleanup;
	}
	if (n != size || strcmp(got, hash) != 0) {
		snprintf(why, sizeof(why), "its %llu bytes hash to %s", (unsigned long long)n, got);
		rc = set_damaged(fb, p, hash, &st, why);
		goto cleanup;
	}
	/* Known good from now on, unless it changed while it was hashed. */
	if (fstat(fd, &after) == 0 && after.st_size == st.st_size &&
	    after.st_mtim.tv_sec == st.st_mtim.tv_sec && after.st_mtim.tv_nsec == st.st_mtim.tv_nsec)
		mark_good(fb, fd, hash, &after);
cleanup:
	if (busy)
		busy_end(fb, &me);
	if (rc == 0 && fd_out) {
		*fd_out = fd;
		fd = -1;
	}
	if (fd >= 0)
		close(fd);
	free(p);
	return rc;
}

static int file_stat(uint64_t *size_out, al_blobs_backend *b, const char *hash)
{
	int rc;
	struct stat st;
	char *p;
	*size_out = 0;
	if ((rc = al__blobs_check_hash(hash)) != 0)
		return rc;
	if (!(p = object_path((file_blobs *)b, hash)))
		return al_error_set(AL_ENOMEM, "out of memory");
	if (stat(p, &st) == 0)
		*size_out = (uint64_t)st.st_size;
	else
		rc = errno == ENOENT ? al_error_set(AL_ENOTFOUND, "blob %s not found", hash)
			: al_error_set_errno(AL_EIO, errno, "cannot stat blob %s", p);
	free(p);
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

/* A new blob's last steps before it is placed: known good as written (st: its final state),
 * read-only, synced. errno on failure. */
static int seal(file_blobs *fb, int fd, const char *hash, const struct stat *st)
{
	mark_good(fb, fd, hash, st);
	return fchmod(fd, 0444) == 0 && fsync(fd) == 0 ? 0 : -1;
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
	if (stat(dst, &st) == 0) {
		/* Content-addressed: present means identical, once verified; a damaged copy is moved
		 * aside by the check, and this put stores the content afresh. */
		if ((rc = file_verify(NULL, b, hash, size, 0)) != AL_EIO && rc != AL_ENOTFOUND)
			goto cleanup;
		rc = 0;
	}
	if ((src = open(src_path, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "cannot open %s to store it",
			src_path);
		goto cleanup;
	}
	if ((rc = al__mkdir(sub, 0755)) != 0)
		goto cleanup;
	if ((flags & AL_BLOBS_PUT_MOVE) && fstat(src, &st) == 0 && (uint64_t)st.st_size == size &&
	    seal(fb, src, hash, &st) == 0) {
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
	if (fstat(tmp, &st) != 0 || seal(fb, tmp, hash, &st) != 0) {
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


static int file_local_path(char **out, al_blobs_backend *b, const char *hash)
{
	int rc, present;
	*out = NULL;
	if ((rc = al__blobs_exists(&present, b, hash)) != 0)
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
	for (size_t i = 0; fb->vrecs && i < VREC_BUCKETS; i++)
		while (fb->vrecs[i]) {
			vrec *next = fb->vrecs[i]->next;
			free(fb->vrecs[i]);
			fb->vrecs[i] = next;
		}
	free(fb->vrecs);
	pthread_mutex_destroy(&fb->mu);
	pthread_cond_destroy(&fb->done);
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
	if (!(fb = calloc(1, sizeof(*fb))) || !(fb->vrecs = calloc(VREC_BUCKETS, sizeof(vrec *)))) {
		free(fb);
		fb = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	pthread_mutex_init(&fb->mu, NULL);
	pthread_cond_init(&fb->done, NULL);
	fb->base.version = AL_BLOBS_BACKEND_VERSION;
	fb->base.name = "file";
	fb->base.put = file_put;
	fb->base.fetch = file_fetch;
	fb->base.exists = al__blobs_exists;
	fb->base.local_path = file_local_path;
	fb->base.uri = file_uri;
	fb->base.free = file_free;
	fb->base.verify = file_verify;
	fb->base.stat = file_stat;
	fb->dir = abs;
	abs = NULL;
	*out = &fb->base;
cleanup:
	free(abs);
	free(tmp);
	return rc;
}
