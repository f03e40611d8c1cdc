/* Unit tests for core/series/metric.c: line parsing, step chaining, bad lines, the read-back format. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/series/metric.h"
#include "check.h"

#define NOW 1700000000000000LL

static size_t parse(al_point **pts, const char *text, int64_t prev, int want_rc)
{
	size_t n = 12345;
	int rc = al_metric_parse(pts, &n, text, strlen(text), prev, NOW);
	if (rc != want_rc)
		fprintf(stderr, "parse of \"%s\": rc %d, expected %d (%s)\n", text, rc, want_rc,
			al_error_last());
	CHECK_EQ_INT(rc, want_rc);
	if (want_rc != 0) {
		CHECK(*pts == NULL);
		CHECK_EQ_INT(n, 0);
	}
	return n;
}

static void test_forms(void)
{
	al_point *p;
	size_t n;

	n = parse(&p, "0.5\n", -1, 0);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(p[0].step, 0);
	CHECK(p[0].value == 0.5);
	CHECK_EQ_INT(p[0].time_us, NOW);
	free(p);

	n = parse(&p, "7 0.25\n", 3, 0);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(p[0].step, 7);
	CHECK(p[0].value == 0.25);
	CHECK_EQ_INT(p[0].time_us, NOW);
	free(p);

	n = parse(&p, "7 0.25 1700000001.5\n", 3, 0);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(p[0].time_us, 1700000001500000LL);
	free(p);

	/* separators: tabs, several spaces, a comma with or without spaces, leading/trailing blanks */
	n = parse(&p, "1\t2\n2  3\n3,4\n4 , 5\n5, 6 ,1700000000\n  6 7  \n7,\t8\r\n", -1, 0);
	CHECK_EQ_INT(n, 7);
	if (n == 7) {
		for (size_t i = 0; i < 7; i++) {
			CHECK_EQ_INT(p[i].step, (int64_t)i + 1);
			CHECK(p[i].value == (double)i + 2);
		}
		CHECK_EQ_INT(p[4].time_us, 1700000000000000LL);
	}
	free(p);

	/* values: exponents, signs, nan/inf in any case */
	n = parse(&p, "1e-7\n-2.5E3\n+3\nnan\nNaN\ninf\n-inf\n+inf\nInfinity\n.5\n", -1, 0);
	CHECK_EQ_INT(n, 10);
	if (n == 10) {
		CHECK(p[0].value == 1e-7);
		CHECK(p[1].value == -2500.0);
		CHECK(p[2].value == 3.0);
		CHECK(isnan(p[3].value));
		CHECK(isnan(p[4].value));
		CHECK(isinf(p[5].value) && p[5].value > 0);
		CHECK(isinf(p[6].value) && p[6].value < 0);
		CHECK(isinf(p[7].value) && p[7].value > 0);
		CHECK(isinf(p[8].value) && p[8].value > 0);
		CHECK(p[9].value == 0.5);
	}
	free(p);

	/* times: fractions rounded to the nearest microsecond; negative; no fraction; "1." */
	n = parse(&p, "1 1 1700000000.123456\n2 1 1700000000.1234565\n3 1 1700000000.1234564\n"
		"4 1 -1.5\n5 1 12\n6 1 3.\n7 1 0.0000009\n8 1 -0.0000005\n", -1, 0);
	CHECK_EQ_INT(n, 8);
	if (n == 8) {
		CHECK_EQ_INT(p[0].time_us, 1700000000123456LL);
		CHECK_EQ_INT(p[1].time_us, 1700000000123457LL);
		CHECK_EQ_INT(p[2].time_us, 1700000000123456LL);
		CHECK_EQ_INT(p[3].time_us, -1500000LL);
		CHECK_EQ_INT(p[4].time_us, 12000000LL);
		CHECK_EQ_INT(p[5].time_us, 3000000LL);
		CHECK_EQ_INT(p[6].time_us, 1LL);
		CHECK_EQ_INT(p[7].time_us, -1LL);
	}
	free(p);

	/* times within Firestore's timestamps (years 1 to 9999) only: a time in milliseconds, or
	 * past either end (also by rounding), fails the whole buffer */
	n = parse(&p, "1 1 -62135596800\n2 1 253402300799.999999\n3 1 253402300799.9999994\n", -1, 0);
	CHECK_EQ_INT(n, 3);
	if (n == 3) {
		CHECK_EQ_INT(p[0].time_us, -62135596800000000LL);
		CHECK_EQ_INT(p[1].time_us, 253402300799999999LL);
		CHECK_EQ_INT(p[2].time_us, 253402300799999999LL);
	}
	free(p);
	{
		static const char *const out_of_range[] = {"1 0.5 1733400000000\n",
			"1 0.5 253402300800\n", "1 0.5 253402300799.9999995\n", "1 0.5 -62135596800.000001\n",
			"0 1\n1 0.5 99999999999999\n", "1 0.5 -9223372036854\n"};
		for (size_t i = 0; i < sizeof(out_of_range) / sizeof(*out_of_range); i++) {
			p = (al_point *)1;
			CHECK_EQ_INT(al_metric_parse(&p, &n, out_of_range[i], strlen(out_of_range[i]), -1, 0),
				AL_EINVAL);
			CHECK(p == NULL);
			CHECK(strstr(al_error_last(), "years 1 to 9999") != NULL);
		}
	}

	/* blank lines and a missing final newline */
	n = parse(&p, "\n   \n\t\r\n1.5\n\n2.5", 9, 0);
	CHECK_EQ_INT(n, 2);
	if (n == 2) {
		CHECK_EQ_INT(p[0].step, 10);
		CHECK_EQ_INT(p[1].step, 11);
		CHECK(p[1].value == 2.5);
	}
	free(p);

	/* nothing but blanks: zero points, no array */
	n = parse(&p, "\n \n", -1, 0);
	CHECK_EQ_INT(n, 0);
	CHECK(p == NULL);
	n = parse(&p, "", -1, 0);
	CHECK_EQ_INT(n, 0);

	/* extreme steps */
	n = parse(&p, "9223372036854775807 1\n-9223372036854775808 2\n-5 3\n", -1, 0);
	CHECK_EQ_INT(n, 3);
	if (n == 3) {
		CHECK(p[0].step == INT64_MAX);
		CHECK(p[1].step == INT64_MIN);
		CHECK_EQ_INT(p[2].step, -5);
	}
	free(p);
}

