/* aletheia: the command line's entry point: subcommand dispatch, usage text and shared helpers. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"
#include "aletheia/fs.h"
#include "cli/cli.h"

static const struct {
	const char *name;
	const char *line;
} usage_lines[] = {
	{"mount", "aletheia mount [MOUNTPOINT] [--store URI] [--blobs URI] [--cache-dir DIR] [--cache-size SIZE]\n"
	          "               [--foreground] [--allow-delete] [--no-passthrough] [-o FUSE_OPTION]..."},
	{"umount", "aletheia umount [MOUNTPOINT]"},
	{"new-run", "aletheia new-run PROJECT/EXPERIMENT [--mount MOUNTPOINT]"},
	{"run", "aletheia run --exper PROJECT/EXPERIMENT [--fold N] [--model M] [--param KEY=VALUE]...\n"
	        "             [--require-clean] [--mount MOUNTPOINT] -- COMMAND [ARGS...]"},
	{"status", "aletheia status [MOUNTPOINT]"},
	{"dataset", "aletheia dataset import PROJECT/DATASET URL... [--as NAME] [--mount MOUNTPOINT]\n"
	            "  aletheia dataset prefetch PROJECT/DATASET [--mount MOUNTPOINT]"},
	{"fsck", "aletheia fsck [MOUNTPOINT] [--download]"},
	{"ls", "aletheia ls PROJECT/EXPERIMENT [--sort [-]COLUMN] [--limit N] [--where KEY=VALUE]...\n"
	       "            [--columns A,B,...] [--mount MOUNTPOINT]"},
	{"diff", "aletheia diff RUN RUN [--mount MOUNTPOINT]   (RUN: a run's folder or PROJECT/EXPERIMENT/ID)"},
	{"help", "aletheia --help | --version"},
};

static const char help_text[] =
	"aletheia: an ML experiment tracker that is a filesystem.\n"
	"\n"
	"Commands:\n"
	"  mount     mount the tracker (runs in the background unless --foreground)\n"
	"  umount    wait for pending writes to reach the backend, then unmount\n"
	"  new-run   create the next run of an experiment and print its absolute path\n"
	"  run       run a command as a new run, capturing its console output into output.log\n"
	"  status    print the mount's .aletheia/status\n"
	"  dataset import\n"
	"            register files that live at http(s)://, s3://BUCKET/KEY or gs://BUCKET/KEY\n"
	"            URLs in a dataset without copying them; they are fetched on first read\n"
	"  dataset prefetch\n"
	"            fetch a whole dataset into the mount's cache before training (resumable)\n"
	"  fsck      check every stored blob the records use (local blobs hashed in full, remote\n"
	"            objects sized, cached copies hashed) and name the files of damaged ones;\n"
	"            exit 1 when anything is damaged, missing or could not be checked\n"
	"  ls        print an experiment's runs table (runs.csv) aligned, sorted, filtered\n"
	"  diff      print what differs between two runs (status, git commit, tags, params,\n"
	"            metrics' last/min/max); exit 0 same, 1 different, 2 trouble\n"
	"\n"
	"Options of mount:\n"
	"  --store URI          metadata store: local:DIR (SQLite; default $XDG_DATA_HOME/aletheia)\n"
	"                       or firestore:PROJECT_ID\n"
	"  --blobs URI          blob store: file:///DIR (default: beside the local store),\n"
	"                       s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX]\n"
	"  --cache-dir DIR      local blob cache (default $XDG_CACHE_HOME/aletheia)\n"
	"  --cache-size SIZE    cache size limit, e.g. 10G\n"
	"  --foreground         stay in the foreground until unmounted\n"
	"  --allow-delete       allow rm and rmdir of tracked things\n"
	"  --no-passthrough     read local blobs through the daemon, not by the kernel directly\n"
	"  -o FUSE_OPTION       pass an option to FUSE (repeatable)\n"
	"\n"
	"Options of run:\n"
	"  --exper P/E          project and experiment of the new run (required)\n"
	"  --fold N             the run's fold (an integer)\n"
	"  --model M            the run's model name\n"
	"  --param KEY=VALUE    a hyperparameter, written to params/KEY (repeatable; KEY may contain '/')\n"
	"  --require-clean      refuse to run when the git working tree has uncommitted changes\n"
	"  --mount MOUNTPOINT   the mount to use (also for new-run and dataset import, prefetch)\n"
	"\n"
	"Options of dataset import:\n"
	"  --as NAME            the file's name in the dataset (one URL only; default: the URL's\n"
	"                       last path segment); s3:// reads AWS_ACCESS_KEY_ID,\n"
	"                       AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION and\n"
	"                       AWS_ENDPOINT_URL_S3; gs:// Google credentials or STORAGE_EMULATOR_HOST\n"
	"\n"
	"Options of ls:\n"
	"  --sort COLUMN        sort by a column of runs.csv (or a metric's or param's name);\n"
	"                       -COLUMN for descending; numbers by value, empty cells last\n"
	"  --limit N            only the first N runs after sorting\n"
	"  --where KEY=VALUE    only runs whose column KEY is exactly VALUE (repeatable)\n"
	"  --columns A,B,...    the columns to print (default: all but created, ended, metrics'\n"
	"                       .min/.max and columns empty in every run shown)\n"
	"\n"
	"Options of fsck:\n"
	"  --download           also download remote objects (S3, GCS, imported URLs) and hash them\n"
	"\n"
	"MOUNTPOINT defaults to $ALETHEIA_MOUNT, else /mnt/aletheia.\n"
	"The command's exit status is run's exit status (128+N when killed by signal N).\n";

static void print_usage(FILE *f)
{
	fputs("usage:\n", f);
	for (size_t k = 0; k < sizeof(usage_lines) / sizeof(usage_lines[0]); k++)
		fprintf(f, "  %s\n", usage_lines[k].line);
}

int al_cli_help(const char *cmd)
{
	for (size_t k = 0; k < sizeof(usage_lines) / sizeof(usage_lines[0]); k++)
		if (strcmp(usage_lines[k].name, cmd) == 0) {
			printf("usage: %s\n", usage_lines[k].line);
			return 0;
		}
	print_usage(stdout);
	return 0;
}

int al_cli_usage(const char *cmd)
{
	for (size_t k = 0; cmd && k < sizeof(usage_lines) / sizeof(usage_lines[0]); k++) {
		if (strcmp(usage_lines[k].name, cmd) == 0) {
			fprintf(stderr, "usage: %s\n", usage_lines[k].line);
			return 2;
		}
	}
	print_usage(stderr);
	return 2;
}

int al_cli_open_control(char *path, size_t len, const char *mount, const char *name)
{
	int fd;
	if (snprintf(path, len, "%s/.aletheia/%s", mount, name) >= (int)len) {
		al_cli_fail("the mount point %s is too long", mount);
		return -1;
	}
	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0) {
		if (errno == ENOTCONN)
			al_cli_fail("%s: the aletheia daemon is gone (%s); run `aletheia umount %s`, then "
				"mount again", mount, strerror(errno), mount);
		else
			al_cli_fail("%s is not an aletheia mount with %s (%s); mount it with `aletheia "
				"mount %s`", mount, name, strerror(errno), mount);
	}
	return fd;
}

const char *al_cli_default_mount(void)
{
	const char *env = getenv("ALETHEIA_MOUNT");
	return env && *env ? env : "/mnt/aletheia";
}

void al_cli_fail(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("aletheia: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int al_cli_option(const char *name, int argc, char **argv, int *i, const char **value)
{
	const char *arg = argv[*i];
	size_t n = strlen(name);
	if (strncmp(arg, name, n) != 0)
		return 0;
	if (arg[n] == '=') {
		*value = arg + n + 1;
		return 1;
	}
	if (arg[n] != '\0')
		return 0;
	if (*i + 1 >= argc) {
		al_cli_fail("option %s needs a value", name);
		return -1;
	}
	*value = argv[++*i];
	return 1;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;
	if (!cmd)
		return al_cli_usage(NULL);
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		print_usage(stdout);
		fputc('\n', stdout);
		fputs(help_text, stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0) {
		printf("aletheia %s (%s)\n", AL_VERSION, al_fs_library());
		return 0;
	}
	if (strcmp(cmd, "mount") == 0)
		return al_cli_mount(argc - 1, argv + 1);
	if (strcmp(cmd, "umount") == 0)
		return al_cli_umount(argc - 1, argv + 1);
	if (strcmp(cmd, "new-run") == 0)
		return al_cli_new_run(argc - 1, argv + 1);
	if (strcmp(cmd, "run") == 0)
		return al_cli_run(argc - 1, argv + 1);
	if (strcmp(cmd, "status") == 0)
		return al_cli_status(argc - 1, argv + 1);
	if (strcmp(cmd, "dataset") == 0)
		return al_cli_dataset(argc - 1, argv + 1);
	if (strcmp(cmd, "fsck") == 0)
		return al_cli_fsck(argc - 1, argv + 1);
	if (strcmp(cmd, "ls") == 0)
		return al_cli_ls(argc - 1, argv + 1);
	if (strcmp(cmd, "diff") == 0)
		return al_cli_diff(argc - 1, argv + 1);
	al_cli_fail("unknown command '%s'; see aletheia --help", cmd);
	return al_cli_usage(NULL);
}
