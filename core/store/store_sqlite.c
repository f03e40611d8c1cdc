/* aletheia: the SQLite metastore backend (local:DIR): documents in DIR/meta.db behind one
 * connection and a mutex, and an flock on DIR/lock so that one process owns the store. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "core/doc/json.h"
#include "core/store/store.h"
#include "core/doc/value.h"
#include "core/util.h"

#define SCHEMA_VERSION 1

/* parent is the collection path, parent_doc the document holding that collection ("" at top
 * level). The (parent_doc, parent) index also serves lookups by parent_doc alone and lets
 * list_collections skip from one collection to the next instead of scanning documents. */
static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS docs ("
	" path TEXT PRIMARY KEY,"
	" parent TEXT NOT NULL,"
	" parent_doc TEXT NOT NULL,"
	" id TEXT NOT NULL,"
	" fields TEXT NOT NULL,"
	" created INTEGER,"
	" updated INTEGER);"
	"CREATE INDEX IF NOT EXISTS docs_parent_id ON docs(parent, id);"
	"CREATE INDEX IF NOT EXISTS docs_parent_doc ON docs(parent_doc, parent);"
	"PRAGMA user_version = 1;";

/* A folder's listing (list_meta) reads ids and times from this index alone, no row. Made at every
 * open when missing (a store made before it, in a second or so for 10,000 runs); an index changes
 * no schema, so older versions open the store as before. */
static const char index_sql[] =
	"CREATE INDEX IF NOT EXISTS docs_parent_times ON docs(parent, id, created, updated);";

enum { ST_GET, ST_LIST, ST_LIST_META, ST_LIST_TEXT, ST_GROUP_TEXT, ST_COLLS, ST_PUT, ST_DELETE, ST_COUNT, ST_BEGIN, ST_COMMIT, ST_ROLLBACK,
	ST_ROWID, ST_N };

static const char *const statement_sql[ST_N] = {
	[ST_GET] = "SELECT fields, created, updated FROM docs WHERE path = ?1",
	/* Text compares with BINARY collation: byte order, as Firestore orders ids. */
	[ST_LIST] = "SELECT path, fields, created, updated FROM docs WHERE parent = ?1"
		" AND id >= ?2 AND (?3 IS NULL OR id < ?3) ORDER BY id",
	/* Only the index docs_parent_times: no row, no fields read. */
	[ST_LIST_META] = "SELECT id, created, updated FROM docs INDEXED BY docs_parent_times"
		" WHERE parent = ?1 ORDER BY id",
	/* list_text and list_group_text: the rowids from the index first, then the rows in rowid
	 * order (an IN list is walked sorted): the table is read front to back, as it was written,
	 * not in id order, which on a cold disk is a seek per document. ?3 is "/" and the
	 * collection id: the parent's last segment (length and substr both count characters). */
	[ST_LIST_TEXT] = "SELECT path, fields, updated FROM docs WHERE rowid IN"
		" (SELECT rowid FROM docs WHERE parent = ?1)",
	[ST_GROUP_TEXT] = "SELECT path, fields, updated FROM docs WHERE rowid IN"
		" (SELECT rowid FROM docs INDEXED BY docs_parent_times WHERE parent > ?1 AND parent < ?2"
		" AND substr(parent, -length(?3)) = ?3)",
	[ST_COLLS] = "WITH RECURSIVE c(p) AS ("
		" SELECT (SELECT min(parent) FROM docs WHERE parent_doc = ?1)"
		" UNION ALL SELECT (SELECT min(parent) FROM docs WHERE parent_doc = ?1 AND parent > c.p)"
		" FROM c WHERE c.p IS NOT NULL)"
		" SELECT p FROM c WHERE p IS NOT NULL",
	/* The upsert keeps created of an existing document. */
	[ST_PUT] = "INSERT INTO docs (path, parent, parent_doc, id, fields, created, updated)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (path) DO UPDATE"
		" SET fields = excluded.fields, updated = excluded.updated",
	[ST_DELETE] = "DELETE FROM docs WHERE path = ?1",
	[ST_COUNT] = "SELECT count(*) FROM docs",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_ROWID] = "SELECT rowid FROM docs WHERE path = ?1",
};

/* get_text's kept buffers (below). */
#define TEXT_BUFS 4

/* get_text's read-ahead piece (below). */
typedef struct {
	char *buf;
	sqlite3_int64 off;
	int len;               /* 0: nothing held */
	int fd;                /* meta.db read-only, for the kernel's read-ahead hints; -1: none */
	sqlite3_int64 asked;   /* hinted up to here (a hint only: never read from) */
} ra_piece;

typedef struct {
	al_store_backend base;
	pthread_mutex_t lock; /* guards db and every statement */
	sqlite3 *db;
	sqlite3_stmt *st[ST_N];
	char *dir;            /* absolute */
	/* get_text's buffers, kept: a chunk's 400 KB each time would be a fresh mapping to fault
	 * in; one per reader at once (metrics.c reads ahead on the tree's workers; guarded by lock) */
	char *text[TEXT_BUFS];
	size_t text_cap[TEXT_BUFS];
	ra_piece ra;          /* get_text's read-ahead piece (guarded by lock) */
	/* A second connection, read-only, for list_group_text, under its own lock: a render's two
	 * big listings (runs.csv's runs, and every run's metrics) run side by side on two cores, as
	 * WAL readers do not wait for each other. NULL (it could not be opened): the first one. */
	pthread_mutex_t rlock;
	sqlite3 *rdb;
	sqlite3_stmt *rgroup;
	ra_piece rra;         /* its read-ahead piece (guarded by rlock) */
	int lock_fd;
	/* Documents whose fields were read and parsed since the open (get, list): .aletheia/status's
	 * documents_read, so a listing that reads every run shows (README "The command line");
	 * counted atomically, as both connections count. */
	unsigned long long docs_read;
} sqlite_store;

