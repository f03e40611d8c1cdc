/* aletheia: mount(8)'s helpers (README "fstab and systemd"): `mount.aletheia SOURCE DIR -o OPTIONS`
 * turned into `aletheia mount`'s settings, and `umount.fuse.aletheia DIR` as `aletheia umount`. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "aletheia/cache.h"
#include "cli/cli.h"

/* mount(8)'s exit statuses (mount(8) "RETURN CODES"): a bad call, and a failed mount. */
#define EXIT_USAGE 1
#define EXIT_MOUNT 32

/* A boot-time mount has no $HOME: the system's defaults (README "fstab and systemd"). */
#define SYSTEM_CONFIG "/etc/aletheia/config"
#define SYSTEM_CACHE "/var/cache/aletheia"

/* Options mount(8) and systemd use that mean nothing to the daemon (libmount passes some of
 * them on to helpers: _netdev, nofail, user, …). */
static const char *const ignored[] = {"defaults", "auto", "noauto", "user", "users", "nouser",
	"owner", "group", "_netdev", "nofail", "atime", "relatime", "norelatime", "strictatime",
	"nostrictatime", "diratime", "lazytime", "nolazytime", "loud", "silent", NULL};
/* Kernel mount flags and FUSE options the daemon hands to libfuse as they are. */
static const char *const fuse_flags[] = {"rw", "ro", "suid", "nosuid", "dev", "nodev", "exec",
	"noexec", "async", "sync", "dirsync", "noatime", "nodiratime", "symfollow", "nosymfollow",
	"allow_other", "default_permissions", "auto_unmount", NULL};

static int in_list(const char *const *list, const char *opt)
{
	for (size_t i = 0; list[i]; i++)
		if (strcmp(list[i], opt) == 0)
			return 1;
	return 0;
}

/* Lives as long as the process (the options point into it). */
static char *keep(const char *s)
{
	char *p = strdup(s);
	if (!p) {
		al_cli_fail("out of memory");
		exit(EXIT_MOUNT);
	}
	return p;
}

/* The mount point as `systemd-escape --path` writes it ("/mnt/team" → "mnt-team", "/mnt/x-y" →
 * "mnt-x\x2dy", "/" → "-"): one cache folder per mount point, the same name systemd gives its
 * mount unit and aletheia@.service's instance (README "fstab and systemd"). The encoding is
 * injective (a '-' or '\' of the path is escaped, so a '-' always was a '/'), since two daemons
 * must not share a cache's journals. The path is resolved first (mount(8) gives it so) and
 * simplified as systemd does: no "//", no trailing '/'. */
static char *cache_for(const char *mountpoint)
{
	char resolved[PATH_MAX], *out, *t;
	const char *p;
	if (realpath(mountpoint, resolved))
		mountpoint = resolved;
	/* At most four bytes ("\xNN") per byte of the path. */
	out = malloc(strlen(SYSTEM_CACHE) + 2 + 4 * strlen(mountpoint) + 2);
	if (!out)
		return NULL;
	t = out + sprintf(out, "%s/", SYSTEM_CACHE);
	for (p = mountpoint; *p == '/'; p++)
		;
	if (!*p)
		*t++ = '-';
	if (*p == '.') {   /* no hidden folder, as systemd makes no unit name that starts with '.' */
		t += sprintf(t, "\\x%02x", '.');
		p++;
	}
	for (; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '/') {
			while (p[1] == '/')
				p++;
			if (p[1])
				*t++ = '-';
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			 c == ':' || c == '_' || c == '.')
			*t++ = (char)c;
		else   /* systemd's rule, not the locale's: every other byte */
			t += sprintf(t, "\\x%02x", c);
	}
	*t = '\0';
	return out;
}

/* Before the escaping above, a mount point's cache was named with each '/' as '-' alone: where
 * that older name differs and is there while the new one is not, its journals may hold writes not
 * delivered yet, which only a mount with that folder delivers. Says so, and goes on with the new
 * folder: the old name may be another mount point's (x/y's for x-y), so it is not taken over. */
static void note_old_cache(const char *cache, const char *mountpoint)
{
	char *old = NULL, *p;
	struct stat st;
	while (*mountpoint == '/')
		mountpoint++;
	if (!*mountpoint || asprintf(&old, "%s/%s", SYSTEM_CACHE, mountpoint) < 0)
		return;
	for (p = old + strlen(SYSTEM_CACHE) + 1; *p; p++)
		if (*p == '/')
			*p = '-';
	if (strcmp(old, cache) != 0 && stat(cache, &st) != 0 && stat(old, &st) == 0 && S_ISDIR(st.st_mode))
		fprintf(stderr, "aletheia: note: this mount point's cache folder is now %s; an older "
			"aletheia named it %s, which may hold writes not delivered yet: if it was this mount "
			"point's, mount once with cache_dir=%s to deliver them\n", cache, old, old);
	free(old);
}

