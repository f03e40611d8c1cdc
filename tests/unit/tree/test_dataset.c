/* aletheia unit test of the tree: datasets — write-once data files and sub-folders, .dataset.json
 * (name, version, files, bytes, created, description) following the content, .description
 * (README "datasets", "Deleting and renaming"). */
#include "aletheia/hash.h"
#include <pthread.h>
#include <sqlite3.h>
#include "tree_fixture.h"

#define DS "/p/datasets/d"

/* The version README "datasets" defines: xxh3-128 of "PATH\tSIZE\tHASH\n" per file, by path. */
static const char *version_of(const char *lines)
{
	static char hex[AL_HASH_HEX_LEN + 1];
	al_hash_buffer(hex, lines, strlen(lines));
	return hex;
}

static const char *hash_of(const char *content)
{
	static char hex[4][AL_HASH_HEX_LEN + 1];
	static int next;
	next = (next + 1) % 4;
	al_hash_buffer(hex[next], content, strlen(content));
	return hex[next];
}

static void check_dataset_json(const char *version, int files, int bytes, const char *description)
{
	cJSON *j = tree_json(DS "/.dataset.json");
	char want[64];
	CHECK(j != NULL);
	CHECK_EQ_STR(tree_json_get(j, "name"), "\"d\"");
	snprintf(want, sizeof(want), "\"%s\"", version);
	CHECK_EQ_STR(tree_json_get(j, "version"), want);
	snprintf(want, sizeof(want), "%d", files);
	CHECK_EQ_STR(tree_json_get(j, "files"), want);
	snprintf(want, sizeof(want), "%d", bytes);
	CHECK_EQ_STR(tree_json_get(j, "bytes"), want);
	CHECK_EQ_STR(tree_json_get(j, "description"), description);
	/* created: RFC 3339 UTC with microseconds */
	{
		const char *c = tree_json_get(j, "created");
		CHECK(strlen(c) == 29 && c[11] == 'T' && c[27] == 'Z');
	}
	cJSON_Delete(j);
}

static void test_empty(void)
{
	al_attr a;
	CHECK_OK(tree_mkdirs(DS));
	/* the empty dataset's version is the digest of nothing */
	check_dataset_json(version_of(""), 0, 0, "\"\"");
	CHECK_OK(al_tree_getattr(&a, TF.t, DS "/.dataset.json"));
	CHECK_EQ_INT(a.mode, 0444);
	CHECK_EQ_INT(a.size, strlen(tree_cat(DS "/.dataset.json")));
	CHECK_EQ_INT(tree_write(DS "/.dataset.json", "{}"), AL_EACCES);
	CHECK_EQ_STR(tree_cat(DS "/.description"), "");
}

static void test_files(void)
{
	char lines[512];
	al_attr a;
	CHECK_OK(tree_write(DS "/train.csv", "x,y\n1,2\n"));
	CHECK_EQ_STR(tree_cat(DS "/train.csv"), "x,y\n1,2\n");
	CHECK_OK(al_tree_getattr(&a, TF.t, DS "/train.csv"));
	CHECK_EQ_INT(a.type, AL_NODE_FILE);
	CHECK_EQ_INT(a.size, 8);
	CHECK(a.immutable);
	snprintf(lines, sizeof(lines), "train.csv\t8\t%s\n", hash_of("x,y\n1,2\n"));
	check_dataset_json(version_of(lines), 1, 8, "\"\"");
	/* a sub-folder, and paths sorted by path, not by their document ids ("a-b" < "a/b" as paths;
	 * as ids "a%2Fb" comes first) */
	CHECK_OK(tree_mkdir(DS "/a"));
	CHECK_OK(tree_write(DS "/a/b", "bb"));
	CHECK_OK(tree_write(DS "/a-b", "c"));
	CHECK_EQ_STR(tree_ls(DS), ".dataset.json .description a a-b train.csv");
	CHECK_EQ_STR(tree_ls(DS "/a"), "b");
	snprintf(lines, sizeof(lines), "a-b\t1\t%s\na/b\t2\t%s\ntrain.csv\t8\t%s\n", hash_of("c"),
		hash_of("bb"), hash_of("x,y\n1,2\n"));
	check_dataset_json(version_of(lines), 3, 11, "\"\"");
	/* an implicit folder: a file written under a path whose folder was never made */
	CHECK_OK(tree_write(DS "/deep/er/f", ""));
	CHECK_EQ_STR(tree_ls(DS "/deep"), "er");
	CHECK_EQ_INT(tree_size(DS "/deep/er/f"), 0);
	snprintf(lines, sizeof(lines), "a-b\t1\t%s\na/b\t2\t%s\ndeep/er/f\t0\t%s\ntrain.csv\t8\t%s\n",
		hash_of("c"), hash_of("bb"), hash_of(""), hash_of("x,y\n1,2\n"));
	check_dataset_json(version_of(lines), 4, 11, "\"\"");
	tree_remount();
	check_dataset_json(version_of(lines), 4, 11, "\"\"");
	CHECK_EQ_STR(tree_cat(DS "/a/b"), "bb");
}

