/* aletheia: Firestore typed values as cJSON (constructors, readers, field helpers), plain JSON
 * conversion, and RFC 3339 timestamps. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/doc/json.h"
#include "core/doc/value.h"

#define US_PER_S INT64_C(1000000)
#define MAX_SAFE_INT 9007199254740992.0 /* 2^53: larger doubles are not exact integers */

/* Wraps item as {"key": item}; frees item on failure. */
static cJSON *wrap(const char *key, cJSON *item)
{
	cJSON *v;
	if (!item)
		return NULL;
	v = cJSON_CreateObject();
	if (!v) {
		cJSON_Delete(item);
		return NULL;
	}
	cJSON_AddItemToObject(v, key, item);
	return v;
}

cJSON *al_value_int(int64_t n)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%" PRId64, n);
	return wrap("integerValue", cJSON_CreateString(buf));
}

cJSON *al_value_double(double d)
{
	if (isnan(d))
		return wrap("doubleValue", cJSON_CreateString("NaN"));
	if (isinf(d))
		return wrap("doubleValue", cJSON_CreateString(d > 0 ? "Infinity" : "-Infinity"));
	return wrap("doubleValue", cJSON_CreateNumber(d));
}

cJSON *al_value_string(const char *s)
{
	return wrap("stringValue", cJSON_CreateString(s ? s : ""));
}

cJSON *al_value_bool(int b)
{
	return wrap("booleanValue", cJSON_CreateBool(b != 0));
}

cJSON *al_value_null(void)
{
	return wrap("nullValue", cJSON_CreateNull());
}

cJSON *al_value_time(int64_t us)
{
	char buf[40];
	return wrap("timestampValue", cJSON_CreateString(al_time_format(buf, us, 6)));
}

cJSON *al_value_map(cJSON *fields)
{
	cJSON *m;
	if (!fields)
		fields = cJSON_CreateObject();
	m = wrap("fields", fields);
	return wrap("mapValue", m);
}

cJSON *al_value_array(cJSON *values)
{
	cJSON *a;
	if (!values)
		values = cJSON_CreateArray();
	a = wrap("values", values);
	return wrap("arrayValue", a);
}

/* The payload under key when v is a typed value of that type, else NULL. */
static const cJSON *typed(const cJSON *v, const char *key)
{
	if (!cJSON_IsObject(v))
		return NULL;
	return cJSON_GetObjectItemCaseSensitive(v, key);
}

/* Strict decimal int64: optional '-', digits only, no overflow. */
static int parse_int64(int64_t *out, const char *s)
{
	char *end;
	long long n;
	if (!s || !(isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]))))
		return AL_EINVAL;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || *end)
		return AL_EINVAL;
	*out = n;
	return 0;
}

int al_value_get_int(int64_t *out, const cJSON *v)
{
	const cJSON *p = typed(v, "integerValue");
	if (cJSON_IsString(p) && parse_int64(out, p->valuestring) == 0)
		return 0;
	/* Some writers put the integer as a JSON number; accept it when exact. */
	if (cJSON_IsNumber(p) && floor(p->valuedouble) == p->valuedouble &&
	    fabs(p->valuedouble) <= MAX_SAFE_INT) {
		*out = (int64_t)p->valuedouble;
		return 0;
	}
	return al_error_set(AL_EINVAL, "value is not an integer");
}

int al_value_get_double(double *out, const cJSON *v)
{
	const cJSON *p = typed(v, "doubleValue");
	int64_t n;
	if (cJSON_IsNumber(p)) {
		*out = p->valuedouble;
		return 0;
	}
	if (cJSON_IsString(p)) {
		if (strcmp(p->valuestring, "NaN") == 0) {
			*out = NAN;
			return 0;
		}
		if (strcmp(p->valuestring, "Infinity") == 0) {
			*out = INFINITY;
			return 0;
		}
		if (strcmp(p->valuestring, "-Infinity") == 0) {
			*out = -INFINITY;
			return 0;
		}
	}
	if (typed(v, "integerValue") && al_value_get_int(&n, v) == 0) {
		*out = (double)n;
		return 0;
	}
	return al_error_set(AL_EINVAL, "value is not a number");
}

