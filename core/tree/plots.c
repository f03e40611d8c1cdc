/* aletheia: the plots/ folders (README "plots"): an experiment's plots/<metric>.svg overlays that
 * metric of every run; a run's plots/<metric>.svg and plots/metrics.svg (small multiples). Read-only
 * generated files, drawn by chart.c; a metric named val/loss is plots/val/loss.svg. */
#include "core/store/store_cache.h"
#include "report.h"

#define SVG_EXT ".svg"

/* The metric name a plot file shows ("val/loss.svg" → "val/loss"), NULL for other names. */
static char *plot_metric(const char *rest)
{
	size_t len = strlen(rest), ext = strlen(SVG_EXT);
	if (len <= ext || strcmp(rest + len - ext, SVG_EXT) != 0 || rest[len - ext - 1] == '/')
		return NULL;
	return strndup(rest, len - ext);
}

/* The decoded metric names of a run, added to k (unsorted); stored, when not NULL, is the
 * experiment's one listing of every run's metrics (al_series_stored_start). */
static int add_run_metric_names(keyset *k, al_tree *t, al_series_stored *stored, const char *run_doc)
{
	char **ids = NULL;
	size_t nids = 0, i;
	int rc;
	if (!stored)
		al_store_cache_prefetch(t->series_store, run_doc, "metrics");
	if ((rc = al_series_ids_in(&ids, &nids, t->series, stored, run_doc)))
		return rc;
	for (i = 0; i < nids; i++) {
		char *name = al_id_decode(ids[i]);
		if (name)
			keyset_add(k, name);
		free(name);
	}
	al_strings_free(ids, nids);
	return 0;
}

/* A run's plots/ shows its metrics' names, sorted (al_series_ids' order is the encoded ids'). */
static int run_metric_names(keyset *k, al_tree *t, const node *n)
{
	int rc = add_run_metric_names(k, t, NULL, n->run_doc);
	if (rc == 0)
		keyset_sort(k);
	return rc;
}

static int has_name(const keyset *k, const char *name)
{
	return k->n && bsearch(&name, k->keys, k->n, sizeof(char *), cmp_str) != NULL;
}

/* Whether the metric names hold a folder at dir (some name starts with "dir/"). */
static int names_have_folder(const keyset *k, const char *dir)
{
	size_t i, len = strlen(dir);
	for (i = 0; i < k->n; i++)
		if (strncmp(k->keys[i], dir, len) == 0 && k->keys[i][len] == '/')
			return 1;
	return 0;
}

/* An experiment's plots/ shows the union of the metric names of all its runs, sorted: the runs'
 * ids (no document read) and one listing of every run's metrics. */
static int experiment_metric_names(keyset *k, al_tree *t, const node *n)
{
	al_doc_list *runs = NULL;
	al_series_stored *stored = NULL;
	char *coll = xasprintf("%s/runs", n->exp_doc);
	size_t i;
	int rc;

	if (!coll)
		return al_error_set(AL_ENOMEM, "out of memory");
	if (al_series_stored_start(&stored, t->series, n->exp_doc) != 0)
		al_error_clear();   /* then a listing per run */
	rc = al_store_list_meta(&runs, t->store, coll);
	for (i = 0; rc == 0 && i < runs->count; i++)
		rc = add_run_metric_names(k, t, stored, runs->docs[i]->path);
	al_series_stored_free(stored);
	al_doc_list_free(runs);
	free(coll);
	if (rc == 0)
		keyset_sort(k);
	return rc;
}

/* plots/ and its sub-folders list "<name>.svg" for each metric and a folder for each prefix. */
static void list_plots(keyset *out, const keyset *names, const char *rest)
{
	size_t i;
	for (i = 0; i < names->n; i++) {
		char *file = xasprintf("%s" SVG_EXT, names->keys[i]);
		if (file) {
			/* the folder val/ of val/loss, the file of the name itself */
			const char *slash = strrchr(names->keys[i], '/');
			size_t dirlen = slash ? (size_t)(slash - names->keys[i]) : 0;
			if (dirlen == strlen(rest) && strncmp(names->keys[i], rest, dirlen) == 0)
				child_of_typed(out, rest, file);
			else
				child_of_typed(out, rest, names->keys[i]);   /* deeper: a folder */
		}
		free(file);
	}
}

/* A plot file, a folder of them, or nothing, from the metric names that exist. */
static int plots_attr(al_attr *out, al_tree *t, const node *n, const char *path, unsigned mode,
	const keyset *names, int64_t mtime, const char *extra)
{
	char *metric;
	int rc;
	if (!*n->rest || names_have_folder(names, n->rest)) {
		attr_dir(out, mtime);
		return 0;
	}
	metric = plot_metric(n->rest);
	if ((metric && has_name(names, metric)) || (extra && strcmp(n->rest, extra) == 0))
		rc = generated_attr(out, t, n, path, mode & ~0222u, mtime);
	else
		rc = al_error_set(AL_ENOTFOUND, "no such plot: %s", path);
	free(metric);
	return rc;
}

/* ---- both plots/ folders ---------------------------------------------------------------------- */

typedef int (*names_fn)(keyset *k, al_tree *t, const node *n);

/* A run's plots/ also holds its small multiples (plots/metrics.svg). */
#define MULTIPLES "metrics" SVG_EXT

static int plots_getattr(al_attr *out, al_tree *t, const node *n, const char *path, unsigned mode,
	names_fn names_of, int64_t mtime, const char *extra)
{
	keyset names = {0};
	int rc = names_of(&names, t, n);
	if (rc == 0)
		rc = plots_attr(out, t, n, path, mode, &names, mtime, extra);
	keyset_free(&names);
	return rc;
}

