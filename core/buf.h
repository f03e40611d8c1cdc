/* aletheia: a growable byte buffer with a size limit, so generated text never grows unbounded. */
#ifndef ALETHEIA_BUF_H
#define ALETHEIA_BUF_H

#include <stddef.h>
#include "aletheia/common.h"

typedef struct al_buf {
	char *ptr;      /* always NUL-terminated once anything was added */
	size_t len;
	size_t cap;
	size_t max;     /* 0: AL_BUF_DEFAULT_MAX */
} al_buf;

#define AL_BUF_INIT {NULL, 0, 0, 0}
#define AL_BUF_DEFAULT_MAX ((size_t)1 << 32)

int al_buf_put(al_buf *b, const void *data, size_t len);
int al_buf_puts(al_buf *b, const char *s);
int al_buf_printf(al_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int al_buf_grow(al_buf *b, size_t extra);
/* Hands the bytes to the caller (who frees them); the buffer is reset. */
char *al_buf_detach(al_buf *b, size_t *len);
void al_buf_clear(al_buf *b);
void al_buf_dispose(al_buf *b);

#endif