static void count_read(sqlite_store *s)
{
	__atomic_add_fetch(&s->docs_read, 1, __ATOMIC_RELAXED);
}

/* --- read-ahead for get_text -------------------------------------------------------------
 * SQLite reads a long text's overflow pages one pread of a page each (4 KiB: a metric chunk of
 * 400 KB is 100 system calls, a fifth of a metric read's CPU). A VFS over the default one reads
 * the main database in 256 KiB pieces instead while get_text's blob read runs (ra_active, set by
 * that thread alone, under the store's lock): a chunk's pages were written together and mostly
 * lie together. The piece lives for that one read: the blob's read transaction holds the pages
 * still (one connection, the only one: the store's flock), and every other read goes straight
 * to the default VFS as before. */
#define RA_SIZE (256 * 1024)
/* Cold, the file's next MiB (the next chunks, written after this one) is asked of the disk while
 * this piece is parsed: the disk's time overlaps the CPU's, not adds to it. */
#define RA_AHEAD (1024 * 1024)
/* Mapped reads (see ra_fetch): how far SQLite may map, and how much it touches between drops. */
#define MMAP_SIZE "1099511627776"
#define MMAP_TRIM (128u << 20)
#define MMAP_TRIM_IDLE (8u << 20)   /* between statements (st_done): a scan leaves nothing behind */
/* A fault maps the pages around the one touched too (fault_around_bytes, 64 KiB by default): a
 * b-tree seek's page adds that much to RSS. */
#define MMAP_TOUCH(amt) ((uint64_t)((amt) > 65536 ? (amt) : 65536))

static __thread ra_piece *ra_active;
static const sqlite3_io_methods ra_methods;
static sqlite3_vfs ra_vfs, *ra_base;
static pthread_once_t ra_once = PTHREAD_ONCE_INIT;
static int ra_registered, ra_mmap;   /* ra_mmap: registered over SQLite's "unix" VFS */

typedef struct {
	sqlite3_file base;
	int main_db;
	uint64_t mapped;       /* bytes fetched or read since the mapping's pages were dropped */
	char *map;             /* SQLite's mapping of the file (see ra_fetch), NULL: not known */
	ino_t ino;             /* the file's, to recognise that mapping in /proc/self/maps */
	sqlite3_file *real;    /* the default VFS's file, right after this struct */
} ra_file;

#define RA_REAL(f) (((ra_file *)(f))->real)

static int ra_read(sqlite3_file *f, void *out, int amt, sqlite3_int64 off)
{
	ra_piece *r = ra_active;
	sqlite3_file *real = RA_REAL(f);
	int rc;
	if (!r || !((ra_file *)f)->main_db || amt <= 0 || amt >= RA_SIZE) {
		if (((ra_file *)f)->main_db && amt > 0)   /* the default VFS copies it from the mapping */
			((ra_file *)f)->mapped += MMAP_TOUCH(amt);
		return real->pMethods->xRead(real, out, amt, off);
	}
	if (!(r->len && off >= r->off && off + amt <= r->off + r->len)) {
		((ra_file *)f)->mapped += RA_SIZE;
		r->len = 0;
		/* near the end of the file a piece is short: that read is left to the default VFS */
		if ((rc = real->pMethods->xRead(real, r->buf, RA_SIZE, off)) != SQLITE_OK)
			return real->pMethods->xRead(real, out, amt, off);
		r->off = off;
		r->len = RA_SIZE;
		if (r->fd >= 0) {
			sqlite3_int64 from = off + RA_SIZE, to = from + RA_AHEAD;
			if (r->asked > from && r->asked <= to)
				from = r->asked;   /* asked already */
			if (from < to && posix_fadvise(r->fd, from, to - from, POSIX_FADV_WILLNEED) == 0)
				r->asked = to;
		}
	}
	memcpy(out, r->buf + (off - r->off), (size_t)amt);
	return SQLITE_OK;
}

/* Anything else is the default VFS's own; a write ends any piece held (none is, outside a
 * blob read, but a stale page must never be served). */
