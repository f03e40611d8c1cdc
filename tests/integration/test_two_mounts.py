# aletheia integration tests: several mounts of one Firestore project (two hosts of one training job) keep every
# write, creates are decided by Firestore, and a slow Firestore costs no more requests than a fast one. The tests
# come from the attack-B tester (tests/integration/test_attack_b.py on branch wp-testb), docstrings kept; each
# failed on the code before wp-multi. They need ALETHEIA_TEST_STORE=firestore (skipped otherwise).
import concurrent.futures
import errno
import json
import os
import pathlib
import subprocess
import time
import urllib.request

import pytest

import alutil
from alutil import mkrun, poll, sh, try_write
from test_outage import Outage

HERE = pathlib.Path(__file__).resolve().parent
TTL_S = 1.0     # the read cache's TTL (default)
needs_firestore = pytest.mark.skipif(not alutil.FIRESTORE, reason="needs ALETHEIA_TEST_STORE=firestore")




def dump(emu_host, m):
    """Every document of m's Firestore project, read by Google's official client from the emulator."""
    r = subprocess.run(["node", str(HERE / "fsclient.mjs"), "dump", m.store_uri().split(":", 1)[1]],
                       capture_output=True, text=True, timeout=60,
                       env=alutil.env_for(extra={"FIRESTORE_EMULATOR_HOST": emu_host}))
    assert r.returncode == 0, f"fsclient dump failed: {r.stderr}"
    return json.loads(r.stdout)


@pytest.fixture
def emulator(tmpdir_al):
    """A private emulator behind scripts/fault-proxy (mode "reset" makes it unreachable for one mount only)."""
    if not alutil.FIRESTORE:
        yield None
        return
    o = Outage(pathlib.Path(tmpdir_al), "reset")
    yield o
    o.close()


# ---- two mounts of one project ------------------------------------------------------------------------------

@needs_firestore
@pytest.mark.parametrize("when", ["same-second", "during-outage"])
def test_two_mounts_write_params_of_one_run_and_keep_both(emulator, mount_factory, when):
    """README "params": writing a param sets that key, "others stay". Two mounts of one project (two hosts of one
    training job) each write their own param to one run: both must be kept. Each param write rewrites the run's
    whole hyper_params map from the mount's copy of the run, so the later delivery erases the other mount's
    param: within the same second, or, when one mount was offline, whatever the other wrote during the outage."""
    a = mount_factory("a", env=emulator.env())                                     # through the fault proxy
    b = mount_factory("b", store=a.store, env={"FIRESTORE_EMULATOR_HOST": emulator.emu_host})   # direct
    a.allow_log_errors = True
    run_a = mkrun(a, run="1")
    (run_a / "params/base").write_text("1\n")
    a.wait_idle(timeout=15)
    run_b = b.path / "p/experiments/e/runs/1"

    def b_sees_base():
        assert json.loads((run_b / "params.json").read_text()) == {"base": 1}
    poll(b_sees_base, timeout=TTL_S + 5)
    assert json.loads((run_a / "params.json").read_text()) == {"base": 1}
    assert json.loads((run_b / "params.json").read_text()) == {"base": 1}
    if when == "same-second":
        assert try_write(run_a / "params/from_a", "2\n") == 0
        assert try_write(run_b / "params/from_b", "3\n") == 0
    else:
        emulator.begin()               # a cannot reach Firestore; b can
        try:
            assert try_write(run_a / "params/from_a", "2\n") == 0
            assert try_write(run_b / "params/from_b", "3\n") == 0
            b.wait_idle(timeout=15)    # from_b is in Firestore
        finally:
            emulator.end()
    a.wait_idle(timeout=40)
    b.wait_idle(timeout=15)
    hp = dump(emulator.emu_host, a)["projects/p/experiments/e/runs/1"]["hyper_params"]
    assert sorted(hp) == ["base", "from_a", "from_b"], \
        f"both writes returned 0, yet Firestore holds the params {sorted(hp)}"


