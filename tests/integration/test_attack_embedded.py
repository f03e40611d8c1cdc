# aletheia integration tests: defects found by attacking the embedded store (SQLite + file://
# blobs): values, metrics, durability, lifecycle. Each test fails on the code it was written
# against; each says what README promise it holds the mount to.
import errno
import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest
import alutil
from alutil import PY, blob_files, mkrun, points, read_json, sh, try_write


# ---- data loss and wrong values ------------------------------------------------------------------

APPENDER = r"""
import json, sys
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    with open(path, "a") as f:            # close() raises if the append is refused
        f.write(json.dumps({f"{tag}_{i}": i}))
    print(f"{tag}_{i}", flush=True)
"""


@pytest.mark.local_store_only
def test_concurrent_appends_to_one_metadata_file_keep_every_key(mount):
    """README "params"/"metadata": appending an object (`>>`, Python's 'a' mode) merges its keys;
    what close() accepted is kept. With two or more processes appending to one metadata file,
    keys whose close() had returned went missing (each append read the document and wrote it
    back whole, outside the lock that params.json's merges hold): a lost update."""
    os.makedirs(mount.path / "p")
    md = mount.path / "p" / "metadata"
    (md / "shared").write_text("{}")
    procs = [subprocess.Popen([PY, "-c", APPENDER, str(md / "shared"), f"w{k}", "40"], stdout=subprocess.PIPE,
                              text=True) for k in range(4)]
    acked = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        acked += out.split()
    assert len(acked) == 160
    got = json.loads((md / "shared").read_text())
    lost = [k for k in acked if k not in got]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged keys lost, e.g. {lost[:5]}"


def test_closing_a_duplicate_descriptor_does_not_end_a_metric_line(run):
    """README "metrics": a partial last line waits for its newline, or for close(). The close of
    a duplicate of the descriptor (dup(), and bash's `printf … >&3`, which dups fd 3 onto stdout
    for the builtin and closes the copy after it) recorded the partial line as a point of its
    own: `printf '7 ' >&3; printf '0.25\\n' >&3` gave the two points "1 7" and "2 0.25" instead of
    step 7 with value 0.25."""
    sh("echo '0 0' >> metrics/sh", cwd=run)
    sh("exec 3>>metrics/sh; printf '7 ' >&3; printf '0.25\\n' >&3; exec 3>&-", cwd=run)
    assert [(s, v) for s, v, _ in points(run / "metrics" / "sh")] == [(0, "0"), (7, "0.25")]
    fd = os.open(run / "metrics" / "py", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"5 ")
    os.close(os.dup(fd))
    os.write(fd, b"0.5\n")
    os.close(fd)
    assert [(s, v) for s, v, _ in points(run / "metrics" / "py")] == [(5, "0.5")]


def test_an_integer_written_with_a_fraction_keeps_its_value(run):
    """README "params": values are stored exactly, never rounded; `32.0` is stored as the integer
    32; a number no int64 or double holds exactly stays the string written. 9007199254740993.0
    was stored as the integer 9007199254740992 and 9223372036854775807.0 as 9.223372036854776e+18
    (2^63): other numbers than the ones written, in params/, params.json and run.json."""
    cases = {"a": "9007199254740993.0", "b": "9223372036854775807.0", "c": "10000000000000001e0"}
    exact = {"a": 9007199254740993, "b": 9223372036854775807, "c": 10000000000000001}
    for k, text in cases.items():
        (run / "params" / k).write_text(text + "\n")
    for k, text in cases.items():
        back = (run / "params" / k).read_text().rstrip("\n")
        assert back in (str(exact[k]), text), f"params/{k}: wrote {text}, reads back {back}"
    run2 = run.parent / "2"
    os.mkdir(run2)
    e = try_write(run2 / "params.json", '{"a": 9007199254740993.0, "b": 9223372036854775807.0}')
    if e == 0:
        pj = json.loads((run2 / "params.json").read_text())
        assert pj == {"a": 9007199254740993, "b": 9223372036854775807}, pj
    else:
        assert e == errno.EINVAL


