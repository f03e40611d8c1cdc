/* aletheia: what the files of core/tree/ share: the kind table's row, the parsed path (node), the
 * tree and open-file state, and the helpers more than one kind uses. Not a public header. */
#ifndef ALETHEIA_TREE_INTERNAL_H
#define ALETHEIA_TREE_INTERNAL_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "core/blobs/blobs.h"
#include "core/buf.h"
#include "aletheia/cache.h"
#include "aletheia/fetch.h"
#include "core/fsck.h"
#include "aletheia/hash.h"
#include "core/doc/json.h"
#include "core/series/metric.h"
#include "core/series/series.h"
#include "core/stack_internal.h"
#include "core/store/store.h"
#include "aletheia/tree.h"
#include "core/doc/value.h"
#include "config.h"
#include "core/util.h"

#define MAX_NAME 1500

typedef struct al_kind al_kind;

/* A parsed path: its row of the kind table, its names, and the documents it lives in. */
typedef struct node {
	const al_kind *k;
	char *buf;
	const char *project, *experiment, *run, *dataset, *name;
	const char *rest;          /* path inside params/, metrics/, artifacts/ or a dataset */
	char *proj_doc, *exp_doc, *run_doc, *ds_doc;
	char *coll;                /* collection of blob-backed files (artifacts, dataset files, logs) */
} node;

typedef struct keyset {
	char **keys;
	/* Only in listings (al_tree_readdir): attrs[i] holds keys[i]'s attributes when has[i] is 1,
	 * set by a list function that read them anyway (keyset_add_attr), or its type alone when 2
	 * (child_of_typed); freed with keyset_free. */
	al_attr *attrs;
	unsigned char *has;
	size_t n, cap;
	/* From KEYSET_INDEX_FROM keys on: keys[slot[h] - 1] by the key's hash (0: empty), so a
	 * listing of 10,000 names adds each in constant time (keyset_find). */
	size_t *slot;
	size_t nslot;
} keyset;

/* ---- the kind table (dispatch.c) --------------------------------------------------------- */

/* Flags of a row: rules the dispatcher applies to every kind that has them. */
enum {
	K_DIR = 1 << 0,        /* a folder: its attributes are its owner document's */
	K_RUNNING = 1 << 1,    /* inside a run, changed only while it runs (README "Run lifecycle"):
				* read-only modes once it ended, EROFS for changes */
	K_BLOBS = 1 << 2,      /* files of a blob collection (row's coll under the owner document) */
	K_WRITE_ONCE = 1 << 3, /* its files never change once written (README "datasets") */
	K_WORKING = 1 << 4,    /* a working folder while its run runs: deletable (README "artifacts") */
	K_SCRATCH = 1 << 5,    /* editors' scratch files may live in it (README "Editing values…") */
	K_MEMORY = 1 << 6,     /* lists what exists only in memory: writers, scratch files, new folders */
	K_NAMED = 1 << 7,      /* one file of the collection, named as the path's last segment */
	/* Shared mounts (-o allow_other, README "Many users on one machine"): every user creates
	 * here. K_SHARED: folders 01777 (what each holds is its creator's to rename or delete),
	 * control files 0666; K_OPEN: folders 0777 (a dataset's files are write-once anyway), and
	 * each file or folder in it is its own creator's (its record's or writer's uid). */
	K_SHARED = 1 << 8,
	K_OPEN = 1 << 9,
	K_LABEL = 1 << 10,      /* a label, not data: removed without --allow-delete (README "tags") */
	K_CAPTURE = 1 << 11,    /* K_RUNNING, but a descriptor opened while the run ran records at its
				 * close even once it ended (aletheia run's output.log: its command may
				 * end the run itself) */
};

/* The document whose existence a kind depends on. */
typedef enum { O_NONE, O_PROJECT, O_DATASET, O_EXPERIMENT, O_RUN } owner_kind;

/* One kind of path (README "The tree"): its pattern, rules and operations. A missing operation
 * gets the dispatcher's default (EPERM for changes, EACCES for writes, EISDIR/ENOTDIR). */
