/* aletheia unit test: the Firestore backend (core/store/store_firestore.c) against the REST emulator
 * (scripts/firestore-emulator, started here): the same behaviours test_store.c checks for SQLite,
 * plus paging, URL encoding, field-path quoting, and retries under injected faults. */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "core/net/http.h"
#include "core/store/store.h"
#include "core/doc/value.h"
#include "check.h"
#include "server.h"
#include "store_contract.h"

static pid_t emu_pid;
static char emu_host[64];
static char emu_log[64];
static al_http *admin;

/* ---- the emulator ---------------------------------------------------------------------- */

/* scripts/firestore-emulator ($FIRESTORE_EMULATOR_BIN overrides) on a free port. */
static int start_emulator(void)
{
	const char *env = getenv("FIRESTORE_EMULATOR_BIN");
	char script[PATH_MAX];

	if (env && *env)
		snprintf(script, sizeof(script), "%s", env);
	else if (test_find_source(script, sizeof(script), "scripts/firestore-emulator"))
		return 77;
	if (!test_have_node())
		return 77;
	snprintf(emu_log, sizeof(emu_log), "/tmp/al-test-firestore-%d.log", (int)getpid());
	emu_pid = test_start_server(emu_host, sizeof(emu_host), emu_log,
		"firestore-emulator listening on ", (char *[]){"node", script, "--port", "0", NULL});
	return emu_pid > 0 ? 0 : -1;
}

static void stop_emulator(void)
{
	test_stop_server(&emu_pid);
	if (*emu_log)
		unlink(emu_log);
}

/* An admin call (never faulted); returns the parsed answer (caller frees) or NULL. */
static cJSON *emu_admin(const char *method, const char *path, const char *body)
{
	al_http_response r = AL_HTTP_RESPONSE_INIT;
	char url[256];
	cJSON *j = NULL;
	const char *hdrs[] = {"Content-Type: application/json", NULL};

	snprintf(url, sizeof(url), "http://%s%s", emu_host, path);
	if (al_http_request(&r, admin, method, url, hdrs, body, body ? strlen(body) : 0,
	    AL_HTTP_IDEMPOTENT) == 0 && r.status == 200)
		j = cJSON_Parse(r.body.ptr);
	else
		fprintf(stderr, "admin %s %s failed: %ld %s\n", method, path, r.status,
			al_error_last());
	al_http_response_dispose(&r);
	return j;
}

static void faults(const char *json)
{
	cJSON_Delete(emu_admin("POST", "/admin/faults", json));
}

/* A counter from GET /admin/stats: "requests", "faults.failed", "rpcs.commit"... */
static long stat(const char *name)
{
	cJSON *j = emu_admin("GET", "/admin/stats", NULL), *v = j;
	char key[64];
	long n = -1;
	snprintf(key, sizeof(key), "%s", name);
	for (char *k = strtok(key, "."); k && v; k = strtok(NULL, "."))
		v = cJSON_GetObjectItemCaseSensitive(v, k);
	if (cJSON_IsNumber(v))
		n = (long)v->valuedouble;
	cJSON_Delete(j);
	return n;
}

/* ---- the behaviours of test_store.c ---------------------------------------------------- */

