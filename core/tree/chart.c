/* aletheia: the SVG chart writer of the plots/ folders (README "plots"): series streamed from the metric
 * series twice (their range, then a min/max reduction per pixel column), so a chart of any number
 * of points holds one run's columns at a time, never its points. */
#include <float.h>
#include <math.h>
#include "report.h"

#define LEGEND_MAX 30        /* legend lines; more series are counted in one last line */
#define LEGEND_LINE 16

/* ---- text ------------------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (0 if none): RFC 3629, no overlongs or surrogates. */
static size_t utf8_len(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (s[0] >= 0xe0 && s[0] <= 0xef) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))
			return 0;
		return 3;
	}
	if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

int xml_text(al_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	int rc = 0;
	while (*p && rc == 0) {
		size_t n = utf8_len(p);
		switch (*p) {
		case '&': rc = al_buf_puts(b, "&amp;"); break;
		case '<': rc = al_buf_puts(b, "&lt;"); break;
		case '>': rc = al_buf_puts(b, "&gt;"); break;
		case '"': rc = al_buf_puts(b, "&quot;"); break;
		case '\'': rc = al_buf_puts(b, "&#39;"); break;
		default:
			if (n == 0 || (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r') ||
			    (n == 3 && p[0] == 0xef && p[1] == 0xbf && p[2] >= 0xbe))
				rc = al_buf_puts(b, "\xef\xbf\xbd");   /* U+FFFD */
			else
				rc = al_buf_put(b, p, n);
		}
		p += n ? n : 1;
	}
	return rc;
}

int url_path(al_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int rc = 0;
	for (; *p && rc == 0; p++)
		rc = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			strchr("-._~/", *p) ? al_buf_put(b, p, 1) : al_buf_printf(b, "%%%02X", *p);
	return rc;
}

/* ---- colours --------------------------------------------------------------------------------- */

void chart_colour(char out[8], size_t i)
{
	/* Tableau 10, then hues a golden angle apart */
	static const char *const palette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
		"#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
	double h, s = 0.65, l = 0.42, c, x, m, r = 0, g = 0, bl = 0;
	if (i < 10) {
		memcpy(out, palette[i], 8);
		return;
	}
	h = fmod((double)i * 137.508, 360.0) / 60.0;
	c = (1 - fabs(2 * l - 1)) * s;
	x = c * (1 - fabs(fmod(h, 2.0) - 1));
	m = l - c / 2;
	switch ((int)h) {
	case 0: r = c; g = x; break;
	case 1: r = x; g = c; break;
	case 2: g = c; bl = x; break;
	case 3: g = x; bl = c; break;
	case 4: r = x; bl = c; break;
	default: r = c; bl = x; break;
	}
	snprintf(out, 8, "#%02x%02x%02x", (unsigned)lround((r + m) * 255), (unsigned)lround((g + m) * 255),
		(unsigned)lround((bl + m) * 255));
}

/* ---- streaming points ------------------------------------------------------------------------ */

typedef struct stream {
	al_series_set *s;
	al_point *pts;             /* one batch (AL_SERIES_CHUNK points) */
} stream;

typedef void (*point_fn)(void *ctx, const al_point *p, uint64_t ordinal);

/* Every point of a series, a batch at a time (al_series_points); none for an empty metric. */
static int stream_points(stream *st, const char *doc, point_fn fn, void *ctx)
{
	uint64_t from = 0, view = UINT64_MAX;
	for (;;) {
		size_t got = 0, i;
		int rc = al_series_points(st->pts, &got, &view, st->s, doc, from, AL_SERIES_CHUNK);
		if (rc == AL_ENOTFOUND) {   /* created, not one point yet */
			al_error_clear();
			return 0;
		}
		if (rc)
			return rc;
		for (i = 0; i < got; i++)
			fn(ctx, &st->pts[i], from + i);
		from += got;
		if (got < AL_SERIES_CHUNK)
			return 0;
	}
}

/* ---- scales ---------------------------------------------------------------------------------- */

typedef struct range {
	double xmin, xmax, ymin, ymax;
	uint64_t drawn, skipped;   /* finite points; NaN and infinite ones */
} range;

static void range_point(void *ctx, const al_point *p, uint64_t ordinal)
{
	range *r = ctx;
	double x = (double)p->step;
	(void)ordinal;
	if (!isfinite(p->value)) {
		r->skipped++;
		return;
	}
	if (r->drawn++ == 0) {
		r->xmin = r->xmax = x;
		r->ymin = r->ymax = p->value;
		return;
	}
	if (x < r->xmin) r->xmin = x;
	if (x > r->xmax) r->xmax = x;
	if (p->value < r->ymin) r->ymin = p->value;
	if (p->value > r->ymax) r->ymax = p->value;
}

typedef struct scale {
	double lo, hi;             /* in log10 units when log */
	int log;
} scale;

/* Where v lies in [lo, hi], 0..1; halves first, so that spans near DBL_MAX do not overflow. */
static double scale_frac(const scale *sc, double v)
{
	double h;
	if (sc->log)
		v = log10(v);
	h = sc->hi * 0.5 - sc->lo * 0.5;
	return h > 0 ? (v * 0.5 - sc->lo * 0.5) / h : 0.5;
}

static double clamp_finite(double v)
{
	return isfinite(v) ? v : v > 0 ? DBL_MAX : -DBL_MAX;
}

/* Values spanning several decades, all positive, get a log scale (README "plots"). */
static void scale_y(scale *sc, const range *r)
{
	double pad;
	sc->log = r->drawn && r->ymin > 0 && r->ymax / r->ymin >= 1e3;
	if (sc->log) {
		sc->lo = log10(r->ymin);
		sc->hi = log10(r->ymax);
	} else {
		sc->lo = r->drawn ? r->ymin : 0;
		sc->hi = r->drawn ? r->ymax : 1;
	}
	if (sc->lo == sc->hi) {
		double d = sc->lo == 0 ? 1 : fabs(sc->lo) * 0.1;
		sc->lo = clamp_finite(sc->lo - d);
		sc->hi = clamp_finite(sc->hi + d);
		return;
	}
	pad = (sc->hi * 0.5 - sc->lo * 0.5) * 0.1;
	sc->lo = clamp_finite(sc->lo - pad);
	sc->hi = clamp_finite(sc->hi + pad);
}

static void scale_x(scale *sc, const range *r)
{
	sc->log = 0;
	sc->lo = r->drawn ? r->xmin : 0;
	sc->hi = r->drawn ? r->xmax : 1;
	if (sc->lo == sc->hi) {
		sc->lo -= 1;
		sc->hi += 1;
	}
}

/* Tick values of a linear scale: multiples of 1, 2 or 5 × 10^k, about five of them. */
static size_t nice_ticks(double *out, size_t max, const scale *sc)
{
	double raw = (sc->hi * 0.5 - sc->lo * 0.5) * 0.4, mag, r, step, t;
	size_t n = 0;
	if (!(raw > 0) || !isfinite(raw))
		return 0;
	mag = pow(10, floor(log10(raw)));
	r = raw / mag;
	step = (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
	for (t = ceil(sc->lo / step); n < max && t * step <= sc->hi; t += 1) {
		double v = t * step;
		out[n++] = fabs(v) < step * 1e-9 ? 0 : v;
	}
	return n;
}

/* Powers of ten within a log scale, thinned to at most about eight. */
static size_t log_ticks(double *out, size_t max, const scale *sc)
{
	double k0 = ceil(sc->lo), k1 = floor(sc->hi), k, every;
	size_t n = 0;
	/* The padded scale may reach past the doubles (1e-300 .. 1e300 pads to 10^-360 .. 10^360):
	 * only powers of ten that are finite and above 0 are ticks (10^-323 is the least one). */
	if (k0 < -323)
		k0 = -323;
	if (k1 > 308)
		k1 = 308;
	every = ceil((k1 - k0 + 1) / 8);
	if (every < 1)
		every = 1;
	for (k = k0; k <= k1 && n < max; k += every) {
		double v = pow(10, k);
		if (v > 0 && isfinite(v))
			out[n++] = v;
	}
	return n;
}

static void tick_label(char *buf, size_t cap, double v)
{
	snprintf(buf, cap, "%.6g", v);
}

/* ---- one panel ------------------------------------------------------------------------------- */

/* A pixel column's share of a series: its first and last points, its lowest and highest (M4:
 * the extremes are never dropped, whatever the number of points). */
typedef struct column {
	uint64_t n, imin, imax;
	double first, last, min, max;
	double xfirst, xlast, xmin, xmax;   /* their pixel x */
} column;

typedef struct reduce {
	range *seen;               /* the range the points really have */
	column *cols;
	size_t ncols;
	const scale *sx;
	double x0, pw;
} reduce;

static void reduce_point(void *ctx, const al_point *p, uint64_t ordinal)
{
	reduce *r = ctx;
	double f, px;
	size_t c;
	column *col;
	range_point(r->seen, p, ordinal);
	if (!isfinite(p->value))
		return;
	f = scale_frac(r->sx, (double)p->step);
	if (f < 0) f = 0;   /* outside the guessed range: the panel is drawn again */
	if (f > 1) f = 1;
	c = (size_t)(f * (double)r->ncols);
	if (c >= r->ncols)
		c = r->ncols - 1;
	px = r->x0 + f * r->pw;
	col = &r->cols[c];
	if (col->n++ == 0) {
		col->first = col->min = col->max = p->value;
		col->imin = col->imax = ordinal;
		col->xfirst = col->xmin = col->xmax = px;
	}
	if (p->value < col->min) {
		col->min = p->value;
		col->imin = ordinal;
		col->xmin = px;
	}
	if (p->value > col->max) {
		col->max = p->value;
		col->imax = ordinal;
		col->xmax = px;
	}
	col->last = p->value;
	col->xlast = px;
}

typedef struct panel {
	double x0, y0, pw, ph;     /* the plot area */
	scale sx, sy;
	al_buf *b;
	char last[64];             /* the last coordinate written to the path, to skip repeats */
} panel;

static double panel_y(const panel *pn, double v)
{
	return pn->y0 + pn->ph - scale_frac(&pn->sy, v) * pn->ph;
}

static int path_to(panel *pn, int *started, double x, double v)
{
	char xy[64];
	snprintf(xy, sizeof(xy), "%.1f %.1f", x, panel_y(pn, v));
	if (*started && strcmp(xy, pn->last) == 0)
		return 0;
	memcpy(pn->last, xy, sizeof(xy));
	return al_buf_printf(pn->b, "%s%s", (*started)++ ? "L" : "M", xy);
}

/* The reduced series as one path; a lone point as a dot. */
static int draw_series(panel *pn, stream *st, const chart_series *ser, range *seen)
{
	reduce r = {seen, NULL, (size_t)pn->pw, &pn->sx, pn->x0, pn->pw};
	size_t c, used = 0, only = 0;
	int rc, started = 0;
	char colour[8];

	if (r.ncols < 1)
		r.ncols = 1;
	if (!(r.cols = calloc(r.ncols, sizeof(column))))
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((rc = stream_points(st, ser->doc, reduce_point, &r)))
		goto cleanup;
	for (c = 0; c < r.ncols; c++)
		if (r.cols[c].n) {
			used++;
			only = c;
		}
	chart_colour(colour, ser->colour);
	if (used == 0)
		goto cleanup;
	if (used == 1 && r.cols[only].min == r.cols[only].max) {
		rc = al_buf_printf(pn->b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
			r.cols[only].xfirst, panel_y(pn, r.cols[only].first), colour);
		goto cleanup;
	}
	al_buf_puts(pn->b, "<path fill=\"none\" stroke-width=\"1.5\" stroke-linejoin=\"round\" d=\"");
	for (c = 0; c < r.ncols && rc == 0; c++) {
		const column *col = &r.cols[c];
		if (!col->n)
			continue;
		/* first, the extremes in the order they came, last; the same spot once */
		path_to(pn, &started, col->xfirst, col->first);
		if (col->imin < col->imax) {
			path_to(pn, &started, col->xmin, col->min);
			path_to(pn, &started, col->xmax, col->max);
		} else {
			path_to(pn, &started, col->xmax, col->max);
			path_to(pn, &started, col->xmin, col->min);
		}
		rc = path_to(pn, &started, col->xlast, col->last);
	}
	if (rc == 0)
		rc = al_buf_printf(pn->b, "\" stroke=\"%s\"/>\n", colour);
cleanup:
	free(r.cols);
	return rc;
}

/* Grid, ticks and their labels, the frame. */
static void draw_axes(panel *pn)
{
	double ticks[16];
	size_t n, i;
	char lab[64];
	al_buf *b = pn->b;

	al_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ffffff\" "
		"stroke=\"#888888\"/>\n", pn->x0, pn->y0, pn->pw, pn->ph);
	n = pn->sy.log ? log_ticks(ticks, 16, &pn->sy) : nice_ticks(ticks, 16, &pn->sy);
	for (i = 0; i < n; i++) {
		double y = panel_y(pn, ticks[i]);
		tick_label(lab, sizeof(lab), ticks[i]);
		al_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
			"<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", pn->x0, y,
			pn->x0 + pn->pw, y, pn->x0 - 4, y + 4, lab);
	}
	n = nice_ticks(ticks, 16, &pn->sx);
	for (i = 0; i < n; i++) {
		double x = pn->x0 + scale_frac(&pn->sx, ticks[i]) * pn->pw;
		tick_label(lab, sizeof(lab), ticks[i]);
		al_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
			"<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, pn->y0, x,
			pn->y0 + pn->ph, x, pn->y0 + pn->ph + 15, lab);
	}
}

