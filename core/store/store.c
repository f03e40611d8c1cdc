/* aletheia: the backend-independent part of the metastore: opening a store from a URI, the
 * wrappers around the backend table, documents and lists, and document-id encoding. */
#include <stdlib.h>
#include <string.h>
#include "core/net/auth.h"
#include "core/store/store.h"
#include "core/doc/value.h"

static void auth_reject(void *ctx, const char *token)
{
	al_auth_invalidate(ctx, token);
}

static int auth_token(char **out, void *ctx)
{
	return al_auth_token(out, ctx);
}

static void auth_free(void *ctx)
{
	al_auth_free(ctx);
}

int al_store_backend_check(const al_store_backend *b)
{
	if (!b)
		return al_error_set(AL_EINVAL, "no metastore backend");
	if (b->version != AL_STORE_BACKEND_VERSION)
		return al_error_set(AL_EINVAL, "metastore backend %s has table version %u; this aletheia "
			"needs %u", b->name ? b->name : "(unnamed)", b->version, AL_STORE_BACKEND_VERSION);
	if (!b->name || !b->get || !b->list || !b->list_collections || !b->commit || !b->free)
		return al_error_set(AL_EINVAL, "metastore backend %s lacks a required operation",
			b->name ? b->name : "(unnamed)");
	return 0;
}

static int open_backend(al_store_backend **out, const char *uri);

int al_store_open(al_store_backend **out, const char *uri)
{
	int rc = open_backend(out, uri);
	if (rc == 0 && (rc = al_store_backend_check(*out))) {
		al_store_free(*out);
		*out = NULL;
	}
	return rc;
}

static int open_backend(al_store_backend **out, const char *uri)
{
	*out = NULL;
	if (!uri)
		return al_error_set(AL_EINVAL, "missing store URI: expected local:DIR");
	if (strncmp(uri, "local:", 6) == 0) {
		if (!uri[6])
			return al_error_set(AL_EINVAL, "store URI '%s' names no directory: "
				"expected local:DIR", uri);
		return al_store_sqlite_new(out, uri + 6);
	}
	if (strncmp(uri, "firestore:", 10) == 0) {
		al_firestore_options opts = AL_FIRESTORE_OPTIONS_INIT;
		const char *host = getenv("FIRESTORE_EMULATOR_HOST");
		if (!uri[10])
			return al_error_set(AL_EINVAL, "store URI '%s' names no project: "
				"expected firestore:PROJECT_ID", uri);
		opts.project = uri + 10;
		if (host && *host) {
			opts.emulator_host = host;   /* plain HTTP, "Bearer owner" */
			return al_store_firestore_new(out, &opts);
		}
		{
			/* Google's application-default credentials, owned by the store from here on. */
			al_auth *auth = NULL;
			int rc = al_auth_new(&auth, AL_AUTH_SCOPE_CLOUD_PLATFORM);
			if (rc)
				return rc;
			opts.token = auth_token;
			opts.token_ctx = auth;
			opts.token_free = auth_free;
			opts.token_reject = auth_reject;
			if ((rc = al_store_firestore_new(out, &opts)))
				al_auth_free(auth);
			return rc;
		}
	}
	return al_error_set(AL_EINVAL, "unknown store URI '%s': expected local:DIR "
		"(SQLite in DIR/meta.db) or firestore:PROJECT_ID", uri);
}

int al_store_get(al_doc **out, al_store_backend *b, const char *path)
{
	return b->get(out, b, path);
}

int al_store_get_text(int *called, al_store_backend *b, const char *path,
	int (*fn)(void *ctx, const char *text, size_t len), void *ctx)
{
	*called = b->get_text != NULL;
	return b->get_text ? b->get_text(b, path, fn, ctx) : 0;
}

int al_store_list(al_doc_list **out, al_store_backend *b, const char *collection,
	const char *id_from, const char *id_to)
{
	return b->list(out, b, collection, id_from, id_to);
}