/* Files copied in are write-once: opening an existing file for writing fails with EPERM. */
static void test_write_once(void)
{
	al_file *f = NULL;
	CHECK_EQ_INT(tree_write(DS "/train.csv", "other\n"), AL_EPERM);
	CHECK_EQ_INT(tree_append(DS "/train.csv", "more\n"), AL_EPERM);
	CHECK_EQ_INT(al_file_open(&f, TF.t, DS "/train.csv", AL_OPEN_WRITE), AL_EPERM);
	CHECK(f == NULL);
	CHECK_EQ_INT(al_tree_truncate(TF.t, DS "/train.csv", 0), AL_EPERM);
	CHECK_EQ_STR(tree_cat(DS "/train.csv"), "x,y\n1,2\n");
	/* nor deleted without --allow-delete */
	CHECK_EQ_INT(al_tree_unlink(TF.t, DS "/train.csv"), AL_EPERM);
	CHECK_EQ_INT(al_tree_rmdir(TF.t, DS "/a"), AL_EPERM);
	CHECK_EQ_STR(tree_cat(DS "/train.csv"), "x,y\n1,2\n");
	/* renamed inside the dataset before any run links it; the target must not exist (files
	 * are write-once: EPERM) */
	CHECK_EQ_INT(al_tree_rename(TF.t, DS "/a-b", DS "/train.csv", 0), AL_EPERM);
	CHECK_EQ_STR(tree_cat(DS "/train.csv"), "x,y\n1,2\n");
	CHECK_OK(al_tree_rename(TF.t, DS "/a-b", DS "/c.txt", 0));
	CHECK_EQ_STR(tree_ls(DS), ".dataset.json .description a c.txt deep train.csv");
	CHECK_EQ_STR(tree_cat(DS "/c.txt"), "c");
	/* out of the dataset: EXDEV, so mv copies (README "Deleting and renaming") */
	CHECK_OK(tree_mkdir("/p/datasets/d2"));
	CHECK_EQ_INT(al_tree_rename(TF.t, DS "/c.txt", "/p/datasets/d2/c.txt", 0), AL_EXDEV);
	CHECK_EQ_STR(tree_cat(DS "/c.txt"), "c");
}

static void test_description(void)
{
	char lines[512];
	CHECK_OK(tree_write(DS "/.description", "raw images\n"));
	CHECK_EQ_STR(tree_cat(DS "/.description"), "raw images\n");
	snprintf(lines, sizeof(lines), "a/b\t2\t%s\nc.txt\t1\t%s\ndeep/er/f\t0\t%s\ntrain.csv\t8\t%s\n",
		hash_of("bb"), hash_of("c"), hash_of(""), hash_of("x,y\n1,2\n"));
	check_dataset_json(version_of(lines), 4, 11, "\"raw images\"");
	/* the description is no data file: the version stays */
	CHECK_OK(tree_write(DS "/.description", "raw images, v2\n"));
	tree_remount();
	check_dataset_json(version_of(lines), 4, 11, "\"raw images, v2\"");
	CHECK_EQ_STR(tree_cat(DS "/.description"), "raw images, v2\n");
}

static int count_names(void *ctx, const char *name, int type, const al_attr *a)
{
	(void)name;
	(void)type;
	(void)a;
	(*(int *)ctx)++;
	return 0;
}

/* A listing of a dataset keeps its files' attributes and records: the lookups and opens after it
 * read no document, answer as a lookup would have, and a change through the tree shows at once
 * (README "datasets"). */
