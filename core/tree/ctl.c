/* aletheia: the root folder and .aletheia/, the mount's control folder: its status file (README
 * "The command line": what the daemon is doing). import, fsck and prefetch have files of their
 * own. */
#include "internal.h"

/* .aletheia is reached by name, never listed: a backup or search of the whole mount (rsync -a,
 * tar, grep -r, du) must not meet live or control files (README "The tree"). */
static int root_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	(void)n;
	(void)path;
	return list_ids(k, t, "projects");
}

const al_kind kind_root = {
	.name = "root", .pattern = "", .flags = K_DIR | K_SHARED, .list = root_list,
};

static const char *const ctl_entries[] = {"status", "import", "fsck", "prefetch", NULL};

const al_kind kind_ctl = {
	.name = ".aletheia", .pattern = ".aletheia", .flags = K_DIR, .entries = ctl_entries,
};

static int status_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	char *s = NULL;
	int rc;
	(void)n;
	if ((rc = al_tree_status(&s, t)) == 0)
		rc = al_buf_puts(b, s);
	free(s);
	mtime_raise(mtime, al_now_us());   /* live */
	return rc;
}

const al_kind kind_ctl_status = {
	.name = ".aletheia/status", .pattern = ".aletheia/status", .mode = 0444,
	.render = status_render,
};

/* import and fsck: written to ask, read back empty (or with what was asked for). */
int ctl_empty_attr(al_attr *out, al_tree *t, const node *n, const al_doc *owner, const char *path,
	unsigned mode)
{
	(void)n;
	(void)owner;
	(void)path;
	attr_file(out, mode, 0, t->mount_us);
	return 0;
}