static void test_open_errors(void)
{
	al_store_backend *b = (al_store_backend *)1;
	al_firestore_options o = AL_FIRESTORE_OPTIONS_INIT;

	/* Without the emulator, Google's credentials are needed: none here, one clear line. */
	unsetenv("FIRESTORE_EMULATOR_HOST");
	unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
	setenv("CLOUDSDK_CONFIG", "/nonexistent/al-test-gcloud", 1);
	setenv("NO_GCE_CHECK", "True", 1);
	CHECK(al_store_open(&b, "firestore:my-project") == AL_ENOTFOUND);
	CHECK(b == NULL);
	CHECK(strstr(al_error_last(), "set GOOGLE_APPLICATION_CREDENTIALS") != NULL);
	setenv("FIRESTORE_EMULATOR_HOST", emu_host, 1);
	CHECK_EQ_INT(al_store_open(&b, "firestore:"), AL_EINVAL);
	CHECK(strstr(al_error_last(), "names no project") != NULL);
	CHECK_EQ_INT(al_store_open(&b, "firestore:a/b"), AL_EINVAL);
	CHECK(strstr(al_error_last(), "invalid Firestore project id 'a/b'") != NULL);
	CHECK_EQ_INT(al_store_open(&b, "firestore:a?b"), AL_EINVAL);
	setenv("FIRESTORE_EMULATOR_HOST", "host/with/path", 1);
	CHECK_EQ_INT(al_store_open(&b, "firestore:p"), AL_EINVAL);
	CHECK(strstr(al_error_last(), "FIRESTORE_EMULATOR_HOST") != NULL);
	setenv("FIRESTORE_EMULATOR_HOST", emu_host, 1);
	CHECK(b == NULL);

	CHECK_EQ_INT(al_store_firestore_new(&b, NULL), AL_EINVAL);
	o.project = "p";
	CHECK_EQ_INT(al_store_firestore_new(&b, &o), AL_EINVAL); /* no token, no emulator */
	CHECK(strstr(al_error_last(), "no Google credentials") != NULL);
	o.version = 7;
	o.emulator_host = emu_host;
	CHECK_EQ_INT(al_store_firestore_new(&b, &o), AL_EINVAL);
	CHECK(b == NULL);
}

/* Ids Firestore refuses come back as AL_EINVAL from the server. */
static void test_refused_ids(al_store_backend *b)
{
	al_doc *d = NULL;
	CHECK_EQ_INT(put(b, "projects/__reserved__", "n", 1, AL_PRE_NONE), AL_EINVAL);
	CHECK_EQ_INT(al_store_get(&d, b, "projects/.."), AL_EINVAL);
}

/* ---- Firestore specifics ---------------------------------------------------------------- */

/* More documents than one runQuery page (300), and ranges across the page boundary. */
static void test_paging(al_store_backend *b)
{
	enum { N = 700 };
	al_write *w = calloc(N, sizeof(*w));
	char (*paths)[32] = calloc(N, sizeof(*paths));
	cJSON *f = fields_int("k", 1);
	al_doc_list *l = NULL;
	long queries;

	for (int i = 0; i < N; i++) {
		snprintf(paths[i], sizeof(paths[i]), "paged/%04d", N - 1 - i); /* reverse order */
		w[i] = (al_write){AL_WRITE_SET, paths[i], f, AL_PRE_MISSING, NULL};
	}
	CHECK_OK(al_store_commit(b, w, N));
	queries = stat("rpcs.runQuery");
	CHECK_OK(al_store_list(&l, b, "paged", NULL, NULL));
	CHECK_EQ_INT(stat("rpcs.runQuery") - queries, 3);
	CHECK_EQ_INT(l ? l->count : 0, N);
	for (size_t i = 0; l && i < l->count; i++) {
		char want[32];
		snprintf(want, sizeof(want), "%04zu", i);
		if (strcmp(al_doc_id(l->docs[i]->path), want) != 0) {
			CHECK_EQ_STR(al_doc_id(l->docs[i]->path), want);
			break;
		}
	}
	al_doc_list_free(l);
	/* a range reads only the range: 400 documents, two pages */
	queries = stat("rpcs.runQuery");
	CHECK_OK(al_store_list(&l, b, "paged", "0100", "0500"));
	CHECK_EQ_INT(stat("rpcs.runQuery") - queries, 2);
	CHECK_EQ_INT(l ? l->count : 0, 400);
	if (l && l->count == 400) {
		CHECK_EQ_STR(al_doc_id(l->docs[0]->path), "0100");
		CHECK_EQ_STR(al_doc_id(l->docs[399]->path), "0499");
	}
	al_doc_list_free(l);
	cJSON_Delete(f);
	free(w);
	free(paths);
}

