/* aletheia: the local write-ahead journal. Records are appended with one write() each, so an
 * acknowledged write survives kill -9; al_journal_sync makes them survive a power cut. */
#ifndef ALETHEIA_JOURNAL_H
#define ALETHEIA_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include "aletheia/common.h"

typedef struct al_journal al_journal;

/* Opens (creating) the journal folder; appends go to the newest generation file. Files named
 * like generations past any number this journal could reach (journal.ffffffffffffffff) are
 * logged and left alone: never replayed, appended to or removed. */
int al_journal_open(al_journal **out, const char *dir);
/* Appends one record atomically (length + checksum framing). Thread-safe. */
int al_journal_append(al_journal *j, const void *rec, size_t len);
int al_journal_sync(al_journal *j);
/* Starts a new generation file; *sealed gets the generation just closed. Records appended
 * before the call are in generations <= *sealed. */
int al_journal_rotate(uint64_t *sealed, al_journal *j);
/* Deletes generation files <= gen (their records are safely in the backend). */
int al_journal_drop(al_journal *j, uint64_t gen);
/* Calls cb for every intact record of every generation, oldest first. A damaged record costs
 * only itself: replay goes on at the next frame that verifies (a file whose magic is damaged is
 * read in the format its frames verify in). A generation with damage is first copied to
 * DIR/damaged/journal.<gen>.<UTC time>, and each damaged region is logged to stderr. A bad tail
 * is cut off (in the generation current at the crash it is a torn append, not damage), unless
 * frames verify in it. A non-zero cb return stops and is returned. */
typedef int (*al_journal_cb)(void *ctx, const void *rec, size_t len);
int al_journal_replay(al_journal *j, al_journal_cb cb, void *ctx);
/* Called by a replay callback about the record it was given, when that record (or part of it)
 * cannot be applied and is dropped: the generation is copied aside as for damage (before anything
 * can drop it), one line with the reason is logged, and al_journal_damage counts it. No effect
 * outside a replay callback of j. */
void al_journal_refuse(al_journal *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Damaged regions and refused records replay has found (each generation counted once). Records
 * after one were replayed, but whatever counts records (ordinals) sees a gap. */
uint64_t al_journal_damage(al_journal *j);
uint64_t al_journal_bytes(al_journal *j);   /* bytes in all generation files */
void al_journal_free(al_journal *j);

#endif
