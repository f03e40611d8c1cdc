/* aletheia: the FUSE low-level operations: an inode table over tree paths, replies with
 * per-entry cache lifetimes, and reads served by the kernel from complete local blobs (FUSE
 * passthrough) or spliced from local files. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "fs.h"
#include "core/util.h"

/* FUSE passthrough (kernel 6.9+) needs libfuse 3.16's fuse_passthrough_open (README
 * "Dependencies"); an older libfuse builds the spliced read path alone. */
#if FUSE_MAJOR_VERSION > 3 || (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION >= 16)
#define AL_HAVE_PASSTHROUGH 1
#else
#define AL_HAVE_PASSTHROUGH 0
#endif

/* Lookup counts follow libfuse's passthrough_hp: lookup/create/mkdir add one, forget removes. */
typedef struct inode {
	fuse_ino_t ino;
	ino_t number;           /* st_ino (see path_number) */
	char *path;
	uint64_t nlookup;
	uint64_t children;      /* entries of the path table directly below this path */
	int dir;                /* a folder: once nameless it still answers, as an empty one */
	int64_t gone_us;        /* when its name went: a nameless folder's times */
	struct open_ref *opens; /* its open files: they answer for it once its name is gone */
	/* The kernel holds an inode in one I/O mode: while files of it are open through a backing
	 * file (passthrough, all through the same one), no other open may be, and the reverse. */
	unsigned pt_opens, other_opens;
	int backing_id;         /* registered for pt_opens, closed with the last of them */
	dev_t backing_dev;      /* which file it is, so an open of the same blob joins it */
	ino_t backing_ino;
	struct inode *next_ino, *next_path, *next_number;
} inode;

typedef struct open_ref {
	al_file *f;
	int passthrough;
	struct open_ref *next;
} open_ref;

#define BUCKETS 65536

struct al_fs {
	al_tree *tree;
	pthread_mutex_t lock;   /* guards both tables and next_ino */
	inode *by_ino[BUCKETS];
	inode *by_path[BUCKETS];
	inode *by_number[BUCKETS];
	fuse_ino_t next_ino;
	uid_t uid;
	gid_t gid;
	int passthrough;        /* the kernel took FUSE_CAP_PASSTHROUGH and it has not failed us */
	int no_passthrough;     /* --no-passthrough */
	char read_path[200];    /* in lock: .aletheia/status's read_path */
	/* .aletheia/status: opens the kernel reads without us, and reads of local blob (or staged)
	 * content that reach us: not those of generated files, so reading the status changes neither */
	unsigned long long passthrough_opens, blob_reads;
	/* lookups the kernel asked for: a listing whose entries came with their attributes
	 * (readdirplus) is followed by none per entry */
	unsigned long long lookups;
};


static inode *find_ino(al_fs *fs, fuse_ino_t ino)
{
	inode *n;
	for (n = fs->by_ino[ino % BUCKETS]; n; n = n->next_ino)
		if (n->ino == ino)
			return n;
	return NULL;
}

/* A path's inode number (st_ino, d_ino) is made from the path, not from the node id, which is
 * new each time the kernel looks a path up again after it forgot it: so a file keeps its number
 * across the kernel's forgetting, as on a local disk (cp's "replaced while being copied" check,
 * git's index and rsync compare them). Numbers of live inodes stay unique: one taken (a renamed
 * file keeps its old path's while the kernel holds it) goes to the next free. 1 is the root's. */
static ino_t path_number(const char *path)
{
	ino_t n = (ino_t)al__str_hash(path);
	return n > FUSE_ROOT_ID ? n : n + FUSE_ROOT_ID + 1;
}

static inode *find_number(al_fs *fs, ino_t number)
{
	inode *n;
	for (n = fs->by_number[number % BUCKETS]; n; n = n->next_number)
		if (n->number == number)
			return n;
	return NULL;
}

static void link_number(al_fs *fs, inode *n, ino_t number)
{
	while (number <= FUSE_ROOT_ID || find_number(fs, number))
		number++;
	n->number = number;
	n->next_number = fs->by_number[number % BUCKETS];
	fs->by_number[number % BUCKETS] = n;
}

static void unlink_number(al_fs *fs, inode *n)
{
	inode **p;
	for (p = &fs->by_number[n->number % BUCKETS]; *p; p = &(*p)->next_number)
		if (*p == n) {
			*p = n->next_number;
			return;
		}
}

/* st_ino of a node (0 when the kernel forgot it). */
static ino_t number_of(al_fs *fs, fuse_ino_t ino)
{
	inode *n;
	ino_t number;
	pthread_mutex_lock(&fs->lock);
	n = find_ino(fs, ino);
	number = n ? n->number : 0;
	pthread_mutex_unlock(&fs->lock);
	return number;
}

static inode *find_path_len(al_fs *fs, const char *path, size_t len)
{
	inode *n;
	char *key = strndup(path, len);
	if (!key)
		return NULL;
	for (n = fs->by_path[al__str_hash(key) % BUCKETS]; n; n = n->next_path)
		if (strcmp(n->path, key) == 0)
			break;
	free(key);
	return n;
}

/* d_ino of the entry name in the folder dir: the number of its node, or the one its lookup will
 * give (barring a rename's clash). */
static ino_t entry_number(al_fs *fs, const char *dir, const char *name)
{
	char *path = NULL;
	inode *n;
	ino_t number;
	if (asprintf(&path, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name) < 0)
		return FUSE_ROOT_ID + 1;   /* readdir(3) skips 0; the real one comes with lookup */
	pthread_mutex_lock(&fs->lock);
	n = find_path_len(fs, path, strlen(path));
	number = n ? n->number : path_number(path);
	pthread_mutex_unlock(&fs->lock);
	free(path);
	return number;
}

