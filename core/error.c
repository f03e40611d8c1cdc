/* aletheia: the thread-local last-error message and the error-code names. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "aletheia/common.h"

static _Thread_local char last_error[1024];

/* Formatted aside first: an argument may be the last message itself (adding context to the
 * cause, al_error_set(rc, "…: %s", al_error_last())), which vsnprintf must not read while it
 * writes the same buffer. */
static void set_message(const char *fmt, va_list ap, int errno_value)
{
	char buf[sizeof(last_error)];
	size_t n;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (errno_value) {
		n = strlen(buf);
		snprintf(buf + n, sizeof(buf) - n, ": %s", strerror(errno_value));
	}
	memcpy(last_error, buf, sizeof(last_error));
}

int al_error_set(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_message(fmt, ap, 0);
	va_end(ap);
	return code;
}

int al_error_set_errno(int code, int errno_value, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_message(fmt, ap, errno_value);
	va_end(ap);
	return code;
}

const char *al_error_last(void)
{
	return last_error;
}

void al_error_clear(void)
{
	last_error[0] = '\0';
}

const char *al_strerror(int code)
{
	switch (code) {
	case AL_OK: return "success";
	case AL_ENOTFOUND: return "not found";
	case AL_EEXISTS: return "already exists";
	case AL_EINVAL: return "invalid argument";
	case AL_EPERM: return "not permitted";
	case AL_EROFS: return "read-only";
	case AL_EIO: return "input/output error";
	case AL_ENOSPC: return "no space left";
	case AL_ENAMETOOLONG: return "name too long";
	case AL_EXDEV: return "cross-folder rename";
	case AL_ENOTDIR: return "not a folder";
	case AL_EISDIR: return "is a folder";
	case AL_ENOTEMPTY: return "folder not empty";
	case AL_EBUSY: return "busy";
	case AL_EAGAIN: return "try again";
	case AL_ENOMEM: return "out of memory";
	case AL_EACCES: return "permission denied";
	default: return "error";
	}
}

int al_error_from_errno(int e)
{
	switch (e) {
	case 0: return AL_OK;
	case ENOENT: return AL_ENOTFOUND;
	case EEXIST: return AL_EEXISTS;
	case EINVAL: return AL_EINVAL;
	case EPERM: return AL_EPERM;
	case EROFS: return AL_EROFS;
	case ENOSPC: case EDQUOT: return AL_ENOSPC;
	case ENAMETOOLONG: return AL_ENAMETOOLONG;
	case EXDEV: return AL_EXDEV;
	case ENOTDIR: return AL_ENOTDIR;
	case EISDIR: return AL_EISDIR;
	case ENOTEMPTY: return AL_ENOTEMPTY;
	case EBUSY: return AL_EBUSY;
	case EAGAIN: return AL_EAGAIN;
	case ENOMEM: return AL_ENOMEM;
	case EACCES: return AL_EACCES;
	default: return AL_EIO;
	}
}

int64_t al_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
