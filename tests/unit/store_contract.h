/* aletheia unit tests: what every metastore backend must do (store.h), run by test_store.c on
 * SQLite and by test_firestore.c on the Firestore emulator. */
#ifndef AL_TEST_STORE_CONTRACT_H
#define AL_TEST_STORE_CONTRACT_H

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/store/store.h"
#include "core/doc/value.h"
#include "check.h"

static cJSON *fields_int(const char *name, int64_t v)
{
	cJSON *f = cJSON_CreateObject();
	al_fields_set(f, name, al_value_int(v));
	return f;
}

static int put(al_store_backend *b, const char *path, const char *name, int64_t v,
	al_precondition pre)
{
	cJSON *f = fields_int(name, v);
	al_write w = {AL_WRITE_SET, path, f, pre, NULL};
	int rc = al_store_commit(b, &w, 1);
	cJSON_Delete(f);
	return rc;
}

/* The int field name of document path, or -999 if absent/missing. */
static int64_t get_int(al_store_backend *b, const char *path, const char *name)
{
	al_doc *d = NULL;
	int64_t v = -999;
	if (al_store_get(&d, b, path) == 0 && al_fields_get_int(&v, d->fields, name) != 0)
		v = -999;
	al_doc_free(d);
	return v;
}

/* Documents: set, update, delete, preconditions, times, invalid input. name: the backend's
 * name; slack_us: how far the backend's clock may be behind ours (a server's). */
