/* aletheia: the kind table and its dispatcher: which row a path is (README "The tree"), and the
 * rules every row with a flag shares. Each row's operations live in the file named after it. */
#include <malloc.h>
#include "internal.h"

/* In match order (kinds.h): the first row whose pattern fits a path is its kind. */
static const al_kind *const kinds[] = {
#define KIND(k) &kind_##k,
#include "kinds.h"
#undef KIND
};

typedef struct captures {
	const char *project, *experiment, *run, *dataset, *name, *rest;
} captures;

/* 1 when the segments seg[0..count) (rest[i]: the path from segment i on) fit pattern. */
static int match(captures *c, const char *pattern, char **seg, const char **rest, int count)
{
	const char *p = pattern;
	int i = 0;

	memset(c, 0, sizeof(*c));
	c->rest = "";
	while (*p) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == 6 && strncmp(p, "{rest}", 6) == 0) {
			if (i >= count)
				return 0;
			c->rest = rest[i];
			return 1;
		}
		if (len == 7 && strncmp(p, "{rest*}", 7) == 0) {
			c->rest = i < count ? rest[i] : "";
			return 1;
		}
		if (i >= count)
			return 0;
		if (*p == '{') {
			const char **slot = len == 9 && !strncmp(p, "{project}", 9) ? &c->project :
				len == 12 && !strncmp(p, "{experiment}", 12) ? &c->experiment :
				len == 5 && !strncmp(p, "{run}", 5) ? &c->run :
				len == 9 && !strncmp(p, "{dataset}", 9) ? &c->dataset : &c->name;
			/* .aletheia is the control folder, never a project */
			if (slot == &c->project && strcmp(seg[i], ".aletheia") == 0)
				return 0;
			*slot = seg[i];
		} else if (strlen(seg[i]) != len || strncmp(seg[i], p, len) != 0)
			return 0;
		i++;
		p = end ? end + 1 : p + len;
	}
	return i == count;
}

#define MAX_SEGMENTS 8   /* the deepest pattern's fixed segments, and one more */

/* Splits a mount path into its node. AL_ENOTFOUND for paths outside the tree's shape. */
int node_parse(node *n, const char *path)
{
	size_t len, i;
	char *seg[MAX_SEGMENTS], *whole;
	const char *rest[MAX_SEGMENTS];
	captures c;
	int count = 0;

	memset(n, 0, sizeof(*n));
	n->rest = "";
	while (*path == '/')
		path++;
	len = strlen(path);
	if (len && path[len - 1] == '/')
		len--;   /* a trailing slash */
	/* Two copies: one cut into segments, one whole for the path inside a folder. */
	if (!(n->buf = malloc(2 * len + 2)))
		return al_error_set(AL_ENOMEM, "out of memory");
	memcpy(n->buf, path, len);
	n->buf[len] = '\0';
	whole = n->buf + len + 1;
	memcpy(whole, path, len);
	whole[len] = '\0';
	for (i = 0; len && count < MAX_SEGMENTS; ) {
		char *slash = strchr(n->buf + i, '/');
		seg[count] = n->buf + i;
		rest[count++] = whole + i;
		if (!slash)
			break;
		*slash = '\0';
		i = (size_t)(slash - n->buf) + 1;
	}
	for (i = 0; i < sizeof(kinds) / sizeof(*kinds); i++)
		if (match(&c, kinds[i]->pattern, seg, rest, count))
			break;
	if (i == sizeof(kinds) / sizeof(*kinds)) {
		node_free(n);
		return al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
	}
	n->k = kinds[i];
	n->project = c.project;
	n->experiment = c.experiment;
	n->run = c.run;
	n->dataset = c.dataset;
	n->name = c.name;
	n->rest = n->k->flags & K_NAMED ? last_segment(whole) : c.rest;
	if (n->project)
		n->proj_doc = xasprintf("projects/%s", n->project);
	if (n->dataset)
		n->ds_doc = xasprintf("%s/datasets/%s", n->proj_doc, n->dataset);
	if (n->experiment)
		n->exp_doc = xasprintf("%s/experiments/%s", n->proj_doc, n->experiment);
	if (n->run)
		n->run_doc = xasprintf("%s/runs/%s", n->exp_doc, n->run);
	if (n->k->coll)
		n->coll = xasprintf("%s/%s", node_owner_doc(n), n->k->coll);
	return 0;
}

