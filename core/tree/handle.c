/* aletheia: open files: the writers and in-memory folders the tree shows before anything is
 * recorded, and al_file_* dispatched to the class of each handle (text.c, metrics.c,
 * blobhandle.c, scratch.c, ctl_import.c, ctl_fsck.c, dsprefetch.c, tags.c). */
#include "internal.h"

static const file_class *const classes[F_COUNT] = {
	[F_TEXT] = &text_class, [F_GENERATED] = &generated_class, [F_METRIC] = &metric_class,
	[F_BLOB_READ] = &blob_read_class, [F_BLOB_WRITE] = &blob_write_class,
	[F_IMPORT] = &import_class, [F_FSCK] = &fsck_class, [F_SCRATCH] = &scratch_class,
	[F_PREFETCH] = &prefetch_class, [F_TAG] = &tag_class,
};

#define CLASS(f) (classes[(f)->kind])

/* A file being written through an open handle, visible before its first close. */
al_file *find_writer(al_tree *t, const char *path)
{
	al_file *f;
	for (f = t->writers; f; f = f->next)
		if (strcmp(f->path, path) == 0)
			return f;
	return NULL;
}

int writer_attr(al_attr *out, al_tree *t, const char *path, unsigned mode)
{
	al_file *f;
	struct stat st;
	int found = 0;

	pthread_mutex_lock(&t->lock);
	if ((f = find_writer(t, path))) {
		uint64_t size = f->kind == F_TEXT ? f->text.len : 0;
		if (f->kind == F_BLOB_WRITE && fstat(f->fd, &st) == 0)
			size = (uint64_t)st.st_size;
		/* A stable mtime: one that moved on every stat would make the kernel drop the page
		 * cache of a file in use (a database's mmap'ed -shm) each time. */
		attr_file(out, __atomic_load_n(&f->exec, __ATOMIC_RELAXED) ? mode | 0111 : mode, size,
			__atomic_load_n(&f->mtime_us, __ATOMIC_RELAXED));
		/* the writer's own, where files are their creators' (dispatch.c: K_OPEN) */
		if (f->has_creator) {
			out->owned = 1;
			out->uid = f->creator_uid;
			out->gid = f->creator_gid;
		}
		found = 1;
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}

int has_vdir(al_tree *t, const char *path)
{
	vdir *v;
	int found = 0;
	pthread_mutex_lock(&t->lock);
	for (v = t->vdirs; v && !found; v = v->next)
		found = strcmp(v->path, path) == 0;
	pthread_mutex_unlock(&t->lock);
	return found;
}

/* Adds in-memory children (open writers, empty folders, scratch files) of the folder at path. */
void memory_children(keyset *k, al_tree *t, const char *path)
{
	size_t n = strlen(path);
	al_file *f;
	vdir *v;
	scratch *s;
	pthread_mutex_lock(&t->lock);
	for (f = t->writers; f; f = f->next)
		if (strncmp(f->path, path, n) == 0 && f->path[n] == '/' && !strchr(f->path + n + 1, '/'))
			keyset_add(k, f->path + n + 1);
	for (s = t->scratch; s; s = s->next)
		if (strncmp(s->path, path, n) == 0 && s->path[n] == '/' && !strchr(s->path + n + 1, '/'))
			keyset_add(k, s->path + n + 1);
	for (v = t->vdirs; v; v = v->next)
		if (strncmp(v->path, path, n) == 0 && v->path[n] == '/' && !strchr(v->path + n + 1, '/'))
			keyset_add(k, v->path + n + 1);
	pthread_mutex_unlock(&t->lock);
}

int add_vdir(al_tree *t, const char *path)
{
	vdir *v = calloc(1, sizeof(*v));
	if (!v || !(v->path = strdup(path))) {
		free(v);
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&t->lock);
	v->next = t->vdirs;
	t->vdirs = v;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

void register_writer(al_tree *t, al_file *f)
{
	pthread_mutex_lock(&t->lock);
	f->next = t->writers;
	t->writers = f;
	f->registered = 1;
	pthread_mutex_unlock(&t->lock);
	changed(t);
}

void unregister_writer(al_tree *t, al_file *f)
{
	al_file **p;
	pthread_mutex_lock(&t->lock);
	for (p = &t->writers; *p; p = &(*p)->next)
		if (*p == f) {
			*p = f->next;
			break;
		}
	f->registered = 0;
	pthread_mutex_unlock(&t->lock);
	changed(t);
}


int al_file_open(al_file **out, al_tree *t, const char *path, int flags)
{
	return al_file_open_as(out, t, path, flags, NULL);
}

int al_file_open_as(al_file **out, al_tree *t, const char *path, int flags, const al_caller *caller)
{
	al_file *f = calloc(1, sizeof(*f));
	int rc;

	*out = NULL;
	if (!f)
		return al_error_set(AL_ENOMEM, "out of memory");
	if (caller) {
		f->has_creator = 1;
		f->creator_uid = caller->uid;
		f->creator_gid = caller->gid;
	}
	pthread_mutex_init(&f->mu, NULL);
	f->t = t;
	f->fd = -1;
	f->flags = flags;
	f->handles = 1;
	f->kind = F_GENERATED;   /* nothing of its own to undo until a row's open says otherwise */
	if (!(f->path = strdup(path))) {
		free(f);
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	f->mtime_us = al_now_us();
	if ((rc = open_scratch(f, flags, path)) <= 0) {
		if (rc)
			goto fail;
		*out = f;
		return 0;
	}
	if ((rc = node_parse(&f->n, path))) {
		if (rc == AL_ENOTFOUND && (flags & AL_OPEN_CREATE))
			rc = al_error_set(AL_EPERM, "cannot create files here: %s", path);
		goto fail;
	}
	/* A file of a run that ended opens for reading only (README "Run lifecycle"). The status
	 * generation checked at is kept: a metric's writer checks again after any change (metrics.c). */
	f->status_gen = __atomic_load_n(&t->status_gen, __ATOMIC_SEQ_CST);
	if ((flags & AL_OPEN_WRITE) && (f->n.k->flags & K_RUNNING) && (rc = require_running(t, &f->n)))
		goto fail;
	if (f->n.k->open)
		rc = f->n.k->open(f, flags, path);
	else if (f->n.k->render)
		rc = (flags & AL_OPEN_WRITE) && !f->n.k->commit
			? al_error_set(AL_EACCES, "%s is read-only", path) : open_text(f, flags, path);
	else
		rc = (flags & AL_OPEN_CREATE) ? al_error_set(AL_EPERM, "cannot create files here: %s", path)
					      : al_error_set(AL_EISDIR, "%s is a folder", path);
	if (f->share) {
		/* joined an open file (open_blob): that is the handle */
		al_file *w = f->share;
		f->share = NULL;
		if (rc == 0)
			*out = w;
		else
			al_file_release(w);
		f->kind = F_GENERATED;   /* nothing of its own to undo */
		al_file_release(f);
		return rc;
	}
	if (rc)
		goto fail;
	*out = f;
	return 0;
fail:
	al_file_release(f);
	return rc;
}

int read_buffer(size_t *nread, const char *src, size_t len, char *buf, size_t size, uint64_t off)
{
	*nread = 0;
	if (off < len) {
		*nread = len - off < size ? len - off : size;
		memcpy(buf, src + off, *nread);
	}
	return 0;
}

int path_attr(al_attr *out, al_file *f)
{
	int rc = al_tree_getattr(out, f->t, f->path);
	if (rc)   /* gone since it was opened: the handle still answers for what it holds */
		attr_file(out, 0444, 0, al_now_us());
	return rc;
}

int al_file_fd_get(int *fd, int *owned, al_file *f, uint64_t off, size_t len)
{
	*fd = -1;
	*owned = 0;
	return CLASS(f)->fd_get ? CLASS(f)->fd_get(fd, owned, f, off, len) : 0;
}

int al_file_backing_fd(int *fd, al_file *f)
{
	*fd = -1;
	return CLASS(f)->backing_fd ? CLASS(f)->backing_fd(fd, f) : 0;
}

int al_file_keep_cache(al_file *f)
{
	return CLASS(f)->keep_cache ? CLASS(f)->keep_cache(f) : 0;
}

int al_file_direct_io(al_file *f)
{
	return CLASS(f)->direct_io ? CLASS(f)->direct_io(f) : 0;
}

/* A blob opened for reading records nothing at close (its class has no flush) and changes
 * nothing: a FLUSH round trip per close() was a third of the daemon's requests for a dataset
 * read file by file (README "Benchmarks: S3", second epoch). */
int al_file_no_flush(al_file *f)
{
	return f->kind == F_BLOB_READ && !CLASS(f)->flush;
}

/* Without f->mu: kind and gen are set at open, before the handle is known to anyone, and never
 * change; fs/ops.c asks under its own lock, which must not wait for a handle's (a writer holds
 * its own while it takes the tree's, and the tree's status render takes fs/ops.c's). */
int al_file_held_size(uint64_t *size, al_file *f)
{
	int held = f->kind == F_GENERATED && f->gen;
	*size = held ? f->gen->len : 0;
	return held;
}

int al_file_getattr(al_attr *out, al_file *f)
{
	return CLASS(f)->getattr ? CLASS(f)->getattr(out, f) : path_attr(out, f);
}

int al_file_read(size_t *nread, al_file *f, char *buf, size_t size, uint64_t off)
{
	*nread = 0;
	return CLASS(f)->read ? CLASS(f)->read(nread, f, buf, size, off) : 0;
}

int al_file_write(al_file *f, const char *buf, size_t size, uint64_t off)
{
	int rc;
	pthread_mutex_lock(&f->mu);
	rc = CLASS(f)->write ? CLASS(f)->write(f, buf, size, off)
			     : al_error_set(AL_EACCES, "not open for writing");
	pthread_mutex_unlock(&f->mu);
	changed(f->t);
	return rc;
}

int al_file_truncate(al_file *f, uint64_t size)
{
	int rc;
	pthread_mutex_lock(&f->mu);
	rc = CLASS(f)->truncate ? CLASS(f)->truncate(f, size)
				: al_error_set(AL_EACCES, "not open for writing");
	pthread_mutex_unlock(&f->mu);
	changed(f->t);
	return rc;
}

/* Records what was written. A file whose content could not be recorded stops being listed once
 * close() fails, not only at the kernel's later release. */
static int flush_locked(al_file *f)
{
	int rc = CLASS(f)->flush ? CLASS(f)->flush(f) : 0;
	if (rc && (f->kind == F_TEXT || f->kind == F_BLOB_WRITE)) {
		unregister_writer(f->t, f);
		__atomic_store_n(&f->refused, 1, __ATOMIC_RELEASE);   /* read by getattr without f->mu */
	}
	return rc;
}

int al_file_refused(const al_file *f)
{
	return __atomic_load_n(&f->refused, __ATOMIC_ACQUIRE);
}

int al_file_flush(al_file *f)
{
	int rc;
	pthread_mutex_lock(&f->mu);
	rc = flush_locked(f);
	pthread_mutex_unlock(&f->mu);
	/* A handle with nothing to flush (reading .aletheia/status, a listing's file) changed
	 * nothing: the attribute cache and the records kept for opens stay good. */
	if (CLASS(f)->flush || (f->flags & AL_OPEN_WRITE))
		changed(f->t);
	return rc;
}

int al_file_fsync(al_file *f)
{
	return al_file_flush(f);
}

/* Records data as the new content of the value file at path, as a write of exactly that
 * and a close would (a scratch file renamed over it). */
int commit_content(al_tree *t, const char *path, const char *data, size_t len)
{
	al_file *f = NULL;
	int rc = al_file_open(&f, t, path, AL_OPEN_WRITE | AL_OPEN_CREATE | AL_OPEN_TRUNC);
	if (rc == 0 && f->kind != F_TEXT)
		rc = al_error_set(AL_EPERM, "%s holds no value a file can be renamed over", path);
	if (rc == 0 && len)
		rc = CLASS(f)->write(f, data, len, 0);
	if (rc == 0) {
		f->dirty = 1;   /* an empty file is an empty value */
		rc = CLASS(f)->flush(f);
	}
	al_file_release(f);
	return rc;
}

void al_file_release(al_file *f)
{
	if (!f)
		return;
	if (CLASS(f)->release && CLASS(f)->release(f))
		return;   /* other opens share it */
	/* Out of the list before its lock goes, and that lock free: a delete or rename may hold it
	 * (hold_writers). */
	if (f->registered)
		unregister_writer(f->t, f);
	pthread_mutex_lock(&f->mu);
	pthread_mutex_unlock(&f->mu);
	pthread_mutex_destroy(&f->mu);
	if (f->sc) {
		pthread_mutex_lock(&f->t->lock);
		scratch_put_locked(f->t, f->sc);
		pthread_mutex_unlock(&f->t->lock);
	}
	if (f->fd >= 0)
		close(f->fd);
	al_cache_blob_close(f->cb);
	al_fsck_free(f->fsck);
	if (f->kind == F_BLOB_WRITE && f->staging)
		unlink(f->staging);
	free(f->staging);
	free(f->snap);
	free(f->match);
	free(f->idx);
	rendered_put(f->gen);
	al_buf_dispose(&f->text);
	node_free(&f->n);
	free(f->path);
	free(f);
}

int al_tree_truncate(al_tree *t, const char *path, uint64_t size)
{
	al_file *f = NULL;
	int rc = al_file_open(&f, t, path, AL_OPEN_WRITE | (size == 0 ? AL_OPEN_TRUNC : 0));
	if (rc == 0 && (rc = al_file_truncate(f, size)) == 0) {
		if (f->kind == F_TEXT)
			f->dirty = 1;   /* truncate(2) of a path is meant: it clears */
		rc = al_file_flush(f);
	}
	al_file_release(f);
	return rc;
}
