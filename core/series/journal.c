/* aletheia: the local write-ahead journal — generation files DIR/journal.<16 hex digits> of
 * framed records — and its recovery: a damaged record costs only itself (README "Durability"). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include "core/series/journal.h"

/* Format 2 (written since damaged records are skipped): the file starts with FILE_MAGIC, then
 * frames of u32 length, u32 XXH32 of the payload, u32 XXH32 (seed HDR_SEED) of those 8 bytes,
 * payload; little-endian. The header checksum lets the scan for the next frame after damage
 * rule out an offset in O(1): without it a plausible length (a timestamp's high word is one)
 * costs a hash of that many bytes, quadratic over a damaged file.
 * Format 1 (older files, still replayed): no file magic, frames of u32 length, u32 XXH32. */
#define FILE_MAGIC "aljrnl2\n"
#define MAGIC_LEN 8
#define V1_HEADER 8
#define V2_HEADER 12
#define HDR_SEED 0x616c6a32u
#define DAMAGED_DIR "damaged"
#define PREFIX "journal."
#define PREFIX_LEN 8
#define GEN_DIGITS 16
/* Generations are numbered from 1 up, one per rotation (at most about one a second). A name at or
 * past GEN_LIMIT was not made by this journal, and the number after journal.ffffffffffffffff
 * would wrap to 0 and sort first (replay would stop before the real generations): such files are
 * logged at open and left alone, and no generation at or past it is ever made. */
#define GEN_LIMIT (UINT64_C(1) << 48)
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
	uint64_t crash_gen;     /* newest generation at open: only its bad tail can be a torn append */
	uint64_t *kept;         /* damaged generations already kept aside and logged */
	size_t nkept, kept_cap;
	uint64_t damage;        /* damaged regions and refused records found */
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

/* Lists the generations in the folder, ascending. *gens is the caller's (NULL when none). Names
 * past GEN_LIMIT are skipped, and logged when log_foreign. */
static int list_gens(uint64_t **gens, size_t *count, al_journal *j, int log_foreign)
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
		if (g >= GEN_LIMIT) {
			if (log_foreign)
				fprintf(stderr, "aletheia: journal %s/%s: not a generation this journal could "
					"follow (numbers stay below %016" PRIx64 "): ignored, neither replayed nor "
					"removed; move it away\n", j->dir, de->d_name, GEN_LIMIT);
			continue;
		}
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

/* One generation's bytes, walked frame by frame with resynchronisation after damage. */
typedef struct {
	size_t at, skipped;       /* a damaged region: its offset and length */
	size_t records, bytes;    /* intact records after it, up to the next region or the end */
} region;

/* Refused records logged one by one; past that, counted. */
#define MAX_REFUSALS 8

typedef struct {
	int v2;                   /* format 2 (file magic, header checksum) */
	int magic;                /* starts with the file magic (or, shorter than it, a prefix of it) */
	size_t start;             /* where the first frame is */
	size_t end;               /* end of the last intact frame (0: none): what follows is a bad tail */
	size_t records;           /* intact records in all */
	region *regions;          /* damaged regions in the middle (intact records follow each) */
	size_t nregions, cap;
	struct {
		size_t at;
		char why[256];
	} refused[MAX_REFUSALS];  /* records the replay callback could not apply (al_journal_refuse) */
	size_t nrefused;          /* all of them */
} walk;

/* The record a replay callback is being given, for al_journal_refuse from that callback. */
static _Thread_local struct {
	al_journal *j;
	walk *w;
	size_t at;
} replaying;

/* Whether a whole frame that verifies starts at off; *len gets its payload length. */
static int frame_at(size_t *len, const unsigned char *p, size_t size, size_t off, int v2)
{
	size_t h = v2 ? V2_HEADER : V1_HEADER;
	uint32_t n;

	if (size - off < h)
		return 0;
	n = get_le32(p + off);
	if (n > size - off - h)
		return 0;   /* rules out most offsets: the length runs past the file */
	if (v2 && XXH32(p + off, 8, HDR_SEED) != get_le32(p + off + 8))
		return 0;
	if (XXH32(p + off + h, n, 0) != get_le32(p + off + 4))
		return 0;
	*len = n;
	return 1;
}

