# aletheia integration tests: faults (full disk, kill -9 mid-copy) and malformed input
# (README "Files behave like files", "Durability").
import errno
import json
import os
import pathlib
import random
import subprocess
import time

import pytest

import alutil
from alutil import blob_files, mkrun, points, read_json, sh, sha256, try_write

MIB = 1 << 20
DISK_MB = 8
BIG = 20 * MIB


def eventually(check, timeout=2.0):
    """Retries check() until it holds: FUSE sends RELEASE only after close() has returned, and the daemon lists a
    file open for writing until its release, so a file whose close() failed may stay listed for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def assert_true(cond, what=None):
    assert cond, what


# ---- a small disk under the store, blobs and cache -------------------------------------------------

@pytest.fixture
def small_disk(tmpdir_al):
    """An 8 MiB tmpfs; request it before mount_factory so the daemon is unmounted before the tmpfs."""
    d = pathlib.Path(tmpdir_al) / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(d)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)


def small_mount(small_disk, mount_factory, extra=()):
    m = mount_factory(store=small_disk / "store", blobs=small_disk / "blobs", cache=small_disk / "cache",
                      extra=extra)
    m.allow_log_errors = True   # ENOSPC is worth an ERROR line in the daemon log
    return m


def free_bytes(d):
    st = os.statvfs(d)
    return st.f_bavail * st.f_frsize


def big_source(m):
    src = m.root / "big.bin"
    src.write_bytes(os.urandom(BIG))
    return src


def copy_raw(src, dst):
    """Copies src to dst in 1 MiB write()s like cp; returns the first errno seen (write or close), 0 if none."""
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as e:
        return e.errno
    err = 0
    with open(src, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            try:
                os.write(fd, chunk)
            except OSError as e:
                err = e.errno
                break
    try:
        os.close(fd)
    except OSError as e:
        err = err or e.errno
    return err


def copy_target(m, kind):
    """Where the big copy goes: a running run's artifacts/ or a fresh empty dataset."""
    if kind == "artifact":
        run = mkrun(m)
        return run / "artifacts"
    d = m.path / "p/datasets/d"
    os.makedirs(d)
    return d


def assert_not_recorded(folder, kind):
    """The failed copy left nothing that claims to be the file."""
    def unlisted():
        names = [n for n in os.listdir(folder) if not n.startswith(".")]
        assert "big.bin" not in names, f"the failed copy was recorded: {names}"
    eventually(unlisted)
    assert not (folder / "big.bin").exists()
    if kind == "artifact":
        arts = read_json(folder.parent / "run.json")["artifacts"]
        assert arts == {"count": 0, "bytes": 0}, arts
    else:
        j = read_json(folder / ".dataset.json")
        assert j["files"] == 0 and j["bytes"] == 0, j


@pytest.mark.parametrize("kind", ["artifact", "dataset"])
def test_full_disk_copy_not_recorded(small_disk, mount_factory, kind):
    m = small_mount(small_disk, mount_factory)
    folder = copy_target(m, kind)
    version = read_json(folder / ".dataset.json")["version"] if kind == "dataset" else None
    src = big_source(m)
    r = sh(f"cp '{src}' '{folder}/big.bin'", check=False)
    assert r.returncode != 0 and "No space left on device" in r.stderr, r.stderr
    assert m.alive()
    # the daemon's log names the file that could not be written (it said "write ?:")
    log = m.log_text()
    assert "big.bin" in log and "?:" not in log, log
    assert_not_recorded(folder, kind)
    if kind == "dataset":
        assert read_json(folder / ".dataset.json")["version"] == version
    # the same from raw syscalls: ENOSPC from write() or close(), never success
    e = copy_raw(src, folder / "big2.bin")
    assert e == errno.ENOSPC, f"expected ENOSPC, got {errno.errorcode.get(e, e)}"
    eventually(lambda: assert_true("big2.bin" not in os.listdir(folder)))
    assert_not_recorded(folder, kind)


