/* aletheia: a run's metrics/ folder and its metric files: "STEP VALUE TIME" lines appended by
 * writers and read back live, as a log file (README "metrics"). The series themselves are
 * core/series.c's. */
#include "core/store/store_cache.h"
#include "internal.h"

/* README "metrics": a write() is one atomic append; the kernel cuts writes of more than this into
 * pieces (max_write, less the offset of the buffer in its first page), so anything larger is
 * refused whole: its first piece already is. A line waiting for its newline is bounded too. */
#define METRIC_WRITE_MAX (AL_MAX_WRITE - 4096)
#define METRIC_LINE_MAX 65536

/* The metric document of a path in metrics/ ("…/runs/R/metrics/<encoded name>"); NULL when out
 * of memory. Caller frees. */
char *metric_doc(const node *n)
{
	char *id = al_id_encode(n->rest), *doc = id ? xasprintf("%s/metrics/%s", n->run_doc, id) : NULL;
	free(id);
	return doc;
}

static int metric_attr(al_attr *out, al_tree *t, const node *n, const char *path, unsigned mode,
	int64_t run_mtime)
{
	al_series_summary s;
	char *id, *doc, **ids = NULL, *prefix;
	size_t nids = 0, i, plen;
	int rc;

	if (!*n->rest) {
		attr_dir(out, run_mtime);
		return 0;
	}
	id = al_id_encode(n->rest);
	doc = xasprintf("%s/metrics/%s", n->run_doc, id);
	rc = al_series_summary_get(&s, t->series, doc);
	free(doc);
	if (rc == 0) {
		free(id);
		attr_file(out, mode, s.text_bytes, s.update_us ? s.update_us : run_mtime);
		return 0;
	}
	if (writer_attr(out, t, path, mode)) {
		free(id);
		return 0;
	}
	/* A folder of metrics (val/loss makes val a folder). */
	prefix = xasprintf("%s%%2F", id);
	plen = strlen(prefix);
	free(id);
	rc = al_series_ids(&ids, &nids, t->series, n->run_doc);
	for (i = 0; rc == 0 && i < nids; i++)
		if (strncmp(ids[i], prefix, plen) == 0)
			break;
	if (rc == 0 && (i < nids || has_vdir(t, path)))
		attr_dir(out, run_mtime);
	else if (rc == 0)
		rc = al_error_set(AL_ENOTFOUND, "no such metric: %s", n->rest);
	al_strings_free(ids, nids);
	free(prefix);
	return rc;
}

/* A descriptor opened while the run was running writes nothing once it ended (README "Run
 * lifecycle"); the run is looked at again only after some status changed. */
static int metric_still_running(al_file *f)
{
	uint64_t gen = __atomic_load_n(&f->t->status_gen, __ATOMIC_SEQ_CST);
	int rc;
	if (f->status_gen == gen)
		return 0;
	if ((rc = require_running(f->t, &f->n)) == 0)
		f->status_gen = gen;
	return rc;
}

/* A writer that started at the beginning of the file (README "metrics"): the next point of the
 * series its lines are compared with, and a batch of the points from base on. */
struct metric_match {
	uint64_t next, base, view;
	size_t n;
	al_point pts[AL_SERIES_CHUNK];
};

static void match_end(al_file *f)
{
	free(f->match);
	f->match = NULL;
	f->matching = 0;
}

static void metric_skip_same(al_file *f, const char **text, size_t *len);

/* Records a writer's partial last line as a point (its last close, or a reader after a close). */
static int metric_end_line(al_file *f)
{
	int rc;
	if ((rc = metric_still_running(f)) == 0 && (rc = al_buf_puts(&f->text, "\n")) == 0) {
		const char *text = f->text.ptr;
		size_t len = f->text.len;
		if (f->matching)
			metric_skip_same(f, &text, &len);   /* a rewrite's last line, as the others */
		rc = len ? al_series_append_text(f->t->series, f->staging, text, len) : 0;
	}
	match_end(f);
	scope_changed(f->t, f->staging);   /* run.json, runs.csv show it */
	if (rc)
		fprintf(stderr, "aletheia: %s: the last line, written without its newline, was not "
			"recorded: %s\n", f->path, al_error_last());
	al_buf_clear(&f->text);
	f->line_closed = 0;
	return rc;
}

