/* Unit tests of the read cache: reuse within the TTL, listings answering for their documents,
 * invalidation by writes through it, expiry, prefetch of sub-collections by group query, and
 * the bound on foreground waits with the last known copies it answers from. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/store/store.h"
#include "core/store/store_cache.h"
#include "core/doc/value.h"
#include "core/util.h"
#include "check.h"

/* Counts the requests that reach the backend. */
typedef struct counting {
	al_store_backend base;
	al_store_backend *inner;
	int gets, lists, groups, commits, manys;
	int slow_ms;                  /* each get and get_many takes this long (a slow backend) */
	int down;                     /* every call answers AL_EIO, as an unreachable backend */
	long budget;                  /* the calling thread's wait budget at the last call */
	int fail_group;               /* list_group answers AL_EIO */
	al_store_backend *outer;      /* with write_path: list_group writes it through outer, */
	const char *write_path;       /* as another thread would while the query runs */
} counting;

static int k_get(al_doc **out, al_store_backend *b, const char *path)
{
	counting *k = (counting *)b;
	k->gets++;
	k->budget = al__wait_budget();
	if (k->slow_ms)
		usleep((useconds_t)k->slow_ms * 1000);
	if (k->down)
		return al_error_set(AL_EIO, "unreachable");
	return al_store_get(out, k->inner, path);
}

/* Several documents in one request, as Firestore's batchGet (set only where a test wants it). */
static int k_get_many(al_doc **out, al_store_backend *b, const char *const *paths, size_t n)
{
	counting *k = (counting *)b;
	k->manys++;
	if (k->slow_ms)
		usleep((useconds_t)k->slow_ms * 1000);
	if (k->down)
		return al_error_set(AL_EIO, "unreachable");
	return al_store_get_many(out, k->inner, paths, n);
}

static int k_list(al_doc_list **out, al_store_backend *b, const char *c, const char *from, const char *to)
{
	counting *k = (counting *)b;
	k->lists++;
	k->budget = al__wait_budget();
	if (k->down)
		return al_error_set(AL_EIO, "unreachable");
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
	k->commits++;
	k->budget = al__wait_budget();
	if (k->down)
		return al_error_set(AL_EIO, "unreachable");
	return al_store_commit(k->inner, w, n);
}

/* Documents in collections named cid below doc, depth first (the walk list_group stands for). */
static int walk(al_doc_list *out, al_store_backend *b, const char *doc, const char *cid)
{
	char **colls = NULL;
	size_t n = 0, i, j;
	int rc = b->list_collections(&colls, &n, b, doc);
	for (i = 0; rc == 0 && i < n; i++) {
		al_doc_list *l = NULL;
		char coll[512];
		snprintf(coll, sizeof(coll), "%s/%s", doc, colls[i]);
		if ((rc = al_store_list(&l, b, coll, NULL, NULL)))
			break;
		for (j = 0; rc == 0 && j < l->count; j++) {
			if (strcmp(colls[i], cid) == 0) {
				out->docs = realloc(out->docs, (out->count + 1) * sizeof(al_doc *));
				out->docs[out->count] = calloc(1, sizeof(al_doc));
				out->docs[out->count]->path = strdup(l->docs[j]->path);
				out->docs[out->count++]->fields = cJSON_Duplicate(l->docs[j]->fields, 1);
			}
			rc = walk(out, b, l->docs[j]->path, cid);
		}
		al_doc_list_free(l);
	}
	al_strings_free(colls, n);
	return rc;
}

