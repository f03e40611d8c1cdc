/* aletheia unit test of the tree: metrics/<name> — append-only series of STEP VALUE TIME lines:
 * the accepted forms, default steps, the read-back format, refused lines and their limits, a
 * partial last line, readers that see later appends (README "metrics", "Durability"). */
#include "tree_fixture.h"

#define M RUN1 "/metrics"

static void test_forms(void)
{
	al_attr a;
	CHECK_OK(tree_mkdirs(RUN1));
	CHECK_EQ_STR(tree_ls(M), "");
	/* VALUE, STEP VALUE, STEP VALUE TIME; whitespace or one comma between fields */
	CHECK_OK(tree_append(M "/loss", "0 0.93 1700000000\n"));
	CHECK_OK(tree_append(M "/loss", "5,0.5,1700000000.25\n7\t1e-07   1700000001.0005\n"));
	CHECK_EQ_STR(tree_cat(M "/loss"),
		"0 0.93 1700000000.000\n5 0.5 1700000000.250\n7 1e-07 1700000001.000\n");
	CHECK_OK(al_tree_getattr(&a, TF.t, M "/loss"));
	CHECK_EQ_INT(a.type, AL_NODE_FILE);
	CHECK_EQ_INT(a.mode, 0644);
	CHECK_EQ_INT(a.size, strlen(tree_cat(M "/loss")));
	/* `>` appends too; a default step is the previous + 1 */
	CHECK_OK(tree_write(M "/loss", "9 -inf 1700000002\n"));
	CHECK_OK(tree_write(M "/loss", "12 nan 1700000003\n"));
	CHECK_EQ_STR(tree_cat(M "/loss"),
		"0 0.93 1700000000.000\n5 0.5 1700000000.250\n7 1e-07 1700000001.000\n"
		"9 -inf 1700000002.000\n12 nan 1700000003.000\n");
	/* a line without TIME gets now; without STEP the previous + 1, from 0 */
	{
		const char *s;
		CHECK_OK(tree_append(M "/acc", "0.5\n0.75\n"));
		s = tree_cat(M "/acc");
		CHECK(strncmp(s, "0 0.5 1", 7) == 0);
		CHECK(strstr(s, "\n1 0.75 1") != NULL);
		CHECK_EQ_INT(strlen(s), 2 * strlen("0 0.5 1700000000.000\n") + 1);
	}
	/* names with folders */
	CHECK_OK(tree_append(M "/val/loss", "1 2 1700000000\n"));
	CHECK_EQ_STR(tree_ls(M), "acc loss val");
	CHECK_EQ_STR(tree_ls(M "/val"), "loss");
	CHECK_EQ_STR(tree_cat(M "/val/loss"), "1 2 1700000000.000\n");
	/* created by touch: exists at once, empty */
	CHECK_OK(tree_write(M "/empty", ""));
	CHECK_EQ_STR(tree_cat(M "/empty"), "");
	CHECK_EQ_INT(tree_size(M "/empty"), 0);
	CHECK_EQ_STR(tree_ls(M), "acc empty loss val");
	/* truncate is ignored: history is never lost */
	CHECK_OK(al_tree_truncate(TF.t, M "/val/loss", 0));
	CHECK_EQ_STR(tree_cat(M "/val/loss"), "1 2 1700000000.000\n");
	tree_remount();
	CHECK_EQ_STR(tree_ls(M), "acc empty loss val");
	CHECK_EQ_STR(tree_cat(M "/val/loss"), "1 2 1700000000.000\n");
	CHECK_EQ_STR(tree_cat(M "/loss"),
		"0 0.93 1700000000.000\n5 0.5 1700000000.250\n7 1e-07 1700000001.000\n"
		"9 -inf 1700000002.000\n12 nan 1700000003.000\n");
}

/* A line that does not parse fails its write() with EINVAL; none of the lines of that write() are
 * recorded, earlier points stay. */
static void test_refused(void)
{
	const char *bad[] = {"x\n", "1 2 3 4\n", "1,,2\n", "1.5 2\n", "0.1\n1 2 x\n",
		"1 0.5 1733400000000\n",            /* milliseconds: past year 9999 */
		"1 0.5 -62135596801\n",             /* before year 1 */
		"99999999999999999999 1\n"};        /* a step past int64 */
	const char *want = "1 2 1700000000.000\n";
	size_t i;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tree_io r = tree_put(M "/val/loss", bad[i], strlen(bad[i]), AL_OPEN_APPEND);
		if (r.write != AL_EINVAL)
			fprintf(stderr, "metric line \"%s\": write %d close %d\n", bad[i], r.write, r.close);
		CHECK_EQ_INT(r.write, AL_EINVAL);
		CHECK_EQ_STR(tree_cat(M "/val/loss"), want);
	}
	/* the edges of time are accepted */
	CHECK_OK(tree_append(M "/edge", "0 1 -62135596800\n1 1 253402300799.999\n"));
	CHECK_EQ_STR(tree_cat(M "/edge"), "0 1 -62135596800.000\n1 1 253402300799.999\n");
}