static void test_chaining(void)
{
	al_point *p;
	size_t n = parse(&p, "1\n2\n10 3\n4\n5\n3 6\n7\n", 4, 0);
	int64_t want[] = { 5, 6, 10, 11, 12, 3, 4 };

	CHECK_EQ_INT(n, 7);
	for (size_t i = 0; i < n && i < 7; i++) {
		CHECK_EQ_INT(p[i].step, want[i]);
		CHECK(p[i].value == (double)i + 1);
	}
	free(p);

	/* many lines: the array grows */
	{
		size_t cnt = 10000, len = 0;
		char *buf = malloc(cnt * 16);
		for (size_t i = 0; i < cnt; i++)
			len += (size_t)sprintf(buf + len, "%zu.25\n", i);
		CHECK_OK(al_metric_parse(&p, &n, buf, len, -1, NOW));
		CHECK_EQ_INT(n, cnt);
		CHECK_EQ_INT(p[cnt - 1].step, (int64_t)cnt - 1);
		CHECK(p[cnt - 1].value == (double)(cnt - 1) + 0.25);
		free(p);
		free(buf);
	}

	/* the chained step cannot overflow */
	parse(&p, "1\n", INT64_MAX, AL_EINVAL);
	parse(&p, "9223372036854775807 1\n2\n", -1, AL_EINVAL);
}

