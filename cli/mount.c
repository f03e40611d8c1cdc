/* aletheia: `aletheia mount` — options, the store and tree, handing them to fs/'s FUSE session,
 * and daemonising so that the command returns only once the mount answers. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "aletheia/cache.h"
#include "aletheia/fs.h"
#include "aletheia/stack.h"
#include "aletheia/tree.h"
#include "cli/cli.h"

#define DEFAULT_MOUNT "/mnt/aletheia"

static int is_mountpoint(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[8192], mp[PATH_MAX];
	int found = 0;
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && strcmp(mp, path) == 0)
			found = 1;
	fclose(f);
	return found;
}

static int parse(al_cli_mount_opts *o, int argc, char **argv)
{
	int i, rc, seen_mountpoint = 0;
	const char *v;
	memset(o, 0, sizeof(*o));
	if ((rc = al_cli_read_config(o)) != 0)
		return rc;
	for (i = 1; i < argc; i++) {
		int m;
		if ((m = al_cli_option("--store", argc, argv, &i, &v)) != 0) {
			if (m < 0) return al_cli_usage("mount");
			o->store = v;
		} else if ((m = al_cli_option("--blobs", argc, argv, &i, &v)) != 0) {
			if (m < 0) return al_cli_usage("mount");
			o->blobs = v;
		} else if ((m = al_cli_option("--cache-dir", argc, argv, &i, &v)) != 0) {
			if (m < 0) return al_cli_usage("mount");
			o->cache_dir = v;
		} else if ((m = al_cli_option("--cache-size", argc, argv, &i, &v)) != 0) {
			if (m < 0) return al_cli_usage("mount");
			if (al_size_parse(&o->cache_size, v) != 0) {
				al_cli_fail("bad --cache-size \"%s\"; use bytes or a size like 10G or 512M", v);
				return 2;
			}
		} else if ((m = al_cli_option("-o", argc, argv, &i, &v)) != 0) {
			if (m < 0 || o->nfuse >= 30) return al_cli_usage("mount");
			o->fuse_opts[o->nfuse++] = v;
		} else if (strcmp(argv[i], "--foreground") == 0 || strcmp(argv[i], "-f") == 0)
			o->foreground = 1;
		else if (strcmp(argv[i], "--allow-delete") == 0)
			o->allow_delete = 1;
		else if (strcmp(argv[i], "--debug") == 0)
			o->debug = 1;
		else if (strcmp(argv[i], "--no-passthrough") == 0)
			o->no_passthrough = 1;
		else if (argv[i][0] == '-' || seen_mountpoint)
			return al_cli_usage("mount");
		else {
			o->mountpoint = argv[i];
			seen_mountpoint = 1;
		}
	}
	return 0;
}

/* Tells the parent waiting on ready_fd that the mount is in place. */
typedef struct {
	int ready_fd;
	int mounted;
} ready_note;

static void note_mounted(void *arg)
{
	ready_note *r = arg;
	r->mounted = 1;
	if (r->ready_fd >= 0) {
		if (write(r->ready_fd, "OK\n", 3) != 3) { /* the parent went away: keep serving */ }
		close(r->ready_fd);
		r->ready_fd = -1;
	}
}

