/* Unit tests of the metric series: appends, read-back text, summaries, delivery to the store,
 * journal replay after a crash (exactly once in effect), and appends to a series whose chunks
 * cannot be read (deferred, then delivered once). */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/series/journal.h"
#include "core/series/metric.h"
#include "core/series/series.h"
#include "core/store/store.h"
#include "core/doc/value.h"
#include "check.h"

#define DOC "projects/p/experiments/e/runs/1/metrics/loss"
#define RUN "projects/p/experiments/e/runs/1"

static char *render(al_series_set *s, const char *doc)
{
	char *text = NULL;
	size_t len = 0;
	CHECK_OK(al_series_render(&text, &len, s, doc));
	CHECK(text == NULL || strlen(text) >= len);
	if (text)
		text[len] = '\0';
	return text;
}

static int sh(const char *fmt, const char *a, const char *b)
{
	char cmd[2048];    /* two paths of up to 511 bytes and the command */
	snprintf(cmd, sizeof(cmd), fmt, a, b);
	return system(cmd);
}

/* A store that forwards to another and counts commits and their largest number of writes. */
typedef struct counting {
	al_store_backend base;
	al_store_backend *inner;
	int commits;
	size_t max_writes;
	size_t max_bytes;   /* the largest commit's fields as JSON */
	const char *snap_from, *snap_to;   /* when set, each commit then copies this folder */
} counting;

static int c_get(al_doc **out, al_store_backend *b, const char *path)
{
	return al_store_get(out, ((counting *)b)->inner, path);
}

static int c_list(al_doc_list **out, al_store_backend *b, const char *c, const char *from, const char *to)
{
	return al_store_list(out, ((counting *)b)->inner, c, from, to);
}

static int c_commit(al_store_backend *b, const al_write *w, size_t n)
{
	counting *c = (counting *)b;
	size_t bytes = 0;
	c->commits++;
	if (n > c->max_writes)
		c->max_writes = n;
	for (size_t i = 0; i < n; i++) {
		char *t = w[i].fields ? cJSON_PrintUnformatted(w[i].fields) : NULL;
		bytes += strlen(w[i].path) + (t ? strlen(t) : 0);
		free(t);
	}
	if (bytes > c->max_bytes)
		c->max_bytes = bytes;
	if (c->snap_from) {
		/* the journal as kill -9 right after this commit would leave it */
		int rc = al_store_commit(c->inner, w, n);
		CHECK_EQ_INT(sh("rm -rf %s%s", c->snap_to, ""), 0);
		CHECK_EQ_INT(sh("cp -r %s %s", c->snap_from, c->snap_to), 0);
		return rc;
	}
	return al_store_commit(c->inner, w, n);
}

static void c_free(al_store_backend *b)
{
	(void)b;
}

/* A long backlog (an outage's worth of points) goes out in several bounded commits. */
static void backlog(const char *root, al_store_backend *st)
{
	counting c = {.base = {.version = AL_STORE_BACKEND_VERSION, .name = "counting", .get = c_get,
		.list = c_list, .commit = c_commit, .free = c_free}, .inner = st};
	char jd[512], line[64];
	const char *M = RUN "/metrics/backlog";
	al_series_set *x = NULL;
	al_series_summary sum;
	size_t total = 40 * AL_SERIES_CHUNK + 7;
	al_doc_list *l = NULL;

	snprintf(jd, sizeof(jd), "%s/jbacklog", root);
	CHECK_OK(al_series_set_open(&x, &c.base, jd, 600000));
	if (!x)
		return;
	for (size_t i = 0; i < total; i++) {
		/* long values: big steps and 17-digit doubles make the largest chunks */
		int n = snprintf(line, sizeof(line), "%zu %.17g\n", i * 1000000007u, 1.0 / (double)(i + 3));
		if (al_series_append_text(x, M, line, (size_t)n)) {
			CHECK(0);
			break;
		}
	}
	c.commits = 0;
	CHECK_OK(al_series_flush(x));
	CHECK_EQ_INT(c.commits, 3);           /* 16 + 16 + 9 chunks, the summary with the last */
	CHECK(c.max_writes <= 17);
	/* under Firestore's 10 MiB request limit, with room for the request's own wrapping */
	CHECK(c.max_bytes < (size_t)9 << 20);
	fprintf(stderr, "largest backlog commit: %zu bytes\n", c.max_bytes);
	CHECK_OK(al_store_list(&l, st, RUN "/metrics/backlog/chunks", NULL, NULL));
	CHECK_EQ_INT(l ? l->count : 0, 41);
	al_doc_list_free(l);
	al_series_set_free(x);
	x = NULL;
	snprintf(jd, sizeof(jd), "%s/jbacklog2", root);
	CHECK_OK(al_series_set_open(&x, st, jd, 600000));
	CHECK_OK(al_series_summary_get(&sum, x, M));
	CHECK_EQ_INT(sum.count, total);
	al_series_set_free(x);
}

/* Checks a series reads back steps 0..total-1, each once and in order, except those in
 * [gap_lo, gap_hi); each point's value is 1000 + its step. */
static void check_steps(al_series_set *s, const char *doc, long total, long gap_lo, long gap_hi)
{
	char *text = render(s, doc), *p = text, *end;
	long want = 0, got = 0;

	for (; p && *p; p = end + 1) {
		long step = strtol(p, &end, 10);
		double v = strtod(end, &end);
		if (want == gap_lo)
			want = gap_hi;
		if (step != want || v != 1000.0 + (double)step) {
			fprintf(stderr, "point %ld is step %ld value %g, expected step %ld\n", got, step, v, want);
			CHECK(0);
			break;
		}
		want++;
		got++;
		if (!(end = strchr(end, '\n')))
			break;
	}
	CHECK_EQ_INT(got, total - (gap_hi - gap_lo));
	free(text);
}

/* One damaged journal record costs only its points, and exactly once still holds when the
 * mount crashes again after delivering them, before its journal was dropped: replay renumbers
 * the records after the damage, so the journal must then hold the new ordinals. */
