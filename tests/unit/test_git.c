/* Unit tests for core/git.c: capture from temp repositories built with the git command. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "aletheia/git.h"
#include "core/doc/value.h"
#include "check.h"

static char root[] = "/tmp/al-git-XXXXXX";

/* Runs a shell command (printf-style) in the temp root; checks it succeeded. */
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	int n, rc;
	va_list ap;

	n = snprintf(cmd, sizeof(cmd), "cd '%s' && ( ", root);
	va_start(ap, fmt);
	n += vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
	va_end(ap);
	snprintf(cmd + n, sizeof(cmd) - (size_t)n, " ) >/dev/null 2>&1");
	rc = system(cmd);
	if (rc != 0)
		fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
	CHECK_EQ_INT(rc, 0);
	return rc;
}

/* The output's first line of a command run in the temp root. */
static void sh_out(char *buf, size_t cap, const char *cmd)
{
	char full[1024];
	FILE *p;

	snprintf(full, sizeof(full), "cd '%s' && %s", root, cmd);
	buf[0] = '\0';
	p = popen(full, "r");
	if (!p || !fgets(buf, (int)cap, p))
		buf[0] = '\0';
	if (p)
		pclose(p);
	buf[strcspn(buf, "\n")] = '\0';
}

static al_git_state *capture(const char *sub)
{
	char path[512];
	al_git_state *st = NULL;

	snprintf(path, sizeof(path), "%s/%s", root, sub);
	CHECK_OK(al_git_capture(&st, path, NULL));
	CHECK(st != NULL);
	return st;
}

#define CHECK_NULL_STR(s) CHECK((s) == NULL)

static void test_not_a_repo(void)
{
	char path[512];
	al_git_state *st = (al_git_state *)1;

	snprintf(path, sizeof(path), "%s/plain", root);
	sh("mkdir plain");
	CHECK_EQ_INT(al_git_capture(&st, path, NULL), AL_ENOTFOUND);
	CHECK(st == NULL);
	st = (al_git_state *)1;
	CHECK_EQ_INT(al_git_capture(&st, "/nonexistent/al-git-test", NULL), AL_ENOTFOUND);
	CHECK(st == NULL);
}

