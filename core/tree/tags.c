/* aletheia: tags: a run's tags/ folder, where `touch` adds a label and `rm` removes it (also on an
 * ended run, without --allow-delete), and an experiment's tagged/<tag>/ folders of links to the
 * runs that carry each tag (README "tags"). Stored in the run's map field tags: name → time added. */
#include "internal.h"

/* A tag's name: a file name, and no ';' (runs.csv's tags cell separates them with it) nor control
 * characters (one line per tag wherever they are listed). */
static int check_tag(const char *name)
{
	const unsigned char *p;
	int rc;
	if ((rc = check_name(name)))
		return rc;
	for (p = (const unsigned char *)name; *p; p++)
		if (*p == ';' || *p < 0x20 || *p == 0x7f)
			return al_error_set(AL_EINVAL, "invalid tag \"%s\": no ';' or control characters", name);
	return 0;
}

static const cJSON *tags_of(const al_doc *run)
{
	return al_value_get_map(al_fields_get(run->fields, "tags"));
}

/* ---- runs/<r>/tags/ ---------------------------------------------------------------------- */

static int tags_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	(void)path;
	return run_map_list(k, t, n, "tags", 1);
}

const al_kind kind_run_tags = {
	.name = "tags/", .pattern = RUN_P "/tags", .flags = K_DIR, .owner = O_RUN, .list = tags_list,
};

/* An empty file whose mtime is the time the tag was added. */
static int tag_getattr(al_attr *out, al_tree *t, const node *n, const al_doc *run, const char *path,
	unsigned mode)
{
	(void)t;
	(void)path;
	if (!al_fields_get(tags_of(run), n->name))
		return al_error_set(AL_ENOTFOUND, "no tag %s on run %s", n->name, n->run);
	attr_file(out, mode, 0, value_time(run, "tags", n->name));
	return 0;
}

/* Adds the tag unless the run has it (then AL_EEXISTS with excl): only its key is written, so
 * another mount's tags of the run stay. A label may go on an ended run too. */
static int tag_add(al_tree *t, const node *n, int excl, const char *path)
{
	al_doc *run = NULL;
	cJSON *values = cJSON_CreateObject(), *all = NULL, *patch = cJSON_CreateObject();
	const cJSON *cur;
	int64_t now = al_now_us();
	int rc;

	pthread_mutex_lock(&t->lock);
	if ((rc = get_doc(&run, t, n->run_doc)))
		goto cleanup;
	cur = tags_of(run);
	if (al_fields_get(cur, n->name)) {
		rc = excl ? al_error_set(AL_EEXISTS, "%s exists", path) : 0;
		goto cleanup;
	}
	al_fields_set(values, n->name, al_value_time(now));
	all = cur ? cJSON_Duplicate(cur, 1) : cJSON_CreateObject();
	al_fields_set(all, n->name, al_value_time(now));
	al_fields_set(patch, "tags", al_value_map(all));
	/* A running run keeps room for what ends it (README "params"); an ended one needs none. */
	if ((rc = run_fits(n, run, patch, run_is_running(run) ? RUN_HEADROOM : 0)) == 0)
		rc = commit_keys(t, n->run_doc, "tags", NULL, values, NULL, 0, AL_PRE_EXISTS);
cleanup:
	pthread_mutex_unlock(&t->lock);
	cJSON_Delete(values);
	cJSON_Delete(patch);
	al_doc_free(run);
	return rc;
}

static int tag_exists(al_tree *t, const node *n, const char *path)
{
	al_doc *run = NULL;
	int rc = get_doc(&run, t, n->run_doc);
	if (rc == 0 && !al_fields_get(tags_of(run), n->name))
		rc = al_error_set(AL_ENOTFOUND, "no such file: %s", path);
	al_doc_free(run);
	return rc;
}

/* Opening with O_CREAT (touch, `: >`) adds the tag; the file stays empty. */
static int tag_open(al_file *f, int flags, const char *path)
{
	int rc;
	if ((rc = check_tag(f->n.name)))
		return rc;
	rc = (flags & AL_OPEN_CREATE) ? tag_add(f->t, &f->n, flags & AL_OPEN_EXCL, path)
				      : tag_exists(f->t, &f->n, path);
	if (rc == 0) {
		f->kind = F_TAG;
		changed(f->t);
	}
	return rc;
}

static int tag_unlink(al_tree *t, const node *n, const char *path)
{
	return map_key_unlink(t, n, "tags", n->name, path);
}

/* A tag has no content: writing bytes into it fails with EINVAL (the tag itself stays), emptying
 * it is a no-op (README "tags"). */
static int tag_write(al_file *f, const char *buf, size_t size, uint64_t off)
{
	(void)buf;
	(void)off;
	return size ? al_error_set(AL_EINVAL, "%s is a tag: it holds no content", f->path) : 0;
}

static int tag_truncate(al_file *f, uint64_t size)
{
	return size ? al_error_set(AL_EINVAL, "%s is a tag: it holds no content", f->path) : 0;
}

const file_class tag_class = {
	.write = tag_write, .truncate = tag_truncate,
};

const al_kind kind_run_tag = {
	.name = "tag", .pattern = RUN_P "/tags/{name}", .flags = K_LABEL, .owner = O_RUN, .mode = 0644,
	.getattr = tag_getattr, .open = tag_open, .unlink = tag_unlink,
};