/* list_group: one collection id at any depth below a document only, by path, paged. */
static void test_group(al_store_backend *b)
{
	static const char *want[] = {"g/e/runs/1/metrics/a", "g/e/runs/1/metrics/a/metrics/z",
		"g/e/runs/1/metrics/b", "g/e/runs/2/metrics/a%2Fb"};
	static const char *others[] = {"g/e/runs/1", "g/e/runs/2", "g/e/artifacts/a",
		"g/e/runs/1/metrics/a/chunks/0", "g/e/runs/1/artifacts/metrics", "g/other/runs/1/metrics/a",
		"g/e2/runs/1/metrics/a", "g/e/runs/1/metricsx/a"};
	enum { RUNS = 325 };
	al_write w[2 * RUNS];
	char (*paths)[48] = calloc(2 * RUNS, sizeof(*paths));
	cJSON *f = fields_int("k", 1);
	al_doc_list *l = NULL;
	long queries;
	size_t i;

	CHECK(b->list_group != NULL);
	if (!b->list_group)
		goto cleanup;
	for (i = 0; i < sizeof(want) / sizeof(*want); i++)
		CHECK_OK(put(b, want[i], "k", (int64_t)i, AL_PRE_NONE));
	for (i = 0; i < sizeof(others) / sizeof(*others); i++)
		CHECK_OK(put(b, others[i], "k", 1, AL_PRE_NONE));
	CHECK_OK(b->list_group(&l, b, "g/e", "metrics"));
	CHECK_EQ_INT(l ? l->count : 0, 4);
	for (i = 0; l && i < l->count && i < 4; i++) {
		CHECK_EQ_STR(l->docs[i]->path, want[i]);
		CHECK_EQ_INT(get_int(b, want[i], "k"), (int64_t)i);
	}
	if (l && l->count > 0) {
		int64_t k = -1;
		CHECK_OK(al_fields_get_int(&k, l->docs[0]->fields, "k"));
		CHECK_EQ_INT(k, 0);
		CHECK(l->docs[0]->update_us > 0);
	}
	al_doc_list_free(l);
	l = NULL;
	/* nothing of that name: an empty list */
	CHECK_OK(b->list_group(&l, b, "g/e", "nothing"));
	CHECK_EQ_INT(l ? (int)l->count : -1, 0);
	al_doc_list_free(l);
	l = NULL;
	/* bad input */
	CHECK_EQ_INT(b->list_group(&l, b, "g", "metrics"), AL_EINVAL);
	CHECK(l == NULL);
	CHECK_EQ_INT(b->list_group(&l, b, "g/e", "a/b"), AL_EINVAL);
	CHECK_EQ_INT(b->list_group(&l, b, "g/e", ""), AL_EINVAL);
	CHECK_EQ_INT(b->list_group(&l, b, "", "metrics"), AL_EINVAL);

	/* 650 documents under 325 runs: three pages of 300, none lost or repeated at the seams */
	for (i = 0; i < 2 * RUNS; i++) {
		snprintf(paths[i], sizeof(paths[i]), "gp/e/runs/r%03zu/metrics/m%zu", i / 2, i % 2);
		w[i] = (al_write){AL_WRITE_SET, paths[i], f, AL_PRE_NONE, NULL};
	}
	CHECK_OK(al_store_commit(b, w, 2 * RUNS));
	queries = stat("rpcs.runQuery");
	CHECK_OK(b->list_group(&l, b, "gp/e", "metrics"));
	CHECK_EQ_INT(stat("rpcs.runQuery") - queries, 3);
	CHECK_EQ_INT(l ? l->count : 0, 2 * RUNS);
	for (i = 0; l && i < l->count && i < 2 * RUNS; i++)
		if (strcmp(l->docs[i]->path, paths[i]) != 0) {
			CHECK_EQ_STR(l->docs[i]->path, paths[i]);
			break;
		}
	al_doc_list_free(l);
cleanup:
	cJSON_Delete(f);
	free(paths);
}

