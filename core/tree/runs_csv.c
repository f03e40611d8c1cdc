/* aletheia: an experiment's runs.csv, one row per run with its params, tags, duration and each
 * metric's last, min and max values, for pandas and spreadsheets (README "runs.csv"). */
#include <ctype.h>
#include <math.h>
#include <stddef.h>
#include "internal.h"

static int csv_field(al_buf *b, const char *s)
{
	int rc = 0;
	if (!strpbrk(s, ",\"\r\n"))
		return al_buf_puts(b, s);
	rc |= al_buf_puts(b, "\"");
	for (; *s && rc == 0; s++)
		rc = *s == '"' ? al_buf_puts(b, "\"\"") : al_buf_put(b, s, 1);
	return rc ? rc : al_buf_puts(b, "\"");
}

/* Numeric ids in numeric order (any length: compared as digit strings), then the others by
 * bytes. */
static int cmp_ids(const char *x, const char *y)
{
	int ix = *x && strspn(x, "0123456789") == strlen(x), iy = *y && strspn(y, "0123456789") == strlen(y);
	if (ix && iy) {
		size_t lx, ly;
		while (x[0] == '0' && x[1])
			x++;
		while (y[0] == '0' && y[1])
			y++;
		lx = strlen(x);
		ly = strlen(y);
		return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
	}
	if (ix != iy)
		return ix ? -1 : 1;
	return strcmp(x, y);
}

int cmp_run_ids(const void *a, const void *b)
{
	return cmp_ids(al_doc_id((*(al_doc *const *)a)->path), al_doc_id((*(al_doc *const *)b)->path));
}

/* A run's row, kept as text between reading the runs and writing the file: the run documents
 * are parsed one at a time and dropped, so 10,000 runs never sit in memory as trees (README
 * "Known limitations"). The cells are the bytes the rows were printed with from the trees. */
typedef struct cell_pair {
	const char *key;    /* param or metric name */
	const char *cells;  /* its cell(s) as CSV text, each preceded by ',' */
	size_t ord;         /* the order read, so that the first of equal names wins */
} cell_pair;

typedef struct csv_row {
	char *path;         /* the run document */
	char *head;         /* id,status,fold,model,created,ended,git_commit,duration,tags */
	char *ptext;        /* the params' names and cells, NUL-separated (pairs point into it) */
	cell_pair *params;
	size_t np;
	char *mtext;
	cell_pair *metrics;
	size_t nm;
} csv_row;

typedef struct rows_ctx {
	al__slab *slabs;   /* the rows' text, cells and pairs */
	csv_row *v;
	size_t n, cap;
	keyset pk;          /* every param name any run has */
	size_t hint;        /* where the next name of this run likely is in pk */
	int64_t *mtime;
	al_buf cell, text;  /* scratch */
} rows_ctx;

static int cmp_pairs(const void *a, const void *b)
{
	const cell_pair *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : (x->ord < y->ord ? -1 : x->ord > y->ord);
}

static int cmp_rows(const void *a, const void *b)
{
	return cmp_ids(al_doc_id(((const csv_row *)a)->path), al_doc_id(((const csv_row *)b)->path));
}

/* Points the pairs into text (name NUL cells NUL, n times), sorted by name with the first of
 * equal names kept (as a lookup by name in the tree finds the first). */
static int pairs_make(cell_pair **out, size_t *count, al__slab **slabs, const char *text, size_t n)
{
	cell_pair *p = al__slab_alloc(slabs, (n + 1) * sizeof(*p));
	size_t i, w;
	if (!p)
		return AL_ENOMEM;
	for (i = 0; i < n; i++) {
		p[i].key = text;
		text += strlen(text) + 1;
		p[i].cells = text;
		text += strlen(text) + 1;
		p[i].ord = i;
	}
	if (n > 1)
		qsort(p, n, sizeof(*p), cmp_pairs);
	for (i = 0, w = 0; i < n; i++)
		if (w == 0 || strcmp(p[w - 1].key, p[i].key) != 0)
			p[w++] = p[i];
	*out = p;
	*count = w;
	return 0;
}

