/* aletheia unit test of the tree: a run's datasets/ links — symlinks to a dataset of the same
 * project that record its version at link time; readlink's absolute target; a linked dataset's
 * files can no longer be renamed (README "datasets", "run.json", "Known limitations"). */
#include "tree_fixture.h"

#define L RUN1 "/datasets"

static void test_links(void)
{
	char target[512], *got = NULL, version[64];
	al_attr a;
	cJSON *j, *ds;

	CHECK_OK(tree_mkdirs(RUN1));
	CHECK_OK(tree_mkdirs("/p/datasets/raw"));
	CHECK_OK(tree_mkdirs("/p/datasets/val"));
	CHECK_OK(tree_mkdirs("/q/datasets/other"));
	CHECK_OK(tree_write("/p/datasets/raw/a.csv", "1,2\n"));
	CHECK_EQ_STR(tree_ls(L), "");
	j = tree_json("/p/datasets/raw/.dataset.json");
	snprintf(version, sizeof(version), "%s", tree_json_get(j, "version"));
	cJSON_Delete(j);

	/* absolute, inside the mount */
	snprintf(target, sizeof(target), "%s/p/datasets/raw", TF.mnt);
	CHECK_OK(al_tree_symlink(TF.t, target, L "/raw", NULL));
	/* relative, from the run's datasets/ folder, under another name */
	CHECK_OK(al_tree_symlink(TF.t, "../../../../../datasets/val", L "/validation", NULL));
	CHECK_EQ_STR(tree_ls(L), "raw validation");
	CHECK_OK(al_tree_getattr(&a, TF.t, L "/raw"));
	CHECK_EQ_INT(a.type, AL_NODE_LINK);
	CHECK_OK(al_tree_readlink(&got, TF.t, L "/raw"));
	CHECK_EQ_STR(got, target);
	free(got);
	got = NULL;
	snprintf(target, sizeof(target), "%s/p/datasets/val", TF.mnt);
	CHECK_OK(al_tree_readlink(&got, TF.t, L "/validation"));
	CHECK_EQ_STR(got, target);
	free(got);
	got = NULL;

	/* run.json lists each link with the dataset's version at link time */
	j = tree_json(RUN1 "/run.json");
	ds = cJSON_GetObjectItem(j, "datasets");
	CHECK_EQ_INT(cJSON_GetArraySize(ds), 2);
	{
		const cJSON *e;
		int seen = 0;
		cJSON_ArrayForEach(e, ds) {
			if (!strcmp(tree_json_get(e, "name"), "\"raw\"")) {
				CHECK_EQ_STR(tree_json_get(e, "dataset"), "\"raw\"");
				CHECK_EQ_STR(tree_json_get(e, "version"), version);
				seen++;
			} else {
				CHECK_EQ_STR(tree_json_get(e, "name"), "\"validation\"");
				CHECK_EQ_STR(tree_json_get(e, "dataset"), "\"val\"");
				seen++;
			}
		}
		CHECK_EQ_INT(seen, 2);
	}
	cJSON_Delete(j);
	/* a file added later makes a new dataset version; the link keeps the one it recorded */
	CHECK_OK(tree_write("/p/datasets/raw/b.csv", "3,4\n"));
	j = tree_json("/p/datasets/raw/.dataset.json");
	CHECK(strcmp(tree_json_get(j, "version"), version) != 0);
	cJSON_Delete(j);
	CHECK(strstr(tree_cat(RUN1 "/run.json"), version) != NULL);
	/* a dataset used by a run can no longer have files renamed */
	CHECK_EQ_INT(al_tree_rename(TF.t, "/p/datasets/raw/a.csv", "/p/datasets/raw/c.csv", 0), AL_EPERM);
	CHECK_EQ_STR(tree_ls("/p/datasets/raw"), ".dataset.json .description a.csv b.csv");
	tree_remount();
	snprintf(target, sizeof(target), "%s/p/datasets/raw", TF.mnt);
	CHECK_OK(al_tree_readlink(&got, TF.t, L "/raw"));
	CHECK_EQ_STR(got, target);
	free(got);
	CHECK_EQ_STR(tree_ls(L), "raw validation");
}

static void test_refused(void)
{
	char target[512], *got = NULL;
	/* only datasets of the run's own project */
	snprintf(target, sizeof(target), "%s/q/datasets/other", TF.mnt);
	CHECK_EQ_INT(al_tree_symlink(TF.t, target, L "/other", NULL), AL_EINVAL);
	CHECK_EQ_INT(al_tree_symlink(TF.t, "/etc/passwd", L "/x", NULL), AL_EINVAL);
	CHECK_EQ_INT(al_tree_symlink(TF.t, "../../../../../datasets/raw/a.csv", L "/x", NULL), AL_EINVAL);
	snprintf(target, sizeof(target), "%s/p/datasets/none", TF.mnt);
	CHECK_EQ_INT(al_tree_symlink(TF.t, target, L "/none", NULL), AL_ENOTFOUND);
	/* a name is linked once */
	snprintf(target, sizeof(target), "%s/p/datasets/val", TF.mnt);
	CHECK_EQ_INT(al_tree_symlink(TF.t, target, L "/raw", NULL), AL_EEXISTS);
	/* links only in a run's datasets/ and in artifacts/ (README "Known limitations") */
	CHECK_EQ_INT(al_tree_symlink(TF.t, target, "/p/datasets/raw/link", NULL), AL_EPERM);
	CHECK_EQ_INT(al_tree_symlink(TF.t, target, RUN1 "/params/link", NULL), AL_EPERM);
	CHECK_EQ_INT(al_tree_readlink(&got, TF.t, RUN1 "/run.json"), AL_EINVAL);
	CHECK_EQ_INT(al_tree_readlink(&got, TF.t, L "/none"), AL_ENOTFOUND);
	CHECK_EQ_STR(tree_ls(L), "raw validation");
	/* without --allow-delete a link stays; an ended run takes no new ones */
	CHECK_EQ_INT(al_tree_unlink(TF.t, L "/raw"), AL_EPERM);
	CHECK_OK(tree_write(RUN1 "/status", "finished\n"));
	CHECK_EQ_INT(al_tree_symlink(TF.t, target, L "/late", NULL), AL_EROFS);
	CHECK_EQ_STR(tree_ls(L), "raw validation");
}

int main(void)
{
	tree_setup();
	test_links();
	test_refused();
	tree_teardown();
	CHECK_DONE();
}
