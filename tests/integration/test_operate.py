# aletheia integration tests: operated like any mount (README "fstab and systemd", "Many users on one
# machine"): mount(8) with an alternative fstab and the helper, the systemd units, two users.
import os
import pathlib
import pwd
import re
import shutil
import subprocess
import tempfile

import pytest

import alutil
from alutil import read_json, sh, try_write

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="mount(8) helpers in /sbin and other users need root")


def mounted(path):
    """The mountinfo line of path, or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(path):
                return line
    return None


def daemon_pid(mnt):
    for line in (pathlib.Path(mnt) / ".aletheia" / "status").read_text().splitlines():
        if line.startswith("pid:"):
            return int(line.split(":", 1)[1])
    raise AssertionError("no pid in .aletheia/status")


def alive(pid):
    """A zombie leader whose other threads are still ending still holds its files (its locks)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            st = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        return not (st["State"].split()[0] == "Z" and int(st["Threads"]) <= 1)
    except FileNotFoundError:
        return False


def escape_path(path):
    """path as `systemd-escape --path` writes it: the name of a mount point's cache folder under
    /var/cache/aletheia (README "fstab and systemd")."""
    parts = [p for p in str(path).split("/") if p]
    if not parts:
        return "-"
    out = "".join(c if c.isascii() and (c.isalnum() or c in ":_.") else "".join(f"\\x{b:02x}" for b in c.encode())
                  for c in "/".join(parts)).replace("\\x2f", "-")
    return "\\x2e" + out[1:] if out.startswith(".") else out


def system_cache(mnt):
    return pathlib.Path("/var/cache/aletheia") / escape_path(mnt)


def no_home_env():
    """A boot-time mount's environment: no $HOME, no XDG folders."""
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
                                                              "XDG_DATA_HOME", "ALETHEIA_CONFIG", "ALETHEIA_MOUNT")}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    return env


@pytest.fixture
def helper(tmpdir_al):
    """mount(8) runs helpers from /sbin only: links to the binary under a type of this test's own,
    mount.altestN, mount.fuse.altestN and umount.fuse.altestN (the daemon names its mount fuse.altestN after it), removed
    after. Yields (type, root folder); whatever is still mounted there is unmounted and its daemon
    killed."""
    if not ROOT:
        pytest.skip("mount(8) helpers in /sbin need root")
    if shutil.which("mount") is None:
        pytest.skip("mount(8) is missing")
    t = f"altest{os.getpid()}"
    links = [pathlib.Path(f"/sbin/mount.{t}"), pathlib.Path(f"/sbin/mount.fuse.{t}"),
             pathlib.Path(f"/sbin/umount.fuse.{t}")]
    for link in links:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(alutil.BIN)
    pids = []
    yield t, tmpdir_al, pids
    for line in open("/proc/self/mountinfo").read().splitlines():
        mp = line.split()[4]
        if mp.startswith(str(tmpdir_al)):
            try:
                pids.append(daemon_pid(mp))
            except (OSError, AssertionError):
                pass
            alutil.fusermount(mp, lazy=True)
    for pid in pids:
        if alive(pid):
            os.kill(pid, 9)
    for link in links:
        link.unlink()


def fstab_line(source, mnt, t, opts):
    return f"{source} {mnt} {t} {opts} 0 0\n"


def mount_T(fstab, mnt, env=None):
    return subprocess.run(["mount", "-T", str(fstab), str(mnt)], capture_output=True, text=True, timeout=60,
                          env=env or no_home_env())


@pytest.mark.local_store_only
def test_fstab_mount_answers_and_umount_delivers(helper):
    """An fstab line with mount(8)'s and systemd's own options mounts without $HOME; mount returns only
    once the mount answers; umount(8) (through umount.fuse.TYPE) waits for the daemon, and what was
    written is there at the next mount."""
    t, root, pids = helper
    store, mnt, cache = root / "store", root / "mnt", root / "cache"
    store.mkdir()
    mnt.mkdir()
    fstab = root / "fstab"
    fstab.write_text(fstab_line(f"local:{store}", mnt, t, f"rw,noauto,_netdev,nofail,x-systemd.automount,"
                                                          f"x-systemd.idle-timeout=60,cache_dir={cache},"
                                                          f"cache_size=1G,allow_delete"))
    r = mount_T(fstab, mnt)
    assert r.returncode == 0, r.stderr
    # no wait: mount(8) returned once the daemon answered
    assert (mnt / ".aletheia" / "status").exists()
    line = mounted(mnt)
    assert line and f" fuse.{t} local:{store} " in line, line
    pid = daemon_pid(mnt)
    pids.append(pid)
    run = mnt / "p" / "experiments" / "e" / "runs" / "1"
    os.makedirs(run)
    (run / "params" / "lr").write_text("0.01\n")
    for i in range(100):
        with open(run / "metrics" / "loss", "a") as f:
            f.write(f"{i}\n")
    assert (cache / "aletheia.log").exists()
    r = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=120, env=no_home_env())
    assert r.returncode == 0, r.stderr
    assert mounted(mnt) is None
    assert not alive(pid), "the daemon is still running after umount returned"
    r = mount_T(fstab, mnt)
    assert r.returncode == 0, r.stderr
    pids.append(daemon_pid(mnt))
    assert (run / "params" / "lr").read_text() == "0.01\n"
    assert len(alutil.points(run / "metrics" / "loss")) == 100
    r = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=120, env=no_home_env())
    assert r.returncode == 0, r.stderr


