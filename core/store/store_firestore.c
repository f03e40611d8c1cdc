/* aletheia: the Firestore metastore backend (firestore:PROJECT): the store.h table over
 * Firestore's REST API v1, against Google or the emulator (FIRESTORE_EMULATOR_HOST). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/net/http.h"
#include "core/doc/json.h"
#include "core/store/store.h"
#include "core/doc/value.h"

/* Documents per runQuery page and collection ids per listCollectionIds page. */
#define PAGE_SIZE 300

typedef struct {
	al_store_backend base;
	al_http *http;
	char *project;
	char *database;
	char *root;      /* "projects/P/databases/D/documents": prefix of document names */
	char *url_root;  /* "http://HOST/v1/" + root, escaped */
	char *endpoint;  /* for describe */
	int emulator;
	al_token_fn token;
	void *token_ctx;
	void (*token_free)(void *ctx);
	void (*token_reject)(void *ctx, const char *token);
} fs_store;

static int nomem(const char *what)
{
	return al_error_set(AL_ENOMEM, "out of memory: firestore %s", what);
}

/* url_root + "/" + each segment of path percent-encoded (path may be "") + suffix. */
static char *make_url(fs_store *s, const char *path, const char *suffix)
{
	al_buf b = AL_BUF_INIT;
	char *seg = NULL, *esc = NULL;
	const char *p = path;

	if (al_buf_puts(&b, s->url_root))
		goto fail;
	while (*p) {
		size_t n = strcspn(p, "/");
		if (!(seg = strndup(p, n)) || !(esc = al_http_escape(seg)) ||
		    al_buf_printf(&b, "/%s", esc))
			goto fail;
		free(seg);
		free(esc);
		seg = esc = NULL;
		p += n;
		if (*p == '/')
			p++;
	}
	if (al_buf_puts(&b, suffix))
		goto fail;
	return al_buf_detach(&b, NULL);
fail:
	free(seg);
	free(esc);
	al_buf_dispose(&b);
	return NULL;
}

/* Google's error body {"error":{"code","message","status"}}: status and message, or NULL. */
static void google_error(const al_http_response *r, cJSON **parsed, const char **status,
	const char **message)
{
	const cJSON *e;
	*status = *message = NULL;
	*parsed = r->body.ptr ? cJSON_ParseWithLength(r->body.ptr, r->body.len) : NULL;
	e = cJSON_GetObjectItemCaseSensitive(*parsed, "error");
	*status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "status"));
	*message = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
}

/* An answer that is not 2xx (al_http_request already failed on 429 and 5xx). */
static int status_error(const al_http_response *r, const char *what)
{
	cJSON *parsed;
	const char *status, *message;
	int code = AL_EIO, rc;

	google_error(r, &parsed, &status, &message);
	if (!status)
		status = "";
	if (strcmp(status, "NOT_FOUND") == 0 || strcmp(status, "FAILED_PRECONDITION") == 0 ||
	    (!*status && r->status == 404))
		code = AL_ENOTFOUND;
	else if (strcmp(status, "ALREADY_EXISTS") == 0)
		code = AL_EEXISTS;
	else if (strcmp(status, "INVALID_ARGUMENT") == 0 || strcmp(status, "OUT_OF_RANGE") == 0 ||
		 (!*status && r->status == 400))
		code = AL_EINVAL;
	else if (strcmp(status, "PERMISSION_DENIED") == 0 ||
		 strcmp(status, "UNAUTHENTICATED") == 0 || r->status == 401 || r->status == 403)
		code = AL_EACCES;
	else if (strcmp(status, "ABORTED") == 0)
		code = AL_EBUSY;
	rc = al_error_set(code, "firestore %s: HTTP %ld %s: %s", what, r->status, status,
		message ? message : "(no error message)");
	cJSON_Delete(parsed);
	return rc;
}

