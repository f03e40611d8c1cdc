/* aletheia: a read cache in front of a (remote) metastore: documents and listings are kept for
 * a short time, a listing also answers for each document in it, and every write through it
 * invalidates what it touches at once. */
#ifndef ALETHEIA_STORE_CACHE_H
#define ALETHEIA_STORE_CACHE_H

#include "store.h"

/* Wraps inner (taken over). ttl_ms: how long an answer may be reused; changes made by other
 * mounts become visible within it. */
int al_store_cache_new(al_store_backend **out, al_store_backend *inner, unsigned ttl_ms);
/* The wrapped backend (borrowed), e.g. to ask a write-behind layer for its pending count. */
al_store_backend *al_store_cache_inner(al_store_backend *b);

#endif