@needs_firestore
def test_two_mounts_link_datasets_to_one_run_and_keep_both(mount_factory):
    """README "datasets": a symlink in a run's datasets/ records that the run used the dataset. Two mounts each
    link another dataset to one run at the same time: both links must stay. The run's whole datasets map is
    rewritten from each mount's copy, so one link vanishes (readlink then fails on both mounts)."""
    a = mount_factory("a")
    b = mount_factory("b", store=a.store)
    run_a = mkrun(a, run="1")
    for d in ("d1", "d2"):
        (a.path / "p/datasets" / d).mkdir()
        (a.path / "p/datasets" / d / "f").write_text(d)
    a.wait_idle(timeout=15)
    run_b = b.path / "p/experiments/e/runs/1"

    def b_sees_datasets():
        assert sorted(os.listdir(b.path / "p/datasets")) == ["d1", "d2"]
        assert os.listdir(run_b / "datasets") == []
    poll(b_sees_datasets, timeout=TTL_S + 5)
    assert os.listdir(run_a / "datasets") == [] and os.listdir(run_b / "datasets") == []
    os.symlink(a.path / "p/datasets/d1", run_a / "datasets/d1")
    os.symlink(b.path / "p/datasets/d2", run_b / "datasets/d2")
    a.wait_idle(timeout=15)
    b.wait_idle(timeout=15)
    time.sleep(TTL_S + 0.5)
    for m, run in ((a, run_a), (b, run_b)):
        doc = json.loads((run / "run.json").read_text())
        names = sorted(x["name"] for x in doc["datasets"])
        assert names == ["d1", "d2"], f"{m.path.name} shows the links {names} after both symlink() calls returned 0"


@needs_firestore
def test_two_mounts_append_to_one_metadata_file_and_keep_both(mount_factory):
    """README "params": appending a JSON object (`>>`, Python's 'a' mode) merges its keys; metadata/<name> is
    written the same way. Two mounts append other keys to one metadata file at the same time: both must stay.
    Each append wrote the whole merged object from the mount's copy, so the later delivery erased the other
    mount's key."""
    a = mount_factory("a")
    b = mount_factory("b", store=a.store)
    (a.path / "p").mkdir()
    (a.path / "p/metadata/m").write_text('{"base": 1}\n')
    a.wait_idle(timeout=15)

    def b_sees():
        assert json.loads((b.path / "p/metadata/m").read_text()) == {"base": 1}
    poll(b_sees, timeout=TTL_S + 5)
    assert json.loads((a.path / "p/metadata/m").read_text()) == {"base": 1}
    with open(a.path / "p/metadata/m", "a") as f:
        f.write('{"from_a": 2}\n')
    with open(b.path / "p/metadata/m", "a") as f:
        f.write('{"from_b": 3}\n')
    a.wait_idle(timeout=15)
    b.wait_idle(timeout=15)
    time.sleep(TTL_S + 0.5)
    for m in (a, b):
        got = json.loads((m.path / "p/metadata/m").read_text())
        assert got == {"base": 1, "from_a": 2, "from_b": 3}, f"{m.path.name} reads {got} after both appends"


@needs_firestore
def test_two_mounts_write_one_dataset_file_once(mount_factory):
    """README "datasets": files copied in are write-once, "opening an existing file for writing fails with
    EPERM". Two mounts of one project write the same new name in one dataset at the same time, with other bytes:
    both close() calls return 0, each mount then reads its own bytes for the same path (and computes its version
    from them), and a few seconds later one writer's file has silently become the other's. Only Firestore can
    tell which mount wrote the name first (as for mkdir), so one of the two must fail (EPERM or EEXIST), and the
    file must keep the bytes of the one that succeeded."""
    a = mount_factory("a")
    b = mount_factory("b", store=a.store)
    (a.path / "p/datasets/d").mkdir(parents=True)
    a.wait_idle(timeout=15)

    def b_sees():
        assert sorted(os.listdir(b.path / "p/datasets/d")) == [".dataset.json", ".description"]
    poll(b_sees, timeout=TTL_S + 5)
    results = []
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        for i in range(5):
            name = f"shard{i}"
            os.listdir(a.path / "p/datasets/d")
            os.listdir(b.path / "p/datasets/d")
            fa = ex.submit(try_write, a.path / "p/datasets/d" / name, f"from a {i}\n")
            fb = ex.submit(try_write, b.path / "p/datasets/d" / name, f"from b {i}\n")
            results.append((name, fa.result(), fb.result()))
    a.wait_idle(timeout=15)
    b.wait_idle(timeout=15)
    time.sleep(TTL_S + 3)
    problems = []
    for i, (name, ea, eb) in enumerate(results):
        got = {m.path.name: (m.path / "p/datasets/d" / name).read_text() for m in (a, b)}
        if ea == 0 and eb == 0:
            problems.append(f"{name}: both writers' close() returned 0; now a reads {got['a']!r}, b {got['b']!r}")
        elif ea == 0 or eb == 0:
            want = f"from {'a' if ea == 0 else 'b'} {i}\n"
            if set(got.values()) != {want}:
                problems.append(f"{name}: {want!r} was accepted, yet the mounts read {got}")
    assert not problems, "write-once broken across two mounts:\n" + "\n".join(problems)


