# aletheia integration tests: metrics/<name> append-only series (README "metrics").
import errno
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from alutil import PY, mkrun, points, read_json, sh, try_write


def test_three_forms_and_commas(run):
    m = run / "metrics/loss"
    t0 = time.time()
    sh("echo 0.5 >> metrics/loss && echo 0.4 >> metrics/loss && echo '10 0.93' >> metrics/loss && "
       "echo 0.8 >> metrics/loss && echo '20 0.7 1700000001.25' >> metrics/loss && "
       "echo '21,0.6,1700000002.5' >> metrics/loss && echo '22,0.55' >> metrics/loss && "
       "printf '30\\t-2.5\\t1700000003\\n' >> metrics/loss", cwd=run)
    t1 = time.time()
    pts = points(m)
    assert [(s, v) for s, v, _ in pts] == [(0, "0.5"), (1, "0.4"), (10, "0.93"), (11, "0.8"),
                                           (20, "0.7"), (21, "0.6"), (22, "0.55"), (30, "-2.5")]
    assert pts[4][2] == "1700000001.250"
    assert pts[5][2] == "1700000002.500"
    assert pts[7][2] == "1700000003.000"
    for i in (0, 1, 2, 3, 6):
        assert t0 - 1 <= float(pts[i][2]) <= t1 + 1, pts[i]


def test_special_values_and_shortest(run):
    vals = ["0.93", "nan", "inf", "-inf", "0.1", "1e-07", "123456.789", "0.30000000000000004", "-0", "5"]
    with open(run / "metrics/acc", "w") as f:
        for v in vals:
            f.write(v + "\n")
    pts = points(run / "metrics/acc")
    got = [v for _, v, _ in pts]
    assert got[:5] == ["0.93", "nan", "inf", "-inf", "0.1"]
    for want, g in zip(vals[5:], got[5:]):
        assert float(g) == float(want) and len(g) <= len(repr(float(want))), (want, g)
    assert [s for s, _, _ in pts] == list(range(len(vals)))


def test_truncating_redirect_appends(run):
    sh("echo 1 > metrics/m && echo 2 > metrics/m && echo 3 >> metrics/m", cwd=run)
    assert [(s, v) for s, v, _ in points(run / "metrics/m")] == [(0, "1"), (1, "2"), (2, "3")]
    with open(run / "metrics/m", "w") as f:
        f.write("4\n")
    assert len(points(run / "metrics/m")) == 4


def test_bad_line_einval(run):
    m = run / "metrics/loss"
    sh("echo 0.5 >> metrics/loss && echo 0.4 >> metrics/loss", cwd=run)
    before = m.read_bytes()
    for bad in (b"0.3\n0.2\nabc\n", b"1 2 3 4\n", b"x 0.1\n", b"0.1 0.2 zz\n",
                b"99999999999999999999999 0.1\n"):
        e = try_write(m, bad, os.O_WRONLY | os.O_APPEND)
        assert e == errno.EINVAL, f"{bad!r}: expected EINVAL, got {errno.errorcode.get(e, e)}"
        assert m.read_bytes() == before, f"{bad!r}: series changed"
    r = sh("/usr/bin/printf '0.1\\nnot-a-number\\n' >> metrics/loss", cwd=run, check=False)  # one write()
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert m.read_bytes() == before
    sh("echo 0.3 >> metrics/loss", cwd=run)
    assert [(s, v) for s, v, _ in points(m)] == [(0, "0.5"), (1, "0.4"), (2, "0.3")]


def test_partial_line_waits(run):
    m = run / "metrics/loss"
    fd = os.open(m, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"0.5")
        assert points(m) == []
        os.write(fd, b"5\n0.6")
        assert [v for _, v, _ in points(m)] == ["0.55"]
        os.write(fd, b"6\n0.7")
        assert [v for _, v, _ in points(m)] == ["0.55", "0.66"]
    finally:
        os.close(fd)
    assert [v for _, v, _ in points(m)] == ["0.55", "0.66", "0.7"]
    sh("printf 0.8 >> metrics/loss", cwd=run)
    assert [v for _, v, _ in points(m)][-1] == "0.8"