/* Before the series of metric_doc is read: the partial last lines whose descriptors were closed
 * (a printf without \n, then close) are recorded, so a reader right after sees them. A writer
 * busy in a write is skipped: its line is not closed. */
static void metric_settle_lines(al_tree *t, const char *metric_doc)
{
	al_file *w;
	pthread_mutex_lock(&t->lock);   /* writers are unregistered under it before they go */
	for (w = t->writers; w; w = w->next)
		if (w->kind == F_METRIC && w->line_closed && w->staging &&
		    strcmp(w->staging, metric_doc) == 0 && pthread_mutex_trylock(&w->mu) == 0) {
			if (w->line_closed && w->text.len)
				metric_end_line(w);
			pthread_mutex_unlock(&w->mu);
		}
	pthread_mutex_unlock(&t->lock);
}

/* A reader's text is made a batch of points at a time (one chunk document of the series), so a
 * metric of millions of points streams through a bounded buffer (README "metrics"). */
#define READ_BATCH AL_SERIES_CHUNK

/* Forgets the text made so far: the series' points moved (several writers merged again). */
static void reader_reset(al_file *f)
{
	free(f->snap);
	f->snap = NULL;
	f->snaplen = 0;
	f->win_off = f->text_end = f->points = 0;
	f->nidx = 0;
}

/* A reader's next batches, made on the tree's workers while the kernel copies the current one
 * out and the reader comes back for more: reading a chunk, parsing it and formatting its points
 * are a read's time, and the batches after the window are made side by side on the other cores.
 * Only full batches of a series whose points never move (one writer: view 0), made while nothing
 * changed the metric, are served from here. */
#define AHEAD_DEPTH TREE_WORKERS
#define BATCH_TEXT (READ_BATCH * AL_POINT_TEXT_MAX + 1)
#define NO_BATCH UINT64_MAX

typedef struct metric_ahead {
	tree_work w;               /* first: its run() is given this */
	al_tree *t;
	const char *doc;           /* the reader's metric document (f->staging outlives the work) */
	uint64_t from, gen;        /* the batch's first point (NO_BATCH: free); the metric's scope
				    * generation before it was asked for */
	al_point *pts;
	char *text;                /* BATCH_TEXT bytes, traded with the reader's window */
	size_t n, len;
	uint64_t view;
	int made;                  /* text holds the full batch at from */
} metric_ahead;

static void ahead_run(tree_work *w)
{
	metric_ahead *a = (metric_ahead *)w;
	a->made = 0;
	if (!a->text && !(a->text = malloc(BATCH_TEXT)))
		return;
	if (al_series_points(a->pts, &a->n, &a->view, a->t->series, a->doc, a->from, READ_BATCH) ==
	    0 && a->n == READ_BATCH && a->view == 0) {
		a->len = al_metric_format_points(a->text, a->pts, a->n);
		a->made = 1;
	}
}

/* After a full batch: the next AHEAD_DEPTH are asked for, each unless a slot has it already
 * (no memory for them: they are made when asked). */