@needs_firestore
def test_two_mounts_write_the_same_dataset_file_and_both_succeed(mount_factory):
    """README "datasets": the same content written under one new name by two mounts at once is no conflict: both
    close() calls return 0 and both mounts read it."""
    a = mount_factory("a")
    b = mount_factory("b", store=a.store)
    (a.path / "p/datasets/d").mkdir(parents=True)
    a.wait_idle(timeout=15)
    poll(lambda: os.listdir(b.path / "p/datasets/d"), timeout=TTL_S + 5)
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        fa = ex.submit(try_write, a.path / "p/datasets/d/same", "same bytes\n")
        fb = ex.submit(try_write, b.path / "p/datasets/d/same", "same bytes\n")
        assert (fa.result(), fb.result()) == (0, 0)
    for m in (a, b):
        assert (m.path / "p/datasets/d/same").read_text() == "same bytes\n"


@needs_firestore
def test_new_dataset_file_needs_firestore(emulator, mount_factory):
    """README "Firestore": a new dataset file is created like a run, with a create-only commit made at once, so
    its close() fails with EIO while Firestore is unreachable and nothing is recorded; an artifact is still
    accepted and delivered later."""
    m = mount_factory(env=emulator.env())
    m.allow_log_errors = True
    run = mkrun(m)
    (m.path / "p/datasets/d").mkdir()
    m.wait_idle(timeout=15)
    assert sorted(os.listdir(m.path / "p/datasets/d")) == [".dataset.json", ".description"]
    emulator.begin()
    try:
        assert try_write(m.path / "p/datasets/d/new", "x\n") == errno.EIO
        assert try_write(run / "artifacts/a.txt", "kept\n") == 0
    finally:
        emulator.end()
    m.wait_idle(timeout=30)
    time.sleep(TTL_S + 0.5)
    assert sorted(os.listdir(m.path / "p/datasets/d")) == [".dataset.json", ".description"]
    assert (run / "artifacts/a.txt").read_text() == "kept\n"
    assert try_write(m.path / "p/datasets/d/new", "x\n") == 0


# ---- a slow Firestore ---------------------------------------------------------------------------------------

def proxy_requests(o, reset=False):
    """Requests seen by the emulator fixture's fault proxy (and optionally start counting again)."""
    if reset:
        urllib.request.urlopen(urllib.request.Request(f"http://{o.host}/__stats/reset", method="POST"),
                               timeout=10).read()
        return 0
    with urllib.request.urlopen(f"http://{o.host}/__stats", timeout=10) as r:
        return json.loads(r.read())["requests"]


@needs_firestore
def test_slow_firestore_does_not_multiply_requests(emulator, mount_factory):
    """README "Firestore": a request made for a file operation waits at most ALETHEIA_NETWORK_WAIT_MS (2.5 s), and
    a listing's documents "answer every stat for the next second without a request". With Firestore answering
    slowly but within the bound (600 ms a request: an overloaded service, a far region), each file operation
    checks the project, experiment and run documents again one after the other, and by the time the chain is
    done its first answers are older than the TTL: `ls -l` of a folder holding one metric makes 4 requests
    when Firestore answers at once and 24 at 600 ms (about 15 s; 51 s at 2 s a request, never marked
    unreachable), and the same `ls -l` repeated at once makes 24 again. Requests are counted, not timed."""
    m = mount_factory(env=emulator.env())
    run = mkrun(m)
    with open(run / "metrics/loss", "a") as f:
        f.write("0.5\n")
    m.wait_idle(timeout=15)

    def count_ls():
        time.sleep(TTL_S + 1)          # nothing fresh in the read cache
        proxy_requests(emulator, reset=True)
        sh(f"ls -l '{run}/metrics' > /dev/null", timeout=120)
        return proxy_requests(emulator)
    fast = count_ls()
    emulator._proxy("POST", {"mode": "delay", "ms": 600, "count": -1})
    try:
        slow = count_ls()
    finally:
        emulator.end()
    assert slow <= fast + 2, (f"`ls -l` of a folder with one metric: {fast} requests when Firestore answers at "
                              f"once, {slow} when each answer takes 600 ms")


