/* aletheia: the write-behind metastore decorator: a local journal and overlay in front of a
 * (remote) backend, so write() and close() never wait for the network. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/series/journal.h"
#include "core/doc/json.h"
#include "core/store/store_cache.h"
#include "core/store/store_wb.h"
#include "core/doc/value.h"
#include "core/util.h"

/* Lock order: wb->deliver_lock, then wb->lock. The inner backend is called without wb->lock. */

/* The local view of one document that has writes not yet delivered. */
typedef struct ov_entry {
	char *path;
	cJSON *fields;          /* the whole document, or (patch) the values of the update */
	cJSON *mask;            /* patch: the update's field paths (store.h), always explicit */
	int deleted;
	int patch;              /* fields and mask are one update of whatever the backend has */
	uint64_t last_seq;      /* the last queued batch that touched it */
	int64_t delivered_us;   /* when the backend got it (0: still pending) */
	uint64_t delivered_tick; /* wb->ticks after that delivery */
	int64_t backend_us;     /* delivered: the backend's update time for it, as first read */
	int64_t update_us;
	struct ov_entry *next;
} ov_entry;

#define COMMIT_BYTES ((size_t)6 << 20)

typedef struct batch {
	uint64_t seq;
	cJSON *writes;          /* [{"op","path","fields","pre"}] as journaled */
	size_t count;
	size_t bytes;           /* its journaled size: about its size in a commit request */
	struct batch *next;
} batch;

#define OV_BUCKETS 4096
/* A delivered entry stays a little: a read that asked the backend just before the delivery
 * landed still merges it, instead of briefly losing the write. A read that began after the
 * delivery ignores it (the backend's answer holds it, and other mounts' later changes too). */
#define DELIVERED_GRACE_US (5LL * 1000000)

typedef struct wb {
	al_store_backend base;
	al_store_backend *inner;
	al_journal *journal;
	pthread_mutex_t lock;
	pthread_mutex_t deliver_lock;
	pthread_cond_t wake;
	ov_entry *ov[OV_BUCKETS];
	batch *head, *tail;
	uint64_t next_seq, queued_writes;
	uint64_t ticks;         /* delivered commits so far */
	pthread_t thread;
	int started, stop;
	unsigned interval_ms;
	char last_error[512];
	int error_dropped;      /* last_error reports a dropped write (kept after later successes) */
} wb;

/* A write-behind store is known by its own free function (a typed test, unlike its name). */
static void wb_free(al_store_backend *base);

static const char *op_name(al_write_op op)
{
	return op == AL_WRITE_SET ? "set" : op == AL_WRITE_UPDATE ? "update" : "delete";
}

static int op_parse(al_write_op *out, const char *s)
{
	if (!s)
		return AL_EINVAL;
	if (!strcmp(s, "set"))
		*out = AL_WRITE_SET;
	else if (!strcmp(s, "update"))
		*out = AL_WRITE_UPDATE;
	else if (!strcmp(s, "delete"))
		*out = AL_WRITE_DELETE;
	else
		return AL_EINVAL;
	return 0;
}

static ov_entry *ov_find(wb *w, const char *path, int create)
{
	size_t b = al__str_hash(path) % OV_BUCKETS;
	ov_entry *e;
	for (e = w->ov[b]; e; e = e->next)
		if (strcmp(e->path, path) == 0)
			return e;
	if (!create || !(e = calloc(1, sizeof(*e))))
		return NULL;
	if (!(e->path = strdup(path))) {
		free(e);
		return NULL;
	}
	e->next = w->ov[b];
	w->ov[b] = e;
	return e;
}

static void ov_remove(wb *w, ov_entry *victim)
{
	ov_entry **p;
	for (p = &w->ov[al__str_hash(victim->path) % OV_BUCKETS]; *p; p = &(*p)->next)
		if (*p == victim) {
			*p = victim->next;
			break;
		}
	free(victim->path);
	cJSON_Delete(victim->fields);
	cJSON_Delete(victim->mask);
	free(victim);
}

/* Applies the patch e (its fields and mask) to a document's fields. */
static void patch_apply(cJSON *doc, const char *path, const cJSON *fields, const cJSON *mask)
{
	al_write u = {AL_WRITE_UPDATE, path, fields, AL_PRE_NONE, mask};
	al_write_apply(doc, &u);
}

/* Removes field (key NULL: every path of it) or field.key from a patch's mask. */
static void mask_remove(cJSON *mask, const char *field, const char *key)
{
	cJSON *p = mask ? mask->child : NULL, *next;
	for (; p; p = next) {
		const char *f, *k;
		next = p->next;
		if (al_mask_path(&f, &k, p) && !strcmp(f, field) && (!key || (k && !strcmp(k, key))))
			cJSON_Delete(cJSON_DetachItemViaPointer(mask, p));
	}
}

