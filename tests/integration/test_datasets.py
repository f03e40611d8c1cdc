# aletheia integration tests: datasets/ (write-once files, versions, run links) (README "datasets").
import errno
import os
import re
import subprocess
import time

import pytest

from alutil import FIRESTORE, REMOTE, RFC3339, mkrun, read_json, sh, sha256, status

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def run_datasets(run):
    """run.json's datasets as {name: version}, whether stored as a list or an object."""
    ds = read_json(run / "run.json")["datasets"]
    if isinstance(ds, dict):
        return {k: (v["version"] if isinstance(v, dict) else v) for k, v in ds.items()}
    return {d["name"]: d["version"] for d in ds}


@pytest.fixture
def dataset(mount):
    mkrun(mount)
    d = mount.path / "p/datasets/mnist"
    d.mkdir()
    return d


def test_copy_in_and_read_back(dataset, mount):
    src = mount.root / "train.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    sh(f"cp '{src}' '{dataset}/'")
    assert sha256(dataset / "train.bin") == sha256(src)
    assert os.stat(dataset / "train.bin").st_size == src.stat().st_size
    assert sh(f"sha256sum < '{dataset}/train.bin'").stdout.split()[0] == sha256(src)
    # a second read (served from the cache) gives the same bytes
    assert sha256(dataset / "train.bin") == sha256(src)


def test_dataset_json(dataset, mount):
    assert sorted(os.listdir(dataset)) in ([], [".dataset.json", ".description"])
    (mount.root / "a.csv").write_text("x,y\n1,2\n")
    sh(f"cp '{mount.root}/a.csv' '{dataset}/'")
    j1 = read_json(dataset / ".dataset.json")
    assert HEX32.match(j1["version"]), j1
    assert j1["files"] == 1 and j1["bytes"] == 8
    assert RFC3339.match(j1["created"]), j1["created"]
    assert "description" in j1
    raw = (dataset / ".dataset.json").read_bytes()
    assert os.stat(dataset / ".dataset.json").st_size == len(raw)
    assert os.stat(dataset / ".dataset.json").st_mode & 0o222 == 0
    sh(f"mkdir '{dataset}/sub' && printf 12345 > '{dataset}/sub/b.txt'")
    j2 = read_json(dataset / ".dataset.json")
    assert j2["files"] == 2 and j2["bytes"] == 13
    assert HEX32.match(j2["version"]) and j2["version"] != j1["version"]
    assert j2["created"] == j1["created"]
    # reading changes nothing
    assert read_json(dataset / ".dataset.json") == j2


def test_same_content_same_version(mount):
    mkrun(mount)
    versions = []
    for name in ("d1", "d2"):
        d = mount.path / "p/datasets" / name
        d.mkdir()
        (d / "f.txt").write_text("same\n")
        versions.append(read_json(d / ".dataset.json")["version"])
    assert versions[0] == versions[1]


def test_write_once(dataset):
    f = dataset / "x.txt"
    f.write_text("original\n")
    with pytest.raises(PermissionError) as ei:
        open(f, "wb")
    assert ei.value.errno == errno.EPERM
    r = sh(f"echo x > '{f}'", check=False)
    assert r.returncode != 0
    r = sh(f"echo x >> '{f}'", check=False)
    assert r.returncode != 0
    assert f.read_text() == "original\n"
    assert read_json(dataset / ".dataset.json")["files"] == 1


def test_rsync_into_dataset(dataset, mount):
    src = mount.root / "src"
    (src / "images").mkdir(parents=True)
    for i in range(5):
        (src / "images" / f"{i}.png").write_bytes(os.urandom(1000 + i))
    (src / "labels.csv").write_text("0,1\n")
    sh(f"rsync -a '{src}/' '{dataset}/'")
    for p in src.rglob("*"):
        if p.is_file():
            assert sha256(dataset / p.relative_to(src)) == sha256(p), p
    j = read_json(dataset / ".dataset.json")
    assert j["files"] == 6
    assert not [n for n in os.listdir(dataset / "images") if n.startswith(".")]