static void test_bad(void)
{
	static const char *bad[] = {
		"abc\n", "1 2 3 4\n", "1.5 2\n", "99999999999999999999 1\n", "-99999999999999999999 1\n",
		"1 abc\n", "1 2 abc\n", "1 2 1.5e9\n", "1 2 1.2.3\n", "1 2 -\n", "1 2 .\n",
		"1,,2\n", ",1\n", "1,\n", "1 ,\n", "0x10 1\n", "1e3 1\n", "+ 1\n", "1 2x\n",
		"1 1e999\n", "1 2 99999999999999999999\n", "1\t2\t3\t4\n", "1 nan 1 1\n",
		"one two\n",
	};
	al_point *p;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse(&p, bad[i], -1, AL_EINVAL);

	/* one bad line anywhere rejects the whole buffer, and the message names it */
	parse(&p, "1\n2\n\nbogus line\n3\n", -1, AL_EINVAL);
	CHECK(strstr(al_error_last(), "line 4") != NULL);
	CHECK(strstr(al_error_last(), "bogus line") != NULL);

	/* the quoted line is cut at 80 characters */
	{
		char line[300];
		memset(line, 'x', 200);
		strcpy(line + 200, "END\n");
		parse(&p, line, -1, AL_EINVAL);
		CHECK(strstr(al_error_last(), "END") == NULL);
		CHECK(strlen(al_error_last()) < 160);
	}

	/* an embedded NUL is not a valid value */
	{
		size_t n;
		CHECK_EQ_INT(al_metric_parse(&p, &n, "1\0002\n", 4, -1, NOW), AL_EINVAL);
	}
}

static void check_fmt(double v, const char *want)
{
	char buf[AL_POINT_TEXT_MAX];
	size_t n = al_double_format(buf, v);
	CHECK_EQ_STR(buf, want);
	CHECK_EQ_INT(n, strlen(want));
}

static void test_double_format(void)
{
	char buf[AL_POINT_TEXT_MAX];

	check_fmt(0.93, "0.93");
	check_fmt(0.1, "0.1");
	check_fmt(1.0, "1");
	check_fmt(0.0, "0");
	check_fmt(-0.0, "-0");
	check_fmt(1e-7, "1e-07");
	check_fmt(1e300, "1e+300");
	check_fmt(-2.5, "-2.5");
	check_fmt(NAN, "nan");
	check_fmt(-NAN, "nan");
	check_fmt(INFINITY, "inf");
	check_fmt(-INFINITY, "-inf");
	check_fmt(0.1 + 0.2, "0.30000000000000004");
	check_fmt(123456789012345678.0, "1.2345678901234568e+17");
	check_fmt(5e-324, "5e-324");
	check_fmt((double)0.93f, "0.9300000071525574");

	/* random bit patterns round-trip exactly, and no shorter precision would */
	srand(12345);
	for (int i = 0; i < 200000; i++) {
		uint64_t bits = 0;
		double v, back;
		size_t n;
		for (int k = 0; k < 4; k++)
			bits = (bits << 16) ^ (uint64_t)(rand() & 0xffff);
		memcpy(&v, &bits, sizeof(v));
		if (i % 2)
			v = (double)rand() / RAND_MAX * 100.0;  /* typical metric magnitudes too */
		n = al_double_format(buf, v);
		CHECK(n == strlen(buf));
		if (isnan(v)) {
			CHECK(strcmp(buf, "nan") == 0);
			continue;
		}
		back = strtod(buf, NULL);
		if (memcmp(&back, &v, sizeof(v)) != 0) {
			fprintf(stderr, "round trip failed: %.17g -> %s\n", v, buf);
			CHECK(0);
			break;
		}
		if (i % 10 == 0 && !isinf(v)) {
			/* shortest: one digit less must not round-trip */
			char shorter[64];
			for (int prec = 1; prec < 17; prec++) {
				snprintf(shorter, sizeof(shorter), "%.*g", prec, v);
				if (strtod(shorter, NULL) == v) {
					CHECK_EQ_STR(buf, shorter);
					break;
				}
			}
		}
	}
}

/* The printf search al_double_format always did (shortest "%.*g" that reads back), kept here as
 * the reference for its printf-free path: the bytes of a metric's text must not change. */
