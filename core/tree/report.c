/* aletheia: the report pages (README "index.html"): an experiment's index.html (its runs table and
 * plots) and a project's (its experiments), static HTML and CSS that fetch nothing; and the facts
 * about an experiment's runs the plots share (their order, the params that differ). */
#include <math.h>
#include "report.h"

/* ---- the runs of an experiment --------------------------------------------------------------- */

int experiment_runs(al_doc_list **out, al_tree *t, const char *exp_doc)
{
	char *coll = xasprintf("%s/runs", exp_doc);
	int rc = coll ? al_store_list(out, t->store, coll, NULL, NULL) : al_error_set(AL_ENOMEM, "out of memory");
	if (rc == 0 && (*out)->count)
		qsort((*out)->docs, (*out)->count, sizeof(al_doc *), cmp_run_ids);   /* runs.csv's order */
	free(coll);
	return rc;
}

const char *param_cell(al_buf *cell, const al_doc *run, const char *key)
{
	const cJSON *hp = al_value_get_map(al_fields_get(run->fields, "hyper_params"));
	const cJSON *v = hp ? al_fields_get(hp, key) : NULL;
	al_buf_clear(cell);
	if (v && !cJSON_GetObjectItemCaseSensitive(v, "nullValue"))
		value_text(cell, v);
	return cell->ptr ? cell->ptr : "";
}

int params_that_differ(keyset *out, const al_doc_list *runs)
{
	keyset all = {0};
	al_buf first = AL_BUF_INIT, cell = AL_BUF_INIT;
	size_t i, k;

	for (i = 0; i < runs->count; i++) {
		const cJSON *hp = al_value_get_map(al_fields_get(runs->docs[i]->fields, "hyper_params")), *it;
		if (hp)
			cJSON_ArrayForEach(it, hp)
				keyset_add(&all, it->string);
	}
	for (k = 0; k < all.n; k++) {
		int same = 1;
		const cJSON *hp0 = al_value_get_map(al_fields_get(runs->docs[0]->fields, "hyper_params"));
		int has0 = hp0 && al_fields_get(hp0, all.keys[k]);
		param_cell(&first, runs->docs[0], all.keys[k]);
		for (i = 1; i < runs->count && same; i++) {
			const cJSON *hp = al_value_get_map(al_fields_get(runs->docs[i]->fields, "hyper_params"));
			int has = hp && al_fields_get(hp, all.keys[k]);
			same = has == has0 && strcmp(param_cell(&cell, runs->docs[i], all.keys[k]),
				first.ptr ? first.ptr : "") == 0;
		}
		if (!same)
			keyset_add(out, all.keys[k]);
	}
	keyset_sort(out);
	keyset_free(&all);
	al_buf_dispose(&first);
	al_buf_dispose(&cell);
	return 0;
}

char *run_label(const al_doc *run, const keyset *differ)
{
	al_buf b = AL_BUF_INIT, cell = AL_BUF_INIT;
	size_t k;
	al_buf_puts(&b, al_doc_id(run->path));
	for (k = 0; k < differ->n; k++) {
		const cJSON *hp = al_value_get_map(al_fields_get(run->fields, "hyper_params"));
		if (hp && al_fields_get(hp, differ->keys[k]))
			al_buf_printf(&b, " %s=%s", differ->keys[k], param_cell(&cell, run, differ->keys[k]));
	}
	al_buf_dispose(&cell);
	return al_buf_detach(&b, NULL);
}

/* ---- HTML ------------------------------------------------------------------------------------ */

static const char style[] =
	"<style>\n"
	"body{font-family:sans-serif;margin:1.5em;color:#222}\n"
	"table{border-collapse:collapse;font-size:13px}\n"
	"th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;white-space:nowrap}\n"
	"th{background:#f0f0f0}\n"
	"td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
	"tr:nth-child(even) td{background:#fafafa}\n"
	".swatch{display:inline-block;width:10px;height:10px;margin-right:4px}\n"
	".running{color:#1565c0}.failed,.killed,.crashed{color:#b00020}.finished{color:#2e7d32}\n"
	".dirty{color:#b00020}\n"
	"figure{display:inline-block;margin:0 1em 1em 0}\n"
	"figure img{max-width:100%;border:1px solid #ddd}\n"
	".tag{background:#eee;border-radius:3px;padding:0 4px;margin-right:3px}\n"
	"</style>\n";

static void html_begin(al_buf *b, const char *title, int refresh)
{
	al_buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
	/* reloads itself while a run is running (README "index.html") */
	if (refresh)
		al_buf_puts(b, "<meta http-equiv=\"refresh\" content=\"5\">\n");
	al_buf_puts(b, "<title>");
	xml_text(b, title);
	al_buf_puts(b, "</title>\n");
	al_buf_puts(b, style);
	al_buf_puts(b, "</head>\n<body>\n");
}