static void contract_basic(al_store_backend *b, const char *name, int64_t slack_us)
{
	al_doc *d = NULL;
	cJSON *f;
	int64_t t0 = al_now_us() - slack_us, created;

	CHECK_EQ_INT(b->version, AL_STORE_BACKEND_VERSION);
	CHECK_EQ_STR(b->name, name);
	CHECK_EQ_INT(al_store_get(&d, b, "projects/p"), AL_ENOTFOUND);
	CHECK(d == NULL);
	CHECK(strstr(al_error_last(), "projects/p") != NULL);

	/* set */
	f = cJSON_CreateObject();
	al_fields_set(f, "name", al_value_string("p"));
	al_fields_set(f, "n", al_value_int(1));
	al_fields_set(f, "x", al_value_double(NAN));
	al_fields_set(f, "t", al_value_time(1700000000123456));
	al_write w = {AL_WRITE_SET, "projects/p", f, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(b, &w, 1));
	cJSON_Delete(f);
	CHECK_OK(al_store_get(&d, b, "projects/p"));
	CHECK(d && d->path && strcmp(d->path, "projects/p") == 0);
	if (!d)
		return;
	CHECK_EQ_STR(al_fields_get_string(d->fields, "name"), "p");
	double x = 0;
	int64_t t = 0;
	CHECK_OK(al_fields_get_double(&x, d->fields, "x"));
	CHECK(x != x);
	CHECK_OK(al_fields_get_time(&t, d->fields, "t"));
	CHECK_EQ_INT(t, 1700000000123456);
	CHECK(d->create_us >= t0 && d->create_us == d->update_us);
	CHECK(d->create_us < al_now_us() + slack_us + 1);
	created = d->create_us;
	al_doc_free(d);
	d = NULL;

	/* update merges top-level fields, keeps created, bumps updated */
	usleep(2000);
	f = cJSON_CreateObject();
	al_fields_set(f, "n", al_value_int(2));
	al_fields_set(f, "extra", al_value_bool(1));
	w = (al_write){AL_WRITE_UPDATE, "projects/p", f, AL_PRE_EXISTS, NULL};
	CHECK_OK(al_store_commit(b, &w, 1));
	cJSON_Delete(f);
	CHECK_OK(al_store_get(&d, b, "projects/p"));
	if (!d)
		return;
	CHECK_EQ_STR(al_fields_get_string(d->fields, "name"), "p");
	CHECK_EQ_INT(get_int(b, "projects/p", "n"), 2);
	CHECK(al_fields_get(d->fields, "extra") != NULL);
	CHECK_EQ_INT(d->create_us, created);
	CHECK(d->update_us > created);
	al_doc_free(d);
	d = NULL;

	/* set replaces every field and keeps created */
	CHECK_OK(put(b, "projects/p", "only", 7, AL_PRE_EXISTS));
	CHECK_OK(al_store_get(&d, b, "projects/p"));
	if (!d)
		return;
	CHECK_EQ_INT(cJSON_GetArraySize(d->fields), 1);
	CHECK_EQ_INT(d->create_us, created);
	al_doc_free(d);
	d = NULL;

	/* update of a missing doc creates it, unless it must exist */
	f = fields_int("u", 1);
	w = (al_write){AL_WRITE_UPDATE, "projects/q", f, AL_PRE_EXISTS, NULL};
	CHECK_EQ_INT(al_store_commit(b, &w, 1), AL_ENOTFOUND);
	CHECK(strstr(al_error_last(), "projects/q") != NULL);
	w.pre = AL_PRE_NONE;
	CHECK_OK(al_store_commit(b, &w, 1));
	CHECK_EQ_INT(get_int(b, "projects/q", "u"), 1);
	cJSON_Delete(f);

	/* preconditions */
	CHECK_EQ_INT(put(b, "projects/q", "u", 2, AL_PRE_MISSING), AL_EEXISTS);
	CHECK(strstr(al_error_last(), "projects/q already exists") != NULL);
	CHECK_EQ_INT(get_int(b, "projects/q", "u"), 1);

	/* delete */
	w = (al_write){AL_WRITE_DELETE, "projects/q", NULL, AL_PRE_EXISTS, NULL};
	CHECK_OK(al_store_commit(b, &w, 1));
	CHECK_EQ_INT(al_store_get(&d, b, "projects/q"), AL_ENOTFOUND);
	CHECK_EQ_INT(al_store_commit(b, &w, 1), AL_ENOTFOUND);
	CHECK(strstr(al_error_last(), "projects/q not found") != NULL);
	w.pre = AL_PRE_NONE;
	CHECK_OK(al_store_commit(b, &w, 1)); /* deleting a missing doc is fine without precondition */
	CHECK_OK(al_store_commit(b, NULL, 0));

	/* invalid paths and values */
	const char *bad_paths[] = {"", "projects", "projects/", "/projects/p", "projects//p",
		"projects/p/runs", "a/b/c/d/", NULL};
	for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
		CHECK_EQ_INT(put(b, bad_paths[i], "n", 1, AL_PRE_NONE), AL_EINVAL);
		CHECK_EQ_INT(al_store_get(&d, b, bad_paths[i]), AL_EINVAL);
	}
	f = cJSON_Parse("{\"plain\":3}");
	w = (al_write){AL_WRITE_SET, "projects/bad", f, AL_PRE_NONE, NULL};
	CHECK_EQ_INT(al_store_commit(b, &w, 1), AL_EINVAL);
	cJSON_Delete(f);
	f = cJSON_Parse("{\"m\":{\"mapValue\":{\"fields\":{\"x\":{\"doubleValue\":true}}}}}");
	w.fields = f;
	CHECK_EQ_INT(al_store_commit(b, &w, 1), AL_EINVAL);
	cJSON_Delete(f);
	CHECK_EQ_INT(al_store_get(&d, b, "projects/bad"), AL_ENOTFOUND);
	al_doc_list *l = NULL;
	CHECK_EQ_INT(al_store_list(&l, b, "projects/p", NULL, NULL), AL_EINVAL);
	CHECK_EQ_INT(al_store_list(&l, b, "", NULL, NULL), AL_EINVAL);
	char **ids = NULL;
	size_t n = 0;
	CHECK_EQ_INT(al_store_list_collections(&ids, &n, b, "projects"), AL_EINVAL);
}

