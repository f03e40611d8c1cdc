/* aletheia: Google application-default credentials (service-account JWT bearer, gcloud user
 * refresh token, GCE metadata server) and a cached, thread-safe OAuth2 access token. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include "core/net/auth.h"
#include "core/buf.h"

#define DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"
#define DEFAULT_METADATA_HOST "metadata.google.internal"
#define METADATA_TOKEN_PATH "/computeMetadata/v1/instance/service-accounts/default/token"
#define ADC_FILE "application_default_credentials.json"
#define JWT_LIFETIME 3600
#define REFRESH_MARGIN 300            /* refetch when fewer seconds than this remain */
#define MAX_CRED_FILE (1 << 20)
#define MAX_RESPONSE (1 << 20)
#define PROBE_CONNECT_MS 1000L        /* off GCE the probe must not hold up start-up */
#define PROBE_TOTAL_MS 2000L
#define TOKEN_CONNECT_MS 10000L
#define TOKEN_TOTAL_MS 30000L

enum auth_kind { KIND_SERVICE_ACCOUNT, KIND_AUTHORIZED_USER, KIND_METADATA };

struct al_auth {
	pthread_mutex_t lock;           /* guards token and expiry; held across a fetch so
					 * concurrent callers wait for one request */
	enum auth_kind kind;
	char *scope;
	char *token_uri;                /* service_account, authorized_user */
	char *client_email;             /* service_account */
	char *key_id;
	EVP_PKEY *key;
	char *client_id;                /* authorized_user */
	char *client_secret;
	char *refresh_token;
	char *quota_project;
	char *metadata_url;             /* metadata */
	char *token;
	int64_t expiry;                 /* CLOCK_MONOTONIC seconds */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int64_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

/* Frees a string that held a secret, wiping it first. */
static void free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* A value that may go into a header line or a URL: printable ASCII only. */
static int is_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

/* Reads a whole (small) file; what names it in messages ("GOOGLE_APPLICATION_CREDENTIALS=/x"). */
static int read_file(char **out, const char *path, const char *what)
{
	al_buf b = AL_BUF_INIT;
	char chunk[4096];
	int fd = -1, rc = 0;

	*out = NULL;
	b.max = MAX_CRED_FILE;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		rc = al_error_set_errno(e == ENOENT ? AL_ENOTFOUND : AL_EACCES, e,
			"cannot read %s", what);
		goto cleanup;
	}
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = al_error_set_errno(AL_EACCES, errno, "cannot read %s", what);
			goto cleanup;
		}
		if (n == 0)
			break;
		if (al_buf_put(&b, chunk, (size_t)n) != 0) {
			rc = al_error_set(AL_EINVAL, "cannot read %s: larger than %d bytes",
				what, MAX_CRED_FILE);
			goto cleanup;
		}
	}
	if (al_buf_puts(&b, "") != 0) {
		rc = al_error_set(AL_ENOMEM, "cannot read %s: out of memory", what);
		goto cleanup;
	}
	*out = al_buf_detach(&b, NULL);
cleanup:
	OPENSSL_cleanse(chunk, sizeof(chunk));
	if (b.ptr)
		OPENSSL_cleanse(b.ptr, b.len);
	al_buf_dispose(&b);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* A required non-empty string member of the credentials file, copied into *out. */
static int json_field(char **out, const cJSON *obj, const char *name, const char *kind,
	const char *what)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!cJSON_IsString(item) || !item->valuestring[0])
		return al_error_set(AL_EINVAL, "%s: %s credentials lack \"%s\"", what, kind, name);
	if (!(*out = strdup(item->valuestring)))
		return al_error_set(AL_ENOMEM, "%s: out of memory", what);
	return 0;
}

static int json_optional(char **out, const cJSON *obj, const char *name, const char *def,
	const char *what)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
	const char *v = cJSON_IsString(item) && item->valuestring[0] ? item->valuestring : def;
	*out = NULL;
	if (!v)
		return 0;
	if (!(*out = strdup(v)))
		return al_error_set(AL_ENOMEM, "%s: out of memory", what);
	return 0;
}

