/* aletheia: files kept as blobs — a run's and an experiment's artifacts/, a dataset's files, a
 * run's output.log: their records, folders, deletes and renames (README "artifacts", "datasets").
 * Reading and writing them through a handle is blobhandle.c's. */
#include "core/store/store_cache.h"
#include "internal.h"

/* Handles writing files that are deleted, replaced or moved (a working folder: README
 * "artifacts"), each held under its own lock meanwhile so none is halfway through recording. */
typedef struct held {
	al_file **f;
	size_t n;
} held;

/* The document of the record at n->rest in n's blob collection ("coll/<encoded rest>"); NULL
 * when out of memory. */
char *blob_record_doc(const node *n)
{
	char *id = al_id_encode(n->rest), *doc = id ? xasprintf("%s/%s", n->coll, id) : NULL;
	free(id);
	return doc;
}

/* Range of encoded ids under the folder `rest` of a blob collection: [from, to). */
static void child_range(char **from, char **to, const char *rest)
{
	char *enc;
	if (!*rest) {
		*from = *to = NULL;
		return;
	}
	/* Children of "a/b" have ids starting "a%2Fb%2F"; 'G' follows 'F'. */
	enc = al_id_encode(rest);
	*from = xasprintf("%s%%2F", enc);
	*to = xasprintf("%s%%2G", enc);
	free(enc);
}

/* The creator a file's or folder's record names (record_file, blob_mkdir_doc), if any: its owner
 * where files are their creators' (dispatch.c: K_OPEN; README "Many users on one machine"). */
static void record_creator(al_attr *out, const al_doc *d)
{
	int64_t uid, gid;
	if (al_fields_get_int(&uid, d->fields, "uid") == 0 && al_fields_get_int(&gid, d->fields, "gid") == 0 &&
	    uid >= 0 && gid >= 0) {
		out->owned = 1;
		out->uid = (uid_t)uid;
		out->gid = (gid_t)gid;
	}
}

/* Attributes of a file or folder in a blob collection from its record d. */
static void record_attr(al_attr *out, const al_tree *t, int dataset_file, const al_doc *d, unsigned mode)
{
	const char *type = al_fields_get_string(d->fields, "type");
	int64_t size = 0, mtime = d->update_us;
	al_fields_get_int(&size, d->fields, "size");
	al_fields_get_time(&mtime, d->fields, "mtime");
	if (type && strcmp(type, "dir") == 0)
		attr_dir(out, mtime);
	else if (type && strcmp(type, "link") == 0) {
		const char *target = al_fields_get_string(d->fields, "target");
		link_attr(out, target ? strlen(target) : 0, mtime);
	} else {
		int exec = 0;
		al_fields_get_bool(&exec, d->fields, "exec");
		attr_file(out, exec ? mode | 0111 : mode, (uint64_t)size, mtime);
		out->immutable = 1;
		/* README "datasets": write-once, so only a delete or a rename changes what the name
		 * means; through this mount the kernel drops or moves its entry itself, and a local
		 * store has no other writer (attr_ttl_us), unlike Firestore's other mounts. */
		out->stable_name = dataset_file && t->attr_ttl_us == INT64_MAX;
	}
	record_creator(out, d);
}

#define RECORDS_KEPT_MAX 100000   /* of one listing (dataset_records_keep) */

/* One listed record of a dataset's files, kept where a lookup would read it: a dataset file's row
 * (not a generated name), no scratch file of that name, no writer (its size is the writer's). */
static void record_keep(al_tree *t, const char *ds_path, const al_doc *d, uint64_t g0)
{
	char *rest = al_id_decode(al_doc_id(d->path)), *path = NULL;   /* as a lookup finds it */
	al_attr a;
	node n;
	int file_row = 0;

	if (!rest || check_rest_names(rest) || !(path = xasprintf("%s/%s", ds_path, rest)))
		goto cleanup;
	if (node_parse(&n, path) == 0) {
		file_row = n.k == &kind_dataset_file;
		node_free(&n);
	}
	if (!file_row || scratch_attr(&a, t, path))
		goto cleanup;
	if (!writer_attr(&a, t, path, kind_dataset_file.mode)) {
		record_attr(&a, t, 1, d, kind_dataset_file.mode);
		a.owned = 0;   /* everything is the mounting user's (getattr_recorded) */
		attrcache_put(t, path, &a, g0);
	}
	if (t->attr_ttl_us == INT64_MAX && t->frcache) {   /* reccache_wanted */
		file_rec r;
		file_rec_from_doc(&r, d);
		reccache_put(t, d->path, &r, g0);
		file_rec_clear(&r);
	}
cleanup:
	free(path);
	free(rest);
}

/* A dataset's file records as a listing of its "files" collection (l, read while the generation
 * was g0) found them, kept as a lookup and an open of each would keep them: attributes (as
 * getattr_recorded answers them) and records (reccache_put), so the files a scan (dsprefetch.c)
 * or a listing found cost no document read each. ds_path is the dataset's folder. A shared
 * mount's owners need the dataset's own record: those are left to the lookups. */
