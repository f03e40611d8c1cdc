/* aletheia: a project's metadata/ folder: one JSON object per file, kept as a document of its own
 * (README "The tree"). */
#include "internal.h"

static char *metadata_doc(const node *n)
{
	return xasprintf("%s/metadata/%s", n->proj_doc, n->name);
}

const al_kind kind_metadata_dir = {
	.name = "metadata/", .pattern = PROJECT_P "/metadata", .flags = K_DIR | K_SCRATCH | K_MEMORY,
	.owner = O_PROJECT, .coll = "metadata", .list = list_coll,
};

static int metadata_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	char *p = metadata_doc(n);
	al_doc *d = NULL;
	cJSON *o, *it;
	int rc;
	if ((rc = get_doc(&d, t, p)) == 0) {
		o = cJSON_CreateObject();
		cJSON_ArrayForEach(it, d->fields)
			cJSON_AddItemToObject(o, it->string, al_value_to_json(it));
		rc = json_out(b, o, 1);
		cJSON_Delete(o);
		mtime_raise(mtime, d->update_us);
	}
	al_doc_free(d);
	free(p);
	return rc;
}

/* A file being written shows before its first close. */
static int metadata_getattr(al_attr *out, al_tree *t, const node *n, const al_doc *owner,
	const char *path, unsigned mode)
{
	char *p = metadata_doc(n);
	al_doc *d = NULL;
	int rc = get_doc(&d, t, p);
	(void)owner;
	if (rc == 0)
		rc = generated_attr(out, t, n, path, mode, d->update_us);
	else if (writer_attr(out, t, path, mode))
		rc = 0;
	al_doc_free(d);
	free(p);
	return rc;
}

static int metadata_create(al_tree *t, const node *n)
{
	int rc = check_name(n->name);
	return rc ? rc : doc_exists(t, n->proj_doc);
}

/* Appended keys merge into what the file held; otherwise the object replaces it. An append
 * writes only its keys (an update of those fields), so appenders of other keys keep theirs, on
 * this mount and on others; the whole document is checked as this mount knows it (README
 * "params": Firestore's limits). */
static int metadata_commit(al_file *f)
{
	al_tree *t = f->t;
	char *doc = metadata_doc(&f->n);
	cJSON *obj = NULL, *it;
	al_doc *d = NULL;
	int rc, appended;

	if ((rc = written_object(&obj, &appended, f, "a metadata file")))
		goto cleanup;
	pthread_mutex_lock(&t->lock);
	if (appended && (rc = get_doc(&d, t, doc)) == 0) {
		cJSON_ArrayForEach(it, obj)
			al_fields_set(d->fields, it->string, cJSON_Duplicate(it, 1));
		if ((rc = al_fields_check(doc, d->fields)) == 0)
			rc = commit1(t, AL_WRITE_UPDATE, doc, obj, AL_PRE_NONE);
	} else if (rc == 0 || rc == AL_ENOTFOUND) {
		rc = commit1(t, AL_WRITE_SET, doc, obj, AL_PRE_NONE);
	}
	pthread_mutex_unlock(&t->lock);
cleanup:
	cJSON_Delete(obj);
	al_doc_free(d);
	free(doc);
	return rc;
}

static int metadata_unlink(al_tree *t, const node *n, const char *path)
{
	char *p = metadata_doc(n);
	int rc = commit1(t, AL_WRITE_DELETE, p, NULL, AL_PRE_EXISTS);
	(void)path;
	free(p);
	return rc;
}

const al_kind kind_metadata = {
	.name = "metadata", .pattern = PROJECT_P "/metadata/{name}", .mode = 0644,
	.getattr = metadata_getattr, .render = metadata_render, .create = metadata_create,
	.commit = metadata_commit, .unlink = metadata_unlink,
};