static size_t reference_format(char *buf, double v)
{
	int prec, lo = 1, hi = 17;
	if (isnan(v))
		return (size_t)sprintf(buf, "nan");
	if (isinf(v))
		return (size_t)sprintf(buf, v < 0 ? "-inf" : "inf");
	if (v == 0 || fabs(v) >= DBL_MIN) {
		for (prec = 15; prec < 17; prec++) {
			snprintf(buf, 32, "%.*g", prec, v);
			if (strtod(buf, NULL) == v)
				break;
		}
		return (size_t)snprintf(buf, 32, "%.*g", prec, v);
	}
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		snprintf(buf, 32, "%.*g", mid, v);
		if (strtod(buf, NULL) == v)
			hi = mid;
		else
			lo = mid + 1;
	}
	return (size_t)snprintf(buf, 32, "%.*g", lo, v);
}

static uint64_t rnd64(void)
{
	uint64_t r = 0;
	for (int k = 0; k < 4; k++)
		r = (r << 16) ^ (uint64_t)(rand() & 0xffff);
	return r;
}

static void same_as_reference(double v, int *bad)
{
	char got[AL_POINT_TEXT_MAX], want[64];
	size_t n = al_double_format(got, v), wn = reference_format(want, v);
	if (n != wn || strcmp(got, want) != 0) {
		if ((*bad)++ < 10)
			fprintf(stderr, "%.17g: \"%s\", the printf search gives \"%s\"\n", v, got, want);
		CHECK(0);
	}
}

/* Every kind of value formats exactly as the printf search did: decimals of 1 to 17 digits at
 * every scale, integers to 2^53 and past, the edges of the fixed-notation range, random bits. */
static void test_double_format_same_bytes(void)
{
	static const double edges[] = {1e-4, 1e-5, 9.9999999999999991e-5, 1e15, 999999999999999.0,
		999999999999999.9, 1e15 - 0.125, 9007199254740992.0, 9007199254740993.0, 4503599627370496.5,
		0.1, 0.2, 0.3, 1.0 / 3, 2.0 / 3, 1e-300, 1e308, 1.7976931348623157e308, 5e-324,
		2.2250738585072014e-308, 123.456, 0.001, 0.0001, 0.00012345678901234, 1e14, 1.5e14,
		123456789012345.6, 12345678901234.56, 0.30000000000000004, 100, 1e22, 1e23, 0.0,
		3e-5, 9.9e-5, 1e-6, 2.5e-7, 1.234567890123e-10, 1e-21, 1e-22, 1.5e-22, 1e-23,
		0.000099999999999999, 1.00000000000001e-5};
	int bad = 0;
	srand(777);
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		for (int sgn = 0; sgn < 2; sgn++) {
			double v = sgn ? -edges[i] : edges[i];
			same_as_reference(v, &bad);
			same_as_reference(nextafter(v, 0), &bad);
			same_as_reference(nextafter(v, INFINITY), &bad);
		}
	for (int i = 0; i < 300000; i++) {
		uint64_t bits = rnd64();
		int digits = 1 + rand() % 17, scale = rand() % 44 - 22;
		double v;
		switch (i % 5) {
		case 0:   /* random bits */
			memcpy(&v, &bits, sizeof(v));
			break;
		case 1: { /* a decimal of 1 to 17 digits, as written: "%.*e" read back */
			char text[64];
			snprintf(text, sizeof(text), "%.*e", digits - 1, (double)(bits % 1000000007) / 1000000007.0 * 9 + 1);
			v = strtod(text, NULL) * pow(10, scale);
			snprintf(text, sizeof(text), "%.*ge%d", digits, (double)(bits % 1000000007) / 1000000007.0 * 9 + 1, scale);
			if (i % 8 == 1)
				v = strtod(text, NULL);
			break;
		}
		case 2:   /* integers, to 2^53 and past */
			v = (double)(bits >> (rand() % 64));
			break;
		case 3:   /* typical metric values: a few decimals */
			v = (double)(int64_t)(bits % 2000001 - 1000000) / pow(10, rand() % 8);
			break;
		default:  /* small ones (learning rates, gradient norms): exponent notation */
			v = (double)(int64_t)(bits % 2000001 - 1000000) / pow(10, 4 + rand() % 22);
			break;
		}
		same_as_reference(v, &bad);
	}
}