static void test_limits(void)
{
	size_t n = 1044480, i;
	char *big = malloc(n + 2);
	tree_io r;
	/* a write() of 1,044,480 bytes is one append; one byte more fails whole */
	for (i = 0; i + 4 <= n; i += 4)
		memcpy(big + i, "0.5\n", 4);
	r = tree_put(M "/many", big, n, AL_OPEN_APPEND);
	CHECK_EQ_INT(r.write, 0);
	CHECK(strstr(tree_cat(RUN1 "/run.json"), "\"count\": 261120,") != NULL);
	memcpy(big + n - 4, "0.25\n", 5);
	r = tree_put(M "/many", big, n + 1, AL_OPEN_APPEND);
	CHECK_EQ_INT(r.write, AL_EINVAL);
	CHECK(strstr(tree_cat(RUN1 "/run.json"), "\"count\": 261120,") != NULL);
	/* a line waiting for its newline may be 64 KiB at most */
	memset(big, '1', 65537);
	r = tree_put(M "/long", big, 65537, AL_OPEN_APPEND);
	CHECK_EQ_INT(r.write, AL_EINVAL);
	CHECK_EQ_STR(tree_cat(M "/long"), "");
	free(big);
}

/* A partial last line waits for its newline or the last close(); a close() of a copy (a flush
 * without release) does not end it, but a reader after that close sees it as a point. */
static void test_partial_line(void)
{
	al_file *w = NULL;
	CHECK_OK(al_file_open(&w, TF.t, M "/part", AL_OPEN_WRITE | AL_OPEN_APPEND | AL_OPEN_CREATE));
	if (!w)
		return;
	CHECK_OK(al_file_write(w, "0 1 1700000000\n3 0.", 19, 0));
	CHECK_EQ_STR(tree_cat(M "/part"), "0 1 1700000000.000\n");
	CHECK_OK(al_file_write(w, "5 1700000000", 12, 0));
	CHECK_EQ_STR(tree_cat(M "/part"), "0 1 1700000000.000\n");
	CHECK_OK(al_file_flush(w));   /* `printf … >&3` closing its copy */
	CHECK_EQ_STR(tree_cat(M "/part"), "0 1 1700000000.000\n3 0.5 1700000000.000\n");
	al_file_release(w);
	CHECK_EQ_STR(tree_cat(M "/part"), "0 1 1700000000.000\n3 0.5 1700000000.000\n");
	/* the last close records it without a reader */
	CHECK_OK(al_file_open(&w, TF.t, M "/part2", AL_OPEN_WRITE | AL_OPEN_APPEND | AL_OPEN_CREATE));
	if (!w)
		return;
	CHECK_OK(al_file_write(w, "4 0.25 1700000000", 17, 0));
	CHECK_OK(al_file_flush(w));
	al_file_release(w);
	tree_remount();
	CHECK_EQ_STR(tree_cat(M "/part"), "0 1 1700000000.000\n3 0.5 1700000000.000\n");
	CHECK_EQ_STR(tree_cat(M "/part2"), "4 0.25 1700000000.000\n");
}

/* A reader opened before an append sees it (tail -f): through its fstat size and its reads. */
static void test_reader_sees_appends(void)
{
	al_file *r = NULL;
	al_attr a;
	char *s = NULL;
	const char *first = "0 1 1700000000.000\n3 0.5 1700000000.000\n";
	CHECK_OK(al_file_open(&r, TF.t, M "/part", 0));
	if (!r)
		return;
	CHECK_OK(tree_read_handle(&s, NULL, r, 0));
	CHECK_EQ_STR(s, first);
	free(s);
	CHECK_OK(al_file_getattr(&a, r));
	CHECK_EQ_INT(a.size, strlen(first));
	CHECK_OK(tree_append(M "/part", "9 0.125 1700000009\n"));
	CHECK_OK(al_file_getattr(&a, r));
	CHECK_EQ_INT(a.size, strlen(first) + strlen("9 0.125 1700000009.000\n"));
	CHECK_OK(tree_read_handle(&s, NULL, r, strlen(first)));
	CHECK_EQ_STR(s, "9 0.125 1700000009.000\n");
	free(s);
	al_file_release(r);
	/* `cat a > b` copies a series exactly */
	CHECK_OK(tree_write(M "/copy", tree_cat(M "/loss")));
	CHECK_EQ_STR(tree_cat(M "/copy"), tree_cat(M "/loss"));
}

