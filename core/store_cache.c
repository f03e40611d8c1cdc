/* aletheia: the read-cache metastore decorator (after sshfs's cache.c): TTL-bound answers,
 * listings that fill the document cache, invalidation on every write through it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aletheia/store_cache.h"
#include "aletheia/value.h"
#include "util.h"

#define BUCKETS 8192
#define MAX_ENTRIES 200000

typedef struct entry {
	char *key;              /* a document path, or "coll\x01from\x01to" for a listing */
	int is_list;
	int missing;            /* a document known not to exist */
	al_doc *doc;
	al_doc_list *list;
	char *coll;             /* for listings: the collection, to invalidate by */
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
	al_store_free(c->inner);
	pthread_mutex_destroy(&c->lock);
	free(c);
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