int al_value_get_bool(int *out, const cJSON *v)
{
	const cJSON *p = typed(v, "booleanValue");
	if (!cJSON_IsBool(p))
		return al_error_set(AL_EINVAL, "value is not a boolean");
	*out = cJSON_IsTrue(p);
	return 0;
}

int al_value_get_time(int64_t *out, const cJSON *v)
{
	const cJSON *p = typed(v, "timestampValue");
	if (!cJSON_IsString(p) || al_time_parse(out, p->valuestring) != 0)
		return al_error_set(AL_EINVAL, "value is not a timestamp");
	return 0;
}

const char *al_value_get_string(const cJSON *v)
{
	const cJSON *p = typed(v, "stringValue");
	return cJSON_IsString(p) ? p->valuestring : NULL;
}

/* Firestore writes an empty map as {"mapValue":{}} and an empty array as {"arrayValue":{}}. Then
 * the (empty) wrapper object itself is returned: it iterates like an empty fields/values list. */
const cJSON *al_value_get_map(const cJSON *v)
{
	const cJSON *p = typed(v, "mapValue");
	const cJSON *f;
	if (!cJSON_IsObject(p))
		return NULL;
	f = cJSON_GetObjectItemCaseSensitive(p, "fields");
	if (cJSON_IsObject(f))
		return f;
	return p->child ? NULL : p;
}

const cJSON *al_value_get_array(const cJSON *v)
{
	const cJSON *p = typed(v, "arrayValue");
	const cJSON *a;
	if (!cJSON_IsObject(p))
		return NULL;
	a = cJSON_GetObjectItemCaseSensitive(p, "values");
	if (cJSON_IsArray(a))
		return a;
	return p->child ? NULL : p;
}

const cJSON *al_fields_get(const cJSON *fields, const char *name)
{
	if (!cJSON_IsObject(fields) || !name)
		return NULL;
	return cJSON_GetObjectItemCaseSensitive(fields, name);
}

/* Common shape of the typed field getters: absent → AL_ENOTFOUND, else the reader's result. */
#define FIELD_GETTER(fn, type, reader) \
	int fn(type *out, const cJSON *fields, const char *name) \
	{ \
		const cJSON *v = al_fields_get(fields, name); \
		if (!v) \
			return al_error_set(AL_ENOTFOUND, "field %s not found", name ? name : "(null)"); \
		if (reader(out, v) != 0) \
			return al_error_set(AL_EINVAL, "field %s has another type", name); \
		return 0; \
	}

FIELD_GETTER(al_fields_get_int, int64_t, al_value_get_int)
FIELD_GETTER(al_fields_get_double, double, al_value_get_double)
FIELD_GETTER(al_fields_get_bool, int, al_value_get_bool)
FIELD_GETTER(al_fields_get_time, int64_t, al_value_get_time)

const char *al_fields_get_string(const cJSON *fields, const char *name)
{
	return al_value_get_string(al_fields_get(fields, name));
}

void al_fields_set(cJSON *fields, const char *name, cJSON *value)
{
	if (!value)
		return;
	if (!cJSON_IsObject(fields) || !name) {
		cJSON_Delete(value);
		return;
	}
	/* name may be value's own key (moving an item between objects): copy it before cJSON
	 * frees that key. */
	char *key = strdup(name);
	if (!key) {
		cJSON_Delete(value);
		return;
	}
	if (value->string && !(value->type & cJSON_StringIsConst))
		cJSON_free(value->string);
	value->string = NULL;
	value->type &= ~cJSON_StringIsConst;
	if (cJSON_GetObjectItemCaseSensitive(fields, key))
		cJSON_ReplaceItemInObjectCaseSensitive(fields, key, value);
	else
		cJSON_AddItemToObject(fields, key, value);
	free(key);
}