/* Whether a frame of the given format verifies anywhere in [from, size). */
static int frame_after(const unsigned char *p, size_t size, size_t from, int v2)
{
	size_t len;

	for (; from < size; from++)
		if (frame_at(&len, p, size, from, v2))
			return 1;
	return 0;
}

/* Walks the frames from w->start, calling cb (when not NULL) per intact record; after a bad
 * frame it scans on for the next offset where a frame verifies and goes on from there. Stops
 * early when cb returns non-zero (*stop). */
static int walk_frames(walk *w, const unsigned char *p, size_t size, al_journal_cb cb, void *ctx,
	int *stop)
{
	size_t h = w->v2 ? V2_HEADER : V1_HEADER, off = w->start, len, next;

	*stop = 0;
	while (off < size) {
		if (frame_at(&len, p, size, off, w->v2)) {
			replaying.at = off;
			if (cb && (*stop = cb(ctx, p + off + h, len)))
				return 0;
			off += h + len;
			w->end = off;
			w->records++;
			if (w->nregions) {
				w->regions[w->nregions - 1].records++;
				w->regions[w->nregions - 1].bytes += h + len;
			}
			continue;
		}
		for (next = off + 1; next < size; next++)
			if (frame_at(&len, p, size, next, w->v2))
				break;
		if (next >= size)
			break;   /* nothing verifies after it: a bad tail */
		if (w->nregions == w->cap) {
			size_t cap = w->cap ? w->cap * 2 : 4;
			region *r = realloc(w->regions, cap * sizeof(*r));
			if (!r)
				return al_error_set(AL_ENOMEM, "journal: out of memory");
			w->regions = r;
			w->cap = cap;
		}
		w->regions[w->nregions++] = (region){off, next - off, 0, 0};
		off = next;
	}
	return 0;
}

/* Tells a generation's format from its bytes. Format 2 when it starts with the file magic, or
 * is shorter than the magic and a prefix of it (a first append cut short: all of it is a torn
 * tail). Otherwise format 2 still when a format-2 frame verifies anywhere in it: a flipped byte
 * in the magic must not make a format-2 file read as format 1, where nothing would verify and
 * the whole file would go as a bad tail (README "Durability": damage costs only itself); walked
 * from offset 0, the damaged magic is then a damaged region like any other. A format-2 frame
 * verifying by chance in a format-1 file would take two 32-bit checksums matching; the scan is
 * O(1) per offset (the header checksum), where one for format-1 frames is not. */
static void walk_init(walk *w, const unsigned char *p, size_t size)
{
	memset(w, 0, sizeof(*w));
	if (size >= MAGIC_LEN ? memcmp(p, FILE_MAGIC, MAGIC_LEN) == 0
	                      : memcmp(p, FILE_MAGIC, size) == 0) {
		w->v2 = w->magic = 1;
		w->start = size < MAGIC_LEN ? size : MAGIC_LEN;
		return;
	}
	w->v2 = frame_after(p, size, 0, 1);
}

/* Reads a whole file into a private read-only mapping (*map NULL when the file is empty). */
static int map_file(unsigned char **map, size_t *size, int fd, const char *dir, const char *name)
{
	struct stat st;
	void *m;

	*map = NULL;
	*size = 0;
	if (fstat(fd, &st) < 0)
		return al_error_set_errno(al_error_from_errno(errno), errno, "journal: stat %s/%s", dir,
			name);
	if (st.st_size == 0)
		return 0;
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED)
		return al_error_set_errno(al_error_from_errno(errno), errno, "journal: mapping %s/%s",
			dir, name);
	*map = m;
	*size = (size_t)st.st_size;
	return 0;
}

