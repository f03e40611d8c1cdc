/* aletheia: fsck (core/fsck.h): lists every blob-backed record, groups the records by
 * blob, and checks each blob once: a local blob hashed in full, a remote object sized (or
 * downloaded and hashed), a cached copy hashed. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/fsck.h"
#include "aletheia/hash.h"
#include "core/doc/value.h"

/* One file record that uses a blob. */
typedef struct item {
	char hash[AL_HASH_HEX_LEN + 1];   /* "" when the record has no valid hash */
	uint64_t size;
	char *source;                     /* an imported file's URL; NULL: the blob store's object */
	char *path;                       /* its path in the mount */
} item;

struct al_fsck {
	al_fsck_options o;
	char *mountpoint, *tmp_dir;
	item *items;
	size_t n, cap, next;              /* items [0, next) are reported */
	int listed, finished;
	uint64_t total;                   /* blobs to check */
	uint64_t blobs, bytes, damaged, missing, unchecked;
};

/* A step that found nothing to say for this long says how far it got instead, so a reader of
 * the report is never kept waiting in one read() for the whole check (and can be interrupted). */
#define PROGRESS_US (2 * 1000000LL)
/* Downloads of one object before fsck --download gives up on a transfer that keeps failing. */
#define DOWNLOADS_MAX 3

enum { V_OK, V_DAMAGED, V_MISSING, V_UNCHECKED };

/* asprintf that gives NULL when out of memory. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

int al_fsck_new(al_fsck **out, const al_fsck_options *opts)
{
	al_fsck *k;
	*out = NULL;
	if (!opts || opts->version != AL_FSCK_OPTIONS_VERSION || !opts->store || !opts->blobs)
		return al_error_set(AL_EINVAL, "fsck needs a store and a blob store");
	if (!(k = calloc(1, sizeof(*k))))
		return al_error_set(AL_ENOMEM, "out of memory");
	k->o = *opts;
	k->mountpoint = strdup(opts->mountpoint ? opts->mountpoint : "");
	k->tmp_dir = strdup(opts->tmp_dir ? opts->tmp_dir : "/tmp");
	if (!k->mountpoint || !k->tmp_dir) {
		al_fsck_free(k);
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	k->o.mountpoint = k->mountpoint;
	k->o.tmp_dir = k->tmp_dir;
	*out = k;
	return 0;
}

void al_fsck_free(al_fsck *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->n; i++) {
		free(k->items[i].source);
		free(k->items[i].path);
	}
	free(k->items);
	free(k->mountpoint);
	free(k->tmp_dir);
	free(k);
}

/* ---- the records ---- */

/* An imported file's URL (its record's blob names something outside the blob store), else NULL:
 * the same rule as the tree's reads. */
static const char *import_source(al_fsck *k, const char *blob, const char *hash)
{
	char *own;
	int same;
	if (!blob || !(strncmp(blob, "http://", 7) == 0 || strncmp(blob, "https://", 8) == 0 ||
	    strncmp(blob, "s3://", 5) == 0 || strncmp(blob, "gs://", 5) == 0))
		return NULL;
	own = k->o.blobs->uri(k->o.blobs, hash);
	same = own && strcmp(own, blob) == 0;
	free(own);
	return same ? NULL : blob;
}

static int add_item(al_fsck *k, const char *hash, uint64_t size, const char *source, char *path)
{
	item *it;
	if (k->n == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 256;
		item *grown = realloc(k->items, cap * sizeof(*grown));
		if (!grown) {
			free(path);
			return al_error_set(AL_ENOMEM, "out of memory listing the records");
		}
		k->items = grown;
		k->cap = cap;
	}
	it = &k->items[k->n];
	memset(it, 0, sizeof(*it));
	if (hash && al_hash_is_valid(hash))
		memcpy(it->hash, hash, AL_HASH_HEX_LEN + 1);
	it->size = size;
	it->path = path;
	if (source && !(it->source = strdup(source))) {
		free(path);
		return al_error_set(AL_ENOMEM, "out of memory listing the records");
	}
	k->n++;
	return 0;
}

