/* aletheia unit tests: the local blob cache's complete blobs (LRU, pins, fsck's check, the
 * persistent index and its reconcile, sizes), filled through the streaming path; the streaming
 * itself is test_cache_stream.c. */
#include <dirent.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "aletheia/cache.h"
#include "aletheia/hash.h"
#include "check.h"

#define BLOB 4096    /* a whole block: the cache counts blocks (footprint) */

typedef struct {
	char data[BLOB];
	size_t len;
	char hash[AL_HASH_HEX_LEN + 1];
	atomic_int calls;     /* fetches of its bytes */
} blob;

static char dir[64];
#define NBLOBS 16
static blob *blobs[NBLOBS];

static void blob_init(blob *b, int seed, size_t len)
{
	memset(b, 0, sizeof(*b));
	for (size_t i = 0; i < len; i++)
		b->data[i] = (char)(seed * 131 + i * 7);
	b->len = len;
	al_hash_buffer(b->hash, b->data, len);
	for (int i = 0; i < NBLOBS; i++)
		if (!blobs[i]) {
			blobs[i] = b;
			break;
		}
}

/* The origin: the blobs above, by hash. */
static int fetch(void *ctx, const char *hash, const char *source, int fd, uint64_t off,
	uint64_t len, int *whole)
{
	blob *b = NULL;
	(void)ctx;
	(void)source;
	*whole = 0;
	for (int i = 0; i < NBLOBS; i++)
		if (blobs[i] && strcmp(blobs[i]->hash, hash) == 0)
			b = blobs[i];
	if (!b)
		return al_error_set(AL_ENOTFOUND, "no such blob");
	atomic_fetch_add(&b->calls, 1);
	if (off + len > b->len || pwrite(fd, b->data + off, len, (off_t)off) != (ssize_t)len)
		return al_error_set(AL_EIO, "fake origin: bad range");
	return 0;
}

static al_cache *cache_open(const char *d, uint64_t max_bytes)
{
	al_cache *c = NULL;
	CHECK_OK(al_cache_open(&c, d, max_bytes));
	if (c)
		al_cache_set_fetcher(c, fetch, NULL);
	return c;
}

