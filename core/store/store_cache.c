/* aletheia: the read-cache metastore decorator (after sshfs's cache.c): TTL-bound answers,
 * listings that fill the document cache, invalidation on every write through it, prefetch of a
 * sub-collection for all documents of a collection with one group query, and the bound on how
 * long a file operation waits for the backend, with the last known copies it then answers from. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/store/store_cache.h"
#include "core/doc/value.h"
#include "core/util.h"

#define BUCKETS 8192
#define MAX_ENTRIES 200000
#define RECENT 256      /* collections of the latest writes, for a prefetch that overlapped them */
/* While the backend is unreachable, threads that answer file operations try it again at most
 * this often; in between they answer from the last known copies at once (README "Firestore"). */
#define PROBE_US (5LL * 1000000)
/* Documents larger than this written through the cache are not kept as copies to fall back on
 * (metric chunks: the series keep their own points); their collection is then unknown until it
 * is listed again, never answered without them. */
#define KEEP_DOC_MAX ((size_t)64 << 10)

typedef struct entry {
	char *key;              /* a document path, "coll\x01from\x01to" for a listing, or
				 * "\x02coll\x01id" for a prefetch of the collections id below coll */
	int is_list;
	int mark;               /* prefetch marks: 1 one member's listing was missing, 2 queried */
	int missing;            /* a document known not to exist */
	al_doc *doc;
	al_doc_list *list;
	char *coll;             /* for listings: the collection, to invalidate by; for a mark 1:
				 * the member whose listing was missing */
	char *from, *to;        /* for listings: the range of ids (NULL: open). A listing without
				 * list: its collection got a document too large to keep, so
				 * nothing is known of it until it is listed again. */
	int64_t expires_us;     /* fresh until then (a TTL from the answer's arrival); an expired
				 * answer is still the last known one */
	int64_t known_us;       /* when the answer was true (fetched, or written through the cache) */
	int64_t sent_us;        /* when its request was sent (0: written here): an answer asked
				 * for during the current file operation serves all of it */
	char **peers;           /* the other documents fetched in the same (small) request */
	size_t npeers;
	struct entry *next;
} entry;

typedef struct cache {
	al_store_backend base;
	al_store_backend *inner;
	pthread_mutex_t lock;
	entry *table[BUCKETS];
	size_t count;
	int64_t ttl_us;
	uint64_t gen;           /* bumped by every write: answers read across a write are not kept */
	struct {
		uint64_t gen;   /* c->gen after the write */
		char *coll;     /* the written document's collection */
	} recent[RECENT];
	size_t recent_next;
	uint64_t recent_floor;  /* the newest gen whose record was overwritten */
	/* Reachability, for the bound on foreground waits (util.h al__foreground_wait). */
	int64_t offline_since_us;   /* wall clock of the first failure of an outage; 0: reachable */
	int64_t last_try_us;        /* monotonic: the last request sent while unreachable */
	uint64_t stale_answers;     /* answers given from an expired copy since the mount */
	char offline_error[256];
	int64_t latency_us;         /* how long requests take lately (the slowest recent one,
				     * forgotten by a quarter at each request) */
} cache;

/* A read cache is known by its own free function (a typed test, unlike its name). */
static void c_free(al_store_backend *b);

static al_doc *doc_copy(const al_doc *d)
{
	al_doc *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->path = strdup(d->path);
	c->fields = cJSON_Duplicate(d->fields, 1);
	c->create_us = d->create_us;
	c->update_us = d->update_us;
	if (!c->path || !c->fields) {
		al_doc_free(c);
		return NULL;
	}
	return c;
}

static al_doc_list *list_copy(const al_doc_list *l)
{
	al_doc_list *c = calloc(1, sizeof(*c));
	size_t i;
	if (!c)
		return NULL;
	c->docs = calloc(l->count + 1, sizeof(al_doc *));
	for (i = 0; c->docs && i < l->count; i++) {
		if (!(c->docs[i] = doc_copy(l->docs[i])))
			break;
		c->count++;
	}
	if (!c->docs || c->count != l->count) {
		al_doc_list_free(c);
		return NULL;
	}
	return c;
}

static int by_id(const void *a, const void *b)
{
	const al_doc *x = *(al_doc *const *)a, *y = *(al_doc *const *)b;
	return strcmp(al_doc_id(x->path), al_doc_id(y->path));
}

/* Cached listings are kept in id order (store.h's promise), so they can be searched. */
static void sort_by_id(al_doc_list *l)
{
	size_t i;
	for (i = 1; l && i < l->count; i++)
		if (by_id(&l->docs[i - 1], &l->docs[i]) > 0) {
			qsort(l->docs, l->count, sizeof(al_doc *), by_id);
			return;
		}
}

