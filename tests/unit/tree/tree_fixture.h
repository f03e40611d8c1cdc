/* aletheia unit tests of the tree without FUSE: a temporary folder holding a local SQLite store, a
 * file:// blob folder and a cache folder; the tree opened on them, and helpers that drive the
 * public al_tree_* / al_file_* API in the order fs/ops.c does for ordinary programs (`echo x > f`,
 * `>>`, `cat`, `ls`, `mkdir`, `stat`). tree_remount() closes the tree and opens it again on the same
 * folders, as an unmount and mount would, for durability checks. */
#ifndef ALETHEIA_TEST_TREE_FIXTURE_H
#define ALETHEIA_TEST_TREE_FIXTURE_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "aletheia/stack.h"
#include "aletheia/tree.h"
#include "../check.h"

/* The run most tests use: project p, experiment e, run 1. */
#define RUN1 "/p/experiments/e/runs/1"

typedef struct tree_fixture {
	char root[64];          /* the temporary folder holding everything below */
	char store[192];        /* "local:<root>/store" */
	char blobs[192];        /* "file://<root>/blobs" */
	char blob_dir[128];     /* <root>/blobs */
	char cache[192];        /* <root>/cache */
	char mnt[192];          /* <root>/mnt: the mount point the tree believes it is at */
	int allow_delete;       /* --allow-delete at the next (re)open */
	int multi_user;         /* -o allow_other at the next (re)open */
	al_stack *stack;
	al_tree *t;
} tree_fixture;

static tree_fixture TF;

/* The one place that opens a tree: its stack and options are the daemon's for `aletheia mount`
 * with --store local:DIR --blobs file:///DIR --cache-dir DIR. */
static inline int tree_open_fixture(void)
{
	al_stack_options so = AL_STACK_OPTIONS_INIT;
	al_tree_options o = AL_TREE_OPTIONS_INIT;
	int rc;
	so.store_uri = TF.store;
	so.blobs_uri = TF.blobs;
	so.cache_dir = TF.cache;
	so.cache_size = 0;
	if ((rc = al_stack_open(&TF.stack, &so)))
		return rc;
	o.stack = TF.stack;
	o.mountpoint = TF.mnt;
	o.allow_delete = TF.allow_delete;
	o.multi_user = TF.multi_user;
	o.uid = getuid();
	o.gid = getgid();
	if ((rc = al_tree_open(&TF.t, &o))) {
		al_stack_free(TF.stack);
		TF.stack = NULL;
	}
	return rc;
}

static inline void tree_close_fixture(void)
{
	al_tree_free(TF.t);
	TF.t = NULL;
	al_stack_free(TF.stack);
	TF.stack = NULL;
}

/* Makes the folders and opens the tree; exits the test (failed) if it cannot. The working folder
 * moves into the temporary folder, outside any git repository, so a run's git state is null
 * unless a test makes a repository. */
static inline void tree_setup(void)
{
	snprintf(TF.root, sizeof(TF.root), "/tmp/aletheia-test-tree-XXXXXX");
	if (!mkdtemp(TF.root)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(TF.store, sizeof(TF.store), "local:%s/store", TF.root);
	snprintf(TF.blob_dir, sizeof(TF.blob_dir), "%s/blobs", TF.root);
	snprintf(TF.blobs, sizeof(TF.blobs), "file://%s", TF.blob_dir);
	snprintf(TF.cache, sizeof(TF.cache), "%s/cache", TF.root);
	snprintf(TF.mnt, sizeof(TF.mnt), "%s/mnt", TF.root);
	if (mkdir(TF.mnt, 0755) != 0 || chdir(TF.root) != 0) {
		perror(TF.mnt);
		exit(1);
	}
	if (tree_open_fixture() != 0) {
		fprintf(stderr, "al_tree_open: %s\n", al_error_last());
		exit(1);
	}
}

/* Unmount and mount again on the same folders: what survives is what was recorded. */
static inline void tree_remount(void)
{
	tree_close_fixture();
	if (tree_open_fixture() != 0) {
		fprintf(stderr, "al_tree_open (remount): %s\n", al_error_last());
		exit(1);
	}
}

static inline void tree_teardown(void)
{
	char cmd[160];
	tree_close_fixture();
	if (chdir("/") != 0)
		perror("chdir /");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", TF.root);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", TF.root);
}

/* What each step of a write returned: open (or create), the write()s, close() (flush). */
typedef struct tree_io {
	int open, write, close;
} tree_io;

static inline int tree_io_first(tree_io r)
{
	return r.open ? r.open : r.write ? r.write : r.close;
}

/* Writes data to path as a shell's redirection does through the mount: the kernel looks the
 * name up, then opens it (with O_CREAT, op_open adds AL_OPEN_CREATE to every write open) or
 * creates it, and the write()s, the close() (flush) and release follow. flags: AL_OPEN_TRUNC
 * for `>`, AL_OPEN_APPEND for `>>` (the kernel then writes at the size it knows). */