static void damaged_record(const char *root)
{
	counting c = {.base = {.version = AL_STORE_BACKEND_VERSION, .name = "counting", .get = c_get,
		.list = c_list, .commit = c_commit, .free = c_free}};
	char jd[512], saved[512], snap[512], sd[512], sd0[512], gen1[600], line[64];
	const char *M = RUN "/metrics/damaged";
	al_store_backend *st = NULL, *st0 = NULL;
	al_series_set *x = NULL;
	double v45 = 1045.0;
	unsigned char key[8];
	long off = -1;

	snprintf(jd, sizeof(jd), "%s/jdamage", root);
	snprintf(saved, sizeof(saved), "%s/jdamage-saved", root);
	snprintf(snap, sizeof(snap), "%s/jdamage-snap", root);
	snprintf(sd0, sizeof(sd0), "%s/sdamage0", root);
	snprintf(sd, sizeof(sd), "%s/sdamage", root);
	snprintf(gen1, sizeof(gen1), "%s/journal.0000000000000001", saved);
	CHECK_OK(al_store_sqlite_new(&st0, sd0));
	CHECK_OK(al_store_sqlite_new(&st, sd));
	if (!st0 || !st)
		return;
	/* ten writes of ten points: one journal record each */
	CHECK_OK(al_series_set_open(&x, st0, jd, 600000));
	if (!x)
		return;
	for (int w = 0; w < 10; w++) {
		char text[512];
		size_t len = 0;
		for (int i = 10 * w; i < 10 * w + 10; i++) {
			int n = snprintf(line, sizeof(line), "%d %d\n", i, 1000 + i);
			memcpy(text + len, line, (size_t)n);
			len += (size_t)n;
		}
		CHECK_OK(al_series_append_text(x, M, text, len));
	}
	/* kill -9 now; one byte of the record with points 40..49 flips (in point 45's value) */
	CHECK_EQ_INT(sh("cp -r %s %s", jd, saved), 0);
	al_series_set_free(x);
	x = NULL;
	memcpy(key, &v45, 8);
	{
		FILE *f = fopen(gen1, "r+b");
		unsigned char buf[8192];
		size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
		for (size_t i = 0; i + 8 <= n && off < 0; i++)
			if (memcmp(buf + i, key, 8) == 0)
				off = (long)i;
		CHECK(off > 0);
		if (f && off > 0) {
			unsigned char b = buf[off + 6] ^ 0x01;
			fseek(f, off + 6, SEEK_SET);
			fwrite(&b, 1, 1, f);
		}
		if (f)
			fclose(f);
	}
	CHECK_EQ_INT(sh("rm -rf %s%s", jd, ""), 0);
	CHECK_EQ_INT(sh("cp -r %s %s", saved, jd), 0);

	/* remount against a store without these points: every other point once */
	c.inner = st;
	c.snap_from = jd;
	c.snap_to = snap;
	CHECK_OK(al_series_set_open(&x, &c.base, jd, 600000));
	if (!x)
		return;
	CHECK(c.commits > 0);
	check_steps(x, M, 100, 40, 50);
	al_series_set_free(x);
	x = NULL;

	/* crash again right after that delivery, before the journal was dropped: the store holds
	 * the points, the journal is as it was then; replay adds nothing and loses nothing */
	CHECK_EQ_INT(sh("rm -rf %s%s", jd, ""), 0);
	CHECK_EQ_INT(sh("cp -r %s %s", snap, jd), 0);
	CHECK_OK(al_series_set_open(&x, st, jd, 600000));
	if (!x)
		return;
	check_steps(x, M, 100, 40, 50);
	/* and the series goes on after its last point */
	CHECK_OK(al_series_append_text(x, M, "100 1100\n", 9));
	CHECK_OK(al_series_flush(x));
	al_series_set_free(x);
	x = NULL;
	CHECK_OK(al_series_set_open(&x, st, jd, 600000));
	if (x)
		check_steps(x, M, 101, 40, 50);
	al_series_set_free(x);
	al_store_free(st);
	al_store_free(st0);
}

static size_t count_lines(const char *t)
{
	size_t n = 0;
	for (; t && *t; t++)
		n += *t == '\n';
	return n;
}

/* Two mounts (two sets with their own journals) append to one metric of one store: each writes
 * only its own chunks, so every point of both is kept; views refresh after the TTL; the stored
 * summary adds the writers' entries up; a program's chunks without a writer are read too. */
static void two_writers(const char *root, al_store_backend *st)
{
	char ja[512], jb[512], line[64];
	const char *M = RUN "/metrics/shared";
	al_series_set *x = NULL, *y = NULL, *z = NULL;
	al_series_summary sum;
	char *text;
	int i;

	snprintf(ja, sizeof(ja), "%s/ja", root);
	snprintf(jb, sizeof(jb), "%s/jb", root);
	CHECK_OK(al_series_set_open(&x, st, ja, 60000));
	CHECK_OK(al_series_set_open(&y, st, jb, 60000));
	if (!x || !y)
		return;
	CHECK(strcmp(al_series_writer(x), al_series_writer(y)) != 0);
	al_series_set_ttl(x, 1);
	al_series_set_ttl(y, 1);
	/* Both load the (empty) series first, as two mounts appending at once would. */
	CHECK_OK(al_series_append_text(x, M, "1 1.5 1000.000\n", 15));
	CHECK_OK(al_series_append_text(y, M, "1 2.5 1000.500\n", 15));
	for (i = 2; i < AL_SERIES_CHUNK + 20; i++) {
		int n = snprintf(line, sizeof(line), "%d %d %d.000\n", i, i, 1000 + i);
		CHECK_OK(al_series_append_text(i % 2 ? x : y, M, line, (size_t)n));
		if (i % 1000 == 0) {   /* deliveries interleave with appends */
			CHECK_OK(al_series_flush(x));
			CHECK_OK(al_series_flush(y));
		}
	}
	CHECK_OK(al_series_flush(x));
	CHECK_OK(al_series_flush(y));
	usleep(3000);
	/* Each writer's view, refreshed, holds every point of both, ordered by time. */
	text = render(x, M);
	CHECK_EQ_INT(count_lines(text), AL_SERIES_CHUNK + 20);
	CHECK(text && strncmp(text, "1 1.5 1000.000\n1 2.5 1000.500\n2 2 1002.000\n", 43) == 0);
	{
		char *other = render(y, M);
		CHECK_EQ_STR(other, text);
		free(other);
	}
	CHECK_OK(al_series_summary_get(&sum, y, M));
	CHECK_EQ_INT(sum.count, AL_SERIES_CHUNK + 20);
	CHECK_EQ_INT(sum.text_bytes, text ? strlen(text) : 0);
	al_series_set_free(x);
	al_series_set_free(y);

	/* A fresh reader: the summary from the stored writer entries alone, then the points. */
	{
		char jz[512];
		snprintf(jz, sizeof(jz), "%s/jz", root);
		CHECK_OK(al_series_set_open(&z, st, jz, 60000));
	}
	CHECK_OK(al_series_summary_get(&sum, z, M));
	CHECK_EQ_INT(sum.count, AL_SERIES_CHUNK + 20);
	CHECK_EQ_INT(sum.step, AL_SERIES_CHUNK + 19);
	CHECK_EQ_INT(sum.text_bytes, text ? strlen(text) : 0);
	{
		char *again = render(z, M);
		CHECK_EQ_STR(again, text);
		free(again);
	}
	free(text);

	/* A chunk written by another program (no writer field) merges with the mount's points. */
	{
		cJSON *f = cJSON_CreateObject(), *st_ = cJSON_CreateArray(), *va = cJSON_CreateArray(),
		      *ti = cJSON_CreateArray();
		al_write w;
		cJSON_AddItemToArray(st_, al_value_int(7));
		cJSON_AddItemToArray(va, al_value_double(0.75));
		cJSON_AddItemToArray(ti, al_value_time(5000000));
		al_fields_set(f, "seq", al_value_int(0));
		al_fields_set(f, "steps", al_value_array(st_));
		al_fields_set(f, "values", al_value_array(va));
		al_fields_set(f, "times", al_value_array(ti));
		w = (al_write){AL_WRITE_SET, RUN "/metrics/ext/chunks/0", f, AL_PRE_NONE, NULL};
		CHECK_OK(al_store_commit(st, &w, 1));
		cJSON_Delete(f);
	}
	CHECK_OK(al_series_append_text(z, RUN "/metrics/ext", "8 0.5 6.000\n", 12));
	CHECK_OK(al_series_flush(z));
	text = render(z, RUN "/metrics/ext");
	CHECK_EQ_STR(text, "7 0.75 5.000\n8 0.5 6.000\n");
	free(text);
	CHECK_OK(al_series_summary_get(&sum, z, RUN "/metrics/ext"));
	CHECK_EQ_INT(sum.count, 2);
	al_series_set_free(z);
	z = NULL;
	{
		char jw[512];
		snprintf(jw, sizeof(jw), "%s/jw", root);
		CHECK_OK(al_series_set_open(&z, st, jw, 60000));
	}
	CHECK_OK(al_series_summary_get(&sum, z, RUN "/metrics/ext"));
	CHECK_EQ_INT(sum.count, 2);
	CHECK_EQ_INT(sum.step, 8);
	al_series_set_free(z);
}