/* One REST call; body (may be NULL) is sent as JSON. */
static int call(al_http_response *resp, fs_store *s, const char *method, const char *url,
	const cJSON *body, unsigned flags)
{
	char *text = NULL, *token = NULL, *auth = NULL;
	const char *headers[3] = {NULL, NULL, NULL};
	int rc = 0, attempt;

	/* Our printer: doubles must reach Firestore bit for bit (json.h). */
	if (body && (rc = al_json_print(&text, NULL, body, 0)))
		goto cleanup;
	if (text)
		headers[1] = "Content-Type: application/json";
	if (s->emulator) {
		headers[0] = "Authorization: Bearer owner";
		rc = al_http_request(resp, s->http, method, url, headers, text,
			text ? strlen(text) : 0, flags);
		goto cleanup;
	}
	/* A 401 means the token was refused (revoked, or expired before its time): one retry with
	 * a fresh one. The request was not processed, so this is safe for any request. */
	for (attempt = 0; attempt < 2; attempt++) {
		if (token) {
			if (s->token_reject)
				s->token_reject(s->token_ctx, token);
			explicit_bzero(token, strlen(token));
			explicit_bzero(auth, strlen(auth));
			free(token);
			free(auth);
			token = auth = NULL;
		}
		if ((rc = s->token(&token, s->token_ctx)))
			goto cleanup;
		if (asprintf(&auth, "Authorization: Bearer %s", token) < 0) {
			auth = NULL;
			rc = nomem("request");
			goto cleanup;
		}
		headers[0] = auth;
		rc = al_http_request(resp, s->http, method, url, headers, text,
			text ? strlen(text) : 0, flags);
		if (rc || resp->status != 401 || !s->token_reject)
			break;
	}
cleanup:
	/* Tokens are secrets: wipe them before their memory is reused. */
	if (token)
		explicit_bzero(token, strlen(token));
	if (auth)
		explicit_bzero(auth, strlen(auth));
	free(token);
	free(auth);
	free(text);
	return rc;
}

/* A REST Document → al_doc. */
static int doc_from_json(al_doc **out, fs_store *s, const cJSON *j)
{
	const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "name"));
	const cJSON *fields = cJSON_GetObjectItemCaseSensitive(j, "fields");
	const char *ct = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "createTime"));
	const char *ut = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "updateTime"));
	size_t rl = strlen(s->root);
	al_doc *doc = NULL;
	int rc = 0;

	*out = NULL;
	if (!name || strncmp(name, s->root, rl) != 0 || name[rl] != '/' || !al_path_is_document(name + rl + 1)) {
		rc = al_error_set(AL_EIO, "firestore answered a document named '%s' outside %s",
			name ? name : "(none)", s->root);
		goto cleanup;
	}
	if (fields && !cJSON_IsObject(fields)) {
		rc = al_error_set(AL_EIO, "firestore document %s: fields are not an object", name);
		goto cleanup;
	}
	if (!(doc = calloc(1, sizeof(*doc))) || !(doc->path = strdup(name + rl + 1)) ||
	    !(doc->fields = fields ? cJSON_Duplicate(fields, 1) : cJSON_CreateObject())) {
		rc = nomem("reading a document");
		goto cleanup;
	}
	if ((ct && al_time_parse(&doc->create_us, ct)) || (ut && al_time_parse(&doc->update_us, ut))) {
		rc = al_error_set(AL_EIO, "firestore document %s: bad createTime/updateTime", name);
		goto cleanup;
	}
	*out = doc;
	doc = NULL;
cleanup:
	al_doc_free(doc);
	return rc;
}

static int fs_get(al_doc **out, al_store_backend *b, const char *path)
{
	fs_store *s = (fs_store *)b;
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	cJSON *j = NULL;
	char *url = NULL;
	int rc;

	*out = NULL;
	if (!al_path_is_document(path))
		return al_path_invalid("document", path);
	if (!(url = make_url(s, path, ""))) {
		rc = nomem("get");
		goto cleanup;
	}
	if ((rc = call(&r, s, "GET", url, NULL, AL_HTTP_IDEMPOTENT)))
		goto cleanup;
	if (r.status == 404) {
		rc = al_error_set(AL_ENOTFOUND, "document %s not found", path);
		goto cleanup;
	}
	if (r.status != 200) {
		rc = status_error(&r, "get");
		goto cleanup;
	}
	if (!(j = cJSON_ParseWithLength(r.body.ptr ? r.body.ptr : "", r.body.len))) {
		rc = al_error_set(AL_EIO, "firestore get %s: the answer is not JSON", path);
		goto cleanup;
	}
	rc = doc_from_json(out, s, j);
cleanup:
	cJSON_Delete(j);
	free(url);
	al_http_response_dispose(&r);
	return rc;
}

/* An id Firestore accepts inside a reference, so usable as a query cursor. */
static int cursor_id(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	return n > 0 && n <= 1500 && !strchr(id, '/') && strcmp(id, ".") != 0 &&
		strcmp(id, "..") != 0 && !(n >= 4 && strncmp(id, "__", 2) == 0 &&
		strcmp(id + n - 2, "__") == 0);
}

