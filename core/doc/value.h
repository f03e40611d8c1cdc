/* aletheia: Firestore's typed values (the one document model), as cJSON objects.
 * A value is {"integerValue":"3"}, {"doubleValue":0.5}, {"stringValue":"x"}, {"booleanValue":true},
 * {"nullValue":null}, {"timestampValue":"2026-01-02T03:04:05.123456Z"},
 * {"mapValue":{"fields":{...}}}, {"arrayValue":{"values":[...]}}.
 * A document's "fields" is a cJSON object of such values. */
#ifndef ALETHEIA_VALUE_H
#define ALETHEIA_VALUE_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include "aletheia/common.h"

/* Constructors: return a new cJSON value (NULL only on out of memory). */
cJSON *al_value_int(int64_t v);
cJSON *al_value_double(double v);         /* NaN/±Inf as "NaN", "Infinity", "-Infinity" */
cJSON *al_value_string(const char *s);
cJSON *al_value_bool(int v);
cJSON *al_value_null(void);
cJSON *al_value_time(int64_t us);         /* microseconds since epoch → timestampValue */
/* The times a timestampValue can hold: Firestore's range, 0001-01-01T00:00:00Z to
 * 9999-12-31T23:59:59.999999Z, in microseconds since the epoch. */
#define AL_TIME_MIN_US (INT64_C(-62135596800) * 1000000)
#define AL_TIME_MAX_US (INT64_C(253402300799) * 1000000 + 999999)
cJSON *al_value_map(cJSON *fields);       /* takes ownership of fields (an object of values) */
cJSON *al_value_array(cJSON *values);     /* takes ownership of values (a cJSON array of values) */

/* Readers. Return 0, or AL_EINVAL when v is not of that type. */
int al_value_get_int(int64_t *out, const cJSON *v);
int al_value_get_double(double *out, const cJSON *v); /* also accepts integerValue */
int al_value_get_bool(int *out, const cJSON *v);
int al_value_get_time(int64_t *out, const cJSON *v);
const char *al_value_get_string(const cJSON *v);     /* borrowed; NULL if not a string */
const cJSON *al_value_get_map(const cJSON *v);        /* the "fields" object; borrowed */
const cJSON *al_value_get_array(const cJSON *v);      /* the "values" array; borrowed (may be empty) */

/* Field helpers on a "fields" object. Getters return AL_ENOTFOUND when absent, AL_EINVAL when
 * of another type. */
int al_fields_get_int(int64_t *out, const cJSON *fields, const char *name);
int al_fields_get_double(double *out, const cJSON *fields, const char *name);
int al_fields_get_bool(int *out, const cJSON *fields, const char *name);
int al_fields_get_time(int64_t *out, const cJSON *fields, const char *name);
const char *al_fields_get_string(const cJSON *fields, const char *name); /* NULL if absent */
const cJSON *al_fields_get(const cJSON *fields, const char *name);       /* raw value or NULL */
/* Replaces (or adds) a field; takes ownership of value. */
void al_fields_set(cJSON *fields, const char *name, cJSON *value);

/* 1 when v is one typed value as described above (recursively), else 0. */
int al_value_is_valid(const cJSON *v);

/* Makes every string inside the typed value v well-formed UTF-8 (al_utf8_repair), in place. */
void al_value_repair_strings(cJSON *v);

/* Firestore's limits on a document (README "Where the data lives"), checked before any backend
 * takes a write so that the embedded store refuses exactly what Firestore would: maps and arrays
 * nested at most 20 levels below a top-level field, no array directly inside an array, field names
 * non-empty UTF-8 of at most 1,500 bytes and not of the form __x__, field paths ("a.`b/c`") of at
 * most 1,500 bytes, strings UTF-8 of at most 1,048,487 bytes, and the whole document at most
 * 1 MiB as Firestore counts it (al_doc_size). AL_EINVAL naming the field and the limit. */
#define AL_VALUE_MAX_DEPTH 20
#define AL_VALUE_MAX_NAME 1500
#define AL_VALUE_MAX_STRING 1048487
#define AL_DOC_MAX_SIZE 1048576
int al_fields_check(const char *doc_path, const cJSON *fields);
/* Firestore's storage size of a document: its name, each field name and value, and 32 bytes. */
uint64_t al_doc_size(const char *doc_path, const cJSON *fields);
/* The same limits for the field path field (key NULL) or field.key of an update mask: valid
 * field names, the path at most 1,500 bytes as Firestore spells it. AL_EINVAL saying why. */
int al_field_path_check(const char *doc_path, const char *field, const char *key);

/* 1 when a and b are the same typed value: the same type, and the same integer, double (NaN
 * equals NaN; -0.0 is not 0.0), instant (however many digits its text has), string, map (the
 * same keys, equal values) or array; else 0. */
int al_value_equal(const cJSON *a, const cJSON *b);
/* The fields object of the map value v to change in place ({"mapValue":{}} gets its "fields"),
 * or NULL when v is not a map. */
cJSON *al_value_map_fields(cJSON *v);

/* Plain JSON ↔ typed values. Numbers that are integral and within ±2^53 become integerValue.
 * Timestamps become RFC 3339 strings when converted back to plain JSON. */
cJSON *al_value_from_json(const cJSON *plain);
cJSON *al_value_to_json(const cJSON *typed);

/* RFC 3339 UTC: "2026-11-27T20:09:50.123456Z" (digits = 6) or "...50.123Z" (digits = 3), or
 * no fraction (digits = 0). Writes at most 40 bytes including the NUL; returns buf. */
char *al_time_format(char *buf, int64_t us, int digits);
/* Parses RFC 3339 (any fraction length, 'Z' or ±hh:mm offset). */
int al_time_parse(int64_t *out, const char *s);

#endif
