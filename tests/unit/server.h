/* aletheia unit tests: starting the local servers some tests talk to (scripts/gcs-emulator, the
 * Python servers of tests/unit, s3rver): found in the source tree, started on a free port. */
#ifndef AL_TEST_SERVER_H
#define AL_TEST_SERVER_H

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* out = SOURCE_ROOT/rel, found by walking up from the test executable (the build folder is
 * inside the source tree). 0, or -1 when there is no such readable file. */
static inline int test_find_source(char *out, size_t size, const char *rel)
{
	char exe[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return -1;
	exe[n] = '\0';
	while ((slash = strrchr(exe, '/')) && slash != exe) {
		*slash = '\0';
		if (snprintf(out, size, "%s/%s", exe, rel) < (int)size && access(out, R_OK) == 0)
			return 0;
	}
	return -1;
}

/* Runs argv (argv[0] looked up in PATH) with stdout and stderr into log_path, killed with the
 * test, and waits up to 30 s for a line of the log starting with prefix: the rest of that line
 * goes into rest. The child's pid, or -1 (see the log). */
static inline pid_t test_start_server(char *rest, size_t rest_size, const char *log_path,
	const char *prefix, char *const argv[])
{
	char line[512];
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd < 0)
			_exit(127);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid < 0)
		return -1;
	for (int i = 0; i < 300; i++) {
		FILE *f = fopen(log_path, "r");
		while (f && fgets(line, sizeof(line), f)) {
			if (strncmp(line, prefix, strlen(prefix)) == 0) {
				const char *r = line + strlen(prefix);
				size_t n = strcspn(r, "\r\n");
				if (n >= rest_size)
					n = rest_size - 1;
				memcpy(rest, r, n);
				rest[n] = '\0';
				fclose(f);
				return pid;
			}
		}
		if (f)
			fclose(f);
		if (waitpid(pid, NULL, WNOHANG) == pid)
			break;   /* it died before answering */
		usleep(100000);
	}
	fprintf(stderr, "%s did not start; see %s\n", argv[0], log_path);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/* Runs a Python test server of this folder (script, e.g. "auth_server.py", or the path in the
 * environment variable env_override) with args, killed with the test, and waits up to 10 s for
 * the port it writes into port_path. The port, or 0; *pid gets the child. */
static inline int test_start_python_server(pid_t *pid, const char *script, const char *env_override,
	const char *port_path, char *const args[])
{
	char path[PATH_MAX], rel[PATH_MAX], buf[32] = "";
	char *argv[16] = {"python3", path};
	const char *env = getenv(env_override);
	int port = 0, n = 2;

	snprintf(rel, sizeof(rel), "tests/unit/%s", script);
	if (env && *env)
		snprintf(path, sizeof(path), "%s", env);
	else if (test_find_source(path, sizeof(path), rel))
		return 0;
	for (int i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	*pid = fork();
	if (*pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv("/usr/bin/python3", argv);
		_exit(127);
	}
	if (*pid < 0)
		return 0;
	for (int i = 0; i < 200 && !port; i++) {
		FILE *f = fopen(port_path, "r");
		if (f) {
			if (fgets(buf, sizeof(buf), f))
				port = atoi(buf);
			fclose(f);
		}
		if (!port)
			usleep(50000);
	}
	return port;
}

static inline void test_stop_server(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGTERM);
		waitpid(*pid, NULL, 0);
		*pid = 0;
	}
}

/* 1 when node is on PATH (the servers are Node programs). */
static inline int test_have_node(void)
{
	return system("command -v node >/dev/null 2>&1") == 0;
}

#endif