void dataset_records_keep(al_tree *t, const char *ds_path, const al_doc_list *l, uint64_t g0)
{
	/* A larger dataset keeps its first files only: the attribute cache empties itself when full
	 * (attrcache.c, 200,000 answers), and a listing must not do that over and over. */
	size_t n = l->count < RECORDS_KEPT_MAX ? l->count : RECORDS_KEPT_MAX;
	for (size_t i = 0; !t->multi_user && i < n; i++)
		record_keep(t, ds_path, l->docs[i], g0);
}

/* The folder of n's dataset ("/P/datasets/D"). */
char *dataset_folder(const node *n)
{
	return xasprintf("/%s/datasets/%s", n->project, n->dataset);
}

/* Attributes of a file or folder in a blob collection (artifacts, dataset files, logs). */
int blob_attr(al_attr *out, al_tree *t, const node *n, const char *path, unsigned mode)
{
	al_doc *d = NULL;
	al_doc_list *l = NULL;
	char *doc, *from = NULL, *to = NULL;
	int rc;

	if (!*n->rest) {
		/* A collection's root shows its last change, kept on its owner (record_file). */
		int64_t mtime = t->mount_us;
		if (get_doc(&d, t, node_owner_doc(n)) == 0 && al_fields_get_time(&mtime, d->fields, "files_updated") != 0)
			mtime = d->update_us;
		al_doc_free(d);
		al_error_clear();
		attr_dir(out, mtime);
		return 0;
	}
	if (writer_attr(out, t, path, mode))
		return 0;
	doc = blob_record_doc(n);
	uint64_t g0 = attrcache_gen(t);
	rc = al_store_get(&d, t->store, doc);
	if (rc == 0 && doc && reccache_wanted(t, n)) {
		/* the open that usually follows a lookup needs the record too (blobhandle.c) */
		file_rec r;
		file_rec_from_doc(&r, d);
		reccache_put(t, doc, &r, g0);
		file_rec_clear(&r);
	}
	if (rc == 0) {
		record_attr(out, t, n->k == &kind_dataset_file, d, mode);
		goto cleanup;
	}
	if (rc != AL_ENOTFOUND)
		goto cleanup;
	child_range(&from, &to, n->rest);
	if ((rc = al_store_list(&l, t->store, n->coll, from, to)))
		goto cleanup;
	if (l->count > 0) {
		int64_t newest = 0;
		for (size_t i = 0; i < l->count; i++)
			if (l->docs[i]->update_us > newest)
				newest = l->docs[i]->update_us;
		attr_dir(out, newest);
		/* a folder made by its files: the first one's creator (the one who copied it in) */
		record_creator(out, l->docs[0]);
	} else
		rc = al_error_set(AL_ENOTFOUND, "no such file: %s", n->rest);
cleanup:
	al_doc_list_free(l);
	al_doc_free(d);
	free(doc);
	free(from);
	free(to);
	return rc;
}

static int list_blob_children(keyset *k, al_tree *t, const node *n)
{
	al_doc_list *l = NULL;
	char *from = NULL, *to = NULL, *ds = NULL;
	uint64_t g0 = attrcache_gen(t);
	size_t i;
	int rc;
	child_range(&from, &to, n->rest);
	rc = al_store_list(&l, t->store, n->coll, from, to);
	for (i = 0; rc == 0 && i < l->count; i++) {
		char *full = al_id_decode(al_doc_id(l->docs[i]->path));
		if (full)
			child_of(k, n->rest, full);
		free(full);
	}
	/* The records were read anyway: the lookups of `ls -l`, `find` or a loader that lists
	 * first are answered from memory. */
	if (rc == 0 && n->k->owner == O_DATASET && (ds = dataset_folder(n)))
		dataset_records_keep(t, ds, l, g0);
	free(ds);
	al_doc_list_free(l);
	free(from);
	free(to);
	return rc;
}

static int blob_mkdir_doc(al_tree *t, const node *n, const al_caller *c)
{
	cJSON *f = cJSON_CreateObject();
	char *doc = blob_record_doc(n);
	int rc;
	al_fields_set(f, "path", al_value_string(n->rest));
	al_fields_set(f, "type", al_value_string("dir"));
	al_fields_set(f, "mtime", al_value_time(al_now_us()));
	set_creator(f, t, c);
	rc = commit1(t, AL_WRITE_SET, doc, f, AL_PRE_MISSING);
	cJSON_Delete(f);
	free(doc);
	return rc;
}

static int blob_delete(al_tree *t, const node *n)
{
	char *doc = blob_record_doc(n);
	int rc = commit1(t, AL_WRITE_DELETE, doc, NULL, AL_PRE_EXISTS);
	free(doc);
	return rc;
}

/* Locks every blob writer at or under a or b (b may be NULL): all or none, trylock under t->lock
 * (handles take f->mu first and t->lock second), again after a pause while one is busy. */
