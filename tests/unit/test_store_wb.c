/* Unit tests of the write-behind metastore: local visibility before delivery, delivery in order,
 * outages, create-only writes, replay of the journal after a crash, and writes the backend
 * refuses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/store/store.h"
#include "core/store/store_wb.h"
#include "core/doc/value.h"
#include "check.h"

/* A backend that forwards to SQLite but can be made unreachable. */
typedef struct flaky {
	al_store_backend base;
	al_store_backend *inner;
	int down;
	int refuse_bad;            /* commits with a field named "bad" anywhere fail with AL_EINVAL */
	int commits;
	size_t max_commit_bytes;   /* the largest commit's writes as JSON */
	int lose;                  /* this many commits are applied, then answer AL_EIO (cut) */
	int drop;                  /* this many commits answer AL_EIO without being applied */
	int down_after;            /* after a lost or dropped answer, the backend goes down */
} flaky;

static int f_get(al_doc **out, al_store_backend *b, const char *path)
{
	flaky *f = (flaky *)b;
	if (f->down)
		return al_error_set(AL_EIO, "unreachable");
	return al_store_get(out, f->inner, path);
}

static int f_list(al_doc_list **out, al_store_backend *b, const char *c, const char *from, const char *to)
{
	flaky *f = (flaky *)b;
	if (f->down)
		return al_error_set(AL_EIO, "unreachable");
	return al_store_list(out, f->inner, c, from, to);
}

static int f_colls(char ***out, size_t *n, al_store_backend *b, const char *doc)
{
	flaky *f = (flaky *)b;
	return f->inner->list_collections(out, n, f->inner, doc);
}

static int f_commit(al_store_backend *b, const al_write *w, size_t n)
{
	flaky *f = (flaky *)b;
	if (f->down)
		return al_error_set(AL_EIO, "unreachable");
	for (size_t i = 0; f->refuse_bad && i < n; i++) {
		char *t = w[i].fields ? cJSON_PrintUnformatted(w[i].fields) : NULL;
		int bad = t && strstr(t, "\"bad\"");
		free(t);
		if (bad)   /* like Firestore's 400: the whole commit, naming no document */
			return al_error_set(AL_EINVAL, "HTTP 400 INVALID_ARGUMENT: value too deep");
	}
	if (f->drop > 0) {
		f->drop--;
		f->down = f->down_after;
		return al_error_set(AL_EIO, "connection reset before the request was sent");
	}
	f->commits++;
	if (f->lose > 0) {
		int rc = al_store_commit(f->inner, w, n);
		f->lose--;
		f->down = f->down_after;
		return rc ? rc : al_error_set(AL_EIO, "the answer was cut short");
	}
	{
		size_t bytes = 0;
		for (size_t i = 0; i < n; i++) {
			char *t = w[i].fields ? cJSON_PrintUnformatted(w[i].fields) : NULL;
			bytes += strlen(w[i].path) + (t ? strlen(t) : 0);
			free(t);
		}
		if (bytes > f->max_commit_bytes)
			f->max_commit_bytes = bytes;
	}
	return al_store_commit(f->inner, w, n);
}

static void f_free(al_store_backend *b)
{
	(void)b;   /* owned by the test */
}

static void flaky_init(flaky *f, al_store_backend *inner)
{
	memset(f, 0, sizeof(*f));
	f->base.version = AL_STORE_BACKEND_VERSION;
	f->base.name = "flaky";
	f->base.get = f_get;
	f->base.list = f_list;
	f->base.list_collections = f_colls;
	f->base.commit = f_commit;
	f->base.free = f_free;
	f->inner = inner;
}

static cJSON *fields1(const char *name, int64_t v)
{
	cJSON *f = cJSON_CreateObject();
	al_fields_set(f, name, al_value_int(v));
	return f;
}

static int64_t field_of(al_store_backend *b, const char *path, const char *name)
{
	al_doc *d = NULL;
	int64_t v = -1;
	if (al_store_get(&d, b, path) == 0)
		al_fields_get_int(&v, d->fields, name);
	al_doc_free(d);
	return v;
}

/* A damaged journal record costs only its write: replay delivers the others in order (each is a
 * set, merge or delete, so nothing depends on a count), and the damaged file is kept aside. */
