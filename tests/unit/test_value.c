/* aletheia unit test: typed values, plain JSON conversion and RFC 3339 times (core/doc/value.c). */
#include <math.h>
#include <string.h>
#include "core/doc/value.h"
#include "check.h"

/* Serializes a cJSON value unformatted into a static buffer (for comparisons). */
static const char *text(const cJSON *v)
{
	static char buf[4096];
	char *s = v ? cJSON_PrintUnformatted(v) : NULL;
	snprintf(buf, sizeof(buf), "%s", s ? s : "(null)");
	free(s);
	return buf;
}

/* Serializes to text and parses back, as the store does. */
static cJSON *reparse(const cJSON *v)
{
	char *s = cJSON_PrintUnformatted(v);
	cJSON *r = cJSON_Parse(s);
	free(s);
	return r;
}

static void test_constructors_and_readers(void)
{
	cJSON *v, *r;
	int64_t n;
	double d;
	int b;

	v = al_value_int(INT64_MIN);
	CHECK_EQ_STR(text(v), "{\"integerValue\":\"-9223372036854775808\"}");
	r = reparse(v);
	CHECK_OK(al_value_get_int(&n, r));
	CHECK(n == INT64_MIN);
	CHECK_OK(al_value_get_double(&d, r)); /* integers read as doubles too */
	CHECK(d == (double)INT64_MIN);
	CHECK_EQ_INT(al_value_get_bool(&b, r), AL_EINVAL);
	CHECK(al_value_get_string(r) == NULL);
	cJSON_Delete(v);
	cJSON_Delete(r);

	v = al_value_int(INT64_MAX);
	CHECK_OK(al_value_get_int(&n, v));
	CHECK(n == INT64_MAX);
	cJSON_Delete(v);

	v = al_value_double(0.1);
	r = reparse(v);
	CHECK_OK(al_value_get_double(&d, r));
	CHECK(d == 0.1);
	CHECK_EQ_INT(al_value_get_int(&n, r), AL_EINVAL);
	cJSON_Delete(v);
	cJSON_Delete(r);

	v = al_value_double(INFINITY);
	CHECK_EQ_STR(text(v), "{\"doubleValue\":\"Infinity\"}");
	CHECK_OK(al_value_get_double(&d, v));
	CHECK(isinf(d) && d > 0);
	cJSON_Delete(v);
	v = al_value_double(-INFINITY);
	CHECK_EQ_STR(text(v), "{\"doubleValue\":\"-Infinity\"}");
	CHECK_OK(al_value_get_double(&d, v));
	CHECK(isinf(d) && d < 0);
	cJSON_Delete(v);
	v = al_value_double(NAN);
	CHECK_EQ_STR(text(v), "{\"doubleValue\":\"NaN\"}");
	CHECK_OK(al_value_get_double(&d, v));
	CHECK(isnan(d));
	cJSON_Delete(v);

	v = al_value_string("héllo \"x\"");
	r = reparse(v);
	CHECK_EQ_STR(al_value_get_string(r), "héllo \"x\"");
	CHECK_EQ_INT(al_value_get_int(&n, r), AL_EINVAL);
	cJSON_Delete(v);
	cJSON_Delete(r);

	v = al_value_bool(7);
	CHECK_EQ_STR(text(v), "{\"booleanValue\":true}");
	CHECK_OK(al_value_get_bool(&b, v));
	CHECK_EQ_INT(b, 1);
	cJSON_Delete(v);

	v = al_value_null();
	CHECK_EQ_STR(text(v), "{\"nullValue\":null}");
	cJSON_Delete(v);

	v = al_value_time(1795810190123456LL);
	CHECK_EQ_STR(text(v), "{\"timestampValue\":\"2026-11-27T20:09:50.123456Z\"}");
	CHECK_OK(al_value_get_time(&n, v));
	CHECK_EQ_INT(n, 1795810190123456LL);
	cJSON_Delete(v);

	/* map and array, including Firestore's empty forms without "fields"/"values" */
	cJSON *fields = cJSON_CreateObject();
	al_fields_set(fields, "a", al_value_int(1));
	v = al_value_map(fields);
	CHECK_EQ_STR(text(v), "{\"mapValue\":{\"fields\":{\"a\":{\"integerValue\":\"1\"}}}}");
	CHECK(al_value_get_map(v) == fields);
	CHECK(al_value_get_array(v) == NULL);
	cJSON_Delete(v);
	cJSON *values = cJSON_CreateArray();
	cJSON_AddItemToArray(values, al_value_string("x"));
	v = al_value_array(values);
	CHECK(al_value_get_array(v) == values);
	CHECK(al_value_get_map(v) == NULL);
	cJSON_Delete(v);
	v = cJSON_Parse("{\"arrayValue\":{}}");
	CHECK(al_value_get_array(v) != NULL);
	CHECK_EQ_INT(cJSON_GetArraySize(al_value_get_array(v)), 0);
	cJSON_Delete(v);
	v = cJSON_Parse("{\"mapValue\":{}}");
	CHECK(al_value_get_map(v) != NULL);
	CHECK_EQ_INT(cJSON_GetArraySize(al_value_get_map(v)), 0);
	cJSON_Delete(v);

	/* bad input */
	CHECK_EQ_INT(al_value_get_int(&n, NULL), AL_EINVAL);
	v = cJSON_Parse("{\"integerValue\":\"12x\"}");
	CHECK_EQ_INT(al_value_get_int(&n, v), AL_EINVAL);
	cJSON_Delete(v);
	v = cJSON_Parse("{\"integerValue\":\"99999999999999999999\"}");
	CHECK_EQ_INT(al_value_get_int(&n, v), AL_EINVAL);
	cJSON_Delete(v);
	v = cJSON_Parse("{\"doubleValue\":\"nope\"}");
	CHECK_EQ_INT(al_value_get_double(&d, v), AL_EINVAL);
	cJSON_Delete(v);
	v = cJSON_Parse("{\"timestampValue\":\"yesterday\"}");
	CHECK_EQ_INT(al_value_get_time(&n, v), AL_EINVAL);
	cJSON_Delete(v);
}

