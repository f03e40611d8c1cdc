/* aletheia: pieces the blob store backends share (not public API). */
#ifndef ALETHEIA_BLOBS_INTERNAL_H
#define ALETHEIA_BLOBS_INTERNAL_H

#include "core/blobs/blobs.h"

/* 0, or AL_EINVAL with a message when hash is not 32 lowercase hex digits. */
int al__blobs_check_hash(const char *hash);
/* The object key of a blob in a bucket: "<prefix>/<first two hex digits>/<hash>" (no leading
 * '/' when prefix is ""). NULL when out of memory. */
char *al__blobs_object_key(const char *prefix, const char *hash);
/* local_path of remote stores: they have no local file. */
int al__blobs_no_local_path(char **out, al_blobs_backend *b, const char *hash);
/* exists() of a backend, from its stat(): present unless AL_ENOTFOUND, which is no error. */
int al__blobs_exists(int *out, al_blobs_backend *b, const char *hash);
/* 1 when S3's ETag of an object is a checksum of its bytes, as AWS documents it: the MD5 of a
 * single-part upload (32 hex digits, quoted), the MD5 of the parts' MD5s of a multipart one
 * ("…-N"); except for objects encrypted with SSE-KMS or SSE-C (sse, sse_c: the answer's
 * x-amz-server-side-encryption and x-amz-server-side-encryption-customer-algorithm, or NULL). */
int al__s3_etag_is_checksum(const char *sse, const char *sse_c);
/* Transfers of the bucket stores and of imported URLs (README "Object storage"): an attempt
 * that moves no byte for this long is stalled, given up and retried; after this many stalled
 * attempts the call fails (so a read from a server that stops answering ends within about
 * 3 × 15 s). */
#define AL__BLOBS_STALL_MS 15000
/* Kept-alive connections of one blob store or URL fetcher: every fill shares them (reads, the
 * cache's read-ahead workers, its prefetch threads), so enough stay open for all of those at
 * once; past it a connection is closed after its request and the next one connects again. */
#define AL__BLOBS_MAX_IDLE 48
#define AL__BLOBS_MAX_STALLS 3
/* getenv, with an empty value read as unset. */
const char *al__env(const char *name);

#endif