/* Makes DIR and its parents (0755, as /var/cache's folders are). */
static int mkdirs(const char *dir)
{
	char *p = keep(dir), *s;
	int rc = 0;
	for (s = p + 1; rc == 0 && (s = strchr(s, '/')); s++) {
		*s = '\0';
		if (mkdir(p, 0755) != 0 && errno != EEXIST)
			rc = -1;
		*s = '/';
	}
	if (rc == 0 && mkdir(p, 0700) != 0 && errno != EEXIST)
		rc = -1;
	free(p);
	return rc;
}

/* Applies one -o option; 0, or the exit status after saying why. */
static int apply(al_cli_mount_opts *o, const char **config, char *opt, int sloppy)
{
	char *eq = strchr(opt, '='), *v = eq ? eq + 1 : NULL;
	if (eq)
		*eq = '\0';
	if (!*opt)
		return 0;
	if (eq && !strcmp(opt, "blobs"))
		o->blobs = v;
	else if (eq && !strcmp(opt, "cache_dir"))
		o->cache_dir = v;
	else if (eq && !strcmp(opt, "config"))
		*config = v;
	else if (eq && !strcmp(opt, "store"))
		o->store = v;
	else if (eq && !strcmp(opt, "cache_size")) {
		if (al_size_parse(&o->cache_size, v) != 0) {
			al_cli_fail("bad mount option cache_size=%s; use bytes or a size like 10G or 512M", v);
			return EXIT_USAGE;
		}
	} else if (!eq && !strcmp(opt, "allow_delete"))
		o->allow_delete = 1;
	else if (!eq && !strcmp(opt, "no_passthrough"))
		o->no_passthrough = 1;
	else if (!eq && !strcmp(opt, "debug"))
		o->debug = 1;
	else if (!eq && in_list(fuse_flags, opt)) {
		if (o->nfuse >= 28) {
			al_cli_fail("too many mount options; pass fewer");
			return EXIT_USAGE;
		}
		o->fuse_opts[o->nfuse++] = opt;
	} else if ((!eq && in_list(ignored, opt)) || !strncmp(opt, "x-", 2) ||
		 (eq && !strcmp(opt, "comment")))
		;   /* mount(8)'s and systemd's own */
	else if (!sloppy) {
		al_cli_fail("unknown mount option \"%s%s%s\"; aletheia takes blobs=, cache_dir=, "
			"cache_size=, config=, allow_delete, allow_other, no_passthrough and the usual "
			"rw, ro, nosuid, nodev, noexec, noatime, _netdev, nofail, noauto, x-*", opt,
			eq ? "=" : "", eq ? v : "");
		return EXIT_USAGE;
	}
	return 0;
}

/* SOURCE: a store as --store takes it (local:DIR, firestore:PROJECT_ID), or an absolute DIR
 * for local:DIR. */
static int source_store(al_cli_mount_opts *o, const char *source)
{
	struct stat st;
	const char *dir = NULL;
	if (source[0] == '/') {
		char *s = NULL;
		if (asprintf(&s, "local:%s", source) < 0)
			return EXIT_MOUNT;
		o->store = s;
		dir = source;
	} else if (!strncmp(source, "local:", 6) && source[6] == '/') {
		o->store = source;
		dir = source + 6;
	} else if (!strncmp(source, "firestore:", 10) && source[10]) {
		o->store = source;
	} else {
		al_cli_fail("bad source \"%s\"; use local:/DIR (an SQLite store's folder), /DIR or "
			"firestore:PROJECT_ID", source);
		return EXIT_USAGE;
	}
	/* A boot-time mount must not make an empty store where the team's is expected. */
	if (dir && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
		al_cli_fail("store %s: %s; create it (mkdir -p %s) or fix the source in /etc/fstab", dir,
			stat(dir, &st) != 0 ? strerror(errno) : "not a folder", dir);
		return EXIT_MOUNT;
	}
	return 0;
}

