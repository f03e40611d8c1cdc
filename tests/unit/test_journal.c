/* Unit tests for core/series/journal.c: append/replay, torn tails, damaged records, rotate/drop, reopen,
 * format-1 files, threads. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include "core/series/journal.h"
#include "check.h"

/* Format 2: the file magic before a generation's first frame, 12-byte frame headers. */
#define MAGIC 8
#define FRAME 12

typedef struct {
	char recs[4096][64];
	size_t lens[4096];
	size_t n;
	size_t stop_after;   /* 0: never stop */
} collected;

static int collect(void *ctx, const void *rec, size_t len)
{
	collected *c = ctx;
	if (c->n < 4096 && len < 64) {
		memcpy(c->recs[c->n], rec, len);
		c->recs[c->n][len] = '\0';
		c->lens[c->n] = len;
	}
	c->n++;
	if (c->stop_after && c->n == c->stop_after)
		return 7;
	return 0;
}

static void replay(collected *c, al_journal *j)
{
	memset(c, 0, sizeof(*c));
	CHECK_OK(al_journal_replay(j, collect, c));
}

static int append_str(al_journal *j, const char *s)
{
	return al_journal_append(j, s, strlen(s));
}

static char *gen_path(char *buf, const char *dir, uint64_t gen)
{
	sprintf(buf, "%s/journal.%016llx", dir, (unsigned long long)gen);
	return buf;
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += strncmp(de->d_name, "journal.", 8) == 0;
	closedir(d);
	return n;
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

static void test_basic(const char *root)
{
	char dir[512], path[600];
	al_journal *j = NULL;
	collected *c = malloc(sizeof(*c));

	snprintf(dir, sizeof(dir), "%s/basic/deeper", root);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK(j != NULL);
	CHECK(access(gen_path(path, dir, 1), F_OK) == 0);
	CHECK_EQ_INT(al_journal_bytes(j), 0);

	replay(c, j);
	CHECK_EQ_INT(c->n, 0);

	CHECK_OK(append_str(j, "alpha"));
	CHECK_OK(append_str(j, ""));
	CHECK_OK(append_str(j, "gamma gamma"));
	CHECK_OK(al_journal_sync(j));
	CHECK_EQ_INT(al_journal_bytes(j), MAGIC + FRAME * 3 + 5 + 0 + 11);
	CHECK_EQ_INT(file_size(path), MAGIC + FRAME * 3 + 5 + 0 + 11);

	replay(c, j);
	CHECK_EQ_INT(c->n, 3);
	CHECK_EQ_STR(c->recs[0], "alpha");
	CHECK_EQ_INT(c->lens[1], 0);
	CHECK_EQ_STR(c->recs[2], "gamma gamma");

	/* a big record (heap frame) */
	{
		size_t big = 100000;
		char *buf = malloc(big);
		for (size_t i = 0; i < big; i++)
			buf[i] = (char)(i * 7);
		CHECK_OK(al_journal_append(j, buf, big));
		free(buf);
		replay(c, j);
		CHECK_EQ_INT(c->n, 4);
	}

	/* a callback's non-zero return stops replay and is returned */
	memset(c, 0, sizeof(*c));
	c->stop_after = 2;
	CHECK_EQ_INT(al_journal_replay(j, collect, c), 7);
	CHECK_EQ_INT(c->n, 2);

	al_journal_free(j);
	al_journal_free(NULL);
	free(c);
}

static void test_torn_tail(const char *root)
{
	char dir[512], path[600];
	al_journal *j = NULL;
	collected *c = malloc(sizeof(*c));
	off_t good;
	int fd;

	snprintf(dir, sizeof(dir), "%s/torn", root);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_OK(append_str(j, "one"));
	CHECK_OK(append_str(j, "two"));
	good = file_size(gen_path(path, dir, 1));
	CHECK_OK(append_str(j, "three-is-longer"));
	al_journal_free(j);

	/* a crash mid-append: the last record is cut in its payload */
	CHECK(truncate(path, good + 8 + 4) == 0);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_EQ_INT(file_size(path), good);   /* open cut the torn tail */
	CHECK_EQ_INT(al_journal_bytes(j), good);
	CHECK_OK(append_str(j, "four"));
	replay(c, j);
	CHECK_EQ_INT(c->n, 3);
	CHECK_EQ_STR(c->recs[0], "one");
	CHECK_EQ_STR(c->recs[1], "two");
	CHECK_EQ_STR(c->recs[2], "four");
	al_journal_free(j);

	/* garbage after the last record, and a header cut short */
	good = file_size(path);
	fd = open(path, O_WRONLY | O_APPEND);
	CHECK(fd >= 0);
	CHECK(write(fd, "\x05\x00\x00\x00garbage!", 12) == 12);
	close(fd);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_EQ_INT(file_size(path), good);
	CHECK_OK(append_str(j, "five"));
	replay(c, j);
	CHECK_EQ_INT(c->n, 4);
	CHECK_EQ_STR(c->recs[3], "five");
	al_journal_free(j);

	/* a torn tail in a sealed generation is cut by replay; the current one still appends */
	CHECK_OK(al_journal_open(&j, dir));
	{
		uint64_t sealed = 0;
		CHECK_OK(al_journal_rotate(&sealed, j));
		CHECK_EQ_INT(sealed, 1);
	}
	good = file_size(path);
	fd = open(path, O_WRONLY | O_APPEND);
	CHECK(write(fd, "\x03\x00", 2) == 2);
	close(fd);
	CHECK_OK(append_str(j, "six"));
	replay(c, j);
	CHECK_EQ_INT(c->n, 5);
	CHECK_EQ_STR(c->recs[4], "six");
	CHECK_EQ_INT(file_size(path), good);
	/* a flipped payload byte fails the checksum: only that record goes, the next one stays */
	{
		char p2[600];
		off_t size2;
		gen_path(p2, dir, 2);
		CHECK_OK(append_str(j, "seven"));
		al_journal_free(j);
		size2 = file_size(p2);
		fd = open(p2, O_WRONLY);
		CHECK(pwrite(fd, "X", 1, MAGIC + FRAME) == 1);  /* first payload byte of "six" */
		close(fd);
		CHECK_OK(al_journal_open(&j, dir));
		CHECK_EQ_INT(file_size(p2), size2);
		CHECK_EQ_INT(al_journal_bytes(j), good + size2);
		replay(c, j);
		CHECK_EQ_INT(c->n, 5);
		CHECK_EQ_STR(c->recs[4], "seven");
		CHECK_OK(append_str(j, "eight"));
		replay(c, j);
		CHECK_EQ_INT(c->n, 6);
		CHECK_EQ_STR(c->recs[5], "eight");
	}
	al_journal_free(j);
	free(c);
}

static void test_rotate_drop(const char *root)
{
	char dir[512], path[600];
	al_journal *j = NULL;
	collected *c = malloc(sizeof(*c));
	uint64_t sealed = 0;

	snprintf(dir, sizeof(dir), "%s/rotate", root);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_OK(append_str(j, "g1-a"));
	CHECK_OK(append_str(j, "g1-b"));
	CHECK_OK(al_journal_rotate(&sealed, j));
	CHECK_EQ_INT(sealed, 1);
	CHECK_OK(append_str(j, "g2-a"));
	CHECK_OK(al_journal_rotate(&sealed, j));
	CHECK_EQ_INT(sealed, 2);
	CHECK_OK(append_str(j, "g3-a"));
	CHECK_EQ_INT(count_files(dir), 3);
	CHECK_EQ_INT(al_journal_bytes(j), 3 * MAGIC + 4 * (FRAME + 4));

	/* a foreign file in the folder is ignored */
	{
		FILE *f = fopen(gen_path(path, dir, 0), "w");
		fclose(f);
		snprintf(path, sizeof(path), "%s/journal.notanumber", dir);
		f = fopen(path, "w");
		fputs("xx", f);
		fclose(f);
	}

	replay(c, j);
	CHECK_EQ_INT(c->n, 4);
	CHECK_EQ_STR(c->recs[0], "g1-a");
	CHECK_EQ_STR(c->recs[1], "g1-b");
	CHECK_EQ_STR(c->recs[2], "g2-a");
	CHECK_EQ_STR(c->recs[3], "g3-a");

	CHECK_OK(al_journal_drop(j, 1));
	CHECK(access(gen_path(path, dir, 1), F_OK) != 0);
	CHECK(access(gen_path(path, dir, 0), F_OK) != 0);
	CHECK(access(gen_path(path, dir, 2), F_OK) == 0);
	CHECK_EQ_INT(al_journal_bytes(j), 2 * MAGIC + 2 * (FRAME + 4));
	replay(c, j);
	CHECK_EQ_INT(c->n, 2);
	CHECK_EQ_STR(c->recs[0], "g2-a");

	/* dropping past the current generation keeps the current one */
	CHECK_OK(al_journal_drop(j, 100));
	CHECK(access(gen_path(path, dir, 2), F_OK) != 0);
	CHECK(access(gen_path(path, dir, 3), F_OK) == 0);
	CHECK_EQ_INT(al_journal_bytes(j), MAGIC + FRAME + 4);
	CHECK_OK(append_str(j, "g3-b"));
	replay(c, j);
	CHECK_EQ_INT(c->n, 2);
	CHECK_EQ_STR(c->recs[0], "g3-a");
	CHECK_EQ_STR(c->recs[1], "g3-b");
	CHECK_OK(al_journal_sync(j));
	al_journal_free(j);

	/* reopen continues in the newest generation */
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_EQ_INT(al_journal_bytes(j), MAGIC + 2 * (FRAME + 4));
	CHECK_OK(append_str(j, "g3-c"));
	CHECK_EQ_INT(file_size(gen_path(path, dir, 3)), MAGIC + 3 * (FRAME + 4));
	CHECK_EQ_INT(count_files(dir), 2);  /* generation 3 and journal.notanumber */
	CHECK_OK(al_journal_rotate(&sealed, j));
	CHECK_EQ_INT(sealed, 3);
	al_journal_free(j);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_OK(append_str(j, "g4-a"));
	CHECK_EQ_INT(file_size(gen_path(path, dir, 4)), MAGIC + FRAME + 4);
	replay(c, j);
	CHECK_EQ_INT(c->n, 4);
	CHECK_EQ_STR(c->recs[3], "g4-a");
	al_journal_free(j);

	/* a journal path that cannot be a folder */
	snprintf(path, sizeof(path), "%s/journal.notanumber/sub", dir);
	j = (al_journal *)1;
	CHECK(al_journal_open(&j, path) < 0);
	CHECK(j == NULL);
	free(c);
}

/* Reads a whole file; *len gets its size (NULL if it cannot be read). */
static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long n;

	*len = 0;
	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n)
		*len = (size_t)n;
	fclose(f);
	return buf;
}

