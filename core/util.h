/* aletheia: small helpers shared inside the project (not public API; after curl's Curl_ prefix,
 * internal cross-module functions are al__*). */
#ifndef ALETHEIA_UTIL_H
#define ALETHEIA_UTIL_H

#include <stdint.h>

/* mkdir; an existing folder is fine. */
int al__mkdir(const char *path, unsigned mode);
/* mkdir -p. */
int al__mkdir_p(const char *path, unsigned mode);
/* FNV-1a of a string, for in-memory hash tables. */
uint64_t al__str_hash(const char *s);

#endif
