/* Unit tests for core/series/chunk.c: a chunk document's points read straight from its stored
 * text are those its parsed document gives (cJSON and value.h, as series.c reads one), for the
 * plain shape aletheia writes and for every other shape (taken or refused whole). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "core/series/chunk.h"
#include "core/series/metric.h"
#include "core/doc/json.h"
#include "core/doc/value.h"
#include "check.h"

#define MAXP 5000

/* The points as the document reading gives them (series.c chunk_next). */
static size_t reference(al_point *out, const char *text, size_t from, size_t max)
{
	cJSON *f = cJSON_Parse(text);
	const cJSON *steps, *values, *times, *s, *v, *t;
	size_t n = 0, k;
	steps = al_value_get_array(al_fields_get(f, "steps"));
	values = al_value_get_array(al_fields_get(f, "values"));
	times = al_value_get_array(al_fields_get(f, "times"));
	s = steps ? steps->child : NULL;
	v = values ? values->child : NULL;
	t = times ? times->child : NULL;
	for (k = 0; s && n < max; k++) {
		al_point p = {0, NAN, 0};
		al_value_get_int(&p.step, s);
		if (v)
			al_value_get_double(&p.value, v);
		if (t)
			al_value_get_time(&p.time_us, t);
		al_error_clear();
		if (k >= from)
			out[n++] = p;
		s = s->next;
		v = v ? v->next : NULL;
		t = t ? t->next : NULL;
	}
	cJSON_Delete(f);
	return n;
}

static int same_point(const al_point *a, const al_point *b)
{
	return a->step == b->step && a->time_us == b->time_us &&
		(isnan(a->value) ? isnan(b->value) : memcmp(&a->value, &b->value, sizeof(double)) == 0);
}

/* want_fast: the text must be read by the fast path (1), refused by it (0), or either (-1);
 * whatever it gives must equal the reference. */
static void check_text(const char *what, const char *text, size_t from, size_t max, int want_fast)
{
	static al_point got[MAXP], want[MAXP];
	al_chunk_clock clock = {{0}, 0};
	size_t n = 0, wn, i;
	int rc = al_chunk_points(got, &n, &clock, text, strlen(text), from, max);
	if (want_fast >= 0 && (rc == 0) != want_fast) {
		fprintf(stderr, "%s: fast path rc %d, expected %s (%s)\n", what, rc,
			want_fast ? "taken" : "refused", al_error_last());
		CHECK(0);
	}
	if (rc != 0) {
		CHECK_EQ_INT(rc, AL_EINVAL);
		return;
	}
	wn = reference(want, text, from, max);
	if (n != wn)
		fprintf(stderr, "%s: %zu points, the document gives %zu\n", what, n, wn);
	CHECK_EQ_INT(n, wn);
	for (i = 0; i < n && i < wn; i++)
		if (!same_point(&got[i], &want[i])) {
			fprintf(stderr, "%s: point %zu: %lld %.17g %lld, the document gives %lld %.17g %lld\n",
				what, i, (long long)got[i].step, got[i].value, (long long)got[i].time_us,
				(long long)want[i].step, want[i].value, (long long)want[i].time_us);
			CHECK(0);
			break;
		}
}

/* The fields of a chunk as series.c writes them (chunk_fields), printed as the store keeps them. */
static char *chunk_text(const al_point *p, size_t n, int pretty)
{
	cJSON *f = cJSON_CreateObject(), *st = cJSON_CreateArray(), *va = cJSON_CreateArray(),
	      *ti = cJSON_CreateArray();
	char *text = NULL;
	size_t i;
	al_fields_set(f, "writer", al_value_string("0123456789abcdef"));
	al_fields_set(f, "seq", al_value_int(3));
	for (i = 0; i < n; i++) {
		cJSON_AddItemToArray(st, al_value_int(p[i].step));
		cJSON_AddItemToArray(va, al_value_double(p[i].value));
		cJSON_AddItemToArray(ti, al_value_time(p[i].time_us));
	}
	al_fields_set(f, "steps", al_value_array(st));
	al_fields_set(f, "values", al_value_array(va));
	al_fields_set(f, "times", al_value_array(ti));
	if (pretty)
		text = cJSON_Print(f);
	else
		CHECK_OK(al_json_print(&text, NULL, f, 0));
	cJSON_Delete(f);
	return text;
}

static const double tricky[] = {0.0, -0.0, 1.0, -1.0, 0.1, 0.93, 1e308, -1e308,
	1.7976931348623157e308, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-7, 0.30000000000000004,
	123456789012345678.0, 9007199254740993.0, 0.12345678901234567, 1.0 / 3, 1e22, 1e-300};

static void tricky_points(al_point *p, size_t n)
{
	size_t i, nt = sizeof(tricky) / sizeof(tricky[0]);
	for (i = 0; i < n; i++) {
		p[i].step = i % 7 == 0 ? INT64_MAX - (int64_t)i : i % 7 == 1 ? INT64_MIN + (int64_t)i :
			i % 7 == 2 ? (int64_t)9007199254740993LL + (int64_t)i : (int64_t)i * 1000;
		p[i].value = i % 5 == 0 ? NAN : i % 11 == 0 ? INFINITY : i % 13 == 0 ? -INFINITY :
			tricky[i % nt] * (i % 2 ? 1 : -1);
		/* times: years 1 to 9999, microseconds, the same second many times over */
		p[i].time_us = i % 9 == 0 ? -62135596800000000LL + (int64_t)i : i % 9 == 1 ?
			253402300799999999LL - (int64_t)i : 1700000000000000LL + (int64_t)(i / 100) * 1000000 +
			(int64_t)(i * 7919 % 1000000);
	}
}

