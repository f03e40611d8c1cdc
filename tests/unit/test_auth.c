/* aletheia: tests of the Google credentials module against auth_server.py, a local token endpoint
 * and metadata server that verifies the RS256 JWT with the public key this test generates. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cjson/cJSON.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include "core/net/auth.h"
#include "check.h"
#include "server.h"

#define SCOPE "https://www.googleapis.com/auth/datastore https://www.googleapis.com/auth/devstorage.read_write"
#define EMAIL "tracker@aletheia-test.iam.gserviceaccount.com"
#define KID "0123456789abcdef0123456789abcdef01234567"
#define CLIENT_SECRET "d-FL95Q19q7MQmFpd7hHD0Ty"
#define REFRESH_TOKEN "1//0refresh-SECRET-token+/="

/* snprintf into an array, failing the test on truncation. */
#define FMT(buf, ...) CHECK(snprintf(buf, sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))

static char root[PATH_MAX], srv[PATH_MAX], home[PATH_MAX];
static char token_uri[128], closed_host[64], server_host[64];
static pid_t server_pid = -1;

static void path_in(char *out, const char *dir, const char *name)
{
	CHECK(snprintf(out, PATH_MAX, "%s/%s", dir, name) < PATH_MAX);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
}

static void write_json(const char *path, cJSON *obj)
{
	char *text = cJSON_Print(obj);
	write_text(path, text);
	free(text);
	cJSON_Delete(obj);
}

/* A fresh 2048-bit RSA key: its PKCS#8 PEM and, for the server, its modulus in hex. */
static EVP_PKEY *new_key(char **pem, char **n_hex)
{
	EVP_PKEY *key = EVP_RSA_gen(2048);
	BIO *bio = BIO_new(BIO_s_mem());
	BIGNUM *n = NULL;
	char *data;
	long len;

	CHECK(key != NULL && bio != NULL);
	CHECK(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1);
	len = BIO_get_mem_data(bio, &data);
	*pem = strndup(data, (size_t)len);
	CHECK(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) == 1);
	*n_hex = BN_bn2hex(n);
	BN_free(n);
	BIO_free(bio);
	return key;
}

static void write_config(const char *n_hex, int expires_in, int as_string)
{
	char path[PATH_MAX];
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "n", n_hex);
	cJSON_AddNumberToObject(c, "e", 65537);
	cJSON_AddStringToObject(c, "kid", KID);
	cJSON_AddStringToObject(c, "iss", EMAIL);
	cJSON_AddStringToObject(c, "scope", SCOPE);
	cJSON_AddStringToObject(c, "client_id", "1234.apps.googleusercontent.com");
	cJSON_AddStringToObject(c, "client_secret", CLIENT_SECRET);
	cJSON_AddStringToObject(c, "refresh_token", REFRESH_TOKEN);
	cJSON_AddStringToObject(c, "quota_project", "quota-proj");
	cJSON_AddNumberToObject(c, "expires_in", expires_in);
	cJSON_AddBoolToObject(c, "expires_as_string", as_string);
	path_in(path, srv, "config.json.tmp");
	write_json(path, c);
	{
		char final[PATH_MAX];
		path_in(final, srv, "config.json");
		CHECK(rename(path, final) == 0);
	}
}

static void write_service_account(const char *path, const char *pem, const char *uri)
{
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "type", "service_account");
	cJSON_AddStringToObject(c, "project_id", "aletheia-test");
	cJSON_AddStringToObject(c, "private_key_id", KID);
	cJSON_AddStringToObject(c, "private_key", pem);
	cJSON_AddStringToObject(c, "client_email", EMAIL);
	cJSON_AddStringToObject(c, "client_id", "1234567890");
	cJSON_AddStringToObject(c, "token_uri", uri);
	write_json(path, c);
}

static void write_authorized_user(const char *path, const char *refresh_token, int quota)
{
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "type", "authorized_user");
	cJSON_AddStringToObject(c, "client_id", "1234.apps.googleusercontent.com");
	cJSON_AddStringToObject(c, "client_secret", CLIENT_SECRET);
	cJSON_AddStringToObject(c, "refresh_token", refresh_token);
	cJSON_AddStringToObject(c, "token_uri", token_uri);
	if (quota)
		cJSON_AddStringToObject(c, "quota_project_id", "quota-proj");
	write_json(path, c);
}

