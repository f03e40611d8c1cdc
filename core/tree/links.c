/* aletheia: a run's datasets/ folder: links to the datasets it used, each recording the version
 * it saw (README "datasets"). */
#include "internal.h"

/* Resolves a link target to "/P/datasets/D" form inside the mount, or NULL. */
static char *resolve_target(al_tree *t, const char *link_dir, const char *target)
{
	char *full, *out, *seg, *save = NULL;
	size_t mlen = t->mountpoint ? strlen(t->mountpoint) : 0, olen = 0;

	if (target[0] == '/') {
		if (!mlen || strncmp(target, t->mountpoint, mlen) != 0 || (target[mlen] != '/' && target[mlen]))
			return NULL;
		full = strdup(target + mlen);
	} else
		full = xasprintf("%s/%s", link_dir, target);
	if (!full)
		return NULL;
	out = calloc(1, strlen(full) + 2);
	for (seg = strtok_r(full, "/", &save); out && seg; seg = strtok_r(NULL, "/", &save)) {
		if (strcmp(seg, ".") == 0)
			continue;
		if (strcmp(seg, "..") == 0) {
			char *s = strrchr(out, '/');
			if (s) {
				*s = '\0';
				olen = (size_t)(s - out);
			}
			continue;
		}
		out[olen++] = '/';
		strcpy(out + olen, seg);
		olen += strlen(seg);
	}
	free(full);
	return out;
}

static int link_symlink(al_tree *t, const node *np, const char *path, const char *target,
	const al_caller *c)
{
	const node n = *np;
	node d;
	al_doc *ds = NULL, *run = NULL;
	char *dir = NULL, *resolved = NULL;
	cJSON *map = NULL, *entry, *fields = NULL, *dsf = NULL, *mask = NULL, *added = NULL, *all = NULL;
	const char *version;
	al_write w[2];
	int rc;
	(void)c;   /* a link of datasets/ belongs to the run: no creator of its own */

	memset(&d, 0, sizeof(d));
	if ((rc = check_name(n.name)))
		goto cleanup;
	dir = strndup(path, (size_t)(strrchr(path, '/') - path));
	resolved = dir ? resolve_target(t, dir, target) : NULL;
	if (!resolved || node_parse(&d, resolved) != 0 || d.k != &kind_dataset ||
	    strcmp(d.project, n.project) != 0) {
		rc = al_error_set(AL_EINVAL, "a run's datasets/ link must point at a dataset of project %s", n.project);
		goto cleanup;
	}
	dataset_settle(t, d.ds_doc);   /* the link records the version of every file so far */
	if ((rc = get_doc(&ds, t, d.ds_doc)))
		goto cleanup;
	version = al_fields_get_string(ds->fields, "version");
	pthread_mutex_lock(&t->lock);
	if ((rc = get_doc(&run, t, n.run_doc)) == 0) {
		/* A copy of the map's fields (an empty map may come without a "fields" object). */
		const cJSON *cur = al_value_get_map(al_fields_get(run->fields, "datasets"));
		cJSON *links = cur ? cJSON_Duplicate(cur, 1) : cJSON_CreateObject();
		map = al_value_map(links);
		entry = cJSON_CreateObject();
		al_fields_set(entry, "dataset", al_value_string(d.dataset));
		al_fields_set(entry, "version", version ? al_value_string(version) : al_value_null());
		al_fields_set(entry, "linked", al_value_time(al_now_us()));
		added = cJSON_CreateObject();
		al_fields_set(added, n.name, al_value_map(entry));
		if (al_fields_get(links, n.name)) {
			rc = al_error_set(AL_EEXISTS, "%s exists", path);
		} else {
			/* The run's size is checked with every link this mount knows; the write names
			 * only the new link's key, so another mount's links of the run stay. */
			al_fields_set(links, n.name, cJSON_Duplicate(al_fields_get(added, n.name), 1));
			all = cJSON_CreateObject();
			al_fields_set(all, "datasets", map);
			map = NULL;
			fields = cJSON_CreateObject();
			al_fields_set(fields, "datasets", al_value_map(added));
			added = NULL;
			dsf = cJSON_CreateObject();
			al_fields_set(dsf, "referenced", al_value_bool(1));
			mask = cJSON_CreateArray();
			if ((rc = run_fits(&n, run, all, RUN_HEADROOM)) == 0 &&
			    (rc = al_mask_add(mask, "datasets", n.name)) == 0) {
				w[0] = (al_write){AL_WRITE_UPDATE, n.run_doc, fields, AL_PRE_EXISTS, mask};
				w[1] = (al_write){AL_WRITE_UPDATE, d.ds_doc, dsf, AL_PRE_EXISTS, NULL};
				rc = tree_commit(t, w, 2);
			}
		}
	}
	pthread_mutex_unlock(&t->lock);
cleanup:
	cJSON_Delete(mask);
	cJSON_Delete(added);
	cJSON_Delete(all);
	cJSON_Delete(map);
	cJSON_Delete(fields);
	cJSON_Delete(dsf);
	al_doc_free(ds);
	al_doc_free(run);
	free(dir);
	free(resolved);
	node_free(&d);
	return rc;
}

