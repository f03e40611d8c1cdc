# aletheia integration tests: ordinary programs on the mount — editors and in-place tools changing values
# (sed -i, perl -pi, vim, nano, Python's write-temp-then-os.replace), programs that keep working files in
# artifacts/ (SQLite with a rollback journal or WAL, git), and times set on a file still open (cp -p, cp -a).
import errno
import fcntl
import json
import os
import pty
import random
import select
import shutil
import signal
import sqlite3
import string
import subprocess
import threading
import tempfile
import time
from contextlib import closing

import pytest
from alutil import FIRESTORE, PY, mkrun, read_json, sh, try_write

VIM = shutil.which("vim.basic") or shutil.which("vim")
NANO = shutil.which("nano")


def need(tool):
    if not tool:
        pytest.skip("the program is not installed")


def listing(folder):
    return sorted(os.listdir(folder))


def recorded(run):
    """What the run records: its params and its text fields, from run.json."""
    rj = read_json(run / "run.json")
    return rj["params"], {k: rj[k] for k in ("description", "model", "fold", "status")}


def value_files(mount):
    """Each kind of file that holds a value, with its content before and after an edit s/old/new/."""
    run = mkrun(mount)
    exp = run.parent.parent
    sh("echo 0.1 > params/lr && mkdir -p params/opt && echo adam-0.1 > params/opt/name && "
       "echo 'first 0.1' > description && echo resnet-0.1 > model", cwd=run)
    (exp / "description").write_text("exp 0.1\n")
    (mount.path / "p/metadata/info").write_text('{"v": 0.1, "k": "x"}\n')
    return run, [run / "params/lr", run / "params/opt/name", run / "description", run / "model",
                 exp / "description", mount.path / "p/metadata/info"]


def check_edited(mount, run, new="0.2"):
    """The edit of value_files landed everywhere, as values, with no stray key or file left behind."""
    exp = run.parent.parent
    params, fields = recorded(run)
    assert params == {"lr": float(new), "opt/name": f"adam-{new}"}
    assert fields["description"] == f"first {new}" and fields["model"] == f"resnet-{new}"
    assert (exp / "description").read_text() == f"exp {new}\n"
    assert json.loads((mount.path / "p/metadata/info").read_text()) == {"v": float(new), "k": "x"}
    assert read_json(run / "params.json") == params
    assert listing(run / "params") == ["lr", "opt"] and listing(run / "params/opt") == ["name"]
    assert listing(mount.path / "p/metadata") == ["info"]
    assert listing(run) == ["artifacts", "datasets", "description", "fold", "heartbeat", "metrics", "model",
                            "params", "params.json", "plots", "run.json", "status", "system.json", "tags"]
    assert listing(exp) == ["artifacts", "best", "description", "index.html", "plots", "runs",
                            "runs.changed.csv", "runs.csv", "tagged"]


