/* aletheia: xxh3-128 content hashing (streaming, one-shot, whole fd) via libxxhash;
 * digests travel as 32 lowercase hex digits of the canonical big-endian form. */
#include <errno.h>
#include <stdlib.h>
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
	int rc = 0;
	al_hasher *h = NULL;
	uint64_t off = 0;
	char *buf = malloc(HASH_FD_BLOCK);

	if (!buf) {
		rc = al_error_set(AL_ENOMEM, "out of memory for a hash buffer");
		goto cleanup;
	}
	if ((rc = al_hasher_new(&h)) != 0)
		goto cleanup;
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
		off += (uint64_t)n;
	}
	al_hasher_final(hex, h);
	if (size)
		*size = off;
cleanup:
	al_hasher_free(h);
	free(buf);
	return rc;
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