static void td_text(al_buf *b, const char *cls, const char *s)
{
	al_buf_puts(b, cls ? "<td class=\"" : "<td>");
	if (cls) {
		xml_text(b, cls);
		al_buf_puts(b, "\">");
	}
	xml_text(b, s);
	al_buf_puts(b, "</td>");
}

static void td_num(al_buf *b, double v, int present)
{
	if (present)
		al_buf_printf(b, "<td class=\"num\">%.6g</td>", v);
	else
		al_buf_puts(b, "<td></td>");
}

/* A duration as people read it: "42.1 s", "4 min 05 s", "3 h 04 min", "2 d 03 h". */
static void duration_text(char *out, size_t cap, int64_t us)
{
	int64_t s = us / 1000000;
	if (us < 0)
		snprintf(out, cap, "%s", "");
	else if (s < 60)
		snprintf(out, cap, "%.1f s", (double)us / 1e6);
	else if (s < 3600)
		snprintf(out, cap, "%lld min %02lld s", (long long)(s / 60), (long long)(s % 60));
	else if (s < 86400)
		snprintf(out, cap, "%lld h %02lld min", (long long)(s / 3600), (long long)(s % 3600 / 60));
	else
		snprintf(out, cap, "%lld d %02lld h", (long long)(s / 86400), (long long)(s % 86400 / 3600));
}

/* A run's duration: started to ended; while it runs (or never ended), started to its last
 * activity (its document's or its metrics' newest change), so the page is the same bytes until
 * something changes (README "index.html"). */
static int64_t run_duration(const al_doc *run, int64_t last_activity)
{
	int64_t started, ended;
	if (al_fields_get_time(&started, run->fields, "started") &&
	    al_fields_get_time(&started, run->fields, "created"))
		return -1;
	if (al_fields_get_time(&ended, run->fields, "ended"))
		ended = last_activity;
	return ended >= started ? ended - started : -1;
}

/* The metric summaries of one run. */
typedef struct run_metrics {
	char **ids;
	al_series_summary *sums;
	size_t n;
} run_metrics;