/* Whether generation gen was kept aside (and its damage logged) by this journal already. */
static int was_kept(al_journal *j, uint64_t gen)
{
	size_t i;
	int found = 0;

	pthread_mutex_lock(&j->lock);
	for (i = 0; i < j->nkept && !found; i++)
		found = j->kept[i] == gen;
	pthread_mutex_unlock(&j->lock);
	return found;
}

/* Whether DIR/damaged already holds a copy of generation name with exactly these bytes (a
 * mount that crashed again before the generation was dropped); *path gets it. */
static int find_copy(char **path, al_journal *j, int dfd, const char *name,
	const unsigned char *p, size_t size)
{
	size_t nlen = strlen(name);
	struct dirent *de;
	DIR *d;
	int fd = dup(dfd), found = 0;

	*path = NULL;
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return 0;   /* then a new copy is made */
	}
	while (!found && (de = readdir(d))) {
		struct stat st;
		void *m;
		int cfd;
		if (strncmp(de->d_name, name, nlen) != 0 || de->d_name[nlen] != '.')
			continue;
		cfd = openat(dfd, de->d_name, O_RDONLY | O_CLOEXEC);
		if (cfd < 0)
			continue;
		if (fstat(cfd, &st) == 0 && (size_t)st.st_size == size &&
		    (m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, cfd, 0)) != MAP_FAILED) {
			found = memcmp(m, p, size) == 0;
			munmap(m, size);
		}
		close(cfd);
		if (found && asprintf(path, "%s/%s/%s", j->dir, DAMAGED_DIR, de->d_name) < 0) {
			*path = NULL;
			found = 0;
		}
	}
	closedir(d);
	return found;
}

/* Copies a damaged generation's bytes to DIR/damaged/journal.<gen>.<UTC time> for inspection,
 * durably, before anything cuts or drops the original; *copy gets the copy's path. */
static int keep_copy(char **copy, al_journal *j, uint64_t gen, const unsigned char *p,
	size_t size)
{
	char name[PREFIX_LEN + GEN_DIGITS + 1], stamp[32], *path = NULL;
	time_t now = time(NULL);
	struct tm tm;
	int dfd = -1, fd = -1, rc = 0, i;
	size_t done = 0;

	*copy = NULL;
	gen_name(name, gen);
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	if (mkdirat(j->dirfd, DAMAGED_DIR, 0755) < 0 && errno != EEXIST) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: creating %s/%s",
			j->dir, DAMAGED_DIR);
		goto cleanup;
	}
	dfd = openat(j->dirfd, DAMAGED_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: opening %s/%s",
			j->dir, DAMAGED_DIR);
		goto cleanup;
	}
	if (find_copy(copy, j, dfd, name, p, size))
		goto cleanup;
	/* A later copy of the same generation (cut or changed since) never overwrites one. */
	for (i = 0; fd < 0; i++) {
		free(path);
		path = NULL;
		if ((i ? asprintf(&path, "%s/%s/%s.%s.%d", j->dir, DAMAGED_DIR, name, stamp, i)
		       : asprintf(&path, "%s/%s/%s.%s", j->dir, DAMAGED_DIR, name, stamp)) < 0) {
			path = NULL;
			rc = al_error_set(AL_ENOMEM, "journal: out of memory");
			goto cleanup;
		}
		fd = openat(dfd, strrchr(path, '/') + 1, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 && (errno != EEXIST || i >= 1000)) {
			rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: creating %s",
				path);
			goto cleanup;
		}
	}
	while (done < size) {
		ssize_t n = write(fd, p + done, size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : ENOSPC;
			rc = al_error_set_errno(al_error_from_errno(e), e, "journal: writing %s", path);
			goto cleanup;
		}
		done += (size_t)n;
	}
	if (fsync(fd) < 0 || fsync(dfd) < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: syncing %s", path);
		goto cleanup;
	}
	*copy = path;
	path = NULL;
