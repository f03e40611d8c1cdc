/* aletheia: code capture — the git state of a working directory, read with libgit2 (no network). */
#ifndef ALETHEIA_GIT_H
#define ALETHEIA_GIT_H

#include <cjson/cJSON.h>
#include "common.h"

typedef struct al_git_state {
	char *commit;     /* hex of HEAD's commit; NULL on an unborn branch */
	char *branch;     /* short name; NULL when detached */
	char *remote;     /* URL of the upstream's remote, else of "origin"; NULL if none */
	char *upstream;   /* e.g. "origin/main"; NULL if none */
	int dirty;        /* tracked files changed (index or work tree) */
	int untracked;    /* count of untracked files (not ignored) */
	int ahead, behind;
} al_git_state;

/* AL_ENOTFOUND (with *out NULL) when cwd is not inside a repository. exclude_dir (absolute, or
 * NULL) is left out of the work-tree walk, e.g. the mount point itself. */
int al_git_capture(al_git_state **out, const char *cwd, const char *exclude_dir);
void al_git_state_free(al_git_state *state);
/* The state as a typed map value (value.h): commit, branch, dirty, untracked, remote, upstream,
 * ahead, behind; absent strings are nullValue. */
cJSON *al_git_state_to_value(const al_git_state *state);

#endif
