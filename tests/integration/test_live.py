# aletheia integration tests: metrics as live log files — readers see points appended after their
# open (tail -f, polling loops), whole lines and never NUL bytes while writers append, bounded and
# atomic writes, empty metrics, and descriptors that outlive their run.
import errno
import os
import subprocess
import threading
import time

import pytest
from alutil import PY, mkrun, read_json, sh, try_write


def lines_of(path):
    return path.read_text().splitlines()


def test_tail_f_sees_points_appended_after_it_started(run):
    loss = run / "metrics" / "loss"
    sh("echo 0.5 >> metrics/loss", cwd=run)
    for cmd in (["tail", "-f", str(loss)], ["tail", "-F", "-s", "0.2", str(loss)]):
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert p.stdout.readline().split()[1] == "0.5"
            sh("echo 0.25 >> metrics/loss", cwd=run)
            got = []

            def read():
                got.append(p.stdout.readline())
            t = threading.Thread(target=read, daemon=True)
            t.start()
            t.join(15)
            assert got and got[0].split()[1] == "0.25", f"{cmd[:2]} saw no new point: {got}"
        finally:
            p.kill()
            p.wait()
        sh("true", cwd=run)


def test_a_polling_reader_gets_new_points(mount, run):
    loss = run / "metrics" / "loss"
    sh("echo 1 >> metrics/loss", cwd=run)
    with open(loss) as f:
        assert len(f.read().splitlines()) == 1
        assert f.read() == ""
        sh("echo 2 >> metrics/loss && echo 3 >> metrics/loss", cwd=run)
        assert [line.split()[1] for line in f.read().splitlines()] == ["2", "3"]
        f.seek(0)
        assert len(f.read().splitlines()) == 3
        assert os.fstat(f.fileno()).st_size == len(loss.read_bytes())


def test_readers_never_see_nul_bytes_while_writers_append(run):
    loss = run / "metrics" / "loss"
    writer = subprocess.Popen([PY, "-c", f"""
with open({str(loss)!r}, "a", buffering=8192) as f:
    for i in range(400000):
        print(i, i * 0.5, file=f)
"""], start_new_session=True)
    bad = []
    reads = 0
    try:
        while not loss.exists():
            time.sleep(0.01)
        while writer.poll() is None or reads < 20:
            data = loss.read_bytes()
            reads += 1
            if b"\0" in data or (data and not data.endswith(b"\n")):
                bad.append((len(data), data.count(b"\0")))
            for line in data.splitlines()[-3:]:
                if len(line.split()) != 3:
                    bad.append(line)
            if writer.poll() is not None and reads >= 20:
                break
    finally:
        writer.kill()
        writer.wait()
    assert not bad, f"{len(bad)} of {reads} reads were damaged: {bad[:5]}"


