/* aletheia: content hashing with xxh3-128; hashes travel as 32 lowercase hex digits. */
#ifndef ALETHEIA_HASH_H
#define ALETHEIA_HASH_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"

#define AL_HASH_HEX_LEN 32

typedef struct al_hasher al_hasher;

int al_hasher_new(al_hasher **out);
void al_hasher_update(al_hasher *h, const void *data, size_t len);
/* Writes the canonical (big-endian) digest as hex into hex[AL_HASH_HEX_LEN + 1]. */
void al_hasher_final(char *hex, al_hasher *h);
void al_hasher_free(al_hasher *h);

/* One-shot over a buffer. */
void al_hash_buffer(char *hex, const void *data, size_t len);
/* Hashes the whole of an open fd from offset 0 (pread, so the fd's offset is unchanged);
 * *size gets the byte count. */
int al_hash_fd(char *hex, uint64_t *size, int fd);
int al_hash_is_valid(const char *hex);

#endif