def drive(argv, keys, cwd, env=None, settle=1.0, timeout=30):
    """Runs argv on a pseudo-terminal, types keys (a pause after each), waits for it to exit; returns its
    exit code and what it printed. Killed (and the test failed) if it does not exit in time."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.chdir(cwd)
            os.environ.update({"TERM": "xterm", "LC_ALL": "C.UTF-8", **(env or {})})
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    out = b""

    def pump(seconds):
        nonlocal out
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                out += data
    try:
        pump(settle)
        for k in keys:
            os.write(fd, k)
            pump(0.3)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            p, st = os.waitpid(pid, os.WNOHANG)
            if p:
                return os.waitstatus_to_exitcode(st), out
            pump(0.1)
        raise AssertionError(f"{argv} did not exit within {timeout} s; screen: {out[-500:]!r}")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


# ---- editors and in-place tools (README "Editing values in place") -------------------------------------

def test_sed_i_edits_every_kind_of_value(mount):
    run, files = value_files(mount)
    for f in files:
        sh(f"sed -i s/0.1/0.2/ '{f}'")
    check_edited(mount, run)
    # status and fold too, and a run that ended keeps its description editable
    sh("echo 3 > fold && sed -i s/3/4/ fold && sed -i s/running/finished/ status", cwd=run)
    assert recorded(run)[1]["fold"] == 4 and recorded(run)[1]["status"] == "finished"
    sh("sed -i s/0.2/0.3/ description", cwd=run)
    assert (run / "description").read_text() == "first 0.3\n"
    r = sh("sed -i s/0.2/0.3/ params/lr", cwd=run, check=False)
    assert r.returncode != 0 and (run / "params/lr").read_text() == "0.2\n"
    mount.umount()
    mount.start()
    assert (run / "description").read_text() == "first 0.3\n" and read_json(run / "params.json")["lr"] == 0.2
    assert listing(run / "params") == ["lr", "opt"]


def test_perl_pi_edits_every_kind_of_value(mount):
    run, files = value_files(mount)
    for f in files:
        sh(f"perl -pi -e 's/0\\.1/0.2/' '{f}'")
    check_edited(mount, run)


def test_python_temp_file_and_os_replace(mount):
    run, files = value_files(mount)
    for f in files:
        text = f.read_text().replace("0.1", "0.2")
        with tempfile.NamedTemporaryFile("w", dir=f.parent, delete=False) as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, f)
    check_edited(mount, run)
    # a writer that renames before it closes: what it writes after the rename lands too
    with tempfile.NamedTemporaryFile("w", dir=run, prefix=".desc.", delete=False) as tmp:
        tmp.write("late ")
        tmp.flush()
        os.replace(tmp.name, run / "description")
        tmp.write("writer\n")
    assert (run / "description").read_text() == "late writer\n"
    assert recorded(run)[1]["description"] == "late writer"
    assert ".desc." not in " ".join(listing(run))


@pytest.mark.parametrize("opts", ["", "set backupskip=", "set backupskip= backupcopy=no",
                                  "set backupskip= backupcopy=yes"])
def test_vim_edits_every_kind_of_value(mount, opts):
    need(VIM)
    run, files = value_files(mount)
    for f in files:
        cmd = [VIM, "-N", "-i", "NONE", "-E", "-s"] + (["-c", opts] if opts else []) + \
              ["-c", "%s/0\\.1/0.2/", "-c", "wq", str(f)]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, cwd=f.parent)
        assert r.returncode == 0, (opts, f, r.stdout[-300:], r.stderr[-300:])
    check_edited(mount, run)


def test_vim_backup_file_is_a_scratch_file(mount):
    """With 'backup' vim keeps NAME~: shown while mounted, never recorded, deletable without --allow-delete."""
    need(VIM)
    run, files = value_files(mount)
    r = subprocess.run([VIM, "-N", "-i", "NONE", "-E", "-s", "-c", "set backupskip= backup", "-c",
                        "%s/0\\.1/0.2/", "-c", "wq", "lr"], cwd=run / "params", stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert listing(run / "params") == ["lr", "lr~", "opt"]
    assert (run / "params/lr~").read_text() == "0.1\n"
    assert read_json(run / "params.json") == {"lr": 0.2, "opt/name": "adam-0.1"}
    os.unlink(run / "params/lr~")
    assert listing(run / "params") == ["lr", "opt"]
    (run / "params/lr~").write_text("again\n")
    mount.umount()
    mount.start()
    assert listing(run / "params") == ["lr", "opt"]   # scratch files live in memory only


def test_nano_edits_in_place_with_a_backup(mount):
    need(NANO)
    run, files = value_files(mount)
    # Firestore's update time replaces the mount's own a few seconds after a write is delivered,
    # and nano warns about a file changed since it opened it: edit after that (README "Known
    # limitations")
    mount.wait_idle()
    if FIRESTORE:
        time.sleep(6)
    # ^K cuts a line, then the new text, ^O and Enter write, ^X leaves; -B keeps a backup NAME~
    for f, new in ((run / "params/lr", b"0.2"), (run / "description", b"first 0.2"),
                   (mount.path / "p/metadata/info", b'{"v": 0.2, "k": "x"}')):
        cut = [b"\x0b"] * f.read_text().count("\n")
        code, screen = drive([NANO, "-B", f.name], cut + [new, b"\x0f", b"\r", b"\x18"], cwd=f.parent)
        assert code == 0, screen[-400:]
        if f.name == "info":
            assert json.loads(f.read_text()) == {"v": 0.2, "k": "x"}
        else:
            assert f.read_text() == new.decode() + "\n", screen[-400:]
        assert (f.parent / (f.name + "~")).read_text().count("0.1") == 1
        os.unlink(f.parent / (f.name + "~"))
    assert read_json(run / "params.json") == {"lr": 0.2, "opt/name": "adam-0.1"}
    assert recorded(run)[1]["description"] == "first 0.2"
    assert listing(run / "params") == ["lr", "opt"] and listing(mount.path / "p/metadata") == ["info"]
    assert ".description.swp" not in listing(run)


def test_an_editor_killed_mid_edit_loses_nothing(mount):
    run, files = value_files(mount)
    lr = run / "params/lr"
    # killed between sed's temporary file and its rename: the value stays, the temporary is not a param
    name = "sed" + "".join(random.choice(string.ascii_letters + string.digits) for _ in range(6))
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(run / "params" / name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, b"0.9\n")
            os.close(fd)
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    # killed between vim's ftruncate() and its write (vim opens without O_TRUNC)
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(lr, os.O_WRONLY | os.O_CREAT)
            os.ftruncate(fd, 0)
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert lr.read_text() == "0.1\n"
    assert read_json(run / "params.json") == {"lr": 0.1, "opt/name": "adam-0.1"}
    scratch = [n for n in listing(run / "params") if n not in ("lr", "opt")]
    assert scratch == [name]
    if VIM:
        # vim itself killed while editing: its swap file stays until removed, the value is untouched
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.chdir(run / "params")
                os.environ["TERM"] = "xterm"
                os.execv(VIM, [VIM, "-N", "-i", "NONE", "lr"])
            finally:
                os._exit(127)
        deadline, screen = time.monotonic() + 30, b""
        while b'"lr"' not in screen:   # vim's message once the file is loaded (and its swap made)
            assert time.monotonic() < deadline, f"vim did not load the file: {screen[-300:]!r}"
            if select.select([fd], [], [], 0.1)[0]:
                screen += os.read(fd, 65536)
        os.write(fd, b"ccchanged\x1b:w\r")   # changes the line, then dies before or while writing
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
        assert lr.read_text() in ("0.1\n", "changed\n")
        left = [n for n in listing(run / "params") if n not in ("lr", "opt") + tuple(scratch)]
        assert ".lr.swp" in left and all(n.startswith(".lr.sw") for n in left), left
        assert set(read_json(run / "params.json")) == {"lr", "opt/name"}
        for name in left:
            os.unlink(run / "params" / name)
    for name in scratch:
        os.unlink(run / "params" / name)
    assert listing(run / "params") == ["lr", "opt"]


def test_scratch_file_rules(mount):
    run = mkrun(mount)
    sh("echo 0.1 > params/lr", cwd=run)
    # written and read like any file, listed, never recorded
    sh("printf 'a\\0b' > params/.lr.swp && echo x > 'params/#lr#' && echo y > params/tmpab_cd12x && "
       "echo z > params/lr.tmp && echo w > .description.swp", cwd=run)
    assert (run / "params/.lr.swp").read_bytes() == b"a\0b"
    assert listing(run / "params") == ["#lr#", ".lr.swp", "lr", "lr.tmp", "tmpab_cd12x"]
    assert read_json(run / "params.json") == {"lr": 0.1}
    assert ".description.swp" in listing(run) and "description" in listing(run)
    # renamed over a value: that value, checked as a close would check it
    os.rename(run / "params/lr.tmp", run / "params/lr")
    assert read_json(run / "params.json") == {"lr": "z"}
    sh("echo banana > .status.tmp", cwd=run)
    with pytest.raises(OSError) as ei:
        os.rename(run / ".status.tmp", run / "status")
    assert ei.value.errno == errno.EINVAL
    assert recorded(run)[1]["status"] == "running"
    # a value moved to a backup name is copied: the backup holds its content, the value stays
    lr = (run / "params/lr").read_text()
    os.rename(run / "params/lr", run / "params/lr~")
    assert (run / "params/lr~").read_text() == lr and (run / "params/lr").read_text() == lr
    os.unlink(run / "params/lr~")
    # onto read-only files or across folders: refused (EXDEV where the target takes files)
    with pytest.raises(OSError) as ei:
        os.rename(run / "params/#lr#", run / "run.json")
    assert ei.value.errno in (errno.EPERM, errno.EACCES)
    with pytest.raises(OSError) as ei:
        os.rename(run / "params/#lr#", run / "artifacts/x")
    assert ei.value.errno == errno.EXDEV
    # deleted without --allow-delete
    for n in ("#lr#", ".lr.swp", "tmpab_cd12x"):
        os.unlink(run / "params" / n)
    os.unlink(run / ".status.tmp")
    os.unlink(run / ".description.swp")
    assert listing(run / "params") == ["lr"]
    # anywhere else a scratch name is what it always was
    with pytest.raises(OSError):
        (run.parent / ".x.swp").write_text("x")
    sh("echo y > artifacts/.x.swp", cwd=run)
    assert read_json(run / "run.json")["artifacts"]["count"] == 1
    # params/ of a run that ended takes no new files, scratch or not
    sh("echo finished > status", cwd=run)
    assert try_write(run / "params/.lr.swp", b"x") == errno.EROFS


# ---- working files in artifacts/ (README "artifacts") ---------------------------------------------------

def sqlite_work(db, mode, rows=30):
    """Creates a table and rows through two connections at once, in journal mode `mode`."""
    with closing(sqlite3.connect(db, timeout=30)) as a, closing(sqlite3.connect(db, timeout=30)) as b:
        assert a.execute(f"pragma journal_mode={mode}").fetchone()[0] == mode
        a.execute("create table t(id integer primary key, v text)")
        a.commit()
        for i in range(rows):
            a.execute("insert into t(v) values (?)", (f"row {i} " * 30,))
            a.commit()
            assert b.execute("select count(*) from t").fetchone()[0] == i + 1
        b.execute("insert into t(v) values ('from b')")
        b.commit()
        assert a.execute("select count(*) from t").fetchone()[0] == rows + 1


def sqlite_check(db, uri=False):
    """The row count of a database that passes its integrity check."""
    with closing(sqlite3.connect(db, uri=uri, timeout=30)) as c:
        assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
        return c.execute("select count(*) from t").fetchone()[0]


WRITER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=60)
for i in range(40):
    c.execute("insert into t(v) values (?)", ("other process %d" % i,))
    c.commit()
c.close()
"""


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_sqlite_database_in_artifacts(mount, mode):
    run = mkrun(mount)
    db = run / "artifacts/r.db"
    sqlite_work(db, mode)
    assert sqlite_check(db) == 31
    # another process writes while this one reads (POSIX locks, and in WAL mode the mmap'ed -shm)
    p = subprocess.Popen([PY, "-c", WRITER, str(db)], stderr=subprocess.PIPE, text=True)
    seen = 0
    try:
        with closing(sqlite3.connect(db, timeout=60)) as c:
            while p.poll() is None:
                seen = c.execute("select count(*) from t").fetchone()[0]
                time.sleep(0.05)
    finally:
        if p.poll() is None:
            p.kill()
        err = p.communicate(timeout=60)[1]
    assert p.returncode == 0, err
    assert sqlite_check(db) == 71 and seen <= 71
    # closed: no journal, -wal or -shm left behind, and only the database recorded
    assert listing(run / "artifacts") == ["r.db"]
    assert read_json(run / "run.json")["artifacts"]["count"] == 1
    sh("echo finished > status", cwd=run)
    copy = mount.root / f"copy-{mode}.db"
    shutil.copyfile(db, copy)
    assert sqlite_check(copy) == 71
    # a finished run is read-only: a WAL database opens as immutable there
    assert sqlite_check(f"file:{db}?immutable=1", uri=True) == 71
    mount.umount()
    mount.start()
    shutil.copyfile(db, copy)
    assert sqlite_check(copy) == 71