def test_a_line_without_newline_is_bounded(run):
    big = b"1" * (70 * 1024)
    assert try_write(run / "metrics" / "x", big, os.O_WRONLY | os.O_CREAT | os.O_APPEND) == errno.EINVAL
    # 400 writes of 1 MiB without a newline are refused at once, not buffered
    fd = os.open(run / "metrics" / "y", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        t0 = time.monotonic()
        for _ in range(400):
            with pytest.raises(OSError) as e:
                os.write(fd, b"7" * (1 << 20))
            assert e.value.errno == errno.EINVAL
        assert time.monotonic() - t0 < 60
    finally:
        os.close(fd)
    assert (run / "metrics" / "y").read_text() == ""


def test_a_large_write_is_appended_whole_or_refused_whole(run):
    m = run / "metrics" / "big"
    good = "".join(f"{i} {i * 0.25}\n" for i in range(40000)).encode()
    assert len(good) < 1044480
    fd = os.open(m, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        assert os.write(fd, good) == len(good)
        body = "".join(f"{i} 1.5\n" for i in range(400000)) + "not a point\n"
        with pytest.raises(OSError) as e:
            os.write(fd, body.encode())          # 4.3 MB: more than one kernel piece
        assert e.value.errno == errno.EINVAL
        body = "".join(f"{i} 1.5\n" for i in range(400000))
        with pytest.raises(OSError) as e:
            os.write(fd, body.encode())          # valid, but not one atomic append
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert len(lines_of(m)) == 40000
    assert read_json(run / "run.json")["metrics"]["big"]["count"] == 40000


def test_an_empty_metric_exists(run):
    sh("touch metrics/empty && mkdir -p metrics/val && touch metrics/val/acc", cwd=run)
    assert (run / "metrics" / "empty").read_bytes() == b""
    assert os.stat(run / "metrics" / "empty").st_size == 0
    assert "empty" in os.listdir(run / "metrics") and "acc" in os.listdir(run / "metrics" / "val")
    sh(f"""{PY} -c "
import numpy as np
np.savetxt('metrics/np', np.array([[0, 0.5], [1, 0.25]]), fmt='%d %.17g')
" """, cwd=run)
    assert [line.split()[:2] for line in lines_of(run / "metrics" / "np")] == [["0", "0.5"], ["1", "0.25"]]
    time.sleep(1.5)   # delivered: the empty metric stays
    assert (run / "metrics" / "empty").exists()


def test_descriptors_opened_before_the_run_ended_record_nothing(mount, run):
    m = os.open(run / "metrics" / "loss", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    a = os.open(run / "artifacts" / "late.txt", os.O_WRONLY | os.O_CREAT)
    try:
        os.write(m, b"0.5\n")
        os.write(a, b"some")
        # not through a subprocess: its fork closes copies of m and a, and any close() records
        (run / "status").write_text("finished\n")
        with pytest.raises(OSError) as e:
            os.write(m, b"0.25\n")
        assert e.value.errno == errno.EROFS
        os.write(a, b" more")
    finally:
        os.close(m)
        with pytest.raises(OSError) as e:
            os.close(a)
        assert e.value.errno == errno.EROFS
    assert len(lines_of(run / "metrics" / "loss")) == 1
    assert not (run / "artifacts" / "late.txt").exists()
    assert read_json(run / "run.json")["artifacts"]["count"] == 0


def test_staged_leftovers_are_removed_on_mount(mount):
    if not str(mount.store_uri()).startswith("local:"):
        pytest.skip("the staging folder of the embedded store")
    run = mkrun(mount)
    staging = mount.store / "staging"
    p = subprocess.Popen(["bash", "-c", f"head -c 200000000 /dev/zero > {run}/artifacts/big"],
                         start_new_session=True)
    deadline = time.monotonic() + 20
    while not (os.listdir(staging) and os.path.getsize(staging / os.listdir(staging)[0]) > 1 << 20):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    mount.kill9()
    p.kill()
    p.wait()
    assert os.listdir(staging)
    mount.start()
    assert os.listdir(staging) == []


def test_mtimes_move_with_content_so_rsync_sees_every_change(mount, run):
    sh("echo 0.5 >> metrics/loss && echo 1 > params/lr", cwd=run)
    backup = mount.root / "backup"
    exp = run.parent.parent
    sh(f"rsync -a {exp}/ {backup}/")
    before = {p: os.stat(run / p).st_mtime_ns for p in ("run.json", "artifacts", "metrics/loss")}
    time.sleep(1.1)
    sh("echo 0.25 >> metrics/loss && echo x > artifacts/a.txt", cwd=run)
    for p in ("run.json", "artifacts", "metrics/loss"):
        assert os.stat(run / p).st_mtime_ns > before[p], p
    assert os.stat(exp / "runs.csv").st_mtime_ns >= os.stat(run / "metrics" / "loss").st_mtime_ns
    sh(f"rsync -a {exp}/ {backup}/")
    for rel in ("runs/1/run.json", "runs/1/metrics/loss", "runs.csv", "runs/1/artifacts/a.txt"):
        assert (backup / rel).read_bytes() == (exp / rel).read_bytes(), rel
    # a folder's mtime is its last change, not the daemon's start
    assert os.stat(run / "artifacts").st_mtime_ns >= os.stat(run / "artifacts" / "a.txt").st_mtime_ns - 10**9


def test_writing_one_value_moves_no_other_value_files_mtime(run):
    # README "Files behave like files": each value file's mtime is its own last write, and a value
    # never written keeps the run's creation time. A tester found writing `description` moving the
    # mtimes of `heartbeat` and `system.json`, which had never been written.
    sh("echo m1 > model && echo 1 > params/lr && echo 0.5 >> metrics/loss", cwd=run)
    names = ("model", "heartbeat", "system.json", "fold", "params/lr", "params.json", "status",
             "metrics/loss", "plots/loss.svg")
    before = {p: os.stat(run / p).st_mtime_ns for p in names}
    time.sleep(1.1)
    sh("echo notes > description", cwd=run)
    after = {p: os.stat(run / p).st_mtime_ns for p in names}
    assert after == before
    assert os.stat(run / "description").st_mtime_ns > max(before.values())
    time.sleep(1.1)
    sh("echo 0.25 >> metrics/loss", cwd=run)    # a plot moves with its metric's points
    assert os.stat(run / "plots/loss.svg").st_mtime_ns > before["plots/loss.svg"]