/* Runs the session; ready_fd (or -1) gets "OK\n" once mounted, or the error line. */
static int serve(const al_cli_mount_opts *o, const char *mnt, int ready_fd)
{
	al_stack_options kopts = AL_STACK_OPTIONS_INIT;
	al_tree_options topts = AL_TREE_OPTIONS_INIT;
	al_fs_session_options sopts = {0};
	ready_note note = {ready_fd, 0};
	al_stack *stack = NULL;
	al_tree *tree = NULL;
	char *data = NULL, *store = NULL, *blobs = NULL, *cache = NULL, msg[1200];
	int rc = 1;

	{
		char *base = al_cli_xdg_dir("XDG_DATA_HOME", ".local/share");
		if (asprintf(&data, "%s/aletheia", base ? base : "/root/.local/share") < 0)
			data = NULL;
		free(base);
	}
	if (o->store)
		store = strdup(o->store);
	else if (asprintf(&store, "local:%s", data) < 0)
		store = NULL;
	if (o->blobs)
		blobs = strdup(o->blobs);
	else if (asprintf(&blobs, "file://%s/blobs",
			 strncmp(store, "local:", 6) == 0 ? store + 6 : data) < 0)
		blobs = NULL;
	if (o->cache_dir)
		cache = strdup(o->cache_dir);
	else {
		char *c = al_cli_xdg_dir("XDG_CACHE_HOME", ".cache");
		if (asprintf(&cache, "%s/aletheia", c) < 0)
			cache = NULL;
		free(c);
	}
	if (!store || !blobs || !cache) {
		snprintf(msg, sizeof(msg), "--blobs is required with --store %s", store ? store : "");
		goto fail;
	}
	kopts.store_uri = store;
	kopts.blobs_uri = blobs;
	kopts.cache_dir = cache;
	kopts.cache_size = o->cache_size;
	if (al_stack_open(&stack, &kopts) != 0) {
		snprintf(msg, sizeof(msg), "%s", al_error_last());
		goto fail;
	}
	topts.stack = stack;
	topts.mountpoint = mnt;
	topts.allow_delete = o->allow_delete;
	topts.uid = getuid();
	topts.gid = getgid();
	topts.multi_user = o->multi_user;
	if (al_tree_open(&tree, &topts) != 0) {
		snprintf(msg, sizeof(msg), "%s", al_error_last());
		goto fail;
	}
	sopts.mountpoint = mnt;
	sopts.fuse_opts = o->fuse_opts;
	sopts.nfuse_opts = o->nfuse;
	sopts.debug = o->debug;
	sopts.no_passthrough = o->no_passthrough;
	sopts.mounted = note_mounted;
	sopts.arg = &note;
	if (al_fs_serve(tree, &sopts) == 0)
		rc = 0;
	else if (!note.mounted) {
		snprintf(msg, sizeof(msg), "%s", al_error_last());
		goto fail;
	}
	/* Once mounted, a session's end by a signal or a failure is the exit status 1 alone. */
	goto cleanup;
fail:
	if (note.ready_fd >= 0) {
		char line[1300];
		int n = snprintf(line, sizeof(line), "%s\n", msg);
		if (write(note.ready_fd, line, (size_t)n) < 0) { /* nothing more to do */ }
		close(note.ready_fd);
	} else
		al_cli_fail("%s", msg);
	rc = 1;
cleanup:
	/* Delivers every pending write before the process ends. */
	al_tree_free(tree);
	al_stack_free(stack);
	free(data);
	free(store);
	free(blobs);
	free(cache);
	return rc;
}

static int wait_answers(const char *mnt, int seconds)
{
	char *status = NULL;
	struct stat st;
	int i, ok = 0;
	if (asprintf(&status, "%s/.aletheia/status", mnt) < 0)
		return 0;
	for (i = 0; i < seconds * 20 && !ok; i++) {
		if (stat(status, &st) == 0)
			ok = 1;
		else
			usleep(50000);
	}
	free(status);
	return ok;
}

static char *absolute(const char *prefix, const char *rel)
{
	char cwd[PATH_MAX], *out = NULL;
	if (!getcwd(cwd, sizeof(cwd)) || asprintf(&out, "%s%s/%s", prefix, cwd, rel) < 0)
		return NULL;
	return out;
}

int al_cli_mount(int argc, char **argv)
{
	al_cli_mount_opts o;
	int rc;
	if ((rc = parse(&o, argc, argv)) != 0)
		return rc;
	return al_cli_mount_start(&o);
}

/* 1 when one of the -o values (each a comma-separated list) holds option name. */
static int has_fuse_opt(const al_cli_mount_opts *o, const char *name)
{
	size_t n = strlen(name);
	for (int i = 0; i < o->nfuse; i++)
		for (const char *p = o->fuse_opts[i]; p && *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] != 0))
			if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0'))
				return 1;
	return 0;
}

/* 1 when /etc/fuse.conf has a line user_allow_other (fuse.conf(5)). */
static int fuse_conf_allows_other(void)
{
	FILE *f = fopen("/etc/fuse.conf", "r");
	char line[512];
	int found = 0;
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		char *p = line + strspn(line, " \t");
		found = strncmp(p, "user_allow_other", 16) == 0 && strchr(" \t\r\n", p[16]);
	}
	fclose(f);
	return found;
}