static int ra_close(sqlite3_file *f)
{
	sqlite3_file *real = RA_REAL(f);
	int rc;
	((ra_file *)f)->map = NULL;
	rc = real->pMethods ? real->pMethods->xClose(real) : SQLITE_OK;
	f->pMethods = NULL;
	return rc;
}
static int ra_write(sqlite3_file *f, const void *p, int amt, sqlite3_int64 off)
{
	if (ra_active)
		ra_active->len = 0;
	return RA_REAL(f)->pMethods->xWrite(RA_REAL(f), p, amt, off);
}
static int ra_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	if (ra_active)
		ra_active->len = 0;
	((ra_file *)f)->map = NULL;   /* the mapping shrinks with the file */
	return RA_REAL(f)->pMethods->xTruncate(RA_REAL(f), size);
}
static int ra_sync(sqlite3_file *f, int flags)
{
	return RA_REAL(f)->pMethods->xSync(RA_REAL(f), flags);
}
static int ra_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return RA_REAL(f)->pMethods->xFileSize(RA_REAL(f), size);
}
static int ra_lock(sqlite3_file *f, int level)
{
	return RA_REAL(f)->pMethods->xLock(RA_REAL(f), level);
}
static int ra_unlock(sqlite3_file *f, int level)
{
	if (ra_active)
		ra_active->len = 0;
	return RA_REAL(f)->pMethods->xUnlock(RA_REAL(f), level);
}
static int ra_check_reserved(sqlite3_file *f, int *out)
{
	return RA_REAL(f)->pMethods->xCheckReservedLock(RA_REAL(f), out);
}
static int ra_file_control(sqlite3_file *f, int op, void *arg)
{
	if (op == SQLITE_FCNTL_SIZE_HINT || op == SQLITE_FCNTL_MMAP_SIZE)
		((ra_file *)f)->map = NULL;   /* the unix VFS may map the file again */
	return RA_REAL(f)->pMethods->xFileControl(RA_REAL(f), op, arg);
}
static int ra_sector_size(sqlite3_file *f)
{
	return RA_REAL(f)->pMethods->xSectorSize(RA_REAL(f));
}
static int ra_device(sqlite3_file *f)
{
	return RA_REAL(f)->pMethods->xDeviceCharacteristics(RA_REAL(f));
}
static int ra_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **p)
{
	return RA_REAL(f)->pMethods->xShmMap(RA_REAL(f), pg, pgsz, extend, p);
}
static int ra_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	return RA_REAL(f)->pMethods->xShmLock(RA_REAL(f), offset, n, flags);
}
static void ra_shm_barrier(sqlite3_file *f)
{
	RA_REAL(f)->pMethods->xShmBarrier(RA_REAL(f));
}
static int ra_shm_unmap(sqlite3_file *f, int del)
{
	return RA_REAL(f)->pMethods->xShmUnmap(RA_REAL(f), del);
}
/* SQLite reads the store through a mapping of the file (MMAP_SIZE; its build caps it, Debian's
 * at 2 GiB): a page is used where it lies, with no system call and no copy into SQLite's page
 * cache (the first `cat runs.csv` of 10,000 runs 1.1-1.6 s -> 0.8-0.9 s, a 10,000,000-point
 * metric's read 1.5 times as fast, by hand on a 2-vCPU VM). The pages touched count in the
 * daemon's RSS while mapped, so they are dropped from the page tables (MADV_DONTNEED: the file's
 * pages stay in the page cache, and a later access maps them again; the mapping is read-only and
 * shared, so nothing is lost): every MMAP_TRIM bytes fetched or read within a statement, and
 * after a statement that took MMAP_TRIM_IDLE or more. The unix VFS hands out pointers into one
 * mapping from its start; every call that can map it again (a fetch, an unfetch of all of it, a
 * truncate, a size hint, a new mmap_size, close) goes through here and sets or forgets rf->map. Its end is
 * the kernel's (/proc/self/maps), as SQLite does not say how far it mapped, and only a mapping
 * of this file from offset 0 starting there is dropped. */

static void mapping_drop(ra_file *rf)
{
	char line[512];
	FILE *f;
	rf->mapped = 0;
	if (!rf->map || !(f = fopen("/proc/self/maps", "re")))
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, off, ino;
		if (sscanf(line, "%lx-%lx %*s %lx %*s %lu", &lo, &hi, &off, &ino) == 4 &&
		    lo == (unsigned long)(uintptr_t)rf->map) {
			if (off == 0 && ino == (unsigned long)rf->ino && hi > lo)
				madvise(rf->map, hi - lo, MADV_DONTNEED);
			break;
		}
	}
	fclose(f);
}

static int ra_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **p)
{
	ra_file *rf = (ra_file *)f;
	int rc = RA_REAL(f)->pMethods->xFetch(RA_REAL(f), off, amt, p);
	if (rc != SQLITE_OK || !*p || off < 0 || amt <= 0)
		return rc;
	rf->map = (char *)*p - off;
	rf->mapped += MMAP_TOUCH(amt);
	if (rf->mapped >= MMAP_TRIM)
		mapping_drop(rf);
	return rc;
}
static int ra_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	if (!p)
		((ra_file *)f)->map = NULL;   /* all of it unmapped */
	return RA_REAL(f)->pMethods->xUnfetch(RA_REAL(f), off, p);
}

/* After a statement (st_done): its pages dropped once it took MMAP_TRIM_IDLE. */
static void mapping_idle(sqlite3 *db)
{
	sqlite3_file *f = NULL;
	if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) == SQLITE_OK && f &&
	    f->pMethods == &ra_methods && ((ra_file *)f)->mapped >= MMAP_TRIM_IDLE)
		mapping_drop((ra_file *)f);
}

static const sqlite3_io_methods ra_methods = {
	3, ra_close, ra_read, ra_write, ra_truncate, ra_sync, ra_file_size, ra_lock, ra_unlock,
	ra_check_reserved, ra_file_control, ra_sector_size, ra_device, ra_shm_map, ra_shm_lock,
	ra_shm_barrier, ra_shm_unmap, ra_fetch, ra_unfetch,
};

static int ra_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
	ra_file *rf = (ra_file *)f;
	int rc;
	(void)vfs;
	rf->real = (sqlite3_file *)(rf + 1);
	rf->mapped = 0;
	rf->map = NULL;
	rf->ino = 0;
	rf->main_db = (flags & SQLITE_OPEN_MAIN_DB) != 0;
	f->pMethods = NULL;
	rc = ra_base->xOpen(ra_base, name, rf->real, flags, out_flags);
	/* Methods the default VFS's file lacks (an older io_methods version) would be called
	 * through ours: such a file is not wrapped, nor opened. */
	if (rc == SQLITE_OK && rf->real->pMethods && rf->real->pMethods->iVersion < 3) {
		rf->real->pMethods->xClose(rf->real);
		return SQLITE_CANTOPEN;
	}
	if (rc == SQLITE_OK && rf->main_db && name) {
		struct stat st;
		if (stat(name, &st) == 0)
			rf->ino = st.st_ino;
	}
	if (rc == SQLITE_OK || rf->real->pMethods)
		f->pMethods = &ra_methods;   /* SQLite closes a file whose open failed if it has methods */
	return rc;
}

static void ra_register(void)
{
	if (!(ra_base = sqlite3_vfs_find(NULL)))
		return;
	ra_vfs = *ra_base;   /* the default VFS's other calls, as they are */
	ra_vfs.iVersion = ra_base->iVersion;
	ra_vfs.szOsFile = (int)sizeof(ra_file) + ra_base->szOsFile;
	ra_vfs.zName = "aletheia-readahead";
	ra_vfs.pNext = NULL;
	ra_vfs.xOpen = ra_open;
	ra_registered = sqlite3_vfs_register(&ra_vfs, 0) == SQLITE_OK;
	ra_mmap = ra_registered && ra_base->zName && strcmp(ra_base->zName, "unix") == 0;
}

