/* aletheia: error codes and the thread-local last-error message shared by every module. */
#ifndef ALETHEIA_COMMON_H
#define ALETHEIA_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Every function that can fail returns 0 or one of these (negative). The message behind
 * al_error_last() is set once, where the failure starts, and passed up unchanged. */
typedef enum {
	AL_OK = 0,
	AL_ERROR = -1,        /* generic failure; see al_error_last() */
	AL_ENOTFOUND = -2,
	AL_EEXISTS = -3,
	AL_EINVAL = -4,
	AL_EPERM = -5,
	AL_EROFS = -6,
	AL_EIO = -7,
	AL_ENOSPC = -8,
	AL_ENAMETOOLONG = -9,
	AL_EXDEV = -10,
	AL_ENOTDIR = -11,
	AL_EISDIR = -12,
	AL_ENOTEMPTY = -13,
	AL_EBUSY = -14,
	AL_EAGAIN = -15,
	AL_ENOMEM = -16,
	AL_EACCES = -17,
} al_error_code;

/* Sets the calling thread's last error and returns code, so `return al_error_set(...)` works. */
int al_error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, appending ": strerror(errno_value)". */
int al_error_set_errno(int code, int errno_value, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The message of the last error on this thread, "" if none. Borrowed. */
const char *al_error_last(void);
void al_error_clear(void);
const char *al_strerror(int code);
/* Maps an errno value (EEXIST, ENOENT, ENOSPC...) to the matching al_error_code. */
int al_error_from_errno(int errno_value);

/* Wall clock in microseconds since the Unix epoch. */
int64_t al_now_us(void);

#endif
