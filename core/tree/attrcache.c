/* aletheia: the attribute cache, a decorator over the dispatcher (after sshfs's cache.c): an
 * answer is kept while no change happened since it was computed, and every change through the
 * tree's operations bumps the generation, so a stale answer is never served. */
#include "internal.h"

struct attr_entry {
	char *path;
	al_attr attr;
	int rc;
	uint64_t gen;
	int64_t expires_us;        /* other mounts' changes show after this (remote stores) */
	struct attr_entry *next;
};

#define ACACHE_BUCKETS 16384
#define ACACHE_MAX 200000

struct rec_entry {
	char *doc;
	file_rec rec;
	uint64_t gen;
	struct rec_entry *next;
};

void changed(al_tree *t)
{
	__atomic_add_fetch(&t->gen, 1, __ATOMIC_SEQ_CST);
}

static int getattr_uncached(al_attr *out, al_tree *t, const char *path);
static void acache_clear(al_tree *t);

uint64_t attrcache_gen(al_tree *t)
{
	return __atomic_load_n(&t->gen, __ATOMIC_SEQ_CST);
}

/* Keeps the answer (attributes, or rc AL_ENOTFOUND) for path computed while the generation was
 * g0: only when no change happened in between; until the TTL, or until if it is sooner. */
static void attrcache_keep(al_tree *t, const char *path, const al_attr *a, int rc, uint64_t g0,
	int64_t until)
{
	size_t b = al__str_hash(path) % ACACHE_BUCKETS;
	attr_entry *e;
	pthread_mutex_lock(&t->alock);
	if (__atomic_load_n(&t->gen, __ATOMIC_SEQ_CST) == g0) {
		for (e = t->acache[b]; e; e = e->next)
			if (strcmp(e->path, path) == 0)
				break;
		if (!e) {
			if (t->acount >= ACACHE_MAX)
				acache_clear(t);
			e = calloc(1, sizeof(*e));
			if (e && !(e->path = strdup(path))) {
				free(e);
				e = NULL;
			}
			if (e) {
				e->next = t->acache[b];
				t->acache[b] = e;
				t->acount++;
			}
		}
		if (e) {
			e->attr = *a;
			e->rc = rc;
			e->gen = g0;
			e->expires_us = t->attr_ttl_us == INT64_MAX ? INT64_MAX : al_now_us() + t->attr_ttl_us;
			if (until < e->expires_us)   /* stale by itself then (a heartbeat's deadline) */
				e->expires_us = until;
		}
	}
	pthread_mutex_unlock(&t->alock);
}

void attrcache_put(al_tree *t, const char *path, const al_attr *a, uint64_t g0)
{
	attrcache_keep(t, path, a, 0, g0, INT64_MAX);
}

static void acache_clear(al_tree *t)
{
	size_t i;
	attr_entry *e, *next;
	for (i = 0; t->acache && i < ACACHE_BUCKETS; i++) {
		for (e = t->acache[i]; e; e = next) {
			next = e->next;
			free(e->path);
			free(e);
		}
		t->acache[i] = NULL;
	}
	t->acount = 0;
}

int al_tree_getattr(al_attr *out, al_tree *t, const char *path)
{
	size_t b = al__str_hash(path) % ACACHE_BUCKETS;
	uint64_t g0 = __atomic_load_n(&t->gen, __ATOMIC_SEQ_CST);
	attr_entry *e;
	int64_t outer, until;
	int rc;

	/* The control files (ctl.c) change without any change to the tree. */
	if (strncmp(path, "/.aletheia", 10) == 0)
		return getattr_uncached(out, t, path);
	pthread_mutex_lock(&t->alock);
	for (e = t->acache[b]; e; e = e->next)
		if (strcmp(e->path, path) == 0)
			break;
	if (e && e->gen == g0 && e->expires_us > al_now_us()) {
		*out = e->attr;
		rc = e->rc;
		pthread_mutex_unlock(&t->alock);
		if (rc)
			al_error_set(rc, "no such entry: %s", path);
		return rc;
	}
	pthread_mutex_unlock(&t->alock);
	outer = validity_push();
	rc = getattr_uncached(out, t, path);
	until = validity_pop(outer);
	if (rc && rc != AL_ENOTFOUND)
		return rc;
	attrcache_keep(t, path, out, rc, g0, until);
	if (rc)
		al_error_set(rc, "no such entry: %s", path);
	return rc;
}

static int getattr_uncached(al_attr *out, al_tree *t, const char *path)
{
	if (scratch_attr(out, t, path)) {
		/* A shared mount: an editor's scratch file is its folder's owner's (README "Many
		 * users on one machine"). */
		char *dir = t->multi_user ? strdup(path) : NULL, *slash;
		al_attr d;
		if (dir && (slash = strrchr(dir, '/')) && slash != dir) {
			*slash = '\0';
			if (getattr_recorded(&d, t, dir) == 0) {
				out->owned = 1;
				out->uid = d.uid;
				out->gid = d.gid;
			}
		}
		free(dir);
		return 0;
	}
	return getattr_recorded(out, t, path);
}

int al_tree_mkdir(al_tree *t, const char *path, const al_caller *caller)
{
	int rc = tree_mkdir(t, path, caller);
	changed(t);
	return rc;
}

