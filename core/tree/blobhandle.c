/* aletheia: files kept as blobs while open: reading a stored blob (its local file, or streamed
 * and verified through the cache), and writing through a staged copy that becomes a blob at
 * close (README "Durability"). */
#include "internal.h"

/* The URL to read a file's blob from when it is not the blob store's own object (an imported
 * file), else NULL. Old records of another local store fall back to the store by hash. */
const char *blob_source(al_tree *t, const al_doc *d, const char *hash)
{
	return blob_source_of(t, al_fields_get_string(d->fields, "blob"), hash);
}

/* The same from a record's "blob" field (NULL when it has none). */
const char *blob_source_of(al_tree *t, const char *blob, const char *hash)
{
	char *own;
	int same;
	if (!blob || !*blob || !(strncmp(blob, "http://", 7) == 0 || strncmp(blob, "https://", 8) == 0 ||
	    strncmp(blob, "s3://", 5) == 0 || strncmp(blob, "gs://", 5) == 0))
		return NULL;
	own = t->blobs->uri(t->blobs, hash);
	same = own && strcmp(own, blob) == 0;
	free(own);
	return same ? NULL : blob;
}

/* Hands the cache the piece hashes recorded with a blob (files/{hash}), so each range of it is
 * verified as it arrives. Without them (blobs stored by older versions, imports) the cache holds
 * a large blob back until it is verified whole: slower to start, never wrong. */
static void blob_pieces(al_tree *t, al_cache_blob *cb, const char *hash)
{
	char *fdoc = xasprintf("files/%s", hash);
	const char *text;
	al_doc *d = NULL;
	al_pieces p;
	int64_t psize = 0, size = 0;

	if (fdoc && al_store_get(&d, t->store, fdoc) == 0 &&
	    (text = al_fields_get_string(d->fields, "pieces")) != NULL &&
	    al_fields_get_int(&psize, d->fields, "piece_size") == 0 &&
	    al_fields_get_int(&size, d->fields, "size") == 0 && psize > 0 && size >= 0) {
		if (al_pieces_parse(&p, (uint64_t)psize, (uint64_t)size, text) != 0 ||
		    al_cache_blob_set_pieces(cb, &p) != 0)
			fprintf(stderr, "aletheia: ignoring the piece hashes recorded for blob %s (%s); it is "
				"verified whole before it is read\n", hash, al_error_last());
		al_pieces_clear(&p);
	}
	al_doc_free(d);
	free(fdoc);
}

/* Opens the stored content of a blob-backed file for reading: the blob store's own file when
 * it has one (file://), else streamed through the cache (al_file_wait before reading). */
static int blob_open_read(al_file *f, int64_t *size_out)
{
	al_tree *t = f->t;
	al_doc *d = NULL;
	char *doc = blob_record_doc(&f->n), *local = NULL;
	const char *hash, *source;
	file_rec r = {0};
	int64_t size = 0;
	int rc, keep = reccache_wanted(t, &f->n);
	uint64_t g0 = attrcache_gen(t);

	/* A dataset file's record as the lookup before this open (or the last epoch's open) read
	 * it, while nothing changed since: no document read per open (attrcache.c). */
	if (!keep || reccache_get(&r, t, doc) != 0) {
		if ((rc = get_doc(&d, t, doc)))
			goto cleanup;
		file_rec_from_doc(&r, d);
		if (keep)
			reccache_put(t, doc, &r, g0);
	}
	if (r.is_dir) {
		rc = al_error_set(AL_EISDIR, "%s is a folder", f->n.rest);
		goto cleanup;
	}
	hash = r.hash;
	size = r.size;
	if (!*hash) {
		rc = al_error_set(AL_EIO, "record of %s has no valid hash", f->n.rest);
		goto cleanup;
	}
	snprintf(f->hash, sizeof(f->hash), "%s", hash);
	source = blob_source_of(t, r.blob, hash);
	if (!source && t->blobs->verify) {
		/* A local blob: size checked at every open, content hashed when it changed since it was
		 * last found good (README "Durability"); a damaged one is never served. */
		rc = t->blobs->verify(&f->fd, t->blobs, hash, (uint64_t)(size > 0 ? size : 0), 0);
		if (rc == AL_ENOTFOUND) {
			char why[512];
			snprintf(why, sizeof(why), "%s", al_error_last());
			rc = al_error_set(AL_EIO, "the content of %s is missing: %s", f->n.rest, why);
		}
	} else if (!source && t->blobs->local_path(&local, t->blobs, hash) == 0) {
		f->fd = open(local, O_RDONLY | O_CLOEXEC);
		if (f->fd < 0)
			rc = al_error_set_errno(al_error_from_errno(errno), errno, "cannot open blob %s", local);
	} else {
		rc = al_cache_open_blob(&f->cb, t->cache, hash, source, (uint64_t)(size > 0 ? size : 0));
		if (rc == 0 && al_cache_blob_wants_pieces(f->cb))
			blob_pieces(t, f->cb, hash);
		if (rc == 0 && f->n.k == &kind_dataset_file)
			dataset_scan_note(t, &f->n, !al_cache_blob_is_complete(f->cb));
	}
	if (size_out)
		*size_out = size;
	f->size = (uint64_t)(size > 0 ? size : 0);
cleanup:
	file_rec_clear(&r);
	al_doc_free(d);
	free(doc);
	free(local);
	return rc;
}

