/* aletheia unit test of the tree: a run's folder — run.json and its fields, the status lifecycle
 * (finished, failed N, killed, resumed with running), fold, model, description, and what an ended
 * run refuses (README "run.json", "Run lifecycle and code capture"). */
#include <pwd.h>
#include "tree_fixture.h"

#define RJ RUN1 "/run.json"

static void check_time(const cJSON *j, const char *key)
{
	const char *c = tree_json_get(j, key);
	/* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" quoted: RFC 3339 UTC with microseconds */
	if (!(strlen(c) == 29 && c[0] == '"' && c[11] == 'T' && c[20] == '.' && c[27] == 'Z'))
		fprintf(stderr, "%s: %s is no RFC 3339 UTC time with microseconds\n", key, c);
	CHECK(strlen(c) == 29 && c[0] == '"' && c[11] == 'T' && c[20] == '.' && c[27] == 'Z');
}

static void test_run_json(void)
{
	char host[256] = "", want[4200], cmd[4096] = "", cwd[1024];
	struct passwd *pw = getpwuid(getuid());
	cJSON *j;
	FILE *f;
	size_t n, i;
	al_attr a;

	CHECK_OK(tree_mkdirs(RUN1));
	gethostname(host, sizeof(host) - 1);
	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	/* the creating process's command line */
	if ((f = fopen("/proc/self/cmdline", "r"))) {
		n = fread(cmd, 1, sizeof(cmd) - 1, f);
		fclose(f);
		for (i = 0; i + 1 < n; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
	}
	j = tree_json(RJ);
	CHECK(j != NULL);
	CHECK_EQ_STR(tree_json_get(j, "id"), "\"1\"");
	CHECK_EQ_STR(tree_json_get(j, "project"), "\"p\"");
	CHECK_EQ_STR(tree_json_get(j, "experiment"), "\"e\"");
	CHECK_EQ_STR(tree_json_get(j, "status"), "\"running\"");
	check_time(j, "created");
	CHECK_EQ_STR(tree_json_get(j, "started"), tree_json_get(j, "created"));
	CHECK_EQ_STR(tree_json_get(j, "ended"), "null");
	CHECK_EQ_STR(tree_json_get(j, "fold"), "null");
	CHECK_EQ_STR(tree_json_get(j, "model"), "\"\"");
	CHECK_EQ_STR(tree_json_get(j, "description"), "\"\"");
	snprintf(want, sizeof(want), "\"%s\"", host);
	CHECK_EQ_STR(tree_json_get(j, "host"), want);
	snprintf(want, sizeof(want), "\"%s\"", pw ? pw->pw_name : "?");
	CHECK_EQ_STR(tree_json_get(j, "user"), want);
	snprintf(want, sizeof(want), "\"%s\"", cmd);
	CHECK_EQ_STR(tree_json_get(j, "command"), want);
	snprintf(want, sizeof(want), "\"%s\"", cwd);
	CHECK_EQ_STR(tree_json_get(j, "cwd"), want);
	CHECK_EQ_STR(tree_json_get(j, "exit_code"), "null");
	CHECK_EQ_STR(tree_json_get(j, "resumed"), "[]");
	CHECK_EQ_STR(tree_json_get(j, "git"), "null");   /* outside a repository */
	CHECK_EQ_STR(tree_json_get(j, "params"), "{}");
	CHECK_EQ_STR(tree_json_get(j, "metrics"), "{}");
	CHECK_EQ_STR(tree_json_get(j, "datasets"), "[]");
	CHECK_EQ_STR(tree_json_get(j, "artifacts"), "{\"count\":0,\"bytes\":0}");
	CHECK_EQ_STR(tree_json_get(j, "system"), "null");      /* made without aletheia run */
	CHECK_EQ_STR(tree_json_get(j, "heartbeat"), "null");
	CHECK_EQ_STR(tree_json_get(j, "tags"), "{}");
	CHECK_EQ_INT(cJSON_GetArraySize(j), 24);   /* README's 24 fields, no others */
	cJSON_Delete(j);
	CHECK_OK(al_tree_getattr(&a, TF.t, RJ));
	CHECK_EQ_INT(a.mode, 0444);
	CHECK_EQ_INT(a.size, strlen(tree_cat(RJ)));
	CHECK_EQ_INT(tree_write(RJ, "{}"), AL_EACCES);

	/* what the run holds shows in it, exactly */
	CHECK_OK(tree_write(RUN1 "/params/lr", "0.001\n"));
	CHECK_OK(tree_append(RUN1 "/metrics/loss", "0 0.5 1700000000\n1 0.25 1700000001.5\n"));
	CHECK_OK(tree_write(RUN1 "/artifacts/a.txt", "hello"));
	CHECK_OK(tree_write(RUN1 "/artifacts/b/c.txt", "hi"));
	CHECK_OK(tree_write(RUN1 "/fold", "2\n"));
	CHECK_OK(tree_write(RUN1 "/model", "resnet50\n"));
	CHECK_OK(tree_write(RUN1 "/description", "first try\n"));
	j = tree_json(RJ);
	CHECK_EQ_STR(tree_json_get(j, "params"), "{\"lr\":0.001}");
	CHECK_EQ_STR(tree_json_get(j, "metrics"),
		"{\"loss\":{\"last\":0.25,\"step\":1,\"count\":2,\"min\":0.25,\"max\":0.5}}");
	CHECK_EQ_STR(tree_json_get(j, "artifacts"), "{\"count\":2,\"bytes\":7}");
	CHECK_EQ_STR(tree_json_get(j, "fold"), "2");
	CHECK_EQ_STR(tree_json_get(j, "model"), "\"resnet50\"");
	CHECK_EQ_STR(tree_json_get(j, "description"), "\"first try\"");
	cJSON_Delete(j);
	/* doubles with a fraction or exponent, int64 as integers (README "run.json") */
	CHECK(strstr(tree_cat(RJ), "\"last\": 0.25,\n") != NULL);
	CHECK_OK(tree_append(RUN1 "/metrics/n", "3\n"));
	CHECK(strstr(tree_cat(RJ), "\"n\": {\n      \"last\": 3.0,\n      \"step\": 0,\n      \"count\": 1,\n"
		"      \"min\": 3.0,\n      \"max\": 3.0\n") != NULL);
	CHECK_EQ_STR(tree_cat(RUN1 "/fold"), "2\n");
	CHECK_EQ_STR(tree_cat(RUN1 "/model"), "resnet50\n");
	CHECK_EQ_STR(tree_cat(RUN1 "/status"), "running\n");
}

/* What status accepts, and what fails the write() itself (README "metrics": status and fold hold
 * one line and fail the write()). */
static void test_status_values(void)
{
	const char *bad_write[] = {"done\n", "finished now\n", "failed 3 4\n", "failed x\n",
		"failed 4294967296\n", "\n", "running 2\n"};
	size_t i;
	for (i = 0; i < sizeof(bad_write) / sizeof(bad_write[0]); i++) {
		tree_io r = tree_put(RUN1 "/status", bad_write[i], strlen(bad_write[i]), AL_OPEN_TRUNC);
		if (r.write != AL_EINVAL)
			fprintf(stderr, "status \"%s\": write %d, close %d\n", bad_write[i], r.write, r.close);
		CHECK_EQ_INT(r.write, AL_EINVAL);
		CHECK_EQ_INT(r.close, 0);   /* nothing left to record */
	}
	CHECK_EQ_STR(tree_cat(RUN1 "/status"), "running\n");
	CHECK_EQ_INT(tree_io_first(tree_put(RUN1 "/fold", "abc\n", 4, AL_OPEN_TRUNC)), AL_EINVAL);
	CHECK_EQ_INT(tree_put(RUN1 "/fold", "1.5\n", 4, AL_OPEN_TRUNC).write, AL_EINVAL);
	CHECK_EQ_STR(tree_cat(RUN1 "/fold"), "2\n");
}

static void test_lifecycle(void)
{
	cJSON *j;
	al_file *metric = NULL, *art = NULL;
	char ended[64];

	/* descriptors opened while running */
	CHECK_OK(al_file_open(&metric, TF.t, RUN1 "/metrics/loss", AL_OPEN_WRITE | AL_OPEN_APPEND));
	CHECK_OK(al_file_open(&art, TF.t, RUN1 "/artifacts/late.txt", AL_OPEN_WRITE | AL_OPEN_CREATE));
	CHECK_OK(al_file_write(art, "late", 4, 0));

	CHECK_OK(tree_write(RUN1 "/status", "finished\n"));
	CHECK_EQ_STR(tree_cat(RUN1 "/status"), "finished\n");
	j = tree_json(RJ);
	CHECK_EQ_STR(tree_json_get(j, "status"), "\"finished\"");
	check_time(j, "ended");
	CHECK_EQ_STR(tree_json_get(j, "exit_code"), "0");
	snprintf(ended, sizeof(ended), "%s", tree_json_get(j, "ended"));
	cJSON_Delete(j);

	/* an ended run is read-only but for description and status (EROFS) */
	CHECK_EQ_INT(tree_write(RUN1 "/params/lr", "0.1\n"), AL_EROFS);
	CHECK_EQ_INT(tree_write(RUN1 "/params/new", "1\n"), AL_EROFS);
	CHECK_EQ_INT(tree_write(RUN1 "/params.json", "{\"a\": 1}"), AL_EROFS);
	CHECK_EQ_INT(tree_append(RUN1 "/metrics/loss", "0.1\n"), AL_EROFS);
	CHECK_EQ_INT(tree_append(RUN1 "/metrics/new", "0.1\n"), AL_EROFS);
	CHECK_EQ_INT(tree_write(RUN1 "/artifacts/x", "x"), AL_EROFS);
	CHECK_EQ_INT(tree_write(RUN1 "/artifacts/a.txt", "x"), AL_EROFS);
	CHECK_EQ_INT(tree_write(RUN1 "/fold", "5\n"), AL_EROFS);
	CHECK_EQ_INT(tree_write(RUN1 "/model", "m\n"), AL_EROFS);
	CHECK_EQ_INT(tree_mkdir(RUN1 "/artifacts/d"), AL_EROFS);
	CHECK_EQ_INT(al_tree_unlink(TF.t, RUN1 "/artifacts/a.txt"), AL_EPERM);
	CHECK_EQ_INT(al_tree_rename(TF.t, RUN1 "/artifacts/a.txt", RUN1 "/artifacts/z.txt", 0), AL_EROFS);
	CHECK_OK(tree_write(RUN1 "/description", "kept\n"));
	CHECK_EQ_STR(tree_cat(RUN1 "/description"), "kept\n");
	/* ... and so are descriptors opened before it ended: a metric's write(), an artifact's close() */
	CHECK_EQ_INT(al_file_write(metric, "0.1\n", 4, 0), AL_EROFS);
	al_file_release(metric);
	CHECK_EQ_INT(al_file_flush(art), AL_EROFS);
	al_file_release(art);
	CHECK_EQ_INT(tree_size(RUN1 "/artifacts/late.txt"), AL_ENOTFOUND);
	CHECK_EQ_STR(tree_cat(RUN1 "/params/lr"), "0.001\n");
	CHECK(strstr(tree_cat(RJ), "\"count\": 2,") != NULL);   /* loss kept its 2 points */

	/* failed N: that exit code; killed: null */
	CHECK_OK(tree_write(RUN1 "/status", "failed 3\n"));
	j = tree_json(RJ);
	CHECK_EQ_STR(tree_json_get(j, "status"), "\"failed\"");
	CHECK_EQ_STR(tree_json_get(j, "exit_code"), "3");
	cJSON_Delete(j);
	CHECK_EQ_STR(tree_cat(RUN1 "/status"), "failed\n");
	CHECK_OK(tree_write(RUN1 "/status", "killed"));
	j = tree_json(RJ);
	CHECK_EQ_STR(tree_json_get(j, "exit_code"), "null");
	cJSON_Delete(j);
	CHECK_OK(tree_write(RUN1 "/status", "failed -1\n"));
	j = tree_json(RJ);
	CHECK_EQ_STR(tree_json_get(j, "exit_code"), "-1");
	CHECK_EQ_STR(tree_json_get(j, "resumed"), "[]");
	cJSON_Delete(j);

	/* running again resumes: ended and exit_code cleared, the time added to resumed */
	CHECK_OK(tree_write(RUN1 "/status", "running\n"));
	j = tree_json(RJ);
	CHECK_EQ_STR(tree_json_get(j, "status"), "\"running\"");
	CHECK_EQ_STR(tree_json_get(j, "ended"), "null");
	CHECK_EQ_STR(tree_json_get(j, "exit_code"), "null");
	CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "resumed")), 1);
	cJSON_Delete(j);
	CHECK_OK(tree_write(RUN1 "/params/lr", "0.1\n"));
	CHECK_OK(tree_append(RUN1 "/metrics/loss", "0.125\n"));
	/* running while running is no resume */
	CHECK_OK(tree_write(RUN1 "/status", "running\n"));
	CHECK_OK(tree_write(RUN1 "/status", "finished 0\n"));
	CHECK_OK(tree_write(RUN1 "/status", "running\n"));
	CHECK_OK(tree_write(RUN1 "/status", "failed 1\n"));
	tree_remount();
	j = tree_json(RJ);
	CHECK_EQ_STR(tree_json_get(j, "status"), "\"failed\"");
	CHECK_EQ_STR(tree_json_get(j, "exit_code"), "1");
	CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "resumed")), 2);
	CHECK_EQ_STR(tree_json_get(j, "params"), "{\"lr\":0.1}");
	CHECK(strcmp(tree_json_get(j, "ended"), ended) != 0);
	cJSON_Delete(j);
	{
		const char *m = tree_cat(RUN1 "/metrics/loss");
		const char *want = "0 0.5 1700000000.000\n1 0.25 1700000001.500\n2 0.125 ";  /* + now */
		if (strncmp(m, want, strlen(want)) != 0)
			fprintf(stderr, "metrics/loss:\n%s\n", m);
		CHECK(strncmp(m, want, strlen(want)) == 0);
	}
}