static int mask_has_whole(const cJSON *mask, const char *field)
{
	const cJSON *p;
	cJSON_ArrayForEach(p, mask) {
		const char *f, *k;
		if (al_mask_path(&f, &k, p) == 1 && !strcmp(f, field))
			return 1;
	}
	return 0;
}

/* The map fields of field in a patch's values, made one when it is not (NULL: no memory). */
static cJSON *patch_map(cJSON *fields, const char *field)
{
	cJSON *m = al_value_map_fields(cJSON_GetObjectItemCaseSensitive(fields, field));
	if (m)
		return m;
	al_fields_set(fields, field, al_value_map(NULL));
	return al_value_map_fields(cJSON_GetObjectItemCaseSensitive(fields, field));
}

/* Makes the patch e the one update that does what it did and then the update (fields, mask):
 * a later path replaces what the patch said of it, so reading the backend's copy with the patch
 * applied is reading it after both (README "Firestore": writes of other mounts to other keys
 * show through). */
static void patch_compose(ov_entry *e, const cJSON *fields, const cJSON *mask)
{
	cJSON *own = NULL;
	const cJSON *p, *f;

	if (!mask) {   /* the top-level fields of fields */
		if (!(own = cJSON_CreateArray()))
			return;
		cJSON_ArrayForEach(f, fields)
			al_mask_add(own, f->string, NULL);
		mask = own;
	}
	cJSON_ArrayForEach(p, mask) {
		const char *field, *key;
		const cJSON *v;
		cJSON *m;
		if (!al_mask_path(&field, &key, p))
			continue;
		v = al_fields_get(fields, field);
		if (key)
			v = al_fields_get(al_value_get_map(v), key);
		if (!key) {
			mask_remove(e->mask, field, NULL);
			cJSON_DeleteItemFromObjectCaseSensitive(e->fields, field);
			al_mask_add(e->mask, field, NULL);
			if (v)
				al_fields_set(e->fields, field, cJSON_Duplicate(v, 1));
		} else if (mask_has_whole(e->mask, field)) {
			/* the patch sets the whole field: the key changes inside its value */
			if (v && (m = patch_map(e->fields, field)))
				al_fields_set(m, key, cJSON_Duplicate(v, 1));
			else if (!v && (m = al_value_map_fields(cJSON_GetObjectItemCaseSensitive(e->fields, field))))
				cJSON_DeleteItemFromObjectCaseSensitive(m, key);
		} else {
			mask_remove(e->mask, field, key);
			if ((m = al_value_map_fields(cJSON_GetObjectItemCaseSensitive(e->fields, field))))
				cJSON_DeleteItemFromObjectCaseSensitive(m, key);
			al_mask_add(e->mask, field, key);
			if (v && (m = patch_map(e->fields, field)))
				al_fields_set(m, key, cJSON_Duplicate(v, 1));
		}
	}
	cJSON_Delete(own);
}

/* Applies one write to the overlay (w->lock held). */
static void ov_apply(wb *w, al_write_op op, const char *path, const cJSON *fields,
	const cJSON *mask, uint64_t seq)
{
	ov_entry *e = ov_find(w, path, 1);
	al_write u = {op, path, fields, AL_PRE_NONE, mask};
	if (!e)
		return;
	if (e->delivered_us) {
		/* What it held is delivered: the backend's copy (with other mounts' changes since)
		 * is the base now, not this stale one. */
		cJSON_Delete(e->fields);
		cJSON_Delete(e->mask);
		e->fields = e->mask = NULL;
		e->patch = e->deleted = 0;
	}
	e->last_seq = seq;
	e->delivered_us = 0;
	e->backend_us = 0;
	e->update_us = al_now_us();
	if (op == AL_WRITE_DELETE) {
		cJSON_Delete(e->fields);
		cJSON_Delete(e->mask);
		e->fields = e->mask = NULL;
		e->deleted = 1;
		e->patch = 0;
	} else if (op == AL_WRITE_SET || e->deleted) {
		/* the whole document is known: a set, or an update of one known deleted */
		cJSON_Delete(e->fields);
		cJSON_Delete(e->mask);
		e->mask = NULL;
		if ((e->fields = cJSON_CreateObject()))
			al_write_apply(e->fields, &u);
		e->patch = 0;
		e->deleted = 0;
	} else if (!e->fields) {
		/* An update of a document we know nothing about applies to the backend's copy. */
		e->fields = cJSON_CreateObject();
		e->mask = cJSON_CreateArray();
		e->patch = 1;
		if (e->fields && e->mask)
			patch_compose(e, fields, mask);
	} else if (e->patch) {
		patch_compose(e, fields, mask);
	} else {
		al_write_apply(e->fields, &u);
	}
}

