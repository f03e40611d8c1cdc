/* aletheia: an experiment's best/min/<metric> and best/max/<metric>: links to the run with the
 * lowest or highest last value of each metric (README "best"). Also the experiment indexes that
 * best/ and tagged/ share (exp_index) and their links' attributes. */
#include <math.h>
#include "internal.h"

int exp_index(cJSON **out, int64_t *mtime, al_tree *t, const node *n, const char *folder)
{
	char *path = xasprintf("/%s/experiments/%s/%s", n->project, n->experiment, folder);
	rendered *r = NULL;
	uint64_t size;
	node fn;
	int rc;

	*out = NULL;
	memset(&fn, 0, sizeof(fn));
	if (!path) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	/* The folder row's render is the index, kept by the render cache while nothing it is made of
	 * changed (and, on a remote store, for the attribute TTL). */
	if ((rc = node_parse(&fn, path)) || (rc = render_cached(&r, &size, mtime, t, &fn, path)))
		goto cleanup;
	if (!(*out = cJSON_ParseWithLength(r->data, r->len)))
		rc = al_error_set(AL_EIO, "%s: the index is not JSON", path);
cleanup:
	rendered_put(r);
	node_free(&fn);
	free(path);
	return rc;
}

void link_attr(al_attr *out, size_t len, int64_t mtime)
{
	memset(out, 0, sizeof(*out));
	out->type = AL_NODE_LINK;
	out->mode = 0777;   /* a link's own mode means nothing */
	out->size = len;
	out->mtime_us = out->ctime_us = mtime;
	out->immutable = 1;
}

static int by_length(const void *a, const void *b)
{
	size_t x = strlen(*(char *const *)a), y = strlen(*(char *const *)b);
	return x < y ? -1 : x > y;
}

/* Runs are independent, so one may log `loss` and another `loss/a`: a name both a link and a
 * folder. As in plots/ (`loss.svg` beside `plots/loss/a.svg`) both are shown: the link keeps
 * its name and the metrics below it are shown beside it, their '/' after that name written
 * %2F as in the metric's document id (`best/min/loss%2Fa`; README "best"). Keys of o renamed in
 * place of each other; shortest first, so that a prefix's shown name is known before its own. */
static int best_unclash(cJSON **o)
{
	cJSON *shown = cJSON_CreateObject(), *out = cJSON_CreateObject(), *it;
	char **names = NULL;
	size_t n = 0, i;
	int rc = 0;

	if (!shown || !out || !(names = calloc((size_t)cJSON_GetArraySize(*o) + 1, sizeof(*names)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	cJSON_ArrayForEach(it, *o)
		names[n++] = it->string;
	qsort(names, n, sizeof(*names), by_length);
	for (i = 0; i < n; i++) {
		const char *m = names[i], *name = m;
		char *mine = NULL;
		size_t j;
		for (j = strlen(m); j-- > 0;)
			if (m[j] == '/') {
				char *p = strndup(m, j);
				const char *ps = p ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(shown, p)) : NULL;
				free(p);
				if (ps) {   /* the longest prefix that is a metric itself */
					name = mine = xasprintf("%s%%2F%s", ps, m + j + 1);
					break;
				}
			}
		if (!name || !cJSON_AddStringToObject(shown, m, name)) {
			free(mine);
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto cleanup;
		}
		free(mine);
	}
	for (i = 0; i < n; i++) {
		const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(shown, names[i]));
		cJSON_AddItemToObject(out, name, cJSON_DetachItemFromObjectCaseSensitive(*o, names[i]));
	}
	cJSON_Delete(*o);
	*o = out;
	out = NULL;
cleanup:
	free(names);
	cJSON_Delete(shown);
	cJSON_Delete(out);
	return rc;
}

/* The index behind best/: {metric: {"min": run, "max": run}} over the runs' last values in
 * runs.csv's order, so that a tie goes to the lowest id; NaN last values and runs without the
 * metric are skipped, ±inf are values. One listing of each run's metrics (their summaries). */
static int best_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc_list *runs = NULL;
	al_series_stored *stored = NULL;
	char *coll = xasprintf("%s/runs", n->exp_doc);
	cJSON *o = cJSON_CreateObject(), *vals = cJSON_CreateObject();
	size_t i, k;
	int rc;

	/* the runs' ids only (no document read), then every run's summaries in one query */
	if (!coll) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	if (al_series_stored_start(&stored, t->series, n->exp_doc) != 0)
		al_error_clear();   /* then a query per run */
	if ((rc = al_store_list_meta(&runs, t->store, coll)))
		goto cleanup;
	if (runs->count)
		qsort(runs->docs, runs->count, sizeof(al_doc *), cmp_run_ids);
	for (i = 0; i < runs->count; i++) {
		const char *id = al_doc_id(runs->docs[i]->path);
		char **ids = NULL;
		al_series_summary *sums = NULL;
		size_t nids = 0;
		if ((rc = run_summaries(&ids, &sums, &nids, t, stored, runs->docs[i]->path)))
			goto cleanup;
		for (k = 0; k < nids; k++) {
			char *name = al_id_decode(ids[k]);
			cJSON *e, *v;
			double last = sums[k].last;
			if (!name || !sums[k].count || isnan(last)) {
				free(name);
				continue;
			}
			mtime_raise(mtime, sums[k].update_us);
			if (!(e = cJSON_GetObjectItemCaseSensitive(o, name))) {
				e = cJSON_AddObjectToObject(o, name);
				cJSON_AddStringToObject(e, "min", id);
				cJSON_AddStringToObject(e, "max", id);
				/* the best values so far, kept beside the index (set directly: they may be
				 * infinite, and are never written out) */
				v = cJSON_AddArrayToObject(vals, name);
				cJSON_AddItemToArray(v, cJSON_CreateNumber(0));
				cJSON_AddItemToArray(v, cJSON_CreateNumber(0));
				cJSON_GetArrayItem(v, 0)->valuedouble = last;
				cJSON_GetArrayItem(v, 1)->valuedouble = last;
			} else {
				v = cJSON_GetObjectItemCaseSensitive(vals, name);
				if (last < cJSON_GetArrayItem(v, 0)->valuedouble) {
					cJSON_GetArrayItem(v, 0)->valuedouble = last;
					cJSON_ReplaceItemInObjectCaseSensitive(e, "min", cJSON_CreateString(id));
				}
				if (last > cJSON_GetArrayItem(v, 1)->valuedouble) {
					cJSON_GetArrayItem(v, 1)->valuedouble = last;
					cJSON_ReplaceItemInObjectCaseSensitive(e, "max", cJSON_CreateString(id));
				}
			}
			free(name);
		}
		al_strings_free(ids, nids);
		free(sums);
	}
	if ((rc = best_unclash(&o)) == 0)
		rc = json_out(b, o, 0);
cleanup:
	al_series_stored_free(stored);
	cJSON_Delete(o);
	cJSON_Delete(vals);
	al_doc_list_free(runs);
	free(coll);
	return rc;
}

