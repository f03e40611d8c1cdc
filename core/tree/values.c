/* aletheia: values as the text of files (README "params", "Files behave like files"): a
 * param's text to a typed value and back, JSON for generated files, text checked as UTF-8. */
#include <ctype.h>
#include <math.h>
#include <strings.h>
#include "internal.h"

static int is_number_text(const char *s)
{
	const char *p = s;
	if (*p == '-' || *p == '+')
		p++;
	if (!strcasecmp(p, "nan") || !strcasecmp(p, "inf") || !strcasecmp(p, "infinity"))
		return 1;
	if (!*p)
		return 0;
	for (; *p; p++)
		if (!isdigit((unsigned char)*p) && *p != '.' && *p != 'e' && *p != 'E' && *p != '-' && *p != '+')
			return 0;
	return 1;
}

/* A number as a param's text writes it, exactly (json.h: an integer when it is one that fits in
 * int64, else the nearest double). NULL when the text is no number an int64 or a double holds
 * (99999999999999999999, 1e400): it then stays a string. */
static cJSON *number_from_text(const char *s)
{
	cJSON *v = NULL;
	const char *p = s + (*s == '-' || *s == '+');
	if (!strcasecmp(p, "nan") || !strcasecmp(p, "inf") || !strcasecmp(p, "infinity"))
		return al_value_double(*p == 'n' || *p == 'N' ? NAN : *s == '-' ? -INFINITY : INFINITY);
	if (al_number_value(&v, s) != 0)
		al_error_clear();
	return v;
}

/* A param's text → typed value (README "params"). A final newline is dropped. Text that cannot
 * be stored as written (a NUL, bytes that are not UTF-8) is refused; JSON that parses but cannot
 * be stored exactly (too deep, a key twice, an integer past int64) is refused with the reason;
 * text that is no JSON at all ("[WIP] run") is a string. */
int param_from_text(cJSON **out, const char *text, size_t len)
{
	char *s = NULL;
	size_t n = len;
	int rc = 0;

	*out = NULL;
	if (n && text[n - 1] == '\n')
		n--;
	if (n && text[n - 1] == '\r')
		n--;
	if (memchr(text, '\0', n))
		return al_error_set(AL_EINVAL, "a param value cannot hold a NUL byte");
	if (!al_utf8_valid(text, n))
		return al_error_set(AL_EINVAL, "a param value must be UTF-8 text");
	if (!(s = strndup(text, n)))
		return al_error_set(AL_ENOMEM, "out of memory");
	if (n && is_number_text(s) && (*out = number_from_text(s)))
		goto done;
	if (!strcmp(s, "true") || !strcmp(s, "false")) {
		*out = al_value_bool(s[0] == 't');
		goto done;
	}
	if (s[0] == '{' || s[0] == '[') {
		cJSON *lenient;
		if (al_json_to_value(out, s, n) == 0)
			goto done;
		/* Valid JSON we cannot keep exactly is refused; anything else is text. */
		if ((lenient = cJSON_ParseWithOpts(s, NULL, 1))) {   /* the whole text, nothing after */
			cJSON_Delete(lenient);
			rc = AL_EINVAL;   /* al_json_to_value's message says why */
			goto done;
		}
	}
	*out = al_value_string(s);
done:
	if (rc == 0 && !*out)
		rc = al_error_set(AL_ENOMEM, "out of memory");
	free(s);
	return rc;
}

/* A typed value as a line of text: strings raw, numbers shortest, maps/arrays compact JSON. */
int value_text(al_buf *b, const cJSON *v)
{
	int64_t i;
	double d;
	int bo, rc;
	const char *s;
	char num[64], *p = NULL;
	cJSON *j;

	if ((s = al_value_get_string(v)))
		return al_buf_puts(b, s);
	if (al_value_get_int(&i, v) == 0)
		return al_buf_printf(b, "%lld", (long long)i);
	if (al_value_get_double(&d, v) == 0) {
		/* -0.0 stays a double (README "params"): "-0" would read back as the integer 0, so
		 * `cat a/params/z > b/params/z` would not copy it. Others print shortest: 3.0 as "3"
		 * is the integer the text means anyway. */
		if (d == 0 && signbit(d))
			return al_buf_puts(b, "-0.0");
		al_double_format(num, d);
		return al_buf_puts(b, num);
	}
	if (al_value_get_bool(&bo, v) == 0)
		return al_buf_puts(b, bo ? "true" : "false");
	j = al_value_to_json(v);
	rc = j ? al_json_print(&p, NULL, j, 0) : 0;
	if (rc == 0)
		rc = al_buf_puts(b, p ? p : "null");
	free(p);
	cJSON_Delete(j);
	return rc;
}

