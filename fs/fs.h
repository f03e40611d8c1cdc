/* aletheia: what fs/ shares between its files: the low-level operations and the errno edge. */
#ifndef ALETHEIA_FS_INTERNAL_H
#define ALETHEIA_FS_INTERNAL_H

#include <fuse_lowlevel.h>
#include "aletheia/fs.h"
#include "aletheia/tree.h"

typedef struct al_fs al_fs;

int al_fs_new(al_fs **out, al_tree *tree, int no_passthrough);
void al_fs_free(al_fs *fs);
const struct fuse_lowlevel_ops *al_fs_ops(void);
/* The one place aletheia error codes become errno values. */
int al_fs_errno(int code);

#endif
