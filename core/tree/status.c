/* aletheia: a run's status file (README "Run lifecycle and code capture"): what writing it
 * does — ending the run with an exit code, or resuming it. */
#include "internal.h"

static const char *status_words[] = {"running", "finished", "failed", "killed", NULL};

/* README "Crashed runs": a running run whose heartbeat (written by `aletheia run`: "TIME
 * INTERVAL", Unix seconds of the last beat and the seconds between beats) is older than this many
 * intervals shows crashed. */
#define HEARTBEAT_BEATS 6

/* "TIME INTERVAL": 0 with the time of the beat and the limit after it, in µs. */
static int parse_heartbeat(int64_t *beat_us, int64_t *limit_us, const char *text)
{
	double at, every;
	char *end;
	errno = 0;
	at = strtod(text, &end);
	if (end == text || errno || !(at > 0 && at < 253402300800.0))
		return -1;
	text = end;
	every = strtod(text, &end);
	if (end == text || errno || !(every > 0 && every <= 86400))
		return -1;
	while (*end == ' ' || *end == '\t' || *end == '\n')
		end++;
	if (*end)
		return -1;
	*beat_us = (int64_t)(at * 1e6);
	*limit_us = (int64_t)(every * 1e6) * HEARTBEAT_BEATS;
	return 0;
}

const char *run_status_shown(int64_t *crashed_us, const al_doc *run)
{
	const char *status = al_fields_get_string(run->fields, "status");
	const char *beat = al_fields_get_string(run->fields, "heartbeat");
	int64_t at, limit;

	/* Runs without a heartbeat (made without `aletheia run`) keep their status. */
	if (!status || strcmp(status, "running") != 0 || !beat || !*beat)
		return status;
	if (parse_heartbeat(&at, &limit, beat) != 0) {
		/* Written by hand: ignored (README "Crashed runs"); logged at each render of it, which
		 * happens once per change of the run. */
		fprintf(stderr, "aletheia: %s: heartbeat \"%.60s\" is not \"TIME INTERVAL\"; ignored\n",
			run->path, beat);
		return status;
	}
	if (al_now_us() >= at + limit) {
		if (crashed_us)
			*crashed_us = at + limit;
		return "crashed";
	}
	render_valid_until(at + limit);
	return status;
}

/* The status field, or crashed (README "Crashed runs"): its mtime is then the time it crashed. */
static int status_render(al_buf *b, int64_t *mtime, al_tree *t, const node *n)
{
	al_doc *d = NULL;
	int64_t crashed = 0;
	const char *word;
	int rc;
	if ((rc = get_doc(&d, t, n->run_doc)) == 0) {
		mtime_raise(mtime, value_time(d, NULL, "status_updated"));
		if ((word = run_status_shown(&crashed, d)) && strcmp(word, "crashed") == 0) {
			rc = al_buf_puts(b, "crashed\n");
			mtime_raise(mtime, crashed);
		} else {
			rc = render_text_field(b, d->fields, "status");
		}
	}
	al_doc_free(d);
	return rc;
}

/* "WORD" or "WORD CODE" (README "Run lifecycle and code capture"). */
static int parse_status(char word[32], long long *code, int *has_code, const char *text)
{
	char extra[64] = "";
	int fields, i, known = 0, consumed = 0;

	word[0] = '\0';
	fields = sscanf(text, " %31s %63s %n", word, extra, &consumed);
	/* Exactly "WORD" or "WORD CODE": anything after that is a bad value, not ignored. */
	if (fields == 2 && text[consumed] != '\0')
		return al_error_set(AL_EINVAL, "status takes one word and an optional exit code (got \"%.40s\")", text);
	for (i = 0; status_words[i]; i++)
		known |= strcmp(word, status_words[i]) == 0;
	if (fields < 1 || !known)
		return al_error_set(AL_EINVAL, "status must be running, finished, failed or killed (got \"%.40s\")", text);
	*has_code = fields == 2;
	if (*has_code && strcmp(word, "running") == 0)
		return al_error_set(AL_EINVAL, "status: running takes no exit code");
	if (*has_code) {
		char *end;
		errno = 0;
		*code = strtoll(extra, &end, 10);
		if (*end || errno || *code < INT32_MIN || *code > INT32_MAX)
			return al_error_set(AL_EINVAL, "status: the exit code must be an integer that fits in "
				"32 bits (got \"%s\")", extra);
	}
	return 0;
}

/* README "Run lifecycle": a status other than running ends the run (ended, exit_code: the code
 * given, else 0 for finished and null for failed or killed); running again resumes an ended run,
 * recorded in resumed, with ended and exit_code cleared. */
static int commit_status(al_tree *t, const node *n, const char *text)
{
	char word[32];
	long long code = 0;
	int has_code = 0, rc, running;
	cJSON *f = NULL, *resumed;
	al_doc *d = NULL;
	const char *prev;
	int64_t now = al_now_us();

	if ((rc = parse_status(word, &code, &has_code, text)))
		return rc;
	running = strcmp(word, "running") == 0;
	pthread_mutex_lock(&t->lock);   /* resumed is read, extended and written back */
	if ((rc = get_doc(&d, t, n->run_doc)))
		goto cleanup;
	/* a crashed run ended as far as anyone could tell: running again resumes it */
	prev = run_status_shown(NULL, d);
	f = cJSON_CreateObject();
	al_fields_set(f, "status", al_value_string(word));
	al_fields_set(f, "status_updated", al_value_time(now));
	al_fields_set(f, "ended", running ? al_value_null() : al_value_time(now));
	al_fields_set(f, "exit_code", has_code ? al_value_int(code) :
		strcmp(word, "finished") == 0 ? al_value_int(0) : al_value_null());
	/* A status written ends the last wrapper's watch: a run resumed by hand has no heartbeat
	 * until a wrapper writes one (README "Crashed runs"). */
	if (al_fields_get(d->fields, "heartbeat"))
		al_fields_set(f, "heartbeat", al_value_null());
	if (running && prev && strcmp(prev, "running") != 0) {
		const cJSON *old = al_value_get_array(al_fields_get(d->fields, "resumed"));
		resumed = old ? cJSON_Duplicate(old, 1) : cJSON_CreateArray();
		cJSON_AddItemToArray(resumed, al_value_time(now));
		al_fields_set(f, "resumed", al_value_array(resumed));
	}
	if ((rc = run_fits(n, d, f, 0)) == 0)
		rc = commit1(t, AL_WRITE_UPDATE, n->run_doc, f, AL_PRE_EXISTS);
cleanup:
	pthread_mutex_unlock(&t->lock);
	__atomic_add_fetch(&t->status_gen, 1, __ATOMIC_SEQ_CST);
	cJSON_Delete(f);
	al_doc_free(d);
	return rc;
}

static int status_commit(al_file *f)
{
	char *s = NULL;
	int rc;
	if ((rc = text_checked(&s, &f->text, "status")) == 0)
		rc = commit_status(f->t, &f->n, s);
	free(s);
	return rc;
}

static int status_check_line(const node *n, const char *line)
{
	char word[32];
	long long code;
	int has;
	(void)n;
	return parse_status(word, &code, &has, line);
}

/* Writable whatever the run's state: writing it is how a run ends or resumes. */
const al_kind kind_status = {
	.name = "status", .pattern = RUN_P "/status", .owner = O_RUN, .mode = 0644,
	.field = "status", .render = status_render, .commit = status_commit,
	.check_line = status_check_line,
};