static inline tree_io tree_put(const char *path, const char *data, size_t len, int flags)
{
	tree_io r = {0, 0, 0};
	al_file *f = NULL;
	al_attr a;
	uint64_t off = 0;
	flags |= AL_OPEN_WRITE | AL_OPEN_CREATE;
	if ((r.open = al_file_open(&f, TF.t, path, flags)) != 0)
		return r;
	if ((flags & AL_OPEN_APPEND) && al_file_getattr(&a, f) == 0)
		off = a.size;
	if (len)
		r.write = al_file_write(f, data, len, off);
	r.close = al_file_flush(f);
	al_file_release(f);
	return r;
}

/* `printf %s TEXT > path`: 0 or the first error (open, write, then close). */
static inline int tree_write(const char *path, const char *text)
{
	return tree_io_first(tree_put(path, text, strlen(text), AL_OPEN_TRUNC));
}

/* `printf %s TEXT >> path`. */
static inline int tree_append(const char *path, const char *text)
{
	return tree_io_first(tree_put(path, text, strlen(text), AL_OPEN_APPEND));
}

/* Reads from an open handle as op_read does: from the descriptor al_file_fd_get gives when the
 * content is a local file, else al_file_read. */
static inline int tree_pread(size_t *nread, al_file *f, char *buf, size_t size, uint64_t off)
{
	int fd = -1, owned = 0, rc = al_file_fd_get(&fd, &owned, f, off, size);
	*nread = 0;
	if (rc)
		return rc;
	if (fd >= 0) {
		ssize_t n = pread(fd, buf, size, (off_t)off);
		if (owned)
			close(fd);
		if (n < 0)
			return al_error_set(AL_EIO, "pread failed");
		*nread = (size_t)n;
		return 0;
	}
	return al_file_read(nread, f, buf, size, off);
}

/* Reads an open handle from offset to its end (a read() returning 0) into a NUL-terminated
 * string; *len (if not NULL) gets the byte count. */
static inline int tree_read_handle(char **out, size_t *len, al_file *f, uint64_t from)
{
	size_t cap = 65536, used = 0, n;
	char *buf = malloc(cap + 1);
	int rc = 0;
	*out = NULL;
	if (!buf)
		return AL_ENOMEM;
	for (;;) {
		if (cap - used < 4096) {
			char *p = realloc(buf, cap * 2 + 1);
			if (!p) {
				rc = AL_ENOMEM;
				break;
			}
			buf = p;
			cap *= 2;
		}
		if ((rc = tree_pread(&n, f, buf + used, cap - used, from + used)) != 0 || n == 0)
			break;
		used += n;
	}
	if (rc) {
		free(buf);
		return rc;
	}
	buf[used] = '\0';
	if (len)
		*len = used;
	*out = buf;
	return 0;
}

/* `cat path`: the whole content, NUL-terminated (binary content: use len). */
static inline int tree_read_len(char **out, size_t *len, const char *path)
{
	al_file *f = NULL;
	int rc;
	*out = NULL;
	if ((rc = al_file_open(&f, TF.t, path, 0)) != 0)
		return rc;
	rc = tree_read_handle(out, len, f, 0);
	al_file_release(f);
	return rc;
}

/* The content of path, or "ERR <code>" when it cannot be read: one comparable string for
 * CHECK_EQ_STR. Freed by the next calls' rotation (4 slots), so it may be used inline. */
static inline const char *tree_cat(const char *path)
{
	static char *slots[4];
	static int next;
	char *s = NULL;
	int rc = tree_read_len(&s, NULL, path);
	next = (next + 1) % 4;
	free(slots[next]);
	if (rc) {
		slots[next] = malloc(32);
		if (slots[next])
			snprintf(slots[next], 32, "ERR %d", rc);
	} else
		slots[next] = s;
	return slots[next];
}

/* `stat -c %s`: the size, or the (negative) error. */
/* .aletheia/status's documents_read: documents the SQLite store read and parsed so far. */
static inline long long tree_docs_read(void)
{
	const char *s = tree_cat("/.aletheia/status"), *p = strstr(s, "\ndocuments_read: ");
	return p ? atoll(p + 17) : -1;
}

static inline int64_t tree_size(const char *path)
{
	al_attr a;
	int rc = al_tree_getattr(&a, TF.t, path);
	return rc ? rc : (int64_t)a.size;
}

/* What a listing told of each entry, checked against a lookup of it once the listing is done
 * (fs/ops.c hands the type to the kernel as d_type and the attributes as readdirplus's). */
typedef struct tree_listed_ {
	char **names;
	int *types;
	al_attr *attrs;
	unsigned char *has;
	size_t n;
} tree_listed_;