/* Adds item to obj under key (to an array when key is NULL); on failure frees item, so calls
 * chain with && and a failed chain leaks nothing but needs the root freed. */
static int put_item(cJSON *obj, const char *key, cJSON *item)
{
	if (item && obj && (key ? cJSON_AddItemToObject(obj, key, item) :
	    cJSON_AddItemToArray(obj, item)))
		return 1;
	cJSON_Delete(item);
	return 0;
}

/* {"values":[{"referenceValue": root/collection/id}],"before":before}; collection NULL: id is
 * a whole document path. */
static cJSON *cursor(fs_store *s, const char *collection, const char *id, int before)
{
	cJSON *c = cJSON_CreateObject(), *values, *ref;
	char *name = NULL;
	int ok;

	if (asprintf(&name, "%s/%s%s%s", s->root, collection ? collection : "",
		collection ? "/" : "", id) < 0)
		name = NULL;
	ok = name && put_item(c, "values", values = cJSON_CreateArray()) &&
		put_item(values, NULL, ref = cJSON_CreateObject()) &&
		put_item(ref, "referenceValue", cJSON_CreateString(name)) &&
		put_item(c, "before", cJSON_CreateBool(before));
	free(name);
	if (!ok) {
		cJSON_Delete(c);
		return NULL;
	}
	return c;
}

/* Documents per batchGet request: keeps requests and answers small. */
#define BATCH_GET_MAX 100

/* batchGet: the answer is a stream of {"found": Document} and {"missing": name} in any order,
 * matched back to paths by full name. */
static int fs_get_many(al_doc **out, al_store_backend *b, const char *const *paths, size_t n)
{
	fs_store *s = (fs_store *)b;
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	cJSON *body = NULL, *names, *answer = NULL, *el;
	char *url = NULL, *name = NULL;
	size_t i, at, rl = strlen(s->root);
	int rc = 0;

	for (i = 0; i < n; i++) {
		out[i] = NULL;
		if (!al_path_is_document(paths[i]))
			return al_path_invalid("document", paths[i]);
	}
	if (!(url = make_url(s, "", ":batchGet")))
		goto oom;
	for (at = 0; at < n; at += BATCH_GET_MAX) {
		size_t end = at + BATCH_GET_MAX < n ? at + BATCH_GET_MAX : n;
		if (!(body = cJSON_CreateObject()) ||
		    !put_item(body, "documents", names = cJSON_CreateArray()))
			goto oom;
		for (i = at; i < end; i++) {
			if (asprintf(&name, "%s/%s", s->root, paths[i]) < 0) {
				name = NULL;
				goto oom;
			}
			if (!put_item(names, NULL, cJSON_CreateString(name)))
				goto oom;
			free(name);
			name = NULL;
		}
		if ((rc = call(&r, s, "POST", url, body, AL_HTTP_IDEMPOTENT)))
			goto cleanup;
		if (r.status != 200) {
			rc = status_error(&r, "batchGet");
			goto cleanup;
		}
		answer = cJSON_ParseWithLength(r.body.ptr ? r.body.ptr : "", r.body.len);
		if (!cJSON_IsArray(answer)) {
			rc = al_error_set(AL_EIO, "firestore batchGet: the answer is not an array");
			goto cleanup;
		}
		cJSON_ArrayForEach(el, answer) {
			const cJSON *found = cJSON_GetObjectItemCaseSensitive(el, "found");
			al_doc *doc = NULL;
			if (!found)
				continue;   /* "missing" (stays NULL), or readTime-only elements */
			if ((rc = doc_from_json(&doc, s, found)))
				goto cleanup;
			for (i = at; i < end; i++)
				if (!out[i] && strcmp(paths[i], doc->path) == 0)
					break;
			if (i == end) {
				rc = al_error_set(AL_EIO, "firestore batchGet answered %.*s/%s, not asked for",
					(int)rl, s->root, doc->path);
				al_doc_free(doc);
				goto cleanup;
			}
			out[i] = doc;
		}
		cJSON_Delete(body);
		cJSON_Delete(answer);
		al_http_response_dispose(&r);
		body = answer = NULL;
	}
	goto cleanup;
oom:
	rc = nomem("batchGet");
cleanup:
	if (rc)
		for (i = 0; i < n; i++) {
			al_doc_free(out[i]);
			out[i] = NULL;
		}
	cJSON_Delete(body);
	cJSON_Delete(answer);
	al_http_response_dispose(&r);
	free(url);
	free(name);
	return rc;
}