def test_copy_series_exactly(mount):
    r1 = mount.path / "p/experiments/e/runs/1"
    r2 = mount.path / "p/experiments/e/runs/2"
    os.makedirs(r1)
    os.makedirs(r2)
    sh("for v in 0.9 0.5 0.333 nan 1e300; do echo $v >> metrics/loss; done; echo '100 0.25 1700000000.125' >> "
       "metrics/loss", cwd=r1)
    sh(f"cat {r1}/metrics/loss > {r2}/metrics/loss")
    assert (r2 / "metrics/loss").read_bytes() == (r1 / "metrics/loss").read_bytes()
    assert len(points(r2 / "metrics/loss")) == 6
    # copying the file with cp also appends the same points
    sh(f"cp {r1}/metrics/loss {r2}/metrics/copy")
    assert (r2 / "metrics/copy").read_bytes() == (r1 / "metrics/loss").read_bytes()


def _series(run, name="loss", n=6):
    sh(f"for i in $(seq 1 {n}); do echo \"$i 0.$i\" >> metrics/{name}; done", cwd=run)
    return (run / f"metrics/{name}").read_bytes()


VIM = shutil.which("vim.basic") or shutil.which("vim")


@pytest.mark.parametrize("how", ["cp", "rsync --inplace", "rsync", "python", "vim", "vim backupcopy=yes"])
def test_a_rewrite_of_a_metric_adds_only_its_new_lines(run, tmp_path, how):
    """README "metrics": a writer that starts at the beginning of the file skips the lines that are
    the points already there, byte for byte and in order, so saving a metric in an editor or copying
    a longer copy of it over it adds only what is new. Before, each of these appended all 6 points
    again (12, then 14): vim's :wq of an unchanged metric doubled it."""
    old = _series(run)
    m = run / "metrics/loss"
    if how.startswith("vim"):
        if not VIM:
            pytest.skip("vim is not installed")
        opts = ["-c", "set " + how.split()[1]] if " " in how else []
        for cmds in ([], ["$put ='7 0.7 1700000000.500'", "$put ='8 0.8 1700000001.000'"]):
            r = subprocess.run([VIM, "-N", "-i", "NONE", "-E", "-s", *opts]
                               + [a for c in cmds for a in ("-c", c)] + ["-c", "wq", "loss"],
                               cwd=run / "metrics", stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
            assert r.returncode == 0, r.stderr
            if not cmds:
                assert m.read_bytes() == old    # an unchanged save changes nothing
    else:
        src = tmp_path / "loss"
        src.write_bytes(old)
        if how == "python":
            with open(m, "w") as f:
                f.write(old.decode())           # as read, unchanged: nothing is added
            assert m.read_bytes() == old
        else:
            sh(f"{how} '{src}' '{m}'")
            assert m.read_bytes() == old
        src.write_bytes(old + b"7 0.7 1700000000.500\n8 0.8 1700000001.000\n")
        if how == "python":
            with open(m, "w") as f:
                f.write(src.read_text())
        else:
            os.utime(src, (1, 1))               # rsync would skip a file of the same size and time
            sh(f"{how} '{src}' '{m}'")
    got = m.read_bytes()
    assert got == old + b"7 0.7 1700000000.500\n8 0.8 1700000001.000\n", got
    assert len(points(m)) == 8


def test_a_rewrite_appends_from_its_first_changed_line(run):
    """The matching ends at the first line that is not the next point: that line and all after it
    are appended (README "Known limitations"), and a writer that starts anywhere but at the
    beginning, or with O_APPEND, appends every line as before."""
    old = _series(run, n=3)
    lines = old.splitlines(keepends=True)
    m = run / "metrics/loss"
    with open(m, "wb") as f:
        f.write(lines[0] + b"2 0.25 1700000000.000\n" + lines[2])
    assert m.read_bytes() == old + b"2 0.25 1700000000.000\n" + lines[2]
    with open(m, "ab") as f:
        f.write(lines[0])
    assert m.read_bytes().endswith(lines[2] + lines[0])
    assert len(points(m)) == 6


def test_a_file_renamed_over_a_metric_appends_its_new_lines_or_nothing(run):
    """README "metrics": a scratch file renamed over a metric (rsync's temporary, a program's
    tempfile + os.replace) is written over it from its start; all of its lines are checked first,
    so one bad line fails the rename with EINVAL and appends nothing."""
    old = _series(run, n=2)
    t = run / "metrics/.loss.new"
    t.write_bytes(old + b"9 0.9 1700000000.000\n")
    os.replace(t, run / "metrics/loss")
    assert (run / "metrics/loss").read_bytes() == old + b"9 0.9 1700000000.000\n"
    assert not t.exists()
    t.write_bytes(b"10 0.1\nnot a point\n")
    with pytest.raises(OSError) as e:
        os.replace(t, run / "metrics/loss")
    assert e.value.errno == errno.EINVAL
    assert len(points(run / "metrics/loss")) == 3 and t.exists()
    os.replace(t, run / "metrics/.other")        # still a scratch file, renamed as one
    os.unlink(run / "metrics/.other")


def test_a_rename_over_a_metric_is_checked_whole(run):
    """README "metrics": a file renamed over a metric is checked whole first; one bad line fails the
    rename() with EINVAL and changes nothing. A tester's 1 MiB file whose last line was too long, and
    one whose steps ran past int64 from the metric's last step, failed after a first piece of their
    points was appended."""
    old = _series(run, n=10)
    m = run / "metrics/loss"
    t = run / "metrics/.loss.x"
    new = b"".join(b"%d 2.5 %d.000\n" % (i, 1700000000 + i) for i in range(10, 40010))
    t.write_bytes(old + new + b"40010" + b" " * 70000 + b"1.5")
    with pytest.raises(OSError) as e:
        os.rename(t, m)
    assert e.value.errno == errno.EINVAL and m.read_bytes() == old
    os.unlink(t)
    big = 9223372036854775807 - 280000
    (run / "metrics/steps").write_text(f"{big} 1\n")
    t.write_bytes(b"1.5\n" * 300000)
    with pytest.raises(OSError) as e:
        os.rename(t, run / "metrics/steps")
    assert e.value.errno == errno.EINVAL and len(points(run / "metrics/steps")) == 1


def test_a_rewrite_whose_last_line_has_no_newline_adds_nothing_twice(run):
    """A rewrite's last line without a newline is compared like the others: `printf '%s' "$(cat m)" > m`
    (what Python's '\\n'.join writes, or vim with noeol) added the last point again."""
    old = _series(run, n=10)
    sh("printf '%s' \"$(cat metrics/loss)\" > metrics/loss", cwd=run)
    assert (run / "metrics/loss").read_bytes() == old
    (run / "metrics/.copy").write_bytes(old[:-1])
    os.replace(run / "metrics/.copy", run / "metrics/loss")
    assert (run / "metrics/loss").read_bytes() == old


def test_a_scratch_file_renamed_over_a_metric_writes_on_into_it(run):
    """README "Editing values in place": a descriptor still open on a scratch file renamed over a
    value writes on into that value; over a metric its later lines are the metric's new points. A
    tester's point written after os.replace was accepted and dropped."""
    old = _series(run, n=3)
    with open(run / "metrics/.loss.tmp", "wb") as f:
        f.write(old + b"3 0.7 1700000003.000\n")
        f.flush()
        os.replace(run / "metrics/.loss.tmp", run / "metrics/loss")
        f.write(b"4 0.8 1700000004.000\n")
        f.flush()
        # a point at each write, as a metric writer's: seen before the close
        assert (run / "metrics/loss").read_bytes().endswith(b"4 0.8 1700000004.000\n")
        os.fsync(f.fileno())
    assert (run / "metrics/loss").read_bytes() == old + b"3 0.7 1700000003.000\n4 0.8 1700000004.000\n"
    # lines as a program writes them (tempfile + os.replace into a new metric, then on): each once;
    # a tester got 0.5 0.4 0.5 0.4 0.3, the whole file sent again at the fsync
    fd, tmp = tempfile.mkstemp(dir=run / "metrics")
    try:
        os.write(fd, b"0.5\n0.4\n")
        os.replace(tmp, run / "metrics/new")
        os.write(fd, b"0.3\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    assert [v for _, v, _ in points(run / "metrics/new")] == ["0.5", "0.4", "0.3"]
    # once the run ended, such a write fails itself with EROFS, as a metric writer's does
    fd, tmp = tempfile.mkstemp(dir=run / "metrics")
    try:
        os.write(fd, b"1\n")
        os.replace(tmp, run / "metrics/late")
        (run / "status").write_text("finished\n")
        with pytest.raises(OSError) as e:
            os.write(fd, b"2\n")
        assert e.value.errno == errno.EROFS
    finally:
        os.close(fd)
    assert [v for _, v, _ in points(run / "metrics/late")] == ["1"]


def test_a_scratch_descriptor_renamed_over_a_metric_writes_as_a_metric_writer(run):
    """After the rename, what the descriptor writes is appended as a metric writer's writes are: a
    refused line fails its write() and the next line is recorded (a tester's next line vanished
    with success), writes at any offset and after ftruncate append (they were dropped), a line cut
    across two closes of shared descriptors is one point (it was cut at the first close), and a
    partial line after the run ended fails its write() with EROFS (it succeeded and was lost)."""
    m = run / "metrics"

    def renamed(name):
        fd, tmp = tempfile.mkstemp(dir=m)
        os.write(fd, b"0 1\n")
        os.rename(tmp, m / name)
        return fd

    def got(name):
        return [(s, v) for s, v, _ in points(m / name)]

    fd = renamed("x")
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"bad\n")
        assert e.value.errno == errno.EINVAL
        assert os.write(fd, b"1 5\n") == 4
        os.pwrite(fd, b"2 9\n", 0)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"3 7\n")
        fd2 = os.dup(fd)
        os.write(fd, b"4 4")
        os.close(fd)
        fd = None
        os.write(fd2, b"0\n")
        os.close(fd2)
    finally:
        if fd is not None:
            os.close(fd)
    assert got("x") == [(0, "1"), (1, "5"), (2, "9"), (3, "7"), (4, "40")]
    fd = renamed("y")
    try:
        (run / "status").write_text("finished\n")
        with pytest.raises(OSError) as e:
            os.write(fd, b"x")
        assert e.value.errno == errno.EROFS
    finally:
        os.close(fd)
    assert got("y") == [(0, "1")]


