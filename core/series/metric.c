/* aletheia: metric points — parsing the lines a training script writes, and the exact text
 * they read back as. Runs once per point, so no per-line allocation. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/series/metric.h"
#include "core/doc/value.h"

#define MAX_FIELDS 3
/* Longest field text we parse: a double can legitimately be written with ~770 digits, but
 * nothing sane writes more than this. */
#define FIELD_MAX 400

typedef struct {
	const char *p;
	size_t n;
} field;

static int line_error(size_t lineno, const char *line, size_t n, const char *why)
{
	int shown = n > 80 ? 80 : (int)n;
	return al_error_set(AL_EINVAL, "metric line %zu: %s: \"%.*s\"%s", lineno, why, shown, line,
		n > 80 ? "..." : "");
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Splits a line into fields. Returns the field count, or -1 on a stray comma or >3 fields. */
static int split_fields(field *f, const char *s, size_t n)
{
	size_t i = 0;
	int count = 0;

	while (i < n && is_blank(s[i]))
		i++;
	while (i < n) {
		size_t start = i;
		while (i < n && !is_blank(s[i]) && s[i] != ',')
			i++;
		if (i == start || count == MAX_FIELDS)
			return -1;
		f[count].p = s + start;
		f[count].n = i - start;
		count++;
		while (i < n && is_blank(s[i]))
			i++;
		if (i < n && s[i] == ',') {
			i++;
			while (i < n && is_blank(s[i]))
				i++;
			if (i == n)
				return -1;  /* trailing comma */
		}
	}
	return count;
}

static int parse_value(double *out, const field *f)
{
	char tmp[FIELD_MAX + 1];
	char *end;

	if (f->n > FIELD_MAX)
		return -1;
	memcpy(tmp, f->p, f->n);
	tmp[f->n] = '\0';
	errno = 0;
	*out = strtod(tmp, &end);
	/* Underflow still yields the nearest double and is kept; overflow ("1e999") is rejected
	 * rather than stored as an infinity the writer never wrote. */
	if (end != tmp + f->n)
		return -1;
	if (isinf(*out) && errno == ERANGE)
		return -1;
	return 0;
}

static int parse_step(int64_t *out, const field *f)
{
	char tmp[32];
	char *end;
	size_t i = 0;
	long long v;

	if (f->n >= sizeof(tmp))
		return -1;
	if (f->p[0] == '+' || f->p[0] == '-')
		i = 1;
	if (i == f->n)
		return -1;
	for (; i < f->n; i++)
		if (f->p[i] < '0' || f->p[i] > '9')
			return -1;
	memcpy(tmp, f->p, f->n);
	tmp[f->n] = '\0';
	errno = 0;
	v = strtoll(tmp, &end, 10);
	if (errno == ERANGE || end != tmp + f->n)
		return -1;
	*out = v;
	return 0;
}

/* "[-+]SECONDS[.FRACTION]" → microseconds, rounded to nearest (half away from zero), in exact
 * integer arithmetic so 1700000000.123456 comes out exactly. -1: not a time; -2: a time outside
 * Firestore's timestamps (README "metrics"), which no store could take: refused here, at the
 * write(), since a point accepted is journaled and could then never be delivered. */
static int parse_time(int64_t *out, const field *f)
{
	const char *s = f->p, *e = f->p + f->n;
	int neg = 0, digits = 0, fdigits = 0, seventh = 0, huge = 0;
	uint64_t secs = 0, frac = 0;

	if (s < e && (*s == '+' || *s == '-'))
		neg = *s++ == '-';
	for (; s < e && *s >= '0' && *s <= '9'; s++, digits++) {
		if (secs > (uint64_t)INT64_MAX / 1000000)
			huge = 1;   /* no int64 of microseconds: far outside the range, once it parses */
		else
			secs = secs * 10 + (uint64_t)(*s - '0');
	}
	if (s < e && *s == '.') {
		for (s++; s < e && *s >= '0' && *s <= '9'; s++, digits++, fdigits++) {
			if (fdigits < 6)
				frac = frac * 10 + (uint64_t)(*s - '0');
			else if (fdigits == 6)
				seventh = *s - '0';  /* the first digit past microseconds decides rounding */
		}
	}
	if (s != e || digits == 0)
		return -1;
	for (; fdigits < 6; fdigits++)
		frac *= 10;
	frac += seventh >= 5;
	if (huge || secs > ((uint64_t)INT64_MAX - frac) / 1000000)
		return -2;
	secs = secs * 1000000 + frac;
	*out = neg ? -(int64_t)secs : (int64_t)secs;
	return *out < AL_TIME_MIN_US || *out > AL_TIME_MAX_US ? -2 : 0;
}

int al_metric_parse(al_point **out, size_t *count, const char *buf, size_t len,
	int64_t prev_step, int64_t now_us)
{
	al_point *pts = NULL, *grown;
	size_t n = 0, cap = 0, lineno = 0, pos = 0;
	int rc = 0;

	*out = NULL;
	*count = 0;
	while (pos < len) {
		const char *line = buf + pos, *nl = memchr(line, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - line) : len - pos;
		field f[MAX_FIELDS];
		al_point pt;
		int nf;

		pos += ll + (nl ? 1 : 0);
		lineno++;
		if (ll > 0 && line[ll - 1] == '\r')
			ll--;
		nf = split_fields(f, line, ll);
		if (nf == 0)
			continue;
		if (nf < 0) {
			rc = line_error(lineno, line, ll, "expected VALUE, STEP VALUE or STEP VALUE TIME");
			goto cleanup;
		}
		pt.time_us = now_us;
		if (nf == 1) {
			if (prev_step == INT64_MAX) {
				rc = line_error(lineno, line, ll, "step overflows");
				goto cleanup;
			}
			pt.step = prev_step + 1;
			if (parse_value(&pt.value, &f[0]) < 0) {
				rc = line_error(lineno, line, ll, "bad value");
				goto cleanup;
			}
		} else {
			if (parse_step(&pt.step, &f[0]) < 0) {
				rc = line_error(lineno, line, ll, "bad step (an integer)");
				goto cleanup;
			}
			if (parse_value(&pt.value, &f[1]) < 0) {
				rc = line_error(lineno, line, ll, "bad value");
				goto cleanup;
			}
			if (nf == 3 && (rc = parse_time(&pt.time_us, &f[2])) < 0) {
				rc = line_error(lineno, line, ll, rc == -2 ? "time outside years 1 to 9999 "
					"(Unix seconds, not milliseconds)" : "bad time (Unix seconds)");
				goto cleanup;
			}
		}
		prev_step = pt.step;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(pts, cap * sizeof(*pts));
			if (!grown) {
				rc = al_error_set(AL_ENOMEM, "metric parse: out of memory");
				goto cleanup;
			}
			pts = grown;
		}
		pts[n++] = pt;
	}
	*out = pts;
	*count = n;
	pts = NULL;
cleanup:
	free(pts);
	return rc;
}

