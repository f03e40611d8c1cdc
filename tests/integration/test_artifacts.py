# aletheia integration tests: artifacts/ of runs and experiments (README "artifacts").
import hashlib
import mmap
import os

from alutil import PY, blob_files, count_blobs, mkrun, read_json, sh


def make_tree(root):
    """A small source tree: nested folders, an empty file, an empty folder, a 5 MiB random file."""
    (root / "a/b/c").mkdir(parents=True)
    (root / "emptydir").mkdir()
    (root / "top.txt").write_text("top level\n")
    (root / "a/mid.json").write_text('{"k": 1}\n')
    (root / "a/b/c/deep.txt").write_text("deep\n" * 100)
    (root / "a/b/empty").write_bytes(b"")
    (root / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024))
    return root


def tree_sums(root):
    """(sorted dirs, {file: sha256}) relative to root, via find and sha256sum as a user would."""
    dirs = sh(f"cd '{root}' && find . -mindepth 1 -type d | sort").stdout.split()
    sums = {}
    out = sh(f"cd '{root}' && find . -type f -print0 | sort -z | xargs -0 -r sha256sum").stdout
    for line in out.splitlines():
        h, name = line.split(None, 1)
        sums[name] = h
    return dirs, sums


def test_cp_r_tree(run, mount):
    src = make_tree(mount.root / "src")
    sh(f"cp -r '{src}' '{run}/artifacts/'")
    assert tree_sums(run / "artifacts/src") == tree_sums(src)
    assert os.stat(run / "artifacts/src/big.bin").st_size == 5 * 1024 * 1024
    assert os.stat(run / "artifacts/src/a/b/empty").st_size == 0
    with open(run / "artifacts/src/big.bin", "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
        assert hashlib.sha256(mm).hexdigest() == hashlib.sha256((src / "big.bin").read_bytes()).hexdigest()
    a = read_json(run / "run.json")["artifacts"]
    assert a["count"] == 5
    assert a["bytes"] == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())


def test_rsync_a_tree(run, mount):
    src = make_tree(mount.root / "src")
    r = sh(f"rsync -a '{src}/' '{run}/artifacts/out/'")
    assert r.returncode == 0
    assert tree_sums(run / "artifacts/out") == tree_sums(src)
    # a second rsync with a changed file replaces it (write-to-temp then rename)
    (src / "top.txt").write_text("changed\n")
    sh(f"rsync -a '{src}/' '{run}/artifacts/out/'")
    assert (run / "artifacts/out/top.txt").read_text() == "changed\n"
    assert tree_sums(run / "artifacts/out") == tree_sums(src)
    leftovers = [n for n in sh(f"find '{run}/artifacts/out'").stdout.split() if "/." in n]
    assert leftovers == []


def test_overwrite_while_running(run):
    sh("echo first > artifacts/f.txt", cwd=run)
    sh("echo second-version > artifacts/f.txt", cwd=run)
    assert (run / "artifacts/f.txt").read_text() == "second-version\n"
    assert os.stat(run / "artifacts/f.txt").st_size == len("second-version\n")
    with open(run / "artifacts/f.txt", "wb") as f:
        f.write(b"x" * 10)
    assert (run / "artifacts/f.txt").read_bytes() == b"x" * 10
    # append and partial overwrite behave like an ordinary file
    with open(run / "artifacts/f.txt", "ab") as f:
        f.write(b"yz")
    with open(run / "artifacts/f.txt", "r+b") as f:
        f.seek(2)
        f.write(b"AB")
    assert (run / "artifacts/f.txt").read_bytes() == b"xxABxxxxxxyz"


def test_identical_content_stored_once(mount):
    r1 = mkrun(mount, "1")
    r2 = mkrun(mount, "2")
    other = mkrun(mount, "1", exp="e2")
    data = os.urandom(1024 * 1024 + 17)
    src = mount.root / "model.bin"
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    n0 = count_blobs(mount.blobs)
    sh(f"cp '{src}' '{r1}/artifacts/model.bin'")
    mount.wait_idle()
    n1 = count_blobs(mount.blobs)
    assert n1 == n0 + 1, f"blob files {n0} -> {n1} after one new artifact"
    sh(f"cp '{src}' '{r2}/artifacts/model.bin' && mkdir '{other}/artifacts/sub' && "
       f"cp '{src}' '{other}/artifacts/sub/m.bin' && cp '{src}' '{mount.path}/p/experiments/e/artifacts/best.bin'")
    mount.wait_idle()
    assert count_blobs(mount.blobs) == n1
    same = [p for p in blob_files(mount.blobs) if p.stat().st_size == len(data) and
            hashlib.sha256(p.read_bytes()).hexdigest() == digest]
    assert len(same) == 1, same
    for p in (r1 / "artifacts/model.bin", r2 / "artifacts/model.bin", other / "artifacts/sub/m.bin"):
        assert hashlib.sha256(p.read_bytes()).hexdigest() == digest


