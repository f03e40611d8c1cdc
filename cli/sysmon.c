/* aletheia: `aletheia run`'s watch over its command: the heartbeat, and the system metrics of the
 * command's process tree, the machine and its NVIDIA GPUs (README "System metrics", "Crashed runs"). */
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "aletheia/common.h"
#include "cli/cli.h"

#define MAX_GPUS 16
#define MAX_SERIES (8 + 4 * MAX_GPUS)

/* NVML's few calls, declared here: the library is loaded at run time when present, so aletheia
 * neither needs the CUDA toolkit to build nor an NVIDIA driver to run (nvml.h's layouts). */
typedef int nvml_ret;
typedef void *nvml_device;
typedef struct { unsigned gpu, memory; } nvml_utilization;
typedef struct { unsigned long long total, free, used; } nvml_memory;

struct nvml {
	void *lib;
	unsigned count;
	nvml_device dev[MAX_GPUS];
	nvml_ret (*init)(void);
	nvml_ret (*shutdown)(void);
	nvml_ret (*get_count)(unsigned *);
	nvml_ret (*get_handle)(unsigned, nvml_device *);
	nvml_ret (*get_name)(nvml_device, char *, unsigned);
	nvml_ret (*get_utilization)(nvml_device, nvml_utilization *);
	nvml_ret (*get_memory)(nvml_device, nvml_memory *);
	nvml_ret (*get_power)(nvml_device, unsigned *);          /* milliwatts */
	nvml_ret (*get_temperature)(nvml_device, int, unsigned *);  /* sensor 0: the GPU die, °C */
};

/* One metric under metrics/system/: its file, and what system.json says of it. */
struct series {
	char name[48];
	int fd;
	int mean;           /* a level (its mean is shown), not a running total */
	double peak, sum;
	long count;
};

struct al_cli_watch {
	char *run;
	pid_t child;
	double metrics_every, beat_every;
	struct timespec next_sample, next_beat, last_sample;
	long long prev_ticks;
	long step;
	int beat_failed, metrics_failed;
	int exited;   /* the command ended: beats only, while its leftovers' output is read */
	struct nvml nv;
	cJSON *machine;
	struct series s[MAX_SERIES];
	int ns;
};

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timespec mono_in(double seconds)
{
	double at = now_mono() + seconds;
	struct timespec ts = {(time_t)at, (long)((at - floor(at)) * 1e9)};
	return ts;
}

static double secs(const struct timespec *ts)
{
	return (double)ts->tv_sec + (double)ts->tv_nsec / 1e9;
}

/* Writes the whole of text to path (created or truncated); errno is kept on failure. */
static int put_file(const char *path, const char *text)
{
	size_t len = strlen(text), done = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), err;
	if (fd < 0)
		return -1;
	while (done < len) {
		ssize_t n = write(fd, text + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		done += (size_t)n;
	}
	return close(fd);
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/* ---- NVML ---------------------------------------------------------------------------------- */

#define NVML_SYM(field, name) (*(void **)&nv->field = dlsym(nv->lib, name))

/* Loads NVML when present: absent, nothing is said; present but failing, one line says that the
 * run goes on without GPU metrics (README "System metrics"). */
static void nvml_open(struct nvml *nv)
{
	unsigned n = 0;
	memset(nv, 0, sizeof(*nv));
	if (!(nv->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL)))
		return;
	if (!NVML_SYM(init, "nvmlInit_v2") || !NVML_SYM(shutdown, "nvmlShutdown") ||
	    !NVML_SYM(get_count, "nvmlDeviceGetCount_v2") ||
	    !NVML_SYM(get_handle, "nvmlDeviceGetHandleByIndex_v2") ||
	    !NVML_SYM(get_name, "nvmlDeviceGetName") ||
	    !NVML_SYM(get_utilization, "nvmlDeviceGetUtilizationRates") ||
	    !NVML_SYM(get_memory, "nvmlDeviceGetMemoryInfo") ||
	    !NVML_SYM(get_power, "nvmlDeviceGetPowerUsage") ||
	    !NVML_SYM(get_temperature, "nvmlDeviceGetTemperature")) {
		al_cli_fail("libnvidia-ml.so.1 lacks NVML's calls; GPU metrics are not recorded");
		goto drop;
	}
	if (nv->init() != 0) {
		al_cli_fail("NVML did not start (nvmlInit failed); GPU metrics are not recorded");
		goto drop;
	}
	if (nv->get_count(&n) != 0) {
		al_cli_fail("NVML cannot count the GPUs; GPU metrics are not recorded");
		nv->shutdown();
		goto drop;
	}
	for (unsigned i = 0; i < n && nv->count < MAX_GPUS; i++)
		if (nv->get_handle(i, &nv->dev[nv->count]) == 0)
			nv->count++;
	return;
drop:
	dlclose(nv->lib);
	memset(nv, 0, sizeof(*nv));
}

