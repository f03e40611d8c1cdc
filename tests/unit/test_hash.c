/* aletheia unit tests: xxh3-128 hashing (known vectors via libxxhash, streaming, fds, validation). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#include "aletheia/hash.h"
#include "check.h"

static void reference_hex(char *hex, const void *data, size_t len)
{
	XXH128_canonical_t canon;
	XXH128_canonicalFromHash(&canon, XXH3_128bits(data, len));
	for (size_t i = 0; i < 16; i++)
		sprintf(hex + 2 * i, "%02x", canon.digest[i]);
}

int main(void)
{
	char hex[AL_HASH_HEX_LEN + 1], ref[AL_HASH_HEX_LEN + 1];
	al_hasher *h = NULL;

	/* Known vectors: computed by the library itself, and the published XXH3-128("") value. */
	al_hash_buffer(hex, "", 0);
	reference_hex(ref, "", 0);
	CHECK_EQ_STR(hex, ref);
	CHECK_EQ_STR(hex, "99aa06d3014798d86001c324468d497f");
	al_hash_buffer(hex, "abc", 3);
	reference_hex(ref, "abc", 3);
	CHECK_EQ_STR(hex, ref);
	CHECK_EQ_INT(strlen(hex), AL_HASH_HEX_LEN);
	CHECK(al_hash_is_valid(hex));

	/* Streaming in odd-sized pieces equals one-shot, across internal block boundaries. */
	size_t n = 3 * 1024 * 1024 + 17;
	unsigned char *buf = malloc(n);
	CHECK(buf != NULL);
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)(i * 2654435761u >> 13);
	al_hash_buffer(ref, buf, n);
	CHECK_OK(al_hasher_new(&h));
	size_t off = 0, piece = 1;
	while (off < n) {
		size_t len = piece < n - off ? piece : n - off;
		al_hasher_update(h, buf + off, len);
		off += len;
		piece = piece * 7 + 3;
		if (piece > 300000)
			piece = 5;
	}
	al_hasher_update(h, buf, 0);
	al_hasher_final(hex, h);
	al_hasher_free(h);
	CHECK_EQ_STR(hex, ref);
	al_hasher_free(NULL);

	/* al_hash_fd: whole file from 0 (more than one 1 MiB block), offset left unchanged. */
	char path[] = "/tmp/al-test-hash-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK_EQ_INT(write(fd, buf, n), (long long)n);
	CHECK_EQ_INT(lseek(fd, 100, SEEK_SET), 100);
	uint64_t size = 0;
	CHECK_OK(al_hash_fd(hex, &size, fd));
	CHECK_EQ_STR(hex, ref);
	CHECK_EQ_INT(size, n);
	CHECK_EQ_INT(lseek(fd, 0, SEEK_CUR), 100);
	CHECK_EQ_INT(ftruncate(fd, 0), 0);
	CHECK_OK(al_hash_fd(hex, &size, fd));
	CHECK_EQ_INT(size, 0);
	CHECK_EQ_STR(hex, "99aa06d3014798d86001c324468d497f");
	/* Piece hashes in the same pass: XXH3-64 of each aligned piece, the last one short. */
	{
		al_pieces p, q;
		char *text;
		CHECK_EQ_INT(pwrite(fd, buf, n, 0), (long long)n);
		CHECK_OK(al_hash_fd_pieces(hex, &size, &p, fd));
		CHECK_EQ_STR(hex, ref);
		CHECK_EQ_INT(size, n);
		CHECK_EQ_INT(p.size, AL_PIECE_MIN);
		CHECK_EQ_INT(p.count, (n + AL_PIECE_MIN - 1) / AL_PIECE_MIN);
		for (uint32_t i = 0; i < p.count; i++) {
			uint64_t off = i * AL_PIECE_MIN, len = n - off < AL_PIECE_MIN ? n - off : AL_PIECE_MIN;
			CHECK(p.hash[i] == XXH3_64bits(buf + off, len));
		}
		text = al_pieces_format(&p);
		CHECK(text && strlen(text) == p.count * 16);
		CHECK_OK(al_pieces_parse(&q, p.size, n, text));
		CHECK_EQ_INT(q.count, p.count);
		CHECK(q.hash && memcmp(q.hash, p.hash, p.count * sizeof(uint64_t)) == 0);
		al_pieces_clear(&q);
		CHECK(al_pieces_parse(&q, p.size, n + AL_PIECE_MIN, text) == AL_EINVAL);
		CHECK(al_pieces_parse(&q, p.size + 1, n, text) == AL_EINVAL);
		CHECK(al_pieces_parse(&q, 4096, n, text) == AL_EINVAL);
		text[3] = 'G';
		CHECK(al_pieces_parse(&q, p.size, n, text) == AL_EINVAL);
		CHECK(q.hash == NULL && q.count == 0);
		free(text);
		al_pieces_clear(&p);
		al_pieces_clear(&p);
		/* An empty file has no pieces; a huge one gets larger pieces, never more than the cap. */
		CHECK_EQ_INT(al_pieces_size_for(0), AL_PIECE_MIN);
		CHECK_EQ_INT(al_pieces_size_for(4ULL << 30), AL_PIECE_MIN);
		CHECK_EQ_INT(al_pieces_size_for((4ULL << 30) + 1), 2 * AL_PIECE_MIN);
		CHECK_EQ_INT(al_pieces_size_for(1ULL << 40), 64ULL << 20);
		CHECK_EQ_INT(al_hash64("abc", 3), XXH3_64bits("abc", 3));
	}
	CHECK_EQ_INT(ftruncate(fd, 0), 0);
	{
		al_pieces p;
		CHECK_OK(al_hash_fd_pieces(hex, &size, &p, fd));
		CHECK_EQ_INT(p.count, 0);
		CHECK(p.hash == NULL);
	}
	close(fd);
	unlink(path);
	CHECK(al_hash_fd(hex, &size, fd) == AL_EIO);    /* closed fd */
	free(buf);

	/* Validation. */
	CHECK(al_hash_is_valid("0123456789abcdef0123456789abcdef"));
	CHECK(!al_hash_is_valid("0123456789ABCDEF0123456789abcdef"));
	CHECK(!al_hash_is_valid("0123456789abcdef0123456789abcde"));
	CHECK(!al_hash_is_valid("0123456789abcdef0123456789abcdef0"));
	CHECK(!al_hash_is_valid("0123456789abcdef0123456789abcdeg"));
	CHECK(!al_hash_is_valid(""));
	CHECK(!al_hash_is_valid(NULL));
	CHECK_DONE();
}