@pytest.mark.local_store_only
def test_fuse_type_mounts_through_mount_fuse_helper(helper):
    """The type fuse.TYPE (as fuse.aletheia) runs mount.fuse.TYPE; the mount is the same."""
    t, root, pids = helper
    store, mnt = root / "store", root / "mnt"
    store.mkdir()
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", f"fuse.{t}", "-o", f"cache_dir={root}/cache,allow_other", f"local:{store}",
                        str(mnt)], capture_output=True, text=True, timeout=60, env=no_home_env())
    assert r.returncode == 0, r.stderr
    pids.append(daemon_pid(mnt))
    line = mounted(mnt)
    assert f" fuse.{t} local:{store} " in line and "allow_other" in line and "default_permissions" in line, line
    assert os.stat(mnt).st_mode & 0o7777 == 0o1777
    r = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert mounted(mnt) is None


@pytest.mark.local_store_only
def test_umount_lazy_keeps_serving_open_files_and_delivers_at_the_last_close(helper):
    """`umount -l` (umount.fuse.TYPE MNT -l, which is `aletheia umount --lazy`) detaches a mount in
    use at once; a file open in it still reads and writes, and the daemon ends once the last one is
    closed, with what was written through it delivered (there at the next mount)."""
    import time
    t, root, pids = helper
    store, mnt = root / "store", root / "mnt"
    store.mkdir()
    mnt.mkdir()
    opts = ["-o", f"cache_dir={root}/cache"]
    r = subprocess.run(["mount", "-t", t, *opts, f"local:{store}", str(mnt)], capture_output=True, text=True,
                       timeout=60, env=no_home_env())
    assert r.returncode == 0, r.stderr
    pid = daemon_pid(mnt)
    pids.append(pid)
    run = mnt / "p" / "experiments" / "e" / "runs" / "1"
    os.makedirs(run)
    f = open(run / "metrics" / "loss", "a")
    try:
        f.write("1\n")
        f.flush()
        r = subprocess.run(["umount", "-l", str(mnt)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and mounted(mnt) is None, r.stderr
        f.write("2\n3\n")
        f.flush()
        assert alive(pid), "the daemon ended while a file of its mount was open"
    finally:
        f.close()
    for _ in range(600):
        if not alive(pid):
            break
        time.sleep(0.1)
    assert not alive(pid), "the daemon still runs 60 s after the last file of its detached mount closed"
    r = subprocess.run(["mount", "-t", t, *opts, f"local:{store}", str(mnt)], capture_output=True, text=True,
                       timeout=60, env=no_home_env())
    assert r.returncode == 0, r.stderr
    pids.append(daemon_pid(mnt))
    assert [v for _, v, _ in alutil.points(run / "metrics" / "loss")] == ["1", "2", "3"]
    assert subprocess.run(["umount", str(mnt)], capture_output=True, timeout=120).returncode == 0


@pytest.mark.local_store_only
def test_mount_over_a_dead_mount_names_it_and_umount_removes_it(helper):
    """A mount whose daemon was killed answers ENOTCONN: `mount -t TYPE` there fails (32) with one
    line saying it is still mounted by a daemon that is gone and how to unmount it (never "does not
    exist; mkdir -p"); umount(8) (which is `aletheia umount`) removes it, and the mount then works."""
    import signal
    import time
    t, root, pids = helper
    store, mnt = root / "store", root / "mnt"
    store.mkdir()
    mnt.mkdir()
    cmd = ["mount", "-t", t, "-o", f"cache_dir={root}/cache", f"local:{store}", str(mnt)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=no_home_env())
    assert r.returncode == 0, r.stderr
    pid = daemon_pid(mnt)
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not alive(pid):
            break
        time.sleep(0.1)
    time.sleep(1.5)   # past the kernel's cached attributes of the mount's root
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=no_home_env())
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 32 and len(lines) == 1, r.stderr
    assert "daemon that is gone" in lines[0] and f"aletheia umount {mnt}" in lines[0], lines[0]
    r = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and mounted(mnt) is None, r.stderr
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=no_home_env())
    assert r.returncode == 0, r.stderr
    pids.append(daemon_pid(mnt))
    assert subprocess.run(["umount", str(mnt)], capture_output=True, timeout=120).returncode == 0