/* A metric created empty (touch, numpy's savetxt) is in run.json with a count of 0 and null for
 * what it has not got yet (README "run.json"): not NaN and a step of -1, which readers reject. */
static void test_empty_metric_in_run_json(void)
{
	cJSON *j;
	const cJSON *e;
	CHECK_OK(tree_mkdirs("/p/experiments/e/runs/empty"));
	CHECK_OK(tree_write("/p/experiments/e/runs/empty/metrics/loss", ""));
	j = tree_json("/p/experiments/e/runs/empty/run.json");
	CHECK(j != NULL);
	e = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "metrics"), "loss");
	CHECK(e != NULL);
	CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "last")));
	CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "step")));
	CHECK_EQ_STR(tree_json_get(e, "count"), "0");
	CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "min")));
	CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "max")));
	cJSON_Delete(j);
}

/* A long stored series read through one handle: its batches after the window are made ahead on
 * the tree's workers (metrics.c). The text is the same whichever way it is read: in the kernel's
 * 128 KiB pieces, after going back, with an append or a removal of the metric between two reads,
 * or with the handle closed while batches are being made. */
#define LONG_POINTS (5 * 4096 + 100)

static char *long_text_v(size_t from, size_t to, int v)
{
	size_t i, cap = (to - from) * 48 + 1, len = 0;
	char *t = malloc(cap);
	if (!t)
		return NULL;
	for (i = from; i < to; i++)
		len += (size_t)snprintf(t + len, cap - len, "%zu %zu.%d 1700000000.%03zu\n", i,
			i % 997, v, i % 1000);   /* as the reader prints them */
	t[len] = '\0';
	return t;
}

static char *long_text(size_t from, size_t to)
{
	return long_text_v(from, to, 5);
}

static void read_pieces(char **out, size_t *len, al_file *f, uint64_t from)
{
	size_t cap = 1 << 20, used = 0, n;
	char *buf = malloc(cap);
	*out = NULL;
	if (!buf)
		return;
	for (;;) {
		if (cap - used < 131072) {
			char *p = realloc(buf, cap * 2);
			if (!p)
				break;
			buf = p;
			cap *= 2;
		}
		if (tree_pread(&n, f, buf + used, 131072, from + used) != 0 || n == 0)
			break;
		used += n;
	}
	buf[used] = '\0';
	*out = buf;
	*len = used;
}

static void test_long_reader(void)
{
	char *want = long_text(0, LONG_POINTS), *more = long_text(LONG_POINTS, LONG_POINTS + 10);
	char *got = NULL, buf[131072];
	size_t len = 0, n, wlen;
	al_file *r = NULL;

	CHECK(want && more);
	if (!want || !more)
		return;
	wlen = strlen(want);
	CHECK_OK(tree_write(M "/long", want));
	TF.allow_delete = 1;
	tree_remount();   /* a stored series of one writer: the batches made ahead */
	CHECK_OK(al_file_open(&r, TF.t, M "/long", 0));
	if (!r)
		return;
	read_pieces(&got, &len, r, 0);
	CHECK_EQ_INT(len, wlen);
	CHECK(got && memcmp(got, want, wlen) == 0);
	free(got);
	/* back to the start, then a piece in the middle of the third batch */
	CHECK_OK(tree_pread(&n, r, buf, 100, 0));
	CHECK(n == 100 && memcmp(buf, want, 100) == 0);
	CHECK_OK(tree_pread(&n, r, buf, 1000, wlen / 2));
	CHECK(n == 1000 && memcmp(buf, want + wlen / 2, 1000) == 0);
	/* an append after the first batch was read: the batches made before it are of the same
	 * points, and the reader reaches the new ones */
	CHECK_OK(tree_pread(&n, r, buf, sizeof(buf), 0));
	CHECK_OK(tree_append(M "/long", more));
	read_pieces(&got, &len, r, n);
	CHECK_EQ_INT(n + len, wlen + strlen(more));
	CHECK(got && memcmp(got, want + n, wlen - n) == 0 && strcmp(got + wlen - n, more) == 0);
	free(got);
	al_file_release(r);
	/* removed and written again between two reads: past the window the handle reads the new
	 * points (rm makes the batches made before it stale) */
	{
		char *old0 = long_text(0, 2 * 4096), *new2 = long_text_v(2 * 4096, LONG_POINTS, 25);
		size_t olen = old0 ? strlen(old0) : 0;
		r = NULL;
		CHECK_OK(al_file_open(&r, TF.t, M "/long", 0));
		CHECK_OK(r ? tree_pread(&n, r, buf, sizeof(buf), 0) : AL_EINVAL);
		CHECK(n > 0 && n < olen);
		CHECK_OK(al_tree_unlink(TF.t, M "/long"));
		free(want);
		want = long_text_v(0, LONG_POINTS, 25);
		CHECK_OK(want ? tree_write(M "/long", want) : AL_ENOMEM);
		if (r)
			read_pieces(&got, &len, r, n);
		CHECK(old0 && new2 && got && n + len == olen + strlen(new2) &&
		      memcmp(got, old0 + n, olen - n) == 0 && strcmp(got + olen - n, new2) == 0);
		free(got);
		al_file_release(r);
		free(old0);
		free(new2);
	}
	/* closed at once after a batch, its next ones still being made */
	for (int i = 0; i < 20; i++) {
		r = NULL;
		CHECK_OK(al_file_open(&r, TF.t, M "/long", 0));
		if (!r)
			break;
		CHECK_OK(tree_pread(&n, r, buf, sizeof(buf), (uint64_t)i * 4096));
		CHECK(n > 0 && want && memcmp(buf, want + i * 4096, 64) == 0);
		al_file_release(r);
	}
	free(want);
	free(more);
}

