/* aletheia: a run's params/ folder and params.json: hyperparameters, one typed value per file or
 * many in one JSON object (README "params"). */
#include "internal.h"

static int key_prefix_exists(const cJSON *map, const char *prefix)
{
	const cJSON *it;
	size_t n = strlen(prefix);
	if (!map)
		return 0;
	cJSON_ArrayForEach(it, map)
		if (strncmp(it->string, prefix, n) == 0 && it->string[n] == '/')
			return 1;
	return 0;
}

/* A key that would be a file where another key needs a folder, or the reverse (params/opt and
 * params/opt/beta1): the tree could show only one of them, so the second is refused. */
static int key_conflict(const cJSON *map, const char *key)
{
	const cJSON *it;
	size_t n = strlen(key);
	cJSON_ArrayForEach(it, map) {
		size_t m = strlen(it->string);
		if (m < n && strncmp(key, it->string, m) == 0 && key[m] == '/')
			return al_error_set(AL_ENOTDIR, "param %s is a value, so %s cannot be under it",
				it->string, key);
		if (m > n && strncmp(key, it->string, n) == 0 && it->string[n] == '/')
			return al_error_set(AL_EISDIR, "params/%s is a folder (it holds %s)", key, it->string);
	}
	return 0;
}

/* Merges typed values into the run's hyper_params map: the checks (a key both a value and a
 * folder, the run's size) against the run as this mount knows it, the write of those keys alone. */
static int merge_params(al_tree *t, const node *n, cJSON *values /* object of typed, taken */)
{
	al_doc *d = NULL;
	cJSON *map = NULL, *fields = NULL;
	const cJSON *it;
	int rc;

	pthread_mutex_lock(&t->lock);
	if ((rc = get_doc(&d, t, n->run_doc)))
		goto cleanup;
	if (!run_is_running(d)) {
		rc = al_error_set(AL_EROFS, "run %s is not running: params are read-only", n->run);
		goto cleanup;
	}
	map = cJSON_Duplicate(al_value_get_map(al_fields_get(d->fields, "hyper_params")), 1);
	if (!map)
		map = cJSON_CreateObject();
	cJSON_ArrayForEach(it, values) {
		if (!cJSON_GetObjectItemCaseSensitive(map, it->string) && (rc = key_conflict(map, it->string)))
			goto cleanup;
		al_fields_set(map, it->string, cJSON_Duplicate(it, 1));
	}
	fields = cJSON_CreateObject();
	al_fields_set(fields, "hyper_params", al_value_map(map));
	map = NULL;
	{
		/* with the times of change it will keep (common.c commit_keys) */
		const cJSON *old = al_value_get_map(al_fields_get(d->fields, "param_times"));
		cJSON *times = old ? cJSON_Duplicate(old, 1) : cJSON_CreateObject();
		cJSON_ArrayForEach(it, values)
			al_fields_set(times, it->string, al_value_time(al_now_us()));
		al_fields_set(fields, "param_times", al_value_map(times));
	}
	/* The whole document must stay within Firestore's limits, not only the new keys. */
	if ((rc = run_fits(n, d, fields, RUN_HEADROOM)))
		goto cleanup;
	rc = commit_keys(t, n->run_doc, "hyper_params", "param_times", values, NULL, 0, AL_PRE_EXISTS);
cleanup:
	pthread_mutex_unlock(&t->lock);
	cJSON_Delete(map);
	cJSON_Delete(values);
	cJSON_Delete(fields);
	al_doc_free(d);
	return rc;
}

static int render_params_json(al_buf *b, const al_doc *run)
{
	const cJSON *hp = al_value_get_map(al_fields_get(run->fields, "hyper_params"));
	cJSON *o = cJSON_CreateObject(), *it;
	int rc;
	if (hp)
		cJSON_ArrayForEach(it, hp)
			cJSON_AddItemToObject(o, it->string, al_value_to_json(it));
	rc = json_out(b, o, 1);
	cJSON_Delete(o);
	return rc;
}

/* params/ and its folders: the keys of the run's hyper_params map, '/' making folders. */
static int params_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	(void)path;
	return run_map_list(k, t, n, "hyper_params", 1);
}

const al_kind kind_params = {
	.name = "params/", .pattern = RUN_P "/params", .flags = K_DIR | K_RUNNING | K_SCRATCH | K_MEMORY,
	.owner = O_RUN, .list = params_list,
};