/* The index of the first document of sorted list l whose id is not below id. */
static size_t lower_bound(const al_doc_list *l, const char *id)
{
	size_t lo = 0, hi = l->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(al_doc_id(l->docs[mid]->path), id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The documents of sorted list l with ids in [from, to) (either may be NULL), copied. */
static al_doc_list *range_copy(const al_doc_list *l, const char *from, const char *to)
{
	al_doc_list part;
	size_t lo, hi;
	if (!l)
		return NULL;
	lo = from ? lower_bound(l, from) : 0;
	hi = to ? lower_bound(l, to) : l->count;
	part.docs = l->docs + lo;
	part.count = hi > lo ? hi - lo : 0;
	return list_copy(&part);
}

static void entry_free(entry *e)
{
	for (size_t i = 0; i < e->npeers; i++)
		free(e->peers[i]);
	free(e->peers);
	free(e->key);
	free(e->coll);
	free(e->from);
	free(e->to);
	al_doc_free(e->doc);
	al_doc_list_free(e->list);
	free(e);
}

static entry **slot(cache *c, const char *key)
{
	entry **p = &c->table[al__str_hash(key) % BUCKETS];
	while (*p && strcmp((*p)->key, key) != 0)
		p = &(*p)->next;
	return p;
}

static void drop_all(cache *c)
{
	size_t i;
	for (i = 0; i < BUCKETS; i++)
		while (c->table[i]) {
			entry *e = c->table[i];
			c->table[i] = e->next;
			entry_free(e);
		}
	c->count = 0;
}

/* Stores e under its key, replacing an older answer (c->lock held). */
static void put(cache *c, entry *e)
{
	entry **p = slot(c, e->key);
	if (*p) {
		entry *old = *p;
		e->next = old->next;
		*p = e;
		entry_free(old);
		return;
	}
	if (c->count >= MAX_ENTRIES)
		drop_all(c), p = slot(c, e->key);
	e->next = NULL;
	*p = e;
	c->count++;
}

static char *list_key(const char *coll, const char *from, const char *to)
{
	char *k = NULL;
	if (asprintf(&k, "%s\x01%s\x01%s", coll, from ? from : "", to ? to : "") < 0)
		return NULL;
	return k;
}

static char *parent_collection(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? strndup(path, (size_t)(s - path)) : strdup("");
}

static int id_vs_doc(const void *key, const void *d)
{
	return strcmp((const char *)key, al_doc_id((*(al_doc *const *)d)->path));
}

/* An answer still good: within its TTL, or asked for during the calling thread's current file
 * operation (util.h al__op_begin), which so never asks for the same document twice however long
 * its requests take. The TTL runs from the answer's arrival, not from its request: every answer
 * is then good for a whole TTL, so a slow backend costs no more requests than a fast one (counted
 * from the request, an answer slower than the TTL would be stale on arrival). The price: another
 * mount's change may show up to one request's latency after the TTL. */
static int fresh(const entry *e)
{
	int64_t op = al__op_start();
	return e->expires_us > al_now_us() || (op && e->sent_us && e->sent_us >= op);
}

/* Forgets that an entry is fresh (a write made it old): the next read asks the backend. */
static void make_old(entry *e)
{
	e->expires_us = 0;
	e->sent_us = 0;
}

/* A fresh complete listing of coll, or NULL (c->lock held). */
static entry *fresh_listing(cache *c, const char *coll)
{
	char *key = list_key(coll, NULL, NULL);
	entry **p = key ? slot(c, key) : NULL;
	free(key);
	return p && *p && (*p)->list && fresh(*p) ? *p : NULL;
}

/* A document answered from a fresh complete listing of its collection, which knows also the
 * documents that do not exist: 1 with *out set (NULL: missing), 0 when there is no listing
 * (c->lock held). */
static int from_listing(al_doc **out, cache *c, const char *path)
{
	char *coll = parent_collection(path);
	entry *e = coll ? fresh_listing(c, coll) : NULL;
	al_doc **hit;

	free(coll);
	*out = NULL;
	if (!e)
		return 0;
	hit = bsearch(al_doc_id(path), e->list->docs, e->list->count, sizeof(al_doc *), id_vs_doc);
	if (hit && strcmp((*hit)->path, path) == 0)
		*out = doc_copy(*hit);
	return hit ? (*out ? 1 : 0) : 1;
}

/* ---- reachability and the bound on waits -------------------------------------------- */

/* A request of this thread may go to the backend: always for background threads; for threads
 * that answer file operations, not while the backend is known to be unreachable, except for one
 * probe every PROBE_US (the caller then answers from the last known copies at once). */
static int may_try(cache *c)
{
	int64_t now = al__mono_us();
	int ok;
	if (!al__foreground_wait())
		return 1;
	pthread_mutex_lock(&c->lock);
	ok = !c->offline_since_us || now - c->last_try_us >= PROBE_US;
	if (ok && c->offline_since_us)
		c->last_try_us = now;
	pthread_mutex_unlock(&c->lock);
	return ok;
}

/* Bounds the backend calls of a thread that answers a file operation (util.h); returns the
 * budget to put back. */
static long bound_begin(void)
{
	long prev = al__wait_budget();
	unsigned fg = al__foreground_wait();
	if (fg && (!prev || (long)fg < prev))
		al__wait_budget_set((long)fg);
	return prev;
}

static void bound_end(long prev)
{
	al__wait_budget_set(prev);
}

static int unreachable(int rc)
{
	return rc == AL_EIO || rc == AL_EAGAIN;
}

/* What a backend call says about reachability: any answer means reachable. */
static void note(cache *c, int rc)
{
	if (rc == AL_ENOMEM)
		return;
	pthread_mutex_lock(&c->lock);
	if (unreachable(rc)) {
		if (!c->offline_since_us) {
			c->offline_since_us = al_now_us();
			fprintf(stderr, "aletheia: the metastore is unreachable; answering from the last "
				"known copies: %s\n", al_error_last());
		}
		c->last_try_us = al__mono_us();
		snprintf(c->offline_error, sizeof(c->offline_error), "%s", al_error_last());
	} else if (c->offline_since_us) {
		c->offline_since_us = 0;
		fprintf(stderr, "aletheia: the metastore is reachable again\n");
	}
	pthread_mutex_unlock(&c->lock);
}

/* Notes how long a request that answered took (t0: al__mono_us() when it was sent). */
static void note_latency(cache *c, int64_t t0)
{
	int64_t took = al__mono_us() - t0;
	pthread_mutex_lock(&c->lock);
	c->latency_us = took > c->latency_us * 3 / 4 ? took : c->latency_us * 3 / 4;
	pthread_mutex_unlock(&c->lock);
}

/* The error of a request not sent because the backend is unreachable (c->lock not held). */
static int offline_error(cache *c, const char *what)
{
	char when[48];
	int64_t since;
	char why[256];
	pthread_mutex_lock(&c->lock);
	since = c->offline_since_us;
	snprintf(why, sizeof(why), "%s", c->offline_error);
	pthread_mutex_unlock(&c->lock);
	al_time_format(when, since, 0);
	return al_error_set(AL_EIO, "the metastore is unreachable (since %s: %s), and this mount has "
		"no copy of %s", when, why, what);
}

/* The newest listing, however old, that covers coll's ids [from, to): that range's own or the
 * whole collection's (c->lock held). */
static entry *stale_listing(cache *c, const char *coll, const char *from, const char *to)
{
	char *k = list_key(coll, from, to), *whole = from || to ? list_key(coll, NULL, NULL) : NULL;
	entry **p = k ? slot(c, k) : NULL, **q = whole ? slot(c, whole) : NULL, *best = NULL;
	if (p && *p && (*p)->is_list)
		best = *p;
	if (q && *q && (*q)->is_list && (!best || (*q)->known_us > best->known_us))
		best = *q;
	free(k);
	free(whole);
	return best;
}

static char *created_key(const char *path)
{
	char *k = NULL;
	if (asprintf(&k, "\x03%s", path) < 0)
		return NULL;
	return k;
}

/* Whether a document this mount created (a create-only write through the cache) lies above
 * coll: a collection below it that this mount never listed holds what this mount wrote there,
 * as far as it knows (c->lock held). */
static int created_above(cache *c, const char *coll)
{
	char *k = created_key(coll), *q;
	int segs = 1, found = 0;
	if (!k)
		return 0;
	for (q = k + 1; *q && !found; q++) {
		if (*q != '/')
			continue;
		if (segs % 2 == 0) {
			*q = '\0';
			found = *slot(c, k) != NULL;
			*q = '/';
		}
		segs++;
	}
	free(k);
	return found;
}

/* The last known state of a document, however old: 1 with *out set (NULL when it was known
 * not to exist), 0 when nothing is known (c->lock held). The newer of its own entry and a
 * listing of its collection wins. */
static int stale_doc(al_doc **out, cache *c, const char *path)
{
	entry *d = *slot(c, path), *l;
	char *coll = parent_collection(path);
	al_doc **hit;
	int known = 1;

	*out = NULL;
	l = coll ? stale_listing(c, coll, NULL, NULL) : NULL;
	if (d && (d->is_list || d->mark))
		d = NULL;
	if (d && (!l || !l->list || d->known_us >= l->known_us)) {
		if (!d->missing && !(*out = doc_copy(d->doc)))
			known = 0;
	} else if (l && l->list) {
		hit = bsearch(al_doc_id(path), l->list->docs, l->list->count, sizeof(al_doc *),
			id_vs_doc);
		if (hit && strcmp((*hit)->path, path) == 0 && !(*out = doc_copy(*hit)))
			known = 0;
	} else
		known = !l && coll && created_above(c, coll);
	free(coll);
	return known;
}

/* Answers a document from the last known copy after the backend failed with rc (or, with rc 0,
 * was not asked): the copy, AL_ENOTFOUND when it was known missing, else the error. */
static int doc_fallback(al_doc **out, cache *c, const char *path, int rc)
{
	int known;
	pthread_mutex_lock(&c->lock);
	known = stale_doc(out, c, path);
	c->stale_answers += known;
	pthread_mutex_unlock(&c->lock);
	if (!known)
		return rc ? rc : offline_error(c, path);
	return *out ? 0 : al_error_set(AL_ENOTFOUND, "no document %s (as last known: the "
		"metastore is unreachable)", path);
}

/* The same for a listing: the newest copy covering the range, or an empty one below a
 * document this mount created. */
static int list_fallback(al_doc_list **out, cache *c, const char *coll, const char *from,
	const char *to, int rc)
{
	entry *l;
	int known = 1;
	pthread_mutex_lock(&c->lock);
	if ((l = stale_listing(c, coll, from, to)))
		known = (*out = range_copy(l->list, from, to)) != NULL || l->list;
	else if (created_above(c, coll))
		*out = calloc(1, sizeof(**out));
	else
		known = 0;
	c->stale_answers += known;
	pthread_mutex_unlock(&c->lock);
	if (!known)
		return rc ? rc : offline_error(c, coll);
	return *out ? 0 : al_error_set(AL_ENOMEM, "out of memory");
}

/* Roughly how many bytes of JSON a value takes, counting no further than limit. */
static size_t json_size(const cJSON *v, size_t limit)
{
	size_t n = 16 + (v->string ? strlen(v->string) : 0) + (v->valuestring ? strlen(v->valuestring) : 0);
	const cJSON *it;
	for (it = v->child; it && n <= limit; it = it->next)
		n += json_size(it, limit - n);
	return n;
}

/* Whether the cache holds path as found, small (a large document is not worth asking for on
 * speculation), and its answer will expire before limit (when one asked for now would), and it
 * is neither in want nor in extra. */
static int aging(cache *c, const char *path, const char *const *want, size_t nwant,
	char *const *extra, size_t n, int64_t limit)
{
	entry **p = slot(c, path);
	size_t i;
	for (i = 0; i < nwant; i++)
		if (!strcmp(want[i], path))
			return 0;
	for (i = 0; i < n; i++)
		if (!strcmp(extra[i], path))
			return 0;
	return *p && !(*p)->is_list && !(*p)->mark && !(*p)->missing && (*p)->doc &&
		(*p)->expires_us < limit && json_size((*p)->doc->fields, KEEP_DOC_MAX) <= KEEP_DOC_MAX;
}

/* Adds to extra (n so far, at most cap) the documents above path (its even-length prefixes: a
 * run's project, experiment and run) that the cache holds, and those fetched with path last time
 * that it still holds, unless just as fresh: asked for in the same request, they expire together. The kernel looks a path
 * up one folder at a time, each lookup a file operation of its own that needs one of these
 * documents; fetched one after the other at a slow backend's pace, the first would expire before
 * the last arrived and every walk would start over (README "Firestore"). c->lock held. */
static void stale_ancestors(cache *c, const char *path, const char *const *want, size_t nwant,
	char **extra, size_t *n, size_t cap)
{
	int64_t limit = al_now_us() + c->latency_us + c->ttl_us;
	entry **own = slot(c, path);
	const char *q;
	int segs = 1;
	size_t i;

	for (q = path; *q && *n < cap; q++) {
		char *prefix;
		if (*q != '/' || ++segs % 2 == 0)
			continue;   /* the prefix before an odd slash is a document path */
		if (!(prefix = strndup(path, (size_t)(q - path))))
			return;
		if (aging(c, prefix, want, nwant, extra, *n, limit))
			extra[(*n)++] = prefix;
		else
			free(prefix);
	}
	/* The other way down: a walk that starts over at the project after everything it read
	 * aged together asks for what it fetched with the project last time, at once. */
	for (i = 0; *own && i < (*own)->npeers && *n < cap; i++) {
		if (!aging(c, (*own)->peers[i], want, nwant, extra, *n, limit))
			continue;
		if (!(extra[*n] = strdup((*own)->peers[i])))
			return;
		(*n)++;
	}
}

#define EXTRA_MAX 16

/* Asks the backend for paths (m of them) in one request, with the documents above them that are
 * about to age (stale_ancestors) when the backend can take several at once, and keeps every
 * answer; got[i] gets paths[i]'s document or NULL when it does not exist. 0, or the request's
 * error (nothing kept). */
static int fetch(al_doc **got, cache *c, const char *const *paths, size_t m)
{
	char *extra[EXTRA_MAX];
	const char **all = NULL;
	al_doc **docs = NULL;
	size_t nx = 0, n, i;
	int64_t sent, t0, known;
	uint64_t g0;
	long prev;
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	g0 = c->gen;
	for (i = 0; c->inner->get_many && i < m; i++)
		stale_ancestors(c, paths[i], paths, m, extra, &nx, EXTRA_MAX);
	pthread_mutex_unlock(&c->lock);
	n = m + nx;
	all = calloc(n, sizeof(*all));
	docs = calloc(n, sizeof(*docs));
	if (!all || !docs) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < n; i++)
		all[i] = i < m ? paths[i] : extra[i - m];
	sent = al_now_us();
	t0 = al__mono_us();
	prev = bound_begin();
	if (n == 1 && (rc = c->inner->get(&docs[0], c->inner, all[0])) == AL_ENOTFOUND) {
		al_error_clear();
		rc = 0;
	} else if (n > 1)
		rc = al_store_get_many(docs, c->inner, all, n);
	bound_end(prev);
	note(c, rc);
	if (rc)
		goto cleanup;
	note_latency(c, t0);
	pthread_mutex_lock(&c->lock);
	known = al_now_us();
	for (i = 0; c->gen == g0 && i < n; i++) {
		entry *e, **p;
		/* A document too large to keep (a metric's chunk, read by a metric's reader one after
		 * another) is not copied: a reader of a 10,000,000-point metric would keep every
		 * chunk, gigabytes, for the TTL. An older copy goes too. */
		if (docs[i] && json_size(docs[i]->fields, KEEP_DOC_MAX) > KEEP_DOC_MAX) {
			if (*(p = slot(c, all[i])) && !(*p)->is_list) {
				entry *old = *p;
				*p = old->next;
				entry_free(old);
				c->count--;
			}
			continue;
		}
		e = calloc(1, sizeof(*e));
		if (!e || !(e->key = strdup(all[i])) || (docs[i] && !(e->doc = doc_copy(docs[i])))) {
			if (e)
				entry_free(e);
			continue;
		}
		e->missing = docs[i] == NULL;
		e->sent_us = sent;
		e->known_us = known;
		e->expires_us = known + c->ttl_us;
		if (n > 1 && n <= EXTRA_MAX + 1 && (e->peers = calloc(n - 1, sizeof(char *)))) {
			size_t k;
			for (k = 0; k < n; k++)
				if (k != i && (e->peers[e->npeers] = strdup(all[k])))
					e->npeers++;
		}
		put(c, e);
	}
	pthread_mutex_unlock(&c->lock);
	for (i = 0; i < m; i++) {
		got[i] = docs[i];
		docs[i] = NULL;
	}
cleanup:
	for (i = 0; docs && i < n; i++)
		al_doc_free(docs[i]);
	for (i = 0; i < nx; i++)
		free(extra[i]);
	free(all);
	free(docs);
	return rc;
}

static int c_get(al_doc **out, al_store_backend *b, const char *path)
{
	cache *c = (cache *)b;
	entry **p;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&c->lock);
	p = slot(c, path);
	if (*p && fresh(*p)) {
		int missing = (*p)->missing;
		if (!missing)
			*out = doc_copy((*p)->doc);
		pthread_mutex_unlock(&c->lock);
		if (missing)
			return al_error_set(AL_ENOTFOUND, "no document %s", path);
		return *out ? 0 : al_error_set(AL_ENOMEM, "out of memory");
	}
	if (from_listing(out, c, path)) {
		pthread_mutex_unlock(&c->lock);
		return *out ? 0 : al_error_set(AL_ENOTFOUND, "no document %s", path);
	}
	pthread_mutex_unlock(&c->lock);
	if (!may_try(c))
		return doc_fallback(out, c, path, 0);
	rc = fetch(out, c, &path, 1);
	/* Unreachable: an expired answer is better than none (stale-if-error). */
	if (unreachable(rc))
		return doc_fallback(out, c, path, rc);
	if (rc == 0 && !*out)
		rc = al_error_set(AL_ENOTFOUND, "no document %s", path);
	return rc;
}