struct al_kind {
	const char *name;
	/* Segments: a literal, {project} {experiment} {run} {dataset} {name} (one name each), or a
	 * last {rest} (one or more segments) or {rest*} (zero or more). */
	const char *pattern;
	unsigned flags;
	owner_kind owner;
	unsigned mode;             /* permission bits; K_RUNNING drops the write bits once ended */
	const char *coll;          /* blob-backed files: their collection under the owner document */
	const char *field;         /* value files: the field of the owner document they show */
	const char *const *entries;/* fixed children of a folder */
	/* Attributes, when not the default (a folder: attr_dir; a rendered file: its render). */
	int (*getattr)(al_attr *out, al_tree *t, const node *n, const al_doc *owner, const char *path,
		unsigned mode);
	int (*list)(keyset *k, al_tree *t, const node *n, const char *path);
	/* The content of a generated or value file; *mtime raised to what it was made of. */
	int (*render)(al_buf *b, int64_t *mtime, al_tree *t, const node *n);
	/* Value files: what a close records (text.c holds the content until then). */
	int (*commit)(al_file *f);
	int (*create)(al_tree *t, const node *n);        /* a new value file may be made here */
	int (*check_line)(const node *n, const char *line);  /* a complete line, checked at write() */
	int (*open)(al_file *f, int flags, const char *path);  /* files other than value files */
	int (*mkdir)(al_tree *t, const node *n, const char *path, const al_caller *c);
	int (*unlink)(al_tree *t, const node *n, const char *path);
	int (*rmdir)(al_tree *t, const node *n, const char *path);
	int (*symlink)(al_tree *t, const node *n, const char *path, const char *target,
		const al_caller *c);
	int (*readlink)(char **out, al_tree *t, const node *n);
};

/* The patterns' common beginnings. */
#define PROJECT_P "{project}"
#define DATASET_P PROJECT_P "/datasets/{dataset}"
#define EXPERIMENT_P PROJECT_P "/experiments/{experiment}"
#define RUN_P EXPERIMENT_P "/runs/{run}"

int node_parse(node *n, const char *path);
void node_free(node *n);
const char *node_owner_doc(const node *n);
/* Content of a generated or value file (its row's render). */
int render(al_buf *b, int64_t *mtime, al_tree *t, const node *n);
/* Attributes of everything but scratch files, uncached. */
int getattr_recorded(al_attr *out, al_tree *t, const char *path);
int generated_attr(al_attr *out, al_tree *t, const node *n, const char *path, unsigned mode,
	int64_t mtime);

/* The dispatcher's operations, wrapped by the attribute cache (attrcache.c). */
int tree_mkdir(al_tree *t, const char *path, const al_caller *caller);
int tree_unlink(al_tree *t, const char *path);
int tree_rmdir(al_tree *t, const char *path);
int tree_rename(al_tree *t, const char *from, const char *to, unsigned flags);
int tree_symlink(al_tree *t, const char *target, const char *path, const al_caller *caller);
int tree_chmod(al_tree *t, const char *path, unsigned mode);
/* 0 when the folder at path lists nothing, else AL_ENOTEMPTY (or its listing's error). */
int require_empty(al_tree *t, const char *path);
int tree_utimens(al_tree *t, const char *path, int64_t mtime_us);

/* ---- the tree's state -------------------------------------------------------------------- */

typedef struct vdir {
	char *path;
	struct vdir *next;
} vdir;

/* An editor's or atomic writer's temporary file where values live (README "Editing values in
 * place"): its bytes in memory, never recorded. */
typedef struct scratch {
	char *path;                /* NULL once unlinked or renamed over a file */
	al_buf data;
	int64_t mtime_us;
	unsigned refs;             /* one for the tree's list while path is set, one per handle */
	char *commit_to;           /* renamed over this file while still open: later writes go there */
	int dirty;                 /* written since it was renamed over commit_to */
	int to_metric;             /* commit_to is a metric: its lines past metric_from are appended */
	size_t metric_from;
	struct scratch *next;
} scratch;

