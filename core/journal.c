/* aletheia: the local write-ahead journal — generation files DIR/journal.<16 hex digits> of
 * framed records (u32 length, u32 XXH32 of the payload, payload; little-endian). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include "aletheia/journal.h"

#define HEADER 8
#define PREFIX "journal."
#define PREFIX_LEN 8
#define GEN_DIGITS 16
/* Frames up to this size are built on the stack. */
#define STACK_FRAME 4096

struct al_journal {
	pthread_mutex_t lock;   /* guards everything below; held across each append's write() */
	char *dir;
	int dirfd;
	int fd;                 /* current generation, O_APPEND */
	uint64_t gen;
	uint64_t cur_size;      /* bytes in the current generation */
	uint64_t bytes;         /* bytes in all generations, current included */
	int dir_dirty;          /* a generation file was created since the folder was last synced */
};

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Parses "journal.<16 hex>"; returns 0 and sets *gen, or -1 for any other name. */
static int parse_name(uint64_t *gen, const char *name)
{
	uint64_t g = 0;
	const char *p;

	if (strncmp(name, PREFIX, PREFIX_LEN) != 0 || strlen(name) != PREFIX_LEN + GEN_DIGITS)
		return -1;
	for (p = name + PREFIX_LEN; *p; p++) {
		int d;
		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else
			return -1;
		g = g << 4 | (uint64_t)d;
	}
	*gen = g;
	return 0;
}

static void gen_name(char *buf, uint64_t gen)
{
	snprintf(buf, PREFIX_LEN + GEN_DIGITS + 1, PREFIX "%016" PRIx64, gen);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Lists the generations in the folder, ascending. *gens is the caller's (NULL when none). */
static int list_gens(uint64_t **gens, size_t *count, al_journal *j)
{
	DIR *d = NULL;
	struct dirent *de;
	uint64_t *v = NULL, *grown;
	size_t n = 0, cap = 0;
	int rc = 0, fd;

	*gens = NULL;
	*count = 0;
	fd = openat(j->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: listing %s", j->dir);
		if (fd >= 0)
			close(fd);
		goto cleanup;
	}
	while ((de = readdir(d))) {
		uint64_t g;
		if (parse_name(&g, de->d_name) < 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(v, cap * sizeof(*v));
			if (!grown) {
				rc = al_error_set(AL_ENOMEM, "journal: out of memory");
				goto cleanup;
			}
			v = grown;
		}
		v[n++] = g;
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_u64);
	*gens = v;
	*count = n;
	v = NULL;
cleanup:
	if (d)
		closedir(d);
	free(v);
	return rc;
}

/* Length of the intact prefix of a generation's bytes: whole records with a good checksum. */
static size_t intact_prefix(const unsigned char *p, size_t size)
{
	size_t off = 0;

	while (size - off >= HEADER) {
		uint32_t len = get_le32(p + off), sum = get_le32(p + off + 4);
		if (len > size - off - HEADER || XXH32(p + off + HEADER, len, 0) != sum)
			break;
		off += HEADER + len;
	}
	return off;
}

/* Walks one generation file, calling cb per intact record, and cuts off a torn or corrupt
 * tail. *stop gets cb's non-zero return. Called without the lock so cb may append; for the
 * current generation only the first limit bytes (those present when replay began) are read. */
static int replay_file(int *stop, al_journal *j, uint64_t gen, uint64_t limit, int is_current,
	al_journal_cb cb, void *ctx)
{
	char name[PREFIX_LEN + GEN_DIGITS + 1];
	unsigned char *map = MAP_FAILED;
	size_t size = 0, off = 0;
	struct stat st;
	int fd = -1, rc = 0;

	*stop = 0;
	gen_name(name, gen);
	fd = openat(j->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			goto cleanup;  /* dropped meanwhile */
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: opening %s/%s",
			j->dir, name);
		goto cleanup;
	}
	if (fstat(fd, &st) < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: stat %s/%s", j->dir,
			name);
		goto cleanup;
	}
	size = (size_t)st.st_size;
	if (is_current && size > limit)
		size = (size_t)limit;  /* records appended after replay began are not ours to read */
	if (size == 0)
		goto cleanup;
	map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: mapping %s/%s",
			j->dir, name);
		goto cleanup;
	}
	while (size - off >= HEADER) {
		uint32_t len = get_le32(map + off), sum = get_le32(map + off + 4);
		if (len > size - off - HEADER || XXH32(map + off + HEADER, len, 0) != sum)
			break;
		*stop = cb(ctx, map + off + HEADER, len);
		if (*stop)
			goto cleanup;
		off += HEADER + len;
	}
	if (off < size) {
		/* A crash mid-append left a partial frame; later appends must not land after it. */
		pthread_mutex_lock(&j->lock);
		if (fstat(fd, &st) < 0 || ftruncate(fd, (off_t)off) < 0) {
			rc = al_error_set_errno(al_error_from_errno(errno), errno,
				"journal: cutting the torn tail of %s/%s", j->dir, name);
		} else {
			uint64_t cut = (uint64_t)st.st_size - off;
			j->bytes -= cut < j->bytes ? cut : j->bytes;
			if (j->gen == gen)
				j->cur_size = off;
		}
		pthread_mutex_unlock(&j->lock);
	}
