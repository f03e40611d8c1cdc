/* aletheia: an experiment's runs.changed.csv: runs.csv with only the columns whose values differ
 * between runs, id always kept (README "runs.csv"). */
#include "internal.h"

/* One CSV record of RFC 4180 text at *p (advanced past its line end): its fields' raw bytes,
 * quotes and all, as [start, end) pairs in *spans, so they can be written out unchanged. */
typedef struct span {
	size_t start, end;
} span;

static int next_record(span **spans, size_t *n, size_t *cap, const char *s, size_t len, size_t *p)
{
	size_t i = *p;
	*n = 0;
	if (i >= len)
		return 0;
	for (;;) {
		size_t start = i;
		int quoted = 0;
		while (i < len) {
			if (s[i] == '"')
				quoted = !quoted;
			else if (!quoted && (s[i] == ',' || s[i] == '\r' || s[i] == '\n'))
				break;
			i++;
		}
		if (*n == *cap) {
			size_t c = *cap ? *cap * 2 : 64;
			span *ns = realloc(*spans, c * sizeof(span));
			if (!ns)
				return al_error_set(AL_ENOMEM, "out of memory");
			*spans = ns;
			*cap = c;
		}
		(*spans)[(*n)++] = (span){start, i};
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
	*p = i;
	return 1;
}

static int same_cell(const char *s, span a, span b)
{
	return a.end - a.start == b.end - b.start && memcmp(s + a.start, s + b.start, a.end - a.start) == 0;
}

/* Columns kept: id (the first) and every column where some row's value differs from the first
 * row's. Two passes over runs.csv's text, the second writing the kept fields as they are. */
static int changed_from_csv(al_buf *b, const char *s, size_t len)
{
	span *first = NULL, *row = NULL;
	size_t nfirst = 0, capfirst = 0, nrow = 0, caprow = 0, ncols = 0, p = 0, i;
	unsigned char *keep = NULL;
	int rc = 0, r;

	if ((r = next_record(&first, &ncols, &capfirst, s, len, &p)) <= 0) {
		rc = r;
		goto cleanup;
	}
	if (!(keep = calloc(ncols + 1, 1))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	keep[0] = 1;
	/* the first data row is the reference */
	if ((r = next_record(&first, &nfirst, &capfirst, s, len, &p)) < 0) {
		rc = r;
		goto cleanup;
	}
	while (r > 0 && (r = next_record(&row, &nrow, &caprow, s, len, &p)) > 0)
		for (i = 1; i < ncols && i < nrow && i < nfirst; i++)
			if (!keep[i] && !same_cell(s, first[i], row[i]))
				keep[i] = 1;
	if (r < 0) {
		rc = r;
		goto cleanup;
	}
	for (p = 0, r = 1; rc == 0 && (r = next_record(&row, &nrow, &caprow, s, len, &p)) > 0;) {
		int any = 0;
		for (i = 0; i < nrow && i < ncols; i++)
			if (keep[i]) {
				if (any++)
					al_buf_puts(b, ",");
				al_buf_put(b, s + row[i].start, row[i].end - row[i].start);
			}
		rc = al_buf_puts(b, "\r\n");
	}
	if (r < 0)
		rc = r;
cleanup:
	free(first);
	free(row);
	free(keep);
	return rc;
}

static int runs_changed_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	char *path = xasprintf("/%s/experiments/%s/runs.csv", n->project, n->experiment);
	rendered *csv = NULL;
	uint64_t size;
	node cn;
	int rc;

	memset(&cn, 0, sizeof(cn));
	if (!path) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	/* runs.csv's render, shared with its readers while nothing it is made of changed */
	if ((rc = node_parse(&cn, path)) || (rc = render_cached(&csv, &size, mtime, t, &cn, path)))
		goto cleanup;
	rc = changed_from_csv(b, csv->data, csv->len);
cleanup:
	rendered_put(csv);
	node_free(&cn);
	free(path);
	return rc;
}

const al_kind kind_runs_changed_csv = {
	.name = "runs.changed.csv", .pattern = EXPERIMENT_P "/runs.changed.csv", .owner = O_EXPERIMENT,
	.mode = 0444, .render = runs_changed_render,
};