static void nvml_close(struct nvml *nv)
{
	if (nv->lib) {
		nv->shutdown();
		dlclose(nv->lib);
	}
	memset(nv, 0, sizeof(*nv));
}

/* ---- /proc --------------------------------------------------------------------------------- */

/* A value of /proc/meminfo in bytes; -1 when absent. */
static long long meminfo(const char *key)
{
	char line[256];
	long long v = -1, kb;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/meminfo", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%lld", &kb) == 1) {
			v = kb * 1024;
			break;
		}
	fclose(f);
	return v;
}

static void cpu_model(char *out, size_t size)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "re");
	snprintf(out, size, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');
		/* x86 "model name", arm64 "Model" / "CPU part" are not all there: the first named wins */
		if (colon && (strncmp(line, "model name", 10) == 0 || strncmp(line, "Model", 5) == 0 ||
			      strncmp(line, "cpu model", 9) == 0)) {
			char *v = colon + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			v[strcspn(v, "\n")] = '\0';
			snprintf(out, size, "%s", v);
			break;
		}
	}
	fclose(f);
}

struct proc {
	int pid, ppid, in_tree;
	long long ticks, threads, rss_pages;
};

/* pid's line of /proc/PID/stat; 0 when read. */
static int read_stat(struct proc *p, int pid)
{
	char path[64], buf[1024], *paren;
	unsigned long long ut, st;
	long long cut, cst, threads, rss;
	int fd, ppid;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* "PID (COMM) STATE PPID …": COMM may hold spaces and parentheses; fields 14-17 are utime,
	 * stime, cutime, cstime (children reaped: a finished sub-process's time stays counted), 20
	 * num_threads, 24 rss in pages */
	if (!(paren = strrchr(buf, ')')) ||
	    sscanf(paren + 1, " %*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld %*d %*d "
		   "%lld %*d %*u %*u %lld", &ppid, &ut, &st, &cut, &cst, &threads, &rss) != 7)
		return -1;
	p->pid = pid;
	p->ppid = ppid;
	p->ticks = (long long)(ut + st) + cut + cst;
	p->threads = threads;
	p->rss_pages = rss;
	p->in_tree = 0;
	return 0;
}

/* read_bytes and write_bytes of /proc/PID/io (storage I/O, reaped children's included). */
static void read_io(long long *rd, long long *wr, int pid)
{
	char path[64], line[128];
	long long v;
	FILE *f;
	snprintf(path, sizeof(path), "/proc/%d/io", pid);
	if (!(f = fopen(path, "re")))
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "read_bytes: %lld", &v) == 1)
			*rd += v;
		else if (sscanf(line, "write_bytes: %lld", &v) == 1)
			*wr += v;
	}
	fclose(f);
}

static int cmp_pid(const void *a, const void *b)
{
	int x = ((const struct proc *)a)->pid, y = ((const struct proc *)b)->pid;
	return (x > y) - (x < y);
}

static struct proc *find_proc(struct proc *ps, size_t n, int pid)
{
	struct proc key = {.pid = pid};
	return bsearch(&key, ps, n, sizeof(*ps), cmp_pid);
}

struct tree_use {
	long long ticks, threads, rss_bytes, read_bytes, write_bytes;
	int procs;
};