/* A value as a cell: empty when absent or null. */
static void value_cell(al_buf *b, al_buf *cell, const cJSON *v)
{
	al_buf_puts(b, ",");
	al_buf_clear(cell);
	if (v && !cJSON_GetObjectItemCaseSensitive(v, "nullValue"))
		value_text(cell, v);
	csv_field(b, cell->ptr ? cell->ptr : "");
}

/* Seconds from the run's start to its end; empty while it runs, so that the file changes only
 * when what it is made of changes (README "runs.csv"). */
static void append_duration(al_buf *b, const cJSON *f)
{
	int64_t start, end;
	char num[32];
	al_buf_puts(b, ",");
	if (al_fields_get_time(&end, f, "ended") != 0 ||
	    (al_fields_get_time(&start, f, "started") != 0 && al_fields_get_time(&start, f, "created") != 0))
		return;
	al_double_format(num, (double)(end > start ? end - start : 0) / 1e6);
	al_buf_puts(b, num);
}

/* The run's tags by name, ';'-separated (README "tags"). */
static void append_tags(al_buf *b, al_buf *cell, const cJSON *f)
{
	keyset k = {0};
	const cJSON *it, *tags = al_value_get_map(al_fields_get(f, "tags"));
	size_t i;
	al_buf_puts(b, ",");
	if (!tags)
		return;
	cJSON_ArrayForEach(it, tags)
		keyset_add(&k, it->string);
	keyset_sort(&k);
	al_buf_clear(cell);
	for (i = 0; i < k.n; i++)
		al_buf_printf(cell, "%s%s", i ? ";" : "", k.keys[i]);
	csv_field(b, cell->ptr ? cell->ptr : "");
	keyset_free(&k);
}

/* keyset_add, first trying where the previous run's next name was: runs mostly have the same
 * params and metrics in the same order, so most names cost one comparison, not a hash. */
static void name_add(keyset *k, size_t *hint, const char *key)
{
	size_t i;
	if (*hint < k->n && strcmp(k->keys[*hint], key) == 0) {
		(*hint)++;
		return;
	}
	keyset_add(k, key);
	i = keyset_find(k, key);
	*hint = i == KEYSET_NONE ? k->n : i + 1;
}

/* One run document read: its row's text, then the tree can go. */
static int row_add(rows_ctx *c, const al_doc *run)
{
	static const char *const texts[] = {"fold", "model"};
	const cJSON *f = run->fields, *it;
	const cJSON *hp = al_value_get_map(al_fields_get(f, "hyper_params"));
	const cJSON *git = al_value_get_map(al_fields_get(f, "git"));
	al_buf *b = &c->text;
	csv_row *r;
	const char *status;
	int64_t us, crashed = 0;
	char tb[48];
	size_t k, np = 0;
	int rc = 0;

	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 64;
		csv_row *v = realloc(c->v, ncap * sizeof(*v));
		if (!v)
			return al_error_set(AL_ENOMEM, "out of memory");
		c->v = v;
		c->cap = ncap;
	}
	r = &c->v[c->n];
	memset(r, 0, sizeof(*r));
	mtime_raise(c->mtime, run->update_us);
	al_buf_clear(b);
	csv_field(b, al_doc_id(run->path));
	/* crashed when its wrapper's heartbeat stopped (README "Crashed runs") */
	status = run_status_shown(&crashed, run);
	mtime_raise(c->mtime, crashed);
	al_buf_puts(b, ",");
	csv_field(b, status ? status : "");
	for (k = 0; k < 2; k++)
		value_cell(b, &c->cell, al_fields_get(f, texts[k]));
	al_buf_printf(b, ",%s", al_fields_get_time(&us, f, "created") == 0 ? al_time_format(tb, us, 6) : "");
	al_buf_printf(b, ",%s", al_fields_get_time(&us, f, "ended") == 0 ? al_time_format(tb, us, 6) : "");
	al_buf_printf(b, ",%s", git && al_fields_get_string(git, "commit") ? al_fields_get_string(git, "commit") : "");
	append_duration(b, f);
	append_tags(b, &c->cell, f);
	if (!(r->path = al__slab_dup(&c->slabs, run->path, strlen(run->path))) ||
	    !(r->head = al__slab_dup(&c->slabs, b->ptr ? b->ptr : "", b->len))) {
		rc = AL_ENOMEM;
		goto cleanup;
	}
	/* params: name NUL ",cell" NUL each */
	al_buf_clear(b);
	c->hint = 0;
	if (hp)
		cJSON_ArrayForEach(it, hp) {
			name_add(&c->pk, &c->hint, it->string);
			al_buf_put(b, it->string, strlen(it->string) + 1);
			value_cell(b, &c->cell, al_fields_get(hp, it->string));
			al_buf_put(b, "", 1);
			np++;
		}
	if (np) {
		if (!(r->ptext = al__slab_dup(&c->slabs, b->ptr, b->len))) {
			rc = AL_ENOMEM;
			goto cleanup;
		}
		if ((rc = pairs_make(&r->params, &r->np, &c->slabs, r->ptext, np)))
			goto cleanup;
	}
