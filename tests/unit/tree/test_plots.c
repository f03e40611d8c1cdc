/* aletheia unit test of the tree: the plots/ SVG files of an experiment and of a run, and the report pages
 * (index.html) — exact sizes, read-only, edge cases of the data (no point, one point, all NaN,
 * huge values, many points, many runs) and of names (/, %, unicode, markup) (README "plots",
 * "index.html"). The integration tests parse the same files with XML and HTML parsers. */
#include <math.h>
#include "core/doc/value.h"
#include "core/stack_internal.h"
#include "tree_fixture.h"

#define EXP "/p/experiments/e"
#define PLOTS EXP "/plots"

/* The file read whole, its size in stat the same; NULL (a failed check) otherwise. */
static const char *cat_exact(const char *path)
{
	const char *s = tree_cat(path);
	CHECK(strncmp(s, "ERR", 3) != 0);
	CHECK_EQ_INT(tree_size(path), strlen(s));
	return s;
}

/* An SVG's shape: the XML declaration, one svg element closed at the end, nothing that runs or
 * fetches (README "plots": self-contained SVG 1.1). */
static void check_svg(const char *s)
{
	const char *p, *end;
	CHECK(strncmp(s, "<?xml version=\"1.0\"", 19) == 0);
	CHECK(strstr(s, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\"") != NULL);
	CHECK(strlen(s) > 7 && strcmp(s + strlen(s) - 7, "</svg>\n") == 0);
	CHECK(strstr(s, "<script") == NULL);
	CHECK(strstr(s, "href") == NULL);
	CHECK(strstr(s, "@font-face") == NULL);
	CHECK(strstr(s, "url(") == NULL);
	/* attributes (coordinates) are numbers: no nan or inf leaked from the values */
	for (p = s; (p = strstr(p, "=\"")); p = end + 1) {
		char value[4096];
		end = strchr(p + 2, '"');
		CHECK(end != NULL);
		if (!end)
			break;
		snprintf(value, sizeof(value), "%.*s", (int)(end - p - 2), p + 2);
		CHECK(strstr(value, "nan") == NULL && strstr(value, "inf") == NULL);
	}
}

/* The smallest y of the points of the SVG's paths (the highest drawn), or 1e9 if none. */
static double path_min_y(const char *s, size_t *points)
{
	double min = 1e9;
	*points = 0;
	while ((s = strstr(s, " d=\""))) {
		const char *p = s + 4;
		while (*p == 'M' || *p == 'L') {
			char *end;
			double x = strtod(p + 1, &end), y = strtod(end, &end);
			(void)x;
			if (y < min)
				min = y;
			(*points)++;
			p = end;
		}
		s = p;
	}
	return min;
}

static size_t count_of(const char *s, const char *what)
{
	size_t n = 0;
	while ((s = strstr(s, what))) {
		n++;
		s += strlen(what);
	}
	return n;
}

