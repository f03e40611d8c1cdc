/* aletheia: reading a metric chunk document's points from its stored JSON text in one pass, with
 * no tree: cJSON made some 50,000 allocations of a 4,096-point chunk, most of a metric read's
 * time. Only the plain shape aletheia writes is taken; anything else is left to the caller's
 * generic parse, so what is read never differs from the document's own reading. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/series/chunk.h"
#include "core/doc/value.h"

/* cJSON nests at most 1000 deep; a chunk's skipped fields are flat in practice. */
#define SKIP_DEPTH 64
/* cJSON reads a number from at most 63 characters. */
#define NUMBER_MAX 63
#define TIME_MAX 63

typedef struct {
	const char *p, *end;
} scan;

enum { F_STEP, F_VALUE, F_TIME };

static void ws(scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int eat(scan *s, char c)
{
	ws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return 1;
	}
	return 0;
}

/* A string without escapes or control characters (anything else: not the plain shape). */
static int plain_string(scan *s, const char **str, size_t *len)
{
	const char *q;
	if (!eat(s, '"'))
		return -1;
	for (q = s->p; q < s->end && *q != '"'; q++)
		if (*q == '\\' || (unsigned char)*q < 0x20)
			return -1;
	if (q == s->end)
		return -1;
	*str = s->p;
	*len = (size_t)(q - s->p);
	s->p = q + 1;
	return 0;
}

/* A key and its colon: 0 and the key, or -1. */
static int key(scan *s, const char **k, size_t *klen)
{
	return plain_string(s, k, klen) == 0 && eat(s, ':') ? 0 : -1;
}

static int is_key(const char *k, size_t klen, const char *want)
{
	return klen == strlen(want) && memcmp(k, want, klen) == 0;
}

/* A JSON number's characters as cJSON takes them; *v its value, which strtod must read whole. */
static int number(scan *s, double *v)
{
	const char *q;
	char *end;
	ws(s);
	q = s->p;
	if (q == s->end || !(*q == '-' || (*q >= '0' && *q <= '9')))
		return -1;
	while (q < s->end && ((*q >= '0' && *q <= '9') || *q == '+' || *q == '-' || *q == 'e' ||
	       *q == 'E' || *q == '.'))
		q++;
	if (q - s->p > NUMBER_MAX)
		return -1;
	*v = strtod(s->p, &end);   /* the text ends in a NUL, and the next byte is no number's */
	if (end != q)
		return -1;
	s->p = q;
	return 0;
}

static int skip_value(scan *s, int depth);

static int skip_members(scan *s, char close, int depth)
{
	const char *k;
	size_t klen;
	if (eat(s, close))
		return 0;
	do {
		if ((close == '}' && key(s, &k, &klen)) || skip_value(s, depth + 1))
			return -1;
	} while (eat(s, ','));
	return eat(s, close) ? 0 : -1;
}

/* Checks and passes one value of any kind (strictly: cJSON would take all it passes). */
static int skip_value(scan *s, int depth)
{
	const char *str;
	size_t len;
	double d;
	if (depth > SKIP_DEPTH)
		return -1;
	ws(s);
	if (s->p == s->end)
		return -1;
	switch (*s->p) {
	case '"':
		return plain_string(s, &str, &len);
	case '{':
		s->p++;
		return skip_members(s, '}', depth);
	case '[':
		s->p++;
		return skip_members(s, ']', depth);
	case 't':
	case 'f':
	case 'n':
		str = *s->p == 't' ? "true" : *s->p == 'f' ? "false" : "null";
		len = strlen(str);
		if ((size_t)(s->end - s->p) < len || memcmp(s->p, str, len) != 0)
			return -1;
		s->p += len;
		return 0;
	default:
		return number(s, &d);
	}
}