typedef struct attr_entry attr_entry;
typedef struct rec_entry rec_entry;
/* A blob-backed file's record as a read open needs it (blobhandle.c). */
typedef struct file_rec {
	int is_dir;
	char hash[AL_HASH_HEX_LEN + 1];    /* "" when the record has no valid hash */
	int64_t size;
	char *blob;                          /* its "blob" field, or NULL */
} file_rec;
typedef struct render_entry render_entry;
typedef struct rendered rendered;

/* Slots of the scope generations (rendercache.c): a document's slot is bumped after every change
 * to it or below it; documents sharing a slot only cost each other a render. */
#define SCOPE_SLOTS 4096

/* The tree's worker threads (tree_work_*): the two cores of a small machine. */
#define TREE_WORKERS 2

/* The kinds' positions in the table (kinds.h), for counters kept per kind. */
enum {
#define KIND(k) KIND_INDEX_##k,
#include "kinds.h"
#undef KIND
	KIND_COUNT
};

struct al_tree {
	al_stack *stack;           /* the backends, built outside the tree (stack.h) */
	al_store_backend *store;   /* stack->store: for a remote metastore write-behind → read cache */
	al_store_backend *series_store;  /* stack->series_store (stack.h) */
	al_blobs_backend *blobs;
	al_cache *cache;
	al_fetcher *fetcher;
	al_series_set *series;
	char *mountpoint, *staging_dir;
	int allow_delete;
	uid_t uid;
	gid_t gid;
	int multi_user;            /* -o allow_other: owners are the creators (dispatch.c) */
	int64_t mount_us;
	uint64_t status_gen;       /* bumped by every status change: open writers check the run again */
	pthread_mutex_t lock;      /* serialises read-modify-write of documents, vdirs, writers */
	vdir *vdirs;
	al_file *writers;
	scratch *scratch;          /* linked scratch files (in t->lock, as is their content) */
	size_t scratch_bytes;
	/* Datasets whose version must be recomputed: after each added file it would cost a listing
	 * per file, so it happens once they are left alone for a second, or at once when the
	 * version is looked at (dataset_thread). */
	pthread_mutex_t ds_lock;   /* serialises version computation; taken before t->lock */
	vdir *dirty_ds;            /* dataset documents (in t->lock) */
	int64_t ds_first_us;       /* the first and the last change since dirty_ds was empty */
	int64_t ds_last_us;
	pthread_t ds_thread;
	pthread_cond_t ds_wake;
	int ds_started, ds_stop;
	/* Attribute cache (attrcache.c, after sshfs's cache.c): answers are kept while no change
	 * happened since they were computed; every change bumps gen, so a stale answer is never
	 * served. */
	pthread_mutex_t alock;
	uint64_t gen;
	attr_entry **acache;
	size_t acount;
	rec_entry **frcache;       /* dataset files' records, kept the same way (reccache_get) */
	size_t frcount;
	int64_t attr_ttl_us;       /* INT64_MAX for a local store: no one else changes it */
	al_tree_status_fn status_fn;  /* the FUSE layer's lines of .aletheia/status (in lock) */
	void *status_arg;
	/* Datasets being read (dsprefetch.c): cold opens, and the prefetch a scan started. */
	pthread_mutex_t scan_lock;
	struct ds_scan *scans;
	/* Render cache (rendercache.c): a generated file's last render (size, mtime and, within a
	 * budget, its content) per path, kept while the scope generation of its owner document
	 * (and the epoch, bumped by changes not tied to one document) stays the same, so stat()
	 * costs no render while nothing it is made of changed (README ".aletheia/status"). */
	pthread_mutex_t rlock;
	pthread_cond_t rdone;      /* a render in flight ended */
	struct inflight *inflight; /* renders in flight: others of the same path wait for them */
	render_entry **rcache;
	size_t rcount;
	size_t rkept;              /* bytes of content the entries hold */
	uint64_t scope_gen[SCOPE_SLOTS];
	uint64_t render_epoch;
	uint64_t renders[KIND_COUNT];   /* renders made, per kind (atomic) */
	/* Documents being deleted, each with all under it (common.c removing_*), in rmlock. */
	pthread_mutex_t rmlock;
	struct removing *removing;
	/* Work done ahead of a request (tree_work_*): TREE_WORKERS threads, a FIFO. */
	pthread_mutex_t wlock;
	pthread_cond_t wcond;      /* work queued, work done, or stop */
	struct tree_work *wq, **wq_tail;
	pthread_t wthread[TREE_WORKERS];
	int w_started, w_stop;
};