cJSON *al_value_from_json(const cJSON *plain)
{
	cJSON *out = NULL, *coll = NULL, *item;
	const cJSON *child;
	double d;

	if (!plain)
		return NULL;
	switch (plain->type & 0xff) {
	case cJSON_NULL:
		return al_value_null();
	case cJSON_False:
		return al_value_bool(0);
	case cJSON_True:
		return al_value_bool(1);
	case cJSON_String:
		return al_value_string(plain->valuestring);
	case cJSON_Number:
		d = plain->valuedouble;
		if (isfinite(d) && floor(d) == d && fabs(d) <= MAX_SAFE_INT)
			return al_value_int((int64_t)d);
		return al_value_double(d);
	case cJSON_Object:
	case cJSON_Array:
		coll = cJSON_IsObject(plain) ? cJSON_CreateObject() : cJSON_CreateArray();
		if (!coll)
			goto cleanup;
		cJSON_ArrayForEach(child, plain) {
			item = al_value_from_json(child);
			if (!item)
				goto cleanup;
			if (cJSON_IsObject(plain))
				cJSON_AddItemToObject(coll, child->string, item);
			else
				cJSON_AddItemToArray(coll, item);
		}
		out = cJSON_IsObject(plain) ? al_value_map(coll) : al_value_array(coll);
		coll = NULL; /* owned by out (or freed by the constructor on failure) */
		break;
	default:
		break; /* raw or invalid items have no typed form */
	}
cleanup:
	cJSON_Delete(coll);
	return out;
}

cJSON *al_value_to_json(const cJSON *v)
{
	cJSON *out = NULL, *item;
	const cJSON *p, *child, *list;
	int64_t n;
	double d;
	char buf[40];

	if (!cJSON_IsObject(v) || !v->child || v->child->next || !v->child->string)
		return NULL;
	p = v->child;
	if (strcmp(p->string, "integerValue") == 0) {
		/* Numbers go as raw text (al_json_print copies it): integers exact past 2^53, doubles
		 * so that every reader reads a double back ("3.0", "-0.0", NaN: json.h). */
		if (al_value_get_int(&n, v) == 0) {
			snprintf(buf, sizeof(buf), "%" PRId64, n);
			out = cJSON_CreateRaw(buf);
		}
	} else if (strcmp(p->string, "doubleValue") == 0) {
		if (al_value_get_double(&d, v) == 0) {
			al_json_double(buf, d);
			out = cJSON_CreateRaw(buf);
		}
	} else if (strcmp(p->string, "stringValue") == 0 || strcmp(p->string, "referenceValue") == 0 ||
		   strcmp(p->string, "bytesValue") == 0) {
		if (cJSON_IsString(p))
			out = cJSON_CreateString(p->valuestring);
	} else if (strcmp(p->string, "booleanValue") == 0) {
		if (cJSON_IsBool(p))
			out = cJSON_CreateBool(cJSON_IsTrue(p));
	} else if (strcmp(p->string, "nullValue") == 0) {
		out = cJSON_CreateNull();
	} else if (strcmp(p->string, "timestampValue") == 0) {
		if (al_value_get_time(&n, v) == 0)
			out = cJSON_CreateString(al_time_format(buf, n, 6));
	} else if (strcmp(p->string, "geoPointValue") == 0) {
		if (cJSON_IsObject(p))
			out = cJSON_Duplicate(p, 1);
	} else if (strcmp(p->string, "mapValue") == 0 || strcmp(p->string, "arrayValue") == 0) {
		int is_map = p->string[0] == 'm';
		list = is_map ? al_value_get_map(v) : al_value_get_array(v);
		if (!list)
			return NULL;
		out = is_map ? cJSON_CreateObject() : cJSON_CreateArray();
		if (!out)
			return NULL;
		cJSON_ArrayForEach(child, list) {
			item = al_value_to_json(child);
			if (!item) {
				cJSON_Delete(out);
				return NULL;
			}
			if (is_map)
				cJSON_AddItemToObject(out, child->string, item);
			else
				cJSON_AddItemToArray(out, item);
		}
	}
	return out;
}

