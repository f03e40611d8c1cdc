/* aletheia: reading a metric chunk document's points from its stored JSON text in one pass, with
 * no tree: cJSON made some 50,000 allocations of a 4,096-point chunk, most of a metric read's
 * time. Only the plain shape aletheia writes is taken; anything else is left to the caller's
 * generic parse, so what is read never differs from the document's own reading. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/series/chunk.h"
#include "core/series/series.h"
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

/* "-?DIGITS(.DIGITS)?" of at most 15 digits is M / 10^k with M and 10^k exact doubles, and one
 * IEEE division rounds the exact quotient correctly: strtod's value, without strtod (Clinger's
 * fast path). 0 for anything else. */
static int short_decimal(double *v, const char *p, const char *end)
{
	static const double p10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
		1e12, 1e13, 1e14, 1e15};
	uint64_t m = 0;
	int neg = 0, digits = 0, frac = -1;
	if (p < end && *p == '-') {
		neg = 1;
		p++;
	}
	for (; p < end; p++) {
		if (*p >= '0' && *p <= '9') {
			m = m * 10 + (uint64_t)(*p - '0');
			if (++digits > 15)
				return 0;
			if (frac >= 0)
				frac++;
		} else if (*p == '.' && frac < 0 && digits > 0) {
			frac = 0;
		} else {
			return 0;
		}
	}
	if (digits == 0 || frac == 0)
		return 0;
	*v = frac > 0 ? (double)m / p10[frac] : (double)m;
	if (neg)
		*v = -*v;
	return 1;
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
	if (short_decimal(v, s->p, q)) {
		s->p = q;
		return 0;
	}
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

/* The string after a literal opening quote, up to its closing one, if plain (as plain_string). */
static const char *plain_rest(const char *q, const char *end)
{
	for (; q < end && *q != '"'; q++)
		if (*q == '\\' || (unsigned char)*q < 0x20)
			return NULL;
	return q < end ? q : NULL;
}

/* The element exactly as aletheia writes it, without whitespace: {"integerValue":"N"} of a step,
 * {"doubleValue":X} of a value, {"timestampValue":"T"} of a time, matched by its literal start
 * rather than token by token (the token reader was a third of a metric read). 1 when taken, 0
 * for element()'s general reading, which gives the same point for these and reads the rest. */
static int element_plain(scan *s, al_point *p, int field, al_chunk_clock *clock)
{
	static const char ik[] = "{\"integerValue\":\"", dk[] = "{\"doubleValue\":",
		tk[] = "{\"timestampValue\":\"";
	const char *q = s->p, *str;
	size_t avail = (size_t)(s->end - q);
	scan n;

	if (field == F_STEP && avail > sizeof(ik) && memcmp(q, ik, sizeof(ik) - 1) == 0) {
		str = q + sizeof(ik) - 1;
		if (!(q = plain_rest(str, s->end)) || q + 1 >= s->end || q[1] != '}' ||
		    int64_text(&p->step, str, (size_t)(q - str)))
			return 0;
		s->p = q + 2;
		return 1;
	}
	if (field == F_VALUE && avail > sizeof(dk) && memcmp(q, dk, sizeof(dk) - 1) == 0 &&
	    q[sizeof(dk) - 1] != '"') {
		n = (scan){q + sizeof(dk) - 1, s->end};
		if (number(&n, &p->value) || n.p >= s->end || *n.p != '}')
			return 0;
		s->p = n.p + 1;
		return 1;
	}
	if (field == F_TIME && avail > sizeof(tk) && memcmp(q, tk, sizeof(tk) - 1) == 0) {
		str = q + sizeof(tk) - 1;
		if (!(q = plain_rest(str, s->end)) || q + 1 >= s->end || q[1] != '}' ||
		    time_text(&p->time_us, clock, str, (size_t)(q - str)))
			return 0;
		s->p = q + 2;
		return 1;
	}
	return 0;
}

