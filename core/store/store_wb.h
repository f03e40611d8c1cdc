/* aletheia: durable write-behind in front of a remote metastore. Accepted writes go to a local
 * journal and an in-memory overlay at once; a flusher delivers them in order, in batches. */
#ifndef ALETHEIA_STORE_WB_H
#define ALETHEIA_STORE_WB_H

#include "core/store/store.h"

/* Wraps inner (taken over: freed with the wrapper). Replays journal_dir first, so writes a
 * crash left undelivered are delivered again (each write is idempotent: sets, merges, deletes).
 * Create-only writes (AL_PRE_MISSING) go straight through, after everything queued before them:
 * only the backend can tell two mounts' creations apart. When such a commit's outcome is unknown
 * (no answer, or AL_EEXISTS after the HTTP client sent it again) its documents are read back from
 * the backend: there with the create's timestamps (its creation time: a tag no other mount
 * writes) it succeeded; there otherwise, AL_EEXISTS; not there, it is sent once more; AL_EIO
 * saying so only when it cannot be known. Every write passes al_write_check
 * before it is journaled. A batch the backend refuses when it is delivered (any error but
 * unreachable, busy or unauthorised) is dropped alone, reported in last_error and on stderr
 * with its path, and taken out of the overlay, whose entries are rebuilt from what is still
 * queued. */
int al_store_wb_new(al_store_backend **out, al_store_backend *inner, const char *journal_dir,
	unsigned interval_ms);
/* Writes accepted but not yet delivered; 0 for a backend that is not write-behind. */
uint64_t al_store_wb_pending(al_store_backend *b);
/* The last delivery error ("" if none) into buf. */
void al_store_wb_last_error(char *buf, size_t cap, al_store_backend *b);
/* Delivers everything queued now; AL_EIO if the backend stays unreachable. */
int al_store_wb_flush(al_store_backend *b);

#endif