/* runQuery body for one page of the collection coll_id, ordered by __name__: directly below
 * the parent (collection is its path, for the cursors), or with group set in every collection
 * of that id at any depth below it (cursors are then whole document paths). Bounds that
 * Firestore cannot take as a reference are left to the caller's own check. */
static cJSON *page_query(fs_store *s, const char *collection, const char *coll_id, int group,
	const char *id_from, const char *id_to, const char *after)
{
	cJSON *body = cJSON_CreateObject(), *q, *from, *f, *order, *o, *field;
	const char *cur = group ? NULL : collection;
	int ok = put_item(body, "structuredQuery", q = cJSON_CreateObject()) &&
		put_item(q, "from", from = cJSON_CreateArray()) &&
		put_item(from, NULL, f = cJSON_CreateObject()) &&
		put_item(f, "collectionId", cJSON_CreateString(coll_id)) &&
		(!group || put_item(f, "allDescendants", cJSON_CreateTrue())) &&
		put_item(q, "orderBy", order = cJSON_CreateArray()) &&
		put_item(order, NULL, o = cJSON_CreateObject()) &&
		put_item(o, "field", field = cJSON_CreateObject()) &&
		put_item(field, "fieldPath", cJSON_CreateString("__name__")) &&
		put_item(o, "direction", cJSON_CreateString("ASCENDING")) &&
		(!after || put_item(q, "startAt", cursor(s, cur, after, 0))) &&
		(after || !cursor_id(id_from) ||
		 put_item(q, "startAt", cursor(s, cur, id_from, 1))) &&
		(!cursor_id(id_to) || put_item(q, "endAt", cursor(s, cur, id_to, 1))) &&
		put_item(q, "limit", cJSON_CreateNumber(PAGE_SIZE));
	if (!ok) {
		cJSON_Delete(body);
		return NULL;
	}
	return body;
}

static int by_id(const void *a, const void *b)
{
	const al_doc *x = *(al_doc *const *)a, *y = *(al_doc *const *)b;
	return strcmp(al_doc_id(x->path), al_doc_id(y->path));
}

/* Runs one runQuery page and appends its documents to list (*cap its room); *page gets how
 * many documents came (PAGE_SIZE: there may be more). what names the call in messages. */
static int query_page(fs_store *s, const char *url, cJSON *body, const char *what,
	al_doc_list *list, size_t *cap, int *page)
{
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	cJSON *answer = NULL, *el;
	int rc;

	*page = 0;
	if ((rc = call(&r, s, "POST", url, body, AL_HTTP_IDEMPOTENT)))
		goto cleanup;
	if (r.status != 200) {
		rc = status_error(&r, what);
		goto cleanup;
	}
	answer = cJSON_ParseWithLength(r.body.ptr ? r.body.ptr : "", r.body.len);
	if (!cJSON_IsArray(answer)) {
		rc = al_error_set(AL_EIO, "firestore %s: runQuery did not answer an array", what);
		goto cleanup;
	}
	cJSON_ArrayForEach(el, answer) {
		const cJSON *dj = cJSON_GetObjectItemCaseSensitive(el, "document");
		al_doc *doc = NULL;
		if (!dj)
			continue; /* readTime-only or skippedResults elements */
		if ((rc = doc_from_json(&doc, s, dj)))
			goto cleanup;
		if (list->count == *cap) {
			size_t ncap = *cap ? *cap * 2 : 16;
			al_doc **docs = realloc(list->docs, ncap * sizeof(*docs));
			if (!docs) {
				al_doc_free(doc);
				rc = nomem(what);
				goto cleanup;
			}
			list->docs = docs;
			*cap = ncap;
		}
		list->docs[list->count++] = doc;
		(*page)++;
	}
cleanup:
	cJSON_Delete(answer);
	al_http_response_dispose(&r);
	return rc;
}

/* Pages through a query until a short page: collection (its id coll_id) directly below parent,
 * or with group every collection coll_id below it; each next page starts just after the last
 * document. */