static void check_point(int64_t step, double v, int64_t us, const char *want)
{
	char buf[AL_POINT_TEXT_MAX];
	al_point p = { .step = step, .value = v, .time_us = us };
	size_t n = al_metric_format(buf, &p);
	CHECK_EQ_STR(buf, want);
	CHECK_EQ_INT(n, strlen(want));
}

static void test_point_format(void)
{
	check_point(3, 0.93, 1700000000123456LL, "3 0.93 1700000000.123\n");
	check_point(0, 1, 1700000000999999LL, "0 1 1700000000.999\n");
	check_point(-4, -0.0, 0, "-4 -0 0.000\n");
	check_point(1, NAN, 5000, "1 nan 0.005\n");
	check_point(1, -INFINITY, 1000000, "1 -inf 1.000\n");
	check_point(2, 1e-7, -1, "2 1e-07 -0.001\n");
	check_point(2, 1e300, -1000, "2 1e+300 -0.001\n");
	check_point(2, 0.5, -1001, "2 0.5 -0.002\n");
	check_point(2, 0.5, -1500000, "2 0.5 -1.500\n");
	check_point(2, 0.5, -1500001, "2 0.5 -1.501\n");
	check_point(INT64_MIN, -1.5e-300, INT64_MIN,
		"-9223372036854775808 -1.5e-300 -9223372036854.776\n");
	check_point(INT64_MAX, 1, INT64_MAX, "9223372036854775807 1 9223372036854.775\n");

	/* format → parse gives the point back (time at millisecond resolution) */
	{
		char buf[AL_POINT_TEXT_MAX];
		al_point in = { .step = 42, .value = 0.123456789, .time_us = 1700000000123000LL }, *out;
		size_t n, len = al_metric_format(buf, &in);
		CHECK_OK(al_metric_parse(&out, &n, buf, len, -1, 0));
		CHECK_EQ_INT(n, 1);
		if (n == 1) {
			CHECK_EQ_INT(out[0].step, 42);
			CHECK(out[0].value == in.value);
			CHECK_EQ_INT(out[0].time_us, in.time_us);
		}
		free(out);
	}
}

/* A batch gives the lines al_metric_format gives one by one: the seconds copied from the point
 * before only when they are the same (the same second, either side of it, negative times). */
static void test_points_format(void)
{
	static const int64_t us[] = {1700000000123456LL, 1700000000999999LL, 1700000001000000LL,
		1700000001000000LL, 1700000000000000LL, 0, -1, -1000, -1001, -999999, -1000000,
		-1000001, -1500000, 5000, 999, 1000, INT64_MIN, INT64_MIN, INT64_MAX, 1700000000123456LL};
	enum { N = sizeof(us) / sizeof(us[0]) };
	al_point pts[N];
	char one[N * AL_POINT_TEXT_MAX + 1], batch[N * AL_POINT_TEXT_MAX + 1];
	size_t i, len = 0, got;

	for (i = 0; i < N; i++) {
		pts[i] = (al_point){ .step = (int64_t)i - 3, .value = (double)i / 7, .time_us = us[i] };
		len += al_metric_format(one + len, &pts[i]);
	}
	got = al_metric_format_points(batch, pts, N);
	CHECK_EQ_INT(got, len);
	CHECK_EQ_STR(batch, one);
	/* from every start, as a reader's batches begin anywhere */
	for (i = 0; i < N; i++) {
		size_t k;
		len = 0;
		for (k = i; k < N; k++)
			len += al_metric_format(one + len, &pts[k]);
		CHECK_EQ_INT(al_metric_format_points(batch, pts + i, N - i), len);
		CHECK_EQ_STR(batch, one);
	}
	CHECK_EQ_INT(al_metric_format_points(batch, pts, 0), 0);
	CHECK_EQ_STR(batch, "");
}

int main(void)
{
	test_forms();
	test_chaining();
	test_bad();
	test_points_format();
	test_double_format();
	test_double_format_same_bytes();
	test_point_format();
	CHECK_DONE();
}