const char *node_owner_doc(const node *n)
{
	switch (n->k->owner) {
	case O_PROJECT: return n->proj_doc;
	case O_DATASET: return n->ds_doc;
	case O_EXPERIMENT: return n->exp_doc;
	case O_RUN: return n->run_doc;
	default: return NULL;
	}
}

int render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	if (!n->k->render)
		return al_error_set(AL_EINVAL, "not a generated file");
	/* Counted for .aletheia/status, but not the control files': reading status would change it. */
	if (n->k->owner != O_NONE)
		__atomic_add_fetch(&t->renders[kind_index(n->k)], 1, __ATOMIC_RELAXED);
	return n->k->render(b, mtime, t, n);
}

/* A file whose content is rendered: its size is the rendering's, the last one's while nothing
 * it is made of changed (rendercache.c), so a stat costs no render then. */
int generated_attr(al_attr *out, al_tree *t, const node *n, const char *path, unsigned mode,
	int64_t mtime)
{
	uint64_t size = 0;
	int rc = render_cached(NULL, &size, &mtime, t, n, path);
	if (rc == 0)
		attr_file(out, mode, size, mtime);
	return rc;
}

/* A shared mount (-o allow_other) shows what the kernel enforces (default_permissions; README
 * "Many users on one machine"): everything is its owner document's creator's (documents made
 * before creators were recorded, and the root, the mounting user's), so a run's files are
 * written by its creator alone; the rows where anyone creates are open to all. */
static void owner_attr(al_attr *out, al_tree *t, const node *n, const al_doc *owner)
{
	int64_t uid, gid;
	/* In a dataset each file is its creator's (its record's, or its writer's): another user
	 * who adds one can set its times and mode (rsync, cp -p). */
	if (!out->owned || !(n->k->flags & K_OPEN)) {
		out->owned = 1;
		out->uid = t->uid;
		out->gid = t->gid;
		if (owner && al_value_get_int(&uid, al_fields_get(owner->fields, "uid")) == 0 && uid >= 0 &&
		    al_value_get_int(&gid, al_fields_get(owner->fields, "gid")) == 0 && gid >= 0) {
			out->uid = (uid_t)uid;
			out->gid = (gid_t)gid;
		}
	}
	if (out->type == AL_NODE_DIR && (n->k->flags & K_SHARED))
		out->mode = 01777;
	else if (out->type == AL_NODE_DIR && (n->k->flags & K_OPEN))
		out->mode = 0777;
	else if (out->type == AL_NODE_FILE && (n->k->flags & K_SHARED))
		out->mode = 0666;
}

/* Everything but scratch files: the row's owner document must exist; K_RUNNING rows are
 * read-only once their run ended. */
int getattr_recorded(al_attr *out, al_tree *t, const char *path)
{
	node n;
	al_doc *d = NULL;
	const char *owner;
	unsigned mode;
	int rc;

	if ((rc = node_parse(&n, path)))
		return rc;
	/* A name no document can have does not exist; the store need not be asked. */
	if ((n.project && check_name(n.project)) || (n.experiment && check_name(n.experiment)) ||
	    (n.run && check_name(n.run)) || (n.dataset && check_name(n.dataset)) ||
	    (n.name && check_name(n.name))) {
		node_free(&n);
		return al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
	}
	mode = n.k->mode;
	if ((owner = node_owner_doc(&n)) && (rc = get_doc(&d, t, owner)))
		goto cleanup;
	if ((n.k->flags & K_RUNNING) && !run_is_running(d))
		mode &= ~0222u;
	if (n.k->getattr)
		rc = n.k->getattr(out, t, &n, d, path, mode);
	else if (n.k->flags & K_DIR)
		attr_dir(out, d ? d->update_us : t->mount_us);
	else if (n.k->render)
		/* a value file's time is its own (render), a generated file's at least its owner's */
		rc = generated_attr(out, t, &n, path, mode, d && !n.k->commit ? d->update_us : 0);
	else
		rc = al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
	if (rc == 0 && t->multi_user)
		owner_attr(out, t, &n, d);
	else if (rc == 0)
		out->owned = 0;   /* everything is the mounting user's */
cleanup:
	al_doc_free(d);
	node_free(&n);
	return rc;
}