/* The range of a panel's points as their summaries give it, without reading them: steps from
 * each series' first point to its last step, values from its min to its max. 0 when a summary
 * cannot tell (a series with an infinite or no comparable value): then the points are read for it. */
static int estimate_range(range *r, int64_t *mtime, stream *st, const chart_series *ser, size_t n)
{
	size_t i;
	int usable = 1;
	memset(r, 0, sizeof(*r));
	for (i = 0; i < n; i++) {
		al_series_summary sum;
		al_point first;
		size_t got = 0;
		uint64_t view = UINT64_MAX;
		if (al_series_summary_get(&sum, st->s, ser[i].doc)) {
			al_error_clear();
			usable = 0;
			continue;
		}
		mtime_raise(mtime, sum.update_us);
		if (!sum.count)
			continue;
		if (!isfinite(sum.min) || !isfinite(sum.max) ||
		    al_series_points(&first, &got, &view, st->s, ser[i].doc, 0, 1) || got != 1) {
			al_error_clear();
			usable = 0;
			continue;
		}
		range_point(r, &(al_point){first.step, sum.min, 0}, 0);
		range_point(r, &(al_point){sum.step, sum.max, 0}, 0);
	}
	r->drawn = r->drawn ? 1 : 0;   /* only whether any: counts come from the points */
	return usable;
}