static void test_listing_and_read_only(void)
{
	al_attr a;
	CHECK_OK(tree_mkdirs(EXP "/runs/1"));
	CHECK(strstr(tree_ls(EXP), "index.html") != NULL);
	CHECK(strstr(tree_ls(EXP), "plots") != NULL);
	CHECK(strstr(tree_ls("/p"), "index.html") != NULL);
	CHECK(strstr(tree_ls(EXP "/runs/1"), "plots") != NULL);
	CHECK_EQ_STR(tree_ls(PLOTS), "");
	CHECK_EQ_STR(tree_ls(EXP "/runs/1/plots"), "metrics.svg");
	CHECK_OK(tree_append(EXP "/runs/1/metrics/loss", "0 1.0\n1 0.5\n2 0.25\n"));
	CHECK_OK(tree_append(EXP "/runs/1/metrics/val/loss", "0 2\n1 1\n"));
	CHECK_EQ_STR(tree_ls(PLOTS), "loss.svg val");
	CHECK_EQ_STR(tree_ls(PLOTS "/val"), "loss.svg");
	CHECK_EQ_STR(tree_ls(EXP "/runs/1/plots"), "loss.svg metrics.svg val");
	CHECK_OK(al_tree_getattr(&a, TF.t, PLOTS "/loss.svg"));
	CHECK_EQ_INT(a.mode, 0444);
	CHECK_EQ_INT(a.type, AL_NODE_FILE);
	CHECK_OK(al_tree_getattr(&a, TF.t, PLOTS "/val"));
	CHECK_EQ_INT(a.type, AL_NODE_DIR);
	CHECK_EQ_INT(al_tree_getattr(&a, TF.t, PLOTS "/nope.svg"), AL_ENOTFOUND);
	CHECK_EQ_INT(al_tree_getattr(&a, TF.t, PLOTS "/loss"), AL_ENOTFOUND);
	CHECK_EQ_INT(al_tree_getattr(&a, TF.t, EXP "/runs/1/plots/val/nope.svg"), AL_ENOTFOUND);
	/* generated files: writing fails as for runs.csv, nothing is created in plots/ */
	CHECK_EQ_INT(tree_write(PLOTS "/loss.svg", "x"), AL_EACCES);
	CHECK_EQ_INT(tree_write(PLOTS "/new.svg", "x"), AL_EACCES);
	CHECK_EQ_INT(tree_write(EXP "/runs/1/plots/metrics.svg", "x"), AL_EACCES);
	CHECK_EQ_INT(tree_write(EXP "/index.html", "x"), AL_EACCES);
	CHECK_EQ_INT(tree_write("/p/index.html", "x"), AL_EACCES);
	CHECK(tree_mkdir(PLOTS "/d") != 0);
	CHECK_OK(al_tree_getattr(&a, TF.t, EXP "/index.html"));
	CHECK_EQ_INT(a.mode, 0444);
	check_svg(cat_exact(PLOTS "/loss.svg"));
	check_svg(cat_exact(PLOTS "/val/loss.svg"));
	check_svg(cat_exact(EXP "/runs/1/plots/loss.svg"));
	check_svg(cat_exact(EXP "/runs/1/plots/val/loss.svg"));
	check_svg(cat_exact(EXP "/runs/1/plots/metrics.svg"));
	CHECK(strstr(tree_cat(EXP "/runs/1/plots/metrics.svg"), ">val/loss</text>") != NULL);
	CHECK(strstr(tree_cat(EXP "/runs/1/plots/metrics.svg"), ">loss</text>") != NULL);
	CHECK(strstr(tree_cat(PLOTS "/loss.svg"), "stroke=\"#4e79a7\"") != NULL);
}