/* The type of the entry name of folder dir from its row alone (al_tree_fill_fn): -1 where a row
 * holds files and folders both (below artifacts/, params/, metrics/, a dataset) or none fits. */
static int entry_type(const char *dir, const char *name)
{
	char *path = NULL;
	node n;
	int type = -1;
	if (asprintf(&path, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name) < 0)
		return -1;
	if (node_parse(&n, path) == 0) {
		if (n.k->flags & K_DIR)
			type = AL_NODE_DIR;
		else if (n.k->readlink)
			type = n.k->list ? -1 : AL_NODE_LINK;   /* best/min/<name>: a link, or a folder of names */
		else if (strstr(n.k->pattern, "{rest"))
			type = *n.rest ? -1 : AL_NODE_DIR;   /* artifacts/ itself is a folder */
		else
			type = AL_NODE_FILE;
		node_free(&n);
	}
	free(path);
	return type;
}

int al_tree_readdir(al_tree *t, const char *path, al_tree_fill_fn fill, void *ctx)
{
	keyset k = {0};
	al_attr a;
	node n;
	size_t i;
	int rc;
	/* Attributes a listing read are kept as a lookup's would be, if nothing changed meanwhile. */
	uint64_t g0 = attrcache_gen(t);

	if ((rc = al_tree_getattr(&a, t, path)))
		return rc;
	if (a.type != AL_NODE_DIR)
		return al_error_set(AL_ENOTDIR, "not a folder: %s", path);
	if ((rc = node_parse(&n, path)))
		return rc;
	if (n.k->list)
		rc = n.k->list(&k, t, &n, path);
	else if (!(n.k->flags & K_DIR) && !n.k->entries)
		rc = al_error_set(AL_ENOTDIR, "not a folder: %s", path);
	if (n.k->flags & K_MEMORY)
		memory_children(&k, t, path);
	for (i = 0; n.k->entries && n.k->entries[i]; i++)
		keyset_add(&k, n.k->entries[i]);
	if (rc == 0) {
		fill(ctx, ".", AL_NODE_DIR, NULL);
		fill(ctx, "..", AL_NODE_DIR, NULL);
		for (i = 0; i < k.n; i++) {
			const al_attr *ka = k.attrs && k.has[i] == 1 ? &k.attrs[i] : NULL;
			int type = ka ? (int)ka->type : k.attrs && k.has[i] == 2 ? (int)k.attrs[i].type :
				entry_type(path, k.keys[i]);
			if (ka) {
				char *child = NULL;
				if (asprintf(&child, "%s/%s", strcmp(path, "/") == 0 ? "" : path, k.keys[i]) >= 0) {
					attrcache_put(t, child, ka, g0);
					free(child);
				}
			}
			if (fill(ctx, k.keys[i], type, ka))
				break;
		}
	}
	keyset_free(&k);
	node_free(&n);
	/* A folder of thousands of documents (runs/ of a big experiment) was listed whole, each
	 * document parsed: give that heap back (README "Known limitations"). */
	if (i >= 1000)
		malloc_trim(0);
	return rc;
}

int tree_mkdir(al_tree *t, const char *path, const al_caller *caller)
{
	node n;
	al_attr a;
	int rc;

	if ((rc = node_parse(&n, path)))
		return rc == AL_ENOTFOUND ? al_error_set(AL_EPERM, "cannot create a folder here: %s", path) : rc;
	if (al_tree_getattr(&a, t, path) == 0)
		rc = al_error_set(AL_EEXISTS, "%s exists", path);
	else if (!n.k->mkdir)
		rc = al_error_set(AL_EPERM, "cannot create a folder here: %s", path);
	else if (!(n.k->flags & K_RUNNING) || (rc = require_running(t, &n)) == 0)
		rc = n.k->mkdir(t, &n, path, caller);
	node_free(&n);
	return rc;
}

/* A working folder's files and labels (tags) go at once; everything else only with
 * --allow-delete (README "Deleting and renaming"). */
