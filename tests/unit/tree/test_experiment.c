/* aletheia unit test of the tree: an experiment's folder — its description and its artifacts/, a
 * working folder while any run of the experiment is running (README "The tree", "artifacts",
 * "Deleting and renaming", "Durability"). */
#include "tree_fixture.h"

#define EXP "/p/experiments/e"
#define EA EXP "/artifacts"

static void test_description(void)
{
	al_attr a;
	al_file *f = NULL;
	CHECK_OK(tree_mkdirs(EXP));
	CHECK_EQ_STR(tree_cat(EXP "/description"), "");
	CHECK_OK(al_tree_getattr(&a, TF.t, EXP "/description"));
	CHECK_EQ_INT(a.mode, 0644);
	CHECK_EQ_INT(a.size, 0);
	CHECK_OK(tree_write(EXP "/description", "ResNet baseline\n"));
	CHECK_EQ_STR(tree_cat(EXP "/description"), "ResNet baseline\n");
	CHECK_EQ_INT(tree_size(EXP "/description"), 16);
	/* text without its final newline reads back with one */
	CHECK_OK(tree_write(EXP "/description", "two\nlines"));
	CHECK_EQ_STR(tree_cat(EXP "/description"), "two\nlines\n");
	/* an O_TRUNC open with no write leaves the value (README "Durability") ... */
	CHECK_OK(al_file_open(&f, TF.t, EXP "/description", AL_OPEN_WRITE | AL_OPEN_TRUNC | AL_OPEN_CREATE));
	if (f) {
		CHECK_OK(al_file_flush(f));
		al_file_release(f);
	}
	CHECK_EQ_STR(tree_cat(EXP "/description"), "two\nlines\n");
	/* ... text that is not UTF-8, or holds NUL, is refused at close() ... */
	{
		tree_io r = tree_put(EXP "/description", "bad\xff\n", 5, AL_OPEN_TRUNC);
		CHECK_EQ_INT(r.write, 0);
		CHECK_EQ_INT(r.close, AL_EINVAL);
		r = tree_put(EXP "/description", "a\0b\n", 4, AL_OPEN_TRUNC);
		CHECK_EQ_INT(r.close, AL_EINVAL);
	}
	CHECK_EQ_STR(tree_cat(EXP "/description"), "two\nlines\n");
	tree_remount();
	CHECK_EQ_STR(tree_cat(EXP "/description"), "two\nlines\n");
	/* ... and an empty line clears it */
	CHECK_OK(tree_write(EXP "/description", "\n"));
	CHECK_EQ_STR(tree_cat(EXP "/description"), "");
	/* truncate(2) of the path clears at once */
	CHECK_OK(tree_write(EXP "/description", "again\n"));
	CHECK_OK(al_tree_truncate(TF.t, EXP "/description", 0));
	CHECK_EQ_STR(tree_cat(EXP "/description"), "");
}

static void test_artifacts(void)
{
	static const char bin[] = {'\0', 'a', '\n', '\xff', '\0', 'z'};
	char *s = NULL;
	size_t len = 0;
	al_attr a;

	CHECK_EQ_STR(tree_ls(EA), "");
	CHECK_OK(tree_mkdir(EXP "/runs/1"));
	CHECK_EQ_INT(tree_io_first(tree_put(EA "/model.bin", bin, sizeof(bin), AL_OPEN_TRUNC)), 0);
	CHECK_OK(tree_read_len(&s, &len, EA "/model.bin"));
	CHECK_EQ_INT(len, sizeof(bin));
	CHECK(s && memcmp(s, bin, sizeof(bin)) == 0);
	free(s);
	CHECK_OK(al_tree_getattr(&a, TF.t, EA "/model.bin"));
	CHECK_EQ_INT(a.type, AL_NODE_FILE);
	CHECK_EQ_INT(a.size, sizeof(bin));
	CHECK_OK(tree_mkdir(EA "/ckpt"));
	CHECK_OK(tree_write(EA "/ckpt/1.pt", "one"));
	CHECK_EQ_STR(tree_ls(EA), "ckpt model.bin");
	/* a working folder while run 1 runs: overwritten, renamed inside, deleted */
	CHECK_OK(tree_write(EA "/ckpt/1.pt", "uno"));
	CHECK_EQ_STR(tree_cat(EA "/ckpt/1.pt"), "uno");
	CHECK_OK(al_tree_rename(TF.t, EA "/ckpt/1.pt", EA "/ckpt/best.pt", 0));
	CHECK_EQ_STR(tree_ls(EA "/ckpt"), "best.pt");
	CHECK_EQ_STR(tree_cat(EA "/ckpt/best.pt"), "uno");
	CHECK_OK(tree_write(EA "/tmp.lock", ""));
	CHECK_OK(al_tree_unlink(TF.t, EA "/tmp.lock"));
	CHECK_EQ_INT(tree_size(EA "/tmp.lock"), AL_ENOTFOUND);
	/* renaming out of this artifacts/ folder: EXDEV (mv copies) */
	CHECK_EQ_INT(al_tree_rename(TF.t, EA "/model.bin", EXP "/runs/1/artifacts/model.bin", 0), AL_EXDEV);
	CHECK_EQ_STR(tree_ls(EA), "ckpt model.bin");
	/* once no run of the experiment runs, deleting needs --allow-delete (README "Deleting and
	 * renaming"); renames inside an experiment's artifacts/ stay allowed there */
	CHECK_OK(tree_write(EXP "/runs/1/status", "finished\n"));
	CHECK_EQ_INT(al_tree_unlink(TF.t, EA "/model.bin"), AL_EPERM);
	CHECK_EQ_INT(al_tree_rmdir(TF.t, EA "/ckpt"), AL_EPERM);
	CHECK_EQ_STR(tree_ls(EA), "ckpt model.bin");
	tree_remount();
	CHECK_EQ_STR(tree_ls(EA), "ckpt model.bin");
	CHECK_EQ_STR(tree_cat(EA "/ckpt/best.pt"), "uno");
	CHECK_EQ_INT(tree_size(EA "/model.bin"), sizeof(bin));
}