@pytest.mark.parametrize("read_path", ["auto", "splice"])
def test_a_blob_truncated_while_open_is_not_served_short(mount_factory, read_path):
    """README "Durability": bytes that fail verification never reach a reader; a truncated blob
    gives EIO. A blob truncated behind the mount while a reader has its file open was served
    short without an error: read() returned EOF at 5,000,000 bytes of a 10,000,000-byte file
    (fstat still 10,000,000), so `cp` or a training loader gets a cut file silently.
    Through FUSE passthrough the kernel reads the blob without the daemon: the open reads what the
    file still holds, never other bytes, and the next open fails with EIO (README "Known
    limitations")."""
    mount = mount_factory(extra=["--no-passthrough"] if read_path == "splice" else [])
    src = mount.root / "src.bin"
    src.write_bytes(os.urandom(10_000_000))
    ds = mount.path / "p" / "datasets" / "d"
    os.makedirs(ds)
    sh(f"cp {src} {ds}/f.bin")
    blob = [b for b in blob_files(mount.blobs) if b.stat().st_size == 10_000_000]
    assert len(blob) == 1, blob
    fd = os.open(ds / "f.bin", os.O_RDONLY)
    try:
        data = os.read(fd, 1 << 20)
        os.truncate(blob[0], 5_000_000)
        err = None
        try:
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                data += chunk
        except OSError as e:
            err = e.errno
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    mount.allow_log_errors = True
    whole = data == src.read_bytes()
    if read_path == "auto" and alutil.passthrough_expected():
        assert src.read_bytes().startswith(data), "bytes the blob never held were served"
        try:
            os.close(os.open(ds / "f.bin", os.O_RDONLY))
            reopen = 0
        except OSError as e:
            reopen = e.errno
        assert reopen == errno.EIO, alutil.errname(reopen)
        return
    assert err == errno.EIO or whole, f"read {len(data)} of {size} bytes, then EOF without an error"


@pytest.mark.local_store_only
def test_the_rest_of_a_refused_long_line_is_not_recorded_as_a_point(run):
    """README "metrics": a line waiting for its newline may be at most 64 KiB; a longer one fails
    with EINVAL. The write that crossed 64 KiB failed, but the line's start was dropped and its
    rest, arriving in the next writes ("   …0.5\\n"), was recorded as a point of its own (default
    step, value 0.5) that nobody wrote as a line."""
    fd = os.open(run / "metrics" / "m", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"0 1\n9 ")
        refused = 0
        for _ in range(70):
            try:
                os.write(fd, b" " * 1024)
            except OSError as e:
                assert e.errno == errno.EINVAL
                refused += 1
        assert refused >= 1
        try:
            os.write(fd, b"0.5\n")
        except OSError as e:
            assert e.errno == errno.EINVAL
        os.write(fd, b"10 0.75\n")
    finally:
        os.close(fd)
    assert [(s, v) for s, v, _ in points(run / "metrics" / "m")] == [(0, "1"), (10, "0.75")]


# ---- errors --------------------------------------------------------------------------------------

