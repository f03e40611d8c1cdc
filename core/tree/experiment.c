/* aletheia: an experiment's folder and its runs/ folder (README "The tree"). description,
 * runs.csv and artifacts/ have files of their own. */
#include "internal.h"

static int experiment_mkdir(al_tree *t, const node *n, const char *path, const al_caller *c)
{
	int64_t now = al_now_us();
	cJSON *f;
	int rc;
	(void)path;
	if ((rc = check_name(n->experiment)) || (rc = doc_exists(t, n->proj_doc)))
		return rc;
	f = named_doc(n->experiment, now, t, c);
	al_fields_set(f, "description", al_value_string(""));
	al_fields_set(f, "updated", al_value_time(now));
	al_fields_set(f, "description_updated", al_value_time(now));
	rc = commit1(t, AL_WRITE_SET, n->exp_doc, f, AL_PRE_MISSING);
	cJSON_Delete(f);
	return rc;
}

static const char *const experiment_entries[] = {"description", "runs.csv", "runs.changed.csv",
	"artifacts", "runs", "index.html", "plots", "best", "tagged", NULL};

const al_kind kind_experiment = {
	.name = "experiment", .pattern = EXPERIMENT_P, .flags = K_DIR | K_SCRATCH | K_MEMORY,
	.owner = O_EXPERIMENT, .entries = experiment_entries, .mkdir = experiment_mkdir,
	.rmdir = owner_rmdir,
};

const al_kind kind_runs = {
	.name = "runs/", .pattern = EXPERIMENT_P "/runs", .flags = K_DIR | K_SHARED, .owner = O_EXPERIMENT,
	.coll = "runs", .list = list_coll_dirs,
};
