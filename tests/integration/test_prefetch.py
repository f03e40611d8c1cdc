# aletheia integration tests: dataset-aware prefetch and `aletheia dataset prefetch` with blobs in a bucket
# (ALETHEIA_TEST_BLOBS=s3 or gs): bounded by --cache-size and never evicting an open file, resumable after an
# interruption, and never serving a corrupted object (README "Reading datasets: prefetch", issue 11 item 3).
import errno
import os
import pathlib
import stat
import re
import signal
import subprocess
import threading
import time

import pytest

import alutil
from test_s3 import Proxy, flip_byte, keys_with, placed, put_file, read_all

pytestmark = pytest.mark.skipif(not alutil.REMOTE, reason="needs ALETHEIA_TEST_BLOBS=s3 or gs")

MIB = 1 << 20


@pytest.fixture
def proxy(tmpdir_al):
    p = Proxy(tmpdir_al)
    yield p
    p.stop()


def dataset(mount_factory, files, ds="d"):
    """Writes files ({name: bytes}) into p/datasets/<ds> through a writer mount, which is then unmounted;
    returns the files' paths relative to a mount."""
    w = mount_factory("w")
    paths = {n: put_file(w, n, data, ds).relative_to(w.path) for n, data in files.items()}
    w.wait_idle()
    w.umount()
    return w, paths


def gets(proxy):
    return proxy.stats()["by_method"].get("GET", 0)


def prefetch(m, ds="p/d", **kw):
    return alutil.cli("dataset", "prefetch", ds, "--mount", m.path, **kw)


SUMMARY = re.compile(r"prefetch: p/d: (\d+) files, (\d+) bytes: (\d+) cached already, (\d+) fetched "
                     r"\((\d+) bytes\), (\d+) failed")


def summary(r):
    mt = SUMMARY.search(r.stdout)
    assert mt, f"no summary line: exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return [int(x) for x in mt.groups()]


def cache_bytes(m):
    """Disk space of the cache folder's blobs (complete and partial), not of its index. A walk of
    the folder is no snapshot: a blob evicted after it was counted and one placed before the walk
    reaches it would both count, so a walk counts only when the folder's names were the same
    before and after it."""
    def names():
        # (a remote metastore keeps its journal and undelivered writes in <cache-dir>/state)
        return sorted(str(f) for f in m.cache.rglob("*")
                      if not f.name.startswith("index.db") and f.name != "aletheia.log"
                      and "state" not in f.relative_to(m.cache).parts[:1])
    while True:
        before = names()
        total = 0
        for f in before:
            try:
                st = os.stat(f)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_blocks * 512
        if names() == before:
            return total


def test_dataset_prefetch_pulls_every_file_so_reads_need_no_get(mount_factory, proxy):
    files = {f"f{i:02d}.bin": os.urandom(100_000 + i) for i in range(20)}
    _, paths = dataset(mount_factory, files)
    m = mount_factory("r", env=proxy.env())
    proxy._call("POST", "/__stats/reset")
    r = prefetch(m)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    total, nbytes, cached, fetched, fbytes, failed = summary(r)
    assert (total, nbytes, cached, fetched, failed) == (20, sum(map(len, files.values())), 0, 20, 0)
    assert gets(proxy) == 20, f"{gets(proxy)} GETs for 20 small files"
    assert "\r" not in r.stderr, "a progress line when stderr is not a terminal"
    proxy._call("POST", "/__stats/reset")
    for n, rel in paths.items():
        got, err, _ = read_all(m.path / rel)
        assert err == 0 and got == files[n], f"{n}: {alutil.errname(err)}"
    assert gets(proxy) == 0, "files read after the prefetch were fetched again"
    # again: everything is cached and verified already, nothing is fetched
    r = prefetch(m)
    assert r.returncode == 0 and summary(r)[2:4] == [20, 0], r.stdout
    assert gets(proxy) == 0