def git(args, cwd, check=True):
    return sh("git -c user.email=a@b -c user.name=n -c init.defaultBranch=main " + args, cwd=cwd, check=check)


def test_git_repositories_in_artifacts(mount):
    src = mount.root / "src"
    src.mkdir()
    git("init -q", src)
    for i in range(3):
        (src / f"f{i}.txt").write_text(f"line {i}\n")
        (src / "sub").mkdir(exist_ok=True)
        (src / "sub" / f"g{i}").write_text(f"{i}\n")
        git("add -A && git -c user.email=a@b -c user.name=n commit -q -m c" + str(i), src)
    run = mkrun(mount)
    art = run / "artifacts"
    git(f"clone -q '{src}' repo", art)
    git(f"clone -q 'file://{src}' repo2", art)
    (art / "fresh").mkdir()
    git("init -q", art / "fresh")
    (art / "fresh" / "a.txt").write_text("a\n")
    git("add a.txt && git -c user.email=a@b -c user.name=n commit -q -m first", art / "fresh")
    (art / "repo" / "f0.txt").write_text("changed on the mount\n")
    git("commit -q -am 'on the mount'", art / "repo")
    assert git("status --porcelain", art / "repo").stdout == ""
    assert git("log --oneline", art / "repo").stdout.count("\n") == 4
    # no lock files or temporary objects left recorded
    names = sh(f"find '{art}' -name '*.lock' -o -name 'tmp_obj_*' -o -name 'tmp_pack_*'").stdout
    assert names == ""
    sh("echo finished > status", cwd=run)
    copy = mount.root / "copy"
    shutil.copytree(art, copy)
    assert git("log --format=%s", copy / "repo").stdout.split("\n")[:2] == ["on the mount", "c2"]
    assert git("log --format=%s", copy / "repo2").stdout.split() == ["c2", "c1", "c0"]
    assert git("log --format=%s", copy / "fresh").stdout.split() == ["first"]
    for r in ("repo", "repo2", "fresh"):
        git("fsck --strict", copy / r)
    mount.umount()
    mount.start()
    shutil.rmtree(copy)
    shutil.copytree(art, copy)
    git("fsck --strict", copy / "repo")
    assert (copy / "repo/f0.txt").read_text() == "changed on the mount\n"


