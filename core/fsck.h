/* aletheia: fsck: checks every blob that a record of the metastore refers to (dataset files, run
 * and experiment artifacts, output.log) and reports the damaged or missing ones with the mount
 * paths of the files that use them (README "The command line"). Run a blob at a time, so the
 * report streams through the control file .aletheia/fsck as it is made. */
#ifndef ALETHEIA_FSCK_H
#define ALETHEIA_FSCK_H

#include "core/blobs/blobs.h"
#include "core/buf.h"
#include "aletheia/cache.h"
#include "aletheia/common.h"
#include "aletheia/fetch.h"
#include "core/store/store.h"

/* Remote objects (S3, GCS, imported URLs) are downloaded and hashed, not only sized. */
#define AL_FSCK_DOWNLOAD 1u

typedef struct al_fsck al_fsck;

#define AL_FSCK_OPTIONS_VERSION 1
typedef struct al_fsck_options {
	unsigned version;         /* AL_FSCK_OPTIONS_VERSION */
	al_store_backend *store;
	al_blobs_backend *blobs;
	al_cache *cache;          /* cached copies of remote blobs are hashed too; may be NULL */
	al_fetcher *fetcher;      /* for imported files; may be NULL (they are then not checked) */
	const char *mountpoint;   /* prefix of the paths reported */
	const char *tmp_dir;      /* downloads go to unnamed temp files there */
	unsigned flags;           /* AL_FSCK_* */
} al_fsck_options;

/* The options are copied; their objects must outlive the check. */
int al_fsck_new(al_fsck **out, const al_fsck_options *opts);
/* Appends the next lines of the report to out, checking blobs (the records are listed first)
 * until there is something to say: a blob that is not right, a progress line after 2 s without
 * one, or the summary, after which *done = 1. The report:
 *   damaged HASH: WHY        (also "missing HASH: WHY" and "unchecked HASH: WHY"), then the
 *     MOUNT/PATH             files that use the blob, one a line, indented by two spaces
 *   progress: N of T blobs checked, B bytes
 *   fsck: N blobs checked, B bytes, D damaged (M missing), U not checked
 * ("damaged" counts the missing ones too). */
int al_fsck_step(int *done, al_fsck *k, al_buf *out);
void al_fsck_free(al_fsck *k);

#endif
