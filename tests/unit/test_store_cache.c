/* Unit tests of the read cache: reuse within the TTL, listings answering for their documents,
 * invalidation by writes through it, expiry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "aletheia/store.h"
#include "aletheia/store_cache.h"
#include "aletheia/value.h"
#include "check.h"

/* Counts the requests that reach the backend. */
typedef struct counting {
	al_store_backend base;
	al_store_backend *inner;
	int gets, lists;
} counting;

static int k_get(al_doc **out, al_store_backend *b, const char *path)
{
	counting *k = (counting *)b;
	k->gets++;
	return al_store_get(out, k->inner, path);
}

static int k_list(al_doc_list **out, al_store_backend *b, const char *c, const char *from, const char *to)
{
	counting *k = (counting *)b;
	k->lists++;
	return al_store_list(out, k->inner, c, from, to);
}

static int k_colls(char ***out, size_t *n, al_store_backend *b, const char *doc)
{
	counting *k = (counting *)b;
	return k->inner->list_collections(out, n, k->inner, doc);
}

static int k_commit(al_store_backend *b, const al_write *w, size_t n)
{
	counting *k = (counting *)b;
	return al_store_commit(k->inner, w, n);
}

static void k_free(al_store_backend *b)
{
	(void)b;
}

static int64_t value_of(al_store_backend *b, const char *path)
{
	al_doc *d = NULL;
	int64_t v = -1;
	if (al_store_get(&d, b, path) == 0)
		al_fields_get_int(&v, d->fields, "v");
	al_doc_free(d);
	return v;
}

int main(void)
{
	char root[] = "/tmp/al-cache-store-XXXXXX", cmd[300];
	al_store_backend *sql = NULL, *c = NULL;
	counting k;
	al_doc_list *l = NULL;
	cJSON *f = cJSON_CreateObject();
	al_write w;
	int i;

	CHECK(mkdtemp(root) != NULL);
	CHECK_OK(al_store_sqlite_new(&sql, root));
	memset(&k, 0, sizeof(k));
	k.base.version = AL_STORE_BACKEND_VERSION;
	k.base.name = "counting";
	k.base.get = k_get;
	k.base.list = k_list;
	k.base.list_collections = k_colls;
	k.base.commit = k_commit;
	k.base.free = k_free;
	k.inner = sql;
	CHECK_OK(al_store_cache_new(&c, &k.base, 300));

	for (i = 0; i < 50; i++) {
		char path[64];
		snprintf(path, sizeof(path), "runs/%d", i);
		al_fields_set(f, "v", al_value_int(i));
		w = (al_write){AL_WRITE_SET, path, f, AL_PRE_NONE};
		CHECK_OK(al_store_commit(c, &w, 1));
	}
	/* One listing answers for all of its documents: no request per entry. */
	CHECK_OK(al_store_list(&l, c, "runs", NULL, NULL));
	CHECK_EQ_INT(l ? l->count : 0, 50);
	al_doc_list_free(l);
	for (i = 0; i < 50; i++) {
		char path[64];
		snprintf(path, sizeof(path), "runs/%d", i);
		CHECK_EQ_INT(value_of(c, path), i);
	}
	CHECK_EQ_INT(k.lists, 1);
	CHECK_EQ_INT(k.gets, 0);
	/* A repeat within the TTL costs nothing; missing documents are remembered too. */
	CHECK_OK(al_store_list(&l, c, "runs", NULL, NULL));
	al_doc_list_free(l);
	CHECK(value_of(c, "runs/none") == -1);
	CHECK(value_of(c, "runs/none") == -1);
	CHECK_EQ_INT(k.lists, 1);
	CHECK_EQ_INT(k.gets, 1);

	/* A write through the cache is visible at once (document and listing). */
	al_fields_set(f, "v", al_value_int(100));
	w = (al_write){AL_WRITE_SET, "runs/7", f, AL_PRE_NONE};
	CHECK_OK(al_store_commit(c, &w, 1));
	CHECK_EQ_INT(value_of(c, "runs/7"), 100);
	w = (al_write){AL_WRITE_SET, "runs/none", f, AL_PRE_NONE};
	CHECK_OK(al_store_commit(c, &w, 1));
	CHECK_EQ_INT(value_of(c, "runs/none"), 100);
	CHECK_OK(al_store_list(&l, c, "runs", NULL, NULL));
	CHECK_EQ_INT(l ? l->count : 0, 51);
	al_doc_list_free(l);
	CHECK_EQ_INT(k.lists, 2);

	/* A change behind the cache's back (another mount) shows once the TTL has passed. */
	al_fields_set(f, "v", al_value_int(200));
	w = (al_write){AL_WRITE_SET, "runs/8", f, AL_PRE_NONE};
	CHECK_OK(al_store_commit(sql, &w, 1));
	CHECK_EQ_INT(value_of(c, "runs/8"), 8);
	usleep(350 * 1000);
	CHECK_EQ_INT(value_of(c, "runs/8"), 200);

	al_store_free(c);
	al_store_free(sql);
	cJSON_Delete(f);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_DONE();
}
