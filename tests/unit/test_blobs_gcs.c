/* aletheia: the GCS blob store against scripts/gcs-emulator (started here on a free loopback port):
 * put/exists/fetch, create-only puts, resumable uploads above 8 MiB, injected faults, errors. */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include "core/blobs/blobs.h"
#include "aletheia/hash.h"
#include "core/net/http.h"
#include "check.h"
#include "blob_files.h"
#include "server.h"

#define BUCKET "test-bucket"
#define BIG ((size_t)9 << 20)

static pid_t srv_pid;
static char tmp[] = "/tmp/al_test_blobs_gcs_XXXXXX";
static char log_path[PATH_MAX], base[600];
static al_http *admin_http;

/* Starts the emulator (port 0: it picks a free one) and waits for its "listening on" line. */
static int start_emulator(void)
{
	char script[PATH_MAX], hostport[512];

	if (!test_have_node() || test_find_source(script, sizeof(script), "scripts/gcs-emulator"))
		return 77;
	snprintf(log_path, sizeof(log_path), "%s/emulator.log", tmp);
	srv_pid = test_start_server(hostport, sizeof(hostport), log_path,
		"gcs-emulator listening on ", (char *[]){"node", script, "--port", "0", NULL});
	if (srv_pid < 0)
		return -1;
	snprintf(base, sizeof(base), "http://%s", hostport);
	return 0;
}

static void stop_emulator(void)
{
	test_stop_server(&srv_pid);
}

static void cleanup(void)
{
	char cmd[PATH_MAX + 16];
	stop_emulator();
	al_http_free(admin_http);
	admin_http = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp);
}

/* A plain request to the emulator; returns the HTTP status (0 on failure). */
static long emu(const char *method, const char *path, const char *json)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	char url[1024];
	const char *hdrs[] = {"Content-Type: application/json", NULL};
	long status = 0;

	snprintf(url, sizeof(url), "%s%s", base, path);
	if (al_http_request(&resp, admin_http, method, url, hdrs, json, json ? strlen(json) : 0, 0) == 0)
		status = resp.status;
	al_http_response_dispose(&resp);
	return status;
}

static void fault(const char *json)
{
	CHECK_EQ_INT(emu("POST", "/admin/faults", json), 200);
}

/* A counter from GET /admin/stats: "ops.upload_chunk", "faults.reset", "requests"… */
static long counter(const char *dotted)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	char url[1024], key[128], *dot;
	cJSON *j = NULL, *v;
	long out = -1;

	snprintf(url, sizeof(url), "%s/admin/stats", base);
	if (al_http_request(&resp, admin_http, "GET", url, NULL, NULL, 0, 0) != 0 || !resp.body.ptr)
		goto done;
	v = j = cJSON_Parse(resp.body.ptr);
	snprintf(key, sizeof(key), "%s", dotted);
	dot = strchr(key, '.');
	if (dot) {
		*dot = '\0';
		v = cJSON_GetObjectItemCaseSensitive(v, key);
		v = cJSON_GetObjectItemCaseSensitive(v, dot + 1);
	} else {
		v = cJSON_GetObjectItemCaseSensitive(v, key);
	}
	if (cJSON_IsNumber(v))
		out = (long)v->valuedouble;
done:
	cJSON_Delete(j);
	al_http_response_dispose(&resp);
	return out;
}

static void reset_stats(void)
{
	CHECK_EQ_INT(emu("POST", "/admin/stats/reset", NULL), 200);
	CHECK_EQ_INT(emu("DELETE", "/admin/faults", NULL), 200);
}