def test_an_interrupted_dataset_prefetch_resumes(mount_factory, proxy):
    n = 48
    files = {f"f{i:02d}.bin": os.urandom(200_000) for i in range(n)}
    _, paths = dataset(mount_factory, files)
    m = mount_factory("r", env=proxy.env())
    m.allow_log_errors = True
    proxy._call("POST", "/__stats/reset")
    proxy.set(mode="delay", ms=400, count=-1, match="GET")   # slow enough to be killed midway
    p = subprocess.Popen([alutil.BIN, "dataset", "prefetch", "p/d", "--mount", str(m.path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=alutil.env_for(m))
    deadline = time.monotonic() + 60
    while gets(proxy) < 10:
        assert p.poll() is None, f"prefetch ended early: {p.communicate()}"
        assert time.monotonic() < deadline, "no GETs from the prefetch"
        time.sleep(0.05)
    p.kill()
    p.wait()
    # the fetches in flight when it was killed complete (and are kept); no new ones start
    deadline = time.monotonic() + 30
    while not m.status()["prefetch"].split(",")[1].strip().startswith("0 running"):
        assert time.monotonic() < deadline, m.status()["prefetch"]
        time.sleep(0.1)
    first = gets(proxy)
    assert first < n, f"the killed prefetch went on: {first} GETs of {n}"
    proxy.clear()
    # a new mount on the same cache folder: what was fetched is still cached
    m.remount()
    proxy._call("POST", "/__stats/reset")
    r = prefetch(m)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    total, _, cached, fetched, _, failed = summary(r)
    assert total == n and failed == 0 and cached + fetched == n
    assert cached == first, f"{first} fetched before the kill, {cached} found cached"
    assert gets(proxy) == fetched == n - first, f"{gets(proxy)} GETs to fetch the {n - first} left"
    proxy._call("POST", "/__stats/reset")
    for name, rel in paths.items():
        got, err, _ = read_all(m.path / rel)
        assert err == 0 and got == files[name], f"{name}: {alutil.errname(err)}"
    assert gets(proxy) == 0


def test_dataset_prefetch_refuses_a_dataset_larger_than_the_cache(mount_factory):
    files = {f"f{i}.bin": os.urandom(1_000_000) for i in range(12)}
    dataset(mount_factory, files)
    m = mount_factory("r", extra=["--cache-size", "8M"])
    r = prefetch(m)
    assert r.returncode == 1, r.stdout
    assert re.search(r"12 files of 12000000 bytes do not fit in the cache \(--cache-size 8388608 bytes\); "
                     r"raise --cache-size", r.stderr), r.stderr
    assert cache_bytes(m) == 0, "fetched anyway"
    r = prefetch(m, ds="p/nosuch")
    assert r.returncode == 1 and "no dataset p/nosuch" in r.stderr, r.stderr


@pytest.fixture
def small_disk(tmpdir_al):
    """An 8 MiB tmpfs; request it before mount_factory so the daemon is unmounted before the tmpfs."""
    d = pathlib.Path(tmpdir_al) / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(d)], capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)


def test_dataset_prefetch_fails_when_the_cache_disk_is_too_small(small_disk, mount_factory):
    # No --cache-size, but a cache disk of 8 MiB for 12 MB of files: the pull cannot keep its promise
    # (README "dataset prefetch": exit 0 only when every file is cached and verified). A tester saw
    # "473 fetched, 0 failed" of 2,002 files and exit 0, and the same again on a second run.
    files = {f"f{i:02d}.bin": os.urandom(1_000_000) for i in range(12)}
    _, paths = dataset(mount_factory, files)
    m = mount_factory("r", cache=small_disk / "cache")
    m.allow_log_errors = True
    for attempt in (1, 2):
        r = prefetch(m)
        total, _, cached, fetched, _, failed = summary(r)
        assert r.returncode == 1, f"attempt {attempt}: exit 0 with {cached} cached and {fetched} fetched of {total}"
        assert total == 12 and failed > 0 and cached + fetched + failed == total, r.stdout
        assert re.search(r"no (room|space left) on the cache disk", r.stderr), r.stderr
    for n, rel in paths.items():    # reads still work, each fetched on demand
        got, err, _ = read_all(m.path / rel)
        assert err == 0 and got == files[n], f"{n}: {alutil.errname(err)}"


