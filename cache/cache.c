/* aletheia: the local content-addressed blob cache: DIR/<xx>/<hash> files, verified fills by
 * ranges into a sparse file in DIR/tmp/ while readers stream from it (each range served only once
 * its pieces matched their hashes), LRU eviction of unpinned blobs, a persistent SQLite index
 * (DIR/index.db), and prefetch: lists of blobs fetched ahead on threads of their own. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include "aletheia/cache.h"
#include "aletheia/hash.h"
#include "core/util.h"

/* Hits only mark entries dirty; the index is rewritten in batches when this many are dirty
 * or FLUSH_INTERVAL_US has passed, and on close. A crash loses only LRU freshness. A hit marks
 * its entry only when its row's last use is LRU_GRAIN_US old: the order in memory is exact,
 * the index's (read at the next start) to a minute, so an epoch over a dataset read a minute
 * ago rewrites no rows (they cost 5% of the daemon's CPU there, under the cache's lock). */
#define FLUSH_DIRTY_MAX 256
#define FLUSH_INTERVAL_US (5 * 1000000LL)
#define LRU_GRAIN_US (60 * 1000000LL)

/* READY: a complete blob in DIR/<xx>/; PARTIAL: a sparse file in DIR/tmp/ filled by ranges. */
enum entry_state { ENTRY_READY, ENTRY_PARTIAL };

typedef struct entry entry;
typedef struct fill fill;
typedef struct job job;
struct entry {
	char hash[AL_HASH_HEX_LEN + 1];
	uint64_t size;
	int64_t last_used;      /* logical clock, strictly increasing; persisted */
	int64_t stored_used;    /* last_used as the index row last got it */
	unsigned pins;
	enum entry_state state;
	int dirty;
	int damaged;            /* READY, found damaged by al_cache_check while open: goes when let go */
	/* READY and pinned: a descriptor the next opens duplicate, so a file removed behind our back
	 * while the kernel reads it (FUSE passthrough) still serves them; closed when unpinned. */
	int has_fd, fd;
	int prefetched;         /* fetched (or kept) by a prefetch and not opened since, never
				 * evicted to make room for another prefetch: PF_BY_SCAN, counted in
				 * unread_bytes, or PF_BY_PULL, in pulled_bytes (mark_prefetched) */
	/* Placed since the last sync of the cache's filesystem: no index row yet (rows name only
	 * files known to be on disk), written by sync_placed once a syncfs after the placement
	 * returned. placed_seq orders it against that syncfs. */
	int unsynced;
	uint64_t placed_seq;
	/* READY, found in the folder without an index row (placed, then a crash before the sync
	 * that would have listed it): hashed before it is first served; verifying while that runs. */
	int unverified, verifying;
	/* READY: the file's ctime when it was placed or last verified (0: not known, a row of an
	 * older index). Nothing of ours changes the file after that, and nobody can set a ctime
	 * back: a file opened by its path with another ctime was changed behind our back (written,
	 * touched, copied back) and is hashed again before it is served (open_ready). */
	int64_t ctime_ns;
	fill *fill;             /* PARTIAL only */
	entry *hnext;           /* hash-table chain */
	entry *prev, *next;     /* LRU list, READY and PARTIAL entries; head = least recently used */
};

/* Range fills: chunk granularity, read-ahead and the worker pool. */
#define CHUNK_SHIFT 18            /* what a random read fetches at least */
#define CHUNK ((uint64_t)1 << CHUNK_SHIFT)
_Static_assert(CHUNK == AL_CACHE_CHUNK, "AL_CACHE_CHUNK is the chunk size");
_Static_assert(AL_PIECE_MIN % CHUNK == 0, "a piece is whole chunks: recorded pieces must fit");
#define MIB ((uint64_t)1 << 20)
#define RA_INIT (4 * MIB)         /* first read-ahead window of a sequential reader */
#define RA_MAX (128 * MIB)        /* default largest window (ALETHEIA_READAHEAD_MB) */
#define RA_SLACK MIB              /* FUSE reads of one stream arrive slightly out of order */
#define JOB_MAX (32 * MIB)        /* default largest single ranged GET (ALETHEIA_FETCH_JOB_MB) */
#define WORKERS_DEFAULT 4         /* parallel read-ahead GETs (ALETHEIA_FETCH_WORKERS) */
#define WORKERS_MAX 32
/* Blobs prefetched at once (ALETHEIA_PREFETCH_PARALLEL): small files are latency-bound, and 24
 * fetches in flight kept s3rver busier than 8 (bench s3, 2,000 × 100 KiB: dataset prefetch
 * 481 → 712 files/s, 8 shuffled readers 420 → 472; xargs -P 8 curl 767-816). */
#define PF_PARALLEL 24
#define PF_MAX 64
#define PF_AHEAD_UNBOUNDED (2048 * MIB)  /* AHEAD's unread limit without --cache-size */
/* Blobs up to this size are verified before their first byte is served (one short wait); larger
 * ones stream when they have piece hashes (each range served once its pieces matched; a reader
 * that reads from the start to the end also waits for the whole blob's hash), and are held back
 * until the whole blob is verified when they have none: bytes that fail verification never
 * reach a reader (README "Object storage"). */
#define VERIFY_FIRST_MAX AL_CACHE_VERIFY_WHOLE_MAX
/* A fetch that failed after keeping its readers waiting this long (a stalled or unreachable
 * server, after the HTTP client's retries) makes the reads of that blob fail at once for
 * SLOW_FAIL_PAUSE_US instead of waiting all over again: the kernel asks once more, at once, for a
 * page whose read failed, which would double every read's wait (README "Object storage"). Fast
 * failures (an error answer, a damaged piece) are retried by the next read at once. */
#define SLOW_FAIL_US (5 * 1000000LL)
#define SLOW_FAIL_PAUSE_US (2 * 1000000LL)

enum { CH_MISSING, CH_QUEUED, CH_FETCHING, CH_PRESENT };
/* Per piece: its chunks are not all present or not read back yet; being hashed; matched. */
enum { PC_UNCHECKED, PC_CHECKING, PC_GOOD };

/* A read-ahead request: chunks [first, first+n), all CH_QUEUED while it waits. */
struct job {
	fill *f;
	uint32_t first, n;
	job *prev, *next;
};

/* The shared state of one blob being filled by ranges; every field is guarded by the cache lock. */
struct fill {
	entry *e;               /* the PARTIAL (later READY) entry; NULL once the fill was dropped */
	char hash[AL_HASH_HEX_LEN + 1];
	char *source;
	uint64_t size;
	uint32_t nchunks;
	uint8_t *st;            /* CH_* per chunk */
	uint64_t held;          /* bytes of FETCHING and PRESENT chunks, counted in the cache's bytes */
	char *path;             /* DIR/tmp/part-HASH */
	int fd;                 /* read-write, for fetches and hashing */
	al_hasher *hasher;
	uint32_t hashed;        /* chunks [0, hashed) are in the hasher */
	int hashing;            /* one thread advances the hash and completes the fill */
	unsigned inflight;      /* fetches running */
	unsigned busy;          /* inflight + hashing: the entry must not be evicted */
	unsigned refs;          /* handles, queued jobs, running fetches, the entry's link */
	int range_ok;           /* the origin honours Range (the blob store always does) */
	uint64_t fails;         /* failed fetches so far */
	int64_t slow_fail_us;   /* when a fetch last failed after SLOW_FAIL_US or more (al__mono_us) */
	int verified;           /* every chunk present and the hash matched */
	/* Piece hashes (al_cache_blob_set_pieces); NULL: held back until the blob is verified. */
	uint64_t *piece_hash;
	uint8_t *pst;           /* PC_* per piece */
	uint32_t npieces;
	unsigned piece_shift;   /* a piece is 1 << piece_shift chunks */
	uint64_t discards;      /* pieces discarded so far: their chunks went back to missing */
	int done;               /* 1 verified and moved into the complete set; -1 failed */
	int err_rc;
	char err_msg[512];
};

struct al_cache_blob {
	al_cache *c;
	fill *f;                /* NULL when the blob was complete at open */
	int fd;
	char hash[AL_HASH_HEX_LEN + 1];
	uint64_t size;
	/* Access pattern, for read-ahead (guarded by the cache lock). */
	uint64_t reads, last_end, window;
	uint32_t ra_next;       /* chunks below were already considered for read-ahead */
	int from_start;         /* reading sequentially since offset 0 */
};

/* Lock order: only `lock`. SQLite is used under it; fills (fill, fsync, hashing) run outside it. */
struct al_cache {
	pthread_mutex_t lock;
	pthread_cond_t filled;
	char *dir;
	sqlite3 *db;
	entry **buckets;
	size_t nbuckets, count;
	entry *lru_head, *lru_tail;
	uint64_t bytes;         /* READY entries plus space reserved by fills in progress, each in
				 * whole blocks (footprint) */
	uint64_t max_bytes;
	uint64_t block;         /* the cache filesystem's block: what a blob takes is rounded to it */
	uint64_t entries, hits, misses, evictions;
	int64_t clock;
	unsigned dirty;
	int64_t last_flush;
	/* Range fills. */
	al_cache_fetch_fn fetch;
	void *fetch_ctx;
	job *jq_head, *jq_tail;
	pthread_cond_t work;
	pthread_t workers[WORKERS_MAX];
	unsigned nworkers, want_workers;
	uint32_t job_chunks;
	uint64_t ra_max;
	int stop;
	al_cache_fill_stats fstats;
	/* Prefetch (al_cache_prefetch_*): the lists being worked on, their threads. */
	al_cache_prefetch *pf_head;
	pthread_cond_t pf_wake;     /* a prefetch may go on: a list, room, a blob read */
	unsigned pf_idle;           /* prefetch threads waiting on pf_wake */
	pthread_cond_t pf_progress; /* a prefetched blob was handled */
	pthread_t pf_threads[PF_MAX];
	unsigned npf, pf_parallel;
	uint64_t pf_ahead;          /* AHEAD: at most this many unread prefetched bytes */
	uint64_t unread_bytes;      /* entries prefetched by a scan (AHEAD), against pf_ahead */
	uint64_t pulled_bytes;      /* entries kept by a pull (ALL), which may fill the cache */
	al_cache_prefetch_totals pft;
	/* Batched syncs of placed fills (sync_main): one syncfs for all placed since the last. */
	int dirfd;                  /* the cache folder, for syncfs */
	pthread_t syncer;
	int has_syncer, syncing;
	pthread_cond_t sync_wake;
	uint64_t place_seq;         /* placements so far */
	unsigned unsynced;          /* entries with unsynced set */
	uint64_t syncs;             /* syncs that listed placed files */
	int64_t last_sync_us;       /* al__mono_us of the last sync's start */
	int64_t sync_interval_us;   /* ALETHEIA_CACHE_SYNC_MS */
	int sync_each;              /* fsync each fill before placing it, as before (a row could not
				     * be deleted, or no syncer thread): its row is written at once */
	/* DIR/<xx>/ folders made by this cache (by the first byte of the hash): placing a fill
	 * needs no mkdir each time (one removed behind our back is made again). Under the lock. */
	uint8_t made_sub[32];
};

/* ---- hash table and LRU list ---- */

static size_t bucket_of(const al_cache *c, const char *hash)
{
	/* The hash is already uniform; its first 16 hex digits are enough. */
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		char ch = hash[i];
		v = (v << 4) | (uint64_t)(ch <= '9' ? ch - '0' : ch - 'a' + 10);
	}
	return (size_t)(v % c->nbuckets);
}

static entry *table_find(const al_cache *c, const char *hash)
{
	for (entry *e = c->buckets[bucket_of(c, hash)]; e; e = e->hnext)
		if (memcmp(e->hash, hash, AL_HASH_HEX_LEN) == 0)
			return e;
	return NULL;
}

static int table_grow(al_cache *c)
{
	size_t n = c->nbuckets * 2;
	entry **nb = calloc(n, sizeof(*nb));
	if (!nb)
		return al_error_set(AL_ENOMEM, "out of memory for the cache table");
	entry **old = c->buckets;
	size_t oldn = c->nbuckets;
	c->buckets = nb;
	c->nbuckets = n;
	for (size_t i = 0; i < oldn; i++) {
		entry *e = old[i];
		while (e) {
			entry *next = e->hnext;
			size_t b = bucket_of(c, e->hash);
			e->hnext = nb[b];
			nb[b] = e;
			e = next;
		}
	}
	free(old);
	return 0;
}

static int table_insert(al_cache *c, entry *e)
{
	int rc;
	if (c->count >= c->nbuckets && (rc = table_grow(c)) != 0)
		return rc;
	size_t b = bucket_of(c, e->hash);
	e->hnext = c->buckets[b];
	c->buckets[b] = e;
	c->count++;
	return 0;
}

static void table_remove(al_cache *c, entry *e)
{
	entry **p = &c->buckets[bucket_of(c, e->hash)];
	while (*p && *p != e)
		p = &(*p)->hnext;
	if (*p) {
		*p = e->hnext;
		c->count--;
	}
	e->hnext = NULL;
}