static int k_group(al_doc_list **out, al_store_backend *b, const char *doc, const char *cid)
{
	counting *k = (counting *)b;
	int rc;
	k->groups++;
	*out = NULL;
	if (k->fail_group)
		return al_error_set(AL_EIO, "unreachable");
	if (k->write_path) {
		cJSON *f = cJSON_CreateObject();
		al_write w = {AL_WRITE_SET, k->write_path, f, AL_PRE_NONE, NULL};
		al_fields_set(f, "v", al_value_int(99));
		rc = al_store_commit(k->outer, &w, 1);
		cJSON_Delete(f);
		if (rc)
			return rc;
	}
	*out = calloc(1, sizeof(**out));
	if ((rc = walk(*out, k->inner, doc, cid))) {
		al_doc_list_free(*out);
		*out = NULL;
	}
	return rc;
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

static void counting_init(counting *k, al_store_backend *inner)
{
	memset(k, 0, sizeof(*k));
	k->base.version = AL_STORE_BACKEND_VERSION;
	k->base.name = "counting";
	k->base.get = k_get;
	k->base.list = k_list;
	k->base.list_collections = k_colls;
	k->base.commit = k_commit;
	k->base.free = k_free;
	k->base.list_group = k_group;
	k->inner = inner;
}

static void set(al_store_backend *b, const char *path, int64_t v)
{
	cJSON *f = cJSON_CreateObject();
	al_write w = {AL_WRITE_SET, path, f, AL_PRE_NONE, NULL};
	al_fields_set(f, "v", al_value_int(v));
	CHECK_OK(al_store_commit(b, &w, 1));
	cJSON_Delete(f);
}

/* The ids of a listing through b, comma-separated ("" when empty, "ERR" on failure). */
static char *ids(al_store_backend *b, const char *coll, const char *from, const char *to)
{
	static char buf[256];
	al_doc_list *l = NULL;
	buf[0] = '\0';
	if (al_store_list(&l, b, coll, from, to) != 0)
		return strcpy(buf, "ERR");
	for (size_t i = 0; i < l->count; i++)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", i ? "," : "",
			al_doc_id(l->docs[i]->path));
	al_doc_list_free(l);
	return buf;
}

