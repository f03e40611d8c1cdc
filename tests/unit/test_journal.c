/* Unit tests for core/journal.c: append/replay, torn tails, rotate/drop, reopen, threads. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "aletheia/journal.h"
#include "check.h"

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
	CHECK_EQ_INT(al_journal_bytes(j), 8 * 3 + 5 + 0 + 11);
	CHECK_EQ_INT(file_size(path), 8 * 3 + 5 + 0 + 11);

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
	/* a flipped payload byte fails the checksum: that record and the rest of the file go */
	{
		char p2[600];
		gen_path(p2, dir, 2);
		CHECK_OK(append_str(j, "seven"));
		al_journal_free(j);
		fd = open(p2, O_WRONLY);
		CHECK(pwrite(fd, "X", 1, 8) == 1);  /* first payload byte of "six" */
		close(fd);
		CHECK_OK(al_journal_open(&j, dir));
		CHECK_EQ_INT(file_size(p2), 0);
		CHECK_EQ_INT(al_journal_bytes(j), good);
		replay(c, j);
		CHECK_EQ_INT(c->n, 4);
		CHECK_OK(append_str(j, "eight"));
		replay(c, j);
		CHECK_EQ_INT(c->n, 5);
		CHECK_EQ_STR(c->recs[4], "eight");
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
	CHECK_EQ_INT(al_journal_bytes(j), 4 * 12);

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
	CHECK_EQ_INT(al_journal_bytes(j), 2 * 12);
	replay(c, j);
	CHECK_EQ_INT(c->n, 2);
	CHECK_EQ_STR(c->recs[0], "g2-a");

	/* dropping past the current generation keeps the current one */
	CHECK_OK(al_journal_drop(j, 100));
	CHECK(access(gen_path(path, dir, 2), F_OK) != 0);
	CHECK(access(gen_path(path, dir, 3), F_OK) == 0);
	CHECK_EQ_INT(al_journal_bytes(j), 12);
	CHECK_OK(append_str(j, "g3-b"));
	replay(c, j);
	CHECK_EQ_INT(c->n, 2);
	CHECK_EQ_STR(c->recs[0], "g3-a");
	CHECK_EQ_STR(c->recs[1], "g3-b");
	CHECK_OK(al_journal_sync(j));
	al_journal_free(j);

	/* reopen continues in the newest generation */
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_EQ_INT(al_journal_bytes(j), 24);
	CHECK_OK(append_str(j, "g3-c"));
	CHECK_EQ_INT(file_size(gen_path(path, dir, 3)), 36);
	CHECK_EQ_INT(count_files(dir), 2);  /* generation 3 and journal.notanumber */
	CHECK_OK(al_journal_rotate(&sealed, j));
	CHECK_EQ_INT(sealed, 3);
	al_journal_free(j);
	CHECK_OK(al_journal_open(&j, dir));
	CHECK_OK(append_str(j, "g4-a"));
	CHECK_EQ_INT(file_size(gen_path(path, dir, 4)), 12);
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
	test_threads(root);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
	CHECK_DONE();
}
