/* aletheia: exact JSON text — the printer of every document and generated JSON file, and the
 * strict parser of JSON that users write, straight into typed values (core/doc/json.h). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/buf.h"
#include "core/doc/json.h"
#include "core/series/metric.h"
#include "core/doc/value.h"

#define MAX_PARSE_DEPTH 64
#define MAX_SAFE_INT 9007199254740992.0 /* 2^53 */

/* ---- UTF-8 ------------------------------------------------------------------------------ */

/* Length of the well-formed sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len, i;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2, cp = c & 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3, cp = c & 0x0F;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return len;
}

char *al_utf8_repair(const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t n = strlen((const char *)p), i = 0, seq;
	al_buf b = AL_BUF_INIT;

	while (i < n) {
		if ((seq = utf8_seq(p + i, n - i))) {
			if (al_buf_put(&b, p + i, seq))
				goto oom;
			i += seq;
		} else {
			if (al_buf_puts(&b, "\xEF\xBF\xBD"))
				goto oom;
			i++;
		}
	}
	if (!b.ptr && al_buf_puts(&b, ""))
		goto oom;
	return al_buf_detach(&b, NULL);
oom:
	al_buf_dispose(&b);
	return NULL;
}

int al_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;
	while (i < len) {
		if (!(n = utf8_seq(p + i, len - i)))
			return 0;
		i += n;
	}
	return 1;
}

/* ---- printing --------------------------------------------------------------------------- */