static int same_range(const range *a, const range *b)
{
	return (a->drawn > 0) == (b->drawn > 0) && (!a->drawn || (a->xmin == b->xmin &&
		a->xmax == b->xmax && a->ymin == b->ymin && a->ymax == b->ymax));
}

/* One chart's plot area at (x0, y0): title, axes, every series, and the notes. The scales come
 * from the summaries and the points are read once, reduced and drawn; when they turn out to span
 * another range (steps not in order, points added meanwhile), the panel is drawn again with the
 * range they showed. A series is streamed at most three times, never held. */
static int draw_panel(al_buf *b, int64_t *mtime, stream *st, const char *title,
	const chart_series *ser, size_t n, double x0, double y0, double pw, double ph, int xlabel)
{
	panel pn = {x0, y0, pw, ph, {0, 0, 0}, {0, 0, 0}, b, ""};
	range guess, seen;
	size_t i, mark = b->len;
	int rc = 0, attempt;

	if (!estimate_range(&guess, mtime, st, ser, n)) {
		memset(&guess, 0, sizeof(guess));
		for (i = 0; i < n && rc == 0; i++)
			rc = stream_points(st, ser[i].doc, range_point, &guess);
		if (rc)
			return rc;
	}
	for (attempt = 0; attempt < 2; attempt++) {
		if (b->len > mark) {   /* drawn with a range the points did not have */
			b->len = mark;
			b->ptr[mark] = '\0';
		}
		memset(&seen, 0, sizeof(seen));
		scale_x(&pn.sx, &guess);
		scale_y(&pn.sy, &guess);
		al_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" font-weight=\"bold\">", x0, y0 - 10);
		xml_text(b, title);
		al_buf_printf(b, "%s</text>\n", pn.sy.log ? " (log scale)" : "");
		draw_axes(&pn);
		if (xlabel)
			al_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>\n",
				x0 + pw / 2, y0 + ph + 32);
		for (i = 0; i < n && rc == 0; i++)
			rc = draw_series(&pn, st, &ser[i], &seen);
		if (rc)
			return rc;
		if (same_range(&seen, &guess))
			break;
		guess = seen;
	}
	if (seen.skipped)
		al_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#b00020\">%llu "
			"NaN/inf point%s not drawn</text>\n", x0 + pw, y0 - 10,
			(unsigned long long)seen.skipped, seen.skipped == 1 ? "" : "s");
	if (!seen.drawn)
		al_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#666666\">%s"
			"</text>\n", x0 + pw / 2, y0 + ph / 2, seen.skipped ? "no finite points" : "no points");
	return 0;
}

