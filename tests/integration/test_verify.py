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
    found = [f for f in alutil.blob_files(m.blobs)
             if "damaged" not in f.parts and f.stat().st_size == len(data) and f.read_bytes() == data]
    assert len(found) == 1, f"blob files with the content: {found}"
    return found[0]


def damage(blob, off, data, keep_mtime=False):
    """Overwrites bytes of a blob file in place, as a stray write or bit rot would."""
    st = blob.stat()
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        f.seek(off)
        f.write(data)
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
