# aletheia integration tests: run.json, runs.csv, run lifecycle and git capture
# (README "run.json", "runs.csv", "Run lifecycle and code capture").
import csv
import errno
import getpass
import io
import os
import socket

import pytest

from alutil import RFC3339, mkrun, read_json, sh, try_write

RUN_KEYS = {"id", "project", "experiment", "status", "created", "started", "ended", "fold", "model",
            "description", "host", "user", "command", "cwd", "exit_code", "git", "params", "metrics",
            "datasets", "artifacts"}
GIT_KEYS = {"commit", "branch", "dirty", "untracked", "remote", "upstream", "ahead", "behind"}


def git_repo(path):
    path.mkdir(parents=True)
    sh("git init -q -b main . && git config user.email t@example.com && git config user.name T && "
       "echo a > tracked.txt && git add tracked.txt && git commit -q -m one", cwd=path)
    return sh("git rev-parse HEAD", cwd=path).stdout.strip()


def test_run_json_keys(run, mount):
    raw = (run / "run.json").read_text()
    j = read_json(run / "run.json")
    assert RUN_KEYS <= set(j), RUN_KEYS - set(j)
    assert j["id"] == "1" and j["project"] == "p" and j["experiment"] == "e"
    assert j["status"] == "running"
    assert RFC3339.match(j["created"]) and RFC3339.match(j["started"]), (j["created"], j["started"])
    assert j["ended"] is None
    assert j["exit_code"] is None
    assert j["host"] == socket.gethostname()
    assert j["user"] == getpass.getuser()
    assert j["cwd"] == os.getcwd()
    assert j["params"] == {} and j["metrics"] == {}
    assert j["datasets"] in ([], {})
    assert j["artifacts"]["count"] == 0 and j["artifacts"]["bytes"] == 0
    assert os.stat(run / "run.json").st_size == len(raw.encode())


def test_run_json_command_and_cwd(mount, tmpdir_al):
    d = tmpdir_al / "work dir"
    d.mkdir()
    base = mount.path / "p/experiments/e/runs"
    os.makedirs(base, exist_ok=True)
    sh(f"mkdir '{base}/5'", cwd=d)
    j = read_json(base / "5/run.json")
    assert j["cwd"] == str(d)
    assert j["command"].startswith("mkdir") and j["command"].endswith(f"{base}/5"), j["command"]


def test_git_state(mount, tmpdir_al):
    repo = tmpdir_al / "repo"
    head = git_repo(repo)
    base = mount.path / "p/experiments/e/runs"
    os.makedirs(base, exist_ok=True)
    sh(f"mkdir '{base}/1'", cwd=repo)
    g = read_json(base / "1/run.json")["git"]
    assert GIT_KEYS <= set(g), GIT_KEYS - set(g)
    assert g["commit"] == head and g["branch"] == "main"
    assert g["dirty"] is False and g["untracked"] == 0
    # tracked change + two untracked files, from a sub-folder of the repository
    sh("echo b >> tracked.txt && echo u > u1 && mkdir sub && echo u > sub/u2", cwd=repo)
    sh(f"mkdir '{base}/2'", cwd=repo / "sub")
    g = read_json(base / "2/run.json")["git"]
    assert g["commit"] == head and g["branch"] == "main"
    assert g["dirty"] is True and g["untracked"] == 2
    # remote, upstream and ahead/behind from local refs
    origin = tmpdir_al / "origin.git"
    sh(f"git init -q --bare '{origin}' && git remote add origin '{origin}' && git push -q -u origin main && "
       "git commit -q -am two", cwd=repo)
    sh(f"mkdir '{base}/3'", cwd=repo)
    g = read_json(base / "3/run.json")["git"]
    assert g["commit"] == sh("git rev-parse HEAD", cwd=repo).stdout.strip()
    assert g["remote"] == str(origin)
    assert g["upstream"] == "origin/main"
    assert g["ahead"] == 1 and g["behind"] == 0
    assert g["dirty"] is False and g["untracked"] == 2


def test_no_git_repo(mount, tmpdir_al):
    base = mount.path / "p/experiments/e/runs"
    os.makedirs(base, exist_ok=True)
    sh(f"mkdir '{base}/1'", cwd=tmpdir_al)
    j = read_json(base / "1/run.json")
    assert j["git"] is None or not j["git"].get("commit"), j["git"]