cleanup:
	if (fd >= 0)
		close(fd);
	if (rc && path)
		unlinkat(dfd, strrchr(path, '/') + 1, 0);
	if (dfd >= 0)
		close(dfd);
	free(path);
	return rc;
}

/* What follows a generation's last intact frame. */
enum {
	TAIL_NONE,      /* nothing */
	TAIL_TORN,      /* an append cut short by a crash: cut off */
	TAIL_DAMAGED    /* damage to the end: kept aside, logged, cut off */
};

/* Tells what the bytes after w->end are. An append cut short leaves part of one frame after the
 * magic or after an intact record, and only in the generation current at the crash; anything
 * else there is damage. Nothing verifies in a tail: the walk found no frame of the file's format
 * after w->end, and a file read as format 1 has no format-2 frame anywhere (walk_init; a
 * format-2 file holds no format-1 frames, appends after a format-1 file going to a new one). */
static int tail_kind(const walk *w, size_t size, int crash_gen)
{
	if (w->end >= size)
		return TAIL_NONE;
	return crash_gen && (w->magic || w->records) ? TAIL_TORN : TAIL_DAMAGED;
}

/* Keeps a damaged generation aside and logs one line per damaged region (and the tail, when it
 * is damage) with what was recovered after it, and one per record the replay callback refused.
 * Once per generation per journal. */
static int report_damage(al_journal *j, uint64_t gen, const walk *w, const unsigned char *p,
	size_t size, int tail)
{
	char name[PREFIX_LEN + GEN_DIGITS + 1], *copy = NULL;
	size_t i;
	int rc;

	if (was_kept(j, gen))
		return 0;
	gen_name(name, gen);
	if ((rc = keep_copy(&copy, j, gen, p, size)))
		return rc;
	for (i = 0; i < w->nregions; i++)
		fprintf(stderr, "aletheia: journal %s/%s: damaged record(s) at offset %zu, %zu bytes "
			"skipped; %zu intact records (%zu bytes) recovered after them; file kept as %s\n",
			j->dir, name, w->regions[i].at, w->regions[i].skipped, w->regions[i].records,
			w->regions[i].bytes, copy);
	if (tail == TAIL_DAMAGED)
		fprintf(stderr, "aletheia: journal %s/%s: damaged record(s) at offset %zu, %zu bytes "
			"skipped to the end of the file (%s); nothing recovered after them; file kept as "
			"%s\n", j->dir, name, w->end, size - w->end, w->magic ? "a sealed generation has "
			"no torn appends" : "no file magic nor intact record before them", copy);
	for (i = 0; i < w->nrefused && i < MAX_REFUSALS; i++)
		fprintf(stderr, "aletheia: journal %s/%s: record at offset %zu cannot be applied, "
			"dropped: %s; file kept as %s\n", j->dir, name, w->refused[i].at,
			w->refused[i].why, copy);
	if (w->nrefused > MAX_REFUSALS)
		fprintf(stderr, "aletheia: journal %s/%s: %zu more records cannot be applied, dropped; "
			"file kept as %s\n", j->dir, name, w->nrefused - MAX_REFUSALS, copy);
	free(copy);
	pthread_mutex_lock(&j->lock);
	if (j->nkept == j->kept_cap) {
		size_t cap = j->kept_cap ? j->kept_cap * 2 : 4;
		uint64_t *k = realloc(j->kept, cap * sizeof(*k));
		if (k) {
			j->kept = k;
			j->kept_cap = cap;
		}
	}
	if (j->nkept < j->kept_cap)
		j->kept[j->nkept++] = gen;
	j->damage += w->nregions + (tail == TAIL_DAMAGED) + w->nrefused;
	pthread_mutex_unlock(&j->lock);
	return 0;
}

