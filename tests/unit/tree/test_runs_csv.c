/* aletheia unit test of the tree: an experiment's runs.csv — RFC 4180 with CRLF, the fixed columns,
 * one param.<key> and metric.<name> column per key and name seen in any run, sorted, runs in
 * numeric order (README "runs.csv"). */
#include <sqlite3.h>
#include <time.h>
#include "core/series/metric.h"
#include "tree_fixture.h"

#define EXP "/p/experiments/e"
#define CSV EXP "/runs.csv"
#define HEAD "id,status,fold,model,created,ended,git_commit,duration,tags"

/* A run's time field as runs.csv prints it: run.json's string without its quotes ("" for null).
 * Found as text: run.json may hold NaN (Python's JSON), which cJSON does not parse. */
static const char *run_time_in(const char *exp, const char *run, const char *field)
{
	static char out[8][64];
	static int next;
	char path[256], key[64];
	const char *s, *p;
	snprintf(path, sizeof(path), "%s/runs/%s/run.json", exp, run);
	snprintf(key, sizeof(key), "\n  \"%s\": \"", field);
	s = tree_cat(path);
	next = (next + 1) % 8;
	out[next][0] = '\0';
	if ((p = strstr(s, key)))
		snprintf(out[next], sizeof(out[next]), "%.*s", (int)strcspn(p + strlen(key), "\""),
			p + strlen(key));
	return out[next];
}

static const char *run_time(const char *run, const char *field)
{
	return run_time_in(EXP, run, field);
}

/* Microseconds of an RFC 3339 time as run.json prints it ("2026-12-06T07:20:39.123456Z"). */
static int64_t time_us(const char *s)
{
	struct tm tm;
	long us = 0;
	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%d-%d-%dT%d:%d:%d.%6ldZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
		   &tm.tm_min, &tm.tm_sec, &us) < 6)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) * 1000000 + us;
}

/* An ended run's duration cell: seconds from started to ended, shortest exact text. */
static const char *run_duration(const char *run)
{
	static char out[32];
	al_double_format(out, (double)(time_us(run_time(run, "ended")) - time_us(run_time(run, "started"))) / 1e6);
	return out;
}

static void test_runs_csv(void)
{
	char want[2048];
	al_attr a;

	CHECK_OK(tree_mkdirs(EXP));
	CHECK_EQ_STR(tree_cat(CSV), HEAD "\r\n");
	CHECK_OK(al_tree_getattr(&a, TF.t, CSV));
	CHECK_EQ_INT(a.mode, 0444);
	CHECK_EQ_INT(tree_write(CSV, "x"), AL_EACCES);
	/* numeric ids in numeric order, then the others by bytes */
	CHECK_OK(tree_mkdir(EXP "/runs/10"));
	CHECK_OK(tree_mkdir(EXP "/runs/b"));
	CHECK_OK(tree_mkdir(EXP "/runs/2"));
	CHECK_OK(tree_mkdir(EXP "/runs/a"));
	CHECK_OK(tree_mkdir(EXP "/runs/1"));
	snprintf(want, sizeof(want), HEAD "\r\n1,running,,,%s,,,,\r\n2,running,,,%s,,,,\r\n10,running,,,%s,,,,\r\n"
		"a,running,,,%s,,,,\r\nb,running,,,%s,,,,\r\n", run_time("1", "created"), run_time("2", "created"),
		run_time("10", "created"), run_time("a", "created"), run_time("b", "created"));
	CHECK_EQ_STR(tree_cat(CSV), want);
	CHECK_EQ_INT(tree_size(CSV), strlen(want));
}

