/* aletheia: `aletheia ls PROJECT/EXPERIMENT`: an experiment's runs table (its runs.csv read through
 * the mount) aligned for a terminal, sorted, filtered and cut; and the table printing and CSV
 * reading that `aletheia diff` shares (README "The command line"). */
#include <errno.h>
#include <math.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>
#include "aletheia/common.h"
#include "cli/cli.h"

/* ---- RFC 4180 text into rows of cells ---------------------------------------------------- */

static int push(char ***v, size_t *n, size_t *cap, char *s)
{
	if (*n + 1 >= *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		char **p = realloc(*v, c * sizeof(char *));
		if (!p)
			return -1;
		*v = p;
		*cap = c;
	}
	(*v)[(*n)++] = s;
	(*v)[*n] = NULL;
	return 0;
}

static int push_row(al_cli_table *t, size_t *cap, char **row)
{
	if (t->nrows + 1 >= *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		char ***p = realloc(t->rows, c * sizeof(char **));
		if (!p)
			return -1;
		t->rows = p;
		*cap = c;
	}
	t->rows[t->nrows++] = row;
	return 0;
}

void al_cli_table_free(al_cli_table *t)
{
	size_t i, j;
	for (i = 0; i < t->nrows; i++) {
		for (j = 0; j < t->ncols; j++)
			free(t->rows[i][j]);
		free(t->rows[i]);
	}
	free(t->rows);
	memset(t, 0, sizeof(*t));
}

int al_cli_table_parse(al_cli_table *t, const char *s, size_t len)
{
	size_t i = 0, rcap = 0;
	memset(t, 0, sizeof(*t));
	while (i < len) {
		char **row = NULL;
		size_t n = 0, cap = 0;
		for (;;) {
			char *cell = malloc(len - i + 1);
			size_t w = 0;
			if (!cell)
				goto nomem;
			if (i < len && s[i] == '"') {
				for (i++; i < len; i++) {
					if (s[i] == '"') {
						if (i + 1 < len && s[i + 1] == '"')
							i++;
						else {
							i++;
							break;
						}
					}
					cell[w++] = s[i];
				}
			}
			while (i < len && s[i] != ',' && s[i] != '\r' && s[i] != '\n')
				cell[w++] = s[i++];
			cell[w] = '\0';
			if (push(&row, &n, &cap, cell)) {
				free(cell);
				goto nomem;
			}
			if (i < len && s[i] == ',') {
				i++;
				continue;
			}
			if (i < len && s[i] == '\r')
				i++;
			if (i < len && s[i] == '\n')
				i++;
			break;
		}
		if (t->nrows == 0)
			t->ncols = n;
		/* every row has the header's cells */
		while (n < t->ncols)
			if (push(&row, &n, &cap, strdup("")))
				goto nomem;
		if (push_row(t, &rcap, row))
			goto nomem;
		continue;
nomem:
		{
			size_t j;
			for (j = 0; j < n; j++)
				free(row[j]);
			free(row);
		}
		al_cli_table_free(t);
		return AL_ENOMEM;
	}
	return 0;
}

/* ---- printing aligned ------------------------------------------------------------------- */

/* Columns a cell takes on a terminal (wide characters 2, combining 0); control characters are
 * printed as one space each. */
static size_t width(const char *s)
{
	mbstate_t st;
	size_t w = 0, n, len = strlen(s);
	wchar_t wc;
	memset(&st, 0, sizeof(st));
	while (len) {
		n = mbrtowc(&wc, s, len, &st);
		if (n == (size_t)-1 || n == (size_t)-2) {
			memset(&st, 0, sizeof(st));
			n = 1;
			w++;
		} else {
			int cw = wcwidth(wc);
			w += cw < 0 ? 1 : (size_t)cw;
		}
		s += n ? n : 1;
		len -= n ? n : 1;
	}
	return w;
}

static void put_cell(FILE *f, const char *s)
{
	for (; *s; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s, f);
}

void al_cli_table_print(FILE *f, char *const *const *rows, size_t nrows, const size_t *cols,
	size_t ncols)
{
	size_t *w = calloc(ncols + 1, sizeof(size_t)), i, j;
	/* display widths need the user's locale, or UTF-8 when it is the C locale */
	if (!setlocale(LC_CTYPE, "") || strcmp(setlocale(LC_CTYPE, NULL), "C") == 0)
		setlocale(LC_CTYPE, "C.UTF-8");
	if (!w)
		return;
	for (i = 0; i < nrows; i++)
		for (j = 0; j < ncols; j++) {
			size_t cw = width(rows[i][cols[j]]);
			if (cw > w[j])
				w[j] = cw;
		}
	for (i = 0; i < nrows; i++) {
		for (j = 0; j < ncols; j++) {
			const char *s = rows[i][cols[j]];
			put_cell(f, s);
			if (j + 1 < ncols)   /* two spaces between columns, none after the last */
				fprintf(f, "%*s", (int)(w[j] - width(s) + 2), "");
		}
		fputc('\n', f);
	}
	free(w);
}