static int hold_writers(held *h, al_tree *t, const char *a, const char *b)
{
	memset(h, 0, sizeof(*h));
	for (;;) {
		al_file *f;
		size_t cap = 0, i;
		int busy = 0;
		pthread_mutex_lock(&t->lock);
		for (f = t->writers; f; f = f->next)
			cap += f->kind == F_BLOB_WRITE && (path_under(a, f->path) || (b && path_under(b, f->path)));
		if (cap && !(h->f = calloc(cap, sizeof(*h->f)))) {
			pthread_mutex_unlock(&t->lock);
			return al_error_set(AL_ENOMEM, "out of memory");
		}
		for (f = t->writers; f && !busy; f = f->next) {
			if (f->kind != F_BLOB_WRITE || !(path_under(a, f->path) || (b && path_under(b, f->path))))
				continue;
			if (pthread_mutex_trylock(&f->mu) != 0)
				busy = 1;
			else
				h->f[h->n++] = f;
		}
		pthread_mutex_unlock(&t->lock);
		if (!busy)
			return 0;
		for (i = 0; i < h->n; i++)
			pthread_mutex_unlock(&h->f[i]->mu);
		free(h->f);
		memset(h, 0, sizeof(*h));
		usleep(1000);
	}
}

static size_t held_count(const held *h, const char *path)
{
	size_t i, n = 0;
	for (i = 0; i < h->n; i++)
		n += path_under(path, h->f[i]->path);
	return n;
}

/* The held writers at or under path record nothing at their close: their file is gone. */
static void detach_held(al_tree *t, held *h, const char *path)
{
	size_t i;
	pthread_mutex_lock(&t->lock);
	for (i = 0; i < h->n; i++)
		if (path_under(path, h->f[i]->path)) {
			al_file **p;
			__atomic_store_n(&h->f[i]->detached, 1, __ATOMIC_SEQ_CST);
			for (p = &t->writers; *p; p = &(*p)->next)
				if (*p == h->f[i]) {
					*p = h->f[i]->next;
					break;
				}
		}
	pthread_mutex_unlock(&t->lock);
}

/* The held writers under from follow their file to to: their close records the new name. */
static void move_held(al_tree *t, held *h, const char *from, const char *to)
{
	size_t i, flen = strlen(from);
	pthread_mutex_lock(&t->lock);
	for (i = 0; i < h->n; i++) {
		al_file *f = h->f[i];
		char *np;
		node nn;
		if (__atomic_load_n(&f->detached, __ATOMIC_SEQ_CST) || !path_under(from, f->path))
			continue;
		np = xasprintf("%s%s", to, f->path + flen);
		if (np && node_parse(&nn, np) == 0) {
			node_free(&f->n);
			f->n = nn;
			free(f->path);
			f->path = np;
		} else {
			free(np);
			__atomic_store_n(&f->detached, 1, __ATOMIC_SEQ_CST);   /* cannot follow: keep nothing stale */
		}
	}
	pthread_mutex_unlock(&t->lock);
}

static void release_held(held *h)
{
	size_t i;
	for (i = 0; i < h->n; i++)
		pthread_mutex_unlock(&h->f[i]->mu);
	free(h->f);
	memset(h, 0, sizeof(*h));
}

/* Deletes a file of a blob folder: its record, and whatever handles still writing it would
 * record at close (README "artifacts": deleted files stop being listed). */
int blob_remove(al_tree *t, const node *n, const char *path)
{
	al_doc *d = NULL;
	char *doc = blob_record_doc(n);
	const char *type;
	held h;
	int rc;

	if ((rc = hold_writers(&h, t, path, NULL)))
		goto cleanup;
	rc = al_store_get(&d, t->store, doc);
	if (rc == 0 && (type = al_fields_get_string(d->fields, "type")) && strcmp(type, "dir") == 0)
		rc = al_error_set(AL_EISDIR, "%s is a folder", n->rest);
	else if (rc == 0)
		rc = commit1(t, AL_WRITE_DELETE, doc, NULL, AL_PRE_NONE);
	else if (rc == AL_ENOTFOUND && held_count(&h, path))
		rc = 0;   /* written, never closed yet */
	else if (rc == AL_ENOTFOUND)
		rc = al_error_set(AL_ENOTFOUND, "no such file: %s", n->rest);
	if (rc == 0)
		detach_held(t, &h, path);
	release_held(&h);
cleanup:
	al_doc_free(d);
	free(doc);
	return rc;
}

/* Removes an empty folder of a blob folder (its folder document, if it has one). */
int blob_rmdir(al_tree *t, const node *n, const char *path)
{
	al_doc_list *l = NULL;
	char *from = NULL, *to = NULL, *doc = blob_record_doc(n);
	held h;
	int rc;

	if ((rc = hold_writers(&h, t, path, NULL)))
		goto cleanup;
	child_range(&from, &to, n->rest);
	if ((rc = al_store_list(&l, t->store, n->coll, from, to)) == 0 && (l->count || h.n))
		rc = al_error_set(AL_ENOTEMPTY, "%s is not empty", n->rest);
	if (rc == 0)
		rc = commit1(t, AL_WRITE_DELETE, doc, NULL, AL_PRE_NONE);
	release_held(&h);
cleanup:
	al_doc_list_free(l);
	free(from);
	free(to);
	free(doc);
	return rc;
}