def test_a_run_can_be_created_whatever_the_creators_command_line_and_folder(mount):
    """README "Run lifecycle": creating a run (mkdir) records host, user, time, command and cwd of
    the creating process. mkdir of a run failed with EINVAL (so did `aletheia run`) when the
    creating process had an argument or a working directory that is not UTF-8 (a Latin-1 file
    name, a git remote URL), or a command line over 8 KiB of non-ASCII text, which is cut at
    8,192 bytes in the middle of a character: the command recorded must not decide whether the run exists."""
    runs = mount.path / "p" / "experiments" / "e" / "runs"
    os.makedirs(runs, exist_ok=True)
    mkdir = "import os, sys; os.mkdir(sys.argv[1])"
    env = dict(os.environ, LC_ALL="C.UTF-8")
    r = subprocess.run([PY, "-c", mkdir, str(runs / "1"), b"caf\xe9.csv"], capture_output=True, env=env)
    assert r.returncode == 0, f"argument not UTF-8: {r.stderr.decode(errors='replace')[-200:]}"
    odd = mount.root / b"d\xe9j\xe0".decode("utf-8", "surrogateescape")
    os.mkdir(odd)
    r = subprocess.run([PY, "-c", mkdir, str(runs / "2")], cwd=odd, capture_output=True, env=env)
    assert r.returncode == 0, f"cwd not UTF-8: {r.stderr.decode(errors='replace')[-200:]}"
    args = ["a" * k for k in (1, 2, 3)]
    for k, pad in enumerate(args):   # one of the three puts the 8,192-byte cut inside a character
        r = subprocess.run([PY, "-c", mkdir, str(runs / f"1{k}"), pad] + ["\u65e5\u672c\u8a9e"] * 1000,
                           capture_output=True, env=env)
        assert r.returncode == 0, f"long non-ASCII command line ({len(pad)}): {r.stderr.decode()[-200:]}"
    # a repository whose remote URL (or branch) is not UTF-8: its git state is recorded
    repo = mount.root / "repo"
    os.mkdir(repo)
    sh("git init -q && git -c user.email=a@b -c user.name=n commit -q --allow-empty -m x && "
       "git remote add origin \"$(printf 'https://example.org/r\\xe9po.git')\"", cwd=repo)
    r = subprocess.run([PY, "-c", mkdir, str(runs / "3")], cwd=repo, capture_output=True, env=env)
    assert r.returncode == 0, f"git remote not UTF-8: {r.stderr.decode(errors='replace')[-200:]}"
    for name in ("1", "2", "3", "10", "11", "12"):
        assert read_json(runs / name / "run.json")["status"] == "running"


def test_a_run_whose_params_were_accepted_can_still_be_ended(run):
    """README "params"/"Durability": a value is checked when it is accepted, and what close()
    accepted is never refused later; status is always writable. A run whose params fill its
    document up to the last few bytes of Firestore's 1 MiB was accepted, and then `echo finished >
    status` failed with EINVAL ("document … would be 1048579 bytes"): the run could never be
    ended (aletheia run could not record its exit)."""
    def size_ok(n):
        return try_write(run / "params" / "big", b"a" * n) == 0
    lo, hi = 1_000_000, 1_048_576
    while lo < hi:   # the largest param the run accepts
        mid = (lo + hi + 1) // 2
        if size_ok(mid):
            lo = mid
        else:
            hi = mid - 1
    assert size_ok(lo)
    e = try_write(run / "status", b"failed 3\n")
    assert e == 0, f"ending the run failed with {errno.errorcode.get(e, e)}"
    assert read_json(run / "run.json")["status"] == "failed"


def test_text_that_only_starts_like_json_is_a_string(run):
    """README "params": a JSON object or array is that JSON value, anything else a string.
    Text that starts with a JSON array or object and goes on ("[1] first try", "{} empty") was
    refused at close() with EINVAL instead of being stored as the string written."""
    for i, text in enumerate(["[1] first try", "{} empty", "[2023] baseline", '{"a": 1} and more']):
        e = try_write(run / "params" / f"t{i}", text + "\n")
        assert e == 0, f"{text!r}: close() failed with {errno.errorcode.get(e, e)}"
        assert (run / "params" / f"t{i}").read_text() == text + "\n"
        assert read_json(run / "params.json")[f"t{i}"] == text


