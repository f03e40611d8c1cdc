/* aletheia: `aletheia dataset import`: registers files that live at http(s)://, s3:// or gs://
 * URLs in a dataset without copying them (their size and xxh3-128 learnt by reading them once).
 * `dataset prefetch` is cli/prefetch.c's. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "aletheia/common.h"
#include "aletheia/fetch.h"
#include "aletheia/hash.h"
#include "cli/cli.h"

/* What one URL turned out to hold. */
typedef struct {
	const char *url;
	char *name;
	uint64_t size;
	char hash[AL_HASH_HEX_LEN + 1];
} import_item;

typedef struct {
	al_hasher *h;
	uint64_t bytes;
} counting_hash;

static int hash_sink(void *ctx, const void *data, size_t len)
{
	counting_hash *c = ctx;
	if (!data) {
		/* the object is read again (fetch.h: the last read missed the server's checksum) */
		al_hasher_free(c->h);
		c->h = NULL;
		c->bytes = 0;
		return al_hasher_new(&c->h);
	}
	al_hasher_update(c->h, data, len);
	c->bytes += len;
	return 0;
}

static int hexval(int ch)
{
	return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 :
		ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* The URL's last path segment: percent-decoded for http(s), as is for s3:// and gs:// keys.
 * NULL when there is none (a URL ending in '/'). */
static char *name_from_url(const char *url)
{
	int http = strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
	const char *scheme = strstr(url, "://"), *path, *end, *seg;
	char *out, *o;

	if (!scheme)
		return NULL;
	path = strchr(scheme + 3, '/');
	if (!path)
		return NULL;
	end = http ? path + strcspn(path, "?#") : path + strlen(path);
	for (seg = end; seg > path && seg[-1] != '/'; seg--)
		;
	if (seg == end || !(out = o = malloc((size_t)(end - seg) + 1)))
		return NULL;
	for (const char *p = seg; p < end; p++) {
		if (http && *p == '%' && end - p > 2 && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
			*o++ = (char)(hexval(p[1]) * 16 + hexval(p[2]));
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	if (!*out || strcmp(out, ".") == 0 || strcmp(out, "..") == 0 || strchr(out, '/')) {
		free(out);
		return NULL;
	}
	return out;
}

/* Reads the object once: its size and hash. */
static int measure(import_item *it, al_fetcher *f)
{
	counting_hash c = {NULL, 0};
	uint64_t announced = 0;
	int rc;

	if ((rc = al_fetcher_stat(&announced, NULL, f, it->url)) != 0)
		goto fail;
	if ((rc = al_hasher_new(&c.h)) != 0)
		goto fail;
	rc = al_fetcher_stream(f, it->url, hash_sink, &c);
	if (rc == 0 && c.bytes != announced)
		rc = al_error_set(AL_EIO, "%s gave %llu bytes but announced %llu", it->url,
			(unsigned long long)c.bytes, (unsigned long long)announced);
	if (rc == 0) {
		al_hasher_final(it->hash, c.h);
		it->size = c.bytes;
	}
	al_hasher_free(c.h);
	if (rc == 0)
		return 0;
fail:
	al_cli_fail("cannot import %s: %s; check the URL, that it is reachable, and the credentials "
		"(AWS_* for s3://, Google credentials or STORAGE_EMULATOR_HOST for gs://)", it->url,
		al_error_last());
	return rc;
}

/* One JSON line to MNT/.aletheia/import. */
static int register_item(const char *ctl, const char *dataset, const import_item *it,
	const char *mount)
{
	cJSON *j = cJSON_CreateObject();
	char *line = NULL, *text = NULL;
	size_t len, done = 0;
	int fd = -1, err = 0;

	if (!j || !cJSON_AddStringToObject(j, "dataset", dataset) ||
		!cJSON_AddStringToObject(j, "path", it->name) ||
		!cJSON_AddStringToObject(j, "url", it->url) ||
		!cJSON_AddNumberToObject(j, "size", (double)it->size) ||
		!cJSON_AddStringToObject(j, "hash", it->hash) || !(text = cJSON_PrintUnformatted(j)) ||
		asprintf(&line, "%s\n", text) < 0) {
		line = NULL;
		cJSON_Delete(j);
		free(text);
		al_cli_fail("out of memory");
		return AL_ENOMEM;
	}
	cJSON_Delete(j);
	free(text);
	len = strlen(line);
	if ((fd = open(ctl, O_WRONLY | O_CLOEXEC)) < 0)
		err = errno;
	while (!err && done < len) {
		ssize_t n = write(fd, line + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			err = n < 0 ? errno : EIO;
		else
			done += (size_t)n;
	}
	if (fd >= 0 && close(fd) != 0 && !err)
		err = errno;
	free(line);
	if (!err)
		return 0;
	switch (err) {
	case EPERM:
	case EEXIST:
		al_cli_fail("cannot import %s as %s: %s already holds a different file of that name; "
			"dataset files are write-once, so pick another name with --as NAME", it->url,
			it->name, dataset);
		break;
	case ENOENT:
		al_cli_fail("cannot import into %s: the dataset does not exist; create it with "
			"mkdir -p %s/%.*s/datasets/%s", dataset, mount, (int)strcspn(dataset, "/"),
			dataset, strchr(dataset, '/') + 1);
		break;
	case EINVAL:
	case ENAMETOOLONG:
		al_cli_fail("cannot import %s as %s: the mount refused the name or URL (%s); pick a "
			"valid file name with --as NAME", it->url, it->name, strerror(err));
		break;
	default:
		al_cli_fail("cannot write %s: %s; check that the mount is up (aletheia status %s)", ctl,
			strerror(err), mount);
	}
	return al_error_from_errno(err);
}

int al_cli_dataset(int argc, char **argv)
{
	const char *mount = NULL, *as = NULL, *dataset = NULL, *v;
	const char **urls = NULL;
	import_item *items = NULL;
	al_fetcher *f = NULL;
	char ctl[PATH_MAX], ds_dir[PATH_MAX], proj_dir[PATH_MAX];
	struct stat st;
	int n_urls = 0, status = 1, r;

	if (argc >= 2 && strcmp(argv[1], "prefetch") == 0)
		return al_cli_dataset_prefetch(argc - 1, argv + 1);
	if (argc < 2 || strcmp(argv[1], "import") != 0) {
		if (argc >= 2)
			al_cli_fail("unknown dataset command '%s'; the ones there are: import, prefetch",
				argv[1]);
		return al_cli_usage("dataset");
	}
	if (!(urls = calloc((size_t)argc, sizeof(*urls)))) {
		al_cli_fail("out of memory");
		return 1;
	}
	for (int i = 2; i < argc; i++) {
		if ((r = al_cli_option("--mount", argc, argv, &i, &v)) != 0) {
			if (r < 0)
				goto usage;
			mount = v;
		} else if ((r = al_cli_option("--as", argc, argv, &i, &v)) != 0) {
			if (r < 0)
				goto usage;
			as = v;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			al_cli_fail("unknown option '%s'", argv[i]);
			goto usage;
		} else if (!dataset) {
			dataset = argv[i];
		} else {
			urls[n_urls++] = argv[i];
		}
	}
	if (!dataset || n_urls == 0) {
		al_cli_fail("%s", !dataset ? "PROJECT/DATASET and at least one URL are required"
			: "at least one URL is required");
		goto usage;
	}
	if (al_cli_check_exper(dataset) != 0) {
		al_cli_fail("'%s' is not PROJECT/DATASET; give both names, e.g. mnist/raw", dataset);
		goto usage;
	}
	if (as && n_urls > 1) {
		al_cli_fail("--as names one file but %d URLs were given; import them one at a time to "
			"rename them", n_urls);
		goto usage;
	}
	if (!mount)
		mount = al_cli_default_mount();
	snprintf(ctl, sizeof(ctl), "%s/.aletheia/import", mount);
	if (stat(ctl, &st) != 0) {
		al_cli_fail("%s is not an aletheia mount with imports (%s); mount it with `aletheia "
			"mount %s`", mount, strerror(errno), mount);
		goto cleanup;
	}
	if (!(items = calloc((size_t)n_urls, sizeof(*items)))) {
		al_cli_fail("out of memory");
		goto cleanup;
	}
	for (int i = 0; i < n_urls; i++) {
		items[i].url = urls[i];
		items[i].name = as ? strdup(as) : name_from_url(urls[i]);
		if (!items[i].name) {
			al_cli_fail("cannot name a file after %s (no last path segment); give one with "
				"--as NAME", urls[i]);
			goto cleanup;
		}
	}
	/* Every URL is read before any is registered: a bad one among many registers none. */
	if (al_fetcher_new(&f) != 0) {
		al_cli_fail("cannot start the URL fetcher: %s", al_error_last());
		goto cleanup;
	}
	for (int i = 0; i < n_urls; i++)
		if (measure(&items[i], f) != 0)
			goto cleanup;
	/* The project and dataset are created as mkdir would. */
	if (snprintf(proj_dir, sizeof(proj_dir), "%s/%.*s", mount, (int)strcspn(dataset, "/"),
		dataset) >= (int)sizeof(proj_dir) || snprintf(ds_dir, sizeof(ds_dir), "%s/datasets/%s",
		proj_dir, strchr(dataset, '/') + 1) >= (int)sizeof(ds_dir)) {
		al_cli_fail("the path of %s under %s is too long; use shorter names", dataset, mount);
		goto cleanup;
	}
	if (al_cli_ensure_dir(proj_dir) != 0 || al_cli_ensure_dir(ds_dir) != 0)
		goto cleanup;
	for (int i = 0; i < n_urls; i++) {
		if (register_item(ctl, dataset, &items[i], mount) != 0)
			goto cleanup;
		printf("imported %s (%llu bytes) from %s\n", items[i].name,
			(unsigned long long)items[i].size, items[i].url);
		fflush(stdout);
	}
	status = 0;
	goto cleanup;
usage:
	status = al_cli_usage("dataset");
cleanup:
	for (int i = 0; items && i < n_urls; i++)
		free(items[i].name);
	free(items);
	free(urls);
	al_fetcher_free(f);
	return status;
}