/* All writes of a commit or none. */
static void contract_atomic(al_store_backend *b)
{
	cJSON *f1 = fields_int("v", 1), *f2 = fields_int("v", 2);
	al_doc *d = NULL;

	CHECK_OK(put(b, "atomic/existing", "v", 100, AL_PRE_NONE));
	CHECK_OK(put(b, "atomic/gone", "v", 100, AL_PRE_NONE));
	al_write batch[] = {
		{AL_WRITE_SET, "atomic/new1", f1, AL_PRE_NONE, NULL},
		{AL_WRITE_UPDATE, "atomic/existing", f1, AL_PRE_NONE, NULL},
		{AL_WRITE_DELETE, "atomic/gone", NULL, AL_PRE_NONE, NULL},
		{AL_WRITE_SET, "atomic/existing", f2, AL_PRE_MISSING, NULL}, /* fails */
		{AL_WRITE_SET, "atomic/new2", f2, AL_PRE_NONE, NULL},
	};
	CHECK_EQ_INT(al_store_commit(b, batch, 5), AL_EEXISTS);
	CHECK(strstr(al_error_last(), "atomic/existing") != NULL);
	CHECK_EQ_INT(al_store_get(&d, b, "atomic/new1"), AL_ENOTFOUND);
	CHECK_EQ_INT(al_store_get(&d, b, "atomic/new2"), AL_ENOTFOUND);
	CHECK_EQ_INT(get_int(b, "atomic/existing", "v"), 100);
	CHECK_EQ_INT(get_int(b, "atomic/gone", "v"), 100);

	/* a bad path late in a batch also writes nothing */
	batch[3] = (al_write){AL_WRITE_SET, "atomic", f2, AL_PRE_NONE, NULL};
	CHECK_EQ_INT(al_store_commit(b, batch, 5), AL_EINVAL);
	CHECK_EQ_INT(al_store_get(&d, b, "atomic/new1"), AL_ENOTFOUND);

	/* two create-only writes, the second failing: the message names the right one */
	al_write two[] = {
		{AL_WRITE_SET, "atomic/fresh", f1, AL_PRE_MISSING, NULL},
		{AL_WRITE_SET, "atomic/gone", f1, AL_PRE_MISSING, NULL},
	};
	CHECK_EQ_INT(al_store_commit(b, two, 2), AL_EEXISTS);
	CHECK_EQ_STR(al_error_last(), "document atomic/gone already exists");
	CHECK_EQ_INT(al_store_get(&d, b, "atomic/fresh"), AL_ENOTFOUND);

	/* the same batch without the failure applies in order */
	batch[3] = (al_write){AL_WRITE_SET, "atomic/gone", f2, AL_PRE_MISSING, NULL}; /* deleted above */
	CHECK_OK(al_store_commit(b, batch, 5));
	CHECK_EQ_INT(get_int(b, "atomic/new1", "v"), 1);
	CHECK_EQ_INT(get_int(b, "atomic/existing", "v"), 1);
	CHECK_EQ_INT(get_int(b, "atomic/gone", "v"), 2);
	CHECK_EQ_INT(get_int(b, "atomic/new2", "v"), 2);
	cJSON_Delete(f1);
	cJSON_Delete(f2);
}

/* A map field's key in document path as an int, -999 when absent (or the field not a map). */
static int64_t get_key(al_store_backend *b, const char *path, const char *field, const char *key)
{
	al_doc *d = NULL;
	int64_t v = -999;
	if (al_store_get(&d, b, path) == 0 &&
	    al_fields_get_int(&v, al_value_get_map(al_fields_get(d->fields, field)), key) != 0)
		v = -999;
	al_doc_free(d);
	return v;
}

/* Updates with a mask (field paths into a map, Firestore's updateMask): only the named keys
 * change, so two writers of other keys of one map (two mounts) both keep theirs. */