/* Queues a journaled batch and applies it to the overlay (w->lock held). */
static void enqueue(wb *w, cJSON *writes, size_t bytes)
{
	batch *b = calloc(1, sizeof(*b));
	cJSON *it;
	if (!b) {
		cJSON_Delete(writes);
		return;
	}
	b->seq = ++w->next_seq;
	b->writes = writes;
	b->bytes = bytes;
	cJSON_ArrayForEach(it, writes) {
		al_write_op op;
		if (op_parse(&op, cJSON_GetStringValue(cJSON_GetObjectItem(it, "op"))) == 0)
			ov_apply(w, op, cJSON_GetStringValue(cJSON_GetObjectItem(it, "path")),
				cJSON_GetObjectItem(it, "fields"), cJSON_GetObjectItem(it, "mask"), b->seq);
		b->count++;
	}
	w->queued_writes += b->count;
	if (w->tail)
		w->tail->next = b;
	else
		w->head = b;
	w->tail = b;
}

static cJSON *encode(const al_write *writes, size_t count)
{
	cJSON *arr = cJSON_CreateArray();
	size_t i;
	for (i = 0; i < count; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "op", op_name(writes[i].op));
		cJSON_AddStringToObject(o, "path", writes[i].path);
		if (writes[i].fields)
			cJSON_AddItemToObject(o, "fields", cJSON_Duplicate(writes[i].fields, 1));
		if (writes[i].mask)
			cJSON_AddItemToObject(o, "mask", cJSON_Duplicate(writes[i].mask, 1));
		if (writes[i].pre == AL_PRE_EXISTS)
			cJSON_AddStringToObject(o, "pre", "exists");
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

/* Delivers the queued batches in order, several per backend commit. */
/* Forgets entries delivered a while ago (w->lock held). */
static void sweep(wb *w)
{
	int64_t now = al_now_us();
	size_t i;
	for (i = 0; i < OV_BUCKETS; i++) {
		ov_entry *e = w->ov[i], *next;
		for (; e; e = next) {
			next = e->next;
			if (e->delivered_us && now - e->delivered_us > DELIVERED_GRACE_US)
				ov_remove(w, e);
		}
	}
}

/* Errors after which a commit is kept and tried again: the backend was unreachable, busy or
 * refused the credentials, none of which says anything about the writes themselves. */
static int transient(int rc)
{
	return rc == AL_EIO || rc == AL_EAGAIN || rc == AL_ENOMEM || rc == AL_ERROR ||
		rc == AL_EACCES || rc == AL_EBUSY;
}

/* The local view of path without the refused batch: the entry is built again from the writes
 * still queued for it, or dropped so the backend's copy answers (w->lock held). A write queued
 * after the refused one that copied its content (a read-modify-write) keeps it: it will be
 * refused in turn. */
static void ov_rebuild(wb *w, const char *path)
{
	ov_entry *e = path ? ov_find(w, path, 0) : NULL;
	const batch *b;
	const cJSON *it;
	if (!path)
		return;
	if (e)
		ov_remove(w, e);
	for (b = w->head; b; b = b->next)
		cJSON_ArrayForEach(it, b->writes) {
			al_write_op op;
			const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(it, "path"));
			if (p && strcmp(p, path) == 0 &&
			    op_parse(&op, cJSON_GetStringValue(cJSON_GetObjectItem(it, "op"))) == 0)
				ov_apply(w, op, p, cJSON_GetObjectItem(it, "fields"),
					cJSON_GetObjectItem(it, "mask"), b->seq);
		}
}

/* Takes the deliverer's lock; a thread answering a file operation waits for a delivery under
 * way only as long as it may wait for the network (util.h). */