/* ---- work done ahead (tree.c) ------------------------------------------------------------- */

/* A piece of work the tree's worker thread may do before a request needs it (a metric reader's
 * next batch): run on the other core while the kernel copies the current answer out. Embedded in
 * its owner, which must tree_work_settle it before it goes. */
enum { TW_IDLE, TW_QUEUED, TW_RUNNING };
typedef struct tree_work {
	void (*run)(struct tree_work *w);
	struct tree_work *next;
	int state;                 /* TW_*, in t->wlock */
} tree_work;

/* Queues w unless it is queued or running already. */
void tree_work_submit(al_tree *t, tree_work *w);
/* Makes w idle: waits while it runs; if still queued, takes it out of the queue and, with
 * run_queued, runs it in the caller's thread (the request needs it now), else drops it. */
void tree_work_settle(al_tree *t, tree_work *w, int run_queued);

/* ---- open files (handle.c) --------------------------------------------------------------- */

/* The class of an open file: how it reads, writes and records. */
enum { F_TEXT, F_METRIC, F_BLOB_READ, F_BLOB_WRITE, F_GENERATED, F_IMPORT, F_FSCK, F_SCRATCH,
	F_PREFETCH, F_TAG, F_COUNT };

typedef struct file_class {
	int (*read)(size_t *nread, al_file *f, char *buf, size_t size, uint64_t off);
	int (*write)(al_file *f, const char *buf, size_t size, uint64_t off);   /* NULL: EACCES */
	int (*truncate)(al_file *f, uint64_t size);                              /* NULL: EACCES */
	int (*flush)(al_file *f);                                                /* NULL: nothing */
	/* Adjusts the path's attributes (rc: their lookup's result) to what the handle serves. */
	int (*getattr)(al_attr *out, al_file *f);   /* NULL: the path's (path_attr) */
	/* Content held in a local file: a descriptor to read [off, off+len) from (al_file_fd_get). */
	int (*fd_get)(int *fd, int *owned, al_file *f, uint64_t off, size_t len);
	/* The whole content, complete and verified, for the handle's life (al_file_backing_fd). */
	int (*backing_fd)(int *fd, al_file *f);
	int (*keep_cache)(al_file *f);
	int (*direct_io)(al_file *f);
	/* The class's part of a release; 1 when other opens still share the handle (keep it). */
	int (*release)(al_file *f);
} file_class;

extern const file_class text_class, generated_class, metric_class, blob_read_class,
	blob_write_class, import_class, fsck_class, scratch_class, prefetch_class, tag_class;