/* Offset of the first occurrence of s in the file, or -1. */
static long find_in(const char *path, const char *s)
{
	size_t len, k = strlen(s);
	unsigned char *buf = slurp(path, &len);
	long at = -1;

	for (size_t i = 0; buf && i + k <= len; i++)
		if (memcmp(buf + i, s, k) == 0) {
			at = (long)i;
			break;
		}
	free(buf);
	return at;
}

static void flip(const char *path, long off)
{
	int fd = open(path, O_RDWR);
	unsigned char b = 0;
	CHECK(fd >= 0 && off >= 0);
	CHECK(pread(fd, &b, 1, off) == 1);
	b ^= 0x20;
	CHECK(pwrite(fd, &b, 1, off) == 1);
	close(fd);
}

/* Frame header length of a generation file: 12 in format 2 (it starts with the magic), else 8. */
static long header_len(const char *path)
{
	size_t len;
	unsigned char *buf = slurp(path, &len);
	long h = buf && len >= 8 && memcmp(buf, "aljrnl2\n", 8) == 0 ? 12 : 8;
	free(buf);
	return h;
}

/* The copies under dir/damaged/: how many, and whether one has exactly the bytes want. */
static int damaged_copies(const char *dir, const unsigned char *want, size_t want_len, int *match)
{
	char sub[600], path[1200];
	DIR *d;
	struct dirent *de;
	int n = 0;

	*match = 0;
	snprintf(sub, sizeof(sub), "%s/damaged", dir);
	if (!(d = opendir(sub)))
		return 0;
	while ((de = readdir(d))) {
		size_t len;
		unsigned char *buf;
		if (strncmp(de->d_name, "journal.", 8) != 0)
			continue;
		n++;
		snprintf(path, sizeof(path), "%s/%s", sub, de->d_name);
		buf = slurp(path, &len);
		if (buf && want && len == want_len && memcmp(buf, want, len) == 0)
			*match = 1;
		free(buf);
	}
	closedir(d);
	return n;
}