static void test_prefetch(const char *dir)
{
	al_store_backend *sql = NULL, *c = NULL, *c2 = NULL;
	counting k, plain;
	al_doc *d = NULL;

	CHECK_OK(al_store_sqlite_new(&sql, dir));
	if (!sql)
		return;
	counting_init(&k, sql);
	CHECK_OK(al_store_cache_new(&c, &k.base, 300));
	k.outer = c;
	set(sql, "p/e", 0);
	set(sql, "p/e/runs/1", 1);
	set(sql, "p/e/runs/2", 2);
	set(sql, "p/e/runs/3", 3);            /* no metrics */
	set(sql, "p/e/runs/1/metrics/a", 11);
	set(sql, "p/e/runs/1/metrics/b", 12);
	set(sql, "p/e/runs/2/metrics/a", 21);
	set(sql, "p/e/runs/1/metrics/a/chunks/0", 0);   /* deeper, another name */
	set(sql, "p/e/runs/1/metrics/a/metrics/z", 0);  /* deeper, the same name */
	set(sql, "p/e/metrics/top", 0);                 /* the experiment's own, not a run's */
	set(sql, "p/e/runs/1/artifacts/x", 0);
	set(sql, "p/e/artifacts/y", 0);
	set(sql, "p/e2/runs/1/metrics/a", 0);           /* another experiment */

	/* The first run missing its listing is only noted (also when asked again); the second
	 * starts one group query (and the runs' listing) that fills every run's listing, empty
	 * ones too. */
	CHECK_OK(al_store_cache_prefetch(c, "p/e/runs/1", "metrics"));
	CHECK_OK(al_store_cache_prefetch(c, "p/e/runs/1", "metrics"));
	CHECK_EQ_INT(k.groups + k.lists + k.gets, 0);
	CHECK_OK(al_store_cache_prefetch(c, "p/e/runs/2", "metrics"));
	CHECK_EQ_INT(k.groups, 1);
	CHECK_EQ_INT(k.lists, 1);
	CHECK_EQ_STR(ids(c, "p/e/runs/1/metrics", NULL, NULL), "a,b");
	CHECK_EQ_STR(ids(c, "p/e/runs/2/metrics", NULL, NULL), "a");
	CHECK_EQ_STR(ids(c, "p/e/runs/3/metrics", NULL, NULL), "");
	CHECK_EQ_STR(ids(c, "p/e/runs", NULL, NULL), "1,2,3");
	/* ranges of a listed collection, its documents, and its missing documents: no requests */
	CHECK_EQ_STR(ids(c, "p/e/runs/1/metrics", "b", NULL), "b");
	CHECK_EQ_STR(ids(c, "p/e/runs/1/metrics", NULL, "b"), "a");
	CHECK_EQ_STR(ids(c, "p/e/runs/1/metrics", "a", "a%2G"), "a");
	CHECK_EQ_STR(ids(c, "p/e/runs/3/metrics", "a", "z"), "");
	CHECK_EQ_INT(value_of(c, "p/e/runs/2/metrics/a"), 21);
	CHECK_EQ_INT(al_store_get(&d, c, "p/e/runs/3/metrics/a"), AL_ENOTFOUND);
	CHECK(d == NULL);
	CHECK_EQ_INT(al_store_get(&d, c, "p/e/runs/1/metrics/c"), AL_ENOTFOUND);
	CHECK_EQ_INT(k.lists, 1);
	CHECK_EQ_INT(k.gets, 0);
	/* what the query found elsewhere is not taken for a run's listing */
	CHECK_EQ_STR(ids(c, "p/e/runs/1/metrics/a/metrics", NULL, NULL), "z");
	CHECK_EQ_STR(ids(c, "p/e/metrics", NULL, NULL), "top");
	CHECK_EQ_STR(ids(c, "p/e2/runs/1/metrics", NULL, NULL), "a");
	CHECK_EQ_INT(k.lists, 4);
	/* a cached listing, or a prefetch within the TTL: no second query */
	CHECK_OK(al_store_cache_prefetch(c, "p/e/runs/2", "metrics"));
	set(c, "p/e/runs/1/metrics/c", 13);   /* invalidates run 1's listing */
	CHECK_OK(al_store_cache_prefetch(c, "p/e/runs/1", "metrics"));
	CHECK_EQ_INT(k.groups, 1);
	CHECK_EQ_STR(ids(c, "p/e/runs/1/metrics", NULL, NULL), "a,b,c");
	CHECK_EQ_INT(k.lists, 5);
	/* another collection id is another query; the experiment's artifacts stay out */
	CHECK_OK(al_store_cache_prefetch(c, "p/e/runs/2", "artifacts"));
	CHECK_EQ_INT(k.groups, 1);
	CHECK_OK(al_store_cache_prefetch(c, "p/e/runs/1", "artifacts"));
	CHECK_EQ_INT(k.groups, 2);
	CHECK_EQ_STR(ids(c, "p/e/runs/1/artifacts", NULL, NULL), "x");
	CHECK_EQ_STR(ids(c, "p/e/runs/2/artifacts", NULL, NULL), "");
	CHECK_EQ_INT(k.lists, 5);
	CHECK_EQ_STR(ids(c, "p/e/artifacts", NULL, NULL), "y");
	CHECK_EQ_INT(k.lists, 6);

	/* After the TTL: again; a collection written while the query ran is left out. */
	usleep(350 * 1000);
	k.write_path = "p/e/runs/2/metrics/b";
	CHECK_OK(al_store_cache_prefetch(c, "p/e/runs/1", "metrics"));
	CHECK_OK(al_store_cache_prefetch(c, "p/e/runs/3", "metrics"));
	k.write_path = NULL;
	CHECK_EQ_INT(k.groups, 3);
	CHECK_EQ_INT(k.lists, 7);
	CHECK_EQ_STR(ids(c, "p/e/runs/1/metrics", NULL, NULL), "a,b,c");
	CHECK_EQ_STR(ids(c, "p/e/runs/3/metrics", NULL, NULL), "");
	CHECK_EQ_INT(k.lists, 7);
	CHECK_EQ_STR(ids(c, "p/e/runs/2/metrics", NULL, NULL), "a,b");
	CHECK_EQ_INT(k.lists, 8);

	/* A failed query caches nothing, and is not repeated within the TTL. */
	usleep(350 * 1000);
	k.fail_group = 1;
	CHECK_OK(al_store_cache_prefetch(c, "p/e/runs/1", "metrics"));
	CHECK_EQ_INT(al_store_cache_prefetch(c, "p/e/runs/2", "metrics"), AL_EIO);
	CHECK_OK(al_store_cache_prefetch(c, "p/e/runs/3", "metrics"));
	CHECK_EQ_INT(k.groups, 4);
	k.fail_group = 0;
	CHECK_EQ_STR(ids(c, "p/e/runs/1/metrics", NULL, NULL), "a,b,c");
	CHECK_EQ_INT(k.lists, 10);   /* the runs, then run 1's metrics */

	/* Bad input; not a read cache, or a backend without group queries: nothing done. */
	CHECK_EQ_INT(al_store_cache_prefetch(c, "p/e", "metrics"), AL_EINVAL);
	CHECK_EQ_INT(al_store_cache_prefetch(c, "p/e/runs", "metrics"), AL_EINVAL);
	CHECK_EQ_INT(al_store_cache_prefetch(c, "p/e/runs/1", "a/b"), AL_EINVAL);
	CHECK_EQ_INT(al_store_cache_prefetch(c, "p/e/runs/1", ""), AL_EINVAL);
	CHECK_EQ_INT(al_store_cache_prefetch(c, NULL, "metrics"), AL_EINVAL);
	CHECK_OK(al_store_cache_prefetch(NULL, "p/e/runs/1", "metrics"));
	CHECK_OK(al_store_cache_prefetch(sql, "p/e/runs/1", "metrics"));
	counting_init(&plain, sql);
	plain.base.list_group = NULL;
	CHECK_OK(al_store_cache_new(&c2, &plain.base, 300));
	CHECK_OK(al_store_cache_prefetch(c2, "p/e/runs/1", "metrics"));
	CHECK_OK(al_store_cache_prefetch(c2, "p/e/runs/2", "metrics"));
	CHECK_EQ_INT(plain.lists + plain.gets + plain.groups, 0);
	CHECK_EQ_INT(k.groups, 4);

	al_store_free(c2);
	al_store_free(c);
	al_store_free(sql);
}

