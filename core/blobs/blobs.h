/* aletheia: blob stores (local folder; later S3 and GCS) behind one versioned table.
 * Blobs are content-addressed: object "<prefix>/<first two hex digits>/<xxh3-128 hex>",
 * created only if absent, never overwritten. */
#ifndef ALETHEIA_BLOBS_H
#define ALETHEIA_BLOBS_H

#include <stdint.h>
#include <sys/types.h>
#include "aletheia/common.h"

/* 2: verify and stat were added. */
#define AL_BLOBS_BACKEND_VERSION 2

#define AL_BLOBS_PUT_MOVE 1u   /* put() may consume its source file */
#define AL_BLOBS_VERIFY_FULL 1u   /* verify() hashes the content even when it is known good (fsck) */

typedef struct al_blobs_backend al_blobs_backend;
struct al_blobs_backend {
	unsigned version;    /* AL_BLOBS_BACKEND_VERSION */
	const char *name;    /* "file", "s3", "gs" */
	/* Stores the file at src_path under hash unless present. 0 also when it already existed
	 * (a local store first verifies the present blob as verify() does, and stores the file
	 * afresh when that one is damaged). With AL_BLOBS_PUT_MOVE the caller hands src_path over:
	 * a backend on the same disk may rename it into place (src_path is then gone) instead of
	 * copying it. */
	int (*put)(al_blobs_backend *b, const char *hash, const char *src_path, uint64_t size,
		unsigned flags);
	/* Copies bytes [offset, offset+len) of the blob into dst_fd at dst_offset. */
	int (*fetch)(al_blobs_backend *b, const char *hash, uint64_t offset, uint64_t len,
		int dst_fd, uint64_t dst_offset);
	/* *out = 1 when the blob exists. */
	int (*exists)(int *out, al_blobs_backend *b, const char *hash);
	/* A local file holding the blob, to be read directly with no second copy (file:// only);
	 * AL_ENOTFOUND for remote stores or a missing blob. Caller frees. */
	int (*local_path)(char **out, al_blobs_backend *b, const char *hash);
	/* The blob's URI as recorded in documents ("file:///d/ab/ab12…", "s3://b/p/ab/ab12…"). */
	char *(*uri)(al_blobs_backend *b, const char *hash);
	void (*free)(al_blobs_backend *b);
	/* Added for verification (README "Durability"). Optional: NULL for stores without local
	 * files (S3, GCS; their reads are verified by the cache). Checks the local blob: its size
	 * against size always, its content against hash with AL_BLOBS_VERIFY_FULL or when the file
	 * changed (size, mtime) since it was last found good (hashed once, then trusted). 0 when
	 * good, and then *fd_out (when fd_out is not NULL) is a read-only fd on the file checked;
	 * AL_ENOTFOUND when absent; AL_EIO when damaged: the file is moved aside (so a put of that
	 * content stores it afresh) and the message says where. */
	int (*verify)(int *fd_out, al_blobs_backend *b, const char *hash, uint64_t size,
		unsigned flags);
	/* Added for fsck: *size_out = the stored object's size; AL_ENOTFOUND when absent. */
	int (*stat)(uint64_t *size_out, al_blobs_backend *b, const char *hash);
};

/* 0 when b is a table of this version with its required members set, else AL_EINVAL;
 * al_blobs_open checks what it makes. */
int al_blobs_backend_check(const al_blobs_backend *b);

/* "file:///DIR" (created if missing). */
int al_blobs_open(al_blobs_backend **out, const char *uri);
int al_blobs_file_new(al_blobs_backend **out, const char *dir);
/* "BUCKET[/PREFIX]": credentials, region and endpoint from the AWS_* environment variables
 * (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL: path-style requests to that server). */
int al_blobs_s3_new(al_blobs_backend **out, const char *bucket_and_prefix);
/* "BUCKET[/PREFIX]" on Google Cloud Storage (JSON API): STORAGE_EMULATOR_HOST ([http://]HOST:PORT)
 * sends plain requests to that server without credentials; otherwise storage.googleapis.com with
 * a token from Google's application-default credentials (al_auth). */
int al_blobs_gcs_new(al_blobs_backend **out, const char *bucket_and_prefix);
void al_blobs_free(al_blobs_backend *b);

#endif