/* Answers what the cache knows and asks the backend for the rest in one request; while the
 * backend is unreachable each missing one falls back on c_get (stale if error). */
static int c_get_many(al_doc **out, al_store_backend *b, const char *const *paths, size_t n)
{
	cache *c = (cache *)b;
	const char **miss = calloc(n, sizeof(*miss));
	size_t *where = calloc(n, sizeof(*where)), m = 0, i;
	al_doc **got = calloc(n, sizeof(*got));
	int rc = 0;

	if (!miss || !where || !got) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < n; i++) {
		entry **p = slot(c, paths[i]);
		out[i] = NULL;
		if (*p && fresh(*p)) {
			if (!(*p)->missing && !(out[i] = doc_copy((*p)->doc)))
				rc = al_error_set(AL_ENOMEM, "out of memory");
		} else if (!from_listing(&out[i], c, paths[i])) {
			miss[m] = paths[i];
			where[m++] = i;
		}
	}
	pthread_mutex_unlock(&c->lock);
	if (rc || m == 0)
		goto cleanup;
	rc = may_try(c) ? fetch(got, c, miss, m) : AL_EIO;
	if (unreachable(rc)) {
		/* each from its last known copy (the backend is not asked again for a while) */
		for (i = 0, rc = 0; i < m && rc == 0; i++)
			if ((rc = c_get(&out[where[i]], b, miss[i])) == AL_ENOTFOUND) {
				al_error_clear();
				rc = 0;
			}
		goto cleanup;
	}
	for (i = 0; rc == 0 && i < m; i++) {
		out[where[i]] = got[i];
		got[i] = NULL;
	}