static void test_columns(void)
{
	char want[4096];
	/* a param or a metric appears as a column once any run has it; an empty metric does not */
	CHECK_OK(tree_write(EXP "/runs/1/params/lr", "0.001\n"));
	CHECK_OK(tree_write(EXP "/runs/2/params/opt/beta1", "0.9\n"));
	CHECK_OK(tree_write(EXP "/runs/2/params/note", "say \"hi\", twice\n"));
	CHECK_OK(tree_write(EXP "/runs/1/fold", "3\n"));
	CHECK_OK(tree_write(EXP "/runs/1/model", "resnet, v2\n"));
	CHECK_OK(tree_write(EXP "/runs/10/metrics/empty", ""));
	CHECK_OK(tree_append(EXP "/runs/10/metrics/loss", "0.5\n0.25\n"));
	CHECK_OK(tree_append(EXP "/runs/1/metrics/acc", "1 0.75\n"));
	CHECK_OK(tree_write(EXP "/runs/2/status", "failed 2\n"));
	/* per metric its last, min and max; duration once a run ended */
	snprintf(want, sizeof(want), HEAD ",param.lr,param.note,param.opt/beta1,metric.acc,metric.acc.min,"
		"metric.acc.max,metric.loss,metric.loss.min,metric.loss.max\r\n"
		"1,running,3,\"resnet, v2\",%s,,,,,0.001,,,0.75,0.75,0.75,,,\r\n"
		"2,failed,,,%s,%s,,%s,,,\"say \"\"hi\"\", twice\",0.9,,,,,,\r\n"
		"10,running,,,%s,,,,,,,,,,,0.25,0.25,0.5\r\n"
		"a,running,,,%s,,,,,,,,,,,,,\r\n"
		"b,running,,,%s,,,,,,,,,,,,,\r\n",
		run_time("1", "created"), run_time("2", "created"), run_time("2", "ended"), run_duration("2"),
		run_time("10", "created"), run_time("a", "created"), run_time("b", "created"));
	CHECK_EQ_STR(tree_cat(CSV), want);
	CHECK_EQ_INT(tree_size(CSV), strlen(want));
	/* exact doubles, as everywhere (README "params") */
	CHECK_OK(tree_write(EXP "/runs/b/params/lr", "0.30000000000000004\n"));
	tree_remount();
	{
		const char *s = tree_cat(CSV);
		CHECK(strstr(s, "\r\nb,running,,,") != NULL);
		CHECK(strstr(s, ",0.30000000000000004,,,,,,,,\r\n") != NULL);
		CHECK(strstr(s, "\r\n1,running,3,\"resnet, v2\",") != NULL);
	}
}

/* runs.changed.csv: only the columns whose values differ between runs, id always, fields as
 * runs.csv writes them (quoted where needed); it follows changes. */
#define CH "/p/experiments/ch"
static void test_changed(void)
{
	char want[2048];
	al_attr a;

	CHECK_OK(tree_mkdirs(CH "/runs"));
	CHECK_EQ_STR(tree_cat(CH "/runs.changed.csv"), "id\r\n");
	CHECK_OK(tree_mkdir(CH "/runs/1"));
	CHECK_OK(tree_write(CH "/runs/1/params/lr", "0.1\n"));
	CHECK_OK(tree_write(CH "/runs/1/params/bs", "32\n"));
	CHECK_OK(tree_write(CH "/runs/1/params/note", "a, b\n"));
	CHECK_OK(tree_write(CH "/runs/1/model", "m\n"));
	CHECK_OK(tree_append(CH "/runs/1/metrics/loss", "0.5\n0.3\n"));
	/* one run: nothing differs */
	CHECK_EQ_STR(tree_cat(CH "/runs.changed.csv"), "id\r\n1\r\n");
	CHECK_OK(tree_mkdir(CH "/runs/2"));
	CHECK_OK(tree_write(CH "/runs/2/params/lr", "0.2\n"));
	CHECK_OK(tree_write(CH "/runs/2/params/bs", "32\n"));
	CHECK_OK(tree_write(CH "/runs/2/params/note", "c\n"));
	CHECK_OK(tree_write(CH "/runs/2/model", "m\n"));
	CHECK_OK(tree_append(CH "/runs/2/metrics/loss", "0.1\n0.3\n"));
	snprintf(want, sizeof(want), "id,created,param.lr,param.note,metric.loss.min,metric.loss.max\r\n"
		"1,%s,0.1,\"a, b\",0.3,0.5\r\n2,%s,0.2,c,0.1,0.3\r\n",
		run_time_in(CH, "1", "created"), run_time_in(CH, "2", "created"));
	CHECK_EQ_STR(tree_cat(CH "/runs.changed.csv"), want);
	CHECK_OK(al_tree_getattr(&a, TF.t, CH "/runs.changed.csv"));
	CHECK_EQ_INT(a.size, strlen(want));
	CHECK_EQ_INT(a.mode, 0444);
	CHECK_EQ_INT(tree_write(CH "/runs.changed.csv", "x"), AL_EACCES);
	/* a new point makes the last values differ */
	CHECK_OK(tree_append(CH "/runs/2/metrics/loss", "0.05\n"));
	CHECK(strstr(tree_cat(CH "/runs.changed.csv"), ",metric.loss,metric.loss.min,metric.loss.max\r\n") != NULL);
	CHECK(strstr(tree_cat(CH "/runs.changed.csv"), ",c,0.05,0.05,0.3\r\n") != NULL);
}

/* The renders of a kind made so far, from .aletheia/status's renders line (README
 * ".aletheia/status"). */