static const char *const best_entries[] = {"min", "max", NULL};

const al_kind kind_best = {
	.name = "best/", .pattern = EXPERIMENT_P "/best", .flags = K_DIR, .owner = O_EXPERIMENT,
	.entries = best_entries, .render = best_render,
};

static int is_bound(const char *name)
{
	return strcmp(name, "min") == 0 || strcmp(name, "max") == 0;
}

static int best_dir_getattr(al_attr *out, al_tree *t, const node *n, const al_doc *exp,
	const char *path, unsigned mode)
{
	(void)t;
	(void)mode;
	if (!is_bound(n->name))
		return al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
	attr_dir(out, exp->update_us);
	return 0;
}

/* The metric names (or the first segment of names with '/') under best/<bound>/<rest>. */
static int best_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	cJSON *idx = NULL;
	const cJSON *it;
	int rc;
	(void)path;
	if ((rc = exp_index(&idx, NULL, t, n, "best")) == 0)
		cJSON_ArrayForEach(it, idx)
			child_of(k, n->rest, it->string);
	cJSON_Delete(idx);
	return rc;
}

const al_kind kind_best_dir = {
	.name = "best/<min|max>/", .pattern = EXPERIMENT_P "/best/{name}", .flags = K_DIR, .owner = O_EXPERIMENT,
	.getattr = best_dir_getattr, .list = best_list,
};

/* The run best/<bound>/<metric> points at; NULL (*dir set when it is a folder of names with '/')
 * when there is none. */
static const char *best_run(int *dir, const cJSON *idx, const node *n)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(idx, n->rest), *it;
	size_t len = strlen(n->rest);
	*dir = 0;
	if (e)
		return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, n->name));
	cJSON_ArrayForEach(it, idx)
		if (strncmp(it->string, n->rest, len) == 0 && it->string[len] == '/')
			*dir = 1;
	return NULL;
}

/* Relative, from the link's folder up to the experiment: "../../runs/7" for best/min/loss,
 * one more "../" per '/' in the metric's name. */
static char *best_target(const node *n, const char *run)
{
	al_buf b = AL_BUF_INIT;
	const char *p;
	al_buf_puts(&b, "../../");
	for (p = n->rest; *p; p++)
		if (*p == '/')
			al_buf_puts(&b, "../");
	al_buf_printf(&b, "runs/%s", run);
	return al_buf_detach(&b, NULL);
}

static int best_entry_getattr(al_attr *out, al_tree *t, const node *n, const al_doc *exp,
	const char *path, unsigned mode)
{
	cJSON *idx = NULL;
	int64_t mtime = exp->update_us;
	const char *run;
	int rc, dir;
	(void)mode;
	if (!is_bound(n->name) || check_rest_names(n->rest))
		return al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
	if ((rc = exp_index(&idx, &mtime, t, n, "best")))
		return rc;
	if ((run = best_run(&dir, idx, n))) {
		char *target = best_target(n, run);
		link_attr(out, target ? strlen(target) : 0, mtime);
		free(target);
	} else if (dir)
		attr_dir(out, mtime);
	else
		rc = al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
	cJSON_Delete(idx);
	return rc;
}

static int best_readlink(char **out, al_tree *t, const node *n)
{
	cJSON *idx = NULL;
	const char *run;
	int rc, dir;
	if (!is_bound(n->name))
		return al_error_set(AL_ENOTFOUND, "no such entry: best/%s", n->name);
	if ((rc = exp_index(&idx, NULL, t, n, "best")))
		return rc;
	if (!(run = best_run(&dir, idx, n)))
		rc = dir ? al_error_set(AL_EINVAL, "best/%s/%s is a folder", n->name, n->rest)
			 : al_error_set(AL_ENOTFOUND, "no run has metric %s", n->rest);
	else if (!(*out = best_target(n, run)))
		rc = al_error_set(AL_ENOMEM, "out of memory");
	cJSON_Delete(idx);
	return rc;
}

const al_kind kind_best_link = {
	.name = "best link", .pattern = EXPERIMENT_P "/best/{name}/{rest}", .owner = O_EXPERIMENT,
	.mode = 0777, .getattr = best_entry_getattr, .list = best_list, .readlink = best_readlink,
};
