/* aletheia unit test of the tree: an experiment's runs.csv — RFC 4180 with CRLF, the fixed columns,
 * one param.<key> and metric.<name> column per key and name seen in any run, sorted, runs in
 * numeric order (README "runs.csv"). */
#include "tree_fixture.h"

#define EXP "/p/experiments/e"
#define CSV EXP "/runs.csv"
#define HEAD "id,status,fold,model,created,ended,git_commit"

/* A run's time field as runs.csv prints it: run.json's string without its quotes ("" for null).
 * Found as text: run.json may hold NaN (Python's JSON), which cJSON does not parse. */
static const char *run_time(const char *run, const char *field)
{
	static char out[8][64];
	static int next;
	char path[256], key[64];
	const char *s, *p;
	snprintf(path, sizeof(path), EXP "/runs/%s/run.json", run);
	snprintf(key, sizeof(key), "\n  \"%s\": \"", field);
	s = tree_cat(path);
	next = (next + 1) % 8;
	out[next][0] = '\0';
	if ((p = strstr(s, key)))
		snprintf(out[next], sizeof(out[next]), "%.*s", (int)strcspn(p + strlen(key), "\""),
			p + strlen(key));
	return out[next];
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
	snprintf(want, sizeof(want), HEAD "\r\n1,running,,,%s,,\r\n2,running,,,%s,,\r\n10,running,,,%s,,\r\n"
		"a,running,,,%s,,\r\nb,running,,,%s,,\r\n", run_time("1", "created"), run_time("2", "created"),
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
	snprintf(want, sizeof(want), HEAD ",param.lr,param.note,param.opt/beta1,metric.acc,metric.loss\r\n"
		"1,running,3,\"resnet, v2\",%s,,,0.001,,,0.75,\r\n"
		"2,failed,,,%s,%s,,,\"say \"\"hi\"\", twice\",0.9,,\r\n"
		"10,running,,,%s,,,,,,,0.25\r\n"
		"a,running,,,%s,,,,,,,\r\n"
		"b,running,,,%s,,,,,,,\r\n",
		run_time("1", "created"), run_time("2", "created"), run_time("2", "ended"),
		run_time("10", "created"), run_time("a", "created"), run_time("b", "created"));
	CHECK_EQ_STR(tree_cat(CSV), want);
	CHECK_EQ_INT(tree_size(CSV), strlen(want));
	/* exact doubles, as everywhere (README "params") */
	CHECK_OK(tree_write(EXP "/runs/b/params/lr", "0.30000000000000004\n"));
	tree_remount();
	{
		const char *s = tree_cat(CSV);
		CHECK(strstr(s, "\r\nb,running,,,") != NULL);
		CHECK(strstr(s, ",0.30000000000000004,,,,\r\n") != NULL);
		CHECK(strstr(s, "\r\n1,running,3,\"resnet, v2\",") != NULL);
	}
}

int main(void)
{
	tree_setup();
	test_runs_csv();
	test_columns();
	tree_teardown();
	CHECK_DONE();
}