def test_scan_prefetch_stays_under_the_cache_size_and_keeps_open_files(mount_factory, proxy):
    """A scan of a dataset twice the cache: prefetch runs ahead of the reader, the cache folder never holds
    more than --cache-size, and a file held open from the start is never evicted (read again through its
    descriptor with no GET)."""
    files = {f"f{i:02d}.bin": os.urandom(400_000) for i in range(40)}
    _, paths = dataset(mount_factory, files)
    m = mount_factory("r", extra=["--cache-size", "8M"], env=proxy.env())
    names = sorted(files)
    held_name = names[-1]          # read last by the scan: prefetch reaches it while it is open
    fd = os.open(m.path / paths[held_name], os.O_RDONLY)
    try:
        assert os.pread(fd, 1000, 0) == files[held_name][:1000]
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], cache_bytes(m))
                time.sleep(0.01)
        t = threading.Thread(target=sample)
        t.start()
        proxy._call("POST", "/__stats/reset")
        try:
            for n in names[:-1]:
                got, err, _ = read_all(m.path / paths[n])
                assert err == 0 and got == files[n], f"{n}: {alutil.errname(err)}"
        finally:
            stop.set()
            t.join()
        st = m.status()["prefetch"]
        fetched = int(re.search(r"(\d+) blobs fetched", st).group(1))
        assert fetched > 0, f"no prefetch during a scan of the dataset: {st}"
        assert peak[0] <= 8 * MIB, f"the cache folder held {peak[0]} bytes with --cache-size 8M"
        held = [k for k in alutil.OBJSTORE.list(m.blobs.prefix + "/")
                if alutil.OBJSTORE.get(k) == files[held_name]]
        assert len(held) == 1
        recent = [x["path"] for x in proxy.stats()["recent"] if x["method"] == "GET"]
        assert not [x for x in recent if held[0].rsplit("/", 1)[-1] in x], "the open file was fetched again"
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        out = bytearray()
        while True:
            b = os.pread(fd, MIB, len(out))
            if not b:
                break
            out += b
        assert bytes(out) == files[held_name], "the open file changed"
        recent = [x["path"] for x in proxy.stats()["recent"] if x["method"] == "GET"]
        assert not [x for x in recent if held[0].rsplit("/", 1)[-1] in x], "the open file was evicted"
    finally:
        os.close(fd)