/* Never asks for a passphrase on the terminal: an encrypted key is an error. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag; (void)u;
	return 0;
}

static int load_key(EVP_PKEY **out, const char *pem, const char *what)
{
	BIO *bio = NULL;
	int rc = 0;

	*out = NULL;
	if (!(bio = BIO_new_mem_buf(pem, -1))) {
		rc = al_error_set(AL_ENOMEM, "%s: out of memory", what);
		goto cleanup;
	}
	*out = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	if (!*out) {
		rc = al_error_set(AL_EINVAL, "%s: private_key is not a PEM private key", what);
		goto cleanup;
	}
	if (!EVP_PKEY_is_a(*out, "RSA")) {
		EVP_PKEY_free(*out);
		*out = NULL;
		rc = al_error_set(AL_EINVAL, "%s: private_key is not an RSA key", what);
		goto cleanup;
	}
cleanup:
	ERR_clear_error();
	BIO_free(bio);
	return rc;
}

/* Fills a from a credentials file's text. */
static int parse_credentials(al_auth *a, const char *text, const char *what)
{
	cJSON *root = NULL;
	char *pem = NULL;
	const char *end = NULL;
	const cJSON *type;
	int rc = 0;

	root = cJSON_ParseWithOpts(text, &end, 1);
	if (!root) {
		rc = al_error_set(AL_EINVAL, "%s: not a JSON credentials file (bad JSON at byte %ld)",
			what, (long)(end ? end - text : 0));
		goto cleanup;
	}
	if (!cJSON_IsObject(root)) {
		rc = al_error_set(AL_EINVAL, "%s: not a JSON credentials file (not an object)", what);
		goto cleanup;
	}
	type = cJSON_GetObjectItemCaseSensitive(root, "type");
	if (!cJSON_IsString(type)) {
		rc = al_error_set(AL_EINVAL, "%s: credentials lack \"type\"", what);
		goto cleanup;
	}
	if (strcmp(type->valuestring, "service_account") == 0) {
		a->kind = KIND_SERVICE_ACCOUNT;
		if ((rc = json_field(&a->client_email, root, "client_email", "service_account", what)) ||
		    (rc = json_field(&pem, root, "private_key", "service_account", what)) ||
		    (rc = json_optional(&a->key_id, root, "private_key_id", NULL, what)) ||
		    (rc = json_optional(&a->token_uri, root, "token_uri", DEFAULT_TOKEN_URI, what)) ||
		    (rc = load_key(&a->key, pem, what)))
			goto cleanup;
	} else if (strcmp(type->valuestring, "authorized_user") == 0) {
		a->kind = KIND_AUTHORIZED_USER;
		if ((rc = json_field(&a->client_id, root, "client_id", "authorized_user", what)) ||
		    (rc = json_field(&a->client_secret, root, "client_secret", "authorized_user", what)) ||
		    (rc = json_field(&a->refresh_token, root, "refresh_token", "authorized_user", what)) ||
		    (rc = json_optional(&a->token_uri, root, "token_uri", DEFAULT_TOKEN_URI, what)) ||
		    (rc = json_optional(&a->quota_project, root, "quota_project_id", NULL, what)))
			goto cleanup;
		if (a->quota_project && !is_printable(a->quota_project)) {
			rc = al_error_set(AL_EINVAL, "%s: quota_project_id has control characters", what);
			goto cleanup;
		}
	} else {
		/* The type comes from the file; print it only if it is harmless. */
		rc = al_error_set(AL_EINVAL, "%s: credentials of type \"%.40s\" are not supported "
			"(service_account or authorized_user)", what,
			is_printable(type->valuestring) ? type->valuestring : "?");
		goto cleanup;
	}
	if (!is_printable(a->token_uri)) {
		rc = al_error_set(AL_EINVAL, "%s: token_uri has control characters", what);
		goto cleanup;
	}
cleanup:
	free_secret(pem);
	if (root) {
		/* Wipe the parsed secrets before cJSON frees them. */
		cJSON *item;
		cJSON_ArrayForEach(item, root)
			if (cJSON_IsString(item))
				OPENSSL_cleanse(item->valuestring, strlen(item->valuestring));
		cJSON_Delete(root);
	}
	return rc;
}

static int load_file(al_auth *a, const char *path, const char *what)
{
	char *text = NULL;
	int rc;

	if ((rc = read_file(&text, path, what)) == 0)
		rc = parse_credentials(a, text, what);
	free_secret(text);
	return rc;
}