int al_cli_mount_helper(int argc, char **argv)
{
	const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	const char *config = NULL, *source = NULL, *dir = NULL;
	char *opts[16];
	int nopts = 0, sloppy = 0, fake = 0, rc, i;
	al_cli_mount_opts o;

	memset(&o, 0, sizeof(o));
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-o") && i + 1 < argc && nopts < 16)
			opts[nopts++] = keep(argv[++i]);
		else if (!strncmp(a, "-o", 2) && a[2] && nopts < 16)
			opts[nopts++] = keep(a + 2);
		else if (!strcmp(a, "-t") && i + 1 < argc)
			i++;   /* the type: mount.fuse.aletheia is called with fuse.aletheia */
		else if (!strcmp(a, "-N")) {
			al_cli_fail("mount namespaces (-N) are not supported; mount from inside the namespace");
			return EXIT_USAGE;
		} else if (a[0] == '-' && a[1] && strspn(a + 1, "sfnvwr") == strlen(a + 1)) {
			sloppy |= strchr(a, 's') != NULL;
			fake |= strchr(a, 'f') != NULL;
			if (strchr(a, 'r'))
				opts[nopts < 16 ? nopts++ : 15] = keep("ro");
		} else if (a[0] == '-') {
			al_cli_fail("unknown flag %s; usage: %s SOURCE DIR [-sfnv] [-o OPTIONS]", a, name);
			return EXIT_USAGE;
		} else if (!source)
			source = a;
		else if (!dir)
			dir = a;
		else {
			al_cli_fail("too many arguments; usage: %s SOURCE DIR [-sfnv] [-o OPTIONS]", name);
			return EXIT_USAGE;
		}
	}
	if (!dir) {
		al_cli_fail("usage: %s SOURCE DIR [-sfnv] [-o OPTIONS] (SOURCE: local:/DIR or "
			"firestore:PROJECT_ID)", name);
		return EXIT_USAGE;
	}
	/* The options first: config= names the file the rest overrides. */
	for (i = 0; i < nopts; i++)
		for (char *p = opts[i], *next; p; p = next) {
			next = strchr(p, ',');
			if (next)
				*next++ = '\0';
			if ((rc = apply(&o, &config, p, sloppy)) != 0)
				return rc;
		}
	{
		/* The configuration file: config=FILE, else /etc/aletheia/config when there is one;
		 * never a user's ~/.config (README "fstab and systemd"). Options given win. */
		al_cli_mount_opts file;
		memset(&file, 0, sizeof(file));
		if (!config && access(SYSTEM_CONFIG, F_OK) == 0)
			config = SYSTEM_CONFIG;
		if (config && (rc = al_cli_read_config_file(&file, config)) != 0)
			return rc == 2 ? EXIT_USAGE : EXIT_MOUNT;
		if (!o.store) o.store = file.store;
		if (!o.blobs) o.blobs = file.blobs;
		if (!o.cache_dir) o.cache_dir = file.cache_dir;
		if (!o.cache_size) o.cache_size = file.cache_size;
		o.allow_delete |= file.allow_delete;
	}
	if ((rc = source_store(&o, source)) != 0)
		return rc;
	if (!o.blobs && strncmp(o.store, "local:", 6) != 0) {
		al_cli_fail("a %s source needs blobs= (file:///DIR, s3://BUCKET or gs://BUCKET) in the "
			"options or in the configuration file", o.store);
		return EXIT_USAGE;
	}
	if (!o.cache_dir) {
		char *c = cache_for(dir);
		if (c)
			note_old_cache(c, dir);
		if (!c || mkdirs(c) != 0) {
			al_cli_fail("cannot create the cache folder %s: %s; give cache_dir=DIR", c ? c : SYSTEM_CACHE,
				strerror(errno));
			free(c);
			return EXIT_MOUNT;
		}
		o.cache_dir = c;
	}
	if (o.cache_dir[0] != '/') {
		al_cli_fail("cache_dir=%s is not an absolute path; give one", o.cache_dir);
		return EXIT_USAGE;
	}
	{
		/* mountinfo then shows SOURCE and the type mount(8) used (fuse.aletheia), so `mount -a`
		 * knows the line is mounted and umount(8) finds umount.fuse.aletheia. */
		const char *type = !strncmp(name, "mount.", 6) ? name + 6 : "aletheia";
		char *fs = NULL;
		if (!strncmp(type, "fuse.", 5))
			type += 5;
		if (strchr(source, ',') || asprintf(&fs, "fsname=%s,subtype=%s", source, type) < 0)
			fs = keep("fsname=aletheia,subtype=aletheia");
		o.fuse_opts[o.nfuse++] = fs;
	}
	o.mountpoint = dir;
	if (fake)
		return 0;
	rc = al_cli_mount_start(&o);
	return rc == 0 ? 0 : rc == 2 ? EXIT_USAGE : EXIT_MOUNT;
}

int al_cli_umount_helper(int argc, char **argv)
{
	const char *dir = NULL;
	char *args[4];
	int lazy = 0, n = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-t") || !strcmp(argv[i], "-N"))
			i++;   /* the type; a namespace (not supported: the path is this one's) */
		else if (argv[i][0] == '-' && argv[i][1] != '-' && strchr(argv[i], 'l'))
			lazy = 1;   /* umount -l: detach now (umount(8) passes -l, perhaps among -nrv…) */
		else if (argv[i][0] != '-' && !dir)
			dir = argv[i];
	}
	if (!dir) {
		al_cli_fail("usage: umount.fuse.aletheia DIR [-l]");
		return EXIT_USAGE;
	}
	/* Waits for pending writes, unmounts, waits for the daemon to end (README "Durability");
	 * with -l detaches at once and the daemon ends when the mount is no longer in use. */
	args[n++] = "umount";
	if (lazy)
		args[n++] = "--lazy";
	args[n++] = (char *)dir;
	args[n] = NULL;
	return al_cli_umount(n, args) == 0 ? 0 : EXIT_MOUNT;
}