cleanup:
	if (rc)
		for (i = 0; i < n; i++) {
			al_doc_free(out[i]);
			out[i] = NULL;
		}
	free(miss);
	free(where);
	free(got);
	return rc;
}

static int c_list(al_doc_list **out, al_store_backend *b, const char *coll, const char *from,
	const char *to)
{
	cache *c = (cache *)b;
	char *key = list_key(coll, from, to);
	entry **p, *e;
	uint64_t g0;
	int64_t sent, t0;
	size_t i;
	long prev;
	int rc;

	*out = NULL;
	if (!key)
		return al_error_set(AL_ENOMEM, "out of memory");
	pthread_mutex_lock(&c->lock);
	p = slot(c, key);
	if (*p && (*p)->list && fresh(*p)) {
		*out = list_copy((*p)->list);
		pthread_mutex_unlock(&c->lock);
		free(key);
		return *out ? 0 : al_error_set(AL_ENOMEM, "out of memory");
	}
	if ((from || to) && (e = fresh_listing(c, coll))) {
		/* A range of a collection listed whole: no request either. */
		*out = range_copy(e->list, from, to);
		pthread_mutex_unlock(&c->lock);
		free(key);
		return *out ? 0 : al_error_set(AL_ENOMEM, "out of memory");
	}
	g0 = c->gen;
	pthread_mutex_unlock(&c->lock);
	if (!may_try(c)) {
		free(key);
		return list_fallback(out, c, coll, from, to, 0);
	}
	sent = al_now_us();
	t0 = al__mono_us();
	prev = bound_begin();
	rc = c->inner->list(out, c->inner, coll, from, to);
	bound_end(prev);
	note(c, rc);
	if (rc) {
		free(key);
		/* stale-if-error, as for documents */
		return unreachable(rc) ? list_fallback(out, c, coll, from, to, rc) : rc;
	}
	note_latency(c, t0);
	pthread_mutex_lock(&c->lock);
	if (c->gen == g0) {
		int64_t known = al_now_us(), exp = known + c->ttl_us;
		if ((e = calloc(1, sizeof(*e)))) {
			e->key = key;
			key = NULL;
			e->is_list = 1;
			e->coll = strdup(coll);
			e->from = from ? strdup(from) : NULL;
			e->to = to ? strdup(to) : NULL;
			e->list = list_copy(*out);
			e->sent_us = sent;
			e->known_us = known;
			e->expires_us = exp;
			sort_by_id(e->list);
			if (e->list && e->coll && (!from || e->from) && (!to || e->to))
				put(c, e);
			else
				entry_free(e);
		}
		/* Attributes come from the listing: each document is answered without a request. */
		for (i = 0; i < (*out)->count; i++) {
			entry *d = calloc(1, sizeof(*d));
			if (!d || !(d->key = strdup((*out)->docs[i]->path)) || !(d->doc = doc_copy((*out)->docs[i]))) {
				if (d)
					entry_free(d);
				continue;
			}
			d->sent_us = sent;
			d->known_us = known;
			d->expires_us = exp;
			put(c, d);
		}
	}
	pthread_mutex_unlock(&c->lock);
	free(key);
	return 0;
}

