/* aletheia: the local content-addressed blob cache: files named by xxh3-128, bounded in size,
 * LRU eviction that never evicts a pinned (open) blob, atomic verified fills, a persistent index. */
#ifndef ALETHEIA_CACHE_H
#define ALETHEIA_CACHE_H

#include <stdint.h>
#include "common.h"
#include "hash.h"

typedef struct al_cache al_cache;

typedef struct al_cache_stats {
	uint64_t bytes, max_bytes, entries, pinned, hits, misses, evictions;
	/* Complete files placed and not yet made durable by a sync (their index rows come after
	 * it), syncs that did so, and files found in the folder without a row, hashed at their
	 * first open (README "Durability"). */
	uint64_t unsynced, syncs, unverified;
} al_cache_stats;

/* max_bytes 0 means unbounded. The folder is created if missing; the index is reloaded. */
int al_cache_open(al_cache **out, const char *dir, uint64_t max_bytes);
/* Unpins a complete blob once (what al_cache_blob_close does for a blob complete at open); a
 * blob with no pins left may be evicted, and one found damaged goes. */
void al_cache_release(al_cache *c, const char *hash);
int al_cache_contains(al_cache *c, const char *hash);
void al_cache_get_stats(al_cache_stats *out, al_cache *c);
/* For fsck: hashes the complete cached copy of hash, if there is one (*found = 1). AL_EIO when it
 * is not the blob (size bytes, that hash): it is removed, so the next read fetches the blob
 * again (an open file keeps reading what it has). */
int al_cache_check(int *found, al_cache *c, const char *hash, uint64_t size);
void al_cache_free(al_cache *c);

/* ---- streaming reads: an open blob backed by a sparse cache file, filled by ranges ----
 * A handle pins its blob. Missing ranges are fetched on demand by the reading thread and ahead
 * of it by a small pool of workers (read-ahead grows while a handle reads sequentially, none for
 * random reads). Openers of one blob share one fill. The xxh3-128 of the contiguous filled prefix
 * is advanced as chunks arrive; the complete file is fsynced, verified and moved into the
 * complete set (a mismatch is dropped: readers get AL_EIO, the next open starts again). */
typedef struct al_cache_blob al_cache_blob;

/* The granularity of range fills: a random read fetches the chunks it touches. */
#define AL_CACHE_CHUNK ((uint64_t)256 << 10)
/* Blobs up to this size are verified whole before their first byte is served (one short wait). */
#define AL_CACHE_VERIFY_WHOLE_MAX ((uint64_t)8 << 20)

/* Copies bytes [off, off+len) of the blob into fd at offset off. source NULL means the blob
 * store (by hash), else a URL. Sets *whole = 1 when the origin ignored Range and wrote the whole
 * blob at offset 0. Called from several threads at once. */
typedef int (*al_cache_fetch_fn)(void *ctx, const char *hash, const char *source, int fd,
	uint64_t off, uint64_t len, int *whole);

/* Set once, before the first al_cache_open_blob. */
void al_cache_set_fetcher(al_cache *c, al_cache_fetch_fn fn, void *ctx);
/* Opens (and pins) the blob: a complete cached copy, or a shared fill in progress, or a new
 * sparse fill, which counts against max_bytes the bytes it fetches, as it fetches them (AL_ENOSPC
 * now only for a blob larger than the whole cache). Never waits for the network. source: see
 * al_cache_fetch_fn (copied). */
int al_cache_open_blob(al_cache_blob **out, al_cache *c, const char *hash, const char *source,
	uint64_t size);
/* 1 when the handle's blob is still being filled, is larger than AL_CACHE_VERIFY_WHOLE_MAX and
 * its fill has no piece list yet: the opener should hand one over before reading. */
int al_cache_blob_wants_pieces(al_cache_blob *b);
/* Hands over the blob's piece hashes (copied; the first list given to a fill is kept). From then
 * on a range is served only once every piece it touches is in the cache file and matched its
 * hash; a piece that does not match is discarded (the next read fetches it again) and fails the
 * reads waiting for it with AL_EIO. A blob larger than AL_CACHE_VERIFY_WHOLE_MAX without a list
 * is held back: no byte is served before the whole blob is verified. AL_EINVAL when the list
 * does not fit the blob (piece size not a power of two multiple of AL_CACHE_CHUNK, wrong count). */
int al_cache_blob_set_pieces(al_cache_blob *b, const al_pieces *pieces);
/* Blocks until bytes [off, off+len) (clipped to the size) are in the cache file and verified
 * (above), fetching what is missing; also starts read-ahead from this handle's access pattern.
 * When open blobs alone hold max_bytes, the bytes asked for are fetched all the same (the cache
 * goes past its limit until they are closed); read-ahead is not. AL_EIO when the fetch failed
 * after its retries or a piece did not match (the next call tries again, or after a fetch that
 * failed slowly, a stalled server, once 2 s have passed), or the blob's hash did not match;
 * AL_ENOSPC when the cache disk is full. */