/* 1 when the disk holding dir has (almost) no room left: SQLite reports a full disk met while
 * opening as a mere I/O error. */
static int disk_full(const char *dir)
{
	struct statvfs sv;
	return dir && statvfs(dir, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize < (1u << 20);
}

static int conn_error(sqlite_store *s, sqlite3 *db, int rc, const char *what);

static int db_error(sqlite_store *s, int rc, const char *what)
{
	return conn_error(s, s->db, rc, what);
}

static int conn_error(sqlite_store *s, sqlite3 *db, int rc, const char *what)
{
	int code;
	if (((rc & 0xff) == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR) && disk_full(s->dir))
		return al_error_set(AL_ENOSPC, "store %s: %s: no space left on its disk; free some space "
			"there, then mount again", s->dir, what);
	switch (rc & 0xff) {
	case SQLITE_FULL: code = AL_ENOSPC; break;
	case SQLITE_BUSY: case SQLITE_LOCKED: code = AL_EBUSY; break;
	case SQLITE_READONLY: code = AL_EROFS; break;
	case SQLITE_PERM: case SQLITE_AUTH: code = AL_EACCES; break;
	case SQLITE_NOMEM: code = AL_ENOMEM; break;
	default: code = AL_EIO; break;
	}
	return al_error_set(code, "store %s: %s: %s", s->dir, what, sqlite3_errmsg(db));
}

static void st_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	mapping_idle(sqlite3_db_handle(st));
}

/* Runs a statement that returns no rows (BEGIN, COMMIT, ROLLBACK, DELETE...). */
static int st_run(sqlite_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_error(s, rc, what);
	st_done(st);
	return rc;
}

/* Builds a document from a row whose columns col..col+2 are fields, created, updated. */
static int row_to_doc(al_doc **out, const char *path, size_t path_len, sqlite3_stmt *st, int col)
{
	al_doc *doc = calloc(1, sizeof(*doc));
	const char *text = (const char *)sqlite3_column_text(st, col);
	int rc = 0;

	if (!doc || !(doc->path = strndup(path, path_len))) {
		rc = al_error_set(AL_ENOMEM, "out of memory reading document %.*s", (int)path_len, path);
		goto cleanup;
	}
	doc->fields = text ? cJSON_ParseWithLength(text, sqlite3_column_bytes(st, col)) : NULL;
	if (!cJSON_IsObject(doc->fields)) {
		rc = al_error_set(AL_EIO, "document %s has corrupt fields in the store", doc->path);
		goto cleanup;
	}
	doc->create_us = sqlite3_column_int64(st, col + 1);
	doc->update_us = sqlite3_column_int64(st, col + 2);
	*out = doc;
	doc = NULL;
cleanup:
	al_doc_free(doc);
	return rc;
}

static int sqlite_get(al_doc **out, al_store_backend *b, const char *path)
{
	sqlite_store *s = (sqlite_store *)b;
	sqlite3_stmt *st = s->st[ST_GET];
	int rc;

	*out = NULL;
	if (!al_path_is_document(path))
		return al_path_invalid("document", path);
	pthread_mutex_lock(&s->lock);
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		count_read(s);
		rc = row_to_doc(out, path, strlen(path), st, 0);
	}
	else if (rc == SQLITE_DONE)
		rc = al_error_set(AL_ENOTFOUND, "document %s not found", path);
	else
		rc = db_error(s, rc, "get");
	st_done(st);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* The stored text itself (store.h get_text): a metric chunk's 4,096 points are 400 KB of typed
 * values, which cJSON would turn into some 50,000 allocations. fn runs under the lock, on
 * SQLite's own copy of the text. */
static int sqlite_get_text(al_store_backend *b, const char *path,
	int (*fn)(void *ctx, const char *text, size_t len), void *ctx)
{
	sqlite_store *s = (sqlite_store *)b;
	sqlite3_stmt *st = s->st[ST_ROWID];
	sqlite3_blob *blob = NULL;
	char *text = NULL;
	size_t len = 0, cap = 0, i;
	int64_t rowid;
	int rc;

	if (!al_path_is_document(path))
		return al_path_invalid("document", path);
	pthread_mutex_lock(&s->lock);
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	rowid = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	st_done(st);
	if (rc == SQLITE_DONE) {
		rc = al_error_set(AL_ENOTFOUND, "document %s not found", path);
		goto cleanup;
	}
	/* The text read straight into the kept buffer (incremental I/O), not into a copy SQLite
	 * allocates for the column; the handle is closed at once, so no read stays open. */
	if (rc != SQLITE_ROW ||
	    (rc = sqlite3_blob_open(s->db, "main", "docs", "fields", rowid, 0, &blob)) != SQLITE_OK) {
		rc = db_error(s, rc, "get");
		goto cleanup;
	}
	len = (size_t)sqlite3_blob_bytes(blob);
	/* A kept buffer is taken out while fn reads it, outside the lock: several readers' chunks
	 * are parsed side by side (metrics.c reads ahead). */
	for (i = 0; i < TEXT_BUFS && !s->text[i]; i++)
		;
	if (i < TEXT_BUFS) {
		text = s->text[i];
		cap = s->text_cap[i];
		s->text[i] = NULL;
		s->text_cap[i] = 0;
	}
	if (len + 1 > cap) {
		char *grown = realloc(text, len + 1);
		if (!grown) {
			rc = al_error_set(AL_ENOMEM, "out of memory reading document %s", path);
			goto cleanup;
		}
		text = grown;
		cap = len + 1;
	}
	if (len >= RA_SIZE / 2 && !s->ra.buf)
		s->ra.buf = malloc(RA_SIZE);   /* without it, the reads are page by page, as before */
	s->ra.len = 0;
	ra_active = len >= RA_SIZE / 2 && s->ra.buf ? &s->ra : NULL;
	rc = sqlite3_blob_read(blob, text, (int)len, 0);
	ra_active = NULL;
	s->ra.len = 0;
	if (rc != SQLITE_OK) {
		rc = db_error(s, rc, "get");
		goto cleanup;
	}
	text[len] = '\0';
	count_read(s);
	sqlite3_blob_close(blob);
	blob = NULL;
	pthread_mutex_unlock(&s->lock);
	rc = fn(ctx, text, len);
	pthread_mutex_lock(&s->lock);
cleanup:
	if (blob)
		sqlite3_blob_close(blob);
	for (i = 0; text && i < TEXT_BUFS; i++)
		if (!s->text[i]) {
			s->text[i] = text;
			s->text_cap[i] = cap;
			text = NULL;
		}
	pthread_mutex_unlock(&s->lock);
	free(text);
	return rc;
}

