/* aletheia: the render cache: a generated file's last render (size, mtime, and within a budget its
 * content) per path, kept while nothing it is made of changed, so that stat() of runs.csv or
 * run.json costs no render however often it is asked (README ".aletheia/status": renders). */
#include <malloc.h>
#include "internal.h"

struct render_entry {
	char *path;
	uint64_t size;
	int64_t mtime;             /* the render's own; the caller's floor is applied at each ask */
	uint64_t gen, epoch;       /* the owner's scope generation and the epoch before the render */
	int64_t made_us;           /* remote stores: valid for the attribute TTL from here */
	int64_t expires_us;        /* stale by itself from here (a heartbeat's deadline) */
	rendered *content;         /* NULL once dropped for the budget */
	struct render_entry *next;
};

/* A render being made: asking for the same path meanwhile waits for it rather than rendering
 * again (ls -l and a reader at once, several readers of runs.csv: one render, one buffer). */
struct inflight {
	const char *path;
	uint64_t gen, epoch;
	struct inflight *next;
};

#define RCACHE_BUCKETS 16384
#define RCACHE_MAX 200000
/* Contents kept for the next open (a stat's render, read by the cat after it): beyond this,
 * only sizes are kept and an open renders again. */
#define RKEEP_MAX (32u << 20)
#define BIG_RENDER (1u << 20)