/* Ids with characters that need percent-encoding in URLs; field names that need backticks. */
static void test_encoding(al_store_backend *b)
{
	const char *ids[] = {"a b", "x:y", "q?x#y", "50%", "a%252F", "(default)", "日本", "+&=;"};
	char path[128];
	al_doc *d = NULL;
	al_doc_list *l = NULL;

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		snprintf(path, sizeof(path), "enc/%s/sub/%s", ids[i], ids[i]);
		CHECK_OK(put(b, path, "i", (int64_t)i, AL_PRE_MISSING));
		CHECK_EQ_INT(get_int(b, path, "i"), (int64_t)i);
		snprintf(path, sizeof(path), "enc/%s/sub", ids[i]);
		CHECK_OK(al_store_list(&l, b, path, ids[i], NULL));
		CHECK_EQ_INT(l ? l->count : 0, 1);
		al_doc_list_free(l);
	}
	/* list_collections under a document whose id needs encoding */
	char **cols = NULL;
	size_t n = 0;
	CHECK_OK(al_store_list_collections(&cols, &n, b, "enc/x:y"));
	CHECK_EQ_INT(n, 1);
	al_strings_free(cols, n);

	cJSON *f = cJSON_CreateObject();
	al_fields_set(f, "plain_1", al_value_int(1));
	al_fields_set(f, "keep", al_value_int(2));
	CHECK_OK(put(b, "enc/fields", "keep", 2, AL_PRE_NONE));
	cJSON_Delete(f);
	f = cJSON_CreateObject();
	al_fields_set(f, "val/loss", al_value_double(0.25));
	al_fields_set(f, "a.b", al_value_int(3));
	al_fields_set(f, "1x", al_value_int(4));
	al_fields_set(f, "we`ird\\", al_value_string("w"));
	al_fields_set(f, "m", al_value_map(fields_int("inner", 5)));
	al_write w = {AL_WRITE_UPDATE, "enc/fields", f, AL_PRE_EXISTS, NULL};
	CHECK_OK(al_store_commit(b, &w, 1));
	CHECK_OK(al_store_get(&d, b, "enc/fields"));
	if (d) {
		double x = 0;
		int64_t v = 0;
		CHECK_EQ_INT(cJSON_GetArraySize(d->fields), 6);
		CHECK_OK(al_fields_get_double(&x, d->fields, "val/loss"));
		CHECK(x == 0.25);
		CHECK_OK(al_fields_get_int(&v, d->fields, "a.b"));
		CHECK_EQ_INT(v, 3);
		CHECK_OK(al_fields_get_int(&v, d->fields, "keep"));
		CHECK_EQ_INT(v, 2);
		CHECK_EQ_STR(al_fields_get_string(d->fields, "we`ird\\"), "w");
		CHECK(al_fields_get(d->fields, "a") == NULL); /* "a.b" is one field, not a.b */
	}
	al_doc_free(d);
	d = NULL;
	/* an update replaces a map field whole (top-level merge, as SQLite) */
	cJSON_Delete(f);
	f = cJSON_CreateObject();
	al_fields_set(f, "m", al_value_map(fields_int("other", 6)));
	w.fields = f;
	CHECK_OK(al_store_commit(b, &w, 1));
	CHECK_OK(al_store_get(&d, b, "enc/fields"));
	if (d) {
		const cJSON *m = al_value_get_map(al_fields_get(d->fields, "m"));
		CHECK(m && cJSON_GetArraySize(m) == 1 && al_fields_get(m, "other"));
	}
	al_doc_free(d);
	cJSON_Delete(f);
}

