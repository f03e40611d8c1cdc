/* aletheia: a dataset's folder and .dataset.json, and its version: recomputed from its files'
 * records after they change (README "datasets"). Its files are in blobfiles.c. */
#include <time.h>
#include "internal.h"

static char *empty_version(void)
{
	char hex[AL_HASH_HEX_LEN + 1];
	al_hash_buffer(hex, "", 0);
	return strdup(hex);
}

static int dataset_mkdir(al_tree *t, const node *n, const char *path, const al_caller *c)
{
	char *v = NULL;
	cJSON *f = NULL;
	int rc;
	(void)path;
	if ((rc = check_name(n->dataset)) || (rc = doc_exists(t, n->proj_doc)))
		return rc;
	if (!(v = empty_version()))
		return al_error_set(AL_ENOMEM, "out of memory");
	f = named_doc(n->dataset, al_now_us(), t, c);
	al_fields_set(f, "description", al_value_string(""));
	al_fields_set(f, "description_updated", al_value_time(al_now_us()));
	al_fields_set(f, "version", al_value_string(v));
	al_fields_set(f, "files", al_value_int(0));
	al_fields_set(f, "bytes", al_value_int(0));
	rc = commit1(t, AL_WRITE_SET, n->ds_doc, f, AL_PRE_MISSING);
	free(v);
	cJSON_Delete(f);
	return rc;
}

/* Its data files and folders, and the two dot-files beside them. */
static int dataset_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	keyset_add(k, ".dataset.json");
	keyset_add(k, ".description");
	return blob_list(k, t, n, path);
}

const al_kind kind_dataset = {
	.name = "dataset", .pattern = DATASET_P, .flags = K_DIR | K_SCRATCH | K_MEMORY | K_OPEN, .owner = O_DATASET,
	.coll = "files", .list = dataset_list, .mkdir = dataset_mkdir, .rmdir = owner_rmdir,
};

static int dataset_json_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc *d = NULL;
	cJSON *o;
	int rc;
	dataset_settle(t, n->ds_doc);
	if ((rc = get_doc(&d, t, n->ds_doc)))
		return rc;
	o = cJSON_CreateObject();
	field_json(o, "name", d->fields, "name");
	field_json(o, "version", d->fields, "version");
	field_json(o, "files", d->fields, "files");
	field_json(o, "bytes", d->fields, "bytes");
	time_json(o, "created", d->fields, "created");
	field_json(o, "description", d->fields, "description");
	rc = json_out(b, o, 1);
	cJSON_Delete(o);
	mtime_raise(mtime, d->update_us);
	al_doc_free(d);
	return rc;
}

const al_kind kind_dataset_json = {
	.name = ".dataset.json", .pattern = DATASET_P "/.dataset.json", .owner = O_DATASET,
	.mode = 0444, .render = dataset_json_render,
};

/* Recomputes a dataset's version (xxh3-128 over its sorted "path\tsize\thash\n" lines),
 * file count and bytes. Caller holds no lock; serialised by t->lock. */
static int dataset_refresh(al_tree *t, const char *ds_doc)
{
	al_doc_list *l = NULL;
	al_hasher *h = NULL;
	char *coll = xasprintf("%s/files", ds_doc), hex[AL_HASH_HEX_LEN + 1];
	cJSON *f = NULL;
	int64_t files = 0, bytes = 0;
	char **lines = NULL;
	size_t i, nlines = 0;
	int rc;

	pthread_mutex_lock(&t->ds_lock);
	if ((rc = al_store_list(&l, t->store, coll, NULL, NULL)) || (rc = al_hasher_new(&h)))
		goto cleanup;
	/* Ids are the encoded paths, whose order differs from the paths' ('/' is "%2F"): the
	 * lines are sorted by path before hashing. */
	lines = calloc(l->count + 1, sizeof(char *));
	if (!lines) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < l->count; i++) {
		const cJSON *fl = l->docs[i]->fields;
		const char *type = al_fields_get_string(fl, "type"), *p = al_fields_get_string(fl, "path");
		const char *hash = al_fields_get_string(fl, "hash");
		int64_t size = 0;
		if ((type && strcmp(type, "dir") == 0) || !p || !hash)
			continue;
		al_fields_get_int(&size, fl, "size");
		/* the path first, NUL-terminated, then the line: sorted by the path alone (names may
		 * hold a TAB or bytes below it), hashed by the line */
		if (!(lines[nlines] = xasprintf("%s%c%s\t%lld\t%s\n", p, 0, p, (long long)size, hash))) {
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto cleanup;
		}
		nlines++;
		files++;
		bytes += size;
	}
	qsort(lines, nlines, sizeof(char *), cmp_str);   /* compares up to the NUL: the paths */
	for (i = 0; i < nlines; i++) {
		const char *line = lines[i] + strlen(lines[i]) + 1;
		al_hasher_update(h, line, strlen(line));
	}
	al_hasher_final(hex, h);
	f = cJSON_CreateObject();
	al_fields_set(f, "version", al_value_string(hex));
	al_fields_set(f, "files", al_value_int(files));
	al_fields_set(f, "bytes", al_value_int(bytes));
	al_fields_set(f, "stale", al_value_bool(0));   /* ds_lock held: no record slipped in between */
	rc = commit1(t, AL_WRITE_UPDATE, ds_doc, f, AL_PRE_EXISTS);