int al_store_list_meta(al_doc_list **out, al_store_backend *b, const char *collection)
{
	size_t i;
	int rc;
	if (b->list_meta)
		return b->list_meta(out, b, collection);
	/* Decorators (the read cache, write-behind) answer with their own listing, which holds what
	 * is cached and pending: the same documents, their fields dropped. */
	if ((rc = b->list(out, b, collection, NULL, NULL)) == 0)
		for (i = 0; i < (*out)->count; i++) {
			cJSON_Delete((*out)->docs[i]->fields);
			(*out)->docs[i]->fields = NULL;
		}
	return rc;
}

int al_store_list_collections(char ***out, size_t *count, al_store_backend *b,
	const char *doc_path)
{
	return b->list_collections(out, count, b, doc_path);
}

int al_store_get_many(al_doc **out, al_store_backend *b, const char *const *paths, size_t n)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < n; i++)
		out[i] = NULL;
	if (b->get_many)
		return n ? b->get_many(out, b, paths, n) : 0;
	for (i = 0; i < n && rc == 0; i++)
		if ((rc = b->get(&out[i], b, paths[i])) == AL_ENOTFOUND) {
			al_error_clear();
			rc = 0;
		}
	if (rc)
		for (i = 0; i < n; i++) {
			al_doc_free(out[i]);
			out[i] = NULL;
		}
	return rc;
}

int al_store_commit(al_store_backend *b, const al_write *writes, size_t count)
{
	return b->commit(b, writes, count);
}

char *al_store_describe(al_store_backend *b)
{
	return b->describe ? b->describe(b) : NULL;
}

void al_store_free(al_store_backend *b)
{
	if (b)
		b->free(b);
}

void al_doc_free(al_doc *doc)
{
	if (!doc)
		return;
	free(doc->path);
	cJSON_Delete(doc->fields);
	free(doc);
}

void al_doc_list_free(al_doc_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->count; i++)
		al_doc_free(list->docs[i]);
	free(list->docs);
	free(list);
}

