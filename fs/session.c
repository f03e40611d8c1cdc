/* aletheia: the FUSE session of a tree (al_fs_serve): mount, the request loop, and the start of
 * the daemon's stop once the session has ended. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include "core/util.h"
#include "fs.h"

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

const char *al_fs_library(void)
{
	static char text[64];
	snprintf(text, sizeof(text), "libfuse %s", fuse_pkgversion());
	return text;
}

int al_fs_serve(al_tree *tree, const al_fs_session_options *o)
{
	al_fs *fs = NULL;
	struct fuse_session *se = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *cfg = NULL;
	int rc, i, mounted = 0, handlers = 0;

	if ((rc = al_fs_new(&fs, tree, o->no_passthrough)) != 0)
		goto cleanup;
	fuse_opt_add_arg(&args, "aletheia");
	fuse_opt_add_arg(&args, "-o");
	fuse_opt_add_arg(&args, "fsname=aletheia,subtype=aletheia");
	for (i = 0; i < o->nfuse_opts; i++) {
		fuse_opt_add_arg(&args, "-o");
		fuse_opt_add_arg(&args, o->fuse_opts[i]);
	}
	if (o->debug)
		fuse_opt_add_arg(&args, "-d");
	se = fuse_session_new(&args, al_fs_ops(), sizeof(struct fuse_lowlevel_ops), fs);
	if (!se) {
		rc = al_error_set(AL_EINVAL, "cannot start FUSE (bad -o option?)");
		goto cleanup;
	}
	if (fuse_set_signal_handlers(se) == 0)
		handlers = 1;
	if (fuse_session_mount(se, o->mountpoint) != 0) {
		rc = al_error_set(AL_EIO, "cannot mount on %s (is /dev/fuse available and fusermount3 installed?)",
			o->mountpoint);
		goto cleanup;
	}
	mounted = 1;
	if (o->mounted)
		o->mounted(o->arg);
	cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	fuse_loop_cfg_set_max_threads(cfg, 16);
	fuse_loop_cfg_set_idle_threads(cfg, 8);
	{
		exit_watch w = {se, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
		pthread_t watcher;
		int watching = pthread_create(&watcher, NULL, watch_exit, &w) == 0;
		int end = fuse_session_loop_mt(se, cfg);
		if (end != 0)   /* a signal's number, or -errno: not the end an unmount gives */
			rc = al_error_set(AL_EIO, "the FUSE session on %s ended by %s %d", o->mountpoint,
				end > 0 ? "signal" : "error", end > 0 ? end : -end);
		if (watching) {
			pthread_mutex_lock(&w.lock);
			w.done = 1;
			pthread_cond_signal(&w.wake);
			pthread_mutex_unlock(&w.lock);
			pthread_join(watcher, NULL);
		}
	}
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
	return rc;
}