def test_runs_csv(mount):
    r1, r2 = mkrun(mount, "1"), mkrun(mount, "2")
    sh("echo 0.001 > params/lr && echo 0.5 >> metrics/loss && echo 0.25 >> metrics/loss && "
       "echo 3 > fold && echo resnet > model", cwd=r1)
    sh("echo 0.01 > params/lr && echo 64 > params/bs && echo 0.9 >> metrics/acc && echo 0.7 >> metrics/loss && "
       "echo 'name, with \"quotes\"' > model", cwd=r2)
    sh("echo finished > status", cwd=r1)
    csvp = mount.path / "p/experiments/e/runs.csv"
    raw = csvp.read_bytes()
    assert os.stat(csvp).st_size == len(raw)
    rows = list(csv.DictReader(io.StringIO(raw.decode(), newline="")))
    header = raw.decode().splitlines()[0].split(",")
    assert header[:7] == ["id", "status", "fold", "model", "created", "ended", "git_commit"]
    assert {"param.lr", "param.bs", "metric.loss", "metric.acc"} <= set(header), header
    assert len(rows) == 2
    by = {r["id"]: r for r in rows}
    assert by["1"]["status"] == "finished" and by["2"]["status"] == "running"
    assert by["1"]["fold"] == "3" and by["1"]["model"] == "resnet"
    assert by["2"]["model"] == 'name, with "quotes"'
    assert by["1"]["param.lr"] == "0.001" and by["2"]["param.lr"] == "0.01"
    assert by["1"]["param.bs"] == "" and by["2"]["param.bs"] == "64"
    assert by["1"]["metric.loss"] == "0.25" and by["2"]["metric.loss"] == "0.7"
    assert by["1"]["metric.acc"] == "" and by["2"]["metric.acc"] == "0.9"
    assert RFC3339.match(by["1"]["created"]) and RFC3339.match(by["1"]["ended"])
    assert by["2"]["ended"] == ""


def test_runs_csv_names_differing_in_case(mount):
    """Names are case-sensitive everywhere: metrics Loss and loss are two columns with their own
    last values (runs.csv showed Loss's value under loss too), params LR and lr the same."""
    r = mkrun(mount, "1")
    sh("echo 1 >> metrics/Loss && echo 2 >> metrics/loss && echo 3 > params/LR && echo 4 > params/lr",
       cwd=r)
    rows = list(csv.DictReader(io.StringIO((mount.path / "p/experiments/e/runs.csv").read_text(),
                                           newline="")))
    assert len(rows) == 1
    assert rows[0]["metric.Loss"] == "1" and rows[0]["metric.loss"] == "2", rows[0]
    assert rows[0]["param.LR"] == "3" and rows[0]["param.lr"] == "4", rows[0]


def test_text_files(run):
    sh("echo 4 > fold && echo resnet50 > model && printf 'first try\\nwith notes\\n' > description", cwd=run)
    assert (run / "fold").read_text() == "4\n"
    assert (run / "model").read_text() == "resnet50\n"
    assert (run / "description").read_text() == "first try\nwith notes\n"
    j = read_json(run / "run.json")
    assert j["fold"] == 4 and j["model"] == "resnet50" and j["description"] == "first try\nwith notes"
    assert try_write(run / "fold", b"abc\n") == errno.EINVAL
    assert try_write(run / "fold", b"1.5\n") == errno.EINVAL
    assert read_json(run / "run.json")["fold"] == 4
    for name in ("fold", "model", "description", "status"):
        assert os.stat(run / name).st_size == len((run / name).read_bytes()), name


def test_status_values(mount):
    r = mkrun(mount)
    assert (r / "status").read_text() == "running\n"
    for bad in (b"done\n", b"Finished\n", b"finished x\n", b"\n"):
        assert try_write(r / "status", bad) == errno.EINVAL, bad
    assert (r / "status").read_text() == "running\n"
    sh("echo 'failed 3' > status", cwd=r)
    j = read_json(r / "run.json")
    assert j["status"] == "failed" and j["exit_code"] == 3 and RFC3339.match(j["ended"])
    assert (r / "status").read_text() == "failed\n"
    r2 = mkrun(mount, "2")
    sh("echo 'killed 130' > status", cwd=r2)
    j = read_json(r2 / "run.json")
    assert j["status"] == "killed" and j["exit_code"] == 130