@pytest.mark.parametrize("absolute", [False, True])
def test_run_links_dataset(dataset, mount, absolute):
    run = mount.path / "p/experiments/e/runs/1"
    (dataset / "data.txt").write_text("payload\n")
    v1 = read_json(dataset / ".dataset.json")["version"]
    # the link lives in p/experiments/e/runs/1/datasets/: five levels up is the project
    target = str(dataset) if absolute else "../../../../../datasets/mnist"
    link = run / "datasets/mnist"
    os.symlink(target, link)
    assert link.is_symlink()
    got = os.readlink(link)
    assert os.path.realpath(os.path.join(link.parent, got)) == str(dataset)
    assert os.path.realpath(link) == str(dataset)
    assert (link / "data.txt").read_text() == "payload\n"
    assert sh(f"cat '{link}/data.txt'").stdout == "payload\n"
    assert run_datasets(run) == {"mnist": v1}
    # a later file makes a new dataset version; the run keeps the version it used
    (dataset / "more.txt").write_text("more\n")
    assert read_json(dataset / ".dataset.json")["version"] != v1
    assert run_datasets(run) == {"mnist": v1}


def test_link_from_shell(dataset, mount):
    run = mount.path / "p/experiments/e/runs/1"
    (dataset / "data.txt").write_text("payload\n")
    sh("ln -s ../../../../../datasets/mnist datasets/mnist", cwd=run)
    assert sh("readlink datasets/mnist", cwd=run).stdout.strip() in ("../../../../../datasets/mnist", str(dataset))
    assert sh("cat datasets/mnist/data.txt", cwd=run).stdout == "payload\n"
    assert "mnist" in run_datasets(run)


def test_rename_inside_dataset(dataset, mount):
    run = mount.path / "p/experiments/e/runs/1"
    (dataset / "a.txt").write_text("a\n")
    os.rename(dataset / "a.txt", dataset / "b.txt")
    assert (dataset / "b.txt").read_text() == "a\n" and not (dataset / "a.txt").exists()
    os.symlink(str(dataset), run / "datasets/mnist")
    with pytest.raises(PermissionError) as ei:
        os.rename(dataset / "b.txt", dataset / "c.txt")
    assert ei.value.errno == errno.EPERM
    assert (dataset / "b.txt").read_text() == "a\n"



def test_a_second_pass_over_a_datasets_files_looks_up_no_name_again(mount_factory):
    # A dataset's files are write-once: on a local store (no other writer) the kernel keeps
    # their names as long as their attributes, so a second epoch costs no LOOKUP per file, while
    # a delete, a rename and a new file of the same name through the mount still show at once
    # (README "datasets"). With Firestore another mount may delete one: looked up again.
    m = mount_factory(extra=("--allow-delete",))
    mkrun(m)
    d = m.path / "p/datasets/many"
    d.mkdir()
    names = [f"f{i}.bin" for i in range(5)]
    for n in names:
        (d / n).write_bytes(n.encode() * 100)
    # close() returns before the kernel's RELEASE reaches the daemon: until each file is recorded
    # a lookup answers from its writer (1 s entries); .dataset.json counts recorded files
    deadline = time.monotonic() + 30
    while read_json(d / ".dataset.json")["files"] < len(names):
        assert time.monotonic() < deadline, "the files were not recorded"
        time.sleep(0.05)
    time.sleep(1.2)   # past the 1 s entries the creates gave the kernel

    def one_pass():
        # opened from the folder's descriptor: no lookup of the folders above (1 s entries)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            st = status(m)   # documents_read: SQLite only
            before, docs = int(st["lookups"]), int(st.get("documents_read", 0))
            for n in names:
                fd = os.open(n, os.O_RDONLY, dir_fd=dfd)
                try:
                    assert os.read(fd, 4096) == n.encode() * 100
                finally:
                    os.close(fd)
            st = status(m)
            return int(st["lookups"]) - before, int(st.get("documents_read", 0)) - docs
        finally:
            os.close(dfd)

    assert one_pass()[0] >= len(names)
    time.sleep(1.2)
    again, docs = one_pass()
    if FIRESTORE:
        assert again >= len(names)
    else:
        assert again == 0
        # the records the first pass read are kept while nothing changed: no document read per
        # open (10 before: the file's record and its dataset's, each open)
        assert docs == 0
    # changes through the mount show at once all the same
    os.unlink(d / "f0.bin")
    assert not (d / "f0.bin").exists()
    os.rename(d / "f1.bin", d / "g1.bin")
    assert not (d / "f1.bin").exists()
    assert (d / "g1.bin").read_bytes() == b"f1.bin" * 100
    (d / "f0.bin").write_bytes(b"new content")
    assert (d / "f0.bin").read_bytes() == b"new content"
    assert os.stat(d / "f0.bin").st_size == len(b"new content")
    assert sorted(x for x in os.listdir(d) if not x.startswith(".")) == ["f0.bin", "f2.bin", "f3.bin", "f4.bin", "g1.bin"]


