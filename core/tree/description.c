/* aletheia: the description of an experiment (description) and of a dataset (.description, a
 * dot-name because every other name in a dataset is a data file: README "datasets"). */
#include "internal.h"

static int description_commit(al_file *f)
{
	cJSON *fields = cJSON_CreateObject();
	char *s = NULL;
	int rc;
	if ((rc = text_checked(&s, &f->text, "description")) == 0) {
		al_fields_set(fields, "description", al_value_string(s));
		al_fields_set(fields, "updated", al_value_time(al_now_us()));
		al_fields_set(fields, "description_updated", al_value_time(al_now_us()));
		rc = commit1(f->t, AL_WRITE_UPDATE, node_owner_doc(&f->n), fields, AL_PRE_EXISTS);
	}
	cJSON_Delete(fields);
	free(s);
	return rc;
}

const al_kind kind_experiment_description = {
	.name = "description", .pattern = EXPERIMENT_P "/description", .owner = O_EXPERIMENT,
	.mode = 0644, .field = "description", .render = field_render, .commit = description_commit,
};

const al_kind kind_dataset_description = {
	.name = ".description", .pattern = DATASET_P "/.description", .owner = O_DATASET,
	.mode = 0644, .field = "description", .render = field_render, .commit = description_commit,
};
