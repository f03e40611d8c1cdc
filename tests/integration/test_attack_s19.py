# aletheia integration tests: the attack on issue 11's newest code (session 19): runs.csv from the
# collection-group listing, inode numbers from the path, the cache's crash rules, prefetch.
import csv
import io
import os
import threading

import pytest

import alutil
from alutil import mkrun  # noqa: F401


def _append(path, text):
    with open(path, "a") as f:
        f.write(text)


def _pages(got, other):
    """How many 4 KiB pages of got are other's (of how many)."""
    n = (len(got) + 4095) // 4096
    same = sum(got[i * 4096:(i + 1) * 4096] == other[i * 4096:(i + 1) * 4096] for i in range(n))
    return f"{same}/{n}"


def _csv_problem(data):
    """Why data is not one whole runs.csv (RFC 4180, CRLF, every row as wide as the header), or None."""
    if b"\0" in data:
        return "NUL bytes"
    if not data.endswith(b"\r\n"):
        return "no CRLF at the end"
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    if any(len(r) != len(rows[0]) for r in rows):
        return "rows of other widths than the header"
    if rows[0][0] != "id" or any(not r[0].isdigit() for r in rows[1:]):
        return "an id that is not a run's"
    return None


# ---- wrong bytes --------------------------------------------------------------------------------------

def test_runs_csv_read_while_another_reader_opens_a_newer_one_is_whole(run):
    """README "Files behave like files": a generated file's content is made when it is opened, "so a
    reader never gets bytes padded or cut by a newer size", and of two opens with different contents
    "read() still gives its own content whole". Six programs reading runs.csv over and over while a
    run is created and logs (a dashboard polling it while training goes on) got reads that were no
    CSV: the old content padded with NUL bytes to the newer size, or its head followed by the newer
    content's tail (`1,running,…,,\\r\\nZ,,<commit>,,,1,1,1` — 'Z' being the end of a `created` cell),
    163 reads of one run of 60 runs: the kernel's page cache holds one content per file, and a page
    one open's read filled was served to another open whose content was different."""
    exp = run.parent.parent
    done = threading.Event()
    bad = []

    def writer():
        try:
            for i in range(2, 32):
                r = exp / "runs" / str(i)
                r.mkdir()
                _append(r / "metrics" / "loss", f"{i}\n")
                _append(r / "metrics" / f"m{i % 3}", f"{i}.5\n")
        finally:
            done.set()

    def reader():
        while not done.is_set() and len(bad) < 5:
            with open(exp / "runs.csv", "rb") as f:
                data = f.read()
            why = _csv_problem(data)
            if why:
                bad.append(f"{why}: {data[-120:]!r}")

    threads = [threading.Thread(target=reader) for _ in range(6)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=80)
    assert not bad, "\n".join(bad)
    data = (exp / "runs.csv").read_bytes()
    assert _csv_problem(data) is None and data.count(b"\r\n") == 32, data


@pytest.mark.parametrize("new_size", [300_000, 200_000])
@pytest.mark.parametrize("folder", ["run", "experiment"])
def test_an_artifact_overwritten_while_open_reads_right_in_both_opens(run, folder, new_size):
    """README "artifacts": in a running run's (or its experiment's) artifacts/ files can be
    overwritten, and "a descriptor opened only for reading reads the file as it was at its open".
    Open artifacts/a (300,000 random bytes X) for reading and read its first page, overwrite it with
    Y (`cp` over it: no writer is open any more), open it again: the second descriptor read X's
    bytes whenever the first one read on before it (the pages the first open's reads filled are the
    file's one page cache, which the second open kept: 73 of its 74 pages were X's), and the first descriptor read Y's bytes
    when the second one read first. Expected: the second open reads Y, the first X."""
    base = run if folder == "run" else run.parent.parent
    p = base / "artifacts" / "a"
    size = 300_000
    bad = []
    for order in ("first reads on first", "second reads first"):
        x, y = os.urandom(size), os.urandom(new_size)
        p.write_bytes(x)
        fa = os.open(p, os.O_RDONLY)
        try:
            head = os.pread(fa, 4096, 0)
            p.write_bytes(y)
            fb = os.open(p, os.O_RDONLY)
            try:
                if order == "first reads on first":
                    a = head + os.pread(fa, size + 1, 4096)
                    b = os.pread(fb, size + 1, 0)
                else:
                    b = os.pread(fb, size + 1, 0)
                    a = head + os.pread(fa, size + 1, 4096)
            finally:
                os.close(fb)
        finally:
            os.close(fa)
        if b != y:
            bad.append(f"{order}: the open after the overwrite read {_pages(b, x)} of the old content's pages")
        if a != x:
            bad.append(f"{order}: the open before the overwrite read {_pages(a, y)} of the new content's pages")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("folder", ["run", "experiment"])