static int staging_create(int *fd_out, char **path_out, al_tree *t)
{
	char *tmpl = xasprintf("%s/write-XXXXXX", t->staging_dir);
	int fd;
	if (!tmpl)
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((fd = mkostemp(tmpl, O_CLOEXEC)) < 0) {
		int e = errno;
		free(tmpl);
		return al_error_set_errno(al_error_from_errno(e), e, "cannot create a staging file in %s",
			t->staging_dir);
	}
	*fd_out = fd;
	*path_out = tmpl;
	return 0;
}

/* Copies src's first limit bytes (all of it with UINT64_MAX) into dst. */
static int copy_fd(int dst, int src, uint64_t limit)
{
	char buf[1 << 16];
	uint64_t off = 0;
	while (off < limit) {
		size_t want = limit - off < sizeof(buf) ? (size_t)(limit - off) : sizeof(buf);
		ssize_t n = pread(src, buf, want, (off_t)off);
		if (n < 0)
			return al_error_set_errno(AL_EIO, errno, "cannot read blob");
		if (n == 0)
			break;
		ssize_t put = pwrite(dst, buf, (size_t)n, (off_t)off);
		if (put < 0)
			return al_error_set_errno(al_error_from_errno(errno), errno, "cannot copy into staging file");
		if (put != n)   /* a short write sets no errno: the disk is full */
			return al_error_set(AL_ENOSPC, "cannot copy into staging file: its disk is full");
		off += (uint64_t)n;
	}
	return 0;
}

static int stage_first(al_file *f, int keep);