/* A store whose chunk listings and commits fail as an unreachable one's, while its documents and
 * other listings still answer (as the read cache's last known copies do). */
typedef struct away {
	al_store_backend base;
	al_store_backend *inner;
	int down;
	int refuse;   /* commits fail for good (AL_EINVAL), as a value no store takes would */
} away;

static int w_get(al_doc **out, al_store_backend *b, const char *path)
{
	return al_store_get(out, ((away *)b)->inner, path);
}

static int w_list(al_doc_list **out, al_store_backend *b, const char *c, const char *from, const char *to)
{
	away *w = (away *)b;
	size_t n = strlen(c);
	if (w->down && n > 7 && strcmp(c + n - 7, "/chunks") == 0)
		return al_error_set(AL_EIO, "unreachable");
	return al_store_list(out, w->inner, c, from, to);
}

static int w_commit(al_store_backend *b, const al_write *wr, size_t n)
{
	away *w = (away *)b;
	if (w->down)
		return al_error_set(AL_EIO, "unreachable");
	if (w->refuse)
		return al_error_set(AL_EINVAL, "refused for the test");
	return al_store_commit(w->inner, wr, n);
}

static int steps_of(const char *text, char *out, size_t cap)
{
	int n = 0;
	out[0] = '\0';
	for (const char *l = text; l && *l; l = strchr(l, '\n') + 1, n++)
		snprintf(out + strlen(out), cap - strlen(out), "%s%lld", n ? "," : "", atoll(l));
	return n;
}

/* Appends to a series never loaded while its chunks cannot be read: accepted and journaled
 * without ordinals (the default step from the stored summary), counted as pending, and delivered
 * once the chunks can be read, exactly once also after a crash before or after that. */
static void deferred(const char *root)
{
	char st[512], snap[512], jd[512], j1[512], steps[256];
	const char *M = RUN "/metrics/later";
	al_store_backend *sql = NULL;
	away w = {.base = {.version = AL_STORE_BACKEND_VERSION, .name = "away", .get = w_get,
		.list = w_list, .commit = w_commit, .free = c_free}};
	al_series_set *x = NULL;
	al_series_summary sum;
	char *text = NULL, **ids = NULL;
	size_t nids = 0, len = 0;

	snprintf(st, sizeof(st), "%s/dstore", root);
	snprintf(snap, sizeof(snap), "%s/dstore0", root);
	snprintf(jd, sizeof(jd), "%s/jdeferred", root);
	snprintf(j1, sizeof(j1), "%s/jdeferred1", root);
	CHECK_OK(al_store_sqlite_new(&sql, st));
	if (!sql)
		return;
	w.inner = sql;
	CHECK_OK(al_series_set_open(&x, &w.base, jd, 600000));
	if (!x)
		return;
	CHECK_OK(al_series_append_text(x, M, "0.1\n0.2\n0.3\n", 12));
	CHECK_OK(al_series_flush(x));
	al_series_set_free(x);   /* a new mount: nothing of the series in memory */
	al_store_free(sql);
	CHECK_EQ_INT(sh("cp -r %s %s", st, snap), 0);
	CHECK_OK(al_store_sqlite_new(&sql, st));
	w.inner = sql;
	CHECK_OK(al_series_set_open(&x, &w.base, jd, 600000));

	w.down = 1;
	CHECK_OK(al_series_append_text(x, M, "0.7\n", 4));
	CHECK_OK(al_series_append_text(x, M, "9 0.8\n0.9\n", 10));
	CHECK_EQ_INT(al_series_pending(x), 3);
	CHECK_OK(al_series_summary_get(&sum, x, M));
	CHECK_EQ_INT(sum.count, 6);
	CHECK_EQ_INT(sum.step, 10);
	CHECK(sum.last == 0.9);
	CHECK_OK(al_series_ids(&ids, &nids, x, RUN));
	CHECK(nids == 1 && strcmp(ids[0], "later") == 0);
	al_strings_free(ids, nids);
	CHECK_EQ_INT(al_series_render(&text, &len, x, M), AL_EIO);   /* the stored points: unknown */
	CHECK_EQ_INT(al_series_flush(x), AL_EIO);
	CHECK_EQ_INT(al_series_pending(x), 3);
	CHECK_EQ_INT(sh("cp -r %s %s", jd, j1), 0);   /* kill -9 now */

	w.down = 0;
	CHECK_OK(al_series_flush(x));
	CHECK_EQ_INT(al_series_pending(x), 0);
	text = render(x, M);
	CHECK_EQ_INT(steps_of(text, steps, sizeof(steps)), 6);
	CHECK_EQ_STR(steps, "0,1,2,3,9,10");
	al_series_set_free(x);
	/* A restart after the delivery (the journal holds the resolved points): nothing added. */
	CHECK_OK(al_series_set_open(&x, &w.base, jd, 600000));
	CHECK_OK(al_series_summary_get(&sum, x, M));
	CHECK_EQ_INT(sum.count, 6);
	al_series_set_free(x);
	al_store_free(sql);
	sql = NULL;

	/* A crash before the chunks could be read: the replay delivers them, once. */
	CHECK_EQ_INT(sh("rm -rf %s%s", st, ""), 0);
	CHECK_EQ_INT(sh("cp -r %s %s", snap, st), 0);
	CHECK_EQ_INT(sh("rm -rf %s%s", jd, ""), 0);
	CHECK_EQ_INT(sh("cp -r %s %s", j1, jd), 0);
	CHECK_OK(al_store_sqlite_new(&sql, st));
	w.inner = sql;
	CHECK_OK(al_series_set_open(&x, &w.base, jd, 600000));
	CHECK_EQ_INT(al_series_pending(x), 0);
	free(text);
	text = render(x, M);
	CHECK_EQ_INT(steps_of(text, steps, sizeof(steps)), 6);
	CHECK_EQ_STR(steps, "0,1,2,3,9,10");
	al_series_set_free(x);
	al_store_free(sql);
	free(text);
}

/* A journal record as core/series/series.c writes it: kind, u16 document length, document, u64 first
 * ordinal, u32 count, count × (step, value, time). */
static void journal_record(al_journal *j, int kind, const char *doc, uint64_t first,
	const al_point *pts, uint32_t n)
{
	size_t dl = strlen(doc), len = 1 + 2 + dl + 8 + 4 + (size_t)n * 24, off = 0;
	unsigned char *rec = malloc(len);
	uint16_t pl = (uint16_t)dl;

	rec[off++] = (unsigned char)kind;
	memcpy(rec + off, &pl, 2); off += 2;
	memcpy(rec + off, doc, dl); off += dl;
	memcpy(rec + off, &first, 8); off += 8;
	memcpy(rec + off, &n, 4); off += 4;
	for (uint32_t i = 0; i < n; i++, off += 24) {
		memcpy(rec + off, &pts[i].step, 8);
		memcpy(rec + off + 8, &pts[i].value, 8);
		memcpy(rec + off + 16, &pts[i].time_us, 8);
	}
	CHECK_OK(al_journal_append(j, rec, len));
	free(rec);
}

/* Files under dir/damaged. */
static int damaged_count(const char *dir)
{
	char cmd[700];
	FILE *f;
	int n = -1;
	snprintf(cmd, sizeof(cmd), "ls %s/damaged 2>/dev/null | wc -l", dir);
	if ((f = popen(cmd, "r"))) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		pclose(f);
	}
	return n;
}