/* The target of a run's link: the dataset in this mount. */
static int link_readlink(char **out, al_tree *t, const node *n)
{
	al_doc *run = NULL;
	const cJSON *e;
	int rc;

	if ((rc = get_doc(&run, t, n->run_doc)))
		return rc;
	e = al_value_get_map(al_fields_get(al_value_get_map(al_fields_get(run->fields, "datasets")), n->name));
	if (!e)
		rc = al_error_set(AL_ENOTFOUND, "no such link: %s", n->name);
	else if (!(*out = xasprintf("%s/%s/datasets/%s", t->mountpoint ? t->mountpoint : "", n->project,
		al_fields_get_string(e, "dataset") ? al_fields_get_string(e, "dataset") : n->name)))
		rc = al_error_set(AL_ENOMEM, "out of memory");
	al_doc_free(run);
	return rc;
}

static int links_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	(void)path;
	return run_map_list(k, t, n, "datasets", 0);
}

const al_kind kind_run_datasets = {
	.name = "datasets/", .pattern = RUN_P "/datasets", .flags = K_DIR | K_MEMORY, .owner = O_RUN,
	.list = links_list,
};

static int link_getattr(al_attr *out, al_tree *t, const node *n, const al_doc *run,
	const char *path, unsigned mode)
{
	const cJSON *ds = al_value_get_map(al_fields_get(run->fields, "datasets"));
	const cJSON *e = ds ? al_value_get_map(al_fields_get(ds, n->name)) : NULL;
	char *target;
	(void)path;
	if (!e)
		return al_error_set(AL_ENOTFOUND, "no dataset link %s", n->name);
	target = xasprintf("%s/%s/datasets/%s", t->mountpoint ? t->mountpoint : "", n->project,
		al_fields_get_string(e, "dataset") ? al_fields_get_string(e, "dataset") : n->name);
	memset(out, 0, sizeof(*out));
	out->type = AL_NODE_LINK;
	out->mode = 0777;   /* a link's own mode means nothing */
	(void)mode;
	out->size = target ? strlen(target) : 0;
	out->mtime_us = out->ctime_us = run->update_us;
	out->immutable = 1;
	free(target);
	return 0;
}

static int link_unlink(al_tree *t, const node *n, const char *path)
{
	return map_key_unlink(t, n, "datasets", n->name, path);
}

const al_kind kind_run_link = {
	.name = "dataset link", .pattern = RUN_P "/datasets/{name}", .flags = K_RUNNING, .owner = O_RUN,
	.mode = 0777, .getattr = link_getattr, .symlink = link_symlink, .readlink = link_readlink,
	.unlink = link_unlink,
};
