/* aletheia unit test of the tree: a project's metadata/<name> files, small JSON objects (README
 * "The tree", "metrics" on values checked at close(), "Durability", "Editing values in place"). */
#include "tree_fixture.h"

#define MD "/p/metadata"

static void test_write_read(void)
{
	al_attr a;
	const char *s;
	CHECK_OK(tree_mkdir("/p"));
	CHECK_OK(tree_write(MD "/team", "{\"owner\": \"ana\", \"size\": 3, \"ratio\": 0.30000000000000004}\n"));
	s = tree_cat(MD "/team");
	CHECK_EQ_STR(s, "{\n  \"owner\": \"ana\",\n  \"size\": 3,\n  \"ratio\": 0.30000000000000004\n}\n");
	CHECK_OK(al_tree_getattr(&a, TF.t, MD "/team"));
	CHECK_EQ_INT(a.type, AL_NODE_FILE);
	CHECK_EQ_INT(a.mode, 0644);
	CHECK_EQ_INT(a.size, strlen(s));
	CHECK_EQ_STR(tree_ls(MD), "team");
	/* a whole object written replaces the old one */
	CHECK_OK(tree_write(MD "/team", "{\"owner\": \"bo\"}"));
	CHECK_EQ_STR(tree_cat(MD "/team"), "{\n  \"owner\": \"bo\"\n}\n");
	/* appending an object merges its keys (README "params": `>>`, Python's 'a' mode) */
	CHECK_OK(tree_append(MD "/team", "{\"size\": 4}\n"));
	CHECK_EQ_STR(tree_cat(MD "/team"), "{\n  \"owner\": \"bo\",\n  \"size\": 4\n}\n");
	CHECK_OK(tree_append(MD "/team", "{\"owner\": \"cy\"}"));
	CHECK_EQ_STR(tree_cat(MD "/team"), "{\n  \"owner\": \"cy\",\n  \"size\": 4\n}\n");
	tree_remount();
	CHECK_EQ_STR(tree_cat(MD "/team"), "{\n  \"owner\": \"cy\",\n  \"size\": 4\n}\n");
}

/* Invalid JSON and anything but an object fail at close() with EINVAL; the old value stays. */
static void test_refused(void)
{
	const char *before = "{\n  \"owner\": \"cy\",\n  \"size\": 4\n}\n";
	const char *bad[] = {"{bad", "[1, 2]", "3", "\"text\"", "{\"a\": 1, \"a\": 2}", "{\"a\": 1} x",
		"{\"n\": 99999999999999999999}", "{\"__x__\": 1}", ""};
	size_t i;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tree_io r = tree_put(MD "/team", bad[i], strlen(bad[i]), AL_OPEN_TRUNC);
		CHECK_EQ_INT(r.open, 0);
		CHECK_EQ_INT(r.write, 0);
		if (*bad[i])
			CHECK_EQ_INT(r.close, AL_EINVAL);
		else
			CHECK_EQ_INT(r.close, 0);   /* an O_TRUNC open with no write changes nothing */
		CHECK_EQ_STR(tree_cat(MD "/team"), before);
	}
	/* a new file with bad content is not created */
	CHECK_EQ_INT(tree_write(MD "/other", "{bad"), AL_EINVAL);
	CHECK_EQ_STR(tree_ls(MD), "team");
	CHECK_EQ_INT(tree_size(MD "/other"), AL_ENOTFOUND);
	/* names are names; a project is needed */
	CHECK_EQ_INT(tree_write(MD "/__x__", "{}"), AL_EINVAL);
	CHECK_EQ_INT(tree_write("/q/metadata/x", "{}"), AL_ENOTFOUND);
	CHECK_EQ_INT(tree_mkdir(MD "/sub"), AL_EPERM);
}

/* sed -i: a scratch file written, renamed over the value, never recorded itself. */
static void test_scratch_rename(void)
{
	const char *after = "{\n  \"owner\": \"dee\"\n}\n";
	CHECK_OK(tree_write(MD "/sedAb12Cd", "{\"owner\": \"dee\"}\n"));
	CHECK_EQ_STR(tree_ls(MD), "sedAb12Cd team");
	CHECK_OK(al_tree_rename(TF.t, MD "/sedAb12Cd", MD "/team", 0));
	CHECK_EQ_STR(tree_cat(MD "/team"), after);
	CHECK_EQ_STR(tree_ls(MD), "team");
	/* bad JSON renamed over it: the rename fails, nothing changes */
	CHECK_OK(tree_write(MD "/.team.tmp", "{nope"));
	CHECK_EQ_INT(al_tree_rename(TF.t, MD "/.team.tmp", MD "/team", 0), AL_EINVAL);
	CHECK_EQ_STR(tree_cat(MD "/team"), after);
	CHECK_OK(al_tree_unlink(TF.t, MD "/.team.tmp"));
	tree_remount();
	CHECK_EQ_STR(tree_ls(MD), "team");
	CHECK_EQ_STR(tree_cat(MD "/team"), after);
}

int main(void)
{
	tree_setup();
	test_write_read();
	test_refused();
	test_scratch_rename();
	tree_teardown();
	CHECK_DONE();
}
