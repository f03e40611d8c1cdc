/* aletheia unit test of the tree: the mount's root and its control folder .aletheia/ (status,
 * import, fsck), README "The tree", "The command line" (fsck) and "Importing files". */
#include "tree_fixture.h"

static void test_root(void)
{
	al_attr a;
	CHECK_OK(al_tree_getattr(&a, TF.t, "/"));
	CHECK_EQ_INT(a.type, AL_NODE_DIR);
	CHECK_EQ_INT(a.mode, 0755);
	CHECK_EQ_STR(tree_ls("/"), "");
	CHECK_OK(tree_mkdir("/vision"));
	CHECK_OK(tree_mkdir("/nlp"));
	/* .aletheia is reached by its name and never listed (README "The tree") */
	CHECK_EQ_STR(tree_ls("/"), "nlp vision");
	CHECK_OK(al_tree_getattr(&a, TF.t, "/.aletheia"));
	CHECK_EQ_INT(a.type, AL_NODE_DIR);
	CHECK_EQ_STR(tree_ls("/.aletheia"), "fsck import prefetch status");
	CHECK_EQ_INT(al_tree_getattr(&a, TF.t, "/.aletheia/other"), AL_ENOTFOUND);
	CHECK_EQ_INT(al_tree_getattr(&a, TF.t, "/nothing"), AL_ENOTFOUND);
	/* a project's fixed folders */
	CHECK_EQ_STR(tree_ls("/vision"), "datasets experiments index.html metadata");
	CHECK_EQ_INT(tree_mkdir("/vision"), AL_EEXISTS);
	/* files can be created only where the tree has files */
	CHECK_EQ_INT(tree_write("/file", "x\n"), AL_EPERM);
	CHECK_EQ_INT(tree_write("/vision/other", "x\n"), AL_EPERM);
	CHECK_EQ_INT(tree_mkdir("/vision/other"), AL_EPERM);
	CHECK_EQ_STR(tree_ls("/"), "nlp vision");
}

static void test_status(void)
{
	const char *s = tree_cat("/.aletheia/status");
	char want[1536];
	al_attr a;
	al_file *f = NULL;

	CHECK(strncmp(s, "version: ", 9) == 0);
	snprintf(want, sizeof(want), "\npid: %d\nmountpoint: %s\nstore: %s\nbackend: sqlite\nblobs: %s\n"
		"cache: %s (", (int)getpid(), TF.mnt, TF.store, TF.blobs, TF.cache);
	if (!strstr(s, want))
		fprintf(stderr, "status:\n%s\nlacks:\n%s\n", s, want);
	CHECK(strstr(s, want) != NULL);
	CHECK(strstr(s, " unbounded, ") != NULL);   /* no --cache-size */
	CHECK(strstr(s, "\npending_writes: 0\nlast_error: none\noffline_since: none\n") != NULL);
	/* read-only, and its size is its content's (README "Files behave like files") */
	CHECK_OK(al_tree_getattr(&a, TF.t, "/.aletheia/status"));
	CHECK_EQ_INT(a.type, AL_NODE_FILE);
	CHECK_EQ_INT(a.mode, 0444);
	CHECK_EQ_INT(a.size, strlen(s));
	CHECK_EQ_INT(al_file_open(&f, TF.t, "/.aletheia/status", AL_OPEN_WRITE), AL_EACCES);
	CHECK(f == NULL);
}

/* import and fsck read as empty files: a backup or grep -r of the mount starts nothing. */
static void test_control_files_read_empty(void)
{
	al_attr a;
	CHECK_EQ_STR(tree_cat("/.aletheia/import"), "");
	CHECK_EQ_STR(tree_cat("/.aletheia/fsck"), "");
	CHECK_OK(al_tree_getattr(&a, TF.t, "/.aletheia/import"));
	CHECK_EQ_INT(a.size, 0);
	CHECK_OK(al_tree_getattr(&a, TF.t, "/.aletheia/fsck"));
	CHECK_EQ_INT(a.size, 0);
}

