/* aletheia: metric series. Appends are journaled (one write() each) and kept in memory; a
 * flusher thread delivers dirty series to the metastore as chunk documents about once a second. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "aletheia/journal.h"
#include "aletheia/metric.h"
#include "aletheia/series.h"
#include "aletheia/value.h"
#include "util.h"

/* Lock order: set->flush_lock, then set->lock, then series->lock. */
typedef struct series {
	char *doc;              /* metric document path */
	size_t run_len;         /* length of the run document prefix of doc */
	pthread_mutex_t lock;
	int loaded;             /* points[] holds the whole series */
	al_point *pts;
	size_t count, cap;
	size_t flushed;         /* points already delivered */
	int64_t used_us;        /* last append or read, for evicting idle points from memory */
	al_series_summary sum;
	struct series *next;     /* hash chain */
	struct series *next_all; /* every series, for scans */
	struct series *next_run; /* the series of the same run */
} series;

/* The series of one run, so listing a run's metrics does not scan every series. */
typedef struct run_index {
	char *run_doc;
	series *list;
	struct run_index *next;
} run_index;

struct al_series_set {
	al_store_backend *store;
	al_journal *journal;
	pthread_mutex_t lock;
	pthread_mutex_t flush_lock;
	pthread_cond_t wake;
	series **buckets;
	size_t nbuckets;
	series *all;
	run_index **runs;         /* nbuckets chains */
	pthread_t thread;
	int started, stop;
	unsigned interval_ms;
	char last_error[512];
};

#define REC_POINTS 1

/* A delivered series untouched for this long gives its points' memory back. */
#define IDLE_EVICT_US (30LL * 1000000)


static void summary_reset(al_series_summary *sum)
{
	memset(sum, 0, sizeof(*sum));
	sum->step = -1;
	sum->min = NAN;
	sum->max = NAN;
	sum->last = NAN;
}

static void summary_add(al_series_summary *sum, const al_point *p)
{
	char text[AL_POINT_TEXT_MAX];
	sum->count++;
	sum->step = p->step;
	sum->last = p->value;
	if (!isnan(p->value)) {
		if (isnan(sum->min) || p->value < sum->min)
			sum->min = p->value;
		if (isnan(sum->max) || p->value > sum->max)
			sum->max = p->value;
	}
	sum->text_bytes += al_metric_format(text, p);
}

static int points_reserve(series *se, size_t extra)
{
	size_t cap = se->cap ? se->cap : 64;
	al_point *p;
	if (se->count + extra <= se->cap)
		return 0;
	while (cap < se->count + extra)
		cap *= 2;
	p = realloc(se->pts, cap * sizeof(*p));
	if (!p)
		return al_error_set(AL_ENOMEM, "out of memory for metric %s", se->doc);
	se->pts = p;
	se->cap = cap;
	return 0;
}

static int cmp_chunk(const void *a, const void *b)
{
	int64_t x = 0, y = 0;
	al_fields_get_int(&x, (*(al_doc *const *)a)->fields, "seq");
	al_fields_get_int(&y, (*(al_doc *const *)b)->fields, "seq");
	return x < y ? -1 : x > y;
}

/* Loads the stored points of a series (caller holds se->lock). */
static int series_load(al_series_set *s, series *se)
{
	al_doc_list *chunks = NULL;
	char *coll = NULL;
	int rc = 0;
	size_t i, k;

	if (se->loaded)
		return 0;
	if (asprintf(&coll, "%s/chunks", se->doc) < 0)
		return al_error_set(AL_ENOMEM, "out of memory");
	/* Nothing changes unless the chunks could be read (an unreachable backend). */
	if ((rc = al_store_list(&chunks, s->store, coll, NULL, NULL)))
		goto cleanup;
	se->count = 0;
	summary_reset(&se->sum);
	qsort(chunks->docs, chunks->count, sizeof(al_doc *), cmp_chunk);
	for (i = 0; i < chunks->count; i++) {
		const cJSON *f = chunks->docs[i]->fields;
		const cJSON *steps = al_value_get_array(al_fields_get(f, "steps"));
		const cJSON *values = al_value_get_array(al_fields_get(f, "values"));
		const cJSON *times = al_value_get_array(al_fields_get(f, "times"));
		int n = steps ? cJSON_GetArraySize(steps) : 0;
		if ((rc = points_reserve(se, (size_t)n)))
			goto cleanup;
		for (k = 0; k < (size_t)n; k++) {
			al_point p = {0, NAN, 0};
			al_value_get_int(&p.step, cJSON_GetArrayItem(steps, (int)k));
			if (values)
				al_value_get_double(&p.value, cJSON_GetArrayItem(values, (int)k));
			if (times)
				al_value_get_time(&p.time_us, cJSON_GetArrayItem(times, (int)k));
			se->pts[se->count++] = p;
			summary_add(&se->sum, &p);
		}
	}
	se->flushed = se->count;
	se->loaded = 1;
cleanup:
	free(coll);
	al_doc_list_free(chunks);
	return rc;
}