char *al_time_format(char *buf, int64_t us, int digits)
{
	/* Floor division so that times before 1970 get a positive fraction. */
	int64_t secs = us / US_PER_S, frac = us % US_PER_S;
	time_t t;
	struct tm tm;
	int n;

	if (frac < 0) {
		frac += US_PER_S;
		secs--;
	}
	t = (time_t)secs;
	if (!gmtime_r(&t, &tm)) {
		buf[0] = '\0';
		return buf;
	}
	n = snprintf(buf, 40, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
		tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (digits > 6)
		digits = 6;
	if (digits > 0) {
		int64_t div = 1;
		for (int i = digits; i < 6; i++)
			div *= 10;
		n += snprintf(buf + n, 40 - n, ".%0*" PRId64, digits, frac / div);
	}
	snprintf(buf + n, 40 - n, "Z");
	return buf;
}

/* Reads exactly count digits at *s into *out and advances *s. */
static int digits_at(int *out, const char **s, int count)
{
	int v = 0;
	for (int i = 0; i < count; i++) {
		if (!isdigit((unsigned char)(*s)[i]))
			return -1;
		v = v * 10 + ((*s)[i] - '0');
	}
	*s += count;
	*out = v;
	return 0;
}

static int days_in_month(int year, int month)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	return month == 2 && leap ? 29 : days[month - 1];
}

int al_time_parse(int64_t *out, const char *s)
{
	const char *p = s;
	int year, mon, day, hour, min, sec, oh = 0, om = 0, sign = 0;
	int64_t frac = 0, scale = 100000;
	struct tm tm = {0};
	time_t t;

	if (!s)
		return al_error_set(AL_EINVAL, "missing timestamp");
	if (digits_at(&year, &p, 4) || *p++ != '-' || digits_at(&mon, &p, 2) || *p++ != '-' ||
	    digits_at(&day, &p, 2) || (*p != 'T' && *p != 't' && *p != ' '))
		goto bad;
	p++;
	if (digits_at(&hour, &p, 2) || *p++ != ':' || digits_at(&min, &p, 2) || *p++ != ':' ||
	    digits_at(&sec, &p, 2))
		goto bad;
	if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour > 23 ||
	    min > 59 || sec > 60)
		goto bad;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			goto bad;
		/* Keep microseconds; finer digits (Firestore has nanoseconds) are truncated. */
		for (; isdigit((unsigned char)*p); p++) {
			frac += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if (digits_at(&oh, &p, 2) || *p++ != ':' || digits_at(&om, &p, 2) || oh > 23 || om > 59)
			goto bad;
	} else {
		goto bad;
	}
	if (*p)
		goto bad;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	t = timegm(&tm); /* fields are validated, so -1 here is 1969-12-31T23:59:59, not an error */
	*out = ((int64_t)t - sign * (int64_t)(oh * 3600 + om * 60)) * US_PER_S + frac;
	return 0;
bad:
	return al_error_set(AL_EINVAL, "invalid RFC 3339 timestamp '%s'", s);
}

/* A typed value as value.h describes it (recursively), so that nothing else reaches the store. */
int al_value_is_valid(const cJSON *v)
{
	const cJSON *p, *list, *child;
	const char *k;
	int64_t n;
	double d;

	if (!cJSON_IsObject(v) || !v->child || v->child->next || !v->child->string)
		return 0;
	p = v->child;
	k = p->string;
	if (strcmp(k, "mapValue") == 0 || strcmp(k, "arrayValue") == 0) {
		list = k[0] == 'm' ? al_value_get_map(v) : al_value_get_array(v);
		if (!list)
			return 0;
		cJSON_ArrayForEach(child, list)
			if (!al_value_is_valid(child))
				return 0;
		return 1;
	}
	if (strcmp(k, "integerValue") == 0)
		return al_value_get_int(&n, v) == 0;
	if (strcmp(k, "doubleValue") == 0) /* a NaN number would be stored as null */
		return al_value_get_double(&d, v) == 0 && (cJSON_IsString(p) || isfinite(d));
	if (strcmp(k, "timestampValue") == 0)
		return al_value_get_time(&n, v) == 0;
	if (strcmp(k, "stringValue") == 0 || strcmp(k, "referenceValue") == 0 ||
	    strcmp(k, "bytesValue") == 0)
		return cJSON_IsString(p);
	if (strcmp(k, "booleanValue") == 0)
		return cJSON_IsBool(p);
	if (strcmp(k, "nullValue") == 0)
		return cJSON_IsNull(p);
	if (strcmp(k, "geoPointValue") == 0)
		return cJSON_IsObject(p);
	return 0;
}

