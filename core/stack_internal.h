/* aletheia: the stack of backends as core/ sees it (its public face is aletheia/stack.h). */
#ifndef ALETHEIA_STACK_INTERNAL_H
#define ALETHEIA_STACK_INTERNAL_H

#include "aletheia/cache.h"
#include "aletheia/fetch.h"
#include "aletheia/stack.h"
#include "core/blobs/blobs.h"
#include "core/series/series.h"
#include "core/store/store.h"

/* Built by al_stack_open, read by its users, freed by al_stack_free. */
struct al_stack {
	al_store_backend *store;        /* what the tree reads and writes documents through */
	al_store_backend *wb;           /* store itself when it is the write-behind layer, else NULL */
	/* Where metric series go: below the write-behind (they have their own journal, and big
	 * chunk documents would be copied, journaled and parsed once more), else store. */
	al_store_backend *series_store;
	al_series_set *series;
	al_blobs_backend *blobs;
	al_cache *cache;                /* fetches through al_stack's origin: blobs, or an import's URL */
	al_fetcher *fetcher;            /* imported files: objects read by URL */
	const char *backend;            /* the metastore backend's own name, for status */
	char *store_uri, *blobs_uri, *cache_dir;
	char *state_dir;                /* journals and staged writes: beside a local store, else in
					 * the cache folder (locked: ours alone) */
	int64_t attr_ttl_us;            /* how long an answer may be reused: INT64_MAX for a local
					 * store (no one else changes it), else ALETHEIA_CACHE_TTL_MS */
	int state_lock;
};

#endif