/* The command and every process under it, from one pass over /proc. */
static void tree_sample(struct tree_use *u, pid_t child)
{
	struct proc *ps = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d = opendir("/proc");
	long page = sysconf(_SC_PAGESIZE);

	memset(u, 0, sizeof(*u));
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		if (n == cap) {
			struct proc *np = realloc(ps, (cap = cap ? cap * 2 : 256) * sizeof(*ps));
			if (!np)
				break;
			ps = np;
		}
		if (read_stat(&ps[n], atoi(de->d_name)) == 0)
			n++;
	}
	closedir(d);
	/* descendants: each process's line of parents walked up once, sorted by pid for the
	 * lookups, so thousands of processes cost n log n per sample */
	if (n)
		qsort(ps, n, sizeof(*ps), cmp_pid);
	for (size_t i = 0; i < n; i++)
		ps[i].in_tree = -1;
	for (size_t i = 0; i < n; i++) {
		struct proc *p = &ps[i], *chain[64];
		int depth = 0, verdict = 0;
		while (p && p->in_tree < 0 && depth < 64) {
			if (p->pid == child) {
				verdict = 1;
				break;
			}
			chain[depth++] = p;
			p = p->ppid > 1 ? find_proc(ps, n, p->ppid) : NULL;
		}
		if (p && p->in_tree >= 0)
			verdict = p->in_tree;
		else if (p && p->pid == child)
			p->in_tree = 1;
		while (depth > 0)
			chain[--depth]->in_tree = verdict;
	}
	for (size_t i = 0; i < n; i++) {
		if (ps[i].in_tree != 1)
			continue;
		u->procs++;
		u->ticks += ps[i].ticks;
		u->threads += ps[i].threads;
		u->rss_bytes += ps[i].rss_pages * page;
		read_io(&u->read_bytes, &u->write_bytes, ps[i].pid);
	}
	free(ps);
}

/* ---- the metrics ----------------------------------------------------------------------------- */

static struct series *series_get(al_cli_watch *w, const char *name, int mean)
{
	struct series *s;
	char path[4096];
	for (int i = 0; i < w->ns; i++)
		if (strcmp(w->s[i].name, name) == 0)
			return &w->s[i];
	if (w->ns == MAX_SERIES)
		return NULL;
	s = &w->s[w->ns++];
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->mean = mean;
	s->peak = -INFINITY;
	snprintf(path, sizeof(path), "%s/metrics/system/%s", w->run, name);
	/* metrics/system/gpu0/x: its folder first, as for any metric in a folder */
	if (strchr(name, '/')) {
		char *slash = strrchr(path, '/');
		*slash = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST && !w->metrics_failed)
			al_cli_fail("cannot create %s: %s", path, strerror(errno));
		*slash = '/';
	}
	s->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (s->fd < 0 && !w->metrics_failed) {
		w->metrics_failed = 1;
		al_cli_fail("cannot write %s: %s; system metrics are not recorded", path, strerror(errno));
	}
	return s;
}

/* One point, "STEP VALUE" (README "metrics"), and the summary's peak and mean. */
static void record(al_cli_watch *w, const char *name, double v, int mean)
{
	struct series *s = series_get(w, name, mean);
	char line[64];
	int len;
	if (!s || !isfinite(v))
		return;
	if (v > s->peak)
		s->peak = v;
	s->sum += v;
	s->count++;
	if (s->fd < 0)
		return;
	len = snprintf(line, sizeof(line), "%ld %.15g\n", w->step, v);
	if (write(s->fd, line, (size_t)len) != len && !w->metrics_failed) {
		w->metrics_failed = 1;
		al_cli_fail("cannot append to metrics/system/%s: %s; system metrics stop", name,
			strerror(errno));
	}
}

/* The kernel's own account of the command once it ended (wait4's rusage). */
struct rusage_end {
	double cpu_seconds, wall_seconds;
	long long max_rss_bytes;
};

/* Rewrites system.json: the machine, the interval, and each metric's peak and mean; end, once the
 * command ended, or NULL. */