int al_cache_blob_wait(al_cache_blob *b, uint64_t off, uint64_t len);
/* A blob with pieces streams, and the read that reaches the end after reading sequentially from
 * the start also waits for the whole blob's verification.
 * 1 when the blob is complete and verified (the kernel may keep pages read from it). */
int al_cache_blob_is_complete(al_cache_blob *b);
/* Blocks until the whole blob is present, verified and in the complete set (0), or AL_EIO/AL_ENOSPC. */
int al_cache_blob_complete(al_cache_blob *b);
/* A read-only fd on the (possibly still sparse) cache file, owned by the handle: ranges for
 * which al_cache_blob_wait succeeded can be read or spliced from it. */
int al_cache_blob_fd(al_cache_blob *b);
void al_cache_blob_close(al_cache_blob *b);

typedef struct al_cache_fill_stats {
	uint64_t fetches, fetched_bytes, failures, readahead_jobs;
	uint64_t piece_mismatches;    /* pieces discarded because they did not match their hash */
} al_cache_fill_stats;
/* Counters of range fetches since open (for tests and status). */
void al_cache_get_fill_stats(al_cache_fill_stats *out, al_cache *c);

/* ---- prefetch: blobs that will be read soon, fetched ahead on the cache's own threads ----
 * The cache knows nothing of datasets: the caller (the tree, where a dataset's listing is known)
 * hands over a list of blobs in the order they are expected to be read. Blobs already cached are
 * skipped; the others are fetched several at once (ALETHEIA_PREFETCH_PARALLEL, default 8) through
 * the same fills and fetcher as reads, so an open of a blob being prefetched joins its fill, and
 * a prefetched blob is verified by its hash before it is served or kept, like any fill.
 * Bounds: a prefetch never takes the cache past max_bytes and never evicts a pinned (open) blob,
 * a blob being filled, or another prefetched blob nobody has read yet; a blob that does not fit
 * waits until room is made by reads and closes (AHEAD) or fails the prefetch (ALL). */
typedef struct al_cache_item {
	const char *hash;       /* xxh3-128 hex */
	const char *source;     /* NULL: the blob store; else a URL (al_cache_fetch_fn) */
	uint64_t size;
} al_cache_item;

typedef struct al_cache_prefetch al_cache_prefetch;

enum {
	/* A hint from readers (a scan of a dataset): at most max_bytes / 2 (unbounded cache:
	 * ALETHEIA_PREFETCH_AHEAD_MB, default 2048) of prefetched blobs not read yet, at any time. */
	AL_CACHE_PREFETCH_AHEAD = 0,
	/* Everything, to be read later (aletheia dataset prefetch): may fill the whole cache, but
	 * AL_ENOSPC at start when the distinct blobs are larger than max_bytes. */
	AL_CACHE_PREFETCH_ALL = 1,
};

typedef struct al_cache_prefetch_stats {
	uint64_t files, bytes;              /* the list (distinct blobs) */
	uint64_t files_done, bytes_done;    /* handled so far: cached before, fetched, or failed */
	uint64_t cached_files, cached_bytes;/* already complete in the cache when reached */
	uint64_t fetched_files, fetched_bytes;
	uint64_t failed_files;
	int finished;                       /* every blob handled, none in flight */
	int err_rc;                         /* the first failure (AL_EIO, AL_ENOSPC), 0 if none */
	char err[512];
} al_cache_prefetch_stats;

/* Starts prefetching items (copied; duplicates are handled once). Never waits for the network. */
int al_cache_prefetch_start(al_cache_prefetch **out, al_cache *c, const al_cache_item *items,
	size_t n, int mode);
void al_cache_prefetch_get_stats(al_cache_prefetch_stats *out, al_cache_prefetch *p);
/* Blocks until the prefetch has made progress or finished, or timeout_ms passed. */
void al_cache_prefetch_wait(al_cache_prefetch *p, unsigned timeout_ms);
/* Stops starting new fetches (those in flight complete, are verified and kept) and lets go of p. */
void al_cache_prefetch_free(al_cache_prefetch *p);

typedef struct al_cache_prefetch_totals {
	uint64_t started, fetched_files, fetched_bytes, failed_files, unread_bytes, running;
} al_cache_prefetch_totals;
/* Counters of every prefetch since open (for status and tests). */
void al_cache_get_prefetch_totals(al_cache_prefetch_totals *out, al_cache *c);

/* "10G", "512M", "4096", "1.5G" → bytes. */
int al_size_parse(uint64_t *out, const char *text);

#endif