/* Requests the server logged: how many of a grant kind (NULL: all), and how many refused. */
static int log_count(const char *grant, int refused_only, char *last_reason, size_t size)
{
	char path[PATH_MAX], line[4096];
	int count = 0;
	FILE *f;

	path_in(path, srv, "requests.log");
	if (!(f = fopen(path, "r")))
		return 0;
	while (fgets(line, sizeof(line), f)) {
		cJSON *r = cJSON_Parse(line);
		const cJSON *g = cJSON_GetObjectItem(r, "grant"), *ok = cJSON_GetObjectItem(r, "ok");
		const cJSON *reason = cJSON_GetObjectItem(r, "reason");
		if (r && (!grant || (cJSON_IsString(g) && strcmp(g->valuestring, grant) == 0)) &&
		    (!refused_only || cJSON_IsFalse(ok))) {
			count++;
			if (last_reason && cJSON_IsString(reason))
				snprintf(last_reason, size, "%s", reason->valuestring);
		}
		cJSON_Delete(r);
	}
	fclose(f);
	return count;
}

static int requests(const char *grant)
{
	return log_count(grant, 0, NULL, 0);
}

static int refused(void)
{
	return log_count(NULL, 1, NULL, 0);
}

/* A loopback port nobody listens on: connections are refused at once. */
static int closed_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;
	CHECK(fd >= 0);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* auth_server.py ($AL_AUTH_SERVER overrides) on a free port it writes to srv/port. */
static int start_server(void)
{
	char port_path[PATH_MAX];
	int port;

	path_in(port_path, srv, "port");
	port = test_start_python_server(&server_pid, "auth_server.py", "AL_AUTH_SERVER", port_path,
		(char *[]){srv, NULL});
	CHECK(port > 0);
	return port;
}

static void stop_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = -1;
	}
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* al_auth_new must fail with code and a one-line message starting with prefix that leaks none
 * of the secrets. */
static void expect_new_error(int code, const char *prefix)
{
	al_auth *a = NULL;
	int rc = al_auth_new(&a, SCOPE);
	const char *msg = al_error_last();
	CHECK_EQ_INT(rc, code);
	CHECK(a == NULL);
	if (strncmp(msg, prefix, strlen(prefix)) != 0)
		fprintf(stderr, "message \"%s\" does not start with \"%s\"\n", msg, prefix);
	CHECK(strncmp(msg, prefix, strlen(prefix)) == 0);
	CHECK(strchr(msg, '\n') == NULL);
	CHECK(strstr(msg, "PRIVATE KEY") == NULL && strstr(msg, "SECRET") == NULL &&
		strstr(msg, CLIENT_SECRET) == NULL);
	al_auth_free(a);
}

/* A fresh al_auth: kind, and the token it gets. */
static al_auth *expect_kind(const char *kind)
{
	al_auth *a = NULL;
	CHECK_OK(al_auth_new(&a, SCOPE));
	if (a)
		CHECK_EQ_STR(al_auth_kind(a), kind);
	return a;
}

static void expect_token(al_auth *a, const char *want)
{
	char *tok = NULL;
	if (!a)
		return;
	CHECK_OK(al_auth_token(&tok, a));
	CHECK_EQ_STR(tok, want);
	free(tok);
}

typedef struct {
	al_auth *a;
	int mismatches;
} thread_arg;

static void *hammer(void *p)
{
	thread_arg *t = p;
	for (int i = 0; i < 50; i++) {
		char *tok = NULL;
		if (al_auth_token(&tok, t->a) != 0 || !tok || strcmp(tok, "tok-8") != 0)
			t->mismatches++;
		free(tok);
	}
	return NULL;
}

