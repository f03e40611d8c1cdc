/* aletheia: the backends a mount runs on, built from its --store and --blobs URIs: the metastore
 * with its decorators (write-behind over a read cache, for a remote one), the metric series, the
 * blob store, the local blob cache and the fetcher of imported files (README "How it is built").
 * The tree receives a stack and never knows which backends it holds. */
#ifndef ALETHEIA_STACK_H
#define ALETHEIA_STACK_H

#include <stdint.h>
#include "blobs.h"
#include "cache.h"
#include "fetch.h"
#include "series.h"
#include "store.h"

#define AL_STACK_OPTIONS_VERSION 1
typedef struct al_stack_options {
	unsigned version;
	const char *store_uri;    /* "local:DIR", "firestore:PROJECT" */
	const char *blobs_uri;    /* "file:///DIR", "s3://…", "gs://…" */
	const char *cache_dir;
	uint64_t cache_size;      /* 0: unbounded */
} al_stack_options;
#define AL_STACK_OPTIONS_INIT {AL_STACK_OPTIONS_VERSION, NULL, NULL, NULL, 0}

/* Built by al_stack_open, read by its users, freed by al_stack_free. */
typedef struct al_stack {
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
} al_stack;

int al_stack_open(al_stack **out, const al_stack_options *opts);
/* Delivers pending writes (bounded: README "Firestore") and closes everything. */
void al_stack_free(al_stack *s);
/* Undelivered writes: journaled metric points and write-behind documents. */
uint64_t al_stack_pending(const al_stack *s);

#endif