@pytest.mark.parametrize("how", ["sed -i~ s/x/y/ loss", "perl -pi~ -e s/x/y/ loss", "mv loss loss~"])
def test_a_metric_renamed_to_a_backup_name_is_copied(run, how):
    """README "Editing values in place": renaming a value's file to a scratch name copies it; a metric
    too (`sed -i~`, `perl -pi~`, `mv loss loss~` failed with EPERM). The metric stays, its backup is a
    scratch file with its text, and the tool's rename over it adds nothing that is there already."""
    old = _series(run, n=4)
    sh(how, cwd=run / "metrics")
    assert (run / "metrics/loss").read_bytes() == old
    assert (run / "metrics/loss~").read_bytes() == old
    assert sorted(os.listdir(run / "metrics")) == ["loss", "loss~"]
    assert "loss~" not in read_json(run / "run.json")["metrics"]
    os.unlink(run / "metrics/loss~")


def test_tail(run):
    sh("for i in $(seq 1 20); do echo \"$i 0.$i\" >> metrics/loss; done", cwd=run)
    lines = (run / "metrics/loss").read_text().splitlines()
    assert len(lines) == 20
    assert sh("tail -n 2 metrics/loss", cwd=run).stdout.splitlines() == lines[-2:]
    assert sh("head -n 1 metrics/loss", cwd=run).stdout.split()[:2] == ["1", "0.1"]


