/* aletheia: reading objects named by URL (imported datasets). PLACEHOLDER until the import
 * work lands: every call fails. */
#include <stdlib.h>
#include "aletheia/fetch.h"

struct al_fetcher { int unused; };

int al_fetcher_new(al_fetcher **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : al_error_set(AL_ENOMEM, "out of memory");
}

void al_fetcher_free(al_fetcher *f) { free(f); }

int al_fetcher_stat(uint64_t *size_out, char **etag_out, al_fetcher *f, const char *url)
{
	(void)f;
	*size_out = 0;
	if (etag_out)
		*etag_out = NULL;
	return al_error_set(AL_EIO, "cannot read %s: URL fetching is not built yet", url);
}

int al_fetcher_fetch(al_fetcher *f, const char *url, uint64_t off, uint64_t len, int fd, int *whole)
{
	(void)f; (void)off; (void)len; (void)fd;
	*whole = 0;
	return al_error_set(AL_EIO, "cannot read %s: URL fetching is not built yet", url);
}

int al_fetcher_stream(al_fetcher *f, const char *url, al_fetcher_sink_fn sink, void *ctx)
{
	(void)f; (void)sink; (void)ctx;
	return al_error_set(AL_EIO, "cannot read %s: URL fetching is not built yet", url);
}