cleanup:
	if (map != MAP_FAILED)
		munmap(map, size);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Opens generation gen for appending, cutting a torn tail left by a crash so new records
 * follow the last intact one. Lock held (or not yet shared). */
static int open_gen(al_journal *j, uint64_t gen)
{
	char name[PREFIX_LEN + GEN_DIGITS + 1];
	unsigned char *map = MAP_FAILED;
	struct stat st;
	size_t size = 0, good;
	int fd, rc = 0;

	gen_name(name, gen);
	fd = openat(j->dirfd, name, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: opening %s/%s",
			j->dir, name);
		goto cleanup;
	}
	if (fstat(fd, &st) < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: stat %s/%s", j->dir,
			name);
		goto cleanup;
	}
	size = (size_t)st.st_size;
	if (size == 0) {
		j->dir_dirty = 1;
	} else {
		int rfd = openat(j->dirfd, name, O_RDONLY | O_CLOEXEC);
		if (rfd >= 0) {
			map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, rfd, 0);
			close(rfd);
		}
		if (map == MAP_FAILED) {
			rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: reading %s/%s",
				j->dir, name);
			goto cleanup;
		}
		good = intact_prefix(map, size);
		if (good < size) {
			if (ftruncate(fd, (off_t)good) < 0) {
				rc = al_error_set_errno(al_error_from_errno(errno), errno,
					"journal: cutting the torn tail of %s/%s", j->dir, name);
				goto cleanup;
			}
			j->bytes -= size - good;
		}
		size = good;
	}
	if (j->fd >= 0)
		close(j->fd);
	j->fd = fd;
	fd = -1;
	j->gen = gen;
	j->cur_size = size;
cleanup:
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* mkdir -p: the journal folder may sit under a state folder not made yet. */
static int make_dirs(const char *dir)
{
	char *path = strdup(dir), *p;
	int rc = 0;

	if (!path)
		return al_error_set(AL_ENOMEM, "journal: out of memory");
	for (p = path + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(path, 0755) < 0 && errno != EEXIST) {
				rc = al_error_set_errno(al_error_from_errno(errno), errno,
					"journal: creating %s", path);
				goto cleanup;
			}
			*p = c;
			if (c == '\0')
				break;
		}
	}
cleanup:
	free(path);
	return rc;
}

int al_journal_open(al_journal **out, const char *dir)
{
	al_journal *j = NULL;
	uint64_t *gens = NULL;
	size_t n = 0, i;
	int rc;

	*out = NULL;
	if ((rc = make_dirs(dir)) < 0)
		goto cleanup;
	j = calloc(1, sizeof(*j));
	if (!j) {
		rc = al_error_set(AL_ENOMEM, "journal: out of memory");
		goto cleanup;
	}
	j->fd = -1;
	j->dirfd = -1;
	pthread_mutex_init(&j->lock, NULL);
	if (!(j->dir = strdup(dir))) {
		rc = al_error_set(AL_ENOMEM, "journal: out of memory");
		goto cleanup;
	}
	j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->dirfd < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: opening %s", dir);
		goto cleanup;
	}
	if ((rc = list_gens(&gens, &n, j)) < 0)
		goto cleanup;
	for (i = 0; i < n; i++) {
		char name[PREFIX_LEN + GEN_DIGITS + 1];
		struct stat st;
		gen_name(name, gens[i]);
		if (fstatat(j->dirfd, name, &st, 0) == 0)
			j->bytes += (uint64_t)st.st_size;
	}
	if ((rc = open_gen(j, n ? gens[n - 1] : 1)) < 0)
		goto cleanup;
	*out = j;
	j = NULL;
cleanup:
	free(gens);
	al_journal_free(j);
	return rc;
}