@pytest.mark.parametrize("kind", ["artifact", "dataset"])
def test_full_disk_mount_keeps_working(small_disk, mount_factory, kind):
    m = small_mount(small_disk, mount_factory)
    folder = copy_target(m, kind)
    run = mkrun(m)
    sh("echo 0.1 > params/lr && echo 0.5 >> metrics/loss", cwd=run)
    free0 = free_bytes(small_disk)
    src = big_source(m)
    r = sh(f"cp '{src}' '{folder}/big.bin'", check=False)
    assert r.returncode != 0 and "No space left on device" in r.stderr, r.stderr
    src.unlink()
    # nothing half-recorded is left behind: no staged leftover, no orphan blob, the space is back
    staging = small_disk / "store/staging"

    def clean():
        assert not os.path.isdir(staging) or os.listdir(staging) == [], os.listdir(staging)
        blobs = blob_files(small_disk / "blobs")
        assert blobs == [], f"unrecorded blobs left: {[(str(p), p.stat().st_size) for p in blobs]}"
        assert free_bytes(small_disk) >= free0 - MIB, (free_bytes(small_disk), free0)
    eventually(clean)
    # small writes through the mount still work and read back (checked with raw syscalls: bash hides close errors)
    assert try_write(run / "params/bs", b"32\n") == 0
    assert (run / "params/bs").read_text() == "32\n"
    assert try_write(run / "metrics/loss", b"0.4\n", os.O_WRONLY | os.O_APPEND) == 0
    assert [v for _, v, _ in points(run / "metrics/loss")] == ["0.5", "0.4"]
    assert try_write(m.path / "p/metadata/info", b'{"ok": 1}') == 0
    assert json.loads((m.path / "p/metadata/info").read_text()) == {"ok": 1}
    assert try_write(folder / "small.txt", b"small\n") == 0
    assert (folder / "small.txt").read_bytes() == b"small\n"
    eventually(lambda: assert_true("big.bin" not in os.listdir(folder)))
    m.umount()
    m.start()
    assert (run / "params/bs").read_text() == "32\n"
    assert (folder / "small.txt").read_bytes() == b"small\n"
    assert "big.bin" not in os.listdir(folder)


def test_a_write_after_fsync_that_finds_the_disk_full_leaves_the_file_whole(small_disk, mount_factory):
    """A descriptor whose content was committed (fsync) stages a copy before its next write. When that
    copy finds the disk full, the write fails with ENOSPC and the file stays as committed: a later
    write, once there is room, goes on from the whole content. Before, the handle went on in the
    partial copy and its close recorded the first MiB of the file, then zeros, then the new bytes."""
    m = small_mount(small_disk, mount_factory)
    run = mkrun(m)
    p = run / "artifacts/log.bin"
    x = os.urandom(2 * MIB)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, x)
        os.fsync(fd)                                    # committed: the next write stages a copy
        filler = small_disk / "filler"
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, free_bytes(small_disk) - MIB))
        with pytest.raises(OSError) as e:
            os.pwrite(fd, b"tail", len(x))
        assert e.value.errno == errno.ENOSPC
        assert p.read_bytes() == x
        os.unlink(filler)
        assert os.pwrite(fd, b"tail", len(x)) == 4
    finally:
        os.close(fd)
    assert p.read_bytes() == x + b"tail"
    assert m.alive()


