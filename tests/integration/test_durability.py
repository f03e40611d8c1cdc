# aletheia integration tests: durability across kill -9 and remounts (INTERFACE.md §4).
import os
import random
import signal
import threading
import time

from alutil import dump_tree, mkrun, points, read_json, sh, sha256


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
    mount.wait_idle()
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
