/* aletheia unit test: the metastore (core/store/store.c) and its SQLite backend (core/store/store_sqlite.c). */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/store/store.h"
#include "core/store/store_cache.h"
#include "core/store/store_wb.h"
#include "core/doc/value.h"
#include "check.h"
#include "store_contract.h"

static char tmp[] = "/tmp/aletheia-test-store-XXXXXX";
static char store_dir[256];

static void test_open_errors(void)
{
	al_store_backend *b = (al_store_backend *)1;
	CHECK_EQ_INT(al_store_open(&b, "bogus:/x"), AL_EINVAL);
	CHECK(b == NULL);
	CHECK(strstr(al_error_last(), "local:DIR") != NULL);
	CHECK(strstr(al_error_last(), "firestore:PROJECT_ID") != NULL);
	/* Firestore without the emulator and without any Google credentials: one clear line. */
	unsetenv("FIRESTORE_EMULATOR_HOST");
	unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
	setenv("CLOUDSDK_CONFIG", "/nonexistent/al-test-gcloud", 1);
	setenv("NO_GCE_CHECK", "True", 1);
	CHECK(al_store_open(&b, "firestore:my-project") != 0);
	CHECK(strstr(al_error_last(), "GOOGLE_APPLICATION_CREDENTIALS") != NULL);
	CHECK_EQ_INT(al_store_open(&b, "local:"), AL_EINVAL);
	CHECK_EQ_INT(al_store_open(&b, NULL), AL_EINVAL);
	/* a path under a regular file can never be a directory, even for root */
	int rc = al_store_open(&b, "local:/etc/passwd/x");
	CHECK(rc == AL_EIO || rc == AL_EACCES);
	CHECK(b == NULL);
	CHECK(strstr(al_error_last(), "cannot open store directory /etc/passwd/x") != NULL);
	CHECK(strstr(al_error_last(), "Not a directory") != NULL);
}

static void test_ids(void)
{
	char *e = al_id_encode("a/b%c/%2F");
	CHECK_EQ_STR(e, "a%2Fb%25c%2F%252F");
	char *d = al_id_decode(e);
	CHECK_EQ_STR(d, "a/b%c/%2F");
	free(e);
	free(d);
	e = al_id_encode("");
	CHECK_EQ_STR(e, "");
	free(e);
	const char *bad[] = {"%", "%2", "%2f", "%41", "a%", "a/b", "%%25"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		d = al_id_decode(bad[i]);
		if (d)
			fprintf(stderr, "decode accepted '%s'\n", bad[i]);
		CHECK(d == NULL);
		free(d);
	}
	CHECK(al_id_decode(NULL) == NULL);
	CHECK_EQ_STR(al_doc_id("projects/p/runs/12"), "12");
	CHECK_EQ_STR(al_doc_id("x"), "x");
}

/* A row no parser reads back (stored by an older version: nested past cJSON's limit) hides only
 * itself from list: its neighbours still list; a get of it fails with EIO. Writes past Firestore's limits
 * are refused before they reach a row at all. */
static void test_unreadable_row(const char *uri, const char *dir)
{
	al_store_backend *b = NULL;
	sqlite3 *db = NULL;
	al_doc_list *l = NULL;
	al_doc *d = NULL;
	char path[300], *deep;
	cJSON *f = cJSON_CreateObject(), *v = al_value_int(1);
	al_write w = {AL_WRITE_SET, "bad/ok", NULL, AL_PRE_NONE, NULL};

	CHECK_OK(al_store_open(&b, uri));
	if (!b)
		return;
	al_fields_set(f, "v", al_value_int(1));
	w.fields = f;
	CHECK_OK(al_store_commit(b, &w, 1));
	for (int i = 0; i < 25; i++) {   /* 25 levels: refused, as Firestore would */
		cJSON *m = cJSON_CreateObject();
		al_fields_set(m, "k", v);
		v = al_value_map(m);
	}
	al_fields_set(f, "v", v);
	w.path = "bad/deep";
	CHECK_EQ_INT(al_store_commit(b, &w, 1), AL_EINVAL);
	cJSON_Delete(f);
	al_store_free(b);
	/* a row as an older version could have written it */
	snprintf(path, sizeof(path), "%s/meta.db", dir);
	CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
	deep = malloc(3000 + 64);
	strcpy(deep, "{\"v\":");
	for (int i = 0; i < 1500; i++)
		strcat(deep, "[");
	for (int i = 0; i < 1500; i++)
		strcat(deep, "]");
	strcat(deep, "}");
	char *sql = sqlite3_mprintf("INSERT INTO docs VALUES ('bad/old', 'bad', '', 'old', %Q, 1, 1)", deep);
	CHECK_EQ_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_free(sql);
	free(deep);
	sqlite3_close(db);
	CHECK_OK(al_store_open(&b, uri));
	if (!b)
		return;
	CHECK_OK(al_store_list(&l, b, "bad", NULL, NULL));
	CHECK_EQ_INT(l ? l->count : 0, 1);
	al_doc_list_free(l);
	/* list_meta reads no fields: the row is listed (store.h), a get of it fails as below */
	CHECK_OK(al_store_list_meta(&l, b, "bad"));
	CHECK_EQ_INT(l ? l->count : 0, 2);
	al_doc_list_free(l);
	CHECK_EQ_INT(al_store_get(&d, b, "bad/old"), AL_EIO);
	CHECK_OK(al_store_get(&d, b, "bad/ok"));
	al_doc_free(d);
	al_store_free(b);
}