def test_artifacts_are_a_working_folder(mount):
    run = mkrun(mount)
    art = run / "artifacts"
    sh("mkdir -p d/e && echo a > a.txt && echo b > d/e/b.txt && echo c > d/c.txt && echo keep > keep.txt", cwd=art)
    os.unlink(art / "a.txt")
    sh("rm -r d", cwd=art)
    assert listing(art) == ["keep.txt"]
    # truncated, rewritten in place, locked
    sh("echo 0123456789 > f && truncate -s 4 f", cwd=art)
    assert (art / "f").read_bytes() == b"0123"
    with open(art / "f", "r+b") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)
        f.seek(2)
        f.write(b"XY")
        fcntl.flock(f, fcntl.LOCK_EX)
    assert (art / "f").read_bytes() == b"01XY"
    # deleted while open: its close records nothing; renamed while open: recorded under the new name
    w = open(art / "gone", "wb")
    w.write(b"x")
    os.unlink(art / "gone")
    w.write(b"y")
    w.close()
    w = open(art / "moving", "wb")
    w.write(b"first ")
    w.flush()
    os.rename(art / "moving", art / "moved")
    w.write(b"second")
    w.close()
    assert (art / "moved").read_bytes() == b"first second"
    assert listing(art) == ["f", "keep.txt", "moved"]
    assert read_json(run / "run.json")["artifacts"] == {"count": 3, "bytes": 4 + 5 + 12}
    # an experiment's artifacts/ too
    ea = run.parent.parent / "artifacts"
    sh("mkdir x && echo 1 > x/one && rm -r x && echo 2 > two && rm two", cwd=ea)
    assert listing(ea) == []
    mount.umount()
    mount.start()
    assert listing(art) == ["f", "keep.txt", "moved"] and (art / "moved").read_bytes() == b"first second"
    # a run that ended keeps its artifacts; runs, experiments and projects stay guarded
    sh("mkdir artifacts/d && echo 1 > artifacts/d/x && echo finished > status", cwd=art.parent)
    sh("echo kept > ../../../artifacts/kept", cwd=art)   # the experiment's, while its run ran
    for p, fn in ((art / "f", os.unlink), (art / "d/x", os.unlink), (art / "d", os.rmdir),
                  (run, os.rmdir), (run.parent.parent, os.rmdir), (ea / "kept", os.unlink)):
        with pytest.raises(OSError) as ei:
            fn(p)
        assert ei.value.errno in (errno.EPERM, errno.ENOTEMPTY), p
    assert listing(art) == ["d", "f", "keep.txt", "moved"]
    assert listing(ea) == ["kept"]   # no run of the experiment is running: guarded