static void test_edge_values(void)
{
	const char *s;
	size_t pts;
	/* no points: a valid chart that says so */
	CHECK_OK(tree_write(EXP "/runs/1/metrics/empty", ""));
	s = cat_exact(PLOTS "/empty.svg");
	check_svg(s);
	CHECK(strstr(s, ">no points<") != NULL);
	CHECK(strstr(s, "<path") == NULL);
	/* one point: a dot */
	CHECK_OK(tree_append(EXP "/runs/1/metrics/one", "5 3.5\n"));
	s = cat_exact(PLOTS "/one.svg");
	check_svg(s);
	CHECK(strstr(s, "<circle") != NULL);
	/* all NaN or infinite: nothing drawn, counted in a note */
	CHECK_OK(tree_append(EXP "/runs/1/metrics/nan", "nan\nnan\ninf\n-inf\n"));
	s = cat_exact(PLOTS "/nan.svg");
	check_svg(s);
	CHECK(strstr(s, ">4 NaN/inf points not drawn<") != NULL);
	CHECK(strstr(s, ">no finite points<") != NULL);
	/* some NaN: the others drawn, one counted */
	CHECK_OK(tree_append(EXP "/runs/1/metrics/some", "1\nnan\n2\n3\n"));
	s = cat_exact(PLOTS "/some.svg");
	check_svg(s);
	CHECK(strstr(s, ">1 NaN/inf point not drawn<") != NULL);
	CHECK(strstr(s, "<path") != NULL);
	/* the extremes of doubles: the scale does not overflow */
	CHECK_OK(tree_append(EXP "/runs/1/metrics/huge", "1.7976931348623157e308\n-1.7976931348623157e308\n"
		"0\n1e-308\n"));
	s = cat_exact(PLOTS "/huge.svg");
	check_svg(s);
	path_min_y(s, &pts);
	CHECK_EQ_INT(pts, 4);
	/* several decades, all positive: log scale */
	CHECK_OK(tree_append(EXP "/runs/1/metrics/decades", "1\n0.1\n0.001\n0.00001\n"));
	s = cat_exact(PLOTS "/decades.svg");
	check_svg(s);
	CHECK(strstr(s, "(log scale)") != NULL);
	CHECK(strstr(tree_cat(PLOTS "/one.svg"), "(log scale)") == NULL);
	/* steps out of order: the summary's first and last steps are not the range, the points are */
	CHECK_OK(tree_append(EXP "/runs/1/metrics/unordered", "5 1\n1 2\n9 3\n3 4\n"));
	s = cat_exact(PLOTS "/unordered.svg");
	check_svg(s);
	CHECK(strstr(s, "M72.0 ") != NULL || strstr(s, "L72.0 ") != NULL);
	CHECK(strstr(s, "L780.0 ") != NULL);
	CHECK(strstr(s, ">9</text>") != NULL || strstr(s, ">8</text>") != NULL);
	/* a point appended at a new extreme widens the range */
	CHECK_OK(tree_append(EXP "/runs/1/metrics/unordered", "0 100\n"));
	s = cat_exact(PLOTS "/unordered.svg");
	CHECK(strstr(s, ">100</text>") != NULL);
}

/* 100,000 points, one spike: reduced to a few points per pixel column, the spike kept. */
static void test_reduction_keeps_extremes(void)
{
	char *b = malloc(100000 * 32);
	const char *s;
	size_t i, pts, len = 0;
	double top;
	for (i = 0; i < 100000; i++)
		len += (size_t)sprintf(b + len, "%zu %g\n", i, i == 54321 ? 987654.0 : (double)(i % 7) / 7.0);
	/* in pieces, as a program writes them (one write() is at most one max_write) */
	for (i = 0; i < len;) {
		size_t end = i + 60000 < len ? i + 60000 : len;
		char keep;
		while (end < len && b[end - 1] != '\n')
			end--;
		keep = b[end];
		b[end] = '\0';
		CHECK_OK(tree_append(EXP "/runs/1/metrics/long", b + i));
		b[end] = keep;
		i = end;
	}
	free(b);
	s = cat_exact(PLOTS "/long.svg");
	check_svg(s);
	top = path_min_y(s, &pts);
	/* y of 987654 in [0, 987654] padded by 5% each side: 34 + 320 × (1 - 1.05 / 1.1) */
	CHECK(fabs(top - (34 + 320 * (1 - 1.05 / 1.1))) < 0.2);
	CHECK(pts <= 4 * 708);
	CHECK(pts >= 708);
}