/* The index entry of the run whose document is the first len bytes of doc (s->lock held). */
static run_index *run_find(al_series_set *s, const char *doc, size_t len, int create)
{
	char *key = strndup(doc, len);
	size_t b;
	run_index *r;

	if (!key)
		return NULL;
	b = al__str_hash(key) % s->nbuckets;
	for (r = s->runs[b]; r; r = r->next)
		if (strcmp(r->run_doc, key) == 0)
			break;
	if (!r && create && (r = calloc(1, sizeof(*r)))) {
		r->run_doc = key;
		key = NULL;
		r->next = s->runs[b];
		s->runs[b] = r;
	}
	free(key);
	return r;
}

/* The in-memory entry of a metric document, or NULL (no entry is made). */
static series *series_find(al_series_set *s, const char *doc)
{
	series *se;
	pthread_mutex_lock(&s->lock);
	for (se = s->buckets[al__str_hash(doc) % s->nbuckets]; se; se = se->next)
		if (strcmp(se->doc, doc) == 0)
			break;
	pthread_mutex_unlock(&s->lock);
	return se;
}

/* Only a series that exists gets an entry: looking up names (ls, tab completion) costs no memory. */
static int series_exists(al_doc **doc, al_series_set *s, const char *metric_doc)
{
	if (series_find(s, metric_doc))
		return 0;
	return al_store_get(doc, s->store, metric_doc);
}

/* Finds or creates the in-memory entry for a metric document (not loaded). */
static int series_get(series **out, al_series_set *s, const char *doc)
{
	size_t b = al__str_hash(doc) % s->nbuckets;
	series *se;
	const char *m;

	pthread_mutex_lock(&s->lock);
	for (se = s->buckets[b]; se; se = se->next)
		if (strcmp(se->doc, doc) == 0)
			goto done;
	m = strstr(doc, "/metrics/");
	se = calloc(1, sizeof(*se));
	if (!se || !m || !(se->doc = strdup(doc))) {
		free(se);
		pthread_mutex_unlock(&s->lock);
		return al_error_set(m ? AL_ENOMEM : AL_EINVAL, "bad metric document %s", doc);
	}
	se->run_len = (size_t)(m - doc);
	pthread_mutex_init(&se->lock, NULL);
	summary_reset(&se->sum);
	se->next = s->buckets[b];
	s->buckets[b] = se;
	se->next_all = s->all;
	s->all = se;
	{
		run_index *r = run_find(s, doc, se->run_len, 1);
		if (r) {
			se->next_run = r->list;
			r->list = se;
		}
	}
done:
	pthread_mutex_unlock(&s->lock);
	*out = se;
	return 0;
}

/* Appends parsed points (caller holds se->lock and has loaded it). */
static int series_push(series *se, const al_point *pts, size_t n)
{
	size_t i;
	int rc = points_reserve(se, n);
	if (rc)
		return rc;
	for (i = 0; i < n; i++) {
		se->pts[se->count++] = pts[i];
		summary_add(&se->sum, &pts[i]);
	}
	se->sum.update_us = al_now_us();
	return 0;
}