/* A journal of an older version holding points whose TIME no store can hold (a time in
 * milliseconds) made every mount fail ("field times is not a typed value"): replay drops those
 * points with a log line, after keeping the journal file aside, and every other point is kept
 * once, own, deferred and resolved alike, also after another remount. */
static void unstorable_replay(const char *root)
{
	char jd[512], sd[512], steps[256];
	const char *M = RUN "/metrics/ms", *D = RUN "/metrics/later";
	const int64_t T = 1700000000000000LL, MS = 1733400000000LL * 1000000;
	al_point own[5] = {{0, 0.5, T}, {1, 1.5, T}, {2, 2.5, MS}, {3, 3.5, T}, {4, 4.5, T}};
	al_point more[2] = {{5, 5.5, T}, {6, 6.5, T}};
	al_point def[3] = {{7, 7.5, T}, {8, 8.5, -MS}, {9, 9.5, T}};
	al_point def2[2] = {{10, 10.5, MS}, {11, 11.5, T}};
	al_store_backend *st = NULL;
	al_journal *j = NULL;
	al_series_set *x = NULL;
	char *text;

	snprintf(jd, sizeof(jd), "%s/junstorable", root);
	snprintf(sd, sizeof(sd), "%s/sunstorable", root);
	CHECK_OK(al_journal_open(&j, jd));
	if (!j)
		return;
	journal_record(j, 2, M, 0, own, 5);
	journal_record(j, 2, M, 5, more, 2);
	/* D: points deferred while its chunks could not be read; the first three got ordinals */
	journal_record(j, 3, D, 0, def, 3);
	journal_record(j, 3, D, 0, def2, 2);
	journal_record(j, 4, D, 0, def, 3);
	al_journal_free(j);
	CHECK_OK(al_store_sqlite_new(&st, sd));
	if (!st)
		return;
	CHECK_OK(al_series_set_open(&x, st, jd, 600000));
	if (!x)
		return;
	CHECK_EQ_INT(damaged_count(jd), 1);
	CHECK_OK(al_series_flush(x));
	CHECK_EQ_INT(al_series_pending(x), 0);
	text = render(x, M);
	CHECK_EQ_INT(steps_of(text, steps, sizeof(steps)), 6);
	CHECK_EQ_STR(steps, "0,1,3,4,5,6");
	free(text);
	text = render(x, D);
	CHECK_EQ_INT(steps_of(text, steps, sizeof(steps)), 3);
	CHECK_EQ_STR(steps, "7,9,11");
	free(text);
	CHECK_OK(al_series_append_text(x, M, "7 7.5\n", 6));
	al_series_set_free(x);
	x = NULL;
	/* another mount: the journal left behind holds nothing unstorable and repeats nothing */
	CHECK_OK(al_series_set_open(&x, st, jd, 600000));
	if (x) {
		text = render(x, M);
		steps_of(text, steps, sizeof(steps));
		CHECK_EQ_STR(steps, "0,1,3,4,5,6,7");
		free(text);
		text = render(x, D);
		steps_of(text, steps, sizeof(steps));
		CHECK_EQ_STR(steps, "7,9,11");
		free(text);
	}
	CHECK_EQ_INT(damaged_count(jd), 1);
	al_series_set_free(x);
	al_store_free(st);
}

/* A first delivery at mount that the store refuses does not fail the mount: the points stay
 * pending, last_error says why, and they go once the store takes them. */
static void refused_at_mount(const char *root)
{
	char jd[512], sd[512], err[512];
	const char *M = RUN "/metrics/refused";
	away w = {.base = {.version = AL_STORE_BACKEND_VERSION, .name = "away", .get = w_get,
		.list = w_list, .commit = w_commit, .free = c_free}};
	al_series_set *x = NULL;
	char *text;

	snprintf(jd, sizeof(jd), "%s/jrefused", root);
	snprintf(sd, sizeof(sd), "%s/srefused", root);
	CHECK_OK(al_store_sqlite_new(&w.inner, sd));
	if (!w.inner)
		return;
	CHECK_OK(al_series_set_open(&x, &w.base, jd, 600000));
	if (!x)
		return;
	w.refuse = 1;
	CHECK_OK(al_series_append_text(x, M, "1\n2\n", 4));
	CHECK_EQ_INT(al_series_flush(x), AL_EINVAL);
	al_series_set_free(x);
	x = NULL;
	CHECK_OK(al_series_set_open(&x, &w.base, jd, 600000));
	if (!x)
		return;
	CHECK_EQ_INT(al_series_pending(x), 2);
	al_series_last_error(err, sizeof(err), x);
	CHECK(strstr(err, "refused for the test") != NULL);
	w.refuse = 0;
	CHECK_OK(al_series_flush(x));
	CHECK_EQ_INT(al_series_pending(x), 0);
	al_series_set_free(x);
	CHECK_OK(al_series_set_open(&x, w.inner, jd, 600000));
	text = x ? render(x, M) : NULL;
	CHECK(text && strncmp(text, "0 1 ", 4) == 0 && strstr(text, "\n1 2 ") != NULL);
	free(text);
	al_series_set_free(x);
	al_store_free(w.inner);
}

/* A series' update time is its last point's change, also once its points are loaded again after a
 * remount: reading must not make it the time of the read (a metric's mtime moved at every read). */
static void update_time_after_load(const char *root, al_store_backend *st)
{
	char jd[512];
	const char *M = RUN "/metrics/mtime";
	al_series_set *x = NULL;
	al_series_summary sum;
	int64_t appended;
	char *text;

	snprintf(jd, sizeof(jd), "%s/jmtime", root);
	CHECK_OK(al_series_set_open(&x, st, jd, 600000));
	if (!x)
		return;
	CHECK_OK(al_series_append_text(x, M, "1\n2\n", 4));
	CHECK_OK(al_series_summary_get(&sum, x, M));
	appended = sum.update_us;
	CHECK(appended > 0);
	CHECK_OK(al_series_flush(x));
	al_series_set_free(x);
	x = NULL;
	usleep(20000);
	CHECK_OK(al_series_set_open(&x, st, jd, 600000));
	if (!x)
		return;
	CHECK_OK(al_series_summary_get(&sum, x, M));   /* from the stored summary alone */
	CHECK_EQ_INT(sum.update_us, appended);
	text = render(x, M);                            /* loads the points */
	free(text);
	CHECK_OK(al_series_summary_get(&sum, x, M));
	CHECK_EQ_INT(sum.update_us, appended);
	usleep(20000);
	text = render(x, M);
	free(text);
	CHECK_OK(al_series_summary_get(&sum, x, M));
	CHECK_EQ_INT(sum.update_us, appended);
	/* a new point is a change */
	CHECK_OK(al_series_append_text(x, M, "3\n", 2));
	CHECK_OK(al_series_summary_get(&sum, x, M));
	CHECK(sum.update_us > appended);
	al_series_set_free(x);
}

/* A metric whose document path does not fit the journal record's 16-bit length: the append is
 * refused (AL_ENAMETOOLONG) instead of journaling a cut path whose points a replay loses. */
static void path_too_long(const char *root, al_store_backend *st)
{
	char jd[512];
	size_t n = strlen(RUN "/metrics/") + 70000;
	char *doc = malloc(n + 1);
	al_series_set *x = NULL;

	snprintf(jd, sizeof(jd), "%s/jlong", root);
	snprintf(doc, n + 1, "%s", RUN "/metrics/");
	memset(doc + strlen(doc), 's', n - strlen(doc));
	doc[n] = '\0';
	CHECK_OK(al_series_set_open(&x, st, jd, 600000));
	if (x) {
		CHECK_EQ_INT(al_series_append_text(x, doc, "3 0.125\n", 8), AL_ENAMETOOLONG);
		CHECK_EQ_INT(al_series_pending(x), 0);
		CHECK_OK(al_series_append_text(x, RUN "/metrics/short", "1\n", 2));
		CHECK_EQ_INT(al_series_pending(x), 1);
	}
	al_series_set_free(x);
	free(doc);
}