static void test_plain(void)
{
	static al_point p[4096];
	char *text;
	tricky_points(p, 4096);
	text = chunk_text(p, 4096, 0);
	check_text("whole chunk", text, 0, 4096, 1);
	check_text("from inside", text, 1000, 4096, 1);
	check_text("a window", text, 4000, 50, 1);
	check_text("past the end", text, 4096, 10, 1);
	check_text("last point", text, 4095, 10, 1);
	free(text);
	text = chunk_text(p, 1234, 0);   /* a partly filled last chunk */
	check_text("partial chunk", text, 0, 4096, 1);
	check_text("partial chunk, from inside", text, 1200, 4096, 1);
	free(text);
	text = chunk_text(p, 0, 0);
	check_text("empty chunk", text, 0, 4096, 1);
	free(text);
	text = chunk_text(p, 300, 1);    /* whitespace of a pretty printer */
	check_text("pretty", text, 0, 4096, 1);
	free(text);
}

/* Shapes other programs may write, and damage. */
static void test_other_shapes(void)
{
	static const struct {
		const char *what, *text;
		int fast;
	} cases[] = {
		{"empty arrays as Firestore writes them", "{\"steps\":{\"arrayValue\":{}},\"values\":{\"arrayValue\":{}}}", 1},
		{"integer values", "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"1\"},{\"integerValue\":\"2\"}]}},"
			"\"values\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"9007199254740993\"},{\"doubleValue\":2.5}]}}}", 1},
		{"no values, no times", "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"1\"},{\"integerValue\":\"2\"}]}}}", 1},
		{"fewer values than steps", "{\"times\":{\"arrayValue\":{\"values\":[{\"timestampValue\":\"2024-01-02T03:04:05Z\"}]}},"
			"\"values\":{\"arrayValue\":{\"values\":[{\"doubleValue\":1e5}]}},"
			"\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"1\"},{\"integerValue\":\"-2\"}]}}}", 1},
		{"other fields of every kind", "{\"a\":[1,{\"b\":null},true,false,\"x\",-0.5e3],\"steps\":{\"arrayValue\":{\"values\":"
			"[{\"integerValue\":\"7\"}]}},\"z\":{}}", 1},
		{"times with offsets, nanoseconds, lower case", "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"1\"},"
			"{\"integerValue\":\"2\"},{\"integerValue\":\"3\"},{\"integerValue\":\"4\"}]}},\"times\":{\"arrayValue\":{\"values\":["
			"{\"timestampValue\":\"2024-01-02T03:04:05.123456789Z\"},{\"timestampValue\":\"2024-01-02T03:04:05+02:00\"},"
			"{\"timestampValue\":\"2024-01-02t03:04:05.5z\"},{\"timestampValue\":\"2024-01-02T03:04:05.5Z\"}]}}}", 1},
		{"an escape in a skipped string", "{\"writer\":{\"stringValue\":\"a\\\"b\"},\"steps\":{\"arrayValue\":{\"values\":[]}}}", 0},
		{"a step as a JSON number", "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":5}]}}}", 0},
		{"a step that is no integer", "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"5x\"}]}}}", 0},
		{"a step past int64", "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"9223372036854775808\"}]}}}", 0},
		{"a value of another type", "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"5\"}]}},"
			"\"values\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"5\"}]}}}", 0},
		{"a bad time", "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"5\"}]}},"
			"\"times\":{\"arrayValue\":{\"values\":[{\"timestampValue\":\"2024-13-02T03:04:05Z\"}]}}}", 0},
		{"a hex number", "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"5\"}]}},"
			"\"values\":{\"arrayValue\":{\"values\":[{\"doubleValue\":0x10}]}}}", 0},
		{"steps twice", "{\"steps\":{\"arrayValue\":{}},\"steps\":{\"arrayValue\":{}}}", 0},
		{"cut short", "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"5\"},{\"integ", 0},
		{"not an object", "[1,2]", 0},
		{"empty", "", 0},
		{"trailing bytes", "{\"steps\":{\"arrayValue\":{}}} x", 0},
	};
	size_t i;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_text(cases[i].what, cases[i].text, 0, 100, cases[i].fast);
	/* an odd element outside the range asked for is only checked as JSON */
	check_text("odd element before the range", "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":5},"
		"{\"integerValue\":\"6\"}]}}}", 1, 100, 1);
}

/* Decimals of up to 17 digits as other writers print them ("%.*f"): the same doubles as strtod. */
static void test_decimals(void)
{
	size_t cap = 4096 * 64 + 256, len = 0, i;
	char *text = malloc(cap);
	srand(4242);
	len += (size_t)snprintf(text + len, cap - len, "{\"steps\":{\"arrayValue\":{\"values\":[");
	for (i = 0; i < 4096; i++)
		len += (size_t)snprintf(text + len, cap - len, "%s{\"integerValue\":\"%zu\"}", i ? "," : "", i);
	len += (size_t)snprintf(text + len, cap - len, "]}},\"values\":{\"arrayValue\":{\"values\":[");
	for (i = 0; i < 4096; i++) {
		double mag = pow(10, rand() % 16 - 2) * ((double)rand() / RAND_MAX);
		int decimals = rand() % 17;
		len += (size_t)snprintf(text + len, cap - len, "%s{\"doubleValue\":%s%.*f}", i ? "," : "",
			i % 3 ? "" : "-", decimals, mag);
	}
	snprintf(text + len, cap - len, "]}}}");
	check_text("decimals", text, 0, 4096, 1);
	free(text);
}

int main(void)
{
	test_plain();
	test_other_shapes();
	test_decimals();
	CHECK_DONE();
}