/* A slow backend (README "Firestore"): within one file operation a document asked for once is
 * not asked for again however old its answer; a walk down the tree (project, experiment, run,
 * each looked up by the kernel on its own) gets the documents above the one it misses in the same
 * request, so they age together, and a walk that starts over after they aged costs one request. */
static void test_slow(const char *dir)
{
	al_store_backend *sql = NULL, *c = NULL;
	counting k;
	int64_t op;

	CHECK_OK(al_store_sqlite_new(&sql, dir));
	if (!sql)
		return;
	counting_init(&k, sql);
	k.base.get_many = k_get_many;
	CHECK_OK(al_store_cache_new(&c, &k.base, 300));
	set(sql, "projects/p", 1);
	set(sql, "projects/p/experiments/e", 2);
	set(sql, "projects/p/experiments/e/runs/1", 3);

	/* one operation: answers it asked for serve all of it */
	op = al__op_begin();
	CHECK_EQ_INT(value_of(c, "projects/p"), 1);
	usleep(350 * 1000);
	CHECK_EQ_INT(value_of(c, "projects/p"), 1);
	CHECK_EQ_INT(k.gets + k.manys, 1);
	al__op_end(op);
	CHECK_EQ_INT(value_of(c, "projects/p"), 1);   /* the next operation asks again */
	CHECK_EQ_INT(k.gets + k.manys, 2);

	/* a walk at 100 ms a request: each miss brings the aging documents above it */
	usleep(350 * 1000);
	k.gets = k.manys = 0;
	k.slow_ms = 100;
	CHECK_EQ_INT(value_of(c, "projects/p"), 1);
	CHECK_EQ_INT(value_of(c, "projects/p/experiments/e"), 2);
	CHECK_EQ_INT(value_of(c, "projects/p/experiments/e/runs/1"), 3);
	CHECK_EQ_INT(k.gets, 1);
	CHECK_EQ_INT(k.manys, 2);
	/* all three aged together: a walk that starts over at the project costs one request */
	usleep(350 * 1000);
	CHECK_EQ_INT(value_of(c, "projects/p"), 1);
	CHECK_EQ_INT(value_of(c, "projects/p/experiments/e"), 2);
	CHECK_EQ_INT(value_of(c, "projects/p/experiments/e/runs/1"), 3);
	CHECK_EQ_INT(k.gets + k.manys, 4);
	al_store_free(c);
	al_store_free(sql);
}

