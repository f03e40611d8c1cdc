/* aletheia unit test of the tree: a run's tags/ (touch adds, rm removes without --allow-delete,
 * also on an ended run; no content), the tags field in run.json and runs.csv, and an
 * experiment's tagged/<tag>/ links (README "tags"). */
#include "tree_fixture.h"

#define EXP "/p/experiments/e"
#define R(id) EXP "/runs/" id

/* `touch path`: open with O_CREAT for writing, then close; 0 or the first error. */
static int tree_touch(const char *path, int extra)
{
	al_file *f = NULL;
	int rc = al_file_open(&f, TF.t, path, AL_OPEN_WRITE | AL_OPEN_CREATE | extra);
	if (rc == 0)
		rc = al_file_flush(f);
	al_file_release(f);
	return rc;
}

static const char *link_of(const char *path)
{
	static char out[4][256];
	static int next;
	char *got = NULL;
	int rc = al_tree_readlink(&got, TF.t, path);
	next = (next + 1) % 4;
	snprintf(out[next], sizeof(out[next]), "%s", rc ? "ERR" : got);
	free(got);
	return out[next];
}

static void test_tags(void)
{
	al_attr a;
	al_file *f = NULL;
	const char *s;

	CHECK_OK(tree_mkdirs(R("1")));
	CHECK_OK(tree_mkdir(R("2")));
	CHECK_OK(tree_mkdir(R("10")));
	CHECK_EQ_STR(tree_ls(R("1") "/tags"), "");
	CHECK_EQ_STR(tree_ls(EXP "/tagged"), "");
	CHECK_OK(tree_touch(R("1") "/tags/good", 0));
	CHECK_OK(tree_touch(R("10") "/tags/good", 0));
	CHECK_OK(tree_touch(R("10") "/tags/baseline", 0));
	CHECK_EQ_STR(tree_ls(R("10") "/tags"), "baseline good");
	CHECK_OK(al_tree_getattr(&a, TF.t, R("10") "/tags/good"));
	CHECK_EQ_INT(a.type, AL_NODE_FILE);
	CHECK_EQ_INT(a.size, 0);
	CHECK_EQ_STR(tree_cat(R("10") "/tags/good"), "");
	/* touch again: still there, O_EXCL refused */
	CHECK_OK(tree_touch(R("10") "/tags/good", 0));
	CHECK_EQ_INT(tree_touch(R("10") "/tags/good", AL_OPEN_EXCL), AL_EEXISTS);
	/* content is refused, emptying is a no-op; the tag stays */
	CHECK_OK(al_file_open(&f, TF.t, R("2") "/tags/x", AL_OPEN_WRITE | AL_OPEN_CREATE | AL_OPEN_TRUNC));
	CHECK_EQ_INT(al_file_write(f, "hi\n", 3, 0), AL_EINVAL);
	CHECK_OK(al_file_truncate(f, 0));
	CHECK_OK(al_file_flush(f));
	al_file_release(f);
	CHECK_EQ_STR(tree_ls(R("2") "/tags"), "x");
	CHECK_EQ_INT(tree_write(R("2") "/tags/y", "note\n"), AL_EINVAL);
	/* bad names */
	CHECK_EQ_INT(tree_touch(R("1") "/tags/a;b", 0), AL_EINVAL);
	CHECK_EQ_INT(tree_touch(R("1") "/tags/a\tb", 0), AL_EINVAL);
	CHECK_EQ_INT(tree_touch(R("1") "/tags/__x__", 0), AL_EINVAL);
	CHECK_EQ_INT(tree_touch(R("404") "/tags/t", 0), AL_ENOTFOUND);
	/* opening a tag that is not there without O_CREAT */
	CHECK_EQ_INT(al_file_open(&f, TF.t, R("1") "/tags/none", 0), AL_ENOTFOUND);

	/* the experiment's tagged/ */
	CHECK_EQ_STR(tree_ls(EXP "/tagged"), "baseline good x y");
	CHECK_EQ_STR(tree_ls(EXP "/tagged/good"), "1 10");
	CHECK_OK(al_tree_getattr(&a, TF.t, EXP "/tagged/good/10"));
	CHECK_EQ_INT(a.type, AL_NODE_LINK);
	CHECK_EQ_INT(a.size, strlen("../../runs/10"));
	CHECK_EQ_STR(link_of(EXP "/tagged/good/10"), "../../runs/10");
	CHECK_EQ_INT(al_tree_getattr(&a, TF.t, EXP "/tagged/good/2"), AL_ENOTFOUND);
	CHECK_EQ_INT(al_tree_getattr(&a, TF.t, EXP "/tagged/none"), AL_ENOTFOUND);

	/* run.json and runs.csv */
	s = tree_cat(R("10") "/run.json");
	CHECK(strstr(s, "\"tags\": {\n    \"baseline\": \"") != NULL);
	CHECK(strstr(s, "\"good\": \"") != NULL);
	s = tree_cat(EXP "/runs.csv");
	CHECK(strstr(s, "\r\n10,running,,,") != NULL && strstr(s, ",,,baseline;good\r\n") != NULL);

	/* rm without --allow-delete, also on an ended run */
	CHECK_OK(tree_write(R("10") "/status", "finished 0\n"));
	CHECK_OK(al_tree_unlink(TF.t, R("10") "/tags/baseline"));
	CHECK_EQ_INT(al_tree_unlink(TF.t, R("10") "/tags/baseline"), AL_ENOTFOUND);
	CHECK_OK(tree_touch(R("10") "/tags/best", 0));
	CHECK_EQ_STR(tree_ls(R("10") "/tags"), "best good");
	CHECK_EQ_STR(tree_ls(EXP "/tagged"), "best good x y");
	CHECK_OK(al_tree_getattr(&a, TF.t, R("10") "/tags/best"));
	CHECK_EQ_INT(a.mode & 0777, 0644);
	s = tree_cat(EXP "/runs.csv");
	CHECK(strstr(s, ",best;good\r\n") != NULL);
	/* deleting anything else still needs --allow-delete */
	CHECK_EQ_INT(al_tree_unlink(TF.t, R("1") "/run.json"), AL_EPERM);
	/* kept across a remount */
	tree_remount();
	CHECK_EQ_STR(tree_ls(R("10") "/tags"), "best good");
	CHECK_EQ_STR(tree_ls(EXP "/tagged/good"), "1 10");
}

int main(void)
{
	tree_setup();
	test_tags();
	tree_teardown();
	CHECK_DONE();
}
