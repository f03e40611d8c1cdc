/* aletheia: metric series. Appends are journaled (one write() each) and kept in memory; a
 * flusher thread delivers dirty series to the metastore as chunk documents about once a second.
 * Several mounts may append to one metric: each writes only its own chunks ("<writer>-<seq>")
 * and its own summary entry ("writer_<id>"), and readers merge the writers' points by time. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "core/series/chunk.h"
#include "core/series/journal.h"
#include "core/series/metric.h"
#include "core/series/series.h"
#include "core/doc/value.h"
#include "core/util.h"

#define WRITER_LEN 16           /* hex digits of a mount's writer id */
#define LEGACY_WRITER "legacy"  /* chunks without a writer field (written by other programs) */

/* Lock order: set->flush_lock, then set->lock, then series->lock. */
typedef struct series {
	char *doc;              /* metric document path */
	size_t run_len;         /* length of the run document prefix of doc */
	pthread_mutex_t lock;
	int loaded;             /* pts[] holds the whole series as last listed */
	int touched;            /* created empty (touch, open O_CREAT): 1 until its summary is stored */
	uint64_t view;          /* bumped whenever pts[] is rebuilt: points may then move, so a
				 * reader's (count, view) says whether it can just read on */
	int64_t loaded_us;      /* when the stored chunks were last listed */
	al_point *pts;          /* the merged view of every writer's points */
	size_t count, cap;
	/* This mount's own points, from ordinal own_base (the start of its current chunk) on. */
	al_point *own;
	size_t own_n, own_cap;
	uint64_t own_base;
	uint64_t own_flushed;   /* own ordinals below this are in the store */
	uint64_t others;        /* points of other writers in the view */
	int64_t used_us;        /* last append or read, for evicting idle points from memory */
	int64_t changed_us;     /* this mount's last change: an append (deferred too) or a touch */
	/* The stored points' update time as of the last load: the newest chunk's until the summary
	 * document's "updated" is looked up (stored_known), when a summary is first asked for. */
	int64_t stored_us;
	int stored_known;
	/* Points appended while the stored chunks could not be read (an unreachable backend):
	 * journaled without ordinals, in order; they get them when the series is next loaded. */
	al_point *deferred;
	size_t deferred_n, deferred_cap;
	al_series_summary sum;        /* of the merged view */
	al_series_summary own_sum;    /* of this mount's points */
	al_series_summary legacy_sum; /* of chunks without a writer */
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
	/* Forgotten series (al_series_forget): a thread may still hold one it found before, so
	 * they go when the set does. */
	series *gone;
	run_index **runs;         /* nbuckets chains */
	pthread_t thread;
	int started, stop;
	unsigned interval_ms;
	int64_t ttl_us;           /* 0: nobody else writes (a local store) */
	char writer[WRITER_LEN + 1];
	char writer_field[WRITER_LEN + 8];   /* "writer_<id>" */
	char last_error[512];
};

/* Journal records, one layout: kind, u16 document length, document, u64 first ordinal, u32
 * count, count × (step, value, time). Points journaled with this mount's own ordinals (kind 1,
 * merged-view ordinals, is obsolete); points appended before the series could be loaded
 * (ordinal unused); and the first count deferred points of a series with their ordinals. */
#define REC_OWN_POINTS 2
#define REC_DEFERRED 3
#define REC_RESOLVED 4

/* Chunks per commit: a full chunk is 0.4–0.55 MB of request JSON (about 100–130 bytes a
 * point), and a commit must stay under Firestore's 10 MiB request limit. */
#define CHUNKS_PER_COMMIT 16

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

/* The length of a point's read-back line: formatting is most of an append's cost, so it is done
 * once per point and shared by the summaries that count it. */
static size_t point_len(const al_point *p)
{
	char text[AL_POINT_TEXT_MAX];
	return al_metric_format(text, p);
}

static void summary_add(al_series_summary *sum, const al_point *p, size_t len)
{
	sum->count++;
	sum->step = p->step;
	sum->last = p->value;
	if (!isnan(p->value)) {
		if (isnan(sum->min) || p->value < sum->min)
			sum->min = p->value;
		if (isnan(sum->max) || p->value > sum->max)
			sum->max = p->value;
	}
	sum->text_bytes += len;
}

/* Combines writer b into a: counts add up, the later writer gives last and step. */
void al_series_summary_merge(al_series_summary *a, const al_series_summary *b)
{
	if (!b->count)
		return;
	if (!a->count || b->update_us >= a->update_us) {
		a->step = b->step;
		a->last = b->last;
		a->update_us = b->update_us;
	}
	a->count += b->count;
	a->text_bytes += b->text_bytes;
	if (!isnan(b->min) && (isnan(a->min) || b->min < a->min))
		a->min = b->min;
	if (!isnan(b->max) && (isnan(a->max) || b->max > a->max))
		a->max = b->max;
}

static int reserve(al_point **pts, size_t *cap, size_t count, size_t extra, const char *doc)
{
	size_t c = *cap ? *cap : 64;
	al_point *p;
	if (count + extra <= *cap)
		return 0;
	while (c < count + extra)
		c *= 2;
	p = realloc(*pts, c * sizeof(*p));
	if (!p)
		return al_error_set(AL_ENOMEM, "out of memory for metric %s", doc);
	*pts = p;
	*cap = c;
	return 0;
}

/* One stored chunk, parsed. */
typedef struct {
	const char *writer;   /* borrowed from the chunk's fields */
	int64_t seq;
	const cJSON *steps, *values, *times;
	size_t n;
} chunk;

static int cmp_chunk(const void *a, const void *b)
{
	const chunk *x = a, *y = b;
	int c = strcmp(x->writer, y->writer);
	return c ? c : (x->seq < y->seq ? -1 : x->seq > y->seq);
}

/* Walks a chunk's three arrays side by side: cJSON_GetArrayItem walks its list from the start
 * each time, which made reading a chunk quadratic in its points. */
typedef struct {
	const cJSON *step, *value, *time;
} chunk_cursor;

static void chunk_start(chunk_cursor *cur, const chunk *c)
{
	cur->step = c->steps ? c->steps->child : NULL;
	cur->value = c->values ? c->values->child : NULL;
	cur->time = c->times ? c->times->child : NULL;
}

static al_point chunk_next(chunk_cursor *cur)
{
	al_point p = {0, NAN, 0};
	al_value_get_int(&p.step, cur->step);
	if (cur->value)
		al_value_get_double(&p.value, cur->value);
	if (cur->time)
		al_value_get_time(&p.time_us, cur->time);
	cur->step = cur->step ? cur->step->next : NULL;
	cur->value = cur->value ? cur->value->next : NULL;
	cur->time = cur->time ? cur->time->next : NULL;
	return p;
}

/* One writer's points in order, for the merge. */
typedef struct {
	al_point *pts;
	size_t n, cap, pos;
	int own, legacy;
} wseq;

/* Merges the writers' sequences by time, keeping each writer's own order (ties go to the
 * writer listed first). One writer: its points as they are. The own writer's points also go
 * into *own (when not NULL), those of chunks without a writer into *legacy. */
static int merge_view(series *se, wseq *ws, size_t nw, al_series_summary *own,
	al_series_summary *legacy)
{
	size_t total = 0, i;
	int rc;
	se->count = 0;
	summary_reset(&se->sum);
	se->others = 0;
	for (i = 0; i < nw; i++)
		total += ws[i].n;
	if ((rc = reserve(&se->pts, &se->cap, 0, total, se->doc)))
		return rc;
	while (se->count < total) {
		size_t best = nw;
		for (i = 0; i < nw; i++)
			if (ws[i].pos < ws[i].n &&
			    (best == nw || ws[i].pts[ws[i].pos].time_us < ws[best].pts[ws[best].pos].time_us))
				best = i;
		{
			const al_point *p = &ws[best].pts[ws[best].pos];
			size_t len = point_len(p);
			se->pts[se->count++] = *p;
			summary_add(&se->sum, p, len);
			if (ws[best].own && own)
				summary_add(own, p, len);
			if (ws[best].legacy) {
				summary_add(legacy, p, len);
				legacy->update_us = p->time_us;   /* such chunks carry no other clock */
			}
			if (!ws[best].own)
				se->others++;
		}
		ws[best].pos++;
	}
	return 0;
}