/* Room in list for one more document (its capacity doubling from 16). */
static int list_room(al_doc_list *list, size_t *cap, const char *collection)
{
	al_doc **docs;
	size_t ncap;
	if (list->count < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	if (!(docs = realloc(list->docs, ncap * sizeof(*docs))))
		return al_error_set(AL_ENOMEM, "out of memory listing %s", collection);
	list->docs = docs;
	*cap = ncap;
	return 0;
}

static int sqlite_list_meta(al_doc_list **out, al_store_backend *b, const char *collection)
{
	sqlite_store *s = (sqlite_store *)b;
	sqlite3_stmt *st = s->st[ST_LIST_META];
	al_doc_list *list = NULL;
	size_t cap = 0;
	int rc = 0, n = al_path_segments(collection);

	*out = NULL;
	if (n < 0 || n % 2 != 1)
		return al_path_invalid("collection", collection);
	if (!(list = calloc(1, sizeof(*list))))
		return al_error_set(AL_ENOMEM, "out of memory listing %s", collection);
	pthread_mutex_lock(&s->lock);
	sqlite3_bind_text(st, 1, collection, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		al_doc *d;
		if ((rc = list_room(list, &cap, collection)))
			goto cleanup;
		if (!(d = calloc(1, sizeof(*d))) || asprintf(&d->path, "%s/%s", collection,
			(const char *)sqlite3_column_text(st, 0)) < 0) {
			free(d);
			rc = al_error_set(AL_ENOMEM, "out of memory listing %s", collection);
			goto cleanup;
		}
		d->create_us = sqlite3_column_int64(st, 1);
		d->update_us = sqlite3_column_int64(st, 2);
		list->docs[list->count++] = d;
	}
	rc = rc == SQLITE_DONE ? 0 : db_error(s, rc, "list");
cleanup:
	st_done(st);
	pthread_mutex_unlock(&s->lock);
	if (rc == 0)
		*out = list;
	else
		al_doc_list_free(list);
	return rc;
}

static int sqlite_list(al_doc_list **out, al_store_backend *b, const char *collection,
	const char *id_from, const char *id_to)
{
	sqlite_store *s = (sqlite_store *)b;
	sqlite3_stmt *st = s->st[ST_LIST];
	al_doc_list *list = NULL;
	size_t cap = 0;
	int rc = 0, n = al_path_segments(collection);

	*out = NULL;
	if (n < 0 || n % 2 != 1)
		return al_path_invalid("collection", collection);
	list = calloc(1, sizeof(*list));
	if (!list)
		return al_error_set(AL_ENOMEM, "out of memory listing %s", collection);
	pthread_mutex_lock(&s->lock);
	sqlite3_bind_text(st, 1, collection, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, id_from ? id_from : "", -1, SQLITE_STATIC);
	if (id_to)
		sqlite3_bind_text(st, 3, id_to, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((rc = list_room(list, &cap, collection)))
			goto cleanup;
		count_read(s);
		rc = row_to_doc(&list->docs[list->count], (const char *)sqlite3_column_text(st, 0),
			sqlite3_column_bytes(st, 0), st, 1);
		if (rc == AL_EIO) {
			/* One document that cannot be read (stored by an older version past today's
			 * limits) must not hide its neighbours: it is left out, and named in the log. */
			fprintf(stderr, "aletheia: %s\n", al_error_last());
			rc = 0;
			continue;
		}
		if (rc)
			goto cleanup;
		list->count++;
	}
	rc = rc == SQLITE_DONE ? 0 : db_error(s, rc, "list");
cleanup:
	st_done(st);
	pthread_mutex_unlock(&s->lock);
	if (rc == 0)
		*out = list;
	else
		al_doc_list_free(list);
	return rc;
}

/* Hands each row of st (path, fields, updated) to fn, under the lock. After the first row the
 * rows come in rowid order, so the main database is read in get_text's 256 KiB pieces: each piece
 * serves the next rows' pages, and the disk is asked for the next MiB while they are parsed. The
 * first step, which walks the index for the rowids, reads page by page. */
static int rows_text(sqlite_store *s, sqlite3 *db, ra_piece *ra, sqlite3_stmt *st,
	int (*fn)(void *ctx, const char *path, const char *text, size_t len, int64_t update_us),
	void *ctx)
{
	int rc;
	if (!ra->buf)
		ra->buf = malloc(RA_SIZE);   /* without it, the reads are page by page */
	ra->len = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *path = (const char *)sqlite3_column_text(st, 0),
			*text = (const char *)sqlite3_column_text(st, 1);
		size_t len = (size_t)sqlite3_column_bytes(st, 1);
		ra_active = ra->buf ? ra : NULL;
		if (!path || !text)
			continue;
		count_read(s);
		if ((rc = fn(ctx, path, text, len, sqlite3_column_int64(st, 2))))
			goto cleanup;
	}
	rc = rc == SQLITE_DONE ? 0 : conn_error(s, db, rc, "list");
cleanup:
	ra_active = NULL;
	ra->len = 0;
	st_done(st);
	return rc;
}