static int c_list_collections(char ***out, size_t *count, al_store_backend *b, const char *doc)
{
	cache *c = (cache *)b;
	long prev;
	int rc;
	if (!may_try(c))
		return offline_error(c, "the collections below a document");
	prev = bound_begin();
	rc = c->inner->list_collections(out, count, c->inner, doc);
	bound_end(prev);
	note(c, rc);
	return rc;
}

/* Puts doc (taken; NULL: missing) under id in the sorted list l, or takes id out of it. */
static void list_patch(al_doc_list *l, const char *id, al_doc *doc)
{
	size_t at = lower_bound(l, id);
	int here = at < l->count && strcmp(al_doc_id(l->docs[at]->path), id) == 0;
	al_doc **grown;
	if (here) {
		al_doc_free(l->docs[at]);
		if (doc)
			l->docs[at] = doc;
		else
			memmove(l->docs + at, l->docs + at + 1, (--l->count - at) * sizeof(al_doc *));
		return;
	}
	if (!doc)
		return;
	if (!(grown = realloc(l->docs, (l->count + 2) * sizeof(al_doc *)))) {
		al_doc_free(doc);
		return;
	}
	l->docs = grown;
	memmove(l->docs + at + 1, l->docs + at, (l->count - at) * sizeof(al_doc *));
	l->docs[at] = doc;
	l->count++;
}

