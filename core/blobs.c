/* aletheia: opening a blob store from its URI (file://, s3:// or gs://). */
#include <string.h>
#include "aletheia/blobs.h"

int al_blobs_open(al_blobs_backend **out, const char *uri)
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