static long renders_of(const char *kind)
{
	char *st = NULL, *line, key[64];
	long n = 0;
	CHECK_OK(al_tree_status(&st, TF.t));
	line = st ? strstr(st, "\nrenders: ") : NULL;
	CHECK(line != NULL);
	snprintf(key, sizeof(key), "%s ", kind);
	if (line) {
		char *end = strchr(line + 1, '\n'), *p = strstr(line, key);
		if (p && (!end || p < end) && (p[-1] == ' ' || p[-1] == ','))
			n = strtol(p + strlen(key), NULL, 10);
	}
	free(st);
	return n;
}

/* Issue 11: a stat of runs.csv (or run.json) renders it only when something it is made of
 * changed: changes elsewhere (which clear the attribute cache) cost none, a change in the
 * experiment one, and the open after that stat reads the content it rendered. */
#define BIG "/p/experiments/big"
#define NBIG 2000
static void test_stat_renders_once(void)
{
	char path[256], text[64];
	al_attr a;
	long before;
	int i;

	CHECK_OK(tree_mkdirs(BIG "/runs"));
	CHECK_OK(tree_mkdirs("/p/experiments/other/runs/1"));
	for (i = 0; i < NBIG; i++) {
		snprintf(path, sizeof(path), BIG "/runs/%d", i);
		CHECK_OK(tree_mkdir(path));
		snprintf(path, sizeof(path), BIG "/runs/%d/params/lr", i);
		snprintf(text, sizeof(text), "0.%d\n", i + 1);
		CHECK_OK(tree_write(path, text));
		snprintf(path, sizeof(path), BIG "/runs/%d/metrics/loss", i);
		CHECK_OK(tree_append(path, "0.5\n0.25\n"));
	}
	CHECK_OK(al_tree_getattr(&a, TF.t, BIG "/runs.csv"));
	before = renders_of("runs.csv");
	CHECK(before >= 1);
	/* Each change elsewhere clears the attribute cache; none is made of it. */
	for (i = 0; i < 20; i++) {
		snprintf(text, sizeof(text), "%d\n", i);
		CHECK_OK(tree_append("/p/experiments/other/runs/1/metrics/x", text));
		CHECK_OK(al_tree_getattr(&a, TF.t, BIG "/runs.csv"));
	}
	CHECK_EQ_INT(renders_of("runs.csv"), before);
	/* A change in the experiment: one render, which the next open reads. */
	CHECK_OK(tree_write(BIG "/runs/7/params/lr", "0.125\n"));
	for (i = 0; i < 5; i++)
		CHECK_OK(al_tree_getattr(&a, TF.t, BIG "/runs.csv"));
	CHECK_EQ_INT(renders_of("runs.csv"), before + 1);
	{
		const char *s = tree_cat(BIG "/runs.csv");
		CHECK_EQ_INT(a.size, strlen(s));
		CHECK(strstr(s, "\r\n7,running,,,") != NULL && strstr(s, ",0.125,0.25,0.25,0.5\r\n") != NULL);
	}
	CHECK_EQ_INT(renders_of("runs.csv"), before + 1);
	/* A metric's new point changes its last value: rendered again, the size follows. */
	CHECK_OK(tree_append(BIG "/runs/9/metrics/loss", "0.0625\n"));
	CHECK_OK(al_tree_getattr(&a, TF.t, BIG "/runs.csv"));
	CHECK_EQ_INT(renders_of("runs.csv"), before + 2);
	CHECK_EQ_INT(a.size, strlen(tree_cat(BIG "/runs.csv")));
	CHECK(strstr(tree_cat(BIG "/runs.csv"), ",0.0625,0.0625,0.5\r\n") != NULL);
	CHECK_EQ_INT(renders_of("runs.csv"), before + 2);

	/* run.json: a change to another run costs it nothing, one to its own run a render. */
	CHECK_OK(al_tree_getattr(&a, TF.t, BIG "/runs/3/run.json"));
	before = renders_of("run.json");
	for (i = 0; i < 10; i++) {
		snprintf(text, sizeof(text), "%d\n", i);
		CHECK_OK(tree_append(BIG "/runs/4/metrics/loss", text));
		CHECK_OK(al_tree_getattr(&a, TF.t, BIG "/runs/3/run.json"));
	}
	CHECK_EQ_INT(renders_of("run.json"), before);
	CHECK_OK(tree_append(BIG "/runs/3/metrics/acc", "0.5\n"));
	CHECK_OK(al_tree_getattr(&a, TF.t, BIG "/runs/3/run.json"));
	CHECK_OK(al_tree_getattr(&a, TF.t, BIG "/runs/3/run.json"));
	CHECK_EQ_INT(renders_of("run.json"), before + 1);
	CHECK_EQ_INT(a.size, strlen(tree_cat(BIG "/runs/3/run.json")));
	CHECK(strstr(tree_cat(BIG "/runs/3/run.json"), "\"acc\"") != NULL);
	/* the same after a remount: nothing is remembered wrongly */
	tree_remount();
	CHECK_EQ_INT(tree_size(BIG "/runs.csv"), strlen(tree_cat(BIG "/runs.csv")));
}

