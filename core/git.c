/* aletheia: code capture — commit, branch, dirtiness, upstream and remote of a working
 * directory's repository, read locally with libgit2 (never touches the network). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <git2.h>
#include "aletheia/git.h"
#include "core/buf.h"
#include "core/doc/value.h"

static pthread_once_t git_once = PTHREAD_ONCE_INIT;

static void git_init(void)
{
	git_libgit2_init();
	/* The repository is the caller's, not the daemon's: a shared mount's root daemon reads each
	 * user's own repository, which libgit2's check (owned by this process's user, as git's
	 * safe.directory) refused, reporting it as no repository at all. Reading runs no hook or
	 * configured program, so the check guards nothing here. */
	git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
}

/* Sets the aletheia error from libgit2's last error. */
static int git_fail(int code, const char *what)
{
	const git_error *e = git_error_last();
	return al_error_set(code, "git: %s: %s", what, e && e->message ? e->message : "failed");
}

static int dup_str(char **out, const char *s)
{
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : al_error_set(AL_ENOMEM, "git: out of memory");
}

/* Branch name of HEAD, also on an unborn branch (where there is no reference to resolve). */
static int head_branch(al_git_state *st, git_repository *repo, git_reference *head)
{
	git_reference *sym = NULL;
	const char *name = NULL, *target;
	int rc = 0;

	if (head) {
		if (git_branch_name(&name, head) < 0)
			name = NULL;  /* HEAD points outside refs/heads */
		rc = dup_str(&st->branch, name);
		goto cleanup;
	}
	if (git_reference_lookup(&sym, repo, "HEAD") < 0 ||
	    git_reference_type(sym) != GIT_REFERENCE_SYMBOLIC)
		goto cleanup;
	target = git_reference_symbolic_target(sym);
	if (target && strncmp(target, "refs/heads/", 11) == 0)
		rc = dup_str(&st->branch, target + 11);
cleanup:
	git_reference_free(sym);
	return rc;
}

/* Config value as a new string in *out; nothing (and 0) when unset. */
static int config_str(char **out, git_config *cfg, const char *fmt, const char *name)
{
	char key[512];
	const char *v;

	*out = NULL;
	if ((size_t)snprintf(key, sizeof(key), fmt, name) >= sizeof(key) ||
	    git_config_get_string(&v, cfg, key) < 0)
		return 0;
	return dup_str(out, v);
}

typedef struct {
	const char *merge;  /* the upstream branch's name on the remote, refs/heads/... */
	char *tracking;     /* first fetch refspec's local name for it */
	int rc;
} fetch_map;

static int map_fetch_spec(const git_config_entry *entry, void *payload)
{
	fetch_map *m = payload;
	git_refspec *spec = NULL;
	git_buf out = { 0 };

	if (m->tracking || git_refspec_parse(&spec, entry->value, 1) < 0)
		return 0;
	if (git_refspec_src_matches(spec, m->merge) && git_refspec_transform(&out, spec, m->merge) == 0)
		m->rc = dup_str(&m->tracking, out.ptr);
	git_buf_dispose(&out);
	git_refspec_free(spec);
	return 0;
}

/* Upstream, its remote's URL, and ahead/behind, resolved from branch.<name>.remote/.merge and
 * the remote's fetch refspecs. Done by hand because git_branch_upstream and
 * git_remote_lookup leak a PCRE2 match block (~20 KB) per call in libgit2 1.5, and the daemon
 * captures once per run for as long as it lives. */