cleanup:
	pthread_mutex_unlock(&t->ds_lock);
	al_strings_free(lines, nlines);
	cJSON_Delete(f);
	al_hasher_free(h);
	al_doc_list_free(l);
	free(coll);
	return rc;
}

/* Notes that a dataset's files changed; its version follows within about a second. */
void dataset_changed(al_tree *t, const char *ds_doc)
{
	vdir *v;
	int64_t now = al_now_us();
	pthread_mutex_lock(&t->lock);
	if (!t->dirty_ds) {
		t->ds_first_us = now;
		pthread_cond_signal(&t->ds_wake);   /* else it waits for a quiet second already */
	}
	t->ds_last_us = now;
	for (v = t->dirty_ds; v; v = v->next)
		if (strcmp(v->path, ds_doc) == 0)
			break;
	if (!v && (v = calloc(1, sizeof(*v)))) {
		if ((v->path = strdup(ds_doc))) {
			v->next = t->dirty_ds;
			t->dirty_ds = v;
		} else
			free(v);
	}
	pthread_mutex_unlock(&t->lock);
}

/* Brings one dataset's version up to date now (NULL: every dataset that changed). */
int dataset_settle(al_tree *t, const char *ds_doc)
{
	vdir *take = NULL, **p, *v;
	al_doc *d = NULL;
	int rc = 0, refreshed = 0, stale = 0;

	/* Held from taking the entries to the end of their refresh: a reader finding nothing dirty
	 * because the dataset thread took it first waits here for that refresh, not an old version. */
	pthread_mutex_lock(&t->ds_lock);
	pthread_mutex_lock(&t->lock);
	for (p = &t->dirty_ds; *p;) {
		if (!ds_doc || strcmp((*p)->path, ds_doc) == 0) {
			v = *p;
			*p = v->next;
			v->next = take;
			take = v;
		} else
			p = &(*p)->next;
	}
	pthread_mutex_unlock(&t->lock);
	while ((v = take)) {
		int r;
		take = v->next;
		if (ds_doc)
			refreshed = 1;
		if ((r = dataset_refresh(t, v->path)) && r != AL_ENOTFOUND && !rc)
			rc = r;
		free(v->path);
		free(v);
	}
	/* A change whose mark reached the store but whose recomputation did not (the daemon was
	 * killed, or another mount made it) is recomputed by the first reader. */
	if (ds_doc && !refreshed && al_store_get(&d, t->store, ds_doc) == 0 &&
	    al_fields_get_bool(&stale, d->fields, "stale") == 0 && stale)
		rc = dataset_refresh(t, ds_doc);
	al_doc_free(d);
	al_error_clear();
	pthread_mutex_unlock(&t->ds_lock);
	return rc;
}

/* A refresh lists every file of the dataset and holds its new files' commits back meanwhile, so
 * it waits until the datasets are left alone for DS_QUIET_US (README "datasets": about a second
 * after the last change); during a long copy once every DS_BUSY_US at most. After each burst
 * instead, a copy of n files cost n²/burst listings. */
#define DS_QUIET_US 1000000
#define DS_BUSY_US 30000000

void *dataset_thread(void *arg)
{
	al_tree *t = arg;
	struct timespec ts;

	pthread_mutex_lock(&t->lock);
	while (!t->ds_stop) {
		int64_t due = al_now_us() + 3600 * (int64_t)1000000;
		if (t->dirty_ds) {
			due = t->ds_last_us + DS_QUIET_US;
			if (due > t->ds_first_us + DS_BUSY_US)
				due = t->ds_first_us + DS_BUSY_US;
			if (al_now_us() >= due) {
				pthread_mutex_unlock(&t->lock);
				dataset_settle(t, NULL);
				changed(t);
				pthread_mutex_lock(&t->lock);
				continue;
			}
		}
		ts.tv_sec = (time_t)(due / 1000000);
		ts.tv_nsec = (long)(due % 1000000) * 1000;
		pthread_cond_timedwait(&t->ds_wake, &t->lock, &ts);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int dataset_referenced(al_tree *t, const char *ds_doc)
{
	al_doc *d = NULL;
	int ref = 0;
	if (al_store_get(&d, t->store, ds_doc) == 0)
		al_fields_get_bool(&ref, d->fields, "referenced");
	al_doc_free(d);
	return ref;
}