/* The run document as stored (SQLite), read or replaced while the tree is closed. */
static char *doc_text(const char *path, const char *set)
{
	char db[256];
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	char *out = NULL;
	snprintf(db, sizeof(db), "%s/store/meta.db", TF.root);
	CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_prepare_v2(h, set ? "UPDATE docs SET fields = ?2 WHERE path = ?1" :
		"SELECT fields FROM docs WHERE path = ?1", -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	if (set)
		sqlite3_bind_text(st, 2, set, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		out = strdup((const char *)sqlite3_column_text(st, 0));
	CHECK(set ? sqlite3_changes(h) == 1 : out != NULL);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return out;
}

/* The row comes from a fast reader of the document's text (the fields it uses), falling back to a
 * whole parse for text that is not plain JSON: either way the same bytes. Each variant of the
 * same document (names escaped, pretty-printed, repeated names, text after it) renders as the
 * original. */
static void test_fast_reader_same_bytes(void)
{
	const char *doc = "projects/q/experiments/f/runs/1", *csv = "/q/experiments/f/runs.csv";
	char *want, *orig, *variant[4];
	cJSON *j;
	size_t i, n;

	CHECK_OK(tree_mkdirs("/q/experiments/f/runs/1"));
	CHECK_OK(tree_write("/q/experiments/f/runs/1/params.json",
		"{\"a,b\": \"x\\\"y\", \"nl\": \"l1\\nl2\", \"u\": \"\\u00e9\\u2713\", \"n\": null, \"i\": 3, "
		"\"d\": 0.1, \"t\": true, \"o\": {\"k\": [1, \"v,w\"]}}"));
	CHECK_OK(tree_write("/q/experiments/f/runs/1/model", "m, \"1\"\n"));
	CHECK_OK(tree_write("/q/experiments/f/runs/1/tags/t1", ""));
	CHECK_OK(tree_append("/q/experiments/f/runs/1/metrics/loss", "1\nnan\n-inf\n"));
	CHECK_OK(tree_write("/q/experiments/f/runs/1/status", "finished 0\n"));
	want = strdup(tree_cat(csv));
	CHECK(strstr(want, "finished") && strstr(want, "\"m, \"\"1\"\"\"") && strstr(want, "\"param.a,b\"") &&
	      strstr(want, ",-inf,-inf,1\r\n"));
	tree_close_fixture();
	orig = doc_text(doc, NULL);
	n = strlen(orig);
	/* names escaped: not the fast reader's, parsed whole */
	CHECK(strstr(orig, "\"status\":{") != NULL);
	variant[0] = malloc(n + 64);
	snprintf(variant[0], n + 64, "%.*s\"st\\u0061tus\":%s", (int)(strstr(orig, "\"status\":{") - orig),
		orig, strstr(orig, "\"status\":{") + 9);
	/* pretty-printed */
	j = cJSON_Parse(orig);
	variant[1] = cJSON_Print(j);
	cJSON_Delete(j);
	/* a repeated name: the first counts, as in a lookup by name */
	variant[2] = malloc(n + 128);
	snprintf(variant[2], n + 128, "%.*s,\"model\":{\"stringValue\":\"other\"},\"hyper_params\":"
		"{\"nullValue\":null},\"status\":{\"stringValue\":\"failed\"}}", (int)(n - 1), orig);
	/* text after the object: parsed whole, which reads the object */
	variant[3] = malloc(n + 16);
	snprintf(variant[3], n + 16, "%s  x", orig);
	for (i = 0; i < 4; i++) {
		free(doc_text(doc, variant[i]));
		CHECK_OK(tree_open_fixture());
		CHECK_EQ_STR(tree_cat(csv), want);
		tree_close_fixture();
		free(variant[i]);
	}
	free(doc_text(doc, orig));
	CHECK_OK(tree_open_fixture());
	free(orig);
	free(want);
}

int main(void)
{
	tree_setup();
	test_runs_csv();
	test_columns();
	test_changed();
	test_stat_renders_once();
	test_fast_reader_same_bytes();
	tree_teardown();
	CHECK_DONE();
}
