# aletheia integration tests: the seed tracker's Python API (python/, README "Python API"), installed
# with pip offline and driven against a real mount, the seed README's example included.
import json
import os
import pathlib
import shutil
import subprocess
import textwrap

import pytest

from alutil import PY, env_for, points, read_json

SRC = pathlib.Path(__file__).resolve().parents[2] / "python"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package as a user installs it: pip, offline, no build isolation (Debian's setuptools),
    into a target folder (the system Python is externally managed)."""
    if subprocess.run([PY, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        pytest.skip("pip is missing for /usr/bin/python3 (apt-get install python3-pip)")
    root = tmp_path_factory.mktemp("pyapi")
    src = root / "src"
    shutil.copytree(SRC, src)   # setuptools writes its egg-info beside the sources
    target = root / "site"
    r = subprocess.run([PY, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                        "--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (target / "aletheia" / "__init__.py").exists()
    return target


def python(code, m, site, cwd):
    env = env_for(m, {"PYTHONPATH": str(site)})
    return subprocess.run([PY, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_the_package_uses_only_the_standard_library(installed):
    text = (installed / "aletheia" / "__init__.py").read_text()
    imports = {l.split()[1].split(".")[0] for l in text.splitlines() if l.startswith(("import ", "from "))}
    assert imports <= {"errno", "json", "math", "os", "secrets", "shutil"}, imports
    assert json.loads("{}") == {}   # and nothing but pip and setuptools installed it (fixture)


# The seed's README example (/work/shared/SEED.md, "Usage"), adapted only in its imports and paths;
# what it leaves undefined (local_cache_dir, hp, value, and its `expr` and `ex`, the seed's own
# slips for `exper` and `run`) is bound before and inside it.
SEED_EXAMPLE = '''
from aletheia import Metastore
import tempfile

local_cache_dir = tempfile.mkdtemp()
class HP:
    def to_dict(self):
        return {"lr": 0.001, "depth": 50, "opt": {"name": "adam", "beta1": 0.9}, "aug": True}
hp = HP()
value = 0.93

ms = Metastore("alethea-fcf82")
ms.set_downloader(local_cache_dir)
exper = ms.exper("exper Name", debug=False, auto_inc_ids=True)
expr = exper
exper.desc = "Description / notes etc"
with expr.start_run(fold=1) as run:
    ex = run
    run.set_fold()

    ds = run.get_dataset("ds_name", download=True) #this will register use of dataset
    #for now lets keep fold splitting etc external i.e just download the file to the cache
    path_to_data = ds.local_path

    #Make hyper parmas etc
    run.set_model()
    run.set_hyper_params(hp.to_dict())
    ex.add_artifact("name", "path/to/artifact", is_local=True, is_dir=True, upload_file=True)
    ex.add_metric("name", value)
print(run.path)
print(path_to_data)
'''


def test_seed_readme_example(mount, installed, tmpdir_al):
    ds = mount.path / "alethea-fcf82/datasets/ds_name"
    os.makedirs(ds)
    (ds / "train.csv").write_text("x,y\n1,2\n")
    art = tmpdir_al / "path/to/artifact"
    os.makedirs(art / "sub")
    (art / "weights.bin").write_bytes(os.urandom(50000))
    (art / "sub/config.json").write_text('{"k": 1}\n')
    r = python(SEED_EXAMPLE, mount, installed, tmpdir_al)
    assert r.returncode == 0, r.stderr
    exp = mount.path / "alethea-fcf82/experiments/exper Name"
    run = exp / "runs/1"
    assert r.stdout.splitlines() == [str(run), str(ds)]
    assert (exp / "description").read_text() == "Description / notes etc\n"
    j = read_json(run / "run.json")
    assert j["status"] == "finished" and j["exit_code"] == 0 and j["fold"] == 1
    assert j["params"] == {"lr": 0.001, "depth": 50, "opt": {"name": "adam", "beta1": 0.9}, "aug": True}
    assert [v for _, v, _ in points(run / "metrics/name")] == ["0.93"]
    assert j["metrics"]["name"]["last"] == 0.93
    assert (run / "artifacts/name/weights.bin").read_bytes() == (art / "weights.bin").read_bytes()
    assert (run / "artifacts/name/sub/config.json").read_text() == '{"k": 1}\n'
    assert j["artifacts"]["count"] == 2
    assert os.readlink(run / "datasets/ds_name") == str(ds)
    version = read_json(ds / ".dataset.json")["version"]
    assert j["datasets"] == [{"name": "ds_name", "dataset": "ds_name", "version": version}]
    rows = (exp / "runs.csv").read_text().splitlines()
    assert rows[1].startswith("1,finished,1,")


def test_runs_end_failed_on_an_exception_and_ids(mount, installed, tmpdir_al):
    r = python('''
        import os
        from aletheia import Metastore
        ms = Metastore("p")
        e = ms.exper("e")
        with e.start_run(fold=0, model="mlp") as run:
            run.set_model()
            run.add_metric("val/loss", 0.5, step=10)
            run.add_metric("val/loss", float("nan"))
            run.add_metric("acc", 1)
        try:
            with e.start_run() as run2:
                run2.add_metric("loss", 2.5)
                raise RuntimeError("diverged")
        except RuntimeError:
            pass
        with e.start_run() as run3:              # a status set in the block stays
            run3.set_status("killed")
        try:
            with e.start_run() as run4:          # Ctrl-C: killed, not failed
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
        rnd = ms.exper("e2", auto_inc_ids=False).start_run()
        rnd.set_hyper_params({"lr": 1e-3})
        rnd.set_hyper_params({"wd": 0})
        print(e.runs(), rnd.id, rnd.params, e.desc == "")
        ''', mount, installed, tmpdir_al)
    assert r.returncode == 0, r.stderr
    runs, rid, rest = r.stdout.split("] ", 1)[0] + "]", *r.stdout.split("] ", 1)[1].split(" ", 1)
    assert runs == "['1', '2', '3', '4']"
    e = mount.path / "p/experiments/e/runs"
    j1, j2 = read_json(e / "1/run.json"), read_json(e / "2/run.json")
    assert j1["status"] == "finished" and j1["model"] == "mlp" and j1["fold"] == 0
    assert [(s, v) for s, v, _ in points(e / "1/metrics/val/loss")] == [(10, "0.5"), (11, "nan")]
    assert [v for _, v, _ in points(e / "1/metrics/acc")] == ["1"]
    assert j2["status"] == "failed" and j2["metrics"]["loss"]["last"] == 2.5
    # a tester's set_status("killed") in the block came out "finished", and Ctrl-C "failed"
    assert read_json(e / "3/run.json")["status"] == "killed"
    assert read_json(e / "4/run.json")["status"] == "killed"
    assert len(rid) == 20 and (mount.path / "p/experiments/e2/runs" / rid).is_dir()
    assert read_json(mount.path / "p/experiments/e2/runs" / rid / "run.json")["status"] == "running"
    assert rest.strip() == "{'lr': 0.001, 'wd': 0} True"


def test_errors_are_python_exceptions(mount, installed, tmpdir_al):
    r = python('''
        import os
        from aletheia import Metastore
        ms = Metastore("p")
        run = ms.exper("e").start_run()
        for call, args in ((run.get_dataset, ("missing",)), (run.add_metric, ("loss", "high"))):
            try:
                call(*args)
                print("no error", call.__name__)
            except (OSError, ValueError) as e:
                print(type(e).__name__)
        for where in ("/nonexistent/mount", os.getcwd()):   # missing, and a plain folder
            try:
                Metastore("p", mount=where)
            except FileNotFoundError as e:
                print("nomount", "ALETHEIA_MOUNT" in str(e))
        run.set_status("finished")
        try:
            run.add_metric("loss", 1)
        except OSError as e:
            print("ended", e.errno)
        ''', mount, installed, tmpdir_al)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:5] == ["FileNotFoundError", "ValueError", "nomount True", "nomount True",
                                        "ended 30"], r.stdout
    assert not (tmpdir_al / "p").exists()