def test_a_reader_keeps_its_version_while_a_writer_holding_the_file_rewrites_it(run, folder):
    """README "artifacts": "a descriptor opened only for reading reads the file as it was at its
    open", also while another program holds the file open for writing (every writer shares one open
    file). The CI's GCS leg once saw the test above read 73 of 74 pages of the new content through
    the descriptor opened before the overwrite: the writer of the first content was still
    registered (its RELEASE comes after close() returns), its staged file stayed in place after the
    upload to S3/GCS, the reader opened that staged file, and the overwrite truncated and rewrote
    it in place. Holding a write descriptor open makes that order certain."""
    base = run if folder == "run" else run.parent.parent
    p = base / "artifacts" / "held"
    x, y = os.urandom(300_000), os.urandom(200_000)
    p.write_bytes(b"start")
    held = os.open(p, os.O_WRONLY)
    try:
        p.write_bytes(x)                  # joins the held writer, commits at its close
        fa = os.open(p, os.O_RDONLY)
        try:
            p.write_bytes(y)
            with open(p, "rb") as f:
                assert f.read() == y
            a = os.pread(fa, len(x) + 1, 0)
            assert a == x, f"the open before the overwrite read {_pages(a, y)} of the new content's pages"
        finally:
            os.close(fa)
    finally:
        os.close(held)
    assert p.read_bytes() == y


def _write_one_byte(path, i, barrier):
    fd = os.open(path, os.O_RDWR)
    try:
        barrier.wait(timeout=30)
        os.pwrite(fd, b"ABCDEF"[i:i + 1], i)
        os.fsync(fd)
        barrier.wait(timeout=30)
    finally:
        os.close(fd)


def test_writers_opening_an_artifact_at_once_share_one_open_file(run):
    """README "artifacts": every descriptor that opens a file for writing while another has it open
    shares that one open file, and what fsync() returned for is kept. Six processes open one existing
    artifact at the same moment, each writes its own byte and fsyncs: a tester lost 27 of 120 such
    bytes in 20 rounds (and SQLite commits of six connections opened at once), as two opens in the
    same moment each staged a copy of their own and the last close won."""
    import multiprocessing as mp
    p = run / "artifacts" / "shared.bin"
    ctx = mp.get_context("fork")
    for _ in range(5):
        p.write_bytes(b"." * 6 + b"x" * 4_000_000)     # a big file: its copy takes a while
        barrier = ctx.Barrier(6)
        procs = [ctx.Process(target=_write_one_byte, args=(p, i, barrier)) for i in range(6)]
        for q in procs:
            q.start()
        for q in procs:
            q.join(60)
        assert all(q.exitcode == 0 for q in procs)
        with open(p, "rb") as f:
            assert f.read(6) == b"ABCDEF"


def test_a_reader_opened_beside_an_idle_writer_keeps_its_version(run):
    """README "artifacts": a reader reads the file as it was at its open. With a write descriptor open
    that wrote nothing (an idle database connection), a reader opened after it read the writer's staged
    copy, which an overwrite then truncated under it (a tester's reader got 1,000 of 1,000,000 bytes)."""
    p = run / "artifacts" / "idle"
    old = b"old." * 250_000
    p.write_bytes(old)
    idle = os.open(p, os.O_RDWR)
    try:
        fr = os.open(p, os.O_RDONLY)
        try:
            head = os.pread(fr, 1000, 0)
            with open(p, "wb") as f:
                f.write(b"NEW!" * 10)
                f.flush()
                rest = os.pread(fr, len(old), 1000)
            assert head + rest == old, f"{len(head + rest)} bytes"
        finally:
            os.close(fr)
    finally:
        os.close(idle)
    assert p.read_bytes() == b"NEW!" * 10