static void test_repo(void)
{
	char head[128], head2[128], url[600];
	al_git_state *st;

	/* unborn branch: no commit, but the branch name is known */
	sh("git init -q -b main repo");
	st = capture("repo");
	if (st) {
		CHECK_NULL_STR(st->commit);
		CHECK_EQ_STR(st->branch, "main");
		CHECK_NULL_STR(st->upstream);
		CHECK_NULL_STR(st->remote);
		CHECK_EQ_INT(st->dirty, 0);
		CHECK_EQ_INT(st->untracked, 0);
		al_git_state_free(st);
	}

	/* first commit; capture from a subfolder too */
	sh("cd repo && printf 'a\\n' > a.txt && printf '*.log\\n' > .gitignore && mkdir -p src/deep && "
	   "printf 'x\\n' > src/deep/x.c && git add . && git commit -q -m first");
	sh_out(head, sizeof(head), "git -C repo rev-parse HEAD");
	CHECK_EQ_INT(strlen(head), 40);
	st = capture("repo/src/deep");
	if (st) {
		CHECK_EQ_STR(st->commit, head);
		CHECK_EQ_STR(st->branch, "main");
		CHECK_NULL_STR(st->upstream);
		CHECK_NULL_STR(st->remote);
		CHECK_EQ_INT(st->dirty, 0);
		CHECK_EQ_INT(st->untracked, 0);
		CHECK_EQ_INT(st->ahead, 0);
		CHECK_EQ_INT(st->behind, 0);
		al_git_state_free(st);
	}

	/* a bare "remote" as origin, pushed with an upstream */
	snprintf(url, sizeof(url), "%s/remote.git", root);
	sh("git init -q --bare -b main remote.git && cd repo && git remote add origin '%s' && "
	   "git push -q -u origin main", url);
	st = capture("repo");
	if (st) {
		CHECK_EQ_STR(st->upstream, "origin/main");
		CHECK_EQ_STR(st->remote, url);
		CHECK_EQ_INT(st->ahead, 0);
		CHECK_EQ_INT(st->behind, 0);
		al_git_state_free(st);
	}

	/* two local commits: ahead by 2 */
	sh("cd repo && echo b >> a.txt && git commit -q -am second && echo c >> a.txt && "
	   "git commit -q -am third");
	sh_out(head2, sizeof(head2), "git -C repo rev-parse HEAD");
	st = capture("repo");
	if (st) {
		CHECK_EQ_STR(st->commit, head2);
		CHECK_EQ_INT(st->ahead, 2);
		CHECK_EQ_INT(st->behind, 0);
		CHECK_EQ_INT(st->dirty, 0);
		al_git_state_free(st);
	}

	/* someone else pushes one commit; after a fetch we are 2 ahead, 1 behind */
	sh("git clone -q remote.git other && cd other && echo o > o.txt && git add o.txt && "
	   "git commit -q -m other && git push -q origin main && cd ../repo && git fetch -q origin");
	st = capture("repo");
	if (st) {
		CHECK_EQ_INT(st->ahead, 2);
		CHECK_EQ_INT(st->behind, 1);
		al_git_state_free(st);
	}

	/* untracked files (recursing into new folders), ignored files not counted: still clean */
	sh("cd repo && echo u > u.txt && mkdir -p newdir/sub && echo 1 > newdir/one && "
	   "echo 2 > newdir/sub/two && echo junk > junk.log && echo junk > src/deep/more.log");
	st = capture("repo");
	if (st) {
		CHECK_EQ_INT(st->untracked, 3);
		CHECK_EQ_INT(st->dirty, 0);
		al_git_state_free(st);
	}

	/* a modified tracked file: dirty */
	sh("cd repo && echo changed >> src/deep/x.c");
	st = capture("repo");
	if (st) {
		CHECK_EQ_INT(st->dirty, 1);
		CHECK_EQ_INT(st->untracked, 3);
		al_git_state_free(st);
	}
	/* staged only (work tree equals index): still dirty */
	sh("cd repo && git add src/deep/x.c");
	st = capture("repo");
	if (st) {
		CHECK_EQ_INT(st->dirty, 1);
		al_git_state_free(st);
	}
	/* a deleted tracked file: dirty */
	sh("cd repo && git reset -q src/deep/x.c && git checkout -q -- src/deep/x.c && rm a.txt");
	st = capture("repo");
	if (st) {
		CHECK_EQ_INT(st->dirty, 1);
		al_git_state_free(st);
	}
	sh("cd repo && git checkout -q -- a.txt");

	/* a branch without upstream: remote falls back to origin */
	sh("cd repo && git checkout -q -b feature");
	st = capture("repo");
	if (st) {
		CHECK_EQ_STR(st->branch, "feature");
		CHECK_NULL_STR(st->upstream);
		CHECK_EQ_STR(st->remote, url);
		CHECK_EQ_INT(st->ahead, 0);
		CHECK_EQ_INT(st->behind, 0);
		CHECK_EQ_INT(st->dirty, 0);
		al_git_state_free(st);
	}

	/* a local branch as upstream: ahead of it by one commit */
	sh("cd repo && git checkout -q --track -b local-up main && echo l >> a.txt && "
	   "git commit -q -am local");
	st = capture("repo");
	if (st) {
		CHECK_EQ_STR(st->branch, "local-up");
		CHECK_EQ_STR(st->upstream, "main");
		CHECK_EQ_STR(st->remote, url);  /* "." is no remote: origin's URL */
		CHECK_EQ_INT(st->ahead, 1);
		CHECK_EQ_INT(st->behind, 0);
		al_git_state_free(st);
	}

	/* detached HEAD */
	sh("cd repo && git checkout -q --detach HEAD~1");
	sh_out(head, sizeof(head), "git -C repo rev-parse HEAD");
	st = capture("repo");
	if (st) {
		CHECK_EQ_STR(st->commit, head);
		CHECK_NULL_STR(st->branch);
		CHECK_NULL_STR(st->upstream);
		CHECK_EQ_STR(st->remote, url);
		CHECK_EQ_INT(st->ahead, 0);
		CHECK_EQ_INT(st->behind, 0);
		CHECK_EQ_INT(st->untracked, 3);
		al_git_state_free(st);
	}
	al_git_state_free(NULL);
}

