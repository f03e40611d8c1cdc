/* Unit tests of the metric series: appends, read-back text, summaries, delivery to the store,
 * and journal replay after a crash (exactly once in effect). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "aletheia/series.h"
#include "aletheia/store.h"
#include "aletheia/value.h"
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
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), fmt, a, b);
	return system(cmd);
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

	/* Appends: default steps chain, explicit steps and times are kept. */
	CHECK_OK(al_series_append_text(s, DOC, "0.5\n0.25\n", 9));
	CHECK_OK(al_series_append_text(s, DOC, "10 1e-07 1700000000.5\n", 22));
	CHECK(al_series_append_text(s, DOC, "11 0.1\nbad line\n", 16) == AL_EINVAL);
	text = render(s, DOC);
	CHECK(text && strncmp(text, "0 0.5 ", 6) == 0);
	CHECK(text && strstr(text, "\n1 0.25 ") != NULL);
	CHECK(text && strstr(text, "\n10 1e-07 1700000000.500\n") != NULL);
	CHECK(text && strstr(text, "0.1") == NULL);   /* the rejected write recorded nothing */
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
	CHECK_OK(al_store_get(&doc, a, DOC "/chunks/0"));
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
		CHECK_OK(al_store_get(&doc, a, RUN "/metrics/big/chunks/1"));
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
	al_store_free(a);
	al_store_free(b);
	sh("rm -rf %s%s", root, "");
	CHECK_DONE();
}