def test_an_open_whose_copy_fills_the_disk_records_nothing_cut(small_disk, mount_factory):
    """Opening an artifact for writing copies its content first; a copy that fills the disk stops
    with a short write, which sets no errno. It was taken for success: the writer went on from a
    copy cut where the disk filled, and its fsync stored that cut copy as a blob (a tester's 400 MB
    file became 319 MiB, stopped from being recorded only by the metastore's own full disk)."""
    m = small_mount(small_disk, mount_factory)
    run = mkrun(m)
    p = run / "artifacts/cut.bin"
    x = os.urandom(3 * MIB)
    p.write_bytes(x)
    m.wait_idle()
    before = set(blob_files(small_disk / "blobs"))
    filler = small_disk / "filler"
    with open(filler, "wb") as f:      # room for a third of the copy, not a whole number of 64 KiB
        f.write(b"\0" * max(0, free_bytes(small_disk) - MIB - 12 * 1024))
    failed = None
    try:
        fd = os.open(p, os.O_RDWR)
        try:
            os.pwrite(fd, b"Z", 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        failed = e.errno
    assert failed == errno.ENOSPC, failed
    os.unlink(filler)
    assert p.read_bytes() == x
    assert set(blob_files(small_disk / "blobs")) == before
    assert m.alive()


def test_run_output_past_a_full_disk_is_said_not_recorded(small_disk, mount_factory):
    """`aletheia run` whose output fills the store's disk: the command goes on and ends, the run ends
    with its exit status, and stderr says output.log is not recorded (a file is recorded whole or not
    at all). It said "the end of the output may be missing", and a tester found all of it missing."""
    m = small_mount(small_disk, mount_factory)
    r = subprocess.run([alutil.BIN, "run", "--exper", "p/e", "--mount", str(m.path), "--", "sh", "-c",
                        "head -c 12000000 /dev/zero | tr '\\0' x; exit 3"],
                       capture_output=True, timeout=120)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 3, err
    assert "output.log is not recorded" in err and "may be missing" not in err, err
    run = m.path / "p/experiments/e/runs/1"
    assert (run / "output.log").read_bytes() == b""
    assert read_json(run / "run.json")["exit_code"] == 3
    assert m.alive()


def test_metrics_on_nearly_full_disk(small_disk, mount_factory):
    m = small_mount(small_disk, mount_factory)
    run = mkrun(m)
    sh("echo 0.1 > params/lr && echo 1 >> metrics/loss", cwd=run)
    m.wait_idle()
    # leave about 512 KiB free on the store's disk
    filler = small_disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free_bytes(small_disk) - 512 * 1024))
    assert free_bytes(small_disk) <= 640 * 1024
    fd = os.open(run / "metrics/loss", os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(1, 301):
            os.write(fd, f"{i} {i / 1000}\n".encode())   # each write() must be accepted
    finally:
        os.close(fd)
    want = [(0, "1")] + [(i, repr(i / 1000)) for i in range(1, 301)]
    assert [(s, v) for s, v, _ in points(run / "metrics/loss")] == want
    assert read_json(run / "run.json")["metrics"]["loss"]["count"] == 301
    # acknowledged points survive kill -9 and are replayed on the nearly full disk
    m.kill9()
    m.start()
    assert [(s, v) for s, v, _ in points(run / "metrics/loss")] == want
    m.wait_idle()
    sh("echo 0.25 >> metrics/loss", cwd=run)
    assert points(run / "metrics/loss")[-1][:2] == (301, "0.25")
    assert (run / "params/lr").read_text() == "0.1\n"


# ---- kill -9 while cp -r copies many small artifacts ----------------------------------------------

def test_kill9_during_cp_r(mount):
    run = mkrun(mount)
    src = mount.root / "many"
    rnd = random.Random(7)
    files = {}
    for i in range(600):
        rel = pathlib.Path(f"d{i % 6}/sub{i % 3}/f{i:04d}.bin")
        data = os.urandom(rnd.randint(1, 48 * 1024))
        (src / rel.parent).mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
        files[str(rel)] = data
    dst = run / "artifacts/many"
    cp = subprocess.Popen(["cp", "-r", str(src), str(run / "artifacts/")], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    # kill the daemon once part of the tree is there
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and cp.poll() is None:
        n = sum(len(fs) for _, _, fs in os.walk(dst)) if dst.exists() else 0
        if n >= 40:
            break
        time.sleep(0.02)
    mid_copy = cp.poll() is None
    mount.allow_log_errors = True
    mount.kill9()
    try:
        cp.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(cp.pid, 9)
        cp.wait()
    assert mid_copy, "cp -r finished before the daemon was killed: the test did not test anything"
    assert cp.returncode != 0
    mount.start()
    listed = {}
    for dirpath, _, names in os.walk(dst):
        for name in names:
            p = pathlib.Path(dirpath, name)
            listed[str(p.relative_to(dst))] = p
    assert listed, "no artifact survived the kill although at least 40 were listed before it"
    for rel, p in listed.items():
        assert rel in files, f"unexpected artifact {rel}"
        assert os.stat(p).st_size == len(files[rel]), f"{rel}: truncated or grown"
        data = p.read_bytes()
        assert len(data) == len(files[rel]) and data == files[rel], f"{rel}: content differs from the source"
    arts = read_json(run / "run.json")["artifacts"]
    assert arts["count"] == len(listed) and arts["bytes"] == sum(len(files[r]) for r in listed), arts
    # the copy can be finished after the crash, and then everything matches
    sh(f"cp -r '{src}/.' '{dst}/'", timeout=120)
    for rel, data in files.items():
        assert sha256(dst / rel) == sha256(src / rel), rel
    assert read_json(run / "run.json")["artifacts"]["count"] == len(files)


# ---- malformed input not covered elsewhere --------------------------------------------------------

@pytest.mark.parametrize("bad", [b"[1, 2, 3]", b"42", b"3.5", b'"text"', b"null", b'{"a": 1, "b": [1, 2',
                                 b'{"a": {"b": 1}'])
def test_metadata_not_an_object(mount, bad):
    os.mkdir(mount.path / "p")
    md = mount.path / "p/metadata"
    (md / "info").write_text('{"ok": 1}')
    e = try_write(md / "info", bad)
    assert e == errno.EINVAL, f"{bad!r}: expected EINVAL, got {errno.errorcode.get(e, e)}"
    assert json.loads((md / "info").read_text()) == {"ok": 1}
    e = try_write(md / "other", bad)
    assert e == errno.EINVAL, f"{bad!r}: expected EINVAL, got {errno.errorcode.get(e, e)}"
    eventually(lambda: assert_true(os.listdir(md) == ["info"], os.listdir(md)))
    assert not (md / "other").exists()


def test_a_refused_value_is_gone_while_its_open_file_lives_on(mount):
    """A value refused at close() is gone at once, from stat as from the listing, also while
    another descriptor keeps its open file (the kernel's release comes later: the same window
    a plain close leaves until the release arrives)."""
    os.mkdir(mount.path / "p")
    md = mount.path / "p/metadata"
    (md / "info").write_text('{"ok": 1}')
    fd = os.open(md / "other", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fd2 = os.dup(fd)
    try:
        os.write(fd, b"[1, 2, 3]")
        with pytest.raises(OSError) as e:
            os.close(fd)
        assert e.value.errno == errno.EINVAL
        assert os.listdir(md) == ["info"]
        assert not (md / "other").exists()
    finally:
        try:
            os.close(fd2)
        except OSError:
            pass
    assert not (md / "other").exists()


@pytest.mark.parametrize("bad", [b"", b"\n", b"2 3\n", b"7x\n", b"99999999999999999999999\n"])
def test_fold_invalid(run, bad):
    sh("echo 4 > fold", cwd=run)
    e = try_write(run / "fold", bad)
    # O_TRUNC with nothing written leaves the old value (README "Durability")
    expected = 0 if bad == b"" else errno.EINVAL
    assert e == expected, f"{bad!r}: expected {errno.errorcode.get(expected, expected)}, got {errno.errorcode.get(e, e)}"
    assert (run / "fold").read_text() == "4\n"
    assert read_json(run / "run.json")["fold"] == 4


@pytest.mark.parametrize("bad", [
    b"failed abc\n", b"failed 3x\n", b"running\nfinished\n",
    b"finished 1 2\n", b"finished\x00junk\n",
], ids=["failed-abc", "failed-3x", "two-lines", "third-word", "nul-junk"])
def test_status_invalid(run, bad):
    e = try_write(run / "status", bad)
    assert e == errno.EINVAL, f"{bad!r}: expected EINVAL, got {errno.errorcode.get(e, e)}"
    assert (run / "status").read_text() == "running\n"
    j = read_json(run / "run.json")
    assert j["status"] == "running" and j["ended"] is None


@pytest.mark.parametrize("bad", [b"1,2,3,4\n", b"1 2 3 4 5\n", b"0.5\x00\n", b"\x000.5\n", b"1 0.5\x001\n",
                                 b"1" * MIB + b"\n", b"0." + b"1" * MIB + b"\n"],
                         ids=["4-commas", "5-fields", "nul-end", "nul-start", "nul-mid", "1MiB-int", "1MiB-frac"])
def test_metric_line_invalid(run, bad):
    m = run / "metrics/loss"
    sh("echo 0.5 >> metrics/loss", cwd=run)
    before = m.read_bytes()
    e = try_write(m, bad, os.O_WRONLY | os.O_APPEND)
    if bad.startswith(b"0.111"):
        # a million digits after the point is still a double (0.111…): accepting it is right
        assert e == 0 or e == errno.EINVAL, errno.errorcode.get(e, e)
        if e == 0:
            assert [v for _, v, _ in points(m)] == ["0.5", repr(float(bad))]
            return
    else:
        assert e == errno.EINVAL, f"{bad[:40]!r}: expected EINVAL, got {errno.errorcode.get(e, e)}"
    assert m.read_bytes() == before
    sh("echo 0.25 >> metrics/loss", cwd=run)
    assert [(s, v) for s, v, _ in points(m)] == [(0, "0.5"), (1, "0.25")]
    assert read_json(run / "run.json")["metrics"]["loss"]["count"] == 2


def test_metric_huge_partial_line(run):
    """1 MiB of digits with no newline: the write waits for its line; close() then refuses it."""
    m = run / "metrics/loss"
    sh("echo 0.5 >> metrics/loss", cwd=run)
    before = m.read_bytes()
    e = try_write(m, b"9" * MIB, os.O_WRONLY | os.O_APPEND)
    assert e == errno.EINVAL, f"expected EINVAL, got {errno.errorcode.get(e, e)}"
    assert m.read_bytes() == before


@pytest.mark.parametrize("folder", ["params", "metrics"])
def test_reserved_file_names(run, folder):
    for name in ("__x__", "__reserved__"):
        e = try_write(run / folder / name, b"1\n", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        assert e == errno.EINVAL, f"{folder}/{name}: expected EINVAL, got {errno.errorcode.get(e, e)}"
        assert name not in os.listdir(run / folder)
    r = sh(f"echo 1 > {folder}/__x__", cwd=run, check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert read_json(run / "run.json")[folder] == {}
    # names that only look alike are fine
    assert try_write(run / folder / "__x_", b"1\n", os.O_WRONLY | os.O_CREAT | os.O_APPEND) == 0
    assert try_write(run / folder / "_x__", b"1\n", os.O_WRONLY | os.O_CREAT | os.O_APPEND) == 0


def test_dataset_link_outside_project(mount):
    run = mkrun(mount)
    (mount.path / "p/datasets/mine").mkdir()
    mkrun(mount, proj="q")
    (mount.path / "q/datasets/other").mkdir()
    (mount.path / "q/datasets/other/f").write_text("x\n")
    outside = mount.root / "plain"
    outside.mkdir()
    for target in (str(mount.path / "q/datasets/other"), "../../../../../../q/datasets/other", str(outside),
                   "/etc", "../../../../../experiments", str(mount.path / "p/experiments/e"),
                   "../../../../../datasets/mine/sub"):
        with pytest.raises(OSError) as ei:
            os.symlink(target, run / "datasets/x")
        assert ei.value.errno == errno.EINVAL, (target, ei.value)
        assert not os.path.lexists(run / "datasets/x"), target
    assert os.listdir(run / "datasets") == []
    assert read_json(run / "run.json")["datasets"] in ([], {})
    assert read_json(mount.path / "q/datasets/other/.dataset.json")["files"] == 1


def test_dataset_link_missing(mount):
    """README: a link goes to a dataset of the same project; one that does not exist: ENOENT (or EINVAL)."""
    run = mkrun(mount)
    for target in ("../../../../../datasets/nope", str(mount.path / "p/datasets/nope")):
        with pytest.raises(OSError) as ei:
            os.symlink(target, run / "datasets/nope")
        assert ei.value.errno in (errno.ENOENT, errno.EINVAL), (target, ei.value)
        assert not os.path.lexists(run / "datasets/nope")
    r = sh("ln -s ../../../../../datasets/nope datasets/nope", cwd=run, check=False)
    assert r.returncode != 0
    assert os.listdir(run / "datasets") == [] and not (mount.path / "p/datasets/nope").exists()
    assert read_json(run / "run.json")["datasets"] in ([], {})


def test_generated_files_refuse_writes(run, mount):
    sh("echo 0.1 > params/lr && echo 0.5 >> metrics/loss", cwd=run)
    ds = mount.path / "p/datasets/d"
    ds.mkdir()
    (ds / "f").write_text("x\n")
    targets = [run / "run.json", run.parent.parent / "runs.csv", ds / ".dataset.json",
               mount.path / ".aletheia/status"]
    before = {p: p.read_bytes() for p in targets}
    for p in targets:
        for flags in (os.O_WRONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND, os.O_RDWR):
            e = try_write(p, b'{"id": "hacked"}\n', flags)
            assert e in (errno.EACCES, errno.EPERM), f"{p} flags {flags:#o}: got {errno.errorcode.get(e, e)}"
        with pytest.raises(OSError) as ei:
            os.truncate(p, 0)
        assert ei.value.errno in (errno.EACCES, errno.EPERM), (p, ei.value)
        r = sh(f"echo x > '{p}'", check=False)
        assert r.returncode != 0, p
    for p in targets[:3]:
        assert p.read_bytes() == before[p], p
    assert read_json(run / "run.json")["id"] == "1"


@pytest.mark.parametrize("where", ["p", "p/experiments/e", "p/experiments/e/runs/1"])
def test_mkdir_unknown_fixed_folder(run, mount, where):
    base = mount.path / where
    before = sorted(os.listdir(base))
    for name in ("stuff", "models"):
        with pytest.raises(OSError) as ei:
            os.mkdir(base / name)
        assert ei.value.errno in (errno.EPERM, errno.ENOENT), (where, name, ei.value)
        assert not (base / name).exists()
    e = try_write(base / "notes.txt", b"x\n")
    assert e in (errno.EPERM, errno.ENOENT, errno.EACCES), f"{where}/notes.txt: got {errno.errorcode.get(e, e)}"
    assert sorted(os.listdir(base)) == before


def test_rm_param_refused(run):
    sh("echo 0.001 > params/lr && mkdir -p params/opt && echo 0.9 > params/opt/beta1", cwd=run)
    for p in (run / "params/lr", run / "params/opt/beta1"):
        with pytest.raises(PermissionError) as ei:
            os.unlink(p)
        assert ei.value.errno == errno.EPERM
    r = sh("rm -f params/lr params/opt/beta1; rm -rf params/opt", cwd=run, check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    assert (run / "params/lr").read_text() == "0.001\n"
    assert (run / "params/opt/beta1").read_text() == "0.9\n"
    assert read_json(run / "params.json") == {"lr": 0.001, "opt/beta1": 0.9}


# ---- found in review ----------------------------------------------------------------------------------

def test_mount_inside_a_git_repo_creates_runs(tmpdir_al, mount_factory):
    """A mount point inside the caller's repository: capturing the git state must not walk into the
    mount (the kernel holds runs/ locked for the mkdir) and the run records the repository."""
    repo = pathlib.Path(tmpdir_al) / "repo"
    repo.mkdir()
    sh("git init -q && git -c user.email=a@b -c user.name=n commit -q --allow-empty -m init && "
       "echo x > untracked.txt", cwd=repo)
    m = mount_factory(name="repo/mnt")
    sh("mkdir -p mnt/p/experiments/e/runs", cwd=repo, timeout=20)
    r = subprocess.run(["mkdir", "mnt/p/experiments/e/runs/1"], cwd=repo, timeout=20)
    assert r.returncode == 0
    git = read_json(m.path / "p/experiments/e/runs/1/run.json")["git"]
    # git itself, told to leave the mount alone, counts the same untracked files
    want = sh("git status --porcelain --untracked-files=all -- . ':!mnt' | grep -c '^??'", cwd=repo).stdout
    assert git["commit"] and git["untracked"] == int(want) and git["dirty"] is False
    # mkdir -p changes into each folder it creates: the shell's folder still names the repository
    sh("mkdir -p mnt/p/experiments/e2/runs/1; true", cwd=repo, timeout=20)   # a shell, as typed
    run2 = read_json(m.path / "p/experiments/e2/runs/1/run.json")
    assert run2["git"] and run2["git"]["commit"] == git["commit"] and run2["cwd"] == str(repo)


def test_metric_bad_line_does_not_poison_later_writes(run):
    fd = os.open(run / "metrics/loss", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"1 0.5\nab")
        with pytest.raises(OSError) as e:
            os.write(fd, b"c\n")
        assert e.value.errno == errno.EINVAL
        os.write(fd, b"2 0.7\n")
    finally:
        os.close(fd)
    assert [(s, v) for s, v, _ in points(run / "metrics/loss")] == [(1, "0.5"), (2, "0.7")]


def test_metric_partial_line_survives_a_forked_close(run):
    """A worker process closing its inherited copy of the fd does not end the writer's line."""
    fd = os.open(run / "metrics/loss", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"0 0.25\n1 0.")
    pid = os.fork()
    if pid == 0:
        os.close(fd)
        os._exit(0)
    os.waitpid(pid, 0)
    os.write(fd, b"75\n")
    os.close(fd)
    assert [(s, v) for s, v, _ in points(run / "metrics/loss")] == [(0, "0.25"), (1, "0.75")]


def test_shell_sees_bad_status_and_fold(run):
    """bash ignores errors of close(): a bad one-line value must fail its write() already."""
    r = sh("echo bogus > status", cwd=run, check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    r = sh("echo 7.5 > fold", cwd=run, check=False)
    assert r.returncode != 0
    assert (run / "status").read_text() == "running\n"


def test_metric_created_again_after_a_failed_first_write(run):
    """A new metric whose first line was refused does not exist; the next append creates it."""
    r = sh("echo 'x y z w' >> metrics/fresh", cwd=run, check=False)
    assert r.returncode != 0
    sh("echo 0.5 >> metrics/fresh", cwd=run)
    assert [(s, v) for s, v, _ in points(run / "metrics/fresh")] == [(0, "0.5")]