/* ---- reading a file of the mount ---------------------------------------------------------- */

int al_cli_read_file(char **out, size_t *len, const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;
	*out = NULL;
	if (!f)
		return errno;
	for (;;) {
		size_t got;
		if (cap - n < 65536) {
			char *p = realloc(buf, cap + 65536 + 1);
			if (!p) {
				free(buf);
				fclose(f);
				return ENOMEM;
			}
			buf = p;
			cap += 65536;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		int err = errno ? errno : EIO;
		free(buf);
		fclose(f);
		return err;
	}
	fclose(f);
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* ---- aletheia ls ------------------------------------------------------------------------- */

/* The header index of a column the user named: exact, else metric.NAME, else param.NAME. */
static long find_col(const al_cli_table *t, const char *name)
{
	static const char *const prefixes[] = {"", "metric.", "param."};
	size_t p, j;
	for (p = 0; p < 3; p++)
		for (j = 0; j < t->ncols; j++) {
			const char *h = t->rows[0][j];
			size_t pl = strlen(prefixes[p]);
			if (strncmp(h, prefixes[p], pl) == 0 && strcmp(h + pl, name) == 0)
				return (long)j;
		}
	return -1;
}

static int is_number(const char *s, double *v)
{
	char *end;
	if (!*s)
		return 0;
	*v = strtod(s, &end);
	return *end == '\0';
}

static long sort_col;
static int sort_desc;
static char ***sort_rows;

/* A cell's place whichever the direction: 0 a number or text, 1 NaN (a diverged run: never first),
 * 2 empty. */
static int cell_class(const char *s)
{
	double v;
	if (!*s)
		return 2;
	return is_number(s, &v) && isnan(v) ? 1 : 0;
}

/* Numbers by value, then text by bytes; numbers before text, NaN after both and empty cells last,
 * either way; ties in runs.csv's order (the row index). NaN compares neither less nor greater
 * than a number: left among them, the comparison is no order and qsort leaves numbers out of
 * order. */
static int cmp_rows(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	const char *s = sort_rows[x][sort_col], *u = sort_rows[y][sort_col];
	double v, w;
	int nx, ny, c = 0, kx = cell_class(s), ky = cell_class(u);
	if (kx != ky)
		return kx < ky ? -1 : 1;
	if (kx == 0) {
		nx = is_number(s, &v);
		ny = is_number(u, &w);
		if (nx != ny)
			return nx ? -1 : 1;   /* numbers before text, either way */
		c = nx ? (v < w ? -1 : v > w ? 1 : 0) : strcmp(s, u);
		if (sort_desc)
			c = -c;
	}
	return c ? c : x < y ? -1 : 1;
}

/* The columns shown unless --columns: all but created and ended, the min and max columns, and
 * columns empty in every row shown. */
static int shown_by_default(const al_cli_table *t, const size_t *rows, size_t n, size_t j)
{
	const char *h = t->rows[0][j];
	size_t hl = strlen(h), i;
	if (j == 0)
		return 1;
	if (!strcmp(h, "created") || !strcmp(h, "ended"))
		return 0;
	if (strncmp(h, "metric.", 7) == 0 && hl > 4 &&
	    (!strcmp(h + hl - 4, ".min") || !strcmp(h + hl - 4, ".max"))) {
		/* a metric literally named x.min keeps its column */
		char *base = strndup(h, hl - 4);
		int metric = base && find_col(t, base) >= 0;
		free(base);
		if (metric)
			return 0;
	}
	for (i = 0; i < n; i++)
		if (*t->rows[rows[i]][j])
			return 1;
	return 0;
}

int al_cli_ls(int argc, char **argv)
{
	const char *exper = NULL, *mount = al_cli_default_mount(), *sort = NULL, *limit_s = NULL,
		*columns = NULL, *v;
	const char *where[64];
	size_t nwhere = 0, i, j, n = 0, *rows = NULL, *cols = NULL, ncols = 0;
	char *path = NULL, *text = NULL;
	al_cli_table t;
	unsigned long limit = (unsigned long)-1;
	size_t len;
	int rc = 1, r;

	memset(&t, 0, sizeof(t));
	for (int k = 1; k < argc; k++) {
		if (!strcmp(argv[k], "--help") || !strcmp(argv[k], "-h")) {
			return al_cli_help("ls");
		}
		if ((r = al_cli_option("--mount", argc, argv, &k, &mount)) ||
		    (r = al_cli_option("--sort", argc, argv, &k, &sort)) ||
		    (r = al_cli_option("--limit", argc, argv, &k, &limit_s)) ||
		    (r = al_cli_option("--columns", argc, argv, &k, &columns))) {
			if (r < 0)
				return al_cli_usage("ls");
			continue;
		}
		if ((r = al_cli_option("--where", argc, argv, &k, &v))) {
			if (r < 0)
				return al_cli_usage("ls");
			if (nwhere == sizeof(where) / sizeof(*where) || !strchr(v, '=')) {
				al_cli_fail("--where takes KEY=VALUE (at most 64 of them), not '%s'", v);
				return al_cli_usage("ls");
			}
			where[nwhere++] = v;
			continue;
		}
		if (argv[k][0] == '-' && argv[k][1]) {
			al_cli_fail("unknown option '%s'", argv[k]);
			return al_cli_usage("ls");
		}
		if (exper) {
			al_cli_fail("one PROJECT/EXPERIMENT only ('%s' is extra)", argv[k]);
			return al_cli_usage("ls");
		}
		exper = argv[k];
	}
	if (!exper || al_cli_check_exper(exper)) {
		if (exper)
			al_cli_fail("'%s' is not PROJECT/EXPERIMENT", exper);
		return al_cli_usage("ls");
	}
	if (limit_s) {
		char *end;
		errno = 0;
		limit = strtoul(limit_s, &end, 10);
		if (errno || !*limit_s || *end || *limit_s == '-') {
			al_cli_fail("--limit takes a count of runs, not '%s'", limit_s);
			return al_cli_usage("ls");
		}
	}
	{
		const char *slash = strchr(exper, '/');
		if (asprintf(&path, "%s/%.*s/experiments/%s/runs.csv", mount, (int)(slash - exper), exper,
			     slash + 1) < 0) {
			path = NULL;
			al_cli_fail("out of memory");
			goto cleanup;
		}
	}
	if ((r = al_cli_read_file(&text, &len, path))) {
		al_cli_fail("cannot read %s: %s; check the experiment's name and that %s is an aletheia "
			"mount", path, strerror(r), mount);
		goto cleanup;
	}
	if (al_cli_table_parse(&t, text, len) || t.nrows == 0) {
		al_cli_fail("%s: not a runs table", path);
		goto cleanup;
	}
	if (!(rows = calloc(t.nrows, sizeof(size_t))) || !(cols = calloc(t.ncols + 1, sizeof(size_t)))) {
		al_cli_fail("out of memory");
		goto cleanup;
	}
	/* --where: every condition, on exact text */
	for (i = 1; i < t.nrows; i++) {
		int keep = 1;
		for (j = 0; j < nwhere && keep; j++) {
			const char *eq = strchr(where[j], '=');
			char *key = strndup(where[j], (size_t)(eq - where[j]));
			long c = key ? find_col(&t, key) : -1;
			if (c < 0) {
				al_cli_fail("--where: no column '%s' in %s", key ? key : "", path);
				free(key);
				rc = 2;
				goto cleanup;
			}
			free(key);
			keep = strcmp(t.rows[i][c], eq + 1) == 0;
		}
		if (keep)
			rows[n++] = i;
	}
	if (sort) {
		sort_desc = sort[0] == '-';
		if ((sort_col = find_col(&t, sort + sort_desc)) < 0) {
			al_cli_fail("--sort: no column '%s' in %s", sort + sort_desc, path);
			rc = 2;
			goto cleanup;
		}
		sort_rows = t.rows;
		qsort(rows, n, sizeof(size_t), cmp_rows);
	}
	if (n > limit)
		n = limit;
	if (columns) {
		char *list = strdup(columns), *save = NULL, *c;
		cols[ncols++] = 0;
		for (c = list ? strtok_r(list, ",", &save) : NULL; c; c = strtok_r(NULL, ",", &save)) {
			long k = find_col(&t, c);
			if (k < 0) {
				al_cli_fail("--columns: no column '%s' in %s", c, path);
				free(list);
				rc = 2;
				goto cleanup;
			}
			if (k && ncols < t.ncols)
				cols[ncols++] = (size_t)k;
		}
		free(list);
	} else {
		for (j = 0; j < t.ncols; j++)
			if (shown_by_default(&t, rows, n, j) || (sort && (long)j == sort_col))
				cols[ncols++] = j;
	}
	/* the header, then the rows chosen */
	{
		char ***out = calloc(n + 1, sizeof(char **));
		if (!out) {
			al_cli_fail("out of memory");
			goto cleanup;
		}
		out[0] = t.rows[0];
		for (i = 0; i < n; i++)
			out[i + 1] = t.rows[rows[i]];
		al_cli_table_print(stdout, (char *const *const *)out, n + 1, cols, ncols);
		free(out);
	}
	rc = fflush(stdout) == 0 ? 0 : 1;
cleanup:
	al_cli_table_free(&t);
	free(rows);
	free(cols);
	free(text);
	free(path);
	return rc;
}
