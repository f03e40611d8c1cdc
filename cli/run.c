/* aletheia: `aletheia run`: creates a run, runs a command in it, tees the command's console output
 * into output.log, passes on the signals the command did not get itself and records how the command
 * ended in status. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "aletheia/common.h"
#include "aletheia/git.h"
#include "cli/cli.h"

#define MAX_PARAMS 256
/* Once the command exited, what it left running (a background job, a daemon) may still hold its
 * output: it is read until every holder closed it, as `| tee` does, but not after it stayed silent
 * for QUIET_MS or LEFTOVER_MAX_MS after the exit; then a background copy goes on showing it
 * (README "The command line"). */
#define QUIET_MS 2000
#define LEFTOVER_MAX_MS 30000

/* The signals passed on to the command (README "The command line"). */
static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

static int valid_param_key(const char *key)
{
	const char *p = key;
	if (!*key || *key == '/')
		return 0;
	while (*p) {
		const char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		if (!*end)
			break;
		p = end + 1;
		if (!*p)
			return 0;
	}
	return 1;
}

static int valid_integer(const char *s)
{
	char *end;
	if (!*s)
		return 0;
	errno = 0;
	(void)strtoll(s, &end, 10);
	return !*end && !errno;
}

/* Seconds from 0.1 to 86400 (or 0 when zero_ok) into *out; -1 when s is none of those. */
static int parse_seconds(double *out, const char *s, int zero_ok)
{
	char *end;
	double v;
	errno = 0;
	v = strtod(s, &end);
	if (!*s || *end || errno || !(v == 0 ? zero_ok : v >= 0.1 && v <= 86400))
		return -1;
	*out = v;
	return 0;
}

/* The top of the repository enclosing cwd, for the message; cwd itself if none is found. */
static void repo_top(char *out, size_t size, const char *cwd)
{
	char path[PATH_MAX];
	snprintf(out, size, "%s", cwd);
	snprintf(path, sizeof(path), "%s", cwd);
	for (;;) {
		char probe[PATH_MAX + 8];
		char *slash;
		snprintf(probe, sizeof(probe), "%s/.git", path);
		if (access(probe, F_OK) == 0) {
			snprintf(out, size, "%s", *path ? path : "/");
			return;
		}
		slash = strrchr(path, '/');
		if (!slash || !*path)
			return;
		*slash = '\0';
	}
}

/* 0 when the working directory is clean or not in a repository; else prints why and returns 1. */
static int check_clean(void)
{
	char cwd[PATH_MAX], top[PATH_MAX];
	al_git_state *state = NULL;
	int rc;
	if (!getcwd(cwd, sizeof(cwd))) {
		al_cli_fail("cannot read the working directory: %s; cd into your repository", strerror(errno));
		return 1;
	}
	rc = al_git_capture(&state, cwd, NULL);
	if (rc == AL_ENOTFOUND)
		return 0;
	if (rc < 0) {
		al_cli_fail("cannot read the git state of %s: %s; fix the repository or drop --require-clean",
			cwd, al_error_last());
		return 1;
	}
	rc = state->dirty ? 1 : 0;
	al_git_state_free(state);
	if (rc) {
		repo_top(top, sizeof(top), cwd);
		al_cli_fail("working tree of %s is dirty; commit or stash, or drop --require-clean", top);
	}
	return rc;
}

/* 1 when one --param key is a folder of another's (a=… and a/b=…): params/a cannot be both a value
 * and a folder, so the run is not created for a write that must fail. */
static int params_clash(const char **params, int nparams, const char **a, const char **b)
{
	for (int i = 0; i < nparams; i++)
		for (int j = 0; j < nparams; j++) {
			size_t n = (size_t)(strchr(params[i], '=') - params[i]);
			if (i != j && strncmp(params[j], params[i], n) == 0 && params[j][n] == '/') {
				*a = params[i];
				*b = params[j];
				return 1;
			}
		}
	return 0;
}