/* A running run's artifacts/, and an experiment's while one of its runs is running, are working
 * folders (README "artifacts"): their files and folders can be deleted without --allow-delete.
 * Otherwise they are guarded like the rest (rm -rf of a project without it removes nothing). */
int working_folder(al_tree *t, const node *n)
{
	al_doc_list *runs = NULL;
	char *coll;
	int running = 0;

	if (!*n->rest)
		return 0;
	if (n->k->owner == O_RUN)
		return require_running(t, n) == 0;
	if (n->k->owner != O_EXPERIMENT || !(coll = xasprintf("%s/runs", n->exp_doc)))
		return 0;
	if (al_store_list(&runs, t->store, coll, NULL, NULL) == 0)
		for (size_t i = 0; i < runs->count && !running; i++)
			running = run_is_running(runs->docs[i]);
	al_doc_list_free(runs);
	free(coll);
	al_error_clear();
	return running;
}

/* The writes of one move, in one commit: each document set under its new name, then deleted. */
typedef struct move_writes {
	al_write *w;
	cJSON **fields;
	char **paths;
	size_t n, cap;
} move_writes;

static int mw_reserve(move_writes *m, size_t more)
{
	size_t cap = m->cap ? m->cap : 8;
	al_write *w;
	cJSON **f;
	char **p;
	if (m->n + more <= m->cap)
		return 0;
	while (cap < m->n + more)
		cap *= 2;
	if ((w = realloc(m->w, cap * sizeof(*w))))
		m->w = w;
	if ((f = realloc(m->fields, cap * sizeof(*f))))
		m->fields = f;
	if ((p = realloc(m->paths, cap * sizeof(*p))))
		m->paths = p;
	if (!w || !f || !p)
		return al_error_set(AL_ENOMEM, "out of memory");
	memset(m->fields + m->cap, 0, (cap - m->cap) * sizeof(*f));
	memset(m->paths + m->cap, 0, (cap - m->cap) * sizeof(*p));
	m->cap = cap;
	return 0;
}

static void mw_add(move_writes *m, al_write_op op, const char *path, char *own_path, cJSON *fields,
	al_precondition pre)
{
	m->paths[m->n] = own_path;
	m->fields[m->n] = fields;
	m->w[m->n++] = (al_write){op, own_path ? own_path : path, fields, pre, NULL};
}

/* The record src moved to the path `rest` of collection coll. */
static int mw_move(move_writes *m, const al_doc *src, const char *coll, const char *rest,
	al_precondition pre)
{
	char *id = al_id_encode(rest), *to = id ? xasprintf("%s/%s", coll, id) : NULL;
	cJSON *f = cJSON_Duplicate(src->fields, 1);
	int rc = mw_reserve(m, 2);
	free(id);
	if (rc == 0 && (!to || !f))
		rc = al_error_set(AL_ENOMEM, "out of memory");
	if (rc) {
		free(to);
		cJSON_Delete(f);
		return rc;
	}
	al_fields_set(f, "path", al_value_string(rest));
	mw_add(m, AL_WRITE_SET, NULL, to, f, pre);
	mw_add(m, AL_WRITE_DELETE, src->path, NULL, NULL, AL_PRE_NONE);
	return 0;
}

static void mw_free(move_writes *m)
{
	for (size_t i = 0; i < m->n; i++) {
		cJSON_Delete(m->fields[i]);
		free(m->paths[i]);
	}
	free(m->w);
	free(m->fields);
	free(m->paths);
}

/* The records under the folder `rest` of coll (with from/to of child_range). */
static int list_under(al_doc_list **out, al_tree *t, const char *coll, const char *rest)
{
	char *lo = NULL, *hi = NULL;
	int rc;
	child_range(&lo, &hi, rest);
	rc = al_store_list(out, t->store, coll, lo, hi);
	free(lo);
	free(hi);
	return rc;
}

/* Moves the file or folder `from` to `to` inside one blob collection, in one commit. Writers of
 * `from` (writing) may hold content not recorded yet, or the only content: they follow the
 * file (move_held), so a file still being written moves too; a replaced target's record goes. */
