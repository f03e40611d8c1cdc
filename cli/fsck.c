/* aletheia: `aletheia fsck`: asks the daemon to check every blob through MNT/.aletheia/fsck (a
 * request written, the report read back through the same open file) and prints the report. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "aletheia/common.h"
#include "cli/cli.h"

#define LINE_MAX_LEN 65536

typedef struct {
	int have_summary, progress_shown;
	unsigned long long blobs, bytes, damaged, missing, unchecked;
} report;

/* One line of the report: progress goes to a terminal's stderr (else nowhere), the rest to stdout. */
static void report_line(report *r, const char *line)
{
	if (strncmp(line, "progress: ", 10) == 0) {
		if (isatty(STDERR_FILENO)) {
			fprintf(stderr, "\r%s", line + 10);
			r->progress_shown = 1;
		}
		return;
	}
	if (r->progress_shown) {
		fputs("\r\033[K", stderr);
		r->progress_shown = 0;
	}
	if (sscanf(line, "fsck: %llu blobs checked, %llu bytes, %llu damaged (%llu missing), %llu not "
	    "checked", &r->blobs, &r->bytes, &r->damaged, &r->missing, &r->unchecked) == 5)
		r->have_summary = 1;
	printf("%s\n", line);
	fflush(stdout);
}

int al_cli_fsck(int argc, char **argv)
{
	const char *mount = NULL;
	const char *request = "check\n";
	char path[PATH_MAX], *line = NULL;
	report r = {0};
	size_t len = 0;
	off_t off = 0;
	int fd = -1, status = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--download") == 0) {
			request = "check download\n";
		} else if (argv[i][0] == '-' && argv[i][1]) {
			al_cli_fail("unknown option '%s'", argv[i]);
			return al_cli_usage("fsck");
		} else if (!mount) {
			mount = argv[i];
		} else {
			al_cli_fail("one MOUNTPOINT only");
			return al_cli_usage("fsck");
		}
	}
	if (!mount)
		mount = al_cli_default_mount();
	if ((fd = al_cli_open_control(path, sizeof(path), mount, "fsck")) < 0)
		goto cleanup;
	if (write(fd, request, strlen(request)) != (ssize_t)strlen(request)) {
		al_cli_fail("cannot ask %s for a check: %s; see the daemon's log (aletheia.log in its "
			"cache folder)", path, strerror(errno));
		goto cleanup;
	}
	if (!(line = malloc(LINE_MAX_LEN + 1))) {
		al_cli_fail("out of memory");
		goto cleanup;
	}
	/* The report starts at offset 0 of this handle, whatever the request moved the offset to. */
	for (;;) {
		ssize_t n = pread(fd, line + len, LINE_MAX_LEN - len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
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
		if (len == LINE_MAX_LEN) {
			line[len] = '\0';
			report_line(&r, line);
			len = 0;
		}
	}
	if (len) {
		line[len] = '\0';
		report_line(&r, line);
	}
	if (!r.have_summary) {
		al_cli_fail("the report from %s ended before its summary; see the daemon's log "
			"(aletheia.log in its cache folder) and run fsck again", path);
		goto cleanup;
	}
	if (r.unchecked && !r.damaged)
		al_cli_fail("%llu blobs could not be checked; see the lines above, fix what they name "
			"and run fsck again", r.unchecked);
	status = r.damaged || r.unchecked ? 1 : 0;
cleanup:
	free(line);
	if (fd >= 0)
		close(fd);
	return status;
}