def test_a_nested_name_past_firestores_document_id_limit_is_refused(run):
    """README "The tree"/"params": names are valid Firestore document ids (at most 1,500 bytes)
    and Firestore's limits hold for every store, so a project moves to Firestore unchanged. A
    nested artifact or metric is one document whose id is its whole encoded path ("a%2Fb%2Fc"):
    three folders of 600 bytes make an id of 1,800+ bytes. Over Firestore its creation fails
    (EINVAL: the server refuses the id); the embedded store accepted it, so the project could
    not move to Firestore."""
    seg = "q" * 600
    for top in ("artifacts", "metrics"):
        d = run / top / seg / seg
        os.makedirs(d, exist_ok=True)
        e = try_write(d / seg, b"1\n", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        assert e in (errno.EINVAL, errno.ENAMETOOLONG), \
            f"{top}: a {len(str(d / seg)) - len(str(run / top)) - 1}-byte nested name was accepted"


@pytest.mark.local_store_only
def test_mounting_a_store_on_a_full_disk_names_the_cause(tmpdir_al, mount_factory):
    """README "The command line": a store that cannot be mounted gives one line on stderr naming
    the cause and the fix. With the disk of the store full (after a session filled it), the
    mount failed with "store …: set up: disk I/O error": neither the cause (no space left) nor a
    fix, and nothing of the store could be read to copy it away."""
    disk = tmpdir_al / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        m = mount_factory(store=disk / "store", blobs=disk / "blobs", cache=disk / "cache")
        run = mkrun(m)
        sh("echo 0.1 > params/lr && echo 1 >> metrics/m", cwd=run)
        m.umount()
        with open(disk / "fill", "wb") as f:   # another program fills the disk
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
            except OSError:
                pass
        try:
            m.start()
        except AssertionError:
            log = m.log_text().splitlines()[-1]
            assert "space" in log.lower() or "full" in log.lower(), f"the mount failed saying: {log}"
            return
        assert (run / "params" / "lr").read_text() == "0.1\n"
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(tmpdir_al / "mnt")], capture_output=True)
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# ---- what is shown: mtimes, versions -------------------------------------------------------------

def test_an_ended_runs_artifacts_keep_their_mtimes(run):
    """README "Run lifecycle": once a run is not running, everything in it but description and
    status is read-only (EROFS). utime()/touch on an artifact of a finished run succeeded and
    recorded the new mtime (and moved run.json's), so a finished run's record still changed."""
    (run / "artifacts" / "a.txt").write_text("hi\n")
    (run / "status").write_text("finished\n")
    before = os.stat(run / "artifacts" / "a.txt").st_mtime_ns
    rj = os.stat(run / "run.json").st_mtime_ns
    try:
        os.utime(run / "artifacts" / "a.txt", (0, 1_000_000_000))
    except OSError as e:
        assert e.errno == errno.EROFS, errno.errorcode.get(e.errno, e.errno)
    assert os.stat(run / "artifacts" / "a.txt").st_mtime_ns == before, "an ended run's artifact mtime changed"
    assert os.stat(run / "run.json").st_mtime_ns == rj


XXH_C = r"""
#include <stdio.h>
#include <xxhash.h>
int main(void) { XXH3_state_t *s = XXH3_createState(); char b[65536]; size_t n;
  XXH3_128bits_reset(s); while ((n = fread(b, 1, sizeof b, stdin)) > 0) XXH3_128bits_update(s, b, n);
  XXH128_canonical_t c; XXH128_canonicalFromHash(&c, XXH3_128bits_digest(s));
  for (int i = 0; i < 16; i++) printf("%02x", c.digest[i]); printf("\n"); return 0; }
"""


def test_a_dataset_version_sorts_its_files_by_path(mount):
    """README "datasets": the version is the xxh3-128 digest of the dataset's files sorted by
    path, one line each, PATH<TAB>SIZE<TAB>HASH. The daemon sorts the whole lines instead, which
    orders differently when a name holds a byte below TAB or a TAB ("a" and "a\\x01", "a\\t!"):
    the version then differs from the one the README's recipe gives."""
    tool = mount.root / "xxh128"
    src = mount.root / "xxh128.c"
    src.write_text(XXH_C)
    r = subprocess.run(["cc", "-O2", "-o", str(tool), str(src), "-lxxhash"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build an xxh3-128 tool: {r.stderr[-200:]}")
    ds = mount.path / "p" / "datasets" / "d"
    os.makedirs(ds)
    for name, data in (("a", b"1\n"), ("a\x01", b"2\n"), ("a\t!", b"0123456789\n")):
        (ds / name).write_bytes(data)
    lines = []
    for name in os.listdir(ds):
        if name in (".dataset.json", ".description"):
            continue
        data = (ds / name).read_bytes()
        h = subprocess.run([str(tool)], input=data, capture_output=True).stdout.decode().strip()
        lines.append((name.encode(), b"%s\t%d\t%s\n" % (name.encode(), len(data), h.encode())))
    text = b"".join(line for _, line in sorted(lines))
    want = subprocess.run([str(tool)], input=text, capture_output=True).stdout.decode().strip()
    assert read_json(ds / ".dataset.json")["version"] == want
