/* aletheia: the tree itself: made over a stack of backends it is given (stack.h), with its own
 * state — staged writes, open writers, the dataset version thread — and its status. */
#include <dirent.h>
#include "core/store/store_cache.h"
#include "core/store/store_wb.h"
#include "internal.h"

uint64_t al_tree_pending(al_tree *t)
{
	return al_stack_pending(t->stack);
}

void al_tree_set_status_fn(al_tree *t, al_tree_status_fn fn, void *arg)
{
	pthread_mutex_lock(&t->lock);
	t->status_fn = fn;
	t->status_arg = arg;
	pthread_mutex_unlock(&t->lock);
}

/* The metastore's count of documents it read and parsed since the mount, when it keeps one
 * (SQLite): a listing or walk that reads every run's document shows in it (README "The command
 * line"). */
static void store_reads(al_buf *b, al_stack *s)
{
	char *d = al_store_describe(s->store), *p;
	if (d && (p = strstr(d, "\ndocuments_read: "))) {
		al_buf_put(b, p + 1, strcspn(p + 1, "\n"));
		al_buf_puts(b, "\n");
	}
	free(d);
}

int al_tree_status(char **out, al_tree *t)
{
	al_stack *s = t->stack;
	al_buf b = AL_BUF_INIT;
	al_cache_stats cs;
	al_cache_prefetch_totals pt;
	char err[512], limit[64], offline[160], fs_lines[1024] = "";

	al_cache_get_stats(&cs, s->cache);
	al_cache_get_prefetch_totals(&pt, s->cache);
	pthread_mutex_lock(&t->lock);
	if (t->status_fn)
		t->status_fn(fs_lines, sizeof(fs_lines), t->status_arg);
	pthread_mutex_unlock(&t->lock);
	if (!al_store_cache_offline(offline, sizeof(offline), s->series_store))
		snprintf(offline, sizeof(offline), "none");
	al_series_last_error(err, sizeof(err), s->series);
	if (!*err)
		al_store_wb_last_error(err, sizeof(err), s->wb);
	if (cs.max_bytes)
		snprintf(limit, sizeof(limit), "of %llu", (unsigned long long)cs.max_bytes);
	else
		snprintf(limit, sizeof(limit), "unbounded");
	al_buf_printf(&b, "version: %s\npid: %d\nmountpoint: %s\nstore: %s\nbackend: %s\nblobs: %s\n"
		"cache: %s (%llu bytes %s, %llu blobs)\npending_writes: %llu\nlast_error: %s\n"
		"offline_since: %s\nprefetch: %llu started, %llu running, %llu blobs fetched (%llu bytes), "
		"%llu failed, %llu bytes not read yet\nrenders: ",
		AL_VERSION, (int)getpid(), t->mountpoint ? t->mountpoint : "", s->store_uri,
		s->backend, s->blobs_uri, s->cache_dir, (unsigned long long)cs.bytes, limit,
		(unsigned long long)cs.entries, (unsigned long long)al_tree_pending(t),
		*err ? err : "none", offline, (unsigned long long)pt.started,
		(unsigned long long)pt.running, (unsigned long long)pt.fetched_files,
		(unsigned long long)pt.fetched_bytes, (unsigned long long)pt.failed_files,
		(unsigned long long)pt.unread_bytes);
	/* README ".aletheia/status": generated files rendered so far, per kind */
	render_counts(&b, t);
	al_buf_puts(&b, "\n");
	store_reads(&b, s);
	al_buf_puts(&b, fs_lines);
	*out = al_buf_detach(&b, NULL);
	return *out ? 0 : al_error_set(AL_ENOMEM, "out of memory");
}

/* Staged copies left by a daemon that was killed mid-copy were never recorded (README
 * "Durability"): their space goes back at the next mount. The folder is ours alone (locked). */
static int clean_staging(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	if (!d)
		return al_error_set_errno(al_error_from_errno(errno), errno, "cannot list %s", dir);
	while ((de = readdir(d)))
		if (strncmp(de->d_name, "write-", 6) == 0 && unlinkat(dirfd(d), de->d_name, 0) != 0 &&
		    errno != ENOENT)
			fprintf(stderr, "aletheia: cannot remove the leftover %s/%s: %s\n", dir, de->d_name,
				strerror(errno));
	closedir(d);
	return 0;
}

/* The worker of tree_work: runs queued work in the order queued until the tree goes. */
static void *work_thread(void *arg)
{
	al_tree *t = arg;
	tree_work *w;
	pthread_mutex_lock(&t->wlock);
	while (!t->w_stop) {
		if (!(w = t->wq)) {
			pthread_cond_wait(&t->wcond, &t->wlock);
			continue;
		}
		if (!(t->wq = w->next))
			t->wq_tail = &t->wq;
		w->next = NULL;
		w->state = TW_RUNNING;
		pthread_mutex_unlock(&t->wlock);
		w->run(w);
		al_error_clear();   /* the worker's failures are the requester's to meet again */
		pthread_mutex_lock(&t->wlock);
		w->state = TW_IDLE;
		pthread_cond_broadcast(&t->wcond);
	}
	pthread_mutex_unlock(&t->wlock);
	return NULL;
}

void tree_work_submit(al_tree *t, tree_work *w)
{
	pthread_mutex_lock(&t->wlock);
	if (w->state == TW_IDLE && t->w_started && !t->w_stop) {
		w->state = TW_QUEUED;
		w->next = NULL;
		*t->wq_tail = w;
		t->wq_tail = &w->next;
		pthread_cond_broadcast(&t->wcond);
	}
	pthread_mutex_unlock(&t->wlock);
}