/* The git state of the creating process's working directory (README "Run lifecycle"). */
static void test_git(void)
{
	char head[64] = "", want[512], repo[256];
	FILE *p;
	cJSON *j, *g;
	snprintf(repo, sizeof(repo), "%s/repo", TF.root);
	if (system("git init -q -b main repo && cd repo && git -c user.name=t -c user.email=t@t "
		   "commit -q --allow-empty -m one && echo x > untracked.txt") != 0) {
		fprintf(stderr, "git is missing: the git state is not checked\n");
		return;
	}
	if ((p = popen("git -C repo rev-parse HEAD", "r"))) {
		if (!fgets(head, sizeof(head), p))
			head[0] = '\0';
		pclose(p);
	}
	head[strcspn(head, "\n")] = '\0';
	CHECK(chdir(repo) == 0);
	CHECK_OK(tree_mkdir("/p/experiments/e/runs/2"));
	CHECK(chdir(TF.root) == 0);
	j = tree_json("/p/experiments/e/runs/2/run.json");
	g = cJSON_GetObjectItem(j, "git");
	snprintf(want, sizeof(want), "\"%s\"", head);
	CHECK_EQ_STR(tree_json_get(g, "commit"), want);
	CHECK_EQ_STR(tree_json_get(g, "branch"), "\"main\"");
	CHECK_EQ_STR(tree_json_get(g, "dirty"), "false");
	CHECK_EQ_STR(tree_json_get(g, "untracked"), "1");
	CHECK_EQ_STR(tree_json_get(g, "remote"), "null");
	CHECK_EQ_STR(tree_json_get(g, "upstream"), "null");
	CHECK_EQ_STR(tree_json_get(g, "ahead"), "0");
	CHECK_EQ_STR(tree_json_get(g, "behind"), "0");
	snprintf(want, sizeof(want), "\"%s\"", repo);
	CHECK_EQ_STR(tree_json_get(j, "cwd"), want);
	cJSON_Delete(j);
}

