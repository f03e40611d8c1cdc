/* aletheia: run.json, a run's summary for humans and programs (README "run.json"): its document,
 * its metrics' summaries and its artifacts' count and bytes. */
#include <math.h>
#include "core/store/store_cache.h"
#include "internal.h"

static int artifacts_summary(uint64_t *count, uint64_t *bytes, int64_t *mtime, al_tree *t,
	const char *run_doc)
{
	al_doc_list *l = NULL;
	char *coll = xasprintf("%s/artifacts", run_doc);
	size_t i;
	int rc;
	*count = *bytes = 0;
	al_store_cache_prefetch(t->series_store, run_doc, "artifacts");   /* see al_tree_readdir */
	rc = al_store_list(&l, t->store, coll, NULL, NULL);
	for (i = 0; rc == 0 && i < l->count; i++) {
		int64_t sz;
		const char *type = al_fields_get_string(l->docs[i]->fields, "type");
		if (type && (strcmp(type, "dir") == 0 || strcmp(type, "link") == 0))
			continue;   /* files only */
		(*count)++;
		if (al_fields_get_int(&sz, l->docs[i]->fields, "size") == 0)
			*bytes += (uint64_t)sz;
		if (l->docs[i]->update_us > *mtime)
			*mtime = l->docs[i]->update_us;
	}
	al_doc_list_free(l);
	free(coll);
	return rc;
}