/* Appends "record A: ..." to "record Z: ..."; a rotation after the letter rotate_after (0: none). */
static void append_letters(al_journal *j, char rotate_after)
{
	char rec[64];
	for (char l = 'A'; l <= 'Z'; l++) {
		snprintf(rec, sizeof(rec), "record %c: %.*s", l, 5 + (l % 7), "payload-bytes");
		CHECK_OK(append_str(j, rec));
		if (l == rotate_after) {
			uint64_t sealed = 0;
			CHECK_OK(al_journal_rotate(&sealed, j));
		}
	}
}

/* Checks a replay gave the letters A..Z in order without those in missing, then extra. */
static void check_letters(const collected *c, const char *missing, const char *extra[])
{
	size_t k = 0;
	for (char l = 'A'; l <= 'Z'; l++) {
		char want[16];
		if (strchr(missing, l))
			continue;
		snprintf(want, sizeof(want), "record %c:", l);
		if (k >= c->n || strncmp(c->recs[k], want, strlen(want)) != 0) {
			fprintf(stderr, "record %zu is \"%s\", expected %s\n", k, k < c->n ? c->recs[k] : "", want);
			CHECK(0);
			return;
		}
		k++;
	}
	for (size_t e = 0; extra && extra[e]; e++, k++)
		CHECK(k < c->n && strcmp(c->recs[k], extra[e]) == 0);
	CHECK_EQ_INT(c->n, k);
}