static void ahead_start(al_file *f)
{
	metric_ahead *a = f->ahead;
	uint64_t from, end = f->points + AHEAD_DEPTH * READ_BATCH;
	size_t i, k;

	if (!a) {
		if (!(a = calloc(AHEAD_DEPTH, sizeof(*a))))
			return;
		for (i = 0; i < AHEAD_DEPTH; i++) {
			if (!(a[i].pts = malloc(READ_BATCH * sizeof(*a[i].pts)))) {
				while (i-- > 0)
					free(a[i].pts);
				free(a);
				return;
			}
			a[i].w.run = ahead_run;
			a[i].t = f->t;
			a[i].doc = f->staging;
			a[i].from = NO_BATCH;
		}
		f->ahead = a;
	}
	for (from = f->points; from < end; from += READ_BATCH) {
		for (i = 0; i < AHEAD_DEPTH && a[i].from != from; i++)
			;
		if (i < AHEAD_DEPTH)
			continue;
		/* A slot outside the window (free, or of batches the reader went away from) */
		for (k = 0; k < AHEAD_DEPTH && a[k].from >= f->points && a[k].from < end; k++)
			;
		if (k == AHEAD_DEPTH)
			return;
		tree_work_settle(f->t, &a[k].w, 0);
		a[k].from = from;
		a[k].gen = scope_gen_of(f->t, f->staging);
		a[k].made = 0;
		tree_work_submit(f->t, &a[k].w);
	}
}

/* The batch made ahead at f->points, if there is one and it is still what the series holds (its
 * slot is freed once the caller took its text). */
static metric_ahead *ahead_take(al_file *f, size_t want)
{
	metric_ahead *a = f->ahead;
	size_t i;
	if (!a || want != READ_BATCH)
		return NULL;
	for (i = 0; i < AHEAD_DEPTH && a[i].from != f->points; i++)
		;
	if (i == AHEAD_DEPTH)
		return NULL;
	a += i;
	tree_work_settle(f->t, &a->w, 1);   /* still queued: it is made here and now */
	if (!a->made || scope_gen_of(f->t, f->staging) != a->gen) {
		a->from = NO_BATCH;
		return NULL;
	}
	return a;
}

static void ahead_free(al_file *f)
{
	size_t i;
	if (!f->ahead)
		return;
	for (i = 0; i < AHEAD_DEPTH; i++) {
		tree_work_settle(f->t, &f->ahead[i].w, 0);
		free(f->ahead[i].pts);
		free(f->ahead[i].text);
	}
	free(f->ahead);
	f->ahead = NULL;
}

/* Makes the text of the next batch of points the window; *got 0 at the series' end (for now:
 * a reader sees points appended later, as with any log file). f->mu held. */
static int reader_next(al_file *f, int *got)
{
	al_point *pts = NULL;
	char *text = NULL;
	size_t n = 0, len = 0, want = READ_BATCH - (size_t)(f->points % READ_BATCH);
	uint64_t view = 0;
	metric_ahead *a;
	int rc = 0;

	*got = 0;
	if ((a = ahead_take(f, want))) {
		n = a->n;
		view = a->view;
	} else {
		uint64_t gen = scope_gen_of(f->t, f->staging);
		if (!(pts = malloc(READ_BATCH * sizeof(*pts))))
			return al_error_set(AL_ENOMEM, "out of memory");
		rc = al_series_points(pts, &n, &view, f->t->series, f->staging, f->points, want);
		/* A chunk gone while the summary still counts it is damage, unless the metric was
		 * removed meanwhile (README "Deleting and renaming"): while its documents go, the text
		 * ends here; once gone, it is read again as it is now (no points, or a new series). */
		if (rc && rc != AL_ENOTFOUND && !being_removed(f->t, f->staging) &&
		    scope_gen_of(f->t, f->staging) != gen) {
			al_error_clear();
			rc = al_series_points(pts, &n, &view, f->t->series, f->staging, f->points, want);
		}
		if (rc && rc != AL_ENOTFOUND && being_removed(f->t, f->staging))
			rc = AL_ENOTFOUND;
		if (rc == AL_ENOTFOUND) {   /* not one point yet (a new metric still being written) */
			al_error_clear();
			rc = 0;
			n = 0;
		}
		if (rc)
			goto cleanup;
	}
	if (view != f->view) {
		int restart = f->view != UINT64_MAX && f->points > 0;
		f->view = view;
		if (restart) {
			if (a)
				a->from = NO_BATCH;
			reader_reset(f);
			free(pts);
			return reader_next(f, got);
		}
	}
	if (n == 0)
		goto cleanup;
	if (f->points % READ_BATCH == 0 && f->points / READ_BATCH == f->nidx) {
		uint64_t *grown = realloc(f->idx, (f->nidx + 1) * sizeof(*grown));
		if (!grown) {
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto cleanup;
		}
		f->idx = grown;
		f->idx[f->nidx++] = f->text_end;
	}
	if (a) {
		/* The two buffers trade places: the window's becomes the next batch's. */
		text = f->snap;
		f->snap = a->text;
		a->text = text;
		text = NULL;
		len = a->len;
		a->made = 0;
		a->from = NO_BATCH;
	} else {
		/* The window's buffer is kept from batch to batch: a fresh one of this size is a
		 * fresh mapping, its pages faulted in again at each batch. */
		if (!(text = realloc(f->snap, BATCH_TEXT))) {
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto cleanup;
		}
		f->snap = text;
		text = NULL;
		len = al_metric_format_points(f->snap, pts, n);
	}
	f->snaplen = len;
	f->win_off = f->text_end;
	f->text_end += len;
	f->points += n;
	*got = 1;
	if (n == want && view == 0)
		ahead_start(f);
cleanup:
	free(text);
	free(pts);
	return rc;
}