int open_blob(al_file *f, int flags, const char *path)
{
	al_tree *t = f->t;
	al_attr a;
	int exists, rc;

	if (!(flags & AL_OPEN_WRITE)) {
		al_file *w;
		/* A file being written (changed since its last commit) reads from its staging file;
		 * one whose writer wrote nothing since reads its recorded content, which a later
		 * overwrite (an O_TRUNC open joining that writer) does not change under it. */
		pthread_mutex_lock(&t->lock);
		w = find_writer(t, path);
		f->fd = w && w->staging && __atomic_load_n(&w->dirty, __ATOMIC_SEQ_CST)
			? open(w->staging, O_RDONLY | O_CLOEXEC) : -1;
		pthread_mutex_unlock(&t->lock);
		f->kind = F_BLOB_READ;
		if (f->fd >= 0)
			return 0;
		/* The record read once (blob_open_read checks it is a file), not also by blob_attr:
		 * a store lookup less per open of a dataset read file by file. */
		if ((rc = blob_open_read(f, NULL)) != AL_ENOTFOUND || f->hash[0])
			return rc;    /* f->hash: the record was there, its blob was not */
		if (blob_attr(&a, t, &f->n, path, 0) == 0 && a.type == AL_NODE_DIR)
			return al_error_set(AL_EISDIR, "%s is a folder", path);
		return al_error_set(AL_ENOTFOUND, "no such file: %s", path);
	}
	exists = blob_attr(&a, t, &f->n, path, 0) == 0;
	if (exists && a.type == AL_NODE_DIR)
		return al_error_set(AL_EISDIR, "%s is a folder", path);
	if (exists && (flags & AL_OPEN_EXCL) && (flags & AL_OPEN_CREATE))
		return al_error_set(AL_EEXISTS, "%s exists", path);
	if (!exists && !(flags & AL_OPEN_CREATE))
		return al_error_set(AL_ENOTFOUND, "no such file: %s", path);
	/* New files are welcome (each makes a new version); existing ones never change. */
	if ((f->n.k->flags & K_WRITE_ONCE) && exists)
		return al_error_set(AL_EPERM, "dataset files are write-once: %s exists", path);
	/* An experiment's artifacts/ outside its working period keeps what it holds (README
	 * "artifacts"): new files only. */
	if ((f->n.k->flags & K_WORKING) && exists && !working_folder(t, &f->n))
		return al_error_set(AL_EPERM, "%s is kept: no run of experiment %s is running", path,
			f->n.experiment);
	if (!exists && (rc = check_rest_names(f->n.rest)))
		return rc;
	{
		/* A file open for writing is one open file for every writer (README "artifacts": two
		 * connections to one database, a lock file rewritten in place): the open joins it.
		 * The first open registers itself before it stages, holding its own mu until the
		 * staged copy is whole, so an open meanwhile joins it and waits at its first use (two
		 * opens at once each staged a copy: the last close won, the other's fsyncs lost). */
		al_file *w;
		pthread_mutex_lock(&t->lock);
		for (w = t->writers; w; w = w->next)
			if (w->kind == F_BLOB_WRITE && strcmp(w->path, path) == 0 &&
			    (w->flags & AL_OPEN_APPEND) == (flags & AL_OPEN_APPEND))
				break;
		if (w && (flags & AL_OPEN_EXCL) && (flags & AL_OPEN_CREATE)) {
			pthread_mutex_unlock(&t->lock);
			return al_error_set(AL_EEXISTS, "%s exists", path);
		}
		if (w) {
			w->handles++;
		} else {
			pthread_mutex_lock(&f->mu);   /* new: no one else can hold or wait for it yet */
			f->kind = F_BLOB_WRITE;
			/* an artifact's x (README "artifacts"): a rewrite keeps it (chmod +x), a new
			 * file takes its creation's; dataset files are 0444 */
			f->exec = (f->n.k->flags & K_WORKING) &&
				(exists ? (a.mode & 0111) != 0 : (flags & AL_OPEN_EXEC) != 0);
			f->next = t->writers;
			t->writers = f;
			f->registered = 1;
		}
		pthread_mutex_unlock(&t->lock);
		if (w) {
			f->share = w;
			return (flags & AL_OPEN_TRUNC) ? al_file_truncate(w, 0) : 0;
		}
	}
	rc = stage_first(f, exists && !(flags & AL_OPEN_TRUNC));
	if (rc == 0) {
		__atomic_store_n(&f->dirty, !exists || (flags & AL_OPEN_TRUNC), __ATOMIC_SEQ_CST);
		if (exists && !f->dirty)
			f->mtime_us = a.mtime_us;   /* opening for writing changes no time; writing does */
	} else {
		/* Opens that joined meanwhile hold a handle that records nothing. */
		f->failed = rc;
		unregister_writer(t, f);
	}
	pthread_mutex_unlock(&f->mu);
	changed(t);
	return rc;
}

/* Makes a new staging file f's file: a copy of src's first keep bytes (none when src < 0), in
 * reach of open_blob only once whole. One that fails leaves f on the file it had. */
static int stage_copy(al_file *f, int src, uint64_t keep)
{
	char *path = NULL;
	int fd = -1, old, rc;
	if ((rc = staging_create(&fd, &path, f->t)))
		return rc;
	if (src >= 0 && (rc = copy_fd(fd, src, keep))) {
		close(fd);
		unlink(path);
		free(path);
		return rc;
	}
	pthread_mutex_lock(&f->t->lock);   /* open_blob reads writers' staging paths under it */
	old = f->fd;
	f->fd = fd;
	f->staging = path;
	pthread_mutex_unlock(&f->t->lock);
	if (old >= 0)
		close(old);
	return 0;
}

/* A new writer's staged copy, with the current content when it is kept (partial overwrites
 * start from it). */
static int stage_first(al_file *f, int keep)
{
	al_file src = {.t = f->t, .n = f->n, .fd = -1};
	int rc;
	if (!keep)
		return stage_copy(f, -1, 0);
	if ((rc = blob_open_read(&src, NULL)) != 0)
		return rc;
	if (!src.cb)
		rc = stage_copy(f, src.fd, UINT64_MAX);
	else if ((rc = al_cache_blob_complete(src.cb)) == 0)
		rc = stage_copy(f, al_cache_blob_fd(src.cb), UINT64_MAX);
	if (src.fd >= 0)
		close(src.fd);
	al_cache_blob_close(src.cb);
	return rc;
}