/* Injected faults: retries where safe, errors where not, bounded outages. */
static void test_faults(void)
{
	al_http_options ho = AL_HTTP_OPTIONS_INIT;
	al_firestore_options o = AL_FIRESTORE_OPTIONS_INIT;
	al_store_backend *b = NULL;
	al_doc *d = NULL;
	al_doc_list *l = NULL;
	long commits;

	ho.max_tries = 4;
	ho.backoff_ms = 10;
	ho.backoff_max_ms = 40;
	ho.timeout_ms = 400;
	o.project = "faulty";
	o.emulator_host = emu_host;
	o.http = &ho;
	CHECK_OK(al_store_firestore_new(&b, &o));
	if (!b)
		return;
	CHECK_OK(put(b, "f/base", "v", 1, AL_PRE_NONE));
	cJSON_Delete(emu_admin("POST", "/admin/stats/reset", NULL));

	/* 503 twice on a plain (non-idempotent) commit: retried, applied once */
	faults("{\"fail\":{\"status\":503,\"count\":2,\"path_regex\":\":commit$\"}}");
	CHECK_OK(put(b, "f/a", "v", 2, AL_PRE_NONE));
	CHECK_EQ_INT(stat("faults.failed"), 2);
	CHECK_EQ_INT(stat("rpcs.commit"), 1);
	CHECK_EQ_INT(get_int(b, "f/a", "v"), 2);
	/* 429 on reads and listings */
	faults("{\"fail\":{\"status\":429,\"count\":3}}");
	CHECK_EQ_INT(get_int(b, "f/a", "v"), 2);
	CHECK_EQ_INT(stat("faults.failed"), 5);
	faults("{\"fail\":{\"status\":503,\"count\":1}}");
	CHECK_OK(al_store_list(&l, b, "f", NULL, NULL));
	CHECK_EQ_INT(l ? l->count : 0, 2);
	al_doc_list_free(l);

	/* 500 on a plain commit: not retried, so an error, and nothing written */
	commits = stat("rpcs.commit");
	faults("{\"fail\":{\"status\":500,\"count\":1,\"path_regex\":\":commit$\"}}");
	CHECK_EQ_INT(put(b, "f/b", "v", 3, AL_PRE_NONE), AL_EIO);
	CHECK(strstr(al_error_last(), "HTTP 500 after 1 try") != NULL);
	CHECK(strstr(al_error_last(), ":commit") != NULL);
	CHECK_EQ_INT(stat("rpcs.commit"), commits);
	CHECK_EQ_INT(al_store_get(&d, b, "f/b"), AL_ENOTFOUND);
	/* a create-only commit is idempotent: retried */
	faults("{\"fail\":{\"status\":500,\"count\":1,\"path_regex\":\":commit$\"}}");
	CHECK_OK(put(b, "f/b", "v", 3, AL_PRE_MISSING));
	CHECK_EQ_INT(get_int(b, "f/b", "v"), 3);

	/* connection reset before an answer: reads retried, plain commits not */
	faults("{\"reset\":1}");
	CHECK_EQ_INT(get_int(b, "f/b", "v"), 3);
	faults("{\"reset\":1}");
	CHECK_EQ_INT(put(b, "f/c", "v", 4, AL_PRE_NONE), AL_EIO);
	CHECK(strstr(al_error_last(), "not retried") != NULL);
	/* half a body: retried */
	faults("{\"truncate\":1}");
	CHECK_EQ_INT(get_int(b, "f/b", "v"), 3);

	/* a timeout: the server still applies the commit later, which is why it is not retried */
	faults("{\"latency_ms\":700}");
	commits = stat("requests");
	CHECK_EQ_INT(put(b, "f/late", "v", 5, AL_PRE_NONE), AL_EIO);
	CHECK(strstr(al_error_last(), "timed out") != NULL);
	CHECK_EQ_INT(stat("requests") - commits, 1);
	faults("{\"latency_ms\":0}");
	usleep(800000);
	CHECK_EQ_INT(get_int(b, "f/late", "v"), 5);

	/* an outage: AL_EIO after the retries, for every call */
	faults("{\"outage\":true}");
	commits = stat("requests");
	CHECK_EQ_INT(al_store_get(&d, b, "f/a"), AL_EIO);
	CHECK(strstr(al_error_last(), "after 4 tries") != NULL);
	CHECK(strstr(al_error_last(), "/v1/projects/faulty/databases/(default)/documents/f/a") != NULL);
	/* (curl itself re-sends an idempotent request once when a kept connection died) */
	CHECK(stat("requests") - commits >= 4 && stat("requests") - commits <= 8);
	CHECK_EQ_INT(al_store_list(&l, b, "f", NULL, NULL), AL_EIO);
	char **cols = NULL;
	size_t n = 0;
	CHECK_EQ_INT(al_store_list_collections(&cols, &n, b, NULL), AL_EIO);
	commits = stat("requests");
	CHECK_EQ_INT(put(b, "f/d", "v", 1, AL_PRE_NONE), AL_EIO);
	CHECK_EQ_INT(stat("requests") - commits, 1);
	faults("{\"outage\":false}");
	CHECK_EQ_INT(get_int(b, "f/a", "v"), 2);

	char *desc = al_store_describe(b);
	CHECK(desc && strstr(desc, "endpoint: http://127.0.0.1:") && strstr(desc, "(emulator)"));
	CHECK(desc && strstr(desc, "retries: ") && !strstr(desc, "retries: 0\n"));
	free(desc);
	faults("{\"clear\":true}");
	al_store_free(b);
}

