/* aletheia: the local content-addressed blob cache: files named by xxh3-128, bounded in size,
 * LRU eviction that never evicts a pinned (open) blob, atomic verified fills, a persistent index. */
#ifndef ALETHEIA_CACHE_H
#define ALETHEIA_CACHE_H

#include <stdint.h>
#include "common.h"

typedef struct al_cache al_cache;

/* Writes the blob's bytes into fd (an empty temp file in the cache folder). */
typedef int (*al_cache_fill_fn)(void *ctx, int fd);

typedef struct al_cache_stats {
	uint64_t bytes, max_bytes, entries, pinned, hits, misses, evictions;
} al_cache_stats;

/* max_bytes 0 means unbounded. The folder is created if missing; the index is reloaded. */
int al_cache_open(al_cache **out, const char *dir, uint64_t max_bytes);
/* Returns a read-only fd on the complete blob, filling it first on a miss (temp file, fill,
 * fsync, verify hash and size, rename). The blob is pinned until al_cache_release; concurrent
 * callers for one hash share one fill. AL_EIO on a hash mismatch (nothing kept), AL_ENOSPC when
 * it cannot fit even after evicting every unpinned blob. */
int al_cache_acquire(int *fd_out, al_cache *c, const char *hash, uint64_t size,
	al_cache_fill_fn fill, void *ctx);
void al_cache_release(al_cache *c, const char *hash);
int al_cache_contains(al_cache *c, const char *hash);
void al_cache_get_stats(al_cache_stats *out, al_cache *c);
void al_cache_free(al_cache *c);

/* "10G", "512M", "4096", "1.5G" → bytes. */
int al_size_parse(uint64_t *out, const char *text);

#endif