static void test_names(void)
{
	const char *s;
	CHECK_OK(tree_append(EXP "/runs/1/metrics/a%b", "1\n2\n"));
	CHECK_OK(tree_append(EXP "/runs/1/metrics/\xe6\x90\x8d\xe5\xa4\xb1", "1\n2\n"));   /* 損失 */
	CHECK_OK(tree_append(EXP "/runs/1/metrics/x<y&z\"", "1\n2\n"));
	s = cat_exact(PLOTS "/a%b.svg");
	check_svg(s);
	CHECK(strstr(s, ">a%b</text>") != NULL);
	s = cat_exact(PLOTS "/\xe6\x90\x8d\xe5\xa4\xb1.svg");
	check_svg(s);
	CHECK(strstr(s, ">\xe6\x90\x8d\xe5\xa4\xb1</text>") != NULL);
	s = cat_exact(PLOTS "/x<y&z\".svg");
	check_svg(s);
	CHECK(strstr(s, ">x&lt;y&amp;z&quot;</text>") != NULL);
	CHECK(strstr(s, "x<y") == NULL);
	s = cat_exact(EXP "/index.html");
	CHECK(strstr(s, "<img src=\"plots/a%25b.svg\"") != NULL);
	CHECK(strstr(s, "<img src=\"plots/%E6%90%8D%E5%A4%B1.svg\"") != NULL);
	CHECK(strstr(s, "<img src=\"plots/x%3Cy%26z%22.svg\"") != NULL);
	CHECK(strstr(s, "<img src=\"plots/val/loss.svg\"") != NULL);
	CHECK(strstr(s, "x<y") == NULL);
}

static void test_many_runs_and_params(void)
{
	char path[256], text[64];
	const char *s;
	int i;
	CHECK_OK(tree_write(EXP "/runs/1/params/lr", "0.1\n"));
	CHECK_OK(tree_write(EXP "/runs/1/params/bs", "32\n"));
	for (i = 2; i <= 40; i++) {
		snprintf(path, sizeof(path), EXP "/runs/%d/params/lr", i);
		snprintf(path, sizeof(path), EXP "/runs/%d", i);
		CHECK_OK(tree_mkdir(path));
		snprintf(path, sizeof(path), EXP "/runs/%d/params/lr", i);
		snprintf(text, sizeof(text), "0.%d\n", i);
		CHECK_OK(tree_write(path, text));
		snprintf(path, sizeof(path), EXP "/runs/%d/params/bs", i);
		CHECK_OK(tree_write(path, "32\n"));
		snprintf(path, sizeof(path), EXP "/runs/%d/metrics/loss", i);
		snprintf(text, sizeof(text), "0 %d\n1 %d\n", i, i / 2);
		CHECK_OK(tree_append(path, text));
	}
	s = cat_exact(PLOTS "/loss.svg");
	check_svg(s);
	/* legend: id and the params that differ (lr), not those all runs share (bs) */
	CHECK(strstr(s, ">1 lr=0.1</text>") != NULL);
	CHECK(strstr(s, ">2 lr=0.2</text>") != NULL);
	CHECK(strstr(s, "bs=") == NULL);
	CHECK_EQ_INT(count_of(s, "<path "), 40);
	CHECK(strstr(s, ">… and 10 more</text>") != NULL);
	/* the report: one row per run, lr a column, bs not; the page reloads while runs run */
	s = cat_exact(EXP "/index.html");
	CHECK(strncmp(s, "<!DOCTYPE html>", 15) == 0);
	CHECK(strstr(s, "<script") == NULL);
	CHECK(strstr(s, "http-equiv=\"refresh\"") != NULL);
	CHECK(strstr(s, "<th rowspan=\"2\">lr</th>") != NULL);
	CHECK(strstr(s, ">bs<") == NULL);
	CHECK(strstr(s, "<a href=\"runs/40/run.json\">") != NULL);
	CHECK(strstr(s, "<a href=\"runs/1/\">1</a>") != NULL);
	CHECK_EQ_INT(count_of(s, "<tr><td>"), 40);
	CHECK(strstr(s, "<th colspan=\"3\">loss</th>") != NULL);
	/* run 1's loss: last 0.25, min 0.25, max 1 */
	CHECK(strstr(s, "<td class=\"num\">0.25</td><td class=\"num\">0.25</td><td class=\"num\">1</td>") != NULL);
	/* project page: the experiment, its 40 runs */
	s = cat_exact("/p/index.html");
	CHECK(strstr(s, "<a href=\"experiments/e/index.html\">e</a></td><td class=\"num\">40</td>") != NULL);
	/* every run ended: no reload */
	for (i = 1; i <= 40; i++) {
		snprintf(path, sizeof(path), EXP "/runs/%d/status", i);
		CHECK_OK(tree_write(path, "finished\n"));
	}
	s = cat_exact(EXP "/index.html");
	CHECK(strstr(s, "http-equiv=\"refresh\"") == NULL);
	CHECK(strstr(s, "<td class=\"finished\">finished</td>") != NULL);
	/* a new point shows in the next read: sizes follow */
	CHECK_OK(tree_mkdir(EXP "/runs/41"));
	CHECK_OK(tree_append(EXP "/runs/41/metrics/loss", "0 1000\n"));
	s = cat_exact(PLOTS "/loss.svg");
	CHECK_EQ_INT(count_of(s, "<path "), 40);
	CHECK_EQ_INT(count_of(s, "<circle "), 1);
	tree_remount();
	check_svg(cat_exact(PLOTS "/loss.svg"));
	cat_exact(EXP "/index.html");
	cat_exact("/p/index.html");
}