void rendered_put(rendered *r)
{
	if (r && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(r);
}

static size_t slot_of(const char *doc, size_t len)
{
	uint64_t h = 1469598103934665603ULL;   /* FNV-1a over the first len bytes */
	size_t i;
	for (i = 0; i < len; i++)
		h = (h ^ (unsigned char)doc[i]) * 1099511628211ULL;
	return (size_t)(h % SCOPE_SLOTS);
}

/* Bumps the slot of doc and of every document it lies in (projects/p, …/experiments/e,
 * …/runs/r, …): runs.csv is made of its experiment's runs and their metrics. */
void scope_changed(al_tree *t, const char *doc)
{
	size_t i, seg = 0;
	if (!doc)
		return;
	for (i = 0;; i++)
		if (doc[i] == '/' || doc[i] == '\0') {
			if (++seg % 2 == 0)
				__atomic_add_fetch(&t->scope_gen[slot_of(doc, i)], 1, __ATOMIC_SEQ_CST);
			if (doc[i] == '\0')
				break;
		}
}

uint64_t scope_gen_of(al_tree *t, const char *doc)
{
	return __atomic_load_n(&t->scope_gen[slot_of(doc, strlen(doc))], __ATOMIC_SEQ_CST);
}

void scope_changed_all(al_tree *t)
{
	__atomic_add_fetch(&t->render_epoch, 1, __ATOMIC_SEQ_CST);
}

int tree_commit(al_tree *t, const al_write *w, size_t n)
{
	int rc = al_store_commit(t->store, w, n);
	size_t i;
	/* Also after a failure: a remote commit may have landed before its answer was lost. */
	for (i = 0; i < n; i++)
		scope_changed(t, w[i].path);
	return rc;
}

size_t kind_index(const al_kind *k)
{
	static const al_kind *const table[] = {
#define KIND(x) &kind_##x,
#include "kinds.h"
#undef KIND
	};
	size_t i;
	for (i = 0; i < KIND_COUNT; i++)
		if (table[i] == k)
			return i;
	return 0;
}

int render_counts(al_buf *b, al_tree *t)
{
	static const al_kind *const table[] = {
#define KIND(x) &kind_##x,
#include "kinds.h"
#undef KIND
	};
	size_t i;
	int any = 0, rc = 0;
	for (i = 0; i < KIND_COUNT && rc == 0; i++) {
		uint64_t c = __atomic_load_n(&t->renders[i], __ATOMIC_RELAXED);
		if (c)
			rc = al_buf_printf(b, "%s%s %llu", any++ ? ", " : "", table[i]->name,
				(unsigned long long)c);
	}
	return rc ? rc : any ? 0 : al_buf_puts(b, "none");
}

static void entry_drop_content(al_tree *t, render_entry *e)
{
	if (e->content) {
		t->rkept -= e->content->len;
		rendered_put(e->content);
		e->content = NULL;
	}
}

static void rcache_clear(al_tree *t)
{
	size_t i;
	render_entry *e, *next;
	for (i = 0; t->rcache && i < RCACHE_BUCKETS; i++) {
		for (e = t->rcache[i]; e; e = next) {
			next = e->next;
			entry_drop_content(t, e);
			free(e->path);
			free(e);
		}
		t->rcache[i] = NULL;
	}
	t->rcount = 0;
}

/* Makes room for len more bytes of content (rlock held): other entries' contents go. */
static void make_room(al_tree *t, size_t len, const render_entry *keep)
{
	size_t i;
	render_entry *e;
	for (i = 0; i < RCACHE_BUCKETS && t->rkept + len > RKEEP_MAX; i++)
		for (e = t->rcache[i]; e && t->rkept + len > RKEEP_MAX; e = e->next)
			if (e != keep)
				entry_drop_content(t, e);
}

/* The earliest time an answer being made goes stale by itself, per thread (INT64_MAX: only a
 * change makes it stale): a running run's status turns crashed when its heartbeat's deadline
 * passes with no change to any document (README "Crashed runs"). */
static _Thread_local int64_t valid_until = INT64_MAX;

void render_valid_until(int64_t us)
{
	if (us < valid_until)
		valid_until = us;
}

int64_t validity_push(void)
{
	int64_t outer = valid_until;
	valid_until = INT64_MAX;
	return outer;
}

int64_t validity_pop(int64_t outer)
{
	int64_t mine = valid_until;
	valid_until = outer < mine ? outer : mine;
	return mine;
}

static int entry_valid(al_tree *t, const render_entry *e, uint64_t gen, uint64_t epoch)
{
	return e->gen == gen && e->epoch == epoch && al_now_us() < e->expires_us &&
		(t->attr_ttl_us == INT64_MAX || al_now_us() - e->made_us < t->attr_ttl_us);
}

int render_cached(rendered **out, uint64_t *size, int64_t *mtime, al_tree *t, const node *n,
	const char *path)
{
	const char *owner = node_owner_doc(n);
	size_t b = al__str_hash(path) % RCACHE_BUCKETS;
	uint64_t gen = 0, epoch;
	int64_t made, mt = 0, outer, expires;
	render_entry *e;
	rendered *r = NULL;
	al_buf buf = AL_BUF_INIT;
	struct inflight me = {path, 0, 0, NULL}, **pi;
	int rc;

	if (out)
		*out = NULL;
	/* What only the owner document's scope can change; the control files are live. */
	if (owner) {
		struct inflight *i;
		gen = scope_gen_of(t, owner);
		epoch = __atomic_load_n(&t->render_epoch, __ATOMIC_SEQ_CST);
		pthread_mutex_lock(&t->rlock);
	again:
		for (i = t->inflight; i; i = i->next)
			if (i->gen == gen && i->epoch == epoch && strcmp(i->path, path) == 0) {
				pthread_cond_wait(&t->rdone, &t->rlock);
				goto again;
			}
		for (e = t->rcache[b]; e; e = e->next)
			if (strcmp(e->path, path) == 0)
				break;
		if (e && entry_valid(t, e, gen, epoch) && (!out || e->content)) {
			render_valid_until(e->expires_us);
			*size = e->size;
			mtime_raise(mtime, e->mtime);
			if (out) {
				__atomic_add_fetch(&e->content->refs, 1, __ATOMIC_ACQ_REL);
				*out = e->content;
			}
			pthread_mutex_unlock(&t->rlock);
			return 0;
		}
		me.gen = gen;
		me.epoch = epoch;
		me.next = t->inflight;
		t->inflight = &me;
		pthread_mutex_unlock(&t->rlock);
	}
	made = al_now_us();
	epoch = __atomic_load_n(&t->render_epoch, __ATOMIC_SEQ_CST);
	outer = validity_push();
	rc = render(&buf, &mt, t, n);
	expires = validity_pop(outer);
	if (rc)
		goto cleanup;
	if (!(r = malloc(sizeof(*r) + buf.len + 1))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	r->refs = 1;
	r->len = buf.len;
	if (buf.len)
		memcpy(r->data, buf.ptr, buf.len);
	r->data[buf.len] = '\0';
	al_buf_dispose(&buf);
	/* A big render (runs.csv of thousands of runs) parsed every run's document: give the heap
	 * back, or the daemon keeps its high-water mark for good (README "Known limitations"). */
	if (r->len >= BIG_RENDER)
		malloc_trim(0);
	*size = r->len;
	mtime_raise(mtime, mt);
	if (owner) {
		pthread_mutex_lock(&t->rlock);
		for (e = t->rcache[b]; e; e = e->next)
			if (strcmp(e->path, path) == 0)
				break;
		if (!e) {
			if (t->rcount >= RCACHE_MAX)
				rcache_clear(t);
			if ((e = calloc(1, sizeof(*e))) && !(e->path = strdup(path))) {
				free(e);
				e = NULL;
			}
			if (e) {
				e->next = t->rcache[b];
				t->rcache[b] = e;
				t->rcount++;
			}
		}
		if (e && !(e->gen == gen && e->epoch == epoch && e->made_us > made)) {
			entry_drop_content(t, e);
			e->size = r->len;
			e->mtime = mt;
			e->gen = gen;
			e->epoch = epoch;
			e->made_us = made;
			e->expires_us = expires;
			if (r->len <= RKEEP_MAX / 4) {
				make_room(t, r->len, e);
				__atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
				e->content = r;
				t->rkept += r->len;
			}
		}
		pthread_mutex_unlock(&t->rlock);
	}
cleanup:
	if (owner) {
		pthread_mutex_lock(&t->rlock);
		for (pi = &t->inflight; *pi; pi = &(*pi)->next)
			if (*pi == &me) {
				*pi = me.next;
				break;
			}
		pthread_cond_broadcast(&t->rdone);
		pthread_mutex_unlock(&t->rlock);
	}
	if (rc == 0 && out) {
		*out = r;
		r = NULL;
	}
	rendered_put(r);
	al_buf_dispose(&buf);
	return rc;
}

int rendercache_init(al_tree *t)
{
	pthread_mutex_init(&t->rlock, NULL);
	pthread_cond_init(&t->rdone, NULL);
	if (!(t->rcache = calloc(RCACHE_BUCKETS, sizeof(render_entry *))))
		return al_error_set(AL_ENOMEM, "out of memory");
	return 0;
}

void rendercache_free(al_tree *t)
{
	rcache_clear(t);
	free(t->rcache);
	pthread_cond_destroy(&t->rdone);
	pthread_mutex_destroy(&t->rlock);
}