static void lru_unlink(al_cache *c, entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_append(al_cache *c, entry *e)
{
	e->prev = c->lru_tail;
	e->next = NULL;
	if (c->lru_tail)
		c->lru_tail->next = e;
	else
		c->lru_head = e;
	c->lru_tail = e;
}

static int64_t clock_tick(al_cache *c)
{
	int64_t now = al_now_us();
	c->clock = now > c->clock ? now : c->clock + 1;
	return c->clock;
}

/* ---- paths ---- */

static int64_t ctime_of(const struct stat *st)
{
	return (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

/* A cached file changed behind the cache since its ctime was recorded (0: not recorded). */
static int ctime_moved(int64_t recorded, const struct stat *st)
{
	return recorded && ctime_of(st) != recorded;
}

static unsigned hexval(char ch)
{
	return ch <= '9' ? (unsigned)(ch - '0') : (unsigned)(ch - 'a' + 10);
}

static char *blob_path(const al_cache *c, const char *hash)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%.2s/%s", c->dir, hash, hash) < 0)
		return NULL;
	return p;
}



/* ---- the index ---- */

static int db_exec(al_cache *c, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		int rc = al_error_set(AL_EIO, "cache index %s/index.db: %s", c->dir,
			msg ? msg : sqlite3_errmsg(c->db));
		sqlite3_free(msg);
		return rc;
	}
	return 0;
}

/* Upserts (size >= 0 semantics via `remove` = 0) or deletes one row. */
static int db_write(al_cache *c, entry *e, int remove)
{
	int rc = 0;
	sqlite3_stmt *st = NULL;
	const char *sql = remove ? "DELETE FROM entries WHERE hash = ?1"
		: "INSERT OR REPLACE INTO entries (hash, size, last_used, ctime_ns) VALUES (?1, ?2, ?3, ?4)";
	if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_bind_text(st, 1, e->hash, AL_HASH_HEX_LEN, SQLITE_STATIC);
	if (!remove) {
		sqlite3_bind_int64(st, 2, (sqlite3_int64)e->size);
		sqlite3_bind_int64(st, 3, e->last_used);
		sqlite3_bind_int64(st, 4, e->ctime_ns);
	}
	if (sqlite3_step(st) != SQLITE_DONE)
		goto fail;
	e->stored_used = e->last_used;
	goto cleanup;
fail:
	rc = al_error_set(AL_EIO, "cache index %s/index.db: %s", c->dir, sqlite3_errmsg(c->db));
cleanup:
	sqlite3_finalize(st);
	return rc;
}

/* Writes the last_used of every dirty entry in one transaction. Nearly every dirty entry was just
 * used (and moved to the LRU tail), so they are looked for from the tail until c->dirty of them
 * were written: a cache of a million small files is not walked whole every 256 opens, under the
 * lock. (A row sync_placed could not write may sit anywhere; the walk goes on until it is found.) */
static int flush_dirty(al_cache *c)
{
	int rc = 0;
	sqlite3_stmt *st = NULL;

	c->last_flush = al_now_us();
	if (!c->dirty)
		return 0;
	if ((rc = db_exec(c, "BEGIN")) != 0)
		return rc;
	if (sqlite3_prepare_v2(c->db, "UPDATE entries SET last_used = ?2, ctime_ns = ?3 WHERE hash = ?1",
	    -1, &st, NULL) != SQLITE_OK) {
		rc = al_error_set(AL_EIO, "cache index: %s", sqlite3_errmsg(c->db));
		goto cleanup;
	}
	for (entry *e = c->lru_tail, *prev; e && c->dirty; e = prev) {
		prev = e->prev;
		if (!e->dirty)
			continue;
		sqlite3_bind_text(st, 1, e->hash, AL_HASH_HEX_LEN, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, e->last_used);
		sqlite3_bind_int64(st, 3, e->ctime_ns);
		if (sqlite3_step(st) != SQLITE_DONE) {
			rc = al_error_set(AL_EIO, "cache index: %s", sqlite3_errmsg(c->db));
			goto cleanup;
		}
		sqlite3_reset(st);
		e->stored_used = e->last_used;
		e->dirty = 0;
		c->dirty--;
	}
cleanup:
	sqlite3_finalize(st);
	if (rc == 0)
		rc = db_exec(c, "COMMIT");
	else
		db_exec(c, "ROLLBACK");
	return rc;
}

static void maybe_flush(al_cache *c)
{
	if (c->dirty >= FLUSH_DIRTY_MAX ||
	    (c->dirty && al_now_us() - c->last_flush >= FLUSH_INTERVAL_US))
		flush_dirty(c);    /* best effort: LRU freshness only */
}

/* ---- batched syncs of placed fills ----
 * A verified fill is placed (renamed into DIR/<xx>/) without an fsync of its own: one syncfs of
 * the cache's filesystem every 30 s (ALETHEIA_CACHE_SYNC_MS) or every SYNC_BATCH placements
 * makes all of them durable, and only then are their index rows written. A file in the folder
 * without a row (placed, then a crash or power cut before that sync: its bytes may not all have
 * reached the disk) is hashed before it is first served (README "Durability"). 30 s is the
 * kernel's own age for writing dirty pages back (dirty_expire_centisecs): a sync every second
 * forced the whole filesystem's writeback during cold reads, against the bucket's own disk
 * reads (iowait 2.9-4.6 s against 2.4-3.0 s in a cold 3,000-file epoch). */
#define SYNC_INTERVAL_US (30 * 1000 * 1000LL)
#define SYNC_BATCH 4096

/* Lock held (released during the syncfs): every entry placed before it starts gets its row. */
static void sync_placed(al_cache *c)
{
	uint64_t seq = c->place_seq;
	int rc, err = 0;

	if (c->syncing || !c->unsynced)
		return;
	c->syncing = 1;
	c->last_sync_us = al__mono_us();
	pthread_mutex_unlock(&c->lock);
	rc = syncfs(c->dirfd);
	if (rc != 0)
		err = errno;
	pthread_mutex_lock(&c->lock);
	c->syncing = 0;
	if (rc != 0) {
		/* The entries stay without rows: a crash before a later sync only costs a hash. */
		fprintf(stderr, "aletheia: cache: cannot sync %s: %s; tried again in a second\n", c->dir,
			strerror(err));
		return;
	}
	c->syncs++;
	int in_tx = db_exec(c, "BEGIN") == 0;
	/* Placed entries are recent: from the LRU tail until every unsynced one was seen. */
	unsigned left = c->unsynced;
	for (entry *e = c->lru_tail; e && left; e = e->prev) {
		if (!e->unsynced)
			continue;
		left--;
		if (e->placed_seq > seq)
			continue;
		e->unsynced = 0;
		c->unsynced--;
		if (db_write(c, e, 0) != 0 && !e->dirty) {
			e->dirty = 1;    /* best effort, as any row: a missing row costs a hash later */
			c->dirty++;
		}
	}
	if (in_tx && db_exec(c, "COMMIT") != 0)
		db_exec(c, "ROLLBACK");
}

/* Lock held: e (READY, its file in place) waits for the next sync before it gets its row. */
static void mark_unsynced(al_cache *c, entry *e)
{
	if (e->unsynced)
		return;
	e->unsynced = 1;
	e->placed_seq = ++c->place_seq;
	/* The syncer sleeps untimed only while nothing waits, and is due early only at a full
	 * batch: no wake-up (a thread switch) per placement. */
	if (++c->unsynced == 1 || c->unsynced == SYNC_BATCH)
		pthread_cond_signal(&c->sync_wake);
}

static void *sync_main(void *arg)
{
	al_cache *c = arg;
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		int64_t wait_us = c->last_sync_us + c->sync_interval_us - al__mono_us();
		if (!c->unsynced) {
			pthread_cond_wait(&c->sync_wake, &c->lock);
		} else if (wait_us > 0 && c->unsynced < SYNC_BATCH) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += wait_us / 1000000;
			ts.tv_nsec += (long)(wait_us % 1000000) * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&c->sync_wake, &c->lock, &ts);
		} else {
			sync_placed(c);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* ---- eviction ---- */

/* What a blob of size bytes takes on disk: --cache-size bounds the disk space the cache uses
 * (README "Object storage"), and a 1,000-byte file takes a whole 4 KiB block. A fill is charged
 * the rounding (slack) when it starts, its chunks as they are fetched. */
static uint64_t footprint(const al_cache *c, uint64_t size)
{
	return (size + c->block - 1) / c->block * c->block;
}

static uint64_t slack(const al_cache *c, uint64_t size)
{
	return footprint(c, size) - size;
}

static void pf_poke(al_cache *c);

enum { PF_BY_SCAN = 1, PF_BY_PULL = 2 };

/* Lock held: e is kept for the reads to come. A scan's blobs count against its budget
 * (pf_ahead); a pull's do not, or a pull of half the cache stopped every scan of other
 * datasets until its files were read. */
static void mark_prefetched(al_cache *c, entry *e, int mode)
{
	if (e->prefetched)
		return;
	e->prefetched = mode == AL_CACHE_PREFETCH_AHEAD ? PF_BY_SCAN : PF_BY_PULL;
	if (e->prefetched == PF_BY_SCAN)
		c->unread_bytes += e->size;
	else
		c->pulled_bytes += e->size;
}

/* Lock held: a prefetched blob was opened (or goes): it no longer counts as read ahead. */
static void unmark_prefetched(al_cache *c, entry *e)
{
	if (!e->prefetched)
		return;
	if (e->prefetched == PF_BY_SCAN)
		c->unread_bytes -= e->size;
	else
		c->pulled_bytes -= e->size;
	e->prefetched = 0;
	pf_poke(c);
}

/* Pinned entries are in use; a fill that is fetching, hashing or being placed is busy. */
static int evictable(const entry *e)
{
	return !e->pins && !(e->fill && e->fill->busy);
}

static void drop_partial(al_cache *c, entry *e);

static void evict(al_cache *c, entry *e)
{
	if (e->fill) {
		drop_partial(c, e);
		c->evictions++;
		return;
	}
	unmark_prefetched(c, e);
	char *p = blob_path(c, e->hash);
	if (p) {
		unlink(p);
		free(p);
	}
	/* Best effort: reconcile on open drops rows whose file is gone. A row left behind would
	 * vouch for a later copy placed under the same name before its sync: from then on each
	 * fill is synced before it is placed, as its own row is written. */
	if (db_write(c, e, 1) != 0 && !c->sync_each) {
		fprintf(stderr, "aletheia: cache: %s; each cached file is synced when placed from now "
			"on\n", al_error_last());
		c->sync_each = 1;
	}
	if (e->unsynced)
		c->unsynced--;
	if (e->has_fd)
		close(e->fd);
	lru_unlink(c, e);
	table_remove(c, e);
	if (e->dirty)
		c->dirty--;
	c->bytes -= footprint(c, e->size);
	c->entries--;
	c->evictions++;
	free(e);
}

/* Evicts least-recently-used unpinned entries until `need` more bytes fit under max_bytes
 * (all of them when need_all). Returns whether it fits. */
static int make_room(al_cache *c, uint64_t need, int need_all)
{
	entry *e = c->lru_head;
	while (e && (need_all || (c->max_bytes && c->bytes + need > c->max_bytes))) {
		entry *next = e->next;
		if (evictable(e))
			evict(c, e);
		e = next;
	}
	return !c->max_bytes || c->bytes + need <= c->max_bytes;
}

/* make_room for what nobody waits for (read-ahead, prefetch): blobs prefetched and not read yet
 * stay, or a prefetch would push out what it fetched for the reads to come. */
static int make_room_keep(al_cache *c, uint64_t need)
{
	entry *e = c->lru_head;
	while (e && c->max_bytes && c->bytes + need > c->max_bytes) {
		entry *next = e->next;
		if (evictable(e) && !e->prefetched)
			evict(c, e);
		e = next;
	}
	return !c->max_bytes || c->bytes + need <= c->max_bytes;
}

/* A fill's work ended (fetched, hashed, placed): if open files had taken the cache past its limit
 * and this one was the last busy thing keeping it there, the cache goes back under it now; the
 * readers' closes may have come first, when it could not be evicted yet. In c->lock. */
static void work_done(al_cache *c, fill *f)
{
	f->busy--;
	if (!f->busy && c->max_bytes && c->bytes > c->max_bytes)
		make_room(c, 0, 0);
}

/* Evicts unpinned entries, oldest first, until at least `want` bytes are freed. */
static uint64_t free_bytes(al_cache *c, uint64_t want)
{
	uint64_t freed = 0;
	entry *e = c->lru_head;
	while (e && freed < want) {
		entry *next = e->next;
		if (evictable(e)) {
			freed += e->fill ? e->fill->held + slack(c, e->size) : footprint(c, e->size);
			evict(c, e);
		}
		e = next;
	}
	return freed;
}

/* ---- open and reconcile ---- */

static void clear_tmp(const char *tmpdir)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

static int add_entry(entry **out, al_cache *c, const char *hash, uint64_t size, int64_t last_used)
{
	int rc;
	entry *e = calloc(1, sizeof(*e));
	if (!e)
		return al_error_set(AL_ENOMEM, "out of memory for a cache entry");
	memcpy(e->hash, hash, AL_HASH_HEX_LEN);
	e->size = size;
	e->last_used = e->stored_used = last_used;
	e->state = ENTRY_READY;
	if ((rc = table_insert(c, e)) != 0) {
		free(e);
		return rc;
	}
	c->bytes += footprint(c, size);
	c->entries++;
	if (last_used > c->clock)
		c->clock = last_used;
	if (out)
		*out = e;
	return 0;
}

/* Loads index rows (oldest first), dropping those whose file is missing or the wrong size. */
static int load_index(al_cache *c)
{
	int rc = 0, step;
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(c->db, "SELECT hash, size, last_used, ctime_ns FROM entries ORDER BY last_used",
	    -1, &st, NULL) != SQLITE_OK) {
		rc = al_error_set(AL_EIO, "cache index: %s", sqlite3_errmsg(c->db));
		goto cleanup;
	}
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		const char *hash = (const char *)sqlite3_column_text(st, 0);
		uint64_t size = (uint64_t)sqlite3_column_int64(st, 1);
		int64_t last_used = sqlite3_column_int64(st, 2), ctime_ns = sqlite3_column_int64(st, 3);
		struct stat sb;
		char *p;
		entry *e = NULL;    /* set by add_entry (gcc -O3 cannot tell) */
		int ok;
		if (!al_hash_is_valid(hash) || table_find(c, hash))
			continue;
		if (!(p = blob_path(c, hash))) {
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto cleanup;
		}
		ok = stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == size;
		if (!ok)
			unlink(p);    /* a wrong-size file is not the blob */
		free(p);
		if (!ok)
			continue;
		if ((rc = add_entry(&e, c, hash, size, last_used)) != 0)
			goto cleanup;
		/* Changed while nothing had it open: hashed before it is served. A row of an older
		 * index (0) takes the file's ctime as it is now. */
		e->unverified = ctime_moved(ctime_ns, &sb);
		e->ctime_ns = ctime_ns ? ctime_ns : ctime_of(&sb);
		lru_append(c, e);
	}
	if (step != SQLITE_DONE)
		rc = al_error_set(AL_EIO, "cache index: %s", sqlite3_errmsg(c->db));
