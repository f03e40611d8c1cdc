/* aletheia: dataset-aware prefetch: a dataset's files handed to the cache in listing order when
 * reads of the dataset look like a scan, and .aletheia/prefetch, which pulls a whole dataset into
 * the cache (README "Reading datasets: prefetch"). The cache knows blobs only; the dataset's
 * listing is known here. */
#include <time.h>
#include "internal.h"

/* Cold opens (of files not complete in the cache) of one dataset within SCAN_WINDOW_US that make
 * its reads a scan: one reader in listing order, or several readers in a shuffled order. */
#define SCAN_OPENS 3
#define SCAN_WINDOW_US (10 * 1000000LL)
/* A pull's report gets a progress line at most this often. */
#define PROGRESS_US (250 * 1000LL)

struct ds_scan {
	al_tree *t;
	char *ds_doc;
	char *ds_path;             /* the dataset's folder */
	unsigned cold;
	char *cold_names[SCAN_OPENS];   /* the distinct files counted in cold (n->rest) */
	int64_t first_us;
	int listing;               /* its thread lists the dataset and starts the prefetch */
	int has_thread;
	pthread_t thread;
	al_cache_prefetch *p;      /* the last prefetch started for it */
	struct ds_scan *next;
};

/* A file's blob is read in place (a local blob store), not through the cache. */
static int blob_is_local(al_tree *t, const char *source, const char *hash)
{
	char *local = NULL;
	int r;
	if (source)
		return 0;
	if (t->blobs->verify)
		return 1;
	r = t->blobs->local_path(&local, t->blobs, hash) == 0;
	free(local);
	return r;
}

typedef struct ds_items {
	al_doc_list *l;            /* owns the strings items point to */
	al_cache_item *items;
	size_t n, local;           /* local: files read in place, left out */
	uint64_t bytes;
} ds_items;

static void ds_items_free(ds_items *d)
{
	al_doc_list_free(d->l);
	free(d->items);
	memset(d, 0, sizeof(*d));
}

static const char *item_path(const al_doc *d)
{
	const char *p = al_fields_get_string(d->fields, "path");
	return p ? p : "";
}

static int cmp_doc_path(const void *a, const void *b)
{
	return strcmp(item_path(*(al_doc *const *)a), item_path(*(al_doc *const *)b));
}

/* The dataset's files that are read through the cache, sorted by path (the order `ls -R` and a
 * sorted glob read them in), as (hash, source, size). */