static int blob_move(al_tree *t, const node *a, const node *b, int noreplace, size_t writing,
	size_t target_writing)
{
	al_doc_list *l = NULL;
	al_doc *d = NULL, *existing = NULL;
	char *from_id = al_id_encode(a->rest), *to_id = al_id_encode(b->rest);
	char *from_doc = xasprintf("%s/%s", a->coll, from_id), *to_doc = xasprintf("%s/%s", b->coll, to_id);
	move_writes m = {0};
	size_t i;
	int rc;
	/* A dataset's new names are created only if no other mount took them (write-once). */
	al_precondition target_pre = (b->k->flags & K_WRITE_ONCE) ? AL_PRE_MISSING : AL_PRE_NONE;

	if ((al_store_get(&existing, t->store, to_doc) == 0 || target_writing) && noreplace) {
		rc = al_error_set(AL_EEXISTS, "%s exists", b->rest);
		goto cleanup;
	}
	/* A folder is replaced only when empty (the kernel checks the kinds, not the contents). */
	if ((rc = list_under(&l, t, b->coll, b->rest)) || (l->count &&
	    (rc = al_error_set(AL_ENOTEMPTY, "%s is not empty", b->rest))))
		goto cleanup;
	al_doc_list_free(l);
	l = NULL;
	if ((rc = list_under(&l, t, a->coll, a->rest)) || (rc = mw_reserve(&m, 1)))
		goto cleanup;
	rc = al_store_get(&d, t->store, from_doc);
	if (rc == 0)
		rc = mw_move(&m, d, b->coll, b->rest, target_pre);
	else if (rc == AL_ENOTFOUND && l->count == 0 && writing) {
		/* Not closed yet: only its writers move; what the target held is replaced. */
		if (existing)
			mw_add(&m, AL_WRITE_DELETE, to_doc, NULL, NULL, AL_PRE_NONE);
		rc = 0;
	} else if (rc == AL_ENOTFOUND && l->count)
		rc = 0;   /* a folder without a record of its own */
	else if (rc == AL_ENOTFOUND)
		rc = al_error_set(AL_ENOTFOUND, "no such file: %s", a->rest);
	for (i = 0; rc == 0 && i < l->count; i++) {
		char *p = al_id_decode(al_doc_id(l->docs[i]->path)), *np;
		if (!p)
			continue;
		if (!(np = xasprintf("%s%s", b->rest, p + strlen(a->rest))))
			rc = al_error_set(AL_ENOMEM, "out of memory");
		else
			rc = mw_move(&m, l->docs[i], b->coll, np, target_pre);
		free(p);
		free(np);
	}
	if (rc == 0 && m.n)
		rc = tree_commit(t, m.w, m.n);
cleanup:
	mw_free(&m);
	al_doc_free(d);
	al_doc_free(existing);
	al_doc_list_free(l);
	free(from_id);
	free(to_id);
	free(from_doc);
	free(to_doc);
	return rc;
}

/* The write that marks a change in a blob collection on the document owning it: a dataset becomes
 * stale (its version is recomputed before anyone reads or links it, also after a crash: README
 * "datasets"); a run's or experiment's files_updated is its artifacts/ folder's mtime. */
static al_write owner_write(cJSON **fields, const node *n, int64_t now)
{
	const char *doc = node_owner_doc(n);
	*fields = cJSON_CreateObject();
	al_fields_set(*fields, "files_updated", al_value_time(now));
	if (n->k->owner == O_DATASET)
		al_fields_set(*fields, "stale", al_value_bool(1));
	return (al_write){AL_WRITE_UPDATE, doc, *fields, AL_PRE_EXISTS, NULL};
}

/* The same mark as a commit of its own, before a change that has none (a delete, a rename): a
 * crash after it costs a needless recomputation, never a stale version. A dataset's mark, the
 * change and the note for its version (owner_done) go under ds_lock, as record_file's: a version
 * computed between the mark and the change would clear the mark without seeing the change, and
 * after a kill -9 nothing would recompute it. */
static int owner_mark(al_tree *t, const node *n)
{
	cJSON *f = NULL;
	al_write w = owner_write(&f, n, al_now_us());
	int rc;
	if (n->k->owner == O_DATASET)
		pthread_mutex_lock(&t->ds_lock);
	if ((rc = tree_commit(t, &w, 1)) && n->k->owner == O_DATASET)
		pthread_mutex_unlock(&t->ds_lock);
	cJSON_Delete(f);
	return rc;
}

/* After owner_mark succeeded: the change (rc) is made or failed; a dataset's version follows. */
static int owner_done(al_tree *t, const node *n, int rc)
{
	if (n->k->owner != O_DATASET)
		return rc;
	if (rc == 0)
		dataset_changed(t, n->ds_doc);
	pthread_mutex_unlock(&t->ds_lock);
	return rc;
}

/* Records a file of a blob collection (artifacts, dataset files, logs) whose content is at uri:
 * its record, and with stored the blob's own files/{hash} record (with its piece hashes, when
 * given); a dataset's version follows.
 * Closed files and imported ones (uri a URL outside the blob store) both come here. mtime_us
 * MTIME_NOW: now (0 is a time like any other: files of SOURCE_DATE_EPOCH=0 builds). With create, the record is create-only (a new dataset file: README "datasets", write-once
 * across mounts): when the name is taken meanwhile, the same content there is success, other
 * content AL_EPERM. */
