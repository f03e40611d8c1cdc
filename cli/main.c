/* aletheia: the command line's entry point: subcommand dispatch, usage text and shared helpers. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "config.h"
#include "aletheia/fs.h"
#include "cli/cli.h"

/* Each subcommand's usage, what it does and its options: `aletheia CMD --help` prints its entry,
 * `aletheia --help` all of them; doc/aletheia.1 says the same (tests/integration/test_docs.py
 * checks that every option here is in the man page and the completion). */
static const struct {
	const char *name;
	const char *line;
	const char *what;
	const char *options;
} commands[] = {
	{"mount", "aletheia mount [MOUNTPOINT] [--store URI] [--blobs URI] [--cache-dir DIR] [--cache-size SIZE]\n"
	          "               [--foreground] [--allow-delete] [--no-passthrough] [-o FUSE_OPTION]...",
	 "mount the tracker (runs in the background unless --foreground)",
	 "  --store URI          metadata store: local:DIR (SQLite; default $XDG_DATA_HOME/aletheia)\n"
	 "                       or firestore:PROJECT_ID\n"
	 "  --blobs URI          blob store: file:///DIR (default: beside the local store),\n"
	 "                       s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX]\n"
	 "  --cache-dir DIR      local blob cache (default $XDG_CACHE_HOME/aletheia)\n"
	 "  --cache-size SIZE    cache size limit, e.g. 10G\n"
	 "  --foreground         stay in the foreground until unmounted\n"
	 "  --allow-delete       allow rm and rmdir of tracked things\n"
	 "  --no-passthrough     read local blobs through the daemon, not by the kernel directly\n"
	 "  -o FUSE_OPTION       pass an option to FUSE (repeatable); -o allow_other shares the\n"
	 "                       mount with every user, who each write only their own runs\n"},
	{"umount", "aletheia umount [MOUNTPOINT] [--lazy]",
	 "wait for pending writes to reach the backend, then unmount",
	 "  -l, --lazy           detach the mount even while files and shells use it; the daemon\n"
	 "                       ends, delivering their writes, once the last is closed\n"},
	{"new-run", "aletheia new-run PROJECT/EXPERIMENT [--mount MOUNTPOINT]",
	 "create the next run of an experiment and print its absolute path",
	 "  --mount MOUNTPOINT   the mount to use\n"},
	{"run", "aletheia run --exper PROJECT/EXPERIMENT [--fold N] [--model M] [--param KEY=VALUE]...\n"
	        "             [--require-clean] [--system-metrics-interval SECONDS]\n"
	        "             [--heartbeat-interval SECONDS] [--mount MOUNTPOINT] -- COMMAND [ARGS...]",
	 "run a command as a new run, capturing its console output into output.log, its system\n"
	 "            metrics into metrics/system/ and keeping a heartbeat (a run whose wrapper dies\n"
	 "            shows crashed)",
	 "  --exper P/E          project and experiment of the new run (required)\n"
	 "  --fold N             the run's fold (an integer)\n"
	 "  --model M            the run's model name\n"
	 "  --param KEY=VALUE    a hyperparameter, written to params/KEY (repeatable; KEY may contain '/')\n"
	 "  --require-clean      refuse to run when the git working tree has uncommitted changes\n"
	 "  --system-metrics-interval SECONDS\n"
	 "                       sample the command's processes, the machine and its NVIDIA GPUs\n"
	 "                       every SECONDS (default 10; 0 turns system metrics off)\n"
	 "  --heartbeat-interval SECONDS\n"
	 "                       write the run's heartbeat every SECONDS (default 10); the run shows\n"
	 "                       crashed once its heartbeat is six intervals old\n"
	 "  --mount MOUNTPOINT   the mount to use\n"},
	{"status", "aletheia status [MOUNTPOINT]", "print the mount's .aletheia/status", NULL},
	{"dataset import", "aletheia dataset import PROJECT/DATASET URL... [--as NAME] [--mount MOUNTPOINT]",
	 "register files that live at http(s)://, s3://BUCKET/KEY or gs://BUCKET/KEY\n"
	 "            URLs in a dataset without copying them; they are fetched on first read",
	 "  --as NAME            the file's name in the dataset (one URL only; default: the URL's\n"
	 "                       last path segment); s3:// reads AWS_ACCESS_KEY_ID,\n"
	 "                       AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION and\n"
	 "                       AWS_ENDPOINT_URL_S3; gs:// Google credentials or STORAGE_EMULATOR_HOST\n"
	 "  --mount MOUNTPOINT   the mount to use\n"},
	{"dataset prefetch", "aletheia dataset prefetch PROJECT/DATASET [--mount MOUNTPOINT]",
	 "fetch a whole dataset into the mount's cache before training (resumable)",
	 "  --mount MOUNTPOINT   the mount to use\n"},
	{"fsck", "aletheia fsck [MOUNTPOINT] [--download]",
	 "check every stored blob the records use (local blobs hashed in full, remote\n"
	 "            objects sized, cached copies hashed) and name the files of damaged ones;\n"
	 "            exit 1 when anything is damaged, missing or could not be checked",
	 "  --download           also download remote objects (S3, GCS, imported URLs) and hash them\n"},
	{"ls", "aletheia ls PROJECT/EXPERIMENT [--sort [-]COLUMN] [--limit N] [--where KEY=VALUE]...\n"
	       "            [--columns A,B,...] [--mount MOUNTPOINT]",
	 "print an experiment's runs table (its runs.csv) aligned for a terminal, sorted,\n"
	 "            filtered; exit 1 when runs.csv cannot be read",
	 "  --sort COLUMN        sort by COLUMN, ascending; -COLUMN descending (numbers by value\n"
	 "                       before text, nan then empty cells last); COLUMN is a header of\n"
	 "                       runs.csv or a metric's or param's name without metric. / param.\n"
	 "  --limit N            print only the first N runs (after sorting)\n"
	 "  --where KEY=VALUE    only runs whose KEY column is exactly VALUE (repeatable: all must hold)\n"
	 "  --columns A,B,...    the columns to print (default: all but created, ended, the .min and\n"
	 "                       .max columns, and columns empty in every run printed; id is always first)\n"
	 "  --mount MOUNTPOINT   the mount to use\n"},
	{"diff", "aletheia diff RUN RUN [--mount MOUNTPOINT]",
	 "print what differs between two runs: status, fold, model, git commit and dirty\n"
	 "            flag, tags, params and each metric's last, min and max, one line each,\n"
	 "            aligned; a value a run lacks shows as (none). RUN is a run's folder or\n"
	 "            PROJECT/EXPERIMENT/ID under the mount. Exit as diff(1): 0 the same, 1 they\n"
	 "            differ, 2 trouble",
	 "  --mount MOUNTPOINT   the mount to use\n"},
	{"help", "aletheia --help | --version | help [COMMAND]", NULL, NULL},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char trailer[] =
	"MOUNTPOINT defaults to $ALETHEIA_MOUNT, else /mnt/aletheia.\n"
	"The exit status of run is its command's (128+N when killed by signal N).\n"
	"See aletheia(1).\n";

static void print_usage(FILE *f)
{
	fputs("usage:\n", f);
	for (size_t k = 0; k < NCOMMANDS; k++)
		fprintf(f, "  %s\n", commands[k].line);
}

/* The entries of cmd: "dataset" is both of its subcommands. */
static int matches(const char *name, const char *cmd)
{
	size_t n = strlen(cmd);
	return strcmp(name, cmd) == 0 || (strncmp(name, cmd, n) == 0 && name[n] == ' ');
}

static void print_help(FILE *f, const char *cmd)
{
	int any = 0;
	for (size_t k = 0; k < NCOMMANDS; k++) {
		if (!matches(commands[k].name, cmd))
			continue;
		fprintf(f, "%susage: %s\n", any++ ? "\n" : "", commands[k].line);
		if (commands[k].what) {
			/* the overview's indented continuation lines, as a paragraph here */
			const char *w = commands[k].what;
			fprintf(f, "\n%s: ", commands[k].name);
			for (; *w; w++) {
				fputc(*w, f);
				if (*w == '\n')
					w += strspn(w + 1, " ");
			}
			fputs(".\n", f);
		}
		if (commands[k].options)
			fprintf(f, "\nOptions:\n%s", commands[k].options);
	}
	fprintf(f, "\n%s", trailer);
}

static void print_all_help(void)
{
	print_usage(stdout);
	fputs("\naletheia: an ML experiment tracker that is a filesystem.\n\nCommands:\n", stdout);
	for (size_t k = 0; k < NCOMMANDS; k++)
		if (commands[k].what)
			printf("  %-9s%s%s\n", commands[k].name, strlen(commands[k].name) > 9 ?
				"\n            " : " ", commands[k].what);
	for (size_t k = 0; k < NCOMMANDS; k++)
		if (commands[k].options)
			printf("\nOptions of %s:\n%s", commands[k].name, commands[k].options);
	printf("\n%s", trailer);
}

static int known_command(const char *cmd)
{
	for (size_t k = 0; k < NCOMMANDS; k++)
		if (matches(commands[k].name, cmd))
			return 1;
	return 0;
}

int al_cli_help(const char *cmd)
{
	if (cmd && known_command(cmd))
		print_help(stdout, cmd);
	else
		print_all_help();
	return 0;
}

static int is_help(const char *arg)
{
	return arg && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0);
}

