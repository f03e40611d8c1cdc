/* aletheia: a run's fold, model and description files: one field of the run's document each,
 * as a line of text (README "The tree"). */
#include "internal.h"

static int parse_fold(long long *out, const char *s)
{
	char *end;
	errno = 0;
	*out = strtoll(s, &end, 10);
	while (*end == ' ' || *end == '\t')
		end++;
	if (!*s || *end || errno)
		return al_error_set(AL_EINVAL, "fold must be an integer (got \"%.40s\")", s);
	return 0;
}

/* The field of the owner document the row names, as a line (a run's status, fold, model and
 * description, an experiment's and a dataset's description), with its own time of change. */
int field_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc *d = NULL;
	int rc;
	if ((rc = get_doc(&d, t, node_owner_doc(n))) == 0) {
		char key[32];
		rc = render_text_field(b, d->fields, n->k->field);
		snprintf(key, sizeof(key), "%s_updated", n->k->field);
		mtime_raise(mtime, field_time(d, n->k->field, key));
	}
	al_doc_free(d);
	return rc;
}

static int run_field_commit(al_file *f)
{
	al_tree *t = f->t;
	const node *n = &f->n;
	const char *field = n->k->field;
	cJSON *fields = cJSON_CreateObject();
	al_doc *d = NULL;
	char *s = NULL;
	long long v;
	int rc;

	if ((rc = text_checked(&s, &f->text, field)))
		goto cleanup;
	if ((n->k->flags & K_RUNNING) && (rc = require_running(t, n)))
		goto cleanup;
	if (strcmp(field, "fold") == 0) {
		if ((rc = parse_fold(&v, s)))
			goto cleanup;
		al_fields_set(fields, "fold", al_value_int(v));
	} else
		al_fields_set(fields, field, al_value_string(s));
	{
		char key[32];
		snprintf(key, sizeof(key), "%s_updated", field);
		al_fields_set(fields, key, al_value_time(al_now_us()));
	}
	pthread_mutex_lock(&t->lock);   /* the size checked is the size written */
	if ((rc = get_doc(&d, t, n->run_doc)) == 0 && (rc = run_fits(n, d, fields, RUN_HEADROOM)) == 0)
		rc = commit1(t, AL_WRITE_UPDATE, n->run_doc, fields, AL_PRE_EXISTS);
	pthread_mutex_unlock(&t->lock);
cleanup:
	cJSON_Delete(fields);
	al_doc_free(d);
	free(s);
	return rc;
}

static int fold_check_line(const node *n, const char *line)
{
	long long v;
	(void)n;
	return parse_fold(&v, line);
}

const al_kind kind_fold = {
	.name = "fold", .pattern = RUN_P "/fold", .flags = K_RUNNING, .owner = O_RUN, .mode = 0644,
	.field = "fold", .render = field_render, .commit = run_field_commit,
	.check_line = fold_check_line,
};

const al_kind kind_model = {
	.name = "model", .pattern = RUN_P "/model", .flags = K_RUNNING, .owner = O_RUN, .mode = 0644,
	.field = "model", .render = field_render, .commit = run_field_commit,
};

/* A run's description can be written after it ended: notes on what it showed. */
const al_kind kind_run_description = {
	.name = "description", .pattern = RUN_P "/description", .owner = O_RUN, .mode = 0644,
	.field = "description", .render = field_render, .commit = run_field_commit,
};

/* `aletheia run`'s heartbeat, "TIME INTERVAL" (README "Crashed runs"): any text is kept as written
 * and one that does not parse is ignored where the status is shown (status.c). */
const al_kind kind_heartbeat = {
	.name = "heartbeat", .pattern = RUN_P "/heartbeat", .flags = K_RUNNING, .owner = O_RUN,
	.mode = 0644, .field = "heartbeat", .render = field_render, .commit = run_field_commit,
};

/* system.json: the machine's spec and the command's peak and mean use, one JSON object that
 * `aletheia run` rewrites at each sample (README "System metrics"); "{}" until then. */
static int system_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc *d = NULL;
	int rc;
	if ((rc = get_doc(&d, t, n->run_doc)) == 0) {
		const cJSON *m = al_value_get_map(al_fields_get(d->fields, "system")), *it;
		cJSON *o = cJSON_CreateObject();
		cJSON_ArrayForEach(it, m)
			cJSON_AddItemToObject(o, it->string, al_value_to_json(it));
		rc = json_out(b, o, 1);
		cJSON_Delete(o);
		mtime_raise(mtime, field_time(d, "system", "system_updated"));
	}
	al_doc_free(d);
	return rc;
}

/* The object written replaces the one held; appended (>>) keys merge into it. */
static int system_commit(al_file *f)
{
	al_tree *t = f->t;
	const node *n = &f->n;
	cJSON *obj = NULL, *fields = cJSON_CreateObject(), *it;
	al_doc *d = NULL;
	int rc, appended;

	if ((rc = written_object(&obj, &appended, f, "system.json")))
		goto cleanup;
	if ((rc = require_running(t, n)))
		goto cleanup;
	pthread_mutex_lock(&t->lock);   /* the size checked is the size written */
	if ((rc = get_doc(&d, t, n->run_doc)) == 0) {
		const cJSON *old = al_value_get_map(al_fields_get(d->fields, "system"));
		cJSON *m = appended && old ? cJSON_Duplicate(old, 1) : cJSON_CreateObject();
		cJSON_ArrayForEach(it, obj)
			al_fields_set(m, it->string, cJSON_Duplicate(it, 1));
		al_fields_set(fields, "system", al_value_map(m));
		al_fields_set(fields, "system_updated", al_value_time(al_now_us()));
		if ((rc = run_fits(n, d, fields, RUN_HEADROOM)) == 0)
			rc = commit1(t, AL_WRITE_UPDATE, n->run_doc, fields, AL_PRE_EXISTS);
	}
	pthread_mutex_unlock(&t->lock);
cleanup:
	cJSON_Delete(obj);
	cJSON_Delete(fields);
	al_doc_free(d);
	return rc;
}

const al_kind kind_system_json = {
	.name = "system.json", .pattern = RUN_P "/system.json", .flags = K_RUNNING, .owner = O_RUN,
	.mode = 0644, .render = system_render, .commit = system_commit,
};
