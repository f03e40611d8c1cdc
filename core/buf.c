/* aletheia: growable byte buffers with a maximum size (after curl's dynbuf). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/buf.h"

int al_buf_grow(al_buf *b, size_t extra)
{
	size_t max = b->max ? b->max : AL_BUF_DEFAULT_MAX;
	size_t need = b->len + extra + 1, cap;
	char *p;

	if (need <= b->cap)
		return 0;
	if (need > max)
		return al_error_set(AL_ENOSPC, "buffer limit of %zu bytes reached", max);
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	if (cap > max)
		cap = max;
	p = realloc(b->ptr, cap);
	if (!p)
		return al_error_set(AL_ENOMEM, "out of memory growing a buffer to %zu bytes", cap);
	b->ptr = p;
	b->cap = cap;
	return 0;
}

int al_buf_put(al_buf *b, const void *data, size_t len)
{
	int rc = al_buf_grow(b, len);
	if (rc)
		return rc;
	if (len)
		memcpy(b->ptr + b->len, data, len);
	b->len += len;
	b->ptr[b->len] = '\0';
	return 0;
}

int al_buf_puts(al_buf *b, const char *s)
{
	return al_buf_put(b, s, strlen(s));
}

int al_buf_printf(al_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return al_error_set(AL_EINVAL, "bad format");
	if ((rc = al_buf_grow(b, (size_t)n)))
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

char *al_buf_detach(al_buf *b, size_t *len)
{
	char *p = b->ptr;
	if (len)
		*len = b->len;
	if (!p)
		p = calloc(1, 1);
	b->ptr = NULL;
	b->len = b->cap = 0;
	return p;
}

void al_buf_clear(al_buf *b)
{
	b->len = 0;
	if (b->ptr)
		b->ptr[0] = '\0';
}

void al_buf_dispose(al_buf *b)
{
	free(b->ptr);
	b->ptr = NULL;
	b->len = b->cap = 0;
}