static int query_all(al_doc_list **out, fs_store *s, const char *parent, const char *collection,
	const char *coll_id, int group, const char *id_from, const char *id_to, const char *what)
{
	al_doc_list *list = NULL;
	cJSON *body = NULL;
	char *url = NULL, *after = NULL;
	size_t cap = 0;
	int rc = 0, page;

	*out = NULL;
	if (!(list = calloc(1, sizeof(*list))) || !(url = make_url(s, parent, ":runQuery")))
		goto oom;
	do {
		const char *last;
		if (!(body = page_query(s, collection, coll_id, group, id_from, id_to, after)))
			goto oom;
		if ((rc = query_page(s, url, body, what, list, &cap, &page)))
			goto cleanup;
		cJSON_Delete(body);
		body = NULL;
		if (page == 0)
			break;
		last = list->docs[list->count - 1]->path;
		free(after);
		if (!(after = strdup(group ? last : al_doc_id(last))))
			goto oom;
	} while (page == PAGE_SIZE);
	*out = list;
	list = NULL;
	goto cleanup;
oom:
	rc = nomem(what);
cleanup:
	al_doc_list_free(list);
	cJSON_Delete(body);
	free(url);
	free(after);
	return rc;
}

/* Ranges become runQuery cursors on __name__ (startAt before id_from, endAt before id_to), so
 * only the range is read; pages follow with startAt just after the last document. The bounds
 * are also checked here, which covers bounds that are not valid ids (e.g. containing '/'). */
static int fs_list(al_doc_list **out, al_store_backend *b, const char *collection,
	const char *id_from, const char *id_to)
{
	fs_store *s = (fs_store *)b;
	al_doc_list *list = NULL;
	char *parent = NULL;
	const char *coll_id;
	size_t i, w;
	int rc = 0, n = al_path_segments(collection);

	*out = NULL;
	if (n < 0 || n % 2 != 1)
		return al_path_invalid("collection", collection);
	coll_id = strrchr(collection, '/');
	coll_id = coll_id ? coll_id + 1 : collection;
	/* runQuery is asked of the parent document ("" for the root), "from" the collection id */
	if (!(parent = strndup(collection, coll_id > collection ?
		(size_t)(coll_id - collection - 1) : 0)))
		return nomem("list");
	if (id_from && id_to && strcmp(id_from, id_to) >= 0)
		rc = (list = calloc(1, sizeof(*list))) ? 0 : nomem("list");
	else
		rc = query_all(&list, s, parent, collection, coll_id, 0, id_from, id_to, "list");
	free(parent);
	if (rc)
		return rc;
	for (i = w = 0; i < list->count; i++) {
		const char *id = al_doc_id(list->docs[i]->path);
		if ((id_from && strcmp(id, id_from) < 0) || (id_to && strcmp(id, id_to) >= 0))
			al_doc_free(list->docs[i]);
		else
			list->docs[w++] = list->docs[i];
	}
	list->count = w;
	/* Firestore orders ids by UTF-8 bytes, as store.h wants; sorting makes it certain. */
	if (list->count > 1)
		qsort(list->docs, list->count, sizeof(*list->docs), by_id);
	*out = list;
	return 0;
}

/* A collection-group query scoped to parent_doc: runQuery on the document with allDescendants,
 * paged like fs_list with startAt just after the last document's full name. */
static int fs_list_group(al_doc_list **out, al_store_backend *b, const char *parent_doc,
	const char *coll_id)
{
	fs_store *s = (fs_store *)b;
	al_doc_list *list = NULL;
	size_t pl, i;
	int rc;

	*out = NULL;
	if ((rc = al_group_check(parent_doc, coll_id)) || (rc = query_all(&list, s, parent_doc, NULL, coll_id, 1, NULL, NULL, "group query")))
		return rc;
	pl = strlen(parent_doc);
	for (i = 0; i < list->count; i++) {
		const char *path = list->docs[i]->path;
		if (strncmp(path, parent_doc, pl) != 0 || path[pl] != '/') {
			rc = al_error_set(AL_EIO, "firestore group query under %s answered %s",
				parent_doc, path);
			al_doc_list_free(list);
			return rc;
		}
	}
	*out = list;
	return 0;
}

