/* aletheia: the configuration file of `aletheia mount` (README "Configuration file"): read before
 * the command line, which overrides it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aletheia/cache.h"
#include "cli/cli.h"

char *al_cli_xdg_dir(const char *var, const char *fallback)
{
	const char *v = getenv(var), *home = getenv("HOME");
	char *out = NULL;
	if (v && *v)
		out = strdup(v);
	else if (asprintf(&out, "%s/%s", home && *home ? home : "/root", fallback) < 0)
		out = NULL;
	return out;
}

/* Values read from the configuration file live as long as the process. */
static char *config_strdup(const char *s)
{
	char *p = strdup(s);
	if (!p) {
		al_cli_fail("out of memory");
		exit(1);
	}
	return p;
}

/* $XDG_CONFIG_HOME/aletheia/config (or $ALETHEIA_CONFIG): "key = value" lines, '#' comments,
 * keys store, blobs, cache-dir, cache-size, mountpoint, allow-delete, cache-ttl-ms,
 * network-wait-ms. Flags given on the command line override it. */
static int read_file(al_cli_mount_opts *o, FILE *f, const char *path);

int al_cli_read_config(al_cli_mount_opts *o)
{
	char *base = NULL, *path = NULL;
	const char *env = getenv("ALETHEIA_CONFIG");
	FILE *f;
	int rc = 0;

	if (env && *env)
		path = config_strdup(env);
	else {
		base = al_cli_xdg_dir("XDG_CONFIG_HOME", ".config");
		if (!base || asprintf(&path, "%s/aletheia/config", base) < 0)
			path = NULL;
		free(base);
	}
	if (!path || !(f = fopen(path, "r"))) {
		if (path && env && *env) {
			al_cli_fail("cannot read ALETHEIA_CONFIG=%s: %s", path, strerror(errno));
			rc = 1;
		}
		free(path);
		return rc;
	}
	rc = read_file(o, f, path);
	free(path);
	return rc;
}

int al_cli_read_config_file(al_cli_mount_opts *o, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		al_cli_fail("cannot read the configuration file %s: %s; fix config= or the file", path,
			strerror(errno));
		return 1;
	}
	return read_file(o, f, path);
}

/* Reads the open file f (closed here); path names it in messages. */
static int read_file(al_cli_mount_opts *o, FILE *f, const char *path)
{
	char line[4096];
	int n = 0, rc = 0;
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		char *k = line, *eq, *v, *end;
		n++;
		while (*k == ' ' || *k == '\t')
			k++;
		if (*k == '#' || *k == '\n' || !*k)
			continue;
		if (!(eq = strchr(k, '='))) {
			al_cli_fail("%s:%d: expected key = value", path, n);
			rc = 2;
			break;
		}
		for (end = eq; end > k && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		for (v = eq + 1; *v == ' ' || *v == '\t'; v++)
			;
		for (end = v + strlen(v); end > v && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'); end--)
			;
		*end = '\0';
		if (!strcmp(k, "store"))
			o->store = config_strdup(v);
		else if (!strcmp(k, "blobs"))
			o->blobs = config_strdup(v);
		else if (!strcmp(k, "cache-dir"))
			o->cache_dir = config_strdup(v);
		else if (!strcmp(k, "mountpoint"))
			o->mountpoint = config_strdup(v);
		else if (!strcmp(k, "cache-size")) {
			if (al_size_parse(&o->cache_size, v) != 0) {
				al_cli_fail("%s:%d: bad cache-size \"%s\"; use bytes or a size like 10G", path, n, v);
				rc = 2;
			}
		} else if (!strcmp(k, "allow-delete"))
			o->allow_delete = !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1");
		else if (!strcmp(k, "cache-ttl-ms"))
			setenv("ALETHEIA_CACHE_TTL_MS", v, 0);
		else if (!strcmp(k, "network-wait-ms"))
			setenv("ALETHEIA_NETWORK_WAIT_MS", v, 0);
		else {
			al_cli_fail("%s:%d: unknown key \"%s\" (store, blobs, cache-dir, cache-size, mountpoint, "
				"allow-delete, cache-ttl-ms, network-wait-ms)", path, n, k);
			rc = 2;
		}
	}
	if (ferror(f) && rc == 0) {
		al_cli_fail("cannot read the configuration file %s: %s; fix its permissions", path,
			strerror(errno));
		rc = 1;
	}
	fclose(f);
	return rc;
}