static const al_series_summary *find_summary(const run_metrics *m, const char *id)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(m->ids[mid], id);
		if (c == 0)
			return &m->sums[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void run_row(al_buf *b, const al_doc *run, size_t index, const run_metrics *m,
	const keyset *differ, const keyset *metrics, char *const *metric_ids, int tags)
{
	const cJSON *f = run->fields, *git = al_value_get_map(al_fields_get(f, "git")), *tg;
	/* crashed as status and runs.csv show it (README "Crashed runs") */
	const char *id = al_doc_id(run->path), *status = run_status_shown(NULL, run);
	al_buf cell = AL_BUF_INIT;
	int64_t last = run->update_us, fold;
	char colour[8], dur[64];
	size_t k;

	for (k = 0; k < m->n; k++)
		mtime_raise(&last, m->sums[k].update_us);
	chart_colour(colour, index);
	al_buf_printf(b, "<tr><td><span class=\"swatch\" style=\"background:%s\"></span><a href=\"runs/",
		colour);
	url_path(b, id);
	al_buf_puts(b, "/\">");
	xml_text(b, id);
	al_buf_puts(b, "</a> <a href=\"runs/");
	url_path(b, id);
	al_buf_puts(b, "/run.json\">run.json</a></td>");
	td_text(b, status ? status : "", status ? status : "");
	duration_text(dur, sizeof(dur), run_duration(run, last));
	td_text(b, "num", dur);
	if (al_fields_get_int(&fold, f, "fold") == 0)
		al_buf_printf(b, "<td class=\"num\">%lld</td>", (long long)fold);
	else
		al_buf_puts(b, "<td></td>");
	td_text(b, NULL, al_fields_get_string(f, "model") ? al_fields_get_string(f, "model") : "");
	al_buf_puts(b, "<td>");
	if (git && al_fields_get_string(git, "commit")) {
		int dirty = 0;
		al_buf_printf(b, "<code>%.12s</code>", al_fields_get_string(git, "commit"));
		if (al_fields_get_bool(&dirty, git, "dirty") == 0 && dirty)
			al_buf_puts(b, " <span class=\"dirty\">dirty</span>");
	}
	al_buf_puts(b, "</td>");
	if (tags) {
		/* wp-runtable's tags: a map of tag name → time added (README "tags") */
		const cJSON *map = al_value_get_map(al_fields_get(f, "tags"));
		keyset names = {0};
		al_buf_puts(b, "<td>");
		if (map)
			cJSON_ArrayForEach(tg, map)
				keyset_add(&names, tg->string);
		keyset_sort(&names);
		for (k = 0; k < names.n; k++) {
			al_buf_puts(b, "<span class=\"tag\">");
			xml_text(b, names.keys[k]);
			al_buf_puts(b, "</span>");
		}
		keyset_free(&names);
		al_buf_puts(b, "</td>");
	}
	for (k = 0; k < differ->n; k++)
		td_text(b, NULL, param_cell(&cell, run, differ->keys[k]));
	for (k = 0; k < metrics->n; k++) {
		const al_series_summary *s = metric_ids[k] ? find_summary(m, metric_ids[k]) : NULL;
		/* min/max: NaN ignored, ±inf count as values (as runs.csv) */
		td_num(b, s ? s->last : 0, s && s->count);
		td_num(b, s ? s->min : 0, s && s->count && !isnan(s->min));
		td_num(b, s ? s->max : 0, s && s->count && !isnan(s->max));
	}
	al_buf_puts(b, "</tr>\n");
	al_buf_dispose(&cell);
}

static int render_experiment_index(al_buf *b, int64_t *mtime, al_tree *t, const node *n,
	const al_doc *exp)
{
	al_doc_list *runs = NULL;
	al_series_stored *stored = NULL;
	run_metrics *rm = NULL;
	keyset differ = {0}, metrics = {0};
	char **metric_ids = NULL, *title = NULL;
	const char *desc = al_fields_get_string(exp->fields, "description");
	size_t i, k;
	int rc, running = 0, tags = 0;

	if (al_series_stored_start(&stored, t->series, n->exp_doc) != 0)
		al_error_clear();   /* then a query per run */
	if ((rc = experiment_runs(&runs, t, n->exp_doc)) || (rc = params_that_differ(&differ, runs)))
		goto cleanup;
	if (!(rm = calloc(runs->count + 1, sizeof(*rm)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < runs->count; i++) {
		const al_doc *r = runs->docs[i];
		const char *st = run_status_shown(NULL, r);
		running |= st && strcmp(st, "running") == 0;
		tags |= al_value_get_map(al_fields_get(r->fields, "tags")) != NULL;
		mtime_raise(mtime, r->update_us);
		if ((rc = run_summaries(&rm[i].ids, &rm[i].sums, &rm[i].n, t, stored, r->path)))
			goto cleanup;
		for (k = 0; k < rm[i].n; k++) {
			char *name = al_id_decode(rm[i].ids[k]);
			if (name)
				keyset_add(&metrics, name);
			free(name);
			mtime_raise(mtime, rm[i].sums[k].update_us);
		}
	}
	keyset_sort(&metrics);
	if (!(metric_ids = calloc(metrics.n + 1, sizeof(char *)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (k = 0; k < metrics.n; k++)
		metric_ids[k] = al_id_encode(metrics.keys[k]);

	title = xasprintf("%s / %s", n->project, n->experiment);
	html_begin(b, title ? title : "", running);
	al_buf_puts(b, "<p><a href=\"../../index.html\">");
	xml_text(b, n->project);
	al_buf_puts(b, "</a></p>\n<h1>");
	xml_text(b, n->experiment);
	al_buf_puts(b, "</h1>\n");
	if (desc && *desc) {
		al_buf_puts(b, "<p>");
		xml_text(b, desc);
		al_buf_puts(b, "</p>\n");
	}
	al_buf_printf(b, "<p>%zu run%s%s · <a href=\"runs.csv\">runs.csv</a></p>\n", runs->count,
		runs->count == 1 ? "" : "s", running ? " · reloads every 5 s while a run is running" : "");
	al_buf_puts(b, "<h2>Runs</h2>\n<table>\n<thead><tr><th rowspan=\"2\">run</th>"
		"<th rowspan=\"2\">status</th><th rowspan=\"2\">duration</th><th rowspan=\"2\">fold</th>"
		"<th rowspan=\"2\">model</th><th rowspan=\"2\">git</th>");
	if (tags)
		al_buf_puts(b, "<th rowspan=\"2\">tags</th>");
	for (k = 0; k < differ.n; k++) {
		al_buf_puts(b, "<th rowspan=\"2\">");
		xml_text(b, differ.keys[k]);
		al_buf_puts(b, "</th>");
	}
	for (k = 0; k < metrics.n; k++) {
		al_buf_puts(b, "<th colspan=\"3\">");
		xml_text(b, metrics.keys[k]);
		al_buf_puts(b, "</th>");
	}
	al_buf_puts(b, "</tr>\n<tr>");
	for (k = 0; k < metrics.n; k++)
		al_buf_puts(b, "<th>last</th><th>min</th><th>max</th>");
	al_buf_puts(b, "</tr></thead>\n<tbody>\n");
	for (i = 0; i < runs->count; i++)
		run_row(b, runs->docs[i], i, &rm[i], &differ, &metrics, metric_ids, tags);
	al_buf_puts(b, "</tbody>\n</table>\n<h2>Plots</h2>\n");
	if (!metrics.n)
		al_buf_puts(b, "<p>No metrics yet.</p>\n");
	/* Plots are the SVG files beside the page, linked (README "index.html"): the page stays
	 * small, and file:// and any static server show them. */
	for (k = 0; k < metrics.n; k++) {
		al_buf_puts(b, "<figure><a href=\"plots/");
		url_path(b, metrics.keys[k]);
		al_buf_puts(b, ".svg\"><img src=\"plots/");
		url_path(b, metrics.keys[k]);
		al_buf_puts(b, ".svg\" alt=\"");
		xml_text(b, metrics.keys[k]);
		al_buf_puts(b, "\"></a></figure>\n");
	}
	rc = al_buf_puts(b, "</body>\n</html>\n");
cleanup:
	al_series_stored_free(stored);
	for (i = 0; rm && i < runs->count; i++) {
		al_strings_free(rm[i].ids, rm[i].n);
		free(rm[i].sums);
	}
	free(rm);
	for (k = 0; metric_ids && k < metrics.n; k++)
		free(metric_ids[k]);
	free(metric_ids);
	free(title);
	keyset_free(&differ);
	keyset_free(&metrics);
	al_doc_list_free(runs);
	return rc;
}

static int experiment_index_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc *exp = NULL;
	int64_t mt = 0;
	int rc;
	if ((rc = get_doc(&exp, t, n->exp_doc)) == 0 && (rc = render_experiment_index(b, &mt, t, n, exp)) == 0) {
		mtime_raise(mtime, mt);
		mtime_raise(mtime, exp->update_us);
	}
	al_doc_free(exp);
	return rc;
}

const al_kind kind_experiment_index = {
	.name = "index.html", .pattern = EXPERIMENT_P "/index.html", .owner = O_EXPERIMENT,
	.mode = 0444, .render = experiment_index_render,
};

/* ---- a project's page ------------------------------------------------------------------------ */

/* Each experiment: its runs, how many run, its last activity (the newest change to it or its runs'
 * documents; points logged to a metric do not count, so the page costs no listing per run). */
static int project_index_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc_list *exps = NULL;
	char *coll = NULL;
	size_t i, j;
	int rc, running_any = 0;
	al_buf rows = AL_BUF_INIT;

	if ((rc = doc_exists(t, n->proj_doc)))
		return rc;
	coll = xasprintf("%s/experiments", n->proj_doc);
	if ((rc = al_store_list(&exps, t->store, coll, NULL, NULL)))
		goto cleanup;
	for (i = 0; i < exps->count; i++) {
		al_doc_list *runs = NULL;
		const char *id = al_doc_id(exps->docs[i]->path);
		int64_t last = exps->docs[i]->update_us;
		size_t running = 0;
		char tb[48];
		if ((rc = experiment_runs(&runs, t, exps->docs[i]->path)))
			goto cleanup;
		for (j = 0; j < runs->count; j++) {
			const char *st = run_status_shown(NULL, runs->docs[j]);
			running += st && strcmp(st, "running") == 0;
			mtime_raise(&last, runs->docs[j]->update_us);
		}
		running_any |= running > 0;
		mtime_raise(mtime, last);
		al_buf_puts(&rows, "<tr><td><a href=\"experiments/");
		url_path(&rows, id);
		al_buf_puts(&rows, "/index.html\">");
		xml_text(&rows, id);
		al_buf_printf(&rows, "</a></td><td class=\"num\">%zu</td><td class=\"num\">%zu</td><td>%s</td></tr>\n",
			runs->count, running, al_time_format(tb, last, 0));
		al_doc_list_free(runs);
	}
	html_begin(b, n->project, running_any);
	al_buf_puts(b, "<h1>");
	xml_text(b, n->project);
	al_buf_printf(b, "</h1>\n<h2>Experiments</h2>\n<table>\n<thead><tr><th>experiment</th><th>runs</th>"
		"<th>running</th><th>last activity (UTC)</th></tr></thead>\n<tbody>\n");
	if (rows.len)
		al_buf_put(b, rows.ptr, rows.len);
	rc = al_buf_puts(b, "</tbody>\n</table>\n</body>\n</html>\n");
cleanup:
	al_buf_dispose(&rows);
	al_doc_list_free(exps);
	free(coll);
	return rc;
}

const al_kind kind_project_index = {
	.name = "project index.html", .pattern = PROJECT_P "/index.html", .owner = O_PROJECT,
	.mode = 0444, .render = project_index_render,
};
