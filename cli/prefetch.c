/* aletheia: `aletheia dataset prefetch`: pulls a whole dataset into the mount's cache through
 * MNT/.aletheia/prefetch (the request written, the report read back through the same open file),
 * with a progress line on a terminal. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "aletheia/common.h"
#include "cli/cli.h"

#define LINE_MAX_LEN 4096

typedef struct {
	int tty, shown, have_summary, error;
	unsigned long long files, bytes;
	double t0;
} report;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile sig_atomic_t progress_shown;

/* Ctrl-C: the daemon stops starting fetches when the file is closed (at exit); what it fetched
 * stays cached and verified, so the next run goes on from there. */
static void on_interrupt(int sig)
{
	static const char msg[] = "aletheia: interrupted; what was fetched stays in the cache: run the "
		"same command again to fetch the rest\n";
	if (progress_shown && write(STDERR_FILENO, "\r\033[K", 4) < 0)
		_exit(128 + sig);
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(128 + sig);
	_exit(128 + sig);
}

static void clear_progress(report *r)
{
	if (r->shown) {
		fputs("\r\033[K", stderr);
		r->shown = 0;
		progress_shown = 0;
	}
}

static void report_line(report *r, const char *line)
{
	unsigned long long fd, ft, bd, bt;
	if (sscanf(line, "progress: %llu %llu %llu %llu", &fd, &ft, &bd, &bt) == 4) {
		double secs = now_s() - r->t0;
		if (!r->tty)
			return;
		fprintf(stderr, "\r\033[K%llu/%llu files, %.1f/%.1f MB, %.0f files/s, %.1f MB/s", fd, ft,
			(double)bd / 1e6, (double)bt / 1e6, secs > 0 ? (double)fd / secs : 0.0,
			secs > 0 ? (double)bd / 1e6 / secs : 0.0);
		fflush(stderr);
		r->shown = 1;
		progress_shown = 1;
		return;
	}
	if (strncmp(line, "start: ", 7) == 0) {
		sscanf(line, "start: %llu files, %llu bytes", &r->files, &r->bytes);
		return;
	}
	clear_progress(r);
	if (strncmp(line, "error: ", 7) == 0) {
		r->error = 1;
		al_cli_fail("%s", line + 7);
		return;
	}
	if (strncmp(line, "prefetch: ", 10) == 0) {
		unsigned long long failed = 0;
		const char *p = strstr(line, " fetched (");
		r->have_summary = 1;
		if (p && (p = strstr(p, "), ")) && sscanf(p, "), %llu failed", &failed) == 1 && failed)
			r->error = 1;
	}
	printf("%s\n", line);
	fflush(stdout);
}

int al_cli_dataset_prefetch(int argc, char **argv)
{
	const char *mount = NULL, *dataset = NULL, *v;
	char path[PATH_MAX], *line = NULL, *req = NULL;
	report r = {0};
	size_t len = 0;
	off_t off = 0;
	int fd = -1, status = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return al_cli_help("dataset");
		int m = al_cli_option("--mount", argc, argv, &i, &v);
		if (m < 0) {
			al_cli_fail("--mount needs a value");
			return al_cli_usage("dataset");
		}
		if (m > 0) {
			mount = v;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			al_cli_fail("unknown option '%s'", argv[i]);
			return al_cli_usage("dataset");
		} else if (!dataset) {
			dataset = argv[i];
		} else {
			al_cli_fail("one PROJECT/DATASET only");
			return al_cli_usage("dataset");
		}
	}
	if (!dataset || al_cli_check_exper(dataset) != 0) {
		al_cli_fail("dataset prefetch needs PROJECT/DATASET");
		return al_cli_usage("dataset");
	}
	if (!mount)
		mount = al_cli_default_mount();
	if ((fd = al_cli_open_control(path, sizeof(path), mount, "prefetch")) < 0)
		goto cleanup;
	if (!(req = malloc(strlen(dataset) + 2)) || !(line = malloc(LINE_MAX_LEN + 1))) {
		al_cli_fail("out of memory");
		goto cleanup;
	}
	sprintf(req, "%s\n", dataset);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		if (errno == ENOENT)
			al_cli_fail("no dataset %s in %s; check the name with ls %s/%.*s/datasets", dataset,
				mount, mount, (int)strcspn(dataset, "/"), dataset);
		else
			al_cli_fail("cannot ask %s to prefetch %s: %s; see the daemon's log (aletheia.log in "
				"its cache folder)", mount, dataset, strerror(errno));
		goto cleanup;
	}
	r.tty = isatty(STDERR_FILENO);
	r.t0 = now_s();
	signal(SIGINT, on_interrupt);
	signal(SIGTERM, on_interrupt);
	signal(SIGHUP, on_interrupt);
	/* The report starts at offset 0 of this handle, whatever the request moved the offset to. */
	for (;;) {
		ssize_t n = pread(fd, line + len, LINE_MAX_LEN - len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			clear_progress(&r);
			al_cli_fail("cannot read the report from %s: %s; see the daemon's log (aletheia.log "
				"in its cache folder)", path, strerror(errno));
			goto cleanup;
		}
		if (n == 0)
			break;
		off += n;
		len += (size_t)n;
		line[len] = '\0';
		char *start = line, *nl;
		while ((nl = memchr(start, '\n', len - (size_t)(start - line))) != NULL) {
			*nl = '\0';
			report_line(&r, start);
			start = nl + 1;
		}
		len -= (size_t)(start - line);
		memmove(line, start, len);
		if (len == LINE_MAX_LEN)
			len = 0;    /* no line is this long: drop it */
	}
	clear_progress(&r);
	if (!r.have_summary && !r.error) {
		al_cli_fail("the report from %s ended before its summary; see the daemon's log "
			"(aletheia.log in its cache folder) and run the command again", path);
		goto cleanup;
	}
	status = r.error ? 1 : 0;
cleanup:
	free(req);
	free(line);
	if (fd >= 0)
		close(fd);
	return status;
}