/* Writes fields {"v": v} through b, with a precondition. */
static int write_v(al_store_backend *b, al_write_op op, const char *path, int64_t v, al_precondition pre)
{
	cJSON *f = cJSON_CreateObject();
	al_write w = {op, path, f, pre, NULL};
	int rc;
	al_fields_set(f, "v", al_value_int(v));
	rc = al_store_commit(b, &w, 1);
	cJSON_Delete(f);
	return rc;
}

/* While the backend is unreachable, a thread that answers file operations gets each request
 * bounded, then answers from the last known copies (with its own writes), and stops asking for
 * a while; background threads keep asking, unbounded. */
static void test_offline(const char *dir)
{
	al_store_backend *sql = NULL, *c = NULL;
	counting k;
	al_doc *d = NULL;
	char line[160];
	int n;

	CHECK_OK(al_store_sqlite_new(&sql, dir));
	if (!sql)
		return;
	counting_init(&k, sql);
	CHECK_OK(al_store_cache_new(&c, &k.base, 300));
	al__thread_set_background(0);
	al__foreground_wait_set(1234);
	set(sql, "o/1", 1);
	set(sql, "o/2", 2);
	/* What this mount knows before the outage: a listing, a document, a missing one, and its
	 * own writes (an update merged onto the known copy, a new document, a created one). */
	CHECK_EQ_STR(ids(c, "o", NULL, NULL), "1,2");
	CHECK_EQ_INT(k.budget, 1234);   /* the foreground bound reaches the backend's requests */
	CHECK_EQ_INT(value_of(c, "x/none"), -1);
	CHECK_OK(write_v(c, AL_WRITE_UPDATE, "o/1", 10, AL_PRE_EXISTS));
	CHECK_EQ_INT(k.budget, 1234);
	CHECK_OK(write_v(c, AL_WRITE_SET, "o/3", 3, AL_PRE_NONE));
	CHECK_OK(write_v(c, AL_WRITE_SET, "mine/r", 7, AL_PRE_MISSING));
	CHECK_OK(write_v(c, AL_WRITE_SET, "mine/r/items/a", 8, AL_PRE_NONE));
	{
		/* a document too large to keep a copy of (a metric chunk): its collection is then
		 * unknown, never taken for empty */
		cJSON *f = cJSON_CreateObject();
		char *big = malloc(100000);
		al_write w = {AL_WRITE_SET, "mine/r/chunks/0", f, AL_PRE_NONE, NULL};
		memset(big, 'x', 99999);
		big[99999] = '\0';
		al_fields_set(f, "v", al_value_string(big));
		CHECK_OK(al_store_commit(c, &w, 1));
		cJSON_Delete(f);
		free(big);
	}
	{
		/* an update of single keys of a map applies to the known copy as the backend
		 * applies it: the keys it names change, the others stay */
		cJSON *m = cJSON_Parse("{\"hp\":{\"mapValue\":{\"fields\":{\"a\":{\"integerValue\":\"1\"},"
			"\"b\":{\"integerValue\":\"2\"}}}}}"), *mask = cJSON_CreateArray();
		cJSON *u = cJSON_Parse("{\"hp\":{\"mapValue\":{\"fields\":{\"c\":{\"integerValue\":\"3\"}}}}}");
		al_write w = {AL_WRITE_SET, "m/1", m, AL_PRE_NONE, NULL};
		CHECK_OK(al_store_commit(sql, &w, 1));
		CHECK_OK(al_store_get(&d, c, "m/1"));
		al_doc_free(d);
		d = NULL;
		al_mask_add(mask, "hp", "c");
		al_mask_add(mask, "hp", "a");
		w = (al_write){AL_WRITE_UPDATE, "m/1", u, AL_PRE_EXISTS, mask};
		CHECK_OK(al_store_commit(c, &w, 1));
		cJSON_Delete(m);
		cJSON_Delete(u);
		cJSON_Delete(mask);
	}
	CHECK_EQ_INT(al_store_cache_offline(line, sizeof(line), c), 0);
	usleep(350 * 1000);   /* every answer has expired */

	k.down = 1;
	n = k.gets + k.lists;
	CHECK_EQ_INT(value_of(c, "o/1"), 10);       /* one request fails: offline */
	CHECK_EQ_INT(k.gets + k.lists, n + 1);
	CHECK(al_store_cache_offline(line, sizeof(line), c) > 0);
	CHECK(strstr(line, "answers from the last known copies") != NULL);
	CHECK_EQ_STR(ids(c, "o", NULL, NULL), "1,2,3");
	CHECK_EQ_STR(ids(c, "o", "2", NULL), "2,3");
	CHECK_EQ_INT(value_of(c, "o/3"), 3);
	CHECK_EQ_INT(al_store_get(&d, c, "o/9"), AL_ENOTFOUND);      /* not in the listing */
	CHECK_EQ_INT(al_store_get(&d, c, "x/none"), AL_ENOTFOUND);   /* known missing */
	CHECK_EQ_INT(value_of(c, "mine/r"), 7);
	if (al_store_get(&d, c, "m/1") == 0) {
		const cJSON *hp = al_value_get_map(al_fields_get(d->fields, "hp"));
		CHECK(hp && !al_fields_get(hp, "a") && al_fields_get(hp, "b") && al_fields_get(hp, "c"));
	} else
		CHECK(!"m/1 has a last known copy");
	al_doc_free(d);
	d = NULL;
	CHECK_EQ_STR(ids(c, "mine/r/items", NULL, NULL), "a");       /* below a created document */
	CHECK_EQ_STR(ids(c, "mine/r/other", NULL, NULL), "");
	CHECK_EQ_INT(al_store_get(&d, c, "mine/r/other/z"), AL_ENOTFOUND);
	CHECK_EQ_STR(ids(c, "mine/r/chunks", NULL, NULL), "ERR");
	CHECK_EQ_INT(al_store_get(&d, c, "mine/r/chunks/1"), AL_EIO);
	CHECK_EQ_INT(al_store_get(&d, c, "q/unknown"), AL_EIO);      /* nothing known: fails */
	CHECK(strstr(al_error_last(), "unreachable") != NULL);
	CHECK_EQ_STR(ids(c, "q", NULL, NULL), "ERR");
	CHECK_EQ_INT(k.gets + k.lists, n + 1);   /* none of these asked the backend */
	/* A commit is sent, bounded; failed, it changes no copy. */
	CHECK_EQ_INT(write_v(c, AL_WRITE_SET, "o/2", 20, AL_PRE_NONE), AL_EIO);
	CHECK_EQ_INT(value_of(c, "o/2"), 2);

	/* A background thread asks the backend, without a bound; its success ends the outage. */
	al__thread_set_background(1);
	CHECK_EQ_INT(value_of(c, "o/1"), 10);
	CHECK_EQ_INT(k.gets + k.lists, n + 2);
	CHECK_EQ_INT(k.budget, 0);
	k.down = 0;
	set(sql, "o/4", 4);
	CHECK_EQ_STR(ids(c, "o", NULL, NULL), "1,2,3,4");
	al__thread_set_background(0);
	CHECK_EQ_INT(al_store_cache_offline(line, sizeof(line), c), 0);
	usleep(350 * 1000);
	CHECK_EQ_INT(value_of(c, "o/4"), 4);
	CHECK_EQ_INT(k.gets + k.lists, n + 4);
	al__foreground_wait_set(2500);
	al_store_free(c);
	al_store_free(sql);
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
	/* Caching itself, free of the bound on foreground waits (test_offline). */
	al__thread_set_background(1);
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
		w = (al_write){AL_WRITE_SET, path, f, AL_PRE_NONE, NULL};
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
	/* A repeat within the TTL costs nothing; the complete listing also knows what is missing,
	 * and a missing document asked outside a listed collection is remembered too. */
	CHECK_OK(al_store_list(&l, c, "runs", NULL, NULL));
	al_doc_list_free(l);
	CHECK(value_of(c, "runs/none") == -1);
	CHECK(value_of(c, "runs/none") == -1);
	CHECK(value_of(c, "other/none") == -1);
	CHECK(value_of(c, "other/none") == -1);
	CHECK_EQ_INT(k.lists, 1);
	CHECK_EQ_INT(k.gets, 1);

	/* Several at once: what the cache knows costs nothing, the rest goes to the backend once,
	 * and is then known too. */
	{
		const char *paths[4] = {"runs/3", "more/a", "other/none", "more/b"};
		al_doc *docs[4];
		al_fields_set(f, "v", al_value_int(5));
		w = (al_write){AL_WRITE_SET, "more/a", f, AL_PRE_NONE, NULL};
		CHECK_OK(al_store_commit(sql, &w, 1));
		CHECK_OK(al_store_get_many(docs, c, paths, 4));
		CHECK(docs[0] && docs[1] && !docs[2] && !docs[3]);
		CHECK_EQ_STR(docs[1] ? docs[1]->path : "", "more/a");
		CHECK_EQ_INT(k.gets, 3);          /* more/a and more/b (this fake has no get_many) */
		for (i = 0; i < 4; i++)
			al_doc_free(docs[i]);
		CHECK_OK(al_store_get_many(docs, c, paths, 4));
		CHECK_EQ_INT(k.gets, 3);
		CHECK(docs[1] && !docs[3]);
		for (i = 0; i < 4; i++)
			al_doc_free(docs[i]);
	}

	/* A write through the cache is visible at once (document and listing). */
	al_fields_set(f, "v", al_value_int(100));
	w = (al_write){AL_WRITE_SET, "runs/7", f, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(c, &w, 1));
	CHECK_EQ_INT(value_of(c, "runs/7"), 100);
	w = (al_write){AL_WRITE_SET, "runs/none", f, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(c, &w, 1));
	CHECK_EQ_INT(value_of(c, "runs/none"), 100);
	CHECK_OK(al_store_list(&l, c, "runs", NULL, NULL));
	CHECK_EQ_INT(l ? l->count : 0, 51);
	al_doc_list_free(l);
	CHECK_EQ_INT(k.lists, 2);

	/* A change behind the cache's back (another mount) shows once the TTL has passed. */
	al_fields_set(f, "v", al_value_int(200));
	w = (al_write){AL_WRITE_SET, "runs/8", f, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(sql, &w, 1));
	CHECK_EQ_INT(value_of(c, "runs/8"), 8);
	usleep(350 * 1000);
	CHECK_EQ_INT(value_of(c, "runs/8"), 200);

	al_store_free(c);
	al_store_free(sql);
	cJSON_Delete(f);
	test_prefetch(root);
	{
		char sub[300];
		snprintf(sub, sizeof(sub), "%s/offline", root);
		CHECK(mkdir(sub, 0700) == 0);
		test_offline(sub);
		snprintf(sub, sizeof(sub), "%s/slow", root);
		CHECK(mkdir(sub, 0700) == 0);
		test_slow(sub);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_DONE();
}