/* README "Crashed runs": a running run whose heartbeat is six intervals old shows crashed in status,
 * run.json and runs.csv, also when nothing changed since the last render (the caches go stale at
 * the deadline); garbage is ignored; a status written clears the heartbeat. */
static void test_crashed(void)
{
	const char *run = "/p/experiments/e/runs/9", *csv = "/p/experiments/e/runs.csv";
	char beat[64];
	cJSON *j;
	al_attr a;

	CHECK_OK(tree_mkdirs(run));
	CHECK_EQ_STR(tree_cat("/p/experiments/e/runs/9/heartbeat"), "");
	CHECK_EQ_STR(tree_cat("/p/experiments/e/runs/9/status"), "running\n");
	CHECK_OK(tree_write("/p/experiments/e/runs/9/heartbeat", "garbage\n"));
	CHECK_EQ_STR(tree_cat("/p/experiments/e/runs/9/heartbeat"), "garbage\n");
	CHECK_EQ_STR(tree_cat("/p/experiments/e/runs/9/status"), "running\n");
	/* a beat now, every 0.2 s: running until 1.2 s after it, with no change in between */
	snprintf(beat, sizeof(beat), "%.3f 0.2\n", (double)al_now_us() / 1e6);
	CHECK_OK(tree_write("/p/experiments/e/runs/9/heartbeat", beat));
	CHECK_EQ_STR(tree_cat("/p/experiments/e/runs/9/status"), "running\n");
	CHECK_OK(al_tree_getattr(&a, TF.t, "/p/experiments/e/runs/9/status"));
	CHECK(strstr(tree_cat(csv), "\r\n9,running,") != NULL);
	usleep(1400000);
	CHECK_EQ_STR(tree_cat("/p/experiments/e/runs/9/status"), "crashed\n");
	CHECK(strstr(tree_cat(csv), "\r\n9,crashed,") != NULL);
	j = tree_json("/p/experiments/e/runs/9/run.json");
	CHECK_EQ_STR(tree_json_get(j, "status"), "\"crashed\"");
	cJSON_Delete(j);
	/* crashed is shown, never written */
	CHECK_EQ_INT(tree_put("/p/experiments/e/runs/9/status", "crashed\n", 8, AL_OPEN_TRUNC).write, AL_EINVAL);
	CHECK_OK(tree_write("/p/experiments/e/runs/9/status", "failed 137\n"));
	CHECK_EQ_STR(tree_cat("/p/experiments/e/runs/9/status"), "failed\n");
	CHECK_EQ_STR(tree_cat("/p/experiments/e/runs/9/heartbeat"), "");
	CHECK_EQ_INT(tree_write("/p/experiments/e/runs/9/heartbeat", beat), AL_EROFS);
}