/* A cache whose placed files are synced (and listed) every sync_ms (ALETHEIA_CACHE_SYNC_MS). */
static al_cache *cache_open_sync(const char *d, const char *sync_ms)
{
	al_cache *c;
	setenv("ALETHEIA_CACHE_SYNC_MS", sync_ms, 1);
	c = cache_open(d, 0);
	unsetenv("ALETHEIA_CACHE_SYNC_MS");
	return c;
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

/* Opens the blob, waits until it is complete, checks the bytes; closes it right away unless keep
 * (then the open handle, which pins it, is returned). */
static al_cache_blob *use(al_cache *c, blob *b, int keep)
{
	al_cache_blob *h = NULL;
	char back[BLOB];
	int fd;
	CHECK_OK(al_cache_open_blob(&h, c, b->hash, NULL, b->len));
	if (!h)
		return NULL;
	CHECK_OK(al_cache_blob_complete(h));
	fd = al_cache_blob_fd(h);
	CHECK_EQ_INT(pread(fd, back, sizeof(back), 0), (long long)b->len);
	CHECK(memcmp(back, b->data, b->len) == 0);
	CHECK(write(fd, "x", 1) < 0);    /* read-only */
	if (!keep) {
		al_cache_blob_close(h);
		h = NULL;
	}
	return h;
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

static void damage(const char *d, const blob *b)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%.2s/%s", d, b->hash, b->hash);
	CHECK_EQ_INT(chmod(p, 0644), 0);
	int w = open(p, O_WRONLY);
	CHECK(w >= 0 && pwrite(w, "!", 1, 5) == 1);
	close(w);
}

/* Placed fills are synced in batches and listed in the index only after a sync (README
 * "Durability"): a file placed and then left by a crash before that sync may hold anything its
 * size allows, so a mount finding it without a row hashes it before serving it. The crash: the
 * first cache is never closed (no sync), its placed file damaged, the folder opened again. */
static void test_crash_before_sync(void)
{
	static blob f1, f2, f3;
	char d[64], cmd[200];
	al_cache *c1, *c2;
	al_cache_stats st;
	int calls;

	strcpy(d, "/tmp/al-test-cache-sync-XXXXXX");
	CHECK(mkdtemp(d) != NULL);
	blob_init(&f1, 11, BLOB);
	blob_init(&f2, 12, BLOB);
	blob_init(&f3, 13, BLOB);
	c1 = cache_open_sync(d, "3600000");    /* no sync before the crash */
	if (!c1)
		return;
	use(c1, &f1, 0);
	use(c1, &f2, 0);
	/* Placement happens on a worker after the readers got the verified bytes. */
	for (int i = 0; i < 500; i++) {
		al_cache_get_stats(&st, c1);
		if (st.unsynced == 2)
			break;
		usleep(10000);
	}
	CHECK_EQ_INT(st.unsynced, 2);
	CHECK_EQ_INT(st.syncs, 0);
	damage(d, &f1);
	if (!(c2 = cache_open(d, 0)))
		return;
	al_cache_get_stats(&st, c2);
	CHECK_EQ_INT(st.entries, 2);
	CHECK_EQ_INT(st.unverified, 2);
	calls = f1.calls;
	use(c2, &f1, 0);                  /* the damaged copy is not served: fetched again */
	CHECK_EQ_INT(f1.calls, calls + 1);
	calls = f2.calls;
	use(c2, &f2, 0);                  /* the good one hashed and kept */
	CHECK_EQ_INT(f2.calls, calls);
	al_cache_get_stats(&st, c2);
	CHECK_EQ_INT(st.unverified, 0);
	CHECK_EQ_INT(st.entries, 2);

	/* Synced about once a second (here 50 ms): rows written, nothing left unsynced. The
	 * "crashed" c1 closes first: its rows (f1 as it placed it) are then replaced by c2's (f1 as
	 * fetched again), as a crashed daemon writes none; the other way round f1's row would name
	 * the ctime of a file that is gone, and f1 would be hashed once more. */
	al_cache_free(c1);
	al_cache_free(c2);
	c1 = cache_open_sync(d, "50");
	if (!c1)
		return;
	al_cache_get_stats(&st, c1);
	CHECK_EQ_INT(st.unverified, 0);   /* the clean closes listed both */
	use(c1, &f3, 0);
	for (int i = 0; i < 500; i++) {
		al_cache_get_stats(&st, c1);
		if (st.syncs >= 1 && st.unsynced == 0)
			break;
		usleep(10000);
	}
	CHECK(st.syncs >= 1);
	CHECK_EQ_INT(st.unsynced, 0);
	if (!(c2 = cache_open(d, 0)))    /* a crash after the sync: f3 is listed */
		return;
	al_cache_get_stats(&st, c2);
	CHECK_EQ_INT(st.entries, 3);
	CHECK_EQ_INT(st.unverified, 0);
	al_cache_free(c2);
	al_cache_free(c1);

	/* ALETHEIA_CACHE_SYNC_MS=0: each fill synced and listed as it is placed. */
	c1 = cache_open_sync(d, "0");
	if (!c1)
		return;
	static blob f4;
	blob_init(&f4, 14, BLOB);
	use(c1, &f4, 0);
	for (int i = 0; i < 500; i++) {
		al_cache_get_stats(&st, c1);
		if (st.entries == 4)
			break;
		usleep(10000);
	}
	if ((c2 = cache_open(d, 0)) != NULL) {
		al_cache_get_stats(&st, c2);
		CHECK_EQ_INT(st.entries, 4);
		CHECK_EQ_INT(st.unverified, 0);
		al_cache_free(c2);
	}
	/* Its folder removed behind the cache's back (which made it once): made again. */
	snprintf(cmd, sizeof(cmd), "rm -rf %s/%.2s", d, f4.hash);
	CHECK_EQ_INT(system(cmd), 0);
	calls = f4.calls;
	use(c1, &f4, 0);
	CHECK_EQ_INT(f4.calls, calls + 1);
	snprintf(cmd, sizeof(cmd), "%s/%.2s/%s", d, f4.hash, f4.hash);
	for (int i = 0; i < 500 && access(cmd, F_OK) != 0; i++)
		usleep(10000);
	CHECK_EQ_INT(access(cmd, F_OK), 0);
	al_cache_free(c1);
	snprintf(cmd, sizeof(cmd), "chmod -R u+w %s && rm -rf %s", d, d);
	CHECK_EQ_INT(system(cmd), 0);
}

/* A cached file changed behind the cache's back after it was placed (a byte written, its mtime
 * put back) is hashed again before it is served, whether the change came while the cache was
 * open or while nothing had it open (the index keeps each file's ctime, which nobody can set
 * back): the damaged copy is fetched again, never served; an unchanged one is not hashed. */
static void test_changed_behind_our_back(void)
{
	static blob g1, g2;
	char d[64], p[256], cmd[200];
	al_cache *c1, *c2;
	al_cache_stats st;
	struct stat sb;
	int calls;

	strcpy(d, "/tmp/al-test-cache-ctime-XXXXXX");
	CHECK(mkdtemp(d) != NULL);
	blob_init(&g1, 21, BLOB);
	blob_init(&g2, 22, BLOB);
	c1 = cache_open_sync(d, "0");    /* each placement gets its row at once */
	if (!c1)
		return;
	use(c1, &g1, 0);
	use(c1, &g2, 0);
	for (int i = 0; i < 500; i++) {
		al_cache_get_stats(&st, c1);
		if (st.entries == 2)
			break;
		usleep(10000);
	}
	CHECK_EQ_INT(st.entries, 2);

	/* While open: g1 written behind its back, its mtime put back. */
	snprintf(p, sizeof(p), "%s/%.2s/%s", d, g1.hash, g1.hash);
	CHECK_EQ_INT(stat(p, &sb), 0);
	damage(d, &g1);
	{
		struct timespec ts[2] = {sb.st_atim, sb.st_mtim};
		CHECK_EQ_INT(utimensat(AT_FDCWD, p, ts, 0), 0);
	}
	calls = g1.calls;
	use(c1, &g1, 0);                   /* checks the bytes: the damaged copy is not served */
	CHECK_EQ_INT(g1.calls, calls + 1);
	calls = g2.calls;
	use(c1, &g2, 0);                   /* unchanged: served as it is */
	CHECK_EQ_INT(g2.calls, calls);
	for (int i = 0; i < 500 && access(p, F_OK) != 0; i++)
		usleep(10000);                 /* g1 placed again */
	al_cache_free(c1);

	/* While nothing had it open: g2 changed; the next cache finds it by its ctime. */
	damage(d, &g2);
	if (!(c2 = cache_open(d, 0)))
		return;
	al_cache_get_stats(&st, c2);
	CHECK_EQ_INT(st.entries, 2);
	CHECK_EQ_INT(st.unverified, 1);
	calls = g2.calls;
	use(c2, &g2, 0);
	CHECK_EQ_INT(g2.calls, calls + 1);
	calls = g1.calls;
	use(c2, &g1, 0);                   /* its new copy's ctime was kept: not fetched again */
	CHECK_EQ_INT(g1.calls, calls);
	al_cache_free(c2);
	snprintf(cmd, sizeof(cmd), "chmod -R u+w %s && rm -rf %s", d, d);
	CHECK_EQ_INT(system(cmd), 0);
}

/* A cached file whose ctime moved with its bytes unchanged (a chmod behind our back) is hashed
 * once at its next open; the index then keeps the new ctime, so the next cache does not hash it
 * again (its row was written with the old one before). */
static void test_ctime_kept_after_check(void)
{
	static blob g;
	char d[64], p[256], cmd[200];
	al_cache *c1, *c2;
	al_cache_stats st;
	int calls;

	strcpy(d, "/tmp/al-test-cache-ctime2-XXXXXX");
	CHECK(mkdtemp(d) != NULL);
	blob_init(&g, 23, BLOB);
	if (!(c1 = cache_open_sync(d, "0")))
		return;
	use(c1, &g, 0);
	for (int i = 0; i < 500; i++) {
		al_cache_get_stats(&st, c1);
		if (st.entries == 1 && st.unsynced == 0)
			break;
		usleep(10000);
	}
	snprintf(p, sizeof(p), "%s/%.2s/%s", d, g.hash, g.hash);
	usleep(20000);                     /* a ctime of its own, on coarse clocks too */
	CHECK_EQ_INT(chmod(p, 0644), 0);
	CHECK_EQ_INT(chmod(p, 0444), 0);
	calls = g.calls;
	use(c1, &g, 0);                    /* hashed, found whole: served, not fetched */
	CHECK_EQ_INT(g.calls, calls);
	al_cache_free(c1);                 /* writes the dirty rows */
	if (!(c2 = cache_open(d, 0)))
		return;
	al_cache_get_stats(&st, c2);
	CHECK_EQ_INT(st.entries, 1);
	CHECK_EQ_INT(st.unverified, 0);
	al_cache_free(c2);
	snprintf(cmd, sizeof(cmd), "chmod -R u+w %s && rm -rf %s", d, d);
	CHECK_EQ_INT(system(cmd), 0);
}

int main(void)
{
	al_cache *c = NULL;
	al_cache_blob *h = NULL, *h2 = NULL, *hk[4];
	al_cache_stats st;
	static blob a, b, cc, d, e;
	char p[256];

	test_sizes();
	test_crash_before_sync();
	test_changed_behind_our_back();
	test_ctime_kept_after_check();
	strcpy(dir, "/tmp/al-test-cache-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	blob_init(&a, 1, BLOB);
	blob_init(&b, 2, BLOB);
	blob_init(&cc, 3, BLOB);
	blob_init(&d, 4, BLOB);
	blob_init(&e, 5, BLOB);

	if (!(c = cache_open(dir, 3 * BLOB)))
		CHECK_DONE();

	/* Miss, then hit: fetched once. */
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
	CHECK_EQ_INT(count_in("tmp"), 0);

	/* fsck's check of a cached copy: a good one passes; a damaged one is reported and removed
	 * (at once when unused, else when its last user lets go), and the next use fetches it again. */
	{
		int found = -1;
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
		h = use(c, &a, 1);
		CHECK(chmod(p, 0644) == 0);
		w = open(p, O_WRONLY);
		CHECK(w >= 0 && pwrite(w, "!", 1, 5) == 1);
		close(w);
		CHECK_EQ_INT(al_cache_check(&found, c, a.hash, a.len), AL_EIO);
		CHECK_EQ_INT(al_cache_open_blob(&h2, c, a.hash, NULL, a.len), AL_EIO);
		al_cache_blob_close(h);
		CHECK(!al_cache_contains(c, a.hash));
		use(c, &a, 0);
		CHECK_EQ_INT(a.calls, 3);
		al_cache_get_stats(&st, c);
		CHECK_EQ_INT(st.entries, 1);
		CHECK_EQ_INT(st.bytes, BLOB);
	}

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

	/* A pinned entry is never evicted: cc is oldest but open (twice), so a goes instead. */
	hk[0] = use(c, &cc, 1);
	use(c, &a, 0);
	use(c, &d, 0);
	hk[1] = use(c, &cc, 1);    /* order now: a, d, cc(open x2) */
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.pinned, 1);
	use(c, &e, 0);     /* evicts a */
	use(c, &b, 0);     /* evicts d, not cc */
	CHECK(al_cache_contains(c, cc.hash));
	CHECK(!al_cache_contains(c, a.hash));
	CHECK(!al_cache_contains(c, d.hash));
	al_cache_blob_close(hk[0]);    /* still open once */
	use(c, &a, 0);     /* evicts e: cc is still pinned though older */
	CHECK(al_cache_contains(c, cc.hash));
	CHECK(!al_cache_contains(c, e.hash));
	al_cache_blob_close(hk[1]);
	al_cache_release(c, cc.hash);    /* extra releases are harmless */
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.pinned, 0);

	/* Larger than the whole cache: refused before anything is fetched. */
	static blob huge;
	blob_init(&huge, 7, BLOB);
	CHECK_EQ_INT(al_cache_open_blob(&h, c, huge.hash, NULL, 4 * BLOB), AL_ENOSPC);
	CHECK(strstr(al_error_last(), "--cache-size") != NULL);
	CHECK_EQ_INT(huge.calls, 0);

	/* Persistent index: same entries and LRU order after close/reopen: d, a, b. */
	use(c, &d, 0);
	use(c, &a, 0);
	use(c, &b, 0);
	CHECK(al_cache_contains(c, d.hash) && al_cache_contains(c, a.hash) &&
		al_cache_contains(c, b.hash));
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.entries, 3);
	al_cache_free(c);
	c = NULL;

	/* Leftovers: a temp file (an index row whose file vanished, and a blob file the index does
	 * not know, are below). */
	snprintf(p, sizeof(p), "%s/tmp/fill-leftover", dir);
	int lf = open(p, O_WRONLY | O_CREAT, 0644);
	CHECK(lf >= 0);
	close(lf);
	if (!(c = cache_open(dir, 3 * BLOB)))
		CHECK_DONE();
	CHECK_EQ_INT(count_in("tmp"), 0);
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.entries, 3);
	CHECK_EQ_INT(st.bytes, 3 * BLOB);
	CHECK_EQ_INT(st.hits + st.misses + st.evictions, 0);
	use(c, &cc, 0);    /* evicts d, the oldest before the restart */
	CHECK(!al_cache_contains(c, d.hash));
	CHECK(al_cache_contains(c, a.hash));
	CHECK(al_cache_contains(c, b.hash));
	int calls_a = a.calls;
	use(c, &a, 0);     /* a hit after the restart */
	CHECK_EQ_INT(a.calls, calls_a);
	al_cache_free(c);
	c = NULL;

	/* Reconcile: delete b's file, truncate a's, drop in e's file by hand (unindexed). */
	snprintf(p, sizeof(p), "%s/%.2s/%s", dir, b.hash, b.hash);
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
	if (!(c = cache_open(dir, 3 * BLOB)))
		CHECK_DONE();
	CHECK(!al_cache_contains(c, b.hash));
	CHECK(!al_cache_contains(c, a.hash));
	CHECK(al_cache_contains(c, cc.hash));
	CHECK(al_cache_contains(c, e.hash));
	al_cache_get_stats(&st, c);
	CHECK_EQ_INT(st.entries, 2);
	CHECK_EQ_INT(st.bytes, 2 * BLOB);
	e.calls = 0;
	use(c, &e, 0);
	CHECK_EQ_INT(e.calls, 0);
	calls_a = a.calls;
	use(c, &a, 0);     /* fetched again after the bad copy was dropped */
	CHECK_EQ_INT(a.calls, calls_a + 1);
	al_cache_free(c);
	c = NULL;

	/* Reopening with a smaller limit evicts down to it, oldest first (cc, then e, then a). */
	if ((c = cache_open(dir, BLOB)) != NULL) {
		CHECK(!al_cache_contains(c, cc.hash));
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