int json_out(al_buf *b, cJSON *j, int pretty)
{
	char *p = NULL;
	size_t len = 0;
	int rc = al_json_print(&p, &len, j, pretty ? AL_JSON_PRETTY : 0);
	if (rc == 0)
		rc = al_buf_put(b, p, len);
	if (rc == 0)
		rc = al_buf_puts(b, "\n");
	free(p);
	return rc;
}

/* A double for generated JSON: read back as the same double by any reader (json.h). */
cJSON *double_json(double v)
{
	char num[40];
	al_json_double(num, v);
	return cJSON_CreateRaw(num);
}

/* An int64 for generated JSON: exact past 2^53 (al_json_print copies raw text). */
cJSON *int_json(int64_t v)
{
	char num[32];
	snprintf(num, sizeof(num), "%lld", (long long)v);
	return cJSON_CreateRaw(num);
}

void time_json(cJSON *o, const char *key, const cJSON *fields, const char *field)
{
	int64_t us;
	char buf[48];
	if (al_fields_get_time(&us, fields, field) == 0)
		cJSON_AddStringToObject(o, key, al_time_format(buf, us, 6));
	else
		cJSON_AddNullToObject(o, key);
}

void field_json(cJSON *o, const char *key, const cJSON *fields, const char *field)
{
	const cJSON *v = al_fields_get(fields, field);
	cJSON *j = v ? al_value_to_json(v) : NULL;
	cJSON_AddItemToObject(o, key, j ? j : cJSON_CreateNull());
}

/* status/fold/model/description of a run or experiment: the value and a newline. */
int render_text_field(al_buf *b, const cJSON *fields, const char *name)
{
	const cJSON *v = al_fields_get(fields, name);
	int rc = 0;
	if (v && !cJSON_GetObjectItemCaseSensitive(v, "nullValue"))
		rc = value_text(b, v);
	if (rc == 0 && b->len > 0)
		rc = al_buf_puts(b, "\n");
	return rc;
}

/* A text file's content as one value: the final newline dropped; NUL bytes and text that is not
 * UTF-8 are refused (README "Files behave like files"), never cut or changed. */
int text_checked(char **out, const al_buf *b, const char *what)
{
	size_t n = b->len;
	*out = NULL;
	if (n && b->ptr[n - 1] == '\n')
		n--;
	if (n && b->ptr[n - 1] == '\r')
		n--;
	if (n && memchr(b->ptr, '\0', n))
		return al_error_set(AL_EINVAL, "%s must be text without NUL bytes", what);
	if (n && !al_utf8_valid(b->ptr, n))
		return al_error_set(AL_EINVAL, "%s must be UTF-8 text", what);
	if (!(*out = strndup(b->ptr ? b->ptr : "", n)))
		return al_error_set(AL_ENOMEM, "out of memory");
	return 0;
}

/* The JSON object written to params.json or metadata/<name>: the whole text, or — when every write
 * landed after the content shown at open (`>>`, Python's 'a' mode) — only what was appended, whose
 * keys then merge into the current ones (README "params"). *fields gets the object's fields. */
int written_object(cJSON **fields, int *appended, const al_file *f, const char *what)
{
	size_t from = f->keep && f->low_write >= f->keep ? f->keep : 0;
	cJSON *v = NULL;
	int rc;

	*fields = NULL;
	*appended = from > 0;
	if ((rc = al_json_to_value(&v, f->text.ptr ? f->text.ptr + from : "", f->text.len - from)))
		return al_error_set(rc, "%s must be one JSON object: %s", what, al_error_last());
	if (!al_value_get_map(v)) {
		cJSON_Delete(v);
		return al_error_set(AL_EINVAL, "%s must be one JSON object", what);
	}
	*fields = cJSON_Duplicate(al_value_get_map(v), 1);
	cJSON_Delete(v);
	return *fields ? 0 : al_error_set(AL_ENOMEM, "out of memory");
}
