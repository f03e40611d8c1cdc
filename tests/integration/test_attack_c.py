# aletheia integration tests: defects found by attack C — ordinary programs (pandas, h5py, zip/tar,
# make, dd, rsync, git, emacs, jq, Python's tempfile/shutil/logging, nohup/setsid/timeout, aletheia
# run) used on the mount as on a local folder. Each test fails on the code it was written against
# and says which README promise (or local-disk behaviour the README claims) it holds the mount to.
import os
import tempfile
import time

import pytest
from alutil import read_json, sh


# ---- wrong bytes and errors of ordinary programs --------------------------------------------------

def test_an_open_file_deleted_from_artifacts_still_reads(run):
    """README "artifacts": a running run's artifacts/ is a working folder where files can be
    deleted, and "a deleted file stops being listed at once (a descriptor still open on it
    records nothing when it closes)" — the descriptor itself stays usable, as on a local disk.
    Python's tempfile.TemporaryFile(dir=...) (and SpooledTemporaryFile once it rolls over) creates
    a file, unlinks it at once and then writes, seeks and reads it: on the mount the write
    succeeded but read(), fstat() and ftruncate() of the open descriptor failed with ENOENT
    ('FileNotFoundError: [Errno 2]'), also for a read-only descriptor of a closed file."""
    art = run / "artifacts"
    with tempfile.TemporaryFile(dir=art) as f:
        f.write(b"y" * 100)
        f.seek(0)
        assert f.read() == b"y" * 100
        assert os.fstat(f.fileno()).st_size == 100
        f.truncate(10)
        assert os.fstat(f.fileno()).st_size == 10
    (art / "closed.bin").write_bytes(b"hello")
    fd = os.open(art / "closed.bin", os.O_RDONLY)
    try:
        os.unlink(art / "closed.bin")
        assert os.read(fd, 5) == b"hello"
        assert os.fstat(fd).st_size == 5
    finally:
        os.close(fd)
    assert sorted(os.listdir(art)) == []


def test_a_reader_of_a_file_replaced_in_artifacts_can_still_fstat_it(run):
    """README "artifacts": files can be renamed (os.replace of a checkpoint) and "a descriptor
    opened only for reading reads the file as it was at its open". A reader whose file was
    replaced by os.replace read the old bytes, but fstat() of its descriptor failed with ENOENT
    (tail -f, numpy and h5py fstat their open files)."""
    art = run / "artifacts"
    (art / "ck").write_text("old content")
    with open(art / "ck", "rb") as r:
        (art / "ck.new").write_text("NEW")
        os.replace(art / "ck.new", art / "ck")
        assert os.fstat(r.fileno()).st_size == len("old content")
        assert r.read() == b"old content"
    assert (art / "ck").read_text() == "NEW"


@pytest.mark.parametrize("tool", ["sed -i~ s/0.5/0.7/", "perl -pi~ -e s/0.5/0.7/"], ids=["sed", "perl"])
def test_sed_and_perl_keep_a_tilde_backup_of_a_value(run, tool):
    """README "Editing values in place": sed -i and perl -pi change every file that holds a value,
    and names ending in `~` (backups) are scratch files there. With a backup suffix (`sed -i~`,
    `perl -pi~`, as on a local disk) the tool first renames the value's file to its backup name:
    that rename failed with EXDEV ('sed: cannot rename params/lr: Invalid cross-device link', exit 4;
    perl: 'Can't rename params/lr to params/lr~', skipping the file), so the value never changed.
    sed and perl do not fall back to copying as mv and vim do."""
    sh("echo 0.5 > params/lr && echo 0.5 > model", cwd=run)
    r = sh(f"{tool} params/lr && {tool} model", cwd=run, check=False)
    assert r.returncode == 0, r.stderr
    assert (run / "params/lr").read_text() == "0.7\n"
    assert (run / "model").read_text() == "0.7\n"
    assert read_json(run / "params.json") == {"lr": 0.7}
    assert (run / "params/lr~").read_text() == "0.5\n"     # the backup, a scratch file


