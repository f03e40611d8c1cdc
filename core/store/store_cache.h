/* aletheia: a read cache in front of a (remote) metastore: documents and listings are kept for
 * a short time, a listing also answers for each document in it, and every write through it
 * invalidates what it touches at once. */
#ifndef ALETHEIA_STORE_CACHE_H
#define ALETHEIA_STORE_CACHE_H

#include "core/store/store.h"

/* Wraps inner (taken over). ttl_ms: how long an answer may be reused; changes made by other
 * mounts become visible within it.
 * Waits (README "Firestore"): a thread that answers a file operation (not marked background,
 * core/util.h) gets each request to the backend bounded by the foreground wait, retries
 * included; when the backend is unreachable it then answers from the last known copy however
 * old: documents and listings it read, with the writes made through it applied, and the
 * collections below a document it created (create-only) and never listed, which hold what was
 * written through it. Without a copy: AL_EIO. While unreachable such threads ask the backend
 * again at most every 5 s and otherwise answer at once; background threads always ask, with
 * the HTTP client's own timeouts. */
int al_store_cache_new(al_store_backend **out, al_store_backend *inner, unsigned ttl_ms);
/* While the backend is unreachable (its last request failed with AL_EIO or AL_EAGAIN): when
 * that began (wall clock, µs), with a line for .aletheia/status in buf ("TIME (N answers from
 * the last known copies since the mount)"); 0 and "" while it answers, or when b is not a read
 * cache. */
int64_t al_store_cache_offline(char *buf, size_t cap, al_store_backend *b);
/* Tells the read cache that the backend applied these writes although the commit through it
 * failed (its answer was lost, and reading back showed them: store_wb.h), and that the backend
 * answers: its copies and create marks become what they would have after a successful commit.
 * Nothing when b is not a read cache. */
void al_store_cache_applied(al_store_backend *b, const al_write *writes, size_t count);
/* The wrapped backend (borrowed), e.g. to ask a write-behind layer for its pending count. */
al_store_backend *al_store_cache_inner(al_store_backend *b);
/* Added for tree walks (find, ls -R, du), called before listing doc/collection_id: when that
 * listing is not cached, and another document of doc's collection missed its listing of
 * collection_id within the TTL (so a walk is under way), lists collection_id of every document
 * in doc's collection (e.g. the metrics of all runs of an experiment) with one group query of
 * the backend under their parent document, and caches each as a complete listing for the TTL
 * (empty for a document without one): the per-document listings and gets that follow cost no
 * request. The first miss only takes note (one run looked at costs one listing, not all the
 * experiment's pages); at most one query per collection and collection_id within the TTL.
 * 0 without doing anything when b is not a read cache or its backend has no group query
 * (list_group); an error of the query is returned (nothing is cached) and may be ignored: the
 * plain listing still works. */
int al_store_cache_prefetch(al_store_backend *b, const char *doc, const char *collection_id);

#endif