static void contract_mask(al_store_backend *b)
{
	cJSON *f = cJSON_Parse("{\"hp\":{\"mapValue\":{\"fields\":{\"a\":{\"integerValue\":\"1\"},"
		"\"b\":{\"integerValue\":\"2\"}}}},\"s\":{\"stringValue\":\"x\"},"
		"\"n\":{\"integerValue\":\"5\"}}");
	cJSON *mask = cJSON_CreateArray(), *inner = cJSON_CreateObject(), *g = cJSON_CreateObject();
	al_write w = {AL_WRITE_SET, "projects/m", f, AL_PRE_NONE, NULL};
	al_doc *d = NULL;

	CHECK_OK(al_store_commit(b, &w, 1));
	/* one writer sets opt/beta1 and c, deletes a, sets the key of a field that is no map (it
	 * becomes one) and deletes the top-level n */
	al_fields_set(inner, "opt/beta1", al_value_int(9));
	al_fields_set(inner, "c", al_value_int(3));
	al_fields_set(g, "hp", al_value_map(inner));
	inner = cJSON_CreateObject();
	al_fields_set(inner, "k.`x`", al_value_int(4));
	al_fields_set(g, "s", al_value_map(inner));
	CHECK_OK(al_mask_add(mask, "hp", "opt/beta1"));
	CHECK_OK(al_mask_add(mask, "hp", "c"));
	CHECK_OK(al_mask_add(mask, "hp", "a"));
	CHECK_OK(al_mask_add(mask, "s", "k.`x`"));
	CHECK_OK(al_mask_add(mask, "n", NULL));
	w = (al_write){AL_WRITE_UPDATE, "projects/m", g, AL_PRE_EXISTS, mask};
	CHECK_OK(al_store_commit(b, &w, 1));
	CHECK_EQ_INT(get_key(b, "projects/m", "hp", "opt/beta1"), 9);
	CHECK_EQ_INT(get_key(b, "projects/m", "hp", "c"), 3);
	CHECK_EQ_INT(get_key(b, "projects/m", "hp", "b"), 2);          /* not named: kept */
	CHECK_EQ_INT(get_key(b, "projects/m", "hp", "a"), -999);       /* named without a value */
	CHECK_EQ_INT(get_key(b, "projects/m", "s", "k.`x`"), 4);
	CHECK_EQ_INT(get_int(b, "projects/m", "n"), -999);
	if (al_store_get(&d, b, "projects/m") == 0) {
		CHECK_EQ_INT(cJSON_GetArraySize(d->fields), 2);
		CHECK_EQ_INT(cJSON_GetArraySize(al_value_get_map(al_fields_get(d->fields, "hp"))), 3);
	}
	al_doc_free(d);
	d = NULL;

	/* a masked update of a missing document creates it with what the mask sets */
	w.path = "projects/m2";
	w.pre = AL_PRE_NONE;
	CHECK_OK(al_store_commit(b, &w, 1));
	CHECK_EQ_INT(get_key(b, "projects/m2", "hp", "c"), 3);
	CHECK_EQ_INT(get_key(b, "projects/m2", "hp", "a"), -999);

	/* refused before anything is written: a mask on a set, a path inside another, a value
	 * outside the mask, a reserved or empty name */
	w.path = "projects/m";
	w.op = AL_WRITE_SET;
	CHECK_EQ_INT(al_store_commit(b, &w, 1), AL_EINVAL);
	w.op = AL_WRITE_UPDATE;
	CHECK_OK(al_mask_add(mask, "hp", NULL));
	CHECK_EQ_INT(al_store_commit(b, &w, 1), AL_EINVAL);
	cJSON_Delete(cJSON_DetachItemFromArray(mask, cJSON_GetArraySize(mask) - 1));
	cJSON_Delete(cJSON_DetachItemFromArray(mask, 1));           /* hp.c holds a value */
	CHECK_EQ_INT(al_store_commit(b, &w, 1), AL_EINVAL);
	CHECK(strstr(al_error_last(), "not in the mask") != NULL);
	CHECK_OK(al_mask_add(mask, "hp", "c"));
	CHECK_OK(al_mask_add(mask, "hp", "__k__"));
	CHECK_EQ_INT(al_store_commit(b, &w, 1), AL_EINVAL);
	CHECK_EQ_INT(get_key(b, "projects/m", "hp", "b"), 2);
	cJSON_Delete(f);
	cJSON_Delete(g);
	cJSON_Delete(mask);
}