/* Every file record of collection coll (folders aside); folder is their folder's mount path. */
static int add_records(al_fsck *k, const char *coll, const char *folder)
{
	al_doc_list *l = NULL;
	int rc;
	if ((rc = al_store_list(&l, k->o.store, coll, NULL, NULL)) != 0)
		return rc;
	for (size_t i = 0; i < l->count && rc == 0; i++) {
		const cJSON *f = l->docs[i]->fields;
		const char *type = al_fields_get_string(f, "type"), *path = al_fields_get_string(f, "path");
		const char *hash = al_fields_get_string(f, "hash");
		char *decoded = NULL, *mpath = NULL;
		int64_t size = 0;
		if (type && (strcmp(type, "dir") == 0 || strcmp(type, "link") == 0))
			continue;   /* no content */
		if (!path)
			path = decoded = al_id_decode(al_doc_id(l->docs[i]->path));
		al_fields_get_int(&size, f, "size");
		if (!path || !(mpath = fmt("%s/%s", folder, path))) {
			free(decoded);
			rc = al_error_set(AL_ENOMEM, "out of memory listing the records");
			break;
		}
		free(decoded);
		rc = add_item(k, hash, (uint64_t)(size > 0 ? size : 0),
			al_hash_is_valid(hash) ? import_source(k, al_fields_get_string(f, "blob"), hash) : NULL,
			mpath);
	}
	al_doc_list_free(l);
	return rc;
}

/* Lists collection coll and calls each(k, document, id, ctx) for its documents. */
static int each_doc(al_fsck *k, const char *coll, int (*each)(al_fsck *, const al_doc *, const char *,
	const char *), const char *ctx)
{
	al_doc_list *l = NULL;
	int rc;
	if ((rc = al_store_list(&l, k->o.store, coll, NULL, NULL)) != 0)
		return rc;
	for (size_t i = 0; i < l->count && rc == 0; i++)
		rc = each(k, l->docs[i], al_doc_id(l->docs[i]->path), ctx);
	al_doc_list_free(l);
	return rc;
}

/* Mount paths follow the tree: <mnt>/<project>/datasets/<dataset>/…,
 * <mnt>/<project>/experiments/<experiment>/artifacts/… and …/runs/<run>/{artifacts/…,output.log}. */
static int on_run(al_fsck *k, const al_doc *run, const char *id, const char *exp_folder)
{
	char *folder = fmt("%s/runs/%s", exp_folder, id), *art = fmt("%s/runs/%s/artifacts", exp_folder, id);
	char *arts = fmt("%s/artifacts", run->path), *logs = fmt("%s/logs", run->path);
	int rc;
	if (!folder || !art || !arts || !logs)
		rc = al_error_set(AL_ENOMEM, "out of memory listing the records");
	else if ((rc = add_records(k, arts, art)) == 0)
		rc = add_records(k, logs, folder);
	free(folder);
	free(art);
	free(arts);
	free(logs);
	return rc;
}

static int on_experiment(al_fsck *k, const al_doc *exp, const char *id, const char *proj_folder)
{
	char *folder = fmt("%s/experiments/%s", proj_folder, id);
	char *art = fmt("%s/experiments/%s/artifacts", proj_folder, id);
	char *arts = fmt("%s/artifacts", exp->path), *runs = fmt("%s/runs", exp->path);
	int rc;
	if (!folder || !art || !arts || !runs)
		rc = al_error_set(AL_ENOMEM, "out of memory listing the records");
	else if ((rc = add_records(k, arts, art)) == 0)
		rc = each_doc(k, runs, on_run, folder);
	free(folder);
	free(art);
	free(arts);
	free(runs);
	return rc;
}

static int on_dataset(al_fsck *k, const al_doc *ds, const char *id, const char *proj_folder)
{
	char *folder = fmt("%s/datasets/%s", proj_folder, id), *files = fmt("%s/files", ds->path);
	int rc = folder && files ? add_records(k, files, folder)
		: al_error_set(AL_ENOMEM, "out of memory listing the records");
	free(folder);
	free(files);
	return rc;
}

static int on_project(al_fsck *k, const al_doc *proj, const char *id, const char *unused)
{
	char *folder = fmt("%s/%s", k->mountpoint, id), *sets = fmt("%s/datasets", proj->path);
	char *exps = fmt("%s/experiments", proj->path);
	int rc;
	(void)unused;
	if (!folder || !sets || !exps)
		rc = al_error_set(AL_ENOMEM, "out of memory listing the records");
	else if ((rc = each_doc(k, sets, on_dataset, folder)) == 0)
		rc = each_doc(k, exps, on_experiment, folder);
	free(folder);
	free(sets);
	free(exps);
	return rc;
}