/* store.h list_text: the rows of one collection, their text handed over without a tree. */
static int sqlite_list_text(al_store_backend *b, const char *collection,
	int (*fn)(void *ctx, const char *path, const char *text, size_t len, int64_t update_us),
	void *ctx)
{
	sqlite_store *s = (sqlite_store *)b;
	sqlite3_stmt *st = s->st[ST_LIST_TEXT];
	int rc, n = al_path_segments(collection);

	if (n < 0 || n % 2 != 1)
		return al_path_invalid("collection", collection);
	pthread_mutex_lock(&s->lock);
	sqlite3_bind_text(st, 1, collection, -1, SQLITE_STATIC);
	rc = rows_text(s, s->db, &s->ra, st, fn, ctx);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* store.h list_group_text: the rows of every collection named collection_id below parent_doc,
 * found in the index by their parent's prefix and last segment. */
static int sqlite_list_group_text(al_store_backend *b, const char *parent_doc,
	const char *collection_id,
	int (*fn)(void *ctx, const char *path, const char *text, size_t len, int64_t update_us),
	void *ctx)
{
	sqlite_store *s = (sqlite_store *)b;
	sqlite3_stmt *st = s->st[ST_GROUP_TEXT];
	size_t pl, cl;
	char *from, *to, *tail;
	int rc;

	if ((rc = al_group_check(parent_doc, collection_id)))
		return rc;
	/* every parent below parent_doc sorts in ["parent_doc/", "parent_doc0"): '0' follows '/' */
	pl = strlen(parent_doc);
	cl = strlen(collection_id);
	if (!(from = malloc(2 * (pl + 2) + cl + 2)))
		return al_error_set(AL_ENOMEM, "out of memory");
	to = from + pl + 2;
	tail = to + pl + 2;
	memcpy(from, parent_doc, pl);
	memcpy(to, parent_doc, pl);
	memcpy(from + pl, "/", 2);
	memcpy(to + pl, "0", 2);
	tail[0] = '/';
	memcpy(tail + 1, collection_id, cl + 1);
	if (s->rdb) {
		pthread_mutex_lock(&s->rlock);
		st = s->rgroup;
	} else
		pthread_mutex_lock(&s->lock);
	sqlite3_bind_text(st, 1, from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, to, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, tail, -1, SQLITE_STATIC);
	rc = rows_text(s, s->rdb ? s->rdb : s->db, s->rdb ? &s->rra : &s->ra, st, fn, ctx);
	pthread_mutex_unlock(s->rdb ? &s->rlock : &s->lock);
	free(from);
	return rc;
}

static int sqlite_list_collections(char ***out, size_t *count, al_store_backend *b,
	const char *doc_path)
{
	sqlite_store *s = (sqlite_store *)b;
	sqlite3_stmt *st = s->st[ST_COLLS];
	char **ids = NULL;
	size_t n = 0, cap = 0, skip;
	int rc;

	*out = NULL;
	*count = 0;
	if (!doc_path)
		doc_path = "";
	if (*doc_path && !al_path_is_document(doc_path))
		return al_path_invalid("document", doc_path);
	skip = *doc_path ? strlen(doc_path) + 1 : 0; /* collection path = doc_path "/" id */
	pthread_mutex_lock(&s->lock);
	sqlite3_bind_text(st, 1, doc_path, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *parent = (const char *)sqlite3_column_text(st, 0);
		if (n + 1 >= cap) { /* keep room for a terminating NULL */
			size_t ncap = cap ? cap * 2 : 8;
			char **grown = realloc(ids, ncap * sizeof(*grown));
			if (!grown)
				goto nomem;
			ids = grown;
			cap = ncap;
		}
		if (!parent || strlen(parent) < skip || !(ids[n] = strdup(parent + skip)))
			goto nomem;
		ids[++n] = NULL;
	}
	rc = rc == SQLITE_DONE ? 0 : db_error(s, rc, "list collections");
	goto cleanup;
nomem:
	rc = al_error_set(AL_ENOMEM, "out of memory listing collections of '%s'", doc_path);
cleanup:
	st_done(st);
	pthread_mutex_unlock(&s->lock);
	if (rc == 0 && !ids && !(ids = calloc(1, sizeof(*ids))))
		rc = al_error_set(AL_ENOMEM, "out of memory listing collections of '%s'", doc_path);
	if (rc) {
		al_strings_free(ids, n);
		return rc;
	}
	*out = ids;
	*count = n;
	return 0;
}

/* Writes one document row; fields_json is the serialized fields object. */
static int put_doc(sqlite_store *s, const char *path, const char *fields_json, int64_t now)
{
	sqlite3_stmt *st = s->st[ST_PUT];
	const char *id = strrchr(path, '/'); /* valid paths have at least one '/' */
	const char *coll_slash = id;
	int rc;

	while (coll_slash > path && coll_slash[-1] != '/')
		coll_slash--;
	/* coll_slash is now the start of the collection id; the parent doc ends just before it. */
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, path, (int)(id - path), SQLITE_STATIC);
	sqlite3_bind_text(st, 3, path, coll_slash > path ? (int)(coll_slash - 1 - path) : 0,
		SQLITE_STATIC);
	sqlite3_bind_text(st, 4, id + 1, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, fields_json, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, now);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : db_error(s, rc, "write");
	st_done(st);
	return rc;
}