static int freed;
static void fake_free(al_store_backend *b)
{
	(void)b;
	freed++;
}

/* A table of another version, or one missing a required operation, is refused where it is taken
 * in: by the check and by the decorators (which then free it, as they own it). */
static void test_backend_versions(void)
{
	al_store_backend fake = {.version = 1, .name = "old", .free = fake_free}, *out = NULL;
	CHECK_EQ_INT(al_store_backend_check(&fake), AL_EINVAL);
	CHECK(strstr(al_error_last(), "table version 1") != NULL);
	CHECK_EQ_INT(al_store_cache_new(&out, &fake, 1000), AL_EINVAL);
	CHECK(out == NULL && freed == 1);
	fake.version = AL_STORE_BACKEND_VERSION;   /* right version, no get/list/commit */
	CHECK_EQ_INT(al_store_backend_check(&fake), AL_EINVAL);
	CHECK_EQ_INT(al_store_wb_new(&out, &fake, "/nonexistent/al-wb", 1000), AL_EINVAL);
	CHECK(out == NULL && freed == 2);
}

/* get_text of long texts, read through store_sqlite's read-ahead (256 KiB pieces of the file
 * during the blob read): the stored text byte for byte, whether the pages lie together or are
 * interleaved with other documents', when a document is rewritten with other text between two
 * reads (no piece outlives its read), and at the end of the file (a short piece). */
typedef struct {
	char *text;
	size_t len;
} got_text;

static int keep_text(void *ctx, const char *text, size_t len)
{
	got_text *g = ctx;
	g->text = malloc(len + 1);
	memcpy(g->text, text, len + 1);
	g->len = len;
	return 0;
}

static char *long_string(size_t n, unsigned seed)
{
	char *v = malloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		v[i] = (char)('a' + (seed >> 16) % 26);
	}
	v[n] = '\0';
	return v;
}

static void put_long(al_store_backend *b, const char *path, const char *v)
{
	cJSON *f = cJSON_CreateObject();
	al_fields_set(f, "v", al_value_string(v));
	al_write w = {AL_WRITE_SET, path, f, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(b, &w, 1));
	cJSON_Delete(f);
}

static void check_long(al_store_backend *b, const char *path, const char *v)
{
	got_text g = {NULL, 0};
	int called = 0;
	char *want = NULL;
	CHECK_OK(al_store_get_text(&called, b, path, keep_text, &g));
	CHECK(called);
	CHECK(asprintf(&want, "{\"v\":{\"stringValue\":\"%s\"}}", v) > 0);
	CHECK_EQ_INT((long long)g.len, (long long)strlen(want));
	CHECK(g.text && strcmp(g.text, want) == 0);
	free(want);
	free(g.text);
}