cleanup:
	if (rc == 0)
		c->n++;
	return rc;
}

/* A fast reader of a run document's text: the top-level fields a row uses are parsed, the
 * others (param_times, command, the machine's spec, …: over half of the text) only stepped over.
 * Strict JSON only; anything else (escaped names, deep nesting, text after the object) returns
 * NULL and the caller parses the whole text as before, so the row stays the same bytes. */
static const char *const row_fields[] = {"status", "heartbeat", "fold", "model", "created",
	"started", "ended", "git", "tags", "hyper_params"};
#define N_ROW_FIELDS (sizeof(row_fields) / sizeof(row_fields[0]))

static const char *json_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at '"': past the closing quote, or NULL; *escaped when it held a backslash. */
static const char *json_string(const char *p, const char *end, int *escaped)
{
	for (p++; p < end; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '"')
			return p + 1;
		if (ch < 0x20)
			return NULL;
		if (ch == '\\') {
			*escaped = 1;
			if (++p >= end)
				return NULL;
			if (*p == 'u') {
				int k;
				for (k = 0; k < 4; k++)
					if (++p >= end || !isxdigit((unsigned char)*p))
						return NULL;
			} else if (!strchr("\"\\/bfnrt", *p) || !*p)
				return NULL;
		}
	}
	return NULL;
}

static const char *json_digits(const char *p, const char *end)
{
	const char *q = p;
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p > q ? p : NULL;
}

static const char *json_value(const char *p, const char *end, int depth)
{
	int escaped = 0;
	if (p >= end || depth > 32)
		return NULL;
	if (*p == '"')
		return json_string(p, end, &escaped);
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';
		p = json_ws(p + 1, end);
		if (p < end && *p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				if (p >= end || *p != '"' || !(p = json_string(p, end, &escaped)))
					return NULL;
				p = json_ws(p, end);
				if (p >= end || *p != ':')
					return NULL;
				p = json_ws(p + 1, end);
			}
			if (!(p = json_value(p, end, depth + 1)))
				return NULL;
			p = json_ws(p, end);
			if (p < end && *p == close)
				return p + 1;
			if (p >= end || *p != ',')
				return NULL;
			p = json_ws(p + 1, end);
		}
	}
	if (*p == 't' || *p == 'f' || *p == 'n') {
		static const char *const lit[] = {"true", "false", "null"};
		size_t k;
		for (k = 0; k < 3; k++)
			if ((size_t)(end - p) >= strlen(lit[k]) && memcmp(p, lit[k], strlen(lit[k])) == 0)
				return p + strlen(lit[k]);
		return NULL;
	}
	if (*p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if (!(p = json_digits(p, end)))
		return NULL;
	if (p < end && *p == '.' && !(p = json_digits(p + 1, end)))
		return NULL;
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (!(p = json_digits(p, end)))
			return NULL;
	}
	return p;
}

/* The object of the fields a row uses (the first of a repeated name, as a lookup in the whole
 * tree finds), or NULL when the text is not plain JSON. */
