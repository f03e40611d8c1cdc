/* aletheia: xxh3-128 content hashing (streaming, one-shot, whole fd) and XXH3-64 piece hashes
 * via libxxhash; digests travel as lowercase hex digits of the canonical big-endian form. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include "aletheia/hash.h"

#define HASH_FD_BLOCK (1u << 20)

struct al_hasher {
	XXH3_state_t *state;
};

static void canonical_hex(char *hex, XXH128_hash_t h)
{
	static const char digits[] = "0123456789abcdef";
	XXH128_canonical_t canon;
	XXH128_canonicalFromHash(&canon, h);
	for (size_t i = 0; i < sizeof(canon.digest); i++) {
		hex[2 * i] = digits[canon.digest[i] >> 4];
		hex[2 * i + 1] = digits[canon.digest[i] & 0xf];
	}
	hex[AL_HASH_HEX_LEN] = '\0';
}

int al_hasher_new(al_hasher **out)
{
	al_hasher *h = calloc(1, sizeof(*h));
	if (!h)
		return al_error_set(AL_ENOMEM, "out of memory for a hasher");
	h->state = XXH3_createState();
	if (!h->state) {
		free(h);
		return al_error_set(AL_ENOMEM, "out of memory for a hasher state");
	}
	XXH3_128bits_reset(h->state);
	*out = h;
	return 0;
}

void al_hasher_update(al_hasher *h, const void *data, size_t len)
{
	if (len)
		XXH3_128bits_update(h->state, data, len);
}

void al_hasher_final(char *hex, al_hasher *h)
{
	canonical_hex(hex, XXH3_128bits_digest(h->state));
}

void al_hasher_free(al_hasher *h)
{
	if (!h)
		return;
	XXH3_freeState(h->state);
	free(h);
}

void al_hash_buffer(char *hex, const void *data, size_t len)
{
	canonical_hex(hex, XXH3_128bits(data, len));
}

int al_hash_fd(char *hex, uint64_t *size, int fd)
{
	return al_hash_fd_pieces(hex, size, NULL, fd);
}

uint64_t al_hash64(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}

int al_hash64_fd(uint64_t *out, int fd, uint64_t off, uint64_t len)
{
	int rc = 0;
	XXH3_state_t *st = XXH3_createState();
	char *buf = malloc(HASH_FD_BLOCK);

	if (!st || !buf) {
		rc = al_error_set(AL_ENOMEM, "out of memory for a hash buffer");
		goto cleanup;
	}
	XXH3_64bits_reset(st);
	while (len) {
		ssize_t n = pread(fd, buf, len < HASH_FD_BLOCK ? (size_t)len : HASH_FD_BLOCK, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? al_error_set_errno(AL_EIO, errno, "cannot read file to hash it")
				: al_error_set(AL_EIO, "file to hash is shorter than expected");
			goto cleanup;
		}
		XXH3_64bits_update(st, buf, (size_t)n);
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	*out = XXH3_64bits_digest(st);
cleanup:
	if (st)
		XXH3_freeState(st);
	free(buf);
	return rc;
}

uint64_t al_pieces_size_for(uint64_t blob_size)
{
	uint64_t p = AL_PIECE_MIN;
	while ((blob_size + p - 1) / p > AL_PIECES_MAX)
		p <<= 1;
	return p;
}

void al_pieces_clear(al_pieces *p)
{
	if (!p)
		return;
	free(p->hash);
	p->hash = NULL;
	p->count = 0;
	p->size = 0;
}

/* Lock-step over the file: the whole-blob hash and, at each piece boundary, a piece's hash. */
int al_hash_fd_pieces(char *hex, uint64_t *size, al_pieces *pieces, int fd)
{
	int rc = 0;
	al_hasher *h = NULL;
	XXH3_state_t *ps = NULL;
	uint64_t off = 0, expect = 0, psize = 0, in_piece = 0;
	uint32_t count = 0, done = 0;
	char *buf = malloc(HASH_FD_BLOCK);
	struct stat st;

	if (pieces)
		memset(pieces, 0, sizeof(*pieces));
	if (!buf) {
		rc = al_error_set(AL_ENOMEM, "out of memory for a hash buffer");
		goto cleanup;
	}
	if ((rc = al_hasher_new(&h)) != 0)
		goto cleanup;
	if (pieces) {
		if (fstat(fd, &st) != 0) {
			rc = al_error_set_errno(AL_EIO, errno, "cannot stat file to hash it");
			goto cleanup;
		}
		expect = (uint64_t)st.st_size;
		psize = al_pieces_size_for(expect);
		count = (uint32_t)((expect + psize - 1) / psize);
		if (count && (!(pieces->hash = calloc(count, sizeof(uint64_t))) ||
		    !(ps = XXH3_createState()))) {
			rc = al_error_set(AL_ENOMEM, "out of memory for piece hashes");
			goto cleanup;
		}
		if (ps)
			XXH3_64bits_reset(ps);
	}
	for (;;) {
		ssize_t n = pread(fd, buf, HASH_FD_BLOCK, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = al_error_set_errno(AL_EIO, errno, "cannot read file to hash it");
			goto cleanup;
		}
		if (n == 0)
			break;
		al_hasher_update(h, buf, (size_t)n);
		for (size_t used = 0; ps && used < (size_t)n;) {
			size_t take = (size_t)n - used;
			if (take > psize - in_piece)
				take = (size_t)(psize - in_piece);
			XXH3_64bits_update(ps, buf + used, take);
			used += take;
			in_piece += take;
			if (in_piece == psize || off + used == expect) {
				if (done < count)
					pieces->hash[done] = XXH3_64bits_digest(ps);
				done++;
				in_piece = 0;
				XXH3_64bits_reset(ps);
			}
		}
		off += (uint64_t)n;
	}
	al_hasher_final(hex, h);
	if (size)
		*size = off;
	if (pieces && off == expect && done == count) {
		pieces->size = psize;
		pieces->count = count;
	} else {
		al_pieces_clear(pieces);    /* it changed while read: the whole-file hash stands alone */
	}
cleanup:
	if (rc)
		al_pieces_clear(pieces);
	if (ps)
		XXH3_freeState(ps);
	al_hasher_free(h);
	free(buf);
	return rc;
}