int record_file(al_tree *t, const node *n, const char *hex, uint64_t size, const char *uri,
	int stored, const al_pieces *pieces, int64_t mtime_us, int create, const al_file *by)
{
	char *doc = NULL, *fdoc = NULL, *phex = NULL;
	cJSON *fields = NULL, *file = NULL, *piece_fields = NULL, *owner = NULL;
	int rc;
	int64_t now = al_now_us();

	doc = blob_record_doc(n);
	fdoc = xasprintf("files/%s", hex);
	if (!doc || !fdoc) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	fields = cJSON_CreateObject();
	al_fields_set(fields, "path", al_value_string(n->rest));
	al_fields_set(fields, "size", al_value_int((int64_t)size));
	al_fields_set(fields, "hash", al_value_string(hex));
	al_fields_set(fields, "blob", al_value_string(uri ? uri : ""));
	al_fields_set(fields, "mtime", al_value_time(mtime_us != MTIME_NOW ? mtime_us : now));
	if (by && __atomic_load_n(&by->exec, __ATOMIC_RELAXED))
		al_fields_set(fields, "exec", al_value_bool(1));   /* chmod +x (README "artifacts") */
	if (by && by->has_creator) {
		/* whose file it is where files are their creators' (README "Many users on one machine") */
		al_fields_set(fields, "uid", al_value_int((int64_t)by->creator_uid));
		al_fields_set(fields, "gid", al_value_int((int64_t)by->creator_gid));
	}
	file = cJSON_CreateObject();
	al_fields_set(file, "size", al_value_int((int64_t)size));
	al_fields_set(file, "blob", al_value_string(uri ? uri : ""));
	al_fields_set(file, "created", al_value_time(now));
	if (pieces && pieces->count) {
		/* At most AL_PIECES_MAX × 16 hex digits: far below Firestore's 1 MiB per document. */
		if (!(phex = al_pieces_format(pieces)) || !(piece_fields = cJSON_CreateObject())) {
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto cleanup;
		}
		al_fields_set(piece_fields, "piece_size", al_value_int((int64_t)pieces->size));
		al_fields_set(piece_fields, "pieces", al_value_string(phex));
		al_fields_set(file, "piece_size", al_value_int((int64_t)pieces->size));
		al_fields_set(file, "pieces", al_value_string(phex));
	}
	{
		/* One commit: the file's record, the blob's own record unless it is known already
		 * (content is stored once; one stored by an older version gains its piece hashes; a
		 * create-only write would wait for a remote backend), and the owner's change mark. A
		 * dataset's mark goes in under ds_lock, so that a version being computed cannot clear
		 * it without seeing this file. */
		al_doc *known = NULL;
		al_write w[3];
		size_t nw = 0;
		if (stored && al_store_get(&known, t->store, fdoc) != 0)
			w[nw++] = (al_write){AL_WRITE_SET, fdoc, file, AL_PRE_NONE, NULL};
		else if (stored && piece_fields && !al_fields_get(known->fields, "pieces"))
			w[nw++] = (al_write){AL_WRITE_UPDATE, fdoc, piece_fields, AL_PRE_NONE, NULL};
		w[nw++] = (al_write){AL_WRITE_SET, doc, fields, create ? AL_PRE_MISSING : AL_PRE_NONE, NULL};
		w[nw++] = owner_write(&owner, n, now);
		/* The file's own record first: a refusal at delivery names it (README "Firestore"). */
		if (nw == 3) {
			al_write blob = w[0];
			w[0] = w[1];
			w[1] = blob;
		}
		al_doc_free(known);
		known = NULL;
		pthread_mutex_lock(&t->ds_lock);
		rc = tree_commit(t, w, nw);
		if (rc == 0 && n->k->owner == O_DATASET)
			dataset_changed(t, n->ds_doc);
		pthread_mutex_unlock(&t->ds_lock);
		if (rc == AL_EEXISTS && create) {
			/* Another mount wrote the name first: the same bytes are as good as ours. */
			const char *h = NULL;
			int64_t have = -1;
			if (al_store_get(&known, t->store, doc) == 0) {
				h = al_fields_get_string(known->fields, "hash");
				al_fields_get_int(&have, known->fields, "size");
			}
			rc = h && strcmp(h, hex) == 0 && have == (int64_t)size ? 0 :
				al_error_set(AL_EPERM, "%s was written first by another mount, with other "
					"content (dataset files are write-once)", n->rest);
			al_doc_free(known);
		}
	}
cleanup:
	cJSON_Delete(fields);
	cJSON_Delete(file);
	cJSON_Delete(owner);
	cJSON_Delete(piece_fields);
	free(phex);
	free(doc);
	free(fdoc);
	return rc;
}