/* Fetches the whole blob and checks its hash. */
static void check_whole(al_blobs_backend *b, const char *hash, size_t size)
{
	char dst[PATH_MAX], back[AL_HASH_HEX_LEN + 1];
	uint64_t got = 0;
	int fd;

	snprintf(dst, sizeof(dst), "%s/whole", tmp);
	fd = open(dst, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_OK(b->fetch(b, hash, 0, size, fd, 0));
	CHECK_OK(al_hash_fd(back, &got, fd));
	CHECK_EQ_INT(got, size);
	CHECK_EQ_STR(back, hash);
	close(fd);
	unlink(dst);
}

/* The base64 MD5 and CRC32C (Castagnoli, big-endian) of a file, as GCS reports them; the CRC is
 * computed bit by bit here, independently of the library the store uses. */
static void file_sums(char *md5, char *crc, const char *path)
{
	unsigned char digest[EVP_MAX_MD_SIZE], be[4], buf[65536];
	unsigned int dlen = 0;
	uint32_t c = 0xffffffffu;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	ssize_t n;
	int fd = open(path, O_RDONLY);

	CHECK(fd >= 0 && ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL));
	while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0) {
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		for (ssize_t i = 0; i < n; i++) {
			c ^= buf[i];
			for (int k = 0; k < 8; k++)
				c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		}
	}
	c ^= 0xffffffffu;
	EVP_DigestFinal_ex(ctx, digest, &dlen);
	EVP_EncodeBlock((unsigned char *)md5, digest, (int)dlen);
	be[0] = (unsigned char)(c >> 24);
	be[1] = (unsigned char)(c >> 16);
	be[2] = (unsigned char)(c >> 8);
	be[3] = (unsigned char)c;
	EVP_EncodeBlock((unsigned char *)crc, be, 4);
	EVP_MD_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
}

/* The stored object of a blob (under runs/p1/) has the file's MD5 and CRC32C. */
static void check_stored_sums(const char *hash, const char *path)
{
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	char url[1024], md5[64], crc[16];
	cJSON *j = NULL;

	file_sums(md5, crc, path);
	snprintf(url, sizeof(url), "%s/storage/v1/b/" BUCKET "/o/runs%%2Fp1%%2F%.2s%%2F%s", base, hash,
		hash);
	CHECK_OK(al_http_request(&resp, admin_http, "GET", url, NULL, NULL, 0, 0));
	CHECK_EQ_INT(resp.status, 200);
	j = resp.body.ptr ? cJSON_Parse(resp.body.ptr) : NULL;
	CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "md5Hash")), md5);
	CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "crc32c")), crc);
	cJSON_Delete(j);
	al_http_response_dispose(&resp);
}

static void test_open_errors(void)
{
	al_blobs_backend *b = NULL;
	char *u;

	CHECK_EQ_INT(al_blobs_open(&b, "gs://"), AL_EINVAL);
	CHECK(b == NULL);
	CHECK_EQ_INT(al_blobs_open(&b, "gs:///prefix"), AL_EINVAL);
	CHECK_EQ_INT(al_blobs_open(&b, "gs://ab"), AL_EINVAL);
	CHECK_EQ_INT(al_blobs_open(&b, "gs://Upper/p"), AL_EINVAL);
	CHECK(strstr(al_error_last(), "Upper") != NULL);
	setenv("STORAGE_EMULATOR_HOST", "ftp://127.0.0.1:1", 1);
	CHECK_EQ_INT(al_blobs_open(&b, "gs://" BUCKET), AL_EINVAL);
	CHECK(strstr(al_error_last(), "ftp://") != NULL);
	setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1/some/path", 1);
	CHECK_EQ_INT(al_blobs_open(&b, "gs://" BUCKET), AL_EINVAL);
	/* both forms of the variable; nothing is sent on open */
	setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1", 1);
	CHECK_OK(al_blobs_open(&b, "gs://" BUCKET "//p/q//"));
	if (b) {
		u = b->uri(b, "0123456789abcdef0123456789abcdef");
		CHECK_EQ_STR(u, "gs://" BUCKET "/p/q/01/0123456789abcdef0123456789abcdef");
		free(u);
		CHECK_EQ_STR(b->name, "gs");
	}
	al_blobs_free(b);
	b = NULL;
	setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1/", 1);
	CHECK_OK(al_blobs_open(&b, "gs://" BUCKET));
	if (b) {
		u = b->uri(b, "0123456789abcdef0123456789abcdef");
		CHECK_EQ_STR(u, "gs://" BUCKET "/01/0123456789abcdef0123456789abcdef");
		free(u);
	}
	al_blobs_free(b);
	b = NULL;
	/* Google itself needs credentials: a named file that is missing is an error on open */
	unsetenv("STORAGE_EMULATOR_HOST");
	setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/creds.json", 1);
	CHECK_EQ_INT(al_blobs_open(&b, "gs://" BUCKET), AL_ENOTFOUND);
	CHECK(b == NULL);
	CHECK(strstr(al_error_last(), "gs://" BUCKET) && strstr(al_error_last(), "creds.json"));
	unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
}

