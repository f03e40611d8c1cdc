/* aletheia: opening a blob store from its URI (file://, s3:// or gs://), and the pieces the
 * backends share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/blobs/blobs.h"
#include "aletheia/hash.h"
#include "core/blobs/blobs_internal.h"

int al__blobs_check_hash(const char *hash)
{
	if (!al_hash_is_valid(hash))
		return al_error_set(AL_EINVAL, "invalid blob hash \"%s\" (expected 32 lowercase hex digits)",
			hash ? hash : "(null)");
	return 0;
}

char *al__blobs_object_key(const char *prefix, const char *hash)
{
	char *k = NULL;
	if (asprintf(&k, "%s%s%.2s/%s", prefix, *prefix ? "/" : "", hash, hash) < 0)
		return NULL;
	return k;
}

int al__blobs_no_local_path(char **out, al_blobs_backend *b, const char *hash)
{
	(void)b;
	(void)hash;
	*out = NULL;
	return AL_ENOTFOUND;
}

int al__s3_etag_is_checksum(const char *sse, const char *sse_c)
{
	return !(sse && strncmp(sse, "aws:kms", 7) == 0) && !(sse_c && *sse_c);
}

const char *al__env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

int al_blobs_backend_check(const al_blobs_backend *b)
{
	if (!b)
		return al_error_set(AL_EINVAL, "no blob store backend");
	if (b->version != AL_BLOBS_BACKEND_VERSION)
		return al_error_set(AL_EINVAL, "blob store backend %s has table version %u; this aletheia "
			"needs %u", b->name ? b->name : "(unnamed)", b->version, AL_BLOBS_BACKEND_VERSION);
	/* verify is optional (stores without local files) */
	if (!b->name || !b->put || !b->fetch || !b->exists || !b->local_path || !b->uri || !b->free ||
	    !b->stat)
		return al_error_set(AL_EINVAL, "blob store backend %s lacks a required operation",
			b->name ? b->name : "(unnamed)");
	return 0;
}

static int open_backend(al_blobs_backend **out, const char *uri);

int al_blobs_open(al_blobs_backend **out, const char *uri)
{
	int rc = open_backend(out, uri);
	if (rc == 0 && (rc = al_blobs_backend_check(*out))) {
		al_blobs_free(*out);
		*out = NULL;
	}
	return rc;
}

static int open_backend(al_blobs_backend **out, const char *uri)
{
	*out = NULL;
	if (!uri || !*uri)
		return al_error_set(AL_EINVAL, "empty blob store URI; use file:///DIR, s3://BUCKET[/PREFIX] "
			"or gs://BUCKET[/PREFIX]");
	if (strncmp(uri, "file://", 7) == 0) {
		const char *dir = uri + 7;
		/* Only the empty authority (file:///abs/path) names a local folder. */
		if (dir[0] != '/' || dir[1] == '\0')
			return al_error_set(AL_EINVAL, "bad blob store URI \"%s\": a local folder is written "
				"file:///ABSOLUTE/DIR", uri);
		return al_blobs_file_new(out, dir);
	}
	if (strncmp(uri, "s3://", 5) == 0)
		return al_blobs_s3_new(out, uri + 5);
	if (strncmp(uri, "gs://", 5) == 0)
		return al_blobs_gcs_new(out, uri + 5);
	return al_error_set(AL_EINVAL, "unknown blob store URI \"%s\"; use file:///DIR, "
		"s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX]", uri);
}

void al_blobs_free(al_blobs_backend *b)
{
	if (b)
		b->free(b);
}

int al__blobs_exists(int *out, al_blobs_backend *b, const char *hash)
{
	uint64_t size;
	int rc = b->stat(&size, b, hash);
	*out = rc == 0;
	if (rc == AL_ENOTFOUND) {
		al_error_clear();
		rc = 0;
	}
	return rc;
}
