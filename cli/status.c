/* aletheia: `aletheia status` (prints MNT/.aletheia/status) and `aletheia umount` (waits for
 * pending writes, unmounts with fusermount3, waits for the daemon to exit). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "aletheia/common.h"
#include "cli/cli.h"

#define STATUS_MAX 65536
#define DAEMON_EXIT_WAIT_MS 60000
/* How long umount waits for pending writes that stopped going down: while the metastore is
 * unreachable, and while it answers (README "Firestore"). They stay journaled either way. */
#define PENDING_OFFLINE_WAIT_MS 10000
#define PENDING_STUCK_WAIT_MS 60000

/* Reads MNT/.aletheia/status into buf (NUL-terminated); 0, or the errno of the failure. */
static int read_status(char *buf, size_t size, const char *mount)
{
	char path[4096];
	size_t len = 0;
	int fd;
	snprintf(path, sizeof(path), "%s/.aletheia/status", mount);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	for (;;) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;
			close(fd);
			return err;
		}
		if (n == 0 || (len += (size_t)n) == size - 1)
			break;
	}
	buf[len] = '\0';
	close(fd);
	return 0;
}

/* The integer after "key: " at the start of a line of text; def when absent. */
static long long status_field(const char *text, const char *key, long long def)
{
	size_t n = strlen(key);
	const char *line = text;
	while (line && *line) {
		if (strncmp(line, key, n) == 0 && line[n] == ':')
			return strtoll(line + n + 1, NULL, 10);
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return def;
}

/* The text after "key: " on its line (at most cap - 1 bytes) into out; "" when absent. */
static void status_text(char *out, size_t cap, const char *text, const char *key)
{
	size_t n = strlen(key);
	const char *line = text;
	out[0] = '\0';
	while (line && *line) {
		if (strncmp(line, key, n) == 0 && line[n] == ':') {
			const char *v = line + n + 1 + (line[n + 1] == ' ');
			snprintf(out, cap, "%.*s", (int)strcspn(v, "\n"), v);
			return;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
}

/* A process has ended once its last thread has: the thread group's leader shows 'Z' as soon as
 * it exits, while its other threads may still be ending and holding the files (the cache's and
 * the store's locks) they share. A zombie with one thread left has closed them; only its parent
 * (often init, slow to reap here) still has to collect it. */
static int daemon_alive(pid_t pid)
{
	char path[64], line[256];
	FILE *f;
	int alive = kill(pid, 0) == 0, zombie = 0;
	long threads = 1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (alive && (f = fopen(path, "r"))) {
		while (fgets(line, sizeof(line), f)) {
			if (!strncmp(line, "State:", 6))
				zombie = strchr(line, 'Z') != NULL;
			else if (!strncmp(line, "Threads:", 8))
				threads = strtol(line + 8, NULL, 10);
		}
		fclose(f);
		if (zombie && threads <= 1)
			alive = 0;
	}
	return alive;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void not_a_mount(const char *mount, int err)
{
	if (err == ENOTCONN)
		al_cli_fail("%s: the aletheia daemon is gone (%s); run `aletheia umount %s`, then mount "
			"again", mount, strerror(err), mount);
	else if (err == EACCES)   /* another user's mount (README "Many users on one machine") */
		al_cli_fail("%s: %s; %s", mount, strerror(err), al_cli_fix(err, mount, ""));
	else
		al_cli_fail("%s is not an aletheia mount (%s); mount it with `aletheia mount %s`", mount,
			strerror(err), mount);
}

int al_cli_check_mount(const char *mount)
{
	char path[4096];
	struct stat st;
	if (snprintf(path, sizeof(path), "%s/.aletheia/status", mount) >= (int)sizeof(path)) {
		al_cli_fail("the mount point %s is too long", mount);
		return -1;
	}
	if (stat(path, &st) == 0)
		return 0;
	not_a_mount(mount, errno);
	return -1;
}

/* Parses [MOUNTPOINT]; NULL after printing usage. */
static const char *mount_arg(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && argv[1][0] == '-' && argv[1][1] != '\0')) {
		al_cli_usage(argv[0]);
		return NULL;
	}
	return argc == 2 ? argv[1] : al_cli_default_mount();
}

int al_cli_status(int argc, char **argv)
{
	char *buf = NULL;
	const char *mount = mount_arg(argc, argv);
	int rc = 1, err;
	if (!mount)
		return 2;
	buf = malloc(STATUS_MAX);
	if (!buf) {
		al_cli_fail("out of memory");
		goto cleanup;
	}
	if ((err = read_status(buf, STATUS_MAX, mount)) != 0) {
		not_a_mount(mount, err);
		goto cleanup;
	}
	fputs(buf, stdout);
	rc = fflush(stdout) == 0 ? 0 : 1;
cleanup:
	free(buf);
	return rc;
}

/* Runs `fusermount3 -u MOUNT` (-z too when lazy); 0 when it succeeded. */
static int fusermount_unmount(const char *mount, int lazy)
{
	int status;
	pid_t pid;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		if (lazy)
			execlp("fusermount3", "fusermount3", "-u", "-z", mount, (char *)NULL);
		else
			execlp("fusermount3", "fusermount3", "-u", mount, (char *)NULL);
		dprintf(STDERR_FILENO, "aletheia: cannot run fusermount3: %s; install fuse3\n",
			strerror(errno));
		_exit(127);
	}
	if (pid < 0) {
		al_cli_fail("cannot start fusermount3: %s; retry", strerror(errno));
		return -1;
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int al_cli_umount(int argc, char **argv)
{
	char *buf = NULL, *args[3] = {argv[0], NULL, NULL};
	const char *mount;
	long long pid, pending, shown = -1, least = -1;
	long still = 0;
	int rc = 1, err, lazy = 0, n = 1;
	/* -l/--lazy: umount(8)'s -l (README "fstab and systemd"), as fusermount3 -z does it. */
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-l") || !strcmp(argv[i], "--lazy"))
			lazy = 1;
		else if (n < 3)
			args[n++] = argv[i];
		else
			return al_cli_usage(argv[0]);
	if (!(mount = mount_arg(n, args)))
		return 2;
	buf = malloc(STATUS_MAX);
	if (!buf) {
		al_cli_fail("out of memory");
		goto cleanup;
	}
	err = read_status(buf, STATUS_MAX, mount);
	if (err == ENOTCONN) {
		/* The daemon died: nothing to wait for, only the stale mount to remove. */
		if (fusermount_unmount(mount, lazy) != 0) {
			al_cli_fail("cannot unmount %s; try `fusermount3 -u -z %s`", mount, mount);
			goto cleanup;
		}
		rc = 0;
		goto cleanup;
	}
	if (err != 0) {
		not_a_mount(mount, err);
		goto cleanup;
	}
	pid = status_field(buf, "pid", 0);
	/* Pending writes are the daemon's to flush; unmounting before would leave them to the
	 * next mount, so wait here where the user sees the count, as long as they go down. */
	while ((pending = status_field(buf, "pending_writes", 0)) > 0) {
		char offline[160], why[512];
		int off;
		if (pending != shown) {
			printf("waiting for %lld pending writes\n", pending);
			fflush(stdout);
			shown = pending;
		}
		if (least < 0 || pending < least) {
			least = pending;
			still = 0;
		}
		status_text(offline, sizeof(offline), buf, "offline_since");
		off = *offline && strcmp(offline, "none") != 0;
		if (still >= (off ? PENDING_OFFLINE_WAIT_MS : PENDING_STUCK_WAIT_MS)) {
			if (off)
				snprintf(why, sizeof(why), "the metastore is unreachable since %.*s",
					(int)strcspn(offline, " "), offline);
			else
				status_text(why, sizeof(why), buf, "last_error");
			fprintf(stderr, "aletheia: %lld writes not delivered yet (%s); they stay journaled "
				"in the cache folder, and the next mount with it delivers them\n", pending, why);
			break;
		}
		sleep_ms(500);
		still += 500;
		if ((err = read_status(buf, STATUS_MAX, mount)) != 0) {
			not_a_mount(mount, err);
			goto cleanup;
		}
	}
	if (fusermount_unmount(mount, lazy) != 0) {
		al_cli_fail("cannot unmount %s; close the files and shells using it (see `fuser -m %s`) "
			"and retry, or detach it now with `aletheia umount --lazy %s`", mount, mount, mount);
		goto cleanup;
	}
	/* Detached while in use, the mount lives on for those files and shells: the daemon serves
	 * them, and ends (delivering what they wrote) when the last is closed. Nothing to wait for. */
	if (lazy)
		pid = 0;
	for (int waited = 0; pid > 0 && daemon_alive((pid_t)pid); waited += 100) {
		if (waited >= DAEMON_EXIT_WAIT_MS) {
			al_cli_fail("the aletheia daemon (pid %lld) is still running 60 s after unmounting; "
				"check its log, or kill it", pid);
			goto cleanup;
		}
		sleep_ms(100);
	}
	rc = 0;
cleanup:
	free(buf);
	return rc;
}
