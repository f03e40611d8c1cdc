/* aletheia: what many kinds of the tree use: names and paths, the documents behind them, small
 * containers and attributes. */
#include <stdarg.h>
#include "core/store/store_cache.h"
#include "internal.h"

/* A valid Firestore document id, as names must be (README "The tree": names). */
int check_name(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strchr(name, '/'))
		return al_error_set(AL_EINVAL, "invalid name \"%s\"", name);
	if (len > MAX_NAME)
		return al_error_set(AL_ENAMETOOLONG, "name longer than %d bytes", MAX_NAME);
	if (len >= 4 && strncmp(name, "__", 2) == 0 && strcmp(name + len - 2, "__") == 0)
		return al_error_set(AL_EINVAL, "names of the form __x__ are reserved: \"%s\"", name);
	if (!al_utf8_valid(name, len))
		return al_error_set(AL_EINVAL, "name is not valid UTF-8");
	return 0;
}

const char *last_segment(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

void node_free(node *n)
{
	free(n->buf);
	free(n->proj_doc);
	free(n->exp_doc);
	free(n->run_doc);
	free(n->ds_doc);
	free(n->coll);
	memset(n, 0, sizeof(*n));
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

int get_doc(al_doc **out, al_tree *t, const char *path)
{
	int rc = al_store_get(out, t->store, path);
	if (rc == AL_ENOTFOUND)
		al_error_set(AL_ENOTFOUND, "no such entry");
	return rc;
}

int doc_exists(al_tree *t, const char *path)
{
	al_doc *d = NULL;
	int rc = al_store_get(&d, t->store, path);
	al_doc_free(d);
	return rc;
}

int run_summaries(char ***ids, al_series_summary **sums, size_t *count, al_tree *t,
	al_series_stored *stored, const char *run_doc)
{
	if (!stored)
		al_store_cache_prefetch(t->series_store, run_doc, "metrics");
	return al_series_summaries_in(ids, sums, count, t->series, stored, run_doc);
}

/* 1 when the run's status is "running". */
int run_is_running(const al_doc *run)
{
	const char *s = al_fields_get_string(run->fields, "status");
	return s && strcmp(s, "running") == 0;
}

int require_running(al_tree *t, const node *n)
{
	al_doc *run = NULL;
	int rc = get_doc(&run, t, n->run_doc);
	if (rc == 0 && !run_is_running(run))
		rc = al_error_set(AL_EROFS, "run %s is %s: only description and status can change",
			n->run, al_fields_get_string(run->fields, "status"));
	al_doc_free(run);
	return rc;
}

int commit1(al_tree *t, al_write_op op, const char *path, const cJSON *fields,
	al_precondition pre)
{
	al_write w = {op, path, fields, pre, NULL};
	return tree_commit(t, &w, 1);
}

/* Room for one more key (and its attributes, when the set keeps them). */
static int keyset_grow(keyset *k)
{
	size_t cap = k->cap ? k->cap * 2 : 16;
	char **p;
	if (k->n < k->cap)
		return 0;
	if (!(p = realloc(k->keys, cap * sizeof(char *))))
		return -1;
	k->keys = p;
	if (k->attrs) {
		al_attr *a = realloc(k->attrs, cap * sizeof(*a));
		unsigned char *h;
		if (!a)
			return -1;
		k->attrs = a;
		if (!(h = realloc(k->has, cap)))
			return -1;
		k->has = h;
	}
	k->cap = cap;
	return 0;
}

/* Small sets are scanned; an index pays from here on. */
#define KEYSET_INDEX_FROM 32

static size_t key_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;   /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)h;
}

static void keyset_index_put(keyset *k, size_t i)
{
	size_t m = k->nslot - 1, h = key_hash(k->keys[i]) & m;
	while (k->slot[h])
		h = (h + 1) & m;
	k->slot[h] = i + 1;
}

/* Builds the index anew, at most half full, once k is large enough; without the memory for it
 * the set is scanned (slower, still right). */
static void keyset_index(keyset *k)
{
	size_t want = 64, i;
	free(k->slot);
	k->slot = NULL;
	k->nslot = 0;
	if (k->n < KEYSET_INDEX_FROM)
		return;
	while (want < 2 * k->n)
		want *= 2;
	if (!(k->slot = calloc(want, sizeof(*k->slot))))
		return;
	k->nslot = want;
	for (i = 0; i < k->n; i++)
		keyset_index_put(k, i);
}

