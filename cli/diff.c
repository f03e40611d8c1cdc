/* aletheia: `aletheia diff RUN RUN`: what differs between two runs (status, fold, model, git
 * commit and dirty flag, tags, params, and each metric's last, min and max), read from their
 * run.json through the mount, one line each, aligned; exit status as diff(1) (README "The command
 * line"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include "aletheia/common.h"
#include "core/doc/json.h"
#include "core/doc/value.h"
#include "core/series/metric.h"
#include "cli/cli.h"

/* A run's folder: a path to it (holding run.json), or PROJECT/EXPERIMENT/ID under the mount. */
static char *run_dir(const char *arg, const char *mount)
{
	struct stat st;
	char *json = NULL, *out = NULL;
	const char *s1 = strchr(arg, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
	if (asprintf(&json, "%s/run.json", arg) >= 0 && stat(json, &st) == 0 && S_ISREG(st.st_mode))
		out = strdup(arg);
	else if (arg[0] != '/' && arg[0] != '.' && s1 && s2 && !strchr(s2 + 1, '/') && s1 > arg &&
		 s2 > s1 + 1 && s2[1] &&
		 asprintf(&out, "%s/%.*s/experiments/%.*s/runs/%s", mount, (int)(s1 - arg), arg,
			  (int)(s2 - s1 - 1), s1 + 1, s2 + 1) < 0)
		out = NULL;
	free(json);
	return out;
}

/* Numbers are raw items holding their JSON text ("120", "3.5", "1e+16", "NaN"; value.h). */
static int is_number(const cJSON *v)
{
	return cJSON_IsRaw(v) && v->valuestring;
}

static cJSON *read_run(const char *dir, const char *arg)
{
	char *path = NULL, *text = NULL;
	size_t len;
	cJSON *j = NULL, *typed = NULL;
	int err;
	if (asprintf(&path, "%s/run.json", dir) < 0) {
		al_cli_fail("out of memory");
		return NULL;
	}
	if ((err = al_cli_read_file(&text, &len, path)))
		al_cli_fail("%s: cannot read %s: %s; give a run's folder or PROJECT/EXPERIMENT/ID with "
			"the mount at --mount", arg, path, strerror(err));
	/* Parsed exactly (json.h: integers past 2^53, NaN and ±Infinity as Python writes them), then
	 * back to plain JSON whose numbers are raw items holding their exact text (value.h). */
	else if (al_json_to_value(&typed, text, len) < 0 || !al_value_get_map(typed) ||
		 !(j = al_value_to_json(typed)))
		al_cli_fail("%s: %s is not a run's run.json", arg, path);
	cJSON_Delete(typed);
	free(text);
	free(path);
	return j;
}

/* A value as one line of text, as runs.csv prints it (core/tree/values.c value_text): integers
 * exactly, doubles as their shortest decimal (al_double_format: 120, 100000, 1e+16, nan), other
 * values as JSON; NULL when absent. */
static char *value_text(const cJSON *v)
{
	char num[40], *p = NULL;
	if (!v)
		return NULL;
	if (cJSON_IsString(v))
		return strdup(v->valuestring);
	if (cJSON_IsNull(v))
		return strdup("");
	if (cJSON_IsBool(v))
		return strdup(cJSON_IsTrue(v) ? "true" : "false");
	if (is_number(v)) {
		if (!strpbrk(v->valuestring, ".eEIN"))   /* an integerValue: its digits */
			return strdup(v->valuestring);
		al_double_format(num, strtod(v->valuestring, NULL));
		return strdup(num);
	}
	return al_json_print(&p, NULL, v, 0) == 0 ? p : NULL;
}

typedef struct diffs {
	char ***rows;   /* [key, a, b] */
	size_t n, cap;
} diffs;

/* Adds a line when the texts differ (absent shows as "(none)"). */
static int note(diffs *d, const char *key, const cJSON *a, const cJSON *b)
{
	char *ta = value_text(a), *tb = value_text(b);
	int same = (!ta && !tb) || (ta && tb && strcmp(ta, tb) == 0);
	/* numbers that print differently but are equal (1 and 1.0) are the same */
	if (!same && is_number(a) && is_number(b) &&
	    strtod(a->valuestring, NULL) == strtod(b->valuestring, NULL))
		same = 1;
	if (same) {
		free(ta);
		free(tb);
		return 0;
	}
	if (d->n == d->cap) {
		size_t c = d->cap ? d->cap * 2 : 32;
		char ***p = realloc(d->rows, c * sizeof(char **));
		if (!p)
			return -1;
		d->rows = p;
		d->cap = c;
	}
	d->rows[d->n] = malloc(3 * sizeof(char *));
	if (!d->rows[d->n])
		return -1;
	d->rows[d->n][0] = strdup(key);
	d->rows[d->n][1] = ta ? ta : strdup("(none)");
	d->rows[d->n][2] = tb ? tb : strdup("(none)");
	d->n++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The union of two objects' keys, sorted (free the array, not the names: they are the objects'). */
static const char **union_keys(size_t *n, const cJSON *a, const cJSON *b)
{
	size_t cap = (size_t)cJSON_GetArraySize(a) + (size_t)cJSON_GetArraySize(b) + 1, i, w;
	const char **k = calloc(cap, sizeof(char *));
	const cJSON *it;
	*n = 0;
	if (!k)
		return NULL;
	cJSON_ArrayForEach(it, a)
		k[(*n)++] = it->string;
	cJSON_ArrayForEach(it, b)
		k[(*n)++] = it->string;
	qsort(k, *n, sizeof(char *), cmp_str);
	for (i = 0, w = 0; i < *n; i++)
		if (!w || strcmp(k[w - 1], k[i]) != 0)
			k[w++] = k[i];
	*n = w;
	return k;
}

/* Tags as runs.csv shows them: names, sorted, ';'-separated. */
static cJSON *tags_line(const cJSON *run)
{
	size_t n, i;
	const char **k = union_keys(&n, cJSON_GetObjectItemCaseSensitive(run, "tags"), NULL);
	char *s = NULL;
	size_t len = 0;
	cJSON *out;
	for (i = 0; k && i < n; i++)
		len += strlen(k[i]) + 1;
	if ((s = calloc(len + 1, 1)))
		for (i = 0; k && i < n; i++) {
			if (i)
				strcat(s, ";");
			strcat(s, k[i]);
		}
	out = cJSON_CreateString(s ? s : "");
	free(s);
	free(k);
	return out;
}

static int compare(diffs *d, const cJSON *a, const cJSON *b)
{
	static const char *const fields[] = {"status", "fold", "model"};
	const cJSON *ga = cJSON_GetObjectItemCaseSensitive(a, "git"), *gb = cJSON_GetObjectItemCaseSensitive(b, "git");
	const cJSON *pa = cJSON_GetObjectItemCaseSensitive(a, "params"), *pb = cJSON_GetObjectItemCaseSensitive(b, "params");
	const cJSON *ma = cJSON_GetObjectItemCaseSensitive(a, "metrics"), *mb = cJSON_GetObjectItemCaseSensitive(b, "metrics");
	cJSON *ta = tags_line(a), *tb = tags_line(b);
	const char **keys;
	size_t n, i, k;
	int rc = 0;

	for (i = 0; i < 3; i++)
		rc |= note(d, fields[i], cJSON_GetObjectItemCaseSensitive(a, fields[i]),
			cJSON_GetObjectItemCaseSensitive(b, fields[i]));
	rc |= note(d, "git_commit", cJSON_GetObjectItemCaseSensitive(ga, "commit"),
		cJSON_GetObjectItemCaseSensitive(gb, "commit"));
	rc |= note(d, "git_dirty", cJSON_GetObjectItemCaseSensitive(ga, "dirty"),
		cJSON_GetObjectItemCaseSensitive(gb, "dirty"));
	rc |= note(d, "tags", ta, tb);
	cJSON_Delete(ta);
	cJSON_Delete(tb);
	keys = union_keys(&n, pa, pb);
	for (i = 0; keys && i < n && rc == 0; i++) {
		char *key = NULL;
		if (asprintf(&key, "param.%s", keys[i]) < 0)
			return -1;
		rc |= note(d, key, cJSON_GetObjectItemCaseSensitive(pa, keys[i]),
			cJSON_GetObjectItemCaseSensitive(pb, keys[i]));
		free(key);
	}
	free(keys);
	/* per metric its last value, min and max, named as runs.csv's columns */
	keys = union_keys(&n, ma, mb);
	for (i = 0; keys && i < n && rc == 0; i++) {
		static const char *const parts[][2] = {{"last", ""}, {"min", ".min"}, {"max", ".max"}};
		const cJSON *xa = cJSON_GetObjectItemCaseSensitive(ma, keys[i]);
		const cJSON *xb = cJSON_GetObjectItemCaseSensitive(mb, keys[i]);
		for (k = 0; k < 3 && rc == 0; k++) {
			char *key = NULL;
			if (asprintf(&key, "metric.%s%s", keys[i], parts[k][1]) < 0)
				return -1;
			/* a metric one run lacks shows once, as its last value */
			if (k == 0 || (xa && xb))
				rc |= note(d, key, xa ? cJSON_GetObjectItemCaseSensitive(xa, parts[k][0]) : NULL,
					xb ? cJSON_GetObjectItemCaseSensitive(xb, parts[k][0]) : NULL);
			free(key);
		}
	}
	free(keys);
	return rc;
}

int al_cli_diff(int argc, char **argv)
{
	const char *mount = al_cli_default_mount(), *args[2];
	char *dirs[2] = {NULL, NULL};
	cJSON *runs[2] = {NULL, NULL};
	diffs d = {0};
	int nargs = 0, rc = 2, r, k;
	size_t i;

	for (k = 1; k < argc; k++) {
		if (!strcmp(argv[k], "--help") || !strcmp(argv[k], "-h")) {
			return al_cli_help("diff");
		}
		if ((r = al_cli_option("--mount", argc, argv, &k, &mount))) {
			if (r < 0)
				return al_cli_usage("diff");
			continue;
		}
		if (argv[k][0] == '-' && argv[k][1]) {
			al_cli_fail("unknown option '%s'", argv[k]);
			return al_cli_usage("diff");
		}
		if (nargs == 2) {
			al_cli_fail("two runs only ('%s' is extra)", argv[k]);
			return al_cli_usage("diff");
		}
		args[nargs++] = argv[k];
	}
	if (nargs != 2)
		return al_cli_usage("diff");
	for (k = 0; k < 2; k++) {
		if (!(dirs[k] = run_dir(args[k], mount))) {
			al_cli_fail("%s is neither a run's folder nor PROJECT/EXPERIMENT/ID", args[k]);
			goto cleanup;
		}
		if (!(runs[k] = read_run(dirs[k], args[k])))
			goto cleanup;
	}
	if (compare(&d, runs[0], runs[1])) {
		al_cli_fail("out of memory");
		goto cleanup;
	}
	if (d.n) {
		char ***rows = calloc(d.n + 1, sizeof(char **));
		char *head[3] = {"", (char *)args[0], (char *)args[1]};
		size_t cols[3] = {0, 1, 2};
		if (!rows) {
			al_cli_fail("out of memory");
			goto cleanup;
		}
		rows[0] = head;
		for (i = 0; i < d.n; i++)
			rows[i + 1] = d.rows[i];
		al_cli_table_print(stdout, (char *const *const *)rows, d.n + 1, cols, 3);
		free(rows);
	}
	rc = fflush(stdout) != 0 ? 2 : d.n ? 1 : 0;
cleanup:
	for (i = 0; i < d.n; i++) {
		free(d.rows[i][0]);
		free(d.rows[i][1]);
		free(d.rows[i][2]);
		free(d.rows[i]);
	}
	free(d.rows);
	for (k = 0; k < 2; k++) {
		free(dirs[k]);
		cJSON_Delete(runs[k]);
	}
	return rc;
}