static void test_fields(void)
{
	cJSON *f = cJSON_CreateObject();
	int64_t n;
	double d;
	int b;

	al_fields_set(f, "n", al_value_int(5));
	al_fields_set(f, "n", al_value_int(6)); /* replaces */
	al_fields_set(f, "d", al_value_double(2.5));
	al_fields_set(f, "s", al_value_string("str"));
	al_fields_set(f, "b", al_value_bool(0));
	al_fields_set(f, "t", al_value_time(-1));
	CHECK_EQ_INT(cJSON_GetArraySize(f), 5);
	CHECK_OK(al_fields_get_int(&n, f, "n"));
	CHECK_EQ_INT(n, 6);
	CHECK_OK(al_fields_get_double(&d, f, "d"));
	CHECK(d == 2.5);
	CHECK_OK(al_fields_get_double(&d, f, "n"));
	CHECK(d == 6.0);
	CHECK_OK(al_fields_get_bool(&b, f, "b"));
	CHECK_EQ_INT(b, 0);
	CHECK_OK(al_fields_get_time(&n, f, "t"));
	CHECK_EQ_INT(n, -1);
	CHECK_EQ_STR(al_fields_get_string(f, "s"), "str");
	CHECK(al_fields_get_string(f, "n") == NULL);
	CHECK(al_fields_get_string(f, "missing") == NULL);
	CHECK(al_fields_get(f, "d") != NULL);
	CHECK(al_fields_get(f, "missing") == NULL);
	CHECK_EQ_INT(al_fields_get_int(&n, f, "missing"), AL_ENOTFOUND);
	CHECK_EQ_INT(al_fields_get_int(&n, f, "s"), AL_EINVAL);
	CHECK_EQ_INT(al_fields_get_double(&d, f, "s"), AL_EINVAL);
	CHECK_EQ_INT(al_fields_get_bool(&b, f, "n"), AL_EINVAL);
	CHECK_EQ_INT(al_fields_get_time(&n, f, "s"), AL_EINVAL);
	CHECK_EQ_INT(al_fields_get_time(&n, f, "nope"), AL_ENOTFOUND);
	cJSON_Delete(f);
}

