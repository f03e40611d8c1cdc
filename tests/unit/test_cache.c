/* aletheia unit tests: the local blob cache (fills, verification, LRU, pins, index, sizes). */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "aletheia/cache.h"
#include "aletheia/hash.h"
#include "check.h"

#define BLOB 1000

typedef struct {
	char data[BLOB];
	size_t len;
	char hash[AL_HASH_HEX_LEN + 1];
	atomic_int calls;
	int enospc_times;     /* fail this many calls with AL_ENOSPC, as a full disk would */
	int corrupt;          /* write different bytes than the hash says */
	int sleep_ms;
} blob;

static char dir[64];

static void blob_init(blob *b, int seed, size_t len)
{
	memset(b, 0, sizeof(*b));
	for (size_t i = 0; i < len; i++)
		b->data[i] = (char)(seed * 131 + i * 7);
	b->len = len;
	al_hash_buffer(b->hash, b->data, len);
}

static int fill(void *ctx, int fd)
{
	blob *b = ctx;
	int call = atomic_fetch_add(&b->calls, 1);
	if (b->sleep_ms)
		usleep((useconds_t)b->sleep_ms * 1000);
	if (call < b->enospc_times) {
		/* Part of the data made it before the disk filled up. */
		if (write(fd, b->data, b->len / 2) < 0)
			return AL_EIO;
		return al_error_set(AL_ENOSPC, "write: No space left on device");
	}
	if (write(fd, b->data, b->len) != (ssize_t)b->len)
		return AL_EIO;
	if (b->corrupt && pwrite(fd, "X", 1, 0) != 1)
		return AL_EIO;
	return 0;
}