static void test_get_text_long(al_store_backend *b)
{
	static const size_t sizes[] = {100000, 300000, 700000, 1000000};
	char *v[4], *w[4], path[64];
	size_t i;
	int called = 0;
	got_text g = {NULL, 0};

	for (i = 0; i < 4; i++) {
		v[i] = long_string(sizes[i], (unsigned)i + 1);
		w[i] = long_string(sizes[i] + 5000, (unsigned)i + 100);
		snprintf(path, sizeof(path), "long/d%zu", i);
		put_long(b, path, v[i]);
		snprintf(path, sizeof(path), "long/small%zu", i);
		put_long(b, path, "x");
	}
	for (i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "long/d%zu", i);
		check_long(b, path, v[i]);
	}
	/* rewritten between reads: the new text, never the old one's pages */
	for (i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "long/d%zu", i);
		put_long(b, path, w[i]);
		check_long(b, path, w[i]);
		check_long(b, "long/d3", i == 3 ? w[3] : v[3]);
	}
	/* the same pages rewritten and checkpointed into the file (another connection: the WAL
	 * no longer holds them), then read again: the new text, not the last read's piece */
	{
		char dbpath[400];
		sqlite3 *db = NULL;
		snprintf(dbpath, sizeof(dbpath), "%s/meta.db", store_dir);
		CHECK_EQ_INT(sqlite3_open(dbpath, &db), SQLITE_OK);
		for (i = 0; i < 6; i++) {
			char *x = long_string(200000, (unsigned)i + 1000);
			put_long(b, "long/same", x);
			CHECK_EQ_INT(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
				SQLITE_OK);
			check_long(b, "long/same", x);
			free(x);
		}
		sqlite3_close(db);
		al_write del = {AL_WRITE_DELETE, "long/same", NULL, AL_PRE_NONE, NULL};
		CHECK_OK(al_store_commit(b, &del, 1));
	}
	for (i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "long/d%zu", i);
		al_write del = {AL_WRITE_DELETE, path, NULL, AL_PRE_NONE, NULL};
		CHECK_OK(al_store_commit(b, &del, 1));
		CHECK_EQ_INT(al_store_get_text(&called, b, path, keep_text, &g), AL_ENOTFOUND);
		snprintf(path, sizeof(path), "long/small%zu", i);
		al_write del2 = {AL_WRITE_DELETE, path, NULL, AL_PRE_NONE, NULL};
		CHECK_OK(al_store_commit(b, &del2, 1));
		free(v[i]);
		free(w[i]);
	}
}

/* A field of /proc/self/status in kB (VmRSS, VmHWM), or -1. */
static long status_kib(const char *key)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "re");
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0)
			v = atol(line + strlen(key));
	if (f)
		fclose(f);
	return v;
}

/* store_sqlite maps the file and drops the mapping's pages from the page tables as it goes
 * (ra_fetch): reading 240 MB of documents does not leave them in RSS, nor take its peak that far
 * (unbounded, it grew by all of it; dropped every 128 MiB touched, by about that). */
static void test_mapped_reads_bounded(al_store_backend *b)
{
	enum { DOCS = 240, LEN = 1000000 };
	char *v = long_string(LEN, 7), path[64];
	long base, peak;
	FILE *f;
	for (int i = 0; i < DOCS; i += 5) {   /* five a commit: fewer syncs */
		al_write w[5];
		cJSON *fl[5];
		char paths[5][64];
		for (int k = 0; k < 5; k++) {
			fl[k] = cJSON_CreateObject();
			v[0] = (char)('a' + (i + k) % 26);
			al_fields_set(fl[k], "v", al_value_string(v));
			snprintf(paths[k], sizeof(paths[k]), "mapped/d%03d", i + k);
			w[k] = (al_write){AL_WRITE_SET, paths[k], fl[k], AL_PRE_NONE, NULL};
		}
		CHECK_OK(al_store_commit(b, w, 5));
		for (int k = 0; k < 5; k++)
			cJSON_Delete(fl[k]);
	}
	if (!(f = fopen("/proc/self/clear_refs", "we"))) {
		fprintf(stderr, "no /proc/self/clear_refs: mapped-read RSS not checked\n");
		goto cleanup;
	}
	fputs("5", f);   /* resets VmHWM */
	fclose(f);
	base = status_kib("VmRSS:");
	for (int i = 0; i < DOCS; i++) {
		got_text g = {NULL, 0};
		int called = 0;
		snprintf(path, sizeof(path), "mapped/d%03d", i);
		CHECK_OK(al_store_get_text(&called, b, path, keep_text, &g));
		CHECK(called && g.len == LEN + 24 && g.text[21] == (char)('a' + i % 26));
		free(g.text);
	}
	peak = status_kib("VmHWM:");
	CHECK(base > 0 && peak > 0);
	if (peak - base >= 200 * 1024)
		fprintf(stderr, "RSS peak %ld kB over %ld kB reading %d MB\n", peak - base, base,
			DOCS * LEN / 1000000);
	CHECK(peak - base < 200 * 1024);
	CHECK(status_kib("VmRSS:") - base < 200 * 1024);
cleanup:
	for (int i = 0; i < DOCS; i++) {
		snprintf(path, sizeof(path), "mapped/d%03d", i);
		al_write del = {AL_WRITE_DELETE, path, NULL, AL_PRE_NONE, NULL};
		CHECK_OK(al_store_commit(b, &del, 1));
	}
	free(v);
}

/* list_text and list_group_text hand each document's text over once, in any order. */
typedef struct {
	char paths[64][80];
	char texts[64][256];
	size_t n;
} seen_rows;

