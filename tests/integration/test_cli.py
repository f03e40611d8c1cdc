# aletheia integration tests: the command line (INTERFACE.md §5; decisions.md on new-run, run, umount, status).
import concurrent.futures
import os
import signal
import subprocess
import time

import pytest

import alutil
from alutil import BIN, PY, cli, env_for, fusermount, read_json, sh



def process_gone(pid):
    """True once pid has exited: no such process, or a zombie waiting for its reaper (the
    daemon's parent is init, which may reap late)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True

def one_error_line(stderr):
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    assert lines[0].startswith("aletheia: "), lines[0]
    return lines[0]


def test_help_and_version():
    r = cli("--help")
    assert r.returncode == 0
    for word in ("mount", "umount", "new-run", "run", "status", "--store", "--blobs", "--allow-delete"):
        assert word in r.stdout, word
    r = cli("--version")
    assert r.returncode == 0 and "0.1.0" in r.stdout


def test_usage_errors():
    r = cli("frobnicate")
    assert r.returncode == 2 and "aletheia" in r.stderr
    r = cli("new-run")
    assert r.returncode == 2
    r = cli("run", "--exper", "p/e", "--no-such-option", "--", "true")
    assert r.returncode == 2


def test_new_run(mount):
    r = cli("new-run", "proj/exp", m=mount)
    assert r.returncode == 0, r.stderr
    p = r.stdout.strip()
    assert p == str(mount.path / "proj/experiments/exp/runs/1")
    assert os.path.isabs(p) and os.path.isdir(p)
    r = cli("new-run", "proj/exp", "--mount", mount.path)
    assert r.stdout.strip() == str(mount.path / "proj/experiments/exp/runs/2")
    os.mkdir(mount.path / "proj/experiments/exp/runs/10")
    assert cli("new-run", "proj/exp", m=mount).stdout.strip().endswith("/runs/11")


def test_new_run_concurrent(mount):
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        results = list(ex.map(lambda _: cli("new-run", "p/e", m=mount), range(6)))
    for r in results:
        assert r.returncode == 0, r.stderr
    paths = [r.stdout.strip() for r in results]
    assert len(set(paths)) == 6
    assert sorted(os.listdir(mount.path / "p/experiments/e/runs"), key=int) == [str(i) for i in range(1, 7)]


SCRIPT = ("import os, sys\n"
          "d = os.environ['ALETHEIA_RUN_DIR']\n"
          "print('hello from', d, flush=True)\n"
          "print('to stderr', file=sys.stderr, flush=True)\n"
          "open(os.path.join(d, 'metrics', 'loss'), 'a').write('0.5\\n0.25\\n')\n")


def test_run_success(mount, tmpdir_al):
    r = cli("run", "--exper", "p/e", "--fold", "2", "--model", "mlp", "--param", "lr=0.01",
            "--param", "opt/name=adam", "--", PY, "-c", SCRIPT, m=mount, cwd=tmpdir_al)
    assert r.returncode == 0, r.stderr
    run = mount.path / "p/experiments/e/runs/1"
    assert f"hello from {run}" in r.stdout
    assert "to stderr" in r.stdout + r.stderr
    log = (run / "output.log").read_text()
    assert f"hello from {run}\n" in log and "to stderr\n" in log
    j = read_json(run / "run.json")
    assert j["status"] == "finished" and j["exit_code"] == 0 and j["ended"]
    assert j["fold"] == 2 and j["model"] == "mlp"
    assert j["params"] == {"lr": 0.01, "opt/name": "adam"}
    assert j["metrics"]["loss"]["count"] == 2 and j["metrics"]["loss"]["last"] == 0.25
    assert j["command"].startswith(f"{PY} -c ") and "ALETHEIA_RUN_DIR" in j["command"], j["command"]
    assert j["cwd"] == str(tmpdir_al)
    assert (run / "status").read_text() == "finished\n"


def test_run_failure(mount):
    r = cli("run", "--exper", "p/e", "--", "bash", "-c", "echo bye; echo oops >&2; exit 3", m=mount)
    assert r.returncode == 3
    run = mount.path / "p/experiments/e/runs/1"
    assert "bye" in r.stdout
    log = (run / "output.log").read_text()
    assert "bye\n" in log and "oops\n" in log
    j = read_json(run / "run.json")
    assert j["status"] == "failed" and j["exit_code"] == 3
    r = cli("run", "--exper", "p/e", "--", "/nonexistent/cmd", m=mount)
    assert r.returncode != 0


def test_run_sigterm(mount):
    p = subprocess.Popen([BIN, "run", "--exper", "p/e", "--", "bash", "-c", 'echo "$ALETHEIA_RUN_DIR"; exec sleep 30'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(mount))
    try:
        line = p.stdout.readline().strip()
        assert line == str(mount.path / "p/experiments/e/runs/1")
        time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 128 + signal.SIGTERM
    j = read_json(mount.path / "p/experiments/e/runs/1/run.json")
    assert j["status"] == "killed" and j["exit_code"] == 128 + signal.SIGTERM


def test_run_require_clean(mount, tmpdir_al):
    repo = tmpdir_al / "repo"
    repo.mkdir()
    sh("git init -q -b main . && git config user.email t@e && git config user.name T && echo a > f && "
       "git add f && git commit -q -m one && echo b >> f", cwd=repo)
    r = cli("run", "--exper", "p/e", "--require-clean", "--", "true", m=mount, cwd=repo)
    assert r.returncode == 1
    one_error_line(r.stderr)
    runs = mount.path / "p/experiments/e/runs"
    assert not runs.exists() or os.listdir(runs) == []
    sh("git commit -q -am two", cwd=repo)
    r = cli("run", "--exper", "p/e", "--require-clean", "--", "true", m=mount, cwd=repo)
    assert r.returncode == 0, r.stderr
    assert read_json(runs / os.listdir(runs)[0] / "run.json")["git"]["dirty"] is False


def test_status_command(mount, tmpdir_al):
    r = cli("status", m=mount)
    assert r.returncode == 0, r.stderr
    backend = "firestore" if alutil.FIRESTORE else "sqlite"
    assert f"backend: {backend}" in r.stdout and f"mountpoint: {mount.path}" in r.stdout
    assert cli("status", mount.path).returncode == 0
    plain = tmpdir_al / "plain"
    plain.mkdir()
    r = cli("status", plain)
    assert r.returncode == 1
    assert "is not an aletheia mount" in one_error_line(r.stderr)


def test_daemon_mount_and_umount(tmpdir_al):
    mnt, store = tmpdir_al / "dmnt", tmpdir_al / "dstore"
    mnt.mkdir()
    env = {"XDG_CACHE_HOME": str(tmpdir_al / "xdgcache")}
    r = cli("mount", mnt, "--store", f"local:{store}", "--blobs", f"file://{tmpdir_al}/dblobs",
            "--cache-dir", tmpdir_al / "dcache", env=env, timeout=30)
    pid = None
    try:
        assert r.returncode == 0, r.stderr
        assert os.path.ismount(mnt)
        st = dict(l.split(": ", 1) for l in (mnt / ".aletheia/status").read_text().splitlines() if ": " in l)
        pid = int(st["pid"])
        os.makedirs(mnt / "p/experiments/e/runs/1")
        sh(f"echo 0.1 > {mnt}/p/experiments/e/runs/1/params/lr")
        r = cli("umount", mnt, timeout=90)
        assert r.returncode == 0, r.stderr
        assert not os.path.ismount(mnt)
        assert process_gone(pid), f"daemon {pid} still running after umount"
        pid = None
    finally:
        if os.path.ismount(mnt):
            fusermount(mnt, lazy=True)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _mount_expect_failure(args, tmpdir_al):
    """Runs a mount that must fail; cleans up if it mounted after all."""
    mnt = args[1]
    try:
        return cli(*args, "--foreground", timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"aletheia {' '.join(map(str, args))} did not exit")
    finally:
        # also a mount whose daemon was killed (ismount may not see one that no longer answers)
        fusermount(mnt, lazy=True)


def test_mount_missing_mountpoint(tmpdir_al):
    mnt = tmpdir_al / "no" / "such" / "dir"
    r = _mount_expect_failure(["mount", mnt, "--store", f"local:{tmpdir_al}/s", "--blobs",
                               f"file://{tmpdir_al}/b", "--cache-dir", tmpdir_al / "c"], tmpdir_al)
    assert r.returncode != 0
    one_error_line(r.stderr)


@pytest.mark.local_store_only
def test_mount_busy_store(mount, tmpdir_al):
    mnt2 = tmpdir_al / "mnt2"
    mnt2.mkdir()
    r = _mount_expect_failure(["mount", mnt2, "--store", f"local:{mount.store}", "--blobs",
                               f"file://{mount.blobs}", "--cache-dir", tmpdir_al / "c2"], tmpdir_al)
    assert r.returncode != 0
    line = one_error_line(r.stderr)
    assert str(mount.store) in line or "use" in line or "busy" in line or "lock" in line, line
    # the first mount still works
    os.makedirs(mount.path / "p/experiments/e")


def test_mount_bad_store(tmpdir_al):
    mnt = tmpdir_al / "m"
    mnt.mkdir()
    r = _mount_expect_failure(["mount", mnt, "--store", "local:/etc/passwd/x", "--blobs",
                               f"file://{tmpdir_al}/b", "--cache-dir", tmpdir_al / "c"], tmpdir_al)
    assert r.returncode != 0
    assert "/etc/passwd/x" in one_error_line(r.stderr)
    r = _mount_expect_failure(["mount", mnt, "--store", "bogus:whatever", "--blobs",
                                f"file://{tmpdir_al}/b", "--cache-dir", tmpdir_al / "c"], tmpdir_al)
    assert r.returncode != 0
    one_error_line(r.stderr)


def test_config_file(tmpdir_al):
    """A configuration file gives a plain `aletheia mount` its settings; flags override it."""
    mnt, store, cache = tmpdir_al / "cmnt", tmpdir_al / "cstore", tmpdir_al / "ccache"
    mnt.mkdir()
    cfg = tmpdir_al / "config"
    cfg.write_text(f"# team settings\nstore = local:{store}\ncache-dir = {cache}\ncache-size = 2G\n"
                   f"mountpoint = {mnt}\n")
    env = {"ALETHEIA_CONFIG": str(cfg)}
    r = cli("mount", env=env, timeout=30)
    try:
        assert r.returncode == 0, r.stderr
        st = (mnt / ".aletheia/status").read_text()
        assert f"store: local:{store}\n" in st and f"cache: {cache} " in st and "of 2147483648" in st
    finally:
        fusermount(mnt, lazy=True)
    bad = tmpdir_al / "bad"
    bad.write_text("bogus = 1\n")
    r = cli("mount", mnt, env={"ALETHEIA_CONFIG": str(bad)}, timeout=30)
    assert r.returncode == 2 and "unknown key" in r.stderr and r.stderr.count("\n") == 1
