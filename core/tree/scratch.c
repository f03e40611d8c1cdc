/* aletheia: editors' and atomic writers' scratch files where values live (README "Editing values
 * in place"): held in memory, never recorded, renamed over a value's file to change it. */
#include <ctype.h>
#include "internal.h"

/* Editors and in-place tools write a temporary, swap, lock or backup file beside the file they
 * change. Where values live — params/, metadata/, a run's and an experiment's folder (rows with
 * K_SCRATCH) — names of that kind are scratch files: held in memory, never recorded, deletable
 * without --allow-delete, gone at unmount. Renaming one over a value's file records its content
 * as that file's new value. */
#define SCRATCH_MAX (16u << 20)      /* one file, as a small text file */
#define SCRATCH_TOTAL (256u << 20)   /* all of them together */
#define ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

static int all_of(const char *s, size_t n, const char *set)
{
	size_t i;
	for (i = 0; i < n; i++)
		if (!s[i] || !strchr(set, s[i]))
			return 0;
	return 1;
}

static int scratch_name(const char *name)
{
	size_t n = strlen(name);
	unsigned long v;
	char *end;

	if (n == 0)
		return 0;
	/* hidden files (vim's .x.swp/.x.swpx/.x.swo, nano's .x.swp lock, rsync's and other writers'
	 * dot-temporaries), backups (x~ of vim, nano -B, emacs), emacs' #x# */
	if (name[0] == '.' || name[n - 1] == '~' || (n > 1 && name[0] == '#' && name[n - 1] == '#'))
		return 1;
	if (n > 4 && strcmp(name + n - 4, ".tmp") == 0)
		return 1;
	if (n == 9 && strncmp(name, "sed", 3) == 0 && all_of(name + 3, 6, ALNUM))
		return 1;   /* sed -i: mkstemp("sedXXXXXX") */
	if (n == 8 && strncmp(name, "XX", 2) == 0 && all_of(name + 2, 6, ALNUM))
		return 1;   /* perl -i: mkstemp("XXXXXXXX") keeps the first two */
	if (n == 11 && strncmp(name, "tmp", 3) == 0 &&
	    all_of(name + 3, 8, "abcdefghijklmnopqrstuvwxyz0123456789_"))
		return 1;   /* Python's tempfile.mkstemp() and NamedTemporaryFile() */
	if (n == 9 && strncmp(name, "tmp", 3) == 0 && all_of(name + 3, 6, ALNUM))
		return 1;   /* emacs' make-temp-file (file-precious-flag) */
	if (n == 14 && strncmp(name, "tmp.", 4) == 0 && all_of(name + 4, 10, ALNUM))
		return 1;   /* mktemp(1) */
	/* vim's probe of whether it may write a new file: "4913", then 5036, 5159, … while taken */
	if (isdigit((unsigned char)name[0]) && (v = strtoul(name, &end, 10), !*end) && v >= 4913 &&
	    (v - 4913) % 123 == 0 && v < 4913 + 123 * 16)
		return 1;
	return 0;
}

/* A scratch file's path: its name is a scratch name, or it is right in a folder whose name is
 * one (rsync --delay-updates gathers the files in .~tmp~, then renames each out of it). */
static int scratch_path(const char *path)
{
	const char *name = last_segment(path), *dir;
	char seg[256];

	if (scratch_name(name))
		return 1;
	if (name == path)
		return 0;
	for (dir = name - 1; dir > path && dir[-1] != '/'; dir--)
		;
	if ((size_t)(name - 1 - dir) == 0 || (size_t)(name - 1 - dir) >= sizeof(seg))
		return 0;
	memcpy(seg, dir, (size_t)(name - 1 - dir));
	seg[name - 1 - dir] = '\0';
	return scratch_name(seg);
}

/* 1 when path is a scratch file's place: a scratch path (scratch_path) in params/ (or a folder
 * of it), metrics/, metadata/, a run's or an experiment's folder. *parent then holds that
 * folder's node, and *dir its path (both the caller's). */