/* One flipped byte costs only its record: replay resynchronises on the next frame, the damaged
 * generation is kept under damaged/ with the bytes it had, and nothing after it is cut. */
static void test_damage(const char *root)
{
	char dir[512], g1[600], g2[600];
	al_journal *j = NULL;
	collected *c = malloc(sizeof(*c));
	unsigned char *bad;
	size_t bad_len;
	int match;
	static const char *after[] = {"after-1", "after-2", NULL};

	/* a payload byte of K in an older generation (A..M), N..Z in the current one */
	snprintf(dir, sizeof(dir), "%s/damage-payload", root);
	CHECK_OK(al_journal_open(&j, dir));
	append_letters(j, 'M');
	al_journal_free(j);
	gen_path(g1, dir, 1);
	flip(g1, find_in(g1, "record K") + 7);
	bad = slurp(g1, &bad_len);
	CHECK_OK(al_journal_open(&j, dir));
	replay(c, j);
	check_letters(c, "K", NULL);
	CHECK_EQ_INT(al_journal_damage(j), 1);
	CHECK_EQ_INT(damaged_copies(dir, bad, bad_len, &match), 1);
	CHECK(match);   /* the copy has every byte the damaged file had */
	CHECK_EQ_INT(file_size(g1), bad_len);   /* damage in the middle cuts nothing */
	/* replayed again (and after a reopen): the same records, no second copy */
	replay(c, j);
	check_letters(c, "K", NULL);
	CHECK_EQ_INT(al_journal_damage(j), 1);
	al_journal_free(j);
	CHECK_OK(al_journal_open(&j, dir));
	replay(c, j);
	check_letters(c, "K", NULL);
	CHECK_EQ_INT(damaged_copies(dir, bad, bad_len, &match), 1);
	al_journal_free(j);
	free(bad);

	/* a byte of K's length field */
	snprintf(dir, sizeof(dir), "%s/damage-length", root);
	CHECK_OK(al_journal_open(&j, dir));
	append_letters(j, 'M');
	al_journal_free(j);
	gen_path(g1, dir, 1);
	flip(g1, find_in(g1, "record K") - header_len(g1));
	bad = slurp(g1, &bad_len);
	CHECK_OK(al_journal_open(&j, dir));
	replay(c, j);
	check_letters(c, "K", NULL);
	CHECK_EQ_INT(al_journal_damage(j), 1);
	CHECK_EQ_INT(damaged_copies(dir, bad, bad_len, &match), 1);
	CHECK(match);
	al_journal_free(j);
	free(bad);

	/* two damaged regions in one file (D's checksum, K's payload) */
	snprintf(dir, sizeof(dir), "%s/damage-two", root);
	CHECK_OK(al_journal_open(&j, dir));
	append_letters(j, 'M');
	al_journal_free(j);
	gen_path(g1, dir, 1);
	flip(g1, find_in(g1, "record D") - header_len(g1) + 5);
	flip(g1, find_in(g1, "record K") + 12);
	bad = slurp(g1, &bad_len);
	CHECK_OK(al_journal_open(&j, dir));
	replay(c, j);
	check_letters(c, "DK", NULL);
	CHECK_EQ_INT(al_journal_damage(j), 2);
	CHECK_EQ_INT(damaged_copies(dir, bad, bad_len, &match), 1);
	CHECK(match);
	al_journal_free(j);
	free(bad);

	/* the last record of a sealed generation: no torn append can be there, so it is damage */
	snprintf(dir, sizeof(dir), "%s/damage-sealed-tail", root);
	CHECK_OK(al_journal_open(&j, dir));
	append_letters(j, 'M');
	al_journal_free(j);
	gen_path(g1, dir, 1);
	flip(g1, find_in(g1, "record M") + 3);
	bad = slurp(g1, &bad_len);
	CHECK_OK(al_journal_open(&j, dir));
	replay(c, j);
	check_letters(c, "M", NULL);
	CHECK_EQ_INT(al_journal_damage(j), 1);
	CHECK_EQ_INT(damaged_copies(dir, bad, bad_len, &match), 1);
	CHECK(match);
	CHECK(file_size(g1) < (off_t)bad_len);   /* cut after the copy was made */
	al_journal_free(j);
	free(bad);

	/* damage in the generation current at the crash, new appends after reopen */
	snprintf(dir, sizeof(dir), "%s/damage-current", root);
	CHECK_OK(al_journal_open(&j, dir));
	append_letters(j, 0);
	al_journal_free(j);
	gen_path(g1, dir, 1);
	flip(g1, find_in(g1, "record K") + 9);
	bad = slurp(g1, &bad_len);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_EQ_INT(file_size(g1), bad_len);   /* open cut nothing */
	CHECK_OK(append_str(j, "after-1"));
	CHECK_OK(append_str(j, "after-2"));
	replay(c, j);
	check_letters(c, "K", after);
	CHECK_EQ_INT(damaged_copies(dir, bad, bad_len, &match), 1);
	CHECK(match);
	CHECK_OK(al_journal_sync(j));
	al_journal_free(j);
	CHECK_OK(al_journal_open(&j, dir));
	replay(c, j);
	check_letters(c, "K", after);
	/* once its records are delivered the damaged generation can go; the copy stays */
	{
		uint64_t sealed = 0;
		CHECK_OK(al_journal_rotate(&sealed, j));
		CHECK_OK(al_journal_drop(j, sealed));
		CHECK(access(g1, F_OK) != 0);
		CHECK_EQ_INT(damaged_copies(dir, bad, bad_len, &match), 1);
	}
	al_journal_free(j);
	free(bad);

	/* the same in the newest generation with a torn tail after the damage */
	snprintf(dir, sizeof(dir), "%s/damage-current-torn", root);
	CHECK_OK(al_journal_open(&j, dir));
	append_letters(j, 0);
	al_journal_free(j);
	gen_path(g1, dir, 1);
	flip(g1, find_in(g1, "record C") + 9);
	CHECK(truncate(g1, find_in(g1, "record Z") + 4) == 0);   /* Z torn */
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_OK(append_str(j, "after-1"));
	CHECK_OK(append_str(j, "after-2"));
	replay(c, j);
	check_letters(c, "CZ", after);
	CHECK_EQ_INT(al_journal_damage(j), 1);   /* the torn tail is no damage */
	al_journal_free(j);
	gen_path(g2, dir, 2);
	CHECK_EQ_INT(header_len(g2), 12);
	free(c);
}

