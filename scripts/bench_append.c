/* bench_append: appends N metric lines "STEP VALUE\n" to PATH, one write() per line, and prints
 * the elapsed seconds (open to close) on stdout. Used by scripts/bench, measure (b). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PATH N\n", argv[0]);
        return 2;
    }
    char *end = NULL;
    errno = 0;
    long long n = strtoll(argv[2], &end, 10);
    if (errno != 0 || end == argv[2] || *end != '\0' || n < 0) {
        fprintf(stderr, "bench_append: N must be a non-negative integer, got '%s'\n", argv[2]);
        return 2;
    }

    double t0 = now();
    int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) {
        fprintf(stderr, "bench_append: open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    char line[64];
    for (long long i = 0; i < n; i++) {
        /* A loss-like curve; the value's text length varies a little, as in real logs. */
        int len = snprintf(line, sizeof line, "%lld %.6g\n", i, 2.5 / (1.0 + (double)i * 1e-3));
        ssize_t w = write(fd, line, (size_t)len);
        if (w != len) {
            fprintf(stderr, "bench_append: write #%lld to %s: %s\n", i, argv[1],
                    w < 0 ? strerror(errno) : "short write");
            close(fd);
            return 1;
        }
    }
    if (close(fd) != 0) {
        fprintf(stderr, "bench_append: close %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    printf("%.6f\n", now() - t0);
    return 0;
}