/* Writes the decimal digits of v; returns the length. Two digits a step, written in place from
 * the end (runs for the step, the value's digits and the time of every point read). */
static size_t put_u64(char *buf, uint64_t v)
{
	static const char pairs[] =
		"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
		"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
		"8081828384858687888990919293949596979899";
	static const uint64_t p10[] = {10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull,
		10000000ull, 100000000ull, 1000000000ull, 10000000000ull, 100000000000ull,
		1000000000000ull, 10000000000000ull, 100000000000000ull, 1000000000000000ull,
		10000000000000000ull, 100000000000000000ull, 1000000000000000000ull,
		10000000000000000000ull};
	size_t n = 1;
	char *q;

	while (n < 20 && v >= p10[n - 1])
		n++;
	q = buf + n;
	while (v >= 100) {
		unsigned r = (unsigned)(v % 100);
		v /= 100;
		*--q = pairs[2 * r + 1];
		*--q = pairs[2 * r];
	}
	if (v >= 10) {
		*--q = pairs[2 * v + 1];
		*--q = pairs[2 * v];
	} else {
		*--q = (char)('0' + v);
	}
	return n;
}

static size_t put_i64(char *buf, int64_t v)
{
	if (v < 0) {
		buf[0] = '-';
		return 1 + put_u64(buf + 1, (uint64_t)0 - (uint64_t)v);
	}
	return put_u64(buf, (uint64_t)v);
}