size_t keyset_find(const keyset *k, const char *key)
{
	size_t i;
	if (k->slot) {
		size_t m = k->nslot - 1;
		for (i = key_hash(key) & m; k->slot[i]; i = (i + 1) & m)
			if (strcmp(k->keys[k->slot[i] - 1], key) == 0)
				return k->slot[i] - 1;
		return KEYSET_NONE;
	}
	for (i = 0; i < k->n; i++)
		if (strcmp(k->keys[i], key) == 0)
			return i;
	return KEYSET_NONE;
}

/* Appends key, known not to be in k yet. */
static int keyset_append(keyset *k, const char *key)
{
	char *copy;
	if (keyset_grow(k) || !(copy = strdup(key)))
		return -1;
	if (k->attrs)
		k->has[k->n] = 0;
	k->keys[k->n++] = copy;
	if (k->slot && 2 * k->n <= k->nslot)
		keyset_index_put(k, k->n - 1);
	else if (k->n >= KEYSET_INDEX_FROM)
		keyset_index(k);
	return 0;
}

void keyset_add(keyset *k, const char *key)
{
	if (keyset_find(k, key) == KEYSET_NONE)
		keyset_append(k, key);
}

void keyset_add_attr(keyset *k, const char *key, const al_attr *a)
{
	if (!k->attrs && keyset_grow(k) == 0) {
		if (!(k->attrs = malloc(k->cap * sizeof(*k->attrs))) || !(k->has = calloc(k->cap, 1))) {
			free(k->attrs);
			k->attrs = NULL;
			keyset_add(k, key);   /* the name still; its attributes come with a lookup */
			return;
		}
	}
	if (keyset_append(k, key) == 0 && k->attrs) {
		k->attrs[k->n - 1] = *a;
		k->has[k->n - 1] = 1;
	}
}

/* Notes key's type (has 2: the type alone, no attributes); key must be in k. */
static void keyset_type(keyset *k, const char *key, al_node_type type)
{
	size_t i;
	if (!k->attrs && keyset_grow(k) == 0) {
		if (!(k->attrs = malloc(k->cap * sizeof(*k->attrs))) || !(k->has = calloc(k->cap, 1))) {
			free(k->attrs);
			k->attrs = NULL;
		}
	}
	if (k->attrs && (i = keyset_find(k, key)) != KEYSET_NONE &&
	    /* a file of the name wins over a folder of longer names (param_getattr, metric_attr) */
	    (k->has[i] != 2 || type == AL_NODE_FILE)) {
		memset(&k->attrs[i], 0, sizeof(k->attrs[i]));
		k->attrs[i].type = type;
		k->has[i] = 2;
	}
}

void keyset_sort(keyset *k)
{
	if (k->n)
		qsort(k->keys, k->n, sizeof(char *), cmp_str);
	keyset_index(k);
}

void keyset_free(keyset *k)
{
	al_strings_free(k->keys, k->n);
	free(k->slot);
	free(k->attrs);
	free(k->has);
	memset(k, 0, sizeof(*k));
}

int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void attr_dir(al_attr *a, int64_t mtime)
{
	memset(a, 0, sizeof(*a));
	a->type = AL_NODE_DIR;
	a->mode = 0755;
	a->mtime_us = a->ctime_us = mtime;
}

void attr_file(al_attr *a, unsigned mode, uint64_t size, int64_t mtime)
{
	memset(a, 0, sizeof(*a));
	a->type = AL_NODE_FILE;
	a->mode = mode;
	a->size = size;
	a->mtime_us = a->ctime_us = mtime;
}

/* The name under rest of full (a key with '/' for folders), added to k; typed: with its type (a
 * file when it is the last segment, else a folder). */
static void child_add(keyset *k, const char *rest, const char *full, int typed)
{
	size_t n = strlen(rest);
	const char *p = full, *slash;
	char *name;
	if (n) {
		if (strncmp(full, rest, n) != 0 || full[n] != '/')
			return;
		p = full + n + 1;
	}
	slash = strchr(p, '/');
	name = slash ? strndup(p, (size_t)(slash - p)) : strdup(p);
	if (name && *name) {
		keyset_add(k, name);
		if (typed)
			keyset_type(k, name, slash ? AL_NODE_DIR : AL_NODE_FILE);
	}
	free(name);
}

