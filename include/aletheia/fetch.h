/* aletheia: reading objects that live outside the blob store, named by URL (imported datasets):
 * http(s)://…, s3://BUCKET/KEY (SigV4, AWS_* environment) and gs://BUCKET/KEY (GCS JSON API,
 * Google credentials). Servers with and without Range support. */
#ifndef ALETHEIA_FETCH_H
#define ALETHEIA_FETCH_H

#include <stdint.h>
#include "common.h"

typedef struct al_fetcher al_fetcher;

int al_fetcher_new(al_fetcher **out);
void al_fetcher_free(al_fetcher *f);

/* The object's size and a version tag (ETag or GCS generation; *etag_out may be NULL when the
 * server gives none; caller frees). AL_ENOTFOUND when it does not exist. */
int al_fetcher_stat(uint64_t *size_out, char **etag_out, al_fetcher *f, const char *url);

/* Copies bytes [off, off+len) of the object into fd at offset off (pwrite). When the server
 * ignores Range and sends the whole object, the whole object is written at offset 0 instead and
 * *whole is set to 1 (else 0). Retries like al_http; AL_EIO after the last try. Thread-safe. */
int al_fetcher_fetch(al_fetcher *f, const char *url, uint64_t off, uint64_t len, int fd,
	int *whole);

/* Streams the whole object to sink (called with consecutive pieces; a non-zero return aborts
 * with that code). For hashing at import. The bytes are checked against the checksums the server
 * gives of the object, if any (S3: an ETag that is the MD5; GCS: crc32c and md5Hash; http(s):
 * Content-MD5, Digest, Repr-Digest, x-goog-hash with MD5, SHA-256 or CRC32C): bytes damaged on
 * the way are read again, up to 3 times in all, and before each new read the sink is called with
 * data NULL and len 0: it must forget what it was given. AL_EIO when no read matched. Without a
 * checksum from the server, the bytes are trusted as received (their length is checked). */
typedef int (*al_fetcher_sink_fn)(void *ctx, const void *data, size_t len);
int al_fetcher_stream(al_fetcher *f, const char *url, al_fetcher_sink_fn sink, void *ctx);

#endif
