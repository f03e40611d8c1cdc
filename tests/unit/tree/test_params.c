/* aletheia unit test of the tree: params/<key> and params.json — typed values stored exactly (also
 * after a remount), keys as folders, params.json written and appended as merges, and what is
 * refused with EINVAL, ENOTDIR or EISDIR at close() (README "params", "Durability"). */
#include "tree_fixture.h"

#define P RUN1 "/params"
#define PJ RUN1 "/params.json"

/* Each text written to params/<key> reads back as want, and shows in params.json as json. */
static void check_value(const char *key, const char *text, const char *want, const char *json)
{
	char path[256], needle[512];
	snprintf(path, sizeof(path), P "/%s", key);
	CHECK_OK(tree_write(path, text));
	if (strcmp(tree_cat(path), want) != 0)
		fprintf(stderr, "params/%s written as \"%s\"\n", key, text);
	CHECK_EQ_STR(tree_cat(path), want);
	CHECK_EQ_INT(tree_size(path), strlen(want));
	snprintf(needle, sizeof(needle), "\n  \"%s\": %s", key, json);
	if (!strstr(tree_cat(PJ), needle))
		fprintf(stderr, "params.json lacks %s:\n%s\n", needle, tree_cat(PJ));
	CHECK(strstr(tree_cat(PJ), needle) != NULL);
}

static const struct {
	const char *key, *text, *want, *json;
} values[] = {
	{"epochs", "32\n", "32\n", "32"},
	{"lr", "0.001\n", "0.001\n", "0.001"},
	{"shuffle", "true\n", "true\n", "true"},
	{"frozen", "false", "false\n", "false"},
	{"opt", "adam\n", "adam\n", "\"adam\""},
	{"sum", "0.30000000000000004\n", "0.30000000000000004\n", "0.30000000000000004"},
	{"tenth", "0.1\n", "0.1\n", "0.1"},
	{"whole", "32.0\n", "32\n", "32"},          /* JSON does not tell 32.0 from 32 */
	{"negzero", "-0.0\n", "-0.0\n", "-0.0"},   /* "-0" would be read back as the integer 0 */
	{"big", "99999999999999999999\n", "99999999999999999999\n", "\"99999999999999999999\""},
	{"huge", "1e400\n", "1e400\n", "\"1e400\""},
	{"exact", "9007199254740993.0\n", "9007199254740993\n", "9007199254740993"},
	{"nan", "nan\n", "nan\n", "NaN"},
	{"inf", "-inf\n", "-inf\n", "-Infinity"},
	{"layers", "[64, 32]\n", "[64,32]\n", "[\n    64,\n    32\n  ]"},
	{"cfg", "{\"a\": 1}\n", "{\"a\":1}\n", "{\n    \"a\": 1\n  }"},
	{"wip", "[1] first try\n", "[1] first try\n", "\"[1] first try\""},
	{"two", "a\nb\n", "a\nb\n", "\"a\\nb\""},
	{"empty", "\n", "\n", "\"\""},
};
#define NVALUES (sizeof(values) / sizeof(values[0]))

static void test_types(void)
{
	size_t i;
	CHECK_OK(tree_mkdirs(RUN1));
	CHECK_EQ_STR(tree_cat(PJ), "{}\n");
	for (i = 0; i < NVALUES; i++)
		check_value(values[i].key, values[i].text, values[i].want, values[i].json);
	/* values stay exact after a remount, in params/, params.json and run.json */
	tree_remount();
	for (i = 0; i < NVALUES; i++) {
		char path[256];
		snprintf(path, sizeof(path), P "/%s", values[i].key);
		CHECK_EQ_STR(tree_cat(path), values[i].want);
	}
	CHECK(strstr(tree_cat(PJ), "\n  \"sum\": 0.30000000000000004,") != NULL);
	CHECK(strstr(tree_cat(RUN1 "/run.json"), "\"sum\": 0.30000000000000004,") != NULL);
	CHECK(strstr(tree_cat(RUN1 "/run.json"), "\"lr\": 0.001,") != NULL);
}

/* `cat run1/params.json > run2/params.json` copies every value exactly (README "params"). */
static void test_copy_params_json(void)
{
	char *copy = strdup(tree_cat(PJ));
	CHECK_OK(tree_mkdir("/p/experiments/e/runs/2"));
	CHECK_OK(tree_write("/p/experiments/e/runs/2/params.json", copy));
	CHECK_EQ_STR(tree_cat("/p/experiments/e/runs/2/params.json"), copy);
	CHECK_EQ_STR(tree_cat("/p/experiments/e/runs/2/params/sum"), "0.30000000000000004\n");
	CHECK_EQ_STR(tree_cat("/p/experiments/e/runs/2/params/nan"), "nan\n");
	free(copy);
}

static void test_params_json(void)
{
	const char *r3 = "/p/experiments/e/runs/3";
	char pj[128], path[160];
	snprintf(pj, sizeof(pj), "%s/params.json", r3);
	CHECK_OK(tree_mkdir(r3));
	CHECK_OK(tree_write(pj, "{\"depth\": 50, \"opt\": \"adam\"}\n"));
	CHECK_EQ_STR(tree_cat(pj), "{\n  \"depth\": 50,\n  \"opt\": \"adam\"\n}\n");
	/* writing an object sets those keys; others stay */
	CHECK_OK(tree_write(pj, "{\"opt\": \"sgd\", \"lr\": 0.01}"));
	CHECK_EQ_STR(tree_cat(pj), "{\n  \"depth\": 50,\n  \"opt\": \"sgd\",\n  \"lr\": 0.01\n}\n");
	/* opt is a value, so opt/beta1 cannot be a key under it: the whole object is refused */
	CHECK_EQ_INT(tree_write(pj, "{\"lr\": 0.5, \"opt/beta1\": 0.9}"), AL_ENOTDIR);
	CHECK_EQ_STR(tree_cat(pj), "{\n  \"depth\": 50,\n  \"opt\": \"sgd\",\n  \"lr\": 0.01\n}\n");
	snprintf(path, sizeof(path), "%s/params/opt", r3);
	CHECK_EQ_STR(tree_cat(path), "sgd\n");
}

