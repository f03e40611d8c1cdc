/* aletheia: `aletheia mount` — options, the store and tree, the FUSE session, and daemonising
 * so that the command returns only once the mount answers. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "aletheia/cache.h"
#include "aletheia/stack.h"
#include "cli/cli.h"
#include "core/util.h"
#include "fs.h"

#define DEFAULT_MOUNT "/mnt/aletheia"

typedef struct mount_opts {
	const char *mountpoint;
	const char *store, *blobs, *cache_dir;
	uint64_t cache_size;
	int foreground, allow_delete, debug;
	const char *fuse_opts[32];
	int nfuse;
} mount_opts;

static char *xdg_dir(const char *var, const char *fallback)
{
	const char *v = getenv(var), *home = getenv("HOME");
	char *out = NULL;
	if (v && *v)
		out = strdup(v);
	else if (asprintf(&out, "%s/%s", home && *home ? home : "/root", fallback) < 0)
		out = NULL;
	return out;
}

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

/* Values read from the configuration file live as long as the process. */
static char *config_strdup(const char *s)
{
	char *p = strdup(s);
	if (!p) {
		al_cli_fail("out of memory");
		exit(1);
	}
	return p;
}

/* $XDG_CONFIG_HOME/aletheia/config (or $ALETHEIA_CONFIG): "key = value" lines, '#' comments,
 * keys store, blobs, cache-dir, cache-size, mountpoint, allow-delete, cache-ttl-ms,
 * network-wait-ms. Flags given on the command line override it. */
static int read_config(mount_opts *o)
{
	char *base = NULL, *path = NULL, line[4096];
	const char *env = getenv("ALETHEIA_CONFIG");
	FILE *f;
	int n = 0, rc = 0;

	if (env && *env)
		path = config_strdup(env);
	else {
		base = xdg_dir("XDG_CONFIG_HOME", ".config");
		if (!base || asprintf(&path, "%s/aletheia/config", base) < 0)
			path = NULL;
		free(base);
	}
	if (!path || !(f = fopen(path, "r"))) {
		if (path && env && *env) {
			al_cli_fail("cannot read ALETHEIA_CONFIG=%s: %s", path, strerror(errno));
			rc = 1;
		}
		free(path);
		return rc;
	}
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		char *k = line, *eq, *v, *end;
		n++;
		while (*k == ' ' || *k == '\t')
			k++;
		if (*k == '#' || *k == '\n' || !*k)
			continue;
		if (!(eq = strchr(k, '='))) {
			al_cli_fail("%s:%d: expected key = value", path, n);
			rc = 2;
			break;
		}
		for (end = eq; end > k && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		for (v = eq + 1; *v == ' ' || *v == '\t'; v++)
			;
		for (end = v + strlen(v); end > v && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'); end--)
			;
		*end = '\0';
		if (!strcmp(k, "store"))
			o->store = config_strdup(v);
		else if (!strcmp(k, "blobs"))
			o->blobs = config_strdup(v);
		else if (!strcmp(k, "cache-dir"))
			o->cache_dir = config_strdup(v);
		else if (!strcmp(k, "mountpoint"))
			o->mountpoint = config_strdup(v);
		else if (!strcmp(k, "cache-size")) {
			if (al_size_parse(&o->cache_size, v) != 0) {
				al_cli_fail("%s:%d: bad cache-size \"%s\"; use bytes or a size like 10G", path, n, v);
				rc = 2;
			}
		} else if (!strcmp(k, "allow-delete"))
			o->allow_delete = !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1");
		else if (!strcmp(k, "cache-ttl-ms"))
			setenv("ALETHEIA_CACHE_TTL_MS", v, 0);
		else if (!strcmp(k, "network-wait-ms"))
			setenv("ALETHEIA_NETWORK_WAIT_MS", v, 0);
		else {
			al_cli_fail("%s:%d: unknown key \"%s\" (store, blobs, cache-dir, cache-size, mountpoint, "
				"allow-delete, cache-ttl-ms, network-wait-ms)", path, n, k);
			rc = 2;
		}
	}
	fclose(f);
	free(path);
	return rc;
}

static int parse(mount_opts *o, int argc, char **argv)
{
	int i, rc, seen_mountpoint = 0;
	const char *v;
	memset(o, 0, sizeof(*o));
	if ((rc = read_config(o)) != 0)
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
		else if (argv[i][0] == '-' || seen_mountpoint)
			return al_cli_usage("mount");
		else {
			o->mountpoint = argv[i];
			seen_mountpoint = 1;
		}
	}
	return 0;
}

/* Watches the session while it runs. Once it has exited (umount, a signal), libfuse joins the
 * threads still answering requests before the loop returns: a read waiting for a stalled bucket
 * server would keep the daemon, and the store's lock, for as long as the server keeps silent.
 * So the daemon's stop starts here, not after the loop: the fetches nobody waits for any more and
 * the flushers' requests give up at once (al__shutdown_begin; README "Object storage"). */
typedef struct {
	struct fuse_session *se;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int done;          /* the loop returned: nothing left to watch */
} exit_watch;

