/* aletheia: a run's folder: creating one records who made it, where and from which git state
 * (README "Run lifecycle and code capture"). Its files each have a file of their own. */
#include <limits.h>
#include <pwd.h>
#include "aletheia/git.h"
#include "core/store/store_cache.h"
#include "internal.h"

/* The longest command recorded: a run's document must stay far below Firestore's 1 MiB. */
#define COMMAND_MAX (64 * 1024)

/* The creating process's command line; for `aletheia run … -- CMD`, just CMD (aletheia run puts
 * its options before the first "--" as --name=value, so that "--" is where CMD starts). Quoted as
 * a shell would need it; past COMMAND_MAX cut after a whole argument, with " …" at the end. */
static char *caller_command(pid_t pid)
{
	char path[64];
	al_buf raw = AL_BUF_INIT, b = AL_BUF_INIT;
	size_t i, start = 0, n;
	int fd, cut = 0;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return NULL;
	for (;;) {
		char chunk[8192];
		ssize_t got = read(fd, chunk, sizeof(chunk));
		if (got <= 0 || al_buf_put(&raw, chunk, (size_t)got) != 0)
			break;
	}
	close(fd);
	if (raw.len == 0 || al_buf_put(&raw, "", 1) != 0) {
		al_buf_dispose(&raw);
		return NULL;
	}
	n = raw.len - 1;    /* each argument ends in a NUL; one more ends the last safely */
	if (strcmp(last_segment(raw.ptr), "aletheia") == 0 && strlen(raw.ptr) + 1 < n &&
	    strcmp(raw.ptr + strlen(raw.ptr) + 1, "run") == 0) {
		for (i = 0; i < n; i += strlen(raw.ptr + i) + 1)
			if (strcmp(raw.ptr + i, "--") == 0) {
				start = i + 3;
				break;
			}
	}
	for (i = start; i < n; i += strlen(raw.ptr + i) + 1) {
		const char *arg = raw.ptr + i;
		size_t before = b.len;
		if (b.len)
			al_buf_puts(&b, " ");
		if (*arg && !strpbrk(arg, " \t\n'\"\\$`*?&;|<>()"))
			al_buf_puts(&b, arg);
		else {
			al_buf_puts(&b, "'");
			for (; *arg; arg++)
				*arg == '\'' ? al_buf_puts(&b, "'\\''") : al_buf_put(&b, arg, 1);
			al_buf_puts(&b, "'");
		}
		if (b.len > COMMAND_MAX) {
			b.len = before;
			cut = 1;
			break;
		}
	}
	if (cut)
		al_buf_puts(&b, " …");
	al_buf_dispose(&raw);
	return al_buf_detach(&b, NULL);
}

static pid_t parent_pid(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	int ppid = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r"))) {
		/* "pid (comm) state ppid …": comm may hold spaces and parentheses */
		if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
			sscanf(p + 1, " %*c %d", &ppid);
		fclose(f);
	}
	return (pid_t)ppid;
}