static int svg_begin(al_buf *b, double w, double h)
{
	/* SVG 1.1, self-contained: no script, no external font, image or stylesheet */
	return al_buf_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
		"viewBox=\"0 0 %.0f %.0f\">\n"
		"<rect width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n"
		"<g font-family=\"sans-serif\" font-size=\"11\" fill=\"#333333\">\n", w, h, w, h, w, h);
}

static int svg_end(al_buf *b)
{
	return al_buf_puts(b, "</g>\n</svg>\n");
}

static int stream_init(stream *st, al_series_set *s)
{
	st->s = s;
	if (!(st->pts = malloc(AL_SERIES_CHUNK * sizeof(al_point))))
		return al_error_set(AL_ENOMEM, "out of memory");
	return 0;
}

int chart_svg(al_buf *b, int64_t *mtime, al_series_set *s, const char *title,
	const chart_series *ser, size_t n, int legend)
{
	const double width = 800, x0 = 72, y0 = 34, pw = 708, ph = 320;
	size_t lines = legend ? (n > LEGEND_MAX ? LEGEND_MAX + 1 : n) : 0, i;
	double height = y0 + ph + 44 + (lines ? (double)lines * LEGEND_LINE + 8 : 0);
	stream st;
	int rc;

	if ((rc = stream_init(&st, s)))
		return rc;
	svg_begin(b, width, height);
	if ((rc = draw_panel(b, mtime, &st, title, ser, n, x0, y0, pw, ph, 1)))
		goto cleanup;
	for (i = 0; i < lines; i++) {
		double y = y0 + ph + 44 + (double)i * LEGEND_LINE + 8;
		char colour[8];
		if (i == LEGEND_MAX) {
			al_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\">… and %zu more</text>\n", x0 + 28, y + 4,
				n - LEGEND_MAX);
			break;
		}
		chart_colour(colour, ser[i].colour);
		al_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
			"stroke-width=\"3\"/><text x=\"%.1f\" y=\"%.1f\">", x0, y, x0 + 22, y, colour, x0 + 28, y + 4);
		xml_text(b, ser[i].label);
		al_buf_puts(b, "</text>\n");
	}
	rc = svg_end(b);