/* Outside its working period (no run of the experiment running) an experiment's artifacts/ takes
 * new files, but what it holds is kept as deleting is: overwriting, truncating and renaming (over
 * another file, or away) are refused, with or without a process holding it open. */
static void test_artifacts_kept_when_no_run_runs(void)
{
	al_file *f = NULL;
	CHECK_OK(tree_write(EA "/kept.txt", "first\n"));
	CHECK_OK(tree_write(EA "/other.txt", "other\n"));
	CHECK_EQ_INT(tree_write(EA "/kept.txt", "second\n"), AL_EPERM);
	CHECK_EQ_INT(tree_append(EA "/kept.txt", "more\n"), AL_EPERM);
	CHECK_EQ_INT(al_tree_truncate(TF.t, EA "/kept.txt", 0), AL_EPERM);
	CHECK_EQ_INT(al_file_open(&f, TF.t, EA "/kept.txt", AL_OPEN_WRITE), AL_EPERM);
	CHECK(f == NULL);
	CHECK_EQ_INT(al_tree_rename(TF.t, EA "/other.txt", EA "/kept.txt", 0), AL_EPERM);
	CHECK_EQ_INT(al_tree_rename(TF.t, EA "/other.txt", EA "/moved.txt", 0), AL_EPERM);
	CHECK_EQ_STR(tree_cat(EA "/kept.txt"), "first\n");
	CHECK_EQ_STR(tree_cat(EA "/other.txt"), "other\n");
	/* new files are welcome: a summary written after the runs */
	CHECK_OK(tree_write(EA "/summary.txt", "all done\n"));
	CHECK_EQ_STR(tree_cat(EA "/summary.txt"), "all done\n");
	/* a running run makes it a working folder again */
	CHECK_OK(tree_mkdir(EXP "/runs/2"));
	CHECK_OK(tree_write(EA "/kept.txt", "second\n"));
	CHECK_EQ_STR(tree_cat(EA "/kept.txt"), "second\n");
	CHECK_OK(tree_write(EXP "/runs/2/status", "finished\n"));
}

/* Listing runs/ reads no run's document: each folder's attributes come from the store's ids and
 * times (list_meta), and a stat of each after it is answered by the attribute cache (`ls -l
 * runs/` of 10,000 runs; issue 11). The listed attributes equal a stat's (tree_ls checks). */
static void test_listing_runs_reads_no_document(void)
{
	char path[128], want[512] = "";
	long long before;
	al_attr a;
	int i;

	for (i = 1; i <= 40; i++) {
		snprintf(path, sizeof(path), EXP "/runs/r%02d", i);
		CHECK_OK(tree_mkdir(path));
		snprintf(path, sizeof(path), EXP "/runs/r%02d/params/lr", i);
		CHECK_OK(tree_write(path, "0.1\n"));
		snprintf(path, sizeof(path), "%sr%02d", i > 1 ? " " : "", i);
		strcat(want, path);
	}
	CHECK_OK(tree_write(EXP "/runs/r07/status", "finished\n"));
	CHECK_OK(al_tree_getattr(&a, TF.t, EXP "/runs"));
	before = tree_docs_read();
	CHECK(before >= 0);
	/* runs 1 and 7's folders may be listed above by other tests: only r* here */
	{
		const char *ls = tree_ls(EXP "/runs"), *r = strstr(ls, "r01");
		CHECK(r != NULL);
		CHECK_EQ_STR(r ? r : ls, want);
	}
	for (i = 1; i <= 40; i++) {
		snprintf(path, sizeof(path), EXP "/runs/r%02d", i);
		CHECK_OK(al_tree_getattr(&a, TF.t, path));
		CHECK_EQ_INT(a.type, AL_NODE_DIR);
		CHECK_EQ_INT(a.mode, 0755);
	}
	if (tree_docs_read() - before > 2)
		fprintf(stderr, "listing 40 runs and stat of each read %lld documents\n", tree_docs_read() - before);
	CHECK(tree_docs_read() - before <= 2);
	/* a change: the next listing shows the run's new time, as its stat does (tree_ls checks) */
	CHECK_OK(tree_write(EXP "/runs/r12/params/lr", "0.2\n"));
	CHECK_OK(al_tree_getattr(&a, TF.t, EXP "/runs/r12"));
	tree_ls(EXP "/runs");
}

int main(void)
{
	tree_setup();
	test_description();
	test_artifacts();
	test_artifacts_kept_when_no_run_runs();
	test_listing_runs_reads_no_document();
	tree_teardown();
	CHECK_DONE();
}