const char *al_doc_id(const char *path)
{
	const char *slash;
	if (!path)
		return NULL;
	slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

void al_strings_free(char **strings, size_t count)
{
	if (!strings)
		return;
	for (size_t i = 0; i < count; i++)
		free(strings[i]);
	free(strings);
}

char *al_id_encode(const char *path)
{
	size_t n = 0;
	char *out, *o;
	if (!path)
		return NULL;
	for (const char *p = path; *p; p++)
		n += (*p == '%' || *p == '/') ? 3 : 1;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	o = out;
	for (const char *p = path; *p; p++) {
		if (*p == '%') {
			memcpy(o, "%25", 3);
			o += 3;
		} else if (*p == '/') {
			memcpy(o, "%2F", 3);
			o += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

/* Only the two escapes al_id_encode writes are valid, so decoding is the exact inverse and two
 * different ids never name the same file. */
char *al_id_decode(const char *id)
{
	char *out, *o;
	if (!id)
		return NULL;
	out = malloc(strlen(id) + 1);
	if (!out)
		return NULL;
	o = out;
	for (const char *p = id; *p; p++) {
		if (*p == '%' && p[1] == '2' && p[2] == '5') {
			*o++ = '%';
			p += 2;
		} else if (*p == '%' && p[1] == '2' && p[2] == 'F') {
			*o++ = '/';
			p += 2;
		} else if (*p == '%' || *p == '/') {
			free(out);
			return NULL;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

/* Number of segments of a slash-separated path, or -1 when it is empty or has an empty
 * segment (leading, trailing or double slash). */
int al_path_segments(const char *path)
{
	int n = 1;
	if (!path || !*path)
		return -1;
	for (const char *p = path; *p; p++) {
		if (*p != '/')
			continue;
		if (p == path || p[1] == '/' || p[1] == '\0')
			return -1;
		n++;
	}
	return n;
}

int al_path_is_document(const char *path)
{
	int n = al_path_segments(path);
	return n > 0 && n % 2 == 0;
}

int al_path_invalid(const char *kind, const char *path)
{
	return al_error_set(AL_EINVAL, "invalid %s path '%s': expected %s non-empty segments "
		"separated by '/'", kind, path ? path : "(null)",
		kind[0] == 'd' ? "an even number of" : "an odd number of");
}

int al_group_check(const char *parent_doc, const char *collection_id)
{
	if (!parent_doc || !al_path_is_document(parent_doc))
		return al_path_invalid("document", parent_doc ? parent_doc : "");
	if (!collection_id || !*collection_id || strchr(collection_id, '/'))
		return al_error_set(AL_EINVAL, "group listing: invalid collection id '%s'",
			collection_id ? collection_id : "");
	return 0;
}

int al_mask_path(const char **field, const char **key, const cJSON *p)
{
	int n = cJSON_IsArray(p) ? cJSON_GetArraySize(p) : 0;
	const cJSON *a = n ? p->child : NULL, *b = a ? a->next : NULL;
	*field = *key = NULL;
	if ((n != 1 && n != 2) || !cJSON_IsString(a) || (b && !cJSON_IsString(b)))
		return 0;
	*field = a->valuestring;
	*key = b ? b->valuestring : NULL;
	return n;
}

int al_mask_add(cJSON *mask, const char *field, const char *key)
{
	cJSON *p = cJSON_CreateArray();
	if (!p || !cJSON_AddItemToArray(p, cJSON_CreateString(field)) ||
	    (key && !cJSON_AddItemToArray(p, cJSON_CreateString(key))) || cJSON_GetArraySize(p) != (key ? 2 : 1) ||
	    !cJSON_AddItemToArray(mask, p)) {
		cJSON_Delete(p);
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	return 0;
}

typedef struct {
	const char *field, *key;  /* key NULL: the whole field */
} mask_path;

/* Field first, the whole field before its keys. */
static int mask_cmp(const void *a, const void *b)
{
	const mask_path *x = a, *y = b;
	int r = strcmp(x->field, y->field);
	if (r || x->key == y->key)
		return r;
	if (!x->key || !y->key)
		return x->key ? 1 : -1;
	return strcmp(x->key, y->key);
}

/* The mask's paths sorted (*out, n of them); AL_EINVAL for a malformed or overlapping mask. */
static int mask_sorted(mask_path **out, size_t *n, const al_write *w)
{
	const cJSON *p;
	mask_path *m;
	size_t i = 0, count = (size_t)cJSON_GetArraySize(w->mask);
	int rc;

	*out = NULL;
	*n = 0;
	if (!(m = calloc(count + 1, sizeof(*m))))
		return al_error_set(AL_ENOMEM, "out of memory");
	cJSON_ArrayForEach(p, w->mask) {
		if (!al_mask_path(&m[i].field, &m[i].key, p)) {
			free(m);
			return al_error_set(AL_EINVAL, "document %s: a mask path is not one or two names",
				w->path);
		}
		if ((rc = al_field_path_check(w->path, m[i].field, m[i].key))) {
			free(m);
			return rc;
		}
		i++;
	}
	qsort(m, i, sizeof(*m), mask_cmp);
	for (size_t k = 1; k < i; k++)
		if (!strcmp(m[k - 1].field, m[k].field) && (!m[k - 1].key || !strcmp(m[k - 1].key, m[k].key))) {
			rc = al_error_set(AL_EINVAL, "document %s: the mask names %s%s%s twice or inside "
				"itself", w->path, m[k].field, m[k].key ? "." : "", m[k].key ? m[k].key : "");
			free(m);
			return rc;
		}
	*out = m;
	*n = i;
	return 0;
}

/* Every value of an update with a mask is named by it (Firestore would ignore the others). */
static int mask_covers(const al_write *w)
{
	mask_path *m = NULL, probe;
	const cJSON *f, *k, *map;
	size_t n;
	int rc;

	if ((rc = mask_sorted(&m, &n, w)))
		return rc;
	cJSON_ArrayForEach(f, w->fields) {
		probe = (mask_path){f->string, NULL};
		if (bsearch(&probe, m, n, sizeof(*m), mask_cmp))
			continue;
		if (!(map = al_value_get_map(f))) {
			rc = al_error_set(AL_EINVAL, "document %s: field %s is not in the mask", w->path,
				f->string);
			break;
		}
		cJSON_ArrayForEach(k, map) {
			probe.key = k->string;
			if (!bsearch(&probe, m, n, sizeof(*m), mask_cmp)) {
				rc = al_error_set(AL_EINVAL, "document %s: %s.%s is not in the mask", w->path,
					f->string, k->string);
				break;
			}
		}
		if (rc)
			break;
	}
	free(m);
	return rc;
}

int al_write_check(const al_write *w)
{
	const cJSON *f;
	int rc;
	if (!al_path_is_document(w->path))
		return al_path_invalid("document", w->path);
	if (w->op != AL_WRITE_SET && w->op != AL_WRITE_UPDATE && w->op != AL_WRITE_DELETE)
		return al_error_set(AL_EINVAL, "document %s: unknown write operation %d", w->path,
			(int)w->op);
	if (w->pre != AL_PRE_NONE && w->pre != AL_PRE_EXISTS && w->pre != AL_PRE_MISSING)
		return al_error_set(AL_EINVAL, "document %s: unknown precondition %d", w->path,
			(int)w->pre);
	if (w->mask && (w->op != AL_WRITE_UPDATE || !cJSON_IsArray(w->mask)))
		return al_error_set(AL_EINVAL, "document %s: only an update takes a mask (an array of "
			"field paths)", w->path);
	if (w->op == AL_WRITE_DELETE || !w->fields)
		return w->mask ? mask_covers(w) : 0;
	if (!cJSON_IsObject(w->fields))
		return al_error_set(AL_EINVAL, "document %s: fields are not an object", w->path);
	cJSON_ArrayForEach(f, w->fields)
		if (!al_value_is_valid(f))
			return al_error_set(AL_EINVAL, "document %s: field %s is not a typed value",
				w->path, f->string);
	if (w->mask && (rc = mask_covers(w)))
		return rc;
	/* Firestore's limits, for every backend: the embedded store refuses what Firestore would,
	 * so nothing accepted here is refused later (README "Where the data lives"). */
	return al_fields_check(w->path, w->fields);
}

static int set_copy(cJSON *into, const char *name, const cJSON *v)
{
	cJSON *copy = cJSON_Duplicate(v, 1);
	if (!copy)
		return al_error_set(AL_ENOMEM, "out of memory");
	al_fields_set(into, name, copy);
	return 0;
}

int al_write_apply(cJSON *doc, const al_write *w)
{
	const cJSON *f, *p;
	int rc = 0;

	if (w->op != AL_WRITE_UPDATE || !w->fields || !w->mask) {
		if (w->op != AL_WRITE_UPDATE)   /* set and delete replace everything */
			while (doc->child)
				cJSON_Delete(cJSON_DetachItemViaPointer(doc, doc->child));
		if (w->op != AL_WRITE_DELETE)
			cJSON_ArrayForEach(f, w->fields)
				if ((rc = set_copy(doc, f->string, f)))
					return rc;
		return 0;
	}
	cJSON_ArrayForEach(p, w->mask) {
		const char *field, *key;
		const cJSON *v;
		cJSON *map;
		if (!al_mask_path(&field, &key, p))
			continue;   /* al_write_check refused it already */
		v = al_fields_get(w->fields, field);
		if (!key) {
			if (v)
				rc = set_copy(doc, field, v);
			else
				cJSON_DeleteItemFromObjectCaseSensitive(doc, field);
		} else if ((v = al_fields_get(al_value_get_map(v), key))) {
			/* Setting a key of a field that is not a map makes it one (as Firestore does). */
			if (!(map = al_value_map_fields(cJSON_GetObjectItemCaseSensitive(doc, field)))) {
				al_fields_set(doc, field, al_value_map(NULL));
				map = al_value_map_fields(cJSON_GetObjectItemCaseSensitive(doc, field));
			}
			rc = map ? set_copy(map, key, v) : al_error_set(AL_ENOMEM, "out of memory");
		} else if ((map = al_value_map_fields(cJSON_GetObjectItemCaseSensitive(doc, field)))) {
			cJSON_DeleteItemFromObjectCaseSensitive(map, key);
		}
		if (rc)
			return rc;
	}
	return 0;
}