static inline int tree_collect_(void *ctx, const char *name, int type, const al_attr *a)
{
	tree_listed_ *l = ctx;
	size_t n = l->n;
	char **p;
	int *ty;
	al_attr *at;
	unsigned char *h;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return type != AL_NODE_DIR || a;   /* folders, of no attributes given */
	if (!(p = realloc(l->names, (n + 2) * sizeof(char *))))
		return 1;
	l->names = p;
	if (!(ty = realloc(l->types, (n + 1) * sizeof(int))))
		return 1;
	l->types = ty;
	if (!(at = realloc(l->attrs, (n + 1) * sizeof(al_attr))))
		return 1;
	l->attrs = at;
	if (!(h = realloc(l->has, n + 1)))
		return 1;
	l->has = h;
	p[n] = strdup(name);
	p[n + 1] = NULL;
	ty[n] = type;
	h[n] = a != NULL;
	if (a)
		at[n] = *a;
	l->n++;
	return 0;
}

/* Each entry's type and attributes as the listing gave them equal a lookup's (stat of it). */
static inline void tree_check_listed_(const char *dir, const tree_listed_ *l)
{
	size_t i;
	for (i = 0; i < l->n; i++) {
		char path[2048];
		al_attr a;
		snprintf(path, sizeof(path), "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, l->names[i]);
		if (al_tree_getattr(&a, TF.t, path) != 0)
			continue;   /* gone since, or never there (a name a writer holds) */
		if (l->types[i] != -1 && l->types[i] != (int)a.type) {
			fprintf(stderr, "listing of %s: %s has type %d, its stat says %d\n", dir, l->names[i],
				l->types[i], (int)a.type);
			CHECK(l->types[i] == (int)a.type);
		}
		if (l->has[i] && (a.type != l->attrs[i].type || a.mode != l->attrs[i].mode ||
		    a.size != l->attrs[i].size || a.mtime_us != l->attrs[i].mtime_us ||
		    a.ctime_us != l->attrs[i].ctime_us || a.immutable != l->attrs[i].immutable)) {
			fprintf(stderr, "listing of %s: %s's attributes are not its stat's\n", dir, l->names[i]);
			CHECK(!"listed attributes equal stat's");
		}
	}
}

static inline int tree_cmp_names_(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* `ls -A path | sort`: the names, sorted by bytes, one space between; "ERR <code>" on failure
 * (rotation as tree_cat). */
static inline const char *tree_ls(const char *path)
{
	static char *slots[4];
	static int next;
	tree_listed_ l = {0};
	char **names, *out = NULL;
	size_t n = 0, i, total = 1;
	int rc = al_tree_readdir(TF.t, path, tree_collect_, &l);
	next = (next + 1) % 4;
	free(slots[next]);
	names = l.names;
	n = l.n;
	if (rc == 0) {
		tree_check_listed_(path, &l);
		qsort(names, n, sizeof(char *), tree_cmp_names_);
		for (i = 0; i < n; i++)
			total += strlen(names[i]) + 1;
		if ((out = malloc(total))) {
			out[0] = '\0';
			for (i = 0; i < n; i++) {
				if (i)
					strcat(out, " ");
				strcat(out, names[i]);
			}
		}
	} else if ((out = malloc(32)))
		snprintf(out, 32, "ERR %d", rc);
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(l.types);
	free(l.attrs);
	free(l.has);
	slots[next] = out;
	return out;
}

/* `mkdir path` by this process (its cwd and git state are the new run's). */
static inline int tree_mkdir(const char *path)
{
	al_caller c = {getpid(), getuid(), getgid()};
	return al_tree_mkdir(TF.t, path, &c);
}

/* `mkdir -p path`: every missing folder on the way. */
static inline int tree_mkdirs(const char *path)
{
	char buf[1024];
	size_t i, len = strlen(path);
	int rc = 0;
	if (len >= sizeof(buf))
		return AL_ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (i = 1; i <= len && rc == 0; i++)
		if (buf[i] == '/' || buf[i] == '\0') {
			char c = buf[i];
			al_attr a;
			buf[i] = '\0';
			if (al_tree_getattr(&a, TF.t, buf) != 0)
				rc = tree_mkdir(buf);
			buf[i] = c;
		}
	return rc;
}

/* A JSON file read and parsed (run.json, params.json, .dataset.json); NULL if it cannot be
 * (cJSON refuses NaN and Infinity, which run.json and params.json may hold: README "run.json"). */
static inline cJSON *tree_json(const char *path)
{
	char *s = NULL;
	cJSON *j = NULL;
	if (tree_read_len(&s, NULL, path) == 0)
		j = cJSON_Parse(s);
	free(s);
	return j;
}

/* The printed JSON of one member (cJSON's compact form: numbers as cJSON prints them, so compare
 * exact doubles with the file's text instead); "(missing)" if absent. Rotation as tree_cat. */
static inline const char *tree_json_get(const cJSON *obj, const char *key)
{
	static char *slots[4];
	static int next;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	next = (next + 1) % 4;
	free(slots[next]);
	slots[next] = v ? cJSON_PrintUnformatted(v) : strdup("(missing)");
	return slots[next];
}

#endif