@pytest.mark.local_store_only
def test_fstab_without_home_uses_the_system_cache(helper):
    """Without cache_dir= and without $HOME the cache (and the daemon's log) is
    /var/cache/aletheia/<mount point as `systemd-escape --path` writes it>, never /root/.cache."""
    t, root, pids = helper
    store, mnt = root / "store", root / "mnt"
    store.mkdir()
    mnt.mkdir()
    fstab = root / "fstab"
    fstab.write_text(fstab_line(str(store), mnt, t, "defaults"))
    cache = system_cache(mnt)
    if shutil.which("systemd-escape"):   # the rule is systemd's: the same name as the mount's unit
        assert escape_path(mnt) == subprocess.run(["systemd-escape", "--path", str(mnt)], capture_output=True,
                                                  text=True, check=True).stdout.strip()
    try:
        r = mount_T(fstab, mnt)
        assert r.returncode == 0, r.stderr
        pids.append(daemon_pid(mnt))
        st = alutil.status(type("M", (), {"path": mnt})())
        assert str(cache) in st["cache"], st["cache"]
        assert (cache / "aletheia.log").exists()
        assert subprocess.run(["umount", str(mnt)], capture_output=True, timeout=120).returncode == 0
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        try:
            cache.parent.rmdir()   # /var/cache/aletheia, if the test made it and nothing else is there
        except OSError:
            pass


@pytest.mark.local_store_only
def test_fstab_names_the_cache_folder_an_older_version_used(helper):
    """Older versions named the cache /var/cache/aletheia/<mount point with / as ->, which two mount
    points could share (x-y, x/y). Where that folder is there and the new one is not, its journals
    may hold writes not delivered yet: mount says where, mounts with the new folder, and leaves the
    old one alone (it may be another mount point's)."""
    t, root, pids = helper
    store, mnt = root / "store", root / "mnt"
    store.mkdir()
    mnt.mkdir()
    cache = system_cache(mnt)
    old = pathlib.Path("/var/cache/aletheia") / str(mnt).strip("/").replace("/", "-")
    assert old != cache, "the test's mount point needs a '-' in its path"
    try:
        old.mkdir(parents=True)
        (old / "keep").write_text("x")
        r = subprocess.run(["mount", "-t", t, f"local:{store}", str(mnt)], capture_output=True, text=True,
                           timeout=60, env=no_home_env())
        assert r.returncode == 0, r.stderr
        pids.append(daemon_pid(mnt))
        assert f"cache_dir={old}" in r.stderr and str(cache) in r.stderr, r.stderr
        assert str(cache) in alutil.status(type("M", (), {"path": mnt})())["cache"]
        assert os.listdir(old) == ["keep"]
        assert subprocess.run(["umount", str(mnt)], capture_output=True, timeout=120).returncode == 0
        r = subprocess.run(["mount", "-t", t, f"local:{store}", str(mnt)], capture_output=True, text=True,
                           timeout=60, env=no_home_env())
        assert r.returncode == 0 and r.stderr == "", r.stderr   # said once: the new folder is there now
        pids.append(daemon_pid(mnt))
        assert subprocess.run(["umount", str(mnt)], capture_output=True, timeout=120).returncode == 0
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        try:
            cache.parent.rmdir()
        except OSError:
            pass


@pytest.mark.local_store_only
@pytest.mark.parametrize("case", ["unknown option", "missing store", "unreadable config", "config is a folder",
                                  "bad cache_size", "bad source"])
