/* aletheia unit test of the tree: an experiment's best/min/<metric> and best/max/<metric> links to
 * the run with the lowest/highest last value (ties: lowest id; runs without the metric and NaN last
 * values skipped; ±inf are values; names with '/'), following new points (README "best"). */
#include "tree_fixture.h"

#define EXP "/p/experiments/e"
#define R(id) EXP "/runs/" id

static const char *link_of(const char *path)
{
	static char out[4][256];
	static int next;
	char *got = NULL;
	int rc = al_tree_readlink(&got, TF.t, path);
	next = (next + 1) % 4;
	if (rc)
		snprintf(out[next], sizeof(out[next]), "ERR %d", rc);
	else
		snprintf(out[next], sizeof(out[next]), "%s", got);
	free(got);
	return out[next];
}

static void test_best(void)
{
	al_attr a;

	CHECK_OK(tree_mkdirs(EXP "/runs"));
	CHECK_EQ_STR(tree_ls(EXP "/best"), "max min");
	CHECK_EQ_STR(tree_ls(EXP "/best/min"), "");
	CHECK_EQ_INT(al_tree_getattr(&a, TF.t, EXP "/best/median"), AL_ENOTFOUND);
	CHECK_OK(tree_mkdir(R("1")));
	CHECK_OK(tree_mkdir(R("2")));
	CHECK_OK(tree_mkdir(R("10")));
	CHECK_OK(tree_mkdir(R("11")));
	CHECK_OK(tree_append(R("1") "/metrics/loss", "0.9\n0.5\n"));
	CHECK_OK(tree_append(R("2") "/metrics/loss", "0.1\n0.7\n"));     /* last, not min, counts */
	CHECK_OK(tree_append(R("10") "/metrics/loss", "0.5\n"));         /* ties run 1: 1 wins */
	CHECK_OK(tree_append(R("11") "/metrics/loss", "0.2\nnan\n"));    /* NaN last: skipped */
	CHECK_OK(tree_append(R("2") "/metrics/val/acc", "0.25\n"));
	CHECK_OK(tree_append(R("10") "/metrics/val/acc", "inf\n"));
	CHECK_OK(tree_write(R("1") "/metrics/empty", ""));
	CHECK_EQ_STR(tree_ls(EXP "/best/min"), "loss val");
	CHECK_EQ_STR(tree_ls(EXP "/best/max/val"), "acc");
	CHECK_OK(al_tree_getattr(&a, TF.t, EXP "/best/min/loss"));
	CHECK_EQ_INT(a.type, AL_NODE_LINK);
	CHECK_EQ_INT(a.size, strlen("../../runs/1"));
	CHECK_EQ_STR(link_of(EXP "/best/min/loss"), "../../runs/1");
	CHECK_EQ_STR(link_of(EXP "/best/max/loss"), "../../runs/2");
	CHECK_OK(al_tree_getattr(&a, TF.t, EXP "/best/max/val"));
	CHECK_EQ_INT(a.type, AL_NODE_DIR);
	CHECK_EQ_STR(link_of(EXP "/best/max/val/acc"), "../../../runs/10");
	CHECK_EQ_STR(link_of(EXP "/best/min/val/acc"), "../../../runs/2");
	CHECK_EQ_INT(al_tree_getattr(&a, TF.t, EXP "/best/min/empty"), AL_ENOTFOUND);
	CHECK_EQ_INT(al_tree_getattr(&a, TF.t, EXP "/best/min/nothing"), AL_ENOTFOUND);
	/* names with '%' and unicode */
	CHECK_OK(tree_append(R("2") "/metrics/ü%25 x", "1\n"));
	CHECK_EQ_STR(link_of(EXP "/best/max/ü%25 x"), "../../runs/2");
	CHECK_EQ_STR(tree_ls(EXP "/best/max"), "loss val ü%25 x");
	/* a new point moves it */
	CHECK_OK(tree_append(R("11") "/metrics/loss", "-inf\n"));
	CHECK_EQ_STR(link_of(EXP "/best/min/loss"), "../../runs/11");
	CHECK_OK(al_tree_getattr(&a, TF.t, EXP "/best/min/loss"));
	CHECK_EQ_INT(a.size, strlen("../../runs/11"));
	/* generated: nothing can be made or written there */
	CHECK(tree_write(EXP "/best/min/x", "1\n") != 0);
	CHECK(al_tree_symlink(TF.t, "../../runs/1", EXP "/best/min/x", NULL) != 0);
	CHECK(tree_mkdir(EXP "/best/min/d") != 0);
	tree_remount();
	CHECK_EQ_STR(link_of(EXP "/best/min/loss"), "../../runs/11");
	CHECK_EQ_STR(link_of(EXP "/best/max/loss"), "../../runs/2");
}

int main(void)
{
	tree_setup();
	test_best();
	tree_teardown();
	CHECK_DONE();
}