static int upstream_info(al_git_state *st, git_repository *repo, git_config *cfg,
	git_reference *head)
{
	char *remote = NULL, *merge = NULL, key[512];
	fetch_map map = { 0 };
	git_reference *up = NULL;
	git_object *local = NULL, *theirs = NULL;
	size_t ahead = 0, behind = 0;
	int rc;

	if ((rc = config_str(&remote, cfg, "branch.%s.remote", st->branch)) < 0 ||
	    (rc = config_str(&merge, cfg, "branch.%s.merge", st->branch)) < 0)
		goto cleanup;
	if (!remote || !merge)
		goto cleanup;
	if (strcmp(remote, ".") == 0) {
		map.tracking = merge;  /* a local branch as upstream */
		merge = NULL;
	} else {
		if ((rc = config_str(&st->remote, cfg, "remote.%s.url", remote)) < 0)
			goto cleanup;
		map.merge = merge;
		snprintf(key, sizeof(key), "remote.%s.fetch", remote);
		git_config_get_multivar_foreach(cfg, key, NULL, map_fetch_spec, &map);
		if ((rc = map.rc) < 0)
			goto cleanup;
	}
	if (!map.tracking || git_reference_lookup(&up, repo, map.tracking) < 0)
		goto cleanup;  /* never fetched: no upstream to compare with */
	if ((rc = dup_str(&st->upstream, git_reference_shorthand(up))) < 0)
		goto cleanup;
	if (git_reference_peel(&local, head, GIT_OBJECT_COMMIT) < 0 ||
	    git_reference_peel(&theirs, up, GIT_OBJECT_COMMIT) < 0)
		goto cleanup;
	if (git_graph_ahead_behind(&ahead, &behind, repo, git_object_id(local),
		git_object_id(theirs)) < 0) {
		rc = git_fail(AL_ERROR, "counting commits ahead/behind the upstream");
		goto cleanup;
	}
	st->ahead = (int)ahead;
	st->behind = (int)behind;
cleanup:
	git_object_free(local);
	git_object_free(theirs);
	git_reference_free(up);
	free(map.tracking);
	free(remote);
	free(merge);
	return rc;
}

/* A submodule's names, gathered first: its status is asked outside the walk. */
static int sub_name(git_submodule *sm, const char *name, void *payload)
{
	al_buf *names = payload;
	(void)sm;
	return al_buf_put(names, name, strlen(name) + 1);
}

/* 1 when a submodule's checked-out commit is not the one the index or HEAD records (a commit
 * made in it, a checkout there, a gitlink staged): the code run is not the recorded commit's.
 * Its own work tree's changes do not count (git's diff.ignoreSubmodules=dirty). */
static int submodule_moved(git_repository *repo)
{
	const unsigned moved = GIT_SUBMODULE_STATUS_INDEX_ADDED | GIT_SUBMODULE_STATUS_INDEX_DELETED |
		GIT_SUBMODULE_STATUS_INDEX_MODIFIED | GIT_SUBMODULE_STATUS_WD_DELETED |
		GIT_SUBMODULE_STATUS_WD_MODIFIED;
	al_buf names = AL_BUF_INIT;
	size_t i;
	int found = 0;
	if (git_submodule_foreach(repo, sub_name, &names) == 0)
		for (i = 0; !found && i < names.len; i += strlen(names.ptr + i) + 1) {
			unsigned int s = 0;
			found = git_submodule_status(&s, repo, names.ptr + i, GIT_SUBMODULE_IGNORE_DIRTY) == 0 &&
				(s & moved);
		}
	git_error_clear();
	al_buf_dispose(&names);
	return found;
}

static int work_status(al_git_state *st, git_repository *repo)
{
	git_status_options opts;
	git_status_list *list = NULL;
	size_t i, n;
	int rc = 0;

	if (git_repository_is_bare(repo))
		return 0;
	git_status_options_init(&opts, GIT_STATUS_OPTIONS_VERSION);
	opts.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
	/* Submodules are left out: their own dirty work trees would make every run "dirty";
	 * submodule_moved tells whether one is at another commit. */
	opts.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS |
		GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
	if (git_status_list_new(&list, repo, &opts) < 0) {
		rc = git_fail(AL_ERROR, "reading the work tree status");
		goto cleanup;
	}
	n = git_status_list_entrycount(list);
	for (i = 0; i < n; i++) {
		unsigned int s = git_status_byindex(list, i)->status;
		if (s & GIT_STATUS_IGNORED)
			continue;
		if (s == GIT_STATUS_WT_NEW)
			st->untracked++;
		else if (s != GIT_STATUS_CURRENT)
			st->dirty = 1;
	}
	if (!st->dirty)
		st->dirty = submodule_moved(repo);
cleanup:
	git_status_list_free(list);
	return rc;
}

/* Keeps the status walk out of exclude_dir when it lies inside the work tree (an aletheia mount
 * inside the repository: walking it from the daemon would deadlock on the folder being created). */
