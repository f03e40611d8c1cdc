/* aletheia: small shared helpers — folder creation and locking, string hashing for in-memory
 * tables, and the per-thread bound on network waits. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "aletheia/common.h"
#include "util.h"

int al__mkdir(const char *path, unsigned mode)
{
	if (mkdir(path, (mode_t)mode) == 0 || errno == EEXIST)
		return 0;
	return al_error_set_errno(al_error_from_errno(errno), errno, "cannot create folder %s", path);
}

int al__mkdir_p(const char *path, unsigned mode)
{
	char *p = strdup(path), *s;
	int rc = 0;

	if (!p)
		return al_error_set(AL_ENOMEM, "out of memory");
	for (s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		rc = al__mkdir(p, mode);
		*s = '/';
		if (rc)
			goto cleanup;
	}
	rc = al__mkdir(p, mode);
cleanup:
	free(p);
	return rc;
}

uint64_t al__str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

struct al__slab {
	struct al__slab *next;
	size_t used, cap;
	max_align_t data[];
};

#define SLAB_FIRST ((size_t)4 << 10)
#define SLAB_MAX ((size_t)1 << 20)

void *al__slab_alloc(al__slab **slabs, size_t n)
{
	al__slab *s = *slabs;
	void *p;
	n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	if (!s || s->cap - s->used < n) {
		size_t cap = s ? (s->cap + sizeof(*s)) * 2 : SLAB_FIRST;
		if (cap > SLAB_MAX)
			cap = SLAB_MAX;
		cap -= sizeof(*s);
		if (n > cap)
			cap = n;
		if (!(s = malloc(sizeof(*s) + cap))) {
			al_error_set(AL_ENOMEM, "out of memory");
			return NULL;
		}
		s->cap = cap;
		s->used = 0;
		s->next = *slabs;
		*slabs = s;
	}
	p = (char *)s->data + s->used;
	s->used += n;
	return p;
}

char *al__slab_dup(al__slab **slabs, const char *text, size_t len)
{
	char *p = al__slab_alloc(slabs, len + 1);
	if (p) {
		memcpy(p, text, len);
		p[len] = '\0';
	}
	return p;
}

void al__slabs_free(al__slab *s)
{
	while (s) {
		al__slab *next = s->next;
		free(s);
		s = next;
	}
}

#define LOCK_WAIT_MS 5000

int al__lock_dir(int *fd_out, const char *dir, const char *what)
{
	char *path = NULL, buf[32];
	ssize_t n;
	int fd = -1, len, rc = 0, locked;

	*fd_out = -1;
	if (asprintf(&path, "%s/lock", dir) < 0)
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "cannot open %s", path);
		goto cleanup;
	}
	/* A daemon that is still finishing after its umount (which returns once the kernel lets go)
	 * holds the lock a moment longer: `umount; mount` waits for it rather than fail. */
	for (int waited_ms = 0; !(locked = flock(fd, LOCK_EX | LOCK_NB) == 0) && errno == EWOULDBLOCK &&
	     waited_ms < LOCK_WAIT_MS; waited_ms += 50)
		usleep(50 * 1000);
	if (!locked) {
		if (errno != EWOULDBLOCK) {
			rc = al_error_set_errno(AL_EIO, errno, "cannot lock %s", path);
			goto cleanup;
		}
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		rc = al_error_set(AL_EBUSY, "%s %s is already mounted by another aletheia process "
			"(pid %s)", what, dir, buf[0] ? buf : "unknown");
		goto cleanup;
	}
	len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
		rc = al_error_set_errno(AL_EIO, errno, "cannot write %s", path);
		goto cleanup;
	}
	*fd_out = fd;
	fd = -1;
cleanup:
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

static _Thread_local int background;
static _Thread_local long budget_ms;
static unsigned foreground_ms = 2500;   /* read and written whole: no lock needed */
static int shutting_down;

void al__shutdown_begin(void)
{
	__atomic_store_n(&shutting_down, 1, __ATOMIC_RELAXED);
}

int al__shutting_down(void)
{
	return __atomic_load_n(&shutting_down, __ATOMIC_RELAXED);
}

void al__foreground_wait_set(unsigned ms)
{
	__atomic_store_n(&foreground_ms, ms, __ATOMIC_RELAXED);
}

unsigned al__foreground_wait(void)
{
	return background ? 0 : __atomic_load_n(&foreground_ms, __ATOMIC_RELAXED);
}

void al__thread_set_background(int on)
{
	background = on;
}

int al__thread_background(void)
{
	return background;
}

long al__wait_budget_set(long ms)
{
	long old = budget_ms;
	budget_ms = ms > 0 ? ms : 0;
	return old;
}

long al__wait_budget(void)
{
	return budget_ms;
}

static _Thread_local int64_t op_start_us;

int64_t al__op_begin(void)
{
	int64_t outer = op_start_us;
	if (!outer)
		op_start_us = al_now_us();
	return outer;
}

void al__op_end(int64_t outer)
{
	op_start_us = outer;
}

int64_t al__op_start(void)
{
	return op_start_us;
}

int64_t al__mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
