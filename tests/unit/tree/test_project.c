/* aletheia unit test of the tree: creating projects, experiments, runs and datasets with mkdir,
 * and the names they may have (README "The tree": a valid Firestore document id). */
#include "tree_fixture.h"

/* mkdir of every kind of named folder with one bad name: the same error for each. */
static void check_bad_name(const char *name, int want)
{
	char path[2048];
	snprintf(path, sizeof(path), "/%s", name);
	CHECK_EQ_INT(tree_mkdir(path), want);
	snprintf(path, sizeof(path), "/p/experiments/%s", name);
	CHECK_EQ_INT(tree_mkdir(path), want);
	snprintf(path, sizeof(path), "/p/experiments/e/runs/%s", name);
	CHECK_EQ_INT(tree_mkdir(path), want);
	snprintf(path, sizeof(path), "/p/datasets/%s", name);
	CHECK_EQ_INT(tree_mkdir(path), want);
}

static void test_create(void)
{
	al_attr a;
	CHECK_OK(tree_mkdir("/p"));
	CHECK_EQ_STR(tree_ls("/p"), "datasets experiments index.html metadata");
	CHECK_EQ_STR(tree_ls("/p/experiments"), "");
	CHECK_EQ_STR(tree_ls("/p/datasets"), "");
	CHECK_EQ_STR(tree_ls("/p/metadata"), "");
	CHECK_OK(tree_mkdir("/p/experiments/e"));
	CHECK_EQ_STR(tree_ls("/p/experiments/e"),
		"artifacts best description index.html plots runs runs.changed.csv runs.csv tagged");
	CHECK_OK(tree_mkdir("/p/experiments/e/runs/1"));
	CHECK_EQ_STR(tree_ls("/p/experiments/e/runs/1"),
		"artifacts datasets description fold heartbeat metrics model params params.json plots run.json "
		"status system.json tags");
	CHECK_OK(tree_mkdir("/p/datasets/d"));
	CHECK_EQ_STR(tree_ls("/p/datasets/d"), ".dataset.json .description");
	CHECK_OK(al_tree_getattr(&a, TF.t, "/p/experiments/e/runs/1"));
	CHECK_EQ_INT(a.type, AL_NODE_DIR);
	CHECK_EQ_INT(a.mode, 0755);
	/* each exists once */
	CHECK_EQ_INT(tree_mkdir("/p"), AL_EEXISTS);
	CHECK_EQ_INT(tree_mkdir("/p/experiments/e"), AL_EEXISTS);
	CHECK_EQ_INT(tree_mkdir("/p/experiments/e/runs/1"), AL_EEXISTS);
	CHECK_EQ_INT(tree_mkdir("/p/datasets/d"), AL_EEXISTS);
	/* a folder needs its parents */
	CHECK_EQ_INT(tree_mkdir("/q/experiments/e"), AL_ENOTFOUND);
	CHECK_EQ_INT(tree_mkdir("/p/experiments/f/runs/1"), AL_ENOTFOUND);
	CHECK_EQ_INT(tree_mkdir("/q/datasets/d"), AL_ENOTFOUND);
	/* the fixed folders are the tree's own */
	CHECK_EQ_INT(tree_mkdir("/p/other"), AL_EPERM);
	CHECK_EQ_INT(tree_mkdir("/p/experiments/e/other"), AL_EPERM);
	CHECK_EQ_INT(tree_mkdir("/p/experiments/e/runs/1/other"), AL_EPERM);
	/* without --allow-delete nothing tracked is removed (README "Deleting and renaming") */
	CHECK_EQ_INT(al_tree_rmdir(TF.t, "/p/experiments/e/runs/1"), AL_EPERM);
	CHECK_EQ_INT(al_tree_rmdir(TF.t, "/p/datasets/d"), AL_EPERM);
	CHECK_EQ_INT(al_tree_rename(TF.t, "/p/experiments/e", "/p/experiments/f", 0), AL_EPERM);
	tree_remount();
	CHECK_EQ_STR(tree_ls("/"), "p");
	CHECK_EQ_STR(tree_ls("/p/experiments/e/runs"), "1");
	CHECK_EQ_STR(tree_ls("/p/datasets"), "d");
}

static void test_names(void)
{
	char name[1600];
	char path[1700];

	check_bad_name("__x__", AL_EINVAL);
	check_bad_name("____", AL_EINVAL);
	check_bad_name("..", AL_EINVAL);
	check_bad_name(".", AL_EINVAL);
	check_bad_name("bad\xff\xfe", AL_EINVAL);   /* not UTF-8 */
	memset(name, 'n', 1501);
	name[1501] = '\0';
	check_bad_name(name, AL_ENAMETOOLONG);
	/* 1,500 bytes is a name */
	name[1500] = '\0';
	snprintf(path, sizeof(path), "/p/experiments/%s", name);
	CHECK_OK(tree_mkdir(path));
	/* any other UTF-8, spaces and __ inside a name included */
	CHECK_OK(tree_mkdir("/p/experiments/e/runs/résumé 2"));
	CHECK_OK(tree_mkdir("/p/experiments/e/runs/__x"));
	CHECK_OK(tree_mkdir("/p/experiments/e/runs/a__b__"));
	CHECK_OK(tree_mkdir("/p/datasets/日本"));
	/* a path inside artifacts/ is one document id with each '/' written %2F: 1,500 bytes in
	 * all (README "The tree") */
	memset(name, 'a', 1497);
	memcpy(name + 1497, "/bc", 4);            /* 1,497 + 3 + 2 = 1,502 as an id */
	snprintf(path, sizeof(path), RUN1 "/artifacts/%s", name);
	CHECK_EQ_INT(tree_write(path, "x"), AL_ENAMETOOLONG);
	memcpy(name + 1495, "/bc", 4);            /* 1,495 + 3 + 2 = 1,500 */
	snprintf(path, sizeof(path), RUN1 "/artifacts/%s", name);
	CHECK_OK(tree_write(path, "x"));
	CHECK_EQ_INT(tree_size(path), 1);
	CHECK_EQ_STR(tree_ls("/p/experiments/e/runs"), "1 __x a__b__ résumé 2");
	CHECK_EQ_STR(tree_ls("/p/datasets"), "d 日本");
}

int main(void)
{
	tree_setup();
	test_create();
	test_names();
	tree_teardown();
	CHECK_DONE();
}