cleanup:
	sqlite3_finalize(st);
	return rc;
}

/* Adds blob files the index does not know, as least recently used and unverified: the index
 * lists a file only once a sync after its placement returned, so one it does not list may have
 * been placed just before a crash, its bytes not all on disk. Each is hashed before it is first
 * served, and gets its row at the sync after that. */
static int scan_files(al_cache *c)
{
	int rc = 0;
	DIR *top = opendir(c->dir), *sub = NULL;
	struct dirent *de, *fe;
	if (!top)
		return al_error_set_errno(AL_EIO, errno, "cannot list cache folder %s", c->dir);
	while ((de = readdir(top)) != NULL) {
		if (strlen(de->d_name) != 2 || !strchr("0123456789abcdef", de->d_name[0]) ||
		    !strchr("0123456789abcdef", de->d_name[1]))
			continue;
		int fd = openat(dirfd(top), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || !(sub = fdopendir(fd))) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		while ((fe = readdir(sub)) != NULL) {
			struct stat sb;
			entry *e = NULL;    /* set by add_entry (gcc -O3 cannot tell) */
			if (!al_hash_is_valid(fe->d_name) || memcmp(fe->d_name, de->d_name, 2) != 0 ||
			    table_find(c, fe->d_name))
				continue;
			if (fstatat(dirfd(sub), fe->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
			    !S_ISREG(sb.st_mode))
				continue;
			if ((rc = add_entry(&e, c, fe->d_name, (uint64_t)sb.st_size, 0)) != 0)
				goto cleanup;
			e->unverified = 1;
			/* Unknown age: first in line for eviction. */
			e->next = c->lru_head;
			if (c->lru_head)
				c->lru_head->prev = e;
			else
				c->lru_tail = e;
			c->lru_head = e;
		}
		closedir(sub);
		sub = NULL;
	}
cleanup:
	if (sub)
		closedir(sub);
	closedir(top);
	return rc;
}

static int reconcile(al_cache *c)
{
	int rc;
	if ((rc = db_exec(c, "BEGIN")) != 0)
		return rc;
	if ((rc = load_index(c)) != 0 || (rc = scan_files(c)) != 0)
		goto cleanup;
	/* Rewrite the index from memory: drops rows for missing or wrong-size files. */
	if ((rc = db_exec(c, "DELETE FROM entries")) != 0)
		goto cleanup;
	for (entry *e = c->lru_head; e; e = e->next)
		if (!e->unverified && (rc = db_write(c, e, 0)) != 0)
			goto cleanup;
cleanup:
	if (rc == 0)
		rc = db_exec(c, "COMMIT");
	else
		db_exec(c, "ROLLBACK");
	if (rc == 0) {
		make_room(c, 0, 0);    /* the limit may have been lowered since last time */
		c->evictions = 0;
	}
	return rc;
}

/* Whether table has column (an index made by an older version may lack one). */
static int has_column(al_cache *c, const char *table, const char *column)
{
	sqlite3_stmt *st = NULL;
	int found = 0;
	char *sql = sqlite3_mprintf("SELECT 1 FROM pragma_table_info(%Q) WHERE name = %Q", table, column);
	if (sql && sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) == SQLITE_OK)
		found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	sqlite3_free(sql);
	return found;
}

/* Opens (or creates) the index and reads it once, so a file that is no database fails here. */
static int open_index(al_cache *c, const char *dbpath)
{
	int rc;
	if (sqlite3_open_v2(dbpath, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		return al_error_set(AL_EIO, "cannot open cache index %s: %s", dbpath,
			c->db ? sqlite3_errmsg(c->db) : "out of memory");
	sqlite3_busy_timeout(c->db, 5000);
	if ((rc = db_exec(c, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
	    "CREATE TABLE IF NOT EXISTS entries (hash TEXT PRIMARY KEY, size INTEGER NOT NULL, "
	    "last_used INTEGER NOT NULL, ctime_ns INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID; "
	    "SELECT count(*) FROM entries")) != 0)
		return rc;
	/* An index made before ctime_ns: its rows say 0 (not known), checked from their next row on. */
	if (!has_column(c, "entries", "ctime_ns"))
		rc = db_exec(c, "ALTER TABLE entries ADD COLUMN ctime_ns INTEGER NOT NULL DEFAULT 0");
	return rc;
}

int al_cache_open(al_cache **out, const char *dir, uint64_t max_bytes)
{
	int rc = 0;
	al_cache *c = NULL;
	char *tmp = NULL, *dbpath = NULL;

	*out = NULL;
	if (!dir || !*dir)
		return al_error_set(AL_EINVAL, "empty cache folder");
	if (!(c = calloc(1, sizeof(*c)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory for the cache");
		goto cleanup;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->filled, NULL);
	pthread_cond_init(&c->work, NULL);
	pthread_cond_init(&c->pf_wake, NULL);
	pthread_cond_init(&c->pf_progress, NULL);
	pthread_cond_init(&c->sync_wake, NULL);
	c->dirfd = -1;
	c->sync_interval_us = SYNC_INTERVAL_US;
	c->max_bytes = max_bytes;
	c->pf_parallel = PF_PARALLEL;
	c->pf_ahead = max_bytes ? max_bytes / 2 : PF_AHEAD_UNBOUNDED;
	c->want_workers = WORKERS_DEFAULT;
	c->ra_max = RA_MAX;
	c->job_chunks = (uint32_t)(JOB_MAX >> CHUNK_SHIFT);
	{
		/* Tuning knobs for benchmarks; the defaults suit loopback and cloud alike. */
		const char *w = getenv("ALETHEIA_FETCH_WORKERS"), *ra = getenv("ALETHEIA_READAHEAD_MB");
		const char *job = getenv("ALETHEIA_FETCH_JOB_MB");
		if (job && atoi(job) > 0 && atoi(job) <= 1024)
			c->job_chunks = (uint32_t)(((uint64_t)atoi(job) * MIB) >> CHUNK_SHIFT);
		if (w && atoi(w) > 0)
			c->want_workers = atoi(w) > WORKERS_MAX ? WORKERS_MAX : (unsigned)atoi(w);
		if (ra && atoi(ra) > 0)
			c->ra_max = (uint64_t)atoi(ra) * MIB;
		const char *pp = getenv("ALETHEIA_PREFETCH_PARALLEL"), *pa = getenv("ALETHEIA_PREFETCH_AHEAD_MB");
		if (pp && atoi(pp) > 0)
			c->pf_parallel = atoi(pp) > PF_MAX ? PF_MAX : (unsigned)atoi(pp);
		if (pa && atoll(pa) > 0 && !max_bytes)
			c->pf_ahead = (uint64_t)atoll(pa) * MIB;
		/* 0: each fill synced before it is placed, as before batching. */
		const char *sm = getenv("ALETHEIA_CACHE_SYNC_MS");
		if (sm && *sm && atoll(sm) >= 0)
			c->sync_interval_us = atoll(sm) * 1000LL;
	}
	c->nbuckets = 1024;
	if (!(c->buckets = calloc(c->nbuckets, sizeof(*c->buckets)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory for the cache table");
		goto cleanup;
	}
	if ((rc = al__mkdir_p(dir, 0755)) != 0)
		goto cleanup;
	{
		struct statvfs sv;
		c->block = statvfs(dir, &sv) == 0 && sv.f_frsize >= 512 && sv.f_frsize <= 65536 ?
			sv.f_frsize : 4096;
	}
	if (!(c->dir = realpath(dir, NULL))) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "cannot resolve %s", dir);
		goto cleanup;
	}
	if (asprintf(&tmp, "%s/tmp", c->dir) < 0 || asprintf(&dbpath, "%s/index.db", c->dir) < 0) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	if ((rc = al__mkdir(tmp, 0755)) != 0)
		goto cleanup;
	clear_tmp(tmp);    /* fills interrupted by a crash */
	if ((rc = open_index(c, dbpath)) != 0) {
		/* The cache is a copy (README "Durability"): a damaged index is set aside and made
		 * anew, and every cached file then counts as unlisted (hashed at its first open). */
		static const char *const suffix[] = {"", "-wal", "-shm"};
		fprintf(stderr, "aletheia: %s; set aside as index.db.damaged, the cached files are "
			"checked again as they are opened\n", al_error_last());
		sqlite3_close(c->db);
		c->db = NULL;
		for (size_t i = 0; i < sizeof(suffix) / sizeof(*suffix); i++) {
			char from[PATH_MAX], to[PATH_MAX];
			snprintf(from, sizeof(from), "%s%s", dbpath, suffix[i]);
			snprintf(to, sizeof(to), "%s.damaged%s", dbpath, suffix[i]);
			if (rename(from, to) != 0 && errno != ENOENT)
				unlink(from);
		}
		if ((rc = open_index(c, dbpath)) != 0)
			goto cleanup;
	}
	if ((rc = reconcile(c)) != 0)
		goto cleanup;
	c->last_flush = al_now_us();
	c->last_sync_us = al__mono_us();
	if ((c->dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || !c->sync_interval_us ||
	    pthread_create(&c->syncer, NULL, sync_main, c) != 0)
		c->sync_each = 1;
	else
		c->has_syncer = 1;
	*out = c;
	c = NULL;
cleanup:
	al_cache_free(c);
	free(tmp);
	free(dbpath);
	return rc;
}

/* ---- complete blobs ---- */

/* Under the lock: pins a READY entry and opens it. */
static void unpin(entry *e)
{
	if (--e->pins == 0 && e->has_fd) {
		close(e->fd);
		e->has_fd = 0;
	}
}

static int open_ready(int *fd_out, al_cache *c, entry *e)
{
	if (e->damaged)
		return al_error_set(AL_EIO, "the cached copy of blob %s is damaged; it is fetched again "
			"once the files reading it are closed", e->hash);
	int fd;
	if (e->has_fd)
		fd = fcntl(e->fd, F_DUPFD_CLOEXEC, 0);
	else {
		char *p = blob_path(c, e->hash);
		if (!p)
			return al_error_set(AL_ENOMEM, "out of memory");
		fd = open(p, O_RDONLY | O_CLOEXEC);
		int e_no = errno;
		struct stat st;
		free(p);
		if (fd < 0)
			return al_error_set_errno(e_no == ENOENT ? AL_ENOTFOUND : AL_EIO, e_no,
				"cannot open cached blob %s", e->hash);
		if (e->ctime_ns && (fstat(fd, &st) != 0 || ctime_moved(e->ctime_ns, &st))) {
			/* Changed behind our back since it was placed: hashed before it is served.
			 * (Only an open by the path checks: the descriptor kept while it is open keeps
			 * serving a file removed meanwhile, whose ctime the removal moved.) */
			close(fd);
			e->unverified = 1;
			return AL_EAGAIN;
		}
		if ((e->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) >= 0)
			e->has_fd = 1;
	}
	if (fd < 0)
		return al_error_set_errno(AL_EIO, errno, "cannot open cached blob %s", e->hash);
	e->pins++;
	e->last_used = clock_tick(c);
	if (!e->dirty && e->last_used - e->stored_used >= LRU_GRAIN_US) {
		e->dirty = 1;
		c->dirty++;
	}
	lru_unlink(c, e);
	lru_append(c, e);
	*fd_out = fd;
	return 0;
}

/* Lock held (released while hashing): a file found without an index row (scan_files) is hashed
 * before its first open. A match gets its row at the next sync (read back, its bytes may still be
 * only in the page cache after a kill of the daemon); anything else is removed, or marked damaged
 * while another open holds it, and fetched again: never served. */
static void verify_found(al_cache *c, entry *e)
{
	char got[AL_HASH_HEX_LEN + 1] = "", *p = blob_path(c, e->hash);
	uint64_t n = 0;
	int fd = -1, rc, changed = e->ctime_ns != 0;   /* else: found without a row */
	int64_t ctime_ns = 0;
	struct stat st;

	e->verifying = 1;
	e->pins++;
	pthread_mutex_unlock(&c->lock);
	if (!p)
		rc = al_error_set(AL_ENOMEM, "out of memory");
	else if ((fd = open(p, O_RDONLY | O_CLOEXEC)) < 0)
		rc = al_error_set_errno(AL_EIO, errno, "cannot open %s", p);
	else if ((rc = al_hash_fd(got, &n, fd)) == 0 && fstat(fd, &st) == 0)
		ctime_ns = ctime_of(&st);
	if (fd >= 0)
		close(fd);
	pthread_mutex_lock(&c->lock);
	e->verifying = 0;
	unpin(e);
	pthread_cond_broadcast(&c->filled);
	if (rc == 0 && n == e->size && strcmp(got, e->hash) == 0) {
		e->unverified = 0;
		e->ctime_ns = ctime_ns;
		if (changed && !e->unsynced && !e->dirty) {
			e->dirty = 1;    /* its row takes the new ctime at the next flush */
			c->dirty++;
		} else if (!changed) {
			mark_unsynced(c, e);
		}
	} else {
		fprintf(stderr, "aletheia: cache: the cached copy of blob %s %s %s%s; removed, fetched "
			"again\n", e->hash, changed ? "changed on disk since it was placed (its ctime),"
			: "found without an index entry (placed just before a crash?)",
			rc ? "cannot be read: " : "is damaged", rc ? al_error_last() : "");
		if (evictable(e)) {
			evict(c, e);
			c->evictions--;    /* dropped, not evicted for room */
		} else {
			e->damaged = 1;
			e->unverified = 0;
		}
	}
	free(p);
}

static int is_enospc(int rc, int err)
{
	return rc == AL_ENOSPC || err == ENOSPC || err == EDQUOT;
}

void al_cache_release(al_cache *c, const char *hash)
{
	if (!c || !al_hash_is_valid(hash))
		return;
	pthread_mutex_lock(&c->lock);
	entry *e = table_find(c, hash);
	if (e && e->state == ENTRY_READY && e->pins)
		unpin(e);
	if (e && e->damaged && evictable(e)) {
		evict(c, e);
		c->evictions--;    /* dropped, not evicted for room */
	}
	make_room(c, 0, 0);    /* back under the limit, if open files had taken it past */
	maybe_flush(c);
	pf_poke(c);    /* a prefetch waiting for room */
	pthread_mutex_unlock(&c->lock);
}

int al_cache_contains(al_cache *c, const char *hash)
{
	if (!al_hash_is_valid(hash))
		return 0;
	pthread_mutex_lock(&c->lock);
	entry *e = table_find(c, hash);
	int found = e && e->state == ENTRY_READY;
	pthread_mutex_unlock(&c->lock);
	return found;
}

int al_cache_check(int *found, al_cache *c, const char *hash, uint64_t size)
{
	char got[AL_HASH_HEX_LEN + 1], *p;
	uint64_t n = 0;
	entry *e;
	int fd, rc;

	*found = 0;
	if (!al_hash_is_valid(hash))
		return al_error_set(AL_EINVAL, "invalid blob hash \"%s\"", hash ? hash : "(null)");
	if (!(p = blob_path(c, hash)))
		return al_error_set(AL_ENOMEM, "out of memory");
	pthread_mutex_lock(&c->lock);
	e = table_find(c, hash);
	if (!e || e->state != ENTRY_READY || (fd = open(p, O_RDONLY | O_CLOEXEC)) < 0) {
		pthread_mutex_unlock(&c->lock);
		free(p);
		return 0;    /* not cached (complete), or gone behind our back: nothing to check */
	}
	e->pins++;    /* held while hashed; its LRU place is not changed by a check */
	*found = 1;
	pthread_mutex_unlock(&c->lock);
	rc = al_hash_fd(got, &n, fd);
	close(fd);
	pthread_mutex_lock(&c->lock);
	unpin(e);
	if (rc == 0 && (n != size || strcmp(got, hash) != 0)) {
		rc = al_error_set(AL_EIO, "the cached copy of blob %s is damaged (%llu bytes hashing to "
			"%s); removed, the next read fetches it again", hash, (unsigned long long)n, got);
	} else if (rc) {
		char why[512];
		snprintf(why, sizeof(why), "%s", al_error_last());
		rc = al_error_set(AL_EIO, "the cached copy of blob %s cannot be read (%s); removed, the "
			"next read fetches it again", hash, why);
	}
	if (rc) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", al_error_last());
		if (evictable(e)) {
			evict(c, e);
			c->evictions--;    /* dropped, not evicted for room */
		} else {
			e->damaged = 1;    /* open files keep reading it; it goes when they let go */
		}
		al_error_set(AL_EIO, "%s", msg);
	}
	pthread_mutex_unlock(&c->lock);
	free(p);
	return rc;
}

void al_cache_get_stats(al_cache_stats *out, al_cache *c)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&c->lock);
	out->bytes = c->bytes;
	out->max_bytes = c->max_bytes;
	out->entries = c->entries;
	for (entry *e = c->lru_head; e; e = e->next) {
		if (e->pins)
			out->pinned++;
		if (e->unverified)
			out->unverified++;
	}
	out->unsynced = c->unsynced;
	out->syncs = c->syncs;
	out->hits = c->hits;
	out->misses = c->misses;
	out->evictions = c->evictions;
	pthread_mutex_unlock(&c->lock);
}

static void fill_free(fill *f);
static void fill_unref(fill *f);
static void job_unlink(al_cache *c, job *j);
static void place_fill(al_cache *c, fill *f);
static void pf_drop_all(al_cache *c);

void al_cache_free(al_cache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = 1;
	pthread_cond_broadcast(&c->work);
	pthread_cond_broadcast(&c->pf_wake);
	pthread_cond_broadcast(&c->filled);
	pthread_cond_broadcast(&c->sync_wake);
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < c->npf; i++)
		pthread_join(c->pf_threads[i], NULL);
	for (unsigned i = 0; i < c->nworkers; i++)
		pthread_join(c->workers[i], NULL);
	if (c->has_syncer)
		pthread_join(c->syncer, NULL);
	pf_drop_all(c);
	pthread_mutex_lock(&c->lock);
	while (c->jq_head) {
		/* Verified blobs waiting to be placed are placed now; read-ahead is dropped. */
		job *j = c->jq_head;
		job_unlink(c, j);
		if (!j->n) {
			place_fill(c, j->f);
			j->f->busy--;   /* closing: nothing more to make room for */
		}
		fill_unref(j->f);
		free(j);
	}
	if (c->dirfd >= 0)
		sync_placed(c);    /* a clean close leaves every placed file listed */
	pthread_mutex_unlock(&c->lock);
	if (c->dirfd >= 0)
		close(c->dirfd);
	if (c->db) {
		flush_dirty(c);
		sqlite3_close(c->db);
	}
	if (c->buckets) {
		for (size_t i = 0; i < c->nbuckets; i++) {
			entry *e = c->buckets[i];
			while (e) {
				entry *next = e->hnext;
				if (e->fill) {
					/* Handles left open are the caller's bug; the partial file goes anyway. */
					unlink(e->fill->path);
					fill_free(e->fill);
				}
				free(e);
				e = next;
			}
		}
		free(c->buckets);
	}
	pthread_cond_destroy(&c->filled);
	pthread_cond_destroy(&c->work);
	pthread_cond_destroy(&c->pf_wake);
	pthread_cond_destroy(&c->pf_progress);
	pthread_cond_destroy(&c->sync_wake);
	pthread_mutex_destroy(&c->lock);
	free(c->dir);
	free(c);
}

/* ---- range fills: open blobs streamed from a sparse file ---- */

static uint64_t chunk_off(uint32_t i)
{
	return (uint64_t)i << CHUNK_SHIFT;
}

static uint64_t chunk_len(const fill *f, uint32_t first, uint32_t n)
{
	uint64_t off = chunk_off(first), end = chunk_off(first + n);
	return (end > f->size ? f->size : end) - off;
}

static void fill_free(fill *f)
{
	free(f->piece_hash);
	free(f->pst);
	if (f->fd >= 0)
		close(f->fd);
	al_hasher_free(f->hasher);
	free(f->st);
	free(f->path);
	free(f->source);
	free(f);
}

static void fill_unref(fill *f)
{
	if (--f->refs == 0)
		fill_free(f);
}

static void job_unlink(al_cache *c, job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		c->jq_head = j->next;
	if (j->next)
		j->next->prev = j->prev;
	else
		c->jq_tail = j->prev;
	j->prev = j->next = NULL;
}

/* Lock held: forgets the read-ahead queued for f (nobody will read it now). */
static void cancel_jobs(al_cache *c, fill *f)
{
	job *j = c->jq_head;
	while (j) {
		job *next = j->next;
		if (j->f == f && j->n) {    /* a placement (n == 0) still runs */
			job_unlink(c, j);
			for (uint32_t i = j->first; i < j->first + j->n; i++)
				if (f->st[i] == CH_QUEUED)
					f->st[i] = CH_MISSING;
			fill_unref(f);
			free(j);
		}
		j = next;
	}
}

/* Lock held: removes a PARTIAL entry and its file; handles keep the fill until they close. */
static void drop_partial(al_cache *c, entry *e)
{
	fill *f = e->fill;
	unmark_prefetched(c, e);
	unlink(f->path);
	f->e = NULL;
	e->fill = NULL;
	cancel_jobs(c, f);
	table_remove(c, e);
	lru_unlink(c, e);
	c->bytes -= f->held + slack(c, e->size);
	f->held = 0;
	free(e);
	fill_unref(f);
}

/* Lock held: the fill cannot become the blob (hash mismatch, sync failure): nothing is kept,
 * every reader gets rc, and the next open starts a new fill. */
static void fail_fill(al_cache *c, fill *f, int rc, const char *msg)
{
	f->done = -1;
	f->err_rc = rc;
	snprintf(f->err_msg, sizeof(f->err_msg), "%s", msg);
	if (f->e)
		drop_partial(c, f->e);
	pthread_cond_broadcast(&c->filled);
}

static int read_full(int fd, char *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		done += (size_t)n;
	}
	return 0;
}