cleanup:
	free(st.pts);
	return rc;
}

int chart_multiples_svg(al_buf *b, int64_t *mtime, al_series_set *s, const char *title,
	const chart_series *ser, size_t n)
{
	const double pwid = 400, phei = 240, left = 60, top = 34, pw = 326, ph = 170, head = 30;
	size_t cols = n > 1 ? 2 : 1, rows = n ? (n + cols - 1) / cols : 1, i;
	stream st;
	int rc = 0;

	if ((rc = stream_init(&st, s)))
		return rc;
	svg_begin(b, pwid * (double)cols, head + phei * (double)rows);
	al_buf_puts(b, "<text x=\"8\" y=\"20\" font-size=\"15\" font-weight=\"bold\">");
	xml_text(b, title);
	al_buf_puts(b, "</text>\n");
	if (n == 0)
		al_buf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"#666666\">no "
			"metrics</text>\n", pwid / 2, head + phei / 2);
	for (i = 0; i < n && rc == 0; i++) {
		double px = pwid * (double)(i % cols), py = head + phei * (double)(i / cols);
		rc = draw_panel(b, mtime, &st, ser[i].label, &ser[i], 1, px + left, py + top, pw, ph, 0);
	}
	if (rc == 0)
		rc = svg_end(b);
	free(st.pts);
	return rc;
}