/* value.c's integers: '-'? digits, within int64. */
static int int64_text(int64_t *out, const char *t, size_t n)
{
	uint64_t v = 0, lim;
	size_t i = 0;
	int neg = n > 0 && t[0] == '-';
	if (neg)
		i = 1;
	if (i == n)
		return -1;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < n; i++) {
		if (t[i] < '0' || t[i] > '9')
			return -1;
		if (v > (lim - (uint64_t)(t[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(t[i] - '0');
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/* An RFC 3339 timestamp as al_time_parse reads it; the date and time to the second are
 * converted once per second seen (timegm is most of the cost). */
static int time_text(int64_t *out, al_chunk_clock *clock, const char *t, size_t n)
{
	char tmp[TIME_MAX + 1];
	int64_t frac = 0, scale = 100000, us;
	size_t i = 19;

	if (n > TIME_MAX)
		return -1;
	/* The fast form: the second's prefix, then ".digits" and "Z", or just "Z". */
	if (n > 19 && t[i] == '.') {
		for (i++; i < n && t[i] >= '0' && t[i] <= '9'; i++) {
			frac += (t[i] - '0') * scale;
			scale /= 10;
		}
		if (i == 20)
			i = 0;   /* no digit after the point: not the fast form */
	}
	if (i >= 19 && i + 1 == n && t[i] == 'Z' && clock && clock->prefix[0] &&
	    memcmp(clock->prefix, t, 19) == 0) {
		*out = clock->base_us + frac;
		return 0;
	}
	memcpy(tmp, t, n);
	tmp[n] = '\0';
	if (al_time_parse(&us, tmp) != 0) {
		al_error_clear();
		return -1;
	}
	*out = us;
	if (clock && i >= 19 && i + 1 == n && t[i] == 'Z') {
		memcpy(clock->prefix, t, 19);
		clock->prefix[19] = '\0';
		clock->base_us = us - frac;
	}
	return 0;
}

/* One element {"integerValue":"N"} / {"doubleValue":X} / {"timestampValue":"T"} into p. */
static int element(scan *s, al_point *p, int field, al_chunk_clock *clock)
{
	const char *k, *str;
	size_t klen, len;
	int64_t i;

	if (!eat(s, '{') || key(s, &k, &klen))
		return -1;
	if (is_key(k, klen, "integerValue") && field != F_TIME) {
		if (plain_string(s, &str, &len) || int64_text(&i, str, len))
			return -1;
		if (field == F_STEP)
			p->step = i;
		else
			p->value = (double)i;
	} else if (is_key(k, klen, "doubleValue") && field == F_VALUE) {
		ws(s);
		if (s->p < s->end && *s->p == '"') {
			if (plain_string(s, &str, &len))
				return -1;
			if (is_key(str, len, "NaN"))
				p->value = NAN;
			else if (is_key(str, len, "Infinity"))
				p->value = INFINITY;
			else if (is_key(str, len, "-Infinity"))
				p->value = -INFINITY;
			else
				return -1;
		} else if (number(s, &p->value)) {
			return -1;
		}
	} else if (is_key(k, klen, "timestampValue") && field == F_TIME) {
		if (plain_string(s, &str, &len) || time_text(&p->time_us, clock, str, len))
			return -1;
	} else {
		return -1;
	}
	return eat(s, '}') ? 0 : -1;
}

/* {"arrayValue":{"values":[…]}} or {"arrayValue":{}}: the elements at [from, from + max) go to
 * out[0…], the others are only checked. *count: the elements. */
static int typed_array(scan *s, size_t *count, al_point *out, int field, al_chunk_clock *clock,
	size_t from, size_t max)
{
	const char *k;
	size_t klen, i = 0;

	*count = 0;
	if (!eat(s, '{') || key(s, &k, &klen) || !is_key(k, klen, "arrayValue") || !eat(s, '{'))
		return -1;
	if (!eat(s, '}')) {
		if (key(s, &k, &klen) || !is_key(k, klen, "values") || !eat(s, '['))
			return -1;
		if (!eat(s, ']')) {
			do {
				int rc = i >= from && i - from < max ?
					element(s, &out[i - from], field, clock) : skip_value(s, 0);
				if (rc)
					return -1;
				i++;
			} while (eat(s, ','));
			if (!eat(s, ']'))
				return -1;
		}
		if (!eat(s, '}'))
			return -1;
	}
	*count = i;
	return eat(s, '}') ? 0 : -1;
}

int al_chunk_points(al_point *out, size_t *n, al_chunk_clock *clock, const char *text,
	size_t len, size_t from, size_t max)
{
	scan s = {text, text + len};
	const char *k;
	size_t klen, i, count, steps = 0;
	int seen[3] = {0, 0, 0}, field;

	*n = 0;
	for (i = 0; i < max; i++) {
		out[i].step = 0;
		out[i].value = NAN;
		out[i].time_us = 0;
	}
	if (!eat(&s, '{'))
		goto other;
	if (!eat(&s, '}')) {
		do {
			if (key(&s, &k, &klen))
				goto other;
			field = is_key(k, klen, "steps") ? F_STEP : is_key(k, klen, "values") ? F_VALUE :
				is_key(k, klen, "times") ? F_TIME : -1;
			if (field < 0) {
				if (skip_value(&s, 0))
					goto other;
				continue;
			}
			if (seen[field]++ || typed_array(&s, &count, out, field, clock, from, max))
				goto other;
			if (field == F_STEP)
				steps = count;
		} while (eat(&s, ','));
		if (!eat(&s, '}'))
			goto other;
	}
	ws(&s);
	if (s.p != s.end)
		goto other;
	*n = steps > from ? (steps - from < max ? steps - from : max) : 0;
	return 0;
other:
	return al_error_set(AL_EINVAL, "not a chunk of the plain shape (at byte %zu)",
		(size_t)(s.p - text));
}