def test_rmdir_of_a_folder_with_files_is_refused(mount):
    run = mkrun(mount)
    sh("mkdir -p artifacts/d && echo 1 > artifacts/d/x", cwd=run)
    with pytest.raises(OSError) as ei:
        os.rmdir(run / "artifacts/d")
    assert ei.value.errno == errno.ENOTEMPTY
    assert (run / "artifacts/d/x").read_text() == "1\n"


# ---- times set on an open file (README "Files behave like files") ----------------------------------------

def test_cp_p_and_cp_a_keep_mtimes(mount):
    src = mount.root / "src"
    src.mkdir()
    for i, when in enumerate(("2020-01-02 03:04:05", "2019-06-07 08:09:10")):
        (src / f"f{i}").write_text(f"{i}\n" * 100)
        sh(f"touch -d '{when}' '{src}/f{i}'")
    run = mkrun(mount)
    ds = mount.path / "p/datasets/d"
    ds.mkdir()
    targets = []
    for dst in (run / "artifacts", ds):
        sh(f"cp -p '{src}/f0' '{dst}/p0' && cp -a '{src}/f1' '{dst}/a1' && cp -a '{src}' '{dst}/tree'")
        targets += [(dst / "p0", src / "f0"), (dst / "a1", src / "f1"), (dst / "tree/f0", src / "f0"),
                    (dst / "tree/f1", src / "f1")]

    def check():
        for got, want in targets:
            assert sh(f"stat -c %Y '{got}'").stdout == sh(f"stat -c %Y '{want}'").stdout, got
            assert got.read_bytes() == want.read_bytes()
    check()
    mount.umount()
    mount.start()
    check()