static int journal_points(al_series_set *s, const series *se, uint64_t first,
	const al_point *pts, size_t n)
{
	size_t plen = strlen(se->doc), len = 1 + 2 + plen + 8 + 4 + n * 24, off = 0, i;
	char stackbuf[1024], *rec = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
	uint16_t pl = (uint16_t)plen;
	uint32_t cnt = (uint32_t)n;
	int rc;

	if (!rec)
		return al_error_set(AL_ENOMEM, "out of memory journaling %zu points", n);
	rec[off++] = REC_POINTS;
	memcpy(rec + off, &pl, 2); off += 2;
	memcpy(rec + off, se->doc, plen); off += plen;
	memcpy(rec + off, &first, 8); off += 8;
	memcpy(rec + off, &cnt, 4); off += 4;
	for (i = 0; i < n; i++) {
		memcpy(rec + off, &pts[i].step, 8); off += 8;
		memcpy(rec + off, &pts[i].value, 8); off += 8;
		memcpy(rec + off, &pts[i].time_us, 8); off += 8;
	}
	rc = al_journal_append(s->journal, rec, len);
	if (rec != stackbuf)
		free(rec);
	return rc;
}

int al_series_append_text(al_series_set *s, const char *metric_doc, const char *text, size_t len)
{
	series *se;
	al_point *pts = NULL;
	size_t n = 0;
	int rc;

	if ((rc = series_get(&se, s, metric_doc)))
		return rc;
	pthread_mutex_lock(&se->lock);
	if ((rc = series_load(s, se)))
		goto cleanup;
	se->used_us = al_now_us();
	if ((rc = al_metric_parse(&pts, &n, text, len, se->sum.step, se->used_us)))
		goto cleanup;
	if (n == 0)
		goto cleanup;
	/* Journal first: once this returns the points survive kill -9. */
	if ((rc = journal_points(s, se, se->count, pts, n)))
		goto cleanup;
	rc = series_push(se, pts, n);
cleanup:
	pthread_mutex_unlock(&se->lock);
	free(pts);
	return rc;
}

int al_series_render(char **out, size_t *len, al_series_set *s, const char *metric_doc)
{
	series *se;
	char *buf = NULL;
	size_t i, off = 0;
	int rc;

	*out = NULL;
	{
		al_doc *d = NULL;
		rc = series_exists(&d, s, metric_doc);
		al_doc_free(d);
		if (rc)
			return rc;
	}
	if ((rc = series_get(&se, s, metric_doc)))
		return rc;
	pthread_mutex_lock(&se->lock);
	if ((rc = series_load(s, se)))
		goto cleanup;
	se->used_us = al_now_us();
	if (se->count == 0) {
		al_doc *d = NULL;
		rc = al_store_get(&d, s->store, metric_doc);
		al_doc_free(d);
		if (rc)
			goto cleanup;
	}
	buf = malloc(se->sum.text_bytes + AL_POINT_TEXT_MAX);
	if (!buf) {
		rc = al_error_set(AL_ENOMEM, "out of memory rendering %s", metric_doc);
		goto cleanup;
	}
	for (i = 0; i < se->count; i++)
		off += al_metric_format(buf + off, &se->pts[i]);
	*out = buf;
	*len = off;
	buf = NULL;
cleanup:
	pthread_mutex_unlock(&se->lock);
	free(buf);
	return rc;
}