/* The entry of path's parent folder, if the table has it (the kernel looks folders up before
 * what is in them, so it has while a child is there). */
static inode *parent_of(al_fs *fs, const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash || strcmp(path, "/") == 0)
		return NULL;
	return find_path_len(fs, slash == path ? "/" : path, slash == path ? 1 : (size_t)(slash - path));
}

static void unlink_path(al_fs *fs, inode *n)
{
	inode **p, *parent;
	if (!n->path)
		return;
	for (p = &fs->by_path[al__str_hash(n->path) % BUCKETS]; *p; p = &(*p)->next_path)
		if (*p == n) {
			*p = n->next_path;
			break;
		}
	if ((parent = parent_of(fs, n->path)) && parent->children)
		parent->children--;
	free(n->path);
	n->path = NULL;
	n->gone_us = al_now_us();
}

static void link_path(al_fs *fs, inode *n, char *path)
{
	size_t b = al__str_hash(path) % BUCKETS;
	inode *parent = parent_of(fs, path);
	n->path = path;
	n->next_path = fs->by_path[b];
	fs->by_path[b] = n;
	if (parent)
		parent->children++;
}

/* The path of an inode, copied (the table may change once the lock is dropped). */
static char *ino_path(al_fs *fs, fuse_ino_t ino)
{
	inode *n;
	char *p = NULL;
	pthread_mutex_lock(&fs->lock);
	if ((n = find_ino(fs, ino)) && n->path)
		p = strdup(n->path);
	pthread_mutex_unlock(&fs->lock);
	return p;
}

static char *child_path(al_fs *fs, fuse_ino_t parent, const char *name)
{
	char *pp = ino_path(fs, parent), *p = NULL;
	if (!pp)
		return NULL;
	if (asprintf(&p, "%s/%s", strcmp(pp, "/") == 0 ? "" : pp, name) < 0)
		p = NULL;
	free(pp);
	return p;
}

/* Finds or makes the inode of path and counts one lookup. */
static fuse_ino_t remember(al_fs *fs, const char *path, int type)
{
	inode *n;
	size_t b = al__str_hash(path) % BUCKETS;
	fuse_ino_t ino = 0;

	pthread_mutex_lock(&fs->lock);
	for (n = fs->by_path[b]; n; n = n->next_path)
		if (strcmp(n->path, path) == 0)
			break;
	if (!n && (n = calloc(1, sizeof(*n)))) {
		char *copy = strdup(path);
		if (!copy) {
			free(n);
			n = NULL;
		} else {
			n->ino = fs->next_ino++;
			n->next_ino = fs->by_ino[n->ino % BUCKETS];
			fs->by_ino[n->ino % BUCKETS] = n;
			link_number(fs, n, path_number(path));
			link_path(fs, n, copy);
		}
	}
	if (n) {
		n->nlookup++;
		n->dir = type == AL_NODE_DIR;
		ino = n->ino;
	}
	pthread_mutex_unlock(&fs->lock);
	return ino;
}

/* Said once: at init, or at the first refused backing file. */
static void passthrough_off(al_fs *fs, const char *why)
{
	pthread_mutex_lock(&fs->lock);
	fs->passthrough = 0;
	snprintf(fs->read_path, sizeof(fs->read_path), "splice (FUSE passthrough unavailable: %s)", why);
	pthread_mutex_unlock(&fs->lock);
	fprintf(stderr, "aletheia: FUSE passthrough unavailable (%s): blobs are read through the "
		"daemon (spliced)\n", why);
}

static void status_lines(char *buf, size_t len, void *arg)
{
	al_fs *fs = arg;
	pthread_mutex_lock(&fs->lock);
	snprintf(buf, len, "read_path: %s\npassthrough_opens: %llu\nblob_reads: %llu\nlookups: %llu\n",
		fs->read_path[0] ? fs->read_path : "splice", fs->passthrough_opens,
		__atomic_load_n(&fs->blob_reads, __ATOMIC_RELAXED),
		__atomic_load_n(&fs->lookups, __ATOMIC_RELAXED));
	pthread_mutex_unlock(&fs->lock);
}

/* Records an open file of an inode (fi->fh) until its release, and picks its I/O mode: through
 * backing_fd (>= 0: the file's whole content, complete and local) the kernel reads it without
 * us, unless the inode is open otherwise. 0, or an errno: ENOMEM, or EBUSY when the inode is
 * open through another backing file (its blob was replaced since) and must not be opened
 * otherwise until those close (the kernel refuses mixed modes). */
static int track_open(al_fs *fs, fuse_req_t req, fuse_ino_t ino, al_file *f, int backing_fd,
	struct fuse_file_info *fi)
{
	open_ref *r = calloc(1, sizeof(*r));
	inode *n;
	int err = 0, refused = 0;
	struct stat st;
	if (!r)
		return ENOMEM;
	if (backing_fd >= 0 && fstat(backing_fd, &st) != 0)
		backing_fd = -1;
	pthread_mutex_lock(&fs->lock);
	if (!(n = find_ino(fs, ino)))
		goto done;   /* cannot happen: an open inode has a lookup count */
	if (!fs->passthrough || n->other_opens)
		backing_fd = -1;
	if (backing_fd >= 0 && n->pt_opens) {
		if (n->backing_dev != st.st_dev || n->backing_ino != st.st_ino)
			err = EBUSY;
		else
			fi->backing_id = n->backing_id;
	} else if (backing_fd >= 0) {
#if AL_HAVE_PASSTHROUGH
		int id = fuse_passthrough_open(req, backing_fd);
		if (id > 0) {
			n->backing_id = id;
			n->backing_dev = st.st_dev;
			n->backing_ino = st.st_ino;
			fi->backing_id = id;
		} else {
			refused = errno;
			backing_fd = -1;
		}
#else
		(void)req;
		backing_fd = -1;
#endif
	} else if (n->pt_opens)
		err = EBUSY;
	if (err)
		goto done;
	r->f = f;
	r->passthrough = backing_fd >= 0;
	if (r->passthrough) {
		n->pt_opens++;
		fs->passthrough_opens++;
		fi->keep_cache = 0;   /* no page cache of ours: the backing file's is used */
		fi->direct_io = 0;
	} else
		n->other_opens++;
	r->next = n->opens;
	n->opens = r;
	r = NULL;
done:
	pthread_mutex_unlock(&fs->lock);
	free(r);
	if (refused == EPERM)
		passthrough_off(fs, "the daemon lacks CAP_SYS_ADMIN");
	else if (refused)
		/* ELOOP: a backing file on a stacked filesystem (overlayfs); others are this file's */
		fprintf(stderr, "aletheia: FUSE passthrough refused a backing file (%s): this open is "
			"read through the daemon\n", strerror(refused));
	return err;
}

