/* aletheia unit test of the tree: editing values in place — editors' scratch files (sed -i,
 * Python's tempfile + os.replace, vim's swap, probe and backup) live in memory, are never
 * recorded, and a rename of one over a value records it as a close() would (README "Editing
 * values in place", "Durability"). */
#include "tree_fixture.h"

#define P RUN1 "/params"

static void test_sed_i(void)
{
	al_attr a;
	CHECK_OK(tree_mkdirs(RUN1));
	CHECK_OK(tree_write(P "/lr", "0.1\n"));
	/* sed -i writes sedXXXXXX beside the file, then renames it over the file */
	CHECK_OK(tree_write(P "/sedAb12Cd", "0.01\n"));
	CHECK_EQ_STR(tree_ls(P), "lr sedAb12Cd");
	CHECK_OK(al_tree_getattr(&a, TF.t, P "/sedAb12Cd"));
	CHECK_EQ_INT(a.size, 5);
	CHECK_EQ_INT(a.mode, 0644);
	CHECK_EQ_STR(tree_cat(P "/sedAb12Cd"), "0.01\n");
	/* never recorded */
	CHECK_EQ_STR(tree_cat(RUN1 "/params.json"), "{\n  \"lr\": 0.1\n}\n");
	CHECK(strstr(tree_cat(RUN1 "/run.json"), "sedAb12Cd") == NULL);
	CHECK_OK(al_tree_rename(TF.t, P "/sedAb12Cd", P "/lr", 0));
	CHECK_EQ_STR(tree_ls(P), "lr");
	CHECK_EQ_STR(tree_cat(P "/lr"), "0.01\n");
	CHECK_EQ_STR(tree_cat(RUN1 "/params.json"), "{\n  \"lr\": 0.01\n}\n");
	/* the same on a run's texts and params.json (perl -i's XXxxxxxx, a run's folder) */
	CHECK_OK(tree_write(RUN1 "/XXa1b2c3", "edited\n"));
	CHECK_OK(al_tree_rename(TF.t, RUN1 "/XXa1b2c3", RUN1 "/description", 0));
	CHECK_EQ_STR(tree_cat(RUN1 "/description"), "edited\n");
	CHECK_OK(tree_write(RUN1 "/sed000000", "{\"lr\": 0.02, \"bs\": 64}\n"));
	CHECK_OK(al_tree_rename(TF.t, RUN1 "/sed000000", RUN1 "/params.json", 0));
	CHECK_EQ_STR(tree_cat(RUN1 "/params.json"), "{\n  \"lr\": 0.02,\n  \"bs\": 64\n}\n");
	CHECK_EQ_STR(tree_ls(RUN1), "artifacts datasets description fold heartbeat metrics model params "
		"params.json plots run.json status system.json tags");
}

/* Python's tempfile.NamedTemporaryFile(dir=…) + os.replace, renaming before it closes: what the
 * descriptor writes after the rename goes into the value. */
static void test_python_replace(void)
{
	al_file *f = NULL;
	CHECK_OK(al_file_open(&f, TF.t, P "/tmpk3_x9q0z", AL_OPEN_WRITE | AL_OPEN_CREATE | AL_OPEN_EXCL));
	if (!f)
		return;
	CHECK_OK(al_file_write(f, "0.5", 3, 0));
	CHECK_OK(al_tree_rename(TF.t, P "/tmpk3_x9q0z", P "/lr", 0));
	CHECK_EQ_STR(tree_cat(P "/lr"), "0.5\n");
	CHECK_OK(al_file_write(f, "5\n", 2, 3));
	CHECK_OK(al_file_flush(f));
	al_file_release(f);
	CHECK_EQ_STR(tree_cat(P "/lr"), "0.55\n");
	CHECK_EQ_STR(tree_ls(P), "bs lr");
}

/* rsync --delay-updates: each file gathered in .~tmp~ beside it, renamed out of it, the folder
 * removed; files in a folder of a scratch name are scratch files. */
static void test_scratch_folder(void)
{
	CHECK_OK(al_tree_mkdir(TF.t, P "/.~tmp~", NULL));
	CHECK_OK(tree_write(P "/.~tmp~/lr", "0.25\n"));
	CHECK_EQ_STR(tree_ls(P "/.~tmp~"), "lr");
	CHECK(strstr(tree_cat(RUN1 "/params.json"), "tmp") == NULL);
	CHECK_EQ_INT(al_tree_rmdir(TF.t, P "/.~tmp~"), AL_ENOTEMPTY);
	CHECK_OK(al_tree_rename(TF.t, P "/.~tmp~/lr", P "/lr", 0));
	CHECK_EQ_STR(tree_cat(P "/lr"), "0.25\n");
	CHECK_EQ_STR(tree_ls(P "/.~tmp~"), "");
	CHECK_OK(al_tree_rmdir(TF.t, P "/.~tmp~"));   /* without --allow-delete */
	CHECK_EQ_STR(tree_ls(P), "bs lr");
	/* in metrics/: renamed over a metric, its points past those there are appended */
	CHECK_OK(tree_write(RUN1 "/metrics/loss", "0.5\n"));
	CHECK_OK(al_tree_mkdir(TF.t, RUN1 "/metrics/.~tmp~", NULL));
	CHECK_OK(tree_write(RUN1 "/metrics/.~tmp~/loss", "0.4\n"));
	CHECK_EQ_STR(tree_ls(RUN1 "/metrics"), ".~tmp~ loss");
	CHECK_OK(al_tree_rename(TF.t, RUN1 "/metrics/.~tmp~/loss", RUN1 "/metrics/loss", 0));
	CHECK_OK(al_tree_rmdir(TF.t, RUN1 "/metrics/.~tmp~"));
	CHECK_EQ_STR(tree_ls(RUN1 "/metrics"), "loss");
	CHECK(strstr(tree_cat(RUN1 "/metrics/loss"), "\n1 0.4 ") != NULL);
	CHECK_OK(tree_write(P "/lr", "0.55\n"));
	/* a value recorded under a scratch name (through params.json, or by an older version) is
	 * edited as any value: sed -i's temporary renamed over it records it (it was kept in memory
	 * only, params.json disagreeing, and lost at the unmount) */
#define R2 "/p/experiments/e/runs/2"
	CHECK_OK(tree_mkdirs(R2));
	CHECK_OK(tree_write(R2 "/params.json", "{\".cfg/wd\": 0.5}"));
	CHECK_OK(tree_write(R2 "/params/.cfg/sedAbCdEf", "0.75\n"));
	CHECK_OK(al_tree_rename(TF.t, R2 "/params/.cfg/sedAbCdEf", R2 "/params/.cfg/wd", 0));
	CHECK_EQ_STR(tree_cat(R2 "/params.json"), "{\n  \".cfg/wd\": 0.75\n}\n");
	tree_remount();
	CHECK_EQ_STR(tree_cat(R2 "/params/.cfg/wd"), "0.75\n");
	CHECK_EQ_STR(tree_ls(R2 "/params/.cfg"), "wd");
#undef R2
}

