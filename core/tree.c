/* aletheia: the tree of INTERFACE.md §1–3 as path operations: which document backs each path,
 * what reading it renders, and what writing it records. Knows no FUSE and no backend. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "core/blobs/blobs.h"
#include "core/buf.h"
#include "aletheia/cache.h"
#include "aletheia/fetch.h"
#include "core/fsck.h"
#include "aletheia/git.h"
#include "aletheia/hash.h"
#include "core/doc/json.h"
#include "core/series/metric.h"
#include "core/series/series.h"
#include "core/store/store.h"
#include "core/store/store_cache.h"
#include "core/store/store_wb.h"
#include "aletheia/tree.h"
#include "core/doc/value.h"
#include "config.h"
#include "util.h"

#define MAX_NAME 1500

typedef enum {
	N_ROOT, N_CTL, N_CTL_STATUS, N_CTL_IMPORT, N_CTL_FSCK,
	N_PROJECT, N_METADATA_DIR, N_METADATA, N_DATASETS, N_DATASET, N_DATASET_JSON, N_DS_DESCRIPTION,
	N_DATASET_PATH,
	N_EXPERIMENTS, N_EXPERIMENT, N_EXP_DESCRIPTION, N_RUNS_CSV, N_EXP_ARTIFACT,
	N_RUNS, N_RUN, N_RUN_JSON, N_RUN_TEXT, N_PARAMS, N_PARAMS_JSON, N_METRICS, N_RUN_ARTIFACT,
	N_RUN_DATASETS, N_RUN_LINK, N_OUTPUT_LOG,
} nkind;

/* A parsed path: its kind, its names, and the documents it lives in. */
typedef struct node {
	nkind kind;
	char *buf;
	const char *project, *experiment, *run, *dataset, *name;
	const char *rest;          /* path inside params/, metrics/, artifacts/ or a dataset */
	char *proj_doc, *exp_doc, *run_doc, *ds_doc;
	char *coll;                /* collection of blob-backed files (artifacts, dataset files, logs) */
} node;

typedef struct vdir {
	char *path;
	struct vdir *next;
} vdir;

enum { F_TEXT, F_METRIC, F_BLOB_READ, F_BLOB_WRITE, F_GENERATED, F_IMPORT, F_FSCK, F_SCRATCH };

/* An editor's or atomic writer's temporary file where values live (README "Editing values in
 * place"): its bytes in memory, never recorded. */
typedef struct scratch {
	char *path;                /* NULL once unlinked or renamed over a file */
	al_buf data;
	int64_t mtime_us;
	unsigned refs;             /* one for the tree's list while path is set, one per handle */
	char *commit_to;           /* renamed over this file while still open: later writes go there */
	int dirty;                 /* written since it was renamed over commit_to */
	struct scratch *next;
} scratch;

struct al_file {
	pthread_mutex_t mu;        /* one operation at a time on a handle (dup'ed fds, threads) */
	al_tree *t;
	int kind;
	node n;
	char *path;
	int flags;
	int dirty;
	al_buf text;               /* F_TEXT/F_GENERATED content; F_METRIC: the partial last line */
	size_t keep;               /* F_TEXT: length of the content shown at open (0 when truncated) */
	size_t low_write;          /* F_TEXT: lowest offset written or truncated to (SIZE_MAX: none) */
	char *snap;                /* F_METRIC: read-back text so far */
	size_t snaplen;
	uint64_t points, view;     /* F_METRIC: the series' points in snap and its view (series.h) */
	uint64_t status_gen;       /* F_METRIC writers: t->status_gen when the run was last seen running */
	int line_closed;           /* F_METRIC: a close() came after the partial line in text */
	int skip_line;             /* F_METRIC: the rest of a refused (too long) line is dropped */
	int fd;                    /* F_BLOB_*: the blob or the staging file */
	al_cache_blob *cb;         /* F_BLOB_READ through the cache: streamed, fd is -1 */
	char hash[AL_HASH_HEX_LEN + 1];
	uint64_t size;             /* F_BLOB_READ of a stored blob: the size its record gives */
	int pinned;
	int failed;                /* the error of a failed write: the staged copy is incomplete */
	char *staging;
	scratch *sc;               /* F_SCRATCH */
	/* Writers: the mtime shown and recorded. Set by a write, or by utimens while open (cp -p,
	 * cp -a set times before they close: README "Files behave like files"). Atomic. */
	int64_t mtime_us;
	int mtime_set;
	int detached;              /* F_BLOB_WRITE: the file was deleted or replaced: record nothing */
	int created;               /* F_BLOB_WRITE in a dataset: this handle's create-only record
				    * succeeded, so later records (fsync, close) replace its own */
	/* F_BLOB_WRITE: the opens sharing this handle (in t->lock), so that every writer of a file
	 * sees one content (two connections to a database) */
	unsigned handles;
	struct al_file *share;     /* at open: the writer this open joins instead */
	struct al_file *next;      /* in t->writers */
	al_fsck *fsck;             /* F_FSCK: the check this handle asked for; its report in text */
	int fsck_done;
};

struct al_tree {
	al_store_backend *store;   /* for a remote metastore: write-behind → read cache → backend */
	al_store_backend *wb;      /* store itself when it is the write-behind layer, else NULL */
	/* Where metric series go: below the write-behind (they have their own journal, and big
	 * chunk documents would be copied, journaled and parsed once more), else store. */
	al_store_backend *series_store;
	const char *backend;       /* the backend's own name, for status */
	al_blobs_backend *blobs;
	al_cache *cache;
	al_fetcher *fetcher;       /* imported files: objects read by URL */
	al_series_set *series;
	char *store_uri, *blobs_uri, *cache_dir, *mountpoint, *staging_dir;
	int state_lock;            /* flock of the state folder of a remote store (the store's own
				    * lock covers a local one): its journals and staging are ours */
	int allow_delete;
	uid_t uid;
	gid_t gid;
	int64_t mount_us;
	uint64_t status_gen;       /* bumped by every status change: open writers check the run again */
	pthread_mutex_t lock;      /* serialises read-modify-write of documents, vdirs, writers */
	vdir *vdirs;
	al_file *writers;
	scratch *scratch;          /* linked scratch files (in t->lock, as is their content) */
	size_t scratch_bytes;
	/* Datasets whose version must be recomputed: after each added file it would cost a listing
	 * per file, so it happens about once a second, or at once when the version is looked at. */
	pthread_mutex_t ds_lock;   /* serialises version computation; taken before t->lock */
	vdir *dirty_ds;            /* dataset documents (in t->lock) */
	pthread_t ds_thread;
	pthread_cond_t ds_wake;
	int ds_started, ds_stop;
	/* Attribute cache (after sshfs's cache.c): answers are kept while no change happened since
	 * they were computed; every change bumps gen, so a stale answer is never served. */
	pthread_mutex_t alock;
	uint64_t gen;
	struct attr_entry **acache;
	size_t acount;
	int64_t attr_ttl_us;       /* INT64_MAX for a local store: no one else changes it */
};

typedef struct attr_entry {
	char *path;
	al_attr attr;
	int rc;
	uint64_t gen;
	int64_t expires_us;        /* other mounts' changes show after this (remote stores) */
	struct attr_entry *next;
} attr_entry;

#define ACACHE_BUCKETS 16384
#define ACACHE_MAX 200000

/* ---- names and paths ------------------------------------------------------------------ */

/* A valid Firestore document id, as names must be (INTERFACE.md §1). */
static int check_name(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strchr(name, '/'))
		return al_error_set(AL_EINVAL, "invalid name \"%s\"", name);
	if (len > MAX_NAME)
		return al_error_set(AL_ENAMETOOLONG, "name longer than %d bytes", MAX_NAME);
	if (len >= 4 && strncmp(name, "__", 2) == 0 && strcmp(name + len - 2, "__") == 0)
		return al_error_set(AL_EINVAL, "names of the form __x__ are reserved: \"%s\"", name);
	if (!al_utf8_valid(name, len))
		return al_error_set(AL_EINVAL, "name is not valid UTF-8");
	return 0;
}