# ---- Firestore: a create whose answer is lost -----------------------------------------------------------------

@needs_firestore
def test_mkdir_that_fails_creates_nothing(emulator, mount_factory):
    """README "Firestore": creating a run is a create-only commit made at once; it "fails with EIO while Firestore
    is unreachable". When the commit reached Firestore but its answer was lost (the connection cut mid-answer),
    mkdir fails with EIO and yet the run exists: it appears a moment later, `mkdir` again says EEXIST, and
    `aletheia new-run`/`aletheia run` leave an orphan run that stays `running`. Expected: mkdir's result is the
    truth (it may check what it created), so a failed mkdir leaves no run."""
    m = mount_factory(env=emulator.env())
    m.allow_log_errors = True
    runs = m.path / "p/experiments/e/runs"
    mkrun(m, run="1")
    m.wait_idle(timeout=15)
    emulator._proxy("POST", {"mode": "truncate", "count": 1, "match": "POST /v1/projects/"})
    try:
        os.mkdir(runs / "2")
        ok = True
    except OSError as e:
        assert e.errno == errno.EIO, alutil.errname(e.errno)
        ok = False
    emulator.end()
    time.sleep(TTL_S + 2)
    listed = sorted(os.listdir(runs))
    docs = dump(emulator.emu_host, m)
    exists = "projects/p/experiments/e/runs/2" in docs
    assert exists == ok, (f"mkdir {'succeeded' if ok else 'failed with EIO'}, yet run 2 "
                          f"{'does' if exists else 'does not'} exist in Firestore (mount lists {listed})")


# ---- .aletheia/status: last_error ------------------------------------------------------------------------------

@needs_firestore
def test_last_error_clears_once_deliveries_succeed_again(emulator, mount_factory):
    """README "Firestore": `.aletheia/status` shows `last_error`. After an outage during which params and metric
    points waited, every write is delivered once Firestore answers again, and last_error must say so (none), not
    keep the connection error of the outage for the rest of the mount's life."""
    m = mount_factory(env=emulator.env())
    m.allow_log_errors = True
    run = mkrun(m)
    m.wait_idle(timeout=15)
    emulator.begin()
    try:
        assert try_write(run / "params/lr", "0.1\n") == 0
        with open(run / "metrics/loss", "a") as f:
            f.write("0.5\n")

        def failed():
            assert m.status().get("last_error", "none") != "none"
        poll(failed, timeout=20)
    finally:
        emulator.end()
    m.wait_idle(timeout=30)
    assert m.status()["last_error"] == "none", f"everything was delivered, yet last_error: {m.status()['last_error']}"


@needs_firestore
def test_dropped_artifact_write_names_the_artifact(emulator, mount_factory):
    """README "Firestore": a write the server refuses at delivery is dropped, and last_error and the log say
    `dropped a write to PATH`. For an artifact, PATH was the blob's own record files/<hash>, which names no file;
    it must name the artifact."""
    m = mount_factory(env=emulator.env())
    m.allow_log_errors = True
    run = mkrun(m)
    m.wait_idle(timeout=15)
    emulator._proxy("POST", {"mode": "status", "code": 400, "count": 1, "match": ":commit"})
    try:
        assert try_write(run / "artifacts/model.bin", "weights\n") == 0
        m.wait_idle(timeout=15)
    finally:
        emulator.end()
    err = m.status()["last_error"]
    assert err.startswith("dropped a write to "), err
    assert "artifacts/model.bin" in err, f"the dropped write is named {err[:120]!r}"