static int deliver_lock(wb *w)
{
	unsigned wait = al__foreground_wait();
	struct timespec ts;
	if (!wait) {
		pthread_mutex_lock(&w->deliver_lock);
		return 0;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += wait / 1000;
	ts.tv_nsec += (long)(wait % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	if (pthread_mutex_timedlock(&w->deliver_lock, &ts) == 0)
		return 0;
	return al_error_set(AL_EIO, "earlier writes are being delivered and the metastore has not "
		"answered within %u ms (%s)", wait, *w->last_error ? w->last_error : "no error yet");
}

static int deliver(wb *w)
{
	int rc = 0, one_at_a_time = 0;

	if ((rc = deliver_lock(w)))
		return rc;
	pthread_mutex_lock(&w->lock);
	sweep(w);
	pthread_mutex_unlock(&w->lock);
	for (;;) {
		batch *b, *first, *last;
		al_write *ws = NULL;
		size_t n = 0, bytes = 0;
		int done;
		cJSON *it;

		pthread_mutex_lock(&w->lock);
		first = w->head;
		/* Up to ~500 writes and COMMIT_BYTES per commit: few requests, under Firestore's 10 MiB
		 * request limit (a batch larger on its own goes alone; callers keep batches small). */
		for (last = first, b = first; b && n + b->count <= 500 && bytes + b->bytes <= COMMIT_BYTES;
		     last = b, b = b->next) {
			n += b->count;
			bytes += b->bytes;
			if (one_at_a_time)
				break;
		}
		if (first && n == 0) {
			n = first->count;
			last = first;
		}
		pthread_mutex_unlock(&w->lock);
		if (!first)
			break;
		ws = calloc(n ? n : 1, sizeof(*ws));
		if (!ws) {
			rc = al_error_set(AL_ENOMEM, "out of memory");
			break;
		}
		n = 0;
		/* Batches are only removed by this (serialised) deliverer: reading them unlocked is safe. */
		for (b = first;; b = b->next) {
			cJSON_ArrayForEach(it, b->writes) {
				const char *pre = cJSON_GetStringValue(cJSON_GetObjectItem(it, "pre"));
				if (op_parse(&ws[n].op, cJSON_GetStringValue(cJSON_GetObjectItem(it, "op"))))
					continue;
				ws[n].path = cJSON_GetStringValue(cJSON_GetObjectItem(it, "path"));
				ws[n].fields = cJSON_GetObjectItem(it, "fields");
				ws[n].mask = cJSON_GetObjectItem(it, "mask");
				ws[n].pre = pre && !strcmp(pre, "exists") ? AL_PRE_EXISTS : AL_PRE_NONE;
				n++;
			}
			if (b == last)
				break;
		}
		rc = al_store_commit(w->inner, ws, n);
		free(ws);
		if (transient(rc)) {
			/* Unreachable: keep everything, try again later. */
			pthread_mutex_lock(&w->lock);
			snprintf(w->last_error, sizeof(w->last_error), "%s", al_error_last());
			w->error_dropped = 0;
			pthread_mutex_unlock(&w->lock);
			break;
		}
		if (rc && first != last) {
			/* A commit is all or nothing: one refused batch held back the others. Deliver
			 * one at a time until it is found, then in commits again. */
			one_at_a_time = 1;
			rc = 0;
			continue;
		}
		pthread_mutex_lock(&w->lock);
		if (rc) {
			/* Refused for good (a limit, a precondition): reported with its path, not
			 * retried forever, and taken out of the local view below so that writes built
			 * from what reads show next do not carry it (README "Firestore"). */
			const char *path = cJSON_GetStringValue(cJSON_GetObjectItem(
				cJSON_GetArrayItem(first->writes, 0), "path"));
			snprintf(w->last_error, sizeof(w->last_error), "dropped a write to %s%s: %s",
				path ? path : "?", first->count > 1 ? " (and the writes committed with it)" : "",
				al_error_last());
			fprintf(stderr, "aletheia: %s\n", w->last_error);
			w->error_dropped = 1;
			one_at_a_time = 0;
		} else if (!w->error_dropped) {
			w->last_error[0] = '\0';   /* delivering again: an outage's error is over */
		}
		w->ticks++;
		do {
			b = w->head;
			w->head = b->next;
			if (!w->head)
				w->tail = NULL;
			w->queued_writes -= b->count;
			cJSON_ArrayForEach(it, b->writes) {
				ov_entry *e = ov_find(w, cJSON_GetStringValue(cJSON_GetObjectItem(it, "path")), 0);
				if (e && e->last_seq <= b->seq) {
					e->delivered_us = al_now_us();   /* the backend has it now */
					e->delivered_tick = w->ticks;
				}
			}
			done = b == last;
			if (rc)
				cJSON_ArrayForEach(it, b->writes)
					ov_rebuild(w, cJSON_GetStringValue(cJSON_GetObjectItem(it, "path")));
			cJSON_Delete(b->writes);
			free(b);
		} while (!done);
		pthread_mutex_unlock(&w->lock);
		rc = 0;
	}
	pthread_mutex_unlock(&w->deliver_lock);
	return rc;
}

int al_store_wb_flush(al_store_backend *base)
{
	wb *w = (wb *)base;
	uint64_t sealed = 0;
	int rc;

	if (base->free != wb_free)
		return 0;
	if ((rc = al_journal_rotate(&sealed, w->journal)))
		return rc;
	if ((rc = deliver(w)))
		return rc;
	pthread_mutex_lock(&w->lock);
	rc = w->head ? al_error_set(AL_EIO, "%s", *w->last_error ? w->last_error : "writes pending") : 0;
	pthread_mutex_unlock(&w->lock);
	/* Everything journaled up to the rotation is delivered: its files can go. */
	return rc ? rc : al_journal_drop(w->journal, sealed);
}

/* A commit that failed this way may still have reached the backend (a timeout, a reset, an
 * answer cut short): only reading back tells whether it was applied. */
static int maybe_applied(int rc)
{
	return rc == AL_EIO || rc == AL_EAGAIN || rc == AL_ERROR;
}

/* Whether the document read back is the one this create wrote: its creation time (the field
 * `created` of README "Where the data lives"; without one, every timestamp it wrote) holds the
 * same instant, to the microsecond a tag no other mount writes, and one nothing changes later. A
 * create without timestamps must match in every field, and only when this commit is known to
 * have been sent (strict 0): after AL_EEXISTS, identical fields may as well be an earlier
 * create's. */
static int created_by(const cJSON *mine, const al_doc *d, int strict)
{
	const cJSON *f = al_fields_get(mine, "created");
	int stamps = 0;
	if (cJSON_GetObjectItemCaseSensitive(f, "timestampValue"))
		return al_value_equal(f, al_fields_get(d->fields, "created"));
	cJSON_ArrayForEach(f, mine)
		if (cJSON_GetObjectItemCaseSensitive(f, "timestampValue")) {
			stamps++;
			if (!al_value_equal(f, al_fields_get(d->fields, f->string)))
				return 0;
		}
	if (stamps)
		return 1;
	if (strict)
		return 0;
	cJSON_ArrayForEach(f, mine)
		if (!al_value_equal(f, al_fields_get(d->fields, f->string)))
			return 0;
	return 1;
}

/* README "Firestore": a create-only commit whose outcome is unknown (its answer lost: rc may
 * have been applied, or AL_EEXISTS after the HTTP client sent it again) is decided by reading its
 * documents back from the backend itself (not the read cache's copies): all there and ours → 0;
 * one there and another's → AL_EEXISTS; none there → it was not applied, so it is sent once more
 * (a create cannot apply twice). AL_EIO, saying so, only when that cannot be known. */
static int create_outcome(wb *w, const al_write *writes, size_t count, int rc)
{
	al_store_backend *direct = al_store_cache_inner(w->inner);
	const char **paths = calloc(count, sizeof(*paths));
	const cJSON **mine = calloc(count, sizeof(*mine));
	al_doc **docs = calloc(count, sizeof(*docs));
	char first[512] = "", why[512];
	size_t n = 0, i;
	int attempt, ours, theirs, strict = rc == AL_EEXISTS;

	snprintf(why, sizeof(why), "%s", al_error_last());
	if (!paths || !mine || !docs) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < count; i++)
		if (writes[i].pre == AL_PRE_MISSING) {
			paths[n] = writes[i].path;
			mine[n++] = writes[i].fields;
		}
	snprintf(first, sizeof(first), "%s", n ? paths[0] : writes[0].path);
	for (attempt = 0;; attempt++) {
		long prev = al__wait_budget();
		unsigned fg = al__foreground_wait();
		int read;
		if (fg && (!prev || (long)fg < prev))
			al__wait_budget_set((long)fg);
		read = al_store_get_many(docs, direct, paths, n);
		al__wait_budget_set(prev);
		if (read) {
			rc = al_error_set(AL_EIO, "cannot tell whether %s was created: its commit %s (%s), and "
				"reading it back failed: %s", first, rc == AL_EEXISTS ? "was sent twice" :
				"got no answer", why, al_error_last());
			goto cleanup;
		}
		for (i = 0, ours = theirs = 0; i < n; i++) {
			ours += docs[i] && created_by(mine[i], docs[i], strict);
			theirs += docs[i] && !created_by(mine[i], docs[i], strict);
			al_doc_free(docs[i]);
			docs[i] = NULL;
		}
		if (n && ours == (int)n) {
			/* Applied: the read cache learns it as from a commit that answered. */
			al_store_cache_applied(w->inner, writes, count);
			al_error_clear();
			rc = 0;
			goto cleanup;
		}
		if (theirs || rc == AL_EEXISTS) {
			rc = al_error_set(AL_EEXISTS, "document %s already exists", first);
			goto cleanup;
		}
		/* Not there: not applied (yet). Sending it again is safe; the answer decides. */
		if (attempt == 1)
			break;
		rc = al_store_commit(w->inner, writes, count);
		if (rc == 0 || (rc != AL_EEXISTS && !maybe_applied(rc)))
			goto cleanup;
		strict = 0;   /* the first send may have landed late: identical fields are ours */
		snprintf(why, sizeof(why), "%s", al_error_last());
	}
	rc = al_error_set(AL_EIO, "cannot tell whether %s was created: its commit got no answer twice "
		"(%s), and it was not there when read back", first, why);
cleanup:
	free(paths);
	free(mine);
	free(docs);
	return rc;
}

static int wb_commit(al_store_backend *base, const al_write *writes, size_t count)
{
	wb *w = (wb *)base;
	cJSON *enc;
	char *text;
	size_t i;
	int rc, create = 0;

	/* What the backend would refuse is refused now, to the caller, before it is journaled:
	 * a write refused later can only be dropped (README "Firestore"). */
	for (i = 0; i < count; i++) {
		if ((rc = al_write_check(&writes[i])))
			return rc;
		create |= writes[i].pre == AL_PRE_MISSING;
	}
	if (create) {
		/* Only the backend decides which mount creates an id first; what was queued before
		 * goes first, so the new document's parents exist there. */
		if ((rc = al_store_wb_flush(base)))
			return al_error_set(rc, "cannot create %s while the metastore is unreachable: %s",
				writes[0].path, al_error_last());
		rc = al_store_commit(w->inner, writes, count);
		if (rc == AL_EEXISTS || maybe_applied(rc))
			rc = create_outcome(w, writes, count, rc);
		if (rc)
			return rc;
		/* The backend now answers for these documents: no older local view may shadow them. */
		pthread_mutex_lock(&w->lock);
		for (i = 0; i < count; i++) {
			ov_entry *e = ov_find(w, writes[i].path, 0);
			if (e)
				ov_remove(w, e);
		}
		pthread_mutex_unlock(&w->lock);
		return 0;
	}
	enc = encode(writes, count);
	if ((rc = al_json_print(&text, NULL, enc, 0))) {   /* exact doubles in the journal too */
		cJSON_Delete(enc);
		return rc;
	}
	pthread_mutex_lock(&w->lock);
	/* Journal, then overlay, under one lock: replay order is delivery order. */
	rc = al_journal_append(w->journal, text, strlen(text));
	if (rc == 0)
		enqueue(w, enc, strlen(text));
	else
		cJSON_Delete(enc);
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	free(text);
	return rc;
}

static al_doc *doc_new(const char *path, cJSON *fields, int64_t update_us)
{
	al_doc *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->path = strdup(path);
	d->fields = fields ? fields : cJSON_CreateObject();
	d->create_us = d->update_us = update_us;
	return d;
}

/* A delivered document as the backend answers it (d, whose update time is adjusted): its content
 * is the backend's, with other mounts' changes since; its update time stays the one this mount
 * showed for its own write while the backend's is still that write's (README "Known
 * limitations": a file's mtime moves once, when the entry goes), so two stats a moment apart
 * agree. w->lock held. */
static void delivered_time(ov_entry *e, al_doc *d)
{
	if (!e->backend_us)
		e->backend_us = d->update_us;
	if (d->update_us == e->backend_us)
		d->update_us = e->update_us;
}

static int wb_get(al_doc **out, al_store_backend *base, const char *path)
{
	wb *w = (wb *)base;
	ov_entry *e;
	cJSON *patch = NULL, *pmask = NULL;
	int64_t when = 0;
	uint64_t seq = 0;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&w->lock);
	if ((e = ov_find(w, path, 0)) && e->delivered_us) {
		/* delivered before this read: the backend answers with it */
		seq = e->last_seq;
		e = NULL;
	}
	if (e && e->deleted) {
		pthread_mutex_unlock(&w->lock);
		return al_error_set(AL_ENOTFOUND, "no document %s", path);
	}
	if (e && !e->patch) {
		*out = doc_new(path, cJSON_Duplicate(e->fields, 1), e->update_us);
		pthread_mutex_unlock(&w->lock);
		return *out ? 0 : al_error_set(AL_ENOMEM, "out of memory");
	}
	if (e) {
		patch = cJSON_Duplicate(e->fields, 1);
		pmask = cJSON_Duplicate(e->mask, 1);
		when = e->update_us;
	}
	pthread_mutex_unlock(&w->lock);
	rc = w->inner->get(out, w->inner, path);
	if (seq && rc == 0) {
		pthread_mutex_lock(&w->lock);
		if ((e = ov_find(w, path, 0)) && e->delivered_us && e->last_seq == seq && !e->deleted)
			delivered_time(e, *out);
		pthread_mutex_unlock(&w->lock);
	}
	if (patch) {
		if (rc == AL_ENOTFOUND) {   /* the update creates it */
			al_error_clear();
			rc = (*out = doc_new(path, NULL, when)) ? 0 : al_error_set(AL_ENOMEM, "out of memory");
		}
		if (rc == 0) {
			patch_apply((*out)->fields, path, patch, pmask);
			(*out)->update_us = when;
		}
	}
	cJSON_Delete(patch);
	cJSON_Delete(pmask);
	return rc;
}