static void *worker_main(void *arg);

/* Lock held (released while syncing): sync the verified file and move it into the complete set,
 * so later opens are plain hits. */
static void place_fill(al_cache *c, fill *f)
{
	char msg[512];
	char *dst = blob_path(c, f->hash), *sub = NULL;
	int rc = 0, err = 0, sync_each = c->sync_each;
	unsigned x = (unsigned)(hexval(f->hash[0]) << 4 | hexval(f->hash[1]));
	int made = c->made_sub[x >> 3] >> (x & 7) & 1;
	int64_t placed_ctime = 0;
	struct stat st;
	entry *e;

	if (!f->e || f->done) {
		free(dst);
		return;
	}
	pthread_mutex_unlock(&c->lock);
	if (!dst || asprintf(&sub, "%s/%.2s", c->dir, f->hash) < 0) {
		sub = NULL;
		rc = AL_ENOMEM;
		snprintf(msg, sizeof(msg), "out of memory completing blob %s", f->hash);
	} else if ((sync_each && fsync(f->fd) != 0) || fchmod(f->fd, 0444) != 0) {
		err = errno;
		rc = is_enospc(0, err) ? AL_ENOSPC : AL_EIO;
		snprintf(msg, sizeof(msg), "cannot sync the cache fill of %s: %s", f->hash, strerror(err));
	} else if (!made && (rc = al__mkdir(sub, 0755)) != 0) {
		snprintf(msg, sizeof(msg), "%s", al_error_last());
	} else if (rename(f->path, dst) != 0 &&
	    !(made && errno == ENOENT && al__mkdir(sub, 0755) == 0 && rename(f->path, dst) == 0)) {
		/* (the folder removed behind our back: made again once) */
		err = errno;
		rc = is_enospc(0, err) ? AL_ENOSPC : AL_EIO;
		snprintf(msg, sizeof(msg), "cannot place cached blob %s: %s", dst, strerror(err));
	} else if (fstat(f->fd, &st) == 0) {
		placed_ctime = ctime_of(&st);   /* after the rename, which sets it */
	}
	pthread_mutex_lock(&c->lock);
	free(dst);
	free(sub);
	if (rc) {
		al_error_set(rc, "%s", msg);
		fail_fill(c, f, rc, msg);
		return;
	}
	c->made_sub[x >> 3] |= (uint8_t)(1u << (x & 7));
	e = f->e;
	e->state = ENTRY_READY;
	e->ctime_ns = placed_ctime;
	e->fill = NULL;
	f->done = 1;             /* f->e stays: handles unpin the entry through it */
	e->last_used = clock_tick(c);
	lru_unlink(c, e);
	lru_append(c, e);
	c->entries++;
	if (!sync_each)
		mark_unsynced(c, e);    /* its row after the next sync (sync_main) */
	else if (db_write(c, e, 0) != 0 && !e->dirty) {
		e->dirty = 1;    /* reconcile on the next open re-adds the file anyway */
		c->dirty++;
	}
	cancel_jobs(c, f);
	fill_unref(f);           /* the entry's link */
	pthread_cond_broadcast(&c->filled);
}

static int start_workers(al_cache *c)
{
	while (c->nworkers < c->want_workers) {
		if (pthread_create(&c->workers[c->nworkers], NULL, worker_main, c) != 0)
			break;
		c->nworkers++;
	}
	return c->nworkers > 0;
}

/* Set on prefetch threads: nobody waits for what they fetch, so they place it themselves. */
static _Thread_local int on_prefetch_thread;

/* Lock held: every chunk is hashed. A match is served at once; syncing and placing the file
 * (fsync can take long) is left to a worker, so no reader waits for it. A prefetch thread
 * places its own fills: waking a worker for each small file cost more than the rename. */
static void complete_fill(al_cache *c, fill *f)
{
	char got[AL_HASH_HEX_LEN + 1], msg[512];
	job *j;

	al_hasher_final(got, f->hasher);
	if (strcmp(got, f->hash) != 0) {
		snprintf(msg, sizeof(msg), "hash mismatch for %s: the fetched data (%llu bytes) hashes to "
			"%s; not kept", f->hash, (unsigned long long)f->size, got);
		al_error_set(AL_EIO, "%s", msg);
		fail_fill(c, f, AL_EIO, msg);
		return;
	}
	f->verified = 1;
	pthread_cond_broadcast(&c->filled);
	if (!c->stop && !on_prefetch_thread && start_workers(c) && (j = calloc(1, sizeof(*j))) != NULL) {
		j->f = f;                /* n == 0: a placement */
		f->refs++;
		f->busy++;
		j->prev = c->jq_tail;
		if (c->jq_tail)
			c->jq_tail->next = j;
		else
			c->jq_head = j;
		c->jq_tail = j;
		pthread_cond_signal(&c->work);
		return;
	}
	place_fill(c, f);
}

