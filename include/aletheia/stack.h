/* aletheia: the backends a mount runs on, built from its --store and --blobs URIs (README "How
 * it is built"): the metastore with its decorators, the metric series, the blob store, the local
 * cache and the fetcher of imported files. cli/ builds one and gives it to the tree
 * (al_tree_options.stack), which never knows which backends it holds. */
#ifndef ALETHEIA_STACK_H
#define ALETHEIA_STACK_H

#include <stdint.h>
#include "common.h"

typedef struct al_stack al_stack;

#define AL_STACK_OPTIONS_VERSION 1
typedef struct al_stack_options {
	unsigned version;
	const char *store_uri;    /* "local:DIR", "firestore:PROJECT" */
	const char *blobs_uri;    /* "file:///DIR", "s3://…", "gs://…" */
	const char *cache_dir;
	uint64_t cache_size;      /* 0: unbounded */
} al_stack_options;
#define AL_STACK_OPTIONS_INIT {AL_STACK_OPTIONS_VERSION, NULL, NULL, NULL, 0}

int al_stack_open(al_stack **out, const al_stack_options *opts);
/* Delivers pending writes (bounded: README "Firestore") and closes everything; after the tree. */
void al_stack_free(al_stack *s);
/* Undelivered writes: journaled metric points and write-behind documents. */
uint64_t al_stack_pending(const al_stack *s);

#endif
