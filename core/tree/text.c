/* aletheia: value files — params, params.json, metadata, descriptions, a run's status, fold and
 * model — while open: their content held in memory from the open, recorded by their row's
 * commit at close (README "Durability": a new value replaces the old only when complete). */
#include "internal.h"

int open_text(al_file *f, int flags, const char *path)
{
	al_tree *t = f->t;
	const al_kind *k = f->n.k;
	int rc, exists;
	al_buf b = AL_BUF_INIT;

	if (!(flags & AL_OPEN_WRITE)) {
		/* A reader shares the content a stat just rendered (rendercache.c), if still current. */
		uint64_t size;
		if ((rc = render_cached(&f->gen, &size, NULL, t, &f->n, path)))
			goto fail;
		f->kind = F_GENERATED;
		return 0;
	}
	rc = render(&b, NULL, t, &f->n);
	exists = rc == 0;
	if (rc && rc != AL_ENOTFOUND)
		goto fail;
	if (!k->commit) {
		rc = al_error_set(AL_EACCES, "%s is read-only", path);
		goto fail;
	}
	if (!exists && k->create && (rc = k->create(t, &f->n)))
		goto fail;
	if (!exists && !(flags & AL_OPEN_CREATE)) {
		rc = al_error_set(AL_ENOTFOUND, "no such file: %s", path);
		goto fail;
	}
	if (exists && (flags & AL_OPEN_EXCL) && (flags & AL_OPEN_CREATE)) {
		rc = al_error_set(AL_EEXISTS, "%s exists", path);
		goto fail;
	}
	f->kind = F_TEXT;
	f->low_write = SIZE_MAX;
	/* O_TRUNC alone changes nothing: the new content replaces the old only once something was
	 * written and the file is closed (README "Durability"), so a writer killed before its first
	 * write, or one whose write failed, leaves the old value. A new file exists at once. */
	if (flags & AL_OPEN_TRUNC)
		al_buf_clear(&b);
	f->keep = b.len;
	if (!exists)
		f->dirty = 1;
	f->text = b;
	register_writer(t, f);
	return 0;
fail:
	if (rc == AL_ENOTFOUND)
		al_error_set(AL_ENOTFOUND, "no such file: %s", path);
	al_buf_dispose(&b);
	return rc;
}

static int text_read(size_t *nread, al_file *f, char *buf, size_t size, uint64_t off)
{
	if (f->gen)
		return read_buffer(nread, f->gen->data, f->gen->len, buf, size, off);
	return read_buffer(nread, f->text.ptr, f->text.len, buf, size, off);
}

/* A file of one line (status, fold): a complete bad line fails its write(), which shells
 * report, rather than only the close(), which they ignore. */
static int check_line(al_file *f)
{
	char *s;
	int rc;
	if (!f->n.k->check_line || !memchr(f->text.ptr, '\n', f->text.len))
		return 0;
	if ((rc = text_checked(&s, &f->text, f->n.k->name)))
		return rc;
	rc = f->n.k->check_line(&f->n, s);
	free(s);
	return rc;
}

static int text_write(al_file *f, const char *buf, size_t size, uint64_t off)
{
	int rc;
	if (f->flags & AL_OPEN_APPEND)
		off = f->text.len;
	if (off > (1u << 24) || size > (1u << 24))
		return al_error_set(AL_ENOSPC, "small text files only (16 MiB)");
	if (off + size > f->text.len) {
		size_t old = f->text.len;
		if ((rc = al_buf_grow(&f->text, off + size - old)))
			return rc;
		memset(f->text.ptr + old, 0, off + size - old);
		f->text.len = off + size;
		f->text.ptr[f->text.len] = '\0';
	}
	memcpy(f->text.ptr + off, buf, size);
	f->dirty = 1;
	if (off < f->low_write)
		f->low_write = off;
	if ((rc = check_line(f))) {
		/* nothing of it is recorded at close */
		al_buf_clear(&f->text);
		f->dirty = 0;
	}
	return rc;
}

static int text_truncate(al_file *f, uint64_t size)
{
	if (size < f->low_write)
		f->low_write = size;
	if (size < f->text.len) {
		f->text.len = size;
		if (f->text.ptr)
			f->text.ptr[size] = '\0';
	} else if (size > f->text.len) {
		size_t old = f->text.len;
		int rc = al_buf_grow(&f->text, size - old);
		if (rc)
			return rc;
		memset(f->text.ptr + old, 0, size - old);
		f->text.len = size;
		f->text.ptr[size] = '\0';
	}
	/* Cutting to nothing through an open descriptor (vim opens, ftruncate()s, then writes) is
	 * like O_TRUNC: the old value stays until something is written, so an editor killed in
	 * between loses nothing. truncate(2) of the path clears (al_tree_truncate). */
	if (size > 0)
		f->dirty = 1;
	return 0;
}

static int text_flush(al_file *f)
{
	int rc = 0;
	if (f->dirty && (rc = f->n.k->commit(f)) == 0)
		f->dirty = 0;
	return rc;
}

/* The content rendered at open: a newer render's size would make the kernel pad with NUL bytes
 * or cut it short. */
static int text_getattr(al_attr *out, al_file *f)
{
	path_attr(out, f);
	pthread_mutex_lock(&f->mu);
	out->size = f->gen ? f->gen->len : f->text.len;
	pthread_mutex_unlock(&f->mu);
	return 0;
}

const file_class text_class = {
	.read = text_read, .write = text_write, .truncate = text_truncate, .flush = text_flush,
	.getattr = text_getattr,
};

/* Read past the kernel's page cache: it holds one content per file, and two opens of a generated
 * file may have two (a run changed between them), so a page one open's read filled was served to
 * the other, or its content padded with NUL to the other's size (README "Files behave like
 * files": read() gives each open its own content whole). mmap still works (fs/ops.c asks the
 * kernel for FUSE_DIRECT_IO_ALLOW_MMAP). */
static int generated_direct_io(al_file *f)
{
	return f->gen != NULL;
}

const file_class generated_class = {
	.read = text_read, .getattr = text_getattr, .direct_io = generated_direct_io,
};
