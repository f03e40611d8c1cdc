/* aletheia: turns --store and --blobs URIs into the stack of backends a mount runs on (stack.h):
 * which decorators wrap a remote metastore, and where the cache fetches the blobs it lacks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "aletheia/common.h"
#include "core/stack_internal.h"
#include "core/store/store_cache.h"
#include "core/store/store_wb.h"
#include "util.h"

/* The cache's origin: a range of a blob from the blob store, or of an imported file from its
 * own URL. Called by the cache's readers and read-ahead workers at once. */
static int fetch_from_origin(void *ctx, const char *hash, const char *source, int fd, uint64_t off,
	uint64_t len, int *whole)
{
	al_stack *s = ctx;
	*whole = 0;
	if (source)
		return al_fetcher_fetch(s->fetcher, source, off, len, fd, whole);
	return s->blobs->fetch(s->blobs, hash, off, len, fd, off);
}

/* For a remote metastore: write() and close() never wait for the network, and reads are answered
 * for a short while from memory (ALETHEIA_CACHE_TTL_MS, default 1000). The overlay of undelivered
 * writes sits on top of the read cache, so it merges onto cached (or, while unreachable, stale)
 * documents and never onto nothing. */
static int wrap_remote(al_stack *s)
{
	const char *ttl = getenv("ALETHEIA_CACHE_TTL_MS"), *wait = getenv("ALETHEIA_NETWORK_WAIT_MS");
	char *wbdir = NULL;
	al_store_backend *cached = NULL, *inner = s->store;
	int rc;

	/* A file operation waits for the metastore at most this long (per request, retries
	 * included), then answers from the last known copy (README "Firestore"). */
	if (wait && *wait)
		al__foreground_wait_set((unsigned)atoi(wait));
	s->store = NULL;
	if ((rc = al_store_cache_new(&cached, inner, ttl ? (unsigned)atoi(ttl) : 1000))) {
		al_store_free(inner);
		return rc;
	}
	if (asprintf(&wbdir, "%s/writes", s->state_dir) < 0) {
		al_store_free(cached);
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	rc = al_store_wb_new(&s->store, cached, wbdir, 1000);
	free(wbdir);
	if (rc) {
		al_store_free(cached);
		return rc;
	}
	s->wb = s->store;
	s->series_store = cached;
	s->attr_ttl_us = (ttl ? atoll(ttl) : 1000) * 1000;
	return 0;
}

int al_stack_open(al_stack **out, const al_stack_options *opts)
{
	al_stack *s = NULL;
	char *journal = NULL;
	int rc, local;

	*out = NULL;
	if (!opts || opts->version != AL_STACK_OPTIONS_VERSION)
		return al_error_set(AL_EINVAL, "al_stack_options version %u, expected %u",
			opts ? opts->version : 0, AL_STACK_OPTIONS_VERSION);
	if (!(s = calloc(1, sizeof(*s))))
		return al_error_set(AL_ENOMEM, "out of memory");
	s->state_lock = -1;
	s->attr_ttl_us = INT64_MAX;
	local = strncmp(opts->store_uri, "local:", 6) == 0;
	s->store_uri = strdup(opts->store_uri);
	s->blobs_uri = strdup(opts->blobs_uri);
	s->cache_dir = strdup(opts->cache_dir);
	if (local)
		s->state_dir = strdup(opts->store_uri + 6);
	else if (asprintf(&s->state_dir, "%s/state", opts->cache_dir) < 0)
		s->state_dir = NULL;
	if (!s->store_uri || !s->blobs_uri || !s->cache_dir || !s->state_dir ||
	    asprintf(&journal, "%s/journal", s->state_dir) < 0) {
		journal = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = al__mkdir_p(opts->cache_dir, 0700)))
		goto fail;
	/* A local store's own lock covers the folder it lives in. */
	if (!local && ((rc = al__mkdir_p(s->state_dir, 0700)) ||
	    (rc = al__lock_dir(&s->state_lock, s->state_dir, "cache folder"))))
		goto fail;
	if ((rc = al_store_open(&s->store, opts->store_uri)))
		goto fail;
	s->backend = s->store->name;
	if (!local && (rc = wrap_remote(s)))
		goto fail;
	if ((rc = al_blobs_open(&s->blobs, opts->blobs_uri)) ||
	    (rc = al_cache_open(&s->cache, opts->cache_dir, opts->cache_size)) ||
	    (rc = al_fetcher_new(&s->fetcher)))
		goto fail;
	al_cache_set_fetcher(s->cache, fetch_from_origin, s);
	if ((rc = al_series_set_open(&s->series, s->series_store ? s->series_store : s->store,
		journal, 1000)))
		goto fail;
	if (s->attr_ttl_us != INT64_MAX)   /* other mounts append to the same metrics */
		al_series_set_ttl(s->series, (unsigned)(s->attr_ttl_us / 1000));
	free(journal);
	*out = s;
	return 0;
fail:
	free(journal);
	al_stack_free(s);
	return rc;
}

uint64_t al_stack_pending(const al_stack *s)
{
	return al_series_pending(s->series) + al_store_wb_pending(s->wb);
}

void al_stack_free(al_stack *s)
{
	if (!s)
		return;
	/* The flushers' requests in flight end now; the final flushes below are bounded like any
	 * file operation's, and what they cannot deliver stays journaled (README "Firestore"). */
	al__shutdown_begin();
	al_series_set_free(s->series);
	al_cache_free(s->cache);    /* joins its fetch workers before the fetchers go */
	al_fetcher_free(s->fetcher);
	if (s->blobs)
		al_blobs_free(s->blobs);
	if (s->store)
		al_store_free(s->store);
	free(s->store_uri);
	free(s->blobs_uri);
	free(s->cache_dir);
	free(s->state_dir);
	if (s->state_lock >= 0)
		close(s->state_lock);
	free(s);
}