def test_fstab_bad_input_fails_with_one_line(helper, case):
    """Bad input (README "fstab and systemd"): mount exits non-zero with one line naming the cause, and
    nothing is mounted."""
    t, root, pids = helper
    store, mnt = root / "store", root / "mnt"
    store.mkdir()
    mnt.mkdir()
    (root / "cfgdir").mkdir()
    source, opts, cause = f"local:{store}", f"cache_dir={root}/cache", None
    if case == "unknown option":
        opts += ",colour=blue"
        cause = 'unknown mount option "colour=blue"'
    elif case == "missing store":
        source, cause = f"local:{root}/nostore", f"store {root}/nostore: No such file or directory"
    elif case == "unreadable config":
        opts += f",config={root}/missing.conf"
        cause = f"cannot read the configuration file {root}/missing.conf"
    elif case == "config is a folder":
        opts += f",config={root}/cfgdir"
        cause = f"cannot read the configuration file {root}/cfgdir"
    elif case == "bad cache_size":
        opts += ",cache_size=lots"
        cause = "bad mount option cache_size=lots"
    elif case == "bad source":
        source, cause = "mystore", 'bad source "mystore"'
    fstab = root / "fstab"
    fstab.write_text(fstab_line(source, mnt, t, opts))
    r = mount_T(fstab, mnt)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and cause in lines[0], r.stderr
    assert mounted(mnt) is None
    assert not (root / "nostore").exists()


