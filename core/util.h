/* aletheia: small helpers shared inside the project (not public API; after curl's Curl_ prefix,
 * internal cross-module functions are al__*). */
#ifndef ALETHEIA_UTIL_H
#define ALETHEIA_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* mkdir; an existing folder is fine. */
int al__mkdir(const char *path, unsigned mode);
/* mkdir -p. */
int al__mkdir_p(const char *path, unsigned mode);
/* Takes an flock on DIR/lock for the process's lifetime (closing *fd_out releases it) and writes
 * our pid into it; AL_EBUSY naming the holder's pid when another process has it. what names the
 * folder in messages ("store", "cache folder"). */
int al__lock_dir(int *fd_out, const char *dir, const char *what);
/* FNV-1a of a string, for in-memory hash tables. */
uint64_t al__str_hash(const char *s);

/* An arena for many small pieces freed together (a render's cells, a listing's paths): blocks
 * doubling from 4 KiB to 1 MiB, so a small listing costs one small block and a big one few mapped
 * blocks, not a malloc per piece. Start with NULL; al__slab_alloc sets AL_ENOMEM on failure.
 * Pieces never move. */
typedef struct al__slab al__slab;
void *al__slab_alloc(al__slab **slabs, size_t n);
char *al__slab_dup(al__slab **slabs, const char *text, size_t len);
void al__slabs_free(al__slab *slabs);

/* Network waits of the calling thread (README "Firestore": what waits how long at most).
 * A thread marked background (the flushers) does work nobody waits for: it keeps the HTTP
 * client's long timeouts and retries. Any other thread answers a file operation, and the
 * metastore decorators bound its requests (al__wait_budget). */
void al__thread_set_background(int on);
int al__thread_background(void);
/* The bound for threads that answer file operations (ms; 2,500 unless set, e.g. from
 * ALETHEIA_NETWORK_WAIT_MS); al__foreground_wait() gives 0 on a background thread. */
void al__foreground_wait_set(unsigned ms);
unsigned al__foreground_wait(void);
/* The longest one HTTP request of this thread may take, retries and backoff included (ms; 0:
 * the client's own timeouts). Returns the previous value, to be put back after the call. */
long al__wait_budget_set(long ms);
long al__wait_budget(void);
/* The daemon is stopping: background requests in flight give up (within about a second) and
 * are not retried, so the flushers can be joined at once; what they held is delivered by the
 * final, bounded flush or stays journaled. Not undone. */
void al__shutdown_begin(void);
int al__shutting_down(void);
/* One file operation on the calling thread (README "Firestore": it never asks the metastore
 * for the same document twice): al__op_begin marks its start (a nested call keeps the outer
 * start) and returns what al__op_end puts back; al__op_start is that start (wall clock, µs; 0
 * outside an operation). The read cache reuses an answer asked for since then, however old. */
int64_t al__op_begin(void);
void al__op_end(int64_t outer);
int64_t al__op_start(void);
/* A monotonic clock in microseconds, for deadlines. */
int64_t al__mono_us(void);

#endif