static void test_json(void)
{
	const char *plain = "{\"i\":3,\"neg\":-42,\"big\":1e300,\"half\":0.5,\"s\":\"x\",\"t\":true,"
		"\"f\":false,\"n\":null,\"arr\":[1,\"two\",[]],\"obj\":{\"k\":{}}}";
	cJSON *in = cJSON_Parse(plain);
	cJSON *typed = al_value_from_json(in);
	cJSON *back, *v;
	const cJSON *m;
	int64_t n;

	CHECK(typed != NULL);
	m = al_value_get_map(typed);
	CHECK(m != NULL);
	CHECK_EQ_STR(text(al_fields_get(m, "i")), "{\"integerValue\":\"3\"}");
	CHECK_EQ_STR(text(al_fields_get(m, "neg")), "{\"integerValue\":\"-42\"}");
	CHECK_EQ_STR(text(al_fields_get(m, "big")), "{\"doubleValue\":1e+300}");
	CHECK_EQ_STR(text(al_fields_get(m, "half")), "{\"doubleValue\":0.5}");
	CHECK_EQ_STR(text(al_fields_get(m, "n")), "{\"nullValue\":null}");
	CHECK_EQ_STR(text(al_fields_get(m, "arr")), "{\"arrayValue\":{\"values\":["
		"{\"integerValue\":\"1\"},{\"stringValue\":\"two\"},{\"arrayValue\":{\"values\":[]}}]}}");
	CHECK_EQ_STR(text(al_fields_get(m, "obj")),
		"{\"mapValue\":{\"fields\":{\"k\":{\"mapValue\":{\"fields\":{}}}}}}");
	back = al_value_to_json(typed);
	CHECK_EQ_STR(text(back), text(in));
	cJSON_Delete(back);
	cJSON_Delete(typed);
	cJSON_Delete(in);

	/* 2^53 is an integer, 2^53 + 2 and 1.5 are doubles */
	in = cJSON_CreateNumber(9007199254740992.0);
	v = al_value_from_json(in);
	CHECK_OK(al_value_get_int(&n, v));
	CHECK_EQ_INT(n, 9007199254740992LL);
	cJSON_Delete(v);
	cJSON_Delete(in);
	in = cJSON_CreateNumber(-9007199254740994.0);
	v = al_value_from_json(in);
	CHECK(al_fields_get(v, "doubleValue") != NULL);
	cJSON_Delete(v);
	cJSON_Delete(in);

	/* to_json: numbers become raw text that reads back exactly (NaN/Inf as Python writes them,
	 * doubles always with a fraction or exponent, integers past 2^53 as digits), timestamps
	 * RFC 3339 strings, odd offsets normalized */
	v = al_value_double(NAN);
	back = al_value_to_json(v);
	CHECK(cJSON_IsRaw(back) && strcmp(back->valuestring, "NaN") == 0);
	cJSON_Delete(back);
	cJSON_Delete(v);
	v = al_value_double(-INFINITY);
	back = al_value_to_json(v);
	CHECK(cJSON_IsRaw(back) && strcmp(back->valuestring, "-Infinity") == 0);
	cJSON_Delete(back);
	cJSON_Delete(v);
	v = al_value_double(-0.0);
	back = al_value_to_json(v);
	CHECK(cJSON_IsRaw(back) && strcmp(back->valuestring, "-0.0") == 0);
	cJSON_Delete(back);
	cJSON_Delete(v);
	v = al_value_double(1e300);
	back = al_value_to_json(v);
	CHECK(cJSON_IsRaw(back) && strcmp(back->valuestring, "1e+300") == 0);
	cJSON_Delete(back);
	cJSON_Delete(v);
	v = al_value_int(INT64_MAX);
	back = al_value_to_json(v);
	CHECK(cJSON_IsRaw(back) && strcmp(back->valuestring, "9223372036854775807") == 0);
	cJSON_Delete(back);
	cJSON_Delete(v);
	v = cJSON_Parse("{\"timestampValue\":\"2026-11-27T21:09:50.5+01:00\"}");
	back = al_value_to_json(v);
	CHECK_EQ_STR(text(back), "\"2026-11-27T20:09:50.500000Z\"");
	cJSON_Delete(back);
	cJSON_Delete(v);
	v = al_value_int(INT64_C(1) << 40);
	back = al_value_to_json(v);
	CHECK(cJSON_IsRaw(back) && strcmp(back->valuestring, "1099511627776") == 0);
	cJSON_Delete(back);
	cJSON_Delete(v);
	v = cJSON_Parse("{\"mapValue\":{}}");
	back = al_value_to_json(v);
	CHECK_EQ_STR(text(back), "{}");
	cJSON_Delete(back);
	cJSON_Delete(v);

	/* bad typed input gives NULL */
	const char *bad[] = {"{}", "3", "{\"fooValue\":1}", "{\"integerValue\":\"1\",\"stringValue\":\"x\"}",
		"{\"integerValue\":\"x\"}", "{\"timestampValue\":\"2026-13-01T00:00:00Z\"}",
		"{\"mapValue\":{\"fields\":{\"a\":{\"bogus\":1}}}}", "{\"arrayValue\":{\"values\":[3]}}",
		"{\"booleanValue\":\"yes\"}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = cJSON_Parse(bad[i]);
		back = al_value_to_json(v);
		if (back)
			fprintf(stderr, "to_json accepted %s\n", bad[i]);
		CHECK(back == NULL);
		cJSON_Delete(back);
		cJSON_Delete(v);
	}
	CHECK(al_value_to_json(NULL) == NULL);
	CHECK(al_value_from_json(NULL) == NULL);
}