/* Makes the window hold the byte at off: forward from where the text was made up to, back from
 * the batch that holds it. *found 0 past the end. f->mu held. */
static int reader_seek(al_file *f, uint64_t off, int *found)
{
	int rc, got;
	*found = 0;
	for (;;) {
		if (off >= f->win_off && off < f->win_off + f->snaplen) {
			*found = 1;
			return 0;
		}
		if (off < f->win_off || (off < f->text_end && f->snaplen == 0)) {
			size_t j = f->nidx;
			while (j > 0 && f->idx[j - 1] > off)
				j--;
			if (j == 0) {
				reader_reset(f);
			} else {
				f->points = (uint64_t)(j - 1) * READ_BATCH;
				f->text_end = f->win_off = f->idx[j - 1];
				free(f->snap);
				f->snap = NULL;
				f->snaplen = 0;
			}
		}
		if ((rc = reader_next(f, &got)) || !got)
			return rc;
	}
}

static int open_metric(al_file *f, int flags, const char *path)
{
	al_tree *t = f->t;
	al_attr a;
	int rc, exists;

	if (!*f->n.rest)
		return al_error_set(AL_EISDIR, "metrics/ is a folder");
	exists = metric_attr(&a, t, &f->n, path, 0, 0) == 0;
	if (exists && a.type == AL_NODE_DIR)
		return al_error_set(AL_EISDIR, "%s is a folder", path);
	if (!exists && !((flags & AL_OPEN_WRITE) && (flags & AL_OPEN_CREATE)))
		return al_error_set(AL_ENOTFOUND, "no such metric: %s", path);
	f->staging = metric_doc(&f->n);   /* the metric document */
	f->kind = F_METRIC;
	f->view = UINT64_MAX;
	if (flags & AL_OPEN_WRITE) {
		if (!exists && (rc = check_rest_names(f->n.rest)))
			return rc;
		/* A created metric exists from now on, empty until its first point (touch, numpy's
		 * savetxt: create, close, open again). */
		if (!exists && (rc = al_series_touch(t->series, f->staging)))
			return rc;
		if (!exists)
			scope_changed(t, f->staging);
		register_writer(t, f);
		return 0;
	}
	metric_settle_lines(t, f->staging);
	return 0;
}

/* Skips the complete lines at the start of text that are, byte for byte, the series' points from
 * the next one compared on (what a read gave: an editor's save, a copy of the file written over
 * it); the first other line ends the matching, and it and all after it are appended. A series
 * that cannot be read now ends it too: the lines are appended, never lost. */
