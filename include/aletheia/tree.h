/* aletheia: the tree under the mount (README "The tree") as path operations over a stack of
 * backends (stack.h). The FUSE layer maps its calls onto these and knows no backend. */
#ifndef ALETHEIA_TREE_H
#define ALETHEIA_TREE_H

#include <stdint.h>
#include <sys/types.h>
#include "common.h"

typedef struct al_tree al_tree;
typedef struct al_file al_file;

typedef struct al_stack al_stack;

#define AL_TREE_OPTIONS_VERSION 3
typedef struct al_tree_options {
	unsigned version;
	al_stack *stack;          /* the backends (al_stack_open); outlives the tree */
	const char *mountpoint;   /* absolute; for symlink targets and status */
	int allow_delete;
	uid_t uid;
	gid_t gid;
	/* Shared with every user (-o allow_other; README "Many users on one machine"): owners are
	 * the creators recorded in the documents, and the folders where anyone creates are open. */
	int multi_user;
} al_tree_options;
#define AL_TREE_OPTIONS_INIT {AL_TREE_OPTIONS_VERSION, NULL, NULL, 0, 0, 0, 0}

/* Who is calling: used to capture the git state and command of a new run. */
typedef struct al_caller {
	pid_t pid;
	uid_t uid;
	gid_t gid;
} al_caller;

typedef enum { AL_NODE_FILE = 0, AL_NODE_DIR, AL_NODE_LINK } al_node_type;

typedef struct al_attr {
	al_node_type type;
	unsigned mode;            /* permission bits only */
	uint64_t size;
	int64_t mtime_us;
	int64_t ctime_us;
	int immutable;            /* content never changes: the kernel may cache it */
	int stable_name;          /* the name means this file until this mount changes it (a dataset's
	                           * write-once file on a store no one else writes): the kernel may
	                           * keep the entry as long as the attributes */
	int owned;                /* uid, gid are the owner's (multi_user); else the mounting user's */
	uid_t uid;
	gid_t gid;
} al_attr;

/* One entry of a listing. type: its AL_NODE_* when the tree knows it from the path alone (a run's
 * run.json is a file, its params/ a folder), else -1 (a name in artifacts/ may be either). attr:
 * its attributes when the listing read them anyway (a run folder's are its document's time), the
 * same al_tree_getattr answers for the path, else NULL. Nonzero stops the listing. */
typedef int (*al_tree_fill_fn)(void *ctx, const char *name, int type, const al_attr *attr);

int al_tree_open(al_tree **out, const al_tree_options *opts);
/* Settles what is pending in the tree (dataset versions); the stack delivers the rest when it
 * is freed, after the tree. */
void al_tree_free(al_tree *t);

int al_tree_getattr(al_attr *out, al_tree *t, const char *path);
int al_tree_readdir(al_tree *t, const char *path, al_tree_fill_fn fill, void *ctx);
int al_tree_mkdir(al_tree *t, const char *path, const al_caller *caller);
int al_tree_unlink(al_tree *t, const char *path);
int al_tree_rmdir(al_tree *t, const char *path);
int al_tree_rename(al_tree *t, const char *from, const char *to, unsigned flags);
int al_tree_symlink(al_tree *t, const char *target, const char *path, const al_caller *caller);
int al_tree_readlink(char **out, al_tree *t, const char *path);
int al_tree_truncate(al_tree *t, const char *path, uint64_t size);
int al_tree_utimens(al_tree *t, const char *path, int64_t mtime_us);
/* Only an artifact's executable bit is kept; other modes change nothing (and succeed). */
int al_tree_chmod(al_tree *t, const char *path, unsigned mode);
/* Text of .aletheia/status. */
int al_tree_status(char **out, al_tree *t);
uint64_t al_tree_pending(al_tree *t);
/* Lines the FUSE layer adds to .aletheia/status (how it reads blobs, its counters): fn writes
 * "key: value\n" lines, at most len bytes with the NUL, into buf. NULL removes it. */
typedef void (*al_tree_status_fn)(char *buf, size_t len, void *arg);
void al_tree_set_status_fn(al_tree *t, al_tree_status_fn fn, void *arg);

/* The largest write the FUSE layer asks the kernel for; larger write()s arrive in pieces. */
#define AL_MAX_WRITE (1u << 20)

#define AL_OPEN_WRITE  1   /* opened for writing */
#define AL_OPEN_TRUNC  2
#define AL_OPEN_CREATE 4
#define AL_OPEN_EXCL   8
#define AL_OPEN_APPEND 16
#define AL_OPEN_EXEC   32  /* with AL_OPEN_CREATE: the new file's mode has an x bit (an artifact
                             * keeps it: git's checkout, cp of a script, open(O_CREAT, 0755)) */

int al_file_open(al_file **out, al_tree *t, const char *path, int flags);
/* al_file_open by caller (NULL: none known): a file it creates in a dataset is recorded as its
 * own, the owner a shared mount shows (README "Many users on one machine"). */
int al_file_open_as(al_file **out, al_tree *t, const char *path, int flags, const al_caller *caller);
int al_file_read(size_t *nread, al_file *f, char *buf, size_t size, uint64_t offset);
/* Attributes as seen through an open handle (fstat, and the kernel before it reads): for content
 * rendered at open, or growing while open (a metric), the size the handle serves. */
int al_file_getattr(al_attr *out, al_file *f);
/* 1 when a close of f failed to record it (a refused value): its name is gone, though the kernel
 * releases the open a moment later, or when the last descriptor of it closes. */
int al_file_refused(const al_file *f);
/* 1 with *size when f is a read-only open of a generated or value file (run.json, runs.csv,
 * plots, a param): the size of the content rendered at its open, which it shows until closed
 * (README "Files behave like files"); else 0. */
int al_file_held_size(uint64_t *size, al_file *f);
/* For content held in a local file (blobs, staged writes): blocks until bytes [offset,
 * offset+len) can be read (a blob streamed into the cache is fetched as needed; AL_EIO,
 * AL_ENOSPC), then gives in *fd a descriptor to read them from directly. With *owned, *fd is the
 * caller's own (a staged copy the handle may move meanwhile: a close() or fsync() of another
 * descriptor sharing it commits it) and the caller closes it; it needs no handle, so it may be
 * closed after a reply that lets the kernel release the handle. *fd is -1 for other content:
 * use al_file_read. */
int al_file_fd_get(int *fd, int *owned, al_file *f, uint64_t offset, size_t len);
/* *fd >= 0 when the file's whole content is a complete, verified local file that stays the
 * same for the handle's life (a file:// blob, a complete cache entry): the kernel may read it
 * without us (FUSE passthrough). The descriptor is the handle's; -1 for anything else. */
int al_file_backing_fd(int *fd, al_file *f);
int al_file_write(al_file *f, const char *buf, size_t size, uint64_t offset);
int al_file_truncate(al_file *f, uint64_t size);
/* Records what was written (called on every close() of a descriptor of the file, copies
 * included); errors are reported to close(). A metric's partial last line waits for the last
 * close (al_file_release) or a reader. */
int al_file_flush(al_file *f);
int al_file_fsync(al_file *f);
/* The kernel may keep this file's page cache across opens / must bypass it for writes. */
int al_file_keep_cache(al_file *f);
int al_file_direct_io(al_file *f);
/* Whether close() needs nothing of the daemon (a read of stored content): the kernel can skip
 * its FLUSH request. */
int al_file_no_flush(al_file *f);
void al_file_release(al_file *f);

#endif
