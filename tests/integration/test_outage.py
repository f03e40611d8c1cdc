# aletheia integration tests: file operations while Firestore is unreachable (README "Firestore": what waits how
# long at most). A private emulator is paused with SIGSTOP (connections accepted, never answered), or reached
# through scripts/fault-proxy, which drops or resets every connection. Each command must finish within a liveness
# bound (a hang detector, not a speed measure), answer from the mount's last known copy and its own writes, and
# everything written must reach Firestore once it is back. Runs only with ALETHEIA_TEST_STORE=firestore.
import json
import os
import pathlib
import re
import signal
import subprocess
import time
import urllib.request

import pytest

import alutil
from alutil import mkrun, sh

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EMULATOR = ROOT / "scripts" / "firestore-emulator"
FAULT_PROXY = ROOT / "scripts" / "fault-proxy"
BOUND_S = 10.0      # liveness: the mount's own bound is ALETHEIA_NETWORK_WAIT_MS (2.5 s by default)
TTL_S = 1.0         # the read cache's TTL (default)
GRACE_S = 5.0       # a delivered write stays in the write-behind's overlay this long (store_wb.c)

pytestmark = pytest.mark.skipif(not alutil.FIRESTORE, reason="needs ALETHEIA_TEST_STORE=firestore")


def start_logged(argv, prefix, log, timeout=30):
    """Starts argv with its output in log; returns (proc, "HOST:PORT") once a line starts with prefix."""
    with open(log, "wb") as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        mt = re.search(re.escape(prefix) + r"(\S+)", log.read_text(errors="replace"))
        if mt:
            return p, mt.group(1)
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            p.wait()
            raise AssertionError(f"{argv[0]} did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.02)


class Outage:
    """A private emulator (so pausing it touches no other test), optionally behind fault-proxy, and a way to make
    it unreachable: "sigstop" pauses the emulator; "drop" / "reset" make the proxy close every connection."""

    def __init__(self, tmp, mode):
        self.mode, self.proxy = mode, None
        self.emu, self.emu_host = start_logged(["node", str(EMULATOR), "--port", "0"],
                                               "firestore-emulator listening on ", tmp / "emulator.log")
        self.host = self.emu_host
        if mode != "sigstop":
            self.proxy, self.host = start_logged([alutil.PY, str(FAULT_PROXY), "--port", "0", "--upstream",
                                                  f"http://{self.emu_host}"], "fault-proxy listening on ",
                                                 tmp / "fault-proxy.log")
        self.down = False

    def _proxy(self, method, doc=None):
        req = urllib.request.Request(f"http://{self.host}/__faults", method=method,
                                     data=None if doc is None else json.dumps(doc).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    def begin(self):
        self.down = True
        if self.mode == "sigstop":
            os.kill(self.emu.pid, signal.SIGSTOP)
        else:
            self._proxy("POST", {"mode": self.mode, "count": -1})

    def end(self):
        if self.mode == "sigstop":
            os.kill(self.emu.pid, signal.SIGCONT)
        else:
            self._proxy("DELETE")
        self.down = False

    def close(self):
        for p in (self.proxy, self.emu):
            if p is None:
                continue
            try:
                os.kill(p.pid, signal.SIGCONT)   # a stopped process cannot die of SIGKILL's teardown otherwise
            except ProcessLookupError:
                pass
            p.kill()
            p.wait()

    def env(self):
        return {"FIRESTORE_EMULATOR_HOST": self.host}

    def dump(self, project):
        """Every document of the project, read by Google's official client straight from the emulator."""
        r = subprocess.run(["node", str(HERE / "fsclient.mjs"), "dump", project], capture_output=True, text=True,
                           timeout=60, env=alutil.env_for(extra={"FIRESTORE_EMULATOR_HOST": self.emu_host}))
        assert r.returncode == 0, f"fsclient dump failed: {r.stderr}"
        return json.loads(r.stdout)


@pytest.fixture(params=["sigstop", "drop", "reset"])
def outage(request, tmpdir_al):
    o = Outage(pathlib.Path(tmpdir_al), request.param)
    yield o
    o.close()   # always resumed and killed, even when the test failed mid-outage


def timed(cmd, cwd, ok=True):
    """Runs cmd (bash) in cwd; asserts it finished within BOUND_S and, with ok, exited 0. Returns stdout."""
    t0 = time.monotonic()
    r = sh(cmd, cwd=cwd, check=False, timeout=60)
    took = time.monotonic() - t0
    print(f"{took:6.2f} s  {cmd}  {r.stderr.strip()}")
    assert took < BOUND_S, f"`{cmd}` took {took:.1f} s while Firestore was unreachable (bound {BOUND_S} s)"
    if ok:
        assert r.returncode == 0, f"`{cmd}` exited {r.returncode} during the outage: {r.stderr.strip()}"
    else:
        assert r.returncode != 0, f"`{cmd}` succeeded during the outage"
    return r.stdout


def pts(text):
    return [float(line.split()[1]) for line in text.splitlines()]


def test_file_operations_bounded_while_unreachable(outage, mount_factory, tmpdir_al):
    m = mount_factory(env=outage.env())
    m.allow_log_errors = True   # failed deliveries are worth a line in the log
    old = mkrun(m, run="old")
    (old / "params/pre").write_text("1\n")
    with open(old / "metrics/x", "a") as f:
        f.write("0.5\n")
    (old / "artifacts/before.bin").write_bytes(b"before")
    m.wait_idle(timeout=15)
    # A new daemon (same cache folder) only looks at the old run, as a user would before the outage: its
    # metric's points were never loaded by this mount, so an append must not need them.
    m.remount()
    assert (old / "params/pre").read_text() == "1\n" and os.listdir(old / "artifacts") == ["before.bin"]
    assert os.stat(old / "metrics/x").st_size > 0 and os.listdir(old / "metrics") == ["x"]
    new = mkrun(m, run="new")   # created just before the outage
    assert sorted(os.listdir(m.path / "p/experiments/e/runs")) == ["new", "old"]
    # Nothing fresh is left: the read cache's answers and the write-behind's delivered writes have expired, so
    # only the last known copies can answer.
    time.sleep(GRACE_S + TTL_S + 0.5)
    src = pathlib.Path(tmpdir_al) / "file.bin"
    src.write_bytes(os.urandom(5000))

    outage.begin()
    try:
        for run in (old, new):
            timed("echo 5 > params/pre", run)
            timed("echo 6 > params/newp", run)
            timed("echo 0.7 >> metrics/x", run)
            timed("echo 0.25 >> metrics/y", run)
            assert timed("cat params/pre", run) == "5\n"
            doc = json.loads(timed("cat run.json", run))
            assert doc["params"] == {"pre": 5, "newp": 6}, doc["params"]
            assert doc["metrics"]["x"]["last"] == 0.7 and doc["metrics"]["y"]["count"] == 1, doc["metrics"]
            assert doc["metrics"]["x"]["count"] == (2 if run is old else 1), doc["metrics"]
            timed(f"cp {src} artifacts/", run)
            listed = timed("ls artifacts/", run).split()
            assert "file.bin" in listed and (run is new or "before.bin" in listed), listed
            timed(f"cmp {src} artifacts/file.bin", run)
        assert pts(timed("cat metrics/y", new)) == [0.25]
        assert pts(timed("cat metrics/x", new)) == [0.7]
        assert timed("ls metrics/", old).split() == ["x", "y"]
        # Creating needs Firestore: a bounded EIO.
        timed("mkdir ../third", old, ok=False)
        st = m.status()
        assert int(st["pending_writes"]) > 0, st
        assert st["offline_since"] != "none", st   # said in .aletheia/status
    finally:
        outage.end()

    m.wait_idle(timeout=40)
    docs = outage.dump(m.store_uri().split(":", 1)[1])
    for name in ("old", "new"):
        rd = f"projects/p/experiments/e/runs/{name}"
        hp = docs[rd]["hyper_params"]
        assert {k: int(v["$int"]) for k, v in hp.items()} == {"pre": 5, "newp": 6}, (name, hp)
        assert int(docs[rd + "/metrics/y"]["count"]["$int"]) == 1
        assert int(docs[rd + "/metrics/x"]["count"]["$int"]) == (2 if name == "old" else 1)
        assert int(docs[rd + "/artifacts/file.bin"]["size"]["$int"]) == 5000
    assert "projects/p/experiments/e/runs/third" not in docs

    # A fresh mount (its own cache) sees all of it.
    m.umount()
    fresh = mount_factory(name="fresh", store=m.store, env=outage.env())
    for name in ("old", "new"):
        run = fresh.path / "p/experiments/e/runs" / name
        assert json.loads((run / "params.json").read_text()) == {"pre": 5, "newp": 6}
        assert pts((run / "metrics/x").read_text()) == ([0.5, 0.7] if name == "old" else [0.7])
        assert pts((run / "metrics/y").read_text()) == [0.25]
        assert (run / "artifacts/file.bin").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("outage", ["sigstop"], indirect=True)
def test_umount_bounded_while_unreachable(outage, mount_factory):
    """`aletheia umount` waits for pending writes only while they go down: with Firestore unreachable it says so
    and unmounts; the writes stay journaled and the next mount with the same cache folder delivers them."""
    m = mount_factory(env=outage.env())
    m.allow_log_errors = True
    run = mkrun(m)
    (run / "params/a").write_text("1\n")
    m.wait_idle(timeout=15)
    outage.begin()
    try:
        timed("echo 2 > params/b", run)
        timed("echo 0.5 >> metrics/loss", run)
        t0 = time.monotonic()
        r = alutil.cli("umount", m.path, timeout=120)
        took = time.monotonic() - t0
        print(f"{took:6.2f} s  aletheia umount  {r.stderr.strip()}")
        assert r.returncode == 0, r.stderr
        assert "not delivered yet" in r.stderr and "unreachable" in r.stderr, r.stderr
        # liveness: 10 s without progress, then the daemon's exit (its final flush is bounded)
        assert took < 40, f"aletheia umount took {took:.1f} s while Firestore was unreachable"
        assert m.proc.wait(timeout=10) == 0
    finally:
        outage.end()
    m.start()
    m.wait_idle(timeout=30)
    docs = outage.dump(m.store_uri().split(":", 1)[1])
    rd = "projects/p/experiments/e/runs/1"
    assert {k: int(v["$int"]) for k, v in docs[rd]["hyper_params"].items()} == {"a": 1, "b": 2}
    assert int(docs[rd + "/metrics/loss"]["count"]["$int"]) == 1