def test_listing_a_dataset_answers_the_lookups_and_opens_of_its_files(mount_factory):
    # `ls -l`, `find` or a loader that lists first: the listing read every file's record, so the
    # lookups and opens that follow read no document each (README "Reading datasets: prefetch"),
    # and what they show is what a lookup reads, also after a change through the mount.
    m = mount_factory(extra=("--allow-delete",))
    mkrun(m)
    d = m.path / "p/datasets/listed"
    d.mkdir()
    (d / "sub").mkdir()
    files = {f"f{i:02d}.bin": os.urandom(100 + i) for i in range(40)}
    files["sub/deep.bin"] = os.urandom(999)
    for n, data in files.items():
        (d / n).write_bytes(data)
    deadline = time.monotonic() + 30
    while read_json(d / ".dataset.json")["files"] < len(files):
        assert time.monotonic() < deadline, "the files were not recorded"
        time.sleep(0.05)
    m.umount()
    m = mount_factory(extra=("--allow-delete",))   # the same store, nothing kept in memory
    d = m.path / "p/datasets/listed"
    before = int(status(m).get("documents_read", 0))
    listed = sh(f"ls -l '{d}' '{d}/sub'").stdout
    for n, data in files.items():
        assert re.search(rf"\s{len(data)} .* {re.escape(n.split('/')[-1])}$", listed, re.M), listed
        assert (d / n).read_bytes() == data
    docs = int(status(m).get("documents_read", 0)) - before
    if not FIRESTORE:   # (documents_read: SQLite only) each record once by `ls`, once more by
        # the scan's listing where reads go through the cache (README "Reading datasets: prefetch")
        listings = 2 if REMOTE else 1
        assert docs < listings * len(files) + 15, \
            f"{docs} documents read for listings, lookups and opens of {len(files)} files"
    os.unlink(d / "f00.bin")
    assert not (d / "f00.bin").exists()
    (d / "f00.bin").write_bytes(b"new")
    assert os.stat(d / "f00.bin").st_size == 3 and (d / "f00.bin").read_bytes() == b"new"
    assert os.stat(d / "f01.bin").st_size == len(files["f01.bin"])


