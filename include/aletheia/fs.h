/* aletheia: what fs/ offers the command line: a tree served as a FUSE mount until it is unmounted. */
#ifndef ALETHEIA_FS_H
#define ALETHEIA_FS_H

#include "tree.h"

typedef struct al_fs_session_options {
	const char *mountpoint;        /* absolute path of an existing folder */
	const char *const *fuse_opts;  /* the values of -o, in order; nfuse_opts of them */
	int nfuse_opts;
	int debug;                     /* libfuse's -d: every request on stderr */
	int no_passthrough;            /* read blobs through the daemon even where the kernel could */
	/* Called once the mount is in place, before the first request is answered (NULL: none). */
	void (*mounted)(void *arg);
	void *arg;
} al_fs_session_options;

/* Mounts tree on o->mountpoint and answers its requests until it is unmounted (0) or the process
 * is told to stop by SIGINT, SIGTERM or SIGHUP (AL_EIO, as for a failed session), then unmounts.
 * Before the mount is in place: AL_EINVAL when libfuse refuses the options, AL_EIO when the mount
 * cannot be made. The tree stays the caller's, to free afterwards. */
int al_fs_serve(al_tree *tree, const al_fs_session_options *o);
/* The libfuse the binary runs with, and whether it can do FUSE passthrough: "libfuse 3.17.2". */
const char *al_fs_library(void);

#endif