static int by_string(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Firestore counts a collection when any document lies below it, also deeper down (the SQLite
 * backend: directly in it); aletheia keeps every parent document, so the two agree in practice. */
static int fs_list_collections(char ***out, size_t *count, al_store_backend *b,
	const char *doc_path)
{
	fs_store *s = (fs_store *)b;
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	cJSON *body = NULL, *answer = NULL;
	const cJSON *id;
	char **ids = NULL, *url = NULL, *token = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	*out = NULL;
	*count = 0;
	if (!doc_path)
		doc_path = "";
	if (*doc_path && !al_path_is_document(doc_path))
		return al_path_invalid("document", doc_path);
	if (!(url = make_url(s, doc_path, ":listCollectionIds")))
		goto oom;
	do {
		const char *next;
		if (!(body = cJSON_CreateObject()) ||
		    !cJSON_AddNumberToObject(body, "pageSize", PAGE_SIZE) ||
		    (token && !cJSON_AddStringToObject(body, "pageToken", token)))
			goto oom;
		if ((rc = call(&r, s, "POST", url, body, AL_HTTP_IDEMPOTENT)))
			goto cleanup;
		if (r.status != 200) {
			rc = status_error(&r, "list collections");
			goto cleanup;
		}
		answer = cJSON_ParseWithLength(r.body.ptr ? r.body.ptr : "", r.body.len);
		if (!cJSON_IsObject(answer)) {
			rc = al_error_set(AL_EIO, "firestore list collections of '%s': the answer is "
				"not a JSON object", doc_path);
			goto cleanup;
		}
		cJSON_ArrayForEach(id, cJSON_GetObjectItemCaseSensitive(answer, "collectionIds")) {
			if (!cJSON_IsString(id))
				continue;
			if (n + 1 >= cap) { /* keep room for a terminating NULL, as the SQLite backend */
				size_t ncap = cap ? cap * 2 : 8;
				char **grown = realloc(ids, ncap * sizeof(*grown));
				if (!grown)
					goto oom;
				ids = grown;
				cap = ncap;
			}
			if (!(ids[n] = strdup(id->valuestring)))
				goto oom;
			ids[++n] = NULL;
		}
		free(token);
		token = NULL;
		next = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(answer, "nextPageToken"));
		if (next && *next && !(token = strdup(next)))
			goto oom;
		cJSON_Delete(body);
		cJSON_Delete(answer);
		body = answer = NULL;
	} while (token);
	if (!ids && !(ids = calloc(1, sizeof(*ids))))
		goto oom;
	qsort(ids, n, sizeof(*ids), by_string);
	*out = ids;
	*count = n;
	ids = NULL;
	goto cleanup;
oom:
	rc = nomem("list collections");
cleanup:
	al_strings_free(ids, n);
	cJSON_Delete(body);
	cJSON_Delete(answer);
	al_http_response_dispose(&r);
	free(url);
	free(token);
	return rc;
}

/* A top-level field name as a field path (§1.6): simple names bare, others in backticks. */
static char *field_path(const char *name)
{
	al_buf b = AL_BUF_INIT;
	int simple = *name && !(*name >= '0' && *name <= '9');
	for (const char *p = name; *p && simple; p++)
		simple = *p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9');
	if (simple)
		return strdup(name);
	if (al_buf_puts(&b, "`"))
		goto fail;
	for (const char *p = name; *p; p++)
		if (((*p == '`' || *p == '\\') && al_buf_puts(&b, "\\")) || al_buf_put(&b, p, 1))
			goto fail;
	if (al_buf_puts(&b, "`"))
		goto fail;
	return al_buf_detach(&b, NULL);
fail:
	al_buf_dispose(&b);
	return NULL;
}