static int cmp_docs(const void *a, const void *b)
{
	return strcmp(al_doc_id((*(al_doc *const *)a)->path), al_doc_id((*(al_doc *const *)b)->path));
}

static int in_collection(const char *path, const char *coll)
{
	size_t n = strlen(coll);
	return strncmp(path, coll, n) == 0 && path[n] == '/' && !strchr(path + n + 1, '/');
}

/* Documents with undelivered writes are answered one by one (merged onto the backend's copy
 * where needed); the others go to the backend in one request. */
static int wb_get_many(al_doc **out, al_store_backend *base, const char *const *paths, size_t n)
{
	wb *w = (wb *)base;
	const char **rest = calloc(n, sizeof(*rest));
	size_t *where = calloc(n, sizeof(*where)), m = 0, i;
	al_doc **got = calloc(n, sizeof(*got));
	int rc = 0;

	for (i = 0; i < n; i++)
		out[i] = NULL;
	if (!rest || !where || !got) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < n && rc == 0; i++) {
		ov_entry *e;
		int pending;
		pthread_mutex_lock(&w->lock);
		pending = (e = ov_find(w, paths[i], 0)) != NULL;
		pthread_mutex_unlock(&w->lock);
		if (!pending) {
			rest[m] = paths[i];
			where[m++] = i;
		} else if ((rc = wb_get(&out[i], base, paths[i])) == AL_ENOTFOUND) {
			al_error_clear();
			rc = 0;
		}
	}
	if (rc == 0 && m && (rc = al_store_get_many(got, w->inner, rest, m)) == 0)
		for (i = 0; i < m; i++)
			out[where[i]] = got[i];