static int keep_row(void *ctx, const char *path, const char *text, size_t len, int64_t update_us)
{
	seen_rows *r = ctx;
	CHECK(update_us > 0);
	CHECK_EQ_INT((long long)strlen(text), (long long)len);
	if (r->n < 64) {
		snprintf(r->paths[r->n], sizeof(r->paths[0]), "%s", path);
		snprintf(r->texts[r->n], sizeof(r->texts[0]), "%s", text);
	}
	r->n++;
	return 0;
}

static int stop_row(void *ctx, const char *path, const char *text, size_t len, int64_t update_us)
{
	(void)path, (void)text, (void)len, (void)update_us;
	return ++*(int *)ctx == 2 ? AL_EEXISTS : 0;
}

/* The text seen_rows holds for path ("" when it was not handed over). */
static const char *row_text(const seen_rows *r, const char *path)
{
	for (size_t i = 0; i < r->n && i < 64; i++)
		if (strcmp(r->paths[i], path) == 0)
			return r->texts[i];
	return "";
}

/* list_group_text: the documents of one collection id at any depth below a document, each once,
 * none of other collections, of other documents, or of a deeper collection of another name;
 * written again after a read (and checkpointed by another connection), the new text is read. */
static void test_group_text(al_store_backend *b)
{
	static const char *want[] = {"g/e/runs/1/metrics/a", "g/e/runs/1/metrics/a/metrics/z",
		"g/e/runs/1/metrics/b", "g/e/runs/10/metrics/a", "g/e/runs/2/metrics/a%2Fb",
		"g/e/metrics/top"};
	static const char *others[] = {"g/e/runs/1", "g/e/runs/2", "g/e/artifacts/a",
		"g/e/runs/1/metrics/a/chunks/0", "g/e/runs/1/artifacts/metrics", "g/other/runs/1/metrics/a",
		"g/e2/runs/1/metrics/a", "g/e/runs/1/metricsx/a", "g/e/runs/1/xmetrics/a", "g/f/metrics/a"};
	seen_rows *r = calloc(1, sizeof(*r));
	char text[64], dbpath[400];
	size_t i, j;
	int calls = 0;
	sqlite3 *db = NULL;

	CHECK(b->list_group_text != NULL);
	if (!b->list_group_text || !r)
		goto cleanup;
	for (i = 0; i < sizeof(others) / sizeof(*others); i++)
		CHECK_OK(put(b, others[i], "k", 100 + (int64_t)i, AL_PRE_NONE));
	for (i = 0; i < sizeof(want) / sizeof(*want); i++)
		CHECK_OK(put(b, want[i], "k", (int64_t)i, AL_PRE_NONE));
	CHECK_OK(b->list_group_text(b, "g/e", "metrics", keep_row, r));
	CHECK_EQ_INT(r->n, sizeof(want) / sizeof(*want));
	for (i = 0; i < sizeof(want) / sizeof(*want); i++) {
		snprintf(text, sizeof(text), "{\"k\":{\"integerValue\":\"%zu\"}}", i);
		CHECK_EQ_STR(row_text(r, want[i]), text);
		for (j = i + 1; j < r->n && j < 64; j++)
			CHECK(strcmp(r->paths[i], r->paths[j]) != 0);
	}
	/* written again, the pages checkpointed into the file by another connection: new text */
	snprintf(dbpath, sizeof(dbpath), "%s/meta.db", store_dir);
	CHECK_EQ_INT(sqlite3_open(dbpath, &db), SQLITE_OK);
	for (i = 0; i < sizeof(want) / sizeof(*want); i++)
		CHECK_OK(put(b, want[i], "k", 1000 + (int64_t)i, AL_PRE_NONE));
	CHECK_EQ_INT(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), SQLITE_OK);
	memset(r, 0, sizeof(*r));
	CHECK_OK(b->list_group_text(b, "g/e", "metrics", keep_row, r));
	CHECK_EQ_INT(r->n, sizeof(want) / sizeof(*want));
	for (i = 0; i < sizeof(want) / sizeof(*want); i++) {
		snprintf(text, sizeof(text), "{\"k\":{\"integerValue\":\"%zu\"}}", 1000 + i);
		CHECK_EQ_STR(row_text(r, want[i]), text);
	}
	/* list_text: one collection's documents only */
	memset(r, 0, sizeof(*r));
	CHECK_OK(b->list_text(b, "g/e/runs/1/metrics", keep_row, r));
	CHECK_EQ_INT(r->n, 2);
	CHECK_EQ_STR(row_text(r, "g/e/runs/1/metrics/a"), "{\"k\":{\"integerValue\":\"1000\"}}");
	CHECK_EQ_STR(row_text(r, "g/e/runs/1/metrics/b"), "{\"k\":{\"integerValue\":\"1002\"}}");
	/* fn's first nonzero return stops the listing and is returned */
	CHECK_EQ_INT(b->list_group_text(b, "g/e", "metrics", stop_row, &calls), AL_EEXISTS);
	CHECK_EQ_INT(calls, 2);
	/* nothing of that name, or nothing below: no call */
	memset(r, 0, sizeof(*r));
	CHECK_OK(b->list_group_text(b, "g/e", "nothing", keep_row, r));
	CHECK_OK(b->list_group_text(b, "g/none", "metrics", keep_row, r));
	CHECK_EQ_INT(r->n, 0);
	/* bad input */
	CHECK_EQ_INT(b->list_group_text(b, "g", "metrics", keep_row, r), AL_EINVAL);
	CHECK_EQ_INT(b->list_group_text(b, "g/e", "a/b", keep_row, r), AL_EINVAL);
	CHECK_EQ_INT(b->list_group_text(b, "g/e", "", keep_row, r), AL_EINVAL);
	CHECK_EQ_INT(b->list_group_text(b, "", "metrics", keep_row, r), AL_EINVAL);
	CHECK_EQ_INT(r->n, 0);
	for (i = 0; i < sizeof(want) / sizeof(*want); i++) {
		al_write del = {AL_WRITE_DELETE, want[i], NULL, AL_PRE_NONE, NULL};
		CHECK_OK(al_store_commit(b, &del, 1));
	}
	for (i = 0; i < sizeof(others) / sizeof(*others); i++) {
		al_write del = {AL_WRITE_DELETE, others[i], NULL, AL_PRE_NONE, NULL};
		CHECK_OK(al_store_commit(b, &del, 1));
	}
