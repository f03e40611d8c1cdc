/* aletheia: a project's folder and its folders of experiments and datasets (README "The tree"). */
#include "internal.h"

static int project_mkdir(al_tree *t, const node *n, const char *path, const al_caller *c)
{
	cJSON *f;
	int rc;
	(void)path;
	if ((rc = check_name(n->project)))
		return rc;
	f = named_doc(n->project, al_now_us(), t, c);
	rc = commit1(t, AL_WRITE_SET, n->proj_doc, f, AL_PRE_MISSING);
	cJSON_Delete(f);
	return rc;
}

static const char *const project_entries[] = {"metadata", "datasets", "experiments", "index.html",
	NULL};

const al_kind kind_project = {
	.name = "project", .pattern = PROJECT_P, .flags = K_DIR, .owner = O_PROJECT,
	.entries = project_entries, .mkdir = project_mkdir, .rmdir = owner_rmdir,
};

const al_kind kind_datasets = {
	.name = "datasets/", .pattern = PROJECT_P "/datasets", .flags = K_DIR | K_SHARED, .owner = O_PROJECT,
	.coll = "datasets", .list = list_coll_dirs,
};

const al_kind kind_experiments = {
	.name = "experiments/", .pattern = PROJECT_P "/experiments", .flags = K_DIR | K_SHARED, .owner = O_PROJECT,
	.coll = "experiments", .list = list_coll_dirs,
};
