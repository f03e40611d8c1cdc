/* aletheia: JSON text that keeps every value exact. cJSON is the in-memory tree, but its printer
 * writes doubles with 15 significant digits and accepts a 1-ulp difference, and its parser turns
 * every number into a double: documents and generated files are printed here, and what users
 * write (params.json, metadata, param values) is parsed here, straight into typed values. */
#ifndef ALETHEIA_JSON_H
#define ALETHEIA_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include "aletheia/common.h"

#define AL_JSON_PRETTY 1u   /* two-space indentation and a space after ':' */

/* Prints item as JSON text (caller frees *out; *len may be NULL). Numbers are the shortest
 * decimal that reads back to the same double; raw items (cJSON_CreateRaw) are copied verbatim,
 * so exact integers can be given as text; NaN and infinities print as NaN, Infinity, -Infinity,
 * as Python's json module writes and reads them. Strings are escaped as RFC 8259 asks; bytes
 * that are not UTF-8 become U+FFFD, so the text is always valid UTF-8. */
int al_json_print(char **out, size_t *len, const cJSON *item, unsigned flags);

/* A double as JSON text that reads back as the same double in any language: the shortest form,
 * with ".0" when it would otherwise read as an integer ("3.0", "-0.0"), and NaN, Infinity,
 * -Infinity as Python writes them. buf needs 40 bytes; returns the length. For generated JSON,
 * as a raw item (cJSON_CreateRaw). */
size_t al_json_double(char *buf, double d);

/* Parses one JSON value (RFC 8259, plus NaN, Infinity and -Infinity as Python writes them; white
 * space around it is fine) into a typed value (value.h). Exact or refused, with AL_EINVAL and a
 * message naming the byte offset:
 * - an integer literal is an integerValue when it fits in int64, else refused (Firestore's
 *   integers are int64; a double would change it);
 * - other numbers are doubleValues (a fraction or exponent whose value is a whole number within
 *   ±2^53, -0 excepted, is an integerValue: JSON does not tell 32.0 from 32); a literal beyond the
 *   double range, or a nonzero one that would read as 0, is refused;
 * - strings must be valid UTF-8 without U+0000; an object must not name a key twice;
 * - null is nullValue; nesting deeper than 64 levels is refused (Firestore's own limit of 20 is
 *   checked on the document, al_fields_check). */
int al_json_to_value(cJSON **out, const char *text, size_t len);

/* A decimal literal ([+-]DIGITS[.DIGITS][(e|E)[+-]DIGITS], as written in JSON or to a param) as a
 * typed value, exactly: an integerValue when its value is an integer that fits in int64
 * (9223372036854775807.0, 1e2: JSON does not tell 32.0 from 32; -0.0 excepted), else a
 * doubleValue, the nearest double. AL_EINVAL when no number, an integer literal past int64, or a
 * value past a double's range (1e400, or a nonzero one that would read as 0). */
int al_number_value(cJSON **out, const char *text);

/* 1 when s[0..len) is well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF). NUL bytes are well-formed; callers that cannot store them check separately. */
int al_utf8_valid(const char *s, size_t len);

/* s with every byte that is not part of well-formed UTF-8 replaced by U+FFFD (for text we record
 * but did not choose: a command line, a folder, a git remote). Caller frees; NULL when out of
 * memory. */
char *al_utf8_repair(const char *s);

#endif