static void *watch_exit(void *arg)
{
	exit_watch *w = arg;
	pthread_mutex_lock(&w->lock);
	while (!w->done && !fuse_session_exited(w->se)) {
		struct timespec ts;
		/* libfuse has no exit notification: look 5 times a second */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&w->wake, &w->lock, &ts);
	}
	pthread_mutex_unlock(&w->lock);
	al__shutdown_begin();
	return NULL;
}

/* Runs the session; ready_fd (or -1) gets "OK\n" once mounted, or the error line. */
static int serve(const mount_opts *o, const char *mnt, int ready_fd)
{
	al_stack_options sopts = AL_STACK_OPTIONS_INIT;
	al_tree_options topts = AL_TREE_OPTIONS_INIT;
	al_stack *stack = NULL;
	al_tree *tree = NULL;
	al_fs *fs = NULL;
	struct fuse_session *se = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *cfg = NULL;
	char *data = NULL, *store = NULL, *blobs = NULL, *cache = NULL, msg[1200];
	int rc = 1, i, mounted = 0, handlers = 0;

	{
		char *base = xdg_dir("XDG_DATA_HOME", ".local/share");
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
		char *c = xdg_dir("XDG_CACHE_HOME", ".cache");
		if (asprintf(&cache, "%s/aletheia", c) < 0)
			cache = NULL;
		free(c);
	}
	if (!store || !blobs || !cache) {
		snprintf(msg, sizeof(msg), "--blobs is required with --store %s", store ? store : "");
		goto fail;
	}
	sopts.store_uri = store;
	sopts.blobs_uri = blobs;
	sopts.cache_dir = cache;
	sopts.cache_size = o->cache_size;
	if (al_stack_open(&stack, &sopts) != 0) {
		snprintf(msg, sizeof(msg), "%s", al_error_last());
		goto fail;
	}
	topts.stack = stack;
	topts.mountpoint = mnt;
	topts.allow_delete = o->allow_delete;
	topts.uid = getuid();
	topts.gid = getgid();
	if (al_tree_open(&tree, &topts) != 0) {
		snprintf(msg, sizeof(msg), "%s", al_error_last());
		goto fail;
	}
	if (al_fs_new(&fs, tree) != 0) {
		snprintf(msg, sizeof(msg), "%s", al_error_last());
		goto fail;
	}
	fuse_opt_add_arg(&args, "aletheia");
	fuse_opt_add_arg(&args, "-o");
	fuse_opt_add_arg(&args, "fsname=aletheia,subtype=aletheia");
	for (i = 0; i < o->nfuse; i++) {
		fuse_opt_add_arg(&args, "-o");
		fuse_opt_add_arg(&args, o->fuse_opts[i]);
	}
	if (o->debug)
		fuse_opt_add_arg(&args, "-d");
	se = fuse_session_new(&args, al_fs_ops(), sizeof(struct fuse_lowlevel_ops), fs);
	if (!se) {
		snprintf(msg, sizeof(msg), "cannot start FUSE (bad -o option?)");
		goto fail;
	}
	if (fuse_set_signal_handlers(se) == 0)
		handlers = 1;
	if (fuse_session_mount(se, mnt) != 0) {
		snprintf(msg, sizeof(msg), "cannot mount on %s (is /dev/fuse available and fusermount3 installed?)", mnt);
		goto fail;
	}
	mounted = 1;
	if (ready_fd >= 0) {
		if (write(ready_fd, "OK\n", 3) != 3) { /* the parent went away: keep serving */ }
		close(ready_fd);
		ready_fd = -1;
	}
	cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	fuse_loop_cfg_set_max_threads(cfg, 16);
	fuse_loop_cfg_set_idle_threads(cfg, 8);
	{
		exit_watch w = {se, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
		pthread_t watcher;
		int watching = pthread_create(&watcher, NULL, watch_exit, &w) == 0;
		rc = fuse_session_loop_mt(se, cfg) == 0 ? 0 : 1;
		if (watching) {
			pthread_mutex_lock(&w.lock);
			w.done = 1;
			pthread_cond_signal(&w.wake);
			pthread_mutex_unlock(&w.lock);
			pthread_join(watcher, NULL);
		}
	}
	goto cleanup;
fail:
	if (ready_fd >= 0) {
		char line[1300];
		int n = snprintf(line, sizeof(line), "%s\n", msg);
		if (write(ready_fd, line, (size_t)n) < 0) { /* nothing more to do */ }
		close(ready_fd);
	} else
		al_cli_fail("%s", msg);
	rc = 1;
cleanup:
	if (cfg)
		fuse_loop_cfg_destroy(cfg);
	if (se) {
		if (mounted)
			fuse_session_unmount(se);
		if (handlers)
			fuse_remove_signal_handlers(se);
		fuse_session_destroy(se);
	}
	fuse_opt_free_args(&args);
	al_fs_free(fs);
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
	static char *absolute_store, *absolute_cache;   /* live as long as the process */
	mount_opts o;
	char mnt[PATH_MAX], buf[1400];
	struct stat st;
	int rc, pipefd[2];
	pid_t pid;
	ssize_t n;
	size_t got = 0;

	if ((rc = parse(&o, argc, argv)) != 0)
		return rc;
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
		al_cli_fail("mount point %s does not exist; create it with mkdir -p %s", o.mountpoint, o.mountpoint);
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
			char *c = xdg_dir("XDG_CACHE_HOME", ".cache");
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
