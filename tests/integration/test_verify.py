# aletheia integration tests: damaged local blobs are never served and are replaced by a new copy of
# their content; `aletheia fsck` finds them and names the files that use them (issue item 8).
import errno
import os
import pathlib
import re

import pytest

import alutil
from alutil import cli, mkrun, sh

pytestmark = pytest.mark.skipif(alutil.REMOTE, reason="about the local blob folder (file://)")

MIB = 1 << 20


def blob_of(m, data):
    """The blob file in the mount's blob folder that holds exactly data."""
    found = [f for f in alutil.blob_files(m.blobs) if f.stat().st_size == len(data) and f.read_bytes() == data]
    assert len(found) == 1, f"blob files with the content: {found}"
    return found[0]


def damage(blob, off, data, keep_mtime=False):
    """Overwrites bytes of a blob file in place, as a stray write or bit rot would. A byte of data
    equal to the one already there is flipped instead: the blob is always changed (one random byte
    overwritten with b"?" is a no-op 1 time in 256)."""
    st = blob.stat()
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        f.seek(off)
        old = f.read(len(data))
        f.seek(off)
        f.write(bytes(d ^ 0xFF if d == o else d for d, o in zip(data, old)))
    os.chmod(blob, 0o444)
    if keep_mtime:
        os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))   # touch -r: the mtime is back


def read_errno(p):
    """Reads the whole file; returns (bytes read, errno or 0)."""
    out = bytearray()
    try:
        with open(p, "rb") as f:
            while True:
                b = f.read(MIB)
                if not b:
                    return bytes(out), 0
                out += b
    except OSError as e:
        return bytes(out), e.errno


def damaged_files(m):
    d = pathlib.Path(m.blobs) / "damaged"
    return sorted(d.iterdir()) if d.exists() else []


@pytest.fixture
def ds(mount):
    (mount.path / "p").mkdir()
    d = mount.path / "p" / "datasets" / "d"
    d.mkdir()
    return d


def put(m, d, name, data):
    src = m.root / f"src-{name}"
    src.write_bytes(data)
    sh(f"cp '{src}' '{d}/{name}'")
    return src


def test_overwritten_blob_fails_with_eio_and_a_new_copy_replaces_it(mount, ds):
    """The issue's reproduction: 4 bytes of the blob overwritten, remount: reading the dataset file
    fails with EIO (never wrong bytes); cp of the original content again closes OK and reads back
    right, and so does the first file."""
    mount.allow_log_errors = True
    data = os.urandom(MIB + 333)
    src = put(mount, ds, "a.bin", data)
    blob = blob_of(mount, data)
    damage(blob, 4096, b"\0\1\2\3")
    mount.remount()
    r = sh(f"cmp '{src}' '{ds}/a.bin'", check=False)
    assert "Input/output error" in r.stderr, f"cmp: {r.stdout} {r.stderr}"
    got, err = read_errno(ds / "a.bin")
    assert err == errno.EIO and got == b"", f"{alutil.errname(err)} after {len(got)} bytes"
    assert len(damaged_files(mount)) == 1, "the damaged blob was not moved aside"
    sh(f"cp '{src}' '{ds}/b.bin'")
    assert (ds / "b.bin").read_bytes() == data
    assert (ds / "a.bin").read_bytes() == data
    assert blob.read_bytes() == data
    mount.remount()
    assert (ds / "a.bin").read_bytes() == data


def test_damaged_blob_replaced_by_the_next_copy_without_a_read(mount, ds):
    """cp of the same content checks the blob already there: a damaged one is stored afresh."""
    mount.allow_log_errors = True
    data = os.urandom(300_000)
    src = put(mount, ds, "a.bin", data)
    damage(blob_of(mount, data), 10, b"XXXX")
    r = mkrun(mount)
    sh(f"cp '{src}' '{r}/artifacts/copy.bin'")
    mount.remount()
    assert (r / "artifacts" / "copy.bin").read_bytes() == data
    assert (ds / "a.bin").read_bytes() == data
    assert len(damaged_files(mount)) == 1


def test_truncated_blob_fails_with_eio(mount, ds):
    mount.allow_log_errors = True
    data = os.urandom(2 * MIB)
    put(mount, ds, "a.bin", data)
    blob = blob_of(mount, data)
    os.chmod(blob, 0o644)
    os.truncate(blob, MIB)
    os.chmod(blob, 0o444)
    mount.remount()
    got, err = read_errno(ds / "a.bin")
    assert err == errno.EIO, f"truncated blob read gave {alutil.errname(err)} and {len(got)} bytes"
    assert got == b""


# ---- aletheia fsck ----------------------------------------------------------------------------------

SUMMARY = re.compile(r"^fsck: (\d+) blobs checked, (\d+) bytes, (\d+) damaged \((\d+) missing\), (\d+) not checked$",
                     re.M)


def fsck(m, *args):
    r = cli("fsck", str(m.path), *args, timeout=120)
    mt = SUMMARY.search(r.stdout)
    assert mt, f"no summary line: exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r, [int(x) for x in mt.groups()]


def populate(m):
    """A dataset file and a run artifact with the same content, another dataset file, an
    experiment artifact and a run's output.log (through `aletheia run`)."""
    (m.path / "p").mkdir()
    ds = m.path / "p" / "datasets" / "d"
    ds.mkdir()
    shared = os.urandom(MIB + 17)
    put(m, ds, "shared.bin", shared)
    put(m, ds, "other.csv", b"x,y\n1,2\n")
    r = mkrun(m)
    sh(f"cp '{m.root}/src-shared.bin' '{r}/artifacts/model.bin'")
    (m.path / "p" / "experiments" / "e" / "artifacts").mkdir(exist_ok=True)
    (m.root / "notes.txt").write_text("notes\n")
    sh(f"cp '{m.root}/notes.txt' '{m.path}/p/experiments/e/artifacts/notes.txt'")
    rr = cli("run", "--exper", "p/e", "--", "sh", "-c", "echo hello from the run", m=m)
    assert rr.returncode == 0, rr.stderr
    logs = list((m.path / "p" / "experiments" / "e" / "runs").glob("*/output.log"))
    assert len(logs) == 1
    return ds, r, shared, logs[0]