def test_python_loop_1000(run):
    code = ("import os\n"
            "with open(os.path.join('metrics', 'loss'), 'a') as f:\n"
            "    for i in range(1000):\n"
            "        f.write(f'{1.0 / (i + 1)}\\n')\n"
            "        if i % 100 == 0: f.flush()\n")
    subprocess.run([PY, "-c", code], cwd=run, check=True, timeout=120)
    pts = points(run / "metrics/loss")
    assert [s for s, _, _ in pts] == list(range(1000))
    assert [float(v) for _, v, _ in pts] == [1.0 / (i + 1) for i in range(1000)]
    data = (run / "metrics/loss").read_bytes()
    assert os.stat(run / "metrics/loss").st_size == len(data)
    j = read_json(run / "run.json")["metrics"]["loss"]
    assert j["count"] == 1000 and j["step"] == 999
    assert j["last"] == 0.001 and j["min"] == 0.001 and j["max"] == 1.0


def test_subfolder_metric(run):
    sh("mkdir -p metrics/val && echo 0.3 >> metrics/val/loss && echo 0.2 >> metrics/val/loss && "
       "echo 1 >> metrics/train", cwd=run)
    assert sorted(os.listdir(run / "metrics")) == ["train", "val"]
    assert os.listdir(run / "metrics/val") == ["loss"]
    assert [v for _, v, _ in points(run / "metrics/val/loss")] == ["0.3", "0.2"]
    ms = read_json(run / "run.json")["metrics"]
    assert ms["val/loss"]["last"] == 0.2 and ms["val/loss"]["count"] == 2
    assert ms["val/loss"]["min"] == 0.2 and ms["val/loss"]["max"] == 0.3