static int dataset_items(ds_items *out, al_tree *t, const char *ds_doc)
{
	char *coll = xasprintf("%s/files", ds_doc);
	int rc;

	memset(out, 0, sizeof(*out));
	if (!coll)
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((rc = al_store_list(&out->l, t->store, coll, NULL, NULL)))
		goto cleanup;
	qsort(out->l->docs, out->l->count, sizeof(*out->l->docs), cmp_doc_path);
	if (out->l->count && !(out->items = calloc(out->l->count, sizeof(*out->items)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (size_t i = 0; i < out->l->count; i++) {
		const al_doc *d = out->l->docs[i];
		const char *type = al_fields_get_string(d->fields, "type");
		const char *hash = al_fields_get_string(d->fields, "hash");
		int64_t size = 0;
		if ((type && strcmp(type, "dir") == 0) || !hash || !al_hash_is_valid(hash))
			continue;
		al_fields_get_int(&size, d->fields, "size");
		const char *source = blob_source(t, d, hash);
		if (blob_is_local(t, source, hash)) {
			out->local++;
			continue;
		}
		out->items[out->n].hash = hash;
		out->items[out->n].source = source;
		out->items[out->n].size = (uint64_t)(size > 0 ? size : 0);
		out->bytes += out->items[out->n].size;
		out->n++;
	}
cleanup:
	free(coll);
	if (rc)
		ds_items_free(out);
	return rc;
}

/* ---- prefetch when reads look like a scan ---- */

static void *scan_thread(void *arg)
{
	struct ds_scan *s = arg;
	al_tree *t = s->t;
	al_cache_prefetch *p = NULL;
	ds_items d;
	uint64_t g0 = attrcache_gen(t);

	if (dataset_items(&d, t, s->ds_doc) == 0) {
		/* the readers will look up and open the files listed here: no document read each */
		dataset_records_keep(t, s->ds_path, d.l, g0);
		if (d.n && al_cache_prefetch_start(&p, t->cache, d.items, d.n, AL_CACHE_PREFETCH_AHEAD))
			fprintf(stderr, "aletheia: no prefetch for %s: %s\n", s->ds_doc, al_error_last());
		ds_items_free(&d);
	}
	pthread_mutex_lock(&t->scan_lock);
	s->p = p;
	s->listing = 0;
	pthread_mutex_unlock(&t->scan_lock);
	return NULL;
}

static void scan_reset(struct ds_scan *s)
{
	for (unsigned i = 0; i < s->cold && i < SCAN_OPENS; i++) {
		free(s->cold_names[i]);
		s->cold_names[i] = NULL;
	}
	s->cold = 0;
}

void dataset_scan_note(al_tree *t, const node *n, int cold)
{
	struct ds_scan *s;
	int64_t now = al__mono_us();

	if (!cold || !n->ds_doc)
		return;
	pthread_mutex_lock(&t->scan_lock);
	for (s = t->scans; s && strcmp(s->ds_doc, n->ds_doc) != 0; s = s->next)
		;
	if (!s) {
		if (!(s = calloc(1, sizeof(*s))) || !(s->ds_doc = strdup(n->ds_doc)) ||
		    !(s->ds_path = dataset_folder(n))) {
			if (s)
				free(s->ds_doc);
			free(s);
			goto unlock;
		}
		s->t = t;
		s->next = t->scans;
		t->scans = s;
	}
	if (s->listing)
		goto unlock;
	if (s->p) {
		al_cache_prefetch_stats st;
		al_cache_prefetch_get_stats(&st, s->p);
		if (!st.finished)
			goto unlock;    /* still ahead of the readers (or waiting for them) */
		al_cache_prefetch_free(s->p);
		s->p = NULL;
		scan_reset(s);
	}
	if (!s->cold || now - s->first_us > SCAN_WINDOW_US) {
		scan_reset(s);
		s->first_us = now;
	}
	/* Distinct files: several processes opening one cold file at once are no scan. */
	for (unsigned i = 0; i < s->cold; i++)
		if (strcmp(s->cold_names[i], n->rest) == 0)
			goto unlock;
	if (!(s->cold_names[s->cold] = strdup(n->rest)))
		goto unlock;
	if (++s->cold < SCAN_OPENS)
		goto unlock;
	/* A scan: list the dataset off the reader's thread (a large one on Firestore takes pages). */
	if (s->has_thread) {
		pthread_join(s->thread, NULL);    /* done: it cleared listing */
		s->has_thread = 0;
	}
	s->listing = 1;
	scan_reset(s);
	if (pthread_create(&s->thread, NULL, scan_thread, s) == 0)
		s->has_thread = 1;
	else
		s->listing = 0;
unlock:
	pthread_mutex_unlock(&t->scan_lock);
}

void dataset_scans_free(al_tree *t)
{
	struct ds_scan *s, *next;
	for (s = t->scans; s; s = next) {
		next = s->next;
		if (s->has_thread)
			pthread_join(s->thread, NULL);
		al_cache_prefetch_free(s->p);
		scan_reset(s);
		free(s->ds_doc);
		free(s->ds_path);
		free(s);
	}
	t->scans = NULL;
}

/* ---- .aletheia/prefetch: a whole dataset into the cache ---- */

static int prefetch_open(al_file *f, int flags, const char *path)
{
	(void)flags;
	(void)path;
	f->kind = F_PREFETCH;
	return 0;
}

const al_kind kind_ctl_prefetch = {
	.name = ".aletheia/prefetch", .pattern = ".aletheia/prefetch", .flags = K_SHARED, .mode = 0600,
	.getattr = ctl_empty_attr, .open = prefetch_open,
};

/* One request per handle: "PROJECT/DATASET" (a line). The pull starts when the report is first
 * read, so a plain read of the file starts nothing and gets nothing. */
static int prefetch_write(al_file *f, const char *buf, size_t size, uint64_t off)
{
	char line[2 * MAX_NAME + 2], *mpath = NULL;
	size_t n = size;
	node nd;
	int rc;

	(void)off;
	if (f->pf_ds)
		return al_error_set(AL_EBUSY, "prefetch: one request per open file");
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	if (!n || n >= sizeof(line) || memchr(buf, '\n', n))
		return al_error_set(AL_EINVAL, "prefetch: the request is one line, PROJECT/DATASET");
	memcpy(line, buf, n);
	line[n] = '\0';
	{
		const char *slash = strchr(line, '/');
		if (!slash || slash == line || !slash[1] || strchr(slash + 1, '/'))
			return al_error_set(AL_EINVAL, "prefetch: the request is PROJECT/DATASET (got "
				"\"%.200s\")", line);
		if (!(mpath = xasprintf("/%.*s/datasets/%s", (int)(slash - line), line, slash + 1)))
			return al_error_set(AL_ENOMEM, "out of memory");
	}
	if ((rc = node_parse(&nd, mpath)) == 0) {
		if (nd.k != &kind_dataset)
			rc = al_error_set(AL_EINVAL, "prefetch: \"%.200s\" is not PROJECT/DATASET", line);
		else if ((rc = doc_exists(f->t, nd.ds_doc)) == AL_ENOTFOUND)
			rc = al_error_set(AL_ENOTFOUND, "prefetch: no dataset %s", line);
		if (rc == 0 && (!(f->pf_ds = strdup(nd.ds_doc)) || !(f->pf_name = strdup(line))))
			rc = al_error_set(AL_ENOMEM, "out of memory");
		node_free(&nd);
	}
	free(mpath);
	return rc;
}

/* Lock f->mu held: the next lines of the report (a progress line, or the end). */
static int prefetch_step(al_file *f)
{
	al_tree *t = f->t;
	al_cache_prefetch_stats st;
	int rc = 0;

	if (!f->pf) {
		ds_items d;
		f->pf_t0 = al__mono_us();
		if ((rc = dataset_items(&d, t, f->pf_ds)) == 0) {
			f->pf_local = d.local;
			rc = al_cache_prefetch_start(&f->pf, t->cache, d.items, d.n, AL_CACHE_PREFETCH_ALL);
			ds_items_free(&d);
		}
		if (rc) {
			/* The cause goes to the report (the command prints it), not to write()'s errno. */
			al_buf_printf(&f->text, "error: %s\n", al_error_last());
			f->pf_done = 1;
			return 0;
		}
		al_cache_prefetch_get_stats(&st, f->pf);
		al_buf_printf(&f->text, "start: %llu files, %llu bytes\n", (unsigned long long)st.files,
			(unsigned long long)st.bytes);
		return 0;
	}
	for (;;) {
		int64_t wait = f->pf_last_us + PROGRESS_US - al__mono_us();
		al_cache_prefetch_get_stats(&st, f->pf);
		if (st.finished || wait <= 0)
			break;
		al_cache_prefetch_wait(f->pf, (unsigned)(wait / 1000) + 1);
	}
	f->pf_last_us = al__mono_us();
	al_buf_printf(&f->text, "progress: %llu %llu %llu %llu\n", (unsigned long long)st.files_done,
		(unsigned long long)st.files, (unsigned long long)st.bytes_done,
		(unsigned long long)st.bytes);
	if (!st.finished)
		return 0;
	if (st.err_rc)
		al_buf_printf(&f->text, "error: %s\n", st.err);
	al_buf_printf(&f->text, "prefetch: %s: %llu files, %llu bytes: %llu cached already, %llu "
		"fetched (%llu bytes), %llu failed, %zu local, %.1f s\n", f->pf_name,
		(unsigned long long)st.files, (unsigned long long)st.bytes,
		(unsigned long long)st.cached_files, (unsigned long long)st.fetched_files,
		(unsigned long long)st.fetched_bytes, (unsigned long long)st.failed_files, f->pf_local,
		(double)(al__mono_us() - f->pf_t0) / 1e6);
	f->pf_done = 1;
	return 0;
}

/* The report is made as it is read; read() returns as soon as it has new lines. */
static int prefetch_read(size_t *nread, al_file *f, char *buf, size_t size, uint64_t off)
{
	int rc = 0;
	pthread_mutex_lock(&f->mu);
	while (f->pf_ds && !f->pf_done && f->text.len <= off && rc == 0)
		rc = prefetch_step(f);
	if (rc == 0)
		rc = read_buffer(nread, f->text.ptr, f->text.len, buf, size, off);
	pthread_mutex_unlock(&f->mu);
	return rc;
}

static int prefetch_truncate(al_file *f, uint64_t size)
{
	(void)f;
	(void)size;
	return 0;
}

/* The report grows past the file's size (0): its reads must reach us. */
static int prefetch_direct_io(al_file *f)
{
	(void)f;
	return 1;
}

/* Closed (the command ended or was killed): no new fetches; those in flight are kept, verified,
 * so the next pull starts where this one stopped. */
static int prefetch_release(al_file *f)
{
	al_cache_prefetch_free(f->pf);
	f->pf = NULL;
	free(f->pf_ds);
	free(f->pf_name);
	f->pf_ds = f->pf_name = NULL;
	return 0;
}

const file_class prefetch_class = {
	.read = prefetch_read, .write = prefetch_write, .truncate = prefetch_truncate,
	.direct_io = prefetch_direct_io, .release = prefetch_release,
};