/* A write handle whose staged file was committed stages a copy of its first keep bytes again:
 * a blob, and a reader's version, never change. */
static int restage(al_file *f, uint64_t keep)
{
	return f->staging ? 0 : stage_copy(f, f->fd, keep);
}

static int commit_blob(al_file *f)
{
	al_tree *t = f->t;
	char hex[AL_HASH_HEX_LEN + 1], *uri = NULL;
	uint64_t size = 0;
	al_pieces pieces = {0};
	int rc;

	/* close() must survive a power cut: the staged bytes first, then the blob and record. */
	if (fdatasync(f->fd) != 0)
		return al_error_set_errno(al_error_from_errno(errno), errno, "cannot sync staging file");
	/* The piece hashes come in the same pass, so a streamed reader can verify each range. */
	if ((rc = al_hash_fd_pieces(hex, &size, &pieces, f->fd)))
		return rc;
	if (size <= AL_CACHE_VERIFY_WHOLE_MAX)
		al_pieces_clear(&pieces);    /* verified whole before its first byte: not needed */
	if ((rc = t->blobs->put(t->blobs, hex, f->staging, size, AL_BLOBS_PUT_MOVE)))
		goto cleanup;
	{
		/* The staged file is now a committed version: out of open_blob's reach, so a reader opens
		 * the recorded blob, and writes after this close stage a fresh copy first (restage). A
		 * reader holding the old staged file keeps its version (README "artifacts"). A local
		 * store renamed it into place; a remote one copied it and it goes. */
		int moved = access(f->staging, F_OK) != 0;
		char *local = NULL, *gone;
		pthread_mutex_lock(&t->lock);   /* open_blob reads writers' staging paths under it */
		gone = f->staging;
		f->staging = NULL;
		if (!moved)
			unlink(gone);
		pthread_mutex_unlock(&t->lock);
		free(gone);
		if (moved) {
			/* The write handle keeps a read-only view of the blob. */
			close(f->fd);
			f->fd = -1;
			if (t->blobs->local_path(&local, t->blobs, hex) == 0)
				f->fd = open(local, O_RDONLY | O_CLOEXEC);
			free(local);
			if (f->fd < 0) {
				rc = al_error_set_errno(AL_EIO, errno, "cannot reopen blob %s", hex);
				goto cleanup;
			}
		}
	}
	uri = t->blobs->uri(t->blobs, hex);
	{
		/* A new dataset file is created only if no other mount wrote the name first. */
		int create = (f->n.k->flags & K_WRITE_ONCE) && !f->created;
		rc = record_file(t, &f->n, hex, size, uri, 1, &pieces,
			__atomic_load_n(&f->mtime_set, __ATOMIC_RELAXED) ?
			__atomic_load_n(&f->mtime_us, __ATOMIC_RELAXED) : MTIME_NOW, create, f);
		if (rc == 0 && create)
			f->created = 1;
	}
	free(uri);
cleanup:
	al_pieces_clear(&pieces);
	return rc;
}

/* Artifacts, dataset files, output.log: their owner must exist; a collection's root is a folder. */
int blob_open(al_file *f, int flags, const char *path)
{
	int rc;
	if (!(flags & AL_OPEN_WRITE) && *f->n.rest) {
		/* A read of a recorded file does not look its owner up first: an owner's files are
		 * deleted before it (delete_tree), so a record never outlives its owner. One store
		 * lookup less per open of a dataset read file by file; a missing file still asks
		 * whether its owner is missing too. */
		if ((rc = open_blob(f, flags, path)) != AL_ENOTFOUND)
			return rc;
		int orc = doc_exists(f->t, node_owner_doc(&f->n));
		return orc ? orc : rc;
	}
	if ((rc = doc_exists(f->t, node_owner_doc(&f->n))))
		return rc;
	return *f->n.rest ? open_blob(f, flags, path) : al_error_set(AL_EISDIR, "a folder");
}