static int round_trips(char *buf, int prec, double v, int *len)
{
	*len = snprintf(buf, 32, "%.*g", prec, v);  /* at most 24 characters */
	return strtod(buf, NULL) == v;
}

/* The common cases without printf: zero, and |v| in [1e-22, 1e15) whose shortest decimal has at
 * most 15 digits. That decimal is N / 10^d with the fewest decimals d, and "%.15g" (below) prints
 * it: N's digits with the point d from the right (fixed notation) from 1e-4 up, "D.DDDe-XX"
 * below (learning rates, gradient norms and losses near convergence live there). Taken only
 * where that is certain: m = |v| * 10^d stays under 1e15 (< 2^50: its rounding error is at most
 * 1/16), 10^d is exact (d <= 22), and at the d found 10^-d exceeds v's ulp, so N is the only
 * d-decimal reading back to v, and no coarser grid held one (each was tested with an error under
 * 1/2). Returns 0 for the printf path. */
static size_t short_format(char *buf, double v)
{
	static const double p10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
		1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
	double a = fabs(v), m, ulp;
	char digits[24];
	size_t n = 0, nd, i;
	uint64_t q, bits;
	int e, d;

	if (v == 0) {
		if (signbit(v))
			buf[n++] = '-';
		buf[n++] = '0';
		buf[n] = '\0';
		return n;
	}
	if (!(a >= 1e-22 && a < 1e15))
		return 0;
	/* a = f * 2^e, f in [0.5, 1): ulp 2^(e - 53), from the bits (a is normal: >= 1e-22). */
	memcpy(&bits, &a, sizeof(bits));
	e = (int)(bits >> 52) - 1022;
	bits = (uint64_t)(e - 53 + 1023) << 52;
	memcpy(&ulp, &bits, sizeof(ulp));
	for (d = 0; d < (int)(sizeof(p10) / sizeof(p10[0])); d++) {
		m = a * p10[d];
		if (m >= 1e15)
			return 0;
		/* llround(m): m < 2^50 has an ulp of 1/8 at most, so m + 0.5 is exact */
		q = (uint64_t)(m + 0.5);
		if ((double)q / p10[d] == a)
			break;
	}
	if (d == (int)(sizeof(p10) / sizeof(p10[0])) || !(ulp * p10[d] < 1.0))
		return 0;
	nd = put_u64(digits, q);
	if (v < 0)
		buf[n++] = '-';
	if (a < 1e-4) {
		/* exponent -(d - nd + 1) <= -5; N has no trailing zero (d - 1 decimals would have held
		 * it), and "%g" writes at least two exponent digits */
		unsigned x = (unsigned)(d - (int)nd + 1);
		buf[n++] = digits[0];
		if (nd > 1) {
			buf[n++] = '.';
			memcpy(buf + n, digits + 1, nd - 1);
			n += nd - 1;
		}
		buf[n++] = 'e';
		buf[n++] = '-';
		if (x < 10)
			buf[n++] = '0';
		n += put_u64(buf + n, x);
	} else if ((size_t)d >= nd) {
		buf[n++] = '0';
		buf[n++] = '.';
		for (i = nd; i < (size_t)d; i++)
			buf[n++] = '0';
		memcpy(buf + n, digits, nd);
		n += nd;
	} else {
		memcpy(buf + n, digits, nd - (size_t)d);
		n += nd - (size_t)d;
		if (d > 0) {
			buf[n++] = '.';
			memcpy(buf + n, digits + nd - (size_t)d, (size_t)d);
			n += (size_t)d;
		}
	}
	buf[n] = '\0';
	return n;
}