def test_a_metric_read_while_it_grows_never_gives_nul_bytes(run):
    """README "metrics": "a loop polling `read()` show[s] new points …, and a read never returns part
    of a line or NUL bytes while writers append". One program appends 4,000 points line by line
    while three others read the metric whole over and over and a fourth keeps one descriptor open
    and polls read() at its end (tail -f's way): the poller got NUL bytes after the last complete
    line (`1849 924.5 1796566622.436\\n\\x00\\x00…`), 1 to 4 reads in each of four runs. The kernel
    keeps the metric's last page as it read it, zero-filled past the end of that time, and served
    it up to a newer size another reader's stat had given the file."""
    import time
    p = run / "metrics" / "loss"
    p.write_text("0\n")
    done = threading.Event()
    bad = []

    def writer():
        try:
            with open(p, "a") as f:
                for i in range(4000):
                    f.write(f"{i} {i * 0.5}\n")
                    f.flush()
        finally:
            done.set()

    def reader():
        while not done.is_set():
            with open(p, "rb") as f:
                data = f.read()
            if b"\0" in data or not data.endswith(b"\n"):
                bad.append(f"whole read: {data[-60:]!r}")

    def poller():
        with open(p, "rb") as f:
            while not done.is_set():
                chunk = f.read(65536)
                if b"\0" in chunk:
                    bad.append(f"poll: {chunk[-60:]!r}")
                if not chunk:
                    time.sleep(0.001)

    threads = [threading.Thread(target=writer), threading.Thread(target=poller)] + \
        [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=80)
    assert not bad, "\n".join(bad[:5])


# ---- the cache's bound (ALETHEIA_TEST_BLOBS=s3 or gs) ------------------------------------------------

@pytest.mark.skipif(not alutil.REMOTE, reason="needs ALETHEIA_TEST_BLOBS=s3 or gs")
def test_a_cache_of_small_files_stays_under_the_cache_size_on_disk(mount_factory):
    """README "Object storage": "`--cache-size` bounds what the cache keeps", and "Reading datasets:
    prefetch": "a prefetch never takes the cache past `--cache-size`" (test_prefetch measures that as
    the disk space of the cache folder's blobs). The cache counts each blob's size in bytes, but a
    file takes whole blocks on disk: a dataset of 300 files of about 1,000 bytes read through a
    mount with `--cache-size 100K` left 331,776 bytes of blobs on disk (the blobs' sizes summed to
    101,979): 3.2 times the limit, and for the small-file datasets prefetch is made for (1 KB
    records), up to 4 times. Expected: what the cache keeps on disk stays under the limit (count
    st_blocks, or round each blob up to the filesystem's block)."""
    from test_prefetch import cache_bytes, dataset
    files = {f"f{i:03d}.bin": os.urandom(1000 + i) for i in range(300)}
    _, paths = dataset(mount_factory, files)
    m = mount_factory("r", extra=["--cache-size", "100K"])
    for n in sorted(files):
        assert (m.path / paths[n]).read_bytes() == files[n]
    m.umount()    # every fill placed and synced; nothing open
    used = cache_bytes(m)
    assert used <= 100 * 1024, f"the cache folder holds {used} bytes of blobs with --cache-size 100K"


@pytest.mark.skipif(not alutil.REMOTE, reason="needs ALETHEIA_TEST_BLOBS=s3 or gs")
def test_a_damaged_cache_index_does_not_stop_the_mount(mount_factory):
    """README "Durability": "The cache is a copy", and a cache file the index does not list "is
    hashed at its first open after the restart and fetched again when it does not match". A cache
    index damaged on disk (here: index.db, its -wal and -shm overwritten with random bytes after a
    `kill -9`, as a bad sector or a power cut on a disk that reorders writes could leave it) stops
    the whole mount: `aletheia mount` exits 1 with "aletheia: cache index …/index.db: file is not a
    database", and nothing says that deleting the cache folder (a copy) is the fix. Expected: the
    index is set aside and made anew, every cached file then counts as unlisted (hashed at its
    first open), and the mount serves the right bytes."""
    import re
    import time
    from test_s3 import read_all, three_cached_files
    m = mount_factory(env={"ALETHEIA_CACHE_SYNC_MS": "1000"})
    datas, paths = three_cached_files(m)
    time.sleep(1.5)   # past ALETHEIA_CACHE_SYNC_MS: the fills are listed in the index
    m.kill9()
    for f in m.cache.iterdir():
        if f.name.startswith("index.db"):
            f.write_bytes(os.urandom(max(f.stat().st_size, 4096)))
    # one cached copy damaged too: with no index to trust, it must be hashed before it is served
    blobs = [f for sub in m.cache.iterdir() if sub.is_dir() and re.fullmatch(r"[0-9a-f]{2}", sub.name)
             for f in sub.iterdir()]
    assert blobs
    blobs[0].chmod(0o644)
    with open(blobs[0], "r+b") as f:
        f.seek(7)
        b = f.read(1)
        f.seek(7)
        f.write(bytes([b[0] ^ 0xFF]))
    m.allow_log_errors = True
    m.start()
    for n, p in paths.items():
        got, err, _ = read_all(p)
        assert err == 0 and got == datas[n], (n, len(got), err)