cleanup:
	if (rc)
		for (i = 0; i < n; i++) {
			al_doc_free(out[i]);
			out[i] = NULL;
		}
	free(rest);
	free(where);
	free(got);
	return rc;
}

static int wb_list(al_doc_list **out, al_store_backend *base, const char *coll, const char *from,
	const char *to)
{
	wb *w = (wb *)base;
	al_doc_list *l = NULL;
	size_t i, k;
	uint64_t t0;
	int rc;

	pthread_mutex_lock(&w->lock);
	t0 = w->ticks;
	pthread_mutex_unlock(&w->lock);
	if ((rc = w->inner->list(&l, w->inner, coll, from, to)))
		return rc;
	pthread_mutex_lock(&w->lock);
	for (i = 0; i < OV_BUCKETS; i++) {
		ov_entry *e;
		for (e = w->ov[i]; e; e = e->next) {
			const char *id;
			al_doc *found = NULL;
			size_t at = 0;
			if (!in_collection(e->path, coll))
				continue;
			if (e->delivered_us && e->delivered_tick <= t0) {
				/* delivered before the listing was asked for: the listing holds it */
				for (k = 0; !e->deleted && k < l->count; k++)
					if (strcmp(l->docs[k]->path, e->path) == 0)
						delivered_time(e, l->docs[k]);
				continue;
			}
			id = al_doc_id(e->path);
			if ((from && strcmp(id, from) < 0) || (to && strcmp(id, to) >= 0))
				continue;
			for (k = 0; k < l->count; k++)
				if (strcmp(l->docs[k]->path, e->path) == 0) {
					found = l->docs[k];
					at = k;
					break;
				}
			if (e->deleted) {
				if (found) {
					al_doc_free(found);
					memmove(l->docs + at, l->docs + at + 1, (l->count - at - 1) * sizeof(al_doc *));
					l->count--;
				}
			} else if (found && e->patch) {
				patch_apply(found->fields, e->path, e->fields, e->mask);
				found->update_us = e->update_us;
			} else if (found) {
				cJSON_Delete(found->fields);
				found->fields = cJSON_Duplicate(e->fields, 1);
				found->update_us = e->update_us;
			} else {
				al_doc **grown = realloc(l->docs, (l->count + 1) * sizeof(al_doc *));
				al_doc *d = doc_new(e->path, e->patch ? NULL : cJSON_Duplicate(e->fields, 1),
					e->update_us);
				if (d && e->patch)
					patch_apply(d->fields, e->path, e->fields, e->mask);
				if (!grown || !d) {
					al_doc_free(d);
					if (grown)
						l->docs = grown;
					continue;
				}
				l->docs = grown;
				l->docs[l->count++] = d;
			}
		}
	}
	pthread_mutex_unlock(&w->lock);
	qsort(l->docs, l->count, sizeof(al_doc *), cmp_docs);
	*out = l;
	return 0;
}