size_t al_double_format(char *buf, double v)
{
	char tmp[32];
	int prec, len, lo = 1, hi = 17;
	size_t fast;

	if ((fast = short_format(buf, v)))
		return fast;
	if (isnan(v)) {
		memcpy(buf, "nan", 4);
		return 3;
	}
	if (isinf(v)) {
		strcpy(buf, v < 0 ? "-inf" : "inf");
		return v < 0 ? 4 : 3;
	}
	/* A double is within half an ulp (< 1.2e-16 relative) of its shortest decimal S; when S has
	 * at most 15 digits, the 15-digit grid (spacing >= 1e-15 relative) has S as v's nearest
	 * point, so "%.15g", which drops trailing zeros, prints S itself. Otherwise S has 16 or 17
	 * digits. So: one try for most values, three at most. */
	if (v == 0 || fabs(v) >= DBL_MIN) {
		for (prec = 15; prec < 17 && !round_trips(tmp, prec, v, &len); prec++)
			;
		if (prec == 17)
			len = snprintf(tmp, sizeof(tmp), "%.17g", v);
		memcpy(buf, tmp, (size_t)len + 1);
		return (size_t)len;
	}
	/* Subnormals have fewer significant bits: search the precision (round-tripping is
	 * monotonic in it, the N-digit grid being a subset of the N+1-digit one). */
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (round_trips(tmp, mid, v, &len))
			hi = mid;
		else
			lo = mid + 1;
	}
	len = snprintf(tmp, sizeof(tmp), "%.*g", lo, v);
	memcpy(buf, tmp, (size_t)len + 1);
	return (size_t)len;
}

size_t al_metric_format(char *buf, const al_point *p)
{
	size_t n = 0;
	/* floor to milliseconds, so the text never claims a later time than the point's */
	int64_t ms = p->time_us / 1000 - (p->time_us % 1000 < 0 ? 1 : 0);
	uint64_t mag;

	n += put_i64(buf + n, p->step);
	buf[n++] = ' ';
	n += al_double_format(buf + n, p->value);
	buf[n++] = ' ';
	if (ms < 0)
		buf[n++] = '-';
	mag = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
	n += put_u64(buf + n, mag / 1000);
	buf[n++] = '.';
	buf[n++] = (char)('0' + mag / 100 % 10);
	buf[n++] = (char)('0' + mag / 10 % 10);
	buf[n++] = (char)('0' + mag % 10);
	buf[n++] = '\n';
	buf[n] = '\0';
	return n;
}

/* A batch of points (a reader's 4,096), as al_metric_format gives each; a time's whole seconds,
 * mostly those of the point before, are written once per second seen and copied after. */
size_t al_metric_format_points(char *buf, const al_point *pts, size_t count)
{
	char secs[24];
	size_t n = 0, slen = 0, i;
	uint64_t last = 0;
	int have = 0, last_neg = 0;

	for (i = 0; i < count; i++) {
		const al_point *p = &pts[i];
		int64_t ms = p->time_us / 1000 - (p->time_us % 1000 < 0 ? 1 : 0);
		int neg = ms < 0;
		uint64_t mag = neg ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;

		n += put_i64(buf + n, p->step);
		buf[n++] = ' ';
		n += al_double_format(buf + n, p->value);
		buf[n++] = ' ';
		if (!have || mag / 1000 != last || neg != last_neg) {
			slen = 0;
			if (neg)
				secs[slen++] = '-';
			slen += put_u64(secs + slen, mag / 1000);
			last = mag / 1000;
			last_neg = neg;
			have = 1;
		}
		memcpy(buf + n, secs, slen);
		n += slen;
		buf[n++] = '.';
		buf[n++] = (char)('0' + mag / 100 % 10);
		buf[n++] = (char)('0' + mag / 10 % 10);
		buf[n++] = (char)('0' + mag % 10);
		buf[n++] = '\n';
	}
	buf[n] = '\0';
	return n;
}
