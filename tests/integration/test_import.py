# aletheia integration tests: `aletheia dataset import` and .aletheia/import: files that live at a URL,
# registered in a dataset without a copy (issue 4, imported datasets), against tests/unit/range_server.py.
import errno
import json
import os
import pathlib
import re
import subprocess
import time
import urllib.request

import pytest

import alutil
from alutil import cli, read_json, sh, sha256, try_write

ROOT = pathlib.Path(__file__).resolve().parents[2]
RANGE_SERVER = ROOT / "tests" / "unit" / "range_server.py"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


class Server:
    def __init__(self, folder, proc, port):
        self.folder, self.proc, self.port = folder, proc, port
        self.base = f"http://127.0.0.1:{port}"

    def url(self, name):
        return f"{self.base}/{name}"

    def ctl(self, **modes):
        q = "&".join(f"{k}={int(v)}" for k, v in modes.items())
        with urllib.request.urlopen(f"{self.base}/_ctl?{q}", timeout=10) as r:
            return json.loads(r.read())


@pytest.fixture
def server(tmpdir_al):
    folder = tmpdir_al / "served"
    folder.mkdir()
    (folder / "a.bin").write_bytes(os.urandom(300_000))
    (folder / "b.csv").write_bytes(b"x,y\n1,2\n3,4\n")
    (folder / "empty").write_bytes(b"")
    (folder / "big.bin").write_bytes(os.urandom(9 * 1024 * 1024 + 7))
    (folder / "other.bin").write_bytes(os.urandom(1000))
    port_file = tmpdir_al / "port"
    p = subprocess.Popen([alutil.PY, str(RANGE_SERVER), str(folder), "--port-file", str(port_file)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while not port_file.exists():
        assert p.poll() is None and time.monotonic() < deadline, "range_server.py did not start"
        time.sleep(0.05)
    yield Server(folder, p, int(port_file.read_text()))
    p.kill()
    p.wait()


def one_error_line(r):
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aletheia: ") and "; " in lines[0], r.stderr
    return lines[0]


def test_import_sizes_and_version(mount, server):
    ds = mount.path / "p/datasets/ext"
    r = cli("dataset", "import", "p/ext", server.url("a.bin"), m=mount)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"imported a.bin (300000 bytes) from {server.url('a.bin')}\n"
    assert ds.is_dir()   # created as mkdir would
    assert os.stat(ds / "a.bin").st_size == 300_000
    j1 = read_json(ds / ".dataset.json")
    assert j1["files"] == 1 and j1["bytes"] == 300_000 and HEX32.match(j1["version"])
    # several at once, one renamed file, an empty file; --mount instead of $ALETHEIA_MOUNT
    r = cli("dataset", "import", "p/ext", server.url("b.csv"), server.url("empty"), server.url("big.bin"),
            "--mount", mount.path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"imported b.csv (12 bytes) from {server.url('b.csv')}",
                                     f"imported empty (0 bytes) from {server.url('empty')}",
                                     f"imported big.bin ({9 * 1024 * 1024 + 7} bytes) from {server.url('big.bin')}"]
    r = cli("dataset", "import", "p/ext", server.url("b.csv"), "--as", "sub/renamed.csv", m=mount)
    assert r.returncode == 0, r.stderr
    out = sh("ls -l", m=mount, cwd=ds).stdout
    sizes = {line.split()[-1]: int(line.split()[4]) for line in out.splitlines() if line.startswith("-")}
    assert sizes == {"a.bin": 300_000, "b.csv": 12, "empty": 0, "big.bin": 9 * 1024 * 1024 + 7}, out
    assert os.stat(ds / "sub/renamed.csv").st_size == 12
    assert os.stat(ds / "a.bin").st_mode & 0o777 == 0o444
    j2 = read_json(ds / ".dataset.json")
    assert j2["files"] == 5 and j2["bytes"] == 300_000 + 12 + 0 + 9 * 1024 * 1024 + 7 + 12
    assert j2["version"] != j1["version"]
    # imported files are write-once like copied ones
    assert try_write(ds / "a.bin", b"x") == errno.EPERM


def test_hash_matches_a_copy(mount, server):
    """The same file copied in and imported gives the same dataset version: same path, size, xxh3-128."""
    d1 = mount.path / "p/datasets/copied"
    os.makedirs(d1)
    sh(f"cp '{server.folder}/a.bin' '{server.folder}/b.csv' '{d1}/'")
    r = cli("dataset", "import", "p/imported", server.url("a.bin"), server.url("b.csv"), m=mount)
    assert r.returncode == 0, r.stderr
    v1 = read_json(d1 / ".dataset.json")["version"]
    v2 = read_json(mount.path / "p/datasets/imported/.dataset.json")["version"]
    assert v1 == v2


def test_server_without_range(mount, server):
    server.ctl(ranges=0)
    r = cli("dataset", "import", "p/ext", server.url("big.bin"), server.url("a.bin"), m=mount)
    assert r.returncode == 0, r.stderr
    d1 = mount.path / "p/datasets/copied"
    os.makedirs(d1)
    sh(f"cp '{server.folder}/big.bin' '{server.folder}/a.bin' '{d1}/'")
    assert read_json(d1 / ".dataset.json")["version"] == \
        read_json(mount.path / "p/datasets/ext/.dataset.json")["version"]
    assert server.ctl()["ranged"] == 0


def test_errors(mount, server):
    ds = mount.path / "p/datasets/ext"
    r = cli("dataset", "import", "p/ext", server.url("a.bin"), m=mount)
    assert r.returncode == 0, r.stderr
    v = read_json(ds / ".dataset.json")["version"]
    # a missing object: one line, nothing registered, even for the good URL given with it
    r = cli("dataset", "import", "p/ext", server.url("b.csv"), server.url("missing.bin"), m=mount)
    assert r.returncode == 1
    line = one_error_line(r)
    assert "missing.bin" in line and "404" in line
    assert not (ds / "b.csv").exists()
    # nothing listens there
    r = cli("dataset", "import", "p/ext", "http://127.0.0.1:1/x.bin", m=mount)
    assert r.returncode == 1
    one_error_line(r)
    # not a URL we read
    for url in ("ftp://host/x.bin", "/etc/passwd", "s3://only-bucket"):
        r = cli("dataset", "import", "p/ext", url, m=mount)
        assert r.returncode == 1, (url, r.stdout)
        one_error_line(r)
    # the same name with other content: write-once
    r = cli("dataset", "import", "p/ext", server.url("other.bin"), "--as", "a.bin", m=mount)
    assert r.returncode == 1
    assert "write-once" in one_error_line(r)
    # the same file again is fine, and changes nothing
    r = cli("dataset", "import", "p/ext", server.url("a.bin"), m=mount)
    assert r.returncode == 0, r.stderr
    assert read_json(ds / ".dataset.json")["version"] == v
    assert sorted(os.listdir(ds)) == [".dataset.json", ".description", "a.bin"]
    # no name in the URL
    r = cli("dataset", "import", "p/ext", server.base + "/", m=mount)
    assert r.returncode == 1 and "--as" in one_error_line(r)
    # usage errors
    r = cli("dataset", "import", "p/ext", server.url("a.bin"), server.url("b.csv"), "--as", "x", m=mount)
    assert r.returncode == 2
    r = cli("dataset", "import", "not-a-dataset", server.url("a.bin"), m=mount)
    assert r.returncode == 2
    r = cli("dataset", "import", "p/ext", m=mount)
    assert r.returncode == 2
    # not a mount
    r = cli("dataset", "import", "p/ext", server.url("a.bin"), "--mount", mount.root)
    assert r.returncode == 1
    assert "not an aletheia mount" in one_error_line(r)


def test_control_file(mount, server):
    ctl = mount.path / ".aletheia/import"
    assert "import" in os.listdir(mount.path / ".aletheia")
    assert os.stat(ctl).st_mode & 0o777 == 0o600
    assert open(ctl, "rb").read() == b""      # readers (grep -r, rsync) find it empty
    os.makedirs(mount.path / "p/datasets/d")
    good = {"dataset": "p/d", "path": "x.bin", "url": server.url("other.bin"), "size": 1000,
            "hash": "0123456789abcdef0123456789abcdef"}

    def line(**kw):
        return json.dumps(dict(good, **kw)) + "\n"

    flags = os.O_WRONLY
    assert try_write(ctl, "not json\n", flags) == errno.EINVAL
    assert try_write(ctl, line(hash="XYZ"), flags) == errno.EINVAL
    assert try_write(ctl, line(size=-1), flags) == errno.EINVAL
    assert try_write(ctl, line(size="12"), flags) == errno.EINVAL
    assert try_write(ctl, line(url="ftp://h/x"), flags) == errno.EINVAL
    assert try_write(ctl, line(path="../x"), flags) == errno.EINVAL
    assert try_write(ctl, line(path="/abs"), flags) == errno.EINVAL
    assert try_write(ctl, line(path=".dataset.json"), flags) == errno.EINVAL
    assert try_write(ctl, line(dataset="p"), flags) == errno.EINVAL
    assert try_write(ctl, line(dataset="p/nope"), flags) == errno.ENOENT
    assert try_write(ctl, line(dataset="q/d"), flags) == errno.ENOENT
    assert sorted(os.listdir(mount.path / "p/datasets/d")) == [".dataset.json", ".description"] or \
        os.listdir(mount.path / "p/datasets/d") == []
    # a good line, with `>` as a shell writes it; twice is fine; other content under its name is not
    sh(f"printf '%s' '{line()}' > '{ctl}'")
    assert os.stat(mount.path / "p/datasets/d/x.bin").st_size == 1000
    assert try_write(ctl, line(), flags) == 0
    assert try_write(ctl, line(hash="f" * 32), flags) == errno.EPERM
    assert try_write(ctl, line(size=999), flags) == errno.EPERM
    # a file where the path needs a folder
    assert try_write(ctl, line(path="x.bin/y"), flags) == errno.ENOTDIR
    # a last line without its newline counts at close
    assert try_write(ctl, line(path="nl.bin").rstrip("\n"), flags) == 0
    assert os.path.exists(mount.path / "p/datasets/d/nl.bin")
    j = read_json(mount.path / "p/datasets/d/.dataset.json")
    assert j["files"] == 2 and j["bytes"] == 2000


def test_read_back(mount, server):
    """Reading fetches from the URL (ranged, through the cache) and verifies the hash."""
    r = cli("dataset", "import", "p/ext", server.url("a.bin"), server.url("big.bin"), m=mount)
    assert r.returncode == 0, r.stderr
    ds = mount.path / "p/datasets/ext"
    for name in ("a.bin", "big.bin"):
        assert sh(f"cat '{ds}/{name}' | sha256sum", timeout=120).stdout.split()[0] == \
            sha256(server.folder / name)
    # served from the cache once read: the server can go
    server.proc.kill()
    server.proc.wait()
    assert sha256(ds / "a.bin") == sha256(server.folder / "a.bin")


def test_read_back_without_range_and_changed_source(mount, server):
    """A server without Range support serves the whole object; a source changed since the import is
    never served (its hash no longer matches): EIO."""
    r = cli("dataset", "import", "p/ext", server.url("a.bin"), server.url("other.bin"), m=mount)
    assert r.returncode == 0, r.stderr
    ds = mount.path / "p/datasets/ext"
    server.ctl(ranges=0)
    assert sha256(ds / "a.bin") == sha256(server.folder / "a.bin")
    server.ctl(ranges=1)
    (server.folder / "other.bin").write_bytes(os.urandom(1000))
    with pytest.raises(OSError) as ei:
        (ds / "other.bin").read_bytes()
    assert ei.value.errno == errno.EIO


def test_redirected_url(mount, server):
    """Download links that redirect (to a CDN) import and read like direct ones."""
    url = server.url("_redirect/2/b.csv")
    r = cli("dataset", "import", "p/ext", url, m=mount)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"imported b.csv (12 bytes) from {url}\n"
    assert (mount.path / "p/datasets/ext/b.csv").read_bytes() == (server.folder / "b.csv").read_bytes()


def test_fsck_checks_imported_urls(mount, server):
    """fsck sizes each imported file's URL (--download: hashes it) and names the files of those that
    changed or went away."""
    mount.allow_log_errors = True
    r = cli("dataset", "import", "p/ext", server.url("a.bin"), server.url("b.csv"), m=mount)
    assert r.returncode == 0, r.stderr
    ds = mount.path / "p/datasets/ext"

    def fsck(*args):
        r = cli("fsck", mount.path, *args)
        mt = re.search(r"^fsck: (\d+) blobs checked, (\d+) bytes, (\d+) damaged \((\d+) missing\), (\d+) not "
                       r"checked$", r.stdout, re.M)
        assert mt, r.stdout + r.stderr
        return r, [int(x) for x in mt.groups()]

    r, (blobs, nbytes, damaged, missing, unchecked) = fsck()
    assert r.returncode == 0 and (blobs, nbytes, damaged) == (2, 300_012, 0), r.stdout
    (server.folder / "a.bin").write_bytes(os.urandom(300_000))     # same size, other bytes
    r, counts = fsck()
    assert r.returncode == 0, r.stdout
    r, (blobs, nbytes, damaged, missing, unchecked) = fsck("--download")
    assert r.returncode == 1 and damaged == 1 and f"  {ds}/a.bin\n" in r.stdout, r.stdout
    (server.folder / "b.csv").unlink()
    r, (blobs, nbytes, damaged, missing, unchecked) = fsck()
    assert r.returncode == 1 and missing == 1 and f"  {ds}/b.csv\n" in r.stdout, r.stdout
