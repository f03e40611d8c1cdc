# aletheia integration tests: durability across kill -9 and remounts (README "Durability").
import os
import random
import signal
import sqlite3
import struct
import subprocess
import threading
import time

from alutil import FIRESTORE, PY, dump_tree, mkrun, points, read_json, sh, sha256


def test_kill9_keeps_acknowledged_points(mount):
    run = mkrun(mount)
    sh("echo 0.001 > params/lr && echo keep > artifacts/before.txt", cwd=run)
    metric = run / "metrics/loss"
    target = 2000 + random.randint(0, 1500)
    acked = 0
    killed = threading.Event()

    def killer():
        deadline = time.monotonic() + 90
        while acked < target and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(mount.proc.pid, signal.SIGKILL)
        killed.set()

    fd = os.open(metric, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    t = threading.Thread(target=killer)
    t.start()
    error = None
    try:
        i = 0
        while i < 1_000_000:
            os.write(fd, f"{i}\n".encode())
            i += 1
            acked = i
    except OSError as e:
        error = e
    finally:
        t.join()
        try:
            os.close(fd)
        except OSError:
            pass
    assert killed.is_set()
    assert error is not None, "writes kept succeeding after kill -9"
    assert acked >= 2000
    mount.proc.wait(timeout=10)
    mount.allow_log_errors = True   # a killed daemon may leave a torn log line
    mount.kill9()                   # fusermount3 -u -z of the dead mount
    mount.start()
    pts = points(metric)
    vals = [int(float(v)) for _, v, _ in pts]
    assert len(vals) >= acked, f"{acked} writes acknowledged, {len(vals)} points after remount"
    assert vals == list(range(len(vals))), "points missing, duplicated or out of order"
    assert [s for s, _, _ in pts] == list(range(len(vals)))
    assert len(vals) <= acked + 1
    assert (run / "params/lr").read_text() == "0.001\n"
    assert (run / "artifacts/before.txt").read_text() == "keep\n"
    # the series goes on where it stopped
    sh("echo -1 >> metrics/loss", cwd=run)
    last = points(metric)[-1]
    assert last[0] == len(vals) and last[1] == "-1"


def test_remount_shows_everything(mount):
    run = mkrun(mount)
    r2 = mkrun(mount, "2")
    sh("echo 0.001 > params/lr && echo '{\"a\": [1, 2]}' > params/arch && mkdir -p params/o && "
       "echo 1 > params/o/x && for i in 1 2 3; do echo 0.$i >> metrics/loss; done && mkdir -p metrics/val && "
       "echo '5 0.5 1700000000.5' >> metrics/val/acc && echo 2 > fold && echo cnn > model && "
       "echo notes > description", cwd=run)
    big = mount.root / "big.bin"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    sh(f"mkdir -p {run}/artifacts/d/e && cp {big} {run}/artifacts/d/e/ && echo hi > {run}/artifacts/hi.txt")
    ds = mount.path / "p/datasets/ds"
    ds.mkdir()
    sh(f"cp {big} {ds}/data.bin && echo x > {ds}/x.txt")
    os.symlink("../../../../../datasets/ds", run / "datasets/ds")
    sh(f"echo '{{\"owner\": \"me\"}}' > {mount.path}/p/metadata/info")
    sh("echo 'exp notes' > description && echo report > artifacts/r.txt", cwd=run.parent.parent)
    sh("echo 'finished 0' > status", cwd=run)
    sh("echo 0.9 >> metrics/acc", cwd=r2)
    mount.wait_settled()    # pages show the times Firestore gave the writes, as a remount does
    before = dump_tree(mount.path)
    mount.umount()
    assert not os.path.ismount(mount.path)
    mount.start()
    after = dump_tree(mount.path)
    assert sorted(before) == sorted(after)
    for k in before:
        assert before[k] == after[k], f"{k} differs after remount"
    assert sha256(run / "artifacts/d/e/big.bin") == sha256(big)
    assert sha256(run / "datasets/ds/data.bin") == sha256(big)
    j = read_json(run / "run.json")
    assert j["status"] == "finished" and j["params"]["lr"] == 0.001 and j["metrics"]["loss"]["count"] == 3
    # a second remount of the same store, and the run is still read-only
    mount.remount()
    assert dump_tree(mount.path) == before
    r = sh("echo 1 > params/lr", cwd=run, check=False)
    assert r.returncode != 0


WRITER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
i = int(sys.argv[2])
try:
    while True:
        os.write(fd, f"{i} {1000 + i}\n".encode())
        i += 1
except OSError:
    pass
print(i, flush=True)   # writes below i were acknowledged
"""


def journal_frames(data):
    """The frames of a journal generation: (offset, payload offset, payload length). Format 2
    starts with a magic and has 12-byte frame headers; format 1 (older) 8-byte ones."""
    v2 = data[:8] == b"aljrnl2\n"
    off, h, out = (8, 12, []) if v2 else (0, 8, [])
    while off + h <= len(data):
        n = struct.unpack_from("<I", data, off)[0]
        if off + h + n > len(data):
            break
        out.append((off, off + h, n))
        off += h + n
    return out


def metric_record(data, at, n):
    """(metric id, steps) of a series journal record (kind 2: doc, first ordinal, points)."""
    assert data[at] == 2
    pl = struct.unpack_from("<H", data, at + 1)[0]
    doc = data[at + 3:at + 3 + pl].decode()
    cnt = struct.unpack_from("<I", data, at + 3 + pl + 8)[0]
    p = at + 3 + pl + 12
    steps = [struct.unpack_from("<q", data, p + 24 * k)[0] for k in range(cnt)]
    return doc.rsplit("/", 1)[-1], steps


def test_kill9_damaged_journal_record_costs_only_itself(mount):
    """4 writers append, kill -9, one byte flips in the middle of an older journal generation:
    after the remount every acknowledged point but those of that record is there, once; the
    damaged file is kept aside and the log names it."""
    run = mkrun(mount)
    names = [f"w{k}" for k in range(4)]
    for name in names:
        sh(f"echo '0 1000' >> metrics/{name}", cwd=run)
    mount.wait_idle()
    jdir = (mount.cache / "state" / "journal") if FIRESTORE else (mount.store / "journal")
    lock = None
    if not FIRESTORE:
        # Hold the SQLite write lock: deliveries wait and fail, so no generation is dropped and
        # the flusher's rotation leaves an older generation behind.
        lock = sqlite3.connect(str(mount.store / "meta.db"), timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
    writers = [subprocess.Popen([PY, "-c", WRITER, str(run / "metrics" / name), "1"],
                                stdout=subprocess.PIPE, text=True) for name in names]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.2)
            gens = sorted(p for p in jdir.iterdir() if p.name.startswith("journal."))
            if time.monotonic() > deadline - 28 and (FIRESTORE or len(gens) >= 2):
                break
        time.sleep(0.5)
        os.kill(mount.proc.pid, signal.SIGKILL)
        acked = {name: int(w.communicate(timeout=30)[0]) for name, w in zip(names, writers)}
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
        if lock is not None:
            lock.execute("ROLLBACK")
            lock.close()
    mount.proc.wait(timeout=10)
    mount.allow_log_errors = True   # a killed daemon may leave a torn log line
    mount.kill9()
    assert all(n > 100 for n in acked.values()), acked

    gens = sorted(p for p in jdir.iterdir() if p.name.startswith("journal."))
    if not FIRESTORE:
        assert len(gens) >= 2, [g.name for g in gens]
    # The older generation (or the only one); its record in the middle, which must have been
    # acknowledged: its writer appended again after it.
    target = gens[0]
    data = bytearray(target.read_bytes())
    frames = journal_frames(data)
    later = {}
    for g in gens:
        d = g.read_bytes()
        for _, at, n in journal_frames(d):
            name, steps = metric_record(d, at, n)
            later[name] = max(later.get(name, -1), max(steps))
    mid = [f for f in frames if f[0] <= len(data) // 2][-1]
    name, steps = metric_record(data, mid[1], mid[2])
    assert later[name] > max(steps)
    assert len(frames) > frames.index(mid) + 10   # intact records follow the damage
    flip = mid[1] + mid[2] - 9   # inside the last point's value
    data[flip] ^= 0x10
    target.write_bytes(bytes(data))

    mount.start()
    total = 0
    for w in names:
        pts = points(run / "metrics" / w)
        got = [s for s, _, _ in pts]
        assert len(got) == len(set(got)), f"{w}: duplicated points"
        assert got == sorted(got), f"{w}: out of order"
        lost = set(steps) if w == name else set()   # the damaged record's points
        have = set(got)
        missing = [s for s in range(acked[w]) if s not in have and s not in lost]
        assert not missing, f"{w}: {len(missing)} acknowledged points lost, first {missing[:5]}"
        assert len(got) <= acked[w] + 1
        if w == name and not FIRESTORE:
            # (over Firestore they may have been delivered before the kill)
            assert not have & lost, "points of the damaged record came back"
        for s, v, _ in pts:
            assert float(v) == 1000 + s
        total += len(got)
    assert total >= sum(acked.values()) - len(steps)
    kept = list((jdir / "damaged").glob(target.name + ".*"))
    assert len(kept) == 1 and kept[0].read_bytes() == bytes(data), "the damaged file was not kept as it was"
    log = mount.log_text()
    assert f"{target.name}: damaged record(s) at offset {mid[0]}" in log, log[-2000:]
    # the journal left behind is consistent: another remount changes nothing
    before = {w: points(run / "metrics" / w) for w in names}
    mount.remount()
    assert {w: points(run / "metrics" / w) for w in names} == before


def test_kill9_during_a_copy_leaves_no_stale_dataset_version(mount):
    """A dataset's version, files and bytes describe exactly the files it lists after kill -9
    mid-copy and a remount, and a run linking it records that version."""
    run = mkrun(mount)
    src = mount.root / "src"
    src.mkdir()
    for i in range(2000):
        (src / f"f{i:04d}.txt").write_text(f"file {i}\n" * (i % 7 + 1))
    ds = mount.path / "p" / "datasets" / "d"
    ds.mkdir()
    cp = subprocess.Popen(["cp", "-r", f"{src}/.", str(ds)], start_new_session=True,
                          stderr=subprocess.DEVNULL)
    # Generous, and polled gently: on a loaded machine with the Firestore emulator 800 files take
    # over a minute, and each listing of the growing folder takes the daemon's time from cp.
    deadline = time.monotonic() + 300
    while len(os.listdir(ds)) < 800:
        assert time.monotonic() < deadline and cp.poll() is None, "the copy did not get going"
        time.sleep(0.25)
    mount.kill9()
    cp.kill()
    cp.wait()
    mount.start()
    listed = sorted(n for n in os.listdir(ds) if n not in (".dataset.json", ".description"))
    j = read_json(ds / ".dataset.json")
    assert j["files"] == len(listed), (j["files"], len(listed))
    assert j["bytes"] == sum(os.stat(ds / n).st_size for n in listed)
    # the same files copied afresh into another dataset give the same version
    twin = mount.path / "p" / "datasets" / "twin"
    twin.mkdir()
    sh(f"cp {' '.join(str(ds / n) for n in listed[:1])} {twin}/")
    sh(f"cd {ds} && cp {' '.join(listed[1:])} {twin}/")
    assert read_json(twin / ".dataset.json")["version"] == j["version"]
    os.symlink(str(ds), run / "datasets" / "d")
    linked = read_json(run / "run.json")["datasets"]
    assert linked[0]["version"] == j["version"]