void child_of(keyset *k, const char *rest, const char *full)
{
	child_add(k, rest, full, 0);
}

void child_of_typed(keyset *k, const char *rest, const char *full)
{
	child_add(k, rest, full, 1);
}

int list_ids(keyset *k, al_tree *t, const char *coll)
{
	al_doc_list *l = NULL;
	size_t i;
	int rc = al_store_list_meta(&l, t->store, coll);
	for (i = 0; rc == 0 && i < l->count; i++)
		keyset_add(k, al_doc_id(l->docs[i]->path));
	al_doc_list_free(l);
	return rc;
}

/* A path inside a folder (params/a/b, artifacts/x/y): names joined by single '/', each a valid
 * name ("a//b", "x/" and "/lead" would name files no path reaches). */
int check_rest_names(const char *rest)
{
	char *copy = strdup(rest), *p, *slash;
	int rc = 0;
	if (!copy)
		return al_error_set(AL_ENOMEM, "out of memory");
	for (p = copy; rc == 0; p = slash + 1) {
		if ((slash = strchr(p, '/')))
			*slash = '\0';
		rc = check_name(p);
		if (!slash)
			break;
	}
	free(copy);
	if (rc == 0) {
		/* A file's or metric's path is one document id ('/' written %2F): Firestore's 1,500
		 * bytes hold for the whole of it (README "The tree"). */
		char *id = al_id_encode(rest);
		if (!id)
			rc = al_error_set(AL_ENOMEM, "out of memory");
		else if (strlen(id) > MAX_NAME)
			rc = al_error_set(AL_ENAMETOOLONG, "the path %.60s… is %zu bytes as a document id "
				"(each '/' counts 3): at most %d", rest, strlen(id), MAX_NAME);
		free(id);
	}
	return rc;
}