/* --- HTTP --------------------------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	al_buf *b = userdata;
	return al_buf_put(b, data, size * nmemb) == 0 ? size * nmemb : 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	static const char want[] = "metadata-flavor:";
	size_t n = size * nmemb;
	int *flavored = userdata;
	if (n > sizeof(want) - 1 && strncasecmp(data, want, sizeof(want) - 1) == 0) {
		const char *v = data + sizeof(want) - 1;
		size_t left = n - (sizeof(want) - 1);
		while (left && (*v == ' ' || *v == '\t'))
			v++, left--;
		if (left >= 6 && strncmp(v, "Google", 6) == 0)
			*flavored = 1;
	}
	return n;
}

typedef struct http_call {
	const char *url;
	const char *form;               /* POST body, or NULL for GET */
	int metadata;                   /* send Metadata-Flavor, bypass proxies */
	const char *extra_header;       /* or NULL */
	long connect_ms, total_ms;
	/* results */
	long status;
	int flavored;                   /* the answer carried Metadata-Flavor: Google */
	al_buf body;
} http_call;

/* Performs the call. Transport failures set a message naming url and return AL_EIO; the
 * HTTP status is left to the caller. */
static int http_perform(http_call *c)
{
	CURL *curl = NULL;
	struct curl_slist *headers = NULL, *h;
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode cc;
	int rc = 0;

	c->body.max = MAX_RESPONSE;
	if (!(curl = curl_easy_init())) {
		rc = al_error_set(AL_ENOMEM, "auth: cannot create a curl handle");
		goto cleanup;
	}
	/* No 100-continue round trip for tiny forms. */
	if (!(h = curl_slist_append(headers, "Expect:")))
		goto nomem;
	headers = h;
	if (c->metadata) {
		if (!(h = curl_slist_append(headers, "Metadata-Flavor: Google")))
			goto nomem;
		headers = h;
	}
	if (c->extra_header) {
		if (!(h = curl_slist_append(headers, c->extra_header)))
			goto nomem;
		headers = h;
	}
	curl_easy_setopt(curl, CURLOPT_URL, c->url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, c->connect_ms);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, c->total_ms);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &c->body);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &c->flavored);
	if (c->metadata)
		curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");   /* link-local: never via a proxy */
	if (c->form) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, c->form);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(c->form));
	}
	cc = curl_easy_perform(curl);
	if (cc != CURLE_OK) {
		rc = al_error_set(AL_EIO, "auth: request to %s failed: %s", c->url,
			errbuf[0] ? errbuf : curl_easy_strerror(cc));
		goto cleanup;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &c->status);
	goto cleanup;
nomem:
	rc = al_error_set(AL_ENOMEM, "auth: out of memory");
cleanup:
	curl_slist_free_all(headers);
	if (curl)
		curl_easy_cleanup(curl);
	return rc;
}

/* Is a metadata server answering at host? A quick GET of its root. */
static int metadata_present(const char *host)
{
	http_call c = {0};
	char *url = NULL;
	int present = 0;

	if (asprintf(&url, "http://%s/", host) < 0)
		return 0;
	c.url = url;
	c.metadata = 1;
	c.connect_ms = PROBE_CONNECT_MS;
	c.total_ms = PROBE_TOTAL_MS;
	present = http_perform(&c) == 0 && c.flavored;
	al_error_clear();
	al_buf_dispose(&c.body);
	free(url);
	return present;
}

/* --- Tokens ------------------------------------------------------------------------------- */

static char *base64url(const unsigned char *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);
	int n, i, j;
	if (!out)
		return NULL;
	n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	for (i = 0, j = 0; i < n; i++) {
		if (out[i] == '=')
			break;
		out[j++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	}
	out[j] = '\0';
	return out;
}

static char *base64url_json(const cJSON *obj)
{
	char *text = cJSON_PrintUnformatted(obj);
	char *out;
	if (!text)
		return NULL;
	out = base64url((const unsigned char *)text, strlen(text));
	cJSON_free(text);
	return out;
}