struct al_file {
	pthread_mutex_t mu;        /* one operation at a time on a handle (dup'ed fds, threads) */
	al_tree *t;
	int kind;                  /* F_*: its class */
	node n;
	char *path;
	int flags;
	int dirty;
	al_buf text;               /* F_TEXT/F_GENERATED content; F_METRIC: the partial last line */
	size_t keep;               /* F_TEXT: length of the content shown at open (0 when truncated) */
	size_t low_write;          /* F_TEXT: lowest offset written or truncated to (SIZE_MAX: none) */
	/* F_METRIC readers stream (README "metrics"): snap holds the text of one batch of points,
	 * the bytes [win_off, win_off + snaplen) of the file; points is the ordinal after it, whose
	 * text starts at text_end; idx[j] is where point j × AL_SERIES_CHUNK starts, to go back. */
	char *snap;
	size_t snaplen;
	uint64_t win_off, text_end;
	uint64_t *idx;
	size_t nidx;
	uint64_t points, view;     /* view: the series' (al_series_points) the offsets are of */
	struct metric_ahead *ahead;   /* the next batch, made by the tree's worker (metrics.c) */
	uint64_t status_gen;       /* t->status_gen when the run was last seen running (K_RUNNING) */
	int line_closed;           /* F_METRIC: a close() came after the partial line in text */
	int skip_line;             /* F_METRIC: the rest of a refused (too long) line is dropped */
	int wrote;                 /* F_METRIC: a write came (the first decides on matching) */
	int matching;              /* F_METRIC: a rewrite still comparing its lines with the points */
	struct metric_match *match;   /* ... and what it compares them with (metrics.c) */
	int fd;                    /* F_BLOB_*: the blob or the staging file */
	al_cache_blob *cb;         /* F_BLOB_READ through the cache: streamed, fd is -1 */
	char hash[AL_HASH_HEX_LEN + 1];
	uint64_t size;             /* F_BLOB_READ of a stored blob: the size its record gives */
	int failed;                /* the error of a failed write: the staged copy is incomplete */
	char *staging;             /* F_BLOB_WRITE: the staged copy; F_METRIC: the metric document */
	scratch *sc;               /* F_SCRATCH */
	/* Writers: the mtime shown and recorded. Set by a write, or by utimens while open (cp -p,
	 * cp -a set times before they close: README "Files behave like files"). Atomic. */
	int64_t mtime_us;
	int mtime_set;
	int exec;                  /* F_BLOB_WRITE: the executable bit its records keep (chmod, or
				    * the file's own at the open). Atomic. */
	int detached;              /* F_BLOB_WRITE: the file was deleted or replaced: record nothing */
	int created;               /* F_BLOB_WRITE in a dataset: this handle's create-only record
				    * succeeded, so later records (fsync, close) replace its own */
	/* F_BLOB_WRITE: the opens sharing this handle (in t->lock), so that every writer of a file
	 * sees one content (two connections to a database) */
	unsigned handles;
	struct al_file *share;     /* at open: the writer this open joins instead */
	struct al_file *next;      /* in t->writers */
	rendered *gen;             /* F_GENERATED read-only opens: the content shown (shared) */
	al_fsck *fsck;             /* F_FSCK: the check this handle asked for; its report in text */
	int fsck_done;
	/* F_PREFETCH (dsprefetch.c): the dataset asked for, its pull, the report's progress */
	char *pf_ds, *pf_name;
	al_cache_prefetch *pf;
	int64_t pf_t0, pf_last_us;
	size_t pf_local;
	int pf_done;
	int registered;            /* in t->writers (register_writer) */
	int refused;               /* a flush failed and took it out of t->writers */
	int has_creator;           /* opened by a known caller (al_file_open_as): its ids */
	uid_t creator_uid;
	gid_t creator_gid;
};

/* Every change calls this once it is visible (attrcache.c). */
void changed(al_tree *t);
/* The attribute cache's generation now, and an answer computed since then (a listing's
 * attributes: al_tree_readdir) kept as a lookup's is, unless something changed meanwhile. */
uint64_t attrcache_gen(al_tree *t);
/* Dataset files' records on a local store, kept while no change happened since they were read
 * (g0: attrcache_gen before the read), so an open after a lookup, or a second epoch's, reads no
 * document. get: 0 and a copy (file_rec_clear it), or AL_ENOTFOUND when none is kept. */
int reccache_get(file_rec *out, al_tree *t, const char *doc);
void reccache_put(al_tree *t, const char *doc, const file_rec *r, uint64_t g0);
int reccache_wanted(al_tree *t, const node *n);
void file_rec_from_doc(file_rec *out, const al_doc *d);
void file_rec_clear(file_rec *r);
void attrcache_put(al_tree *t, const char *path, const al_attr *a, uint64_t g0);
int attrcache_init(al_tree *t);
void attrcache_free(al_tree *t);

/* ---- the render cache (rendercache.c) ------------------------------------------------------ */