void tree_work_settle(al_tree *t, tree_work *w, int run_queued)
{
	tree_work **p;
	int queued = 0;
	pthread_mutex_lock(&t->wlock);
	while (w->state == TW_RUNNING)
		pthread_cond_wait(&t->wcond, &t->wlock);
	if (w->state == TW_QUEUED) {
		for (p = &t->wq; *p != w; p = &(*p)->next)
			;
		if (!(*p = w->next))
			t->wq_tail = p;
		w->next = NULL;
		w->state = TW_IDLE;
		queued = 1;
	}
	pthread_mutex_unlock(&t->wlock);
	if (queued && run_queued)
		w->run(w);
}

int al_tree_open(al_tree **out, const al_tree_options *opts)
{
	al_tree *t = NULL;
	int rc;

	*out = NULL;
	if (!opts || opts->version != AL_TREE_OPTIONS_VERSION || !opts->stack)
		return al_error_set(AL_EINVAL, "al_tree_options version %u, expected %u, with a stack",
			opts ? opts->version : 0, AL_TREE_OPTIONS_VERSION);
	if (!(t = calloc(1, sizeof(*t))))
		return al_error_set(AL_ENOMEM, "out of memory");
	pthread_mutex_init(&t->lock, NULL);
	{
		/* recursive: dataset_settle holds it around dataset_refresh, which takes it too */
		pthread_mutexattr_t ma;
		pthread_mutexattr_init(&ma);
		pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&t->ds_lock, &ma);
		pthread_mutexattr_destroy(&ma);
	}
	pthread_cond_init(&t->ds_wake, NULL);
	pthread_mutex_init(&t->scan_lock, NULL);
	pthread_mutex_init(&t->rmlock, NULL);
	pthread_mutex_init(&t->wlock, NULL);
	pthread_cond_init(&t->wcond, NULL);
	t->wq_tail = &t->wq;
	t->stack = opts->stack;
	t->store = opts->stack->store;
	t->series_store = opts->stack->series_store;
	t->blobs = opts->stack->blobs;
	t->cache = opts->stack->cache;
	t->fetcher = opts->stack->fetcher;
	t->series = opts->stack->series;
	t->attr_ttl_us = opts->stack->attr_ttl_us;
	t->mount_us = al_now_us();
	t->allow_delete = opts->allow_delete;
	t->uid = opts->uid;
	t->gid = opts->gid;
	t->multi_user = opts->multi_user;
	t->mountpoint = opts->mountpoint ? strdup(opts->mountpoint) : NULL;
	/* Staged writes live beside the journals, on the same durable disk (stack.h). */
	t->staging_dir = xasprintf("%s/staging", opts->stack->state_dir);
	if ((rc = attrcache_init(t)) || (rc = rendercache_init(t)))
		goto fail;
	if (!t->staging_dir) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = al__mkdir_p(t->staging_dir, 0700)) || (rc = clean_staging(t->staging_dir)))
		goto fail;
	if (pthread_create(&t->ds_thread, NULL, dataset_thread, t) != 0) {
		rc = al_error_set(AL_ERROR, "cannot start the dataset thread");
		goto fail;
	}
	t->ds_started = 1;
	for (; t->w_started < TREE_WORKERS; t->w_started++)
		if (pthread_create(&t->wthread[t->w_started], NULL, work_thread, t) != 0) {
			rc = al_error_set(AL_ERROR, "cannot start the tree's worker threads");
			goto fail;
		}
	*out = t;
	return 0;
fail:
	al_tree_free(t);
	return rc;
}

void al_tree_free(al_tree *t)
{
	vdir *v, *next;
	if (!t)
		return;
	/* The flushers' requests in flight end now; the final flushes below are bounded like any
	 * file operation's, and what they cannot deliver stays journaled (README "Firestore"). */
	al__shutdown_begin();
	if (t->ds_started) {
		pthread_mutex_lock(&t->lock);
		t->ds_stop = 1;
		pthread_cond_signal(&t->ds_wake);
		pthread_mutex_unlock(&t->lock);
		pthread_join(t->ds_thread, NULL);
		dataset_settle(t, NULL);
	}
	if (t->w_started) {   /* every handle, and so every piece of work, went before */
		int i;
		pthread_mutex_lock(&t->wlock);
		t->w_stop = 1;
		pthread_cond_broadcast(&t->wcond);
		pthread_mutex_unlock(&t->wlock);
		for (i = 0; i < t->w_started; i++)
			pthread_join(t->wthread[i], NULL);
	}
	dataset_scans_free(t);    /* before the cache goes (al_stack_free) */
	for (v = t->vdirs; v; v = next) {
		next = v->next;
		free(v->path);
		free(v);
	}
	scratch_free_all(t);
	free(t->mountpoint);
	free(t->staging_dir);
	attrcache_free(t);
	if (t->rcache)
		rendercache_free(t);
	pthread_mutex_destroy(&t->ds_lock);
	pthread_cond_destroy(&t->ds_wake);
	pthread_mutex_destroy(&t->scan_lock);
	pthread_mutex_destroy(&t->rmlock);
	pthread_mutex_destroy(&t->wlock);
	pthread_cond_destroy(&t->wcond);
	pthread_mutex_destroy(&t->lock);
	free(t);
}