/* The signed RS256 assertion of the service account. */
static int make_jwt(char **out, al_auth *a)
{
	cJSON *header = NULL, *claims = NULL;
	char *h64 = NULL, *c64 = NULL, *s64 = NULL, *input = NULL;
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	EVP_MD_CTX *md = NULL;
	int64_t iat = al_now_us() / 1000000;
	int rc = 0;

	*out = NULL;
	if (!(header = cJSON_CreateObject()) || !(claims = cJSON_CreateObject()) ||
	    !cJSON_AddStringToObject(header, "alg", "RS256") ||
	    !cJSON_AddStringToObject(header, "typ", "JWT") ||
	    (a->key_id && !cJSON_AddStringToObject(header, "kid", a->key_id)) ||
	    !cJSON_AddStringToObject(claims, "iss", a->client_email) ||
	    !cJSON_AddStringToObject(claims, "scope", a->scope) ||
	    !cJSON_AddStringToObject(claims, "aud", a->token_uri) ||
	    !cJSON_AddNumberToObject(claims, "iat", (double)iat) ||
	    !cJSON_AddNumberToObject(claims, "exp", (double)(iat + JWT_LIFETIME)) ||
	    !(h64 = base64url_json(header)) || !(c64 = base64url_json(claims)) ||
	    asprintf(&input, "%s.%s", h64, c64) < 0) {
		input = NULL;
		rc = al_error_set(AL_ENOMEM, "auth: out of memory");
		goto cleanup;
	}
	if (!(md = EVP_MD_CTX_new()) ||
	    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, a->key) != 1 ||
	    EVP_DigestSign(md, NULL, &sig_len, (const unsigned char *)input, strlen(input)) != 1 ||
	    !(sig = malloc(sig_len)) ||
	    EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)input, strlen(input)) != 1) {
		rc = al_error_set(AL_ERROR, "auth: cannot sign the service-account JWT (OpenSSL: %s)",
			ERR_reason_error_string(ERR_peek_last_error()) ?
			ERR_reason_error_string(ERR_peek_last_error()) : "unknown");
		ERR_clear_error();
		goto cleanup;
	}
	if (!(s64 = base64url(sig, sig_len)) || asprintf(out, "%s.%s", input, s64) < 0) {
		*out = NULL;
		rc = al_error_set(AL_ENOMEM, "auth: out of memory");
		goto cleanup;
	}
cleanup:
	EVP_MD_CTX_free(md);
	cJSON_Delete(header);
	cJSON_Delete(claims);
	free(h64);
	free(c64);
	free(s64);
	free(sig);
	free(input);
	return rc;
}

/* application/x-www-form-urlencoded: everything but unreserved bytes as %XX. */
static int form_put(al_buf *b, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc;
	if ((rc = al_buf_printf(b, "%s%s=", b->len ? "&" : "", name)))
		return rc;
	for (; *value; value++) {
		unsigned char c = (unsigned char)*value;
		char enc[3] = {'%', hex[c >> 4], hex[c & 15]};
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~')
			rc = al_buf_put(b, value, 1);
		else
			rc = al_buf_put(b, enc, 3);
		if (rc)
			return rc;
	}
	return 0;
}

/* A short, printable excerpt of the endpoint's "error" and "error_description" (they name the
 * problem, e.g. invalid_grant; they carry no secrets of ours). */
static void error_detail(char *out, size_t size, const char *body)
{
	cJSON *root = cJSON_Parse(body);
	const cJSON *err = root ? cJSON_GetObjectItemCaseSensitive(root, "error") : NULL;
	const cJSON *desc = root ? cJSON_GetObjectItemCaseSensitive(root, "error_description") : NULL;
	size_t i;

	out[0] = '\0';
	if (cJSON_IsObject(err)) {
		/* Google's API error shape: {"error": {"message": ...}}. */
		desc = cJSON_GetObjectItemCaseSensitive(err, "message");
		err = cJSON_GetObjectItemCaseSensitive(err, "status");
	}
	if (cJSON_IsString(err))
		snprintf(out, size, ": %.60s%s%.120s", err->valuestring,
			cJSON_IsString(desc) ? ": " : "", cJSON_IsString(desc) ? desc->valuestring : "");
	for (i = 0; out[i]; i++)
		if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e)
			out[i] = '?';
	cJSON_Delete(root);
}