static cJSON *row_fields_read(const char *text, size_t len)
{
	const char *p = text, *end = text + len, *name, *v;
	const char *at[N_ROW_FIELDS] = {0};
	size_t vlen[N_ROW_FIELDS] = {0}, k, nlen;
	cJSON *o = NULL;

	p = json_ws(p, end);
	if (p >= end || *p != '{')
		return NULL;
	p = json_ws(p + 1, end);
	if (p < end && *p == '}')
		p++;
	else
		for (;;) {
			int escaped = 0;
			if (p >= end || *p != '"')
				return NULL;
			name = p + 1;
			if (!(p = json_string(p, end, &escaped)) || escaped)
				return NULL;
			nlen = (size_t)(p - 1 - name);
			p = json_ws(p, end);
			if (p >= end || *p != ':')
				return NULL;
			v = json_ws(p + 1, end);
			if (!(p = json_value(v, end, 0)))
				return NULL;
			for (k = 0; k < N_ROW_FIELDS; k++)
				if (!at[k] && strlen(row_fields[k]) == nlen && memcmp(row_fields[k], name, nlen) == 0) {
					at[k] = v;
					vlen[k] = (size_t)(p - v);
				}
			p = json_ws(p, end);
			if (p < end && *p == '}') {
				p++;
				break;
			}
			if (p >= end || *p != ',')
				return NULL;
			p = json_ws(p + 1, end);
		}
	if (json_ws(p, end) != end || !(o = cJSON_CreateObject()))
		return NULL;
	for (k = 0; k < N_ROW_FIELDS; k++) {
		cJSON *item;
		if (!at[k])
			continue;
		if (!(item = cJSON_ParseWithLength(at[k], vlen[k]))) {
			cJSON_Delete(o);
			return NULL;
		}
		cJSON_AddItemToObject(o, row_fields[k], item);
	}
	return o;
}

/* store.h list_text: each run document read, turned into its row and dropped. */
static int row_from_text(void *ctx, const char *path, const char *text, size_t len, int64_t update_us)
{
	al_doc d = {(char *)path, NULL, 0, update_us};
	int rc;
	if (!(d.fields = row_fields_read(text, len)))
		d.fields = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(d.fields)) {   /* as the store's listing: left out, and named */
		cJSON_Delete(d.fields);
		fprintf(stderr, "aletheia: document %s has corrupt fields in the store\n", path);
		return 0;
	}
	rc = row_add(ctx, &d);
	cJSON_Delete(d.fields);
	return rc;
}

/* A summary's min or max as a cell: empty while no point had a comparable value (all NaN). */
static void bound_cell(al_buf *b, double v)
{
	char num[32];
	al_buf_puts(b, ",");
	if (!isnan(v)) {
		al_double_format(num, v);
		al_buf_puts(b, num);
	}
}

/* The last, min and max values of each metric of a run with points, as runs.csv prints them,
 * by its exact name; *names gains the names, *mtime the newest point. min and max come with the
 * summary the series keeps (README "runs.csv"). */
static int row_metrics(csv_row *r, al__slab **slabs, keyset *names, int64_t *mtime, al_tree *t,
	al_series_stored *stored, al_buf *b)
{
	char **ids = NULL;
	al_series_summary *sums = NULL;
	size_t nids = 0, k, nm = 0, hint = 0;
	int rc = 0;

	/* a listing that failed (a remote store out of reach, with nothing kept to answer from)
	 * fails the render: a table without the run's metrics would be wrong, not stale */
	if ((rc = run_summaries(&ids, &sums, &nids, t, stored, r->path)))
		return rc;
	al_buf_clear(b);
	for (k = 0; k < nids; k++) {
		char *name = al_id_decode(ids[k]);
		char num[32];
		if (name && sums[k].count) {
			name_add(names, &hint, name);
			mtime_raise(mtime, sums[k].update_us);
			al_buf_put(b, name, strlen(name) + 1);
			al_double_format(num, sums[k].last);   /* nan, inf as Python prints them */
			al_buf_printf(b, ",%s", num);
			bound_cell(b, sums[k].min);
			bound_cell(b, sums[k].max);
			al_buf_put(b, "", 1);
			nm++;
		}
		free(name);
	}
	if (nm) {
		if (!(r->mtext = al__slab_dup(slabs, b->ptr, b->len)))
			rc = AL_ENOMEM;
		else
			rc = pairs_make(&r->metrics, &r->nm, slabs, r->mtext, nm);
	}
	al_strings_free(ids, nids);
	free(sums);
	return rc;
}