static int count_in(const char *sub)
{
	char p[256];
	int n = 0;
	snprintf(p, sizeof(p), "%s/%s", dir, sub);
	DIR *d = opendir(p);
	struct dirent *de;
	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int blob_files(void)
{
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		if (strlen(de->d_name) == 2 && de->d_name[0] != '.')
			n += count_in(de->d_name);
	if (d)
		closedir(d);
	return n;
}

/* Acquire, check the bytes, and release right away (unless keep). */
static void use(al_cache *c, blob *b, int keep)
{
	int fd = -1;
	char back[BLOB];
	CHECK_OK(al_cache_acquire(&fd, c, b->hash, b->len, fill, b));
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK_EQ_INT(pread(fd, back, sizeof(back), 0), (long long)b->len);
	CHECK(memcmp(back, b->data, b->len) == 0);
	CHECK(write(fd, "x", 1) < 0);    /* read-only */
	close(fd);
	if (!keep)
		al_cache_release(c, b->hash);
}

typedef struct {
	al_cache *c;
	blob *b;
	pthread_barrier_t *start;
	int rc, fd;
} racer;

static void *race(void *arg)
{
	racer *r = arg;
	pthread_barrier_wait(r->start);
	r->rc = al_cache_acquire(&r->fd, r->c, r->b->hash, r->b->len, fill, r->b);
	return NULL;
}

static void test_sizes(void)
{
	uint64_t v = 1;
	CHECK_OK(al_size_parse(&v, "4096"));
	CHECK_EQ_INT(v, 4096);
	CHECK_OK(al_size_parse(&v, "0"));
	CHECK_EQ_INT(v, 0);
	CHECK_OK(al_size_parse(&v, "512M"));
	CHECK_EQ_INT(v, 512ULL << 20);
	CHECK_OK(al_size_parse(&v, "10G"));
	CHECK_EQ_INT(v, 10ULL << 30);
	CHECK_OK(al_size_parse(&v, "10g"));
	CHECK_EQ_INT(v, 10ULL << 30);
	CHECK_OK(al_size_parse(&v, "1.5G"));
	CHECK_EQ_INT(v, 3ULL << 29);
	CHECK_OK(al_size_parse(&v, "2K"));
	CHECK_EQ_INT(v, 2048);
	CHECK_OK(al_size_parse(&v, "2KiB"));
	CHECK_EQ_INT(v, 2048);
	CHECK_OK(al_size_parse(&v, "2KB"));
	CHECK_EQ_INT(v, 2048);
	CHECK_OK(al_size_parse(&v, "3T"));
	CHECK_EQ_INT(v, 3ULL << 40);
	CHECK_OK(al_size_parse(&v, "100B"));
	CHECK_EQ_INT(v, 100);
	CHECK_OK(al_size_parse(&v, "0.5K"));
	CHECK_EQ_INT(v, 512);
	CHECK_OK(al_size_parse(&v, "18446744073709551615"));
	CHECK(v == UINT64_MAX);
	const char *bad[] = { "", "G", "-1", "1.5", "1.", ".5G", "10X", "10GG", "1e3", " 10", "10Gi",
		"1.2.3M", "abc", "18446744073709551616", "20000000T", "0x10", NULL };
	for (int i = 0; bad[i]; i++) {
		int rc = al_size_parse(&v, bad[i]);
		if (rc != AL_EINVAL)
			fprintf(stderr, "al_size_parse(\"%s\") accepted\n", bad[i]);
		CHECK_EQ_INT(rc, AL_EINVAL);
	}
	CHECK_EQ_INT(al_size_parse(&v, NULL), AL_EINVAL);
}

int main(void)
{
	al_cache *c = NULL;
	al_cache_stats st;
	static blob a, b, cc, d, e, big;
	int fd = -1;
	char p[256];

	test_sizes();
	strcpy(dir, "/tmp/al-test-cache-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	blob_init(&a, 1, BLOB);
	blob_init(&b, 2, BLOB);
	blob_init(&cc, 3, BLOB);
	blob_init(&d, 4, BLOB);
	blob_init(&e, 5, BLOB);

	CHECK_OK(al_cache_open(&c, dir, 3 * BLOB));
	if (!c)
		CHECK_DONE();

	/* Miss, then hit: one fill. */
	CHECK(!al_cache_contains(c, a.hash));
	use(c, &a, 0);
	CHECK(al_cache_contains(c, a.hash));
	use(c, &a, 0);
	CHECK_EQ_INT(a.calls, 1);
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.misses, 1);
	CHECK_EQ_INT(st.hits, 1);
	CHECK_EQ_INT(st.entries, 1);
	CHECK_EQ_INT(st.bytes, BLOB);
	CHECK_EQ_INT(st.max_bytes, 3 * BLOB);
	CHECK_EQ_INT(st.pinned, 0);
	snprintf(p, sizeof(p), "%s/%.2s/%s", dir, a.hash, a.hash);
	struct stat sb;
	CHECK(stat(p, &sb) == 0 && sb.st_size == BLOB);

	/* fsck's check of a cached copy: a good one passes; a damaged one is reported and removed
	 * (at once when unused, else when its last user lets go), and the next use fills it again. */
	{
		int found = -1, fd2 = -1;
		CHECK_OK(al_cache_check(&found, c, a.hash, a.len));
		CHECK_EQ_INT(found, 1);
		CHECK_OK(al_cache_check(&found, c, e.hash, e.len));
		CHECK_EQ_INT(found, 0);
		CHECK(chmod(p, 0644) == 0);
		int w = open(p, O_WRONLY);
		CHECK(w >= 0 && pwrite(w, "!", 1, 5) == 1);
		close(w);
		CHECK_EQ_INT(al_cache_check(&found, c, a.hash, a.len), AL_EIO);
		CHECK(strstr(al_error_last(), "damaged") != NULL);
		CHECK(!al_cache_contains(c, a.hash));
		CHECK(access(p, F_OK) != 0);
		use(c, &a, 0);
		CHECK_EQ_INT(a.calls, 2);
		/* In use while found damaged: new users are refused until it is let go. */
		CHECK_OK(al_cache_acquire(&fd2, c, a.hash, a.len, fill, &a));
		CHECK(chmod(p, 0644) == 0);
		w = open(p, O_WRONLY);
		CHECK(w >= 0 && pwrite(w, "!", 1, 5) == 1);
		close(w);
		CHECK_EQ_INT(al_cache_check(&found, c, a.hash, a.len), AL_EIO);
		CHECK(al_cache_acquire(&fd, c, a.hash, a.len, fill, &a) == AL_EIO);
		close(fd2);
		al_cache_release(c, a.hash);
		CHECK(!al_cache_contains(c, a.hash));
		use(c, &a, 0);
		CHECK_EQ_INT(a.calls, 3);
		al_cache_get_stats(&st, c);
		CHECK_EQ_INT(st.entries, 1);
		CHECK_EQ_INT(st.bytes, BLOB);
	}

	/* Hash mismatch: AL_EIO, nothing kept; a wrong declared size likewise. */
	blob_init(&big, 9, 10);
	big.corrupt = 1;
	CHECK_EQ_INT(al_cache_acquire(&fd, c, big.hash, big.len, fill, &big), AL_EIO);
	CHECK(strstr(al_error_last(), "hash mismatch") != NULL);
	CHECK_EQ_INT(fd, -1);
	CHECK(!al_cache_contains(c, big.hash));
	big.corrupt = 0;
	CHECK_EQ_INT(al_cache_acquire(&fd, c, big.hash, big.len + 1, fill, &big), AL_EIO);
	CHECK(!al_cache_contains(c, big.hash));
	CHECK_EQ_INT(count_in("tmp"), 0);
	CHECK_EQ_INT(blob_files(), 1);
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.bytes, BLOB);
	CHECK_EQ_INT(al_cache_acquire(&fd, c, "nothex", 1, fill, &big), AL_EINVAL);
	CHECK_EQ_INT(al_cache_acquire(&fd, c, d.hash, d.len, NULL, NULL), AL_ENOTFOUND);

	/* LRU: a, b, c fill the cache; touching a makes b the oldest; d evicts b. */
	use(c, &b, 0);
	use(c, &cc, 0);
	use(c, &a, 0);
	use(c, &d, 0);
	CHECK(al_cache_contains(c, a.hash));
	CHECK(!al_cache_contains(c, b.hash));
	CHECK(al_cache_contains(c, cc.hash));
	CHECK(al_cache_contains(c, d.hash));
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.evictions, 1);
	CHECK_EQ_INT(st.bytes, 3 * BLOB);
	CHECK_EQ_INT(blob_files(), 3);

	/* A pinned entry is never evicted: cc is oldest but pinned (twice), so a goes instead. */
	use(c, &cc, 1);
	use(c, &a, 0);
	use(c, &d, 0);
	use(c, &cc, 1);    /* order now: a, d, cc(pinned x2) */
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.pinned, 1);
	use(c, &e, 0);     /* evicts a */
	use(c, &b, 0);     /* evicts d, not cc */
	CHECK(al_cache_contains(c, cc.hash));
	CHECK(!al_cache_contains(c, a.hash));
	CHECK(!al_cache_contains(c, d.hash));
	al_cache_release(c, cc.hash);    /* still pinned once */
	use(c, &a, 0);     /* evicts e: cc is still pinned though older */
	CHECK(al_cache_contains(c, cc.hash));
	CHECK(!al_cache_contains(c, e.hash));

	/* Everything pinned: AL_ENOSPC without calling fill. */
	use(c, &a, 1);
	use(c, &b, 1);
	int calls = d.calls;
	CHECK_EQ_INT(al_cache_acquire(&fd, c, d.hash, d.len, fill, &d), AL_ENOSPC);
	CHECK(strstr(al_error_last(), "3000 bytes pinned") != NULL);
	CHECK(strstr(al_error_last(), "--cache-size") != NULL);
	CHECK_EQ_INT(d.calls, calls);
	CHECK(!al_cache_contains(c, d.hash));
	al_cache_release(c, a.hash);
	al_cache_release(c, b.hash);
	al_cache_release(c, cc.hash);
	al_cache_release(c, cc.hash);    /* extra releases are harmless */
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.pinned, 0);

	/* Larger than the whole cache. */
	static blob huge;
	blob_init(&huge, 7, BLOB);
	CHECK_EQ_INT(al_cache_acquire(&fd, c, huge.hash, 4 * BLOB, fill, &huge), AL_ENOSPC);
	CHECK_EQ_INT(huge.calls, 0);

	/* Disk full during a fill: evict more and retry once; if it still fails, AL_ENOSPC. */
	d.enospc_times = 1;
	d.calls = 0;
	use(c, &d, 0);
	CHECK_EQ_INT(d.calls, 2);
	CHECK_EQ_INT(count_in("tmp"), 0);
	e.enospc_times = 100;
	e.calls = 0;
	CHECK_EQ_INT(al_cache_acquire(&fd, c, e.hash, e.len, fill, &e), AL_ENOSPC);
	CHECK(strstr(al_error_last(), "No space left") != NULL);
	CHECK(!al_cache_contains(c, e.hash));
	CHECK_EQ_INT(count_in("tmp"), 0);
	e.enospc_times = 0;
	/* Nothing left to evict (the only other blob is pinned): no retry, AL_ENOSPC, no temp. */
	{
		al_cache *c2 = NULL;
		char dir2[] = "/tmp/al-test-cache2-XXXXXX";
		CHECK(mkdtemp(dir2) != NULL);
		CHECK_OK(al_cache_open(&c2, dir2, 0));
		if (c2) {
			int fd2 = -1;
			CHECK_OK(al_cache_acquire(&fd2, c2, b.hash, b.len, fill, &b));
			close(fd2);
			e.calls = 0;
			e.enospc_times = 100;
			CHECK_EQ_INT(al_cache_acquire(&fd2, c2, e.hash, e.len, fill, &e), AL_ENOSPC);
			CHECK_EQ_INT(e.calls, 1);
			CHECK(al_cache_contains(c2, b.hash));
			al_cache_get_stats(&st, c2);
			CHECK_EQ_INT(st.max_bytes, 0);
			CHECK_EQ_INT(st.entries, 1);
			CHECK_EQ_INT(st.pinned, 1);
			al_cache_free(c2);
		}
		snprintf(p, sizeof(p), "chmod -R u+w %s && rm -rf %s", dir2, dir2);
		CHECK_EQ_INT(system(p), 0);
	}
	e.enospc_times = 0;

	/* Two threads, one missing hash: one fill, both get the blob. */
	static blob r;
	blob_init(&r, 11, BLOB);
	r.sleep_ms = 200;
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, 2);
	racer r1 = { c, &r, &start, -1, -1 }, r2 = { c, &r, &start, -1, -1 };
	pthread_t t1, t2;
	pthread_create(&t1, NULL, race, &r1);
	pthread_create(&t2, NULL, race, &r2);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	pthread_barrier_destroy(&start);
	CHECK_OK(r1.rc);
	CHECK_OK(r2.rc);
	CHECK_EQ_INT(r.calls, 1);
	char back[BLOB];
	CHECK_EQ_INT(pread(r1.fd, back, BLOB, 0), BLOB);
	CHECK(memcmp(back, r.data, BLOB) == 0);
	CHECK_EQ_INT(pread(r2.fd, back, BLOB, 0), BLOB);
	CHECK(memcmp(back, r.data, BLOB) == 0);
	close(r1.fd);
	close(r2.fd);
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.pinned, 1);
	al_cache_release(c, r.hash);
	al_cache_release(c, r.hash);

	/* A failed shared fill fails both callers, once. */
	static blob rf;
	blob_init(&rf, 12, 10);
	rf.sleep_ms = 200;
	rf.corrupt = 1;
	pthread_barrier_init(&start, NULL, 2);
	racer f1 = { c, &rf, &start, -1, -1 }, f2 = { c, &rf, &start, -1, -1 };
	pthread_create(&t1, NULL, race, &f1);
	pthread_create(&t2, NULL, race, &f2);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	pthread_barrier_destroy(&start);
	CHECK_EQ_INT(f1.rc, AL_EIO);
	CHECK_EQ_INT(f2.rc, AL_EIO);
	CHECK_EQ_INT(rf.calls, 1);

	/* Persistent index: same entries and LRU order after close/reopen. Cache now holds
	 * (oldest first) some order; make it explicit: d, a, r. */
	use(c, &d, 0);
	use(c, &a, 0);
	use(c, &r, 0);
	CHECK(al_cache_contains(c, d.hash) && al_cache_contains(c, a.hash) &&
		al_cache_contains(c, r.hash));
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.entries, 3);
	al_cache_free(c);
	c = NULL;

	/* Leftovers: a temp file, an index row whose file vanished is tested below, and a blob file
	 * the index does not know. */
	snprintf(p, sizeof(p), "%s/tmp/fill-leftover", dir);
	int lf = open(p, O_WRONLY | O_CREAT, 0644);
	CHECK(lf >= 0);
	close(lf);
	CHECK_OK(al_cache_open(&c, dir, 3 * BLOB));
	if (!c)
		CHECK_DONE();
	CHECK_EQ_INT(count_in("tmp"), 0);
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.entries, 3);
	CHECK_EQ_INT(st.bytes, 3 * BLOB);
	CHECK_EQ_INT(st.hits + st.misses + st.evictions, 0);
	b.calls = 0;
	use(c, &b, 0);     /* evicts d, the oldest before the restart */
	CHECK(!al_cache_contains(c, d.hash));
	CHECK(al_cache_contains(c, a.hash));
	CHECK(al_cache_contains(c, r.hash));
	int calls_a = a.calls;
	use(c, &a, 0);     /* a hit after the restart */
	CHECK_EQ_INT(a.calls, calls_a);
	al_cache_free(c);
	c = NULL;

	/* Reconcile: delete r's file, truncate a's, drop in e's file by hand (unindexed). */
	snprintf(p, sizeof(p), "%s/%.2s/%s", dir, r.hash, r.hash);
	CHECK_EQ_INT(unlink(p), 0);
	snprintf(p, sizeof(p), "%s/%.2s/%s", dir, a.hash, a.hash);
	CHECK_EQ_INT(chmod(p, 0644), 0);
	CHECK_EQ_INT(truncate(p, 10), 0);
	snprintf(p, sizeof(p), "%s/%.2s", dir, e.hash);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/%.2s/%s", dir, e.hash, e.hash);
	lf = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0444);
	CHECK(lf >= 0);
	CHECK_EQ_INT(write(lf, e.data, e.len), (long long)e.len);
	close(lf);
	CHECK_OK(al_cache_open(&c, dir, 3 * BLOB));
	if (!c)
		CHECK_DONE();
	CHECK(!al_cache_contains(c, r.hash));
	CHECK(!al_cache_contains(c, a.hash));
	CHECK(al_cache_contains(c, b.hash));
	CHECK(al_cache_contains(c, e.hash));
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.entries, 2);
	CHECK_EQ_INT(st.bytes, 2 * BLOB);
	e.calls = 0;
	e.enospc_times = 0;
	use(c, &e, 0);
	CHECK_EQ_INT(e.calls, 0);
	use(c, &a, 0);     /* refilled after the bad copy was dropped */
	al_cache_free(c);
	c = NULL;

	/* Reopening with a smaller limit evicts down to it, oldest first (b, then e, then a). */
	CHECK_OK(al_cache_open(&c, dir, BLOB));
	if (c) {
		CHECK(!al_cache_contains(c, b.hash));
		CHECK(!al_cache_contains(c, e.hash));
		CHECK(al_cache_contains(c, a.hash));
		CHECK_EQ_INT(blob_files(), 1);
		al_cache_free(c);
	}
	CHECK_EQ_INT(al_cache_open(&c, "", 0), AL_EINVAL);

	char cmd[256];
	snprintf(cmd, sizeof(cmd), "chmod -R u+w %s && rm -rf %s", dir, dir);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_DONE();
}
