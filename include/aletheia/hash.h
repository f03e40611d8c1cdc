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

/* ---- piece hashes: XXH3-64 of each aligned piece of a blob, recorded when it is stored, so a
 * reader of a blob streamed from object storage is served only ranges that were verified
 * (README "Object storage"). ---- */
#define AL_PIECE_MIN ((uint64_t)256 << 10)    /* the cache's chunk: one random read's worth */
#define AL_PIECES_MAX 16384u                  /* as 16 hex digits each: 256 KiB in a document */

typedef struct al_pieces {
	uint64_t size;      /* bytes per piece: a power of two >= AL_PIECE_MIN; the last may be short */
	uint32_t count;     /* 0: no list */
	uint64_t *hash;     /* XXH3-64 of each piece */
} al_pieces;

/* XXH3-64 of a buffer, and of len bytes of fd from off (AL_EIO when it is shorter). */
uint64_t al_hash64(const void *data, size_t len);
int al_hash64_fd(uint64_t *out, int fd, uint64_t off, uint64_t len);
/* The piece size for a blob of blob_size bytes: AL_PIECE_MIN, doubled until the blob has at most
 * AL_PIECES_MAX pieces. */
uint64_t al_pieces_size_for(uint64_t blob_size);
/* al_hash_fd, also filling *pieces (when not NULL) in the same pass; pieces->count is 0 when the
 * file changed size while it was read. Free with al_pieces_clear. */
int al_hash_fd_pieces(char *hex, uint64_t *size, al_pieces *pieces, int fd);
/* The hashes as text: 16 lowercase hex digits (big-endian) per piece. NULL when out of memory. */
char *al_pieces_format(const al_pieces *p);
/* Parses al_pieces_format's text for a blob of blob_size bytes in pieces of piece_size bytes;
 * AL_EINVAL when the piece size or the number of hashes does not fit the blob. */
int al_pieces_parse(al_pieces *out, uint64_t piece_size, uint64_t blob_size, const char *text);
void al_pieces_clear(al_pieces *p);

#endif
