/* aletheia: .aletheia/fsck, a check of every blob asked for and read through one handle (README
 * "The command line": aletheia fsck). */
#include "internal.h"

/* Reads nothing until this handle writes a request. */
static int fsck_open(al_file *f, int flags, const char *path)
{
	(void)flags;
	(void)path;
	f->kind = F_FSCK;
	return 0;
}

const al_kind kind_ctl_fsck = {
	.name = ".aletheia/fsck", .pattern = ".aletheia/fsck", .flags = K_SHARED, .mode = 0600,
	.getattr = ctl_empty_attr, .open = fsck_open,
};

/* One request per handle: "check" or "check download" (a line). The check runs as its report
 * is read (al_file_read), so a plain read of the file starts nothing and gets nothing. */
static int fsck_write(al_file *f, const char *buf, size_t size, uint64_t off)
{
	al_tree *t = f->t;
	al_fsck_options o = {AL_FSCK_OPTIONS_VERSION, t->store, t->blobs, t->cache, t->fetcher,
		t->mountpoint, t->staging_dir, 0};
	char line[64];
	size_t n = size;

	(void)off;
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	memcpy(line, buf, n);
	line[n] = '\0';
	if (f->fsck)
		return al_error_set(AL_EBUSY, "fsck: one request per open file");
	if (strcmp(line, "check download") == 0)
		o.flags |= AL_FSCK_DOWNLOAD;
	else if (strcmp(line, "check") != 0)
		return al_error_set(AL_EINVAL, "fsck: the requests are \"check\" and \"check download\"");
	return al_fsck_new(&f->fsck, &o);
}

/* The report is made as it is read; read() returns as soon as it has new lines. */
static int fsck_read(size_t *nread, al_file *f, char *buf, size_t size, uint64_t off)
{
	int done = 0, rc = 0;
	pthread_mutex_lock(&f->mu);
	while (f->fsck && !f->fsck_done && f->text.len <= off && rc == 0) {
		rc = al_fsck_step(&done, f->fsck, &f->text);
		f->fsck_done = done;
	}
	if (rc == 0)
		rc = read_buffer(nread, f->text.ptr, f->text.len, buf, size, off);
	pthread_mutex_unlock(&f->mu);
	return rc;
}

static int fsck_truncate(al_file *f, uint64_t size)
{
	(void)f;
	(void)size;
	return 0;
}

/* The report grows past the file's size (0): its reads must reach us. */
static int fsck_direct_io(al_file *f)
{
	(void)f;
	return 1;
}

const file_class fsck_class = {
	.read = fsck_read, .write = fsck_write, .truncate = fsck_truncate, .direct_io = fsck_direct_io,
};