/* Moves a file or folder inside one blob collection (tree_rename checked both are in one). */
int blob_rename(al_tree *t, const node *a, const node *b, const char *from, const char *to,
	unsigned flags)
{
	const unsigned noreplace = 1; /* RENAME_NOREPLACE */
	held h;
	int rc;

	if ((rc = check_rest_names(b->rest)))
		return rc;
	if ((a->k->flags & K_WORKING) && !working_folder(t, a))
		return al_error_set(AL_EPERM, "%s is kept: no run of experiment %s is running", from,
			a->experiment);
	if (a->k->flags & K_WRITE_ONCE) {
		al_attr attr;
		if (dataset_referenced(t, a->ds_doc))
			return al_error_set(AL_EPERM, "dataset %s is used by a run: its files can't be renamed", a->dataset);
		if (al_tree_getattr(&attr, t, to) == 0)
			return al_error_set(AL_EPERM, "dataset files are write-once: %s exists", b->rest);
	}
	if ((rc = owner_mark(t, a)))
		return rc;
	if ((rc = hold_writers(&h, t, from, to)))
		return owner_done(t, a, rc);
	rc = blob_move(t, a, b, (flags & noreplace) != 0, held_count(&h, from), held_count(&h, to));
	if (rc == 0) {
		detach_held(t, &h, to);
		move_held(t, &h, from, to);
	}
	release_held(&h);
	return owner_done(t, a, rc);
}

/* A dataset's file renamed over one of its value files: `sed -i .description` writes its new
 * content to a temporary name, which in a dataset is a data file like any other, then renames it
 * over the description. Its content becomes the value and the file goes (README "datasets"):
 * allowed where the file could be renamed, before any run links the dataset. */
int blob_rename_onto_value(al_tree *t, const node *a, const char *from, const char *to)
{
	al_file *f = NULL;
	al_buf b = AL_BUF_INIT;
	char chunk[65536];
	size_t n = 0;
	int rc;

	if (dataset_referenced(t, a->ds_doc))
		return al_error_set(AL_EPERM, "dataset %s is used by a run: its files can't be renamed", a->dataset);
	if ((rc = al_file_open(&f, t, from, 0)))
		return rc;
	do {
		if ((rc = al_file_read(&n, f, chunk, sizeof(chunk), b.len)) == 0 && n)
			rc = b.len + n > (1u << 20) ? al_error_set(AL_EINVAL, "%s: a value holds at most 1 MiB", from)
						    : al_buf_put(&b, chunk, n);
	} while (rc == 0 && n);
	al_file_release(f);
	if (rc == 0 && (rc = commit_content(t, to, b.ptr ? b.ptr : "", b.len)) == 0 &&
	    (rc = owner_mark(t, a)) == 0)
		rc = owner_done(t, a, blob_remove(t, a, from));
	al_buf_dispose(&b);
	return rc;
}

int blob_utimens(al_tree *t, const node *n, int64_t mtime_us)
{
	char *doc = blob_record_doc(n);
	al_doc *d = NULL;
	int rc = 0;
	if (al_store_get(&d, t->store, doc) == 0) {
		cJSON *f = cJSON_CreateObject();
		al_fields_set(f, "mtime", al_value_time(mtime_us));
		rc = commit1(t, AL_WRITE_UPDATE, doc, f, AL_PRE_EXISTS);
		cJSON_Delete(f);
	}
	al_doc_free(d);
	free(doc);
	return rc;
}

static int blob_getattr(al_attr *out, al_tree *t, const node *n, const al_doc *owner, const char *path,
	unsigned mode)
{
	(void)owner;
	return blob_attr(out, t, n, path, mode);
}

int blob_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	(void)path;
	if (n->k->owner == O_RUN)
		al_store_cache_prefetch(t->series_store, n->run_doc, "artifacts");   /* see run_list */
	return list_blob_children(k, t, n);
}

static int blob_mkdir(al_tree *t, const node *n, const char *path, const al_caller *c)
{
	int rc;
	(void)path;
	if ((rc = check_rest_names(n->rest)) || (rc = doc_exists(t, node_owner_doc(n))))
		return rc;
	return blob_mkdir_doc(t, n, c);
}

/* chmod of an artifact: its executable bit, kept in its record ("exec") and by the handles still
 * writing it, which record it at their close (cp -a sets modes before it closes the copy). A mode
 * that changes nothing succeeds quietly, as every chmod elsewhere does (README "artifacts"). */
int blob_chmod(al_tree *t, const node *n, const char *path, int exec)
{
	char *doc = blob_record_doc(n);
	al_doc *d = NULL;
	al_file *f;
	int rc, had = 0;

	if ((rc = al_store_get(&d, t->store, doc)) == AL_ENOTFOUND) {
		al_error_clear();    /* a folder made by its files, or a file not closed yet */
		rc = 0;
	} else if (rc == 0 && al_fields_get_string(d->fields, "type")) {
		goto cleanup;        /* a folder's or a link's mode is the tree's */
	} else if (rc == 0) {
		al_fields_get_bool(&had, d->fields, "exec");
		had = had != 0;
	}
	/* An ended run's files are read-only, their modes too. An experiment's artifacts/ outside
	 * its working period takes new files only, but modes change there as times do: install -m
	 * and shutil.copy set them after the close that recorded the new file. */
	if (rc || (d && had != exec && n->k->owner == O_RUN && (rc = require_running(t, n)) != 0))
		goto cleanup;
	pthread_mutex_lock(&t->lock);
	for (f = t->writers; f; f = f->next)
		if (f->kind == F_BLOB_WRITE && strcmp(f->path, path) == 0)
			__atomic_store_n(&f->exec, exec, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&t->lock);
	if (d && had != exec) {
		cJSON *fields = cJSON_CreateObject();
		al_fields_set(fields, "exec", al_value_bool(exec));
		rc = commit1(t, AL_WRITE_UPDATE, doc, fields, AL_PRE_EXISTS);
		cJSON_Delete(fields);
	}
cleanup:
	al_doc_free(d);
	free(doc);
	return rc;
}

