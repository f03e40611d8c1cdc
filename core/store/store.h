/* aletheia: the metastore. Documents live under slash-separated paths exactly as in Firestore
 * ("projects/p/experiments/e/runs/1"); backends (SQLite, Firestore) implement the vtable below. */
#ifndef ALETHEIA_STORE_H
#define ALETHEIA_STORE_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stddef.h>
#include "aletheia/common.h"

typedef struct al_doc {
	char *path;      /* full document path, e.g. "projects/p/datasets/d" */
	cJSON *fields;   /* object of typed values (value.h); owned */
	int64_t create_us;
	int64_t update_us;
} al_doc;

typedef struct al_doc_list {
	al_doc **docs;   /* ordered by document id (byte order) */
	size_t count;
} al_doc_list;

void al_doc_free(al_doc *doc);
void al_doc_list_free(al_doc_list *list);
/* The last segment of a document path (its id). Borrowed pointer into path. */
const char *al_doc_id(const char *path);

typedef enum {
	AL_WRITE_SET = 0,     /* replace the whole document with fields */
	AL_WRITE_UPDATE,      /* merge: set each top-level field of fields, keep others; creates */
	AL_WRITE_DELETE,      /* delete the document (its sub-collections are untouched) */
} al_write_op;

typedef enum {
	AL_PRE_NONE = 0,
	AL_PRE_EXISTS,        /* fail with AL_ENOTFOUND if the document is missing */
	AL_PRE_MISSING,       /* fail with AL_EEXISTS if the document exists (create-only) */
} al_precondition;

typedef struct al_write {
	al_write_op op;
	const char *path;
	const cJSON *fields;  /* borrowed; NULL for DELETE */
	al_precondition pre;
	/* AL_WRITE_UPDATE only; borrowed; NULL: the top-level fields of fields. Otherwise the update
	 * mask, as Firestore's updateMask: an array of field paths, each an array of one or two
	 * strings, ["status"] (a top-level field) or ["hyper_params", "opt/beta1"] (one key of a map
	 * field). Each path is set to its value in fields, or deleted when fields holds none there
	 * (a key set in a field that is not a map makes it a map); nothing else changes, so writers
	 * of different keys of one map never undo each other. fields holds nothing outside the mask,
	 * and no path of the mask is inside another (al_write_check). */
	const cJSON *mask;
} al_write;

/* 2: list_group and get_many (optional members) were added.
 * 3: al_write's mask (updates of single keys of a map field); every backend applies it.
 * 4: get_text, list_text and list_meta (optional members) were added.
 * 5: list_group_text (optional) was added; list_text's order is the backend's own. */
#define AL_STORE_BACKEND_VERSION 5

typedef struct al_store_backend al_store_backend;
struct al_store_backend {
	unsigned version;     /* AL_STORE_BACKEND_VERSION */
	const char *name;     /* "sqlite", "firestore" */
	/* AL_ENOTFOUND when the document does not exist. */
	int (*get)(al_doc **out, al_store_backend *b, const char *path);
	/* Documents directly in collection, ordered by id; ids in [id_from, id_to) when given
	 * (either may be NULL). An empty or missing collection is an empty list, not an error. */
	int (*list)(al_doc_list **out, al_store_backend *b, const char *collection,
		const char *id_from, const char *id_to);
	/* Ids of the sub-collections under a document that hold at least one document. */
	int (*list_collections)(char ***out, size_t *count, al_store_backend *b, const char *doc_path);
	/* All writes or none. A failed precondition gives AL_EEXISTS / AL_ENOTFOUND and writes nothing. */
	int (*commit)(al_store_backend *b, const al_write *writes, size_t count);
	/* Text for .aletheia/status (one "key: value" per line), caller frees. May be NULL. */
	char *(*describe)(al_store_backend *b);
	void (*free)(al_store_backend *b);
	/* Added for the read cache's prefetch (optional: NULL when listing each collection is
	 * cheap, as for SQLite). Every document in a collection named collection_id at any depth
	 * below the document parent_doc (a collection-group query scoped to it), in a paged
	 * request or few; the list is ordered by path, not by id. */
	int (*list_group)(al_doc_list **out, al_store_backend *b, const char *parent_doc,
		const char *collection_id);
	/* Optional: several documents in one request (Firestore's batchGet). out[i] gets the
	 * document at paths[i], or NULL when it does not exist; on error nothing is returned. */
	int (*get_many)(al_doc **out, al_store_backend *b, const char *const *paths, size_t n);
	/* Added for metric reads (optional: NULL when the backend keeps no text, or a decorator
	 * must see the document). Calls fn once with a document's fields as the JSON text of an
	 * object of typed values, as stored (NUL-terminated at len, valid during the call), for a
	 * reader that parses a shape it knows without building a tree (core/series/chunk.c), and
	 * returns what fn returns. AL_ENOTFOUND as get, without calling fn. */
	int (*get_text)(al_store_backend *b, const char *path,
		int (*fn)(void *ctx, const char *text, size_t len), void *ctx);
	/* Optional, as get_text: the documents directly in collection, one call of fn each with its
	 * path, fields text and update time (fn leaves out a text that is no object, naming it in
	 * the log, as list does), in the order the backend reads them fastest (SQLite: as stored,
	 * so a cold disk is read front to back), not by id; stops at fn's first nonzero return and
	 * returns it. For runs.csv: its run documents. */
	int (*list_text)(al_store_backend *b, const char *collection,
		int (*fn)(void *ctx, const char *path, const char *text, size_t len, int64_t update_us),
		void *ctx);
	/* Optional (NULL: list, its fields dropped): the documents directly in collection, ordered
	 * by id, with their paths and times but no fields (NULL): what a folder's listing shows of
	 * each (`ls -l runs/`: a run folder's time is its document's), without reading or parsing
	 * each document. It may list a document whose fields cannot be read, which list leaves out
	 * (a get of it fails with AL_EIO). */
	int (*list_meta)(al_doc_list **out, al_store_backend *b, const char *collection);
	/* Optional: list_group's documents handed to fn as list_text hands them over, in the same
	 * order as list_text. For renders that show every run's metric summaries (runs.csv, best/,
	 * the report page): one query for an experiment, not one per run. */
	int (*list_group_text)(al_store_backend *b, const char *parent_doc, const char *collection_id,
		int (*fn)(void *ctx, const char *path, const char *text, size_t len, int64_t update_us),
		void *ctx);
};