static int may_delete(al_tree *t, const node *n, const char *path, int *working)
{
	*working = (n->k->flags & K_WORKING) && *n->rest && (t->allow_delete || working_folder(t, n));
	if (*working || t->allow_delete || (n->k->flags & K_LABEL))
		return 0;
	if ((n->k->flags & K_WORKING) && (n->k->flags & K_RUNNING))
		return al_error_set(AL_EPERM, "run %s is not running: its artifacts are kept (mount with "
			"--allow-delete to delete %s)", n->run, path);
	return al_error_set(AL_EPERM, "deleting is off: mount with --allow-delete to delete %s", path);
}

/* After the last entry of a sub-folder of params/ or metrics/ went: the folder stays, empty, as a
 * folder made by mkdir does (README "Deleting and renaming"), so a shell in it still lists it and
 * it does not vanish from its parent, as on a local disk. path is the entry's, n its node. */
static void keep_folders_of(al_tree *t, const node *n, const char *path)
{
	size_t len = strlen(path), nrest = strlen(n->rest);
	const char *root, *end = path + len;
	if (n->k->mkdir != vdir_mkdir || nrest > len || strcmp(root = end - nrest, n->rest) != 0)
		return;
	/* each folder between the kind's root and the entry, deepest first */
	while ((end = memrchr(root, '/', (size_t)(end - root))) != NULL) {
		char *dir = strndup(path, (size_t)(end - path));
		if (!dir)
			return;
		if (!has_vdir(t, dir))
			add_vdir(t, dir);
		free(dir);
	}
}

int tree_unlink(al_tree *t, const char *path)
{
	node n;
	int rc, working;

	/* Scratch files come and go freely: nothing of them was recorded. */
	if ((rc = scratch_unlink(t, path)) != 1)
		return rc;
	if ((rc = node_parse(&n, path)))
		return rc;
	if ((n.k->flags & K_WORKING) && !*n.rest && (t->allow_delete || working_folder(t, &n)))
		rc = al_error_set(AL_EISDIR, "%s is a folder", path);
	else if ((rc = may_delete(t, &n, path, &working)) == 0)
		/* Generated files go with their folder: removing them alone is a no-op, so that
		 * `rm -rf` of a run works with --allow-delete. */
		rc = working ? blob_remove(t, &n, path) : n.k->unlink ? n.k->unlink(t, &n, path) : 0;
	if (rc == 0)
		keep_folders_of(t, &n, path);
	node_free(&n);
	return rc;
}

static int count_entry(void *ctx, const char *name, int type, const al_attr *attr)
{
	(void)type;
	(void)attr;
	if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
		++*(size_t *)ctx;
	return 0;
}

int require_empty(al_tree *t, const char *path)
{
	size_t entries = 0;
	int rc = al_tree_readdir(t, path, count_entry, &entries);
	return rc ? rc : entries ? al_error_set(AL_ENOTEMPTY, "%s is not empty", path) : 0;
}

int tree_rmdir(al_tree *t, const char *path)
{
	node n;
	int rc, working = 0;

	if ((rc = node_parse(&n, path)))
		return rc;
	/* An empty scratch folder comes and goes freely, as scratch files do. */
	if ((rc = scratch_rmdir(t, path)) == 1 && (rc = may_delete(t, &n, path, &working)) == 0) {
		if (working)
			rc = blob_rmdir(t, &n, path);
		else if (n.k->mkdir == vdir_mkdir)
			rc = require_empty(t, path);   /* a folder of params or metrics has no document:
							* one holding values said it went, and stayed */
		else
			rc = n.k->rmdir ? n.k->rmdir(t, &n, path) : 0;
	}
	if (rc == 0 && !working) {
		vdir **pv;
		pthread_mutex_lock(&t->lock);
		for (pv = &t->vdirs; *pv;) {
			if (strcmp((*pv)->path, path) == 0) {
				vdir *v = *pv;
				*pv = v->next;
				free(v->path);
				free(v);
			} else
				pv = &(*pv)->next;
		}
		pthread_mutex_unlock(&t->lock);
	}
	node_free(&n);
	return rc;
}