/* Lock held: chunk i may go into the whole-blob hash (with pieces: only once its piece matched,
 * so a discarded piece never poisons the hash). */
static int hashable(const fill *f, uint32_t i)
{
	return f->st[i] == CH_PRESENT && (!f->pst || f->pst[i >> f->piece_shift] == PC_GOOD);
}

/* Lock held (released while reading): advances the hash over the newly contiguous prefix. */
static void advance_hash(al_cache *c, fill *f)
{
	char *buf = NULL;
	if (f->hashing || f->done || f->verified || !f->e)
		return;
	if (f->hashed < f->nchunks && !hashable(f, f->hashed))
		return;
	f->hashing = 1;
	f->busy++;
	while (f->e && !f->done && f->hashed < f->nchunks && hashable(f, f->hashed)) {
		uint32_t i = f->hashed;
		uint64_t len = chunk_len(f, i, 1);
		int err;
		pthread_mutex_unlock(&c->lock);
		if (!buf && !(buf = malloc(CHUNK)))
			err = ENOMEM;
		else
			err = read_full(f->fd, buf, (size_t)len, chunk_off(i));
		if (!err)
			al_hasher_update(f->hasher, buf, (size_t)len);
		pthread_mutex_lock(&c->lock);
		if (err) {
			char msg[512];
			snprintf(msg, sizeof(msg), "cannot read back the cache fill of %s: %s", f->hash,
				strerror(err));
			fail_fill(c, f, AL_EIO, msg);
			break;
		}
		f->hashed++;
	}
	if (f->e && !f->done && f->hashed == f->nchunks)
		complete_fill(c, f);
	f->hashing = 0;
	work_done(c, f);
	free(buf);
}

/* ---- piece verification ---- */

static uint32_t piece_end(const fill *f, uint32_t p)
{
	uint64_t end = ((uint64_t)p + 1) << f->piece_shift;
	return end > f->nchunks ? f->nchunks : (uint32_t)end;
}

static int piece_present(const fill *f, uint32_t p)
{
	for (uint32_t i = p << f->piece_shift; i < piece_end(f, p); i++)
		if (f->st[i] != CH_PRESENT)
			return 0;
	return 1;
}

/* Lock held (released while hashing): reads back piece p (UNCHECKED, every chunk present) and
 * compares it with its recorded hash. A mismatch discards the piece's bytes: its chunks are
 * missing again (the next read fetches them anew), the readers waiting for it get AL_EIO. From an
 * origin that ignores Range a piece cannot be fetched alone: the whole fill is dropped instead. */
static int verify_piece(al_cache *c, fill *f, uint32_t p)
{
	uint32_t first = p << f->piece_shift, end = piece_end(f, p);
	uint64_t off = chunk_off(first), len = chunk_len(f, first, end - first), got = 0;
	char msg[512];
	int rc;

	f->pst[p] = PC_CHECKING;
	f->busy++;
	pthread_mutex_unlock(&c->lock);
	rc = al_hash64_fd(&got, f->fd, off, len);
	if (rc)
		snprintf(msg, sizeof(msg), "cannot read back piece %u of blob %s: %s", p, f->hash,
			al_error_last());
	pthread_mutex_lock(&c->lock);
	f->busy--;
	if (!f->e || f->done) {
		/* Dropped meanwhile (the whole-blob hash failed, or the cache is closing). */
		f->pst[p] = PC_UNCHECKED;
		pthread_cond_broadcast(&c->filled);
		return f->done > 0 ? 0 : al_error_set(f->err_rc ? f->err_rc : AL_EIO, "%s",
			f->err_msg[0] ? f->err_msg : "blob fill dropped");
	}
	if (rc == 0 && got == f->piece_hash[p]) {
		f->pst[p] = PC_GOOD;
		pthread_cond_broadcast(&c->filled);
		advance_hash(c, f);
		return 0;
	}
	if (rc == 0) {
		c->fstats.piece_mismatches++;
		snprintf(msg, sizeof(msg), "piece %u of blob %s (bytes %llu to %llu) does not match its "
			"recorded hash: the data fetched was damaged; discarded, the next read fetches it "
			"again", p, f->hash, (unsigned long long)off, (unsigned long long)(off + len - 1));
	}
	if (!f->range_ok) {
		fail_fill(c, f, AL_EIO, msg);
		return al_error_set(AL_EIO, "%s", msg);
	}
	for (uint32_t i = first; i < end; i++) {
		uint64_t l = chunk_len(f, i, 1);
		f->st[i] = CH_MISSING;
		c->bytes -= l;
		f->held -= l;
	}
	/* Not kept: the damaged bytes leave the disk, not only the bookkeeping. */
	fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
	f->pst[p] = PC_UNCHECKED;
	f->discards++;
	f->fails++;
	f->err_rc = AL_EIO;
	snprintf(f->err_msg, sizeof(f->err_msg), "%s", msg);
	pthread_cond_broadcast(&c->filled);
	return al_error_set(AL_EIO, "%s", msg);
}

/* Lock held: verifies the pieces of chunks [first, first+n) that are now complete (the fetching
 * thread does it, so read-ahead is verified by the workers, in parallel). */
static void verify_fetched(al_cache *c, fill *f, uint32_t first, uint32_t n)
{
	if (!f->pst || !n)
		return;
	for (uint32_t p = first >> f->piece_shift; p <= (first + n - 1) >> f->piece_shift; p++)
		if (f->e && !f->done && f->pst[p] == PC_UNCHECKED && piece_present(f, p))
			verify_piece(c, f, p);    /* a failure is the waiting readers' to report */
}

/* Whether the cache's disk holds len more bytes and still keeps free what a reader's own fetch
 * may need: read-ahead and prefetch leave DISK_RESERVE_DIV of the disk (at most DISK_RESERVE_MAX)
 * to demand reads, so a scan's prefetch filling the disk never fails the read of a file nobody
 * prefetched (without --cache-size, or a limit larger than the disk). */
#define DISK_RESERVE_DIV 8
#define DISK_RESERVE_MAX (1024 * MIB)
static int disk_room(int fd, uint64_t len)
{
	struct statvfs sv;
	if (fstatvfs(fd, &sv) != 0 || !sv.f_blocks)
		return 1;    /* unknown: the fetch finds out */
	uint64_t total = (uint64_t)sv.f_blocks * sv.f_frsize, avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	uint64_t reserve = total / DISK_RESERVE_DIV;
	if (reserve > DISK_RESERVE_MAX)
		reserve = DISK_RESERVE_MAX;
	return avail >= len + reserve;
}

/* Lock held (released while fetching): fetches chunks [first, first+n), each MISSING or QUEUED.
 * Room for them is found first (evicting unpinned blobs). Read-ahead without room is quietly given
 * up; a reader's own fetch goes past the limit instead: when open files alone hold more than
 * max_bytes, failing it would fail a read in the middle of a file, and the kernel hands the bytes
 * before the failure to read() as a short count that readers take for the end (README "Object
 * storage"). What open files took past the limit is given back as they are closed. */
static void run_fetch(al_cache *c, fill *f, uint32_t first, uint32_t n, int demand)
{
	uint64_t off = chunk_off(first), len = chunk_len(f, first, n);
	int rc, whole = 0, tries = 0;
	int64_t t0 = al__mono_us();
	char msg[512];

	f->inflight++;
	f->busy++;               /* from here on make_room cannot evict this fill */
	f->refs++;
	if (!(demand ? make_room(c, len, 0) : make_room_keep(c, len) && disk_room(f->fd, len)) &&
	    !demand) {
		f->inflight--;
		f->busy--;
		for (uint32_t i = first; i < first + n; i++)
			f->st[i] = CH_MISSING;
		pthread_cond_broadcast(&c->filled);
		fill_unref(f);
		return;
	}
	for (uint32_t i = first; i < first + n; i++)
		f->st[i] = CH_FETCHING;
	c->bytes += len;
	f->held += len;
	pthread_mutex_unlock(&c->lock);
	for (;;) {
		whole = 0;
		rc = c->fetch(c->fetch_ctx, f->hash, f->source, f->fd, off, len, &whole);
		/* Read-ahead and prefetch never evict to retry: what they would push out may be what
		 * the readers need next, and nobody waits for them. */
		if (rc != AL_ENOSPC || tries++ > 0 || !demand)
			break;
		/* The disk is fuller than our accounting says: evict some more and try once again. */
		pthread_mutex_lock(&c->lock);
		uint64_t freed = free_bytes(c, len);
		pthread_mutex_unlock(&c->lock);
		if (!freed)
			break;
	}
	if (rc == AL_ENOSPC)
		snprintf(msg, sizeof(msg), "no space left on the cache disk %s for blob %s: %s", c->dir,
			f->hash, al_error_last());
	else if (rc)
		snprintf(msg, sizeof(msg), "%s", al_error_last());
	pthread_mutex_lock(&c->lock);
	c->fstats.fetches++;
	f->inflight--;
	f->busy--;
	if (rc == 0) {
		c->fstats.fetched_bytes += whole ? f->size : len;
		for (uint32_t i = first; i < first + n; i++)
			f->st[i] = CH_PRESENT;
		if (whole) {
			/* Everything is here now; chunks nobody had counted yet are counted now. */
			for (uint32_t i = 0; i < f->nchunks; i++)
				if (f->st[i] == CH_MISSING || f->st[i] == CH_QUEUED) {
					uint64_t l = chunk_len(f, i, 1);
					f->st[i] = CH_PRESENT;    /* queued jobs find nothing left to do */
					c->bytes += l;
					f->held += l;
				} else if (f->st[i] == CH_FETCHING) {
					f->st[i] = CH_PRESENT;    /* counted by its own fetch */
				}
			verify_fetched(c, f, 0, f->nchunks);
		} else {
			f->range_ok = 1;
			verify_fetched(c, f, first, n);
		}
		advance_hash(c, f);
	} else {
		c->fstats.failures++;
		for (uint32_t i = first; i < first + n; i++)
			if (f->st[i] == CH_FETCHING) {
				uint64_t l = chunk_len(f, i, 1);
				f->st[i] = CH_MISSING;    /* the next read tries again */
				c->bytes -= l;
				f->held -= l;
				/* What the failed fetch wrote of it leaves the disk too: a fetch cut short
				 * by a full disk left it full, unaccounted, and the reads that came next
				 * found nothing to evict (test_enospc_prefetch). Only this fetch writes
				 * there (the chunk was ours), so no reader loses bytes. */
				fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)chunk_off(i), (off_t)l);
			}
		f->fails++;
		f->err_rc = rc == AL_ENOSPC ? AL_ENOSPC : AL_EIO;
		snprintf(f->err_msg, sizeof(f->err_msg), "%s", msg);
		if (al__mono_us() - t0 >= SLOW_FAIL_US)
			f->slow_fail_us = al__mono_us();
	}
	pthread_cond_broadcast(&c->filled);
	fill_unref(f);
}

/* Lock held: a fetch of f failed slowly a moment ago (SLOW_FAIL_US): AL_EIO (its error) instead
 * of fetching again; else 0. */
static int failed_slowly(const fill *f)
{
	if (f->slow_fail_us && al__mono_us() - f->slow_fail_us < SLOW_FAIL_PAUSE_US)
		return al_error_set(f->err_rc, "%s", f->err_msg);
	return 0;
}

/* Lock held: where f's first run of MISSING chunks starts (nchunks when there is none), and in *n
 * its length, at most one job. */
static uint32_t missing_run(const al_cache *c, const fill *f, uint32_t *n)
{
	uint32_t i = 0;
	*n = 0;
	while (i < f->nchunks && f->st[i] != CH_MISSING)
		i++;
	while (i + *n < f->nchunks && *n < c->job_chunks && f->st[i + *n] == CH_MISSING)
		(*n)++;
	return i;
}