static int put_string(al_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t n = strlen((const char *)p), i = 0, run, seq;
	int rc = al_buf_puts(b, "\"");

	while (rc == 0 && i < n) {
		/* Copy plain runs at once; escape the rest. */
		for (run = i; run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\'; run++)
			;
		if (run > i) {
			rc = al_buf_put(b, p + i, run - i);
			i = run;
			continue;
		}
		switch (p[i]) {
		case '"': rc = al_buf_puts(b, "\\\""); break;
		case '\\': rc = al_buf_puts(b, "\\\\"); break;
		case '\n': rc = al_buf_puts(b, "\\n"); break;
		case '\r': rc = al_buf_puts(b, "\\r"); break;
		case '\t': rc = al_buf_puts(b, "\\t"); break;
		case '\b': rc = al_buf_puts(b, "\\b"); break;
		case '\f': rc = al_buf_puts(b, "\\f"); break;
		default:
			if (p[i] < 0x20) {
				rc = al_buf_printf(b, "\\u%04x", p[i]);
			} else if ((seq = utf8_seq(p + i, n - i))) {
				rc = al_buf_put(b, p + i, seq);
				i += seq;
				continue;
			} else {
				rc = al_buf_puts(b, "\xEF\xBF\xBD");   /* U+FFFD for a byte that is not UTF-8 */
			}
		}
		i++;
	}
	return rc ? rc : al_buf_puts(b, "\"");
}

static int put_number(al_buf *b, double d)
{
	char num[40];
	if (isnan(d))
		return al_buf_puts(b, "NaN");
	if (isinf(d))
		return al_buf_puts(b, d > 0 ? "Infinity" : "-Infinity");
	al_double_format(num, d);
	return al_buf_puts(b, num);
}

size_t al_json_double(char *buf, double d)
{
	size_t n;
	if (isnan(d) || isinf(d)) {
		strcpy(buf, isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
		return strlen(buf);
	}
	n = al_double_format(buf, d);
	if (!strpbrk(buf, ".e")) {
		memcpy(buf + n, ".0", 3);
		n += 2;
	}
	return n;
}

static int put_indent(al_buf *b, unsigned flags, int depth)
{
	int rc = 0;
	if (!(flags & AL_JSON_PRETTY))
		return 0;
	rc = al_buf_puts(b, "\n");
	for (int i = 0; rc == 0 && i < depth; i++)
		rc = al_buf_puts(b, "  ");
	return rc;
}

static int put_item(al_buf *b, const cJSON *it, unsigned flags, int depth)
{
	const cJSON *child;
	int rc = 0, is_obj;

	switch (it->type & 0xff) {
	case cJSON_False: return al_buf_puts(b, "false");
	case cJSON_True: return al_buf_puts(b, "true");
	case cJSON_NULL: return al_buf_puts(b, "null");
	case cJSON_Number: return put_number(b, it->valuedouble);
	case cJSON_String: return put_string(b, it->valuestring);
	case cJSON_Raw: return al_buf_puts(b, it->valuestring ? it->valuestring : "null");
	case cJSON_Array:
	case cJSON_Object:
		break;
	default:
		return al_buf_puts(b, "null");
	}
	is_obj = cJSON_IsObject(it);
	rc = al_buf_puts(b, is_obj ? "{" : "[");
	for (child = it->child; rc == 0 && child; child = child->next) {
		if ((rc = put_indent(b, flags, depth + 1)))
			break;
		if (is_obj) {
			if ((rc = put_string(b, child->string)) ||
			    (rc = al_buf_puts(b, (flags & AL_JSON_PRETTY) ? ": " : ":")))
				break;
		}
		if ((rc = put_item(b, child, flags, depth + 1)))
			break;
		if (child->next)
			rc = al_buf_puts(b, ",");
	}
	if (rc == 0 && it->child)
		rc = put_indent(b, flags, depth);
	return rc ? rc : al_buf_puts(b, is_obj ? "}" : "]");
}

int al_json_print(char **out, size_t *len, const cJSON *item, unsigned flags)
{
	al_buf b = AL_BUF_INIT;
	int rc;

	*out = NULL;
	if (len)
		*len = 0;
	if (!item)
		return al_error_set(AL_EINVAL, "nothing to print as JSON");
	if ((rc = put_item(&b, item, flags, 0)) == 0 && !b.ptr)
		rc = al_buf_puts(&b, "");
	if (rc) {
		al_buf_dispose(&b);
		return rc;
	}
	*out = al_buf_detach(&b, len);
	return 0;
}

/* ---- parsing into typed values ---------------------------------------------------------- */

typedef struct parser {
	const char *s, *end, *p;
	int depth;
} parser;

static int bad(parser *ps, const char *what)
{
	return al_error_set(AL_EINVAL, "invalid JSON at byte %zu: %s", (size_t)(ps->p - ps->s), what);
}

static void skip_ws(parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int literal(parser *ps, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return 0;
	ps->p += n;
	return 1;
}

static int hex4(unsigned *out, const char *p)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
		else return -1;
	}
	*out = v;
	return 0;
}

static int put_utf8(al_buf *b, unsigned cp)
{
	unsigned char u[4];
	size_t n;
	if (cp < 0x80) { u[0] = (unsigned char)cp; n = 1; }
	else if (cp < 0x800) { u[0] = (unsigned char)(0xC0 | cp >> 6); u[1] = (unsigned char)(0x80 | (cp & 0x3F)); n = 2; }
	else if (cp < 0x10000) { u[0] = (unsigned char)(0xE0 | cp >> 12); u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (unsigned char)(0x80 | (cp & 0x3F)); n = 3; }
	else { u[0] = (unsigned char)(0xF0 | cp >> 18); u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (unsigned char)(0x80 | (cp & 0x3F)); n = 4; }
	return al_buf_put(b, u, n);
}

/* A string at ps->p (the opening quote) into *out (malloc'd, NUL-terminated). */
static int parse_string(char **out, parser *ps)
{
	al_buf b = AL_BUF_INIT;
	int rc = 0;

	*out = NULL;
	ps->p++;
	while (rc == 0) {
		const char *start = ps->p;
		size_t seq;
		while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\\' && (unsigned char)*ps->p >= 0x20 &&
		       (unsigned char)*ps->p < 0x80)
			ps->p++;
		if (ps->p > start && (rc = al_buf_put(&b, start, (size_t)(ps->p - start))))
			break;
		if (ps->p >= ps->end) {
			rc = bad(ps, "unterminated string");
			break;
		}
		if (*ps->p == '"') {
			ps->p++;
			break;
		}
		if ((unsigned char)*ps->p < 0x20) {
			rc = bad(ps, "control character in a string (write it as \\n, \\t or \\u00XX)");
			break;
		}
		if ((unsigned char)*ps->p >= 0x80) {
			if (!(seq = utf8_seq((const unsigned char *)ps->p, (size_t)(ps->end - ps->p)))) {
				rc = bad(ps, "a string that is not UTF-8");
				break;
			}
			rc = al_buf_put(&b, ps->p, seq);
			ps->p += seq;
			continue;
		}
		/* an escape */
		if (ps->end - ps->p < 2) {
			rc = bad(ps, "unterminated escape");
			break;
		}
		switch (ps->p[1]) {
		case '"': rc = al_buf_puts(&b, "\""); ps->p += 2; break;
		case '\\': rc = al_buf_puts(&b, "\\"); ps->p += 2; break;
		case '/': rc = al_buf_puts(&b, "/"); ps->p += 2; break;
		case 'b': rc = al_buf_puts(&b, "\b"); ps->p += 2; break;
		case 'f': rc = al_buf_puts(&b, "\f"); ps->p += 2; break;
		case 'n': rc = al_buf_puts(&b, "\n"); ps->p += 2; break;
		case 'r': rc = al_buf_puts(&b, "\r"); ps->p += 2; break;
		case 't': rc = al_buf_puts(&b, "\t"); ps->p += 2; break;
		case 'u': {
			unsigned cp, lo;
			if (ps->end - ps->p < 6 || hex4(&cp, ps->p + 2)) {
				rc = bad(ps, "bad \\u escape");
				break;
			}
			ps->p += 6;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' || hex4(&lo, ps->p + 2) ||
				    lo < 0xDC00 || lo > 0xDFFF) {
					rc = bad(ps, "a lone UTF-16 surrogate in a \\u escape");
					break;
				}
				ps->p += 6;
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				rc = bad(ps, "a lone UTF-16 surrogate in a \\u escape");
				break;
			}
			if (cp == 0) {
				rc = bad(ps, "\\u0000: strings cannot hold a NUL character");
				break;
			}
			rc = put_utf8(&b, cp);
			break;
		}
		default:
			rc = bad(ps, "unknown escape");
		}
	}
	if (rc == 0 && !b.ptr)
		rc = al_buf_puts(&b, "");
	if (rc) {
		al_buf_dispose(&b);
		return rc;
	}
	*out = al_buf_detach(&b, NULL);
	return 0;
}

