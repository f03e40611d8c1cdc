/* aletheia: metric points — parsing written lines and the exact read-back format. */
#ifndef ALETHEIA_METRIC_H
#define ALETHEIA_METRIC_H

#include <stddef.h>
#include <stdint.h>
#include "aletheia/common.h"

typedef struct al_point {
	int64_t step;
	double value;
	int64_t time_us;
} al_point;

/* Parses complete lines ("VALUE", "STEP VALUE" or "STEP VALUE TIME"; whitespace or one comma
 * between fields; blank lines ignored; "\r\n" accepted). prev_step is the series' last step
 * (-1 when empty): a missing STEP is prev_step + 1, chaining through the buffer. A missing TIME
 * is now_us. Any bad line: AL_EINVAL, *out NULL, nothing parsed. */
int al_metric_parse(al_point **out, size_t *count, const char *buf, size_t len,
	int64_t prev_step, int64_t now_us);
/* "STEP VALUE TIME\n": VALUE as the shortest decimal that reads back to the same double ("nan",
 * "inf", "-inf"), TIME Unix seconds with exactly three decimals. Returns the length written
 * (buf needs AL_POINT_TEXT_MAX bytes). */
#define AL_POINT_TEXT_MAX 96
size_t al_metric_format(char *buf, const al_point *p);
/* count points, one line each, as al_metric_format writes them (buf: count * AL_POINT_TEXT_MAX
 * bytes, and 1 for the NUL). */
size_t al_metric_format_points(char *buf, const al_point *pts, size_t count);
/* Shortest round-trip decimal of a double, as in the format above. Returns length. */
size_t al_double_format(char *buf, double v);

#endif