/* ---- Firestore's limits ------------------------------------------------------------------ */

/* Firestore's storage sizes: strings count their UTF-8 bytes plus one. */
static uint64_t string_size(const char *s)
{
	return (uint64_t)strlen(s ? s : "") + 1;
}

static uint64_t value_size(const cJSON *v)
{
	const cJSON *p, *child, *list;
	uint64_t n = 0;
	int is_map;

	if (!cJSON_IsObject(v) || !(p = v->child) || !p->string)
		return 0;
	if (!strcmp(p->string, "stringValue"))
		return string_size(p->valuestring);
	if (!strcmp(p->string, "integerValue") || !strcmp(p->string, "doubleValue") ||
	    !strcmp(p->string, "timestampValue"))
		return 8;
	if (!strcmp(p->string, "booleanValue") || !strcmp(p->string, "nullValue"))
		return 1;
	if (!strcmp(p->string, "geoPointValue"))
		return 16;
	if (!strcmp(p->string, "bytesValue"))
		return cJSON_IsString(p) ? (uint64_t)strlen(p->valuestring) * 3 / 4 : 0;
	if (!strcmp(p->string, "referenceValue"))
		return string_size(p->valuestring) + 16;
	is_map = !strcmp(p->string, "mapValue");
	list = is_map ? al_value_get_map(v) : al_value_get_array(v);
	cJSON_ArrayForEach(child, list)
		n += (is_map ? string_size(child->string) : 0) + value_size(child);
	return n;
}

uint64_t al_doc_size(const char *doc_path, const cJSON *fields)
{
	uint64_t n = 16 + 32;   /* the document name's extra bytes, and the document's */
	const char *p = doc_path ? doc_path : "", *slash;
	const cJSON *f;

	/* Firestore counts the name from the collection path on; each segment as a string. */
	for (; *p; p = slash + 1) {
		slash = strchr(p, '/');
		n += (uint64_t)(slash ? (size_t)(slash - p) : strlen(p)) + 1;
		if (!slash)
			break;
	}
	cJSON_ArrayForEach(f, fields)
		n += string_size(f->string) + value_size(f);
	return n;
}

/* Appends one field name to a field path as Firestore spells it ("a.`b/c`"). */
static size_t path_append(char *path, size_t len, size_t cap, const char *name)
{
	int simple = (isalpha((unsigned char)name[0]) || name[0] == '_');
	for (const char *c = name; simple && *c; c++)
		simple = isalnum((unsigned char)*c) || *c == '_';
	if (len && len < cap)
		path[len++] = '.';
	if (!simple && len < cap)
		path[len++] = '`';
	for (const char *c = name; *c && len < cap; c++) {
		if (!simple && (*c == '`' || *c == '\\') && len + 1 < cap)
			path[len++] = '\\';
		path[len++] = *c;
	}
	if (!simple && len < cap)
		path[len++] = '`';
	return len;
}

#define PATH_CAP (AL_VALUE_MAX_NAME + 64)

/* The path so far as a string for messages (path has room for the NUL). */
static const char *path_text(char *path, size_t len)
{
	path[len < PATH_CAP ? len : PATH_CAP] = '\0';
	return path;
}

static int check_value(const char *doc, char *path, size_t plen, const cJSON *v, int depth,
	int in_array);