int al_tree_unlink(al_tree *t, const char *path)
{
	int rc = tree_unlink(t, path);
	changed(t);
	return rc;
}

int al_tree_rmdir(al_tree *t, const char *path)
{
	int rc = tree_rmdir(t, path);
	changed(t);
	return rc;
}

int al_tree_rename(al_tree *t, const char *from, const char *to, unsigned flags)
{
	int rc = tree_rename(t, from, to, flags);
	changed(t);
	return rc;
}

int al_tree_symlink(al_tree *t, const char *target, const char *path, const al_caller *caller)
{
	int rc = tree_symlink(t, target, path, caller);
	changed(t);
	return rc;
}

int al_tree_chmod(al_tree *t, const char *path, unsigned mode)
{
	int rc = tree_chmod(t, path, mode);
	changed(t);
	return rc;
}

int al_tree_utimens(al_tree *t, const char *path, int64_t mtime_us)
{
	int rc = tree_utimens(t, path, mtime_us);
	changed(t);
	return rc;
}

/* ---- dataset files' records ----
 * Write-once, and on a local store only this mount's unlink, rename and new files change what a
 * name's record is; each of those bumps gen, as any change does. So a record read while gen
 * stayed g0 is the record as long as gen is still g0 (Firestore: not kept, other mounts). */

void file_rec_clear(file_rec *r)
{
	free(r->blob);
	r->blob = NULL;
}

void file_rec_from_doc(file_rec *out, const al_doc *d)
{
	const char *type = al_fields_get_string(d->fields, "type");
	const char *hash = al_fields_get_string(d->fields, "hash");
	const char *blob = al_fields_get_string(d->fields, "blob");
	memset(out, 0, sizeof(*out));
	out->is_dir = type && strcmp(type, "dir") == 0;
	if (hash && al_hash_is_valid(hash))
		snprintf(out->hash, sizeof(out->hash), "%s", hash);
	al_fields_get_int(&out->size, d->fields, "size");
	out->blob = blob ? strdup(blob) : NULL;
}

int reccache_wanted(al_tree *t, const node *n)
{
	return n->k == &kind_dataset_file && t->attr_ttl_us == INT64_MAX && t->frcache;
}

static void rcache_clear(al_tree *t)
{
	for (size_t i = 0; t->frcache && i < ACACHE_BUCKETS; i++) {
		rec_entry *e, *next;
		for (e = t->frcache[i]; e; e = next) {
			next = e->next;
			file_rec_clear(&e->rec);
			free(e->doc);
			free(e);
		}
		t->frcache[i] = NULL;
	}
	t->frcount = 0;
}

int reccache_get(file_rec *out, al_tree *t, const char *doc)
{
	size_t b = al__str_hash(doc) % ACACHE_BUCKETS;
	int rc = AL_ENOTFOUND;
	rec_entry *e;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&t->alock);
	for (e = t->frcache[b]; e; e = e->next)
		if (strcmp(e->doc, doc) == 0)
			break;
	if (e && e->gen == __atomic_load_n(&t->gen, __ATOMIC_SEQ_CST) &&
	    (!e->rec.blob || (out->blob = strdup(e->rec.blob)) != NULL)) {
		char *blob = out->blob;
		*out = e->rec;
		out->blob = blob;
		rc = 0;
	}
	pthread_mutex_unlock(&t->alock);
	return rc;
}

void reccache_put(al_tree *t, const char *doc, const file_rec *r, uint64_t g0)
{
	size_t b = al__str_hash(doc) % ACACHE_BUCKETS;
	rec_entry *e;
	pthread_mutex_lock(&t->alock);
	if (__atomic_load_n(&t->gen, __ATOMIC_SEQ_CST) != g0)
		goto unlock;
	for (e = t->frcache[b]; e; e = e->next)
		if (strcmp(e->doc, doc) == 0)
			break;
	if (!e) {
		if (t->frcount >= ACACHE_MAX)
			rcache_clear(t);
		if (!(e = calloc(1, sizeof(*e))) || !(e->doc = strdup(doc))) {
			free(e);
			goto unlock;
		}
		e->next = t->frcache[b];
		t->frcache[b] = e;
		t->frcount++;
	}
	file_rec_clear(&e->rec);
	e->rec = *r;
	e->rec.blob = r->blob ? strdup(r->blob) : NULL;
	if (r->blob && !e->rec.blob)
		e->gen = g0 - 1;    /* out of memory: never served */
	else
		e->gen = g0;
unlock:
	pthread_mutex_unlock(&t->alock);
}

int attrcache_init(al_tree *t)
{
	pthread_mutex_init(&t->alock, NULL);
	if (!(t->acache = calloc(ACACHE_BUCKETS, sizeof(attr_entry *))) ||
	    !(t->frcache = calloc(ACACHE_BUCKETS, sizeof(rec_entry *))))
		return al_error_set(AL_ENOMEM, "out of memory");
	return 0;
}

void attrcache_free(al_tree *t)
{
	acache_clear(t);
	free(t->acache);
	rcache_clear(t);
	free(t->frcache);
	pthread_mutex_destroy(&t->alock);
}