/* A render's content, shared by the cache and the handles reading it; immutable. */
struct rendered {
	unsigned refs;             /* atomic */
	size_t len;
	char data[];
};

void rendered_put(rendered *r);
/* After a change to the document doc (a path in the store) is visible: renders made of it, or
 * of anything it is in, are made again when next asked for. */
void scope_changed(al_tree *t, const char *doc);
/* After a change not tied to one document (the dataset thread, a control file): every render. */
void scope_changed_all(al_tree *t);
/* doc's scope generation now: it differs after any change to doc or below it (scope_changed). */
uint64_t scope_gen_of(al_tree *t, const char *doc);
/* The size and mtime (raised to *mtime) of a generated file's content: the last render's while
 * nothing it is made of changed, else a new render, which is kept for the next ask. With out,
 * the content too (a reference the caller puts back). */
int render_cached(rendered **out, uint64_t *size, int64_t *mtime, al_tree *t, const node *n,
	const char *path);
int rendercache_init(al_tree *t);
void rendercache_free(al_tree *t);
/* An answer being made (a render, attributes) goes stale by itself at time us, with no change to
 * any document (a running run's heartbeat deadline: README "Crashed runs"). validity_push starts
 * collecting such times for a nested answer; validity_pop ends it, returns its earliest and
 * passes that on to the outer one. */
void render_valid_until(int64_t us);
int64_t validity_push(void);
int64_t validity_pop(int64_t outer);
/* status.c: the status a run shows: its recorded one, or crashed for a running run whose
 * heartbeat is older than the limit, *crashed_us then set to when it became so. */
const char *run_status_shown(int64_t *crashed_us, const al_doc *run);
/* The text "runs.csv 3, run.json 1" of the renders made so far (.aletheia/status). */
int render_counts(al_buf *b, al_tree *t);
size_t kind_index(const al_kind *k);
/* The store's commit, followed by scope_changed of each document written. */
int tree_commit(al_tree *t, const al_write *w, size_t n);

al_file *find_writer(al_tree *t, const char *path);
int writer_attr(al_attr *out, al_tree *t, const char *path, unsigned mode);
void register_writer(al_tree *t, al_file *f);
void unregister_writer(al_tree *t, al_file *f);
int has_vdir(al_tree *t, const char *path);
int add_vdir(al_tree *t, const char *path);
void memory_children(keyset *k, al_tree *t, const char *path);
/* Records data as the new content of the value file at path, as a write and a close would. */
int commit_content(al_tree *t, const char *path, const char *data, size_t len);
/* Writes data over the metric at path from its start: its lines past the points there are
 * appended (metrics.c). */
int metric_rewrite(al_tree *t, const char *path, const char *data, size_t len);
/* Appends complete lines to the metric at path, as a writer opened with O_APPEND would. */
int metric_append_lines(al_tree *t, const char *path, const char *text, size_t len);
/* The metric document of a path in metrics/; NULL when out of memory. Caller frees. */
char *metric_doc(const node *n);
/* A metric's text as reading gives it, appended to b (metrics.c). */
int metric_text(al_buf *b, al_tree *t, const node *n);
/* The attributes of an open file's path; a path gone since the open still answers. */
int path_attr(al_attr *out, al_file *f);
int read_buffer(size_t *nread, const char *src, size_t len, char *buf, size_t size, uint64_t off);

/* ---- names, documents and small containers (common.c) ----------------------------------- */

char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *last_segment(const char *path);
int check_name(const char *name);
int check_rest_names(const char *rest);
int path_under(const char *dir, const char *path);
/* 1 while doc, or a document it is under, is being deleted through this mount (rm, rmdir): a
 * reader that meets its parts gone ends there rather than failing (README "Deleting and
 * renaming"). */
int being_removed(al_tree *t, const char *doc);
int path_inside(const char *dir, const char *path);
#define KEYSET_NONE ((size_t)-1)
/* Where key is in k, or KEYSET_NONE. */
size_t keyset_find(const keyset *k, const char *key);
void keyset_add(keyset *k, const char *key);
/* Adds key, known not to be in k yet (an id of the one listing that fills k), with its
 * attributes. */