def test_reads_through_a_shared_write_handle_while_it_commits(mount):
    """A file open for writing by two descriptors is one open file; one keeps committing it
    (fsync, as SQLite does) while the other keeps reading: every read gives a block that was
    written, never bytes of another file (the committed copy's descriptor is replaced under the
    reader)."""
    LETTERS = bytes(range(65, 91))
    run = mkrun(mount)
    path = run / "artifacts" / "shared.bin"
    path.write_bytes(b"A" * 65536)
    stop = threading.Event()
    bad, reads = [], [0]

    def reader():
        r = os.open(path, os.O_RDWR)
        try:
            while not stop.is_set():
                os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)   # ask the daemon, not the cache
                got = os.pread(r, 65536, 0)
                reads[0] += 1
                # a read racing a write may mix two blocks, as on any disk; never other bytes
                if len(got) != 65536 or got.translate(None, LETTERS):
                    bad.append((len(got), got.translate(None, LETTERS)[:8]))
        except OSError as e:
            bad.append(repr(e))
        finally:
            os.close(r)

    def noise():   # other files opened and closed: a closed descriptor's number is reused
        i = 0
        while not stop.is_set():
            (run / "artifacts" / f"noise{i % 4}").write_bytes(b"\1" * 65536)
            i += 1

    w = os.open(path, os.O_RDWR)
    threads = [threading.Thread(target=f, daemon=True) for f in (reader, reader, reader, noise)]
    for t in threads:
        t.start()
    try:
        for i in range(1000):
            os.pwrite(w, bytes([65 + i % 26]) * 65536, 0)
            os.fsync(w)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        os.close(w)
    assert reads[0] > 0
    assert not bad, bad[:5]