char *al_pieces_format(const al_pieces *p)
{
	static const char digits[] = "0123456789abcdef";
	char *out = malloc((size_t)p->count * 16 + 1), *o = out;
	if (!out)
		return NULL;
	for (uint32_t i = 0; i < p->count; i++) {
		XXH64_canonical_t canon;
		XXH64_canonicalFromHash(&canon, p->hash[i]);
		for (size_t k = 0; k < sizeof(canon.digest); k++) {
			*o++ = digits[canon.digest[k] >> 4];
			*o++ = digits[canon.digest[k] & 0xf];
		}
	}
	*o = '\0';
	return out;
}

static int hexdigit(char ch)
{
	return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

int al_pieces_parse(al_pieces *out, uint64_t piece_size, uint64_t blob_size, const char *text)
{
	uint64_t count;
	memset(out, 0, sizeof(*out));
	if (piece_size < AL_PIECE_MIN || (piece_size & (piece_size - 1)) || !text)
		return al_error_set(AL_EINVAL, "bad piece size %llu", (unsigned long long)piece_size);
	count = (blob_size + piece_size - 1) / piece_size;
	if (count > UINT32_MAX || strlen(text) != count * 16)
		return al_error_set(AL_EINVAL, "%zu hex digits of piece hashes for %llu pieces",
			strlen(text), (unsigned long long)count);
	if (count && !(out->hash = malloc(count * sizeof(uint64_t))))
		return al_error_set(AL_ENOMEM, "out of memory for piece hashes");
	for (uint64_t i = 0; i < count; i++) {
		XXH64_canonical_t canon;
		for (size_t k = 0; k < sizeof(canon.digest); k++) {
			int hi = hexdigit(text[i * 16 + 2 * k]), lo = hexdigit(text[i * 16 + 2 * k + 1]);
			if (hi < 0 || lo < 0) {
				al_pieces_clear(out);
				return al_error_set(AL_EINVAL, "piece hashes are not lowercase hex");
			}
			canon.digest[k] = (unsigned char)(hi << 4 | lo);
		}
		out->hash[i] = XXH64_hashFromCanonical(&canon);
	}
	out->size = piece_size;
	out->count = (uint32_t)count;
	return 0;
}

int al_hash_is_valid(const char *hex)
{
	size_t i;
	if (!hex)
		return 0;
	for (i = 0; i < AL_HASH_HEX_LEN; i++) {
		char ch = hex[i];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
			return 0;
	}
	return hex[i] == '\0';
}