void keyset_add_attr(keyset *k, const char *key, const al_attr *a);
/* Sorts the keys by strcmp (no attributes: sets of names only). */
void keyset_sort(keyset *k);
void keyset_free(keyset *k);
int cmp_str(const void *a, const void *b);
void child_of(keyset *k, const char *rest, const char *full);
/* child_of noting the child's type for the listing (keyset has 2): a file when full is it, a
 * folder when full is below it; a file of the name wins (params and metrics answer so). */
void child_of_typed(keyset *k, const char *rest, const char *full);
int list_ids(keyset *k, al_tree *t, const char *coll);
/* The ids of the row's collection (coll) under its owner document: a folder of documents. */
int list_coll(keyset *k, al_tree *t, const node *n, const char *path);
/* list_coll for a collection of documents that are each a K_DIR row's owner with no getattr of
 * its own (runs/, experiments/, datasets/): each entry's attributes are its document's time
 * (attr_dir), so the listing gives them and `ls -l` needs no lookup per entry. */
int list_coll_dirs(keyset *k, al_tree *t, const node *n, const char *path);
void attr_dir(al_attr *a, int64_t mtime);
void attr_file(al_attr *a, unsigned mode, uint64_t size, int64_t mtime);
void mtime_raise(int64_t *mtime, int64_t v);
int run_map_list(keyset *k, al_tree *t, const node *n, const char *field, int typed);
/* Deletes one key of a map field of the run (params, links). */
int map_key_unlink(al_tree *t, const node *n, const char *field, const char *key, const char *path);
int metric_remove(al_tree *t, const node *n, const char *path);

int get_doc(al_doc **out, al_tree *t, const char *path);
int doc_exists(al_tree *t, const char *path);
/* A run's metric summaries (al_series_summaries) in a render over every run of an experiment:
 * from the experiment's one listing (stored: al_series_stored_start) where the store gives one,
 * else from the run's own (prefetched from a remote store). */
int run_summaries(char ***ids, al_series_summary **sums, size_t *count, al_tree *t,
	al_series_stored *stored, const char *run_doc);
int run_is_running(const al_doc *run);
int require_running(al_tree *t, const node *n);
int commit1(al_tree *t, al_write_op op, const char *path, const cJSON *fields, al_precondition pre);
/* Sets (values) or deletes (keys) keys of one map field of a document with one update whose mask
 * names only those keys; with times_field, the map times_field gets each key's time of change. */
int commit_keys(al_tree *t, const char *doc, const char *field, const char *times_field,
	const cJSON *values, const char *const *keys, size_t nkeys, al_precondition pre);
int64_t value_time(const al_doc *d, const char *map_field, const char *key);
/* When a document's field was last written (its updated_key); one never written: the document's
 * creation, so writing another field moves no mtime of it (README "Files behave like files"). */
int64_t field_time(const al_doc *d, const char *field, const char *updated_key);
/* Room kept in a run's document for what ends it: params, texts and links may fill it only up to
 * this much below Firestore's 1 MiB, so that status, ended and exit_code can always be written
 * (README "params"). */
#define RUN_HEADROOM 16384
int run_fits(const node *n, const al_doc *d, const cJSON *patch, size_t headroom);

/* ---- values as text (values.c) ---------------------------------------------------------- */

int param_from_text(cJSON **out, const char *text, size_t len);
int value_text(al_buf *b, const cJSON *v);
int json_out(al_buf *b, cJSON *j, int pretty);
cJSON *double_json(double v);
cJSON *int_json(int64_t v);
void time_json(cJSON *o, const char *key, const cJSON *fields, const char *field);
void field_json(cJSON *o, const char *key, const cJSON *fields, const char *field);
int render_text_field(al_buf *b, const cJSON *fields, const char *name);
int text_checked(char **out, const al_buf *b, const char *what);
int written_object(cJSON **fields, int *appended, const al_file *f, const char *what);