int al_cli_mount_start(const al_cli_mount_opts *o_in)
{
	static char *absolute_store, *absolute_cache;   /* live as long as the process */
	al_cli_mount_opts o = *o_in;
	char mnt[PATH_MAX], buf[1400];
	struct stat st;
	int pipefd[2];
	pid_t pid;
	ssize_t n;
	size_t got = 0;

	/* Shared with other users, the mount enforces the modes and owners it shows (README "Many
	 * users on one machine"): the kernel checks them, the daemon shows each run's creator. */
	if (has_fuse_opt(&o, "allow_other")) {
		o.multi_user = 1;
		if (!has_fuse_opt(&o, "default_permissions") && o.nfuse < 32)
			o.fuse_opts[o.nfuse++] = "default_permissions";
	}
	/* fusermount3 would refuse it with a message the daemon's log alone would show. */
	if (o.multi_user && geteuid() != 0 && !fuse_conf_allows_other()) {
		al_cli_fail("-o allow_other needs user_allow_other in /etc/fuse.conf for a mount by a user "
			"other than root; add that line there (as root), or mount as root");
		return 1;
	}
	/* The daemon runs from "/": relative paths are taken from where the command was typed. */
	if (o.store && strncmp(o.store, "local:", 6) == 0 && o.store[6] && o.store[6] != '/')
		o.store = absolute_store = absolute("local:", o.store + 6);
	if (o.cache_dir && o.cache_dir[0] != '/')
		o.cache_dir = absolute_cache = absolute("", o.cache_dir);
	if (!o.mountpoint) {
		o.mountpoint = al_cli_default_mount();
		if (strcmp(o.mountpoint, DEFAULT_MOUNT) == 0)
			mkdir(DEFAULT_MOUNT, 0755);   /* the default is made on first use */
	}
	if (stat(o.mountpoint, &st) != 0) {
		/* A FUSE mount whose daemon died (kill -9, a crash) answers ENOTCONN until it is
		 * unmounted. It is refused like any mount point in use, not unmounted here: it may be
		 * another program's, and what was open in it is for its user to look at first (README
		 * "The command line"). `aletheia umount` removes a dead mount. */
		if (errno == ENOTCONN)
			al_cli_fail("mount point %s is still mounted by a daemon that is gone (%s); unmount it "
				"first (aletheia umount %s, or fusermount3 -uz %s), then mount again", o.mountpoint,
				strerror(errno), o.mountpoint, o.mountpoint);
		else if (errno == ENOENT || errno == ENOTDIR)
			al_cli_fail("mount point %s does not exist; create it with mkdir -p %s", o.mountpoint,
				o.mountpoint);
		else
			al_cli_fail("cannot use mount point %s: %s; pick a folder you can reach", o.mountpoint,
				strerror(errno));
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		al_cli_fail("mount point %s is not a folder; pick an empty folder", o.mountpoint);
		return 1;
	}
	if (!realpath(o.mountpoint, mnt)) {
		al_cli_fail("cannot resolve %s: %s", o.mountpoint, strerror(errno));
		return 1;
	}
	if (is_mountpoint(mnt)) {
		al_cli_fail("%s is already mounted; unmount it first (aletheia umount %s)", mnt, mnt);
		return 1;
	}
	if (o.foreground)
		return serve(&o, mnt, -1);

	if (pipe(pipefd) != 0) {
		al_cli_fail("cannot create a pipe: %s", strerror(errno));
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		al_cli_fail("cannot fork: %s", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		/* The daemon: its own session, stdio detached, errors to the log via stderr. */
		int devnull = open("/dev/null", O_RDWR), logfd = -1;
		char *cache = o.cache_dir ? strdup(o.cache_dir) : NULL, *logpath = NULL;
		close(pipefd[0]);
		setsid();
		if (!cache) {
			char *c = al_cli_xdg_dir("XDG_CACHE_HOME", ".cache");
			if (asprintf(&cache, "%s/aletheia", c) < 0)
				cache = NULL;
			free(c);
		}
		/* The daemon's own errors go to a log beside its cache. */
		if (cache && mkdir(cache, 0700) >= -1 && asprintf(&logpath, "%s/aletheia.log", cache) >= 0)
			logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (devnull >= 0) {
			dup2(devnull, 0);
			dup2(devnull, 1);
			dup2(logfd >= 0 ? logfd : devnull, 2);
			if (devnull > 2)
				close(devnull);
		}
		if (logfd > 2)
			close(logfd);
		free(cache);
		free(logpath);
		if (chdir("/") != 0) { /* stays where it is */ }
		_exit(serve(&o, mnt, pipefd[1]));
	}
	close(pipefd[1]);
	while (got < sizeof(buf) - 1 && (n = read(pipefd[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		if (memchr(buf + got, '\n', (size_t)n)) {
			got += (size_t)n;
			break;
		} else
			got += (size_t)n;
	buf[got] = '\0';
	close(pipefd[0]);
	if (strncmp(buf, "OK\n", 3) != 0) {
		char *nl = strchr(buf, '\n');
		if (nl)
			*nl = '\0';
		al_cli_fail("%s", *buf ? buf : "the daemon exited before mounting");
		waitpid(pid, NULL, WNOHANG);
		return 1;
	}
	if (!wait_answers(mnt, 15)) {
		al_cli_fail("%s was mounted but does not answer; see aletheia status %s", mnt, mnt);
		return 1;
	}
	return 0;
}