static void metric_skip_same(al_file *f, const char **text, size_t *len)
{
	struct metric_match *m = f->match;
	char line[AL_POINT_TEXT_MAX];
	while (*len) {
		const char *nl = memchr(*text, '\n', *len);
		size_t ll = (size_t)(nl - *text) + 1, fl;
		if (!m) {
			/* A first line not as reading gives it (`0.5` of a training loop's `>`) can
			 * match no point: the series is not read for it. */
			al_point *p = NULL;
			size_t np = 0;
			int same = al_metric_parse(&p, &np, *text, ll, -1, 0) == 0 && np == 1 &&
				al_metric_format(line, p) == ll && memcmp(line, *text, ll) == 0;
			free(p);
			al_error_clear();
			if (!same || !(m = f->match = calloc(1, sizeof(*m))))
				break;
		}
		if (m->next >= m->base + m->n) {
			uint64_t view = m->view;
			m->n = AL_SERIES_CHUNK;
			m->base = m->next;
			if (al_series_points(m->pts, &m->n, &view, f->t->series, f->staging, m->base, m->n) ||
			    m->n == 0 || (m->base > 0 && view != m->view)) {
				al_error_clear();
				break;
			}
			m->view = view;
		}
		fl = al_metric_format(line, &m->pts[m->next - m->base]);
		if (fl != ll || memcmp(line, *text, ll) != 0)
			break;
		m->next++;
		*text += ll;
		*len -= ll;
	}
	if (*len)
		match_end(f);   /* else all of it matched: the next write goes on comparing */
}

/* A line past METRIC_LINE_MAX: what was kept of it goes, and so does its rest, up to its
 * newline (it would be recorded as a point nobody wrote otherwise). */
static int metric_line_too_long(al_file *f)
{
	al_buf_clear(&f->text);
	f->skip_line = 1;
	return al_error_set(AL_EINVAL, "%s: a line longer than %d bytes is no metric point", f->path,
		METRIC_LINE_MAX);
}

static int metric_write(al_file *f, const char *buf, size_t size)
{
	const char *nl;
	const char *text;
	size_t len, done, pending = f->text.len;
	int rc;

	if (size > METRIC_WRITE_MAX)
		return al_error_set(AL_EINVAL, "%s: one write() to a metric takes at most %u bytes, "
			"appended whole; write in smaller pieces", f->path, (unsigned)METRIC_WRITE_MAX);
	if ((rc = metric_still_running(f))) {
		al_buf_clear(&f->text);
		return rc;
	}
	f->line_closed = 0;   /* a line goes on after a close() of a copy of the descriptor */
	if (f->skip_line) {
		/* The rest of a line refused for its length, up to its newline, is refused with it. */
		const char *end = memchr(buf, '\n', size);
		size_t skipped = end ? (size_t)(end - buf) + 1 : size;
		if (end)
			f->skip_line = 0;
		if (skipped < size && (rc = metric_write(f, buf + skipped, size - skipped)))
			return rc;
		return al_error_set(AL_EINVAL, "%s: the rest of a line longer than %d bytes is dropped "
			"with it", f->path, METRIC_LINE_MAX);
	}
	if (!(nl = memrchr(buf, '\n', size))) {
		if (pending + size > METRIC_LINE_MAX)
			return metric_line_too_long(f);
		return al_buf_put(&f->text, buf, size);   /* a partial line waits for its newline */
	}
	done = (size_t)(nl - buf) + 1;
	if (size - done > METRIC_LINE_MAX)
		return metric_line_too_long(f);
	if (pending) {
		if ((rc = al_buf_put(&f->text, buf, done)))
			return rc;
		text = f->text.ptr;
		len = f->text.len;
	} else {
		text = buf;
		len = done;
	}
	if (f->matching)
		metric_skip_same(f, &text, &len);
	rc = len ? al_series_append_text(f->t->series, f->staging, text, len) : 0;
	if (len)
		scope_changed(f->t, f->staging);
	/* On error none of this write's lines are recorded, and a partial line kept from before is
	 * part of what failed: later writes start clean. */
	al_buf_clear(&f->text);
	if (rc)
		return rc;
	return done < size ? al_buf_put(&f->text, buf + done, size - done) : 0;
}

