/* aletheia: an experiment's runs.csv, one row per run with its params and last metric values, for
 * pandas and spreadsheets (README "runs.csv"). */
#include <math.h>
#include "aletheia/store_cache.h"
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
static int cmp_run_ids(const void *a, const void *b)
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

static int render_runs_csv(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc_list *runs = NULL;
	char *coll = xasprintf("%s/runs", n->exp_doc);
	keyset pk = {0}, mk = {0};
	cJSON **metrics = NULL;   /* per run: name → last value (plain JSON numbers) */
	size_t i, k;
	int rc;

	if ((rc = al_store_list(&runs, t->store, coll, NULL, NULL)))
		goto cleanup;
	if (runs->count)
		qsort(runs->docs, runs->count, sizeof(al_doc *), cmp_run_ids);
	if (!(metrics = calloc(runs->count + 1, sizeof(cJSON *)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < runs->count; i++) {
		const cJSON *hp = al_value_get_map(al_fields_get(runs->docs[i]->fields, "hyper_params")), *it;
		char **ids = NULL;
		size_t nids = 0;
		if (hp)
			cJSON_ArrayForEach(it, hp)
				keyset_add(&pk, it->string);
		metrics[i] = cJSON_CreateObject();
		if (runs->docs[i]->update_us > *mtime)
			*mtime = runs->docs[i]->update_us;
		al_store_cache_prefetch(t->series_store, runs->docs[i]->path, "metrics");
		if (al_series_ids(&ids, &nids, t->series, runs->docs[i]->path) == 0) {
			for (k = 0; k < nids; k++) {
				al_series_summary s;
				char *doc = xasprintf("%s/metrics/%s", runs->docs[i]->path, ids[k]);
				char *name = al_id_decode(ids[k]);
				if (doc && name && al_series_summary_get(&s, t->series, doc) == 0 && s.count) {
					keyset_add(&mk, name);
					if (s.update_us > *mtime)
						*mtime = s.update_us;
					cJSON_AddNumberToObject(metrics[i], name, s.last);
					if (isnan(s.last) || isinf(s.last)) {
						char num[32];
						al_double_format(num, s.last);
						cJSON_ReplaceItemInObject(metrics[i], name, cJSON_CreateString(num));
					}
				}
				free(doc);
				free(name);
			}
			al_strings_free(ids, nids);
		}
	}
	if (pk.n)
		qsort(pk.keys, pk.n, sizeof(char *), cmp_str);
	if (mk.n)
		qsort(mk.keys, mk.n, sizeof(char *), cmp_str);
	al_buf_puts(b, "id,status,fold,model,created,ended,git_commit");
	for (k = 0; k < pk.n; k++) {
		char *h = xasprintf("param.%s", pk.keys[k]);
		al_buf_puts(b, ",");
		csv_field(b, h);
		free(h);
	}
	for (k = 0; k < mk.n; k++) {
		char *h = xasprintf("metric.%s", mk.keys[k]);
		al_buf_puts(b, ",");
		csv_field(b, h);
		free(h);
	}
	al_buf_puts(b, "\r\n");
	for (i = 0; i < runs->count; i++) {
		const cJSON *f = runs->docs[i]->fields, *v;
		const cJSON *hp = al_value_get_map(al_fields_get(f, "hyper_params"));
		const cJSON *git = al_value_get_map(al_fields_get(f, "git"));
		al_buf cell = AL_BUF_INIT;
		int64_t us;
		char tb[48];
		const char *names[] = {"status", "fold", "model"};

		csv_field(b, al_doc_id(runs->docs[i]->path));
		for (k = 0; k < 3; k++) {
			al_buf_puts(b, ",");
			al_buf_clear(&cell);
			if ((v = al_fields_get(f, names[k])) && !cJSON_GetObjectItem(v, "nullValue"))
				value_text(&cell, v);
			csv_field(b, cell.ptr ? cell.ptr : "");
		}
		al_buf_printf(b, ",%s", al_fields_get_time(&us, f, "created") == 0 ? al_time_format(tb, us, 6) : "");
		al_buf_printf(b, ",%s", al_fields_get_time(&us, f, "ended") == 0 ? al_time_format(tb, us, 6) : "");
		al_buf_printf(b, ",%s", git && al_fields_get_string(git, "commit") ? al_fields_get_string(git, "commit") : "");
		for (k = 0; k < pk.n; k++) {
			al_buf_puts(b, ",");
			al_buf_clear(&cell);
			if (hp && (v = al_fields_get(hp, pk.keys[k])))
				value_text(&cell, v);
			csv_field(b, cell.ptr ? cell.ptr : "");
		}
		for (k = 0; k < mk.n; k++) {
			const cJSON *m = cJSON_GetObjectItem(metrics[i], mk.keys[k]);
			char num[32] = "";
			al_buf_puts(b, ",");
			if (m && cJSON_IsNumber(m))
				al_double_format(num, m->valuedouble);
			else if (m && cJSON_IsString(m))
				snprintf(num, sizeof(num), "%s", m->valuestring);
			al_buf_puts(b, num);
		}
		al_buf_puts(b, "\r\n");
		al_buf_dispose(&cell);
	}
cleanup:
	for (i = 0; metrics && runs && i < runs->count; i++)
		cJSON_Delete(metrics[i]);
	free(metrics);
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
