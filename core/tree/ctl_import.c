/* aletheia: .aletheia/import: files that live at a URL, registered in a dataset without a copy,
 * one JSON line each (README "Importing files that live elsewhere"). */
#include <math.h>
#include "internal.h"

#define IMPORT_LINE_MAX 65536

/* Lines written are imports; a reader (cat, grep -r) finds it empty, not an error. */
static int import_open(al_file *f, int flags, const char *path)
{
	(void)path;
	f->kind = flags & AL_OPEN_WRITE ? F_IMPORT : F_GENERATED;
	return 0;
}

const al_kind kind_ctl_import = {
	.name = ".aletheia/import", .pattern = ".aletheia/import", .flags = K_SHARED, .mode = 0600,
	.getattr = ctl_empty_attr, .open = import_open,
};

/* The "dataset", "path" and "url" of an import line as a node of the dataset's file. */
static int import_node(node *n, al_tree *t, const char *dataset, const char *path, const char *url)
{
	const char *slash = strchr(dataset, '/');
	char *mpath = NULL, *proj = NULL;
	int rc;

	memset(n, 0, sizeof(*n));
	if (!slash || slash == dataset || !slash[1] || strchr(slash + 1, '/'))
		return al_error_set(AL_EINVAL, "import: dataset must be PROJECT/DATASET (got \"%.200s\")",
			dataset);
	if (!(proj = strndup(dataset, (size_t)(slash - dataset))))
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((rc = check_name(proj)) || (rc = check_name(slash + 1)))
		goto cleanup;
	if (!*path || *path == '/' || path[strlen(path) - 1] == '/' || strstr(path, "//")) {
		rc = al_error_set(AL_EINVAL, "import: invalid file path \"%.200s\"", path);
		goto cleanup;
	}
	if ((rc = check_rest_names(path)))
		goto cleanup;
	if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8) && strncmp(url, "s3://", 5) &&
	    strncmp(url, "gs://", 5)) {
		rc = al_error_set(AL_EINVAL, "import: URL must be http://, https://, s3:// or gs:// "
			"(got \"%.200s\")", url);
		goto cleanup;
	}
	if (!(mpath = xasprintf("/%s/datasets/%s/%s", proj, slash + 1, path))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	if ((rc = node_parse(n, mpath)))
		goto cleanup;
	if (n->k != &kind_dataset_file) {
		node_free(n);
		rc = al_error_set(AL_EINVAL, "import: \"%.200s\" is not a name a dataset file can have",
			path);
		goto cleanup;
	}
	if ((rc = doc_exists(t, n->ds_doc))) {
		node_free(n);
		if (rc == AL_ENOTFOUND)
			rc = al_error_set(AL_ENOTFOUND, "import: no dataset %s (create it with mkdir first)",
				dataset);
	}
cleanup:
	free(mpath);
	free(proj);
	return rc;
}

/* Write-once, as for copied files: the same content again is fine, different content EPERM.
 * A file in the way of a folder of the path: ENOTDIR. */
static int import_check_free(al_tree *t, const node *n, const char *mpath, const char *hash,
	int64_t size)
{
	al_doc *d = NULL, **anc = NULL;
	char *copy = strdup(n->rest), *id = NULL, *doc = NULL, *p, **paths = NULL;
	size_t na = 0, i;
	int rc = 0, writing;

	if (!copy)
		return al_error_set(AL_ENOMEM, "out of memory");
	/* Every folder of the path in one request (batchGet on Firestore). */
	for (p = copy; (p = strchr(p, '/')); p++)
		na++;
	paths = calloc(na + 1, sizeof(*paths));
	anc = calloc(na + 1, sizeof(*anc));
	if (!paths || !anc) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0, p = strchr(copy, '/'); p; p = strchr(p + 1, '/'), i++) {
		*p = '\0';
		id = al_id_encode(copy);
		paths[i] = id ? xasprintf("%s/%s", n->coll, id) : NULL;
		free(id);
		id = NULL;
		*p = '/';
		if (!paths[i]) {
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto cleanup;
		}
	}
	if ((rc = al_store_get_many(anc, t->store, (const char *const *)paths, na)))
		goto cleanup;
	for (i = 0; i < na && rc == 0; i++) {
		const char *type = anc[i] ? al_fields_get_string(anc[i]->fields, "type") : "dir";
		if (!type || strcmp(type, "dir") != 0) {
			char *name = al_id_decode(al_doc_id(paths[i]));
			rc = al_error_set(AL_ENOTDIR, "import: %s is a file, not a folder",
				name ? name : al_doc_id(paths[i]));
			free(name);
		}
	}
	if (rc)
		goto cleanup;
	if (!(doc = blob_record_doc(n))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	if ((rc = al_store_get(&d, t->store, doc)) == 0) {
		const char *type = al_fields_get_string(d->fields, "type"), *h;
		int64_t have = -1;
		if (type && strcmp(type, "dir") == 0) {
			rc = al_error_set(AL_EISDIR, "import: %s is a folder", n->rest);
			goto cleanup;
		}
		h = al_fields_get_string(d->fields, "hash");
		al_fields_get_int(&have, d->fields, "size");
		rc = h && strcmp(h, hash) == 0 && have == size ? 1 :
			al_error_set(AL_EPERM, "import: %s exists with other content (dataset files are "
				"write-once)", n->rest);
		goto cleanup;
	}
	if (rc != AL_ENOTFOUND)
		goto cleanup;
	rc = 0;
	pthread_mutex_lock(&t->lock);
	writing = find_writer(t, mpath) != NULL;
	pthread_mutex_unlock(&t->lock);
	if (writing)
		rc = al_error_set(AL_EPERM, "import: %s is being written", n->rest);
cleanup:
	for (i = 0; paths && anc && i < na; i++) {
		free(paths[i]);
		al_doc_free(anc[i]);
	}
	free(paths);
	free(anc);
	al_doc_free(d);
	free(id);
	free(doc);
	free(copy);
	return rc;
}