def test_a_scans_listing_answers_the_lookups_and_opens_of_its_files(mount_factory, proxy):
    """Once a scan's prefetch has listed the dataset, looking up and opening its files reads no
    document each (their attributes and records were kept from the listing), and what the files
    show is still what a lookup would read: sizes, contents, a folder, a file added meanwhile."""
    files = {f"f{i:03d}.bin": os.urandom(1000 + i) for i in range(60)}
    w = mount_factory("w")
    paths = {n: put_file(w, n, data).relative_to(w.path) for n, data in files.items()}
    (w.path / "p" / "datasets" / "d" / "sub").mkdir()
    deep = os.urandom(5000)
    (w.path / "p" / "datasets" / "d" / "sub" / "deep.bin").write_bytes(deep)
    w.wait_idle()
    w.umount()
    m = mount_factory("r", env=proxy.env())
    names = sorted(files)
    for n in names[:3]:    # three cold opens of one dataset make a scan: its prefetch lists it
        got, err, _ = read_all(m.path / paths[n])
        assert err == 0 and got == files[n]
    deadline = time.monotonic() + 30
    while not re.search(r"[1-9]\d* blobs fetched", m.status()["prefetch"]):
        assert time.monotonic() < deadline, f"no scan prefetch: {m.status()['prefetch']}"
        time.sleep(0.05)
    # the local store counts its document reads (Firestore's mounts read through their own cache)
    before = None if alutil.FIRESTORE else int(m.status()["documents_read"])
    for n in names[3:]:
        assert os.stat(m.path / paths[n]).st_size == len(files[n])
        got, err, _ = read_all(m.path / paths[n])
        assert err == 0 and got == files[n], f"{n}: {alutil.errname(err)}"
    ds = m.path / "p" / "datasets" / "d"
    assert stat.S_ISDIR(os.stat(ds / "sub").st_mode)
    assert (ds / "sub" / "deep.bin").read_bytes() == deep
    if before is not None:
        read = int(m.status()["documents_read"]) - before
        assert read < 10, f"{read} documents read for {len(names) - 3} lookups and opens after the scan's listing"
    # a change through the mount shows at once: the kept answers were for the old generation
    new = os.urandom(777)
    put_file(m, "new.bin", new)
    assert os.stat(ds / "new.bin").st_size == 777 and (ds / "new.bin").read_bytes() == new
    assert os.stat(ds / names[-1]).st_size == len(files[names[-1]])


def test_shuffled_readers_over_a_dataset_larger_than_the_cache(mount_factory, proxy):
    """8 readers in a shuffled order (a DataLoader's workers) over a dataset three times the cache:
    the scan's prefetch waits for room and for the readers, woken one thread at a time as files
    are opened and closed; every file reads back right, the cache folder stays under
    --cache-size, and the prefetch took part."""
    import random
    files = {f"f{i:02d}.bin": os.urandom(200_000 + i) for i in range(60)}
    _, paths = dataset(mount_factory, files)
    m = mount_factory("r", extra=["--cache-size", "4M"], env=proxy.env())
    order = sorted(files)
    random.Random(7).shuffle(order)
    shares = [order[k::8] for k in range(8)]
    bad, peak, stop = [], [0], threading.Event()

    def reader(share):
        for n in share:
            got, err, _ = read_all(m.path / paths[n])
            if err or got != files[n]:
                bad.append(f"{n}: {alutil.errname(err)}, {len(got)} bytes")

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], cache_bytes(m))
            time.sleep(0.01)
    threads = [threading.Thread(target=reader, args=(sh,)) for sh in shares]
    t = threading.Thread(target=sample)
    t.start()
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=300)
        assert not any(th.is_alive() for th in threads), "readers still running after 300 s"
    finally:
        stop.set()
        t.join()
    assert not bad, bad
    assert peak[0] <= 4 * MIB, f"the cache folder held {peak[0]} bytes with --cache-size 4M"
    st = m.status()["prefetch"]
    assert int(re.search(r"(\d+) blobs fetched", st).group(1)) > 0, f"no prefetch: {st}"