/* A rewrite from the start of the file skips the lines that are the points already there, across
 * the batches they are compared in and across writes cut mid-line, and appends from the first
 * other line on; so does a scratch file renamed over the metric, checked whole first
 * (README "metrics"). */
static void test_rewrite(void)
{
	char *old = long_text(0, 5000), *more = long_text(5000, 5003), *both;
	size_t n = strlen(old), cut = n / 2 + 7;   /* within a line past the first batch */
	al_file *f = NULL;
	CHECK(old && more);
	CHECK_OK(tree_append(M "/re", old));
	CHECK_OK(tree_write(M "/re", old));            /* an unchanged save: nothing added */
	CHECK_EQ_STR(tree_cat(M "/re"), old);
	both = malloc(n + strlen(more) + 1);
	CHECK(both != NULL);
	strcpy(both, old);
	strcat(both, more);
	CHECK_OK(al_file_open(&f, TF.t, M "/re", AL_OPEN_WRITE | AL_OPEN_TRUNC));
	CHECK_OK(al_file_write(f, both, cut, 0));
	CHECK_OK(al_file_write(f, both + cut, strlen(both) - cut, cut));
	CHECK_OK(al_file_flush(f));
	al_file_release(f);
	CHECK_EQ_STR(tree_cat(M "/re"), both);
	/* with O_APPEND, or from elsewhere than the start: every line appended */
	CHECK_OK(tree_append(M "/re", "0 0.5 1700000000.000\n"));
	CHECK(strcmp(tree_cat(M "/re") + strlen(both), "0 0.5 1700000000.000\n") == 0);
	/* a changed line: it and the lines after it are appended */
	CHECK_OK(tree_write(M "/re2", "0 1 1700000000.000\n1 2 1700000000.000\n"));
	CHECK_OK(tree_write(M "/re2", "0 1 1700000000.000\n1 3 1700000000.000\n2 2 1700000000.000\n"));
	CHECK_EQ_STR(tree_cat(M "/re2"), "0 1 1700000000.000\n1 2 1700000000.000\n"
		"1 3 1700000000.000\n2 2 1700000000.000\n");
	/* a scratch file renamed over it */
	CHECK_OK(tree_write(M "/.re2.tmp", "0 1 1700000000.000\n1 2 1700000000.000\n1 3 1700000000.000\n"
		"2 2 1700000000.000\n3 4 1700000000.000\n"));
	CHECK_OK(al_tree_rename(TF.t, M "/.re2.tmp", M "/re2", 0));
	CHECK_EQ_STR(tree_cat(M "/re2"), "0 1 1700000000.000\n1 2 1700000000.000\n"
		"1 3 1700000000.000\n2 2 1700000000.000\n3 4 1700000000.000\n");
	CHECK_OK(tree_write(M "/.re2.tmp", "4 1 1700000000.000\nbad\n"));
	CHECK_EQ_INT(al_tree_rename(TF.t, M "/.re2.tmp", M "/re2", 0), AL_EINVAL);
	CHECK_OK(tree_write(M "/.re3.tmp", "4 1 1700000000.000\nbad"));   /* a bad last line, no newline */
	CHECK_EQ_INT(al_tree_rename(TF.t, M "/.re3.tmp", M "/re2", 0), AL_EINVAL);
	CHECK(strstr(tree_cat(M "/re2"), "4 1 ") == NULL);
	free(old);
	free(more);
	free(both);
}

int main(void)
{
	tree_setup();
	test_empty_metric_in_run_json();
	test_forms();
	test_refused();
	test_limits();
	test_partial_line();
	test_reader_sees_appends();
	test_long_reader();
	test_rewrite();
	tree_teardown();
	CHECK_DONE();
}