/* The text of a stored series read point by point as a reader does (al_series_points in
 * batches from where the last one ended), formatted: what cat shows. rc: the first error. */
static char *read_stored(int *rc, al_series_set *x, const char *doc, size_t batch)
{
	al_point pts[4096];
	uint64_t from = 0, view = UINT64_MAX;
	size_t n, i, len = 0, cap = 1 << 16;
	char *text = malloc(cap);
	*rc = 0;
	for (;;) {
		if ((*rc = al_series_points(pts, &n, &view, x, doc, from, batch)) || n == 0)
			break;
		for (i = 0; i < n; i++) {
			if (len + AL_POINT_TEXT_MAX > cap)
				text = realloc(text, cap *= 2);
			len += al_metric_format(text + len, &pts[i]);
		}
		from += n;
	}
	text[len] = '\0';
	return text;
}

/* Replaces (fields non-NULL) or deletes a document's row behind the store's back: damage. */
static void damage_row(const char *store_dir, const char *path, const char *fields)
{
	char db_path[512];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	snprintf(db_path, sizeof(db_path), "%s/meta.db", store_dir);
	CHECK_EQ_INT(sqlite3_open(db_path, &db), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_prepare_v2(db, fields ? "UPDATE docs SET fields = ?2 WHERE path = ?1" :
		"DELETE FROM docs WHERE path = ?1", -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	if (fields)
		sqlite3_bind_text(st, 2, fields, -1, SQLITE_STATIC);
	CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
	CHECK_EQ_INT(sqlite3_changes(db), 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* A stored series reads back exactly what was written (README "metrics": written in the read-back
 * form, the text is the same bytes) across chunk boundaries and a partly filled last chunk, with
 * values, steps and times at their edges; a damaged chunk fails the read with AL_EIO, and so
 * does a missing one, which used to end the text early as if the series ended there. */
static void stored_exact(const char *root, const char *store_dir, al_store_backend *st)
{
	static const char *const values[] = {"0.93", "1e-07", "1e+300", "-2.5", "nan", "inf", "-inf",
		"0.30000000000000004", "1.2345678901234568e+17", "5e-324", "-5e-324", "-0", "0",
		"0.9300000071525574", "1.7976931348623157e+308", "123.456", "0.0001", "1e-05", "100",
		"9007199254740992", "2.2250738585072014e-308", "0.12345678901234566", "-1e+22", "1e+15",
		"999999999999999", "0.001", "3.3333333333333335"};
	static const char *const times[] = {"1700000000.123", "-62135596800.000", "253402300799.999",
		"0.000", "-0.001", "1733400000.000", "1733400000.999"};
	const char *M = RUN "/metrics/exact";
	size_t npts = 2 * 4096 + 1234, i, len = 0, nv = sizeof(values) / sizeof(values[0]);
	char jd[512], *in = malloc(npts * 96 + 1), *out, chunk[512];
	al_series_set *x = NULL;
	int rc;

	snprintf(jd, sizeof(jd), "%s/jexact", root);
	for (i = 0; i < npts; i++) {
		long long step = i % 3 == 0 ? 9007199254740993LL + (long long)i : i % 3 == 1 ?
			-(long long)i : 9223372036854775807LL - (long long)i;
		len += (size_t)sprintf(in + len, "%lld %s %s\n", step, values[i % nv],
			times[i % (sizeof(times) / sizeof(times[0]))]);
	}
	CHECK_OK(al_series_set_open(&x, st, jd, 600000));
	if (!x)
		goto cleanup;
	CHECK_OK(al_series_append_text(x, M, in, len));
	CHECK_OK(al_series_flush(x));
	al_series_set_free(x);
	x = NULL;
	/* A set that never loaded the series reads it from the store chunk by chunk. */
	CHECK_OK(al_series_set_open(&x, st, jd, 600000));
	if (!x)
		goto cleanup;
	out = read_stored(&rc, x, M, 4096);
	CHECK_OK(rc);
	CHECK(strcmp(out, in) == 0);
	free(out);
	out = read_stored(&rc, x, M, 1000);   /* batches that straddle the chunks */
	CHECK_OK(rc);
	CHECK(strcmp(out, in) == 0);
	free(out);

	/* Damage: a chunk whose text is no JSON fails, after the points before it. */
	snprintf(chunk, sizeof(chunk), "%s/chunks/%s-1", M, al_series_writer(x));
	damage_row(store_dir, chunk, "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"5\"},");
	out = read_stored(&rc, x, M, 4096);
	CHECK_EQ_INT(rc, AL_EIO);
	{
		/* the first chunk's 4,096 lines came out, exactly */
		const char *p = in;
		for (i = 0; i < 4096; i++)
			p = strchr(p, '\n') + 1;
		CHECK_EQ_INT(strlen(out), (size_t)(p - in));
		CHECK(strncmp(out, in, (size_t)(p - in)) == 0);
	}
	free(out);
	/* A chunk that is JSON of another shape reads as its document does: steps without values. */
	damage_row(store_dir, chunk, "{\"steps\":{\"arrayValue\":{\"values\":[{\"integerValue\":\"5\"},"
		"{\"integerValue\":5},{\"integerValue\":\"x\"}]}}}");
	{
		al_point pts[8];
		size_t n = 0;
		uint64_t view = UINT64_MAX;
		CHECK_OK(al_series_points(pts, &n, &view, x, M, 4096, 8));
		CHECK_EQ_INT(n, 3);
		CHECK_EQ_INT(pts[0].step, 5);
		CHECK(isnan(pts[0].value));
		CHECK_EQ_INT(pts[0].time_us, 0);
		CHECK_EQ_INT(pts[1].step, 5);   /* an exact JSON number is taken as an integer */
		CHECK_EQ_INT(pts[2].step, 0);   /* no integer: no step */
	}
	/* A missing chunk fails too: the summary counts its points. */
	damage_row(store_dir, chunk, NULL);
	out = read_stored(&rc, x, M, 4096);
	CHECK_EQ_INT(rc, AL_EIO);
	free(out);
cleanup:
	al_series_set_free(x);
	free(in);
}

/* The summaries of a run's metrics are the same whether the store hands over the documents'
 * text (SQLite's list_text, read by chunk.c where the shape is plain) or parsed documents (a
 * store without it): every field, bit for bit, over the shapes a summary document takes. */
static void summaries_same(const char *root, const char *store_dir, al_store_backend *st)
{
	static const struct {
		const char *id, *fields;
	} docs[] = {
		{"plain", "{\"name\":{\"stringValue\":\"plain\"},\"count\":{\"integerValue\":\"3\"},\"last\":{\"doubleValue\":0.008},"
			"\"step\":{\"integerValue\":\"2\"},\"min\":{\"doubleValue\":0.006},\"max\":{\"doubleValue\":0.008},"
			"\"bytes\":{\"integerValue\":\"69\"},\"updated\":{\"timestampValue\":\"2026-12-06T07:26:19.488546Z\"},"
			"\"writer_1eb03ee4666c4053\":{\"mapValue\":{\"fields\":{\"count\":{\"integerValue\":\"3\"},"
			"\"last\":{\"doubleValue\":0.008},\"step\":{\"integerValue\":\"2\"},\"min\":{\"doubleValue\":0.006},"
			"\"max\":{\"doubleValue\":0.008},\"bytes\":{\"integerValue\":\"69\"},"
			"\"updated\":{\"timestampValue\":\"2026-12-06T07:26:19.488546Z\"}}}}}"},
		{"two", "{\"writer_a\":{\"mapValue\":{\"fields\":{\"count\":{\"integerValue\":\"2\"},\"last\":{\"doubleValue\":\"NaN\"},"
			"\"step\":{\"integerValue\":\"9223372036854775807\"},\"min\":{\"nullValue\":null},\"max\":{\"nullValue\":null},"
			"\"bytes\":{\"integerValue\":\"40\"},\"updated\":{\"timestampValue\":\"2026-01-01T00:00:00Z\"}}}},"
			"\"writer_b\":{\"mapValue\":{\"fields\":{\"count\":{\"integerValue\":\"1\"},\"last\":{\"doubleValue\":\"-Infinity\"},"
			"\"step\":{\"integerValue\":\"-4\"},\"min\":{\"doubleValue\":-5e-324},\"max\":{\"integerValue\":\"9007199254740993\"},"
			"\"bytes\":{\"integerValue\":\"20\"},\"updated\":{\"timestampValue\":\"2026-01-01T00:00:00.000001Z\"}}}}}"},
		{"top", "{\"count\":{\"integerValue\":\"5\"},\"last\":{\"doubleValue\":1e308},\"bytes\":{\"integerValue\":\"90\"},"
			"\"min\":{\"integerValue\":\"-3\"},\"max\":{\"doubleValue\":1.7976931348623157e308}}"},
		{"pretty", "{ \"bytes\" : {\"integerValue\": \"7\"},\n\t\"count\": { \"integerValue\" : \"1\" } ,"
			"\"last\":{\"doubleValue\":0.1},\"min\":{\"doubleValue\":-0.0},\"updated\":{\"timestampValue\":\"2026-01-01T00:00:00+01:00\"} }"},
		{"nobytes", "{\"count\":{\"integerValue\":\"5\"},\"last\":{\"doubleValue\":1.5}}"},
		{"escaped", "{\"na\\u006de\":{\"stringValue\":\"x\"},\"bytes\":{\"integerValue\":\"7\"},\"count\":{\"integerValue\":\"1\"}}"},
		{"twice", "{\"bytes\":{\"integerValue\":\"7\"},\"bytes\":{\"integerValue\":\"8\"},\"count\":{\"integerValue\":\"1\"}}"},
		{"oddtype", "{\"bytes\":{\"integerValue\":\"7\"},\"count\":{\"integerValue\":\"1\"},\"last\":{\"stringValue\":\"1\"}}"},
		{"broken", "{\"bytes\":{\"integerValue\":\"7\"},"},
	};
	const char *R = "projects/p/experiments/e/runs/77";
	counting c = {.base = {.version = AL_STORE_BACKEND_VERSION, .name = "counting", .get = c_get,
		.list = c_list, .list_collections = NULL, .commit = c_commit, .free = c_free}, .inner = st};
	al_series_set *x = NULL, *y = NULL;
	char jx[512], jy[512], path[512], **ix = NULL, **iy = NULL;
	al_series_summary *sx = NULL, *sy = NULL;
	size_t nx = 0, ny = 0, i;

	CHECK(st->list_text != NULL);
	/* Each document stored as a plain one first, then its text set as it stands above. */
	for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		cJSON *f = cJSON_CreateObject();
		al_write w = {AL_WRITE_SET, path, f, AL_PRE_NONE, NULL};
		snprintf(path, sizeof(path), "%s/metrics/%s", R, docs[i].id);
		al_fields_set(f, "bytes", al_value_int(1));
		CHECK_OK(al_store_commit(st, &w, 1));
		cJSON_Delete(f);
		damage_row(store_dir, path, docs[i].fields);
	}
	snprintf(jx, sizeof(jx), "%s/jsumx", root);
	snprintf(jy, sizeof(jy), "%s/jsumy", root);
	CHECK_OK(al_series_set_open(&x, st, jx, 600000));
	CHECK_OK(al_series_set_open(&y, &c.base, jy, 600000));
	if (!x || !y)
		goto cleanup;
	CHECK_OK(al_series_summaries(&ix, &sx, &nx, x, R));
	CHECK_OK(al_series_summaries(&iy, &sy, &ny, y, R));
	CHECK_EQ_INT(nx, ny);
	CHECK(nx >= 7);   /* the broken one is left out, "nobytes" has points to load: none */
	for (i = 0; i < nx && i < ny; i++) {
		CHECK_EQ_STR(ix[i], iy[i]);
		if (sx[i].count != sy[i].count || sx[i].step != sy[i].step ||
		    sx[i].text_bytes != sy[i].text_bytes || sx[i].update_us != sy[i].update_us ||
		    memcmp(&sx[i].last, &sy[i].last, sizeof(double)) != 0 ||
		    memcmp(&sx[i].min, &sy[i].min, sizeof(double)) != 0 ||
		    memcmp(&sx[i].max, &sy[i].max, sizeof(double)) != 0) {
			fprintf(stderr, "summary of %s differs: %llu %lld %.17g %.17g %.17g %llu %lld, parsed: "
				"%llu %lld %.17g %.17g %.17g %llu %lld\n", ix[i],
				(unsigned long long)sx[i].count, (long long)sx[i].step, sx[i].last, sx[i].min,
				sx[i].max, (unsigned long long)sx[i].text_bytes, (long long)sx[i].update_us,
				(unsigned long long)sy[i].count, (long long)sy[i].step, sy[i].last, sy[i].min,
				sy[i].max, (unsigned long long)sy[i].text_bytes, (long long)sy[i].update_us);
			CHECK(0);
		}
	}
	/* two writers: counts add up, the later gives last and step */
	for (i = 0; i < nx; i++)
		if (strcmp(ix[i], "two") == 0) {
			CHECK_EQ_INT(sx[i].count, 3);
			CHECK_EQ_INT(sx[i].step, -4);
			CHECK(sx[i].last == -INFINITY);
			CHECK_EQ_INT(sx[i].text_bytes, 60);
		}
cleanup:
	al_strings_free(ix, nx);
	al_strings_free(iy, ny);
	free(sx);
	free(sy);
	al_series_set_free(x);
	al_series_set_free(y);
}

/* runs.csv's min and max come from the stored summary: one stored without them (written by another
 * program) is computed from the points when read, not shown empty (README "runs.csv"). */
static void test_summary_without_min_max(const char *root)
{
	char dir[512], j1[512], j2[512];
	al_store_backend *st = NULL;
	al_series_set *x = NULL;
	al_doc *d = NULL;
	al_write w;
	char **ids = NULL;
	al_series_summary *sums = NULL;
	size_t n = 0, i;
	cJSON *it;

	snprintf(dir, sizeof(dir), "%s/minmax", root);
	snprintf(j1, sizeof(j1), "%s/minmax-j1", root);
	snprintf(j2, sizeof(j2), "%s/minmax-j2", root);
	CHECK_OK(al_store_sqlite_new(&st, dir));
	CHECK_OK(al_series_set_open(&x, st, j1, 600000));
	CHECK_OK(al_series_append_text(x, RUN "/metrics/old", "1\nnan\n-inf\n3\n", 13));
	CHECK_OK(al_series_flush(x));
	al_series_set_free(x);
	x = NULL;
	/* the summary document as another program would write it: no min, no max */
	CHECK_OK(al_store_get(&d, st, RUN "/metrics/old"));
	cJSON_DeleteItemFromObjectCaseSensitive(d->fields, "min");
	cJSON_DeleteItemFromObjectCaseSensitive(d->fields, "max");
	cJSON_ArrayForEach(it, d->fields)
		if (strncmp(it->string, "writer_", 7) == 0) {
			cJSON *m = (cJSON *)al_value_get_map(it);
			cJSON_DeleteItemFromObjectCaseSensitive(m, "min");
			cJSON_DeleteItemFromObjectCaseSensitive(m, "max");
		}
	w = (al_write){AL_WRITE_SET, RUN "/metrics/old", d->fields, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(st, &w, 1));
	al_doc_free(d);
	CHECK_OK(al_series_set_open(&x, st, j2, 600000));
	CHECK_OK(al_series_summaries(&ids, &sums, &n, x, RUN));
	for (i = 0; i < n && strcmp(ids[i], "old") != 0; i++)
		;
	CHECK(i < n);
	if (i < n) {
		CHECK_EQ_INT(sums[i].count, 4);
		CHECK(sums[i].min == -INFINITY && sums[i].max == 3 && sums[i].last == 3);
	}
	al_strings_free(ids, n);
	free(sums);
	al_series_set_free(x);
	al_store_free(st);
}

static int failing_group(al_store_backend *b, const char *parent_doc, const char *collection_id,
	int (*fn)(void *ctx, const char *path, const char *text, size_t len, int64_t update_us),
	void *ctx)
{
	(void)b, (void)parent_doc, (void)collection_id, (void)fn, (void)ctx;
	return al_error_set(AL_EIO, "group listing refused for the test");
}

/* Two ways to a run's summaries give the same: one query per run, and the experiment's one
 * listing (al_series_stored_start, runs.csv's way). Runs whose ids share a prefix ("1", "10"), a
 * series this mount holds ahead of the store, one only in memory, a collection named metrics
 * below a metric, and documents of another experiment are each where they belong. */
static void test_summaries_in(const char *root)
{
	static const char *const runs[] = {"1", "10", "2", "3"};
	const char *E = "projects/p/experiments/e";
	char dir[512], j1[512], j2[512], run[256], doc[512];
	al_store_backend *st = NULL;
	al_series_set *x = NULL;
	al_series_stored *g = NULL;
	size_t i, k;

	snprintf(dir, sizeof(dir), "%s/stored", root);
	snprintf(j1, sizeof(j1), "%s/stored-j1", root);
	snprintf(j2, sizeof(j2), "%s/stored-j2", root);
	CHECK_OK(al_store_sqlite_new(&st, dir));
	if (!st)
		return;
	CHECK_OK(al_series_set_open(&x, st, j1, 600000));
	/* stored: runs 1 and 10 (two metrics each), 2 (one); another experiment's run 1 */
	CHECK_OK(al_series_append_text(x, "projects/p/experiments/e/runs/1/metrics/loss", "3\n2\n", 4));
	CHECK_OK(al_series_append_text(x, "projects/p/experiments/e/runs/1/metrics/acc", "0.5\n", 4));
	CHECK_OK(al_series_append_text(x, "projects/p/experiments/e/runs/10/metrics/loss", "9\n", 2));
	CHECK_OK(al_series_append_text(x, "projects/p/experiments/e/runs/10/metrics/a%2Fb", "7\n", 2));
	CHECK_OK(al_series_append_text(x, "projects/p/experiments/e/runs/2/metrics/loss", "4\n5\n6\n", 6));
	CHECK_OK(al_series_append_text(x, "projects/p/experiments/e2/runs/1/metrics/loss", "100\n", 4));
	CHECK_OK(al_series_flush(x));
	al_series_set_free(x);
	x = NULL;
	{   /* a collection named metrics below a metric: not one of the run's metrics */
		cJSON *f = cJSON_CreateObject();
		al_write w = {AL_WRITE_SET, "projects/p/experiments/e/runs/1/metrics/loss/metrics/deep", f,
			AL_PRE_NONE, NULL};
		al_fields_set(f, "count", al_value_int(1));
		al_fields_set(f, "last", al_value_double(42));
		CHECK_OK(al_store_commit(st, &w, 1));
		cJSON_Delete(f);
	}
	/* a new mount: run 1's loss gains a point not yet delivered, run 3 exists in memory only */
	CHECK_OK(al_series_set_open(&x, st, j2, 600000));
	if (!x)
		goto cleanup;
	CHECK_OK(al_series_append_text(x, "projects/p/experiments/e/runs/1/metrics/loss", "1\n", 2));
	CHECK_OK(al_series_append_text(x, "projects/p/experiments/e/runs/3/metrics/new", "8\n", 2));
	CHECK_OK(al_series_stored_start(&g, x, E));
	CHECK(g != NULL);   /* SQLite has list_group_text */
	for (i = 0; i < sizeof(runs) / sizeof(*runs); i++) {
		char **ia = NULL, **ib = NULL;
		al_series_summary *sa = NULL, *sb = NULL;
		size_t na = 0, nb = 0;
		snprintf(run, sizeof(run), "%s/runs/%s", E, runs[i]);
		CHECK_OK(al_series_summaries(&ia, &sa, &na, x, run));
		CHECK_OK(al_series_summaries_in(&ib, &sb, &nb, x, g, run));
		CHECK_EQ_INT(na, nb);
		CHECK_EQ_INT(na, i == 0 || i == 1 ? 2 : 1);
		for (k = 0; k < na && k < nb; k++) {
			CHECK_EQ_STR(ia[k], ib[k]);
			CHECK_EQ_INT(sa[k].count, sb[k].count);
			CHECK(memcmp(&sa[k].last, &sb[k].last, sizeof(double)) == 0);
			CHECK(memcmp(&sa[k].min, &sb[k].min, sizeof(double)) == 0);
			CHECK(memcmp(&sa[k].max, &sb[k].max, sizeof(double)) == 0);
			CHECK_EQ_INT(sa[k].update_us, sb[k].update_us);
			snprintf(doc, sizeof(doc), "%s/metrics/%s", run, ib[k]);
			if (strcmp(doc, "projects/p/experiments/e/runs/1/metrics/loss") == 0)
				CHECK(sb[k].count == 3 && sb[k].last == 1 && sb[k].min == 1 && sb[k].max == 3);
			if (strcmp(doc, "projects/p/experiments/e/runs/10/metrics/loss") == 0)
				CHECK(sb[k].count == 1 && sb[k].last == 9);
			if (strcmp(doc, "projects/p/experiments/e/runs/3/metrics/new") == 0)
				CHECK(sb[k].count == 1 && sb[k].last == 8);
		}
		al_strings_free(ia, na);
		al_strings_free(ib, nb);
		free(sa);
		free(sb);
	}
	al_series_stored_free(g);
	g = NULL;
	{   /* a store without list_group_text: no listing, and al_series_summaries_in queries */
		counting c = {.base = {.version = AL_STORE_BACKEND_VERSION, .name = "counting", .get = c_get,
			.list = c_list, .list_collections = NULL, .commit = c_commit, .free = c_free},
			.inner = st};
		al_series_set *y = NULL;
		char **ids = NULL;
		al_series_summary *sums = NULL;
		size_t n = 0;
		snprintf(j1, sizeof(j1), "%s/stored-j3", root);
		CHECK_OK(al_series_set_open(&y, &c.base, j1, 600000));
		if (y) {
			CHECK_OK(al_series_stored_start(&g, y, E));
			CHECK(g == NULL);
			CHECK_OK(al_series_summaries_in(&ids, &sums, &n, y, NULL, "projects/p/experiments/e/runs/2"));
			CHECK(n == 1 && sums && sums[0].count == 3 && sums[0].last == 6);
			al_strings_free(ids, n);
			free(sums);
			/* one whose group listing fails: the run's own query answers */
			c.base.list_group_text = failing_group;
			CHECK_OK(al_series_stored_start(&g, y, E));
			CHECK(g != NULL);
			CHECK_OK(al_series_summaries_in(&ids, &sums, &n, y, g, "projects/p/experiments/e/runs/2"));
			CHECK(n == 1 && sums && sums[0].count == 3 && sums[0].last == 6);
			al_strings_free(ids, n);
			free(sums);
			al_series_stored_free(g);
			g = NULL;
			al_series_set_free(y);
		}
	}
cleanup:
	al_series_stored_free(g);
	al_series_set_free(x);
	al_store_free(st);
}

int main(void)
{
	char root[] = "/tmp/al-series-XXXXXX", store_a[256], store_b[256], journal[256], saved[256];
	al_store_backend *a = NULL, *b = NULL;
	al_series_set *s = NULL;
	al_series_summary sum;
	char *text, **ids = NULL;
	size_t nids = 0;
	al_doc *doc = NULL;

	CHECK(mkdtemp(root) != NULL);
	snprintf(store_a, sizeof(store_a), "%s/a", root);
	snprintf(store_b, sizeof(store_b), "%s/b", root);
	snprintf(journal, sizeof(journal), "%s/journal", root);
	snprintf(saved, sizeof(saved), "%s/saved", root);
	CHECK_OK(al_store_sqlite_new(&a, store_a));
	CHECK_OK(al_series_set_open(&s, a, journal, 60000));
	test_summary_without_min_max(root);
	test_summaries_in(root);

	/* Appends: default steps chain, explicit steps and times are kept. */
	CHECK_OK(al_series_append_text(s, DOC, "0.5\n0.25\n", 9));
	CHECK_OK(al_series_append_text(s, DOC, "10 1e-07 1700000000.5\n", 22));
	CHECK(al_series_append_text(s, DOC, "11 0.1\nbad line\n", 16) == AL_EINVAL);
	text = render(s, DOC);
	CHECK(text && strncmp(text, "0 0.5 ", 6) == 0);
	CHECK(text && strstr(text, "\n1 0.25 ") != NULL);
	CHECK(text && strstr(text, "\n10 1e-07 1700000000.500\n") != NULL);
	/* the rejected write recorded nothing: no step 11 (not "0.1", which the clock's time in the
	 * first points' lines holds one time in a hundred: 1796615080.1xx) */
	CHECK(text && strstr(text, "\n11 ") == NULL);
	CHECK_OK(al_series_summary_get(&sum, s, DOC));
	CHECK_EQ_INT(sum.count, 3);
	CHECK_EQ_INT(sum.step, 10);
	CHECK(sum.min == 1e-07 && sum.max == 0.5 && sum.last == 1e-07);
	CHECK_EQ_INT(sum.text_bytes, text ? strlen(text) : 0);
	CHECK_EQ_INT(al_series_pending(s), 3);

	/* Not yet delivered, the series is still listed for its run. */
	CHECK_OK(al_series_ids(&ids, &nids, s, RUN));
	CHECK_EQ_INT(nids, 1);
	CHECK_EQ_STR(nids ? ids[0] : NULL, "loss");
	al_strings_free(ids, nids);

	/* A crash now: keep a copy of the journal as kill -9 would leave it. */
	CHECK_EQ_INT(sh("cp -r %s %s", journal, saved), 0);

	/* Delivery writes the chunk and the summary with the text size. */
	CHECK_OK(al_series_flush(s));
	CHECK_EQ_INT(al_series_pending(s), 0);
	CHECK_OK(al_store_get(&doc, a, DOC));
	if (doc) {
		int64_t v = 0;
		CHECK_OK(al_fields_get_int(&v, doc->fields, "count"));
		CHECK_EQ_INT(v, 3);
		CHECK_OK(al_fields_get_int(&v, doc->fields, "bytes"));
		CHECK_EQ_INT(v, text ? strlen(text) : 0);
	}
	al_doc_free(doc);
	doc = NULL;
	{
		char chunk0[512];
		snprintf(chunk0, sizeof(chunk0), DOC "/chunks/%s-0", al_series_writer(s));
		CHECK_OK(al_store_get(&doc, a, chunk0));
	}
	al_doc_free(doc);
	doc = NULL;
	al_series_set_free(s);
	s = NULL;

	/* Replay into an empty store recovers every point... */
	CHECK_OK(al_store_sqlite_new(&b, store_b));
	{
		char cmd[1024];
		snprintf(cmd, sizeof(cmd), "rm -rf %s && cp -r %s %s", journal, saved, journal);
		CHECK_EQ_INT(system(cmd), 0);
	}
	CHECK_OK(al_series_set_open(&s, b, journal, 60000));
	{
		char *again = render(s, DOC);
		CHECK_EQ_STR(again, text);
		free(again);
	}
	al_series_set_free(s);
	s = NULL;

	/* ...and replay into a store that already has them adds nothing: exactly once. */
	{
		char cmd[1024];
		snprintf(cmd, sizeof(cmd), "rm -rf %s && cp -r %s %s", journal, saved, journal);
		CHECK_EQ_INT(system(cmd), 0);
	}
	CHECK_OK(al_series_set_open(&s, a, journal, 60000));
	{
		char *again = render(s, DOC);
		CHECK_EQ_STR(again, text);
		free(again);
	}
	CHECK_OK(al_series_summary_get(&sum, s, DOC));
	CHECK_EQ_INT(sum.count, 3);

	/* More than a chunk of points: delivered in several chunk documents, read back whole. */
	{
		char line[64];
		int i;
		for (i = 0; i < AL_SERIES_CHUNK + 10; i++) {
			int n = snprintf(line, sizeof(line), "%d\n", i);
			if (al_series_append_text(s, RUN "/metrics/big", line, (size_t)n) != 0) {
				CHECK(0);
				break;
			}
		}
		CHECK_OK(al_series_flush(s));
		char chunk1[512];
		snprintf(chunk1, sizeof(chunk1), RUN "/metrics/big/chunks/%s-1", al_series_writer(s));
		CHECK_OK(al_store_get(&doc, a, chunk1));
		al_doc_free(doc);
		doc = NULL;
		CHECK_OK(al_series_summary_get(&sum, s, RUN "/metrics/big"));
		CHECK_EQ_INT(sum.count, AL_SERIES_CHUNK + 10);
	}
	al_series_set_free(s);
	/* Reopened from the store alone, the big series reads back every point. */
	CHECK_OK(al_series_set_open(&s, a, journal, 60000));
	CHECK_OK(al_series_summary_get(&sum, s, RUN "/metrics/big"));
	CHECK_EQ_INT(sum.count, AL_SERIES_CHUNK + 10);
	{
		char *big = render(s, RUN "/metrics/big");
		size_t lines = 0;
		for (char *p = big; p && *p; p++)
			lines += *p == '\n';
		CHECK_EQ_INT(lines, AL_SERIES_CHUNK + 10);
		free(big);
	}
	free(text);
	CHECK(al_series_render(&text, &nids, s, RUN "/metrics/none") == AL_ENOTFOUND);
	al_series_set_free(s);
	s = NULL;
	two_writers(root, a);
	backlog(root, a);
	damaged_record(root);
	deferred(root);
	unstorable_replay(root);
	refused_at_mount(root);
	update_time_after_load(root, a);
	path_too_long(root, a);
	stored_exact(root, store_a, a);
	summaries_same(root, store_a, a);
	al_store_free(a);
	al_store_free(b);
	sh("rm -rf %s%s", root, "");
	CHECK_DONE();
}