/* Context added to a cause keeps the cause (the message is formatted aside, not into itself). */
static void test_error_context(void)
{
	al_error_set(AL_EIO, "connection reset");
	CHECK_EQ_INT(al_error_set(AL_EIO, "cannot create p/e: %s", al_error_last()), AL_EIO);
	CHECK_EQ_STR(al_error_last(), "cannot create p/e: connection reset");
	al_error_set_errno(AL_EIO, 2, "open %s", al_error_last());
	CHECK_EQ_STR(al_error_last(), "open cannot create p/e: connection reset: No such file or directory");
}

static void test_time(void)
{
	char buf[40];
	int64_t us;

	CHECK_EQ_STR(al_time_format(buf, 0, 6), "1970-01-01T00:00:00.000000Z");
	CHECK_EQ_STR(al_time_format(buf, 1795810190123456LL, 6), "2026-11-27T20:09:50.123456Z");
	CHECK_EQ_STR(al_time_format(buf, 1795810190123456LL, 3), "2026-11-27T20:09:50.123Z");
	CHECK_EQ_STR(al_time_format(buf, 1795810190123456LL, 0), "2026-11-27T20:09:50Z");
	/* before 1970: floor division keeps the fraction positive */
	CHECK_EQ_STR(al_time_format(buf, -1, 6), "1969-12-31T23:59:59.999999Z");
	CHECK_EQ_STR(al_time_format(buf, -1500000, 3), "1969-12-31T23:59:58.500Z");
	CHECK_EQ_STR(al_time_format(buf, -1000000, 6), "1969-12-31T23:59:59.000000Z");
	CHECK_EQ_STR(al_time_format(buf, -86400000000LL * 365, 0), "1969-01-01T00:00:00Z");

	CHECK_OK(al_time_parse(&us, "2026-11-27T20:09:50.123456Z"));
	CHECK_EQ_INT(us, 1795810190123456LL);
	CHECK_OK(al_time_parse(&us, "2026-11-27T20:09:50Z"));
	CHECK_EQ_INT(us, 1795810190000000LL);
	CHECK_OK(al_time_parse(&us, "2026-11-27T20:09:50.1Z"));
	CHECK_EQ_INT(us, 1795810190100000LL);
	CHECK_OK(al_time_parse(&us, "2026-11-27T20:09:50.123456789Z")); /* nanoseconds truncated */
	CHECK_EQ_INT(us, 1795810190123456LL);
	CHECK_OK(al_time_parse(&us, "2026-11-27T22:39:50.123+02:30"));
	CHECK_EQ_INT(us, 1795810190123000LL);
	CHECK_OK(al_time_parse(&us, "2026-11-27T15:09:50-05:00"));
	CHECK_EQ_INT(us, 1795810190000000LL);
	CHECK_OK(al_time_parse(&us, "1969-12-31T23:59:59.999999Z"));
	CHECK_EQ_INT(us, -1);
	CHECK_OK(al_time_parse(&us, "1969-12-31T23:59:59Z")); /* timegm's -1 is a real time here */
	CHECK_EQ_INT(us, -1000000);
	CHECK_OK(al_time_parse(&us, "1900-03-01T00:00:00Z"));
	CHECK_EQ_INT(us, -2203891200000000LL);
	CHECK_OK(al_time_parse(&us, "2024-02-29t00:00:00z"));

	/* round trips over a spread of times, positive and negative */
	for (int64_t t = -4000000000123457LL; t < 4000000000000000LL; t += 77777777777777LL) {
		CHECK_OK(al_time_parse(&us, al_time_format(buf, t, 6)));
		CHECK_EQ_INT(us, t);
	}

	const char *bad[] = {"", "2026-11-27", "2026-11-27T20:09:50", "2026-11-27T20:09:50.Z",
		"2026-11-27T20:09:50.5", "2026-11-27T24:00:00Z", "2026-02-29T00:00:00Z",
		"2026-11-27T20:09:50+0100", "2026-11-27T20:09:50Zjunk", "26-11-27T20:09:50Z",
		"2026-00-10T00:00:00Z", "2026-11-27T20:60:00Z", "2026-11-27X20:09:50Z"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = al_time_parse(&us, bad[i]);
		if (rc != AL_EINVAL)
			fprintf(stderr, "parse accepted '%s'\n", bad[i]);
		CHECK_EQ_INT(rc, AL_EINVAL);
	}
	CHECK_EQ_INT(al_time_parse(&us, NULL), AL_EINVAL);
	CHECK(strstr(al_error_last(), "timestamp") != NULL);
}

int main(void)
{
	test_constructors_and_readers();
	test_fields();
	test_json();
	test_time();
	test_error_context();
	CHECK_DONE();
}
