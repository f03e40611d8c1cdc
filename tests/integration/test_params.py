# aletheia integration tests: params/<key> and params.json (README "params").
import errno
import json
import os

import pytest

from alutil import PY, mkrun, read_json, sh, try_write


def test_param_types_from_shell(run):
    sh("echo 0.001 > params/lr && echo 32 > params/batch && echo true > params/flag && "
       "echo false > params/off && echo '{\"depth\": 3, \"act\": \"relu\"}' > params/arch && "
       "echo '[1, 2, 3]' > params/sizes && echo adam > params/opt && printf 'two words' > params/s && "
       "printf 'line1\\nline2\\n' > params/multi", cwd=run)
    p = read_json(run / "params.json")
    assert p["lr"] == 0.001 and type(p["lr"]) is float
    assert p["batch"] == 32 and type(p["batch"]) is int
    assert p["flag"] is True and p["off"] is False
    assert p["arch"] == {"depth": 3, "act": "relu"}
    assert p["sizes"] == [1, 2, 3]
    assert p["opt"] == "adam"
    assert p["s"] == "two words"
    assert p["multi"] == "line1\nline2"
    assert set(p) == {"lr", "batch", "flag", "off", "arch", "sizes", "opt", "s", "multi"}
    assert sorted(os.listdir(run / "params")) == sorted(p)
    # run.json carries the same params
    assert read_json(run / "run.json")["params"] == p


def test_param_read_back(run):
    sh("echo 0.001 > params/lr && echo 32 > params/batch && echo true > params/flag && "
       "echo adam > params/opt && printf 'no newline' > params/s && echo '{\"a\": 1}' > params/obj", cwd=run)
    assert (run / "params/lr").read_text() == "0.001\n"
    assert (run / "params/batch").read_text() == "32\n"
    assert (run / "params/flag").read_text() == "true\n"
    assert (run / "params/opt").read_text() == "adam\n"
    assert (run / "params/s").read_text() == "no newline\n"
    obj = (run / "params/obj").read_text()
    assert obj.endswith("\n") and json.loads(obj) == {"a": 1}
    assert sh("cat params/lr", cwd=run).stdout == "0.001\n"
    for k in ("lr", "batch", "flag", "opt", "s", "obj"):
        assert os.stat(run / "params" / k).st_size == len((run / "params" / k).read_bytes()), k


def test_param_from_python_and_rewrite(run):
    sh(f"{PY} -c \"open('params/lr', 'w').write('0.1')\"", cwd=run)
    assert read_json(run / "params.json")["lr"] == 0.1
    with open(run / "params/lr", "w") as f:
        f.write("0.01\n")
    assert read_json(run / "params.json")["lr"] == 0.01
    assert (run / "params/lr").read_text() == "0.01\n"


def test_params_json_write_sets_keys(run):
    sh("echo 0.001 > params/lr", cwd=run)
    sh("echo '{\"x\": 2, \"y\": \"s\", \"z\": 1.5, \"w\": false}' > params.json", cwd=run)
    p = read_json(run / "params.json")
    assert p == {"lr": 0.001, "x": 2, "y": "s", "z": 1.5, "w": False}
    assert (run / "params/x").read_text() == "2\n"
    assert (run / "params/y").read_text() == "s\n"
    assert (run / "params/w").read_text() == "false\n"
    with open(run / "params.json", "w") as f:
        json.dump({"x": 3}, f)
    assert read_json(run / "params.json")["x"] == 3


@pytest.mark.parametrize("bad", [b"{bad json", b"[1, 2]", b'"just a string"', b'{"a": 1'])
def test_params_json_invalid(run, bad):
    sh("echo 0.001 > params/lr", cwd=run)
    before = (run / "params.json").read_bytes()
    e = try_write(run / "params.json", bad)
    assert e == errno.EINVAL, f"expected EINVAL on write/close, got {errno.errorcode.get(e, e)}"
    # Python's buffered file: the error surfaces from close() as an OSError with errno EINVAL
    with pytest.raises(OSError) as ei:
        with open(run / "params.json", "w") as f:
            f.write(bad.decode())
    assert ei.value.errno == errno.EINVAL
    assert (run / "params.json").read_bytes() == before
    assert os.listdir(run / "params") == ["lr"]


def test_param_subkey(run):
    sh("mkdir -p params/opt && echo 0.9 > params/opt/beta1 && echo sgd > params/opt/name && echo 1 > params/top",
       cwd=run)
    p = read_json(run / "params.json")
    assert p == {"opt/beta1": 0.9, "opt/name": "sgd", "top": 1}
    assert (run / "params/opt/beta1").read_text() == "0.9\n"
    assert sorted(os.listdir(run / "params/opt")) == ["beta1", "name"]
    # params.json with a slashed key shows up as a sub-folder file
    sh("echo '{\"sched/gamma\": 0.5}' > params.json", cwd=run)
    assert (run / "params/sched/gamma").read_text() == "0.5\n"


def test_a_param_files_text_copied_to_another_run_is_the_same_value(mount):
    # `cat a/params/k > b/params/k` copies the value exactly, type included (README "params"):
    # a tester found -0.0 read as "-0", which is written back as the integer 0.
    a, b = mkrun(mount, "a"), mkrun(mount, "b")
    texts = {"negzero": "-0.0", "zero": "0.0", "whole": "32.0", "sum": "0.30000000000000004",
             "tiny": "5e-324", "big": "1.7976931348623157e308", "nan": "nan", "ninf": "-inf",
             "int": "-7", "huge": "1e400", "s": "adam", "list": "[64, 32]"}
    for k, t in texts.items():
        (a / "params" / k).write_text(t + "\n")
    for k in texts:
        sh(f"cat {a}/params/{k} > {b}/params/{k}")
    ja, jb = (json.loads((r / "params.json").read_text()) for r in (a, b))
    for k in texts:
        assert repr(ja[k]) == repr(jb[k]), k    # repr: -0.0 and 0 differ, as do 32 and 32.0
    assert (a / "params/negzero").read_text() == "-0.0\n"
    assert repr(jb["negzero"]) == "-0.0"