static int blob_read_fd_get(int *fd, int *owned, al_file *f, uint64_t off, size_t len)
{
	int rc;
	(void)owned;
	if (f->cb) {
		if ((rc = al_cache_blob_wait(f->cb, off, len)))
			return rc;
		*fd = al_cache_blob_fd(f->cb);
		return 0;
	}
	*fd = f->fd;
	/* A local blob cut short behind the mount while open (checked at open, README
	 * "Durability"): a read it cannot answer whole is an error, never an early end. */
	if (f->size && off < f->size) {
		struct stat st;
		uint64_t need = off + len < f->size ? off + len : f->size;
		if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size < need)
			return al_error_set(AL_EIO, "%s: its blob holds %llu bytes, not %llu: changed "
				"behind the mount", f->path, (unsigned long long)st.st_size,
				(unsigned long long)f->size);
	}
	return 0;
}

/* A write handle's file changes under it (a commit moves the staged copy into the blob store, the
 * next write stages a new one, closing the old descriptor): a reader gets its own descriptor of
 * what is current, taken under the handle's lock. */
static int blob_write_fd_get(int *fd, int *owned, al_file *f, uint64_t off, size_t len)
{
	(void)off;
	(void)len;
	pthread_mutex_lock(&f->mu);
	*fd = f->fd >= 0 ? dup(f->fd) : -1;
	pthread_mutex_unlock(&f->mu);
	if (*fd < 0)
		return al_error_set_errno(AL_EIO, errno, "cannot read %s", f->path);
	*owned = 1;
	return 0;
}

static int blob_read(size_t *nread, al_file *f, char *buf, size_t size, uint64_t off)
{
	int fd, owned, rc = al_file_fd_get(&fd, &owned, f, off, size);
	ssize_t n;
	if (rc)
		return rc;
	n = pread(fd, buf, size, (off_t)off);
	if (owned)
		close(fd);
	if (n < 0)
		return al_error_set_errno(AL_EIO, errno, "read failed");
	*nread = (size_t)n;
	return 0;
}

/* Complete local content only: a blob still streaming is read through us, range by range. A
 * file:// blob was checked at open (size, and hash when changed: README "Durability"); a
 * cache entry is complete only once verified. And only files no open can replace while the
 * kernel reads their blob (a dataset's write-once files, an ended run's artifacts): the kernel
 * refuses any other open of a file it reads through a backing file (README "Reading files at
 * the kernel's speed"). */
static int blob_backing_fd(int *fd, al_file *f)
{
	const al_kind *k = f->n.k;
	*fd = -1;
	if (!(k->flags & K_WRITE_ONCE) &&
	    !((k->flags & K_RUNNING) && require_running(f->t, &f->n) == AL_EROFS))
		return 0;
	if (f->cb)
		*fd = al_cache_blob_is_complete(f->cb) ? al_cache_blob_fd(f->cb) : -1;
	else
		*fd = f->fd;
	return 0;
}

/* Not while still streaming: a blob that fails its verification must not leave pages behind. */
static int blob_keep_cache(al_file *f)
{
	return !f->cb || al_cache_blob_is_complete(f->cb);
}

/* A handle answers fstat() for what it reads, also once its name was deleted or given to another
 * file (README "artifacts": the descriptor stays usable, as on a local disk). */
static int blob_read_getattr(al_attr *out, al_file *f)
{
	struct stat st;
	if (path_attr(out, f) != 0)
		attr_file(out, 0444, 0, al_now_us());
	/* A stored blob: the size its record gives (a blob cut short behind the mount then reads as
	 * an error, not an early end); a file still being written: its staged copy's, live. */
	if (f->hash[0])
		out->size = f->size;
	else if (f->fd >= 0 && fstat(f->fd, &st) == 0)
		out->size = (uint64_t)st.st_size;
	return 0;
}

/* A file another open can replace (README "artifacts": a working folder's files can be
 * overwritten) is read past the kernel's page cache: it holds one content per file, so with two
 * opens of two contents a page one open's read filled was served to the other (the open after an
 * overwrite read the old bytes). An experiment's artifacts/ is a working folder while any of its
 * runs runs, which is not asked here (a listing of its runs per open): they are always read so. */
static int blob_direct_io(al_file *f)
{
	const al_kind *k = f->n.k;
	int replaceable = 0;
	if (k->flags & K_WRITE_ONCE)
		return 0;
	if (k->owner == O_EXPERIMENT && (k->flags & K_WORKING))
		return 1;
	if (k->flags & K_RUNNING) {
		replaceable = require_running(f->t, &f->n) == 0;
		al_error_clear();
	}
	return replaceable;
}