static cJSON *new_run_fields(al_tree *t, const node *n, const al_caller *c)
{
	cJSON *f = cJSON_CreateObject();
	char host[256] = "", cwdlink[64], cwd[PATH_MAX], *cmd;
	struct passwd pw, *pwp = NULL;
	char pwbuf[4096];
	al_git_state *git = NULL;
	int grc = 0;
	int64_t now = al_now_us();
	ssize_t len;

	gethostname(host, sizeof(host) - 1);
	snprintf(cwdlink, sizeof(cwdlink), "/proc/%d/cwd", c ? (int)c->pid : 0);
	len = c ? readlink(cwdlink, cwd, sizeof(cwd) - 1) : -1;
	cwd[len > 0 ? len : 0] = '\0';
	if (c && *cwd && path_inside(t->mountpoint, cwd)) {
		/* `mkdir -p` changes into each folder it makes: the folder the user typed it in is its
		 * parent's (the shell's) working directory. */
		pid_t parent = parent_pid(c->pid);
		char alt[PATH_MAX];
		ssize_t n;
		snprintf(cwdlink, sizeof(cwdlink), "/proc/%d/cwd", (int)parent);
		n = parent > 1 ? readlink(cwdlink, alt, sizeof(alt) - 1) : -1;
		if (n > 0) {
			alt[n] = '\0';
			if (!path_inside(t->mountpoint, alt))
				memcpy(cwd, alt, (size_t)n + 1);
		}
	}
	{
		/* a working folder deleted under the process reads "PATH (deleted)": its path is PATH */
		static const char gone[] = " (deleted)";
		size_t cl = strlen(cwd), gl = sizeof(gone) - 1;
		if (cl > gl && strcmp(cwd + cl - gl, gone) == 0 && access(cwd, F_OK) != 0)
			cwd[cl - gl] = '\0';
	}
	getpwuid_r(c ? c->uid : t->uid, &pw, pwbuf, sizeof(pwbuf), &pwp);
	cmd = c ? caller_command(c->pid) : NULL;

	al_fields_set(f, "id", al_value_string(n->run));
	al_fields_set(f, "project", al_value_string(n->project));
	al_fields_set(f, "experiment", al_value_string(n->experiment));
	al_fields_set(f, "status", al_value_string("running"));
	al_fields_set(f, "created", al_value_time(now));
	al_fields_set(f, "started", al_value_time(now));
	al_fields_set(f, "ended", al_value_null());
	al_fields_set(f, "fold", al_value_null());
	al_fields_set(f, "model", al_value_string(""));
	al_fields_set(f, "description", al_value_string(""));
	al_fields_set(f, "host", al_value_string(host));
	al_fields_set(f, "user", pwp ? al_value_string(pwp->pw_name) : al_value_null());
	set_creator(f, t, c);
	al_fields_set(f, "command", cmd ? al_value_string(cmd) : al_value_null());
	al_fields_set(f, "cwd", *cwd ? al_value_string(cwd) : al_value_null());
	al_fields_set(f, "exit_code", al_value_null());
	/* the times of change of its value files (README "Files behave like files") */
	al_fields_set(f, "status_updated", al_value_time(now));
	al_fields_set(f, "fold_updated", al_value_time(now));
	al_fields_set(f, "model_updated", al_value_time(now));
	al_fields_set(f, "description_updated", al_value_time(now));
	al_fields_set(f, "param_times", al_value_map(cJSON_CreateObject()));
	/* A cwd inside this mount has no repository, and looking would deadlock on the kernel's
	 * lock of the folder being created. */
	if (*cwd && !path_inside(t->mountpoint, cwd) && (grc = al_git_capture(&git, cwd, t->mountpoint)) == 0)
		al_fields_set(f, "git", al_git_state_to_value(git));
	else
		al_fields_set(f, "git", al_value_null());
	/* a repository git refuses (another user's, without safe.directory) is said, not hidden */
	if (grc && grc != AL_ENOTFOUND)
		fprintf(stderr, "aletheia: %s: no git state recorded: %s\n", n->run_doc, al_error_last());
	al_fields_set(f, "hyper_params", al_value_map(cJSON_CreateObject()));
	al_fields_set(f, "datasets", al_value_map(cJSON_CreateObject()));
	{
		/* The creator's command line, folder and git state are what they are: bytes that are
		 * not UTF-8 (a Latin-1 file name, a cut multi-byte character) must not stop the run
		 * from being created, so they are recorded as U+FFFD. */
		cJSON *it;
		cJSON_ArrayForEach(it, f)
			al_value_repair_strings(it);
	}
	al_git_state_free(git);
	free(cmd);
	return f;
}

static int run_mkdir(al_tree *t, const node *n, const char *path, const al_caller *caller)
{
	cJSON *f = NULL, *upd = NULL;
	al_write w[2];
	int rc;
	(void)path;
	if ((rc = check_name(n->run)) || (rc = doc_exists(t, n->exp_doc)))
		return rc;
	f = new_run_fields(t, n, caller);
	upd = cJSON_CreateObject();
	al_fields_set(upd, "updated", al_value_time(al_now_us()));
	w[0] = (al_write){AL_WRITE_SET, n->run_doc, f, AL_PRE_MISSING, NULL};
	w[1] = (al_write){AL_WRITE_UPDATE, n->exp_doc, upd, AL_PRE_EXISTS, NULL};
	rc = tree_commit(t, w, 2);
	cJSON_Delete(upd);
	cJSON_Delete(f);
	return rc;
}

/* output.log is listed once the run has one. */
static int run_list(keyset *k, al_tree *t, const node *n, const char *path)
{
	node log = {.k = &kind_output_log, .coll = xasprintf("%s/logs", n->run_doc), .rest = "output.log"};
	char *logpath = xasprintf("%s/output.log", path);
	al_attr a;
	/* A walk (find, ls -R, du) reads every run: their logs, metrics and artifacts come with one
	 * query per experiment instead of one per run (a no-op while cached; errors leave it to the
	 * plain requests). */
	al_store_cache_prefetch(t->series_store, n->run_doc, "logs");
	if (log.coll && logpath && blob_attr(&a, t, &log, logpath, 0) == 0)
		keyset_add(k, "output.log");
	free(log.coll);
	free(logpath);
	return 0;
}

static const char *const run_entries[] = {"run.json", "status", "fold", "model", "description",
	"params", "params.json", "metrics", "artifacts", "datasets", "plots", "tags", "heartbeat",
	"system.json", NULL};

const al_kind kind_run = {
	.name = "run", .pattern = RUN_P, .flags = K_DIR | K_SCRATCH | K_MEMORY, .owner = O_RUN,
	.entries = run_entries, .list = run_list, .mkdir = run_mkdir, .rmdir = owner_rmdir,
};