/* A shared mount (-o allow_other; README "Many users on one machine"): what the kernel enforces
 * with default_permissions is shown: owners are the creators the documents record, the folders
 * where anyone creates are open. */
static void check_owner(const char *path, uid_t uid, gid_t gid, unsigned mode)
{
	al_attr a;
	CHECK_OK(al_tree_getattr(&a, TF.t, path));
	if (!(a.owned && a.uid == uid && a.gid == gid && a.mode == mode))
		fprintf(stderr, "%s: owned %d by %d:%d mode %o; want %d:%d %o\n", path, a.owned,
			(int)a.uid, (int)a.gid, a.mode, (int)uid, (int)gid, mode);
	CHECK(a.owned && a.uid == uid && a.gid == gid && a.mode == mode);
}

static void test_owners(void)
{
	al_caller alice = {getpid(), 4242, 4343}, bob = {getpid(), 5151, 5252};
	al_file *f = NULL;
	al_attr a;

	TF.multi_user = 1;
	tree_remount();
	CHECK_OK(al_tree_mkdir(TF.t, "/q", &alice));
	CHECK_OK(al_tree_mkdir(TF.t, "/q/experiments/e", &alice));
	CHECK_OK(al_tree_mkdir(TF.t, "/q/experiments/e/runs/1", &bob));
	CHECK_OK(al_tree_mkdir(TF.t, "/q/datasets/d", &alice));
	CHECK_OK(al_file_open_as(&f, TF.t, "/q/datasets/d/b.csv", AL_OPEN_WRITE | AL_OPEN_CREATE, &bob));
	check_owner("/q/datasets/d/b.csv", 5151, 5252, 0444);   /* being written: its writer's */
	CHECK_OK(al_file_write(f, "b\n", 2, 0));
	CHECK_OK(al_file_flush(f));
	al_file_release(f);
	CHECK_OK(al_tree_mkdir(TF.t, "/q/datasets/d/sub", &bob));

	check_owner("/", getuid(), getgid(), 01777);
	check_owner("/q", 4242, 4343, 0755);
	check_owner("/q/experiments", 4242, 4343, 01777);
	check_owner("/q/datasets", 4242, 4343, 01777);
	check_owner("/q/metadata", 4242, 4343, 0755);
	check_owner("/q/experiments/e", 4242, 4343, 0755);
	check_owner("/q/experiments/e/description", 4242, 4343, 0644);
	check_owner("/q/experiments/e/runs", 4242, 4343, 01777);
	check_owner("/q/experiments/e/runs/1", 5151, 5252, 0755);
	check_owner("/q/experiments/e/runs/1/status", 5151, 5252, 0644);
	check_owner("/q/experiments/e/runs/1/params", 5151, 5252, 0755);
	check_owner("/q/experiments/e/runs/1/run.json", 5151, 5252, 0444);
	check_owner("/q/datasets/d", 4242, 4343, 0777);
	check_owner("/q/datasets/d/.description", 4242, 4343, 0644);
	check_owner("/q/datasets/d/b.csv", 5151, 5252, 0444);   /* its record's */
	check_owner("/q/datasets/d/sub", 5151, 5252, 0777);
	check_owner("/.aletheia/import", getuid(), getgid(), 0666);
	check_owner("/.aletheia/status", getuid(), getgid(), 0444);
	check_owner(RUN1, getuid(), getgid(), 0755);   /* made by this process (test_run_json) */
	CHECK_EQ_STR(tree_cat("/q/datasets/d/b.csv"), "b\n");

	/* a mount not shared: everything the mounting user's, as before */
	TF.multi_user = 0;
	tree_remount();
	CHECK_OK(al_tree_getattr(&a, TF.t, "/q/experiments/e/runs/1/status"));
	CHECK(!a.owned && a.mode == 0644);
	CHECK_OK(al_tree_getattr(&a, TF.t, "/q/experiments/e/runs"));
	CHECK(!a.owned && a.mode == 0755);
	CHECK_OK(al_tree_getattr(&a, TF.t, "/q/datasets/d/b.csv"));
	CHECK(!a.owned);
}

int main(void)
{
	tree_setup();
	test_run_json();
	test_status_values();
	test_lifecycle();
	test_crashed();
	test_git();
	test_owners();
	tree_teardown();
	CHECK_DONE();
}