/* Writes a format-1 frame (u32 length, u32 XXH32, payload) to fd. */
static void v1_frame(int fd, const char *rec)
{
	unsigned char h[8];
	uint32_t len = (uint32_t)strlen(rec), sum = XXH32(rec, len, 0);
	for (int i = 0; i < 4; i++) {
		h[i] = (unsigned char)(len >> (8 * i));
		h[4 + i] = (unsigned char)(sum >> (8 * i));
	}
	CHECK(write(fd, h, 8) == 8);
	CHECK(write(fd, rec, len) == (ssize_t)len);
}

/* Journals written before format 2 replay as they are, damage skipped the same way; appends
 * after them go to a new generation in format 2. */
static void test_format1(const char *root)
{
	char dir[512], g1[600], g2[600], rec[64];
	al_journal *j = NULL;
	collected *c = malloc(sizeof(*c));
	static const char *after[] = {"after-1", NULL};
	int fd;

	snprintf(dir, sizeof(dir), "%s/format1", root);
	CHECK(mkdir(dir, 0755) == 0);
	gen_path(g1, dir, 1);
	fd = open(g1, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	for (char l = 'A'; l <= 'Z'; l++) {
		snprintf(rec, sizeof(rec), "record %c: %.*s", l, 5 + (l % 7), "payload-bytes");
		v1_frame(fd, rec);
	}
	close(fd);
	flip(g1, find_in(g1, "record H") + 10);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_OK(append_str(j, "after-1"));
	gen_path(g2, dir, 2);
	CHECK_EQ_INT(header_len(g2), 12);
	replay(c, j);
	check_letters(c, "H", after);
	CHECK_EQ_INT(al_journal_damage(j), 1);
	al_journal_free(j);
	free(c);
}

/* Overwrites len bytes at off. */
static void put_bytes(const char *path, long off, const void *bytes, size_t len)
{
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0 && pwrite(fd, bytes, len, off) == (ssize_t)len);
	if (fd >= 0)
		close(fd);
}