def test_make_settles_on_a_target_built_from_a_param(run):
    """README "Files behave like files": mtimes are the time of the content's last change, "so
    rsync -a and make see every change". A run's value files (params/*, params.json, model, fold,
    description, status) all show the run document's update time, so writing any artifact (or
    another param, a metric's first point) moves params/lr's mtime although its content did not
    change. make then rebuilds a target made from params/lr whenever its own output lands in
    artifacts/: a second `make` ran the recipe again and `make -q` said 1 (out of date), where a
    local folder says nothing to do."""
    sh("echo 0.1 > params/lr && mkdir -p artifacts/b", cwd=run)
    time.sleep(1.1)
    b = run / "artifacts/b"
    (b / "Makefile").write_text("out.txt: ../../params/lr\n\tcat $< > $@\n")
    sh("make", cwd=b)
    assert (b / "out.txt").read_text() == "0.1\n"
    r = sh("make", cwd=b)
    assert "Nothing to be done" in r.stdout or "is up to date" in r.stdout, r.stdout
    assert sh("make -q", cwd=b, check=False).returncode == 0
    before = os.stat(run / "params/lr").st_mtime_ns
    sh("echo x > artifacts/other && echo 0.5 > params/momentum && echo 1 >> metrics/loss", cwd=run)
    assert os.stat(run / "params/lr").st_mtime_ns == before


def test_cp_p_keeps_an_mtime_of_the_epoch(run, tmpdir_al):
    """README "Files behave like files": touch/utimes on an artifact or dataset file records its
    mtime, "also when the file is still open for writing (cp -p and cp -a set the times before they
    close the copy)". Files dated 1970-01-01 00:00:00 (SOURCE_DATE_EPOCH=0 builds, archives and
    packages with zeroed times) lost their time: cp -p of one into artifacts/ or a dataset showed the
    time of the copy (the close recorded its own time over 0; an mtime of 1 ns likewise), while
    `touch -d @0` of a closed file and cp -p of a 1969 file kept theirs."""
    src = tmpdir_al / "epoch"
    src.write_text("x\n")
    os.utime(src, ns=(0, 0))
    ds = run.parents[3] / "datasets" / "d"
    os.makedirs(ds)
    sh(f"cp -p {src} artifacts/epoch && cp -p {src} {ds}/epoch", cwd=run)
    assert os.stat(run / "artifacts/epoch").st_mtime_ns == 0
    assert os.stat(ds / "epoch").st_mtime_ns == 0


def test_sed_i_on_a_datasets_description_changes_it_and_adds_no_file(mount):
    """README "Files behave like files": editors and in-place tools work on every file that holds a
    value; "datasets": `.description` is the description, read/write. `sed -i` on a dataset's
    .description failed ('sed: cannot rename ./sedpSwH3T: Operation not permitted', exit 4), left the
    description unchanged, and left its temporary file sedXXXXXX in the dataset as a write-once data
    file: the dataset's version and file count changed, and the file cannot be removed without
    --allow-delete. (vim likewise left .description.swp and .description.swx as data files.)"""
    ds = mount.path / "p" / "datasets" / "d"
    os.makedirs(ds)
    (ds / "data.csv").write_text("a,b\n1,2\n")
    sh("echo first > .description", cwd=ds)
    before = read_json(ds / ".dataset.json")
    r = sh("sed -i s/first/second/ .description", cwd=ds, check=False)
    assert r.returncode == 0, r.stderr
    assert (ds / ".description").read_text() == "second\n"
    after = read_json(ds / ".dataset.json")
    assert after["description"].strip() == "second"
    assert (after["version"], after["files"], after["bytes"]) == (before["version"], before["files"], before["bytes"])
    assert sorted(os.listdir(ds)) == [".dataset.json", ".description", "data.csv"]