int path_inside(const char *dir, const char *path)
{
	size_t n = dir ? strlen(dir) : 0;
	return n && strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* Deletes a document and everything under it, through store (t->store, or for a metric's
 * documents the store the series module writes them through, so that it sees them go at once
 * and not after the write-behind layer delivered). */
static int delete_docs(al_tree *t, al_store_backend *store, const char *doc)
{
	char **colls = NULL;
	size_t ncolls = 0, i, k;
	int rc;
	al_write w = {AL_WRITE_DELETE, doc, NULL, AL_PRE_NONE, NULL};

	if ((rc = store->list_collections(&colls, &ncolls, store, doc)))
		return rc;
	for (i = 0; rc == 0 && i < ncolls; i++) {
		al_doc_list *l = NULL;
		char *coll = xasprintf("%s/%s", doc, colls[i]);
		rc = al_store_list(&l, store, coll, NULL, NULL);
		for (k = 0; rc == 0 && k < l->count; k++)
			rc = delete_docs(t, store, l->docs[k]->path);
		al_doc_list_free(l);
		free(coll);
	}
	al_strings_free(colls, ncolls);
	if (rc)
		return rc;
	if (store == t->store)
		return tree_commit(t, &w, 1);
	rc = al_store_commit(store, &w, 1);
	scope_changed(t, doc);
	return rc;
}

/* A deletion under way: documents go one at a time, those under doc first (so that no record
 * outlives its owner after a crash), and a reader of a metric meanwhile finds chunks gone while
 * the summary still counts them, which is otherwise damage (EIO). */
struct removing {
	const char *doc;
	struct removing *next;
};

static void removing_begin(al_tree *t, struct removing *r, const char *doc)
{
	r->doc = doc;
	pthread_mutex_lock(&t->rmlock);
	r->next = t->removing;
	t->removing = r;
	pthread_mutex_unlock(&t->rmlock);
}

static void removing_end(al_tree *t, struct removing *r)
{
	struct removing **p;
	pthread_mutex_lock(&t->rmlock);
	for (p = &t->removing; *p && *p != r; p = &(*p)->next)
		;
	if (*p)
		*p = r->next;
	pthread_mutex_unlock(&t->rmlock);
}

int being_removed(al_tree *t, const char *doc)
{
	struct removing *r;
	int found = 0;
	pthread_mutex_lock(&t->rmlock);
	for (r = t->removing; r && !found; r = r->next)
		found = path_inside(r->doc, doc);
	pthread_mutex_unlock(&t->rmlock);
	return found;
}

/* delete_docs of doc, marked as under way meanwhile (being_removed). */
static int delete_tree_in(al_tree *t, al_store_backend *store, const char *doc)
{
	struct removing r;
	int rc;
	removing_begin(t, &r, doc);
	rc = delete_docs(t, store, doc);
	removing_end(t, &r);
	return rc;
}

static int delete_tree(al_tree *t, const char *doc)
{
	return delete_tree_in(t, t->store, doc);
}

/* rm of a metric with --allow-delete: its points and documents go (README "Deleting and
 * renaming"); as rm -rf of a run, but of one metric. */
int metric_remove(al_tree *t, const node *n, const char *path)
{
	al_store_backend *store = t->series_store ? t->series_store : t->store;
	char *doc = metric_doc(n);
	al_doc *d = NULL;
	int rc;

	if (!doc) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	if ((rc = al_series_forget(t->series, doc)))
		goto cleanup;
	if ((rc = al_store_get(&d, store, doc)) == AL_ENOTFOUND)
		rc = al_error_set(AL_ENOTFOUND, "no such metric: %s", path);
	else if (rc == 0)
		rc = delete_tree_in(t, store, doc);
cleanup:
	al_doc_free(d);
	free(doc);
	return rc;
}

int path_under(const char *dir, const char *path)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* 0 when the run document d with patch's fields set stays within Firestore's size, less headroom;
 * AL_EINVAL saying so otherwise. */
int run_fits(const node *n, const al_doc *d, const cJSON *patch, size_t headroom)
{
	cJSON *merged = cJSON_Duplicate(d->fields, 1);
	const cJSON *it;
	uint64_t size;
	if (!merged)
		return al_error_set(AL_ENOMEM, "out of memory");
	cJSON_ArrayForEach(it, patch)
		al_fields_set(merged, it->string, cJSON_Duplicate(it, 1));
	size = al_doc_size(n->run_doc, merged);
	cJSON_Delete(merged);
	if (size > AL_DOC_MAX_SIZE - headroom)
		return al_error_set(AL_EINVAL, "run %s would be %llu bytes: a run's document keeps at most "
			"%d bytes%s", n->run, (unsigned long long)size, (int)(AL_DOC_MAX_SIZE - headroom),
			headroom ? " for its params, texts and links (the rest is kept for its status)" : "");
	return 0;
}

/* Sets (value) or deletes (value NULL) the keys of one map field of a document with one update
 * whose mask names only those keys: another mount's keys of the same map stay (README
 * "Firestore", several mounts). keys: the names, or with values an object of key → value. */
int commit_keys(al_tree *t, const char *doc, const char *field, const char *times_field,
	const cJSON *values, const char *const *keys, size_t nkeys, al_precondition pre)
{
	cJSON *fields = cJSON_CreateObject(), *inner = cJSON_CreateObject(), *mask = cJSON_CreateArray();
	cJSON *times = cJSON_CreateObject();
	const cJSON *it;
	al_write w = {AL_WRITE_UPDATE, doc, fields, pre, mask};
	int64_t now = al_now_us();
	size_t i;
	int rc = 0;

	if (!fields || !inner || !mask || !times)
		rc = al_error_set(AL_ENOMEM, "out of memory");
	cJSON_ArrayForEach(it, values) {
		if (rc || (rc = al_mask_add(mask, field, it->string)) ||
		    (times_field && (rc = al_mask_add(mask, times_field, it->string))))
			break;
		al_fields_set(inner, it->string, cJSON_Duplicate(it, 1));
		al_fields_set(times, it->string, al_value_time(now));
	}
	for (i = 0; rc == 0 && i < nkeys; i++)
		if ((rc = al_mask_add(mask, field, keys[i])) == 0 && times_field)
			rc = al_mask_add(mask, times_field, keys[i]);
	if (rc == 0) {
		al_fields_set(fields, field, al_value_map(inner));
		inner = NULL;
		if (times_field) {
			al_fields_set(fields, times_field, al_value_map(times));
			times = NULL;
		}
		rc = tree_commit(t, &w, 1);
	}
	cJSON_Delete(times);
	cJSON_Delete(inner);
	cJSON_Delete(fields);
	cJSON_Delete(mask);
	return rc;
}

/* A value file's mtime (README "Files behave like files": the time of its content's last change,
 * not of its document's): the time kept for it in the map field times[key] or the field
 * times_field, else (documents written before these times were kept) the document's. */
int64_t value_time(const al_doc *d, const char *map_field, const char *key)
{
	int64_t us;
	const cJSON *v = map_field ? al_fields_get(al_value_get_map(al_fields_get(d->fields, map_field)), key)
				   : al_fields_get(d->fields, key);
	return v && al_value_get_time(&us, v) == 0 ? us : d->update_us;
}

int64_t field_time(const al_doc *d, const char *field, const char *updated_key)
{
	if (!al_fields_get(d->fields, updated_key) && !al_fields_get(d->fields, field))
		return value_time(d, NULL, "created");    /* never written */
	return value_time(d, NULL, updated_key);
}

int list_coll(keyset *k, al_tree *t, const node *n, const char *path)
{
	(void)path;
	return list_ids(k, t, n->coll);
}

int list_coll_dirs(keyset *k, al_tree *t, const node *n, const char *path)
{
	al_doc_list *l = NULL;
	al_attr a;
	size_t i;
	int rc = al_store_list_meta(&l, t->store, n->coll);
	(void)path;
	/* As getattr_recorded answers for a K_DIR row without a getattr of its own; on a shared
	 * mount a folder shows its creator (dispatch.c owner_attr), which a listing without fields
	 * does not know: the kernel looks each up. */
	for (i = 0; rc == 0 && i < l->count; i++) {
		if (t->multi_user) {
			keyset_add(k, al_doc_id(l->docs[i]->path));
			continue;
		}
		attr_dir(&a, l->docs[i]->update_us);
		keyset_add_attr(k, al_doc_id(l->docs[i]->path), &a);
	}
	al_doc_list_free(l);
	return rc;
}

void mtime_raise(int64_t *mtime, int64_t v)
{
	if (mtime && v > *mtime)
		*mtime = v;
}

/* Folders of documents (a project, an experiment, a run, a dataset) go with all they hold. */
int owner_rmdir(al_tree *t, const node *n, const char *path)
{
	(void)path;
	return delete_tree(t, node_owner_doc(n));
}

/* An empty folder of params or metrics exists in memory until something is written in it. */
int vdir_mkdir(al_tree *t, const node *n, const char *path, const al_caller *c)
{
	int rc = check_rest_names(n->rest);
	(void)c;
	return rc ? rc : add_vdir(t, path);
}

int map_key_unlink(al_tree *t, const node *n, const char *field, const char *key, const char *path)
{
	al_doc *d = NULL;
	int rc;
	pthread_mutex_lock(&t->lock);
	if ((rc = get_doc(&d, t, n->run_doc)) == 0) {
		const cJSON *inner = al_value_get_map(al_fields_get(d->fields, field));
		if (inner && cJSON_GetObjectItemCaseSensitive(inner, key))
			rc = commit_keys(t, n->run_doc, field, strcmp(field, "hyper_params") == 0 ? "param_times" : NULL,
				NULL, &key, 1, AL_PRE_EXISTS);
		else
			rc = al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
	}
	pthread_mutex_unlock(&t->lock);
	al_doc_free(d);
	return rc;
}

/* A document with its name and creation time: a project, experiment or dataset. */
cJSON *named_doc(const char *name, int64_t now, const al_tree *t, const al_caller *c)
{
	cJSON *f = cJSON_CreateObject();
	al_fields_set(f, "name", al_value_string(name));
	al_fields_set(f, "created", al_value_time(now));
	set_creator(f, t, c);
	return f;
}

void set_creator(cJSON *fields, const al_tree *t, const al_caller *c)
{
	al_fields_set(fields, "uid", al_value_int(c ? (int64_t)c->uid : (int64_t)t->uid));
	al_fields_set(fields, "gid", al_value_int(c ? (int64_t)c->gid : (int64_t)t->gid));
}

/* The names of a map field of the run (params, links) under the folder n->rest: '/' in a key makes
 * folders; typed: each name's type noted (params; a link's comes from its row). */
int run_map_list(keyset *k, al_tree *t, const node *n, const char *field, int typed)
{
	al_doc *d = NULL;
	const cJSON *map, *it;
	int rc;
	if ((rc = get_doc(&d, t, n->run_doc)) == 0 && (map = al_value_get_map(al_fields_get(d->fields, field)))) {
		cJSON_ArrayForEach(it, map) {
			if (typed)
				child_of_typed(k, n->rest, it->string);
			else
				child_of(k, n->rest, it->string);
		}
	}
	al_doc_free(d);
	return rc;
}