static int wb_list_collections(char ***out, size_t *count, al_store_backend *base, const char *doc)
{
	wb *w = (wb *)base;
	char **ids = NULL, **grown;
	size_t n = 0, i, k, dl = strlen(doc);
	uint64_t t0;
	int rc;

	pthread_mutex_lock(&w->lock);
	t0 = w->ticks;
	pthread_mutex_unlock(&w->lock);
	if ((rc = w->inner->list_collections(&ids, &n, w->inner, doc)))
		return rc;
	pthread_mutex_lock(&w->lock);
	for (i = 0; i < OV_BUCKETS; i++) {
		ov_entry *e;
		for (e = w->ov[i]; e; e = e->next) {
			const char *rest = e->path + dl + 1, *slash;
			char *id;
			int dup = 0;
			if (e->deleted || (e->delivered_us && e->delivered_tick <= t0) ||
			    (dl && (strncmp(e->path, doc, dl) != 0 || e->path[dl] != '/')))
				continue;
			if (!dl)
				rest = e->path;
			slash = strchr(rest, '/');
			if (!slash || strchr(slash + 1, '/'))
				continue;   /* not a document directly in a collection of doc */
			id = strndup(rest, (size_t)(slash - rest));
			for (k = 0; id && k < n; k++)
				dup |= strcmp(ids[k], id) == 0;
			if (!id || dup || !(grown = realloc(ids, (n + 2) * sizeof(char *)))) {
				free(id);
				continue;
			}
			ids = grown;
			ids[n++] = id;
			ids[n] = NULL;
		}
	}
	pthread_mutex_unlock(&w->lock);
	*out = ids;
	*count = n;
	return 0;
}