static void test_listing_keeps_records(void)
{
	const char *root = "/p/datasets/listed";
	char path[128], want[32];
	al_attr listed, looked;
	long long before;
	int names = 0;

	CHECK_OK(tree_mkdirs(root));
	for (int i = 0; i < 20; i++) {
		snprintf(path, sizeof(path), "%s/f%02d", root, i);
		snprintf(want, sizeof(want), "content %d%*s", i, i, "");
		CHECK_OK(tree_write(path, want));
	}
	CHECK_OK(tree_write("/p/datasets/listed/sub/deep", "deep"));
	tree_remount();
	/* a listing as FUSE's readdir makes it (tree_ls would also stat every name) */
	CHECK_OK(al_tree_readdir(TF.t, root, count_names, &names));
	CHECK_EQ_INT(names, 2 + 2 + 20 + 1);   /* . .. .dataset.json .description f00-f19 sub */
	before = tree_docs_read();
	for (int i = 0; i < 20; i++) {
		snprintf(path, sizeof(path), "%s/f%02d", root, i);
		snprintf(want, sizeof(want), "content %d%*s", i, i, "");
		CHECK_OK(al_tree_getattr(&listed, TF.t, path));
		CHECK_EQ_INT(listed.size, strlen(want));
		CHECK_EQ_STR(tree_cat(path), want);
	}
	CHECK_EQ_STR(tree_cat("/p/datasets/listed/sub/deep"), "deep");
	CHECK_EQ_INT(tree_docs_read() - before, 0);
	/* what a lookup reads after a remount (nothing kept) is what the listing kept */
	CHECK_OK(al_tree_getattr(&listed, TF.t, "/p/datasets/listed/f07"));
	tree_remount();
	CHECK_OK(al_tree_getattr(&looked, TF.t, "/p/datasets/listed/f07"));
	CHECK_EQ_INT(listed.type, looked.type);
	CHECK_EQ_INT(listed.mode, looked.mode);
	CHECK_EQ_INT(listed.size, looked.size);
	CHECK_EQ_INT(listed.mtime_us, looked.mtime_us);
	CHECK_EQ_INT(listed.immutable, looked.immutable);
	CHECK_EQ_INT(listed.stable_name, looked.stable_name);
	CHECK_EQ_INT(listed.owned, looked.owned);
	/* after a change through the tree (a new file) the names answer as stored */
	tree_ls(root);
	CHECK_OK(tree_write("/p/datasets/listed/new", "0123456789"));
	CHECK_EQ_INT(tree_size("/p/datasets/listed/new"), 10);
	CHECK_EQ_INT(tree_size("/p/datasets/listed/f03"), strlen("content 3   "));
}

/* A folder of many names lists each once with its type, the names of its sub-folders (met once
 * per file below them) too: past a few dozen names the listing finds them by hash (keyset). */
static void test_many_names(void)
{
	const char *root = "/p/datasets/many";
	char path[128], want[4096];
	size_t off = 0;
	int i;

	CHECK_OK(tree_mkdirs(root));
	off += (size_t)snprintf(want + off, sizeof(want) - off, ".dataset.json .description");
	for (i = 0; i < 40; i++) {
		snprintf(path, sizeof(path), "%s/d%02d/a", root, i);
		CHECK_OK(tree_write(path, "a"));
		snprintf(path, sizeof(path), "%s/d%02d/b", root, i);
		CHECK_OK(tree_write(path, "b"));
		off += (size_t)snprintf(want + off, sizeof(want) - off, " d%02d", i);
	}
	for (i = 0; i < 150; i++) {
		snprintf(path, sizeof(path), "%s/f%03d", root, i);
		CHECK_OK(tree_write(path, ""));
		off += (size_t)snprintf(want + off, sizeof(want) - off, " f%03d", i);
	}
	tree_remount();
	CHECK_EQ_STR(tree_ls(root), want);   /* tree_ls also checks each name's type against stat */
	CHECK_EQ_STR(tree_ls("/p/datasets/many/d07"), "a b");
}

/* A document's fields as stored, read beside the tree as another reader of the store would
 * (NULL when it cannot be read); freed by the caller. */