/* 1,000 runs in one experiment: every one drawn and in the table, the legend cut at 30. */
static void test_a_thousand_runs(void)
{
	char path[256], text[64];
	const char *s;
	int i;
	for (i = 1; i <= 1000; i++) {
		snprintf(path, sizeof(path), "/p/experiments/big/runs/%d", i);
		CHECK_OK(tree_mkdirs(path));
		snprintf(path, sizeof(path), "/p/experiments/big/runs/%d/metrics/loss", i);
		snprintf(text, sizeof(text), "0 %d\n1 %d.5\n2 %d\n", i, i, i + 1);
		CHECK_OK(tree_append(path, text));
	}
	s = cat_exact("/p/experiments/big/plots/loss.svg");
	check_svg(s);
	CHECK_EQ_INT(count_of(s, "<path "), 1000);
	CHECK(strstr(s, ">… and 970 more</text>") != NULL);
	s = cat_exact("/p/experiments/big/index.html");
	CHECK_EQ_INT(count_of(s, "<tr><td>"), 1000);
	CHECK(strstr(s, "<a href=\"runs/1000/run.json\">") != NULL);
}

/* Tags (wp-runtable's map field "tags": name → time added) show in the runs table when any run
 * has the field; written here into the run's document directly, as that branch records them. */
static void test_tags_in_the_report(void)
{
	cJSON *f = cJSON_CreateObject(), *tags = cJSON_CreateObject();
	al_write w;
	const char *s;
	CHECK_OK(tree_mkdirs("/p/experiments/t/runs/1"));
	CHECK_OK(tree_mkdir("/p/experiments/t/runs/2"));
	CHECK(strstr(cat_exact("/p/experiments/t/index.html"), ">tags<") == NULL);
	al_fields_set(tags, "best", al_value_time(1700000000000000));
	al_fields_set(tags, "a<b", al_value_time(1700000000000000));
	al_fields_set(f, "tags", al_value_map(tags));
	w = (al_write){AL_WRITE_UPDATE, "projects/p/experiments/t/runs/1", f, AL_PRE_EXISTS, NULL};
	CHECK_OK(al_store_commit(TF.stack->store, &w, 1));
	cJSON_Delete(f);
	tree_remount();   /* written behind the tree's back: its render cache does not know */
	s = cat_exact("/p/experiments/t/index.html");
	CHECK(strstr(s, "<th rowspan=\"2\">tags</th>") != NULL);
	CHECK(strstr(s, "<td><span class=\"tag\">a&lt;b</span><span class=\"tag\">best</span></td>") != NULL);
}

int main(void)
{
	tree_setup();
	test_listing_and_read_only();
	test_edge_values();
	test_reduction_keeps_extremes();
	test_names();
	test_many_runs_and_params();
	test_a_thousand_runs();
	test_tags_in_the_report();
	tree_teardown();
	CHECK_DONE();
}