int main(void)
{
	char sa[PATH_MAX], sa_wrong[PATH_MAX], au[PATH_MAX], au_bad[PATH_MAX], path[PATH_MAX];
	char reason[512] = "", msg[1024], *pem = NULL, *n_hex = NULL, *pem2 = NULL, *n2 = NULL;
	EVP_PKEY *key, *key2;
	al_auth *a;
	char *tok = NULL;
	struct timespec t0;
	int port;

	alarm(120);   /* a hung request fails the test instead of stalling the suite */
	snprintf(root, sizeof(root), "/tmp/al-auth-XXXXXX");
	CHECK(mkdtemp(root) != NULL);
	path_in(srv, root, "srv");
	path_in(home, root, "home");
	CHECK(mkdir(srv, 0700) == 0 && mkdir(home, 0700) == 0);

	key = new_key(&pem, &n_hex);
	key2 = new_key(&pem2, &n2);
	write_config(n_hex, 3600, 0);
	port = start_server();
	CHECK(port > 0);
	if (port <= 0) {
		stop_server();
		CHECK_DONE();
	}
	snprintf(token_uri, sizeof(token_uri), "http://127.0.0.1:%d/token", port);
	snprintf(server_host, sizeof(server_host), "127.0.0.1:%d", port);
	snprintf(closed_host, sizeof(closed_host), "127.0.0.1:%d", closed_port());

	/* Nothing of the caller's environment may leak in. */
	setenv("HOME", home, 1);
	setenv("GCE_METADATA_HOST", closed_host, 1);
	unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
	unsetenv("CLOUDSDK_CONFIG");
	unsetenv("NO_GCE_CHECK");
	const char *proxies[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
		"all_proxy", "ALL_PROXY"};
	for (size_t i = 0; i < sizeof(proxies) / sizeof(*proxies); i++)
		unsetenv(proxies[i]);

	/* No credentials at all: one clear line, quickly. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	expect_new_error(AL_ENOTFOUND, "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS "
		"to a service-account key file, or run `gcloud auth application-default login`");
	CHECK(strstr(al_error_last(), closed_host) != NULL);
	CHECK(seconds_since(&t0) < 3.0);
	CHECK(requests(NULL) == 0);

	/* GOOGLE_APPLICATION_CREDENTIALS that does not work is an error, not a fall-through. */
	path_in(path, root, "missing.json");
	setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
	FMT(msg, "cannot read GOOGLE_APPLICATION_CREDENTIALS=%s: No such file", path);
	expect_new_error(AL_ENOTFOUND, msg);

	path_in(path, root, "adir.json");      /* unreadable even for root */
	CHECK(mkdir(path, 0700) == 0);
	setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
	FMT(msg, "cannot read GOOGLE_APPLICATION_CREDENTIALS=%s: Is a directory",
		path);
	expect_new_error(AL_EACCES, msg);
	if (geteuid() != 0) {
		path_in(path, root, "noperm.json");
		write_authorized_user(path, REFRESH_TOKEN, 0);
		CHECK(chmod(path, 0) == 0);
		setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
		FMT(msg, "cannot read GOOGLE_APPLICATION_CREDENTIALS=%s: "
			"Permission denied", path);
		expect_new_error(AL_EACCES, msg);
	}

	path_in(path, root, "bad.json");
	setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
	FMT(msg, "GOOGLE_APPLICATION_CREDENTIALS=%s: not a JSON credentials file",
		path);
	write_text(path, "{\"type\": \"authorized_user\", \"refresh_token\": \"SECRET\",");
	expect_new_error(AL_EINVAL, msg);
	write_text(path, "[\"SECRET\"]");
	expect_new_error(AL_EINVAL, msg);
	write_text(path, "");
	expect_new_error(AL_EINVAL, msg);
	FMT(msg, "GOOGLE_APPLICATION_CREDENTIALS=%s: service_account credentials "
		"lack \"client_email\"", path);
	write_text(path, "{\"type\": \"service_account\", \"private_key\": \"SECRET\"}");
	expect_new_error(AL_EINVAL, msg);
	FMT(msg, "GOOGLE_APPLICATION_CREDENTIALS=%s: private_key is not a PEM "
		"private key", path);
	write_text(path, "{\"type\": \"service_account\", \"client_email\": \"x@y\", "
		"\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nSECRETSECRET\\n-----END PRIVATE KEY-----\\n\"}");
	expect_new_error(AL_EINVAL, msg);
	FMT(msg, "GOOGLE_APPLICATION_CREDENTIALS=%s: authorized_user credentials "
		"lack \"refresh_token\"", path);
	write_text(path, "{\"type\": \"authorized_user\", \"client_id\": \"a\", \"client_secret\": "
		"\"SECRET\"}");
	expect_new_error(AL_EINVAL, msg);
	FMT(msg, "GOOGLE_APPLICATION_CREDENTIALS=%s: credentials of type "
		"\"external_account\" are not supported", path);
	write_text(path, "{\"type\": \"external_account\"}");
	expect_new_error(AL_EINVAL, msg);
	CHECK(requests(NULL) == 0);

	/* Service account: a verified JWT, then the cached token without a request. */
	path_in(sa, root, "sa.json");
	write_service_account(sa, pem, token_uri);
	setenv("GOOGLE_APPLICATION_CREDENTIALS", sa, 1);
	a = expect_kind("service_account");
	CHECK(a && al_auth_quota_project(a) == NULL);
	expect_token(a, "tok-1");
	CHECK_EQ_INT(requests("jwt"), 1);
	expect_token(a, "tok-1");
	expect_token(a, "tok-1");
	CHECK_EQ_INT(requests("jwt"), 1);
	CHECK_EQ_INT(refused(), 0);
	al_auth_free(a);

	/* A token with under 5 minutes left is fetched again (expires_in as number, then string). */
	write_config(n_hex, 10, 0);
	a = expect_kind("service_account");
	expect_token(a, "tok-2");
	expect_token(a, "tok-3");
	CHECK_EQ_INT(requests("jwt"), 3);
	write_config(n_hex, 10, 1);
	expect_token(a, "tok-4");
	write_config(n_hex, 3600, 1);
	expect_token(a, "tok-5");
	expect_token(a, "tok-5");        /* "3600" as a string is honoured too */
	CHECK_EQ_INT(requests("jwt"), 5);
	CHECK_EQ_INT(refused(), 0);
	al_auth_free(a);

	/* A key the server does not know: the signature check refuses it, with no JWT in the
	 * message. */
	path_in(sa_wrong, root, "sa-wrong.json");
	write_service_account(sa_wrong, pem2, token_uri);
	setenv("GOOGLE_APPLICATION_CREDENTIALS", sa_wrong, 1);
	a = expect_kind("service_account");
	if (a) {
		CHECK_EQ_INT(al_auth_token(&tok, a), AL_EACCES);
		CHECK(tok == NULL);
		CHECK(strstr(al_error_last(), "HTTP 400: invalid_grant: bad signature") != NULL);
		CHECK(strstr(al_error_last(), "eyJ") == NULL);
		CHECK(strstr(al_error_last(), token_uri) != NULL);
	}
	al_auth_free(a);
	CHECK_EQ_INT(log_count(NULL, 1, reason, sizeof(reason)), 1);
	CHECK_EQ_STR(reason, "bad signature");

	/* A token endpoint nobody answers: AL_EIO, promptly. */
	path_in(path, root, "sa-closed.json");
	FMT(msg, "http://%s/token", closed_host);
	write_service_account(path, pem, msg);
	setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
	a = expect_kind("service_account");
	if (a) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		CHECK_EQ_INT(al_auth_token(&tok, a), AL_EIO);
		CHECK(strstr(al_error_last(), closed_host) != NULL);
		CHECK(seconds_since(&t0) < 5.0);
	}
	al_auth_free(a);

	/* authorized_user: the refresh grant, with the quota project header. */
	path_in(au, root, "au.json");
	write_authorized_user(au, REFRESH_TOKEN, 1);
	setenv("GOOGLE_APPLICATION_CREDENTIALS", au, 1);
	a = expect_kind("authorized_user");
	if (a)
		CHECK_EQ_STR(al_auth_quota_project(a), "quota-proj");
	expect_token(a, "tok-6");
	expect_token(a, "tok-6");
	CHECK_EQ_INT(requests("refresh"), 1);
	al_auth_free(a);
	path_in(au_bad, root, "au-bad.json");
	write_authorized_user(au_bad, "1//0revoked", 1);
	setenv("GOOGLE_APPLICATION_CREDENTIALS", au_bad, 1);
	a = expect_kind("authorized_user");
	if (a) {
		CHECK_EQ_INT(al_auth_token(&tok, a), AL_EACCES);
		CHECK(strstr(al_error_last(), "1//0revoked") == NULL);
		CHECK(strstr(al_error_last(), CLIENT_SECRET) == NULL);
	}
	al_auth_free(a);
	CHECK_EQ_INT(refused(), 2);

	/* Metadata server (found by the probe), only with Metadata-Flavor: Google. */
	unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
	setenv("GCE_METADATA_HOST", server_host, 1);
	a = expect_kind("metadata");
	CHECK_EQ_INT(requests("probe"), 1);
	expect_token(a, "tok-7");
	expect_token(a, "tok-7");
	CHECK_EQ_INT(requests("metadata"), 1);
	CHECK_EQ_INT(refused(), 2);
	al_auth_free(a);
	setenv("NO_GCE_CHECK", "True", 1);
	expect_new_error(AL_ENOTFOUND, "no Google credentials");
	unsetenv("NO_GCE_CHECK");

	/* Threads share one fetch. */
	setenv("GOOGLE_APPLICATION_CREDENTIALS", sa, 1);
	a = expect_kind("service_account");
	if (a) {
		pthread_t th[4];
		thread_arg args[4];
		for (int i = 0; i < 4; i++) {
			args[i] = (thread_arg){a, 0};
			CHECK(pthread_create(&th[i], NULL, hammer, &args[i]) == 0);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			CHECK_EQ_INT(args[i].mismatches, 0);
		}
		CHECK_EQ_INT(requests("jwt"), 7);   /* 5 + the refused one + this one */
	}
	al_auth_free(a);

	/* Precedence: GOOGLE_APPLICATION_CREDENTIALS, then $CLOUDSDK_CONFIG or ~/.config/gcloud,
	 * then the metadata server. */
	path_in(path, home, ".config");
	CHECK(mkdir(path, 0700) == 0);
	path_in(path, home, ".config/gcloud");
	CHECK(mkdir(path, 0700) == 0);
	path_in(path, home, ".config/gcloud/application_default_credentials.json");
	write_authorized_user(path, REFRESH_TOKEN, 0);
	a = expect_kind("service_account");            /* GAC still set */
	al_auth_free(a);
	unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
	a = expect_kind("authorized_user");            /* over the metadata server */
	CHECK(a && al_auth_quota_project(a) == NULL);
	al_auth_free(a);
	{
		char cfg[PATH_MAX], cfg_file[PATH_MAX];
		path_in(cfg, root, "cloudsdk");
		CHECK(mkdir(cfg, 0700) == 0);
		setenv("CLOUDSDK_CONFIG", cfg, 1);
		a = expect_kind("metadata");           /* CLOUDSDK_CONFIG replaces ~/.config/gcloud */
		al_auth_free(a);
		path_in(cfg_file, cfg, "application_default_credentials.json");
		write_service_account(cfg_file, pem, token_uri);
		a = expect_kind("service_account");
		expect_token(a, "tok-9");
		al_auth_free(a);
		/* A broken gcloud file is reported by its path, not skipped. */
		write_text(cfg_file, "{\"type\":");
		FMT(msg, "%s: not a JSON credentials file", cfg_file);
		expect_new_error(AL_EINVAL, msg);
		unsetenv("CLOUDSDK_CONFIG");
	}
	path_in(path, home, ".config/gcloud/application_default_credentials.json");
	CHECK(unlink(path) == 0);
	a = expect_kind("metadata");
	al_auth_free(a);
	CHECK_EQ_INT(refused(), 2);
	CHECK_EQ_INT(log_count("probe", 1, NULL, 0), 0);

	/* Bad arguments. */
	CHECK_EQ_INT(al_auth_new(&a, ""), AL_EINVAL);
	CHECK_EQ_INT(al_auth_new(&a, "scope\r\nX-Evil: 1"), AL_EINVAL);
	al_auth_free(NULL);

	stop_server();
	EVP_PKEY_free(key);
	EVP_PKEY_free(key2);
	free(pem);
	free(pem2);
	OPENSSL_free(n_hex);
	OPENSSL_free(n2);
	{
		char cmd[PATH_MAX + 16];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
		CHECK(system(cmd) == 0);
	}
	CHECK_DONE();
}