static void test_params_json_merge(void)
{
	const char *r4 = "/p/experiments/e/runs/4";
	char pj[128], path[160];
	snprintf(pj, sizeof(pj), "%s/params.json", r4);
	CHECK_OK(tree_mkdir(r4));
	CHECK_OK(tree_write(pj, "{\"depth\": 50, \"opt/beta1\": 0.9}\n"));
	/* appending an object merges its keys (>>, Python's 'a' mode) */
	CHECK_OK(tree_append(pj, "{\"depth\": 101, \"lr\": 1e-07}\n"));
	CHECK_EQ_STR(tree_cat(pj), "{\n  \"depth\": 101,\n  \"opt/beta1\": 0.9,\n  \"lr\": 1e-07\n}\n");
	/* keys with a / are folders of params/ */
	snprintf(path, sizeof(path), "%s/params", r4);
	CHECK_EQ_STR(tree_ls(path), "depth lr opt");
	snprintf(path, sizeof(path), "%s/params/opt", r4);
	CHECK_EQ_STR(tree_ls(path), "beta1");
	snprintf(path, sizeof(path), "%s/params/opt/beta1", r4);
	CHECK_EQ_STR(tree_cat(path), "0.9\n");
	/* refused whole at close(): nothing recorded */
	{
		const char *bad[] = {"{bad", "[1]", "7", "{\"a\": 1, \"a\": 2}", "{\"a//b\": 1}", "{\"x/\": 1}",
			"{\"n\": 99999999999999999999}", "{\"ok\": 1, \"deep\": [[1, 2]]}", "{\"__x__\": 1}"};
		const char *want = "{\n  \"depth\": 101,\n  \"opt/beta1\": 0.9,\n  \"lr\": 1e-07\n}\n";
		size_t i;
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			tree_io r = tree_put(pj, bad[i], strlen(bad[i]), AL_OPEN_TRUNC);
			if (r.close != AL_EINVAL)
				fprintf(stderr, "params.json \"%s\": close %d\n", bad[i], r.close);
			CHECK_EQ_INT(r.write, 0);
			CHECK_EQ_INT(r.close, AL_EINVAL);
			CHECK_EQ_STR(tree_cat(pj), want);
		}
	}
	/* a key both a value and a folder: ENOTDIR / EISDIR at close() */
	snprintf(path, sizeof(path), "%s/params/depth/x", r4);
	CHECK_EQ_INT(tree_write(path, "1\n"), AL_ENOTDIR);
	snprintf(path, sizeof(path), "%s/params/opt", r4);
	CHECK_EQ_INT(tree_write(path, "adam\n"), AL_EISDIR);
	CHECK_EQ_STR(tree_ls(path), "beta1");
}

static void test_refused(void)
{
	tree_io r;
	CHECK_EQ_STR(tree_cat(P "/lr"), "0.001\n");
	/* not UTF-8, or a NUL byte: EINVAL at close(), the old value stays */
	r = tree_put(P "/lr", "0.1\xff\n", 5, AL_OPEN_TRUNC);
	CHECK_EQ_INT(r.write, 0);
	CHECK_EQ_INT(r.close, AL_EINVAL);
	r = tree_put(P "/lr", "0.1\0\n", 5, AL_OPEN_TRUNC);
	CHECK_EQ_INT(r.close, AL_EINVAL);
	r = tree_put(P "/lr", "[[1, 2]]\n", 9, AL_OPEN_TRUNC);
	CHECK_EQ_INT(r.close, AL_EINVAL);
	CHECK_EQ_STR(tree_cat(P "/lr"), "0.001\n");
	/* an O_TRUNC open without a write keeps the value (`: > params/lr`) */
	CHECK_OK(tree_write(P "/lr", ""));
	CHECK_EQ_STR(tree_cat(P "/lr"), "0.001\n");
	/* invalid key names */
	CHECK_EQ_INT(tree_write(P "/__x__", "1\n"), AL_EINVAL);
	CHECK_EQ_INT(tree_size(P "/missing"), AL_ENOTFOUND);
	CHECK_EQ_INT(tree_cat(P "/missing")[0], 'E');
	/* a param over Firestore's string limit (1,048,487 bytes) is refused at close() */
	{
		size_t n = 1048488;
		char *big = malloc(n + 1);
		memset(big, 's', n);
		big[n] = '\0';
		r = tree_put(P "/big_text", big, n, AL_OPEN_TRUNC);
		CHECK_EQ_INT(r.write, 0);
		CHECK_EQ_INT(r.close, AL_EINVAL);
		CHECK_EQ_INT(tree_size(P "/big_text"), AL_ENOTFOUND);
		free(big);
	}
	/* truncate(2) of the path clears the value at once: an empty string */
	CHECK_OK(al_tree_truncate(TF.t, P "/opt", 0));
	CHECK_EQ_STR(tree_cat(P "/opt"), "\n");
}

int main(void)
{
	tree_setup();
	test_types();
	test_copy_params_json();
	test_params_json();
	test_params_json_merge();
	test_refused();
	tree_teardown();
	CHECK_DONE();
}