/* Writes fold, model and params/KEY files into the new run. */
static int write_settings(const char *run, const char *fold, const char *model, const char **params,
	int nparams)
{
	char *path = NULL;
	int rc = 0;
	if (fold) {
		if (asprintf(&path, "%s/fold", run) < 0)
			goto nomem;
		if ((rc = al_cli_write_file(path, fold)) < 0)
			goto cleanup;
		free(path);
		path = NULL;
	}
	if (model) {
		if (asprintf(&path, "%s/model", run) < 0)
			goto nomem;
		if ((rc = al_cli_write_file(path, model)) < 0)
			goto cleanup;
		free(path);
		path = NULL;
	}
	if (nparams > 0) {
		if (asprintf(&path, "%s/params", run) < 0)
			goto nomem;
		if ((rc = al_cli_ensure_dir(path)) < 0)
			goto cleanup;
		free(path);
		path = NULL;
	}
	for (int k = 0; k < nparams; k++) {
		const char *eq = strchr(params[k], '=');
		size_t base;
		if (asprintf(&path, "%s/params/%.*s", run, (int)(eq - params[k]), params[k]) < 0)
			goto nomem;
		/* KEY a/b/c: create params/a and params/a/b first. */
		base = strlen(run) + strlen("/params/");
		for (char *s = path + base; (s = strchr(s, '/')) != NULL; s++) {
			*s = '\0';
			rc = al_cli_ensure_dir(path);
			*s = '/';
			if (rc < 0)
				goto cleanup;
		}
		if ((rc = al_cli_write_file(path, eq + 1)) < 0)
			goto cleanup;
		free(path);
		path = NULL;
	}
	goto cleanup;
nomem:
	al_cli_fail("out of memory");
	rc = AL_ENOMEM;
cleanup:
	free(path);
	return rc;
}

/* Writes all of buf to fd; -1 with errno on failure. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The parent of pid from /proc/PID/stat; -1 when it is gone. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *paren;
	int ppid = -1, fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* "PID (COMM) STATE PPID …": COMM may hold spaces and parentheses */
	if (!(paren = strrchr(buf, ')')) || sscanf(paren + 1, " %*c %d", &ppid) != 1)
		return -1;
	return (pid_t)ppid;
}

/* Whether pid is the command or one of its descendants. */
static int part_of_command(pid_t pid, pid_t child)
{
	for (int depth = 0; depth < 64 && pid > 1 && pid != getpid(); depth++) {
		if (pid == child)
			return 1;
		pid = parent_of(pid);
	}
	return 0;
}

/* Whether the command got this signal as well as aletheia, so passing it on would deliver it
 * twice. The terminal (si_code SI_KERNEL) signals its whole foreground process group, which the
 * command shares with aletheia unless it left it (setsid, setpgid); a terminal's hangup reaches
 * the session leader alone. A signal sent by the command or its own processes (to their process
 * group, ours) is not passed back. Any other kill(2) counts as sent to aletheia alone. */
static int command_got_it(const struct signalfd_siginfo *si, pid_t child)
{
	if (si->ssi_code == SI_KERNEL) {
		if (si->ssi_signo == SIGHUP && getsid(0) == getpid())
			return 0;
		return getpgid(child) == getpgrp();
	}
	return si->ssi_pid > 0 && part_of_command((pid_t)si->ssi_pid, child);
}

/* Reads the signals queued on sig_fd and passes on those the command did not get; child 0 (the
 * command was reaped: its pid may be another process's by now) drops them. Returns how many
 * there were besides SIGCHLD. */
static int pass_signals(int sig_fd, pid_t child)
{
	struct signalfd_siginfo si;
	int n = 0;

	while (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		n += si.ssi_signo != SIGCHLD;
		if (child > 0 && si.ssi_signo != SIGCHLD && !command_got_it(&si, child))
			kill(child, (int)si.ssi_signo);
	}
	return n;
}

static long long ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What a ready pipe of poll's p holds, read into buf: its byte count; 0 when it closed (closed
 * here: p->fd -1, *open_fds one less); -1 when it was not ready or the read was interrupted. */
static ssize_t pipe_read(struct pollfd *p, char *buf, size_t cap, int *open_fds)
{
	ssize_t got;
	if (p->fd < 0 || !(p->revents & (POLLIN | POLLHUP | POLLERR)))
		return -1;
	got = read(p->fd, buf, cap);
	if (got < 0 && (errno == EINTR || errno == EAGAIN))
		return -1;
	if (got <= 0) {
		close(p->fd);
		p->fd = -1;
		(*open_fds)--;
		return 0;
	}
	return got;
}