/* One element {"integerValue":"N"} / {"doubleValue":X} / {"timestampValue":"T"} into p. */
static int element(scan *s, al_point *p, int field, al_chunk_clock *clock)
{
	const char *k, *str;
	size_t klen, len;
	int64_t i;

	if (element_plain(s, p, field, clock))
		return 0;
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

/* --- a metric's summary document (README "Where the data lives": count, last, step, min, max,
 * updated, bytes, and per writer writer_<id>: {…}) --------------------------------------------- */

/* One summary entry's fields as series.c's summary_from_fields reads them. */
typedef struct {
	int has_bytes, has_count, has_step, has_updated;
	int64_t bytes, count, step, updated;
	double last, min, max;   /* NaN when absent or not a number */
	unsigned seen;           /* bit per field name: a second one is not the plain shape */
} entry;

enum { E_BYTES, E_COUNT, E_STEP, E_LAST, E_MIN, E_MAX, E_UPDATED };

static void entry_reset(entry *e)
{
	memset(e, 0, sizeof(*e));
	e->last = e->min = e->max = NAN;
}

/* {"integerValue":"N"}: 1 and *v; {"nullValue":null}: 0 (absent, as a failed read leaves it). */
static int typed_int(scan *s, int64_t *v)
{
	const char *k, *str;
	size_t klen, len;
	if (!eat(s, '{') || key(s, &k, &klen))
		return -1;
	if (is_key(k, klen, "integerValue")) {
		if (plain_string(s, &str, &len) || int64_text(v, str, len))
			return -1;
		return eat(s, '}') ? 1 : -1;
	}
	if (is_key(k, klen, "nullValue") && skip_value(s, 0) == 0)
		return eat(s, '}') ? 0 : -1;
	return -1;
}

/* value.c's al_value_get_double: a doubleValue (number or "NaN", "Infinity", "-Infinity"), an
 * integerValue as its double; a nullValue reads as absent. */
static int typed_double(scan *s, double *v)
{
	const char *k, *str;
	size_t klen, len;
	int64_t i;
	if (!eat(s, '{') || key(s, &k, &klen))
		return -1;
	if (is_key(k, klen, "doubleValue")) {
		ws(s);
		if (s->p < s->end && *s->p == '"') {
			if (plain_string(s, &str, &len))
				return -1;
			if (is_key(str, len, "NaN"))
				*v = NAN;
			else if (is_key(str, len, "Infinity"))
				*v = INFINITY;
			else if (is_key(str, len, "-Infinity"))
				*v = -INFINITY;
			else
				return -1;
		} else if (number(s, v)) {
			return -1;
		}
	} else if (is_key(k, klen, "integerValue")) {
		if (plain_string(s, &str, &len) || int64_text(&i, str, len))
			return -1;
		*v = (double)i;
	} else if (is_key(k, klen, "nullValue")) {
		if (skip_value(s, 0))
			return -1;
		return eat(s, '}') ? 0 : -1;
	} else {
		return -1;
	}
	return eat(s, '}') ? 1 : -1;
}

/* A field of an entry: the ones summaries read are taken, others skipped. 0, or -1. */
static int entry_field(scan *s, entry *e, const char *k, size_t klen, al_chunk_clock *clock)
{
	static const char *const names[] = {"bytes", "count", "step", "last", "min", "max", "updated"};
	const char *str, *kk;
	size_t i, len, kl;
	int got;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (is_key(k, klen, names[i]))
			break;
	if (i == sizeof(names) / sizeof(names[0]))
		return skip_value(s, 0);
	if (e->seen & (1u << i))
		return -1;
	e->seen |= 1u << i;
	switch (i) {
	case E_BYTES:
		return (got = typed_int(s, &e->bytes)) < 0 ? -1 : (e->has_bytes = got, 0);
	case E_COUNT:
		return (got = typed_int(s, &e->count)) < 0 ? -1 : (e->has_count = got, 0);
	case E_STEP:
		return (got = typed_int(s, &e->step)) < 0 ? -1 : (e->has_step = got, 0);
	case E_LAST:
		return typed_double(s, &e->last) < 0 ? -1 : 0;
	case E_MIN:
		return typed_double(s, &e->min) < 0 ? -1 : 0;
	case E_MAX:
		return typed_double(s, &e->max) < 0 ? -1 : 0;
	default:   /* updated: a timestamp */
		if (!eat(s, '{') || key(s, &kk, &kl) || !is_key(kk, kl, "timestampValue") ||
		    plain_string(s, &str, &len) || time_text(&e->updated, clock, str, len))
			return -1;
		e->has_updated = 1;
		return eat(s, '}') ? 0 : -1;
	}
}

/* {"mapValue":{"fields":{…}}} (or {"mapValue":{}}) into e. */
static int entry_map(scan *s, entry *e, al_chunk_clock *clock)
{
	const char *k;
	size_t klen;
	entry_reset(e);
	if (!eat(s, '{') || key(s, &k, &klen) || !is_key(k, klen, "mapValue") || !eat(s, '{'))
		return -1;
	if (!eat(s, '}')) {
		if (key(s, &k, &klen) || !is_key(k, klen, "fields") || !eat(s, '{'))
			return -1;
		if (!eat(s, '}')) {
			do {
				if (key(s, &k, &klen) || entry_field(s, e, k, klen, clock))
					return -1;
			} while (eat(s, ','));
			if (!eat(s, '}'))
				return -1;
		}
		if (!eat(s, '}'))
			return -1;
	}
	return eat(s, '}') ? 0 : -1;
}

/* series.c summary_from_fields: AL_ENOTFOUND without bytes. */
static int entry_summary(al_series_summary *out, const entry *e, int64_t update_us)
{
	memset(out, 0, sizeof(*out));
	out->step = -1;
	out->min = out->max = out->last = NAN;
	if (!e->has_bytes)
		return AL_ENOTFOUND;
	out->text_bytes = (uint64_t)e->bytes;
	if (e->has_count)
		out->count = (uint64_t)e->count;
	/* series.c summary_from_fields: one written without min or max is computed from the points */
	if (out->count && (!(e->seen & (1u << E_MIN)) || !(e->seen & (1u << E_MAX))))
		return AL_ENOTFOUND;
	if (e->has_step)
		out->step = e->step;
	out->last = e->last;
	out->min = e->min;
	out->max = e->max;
	out->update_us = e->has_updated ? e->updated : update_us;
	return 0;
}

int al_chunk_summary(al_series_summary *out, al_chunk_clock *clock, const char *text,
	size_t len, int64_t update_us)
{
	scan s = {text, text + len};
	const char *k;
	size_t klen;
	entry top, w;
	al_series_summary one;
	int any = 0, missing = 0;

	entry_reset(&top);
	memset(out, 0, sizeof(*out));
	out->step = -1;
	out->min = out->max = out->last = NAN;
	if (!eat(&s, '{'))
		goto other;
	if (!eat(&s, '}')) {
		do {
			if (key(&s, &k, &klen))
				goto other;
			if (klen >= 7 && memcmp(k, "writer_", 7) == 0) {
				if (entry_map(&s, &w, clock))
					goto other;
				any = 1;   /* each entry counts, as a document's walk over its fields */
				if (missing || entry_summary(&one, &w, update_us))
					missing = 1;
				else
					al_series_summary_merge(out, &one);
			} else if (entry_field(&s, &top, k, klen, clock)) {
				goto other;
			}
		} while (eat(&s, ','));
		if (!eat(&s, '}'))
			goto other;
	}
	ws(&s);
	if (s.p != s.end)
		goto other;
	if (any)
		return missing ? AL_ENOTFOUND : 0;
	return entry_summary(out, &top, update_us);
other:
	return al_error_set(AL_EINVAL, "not a metric summary of the plain shape (at byte %zu)",
		(size_t)(s.p - text));
}