cleanup:
	if (db)
		sqlite3_close(db);
	free(r);
}

int main(void)
{
	al_store_backend *b = NULL, *b2 = NULL;
	char uri[300], cmd[300];

	CHECK(mkdtemp(tmp) != NULL);
	snprintf(store_dir, sizeof(store_dir), "%s/nested/store", tmp); /* mkdir -p */
	snprintf(uri, sizeof(uri), "local:%s", store_dir);

	test_open_errors();
	test_ids();
	test_backend_versions();
	CHECK_OK(al_store_open(&b, uri));
	if (!b)
		CHECK_DONE();

	/* the lock: a second opener is refused while the first is open */
	CHECK_EQ_INT(al_store_open(&b2, uri), AL_EBUSY);
	CHECK(b2 == NULL);
	char expect[64];
	snprintf(expect, sizeof(expect), "(pid %ld)", (long)getpid());
	CHECK(strstr(al_error_last(), "already mounted") != NULL);
	CHECK(strstr(al_error_last(), expect) != NULL);

	contract_basic(b, "sqlite", 0);
	contract_atomic(b);
	contract_mask(b);
	contract_list(b);
	contract_race(b);
	test_group_text(b);

	char *desc = al_store_describe(b);
	char expect_desc[512];
	al_doc_list *l = NULL;
	size_t total = 0;
	CHECK_OK(al_store_list(&l, b, "race", NULL, NULL));
	al_doc_list_free(l);
	snprintf(expect_desc, sizeof(expect_desc), "backend: sqlite\nstore: local:%s\ndocuments: %d\n",
		store_dir, 1 + 4 + 2 + 7 + 5 + IDS - 1);   /* contract_mask: 2 */
	/* then documents_read: the count of documents parsed (get, list; not list_meta) */
	CHECK(desc && strncmp(desc, expect_desc, strlen(expect_desc)) == 0);
	CHECK(desc && strncmp(desc + strlen(expect_desc), "documents_read: ", 16) == 0);
	free(desc);
	(void)total;
	test_get_text_long(b);
	test_mapped_reads_bounded(b);

	/* close, reopen: data is still there, and the lock was released */
	al_store_free(b);
	b = NULL;
	CHECK_OK(al_store_open(&b, uri));
	if (b) {
		CHECK_EQ_INT(get_int(b, "projects/p", "only"), 7);
		CHECK_EQ_INT(get_int(b, "atomic/gone", "v"), 2);
		CHECK_OK(al_store_list(&l, b, "race", NULL, NULL));
		CHECK_EQ_INT(l ? l->count : 0, IDS);
		al_doc_list_free(l);
		al_store_free(b);
	}
	al_store_free(NULL);
	test_unreadable_row(uri, store_dir);

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_DONE();
}
