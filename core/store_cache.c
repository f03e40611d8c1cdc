/* aletheia: the read-cache metastore decorator (after sshfs's cache.c): TTL-bound answers,
 * listings that fill the document cache, invalidation on every write through it, and prefetch of
 * a sub-collection for all documents of a collection with one group query. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aletheia/store_cache.h"
#include "aletheia/value.h"
#include "util.h"

#define BUCKETS 8192
#define MAX_ENTRIES 200000
#define RECENT 256      /* collections of the latest writes, for a prefetch that overlapped them */

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
	int64_t expires_us;
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
} cache;

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
	size_t lo = from ? lower_bound(l, from) : 0, hi = to ? lower_bound(l, to) : l->count;
	part.docs = l->docs + lo;
	part.count = hi > lo ? hi - lo : 0;
	return list_copy(&part);
}

static void entry_free(entry *e)
{
	free(e->key);
	free(e->coll);
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

/* A fresh complete listing of coll, or NULL (c->lock held). */
static entry *fresh_listing(cache *c, const char *coll)
{
	char *key = list_key(coll, NULL, NULL);
	entry **p = key ? slot(c, key) : NULL;
	free(key);
	return p && *p && (*p)->expires_us > al_now_us() ? *p : NULL;
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

static int c_get(al_doc **out, al_store_backend *b, const char *path)
{
	cache *c = (cache *)b;
	entry **p, *e;
	uint64_t g0;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&c->lock);
	p = slot(c, path);
	if (*p && (*p)->expires_us > al_now_us()) {
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
	g0 = c->gen;
	pthread_mutex_unlock(&c->lock);
	rc = c->inner->get(out, c->inner, path);
	if (rc == AL_EIO || rc == AL_EAGAIN) {
		/* Unreachable: an expired answer is better than none (stale-if-error). */
		pthread_mutex_lock(&c->lock);
		p = slot(c, path);
		if (*p && !(*p)->missing && (*out = doc_copy((*p)->doc)))
			rc = 0;
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
	if (rc && rc != AL_ENOTFOUND)
		return rc;
	if (!(e = calloc(1, sizeof(*e))) || !(e->key = strdup(path))) {
		free(e);
		return rc;
	}
	e->missing = rc == AL_ENOTFOUND;
	e->doc = rc == 0 ? doc_copy(*out) : NULL;
	e->expires_us = al_now_us() + c->ttl_us;
	pthread_mutex_lock(&c->lock);
	if (c->gen == g0 && (e->missing || e->doc))
		put(c, e);
	else
		entry_free(e);
	pthread_mutex_unlock(&c->lock);
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
	uint64_t g0;
	int rc = 0;

	if (!miss || !where || !got) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < n; i++) {
		entry **p = slot(c, paths[i]);
		out[i] = NULL;
		if (*p && (*p)->expires_us > al_now_us()) {
			if (!(*p)->missing && !(out[i] = doc_copy((*p)->doc)))
				rc = al_error_set(AL_ENOMEM, "out of memory");
		} else if (!from_listing(&out[i], c, paths[i])) {
			miss[m] = paths[i];
			where[m++] = i;
		}
	}
	g0 = c->gen;
	pthread_mutex_unlock(&c->lock);
	if (rc || m == 0)
		goto cleanup;
	rc = al_store_get_many(got, c->inner, miss, m);
	if (rc == AL_EIO || rc == AL_EAGAIN) {
		for (i = 0, rc = 0; i < m && rc == 0; i++)
			if ((rc = c_get(&out[where[i]], b, miss[i])) == AL_ENOTFOUND) {
				al_error_clear();
				rc = 0;
			}
		goto cleanup;
	}
	if (rc)
		goto cleanup;
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < m; i++) {
		entry *e = calloc(1, sizeof(*e));
		out[where[i]] = got[i];
		if (!e || !(e->key = strdup(miss[i]))) {
			free(e);
			continue;
		}
		e->missing = got[i] == NULL;
		e->doc = got[i] ? doc_copy(got[i]) : NULL;
		e->expires_us = al_now_us() + c->ttl_us;
		if (c->gen == g0 && (e->missing || e->doc))
			put(c, e);
		else
			entry_free(e);
	}
	pthread_mutex_unlock(&c->lock);
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
	size_t i;
	int rc;

	*out = NULL;
	if (!key)
		return al_error_set(AL_ENOMEM, "out of memory");
	pthread_mutex_lock(&c->lock);
	p = slot(c, key);
	if (*p && (*p)->expires_us > al_now_us()) {
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
	if ((rc = c->inner->list(out, c->inner, coll, from, to))) {
		if (rc == AL_EIO || rc == AL_EAGAIN) {
			pthread_mutex_lock(&c->lock);
			p = slot(c, key);
			if (*p && (*out = list_copy((*p)->list)))
				rc = 0;   /* stale-if-error, as for documents */
			pthread_mutex_unlock(&c->lock);
		}
		free(key);
		return rc;
	}
	pthread_mutex_lock(&c->lock);
	if (c->gen == g0) {
		int64_t exp = al_now_us() + c->ttl_us;
		if ((e = calloc(1, sizeof(*e)))) {
			e->key = key;
			key = NULL;
			e->is_list = 1;
			e->coll = strdup(coll);
			e->list = list_copy(*out);
			e->expires_us = exp;
			sort_by_id(e->list);
			if (e->list && e->coll)
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
	return c->inner->list_collections(out, count, c->inner, doc);
}

/* Forgets a written document and the listings of its collection (c->lock held). */
static void invalidate(cache *c, const char *path)
{
	char *coll = parent_collection(path);
	entry **p = slot(c, path);
	size_t i;

	if (*p) {
		entry *e = *p;
		*p = e->next;
		entry_free(e);
		c->count--;
	}
	for (i = 0; coll && i < BUCKETS; i++) {
		entry **q = &c->table[i];
		while (*q) {
			if ((*q)->is_list && strcmp((*q)->coll, coll) == 0) {
				entry *e = *q;
				*q = e->next;
				entry_free(e);
				c->count--;
			} else
				q = &(*q)->next;
		}
	}
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
	int rc;

	pthread_mutex_lock(&c->lock);
	c->gen++;
	pthread_mutex_unlock(&c->lock);
	rc = al_store_commit(c->inner, writes, count);
	/* Invalidate after the write too: a read racing with it must not stay cached. */
	pthread_mutex_lock(&c->lock);
	c->gen++;
	for (i = 0; i < count; i++) {
		al_doc *known = NULL;
		entry **p = slot(c, writes[i].path);
		/* What we just wrote is the best copy to fall back on while unreachable. */
		if (rc == 0 && *p && !(*p)->is_list) {
			if (writes[i].op == AL_WRITE_DELETE || (*p)->missing) {
				known = NULL;
			} else if (writes[i].op == AL_WRITE_SET || (*p)->doc) {
				known = (*p)->doc ? doc_copy((*p)->doc) : NULL;
				if (known && writes[i].op == AL_WRITE_SET) {
					cJSON_Delete(known->fields);
					known->fields = cJSON_Duplicate(writes[i].fields, 1);
				} else if (known) {
					const cJSON *it;
					cJSON_ArrayForEach(it, writes[i].fields)
						al_fields_set(known->fields, it->string, cJSON_Duplicate(it, 1));
				}
			}
		}
		invalidate(c, writes[i].path);
		remember_write(c, writes[i].path);
		if (known) {
			entry *e = calloc(1, sizeof(*e));
			known->update_us = al_now_us();
			if (e && (e->key = strdup(writes[i].path))) {
				e->doc = known;
				e->expires_us = 0;   /* stale at once: used only when the backend is away */
				put(c, e);
			} else {
				free(e);
				al_doc_free(known);
			}
		}
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static char *c_describe(al_store_backend *b)
{
	cache *c = (cache *)b;
	char *inner = c->inner->describe ? c->inner->describe(c->inner) : NULL, *out = NULL;
	if (asprintf(&out, "%sread_cache_ttl_ms: %lld\n", inner ? inner : "", (long long)(c->ttl_us / 1000)) < 0)
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
static void put_listing(cache *c, const char *coll, al_doc_list *list, int64_t exp)
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
	e->expires_us = exp;
	put(c, e);
	for (i = 0; i < list->count; i++) {
		entry *d = calloc(1, sizeof(*d));
		if (!d || !(d->key = strdup(list->docs[i]->path)) || !(d->doc = doc_copy(list->docs[i]))) {
			if (d)
				entry_free(d);
			continue;
		}
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
	int64_t exp;
	int rc = 0, n = doc ? al_path_segments(doc) : -1;

	if (!b || strcmp(b->name, "read-cache") != 0 || !c->inner->list_group)
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
	if ((rc = c->inner->list_group(&group, c->inner, scope, collection_id)))
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
		put_listing(c, t, l, exp);
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

al_store_backend *al_store_cache_inner(al_store_backend *b)
{
	return b && strcmp(b->name, "read-cache") == 0 ? ((cache *)b)->inner : b;
}

int al_store_cache_new(al_store_backend **out, al_store_backend *inner, unsigned ttl_ms)
{
	cache *c = calloc(1, sizeof(*c));
	*out = NULL;
	if (!c) {
		al_store_free(inner);
		return al_error_set(AL_ENOMEM, "out of memory");
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