/* Listings: order, id ranges, collections. */
static void contract_list(al_store_backend *b)
{
	const char *ids[] = {"10", "9", "a%2Fb", "a", "B", "1", "é"};
	const char *sorted[] = {"1", "10", "9", "B", "a", "a%2Fb", "é"};
	char path[256];
	al_doc_list *l = NULL;

	for (size_t i = 0; i < 7; i++) {
		snprintf(path, sizeof(path), "projects/p/runs/%s", ids[i]);
		CHECK_OK(put(b, path, "i", (int64_t)i, AL_PRE_MISSING));
		CHECK_EQ_INT(get_int(b, path, "i"), (int64_t)i);
	}
	CHECK_OK(put(b, "projects/p/runs/9/metrics/loss", "i", 0, AL_PRE_NONE));
	CHECK_OK(put(b, "projects/p/runs/9/artifacts/x", "i", 0, AL_PRE_NONE));
	CHECK_OK(put(b, "projects/p/other/x", "i", 0, AL_PRE_NONE));
	CHECK_OK(put(b, "projects/p/experiments/e", "i", 0, AL_PRE_NONE));
	CHECK_OK(put(b, "projects/p/runsx/x", "i", 0, AL_PRE_NONE));

	CHECK_OK(al_store_list(&l, b, "projects/p/runs", NULL, NULL));
	CHECK_EQ_INT(l->count, 7);
	for (size_t i = 0; i < l->count && i < 7; i++) {
		CHECK_EQ_STR(al_doc_id(l->docs[i]->path), sorted[i]);
		CHECK(l->docs[i]->fields != NULL && l->docs[i]->create_us > 0);
	}
	al_doc_list_free(l);

	/* list_meta: the same documents and times, without fields */
	{
		al_doc_list *all = NULL;
		CHECK_OK(al_store_list(&all, b, "projects/p/runs", NULL, NULL));
		CHECK_OK(al_store_list_meta(&l, b, "projects/p/runs"));
		CHECK_EQ_INT(l ? l->count : 0, 7);
		for (size_t i = 0; l && all && i < l->count && i < all->count; i++) {
			CHECK_EQ_STR(l->docs[i]->path, all->docs[i]->path);
			CHECK(l->docs[i]->fields == NULL);
			CHECK_EQ_INT(l->docs[i]->update_us, all->docs[i]->update_us);
			CHECK_EQ_INT(l->docs[i]->create_us, all->docs[i]->create_us);
		}
		al_doc_list_free(l);
		al_doc_list_free(all);
		CHECK_OK(al_store_list_meta(&l, b, "nothing/here/at_all"));
		CHECK(l != NULL && l->count == 0);
		al_doc_list_free(l);
	}

	CHECK_OK(al_store_list(&l, b, "projects/p/runs", "10", "a"));
	CHECK_EQ_INT(l->count, 3);
	if (l->count == 3) {
		CHECK_EQ_STR(al_doc_id(l->docs[0]->path), "10");
		CHECK_EQ_STR(al_doc_id(l->docs[2]->path), "B");
	}
	al_doc_list_free(l);
	CHECK_OK(al_store_list(&l, b, "projects/p/runs", "a", NULL));
	CHECK_EQ_INT(l->count, 3);
	al_doc_list_free(l);
	CHECK_OK(al_store_list(&l, b, "projects/p/runs", NULL, "10"));
	CHECK_EQ_INT(l->count, 1);
	al_doc_list_free(l);
	CHECK_OK(al_store_list(&l, b, "projects/p/runs", "z", "a"));
	CHECK_EQ_INT(l->count, 0);
	al_doc_list_free(l);
	/* bounds that are no valid Firestore id are applied client-side */
	CHECK_OK(al_store_list(&l, b, "projects/p/runs", "9/", "__zz__"));
	CHECK_EQ_INT(l->count, 1); /* "B" */
	if (l->count == 1)
		CHECK_EQ_STR(al_doc_id(l->docs[0]->path), "B");
	al_doc_list_free(l);
	CHECK_OK(al_store_list(&l, b, "projects/p/runs", "a%2Fb", "é"));
	CHECK_EQ_INT(l->count, 1);
	al_doc_list_free(l);
	CHECK_OK(al_store_list(&l, b, "projects/p/runs/9/metrics", NULL, NULL));
	CHECK_EQ_INT(l->count, 1);
	al_doc_list_free(l);
	CHECK_OK(al_store_list(&l, b, "nothing/here/at_all", NULL, NULL));
	CHECK(l != NULL && l->count == 0);
	al_doc_list_free(l);

	char **cols = NULL;
	size_t n = 0;
	CHECK_OK(al_store_list_collections(&cols, &n, b, "projects/p"));
	CHECK_EQ_INT(n, 4);
	if (n == 4) {
		CHECK_EQ_STR(cols[0], "experiments");
		CHECK_EQ_STR(cols[1], "other");
		CHECK_EQ_STR(cols[2], "runs");
		CHECK_EQ_STR(cols[3], "runsx");
		CHECK(cols[4] == NULL);
	}
	al_strings_free(cols, n);
	CHECK_OK(al_store_list_collections(&cols, &n, b, "projects/p/runs/9"));
	CHECK_EQ_INT(n, 2);
	if (n == 2) {
		CHECK_EQ_STR(cols[0], "artifacts");
		CHECK_EQ_STR(cols[1], "metrics");
	}
	al_strings_free(cols, n);
	CHECK_OK(al_store_list_collections(&cols, &n, b, "projects/p/runs/10"));
	CHECK_EQ_INT(n, 0);
	CHECK(cols != NULL);
	al_strings_free(cols, n);
	CHECK_OK(al_store_list_collections(&cols, &n, b, NULL));
	CHECK_EQ_INT(n, 2); /* atomic, projects */
	if (n == 2) {
		CHECK_EQ_STR(cols[0], "atomic");
		CHECK_EQ_STR(cols[1], "projects");
	}
	al_strings_free(cols, n);

	/* deleting the last doc of a collection hides it */
	al_write w = {AL_WRITE_DELETE, "projects/p/other/x", NULL, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(b, &w, 1));
	CHECK_OK(al_store_list_collections(&cols, &n, b, "projects/p"));
	CHECK_EQ_INT(n, 3);
	al_strings_free(cols, n);
}