/* One Write of a commit (§1.3). */
static cJSON *write_json(fs_store *s, const al_write *w)
{
	cJSON *j = cJSON_CreateObject(), *doc, *mask, *paths, *pre;
	const cJSON *f, *first = w->fields ? w->fields->child : NULL;
	char *name = NULL, *fp = NULL;
	int ok;

	if (asprintf(&name, "%s/%s", s->root, w->path) < 0)
		name = NULL;
	if (w->op == AL_WRITE_DELETE) {
		ok = name && put_item(j, "delete", cJSON_CreateString(name));
	} else {
		/* The caller's fields are borrowed: the copy refers to their first member. */
		ok = name && put_item(j, "update", doc = cJSON_CreateObject()) &&
			put_item(doc, "name", cJSON_CreateString(name)) &&
			put_item(doc, "fields", first ? cJSON_CreateObjectReference(first) :
				cJSON_CreateObject());
		if (ok && w->op == AL_WRITE_UPDATE) {
			ok = put_item(j, "updateMask", mask = cJSON_CreateObject()) &&
				put_item(mask, "fieldPaths", paths = cJSON_CreateArray());
			for (f = first; ok && !w->mask && f; f = f->next) {
				ok = (fp = field_path(f->string)) &&
					put_item(paths, NULL, cJSON_CreateString(fp));
				free(fp);
			}
			/* Paths into a map ("hyper_params.`opt/beta1`"): only those keys change, so two
			 * mounts writing other keys of one map both keep theirs. */
			cJSON_ArrayForEach(f, w->mask) {
				const char *field, *key;
				char *kp = NULL;
				if (!ok)
					break;
				ok = al_mask_path(&field, &key, f) && (fp = field_path(field)) &&
					(!key || (kp = field_path(key)));
				if (ok && kp) {
					char *both = NULL;
					ok = asprintf(&both, "%s.%s", fp, kp) >= 0;
					free(fp);
					fp = ok ? both : NULL;
				}
				ok = ok && put_item(paths, NULL, cJSON_CreateString(fp));
				free(fp);
				free(kp);
				fp = NULL;
			}
		}
	}
	if (ok && w->pre != AL_PRE_NONE)
		ok = put_item(j, "currentDocument", pre = cJSON_CreateObject()) &&
			put_item(pre, "exists", cJSON_CreateBool(w->pre == AL_PRE_EXISTS));
	free(name);
	if (!ok) {
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

/* The write whose precondition failed: the only one with that precondition, or the one the
 * server's message names. NULL if unknown. */
static const al_write *failed_write(fs_store *s, const al_write *writes, size_t count,
	al_precondition pre, const char *message)
{
	const al_write *only = NULL;
	size_t candidates = 0, rl = strlen(s->root);

	for (size_t i = 0; i < count; i++) {
		if (writes[i].pre != pre)
			continue;
		candidates++;
		only = &writes[i];
	}
	if (candidates == 1)
		return only;
	for (const char *m = message; m && (m = strstr(m, s->root)); m += rl) {
		const char *name = m + rl + 1;
		if (m[rl] != '/')
			continue;
		for (size_t i = 0; i < count; i++) {
			size_t n = strlen(writes[i].path);
			if (writes[i].pre == pre && strncmp(name, writes[i].path, n) == 0 &&
			    (name[n] == '\0' || strchr(" \"'\n,;)", name[n])))
				return &writes[i];
		}
	}
	return NULL;
}

/* All writes in one commit: Firestore applies them atomically and in order. A commit is sent
 * once (not idempotent: repeating a plain set could undo a later writer), unless every write is
 * create-only, which no repetition can apply twice; a retry after a lost answer then reports
 * AL_EEXISTS for a document this very commit created, which the write-behind tells from another
 * mount's by reading it back (store_wb.h). */
static int fs_commit(al_store_backend *b, const al_write *writes, size_t count)
{
	fs_store *s = (fs_store *)b;
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	cJSON *body = NULL, *list, *w, *err = NULL;
	const char *status, *message;
	char *url = NULL;
	unsigned flags = AL_HTTP_IDEMPOTENT;
	int rc = 0;

	if (count == 0)
		return 0;
	for (size_t i = 0; i < count; i++) {
		if ((rc = al_write_check(&writes[i])))
			return rc;
		if (writes[i].pre != AL_PRE_MISSING)
			flags = 0;
	}
	if (!(body = cJSON_CreateObject()) || !(list = cJSON_AddArrayToObject(body, "writes")) ||
	    !(url = make_url(s, "", ":commit")))
		goto oom;
	for (size_t i = 0; i < count; i++)
		if (!(w = write_json(s, &writes[i])) || !cJSON_AddItemToArray(list, w))
			goto oom;
	if ((rc = call(&r, s, "POST", url, body, flags)))
		goto cleanup;
	if (r.status == 200)
		goto cleanup;
	google_error(&r, &err, &status, &message);
	if (status && (strcmp(status, "ALREADY_EXISTS") == 0 || strcmp(status, "NOT_FOUND") == 0 ||
	    strcmp(status, "FAILED_PRECONDITION") == 0)) {
		int exists = strcmp(status, "ALREADY_EXISTS") == 0;
		const al_write *fw = failed_write(s, writes, count,
			exists ? AL_PRE_MISSING : AL_PRE_EXISTS, message);
		if (fw)
			rc = al_error_set(exists ? AL_EEXISTS : AL_ENOTFOUND, "document %s %s", fw->path,
				exists ? "already exists" : "not found");
		else
			rc = al_error_set(exists ? AL_EEXISTS : AL_ENOTFOUND, "firestore commit of %zu "
				"writes: %s: %s", count, status, message ? message : "");
		goto cleanup;
	}
	rc = status_error(&r, "commit");
	goto cleanup;
oom:
	rc = nomem("commit");
cleanup:
	cJSON_Delete(err);
	cJSON_Delete(body);
	al_http_response_dispose(&r);
	free(url);
	return rc;
}

static char *fs_describe(al_store_backend *b)
{
	fs_store *s = (fs_store *)b;
	al_http_stats st;
	char *text = NULL;

	al_http_get_stats(&st, s->http);
	if (asprintf(&text, "backend: firestore\nstore: firestore:%s\ndatabase: %s\nendpoint: %s%s\n"
		"requests: %llu\nretries: %llu\nfailed requests: %llu\n", s->project, s->database,
		s->endpoint, s->emulator ? " (emulator)" : "", (unsigned long long)st.requests,
		(unsigned long long)st.retries, (unsigned long long)st.failures) < 0)
		return NULL;
	return text;
}

static void fs_free(al_store_backend *b)
{
	fs_store *s = (fs_store *)b;
	if (!s)
		return;
	al_http_free(s->http);
	if (s->token_free)
		s->token_free(s->token_ctx);
	free(s->project);
	free(s->database);
	free(s->root);
	free(s->url_root);
	free(s->endpoint);
	free(s);
}

/* Project and database ids go into URLs unescaped: letters, digits and - . _ : ( ) only. */
static int valid_name(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0 || n > 100)
		return 0;
	for (const char *p = id; *p; p++)
		if (!(((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z') || (*p >= '0' && *p <= '9') ||
		      strchr("-._:()", *p)))
			return 0;
	return 1;
}

int al_store_firestore_new(al_store_backend **out, const al_firestore_options *opts)
{
	fs_store *s = NULL;
	const char *host;
	int rc = 0;

	*out = NULL;
	if (!opts || opts->version != AL_FIRESTORE_OPTIONS_VERSION)
		return al_error_set(AL_EINVAL, "firestore options missing or of another version");
	if (!valid_name(opts->project))
		return al_error_set(AL_EINVAL, "invalid Firestore project id '%s'",
			opts->project ? opts->project : "");
	if (opts->database && !valid_name(opts->database))
		return al_error_set(AL_EINVAL, "invalid Firestore database id '%s'", opts->database);
	host = opts->emulator_host;
	if (host && strncmp(host, "http://", 7) == 0) /* tolerated, though the convention has none */
		host += 7;
	if (host && (!*host || strcspn(host, "/?#@ ") != strlen(host)))
		return al_error_set(AL_EINVAL, "invalid FIRESTORE_EMULATOR_HOST '%s': expected "
			"host:port", opts->emulator_host);
	if (host && opts->endpoint)
		return al_error_set(AL_EINVAL, "firestore: both an emulator host and an endpoint given");
	if (!host && !opts->token)
		return al_error_set(AL_EINVAL, "firestore:%s: no Google credentials (token "
			"callback) and no emulator host", opts->project);
	if (!(s = calloc(1, sizeof(*s))))
		goto oom;
	s->base = (al_store_backend){
		.version = AL_STORE_BACKEND_VERSION,
		.name = "firestore",
		.get = fs_get,
		.list = fs_list,
		.list_collections = fs_list_collections,
		.commit = fs_commit,
		.describe = fs_describe,
		.free = fs_free,
		.list_group = fs_list_group,
		.get_many = fs_get_many,
	};
	s->emulator = host != NULL;
	s->token = opts->token;
	s->token_ctx = opts->token_ctx;
	s->token_free = opts->token_free;
	s->token_reject = opts->token_reject;
	if (!(s->project = strdup(opts->project)) ||
	    !(s->database = strdup(opts->database ? opts->database : "(default)")))
		goto oom;
	/* asprintf leaves its pointer undefined on failure */
	if (asprintf(&s->endpoint, "%s%s", host ? "http://" : opts->endpoint ? "" :
		"https://firestore.googleapis.com", host ? host : opts->endpoint ? opts->endpoint : "") < 0)
		s->endpoint = NULL;
	if (asprintf(&s->root, "projects/%s/databases/%s/documents", s->project, s->database) < 0)
		s->root = NULL;
	if (!s->endpoint || !s->root ||
	    asprintf(&s->url_root, "%s/v1/%s", s->endpoint, s->root) < 0) {
		s->url_root = NULL;
		goto oom;
	}
	if ((rc = al_http_new(&s->http, (const al_http_options *)opts->http)))
		goto cleanup;
	*out = &s->base;
	s = NULL;
	goto cleanup;
oom:
	rc = nomem("opening the store");
cleanup:
	fs_free(s ? &s->base : NULL);
	return rc;
}