static int cmp_items(const void *pa, const void *pb)
{
	const item *a = pa, *b = pb;
	int c = strcmp(a->hash, b->hash);
	if (c)
		return c;
	if (!a->source != !b->source)
		return a->source ? 1 : -1;
	if (a->source && (c = strcmp(a->source, b->source)) != 0)
		return c;
	return strcmp(a->path, b->path);
}

static int same_blob(const item *a, const item *b)
{
	return strcmp(a->hash, b->hash) == 0 && !a->source == !b->source &&
		(!a->source || strcmp(a->source, b->source) == 0);
}

/* ---- checking one blob ---- */

typedef struct {
	al_hasher *h;
	uint64_t n;
} hash_sink_ctx;

static int hash_sink(void *ctx, const void *data, size_t len)
{
	hash_sink_ctx *s = ctx;
	if (!data) {
		/* the object is read again (fetch.h: the last read missed the server's checksum) */
		al_hasher_free(s->h);
		s->h = NULL;
		s->n = 0;
		return al_hasher_new(&s->h);
	}
	al_hasher_update(s->h, data, len);
	s->n += len;
	return 0;
}

/* One download of the whole remote blob (or imported object), hashed into got (n bytes). */
static int download_hash(al_fsck *k, const item *it, char *got, uint64_t *n)
{
	int rc, fd = -1;

	*n = 0;
	if (it->source) {
		/* al_fetcher_stream checks the server's own checksum, if it gives one, and reads
		 * again when the bytes received do not match it */
		hash_sink_ctx s = {NULL, 0};
		if ((rc = al_hasher_new(&s.h)) == 0 &&
		    (rc = al_fetcher_stream(k->o.fetcher, it->source, hash_sink, &s)) == 0)
			al_hasher_final(got, s.h);
		al_hasher_free(s.h);
		*n = s.n;
		return rc;
	}
	fd = open(k->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		rc = al_error_set_errno(AL_EIO, errno, "cannot create a temp file in %s", k->tmp_dir);
	else if ((rc = k->o.blobs->fetch(k->o.blobs, it->hash, 0, it->size, fd, 0)) == 0)
		rc = al_hash_fd(got, n, fd);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Downloads the whole remote blob (or imported object) and hashes it: V_OK, V_DAMAGED, or
 * V_UNCHECKED when it could not be read. Bytes that do not hash to the record may have been
 * damaged on the way rather than in the bucket: the object is downloaded again, and it is
 * damaged only when two downloads in a row give the same other bytes (README "The command
 * line"); downloads that never agree leave it unchecked. */
static int download_check(al_fsck *k, const item *it, char *why, size_t whylen)
{
	char got[AL_HASH_HEX_LEN + 1], prev[AL_HASH_HEX_LEN + 1] = "";
	uint64_t n = 0, prev_n = 0;

	for (int i = 0; i < DOWNLOADS_MAX; i++) {
		if (download_hash(k, it, got, &n) != 0) {
			snprintf(why, whylen, "cannot download it: %s", al_error_last());
			return V_UNCHECKED;
		}
		if (n == it->size && strcmp(got, it->hash) == 0)
			return V_OK;
		if (prev[0] && n == prev_n && strcmp(got, prev) == 0) {
			snprintf(why, whylen, "its %llu bytes hash to %s (in %d downloads)",
				(unsigned long long)n, got, i + 1);
			return V_DAMAGED;
		}
		memcpy(prev, got, sizeof(prev));
		prev_n = n;
	}
	snprintf(why, whylen, "%d downloads gave other bytes each time (the last %llu bytes hashing to "
		"%s): damaged on the way, not checked", DOWNLOADS_MAX, (unsigned long long)n, got);
	return V_UNCHECKED;
}

static int check_blob(al_fsck *k, const item *it, char *why, size_t whylen)
{
	char cached[512] = "";
	uint64_t size = 0;
	int rc, found = 0, v;

	if (!it->hash[0]) {
		snprintf(why, whylen, "the record has no valid content hash");
		return V_DAMAGED;
	}
	if (!it->source && k->o.blobs->verify) {
		/* A local blob: hashed in full, whatever its record of the last check says. */
		rc = k->o.blobs->verify(NULL, k->o.blobs, it->hash, it->size, AL_BLOBS_VERIFY_FULL);
		if (rc == 0)
			return V_OK;
		snprintf(why, whylen, "%s", al_error_last());
		return rc == AL_ENOTFOUND ? V_MISSING : rc == AL_EIO ? V_DAMAGED : V_UNCHECKED;
	}
	/* A remote blob: its cached copy, if any, and the object itself. */
	if (k->o.cache && al_cache_check(&found, k->o.cache, it->hash, it->size) == AL_EIO)
		snprintf(cached, sizeof(cached), "%s", al_error_last());
	if (it->source && !k->o.fetcher)
		rc = al_error_set(AL_EINVAL, "imported files cannot be checked here");
	else if (it->source)
		rc = al_fetcher_stat(&size, NULL, k->o.fetcher, it->source);
	else if (k->o.blobs->stat)
		rc = k->o.blobs->stat(&size, k->o.blobs, it->hash);
	else
		rc = al_error_set(AL_EINVAL, "the %s blob store cannot tell an object's size",
			k->o.blobs->name);
	if (rc == AL_ENOTFOUND) {
		snprintf(why, whylen, "%s", al_error_last());
		v = V_MISSING;
	} else if (rc) {
		snprintf(why, whylen, "cannot check it: %s", al_error_last());
		v = V_UNCHECKED;
	} else if (size != it->size) {
		snprintf(why, whylen, "the stored object holds %llu bytes, not %llu",
			(unsigned long long)size, (unsigned long long)it->size);
		v = V_DAMAGED;
	} else if (k->o.flags & AL_FSCK_DOWNLOAD) {
		v = download_check(k, it, why, whylen);
	} else {
		v = V_OK;
	}
	if (*cached && (v == V_OK || v == V_UNCHECKED)) {
		snprintf(why, whylen, "%s", cached);
		v = V_DAMAGED;
	}
	return v;
}

/* ---- the report ---- */

static int step1(int *done, al_fsck *k, al_buf *out)
{
	static const char *const words[] = {"ok", "damaged", "missing", "unchecked"};
	char why[1024];
	size_t end;
	int rc, v;

	if (k->finished) {
		*done = 1;
		return 0;
	}
	if (!k->listed) {
		rc = each_doc(k, "projects", on_project, NULL);
		k->listed = 1;
		if (rc) {
			k->unchecked++;
			if ((rc = al_buf_printf(out, "unchecked -: cannot list the records: %s\n",
			    al_error_last())) != 0)
				return rc;
			k->next = k->n;    /* a partial list would report a partial truth */
		}
		qsort(k->items, k->n, sizeof(*k->items), cmp_items);
		for (size_t i = 0; i < k->n; i++)
			k->total += i == 0 || !same_blob(&k->items[i - 1], &k->items[i]);
		return 0;
	}
	if (k->next >= k->n) {
		k->finished = 1;
		*done = 1;
		return al_buf_printf(out, "fsck: %llu blobs checked, %llu bytes, %llu damaged (%llu missing), "
			"%llu not checked\n", (unsigned long long)k->blobs, (unsigned long long)k->bytes,
			(unsigned long long)(k->damaged + k->missing), (unsigned long long)k->missing,
			(unsigned long long)k->unchecked);
	}
	for (end = k->next + 1; end < k->n && same_blob(&k->items[k->next], &k->items[end]); end++)
		;
	why[0] = '\0';
	v = check_blob(k, &k->items[k->next], why, sizeof(why));
	if (k->items[k->next].hash[0]) {
		k->blobs++;
		k->bytes += k->items[k->next].size;
	}
	k->damaged += v == V_DAMAGED;
	k->missing += v == V_MISSING;
	k->unchecked += v == V_UNCHECKED;
	rc = 0;
	if (v != V_OK) {
		rc = al_buf_printf(out, "%s %s: %s\n", words[v],
			k->items[k->next].hash[0] ? k->items[k->next].hash : "-", why);
		for (size_t i = k->next; i < end && rc == 0; i++)
			rc = al_buf_printf(out, "  %s\n", k->items[i].path);
	}
	k->next = end;
	return rc;
}

int al_fsck_step(int *done, al_fsck *k, al_buf *out)
{
	size_t len0 = out->len;
	int64_t t0 = al_now_us();
	int rc = 0;

	*done = 0;
	while (rc == 0 && !*done && out->len == len0) {
		rc = step1(done, k, out);
		if (rc == 0 && !*done && out->len == len0 && al_now_us() - t0 >= PROGRESS_US)
			rc = al_buf_printf(out, "progress: %llu of %llu blobs checked, %llu bytes\n",
				(unsigned long long)k->blobs, (unsigned long long)k->total,
				(unsigned long long)k->bytes);
	}
	return rc;
}