int al_cli_usage(const char *cmd)
{
	int any = 0;
	for (size_t k = 0; cmd && k < NCOMMANDS; k++)
		if (matches(commands[k].name, cmd))
			fprintf(stderr, "%s %s\n", any++ ? "      " : "usage:", commands[k].line);
	if (!any)
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
		else if (errno == EACCES)
			al_cli_fail("cannot open %s: %s; %s", path, strerror(EACCES), al_cli_fix(EACCES, path, ""));
		else
			al_cli_fail("%s is not an aletheia mount with %s (%s); mount it with `aletheia "
				"mount %s`", mount, name, strerror(errno), mount);
	}
	return fd;
}

const char *al_cli_fix(int err, const char *path, const char *fix)
{
	char p[4096];
	struct stat st;
	if (err != EACCES)
		return fix;
	/* Every folder of the tree can be looked into: a folder on the way that cannot is the
	 * root of a mount its user did not share (README "Many users on one machine"). */
	snprintf(p, sizeof(p), "%s", path);
	for (;;) {
		if (stat(p, &st) != 0 && errno == EACCES)
			return "the mount is not shared with other users: mount it with -o allow_other (a "
				"user's own mount also needs user_allow_other in /etc/fuse.conf)";
		char *slash = strrchr(p, '/');
		if (!slash || slash == p)
			break;
		*slash = '\0';
	}
	return "it belongs to another user: only a run's creator (and root) writes in it, and only "
		"the creator of a project, experiment or dataset renames or deletes it; write into "
		"your own run (aletheia new-run)";
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
	const char *self = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	/* Called as mount(8)'s helper, mount.aletheia or mount.fuse.aletheia (README "fstab and
	 * systemd"), or as umount(8)'s, umount.fuse.aletheia. */
	if (strncmp(self, "mount.", 6) == 0)
		return al_cli_mount_helper(argc, argv);
	if (strncmp(self, "umount.", 7) == 0)
		return al_cli_umount_helper(argc, argv);
	if (!cmd)
		return al_cli_usage(NULL);
	if (is_help(cmd) || strcmp(cmd, "help") == 0) {
		/* aletheia help [COMMAND [SUBCOMMAND]] */
		char name[64] = "";
		int more = argc > 3 && !is_help(argv[3]);
		if (argc > 2 && strcmp(cmd, "help") == 0 && !is_help(argv[2]))
			snprintf(name, sizeof(name), "%s%s%s", argv[2], more ? " " : "", more ? argv[3] : "");
		if (*name && !known_command(name)) {
			al_cli_fail("unknown command '%s'; see aletheia --help", name);
			return al_cli_usage(NULL);
		}
		return al_cli_help(*name ? name : NULL);
	}
	/* aletheia COMMAND --help, aletheia dataset import --help: only as the first argument, so a
	 * --help of run's own command (after --) is the command's */
	if (known_command(cmd) && strcmp(cmd, "help") != 0) {
		char name[64];
		if (is_help(argv[2 < argc ? 2 : 0]) && argc > 2)
			return al_cli_help(cmd);
		snprintf(name, sizeof(name), "%s %s", cmd, argc > 2 ? argv[2] : "");
		if (argc > 3 && known_command(name) && is_help(argv[3]))
			return al_cli_help(name);
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