const file_class blob_read_class = {
	.read = blob_read, .fd_get = blob_read_fd_get, .backing_fd = blob_backing_fd,
	.keep_cache = blob_keep_cache, .direct_io = blob_direct_io,
	.getattr = blob_read_getattr,
};

static int blob_write(al_file *f, const char *buf, size_t size, uint64_t off)
{
	ssize_t n;
	int rc = restage(f, UINT64_MAX);
	if (rc)
		return rc;
	__atomic_store_n(&f->mtime_us, al_now_us(), __ATOMIC_RELAXED);
	__atomic_store_n(&f->mtime_set, 0, __ATOMIC_RELAXED);
	if (f->flags & AL_OPEN_APPEND) {
		struct stat st;
		if (fstat(f->fd, &st) == 0)
			off = (uint64_t)st.st_size;
	}
	n = pwrite(f->fd, buf, size, (off_t)off);
	__atomic_store_n(&f->dirty, 1, __ATOMIC_SEQ_CST);
	if (n >= 0 && (size_t)n == size)
		return 0;
	f->failed = n < 0 ? al_error_from_errno(errno) : AL_ENOSPC;
	if (n < 0)
		return al_error_set_errno(f->failed, errno, "cannot write staging file");
	return al_error_set(AL_ENOSPC, "short write to staging file");
}

static int blob_truncate(al_file *f, uint64_t size)
{
	int rc = restage(f, size);
	if (rc)
		return rc;
	if (ftruncate(f->fd, (off_t)size) != 0)
		return al_error_set_errno(al_error_from_errno(errno), errno, "truncate failed");
	__atomic_store_n(&f->mtime_us, al_now_us(), __ATOMIC_RELAXED);
	__atomic_store_n(&f->mtime_set, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&f->dirty, 1, __ATOMIC_SEQ_CST);
	return 0;
}

static int blob_flush(al_file *f)
{
	int rc = 0;
	/* Deleted or replaced while open: its content is no file's any more. */
	if (__atomic_load_n(&f->detached, __ATOMIC_SEQ_CST))
		return 0;
	/* Written through a descriptor opened before the run ended: not recorded. */
	if (f->dirty && (f->n.k->flags & K_RUNNING) && !(f->n.k->flags & K_CAPTURE) &&
	    (rc = require_running(f->t, &f->n)))
		return rc;
	if (f->failed) {
		/* Free the space of a copy that cannot complete (a full disk) right away. */
		if (f->staging && ftruncate(f->fd, 0) == 0)
			__atomic_store_n(&f->dirty, 0, __ATOMIC_SEQ_CST);
		return al_error_set(f->failed, "an earlier write to %s failed: nothing recorded", f->path);
	}
	if (f->dirty && (rc = commit_blob(f)) == 0)
		__atomic_store_n(&f->dirty, 0, __ATOMIC_SEQ_CST);
	return rc;
}

/* f->path follows renames (move_held), which change it under f->mu. Deleted or replaced while
 * open (tempfile.TemporaryFile unlinks at once), the handle answers for its own staged copy. */
static int blob_write_getattr(al_attr *out, al_file *f)
{
	struct stat st;
	int rc;
	pthread_mutex_lock(&f->mu);
	rc = path_attr(out, f);
	if (rc || __atomic_load_n(&f->detached, __ATOMIC_SEQ_CST)) {
		attr_file(out, __atomic_load_n(&f->exec, __ATOMIC_RELAXED) ? 0755 : 0644,
			f->fd >= 0 && fstat(f->fd, &st) == 0 ? (uint64_t)st.st_size : 0,
			__atomic_load_n(&f->mtime_us, __ATOMIC_RELAXED));
		rc = 0;
	}
	pthread_mutex_unlock(&f->mu);
	return rc;
}

/* The last of the opens sharing the handle goes: out of reach of open_blob at once. */
static int blob_write_release(al_file *f)
{
	unsigned left;
	al_file **p;
	pthread_mutex_lock(&f->t->lock);
	if ((left = --f->handles) == 0)
		for (p = &f->t->writers; *p; p = &(*p)->next)
			if (*p == f) {
				*p = f->next;
				break;
			}
	pthread_mutex_unlock(&f->t->lock);
	return left > 0;
}

const file_class blob_write_class = {
	.read = blob_read, .write = blob_write, .truncate = blob_truncate, .flush = blob_flush,
	.getattr = blob_write_getattr, .fd_get = blob_write_fd_get,
	.release = blob_write_release,
};