/* batchGet: found and missing documents matched back to their paths, more than one request's
 * worth, bad paths refused. */
static void test_get_many(al_store_backend *b)
{
	const char *paths[250];
	char bufs[250][32];
	al_doc *docs[250];
	long before;
	int i;

	for (i = 0; i < 250; i++) {
		snprintf(bufs[i], sizeof(bufs[i]), "gm/d%03d", i);
		paths[i] = bufs[i];
		if (i % 3 == 0)
			CHECK_OK(put(b, bufs[i], "v", i, AL_PRE_NONE));
	}
	/* A first call on a connection the emulator may just have closed can be sent twice by curl
	 * (an idempotent request on a dead kept-alive connection); counted from the second call. */
	CHECK_OK(al_store_get_many(docs, b, paths, 1));
	al_doc_free(docs[0]);
	before = stat("rpcs.batchGet");
	CHECK_OK(al_store_get_many(docs, b, paths, 250));
	CHECK_EQ_INT(stat("rpcs.batchGet") - before, 3);   /* 100 names a request */
	for (i = 0; i < 250; i++) {
		int64_t v = -1;
		if (i % 3 == 0) {
			CHECK(docs[i] != NULL);
			if (docs[i]) {
				CHECK_EQ_STR(docs[i]->path, paths[i]);
				CHECK_OK(al_fields_get_int(&v, docs[i]->fields, "v"));
				CHECK_EQ_INT(v, i);
			}
		} else
			CHECK(docs[i] == NULL);
		al_doc_free(docs[i]);
	}
	paths[1] = "not/a/document/path/x";
	CHECK_EQ_INT(al_store_get_many(docs, b, paths, 3), AL_EINVAL);
	CHECK(docs[0] == NULL);
}

/* Real tokens against a non-Google endpoint: a refused token (401) is reported and a fresh one
 * retried once; a server that refuses every token gives AL_EACCES without looping. */
static int tokens_issued, tokens_rejected;
static char rejected[32];

static int test_token(char **out, void *ctx)
{
	(void)ctx;
	return asprintf(out, "tok-%d", ++tokens_issued) < 0 ? AL_ENOMEM : 0;
}

static void test_token_reject(void *ctx, const char *token)
{
	(void)ctx;
	tokens_rejected++;
	snprintf(rejected, sizeof(rejected), "%s", token);
}

