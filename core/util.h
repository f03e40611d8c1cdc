/* aletheia: small helpers shared inside the project (not public API; after curl's Curl_ prefix,
 * internal cross-module functions are al__*). */
#ifndef ALETHEIA_UTIL_H
#define ALETHEIA_UTIL_H

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

#endif