def test_cp_backup_onto_a_value_fails_and_keeps_it(mount):
    """README "Known limitations": `cp --backup` and `install -b` move a value's file aside (a
    copy: the value stays), then create it with O_EXCL, which finds it: they fail with "File
    exists" and put the backup back. Nothing may change nor be left behind; into `artifacts/` the
    same command works."""
    run = mkrun(mount)
    sh("echo 0.1 > params/lr && echo old > artifacts/a", cwd=run)
    src = mount.root / "new"
    src.write_text("0.2\n")
    for cmd in (f"cp --backup=simple '{src}' params/lr", f"install -b -m 644 '{src}' params/lr"):
        r = sh(cmd, cwd=run, check=False)
        assert r.returncode != 0 and "File exists" in r.stderr, (cmd, r.returncode, r.stderr)
        assert (run / "params/lr").read_text() == "0.1\n"
        assert listing(run / "params") == ["lr"]
    assert recorded(run)[0] == {"lr": 0.1}
    sh(f"cp --backup=simple '{src}' artifacts/a", cwd=run)
    assert (run / "artifacts/a").read_text() == "0.2\n" and (run / "artifacts/a~").read_text() == "old\n"


def test_tar_of_a_run_into_a_new_run(mount):
    """README "Known limitations": `tar x` over a new run's own values (fold, model, description,
    params.json exist in every run) fails, as it removes each file first, and changes none of them;
    `tar x --overwrite` restores the run: params, fields, metric points and artifacts."""
    a = mkrun(mount, "1")
    sh("echo '{\"lr\": 0.01, \"opt\": \"adam\"}' > params.json && echo 3 > fold && echo resnet > model && "
       "printf '0 1.5\\n1 1.25\\n2 1.0\\n' > metrics/loss && head -c 300000 /dev/urandom > artifacts/w.bin",
       cwd=a)
    tarball = mount.root / "run.tar"
    sh(f"tar cf '{tarball}' -C '{a}' params.json fold model description metrics artifacts")
    b, c = mkrun(mount, "2"), mkrun(mount, "3")
    before = recorded(b)
    r = sh(f"tar xf '{tarball}' -C '{b}'", check=False)
    assert r.returncode != 0 and "File exists" in r.stderr, (r.returncode, r.stderr)
    assert recorded(b)[1] == before[1]   # fold, model, description as they were
    sh(f"tar xf '{tarball}' --overwrite -C '{c}'")
    pa, fa = recorded(a)
    pc, fc = recorded(c)
    assert pc == pa == {"lr": 0.01, "opt": "adam"}
    assert (fc["fold"], fc["model"], fc["description"]) == (fa["fold"], fa["model"], fa["description"])
    steps = lambda run: [ln.split()[:2] for ln in (run / "metrics/loss").read_text().splitlines()]
    assert steps(c) == steps(a) == [["0", "1.5"], ["1", "1.25"], ["2", "1"]]
    assert (c / "artifacts/w.bin").read_bytes() == (a / "artifacts/w.bin").read_bytes()