WRITER = r"""
import os, random, sys
k = int(sys.argv[1]); path = sys.argv[2]
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
rnd = random.Random(k)
i = 0
while i < 500:
    n = min(rnd.randint(1, 7), 500 - i)
    os.write(fd, "".join(f"{k * 100000 + i + j}\n" for j in range(n)).encode())
    i += n
os.close(fd)
"""


def test_concurrent_appenders(run):
    m = run / "metrics/shared"
    procs = [subprocess.Popen([PY, "-c", WRITER, str(k), str(m)]) for k in range(8)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    pts = points(m)
    vals = [int(float(v)) for _, v, _ in pts]
    assert len(vals) == 4000
    assert sorted(vals) == sorted(k * 100000 + i for k in range(8) for i in range(500))
    # each writer's own lines stay in its order
    for k in range(8):
        mine = [v for v in vals if v // 100000 == k]
        assert mine == sorted(mine)
    steps = [s for s, _, _ in pts]
    assert len(set(steps)) == 4000
    assert os.stat(m).st_size == len(m.read_bytes())


@pytest.mark.parametrize("value", ["0.1", "-3.5e-05", "12345678901234567"])
def test_size_equals_bytes(run, value):
    sh(f"for i in 1 2 3; do echo {value} >> metrics/x; done", cwd=run)
    data = (run / "metrics/x").read_bytes()
    assert int(sh("stat -c %s metrics/x", cwd=run).stdout) == len(data)
    assert int(sh("ls -l metrics/x", cwd=run).stdout.split()[4]) == len(data)


def test_rsync_a_of_metrics_into_a_new_run(mount):
    # rsync writes each file to a dot-temporary and renames it: in metrics/ such names are scratch
    # files (README "Editing values in place"), never recorded, and the rename over a metric appends
    # its points. A tester found the temporary recorded
    # as a metric ".loss.XdeJIb" that could not be deleted, and rsync exiting 23.
    a, b = mkrun(mount, "a"), mkrun(mount, "b")
    sh("for i in 1 2 3; do echo 0.$i >> metrics/loss; done && mkdir -p metrics/val && "
       "echo '5 0.5 1700000000.5' >> metrics/val/acc", cwd=a)
    time.sleep(1.1)    # the copies' append times a second later than the sources'
    r = sh(f"rsync -a {a}/metrics/ {b}/metrics/", check=False)
    assert r.returncode == 0, r.stderr
    for m in ("loss", "val/acc"):
        assert (b / "metrics" / m).read_bytes() == (a / "metrics" / m).read_bytes(), m
    assert sorted(os.listdir(b / "metrics")) == ["loss", "val"]
    assert sorted(os.listdir(b / "metrics/val")) == ["acc"]
    head = (a.parent.parent / "runs.csv").read_text().splitlines()[0]
    assert "metric..loss" not in head and "metric.loss" in head and "metric.val/acc" in head
    # Again: a metric whose append time differs from its source's in the second is sent again
    # (its mtime cannot be set), and its temporary renamed over it appends only lines that are not
    # its points already: none. Before, rsync's delete to replace it was refused (exit 23).
    r = sh(f"rsync -a {a}/metrics/ {b}/metrics/", check=False)
    assert r.returncode == 0, r.stderr
    for m in ("loss", "val/acc"):
        assert (b / "metrics" / m).read_bytes() == (a / "metrics" / m).read_bytes(), m
    assert sorted(os.listdir(b / "metrics")) == ["loss", "val"]
    # a scratch name in metrics/ is never a metric
    sh("echo 1 > metrics/.scratch && rm metrics/.scratch", cwd=b)
    assert ".scratch" not in (a.parent.parent / "runs.csv").read_text()


def test_rsync_delay_updates_into_metrics_and_params(mount):
    # rsync --delay-updates gathers each file in a folder .~tmp~ beside it, renames them all out of
    # it at the end and removes it: a folder of a scratch name holds scratch files (README "Editing
    # values in place"). Before, rsync exited 23 (its renames refused), a param ".~tmp~/lr" was
    # recorded, metrics ".~tmp~/loss" and ".~tmp~/val/acc" too, and ".~tmp~" stayed in the listings.
    a, b = mkrun(mount, "a"), mkrun(mount, "b")
    sh("for i in 1 2 3; do echo 0.$i >> metrics/loss; done && mkdir -p metrics/val && "
       "echo '5 0.5 1700000000.5' >> metrics/val/acc && echo 0.01 > params/lr && "
       "mkdir -p params/opt && echo adam > params/opt/name", cwd=a)
    for _ in range(2):    # the second: the same points again, none added
        for folder in ("metrics", "params"):
            r = sh(f"rsync -r --delay-updates {a}/{folder}/ {b}/{folder}/", check=False)
            assert r.returncode == 0, r.stderr
        for m in ("loss", "val/acc"):
            assert (b / "metrics" / m).read_bytes() == (a / "metrics" / m).read_bytes(), m
        assert sorted(os.listdir(b / "metrics")) == ["loss", "val"]
        assert sorted(os.listdir(b / "metrics/val")) == ["acc"]
        assert sorted(os.listdir(b / "params")) == ["lr", "opt"]
        assert json.loads((b / "params.json").read_text()) == {"lr": 0.01, "opt/name": "adam"}
    head = (a.parent.parent / "runs.csv").read_text().splitlines()[0]
    assert "~tmp~" not in head
    # a scratch folder that still holds a file is not removed; empty, it goes without
    # --allow-delete, and its files are never recorded
    sh("mkdir metrics/.~tmp~ && echo 0.5 > metrics/.~tmp~/loss", cwd=b)
    r = sh("rmdir metrics/.~tmp~", cwd=b, check=False)
    assert r.returncode != 0 and "not empty" in r.stderr
    sh("rm metrics/.~tmp~/loss && rmdir metrics/.~tmp~", cwd=b)
    assert sorted(os.listdir(b / "metrics")) == ["loss", "val"]
    assert (b / "metrics/loss").read_bytes() == (a / "metrics/loss").read_bytes()


@pytest.mark.parametrize("folder,entry", [("metrics/val", "loss"), ("params/opt", "b1"), ("metrics/a/b", "c")])
def test_a_sub_folder_stays_when_its_last_entry_is_deleted(mount_factory, folder, entry):
    # As on ext4 (and as a folder made by mkdir does): after a remount a sub-folder of metrics/ or
    # params/ exists only through its entries; deleting the last one keeps it, empty, for a shell in it
    # and in its parent's listing. A tester found `ls` there failing with ENOENT while `touch` worked.
    m = mount_factory(extra=("--allow-delete",))
    run = mkrun(m)
    (run / folder).mkdir(parents=True, exist_ok=True)
    (run / folder / entry).write_text("1\n")
    m.wait_settled()
    m.remount()
    top = folder.split("/")[1]
    p = subprocess.run(["sh", "-c", f'rm {entry} && ls && echo "ls=$?" && stat -c %F . && ls ..'],
                       cwd=run / folder, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    out = p.stdout.split()
    assert out[:2] == ["ls=0", "directory"] and folder.split("/")[-1] in out[2:], p.stdout
    assert top in os.listdir(run / folder.split("/")[0])
    # rmdir of a folder that holds values fails, as on a local disk (it said success, and the
    # folder stayed)
    (run / folder / entry).write_text("1\n")
    r = subprocess.run(["rmdir", str(run / folder.split("/")[0] / top)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "not empty" in r.stderr, r.stderr
    subprocess.run(["rm", "-r", str(run / folder.split("/")[0] / top)], check=True, timeout=30)
    assert top not in os.listdir(run / folder.split("/")[0])