static void untrack_open(al_fs *fs, fuse_req_t req, fuse_ino_t ino, al_file *f)
{
	open_ref **p, *r = NULL;
	inode *n;
	pthread_mutex_lock(&fs->lock);
	if ((n = find_ino(fs, ino)))
		for (p = &n->opens; *p; p = &(*p)->next)
			if ((*p)->f == f) {
				r = *p;
				*p = r->next;
				if (!r->passthrough)
					n->other_opens--;
				else if (--n->pt_opens == 0) {
#if AL_HAVE_PASSTHROUGH
					fuse_passthrough_close(req, n->backing_id);
#endif
					n->backing_id = 0;
				}
				break;
			}
	pthread_mutex_unlock(&fs->lock);
	(void)req;
	free(r);
}

/* fstat() of a file deleted or replaced while open reaches us without its handle: one of the
 * inode's open files answers (README "artifacts": the descriptor stays usable). Under the lock,
 * so the handle is not released meanwhile; rare, so the lock is no bottleneck. */
static int getattr_unnamed(al_attr *out, al_fs *fs, fuse_ino_t ino)
{
	inode *n;
	int rc = AL_ENOTFOUND;
	pthread_mutex_lock(&fs->lock);
	/* (Not a file whose close was refused: its name went with that close, as its listing did.) */
	if ((n = find_ino(fs, ino)) && n->opens && !al_file_refused(n->opens->f)) {
		rc = al_file_getattr(out, n->opens->f);
	} else if (n && n->dir && !n->path) {
		/* a folder deleted while a shell is in it (README "Files behave like files") */
		memset(out, 0, sizeof(*out));
		out->type = AL_NODE_DIR;
		out->mode = 0755;
		out->mtime_us = n->gone_us;
		rc = 0;
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* While a generated file is open its path's size is its newest open's content (README "Files
 * behave like files"): the kernel keeps one size per inode and asks without the handle for
 * fstat(), so a newer render's size shown to `ls -l` would pad or cut what an open descriptor
 * maps. A change shows at the next open (whose size is then answered) or once all are closed.
 * Only the size is taken, under the lock; the path's attributes were made before, unlocked. */
static void hold_open_size(al_attr *a, al_fs *fs, fuse_ino_t ino)
{
	inode *n;
	open_ref *r;
	uint64_t size;
	if (a->type == AL_NODE_DIR)
		return;
	pthread_mutex_lock(&fs->lock);
	if ((n = find_ino(fs, ino)))
		for (r = n->opens; r; r = r->next)   /* newest first */
			if (al_file_held_size(&size, r->f)) {
				a->size = size;
				break;
			}
	pthread_mutex_unlock(&fs->lock);
}

static void forget_one(al_fs *fs, fuse_ino_t ino, uint64_t count)
{
	inode *n, **p;
	if (ino == FUSE_ROOT_ID)
		return;
	pthread_mutex_lock(&fs->lock);
	n = find_ino(fs, ino);
	if (n) {
		if (count > n->nlookup) {
			fprintf(stderr, "aletheia: lookup count underflow on inode %lu\n", (unsigned long)ino);
			abort();
		}
		n->nlookup -= count;
		if (n->nlookup == 0) {
			unlink_path(fs, n);
			unlink_number(fs, n);
			for (p = &fs->by_ino[ino % BUCKETS]; *p; p = &(*p)->next_ino)
				if (*p == n) {
					*p = n->next_ino;
					break;
				}
			free(n);
		}
	}
	pthread_mutex_unlock(&fs->lock);
}

static int cmp_path_len(const void *a, const void *b)
{
	size_t x = strlen((*(inode *const *)a)->path), y = strlen((*(inode *const *)b)->path);
	return x < y ? -1 : x > y;
}

/* Lock held: the nodes whose path is top or under it, shortest path first (*count of them);
 * NULL when out of memory. Walks the whole table. */
static inode **collect_under(al_fs *fs, const char *top, size_t len, size_t *count)
{
	size_t i, cap = 0, nc = 0;
	inode *n, **out;
	for (i = 0; i < BUCKETS; i++)
		for (n = fs->by_path[i]; n; n = n->next_path)
			cap++;
	if (!(out = calloc(cap + 1, sizeof(*out))))
		return NULL;
	for (i = 0; i < BUCKETS; i++)
		for (n = fs->by_path[i]; n; n = n->next_path)
			if (strncmp(n->path, top, len) == 0 && (n->path[len] == '\0' || n->path[len] == '/'))
				out[nc++] = n;
	qsort(out, nc, sizeof(*out), cmp_path_len);
	*count = nc;
	return out;
}

/* Lock held: path (and everything under it) is gone from the tree (unlink, rmdir, a rename's
 * replaced target). Its nodes live on without a name while the kernel holds them (their open
 * files answer for them: getattr_unnamed), and a new file of the name gets a node, a node id and
 * a number of its own, as on a local disk: given the old node, the kernel would hand a descriptor
 * still open on the deleted file the new file's bytes, or refuse the new open (EBUSY) while the
 * old is read through a backing file. Deepest first, so every folder's count of entries stays
 * right; only a folder with entries below it in the table makes the whole table be walked. */
static void drop_paths(al_fs *fs, const char *path)
{
	size_t nv = 0, len = strlen(path);
	inode *n = find_path_len(fs, path, len), **victims;

	if (!n || !n->children) {
		if (n)
			unlink_path(fs, n);
		return;
	}
	if (!(victims = collect_under(fs, path, len, &nv)))
		return;
	while (nv)
		unlink_path(fs, victims[--nv]);
	free(victims);
}

/* Moves the path of from (and of everything under it) to to. A file or an empty folder (what
 * rsync and editors rename, file after file) moves alone; only a folder with entries below it
 * in the table makes the whole table be walked. */
static void rename_paths(al_fs *fs, const char *from, const char *to)
{
	size_t i, flen = strlen(from);
	inode *src;

	pthread_mutex_lock(&fs->lock);
	drop_paths(fs, to);   /* the replaced target is gone from the tree */
	src = find_path_len(fs, from, flen);
	if (!src || !src->children) {
		char *np = src ? strdup(to) : NULL;
		if (src && np) {
			unlink_path(fs, src);
			link_path(fs, src, np);
		}
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	{
		/* Whole subtrees: collected first, then unlinked and linked again, parents before their
		 * children, so every folder's count of entries stays right. */
		size_t nm = 0;
		inode **movers = collect_under(fs, from, flen, &nm);
		for (i = 0; i < nm; i++) {
			char *np = NULL;
			if (asprintf(&np, "%s%s", to, movers[i]->path + flen) < 0)
				np = NULL;
			unlink_path(fs, movers[i]);
			movers[i]->path = np;   /* linked below, parents first, counting again */
			movers[i]->children = 0;
		}
		for (i = 0; i < nm; i++)
			if (movers[i]->path) {
				char *np = movers[i]->path;
				movers[i]->path = NULL;
				link_path(fs, movers[i], np);
			}
		free(movers);
	}
	pthread_mutex_unlock(&fs->lock);
}

static al_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void reply_error(fuse_req_t req, int code, const char *op, const char *path)
{
	int e = al_fs_errno(code);
	if (e != ENOENT)
		fprintf(stderr, "aletheia: %s %s: %s\n", op, path ? path : "?", al_error_last());
	fuse_reply_err(req, e);
}

/* An error on an open file: the log names the file by its inode's path (a deleted one by none). */
static void reply_file_error(fuse_req_t req, fuse_ino_t ino, int code, const char *op)
{
	char *path = ino_path(fs_of(req), ino);
	reply_error(req, code, op, path ? path : "(deleted)");
	free(path);
}

static void to_stat(struct stat *st, al_fs *fs, fuse_ino_t ino, const al_attr *a)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = number_of(fs, ino);
	st->st_mode = a->mode | (a->type == AL_NODE_DIR ? S_IFDIR : a->type == AL_NODE_LINK ? S_IFLNK : S_IFREG);
	st->st_nlink = a->type == AL_NODE_DIR ? 2 : 1;
	st->st_uid = a->owned ? a->uid : fs->uid;   /* a shared mount: the creator's (tree.h) */
	st->st_gid = a->owned ? a->gid : fs->gid;
	st->st_size = (off_t)a->size;
	st->st_blksize = 1 << 17;
	st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
	st->st_mtim.tv_sec = a->mtime_us / 1000000;
	st->st_mtim.tv_nsec = (a->mtime_us % 1000000) * 1000;
	st->st_ctim = st->st_mtim;
	st->st_atim = st->st_mtim;
}

/* Immutable content may be cached long; generated files must be asked for every time, so
 * their sizes are always exact. */
static double attr_timeout(const al_attr *a)
{
	if (a->immutable)
		return 3600.0;
	return a->type == AL_NODE_DIR ? 1.0 : 0.0;
}

/* A name that changes only through this mount (the kernel updates its entry at our unlink and
 * rename) is kept as long as its attributes: a second epoch over a dataset's files costs no
 * LOOKUP each. Others for a second (another mount's or the daemon's own changes). */
static double entry_timeout(const al_attr *a)
{
	return a->stable_name && a->immutable ? attr_timeout(a) : 1.0;
}

static void reply_entry(fuse_req_t req, const char *path, const al_attr *a)
{
	al_fs *fs = fs_of(req);
	struct fuse_entry_param e;
	al_attr held;
	memset(&e, 0, sizeof(e));
	e.ino = remember(fs, path, a->type);
	if (!e.ino) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	held = *a;
	hold_open_size(&held, fs, e.ino);
	to_stat(&e.attr, fs, e.ino, &held);
	e.attr_timeout = attr_timeout(a);
	e.entry_timeout = entry_timeout(a);
	if (fuse_reply_entry(req, &e) != 0)
		forget_one(fs, e.ino, 1);
}

static void caller_of(al_caller *c, fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	c->pid = ctx->pid;
	c->uid = ctx->uid;
	c->gid = ctx->gid;
}

static void op_lookup_body(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	al_fs *fs = fs_of(req);
	char *path = child_path(fs, parent, name);
	al_attr a;
	int rc;
	__atomic_add_fetch(&fs->lookups, 1, __ATOMIC_RELAXED);
	if (!path) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if ((rc = al_tree_getattr(&a, fs->tree, path)))
		reply_error(req, rc, "lookup", path);
	else
		reply_entry(req, path, &a);
	free(path);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(fs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	size_t i;
	for (i = 0; i < count; i++)
		forget_one(fs_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr_body(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	al_fs *fs = fs_of(req);
	char *path = ino_path(fs, ino);
	al_attr a;
	struct stat st;
	int rc, unnamed = 0;
	/* With a handle (the kernel before a read) the handle's own view of its size. */
	if (fi && fi->fh)
		rc = al_file_getattr(&a, (al_file *)(uintptr_t)fi->fh);
	else if (!path || (rc = al_tree_getattr(&a, fs->tree, path)) == AL_ENOTFOUND)
		unnamed = (rc = getattr_unnamed(&a, fs, ino)) == 0;
	else if (rc == 0)
		hold_open_size(&a, fs, ino);
	if (rc)
		reply_error(req, rc, "getattr", path);
	else {
		to_stat(&st, fs, ino, &a);
		if (unnamed)
			st.st_nlink = 0;   /* deleted, as ext4 tells a shell still in the folder */
		fuse_reply_attr(req, &st, attr_timeout(&a));
	}
	free(path);
}

static void op_setattr_body(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
	struct fuse_file_info *fi)
{
	al_fs *fs = fs_of(req);
	char *path = ino_path(fs, ino);
	int rc = 0;
	/* A file deleted while open has no path (drop_paths): its descriptor still truncates it
	 * (Python's TemporaryFile), and its times, recorded nowhere, are set quietly. */
	if (!path && !(fi && fi->fh)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (to_set & FUSE_SET_ATTR_SIZE)
		rc = fi && fi->fh ? al_file_truncate((al_file *)(uintptr_t)fi->fh, (uint64_t)attr->st_size)
			: al_tree_truncate(fs->tree, path, (uint64_t)attr->st_size);
	if (rc == 0 && path && (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))) {
		int64_t us = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? al_now_us()
			: (int64_t)attr->st_mtim.tv_sec * 1000000 + attr->st_mtim.tv_nsec / 1000;
		rc = al_tree_utimens(fs->tree, path, us);
	}
	/* Owners and modes are the tree's own (chown, cp -p, rsync -a succeed quietly) but for an
	 * artifact's executable bit. */
	if (rc == 0 && path && (to_set & FUSE_SET_ATTR_MODE))
		rc = al_tree_chmod(fs->tree, path, (unsigned)(attr->st_mode & 07777));
	if (rc)
		reply_error(req, rc, "setattr", path);
	else
		op_getattr_body(req, ino, fi);
	free(path);
}

static void op_readlink_body(fuse_req_t req, fuse_ino_t ino)
{
	al_fs *fs = fs_of(req);
	char *path = ino_path(fs, ino), *target = NULL;
	int rc = path ? al_tree_readlink(&target, fs->tree, path) : AL_ENOTFOUND;
	if (rc)
		reply_error(req, rc, "readlink", path);
	else
		fuse_reply_readlink(req, target);
	free(target);
	free(path);
}

static void op_mkdir_body(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	al_fs *fs = fs_of(req);
	char *path = child_path(fs, parent, name);
	al_caller c;
	al_attr a;
	int rc;
	(void)mode;
	caller_of(&c, req);
	if (!path)
		rc = AL_ENOTFOUND;
	else if ((rc = al_tree_mkdir(fs->tree, path, &c)) == 0)
		rc = al_tree_getattr(&a, fs->tree, path);
	if (rc)
		reply_error(req, rc, "mkdir", path);
	else
		reply_entry(req, path, &a);
	free(path);
}

static void op_symlink_body(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	al_fs *fs = fs_of(req);
	char *path = child_path(fs, parent, name);
	al_caller c;
	al_attr a;
	int rc;
	caller_of(&c, req);
	rc = path ? al_tree_symlink(fs->tree, target, path, &c) : AL_ENOTFOUND;
	if (rc == 0)
		rc = al_tree_getattr(&a, fs->tree, path);
	if (rc)
		reply_error(req, rc, "symlink", path);
	else
		reply_entry(req, path, &a);
	free(path);
}

/* unlink and rmdir: the same request shape, different tree calls. */
static void remove_entry(fuse_req_t req, fuse_ino_t parent, const char *name,
	int (*remove)(al_tree *, const char *), const char *op)
{
	al_fs *fs = fs_of(req);
	char *path = child_path(fs, parent, name);
	int rc = path ? remove(fs->tree, path) : AL_ENOTFOUND;
	if (rc)
		reply_error(req, rc, op, path);
	else {
		pthread_mutex_lock(&fs->lock);
		drop_paths(fs, path);
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, 0);
	}
	free(path);
}

static void op_unlink_body(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, al_tree_unlink, "unlink");
}

static void op_rmdir_body(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, al_tree_rmdir, "rmdir");
}

static void op_rename_body(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	const char *newname, unsigned int flags)
{
	al_fs *fs = fs_of(req);
	char *from = child_path(fs, parent, name), *to = child_path(fs, newparent, newname);
	int rc;
	if (flags & ~1u)
		rc = al_error_set(AL_EINVAL, "rename flags not supported");   /* RENAME_EXCHANGE etc. */
	else
		rc = from && to ? al_tree_rename(fs->tree, from, to, flags) : AL_ENOTFOUND;
	if (rc)
		reply_error(req, rc, "rename", from);
	else {
		rename_paths(fs, from, to);
		fuse_reply_err(req, 0);
	}
	free(from);
	free(to);
}

static int open_flags(int flags)
{
	int f = 0;
	if ((flags & O_ACCMODE) != O_RDONLY)
		f |= AL_OPEN_WRITE;
	if (flags & O_TRUNC)
		f |= AL_OPEN_TRUNC;
	if (flags & O_APPEND)
		f |= AL_OPEN_APPEND;
	if (flags & O_EXCL)
		f |= AL_OPEN_EXCL;
	return f;
}

static void set_file_info(struct fuse_file_info *fi, al_file *f)
{
	fi->fh = (uint64_t)(uintptr_t)f;
	fi->keep_cache = al_file_keep_cache(f);
	fi->direct_io = al_file_direct_io(f);
	fi->noflush = al_file_no_flush(f);
}

static void op_open_body(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	al_fs *fs = fs_of(req);
	char *path = ino_path(fs, ino);
	al_file *f = NULL;
	al_caller c;
	int rc, flags;
	/* The kernel opens without create only names it found; one whose creating write failed
	 * may be gone since (its entry outlives it for a second): writing makes it again. */
	flags = open_flags(fi->flags);
	if (flags & AL_OPEN_WRITE)
		flags |= AL_OPEN_CREATE;
	caller_of(&c, req);
	rc = path ? al_file_open_as(&f, fs->tree, path, flags, &c) : AL_ENOTFOUND;
	if (rc)
		reply_error(req, rc, "open", path);
	else {
		int bfd = -1, err;
		set_file_info(fi, f);
		if (!(flags & AL_OPEN_WRITE) && al_file_backing_fd(&bfd, f) != 0)
			bfd = -1;
		if ((err = track_open(fs, req, ino, f, bfd, fi))) {
			if (err == EBUSY)
				fprintf(stderr, "aletheia: open %s: EBUSY: still open for reading through the "
					"blob it had before it was replaced\n", path);
			al_file_release(f);
			fuse_reply_err(req, err);
		} else if (fuse_reply_open(req, fi) != 0) {
			untrack_open(fs, req, ino, f);
			al_file_release(f);
		}
	}
	free(path);
}

static void op_create_body(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	struct fuse_file_info *fi)
{
	al_fs *fs = fs_of(req);
	char *path = child_path(fs, parent, name);
	al_file *f = NULL;
	al_caller c;
	al_attr a;
	struct fuse_entry_param e;
	int rc, exec = (mode & ~fuse_req_ctx(req)->umask & 0111) != 0;
	caller_of(&c, req);
	rc = path ? al_file_open_as(&f, fs->tree, path, open_flags(fi->flags) | AL_OPEN_CREATE |
		AL_OPEN_WRITE | (exec ? AL_OPEN_EXEC : 0), &c) : AL_ENOTFOUND;
	if (rc == 0 && (rc = al_tree_getattr(&a, fs->tree, path)))
		al_file_release(f);
	if (rc) {
		reply_error(req, rc, "create", path);
		free(path);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = remember(fs, path, AL_NODE_FILE);
	if (!e.ino) {
		al_file_release(f);
		fuse_reply_err(req, ENOMEM);
		free(path);
		return;
	}
	to_stat(&e.attr, fs, e.ino, &a);
	e.attr_timeout = 0.0;
	e.entry_timeout = 1.0;
	set_file_info(fi, f);
	if ((rc = track_open(fs, req, e.ino, f, -1, fi))) {
		forget_one(fs, e.ino, 1);
		al_file_release(f);
		fuse_reply_err(req, rc);
		free(path);
		return;
	}
	if (fuse_reply_create(req, &e, fi) != 0) {
		untrack_open(fs, req, e.ino, f);
		forget_one(fs, e.ino, 1);
		al_file_release(f);
	}
	free(path);
}

static void op_read_body(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	al_file *f = (al_file *)(uintptr_t)fi->fh;
	int fd, owned, rc;
	/* A blob still streaming into the cache first gets the range (and read-ahead) fetched. */
	if ((rc = al_file_fd_get(&fd, &owned, f, (uint64_t)off, size))) {
		reply_file_error(req, ino, rc, "read");
		return;
	}
	if (fd >= 0) {
		/* Hand the kernel the file itself: libfuse splices it without a copy through us. */
		__atomic_add_fetch(&fs_of(req)->blob_reads, 1, __ATOMIC_RELAXED);
		struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
		buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		buf.buf[0].fd = fd;
		buf.buf[0].pos = off;
		fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
		/* f may be released already: the reply let the reader close the file */
		if (owned)
			close(fd);
		return;
	}
	{
		char *data = malloc(size ? size : 1);
		size_t n = 0;
		if (!data) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		if ((rc = al_file_read(&n, f, data, size, (uint64_t)off)))
			reply_file_error(req, ino, rc, "read");
		else
			fuse_reply_buf(req, data, n);
		free(data);
	}
}

static void op_write_body(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	struct fuse_file_info *fi)
{
	int rc = al_file_write((al_file *)(uintptr_t)fi->fh, buf, size, (uint64_t)off);
	if (rc)
		reply_file_error(req, ino, rc, "write");
	else
		fuse_reply_write(req, size);
}

static void op_flush_body(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int rc = al_file_flush((al_file *)(uintptr_t)fi->fh);
	if (rc)
		reply_file_error(req, ino, rc, "close");
	else
		fuse_reply_err(req, 0);
}

static void op_fsync_body(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	int rc = al_file_fsync((al_file *)(uintptr_t)fi->fh);
	(void)datasync;
	if (rc)
		reply_file_error(req, ino, rc, "fsync");
	else
		fuse_reply_err(req, 0);
}

static void op_release_body(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	untrack_open(fs_of(req), req, ino, (al_file *)(uintptr_t)fi->fh);
	al_file_release((al_file *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* A folder's listing is taken once, at opendir, and served from there: each name with its type
 * when the tree knows it (d_type, so find and ls need no stat to tell folders), and its
 * attributes when the listing read them anyway (readdirplus: `ls -l runs/` of 10,000 runs
 * needs no lookup per run). */
typedef struct dirent_info {
	char *name;
	int type;               /* AL_NODE_*, or -1 */
	int has_attr;
	al_attr attr;
} dirent_info;

typedef struct dirlist {
	char *path;
	dirent_info *e;
	size_t count, cap;
} dirlist;

static int collect(void *ctx, const char *name, int type, const al_attr *a)
{
	dirlist *d = ctx;
	dirent_info *e;
	if (d->count == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 32;
		dirent_info *p = realloc(d->e, cap * sizeof(*p));
		if (!p)
			return 1;
		d->e = p;
		d->cap = cap;
	}
	e = &d->e[d->count];
	memset(e, 0, sizeof(*e));
	if (!(e->name = strdup(name)))
		return 1;
	e->type = type;
	if (a) {
		e->has_attr = 1;
		e->attr = *a;
	}
	d->count++;
	return 0;
}

static void dirlist_free(dirlist *d)
{
	size_t i;
	if (!d)
		return;
	for (i = 0; i < d->count; i++)
		free(d->e[i].name);
	free(d->e);
	free(d->path);
	free(d);
}

/* 1 when the kernel still holds folder ino but its name is gone (deleted, or replaced). */
static int ino_nameless(al_fs *fs, fuse_ino_t ino)
{
	inode *n;
	int r;
	pthread_mutex_lock(&fs->lock);
	r = (n = find_ino(fs, ino)) != NULL && !n->path && n->dir;
	pthread_mutex_unlock(&fs->lock);
	return r;
}

static void op_opendir_body(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	al_fs *fs = fs_of(req);
	char *path = ino_path(fs, ino);
	dirlist *d = calloc(1, sizeof(*d));
	int rc = !d ? AL_ENOMEM : path ? al_tree_readdir(fs->tree, path, collect, d) : AL_ENOTFOUND;
	/* A folder deleted while a shell is in it lists empty, as on a local disk (an empty
	 * listing never uses its path). */
	if (rc == AL_ENOTFOUND && !path && ino_nameless(fs, ino) && (path = strdup("/")) != NULL)
		rc = 0;
	if (rc) {
		dirlist_free(d);
		reply_error(req, rc, "opendir", path);
	} else {
		d->path = path;   /* readdirplus names its entries' inodes by path */
		path = NULL;
		fi->fh = (uint64_t)(uintptr_t)d;
		fi->cache_readdir = 0;
		if (fuse_reply_open(req, fi) != 0)
			dirlist_free(d);
	}
	free(path);
}

static mode_t type_mode(int type)
{
	return type == AL_NODE_DIR ? S_IFDIR : type == AL_NODE_FILE ? S_IFREG : type == AL_NODE_LINK ? S_IFLNK : 0;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	dirlist *d = (dirlist *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	size_t used = 0, i;
	struct stat st;
	(void)ino;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memset(&st, 0, sizeof(st));
	for (i = (size_t)off; i < d->count; i++) {
		size_t n;
		st.st_ino = entry_number(fs_of(req), d->path, d->e[i].name);
		st.st_mode = type_mode(d->e[i].type);   /* d_type; DT_UNKNOWN for 0 */
		n = fuse_add_direntry(req, buf + used, size - used, d->e[i].name, &st, (off_t)(i + 1));
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

/* Entries whose attributes the listing has come with them and an inode (counted as a lookup,
 * with a lookup's timeouts: reply_entry); the others as readdir gives them, node id 0, which the
 * kernel takes as "no attributes" and looks them up when asked. */
static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	struct fuse_file_info *fi)
{
	al_fs *fs = fs_of(req);
	dirlist *d = (dirlist *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	fuse_ino_t *given = calloc(d->count ? d->count : 1, sizeof(*given));
	size_t used = 0, i, ngiven = 0;
	(void)ino;
	if (!buf || !given) {
		free(buf);
		free(given);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (i = (size_t)off; i < d->count; i++) {
		dirent_info *de = &d->e[i];
		struct fuse_entry_param e;
		size_t n;
		memset(&e, 0, sizeof(e));
		e.attr.st_ino = entry_number(fs, d->path, de->name);
		e.attr.st_mode = type_mode(de->type);
		/* whether it fits, before its inode is counted */
		if (fuse_add_direntry_plus(req, NULL, 0, de->name, &e, 0) > size - used)
			break;
		if (de->has_attr && strcmp(de->name, ".") != 0 && strcmp(de->name, "..") != 0) {
			char *path = NULL;
			if (asprintf(&path, "%s/%s", strcmp(d->path, "/") == 0 ? "" : d->path, de->name) >= 0 &&
			    (e.ino = remember(fs, path, de->attr.type))) {
				al_attr held = de->attr;
				given[ngiven++] = e.ino;
				hold_open_size(&held, fs, e.ino);
				to_stat(&e.attr, fs, e.ino, &held);
				e.attr_timeout = attr_timeout(&de->attr);
				e.entry_timeout = entry_timeout(&de->attr);
			}
			free(path);
		}
		n = fuse_add_direntry_plus(req, buf + used, size - used, de->name, &e, (off_t)(i + 1));
		used += n;
	}
	if (fuse_reply_buf(req, buf, used) != 0)
		for (i = 0; i < ngiven; i++)
			forget_one(fs, given[i], 1);
	free(given);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	dirlist_free((dirlist *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	(void)ino;
	if (statvfs("/", &sv) != 0)
		memset(&sv, 0, sizeof(sv));
	sv.f_namemax = 1500;
	fuse_reply_statfs(req, &sv);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	al_fs *fs = userdata;
#if AL_HAVE_PASSTHROUGH
	/* Complete local blobs are read by the kernel from their backing file (README "Reading
	 * files at the kernel's speed"); the backing files may not be on a stacked filesystem (overlayfs): their
	 * opens fail and those reads go through us. Passthrough rules out writeback caching, which
	 * we never want anyway (below). */
	if (fs->no_passthrough)
		passthrough_off(fs, "--no-passthrough");
	else if (conn->capable & FUSE_CAP_PASSTHROUGH) {
		conn->want |= FUSE_CAP_PASSTHROUGH;
		pthread_mutex_lock(&fs->lock);
		fs->passthrough = 1;
		snprintf(fs->read_path, sizeof(fs->read_path), "passthrough (complete local blobs are "
			"read by the kernel; libfuse %s)", fuse_pkgversion());
		pthread_mutex_unlock(&fs->lock);
	} else
		passthrough_off(fs, "the kernel does not offer it (FUSE_PASSTHROUGH, Linux 6.9+)");
#else
	char text[100];
	snprintf(text, sizeof(text), "libfuse %s, passthrough needs 3.16", fuse_pkgversion());
	passthrough_off(fs, text);
#endif
	/* Reads are spliced from local files; O_TRUNC comes with open, not as a separate setattr. */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* The kernel must not merge or reorder metric writes, nor hide sizes we compute. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
		conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
	/* Generated files are read with direct I/O (core/tree/text.c): mmap of them, too (Linux 6.6+) */
	if (conn->capable & FUSE_CAP_DIRECT_IO_ALLOW_MMAP)
		conn->want |= FUSE_CAP_DIRECT_IO_ALLOW_MMAP;
#endif
	conn->max_write = AL_MAX_WRITE;
}

/* One FUSE request is one file operation (core/util.h al__op_begin): the read cache answers it
 * with what it already asked the metastore for during it, so no request of one operation asks
 * for the same document twice however slowly the metastore answers (README "Firestore"). */
static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int64_t outer = al__op_begin();
	op_lookup_body(req, parent, name);
	al__op_end(outer);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int64_t outer = al__op_begin();
	op_getattr_body(req, ino, fi);
	al__op_end(outer);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
	struct fuse_file_info *fi)
{
	int64_t outer = al__op_begin();
	op_setattr_body(req, ino, attr, to_set, fi);
	al__op_end(outer);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	int64_t outer = al__op_begin();
	op_readlink_body(req, ino);
	al__op_end(outer);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	int64_t outer = al__op_begin();
	op_mkdir_body(req, parent, name, mode);
	al__op_end(outer);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	int64_t outer = al__op_begin();
	op_symlink_body(req, target, parent, name);
	al__op_end(outer);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int64_t outer = al__op_begin();
	op_unlink_body(req, parent, name);
	al__op_end(outer);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int64_t outer = al__op_begin();
	op_rmdir_body(req, parent, name);
	al__op_end(outer);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	const char *newname, unsigned int flags)
{
	int64_t outer = al__op_begin();
	op_rename_body(req, parent, name, newparent, newname, flags);
	al__op_end(outer);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int64_t outer = al__op_begin();
	op_open_body(req, ino, fi);
	al__op_end(outer);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	struct fuse_file_info *fi)
{
	int64_t outer = al__op_begin();
	op_create_body(req, parent, name, mode, fi);
	al__op_end(outer);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	int64_t outer = al__op_begin();
	op_read_body(req, ino, size, off, fi);
	al__op_end(outer);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	struct fuse_file_info *fi)
{
	int64_t outer = al__op_begin();
	op_write_body(req, ino, buf, size, off, fi);
	al__op_end(outer);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int64_t outer = al__op_begin();
	op_flush_body(req, ino, fi);
	al__op_end(outer);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	int64_t outer = al__op_begin();
	op_fsync_body(req, ino, datasync, fi);
	al__op_end(outer);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int64_t outer = al__op_begin();
	op_release_body(req, ino, fi);
	al__op_end(outer);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int64_t outer = al__op_begin();
	op_opendir_body(req, ino, fi);
	al__op_end(outer);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mkdir = op_mkdir,
	.symlink = op_symlink,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.fsync = op_fsync,
	.release = op_release,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
};

const struct fuse_lowlevel_ops *al_fs_ops(void)
{
	return &ops;
}

int al_fs_new(al_fs **out, al_tree *tree, int no_passthrough)
{
	al_fs *fs = calloc(1, sizeof(*fs));
	inode *root;
	if (!fs || !(root = calloc(1, sizeof(*root)))) {
		free(fs);
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	pthread_mutex_init(&fs->lock, NULL);
	fs->tree = tree;
	fs->no_passthrough = no_passthrough;
	fs->uid = getuid();
	fs->gid = getgid();
	fs->next_ino = FUSE_ROOT_ID + 1;
	root->ino = FUSE_ROOT_ID;
	root->number = FUSE_ROOT_ID;
	root->nlookup = 1;
	fs->by_ino[FUSE_ROOT_ID % BUCKETS] = root;
	fs->by_number[FUSE_ROOT_ID % BUCKETS] = root;
	link_path(fs, root, strdup("/"));
	al_tree_set_status_fn(tree, status_lines, fs);
	*out = fs;
	return 0;
}

void al_fs_free(al_fs *fs)
{
	size_t i;
	inode *n, *next;
	if (!fs)
		return;
	al_tree_set_status_fn(fs->tree, NULL, NULL);
	for (i = 0; i < BUCKETS; i++)
		for (n = fs->by_ino[i]; n; n = next) {
			next = n->next_ino;
			free(n->path);
			free(n);
		}
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}