static void test_refused(void)
{
	al_file *f = NULL;
	/* a bad value renamed over a file fails the rename with EINVAL; nothing changes */
	CHECK_OK(tree_write(RUN1 "/.status.tmp", "done\n"));   /* checked only when it becomes status */
	CHECK_EQ_INT(al_tree_rename(TF.t, RUN1 "/.status.tmp", RUN1 "/status", 0), AL_EINVAL);
	CHECK_EQ_STR(tree_cat(RUN1 "/status"), "running\n");
	CHECK_OK(tree_write(RUN1 "/sedbadbad", "{nope\n"));
	CHECK_EQ_INT(al_tree_rename(TF.t, RUN1 "/sedbadbad", RUN1 "/params.json", 0), AL_EINVAL);
	CHECK_EQ_STR(tree_cat(P "/lr"), "0.55\n");
	/* deleted without --allow-delete */
	CHECK_OK(al_tree_unlink(TF.t, RUN1 "/.status.tmp"));
	CHECK_OK(al_tree_unlink(TF.t, RUN1 "/sedbadbad"));
	/* a value's file renamed to a scratch name (sed -i~, vim's backup by renaming): copied, the
	 * value stays */
	CHECK_OK(al_tree_rename(TF.t, P "/lr", P "/lr~", 0));
	CHECK_EQ_STR(tree_cat(P "/lr"), "0.55\n");
	CHECK_EQ_STR(tree_cat(P "/lr~"), "0.55\n");
	CHECK_OK(al_tree_unlink(TF.t, P "/lr~"));
	/* vim: its probe 4913, a swap file and a backup copy are ordinary files that live in memory */
	CHECK_OK(tree_write(P "/4913", ""));
	CHECK_OK(al_tree_unlink(TF.t, P "/4913"));
	CHECK_OK(tree_write(P "/.lr.swp", "swap"));
	CHECK_OK(tree_write(P "/lr~", "0.55\n"));
	CHECK_EQ_STR(tree_ls(P), ".lr.swp bs lr lr~");
	/* ftruncate(fd, 0) then close without a write: like O_TRUNC, the old value stays */
	CHECK_OK(al_file_open(&f, TF.t, P "/lr", AL_OPEN_WRITE | AL_OPEN_CREATE));
	if (f) {
		CHECK_OK(al_file_truncate(f, 0));
		CHECK_OK(al_file_flush(f));
		al_file_release(f);
	}
	CHECK_EQ_STR(tree_cat(P "/lr"), "0.55\n");
	/* ... and with a write after it, the new value (vim's open, ftruncate, write) */
	f = NULL;
	CHECK_OK(al_file_open(&f, TF.t, P "/lr", AL_OPEN_WRITE | AL_OPEN_CREATE));
	if (f) {
		CHECK_OK(al_file_truncate(f, 0));
		CHECK_OK(al_file_write(f, "0.3\n", 4, 0));
		CHECK_OK(al_file_flush(f));
		al_file_release(f);
	}
	CHECK_EQ_STR(tree_cat(P "/lr"), "0.3\n");
	/* never recorded: gone after an unmount, params.json and run.json never show them */
	CHECK_EQ_STR(tree_cat(RUN1 "/params.json"), "{\n  \"lr\": 0.3,\n  \"bs\": 64\n}\n");
	tree_remount();
	CHECK_EQ_STR(tree_ls(P), "bs lr");
	CHECK_EQ_STR(tree_ls(RUN1 "/params"), "bs lr");
	CHECK_EQ_STR(tree_cat(P "/lr"), "0.3\n");
	/* new scratch files in params/ of an ended run: EROFS, like its params */
	CHECK_OK(tree_write(RUN1 "/status", "finished\n"));
	CHECK_EQ_INT(tree_write(P "/sedAAAAAA", "1\n"), AL_EROFS);
	CHECK_EQ_STR(tree_ls(P), "bs lr");
}

int main(void)
{
	tree_setup();
	test_sed_i();
	test_python_replace();
	test_scratch_folder();
	test_refused();
	tree_teardown();
	CHECK_DONE();
}