#define THREADS 4
#define IDS 50

struct race {
	al_store_backend *b;
	int thread;
	int wins;
	int other_errors;
};

static void *racer(void *arg)
{
	struct race *r = arg;
	char path[64];
	for (int i = 0; i < IDS; i++) {
		snprintf(path, sizeof(path), "race/%d", i);
		int rc = put(r->b, path, "winner", r->thread, AL_PRE_MISSING);
		if (rc == 0)
			r->wins++;
		else if (rc != AL_EEXISTS)
			r->other_errors++;
	}
	return NULL;
}

/* Create-only writes racing from several threads: each id is won once. */
static void contract_race(al_store_backend *b)
{
	pthread_t t[THREADS];
	struct race r[THREADS];
	int wins = 0;
	al_doc_list *l = NULL;

	for (int i = 0; i < THREADS; i++) {
		r[i] = (struct race){b, i, 0, 0};
		pthread_create(&t[i], NULL, racer, &r[i]);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		wins += r[i].wins;
		CHECK_EQ_INT(r[i].other_errors, 0);
	}
	CHECK_EQ_INT(wins, IDS);
	CHECK_OK(al_store_list(&l, b, "race", NULL, NULL));
	CHECK_EQ_INT(l->count, IDS);
	int per_thread[THREADS] = {0};
	for (size_t i = 0; i < l->count; i++) {
		int64_t w = -1;
		CHECK_OK(al_fields_get_int(&w, l->docs[i]->fields, "winner"));
		if (w >= 0 && w < THREADS)
			per_thread[w]++;
	}
	for (int i = 0; i < THREADS; i++)
		CHECK_EQ_INT(per_thread[i], r[i].wins);
	al_doc_list_free(l);
}

#endif