static void write_header(al_buf *b, const keyset *params, const keyset *metrics)
{
	size_t k;
	al_buf_puts(b, "id,status,fold,model,created,ended,git_commit,duration,tags");
	for (k = 0; k < params->n; k++) {
		char *h = xasprintf("param.%s", params->keys[k]);
		al_buf_puts(b, ",");
		csv_field(b, h ? h : "");
		free(h);
	}
	for (k = 0; k < metrics->n; k++) {
		static const char *const sfx[] = {"", ".min", ".max"};
		size_t j;
		for (j = 0; j < 3; j++) {
			char *h = xasprintf("metric.%s%s", metrics->keys[k], sfx[j]);
			al_buf_puts(b, ",");
			csv_field(b, h ? h : "");
			free(h);
		}
	}
	al_buf_puts(b, "\r\n");
}

/* The row's cells under the header's names (both sorted by bytes), empty where it has none. */
static void write_cells(al_buf *b, const cell_pair *p, size_t n, const keyset *names, const char *none)
{
	size_t k, j = 0;
	for (k = 0; k < names->n; k++) {
		int c = 1;
		while (j < n && (c = strcmp(p[j].key, names->keys[k])) < 0)
			j++;
		al_buf_puts(b, j < n && c == 0 ? p[j].cells : none);
	}
}

static void write_row(al_buf *b, const csv_row *r, const keyset *params, const keyset *metrics)
{
	al_buf_puts(b, r->head);
	write_cells(b, r->params, r->np, params, ",");
	write_cells(b, r->metrics, r->nm, metrics, ",,,");
	al_buf_puts(b, "\r\n");
}

/* One row per run in id order, a column per param and three per metric (last, min, max) any run
 * has, sorted by name. */
static int render_runs_csv(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc_list *runs = NULL;
	al_series_stored *stored = NULL;
	char *coll = xasprintf("%s/runs", n->exp_doc);
	rows_ctx c = {0};
	keyset mk = {0};
	size_t i;
	int rc;

	c.mtime = mtime;
	if (!coll) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	/* every run's metric documents in one query where the store has one, read meanwhile */
	if (al_series_stored_start(&stored, t->series, n->exp_doc) != 0)
		al_error_clear();   /* then a query per run, as without */
	/* SQLite hands each document's text over in turn; the others list them as trees */
	if (t->store->list_text) {
		if ((rc = t->store->list_text(t->store, coll, row_from_text, &c)))
			goto cleanup;
	} else {
		if ((rc = al_store_list(&runs, t->store, coll, NULL, NULL)))
			goto cleanup;
		for (i = 0; i < runs->count; i++)
			if ((rc = row_add(&c, runs->docs[i])))
				goto cleanup;
		al_doc_list_free(runs);
		runs = NULL;
	}
	if (c.n)
		qsort(c.v, c.n, sizeof(*c.v), cmp_rows);
	for (i = 0; i < c.n; i++)
		if ((rc = row_metrics(&c.v[i], &c.slabs, &mk, mtime, t, stored, &c.text)))
			goto cleanup;
	keyset_sort(&c.pk);
	keyset_sort(&mk);
	write_header(b, &c.pk, &mk);
	for (i = 0; i < c.n; i++)
		write_row(b, &c.v[i], &c.pk, &mk);
cleanup:
	al_series_stored_free(stored);
	al__slabs_free(c.slabs);
	free(c.v);
	al_buf_dispose(&c.cell);
	al_buf_dispose(&c.text);
	keyset_free(&c.pk);
	keyset_free(&mk);
	al_doc_list_free(runs);
	free(coll);
	return rc;
}

static int runs_csv_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	int64_t mt = 0;
	int rc;
	if ((rc = doc_exists(t, n->exp_doc)) == 0 && (rc = render_runs_csv(b, &mt, t, n)) == 0)
		mtime_raise(mtime, mt);
	return rc;
}

const al_kind kind_runs_csv = {
	.name = "runs.csv", .pattern = EXPERIMENT_P "/runs.csv", .owner = O_EXPERIMENT, .mode = 0444,
	.render = runs_csv_render,
};