static void write_summary(al_cli_watch *w, const struct rusage_end *end)
{
	cJSON *o = cJSON_CreateObject(), *peak, *mean;
	char path[4096], *text;
	if (!o)
		return;
	cJSON_AddItemToObject(o, "machine", cJSON_Duplicate(w->machine, 1));
	cJSON_AddNumberToObject(o, "interval", w->metrics_every);
	cJSON_AddNumberToObject(o, "samples", (double)w->step);
	peak = cJSON_AddObjectToObject(o, "peak");
	mean = cJSON_AddObjectToObject(o, "mean");
	for (int i = 0; i < w->ns; i++) {
		struct series *s = &w->s[i];
		double pk = s->peak;
		if (!s->count)
			continue;
		/* the largest process's own peak, which a sample can miss between two ticks */
		if (end && strcmp(s->name, "memory_rss_bytes") == 0 && end->max_rss_bytes > pk)
			pk = (double)end->max_rss_bytes;
		cJSON_AddNumberToObject(peak, s->name, pk);
		if (s->mean)
			cJSON_AddNumberToObject(mean, s->name, s->sum / (double)s->count);
	}
	if (end && end->wall_seconds > 0) {
		/* over the whole run, from the kernel: exact where samples are a few points */
		cJSON_DeleteItemFromObject(mean, "cpu_percent");
		cJSON_AddNumberToObject(mean, "cpu_percent", 100.0 * end->cpu_seconds / end->wall_seconds);
		if (!cJSON_GetObjectItem(peak, "memory_rss_bytes"))
			cJSON_AddNumberToObject(peak, "memory_rss_bytes", (double)end->max_rss_bytes);
	}
	snprintf(path, sizeof(path), "%s/system.json", w->run);
	if ((text = cJSON_Print(o)) != NULL) {
		if (put_file(path, text) != 0 && !w->metrics_failed) {
			w->metrics_failed = 1;
			al_cli_fail("cannot write %s: %s; system metrics stop", path, strerror(errno));
		}
		free(text);
	}
	cJSON_Delete(o);
}

static void sample(al_cli_watch *w)
{
	struct tree_use u;
	double now = now_mono(), dt = now - secs(&w->last_sample);
	long long total = meminfo("MemTotal"), avail = meminfo("MemAvailable");
	long tck = sysconf(_SC_CLK_TCK);

	tree_sample(&u, w->child);
	if (u.procs > 0 && dt > 0) {
		double busy = (double)(u.ticks - w->prev_ticks) / (double)tck;
		/* 100 is one core busy all the time, as top shows it */
		record(w, "cpu_percent", busy > 0 ? 100.0 * busy / dt : 0.0, 1);
		record(w, "memory_rss_bytes", (double)u.rss_bytes, 1);
		record(w, "threads", (double)u.threads, 1);
		record(w, "read_bytes", (double)u.read_bytes, 0);
		record(w, "write_bytes", (double)u.write_bytes, 0);
		w->prev_ticks = u.ticks;
	}
	if (total > 0 && avail >= 0) {
		record(w, "machine_memory_used_bytes", (double)(total - avail), 1);
		record(w, "machine_memory_percent", 100.0 * (double)(total - avail) / (double)total, 1);
	}
	for (unsigned g = 0; g < w->nv.count; g++) {
		nvml_utilization ut;
		nvml_memory mem;
		unsigned mw, deg;
		char name[48];
		if (w->nv.get_utilization(w->nv.dev[g], &ut) == 0) {
			snprintf(name, sizeof(name), "gpu%u/utilization_percent", g);
			record(w, name, ut.gpu, 1);
		}
		if (w->nv.get_memory(w->nv.dev[g], &mem) == 0) {
			snprintf(name, sizeof(name), "gpu%u/memory_used_bytes", g);
			record(w, name, (double)mem.used, 1);
		}
		if (w->nv.get_power(w->nv.dev[g], &mw) == 0) {
			snprintf(name, sizeof(name), "gpu%u/power_watts", g);
			record(w, name, mw / 1000.0, 1);
		}
		if (w->nv.get_temperature(w->nv.dev[g], 0, &deg) == 0) {
			snprintf(name, sizeof(name), "gpu%u/temperature_c", g);
			record(w, name, deg, 1);
		}
	}
	w->last_sample.tv_sec = (time_t)now;
	w->last_sample.tv_nsec = (long)((now - floor(now)) * 1e9);
	w->step++;
	write_summary(w, NULL);
}