/* Lists the stored chunks and rebuilds the merged view (caller holds se->lock). On the first
 * load this mount's own delivered points also set its ordinals; later loads keep the in-memory
 * own points, which may be ahead of the store. */
static int series_load(al_series_set *s, series *se)
{
	al_doc_list *list = NULL;
	chunk *ch = NULL;
	wseq *ws = NULL;
	size_t nch = 0, nw = 0, i, k;
	uint64_t stored_own = 0;
	int64_t chunks_us = 0;
	al_series_summary legacy;
	char *coll = NULL;
	int rc = 0, first = !se->loaded;

	if (asprintf(&coll, "%s/chunks", se->doc) < 0)
		return al_error_set(AL_ENOMEM, "out of memory");
	/* Nothing changes unless the chunks could be read (an unreachable backend). */
	if ((rc = al_store_list(&list, s->store, coll, NULL, NULL)))
		goto cleanup;
	ch = calloc(list->count + 1, sizeof(*ch));
	ws = calloc(list->count + 2, sizeof(*ws));
	if (!ch || !ws) {
		rc = al_error_set(AL_ENOMEM, "out of memory loading %s", se->doc);
		goto cleanup;
	}
	for (i = 0; i < list->count; i++) {
		const cJSON *f = list->docs[i]->fields;
		chunk *c = &ch[nch];
		if (list->docs[i]->update_us > chunks_us)
			chunks_us = list->docs[i]->update_us;
		c->writer = al_fields_get_string(f, "writer");
		if (!c->writer || !*c->writer)
			c->writer = LEGACY_WRITER;
		al_fields_get_int(&c->seq, f, "seq");
		c->steps = al_value_get_array(al_fields_get(f, "steps"));
		c->values = al_value_get_array(al_fields_get(f, "values"));
		c->times = al_value_get_array(al_fields_get(f, "times"));
		c->n = c->steps ? (size_t)cJSON_GetArraySize(c->steps) : 0;
		if (c->n)
			nch++;
	}
	qsort(ch, nch, sizeof(*ch), cmp_chunk);
	summary_reset(&legacy);
	if (first) {
		summary_reset(&se->own_sum);
		se->own_n = 0;
	}
	/* The own writer's sequence goes first so that ties in time keep its points first. */
	ws[nw++].own = 1;
	for (i = 0; i < nch; i++) {
		int own = strcmp(ch[i].writer, s->writer) == 0;
		wseq *w = own ? &ws[0] : (i > 0 && strcmp(ch[i].writer, ch[i - 1].writer) == 0 ? &ws[nw - 1] : &ws[nw++]);
		w->legacy = strcmp(ch[i].writer, LEGACY_WRITER) == 0;
		chunk_cursor cur;
		if ((rc = reserve(&w->pts, &w->cap, w->n, ch[i].n, se->doc)))
			goto cleanup;
		chunk_start(&cur, &ch[i]);
		for (k = 0; k < ch[i].n; k++) {
			al_point p = chunk_next(&cur);
			/* Own points at or past own_base come from memory, which may be ahead. */
			if (own && stored_own++ >= se->own_base && !first)
				continue;
			w->pts[w->n++] = p;
		}
	}
	if (first) {
		/* Keep the points of the last, partly filled own chunk: the next delivery rewrites it. */
		se->own_base = stored_own / AL_SERIES_CHUNK * AL_SERIES_CHUNK;
		se->own_flushed = stored_own;
		se->own_n = 0;
		if (stored_own > se->own_base) {
			size_t keep = (size_t)(stored_own - se->own_base);
			if ((rc = reserve(&se->own, &se->own_cap, 0, keep, se->doc)))
				goto cleanup;
			memcpy(se->own, ws[0].pts + ws[0].n - keep, keep * sizeof(al_point));
			se->own_n = keep;
			ws[0].n -= keep;
		}
	}
	/* The in-memory own points complete the own sequence. */
	if ((rc = reserve(&ws[0].pts, &ws[0].cap, ws[0].n, se->own_n, se->doc)))
		goto cleanup;
	if (se->own_n)   /* own may be NULL when empty: memcpy's arguments must be valid anyway */
		memcpy(ws[0].pts + ws[0].n, se->own, se->own_n * sizeof(al_point));
	ws[0].n += se->own_n;
	if ((rc = merge_view(se, ws, nw, first ? &se->own_sum : NULL, &legacy)))
		goto cleanup;
	se->legacy_sum = legacy;
	se->stored_us = chunks_us;
	se->stored_known = 0;
	se->sum.update_us = chunks_us > se->changed_us ? chunks_us : se->changed_us;
	se->loaded = 1;
	se->view++;
	se->loaded_us = al_now_us();
cleanup:
	for (i = 0; ws && i < nw; i++)
		free(ws[i].pts);
	free(ws);
	free(ch);
	free(coll);
	al_doc_list_free(list);
	return rc;
}

/* Points of other writers according to a summary document's writer_* entries (or, without
 * any, its top-level count: a series written by another program). */
static uint64_t doc_others(al_series_set *s, const cJSON *fields)
{
	const cJSON *f;
	uint64_t n = 0;
	int any = 0;
	int64_t v;
	cJSON_ArrayForEach(f, fields) {
		if (strncmp(f->string, "writer_", 7) != 0)
			continue;
		any = 1;
		if (strcmp(f->string, s->writer_field) != 0 &&
		    al_fields_get_int(&v, al_value_get_map(f), "count") == 0 && v > 0)
			n += (uint64_t)v;
	}
	if (!any && al_fields_get_int(&v, fields, "count") == 0 && v > 0)
		n = (uint64_t)v;
	return n;
}

static int summary_from_doc(al_series_summary *out, const al_doc *d);
static int resolve(al_series_set *s, series *se);

/* Loads the series and gives its deferred points their ordinals (caller holds se->lock). */
static int load_resolved(al_series_set *s, series *se)
{
	int rc = series_load(s, se);
	return rc ? rc : resolve(s, se);
}

/* Makes the view current: loads it, or, on a shared store once it is older than the TTL,
 * reloads it when the summary document shows other writers' points it lacks (one GET, which
 * the read cache answers within its TTL). A failed check keeps the view (stale if error). */