static int scratch_place(node *parent, char **dir, const char *path)
{
	const char *name = last_segment(path);
	int ok;

	memset(parent, 0, sizeof(*parent));
	*dir = NULL;
	if (name == path || !scratch_path(path) || !(*dir = strndup(path, (size_t)(name - 1 - path))))
		return 0;
	ok = node_parse(parent, **dir ? *dir : "/") == 0;
	if (ok && !(parent->k->flags & K_SCRATCH))
		ok = 0;
	/* Every other name in a dataset is a data file: there only an editor's files of its
	 * .description are scratch files (vim's .description.swp, a .description~ backup). */
	if (ok && parent->k == &kind_dataset && !strstr(name, ".description"))
		ok = 0;
	if (!ok) {
		node_free(parent);
		free(*dir);
		*dir = NULL;
	}
	return ok;
}

/* In t->lock. */
static scratch *scratch_find(al_tree *t, const char *path)
{
	scratch *s;
	for (s = t->scratch; s; s = s->next)
		if (strcmp(s->path, path) == 0)
			return s;
	return NULL;
}

/* Takes s out of the list (unlinked, or renamed over a file); handles keep it. In t->lock. */
static void scratch_unlink_locked(al_tree *t, scratch *s)
{
	scratch **p;
	for (p = &t->scratch; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	free(s->path);
	s->path = NULL;
	s->next = NULL;
}

/* Drops one reference. In t->lock. */
void scratch_put_locked(al_tree *t, scratch *s)
{
	if (--s->refs)
		return;
	t->scratch_bytes -= s->data.len;
	al_buf_dispose(&s->data);
	free(s->commit_to);
	free(s);
}

int scratch_attr(al_attr *out, al_tree *t, const char *path)
{
	scratch *s;
	int found = 0;
	if (!scratch_path(path))
		return 0;
	pthread_mutex_lock(&t->lock);
	if ((s = scratch_find(t, path))) {
		attr_file(out, 0644, s->data.len, s->mtime_us);
		found = 1;
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}

/* Sets the length of a scratch file's content, zero-filling what grows. In t->lock. */
static int scratch_resize_locked(al_tree *t, scratch *s, size_t len)
{
	size_t old = s->data.len;
	int rc;
	if (len > SCRATCH_MAX)
		return al_error_set(AL_ENOSPC, "%s: editors' scratch files hold at most %u MiB", s->path ? s->path : "",
			SCRATCH_MAX >> 20);
	if (len > old) {
		if (t->scratch_bytes + (len - old) > SCRATCH_TOTAL)
			return al_error_set(AL_ENOSPC, "scratch files take %u MiB of memory at most: delete some",
				SCRATCH_TOTAL >> 20);
		if ((rc = al_buf_grow(&s->data, len - old)))
			return rc;
		memset(s->data.ptr + old, 0, len - old);
		t->scratch_bytes += len - old;
	} else
		t->scratch_bytes -= old - len;
	s->data.len = len;
	if (s->data.ptr)
		s->data.ptr[len] = '\0';
	return 0;
}

/* A scratch file at `to` holding the content of the value file n: a copy, as its backup. */
static int scratch_backup(al_tree *t, const node *n, const char *to, unsigned flags)
{
	const unsigned noreplace = 1; /* RENAME_NOREPLACE */
	al_buf b = AL_BUF_INIT;
	scratch *s, *made = NULL;
	int rc;

	if ((rc = n->k == &kind_metric ? metric_text(&b, t, n) : render(&b, NULL, t, n)))
		goto cleanup;
	pthread_mutex_lock(&t->lock);
	if ((s = scratch_find(t, to)) && (flags & noreplace))
		rc = al_error_set(AL_EEXISTS, "%s exists", to);
	else if (!s && (!(made = calloc(1, sizeof(*made))) || !(made->path = strdup(to))))
		rc = al_error_set(AL_ENOMEM, "out of memory");
	else if (!s) {
		made->refs = 1;   /* the list's */
		made->next = t->scratch;
		t->scratch = s = made;
		made = NULL;
	}
	if (rc == 0 && (rc = scratch_resize_locked(t, s, b.len)) == 0) {
		if (b.len)
			memcpy(s->data.ptr, b.ptr, b.len);
		s->mtime_us = al_now_us();
	}
	pthread_mutex_unlock(&t->lock);
cleanup:
	if (made) {
		free(made->path);
		free(made);
	}
	al_buf_dispose(&b);
	return rc;
}

/* AL_EROFS when a scratch file's folder (place) is in a run that ended: read-only like its values
 * (README "Run lifecycle"); else 0, anything else being for the rename itself to find. */
static int place_ended(al_tree *t, const node *place)
{
	if (!(place->k->flags & K_RUNNING) || require_running(t, place) != AL_EROFS) {
		al_error_clear();
		return 0;
	}
	return AL_EROFS;
}

/* A scratch file renamed over a file that took its content goes. Handles still open on it write
 * on into the value at commit_to (scratch_flush); a metric takes what they write past the given
 * bytes as new lines (scratch_push); NULL: into nothing more. */
static void gone_scratch(al_tree *t, scratch *s, const char *from, const char *commit_to,
	int to_metric, size_t given)
{
	pthread_mutex_lock(&t->lock);
	if (s->path && strcmp(s->path, from) == 0) {
		free(s->commit_to);
		s->commit_to = commit_to && s->refs > 1 ? strdup(commit_to) : NULL;
		s->to_metric = to_metric;
		s->metric_from = given;
		scratch_unlink_locked(t, s);
		scratch_put_locked(t, s);
	}
	pthread_mutex_unlock(&t->lock);
}

/* Renames of and onto scratch files (README "Editing values in place"). 1: neither is one. */
int rename_scratch(al_tree *t, const char *from, const char *to, unsigned flags)
{
	node place, target;
	char *dir = NULL, *data = NULL;
	scratch *s = NULL, *old;
	size_t len = 0;
	int rc = 1, to_scratch, parsed;
	const unsigned noreplace = 1; /* RENAME_NOREPLACE */

	memset(&target, 0, sizeof(target));
	if (scratch_place(&place, &dir, from))
		rc = place_ended(t, &place) ? AL_EROFS : 1;
	node_free(&place);
	free(dir);
	if (rc != 1)
		return rc;
	/* A value recorded under a scratch name (params.json's ".cfg/lr", an older version's) is
	 * renamed over as any value: sed -i's edit of it was kept in memory only, and lost. */
	if ((to_scratch = scratch_place(&place, &dir, to)) && getattr_recorded(&(al_attr){0}, t, to) == 0)
		to_scratch = 0;
	else if (to_scratch && place_ended(t, &place))
		rc = AL_EROFS;
	node_free(&place);
	free(dir);
	if (rc != 1)
		return rc;
	if (scratch_path(from)) {
		pthread_mutex_lock(&t->lock);
		s = scratch_find(t, from);
		if (s && to_scratch) {
			/* from one scratch name to another: only the name changes */
			if ((old = scratch_find(t, to)) && old != s && (flags & noreplace))
				rc = al_error_set(AL_EEXISTS, "%s exists", to);
			else {
				char *np = strdup(to);
				if (!np)
					rc = al_error_set(AL_ENOMEM, "out of memory");
				else {
					if (old && old != s) {
						scratch_unlink_locked(t, old);
						scratch_put_locked(t, old);
					}
					free(s->path);
					s->path = np;
					rc = 0;
				}
			}
		} else if (s && (data = malloc(s->data.len + 1))) {
			len = s->data.len;
			if (len)
				memcpy(data, s->data.ptr, len);
			s->dirty = 0;   /* what is written from now on is the handles' to commit */
		} else if (s)
			rc = al_error_set(AL_ENOMEM, "out of memory");
		pthread_mutex_unlock(&t->lock);
		if (!s || rc != 1)
			goto cleanup;
		parsed = node_parse(&target, to) == 0;
		if (parsed && target.k == &kind_metric) {
			/* Over a metric (rsync's temporary file): written over it from its start, so
			 * its points past those there are appended (README "metrics") */
			if ((flags & noreplace) && getattr_recorded(&(al_attr){0}, t, to) == 0)
				rc = al_error_set(AL_EEXISTS, "%s exists", to);
			else
				rc = metric_rewrite(t, to, data, len);
			if (rc == 0)
				gone_scratch(t, s, from, to, 1, len);
			goto cleanup;
		}
		if (!parsed || !target.k->commit) {
			/* EXDEV where files can be copied in: mv copies */
			rc = target.buf && target.k == &kind_metrics
				? al_error_set(AL_EXDEV, "metrics/ is a folder of metrics: copy into it "
					"instead (rsync and mv do on EXDEV)")
				: target.buf && (target.k->flags & K_BLOBS)
				? al_error_set(AL_EXDEV, "rename across folders: copy instead")
				: al_error_set(AL_EPERM, "cannot rename to %s", to);
			goto cleanup;
		}
		if ((flags & noreplace) && getattr_recorded(&(al_attr){0}, t, to) == 0) {
			rc = al_error_set(AL_EEXISTS, "%s exists", to);
			goto cleanup;
		}
		/* Over the file of a value: its content becomes that value, committed as a close
		 * would commit it; the scratch file is gone once that succeeded. */
		if ((rc = commit_content(t, to, data, len)) == 0)
			gone_scratch(t, s, from, to, 0, 0);
		goto cleanup;
	}
	if (to_scratch && node_parse(&target, from) == 0 && (target.k->commit || target.k == &kind_metric))
		/* A value's file or a metric to a backup name (sed -i~, perl -pi~, vim's backup by
		 * renaming): the backup gets its content and the value stays recorded (values go only
		 * with --allow-delete); the tool's next rename over it sets the new value (a metric:
		 * adds its new points). */
		rc = scratch_backup(t, &target, to, flags);
cleanup:
	node_free(&target);
	free(data);
	return rc;
}

/* Opens (or creates) a scratch file. 1 when path is no scratch file: the caller opens it as
 * usual (not a scratch place, or a value recorded under such a name before they existed). */
int open_scratch(al_file *f, int flags, const char *path)
{
	al_tree *t = f->t;
	node parent;
	char *dir = NULL;
	scratch *s, *made = NULL;
	al_attr a;
	int rc = 0;

	if (!scratch_place(&parent, &dir, path))
		return 1;
	pthread_mutex_lock(&t->lock);
	if ((s = scratch_find(t, path)) && !((flags & AL_OPEN_CREATE) && (flags & AL_OPEN_EXCL)))
		s->refs++;
	pthread_mutex_unlock(&t->lock);
	if (s) {
		if ((flags & AL_OPEN_CREATE) && (flags & AL_OPEN_EXCL)) {
			rc = al_error_set(AL_EEXISTS, "%s exists", path);
			goto cleanup;
		}
		goto opened;
	}
	if (getattr_recorded(&a, t, path) == 0) {
		rc = 1;
		goto cleanup;
	}
	if (!(flags & AL_OPEN_CREATE)) {
		rc = al_error_set(AL_ENOTFOUND, "no such file: %s", path);
		goto cleanup;
	}
	if ((rc = check_name(last_segment(path))))
		goto cleanup;
	/* The folder must exist; params/ of a run that ended is read-only like its params. */
	if ((rc = al_tree_getattr(&a, t, dir)) || (a.type != AL_NODE_DIR &&
	    (rc = al_error_set(AL_ENOTDIR, "not a folder: %s", dir))))
		goto cleanup;
	if ((parent.k->flags & K_RUNNING) && (rc = require_running(t, &parent)))
		goto cleanup;
	if (!(made = calloc(1, sizeof(*made))) || !(made->path = strdup(path))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	made->mtime_us = al_now_us();
	made->refs = 2;   /* the list's and this handle's */
	pthread_mutex_lock(&t->lock);
	if ((s = scratch_find(t, path))) {   /* made meanwhile by someone else */
		if ((flags & AL_OPEN_EXCL))
			rc = al_error_set(AL_EEXISTS, "%s exists", path);
		else
			s->refs++;
	} else {
		made->next = t->scratch;
		t->scratch = s = made;
		made = NULL;
	}
	pthread_mutex_unlock(&t->lock);
	changed(t);   /* a "no such file" kept for this path is wrong from now on */
	if (rc)
		goto cleanup;
opened:
	f->kind = F_SCRATCH;
	f->sc = s;
	if ((flags & AL_OPEN_WRITE) && (flags & AL_OPEN_TRUNC)) {
		pthread_mutex_lock(&t->lock);
		scratch_resize_locked(t, s, 0);
		s->mtime_us = al_now_us();
		s->dirty = 1;
		pthread_mutex_unlock(&t->lock);
	}
cleanup:
	if (made) {
		free(made->path);
		free(made);
	}
	node_free(&parent);
	free(dir);
	return rc;
}

/* 0 when path is an empty scratch folder made by mkdir (rsync's .~tmp~), which goes without
 * --allow-delete: nothing of it was recorded; 1 when it is none. */
int scratch_rmdir(al_tree *t, const char *path)
{
	if (!scratch_name(last_segment(path)) || !has_vdir(t, path))
		return 1;
	return require_empty(t, path);
}

/* 0 when path was a scratch file and is gone, 1 when it is none. */
int scratch_unlink(al_tree *t, const char *path)
{
	scratch *s = NULL;
	if (!scratch_path(path))
		return 1;
	pthread_mutex_lock(&t->lock);
	if ((s = scratch_find(t, path))) {
		scratch_unlink_locked(t, s);
		scratch_put_locked(t, s);
	}
	pthread_mutex_unlock(&t->lock);
	return s ? 0 : 1;
}

/* 0 when path is a scratch file (its time set), 1 when it is none. */
int scratch_utimens(al_tree *t, const char *path, int64_t mtime_us)
{
	scratch *s = NULL;
	if (!scratch_path(path))
		return 1;
	pthread_mutex_lock(&t->lock);
	if ((s = scratch_find(t, path)))
		s->mtime_us = mtime_us;
	pthread_mutex_unlock(&t->lock);
	return s ? 0 : 1;
}

/* Scratch files end with the mount. */
void scratch_free_all(al_tree *t)
{
	while (t->scratch) {
		scratch *s = t->scratch;
		scratch_unlink_locked(t, s);
		scratch_put_locked(t, s);
	}
}

static int scratch_read(size_t *nread, al_file *f, char *buf, size_t size, uint64_t off)
{
	pthread_mutex_lock(&f->t->lock);
	read_buffer(nread, f->sc->data.ptr, f->sc->data.len, buf, size, off);
	pthread_mutex_unlock(&f->t->lock);
	return 0;
}

/* A scratch file renamed over a metric while open writes on as a metric writer: what it writes
 * after the rename is appended wherever it is aimed, each complete line a point at once (all: at
 * the last close, a last line without its newline too). A write whose lines are refused (EINVAL,
 * EROFS once the run ended: checked at each write, also of a partial line) did not happen: its
 * bytes go, and the next write goes on from where that one started. 1 when renamed over no
 * metric. */
static int scratch_push(al_file *f, int all, int wrote)
{
	scratch *sc = f->sc;
	char *to = NULL, *text = NULL;
	size_t from = 0, end = 0, n = 0;
	int rc = 0;
	pthread_mutex_lock(&f->t->lock);
	if (!sc->to_metric || !sc->commit_to) {
		rc = 1;
	} else {
		from = sc->metric_from < sc->data.len ? sc->metric_from : sc->data.len;
		for (end = sc->data.len; end > from && sc->data.ptr[end - 1] != '\n'; end--)
			;
		if (all)
			end = sc->data.len;
		if (!(to = strdup(sc->commit_to)) || !(text = malloc(end - from + 2))) {
			rc = al_error_set(AL_ENOMEM, "out of memory");
		} else {
			if (end > from)
				memcpy(text, sc->data.ptr + from, end - from);
			n = end - from;
			if (n && text[n - 1] != '\n')
				text[n++] = '\n';
			sc->metric_from = end;
		}
	}
	pthread_mutex_unlock(&f->t->lock);
	if (rc == 0 && (n || wrote) && (rc = metric_append_lines(f->t, to, text, n)) != 0) {
		pthread_mutex_lock(&f->t->lock);
		if (sc->metric_from == end) {
			sc->metric_from = from;
			if (sc->data.len > from)
				scratch_resize_locked(f->t, sc, from);
		}
		pthread_mutex_unlock(&f->t->lock);
	}
	free(to);
	free(text);
	return rc;
}

static int scratch_write(al_file *f, const char *buf, size_t size, uint64_t off)
{
	scratch *sc = f->sc;
	int rc = 0;
	pthread_mutex_lock(&f->t->lock);
	if ((f->flags & AL_OPEN_APPEND) || (sc->to_metric && sc->commit_to))
		off = sc->data.len;   /* over a metric: every write appends, as to the metric */
	if (off > SCRATCH_MAX || size > SCRATCH_MAX)
		rc = al_error_set(AL_ENOSPC, "editors' scratch files hold at most %u MiB", SCRATCH_MAX >> 20);
	else if (off + size > sc->data.len)
		rc = scratch_resize_locked(f->t, sc, off + size);
	if (rc == 0) {
		memcpy(sc->data.ptr + off, buf, size);
		sc->mtime_us = al_now_us();
		sc->dirty = 1;
	}
	pthread_mutex_unlock(&f->t->lock);
	if (rc == 0 && (rc = scratch_push(f, 0, 1)) == 1)
		rc = 0;
	return rc;
}

static int scratch_truncate(al_file *f, uint64_t size)
{
	int rc = 0;
	pthread_mutex_lock(&f->t->lock);
	if (f->sc->to_metric && f->sc->commit_to)
		;   /* over a metric: ignored, as a metric's truncate is */
	else if ((rc = scratch_resize_locked(f->t, f->sc, size)) == 0) {
		f->sc->mtime_us = al_now_us();
		f->sc->dirty = 1;
	}
	pthread_mutex_unlock(&f->t->lock);
	return rc;
}

/* Renamed over a file while open (a writer that renames before it closes): what it wrote since
 * is that file's content too. */
static int scratch_flush(al_file *f)
{
	char *to = NULL, *data = NULL;
	size_t len = 0;
	int rc = 0;
	if ((rc = scratch_push(f, 0, 0)) != 1)
		return rc;    /* a partial last line waits for the last close (scratch_release) */
	rc = 0;
	pthread_mutex_lock(&f->t->lock);
	if (f->sc->commit_to && f->sc->dirty && (to = strdup(f->sc->commit_to)) &&
	    (data = malloc(f->sc->data.len + 1))) {
		len = f->sc->data.len;
		if (len)
			memcpy(data, f->sc->data.ptr, len);
		f->sc->dirty = 0;
	}
	pthread_mutex_unlock(&f->t->lock);
	if (to && data)
		rc = commit_content(f->t, to, data, len);
	free(to);
	free(data);
	return rc;
}

/* Also once unlinked or renamed: the handle still holds it. */
static int scratch_getattr(al_attr *out, al_file *f)
{
	al_attr named;
	/* its owner (a shared mount: README "Many users on one machine") while it has its name */
	int own = path_attr(&named, f) == 0 && named.owned;
	pthread_mutex_lock(&f->t->lock);
	attr_file(out, 0644, f->sc->data.len, f->sc->mtime_us);
	pthread_mutex_unlock(&f->t->lock);
	if (own) {
		out->owned = 1;
		out->uid = named.uid;
		out->gid = named.gid;
	}
	return 0;
}

/* The last close: over a metric, a last line without its newline is a point now. */
static int scratch_release(al_file *f)
{
	int rc = scratch_push(f, 1, 0);
	if (rc != 0 && rc != 1)
		fprintf(stderr, "aletheia: %s: the last line, written without its newline, was not "
			"recorded: %s\n", f->path, al_error_last());
	return 0;
}

const file_class scratch_class = {
	.read = scratch_read, .write = scratch_write, .truncate = scratch_truncate,
	.flush = scratch_flush, .getattr = scratch_getattr, .release = scratch_release,
};