/* ---- experiments/<e>/tagged/ --------------------------------------------------------------- */

/* The index behind tagged/: {tag: [run ids in runs.csv's order]}, rendered through the render cache
 * (one listing of the runs while nothing changed; other mounts' tags within the TTL). */
static int tagged_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc_list *runs = NULL;
	char *coll = xasprintf("%s/runs", n->exp_doc);
	cJSON *o = cJSON_CreateObject();
	size_t i;
	int rc;

	if ((rc = al_store_list(&runs, t->store, coll, NULL, NULL)))
		goto cleanup;
	if (runs->count)
		qsort(runs->docs, runs->count, sizeof(al_doc *), cmp_run_ids);
	for (i = 0; i < runs->count; i++) {
		const cJSON *it;
		cJSON_ArrayForEach(it, tags_of(runs->docs[i])) {
			cJSON *list = cJSON_GetObjectItemCaseSensitive(o, it->string);
			if (!list)
				list = cJSON_AddArrayToObject(o, it->string);
			cJSON_AddItemToArray(list, cJSON_CreateString(al_doc_id(runs->docs[i]->path)));
			mtime_raise(mtime, value_time(runs->docs[i], "tags", it->string));
		}
	}
	rc = json_out(b, o, 0);
cleanup:
	cJSON_Delete(o);
	al_doc_list_free(runs);
	free(coll);
	return rc;
}

static int tagged_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	cJSON *idx = NULL;
	const cJSON *it;
	int rc;
	(void)path;
	if ((rc = exp_index(&idx, NULL, t, n, "tagged")) == 0)
		cJSON_ArrayForEach(it, idx)
			keyset_add(k, it->string);
	cJSON_Delete(idx);
	return rc;
}

const al_kind kind_tagged = {
	.name = "tagged/", .pattern = EXPERIMENT_P "/tagged", .flags = K_DIR, .owner = O_EXPERIMENT,
	.list = tagged_list, .render = tagged_render,
};

/* The runs with tag n->name (the index's list), NULL when none has it. */
static const cJSON *tagged_runs(const cJSON *idx, const node *n)
{
	return cJSON_GetObjectItemCaseSensitive(idx, n->name);
}

static int tagged_tag_getattr(al_attr *out, al_tree *t, const node *n, const al_doc *exp,
	const char *path, unsigned mode)
{
	cJSON *idx = NULL;
	int64_t mtime = exp->update_us;
	int rc;
	(void)mode;
	if ((rc = exp_index(&idx, &mtime, t, n, "tagged")) == 0) {
		if (tagged_runs(idx, n))
			attr_dir(out, mtime);
		else
			rc = al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
	}
	cJSON_Delete(idx);
	return rc;
}

static int tagged_tag_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	cJSON *idx = NULL;
	const cJSON *it;
	int rc;
	(void)path;
	if ((rc = exp_index(&idx, NULL, t, n, "tagged")) == 0)
		cJSON_ArrayForEach(it, tagged_runs(idx, n))
			keyset_add(k, cJSON_GetStringValue(it));
	cJSON_Delete(idx);
	return rc;
}

const al_kind kind_tagged_tag = {
	.name = "tagged/<tag>/", .pattern = EXPERIMENT_P "/tagged/{name}", .flags = K_DIR, .owner = O_EXPERIMENT,
	.getattr = tagged_tag_getattr, .list = tagged_tag_list,
};

/* "../../runs/<run>": relative, so it resolves in any mount of the store. */
static char *tagged_target(const node *n)
{
	return xasprintf("../../runs/%s", n->run);
}

static int tagged_link_find(int64_t *mtime, al_tree *t, const node *n, const char *path)
{
	cJSON *idx = NULL;
	const cJSON *it;
	int rc, found = 0;
	if ((rc = exp_index(&idx, mtime, t, n, "tagged")) == 0) {
		cJSON_ArrayForEach(it, tagged_runs(idx, n))
			found |= strcmp(cJSON_GetStringValue(it), n->run) == 0;
		if (!found)
			rc = al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
	}
	cJSON_Delete(idx);
	return rc;
}

static int tagged_link_getattr(al_attr *out, al_tree *t, const node *n, const al_doc *exp,
	const char *path, unsigned mode)
{
	int64_t mtime = exp->update_us;
	char *target;
	int rc;
	(void)mode;
	if ((rc = tagged_link_find(&mtime, t, n, path)))
		return rc;
	target = tagged_target(n);
	link_attr(out, target ? strlen(target) : 0, mtime);
	free(target);
	return 0;
}

static int tagged_link_readlink(char **out, al_tree *t, const node *n)
{
	int rc;
	if ((rc = check_name(n->run)) || (rc = tagged_link_find(NULL, t, n, n->run)))
		return rc;
	if (!(*out = tagged_target(n)))
		return al_error_set(AL_ENOMEM, "out of memory");
	return 0;
}

const al_kind kind_tagged_link = {
	.name = "tagged link", .pattern = EXPERIMENT_P "/tagged/{name}/{run}", .owner = O_EXPERIMENT,
	.mode = 0777, .getattr = tagged_link_getattr, .readlink = tagged_link_readlink,
};