/* The machine's spec, recorded once in system.json (README "System metrics"). */
static cJSON *machine_spec(const struct nvml *nv)
{
	cJSON *m = cJSON_CreateObject(), *gpus;
	char model[256];
	cpu_model(model, sizeof(model));
	cJSON_AddStringToObject(m, "cpu_model", model);
	cJSON_AddNumberToObject(m, "cpu_cores", (double)sysconf(_SC_NPROCESSORS_ONLN));
	cJSON_AddNumberToObject(m, "memory_bytes", (double)meminfo("MemTotal"));
	gpus = cJSON_AddArrayToObject(m, "gpus");
	for (unsigned g = 0; g < nv->count; g++) {
		cJSON *e = cJSON_CreateObject();
		char name[96] = "";
		nvml_memory mem;
		nv->get_name(nv->dev[g], name, sizeof(name));
		name[sizeof(name) - 1] = '\0';
		cJSON_AddNumberToObject(e, "index", g);
		cJSON_AddStringToObject(e, "name", name);
		if (nv->get_memory(nv->dev[g], &mem) == 0)
			cJSON_AddNumberToObject(e, "memory_bytes", (double)mem.total);
		cJSON_AddItemToArray(gpus, e);
	}
	return m;
}

/* ---- the heartbeat --------------------------------------------------------------------------- */

static void beat(al_cli_watch *w)
{
	char path[4096], text[64];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	/* "TIME INTERVAL": the run shows crashed once no beat came for six intervals */
	snprintf(text, sizeof(text), "%lld.%03ld %g\n", (long long)ts.tv_sec, ts.tv_nsec / 1000000,
		w->beat_every);
	snprintf(path, sizeof(path), "%s/heartbeat", w->run);
	if (put_file(path, text) != 0 && !w->beat_failed) {
		w->beat_failed = 1;
		al_cli_fail("cannot write %s: %s; the run may show crashed while the command goes on",
			path, strerror(errno));
	}
}

/* ---- the watch --------------------------------------------------------------------------------- */

int al_cli_watch_start(al_cli_watch **out, const char *run, pid_t child, double metrics_every,
	double beat_every)
{
	al_cli_watch *w = calloc(1, sizeof(*w));
	char path[4096];
	*out = NULL;
	if (!w || !(w->run = strdup(run))) {
		free(w);
		al_cli_fail("out of memory");
		return AL_ENOMEM;
	}
	w->child = child;
	w->metrics_every = metrics_every;
	w->beat_every = beat_every;
	beat(w);
	w->next_beat = mono_in(beat_every);
	if (metrics_every > 0) {
		nvml_open(&w->nv);
		w->machine = machine_spec(&w->nv);
		snprintf(path, sizeof(path), "%s/metrics/system", run);
		if (mkdir(path, 0755) != 0 && errno != EEXIST) {
			w->metrics_failed = 1;
			al_cli_fail("cannot create %s: %s; system metrics are not recorded", path,
				strerror(errno));
		}
		clock_gettime(CLOCK_MONOTONIC, &w->last_sample);
		w->next_sample = mono_in(metrics_every);
		write_summary(w, NULL);
	}
	*out = w;
	return 0;
}

int al_cli_watch_tick(al_cli_watch *w)
{
	double now = now_mono(), next = 1e9;
	if (!w)
		return -1;
	if (now >= secs(&w->next_beat)) {
		beat(w);
		w->next_beat = mono_in(w->beat_every);
	}
	if (w->metrics_every > 0 && !w->exited && now >= secs(&w->next_sample)) {
		if (!w->metrics_failed)
			sample(w);
		w->next_sample = mono_in(w->metrics_every);
	}
	now = now_mono();
	next = secs(&w->next_beat) - now;
	if (w->metrics_every > 0 && !w->exited && secs(&w->next_sample) - now < next)
		next = secs(&w->next_sample) - now;
	return next <= 0 ? 0 : (int)(next * 1000) + 1;
}

void al_cli_watch_exited(al_cli_watch *w)
{
	if (w)
		w->exited = 1;
}

void al_cli_watch_end(al_cli_watch *w, const struct rusage *ru, double wall_seconds)
{
	if (!w)
		return;
	if (w->metrics_every > 0 && !w->metrics_failed && ru) {
		struct rusage_end end = {
			.cpu_seconds = (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 +
				(double)ru->ru_stime.tv_sec + ru->ru_stime.tv_usec / 1e6,
			.wall_seconds = wall_seconds,
			.max_rss_bytes = (long long)ru->ru_maxrss * 1024,
		};
		write_summary(w, &end);
	}
	for (int i = 0; i < w->ns; i++)
		if (w->s[i].fd >= 0)
			close(w->s[i].fd);
	nvml_close(&w->nv);
	cJSON_Delete(w->machine);
	free(w->run);
	free(w);
}
