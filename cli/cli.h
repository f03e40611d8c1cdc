/* aletheia: the command line's subcommands and the helpers they share (cli/ only; not a public header). */
#ifndef ALETHEIA_CLI_H
#define ALETHEIA_CLI_H

#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <stdio.h>

/* Subcommands: argv[0] is the subcommand's name; each returns the process exit status
 * (0 ok, 1 failure, 2 usage error; `run` returns its command's status). */
int al_cli_mount(int argc, char **argv);    /* cli/mount.c */
int al_cli_umount(int argc, char **argv);
int al_cli_new_run(int argc, char **argv);
int al_cli_run(int argc, char **argv);
int al_cli_status(int argc, char **argv);
int al_cli_dataset(int argc, char **argv);   /* cli/dataset.c */
int al_cli_dataset_prefetch(int argc, char **argv);   /* cli/prefetch.c */
int al_cli_fsck(int argc, char **argv);      /* cli/fsck.c */
int al_cli_ls(int argc, char **argv);        /* cli/ls.c */
int al_cli_diff(int argc, char **argv);      /* cli/diff.c */

/* A CSV file's rows (rows[0]: the header), each with ncols cells (cli/ls.c). */
typedef struct al_cli_table {
	char ***rows;
	size_t nrows, ncols;
} al_cli_table;
/* Parses RFC 4180 text (runs.csv); 0 or AL_ENOMEM. */
int al_cli_table_parse(al_cli_table *t, const char *s, size_t len);
void al_cli_table_free(al_cli_table *t);
/* Prints rows[i][cols[j]] aligned in columns for a terminal (display width of UTF-8 text, two
 * spaces between columns, control characters as spaces). */
void al_cli_table_print(FILE *f, char *const *const *rows, size_t nrows, const size_t *cols,
	size_t ncols);
/* A whole file into *out (NUL-terminated, free() it): 0 or an errno value. */
int al_cli_read_file(char **out, size_t *len, const char *path);

/* The settings of `aletheia mount`: the configuration file's, then the command line's. */
typedef struct al_cli_mount_opts {
	const char *mountpoint;
	const char *store, *blobs, *cache_dir;
	uint64_t cache_size;
	int foreground, allow_delete, debug, no_passthrough;
	int multi_user;            /* -o allow_other: set by al_cli_mount_start */
	const char *fuse_opts[32];
	int nfuse;
} al_cli_mount_opts;
/* Mounts with o (after its options were read): checks the mount point, daemonises unless
 * o->foreground, and returns the exit status once the mount answers (cli/mount.c). */
int al_cli_mount_start(const al_cli_mount_opts *o);
/* mount(8)'s and umount(8)'s helpers, `mount.aletheia SOURCE DIR [-o OPTIONS]` and
 * `umount.fuse.aletheia DIR` (the binary called by those names; cli/mounthelper.c). */
int al_cli_mount_helper(int argc, char **argv);
int al_cli_umount_helper(int argc, char **argv);
/* $XDG_CONFIG_HOME/aletheia/config (or $ALETHEIA_CONFIG): "key = value" lines into o
 * (cli/config.c). 0, or the exit status after printing the cause. */
int al_cli_read_config(al_cli_mount_opts *o);
/* The configuration file path (config= of the mount helper): 0, 1 when it cannot be read, 2 for
 * a bad line, after printing the cause. */
int al_cli_read_config_file(al_cli_mount_opts *o, const char *path);
/* $var if set and not empty, else $HOME/fallback (/root without HOME); malloc'd, NULL without
 * memory. */
char *al_cli_xdg_dir(const char *var, const char *fallback);

/* $ALETHEIA_MOUNT if set and not empty, else /mnt/aletheia. Borrowed. */
const char *al_cli_default_mount(void);
/* 0 when an aletheia mount answers at mount (MOUNT/.aletheia/status exists, the check of
 * `aletheia status`); else -1 after saying why on stderr (nothing mounted, the daemon gone, another
 * user's mount not shared) (cli/status.c). */
int al_cli_check_mount(const char *mount);
/* Opens MOUNT/.aletheia/NAME read-write (the channel of fsck, prefetch), its path in path: the
 * descriptor, or -1 after saying why on stderr (the daemon gone, not an aletheia mount). */
int al_cli_open_control(char *path, size_t len, const char *mount, const char *name);
/* The fix to print for a failure with errno err on path under a mount: for EACCES the cause
 * (a mount not shared with -o allow_other, or a run of another user), else fix. */
const char *al_cli_fix(int err, const char *path, const char *fix);
/* Prints "aletheia: <message>\n" on stderr: the cause, then "; " and the fix. */
void al_cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the usage line of subcommand cmd (NULL: all of them) on stderr; returns 2. */
int al_cli_usage(const char *cmd);
/* --help of a subcommand: its usage line on stdout, exit status 0. */
int al_cli_help(const char *cmd);
/* Matches option name ("--fold") at argv[*i], as "--fold V" or "--fold=V": 1 with *value set and
 * *i on the last argument used, 0 when argv[*i] is another argument, -1 when the value is missing. */
int al_cli_option(const char *name, int argc, char **argv, int *i, const char **value);

/* Helpers over the mount (cli/newrun.c). Each prints its own failure and returns a negative
 * al_error_code. */
/* mkdir path; an existing folder is fine. */
int al_cli_ensure_dir(const char *path);
/* Writes the whole of data to path (created or truncated) and closes it. */
int al_cli_write_file(const char *path, const char *data);
/* Splits "PROJECT/EXPERIMENT"; 0 when well formed (both non-empty, exactly one '/'). */
int al_cli_check_exper(const char *exper);
/* Creates the next run of exper ("P/E") under mount as described for `new-run`: *out is its
 * absolute path (free() it). */
int al_cli_create_run(char **out, const char *mount, const char *exper);

/* `aletheia run`'s watch over its command (cli/sysmon.c, README "System metrics", "Crashed runs"):
 * the heartbeat every beat_every seconds and, unless metrics_every is 0, system metrics under
 * RUN/metrics/system/ and RUN/system.json every metrics_every seconds. Failures are said once on
 * stderr and never stop the command. */
typedef struct al_cli_watch al_cli_watch;
int al_cli_watch_start(al_cli_watch **out, const char *run, pid_t child, double metrics_every,
	double beat_every);
/* Does what is due; returns the milliseconds until the next thing is due. */
int al_cli_watch_tick(al_cli_watch *w);
/* The command exited (its pid may be another process's by now): al_cli_watch_tick only beats, while
 * `aletheia run` reads what the command left running. */
void al_cli_watch_exited(al_cli_watch *w);
/* Once the command ended: system.json gets the kernel's account (ru: wait4's, NULL when unknown)
 * over wall_seconds; w is freed. */
void al_cli_watch_end(al_cli_watch *w, const struct rusage *ru, double wall_seconds);

#endif
