/* aletheia: metric series — journaled appends, in-memory state, and batched delivery of chunk
 * documents to the metastore by a background flusher. */
#ifndef ALETHEIA_SERIES_H
#define ALETHEIA_SERIES_H

#include <stdint.h>
#include <stddef.h>
#include "aletheia/common.h"
#include "core/series/metric.h"
#include "core/store/store.h"

typedef struct al_series_set al_series_set;

typedef struct al_series_summary {
	uint64_t count;
	int64_t step;        /* last step */
	double last, min, max;
	uint64_t text_bytes; /* size of the read-back text */
	int64_t update_us;
} al_series_summary;

/* Points per chunk document. */
#define AL_SERIES_CHUNK 4096

/* Opens the set: replays the journal in journal_dir into the store, then starts the flusher,
 * which delivers dirty series every interval_ms. */
int al_series_set_open(al_series_set **out, al_store_backend *store, const char *journal_dir,
	unsigned interval_ms);
/* Parses text (complete lines) and appends its points to the series whose metric document is
 * metric_doc ("…/runs/R/metrics/<encoded name>"); journaled before returning. AL_EINVAL on a
 * bad line, with nothing appended. */
int al_series_append_text(al_series_set *s, const char *metric_doc, const char *text, size_t len);
/* The read-back text of a series. AL_ENOTFOUND if it has no points and no document. */
int al_series_render(char **out, size_t *len, al_series_set *s, const char *metric_doc);
/* Makes an empty series exist at once (touch, open with O_CREAT): listed, size 0, reads empty;
 * its summary document is stored by the flusher. For a metric that does not exist yet. */
int al_series_touch(al_series_set *s, const char *metric_doc);
/* For readers that follow a growing series (tail -f): the text of the points after the first
 * *points, when the view is still *view (the points before them did not move); else the whole
 * text with *whole = 1. Updates *points and *view; start with *view = UINT64_MAX. */
int al_series_render_tail(char **out, size_t *len, int *whole, uint64_t *points, uint64_t *view,
	al_series_set *s, const char *metric_doc);
/* Points [from, from + max) of a series in read-back order (*n < max at its end), for readers
 * that stream the text: a stored series of one writer is read one chunk document at a time, never
 * whole; others come from the merged view in memory. *view changes when earlier points may have
 * moved (several writers merged again): a reader then starts over. AL_ENOTFOUND as render. */
int al_series_points(al_point *out, size_t *n, uint64_t *view, al_series_set *s,
	const char *metric_doc, uint64_t from, size_t max);
/* The summaries of a run's metrics that exist (ids as al_series_ids, sorted), from one listing
 * of their documents: series in memory give their own, the others their stored summary, so a
 * run's metrics cost one listing and no entry in memory (runs.csv, run.json). */
int al_series_summaries(char ***ids, al_series_summary **sums, size_t *count, al_series_set *s,
	const char *run_doc);
/* The stored metric documents of every run below a document (an experiment), read in one query
 * where the store has one (store.h list_group_text; else *out is NULL), so that a render showing
 * every run's summaries (runs.csv, best/, the report page) makes one query, not one per run. The
 * query runs on a thread of its own while the caller goes on (reading its runs);
 * al_series_summaries_in waits for it, then answers as al_series_summaries from it (g NULL, or
 * its query failed: by a query for the run). Used and freed by one thread. */
typedef struct al_series_stored al_series_stored;
int al_series_stored_start(al_series_stored **out, al_series_set *s, const char *parent_doc);
int al_series_summaries_in(char ***ids, al_series_summary **sums, size_t *count, al_series_set *s,
	al_series_stored *g, const char *run_doc);
/* As al_series_ids, from g (g NULL, or its query failed: by a listing of the run's). */
int al_series_ids_in(char ***out, size_t *count, al_series_set *s, al_series_stored *g,
	const char *run_doc);
void al_series_stored_free(al_series_stored *g);
int al_series_summary_get(al_series_summary *out, al_series_set *s, const char *metric_doc);
/* Combines writer b's summary into a: counts add up, the later writer gives last and step, min
 * and max the extremes (NaN ignored). */
void al_series_summary_merge(al_series_summary *a, const al_series_summary *b);
/* Encoded metric document ids of the run (stored and not yet delivered), sorted, deduplicated. */
int al_series_ids(char ***out, size_t *count, al_series_set *s, const char *run_doc);
/* Makes the journal durable against a power cut. */
int al_series_sync(al_series_set *s);
/* Delivers every dirty series now. */
int al_series_flush(al_series_set *s);
/* Delivers everything pending, then drops the series' entry from memory (rm of a metric: the
 * caller deletes its documents). */
int al_series_forget(al_series_set *s, const char *metric_doc);
uint64_t al_series_pending(al_series_set *s);
/* Last delivery error ("" if none); copied into buf. */
void al_series_last_error(char *buf, size_t cap, al_series_set *s);
/* On a store other mounts write too: a view of a series older than ttl_ms is refreshed when
 * its summary shows points of other writers it lacks (0, the default: never). */
void al_series_set_ttl(al_series_set *s, unsigned ttl_ms);
/* This mount's writer id (chunk documents "<writer>-<seq>", summary entry "writer_<id>"). */
const char *al_series_writer(al_series_set *s);
/* Stops the flusher after a final delivery. */
void al_series_set_free(al_series_set *s);

#endif