static void damaged_record(const char *root)
{
	char db[256], journal[256], cmd[1024], gen[512] = "";
	al_store_backend *sql = NULL, *w = NULL;
	flaky fl;
	cJSON *a = fields1("x", 1), *b = fields1("y", 2), *a2 = fields1("z", 3), *c = fields1("x", 5);
	al_write ws[1];
	FILE *p;

	snprintf(db, sizeof(db), "%s/db-damage", root);
	snprintf(journal, sizeof(journal), "%s/journal-damage", root);
	CHECK_OK(al_store_sqlite_new(&sql, db));
	flaky_init(&fl, sql);
	fl.down = 1;
	CHECK_OK(al_store_wb_new(&w, &fl.base, journal, 60000));
	ws[0] = (al_write){AL_WRITE_SET, "c/a", a, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	ws[0] = (al_write){AL_WRITE_SET, "c/b", b, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	ws[0] = (al_write){AL_WRITE_UPDATE, "c/a", a2, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	ws[0] = (al_write){AL_WRITE_SET, "c/c", c, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	al_store_free(w);   /* undeliverable: the four stay in the journal */
	w = NULL;

	/* one byte of the c/b record flips */
	snprintf(cmd, sizeof(cmd), "grep -l '\"c/b\"' %s/journal.*", journal);
	if ((p = popen(cmd, "r"))) {
		if (!fgets(gen, sizeof(gen), p))
			gen[0] = '\0';
		pclose(p);
	}
	gen[strcspn(gen, "\n")] = '\0';
	CHECK(gen[0] != '\0');
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 -c \"import sys; p=sys.argv[1]; d=bytearray(open(p,'rb').read()); "
		"i=d.index(b'c/b'); d[i+1]^=1; open(p,'wb').write(d)\" %s", gen);
	CHECK_EQ_INT(system(cmd), 0);

	fl.down = 0;
	CHECK_OK(al_store_wb_new(&w, &fl.base, journal, 60000));
	CHECK_EQ_INT(al_store_wb_pending(w), 3);
	CHECK_OK(al_store_wb_flush(w));
	CHECK_EQ_INT(field_of(sql, "c/a", "x"), 1);
	CHECK_EQ_INT(field_of(sql, "c/a", "z"), 3);   /* the merge after the damage */
	CHECK_EQ_INT(field_of(sql, "c/b", "y"), -1);  /* the damaged write */
	CHECK_EQ_INT(field_of(sql, "c/c", "x"), 5);
	snprintf(cmd, sizeof(cmd), "test \"$(ls %s/damaged | wc -l)\" = 1", journal);
	CHECK_EQ_INT(system(cmd), 0);
	/* delivered, the damaged generation left the journal: a restart replays nothing */
	al_store_free(w);
	CHECK_OK(al_store_wb_new(&w, &fl.base, journal, 60000));
	CHECK_EQ_INT(al_store_wb_pending(w), 0);
	al_store_free(w);
	al_store_free(sql);
	cJSON_Delete(a);
	cJSON_Delete(b);
	cJSON_Delete(a2);
	cJSON_Delete(c);
}

/* A refused batch among good ones: the others are delivered, the refused one is reported with
 * its path and gone from the local view, and a later update built from that view arrives. */
static void test_refused(const char *root)
{
	char db[256], journal[256], err[512];
	al_store_backend *sql = NULL, *w = NULL;
	flaky fl;
	al_doc *d = NULL;
	cJSON *run = cJSON_CreateObject(), *g1 = fields1("x", 1), *g2 = fields1("y", 2);
	cJSON *badf = cJSON_CreateObject(), *hp = cJSON_CreateObject(), *note = cJSON_CreateObject();
	cJSON *later = NULL;
	al_write ws[1];

	snprintf(db, sizeof(db), "%s/db3", root);
	snprintf(journal, sizeof(journal), "%s/journal3", root);
	CHECK_OK(al_store_sqlite_new(&sql, db));
	flaky_init(&fl, sql);
	fl.refuse_bad = 1;
	CHECK_OK(al_store_wb_new(&w, &fl.base, journal, 60000));
	if (!w)
		goto cleanup;
	al_fields_set(run, "status", al_value_string("running"));
	ws[0] = (al_write){AL_WRITE_SET, "r/1", run, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	CHECK_OK(al_store_wb_flush(w));

	/* Checked before it is journaled: refused to the caller, nothing queued. */
	ws[0] = (al_write){AL_WRITE_SET, "r", run, AL_PRE_NONE, NULL};
	CHECK_EQ_INT(al_store_commit(w, ws, 1), AL_EINVAL);
	CHECK_EQ_INT(al_store_wb_pending(w), 0);

	al_fields_set(hp, "good", al_value_int(1));
	al_fields_set(hp, "bad", al_value_int(2));
	al_fields_set(badf, "hp", al_value_map(hp));
	al_fields_set(note, "note", al_value_string("n"));
	ws[0] = (al_write){AL_WRITE_SET, "c/good1", g1, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	ws[0] = (al_write){AL_WRITE_UPDATE, "r/1", badf, AL_PRE_EXISTS, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	ws[0] = (al_write){AL_WRITE_UPDATE, "r/1", note, AL_PRE_EXISTS, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	ws[0] = (al_write){AL_WRITE_SET, "c/good2", g2, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	CHECK_EQ_INT(al_store_wb_pending(w), 4);

	CHECK_OK(al_store_wb_flush(w));
	CHECK_EQ_INT(al_store_wb_pending(w), 0);
	CHECK_EQ_INT(field_of(sql, "c/good1", "x"), 1);
	CHECK_EQ_INT(field_of(sql, "c/good2", "y"), 2);
	al_store_wb_last_error(err, sizeof(err), w);
	CHECK(strstr(err, "dropped a write to r/1") != NULL);
	CHECK(strstr(err, "too deep") != NULL);
	/* The refused content is gone from what reads show; the later write to r/1 is not. */
	CHECK_OK(al_store_get(&d, w, "r/1"));
	CHECK(d && al_fields_get(d->fields, "hp") == NULL);
	CHECK_EQ_STR(d ? al_fields_get_string(d->fields, "note") : NULL, "n");
	CHECK_EQ_STR(d ? al_fields_get_string(d->fields, "status") : NULL, "running");
	al_doc_free(d);
	d = NULL;

	/* A read-modify-write of r/1 after the refusal does not carry it, and is delivered. */
	CHECK_OK(al_store_get(&d, w, "r/1"));
	if (d) {
		const cJSON *old = al_value_get_map(al_fields_get(d->fields, "hp"));
		cJSON *map = old ? cJSON_Duplicate(old, 1) : cJSON_CreateObject();
		al_fields_set(map, "later", al_value_int(3));
		later = cJSON_CreateObject();
		al_fields_set(later, "hp", al_value_map(map));
		ws[0] = (al_write){AL_WRITE_UPDATE, "r/1", later, AL_PRE_EXISTS, NULL};
		CHECK_OK(al_store_commit(w, ws, 1));
	}
	al_doc_free(d);
	d = NULL;
	CHECK_OK(al_store_wb_flush(w));
	CHECK_EQ_INT(al_store_wb_pending(w), 0);
	CHECK_OK(al_store_get(&d, sql, "r/1"));
	if (d) {
		int64_t v = -1;
		const cJSON *m = al_value_get_map(al_fields_get(d->fields, "hp"));
		CHECK(m != NULL && al_fields_get(m, "bad") == NULL);
		al_fields_get_int(&v, m, "later");
		CHECK_EQ_INT(v, 3);
		CHECK_EQ_STR(al_fields_get_string(d->fields, "note"), "n");
	}
	al_doc_free(d);
cleanup:
	al_store_free(w);
	al_store_free(sql);
	cJSON_Delete(run);
	cJSON_Delete(g1);
	cJSON_Delete(g2);
	cJSON_Delete(badf);
	cJSON_Delete(note);
	cJSON_Delete(later);
}

/* hp.key of path as an int, -1 when absent. */
static int64_t key_of(al_store_backend *b, const char *path, const char *key)
{
	al_doc *d = NULL;
	int64_t v = -1;
	if (al_store_get(&d, b, path) == 0 &&
	    al_fields_get_int(&v, al_value_get_map(al_fields_get(d->fields, "hp")), key) != 0)
		v = -1;
	al_doc_free(d);
	return v;
}

/* One masked update: hp.key = v, or hp.key deleted when v < 0; commit to b. */
static int set_key(al_store_backend *b, const char *path, const char *key, int64_t v)
{
	cJSON *f = cJSON_CreateObject(), *m = cJSON_CreateArray(), *inner = cJSON_CreateObject();
	al_write w = {AL_WRITE_UPDATE, path, f, AL_PRE_NONE, m};
	int rc;
	if (v >= 0)
		al_fields_set(inner, key, al_value_int(v));
	al_fields_set(f, "hp", al_value_map(inner));
	al_mask_add(m, "hp", key);
	rc = al_store_commit(b, &w, 1);
	cJSON_Delete(f);
	cJSON_Delete(m);
	return rc;
}

/* Updates of single keys of a map (a run's params from two mounts): the overlay applies them to
 * whatever the backend has, so keys another writer put there meanwhile show and stay, in this
 * mount's view, at delivery and after a replay of the journal. */
static void test_masked(const char *root)
{
	char db[256], db2[256], journal[256], saved[256], cmd[1024];
	al_store_backend *sql = NULL, *sql2 = NULL, *w = NULL;
	flaky fl, fl2;
	al_doc_list *l = NULL;
	cJSON *hp = cJSON_Parse("{\"hp\":{\"mapValue\":{\"fields\":{\"base\":{\"integerValue\":\"1\"}}}}}");
	cJSON *st = cJSON_Parse("{\"status\":{\"stringValue\":\"running\"}}");
	al_write ws[1];

	snprintf(db, sizeof(db), "%s/db-mask", root);
	snprintf(db2, sizeof(db2), "%s/db-mask2", root);
	snprintf(journal, sizeof(journal), "%s/journal-mask", root);
	snprintf(saved, sizeof(saved), "%s/saved-mask", root);
	CHECK_OK(al_store_sqlite_new(&sql, db));
	CHECK_OK(al_store_sqlite_new(&sql2, db2));
	ws[0] = (al_write){AL_WRITE_SET, "r/1", hp, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(sql, ws, 1));
	CHECK_OK(al_store_commit(sql2, ws, 1));
	flaky_init(&fl, sql);
	CHECK_OK(al_store_wb_new(&w, &fl.base, journal, 60000));

	/* offline: this mount sets a and c and deletes base; another writer sets b meanwhile */
	fl.down = 1;
	CHECK_OK(set_key(w, "r/1", "a", 1));
	CHECK_OK(set_key(w, "r/1", "base", -1));
	CHECK_OK(set_key(w, "r/1", "c", 3));
	ws[0] = (al_write){AL_WRITE_UPDATE, "r/1", st, AL_PRE_EXISTS, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	CHECK_EQ_INT(al_store_wb_pending(w), 4);
	CHECK_OK(set_key(sql, "r/1", "b", 2));
	CHECK_OK(set_key(sql2, "r/1", "b", 2));
	snprintf(cmd, sizeof(cmd), "cp -r %s %s", journal, saved);
	CHECK_EQ_INT(system(cmd), 0);
	fl.down = 0;
	CHECK_EQ_INT(key_of(w, "r/1", "a"), 1);
	CHECK_EQ_INT(key_of(w, "r/1", "b"), 2);     /* the other writer's key shows */
	CHECK_EQ_INT(key_of(w, "r/1", "c"), 3);
	CHECK_EQ_INT(key_of(w, "r/1", "base"), -1);
	CHECK_OK(al_store_list(&l, w, "r", NULL, NULL));
	CHECK(l && l->count == 1 && al_fields_get_string(l->docs[0]->fields, "status") &&
		cJSON_GetArraySize(al_value_get_map(al_fields_get(l->docs[0]->fields, "hp"))) == 3);
	al_doc_list_free(l);
	l = NULL;
	CHECK_OK(al_store_wb_flush(w));
	CHECK_EQ_INT(key_of(sql, "r/1", "a"), 1);
	CHECK_EQ_INT(key_of(sql, "r/1", "b"), 2);   /* and stays at delivery */
	CHECK_EQ_INT(key_of(sql, "r/1", "c"), 3);
	CHECK_EQ_INT(key_of(sql, "r/1", "base"), -1);

	/* a whole-field write replaces the map, later keys apply inside it */
	fl.down = 1;
	ws[0] = (al_write){AL_WRITE_UPDATE, "r/1", hp, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	CHECK_OK(set_key(w, "r/1", "y", 7));
	CHECK_OK(set_key(sql, "r/1", "z", 8));
	fl.down = 0;
	CHECK_EQ_INT(key_of(w, "r/1", "base"), 1);
	CHECK_EQ_INT(key_of(w, "r/1", "y"), 7);
	CHECK_EQ_INT(key_of(w, "r/1", "a"), -1);
	CHECK_EQ_INT(key_of(w, "r/1", "z"), -1);
	CHECK_OK(al_store_wb_flush(w));
	CHECK_EQ_INT(key_of(sql, "r/1", "y"), 7);
	CHECK_EQ_INT(key_of(sql, "r/1", "z"), -1);
	/* once delivered, another writer's change shows at once (the overlay no longer answers
	 * for it), and a later update of this mount applies to the backend's copy */
	CHECK_OK(set_key(sql, "r/1", "z", 8));
	CHECK_EQ_INT(key_of(w, "r/1", "z"), 8);
	CHECK_OK(al_store_list(&l, w, "r", NULL, NULL));
	CHECK(l && l->count == 1 &&
		al_fields_get(al_value_get_map(al_fields_get(l->docs[0]->fields, "hp")), "z"));
	al_doc_list_free(l);
	l = NULL;
	{
		/* a delivered document's time stays the one shown before, until it changes again */
		al_doc *d = NULL;
		int64_t shown = 0;
		ws[0] = (al_write){AL_WRITE_SET, "r/t", st, AL_PRE_NONE, NULL};
		CHECK_OK(al_store_commit(w, ws, 1));
		if (al_store_get(&d, w, "r/t") == 0)
			shown = d->update_us;
		al_doc_free(d);
		d = NULL;
		usleep(2000);
		CHECK_OK(al_store_wb_flush(w));
		if (al_store_get(&d, w, "r/t") == 0)
			CHECK_EQ_INT(d->update_us, shown);
		al_doc_free(d);
		d = NULL;
		usleep(2000);
		CHECK_OK(set_key(sql, "r/t", "z", 1));
		if (al_store_get(&d, w, "r/t") == 0)
			CHECK(d->update_us != shown && al_fields_get(d->fields, "hp"));
		al_doc_free(d);
	}
	fl.down = 1;
	CHECK_OK(set_key(w, "r/1", "q", 9));
	fl.down = 0;
	CHECK_EQ_INT(key_of(w, "r/1", "z"), 8);
	CHECK_EQ_INT(key_of(w, "r/1", "q"), 9);
	CHECK_OK(al_store_wb_flush(w));
	CHECK_EQ_INT(key_of(sql, "r/1", "z"), 8);
	al_store_free(w);

	/* the journal of the offline writes, replayed after a crash, keeps the other's key too */
	flaky_init(&fl2, sql2);
	snprintf(cmd, sizeof(cmd), "rm -rf %s && cp -r %s %s", journal, saved, journal);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_OK(al_store_wb_new(&w, &fl2.base, journal, 60000));
	CHECK_EQ_INT(al_store_wb_pending(w), 4);
	CHECK_OK(al_store_wb_flush(w));
	CHECK_EQ_INT(key_of(sql2, "r/1", "a"), 1);
	CHECK_EQ_INT(key_of(sql2, "r/1", "b"), 2);
	CHECK_EQ_INT(key_of(sql2, "r/1", "base"), -1);
	al_store_free(w);
	al_store_free(sql);
	al_store_free(sql2);
	cJSON_Delete(hp);
	cJSON_Delete(st);
}

/* A create whose answer was lost (README "Firestore"): read back, it is ours (0), another's
 * (EEXIST), or not there (sent again); EIO only when that cannot be known. */
static void test_create_outcome(const char *root)
{
	char db[256], journal[256];
	al_store_backend *sql = NULL, *w = NULL;
	flaky fl;
	cJSON *mine = cJSON_CreateObject(), *other = cJSON_CreateObject();
	al_write ws[1];

	snprintf(db, sizeof(db), "%s/db-create", root);
	snprintf(journal, sizeof(journal), "%s/journal-create", root);
	CHECK_OK(al_store_sqlite_new(&sql, db));
	flaky_init(&fl, sql);
	CHECK_OK(al_store_wb_new(&w, &fl.base, journal, 60000));
	al_fields_set(mine, "created", al_value_time(1700000000000001));
	al_fields_set(other, "created", al_value_time(1700000000000002));

	/* applied, answer lost: recognised as ours by its creation time */
	fl.lose = 1;
	ws[0] = (al_write){AL_WRITE_SET, "runs/1", mine, AL_PRE_MISSING, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	CHECK_EQ_INT(fl.commits, 1);
	/* not applied, no answer: not there when read back, so sent again */
	fl.drop = 1;
	ws[0].path = "runs/2";
	CHECK_OK(al_store_commit(w, ws, 1));
	CHECK_EQ_INT(fl.commits, 2);
	/* taken by another mount: EEXIST, whether its answer came or not */
	ws[0] = (al_write){AL_WRITE_SET, "runs/3", other, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(sql, ws, 1));
	ws[0] = (al_write){AL_WRITE_SET, "runs/3", mine, AL_PRE_MISSING, NULL};
	CHECK_EQ_INT(al_store_commit(w, ws, 1), AL_EEXISTS);
	CHECK(strstr(al_error_last(), "runs/3 already exists") != NULL);
	/* applied, then the backend unreachable: nobody can tell, and the message says so */
	fl.lose = 1;
	fl.down_after = 1;
	ws[0].path = "runs/4";
	CHECK_EQ_INT(al_store_commit(w, ws, 1), AL_EIO);
	CHECK(strstr(al_error_last(), "cannot tell whether runs/4 was created") != NULL);
	fl.down = fl.down_after = 0;
	al_store_free(w);
	al_store_free(sql);
	cJSON_Delete(mine);
	cJSON_Delete(other);
}

int main(void)
{
	char root[] = "/tmp/al-wb-XXXXXX", db[256], db2[256], journal[256], saved[256], cmd[1024];
	al_store_backend *sql = NULL, *sql2 = NULL, *w = NULL;
	flaky fl, fl2;
	al_doc_list *l = NULL;
	cJSON *a = fields1("x", 1), *b = fields1("y", 2), *c = fields1("x", 3);
	al_write ws[2];

	CHECK(mkdtemp(root) != NULL);
	snprintf(db, sizeof(db), "%s/db", root);
	snprintf(db2, sizeof(db2), "%s/db2", root);
	snprintf(journal, sizeof(journal), "%s/journal", root);
	snprintf(saved, sizeof(saved), "%s/saved", root);
	CHECK_OK(al_store_sqlite_new(&sql, db));
	flaky_init(&fl, sql);
	CHECK_OK(al_store_wb_new(&w, &fl.base, journal, 60000));

	/* Accepted writes are visible at once, before any delivery. */
	ws[0] = (al_write){AL_WRITE_SET, "c/d1", a, AL_PRE_NONE, NULL};
	ws[1] = (al_write){AL_WRITE_SET, "c/d2", b, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(w, ws, 2));
	CHECK_EQ_INT(al_store_wb_pending(w), 2);
	CHECK_EQ_INT(field_of(w, "c/d1", "x"), 1);
	CHECK_EQ_INT(field_of(sql, "c/d1", "x"), -1);
	CHECK_OK(al_store_list(&l, w, "c", NULL, NULL));
	CHECK_EQ_INT(l ? l->count : 0, 2);
	al_doc_list_free(l);
	l = NULL;

	/* Delivery: one backend commit for both, then the backend has them. */
	CHECK_OK(al_store_wb_flush(w));
	CHECK_EQ_INT(al_store_wb_pending(w), 0);
	CHECK_EQ_INT(fl.commits, 1);
	CHECK_EQ_INT(field_of(sql, "c/d2", "y"), 2);

	/* An outage: writes still succeed locally, delivery fails and keeps them, in order. */
	fl.down = 1;
	ws[0] = (al_write){AL_WRITE_UPDATE, "c/d1", c, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	ws[0] = (al_write){AL_WRITE_DELETE, "c/d2", NULL, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));
	CHECK(al_store_wb_flush(w) == AL_EIO);
	CHECK_EQ_INT(al_store_wb_pending(w), 2);
	/* Create-only writes need the backend: refused while it is away. */
	ws[0] = (al_write){AL_WRITE_SET, "c/new", a, AL_PRE_MISSING, NULL};
	CHECK(al_store_commit(w, ws, 1) == AL_EIO);

	/* kill -9 now: the journal holds the two writes. */
	snprintf(cmd, sizeof(cmd), "cp -r %s %s", journal, saved);
	CHECK_EQ_INT(system(cmd), 0);

	fl.down = 0;
	/* The update merges onto the backend's document (which is reachable again). */
	CHECK_EQ_INT(field_of(w, "c/d1", "x"), 3);
	CHECK_EQ_INT(field_of(w, "c/d2", "y"), -1);
	ws[0] = (al_write){AL_WRITE_SET, "c/new", a, AL_PRE_MISSING, NULL};
	CHECK_OK(al_store_commit(w, ws, 1));        /* delivers the queue first, then creates */
	CHECK_EQ_INT(al_store_wb_pending(w), 0);
	CHECK_EQ_INT(field_of(sql, "c/d1", "x"), 3);
	CHECK_EQ_INT(field_of(sql, "c/d2", "y"), -1);
	CHECK_EQ_INT(field_of(sql, "c/new", "x"), 1);
	CHECK(al_store_commit(w, ws, 1) == AL_EEXISTS);
	al_store_free(w);
	w = NULL;

	/* Replay of the saved journal into a fresh backend delivers both writes, in order. */
	CHECK_OK(al_store_sqlite_new(&sql2, db2));
	ws[0] = (al_write){AL_WRITE_SET, "c/d1", a, AL_PRE_NONE, NULL};
	ws[1] = (al_write){AL_WRITE_SET, "c/d2", b, AL_PRE_NONE, NULL};
	CHECK_OK(al_store_commit(sql2, ws, 2));
	flaky_init(&fl2, sql2);
	snprintf(cmd, sizeof(cmd), "rm -rf %s && cp -r %s %s", journal, saved, journal);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_OK(al_store_wb_new(&w, &fl2.base, journal, 60000));
	CHECK_EQ_INT(al_store_wb_pending(w), 2);
	CHECK_OK(al_store_wb_flush(w));
	CHECK_EQ_INT(field_of(sql2, "c/d1", "x"), 3);
	CHECK_EQ_INT(field_of(sql2, "c/d2", "y"), -1);
	/* Delivered writes leave the journal: a restart replays nothing. */
	al_store_free(w);
	CHECK_OK(al_store_wb_new(&w, &fl2.base, journal, 60000));
	CHECK_EQ_INT(al_store_wb_pending(w), 0);

	/* 40 writes of ~0.9 MB each (36 MB): delivered in several commits, each under Firestore's
	 * 10 MiB request limit, and all of them arrive. */
	{
		size_t big = 900 * 1000;
		char *s = malloc(big + 1), path[64];
		cJSON *f = cJSON_CreateObject();
		memset(s, 'x', big);
		s[big] = '\0';
		al_fields_set(f, "blob", al_value_string(s));
		fl2.commits = 0;
		fl2.max_commit_bytes = 0;
		for (int i = 0; i < 40; i++) {
			snprintf(path, sizeof(path), "big/d%02d", i);
			ws[0] = (al_write){AL_WRITE_SET, path, f, AL_PRE_NONE, NULL};
			CHECK_OK(al_store_commit(w, ws, 1));
		}
		CHECK_OK(al_store_wb_flush(w));
		CHECK_EQ_INT(al_store_wb_pending(w), 0);
		CHECK(fl2.commits >= 5);
		CHECK(fl2.max_commit_bytes > 0 && fl2.max_commit_bytes < (size_t)8 << 20);
		CHECK_OK(al_store_list(&l, sql2, "big", NULL, NULL));
		CHECK_EQ_INT(l ? l->count : 0, 40);
		al_doc_list_free(l);
		l = NULL;
		cJSON_Delete(f);
		free(s);
	}
	al_store_free(w);
	damaged_record(root);

	test_refused(root);
	test_masked(root);
	test_create_outcome(root);
	al_store_free(sql);
	al_store_free(sql2);
	cJSON_Delete(a);
	cJSON_Delete(b);
	cJSON_Delete(c);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	CHECK_EQ_INT(system(cmd), 0);
	CHECK_DONE();
}