/* Complete lines written to the metric at path as one write() of a writer opened there, all or
 * none of them: with rewrite, one whose first write is at the file's start (its lines that are
 * the points already there are skipped); else one opened with O_APPEND. No lines: only the check
 * that the run still runs (EROFS). */
static int metric_put(al_tree *t, const char *path, const char *text, size_t len, int rewrite)
{
	al_file *f = NULL;
	int rc = al_file_open(&f, t, path, AL_OPEN_WRITE | AL_OPEN_CREATE |
		(rewrite ? AL_OPEN_TRUNC : AL_OPEN_APPEND));
	if (rc == 0 && f->kind != F_METRIC)
		rc = al_error_set(AL_EPERM, "%s is no metric", path);
	if (rc == 0) {
		pthread_mutex_lock(&f->mu);
		if ((rc = metric_still_running(f)) == 0 && rewrite) {
			f->matching = 1;
			metric_skip_same(f, &text, &len);
			match_end(f);
		}
		if (rc == 0 && len) {
			rc = al_series_append_text(t->series, f->staging, text, len);
			scope_changed(t, f->staging);
		}
		pthread_mutex_unlock(&f->mu);
	}
	al_file_release(f);
	return rc;
}

/* Lines written on through a scratch descriptor renamed over the metric (scratch.c). */
int metric_append_lines(al_tree *t, const char *path, const char *text, size_t len)
{
	return metric_put(t, path, text, len, 0);
}

/* A metric's whole text as reading gives it (a backup copy: `sed -i~`, `mv loss loss~`). */
int metric_text(al_buf *b, al_tree *t, const node *n)
{
	char *doc = metric_doc(n), *text = NULL;
	size_t len = 0;
	int rc;
	if (!doc)
		return al_error_set(AL_ENOMEM, "out of memory");
	metric_settle_lines(t, doc);
	rc = al_series_render(&text, &len, t->series, doc);
	if (rc == AL_ENOTFOUND) {   /* created empty */
		al_error_clear();
		rc = 0;
	}
	if (rc == 0 && len)
		rc = al_buf_put(b, text, len);
	free(text);
	free(doc);
	return rc;
}

/* A file renamed over a metric (rsync's and mv's temporary file, README "metrics"): written over
 * it from its start, so its lines past the points already there are appended, in one append of
 * all or nothing (a bad line, or one longer than a write takes, changes nothing). */
int metric_rewrite(al_tree *t, const char *path, const char *data, size_t len)
{
	char *text;
	size_t i, start = 0, n = len;
	int rc;

	for (i = 0; i <= len; i++)
		if (i == len || data[i] == '\n') {
			if (i - start > METRIC_LINE_MAX)
				return al_error_set(AL_EINVAL, "%s: a line longer than %d bytes is no metric "
					"point", path, METRIC_LINE_MAX);
			start = i + 1;
		}
	if (!(text = malloc(len + 1)))
		return al_error_set(AL_ENOMEM, "out of memory");
	if (len)
		memcpy(text, data, len);
	if (len && text[len - 1] != '\n')
		text[n++] = '\n';    /* a last line with no newline is a point, as at a close */
	rc = metric_put(t, path, text, n, 1);
	free(text);
	return rc;
}

static int metrics_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	char **ids = NULL;
	size_t nids = 0, i;
	int rc;
	(void)path;
	al_store_cache_prefetch(t->series_store, n->run_doc, "metrics");
	if ((rc = al_series_ids(&ids, &nids, t->series, n->run_doc)) == 0)
		for (i = 0; i < nids; i++) {
			char *name = al_id_decode(ids[i]);
			if (name)
				child_of_typed(k, n->rest, name);
			free(name);
		}
	al_strings_free(ids, nids);
	return rc;
}

const al_kind kind_metrics = {
	.name = "metrics/", .pattern = RUN_P "/metrics", .flags = K_DIR | K_RUNNING | K_SCRATCH | K_MEMORY,
	.owner = O_RUN, .list = metrics_list,
};

static int metric_getattr(al_attr *out, al_tree *t, const node *n, const al_doc *run,
	const char *path, unsigned mode)
{
	return metric_attr(out, t, n, path, mode, run->update_us);
}