/* A param's file, a folder of params (opt/ for opt/beta1), or a param being written. */
static int param_getattr(al_attr *out, al_tree *t, const node *n, const al_doc *run,
	const char *path, unsigned mode)
{
	const cJSON *hp = al_value_get_map(al_fields_get(run->fields, "hyper_params"));
	if (hp && al_fields_get(hp, n->rest))
		return generated_attr(out, t, n, path, mode, 0);
	if (key_prefix_exists(hp, n->rest) || has_vdir(t, path))
		attr_dir(out, run->update_us);
	else if (!writer_attr(out, t, path, mode))
		return al_error_set(AL_ENOTFOUND, "no param %s", n->rest);
	return 0;
}

static int param_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc *d = NULL;
	const cJSON *hp, *v;
	int rc;
	if ((rc = get_doc(&d, t, n->run_doc)))
		return rc;
	hp = al_value_get_map(al_fields_get(d->fields, "hyper_params"));
	v = hp ? al_fields_get(hp, n->rest) : NULL;
	if (!v)
		rc = al_error_set(AL_ENOTFOUND, "no param %s", n->rest);
	else if ((rc = value_text(b, v)) == 0)
		rc = al_buf_puts(b, "\n");
	mtime_raise(mtime, value_time(d, "param_times", n->rest));
	al_doc_free(d);
	return rc;
}

static int param_open(al_file *f, int flags, const char *path)
{
	al_attr a;
	if (al_tree_getattr(&a, f->t, path) == 0 && a.type == AL_NODE_DIR)
		return al_error_set(AL_EISDIR, "%s is a folder", path);
	return open_text(f, flags, path);
}

static int param_create(al_tree *t, const node *n)
{
	(void)t;
	return check_rest_names(n->rest);
}

static int param_commit(al_file *f)
{
	cJSON *v = NULL, *fields;
	int rc;
	if ((rc = param_from_text(&v, f->text.ptr ? f->text.ptr : "", f->text.len)))
		return rc;
	fields = cJSON_CreateObject();
	al_fields_set(fields, f->n.rest, v);
	return merge_params(f->t, &f->n, fields);
}

static int param_unlink(al_tree *t, const node *n, const char *path)
{
	return map_key_unlink(t, n, "hyper_params", n->rest, path);
}

const al_kind kind_param = {
	.name = "param", .pattern = RUN_P "/params/{rest}", .flags = K_RUNNING | K_SCRATCH | K_MEMORY,
	.owner = O_RUN, .mode = 0644, .getattr = param_getattr, .list = params_list,
	.render = param_render, .open = param_open, .create = param_create, .commit = param_commit,
	.mkdir = vdir_mkdir, .unlink = param_unlink,
};

static int params_json_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc *d = NULL;
	int rc;
	if ((rc = get_doc(&d, t, n->run_doc)) == 0) {
		const cJSON *times = al_value_get_map(al_fields_get(d->fields, "param_times")), *it;
		int64_t us;
		rc = render_params_json(b, d);
		/* the newest param's time; with no param yet, the run's creation */
		if (!times)
			mtime_raise(mtime, d->update_us);
		else if (!cJSON_GetArraySize(times))
			mtime_raise(mtime, value_time(d, NULL, "created"));
		cJSON_ArrayForEach(it, times)
			if (al_value_get_time(&us, it) == 0)
				mtime_raise(mtime, us);
	}
	al_doc_free(d);
	return rc;
}

/* A JSON object whose keys merge into params (appends too: README "params"). */
static int params_json_commit(al_file *f)
{
	cJSON *obj = NULL, *it;
	int rc, appended;
	if ((rc = written_object(&obj, &appended, f, "params.json")))
		return rc;
	cJSON_ArrayForEach(it, obj)
		if (check_rest_names(it->string)) {
			rc = al_error_set(AL_EINVAL, "invalid param key \"%.60s\": keys are names joined "
				"by single '/'", it->string);
			cJSON_Delete(obj);
			return rc;
		}
	return merge_params(f->t, &f->n, obj);   /* takes obj */
}

const al_kind kind_params_json = {
	.name = "params.json", .pattern = RUN_P "/params.json", .flags = K_RUNNING, .owner = O_RUN,
	.mode = 0644, .render = params_json_render, .commit = params_json_commit,
};