uint64_t al_store_wb_pending(al_store_backend *base)
{
	wb *w = (wb *)base;
	uint64_t n;
	if (!base || base->free != wb_free)
		return 0;
	pthread_mutex_lock(&w->lock);
	n = w->queued_writes;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void al_store_wb_last_error(char *buf, size_t cap, al_store_backend *base)
{
	wb *w = (wb *)base;
	if (!base || base->free != wb_free) {
		snprintf(buf, cap, "%s", "");
		return;
	}
	pthread_mutex_lock(&w->lock);
	snprintf(buf, cap, "%s", w->last_error);
	pthread_mutex_unlock(&w->lock);
}

static char *wb_describe(al_store_backend *base)
{
	wb *w = (wb *)base;
	char *inner = w->inner->describe ? w->inner->describe(w->inner) : NULL, *out = NULL;
	if (asprintf(&out, "%swrite_behind: %llu pending\n", inner ? inner : "",
		    (unsigned long long)al_store_wb_pending(base)) < 0)
		out = NULL;
	free(inner);
	return out;
}

static void *flusher(void *arg)
{
	wb *w = arg;
	struct timespec ts;
	unsigned backoff = w->interval_ms;

	al__thread_set_background(1);   /* nobody waits for it: long timeouts and retries */
	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += backoff / 1000;
		ts.tv_nsec += (long)(backoff % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		/* While backing off, new writes do not cut the wait short: only the clock does. */
		while (pthread_cond_timedwait(&w->wake, &w->lock, &ts) == 0 && backoff > w->interval_ms && !w->stop)
			;
		sweep(w);
		if (w->stop || !w->head)
			continue;
		pthread_mutex_unlock(&w->lock);
		/* Unreachable: back off (up to 5 s) so an outage costs few requests, and delivery
		 * resumes within seconds of the backend's return. */
		if (al_store_wb_flush(&w->base) == 0)
			backoff = w->interval_ms;
		else if ((backoff *= 2) > 5000)
			backoff = 5000;
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static int replay(void *ctx, const void *rec, size_t len)
{
	wb *w = ctx;
	cJSON *writes = cJSON_ParseWithLength(rec, len);
	if (!cJSON_IsArray(writes)) {
		cJSON_Delete(writes);
		return 0;   /* a record we cannot read is skipped, not fatal */
	}
	pthread_mutex_lock(&w->lock);
	enqueue(w, writes, len);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static void wb_free(al_store_backend *base)
{
	wb *w = (wb *)base;
	size_t i;
	if (!w)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->stop = 1;
		pthread_cond_signal(&w->wake);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
		al_store_wb_flush(base);   /* what cannot be delivered stays in the journal */
	}
	while (w->head) {
		batch *b = w->head;
		w->head = b->next;
		cJSON_Delete(b->writes);
		free(b);
	}
	for (i = 0; i < OV_BUCKETS; i++)
		while (w->ov[i])
			ov_remove(w, w->ov[i]);
	al_journal_free(w->journal);
	if (w->inner)
		al_store_free(w->inner);
	pthread_mutex_destroy(&w->lock);
	pthread_mutex_destroy(&w->deliver_lock);
	pthread_cond_destroy(&w->wake);
	free(w);
}

int al_store_wb_new(al_store_backend **out, al_store_backend *inner, const char *journal_dir,
	unsigned interval_ms)
{
	wb *w = NULL;
	int rc;

	*out = NULL;
	if ((rc = al_store_backend_check(inner)) || !(w = calloc(1, sizeof(*w)))) {
		al_store_free(inner);
		return rc ? rc : al_error_set(AL_ENOMEM, "out of memory");
	}
	w->base.version = AL_STORE_BACKEND_VERSION;
	w->base.name = "write-behind";
	w->base.get = wb_get;
	w->base.get_many = wb_get_many;
	w->base.list = wb_list;
	w->base.list_collections = wb_list_collections;
	w->base.commit = wb_commit;
	w->base.describe = wb_describe;
	w->base.free = wb_free;
	w->inner = inner;
	w->interval_ms = interval_ms ? interval_ms : 1000;
	pthread_mutex_init(&w->lock, NULL);
	pthread_mutex_init(&w->deliver_lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	if ((rc = al_journal_open(&w->journal, journal_dir)) ||
	    (rc = al_journal_replay(w->journal, replay, w)))
		goto fail;
	if (pthread_create(&w->thread, NULL, flusher, w) != 0) {
		rc = al_error_set(AL_ERROR, "cannot start the write-behind thread");
		goto fail;
	}
	w->started = 1;
	*out = &w->base;
	return 0;
fail:
	wb_free(&w->base);
	return rc;
}