int al_journal_append(al_journal *j, const void *rec, size_t len)
{
	unsigned char stack[STACK_FRAME], *frame = stack;
	size_t total = HEADER + len, done = 0;
	int rc = 0;

	if (len > UINT32_MAX - HEADER || len > SSIZE_MAX - HEADER)
		return al_error_set(AL_EINVAL, "journal: record of %zu bytes is too large", len);
	if (total > sizeof(stack) && !(frame = malloc(total)))
		return al_error_set(AL_ENOMEM, "journal: out of memory");
	put_le32(frame, (uint32_t)len);
	put_le32(frame + 4, XXH32(rec, len, 0));
	if (len)
		memcpy(frame + HEADER, rec, len);

	pthread_mutex_lock(&j->lock);
	while (done < total) {
		ssize_t w = write(j->fd, frame + done, total - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : ENOSPC;
			rc = al_error_set_errno(al_error_from_errno(e), e, "journal: appending to %s",
				j->dir);
			/* Undo a partial frame so the next append does not follow garbage; if even
			 * that fails, replay cuts the file there. */
			if (done && ftruncate(j->fd, (off_t)j->cur_size) < 0)
				rc = al_error_set_errno(AL_EIO, errno, "journal: undoing a partial append");
			break;
		}
		done += (size_t)w;
	}
	if (rc == 0) {
		j->cur_size += total;
		j->bytes += total;
	}
	pthread_mutex_unlock(&j->lock);
	if (frame != stack)
		free(frame);
	return rc;
}

int al_journal_sync(al_journal *j)
{
	int rc = 0;

	pthread_mutex_lock(&j->lock);
	if (fdatasync(j->fd) < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: syncing %s",
			j->dir);
		goto cleanup;
	}
	/* A new generation's directory entry must survive a power cut too. */
	if (j->dir_dirty) {
		if (fsync(j->dirfd) < 0) {
			rc = al_error_set_errno(al_error_from_errno(errno), errno,
				"journal: syncing folder %s", j->dir);
			goto cleanup;
		}
		j->dir_dirty = 0;
	}
cleanup:
	pthread_mutex_unlock(&j->lock);
	return rc;
}

int al_journal_rotate(uint64_t *sealed, al_journal *j)
{
	uint64_t prev;
	int rc;

	pthread_mutex_lock(&j->lock);
	prev = j->gen;
	if (j->cur_size == 0) {
		/* Nothing since the last rotation: no new file, the older ones are sealed already. */
		*sealed = prev - 1;
		pthread_mutex_unlock(&j->lock);
		return 0;
	}
	/* A sync of the current file covers only it: seal the old one durably first. */
	if (fdatasync(j->fd) != 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: syncing %s", j->dir);
		pthread_mutex_unlock(&j->lock);
		return rc;
	}
	rc = open_gen(j, prev + 1);
	if (rc == 0)
		*sealed = prev;
	pthread_mutex_unlock(&j->lock);
	return rc;
}

int al_journal_drop(al_journal *j, uint64_t gen)
{
	uint64_t *gens = NULL;
	size_t n = 0, i;
	int rc;

	pthread_mutex_lock(&j->lock);
	if ((rc = list_gens(&gens, &n, j)) < 0)
		goto cleanup;
	for (i = 0; i < n && gens[i] <= gen; i++) {
		char name[PREFIX_LEN + GEN_DIGITS + 1];
		struct stat st;
		if (gens[i] == j->gen)
			continue;  /* never the file appends are going to */
		gen_name(name, gens[i]);
		if (fstatat(j->dirfd, name, &st, 0) < 0)
			st.st_size = 0;
		if (unlinkat(j->dirfd, name, 0) < 0) {
			if (errno == ENOENT)
				continue;
			rc = al_error_set_errno(al_error_from_errno(errno), errno,
				"journal: removing %s/%s", j->dir, name);
			goto cleanup;
		}
		j->bytes -= (uint64_t)st.st_size < j->bytes ? (uint64_t)st.st_size : j->bytes;
	}
cleanup:
	pthread_mutex_unlock(&j->lock);
	free(gens);
	return rc;
}

int al_journal_replay(al_journal *j, al_journal_cb cb, void *ctx)
{
	uint64_t *gens = NULL, cur, cur_size;
	size_t n = 0, i;
	int rc, stop = 0;

	/* Snapshot under the lock, then read without it so cb may append. */
	pthread_mutex_lock(&j->lock);
	rc = list_gens(&gens, &n, j);
	cur = j->gen;
	cur_size = j->cur_size;
	pthread_mutex_unlock(&j->lock);
	if (rc < 0)
		goto cleanup;
	for (i = 0; i < n && !stop; i++) {
		if (gens[i] > cur)
			break;  /* rotated during replay: newer records are not part of this replay */
		rc = replay_file(&stop, j, gens[i], cur_size, gens[i] == cur, cb, ctx);
		if (rc < 0)
			goto cleanup;
	}
	rc = stop;
cleanup:
	free(gens);
	return rc;
}

uint64_t al_journal_bytes(al_journal *j)
{
	uint64_t b;

	pthread_mutex_lock(&j->lock);
	b = j->bytes;
	pthread_mutex_unlock(&j->lock);
	return b;
}

void al_journal_free(al_journal *j)
{
	if (!j)
		return;
	if (j->fd >= 0)
		close(j->fd);
	if (j->dirfd >= 0)
		close(j->dirfd);
	pthread_mutex_destroy(&j->lock);
	free(j->dir);
	free(j);
}