static int render_run_json(al_buf *b, int64_t *mtime, al_tree *t, const node *n, const al_doc *run)
{
	cJSON *o = cJSON_CreateObject(), *git, *metrics, *datasets, *arts, *params;
	const cJSON *f = run->fields, *ds, *it;
	char **ids = NULL;
	al_series_summary *sums = NULL;
	size_t nids = 0, i;
	uint64_t acount, abytes;
	int rc;

	cJSON_AddStringToObject(o, "id", n->run);
	cJSON_AddStringToObject(o, "project", n->project);
	cJSON_AddStringToObject(o, "experiment", n->experiment);
	{
		/* crashed when its wrapper's heartbeat stopped (README "Crashed runs") */
		int64_t crashed = 0;
		const char *st = run_status_shown(&crashed, run);
		cJSON_AddItemToObject(o, "status", st ? cJSON_CreateString(st) : cJSON_CreateNull());
		mtime_raise(mtime, crashed);
	}
	time_json(o, "created", f, "created");
	time_json(o, "started", f, "started");
	time_json(o, "ended", f, "ended");
	field_json(o, "fold", f, "fold");
	field_json(o, "model", f, "model");
	field_json(o, "description", f, "description");
	field_json(o, "host", f, "host");
	field_json(o, "user", f, "user");
	field_json(o, "command", f, "command");
	field_json(o, "cwd", f, "cwd");
	field_json(o, "exit_code", f, "exit_code");
	{
		/* times the run was set running again after it had ended (README "Run lifecycle") */
		const cJSON *res = al_value_get_array(al_fields_get(f, "resumed")), *it2;
		cJSON *list = cJSON_AddArrayToObject(o, "resumed");
		cJSON_ArrayForEach(it2, res) {
			int64_t us;
			char tb[48];
			if (al_value_get_time(&us, it2) == 0)
				cJSON_AddItemToArray(list, cJSON_CreateString(al_time_format(tb, us, 6)));
		}
	}
	git = al_fields_get(f, "git") ? al_value_to_json(al_fields_get(f, "git")) : NULL;
	cJSON_AddItemToObject(o, "git", git ? git : cJSON_CreateNull());
	params = cJSON_CreateObject();
	if ((it = al_value_get_map(al_fields_get(f, "hyper_params")))) {
		const cJSON *p;
		cJSON_ArrayForEach(p, it)
			cJSON_AddItemToObject(params, p->string, al_value_to_json(p));
	}
	cJSON_AddItemToObject(o, "params", params);
	metrics = cJSON_AddObjectToObject(o, "metrics");
	al_store_cache_prefetch(t->series_store, n->run_doc, "metrics");
	if ((rc = al_series_summaries(&ids, &sums, &nids, t->series, n->run_doc)))
		goto cleanup;
	for (i = 0; i < nids; i++) {
		al_series_summary s = sums[i];
		char *name = al_id_decode(ids[i]);
		if (name) {
			cJSON *m = cJSON_AddObjectToObject(metrics, name);
			if (s.update_us > *mtime)
				*mtime = s.update_us;
			/* NaN and infinities print as Python's json writes them (README "run.json");
			 * a metric created empty has no last value or step yet */
			cJSON_AddItemToObject(m, "last", s.count ? double_json(s.last) : cJSON_CreateNull());
			cJSON_AddItemToObject(m, "step", s.count ? int_json(s.step) : cJSON_CreateNull());
			cJSON_AddItemToObject(m, "count", int_json((int64_t)s.count));
			/* min/max are NaN only when no point had a comparable value */
			cJSON_AddItemToObject(m, "min", isnan(s.min) ? cJSON_CreateNull() : double_json(s.min));
			cJSON_AddItemToObject(m, "max", isnan(s.max) ? cJSON_CreateNull() : double_json(s.max));
		}
		free(name);
	}
	{
		/* tag → the time it was added, by name (README "tags") */
		cJSON *tags = cJSON_AddObjectToObject(o, "tags");
		const cJSON *map = al_value_get_map(al_fields_get(f, "tags")), *tg;
		keyset names = {0};
		cJSON_ArrayForEach(tg, map)
			keyset_add(&names, tg->string);
		keyset_sort(&names);
		for (i = 0; i < names.n; i++) {
			int64_t us;
			char tb[48];
			if (al_value_get_time(&us, al_fields_get(map, names.keys[i])) == 0)
				cJSON_AddStringToObject(tags, names.keys[i], al_time_format(tb, us, 6));
		}
		keyset_free(&names);
	}
	datasets = cJSON_AddArrayToObject(o, "datasets");
	if ((ds = al_value_get_map(al_fields_get(f, "datasets")))) {
		cJSON_ArrayForEach(it, ds) {
			const cJSON *m = al_value_get_map(it);
			cJSON *e = cJSON_CreateObject();
			cJSON_AddStringToObject(e, "name", it->string);
			field_json(e, "dataset", m, "dataset");
			field_json(e, "version", m, "version");
			cJSON_AddItemToArray(datasets, e);
		}
	}
	if ((rc = artifacts_summary(&acount, &abytes, mtime, t, n->run_doc)))
		goto cleanup;
	arts = cJSON_AddObjectToObject(o, "artifacts");
	cJSON_AddItemToObject(arts, "count", int_json((int64_t)acount));
	cJSON_AddItemToObject(arts, "bytes", int_json((int64_t)abytes));
	/* `aletheia run`'s machine spec and peak and mean use (README "System metrics") */
	if ((it = al_value_get_map(al_fields_get(f, "system")))) {
		cJSON *sys = cJSON_AddObjectToObject(o, "system");
		const cJSON *p;
		cJSON_ArrayForEach(p, it)
			cJSON_AddItemToObject(sys, p->string, al_value_to_json(p));
	} else {
		cJSON_AddNullToObject(o, "system");
	}
	/* the last beat's time while there is one: a status written clears it (README "Crashed runs") */
	{
		const char *beat = al_fields_get_string(f, "heartbeat");
		if (beat && *beat)
			time_json(o, "heartbeat", f, "heartbeat_updated");
		else
			cJSON_AddNullToObject(o, "heartbeat");
	}
	rc = json_out(b, o, 1);
cleanup:
	al_strings_free(ids, nids);
	free(sums);
	cJSON_Delete(o);
	return rc;
}

static int run_json_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc *d = NULL;
	int64_t mt = 0;
	int rc;
	if ((rc = get_doc(&d, t, n->run_doc)) == 0) {
		rc = render_run_json(b, &mt, t, n, d);
		mtime_raise(mtime, mt);
		mtime_raise(mtime, d->update_us);
	}
	al_doc_free(d);
	return rc;
}

const al_kind kind_run_json = {
	.name = "run.json", .pattern = RUN_P "/run.json", .owner = O_RUN, .mode = 0444,
	.render = run_json_render,
};
