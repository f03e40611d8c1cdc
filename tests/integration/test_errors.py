# aletheia integration tests: bad names, deleting, metadata JSON, renames
# (README "The tree", "Editing values in place", "Deleting and renaming").
import errno
import json
import os

import pytest

from alutil import dump_tree, mkrun, read_json, sh, try_write


@pytest.mark.parametrize("where", ["", "p/experiments", "p/experiments/e/runs", "p/datasets"])
def test_reserved_name(mount, where):
    mkrun(mount)
    with pytest.raises(OSError) as ei:
        os.mkdir(mount.path / where / "__x__")
    assert ei.value.errno == errno.EINVAL
    assert not (mount.path / where / "__x__").exists()
    r = sh(f"mkdir '{mount.path / where}/__reserved__'", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr


def test_long_names(mount):
    mkrun(mount)
    with pytest.raises(OSError) as ei:
        os.mkdir(mount.path / ("n" * 1600))
    assert ei.value.errno == errno.ENAMETOOLONG
    # long but valid UTF-8 names work (the kernel caps one FUSE name at 1024 bytes)
    name = "é" * 500
    os.mkdir(mount.path / "p/experiments" / name)
    assert name in os.listdir(mount.path / "p/experiments")
    assert (mount.path / "p/experiments" / name / "runs").is_dir()
    os.mkdir(mount.path / "p/experiments/e/runs/ünïcödé-run")
    assert read_json(mount.path / "p/experiments/e/runs/ünïcödé-run/run.json")["id"] == "ünïcödé-run"


def test_dot_names(mount):
    with pytest.raises(FileExistsError):
        os.mkdir(mount.path / ".")
    with pytest.raises(OSError):
        os.mkdir(mount.path / "..")


def test_rm_without_allow_delete(mount):
    run, done = mkrun(mount), mkrun(mount, "2")
    sh("echo 1 > params/a && echo 0.5 >> metrics/m && echo x > artifacts/f", cwd=run)
    sh("echo y > artifacts/g && echo finished > status", cwd=done)
    (mount.path / "p/datasets/d").mkdir()
    (mount.path / "p/datasets/d/f").write_text("data\n")
    before = dump_tree(mount.path)
    r = sh(f"rm -rf '{mount.path}/p'", check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    # a running run's artifacts/ is a working folder (README "artifacts"): its file went, nothing else
    after = dump_tree(mount.path)
    gone = {k for k in before if k.endswith("runs/1/artifacts/f")}
    assert len(gone) == 1 and not gone & after.keys()
    changed = {k for k in after if after[k] != before[k]}
    assert all(k.endswith("runs/1/run.json") for k in changed), changed
    for p, fn in ((done / "artifacts/g", os.unlink), (run / "metrics/m", os.unlink), (run / "params/a", os.unlink),
                  (mount.path / "p/datasets/d/f", os.unlink), (run, os.rmdir)):
        with pytest.raises(PermissionError) as ei:
            fn(p)
        assert ei.value.errno == errno.EPERM, p
    empty = mount.path / "p/experiments/empty"
    empty.mkdir()
    with pytest.raises(PermissionError):
        os.rmdir(empty / "runs")
    assert dump_tree(mount.path).keys() >= before.keys() - gone


def test_rm_with_allow_delete(mount_factory):
    m = mount_factory(extra=["--allow-delete"])
    run = mkrun(m)
    sh("echo 1 > params/a && echo 0.5 >> metrics/m && echo x > artifacts/f", cwd=run)
    (m.path / "p/datasets/d").mkdir()
    (m.path / "p/datasets/d/f").write_text("data\n")
    mkrun(m, "1", proj="q")
    os.unlink(run / "artifacts/f")
    assert not (run / "artifacts/f").exists()
    sh(f"rm -rf '{m.path}/p'")
    assert not (m.path / "p").exists()
    assert [n for n in os.listdir(m.path) if n != ".aletheia"] == ["q"]
    # gone for good: a new project with the same name starts empty
    mkrun(m)
    assert os.listdir(m.path / "p/experiments/e/runs/1/artifacts") == []
    assert read_json(m.path / "p/experiments/e/runs/1/run.json")["params"] == {}


def test_metadata_round_trip(mount):
    os.mkdir(mount.path / "p")
    md = mount.path / "p/metadata"
    doc = {"owner": "ana", "tags": ["a", "b"], "n": 3, "nested": {"x": None, "ok": True}}
    (md / "info").write_text(json.dumps(doc))
    assert json.loads((md / "info").read_text()) == doc
    assert os.stat(md / "info").st_size == len((md / "info").read_bytes())
    sh(f"echo '{{\"v\": 2}}' > '{md}/info'")
    assert json.loads((md / "info").read_text()) == {"v": 2}
    assert os.listdir(md) == ["info"]


@pytest.mark.parametrize("bad", [b"{not json", b"", b'{"a": }', b"\xff\xfe"])
def test_metadata_invalid_json(mount, bad):
    os.mkdir(mount.path / "p")
    md = mount.path / "p/metadata"
    (md / "info").write_text('{"ok": 1}')
    e = try_write(md / "info", bad)
    # O_TRUNC with nothing written leaves the old content (README "Durability")
    expected = 0 if bad == b"" else errno.EINVAL
    assert e == expected, f"expected {errno.errorcode.get(expected, expected)}, got {errno.errorcode.get(e, e)}"
    assert json.loads((md / "info").read_text()) == {"ok": 1}
    e = try_write(md / "new", bad)
    assert e == errno.EINVAL, f"expected EINVAL, got {errno.errorcode.get(e, e)}"
    assert os.listdir(md) == ["info"]


def test_rename_rules(mount):
    r1, r2 = mkrun(mount, "1"), mkrun(mount, "2")
    sh("mkdir -p artifacts/d && echo a > artifacts/a.txt && echo b > artifacts/d/b.txt && "
       "echo 0.1 >> metrics/loss && echo 1 > params/p", cwd=r1)
    sh("mv artifacts/a.txt artifacts/renamed.txt && mv artifacts/d artifacts/d2", cwd=r1)
    assert (r1 / "artifacts/renamed.txt").read_text() == "a\n"
    assert not (r1 / "artifacts/a.txt").exists()
    assert (r1 / "artifacts/d2/b.txt").read_text() == "b\n"
    # replacing an existing artifact by rename (what rsync does)
    sh("echo new > artifacts/.tmp && mv artifacts/.tmp artifacts/renamed.txt", cwd=r1)
    assert (r1 / "artifacts/renamed.txt").read_text() == "new\n"
    runs = r1.parent
    for src, dst in ((runs / "1", runs / "9"), (r1 / "metrics/loss", r1 / "metrics/l2"),
                     (r1 / "params/p", r1 / "params/q"), (mount.path / "p", mount.path / "p2"),
                     (r1 / "run.json", r1 / "artifacts/run.json")):
        with pytest.raises(OSError) as ei:
            os.rename(src, dst)
        assert ei.value.errno in (errno.EPERM, errno.EXDEV), (src, dst, ei.value)
    with pytest.raises(PermissionError):
        os.rename(runs / "1", runs / "9")
    r = sh(f"mv '{runs}/2' '{runs}/3'", check=False)
    assert r.returncode != 0
    assert sorted(os.listdir(runs)) == ["1", "2"]
    # across runs: EXDEV (mv would copy), never a silent move
    with pytest.raises(OSError) as ei:
        os.rename(r1 / "artifacts/renamed.txt", r2 / "artifacts/x.txt")
    assert ei.value.errno in (errno.EXDEV, errno.EPERM)
    assert (r1 / "artifacts/renamed.txt").exists()
    # not in a finished run
    sh("echo finished > status", cwd=r1)
    with pytest.raises(OSError) as ei:
        os.rename(r1 / "artifacts/renamed.txt", r1 / "artifacts/again.txt")
    assert ei.value.errno in (errno.EPERM, errno.EROFS)


def test_rm_of_a_metric_deletes_its_points_with_allow_delete(mount_factory):
    """README "Deleting and renaming": with --allow-delete, `rm metrics/<name>` deletes the metric
    (its points, its runs.csv column and plot), also after a remount; the other metrics stay."""
    m = mount_factory(extra=["--allow-delete"])
    run = mkrun(m)
    sh("printf '1\\n2\\n' >> metrics/loss && mkdir -p metrics/val && printf '3\\n' >> metrics/val/acc && echo 0.5 >> metrics/lr",
       cwd=run)
    os.unlink(run / "metrics" / "loss")
    os.unlink(run / "metrics" / "val" / "acc")
    assert sorted(os.listdir(run / "metrics")) == ["lr", "val"]   # the folder mkdir made stays
    assert os.listdir(run / "metrics" / "val") == []
    exp = run.parent.parent
    header = (exp / "runs.csv").read_text().splitlines()[0]
    assert "metric.loss" not in header and "metric.lr" in header
    assert not (exp / "plots" / "loss.svg").exists()
    with pytest.raises(FileNotFoundError):
        os.unlink(run / "metrics" / "loss")
    # a new metric of the same name starts empty
    sh("echo 7 >> metrics/loss", cwd=run)
    assert [ln.split()[1] for ln in (run / "metrics" / "loss").read_text().splitlines()] == ["7"]
    m.remount()
    assert sorted(os.listdir(run / "metrics")) == ["loss", "lr"]
    assert [ln.split()[1] for ln in (run / "metrics" / "loss").read_text().splitlines()] == ["7"]