/* A damaged file magic costs at most itself: the frames that verify as format 2 are read as
 * format 2 (not as format 1, where nothing verifies and the whole file went as a torn tail), the
 * file is kept aside and logged like any damage, and appends go to a new generation. */
static void test_damaged_magic(const char *root)
{
	char dir[512], g1[600], g2[600];
	al_journal *j = NULL;
	collected *c = malloc(sizeof(*c));
	static const char *after[] = {"after-1", NULL};
	unsigned char *bad;
	size_t bad_len;
	int match;

	/* one flipped bit in the magic of the generation current at the crash */
	snprintf(dir, sizeof(dir), "%s/magic-current", root);
	CHECK_OK(al_journal_open(&j, dir));
	append_letters(j, 0);
	al_journal_free(j);
	gen_path(g1, dir, 1);
	flip(g1, 2);
	bad = slurp(g1, &bad_len);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_EQ_INT(file_size(g1), bad_len);   /* open cut nothing */
	CHECK_OK(append_str(j, "after-1"));
	CHECK_EQ_INT(header_len(gen_path(g2, dir, 2)), 12);
	replay(c, j);
	check_letters(c, "", after);
	CHECK_EQ_INT(al_journal_damage(j), 1);
	CHECK_EQ_INT(damaged_copies(dir, bad, bad_len, &match), 1);
	CHECK(match);
	CHECK_EQ_INT(file_size(g1), bad_len);   /* replay cut nothing either */
	al_journal_free(j);
	free(bad);

	/* the whole magic zeroed in a sealed generation, and the first record damaged as well */
	snprintf(dir, sizeof(dir), "%s/magic-sealed", root);
	CHECK_OK(al_journal_open(&j, dir));
	append_letters(j, 'M');
	al_journal_free(j);
	gen_path(g1, dir, 1);
	put_bytes(g1, 0, "\0\0\0\0\0\0\0\0", 8);
	flip(g1, find_in(g1, "record A") + 3);
	bad = slurp(g1, &bad_len);
	CHECK_OK(al_journal_open(&j, dir));
	replay(c, j);
	check_letters(c, "A", NULL);
	CHECK_EQ_INT(al_journal_damage(j), 1);   /* one region: the magic and record A */
	CHECK_EQ_INT(damaged_copies(dir, bad, bad_len, &match), 1);
	CHECK(match);
	CHECK_EQ_INT(file_size(g1), bad_len);
	al_journal_free(j);
	free(bad);

	/* a newest generation with no magic in which nothing verifies is no torn append: it is
	 * kept aside before it is cut */
	snprintf(dir, sizeof(dir), "%s/magic-junk", root);
	CHECK(mkdir(dir, 0755) == 0);
	gen_path(g1, dir, 1);
	{
		int fd = open(g1, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		CHECK(fd >= 0 && write(fd, "not a journal at all\n", 21) == 21);
		close(fd);
	}
	bad = slurp(g1, &bad_len);
	CHECK_OK(al_journal_open(&j, dir));
	replay(c, j);
	CHECK_EQ_INT(c->n, 0);
	CHECK_EQ_INT(damaged_copies(dir, bad, bad_len, &match), 1);
	CHECK(match);
	CHECK_EQ_INT(al_journal_damage(j), 1);
	al_journal_free(j);
	free(bad);
	free(c);
}

/* A file named like a generation no journal could follow (journal.ffffffffffffffff: the next
 * number wrapped to 0, which sorts first, so replay stopped before the real generations and they
 * were dropped) is ignored and left alone; no generation number ever wraps. */
static void test_generation_limit(const char *root)
{
	char dir[512], path[600], junk[600], past[600];
	al_journal *j = NULL;
	collected *c = malloc(sizeof(*c));
	static const char *after[] = {"after-1", NULL};
	uint64_t sealed = 0;
	unsigned char *before;
	size_t before_len, len;

	snprintf(dir, sizeof(dir), "%s/genlimit", root);
	CHECK_OK(al_journal_open(&j, dir));
	append_letters(j, 'M');
	al_journal_free(j);
	gen_path(junk, dir, UINT64_MAX);
	gen_path(past, dir, (uint64_t)1 << 48);
	{
		FILE *f = fopen(junk, "w");
		fputs("junk", f);
		fclose(f);
		f = fopen(past, "w");
		fclose(f);
	}
	before = slurp(junk, &before_len);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_OK(append_str(j, "after-1"));
	replay(c, j);
	check_letters(c, "", after);
	CHECK(access(gen_path(path, dir, 0), F_OK) != 0);   /* nothing wrapped to 0 */
	CHECK(find_in(gen_path(path, dir, 2), "after-1") > 0);   /* appended to the newest real one */
	CHECK_OK(al_journal_rotate(&sealed, j));
	CHECK_EQ_INT(sealed, 2);
	CHECK_OK(al_journal_drop(j, UINT64_MAX));
	CHECK_EQ_INT(count_files(dir), 3);   /* generation 3 and the two foreign files */
	{
		unsigned char *now = slurp(junk, &len);
		CHECK(now && len == before_len && memcmp(now, before, len) == 0);
		free(now);
	}
	CHECK_EQ_INT(file_size(past), 0);
	al_journal_free(j);
	free(before);

	/* a generation just below the limit can be appended to, but never followed by a wrap */
	snprintf(dir, sizeof(dir), "%s/genlimit-edge", root);
	CHECK(mkdir(dir, 0755) == 0);
	gen_path(path, dir, ((uint64_t)1 << 48) - 1);
	{
		FILE *f = fopen(path, "w");
		fclose(f);
	}
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_OK(append_str(j, "last"));
	CHECK(al_journal_rotate(&sealed, j) < 0);
	CHECK_OK(append_str(j, "still"));
	replay(c, j);
	CHECK_EQ_INT(c->n, 2);
	CHECK_EQ_STR(c->recs[1], "still");
	CHECK_EQ_INT(count_files(dir), 1);
	al_journal_free(j);
	free(c);
}

/* A record the replay callback cannot apply: the generation is kept aside as it was, the record
 * logged and counted with the damage; other records and files stay as they were. */
static int refuse_bad(void *ctx, const void *rec, size_t len)
{
	al_journal *j = ctx;
	if (len >= 3 && memcmp(rec, "bad", 3) == 0)
		al_journal_refuse(j, "test refuses \"%.*s\"", (int)len, (const char *)rec);
	return 0;
}

static void test_refuse(const char *root)
{
	char dir[512], g1[600], g2[600];
	al_journal *j = NULL;
	uint64_t sealed = 0;
	unsigned char *b1, *b2;
	size_t l1, l2;
	int match;

	snprintf(dir, sizeof(dir), "%s/refuse", root);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_OK(append_str(j, "ok-1"));
	CHECK_OK(append_str(j, "bad-2"));
	CHECK_OK(append_str(j, "ok-3"));
	CHECK_OK(al_journal_rotate(&sealed, j));
	CHECK_OK(append_str(j, "bad-4"));
	al_journal_refuse(j, "outside a replay: no effect");
	CHECK_EQ_INT(al_journal_damage(j), 0);
	al_journal_free(j);
	b1 = slurp(gen_path(g1, dir, 1), &l1);
	b2 = slurp(gen_path(g2, dir, 2), &l2);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_OK(al_journal_replay(j, refuse_bad, j));
	CHECK_EQ_INT(al_journal_damage(j), 2);
	CHECK_EQ_INT(damaged_copies(dir, b1, l1, &match), 2);
	CHECK(match);
	CHECK_EQ_INT(damaged_copies(dir, b2, l2, &match), 2);
	CHECK(match);
	CHECK_EQ_INT(file_size(g1), l1);
	CHECK_EQ_INT(file_size(g2), l2);
	/* again: the same generations are not copied nor counted twice */
	CHECK_OK(al_journal_replay(j, refuse_bad, j));
	CHECK_EQ_INT(al_journal_damage(j), 2);
	CHECK_EQ_INT(damaged_copies(dir, NULL, 0, &match), 2);
	al_journal_free(j);
	free(b1);
	free(b2);
}

#define THREADS 8
#define PER_THREAD 2000

static void *appender(void *arg)
{
	al_journal *j = ((void **)arg)[0];
	long t = (long)((void **)arg)[1];
	char rec[64];

	for (int i = 0; i < PER_THREAD; i++) {
		/* varying lengths so interleaved bytes would break framing */
		int n = snprintf(rec, sizeof(rec), "t%ld-%d-%.*s", t, i, i % 23, "xxxxxxxxxxxxxxxxxxxxxxx");
		if (al_journal_append(j, rec, (size_t)n) != 0)
			return (void *)1;
	}
	return NULL;
}

static unsigned char seen[THREADS][PER_THREAD];

static int count_seen(void *ctx, const void *rec, size_t len)
{
	char buf[64];
	long t;
	int i, pad;
	(void)ctx;
	if (len >= sizeof(buf))
		return 1;
	memcpy(buf, rec, len);
	buf[len] = '\0';
	if (sscanf(buf, "t%ld-%d-", &t, &i) != 2 || t < 0 || t >= THREADS || i < 0 ||
	    i >= PER_THREAD)
		return 2;
	pad = (int)(strrchr(buf, '-') - buf) + 1;
	if ((int)len - pad != i % 23)
		return 3;
	seen[t][i]++;
	return 0;
}

static void test_threads(const char *root)
{
	char dir[512];
	al_journal *j = NULL;
	pthread_t th[THREADS];
	void *args[THREADS][2];
	int bad = 0;

	snprintf(dir, sizeof(dir), "%s/threads", root);
	CHECK_OK(al_journal_open(&j, dir));
	for (long t = 0; t < THREADS; t++) {
		args[t][0] = j;
		args[t][1] = (void *)t;
		pthread_create(&th[t], NULL, appender, args[t]);
	}
	/* rotate while they append: records spread over generations, none lost */
	for (int r = 0; r < 5; r++) {
		uint64_t sealed;
		usleep(2000);
		CHECK_OK(al_journal_rotate(&sealed, j));
	}
	for (int t = 0; t < THREADS; t++) {
		void *ret;
		pthread_join(th[t], &ret);
		CHECK(ret == NULL);
	}
	CHECK_OK(al_journal_replay(j, count_seen, NULL));
	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < PER_THREAD; i++)
			bad += seen[t][i] != 1;
	CHECK_EQ_INT(bad, 0);
	al_journal_free(j);
}

int main(void)
{
	char root[] = "/tmp/al-journal-XXXXXX", cmd[600];

	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	test_basic(root);
	test_torn_tail(root);
	test_rotate_drop(root);
	test_damage(root);
	test_format1(root);
	test_damaged_magic(root);
	test_generation_limit(root);
	test_refuse(root);
	test_threads(root);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
	CHECK_DONE();
}