/* The integer a decimal literal is exactly, when it is one that fits in int64: the value of
 * [+-]I[.F][eX] is the digits IF shifted by X - len(F) places; a nonzero digit that ends up after
 * the point means it is no integer. 0 and *out set, or -1. */
static int literal_int64(int64_t *out, const char *s)
{
	const char *p = s, *ip, *fp = "";
	size_t ilen, flen = 0, i, n;
	long long exp = 0, shift;
	int neg = 0;
	uint64_t v = 0, limit;
	char digits[48];

	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	ip = p;
	while (*p >= '0' && *p <= '9')
		p++;
	ilen = (size_t)(p - ip);
	if (*p == '.') {
		fp = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		flen = (size_t)(p - fp);
	}
	if (*p == 'e' || *p == 'E') {
		char *end;
		errno = 0;
		exp = strtoll(p + 1, &end, 10);
		if (errno || end == p + 1 || exp > 100 || exp < -100000)
			return -1;   /* no literal, or far past int64 */
		p = end;
	}
	if (*p || ilen + flen == 0 || ilen + flen > 100000)
		return -1;
	shift = exp - (long long)flen;   /* value = IF * 10^shift */
	for (i = 0, n = 0; i < ilen + flen; i++) {
		char c = i < ilen ? ip[i] : fp[i - ilen];
		if (shift < 0 && (long long)(ilen + flen - i) <= -shift) {
			if (c != '0')
				return -1;   /* a digit after the point */
			continue;
		}
		if (n == 0 && c == '0')
			continue;        /* leading zeros */
		if (n >= 20)
			return -1;
		digits[n++] = c;
	}
	for (; shift > 0 && n > 0; shift--) {
		if (n >= 20)
			return -1;
		digits[n++] = '0';
	}
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (i = 0; i < n; i++) {
		unsigned d = (unsigned)(digits[i] - '0');
		if (v > (limit - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (neg && v == 0 && (p > ip + ilen))
		return -1;           /* -0.0, -0e0: a double, whose sign is kept */
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

int al_number_value(cJSON **out, const char *text)
{
	int64_t i;
	int nonzero = 0;
	double d;
	char *end;

	*out = NULL;
	if (literal_int64(&i, text) == 0) {
		*out = al_value_int(i);   /* exact, also when written 32.0 or 1e2 */
	} else {
		errno = 0;
		d = strtod(text, &end);
		if (*end || end == text || !strpbrk(text, "0123456789"))
			return al_error_set(AL_EINVAL, "\"%.40s\" is no number", text);
		for (const char *c = text; *c && *c != 'e' && *c != 'E'; c++)
			nonzero |= *c >= '1' && *c <= '9';
		if (isinf(d) || (d == 0 && nonzero))
			return al_error_set(AL_EINVAL, "%.40s is beyond the range of a double", text);
		if (!strpbrk(text, ".eE") && !isnan(d))
			return al_error_set(AL_EINVAL, "the integer %.40s does not fit in 64 bits", text);
		*out = al_value_double(d);
	}
	return *out ? 0 : al_error_set(AL_ENOMEM, "out of memory");
}

/* A number literal's text [start, end) as a typed value. */
static int number_value(cJSON **out, parser *ps, const char *start)
{
	size_t n = (size_t)(ps->p - start);
	char stack[64], *text = n < sizeof(stack) ? stack : malloc(n + 1);
	int rc;

	if (!text)
		return al_error_set(AL_ENOMEM, "out of memory");
	memcpy(text, start, n);
	text[n] = '\0';
	if ((rc = al_number_value(out, text)) == AL_EINVAL)
		rc = al_error_set(AL_EINVAL, "invalid JSON at byte %zu: %s (write it as a string to keep "
			"it as written)", (size_t)(start - ps->s), al_error_last());
	if (text != stack)
		free(text);
	return rc;
}

static int parse_number(cJSON **out, parser *ps)
{
	const char *start = ps->p;
#define DIGIT(p) ((p) < ps->end && *(p) >= '0' && *(p) <= '9')
	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	if (!DIGIT(ps->p))
		return bad(ps, "expected a value");
	if (*ps->p == '0') {
		ps->p++;
		if (DIGIT(ps->p))
			return bad(ps, "leading zeros in a number");
	} else {
		while (DIGIT(ps->p))
			ps->p++;
	}
	if (ps->p < ps->end && *ps->p == '.') {
		ps->p++;
		if (!DIGIT(ps->p))
			return bad(ps, "expected digits after '.'");
		while (DIGIT(ps->p))
			ps->p++;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (!DIGIT(ps->p))
			return bad(ps, "expected digits in an exponent");
		while (DIGIT(ps->p))
			ps->p++;
	}
#undef DIGIT
	return number_value(out, ps, start);
}

static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Refuses an object that names a key twice. */
static int check_duplicates(parser *ps, const cJSON *fields, size_t count)
{
	const char **keys;
	const cJSON *it;
	size_t n = 0, i;
	int rc = 0;

	if (count < 2)
		return 0;
	if (!(keys = malloc(count * sizeof(*keys))))
		return al_error_set(AL_ENOMEM, "out of memory");
	cJSON_ArrayForEach(it, fields)
		keys[n++] = it->string;
	qsort(keys, n, sizeof(*keys), cmp_keys);
	for (i = 1; i < n && rc == 0; i++)
		if (strcmp(keys[i - 1], keys[i]) == 0)
			rc = al_error_set(AL_EINVAL, "invalid JSON before byte %zu: the key \"%.60s\" appears "
				"twice in one object", (size_t)(ps->p - ps->s), keys[i]);
	free(keys);
	return rc;
}

static int parse_value(cJSON **out, parser *ps);

static int parse_container(cJSON **out, parser *ps, int is_obj)
{
	cJSON *coll = is_obj ? cJSON_CreateObject() : cJSON_CreateArray(), *item = NULL;
	char *key = NULL;
	size_t count = 0;
	int rc = 0;

	*out = NULL;
	if (!coll)
		return al_error_set(AL_ENOMEM, "out of memory");
	if (++ps->depth > MAX_PARSE_DEPTH) {
		rc = bad(ps, "nested too deeply");
		goto cleanup;
	}
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == (is_obj ? '}' : ']')) {
		ps->p++;
		goto done;
	}
	for (;;) {
		skip_ws(ps);
		if (is_obj) {
			if (ps->p >= ps->end || *ps->p != '"') {
				rc = bad(ps, "expected a key in quotes");
				goto cleanup;
			}
			if ((rc = parse_string(&key, ps)))
				goto cleanup;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':') {
				rc = bad(ps, "expected ':' after a key");
				goto cleanup;
			}
			ps->p++;
		}
		if ((rc = parse_value(&item, ps)))
			goto cleanup;
		if (is_obj) {
			cJSON_AddItemToObject(coll, key, item);
			free(key);
			key = NULL;
		} else {
			cJSON_AddItemToArray(coll, item);
		}
		item = NULL;
		count++;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == (is_obj ? '}' : ']')) {
			ps->p++;
			break;
		}
		rc = bad(ps, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
		goto cleanup;
	}
	if (is_obj && (rc = check_duplicates(ps, coll, count)))
		goto cleanup;
done:
	*out = is_obj ? al_value_map(coll) : al_value_array(coll);
	coll = NULL;
	if (!*out)
		rc = al_error_set(AL_ENOMEM, "out of memory");
cleanup:
	ps->depth--;
	free(key);
	cJSON_Delete(item);
	cJSON_Delete(coll);
	return rc;
}

static int parse_value(cJSON **out, parser *ps)
{
	*out = NULL;
	skip_ws(ps);
	if (ps->p >= ps->end)
		return bad(ps, "expected a value");
	switch (*ps->p) {
	case '{':
		return parse_container(out, ps, 1);
	case '[':
		return parse_container(out, ps, 0);
	case '"': {
		char *s = NULL;
		int rc = parse_string(&s, ps);
		if (rc == 0 && !(*out = al_value_string(s)))
			rc = al_error_set(AL_ENOMEM, "out of memory");
		free(s);
		return rc;
	}
	default:
		break;
	}
	if (literal(ps, "true"))
		*out = al_value_bool(1);
	else if (literal(ps, "false"))
		*out = al_value_bool(0);
	else if (literal(ps, "null"))
		*out = al_value_null();
	else if (literal(ps, "NaN"))
		*out = al_value_double(NAN);
	else if (literal(ps, "Infinity"))
		*out = al_value_double(INFINITY);
	else if (literal(ps, "-Infinity"))
		*out = al_value_double(-INFINITY);
	else
		return parse_number(out, ps);
	return *out ? 0 : al_error_set(AL_ENOMEM, "out of memory");
}

int al_json_to_value(cJSON **out, const char *text, size_t len)
{
	parser ps = {text ? text : "", (text ? text : "") + (text ? len : 0), text ? text : "", 0};
	int rc;

	*out = NULL;
	if ((rc = parse_value(out, &ps)))
		return rc;
	skip_ws(&ps);
	if (ps.p < ps.end) {
		cJSON_Delete(*out);
		*out = NULL;
		return bad(&ps, "text after the value");
	}
	return 0;
}