/* Last, since it needs core/doc/value.c. */
static void test_to_value(void)
{
	char url[600];
	al_git_state *st;
	cJSON *v;
	const cJSON *fields;
	int64_t i;
	int b;

	sh("cd repo && git checkout -q main && echo x >> a.txt");
	snprintf(url, sizeof(url), "%s/remote.git", root);
	st = capture("repo");
	if (!st)
		return;
	v = al_git_state_to_value(st);
	CHECK(v != NULL);
	fields = al_value_get_map(v);
	CHECK(fields != NULL);
	if (fields) {
		CHECK_EQ_STR(al_fields_get_string(fields, "commit"), st->commit);
		CHECK_EQ_STR(al_fields_get_string(fields, "branch"), "main");
		CHECK_EQ_STR(al_fields_get_string(fields, "remote"), url);
		CHECK_EQ_STR(al_fields_get_string(fields, "upstream"), "origin/main");
		CHECK_OK(al_fields_get_bool(&b, fields, "dirty"));
		CHECK_EQ_INT(b, 1);
		CHECK_OK(al_fields_get_int(&i, fields, "untracked"));
		CHECK_EQ_INT(i, 3);
		CHECK_OK(al_fields_get_int(&i, fields, "ahead"));
		CHECK_EQ_INT(i, 2);
		CHECK_OK(al_fields_get_int(&i, fields, "behind"));
		CHECK_EQ_INT(i, 1);
	}
	cJSON_Delete(v);

	/* absent strings become nullValue */
	free(st->branch);
	free(st->upstream);
	st->branch = st->upstream = NULL;
	v = al_git_state_to_value(st);
	fields = v ? al_value_get_map(v) : NULL;
	CHECK(fields != NULL);
	if (fields) {
		const cJSON *n = al_fields_get(fields, "branch");
		CHECK(n != NULL && cJSON_GetObjectItemCaseSensitive(n, "nullValue") != NULL);
		CHECK(al_fields_get(fields, "upstream") != NULL);
		CHECK(al_fields_get_string(fields, "upstream") == NULL);
	}
	cJSON_Delete(v);
	al_git_state_free(st);
}

/* A submodule at another commit than the one recorded is a change (the code run is not the
 * commit's); a dirty work tree inside it is not. A tester's --require-clean let a moved gitlink
 * through with dirty false. */
/* The state captured at sub is dirty (1) or not (0). */
static void check_dirty(const char *sub, int dirty)
{
	al_git_state *st = capture(sub);
	if (st) {
		CHECK_EQ_INT(st->dirty, dirty);
		al_git_state_free(st);
	}
}

static void test_submodule(void)
{
	sh("git init -q -b main lib && cd lib && printf 'v1\\n' > v && git add v && git commit -q -m v1");
	sh("git init -q -b main top && cd top && git -c protocol.file.allow=always submodule add -q ../lib lib "
	   "&& git commit -q -m 'with lib'");
	check_dirty("top", 0);
	sh("cd top/lib && printf 'local\\n' >> v");          /* the submodule's own dirty work tree */
	check_dirty("top", 0);
	sh("cd top/lib && git checkout -q v && git commit -q --allow-empty -m moved");
	check_dirty("top", 1);
	sh("cd top && git add lib");                             /* staged: still not HEAD's commit */
	check_dirty("top", 1);
	sh("cd top && git commit -q -m 'lib moved'");
	check_dirty("top", 0);
}

int main(void)
{
	char cmd[600];

	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	/* Isolate from the user's git configuration; fixed identity for commits. */
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1);
	setenv("HOME", root, 1);
	setenv("GIT_AUTHOR_NAME", "Test", 1);
	setenv("GIT_AUTHOR_EMAIL", "test@example.com", 1);
	setenv("GIT_COMMITTER_NAME", "Test", 1);
	setenv("GIT_COMMITTER_EMAIL", "test@example.com", 1);
	unsetenv("GIT_DIR");
	unsetenv("GIT_WORK_TREE");

	test_not_a_repo();
	test_repo();
	test_submodule();
	test_to_value();

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
	CHECK_DONE();
}