static void test_small(al_blobs_backend *b)
{
	char src[PATH_MAX], dst[PATH_MAX], hash[AL_HASH_HEX_LEN + 1], want[256], *u, *lp = (char *)"x";
	char missing[] = "ffffffffffffffffffffffffffffffff";
	const size_t size = 100000;
	struct stat st;
	int present = -1, fd;

	reset_stats();
	snprintf(src, sizeof(src), "%s/small", tmp);
	make_file(hash, src, size, 7);

	CHECK_OK(b->exists(&present, b, hash));
	CHECK_EQ_INT(present, 0);
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_OK(b->exists(&present, b, hash));
	CHECK_EQ_INT(present, 1);
	CHECK_EQ_INT(counter("ops.upload_multipart"), 1);
	check_stored_sums(hash, src);
	/* twice: no error, still one object written once */
	CHECK_OK(b->put(b, hash, src, size, AL_BLOBS_PUT_MOVE));
	CHECK(access(src, R_OK) == 0); /* a remote store never consumes the source */
	CHECK_EQ_INT(counter("objects_written"), 1);
	CHECK_EQ_INT(counter("ops.upload_multipart"), 1);

	u = b->uri(b, hash);
	snprintf(want, sizeof(want), "gs://" BUCKET "/runs/p1/%.2s/%s", hash, hash);
	CHECK_EQ_STR(u, want);
	free(u);
	CHECK_EQ_INT(b->local_path(&lp, b, hash), AL_ENOTFOUND);
	CHECK(lp == NULL);
	/* the object name as GCS sees it */
	snprintf(want, sizeof(want), "/storage/v1/b/" BUCKET "/o/runs%%2Fp1%%2F%.2s%%2F%s", hash, hash);
	CHECK_EQ_INT(emu("GET", want, NULL), 200);

	fd = open(src, O_RDONLY);
	CHECK(fd >= 0);
	check_range(b, hash, fd, 0, size, 0, tmp);
	check_range(b, hash, fd, 0, 1, 0, tmp);
	check_range(b, hash, fd, 5, 1, 0, tmp);
	check_range(b, hash, fd, 1000, 4000, 7, tmp);
	check_range(b, hash, fd, size - 10, 10, 12345, tmp);
	close(fd);

	/* a range past the end, and one running over it (fewer bytes than asked, not retried) */
	snprintf(dst, sizeof(dst), "%s/dst", tmp);
	fd = open(dst, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK_EQ_INT(b->fetch(b, hash, size + 10, 5, fd, 0), AL_EINVAL);
	long before = counter("ops.object_media");
	CHECK_EQ_INT(b->fetch(b, hash, size - 10, 20, fd, 0), AL_EIO);
	CHECK(strstr(al_error_last(), "10 bytes received") != NULL);
	CHECK_EQ_INT(counter("ops.object_media"), before + 1);
	CHECK_OK(b->fetch(b, hash, 0, 0, fd, 0));
	CHECK(fstat(fd, &st) == 0);

	/* missing blobs */
	CHECK_OK(b->exists(&present, b, missing));
	CHECK_EQ_INT(present, 0);
	{
		/* stat (for fsck): the stored size, or AL_ENOTFOUND */
		uint64_t sz = 1;
		CHECK_EQ_INT(b->stat(&sz, b, missing), AL_ENOTFOUND);
		CHECK_OK(b->stat(&sz, b, hash));
		CHECK_EQ_INT(sz, size);
		CHECK(b->verify == NULL);    /* no local files: the cache verifies what it streams */
	}
	CHECK_EQ_INT(b->fetch(b, missing, 0, 10, fd, 0), AL_ENOTFOUND);
	CHECK(strstr(al_error_last(), BUCKET) && strstr(al_error_last(), missing) &&
		strstr(al_error_last(), "404") && strstr(al_error_last(), "No such object"));
	close(fd);

	/* bad input */
	CHECK_EQ_INT(b->exists(&present, b, "not-a-hash"), AL_EINVAL);
	CHECK_EQ_INT(b->fetch(b, "ABC", 0, 1, 0, 0), AL_EINVAL);
	CHECK_EQ_INT(b->put(b, "ABC", src, size, 0), AL_EINVAL);
	CHECK_EQ_INT(b->put(b, missing, src, size + 1, 0), AL_EINVAL);
	CHECK_EQ_INT(b->put(b, missing, "/nonexistent/file", 1, 0), AL_EIO);
	CHECK_OK(b->exists(&present, b, missing));
	CHECK_EQ_INT(present, 0);
	unlink(src);
}

static void test_resumable(al_blobs_backend *b)
{
	char src[PATH_MAX], hash[AL_HASH_HEX_LEN + 1];
	const size_t size = BIG + 12345;
	int present = 0, fd;

	reset_stats();
	snprintf(src, sizeof(src), "%s/big", tmp);
	make_file(hash, src, size, 99);
	CHECK_OK(b->put(b, hash, src, size, 0));
	/* one session, 8 MiB chunks: one whole and a 1 MiB tail */
	CHECK_EQ_INT(counter("ops.upload_resumable_start"), 1);
	CHECK_EQ_INT(counter("ops.upload_chunk"), 2);
	CHECK_EQ_INT(counter("ops.upload_multipart"), 0);
	CHECK_EQ_INT(counter("bytes_uploaded"), (long)size);
	check_stored_sums(hash, src);
	CHECK_OK(b->exists(&present, b, hash));
	CHECK_EQ_INT(present, 1);
	check_whole(b, hash, size);
	fd = open(src, O_RDONLY);
	check_range(b, hash, fd, ((uint64_t)8 << 20) - 5, 10, 0, tmp);
	close(fd);
	/* again: found, nothing sent */
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_EQ_INT(counter("ops.upload_resumable_start"), 1);
	unlink(src);
}

static char racer_path[512];
static long racer_status;
static const char *racer_body;
static size_t racer_len;

/* Another writer: creates the object (racer_body) while our upload's last chunk is held up. */
static void *racer(void *arg)
{
	al_http *h = NULL;
	al_http_response resp = AL_HTTP_RESPONSE_INIT;
	char url[1200];

	(void)arg;
	usleep(700000);
	snprintf(url, sizeof(url), "%s%s", base, racer_path);
	if (al_http_new(&h, NULL) == 0 &&
		al_http_request(&resp, h, "POST", url, NULL, racer_body, racer_len, 0) == 0)
		racer_status = resp.status;
	al_http_response_dispose(&resp);
	al_http_free(h);
	return NULL;
}

/* A lost chunk answer and a reset chunk: the session is asked where it stands, and nothing
 * already stored is sent again. */
static void test_resume(al_blobs_backend *b)
{
	char src[PATH_MAX], hash[AL_HASH_HEX_LEN + 1];
	const size_t size = BIG + 777;

	reset_stats();
	snprintf(src, sizeof(src), "%s/big2", tmp);
	make_file(hash, src, size, 4242);
	/* PUTs: chunk 1 is stored but its answer lost; status query; chunk 2 is reset before it is
	 * read; status query; chunk 2 gets 503 twice (skip counts the PUTs that reach that stage) */
	fault("{\"mode\":\"reset\",\"count\":1,\"method\":\"PUT\",\"after\":true}");
	fault("{\"mode\":\"reset\",\"count\":1,\"method\":\"PUT\",\"skip\":1}");
	fault("{\"mode\":\"status\",\"code\":503,\"count\":2,\"method\":\"PUT\",\"skip\":2}");
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_EQ_INT(counter("faults.reset"), 2);
	CHECK_EQ_INT(counter("faults.status"), 2);
	CHECK_EQ_INT(counter("ops.upload_resumable_start"), 1);
	CHECK_EQ_INT(counter("ops.upload_status"), 2);
	CHECK_EQ_INT(counter("ops.upload_chunk"), 2);
	CHECK_EQ_INT(counter("bytes_uploaded"), (long)size); /* no byte stored twice */
	CHECK_EQ_INT(counter("objects_written"), 1);
	check_whole(b, hash, size);

	/* the same blob uploaded by another writer while our last chunk is held up: the final 412
	 * and the object's checksums say it is there, and the other writer's object stays */
	reset_stats();
	make_file(hash, src, size, 4343);
	char *same = malloc(size);
	int sfd = open(src, O_RDONLY);
	CHECK(same && sfd >= 0 && pread(sfd, same, size, 0) == (ssize_t)size);
	close(sfd);
	racer_body = same;
	racer_len = size;
	fault("{\"mode\":\"delay\",\"ms\":1500,\"count\":1,\"method\":\"PUT\",\"skip\":1}");
	snprintf(racer_path, sizeof(racer_path),
		"/upload/storage/v1/b/" BUCKET "/o?uploadType=media&ifGenerationMatch=0&name=runs%%2Fp1%%2F%.2s%%2F%s",
		hash, hash);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, racer, NULL) == 0);
	CHECK_OK(b->put(b, hash, src, size, 0));
	pthread_join(t, NULL);
	CHECK_EQ_INT(racer_status, 200);
	CHECK_EQ_INT(counter("objects_written"), 1);
	CHECK_EQ_INT(counter("ops.upload_resumable_start"), 1); /* ours did start */
	CHECK_EQ_INT(counter("ops.upload_chunk"), 2);
	check_whole(b, hash, size);
	free(same);

	/* other bytes under the blob's name, written meanwhile: not the blob, so that generation is
	 * replaced (a second session) and reads give the blob */
	reset_stats();
	racer_status = 0;
	make_file(hash, src, size, 4344);
	racer_body = "competitor";
	racer_len = 10;
	fault("{\"mode\":\"delay\",\"ms\":1500,\"count\":1,\"method\":\"PUT\",\"skip\":1}");
	snprintf(racer_path, sizeof(racer_path),
		"/upload/storage/v1/b/" BUCKET "/o?uploadType=media&ifGenerationMatch=0&name=runs%%2Fp1%%2F%.2s%%2F%s",
		hash, hash);
	CHECK(pthread_create(&t, NULL, racer, NULL) == 0);
	CHECK_OK(b->put(b, hash, src, size, 0));
	pthread_join(t, NULL);
	CHECK_EQ_INT(racer_status, 200);
	CHECK_EQ_INT(counter("objects_written"), 2);
	CHECK_EQ_INT(counter("ops.upload_resumable_start"), 2);
	check_whole(b, hash, size);
	check_stored_sums(hash, src);
	unlink(src);
}