int al_series_summary_get(al_series_summary *out, al_series_set *s, const char *metric_doc)
{
	series *se;
	al_doc *d = NULL;
	int rc;
	int64_t bytes;

	if ((rc = series_exists(&d, s, metric_doc)) || (rc = series_get(&se, s, metric_doc))) {
		al_doc_free(d);
		return rc;
	}
	pthread_mutex_lock(&se->lock);
	if (se->loaded && se->count > 0) {
		*out = se->sum;
		goto cleanup;
	}
	/* The stored summary carries the text size, so nothing needs loading. */
	if (!d && (rc = al_store_get(&d, s->store, metric_doc)))
		goto cleanup;
	if (!se->loaded && al_fields_get_int(&bytes, d->fields, "bytes") == 0) {
		int64_t v;
		summary_reset(out);
		out->text_bytes = (uint64_t)bytes;
		if (al_fields_get_int(&v, d->fields, "count") == 0)
			out->count = (uint64_t)v;
		al_fields_get_int(&out->step, d->fields, "step");
		al_fields_get_double(&out->last, d->fields, "last");
		al_fields_get_double(&out->min, d->fields, "min");
		al_fields_get_double(&out->max, d->fields, "max");
		out->update_us = d->update_us;
		goto cleanup;
	}
	if ((rc = series_load(s, se)))
		goto cleanup;
	*out = se->sum;
	if (!out->update_us)
		out->update_us = d->update_us;
cleanup:
	pthread_mutex_unlock(&se->lock);
	al_doc_free(d);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int al_series_ids(char ***out, size_t *count, al_series_set *s, const char *run_doc)
{
	al_doc_list *list = NULL;
	char *coll = NULL, **ids = NULL;
	size_t n = 0, cap, i, rl = strlen(run_doc), w;
	int rc;
	series *se;
	run_index *run;

	*out = NULL;
	*count = 0;
	if (asprintf(&coll, "%s/metrics", run_doc) < 0)
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((rc = al_store_list(&list, s->store, coll, NULL, NULL)))
		goto cleanup;
	pthread_mutex_lock(&s->lock);
	cap = list->count + 16;
	run = run_find(s, run_doc, rl, 0);
	for (se = run ? run->list : NULL; se; se = se->next_run)
		cap++;
	ids = calloc(cap + 1, sizeof(char *));
	if (!ids) {
		pthread_mutex_unlock(&s->lock);
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (se = run ? run->list : NULL; se; se = se->next_run)
		if (se->count > 0)
			ids[n++] = strdup(al_doc_id(se->doc));
	pthread_mutex_unlock(&s->lock);
	for (i = 0; i < list->count; i++)
		ids[n++] = strdup(al_doc_id(list->docs[i]->path));
	qsort(ids, n, sizeof(char *), cmp_str);
	for (i = 0, w = 0; i < n; i++) {
		if (w > 0 && strcmp(ids[w - 1], ids[i]) == 0) {
			free(ids[i]);
			continue;
		}
		ids[w++] = ids[i];
	}
	*out = ids;
	*count = w;
	ids = NULL;
cleanup:
	free(coll);
	free(ids);
	al_doc_list_free(list);
	return rc;
}

/* --- delivery ---------------------------------------------------------------------------- */

static cJSON *chunk_fields(const al_point *pts, size_t n, int64_t seq)
{
	cJSON *f = cJSON_CreateObject(), *steps = cJSON_CreateArray(),
	      *values = cJSON_CreateArray(), *times = cJSON_CreateArray();
	size_t i;
	for (i = 0; i < n; i++) {
		cJSON_AddItemToArray(steps, al_value_int(pts[i].step));
		cJSON_AddItemToArray(values, al_value_double(pts[i].value));
		cJSON_AddItemToArray(times, al_value_time(pts[i].time_us));
	}
	al_fields_set(f, "seq", al_value_int(seq));
	al_fields_set(f, "steps", al_value_array(steps));
	al_fields_set(f, "values", al_value_array(values));
	al_fields_set(f, "times", al_value_array(times));
	return f;
}

static cJSON *number_or_null(double v)
{
	return isnan(v) ? al_value_null() : al_value_double(v);
}

static cJSON *summary_fields(const char *doc, const al_series_summary *sum)
{
	cJSON *f = cJSON_CreateObject();
	char *name = al_id_decode(al_doc_id(doc));
	al_fields_set(f, "name", al_value_string(name ? name : al_doc_id(doc)));
	al_fields_set(f, "count", al_value_int((int64_t)sum->count));
	al_fields_set(f, "last", number_or_null(sum->last));
	al_fields_set(f, "step", al_value_int(sum->step));
	al_fields_set(f, "min", number_or_null(sum->min));
	al_fields_set(f, "max", number_or_null(sum->max));
	al_fields_set(f, "bytes", al_value_int((int64_t)sum->text_bytes));
	al_fields_set(f, "updated", al_value_time(sum->update_us ? sum->update_us : al_now_us()));
	free(name);
	return f;
}

/* Delivers one series' undelivered chunks and its summary in one commit. */
static int deliver(al_series_set *s, series *se)
{
	al_point *pts = NULL;
	al_series_summary sum;
	size_t first_chunk, count, nchunks, i;
	al_write *w = NULL;
	cJSON **fields = NULL;
	char **paths = NULL;
	int rc = 0;

	pthread_mutex_lock(&se->lock);
	count = se->count;
	if (!se->loaded || count == se->flushed) {
		pthread_mutex_unlock(&se->lock);
		return 0;
	}
	first_chunk = se->flushed / AL_SERIES_CHUNK;
	pts = malloc((count - first_chunk * AL_SERIES_CHUNK) * sizeof(*pts));
	if (pts)
		memcpy(pts, se->pts + first_chunk * AL_SERIES_CHUNK,
			(count - first_chunk * AL_SERIES_CHUNK) * sizeof(*pts));
	sum = se->sum;
	pthread_mutex_unlock(&se->lock);
	if (!pts)
		return al_error_set(AL_ENOMEM, "out of memory delivering %s", se->doc);

	nchunks = (count - 1) / AL_SERIES_CHUNK - first_chunk + 1;
	w = calloc(nchunks + 1, sizeof(*w));
	fields = calloc(nchunks + 1, sizeof(*fields));
	paths = calloc(nchunks + 1, sizeof(*paths));
	if (!w || !fields || !paths) {
		rc = al_error_set(AL_ENOMEM, "out of memory delivering %s", se->doc);
		goto cleanup;
	}
	for (i = 0; i < nchunks; i++) {
		size_t seq = first_chunk + i, lo = i * AL_SERIES_CHUNK;
		size_t hi = lo + AL_SERIES_CHUNK, total = count - first_chunk * AL_SERIES_CHUNK;
		if (hi > total)
			hi = total;
		if (asprintf(&paths[i], "%s/chunks/%zu", se->doc, seq) < 0) {
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto cleanup;
		}
		fields[i] = chunk_fields(pts + lo, hi - lo, (int64_t)seq);
		w[i] = (al_write){AL_WRITE_SET, paths[i], fields[i], AL_PRE_NONE};
	}
	fields[nchunks] = summary_fields(se->doc, &sum);
	w[nchunks] = (al_write){AL_WRITE_SET, se->doc, fields[nchunks], AL_PRE_NONE};
	if ((rc = al_store_commit(s->store, w, nchunks + 1)))
		goto cleanup;
	pthread_mutex_lock(&se->lock);
	if (se->flushed < count)
		se->flushed = count;
	pthread_mutex_unlock(&se->lock);
cleanup:
	for (i = 0; fields && paths && i <= nchunks; i++) {
		cJSON_Delete(fields[i]);
		free(paths[i]);
	}
	free(fields);
	free(paths);
	free(w);
	free(pts);
	return rc;
}

/* Frees the points of delivered series nobody touched for a while; they reload on demand. */
static void evict_idle(al_series_set *s)
{
	int64_t now = al_now_us();
	series *se;

	pthread_mutex_lock(&s->lock);
	for (se = s->all; se; se = se->next_all) {
		pthread_mutex_lock(&se->lock);
		if (se->loaded && se->count == se->flushed && now - se->used_us > IDLE_EVICT_US) {
			free(se->pts);
			se->pts = NULL;
			se->cap = 0;
			se->loaded = 0;
		}
		pthread_mutex_unlock(&se->lock);
	}
	pthread_mutex_unlock(&s->lock);
}

int al_series_flush(al_series_set *s)
{
	uint64_t sealed = 0;
	size_t i, n = 0, cap = 0;
	series *se, **dirty = NULL;
	int rc = 0, err = 0;

	pthread_mutex_lock(&s->flush_lock);
	if ((rc = al_journal_rotate(&sealed, s->journal)))
		goto cleanup;
	pthread_mutex_lock(&s->lock);
	for (se = s->all; se; se = se->next_all)
		cap++;
	dirty = calloc(cap + 1, sizeof(*dirty));
	/* Under each series' lock: an append journaled before the rotation is counted by now. */
	for (se = s->all; dirty && se; se = se->next_all) {
		pthread_mutex_lock(&se->lock);
		if (se->count != se->flushed)
			dirty[n++] = se;
		pthread_mutex_unlock(&se->lock);
	}
	pthread_mutex_unlock(&s->lock);
	if (!dirty) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < n; i++) {
		int r = deliver(s, dirty[i]);
		if (r) {
			err = r;
			pthread_mutex_lock(&s->lock);
			snprintf(s->last_error, sizeof(s->last_error), "%s", al_error_last());
			pthread_mutex_unlock(&s->lock);
		}
	}
	evict_idle(s);
	/* Everything journaled up to the rotation is in the store only if every delivery worked. */
	if (!err)
		rc = al_journal_drop(s->journal, sealed);
	else
		rc = err;
cleanup:
	pthread_mutex_unlock(&s->flush_lock);
	free(dirty);
	return rc;
}

uint64_t al_series_pending(al_series_set *s)
{
	uint64_t n = 0;
	series *se;
	pthread_mutex_lock(&s->lock);
	for (se = s->all; se; se = se->next_all) {
		pthread_mutex_lock(&se->lock);
		n += se->count - se->flushed;
		pthread_mutex_unlock(&se->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

void al_series_last_error(char *buf, size_t cap, al_series_set *s)
{
	pthread_mutex_lock(&s->lock);
	snprintf(buf, cap, "%s", s->last_error);
	pthread_mutex_unlock(&s->lock);
}

int al_series_sync(al_series_set *s)
{
	return al_journal_sync(s->journal);
}

static void *flusher(void *arg)
{
	al_series_set *s = arg;
	struct timespec ts;

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += s->interval_ms / 1000;
		ts.tv_nsec += (long)(s->interval_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->wake, &s->lock, &ts);
		if (s->stop)
			break;
		pthread_mutex_unlock(&s->lock);
		al_series_flush(s);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Re-applies journaled points the store may not have; ordinals make this idempotent. */
static int replay_record(void *ctx, const void *data, size_t len)
{
	al_series_set *s = ctx;
	const unsigned char *r = data;
	uint16_t pl;
	uint64_t first;
	uint32_t n, i;
	size_t off = 3;
	char *doc;
	series *se;
	int rc;

	if (len < 3 || r[0] != REC_POINTS)
		return 0;   /* unknown record kinds are skipped, not fatal */
	memcpy(&pl, r + 1, 2);
	if (len < off + pl + 12)
		return 0;
	doc = strndup((const char *)r + off, pl);
	off += pl;
	memcpy(&first, r + off, 8); off += 8;
	memcpy(&n, r + off, 4); off += 4;
	if (!doc || len < off + (size_t)n * 24) {
		free(doc);
		return 0;
	}
	rc = series_get(&se, s, doc);
	free(doc);
	if (rc)
		return rc;
	pthread_mutex_lock(&se->lock);
	if ((rc = series_load(s, se)) == 0) {
		for (i = 0; i < n && rc == 0; i++, off += 24) {
			al_point p;
			if (first + i < se->count)
				continue;
			memcpy(&p.step, r + off, 8);
			memcpy(&p.value, r + off + 8, 8);
			memcpy(&p.time_us, r + off + 16, 8);
			rc = series_push(se, &p, 1);
		}
	}
	pthread_mutex_unlock(&se->lock);
	return rc;
}

int al_series_set_open(al_series_set **out, al_store_backend *store, const char *journal_dir,
	unsigned interval_ms)
{
	al_series_set *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (!s)
		return al_error_set(AL_ENOMEM, "out of memory");
	s->store = store;
	s->interval_ms = interval_ms ? interval_ms : 1000;
	s->nbuckets = 4096;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->flush_lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	s->buckets = calloc(s->nbuckets, sizeof(series *));
	s->runs = calloc(s->nbuckets, sizeof(run_index *));
	if (!s->buckets || !s->runs) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = al_journal_open(&s->journal, journal_dir)))
		goto fail;
	if ((rc = al_journal_replay(s->journal, replay_record, s)))
		goto fail;
	if ((rc = al_series_flush(s)))
		goto fail;
	if (pthread_create(&s->thread, NULL, flusher, s) != 0) {
		rc = al_error_set(AL_ERROR, "cannot start the metric flusher thread");
		goto fail;
	}
	s->started = 1;
	*out = s;
	return 0;
fail:
	al_series_set_free(s);
	return rc;
}

void al_series_set_free(al_series_set *s)
{
	series *se, *next;

	if (!s)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->lock);
		s->stop = 1;
		pthread_cond_signal(&s->wake);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->thread, NULL);
		al_series_flush(s);
	}
	for (se = s->all; se; se = next) {
		next = se->next_all;
		pthread_mutex_destroy(&se->lock);
		free(se->pts);
		free(se->doc);
		free(se);
	}
	for (size_t i = 0; s->runs && i < s->nbuckets; i++) {
		run_index *r, *rn;
		for (r = s->runs[i]; r; r = rn) {
			rn = r->next;
			free(r->run_doc);
			free(r);
		}
	}
	free(s->runs);
	free(s->buckets);
	al_journal_free(s->journal);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->flush_lock);
	pthread_cond_destroy(&s->wake);
	free(s);
}
