# aletheia integration tests: the metric journal and series against damage and odd input (README
# "Durability", "metrics", "Files behave like files"): a damaged journal header, a junk generation
# file, a TIME no store can hold, reads after a remount, a metric path too long to journal.
import errno
import os
import signal
import sqlite3
import time

import pytest
from alutil import mkrun, points, sh, try_write


def hold_sqlite(mount):
    """Holds the SQLite write lock: nothing is delivered (and no generation dropped) meanwhile."""
    lock = sqlite3.connect(str(mount.store / "meta.db"), timeout=30, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    return lock


def release(lock):
    lock.execute("ROLLBACK")
    lock.close()


def kill9_now(mount):
    os.kill(mount.proc.pid, signal.SIGKILL)
    mount.proc.wait(timeout=10)


@pytest.mark.local_store_only
def test_a_flipped_byte_in_the_journal_file_magic_costs_at_most_one_record(mount):
    """README "Durability": a damaged journal record (a flipped byte, a bad sector) costs only
    itself; the file with the damage is copied, as it was, to damaged/. One flipped byte in the
    8-byte file magic of the generation current at a kill -9 made replay take the whole file for
    a torn tail: every acknowledged point in it was cut off, and no copy was kept."""
    run = mkrun(mount)
    sh("echo '0 0' >> metrics/m", cwd=run)
    mount.wait_idle()
    jdir = mount.store / "journal"
    lock = hold_sqlite(mount)
    try:
        fd = os.open(run / "metrics" / "m", os.O_WRONLY | os.O_APPEND)
        for k in range(20):   # 20 acknowledged records of 50 points each
            os.write(fd, b"".join(b"%d %d\n" % (s, s) for s in range(1 + 50 * k, 1 + 50 * (k + 1))))
        os.close(fd)
        kill9_now(mount)
    finally:
        release(lock)
    mount.allow_log_errors = True
    mount.kill9()
    gens = sorted(p for p in jdir.iterdir() if p.name.startswith("journal."))
    target = gens[-1]
    data = bytearray(target.read_bytes())
    assert data[:8] == b"aljrnl2\n" and len(data) > 1000, (target, bytes(data[:16]))
    data[2] ^= 0x01          # "aljrnl2\n" -> "akjrnl2\n"
    target.write_bytes(bytes(data))

    mount.start()
    got = [s for s, _, _ in points(run / "metrics" / "m")]
    assert len(got) == len(set(got)), "duplicated points"
    missing = sorted(set(range(1001)) - set(got))
    assert len(missing) <= 50, (f"{len(missing)} of 1000 acknowledged points lost to one flipped byte in "
                                f"the file magic; log:\n{mount.log_text()[-1500:]}")
    kept = list((jdir / "damaged").glob(target.name + ".*")) if (jdir / "damaged").exists() else []
    assert kept and kept[0].read_bytes() == bytes(data), "the damaged file was not kept as it was"
    assert f"{target.name}: damaged record(s) at offset 0" in mount.log_text()


@pytest.mark.local_store_only
def test_a_junk_generation_file_does_not_wrap_the_journal(mount):
    """README "Durability": acknowledged points survive kill -9. A file journal.ffffffffffffffff
    in the journal folder (junk, or a copy gone wrong) made the next generation number wrap to 0:
    replay stopped before the real generations and the flusher then dropped them, losing every
    acknowledged point without a log line."""
    run = mkrun(mount)
    sh("echo '0 0' >> metrics/m", cwd=run)
    mount.wait_idle()
    jdir = mount.store / "journal"
    lock = hold_sqlite(mount)
    try:
        fd = os.open(run / "metrics" / "m", os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"".join(b"%d %d\n" % (s, s) for s in range(1, 101)))
        os.close(fd)
        kill9_now(mount)
    finally:
        release(lock)
    mount.allow_log_errors = True
    mount.kill9()
    junk = jdir / "journal.ffffffffffffffff"
    junk.write_bytes(b"not a journal\n" * 10)

    mount.start()
    assert [s for s, _, _ in points(run / "metrics" / "m")] == list(range(101)), mount.log_text()[-1500:]
    assert f"{junk.name}" in mount.log_text()
    assert junk.read_bytes() == b"not a journal\n" * 10, "the foreign file was changed"
    sh("echo '101 1' >> metrics/m", cwd=run)
    mount.wait_idle()
    assert not (jdir / "journal.0000000000000000").exists()
    mount.remount()
    assert [s for s, _, _ in points(run / "metrics" / "m")] == list(range(102))


def test_a_metric_time_in_milliseconds_does_not_make_the_store_unmountable(mount):
    """README "metrics": TIME is Unix seconds; a line that does not parse fails its write() with
    EINVAL; once write() returns, the points survive and are delivered. A TIME past year 9999 (a
    time in milliseconds, as JavaScript's Date.now() gives: `1 0.5 1733400000000`) was accepted
    and read back, but the flusher could never store its chunk ("field times is not a typed
    value"), other metrics' later points stayed pending with it, `aletheia umount` waited 60 s,
    and every later mount of the store failed with that message: nothing in the store could be
    read any more."""
    run = mkrun(mount)
    sh("echo '0 0.5' >> metrics/other", cwd=run)
    mount.wait_idle()
    e = try_write(run / "metrics" / "ms", b"1 0.5 1733400000000\n", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    assert e in (0, errno.EINVAL)
    sh("echo '1 0.25' >> metrics/other", cwd=run)
    mount.allow_log_errors = True
    mount.umount(check=False)
    mount.start()   # failed: "document …/metrics/ms/chunks/…-0: field times is not a typed value"
    assert [(s, v) for s, v, _ in points(run / "metrics" / "other")] == [(0, "0.5"), (1, "0.25")]
    if e == 0:
        assert [(s, v) for s, v, _ in points(run / "metrics" / "ms")] == [(1, "0.5")]


def test_metric_times_at_the_ends_of_firestores_range(run):
    """README "metrics": TIME is within Firestore's timestamps (years 1 to 9999); the first and
    last second of that range are kept, a time past either end fails the write() with EINVAL."""
    m = run / "metrics" / "edge"
    assert try_write(m, b"0 1 -62135596800\n1 2 253402300799.999\n", os.O_WRONLY | os.O_APPEND | os.O_CREAT) == 0
    assert try_write(m, b"2 3 253402300800\n", os.O_WRONLY | os.O_APPEND) == errno.EINVAL
    assert try_write(m, b"2 3 -62135596801\n", os.O_WRONLY | os.O_APPEND) == errno.EINVAL
    assert m.read_text() == "0 1 -62135596800.000\n1 2 253402300799.999\n"


def test_reading_metrics_after_a_remount_does_not_move_mtimes(mount):
    """README "Files behave like files": mtimes are the time of the content's last change, and
    reading never changes anything. After a remount, every read of a metric moved its mtime,
    run.json's and runs.csv's to the time of that read, so each rsync -a of the mount copies them
    all again (forever) and make sees changes that never happened."""
    run = mkrun(mount)
    sh("for i in 1 2 3; do echo $i >> metrics/loss; done; echo '5 0.5' > metrics/acc", cwd=run)
    mount.wait_idle()
    files = [run / "metrics" / "loss", run / "metrics" / "acc", run / "run.json", run.parent.parent / "runs.csv"]
    before = {f.name: os.stat(f).st_mtime_ns for f in files}
    mount.umount()
    mount.start()
    assert {f.name: os.stat(f).st_mtime_ns for f in files} == before
    time.sleep(1.1)
    (run / "metrics" / "loss").read_bytes()
    (run / "metrics" / "acc").read_bytes()
    after = {f.name: os.stat(f).st_mtime_ns for f in files}
    assert after == before, f"mtimes moved by reading: {before} -> {after}"
    time.sleep(1.1)
    (run / "metrics" / "loss").read_bytes()
    assert os.stat(run / "metrics" / "loss").st_mtime_ns == before["loss"]


@pytest.mark.local_store_only
def test_points_of_a_deeply_nested_metric_survive_kill9(mount):
    """README "metrics"/"Durability": sub-folders are allowed (name val/loss), and once write()
    returns the points survive kill -9. A metric nested 70 folders deep (a 70 KB name; each folder
    name valid) was accepted and read back, but after kill -9 before delivery its points were
    gone without a log line: the journal record keeps the series path's length in 16 bits. A
    name that long is no Firestore document id: refusing it (at mkdir, or at the write, which
    then records nothing) keeps the promise too."""
    run = mkrun(mount)
    sh("echo '0 0' >> metrics/top", cwd=run)
    mount.wait_idle()
    seg = "s" * 1000
    d = os.open(run / "metrics", os.O_RDONLY | os.O_DIRECTORY)
    refused = None
    try:
        for _ in range(70):
            try:
                os.mkdir(seg, dir_fd=d)
            except OSError as e:
                assert e.errno in (errno.ENAMETOOLONG, errno.EINVAL), e
                return   # refused: fine
            nd = os.open(seg, os.O_RDONLY | os.O_DIRECTORY, dir_fd=d)
            os.close(d)
            d = nd
        lock = hold_sqlite(mount)
        try:
            try:
                fd = os.open("m", os.O_WRONLY | os.O_APPEND | os.O_CREAT, dir_fd=d)
                try:
                    os.write(fd, b"3 0.125\n4 0.0625\n")
                finally:
                    os.close(fd)
            except OSError as e:
                refused = e
            kill9_now(mount)
        finally:
            release(lock)
    finally:
        os.close(d)
    mount.allow_log_errors = True
    mount.kill9()
    mount.start()
    d = os.open(run / "metrics", os.O_RDONLY | os.O_DIRECTORY)
    text = None
    try:
        for _ in range(70):
            nd = os.open(seg, os.O_RDONLY | os.O_DIRECTORY, dir_fd=d)
            os.close(d)
            d = nd
        fd = os.open("m", os.O_RDONLY, dir_fd=d)
        text = os.read(fd, 1 << 16).decode()
        os.close(fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(d)
    if refused is not None:
        assert refused.errno in (errno.ENAMETOOLONG, errno.EINVAL), refused
        assert not text, f"a refused write recorded points: {text!r}"
        return
    assert text is not None, "the nested metric (and its folders) is gone after the remount"
    assert [ln.split()[:2] for ln in text.splitlines()] == [["3", "0.125"], ["4", "0.0625"]], text