/* Fetches a new token into a->token (lock held). */
static int fetch_token(al_auth *a)
{
	http_call c = {0};
	al_buf form = AL_BUF_INIT;
	char *jwt = NULL, *quota_header = NULL, *token = NULL;
	cJSON *root = NULL;
	const cJSON *tok, *exp;
	char detail[200];
	int64_t started = mono_now(), expires_in = 3600;
	int rc = 0;

	switch (a->kind) {
	case KIND_SERVICE_ACCOUNT:
		if ((rc = make_jwt(&jwt, a)))
			goto cleanup;
		if (form_put(&form, "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer") ||
		    form_put(&form, "assertion", jwt))
			goto nomem;
		c.url = a->token_uri;
		c.form = form.ptr;
		break;
	case KIND_AUTHORIZED_USER:
		if (form_put(&form, "grant_type", "refresh_token") ||
		    form_put(&form, "client_id", a->client_id) ||
		    form_put(&form, "client_secret", a->client_secret) ||
		    form_put(&form, "refresh_token", a->refresh_token))
			goto nomem;
		if (a->quota_project &&
		    asprintf(&quota_header, "x-goog-user-project: %s", a->quota_project) < 0) {
			quota_header = NULL;
			goto nomem;
		}
		c.url = a->token_uri;
		c.form = form.ptr;
		c.extra_header = quota_header;
		break;
	case KIND_METADATA:
		c.url = a->metadata_url;
		c.metadata = 1;
		break;
	}
	c.connect_ms = TOKEN_CONNECT_MS;
	c.total_ms = TOKEN_TOTAL_MS;
	if ((rc = http_perform(&c)))
		goto cleanup;
	if (c.status != 200) {
		error_detail(detail, sizeof(detail), c.body.ptr ? c.body.ptr : "");
		rc = al_error_set(c.status >= 400 && c.status < 500 && c.status != 408 &&
			c.status != 429 ? AL_EACCES : AL_EIO,
			"auth: %s token request to %s failed: HTTP %ld%s", al_auth_kind(a), c.url,
			c.status, detail);
		goto cleanup;
	}
	root = c.body.ptr ? cJSON_Parse(c.body.ptr) : NULL;
	tok = root ? cJSON_GetObjectItemCaseSensitive(root, "access_token") : NULL;
	exp = root ? cJSON_GetObjectItemCaseSensitive(root, "expires_in") : NULL;
	if (!cJSON_IsString(tok) || !tok->valuestring[0] || !is_printable(tok->valuestring)) {
		rc = al_error_set(AL_EIO, "auth: %s token response from %s has no usable "
			"access_token", al_auth_kind(a), c.url);
		goto cleanup;
	}
	/* expires_in may come as a number or a string. */
	if (cJSON_IsNumber(exp))
		expires_in = (int64_t)exp->valuedouble;
	else if (cJSON_IsString(exp))
		expires_in = strtoll(exp->valuestring, NULL, 10);
	if (!(token = strdup(tok->valuestring)))
		goto nomem;
	free_secret(a->token);
	a->token = token;
	a->expiry = started + expires_in;
	goto cleanup;
nomem:
	rc = al_error_set(AL_ENOMEM, "auth: out of memory");
cleanup:
	if (root) {
		cJSON *item;
		cJSON_ArrayForEach(item, root)
			if (cJSON_IsString(item))
				OPENSSL_cleanse(item->valuestring, strlen(item->valuestring));
		cJSON_Delete(root);
	}
	if (c.body.ptr)
		OPENSSL_cleanse(c.body.ptr, c.body.len);
	al_buf_dispose(&c.body);
	if (form.ptr)
		OPENSSL_cleanse(form.ptr, form.len);
	al_buf_dispose(&form);
	free_secret(jwt);
	free(quota_header);
	return rc;
}

/* --- Public ------------------------------------------------------------------------------- */

