/* aletheia: an experiment's runs.csv, one row per run with its params, tags, duration and each
 * metric's last, min and max values, for pandas and spreadsheets (README "runs.csv"). */
#include <math.h>
#include "core/store/store_cache.h"
#include "internal.h"

static int csv_field(al_buf *b, const char *s)
{
	int rc = 0;
	if (!strpbrk(s, ",\"\r\n"))
		return al_buf_puts(b, s);
	rc |= al_buf_puts(b, "\"");
	for (; *s && rc == 0; s++)
		rc = *s == '"' ? al_buf_puts(b, "\"\"") : al_buf_put(b, s, 1);
	return rc ? rc : al_buf_puts(b, "\"");
}

/* Numeric ids in numeric order (any length: compared as digit strings), then the others by
 * bytes. */
int cmp_run_ids(const void *a, const void *b)
{
	const char *x = al_doc_id((*(al_doc *const *)a)->path), *y = al_doc_id((*(al_doc *const *)b)->path);
	int ix = *x && strspn(x, "0123456789") == strlen(x), iy = *y && strspn(y, "0123456789") == strlen(y);
	if (ix && iy) {
		size_t lx, ly;
		while (x[0] == '0' && x[1])
			x++;
		while (y[0] == '0' && y[1])
			y++;
		lx = strlen(x);
		ly = strlen(y);
		return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
	}
	if (ix != iy)
		return ix ? -1 : 1;
	return strcmp(x, y);
}

/* A summary's min or max as a cell: empty while no point had a comparable value (all NaN). */
static cJSON *bound_text(double v)
{
	char num[32];
	if (isnan(v))
		return cJSON_CreateString("");
	al_double_format(num, v);
	return cJSON_CreateString(num);
}

/* The last, min and max values of each metric of a run with points, as runs.csv prints them
 * (an array of three texts), keyed by its exact name; *names gains the names, *mtime the newest
 * point. min and max come with the summary the series keeps (README "runs.csv"). */
static cJSON *last_values(keyset *names, int64_t *mtime, al_tree *t, const al_doc *run)
{
	cJSON *o = cJSON_CreateObject();
	char **ids = NULL;
	al_series_summary *sums = NULL;
	size_t nids = 0, k;

	al_store_cache_prefetch(t->series_store, run->path, "metrics");
	/* one listing of the run's metrics: 10,000 runs cost 10,000 queries, not one per metric */
	if (!o || al_series_summaries(&ids, &sums, &nids, t->series, run->path) != 0)
		return o;
	for (k = 0; k < nids; k++) {
		char *name = al_id_decode(ids[k]);
		char num[32];
		if (name && sums[k].count) {
			cJSON *cells = cJSON_CreateArray();
			keyset_add(names, name);
			mtime_raise(mtime, sums[k].update_us);
			al_double_format(num, sums[k].last);   /* nan, inf as Python prints them */
			cJSON_AddItemToArray(cells, cJSON_CreateString(num));
			cJSON_AddItemToArray(cells, bound_text(sums[k].min));
			cJSON_AddItemToArray(cells, bound_text(sums[k].max));
			cJSON_AddItemToObject(o, name, cells);
		}
		free(name);
	}
	al_strings_free(ids, nids);
	free(sums);
	return o;
}

static void write_header(al_buf *b, const keyset *params, const keyset *metrics)
{
	size_t k;
	al_buf_puts(b, "id,status,fold,model,created,ended,git_commit,duration,tags");
	for (k = 0; k < params->n; k++) {
		char *h = xasprintf("param.%s", params->keys[k]);
		al_buf_puts(b, ",");
		csv_field(b, h ? h : "");
		free(h);
	}
	for (k = 0; k < metrics->n; k++) {
		static const char *const sfx[] = {"", ".min", ".max"};
		size_t j;
		for (j = 0; j < 3; j++) {
			char *h = xasprintf("metric.%s%s", metrics->keys[k], sfx[j]);
			al_buf_puts(b, ",");
			csv_field(b, h ? h : "");
			free(h);
		}
	}
	al_buf_puts(b, "\r\n");
}

/* A value as a cell: empty when absent or null. */
static void value_cell(al_buf *b, al_buf *cell, const cJSON *v)
{
	al_buf_puts(b, ",");
	al_buf_clear(cell);
	if (v && !cJSON_GetObjectItemCaseSensitive(v, "nullValue"))
		value_text(cell, v);
	csv_field(b, cell->ptr ? cell->ptr : "");
}

/* Seconds from the run's start to its end; empty while it runs, so that the file changes only
 * when what it is made of changes (README "runs.csv"). */
static void append_duration(al_buf *b, const cJSON *f)
{
	int64_t start, end;
	char num[32];
	al_buf_puts(b, ",");
	if (al_fields_get_time(&end, f, "ended") != 0 ||
	    (al_fields_get_time(&start, f, "started") != 0 && al_fields_get_time(&start, f, "created") != 0))
		return;
	al_double_format(num, (double)(end > start ? end - start : 0) / 1e6);
	al_buf_puts(b, num);
}

