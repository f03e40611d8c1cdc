/* aletheia: a metric's chunk and summary documents read straight from their stored JSON text. */
#ifndef ALETHEIA_CHUNK_H
#define ALETHEIA_CHUNK_H

#include <stddef.h>
#include "aletheia/common.h"
#include "core/series/metric.h"

/* Remembers the last timestamp's date and time to the second: a chunk's points are seconds
 * apart at most, mostly the same second. Zero-initialise; one per reader (not shared). */
typedef struct al_chunk_clock {
	char prefix[20];   /* "YYYY-MM-DDTHH:MM:SS" of the last timestamp parsed; "" for none */
	int64_t base_us;   /* what that prefix with "Z" stands for */
} al_chunk_clock;

/* The points [from, from + max) (positions in the chunk) of a chunk document's fields, from
 * their JSON text as stored (README "Where the data lives"): "steps", "values" and "times" are
 * arrays of {"integerValue":"N"}, {"doubleValue":X} ("NaN", "Infinity", "-Infinity" as strings;
 * an integerValue is taken as its double) and {"timestampValue":"RFC 3339"}; other fields are
 * skipped. *n: the points given (fewer than max past the chunk's steps); a point lacking its
 * value or time has NaN and 0, as a chunk read as a document gives.
 * AL_EINVAL when the text is not of that plain shape (escapes in strings, another type in the
 * range asked for, broken JSON): nothing is given, and the caller reads it as any document, so
 * the points are always those the document gives. text must be NUL-terminated at len. */
int al_chunk_points(al_point *out, size_t *n, al_chunk_clock *clock, const char *text,
	size_t len, size_t from, size_t max);

/* A metric's summary document (README "Where the data lives") from its fields' JSON text: what
 * series.c's summary_from_doc gives the parsed document (update_us: the document's update time,
 * for entries without "updated"), AL_ENOTFOUND likewise (an entry without bytes); AL_EINVAL when
 * the text is not of the plain shape, for the caller to parse it as a document. */
struct al_series_summary;
int al_chunk_summary(struct al_series_summary *out, al_chunk_clock *clock, const char *text,
	size_t len, int64_t update_us);

#endif