static int series_fresh(al_series_set *s, series *se)
{
	al_doc *d = NULL;
	int64_t now;
	if (!se->loaded)
		return load_resolved(s, se);
	now = al_now_us();
	if (!s->ttl_us || now - se->loaded_us < s->ttl_us)
		return 0;
	if (al_store_get(&d, s->store, se->doc) == 0 && doc_others(s, d->fields) != se->others)
		series_load(s, se);   /* on failure the old view stays */
	else
		se->loaded_us = now;
	al_doc_free(d);
	return 0;
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
	summary_reset(&se->own_sum);
	summary_reset(&se->legacy_sum);
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

/* Appends this mount's parsed points (caller holds se->lock and has loaded it). */
static int series_push(series *se, const al_point *pts, size_t n)
{
	size_t i;
	int rc;
	if ((rc = reserve(&se->pts, &se->cap, se->count, n, se->doc)) ||
	    (rc = reserve(&se->own, &se->own_cap, se->own_n, n, se->doc)))
		return rc;
	for (i = 0; i < n; i++) {
		size_t len = point_len(&pts[i]);
		se->pts[se->count++] = pts[i];
		se->own[se->own_n++] = pts[i];
		summary_add(&se->sum, &pts[i], len);
		summary_add(&se->own_sum, &pts[i], len);
	}
	se->sum.update_us = se->own_sum.update_us = se->changed_us = al_now_us();
	return 0;
}

/* Journals points of a series (the record layout above). A document path longer than the
 * record's 16-bit length could hold is refused, never cut: the points would replay into another
 * series or be lost. (The tree refuses such names earlier: a document id is at most 1,500 bytes.) */
static int journal_points(al_series_set *s, const series *se, int kind, uint64_t first,
	const al_point *pts, size_t n)
{
	size_t plen = strlen(se->doc), len = 1 + 2 + plen + 8 + 4 + n * 24, off = 0, i;
	char stackbuf[1024], *rec;
	uint16_t pl = (uint16_t)plen;
	uint32_t cnt = (uint32_t)n;
	int rc;

	if (plen > UINT16_MAX)
		return al_error_set(AL_ENAMETOOLONG, "metric %.200s...: a path of %zu bytes is too long "
			"to journal (at most %u)", se->doc, plen, (unsigned)UINT16_MAX);
	if (n > UINT32_MAX)
		return al_error_set(AL_EINVAL, "metric %s: %zu points in one record", se->doc, n);
	rec = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
	if (!rec)
		return al_error_set(AL_ENOMEM, "out of memory journaling %zu points", n);
	rec[off++] = (char)kind;
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

static int unreachable(int rc)
{
	return rc == AL_EIO || rc == AL_EAGAIN;
}

/* Gives the deferred points their ordinals, after the loaded ones (caller holds se->lock and
 * has loaded it): journaled as resolved first, so a replay neither loses nor repeats them. */
static int resolve(al_series_set *s, series *se)
{
	int rc;
	if (!se->deferred_n)
		return 0;
	if ((rc = journal_points(s, se, REC_RESOLVED, se->own_base + se->own_n, se->deferred,
		se->deferred_n)))
		return rc;
	rc = series_push(se, se->deferred, se->deferred_n);
	se->deferred_n = 0;
	return rc;
}

/* The step before the next deferred point: the last deferred one, else the stored summary's
 * (the last known copy; a missing document: none yet). AL_EIO when nothing local knows it. */
static int deferred_step(int64_t *out, al_series_set *s, series *se)
{
	al_doc *d = NULL;
	al_series_summary sum;
	int rc;

	*out = -1;
	if (se->deferred_n) {
		*out = se->deferred[se->deferred_n - 1].step;
		return 0;
	}
	rc = al_store_get(&d, s->store, se->doc);
	if (rc == AL_ENOTFOUND) {
		al_error_clear();
		return 0;
	}
	if (rc)
		return rc;
	if (summary_from_doc(&sum, d) == 0)
		*out = sum.step;
	else if (al_fields_get_int(out, d->fields, "step"))
		*out = -1;
	al_doc_free(d);
	return 0;
}

int al_series_append_text(al_series_set *s, const char *metric_doc, const char *text, size_t len)
{
	series *se;
	al_point *pts = NULL;
	size_t n = 0;
	int64_t step;
	int rc = 0, defer = 0;

	if ((rc = series_get(&se, s, metric_doc)))
		return rc;
	pthread_mutex_lock(&se->lock);
	/* Appends never wait for other writers' points: only reads refresh the view. A series
	 * whose chunks cannot be read now (the backend unreachable, no copy) takes its points
	 * deferred: journal first, load later (README "Durability"). */
	if (!se->loaded && (rc = series_load(s, se))) {
		if (!unreachable(rc))
			goto cleanup;
		defer = 1;
	}
	if (!defer && (rc = resolve(s, se)))
		goto cleanup;
	se->used_us = al_now_us();
	step = se->sum.step;
	if (defer && (rc = deferred_step(&step, s, se)))
		goto cleanup;
	if ((rc = al_metric_parse(&pts, &n, text, len, step, se->used_us)))
		goto cleanup;
	if (n == 0)
		goto cleanup;
	/* Journal first: once this returns the points survive kill -9. */
	if (defer) {
		if ((rc = reserve(&se->deferred, &se->deferred_cap, se->deferred_n, n, se->doc)) ||
		    (rc = journal_points(s, se, REC_DEFERRED, 0, pts, n)))
			goto cleanup;
		memcpy(se->deferred + se->deferred_n, pts, n * sizeof(*pts));
		se->deferred_n += n;
		se->changed_us = se->used_us;
		goto cleanup;
	}
	if ((rc = journal_points(s, se, REC_OWN_POINTS, se->own_base + se->own_n, pts, n)))
		goto cleanup;
	rc = series_push(se, pts, n);
cleanup:
	pthread_mutex_unlock(&se->lock);
	free(pts);
	return rc;
}


int al_series_touch(al_series_set *s, const char *metric_doc)
{
	series *se;
	int rc;

	if ((rc = series_get(&se, s, metric_doc)))
		return rc;
	pthread_mutex_lock(&se->lock);
	if (!se->touched && se->count == 0) {
		se->touched = 1;   /* the flusher stores its (empty) summary document */
		se->used_us = se->changed_us = al_now_us();
	}
	pthread_mutex_unlock(&se->lock);
	pthread_mutex_lock(&s->lock);
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int al_series_render_tail(char **out, size_t *len, int *whole, uint64_t *points, uint64_t *view,
	al_series_set *s, const char *metric_doc)
{
	series *se;
	char *buf = NULL;
	size_t i, from, off = 0, bytes = 0;
	int rc;

	*out = NULL;
	*len = 0;
	*whole = 0;
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
	if ((rc = series_fresh(s, se)))
		goto cleanup;
	se->used_us = al_now_us();
	if (se->count == 0 && se->touched != 1) {   /* a failed first append's entry is no metric */
		al_doc *d = NULL;
		rc = al_store_get(&d, s->store, metric_doc);
		al_doc_free(d);
		if (rc)
			goto cleanup;
	}
	/* Points only ever follow the reader's while the view was not rebuilt. */
	from = se->view == *view && *points <= se->count ? (size_t)*points : 0;
	*whole = from == 0;
	if (from == 0)
		bytes = se->sum.text_bytes;
	else
		for (i = from; i < se->count; i++)
			bytes += point_len(&se->pts[i]);
	if (!(buf = malloc(bytes + AL_POINT_TEXT_MAX))) {
		rc = al_error_set(AL_ENOMEM, "out of memory rendering %s", metric_doc);
		goto cleanup;
	}
	for (i = from; i < se->count; i++)
		off += al_metric_format(buf + off, &se->pts[i]);
	*out = buf;
	*len = off;
	*points = se->count;
	*view = se->view;
	buf = NULL;
cleanup:
	pthread_mutex_unlock(&se->lock);
	free(buf);
	return rc;
}

int al_series_render(char **out, size_t *len, al_series_set *s, const char *metric_doc)
{
	uint64_t points = 0, view = UINT64_MAX;
	int whole;
	return al_series_render_tail(out, len, &whole, &points, &view, s, metric_doc);
}

/* The one writer of a stored series whose summary names exactly one writer_* entry and no
 * points of chunks without a writer (*count: its points); 0 otherwise. */
static int single_writer(char *writer, size_t cap, uint64_t *count, const al_doc *d)
{
	const cJSON *f, *one = NULL;
	int64_t v;
	cJSON_ArrayForEach(f, d->fields) {
		if (strncmp(f->string, "writer_", 7) != 0)
			continue;
		if (one)
			return 0;
		one = f;
	}
	if (!one || strlen(one->string + 7) >= cap ||
	    al_fields_get_int(&v, al_value_get_map(one), "count") != 0 || v < 0)
		return 0;
	snprintf(writer, cap, "%s", one->string + 7);
	*count = (uint64_t)v;
	return 1;
}

/* A chunk's points [from, from + max) from its fields' text (store.h get_text). */
typedef struct {
	al_point *out;
	size_t *n;
	const char *path;
	size_t from, max;
} chunk_read;

/* The plain shape is read straight from the text (chunk.c), anything else as the document it
 * is, so both give the same points. */
static int chunk_text_points(void *ctx, const char *text, size_t len)
{
	chunk_read *r = ctx;
	al_chunk_clock clock = {{0}, 0};
	cJSON *f;
	chunk c = {0};
	chunk_cursor cur;
	size_t k;

	if (al_chunk_points(r->out, r->n, &clock, text, len, r->from, r->max) == 0)
		return 0;
	al_error_clear();
	*r->n = 0;
	/* As the store reads a document (store_sqlite.c row_to_doc). */
	f = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(f)) {
		cJSON_Delete(f);
		return al_error_set(AL_EIO, "document %s has corrupt fields in the store", r->path);
	}
	c.steps = al_value_get_array(al_fields_get(f, "steps"));
	c.values = al_value_get_array(al_fields_get(f, "values"));
	c.times = al_value_get_array(al_fields_get(f, "times"));
	chunk_start(&cur, &c);
	for (k = 0; cur.step && *r->n < r->max; k++) {
		al_point p = chunk_next(&cur);
		if (k >= r->from)
			r->out[(*r->n)++] = p;
	}
	cJSON_Delete(f);
	return 0;
}

/* Points [from, from + max) of a stored series of one writer, from the chunk that holds them
 * (its ordinal / AL_SERIES_CHUNK): one chunk document in memory at a time, read from its text
 * when the store gives it (store.h get_text). */
static int stored_points(al_point *out, size_t *n, al_series_set *s, const char *metric_doc,
	const char *writer, uint64_t count, uint64_t from, size_t max)
{
	uint64_t seq = from / AL_SERIES_CHUNK, k;
	char *path = NULL;
	al_doc *d = NULL;
	chunk c = {0};
	chunk_cursor cur;
	chunk_read r;
	int rc, called;

	*n = 0;
	if (from >= count)
		return 0;
	if (max > count - from)
		max = (size_t)(count - from);
	if (asprintf(&path, "%s/chunks/%s-%llu", metric_doc, writer, (unsigned long long)seq) < 0)
		return al_error_set(AL_ENOMEM, "out of memory");
	r = (chunk_read){out, n, path, (size_t)(from - seq * AL_SERIES_CHUNK), max};
	if ((rc = al_store_get_text(&called, s->store, path, chunk_text_points, &r)) == 0 && !called)
		rc = al_store_get(&d, s->store, path);
	/* The summary counts this chunk's points: its absence is damage, not the series' end (a
	 * reader took AL_ENOTFOUND for "no points yet" and ended the text early). */
	if (rc == AL_ENOTFOUND)
		rc = al_error_set(AL_EIO, "metric %s: chunk %s-%llu is missing, though the metric counts "
			"%llu points", metric_doc, writer, (unsigned long long)seq, (unsigned long long)count);
	if (rc || called)
		goto cleanup;
	c.steps = al_value_get_array(al_fields_get(d->fields, "steps"));
	c.values = al_value_get_array(al_fields_get(d->fields, "values"));
	c.times = al_value_get_array(al_fields_get(d->fields, "times"));
	chunk_start(&cur, &c);
	for (k = seq * AL_SERIES_CHUNK; cur.step && *n < max; k++) {
		al_point p = chunk_next(&cur);
		if (k >= from)
			out[(*n)++] = p;
	}
cleanup:
	free(path);
	al_doc_free(d);
	return rc;
}

int al_series_points(al_point *out, size_t *n, uint64_t *view, al_series_set *s,
	const char *metric_doc, uint64_t from, size_t max)
{
	series *se;
	al_doc *d = NULL;
	char writer[64];
	uint64_t count;
	int rc;

	*n = 0;
	if ((rc = series_exists(&d, s, metric_doc)) || (rc = series_get(&se, s, metric_doc))) {
		al_doc_free(d);
		return rc;
	}
	pthread_mutex_lock(&se->lock);
	se->used_us = al_now_us();
	/* Not in memory, nothing of this mount's pending (else it would be loaded), one writer:
	 * its points in the order appended are the series, chunk by chunk. */
	if (!se->loaded && !se->deferred_n) {
		if (!d && (rc = al_store_get(&d, s->store, metric_doc))) {
			if (rc == AL_ENOTFOUND && se->touched == 1) {   /* created, not stored yet */
				al_error_clear();
				rc = 0;
			}
			goto cleanup;
		}
		if (single_writer(writer, sizeof(writer), &count, d)) {
			/* Stored points up to count never change (a flush only adds past them): they
			 * are read without the series' lock, so that batches of one series are parsed
			 * side by side (a metric reader's read-ahead, metrics.c). */
			pthread_mutex_unlock(&se->lock);
			*view = 0;
			rc = stored_points(out, n, s, metric_doc, writer, count, from, max);
			al_doc_free(d);
			return rc;
		}
	}
	if ((rc = series_fresh(s, se)))
		goto cleanup;
	/* One writer's points never move; a merge of several may reorder them at each load. */
	*view = se->others == 0 && se->legacy_sum.count == 0 ? 0 : se->view + 1;
	for (; from < se->count && *n < max; from++)
		out[(*n)++] = se->pts[from];
cleanup:
	pthread_mutex_unlock(&se->lock);
	al_doc_free(d);
	return rc;
}

/* A summary entry's fields (the document's top level or one writer_* map). */
static int summary_from_fields(al_series_summary *out, const cJSON *f, int64_t update_us)
{
	int64_t v;
	summary_reset(out);
	if (al_fields_get_int(&v, f, "bytes"))
		return AL_ENOTFOUND;
	out->text_bytes = (uint64_t)v;
	if (al_fields_get_int(&v, f, "count") == 0)
		out->count = (uint64_t)v;
	/* min and max (runs.csv's columns) are in every summary this program wrote; one written
	 * without them is computed from the points on read, as one without the text size is. */
	if (out->count && (!al_fields_get(f, "min") || !al_fields_get(f, "max")))
		return AL_ENOTFOUND;
	al_fields_get_int(&out->step, f, "step");
	al_fields_get_double(&out->last, f, "last");
	al_fields_get_double(&out->min, f, "min");
	al_fields_get_double(&out->max, f, "max");
	if (al_fields_get_time(&out->update_us, f, "updated"))
		out->update_us = update_us;
	return 0;
}

/* The summary a document gives without loading points: its writers' entries combined, or its
 * top level. AL_ENOTFOUND when it lacks the text size (written by another program). */
static int summary_from_doc(al_series_summary *out, const al_doc *d)
{
	const cJSON *f;
	al_series_summary w;
	int any = 0;
	summary_reset(out);
	cJSON_ArrayForEach(f, d->fields) {
		if (strncmp(f->string, "writer_", 7) != 0)
			continue;
		if (summary_from_fields(&w, al_value_get_map(f), d->update_us))
			return AL_ENOTFOUND;
		al_series_summary_merge(out, &w);
		any = 1;
	}
	return any ? 0 : summary_from_fields(out, d->fields, d->update_us);
}

/* A loaded series' update time is that of its last point's change: the stored summary
 * document's "updated" (the time of the last append it describes, written with it), or this
 * mount's own later change; never when the points were read or loaded, so reading does not move
 * a metric's mtime, nor run.json's and runs.csv's (README "Files behave like files"). The
 * document is looked up once per load (d: when the caller has it already); until then, and when
 * it holds no summary, the newest chunk's update time stands in. Caller holds se->lock. */
static void stored_update(al_series_set *s, series *se, const al_doc *d)
{
	al_doc *got = NULL;
	al_series_summary stored;
	int rc = 0;

	if (!se->loaded || se->stored_known)
		return;
	if (!d && (rc = al_store_get(&got, s->store, se->doc)) == 0)
		d = got;
	if (rc == 0 || rc == AL_ENOTFOUND) {
		se->stored_known = 1;   /* else asked again next time */
		if (d && summary_from_doc(&stored, d) == 0 && stored.update_us)
			se->stored_us = stored.update_us;
	}
	al_error_clear();
	se->sum.update_us = se->stored_us > se->changed_us ? se->stored_us : se->changed_us;
	al_doc_free(got);
}

int al_series_summary_get(al_series_summary *out, al_series_set *s, const char *metric_doc)
{
	series *se;
	al_doc *d = NULL;
	int rc;

	if ((rc = series_exists(&d, s, metric_doc)) || (rc = series_get(&se, s, metric_doc))) {
		al_doc_free(d);
		return rc;
	}
	pthread_mutex_lock(&se->lock);
	if (se->deferred_n && (se->loaded || series_load(s, se) == 0) && (rc = resolve(s, se)))
		goto cleanup;
	if (se->deferred_n) {
		/* Still unreadable: the stored summary as last known, and the deferred points. */
		size_t i;
		if (!d && (rc = al_store_get(&d, s->store, metric_doc)) && rc != AL_ENOTFOUND)
			goto cleanup;
		al_error_clear();
		rc = 0;
		if (!d || summary_from_doc(out, d))
			summary_reset(out);
		for (i = 0; i < se->deferred_n; i++)
			summary_add(out, &se->deferred[i], point_len(&se->deferred[i]));
		if (se->changed_us > out->update_us)
			out->update_us = se->changed_us;
		goto cleanup;
	}
	if ((se->loaded && se->count > 0) || (se->touched == 1 && se->count == 0)) {
		if (se->loaded) {
			series_fresh(s, se);
			stored_update(s, se, d);
		}
		*out = se->sum;
		if (!out->update_us)
			out->update_us = se->changed_us;
		goto cleanup;
	}
	/* The stored summary carries the text size, so nothing needs loading. */
	if (!d && (rc = al_store_get(&d, s->store, metric_doc)))
		goto cleanup;
	if (!se->loaded && summary_from_doc(out, d) == 0)
		goto cleanup;
	if ((rc = load_resolved(s, se)))
		goto cleanup;
	stored_update(s, se, d);
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

/* The ids of run_doc's metrics: those in memory, and the stored documents' paths (np of them;
 * one of a deeper collection is skipped), sorted, each once. */
static int ids_of(char ***out, size_t *count, al_series_set *s, const char *run_doc,
	const char *const *paths, size_t np)
{
	char **ids = NULL;
	size_t n = 0, cap, i, rl = strlen(run_doc), w;
	series *se;
	run_index *run;

	*out = NULL;
	*count = 0;
	pthread_mutex_lock(&s->lock);
	cap = np + 16;
	run = run_find(s, run_doc, rl, 0);
	for (se = run ? run->list : NULL; se; se = se->next_run)
		cap++;
	ids = calloc(cap + 1, sizeof(char *));
	if (!ids) {
		pthread_mutex_unlock(&s->lock);
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	for (se = run ? run->list : NULL; se; se = se->next_run)
		if (se->count > 0 || se->touched || se->deferred_n > 0)
			ids[n++] = strdup(al_doc_id(se->doc));
	pthread_mutex_unlock(&s->lock);
	for (i = 0; i < np; i++) {
		const char *id = al_doc_id(paths[i]);
		if (id == paths[i] + rl + sizeof("/metrics/") - 1)   /* not of a deeper collection */
			ids[n++] = strdup(id);
	}
	for (i = 0, w = 0; i < n; i++)   /* a failed strdup is left out */
		if (ids[i])
			ids[w++] = ids[i];
	n = w;
	qsort(ids, n, sizeof(char *), cmp_str);
	for (i = 0, w = 0; i < n; i++) {
		if (w > 0 && strcmp(ids[w - 1], ids[i]) == 0) {
			free(ids[i]);
			continue;
		}
		ids[w++] = ids[i];
	}
	ids[w] = NULL;
	*out = ids;
	*count = w;
	return 0;
}

int al_series_ids(char ***out, size_t *count, al_series_set *s, const char *run_doc)
{
	al_doc_list *list = NULL;
	const char **paths = NULL;
	char *coll = NULL;
	size_t i;
	int rc;

	*out = NULL;
	*count = 0;
	if (asprintf(&coll, "%s/metrics", run_doc) < 0)
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((rc = al_store_list(&list, s->store, coll, NULL, NULL)))
		goto cleanup;
	if (!(paths = calloc(list->count + 1, sizeof(*paths)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < list->count; i++)
		paths[i] = list->docs[i]->path;
	rc = ids_of(out, count, s, run_doc, paths, list->count);
cleanup:
	free(paths);
	free(coll);
	al_doc_list_free(list);
	return rc;
}

typedef struct {
	char *id;
	al_series_summary sum;
	int ok;
} named_summary;

static int cmp_named(const void *a, const void *b)
{
	return strcmp(((const named_summary *)a)->id, ((const named_summary *)b)->id);
}

/* A run's stored metric documents as summaries: path, and the summary its document gives (ok 0:
 * it gives none without loading, summary_from_doc's AL_ENOTFOUND). */
typedef struct {
	char *path;
	al_series_summary sum;
	int ok;
} listed;

typedef struct {
	listed *v;
	size_t n, cap;
	al__slab *paths;   /* v's paths */
	al_chunk_clock clock;
} listed_set;

static int listed_add(listed_set *l, const char *path, const al_series_summary *sum, int ok)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		listed *grown = realloc(l->v, ncap * sizeof(*grown));
		if (!grown)
			return al_error_set(AL_ENOMEM, "out of memory");
		l->v = grown;
		l->cap = ncap;
	}
	if (!(l->v[l->n].path = al__slab_dup(&l->paths, path, strlen(path))))
		return al_error_set(AL_ENOMEM, "out of memory");
	l->v[l->n].sum = *sum;
	l->v[l->n++].ok = ok;
	return 0;
}

/* store.h list_text: the plain shape read from the text (chunk.c), others as documents. */
static int listed_text(void *ctx, const char *path, const char *text, size_t len, int64_t update_us)
{
	listed_set *l = ctx;
	al_series_summary sum;
	al_doc d = {(char *)path, NULL, 0, update_us};
	int rc = al_chunk_summary(&sum, &l->clock, text, len, update_us);
	if (rc == 0 || rc == AL_ENOTFOUND) {
		al_error_clear();
		return listed_add(l, path, &sum, rc == 0);
	}
	al_error_clear();
	d.fields = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(d.fields)) {   /* as the store's listing: left out, and named */
		cJSON_Delete(d.fields);
		fprintf(stderr, "aletheia: document %s has corrupt fields in the store\n", path);
		return 0;
	}
	rc = summary_from_doc(&sum, &d) == 0;
	cJSON_Delete(d.fields);
	return listed_add(l, path, &sum, rc);
}

/* The run's stored metric documents, each with the summary it gives. */
static int list_summaries(listed_set *l, al_series_set *s, const char *coll)
{
	al_doc_list *list = NULL;
	al_series_summary sum;
	size_t i;
	int rc;

	if (s->store->list_text)
		return s->store->list_text(s->store, coll, listed_text, l);
	if ((rc = al_store_list(&list, s->store, coll, NULL, NULL)))
		return rc;
	for (i = 0; i < list->count && rc == 0; i++) {
		int ok = summary_from_doc(&sum, list->docs[i]) == 0;
		rc = listed_add(l, list->docs[i]->path, &sum, ok);
	}
	al_doc_list_free(list);
	return rc;
}

/* The summaries of run_doc's metrics: series in memory give their own, the others the one in
 * their stored document in v (n of them, the run's metric documents; an entry of a deeper
 * collection is skipped). */
static int summaries_of(char ***out_ids, al_series_summary **out_sums, size_t *count,
	al_series_set *s, const char *run_doc, const listed *v, size_t nv)
{
	named_summary *ns = NULL;
	char *doc = NULL;
	size_t n = 0, cap, i, w, rl = strlen(run_doc);
	series *se;
	run_index *run;
	int rc = 0;

	*out_ids = NULL;
	*out_sums = NULL;
	*count = 0;
	pthread_mutex_lock(&s->lock);
	cap = nv + 1;
	run = run_find(s, run_doc, rl, 0);
	for (se = run ? run->list : NULL; se; se = se->next_run)
		cap++;
	ns = calloc(cap, sizeof(*ns));
	/* Series this mount has in memory answer for themselves (below): their points may be ahead
	 * of the store. */
	for (se = run && ns ? run->list : NULL; se; se = se->next_run)
		if (se->count > 0 || se->touched || se->deferred_n > 0 || se->loaded)
			ns[n++].id = strdup(al_doc_id(se->doc));
	pthread_mutex_unlock(&s->lock);
	if (!ns) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < n; i++) {
		free(doc);
		if (!ns[i].id || asprintf(&doc, "%s/metrics/%s", run_doc, ns[i].id) < 0) {
			doc = NULL;
			continue;
		}
		ns[i].ok = al_series_summary_get(&ns[i].sum, s, doc) == 0;
		al_error_clear();
	}
	/* The others from the listing itself: the stored summary carries what is shown. */
	for (i = 0; i < nv; i++) {
		const char *id = al_doc_id(v[i].path);
		size_t k;
		if (id != v[i].path + rl + sizeof("/metrics/") - 1)
			continue;   /* a collection below one of the run's metrics */
		for (k = 0; k < n && (!ns[k].id || strcmp(ns[k].id, id) != 0); k++)
			;
		if (k < n)
			continue;
		if (!series_find(s, v[i].path) && v[i].ok) {
			ns[n].sum = v[i].sum;
			ns[n].ok = 1;
		} else {
			ns[n].ok = al_series_summary_get(&ns[n].sum, s, v[i].path) == 0;
			al_error_clear();
		}
		ns[n++].id = strdup(id);
	}
	qsort(ns, n, sizeof(*ns), cmp_named);
	if (!(*out_ids = calloc(n + 1, sizeof(char *))) || !(*out_sums = calloc(n + 1, sizeof(**out_sums)))) {
		free(*out_ids);
		*out_ids = NULL;
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0, w = 0; i < n; i++)
		if (ns[i].id && ns[i].ok) {
			(*out_ids)[w] = ns[i].id;
			(*out_sums)[w++] = ns[i].sum;
			ns[i].id = NULL;
		}
	*count = w;
cleanup:
	for (i = 0; ns && i < n; i++)
		free(ns[i].id);
	free(ns);
	free(doc);
	return rc;
}

static void listed_free(listed_set *l)
{
	al__slabs_free(l->paths);
	free(l->v);
}

int al_series_summaries(char ***out_ids, al_series_summary **out_sums, size_t *count,
	al_series_set *s, const char *run_doc)
{
	listed_set list = {0};
	char *coll = NULL;
	int rc;

	*out_ids = NULL;
	*out_sums = NULL;
	*count = 0;
	if (asprintf(&coll, "%s/metrics", run_doc) < 0)
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((rc = list_summaries(&list, s, coll)) == 0)
		rc = summaries_of(out_ids, out_sums, count, s, run_doc, list.v, list.n);
	free(coll);
	listed_free(&list);
	return rc;
}

struct al_series_stored {
	al_series_set *s;
	char *parent_doc;
	listed_set l;      /* sorted by path */
	pthread_t thread;  /* the load, when started in the background */
	int started, joined;
	int rc;            /* the load's result: nonzero, the summaries come from a query per run */
};

static int cmp_listed(const void *a, const void *b)
{
	return strcmp(((const listed *)a)->path, ((const listed *)b)->path);
}

static void *stored_load(void *arg)
{
	al_series_stored *g = arg;
	al_store_backend *st = g->s->store;
	if ((g->rc = st->list_group_text(st, g->parent_doc, "metrics", listed_text, &g->l)) == 0 &&
	    g->l.n)
		qsort(g->l.v, g->l.n, sizeof(*g->l.v), cmp_listed);
	al_error_clear();
	return NULL;
}

/* The load's result, once it is done. */
static int stored_wait(al_series_stored *g)
{
	if (g->started && !g->joined) {
		pthread_join(g->thread, NULL);
		g->joined = 1;
	}
	return g->rc;
}

int al_series_stored_start(al_series_stored **out, al_series_set *s, const char *parent_doc)
{
	al_series_stored *g;

	*out = NULL;
	if (!s->store->list_group_text)
		return 0;
	if (!(g = calloc(1, sizeof(*g))) || !(g->parent_doc = strdup(parent_doc))) {
		free(g);
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	g->s = s;
	/* in the background while the caller reads its runs; where no thread starts, now */
	if (pthread_create(&g->thread, NULL, stored_load, g) == 0)
		g->started = 1;
	else
		stored_load(g);
	*out = g;
	return 0;
}

void al_series_stored_free(al_series_stored *g)
{
	if (!g)
		return;
	stored_wait(g);
	listed_free(&g->l);
	free(g->parent_doc);
	free(g);
}

/* The range [*first, *end) of g's paths that are run_doc's metric documents (and documents
 * below them): the paths starting with "<run_doc>/metrics/", one range of the sorted list. */
static int stored_range(size_t *first, size_t *end, const al_series_stored *g, const char *run_doc)
{
	char *prefix;
	size_t lo = 0, hi, pl;

	if (asprintf(&prefix, "%s/metrics/", run_doc) < 0)
		return al_error_set(AL_ENOMEM, "out of memory");
	pl = strlen(prefix);
	for (hi = g->l.n; lo < hi;) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(g->l.v[mid].path, prefix) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (*first = lo; lo < g->l.n && strncmp(g->l.v[lo].path, prefix, pl) == 0; lo++)
		;
	*end = lo;
	free(prefix);
	return 0;
}

int al_series_summaries_in(char ***out_ids, al_series_summary **out_sums, size_t *count,
	al_series_set *s, al_series_stored *g, const char *run_doc)
{
	size_t first, end;
	int rc;

	if (!g || stored_wait(g) != 0)
		return al_series_summaries(out_ids, out_sums, count, s, run_doc);
	*out_ids = NULL;
	*out_sums = NULL;
	*count = 0;
	if ((rc = stored_range(&first, &end, g, run_doc)))
		return rc;
	return summaries_of(out_ids, out_sums, count, s, run_doc, g->l.v + first, end - first);
}

int al_series_ids_in(char ***out, size_t *count, al_series_set *s, al_series_stored *g,
	const char *run_doc)
{
	const char **paths = NULL;
	size_t first, end, i;
	int rc;

	if (!g || stored_wait(g) != 0)
		return al_series_ids(out, count, s, run_doc);
	*out = NULL;
	*count = 0;
	if ((rc = stored_range(&first, &end, g, run_doc)))
		return rc;
	if (!(paths = calloc(end - first + 1, sizeof(*paths))))
		return al_error_set(AL_ENOMEM, "out of memory");
	for (i = first; i < end; i++)
		paths[i - first] = g->l.v[i].path;
	rc = ids_of(out, count, s, run_doc, paths, end - first);
	free(paths);
	return rc;
}

/* --- delivery ---------------------------------------------------------------------------- */

static cJSON *chunk_fields(const al_point *pts, size_t n, int64_t seq, const char *writer)
{
	cJSON *f = cJSON_CreateObject(), *steps = cJSON_CreateArray(),
	      *values = cJSON_CreateArray(), *times = cJSON_CreateArray();
	size_t i;
	for (i = 0; i < n; i++) {
		cJSON_AddItemToArray(steps, al_value_int(pts[i].step));
		cJSON_AddItemToArray(values, al_value_double(pts[i].value));
		cJSON_AddItemToArray(times, al_value_time(pts[i].time_us));
	}
	al_fields_set(f, "writer", al_value_string(writer));
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

static void summary_set(cJSON *f, const al_series_summary *sum)
{
	al_fields_set(f, "count", al_value_int((int64_t)sum->count));
	al_fields_set(f, "last", number_or_null(sum->last));
	al_fields_set(f, "step", al_value_int(sum->step));
	al_fields_set(f, "min", number_or_null(sum->min));
	al_fields_set(f, "max", number_or_null(sum->max));
	al_fields_set(f, "bytes", al_value_int((int64_t)sum->text_bytes));
	al_fields_set(f, "updated", al_value_time(sum->update_us ? sum->update_us : al_now_us()));
}

/* The summary document's update: the merged view at the top level (what this mount knows),
 * and this mount's own exact entry, which readers add up with the other writers'. */
static cJSON *summary_fields(al_series_set *s, const char *doc, const al_series_summary *sum,
	const al_series_summary *own, const al_series_summary *legacy)
{
	cJSON *f = cJSON_CreateObject(), *mine = cJSON_CreateObject();
	char *name = al_id_decode(al_doc_id(doc));
	al_fields_set(f, "name", al_value_string(name ? name : al_doc_id(doc)));
	summary_set(f, sum);
	summary_set(mine, own);
	al_fields_set(f, s->writer_field, al_value_map(mine));
	if (legacy->count) {
		cJSON *old = cJSON_CreateObject();
		summary_set(old, legacy);
		al_fields_set(f, "writer_" LEGACY_WRITER, al_value_map(old));
	}
	free(name);
	return f;
}

/* Delivers one series' undelivered own chunks, at most CHUNKS_PER_COMMIT of them, and with the
 * last of them its summary, in one commit; *more is set when chunks remain. */
static int deliver(al_series_set *s, series *se, int *more)
{
	al_point *pts = NULL;
	al_series_summary sum, own, legacy;
	uint64_t base, count;
	size_t nchunks, i, n;
	al_write *w = NULL;
	cJSON **fields = NULL;
	char **paths = NULL;
	int rc = 0;

	*more = 0;
	pthread_mutex_lock(&se->lock);
	base = se->own_base;
	n = se->own_n;
	if (n > (size_t)CHUNKS_PER_COMMIT * AL_SERIES_CHUNK) {
		n = (size_t)CHUNKS_PER_COMMIT * AL_SERIES_CHUNK;
		*more = 1;
	}
	count = base + n;
	if ((!se->loaded && se->touched != 1) || (count == se->own_flushed && se->touched != 1)) {
		pthread_mutex_unlock(&se->lock);
		return 0;
	}
	pts = malloc(n ? n * sizeof(*pts) : 1);
	if (pts && n)
		memcpy(pts, se->own, n * sizeof(*pts));
	sum = se->sum;
	own = se->own_sum;
	legacy = se->legacy_sum;
	pthread_mutex_unlock(&se->lock);
	if (!pts)
		return al_error_set(AL_ENOMEM, "out of memory delivering %s", se->doc);

	/* own[] starts at a chunk boundary: every chunk from there is (re)written whole. */
	nchunks = (n + AL_SERIES_CHUNK - 1) / AL_SERIES_CHUNK;
	w = calloc(nchunks + 1, sizeof(*w));
	fields = calloc(nchunks + 1, sizeof(*fields));
	paths = calloc(nchunks + 1, sizeof(*paths));
	if (!w || !fields || !paths) {
		rc = al_error_set(AL_ENOMEM, "out of memory delivering %s", se->doc);
		goto cleanup;
	}
	for (i = 0; i < nchunks; i++) {
		uint64_t seq = base / AL_SERIES_CHUNK + i;
		size_t lo = i * AL_SERIES_CHUNK, hi = lo + AL_SERIES_CHUNK < n ? lo + AL_SERIES_CHUNK : n;
		if (asprintf(&paths[i], "%s/chunks/%s-%llu", se->doc, s->writer,
			(unsigned long long)seq) < 0) {
			paths[i] = NULL;
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto cleanup;
		}
		fields[i] = chunk_fields(pts + lo, hi - lo, (int64_t)seq, s->writer);
		w[i] = (al_write){AL_WRITE_SET, paths[i], fields[i], AL_PRE_NONE, NULL};
	}
	/* The summary goes with the last chunks: it then describes exactly what is stored. */
	if (!*more) {
		fields[nchunks] = summary_fields(s, se->doc, &sum, &own, &legacy);
		w[nchunks] = (al_write){AL_WRITE_UPDATE, se->doc, fields[nchunks], AL_PRE_NONE, NULL};
	}
	if ((rc = al_store_commit(s->store, w, nchunks + !*more)))
		goto cleanup;
	pthread_mutex_lock(&se->lock);
	if (se->own_flushed < count)
		se->own_flushed = count;
	if (!*more && se->touched == 1)
		se->touched = 2;   /* its summary document exists now */
	/* Whole chunks below the last one are final: drop them from memory. */
	{
		uint64_t keep_from = count / AL_SERIES_CHUNK * AL_SERIES_CHUNK;
		if (keep_from > se->own_base) {
			size_t drop = (size_t)(keep_from - se->own_base);
			memmove(se->own, se->own + drop, (se->own_n - drop) * sizeof(al_point));
			se->own_n -= drop;
			se->own_base = keep_from;
		}
	}
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

static uint64_t own_pending(const series *se)
{
	return se->own_base + se->own_n - se->own_flushed + se->deferred_n + (se->touched == 1);
}

/* Loads a series with deferred points and gives them their ordinals, so they can go. */
static int settle(al_series_set *s, series *se)
{
	int rc = 0;
	pthread_mutex_lock(&se->lock);
	if (se->deferred_n)
		rc = load_resolved(s, se);
	pthread_mutex_unlock(&se->lock);
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
		if (se->loaded && own_pending(se) == 0 && now - se->used_us > IDLE_EVICT_US) {
			free(se->pts);
			free(se->own);
			se->pts = se->own = NULL;
			se->cap = se->own_cap = se->own_n = 0;
			se->own_base = se->own_flushed;   /* nothing pending; the next load sets both */
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
		if (own_pending(se))
			dirty[n++] = se;
		pthread_mutex_unlock(&se->lock);
	}
	pthread_mutex_unlock(&s->lock);
	if (!dirty) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < n; i++) {
		int r, more;
		if ((r = settle(s, dirty[i])) == 0)
			while ((r = deliver(s, dirty[i], &more)) == 0 && more)
				;
		if (r) {
			err = r;
			pthread_mutex_lock(&s->lock);
			snprintf(s->last_error, sizeof(s->last_error), "%s", al_error_last());
			pthread_mutex_unlock(&s->lock);
			/* Unreachable: the other series would wait as long each; next round. */
			if (unreachable(r))
				break;
		}
	}
	evict_idle(s);
	/* Everything journaled up to the rotation is in the store only if every delivery worked. */
	if (!err) {
		rc = al_journal_drop(s->journal, sealed);
		pthread_mutex_lock(&s->lock);
		s->last_error[0] = '\0';   /* nothing is failing any more */
		pthread_mutex_unlock(&s->lock);
	} else
		rc = err;
cleanup:
	pthread_mutex_unlock(&s->flush_lock);
	free(dirty);
	return rc;
}

/* rm of a metric (README "Deleting and renaming"): everything journaled is delivered first, so
 * no replay brings its points back, then its entry leaves every list; the entry itself is not
 * freed (an open handle or a reader may still hold it, and writes nothing more to the store). */
int al_series_forget(al_series_set *s, const char *metric_doc)
{
	series **p, *se;
	size_t b = al__str_hash(metric_doc) % s->nbuckets;
	run_index *r;
	int rc;

	if ((rc = al_series_flush(s)))
		return rc;
	pthread_mutex_lock(&s->flush_lock);
	pthread_mutex_lock(&s->lock);
	for (p = &s->buckets[b]; *p && strcmp((*p)->doc, metric_doc) != 0; p = &(*p)->next)
		;
	if ((se = *p)) {
		*p = se->next;
		for (p = &s->all; *p && *p != se; p = &(*p)->next_all)
			;
		if (*p)
			*p = se->next_all;
		if ((r = run_find(s, metric_doc, se->run_len, 0))) {
			for (p = &r->list; *p && *p != se; p = &(*p)->next_run)
				;
			if (*p)
				*p = se->next_run;
		}
		se->next_all = s->gone;
		s->gone = se;
	}
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&s->flush_lock);
	return 0;
}

uint64_t al_series_pending(al_series_set *s)
{
	uint64_t n = 0;
	series *se;
	pthread_mutex_lock(&s->lock);
	for (se = s->all; se; se = se->next_all) {
		pthread_mutex_lock(&se->lock);
		n += own_pending(se);
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

void al_series_set_ttl(al_series_set *s, unsigned ttl_ms)
{
	pthread_mutex_lock(&s->lock);
	s->ttl_us = (int64_t)ttl_ms * 1000;
	pthread_mutex_unlock(&s->lock);
}

const char *al_series_writer(al_series_set *s)
{
	return s->writer;
}

static void *flusher(void *arg)
{
	al_series_set *s = arg;
	struct timespec ts;

	al__thread_set_background(1);   /* nobody waits for deliveries: long timeouts and retries */
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

/* Whether a store can hold the point: its time within Firestore's timestamps (a step is an
 * int64, a value any double, NaN and infinities included). Appends refuse other times, but
 * journals of older versions may hold them. */
static int storable(const al_point *p)
{
	return p->time_us >= AL_TIME_MIN_US && p->time_us <= AL_TIME_MAX_US;
}

/* Re-applies journaled points the store may not have; own ordinals make this idempotent. A point
 * no store can hold is dropped with a log line, its journal file kept aside first
 * (al_journal_refuse): delivering it would fail for ever, and the store would never be
 * unmountable cleanly again. */
static int replay_record(void *ctx, const void *data, size_t len)
{
	al_series_set *s = ctx;
	const unsigned char *r = data;
	uint16_t pl;
	uint64_t first;
	uint32_t n, i;
	size_t off = 3, bad = 0, k;
	char *doc;
	series *se;
	al_point *pts = NULL;
	const al_point *first_bad = NULL;
	int rc;

	if (len < 3 || (r[0] != REC_OWN_POINTS && r[0] != REC_DEFERRED && r[0] != REC_RESOLVED))
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
	if (!(pts = malloc(n ? n * sizeof(*pts) : 1))) {
		rc = al_error_set(AL_ENOMEM, "out of memory replaying %s", doc);
		free(doc);
		return rc;
	}
	for (i = 0; i < n; i++, off += 24) {
		memcpy(&pts[i].step, r + off, 8);
		memcpy(&pts[i].value, r + off + 8, 8);
		memcpy(&pts[i].time_us, r + off + 16, 8);
		if (!storable(&pts[i]) && !bad++)
			first_bad = &pts[i];
	}
	if (bad)
		al_journal_refuse(s->journal, "metric %s: %zu of %" PRIu32 " points have a TIME "
			"outside years 1 to 9999, which no store can hold (the first: step %" PRId64
			", %" PRId64 " µs)", doc, bad, n, first_bad->step, first_bad->time_us);
	rc = series_get(&se, s, doc);
	free(doc);
	if (rc)
		goto cleanup;
	pthread_mutex_lock(&se->lock);
	if (r[0] == REC_DEFERRED) {   /* kept for the next load, in order */
		if ((rc = reserve(&se->deferred, &se->deferred_cap, se->deferred_n, n, se->doc)) == 0)
			for (i = 0; i < n; i++)
				if (storable(&pts[i]))
					se->deferred[se->deferred_n++] = pts[i];
		se->changed_us = al_now_us();   /* new to the store */
		pthread_mutex_unlock(&se->lock);
		goto cleanup;
	}
	if (r[0] == REC_RESOLVED) {
		/* These deferred points got their ordinals: applied below. They are the first ones
		 * deferred, the unstorable ones among them left out above. */
		k = n - bad < se->deferred_n ? n - bad : se->deferred_n;
		memmove(se->deferred, se->deferred + k, (se->deferred_n - k) * sizeof(al_point));
		se->deferred_n -= k;
	}
	if (se->loaded || (rc = series_load(s, se)) == 0) {
		/* A dropped point shifts the ordinals of those after it by one in memory; replay then
		 * counted damage, and the series re-journals every point with its new ordinal. */
		for (i = 0; i < n && rc == 0; i++)
			if (first + i >= se->own_base + se->own_n && storable(&pts[i]))
				rc = series_push(se, &pts[i], 1);
	}
	pthread_mutex_unlock(&se->lock);
cleanup:
	free(pts);
	return rc;
}

/* Points per record when re-journaling (about 100 KB). */
#define REJOURNAL_BATCH 4096

/* After replay skipped a damaged journal record, the records after it were pushed with lower own
 * ordinals than they carry in the journal (the lost points leave a gap), so replaying those files
 * again, against a store that by then holds the points under their new ordinals, would add them
 * twice. Before anything is delivered, every undelivered own point is journaled again with its
 * current ordinal into a new generation, synced, and only then are the old generations dropped
 * (the damaged ones were kept under damaged/ by replay). */
static int rejournal(al_series_set *s)
{
	uint64_t sealed = 0;
	series *se;
	int rc;

	if ((rc = al_journal_rotate(&sealed, s->journal)))
		return rc;
	pthread_mutex_lock(&s->lock);
	for (se = s->all; se && rc == 0; se = se->next_all) {
		size_t k, n;
		pthread_mutex_lock(&se->lock);
		for (k = (size_t)(se->own_flushed - se->own_base); k < se->own_n && rc == 0; k += n) {
			n = se->own_n - k < REJOURNAL_BATCH ? se->own_n - k : REJOURNAL_BATCH;
			rc = journal_points(s, se, REC_OWN_POINTS, se->own_base + k, se->own + k, n);
		}
		/* Points still waiting for their ordinals stay waiting, in order. */
		for (k = 0; k < se->deferred_n && rc == 0; k += n) {
			n = se->deferred_n - k < REJOURNAL_BATCH ? se->deferred_n - k : REJOURNAL_BATCH;
			rc = journal_points(s, se, REC_DEFERRED, 0, se->deferred + k, n);
		}
		pthread_mutex_unlock(&se->lock);
	}
	pthread_mutex_unlock(&s->lock);
	if (rc == 0)
		rc = al_journal_sync(s->journal);
	if (rc == 0)
		rc = al_journal_drop(s->journal, sealed);
	return rc;
}

/* Writes a small file whole or not at all: temp file, fsync, rename. */
static int write_atomic(const char *path, const char *data, size_t len)
{
	char *tmp = NULL;
	int fd, rc = 0;
	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return al_error_set(AL_ENOMEM, "out of memory");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len || fsync(fd) != 0 ||
	    rename(tmp, path) != 0)
		rc = al_error_set_errno(AL_EIO, errno, "cannot write %s", path);
	if (fd >= 0)
		close(fd);
	if (rc)
		unlink(tmp);
	free(tmp);
	return rc;
}

/* This mount's writer id: made once per state folder, so a replay after a crash rewrites the
 * same chunks instead of adding copies. */
static int writer_id(char *out, const char *journal_dir)
{
	char *path = NULL, buf[WRITER_LEN + 2];
	unsigned char rnd[WRITER_LEN / 2];
	int fd = -1, rc = 0;
	ssize_t n;

	if ((rc = al__mkdir_p(journal_dir, 0700)))
		return rc;
	if (asprintf(&path, "%s/writer", journal_dir) < 0)
		return al_error_set(AL_ENOMEM, "out of memory");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && (n = read(fd, buf, WRITER_LEN)) == WRITER_LEN) {
		buf[WRITER_LEN] = '\0';
		if (strspn(buf, "0123456789abcdef") == WRITER_LEN) {
			memcpy(out, buf, WRITER_LEN + 1);
			goto cleanup;
		}
	}
	if (fd >= 0)
		close(fd);
	fd = -1;
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		rc = al_error_set_errno(AL_EIO, errno, "cannot make a writer id");
		goto cleanup;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(out + 2 * i, 3, "%02x", rnd[i]);
	rc = write_atomic(path, out, WRITER_LEN);
cleanup:
	if (fd >= 0)
		close(fd);
	free(path);
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
	if ((rc = writer_id(s->writer, journal_dir)))
		goto fail;
	snprintf(s->writer_field, sizeof(s->writer_field), "writer_%s", s->writer);
	if ((rc = al_journal_open(&s->journal, journal_dir)))
		goto fail;
	if ((rc = al_journal_replay(s->journal, replay_record, s)))
		goto fail;
	if (al_journal_damage(s->journal) && (rc = rejournal(s)))
		goto fail;
	/* What the store refuses now stays pending and is retried by the flusher, with the reason
	 * in last_error (.aletheia/status): it never keeps the store from being mounted. */
	if ((rc = al_series_flush(s))) {
		pthread_mutex_lock(&s->lock);
		if (!*s->last_error)
			snprintf(s->last_error, sizeof(s->last_error), "%s", al_error_last());
		fprintf(stderr, "aletheia: metrics: delivering the journal's points failed, retried "
			"in the background: %s\n", s->last_error);
		pthread_mutex_unlock(&s->lock);
		al_error_clear();
	}
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

/* Frees a chain of series linked by next_all (the set's, or its forgotten ones). */
static void series_list_free(series *se)
{
	series *next;
	for (; se; se = next) {
		next = se->next_all;
		pthread_mutex_destroy(&se->lock);
		free(se->pts);
		free(se->own);
		free(se->deferred);
		free(se->doc);
		free(se);
	}
}

void al_series_set_free(al_series_set *s)
{
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
	series_list_free(s->all);
	series_list_free(s->gone);
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