/* Walks one generation file, calling cb per intact record; damaged records in the middle are
 * skipped (the file is kept aside and the damage logged first), and a bad tail is cut off so
 * later appends cannot land after it. *stop gets cb's non-zero return. Called without the lock
 * so cb may append; for the current generation only the first limit bytes (those present when
 * replay began) are read. */
static int replay_file(int *stop, al_journal *j, uint64_t gen, uint64_t limit, int is_current,
	al_journal_cb cb, void *ctx)
{
	char name[PREFIX_LEN + GEN_DIGITS + 1];
	unsigned char *map = NULL;
	size_t size = 0, mapped = 0;
	walk *w = NULL;
	int fd = -1, rc = 0, tail;

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
	if ((rc = map_file(&map, &mapped, fd, j->dir, name)) < 0 || !map)
		goto cleanup;
	size = mapped;
	if (is_current && size > limit)
		size = (size_t)limit;  /* records appended after replay began are not ours to read */
	if (!(w = malloc(sizeof(*w)))) {
		rc = al_error_set(AL_ENOMEM, "journal: out of memory");
		goto cleanup;
	}
	walk_init(w, map, size);
	replaying.j = j;
	replaying.w = w;
	rc = walk_frames(w, map, size, cb, ctx, stop);
	replaying.j = NULL;
	replaying.w = NULL;
	if (rc < 0 || *stop)
		goto cleanup;
	tail = tail_kind(w, size, gen == j->crash_gen);
	if ((w->nregions || w->nrefused || tail == TAIL_DAMAGED) &&
	    (rc = report_damage(j, gen, w, map, size, tail)))
		goto cleanup;
	if (tail != TAIL_NONE) {
		struct stat st;
		if (tail == TAIL_TORN)
			fprintf(stderr, "aletheia: journal %s/%s: torn tail at offset %zu (%zu bytes, an "
				"append cut short by a crash) cut off\n", j->dir, name, w->end, size - w->end);
		pthread_mutex_lock(&j->lock);
		if (fstat(fd, &st) < 0 || ftruncate(fd, (off_t)w->end) < 0) {
			rc = al_error_set_errno(al_error_from_errno(errno), errno,
				"journal: cutting the bad tail of %s/%s", j->dir, name);
		} else {
			uint64_t cut = (uint64_t)st.st_size - w->end;
			j->bytes -= cut < j->bytes ? cut : j->bytes;
			if (j->gen == gen)
				j->cur_size = w->end;
		}
		pthread_mutex_unlock(&j->lock);
	}
cleanup:
	if (w)
		free(w->regions);
	free(w);
	if (map)
		munmap(map, mapped);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Opens generation gen for appending. A torn tail left by a crash is cut so new records follow
 * the last intact one; a generation with damage (its magic included), or in format 1, is left
 * whole for replay (which keeps it aside) and appends go to the next generation. Lock held (or
 * not yet shared). */
static int open_gen(al_journal *j, uint64_t gen)
{
	char name[PREFIX_LEN + GEN_DIGITS + 1];
	unsigned char *map = NULL;
	size_t size = 0;
	walk *w = NULL;
	int fd = -1, rfd = -1, rc = 0, stop, tail;

	if (gen >= GEN_LIMIT)
		return al_error_set(AL_EIO, "journal %s: no generation number left after %016" PRIx64
			" (a file of that name was not made by aletheia: move it away)", j->dir, gen - 1);
	gen_name(name, gen);
	fd = openat(j->dirfd, name, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: opening %s/%s",
			j->dir, name);
		goto cleanup;
	}
	rfd = openat(j->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (rfd < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "journal: reading %s/%s",
			j->dir, name);
		goto cleanup;
	}
	if ((rc = map_file(&map, &size, rfd, j->dir, name)) < 0)
		goto cleanup;
	if (size == 0) {
		j->dir_dirty = 1;
	} else {
		if (!(w = malloc(sizeof(*w)))) {
			rc = al_error_set(AL_ENOMEM, "journal: out of memory");
			goto cleanup;
		}
		walk_init(w, map, size);
		if ((rc = walk_frames(w, map, size, NULL, NULL, &stop)) < 0)
			goto cleanup;
		tail = tail_kind(w, size, 1);
		if (!w->v2 || !w->magic || w->nregions || tail == TAIL_DAMAGED) {
			close(fd);
			fd = -1;
			rc = open_gen(j, gen + 1);
			goto cleanup;
		}
		if (tail == TAIL_TORN) {
			fprintf(stderr, "aletheia: journal %s/%s: torn tail at offset %zu (%zu bytes, an "
				"append cut short by a crash) cut off\n", j->dir, name, w->end, size - w->end);
			if (ftruncate(fd, (off_t)w->end) < 0) {
				rc = al_error_set_errno(al_error_from_errno(errno), errno,
					"journal: cutting the torn tail of %s/%s", j->dir, name);
				goto cleanup;
			}
			j->bytes -= size - w->end;
		}
	}
	if (j->fd >= 0)
		close(j->fd);
	j->fd = fd;
	fd = -1;
	j->gen = gen;
	j->cur_size = size ? w->end : 0;
cleanup:
	if (w)
		free(w->regions);
	free(w);
	if (map)
		munmap(map, size);
	if (rfd >= 0)
		close(rfd);
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
	if ((rc = list_gens(&gens, &n, j, 1)) < 0)
		goto cleanup;
	j->crash_gen = n ? gens[n - 1] : UINT64_MAX;
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
	unsigned char stack[STACK_FRAME], *frame = stack, *from;
	size_t total = MAGIC_LEN + V2_HEADER + len, done = 0;
	int rc = 0;

	if (len > UINT32_MAX - MAGIC_LEN - V2_HEADER || len > SSIZE_MAX - MAGIC_LEN - V2_HEADER)
		return al_error_set(AL_EINVAL, "journal: record of %zu bytes is too large", len);
	if (total > sizeof(stack) && !(frame = malloc(total)))
		return al_error_set(AL_ENOMEM, "journal: out of memory");
	/* The file magic goes with a generation's first record, in the same write(). */
	memcpy(frame, FILE_MAGIC, MAGIC_LEN);
	put_le32(frame + MAGIC_LEN, (uint32_t)len);
	put_le32(frame + MAGIC_LEN + 4, XXH32(rec, len, 0));
	put_le32(frame + MAGIC_LEN + 8, XXH32(frame + MAGIC_LEN, 8, HDR_SEED));
	if (len)
		memcpy(frame + MAGIC_LEN + V2_HEADER, rec, len);

	pthread_mutex_lock(&j->lock);
	from = frame;
	if (j->cur_size) {
		from += MAGIC_LEN;
		total -= MAGIC_LEN;
	}
	while (done < total) {
		ssize_t w = write(j->fd, from + done, total - done);
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
	if (j->cur_size == 0 && prev > 0) {
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
	if ((rc = list_gens(&gens, &n, j, 0)) < 0)
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
	rc = list_gens(&gens, &n, j, 0);
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

void al_journal_refuse(al_journal *j, const char *fmt, ...)
{
	walk *w = replaying.j == j ? replaying.w : NULL;
	va_list ap;

	if (!w)
		return;   /* not from a replay callback of this journal */
	if (w->nrefused < MAX_REFUSALS) {
		w->refused[w->nrefused].at = replaying.at;
		va_start(ap, fmt);
		vsnprintf(w->refused[w->nrefused].why, sizeof(w->refused[0].why), fmt, ap);
		va_end(ap);
	}
	w->nrefused++;
}

uint64_t al_journal_damage(al_journal *j)
{
	uint64_t d;

	pthread_mutex_lock(&j->lock);
	d = j->damage;
	pthread_mutex_unlock(&j->lock);
	return d;
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
	free(j->kept);
	free(j->dir);
	free(j);
}
