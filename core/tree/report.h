/* aletheia: what the plots (plots.c, chart.c) and report pages (report.c) share: the SVG chart
 * writer, escaping for XML/HTML and URLs, and the per-experiment facts both show (runs in id
 * order, the params that differ). Not a public header. */
#ifndef ALETHEIA_TREE_REPORT_H
#define ALETHEIA_TREE_REPORT_H

#include "internal.h"

/* One line of a chart: the metric document whose points it draws, its legend text. */
typedef struct chart_series {
	const char *doc;
	const char *label;
	size_t colour;             /* chart_colour's index: a run keeps its colour in every chart */
} chart_series;

/* A whole SVG 1.1 file of one chart: every series overlaid, one colour each, with a legend when
 * legend is set (README "plots"). *mtime is raised to the newest point drawn. */
int chart_svg(al_buf *b, int64_t *mtime, al_series_set *s, const char *title,
	const chart_series *ser, size_t n, int legend);
/* A whole SVG 1.1 file of small multiples: one panel per series, titled by its label. */
int chart_multiples_svg(al_buf *b, int64_t *mtime, al_series_set *s, const char *title,
	const chart_series *ser, size_t n);
/* The colour of the i-th series, "#rrggbb" (the same in a chart and in the report's table). */
void chart_colour(char out[8], size_t i);

/* Text as XML/HTML character data or an attribute value: &<>"' escaped, bytes that are not
 * UTF-8 and control characters XML 1.0 forbids written as U+FFFD. */
int xml_text(al_buf *b, const char *s);
/* A relative URL of a name or path: each byte outside RFC 3986's unreserved set and '/'
 * percent-encoded (a metric named a%b or a#b or ü links to the file of that name). */
int url_path(al_buf *b, const char *s);

/* The runs of an experiment in runs.csv's order (numeric ids numerically, then by bytes). */
int experiment_runs(al_doc_list **out, al_tree *t, const char *exp_doc);
/* The param keys whose values are not the same in every run (absent counts as a value), sorted. */
int params_that_differ(keyset *out, const al_doc_list *runs);
/* A run's param value as text ("" when absent); *cell is cleared first. */
const char *param_cell(al_buf *cell, const al_doc *run, const char *key);
/* The run's label in a legend: its id and "key=value" of each param that differs. */
char *run_label(const al_doc *run, const keyset *differ);

#endif