static void test_unauthenticated(void)
{
	al_firestore_options o = AL_FIRESTORE_OPTIONS_INIT;
	al_store_backend *b = NULL;
	al_doc *d = NULL;
	char endpoint[128];

	snprintf(endpoint, sizeof(endpoint), "http://%s", emu_host);
	o.project = "auth";
	o.endpoint = endpoint;
	o.token = test_token;
	o.token_reject = test_token_reject;
	o.emulator_host = emu_host;
	CHECK_EQ_INT(al_store_firestore_new(&b, &o), AL_EINVAL);   /* one or the other */
	o.emulator_host = NULL;
	CHECK_OK(al_store_firestore_new(&b, &o));
	if (!b)
		return;
	CHECK_OK(put(b, "a/x", "v", 1, AL_PRE_NONE));
	CHECK_EQ_INT(tokens_issued, 1);
	CHECK_EQ_INT(tokens_rejected, 0);
	faults("{\"fail\":{\"status\":401,\"count\":1}}");
	CHECK_EQ_INT(get_int(b, "a/x", "v"), 1);
	CHECK_EQ_INT(tokens_rejected, 1);
	CHECK_EQ_STR(rejected, "tok-2");
	CHECK_EQ_INT(tokens_issued, 3);
	/* also for a plain commit: a refused request was not processed */
	faults("{\"fail\":{\"status\":401,\"count\":1,\"path_regex\":\":commit$\"}}");
	CHECK_OK(put(b, "a/y", "v", 2, AL_PRE_NONE));
	CHECK_EQ_INT(tokens_rejected, 2);
	faults("{\"fail\":{\"status\":401,\"count\":100}}");
	CHECK_EQ_INT(al_store_get(&d, b, "a/x"), AL_EACCES);
	CHECK_EQ_INT(tokens_rejected, 3);   /* one retry, not a loop */
	CHECK(strstr(al_error_last(), "tok-") == NULL);   /* tokens never in messages */
	faults("{\"fail\":null}");
	al_store_free(b);
}

int main(void)
{
	al_store_backend *b = NULL;
	int rc = start_emulator();

	if (rc == 77) {
		fprintf(stderr, "node or scripts/firestore-emulator missing: skipped\n");
		return 77;
	}
	atexit(stop_emulator);
	CHECK_EQ_INT(rc, 0);
	CHECK_OK(al_http_new(&admin, NULL));
	if (rc || !admin)
		CHECK_DONE();

	test_open_errors();
	CHECK_OK(al_store_open(&b, "firestore:test-project"));
	if (!b)
		CHECK_DONE();
	contract_basic(b, "firestore", 1000000);   /* the emulator's clock, within 1 s */
	test_refused_ids(b);
	contract_atomic(b);
	contract_mask(b);
	contract_list(b);
	contract_race(b);
	test_paging(b);
	test_group(b);
	test_encoding(b);
	test_get_many(b);

	char *desc = al_store_describe(b);
	char expect[256];
	snprintf(expect, sizeof(expect), "backend: firestore\nstore: firestore:test-project\n"
		"database: (default)\nendpoint: http://%s (emulator)\n", emu_host);
	CHECK(desc && strncmp(desc, expect, strlen(expect)) == 0);
	if (desc && strncmp(desc, expect, strlen(expect)) != 0)
		fprintf(stderr, "describe: %s", desc);
	free(desc);

	/* a second store on the same project sees the data */
	al_store_backend *b2 = NULL;
	CHECK_OK(al_store_open(&b2, "firestore:test-project"));
	if (b2)
		CHECK_EQ_INT(get_int(b2, "projects/p", "only"), 7);
	al_store_free(b2);
	/* another project is another database */
	CHECK_OK(al_store_open(&b2, "firestore:other-project"));
	if (b2)
		CHECK_EQ_INT(get_int(b2, "projects/p", "only"), -999);
	al_store_free(b2);
	al_store_free(b);
	al_store_free(NULL);

	test_faults();
	test_unauthenticated();
	al_http_free(admin);
	CHECK_DONE();
}