def test_fsck_healthy_mount(mount):
    ds, run, shared, log = populate(mount)
    r, (blobs, nbytes, damaged, missing, unchecked) = fsck(mount)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (blobs, damaged, missing, unchecked) == (4, 0, 0, 0), r.stdout
    assert nbytes == len(shared) + 8 + 6 + len(log.read_bytes())
    assert r.stdout.strip().splitlines() == [SUMMARY.search(r.stdout).group(0)]


def test_fsck_names_the_files_of_a_damaged_blob(mount):
    """One blob used by a dataset file and a run artifact is damaged: fsck exits 1 naming both
    paths; after a new copy of the content, fsck is clean again."""
    mount.allow_log_errors = True
    ds, run, shared, log = populate(mount)
    damage(blob_of(mount, shared), 12345, b"rot!")
    r, (blobs, nbytes, damaged, missing, unchecked) = fsck(mount)
    assert r.returncode == 1, r.stdout + r.stderr
    assert (blobs, damaged, missing, unchecked) == (4, 1, 0, 0), r.stdout
    lines = r.stdout.splitlines()
    assert lines[0].startswith("damaged "), lines
    assert f"  {ds}/shared.bin" in lines and f"  {run}/artifacts/model.bin" in lines, r.stdout
    assert not any("other.csv" in l or "notes.txt" in l for l in lines), r.stdout
    got, err = read_errno(ds / "shared.bin")
    assert err == errno.EIO and got == b""
    # fsck again: the blob is gone (moved aside), still reported, still exit 1
    r, (blobs, nbytes, damaged, missing, unchecked) = fsck(mount)
    assert r.returncode == 1 and damaged == 1 and missing == 1, r.stdout
    assert "damaged" in r.stdout.splitlines()[0] or "moved" in r.stdout, r.stdout
    sh(f"cp '{mount.root}/src-shared.bin' '{ds}/again.bin'")
    r, (blobs, nbytes, damaged, missing, unchecked) = fsck(mount)
    assert r.returncode == 0 and damaged == 0, r.stdout
    assert (ds / "shared.bin").read_bytes() == shared


def test_fsck_finds_bit_rot_that_kept_the_mtime(mount):
    """Bit rot with size and mtime unchanged (touch -r) passes the cheap check at open; fsck
    hashes every blob and finds it, naming the run's output.log."""
    mount.allow_log_errors = True
    ds, run, shared, log = populate(mount)
    text = log.read_bytes()
    damage(blob_of(mount, text), 0, b"J", keep_mtime=True)
    mount.remount()
    r, (blobs, nbytes, damaged, missing, unchecked) = fsck(mount)
    assert r.returncode == 1 and damaged == 1, r.stdout + r.stderr
    assert f"  {log}" in r.stdout.splitlines(), r.stdout
    got, err = read_errno(log)
    assert err == errno.EIO, f"after fsck found it: {alutil.errname(err)}"


def test_fsck_reports_a_missing_blob(mount):
    mount.allow_log_errors = True
    ds, run, shared, log = populate(mount)
    blob_of(mount, b"x,y\n1,2\n").unlink()
    r, (blobs, nbytes, damaged, missing, unchecked) = fsck(mount)
    assert r.returncode == 1 and (damaged, missing) == (1, 1), r.stdout
    assert r.stdout.startswith("missing ") and f"  {ds}/other.csv\n" in r.stdout, r.stdout


def test_fsck_control_file_is_inert_for_plain_readers(mount):
    """A plain read of .aletheia/fsck (cat, grep -r, tar, rsync -a) gets an empty file and starts
    no check: a damaged blob that only a check finds stays where it is."""
    ds, run, shared, log = populate(mount)
    ctl = mount.path / ".aletheia" / "fsck"
    assert ctl.stat().st_size == 0
    assert ctl.read_bytes() == b""
    fd = os.open(ctl, os.O_RDWR)
    try:
        assert os.read(fd, 4096) == b""              # read-write, but no request: nothing
    finally:
        os.close(fd)
    damage(blob_of(mount, shared), 5, b"?", keep_mtime=True)
    sh(f"grep -r -l no-such-text-anywhere '{mount.path}/.aletheia' || true")
    sh(f"tar -cf '{mount.root}/ctl.tar' -C '{mount.path}' .aletheia/fsck")
    assert sh(f"tar -tvf '{mount.root}/ctl.tar'").stdout.split()[2] == "0"
    sh(f"rsync -a '{mount.path}/.aletheia/fsck' '{mount.root}/ctl-copy'")
    assert (mount.root / "ctl-copy").read_bytes() == b""
    assert damaged_files(mount) == [], "a plain read started a check"
    # a request other than check is refused, and one handle asks once
    fd = os.open(ctl, os.O_RDWR)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"format everything\n")
        assert e.value.errno == errno.EINVAL
        os.write(fd, b"check\n")
        with pytest.raises(OSError) as e:
            os.write(fd, b"check\n")
        assert e.value.errno == errno.EBUSY
        report = b""
        while True:
            b = os.pread(fd, 65536, len(report))
            if not b:
                break
            report += b
    finally:
        os.close(fd)
    assert b"damaged " in report and report.endswith(b"1 damaged (0 missing), 0 not checked\n"), report
