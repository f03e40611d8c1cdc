/* aletheia unit test: exact JSON printing and strict parsing (core/doc/json.c), and Firestore's
 * limits on documents (al_fields_check in core/doc/value.c). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/doc/json.h"
#include "core/doc/value.h"
#include "check.h"

static char *print(const cJSON *v, unsigned flags)
{
	char *s = NULL;
	CHECK_OK(al_json_print(&s, NULL, v, flags));
	return s;
}

static int same_bits(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

/* A double printed and read back (as the stores do) is the same double, bit for bit. */
static void check_double_round_trip(double d)
{
	cJSON *v = al_value_double(d), *back;
	char *s = print(v, 0);
	double r = 0;
	back = s ? cJSON_Parse(s) : NULL;
	CHECK(back != NULL);
	CHECK_OK(al_value_get_double(&r, back));
	if (!same_bits(d, r))
		fprintf(stderr, "round trip of %.17g gave %.17g via %s\n", d, r, s ? s : "(null)");
	CHECK(same_bits(d, r) || (isnan(d) && isnan(r)));
	free(s);
	cJSON_Delete(v);
	cJSON_Delete(back);
}

static void test_print_numbers(void)
{
	const double cases[] = {0.1, 0.2, 0.30000000000000004, 1.0000000000000002, 0.20400000000000001,
		0.85333333333333339, 5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, DBL_MAX,
		-DBL_MAX, DBL_MIN, 0.0, -0.0, 1e21, 1e22, 123456789012345680.0, 9007199254740993.0,
		1.0 / 3.0, 2.0 / 3.0, -1.5e-300, 4.9406564584124654e-324};
	cJSON *v;
	char *s;
	uint64_t x = 88172645463325252ull;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_double_round_trip(cases[i]);
	/* random bit patterns, all finite doubles */
	for (int i = 0; i < 200000; i++) {
		double d;
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(&d, &x, sizeof(d));
		if (isfinite(d))
			check_double_round_trip(d);
	}
	/* the shortest form, not 17 digits */
	v = cJSON_CreateNumber(0.85333333333333339);
	s = print(v, 0);
	CHECK_EQ_STR(s, "0.8533333333333334");
	free(s);
	cJSON_Delete(v);
	v = cJSON_CreateNumber(0.30000000000000004);
	s = print(v, 0);
	CHECK_EQ_STR(s, "0.30000000000000004");
	free(s);
	cJSON_Delete(v);
	v = cJSON_CreateNumber(3.0);
	s = print(v, 0);
	CHECK_EQ_STR(s, "3");
	free(s);
	cJSON_Delete(v);
	/* non-finite numbers as Python's json module writes them */
	v = cJSON_CreateArray();
	cJSON_AddItemToArray(v, cJSON_CreateNumber(NAN));
	cJSON_AddItemToArray(v, cJSON_CreateNumber(INFINITY));
	cJSON_AddItemToArray(v, cJSON_CreateNumber(-INFINITY));
	cJSON_AddItemToArray(v, cJSON_CreateRaw("9223372036854775807"));
	s = print(v, 0);
	CHECK_EQ_STR(s, "[NaN,Infinity,-Infinity,9223372036854775807]");
	free(s);
	cJSON_Delete(v);
}

static void test_print_strings_and_layout(void)
{
	cJSON *o = cJSON_CreateObject(), *a = cJSON_CreateArray();
	char *s;

	cJSON_AddStringToObject(o, "q", "a\"b\\c\n\t\x01/é");
	cJSON_AddStringToObject(o, "bad", "x\xff" "y");
	cJSON_AddItemToObject(o, "empty", cJSON_CreateObject());
	cJSON_AddItemToArray(a, cJSON_CreateTrue());
	cJSON_AddItemToArray(a, cJSON_CreateNull());
	cJSON_AddItemToObject(o, "a", a);
	s = print(o, 0);
	CHECK_EQ_STR(s, "{\"q\":\"a\\\"b\\\\c\\n\\t\\u0001/é\",\"bad\":\"x\xEF\xBF\xBDy\",\"empty\":{},"
		"\"a\":[true,null]}");
	free(s);
	s = print(o, AL_JSON_PRETTY);
	CHECK_EQ_STR(s, "{\n  \"q\": \"a\\\"b\\\\c\\n\\t\\u0001/é\",\n  \"bad\": \"x\xEF\xBF\xBDy\",\n"
		"  \"empty\": {},\n  \"a\": [\n    true,\n    null\n  ]\n}");
	free(s);
	cJSON_Delete(o);
}

