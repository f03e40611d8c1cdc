/* aletheia unit test of the tree: a run's artifacts/ — bytes stored as content-addressed blobs when
 * closed, the working folder of a running run (rewrite, rename, delete, shared open files), mtimes
 * set while open, and al_file_fd_get's descriptor staying right while another handle commits
 * (README "artifacts", "Files behave like files", "Deleting and renaming"). */
#include <sys/stat.h>
#include "aletheia/hash.h"
#include "tree_fixture.h"

#define A RUN1 "/artifacts"

/* The blob file of content in the file:// store: <blobs>/<xx>/<xxh3-128 hex>. */
static const char *blob_path(const void *data, size_t len)
{
	static char path[256];
	char hex[AL_HASH_HEX_LEN + 1];
	al_hash_buffer(hex, data, len);
	snprintf(path, sizeof(path), "%s/%.2s/%s", TF.blob_dir, hex, hex);
	return path;
}

static const char *file_text(const char *path)
{
	static char buf[4096];
	FILE *f = fopen(path, "rb");
	size_t n = 0;
	if (!f)
		return "(missing)";
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void test_bytes(void)
{
	static const char bin[] = {'\0', '\x01', 'b', '\n', '\xff', '\0', 'z'};
	char *s = NULL;
	size_t len = 0;
	al_attr a;
	struct stat st;

	CHECK_OK(tree_mkdirs(RUN1));
	CHECK_EQ_STR(tree_ls(A), "");
	CHECK_EQ_INT(tree_io_first(tree_put(A "/w.bin", bin, sizeof(bin), AL_OPEN_TRUNC)), 0);
	CHECK_OK(tree_read_len(&s, &len, A "/w.bin"));
	CHECK_EQ_INT(len, sizeof(bin));
	CHECK(s && memcmp(s, bin, sizeof(bin)) == 0);
	free(s);
	CHECK_OK(al_tree_getattr(&a, TF.t, A "/w.bin"));
	CHECK_EQ_INT(a.type, AL_NODE_FILE);
	CHECK_EQ_INT(a.size, sizeof(bin));
	CHECK_EQ_INT(a.mode, 0644);
	/* stored once per content in the blob folder */
	CHECK(stat(blob_path(bin, sizeof(bin)), &st) == 0 && st.st_size == (off_t)sizeof(bin));
	CHECK_OK(tree_write(A "/ckpt/a.txt", "same"));
	CHECK_OK(tree_write(A "/ckpt/b.txt", "same"));
	CHECK_EQ_STR(file_text(blob_path("same", 4)), "same");
	CHECK_EQ_STR(tree_ls(A), "ckpt w.bin");
	CHECK_EQ_STR(tree_ls(A "/ckpt"), "a.txt b.txt");
	CHECK(strstr(tree_cat(RUN1 "/run.json"), "\"artifacts\": {\n    \"count\": 3,\n    \"bytes\": 15\n") != NULL);
	tree_remount();
	CHECK_OK(tree_read_len(&s, &len, A "/w.bin"));
	CHECK(len == sizeof(bin) && s && memcmp(s, bin, sizeof(bin)) == 0);
	free(s);
	CHECK_EQ_STR(tree_cat(A "/ckpt/b.txt"), "same");
}

/* While the run runs its artifacts/ is a working folder. */
static void test_working_folder(void)
{
	al_file *w = NULL, *w2 = NULL;
	/* rewritten in place, truncated, appended */
	CHECK_OK(tree_write(A "/log.txt", "one\n"));
	CHECK_OK(tree_append(A "/log.txt", "two\n"));
	CHECK_EQ_STR(tree_cat(A "/log.txt"), "one\ntwo\n");
	CHECK_OK(al_tree_truncate(TF.t, A "/log.txt", 3));
	CHECK_EQ_STR(tree_cat(A "/log.txt"), "one");
	CHECK_EQ_INT(tree_size(A "/log.txt"), 3);
	/* renamed (also over another file), deleted, empty folders removed */
	CHECK_OK(al_tree_rename(TF.t, A "/ckpt/a.txt", A "/ckpt/c.txt", 0));
	CHECK_OK(al_tree_rename(TF.t, A "/log.txt", A "/ckpt/c.txt", 0));
	CHECK_EQ_STR(tree_ls(A "/ckpt"), "b.txt c.txt");
	CHECK_EQ_STR(tree_cat(A "/ckpt/c.txt"), "one");
	CHECK_EQ_INT(al_tree_rmdir(TF.t, A "/ckpt"), AL_ENOTEMPTY);
	CHECK_OK(al_tree_unlink(TF.t, A "/ckpt/b.txt"));
	CHECK_OK(al_tree_unlink(TF.t, A "/ckpt/c.txt"));
	CHECK_OK(tree_mkdir(A "/empty"));
	CHECK_OK(al_tree_rmdir(TF.t, A "/empty"));
	/* ckpt/ was never made: an implicit folder, gone with its last file */
	CHECK_EQ_STR(tree_ls(A), "w.bin");
	/* a file still open for writing reads back what was written so far */
	CHECK_OK(al_file_open(&w, TF.t, A "/open.txt", AL_OPEN_WRITE | AL_OPEN_CREATE | AL_OPEN_TRUNC));
	CHECK_OK(al_file_write(w, "partial", 7, 0));
	CHECK_EQ_STR(tree_cat(A "/open.txt"), "partial");
	/* a second open for writing shares that one open file */
	CHECK_OK(al_file_open(&w2, TF.t, A "/open.txt", AL_OPEN_WRITE | AL_OPEN_CREATE));
	CHECK(w2 == w);
	CHECK_OK(al_file_write(w2, "P", 1, 0));
	/* renamed while open: recorded under its new name when it closes */
	CHECK_OK(al_tree_rename(TF.t, A "/open.txt", A "/moved.txt", 0));
	CHECK_OK(al_file_flush(w2));
	al_file_release(w2);
	CHECK_OK(al_file_flush(w));
	al_file_release(w);
	CHECK_EQ_STR(tree_cat(A "/moved.txt"), "Partial");
	CHECK_EQ_INT(tree_size(A "/open.txt"), AL_ENOTFOUND);
	/* deleted while open: records nothing when it closes */
	w = NULL;
	CHECK_OK(al_file_open(&w, TF.t, A "/gone.txt", AL_OPEN_WRITE | AL_OPEN_CREATE | AL_OPEN_TRUNC));
	CHECK_OK(al_file_write(w, "bye", 3, 0));
	CHECK_OK(al_file_flush(w));
	CHECK_OK(al_tree_unlink(TF.t, A "/gone.txt"));
	CHECK_EQ_INT(tree_size(A "/gone.txt"), AL_ENOTFOUND);
	CHECK_OK(al_file_write(w, "again", 5, 3));
	CHECK_OK(al_file_flush(w));
	al_file_release(w);
	CHECK_EQ_INT(tree_size(A "/gone.txt"), AL_ENOTFOUND);
	CHECK_EQ_STR(tree_ls(A), "moved.txt w.bin");
	tree_remount();
	CHECK_EQ_STR(tree_ls(A), "moved.txt w.bin");
	CHECK_EQ_STR(tree_cat(A "/moved.txt"), "Partial");
}

/* `touch`/utimes while the file is open for writing (cp -p): its close() records that time. */
static void test_mtime_while_open(void)
{
	al_file *w = NULL;
	al_attr a;
	const int64_t t0 = 1500000000123456LL;
	CHECK_OK(al_file_open(&w, TF.t, A "/p.txt", AL_OPEN_WRITE | AL_OPEN_CREATE | AL_OPEN_TRUNC));
	CHECK_OK(al_file_write(w, "copy", 4, 0));
	CHECK_OK(al_tree_utimens(TF.t, A "/p.txt", t0));
	CHECK_OK(al_file_flush(w));
	al_file_release(w);
	CHECK_OK(al_tree_getattr(&a, TF.t, A "/p.txt"));
	CHECK_EQ_INT(a.mtime_us, t0);
	tree_remount();
	CHECK_OK(al_tree_getattr(&a, TF.t, A "/p.txt"));
	CHECK_EQ_INT(a.mtime_us, t0);
}

/* A descriptor from al_file_fd_get reads what was current when it was taken, although a flush
 * (another descriptor's close) moves the staged copy into the blob store meanwhile and later
 * writes stage a new copy: the blob never changes. Each step is a call in this thread, in the
 * order two FUSE threads could interleave them. */
static void test_fd_get_across_commit(void)
{
	al_file *w = NULL, *w2 = NULL;
	char buf[16];
	int fd = -1, fd2 = -1, owned = 0, owned2 = 0;
	ssize_t n;

	CHECK_OK(al_file_open(&w, TF.t, A "/db", AL_OPEN_WRITE | AL_OPEN_CREATE | AL_OPEN_TRUNC));
	if (!w)
		return;
	CHECK_OK(al_file_write(w, "hello", 5, 0));
	CHECK_OK(al_file_open(&w2, TF.t, A "/db", AL_OPEN_WRITE | AL_OPEN_CREATE));
	CHECK(w2 == w);
	/* a read of the first descriptor takes its fd ... */
	CHECK_OK(al_file_fd_get(&fd, &owned, w, 0, 5));
	CHECK(fd >= 0 && owned);
	/* ... a close() of the second commits: the staged file becomes the blob ... */
	CHECK_OK(al_file_flush(w2));
	CHECK_EQ_STR(file_text(blob_path("hello", 5)), "hello");
	/* ... the read goes on from its fd */
	n = pread(fd, buf, sizeof(buf), 0);
	CHECK_EQ_INT(n, 5);
	CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
	/* a write after the commit stages a new copy; the fd taken before still reads the blob */
	CHECK_OK(al_file_write(w, "XY", 2, 0));
	n = pread(fd, buf, sizeof(buf), 0);
	CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
	CHECK_EQ_STR(file_text(blob_path("hello", 5)), "hello");
	/* a new fd reads the new content */
	CHECK_OK(al_file_fd_get(&fd2, &owned2, w, 0, 5));
	n = fd2 >= 0 ? pread(fd2, buf, sizeof(buf), 0) : -1;
	CHECK(n == 5 && memcmp(buf, "XYllo", 5) == 0);
	/* the caller's own descriptors: they need no handle to be closed */
	CHECK(owned2);
	if (fd2 >= 0)
		close(fd2);
	CHECK_OK(al_file_flush(w));
	al_file_release(w2);
	al_file_release(w);
	/* taken before the handle went, closed after: the read a reply let the kernel finish */
	n = pread(fd, buf, sizeof(buf), 0);
	CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
	close(fd);
	CHECK_EQ_STR(tree_cat(A "/db"), "XYllo");
	CHECK_EQ_STR(file_text(blob_path("hello", 5)), "hello");
	CHECK_EQ_STR(file_text(blob_path("XYllo", 5)), "XYllo");
}

static unsigned mode_of(const char *path)
{
	al_attr a;
	return al_tree_getattr(&a, TF.t, path) == 0 ? a.mode : 0;
}

/* chmod keeps an artifact's executable bit (a script saved beside a model); every other mode
 * is the tree's own. */
static void test_exec(void)
{
	al_file *w = NULL;
	CHECK_OK(tree_write(A "/bin/run.sh", "#!/bin/sh\n"));
	CHECK_EQ_INT(mode_of(A "/bin/run.sh"), 0644);
	CHECK_OK(al_tree_chmod(TF.t, A "/bin/run.sh", 0700));
	CHECK_EQ_INT(mode_of(A "/bin/run.sh"), 0755);
	CHECK_OK(al_tree_chmod(TF.t, A "/bin/run.sh", 0600));
	CHECK_EQ_INT(mode_of(A "/bin/run.sh"), 0644);
	CHECK_OK(al_tree_chmod(TF.t, A "/bin/run.sh", 0755));
	/* a rewrite and a rename keep it */
	CHECK_OK(tree_write(A "/bin/run.sh", "#!/bin/sh\necho 2\n"));
	CHECK_EQ_INT(mode_of(A "/bin/run.sh"), 0755);
	CHECK_OK(al_tree_rename(TF.t, A "/bin/run.sh", A "/bin/go.sh", 0));
	CHECK_EQ_INT(mode_of(A "/bin/go.sh"), 0755);
	/* set while still open for writing (cp -a's fchmod before close): recorded at the close */
	CHECK_OK(al_file_open(&w, TF.t, A "/bin/new.sh", AL_OPEN_WRITE | AL_OPEN_CREATE | AL_OPEN_TRUNC));
	CHECK_OK(al_file_write(w, "x", 1, 0));
	CHECK_OK(al_tree_chmod(TF.t, A "/bin/new.sh", 0755));
	CHECK_EQ_INT(mode_of(A "/bin/new.sh"), 0755);
	CHECK_OK(al_file_flush(w));
	al_file_release(w);
	/* a new file takes the x of its creation's mode (open(O_CREAT, 0755): cp, git's checkout);
	 * an existing one keeps its own */
	CHECK_EQ_INT(tree_io_first(tree_put(A "/bin/made.sh", "y", 1, AL_OPEN_EXEC)), 0);
	CHECK_EQ_INT(mode_of(A "/bin/made.sh"), 0755);
	CHECK_EQ_INT(tree_io_first(tree_put(A "/moved.txt", "z", 1, AL_OPEN_EXEC)), 0);
	CHECK_EQ_INT(mode_of(A "/moved.txt"), 0644);
	/* folders and other files: quietly as they are */
	CHECK_OK(al_tree_chmod(TF.t, A "/bin", 0700));
	CHECK_OK(al_tree_chmod(TF.t, RUN1 "/params", 0700));
	CHECK_EQ_INT(mode_of(A "/bin"), 0755);
	tree_remount();
	CHECK_EQ_INT(mode_of(A "/bin/go.sh"), 0755);
	CHECK_EQ_INT(mode_of(A "/bin/new.sh"), 0755);
	CHECK_EQ_STR(tree_cat(A "/bin/go.sh"), "#!/bin/sh\necho 2\n");
}

/* Symbolic links (a checkpoint folder's "latest", a virtualenv's bin/python): records of their
 * targets, any text, which the kernel follows (README "artifacts"). */
static void test_symlinks(void)
{
	char *got = NULL, *before;
	al_attr a;
	CHECK_OK(tree_write(A "/ck/step-2/w", "two"));
	before = strdup(strstr(tree_cat(RUN1 "/run.json"), "\"artifacts\""));
	CHECK_OK(al_tree_symlink(TF.t, "step-2", A "/ck/latest", NULL));
	CHECK_OK(al_tree_symlink(TF.t, "/nowhere/at all", A "/dangling", NULL));
	CHECK_OK(al_tree_getattr(&a, TF.t, A "/ck/latest"));
	CHECK_EQ_INT(a.type, AL_NODE_LINK);
	CHECK_EQ_INT(a.size, 6);
	CHECK_OK(al_tree_readlink(&got, TF.t, A "/ck/latest"));
	CHECK_EQ_STR(got, "step-2");
	free(got);
	got = NULL;
	CHECK_EQ_INT(al_tree_readlink(&got, TF.t, A "/ck/step-2/w"), AL_EINVAL);
	CHECK_EQ_INT(al_tree_symlink(TF.t, "x", A "/ck/latest", NULL), AL_EEXISTS);
	CHECK_EQ_INT(al_tree_symlink(TF.t, "x", A "/ck/step-2/w", NULL), AL_EEXISTS);
	CHECK_EQ_STR(tree_ls(A "/ck"), "latest step-2");
	/* not files: run.json counts files only */
	CHECK_EQ_STR(strstr(tree_cat(RUN1 "/run.json"), "\"artifacts\""), before);
	free(before);
	/* renamed and replaced (ln -sfn makes a new link and renames it over the old one) */
	CHECK_OK(al_tree_symlink(TF.t, "step-1", A "/ck/.latest.tmp", NULL));
	CHECK_OK(al_tree_rename(TF.t, A "/ck/.latest.tmp", A "/ck/latest", 0));
	CHECK_OK(al_tree_readlink(&got, TF.t, A "/ck/latest"));
	CHECK_EQ_STR(got, "step-1");
	free(got);
	got = NULL;
	CHECK_OK(al_tree_unlink(TF.t, A "/dangling"));
	tree_remount();
	CHECK_OK(al_tree_readlink(&got, TF.t, A "/ck/latest"));
	CHECK_EQ_STR(got, "step-1");
	free(got);
	got = NULL;
	CHECK_EQ_STR(tree_ls(A "/ck"), "latest step-2");
	/* an experiment's artifacts/ takes new ones; an ended run's, none */
	CHECK_OK(al_tree_symlink(TF.t, "../runs/1/artifacts/ck", "/p/experiments/e/artifacts/best", NULL));
	CHECK_OK(tree_write(RUN1 "/status", "finished\n"));
	CHECK_EQ_INT(al_tree_symlink(TF.t, "step-2", A "/ck/other", NULL), AL_EROFS);
	CHECK_EQ_INT(al_tree_chmod(TF.t, A "/bin/go.sh", 0644), AL_EROFS);
	CHECK_OK(al_tree_chmod(TF.t, A "/bin/go.sh", 0755));
	CHECK_EQ_INT(mode_of(A "/bin/go.sh"), 0555);   /* read-only now, still executable */
	CHECK_OK(al_tree_symlink(TF.t, "../runs/1", "/p/experiments/e/artifacts/last", NULL));
	CHECK_EQ_STR(tree_ls("/p/experiments/e/artifacts"), "best last");
}

int main(void)
{
	tree_setup();
	test_bytes();
	test_working_folder();
	test_mtime_while_open();
	test_fd_get_across_commit();
	test_exec();
	test_symlinks();
	tree_teardown();
	CHECK_DONE();
}