def test_finished_run_is_read_only(run, mount):
    sh("echo 0.1 > params/lr && echo 0.5 >> metrics/loss && echo a > artifacts/a && mkdir artifacts/d", cwd=run)
    sh("echo s > params/.lr.swp && echo t > metrics/.tmpm", cwd=run)    # editors' scratch files
    sh("echo finished > status", cwd=run)
    j = read_json(run / "run.json")
    assert j["status"] == "finished" and RFC3339.match(j["ended"])
    assert (run / "status").read_text() == "finished\n"
    cases = [
        (run / "params/lr", b"0.2\n", os.O_WRONLY | os.O_TRUNC),
        (run / "params/new", b"1\n", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (run / "params.json", b'{"x": 1}', os.O_WRONLY | os.O_TRUNC),
        (run / "metrics/loss", b"0.4\n", os.O_WRONLY | os.O_APPEND),
        (run / "metrics/new", b"0.4\n", os.O_WRONLY | os.O_CREAT | os.O_APPEND),
        (run / "artifacts/a", b"b\n", os.O_WRONLY | os.O_TRUNC),
        (run / "artifacts/b", b"b\n", os.O_WRONLY | os.O_CREAT),
        (run / "fold", b"2\n", os.O_WRONLY | os.O_TRUNC),
        (run / "model", b"m\n", os.O_WRONLY | os.O_TRUNC),
    ]
    for path, data, flags in cases:
        e = try_write(path, data, flags)
        assert e == errno.EROFS, f"{path}: expected EROFS, got {errno.errorcode.get(e, e)}"
    for d in (run / "metrics/sub", run / "artifacts/d/e", run / "params/sub"):
        with pytest.raises(OSError) as ei:
            os.mkdir(d)
        assert ei.value.errno == errno.EROFS, d
    # renames too, of every kind of file in the run (a tester found EPERM for a metric's and a
    # param's, which are never renamed while the run runs either)
    for old in ("metrics/loss", "params/lr", "artifacts/a"):
        with pytest.raises(OSError) as ei:
            os.rename(run / old, run / (old + "2"))
        assert ei.value.errno == errno.EROFS, old
    # ... to any name (a tester found EPERM for these, and scratch renames going through)
    for old, new in [("model", "model2"), ("params.json", "p2.json"), ("heartbeat", "hb"),
                     ("params/lr", "params/lr~"), ("params/lr", "params/.lr.swp"),
                     ("params/.lr.swp", "params/.lr.swx"), ("metrics/.tmpm", "metrics/.tmpn"),
                     ("metrics/.tmpm", "metrics/loss")]:
        with pytest.raises(OSError) as ei:
            os.rename(run / old, run / new)
        assert ei.value.errno == errno.EROFS, (old, new)
    assert sorted(os.listdir(run / "params")) == [".lr.swp", "lr"]
    assert sorted(os.listdir(run / "metrics")) == [".tmpm", "loss"]
    r = sh("echo x > artifacts/a", cwd=run, check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert (run / "params/lr").read_text() == "0.1\n"
    assert len((run / "metrics/loss").read_text().splitlines()) == 1
    assert (run / "artifacts/a").read_text() == "a\n"
    # description and status stay writable
    sh("echo 'final notes' > description", cwd=run)
    assert (run / "description").read_text() == "final notes\n"
    sh("echo 'failed 2' > status", cwd=run)
    j = read_json(run / "run.json")
    assert j["status"] == "failed" and j["exit_code"] == 2 and j["description"] == "final notes"
    assert try_write(run / "status", b"bogus\n") == errno.EINVAL


def test_mkdir_with_cwd_inside_mount(mount):
    """`cd` into the tree and mkdir there: the daemon must not look for a git repository in its own mount
    (a lookup in the directory the kernel holds locked for this mkdir would deadlock)."""
    runs = mount.path / "p/experiments/e/runs"
    os.makedirs(runs, exist_ok=True)
    sh("mkdir 1 && mkdir -p ../../e2/runs/1", cwd=runs, timeout=15)
    assert read_json(runs / "1/run.json")["cwd"] == str(runs)
    assert (mount.path / "p/experiments/e2/runs/1/run.json").exists()
    sh("cd artifacts && mkdir sub && echo x > sub/f", cwd=runs / "1", timeout=15)