static char *stored_fields(const char *doc)
{
	char db[256], *out = NULL;
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	snprintf(db, sizeof(db), "%s/store/meta.db", TF.root);
	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, "SELECT fields FROM docs WHERE path = ?1", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, doc, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			out = strdup((const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	sqlite3_close(h);
	return out;
}

/* The stored dataset document's "stale" mark: 1, 0, or -1 when it cannot be read. */
static int stored_stale(const char *ds_doc)
{
	char *f = stored_fields(ds_doc);
	int stale = !f ? -1 : strstr(f, "\"stale\":{\"booleanValue\":true}") ? 1 :
		strstr(f, "\"stale\":{\"booleanValue\":false}") ? 0 : -1;
	free(f);
	return stale;
}

/* The version is recomputed about a second after the last change (README "datasets"), not
 * during a copy: each recomputation lists every file and holds the copy's commits back. */
static void test_version_waits_for_a_quiet_second(void)
{
	const char *doc = "projects/p/datasets/quiet";
	char path[128];
	int i, settled_during = 0, waited = 0;

	CHECK_OK(tree_mkdirs("/p/datasets/quiet"));
	/* a copy writing a file every 0.4 s: the version waits, looked at just before each next file
	 * (a stall of the test of over half a second may let it settle once or twice on a loaded
	 * machine; after each burst instead, it settled every time) */
	for (i = 0; i < 10; i++) {
		snprintf(path, sizeof(path), "/p/datasets/quiet/f%02d", i);
		CHECK_OK(tree_write(path, "x"));
		usleep(400000);
		settled_during += stored_stale(doc) == 0;
	}
	CHECK(settled_during <= 3);
	/* then it follows on its own, nobody reading .dataset.json */
	while (stored_stale(doc) != 0 && waited++ < 100)
		usleep(100000);
	CHECK_EQ_INT(stored_stale(doc), 0);
	CHECK(strstr(tree_cat("/p/datasets/quiet/.dataset.json"), "\"files\": 10") != NULL);
}

/* The stored dataset document's "files" count (-1 when it cannot be read). */
static long long stored_files(const char *ds_doc)
{
	static const char key[] = "\"files\":{\"integerValue\":\"";
	char *f = stored_fields(ds_doc), *p;
	long long files = f && (p = strstr(f, key)) ? atoll(p + strlen(key)) : -1;
	free(f);
	return files;
}

static volatile int reading;

/* Reads .dataset.json over and over, as `while cat .dataset.json` does: each recomputes. */
static void *read_version(void *arg)
{
	al_attr a;
	(void)arg;
	while (reading)
		al_tree_getattr(&a, TF.t, "/p/datasets/del/.dataset.json");
	return NULL;
}

/* A delete marks the dataset stale in a commit of its own before the file's record goes. A
 * version computed in between (a reader of .dataset.json) must not clear that mark without
 * seeing the delete: after kill -9 the store would keep the old version unmarked, for good
 * (README "datasets"). Whenever the store says "not stale", its count is the files'. */
static void test_delete_beside_a_reader(void)
{
	const char *doc = "projects/p/datasets/del";
	char path[128];
	pthread_t th;
	int i, wrong = 0, n = 300;

	TF.allow_delete = 1;
	tree_remount();
	CHECK_OK(tree_mkdirs("/p/datasets/del"));
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/p/datasets/del/f%03d", i);
		CHECK_OK(tree_write(path, "x"));
	}
	reading = 1;
	CHECK_EQ_INT(pthread_create(&th, NULL, read_version, NULL), 0);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/p/datasets/del/f%03d", i);
		CHECK_OK(al_tree_unlink(TF.t, path));
		if (stored_stale(doc) == 0 && stored_files(doc) != n - i - 1 &&
		    stored_stale(doc) == 0 && stored_files(doc) != n - i - 1)
			wrong++;   /* (read twice: a recomputation may have ended between the two reads) */
	}
	reading = 0;
	pthread_join(th, NULL);
	CHECK_EQ_INT(wrong, 0);
	TF.allow_delete = 0;
	tree_remount();
}

int main(void)
{
	tree_setup();
	test_empty();
	test_files();
	test_write_once();
	test_description();
	test_listing_keeps_records();
	test_many_names();
	test_version_waits_for_a_quiet_second();
	test_delete_beside_a_reader();
	tree_teardown();
	CHECK_DONE();
}