static void test_faults(al_blobs_backend *b)
{
	char src[PATH_MAX], dst[PATH_MAX], hash[AL_HASH_HEX_LEN + 1], *a = NULL, *c = NULL;
	const size_t size = 300000;
	int fd, sfd;

	snprintf(src, sizeof(src), "%s/f", tmp);
	snprintf(dst, sizeof(dst), "%s/fdst", tmp);
	make_file(hash, src, size, 31);

	/* uploads: 503 twice, then a reset, then a lost answer (the retry meets 412) */
	reset_stats();
	fault("{\"mode\":\"status\",\"code\":503,\"count\":2,\"method\":\"POST\"}");
	fault("{\"mode\":\"reset\",\"count\":1,\"method\":\"POST\"}");
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_EQ_INT(counter("faults.status"), 2);
	CHECK_EQ_INT(counter("faults.reset"), 1);
	CHECK_EQ_INT(counter("objects_written"), 1);
	make_file(hash, src, size, 32);
	fault("{\"mode\":\"reset\",\"count\":1,\"method\":\"POST\",\"after\":true}");
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_EQ_INT(counter("objects_written"), 2);
	check_whole(b, hash, size);

	sfd = open(src, O_RDONLY);
	CHECK(sfd >= 0);
	/* reads: 503 twice, a reset, a delay, a truncated body: all recovered */
	reset_stats();
	fault("{\"mode\":\"status\",\"code\":503,\"count\":2}");
	check_range(b, hash, sfd, 100, 200000, 0, tmp);
	CHECK_EQ_INT(counter("faults.status"), 2);
	fault("{\"mode\":\"reset\",\"count\":1}");
	check_range(b, hash, sfd, 0, size, 3, tmp);
	CHECK_EQ_INT(counter("faults.reset"), 1);
	fault("{\"mode\":\"delay\",\"ms\":200,\"count\":1}");
	check_range(b, hash, sfd, 1, 2, 0, tmp);
	CHECK_EQ_INT(counter("faults.delay"), 1);
	fault("{\"mode\":\"truncate\",\"count\":1}");
	check_range(b, hash, sfd, 10, size - 10, 0, tmp);
	CHECK_EQ_INT(counter("faults.truncate"), 1);
	CHECK_EQ_INT(counter("ops.object_media"), 4 + 1);

	/* a body cut short with no framing at all (no Content-Length, the connection closes): curl
	 * sees a complete answer, Content-Range shows the missing bytes, the GET is made again */
	fault("{\"mode\":\"truncate\",\"count\":1,\"unframed\":true}");
	check_range(b, hash, sfd, 1000, 100000, 0, tmp);
	CHECK_EQ_INT(counter("faults.truncate"), 2);
	CHECK_EQ_INT(counter("ops.object_media"), 5 + 2);
	fault("{\"mode\":\"truncate\",\"count\":100,\"unframed\":true}");
	fd = open(dst, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ_INT(b->fetch(b, hash, 0, size, fd, 0), AL_EIO);
	CHECK(strstr(al_error_last(), "bytes received") != NULL);
	close(fd);
	CHECK_EQ_INT(emu("DELETE", "/admin/faults", NULL), 200);

	/* a body truncated on every try is an error, never a short success */
	fault("{\"mode\":\"truncate\",\"count\":100}");
	fd = open(dst, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ_INT(b->fetch(b, hash, 0, size, fd, 0), AL_EIO);
	CHECK(strstr(al_error_last(), "GET") != NULL);
	CHECK(counter("faults.truncate") >= 3);
	CHECK_EQ_INT(emu("DELETE", "/admin/faults", NULL), 200);

	/* a corrupt body arrives whole: finding it is the cache's hash check */
	fault("{\"mode\":\"corrupt\",\"count\":1}");
	CHECK(ftruncate(fd, 0) == 0);
	CHECK_OK(b->fetch(b, hash, 0, size, fd, 0));
	a = malloc(size);
	c = malloc(size);
	CHECK(a && c);
	CHECK(pread(fd, a, size, 0) == (ssize_t)size);
	CHECK(pread(sfd, c, size, 0) == (ssize_t)size);
	CHECK(memcmp(a, c, size) != 0);
	CHECK_EQ_INT(counter("faults.corrupt"), 1);
	free(a);
	free(c);
	close(fd);
	close(sfd);

	/* a 403 is not retried and says so */
	reset_stats();
	fault("{\"mode\":\"status\",\"code\":403,\"count\":1}");
	int present = -1;
	CHECK_EQ_INT(b->exists(&present, b, hash), AL_EACCES);
	CHECK(strstr(al_error_last(), "403") != NULL);
	CHECK_EQ_INT(counter("requests"), 1);
	unlink(src);
	unlink(dst);
}

/* Uploads carry the content's MD5 and CRC32C: a body damaged on the way is refused by the server
 * and sent again; a server that stores other bytes than were sent is caught by the checksums in
 * its answer, and the damaged object is replaced; a put never succeeds on a damaged object. */
static void test_checksums(al_blobs_backend *b)
{
	char src[PATH_MAX], hash[AL_HASH_HEX_LEN + 1];
	const size_t size = 200000;
	int present = -1;

	snprintf(src, sizeof(src), "%s/sums", tmp);
	/* damaged on the way once: refused (400), sent again, stored intact */
	reset_stats();
	make_file(hash, src, size, 501);
	fault("{\"mode\":\"corrupt\",\"upload\":\"transit\",\"count\":1}");
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_EQ_INT(counter("faults.corrupt"), 1);
	CHECK_EQ_INT(counter("objects_written"), 1);
	CHECK_EQ_INT(counter("ops.upload_multipart"), 2);
	check_whole(b, hash, size);
	check_stored_sums(hash, src);

	/* damaged on every try: EIO with the server's reason, nothing stored */
	reset_stats();
	make_file(hash, src, size, 502);
	fault("{\"mode\":\"corrupt\",\"upload\":\"transit\",\"count\":100}");
	CHECK_EQ_INT(b->put(b, hash, src, size, 0), AL_EIO);
	CHECK(strstr(al_error_last(), "400") && strstr(al_error_last(), "match"));
	CHECK_EQ_INT(counter("objects_written"), 0);
	CHECK_EQ_INT(emu("DELETE", "/admin/faults", NULL), 200);
	CHECK_OK(b->exists(&present, b, hash));
	CHECK_EQ_INT(present, 0);

	/* a server that ignores the checksums and stores damaged bytes: its answer shows other
	 * checksums, and the damaged generation is replaced */
	reset_stats();
	make_file(hash, src, size, 503);
	fault("{\"mode\":\"corrupt\",\"upload\":\"stored\",\"count\":1}");
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_EQ_INT(counter("faults.corrupt"), 1);
	CHECK_EQ_INT(counter("objects_written"), 2);
	check_whole(b, hash, size);
	check_stored_sums(hash, src);

	/* stored damaged on every try: EIO; the damaged object stays, and the next put replaces it
	 * instead of taking it for the blob */
	reset_stats();
	make_file(hash, src, size, 504);
	fault("{\"mode\":\"corrupt\",\"upload\":\"stored\",\"count\":100}");
	CHECK_EQ_INT(b->put(b, hash, src, size, 0), AL_EIO);
	CHECK(strstr(al_error_last(), "crc32c") != NULL);
	CHECK_EQ_INT(emu("DELETE", "/admin/faults", NULL), 200);
	CHECK_OK(b->exists(&present, b, hash));
	CHECK_EQ_INT(present, 1);
	long written = counter("objects_written");
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_EQ_INT(counter("objects_written"), written + 1);
	check_whole(b, hash, size);
	check_stored_sums(hash, src);
	/* intact now: a put of the same content sends nothing */
	CHECK_OK(b->put(b, hash, src, size, 0));
	CHECK_EQ_INT(counter("objects_written"), written + 1);

	/* resumable: a chunk damaged on the way makes the session's end fail; a new session sends
	 * the whole blob again */
	reset_stats();
	make_file(hash, src, BIG + 4321, 505);
	fault("{\"mode\":\"corrupt\",\"upload\":\"transit\",\"count\":1,\"method\":\"PUT\"}");
	CHECK_OK(b->put(b, hash, src, BIG + 4321, 0));
	CHECK_EQ_INT(counter("faults.corrupt"), 1);
	CHECK_EQ_INT(counter("ops.upload_resumable_start"), 2);
	CHECK_EQ_INT(counter("objects_written"), 1);
	check_whole(b, hash, BIG + 4321);
	check_stored_sums(hash, src);

	/* resumable, stored damaged: caught by the answer, replaced by a second session */
	reset_stats();
	make_file(hash, src, BIG + 99, 506);
	fault("{\"mode\":\"corrupt\",\"upload\":\"stored\",\"count\":1}");
	CHECK_OK(b->put(b, hash, src, BIG + 99, 0));
	CHECK_EQ_INT(counter("ops.upload_resumable_start"), 2);
	CHECK_EQ_INT(counter("objects_written"), 2);
	check_whole(b, hash, BIG + 99);
	check_stored_sums(hash, src);
	unlink(src);
}

static void test_stopped(al_blobs_backend *b)
{
	struct timespec t0, t1;
	int present = -1;

	stop_emulator();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_EQ_INT(b->exists(&present, b, "0123456789abcdef0123456789abcdef"), AL_EIO);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(t1.tv_sec - t0.tv_sec < 30);
	CHECK(strstr(al_error_last(), "127.0.0.1") != NULL);
}

int main(void)
{
	al_blobs_backend *b = NULL, *b2 = NULL;
	int rc, present = -1;

	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(cleanup);
	unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
	test_open_errors();

	rc = start_emulator();
	if (rc == 77) {
		fprintf(stderr, "node or scripts/gcs-emulator missing: skipped\n");
		return 77;
	}
	CHECK_EQ_INT(rc, 0);
	if (rc)
		CHECK_DONE();
	CHECK_OK(al_http_new(&admin_http, NULL));
	CHECK_EQ_INT(emu("POST", "/storage/v1/b?project=test", "{\"name\":\"" BUCKET "\"}"), 200);

	setenv("STORAGE_EMULATOR_HOST", base, 1);
	CHECK_OK(al_blobs_open(&b, "gs://" BUCKET "/runs/p1/"));
	/* without the scheme too */
	setenv("STORAGE_EMULATOR_HOST", base + strlen("http://"), 1);
	CHECK_OK(al_blobs_open(&b2, "gs://" BUCKET));
	if (!b || !b2)
		CHECK_DONE();
	CHECK_OK(b2->exists(&present, b2, "0123456789abcdef0123456789abcdef"));
	CHECK_EQ_INT(present, 0);
	al_blobs_free(b2);
	/* a bucket that does not exist: uploads fail with its 404 */
	CHECK_OK(al_blobs_open(&b2, "gs://no-such-bucket"));
	if (b2) {
		char src[PATH_MAX], hash[AL_HASH_HEX_LEN + 1];
		snprintf(src, sizeof(src), "%s/nb", tmp);
		make_file(hash, src, 10, 1);
		CHECK_EQ_INT(b2->put(b2, hash, src, 10, 0), AL_ENOTFOUND);
		CHECK(strstr(al_error_last(), "bucket does not exist") != NULL);
		unlink(src);
	}
	al_blobs_free(b2);

	test_small(b);
	test_resumable(b);
	test_resume(b);
	test_faults(b);
	test_checksums(b);
	test_stopped(b);
	al_blobs_free(b);
	CHECK_DONE();
}