/* 0 when b is a table of this version with the required members set, else AL_EINVAL saying
 * which; checked wherever a backend is taken in (al_store_open, the decorators). */
int al_store_backend_check(const al_store_backend *b);

/* Opens a backend from a URI: "local:DIR" (SQLite in DIR/meta.db). */
int al_store_open(al_store_backend **out, const char *uri);
int al_store_sqlite_new(al_store_backend **out, const char *dir);

/* Convenience wrappers: one call through the table. */
int al_store_get(al_doc **out, al_store_backend *b, const char *path);
/* get_many when the backend has it, else one get per path (missing documents: NULL). */
int al_store_get_many(al_doc **out, al_store_backend *b, const char *const *paths, size_t n);
int al_store_list(al_doc_list **out, al_store_backend *b, const char *collection,
	const char *id_from, const char *id_to);
/* get_text when the backend has it; else 0 with *called 0 (fn not called): the caller takes
 * the document with al_store_get instead. */
int al_store_get_text(int *called, al_store_backend *b, const char *path,
	int (*fn)(void *ctx, const char *text, size_t len), void *ctx);
int al_store_commit(al_store_backend *b, const al_write *writes, size_t count);
/* list_meta when the backend has it, else list with the fields dropped. */
int al_store_list_meta(al_doc_list **out, al_store_backend *b, const char *collection);
/* Added by the store module: the same one-call wrappers for list_collections and describe
 * (describe gives NULL when the backend has none). */
int al_store_list_collections(char ***out, size_t *count, al_store_backend *b,
	const char *doc_path);
char *al_store_describe(al_store_backend *b);
void al_store_free(al_store_backend *b);
void al_strings_free(char **strings, size_t count);

/* Paths: the number of '/'-separated segments (-1 when empty or with an empty segment); a
 * document path has an even number; al_path_invalid sets AL_EINVAL saying what a path of that
 * kind ("document" or "collection") must look like. */
int al_path_segments(const char *path);
int al_path_is_document(const char *path);
int al_path_invalid(const char *kind, const char *path);
/* list_group's arguments: a document path and a collection id (no '/'); else AL_EINVAL. */
int al_group_check(const char *parent_doc, const char *collection_id);
/* Checks one write before a backend takes it: a document path, a known operation and
 * precondition, fields that are typed values (value.h) all the way down, and a mask (only on an
 * update) of field paths that are valid field names, none inside another, covering fields. */
int al_write_check(const al_write *w);
/* Applies a SET or an UPDATE (with its mask) to a document's fields in place: what a backend
 * stores, and what a decorator's local copy becomes. A DELETE empties them. */
int al_write_apply(cJSON *doc_fields, const al_write *w);
/* Adds the field path field (key NULL) or field.key to mask (an array); 0 or AL_ENOMEM. */
int al_mask_add(cJSON *mask, const char *field, const char *key);
/* A mask path's segments: 1 or 2 (*field, *key set; *key NULL for 1), or 0 when p is not one. */
int al_mask_path(const char **field, const char **key, const cJSON *p);

/* Encoding of a file path or metric name as one document id: '%' → "%25", '/' → "%2F". */
char *al_id_encode(const char *path);
char *al_id_decode(const char *id);

/* Added by the Firestore module (core/store/store_firestore.c): the backend over Firestore's REST API.
 * The token callback gives an OAuth2 access token in *out (malloc'd; the store frees it) and
 * returns 0, or an AL_E* code with the message set. It is asked before every request, so it
 * should cache the token and refresh it before it expires. */
struct al_http_options;
typedef int (*al_token_fn)(char **out, void *ctx);

typedef struct al_firestore_options {
	unsigned version;              /* AL_FIRESTORE_OPTIONS_VERSION */
	const char *project;           /* required */
	const char *database;          /* NULL: "(default)" */
	const char *emulator_host;     /* "host:port": plain HTTP, "Bearer owner"; NULL: Google */
	al_token_fn token;             /* required without emulator_host */
	void *token_ctx;
	const struct al_http_options *http; /* timeouts and retries; NULL: http.h's defaults */
	void (*token_free)(void *ctx); /* called on token_ctx when the store is freed; may be NULL */
	/* Told when the server refused a token (401 UNAUTHENTICATED: revoked or expired early), so
	 * the next token() call fetches a new one; the request is then retried once. May be NULL. */
	void (*token_reject)(void *ctx, const char *token);
	/* Base URL of the Firestore API when not Google's ("http://127.0.0.1:8080"), reached with
	 * real tokens (unlike emulator_host). NULL: https://firestore.googleapis.com. */
	const char *endpoint;
} al_firestore_options;

#define AL_FIRESTORE_OPTIONS_VERSION 1
#define AL_FIRESTORE_OPTIONS_INIT {AL_FIRESTORE_OPTIONS_VERSION, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
	NULL, NULL}

int al_store_firestore_new(al_store_backend **out, const al_firestore_options *opts);

#endif
