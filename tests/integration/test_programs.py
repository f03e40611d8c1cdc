# aletheia integration tests: ordinary programs on the mount — editors and in-place tools changing values
# (sed -i, perl -pi, vim, nano, Python's write-temp-then-os.replace), and times set on a file still open
# (cp -p, cp -a).
import errno
import json
import os
import pty
import random
import select
import shutil
import signal
import string
import subprocess
import tempfile
import time

import pytest
from alutil import mkrun, read_json, sh, try_write

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
    assert listing(run) == ["artifacts", "datasets", "description", "fold", "metrics", "model", "params",
                            "params.json", "run.json", "status"]
    assert listing(exp) == ["artifacts", "description", "runs", "runs.csv"]


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
    # a value moved to a backup name is copied instead (mv and vim fall back to copying on EXDEV)
    with pytest.raises(OSError) as ei:
        os.rename(run / "params/lr", run / "params/lr~")
    assert ei.value.errno == errno.EXDEV
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
