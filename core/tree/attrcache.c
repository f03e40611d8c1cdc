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

int al_tree_symlink(al_tree *t, const char *target, const char *path)
{
	int rc = tree_symlink(t, target, path);
	changed(t);
	return rc;
}

int al_tree_utimens(al_tree *t, const char *path, int64_t mtime_us)
{
	int rc = tree_utimens(t, path, mtime_us);
	changed(t);
	return rc;
}

int attrcache_init(al_tree *t)
{
	pthread_mutex_init(&t->alock, NULL);
	if (!(t->acache = calloc(ACACHE_BUCKETS, sizeof(attr_entry *))))
		return al_error_set(AL_ENOMEM, "out of memory");
	return 0;
}

void attrcache_free(al_tree *t)
{
	acache_clear(t);
	free(t->acache);
	pthread_mutex_destroy(&t->alock);
}