static const char *last_segment(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static void node_free(node *n)
{
	free(n->buf);
	free(n->proj_doc);
	free(n->exp_doc);
	free(n->run_doc);
	free(n->ds_doc);
	free(n->coll);
	memset(n, 0, sizeof(*n));
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* Restores the separators from segment i on, so rest is the sub-path inside a folder. */
static const char *join_rest(char **segs, int count, int i, int split_last)
{
	int j;
	if (i >= count)
		return "";
	for (j = i; j < count; j++)
		if (j < count - 1 || split_last)
			segs[j][strlen(segs[j])] = '/';
	return segs[i];
}

/* Splits a mount path into its node. AL_ENOTFOUND for paths outside the tree's shape. */
static int node_parse(node *n, const char *path)
{
	char *segs[7], *p;
	int count = 0, split_last = 0, rc;

	memset(n, 0, sizeof(*n));
	n->rest = "";
	if (!(n->buf = strdup(path)))
		return al_error_set(AL_ENOMEM, "out of memory");
	/* The first 7 segments name the node; anything after is a path inside a folder. */
	for (p = n->buf; *p == '/'; p++)
		;
	while (*p && count < 7) {
		char *slash = strchr(p, '/');
		segs[count++] = p;
		split_last = slash != NULL;
		if (!slash)
			break;
		*slash = '\0';
		p = slash + 1;
	}
	if (split_last && !*p)
		split_last = 0;   /* a trailing slash */
	if (count == 0) {
		n->kind = N_ROOT;
		return 0;
	}
#define EXACT(k) (count == (k) && !split_last)
	if (strcmp(segs[0], ".aletheia") == 0) {
		if (EXACT(1)) { n->kind = N_CTL; return 0; }
		if (EXACT(2) && strcmp(segs[1], "status") == 0) { n->kind = N_CTL_STATUS; return 0; }
		if (EXACT(2) && strcmp(segs[1], "import") == 0) { n->kind = N_CTL_IMPORT; return 0; }
		if (EXACT(2) && strcmp(segs[1], "fsck") == 0) { n->kind = N_CTL_FSCK; return 0; }
		goto notfound;
	}
	n->project = segs[0];
	n->proj_doc = xasprintf("projects/%s", n->project);
	if (EXACT(1)) { n->kind = N_PROJECT; return 0; }
	if (strcmp(segs[1], "metadata") == 0) {
		if (EXACT(2)) { n->kind = N_METADATA_DIR; return 0; }
		if (EXACT(3)) { n->kind = N_METADATA; n->name = segs[2]; return 0; }
		goto notfound;
	}
	if (strcmp(segs[1], "datasets") == 0) {
		if (EXACT(2)) { n->kind = N_DATASETS; return 0; }
		n->dataset = segs[2];
		n->ds_doc = xasprintf("%s/datasets/%s", n->proj_doc, n->dataset);
		n->coll = xasprintf("%s/files", n->ds_doc);
		if (EXACT(3)) { n->kind = N_DATASET; return 0; }
		if (EXACT(4) && strcmp(segs[3], ".dataset.json") == 0) { n->kind = N_DATASET_JSON; return 0; }
		/* Every other name in a dataset is a data file: its description has a dot-name. */
		if (EXACT(4) && strcmp(segs[3], ".description") == 0) { n->kind = N_DS_DESCRIPTION; return 0; }
		n->kind = N_DATASET_PATH;
		n->rest = join_rest(segs, count, 3, split_last);
		return 0;
	}
	if (strcmp(segs[1], "experiments") != 0)
		goto notfound;
	if (EXACT(2)) { n->kind = N_EXPERIMENTS; return 0; }
	n->experiment = segs[2];
	n->exp_doc = xasprintf("%s/experiments/%s", n->proj_doc, n->experiment);
	if (EXACT(3)) { n->kind = N_EXPERIMENT; return 0; }
	if (EXACT(4) && strcmp(segs[3], "description") == 0) { n->kind = N_EXP_DESCRIPTION; return 0; }
	if (EXACT(4) && strcmp(segs[3], "runs.csv") == 0) { n->kind = N_RUNS_CSV; return 0; }
	if (strcmp(segs[3], "artifacts") == 0) {
		n->kind = N_EXP_ARTIFACT;
		n->coll = xasprintf("%s/artifacts", n->exp_doc);
		n->rest = join_rest(segs, count, 4, split_last);
		return 0;
	}
	if (strcmp(segs[3], "runs") != 0)
		goto notfound;
	if (EXACT(4)) { n->kind = N_RUNS; return 0; }
	n->run = segs[4];
	n->run_doc = xasprintf("%s/runs/%s", n->exp_doc, n->run);
	if (EXACT(5)) { n->kind = N_RUN; return 0; }
	if (EXACT(6)) {
		const char *s = segs[5];
		if (strcmp(s, "run.json") == 0) { n->kind = N_RUN_JSON; return 0; }
		if (strcmp(s, "params.json") == 0) { n->kind = N_PARAMS_JSON; return 0; }
		if (!strcmp(s, "status") || !strcmp(s, "fold") || !strcmp(s, "model") ||
		    !strcmp(s, "description")) {
			n->kind = N_RUN_TEXT;
			n->name = s;
			return 0;
		}
		if (strcmp(s, "output.log") == 0) {
			n->kind = N_OUTPUT_LOG;
			n->coll = xasprintf("%s/logs", n->run_doc);
			n->rest = "output.log";
			return 0;
		}
	}
	if (strcmp(segs[5], "datasets") == 0) {
		if (EXACT(6)) { n->kind = N_RUN_DATASETS; return 0; }
		if (EXACT(7)) { n->kind = N_RUN_LINK; n->name = segs[6]; return 0; }
		goto notfound;
	}
	if (strcmp(segs[5], "params") == 0)
		n->kind = N_PARAMS;
	else if (strcmp(segs[5], "metrics") == 0)
		n->kind = N_METRICS;
	else if (strcmp(segs[5], "artifacts") == 0) {
		n->kind = N_RUN_ARTIFACT;
		n->coll = xasprintf("%s/artifacts", n->run_doc);
	} else
		goto notfound;
	n->rest = join_rest(segs, count, 6, split_last);
	return 0;
#undef EXACT
notfound:
	rc = al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
	node_free(n);
	return rc;
}

/* ---- small document helpers ----------------------------------------------------------- */

static int get_doc(al_doc **out, al_tree *t, const char *path)
{
	int rc = al_store_get(out, t->store, path);
	if (rc == AL_ENOTFOUND)
		al_error_set(AL_ENOTFOUND, "no such entry");
	return rc;
}

static int doc_exists(al_tree *t, const char *path)
{
	al_doc *d = NULL;
	int rc = al_store_get(&d, t->store, path);
	al_doc_free(d);
	return rc;
}

/* 1 when the run's status is "running". */
static int run_is_running(const al_doc *run)
{
	const char *s = al_fields_get_string(run->fields, "status");
	return s && strcmp(s, "running") == 0;
}

static int require_running(al_tree *t, const node *n)
{
	al_doc *run = NULL;
	int rc = get_doc(&run, t, n->run_doc);
	if (rc == 0 && !run_is_running(run))
		rc = al_error_set(AL_EROFS, "run %s is %s: only description and status can change",
			n->run, al_fields_get_string(run->fields, "status"));
	al_doc_free(run);
	return rc;
}

static int commit1(al_tree *t, al_write_op op, const char *path, const cJSON *fields,
	al_precondition pre)
{
	al_write w = {op, path, fields, pre, NULL};
	return al_store_commit(t->store, &w, 1);
}

/* Room kept in a run's document for what ends it: params, texts and links may fill it only up to
 * this much below Firestore's 1 MiB, so that status, ended and exit_code can always be written
 * (README "params"). */
#define RUN_HEADROOM 16384

static int run_fits(const node *n, const al_doc *d, const cJSON *patch, size_t headroom);
static int commit_keys(al_tree *t, const char *doc, const char *field, const cJSON *values,
	const char *const *keys, size_t nkeys, al_precondition pre);

/* ---- values as text ------------------------------------------------------------------- */

static int is_number_text(const char *s)
{
	const char *p = s;
	if (*p == '-' || *p == '+')
		p++;
	if (!strcasecmp(p, "nan") || !strcasecmp(p, "inf") || !strcasecmp(p, "infinity"))
		return 1;
	if (!*p)
		return 0;
	for (; *p; p++)
		if (!isdigit((unsigned char)*p) && *p != '.' && *p != 'e' && *p != 'E' && *p != '-' && *p != '+')
			return 0;
	return 1;
}

/* A number as a param's text writes it, exactly (json.h: an integer when it is one that fits in
 * int64, else the nearest double). NULL when the text is no number an int64 or a double holds
 * (99999999999999999999, 1e400): it then stays a string. */
static cJSON *number_from_text(const char *s)
{
	cJSON *v = NULL;
	const char *p = s + (*s == '-' || *s == '+');
	if (!strcasecmp(p, "nan") || !strcasecmp(p, "inf") || !strcasecmp(p, "infinity"))
		return al_value_double(*p == 'n' || *p == 'N' ? NAN : *s == '-' ? -INFINITY : INFINITY);
	if (al_number_value(&v, s) != 0)
		al_error_clear();
	return v;
}

/* A param's text → typed value (README "params"). A final newline is dropped. Text that cannot
 * be stored as written (a NUL, bytes that are not UTF-8) is refused; JSON that parses but cannot
 * be stored exactly (too deep, a key twice, an integer past int64) is refused with the reason;
 * text that is no JSON at all ("[WIP] run") is a string. */
static int param_from_text(cJSON **out, const char *text, size_t len)
{
	char *s = NULL;
	size_t n = len;
	int rc = 0;

	*out = NULL;
	if (n && text[n - 1] == '\n')
		n--;
	if (n && text[n - 1] == '\r')
		n--;
	if (memchr(text, '\0', n))
		return al_error_set(AL_EINVAL, "a param value cannot hold a NUL byte");
	if (!al_utf8_valid(text, n))
		return al_error_set(AL_EINVAL, "a param value must be UTF-8 text");
	if (!(s = strndup(text, n)))
		return al_error_set(AL_ENOMEM, "out of memory");
	if (n && is_number_text(s) && (*out = number_from_text(s)))
		goto done;
	if (!strcmp(s, "true") || !strcmp(s, "false")) {
		*out = al_value_bool(s[0] == 't');
		goto done;
	}
	if (s[0] == '{' || s[0] == '[') {
		cJSON *lenient;
		if (al_json_to_value(out, s, n) == 0)
			goto done;
		/* Valid JSON we cannot keep exactly is refused; anything else is text. */
		if ((lenient = cJSON_ParseWithOpts(s, NULL, 1))) {   /* the whole text, nothing after */
			cJSON_Delete(lenient);
			rc = AL_EINVAL;   /* al_json_to_value's message says why */
			goto done;
		}
	}
	*out = al_value_string(s);
done:
	if (rc == 0 && !*out)
		rc = al_error_set(AL_ENOMEM, "out of memory");
	free(s);
	return rc;
}

/* A typed value as a line of text: strings raw, numbers shortest, maps/arrays compact JSON. */
static int value_text(al_buf *b, const cJSON *v)
{
	int64_t i;
	double d;
	int bo, rc;
	const char *s;
	char num[64], *p = NULL;
	cJSON *j;

	if ((s = al_value_get_string(v)))
		return al_buf_puts(b, s);
	if (al_value_get_int(&i, v) == 0)
		return al_buf_printf(b, "%lld", (long long)i);
	if (al_value_get_double(&d, v) == 0) {
		al_double_format(num, d);
		return al_buf_puts(b, num);
	}
	if (al_value_get_bool(&bo, v) == 0)
		return al_buf_puts(b, bo ? "true" : "false");
	j = al_value_to_json(v);
	rc = j ? al_json_print(&p, NULL, j, 0) : 0;
	if (rc == 0)
		rc = al_buf_puts(b, p ? p : "null");
	free(p);
	cJSON_Delete(j);
	return rc;
}

static int json_out(al_buf *b, cJSON *j, int pretty)
{
	char *p = NULL;
	size_t len = 0;
	int rc = al_json_print(&p, &len, j, pretty ? AL_JSON_PRETTY : 0);
	if (rc == 0)
		rc = al_buf_put(b, p, len);
	if (rc == 0)
		rc = al_buf_puts(b, "\n");
	free(p);
	return rc;
}

/* A double for generated JSON: read back as the same double by any reader (json.h). */
static cJSON *double_json(double v)
{
	char num[40];
	al_json_double(num, v);
	return cJSON_CreateRaw(num);
}

/* An int64 for generated JSON: exact past 2^53 (al_json_print copies raw text). */
static cJSON *int_json(int64_t v)
{
	char num[32];
	snprintf(num, sizeof(num), "%lld", (long long)v);
	return cJSON_CreateRaw(num);
}

static void time_json(cJSON *o, const char *key, const cJSON *fields, const char *field)
{
	int64_t us;
	char buf[48];
	if (al_fields_get_time(&us, fields, field) == 0)
		cJSON_AddStringToObject(o, key, al_time_format(buf, us, 6));
	else
		cJSON_AddNullToObject(o, key);
}

static void field_json(cJSON *o, const char *key, const cJSON *fields, const char *field)
{
	const cJSON *v = al_fields_get(fields, field);
	cJSON *j = v ? al_value_to_json(v) : NULL;
	cJSON_AddItemToObject(o, key, j ? j : cJSON_CreateNull());
}


static int dataset_settle(al_tree *t, const char *ds_doc);

/* ---- rendering generated files -------------------------------------------------------- */

static int render_params_json(al_buf *b, const al_doc *run)
{
	const cJSON *hp = al_value_get_map(al_fields_get(run->fields, "hyper_params"));
	cJSON *o = cJSON_CreateObject(), *it;
	int rc;
	if (hp)
		cJSON_ArrayForEach(it, hp)
			cJSON_AddItemToObject(o, it->string, al_value_to_json(it));
	rc = json_out(b, o, 1);
	cJSON_Delete(o);
	return rc;
}

static int artifacts_summary(uint64_t *count, uint64_t *bytes, int64_t *mtime, al_tree *t,
	const char *run_doc)
{
	al_doc_list *l = NULL;
	char *coll = xasprintf("%s/artifacts", run_doc);
	size_t i;
	int rc;
	*count = *bytes = 0;
	al_store_cache_prefetch(t->series_store, run_doc, "artifacts");   /* see al_tree_readdir */
	rc = al_store_list(&l, t->store, coll, NULL, NULL);
	for (i = 0; rc == 0 && i < l->count; i++) {
		int64_t sz;
		const char *type = al_fields_get_string(l->docs[i]->fields, "type");
		if (type && strcmp(type, "dir") == 0)
			continue;
		(*count)++;
		if (al_fields_get_int(&sz, l->docs[i]->fields, "size") == 0)
			*bytes += (uint64_t)sz;
		if (l->docs[i]->update_us > *mtime)
			*mtime = l->docs[i]->update_us;
	}
	al_doc_list_free(l);
	free(coll);
	return rc;
}

static int render_run_json(al_buf *b, int64_t *mtime, al_tree *t, const node *n, const al_doc *run)
{
	cJSON *o = cJSON_CreateObject(), *git, *metrics, *datasets, *arts, *params;
	const cJSON *f = run->fields, *ds, *it;
	char **ids = NULL;
	size_t nids = 0, i;
	uint64_t acount, abytes;
	int rc;

	cJSON_AddStringToObject(o, "id", n->run);
	cJSON_AddStringToObject(o, "project", n->project);
	cJSON_AddStringToObject(o, "experiment", n->experiment);
	field_json(o, "status", f, "status");
	time_json(o, "created", f, "created");
	time_json(o, "started", f, "started");
	time_json(o, "ended", f, "ended");
	field_json(o, "fold", f, "fold");
	field_json(o, "model", f, "model");
	field_json(o, "description", f, "description");
	field_json(o, "host", f, "host");
	field_json(o, "user", f, "user");
	field_json(o, "command", f, "command");
	field_json(o, "cwd", f, "cwd");
	field_json(o, "exit_code", f, "exit_code");
	{
		/* times the run was set running again after it had ended (README "Run lifecycle") */
		const cJSON *res = al_value_get_array(al_fields_get(f, "resumed")), *it2;
		cJSON *list = cJSON_AddArrayToObject(o, "resumed");
		cJSON_ArrayForEach(it2, res) {
			int64_t us;
			char tb[48];
			if (al_value_get_time(&us, it2) == 0)
				cJSON_AddItemToArray(list, cJSON_CreateString(al_time_format(tb, us, 6)));
		}
	}
	git = al_fields_get(f, "git") ? al_value_to_json(al_fields_get(f, "git")) : NULL;
	cJSON_AddItemToObject(o, "git", git ? git : cJSON_CreateNull());
	params = cJSON_CreateObject();
	if ((it = al_value_get_map(al_fields_get(f, "hyper_params")))) {
		const cJSON *p;
		cJSON_ArrayForEach(p, it)
			cJSON_AddItemToObject(params, p->string, al_value_to_json(p));
	}
	cJSON_AddItemToObject(o, "params", params);
	metrics = cJSON_AddObjectToObject(o, "metrics");
	al_store_cache_prefetch(t->series_store, n->run_doc, "metrics");
	if ((rc = al_series_ids(&ids, &nids, t->series, n->run_doc)))
		goto cleanup;
	for (i = 0; i < nids; i++) {
		al_series_summary s;
		char *doc = xasprintf("%s/metrics/%s", n->run_doc, ids[i]);
		char *name = al_id_decode(ids[i]);
		if (doc && name && al_series_summary_get(&s, t->series, doc) == 0) {
			cJSON *m = cJSON_AddObjectToObject(metrics, name);
			if (s.update_us > *mtime)
				*mtime = s.update_us;
			/* NaN and infinities print as Python's json writes them (README "run.json") */
			cJSON_AddItemToObject(m, "last", double_json(s.last));
			cJSON_AddItemToObject(m, "step", int_json(s.step));
			cJSON_AddItemToObject(m, "count", int_json((int64_t)s.count));
			/* min/max are NaN only when no point had a comparable value */
			cJSON_AddItemToObject(m, "min", isnan(s.min) ? cJSON_CreateNull() : double_json(s.min));
			cJSON_AddItemToObject(m, "max", isnan(s.max) ? cJSON_CreateNull() : double_json(s.max));
		}
		free(doc);
		free(name);
	}
	datasets = cJSON_AddArrayToObject(o, "datasets");
	if ((ds = al_value_get_map(al_fields_get(f, "datasets")))) {
		cJSON_ArrayForEach(it, ds) {
			const cJSON *m = al_value_get_map(it);
			cJSON *e = cJSON_CreateObject();
			cJSON_AddStringToObject(e, "name", it->string);
			field_json(e, "dataset", m, "dataset");
			field_json(e, "version", m, "version");
			cJSON_AddItemToArray(datasets, e);
		}
	}
	if ((rc = artifacts_summary(&acount, &abytes, mtime, t, n->run_doc)))
		goto cleanup;
	arts = cJSON_AddObjectToObject(o, "artifacts");
	cJSON_AddItemToObject(arts, "count", int_json((int64_t)acount));
	cJSON_AddItemToObject(arts, "bytes", int_json((int64_t)abytes));
	rc = json_out(b, o, 1);
cleanup:
	al_strings_free(ids, nids);
	cJSON_Delete(o);
	return rc;
}

static int csv_field(al_buf *b, const char *s)
{
	int rc = 0;
	if (!strpbrk(s, ",\"\r\n"))
		return al_buf_puts(b, s);
	rc |= al_buf_puts(b, "\"");
	for (; *s && rc == 0; s++)
		rc = *s == '"' ? al_buf_puts(b, "\"\"") : al_buf_put(b, s, 1);
	return rc ? rc : al_buf_puts(b, "\"");
}

/* Numeric ids in numeric order (any length: compared as digit strings), then the others by
 * bytes. */
static int cmp_run_ids(const void *a, const void *b)
{
	const char *x = al_doc_id((*(al_doc *const *)a)->path), *y = al_doc_id((*(al_doc *const *)b)->path);
	int ix = *x && strspn(x, "0123456789") == strlen(x), iy = *y && strspn(y, "0123456789") == strlen(y);
	if (ix && iy) {
		size_t lx, ly;
		while (x[0] == '0' && x[1])
			x++;
		while (y[0] == '0' && y[1])
			y++;
		lx = strlen(x);
		ly = strlen(y);
		return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
	}
	if (ix != iy)
		return ix ? -1 : 1;
	return strcmp(x, y);
}

typedef struct keyset {
	char **keys;
	size_t n, cap;
} keyset;

static void keyset_add(keyset *k, const char *key)
{
	size_t i;
	for (i = 0; i < k->n; i++)
		if (strcmp(k->keys[i], key) == 0)
			return;
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 16;
		char **p = realloc(k->keys, cap * sizeof(char *));
		if (!p)
			return;
		k->keys = p;
		k->cap = cap;
	}
	k->keys[k->n++] = strdup(key);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int render_runs_csv(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc_list *runs = NULL;
	char *coll = xasprintf("%s/runs", n->exp_doc);
	keyset pk = {0}, mk = {0};
	cJSON **metrics = NULL;   /* per run: name → last value (plain JSON numbers) */
	size_t i, k;
	int rc;

	if ((rc = al_store_list(&runs, t->store, coll, NULL, NULL)))
		goto cleanup;
	qsort(runs->docs, runs->count, sizeof(al_doc *), cmp_run_ids);
	if (!(metrics = calloc(runs->count + 1, sizeof(cJSON *)))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < runs->count; i++) {
		const cJSON *hp = al_value_get_map(al_fields_get(runs->docs[i]->fields, "hyper_params")), *it;
		char **ids = NULL;
		size_t nids = 0;
		if (hp)
			cJSON_ArrayForEach(it, hp)
				keyset_add(&pk, it->string);
		metrics[i] = cJSON_CreateObject();
		if (runs->docs[i]->update_us > *mtime)
			*mtime = runs->docs[i]->update_us;
		al_store_cache_prefetch(t->series_store, runs->docs[i]->path, "metrics");
		if (al_series_ids(&ids, &nids, t->series, runs->docs[i]->path) == 0) {
			for (k = 0; k < nids; k++) {
				al_series_summary s;
				char *doc = xasprintf("%s/metrics/%s", runs->docs[i]->path, ids[k]);
				char *name = al_id_decode(ids[k]);
				if (doc && name && al_series_summary_get(&s, t->series, doc) == 0 && s.count) {
					keyset_add(&mk, name);
					if (s.update_us > *mtime)
						*mtime = s.update_us;
					cJSON_AddNumberToObject(metrics[i], name, s.last);
					if (isnan(s.last) || isinf(s.last)) {
						char num[32];
						al_double_format(num, s.last);
						cJSON_ReplaceItemInObject(metrics[i], name, cJSON_CreateString(num));
					}
				}
				free(doc);
				free(name);
			}
			al_strings_free(ids, nids);
		}
	}
	qsort(pk.keys, pk.n, sizeof(char *), cmp_str);
	qsort(mk.keys, mk.n, sizeof(char *), cmp_str);
	al_buf_puts(b, "id,status,fold,model,created,ended,git_commit");
	for (k = 0; k < pk.n; k++) {
		char *h = xasprintf("param.%s", pk.keys[k]);
		al_buf_puts(b, ",");
		csv_field(b, h);
		free(h);
	}
	for (k = 0; k < mk.n; k++) {
		char *h = xasprintf("metric.%s", mk.keys[k]);
		al_buf_puts(b, ",");
		csv_field(b, h);
		free(h);
	}
	al_buf_puts(b, "\r\n");
	for (i = 0; i < runs->count; i++) {
		const cJSON *f = runs->docs[i]->fields, *v;
		const cJSON *hp = al_value_get_map(al_fields_get(f, "hyper_params"));
		const cJSON *git = al_value_get_map(al_fields_get(f, "git"));
		al_buf cell = AL_BUF_INIT;
		int64_t us;
		char tb[48];
		const char *names[] = {"status", "fold", "model"};

		csv_field(b, al_doc_id(runs->docs[i]->path));
		for (k = 0; k < 3; k++) {
			al_buf_puts(b, ",");
			al_buf_clear(&cell);
			if ((v = al_fields_get(f, names[k])) && !cJSON_GetObjectItem(v, "nullValue"))
				value_text(&cell, v);
			csv_field(b, cell.ptr ? cell.ptr : "");
		}
		al_buf_printf(b, ",%s", al_fields_get_time(&us, f, "created") == 0 ? al_time_format(tb, us, 6) : "");
		al_buf_printf(b, ",%s", al_fields_get_time(&us, f, "ended") == 0 ? al_time_format(tb, us, 6) : "");
		al_buf_printf(b, ",%s", git && al_fields_get_string(git, "commit") ? al_fields_get_string(git, "commit") : "");
		for (k = 0; k < pk.n; k++) {
			al_buf_puts(b, ",");
			al_buf_clear(&cell);
			if (hp && (v = al_fields_get(hp, pk.keys[k])))
				value_text(&cell, v);
			csv_field(b, cell.ptr ? cell.ptr : "");
		}
		for (k = 0; k < mk.n; k++) {
			const cJSON *m = cJSON_GetObjectItem(metrics[i], mk.keys[k]);
			char num[32] = "";
			al_buf_puts(b, ",");
			if (m && cJSON_IsNumber(m))
				al_double_format(num, m->valuedouble);
			else if (m && cJSON_IsString(m))
				snprintf(num, sizeof(num), "%s", m->valuestring);
			al_buf_puts(b, num);
		}
		al_buf_puts(b, "\r\n");
		al_buf_dispose(&cell);
	}
cleanup:
	for (i = 0; metrics && runs && i < runs->count; i++)
		cJSON_Delete(metrics[i]);
	free(metrics);
	al_strings_free(pk.keys, pk.n);
	al_strings_free(mk.keys, mk.n);
	al_doc_list_free(runs);
	free(coll);
	return rc;
}

static int render_dataset_json(al_buf *b, const al_doc *ds)
{
	cJSON *o = cJSON_CreateObject();
	int rc;
	field_json(o, "name", ds->fields, "name");
	field_json(o, "version", ds->fields, "version");
	field_json(o, "files", ds->fields, "files");
	field_json(o, "bytes", ds->fields, "bytes");
	time_json(o, "created", ds->fields, "created");
	field_json(o, "description", ds->fields, "description");
	rc = json_out(b, o, 1);
	cJSON_Delete(o);
	return rc;
}

static int render_map_json(al_buf *b, const cJSON *fields)
{
	cJSON *o = cJSON_CreateObject(), *it;
	int rc;
	cJSON_ArrayForEach(it, fields)
		cJSON_AddItemToObject(o, it->string, al_value_to_json(it));
	rc = json_out(b, o, 1);
	cJSON_Delete(o);
	return rc;
}

/* status/fold/model/description of a run or experiment: the value and a newline. */
static int render_text_field(al_buf *b, const cJSON *fields, const char *name)
{
	const cJSON *v = al_fields_get(fields, name);
	int rc = 0;
	if (v && !cJSON_GetObjectItem(v, "nullValue"))
		rc = value_text(b, v);
	if (rc == 0 && b->len > 0)
		rc = al_buf_puts(b, "\n");
	return rc;
}

/* Renders the content of a generated or document-backed file; *mtime (when not NULL) is raised to
 * the newest change among what it was made of (README "Files behave like files": mtimes move with
 * content, so rsync -a and make see every change). */
static int render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	int64_t mt = 0;
	al_doc *d = NULL;
	int rc = 0;

	switch (n->kind) {
	case N_CTL_STATUS: {
		char *s = NULL;
		if ((rc = al_tree_status(&s, t)) == 0)
			rc = al_buf_puts(b, s);
		free(s);
		mt = al_now_us();   /* live */
		break;
	}
	case N_METADATA: {
		char *p = xasprintf("%s/metadata/%s", n->proj_doc, n->name);
		if ((rc = get_doc(&d, t, p)) == 0)
			rc = render_map_json(b, d->fields);
		free(p);
		break;
	}
	case N_DATASET_JSON:
		dataset_settle(t, n->ds_doc);
		if ((rc = get_doc(&d, t, n->ds_doc)) == 0)
			rc = render_dataset_json(b, d);
		break;
	case N_EXP_DESCRIPTION:
	case N_DS_DESCRIPTION:
		if ((rc = get_doc(&d, t, n->kind == N_DS_DESCRIPTION ? n->ds_doc : n->exp_doc)) == 0)
			rc = render_text_field(b, d->fields, "description");
		break;
	case N_RUNS_CSV:
		if ((rc = doc_exists(t, n->exp_doc)) == 0)
			rc = render_runs_csv(b, &mt, t, n);
		break;
	case N_RUN_JSON:
		if ((rc = get_doc(&d, t, n->run_doc)) == 0)
			rc = render_run_json(b, &mt, t, n, d);
		break;
	case N_RUN_TEXT:
		if ((rc = get_doc(&d, t, n->run_doc)) == 0)
			rc = render_text_field(b, d->fields, n->name);
		break;
	case N_PARAMS_JSON:
		if ((rc = get_doc(&d, t, n->run_doc)) == 0)
			rc = render_params_json(b, d);
		break;
	case N_PARAMS: {
		const cJSON *hp, *v;
		if ((rc = get_doc(&d, t, n->run_doc)))
			break;
		hp = al_value_get_map(al_fields_get(d->fields, "hyper_params"));
		v = hp && *n->rest ? al_fields_get(hp, n->rest) : NULL;
		if (!v) {
			rc = al_error_set(AL_ENOTFOUND, "no param %s", n->rest);
			break;
		}
		if ((rc = value_text(b, v)) == 0)
			rc = al_buf_puts(b, "\n");
		break;
	}
	default:
		rc = al_error_set(AL_EINVAL, "not a generated file");
	}
	if (d && d->update_us > mt)
		mt = d->update_us;
	if (mtime && mt > *mtime)
		*mtime = mt;
	al_doc_free(d);
	return rc;
}

/* ---- attributes ----------------------------------------------------------------------- */


/* Every change calls this once it is visible. */
static void changed(al_tree *t)
{
	__atomic_add_fetch(&t->gen, 1, __ATOMIC_SEQ_CST);
}

static void acache_clear(al_tree *t)
{
	size_t i;
	attr_entry *e, *next;
	for (i = 0; t->acache && i < ACACHE_BUCKETS; i++) {
		for (e = t->acache[i]; e; e = next) {
			next = e->next;
			free(e->path);
			free(e);
		}
		t->acache[i] = NULL;
	}
	t->acount = 0;
}

static int getattr_uncached(al_attr *out, al_tree *t, const char *path);

int al_tree_getattr(al_attr *out, al_tree *t, const char *path)
{
	size_t b = al__str_hash(path) % ACACHE_BUCKETS;
	uint64_t g0 = __atomic_load_n(&t->gen, __ATOMIC_SEQ_CST);
	attr_entry *e;
	int rc;

	/* The live status changes without any change to the tree. */
	if (strncmp(path, "/.aletheia", 10) == 0)
		return getattr_uncached(out, t, path);
	pthread_mutex_lock(&t->alock);
	for (e = t->acache[b]; e; e = e->next)
		if (strcmp(e->path, path) == 0)
			break;
	if (e && e->gen == g0 && e->expires_us > al_now_us()) {
		*out = e->attr;
		rc = e->rc;
		pthread_mutex_unlock(&t->alock);
		if (rc)
			al_error_set(rc, "no such entry: %s", path);
		return rc;
	}
	pthread_mutex_unlock(&t->alock);
	rc = getattr_uncached(out, t, path);
	if (rc && rc != AL_ENOTFOUND)
		return rc;
	pthread_mutex_lock(&t->alock);
	/* Only an answer computed with no change in between may be kept. */
	if (__atomic_load_n(&t->gen, __ATOMIC_SEQ_CST) == g0) {
		for (e = t->acache[b]; e; e = e->next)
			if (strcmp(e->path, path) == 0)
				break;
		if (!e) {
			if (t->acount >= ACACHE_MAX)
				acache_clear(t);
			e = calloc(1, sizeof(*e));
			if (e && !(e->path = strdup(path))) {
				free(e);
				e = NULL;
			}
			if (e) {
				e->next = t->acache[b];
				t->acache[b] = e;
				t->acount++;
			}
		}
		if (e) {
			e->attr = *out;
			e->rc = rc;
			e->gen = g0;
			e->expires_us = t->attr_ttl_us == INT64_MAX ? INT64_MAX : al_now_us() + t->attr_ttl_us;
		}
	}
	pthread_mutex_unlock(&t->alock);
	if (rc)
		al_error_set(rc, "no such entry: %s", path);
	return rc;
}

static void attr_dir(al_attr *a, int64_t mtime)
{
	memset(a, 0, sizeof(*a));
	a->type = AL_NODE_DIR;
	a->mode = 0755;
	a->mtime_us = a->ctime_us = mtime;
}

static void attr_file(al_attr *a, unsigned mode, uint64_t size, int64_t mtime)
{
	memset(a, 0, sizeof(*a));
	a->type = AL_NODE_FILE;
	a->mode = mode;
	a->size = size;
	a->mtime_us = a->ctime_us = mtime;
}

/* A file being written through an open handle, visible before its first close. */
static al_file *find_writer(al_tree *t, const char *path)
{
	al_file *f;
	for (f = t->writers; f; f = f->next)
		if (strcmp(f->path, path) == 0)
			return f;
	return NULL;
}

static int writer_attr(al_attr *out, al_tree *t, const char *path, unsigned mode)
{
	al_file *f;
	struct stat st;
	int found = 0;

	pthread_mutex_lock(&t->lock);
	if ((f = find_writer(t, path))) {
		uint64_t size = f->kind == F_TEXT ? f->text.len : 0;
		if (f->kind == F_BLOB_WRITE && fstat(f->fd, &st) == 0)
			size = (uint64_t)st.st_size;
		/* A stable mtime: one that moved on every stat would make the kernel drop the page
		 * cache of a file in use (a database's mmap'ed -shm) each time. */
		attr_file(out, mode, size, __atomic_load_n(&f->mtime_us, __ATOMIC_RELAXED));
		found = 1;
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}

static int has_vdir(al_tree *t, const char *path)
{
	vdir *v;
	int found = 0;
	pthread_mutex_lock(&t->lock);
	for (v = t->vdirs; v && !found; v = v->next)
		found = strcmp(v->path, path) == 0;
	pthread_mutex_unlock(&t->lock);
	return found;
}

/* ---- scratch files ---------------------------------------------------------------------- */

/* Editors and in-place tools write a temporary, swap, lock or backup file beside the file they
 * change (README "Editing values in place"). Where values live — params/, metadata/, a run's and
 * an experiment's folder — names of that kind are scratch files: held in memory, never recorded,
 * deletable without --allow-delete, gone at unmount. Renaming one over a value's file records its
 * content as that file's new value. */
#define SCRATCH_MAX (16u << 20)      /* one file, as a small text file */
#define SCRATCH_TOTAL (256u << 20)   /* all of them together */

static int all_of(const char *s, size_t n, const char *set)
{
	size_t i;
	for (i = 0; i < n; i++)
		if (!s[i] || !strchr(set, s[i]))
			return 0;
	return 1;
}

#define ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

static int scratch_name(const char *name)
{
	size_t n = strlen(name);
	unsigned long v;
	char *end;

	if (n == 0)
		return 0;
	/* hidden files (vim's .x.swp/.x.swpx/.x.swo, nano's .x.swp lock, rsync's and other writers'
	 * dot-temporaries), backups (x~ of vim, nano -B, emacs), emacs' #x# */
	if (name[0] == '.' || name[n - 1] == '~' || (n > 1 && name[0] == '#' && name[n - 1] == '#'))
		return 1;
	if (n > 4 && strcmp(name + n - 4, ".tmp") == 0)
		return 1;
	if (n == 9 && strncmp(name, "sed", 3) == 0 && all_of(name + 3, 6, ALNUM))
		return 1;   /* sed -i: mkstemp("sedXXXXXX") */
	if (n == 8 && strncmp(name, "XX", 2) == 0 && all_of(name + 2, 6, ALNUM))
		return 1;   /* perl -i: mkstemp("XXXXXXXX") keeps the first two */
	if (n == 11 && strncmp(name, "tmp", 3) == 0 &&
	    all_of(name + 3, 8, "abcdefghijklmnopqrstuvwxyz0123456789_"))
		return 1;   /* Python's tempfile.mkstemp() and NamedTemporaryFile() */
	/* vim's probe of whether it may write a new file: "4913", then 5036, 5159, … while taken */
	if (isdigit((unsigned char)name[0]) && (v = strtoul(name, &end, 10), !*end) && v >= 4913 &&
	    (v - 4913) % 123 == 0 && v < 4913 + 123 * 16)
		return 1;
	return 0;
}

/* 1 when path is a scratch file's place: a scratch name right in params/ (or a folder of it),
 * metadata/, a run's or an experiment's folder. *parent then holds that folder's node, and
 * *dir its path (both the caller's). */
static int scratch_place(node *parent, char **dir, const char *path)
{
	const char *name = last_segment(path);
	int ok;

	memset(parent, 0, sizeof(*parent));
	*dir = NULL;
	if (name == path || !scratch_name(name) || !(*dir = strndup(path, (size_t)(name - 1 - path))))
		return 0;
	ok = node_parse(parent, **dir ? *dir : "/") == 0;
	if (ok && parent->kind != N_PARAMS && parent->kind != N_METADATA_DIR && parent->kind != N_RUN &&
	    parent->kind != N_EXPERIMENT)
		ok = 0;
	if (!ok) {
		node_free(parent);
		free(*dir);
		*dir = NULL;
	}
	return ok;
}

/* In t->lock. */
static scratch *scratch_find(al_tree *t, const char *path)
{
	scratch *s;
	for (s = t->scratch; s; s = s->next)
		if (strcmp(s->path, path) == 0)
			return s;
	return NULL;
}

/* Takes s out of the list (unlinked, or renamed over a file); handles keep it. In t->lock. */
static void scratch_unlink_locked(al_tree *t, scratch *s)
{
	scratch **p;
	for (p = &t->scratch; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	free(s->path);
	s->path = NULL;
	s->next = NULL;
}

/* Drops one reference. In t->lock. */
static void scratch_put_locked(al_tree *t, scratch *s)
{
	if (--s->refs)
		return;
	t->scratch_bytes -= s->data.len;
	al_buf_dispose(&s->data);
	free(s->commit_to);
	free(s);
}

static int scratch_attr(al_attr *out, al_tree *t, const char *path)
{
	scratch *s;
	int found = 0;
	if (!scratch_name(last_segment(path)))
		return 0;
	pthread_mutex_lock(&t->lock);
	if ((s = scratch_find(t, path))) {
		attr_file(out, 0644, s->data.len, s->mtime_us);
		found = 1;
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}

/* Sets the length of a scratch file's content, zero-filling what grows. In t->lock. */
static int scratch_resize_locked(al_tree *t, scratch *s, size_t len)
{
	size_t old = s->data.len;
	int rc;
	if (len > SCRATCH_MAX)
		return al_error_set(AL_ENOSPC, "%s: editors' scratch files hold at most %u MiB", s->path ? s->path : "",
			SCRATCH_MAX >> 20);
	if (len > old) {
		if (t->scratch_bytes + (len - old) > SCRATCH_TOTAL)
			return al_error_set(AL_ENOSPC, "scratch files take %u MiB of memory at most: delete some",
				SCRATCH_TOTAL >> 20);
		if ((rc = al_buf_grow(&s->data, len - old)))
			return rc;
		memset(s->data.ptr + old, 0, len - old);
		t->scratch_bytes += len - old;
	} else
		t->scratch_bytes -= old - len;
	s->data.len = len;
	if (s->data.ptr)
		s->data.ptr[len] = '\0';
	return 0;
}

/* Range of encoded ids under the folder `rest` of a blob collection: [from, to). */
static void child_range(char **from, char **to, const char *rest)
{
	char *enc;
	if (!*rest) {
		*from = *to = NULL;
		return;
	}
	/* Children of "a/b" have ids starting "a%2Fb%2F"; 'G' follows 'F'. */
	enc = al_id_encode(rest);
	*from = xasprintf("%s%%2F", enc);
	*to = xasprintf("%s%%2G", enc);
	free(enc);
}

/* Attributes of a file or folder in a blob collection (artifacts, dataset files, logs). */
static int blob_attr(al_attr *out, al_tree *t, const node *n, const char *path, unsigned mode)
{
	al_doc *d = NULL;
	al_doc_list *l = NULL;
	char *id, *doc, *from = NULL, *to = NULL;
	int rc;

	if (!*n->rest) {
		/* A collection's root shows its last change, kept on its owner (record_file). */
		int64_t mtime = t->mount_us;
		if (get_doc(&d, t, n->kind == N_DATASET_PATH ? n->ds_doc : n->run_doc ? n->run_doc :
			n->exp_doc) == 0 && al_fields_get_time(&mtime, d->fields, "files_updated") != 0)
			mtime = d->update_us;
		al_doc_free(d);
		al_error_clear();
		attr_dir(out, mtime);
		return 0;
	}
	if (writer_attr(out, t, path, mode))
		return 0;
	id = al_id_encode(n->rest);
	doc = xasprintf("%s/%s", n->coll, id);
	rc = al_store_get(&d, t->store, doc);
	if (rc == 0) {
		const char *type = al_fields_get_string(d->fields, "type");
		int64_t size = 0, mtime = d->update_us;
		al_fields_get_int(&size, d->fields, "size");
		al_fields_get_time(&mtime, d->fields, "mtime");
		if (type && strcmp(type, "dir") == 0)
			attr_dir(out, mtime);
		else {
			attr_file(out, mode, (uint64_t)size, mtime);
			out->immutable = 1;
		}
		goto cleanup;
	}
	if (rc != AL_ENOTFOUND)
		goto cleanup;
	child_range(&from, &to, n->rest);
	if ((rc = al_store_list(&l, t->store, n->coll, from, to)))
		goto cleanup;
	if (l->count > 0) {
		int64_t newest = 0;
		for (size_t i = 0; i < l->count; i++)
			if (l->docs[i]->update_us > newest)
				newest = l->docs[i]->update_us;
		attr_dir(out, newest);
	} else
		rc = al_error_set(AL_ENOTFOUND, "no such file: %s", n->rest);
cleanup:
	al_doc_list_free(l);
	al_doc_free(d);
	free(id);
	free(doc);
	free(from);
	free(to);
	return rc;
}

static int generated_attr(al_attr *out, al_tree *t, const node *n, unsigned mode, int64_t mtime)
{
	al_buf b = AL_BUF_INIT;
	int rc = render(&b, &mtime, t, n);
	if (rc == 0)
		attr_file(out, mode, b.len, mtime);
	al_buf_dispose(&b);
	return rc;
}

static int key_prefix_exists(const cJSON *map, const char *prefix)
{
	const cJSON *it;
	size_t n = strlen(prefix);
	if (!map)
		return 0;
	cJSON_ArrayForEach(it, map)
		if (strncmp(it->string, prefix, n) == 0 && it->string[n] == '/')
			return 1;
	return 0;
}

static int metric_attr(al_attr *out, al_tree *t, const node *n, const char *path, unsigned mode,
	int64_t run_mtime)
{
	al_series_summary s;
	char *id, *doc, **ids = NULL, *prefix;
	size_t nids = 0, i, plen;
	int rc;

	if (!*n->rest) {
		attr_dir(out, run_mtime);
		return 0;
	}
	id = al_id_encode(n->rest);
	doc = xasprintf("%s/metrics/%s", n->run_doc, id);
	rc = al_series_summary_get(&s, t->series, doc);
	free(doc);
	if (rc == 0) {
		free(id);
		attr_file(out, mode, s.text_bytes, s.update_us ? s.update_us : run_mtime);
		return 0;
	}
	if (writer_attr(out, t, path, mode)) {
		free(id);
		return 0;
	}
	/* A folder of metrics (val/loss makes val a folder). */
	prefix = xasprintf("%s%%2F", id);
	plen = strlen(prefix);
	free(id);
	rc = al_series_ids(&ids, &nids, t->series, n->run_doc);
	for (i = 0; rc == 0 && i < nids; i++)
		if (strncmp(ids[i], prefix, plen) == 0)
			break;
	if (rc == 0 && (i < nids || has_vdir(t, path)))
		attr_dir(out, run_mtime);
	else if (rc == 0)
		rc = al_error_set(AL_ENOTFOUND, "no such metric: %s", n->rest);
	al_strings_free(ids, nids);
	free(prefix);
	return rc;
}

static int getattr_recorded(al_attr *out, al_tree *t, const char *path);

static int getattr_uncached(al_attr *out, al_tree *t, const char *path)
{
	if (scratch_attr(out, t, path))
		return 0;
	return getattr_recorded(out, t, path);
}

/* Everything but scratch files. */
static int getattr_recorded(al_attr *out, al_tree *t, const char *path)
{
	node n;
	al_doc *d = NULL;
	int rc, running;
	unsigned rw;

	if ((rc = node_parse(&n, path)))
		return rc;
	/* A name no document can have does not exist; the store need not be asked. */
	if ((n.project && check_name(n.project)) || (n.experiment && check_name(n.experiment)) ||
	    (n.run && check_name(n.run)) || (n.dataset && check_name(n.dataset)) ||
	    (n.kind == N_METADATA && check_name(n.name))) {
		node_free(&n);
		return al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
	}
	switch (n.kind) {
	case N_ROOT:
	case N_CTL:
		attr_dir(out, t->mount_us);
		goto cleanup;
	case N_CTL_STATUS:
		rc = generated_attr(out, t, &n, 0444, 0);
		goto cleanup;
	case N_CTL_IMPORT:
		attr_file(out, 0600, 0, t->mount_us);   /* lines in; reads as an empty file */
		goto cleanup;
	case N_CTL_FSCK:
		attr_file(out, 0600, 0, t->mount_us);   /* empty until a handle asks for a check */
		goto cleanup;
	default:
		break;
	}
	/* Everything else lives in a project. */
	if (n.kind == N_PROJECT || n.kind == N_METADATA_DIR || n.kind == N_DATASETS ||
	    n.kind == N_EXPERIMENTS) {
		if ((rc = get_doc(&d, t, n.proj_doc)))
			goto cleanup;
		attr_dir(out, d->update_us);
		goto cleanup;
	}
	switch (n.kind) {
	case N_METADATA: {
		char *p = xasprintf("%s/metadata/%s", n.proj_doc, n.name);
		rc = get_doc(&d, t, p);
		free(p);
		if (rc == 0)
			rc = generated_attr(out, t, &n, 0644, d->update_us);
		else if (writer_attr(out, t, path, 0644))
			rc = 0;
		goto cleanup;
	}
	case N_DATASET:
		if ((rc = get_doc(&d, t, n.ds_doc)) == 0)
			attr_dir(out, d->update_us);
		goto cleanup;
	case N_DATASET_JSON:
		if ((rc = get_doc(&d, t, n.ds_doc)) == 0)
			rc = generated_attr(out, t, &n, 0444, d->update_us);
		goto cleanup;
	case N_DS_DESCRIPTION:
		if ((rc = get_doc(&d, t, n.ds_doc)) == 0)
			rc = generated_attr(out, t, &n, 0644, d->update_us);
		goto cleanup;
	case N_DATASET_PATH:
		if ((rc = doc_exists(t, n.ds_doc)) == 0)
			rc = blob_attr(out, t, &n, path, 0444);
		goto cleanup;
	case N_EXPERIMENT:
	case N_RUNS:
		if ((rc = get_doc(&d, t, n.exp_doc)) == 0)
			attr_dir(out, d->update_us);
		goto cleanup;
	case N_EXP_DESCRIPTION:
		if ((rc = get_doc(&d, t, n.exp_doc)) == 0)
			rc = generated_attr(out, t, &n, 0644, d->update_us);
		goto cleanup;
	case N_RUNS_CSV:
		if ((rc = get_doc(&d, t, n.exp_doc)) == 0)
			rc = generated_attr(out, t, &n, 0444, d->update_us);
		goto cleanup;
	case N_EXP_ARTIFACT:
		if ((rc = doc_exists(t, n.exp_doc)) == 0)
			rc = blob_attr(out, t, &n, path, 0644);
		goto cleanup;
	default:
		break;
	}
	/* Inside a run. */
	if ((rc = get_doc(&d, t, n.run_doc)))
		goto cleanup;
	running = run_is_running(d);
	rw = running ? 0644 : 0444;
	switch (n.kind) {
	case N_RUN:
	case N_RUN_DATASETS:
		attr_dir(out, d->update_us);
		break;
	case N_RUN_JSON:
		rc = generated_attr(out, t, &n, 0444, d->update_us);
		break;
	case N_RUN_TEXT: {
		int always = !strcmp(n.name, "status") || !strcmp(n.name, "description");
		rc = generated_attr(out, t, &n, always ? 0644 : rw, d->update_us);
		break;
	}
	case N_PARAMS_JSON:
		rc = generated_attr(out, t, &n, rw, d->update_us);
		break;
	case N_PARAMS: {
		const cJSON *hp = al_value_get_map(al_fields_get(d->fields, "hyper_params"));
		if (!*n.rest)
			attr_dir(out, d->update_us);
		else if (hp && al_fields_get(hp, n.rest))
			rc = generated_attr(out, t, &n, rw, d->update_us);
		else if (key_prefix_exists(hp, n.rest) || has_vdir(t, path))
			attr_dir(out, d->update_us);
		else if (!writer_attr(out, t, path, rw))
			rc = al_error_set(AL_ENOTFOUND, "no param %s", n.rest);
		break;
	}
	case N_METRICS:
		rc = metric_attr(out, t, &n, path, rw, d->update_us);
		break;
	case N_RUN_ARTIFACT:
	case N_OUTPUT_LOG:
		rc = blob_attr(out, t, &n, path, rw);
		break;
	case N_RUN_LINK: {
		const cJSON *ds = al_value_get_map(al_fields_get(d->fields, "datasets"));
		const cJSON *e = ds ? al_value_get_map(al_fields_get(ds, n.name)) : NULL;
		char *target;
		if (!e) {
			rc = al_error_set(AL_ENOTFOUND, "no dataset link %s", n.name);
			break;
		}
		target = xasprintf("%s/%s/datasets/%s", t->mountpoint ? t->mountpoint : "", n.project,
			al_fields_get_string(e, "dataset") ? al_fields_get_string(e, "dataset") : n.name);
		memset(out, 0, sizeof(*out));
		out->type = AL_NODE_LINK;
		out->mode = 0777;
		out->size = target ? strlen(target) : 0;
		out->mtime_us = out->ctime_us = d->update_us;
		out->immutable = 1;
		free(target);
		break;
	}
	default:
		rc = al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
	}
cleanup:
	al_doc_free(d);
	node_free(&n);
	return rc;
}

/* ---- listing -------------------------------------------------------------------------- */

/* Adds the child of folder `rest` that leads to `full` (a path inside the same area). */
static void child_of(keyset *k, const char *rest, const char *full)
{
	size_t n = strlen(rest);
	const char *p = full, *slash;
	char *name;
	if (n) {
		if (strncmp(full, rest, n) != 0 || full[n] != '/')
			return;
		p = full + n + 1;
	}
	slash = strchr(p, '/');
	name = slash ? strndup(p, (size_t)(slash - p)) : strdup(p);
	if (name && *name)
		keyset_add(k, name);
	free(name);
}

/* Adds in-memory children (open writers, empty folders, scratch files) of the folder at path. */
static void memory_children(keyset *k, al_tree *t, const char *path)
{
	size_t n = strlen(path);
	al_file *f;
	vdir *v;
	scratch *s;
	pthread_mutex_lock(&t->lock);
	for (f = t->writers; f; f = f->next)
		if (strncmp(f->path, path, n) == 0 && f->path[n] == '/' && !strchr(f->path + n + 1, '/'))
			keyset_add(k, f->path + n + 1);
	for (s = t->scratch; s; s = s->next)
		if (strncmp(s->path, path, n) == 0 && s->path[n] == '/' && !strchr(s->path + n + 1, '/'))
			keyset_add(k, s->path + n + 1);
	for (v = t->vdirs; v; v = v->next)
		if (strncmp(v->path, path, n) == 0 && v->path[n] == '/' && !strchr(v->path + n + 1, '/'))
			keyset_add(k, v->path + n + 1);
	pthread_mutex_unlock(&t->lock);
}

static int list_ids(keyset *k, al_tree *t, const char *coll)
{
	al_doc_list *l = NULL;
	size_t i;
	int rc = al_store_list(&l, t->store, coll, NULL, NULL);
	for (i = 0; rc == 0 && i < l->count; i++)
		keyset_add(k, al_doc_id(l->docs[i]->path));
	al_doc_list_free(l);
	return rc;
}

static int list_blob_children(keyset *k, al_tree *t, const node *n)
{
	al_doc_list *l = NULL;
	char *from = NULL, *to = NULL;
	size_t i;
	int rc;
	child_range(&from, &to, n->rest);
	rc = al_store_list(&l, t->store, n->coll, from, to);
	for (i = 0; rc == 0 && i < l->count; i++) {
		char *full = al_id_decode(al_doc_id(l->docs[i]->path));
		if (full)
			child_of(k, n->rest, full);
		free(full);
	}
	al_doc_list_free(l);
	free(from);
	free(to);
	return rc;
}

int al_tree_readdir(al_tree *t, const char *path, al_tree_fill_fn fill, void *ctx)
{
	static const char *project_dirs[] = {"metadata", "datasets", "experiments", NULL};
	static const char *exp_entries[] = {"description", "runs.csv", "artifacts", "runs", NULL};
	static const char *run_entries[] = {"run.json", "status", "fold", "model", "description",
		"params", "params.json", "metrics", "artifacts", "datasets", NULL};
	const char **fixed = NULL;
	keyset k = {0};
	al_attr a;
	al_doc *d = NULL;
	node n;
	char *coll = NULL;
	size_t i;
	int rc;

	if ((rc = al_tree_getattr(&a, t, path)))
		return rc;
	if (a.type != AL_NODE_DIR)
		return al_error_set(AL_ENOTDIR, "not a folder: %s", path);
	if ((rc = node_parse(&n, path)))
		return rc;
	switch (n.kind) {
	case N_ROOT:
		/* .aletheia is reached by name, never listed: a backup or search of the whole mount
		 * (rsync -a, tar, grep -r, du) must not meet live or control files (README "The
		 * tree"). */
		rc = list_ids(&k, t, "projects");
		break;
	case N_CTL:
		keyset_add(&k, "status");
		keyset_add(&k, "import");
		keyset_add(&k, "fsck");
		break;
	case N_PROJECT:
		fixed = project_dirs;
		break;
	case N_METADATA_DIR:
		coll = xasprintf("%s/metadata", n.proj_doc);
		rc = list_ids(&k, t, coll);
		memory_children(&k, t, path);
		break;
	case N_DATASETS:
		coll = xasprintf("%s/datasets", n.proj_doc);
		rc = list_ids(&k, t, coll);
		break;
	case N_EXPERIMENTS:
		coll = xasprintf("%s/experiments", n.proj_doc);
		rc = list_ids(&k, t, coll);
		break;
	case N_RUNS:
		coll = xasprintf("%s/runs", n.exp_doc);
		rc = list_ids(&k, t, coll);
		break;
	case N_EXPERIMENT:
		fixed = exp_entries;
		memory_children(&k, t, path);
		break;
	case N_RUN:
		fixed = run_entries;
		memory_children(&k, t, path);
		{
			node log = {.coll = xasprintf("%s/logs", n.run_doc), .rest = "output.log"};
			char *logpath = xasprintf("%s/output.log", path);
			/* A walk (find, ls -R, du) reads every run: their logs, metrics and artifacts
			 * come with one query per experiment instead of one per run (a no-op while
			 * cached; errors leave it to the plain requests). */
			al_store_cache_prefetch(t->series_store, n.run_doc, "logs");
			if (log.coll && logpath && blob_attr(&a, t, &log, logpath, 0) == 0)
				keyset_add(&k, "output.log");
			free(log.coll);
			free(logpath);
		}
		break;
	case N_DATASET:
		keyset_add(&k, ".dataset.json");
		keyset_add(&k, ".description");
		/* fall through */
	case N_DATASET_PATH:
	case N_EXP_ARTIFACT:
	case N_RUN_ARTIFACT:
		if (n.kind == N_RUN_ARTIFACT)
			al_store_cache_prefetch(t->series_store, n.run_doc, "artifacts");
		rc = list_blob_children(&k, t, &n);
		memory_children(&k, t, path);
		break;
	case N_RUN_DATASETS:
	case N_PARAMS:
		if ((rc = get_doc(&d, t, n.run_doc)) == 0) {
			const cJSON *map = al_value_get_map(al_fields_get(d->fields,
				n.kind == N_PARAMS ? "hyper_params" : "datasets")), *it;
			if (map)
				cJSON_ArrayForEach(it, map)
					child_of(&k, n.rest, it->string);
		}
		memory_children(&k, t, path);
		break;
	case N_METRICS: {
		char **ids = NULL;
		size_t nids = 0;
		al_store_cache_prefetch(t->series_store, n.run_doc, "metrics");
		if ((rc = al_series_ids(&ids, &nids, t->series, n.run_doc)) == 0) {
			for (i = 0; i < nids; i++) {
				char *name = al_id_decode(ids[i]);
				if (name)
					child_of(&k, n.rest, name);
				free(name);
			}
		}
		al_strings_free(ids, nids);
		memory_children(&k, t, path);
		break;
	}
	default:
		rc = al_error_set(AL_ENOTDIR, "not a folder: %s", path);
	}
	for (i = 0; fixed && fixed[i]; i++)
		keyset_add(&k, fixed[i]);
	if (rc == 0) {
		fill(ctx, ".", NULL);
		fill(ctx, "..", NULL);
		for (i = 0; i < k.n; i++)
			if (fill(ctx, k.keys[i], NULL))
				break;
	}
	al_strings_free(k.keys, k.n);
	al_doc_free(d);
	free(coll);
	node_free(&n);
	return rc;
}

/* ---- creating folders ----------------------------------------------------------------- */

/* A path inside a folder (params/a/b, artifacts/x/y): names joined by single '/', each a valid
 * name ("a//b", "x/" and "/lead" would name files no path reaches). */
static int check_rest_names(const char *rest)
{
	char *copy = strdup(rest), *p, *slash;
	int rc = 0;
	if (!copy)
		return al_error_set(AL_ENOMEM, "out of memory");
	for (p = copy; rc == 0; p = slash + 1) {
		if ((slash = strchr(p, '/')))
			*slash = '\0';
		rc = check_name(p);
		if (!slash)
			break;
	}
	free(copy);
	if (rc == 0) {
		/* A file's or metric's path is one document id ('/' written %2F): Firestore's 1,500
		 * bytes hold for the whole of it (README "The tree"). */
		char *id = al_id_encode(rest);
		if (!id)
			rc = al_error_set(AL_ENOMEM, "out of memory");
		else if (strlen(id) > MAX_NAME)
			rc = al_error_set(AL_ENAMETOOLONG, "the path %.60s… is %zu bytes as a document id "
				"(each '/' counts 3): at most %d", rest, strlen(id), MAX_NAME);
		free(id);
	}
	return rc;
}

static char *empty_version(void)
{
	char hex[AL_HASH_HEX_LEN + 1];
	al_hash_buffer(hex, "", 0);
	return strdup(hex);
}

static cJSON *named_doc(const char *name, int64_t now)
{
	cJSON *f = cJSON_CreateObject();
	al_fields_set(f, "name", al_value_string(name));
	al_fields_set(f, "created", al_value_time(now));
	return f;
}

/* The creating process's command line; for `aletheia run … -- CMD`, just CMD. */
static char *caller_command(pid_t pid)
{
	char path[64], buf[8192], *out = NULL;
	al_buf b = AL_BUF_INIT;
	ssize_t n;
	size_t i, start = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	if (strcmp(last_segment(buf), "aletheia") == 0 && strcmp(buf + strlen(buf) + 1, "run") == 0) {
		for (i = 0; i < (size_t)n; i += strlen(buf + i) + 1)
			if (strcmp(buf + i, "--") == 0) {
				start = i + 3;
				break;
			}
	}
	for (i = start; i < (size_t)n; i += strlen(buf + i) + 1) {
		const char *arg = buf + i;
		if (b.len)
			al_buf_puts(&b, " ");
		if (*arg && !strpbrk(arg, " \t\n'\"\\$`*?&;|<>()"))
			al_buf_puts(&b, arg);
		else {
			al_buf_puts(&b, "'");
			for (; *arg; arg++)
				*arg == '\'' ? al_buf_puts(&b, "'\\''") : al_buf_put(&b, arg, 1);
			al_buf_puts(&b, "'");
		}
	}
	out = al_buf_detach(&b, NULL);
	return out;
}

static int path_inside(const char *dir, const char *path)
{
	size_t n = dir ? strlen(dir) : 0;
	return n && strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static pid_t parent_pid(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	int ppid = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r"))) {
		/* "pid (comm) state ppid …": comm may hold spaces and parentheses */
		if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
			sscanf(p + 1, " %*c %d", &ppid);
		fclose(f);
	}
	return (pid_t)ppid;
}

static cJSON *new_run_fields(al_tree *t, const node *n, const al_caller *c)
{
	cJSON *f = cJSON_CreateObject();
	char host[256] = "", cwdlink[64], cwd[PATH_MAX], *cmd;
	struct passwd pw, *pwp = NULL;
	char pwbuf[4096];
	al_git_state *git = NULL;
	int64_t now = al_now_us();
	ssize_t len;

	gethostname(host, sizeof(host) - 1);
	snprintf(cwdlink, sizeof(cwdlink), "/proc/%d/cwd", c ? (int)c->pid : 0);
	len = c ? readlink(cwdlink, cwd, sizeof(cwd) - 1) : -1;
	cwd[len > 0 ? len : 0] = '\0';
	if (c && *cwd && path_inside(t->mountpoint, cwd)) {
		/* `mkdir -p` changes into each folder it makes: the folder the user typed it in is its
		 * parent's (the shell's) working directory. */
		pid_t parent = parent_pid(c->pid);
		char alt[PATH_MAX];
		ssize_t n;
		snprintf(cwdlink, sizeof(cwdlink), "/proc/%d/cwd", (int)parent);
		n = parent > 1 ? readlink(cwdlink, alt, sizeof(alt) - 1) : -1;
		if (n > 0) {
			alt[n] = '\0';
			if (!path_inside(t->mountpoint, alt))
				memcpy(cwd, alt, (size_t)n + 1);
		}
	}
	getpwuid_r(c ? c->uid : t->uid, &pw, pwbuf, sizeof(pwbuf), &pwp);
	cmd = c ? caller_command(c->pid) : NULL;

	al_fields_set(f, "id", al_value_string(n->run));
	al_fields_set(f, "project", al_value_string(n->project));
	al_fields_set(f, "experiment", al_value_string(n->experiment));
	al_fields_set(f, "status", al_value_string("running"));
	al_fields_set(f, "created", al_value_time(now));
	al_fields_set(f, "started", al_value_time(now));
	al_fields_set(f, "ended", al_value_null());
	al_fields_set(f, "fold", al_value_null());
	al_fields_set(f, "model", al_value_string(""));
	al_fields_set(f, "description", al_value_string(""));
	al_fields_set(f, "host", al_value_string(host));
	al_fields_set(f, "user", pwp ? al_value_string(pwp->pw_name) : al_value_null());
	al_fields_set(f, "command", cmd ? al_value_string(cmd) : al_value_null());
	al_fields_set(f, "cwd", *cwd ? al_value_string(cwd) : al_value_null());
	al_fields_set(f, "exit_code", al_value_null());
	/* A cwd inside this mount has no repository, and looking would deadlock on the kernel's
	 * lock of the folder being created. */
	if (*cwd && !path_inside(t->mountpoint, cwd) && al_git_capture(&git, cwd, t->mountpoint) == 0)
		al_fields_set(f, "git", al_git_state_to_value(git));
	else
		al_fields_set(f, "git", al_value_null());
	al_fields_set(f, "hyper_params", al_value_map(cJSON_CreateObject()));
	al_fields_set(f, "datasets", al_value_map(cJSON_CreateObject()));
	{
		/* The creator's command line, folder and git state are what they are: bytes that are
		 * not UTF-8 (a Latin-1 file name, a cut multi-byte character) must not stop the run
		 * from being created, so they are recorded as U+FFFD. */
		cJSON *it;
		cJSON_ArrayForEach(it, f)
			al_value_repair_strings(it);
	}
	al_git_state_free(git);
	free(cmd);
	return f;
}

static int add_vdir(al_tree *t, const char *path)
{
	vdir *v = calloc(1, sizeof(*v));
	if (!v || !(v->path = strdup(path))) {
		free(v);
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&t->lock);
	v->next = t->vdirs;
	t->vdirs = v;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static int blob_mkdir(al_tree *t, const node *n)
{
	cJSON *f = cJSON_CreateObject();
	char *id = al_id_encode(n->rest), *doc = xasprintf("%s/%s", n->coll, id);
	int rc;
	al_fields_set(f, "path", al_value_string(n->rest));
	al_fields_set(f, "type", al_value_string("dir"));
	al_fields_set(f, "mtime", al_value_time(al_now_us()));
	rc = commit1(t, AL_WRITE_SET, doc, f, AL_PRE_MISSING);
	cJSON_Delete(f);
	free(id);
	free(doc);
	return rc;
}

static int al_tree_mkdir_impl(al_tree *t, const char *path, const al_caller *caller)
{
	node n;
	al_attr a;
	cJSON *f = NULL;
	int rc;
	int64_t now = al_now_us();

	if ((rc = node_parse(&n, path)))
		return rc == AL_ENOTFOUND ? al_error_set(AL_EPERM, "cannot create a folder here: %s", path) : rc;
	if (al_tree_getattr(&a, t, path) == 0) {
		rc = al_error_set(AL_EEXISTS, "%s exists", path);
		goto cleanup;
	}
	switch (n.kind) {
	case N_PROJECT:
		if ((rc = check_name(n.project)))
			break;
		f = named_doc(n.project, now);
		rc = commit1(t, AL_WRITE_SET, n.proj_doc, f, AL_PRE_MISSING);
		break;
	case N_EXPERIMENT:
		if ((rc = check_name(n.experiment)) || (rc = doc_exists(t, n.proj_doc)))
			break;
		f = named_doc(n.experiment, now);
		al_fields_set(f, "description", al_value_string(""));
		al_fields_set(f, "updated", al_value_time(now));
		rc = commit1(t, AL_WRITE_SET, n.exp_doc, f, AL_PRE_MISSING);
		break;
	case N_DATASET: {
		char *v = empty_version();
		if ((rc = check_name(n.dataset)) || (rc = doc_exists(t, n.proj_doc))) {
			free(v);
			break;
		}
		f = named_doc(n.dataset, now);
		al_fields_set(f, "description", al_value_string(""));
		al_fields_set(f, "version", al_value_string(v));
		al_fields_set(f, "files", al_value_int(0));
		al_fields_set(f, "bytes", al_value_int(0));
		free(v);
		rc = commit1(t, AL_WRITE_SET, n.ds_doc, f, AL_PRE_MISSING);
		break;
	}
	case N_RUN: {
		cJSON *upd;
		al_write w[2];
		if ((rc = check_name(n.run)) || (rc = doc_exists(t, n.exp_doc)))
			break;
		f = new_run_fields(t, &n, caller);
		upd = cJSON_CreateObject();
		al_fields_set(upd, "updated", al_value_time(now));
		w[0] = (al_write){AL_WRITE_SET, n.run_doc, f, AL_PRE_MISSING, NULL};
		w[1] = (al_write){AL_WRITE_UPDATE, n.exp_doc, upd, AL_PRE_EXISTS, NULL};
		rc = al_store_commit(t->store, w, 2);
		cJSON_Delete(upd);
		break;
	}
	case N_DATASET_PATH:
		if ((rc = check_rest_names(n.rest)) == 0 && (rc = doc_exists(t, n.ds_doc)) == 0)
			rc = blob_mkdir(t, &n);
		break;
	case N_EXP_ARTIFACT:
		if ((rc = check_rest_names(n.rest)) == 0 && (rc = doc_exists(t, n.exp_doc)) == 0)
			rc = blob_mkdir(t, &n);
		break;
	case N_RUN_ARTIFACT:
		if ((rc = check_rest_names(n.rest)) == 0 && (rc = require_running(t, &n)) == 0)
			rc = blob_mkdir(t, &n);
		break;
	case N_PARAMS:
	case N_METRICS:
		if ((rc = check_rest_names(n.rest)) == 0 && (rc = require_running(t, &n)) == 0)
			rc = add_vdir(t, path);
		break;
	default:
		rc = al_error_set(AL_EPERM, "cannot create a folder here: %s", path);
	}
cleanup:
	cJSON_Delete(f);
	node_free(&n);
	return rc;
}

/* ---- deleting ------------------------------------------------------------------------- */

/* Deletes a document and everything under it. */
static int delete_tree(al_tree *t, const char *doc)
{
	char **colls = NULL;
	size_t ncolls = 0, i, k;
	int rc;
	al_write w = {AL_WRITE_DELETE, doc, NULL, AL_PRE_NONE, NULL};

	if ((rc = t->store->list_collections(&colls, &ncolls, t->store, doc)))
		return rc;
	for (i = 0; rc == 0 && i < ncolls; i++) {
		al_doc_list *l = NULL;
		char *coll = xasprintf("%s/%s", doc, colls[i]);
		rc = al_store_list(&l, t->store, coll, NULL, NULL);
		for (k = 0; rc == 0 && k < l->count; k++)
			rc = delete_tree(t, l->docs[k]->path);
		al_doc_list_free(l);
		free(coll);
	}
	al_strings_free(colls, ncolls);
	return rc ? rc : al_store_commit(t->store, &w, 1);
}

static int blob_delete(al_tree *t, const node *n)
{
	char *id = al_id_encode(n->rest), *doc = xasprintf("%s/%s", n->coll, id);
	int rc = commit1(t, AL_WRITE_DELETE, doc, NULL, AL_PRE_EXISTS);
	free(id);
	free(doc);
	return rc;
}

static int dataset_refresh(al_tree *t, const char *ds_doc);
static void dataset_changed(al_tree *t, const char *ds_doc);
static int owner_mark(al_tree *t, const node *n);

/* Handles writing files that are deleted, replaced or moved (a working folder: README
 * "artifacts"), each held under its own lock meanwhile so none is halfway through recording. */
typedef struct held {
	al_file **f;
	size_t n;
} held;

static int path_under(const char *dir, const char *path)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Locks every blob writer at or under a or b (b may be NULL): all or none, trylock under t->lock
 * (handles take f->mu first and t->lock second), again after a pause while one is busy. */
static int hold_writers(held *h, al_tree *t, const char *a, const char *b)
{
	memset(h, 0, sizeof(*h));
	for (;;) {
		al_file *f;
		size_t cap = 0, i;
		int busy = 0;
		pthread_mutex_lock(&t->lock);
		for (f = t->writers; f; f = f->next)
			cap += f->kind == F_BLOB_WRITE && (path_under(a, f->path) || (b && path_under(b, f->path)));
		if (cap && !(h->f = calloc(cap, sizeof(*h->f)))) {
			pthread_mutex_unlock(&t->lock);
			return al_error_set(AL_ENOMEM, "out of memory");
		}
		for (f = t->writers; f && !busy; f = f->next) {
			if (f->kind != F_BLOB_WRITE || !(path_under(a, f->path) || (b && path_under(b, f->path))))
				continue;
			if (pthread_mutex_trylock(&f->mu) != 0)
				busy = 1;
			else
				h->f[h->n++] = f;
		}
		pthread_mutex_unlock(&t->lock);
		if (!busy)
			return 0;
		for (i = 0; i < h->n; i++)
			pthread_mutex_unlock(&h->f[i]->mu);
		free(h->f);
		memset(h, 0, sizeof(*h));
		usleep(1000);
	}
}

static size_t held_count(const held *h, const char *path)
{
	size_t i, n = 0;
	for (i = 0; i < h->n; i++)
		n += path_under(path, h->f[i]->path);
	return n;
}

/* The held writers at or under path record nothing at their close: their file is gone. */
static void detach_held(al_tree *t, held *h, const char *path)
{
	size_t i;
	pthread_mutex_lock(&t->lock);
	for (i = 0; i < h->n; i++)
		if (path_under(path, h->f[i]->path)) {
			al_file **p;
			__atomic_store_n(&h->f[i]->detached, 1, __ATOMIC_SEQ_CST);
			for (p = &t->writers; *p; p = &(*p)->next)
				if (*p == h->f[i]) {
					*p = h->f[i]->next;
					break;
				}
		}
	pthread_mutex_unlock(&t->lock);
}

/* The held writers under from follow their file to to: their close records the new name. */
static void move_held(al_tree *t, held *h, const char *from, const char *to)
{
	size_t i, flen = strlen(from);
	pthread_mutex_lock(&t->lock);
	for (i = 0; i < h->n; i++) {
		al_file *f = h->f[i];
		char *np;
		node nn;
		if (__atomic_load_n(&f->detached, __ATOMIC_SEQ_CST) || !path_under(from, f->path))
			continue;
		np = xasprintf("%s%s", to, f->path + flen);
		if (np && node_parse(&nn, np) == 0) {
			node_free(&f->n);
			f->n = nn;
			free(f->path);
			f->path = np;
		} else {
			free(np);
			__atomic_store_n(&f->detached, 1, __ATOMIC_SEQ_CST);   /* cannot follow: keep nothing stale */
		}
	}
	pthread_mutex_unlock(&t->lock);
}

static void release_held(held *h)
{
	size_t i;
	for (i = 0; i < h->n; i++)
		pthread_mutex_unlock(&h->f[i]->mu);
	free(h->f);
	memset(h, 0, sizeof(*h));
}

/* Deletes a file of a blob folder: its record, and whatever handles still writing it would
 * record at close (README "artifacts": deleted files stop being listed). */
static int blob_remove(al_tree *t, const node *n, const char *path)
{
	al_doc *d = NULL;
	char *id = al_id_encode(n->rest), *doc = xasprintf("%s/%s", n->coll, id);
	const char *type;
	held h;
	int rc;

	if ((rc = hold_writers(&h, t, path, NULL)))
		goto cleanup;
	rc = al_store_get(&d, t->store, doc);
	if (rc == 0 && (type = al_fields_get_string(d->fields, "type")) && strcmp(type, "dir") == 0)
		rc = al_error_set(AL_EISDIR, "%s is a folder", n->rest);
	else if (rc == 0)
		rc = commit1(t, AL_WRITE_DELETE, doc, NULL, AL_PRE_NONE);
	else if (rc == AL_ENOTFOUND && held_count(&h, path))
		rc = 0;   /* written, never closed yet */
	else if (rc == AL_ENOTFOUND)
		rc = al_error_set(AL_ENOTFOUND, "no such file: %s", n->rest);
	if (rc == 0)
		detach_held(t, &h, path);
	release_held(&h);
cleanup:
	al_doc_free(d);
	free(id);
	free(doc);
	return rc;
}

/* Removes an empty folder of a blob folder (its folder document, if it has one). */
static int blob_rmdir(al_tree *t, const node *n, const char *path)
{
	al_doc_list *l = NULL;
	char *from = NULL, *to = NULL, *id = al_id_encode(n->rest), *doc = xasprintf("%s/%s", n->coll, id);
	held h;
	int rc;

	if ((rc = hold_writers(&h, t, path, NULL)))
		goto cleanup;
	child_range(&from, &to, n->rest);
	if ((rc = al_store_list(&l, t->store, n->coll, from, to)) == 0 && (l->count || h.n))
		rc = al_error_set(AL_ENOTEMPTY, "%s is not empty", n->rest);
	if (rc == 0)
		rc = commit1(t, AL_WRITE_DELETE, doc, NULL, AL_PRE_NONE);
	release_held(&h);
cleanup:
	al_doc_list_free(l);
	free(from);
	free(to);
	free(id);
	free(doc);
	return rc;
}

/* A running run's artifacts/, and an experiment's while one of its runs is running, are working
 * folders (README "artifacts"): their files and folders can be deleted without --allow-delete.
 * Otherwise they are guarded like the rest (rm -rf of a project without it removes nothing). */
static int working_folder(al_tree *t, const node *n)
{
	al_doc_list *runs = NULL;
	char *coll;
	int running = 0;

	if (!*n->rest)
		return 0;
	if (n->kind == N_RUN_ARTIFACT)
		return require_running(t, n) == 0;
	if (n->kind != N_EXP_ARTIFACT || !(coll = xasprintf("%s/runs", n->exp_doc)))
		return 0;
	if (al_store_list(&runs, t->store, coll, NULL, NULL) == 0)
		for (size_t i = 0; i < runs->count && !running; i++)
			running = run_is_running(runs->docs[i]);
	al_doc_list_free(runs);
	free(coll);
	al_error_clear();
	return running;
}

static int al_tree_unlink_impl(al_tree *t, const char *path)
{
	node n;
	scratch *s = NULL;
	int rc;

	/* Scratch files come and go freely: nothing of them was recorded. */
	if (scratch_name(last_segment(path))) {
		pthread_mutex_lock(&t->lock);
		if ((s = scratch_find(t, path))) {
			scratch_unlink_locked(t, s);
			scratch_put_locked(t, s);
		}
		pthread_mutex_unlock(&t->lock);
		if (s)
			return 0;
	}
	if ((rc = node_parse(&n, path)))
		return rc;
	if ((n.kind == N_RUN_ARTIFACT || n.kind == N_EXP_ARTIFACT) && (t->allow_delete || working_folder(t, &n))) {
		rc = *n.rest ? blob_remove(t, &n, path) : al_error_set(AL_EISDIR, "%s is a folder", path);
		goto cleanup;
	}
	if (!t->allow_delete) {
		rc = n.kind == N_RUN_ARTIFACT
			? al_error_set(AL_EPERM, "run %s is not running: its artifacts are kept (mount with "
				"--allow-delete to delete %s)", n.run, path)
			: al_error_set(AL_EPERM, "deleting is off: mount with --allow-delete to delete %s", path);
		goto cleanup;
	}
	switch (n.kind) {
	case N_METADATA: {
		char *p = xasprintf("%s/metadata/%s", n.proj_doc, n.name);
		rc = commit1(t, AL_WRITE_DELETE, p, NULL, AL_PRE_EXISTS);
		free(p);
		break;
	}
	case N_DATASET_PATH:
		if ((rc = owner_mark(t, &n)) == 0 && (rc = blob_delete(t, &n)) == 0)
			dataset_changed(t, n.ds_doc);
		break;
	case N_OUTPUT_LOG:
		if ((rc = owner_mark(t, &n)) == 0)
			rc = blob_delete(t, &n);
		break;
	case N_RUN_LINK:
	case N_PARAMS: {
		al_doc *d = NULL;
		pthread_mutex_lock(&t->lock);
		if ((rc = get_doc(&d, t, n.run_doc)) == 0) {
			const char *field = n.kind == N_PARAMS ? "hyper_params" : "datasets";
			const cJSON *inner = al_value_get_map(al_fields_get(d->fields, field));
			const char *key = n.kind == N_PARAMS ? n.rest : n.name;
			if (inner && cJSON_GetObjectItemCaseSensitive(inner, key))
				rc = commit_keys(t, n.run_doc, field, NULL, &key, 1, AL_PRE_EXISTS);
			else
				rc = al_error_set(AL_ENOTFOUND, "no such entry: %s", path);
		}
		pthread_mutex_unlock(&t->lock);
		al_doc_free(d);
		break;
	}
	default:
		/* Generated files go with their folder: removing them alone is a no-op, so that
		 * `rm -rf` of a run works with --allow-delete. */
		rc = 0;
	}
cleanup:
	node_free(&n);
	return rc;
}

static int al_tree_rmdir_impl(al_tree *t, const char *path)
{
	node n;
	int rc;

	if ((rc = node_parse(&n, path)))
		return rc;
	if ((n.kind == N_RUN_ARTIFACT || n.kind == N_EXP_ARTIFACT) && *n.rest &&
	    (t->allow_delete || working_folder(t, &n))) {
		rc = blob_rmdir(t, &n, path);
		goto cleanup;
	}
	if (!t->allow_delete) {
		rc = al_error_set(AL_EPERM, "deleting is off: mount with --allow-delete to delete %s", path);
		goto cleanup;
	}
	switch (n.kind) {
	case N_PROJECT: rc = delete_tree(t, n.proj_doc); break;
	case N_EXPERIMENT: rc = delete_tree(t, n.exp_doc); break;
	case N_RUN: rc = delete_tree(t, n.run_doc); break;
	case N_DATASET: rc = delete_tree(t, n.ds_doc); break;
	case N_DATASET_PATH:
		if (*n.rest)
			blob_delete(t, &n);   /* an explicit folder document, if any */
		rc = 0;
		break;
	default:
		rc = 0;
	}
	if (rc == 0) {
		vdir **pv;
		pthread_mutex_lock(&t->lock);
		for (pv = &t->vdirs; *pv;) {
			if (strcmp((*pv)->path, path) == 0) {
				vdir *v = *pv;
				*pv = v->next;
				free(v->path);
				free(v);
			} else
				pv = &(*pv)->next;
		}
		pthread_mutex_unlock(&t->lock);
	}
cleanup:
	node_free(&n);
	return rc;
}

/* ---- datasets ------------------------------------------------------------------------- */

/* Recomputes a dataset's version (xxh3-128 over its sorted "path\tsize\thash\n" lines),
 * file count and bytes. Caller holds no lock; serialised by t->lock. */
static int dataset_refresh(al_tree *t, const char *ds_doc)
{
	al_doc_list *l = NULL;
	al_hasher *h = NULL;
	char *coll = xasprintf("%s/files", ds_doc), hex[AL_HASH_HEX_LEN + 1];
	cJSON *f = NULL;
	int64_t files = 0, bytes = 0;
	char **lines = NULL;
	size_t i, nlines = 0;
	int rc;

	pthread_mutex_lock(&t->ds_lock);
	if ((rc = al_store_list(&l, t->store, coll, NULL, NULL)) || (rc = al_hasher_new(&h)))
		goto cleanup;
	/* Ids are the encoded paths, whose order differs from the paths' ('/' is "%2F"): the
	 * lines are sorted by path before hashing. */
	lines = calloc(l->count + 1, sizeof(char *));
	if (!lines) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0; i < l->count; i++) {
		const cJSON *fl = l->docs[i]->fields;
		const char *type = al_fields_get_string(fl, "type"), *p = al_fields_get_string(fl, "path");
		const char *hash = al_fields_get_string(fl, "hash");
		int64_t size = 0;
		if ((type && strcmp(type, "dir") == 0) || !p || !hash)
			continue;
		al_fields_get_int(&size, fl, "size");
		/* the path first, NUL-terminated, then the line: sorted by the path alone (names may
		 * hold a TAB or bytes below it), hashed by the line */
		if (!(lines[nlines] = xasprintf("%s%c%s\t%lld\t%s\n", p, 0, p, (long long)size, hash))) {
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto cleanup;
		}
		nlines++;
		files++;
		bytes += size;
	}
	qsort(lines, nlines, sizeof(char *), cmp_str);   /* compares up to the NUL: the paths */
	for (i = 0; i < nlines; i++) {
		const char *line = lines[i] + strlen(lines[i]) + 1;
		al_hasher_update(h, line, strlen(line));
	}
	al_hasher_final(hex, h);
	f = cJSON_CreateObject();
	al_fields_set(f, "version", al_value_string(hex));
	al_fields_set(f, "files", al_value_int(files));
	al_fields_set(f, "bytes", al_value_int(bytes));
	al_fields_set(f, "stale", al_value_bool(0));   /* ds_lock held: no record slipped in between */
	rc = commit1(t, AL_WRITE_UPDATE, ds_doc, f, AL_PRE_EXISTS);
cleanup:
	pthread_mutex_unlock(&t->ds_lock);
	al_strings_free(lines, nlines);
	cJSON_Delete(f);
	al_hasher_free(h);
	al_doc_list_free(l);
	free(coll);
	return rc;
}

/* Notes that a dataset's files changed; its version follows within about a second. */
static void dataset_changed(al_tree *t, const char *ds_doc)
{
	vdir *v;
	pthread_mutex_lock(&t->lock);
	for (v = t->dirty_ds; v; v = v->next)
		if (strcmp(v->path, ds_doc) == 0)
			break;
	if (!v && (v = calloc(1, sizeof(*v)))) {
		if ((v->path = strdup(ds_doc))) {
			v->next = t->dirty_ds;
			t->dirty_ds = v;
		} else
			free(v);
	}
	pthread_cond_signal(&t->ds_wake);
	pthread_mutex_unlock(&t->lock);
}

/* Brings one dataset's version up to date now (NULL: every dataset that changed). */
static int dataset_settle(al_tree *t, const char *ds_doc)
{
	vdir *take = NULL, **p, *v;
	al_doc *d = NULL;
	int rc = 0, refreshed = 0, stale = 0;

	/* Held from taking the entries to the end of their refresh: a reader finding nothing dirty
	 * because the dataset thread took it first waits here for that refresh, not an old version. */
	pthread_mutex_lock(&t->ds_lock);
	pthread_mutex_lock(&t->lock);
	for (p = &t->dirty_ds; *p;) {
		if (!ds_doc || strcmp((*p)->path, ds_doc) == 0) {
			v = *p;
			*p = v->next;
			v->next = take;
			take = v;
		} else
			p = &(*p)->next;
	}
	pthread_mutex_unlock(&t->lock);
	while ((v = take)) {
		int r;
		take = v->next;
		if (ds_doc)
			refreshed = 1;
		if ((r = dataset_refresh(t, v->path)) && r != AL_ENOTFOUND && !rc)
			rc = r;
		free(v->path);
		free(v);
	}
	/* A change whose mark reached the store but whose recomputation did not (the daemon was
	 * killed, or another mount made it) is recomputed by the first reader. */
	if (ds_doc && !refreshed && al_store_get(&d, t->store, ds_doc) == 0 &&
	    al_fields_get_bool(&stale, d->fields, "stale") == 0 && stale)
		rc = dataset_refresh(t, ds_doc);
	al_doc_free(d);
	al_error_clear();
	pthread_mutex_unlock(&t->ds_lock);
	return rc;
}

static void *dataset_thread(void *arg)
{
	al_tree *t = arg;
	struct timespec ts;

	pthread_mutex_lock(&t->lock);
	while (!t->ds_stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&t->ds_wake, &t->lock, &ts);
		if (!t->dirty_ds)
			continue;
		pthread_mutex_unlock(&t->lock);
		usleep(200000);   /* let a burst of copies finish first */
		dataset_settle(t, NULL);
		changed(t);
		pthread_mutex_lock(&t->lock);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static int dataset_referenced(al_tree *t, const char *ds_doc)
{
	al_doc *d = NULL;
	int ref = 0;
	if (al_store_get(&d, t->store, ds_doc) == 0)
		al_fields_get_bool(&ref, d->fields, "referenced");
	al_doc_free(d);
	return ref;
}

/* ---- renaming ------------------------------------------------------------------------- */

/* Moves the file or folder `from` to `to` inside one blob collection, in one commit. Writers of
 * `from` (writing) may hold content not recorded yet, or the only content: they follow the
 * file (move_held), so a file still being written moves too; a replaced target's record goes. */
static int blob_move(al_tree *t, const node *a, const node *b, int noreplace, size_t writing,
	size_t target_writing)
{
	al_doc_list *l = NULL;
	al_doc *d = NULL, *existing = NULL;
	char *from_id = al_id_encode(a->rest), *to_id = al_id_encode(b->rest);
	char *from_doc = xasprintf("%s/%s", a->coll, from_id), *to_doc = xasprintf("%s/%s", b->coll, to_id);
	char *lo = NULL, *hi = NULL, **paths = NULL;
	cJSON **fields = NULL;
	al_write *w = NULL;
	size_t n = 0, i, cap;
	int rc;
	/* A dataset's new names are created only if no other mount took them (write-once). */
	al_precondition target_pre = b->kind == N_DATASET_PATH ? AL_PRE_MISSING : AL_PRE_NONE;

	if ((al_store_get(&existing, t->store, to_doc) == 0 || target_writing) && noreplace) {
		rc = al_error_set(AL_EEXISTS, "%s exists", b->rest);
		goto cleanup;
	}
	/* A folder is replaced only when empty (the kernel checks the kinds, not the contents). */
	child_range(&lo, &hi, b->rest);
	if ((rc = al_store_list(&l, t->store, b->coll, lo, hi)))
		goto cleanup;
	if (l->count) {
		rc = al_error_set(AL_ENOTEMPTY, "%s is not empty", b->rest);
		goto cleanup;
	}
	al_doc_list_free(l);
	l = NULL;
	free(lo);
	free(hi);
	child_range(&lo, &hi, a->rest);
	if ((rc = al_store_list(&l, t->store, a->coll, lo, hi)))
		goto cleanup;
	cap = l->count + 3;
	w = calloc(cap, sizeof(*w));
	fields = calloc(cap, sizeof(*fields));
	paths = calloc(cap, sizeof(*paths));
	if (!w || !fields || !paths) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	rc = al_store_get(&d, t->store, from_doc);
	if (rc == 0) {
		fields[n] = cJSON_Duplicate(d->fields, 1);
		al_fields_set(fields[n], "path", al_value_string(b->rest));
		w[n] = (al_write){AL_WRITE_SET, to_doc, fields[n], target_pre, NULL};
		n++;
		w[n++] = (al_write){AL_WRITE_DELETE, from_doc, NULL, AL_PRE_NONE, NULL};
	} else if (rc == AL_ENOTFOUND && l->count == 0 && writing) {
		/* Not closed yet: only its writers move; what the target held is replaced. */
		if (existing)
			w[n++] = (al_write){AL_WRITE_DELETE, to_doc, NULL, AL_PRE_NONE, NULL};
	} else if (rc != AL_ENOTFOUND || l->count == 0) {
		if (rc == AL_ENOTFOUND)
			rc = al_error_set(AL_ENOTFOUND, "no such file: %s", a->rest);
		goto cleanup;
	}
	rc = 0;
	for (i = 0; i < l->count; i++) {
		char *p = al_id_decode(al_doc_id(l->docs[i]->path)), *np, *nid;
		if (!p)
			continue;
		np = xasprintf("%s%s", b->rest, p + strlen(a->rest));
		nid = al_id_encode(np);
		paths[n] = xasprintf("%s/%s", b->coll, nid);
		fields[n] = cJSON_Duplicate(l->docs[i]->fields, 1);
		al_fields_set(fields[n], "path", al_value_string(np));
		w[n] = (al_write){AL_WRITE_SET, paths[n], fields[n], target_pre, NULL};
		n++;
		w[n++] = (al_write){AL_WRITE_DELETE, l->docs[i]->path, NULL, AL_PRE_NONE, NULL};
		free(p);
		free(np);
		free(nid);
		if (n + 2 > cap) {
			/* grow: each source doc needs two writes */
			size_t nc = cap * 2;
			al_write *w2 = realloc(w, nc * sizeof(*w));
			cJSON **f2 = w2 ? realloc(fields, nc * sizeof(*fields)) : NULL;
			char **p2 = f2 ? realloc(paths, nc * sizeof(*paths)) : NULL;
			if (w2) w = w2;
			if (f2) fields = f2;
			if (p2) paths = p2;
			if (!w2 || !f2 || !p2) {
				rc = al_error_set(AL_ENOMEM, "out of memory");
				goto cleanup;
			}
			memset(fields + cap, 0, (nc - cap) * sizeof(*fields));
			memset(paths + cap, 0, (nc - cap) * sizeof(*paths));
			cap = nc;
		}
	}
	rc = n ? al_store_commit(t->store, w, n) : 0;
cleanup:
	for (i = 0; fields && i < cap; i++) {
		cJSON_Delete(fields[i]);
		if (paths)
			free(paths[i]);
	}
	free(fields);
	free(paths);
	free(w);
	al_doc_free(d);
	al_doc_free(existing);
	al_doc_list_free(l);
	free(from_id);
	free(to_id);
	free(from_doc);
	free(to_doc);
	free(lo);
	free(hi);
	return rc;
}

static int is_blob_kind(nkind k)
{
	return k == N_DATASET_PATH || k == N_EXP_ARTIFACT || k == N_RUN_ARTIFACT;
}

static int commit_content(al_tree *t, const char *path, const char *data, size_t len);

static int is_text_kind(const node *n)
{
	return (n->kind == N_PARAMS && *n->rest) || n->kind == N_PARAMS_JSON || n->kind == N_METADATA ||
		n->kind == N_RUN_TEXT || n->kind == N_EXP_DESCRIPTION;
}

/* Renames of and onto scratch files (README "Editing values in place"). 1: neither is one. */
static int rename_scratch(al_tree *t, const char *from, const char *to, unsigned flags)
{
	node place, target;
	char *dir = NULL, *data = NULL;
	scratch *s = NULL, *old;
	size_t len = 0;
	int rc = 1, to_scratch;
	const unsigned noreplace = 1; /* RENAME_NOREPLACE */

	memset(&target, 0, sizeof(target));
	to_scratch = scratch_place(&place, &dir, to);
	node_free(&place);
	free(dir);
	if (scratch_name(last_segment(from))) {
		pthread_mutex_lock(&t->lock);
		s = scratch_find(t, from);
		if (s && to_scratch) {
			/* from one scratch name to another: only the name changes */
			if ((old = scratch_find(t, to)) && old != s && (flags & noreplace))
				rc = al_error_set(AL_EEXISTS, "%s exists", to);
			else {
				char *np = strdup(to);
				if (!np)
					rc = al_error_set(AL_ENOMEM, "out of memory");
				else {
					if (old && old != s) {
						scratch_unlink_locked(t, old);
						scratch_put_locked(t, old);
					}
					free(s->path);
					s->path = np;
					rc = 0;
				}
			}
		} else if (s && (data = malloc(s->data.len + 1))) {
			len = s->data.len;
			if (len)
				memcpy(data, s->data.ptr, len);
			s->dirty = 0;   /* what is written from now on is the handles' to commit */
		} else if (s)
			rc = al_error_set(AL_ENOMEM, "out of memory");
		pthread_mutex_unlock(&t->lock);
		if (!s || rc != 1)
			goto cleanup;
		/* Over the file of a value: its content becomes that value, committed as a close
		 * would commit it; the scratch file is gone once that succeeded. */
		if (node_parse(&target, to) != 0 || !is_text_kind(&target)) {
			/* EXDEV where files can be copied in: mv copies */
			rc = target.buf && (is_blob_kind(target.kind) || target.kind == N_METRICS)
				? al_error_set(AL_EXDEV, "rename across folders: copy instead")
				: al_error_set(AL_EPERM, "cannot rename to %s", to);
			goto cleanup;
		}
		if ((flags & noreplace) && getattr_recorded(&(al_attr){0}, t, to) == 0) {
			rc = al_error_set(AL_EEXISTS, "%s exists", to);
			goto cleanup;
		}
		if ((rc = commit_content(t, to, data, len)))
			goto cleanup;
		pthread_mutex_lock(&t->lock);
		if (s->path && strcmp(s->path, from) == 0) {
			/* Handles still open write on into that file (flush_file). */
			free(s->commit_to);
			s->commit_to = s->refs > 1 ? strdup(to) : NULL;
			scratch_unlink_locked(t, s);
			scratch_put_locked(t, s);
		}
		pthread_mutex_unlock(&t->lock);
		goto cleanup;
	}
	if (to_scratch && node_parse(&target, from) == 0 && is_text_kind(&target))
		/* A value's file to a backup name (vim's backup by renaming): the value stays recorded,
		 * so the rename is refused in a way that makes vim and mv copy it instead. */
		rc = al_error_set(AL_EXDEV, "%s holds a value: copy it instead of renaming", from);
cleanup:
	node_free(&target);
	free(data);
	return rc;
}

static int al_tree_rename_impl(al_tree *t, const char *from, const char *to, unsigned flags)
{
	node a, b;
	held h;
	int rc;
	const unsigned noreplace = 1; /* RENAME_NOREPLACE */

	if ((rc = rename_scratch(t, from, to, flags)) != 1)
		return rc;
	if ((rc = node_parse(&a, from)))
		return rc;
	if ((rc = node_parse(&b, to))) {
		node_free(&a);
		return rc == AL_ENOTFOUND ? al_error_set(AL_EPERM, "cannot rename to %s", to) : rc;
	}
	if (!is_blob_kind(a.kind) || !*a.rest) {
		rc = al_error_set(AL_EPERM, "only files in a running run's artifacts/ or an unused dataset can be renamed");
		goto cleanup;
	}
	if (!is_blob_kind(b.kind) || !*b.rest || strcmp(a.coll, b.coll) != 0) {
		/* Across folders: EXDEV lets mv fall back to copying where the target takes files. */
		rc = is_blob_kind(b.kind) && *b.rest
			? al_error_set(AL_EXDEV, "rename across folders: copy instead")
			: al_error_set(AL_EPERM, "cannot rename to %s", to);
		goto cleanup;
	}
	if ((rc = check_rest_names(b.rest)))
		goto cleanup;
	if (a.kind == N_RUN_ARTIFACT && (rc = require_running(t, &a)))
		goto cleanup;
	if (a.kind == N_DATASET_PATH) {
		al_attr attr;
		if (dataset_referenced(t, a.ds_doc)) {
			rc = al_error_set(AL_EPERM, "dataset %s is used by a run: its files can't be renamed", a.dataset);
			goto cleanup;
		}
		if (al_tree_getattr(&attr, t, to) == 0) {
			rc = al_error_set(AL_EPERM, "dataset files are write-once: %s exists", b.rest);
			goto cleanup;
		}
	}
	if ((rc = owner_mark(t, &a)) || (rc = hold_writers(&h, t, from, to)))
		goto cleanup;
	rc = blob_move(t, &a, &b, (flags & noreplace) != 0, held_count(&h, from), held_count(&h, to));
	if (rc == 0) {
		detach_held(t, &h, to);
		move_held(t, &h, from, to);
	}
	release_held(&h);
	if (rc)
		goto cleanup;
	if (a.kind == N_DATASET_PATH)
		dataset_changed(t, a.ds_doc);
cleanup:
	node_free(&a);
	node_free(&b);
	return rc;
}

/* ---- dataset links -------------------------------------------------------------------- */

/* Resolves a link target to "/P/datasets/D" form inside the mount, or NULL. */
static char *resolve_target(al_tree *t, const char *link_dir, const char *target)
{
	char *full, *out, *seg, *save = NULL;
	size_t mlen = t->mountpoint ? strlen(t->mountpoint) : 0, olen = 0;

	if (target[0] == '/') {
		if (!mlen || strncmp(target, t->mountpoint, mlen) != 0 || (target[mlen] != '/' && target[mlen]))
			return NULL;
		full = strdup(target + mlen);
	} else
		full = xasprintf("%s/%s", link_dir, target);
	if (!full)
		return NULL;
	out = calloc(1, strlen(full) + 2);
	for (seg = strtok_r(full, "/", &save); out && seg; seg = strtok_r(NULL, "/", &save)) {
		if (strcmp(seg, ".") == 0)
			continue;
		if (strcmp(seg, "..") == 0) {
			char *s = strrchr(out, '/');
			if (s) {
				*s = '\0';
				olen = (size_t)(s - out);
			}
			continue;
		}
		out[olen++] = '/';
		strcpy(out + olen, seg);
		olen += strlen(seg);
	}
	free(full);
	return out;
}

static int al_tree_symlink_impl(al_tree *t, const char *target, const char *path)
{
	node n, d;
	al_doc *ds = NULL, *run = NULL;
	char *dir = NULL, *resolved = NULL;
	cJSON *map = NULL, *entry, *fields = NULL, *dsf = NULL, *mask = NULL, *added = NULL, *all = NULL;
	const char *version;
	al_write w[2];
	int rc;

	memset(&d, 0, sizeof(d));
	if ((rc = node_parse(&n, path)))
		return rc == AL_ENOTFOUND ? al_error_set(AL_EPERM, "links go in a run's datasets/ folder") : rc;
	if (n.kind != N_RUN_LINK) {
		rc = al_error_set(AL_EPERM, "links go only in a run's datasets/ folder");
		goto cleanup;
	}
	if ((rc = check_name(n.name)) || (rc = require_running(t, &n)))
		goto cleanup;
	dir = strndup(path, (size_t)(strrchr(path, '/') - path));
	resolved = dir ? resolve_target(t, dir, target) : NULL;
	if (!resolved || node_parse(&d, resolved) != 0 || d.kind != N_DATASET ||
	    strcmp(d.project, n.project) != 0) {
		rc = al_error_set(AL_EINVAL, "a run's datasets/ link must point at a dataset of project %s", n.project);
		goto cleanup;
	}
	dataset_settle(t, d.ds_doc);   /* the link records the version of every file so far */
	if ((rc = get_doc(&ds, t, d.ds_doc)))
		goto cleanup;
	version = al_fields_get_string(ds->fields, "version");
	pthread_mutex_lock(&t->lock);
	if ((rc = get_doc(&run, t, n.run_doc)) == 0) {
		/* A copy of the map's fields (an empty map may come without a "fields" object). */
		const cJSON *cur = al_value_get_map(al_fields_get(run->fields, "datasets"));
		cJSON *links = cur ? cJSON_Duplicate(cur, 1) : cJSON_CreateObject();
		map = al_value_map(links);
		entry = cJSON_CreateObject();
		al_fields_set(entry, "dataset", al_value_string(d.dataset));
		al_fields_set(entry, "version", version ? al_value_string(version) : al_value_null());
		al_fields_set(entry, "linked", al_value_time(al_now_us()));
		added = cJSON_CreateObject();
		al_fields_set(added, n.name, al_value_map(entry));
		if (al_fields_get(links, n.name)) {
			rc = al_error_set(AL_EEXISTS, "%s exists", path);
		} else {
			/* The run's size is checked with every link this mount knows; the write names
			 * only the new link's key, so another mount's links of the run stay. */
			al_fields_set(links, n.name, cJSON_Duplicate(al_fields_get(added, n.name), 1));
			all = cJSON_CreateObject();
			al_fields_set(all, "datasets", map);
			map = NULL;
			fields = cJSON_CreateObject();
			al_fields_set(fields, "datasets", al_value_map(added));
			added = NULL;
			dsf = cJSON_CreateObject();
			al_fields_set(dsf, "referenced", al_value_bool(1));
			mask = cJSON_CreateArray();
			if ((rc = run_fits(&n, run, all, RUN_HEADROOM)) == 0 &&
			    (rc = al_mask_add(mask, "datasets", n.name)) == 0) {
				w[0] = (al_write){AL_WRITE_UPDATE, n.run_doc, fields, AL_PRE_EXISTS, mask};
				w[1] = (al_write){AL_WRITE_UPDATE, d.ds_doc, dsf, AL_PRE_EXISTS, NULL};
				rc = al_store_commit(t->store, w, 2);
			}
		}
	}
	pthread_mutex_unlock(&t->lock);
cleanup:
	cJSON_Delete(mask);
	cJSON_Delete(added);
	cJSON_Delete(all);
	cJSON_Delete(map);
	cJSON_Delete(fields);
	cJSON_Delete(dsf);
	al_doc_free(ds);
	al_doc_free(run);
	free(dir);
	free(resolved);
	node_free(&d);
	node_free(&n);
	return rc;
}

int al_tree_readlink(char **out, al_tree *t, const char *path)
{
	node n;
	al_doc *run = NULL;
	int rc;
	const cJSON *e;

	*out = NULL;
	if ((rc = node_parse(&n, path)))
		return rc;
	if (n.kind != N_RUN_LINK) {
		rc = al_error_set(AL_EINVAL, "not a link: %s", path);
		goto cleanup;
	}
	if ((rc = get_doc(&run, t, n.run_doc)))
		goto cleanup;
	e = al_value_get_map(al_fields_get(al_value_get_map(al_fields_get(run->fields, "datasets")), n.name));
	if (!e) {
		rc = al_error_set(AL_ENOTFOUND, "no such link: %s", path);
		goto cleanup;
	}
	*out = xasprintf("%s/%s/datasets/%s", t->mountpoint ? t->mountpoint : "", n.project,
		al_fields_get_string(e, "dataset") ? al_fields_get_string(e, "dataset") : n.name);
cleanup:
	al_doc_free(run);
	node_free(&n);
	return rc;
}

static int al_tree_utimens_impl(al_tree *t, const char *path, int64_t mtime_us)
{
	node n;
	int rc;
	al_doc *d = NULL;
	al_file *f;
	scratch *s;

	pthread_mutex_lock(&t->lock);
	if (scratch_name(last_segment(path)) && (s = scratch_find(t, path))) {
		s->mtime_us = mtime_us;
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	/* Times set while the file is still open for writing (cp -p and cp -a set them before
	 * close()) are the ones its close records (README "Files behave like files"). */
	for (f = t->writers; f; f = f->next)
		if (strcmp(f->path, path) == 0) {
			__atomic_store_n(&f->mtime_us, mtime_us, __ATOMIC_RELAXED);
			__atomic_store_n(&f->mtime_set, 1, __ATOMIC_RELAXED);
		}
	pthread_mutex_unlock(&t->lock);
	if ((rc = node_parse(&n, path)))
		return rc;
	if (is_blob_kind(n.kind) && *n.rest) {
		char *id = al_id_encode(n.rest), *doc = xasprintf("%s/%s", n.coll, id);
		/* An ended run's files are read-only, their times too (README "Run lifecycle"). */
		if (n.kind == N_RUN_ARTIFACT)
			rc = require_running(t, &n);
		if (rc == 0 && al_store_get(&d, t->store, doc) == 0) {
			cJSON *f = cJSON_CreateObject();
			al_fields_set(f, "mtime", al_value_time(mtime_us));
			rc = commit1(t, AL_WRITE_UPDATE, doc, f, AL_PRE_EXISTS);
			cJSON_Delete(f);
		}
		free(id);
		free(doc);
	}
	al_doc_free(d);
	node_free(&n);
	return rc;
}

/* ---- open files ----------------------------------------------------------------------- */

static void register_writer(al_tree *t, al_file *f)
{
	pthread_mutex_lock(&t->lock);
	f->next = t->writers;
	t->writers = f;
	pthread_mutex_unlock(&t->lock);
	changed(t);
}

static void unregister_writer(al_tree *t, al_file *f)
{
	al_file **p;
	pthread_mutex_lock(&t->lock);
	for (p = &t->writers; *p; p = &(*p)->next)
		if (*p == f) {
			*p = f->next;
			break;
		}
	pthread_mutex_unlock(&t->lock);
	changed(t);
}

/* The cache's fetch function: a range of a blob from the blob store, or of an imported file
 * from its own URL. Called by the cache's readers and read-ahead workers at once. */
static int fill_from_blobs(void *ctx, const char *hash, const char *source, int fd, uint64_t off,
	uint64_t len, int *whole)
{
	al_tree *t = ctx;
	*whole = 0;
	if (source)
		return al_fetcher_fetch(t->fetcher, source, off, len, fd, whole);
	return t->blobs->fetch(t->blobs, hash, off, len, fd, off);
}

/* The URL to read a file's blob from when it is not the blob store's own object (an imported
 * file), else NULL. Old records of another local store fall back to the store by hash. */
static const char *blob_source(al_tree *t, const al_doc *d, const char *hash)
{
	const char *blob = al_fields_get_string(d->fields, "blob");
	char *own;
	int same;
	if (!blob || !*blob || !(strncmp(blob, "http://", 7) == 0 || strncmp(blob, "https://", 8) == 0 ||
	    strncmp(blob, "s3://", 5) == 0 || strncmp(blob, "gs://", 5) == 0))
		return NULL;
	own = t->blobs->uri(t->blobs, hash);
	same = own && strcmp(own, blob) == 0;
	free(own);
	return same ? NULL : blob;
}

/* Hands the cache the piece hashes recorded with a blob (files/{hash}), so each range of it is
 * verified as it arrives. Without them (blobs stored by older versions, imports) the cache holds
 * a large blob back until it is verified whole: slower to start, never wrong. */
static void blob_pieces(al_tree *t, al_cache_blob *cb, const char *hash)
{
	char *fdoc = xasprintf("files/%s", hash);
	const char *text;
	al_doc *d = NULL;
	al_pieces p;
	int64_t psize = 0, size = 0;

	if (fdoc && al_store_get(&d, t->store, fdoc) == 0 &&
	    (text = al_fields_get_string(d->fields, "pieces")) != NULL &&
	    al_fields_get_int(&psize, d->fields, "piece_size") == 0 &&
	    al_fields_get_int(&size, d->fields, "size") == 0 && psize > 0 && size >= 0) {
		if (al_pieces_parse(&p, (uint64_t)psize, (uint64_t)size, text) != 0 ||
		    al_cache_blob_set_pieces(cb, &p) != 0)
			fprintf(stderr, "aletheia: ignoring the piece hashes recorded for blob %s (%s); it is "
				"verified whole before it is read\n", hash, al_error_last());
		al_pieces_clear(&p);
	}
	al_doc_free(d);
	free(fdoc);
}

/* Opens the stored content of a blob-backed file for reading: the blob store's own file when
 * it has one (file://), else streamed through the cache (al_file_wait before reading). */
static int blob_open_read(al_file *f, int64_t *size_out)
{
	al_tree *t = f->t;
	al_doc *d = NULL;
	char *id = al_id_encode(f->n.rest), *doc = xasprintf("%s/%s", f->n.coll, id), *local = NULL;
	const char *hash, *type, *source;
	int64_t size = 0;
	int rc;

	if ((rc = get_doc(&d, t, doc)))
		goto cleanup;
	type = al_fields_get_string(d->fields, "type");
	if (type && strcmp(type, "dir") == 0) {
		rc = al_error_set(AL_EISDIR, "%s is a folder", f->n.rest);
		goto cleanup;
	}
	hash = al_fields_get_string(d->fields, "hash");
	al_fields_get_int(&size, d->fields, "size");
	if (!hash || !al_hash_is_valid(hash)) {
		rc = al_error_set(AL_EIO, "record of %s has no valid hash", f->n.rest);
		goto cleanup;
	}
	snprintf(f->hash, sizeof(f->hash), "%s", hash);
	source = blob_source(t, d, hash);
	if (!source && t->blobs->verify) {
		/* A local blob: size checked at every open, content hashed when it changed since it was
		 * last found good (README "Durability"); a damaged one is never served. */
		rc = t->blobs->verify(&f->fd, t->blobs, hash, (uint64_t)(size > 0 ? size : 0), 0);
		if (rc == AL_ENOTFOUND) {
			char why[512];
			snprintf(why, sizeof(why), "%s", al_error_last());
			rc = al_error_set(AL_EIO, "the content of %s is missing: %s", f->n.rest, why);
		}
	} else if (!source && t->blobs->local_path(&local, t->blobs, hash) == 0) {
		f->fd = open(local, O_RDONLY | O_CLOEXEC);
		if (f->fd < 0)
			rc = al_error_set_errno(al_error_from_errno(errno), errno, "cannot open blob %s", local);
	} else {
		rc = al_cache_open_blob(&f->cb, t->cache, hash, source, (uint64_t)(size > 0 ? size : 0));
		if (rc == 0 && al_cache_blob_wants_pieces(f->cb))
			blob_pieces(t, f->cb, hash);
	}
	if (size_out)
		*size_out = size;
	f->size = (uint64_t)(size > 0 ? size : 0);
cleanup:
	al_doc_free(d);
	free(id);
	free(doc);
	free(local);
	return rc;
}

static int staging_create(al_file *f)
{
	char *tmpl = xasprintf("%s/write-XXXXXX", f->t->staging_dir);
	if (!tmpl)
		return al_error_set(AL_ENOMEM, "out of memory");
	f->fd = mkostemp(tmpl, O_CLOEXEC);
	if (f->fd < 0) {
		int e = errno;
		free(tmpl);
		return al_error_set_errno(al_error_from_errno(e), e, "cannot create a staging file in %s",
			f->t->staging_dir);
	}
	f->staging = tmpl;
	return 0;
}

static int copy_fd(int dst, int src)
{
	char buf[1 << 16];
	off_t off = 0;
	ssize_t n;
	while ((n = pread(src, buf, sizeof(buf), off)) > 0) {
		if (pwrite(dst, buf, (size_t)n, off) != n)
			return al_error_set_errno(al_error_from_errno(errno), errno, "cannot copy into staging file");
		off += n;
	}
	return n < 0 ? al_error_set_errno(AL_EIO, errno, "cannot read blob") : 0;
}

static int open_blob(al_file *f, int flags, const char *path)
{
	al_tree *t = f->t;
	al_attr a;
	int exists, rc;

	exists = blob_attr(&a, t, &f->n, path, 0) == 0;
	if (exists && a.type == AL_NODE_DIR)
		return al_error_set(AL_EISDIR, "%s is a folder", path);
	if (!(flags & AL_OPEN_WRITE)) {
		al_file *w;
		if (!exists)
			return al_error_set(AL_ENOTFOUND, "no such file: %s", path);
		/* A file still being written reads from its staging file. */
		pthread_mutex_lock(&t->lock);
		w = find_writer(t, path);
		f->fd = w && w->staging ? open(w->staging, O_RDONLY | O_CLOEXEC) : -1;
		pthread_mutex_unlock(&t->lock);
		f->kind = F_BLOB_READ;
		return f->fd >= 0 ? 0 : blob_open_read(f, NULL);
	}
	if (exists && (flags & AL_OPEN_EXCL) && (flags & AL_OPEN_CREATE))
		return al_error_set(AL_EEXISTS, "%s exists", path);
	if (!exists && !(flags & AL_OPEN_CREATE))
		return al_error_set(AL_ENOTFOUND, "no such file: %s", path);
	if (f->n.kind == N_DATASET_PATH) {
		/* New files are welcome (each makes a new version); existing ones never change. */
		if (exists)
			return al_error_set(AL_EPERM, "dataset files are write-once: %s exists", path);
	} else if (f->n.kind != N_EXP_ARTIFACT && (rc = require_running(t, &f->n)))
		return rc;
	if (exists) {
		/* A file open for writing is one open file for every writer (README "artifacts": two
		 * connections to one database, a lock file rewritten in place): the open joins it. */
		al_file *w;
		pthread_mutex_lock(&t->lock);
		for (w = t->writers; w; w = w->next)
			if (w->kind == F_BLOB_WRITE && strcmp(w->path, path) == 0 &&
			    (w->flags & AL_OPEN_APPEND) == (flags & AL_OPEN_APPEND))
				break;
		if (w)
			w->handles++;
		pthread_mutex_unlock(&t->lock);
		if (w) {
			f->share = w;
			return (flags & AL_OPEN_TRUNC) ? al_file_truncate(w, 0) : 0;
		}
	}
	if (!exists && (rc = check_rest_names(f->n.rest)))
		return rc;
	f->kind = F_BLOB_WRITE;
	if ((rc = staging_create(f)))
		return rc;
	if (exists && !(flags & AL_OPEN_TRUNC)) {
		/* Partial overwrites start from the current content. */
		al_file src = {.t = t, .n = f->n, .fd = -1};
		if ((rc = blob_open_read(&src, NULL)) == 0) {
			if (src.cb && (rc = al_cache_blob_complete(src.cb)) == 0)
				rc = copy_fd(f->fd, al_cache_blob_fd(src.cb));
			else if (!src.cb)
				rc = copy_fd(f->fd, src.fd);
			if (src.fd >= 0)
				close(src.fd);
			al_cache_blob_close(src.cb);
		}
		if (rc)
			return rc;
	}
	f->dirty = !exists || (flags & AL_OPEN_TRUNC);
	if (exists && !f->dirty)
		f->mtime_us = a.mtime_us;   /* opening for writing changes no time; writing does */
	register_writer(t, f);
	return 0;
}

static int open_text(al_file *f, int flags, const char *path)
{
	al_tree *t = f->t;
	int rc, exists;
	al_buf b = AL_BUF_INIT;

	rc = render(&b, NULL, t, &f->n);
	exists = rc == 0;
	if (rc && rc != AL_ENOTFOUND)
		goto fail;
	if (!(flags & AL_OPEN_WRITE)) {
		if (!exists)
			goto fail;
		f->kind = F_GENERATED;
		f->text = b;
		return 0;
	}
	switch (f->n.kind) {
	case N_RUN_TEXT:
		if (strcmp(f->n.name, "status") != 0 && strcmp(f->n.name, "description") != 0 &&
		    (rc = require_running(t, &f->n)))
			goto fail;
		break;
	case N_PARAMS:
	case N_PARAMS_JSON:
		if ((rc = require_running(t, &f->n)))
			goto fail;
		if (!exists && (rc = check_rest_names(f->n.rest)))
			goto fail;
		break;
	case N_METADATA:
		if (!exists && (rc = check_name(f->n.name)))
			goto fail;
		if ((rc = doc_exists(t, f->n.proj_doc)))
			goto fail;
		break;
	case N_EXP_DESCRIPTION:
	case N_DS_DESCRIPTION:
		break;
	default:
		rc = al_error_set(AL_EACCES, "%s is read-only", path);
		goto fail;
	}
	if (!exists && !(flags & AL_OPEN_CREATE)) {
		rc = al_error_set(AL_ENOTFOUND, "no such file: %s", path);
		goto fail;
	}
	if (exists && (flags & AL_OPEN_EXCL) && (flags & AL_OPEN_CREATE)) {
		rc = al_error_set(AL_EEXISTS, "%s exists", path);
		goto fail;
	}
	f->kind = F_TEXT;
	f->low_write = SIZE_MAX;
	/* O_TRUNC alone changes nothing: the new content replaces the old only once something was
	 * written and the file is closed (README "Durability"), so a writer killed before its first
	 * write, or one whose write failed, leaves the old value. A new file exists at once. */
	if (flags & AL_OPEN_TRUNC)
		al_buf_clear(&b);
	f->keep = b.len;
	if (!exists)
		f->dirty = 1;
	f->text = b;
	register_writer(t, f);
	return 0;
fail:
	if (rc == AL_ENOTFOUND)
		al_error_set(AL_ENOTFOUND, "no such file: %s", path);
	al_buf_dispose(&b);
	return rc;
}

/* Opens (or creates) a scratch file. 1 when path is no scratch file: the caller opens it as
 * usual (not a scratch place, or a value recorded under such a name before they existed). */
static int open_scratch(al_file *f, int flags, const char *path)
{
	al_tree *t = f->t;
	node parent;
	char *dir = NULL;
	scratch *s, *made = NULL;
	al_attr a;
	int rc = 0;

	if (!scratch_place(&parent, &dir, path))
		return 1;
	pthread_mutex_lock(&t->lock);
	if ((s = scratch_find(t, path)) && !((flags & AL_OPEN_CREATE) && (flags & AL_OPEN_EXCL)))
		s->refs++;
	pthread_mutex_unlock(&t->lock);
	if (s) {
		if ((flags & AL_OPEN_CREATE) && (flags & AL_OPEN_EXCL)) {
			rc = al_error_set(AL_EEXISTS, "%s exists", path);
			goto cleanup;
		}
		goto opened;
	}
	if (getattr_recorded(&a, t, path) == 0) {
		rc = 1;
		goto cleanup;
	}
	if (!(flags & AL_OPEN_CREATE)) {
		rc = al_error_set(AL_ENOTFOUND, "no such file: %s", path);
		goto cleanup;
	}
	if ((rc = check_name(last_segment(path))))
		goto cleanup;
	/* The folder must exist; params/ of a run that ended is read-only like its params. */
	if ((rc = al_tree_getattr(&a, t, dir)) || (a.type != AL_NODE_DIR &&
	    (rc = al_error_set(AL_ENOTDIR, "not a folder: %s", dir))))
		goto cleanup;
	if (parent.kind == N_PARAMS && (rc = require_running(t, &parent)))
		goto cleanup;
	if (!(made = calloc(1, sizeof(*made))) || !(made->path = strdup(path))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	made->mtime_us = al_now_us();
	made->refs = 2;   /* the list's and this handle's */
	pthread_mutex_lock(&t->lock);
	if ((s = scratch_find(t, path))) {   /* made meanwhile by someone else */
		if ((flags & AL_OPEN_EXCL))
			rc = al_error_set(AL_EEXISTS, "%s exists", path);
		else
			s->refs++;
	} else {
		made->next = t->scratch;
		t->scratch = s = made;
		made = NULL;
	}
	pthread_mutex_unlock(&t->lock);
	changed(t);   /* a "no such file" kept for this path is wrong from now on */
	if (rc)
		goto cleanup;
opened:
	f->kind = F_SCRATCH;
	f->sc = s;
	if ((flags & AL_OPEN_WRITE) && (flags & AL_OPEN_TRUNC)) {
		pthread_mutex_lock(&t->lock);
		scratch_resize_locked(t, s, 0);
		s->mtime_us = al_now_us();
		s->dirty = 1;
		pthread_mutex_unlock(&t->lock);
	}
cleanup:
	if (made) {
		free(made->path);
		free(made);
	}
	node_free(&parent);
	free(dir);
	return rc;
}

static int metric_still_running(al_file *f);

/* Records a writer's partial last line as a point (its last close, or a reader after a close). */
static int metric_end_line(al_file *f)
{
	int rc;
	if ((rc = metric_still_running(f)) == 0 && (rc = al_buf_puts(&f->text, "\n")) == 0)
		rc = al_series_append_text(f->t->series, f->staging, f->text.ptr, f->text.len);
	if (rc)
		fprintf(stderr, "aletheia: %s: the last line, written without its newline, was not "
			"recorded: %s\n", f->path, al_error_last());
	al_buf_clear(&f->text);
	f->line_closed = 0;
	return rc;
}

/* Before the series of metric_doc is read: the partial last lines whose descriptors were closed
 * (a printf without \n, then close) are recorded, so a reader right after sees them. A writer
 * busy in a write is skipped: its line is not closed. */
static void metric_settle_lines(al_tree *t, const char *metric_doc)
{
	al_file *w;
	pthread_mutex_lock(&t->lock);   /* writers are unregistered under it before they go */
	for (w = t->writers; w; w = w->next)
		if (w->kind == F_METRIC && w->line_closed && w->staging &&
		    strcmp(w->staging, metric_doc) == 0 && pthread_mutex_trylock(&w->mu) == 0) {
			if (w->line_closed && w->text.len)
				metric_end_line(w);
			pthread_mutex_unlock(&w->mu);
		}
	pthread_mutex_unlock(&t->lock);
}

/* Brings a metric handle's text up to the series' current points (README "metrics": readers see
 * points appended after their open, as with any log file). f->mu held. */
static int metric_refresh(al_file *f)
{
	char *text = NULL;
	size_t len = 0;
	int whole = 0, rc;

	metric_settle_lines(f->t, f->staging);
	rc = al_series_render_tail(&text, &len, &whole, &f->points, &f->view, f->t->series, f->staging);
	if (rc == AL_ENOTFOUND) {   /* not one point yet (a new metric still being written) */
		al_error_clear();
		return 0;
	}
	if (rc)
		return rc;
	if (whole) {
		free(f->snap);
		f->snap = text;
		f->snaplen = len;
		return 0;
	}
	if (len) {
		char *grown = realloc(f->snap, f->snaplen + len);
		if (!grown) {
			free(text);
			return al_error_set(AL_ENOMEM, "out of memory");
		}
		memcpy(grown + f->snaplen, text, len);
		f->snap = grown;
		f->snaplen += len;
	}
	free(text);
	return 0;
}

static int open_metric(al_file *f, int flags, const char *path)
{
	al_tree *t = f->t;
	al_attr a;
	int rc, exists;
	char *id;

	if (!*f->n.rest)
		return al_error_set(AL_EISDIR, "metrics/ is a folder");
	exists = metric_attr(&a, t, &f->n, path, 0, 0) == 0;
	if (exists && a.type == AL_NODE_DIR)
		return al_error_set(AL_EISDIR, "%s is a folder", path);
	if (!exists && !((flags & AL_OPEN_WRITE) && (flags & AL_OPEN_CREATE)))
		return al_error_set(AL_ENOTFOUND, "no such metric: %s", path);
	id = al_id_encode(f->n.rest);
	f->staging = xasprintf("%s/metrics/%s", f->n.run_doc, id);   /* the metric document */
	free(id);
	f->kind = F_METRIC;
	f->view = UINT64_MAX;
	if (flags & AL_OPEN_WRITE) {
		f->status_gen = __atomic_load_n(&t->status_gen, __ATOMIC_SEQ_CST);
		if ((rc = require_running(t, &f->n)))
			return rc;
		if (!exists && (rc = check_rest_names(f->n.rest)))
			return rc;
		/* A created metric exists from now on, empty until its first point (touch, numpy's
		 * savetxt: create, close, open again). */
		if (!exists && (rc = al_series_touch(t->series, f->staging)))
			return rc;
		register_writer(t, f);
		return 0;
	}
	return metric_refresh(f);
}

int al_file_open(al_file **out, al_tree *t, const char *path, int flags)
{
	al_file *f = calloc(1, sizeof(*f));
	al_attr a;
	int rc;

	*out = NULL;
	if (!f)
		return al_error_set(AL_ENOMEM, "out of memory");
	pthread_mutex_init(&f->mu, NULL);
	f->t = t;
	f->fd = -1;
	f->flags = flags;
	f->handles = 1;
	if (!(f->path = strdup(path))) {
		free(f);
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	f->mtime_us = al_now_us();
	if ((rc = open_scratch(f, flags, path)) <= 0) {
		if (rc)
			goto fail;
		*out = f;
		return 0;
	}
	if ((rc = node_parse(&f->n, path))) {
		if (rc == AL_ENOTFOUND && (flags & AL_OPEN_CREATE))
			rc = al_error_set(AL_EPERM, "cannot create files here: %s", path);
		goto fail;
	}
	switch (f->n.kind) {
	case N_CTL_IMPORT:
		/* Lines written are imports; a reader (cat, grep -r) finds it empty, not an error. */
		f->kind = flags & AL_OPEN_WRITE ? F_IMPORT : F_GENERATED;
		break;
	case N_CTL_FSCK:
		f->kind = F_FSCK;    /* reads nothing until this handle writes a request */
		break;
	case N_CTL_STATUS:
	case N_DATASET_JSON:
	case N_RUNS_CSV:
	case N_RUN_JSON:
		if (flags & AL_OPEN_WRITE) {
			rc = al_error_set(AL_EACCES, "%s is read-only", path);
			goto fail;
		}
		/* fall through */
	case N_METADATA:
	case N_EXP_DESCRIPTION:
	case N_DS_DESCRIPTION:
	case N_RUN_TEXT:
	case N_PARAMS_JSON:
		rc = open_text(f, flags, path);
		break;
	case N_PARAMS:
		if (*f->n.rest && al_tree_getattr(&a, t, path) == 0 && a.type == AL_NODE_DIR)
			rc = al_error_set(AL_EISDIR, "%s is a folder", path);
		else
			rc = *f->n.rest ? open_text(f, flags, path) : al_error_set(AL_EISDIR, "params/ is a folder");
		break;
	case N_METRICS:
		rc = open_metric(f, flags, path);
		break;
	case N_DATASET_PATH:
		if ((rc = doc_exists(t, f->n.ds_doc)) == 0)
			rc = open_blob(f, flags, path);
		break;
	case N_EXP_ARTIFACT:
		if ((rc = doc_exists(t, f->n.exp_doc)) == 0)
			rc = *f->n.rest ? open_blob(f, flags, path) : al_error_set(AL_EISDIR, "a folder");
		break;
	case N_RUN_ARTIFACT:
	case N_OUTPUT_LOG:
		if ((rc = doc_exists(t, f->n.run_doc)) == 0)
			rc = *f->n.rest ? open_blob(f, flags, path) : al_error_set(AL_EISDIR, "a folder");
		break;
	default:
		rc = (flags & AL_OPEN_CREATE) ? al_error_set(AL_EPERM, "cannot create files here: %s", path)
					      : al_error_set(AL_EISDIR, "%s is a folder", path);
	}
	if (f->share) {
		/* joined an open file (open_blob): that is the handle */
		al_file *w = f->share;
		f->share = NULL;
		if (rc == 0)
			*out = w;
		else
			al_file_release(w);
		f->kind = F_GENERATED;   /* nothing of its own to undo */
		al_file_release(f);
		return rc;
	}
	if (rc)
		goto fail;
	*out = f;
	return 0;
fail:
	al_file_release(f);
	return rc;
}

int al_file_fd_get(int *fd, al_file *f, uint64_t off, size_t len)
{
	int rc;
	*fd = -1;
	if (f->cb) {
		if ((rc = al_cache_blob_wait(f->cb, off, len)))
			return rc;
		*fd = al_cache_blob_fd(f->cb);
	} else if (f->kind == F_BLOB_READ) {
		*fd = f->fd;
		/* A local blob cut short behind the mount while open (checked at open, README
		 * "Durability"): a read it cannot answer whole is an error, never an early end. */
		if (f->size && off < f->size) {
			struct stat st;
			uint64_t need = off + len < f->size ? off + len : f->size;
			if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size < need)
				return al_error_set(AL_EIO, "%s: its blob holds %llu bytes, not %llu: changed "
					"behind the mount", f->path, (unsigned long long)st.st_size,
					(unsigned long long)f->size);
		}
	} else if (f->kind == F_BLOB_WRITE) {
		/* A write handle's file changes under it (a commit moves the staged copy into the blob
		 * store, the next write stages a new one, closing the old descriptor): a reader gets its
		 * own descriptor of what is current, taken under the handle's lock. */
		pthread_mutex_lock(&f->mu);
		*fd = f->fd >= 0 ? dup(f->fd) : -1;
		pthread_mutex_unlock(&f->mu);
		if (*fd < 0)
			return al_error_set_errno(AL_EIO, errno, "cannot read %s", f->path);
	}
	return 0;
}

void al_file_fd_done(al_file *f, int fd)
{
	if (f->kind == F_BLOB_WRITE && fd >= 0)
		close(fd);
}

int al_file_keep_cache(al_file *f)
{
	/* Not while still streaming: a blob that fails its verification must not leave pages behind. */
	return f->kind == F_BLOB_READ && (!f->cb || al_cache_blob_is_complete(f->cb));
}

int al_file_direct_io(al_file *f)
{
	/* Writes to metrics are reformatted: the kernel must not cache what was written. The fsck
	 * report grows past the file's size (0): its reads must reach us. */
	return (f->kind == F_METRIC && (f->flags & AL_OPEN_WRITE)) || f->kind == F_FSCK;
}

int al_file_getattr(al_attr *out, al_file *f)
{
	int rc;
	if (f->kind == F_BLOB_WRITE) {
		/* f->path follows renames (move_held), which change it under f->mu. */
		pthread_mutex_lock(&f->mu);
		rc = al_tree_getattr(out, f->t, f->path);
		pthread_mutex_unlock(&f->mu);
		if (rc)
			attr_file(out, 0444, 0, al_now_us());
		return rc;
	}
	rc = al_tree_getattr(out, f->t, f->path);
	if (rc)   /* gone since it was opened: the handle still answers for what it holds */
		attr_file(out, 0444, 0, al_now_us());
	switch (f->kind) {
	case F_METRIC:
		/* Points appended since open are part of the file now (tail -f fstat()s, then reads);
		 * the kernel reads up to the size given here, so it must be what the handle serves. */
		pthread_mutex_lock(&f->mu);
		if ((rc = metric_refresh(f)) == 0)
			out->size = f->snaplen;
		pthread_mutex_unlock(&f->mu);
		return rc;
	case F_GENERATED:
	case F_TEXT:
		/* The content rendered at open: a newer render's size would make the kernel pad with
		 * NUL bytes or cut it short. */
		pthread_mutex_lock(&f->mu);
		out->size = f->text.len;
		pthread_mutex_unlock(&f->mu);
		return 0;
	case F_SCRATCH:   /* also once unlinked or renamed: the handle still holds it */
		pthread_mutex_lock(&f->t->lock);
		attr_file(out, 0644, f->sc->data.len, f->sc->mtime_us);
		pthread_mutex_unlock(&f->t->lock);
		return 0;
	default:
		return rc;
	}
}

int al_file_read(size_t *nread, al_file *f, char *buf, size_t size, uint64_t off)
{
	const char *src = NULL;
	size_t len = 0;
	ssize_t n;

	*nread = 0;
	switch (f->kind) {
	case F_BLOB_READ:
	case F_BLOB_WRITE:
	{
		int fd, rc = al_file_fd_get(&fd, f, off, size);
		if (rc)
			return rc;
		n = pread(fd, buf, size, (off_t)off);
		al_file_fd_done(f, fd);
		if (n < 0)
			return al_error_set_errno(AL_EIO, errno, "read failed");
		*nread = (size_t)n;
		return 0;
	}
	case F_SCRATCH:
		pthread_mutex_lock(&f->t->lock);
		if (off < f->sc->data.len) {
			*nread = f->sc->data.len - off < size ? f->sc->data.len - off : size;
			memcpy(buf, f->sc->data.ptr + off, *nread);
		}
		pthread_mutex_unlock(&f->t->lock);
		return 0;
	case F_METRIC: {
		/* A reader at the end (tail -f, a polling loop) gets the points appended since. */
		int rc = 0;
		pthread_mutex_lock(&f->mu);
		if (off + size > f->snaplen)
			rc = metric_refresh(f);
		if (rc == 0 && off < f->snaplen) {
			*nread = f->snaplen - off < size ? f->snaplen - off : size;
			memcpy(buf, f->snap + off, *nread);
		}
		pthread_mutex_unlock(&f->mu);
		return rc;
	}
	case F_FSCK: {
		/* The report is made as it is read; read() returns as soon as it has new lines. */
		int done = 0, rc = 0;
		pthread_mutex_lock(&f->mu);
		while (f->fsck && !f->fsck_done && f->text.len <= off && rc == 0) {
			rc = al_fsck_step(&done, f->fsck, &f->text);
			f->fsck_done = done;
		}
		if (rc == 0 && off < f->text.len) {
			*nread = f->text.len - off < size ? f->text.len - off : size;
			memcpy(buf, f->text.ptr + off, *nread);
		}
		pthread_mutex_unlock(&f->mu);
		return rc;
	}
	default:
		src = f->text.ptr;
		len = f->text.len;
	}
	if (off >= len)
		return 0;
	*nread = len - off < size ? len - off : size;
	memcpy(buf, src + off, *nread);
	return 0;
}

static int check_line_value(al_file *f);
static int text_checked(char **out, const al_buf *b, const char *what);
static int import_write(al_file *f, const char *buf, size_t size);
static int import_lines(al_file *f, int at_close);
static int fsck_request(al_file *f, const char *buf, size_t size);

/* A write handle whose staged file was moved into the blob store stages a copy again. */
static int restage(al_file *f)
{
	int old = f->fd, rc;
	if (f->staging)
		return 0;
	if ((rc = staging_create(f)))
		return rc;
	if (old >= 0) {
		rc = copy_fd(f->fd, old);
		close(old);
	}
	return rc;
}

/* README "metrics": a write() is one atomic append; the kernel cuts writes of more than this into
 * pieces (max_write, less the offset of the buffer in its first page), so anything larger is
 * refused whole: its first piece already is. A line waiting for its newline is bounded too. */
#define METRIC_WRITE_MAX (AL_MAX_WRITE - 4096)
#define METRIC_LINE_MAX 65536

/* A descriptor opened while the run was running writes nothing once it ended (README "Run
 * lifecycle"); the run is looked at again only after some status changed. */
static int metric_still_running(al_file *f)
{
	uint64_t gen = __atomic_load_n(&f->t->status_gen, __ATOMIC_SEQ_CST);
	int rc;
	if (f->status_gen == gen)
		return 0;
	if ((rc = require_running(f->t, &f->n)) == 0)
		f->status_gen = gen;
	return rc;
}

/* A line past METRIC_LINE_MAX: what was kept of it goes, and so does its rest, up to its
 * newline (it would be recorded as a point nobody wrote otherwise). */
static int metric_line_too_long(al_file *f)
{
	al_buf_clear(&f->text);
	f->skip_line = 1;
	return al_error_set(AL_EINVAL, "%s: a line longer than %d bytes is no metric point", f->path,
		METRIC_LINE_MAX);
}

static int metric_write(al_file *f, const char *buf, size_t size)
{
	const char *nl;
	const char *text;
	size_t len, done, pending = f->text.len;
	int rc;

	if (size > METRIC_WRITE_MAX)
		return al_error_set(AL_EINVAL, "%s: one write() to a metric takes at most %u bytes, "
			"appended whole; write in smaller pieces", f->path, (unsigned)METRIC_WRITE_MAX);
	if ((rc = metric_still_running(f))) {
		al_buf_clear(&f->text);
		return rc;
	}
	f->line_closed = 0;   /* a line goes on after a close() of a copy of the descriptor */
	if (f->skip_line) {
		/* The rest of a line refused for its length, up to its newline, is refused with it. */
		const char *end = memchr(buf, '\n', size);
		size_t skipped = end ? (size_t)(end - buf) + 1 : size;
		if (end)
			f->skip_line = 0;
		if (skipped < size && (rc = metric_write(f, buf + skipped, size - skipped)))
			return rc;
		return al_error_set(AL_EINVAL, "%s: the rest of a line longer than %d bytes is dropped "
			"with it", f->path, METRIC_LINE_MAX);
	}
	if (!(nl = memrchr(buf, '\n', size))) {
		if (pending + size > METRIC_LINE_MAX)
			return metric_line_too_long(f);
		return al_buf_put(&f->text, buf, size);   /* a partial line waits for its newline */
	}
	done = (size_t)(nl - buf) + 1;
	if (size - done > METRIC_LINE_MAX)
		return metric_line_too_long(f);
	if (pending) {
		if ((rc = al_buf_put(&f->text, buf, done)))
			return rc;
		text = f->text.ptr;
		len = f->text.len;
	} else {
		text = buf;
		len = done;
	}
	rc = al_series_append_text(f->t->series, f->staging, text, len);
	/* On error none of this write's lines are recorded, and a partial line kept from before is
	 * part of what failed: later writes start clean. */
	al_buf_clear(&f->text);
	if (rc)
		return rc;
	return done < size ? al_buf_put(&f->text, buf + done, size - done) : 0;
}

static int al_file_write_impl(al_file *f, const char *buf, size_t size, uint64_t off)
{
	ssize_t n;
	switch (f->kind) {
	case F_METRIC:
		return metric_write(f, buf, size);
	case F_IMPORT:
		return import_write(f, buf, size);
	case F_FSCK:
		return fsck_request(f, buf, size);
	case F_SCRATCH: {
		scratch *sc = f->sc;
		int rc = 0;
		pthread_mutex_lock(&f->t->lock);
		if (f->flags & AL_OPEN_APPEND)
			off = sc->data.len;
		if (off > SCRATCH_MAX || size > SCRATCH_MAX)
			rc = al_error_set(AL_ENOSPC, "editors' scratch files hold at most %u MiB", SCRATCH_MAX >> 20);
		else if (off + size > sc->data.len)
			rc = scratch_resize_locked(f->t, sc, off + size);
		if (rc == 0) {
			memcpy(sc->data.ptr + off, buf, size);
			sc->mtime_us = al_now_us();
			sc->dirty = 1;
		}
		pthread_mutex_unlock(&f->t->lock);
		return rc;
	}
	case F_BLOB_WRITE: {
		int rc = restage(f);
		if (rc)
			return rc;
		__atomic_store_n(&f->mtime_us, al_now_us(), __ATOMIC_RELAXED);
		__atomic_store_n(&f->mtime_set, 0, __ATOMIC_RELAXED);
		if (f->flags & AL_OPEN_APPEND) {
			struct stat st;
			if (fstat(f->fd, &st) == 0)
				off = (uint64_t)st.st_size;
		}
		n = pwrite(f->fd, buf, size, (off_t)off);
		f->dirty = 1;
		if (n >= 0 && (size_t)n == size)
			return 0;
		f->failed = n < 0 ? al_error_from_errno(errno) : AL_ENOSPC;
		if (n < 0)
			return al_error_set_errno(f->failed, errno, "cannot write staging file");
		return al_error_set(AL_ENOSPC, "short write to staging file");
	}
	case F_TEXT: {
		int rc;
		if (f->flags & AL_OPEN_APPEND)
			off = f->text.len;
		if (off > (1u << 24) || size > (1u << 24))
			return al_error_set(AL_ENOSPC, "small text files only (16 MiB)");
		if (off + size > f->text.len) {
			size_t old = f->text.len;
			if ((rc = al_buf_grow(&f->text, off + size - old)))
				return rc;
			memset(f->text.ptr + old, 0, off + size - old);
			f->text.len = off + size;
			f->text.ptr[f->text.len] = '\0';
		}
		memcpy(f->text.ptr + off, buf, size);
		f->dirty = 1;
		if (off < f->low_write)
			f->low_write = off;
		if ((rc = check_line_value(f))) {
			/* nothing of it is recorded at close */
			al_buf_clear(&f->text);
			f->dirty = 0;
		}
		return rc;
	}
	default:
		return al_error_set(AL_EACCES, "not open for writing");
	}
}

static int al_file_truncate_impl(al_file *f, uint64_t size)
{
	switch (f->kind) {
	case F_METRIC:
	case F_IMPORT:
	case F_FSCK:
		return 0;   /* append-only: history is never lost */
	case F_SCRATCH: {
		int rc;
		pthread_mutex_lock(&f->t->lock);
		if ((rc = scratch_resize_locked(f->t, f->sc, size)) == 0) {
			f->sc->mtime_us = al_now_us();
			f->sc->dirty = 1;
		}
		pthread_mutex_unlock(&f->t->lock);
		return rc;
	}
	case F_BLOB_WRITE: {
		int rc = restage(f);
		if (rc)
			return rc;
		if (ftruncate(f->fd, (off_t)size) != 0)
			return al_error_set_errno(al_error_from_errno(errno), errno, "truncate failed");
		__atomic_store_n(&f->mtime_us, al_now_us(), __ATOMIC_RELAXED);
		__atomic_store_n(&f->mtime_set, 0, __ATOMIC_RELAXED);
		f->dirty = 1;
		return 0;
	}
	case F_TEXT:
		if (size < f->low_write)
			f->low_write = size;
		if (size < f->text.len) {
			f->text.len = size;
			if (f->text.ptr)
				f->text.ptr[size] = '\0';
		} else if (size > f->text.len) {
			size_t old = f->text.len;
			int rc = al_buf_grow(&f->text, size - old);
			if (rc)
				return rc;
			memset(f->text.ptr + old, 0, size - old);
			f->text.len = size;
			f->text.ptr[size] = '\0';
		}
		/* Cutting to nothing through an open descriptor (vim opens, ftruncate()s, then writes)
		 * is like O_TRUNC: the old value stays until something is written, so an editor
		 * killed in between loses nothing. truncate(2) of the path clears (al_tree_truncate). */
		if (size > 0)
			f->dirty = 1;
		return 0;
	default:
		return al_error_set(AL_EACCES, "not open for writing");
	}
}

/* ---- recording on close --------------------------------------------------------------- */

static const char *status_words[] = {"running", "finished", "failed", "killed", NULL};

/* "WORD" or "WORD CODE" (INTERFACE.md §3.7 plus an optional exit code). */
static int parse_status(char word[32], long long *code, int *has_code, const char *text)
{
	char extra[64] = "";
	int fields, i, known = 0, consumed = 0;

	word[0] = '\0';
	fields = sscanf(text, " %31s %63s %n", word, extra, &consumed);
	/* Exactly "WORD" or "WORD CODE": anything after that is a bad value, not ignored. */
	if (fields == 2 && text[consumed] != '\0')
		return al_error_set(AL_EINVAL, "status takes one word and an optional exit code (got \"%.40s\")", text);
	for (i = 0; status_words[i]; i++)
		known |= strcmp(word, status_words[i]) == 0;
	if (fields < 1 || !known)
		return al_error_set(AL_EINVAL, "status must be running, finished, failed or killed (got \"%.40s\")", text);
	*has_code = fields == 2;
	if (*has_code) {
		char *end;
		errno = 0;
		*code = strtoll(extra, &end, 10);
		if (*end || errno || *code < INT32_MIN || *code > INT32_MAX)
			return al_error_set(AL_EINVAL, "status: the exit code must be an integer that fits in "
				"32 bits (got \"%s\")", extra);
	}
	return 0;
}

static int parse_fold(long long *out, const char *s)
{
	char *end;
	errno = 0;
	*out = strtoll(s, &end, 10);
	while (*end == ' ' || *end == '\t')
		end++;
	if (!*s || *end || errno)
		return al_error_set(AL_EINVAL, "fold must be an integer (got \"%.40s\")", s);
	return 0;
}

/* status and fold hold one line: a complete bad line fails its write(), which shells report,
 * rather than only the close(), which they ignore. */
static int check_line_value(al_file *f)
{
	char *s, word[32];
	long long v;
	int has, rc;

	if (f->n.kind != N_RUN_TEXT || (strcmp(f->n.name, "status") && strcmp(f->n.name, "fold")) ||
	    !memchr(f->text.ptr, '\n', f->text.len))
		return 0;
	if ((rc = text_checked(&s, &f->text, f->n.name)))
		return rc;
	rc = strcmp(f->n.name, "fold") == 0 ? parse_fold(&v, s) : parse_status(word, &v, &has, s);
	free(s);
	return rc;
}

/* README "Run lifecycle": a status other than running ends the run (ended, exit_code: the code
 * given, else 0 for finished and null for failed or killed); running again resumes an ended run,
 * recorded in resumed, with ended and exit_code cleared. */
static int commit_status(al_tree *t, const node *n, const char *text)
{
	char word[32];
	long long code = 0;
	int has_code = 0, rc, running;
	cJSON *f = NULL, *resumed;
	al_doc *d = NULL;
	const char *prev;
	int64_t now = al_now_us();

	if ((rc = parse_status(word, &code, &has_code, text)))
		return rc;
	running = strcmp(word, "running") == 0;
	if (running && has_code)
		return al_error_set(AL_EINVAL, "status: running takes no exit code");
	pthread_mutex_lock(&t->lock);   /* resumed is read, extended and written back */
	if ((rc = get_doc(&d, t, n->run_doc)))
		goto cleanup;
	prev = al_fields_get_string(d->fields, "status");
	f = cJSON_CreateObject();
	al_fields_set(f, "status", al_value_string(word));
	al_fields_set(f, "ended", running ? al_value_null() : al_value_time(now));
	al_fields_set(f, "exit_code", has_code ? al_value_int(code) :
		strcmp(word, "finished") == 0 ? al_value_int(0) : al_value_null());
	if (running && prev && strcmp(prev, "running") != 0) {
		const cJSON *old = al_value_get_array(al_fields_get(d->fields, "resumed"));
		resumed = old ? cJSON_Duplicate(old, 1) : cJSON_CreateArray();
		cJSON_AddItemToArray(resumed, al_value_time(now));
		al_fields_set(f, "resumed", al_value_array(resumed));
	}
	if ((rc = run_fits(n, d, f, 0)) == 0)
		rc = commit1(t, AL_WRITE_UPDATE, n->run_doc, f, AL_PRE_EXISTS);
cleanup:
	pthread_mutex_unlock(&t->lock);
	__atomic_add_fetch(&t->status_gen, 1, __ATOMIC_SEQ_CST);
	cJSON_Delete(f);
	al_doc_free(d);
	return rc;
}

/* A key that would be a file where another key needs a folder, or the reverse (params/opt and
 * params/opt/beta1): the tree could show only one of them, so the second is refused. */
static int key_conflict(const cJSON *map, const char *key)
{
	const cJSON *it;
	size_t n = strlen(key);
	cJSON_ArrayForEach(it, map) {
		size_t m = strlen(it->string);
		if (m < n && strncmp(key, it->string, m) == 0 && key[m] == '/')
			return al_error_set(AL_ENOTDIR, "param %s is a value, so %s cannot be under it",
				it->string, key);
		if (m > n && strncmp(key, it->string, n) == 0 && it->string[n] == '/')
			return al_error_set(AL_EISDIR, "params/%s is a folder (it holds %s)", key, it->string);
	}
	return 0;
}


/* 0 when the run document d with patch's fields set stays within Firestore's size, less headroom;
 * AL_EINVAL saying so otherwise. */
static int run_fits(const node *n, const al_doc *d, const cJSON *patch, size_t headroom)
{
	cJSON *merged = cJSON_Duplicate(d->fields, 1);
	const cJSON *it;
	uint64_t size;
	if (!merged)
		return al_error_set(AL_ENOMEM, "out of memory");
	cJSON_ArrayForEach(it, patch)
		al_fields_set(merged, it->string, cJSON_Duplicate(it, 1));
	size = al_doc_size(n->run_doc, merged);
	cJSON_Delete(merged);
	if (size > AL_DOC_MAX_SIZE - headroom)
		return al_error_set(AL_EINVAL, "run %s would be %llu bytes: a run's document keeps at most "
			"%d bytes%s", n->run, (unsigned long long)size, (int)(AL_DOC_MAX_SIZE - headroom),
			headroom ? " for its params, texts and links (the rest is kept for its status)" : "");
	return 0;
}

/* Sets (value) or deletes (value NULL) the keys of one map field of a document with one update
 * whose mask names only those keys: another mount's keys of the same map stay (README
 * "Firestore", several mounts). keys: the names, or with values an object of key → value. */
static int commit_keys(al_tree *t, const char *doc, const char *field, const cJSON *values,
	const char *const *keys, size_t nkeys, al_precondition pre)
{
	cJSON *fields = cJSON_CreateObject(), *inner = cJSON_CreateObject(), *mask = cJSON_CreateArray();
	const cJSON *it;
	al_write w = {AL_WRITE_UPDATE, doc, fields, pre, mask};
	size_t i;
	int rc = 0;

	if (!fields || !inner || !mask)
		rc = al_error_set(AL_ENOMEM, "out of memory");
	cJSON_ArrayForEach(it, values) {
		if (rc || (rc = al_mask_add(mask, field, it->string)))
			break;
		al_fields_set(inner, it->string, cJSON_Duplicate(it, 1));
	}
	for (i = 0; rc == 0 && i < nkeys; i++)
		rc = al_mask_add(mask, field, keys[i]);
	if (rc == 0) {
		al_fields_set(fields, field, al_value_map(inner));
		inner = NULL;
		rc = al_store_commit(t->store, &w, 1);
	}
	cJSON_Delete(inner);
	cJSON_Delete(fields);
	cJSON_Delete(mask);
	return rc;
}

/* Merges typed values into the run's hyper_params map: the checks (a key both a value and a
 * folder, the run's size) against the run as this mount knows it, the write of those keys alone. */
static int merge_params(al_tree *t, const node *n, cJSON *values /* object of typed, taken */)
{
	al_doc *d = NULL;
	cJSON *map = NULL, *fields = NULL;
	const cJSON *it;
	int rc;

	pthread_mutex_lock(&t->lock);
	if ((rc = get_doc(&d, t, n->run_doc)))
		goto cleanup;
	if (!run_is_running(d)) {
		rc = al_error_set(AL_EROFS, "run %s is not running: params are read-only", n->run);
		goto cleanup;
	}
	map = cJSON_Duplicate(al_value_get_map(al_fields_get(d->fields, "hyper_params")), 1);
	if (!map)
		map = cJSON_CreateObject();
	cJSON_ArrayForEach(it, values) {
		if (!cJSON_GetObjectItemCaseSensitive(map, it->string) && (rc = key_conflict(map, it->string)))
			goto cleanup;
		al_fields_set(map, it->string, cJSON_Duplicate(it, 1));
	}
	fields = cJSON_CreateObject();
	al_fields_set(fields, "hyper_params", al_value_map(map));
	map = NULL;
	/* The whole document must stay within Firestore's limits, not only the new keys. */
	if ((rc = run_fits(n, d, fields, RUN_HEADROOM)))
		goto cleanup;
	rc = commit_keys(t, n->run_doc, "hyper_params", values, NULL, 0, AL_PRE_EXISTS);
cleanup:
	pthread_mutex_unlock(&t->lock);
	cJSON_Delete(map);
	cJSON_Delete(values);
	cJSON_Delete(fields);
	al_doc_free(d);
	return rc;
}

/* A text file's content as one value: the final newline dropped; NUL bytes and text that is not
 * UTF-8 are refused (README "Files behave like files"), never cut or changed. */
static int text_checked(char **out, const al_buf *b, const char *what)
{
	size_t n = b->len;
	*out = NULL;
	if (n && b->ptr[n - 1] == '\n')
		n--;
	if (n && b->ptr[n - 1] == '\r')
		n--;
	if (n && memchr(b->ptr, '\0', n))
		return al_error_set(AL_EINVAL, "%s must be text without NUL bytes", what);
	if (n && !al_utf8_valid(b->ptr, n))
		return al_error_set(AL_EINVAL, "%s must be UTF-8 text", what);
	if (!(*out = strndup(b->ptr ? b->ptr : "", n)))
		return al_error_set(AL_ENOMEM, "out of memory");
	return 0;
}

/* The JSON object written to params.json or metadata/<name>: the whole text, or — when every write
 * landed after the content shown at open (`>>`, Python's 'a' mode) — only what was appended, whose
 * keys then merge into the current ones (README "params"). *fields gets the object's fields. */
static int written_object(cJSON **fields, int *appended, const al_file *f, const char *what)
{
	size_t from = f->keep && f->low_write >= f->keep ? f->keep : 0;
	cJSON *v = NULL;
	int rc;

	*fields = NULL;
	*appended = from > 0;
	if ((rc = al_json_to_value(&v, f->text.ptr ? f->text.ptr + from : "", f->text.len - from)))
		return al_error_set(rc, "%s must be one JSON object: %s", what, al_error_last());
	if (!al_value_get_map(v)) {
		cJSON_Delete(v);
		return al_error_set(AL_EINVAL, "%s must be one JSON object", what);
	}
	*fields = cJSON_Duplicate(al_value_get_map(v), 1);
	cJSON_Delete(v);
	return *fields ? 0 : al_error_set(AL_ENOMEM, "out of memory");
}


static int commit_text(al_file *f)
{
	al_tree *t = f->t;
	const node *n = &f->n;
	cJSON *fields = cJSON_CreateObject(), *obj = NULL, *it;
	al_doc *d = NULL;
	char *s = NULL, *doc = NULL;
	int rc = 0, appended;

	switch (n->kind) {
	case N_METADATA:
		doc = xasprintf("%s/metadata/%s", n->proj_doc, n->name);
		if ((rc = written_object(&obj, &appended, f, "a metadata file")))
			break;
		/* Appended keys merge into what the file held; otherwise the object replaces it. An
		 * append writes only its keys (an update of those fields), so appenders of other keys
		 * keep theirs, on this mount and on others; the whole document is checked as this mount
		 * knows it (README "params": Firestore's limits). */
		pthread_mutex_lock(&t->lock);
		if (appended && (rc = get_doc(&d, t, doc)) == 0) {
			cJSON_ArrayForEach(it, obj)
				al_fields_set(d->fields, it->string, cJSON_Duplicate(it, 1));
			if ((rc = al_fields_check(doc, d->fields)) == 0)
				rc = commit1(t, AL_WRITE_UPDATE, doc, obj, AL_PRE_NONE);
		} else if (rc == 0 || rc == AL_ENOTFOUND) {
			rc = commit1(t, AL_WRITE_SET, doc, obj, AL_PRE_NONE);
		}
		pthread_mutex_unlock(&t->lock);
		break;
	case N_EXP_DESCRIPTION:
	case N_DS_DESCRIPTION:
		if ((rc = text_checked(&s, &f->text, "description")))
			break;
		al_fields_set(fields, "description", al_value_string(s));
		al_fields_set(fields, "updated", al_value_time(al_now_us()));
		rc = commit1(t, AL_WRITE_UPDATE, n->kind == N_DS_DESCRIPTION ? n->ds_doc : n->exp_doc,
			fields, AL_PRE_EXISTS);
		break;
	case N_RUN_TEXT:
		if ((rc = text_checked(&s, &f->text, n->name)))
			break;
		if (strcmp(n->name, "status") == 0) {
			rc = commit_status(t, n, s);
			break;
		}
		if (strcmp(n->name, "description") != 0 && (rc = require_running(t, n)))
			break;
		if (strcmp(n->name, "fold") == 0) {
			long long v;
			if ((rc = parse_fold(&v, s)))
				break;
			al_fields_set(fields, "fold", al_value_int(v));
		} else
			al_fields_set(fields, n->name, al_value_string(s));
		pthread_mutex_lock(&t->lock);   /* the size checked is the size written */
		if ((rc = get_doc(&d, t, n->run_doc)) == 0 && (rc = run_fits(n, d, fields, RUN_HEADROOM)) == 0)
			rc = commit1(t, AL_WRITE_UPDATE, n->run_doc, fields, AL_PRE_EXISTS);
		pthread_mutex_unlock(&t->lock);
		break;
	case N_PARAMS: {
		cJSON *v = NULL;
		if ((rc = param_from_text(&v, f->text.ptr ? f->text.ptr : "", f->text.len)))
			break;
		al_fields_set(fields, n->rest, v);
		rc = merge_params(t, n, fields);
		fields = NULL;   /* taken */
		break;
	}
	case N_PARAMS_JSON:
		if ((rc = written_object(&obj, &appended, f, "params.json")))
			break;
		cJSON_ArrayForEach(it, obj)
			if (check_rest_names(it->string)) {
				rc = al_error_set(AL_EINVAL, "invalid param key \"%.60s\": keys are names "
					"joined by single '/'", it->string);
				break;
			}
		if (rc == 0) {
			rc = merge_params(t, n, obj);
			obj = NULL;   /* taken */
		}
		break;
	default:
		rc = al_error_set(AL_EACCES, "read-only file");
	}
	cJSON_Delete(obj);
	cJSON_Delete(fields);
	al_doc_free(d);
	free(doc);
	free(s);
	return rc;
}

/* The write that marks a change in a blob collection on the document owning it: a dataset becomes
 * stale (its version is recomputed before anyone reads or links it, also after a crash: README
 * "datasets"); a run's or experiment's files_updated is its artifacts/ folder's mtime. */
static al_write owner_write(cJSON **fields, const node *n, int64_t now)
{
	const char *doc = n->kind == N_DATASET_PATH ? n->ds_doc : n->run_doc ? n->run_doc : n->exp_doc;
	*fields = cJSON_CreateObject();
	al_fields_set(*fields, "files_updated", al_value_time(now));
	if (n->kind == N_DATASET_PATH)
		al_fields_set(*fields, "stale", al_value_bool(1));
	return (al_write){AL_WRITE_UPDATE, doc, *fields, AL_PRE_EXISTS, NULL};
}

/* The same mark as a commit of its own, before a change that has none (a delete, a rename): a
 * crash after it costs a needless recomputation, never a stale version. */
static int owner_mark(al_tree *t, const node *n)
{
	cJSON *f = NULL;
	al_write w = owner_write(&f, n, al_now_us());
	int rc = al_store_commit(t->store, &w, 1);
	cJSON_Delete(f);
	return rc;
}

/* Hashes the staged content, stores the blob once, and records the file. */
static int record_file(al_tree *t, const node *n, const char *hex, uint64_t size, const char *uri,
	int stored, const al_pieces *pieces, int64_t mtime_us, int create);

static int commit_blob(al_file *f)
{
	al_tree *t = f->t;
	char hex[AL_HASH_HEX_LEN + 1], *uri = NULL;
	uint64_t size = 0;
	al_pieces pieces = {0};
	int rc;

	/* close() must survive a power cut: the staged bytes first, then the blob and record. */
	if (fdatasync(f->fd) != 0)
		return al_error_set_errno(al_error_from_errno(errno), errno, "cannot sync staging file");
	/* The piece hashes come in the same pass, so a streamed reader can verify each range. */
	if ((rc = al_hash_fd_pieces(hex, &size, &pieces, f->fd)))
		return rc;
	if (size <= AL_CACHE_VERIFY_WHOLE_MAX)
		al_pieces_clear(&pieces);    /* verified whole before its first byte: not needed */
	if ((rc = t->blobs->put(t->blobs, hex, f->staging, size, AL_BLOBS_PUT_MOVE)))
		goto cleanup;
	if (access(f->staging, F_OK) != 0) {
		/* The staged file became the blob: keep only a read-only view of it. Writes after this
		 * close stage a fresh copy first (restage), so a blob never changes. */
		char *local = NULL, *gone;
		close(f->fd);
		f->fd = -1;
		pthread_mutex_lock(&t->lock);   /* open_blob reads writers' staging paths under it */
		gone = f->staging;
		f->staging = NULL;
		pthread_mutex_unlock(&t->lock);
		free(gone);
		if (t->blobs->local_path(&local, t->blobs, hex) == 0)
			f->fd = open(local, O_RDONLY | O_CLOEXEC);
		free(local);
		if (f->fd < 0) {
			rc = al_error_set_errno(AL_EIO, errno, "cannot reopen blob %s", hex);
			goto cleanup;
		}
	}
	uri = t->blobs->uri(t->blobs, hex);
	{
		/* A new dataset file is created only if no other mount wrote the name first. */
		int create = f->n.kind == N_DATASET_PATH && !f->created;
		rc = record_file(t, &f->n, hex, size, uri, 1, &pieces,
			__atomic_load_n(&f->mtime_set, __ATOMIC_RELAXED) ?
			__atomic_load_n(&f->mtime_us, __ATOMIC_RELAXED) : 0, create);
		if (rc == 0 && create)
			f->created = 1;
	}
	free(uri);
cleanup:
	al_pieces_clear(&pieces);
	return rc;
}

/* Records a file of a blob collection (artifacts, dataset files, logs) whose content is at uri:
 * its record, and with stored the blob's own files/{hash} record (with its piece hashes, when
 * given); a dataset's version follows.
 * Closed files and imported ones (uri a URL outside the blob store) both come here. mtime_us 0:
 * now. With create, the record is create-only (a new dataset file: README "datasets", write-once
 * across mounts): when the name is taken meanwhile, the same content there is success, other
 * content AL_EPERM. */
static int record_file(al_tree *t, const node *n, const char *hex, uint64_t size, const char *uri,
	int stored, const al_pieces *pieces, int64_t mtime_us, int create)
{
	char *id = NULL, *doc = NULL, *fdoc = NULL, *phex = NULL;
	cJSON *fields = NULL, *file = NULL, *piece_fields = NULL, *owner = NULL;
	int rc;
	int64_t now = al_now_us();

	id = al_id_encode(n->rest);
	doc = xasprintf("%s/%s", n->coll, id);
	fdoc = xasprintf("files/%s", hex);
	if (!id || !doc || !fdoc) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	fields = cJSON_CreateObject();
	al_fields_set(fields, "path", al_value_string(n->rest));
	al_fields_set(fields, "size", al_value_int((int64_t)size));
	al_fields_set(fields, "hash", al_value_string(hex));
	al_fields_set(fields, "blob", al_value_string(uri ? uri : ""));
	al_fields_set(fields, "mtime", al_value_time(mtime_us ? mtime_us : now));
	file = cJSON_CreateObject();
	al_fields_set(file, "size", al_value_int((int64_t)size));
	al_fields_set(file, "blob", al_value_string(uri ? uri : ""));
	al_fields_set(file, "created", al_value_time(now));
	if (pieces && pieces->count) {
		/* At most AL_PIECES_MAX × 16 hex digits: far below Firestore's 1 MiB per document. */
		if (!(phex = al_pieces_format(pieces)) || !(piece_fields = cJSON_CreateObject())) {
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto cleanup;
		}
		al_fields_set(piece_fields, "piece_size", al_value_int((int64_t)pieces->size));
		al_fields_set(piece_fields, "pieces", al_value_string(phex));
		al_fields_set(file, "piece_size", al_value_int((int64_t)pieces->size));
		al_fields_set(file, "pieces", al_value_string(phex));
	}
	{
		/* One commit: the file's record, the blob's own record unless it is known already
		 * (content is stored once; one stored by an older version gains its piece hashes; a
		 * create-only write would wait for a remote backend), and the owner's change mark. A
		 * dataset's mark goes in under ds_lock, so that a version being computed cannot clear
		 * it without seeing this file. */
		al_doc *known = NULL;
		al_write w[3];
		size_t nw = 0;
		if (stored && al_store_get(&known, t->store, fdoc) != 0)
			w[nw++] = (al_write){AL_WRITE_SET, fdoc, file, AL_PRE_NONE, NULL};
		else if (stored && piece_fields && !al_fields_get(known->fields, "pieces"))
			w[nw++] = (al_write){AL_WRITE_UPDATE, fdoc, piece_fields, AL_PRE_NONE, NULL};
		w[nw++] = (al_write){AL_WRITE_SET, doc, fields, create ? AL_PRE_MISSING : AL_PRE_NONE, NULL};
		w[nw++] = owner_write(&owner, n, now);
		/* The file's own record first: a refusal at delivery names it (README "Firestore"). */
		if (nw == 3) {
			al_write blob = w[0];
			w[0] = w[1];
			w[1] = blob;
		}
		al_doc_free(known);
		known = NULL;
		pthread_mutex_lock(&t->ds_lock);
		rc = al_store_commit(t->store, w, nw);
		if (rc == 0 && n->kind == N_DATASET_PATH)
			dataset_changed(t, n->ds_doc);
		pthread_mutex_unlock(&t->ds_lock);
		if (rc == AL_EEXISTS && create) {
			/* Another mount wrote the name first: the same bytes are as good as ours. */
			const char *h = NULL;
			int64_t have = -1;
			if (al_store_get(&known, t->store, doc) == 0) {
				h = al_fields_get_string(known->fields, "hash");
				al_fields_get_int(&have, known->fields, "size");
			}
			rc = h && strcmp(h, hex) == 0 && have == (int64_t)size ? 0 :
				al_error_set(AL_EPERM, "%s was written first by another mount, with other "
					"content (dataset files are write-once)", n->rest);
			al_doc_free(known);
		}
	}
cleanup:
	cJSON_Delete(fields);
	cJSON_Delete(file);
	cJSON_Delete(owner);
	cJSON_Delete(piece_fields);
	free(phex);
	free(id);
	free(doc);
	free(fdoc);
	return rc;
}

/* ---- .aletheia/import: files that live at a URL, registered without a copy ---------------- */

#define IMPORT_LINE_MAX 65536

/* The "dataset", "path" and "url" of an import line as a node of the dataset's file. */
static int import_node(node *n, al_tree *t, const char *dataset, const char *path, const char *url)
{
	const char *slash = strchr(dataset, '/');
	char *mpath = NULL, *proj = NULL;
	int rc;

	memset(n, 0, sizeof(*n));
	if (!slash || slash == dataset || !slash[1] || strchr(slash + 1, '/'))
		return al_error_set(AL_EINVAL, "import: dataset must be PROJECT/DATASET (got \"%.200s\")",
			dataset);
	if (!(proj = strndup(dataset, (size_t)(slash - dataset))))
		return al_error_set(AL_ENOMEM, "out of memory");
	if ((rc = check_name(proj)) || (rc = check_name(slash + 1)))
		goto cleanup;
	if (!*path || *path == '/' || path[strlen(path) - 1] == '/' || strstr(path, "//")) {
		rc = al_error_set(AL_EINVAL, "import: invalid file path \"%.200s\"", path);
		goto cleanup;
	}
	if ((rc = check_rest_names(path)))
		goto cleanup;
	if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8) && strncmp(url, "s3://", 5) &&
	    strncmp(url, "gs://", 5)) {
		rc = al_error_set(AL_EINVAL, "import: URL must be http://, https://, s3:// or gs:// "
			"(got \"%.200s\")", url);
		goto cleanup;
	}
	if (!(mpath = xasprintf("/%s/datasets/%s/%s", proj, slash + 1, path))) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	if ((rc = node_parse(n, mpath)))
		goto cleanup;
	if (n->kind != N_DATASET_PATH) {
		node_free(n);
		rc = al_error_set(AL_EINVAL, "import: \"%.200s\" is not a name a dataset file can have",
			path);
		goto cleanup;
	}
	if ((rc = doc_exists(t, n->ds_doc))) {
		node_free(n);
		if (rc == AL_ENOTFOUND)
			rc = al_error_set(AL_ENOTFOUND, "import: no dataset %s (create it with mkdir first)",
				dataset);
	}
cleanup:
	free(mpath);
	free(proj);
	return rc;
}

/* Write-once, as for copied files: the same content again is fine, different content EPERM.
 * A file in the way of a folder of the path: ENOTDIR. */
static int import_check_free(al_tree *t, const node *n, const char *mpath, const char *hash,
	int64_t size)
{
	al_doc *d = NULL, **anc = NULL;
	char *copy = strdup(n->rest), *id = NULL, *doc = NULL, *p, **paths = NULL;
	size_t na = 0, i;
	int rc = 0, writing;

	if (!copy)
		return al_error_set(AL_ENOMEM, "out of memory");
	/* Every folder of the path in one request (batchGet on Firestore). */
	for (p = copy; (p = strchr(p, '/')); p++)
		na++;
	paths = calloc(na + 1, sizeof(*paths));
	anc = calloc(na + 1, sizeof(*anc));
	if (!paths || !anc) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	for (i = 0, p = strchr(copy, '/'); p; p = strchr(p + 1, '/'), i++) {
		*p = '\0';
		id = al_id_encode(copy);
		paths[i] = id ? xasprintf("%s/%s", n->coll, id) : NULL;
		free(id);
		id = NULL;
		*p = '/';
		if (!paths[i]) {
			rc = al_error_set(AL_ENOMEM, "out of memory");
			goto cleanup;
		}
	}
	if ((rc = al_store_get_many(anc, t->store, (const char *const *)paths, na)))
		goto cleanup;
	for (i = 0; i < na && rc == 0; i++) {
		const char *type = anc[i] ? al_fields_get_string(anc[i]->fields, "type") : "dir";
		if (!type || strcmp(type, "dir") != 0) {
			char *name = al_id_decode(al_doc_id(paths[i]));
			rc = al_error_set(AL_ENOTDIR, "import: %s is a file, not a folder",
				name ? name : al_doc_id(paths[i]));
			free(name);
		}
	}
	if (rc)
		goto cleanup;
	id = al_id_encode(n->rest);
	doc = xasprintf("%s/%s", n->coll, id);
	if (!id || !doc) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	if ((rc = al_store_get(&d, t->store, doc)) == 0) {
		const char *type = al_fields_get_string(d->fields, "type"), *h;
		int64_t have = -1;
		if (type && strcmp(type, "dir") == 0) {
			rc = al_error_set(AL_EISDIR, "import: %s is a folder", n->rest);
			goto cleanup;
		}
		h = al_fields_get_string(d->fields, "hash");
		al_fields_get_int(&have, d->fields, "size");
		rc = h && strcmp(h, hash) == 0 && have == size ? 1 :
			al_error_set(AL_EPERM, "import: %s exists with other content (dataset files are "
				"write-once)", n->rest);
		goto cleanup;
	}
	if (rc != AL_ENOTFOUND)
		goto cleanup;
	rc = 0;
	pthread_mutex_lock(&t->lock);
	writing = find_writer(t, mpath) != NULL;
	pthread_mutex_unlock(&t->lock);
	if (writing)
		rc = al_error_set(AL_EPERM, "import: %s is being written", n->rest);
cleanup:
	for (i = 0; paths && anc && i < na; i++) {
		free(paths[i]);
		al_doc_free(anc[i]);
	}
	free(paths);
	free(anc);
	al_doc_free(d);
	free(id);
	free(doc);
	free(copy);
	return rc;
}

/* One line: {"dataset":"P/D","path":"NAME","url":"…","size":N,"hash":"HEX"}. */
static int import_line(al_tree *t, const char *line, size_t len)
{
	cJSON *j = cJSON_ParseWithLength(line, len);
	const cJSON *ds, *path, *url, *size, *hash;
	char *mpath = NULL;
	node n = {0};
	int rc;

	ds = cJSON_GetObjectItemCaseSensitive(j, "dataset");
	path = cJSON_GetObjectItemCaseSensitive(j, "path");
	url = cJSON_GetObjectItemCaseSensitive(j, "url");
	size = cJSON_GetObjectItemCaseSensitive(j, "size");
	hash = cJSON_GetObjectItemCaseSensitive(j, "hash");
	if (!cJSON_IsObject(j) || !cJSON_IsString(ds) || !cJSON_IsString(path) || !cJSON_IsString(url) ||
	    !cJSON_IsNumber(size) || !cJSON_IsString(hash)) {
		rc = al_error_set(AL_EINVAL, "import: expected one JSON object per line with dataset, "
			"path, url (strings), size (a number) and hash");
		goto cleanup;
	}
	/* Integers up to 2^53 are exact in a double. */
	if (size->valuedouble < 0 || size->valuedouble > 9007199254740992.0 ||
	    size->valuedouble != floor(size->valuedouble)) {
		rc = al_error_set(AL_EINVAL, "import: size must be a whole number of bytes");
		goto cleanup;
	}
	if (!al_hash_is_valid(hash->valuestring)) {
		rc = al_error_set(AL_EINVAL, "import: hash must be an xxh3-128 as 32 lowercase hex "
			"digits (got \"%.64s\")", hash->valuestring);
		goto cleanup;
	}
	if ((rc = import_node(&n, t, ds->valuestring, path->valuestring, url->valuestring)))
		goto cleanup;
	mpath = xasprintf("/%s/datasets/%s/%s", n.project, n.dataset, n.rest);
	if (!mpath) {
		rc = al_error_set(AL_ENOMEM, "out of memory");
		goto cleanup;
	}
	rc = import_check_free(t, &n, mpath, hash->valuestring, (int64_t)size->valuedouble);
	if (rc == 1)
		rc = 0;   /* already there, the same */
	else if (rc == 0)
		rc = record_file(t, &n, hash->valuestring, (uint64_t)size->valuedouble,
			url->valuestring, 0, NULL, 0, 1);
cleanup:
	node_free(&n);
	free(mpath);
	cJSON_Delete(j);
	return rc;
}

/* Records each complete line in f->text (and at close the partial last one). The first bad line
 * fails the write(); lines before it are recorded, the rest of that write is dropped. */
static int import_lines(al_file *f, int at_close)
{
	size_t start = 0;
	int rc = 0;

	if (!f->text.ptr)
		return 0;
	while (start < f->text.len && rc == 0) {
		char *nl = memchr(f->text.ptr + start, '\n', f->text.len - start);
		size_t end = nl ? (size_t)(nl - f->text.ptr) : f->text.len;
		if (!nl && !at_close)
			break;
		if (memchr(f->text.ptr + start, '\0', end - start))
			rc = al_error_set(AL_EINVAL, "import: NUL byte in a line");
		else if (strspn(f->text.ptr + start, " \t\r") < end - start)
			rc = import_line(f->t, f->text.ptr + start, end - start);
		start = nl ? end + 1 : end;
	}
	if (rc)
		al_buf_clear(&f->text);
	else {
		memmove(f->text.ptr, f->text.ptr + start, f->text.len - start);
		f->text.len -= start;
		f->text.ptr[f->text.len] = '\0';
	}
	return rc;
}

static int import_write(al_file *f, const char *buf, size_t size)
{
	int rc;
	if ((rc = al_buf_put(&f->text, buf, size)))
		return rc;
	if ((rc = import_lines(f, 0)))
		return rc;
	if (f->text.len > IMPORT_LINE_MAX) {
		al_buf_clear(&f->text);
		return al_error_set(AL_EINVAL, "import: line longer than %d bytes", IMPORT_LINE_MAX);
	}
	return 0;
}

/* ---- .aletheia/fsck: a check of every blob, asked for and read through one handle --------- */

/* One request per handle: "check" or "check download" (a line). The check runs as its report
 * is read (al_file_read), so a plain read of the file starts nothing and gets nothing. */
static int fsck_request(al_file *f, const char *buf, size_t size)
{
	al_tree *t = f->t;
	al_fsck_options o = {AL_FSCK_OPTIONS_VERSION, t->store, t->blobs, t->cache, t->fetcher,
		t->mountpoint, t->staging_dir, 0};
	char line[64];
	size_t n = size;

	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	memcpy(line, buf, n);
	line[n] = '\0';
	if (f->fsck)
		return al_error_set(AL_EBUSY, "fsck: one request per open file");
	if (strcmp(line, "check download") == 0)
		o.flags |= AL_FSCK_DOWNLOAD;
	else if (strcmp(line, "check") != 0)
		return al_error_set(AL_EINVAL, "fsck: the requests are \"check\" and \"check download\"");
	return al_fsck_new(&f->fsck, &o);
}

static int flush_file(al_file *f);

/* A file whose content could not be recorded stops being listed once close() fails, not
 * only at the kernel's later release. */
static int al_file_flush_impl(al_file *f)
{
	int rc = flush_file(f);
	if (rc && (f->kind == F_TEXT || f->kind == F_BLOB_WRITE))
		unregister_writer(f->t, f);
	return rc;
}

static int commit_content(al_tree *t, const char *path, const char *data, size_t len);

static int flush_file(al_file *f)
{
	int rc = 0;
	switch (f->kind) {
	case F_SCRATCH: {
		/* Renamed over a file while open (a writer that renames before it closes): what it
		 * wrote since is that file's content too. */
		char *to = NULL, *data = NULL;
		size_t len = 0;
		pthread_mutex_lock(&f->t->lock);
		if (f->sc->commit_to && f->sc->dirty && (to = strdup(f->sc->commit_to)) &&
		    (data = malloc(f->sc->data.len + 1))) {
			len = f->sc->data.len;
			if (len)
				memcpy(data, f->sc->data.ptr, len);
			f->sc->dirty = 0;
		}
		pthread_mutex_unlock(&f->t->lock);
		if (to && data)
			rc = commit_content(f->t, to, data, len);
		free(to);
		free(data);
		return rc;
	}
	case F_TEXT:
		if (f->dirty && (rc = commit_text(f)) == 0)
			f->dirty = 0;
		return rc;
	case F_METRIC:
		if (!(f->flags & AL_OPEN_WRITE))
			return 0;
		/* A close() may be of a copy of the descriptor (dup, a shell's `printf … >&3`, a forked
		 * worker): a partial last line waits for the next write to go on, for the last close, or
		 * for a reader (metric_settle_lines), to be recorded whole (README "metrics"). */
		if (f->text.len)
			f->line_closed = 1;
		return al_series_sync(f->t->series);
	case F_BLOB_WRITE:
		/* Deleted or replaced while open: its content is no file's any more. */
		if (__atomic_load_n(&f->detached, __ATOMIC_SEQ_CST))
			return 0;
		/* Written through a descriptor opened before the run ended: not recorded. */
		if (f->dirty && (f->n.kind == N_RUN_ARTIFACT || f->n.kind == N_OUTPUT_LOG) &&
		    (rc = require_running(f->t, &f->n)))
			return rc;
		if (f->failed) {
			/* Free the space of a copy that cannot complete (a full disk) right away. */
			if (f->staging && ftruncate(f->fd, 0) == 0)
				f->dirty = 0;
			return al_error_set(f->failed, "an earlier write to %s failed: nothing recorded", f->path);
		}
		if (f->dirty && (rc = commit_blob(f)) == 0)
			f->dirty = 0;
		return rc;
	case F_IMPORT:
		/* A last line without its newline counts at close. */
		if (f->text.len)
			rc = import_lines(f, 1);
		return rc;
	default:
		return 0;
	}
}

/* Records data as the new content of the value file at path, as a write of exactly that
 * and a close would (a scratch file renamed over it). */
static int commit_content(al_tree *t, const char *path, const char *data, size_t len)
{
	al_file *f = NULL;
	int rc = al_file_open(&f, t, path, AL_OPEN_WRITE | AL_OPEN_CREATE | AL_OPEN_TRUNC);
	if (rc == 0 && f->kind != F_TEXT)
		rc = al_error_set(AL_EPERM, "%s holds no value a file can be renamed over", path);
	if (rc == 0 && len)
		rc = al_file_write_impl(f, data, len, 0);
	if (rc == 0) {
		f->dirty = 1;   /* an empty file is an empty value */
		rc = flush_file(f);
	}
	al_file_release(f);
	return rc;
}

int al_file_fsync(al_file *f)
{
	return al_file_flush(f);
}

void al_file_release(al_file *f)
{
	if (!f)
		return;
	if (f->kind == F_BLOB_WRITE) {
		unsigned left;
		al_file **p;
		pthread_mutex_lock(&f->t->lock);
		if ((left = --f->handles) == 0)   /* out of reach of open_blob at once */
			for (p = &f->t->writers; *p; p = &(*p)->next)
				if (*p == f) {
					*p = f->next;
					break;
				}
		pthread_mutex_unlock(&f->t->lock);
		if (left)
			return;   /* other opens share it */
	}
	if (f->kind == F_METRIC && f->text.len)
		metric_end_line(f);   /* the last close: a partial last line is recorded now */
	/* Out of the list before its lock goes, and that lock free: a delete or rename may hold it
	 * (hold_writers). */
	if (f->kind == F_TEXT || f->kind == F_BLOB_WRITE || (f->kind == F_METRIC && (f->flags & AL_OPEN_WRITE)))
		unregister_writer(f->t, f);
	pthread_mutex_lock(&f->mu);
	pthread_mutex_unlock(&f->mu);
	pthread_mutex_destroy(&f->mu);
	if (f->sc) {
		pthread_mutex_lock(&f->t->lock);
		scratch_put_locked(f->t, f->sc);
		pthread_mutex_unlock(&f->t->lock);
	}
	if (f->fd >= 0)
		close(f->fd);
	if (f->pinned)
		al_cache_release(f->t->cache, f->hash);
	al_cache_blob_close(f->cb);
	al_fsck_free(f->fsck);
	if (f->kind == F_BLOB_WRITE && f->staging)
		unlink(f->staging);
	free(f->staging);
	free(f->snap);
	al_buf_dispose(&f->text);
	node_free(&f->n);
	free(f->path);
	free(f);
}

int al_tree_truncate(al_tree *t, const char *path, uint64_t size)
{
	al_file *f = NULL;
	int rc = al_file_open(&f, t, path, AL_OPEN_WRITE | (size == 0 ? AL_OPEN_TRUNC : 0));
	if (rc == 0 && (rc = al_file_truncate(f, size)) == 0) {
		if (f->kind == F_TEXT)
			f->dirty = 1;   /* truncate(2) of a path is meant: it clears */
		rc = al_file_flush(f);
	}
	al_file_release(f);
	return rc;
}

/* ---- the tree itself ------------------------------------------------------------------ */

uint64_t al_tree_pending(al_tree *t)
{
	return al_series_pending(t->series) + al_store_wb_pending(t->wb);
}

int al_tree_status(char **out, al_tree *t)
{
	al_buf b = AL_BUF_INIT;
	al_cache_stats cs;
	char err[512], limit[64], offline[160];

	al_cache_get_stats(&cs, t->cache);
	if (!al_store_cache_offline(offline, sizeof(offline), t->series_store))
		snprintf(offline, sizeof(offline), "none");
	al_series_last_error(err, sizeof(err), t->series);
	if (!*err)
		al_store_wb_last_error(err, sizeof(err), t->wb);
	if (cs.max_bytes)
		snprintf(limit, sizeof(limit), "of %llu", (unsigned long long)cs.max_bytes);
	else
		snprintf(limit, sizeof(limit), "unbounded");
	al_buf_printf(&b, "version: %s\npid: %d\nmountpoint: %s\nstore: %s\nbackend: %s\nblobs: %s\n"
		"cache: %s (%llu bytes %s, %llu blobs)\npending_writes: %llu\nlast_error: %s\n"
		"offline_since: %s\n",
		AL_VERSION, (int)getpid(), t->mountpoint ? t->mountpoint : "", t->store_uri,
		t->backend, t->blobs_uri, t->cache_dir, (unsigned long long)cs.bytes, limit,
		(unsigned long long)cs.entries, (unsigned long long)al_tree_pending(t),
		*err ? err : "none", offline);
	*out = al_buf_detach(&b, NULL);
	return *out ? 0 : al_error_set(AL_ENOMEM, "out of memory");
}


/* Staged copies left by a daemon that was killed mid-copy were never recorded (README
 * "Durability"): their space goes back at the next mount. The folder is ours alone (locked). */
static int clean_staging(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	if (!d)
		return al_error_set_errno(al_error_from_errno(errno), errno, "cannot list %s", dir);
	while ((de = readdir(d)))
		if (strncmp(de->d_name, "write-", 6) == 0 && unlinkat(dirfd(d), de->d_name, 0) != 0 &&
		    errno != ENOENT)
			fprintf(stderr, "aletheia: cannot remove the leftover %s/%s: %s\n", dir, de->d_name,
				strerror(errno));
	closedir(d);
	return 0;
}

int al_tree_open(al_tree **out, const al_tree_options *opts)
{
	al_tree *t = calloc(1, sizeof(*t));
	char *journal = NULL, *dir = NULL;
	int rc, local;

	*out = NULL;
	if (!t)
		return al_error_set(AL_ENOMEM, "out of memory");
	pthread_mutex_init(&t->lock, NULL);
	pthread_mutex_init(&t->alock, NULL);
	{
		/* recursive: dataset_settle holds it around dataset_refresh, which takes it too */
		pthread_mutexattr_t ma;
		pthread_mutexattr_init(&ma);
		pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&t->ds_lock, &ma);
		pthread_mutexattr_destroy(&ma);
	}
	pthread_cond_init(&t->ds_wake, NULL);
	t->acache = calloc(ACACHE_BUCKETS, sizeof(attr_entry *));
	if (!t->acache) {
		free(t);
		return al_error_set(AL_ENOMEM, "out of memory");
	}
	t->mount_us = al_now_us();
	t->attr_ttl_us = INT64_MAX;
	t->state_lock = -1;
	t->allow_delete = opts->allow_delete;
	t->uid = opts->uid;
	t->gid = opts->gid;
	t->store_uri = strdup(opts->store_uri);
	t->blobs_uri = strdup(opts->blobs_uri);
	t->cache_dir = strdup(opts->cache_dir);
	t->mountpoint = opts->mountpoint ? strdup(opts->mountpoint) : NULL;
	/* The journals and staged writes live beside a local store, on the same durable disk;
	 * for a remote store, in the cache folder. */
	local = strncmp(opts->store_uri, "local:", 6) == 0;
	dir = local ? strdup(opts->store_uri + 6) : xasprintf("%s/state", opts->cache_dir);
	journal = xasprintf("%s/journal", dir);
	t->staging_dir = xasprintf("%s/staging", dir);
	if ((rc = al__mkdir_p(opts->cache_dir, 0700)))
		goto fail;
	if (!local && ((rc = al__mkdir_p(dir, 0700)) ||
	    (rc = al__lock_dir(&t->state_lock, dir, "cache folder"))))
		goto fail;
	if ((rc = al_store_open(&t->store, opts->store_uri)))
		goto fail;
	t->backend = t->store->name;
	if (!local) {
		/* write() and close() never wait for the network; reads are answered for a short
		 * while from memory (ALETHEIA_CACHE_TTL_MS, default 1000). */
		/* The overlay of undelivered writes sits on top of the read cache, so it merges onto
		 * cached (or, while unreachable, stale) documents and never onto nothing. */
		const char *ttl = getenv("ALETHEIA_CACHE_TTL_MS"), *wait = getenv("ALETHEIA_NETWORK_WAIT_MS");
		char *wbdir = xasprintf("%s/writes", dir);
		al_store_backend *cached = NULL, *inner = t->store;
		/* A file operation waits for the metastore at most this long (per request, retries
		 * included), then answers from the last known copy (README "Firestore"). */
		if (wait && *wait)
			al__foreground_wait_set((unsigned)atoi(wait));
		t->store = NULL;
		rc = al_store_cache_new(&cached, inner, ttl ? (unsigned)atoi(ttl) : 1000);
		if (rc == 0)
			rc = wbdir ? al_store_wb_new(&t->store, cached, wbdir, 1000) : AL_ENOMEM;
		free(wbdir);
		if (rc)
			goto fail;
		t->wb = t->store;
		t->series_store = cached;
		t->attr_ttl_us = (ttl ? atoll(ttl) : 1000) * 1000;
	}
	if ((rc = al_blobs_open(&t->blobs, opts->blobs_uri)))
		goto fail;
	if ((rc = al_cache_open(&t->cache, opts->cache_dir, opts->cache_size)))
		goto fail;
	al_cache_set_fetcher(t->cache, fill_from_blobs, t);
	if ((rc = al_fetcher_new(&t->fetcher)))
		goto fail;
	if ((rc = al__mkdir_p(t->staging_dir, 0700)) || (rc = clean_staging(t->staging_dir)))
		goto fail;
	if ((rc = al_series_set_open(&t->series, t->series_store ? t->series_store : t->store,
		journal, 1000)))
		goto fail;
	if (t->attr_ttl_us != INT64_MAX)   /* other mounts append to the same metrics */
		al_series_set_ttl(t->series, (unsigned)(t->attr_ttl_us / 1000));
	if (pthread_create(&t->ds_thread, NULL, dataset_thread, t) != 0) {
		rc = al_error_set(AL_ERROR, "cannot start the dataset thread");
		goto fail;
	}
	t->ds_started = 1;
	free(journal);
	free(dir);
	*out = t;
	return 0;
fail:
	free(journal);
	free(dir);
	al_tree_free(t);
	return rc;
}

void al_tree_free(al_tree *t)
{
	vdir *v, *next;
	if (!t)
		return;
	/* The flushers' requests in flight end now; the final flushes below are bounded like any
	 * file operation's, and what they cannot deliver stays journaled (README "Firestore"). */
	al__shutdown_begin();
	if (t->ds_started) {
		pthread_mutex_lock(&t->lock);
		t->ds_stop = 1;
		pthread_cond_signal(&t->ds_wake);
		pthread_mutex_unlock(&t->lock);
		pthread_join(t->ds_thread, NULL);
		dataset_settle(t, NULL);
	}
	al_series_set_free(t->series);
	al_cache_free(t->cache);    /* joins its fetch workers before the fetchers go */
	al_fetcher_free(t->fetcher);
	if (t->blobs)
		al_blobs_free(t->blobs);
	if (t->store)
		al_store_free(t->store);
	for (v = t->vdirs; v; v = next) {
		next = v->next;
		free(v->path);
		free(v);
	}
	while (t->scratch) {   /* scratch files end with the mount */
		scratch *s = t->scratch;
		scratch_unlink_locked(t, s);
		scratch_put_locked(t, s);
	}
	free(t->store_uri);
	free(t->blobs_uri);
	free(t->cache_dir);
	free(t->mountpoint);
	free(t->staging_dir);
	if (t->state_lock >= 0)
		close(t->state_lock);
	acache_clear(t);
	free(t->acache);
	pthread_mutex_destroy(&t->alock);
	pthread_mutex_destroy(&t->ds_lock);
	pthread_cond_destroy(&t->ds_wake);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* ---- every change invalidates cached attributes ------------------------------------- */

int al_tree_mkdir(al_tree *t, const char *path, const al_caller *caller)
{
	int rc = al_tree_mkdir_impl(t, path, caller);
	changed(t);
	return rc;
}

int al_tree_unlink(al_tree *t, const char *path)
{
	int rc = al_tree_unlink_impl(t, path);
	changed(t);
	return rc;
}

int al_tree_rmdir(al_tree *t, const char *path)
{
	int rc = al_tree_rmdir_impl(t, path);
	changed(t);
	return rc;
}

int al_tree_rename(al_tree *t, const char *from, const char *to, unsigned flags)
{
	int rc = al_tree_rename_impl(t, from, to, flags);
	changed(t);
	return rc;
}

int al_tree_symlink(al_tree *t, const char *target, const char *path)
{
	int rc = al_tree_symlink_impl(t, target, path);
	changed(t);
	return rc;
}

int al_tree_utimens(al_tree *t, const char *path, int64_t mtime_us)
{
	int rc = al_tree_utimens_impl(t, path, mtime_us);
	changed(t);
	return rc;
}

int al_file_write(al_file *f, const char *buf, size_t size, uint64_t off)
{
	int rc;
	pthread_mutex_lock(&f->mu);
	rc = al_file_write_impl(f, buf, size, off);
	pthread_mutex_unlock(&f->mu);
	changed(f->t);
	return rc;
}

int al_file_truncate(al_file *f, uint64_t size)
{
	int rc;
	pthread_mutex_lock(&f->mu);
	rc = al_file_truncate_impl(f, size);
	pthread_mutex_unlock(&f->mu);
	changed(f->t);
	return rc;
}

int al_file_flush(al_file *f)
{
	int rc;
	pthread_mutex_lock(&f->mu);
	rc = al_file_flush_impl(f);
	pthread_mutex_unlock(&f->mu);
	changed(f->t);
	return rc;
}