/* What the command left running still holds its output (fds[0] stdout, fds[1] stderr; -1 when
 * closed): a child of ours copies it on to the console until they close it, so that they are not
 * killed by SIGPIPE nor blocked on a full pipe when `aletheia run` exits. The run has ended by
 * then (its files are read-only): the copy is shown, not captured. Closes fds in the caller. */
static void show_leftovers(int fds[2])
{
	pid_t pid;
	if (fds[0] < 0 && fds[1] < 0)
		return;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		struct pollfd pfd[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
		const int console[2] = {STDOUT_FILENO, STDERR_FILENO};
		int console_ok[2] = {1, 1}, open_fds = (fds[0] >= 0) + (fds[1] >= 0);
		char buf[65536];
		/* SIGPIPE stays ignored (spawn): a closed console must not end the copy, and with it
		 * its writers. */
		while (open_fds > 0) {
			if (poll(pfd, 2, -1) < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			for (int k = 0; k < 2; k++) {
				ssize_t got = pipe_read(&pfd[k], buf, sizeof(buf), &open_fds);
				if (got > 0 && console_ok[k] && write_all(console[k], buf, (size_t)got) < 0) {
					console_ok[k] = 0;
				}
			}
		}
		_exit(0);
	}
	if (pid < 0)
		al_cli_fail("cannot start a process to show the output of what the command left "
			"running: %s; it gets a closed pipe", strerror(errno));
	for (int k = 0; k < 2; k++)
		if (fds[k] >= 0)
			close(fds[k]);
	fds[0] = fds[1] = -1;
}

/* Reads the child's stdout and stderr pipes, copying each to output.log and to the matching
 * console stream, and passes signals on (sig_fd) until the child exits, even when its pipes are
 * closed. After the exit (*ended: when) it reads on until both pipes close, unless they stay
 * silent for QUIET_MS, LEFTOVER_MAX_MS pass or a signal comes: then left[] holds the pipes still
 * open (else -1). Returns the child's wait status. */
static int tee_and_wait(pid_t pid, int out_fd, int err_fd, int sig_fd, int log_fd,
	const char *log_path, al_cli_watch *watch, struct rusage *ru, struct timespec *ended,
	int left[2])
{
	struct pollfd pfd[3] = {{.fd = out_fd, .events = POLLIN}, {.fd = err_fd, .events = POLLIN},
		{.fd = sig_fd, .events = POLLIN}};
	const int console[2] = {STDOUT_FILENO, STDERR_FILENO};
	int console_ok[2] = {1, 1}, log_ok = 1, open_fds = 2, exited = 0, status = 0;
	long long quiet_at = 0, give_up_at = 0;
	char buf[65536];

	while (open_fds > 0 || !exited) {
		int wait_ms = 500, n;
		if (watch) {
			int due = al_cli_watch_tick(watch);
			if (due < wait_ms)
				wait_ms = due;
		}
		if (exited) {
			long long now = ms_now(), until = quiet_at < give_up_at ? quiet_at : give_up_at;
			if (now >= until)
				break;
			if (until - now < wait_ms)
				wait_ms = (int)(until - now);
		}
		n = poll(pfd, 3, wait_ms);
		if (n < 0 && errno != EINTR)
			break;
		for (int k = 0; n > 0 && k < 2; k++) {
			ssize_t got = pipe_read(&pfd[k], buf, sizeof(buf), &open_fds);
			if (got <= 0)
				continue;
			if (exited)
				quiet_at = ms_now() + QUIET_MS;
			if (log_ok && write_all(log_fd, buf, (size_t)got) < 0) {
				log_ok = 0;
				al_cli_fail("cannot write %s: %s; the command goes on, its output is no "
					"longer captured, and output.log is not recorded (a file is recorded "
					"whole or not at all)", log_path, strerror(errno));
			}
			/* A closed console (e.g. `| head`, a terminal hung up) must not stop the command
			 * or the log. */
			if (console_ok[k] && write_all(console[k], buf, (size_t)got) < 0)
				console_ok[k] = 0;
		}
		/* After the exit a signal (Ctrl-C) ends the wait for what the command left running. */
		if (n > 0 && (pfd[2].revents & POLLIN) && pass_signals(sig_fd, exited ? 0 : pid) > 0 &&
		    exited)
			break;
		if (!exited && wait4(pid, &status, WNOHANG, ru) == pid) {
			exited = 1;
			clock_gettime(CLOCK_MONOTONIC, ended);
			al_cli_watch_exited(watch);
			quiet_at = ms_now() + QUIET_MS;
			give_up_at = ms_now() + LEFTOVER_MAX_MS;
		}
	}
	left[0] = pfd[0].fd;
	left[1] = pfd[1].fd;
	while (!exited) {
		if (wait4(pid, &status, 0, ru) == pid) {
			exited = 1;
			clock_gettime(CLOCK_MONOTONIC, ended);
		} else if (errno != EINTR) {
			break;
		}
	}
	return status;
}

/* Forks and execs argv with stdout/stderr on pipes; returns its wait status, or -1 when it
 * could not be started (already reported). The forwarded signals (and SIGCHLD) are blocked in
 * aletheia and read from a signalfd while the command runs, so aletheia outlives a Ctrl-C or a
 * hangup to capture the command's last words and record its end; one that was ignored when
 * aletheia started (nohup, a background job of a non-interactive shell) stays ignored, by both. */
static int spawn(char **argv, int log_fd, const char *log_path, const char *run,
	double metrics_every, double beat_every, int left[2])
{
	al_cli_watch *watch = NULL;
	struct rusage ru;
	struct timespec t0, t1;
	struct sigaction ign = {0}, old_pipe, now;
	sigset_t block, old_mask;
	int out[2] = {-1, -1}, err[2] = {-1, -1}, sig_fd = -1, status = -1;
	pid_t pid;

	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		al_cli_fail("cannot create a pipe: %s; close some files and retry", strerror(errno));
		goto cleanup;
	}
	sigemptyset(&block);
	sigaddset(&block, SIGCHLD);
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		if (sigaction(forwarded[i], NULL, &now) == 0 && now.sa_handler != SIG_IGN)
			sigaddset(&block, forwarded[i]);
	/* Blocked before the fork: a signal arriving meanwhile waits in the signalfd. */
	sigprocmask(SIG_BLOCK, &block, &old_mask);
	if ((sig_fd = signalfd(-1, &block, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		al_cli_fail("cannot create a signalfd: %s; close some files and retry", strerror(errno));
		sigprocmask(SIG_SETMASK, &old_mask, NULL);
		goto cleanup;
	}
	ign.sa_handler = SIG_IGN;
	sigemptyset(&ign.sa_mask);
	sigaction(SIGPIPE, &ign, &old_pipe);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		sigaction(SIGPIPE, &old_pipe, NULL);
		sigprocmask(SIG_SETMASK, &old_mask, NULL);
		if (dup2(out[1], STDOUT_FILENO) < 0 || dup2(err[1], STDERR_FILENO) < 0)
			_exit(127);
		execvp(argv[0], argv);
		int e = errno;
		dprintf(STDERR_FILENO, "aletheia: cannot run %s: %s; check the command name and PATH\n",
			argv[0], strerror(e));
		_exit(e == ENOENT ? 127 : 126);
	}
	if (pid < 0) {
		al_cli_fail("cannot start %s: %s; retry when the system has free processes", argv[0],
			strerror(errno));
		sigprocmask(SIG_SETMASK, &old_mask, NULL);
		goto cleanup;
	}
	close(out[1]);
	close(err[1]);
	out[1] = err[1] = -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	memset(&ru, 0, sizeof(ru));
	/* A watch that cannot start (no memory) leaves the command running unwatched. */
	al_cli_watch_start(&watch, run, pid, metrics_every, beat_every);
	t1 = t0;
	status = tee_and_wait(pid, out[0], err[0], sig_fd, log_fd, log_path, watch, &ru, &t1, left);
	out[0] = err[0] = -1;
	al_cli_watch_end(watch, &ru, (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	/* Those the command got too (the Ctrl-C that ended it) are dropped; later ones are aletheia's
	 * own again, as before the command started. */
	pass_signals(sig_fd, 0);
	close(sig_fd);
	sig_fd = -1;
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
cleanup:
	if (sig_fd >= 0)
		close(sig_fd);
	for (int k = 0; k < 2; k++) {
		if (out[k] >= 0)
			close(out[k]);
		if (err[k] >= 0)
			close(err[k]);
	}
	return status;
}

/* 0 when the run's status is no longer running or crashed: the command ended the run itself
 * (`echo "failed 7" > $ALETHEIA_RUN_DIR/status`), and what it wrote stays. */
static int still_running(const char *status_path)
{
	char *text = NULL;
	size_t len = 0;
	int running = al_cli_read_file(&text, &len, status_path) != 0 ||
		strncmp(text, "running", 7) == 0 || strncmp(text, "crashed", 7) == 0;
	free(text);
	return running;
}

#define CANONICAL_ENV "ALETHEIA_RUN_CANONICAL"

/* The daemon records as the run's command what follows the first "--" of this process's command
 * line (core/tree/run.c); run's options may put "--" elsewhere (`--model --`) or leave it out
 * (`run --exper p/e CMD`). So unless each option is one --name=value argument and a "--" comes
 * before the command, run starts again as `aletheia run OPTIONS -- CMD` (opts: the options so),
 * before anything is done. argv is main's from its "run" on; argv[-1] is the program. */
static void run_canonical(char **argv, char **opts, int nopts, char **command, int again)
{
	int i, n = 0, same = command - argv == nopts + 2 && strcmp(command[-1], "--") == 0;
	char **av;
	for (i = 0; same && i < nopts; i++)
		same = strcmp(argv[1 + i], opts[i]) == 0;
	if (same || again)
		return;
	for (i = 0; command[i]; i++)
		;
	if (!(av = calloc((size_t)(nopts + i + 4), sizeof(*av))))
		return;
	av[n++] = argv[-1];
	av[n++] = argv[0];
	for (i = 0; i < nopts; i++)
		av[n++] = opts[i];
	av[n++] = "--";
	for (i = 0; command[i]; i++)
		av[n++] = command[i];
	setenv(CANONICAL_ENV, "1", 1);   /* once: never a loop */
	execv("/proc/self/exe", av);
	unsetenv(CANONICAL_ENV);          /* no /proc: the command line as given */
	free(av);
}

int al_cli_run(int argc, char **argv)
{
	const char *mount = al_cli_default_mount(), *exper = NULL, *fold = NULL, *model = NULL;
	const char *params[MAX_PARAMS], *value;
	char **command = NULL;
	char *run = NULL, *log_path = NULL, *status_path = NULL;
	char word[64];
	int nparams = 0, require_clean = 0, log_fd = -1, started = 0, status, code, rc = 1;
	int left[2] = {-1, -1};   /* the output pipes, while what the command left running holds them */
	double metrics_every = 10, beat_every = 10;

	char **opts = calloc((size_t)argc + 1, sizeof(*opts));   /* each option as --name=value */
	int nopts = 0, again = getenv(CANONICAL_ENV) != NULL;

	unsetenv(CANONICAL_ENV);    /* not the command's */
	if (!opts) {
		al_cli_fail("out of memory");
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		int m, at = i;
		if (strcmp(argv[i], "--") == 0) {
			command = argv + i + 1;
			break;
		}
		if (argv[i][0] != '-') {
			command = argv + i;
			break;
		}
		if (strcmp(argv[i], "--require-clean") == 0) {
			require_clean = 1;
			if ((opts[nopts] = strdup(argv[i])))
				nopts++;
			continue;
		}
		if ((m = al_cli_option("--exper", argc, argv, &i, &value)) > 0) {
			exper = value;
		} else if (m == 0 && (m = al_cli_option("--fold", argc, argv, &i, &value)) > 0) {
			fold = value;
		} else if (m == 0 && (m = al_cli_option("--model", argc, argv, &i, &value)) > 0) {
			model = value;
		} else if (m == 0 && (m = al_cli_option("--mount", argc, argv, &i, &value)) > 0) {
			mount = value;
		} else if (m == 0 &&
			   (m = al_cli_option("--system-metrics-interval", argc, argv, &i, &value)) > 0) {
			if (parse_seconds(&metrics_every, value, 1) < 0) {
				al_cli_fail("--system-metrics-interval '%s' is not 0 or a number of seconds "
					"from 0.1 to 86400; give e.g. 10 (0 turns system metrics off)", value);
				return 2;
			}
		} else if (m == 0 && (m = al_cli_option("--heartbeat-interval", argc, argv, &i, &value)) > 0) {
			if (parse_seconds(&beat_every, value, 0) < 0) {
				al_cli_fail("--heartbeat-interval '%s' is not a number of seconds from 0.1 to "
					"86400; give e.g. 10", value);
				return 2;
			}
		} else if (m == 0 && (m = al_cli_option("--param", argc, argv, &i, &value)) > 0) {
			const char *eq = strchr(value, '=');
			char key[PATH_MAX];
			snprintf(key, sizeof(key), "%.*s", eq ? (int)(eq - value) : 0, value);
			if (!eq || !valid_param_key(key)) {
				al_cli_fail("--param '%s' is not KEY=VALUE; write e.g. --param lr=0.001 "
					"or --param optim/beta1=0.9", value);
				return 2;
			}
			if (nparams == MAX_PARAMS) {
				al_cli_fail("more than %d --param options; write the rest to "
					"$ALETHEIA_RUN_DIR/params/ from the command", MAX_PARAMS);
				return 2;
			}
			params[nparams++] = value;
		} else if (m == 0) {
			al_cli_fail("unknown option '%s'", argv[i]);
			return al_cli_usage("run");
		}
		if (m < 0)
			return al_cli_usage("run");
		if (strchr(argv[at], '=') ? (opts[nopts] = strdup(argv[at])) != NULL :
		    asprintf(&opts[nopts], "%s=%s", argv[at], value) >= 0)
			nopts++;
	}
	if (!exper || !command || !command[0]) {
		al_cli_fail("%s", !exper ? "--exper PROJECT/EXPERIMENT is required"
					 : "no command given; put it after --");
		return al_cli_usage("run");
	}
	if (al_cli_check_exper(exper) < 0) {
		al_cli_fail("'%s' is not PROJECT/EXPERIMENT; give both names, e.g. mnist/baseline", exper);
		return 2;
	}
	if (fold && !valid_integer(fold)) {
		al_cli_fail("--fold '%s' is not an integer; give e.g. --fold 0", fold);
		return 2;
	}
	{
		const char *a, *b;
		if (params_clash(params, nparams, &a, &b)) {
			al_cli_fail("--param '%s' and --param '%s': a key cannot be both a value and a folder "
				"of keys", a, b);
			return 2;
		}
	}
	run_canonical(argv, opts, nopts, command, again);
	if (require_clean && check_clean() != 0)
		return 1;

	if (al_cli_create_run(&run, mount, exper) < 0)
		goto cleanup;
	if (write_settings(run, fold, model, params, nparams) < 0)
		goto cleanup;
	if (asprintf(&log_path, "%s/output.log", run) < 0 ||
	    asprintf(&status_path, "%s/status", run) < 0) {
		al_cli_fail("out of memory");
		goto cleanup;
	}
	log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (log_fd < 0) {
		int err = errno;
		al_cli_fail("cannot write %s: %s; %s", log_path, strerror(err),
			al_cli_fix(err, log_path, "check that the mount is up"));
		goto cleanup;
	}
	if (setenv("ALETHEIA_RUN_DIR", run, 1) < 0) {
		al_cli_fail("cannot set ALETHEIA_RUN_DIR: %s", strerror(errno));
		goto cleanup;
	}
	/* Python block-buffers a pipe: unbuffered, its output shows up live and survives a kill. */
	setenv("PYTHONUNBUFFERED", "1", 0);

	status = spawn(command, log_fd, log_path, run, metrics_every, beat_every, left);
	started = 1;
	if (close(log_fd) != 0)
		al_cli_fail("cannot record %s: %s; none of the output is in it (a file is recorded whole "
			"or not at all)", log_path, strerror(errno));
	log_fd = -1;
	if (status == -1) {
		snprintf(word, sizeof(word), "failed 127");
		code = 127;
	} else if (WIFSIGNALED(status)) {
		code = 128 + WTERMSIG(status);
		snprintf(word, sizeof(word), "killed %d", code);
	} else {
		code = WEXITSTATUS(status);
		snprintf(word, sizeof(word), code == 0 ? "finished %d" : "failed %d", code);
	}
	rc = code;
	if (still_running(status_path) && al_cli_write_file(status_path, word) < 0 && rc == 0)
		rc = 1;
	show_leftovers(left);
cleanup:
	if (log_fd >= 0)
		close(log_fd);
	/* A run created but never started must not stay "running". */
	if (run && !started) {
		char *p = NULL;
		if (asprintf(&p, "%s/status", run) >= 0)
			al_cli_write_file(p, "failed");
		free(p);
	}
	free(run);
	free(log_path);
	free(status_path);
	for (int i = 0; i < nopts; i++)
		free(opts[i]);
	free(opts);
	return rc;
}