static int check_name_at(const char *doc, char *path, size_t *plen, const char *name)
{
	size_t n = strlen(name ? name : "");
	if (n == 0)
		return al_error_set(AL_EINVAL, "document %s: an empty field name (under \"%.*s\")", doc,
			80, path_text(path, *plen));
	if (n > AL_VALUE_MAX_NAME)
		return al_error_set(AL_EINVAL, "document %s: a field name of %zu bytes (at most %d)", doc, n,
			AL_VALUE_MAX_NAME);
	if (n >= 4 && !strncmp(name, "__", 2) && !strcmp(name + n - 2, "__"))
		return al_error_set(AL_EINVAL, "document %s: field names of the form __x__ are reserved "
			"(\"%.60s\")", doc, name);
	if (!al_utf8_valid(name, n))
		return al_error_set(AL_EINVAL, "document %s: a field name that is not UTF-8", doc);
	*plen = path_append(path, *plen, PATH_CAP, name);
	if (*plen > AL_VALUE_MAX_NAME)
		return al_error_set(AL_EINVAL, "document %s: the field path \"%.80s…\" is longer than %d "
			"bytes", doc, path_text(path, *plen), AL_VALUE_MAX_NAME);
	return 0;
}

static int check_value(const char *doc, char *path, size_t plen, const cJSON *v, int depth,
	int in_array)
{
	const cJSON *p = cJSON_IsObject(v) ? v->child : NULL, *child, *list;
	int rc;

	if (depth > AL_VALUE_MAX_DEPTH)
		return al_error_set(AL_EINVAL, "document %s: the value of \"%.*s\" is nested more than %d "
			"levels deep", doc, 80, path_text(path, plen), AL_VALUE_MAX_DEPTH);
	if (!p || !p->string)
		return 0;   /* al_value_is_valid says what is wrong */
	if (!strcmp(p->string, "stringValue") && cJSON_IsString(p)) {
		if (strlen(p->valuestring) > AL_VALUE_MAX_STRING)
			return al_error_set(AL_EINVAL, "document %s: the string \"%.*s\" is longer than %d "
				"bytes", doc, 80, path_text(path, plen), AL_VALUE_MAX_STRING);
		if (!al_utf8_valid(p->valuestring, strlen(p->valuestring)))
			return al_error_set(AL_EINVAL, "document %s: the string \"%.*s\" is not UTF-8", doc,
				80, path_text(path, plen));
		return 0;
	}
	if (!strcmp(p->string, "arrayValue")) {
		if (in_array)
			return al_error_set(AL_EINVAL, "document %s: \"%.*s\" holds an array directly inside "
				"an array, which Firestore cannot store", doc, 80, path_text(path, plen));
		cJSON_ArrayForEach(child, al_value_get_array(v))
			if ((rc = check_value(doc, path, plen, child, depth + 1, 1)))
				return rc;
		return 0;
	}
	if (!strcmp(p->string, "mapValue")) {
		list = al_value_get_map(v);
		cJSON_ArrayForEach(child, list) {
			size_t len = plen;
			if ((rc = check_name_at(doc, path, &len, child->string)) ||
			    (rc = check_value(doc, path, len, child, depth + 1, 0)))
				return rc;
		}
	}
	return 0;
}

int al_field_path_check(const char *doc_path, const char *field, const char *key)
{
	char path[PATH_CAP + 1];
	size_t len = 0;
	int rc = check_name_at(doc_path, path, &len, field);
	return rc || !key ? rc : check_name_at(doc_path, path, &len, key);
}

int al_fields_check(const char *doc_path, const cJSON *fields)
{
	char path[PATH_CAP + 1];
	const cJSON *f;
	uint64_t size;
	int rc;

	cJSON_ArrayForEach(f, fields) {
		size_t len = 0;
		if ((rc = check_name_at(doc_path, path, &len, f->string)) ||
		    (rc = check_value(doc_path, path, len, f, 0, 0)))
			return rc;
	}
	if ((size = al_doc_size(doc_path, fields)) > AL_DOC_MAX_SIZE)
		return al_error_set(AL_EINVAL, "document %s would be %llu bytes: Firestore keeps at most "
			"%d bytes a document", doc_path, (unsigned long long)size, AL_DOC_MAX_SIZE);
	return 0;
}