/* One write inside the open transaction. */
static int apply_write(sqlite_store *s, const al_write *w, const char *serialized, int64_t now)
{
	sqlite3_stmt *get = s->st[ST_GET];
	al_doc *existing = NULL;
	cJSON *base = NULL;
	char *merged = NULL;
	int rc = 0, exists = 0;

	if (w->pre != AL_PRE_NONE || w->op == AL_WRITE_UPDATE) {
		sqlite3_bind_text(get, 1, w->path, -1, SQLITE_STATIC);
		rc = sqlite3_step(get);
		if (rc == SQLITE_ROW) {
			exists = 1;
			rc = w->op == AL_WRITE_UPDATE ?
				row_to_doc(&existing, w->path, strlen(w->path), get, 0) : 0;
		} else {
			rc = rc == SQLITE_DONE ? 0 : db_error(s, rc, "read");
		}
		st_done(get);
		if (rc)
			goto cleanup;
	}
	if (w->pre == AL_PRE_EXISTS && !exists) {
		rc = al_error_set(AL_ENOTFOUND, "document %s not found", w->path);
		goto cleanup;
	}
	if (w->pre == AL_PRE_MISSING && exists) {
		rc = al_error_set(AL_EEXISTS, "document %s already exists", w->path);
		goto cleanup;
	}
	switch (w->op) {
	case AL_WRITE_DELETE:
		sqlite3_bind_text(s->st[ST_DELETE], 1, w->path, -1, SQLITE_STATIC);
		rc = st_run(s, s->st[ST_DELETE], "delete");
		break;
	case AL_WRITE_UPDATE:
		if (existing || w->mask) {
			/* Merged into the stored document in this transaction: only the fields (or map
			 * keys) the write names change. */
			if (!(base = existing ? existing->fields : cJSON_CreateObject())) {
				rc = al_error_set(AL_ENOMEM, "out of memory updating %s", w->path);
				goto cleanup;
			}
			if ((rc = al_write_apply(base, w)))
				goto cleanup;
			/* The merged document must fit Firestore's size limit too. */
			if (al_doc_size(w->path, base) > AL_DOC_MAX_SIZE) {
				rc = al_error_set(AL_EINVAL, "document %s would be larger than %d bytes",
					w->path, AL_DOC_MAX_SIZE);
				goto cleanup;
			}
			if ((rc = al_json_print(&merged, NULL, base, 0)))
				goto cleanup;
			serialized = merged;
		}
		/* fall through */
	case AL_WRITE_SET:
		rc = put_doc(s, w->path, serialized, now);
		break;
	}
cleanup:
	if (!existing)
		cJSON_Delete(base);
	free(merged);
	al_doc_free(existing);
	return rc;
}

static int sqlite_commit(al_store_backend *b, const al_write *writes, size_t count)
{
	sqlite_store *s = (sqlite_store *)b;
	char **texts = NULL;
	int rc = 0, in_tx = 0;
	int64_t now;

	if (count == 0)
		return 0;
	/* Validate and serialize before taking the lock: nothing is written when a write is bad. */
	texts = calloc(count, sizeof(*texts));
	if (!texts)
		return al_error_set(AL_ENOMEM, "out of memory committing %zu writes", count);
	for (size_t i = 0; i < count; i++) {
		if ((rc = al_write_check(&writes[i])))
			goto cleanup;
		if (writes[i].op == AL_WRITE_DELETE)
			continue;
		if (!writes[i].fields)
			texts[i] = strdup("{}");
		else if ((rc = al_json_print(&texts[i], NULL, writes[i].fields, 0)))
			goto cleanup;
		if (!texts[i]) {
			rc = al_error_set(AL_ENOMEM, "out of memory writing %s", writes[i].path);
			goto cleanup;
		}
	}
	pthread_mutex_lock(&s->lock);
	if ((rc = st_run(s, s->st[ST_BEGIN], "begin transaction")))
		goto unlock;
	in_tx = 1;
	now = al_now_us();
	for (size_t i = 0; i < count && rc == 0; i++)
		rc = apply_write(s, &writes[i], texts[i], now);
	if (rc == 0 && (rc = st_run(s, s->st[ST_COMMIT], "commit")) == 0)
		in_tx = 0;
	if (in_tx) { /* keep the first error's message: the rollback's own result is secondary */
		sqlite3_step(s->st[ST_ROLLBACK]);
		st_done(s->st[ST_ROLLBACK]);
	}
unlock:
	pthread_mutex_unlock(&s->lock);
cleanup:
	for (size_t i = 0; i < count; i++)
		free(texts[i]);
	free(texts);
	return rc;
}

static char *sqlite_describe(al_store_backend *b)
{
	sqlite_store *s = (sqlite_store *)b;
	sqlite3_stmt *st = s->st[ST_COUNT];
	long long n = -1;
	unsigned long long read;
	char *text = NULL;

	pthread_mutex_lock(&s->lock);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	st_done(st);
	read = __atomic_load_n(&s->docs_read, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&s->lock);
	if (asprintf(&text, "backend: sqlite\nstore: local:%s\ndocuments: %lld\ndocuments_read: %llu\n",
		s->dir, n, read) < 0)
		return NULL;
	return text;
}

static void sqlite_free(al_store_backend *b)
{
	sqlite_store *s = (sqlite_store *)b;
	if (!s)
		return;
	for (int i = 0; i < ST_N; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_finalize(s->rgroup);
	sqlite3_close(s->rdb);
	sqlite3_close(s->db);
	pthread_mutex_destroy(&s->rlock);
	free(s->rra.buf);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the flock */
	pthread_mutex_destroy(&s->lock);
	for (int i = 0; i < TEXT_BUFS; i++)
		free(s->text[i]);
	free(s->ra.buf);
	if (s->ra.fd >= 0)
		close(s->ra.fd);
	free(s->dir);
	free(s);
}

static int dir_error(int e, const char *dir)
{
	int code = e == EACCES || e == EPERM ? AL_EACCES : e == ENOSPC ? AL_ENOSPC :
		e == EROFS ? AL_EROFS : AL_EIO;
	return al_error_set_errno(code, e, "cannot open store directory %s", dir);
}

/* mkdir -p with mode 0700, then checks the result is a readable directory. */
static int make_dirs(const char *dir)
{
	char *copy = strdup(dir);
	int rc = 0, fd;

	if (!copy)
		return al_error_set(AL_ENOMEM, "out of memory");
	for (char *q = copy + 1;; q++) {
		if (*q == '/' || *q == '\0') {
			char c = *q;
			*q = '\0';
			if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
				rc = dir_error(errno, dir);
				goto cleanup;
			}
			*q = c;
			if (!c)
				break;
		}
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = dir_error(errno, dir);
		goto cleanup;
	}
	close(fd);
cleanup:
	free(copy);
	return rc;
}

