/* aletheia: `aletheia new-run` and the helpers that create runs and write files on the mount with
 * ordinary file operations only (the CLI does not know which backend the mount uses). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "aletheia/common.h"
#include "cli/cli.h"

/* Attempts before giving up on EEXIST: only reached if other creators keep winning the race. */
#define MAX_ATTEMPTS 100000

int al_cli_ensure_dir(const char *path)
{
	struct stat st;
	int err;
	if (mkdir(path, 0755) == 0)
		return 0;
	err = errno;
	/* The mount may refuse mkdir of a folder it makes itself (EEXIST, or EPERM for a fixed
	 * name): an existing folder is all we need. */
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	al_cli_fail("cannot create %s: %s; %s", path, strerror(err),
		al_cli_fix(err, path, "check that the mount is up and the name is valid"));
	return al_error_from_errno(err);
}

int al_cli_write_file(const char *path, const char *data)
{
	size_t len = strlen(data), done = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		goto fail;
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int err = errno;
			close(fd);
			errno = err;
			goto fail;
		}
		done += (size_t)n;
	}
	/* close() is where a FUSE file system may report a failed flush. */
	if (close(fd) != 0)
		goto fail;
	return 0;
fail:
	{
		int err = errno;
		al_cli_fail("cannot write %s: %s; %s", path, strerror(err),
			al_cli_fix(err, path, "check the value and that the run is still running"));
		return al_error_from_errno(err);
	}
}

/* "." and ".." would be resolved by the kernel before the mount sees them: `../e` is a folder
 * beside the mount point (README "The tree": names are not "." or ".."). */
static int dot_name(const char *name, size_t len)
{
	return (len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.');
}

int al_cli_check_exper(const char *exper)
{
	const char *slash = strchr(exper, '/');
	if (!slash || slash == exper || slash[1] == '\0' || strchr(slash + 1, '/') ||
	    dot_name(exper, (size_t)(slash - exper)) || dot_name(slash + 1, strlen(slash + 1)))
		return AL_EINVAL;
	return 0;
}

/* The largest all-digit entry name in dir (0 if none), so the next id is max + 1. */
static int max_run_id(unsigned long long *out, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	*out = 0;
	if (!d) {
		int err = errno;
		al_cli_fail("cannot list %s: %s; %s", dir, strerror(err),
			al_cli_fix(err, dir, "check that the mount is up"));
		return al_error_from_errno(err);
	}
	while ((e = readdir(d)) != NULL) {
		const char *p = e->d_name;
		unsigned long long v;
		char *end;
		if (*p < '0' || *p > '9')
			continue;
		errno = 0;
		v = strtoull(p, &end, 10);
		if (*end || errno)
			continue;
		if (v > *out)
			*out = v;
	}
	closedir(d);
	return 0;
}

int al_cli_create_run(char **out, const char *mount, const char *exper)
{
	char *root = NULL, *path = NULL, *project = NULL;
	const char *slash = strchr(exper, '/');
	unsigned long long id;
	int rc;

	*out = NULL;
	/* A folder where nothing is mounted would take the run as plain folders: nothing tracked,
	 * and hidden once the mount comes up there (README "The command line"). The check also
	 * names a daemon that is gone and another user's mount not shared. */
	if (al_cli_check_mount(mount) < 0) {
		rc = AL_ENOTFOUND;
		goto cleanup;
	}
	root = realpath(mount, NULL);
	if (!root) {
		int err = errno;
		if (err == EACCES)
			al_cli_fail("cannot open mount point %s: %s; %s", mount, strerror(err),
				al_cli_fix(err, mount, ""));
		else
			al_cli_fail("cannot open mount point %s: %s; mount it with `aletheia mount %s` "
				"or pass --mount", mount, strerror(err), mount);
		rc = al_error_from_errno(err);
		goto cleanup;
	}
	project = strndup(exper, (size_t)(slash - exper));
	if (!project) {
		rc = AL_ENOMEM;
		goto cleanup;
	}
	/* Each level may already exist (or be made by the mount itself); plain folders work too. */
	const char *levels[] = {"%s/%s", "%s/%s/experiments", "%s/%s/experiments/%s",
		"%s/%s/experiments/%s/runs"};
	for (size_t k = 0; k < sizeof(levels) / sizeof(levels[0]); k++) {
		free(path);
		if (asprintf(&path, levels[k], root, project, slash + 1) < 0) {
			path = NULL;
			rc = AL_ENOMEM;
			goto cleanup;
		}
		if ((rc = al_cli_ensure_dir(path)) < 0)
			goto cleanup;
	}
	if ((rc = max_run_id(&id, path)) < 0)
		goto cleanup;
	/* Concurrent creators read the same maximum: whoever loses the mkdir race gets EEXIST and
	 * tries the next id. */
	for (int attempt = 0;; attempt++) {
		char *run = NULL;
		id++;
		if (asprintf(&run, "%s/%llu", path, id) < 0) {
			rc = AL_ENOMEM;
			goto cleanup;
		}
		if (mkdir(run, 0755) == 0) {
			*out = run;
			rc = 0;
			goto cleanup;
		}
		int err = errno;
		if (err != EEXIST || attempt >= MAX_ATTEMPTS) {
			al_cli_fail("cannot create run %s: %s; %s", run, strerror(err),
				al_cli_fix(err, run, "check that the mount is up"));
			free(run);
			rc = al_error_from_errno(err);
			goto cleanup;
		}
		free(run);
	}
cleanup:
	if (rc == AL_ENOMEM)
		al_cli_fail("out of memory");
	free(root);
	free(path);
	free(project);
	return rc;
}

int al_cli_new_run(int argc, char **argv)
{
	const char *mount = al_cli_default_mount(), *exper = NULL, *value;
	char *run = NULL;
	for (int i = 1; i < argc; i++) {
		int m = al_cli_option("--mount", argc, argv, &i, &value);
		if (m < 0)
			return al_cli_usage("new-run");
		if (m > 0) {
			mount = value;
		} else if (argv[i][0] == '-' || exper) {
			al_cli_fail("unexpected argument '%s'", argv[i]);
			return al_cli_usage("new-run");
		} else {
			exper = argv[i];
		}
	}
	if (!exper)
		return al_cli_usage("new-run");
	if (al_cli_check_exper(exper) < 0) {
		al_cli_fail("'%s' is not PROJECT/EXPERIMENT; give both names, e.g. mnist/baseline", exper);
		return 2;
	}
	if (al_cli_create_run(&run, mount, exper) < 0)
		return 1;
	printf("%s\n", run);
	free(run);
	return fflush(stdout) == 0 ? 0 : 1;
}