/* After a write through the cache (ok: it succeeded): its document and the listings of its
 * collection are no longer fresh, so the next read asks the backend (a read racing with the
 * write must not stay cached either). They stay as the copies to fall back on while the backend
 * is unreachable, with the write applied when it is known what the document became; a large
 * document is forgotten instead, and its collection marked unknown. A create-only write marks
 * its document as created here (created_above). c->lock held. */
static void written(cache *c, const al_write *w, int ok)
{
	char *coll = parent_collection(w->path), *ck;
	const char *id = al_doc_id(w->path);
	al_doc *now = NULL, *base = NULL;
	entry **p, *e, *whole = NULL;
	int known = 0, keep = 1;
	int64_t t = al_now_us();
	size_t i;

	if (ok && w->pre == AL_PRE_MISSING && (ck = created_key(w->path))) {
		if ((e = calloc(1, sizeof(*e)))) {
			e->key = ck;
			put(c, e);
		} else
			free(ck);
	}
	if (ok && w->op != AL_WRITE_DELETE)
		keep = !w->fields || json_size(w->fields, KEEP_DOC_MAX) <= KEEP_DOC_MAX;
	if (ok && keep) {
		if (w->op == AL_WRITE_DELETE) {
			known = 1;
		} else if (w->op == AL_WRITE_SET || stale_doc(&base, c, w->path)) {
			/* an update applies to what was known (and creates a missing document): only
			 * the fields, or keys of a map field, that it names */
			known = 1;
			now = base ? base : calloc(1, sizeof(*now));
			if (now && !base) {
				now->path = strdup(w->path);
				now->fields = cJSON_CreateObject();
				now->create_us = t;
			}
			if (now && now->fields && al_write_apply(now->fields, w) != 0) {
				cJSON_Delete(now->fields);
				now->fields = NULL;
			}
			if (now)
				now->update_us = t;
			if (!now || !now->path || !now->fields) {
				al_doc_free(now);
				now = NULL;
				known = 0;
			}
		}
	}
	p = slot(c, w->path);
	if (*p && !keep) {   /* too large to keep: forgotten */
		e = *p;
		*p = e->next;
		entry_free(e);
		c->count--;
	} else if (*p)
		make_old(*p);   /* the old copy stays, expired, unless replaced below */
	if (known && (e = calloc(1, sizeof(*e)))) {
		e->missing = now == NULL;
		e->known_us = t;   /* expires_us 0: never fresh, the next read asks the backend */
		if ((e->key = strdup(w->path)) && (e->missing || (e->doc = doc_copy(now))))
			put(c, e);
		else
			entry_free(e);
	}
	for (i = 0; coll && i < BUCKETS; i++) {
		entry **q = &c->table[i];
		while (*q) {
			e = *q;
			if (!e->is_list || strcmp(e->coll, coll) != 0) {
				q = &e->next;
				continue;
			}
			if (!keep) {
				*q = e->next;
				entry_free(e);
				c->count--;
				continue;
			}
			make_old(e);
			if (known && e->list && (!e->from || strcmp(id, e->from) >= 0) &&
			    (!e->to || strcmp(id, e->to) < 0)) {
				list_patch(e->list, id, now ? doc_copy(now) : NULL);
				e->known_us = t;
			}
			if (!e->from && !e->to)
				whole = e;
			q = &e->next;
		}
	}
	/* Too large to keep: nothing is known of the collection now, not even below a document
	 * created here (an empty answer would lose what was written). */
	if (!keep && coll && (e = calloc(1, sizeof(*e)))) {
		e->is_list = 1;
		e->known_us = t;
		if ((e->key = list_key(coll, NULL, NULL)) && (e->coll = strdup(coll)))
			put(c, e);
		else
			entry_free(e);
	}
	/* A collection never listed below a document created here: what was written is known. */
	if (known && !whole && coll && created_above(c, coll) && (e = calloc(1, sizeof(*e)))) {
		e->is_list = 1;
		e->known_us = t;
		if ((e->list = calloc(1, sizeof(*e->list))) && (e->key = list_key(coll, NULL, NULL)) &&
		    (e->coll = strdup(coll))) {
			if (now)
				list_patch(e->list, id, doc_copy(now));
			put(c, e);
		} else
			entry_free(e);
	}
	al_doc_free(now);
	free(coll);
}

/* Notes that a document of path's collection was written at c->gen (c->lock held). */
static void remember_write(cache *c, const char *path)
{
	size_t i = c->recent_next++ % RECENT;
	if (c->recent[i].coll && c->recent[i].gen > c->recent_floor)
		c->recent_floor = c->recent[i].gen;
	free(c->recent[i].coll);
	c->recent[i].coll = parent_collection(path);
	c->recent[i].gen = c->gen;
	if (!c->recent[i].coll)
		c->recent_floor = c->gen;   /* unknown: as if forgotten */
}

/* Whether coll may have been written since gen g0 (c->lock held); when the record of writes
 * since g0 is incomplete, every collection may have. */