/* Parses text; returns the typed value's compact text, or NULL when refused (AL_EINVAL). */
static char *parse_text(const char *text)
{
	cJSON *v = NULL;
	char *s = NULL;
	int rc = al_json_to_value(&v, text, strlen(text));
	if (rc) {
		CHECK_EQ_INT(rc, AL_EINVAL);
		return NULL;
	}
	s = print(v, 0);
	cJSON_Delete(v);
	return s;
}

static void expect(const char *text, const char *typed)
{
	char *s = parse_text(text);
	if (typed)
		CHECK_EQ_STR(s, typed);
	else if (s) {
		fprintf(stderr, "accepted %s as %s\n", text, s);
		CHECK(s == NULL);
	}
	free(s);
}

static void test_parse(void)
{
	double d;
	cJSON *v = NULL;

	expect("9223372036854775807", "{\"integerValue\":\"9223372036854775807\"}");
	expect("-9223372036854775808", "{\"integerValue\":\"-9223372036854775808\"}");
	expect("9223372036854775808", NULL);             /* not int64: refused, never rounded */
	expect("99999999999999999999", NULL);
	expect("12345678901234567", "{\"integerValue\":\"12345678901234567\"}");
	expect("32.0", "{\"integerValue\":\"32\"}");
	/* integral literals are the exact integer, not the double nearest to them */
	expect("9007199254740993.0", "{\"integerValue\":\"9007199254740993\"}");
	expect("9223372036854775807.0", "{\"integerValue\":\"9223372036854775807\"}");
	expect("-9223372036854775808.000", "{\"integerValue\":\"-9223372036854775808\"}");
	expect("10000000000000001e0", "{\"integerValue\":\"10000000000000001\"}");
	expect("12345678901234567.8e1", "{\"integerValue\":\"123456789012345678\"}");
	expect("4503599627370496.5", "{\"doubleValue\":4503599627370496}");
	expect("1.5e3", "{\"integerValue\":\"1500\"}");
	expect("-0e0", "{\"doubleValue\":-0}");
	expect("0.000e5", "{\"integerValue\":\"0\"}");
	expect("9223372036854775808.0", "{\"doubleValue\":9.223372036854776e+18}");
	expect("1e2", "{\"integerValue\":\"100\"}");
	expect("1e20", "{\"doubleValue\":1e+20}");
	expect("0.1", "{\"doubleValue\":0.1}");
	expect("1.0000000000000002", "{\"doubleValue\":1.0000000000000002}");
	expect("-0.0", "{\"doubleValue\":-0}");
	expect("5e-324", "{\"doubleValue\":5e-324}");
	expect("0e-400", "{\"integerValue\":\"0\"}");
	expect("1e400", NULL);
	expect("1e-400", NULL);
	expect("NaN", "{\"doubleValue\":\"NaN\"}");
	expect("-Infinity", "{\"doubleValue\":\"-Infinity\"}");
	expect(" [1, \"a\", null, true, {\"k\": false}] ",
		"{\"arrayValue\":{\"values\":[{\"integerValue\":\"1\"},{\"stringValue\":\"a\"},"
		"{\"nullValue\":null},{\"booleanValue\":true},{\"mapValue\":{\"fields\":{\"k\":"
		"{\"booleanValue\":false}}}}]}}");
	expect("{}", "{\"mapValue\":{\"fields\":{}}}");
	expect("[]", "{\"arrayValue\":{\"values\":[]}}");
	expect("\"\\ud83d\\ude00 \\u00e9\"", "{\"stringValue\":\"\xF0\x9F\x98\x80 é\"}");
	expect("{\"a\":1,\"a\":2}", NULL);                 /* a key twice */
	expect("{\"b\":1,\"a\":2,\"b\":3}", NULL);
	expect("\"a\\u0000b\"", NULL);                       /* NUL */
	expect("\"\\ud800\"", NULL);                         /* lone surrogate */
	expect("\"\xff\"", NULL);                            /* not UTF-8 */
	expect("\"\xc0\xaf\"", NULL);                        /* overlong */
	expect("\"tab\there\"", NULL);                       /* raw control character */
	expect("01", NULL);
	expect("1.", NULL);
	expect(".5", NULL);
	expect("+1", NULL);
	expect("[1,]", NULL);
	expect("{\"a\":1} x", NULL);
	expect("", NULL);
	expect("nul", NULL);
	{
		char deep[200];
		memset(deep, '[', 64);
		memset(deep + 64, ']', 64);
		deep[128] = '\0';
		CHECK_OK(al_json_to_value(&v, deep, strlen(deep)));
		cJSON_Delete(v);
		memset(deep, '[', 65);
		memset(deep + 65, ']', 65);
		deep[130] = '\0';
		CHECK_EQ_INT(al_json_to_value(&v, deep, strlen(deep)), AL_EINVAL);
	}
	CHECK_OK(al_json_to_value(&v, "0.30000000000000004", 19));
	CHECK_OK(al_value_get_double(&d, v));
	CHECK(d == 0.1 + 0.2);
	cJSON_Delete(v);
}