static int exclude(git_repository *repo, const char *dir)
{
	const char *wd = git_repository_workdir(repo);
	size_t n = wd ? strlen(wd) : 0;
	char *rule = NULL;
	int rc = 0;

	if (!n || strncmp(dir, wd, n) != 0 || !dir[n])
		return 0;   /* workdir ends with '/'; dir is elsewhere, or is the work tree itself */
	if (asprintf(&rule, "/%s/", dir + n) < 0)
		return al_error_set(AL_ENOMEM, "git: out of memory");
	if (git_ignore_add_rule(repo, rule) < 0)
		rc = git_fail(AL_ERROR, "ignoring the mount point");
	free(rule);
	return rc;
}

int al_git_capture(al_git_state **out, const char *cwd, const char *exclude_dir)
{
	al_git_state *st = NULL;
	git_repository *repo = NULL;
	git_reference *head = NULL;
	git_object *commit = NULL;
	git_config *cfg = NULL;
	char hex[GIT_OID_HEXSZ + 1];
	int rc = 0, e;

	*out = NULL;
	pthread_once(&git_once, git_init);
	e = git_repository_open_ext(&repo, cwd, 0, NULL);
	if (e == GIT_ENOTFOUND) {
		rc = al_error_set(AL_ENOTFOUND, "git: %s is not inside a repository", cwd);
		goto cleanup;
	}
	if (e < 0) {
		rc = git_fail(AL_ERROR, "opening the repository");
		goto cleanup;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		rc = al_error_set(AL_ENOMEM, "git: out of memory");
		goto cleanup;
	}
	if (exclude_dir && (rc = exclude(repo, exclude_dir)) < 0)
		goto cleanup;

	e = git_repository_head(&head, repo);
	if (e < 0 && e != GIT_EUNBORNBRANCH && e != GIT_ENOTFOUND) {
		rc = git_fail(AL_ERROR, "reading HEAD");
		goto cleanup;
	}
	if (head && git_reference_peel(&commit, head, GIT_OBJECT_COMMIT) == 0) {
		git_oid_tostr(hex, sizeof(hex), git_object_id(commit));
		if ((rc = dup_str(&st->commit, hex)) < 0)
			goto cleanup;
	}
	if (git_repository_head_detached(repo) != 1 &&
	    (rc = head_branch(st, repo, head)) < 0)
		goto cleanup;
	if (git_repository_config_snapshot(&cfg, repo) < 0) {
		rc = git_fail(AL_ERROR, "reading the repository configuration");
		goto cleanup;
	}
	if (st->branch && head && (rc = upstream_info(st, repo, cfg, head)) < 0)
		goto cleanup;
	if (!st->remote && (rc = config_str(&st->remote, cfg, "remote.%s.url", "origin")) < 0)
		goto cleanup;
	if ((rc = work_status(st, repo)) < 0)
		goto cleanup;
	*out = st;
	st = NULL;
cleanup:
	git_config_free(cfg);
	git_object_free(commit);
	git_reference_free(head);
	git_repository_free(repo);
	al_git_state_free(st);
	return rc;
}

void al_git_state_free(al_git_state *state)
{
	if (!state)
		return;
	free(state->commit);
	free(state->branch);
	free(state->remote);
	free(state->upstream);
	free(state);
}

static cJSON *str_or_null(const char *s)
{
	return s ? al_value_string(s) : al_value_null();
}

cJSON *al_git_state_to_value(const al_git_state *state)
{
	cJSON *fields = cJSON_CreateObject();
	struct { const char *name; cJSON *v; } f[] = {
		{ "commit", str_or_null(state->commit) },
		{ "branch", str_or_null(state->branch) },
		{ "dirty", al_value_bool(state->dirty) },
		{ "untracked", al_value_int(state->untracked) },
		{ "remote", str_or_null(state->remote) },
		{ "upstream", str_or_null(state->upstream) },
		{ "ahead", al_value_int(state->ahead) },
		{ "behind", al_value_int(state->behind) },
	};
	size_t i, n = sizeof(f) / sizeof(f[0]);
	int ok = fields != NULL;

	for (i = 0; i < n; i++) {
		if (ok && f[i].v && cJSON_AddItemToObject(fields, f[i].name, f[i].v))
			continue;
		ok = 0;
		cJSON_Delete(f[i].v);
	}
	if (!ok) {
		cJSON_Delete(fields);
		return NULL;
	}
	return al_value_map(fields);
}