/* A symbolic link in artifacts/ (a checkpoint folder's "latest"): a record of its target, which
 * the kernel follows (README "artifacts"). */
static int blob_symlink(al_tree *t, const node *n, const char *path, const char *target,
	const al_caller *c)
{
	cJSON *f = NULL, *owner = NULL;
	char *doc = NULL;
	al_attr a;
	int64_t now = al_now_us();
	int rc;

	if ((rc = check_rest_names(n->rest)) || (rc = doc_exists(t, node_owner_doc(n))))
		return rc;
	if (!*target || strlen(target) >= 4096)
		return al_error_set(*target ? AL_ENAMETOOLONG : AL_ENOTFOUND, "a link's target is 1 to "
			"4095 bytes");
	if (al_tree_getattr(&a, t, path) == 0)
		return al_error_set(AL_EEXISTS, "%s exists", path);
	doc = blob_record_doc(n);
	if (!(f = cJSON_CreateObject()) || !doc) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	al_fields_set(f, "path", al_value_string(n->rest));
	al_fields_set(f, "type", al_value_string("link"));
	al_fields_set(f, "target", al_value_string(target));
	al_fields_set(f, "mtime", al_value_time(now));
	set_creator(f, t, c);
	{
		al_write w[2] = {{AL_WRITE_SET, doc, f, AL_PRE_MISSING, NULL}, owner_write(&owner, n, now)};
		rc = tree_commit(t, w, 2);
	}
cleanup:
	cJSON_Delete(f);
	cJSON_Delete(owner);
	free(doc);
	return rc;
}

static int blob_readlink(char **out, al_tree *t, const node *n)
{
	char *doc = blob_record_doc(n);
	const char *type, *target;
	al_doc *d = NULL;
	int rc = al_store_get(&d, t->store, doc);
	if (rc == 0 && (type = al_fields_get_string(d->fields, "type")) && strcmp(type, "link") == 0 &&
	    (target = al_fields_get_string(d->fields, "target")))
		rc = (*out = strdup(target)) ? 0 : al_error_set(AL_ENOMEM, "out of memory");
	else if (rc == 0)
		rc = al_error_set(AL_EINVAL, "not a link: %s", n->rest);
	al_doc_free(d);
	free(doc);
	return rc;
}

/* With --allow-delete: a dataset's file (its version follows), a run's output.log. A descriptor
 * still writing it records nothing when it closes, as in artifacts/ (blob_remove). */
static int blob_unlink(al_tree *t, const node *n, const char *path)
{
	int rc;
	if ((rc = owner_mark(t, n)) == 0)
		rc = owner_done(t, n, blob_remove(t, n, path));
	return rc;
}

/* With --allow-delete: a folder of a dataset (its folder document, if any). */
static int blob_rmdir_dir(al_tree *t, const node *n, const char *path)
{
	(void)path;
	if (*n->rest)
		blob_delete(t, n);
	return 0;
}

const al_kind kind_dataset_file = {
	.name = "dataset file", .pattern = DATASET_P "/{rest}",
	.flags = K_BLOBS | K_WRITE_ONCE | K_MEMORY | K_OPEN,
	.owner = O_DATASET, .mode = 0444, .coll = "files", .getattr = blob_getattr, .list = blob_list,
	.open = blob_open, .mkdir = blob_mkdir, .unlink = blob_unlink, .rmdir = blob_rmdir_dir,
};

const al_kind kind_experiment_artifact = {
	.name = "experiment artifact", .pattern = EXPERIMENT_P "/artifacts/{rest*}",
	.flags = K_BLOBS | K_WORKING | K_MEMORY, .owner = O_EXPERIMENT, .mode = 0644,
	.coll = "artifacts", .getattr = blob_getattr, .list = blob_list, .open = blob_open,
	.mkdir = blob_mkdir, .symlink = blob_symlink, .readlink = blob_readlink,
};

const al_kind kind_run_artifact = {
	.name = "run artifact", .pattern = RUN_P "/artifacts/{rest*}",
	.flags = K_BLOBS | K_WORKING | K_RUNNING | K_MEMORY, .owner = O_RUN, .mode = 0644,
	.coll = "artifacts", .getattr = blob_getattr, .list = blob_list, .open = blob_open,
	.mkdir = blob_mkdir, .symlink = blob_symlink, .readlink = blob_readlink,
};

const al_kind kind_output_log = {
	.name = "output.log", .pattern = RUN_P "/output.log", .flags = K_NAMED | K_RUNNING | K_CAPTURE,
	.owner = O_RUN, .mode = 0644, .coll = "logs", .getattr = blob_getattr, .open = blob_open,
	.unlink = blob_unlink,
};