/* The run's tags by name, ';'-separated (README "tags"). */
static void append_tags(al_buf *b, al_buf *cell, const cJSON *f)
{
	keyset k = {0};
	const cJSON *it, *tags = al_value_get_map(al_fields_get(f, "tags"));
	size_t i;
	al_buf_puts(b, ",");
	if (!tags)
		return;
	cJSON_ArrayForEach(it, tags)
		keyset_add(&k, it->string);
	if (k.n)
		qsort(k.keys, k.n, sizeof(char *), cmp_str);
	al_buf_clear(cell);
	for (i = 0; i < k.n; i++)
		al_buf_printf(cell, "%s%s", i ? ";" : "", k.keys[i]);
	csv_field(b, cell->ptr ? cell->ptr : "");
	al_strings_free(k.keys, k.n);
}

static void write_row(al_buf *b, int64_t *mtime, const al_doc *run, const cJSON *last,
	const keyset *params, const keyset *metrics)
{
	static const char *const texts[] = {"fold", "model"};
	const cJSON *f = run->fields;
	const cJSON *hp = al_value_get_map(al_fields_get(f, "hyper_params"));
	const cJSON *git = al_value_get_map(al_fields_get(f, "git"));
	al_buf cell = AL_BUF_INIT;
	const char *status;
	int64_t us, crashed = 0;
	char tb[48];
	size_t k;

	csv_field(b, al_doc_id(run->path));
	/* crashed when its wrapper's heartbeat stopped (README "Crashed runs") */
	status = run_status_shown(&crashed, run);
	mtime_raise(mtime, crashed);
	al_buf_puts(b, ",");
	csv_field(b, status ? status : "");
	for (k = 0; k < 2; k++)
		value_cell(b, &cell, al_fields_get(f, texts[k]));
	al_buf_printf(b, ",%s", al_fields_get_time(&us, f, "created") == 0 ? al_time_format(tb, us, 6) : "");
	al_buf_printf(b, ",%s", al_fields_get_time(&us, f, "ended") == 0 ? al_time_format(tb, us, 6) : "");
	al_buf_printf(b, ",%s", git && al_fields_get_string(git, "commit") ? al_fields_get_string(git, "commit") : "");
	append_duration(b, f);
	append_tags(b, &cell, f);
	for (k = 0; k < params->n; k++)
		value_cell(b, &cell, hp ? al_fields_get(hp, params->keys[k]) : NULL);
	for (k = 0; k < metrics->n; k++) {
		const cJSON *cells = cJSON_GetObjectItemCaseSensitive(last, metrics->keys[k]);
		int j;
		for (j = 0; j < 3; j++) {
			const char *v = cJSON_GetStringValue(cJSON_GetArrayItem(cells, j));
			al_buf_printf(b, ",%s", v ? v : "");
		}
	}
	al_buf_puts(b, "\r\n");
	al_buf_dispose(&cell);
}

/* One row per run in id order, a column per param and three per metric (last, min, max) any run
 * has, sorted by name. */
static int render_runs_csv(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc_list *runs = NULL;
	char *coll = xasprintf("%s/runs", n->exp_doc);
	keyset pk = {0}, mk = {0};
	cJSON **last = NULL;   /* per run: metric name → its last value as text */
	size_t i;
	int rc;

	if ((rc = al_store_list(&runs, t->store, coll, NULL, NULL)))
		goto cleanup;
	if (runs->count)
		qsort(runs->docs, runs->count, sizeof(al_doc *), cmp_run_ids);
	if (!(last = calloc(runs->count + 1, sizeof(cJSON *)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < runs->count; i++) {
		const cJSON *hp = al_value_get_map(al_fields_get(runs->docs[i]->fields, "hyper_params")), *it;
		if (hp)
			cJSON_ArrayForEach(it, hp)
				keyset_add(&pk, it->string);
		mtime_raise(mtime, runs->docs[i]->update_us);
		last[i] = last_values(&mk, mtime, t, runs->docs[i]);
	}
	if (pk.n)
		qsort(pk.keys, pk.n, sizeof(char *), cmp_str);
	if (mk.n)
		qsort(mk.keys, mk.n, sizeof(char *), cmp_str);
	write_header(b, &pk, &mk);
	for (i = 0; i < runs->count; i++)
		write_row(b, mtime, runs->docs[i], last[i], &pk, &mk);
cleanup:
	for (i = 0; last && runs && i < runs->count; i++)
		cJSON_Delete(last[i]);
	free(last);
	al_strings_free(pk.keys, pk.n);
	al_strings_free(mk.keys, mk.n);
	al_doc_list_free(runs);
	free(coll);
	return rc;
}

static int runs_csv_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	int64_t mt = 0;
	int rc;
	if ((rc = doc_exists(t, n->exp_doc)) == 0 && (rc = render_runs_csv(b, &mt, t, n)) == 0)
		mtime_raise(mtime, mt);
	return rc;
}

const al_kind kind_runs_csv = {
	.name = "runs.csv", .pattern = EXPERIMENT_P "/runs.csv", .owner = O_EXPERIMENT, .mode = 0444,
	.render = runs_csv_render,
};