@pytest.mark.parametrize("size", [10, 200 * 1024])
def test_a_file_deleted_while_open_keeps_its_bytes_when_its_name_is_made_again(mount_factory, size):
    # As on a local disk: the new file of the name is a new inode (its own st_ino), the open
    # descriptor reads the deleted file's bytes and size, and making the name again succeeds.
    # The node was found by its path and given to the kernel again: the old descriptor read the new
    # bytes (reads through the daemon) or the create failed with EBUSY (the old file read through
    # FUSE passthrough).
    m = mount_factory(extra=("--allow-delete",))
    ds = m.path / "p/datasets/d"
    ds.mkdir(parents=True)
    old_bytes, new_bytes = os.urandom(size), b"NEW\n"
    (ds / "x").write_bytes(old_bytes)
    with open(ds / "x", "rb") as old:
        old_ino = os.fstat(old.fileno()).st_ino
        assert old.read(1) == old_bytes[:1]
        os.unlink(ds / "x")
        (ds / "x").write_bytes(new_bytes)
        assert (ds / "x").read_bytes() == new_bytes
        assert os.stat(ds / "x").st_ino != old_ino
        assert os.fstat(old.fileno()).st_size == size
        assert old.read() == old_bytes[1:]
    assert (ds / "x").read_bytes() == new_bytes
    assert [n for n in os.listdir(ds) if not n.startswith(".")] == ["x"]


def test_a_file_deleted_while_being_written_records_nothing_and_its_name_is_free(mount_factory):
    # README "artifacts", as for a dataset's files with --allow-delete: rm of a file still open for
    # writing deletes it at once, its descriptor records nothing when it closes, and a new file of
    # the name can be made meanwhile. A tester found rm answering 0 while the file stayed listed,
    # the new file refused (EPERM), and the deleted content recorded at the old descriptor's close.
    m = mount_factory(extra=("--allow-delete",))
    ds = m.path / "p/datasets/d"
    ds.mkdir(parents=True)
    with open(ds / "w", "wb") as old:
        old.write(b"old1\n")
        old.flush()
        os.unlink(ds / "w")
        assert "w" not in os.listdir(ds)
        (ds / "w").write_bytes(b"new\n")
        old.write(b"old2\n")
    deadline = time.monotonic() + 10
    while read_json(ds / ".dataset.json")["files"] != 1:
        assert time.monotonic() < deadline, read_json(ds / ".dataset.json")
        time.sleep(0.05)
    time.sleep(1.0)    # the old descriptor's release reaches the daemon after close() returns
    assert (ds / "w").read_bytes() == b"new\n"
    assert [n for n in os.listdir(ds) if not n.startswith(".")] == ["w"]
    assert read_json(ds / ".dataset.json")["files"] == 1


@pytest.mark.parametrize("where", ["p/datasets/d/sub", "p/experiments/e/runs/r/metrics"])
def test_a_folder_deleted_while_a_shell_is_in_it_lists_empty(mount_factory, where):
    # As on ext4: a shell whose working folder was deleted (here a dataset's sub-folder, and a
    # run's metrics/ under an `rm -rf` of the run) still runs `ls` (empty, exit 0) and `ls -la .`,
    # and making a file there fails with ENOENT. A tester found `ls` failing with ENOENT.
    m = mount_factory(extra=("--allow-delete",))
    folder = m.path / where
    folder.mkdir(parents=True, exist_ok=True)    # a run's metrics/ comes with the run
    if where.endswith("metrics"):
        (folder / "loss").write_text("1\n")
    gone = folder.parent if where.endswith("metrics") else folder
    # `stat .` there, twice a moment apart, gives ext4's answer both times: no links, and the same
    # times (the tester saw 2 links and the mtime of each `stat`)
    script = ('rm -rf "$1" && ls && echo "ls=$?" && ls -la . | wc -l && ! touch x 2>/dev/null && echo touch-refused'
              ' && stat -c "%h %Y.%y %Z" . && sleep 1.1 && stat -c "%h %Y.%y %Z" .')
    p = subprocess.run(["sh", "-c", script, "sh", str(gone)], cwd=folder, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, (p.stdout, p.stderr)
    out = p.stdout.splitlines()
    assert out[:3] == ["ls=0", "1", "touch-refused"], (p.stdout, p.stderr)
    assert out[3] == out[4] and out[3].split()[0] == "0", out[3:]
    assert not gone.exists()