/* A typed value nested n levels: a map field with arrays of maps… (arrays never directly in
 * arrays). */
static cJSON *nested(int n)
{
	cJSON *v = al_value_int(1);
	for (int i = 0; i < n; i++) {
		cJSON *f = cJSON_CreateObject();
		al_fields_set(f, "k", v);
		v = al_value_map(f);
	}
	return v;
}

static void test_limits(void)
{
	cJSON *f = cJSON_CreateObject(), *arr;
	char *big;

	/* 20 levels below a top-level field are fine, 21 are not (as the emulator counts) */
	al_fields_set(f, "x", nested(20));
	CHECK_OK(al_fields_check("p/d", f));
	al_fields_set(f, "x", nested(21));
	CHECK_EQ_INT(al_fields_check("p/d", f), AL_EINVAL);
	/* an array directly inside an array */
	arr = cJSON_CreateArray();
	cJSON_AddItemToArray(arr, al_value_array(cJSON_CreateArray()));
	al_fields_set(f, "x", al_value_array(arr));
	CHECK_EQ_INT(al_fields_check("p/d", f), AL_EINVAL);
	/* reserved, empty and long names; field paths */
	cJSON_Delete(f);
	f = cJSON_CreateObject();
	al_fields_set(f, "__name__", al_value_int(1));
	CHECK_EQ_INT(al_fields_check("p/d", f), AL_EINVAL);
	cJSON_Delete(f);
	f = cJSON_CreateObject();
	{
		cJSON *m = cJSON_CreateObject();
		char name[2100];
		memset(name, 'k', 1000);
		name[1000] = '/';
		memset(name + 1001, 'j', 60);
		name[1061] = '\0';
		al_fields_set(m, name, al_value_int(1));
		al_fields_set(f, "hyper_params", al_value_map(m));
		CHECK_OK(al_fields_check("p/d", f));   /* "hyper_params.`kkk…/jjj…`": 1,077 bytes */
		memset(name + 1001, 'j', 998);
		name[1999] = '\0';
		m = cJSON_CreateObject();
		al_fields_set(m, name, al_value_int(1));
		al_fields_set(f, "hyper_params", al_value_map(m));
		CHECK_EQ_INT(al_fields_check("p/d", f), AL_EINVAL);   /* a 2,015-byte field path */
	}
	/* strings: size and UTF-8 */
	cJSON_Delete(f);
	f = cJSON_CreateObject();
	big = malloc(AL_VALUE_MAX_STRING + 2);
	memset(big, 'a', AL_VALUE_MAX_STRING + 1);
	big[AL_VALUE_MAX_STRING + 1] = '\0';
	al_fields_set(f, "s", al_value_string(big));
	CHECK_EQ_INT(al_fields_check("p/d", f), AL_EINVAL);
	big[600000] = '\0';
	al_fields_set(f, "s", al_value_string(big));
	CHECK_OK(al_fields_check("p/d", f));
	al_fields_set(f, "t", al_value_string(big));   /* two of them: over 1 MiB in all */
	CHECK_EQ_INT(al_fields_check("p/d", f), AL_EINVAL);
	cJSON_DeleteItemFromObject(f, "t");
	al_fields_set(f, "s", al_value_string("x\xff"));
	CHECK_EQ_INT(al_fields_check("p/d", f), AL_EINVAL);
	free(big);
	cJSON_Delete(f);
	/* Firestore's size: name "p/d" = 2+2+16, field "a" 2 + string "bc" 3, plus 32 */
	f = cJSON_CreateObject();
	al_fields_set(f, "a", al_value_string("bc"));
	CHECK_EQ_INT(al_doc_size("p/d", f), 20 + 5 + 32);
	cJSON_Delete(f);
}

static void test_utf8(void)
{
	CHECK(al_utf8_valid("abc", 3));
	CHECK(al_utf8_valid("é€\xF0\x9F\x98\x80", 9));
	CHECK(!al_utf8_valid("\xed\xa0\x80", 3));   /* a surrogate */
	CHECK(!al_utf8_valid("\xe0\x80\xaf", 3));   /* overlong */
	CHECK(!al_utf8_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
	CHECK(!al_utf8_valid("\xc3", 1));           /* cut short */
}

int main(void)
{
	test_print_numbers();
	test_print_strings_and_layout();
	test_parse();
	test_limits();
	test_utf8();
	CHECK_DONE();
}