const al_kind kind_metric = {
	.name = "metric", .pattern = RUN_P "/metrics/{rest}", .flags = K_RUNNING | K_SCRATCH | K_MEMORY,
	.owner = O_RUN, .mode = 0644, .getattr = metric_getattr, .list = metrics_list,
	.open = open_metric, .mkdir = vdir_mkdir, .unlink = metric_remove,
};

/* A reader at the end (tail -f, a polling loop) gets the points appended since. */
static int metric_read(size_t *nread, al_file *f, char *buf, size_t size, uint64_t off)
{
	int rc = 0, found = 1;
	*nread = 0;
	pthread_mutex_lock(&f->mu);
	if (off + size > f->text_end)
		metric_settle_lines(f->t, f->staging);
	while (*nread < size && (rc = reader_seek(f, off + *nread, &found)) == 0 && found) {
		size_t got = 0;
		read_buffer(&got, f->snap, f->snaplen, buf + *nread, size - *nread,
			off + *nread - f->win_off);
		*nread += got;
	}
	pthread_mutex_unlock(&f->mu);
	/* An error past some bytes fails the whole read: a short read is the end of the file to
	 * the kernel, which then shows the text cut there (a damaged or missing chunk did so). */
	if (rc)
		*nread = 0;
	return rc;
}

static int metric_write_op(al_file *f, const char *buf, size_t size, uint64_t off)
{
	/* Writes append wherever they are aimed; one from the start of the file (`>`, an editor's
	 * save, `rsync --inplace`) rewrites it, and its lines that repeat the points already there
	 * are skipped (metric_skip_same). */
	if (!f->wrote) {
		f->wrote = 1;
		f->matching = off == 0 && !(f->flags & AL_OPEN_APPEND);
	}
	return metric_write(f, buf, size);
}

static int metric_truncate(al_file *f, uint64_t size)
{
	(void)f;
	(void)size;
	return 0;   /* append-only: history is never lost */
}

/* A close() may be of a copy of the descriptor (dup, a shell's `printf … >&3`, a forked worker):
 * a partial last line waits for the next write to go on, for the last close, or for a reader
 * (metric_settle_lines), to be recorded whole (README "metrics"). */
static int metric_flush(al_file *f)
{
	if (!(f->flags & AL_OPEN_WRITE))
		return 0;
	if (f->text.len)
		f->line_closed = 1;
	return al_series_sync(f->t->series);
}

/* Points appended since open are part of the file now (tail -f fstat()s, then reads); the kernel
 * reads up to the size given here, so it must be what the handle serves. */
static int metric_getattr_open(al_attr *out, al_file *f)
{
	al_series_summary s;
	int rc;
	path_attr(out, f);
	metric_settle_lines(f->t, f->staging);
	rc = al_series_summary_get(&s, f->t->series, f->staging);
	if (rc == AL_ENOTFOUND) {   /* not one point yet (a new metric still being written) */
		al_error_clear();
		s.text_bytes = 0;
		rc = 0;
	}
	if (rc == 0)
		out->size = s.text_bytes;
	return rc;
}

/* Writes are reformatted: the kernel must not cache what was written. Reads go past the page
 * cache too: the file grows while open, and the kernel kept its last page as first read (zero
 * past that end) and served it up to a newer size another open's stat gave, NUL bytes after the
 * last line (README "metrics": a read never returns NUL bytes while writers append). */
static int metric_direct_io(al_file *f)
{
	(void)f;
	return 1;
}

/* The last close: a partial last line is recorded now. */
static int metric_release(al_file *f)
{
	ahead_free(f);
	if (f->text.len)
		metric_end_line(f);
	match_end(f);
	return 0;
}

const file_class metric_class = {
	.read = metric_read, .write = metric_write_op, .truncate = metric_truncate,
	.flush = metric_flush, .getattr = metric_getattr_open, .direct_io = metric_direct_io,
	.release = metric_release,
};
