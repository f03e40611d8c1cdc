/* aletheia: small shared helpers — folder creation and locking, and string hashing for in-memory
 * tables. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "aletheia/common.h"
#include "util.h"

int al__mkdir(const char *path, unsigned mode)
{
	if (mkdir(path, (mode_t)mode) == 0 || errno == EEXIST)
		return 0;
	return al_error_set_errno(al_error_from_errno(errno), errno, "cannot create folder %s", path);
}

int al__mkdir_p(const char *path, unsigned mode)
{
	char *p = strdup(path), *s;
	int rc = 0;

	if (!p)
		return al_error_set(AL_ENOMEM, "out of memory");
	for (s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		rc = al__mkdir(p, mode);
		*s = '/';
		if (rc)
			goto cleanup;
	}
	rc = al__mkdir(p, mode);
cleanup:
	free(p);
	return rc;
}

uint64_t al__str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

int al__lock_dir(int *fd_out, const char *dir, const char *what)
{
	char *path = NULL, buf[32];
	ssize_t n;
	int fd = -1, len, rc = 0;

	*fd_out = -1;
	if (asprintf(&path, "%s/lock", dir) < 0)
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		rc = al_error_set_errno(al_error_from_errno(errno), errno, "cannot open %s", path);
		goto cleanup;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno != EWOULDBLOCK) {
			rc = al_error_set_errno(AL_EIO, errno, "cannot lock %s", path);
			goto cleanup;
		}
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		rc = al_error_set(AL_EBUSY, "%s %s is already mounted by another aletheia process "
			"(pid %s)", what, dir, buf[0] ? buf : "unknown");
		goto cleanup;
	}
	len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
		rc = al_error_set_errno(AL_EIO, errno, "cannot write %s", path);
		goto cleanup;
	}
	*fd_out = fd;
	fd = -1;
cleanup:
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}