int tree_rename(al_tree *t, const char *from, const char *to, unsigned flags)
{
	node a, b;
	int rc, running;

	if ((rc = rename_scratch(t, from, to, flags)) != 1)
		return rc;
	if ((rc = node_parse(&a, from)))
		return rc;
	/* An ended run is read-only whatever is renamed in it, to whatever name (README "Run
	 * lifecycle"): EROFS before any EPERM. */
	running = (a.k->flags & K_RUNNING) ? require_running(t, &a) : 0;
	if (running == AL_EROFS) {
		node_free(&a);
		return running;
	}
	if ((rc = node_parse(&b, to))) {
		node_free(&a);
		return rc == AL_ENOTFOUND ? al_error_set(AL_EPERM, "cannot rename to %s", to) : rc;
	}
	if ((a.k->flags & K_WRITE_ONCE) && b.k->commit && b.ds_doc && a.ds_doc && !strcmp(a.ds_doc, b.ds_doc))
		rc = blob_rename_onto_value(t, &a, from, to);
	else if (!(a.k->flags & K_BLOBS) || !*a.rest)
		rc = al_error_set(AL_EPERM, "only files in a running run's artifacts/ or an unused dataset can be renamed");
	else if (!(b.k->flags & K_BLOBS) || !*b.rest || strcmp(a.coll, b.coll) != 0)
		/* Across folders: EXDEV lets mv fall back to copying where the target takes files. */
		rc = (b.k->flags & K_BLOBS) && *b.rest
			? al_error_set(AL_EXDEV, "rename across folders: copy instead")
			: al_error_set(AL_EPERM, "cannot rename to %s", to);
	else if ((rc = running) == 0)
		rc = blob_rename(t, &a, &b, from, to, flags);
	node_free(&a);
	node_free(&b);
	return rc;
}

int tree_symlink(al_tree *t, const char *target, const char *path, const al_caller *caller)
{
	node n;
	int rc;

	if ((rc = node_parse(&n, path)))
		return rc == AL_ENOTFOUND ? al_error_set(AL_EPERM, "links go only in a run's datasets/ and in artifacts/") : rc;
	if (!n.k->symlink)
		rc = al_error_set(AL_EPERM, "links go only in a run's datasets/ and in artifacts/");
	else if (!(n.k->flags & K_RUNNING) || (rc = require_running(t, &n)) == 0)
		rc = n.k->symlink(t, &n, path, target, caller);
	node_free(&n);
	return rc;
}

int al_tree_readlink(char **out, al_tree *t, const char *path)
{
	node n;
	int rc;

	*out = NULL;
	if ((rc = node_parse(&n, path)))
		return rc;
	rc = n.k->readlink ? n.k->readlink(out, t, &n) : al_error_set(AL_EINVAL, "not a link: %s", path);
	node_free(&n);
	return rc;
}

/* An artifact keeps its executable bit (blob_chmod); every other mode is the tree's own, and a
 * chmod of it succeeds without a change (rsync -a, cp -p: README "Files behave like files"). */
int tree_chmod(al_tree *t, const char *path, unsigned mode)
{
	node n;
	int rc = 0;
	if (node_parse(&n, path) != 0) {
		al_error_clear();
		return 0;
	}
	if ((n.k->flags & K_WORKING) && *n.rest)
		rc = blob_chmod(t, &n, path, (mode & 0111) != 0);
	node_free(&n);
	return rc;
}

int tree_utimens(al_tree *t, const char *path, int64_t mtime_us)
{
	node n;
	al_file *f;
	int rc;

	if ((rc = scratch_utimens(t, path, mtime_us)) != 1)
		return rc;
	/* Times set while the file is still open for writing (cp -p and cp -a set them before
	 * close()) are the ones its close records (README "Files behave like files"). */
	pthread_mutex_lock(&t->lock);
	for (f = t->writers; f; f = f->next)
		if (strcmp(f->path, path) == 0) {
			__atomic_store_n(&f->mtime_us, mtime_us, __ATOMIC_RELAXED);
			__atomic_store_n(&f->mtime_set, 1, __ATOMIC_RELAXED);
		}
	pthread_mutex_unlock(&t->lock);
	if ((rc = node_parse(&n, path)))
		return rc;
	/* An ended run's files are read-only, their times too (README "Run lifecycle"). */
	if ((n.k->flags & K_BLOBS) && *n.rest &&
	    (!(n.k->flags & K_RUNNING) || (rc = require_running(t, &n)) == 0))
		rc = blob_utimens(t, &n, mtime_us);
	node_free(&n);
	return rc;
}