void al_value_repair_strings(cJSON *v)
{
	cJSON *p = cJSON_IsObject(v) ? v->child : NULL, *child;
	if (!p || !p->string)
		return;
	if (!strcmp(p->string, "stringValue") && cJSON_IsString(p) &&
	    !al_utf8_valid(p->valuestring, strlen(p->valuestring))) {
		char *fixed = al_utf8_repair(p->valuestring);
		if (fixed) {
			cJSON_SetValuestring(p, fixed);
			free(fixed);
		}
		return;
	}
	if (!strcmp(p->string, "mapValue") || !strcmp(p->string, "arrayValue"))
		cJSON_ArrayForEach(child, (cJSON *)(p->string[0] == 'm' ? al_value_get_map(v) :
			al_value_get_array(v)))
			al_value_repair_strings(child);
}

cJSON *al_value_map_fields(cJSON *v)
{
	cJSON *m = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "mapValue") : NULL, *f;
	if (!cJSON_IsObject(m))
		return NULL;
	f = cJSON_GetObjectItemCaseSensitive(m, "fields");
	if (cJSON_IsObject(f))
		return f;
	if (f)
		return NULL;
	return cJSON_AddObjectToObject(m, "fields");
}

/* A payload's double, NaN and the infinities written as strings (al_value_double). */
static int payload_double(double *out, const cJSON *p)
{
	if (cJSON_IsNumber(p)) {
		*out = p->valuedouble;
		return 1;
	}
	if (!cJSON_IsString(p))
		return 0;
	if (!strcmp(p->valuestring, "NaN"))
		*out = NAN;
	else if (!strcmp(p->valuestring, "Infinity"))
		*out = INFINITY;
	else if (!strcmp(p->valuestring, "-Infinity"))
		*out = -INFINITY;
	else
		return 0;
	return 1;
}

int al_value_equal(const cJSON *a, const cJSON *b)
{
	const cJSON *pa = cJSON_IsObject(a) ? a->child : NULL, *pb = cJSON_IsObject(b) ? b->child : NULL;
	const cJSON *la, *lb, *x, *y;
	int64_t i, j;
	double d, e;

	if (!pa || !pb || !pa->string || !pb->string || strcmp(pa->string, pb->string) != 0)
		return 0;
	if (!strcmp(pa->string, "integerValue"))
		return al_value_get_int(&i, a) == 0 && al_value_get_int(&j, b) == 0 && i == j;
	if (!strcmp(pa->string, "doubleValue"))
		return payload_double(&d, pa) && payload_double(&e, pb) &&
			((isnan(d) && isnan(e)) || (d == e && signbit(d) == signbit(e)));
	if (!strcmp(pa->string, "timestampValue"))
		return cJSON_IsString(pa) && cJSON_IsString(pb) && al_time_parse(&i, pa->valuestring) == 0 &&
			al_time_parse(&j, pb->valuestring) == 0 && i == j;
	if (!strcmp(pa->string, "stringValue"))
		return cJSON_IsString(pa) && cJSON_IsString(pb) && !strcmp(pa->valuestring, pb->valuestring);
	if (!strcmp(pa->string, "booleanValue"))
		return cJSON_IsBool(pa) && cJSON_IsBool(pb) && cJSON_IsTrue(pa) == cJSON_IsTrue(pb);
	if (!strcmp(pa->string, "nullValue"))
		return 1;
	if (!strcmp(pa->string, "mapValue")) {
		la = al_value_get_map(a);
		lb = al_value_get_map(b);
		if (!la || !lb || cJSON_GetArraySize(la) != cJSON_GetArraySize(lb))
			return 0;
		cJSON_ArrayForEach(x, la)
			if (!(y = cJSON_GetObjectItemCaseSensitive(lb, x->string)) || !al_value_equal(x, y))
				return 0;
		return 1;
	}
	if (!strcmp(pa->string, "arrayValue")) {
		la = al_value_get_array(a);
		lb = al_value_get_array(b);
		if (!la || !lb || cJSON_GetArraySize(la) != cJSON_GetArraySize(lb))
			return 0;
		for (x = la->child, y = lb->child; x && y; x = x->next, y = y->next)
			if (!al_value_equal(x, y))
				return 0;
		return 1;
	}
	return cJSON_Compare(pa, pb, 1);
}