/* One line: {"dataset":"P/D","path":"NAME","url":"…","size":N,"hash":"HEX"}. */
static int import_line(al_tree *t, const char *line, size_t len)
{
	cJSON *j = cJSON_ParseWithLength(line, len);
	const cJSON *ds, *path, *url, *size, *hash;
	char *mpath = NULL;
	node n = {0};
	int rc;

	ds = cJSON_GetObjectItemCaseSensitive(j, "dataset");
	path = cJSON_GetObjectItemCaseSensitive(j, "path");
	url = cJSON_GetObjectItemCaseSensitive(j, "url");
	size = cJSON_GetObjectItemCaseSensitive(j, "size");
	hash = cJSON_GetObjectItemCaseSensitive(j, "hash");
	if (!cJSON_IsObject(j) || !cJSON_IsString(ds) || !cJSON_IsString(path) || !cJSON_IsString(url) ||
	    !cJSON_IsNumber(size) || !cJSON_IsString(hash)) {
		rc = al_error_set(AL_EINVAL, "import: expected one JSON object per line with dataset, "
			"path, url (strings), size (a number) and hash");
		goto cleanup;
	}
	/* Integers up to 2^53 are exact in a double. */
	if (size->valuedouble < 0 || size->valuedouble > 9007199254740992.0 ||
	    size->valuedouble != floor(size->valuedouble)) {
		rc = al_error_set(AL_EINVAL, "import: size must be a whole number of bytes");
		goto cleanup;
	}
	if (!al_hash_is_valid(hash->valuestring)) {
		rc = al_error_set(AL_EINVAL, "import: hash must be an xxh3-128 as 32 lowercase hex "
			"digits (got \"%.64s\")", hash->valuestring);
		goto cleanup;
	}
	if ((rc = import_node(&n, t, ds->valuestring, path->valuestring, url->valuestring)))
		goto cleanup;
	mpath = xasprintf("/%s/datasets/%s/%s", n.project, n.dataset, n.rest);
	if (!mpath) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	rc = import_check_free(t, &n, mpath, hash->valuestring, (int64_t)size->valuedouble);
	if (rc == 1)
		rc = 0;   /* already there, the same */
	else if (rc == 0)
		rc = record_file(t, &n, hash->valuestring, (uint64_t)size->valuedouble,
			url->valuestring, 0, NULL, MTIME_NOW, 1, NULL);
cleanup:
	node_free(&n);
	free(mpath);
	cJSON_Delete(j);
	return rc;
}

/* Records each complete line in f->text (and at close the partial last one). The first bad line
 * fails the write(); lines before it are recorded, the rest of that write is dropped. */
static int import_lines(al_file *f, int at_close)
{
	size_t start = 0;
	int rc = 0;

	if (!f->text.ptr)
		return 0;
	while (start < f->text.len && rc == 0) {
		char *nl = memchr(f->text.ptr + start, '\n', f->text.len - start);
		size_t end = nl ? (size_t)(nl - f->text.ptr) : f->text.len;
		if (!nl && !at_close)
			break;
		if (memchr(f->text.ptr + start, '\0', end - start))
			rc = al_error_set(AL_EINVAL, "import: NUL byte in a line");
		else if (strspn(f->text.ptr + start, " \t\r") < end - start)
			rc = import_line(f->t, f->text.ptr + start, end - start);
		start = nl ? end + 1 : end;
	}
	if (rc)
		al_buf_clear(&f->text);
	else {
		memmove(f->text.ptr, f->text.ptr + start, f->text.len - start);
		f->text.len -= start;
		f->text.ptr[f->text.len] = '\0';
	}
	return rc;
}

static int import_write(al_file *f, const char *buf, size_t size, uint64_t off)
{
	int rc;
	(void)off;   /* lines are appended */
	if ((rc = al_buf_put(&f->text, buf, size)))
		return rc;
	if ((rc = import_lines(f, 0)))
		return rc;
	if (f->text.len > IMPORT_LINE_MAX) {
		al_buf_clear(&f->text);
		return al_error_set(AL_EINVAL, "import: line longer than %d bytes", IMPORT_LINE_MAX);
	}
	return 0;
}

static int import_read(size_t *nread, al_file *f, char *buf, size_t size, uint64_t off)
{
	return read_buffer(nread, f->text.ptr, f->text.len, buf, size, off);
}

static int import_truncate(al_file *f, uint64_t size)
{
	(void)f;
	(void)size;
	return 0;
}

/* A last line without its newline counts at close. */
static int import_flush(al_file *f)
{
	return f->text.len ? import_lines(f, 1) : 0;
}

const file_class import_class = {
	.read = import_read, .write = import_write, .truncate = import_truncate, .flush = import_flush,
};