def test_experiment_artifacts(mount):
    mkrun(mount)
    ea = mount.path / "p/experiments/e/artifacts"
    src = make_tree(mount.root / "src")
    sh(f"cp -r '{src}' '{ea}/' && echo summary > '{ea}/report.txt'")
    assert tree_sums(ea / "src") == tree_sums(src)
    assert (ea / "report.txt").read_text() == "summary\n"
    assert sorted(os.listdir(ea)) == ["report.txt", "src"]


def test_an_artifact_deleted_while_open_keeps_its_bytes_when_its_name_is_made_again(run):
    # A running run's artifacts/ is a working folder (README "artifacts"): rm, then a new file of
    # the name, while a reader holds the old one; as on a local disk the reader keeps the old file.
    f = run / "artifacts/log.txt"
    f.write_bytes(b"old-bytes\n")
    with open(f, "rb") as old:
        old_ino = os.fstat(old.fileno()).st_ino
        os.unlink(f)
        f.write_bytes(b"NEW\n")
        assert f.read_bytes() == b"NEW\n"
        assert os.stat(f).st_ino != old_ino
        assert os.fstat(old.fileno()).st_size == 10
        assert old.read() == b"old-bytes\n"
    assert f.read_bytes() == b"NEW\n"


def test_symlinks_in_artifacts(run, mount):
    # README "artifacts": symbolic links are kept as links (a checkpoint folder's `latest`, a
    # virtualenv's bin/python). Before, `cp -a` and `rsync -a` of such a folder failed on each link
    # with EPERM ("links go only in a run's datasets/ folder").
    src = mount.root / "ck"
    (src / "step-1").mkdir(parents=True)
    (src / "step-2").mkdir()
    (src / "step-1/w.bin").write_bytes(b"one")
    (src / "step-2/w.bin").write_bytes(b"two")
    os.symlink("step-2", src / "latest")
    os.symlink("/no/such/place", src / "dangling")
    os.symlink("step-2/w.bin", src / "weights")

    def links(root):
        out = sh(f"cd '{root}' && find . -type l -printf '%p -> %l\\n' | sort").stdout
        return out.splitlines()

    for how, dst in (("cp -a", "cp"), ("rsync -a", "rsync")):
        r = sh(f"{how} '{src}/.' '{run}/artifacts/{dst}/'" if how == "cp -a" else
               f"{how} '{src}/' '{run}/artifacts/{dst}/'", check=False)
        assert r.returncode == 0, r.stderr
        assert links(run / "artifacts" / dst) == links(src), how
        assert tree_sums(run / "artifacts" / dst) == tree_sums(src), how
        assert (run / "artifacts" / dst / "latest/w.bin").read_bytes() == b"two"
        assert (run / "artifacts" / dst / "weights").read_bytes() == b"two"
        assert not (run / "artifacts" / dst / "dangling").exists()
    # a second rsync changes nothing; ln -sfn points the link elsewhere; rm and mv work
    r = sh(f"rsync -a '{src}/' '{run}/artifacts/rsync/'", check=False)
    assert r.returncode == 0, r.stderr
    a = run / "artifacts/cp"
    sh("ln -sfn step-1 latest && mv weights w && rm dangling", cwd=a)
    assert os.readlink(a / "latest") == "step-1" and (a / "latest/w.bin").read_bytes() == b"one"
    assert sorted(os.listdir(a)) == ["latest", "step-1", "step-2", "w"]
    assert os.lstat(a / "w").st_size == len("step-2/w.bin")
    assert read_json(run / "run.json")["artifacts"]["count"] == 4   # files only
    # a virtual environment made in place
    r = sh("/usr/bin/python3 -m venv --without-pip venv && venv/bin/python -c 'import sys; print(sys.prefix)'",
           cwd=run / "artifacts", check=False)
    assert r.returncode == 0 and r.stdout.strip() == str(run / "artifacts/venv"), r.stderr
    mount.remount()
    assert os.readlink(a / "latest") == "step-1"
    assert links(run / "artifacts/rsync") == links(src)
    # an ended run's artifacts/ takes no new link
    sh("echo finished > status", cwd=run)
    r = sh("ln -s step-1 other", cwd=a, check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr


def test_an_artifacts_executable_bit_is_kept(run, mount):
    # README "artifacts": chmod +x of an artifact is kept (a script saved to rerun the training).
    # Before, every chmod succeeded without a change: cp -a of a script made it 0644 and running
    # it failed with EACCES.
    src = mount.root / "tools"
    src.mkdir()
    (src / "run.sh").write_text("#!/bin/sh\necho ran \"$@\"\n")
    (src / "run.sh").chmod(0o755)
    (src / "notes.txt").write_text("n\n")
    sh(f"cp -a '{src}' artifacts/ && rsync -a '{src}/' artifacts/r/", cwd=run)
    for d in ("tools", "r"):
        assert os.stat(run / "artifacts" / d / "run.sh").st_mode & 0o777 == 0o755, d
        assert os.stat(run / "artifacts" / d / "notes.txt").st_mode & 0o777 == 0o644, d
        assert sh(f"./artifacts/{d}/run.sh a b", cwd=run).stdout == "ran a b\n"
    sh("chmod -x artifacts/r/run.sh", cwd=run)
    assert sh("./artifacts/r/run.sh", cwd=run, check=False).returncode == 126
    # kept by a rewrite in place (an editor), a rename, a remount
    sh("chmod u+x artifacts/r/run.sh && echo 'echo v2' >> artifacts/tools/run.sh && "
       "mv artifacts/tools/run.sh artifacts/tools/go.sh", cwd=run)
    mount.remount()
    assert os.stat(run / "artifacts/r/run.sh").st_mode & 0o777 == 0o755
    assert sh("./artifacts/tools/go.sh", cwd=run).stdout == "ran\nv2\n"
    # a new file takes the x of its creation's mode: cp (no chmod when the umask allows the
    # mode), git's checkout (a tester found `git status` showing run.sh modified after a clone)
    sh(f"cp '{src}/run.sh' artifacts/plain.sh && cp '{src}/notes.txt' artifacts/plain.txt", cwd=run)
    assert os.stat(run / "artifacts/plain.sh").st_mode & 0o777 == 0o755
    assert os.stat(run / "artifacts/plain.txt").st_mode & 0o777 == 0o644
    g = mount.root / "gsrc"
    sh(f"git init -q '{g}' && cp '{src}/run.sh' '{src}/notes.txt' '{g}/' && cd '{g}' && git add . && "
       "git -c user.email=a@b -c user.name=n commit -qm c")
    sh(f"git clone -q '{g}' artifacts/repo", cwd=run)
    assert sh("git status --porcelain", cwd=run / "artifacts/repo").stdout == ""
    # only artifacts: a dataset's files stay 0444
    os.makedirs(mount.path / "p/datasets/d")
    sh(f"cp '{src}/run.sh' '{mount.path}/p/datasets/d/'")
    assert os.stat(mount.path / "p/datasets/d/run.sh").st_mode & 0o777 == 0o444
    # an experiment's artifacts/ takes new executables while no run runs; modes change there as
    # times do (install -m and shutil.copy set them after the close: a tester found them failing
    # with EPERM, the new file left 0644 and undeletable)
    sh("echo finished > status", cwd=run)
    ea = run.parent.parent / "artifacts"
    sh(f"cp -a '{src}/run.sh' '{ea}/' && install -m 755 '{src}/notes.txt' '{ea}/inst.sh' && "
       f"{PY} -c 'import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])' '{src}/run.sh' '{ea}/sc.sh'")
    for name in ("run.sh", "inst.sh", "sc.sh"):
        assert os.stat(ea / name).st_mode & 0o777 == 0o755, name
    sh(f"chmod -x '{ea}/run.sh'")
    assert os.stat(ea / "run.sh").st_mode & 0o777 == 0o644
    # an ended run's are read-only: chmod changes nothing there
    r = sh("chmod -x artifacts/r/run.sh", cwd=run, check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