static void *worker_main(void *arg)
{
	al_cache *c = arg;
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		job *j = c->jq_head;
		if (!j) {
			pthread_cond_wait(&c->work, &c->lock);
			continue;
		}
		job_unlink(c, j);
		if (!j->n) {
			place_fill(c, j->f);
			work_done(c, j->f);
		} else if (j->f->e && !j->f->done && j->f->st[j->first] == CH_QUEUED) {
			run_fetch(c, j->f, j->first, j->n, 0);
		}
		fill_unref(j->f);
		free(j);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* Lock held: queues chunks [first, first+n) (all MISSING) for the workers, starting them. */
static void queue_job(al_cache *c, fill *f, uint32_t first, uint32_t n)
{
	job *j = calloc(1, sizeof(*j));
	if (!j)
		return;    /* read-ahead is an optimisation: the reader fetches on demand */
	if (!start_workers(c)) {
		free(j);
		return;
	}
	j->f = f;
	j->first = first;
	j->n = n;
	f->refs++;
	for (uint32_t i = first; i < first + n; i++)
		f->st[i] = CH_QUEUED;
	j->prev = c->jq_tail;
	if (c->jq_tail)
		c->jq_tail->next = j;
	else
		c->jq_head = j;
	c->jq_tail = j;
	c->fstats.readahead_jobs++;
	pthread_cond_signal(&c->work);
}

/* Lock held: queues the MISSING chunks of [from, to] in jobs of at most job_chunks. */
static void queue_range(al_cache *c, fill *f, uint32_t from, uint32_t to, uint32_t job_chunks)
{
	uint32_t i = from;
	while (i <= to && i < f->nchunks) {
		uint32_t n = 0;
		if (f->st[i] != CH_MISSING) {
			i++;
			continue;
		}
		while (i + n <= to && i + n < f->nchunks && n < job_chunks && f->st[i + n] == CH_MISSING)
			n++;
		queue_job(c, f, i, n);
		i += n;
	}
}

/* Lock held: learns from this read whether the handle streams, and queues read-ahead. Like the
 * kernel's, the window starts small on a sequential start and doubles with each new chunk read;
 * a read elsewhere resets it to none, so random reads fetch only what they touch. */
static int is_seq(const al_cache_blob *b, uint64_t off, uint64_t end)
{
	/* FUSE reads of one stream arrive on several threads, slightly out of order. */
	return b->reads ? off <= b->last_end + RA_SLACK && end + 2 * RA_SLACK >= b->last_end : off == 0;
}

static void plan_readahead(al_cache *c, al_cache_blob *b, uint64_t off, uint64_t end)
{
	fill *f = b->f;
	int seq = is_seq(b, off, end);
	uint64_t max = c->ra_max;
	/* An open file cannot give back what it read ahead: in a small cache, keep that small. */
	if (c->max_bytes && max > c->max_bytes / 8)
		max = c->max_bytes / 8 < CHUNK ? CHUNK : c->max_bytes / 8;
	if (!b->reads)
		b->from_start = seq;
	b->reads++;
	if (!seq) {
		b->window = 0;
		b->last_end = end;
		b->ra_next = 0;
		b->from_start = 0;
		return;
	}
	if (!b->window)
		b->window = RA_INIT > max ? max : RA_INIT;
	else if (end > b->last_end && b->last_end && (end - 1) / MIB > (b->last_end - 1) / MIB)
		b->window = b->window * 2 > max ? max : b->window * 2;    /* each new MiB read */
	if (end > b->last_end)
		b->last_end = end;
	if (!f->range_ok || f->done || !f->e)
		return;    /* until the origin has shown it honours Range, one whole GET at a time */
	uint32_t from = (uint32_t)((b->last_end - 1) >> CHUNK_SHIFT) + 1;
	uint64_t to_off = b->last_end - 1 + b->window;
	uint32_t to = (uint32_t)((to_off >= f->size ? f->size - 1 : to_off) >> CHUNK_SHIFT);
	uint32_t job_chunks = (uint32_t)((b->window / 4) >> CHUNK_SHIFT);
	if (from < b->ra_next)
		from = b->ra_next;
	if (from > to)
		return;
	if (job_chunks < 1)
		job_chunks = 1;
	if (job_chunks > c->job_chunks)
		job_chunks = c->job_chunks;
	/* The window slides a chunk at a time; GETs are worth their cost only in whole jobs. */
	if (to + 1 - from < job_chunks && to != f->nchunks - 1)
		return;
	queue_range(c, f, from, to, job_chunks);
	b->ra_next = to + 1;
}

/* Lock held: the job holding QUEUED chunk i. */
static job *find_job(al_cache *c, fill *f, uint32_t i)
{
	for (job *j = c->jq_head; j; j = j->next)
		if (j->f == f && i >= j->first && i < j->first + j->n)
			return j;
	return NULL;
}

/* Lock held: chunks [first, last] are present and, with pieces, every piece they touch matched
 * (0), or a failure since fails0 left one missing. */
static int wait_range(al_cache *c, fill *f, uint32_t first, uint32_t last)
{
	uint64_t fails0 = f->fails, discards = f->discards;
	uint32_t i;
	if (f->pst) {
		/* Whole pieces: a piece is verified only once all of it is here. */
		first = first >> f->piece_shift << f->piece_shift;
		last = piece_end(f, last >> f->piece_shift) - 1;
	}
	i = first;
	for (;;) {
		int rc;
		if (f->done)
			return f->done > 0 ? 0 : al_error_set(f->err_rc, "%s", f->err_msg);
		if (f->discards != discards) {
			discards = f->discards;    /* present chunks went missing again: look anew */
			i = first;
		}
		while (i <= last && f->st[i] == CH_PRESENT)
			i++;
		if (i > last) {
			uint32_t p = f->pst ? first >> f->piece_shift : 0, pl = f->pst ? last >> f->piece_shift : 0;
			while (f->pst && p <= pl && f->pst[p] == PC_GOOD)
				p++;
			if (!f->pst || p > pl)
				return 0;
			if (f->pst[p] == PC_CHECKING)
				pthread_cond_wait(&c->filled, &c->lock);
			else if ((rc = verify_piece(c, f, p)) != 0)
				return rc;
			continue;
		}
		if (f->st[i] == CH_MISSING) {
			uint32_t n = 1;
			if (f->fails != fails0)
				return al_error_set(f->err_rc, "%s", f->err_msg);
			if ((rc = failed_slowly(f)) != 0)
				return rc;
			if (!f->range_ok && f->inflight) {
				/* A whole-object GET may be running: do not start a second. */
				pthread_cond_wait(&c->filled, &c->lock);
				continue;
			}
			while (i + n <= last && n < c->job_chunks && f->st[i + n] == CH_MISSING)
				n++;
			run_fetch(c, f, i, n, 1);    /* the reader fetches its own demand: no queueing delay */
		} else if (f->st[i] == CH_QUEUED) {
			/* Read-ahead not started yet: take over the part from i to the job's end. */
			job *j = find_job(c, f, i);
			if ((rc = failed_slowly(f)) != 0)
				return rc;
			if (!j) {
				pthread_cond_wait(&c->filled, &c->lock);
				continue;
			}
			uint32_t end = j->first + j->n;
			if (i == j->first) {
				job_unlink(c, j);
				fill_unref(f);
				free(j);
			} else {
				j->n = i - j->first;    /* the chunks before i stay queued */
			}
			run_fetch(c, f, i, end - i, 1);
		} else {
			pthread_cond_wait(&c->filled, &c->lock);
		}
	}
}

void al_cache_set_fetcher(al_cache *c, al_cache_fetch_fn fn, void *ctx)
{
	pthread_mutex_lock(&c->lock);
	c->fetch = fn;
	c->fetch_ctx = ctx;
	pthread_mutex_unlock(&c->lock);
}

/* Lock held: the empty blob has nothing to fetch. It is verified like any other (its hash must
 * be the hash of no bytes), placed at once (no bytes to sync), and opened pinned. */
static int place_empty(int *fd_out, al_cache *c, const char *hash)
{
	char got[AL_HASH_HEX_LEN + 1], *tmp = NULL, *dst = NULL, *sub = NULL;
	entry *e = NULL;
	int rc = 0, fd = -1, placed = 0;

	al_hash_buffer(got, "", 0);
	if (strcmp(got, hash) != 0)
		return al_error_set(AL_EIO, "hash mismatch for %s: the fetched data (0 bytes) hashes to %s",
			hash, got);
	if (asprintf(&tmp, "%s/tmp/fill-XXXXXX", c->dir) < 0) {
		tmp = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	if (!(dst = blob_path(c, hash)) || asprintf(&sub, "%s/%.2s", c->dir, hash) < 0) {
		sub = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		int err = errno;
		rc = al_error_set_errno(is_enospc(0, err) ? AL_ENOSPC : AL_EIO, err,
			"cannot create a temp file in %s/tmp", c->dir);
		goto cleanup;
	}
	if ((rc = al__mkdir(sub, 0755)) != 0)
		goto cleanup;
	if (fchmod(fd, 0444) != 0 || rename(tmp, dst) != 0) {
		rc = al_error_set_errno(al_error_from_errno(errno) == AL_ENOSPC ? AL_ENOSPC : AL_EIO, errno,
			"cannot place cached blob %s", dst);
		goto cleanup;
	}
	placed = 1;
	close(fd);
	if ((fd = open(dst, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = al_error_set_errno(AL_EIO, errno, "cannot open cached blob %s", dst);
		goto cleanup;
	}
	if (!(e = calloc(1, sizeof(*e)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory for a cache entry");
		goto cleanup;
	}
	memcpy(e->hash, hash, AL_HASH_HEX_LEN);
	e->state = ENTRY_READY;
	{
		struct stat st;
		if (fstat(fd, &st) == 0)
			e->ctime_ns = ctime_of(&st);
	}
	if ((rc = table_insert(c, e)) != 0) {
		free(e);
		goto cleanup;
	}
	e->pins = 1;
	e->last_used = clock_tick(c);
	lru_append(c, e);
	c->entries++;
	if (db_write(c, e, 0) != 0) {
		/* Reconcile on the next open re-adds the file; the blob is fine now. */
		e->dirty = 1;
		c->dirty++;
	}
	*fd_out = fd;
	fd = -1;
cleanup:
	if (fd >= 0) {
		close(fd);
		if (!placed)
			unlink(tmp);
	}
	if (rc && placed)
		unlink(dst);    /* placed but unusable: do not keep it unindexed */
	free(tmp);
	free(dst);
	free(sub);
	return rc;
}

/* Lock held: a new PARTIAL entry with its sparse file. */
static int start_fill(fill **out, al_cache *c, const char *hash, const char *source, uint64_t size)
{
	int rc = 0;
	fill *f = NULL;
	entry *e = NULL;

	if (size >> CHUNK_SHIFT >= UINT32_MAX)
		return al_error_set(AL_EINVAL, "blob %s is too large (%llu bytes)", hash,
			(unsigned long long)size);
	if (!(f = calloc(1, sizeof(*f))) || !(e = calloc(1, sizeof(*e)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory for a cache fill");
		goto cleanup;
	}
	f->fd = -1;
	memcpy(f->hash, hash, AL_HASH_HEX_LEN);
	f->size = size;
	f->nchunks = (uint32_t)((size + CHUNK - 1) >> CHUNK_SHIFT);
	f->range_ok = source == NULL;
	if ((source && !(f->source = strdup(source))) || !(f->st = calloc(f->nchunks, 1)) ||
	    asprintf(&f->path, "%s/tmp/part-%s", c->dir, hash) < 0) {
		f->path = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory for a cache fill");
		goto cleanup;
	}
	if ((rc = al_hasher_new(&f->hasher)) != 0)
		goto cleanup;
	f->fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (f->fd < 0 || ftruncate(f->fd, (off_t)size) != 0) {
		int err = errno;
		rc = al_error_set_errno(is_enospc(0, err) ? AL_ENOSPC : AL_EIO, err,
			"cannot create the cache file %s", f->path);
		if (f->fd >= 0)
			unlink(f->path);
		goto cleanup;
	}
	memcpy(e->hash, hash, AL_HASH_HEX_LEN);
	e->size = size;
	e->state = ENTRY_PARTIAL;
	e->fill = f;
	if ((rc = table_insert(c, e)) != 0) {
		unlink(f->path);
		goto cleanup;
	}
	f->e = e;
	f->refs = 1;             /* the entry's link */
	lru_append(c, e);
	c->bytes += slack(c, size);
	*out = f;
	return 0;
cleanup:
	if (f)
		fill_free(f);
	free(e);
	return rc;
}

int al_cache_open_blob(al_cache_blob **out, al_cache *c, const char *hash, const char *source,
	uint64_t size)
{
	int rc = 0;
	al_cache_blob *b = NULL;
	entry *e;

	*out = NULL;
	if (!al_hash_is_valid(hash))
		return al_error_set(AL_EINVAL, "invalid blob hash \"%s\"", hash ? hash : "(null)");
	if (!(b = calloc(1, sizeof(*b))))
		return al_error_set(AL_ENOMEM, "out of memory for an open blob");
	b->c = c;
	b->fd = -1;
	memcpy(b->hash, hash, AL_HASH_HEX_LEN);
	b->size = size;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		e = table_find(c, hash);
		if (!e)
			break;
		if (e->state == ENTRY_READY && e->unverified) {
			if (e->verifying)
				pthread_cond_wait(&c->filled, &c->lock);    /* another open hashes it */
			else
				verify_found(c, e);
			continue;    /* verified, dropped, or marked damaged: look again */
		}
		if (e->state == ENTRY_READY) {
			if ((rc = open_ready(&b->fd, c, e)) == AL_EAGAIN) {
				rc = 0;
				continue;    /* changed on disk: hashed first (above) */
			}
			if ((rc == AL_ENOTFOUND || e->damaged) && evictable(e)) {
				evict(c, e);    /* removed behind our back, or damaged: fill it again */
				c->evictions--;
				continue;
			}
			if (rc == 0) {
				c->hits++;
				b->size = e->size;
				unmark_prefetched(c, e);
			}
			maybe_flush(c);
			goto unlock;
		}
		/* PARTIAL: join the fill in progress (or resume an idle one). Its file may have been
		 * renamed into the complete set already (place_fill renames outside the lock, then
		 * marks the entry ready): the fill's own descriptor reaches it under any name. */
		fill *f = e->fill;
		b->fd = open(f->path, O_RDONLY | O_CLOEXEC);
		if (b->fd < 0 && errno == ENOENT && f->fd >= 0) {
			char self[64];
			snprintf(self, sizeof(self), "/proc/self/fd/%d", f->fd);
			b->fd = open(self, O_RDONLY | O_CLOEXEC);
		}
		if (b->fd < 0) {
			rc = al_error_set_errno(AL_EIO, errno, "cannot open the cache file %s", f->path);
			goto unlock;
		}
		e->pins++;
		f->refs++;
		b->f = f;
		b->size = f->size;
		unmark_prefetched(c, e);
		lru_unlink(c, e);
		lru_append(c, e);
		c->hits++;
		goto unlock;
	}
	c->misses++;
	if (!c->fetch) {
		rc = al_error_set(AL_EINVAL, "blob %s is not cached and the cache has no fetcher", hash);
		goto unlock;
	}
	if (c->max_bytes && footprint(c, size) > c->max_bytes) {
		rc = al_error_set(AL_ENOSPC, "cache full: blob %s (%llu bytes) is larger than the whole "
			"cache (%llu bytes), raise --cache-size", hash, (unsigned long long)size,
			(unsigned long long)c->max_bytes);
		goto unlock;
	}
	/* A range fill counts the bytes it fetches, as it fetches them (run_fetch): an open file
	 * holds only what was read of it, and the room for the rest is found when it is needed. */
	if (size == 0) {
		/* Nothing to stream: placed at once. */
		rc = place_empty(&b->fd, c, hash);
		goto unlock;
	}
	{
		fill *f = NULL;
		if ((rc = start_fill(&f, c, hash, source, size)) != 0)
			goto unlock;
		b->fd = open(f->path, O_RDONLY | O_CLOEXEC);
		if (b->fd < 0) {
			rc = al_error_set_errno(AL_EIO, errno, "cannot open the cache file %s", f->path);
			drop_partial(c, f->e);
			goto unlock;
		}
		f->e->pins = 1;
		f->refs++;
		b->f = f;
	}
unlock:
	pthread_mutex_unlock(&c->lock);
	if (rc) {
		if (b->fd >= 0)
			close(b->fd);
		free(b);
		return rc;
	}
	*out = b;
	return 0;
}

/* Lock held: every chunk present and the hash checked (placing the file may still be running). */
static int wait_verified(al_cache *c, fill *f)
{
	int rc;
	if (!f->verified && !f->done && (rc = failed_slowly(f)) != 0)
		return rc;
	if (!f->verified && !f->done && f->e && !f->range_ok && !f->inflight &&
	    f->st[0] == CH_MISSING && f->nchunks > 1) {
		/* One chunk first shows whether the origin honours Range; then the rest in parallel. */
		uint64_t fails0 = f->fails;
		run_fetch(c, f, 0, 1, 1);
		if (f->fails != fails0)
			return al_error_set(f->err_rc, "%s", f->err_msg);
	}
	if (!f->verified && !f->done && f->e && f->range_ok) {
		/* In parallel, not one by one; the first run of missing chunks is this reader's own
		 * (wait_range fetches it): queued, a worker would be woken for nothing. */
		uint32_t n, i = missing_run(c, f, &n);
		queue_range(c, f, i + n, f->nchunks - 1, c->job_chunks);
	}
	rc = wait_range(c, f, 0, f->nchunks - 1);
	while (rc == 0 && !f->verified && !f->done)
		pthread_cond_wait(&c->filled, &c->lock);
	if (rc == 0 && !f->verified && f->done < 0)
		rc = al_error_set(f->err_rc, "%s", f->err_msg);
	return rc;
}

int al_cache_blob_wait(al_cache_blob *b, uint64_t off, uint64_t len)
{
	al_cache *c = b->c;
	fill *f = b->f;
	uint32_t last;
	int rc;
	if (!f || off >= b->size || len == 0)
		return 0;
	if (len > b->size - off)
		len = b->size - off;
	last = (uint32_t)((off + len - 1) >> CHUNK_SHIFT);
	pthread_mutex_lock(&c->lock);
	if (f->verified && f->done >= 0) {
		rc = 0;
	} else if (f->size <= VERIFY_FIRST_MAX || !f->pst) {
		rc = wait_verified(c, f);    /* small, or no piece list: held back until verified */
	} else {
		int hold = last == f->nchunks - 1 && is_seq(b, off, off + len) &&
			(b->reads ? b->from_start : off == 0);
		rc = wait_range(c, f, (uint32_t)(off >> CHUNK_SHIFT), last);
		if (rc == 0 && hold)
			rc = wait_verified(c, f);
		if (rc == 0 && !f->done)
			plan_readahead(c, b, off, off + len);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int al_cache_blob_wants_pieces(al_cache_blob *b)
{
	fill *f = b->f;
	int r;
	if (!f)
		return 0;
	pthread_mutex_lock(&b->c->lock);
	r = !f->pst && !f->verified && !f->done && f->size > VERIFY_FIRST_MAX;
	pthread_mutex_unlock(&b->c->lock);
	return r;
}

int al_cache_blob_set_pieces(al_cache_blob *b, const al_pieces *pieces)
{
	al_cache *c = b->c;
	fill *f = b->f;
	uint64_t *h = NULL;
	uint8_t *pst = NULL;
	unsigned shift = 0;
	int rc = 0;

	if (!f)
		return 0;    /* complete already */
	if (pieces->size < CHUNK || (pieces->size & (pieces->size - 1)) ||
	    (f->size + pieces->size - 1) / pieces->size != pieces->count || !pieces->hash)
		return al_error_set(AL_EINVAL, "piece list of blob %s (%u pieces of %llu bytes) does not "
			"fit its %llu bytes", f->hash, pieces->count, (unsigned long long)pieces->size,
			(unsigned long long)f->size);
	while ((CHUNK << shift) < pieces->size)
		shift++;
	if (!(h = malloc(pieces->count * sizeof(*h))) || !(pst = calloc(pieces->count, 1))) {
		free(h);
		return al_error_set(AL_ENOMEM, "out of memory for piece hashes");
	}
	memcpy(h, pieces->hash, pieces->count * sizeof(*h));
	pthread_mutex_lock(&c->lock);
	/* The first list is kept. While the whole-blob hash is running over unverified chunks the
	 * fill stays held back; otherwise that hash starts over, over verified pieces only. */
	if (!f->pst && !f->verified && !f->done && f->e && !f->hashing) {
		al_hasher *fresh = NULL;
		if (f->hashed && (rc = al_hasher_new(&fresh)) == 0) {
			al_hasher_free(f->hasher);
			f->hasher = fresh;
			f->hashed = 0;
		}
		if (rc == 0) {
			f->piece_hash = h;
			f->pst = pst;
			f->npieces = pieces->count;
			f->piece_shift = shift;
			h = NULL;
			pst = NULL;
		}
	}
	pthread_mutex_unlock(&c->lock);
	free(h);
	free(pst);
	return rc;
}

int al_cache_blob_is_complete(al_cache_blob *b)
{
	int r;
	if (!b->f)
		return 1;
	pthread_mutex_lock(&b->c->lock);
	r = b->f->verified && b->f->done >= 0;
	pthread_mutex_unlock(&b->c->lock);
	return r;
}

int al_cache_blob_complete(al_cache_blob *b)
{
	al_cache *c = b->c;
	fill *f = b->f;
	int rc = 0;
	if (!f)
		return 0;
	pthread_mutex_lock(&c->lock);
	rc = wait_verified(c, f);
	while (rc == 0 && !f->done)
		pthread_cond_wait(&c->filled, &c->lock);
	if (rc == 0 && f->done < 0)
		rc = al_error_set(f->err_rc, "%s", f->err_msg);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int al_cache_blob_fd(al_cache_blob *b)
{
	return b->fd;
}

void al_cache_blob_close(al_cache_blob *b)
{
	al_cache *c;
	if (!b)
		return;
	c = b->c;
	if (b->fd >= 0)
		close(b->fd);
	if (!b->f) {
		al_cache_release(c, b->hash);
		free(b);
		return;
	}
	pthread_mutex_lock(&c->lock);
	entry *e = b->f->e;
	if (e) {
		if (e->pins)
			unpin(e);
		if (!e->pins && e->fill == b->f)
			cancel_jobs(c, b->f);    /* an idle partial keeps what it has, fetches no more */
	}
	fill_unref(b->f);
	make_room(c, 0, 0);    /* back under the limit, if open files had taken it past */
	pf_poke(c);    /* a prefetch waiting for room */
	pthread_mutex_unlock(&c->lock);
	free(b);
}

void al_cache_get_fill_stats(al_cache_fill_stats *out, al_cache *c)
{
	pthread_mutex_lock(&c->lock);
	*out = c->fstats;
	pthread_mutex_unlock(&c->lock);
}

/* ---- prefetch: lists of blobs fetched ahead, several at once, on threads of their own ---- */

typedef struct pf_item {
	char hash[AL_HASH_HEX_LEN + 1];
	char *source;
	uint64_t size;
} pf_item;

/* Guarded by the cache lock. refs: the owner, the active list, each blob in flight. */
struct al_cache_prefetch {
	al_cache *c;
	pf_item *items;
	size_t n, next;         /* items [0, next) were taken up */
	int mode;
	int cancelled, listed;  /* listed: in c->pf_head */
	unsigned inflight, refs;
	unsigned fail_streak;   /* fetches failed in a row (a pull gives up at one per thread) */
	al_cache_prefetch_stats st;
	al_cache_prefetch *next_active;
};

/* Drops n references at once: a caller that may drop two (its own and the active list's, see
 * pf_settle) never touches p between them. */
static void pf_unref(al_cache_prefetch *p, unsigned n)
{
	p->refs -= n;
	if (p->refs)
		return;
	for (size_t i = 0; i < p->n; i++)
		free(p->items[i].source);
	free(p->items);
	free(p);
}

/* Lock held: p is finished or cancelled once nothing of it is in flight: off the active list.
 * Returns the references the caller must drop for the list (1 when it left it, else 0). */
static unsigned pf_settle(al_cache *c, al_cache_prefetch *p)
{
	if (p->inflight || !p->listed || (!p->cancelled && p->next < p->n))
		return 0;
	for (al_cache_prefetch **q = &c->pf_head; *q; q = &(*q)->next_active)
		if (*q == p) {
			*q = p->next_active;
			break;
		}
	p->listed = 0;
	p->st.finished = 1;
	c->pft.running--;
	pthread_cond_broadcast(&c->pf_progress);
	return 1;
}

static void pf_drop_all(al_cache *c)
{
	pthread_mutex_lock(&c->lock);
	while (c->pf_head) {
		al_cache_prefetch *h = c->pf_head;
		h->cancelled = 1;
		pf_unref(h, pf_settle(c, h));
	}
	pthread_mutex_unlock(&c->lock);
}

enum { PF_CACHED, PF_FETCHED, PF_FAILED, PF_LEFT };    /* how a blob of a prefetch was handled */

static void pf_done(al_cache *c, al_cache_prefetch *p, const pf_item *it, int outcome,
	const char *msg, int rc)
{
	p->st.files_done++;
	p->st.bytes_done += it->size;
	if (outcome == PF_CACHED) {
		p->st.cached_files++;
		p->st.cached_bytes += it->size;
	} else if (outcome == PF_FETCHED) {
		p->st.fetched_files++;
		p->st.fetched_bytes += it->size;
		c->pft.fetched_files++;
		c->pft.fetched_bytes += it->size;
	} else if (outcome == PF_FAILED) {
		p->st.failed_files++;
		c->pft.failed_files++;
		if (!p->st.err_rc) {
			p->st.err_rc = rc ? rc : AL_EIO;
			snprintf(p->st.err, sizeof(p->st.err), "%s", msg ? msg : "prefetch failed");
		}
	}
	pthread_cond_broadcast(&c->pf_progress);
}

/* Lock held: one idle prefetch thread wakes when a list has blobs not started yet. One, not all:
 * an open or close of every file would otherwise wake every idle thread (24 by default) for
 * nothing, and on a small machine those switches cost more than the reads. A thread that picks a
 * blob pokes the next one (pf_main), so a list that can go on gets all the threads it can use. */
static void pf_poke(al_cache *c)
{
	if (!c->pf_idle)
		return;
	for (const al_cache_prefetch *p = c->pf_head; p; p = p->next_active)
		if (!p->cancelled && p->next < p->n) {
			pthread_cond_signal(&c->pf_wake);
			return;
		}
}

/* Lock held: whether size more bytes fit under max_bytes, evicting only what make_room_keep may. */
static int pf_room(al_cache *c, uint64_t size)
{
	return make_room_keep(c, footprint(c, size));
}

/* Lock held: a complete entry nobody has open whose file changed behind the mount since it was
 * placed (its ctime moved, now or before this mount): a pull does not count it unhashed. */
static int changed_on_disk(al_cache *c, const entry *e)
{
	struct stat st;
	char *p;
	int r;
	if (e->pins || e->has_fd)
		return 0;    /* checked at its open, which an open by path repeats */
	if (e->unverified)
		return 1;
	if (!e->ctime_ns || !(p = blob_path(c, e->hash)))
		return 0;
	r = stat(p, &st) != 0 || ctime_moved(e->ctime_ns, &st);
	free(p);
	return r;
}

/* Lock held: the next blob of an active prefetch to fetch, as a fill this thread works on
 * (refs and busy taken), with its prefetch and item; NULL when none can start now. */
static fill *pf_pick(al_cache *c, al_cache_prefetch **pout, pf_item **iout)
{
	for (al_cache_prefetch *p = c->pf_head, *pnext; p; p = pnext) {
		pnext = p->next_active;
		while (!p->cancelled && p->next < p->n) {
			pf_item *it = &p->items[p->next];
			entry *e = table_find(c, it->hash);
			fill *f = NULL;
			if (e && e->state == ENTRY_READY && !e->damaged && changed_on_disk(c, e)) {
				fprintf(stderr, "aletheia: cache: blob %s changed on disk since it was placed: "
					"fetched again\n", e->hash);
				evict(c, e);
				e = NULL;
			}
			if (e && e->state == ENTRY_READY && !e->damaged) {
				/* Verified already. What a pull keeps must stay for the reads to come. */
				if (p->mode == AL_CACHE_PREFETCH_ALL && !e->pins)
					mark_prefetched(c, e, p->mode);
				p->next++;
				pf_done(c, p, it, PF_CACHED, NULL, 0);
				continue;
			}
			if (e && e->state == ENTRY_READY) {
				/* damaged and still open: the next open after it goes fetches it */
				char msg[512];
				snprintf(msg, sizeof(msg), "blob %s is damaged in the cache and still open: it "
					"is fetched again once it is closed", it->hash);
				p->next++;
				pf_done(c, p, it, p->mode == AL_CACHE_PREFETCH_ALL ? PF_FAILED : PF_LEFT, msg,
					AL_EIO);
				continue;
			}
			if (e) {
				f = e->fill;
				if (p->mode == AL_CACHE_PREFETCH_AHEAD && (e->pins || f->busy)) {
					p->next++;    /* a reader is fetching it already */
					pf_done(c, p, it, PF_LEFT, NULL, 0);
					continue;
				}
				/* An idle partial (its readers gone), or for a pull any fill: finish it. */
			} else if (it->size == 0) {
				p->next++;    /* nothing to fetch: an open places it at once */
				pf_done(c, p, it, PF_CACHED, NULL, 0);
				continue;
			} else {
				if (p->mode == AL_CACHE_PREFETCH_AHEAD && it->size > c->pf_ahead) {
					/* never fits the budget: left to its reader (README "Reading
					 * datasets: prefetch"); the scan stopped here for good */
					p->next++;
					pf_done(c, p, it, PF_LEFT, NULL, 0);
					continue;
				}
				if (p->mode == AL_CACHE_PREFETCH_AHEAD && c->unread_bytes + it->size > c->pf_ahead)
					break;    /* far enough ahead of the readers */
				if (!pf_room(c, it->size)) {
					if (p->mode == AL_CACHE_PREFETCH_ALL && !p->inflight) {
						char msg[512];
						snprintf(msg, sizeof(msg), "the cache has no room for blob %s (%llu "
							"bytes): open files and prefetched blobs hold %llu of --cache-size "
							"%llu bytes", it->hash, (unsigned long long)it->size,
							(unsigned long long)c->bytes, (unsigned long long)c->max_bytes);
						while (p->next < p->n)
							pf_done(c, p, &p->items[p->next++], PF_FAILED, msg, AL_ENOSPC);
						pf_unref(p, pf_settle(c, p));
					}
					break;
				}
				int frc = start_fill(&f, c, it->hash, it->source, it->size);
				if (frc) {
					p->next++;
					pf_done(c, p, it, PF_FAILED, al_error_last(), frc);
					continue;
				}
				mark_prefetched(c, f->e, p->mode);
			}
			p->next++;
			p->inflight++;
			p->refs++;
			f->refs++;
			f->busy++;        /* not evictable while this thread works on it */
			*pout = p;
			*iout = it;
			return f;
		}
		pf_unref(p, pf_settle(c, p));
	}
	return NULL;
}

/* Lock held (released while fetching): fetches what f lacks, in GETs of at most job_chunks,
 * and waits for its verification. 1 when the blob is verified, 0 when there was no room for it,
 * -1 when it failed (msg, *rc). */
static int pf_fill(al_cache *c, fill *f, char *msg, size_t msgsize, int *rc)
{
	uint64_t fails0 = f->fails;
	for (;;) {
		uint32_t i, n;
		if (f->verified || f->done > 0)
			return 1;
		if (c->stop)
			return 0;    /* closing: left, not failed */
		if (f->done < 0 || !f->e || f->fails != fails0) {
			*rc = f->done < 0 || f->fails != fails0 ? f->err_rc : AL_EIO;
			snprintf(msg, msgsize, "%s", f->err_msg[0] ? f->err_msg : "blob fill dropped");
			return -1;
		}
		i = missing_run(c, f, &n);
		if (i == f->nchunks && f->pst) {
			/* Pieces handed over by a reader after their chunks arrived: checked here, or the
			 * whole-blob hash (which takes matched pieces only) would wait for a read. */
			uint32_t q = 0;
			while (q < f->npieces && !(f->pst[q] == PC_UNCHECKED && piece_present(f, q)))
				q++;
			if (q < f->npieces) {
				verify_piece(c, f, q);
				continue;
			}
		}
		if (i == f->nchunks || (!f->range_ok && f->inflight)) {
			advance_hash(c, f);
			if (!f->verified && f->done == 0 && f->e)
				pthread_cond_wait(&c->filled, &c->lock);    /* others' fetches, the hash */
			continue;
		}
		run_fetch(c, f, i, n, 0);
		if (f->fails == fails0 && f->e && !f->done && f->st[i] == CH_MISSING)
			return 0;    /* gave up for room */
	}
}

static void *pf_main(void *arg)
{
	al_cache *c = arg;
	on_prefetch_thread = 1;
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		al_cache_prefetch *p = NULL;
		pf_item *it = NULL;
		fill *f = pf_pick(c, &p, &it);
		char msg[512] = "";
		int rc = 0, r;
		if (!f) {
			c->pf_idle++;
			pthread_cond_wait(&c->pf_wake, &c->lock);
			c->pf_idle--;
			continue;
		}
		pf_poke(c);    /* the next blob, if there is one, for another thread */
		r = pf_fill(c, f, msg, sizeof(msg), &rc);
		if (r == 0 && p->mode == AL_CACHE_PREFETCH_ALL && !c->stop) {
			/* A pull promises every blob cached (README "dataset prefetch"): one left for
			 * room (the disk fuller than --cache-size allows for) fails it. */
			snprintf(msg, sizeof(msg), "no room on the cache disk %s for blob %s (%llu bytes)",
				c->dir, f->hash, (unsigned long long)f->size);
			rc = AL_ENOSPC;
			r = -1;
		}
		if (r <= 0 && f->e && f->e->prefetched)
			unmark_prefetched(c, f->e);    /* nothing kept for the readers */
		if (r < 0)
			fprintf(stderr, "aletheia: prefetch of blob %s failed: %s\n", f->hash, msg);
		pf_done(c, p, it, r > 0 ? PF_FETCHED : r == 0 ? PF_LEFT : PF_FAILED, msg, rc);
		p->fail_streak = r < 0 ? p->fail_streak + 1 : 0;
		if (p->mode == AL_CACHE_PREFETCH_ALL && p->fail_streak >= c->npf && p->next < p->n) {
			/* Every thread's fetch failed in a row (a server that hangs costs each its
			 * timeouts: a pull of 10,000 files took hours to fail): the rest fail at once. */
			char why[512];
			snprintf(why, sizeof(why), "not fetched: the %u fetches before it failed in a row "
				"(the last: %.400s)", p->fail_streak, msg);
			while (p->next < p->n)
				pf_done(c, p, &p->items[p->next++], PF_FAILED, why, rc ? rc : AL_EIO);
		}
		work_done(c, f);
		fill_unref(f);
		p->inflight--;
		pf_unref(p, 1 + pf_settle(c, p));
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static int cmp_item_hash(const void *a, const void *b)
{
	const pf_item *x = *(pf_item *const *)a, *y = *(pf_item *const *)b;
	int r = strcmp(x->hash, y->hash);
	return r ? r : (x < y ? -1 : x > y);
}

int al_cache_prefetch_start(al_cache_prefetch **out, al_cache *c, const al_cache_item *items,
	size_t n, int mode)
{
	al_cache_prefetch *p = NULL;
	pf_item **order = NULL;
	size_t kept = 0;
	uint64_t distinct = 0, disk = 0;    /* bytes, and the blocks they take */
	int rc = 0;

	*out = NULL;
	if (!(p = calloc(1, sizeof(*p))) || (n && (!(p->items = calloc(n, sizeof(*p->items))) ||
	    !(order = calloc(n, sizeof(*order)))))) {
		rc = al_error_set(AL_ENOMEM, "out of memory for a prefetch");
		goto cleanup;
	}
	p->c = c;
	p->mode = mode;
	for (size_t i = 0; i < n; i++) {
		if (!al_hash_is_valid(items[i].hash)) {
			rc = al_error_set(AL_EINVAL, "invalid blob hash \"%s\"", items[i].hash ? items[i].hash : "");
			goto cleanup;
		}
		memcpy(p->items[i].hash, items[i].hash, AL_HASH_HEX_LEN);
		p->items[i].size = items[i].size;
		if (items[i].source && !(p->items[i].source = strdup(items[i].source))) {
			rc = al_error_set(AL_ENOMEM, "out of memory for a prefetch");
			goto cleanup;
		}
		order[i] = &p->items[i];
	}
	p->n = n;
	/* One blob, one fetch: duplicates (files of equal content) go, the first place kept. */
	qsort(order, n, sizeof(*order), cmp_item_hash);
	for (size_t i = 1; i < n; i++)
		if (strcmp(order[i]->hash, order[i - 1]->hash) == 0)
			order[i]->size = UINT64_MAX;    /* marked: dropped below */
	for (size_t i = 0; i < n; i++) {
		if (p->items[i].size == UINT64_MAX) {
			free(p->items[i].source);
			continue;
		}
		p->items[kept++] = p->items[i];
		distinct += p->items[i].size;
		disk += footprint(c, p->items[i].size);
	}
	p->n = kept;
	p->st.files = kept;
	p->st.bytes = distinct;
	if (mode == AL_CACHE_PREFETCH_ALL && c->max_bytes && disk > c->max_bytes) {
		rc = al_error_set(AL_ENOSPC, "%zu files of %llu bytes do not fit in the cache "
			"(--cache-size %llu bytes); raise --cache-size", kept, (unsigned long long)distinct,
			(unsigned long long)c->max_bytes);
		goto cleanup;
	}
	pthread_mutex_lock(&c->lock);
	if (!c->fetch) {
		pthread_mutex_unlock(&c->lock);
		rc = al_error_set(AL_EINVAL, "the cache has no fetcher");
		goto cleanup;
	}
	while (c->npf < c->pf_parallel && !c->stop) {
		if (pthread_create(&c->pf_threads[c->npf], NULL, pf_main, c) != 0)
			break;
		c->npf++;
	}
	if (!c->npf) {
		pthread_mutex_unlock(&c->lock);
		rc = al_error_set(AL_ERROR, "cannot start the prefetch threads");
		goto cleanup;
	}
	p->refs = 2;             /* the owner, the active list */
	p->listed = 1;
	p->next_active = NULL;
	{
		al_cache_prefetch **q = &c->pf_head;    /* first come, first served */
		while (*q)
			q = &(*q)->next_active;
		*q = p;
	}
	c->pft.started++;
	c->pft.running++;
	pthread_cond_broadcast(&c->pf_wake);
	pthread_mutex_unlock(&c->lock);
	*out = p;
	p = NULL;
cleanup:
	free(order);
	if (p) {
		for (size_t i = 0; i < p->n; i++)
			free(p->items[i].source);
		free(p->items);
		free(p);
	}
	return rc;
}

void al_cache_prefetch_get_stats(al_cache_prefetch_stats *out, al_cache_prefetch *p)
{
	pthread_mutex_lock(&p->c->lock);
	*out = p->st;
	if (!p->listed)
		out->finished = 1;
	pthread_mutex_unlock(&p->c->lock);
}

void al_cache_prefetch_wait(al_cache_prefetch *p, unsigned timeout_ms)
{
	al_cache *c = p->c;
	struct timespec ts;
	uint64_t done;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->lock);
	done = p->st.files_done;
	while (p->listed && p->st.files_done == done && !c->stop)
		if (pthread_cond_timedwait(&c->pf_progress, &c->lock, &ts) != 0)
			break;
	pthread_mutex_unlock(&c->lock);
}

void al_cache_prefetch_free(al_cache_prefetch *p)
{
	al_cache *c;
	if (!p)
		return;
	c = p->c;
	pthread_mutex_lock(&c->lock);
	p->cancelled = 1;
	pf_unref(p, 1 + pf_settle(c, p));
	pthread_mutex_unlock(&c->lock);
}

void al_cache_get_prefetch_totals(al_cache_prefetch_totals *out, al_cache *c)
{
	pthread_mutex_lock(&c->lock);
	*out = c->pft;
	out->unread_bytes = c->unread_bytes + c->pulled_bytes;
	pthread_mutex_unlock(&c->lock);
}

/* ---- sizes ---- */

int al_size_parse(uint64_t *out, const char *text)
{
	const char *s = text;
	uint64_t whole = 0, mult = 1;
	double frac = 0, scale = 0.1;
	int digits = 0, frac_digits = 0;

	*out = 0;
	if (!text)
		return al_error_set(AL_EINVAL, "missing size");
	for (; *s >= '0' && *s <= '9'; s++, digits++) {
		uint64_t d = (uint64_t)(*s - '0');
		if (whole > (UINT64_MAX - d) / 10)
			return al_error_set(AL_EINVAL, "size \"%s\" is too large", text);
		whole = whole * 10 + d;
	}
	if (*s == '.') {
		for (s++; *s >= '0' && *s <= '9'; s++, frac_digits++) {
			frac += (*s - '0') * scale;
			scale /= 10;
		}
		if (!frac_digits)
			goto bad;
	}
	if (!digits)
		goto bad;
	while (*s == ' ')
		s++;
	switch (*s) {
	case 'k': case 'K': mult = 1ULL << 10; s++; break;
	case 'm': case 'M': mult = 1ULL << 20; s++; break;
	case 'g': case 'G': mult = 1ULL << 30; s++; break;
	case 't': case 'T': mult = 1ULL << 40; s++; break;
	default: break;
	}
	if (mult > 1 && (*s == 'i' || *s == 'I'))
		s++;
	if (*s == 'b' || *s == 'B')
		s++;
	if (*s)
		goto bad;
	if (s[-1] == 'i' || s[-1] == 'I')
		goto bad;    /* "Ki" without the B */
	if (whole > UINT64_MAX / mult)
		return al_error_set(AL_EINVAL, "size \"%s\" is too large", text);
	uint64_t extra = (uint64_t)(frac * (double)mult);
	if (frac_digits && mult == 1 && frac != 0)
		goto bad;    /* fractions of a byte */
	if (whole * mult > UINT64_MAX - extra)
		return al_error_set(AL_EINVAL, "size \"%s\" is too large", text);
	*out = whole * mult + extra;
	return 0;
bad:
	return al_error_set(AL_EINVAL, "bad size \"%s\": use bytes or a number with K, M, G or T "
		"(e.g. 4096, 512M, 1.5G)", text);
}