static int written_since(cache *c, uint64_t g0, const char *coll)
{
	size_t i;
	if (c->gen == g0)
		return 0;
	if (c->recent_floor > g0)
		return 1;
	for (i = 0; i < RECENT; i++)
		if (c->recent[i].coll && c->recent[i].gen > g0 && strcmp(c->recent[i].coll, coll) == 0)
			return 1;
	return 0;
}

static int c_commit(al_store_backend *b, const al_write *writes, size_t count)
{
	cache *c = (cache *)b;
	size_t i;
	long prev;
	int rc;

	pthread_mutex_lock(&c->lock);
	c->gen++;
	pthread_mutex_unlock(&c->lock);
	/* Commits are always sent (creates need the backend's answer; the write-behind keeps what
	 * failed), within the bound when they answer a file operation. */
	prev = bound_begin();
	rc = al_store_commit(c->inner, writes, count);
	bound_end(prev);
	note(c, rc);
	pthread_mutex_lock(&c->lock);
	c->gen++;
	for (i = 0; i < count; i++) {
		written(c, &writes[i], rc == 0);
		remember_write(c, writes[i].path);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void al_store_cache_applied(al_store_backend *b, const al_write *writes, size_t count)
{
	cache *c = (cache *)b;
	size_t i;
	if (!b || b->free != c_free)
		return;
	note(c, 0);
	pthread_mutex_lock(&c->lock);
	c->gen++;
	for (i = 0; i < count; i++) {
		written(c, &writes[i], 1);
		remember_write(c, writes[i].path);
	}
	pthread_mutex_unlock(&c->lock);
}

static char *c_describe(al_store_backend *b)
{
	cache *c = (cache *)b;
	char *inner = c->inner->describe ? c->inner->describe(c->inner) : NULL, *out = NULL;
	char since[160];
	int64_t when = al_store_cache_offline(since, sizeof(since), b);
	if (asprintf(&out, "%sread_cache_ttl_ms: %lld\nnetwork_wait_ms: %u\noffline_since: %s\n",
		    inner ? inner : "", (long long)(c->ttl_us / 1000), al__foreground_wait(),
		    when ? since : "none") < 0)
		out = NULL;
	free(inner);
	return out;
}

static void c_free(al_store_backend *b)
{
	cache *c = (cache *)b;
	if (!c)
		return;
	drop_all(c);
	for (size_t i = 0; i < RECENT; i++)
		free(c->recent[i].coll);
	al_store_free(c->inner);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* One document of a group answer, under the member (e.g. the run) it belongs to. */
typedef struct grouped {
	char *member;           /* the member's id */
	al_doc *doc;            /* borrowed from the group answer, */
	size_t at;              /* at this index */
} grouped;

static int by_member(const void *a, const void *b)
{
	const grouped *x = a, *y = b;
	int r = strcmp(x->member, y->member);
	return r ? r : strcmp(al_doc_id(x->doc->path), al_doc_id(y->doc->path));
}

/* The member id when path is exactly coll/<member>/cid/<id>, else NULL. Other collections of
 * the same name (e.g. experiment-level artifacts, or deeper down) are not the members'. */
static char *member_of(const char *path, const char *coll, const char *cid)
{
	size_t cl = strlen(coll), il = strlen(cid), ml;
	const char *m = path + cl + 1, *rest;
	if (strncmp(path, coll, cl) != 0 || path[cl] != '/')
		return NULL;
	ml = strcspn(m, "/");
	rest = m + ml;
	if (ml == 0 || rest[0] != '/' || strncmp(rest + 1, cid, il) != 0 || rest[1 + il] != '/' ||
	    !rest[2 + il] || strchr(rest + 2 + il, '/'))
		return NULL;
	return strndup(m, ml);
}

/* Caches list as the listing of coll and each of its documents (c->lock held; list taken). */
static void put_listing(cache *c, const char *coll, al_doc_list *list, int64_t exp, int64_t sent)
{
	entry *e = calloc(1, sizeof(*e));
	size_t i;
	if (!e || !(e->key = list_key(coll, NULL, NULL)) || !(e->coll = strdup(coll))) {
		if (e)
			entry_free(e);
		al_doc_list_free(list);
		return;
	}
	e->is_list = 1;
	e->list = list;
	e->sent_us = sent;
	e->known_us = exp - c->ttl_us;
	e->expires_us = exp;
	put(c, e);
	for (i = 0; i < list->count; i++) {
		entry *d = calloc(1, sizeof(*d));
		if (!d || !(d->key = strdup(list->docs[i]->path)) || !(d->doc = doc_copy(list->docs[i]))) {
			if (d)
				entry_free(d);
			continue;
		}
		d->sent_us = sent;
		d->known_us = exp - c->ttl_us;
		d->expires_us = exp;
		put(c, d);
	}
}

int al_store_cache_prefetch(al_store_backend *b, const char *doc, const char *collection_id)
{
	cache *c = (cache *)b;
	al_doc_list *members = NULL, *group = NULL;
	char *coll = NULL, *scope = NULL, *target = NULL, *mark = NULL;
	grouped *g = NULL;
	size_t ng = 0, i, j = 0;
	entry **p, *e;
	uint64_t g0;
	int64_t exp, sent = 0;
	int rc = 0, n = doc ? al_path_segments(doc) : -1;

	if (!b || b->free != c_free || !c->inner->list_group)
		return 0;
	if (n < 4 || n % 2 != 0 || !collection_id || !*collection_id || strchr(collection_id, '/'))
		return al_error_set(AL_EINVAL, "prefetch: '%s' is not a document below a document, or "
			"'%s' not a collection id", doc ? doc : "", collection_id ? collection_id : "");
	coll = parent_collection(doc);
	scope = coll ? parent_collection(coll) : NULL;
	if (asprintf(&target, "%s/%s", doc, collection_id) < 0)
		target = NULL;
	if (asprintf(&mark, "\x02%s\x01%s", coll ? coll : "", collection_id) < 0)
		mark = NULL;
	if (!scope || !target || !mark) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	/* Not while this listing is known, and once per TTL at most. Only the second member
	 * missing its listing within the TTL starts the query: a walk reads them all, while a
	 * look at one run of a large experiment should not pay for all of its pages. The mark
	 * goes in before the query, so concurrent callers do not query twice. */
	pthread_mutex_lock(&c->lock);
	p = slot(c, mark);
	if (fresh_listing(c, target)) {
		pthread_mutex_unlock(&c->lock);
		goto cleanup;
	}
	if (*p && (*p)->expires_us > al_now_us()) {
		int go = (*p)->mark == 1 && strcmp((*p)->coll, doc) != 0;
		if (go) {
			(*p)->mark = 2;
			(*p)->expires_us = al_now_us() + c->ttl_us;
		}
		pthread_mutex_unlock(&c->lock);
		if (!go)
			goto cleanup;
	} else {
		if ((e = calloc(1, sizeof(*e))) && (e->key = strdup(mark)) && (e->coll = strdup(doc))) {
			e->mark = 1;
			e->expires_us = al_now_us() + c->ttl_us;
			put(c, e);
		} else if (e)
			entry_free(e);
		pthread_mutex_unlock(&c->lock);
		goto cleanup;
	}

	/* The members (runs) come from the cache, so the fill knows which have none. */
	if ((rc = c_list(&members, b, coll, NULL, NULL)))
		goto cleanup;
	sort_by_id(members);
	pthread_mutex_lock(&c->lock);
	g0 = c->gen;
	pthread_mutex_unlock(&c->lock);
	if (!may_try(c)) {
		rc = offline_error(c, "a group query");
		goto cleanup;
	}
	{
		long prev = bound_begin();
		int64_t t0 = al__mono_us();
		sent = al_now_us();
		rc = c->inner->list_group(&group, c->inner, scope, collection_id);
		bound_end(prev);
		note(c, rc);
		if (rc == 0)
			note_latency(c, t0);
	}
	if (rc)
		goto cleanup;
	if (!(g = calloc(group->count + 1, sizeof(*g)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < group->count; i++)
		if ((g[ng].member = member_of(group->docs[i]->path, coll, collection_id)))
			g[ng].doc = group->docs[i], g[ng++].at = i;
	qsort(g, ng, sizeof(*g), by_member);

	pthread_mutex_lock(&c->lock);
	exp = al_now_us() + c->ttl_us;
	for (i = 0; i < members->count; i++) {
		const char *id = al_doc_id(members->docs[i]->path);
		al_doc_list *l = calloc(1, sizeof(*l));
		char *t = NULL;
		size_t k0;
		while (j < ng && strcmp(g[j].member, id) < 0)
			j++;
		for (k0 = j; j < ng && strcmp(g[j].member, id) == 0; j++)
			;
		if (!l || !(l->docs = calloc(j - k0 + 1, sizeof(al_doc *))) ||
		    asprintf(&t, "%s/%s", members->docs[i]->path, collection_id) < 0) {
			al_doc_list_free(l);
			break;
		}
		/* A collection written since the query began may have changed: left to its own listing. */
		if (written_since(c, g0, t)) {
			al_doc_list_free(l);
			free(t);
			continue;
		}
		for (; k0 < j; k0++) {   /* moved out of the group answer */
			l->docs[l->count++] = g[k0].doc;
			group->docs[g[k0].at] = NULL;
		}
		put_listing(c, t, l, exp, sent);
		free(t);
	}
	pthread_mutex_unlock(&c->lock);
cleanup:
	for (i = 0; i < ng; i++)
		free(g[i].member);
	free(g);
	al_doc_list_free(members);
	al_doc_list_free(group);
	free(coll);
	free(scope);
	free(target);
	free(mark);
	return rc;
}

int64_t al_store_cache_offline(char *buf, size_t cap, al_store_backend *b)
{
	cache *c = (cache *)b;
	int64_t since = 0;
	uint64_t stale = 0;
	if (buf && cap)
		buf[0] = '\0';
	if (!b || b->free != c_free)
		return 0;
	pthread_mutex_lock(&c->lock);
	since = c->offline_since_us;
	stale = c->stale_answers;
	pthread_mutex_unlock(&c->lock);
	if (since && buf && cap) {
		char when[48];
		al_time_format(when, since, 3);
		snprintf(buf, cap, "%s (%llu answers from the last known copies since the mount)",
			when, (unsigned long long)stale);
	}
	return since;
}

al_store_backend *al_store_cache_inner(al_store_backend *b)
{
	return b && b->free == c_free ? ((cache *)b)->inner : b;
}

int al_store_cache_new(al_store_backend **out, al_store_backend *inner, unsigned ttl_ms)
{
	cache *c = NULL;
	int rc;
	*out = NULL;
	if ((rc = al_store_backend_check(inner)) || !(c = calloc(1, sizeof(*c)))) {
		al_store_free(inner);
		return rc ? rc : al_error_set(AL_ENOMEM, "out of memory");
	}
	c->base.version = AL_STORE_BACKEND_VERSION;
	c->base.name = "read-cache";
	c->base.get = c_get;
	c->base.get_many = c_get_many;
	c->base.list = c_list;
	c->base.list_collections = c_list_collections;
	c->base.commit = c_commit;
	c->base.describe = c_describe;
	c->base.free = c_free;
	c->inner = inner;
	c->ttl_us = (int64_t)ttl_ms * 1000;
	pthread_mutex_init(&c->lock, NULL);
	*out = &c->base;
	return 0;
}