int al_auth_new(al_auth **out, const char *scope)
{
	al_auth *a = NULL;
	char *what = NULL, *path = NULL;
	const char *env, *home, *host;
	int rc = 0;

	*out = NULL;
	if (!scope)
		scope = AL_AUTH_SCOPE_CLOUD_PLATFORM;
	if (!*scope || !is_printable(scope))
		return al_error_set(AL_EINVAL, "auth: scope is empty or has control characters");
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return al_error_set(AL_ERROR, "auth: curl_global_init failed: %s",
			curl_easy_strerror(curl_init_rc));
	if (!(a = calloc(1, sizeof(*a))))
		goto nomem;
	pthread_mutex_init(&a->lock, NULL);
	if (!(a->scope = strdup(scope)))
		goto nomem;

	/* 1. The file GOOGLE_APPLICATION_CREDENTIALS names; if set, it must work. */
	env = getenv("GOOGLE_APPLICATION_CREDENTIALS");
	if (env && *env) {
		if (asprintf(&what, "GOOGLE_APPLICATION_CREDENTIALS=%s", env) < 0) {
			what = NULL;
			goto nomem;
		}
		rc = load_file(a, env, what);
		goto cleanup;
	}
	/* 2. gcloud's application-default file; absent is fine, broken is an error. */
	env = getenv("CLOUDSDK_CONFIG");
	home = getenv("HOME");
	if (env && *env)
		rc = asprintf(&path, "%s/" ADC_FILE, env);
	else if (home && *home)
		rc = asprintf(&path, "%s/.config/gcloud/" ADC_FILE, home);
	else
		rc = 0;
	if (rc < 0) {
		path = NULL;
		goto nomem;
	}
	rc = 0;
	if (path && access(path, F_OK) == 0) {
		rc = load_file(a, path, path);
		goto cleanup;
	}
	/* 3. The GCE metadata server. */
	host = getenv("GCE_METADATA_HOST");
	if (!host || !*host)
		host = DEFAULT_METADATA_HOST;
	env = getenv("NO_GCE_CHECK");
	if (!(env && strcasecmp(env, "true") == 0) && is_printable(host) && metadata_present(host)) {
		a->kind = KIND_METADATA;
		if (asprintf(&a->metadata_url, "http://%s" METADATA_TOKEN_PATH, host) < 0) {
			a->metadata_url = NULL;
			goto nomem;
		}
		goto cleanup;
	}
	rc = al_error_set(AL_ENOTFOUND, "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS "
		"to a service-account key file, or run `gcloud auth application-default login` "
		"(%s absent, no metadata server at %s)", path ? path : "$HOME unset", host);
	goto cleanup;
nomem:
	rc = al_error_set(AL_ENOMEM, "auth: out of memory");
cleanup:
	free(what);
	free(path);
	if (rc) {
		al_auth_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

int al_auth_token(char **out, al_auth *a)
{
	int rc = 0;

	*out = NULL;
	pthread_mutex_lock(&a->lock);
	if (!a->token || a->expiry - mono_now() < REFRESH_MARGIN) {
		/* A fetch that fails leaves the old token; it is returned while still valid. */
		rc = fetch_token(a);
		if (rc && a->token && a->expiry - mono_now() > 0) {
			al_error_clear();
			rc = 0;
		}
		if (rc)
			goto cleanup;
	}
	if (!(*out = strdup(a->token)))
		rc = al_error_set(AL_ENOMEM, "auth: out of memory");
cleanup:
	pthread_mutex_unlock(&a->lock);
	return rc;
}

void al_auth_invalidate(al_auth *a, const char *token)
{
	pthread_mutex_lock(&a->lock);
	if (a->token && token && strcmp(a->token, token) == 0)
		a->expiry = mono_now() - 1;   /* refetched on the next call; kept if that fails */
	pthread_mutex_unlock(&a->lock);
}

const char *al_auth_kind(al_auth *a)
{
	switch (a->kind) {
	case KIND_SERVICE_ACCOUNT: return "service_account";
	case KIND_AUTHORIZED_USER: return "authorized_user";
	case KIND_METADATA: return "metadata";
	}
	return "unknown";
}

const char *al_auth_quota_project(al_auth *a)
{
	return a->quota_project;
}

void al_auth_free(al_auth *a)
{
	if (!a)
		return;
	pthread_mutex_destroy(&a->lock);
	free(a->scope);
	free(a->token_uri);
	free(a->client_email);
	free(a->key_id);
	EVP_PKEY_free(a->key);
	free(a->client_id);
	free_secret(a->client_secret);
	free_secret(a->refresh_token);
	free(a->quota_project);
	free(a->metadata_url);
	free_secret(a->token);
	free(a);
}