/* ---- per-kind helpers other kinds call ------------------------------------------------------ */

/* runs_csv.c: run documents in runs.csv's order (numeric ids numerically, then the others). */
int cmp_run_ids(const void *a, const void *b);
/* best.c: the JSON index an experiment's folder row (best/, tagged/) renders, through the render
 * cache; *mtime (if not NULL) raised to its time. */
int exp_index(cJSON **out, int64_t *mtime, al_tree *t, const node *n, const char *folder);
void link_attr(al_attr *out, size_t len, int64_t mtime);

/* dsprefetch.c: a cold open of a dataset's file (not complete in the cache) counts towards a
 * scan, which prefetches the dataset. */
void dataset_scan_note(al_tree *t, const node *n, int cold);
void dataset_scans_free(al_tree *t);
/* blobhandle.c: the URL a file's blob is read from when not the blob store's own (an import). */
const char *blob_source(al_tree *t, const al_doc *d, const char *hash);
const char *blob_source_of(al_tree *t, const char *blob, const char *hash);
/* ctl.c */
int ctl_empty_attr(al_attr *out, al_tree *t, const node *n, const al_doc *owner, const char *path,
	unsigned mode);
/* scratch.c */
int scratch_attr(al_attr *out, al_tree *t, const char *path);
int scratch_unlink(al_tree *t, const char *path);
int scratch_rmdir(al_tree *t, const char *path);
int scratch_utimens(al_tree *t, const char *path, int64_t mtime_us);
int rename_scratch(al_tree *t, const char *from, const char *to, unsigned flags);
int open_scratch(al_file *f, int flags, const char *path);
void scratch_free_all(al_tree *t);
void scratch_put_locked(al_tree *t, scratch *s);
/* blobfiles.c */
int blob_attr(al_attr *out, al_tree *t, const node *n, const char *path, unsigned mode);
void dataset_records_keep(al_tree *t, const char *ds_path, const al_doc_list *l, uint64_t g0);
char *dataset_folder(const node *n);
int blob_rename(al_tree *t, const node *a, const node *b, const char *from, const char *to,
	unsigned flags);
int blob_remove(al_tree *t, const node *n, const char *path);
int blob_rmdir(al_tree *t, const node *n, const char *path);
int blob_utimens(al_tree *t, const node *n, int64_t mtime_us);
int blob_rename_onto_value(al_tree *t, const node *a, const char *from, const char *to);
int working_folder(al_tree *t, const node *n);
int blob_chmod(al_tree *t, const node *n, const char *path, int exec);
char *blob_record_doc(const node *n);
#define MTIME_NOW INT64_MIN   /* record_file: the time of the recording */
int record_file(al_tree *t, const node *n, const char *hex, uint64_t size, const char *uri,
	int stored, const al_pieces *pieces, int64_t mtime_us, int create, const al_file *by);
int blob_list(keyset *k, al_tree *t, const node *n, const char *path);
/* blobhandle.c */
int open_blob(al_file *f, int flags, const char *path);
int blob_open(al_file *f, int flags, const char *path);
/* text.c */
int open_text(al_file *f, int flags, const char *path);
/* dataset.c */
int dataset_settle(al_tree *t, const char *ds_doc);
void dataset_changed(al_tree *t, const char *ds_doc);
int dataset_referenced(al_tree *t, const char *ds_doc);
void *dataset_thread(void *arg);
/* metrics.c */

/* the owner folders' shared operations */
int owner_rmdir(al_tree *t, const node *n, const char *path);
int vdir_mkdir(al_tree *t, const node *n, const char *path, const al_caller *c);
cJSON *named_doc(const char *name, int64_t now, const al_tree *t, const al_caller *c);
/* Records who creates a document (README "Many users on one machine"): uid and gid. */
void set_creator(cJSON *fields, const al_tree *t, const al_caller *c);
int field_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n);

/* The rows, one per kind, each in the file named after what the user sees. */
#define KIND(k) extern const al_kind kind_##k;
#include "kinds.h"
#undef KIND

#endif