static int plots_list(keyset *k, al_tree *t, const node *n, names_fn names_of, const char *extra)
{
	keyset names = {0};
	int rc = names_of(&names, t, n);
	if (rc == 0) {
		list_plots(k, &names, n->rest);
		if (extra && !*n->rest)
			child_of_typed(k, "", extra);
	}
	keyset_free(&names);
	return rc;
}

/* ---- an experiment's plots/ ------------------------------------------------------------------ */

static int exp_plots_getattr(al_attr *out, al_tree *t, const node *n, const al_doc *exp,
	const char *path, unsigned mode)
{
	return plots_getattr(out, t, n, path, mode, experiment_metric_names, exp->update_us, NULL);
}

static int exp_plots_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	(void)path;
	return plots_list(k, t, n, experiment_metric_names, NULL);
}

/* The metric of every run that has it, overlaid; each run keeps its colour of the report
 * (its place among the experiment's runs). */
static int exp_plot_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc_list *runs = NULL;
	al_series_stored *stored = NULL;
	keyset differ = {0};
	chart_series *ser = NULL;
	char *metric = plot_metric(n->rest), *id = NULL;
	size_t i, count = 0;
	int rc;

	if (!metric)
		return al_error_set(AL_EISDIR, "%s is a folder", n->rest);
	id = al_id_encode(metric);
	if (al_series_stored_start(&stored, t->series, n->exp_doc) != 0)
		al_error_clear();   /* then a listing per run */
	if ((rc = experiment_runs(&runs, t, n->exp_doc)) || (rc = params_that_differ(&differ, runs)))
		goto cleanup;
	if (!(ser = calloc(runs->count + 1, sizeof(*ser)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < runs->count; i++) {
		keyset names = {0};
		if ((rc = add_run_metric_names(&names, t, stored, runs->docs[i]->path)))
			goto cleanup;
		keyset_sort(&names);
		if (has_name(&names, metric)) {
			ser[count].doc = xasprintf("%s/metrics/%s", runs->docs[i]->path, id);
			ser[count].label = run_label(runs->docs[i], &differ);
			ser[count++].colour = i;
		}
		keyset_free(&names);
		mtime_raise(mtime, runs->docs[i]->update_us);
	}
	rc = chart_svg(b, mtime, t->series, metric, ser, count, 1);
cleanup:
	al_series_stored_free(stored);
	for (i = 0; ser && i < count; i++) {
		free((char *)ser[i].doc);
		free((char *)ser[i].label);
	}
	free(ser);
	keyset_free(&differ);
	al_doc_list_free(runs);
	free(metric);
	free(id);
	return rc;
}

const al_kind kind_experiment_plots = {
	.name = "plots/*.svg", .pattern = EXPERIMENT_P "/plots/{rest*}", .owner = O_EXPERIMENT,
	.mode = 0444, .getattr = exp_plots_getattr, .list = exp_plots_list, .render = exp_plot_render,
};

/* ---- a run's plots/ -------------------------------------------------------------------------- */

static int run_plots_getattr(al_attr *out, al_tree *t, const node *n, const al_doc *run,
	const char *path, unsigned mode)
{
	/* A metric's plot moves with its points only (run_plot_render), not with the run's other
	 * values: its floor is the run's creation. */
	int64_t floor = !*n->rest || strcmp(n->rest, MULTIPLES) == 0 ? run->update_us
		: value_time(run, NULL, "created");
	return plots_getattr(out, t, n, path, mode, run_metric_names, floor, MULTIPLES);
}

static int run_plots_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	(void)path;
	return plots_list(k, t, n, run_metric_names, MULTIPLES);
}

/* One metric of the run, or (metrics.svg, which a metric named "metrics" yields to) all of them
 * as small multiples. */
static int run_plot_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	keyset names = {0};
	chart_series *ser = NULL;
	char *metric = NULL, *title = NULL;
	size_t i, count = 0;
	al_doc *run = NULL;
	int rc, multiples = strcmp(n->rest, MULTIPLES) == 0;

	if (!multiples && !(metric = plot_metric(n->rest)))
		return al_error_set(AL_EISDIR, "%s is a folder", n->rest);
	if ((rc = get_doc(&run, t, n->run_doc)) || (rc = run_metric_names(&names, t, n)))
		goto cleanup;
	/* One metric's plot is made of its points only (their last append, chart_svg); the small
	 * multiples also of which metrics the run has, which a deleted metric changes. */
	if (multiples)
		mtime_raise(mtime, run->update_us);
	if (!(ser = calloc(names.n + 1, sizeof(*ser)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < names.n; i++) {
		char *id;
		if (!multiples && strcmp(names.keys[i], metric) != 0)
			continue;
		id = al_id_encode(names.keys[i]);
		ser[count].doc = xasprintf("%s/metrics/%s", n->run_doc, id ? id : "");
		ser[count].label = multiples ? strdup(names.keys[i]) : strdup(n->run);
		ser[count++].colour = multiples ? i : 0;
		free(id);
	}
	title = multiples ? xasprintf("run %s: metrics", n->run) : xasprintf("%s (run %s)", metric, n->run);
	rc = multiples ? chart_multiples_svg(b, mtime, t->series, title, ser, count)
		       : chart_svg(b, mtime, t->series, title, ser, count, 1);
cleanup:
	for (i = 0; ser && i < count; i++) {
		free((char *)ser[i].doc);
		free((char *)ser[i].label);
	}
	free(ser);
	free(title);
	free(metric);
	keyset_free(&names);
	al_doc_free(run);
	return rc;
}

const al_kind kind_run_plots = {
	.name = "run plots/*.svg", .pattern = RUN_P "/plots/{rest*}", .owner = O_RUN, .mode = 0444,
	.getattr = run_plots_getattr, .list = run_plots_list, .render = run_plot_render,
};