@pytest.mark.parametrize("how", ["command", "scan"])
def test_a_corrupted_object_met_by_prefetch_is_never_served(mount_factory, how):
    files = {f"f{i:02d}.bin": os.urandom(150_000) for i in range(12)}
    w, paths = dataset(mount_factory, files)
    bad_name = "f05.bin"
    key = [k for k in alutil.OBJSTORE.list(w.blobs.prefix + "/") if alutil.OBJSTORE.get(k) == files[bad_name]]
    assert len(key) == 1
    bad = bytearray(files[bad_name])
    bad[1000] ^= 0xFF
    alutil.OBJSTORE.put(key[0], bytes(bad))   # damaged in the bucket: same size, other bytes
    m = mount_factory("r")
    m.allow_log_errors = True
    if how == "command":
        r = prefetch(m)
        assert r.returncode == 1, r.stdout
        total, _, cached, fetched, _, failed = summary(r)
        assert (total, fetched, failed) == (12, 11, 1), r.stdout
        assert "hash mismatch" in r.stderr, r.stderr
    else:
        # a scan in listing order: prefetch meets the damaged object before the reader does
        for n in sorted(files)[:3]:
            got, err, _ = read_all(m.path / paths[n])
            assert err == 0 and got == files[n]
        deadline = time.monotonic() + 30
        while "0 running" not in m.status()["prefetch"] or "1 started" not in m.status()["prefetch"]:
            assert time.monotonic() < deadline, m.status()["prefetch"]
            time.sleep(0.1)
        assert re.search(r"\b1 failed", m.status()["prefetch"]), m.status()["prefetch"]
    for n in sorted(files):
        got, err, _ = read_all(m.path / paths[n])
        if n == bad_name:
            assert err == errno.EIO, f"the damaged object read as {alutil.errname(err)}"
            assert got == b"", f"{len(got)} bytes of the damaged object were served"
        else:
            assert err == 0 and got == files[n], f"{n}: {alutil.errname(err)}"
    for f in m.cache.rglob("*"):
        if f.is_file() and f.stat().st_size == len(bad):
            assert f.read_bytes() != bytes(bad), f"the damaged object is kept in the cache as {f}"


def test_several_opens_of_one_cold_file_are_no_scan(mount_factory, proxy):
    """A scan is cold opens of distinct files: three processes reading the same cold file at once
    (and one reading it three times) fetch that file only. A tester saw them start a prefetch of
    the whole dataset (902 blobs, half of a 200 MiB cache, evicting another dataset's files)."""
    files = {f"f{i:02d}.bin": os.urandom(50_000 + i) for i in range(30)}
    _, paths = dataset(mount_factory, files)
    m = mount_factory("r", env=proxy.env())
    proxy._call("POST", "/__stats/reset")
    target = m.path / paths["f07.bin"]
    procs = [subprocess.Popen(["cat", str(target)], stdout=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert outs == [files["f07.bin"]] * 3
    for _ in range(3):
        assert target.read_bytes() == files["f07.bin"]
    time.sleep(2)    # a scan's listing and prefetch would have started by now
    assert gets(proxy) == 1, f"{gets(proxy)} GETs for one file: {m.status()['prefetch']}"
    assert not re.search(r"[1-9]\d* blobs fetched", m.status()["prefetch"]), m.status()["prefetch"]


@pytest.mark.parametrize("when", ["unmounted", "mounted"])
def test_dataset_prefetch_fetches_again_a_cached_file_changed_on_disk(mount_factory, proxy, when):
    """A pull counts as cached only copies it can vouch for: one changed behind the mount since it
    was placed (its ctime moved: while unmounted, or while mounted and not open) is fetched again.
    A tester saw it counted as "cached already", exit 0, and then fail to read with the server away."""
    files = {f"f{i:02d}.bin": os.urandom(40_000 + i) for i in range(10)}
    _, paths = dataset(mount_factory, files)
    m = mount_factory("r", env=dict(proxy.env(), ALETHEIA_CACHE_SYNC_MS="0"))
    m.allow_log_errors = True
    r = prefetch(m)
    assert r.returncode == 0 and summary(r)[2:4] == [0, 10], r.stdout
    victim = placed(m)[len(files["f03.bin"])]
    if when == "unmounted":
        m.umount()
        flip_byte(victim, keep_mtime=True)
        m.start()
    else:
        flip_byte(victim, keep_mtime=True)
    proxy._call("POST", "/__stats/reset")
    r = prefetch(m)
    assert r.returncode == 0, r.stderr
    assert summary(r)[2:4] == [9, 1], r.stdout
    assert gets(proxy) == 1
    assert "changed on disk since it was placed" in m.log_text()
    proxy._call("POST", "/__stats/reset")
    got, err, _ = read_all(m.path / paths["f03.bin"])
    assert err == 0 and got == files["f03.bin"]
    assert gets(proxy) == 0, "the copy fetched again was fetched once more"