@pytest.mark.local_store_only
def test_fstab_mount_point_in_use(helper, mount_factory):
    """A mount point already mounted: one line, exit non-zero, the first mount untouched."""
    t, root, pids = helper
    m = mount_factory()
    store = root / "store2"
    store.mkdir()
    fstab = root / "fstab"
    fstab.write_text(fstab_line(f"local:{store}", m.path, t, f"cache_dir={root}/cache2"))
    r = mount_T(fstab, m.path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "is already mounted" in lines[0], r.stderr
    assert mounted(m.path).count(" fuse.aletheia ") == 1
    os.mkdir(m.path / "p")
    assert (m.path / "p" / "experiments").is_dir()
    assert daemon_pid(m.path) == m.proc.pid


@pytest.mark.local_store_only
def test_a_mount_waits_for_the_last_daemon_of_its_store_to_finish(mount_factory):
    """`umount` returns once the kernel lets go of the mount point, while the daemon may still be
    finishing and holding its store's lock: a mount right after waits for it rather than fail with
    "already mounted by another aletheia process" (CI saw `umount; mount` fail so). Here the test
    holds the store's lock for a second itself, as such a daemon would."""
    import fcntl
    import threading
    m = mount_factory(start=False)
    m.store.mkdir(parents=True, exist_ok=True)
    fd = os.open(m.store / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, b"99999\n", 0)
        threading.Timer(1.0, lambda: fcntl.flock(fd, fcntl.LOCK_UN)).start()
        m.start()
        os.mkdir(m.path / "p")
        assert (m.path / "p" / "experiments").is_dir()
    finally:
        os.close(fd)


# ---- systemd ----------------------------------------------------------------------------------------

UNITS = pathlib.Path(alutil.BIN).parent / "systemd" if alutil.BIN else None


def unit_text(name):
    """The unit as built, its commands pointing at the binary under test."""
    text = (UNITS / name).read_text()
    return re.sub(r"(?m)(Exec\w+=)(\S*/)aletheia\b", lambda mt: mt[1] + alutil.BIN, text)


def test_systemd_units_verify(tmpdir_al):
    """systemd-analyze verify finds nothing to say about the system template (as an instance) and the
    user unit."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing (apt-get install systemd)")
    d = tmpdir_al / "units"
    d.mkdir()
    (d / "aletheia@.service").write_text(unit_text("aletheia@.service"))
    (d / "aletheia@mnt-team.service").write_text(unit_text("aletheia@.service"))
    (d / "aletheia.service").write_text(unit_text("aletheia.service"))
    r = subprocess.run(["systemd-analyze", "verify", str(d / "aletheia@mnt-team.service")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    rt = tmpdir_al / "runtime"
    rt.mkdir(mode=0o700)
    r = subprocess.run(["systemd-analyze", "--user", "verify", str(d / "aletheia.service")],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "XDG_RUNTIME_DIR": str(rt)})
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    # verify does see a broken unit (so the empty output above means something)
    (d / "broken.service").write_text(unit_text("aletheia.service").replace("Type=forking", "Type=forkin"))
    r = subprocess.run(["systemd-analyze", "--user", "verify", str(d / "broken.service")],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "XDG_RUNTIME_DIR": str(rt)})
    assert "forkin" in r.stdout + r.stderr


def test_systemd_mount_unit_examples_verify(tmpdir_al):
    """The example .mount and .automount units (the unit form of an fstab line), moved to a mount point
    of the test's own and named after it as systemd requires, verify cleanly."""
    if shutil.which("systemd-analyze") is None or shutil.which("systemd-escape") is None:
        pytest.skip("systemd-analyze is missing (apt-get install systemd)")
    src = pathlib.Path(__file__).resolve().parents[2] / "systemd"
    where = tmpdir_al / "team"
    d = tmpdir_al / "units"
    d.mkdir()
    names = []
    for suffix in ("mount", "automount"):
        name = subprocess.run(["systemd-escape", "-p", f"--suffix={suffix}", str(where)], capture_output=True,
                              text=True, check=True).stdout.strip()
        text = (src / f"mnt-aletheia.{suffix}").read_text()
        assert "Where=/mnt/aletheia\n" in text
        (d / name).write_text(text.replace("Where=/mnt/aletheia\n", f"Where={where}\n"))
        names.append(str(d / name))
    r = subprocess.run(["systemd-analyze", "verify", *names], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    assert "Type=aletheia" in (src / "mnt-aletheia.mount").read_text()


def unit_commands(text, spec):
    """The unit's Environment= and Exec*= lines, with systemd's specifiers of spec replaced."""
    env, cmds = {}, {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if not sep or line.startswith("#"):
            continue
        for s, val in spec.items():
            v = v.replace(s, val)
        if k == "Environment":
            ek, _, ev = v.partition("=")
            env[ek] = ev
        elif k.startswith("Exec"):
            cmds[k] = v.split()
    return env, cmds


@pytest.mark.local_store_only
def test_system_unit_mounts_and_stops_cleanly(tmpdir_al):
    """The system template's own commands (systemd is not PID 1 here: run as it would run them): start
    mounts with the instance's configuration and returns once the mount answers; stop waits for pending
    writes and for the daemon's end."""
    if not ROOT:
        pytest.skip("allow_other for everyone needs root")
    mnt = tmpdir_al / "team"
    inst = str(mnt).strip("/").replace("/", "-")
    conf = tmpdir_al / f"{inst}.conf"
    store = tmpdir_al / "store"
    store.mkdir()
    conf.write_text(f"store = local:{store}\n")
    env, cmds = unit_commands(unit_text("aletheia@.service"), {"%f": str(mnt), "%i": inst})
    assert env["ALETHEIA_CONFIG"] == f"/etc/aletheia/{inst}.conf"
    env["ALETHEIA_CONFIG"] = str(conf)
    cache = tmpdir_al / "cache"
    start = [str(cache) if a == f"/var/cache/aletheia/{inst}" else a for a in cmds["ExecStart"]]
    assert start != cmds["ExecStart"], "the unit's cache folder moved"
    run_env = {**no_home_env(), **env}
    assert subprocess.run(cmds["ExecStartPre"], env=run_env).returncode == 0
    r = subprocess.run(start, capture_output=True, text=True, env=run_env, timeout=60)
    try:
        assert r.returncode == 0, r.stderr
        assert (mnt / ".aletheia" / "status").exists()
        assert "allow_other" in mounted(mnt)
        pid = daemon_pid(mnt)
        run = mnt / "p" / "experiments" / "e" / "runs" / "1"
        os.makedirs(run)
        with open(run / "metrics" / "loss", "a") as f:
            f.write("".join(f"{i}\n" for i in range(1000)))
        r = subprocess.run(cmds["ExecStop"], capture_output=True, text=True, env=run_env, timeout=300)
        assert r.returncode == 0, r.stderr
        assert mounted(mnt) is None and not alive(pid)
    finally:
        if mounted(mnt):
            alutil.fusermount(mnt, lazy=True)
    # what was written is in the store: mount it again
    m = alutil.Mount(tmpdir_al, name="again", store=store, blobs=tmpdir_al / "store" / "blobs")
    m.start()
    try:
        assert len(alutil.points(m.path / "p/experiments/e/runs/1/metrics/loss")) == 1000
    finally:
        assert not m.teardown()


# ---- many users -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def users():
    """Two users of this machine for the module, removed after (SKIP where they cannot be made)."""
    if not ROOT or shutil.which("useradd") is None or shutil.which("runuser") is None:
        pytest.skip("two users need root, useradd and runuser")
    names = [f"alu{os.getpid() % 100000}{c}" for c in "ab"]
    made = []
    try:
        for n in names:
            r = subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", "--user-group", n],
                               capture_output=True, text=True)
            if r.returncode != 0:
                pytest.skip(f"useradd {n}: {r.stderr.strip()}")
            made.append(n)
        yield [pwd.getpwnam(n) for n in names]
    finally:
        for n in made:
            subprocess.run(["userdel", n], capture_output=True)


def as_user(user, *argv, m=None, cwd=None, timeout=60):
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    if m is not None:
        env["ALETHEIA_MOUNT"] = str(m.path)
    for k in ("FIRESTORE_EMULATOR_HOST",):
        if k in os.environ:
            env[k] = os.environ[k]
    return subprocess.run([shutil.which("runuser"), "-u", user.pw_name, "--", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd or "/")


def user_py(user, code, *args):
    """Runs Python code as user; its stdout is "ok" or the errno name of the OSError it met."""
    wrapped = ("import errno, os, sys\ntry:\n" + "".join("    " + l + "\n" for l in code.splitlines()) +
               "    print('ok')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\n")
    r = as_user(user, alutil.PY, "-c", wrapped, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def shared(users, mount_factory, tmpdir_al):
    os.chmod(tmpdir_al, 0o755)   # the users reach the mount point
    return mount_factory(extra=["-o", "allow_other", "--allow-delete"])


def test_two_users_each_write_only_their_own_runs(users, shared):
    a, b = users
    m = shared
    r = as_user(a, alutil.BIN, "new-run", "p/e", m=m)
    assert r.returncode == 0, r.stderr
    run_a = pathlib.Path(r.stdout.strip())
    r = as_user(b, alutil.BIN, "new-run", "p/e", m=m)
    assert r.returncode == 0, r.stderr
    run_b = pathlib.Path(r.stdout.strip())
    assert run_a != run_b and run_a.parent == run_b.parent
    # owners shown: the creators; the folders where anyone creates are open (sticky)
    for path, u in ((run_a, a), (run_a / "params", a), (run_a / "status", a), (run_b, b),
                    (run_b / "run.json", b), (m.path / "p", a), (m.path / "p/experiments/e", a)):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (u.pw_uid, u.pw_gid), path
    assert os.stat(run_a.parent).st_mode & 0o7777 == 0o1777
    assert os.stat(run_a / "params").st_mode & 0o777 == 0o755
    assert os.stat(run_a / "status").st_mode & 0o777 == 0o644
    assert read_json(run_a / "run.json")["user"] == a.pw_name
    assert read_json(run_b / "run.json")["user"] == b.pw_name
    # each writes its own run
    assert user_py(a, "open(sys.argv[1], 'w').write('0.1\\n')", run_a / "params" / "lr") == "ok"
    assert user_py(b, "open(sys.argv[1], 'a').write('1 0.5\\n')", run_b / "metrics" / "loss") == "ok"
    # editors work in one's own run (scratch files are the folder owner's)
    r = as_user(a, "sed", "-i", "s/0.1/0.2/", run_a / "params" / "lr")
    assert r.returncode == 0, r.stderr
    assert (run_a / "params" / "lr").read_text() == "0.2\n"
    assert user_py(a, "open(sys.argv[1], 'w').write('0.1\\n')", run_a / "params" / "lr") == "ok"
    # and reads the other's
    assert user_py(b, "assert open(sys.argv[1]).read() == '0.1\\n'", run_a / "params" / "lr") == "ok"
    assert user_py(a, "open(sys.argv[1]).read()", run_b / "run.json") == "ok"
    # but writes nothing into it: EACCES, nothing recorded
    before = (run_a / "run.json").read_text()
    for code, target in (("open(sys.argv[1], 'w').write('9\\n')", run_a / "params" / "lr"),
                         ("open(sys.argv[1], 'w').write('0.2\\n')", run_a / "params" / "wd"),
                         ("open(sys.argv[1], 'a').write('1 9\\n')", run_a / "metrics" / "loss"),
                         ("open(sys.argv[1], 'w').write('finished\\n')", run_a / "status"),
                         ("open(sys.argv[1], 'w').write('x')", run_a / "artifacts" / "model.bin"),
                         ("os.mkdir(sys.argv[1])", run_a / "artifacts" / "ckpt"),
                         ("open(sys.argv[1], 'w').write('{\"lr\": 5}')", run_a / "params.json"),
                         ("os.symlink('../../../../../datasets/d', sys.argv[1])", run_a / "datasets" / "d"),
                         ("os.symlink('ckpt-1', sys.argv[1])", run_a / "artifacts" / "latest")):
        assert user_py(b, code, target) == "EACCES", target
    # a link in one's own artifacts/ is one's own (README "artifacts")
    assert user_py(a, "os.symlink('ckpt-1', sys.argv[1])", run_a / "artifacts" / "latest") == "ok"
    st = os.lstat(run_a / "artifacts" / "latest")
    assert (st.st_uid, st.st_gid) == (a.pw_uid, a.pw_gid)
    assert user_py(b, "os.unlink(sys.argv[1])", run_a / "artifacts" / "latest") == "EACCES"
    assert user_py(a, "os.unlink(sys.argv[1])", run_a / "artifacts" / "latest") == "ok"
    after = read_json(run_a / "run.json")
    assert after["params"] == {"lr": 0.1} and after["metrics"] == {} and after["status"] == "running"
    assert (run_a / "run.json").read_text() == before
    # root writes anyone's run
    assert try_write(run_a / "params" / "wd", "0.3") == 0
    # a run, experiment or project is its creator's to delete (--allow-delete): not the other's
    assert user_py(b, "os.rmdir(sys.argv[1])", run_a) in ("EACCES", "EPERM")
    assert run_a.is_dir()
    r = as_user(b, "rm", "-rf", run_a)
    assert r.returncode != 0 and run_a.is_dir() and (run_a / "params" / "lr").read_text() == "0.1\n"
    assert user_py(b, "os.rmdir(sys.argv[1])", m.path / "p" / "experiments" / "e") in ("EACCES", "EPERM")
    r = as_user(a, "rm", "-rf", run_a)
    assert r.returncode == 0, r.stderr
    assert not run_a.exists() and run_b.is_dir()


def test_two_users_share_projects_and_datasets(users, shared):
    """Anyone creates experiments, runs and dataset files anywhere; write-once still holds; a dataset is
    its creator's to rename and delete."""
    a, b = users
    m = shared
    ds = m.path / "p" / "datasets" / "d"
    assert user_py(a, "os.makedirs(sys.argv[1])", ds) == "ok"
    assert user_py(a, "open(sys.argv[1], 'w').write('a\\n')", ds / "a.csv") == "ok"
    assert user_py(b, "os.makedirs(sys.argv[1])", ds / "sub") == "ok"
    assert user_py(b, "open(sys.argv[1], 'w').write('b\\n')", ds / "sub" / "b.csv") == "ok"
    assert (ds / "sub" / "b.csv").read_text() == "b\n"
    assert os.stat(ds / "sub").st_mode & 0o7777 == 0o777   # b's folder: a adds to it too
    assert user_py(a, "open(sys.argv[1], 'w').write('a2\\n')", ds / "sub" / "a2.csv") == "ok"
    assert user_py(b, "open(sys.argv[1], 'w').write('x\\n')", ds / "a.csv") in ("EACCES", "EPERM")
    assert (ds / "a.csv").read_text() == "a\n"
    assert read_json(ds / ".dataset.json")["files"] == 3
    # each added file is its adder's: rsync -a (temp file, chmod, times, rename) works in another's dataset
    assert os.stat(ds / "a.csv").st_uid == a.pw_uid and os.stat(ds / "sub" / "b.csv").st_uid == b.pw_uid
    if shutil.which("rsync"):
        src = m.root / "src"
        (src / "deep").mkdir(parents=True)
        (src / "deep" / "c.csv").write_text("c\n")
        os.utime(src / "deep" / "c.csv", (1_700_000_000, 1_700_000_000))
        subprocess.run(["chmod", "-R", "a+rX", str(src)], check=True)
        r = as_user(b, "rsync", "-a", f"{src}/", f"{ds}/up/")
        assert r.returncode == 0, r.stderr
        assert (ds / "up" / "deep" / "c.csv").read_text() == "c\n"
        assert os.stat(ds / "up" / "deep" / "c.csv").st_mtime == 1_700_000_000
        assert sorted(os.listdir(ds / "up" / "deep")) == ["c.csv"], "rsync's temp file was left behind"
    assert user_py(b, "os.makedirs(sys.argv[1])", m.path / "p" / "experiments" / "e2" / "runs" / "1") == "ok"
    assert user_py(a, "os.mkdir(sys.argv[1])", m.path / "p" / "experiments" / "e2" / "runs" / "2") == "ok"
    assert os.stat(m.path / "p/experiments/e2").st_uid == b.pw_uid
    assert os.stat(m.path / "p/experiments/e2/runs/2").st_uid == a.pw_uid
    # the project's own files are its creator's: metadata, and the dataset's description
    assert user_py(b, "open(sys.argv[1], 'w').write('{}')", m.path / "p" / "metadata" / "m") == "EACCES"
    assert user_py(b, "open(sys.argv[1], 'w').write('mine')", ds / ".description") == "EACCES"
    assert user_py(b, "os.rename(sys.argv[1], sys.argv[2])", ds, m.path / "p" / "datasets" / "d2") in ("EACCES",
                                                                                                      "EPERM")
    assert user_py(b, "os.rmdir(sys.argv[1])", ds) in ("EACCES", "EPERM", "ENOTEMPTY")
    assert ds.is_dir()


def test_aletheia_run_as_a_user(users, shared, tmpdir_al):
    a, _ = users
    m = shared
    r = as_user(a, alutil.BIN, "run", "--exper", "p/e", "--param", "lr=0.5", "--", "sh", "-c",
                'echo hello; echo 0.25 >> "$ALETHEIA_RUN_DIR/metrics/loss"', m=m)
    assert r.returncode == 0, r.stderr
    assert "hello" in r.stdout
    run = m.path / "p" / "experiments" / "e" / "runs" / "1"
    j = read_json(run / "run.json")
    assert j["status"] == "finished" and j["user"] == a.pw_name and j["params"] == {"lr": 0.5}
    assert j["metrics"]["loss"]["last"] == 0.25
    assert (run / "output.log").read_text() == "hello\n"
    assert os.stat(run / "output.log").st_uid == a.pw_uid
    # from the user's own repository: the root daemon records its git state (libgit2's ownership
    # check, against the daemon's user, refused every user's repository: git was null)
    repo = pathlib.Path(tempfile.mkdtemp(prefix="al-user-repo-"))
    try:
        sh("git init -q -b main . && git -c user.name=t -c user.email=t@e commit -q --allow-empty -m x", cwd=repo)
        head = sh("git rev-parse HEAD", cwd=repo).stdout.strip()
        os.chmod(repo, 0o755)
        sh(f"chown -R {a.pw_uid}:{a.pw_gid} '{repo}'")
        r = as_user(a, alutil.BIN, "run", "--exper", "p/e", "--", "true", m=m, cwd=repo)
        assert r.returncode == 0, r.stderr
        git = read_json(run.parent / "2" / "run.json")["git"]
        assert git and git["commit"] == head, git
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def test_a_mount_not_shared_says_so(users, mount, tmpdir_al):
    """Without -o allow_other another user gets EACCES everywhere: the command names the cause and the
    fix instead of "check that the mount is up"."""
    os.chmod(tmpdir_al, 0o755)
    _, b = users
    r = as_user(b, alutil.BIN, "new-run", "p/e", m=mount)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "not shared with other users" in lines[0] and "-o allow_other" in lines[0] and \
        "user_allow_other in /etc/fuse.conf" in lines[0], lines[0]
    assert "check that the mount is up" not in lines[0]
    r = as_user(b, alutil.BIN, "status", m=mount)
    assert r.returncode == 1 and "not shared with other users" in r.stderr, r.stderr
    assert "is not an aletheia mount" not in r.stderr


def test_a_users_run_beside_another_users(users, shared):
    a, b = users
    m = shared
    r = as_user(a, alutil.BIN, "new-run", "p/e", m=m)
    run_a = pathlib.Path(r.stdout.strip())
    # b cannot make its run in a's run's place: a plain cli write into a's run
    r = as_user(b, alutil.BIN, "run", "--exper", "p/e", "--", "true", m=m)
    assert r.returncode == 0, r.stderr   # its own run: fine
    r = as_user(b, "sh", "-c", f"echo 1 > {run_a}/fold")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    assert read_json(run_a / "run.json")["fold"] is None


def test_allow_other_by_a_user_without_user_allow_other(users, tmpdir_al):
    """A user's own mount with -o allow_other where /etc/fuse.conf does not allow it: the cause and
    the fix, nothing mounted."""
    with open("/etc/fuse.conf") as f:
        if any(line.strip() == "user_allow_other" for line in f):
            pytest.skip("/etc/fuse.conf has user_allow_other here")
    a, _ = users
    os.chmod(tmpdir_al, 0o755)
    d = tmpdir_al / "own"
    for sub in ("mnt", "store", "cache"):
        (d / sub).mkdir(parents=True)
    subprocess.run(["chown", "-R", a.pw_name, str(d)], check=True)
    r = as_user(a, alutil.BIN, "mount", d / "mnt", "--store", f"local:{d}/store", "--cache-dir", d / "cache",
                "-o", "allow_other")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "user_allow_other in /etc/fuse.conf" in lines[0], r.stderr
    assert mounted(d / "mnt") is None


def test_default_mount_shows_the_mounting_user(mount):
    """Without allow_other nothing changes: everything is the mounting user's, folders 0755."""
    r = alutil.mkrun(mount)
    for p in (mount.path, mount.path / "p" / "experiments", r.parent, r, r / "status"):
        st = os.stat(p)
        assert st.st_uid == os.getuid()
        assert st.st_mode & 0o7000 == 0
    assert os.stat(r.parent).st_mode & 0o777 == 0o755
