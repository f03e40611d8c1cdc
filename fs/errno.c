/* aletheia: translation of aletheia error codes into errno values, at the FUSE edge only. */
#include <errno.h>
#include "fs.h"

int al_fs_errno(int code)
{
	switch (code) {
	case AL_OK: return 0;
	case AL_ENOTFOUND: return ENOENT;
	case AL_EEXISTS: return EEXIST;
	case AL_EINVAL: return EINVAL;
	case AL_EPERM: return EPERM;
	case AL_EROFS: return EROFS;
	case AL_ENOSPC: return ENOSPC;
	case AL_ENAMETOOLONG: return ENAMETOOLONG;
	case AL_EXDEV: return EXDEV;
	case AL_ENOTDIR: return ENOTDIR;
	case AL_EISDIR: return EISDIR;
	case AL_ENOTEMPTY: return ENOTEMPTY;
	case AL_EBUSY: return EBUSY;
	case AL_EAGAIN: return EAGAIN;
	case AL_ENOMEM: return ENOMEM;
	case AL_EACCES: return EACCES;
	default: return EIO;
	}
}