static int open_db(sqlite_store *s)
{
	char path[4096];
	sqlite3_stmt *st = NULL;
	int rc, version = 0;

	snprintf(path, sizeof(path), "%s/meta.db", s->dir);
	pthread_once(&ra_once, ra_register);
	rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
		SQLITE_OPEN_NOMUTEX, ra_registered ? ra_vfs.zName : NULL); /* our own mutex serializes the connection */
	if (rc != SQLITE_OK)
		return al_error_set(rc == SQLITE_CANTOPEN ? AL_EACCES : AL_EIO,
			"cannot open database %s: %s", path,
			s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
	sqlite3_busy_timeout(s->db, 5000);
	if (ra_mmap)   /* mapped reads: see ra_fetch, which keeps them out of RSS */
		sqlite3_exec(s->db, "PRAGMA mmap_size=" MMAP_SIZE, NULL, NULL, NULL);
	/* WAL keeps readers cheap; synchronous=FULL so that a commit survives a power cut. */
	if ((rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
		NULL, NULL, NULL)) != SQLITE_OK)
		return db_error(s, rc, "set up");
	if ((rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL)) != SQLITE_OK)
		return db_error(s, rc, "read schema version");
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version > SCHEMA_VERSION)
		return al_error_set(AL_EINVAL, "store %s has schema version %d, newer than this "
			"aletheia understands (%d): upgrade aletheia", s->dir, version, SCHEMA_VERSION);
	if (version < SCHEMA_VERSION) {
		if ((rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK)
			return db_error(s, rc, "create schema");
		if ((rc = sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL)) != SQLITE_OK ||
		    (rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK) {
			rc = db_error(s, rc, "create schema");
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			return rc;
		}
	}
	if ((rc = sqlite3_exec(s->db, index_sql, NULL, NULL, NULL)) != SQLITE_OK)
		return db_error(s, rc, "create index");
	for (int i = 0; i < ST_N; i++) {
		rc = sqlite3_prepare_v3(s->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
			&s->st[i], NULL);
		if (rc != SQLITE_OK)
			return db_error(s, rc, "prepare");
	}
	return 0;
}

/* The read-only second connection (sqlite_store's rdb); without it, every read goes through
 * the first, as before. */
static void open_reader(sqlite_store *s)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/meta.db", s->dir);
	if (sqlite3_open_v2(path, &s->rdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
		ra_registered ? ra_vfs.zName : NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(s->rdb, 5000) != SQLITE_OK ||
	    (ra_mmap && sqlite3_exec(s->rdb, "PRAGMA mmap_size=" MMAP_SIZE, NULL, NULL,
		NULL) != SQLITE_OK) ||
	    sqlite3_prepare_v3(s->rdb, statement_sql[ST_GROUP_TEXT], -1, SQLITE_PREPARE_PERSISTENT,
		&s->rgroup, NULL) != SQLITE_OK) {
		fprintf(stderr, "aletheia: store %s: no second reader (%s): listings take turns\n",
			s->dir, s->rdb ? sqlite3_errmsg(s->rdb) : "out of memory");
		sqlite3_finalize(s->rgroup);
		sqlite3_close(s->rdb);
		s->rgroup = NULL;
		s->rdb = NULL;
	}
	s->rra.fd = s->ra.fd;   /* for hints only; closed with ra's */
}

int al_store_sqlite_new(al_store_backend **out, const char *dir)
{
	sqlite_store *s = NULL;
	int rc;

	*out = NULL;
	if (!dir || !*dir)
		return al_error_set(AL_EINVAL, "missing store directory");
	s = calloc(1, sizeof(*s));
	if (!s)
		return al_error_set(AL_ENOMEM, "out of memory opening store %s", dir);
	s->lock_fd = -1;
	s->ra.fd = s->rra.fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->rlock, NULL);
	if ((rc = make_dirs(dir)))
		goto cleanup;
	/* Absolute, so a daemon that changes directory still finds it. */
	if (!(s->dir = realpath(dir, NULL))) {
		rc = dir_error(errno, dir);
		goto cleanup;
	}
	if (strlen(s->dir) > 4000) {
		rc = al_error_set(AL_ENAMETOOLONG, "store directory %s: path too long", s->dir);
		goto cleanup;
	}
	if ((rc = al__lock_dir(&s->lock_fd, s->dir, "store")) || (rc = open_db(s)))
		goto cleanup;
	{
		char path[4096];
		snprintf(path, sizeof(path), "%s/meta.db", s->dir);
		s->ra.fd = open(path, O_RDONLY | O_CLOEXEC);   /* without it, no hints: reads as before */
	}
	open_reader(s);
	s->base.version = AL_STORE_BACKEND_VERSION;
	s->base.name = "sqlite";
	s->base.get = sqlite_get;
	s->base.list = sqlite_list;
	s->base.list_meta = sqlite_list_meta;
	s->base.list_collections = sqlite_list_collections;
	s->base.commit = sqlite_commit;
	s->base.describe = sqlite_describe;
	s->base.free = sqlite_free;
	s->base.get_text = sqlite_get_text;
	s->base.list_text = sqlite_list_text;
	s->base.list_group_text = sqlite_list_group_text;
	*out = &s->base;
	s = NULL;
cleanup:
	if (s)
		sqlite_free(&s->base);
	return rc;
}
