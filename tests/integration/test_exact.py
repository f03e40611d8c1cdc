# aletheia integration tests: what is accepted is stored exactly and reads back exactly — values
# past Firestore's limits refused at close() on every backend, numbers bit for bit after a remount,
# text never cut or altered, an O_TRUNC without a write changing nothing.
import errno
import json
import math
import os
import signal
import struct
import time

import pytest
from alutil import mkrun, points, read_json, sh, try_write


def close_error(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    """errno of writing data with one open/write/close (0 if none)."""
    return try_write(path, data, flags)


def assert_tree_usable(m, run):
    """The run's neighbours and the run itself still answer (no EIO)."""
    exp = run.parent.parent
    assert "1" in os.listdir(exp / "runs")
    assert (exp / "runs.csv").read_text().startswith("id,")
    assert read_json(run / "run.json")["id"] == run.name
    sh("cd . && ls params >/dev/null", cwd=run)


def test_nesting_past_firestores_limit_is_refused_at_close(mount):
    run = mkrun(mount)
    (run / "params" / "good").write_text("1\n")
    for text in ("[" * 333 + "]" * 333, "[" * 25 + "]" * 25, "[[1, 2], [3, 4]]",
                 '{"a":' * 20 + "1" + "}" * 20):
        assert close_error(run / "params" / "x", text) == errno.EINVAL, text[:30]
        assert_tree_usable(mount, run)
    # 19 levels below the param (20 below hyper_params) are fine
    ok = '{"a":' * 19 + "1" + "}" * 19
    assert close_error(run / "params" / "deep", ok) == 0
    assert json.loads((run / "params" / "deep").read_text()) == json.loads(ok)
    assert close_error(run / "params.json", '{"y": ' + "[" * 500 + "]" * 500 + "}") == errno.EINVAL
    md = mount.path / "p" / "metadata"
    assert close_error(md / "m", '{"a":' * 400 + "1" + "}" * 400) == errno.EINVAL
    (md / "fine").write_text('{"k": 1}')
    assert os.listdir(md) == ["fine"]
    mount.umount()
    mount.start()
    assert_tree_usable(mount, run)
    assert sorted(os.listdir(run / "params")) == ["deep", "good"]
    assert os.listdir(md) == ["fine"]


def test_a_refused_value_takes_no_other_write_with_it(mount):
    run = mkrun(mount)
    (run / "params" / "good1").write_text("111\n")
    assert close_error(run / "params" / "x", "[" * 25 + "]" * 25) == errno.EINVAL
    (run / "params" / "good2").write_text("222\n")
    os.mkdir(run / "params" / ("k" * 1000))
    long = run / "params" / ("k" * 1000) / ("j" * 1000)
    assert close_error(long, "1\n") in (errno.EINVAL, errno.ENAMETOOLONG)   # a 2,0xx-byte key
    (run / "params" / "ok").write_text("3\n")
    mount.umount()
    mount.start()
    got = json.loads((run / "params.json").read_text())
    assert got == {"good1": 111, "good2": 222, "ok": 3}
    assert "dropped" not in (mount.path / ".aletheia" / "status").read_text()


def test_text_is_stored_exactly_or_refused(mount):
    run = mkrun(mount)
    p = run / "params"
    assert close_error(p / "bin", bytes(range(256))) == errno.EINVAL
    assert close_error(p / "latin1", b"caf\xe9\n") == errno.EINVAL
    assert close_error(run / "description", b"a\x00b\n") == errno.EINVAL
    assert close_error(run / "model", b"\xff\xfe\n") == errno.EINVAL
    assert not (p / "bin").exists() and not (p / "latin1").exists()
    # numbers no double or int64 holds exactly stay the text written
    for name, text in (("big", "99999999999999999999"), ("huge", "1e400"), ("tiny", "1e-400")):
        (p / name).write_text(text + "\n")
        assert (p / name).read_text() == text + "\n"
    pj = json.loads((run / "params.json").read_text())
    assert pj["big"] == "99999999999999999999" and pj["huge"] == "1e400" and pj["tiny"] == "1e-400"
    # nan and infinities round-trip through params.json, as Python's json writes them
    (p / "n").write_text("nan\n")
    (p / "i").write_text("-inf\n")
    text = (run / "params.json").read_text()
    assert '"n": NaN' in text and '"i": -Infinity' in text
    run2 = mkrun(mount, "2")
    sh(f"cat {run}/params.json > {run2}/params.json")
    pj2 = json.loads((run2 / "params.json").read_text())
    assert math.isnan(pj2["n"]) and pj2["i"] == -math.inf and pj2["big"] == "99999999999999999999"
    assert (run2 / "params" / "n").read_text() == "nan\n"
    # exit codes past 32 bits are refused like folds past 64
    assert close_error(run / "status", "failed 99999999999999999999\n") == errno.EINVAL
    assert (run / "status").read_text() == "running\n"
    # params.json keys that no file could reach
    for key in ("x/", "a//b", "/lead", ""):
        assert close_error(run / "params.json", json.dumps({key: 1})) == errno.EINVAL, key
    # metadata: a key twice, reserved names
    md = mount.path / "p" / "metadata"
    assert close_error(md / "m", '{"a": 1, "a": 2}') == errno.EINVAL
    assert close_error(md / "m", '{"__name__": 1}') == errno.EINVAL
    assert close_error(md / "m", '{"big": 12345678901234567890}') == errno.EINVAL
    assert not (md / "m").exists()
    (md / "m").write_text('{"big": 9223372036854775807, "x": 0.1}')
    assert json.loads((md / "m").read_text()) == {"big": 9223372036854775807, "x": 0.1}


DOUBLES = [0.30000000000000004, 1.0000000000000002, 0.20400000000000001, 0.85333333333333339,
           5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 0.0, 1e-7, 123456789.125]


def bits(x):
    return struct.pack("<d", x)


def test_doubles_survive_a_remount_bit_for_bit(mount):
    run = mkrun(mount)
    for i, d in enumerate(DOUBLES):
        (run / "params" / f"d{i}").write_text(repr(d) + "\n")
    with open(run / "metrics" / "loss", "w") as f:
        for i in range(1000):
            print(i, 0.1 * (i % 10) + 0.2, file=f)
    with open(run / "metrics" / "edge", "w") as f:
        for d in DOUBLES:
            print(repr(d), file=f)
    (run / "metrics" / "steps").write_text("9223372036854775807 0.5\n")
    expect_loss = [0.1 * (i % 10) + 0.2 for i in range(1000)]

    def check():
        for i, d in enumerate(DOUBLES):
            assert bits(float((run / "params" / f"d{i}").read_text())) == bits(d), d
        pj = json.loads((run / "params.json").read_text())
        for i, d in enumerate(DOUBLES):
            assert bits(float(pj[f"d{i}"])) == bits(d), (d, pj[f"d{i}"])
        for name, expect in (("loss", expect_loss), ("edge", DOUBLES)):
            path = run / "metrics" / name
            content = path.read_bytes()
            assert os.stat(path).st_size == len(content)
            got = [float(line.split()[1]) for line in content.decode().splitlines()]
            assert [bits(x) for x in got] == [bits(x) for x in expect]
        rj = read_json(run / "run.json")
        assert bits(rj["metrics"]["loss"]["last"]) == bits(expect_loss[-1])
        assert bits(rj["metrics"]["edge"]["last"]) == bits(DOUBLES[-1])
        assert rj["metrics"]["steps"]["step"] == 9223372036854775807
        text = (run / "run.json").read_text()
        assert "0.85333333333333339" not in text and "e+18" not in text

    check()
    mount.umount()
    mount.start()
    check()
    # tar reads every generated file at the size stat gives
    r = sh(f"tar cf /dev/null -C {run} .", check=False)
    assert "shrank" not in r.stderr and r.returncode == 0, r.stderr


def test_o_trunc_without_a_write_keeps_the_old_value(mount):
    run = mkrun(mount)
    (run / "params" / "x").write_text("1\n")
    (run / "description").write_text("kept\n")
    for path in (run / "params" / "x", run / "description"):
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.close(fd)
        pid = os.fork()
        if pid == 0:   # killed between open(O_TRUNC) and its first write
            os.open(path, os.O_WRONLY | os.O_TRUNC)
            os.kill(os.getpid(), signal.SIGKILL)
        os.waitpid(pid, 0)
    assert (run / "params" / "x").read_text() == "1\n"
    assert (run / "description").read_text() == "kept\n"
    # an explicit truncate(1) is meant, and clears
    os.truncate(run / "description", 0)
    assert (run / "description").read_text() == ""


def test_appending_to_params_json_merges_keys(mount):
    run = mkrun(mount)
    sh("""echo '{"a": 1}' > params.json && echo '{"b": 2}' >> params.json""", cwd=run)
    with open(run / "params.json", "a") as f:
        f.write('{"c": {"d": 3}}')
    assert json.loads((run / "params.json").read_text()) == {"a": 1, "b": 2, "c": {"d": 3}}
    assert close_error(run / "params.json", "[1]", os.O_WRONLY | os.O_APPEND) == errno.EINVAL
    md = mount.path / "p" / "metadata" / "m"
    sh(f"""echo '{{"a": 1}}' > {md} && echo '{{"b": 2}}' >> {md}""")
    assert json.loads(md.read_text()) == {"a": 1, "b": 2}


def test_a_param_file_and_folder_of_one_name_are_refused(mount):
    run = mkrun(mount)
    (run / "params" / "opt").write_text("adam\n")
    assert close_error(run / "params" / "opt2", "x") == 0
    e = close_error(run / "params.json", '{"opt/beta1": 0.9}')
    assert e in (errno.ENOTDIR, errno.EINVAL), errno.errorcode.get(e, e)
    os.makedirs(run / "params" / "sched", exist_ok=True)
    (run / "params" / "sched" / "gamma").write_text("0.1\n")
    assert close_error(run / "params.json", '{"sched": 1}') in (errno.EISDIR, errno.EINVAL)
    assert json.loads((run / "params.json").read_text()) == {"opt": "adam", "opt2": "x", "sched/gamma": 0.1}


def test_whole_mount_tools_run_clean(mount):
    run = mkrun(mount)
    sh("echo 0.5 >> metrics/loss && echo 1 > params/lr && echo needle-7c1f > artifacts/a.txt", cwd=run)
    os.mkdir(mount.path / "p" / "datasets" / "d")
    (mount.path / "p" / "datasets" / "d" / "x.csv").write_text("a,b\n")
    backup = mount.root / "backup"
    r = sh(f"rsync -a {mount.path}/ {backup}/", check=False)
    assert r.returncode == 0, r.stderr
    assert (backup / "p/experiments/e/runs/1/metrics/loss").read_bytes() == (run / "metrics/loss").read_bytes()
    r = sh(f"tar cf {mount.root}/all.tar -C {mount.path} .", check=False)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = sh(f"grep -r adam {mount.path}", check=False)
    assert r.returncode == 1 and r.stderr == "", r.stderr      # no match, no error
    # a word no generated file holds (index.html's CSS says "white-space")
    assert sh(f"grep -rl needle-7c1f {mount.path}").stdout.strip().endswith("artifacts/a.txt")
    r = sh(f"find {mount.path} -type f -exec cat {{}} + > /dev/null && du -s {mount.path}", check=False)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    # the control files are there by name, and reading them is harmless
    assert (mount.path / ".aletheia" / "status").read_text().startswith("version:")
    assert (mount.path / ".aletheia" / "import").read_text() == ""


def test_status_lifecycle_keeps_exit_code_consistent(run):
    def state():
        j = read_json(run / "run.json")
        return j["status"], j["exit_code"], j["ended"] is not None, len(j["resumed"])
    assert state() == ("running", None, False, 0)
    (run / "status").write_text("failed 7\n")
    assert state() == ("failed", 7, True, 0)
    (run / "status").write_text("running\n")      # a resume
    assert state() == ("running", None, False, 1)
    (run / "params" / "after_resume").write_text("1\n")
    (run / "status").write_text("finished\n")
    assert state() == ("finished", 0, True, 1)
    (run / "status").write_text("killed\n")
    assert state() == ("killed", None, True, 1)
    assert close_error(run / "status", "running 3\n") == errno.EINVAL
    # refused by the write() itself, as every other bad status (README "Run lifecycle"): a shell's
    # `echo 'running 3' > status` says so; before, only the close() failed and the shell said nothing
    r = sh("echo 'running 3' > status", cwd=run, check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr, r.stderr
    fd = os.open(run / "status", os.O_WRONLY | os.O_TRUNC)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"running 3\n")
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert state() == ("killed", None, True, 1)


def test_a_dataset_has_a_description_and_any_data_file_name(mount):
    d = mount.path / "p" / "datasets" / "d"
    os.makedirs(d)
    sh(f"echo 'MNIST, 60k train' > {d}/.description && echo data > {d}/description")
    assert read_json(d / ".dataset.json")["description"] == "MNIST, 60k train"
    assert (d / ".description").read_text() == "MNIST, 60k train\n"
    assert (d / "description").read_text() == "data\n"
    assert read_json(d / ".dataset.json")["files"] == 1