static void test_fsck(void)
{
	al_file *f = NULL;
	char *report = NULL;
	CHECK_OK(tree_mkdirs("/vision/datasets/raw"));
	CHECK_OK(tree_write("/vision/datasets/raw/a.csv", "x,y\n1,2\n"));   /* 8 bytes */
	CHECK_OK(al_file_open(&f, TF.t, "/.aletheia/fsck", AL_OPEN_WRITE));
	if (!f)
		return;
	CHECK_OK(al_file_write(f, "check\n", 6, 0));
	/* one request per open file (README "The command line": EBUSY) */
	CHECK_EQ_INT(al_file_write(f, "check\n", 6, 6), AL_EBUSY);
	CHECK_OK(tree_read_handle(&report, NULL, f, 0));
	CHECK_EQ_STR(report, "fsck: 1 blobs checked, 8 bytes, 0 damaged (0 missing), 0 not checked\n");
	free(report);
	al_file_release(f);
	f = NULL;
	CHECK_OK(al_file_open(&f, TF.t, "/.aletheia/fsck", AL_OPEN_WRITE));
	if (f) {
		CHECK_EQ_INT(al_file_write(f, "repair\n", 7, 0), AL_EINVAL);
		al_file_release(f);
	}
}

#define HASH3 "0123456789abcdef0123456789abcdef"

static void test_import(void)
{
	const char *line = "{\"dataset\":\"vision/raw\",\"path\":\"remote/b.csv\","
		"\"url\":\"https://example.org/b.csv\",\"size\":1234,\"hash\":\"" HASH3 "\"}\n";
	const char *other = "{\"dataset\":\"vision/raw\",\"path\":\"remote/b.csv\","
		"\"url\":\"https://example.org/c.csv\",\"size\":5,\"hash\":\"ffffffffffffffffffffffffffffffff\"}\n";
	const char *missing = "{\"dataset\":\"vision/none\",\"path\":\"b.csv\","
		"\"url\":\"https://example.org/b.csv\",\"size\":1,\"hash\":\"" HASH3 "\"}\n";
	const char *needs_dir = "{\"dataset\":\"vision/raw\",\"path\":\"a.csv/x\","
		"\"url\":\"https://example.org/b.csv\",\"size\":1,\"hash\":\"" HASH3 "\"}\n";
	cJSON *before = tree_json("/vision/datasets/raw/.dataset.json"), *after;
	char *nl = NULL;

	CHECK_OK(tree_write("/.aletheia/import", line));
	/* listed with the size the import gave, and a new version (README "Importing files") */
	CHECK_EQ_STR(tree_ls("/vision/datasets/raw"), ".dataset.json .description a.csv remote");
	CHECK_EQ_STR(tree_ls("/vision/datasets/raw/remote"), "b.csv");
	CHECK_EQ_INT(tree_size("/vision/datasets/raw/remote/b.csv"), 1234);
	after = tree_json("/vision/datasets/raw/.dataset.json");
	CHECK_EQ_STR(tree_json_get(after, "files"), "2");
	CHECK_EQ_STR(tree_json_get(after, "bytes"), "1242");
	CHECK(strcmp(tree_json_get(before, "version"), tree_json_get(after, "version")) != 0);
	/* the same line again changes nothing; other content under the name: EPERM */
	CHECK_OK(tree_write("/.aletheia/import", line));
	CHECK_EQ_INT(tree_write("/.aletheia/import", other), AL_EPERM);
	CHECK_EQ_INT(tree_size("/vision/datasets/raw/remote/b.csv"), 1234);
	CHECK_EQ_INT(tree_write("/.aletheia/import", missing), AL_ENOTFOUND);
	CHECK_EQ_INT(tree_write("/.aletheia/import", needs_dir), AL_ENOTDIR);
	CHECK_EQ_INT(tree_write("/.aletheia/import", "{\"dataset\": 1}\n"), AL_EINVAL);
	CHECK_EQ_INT(tree_write("/.aletheia/import", "not json\n"), AL_EINVAL);
	/* a last line without its newline counts at close(), and its error is close()'s */
	nl = strdup(missing);
	nl[strlen(nl) - 1] = '\0';
	{
		tree_io r = tree_put("/.aletheia/import", nl, strlen(nl), AL_OPEN_TRUNC);
		CHECK_EQ_INT(r.open, 0);
		CHECK_EQ_INT(r.write, 0);
		CHECK_EQ_INT(r.close, AL_ENOTFOUND);
	}
	free(nl);
	cJSON_Delete(before);
	cJSON_Delete(after);
	/* recorded: still there after a remount */
	tree_remount();
	CHECK_EQ_INT(tree_size("/vision/datasets/raw/remote/b.csv"), 1234);
}

int main(void)
{
	tree_setup();
	test_root();
	test_status();
	test_control_files_read_empty();
	test_fsck();
	test_import();
	tree_teardown();
	CHECK_DONE();
}
