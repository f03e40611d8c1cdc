# aletheia integration tests: the command line (README "The command line").
import concurrent.futures
import os
import signal
import subprocess
import time

import pytest

import alutil
from alutil import BIN, PY, cli, env_for, fusermount, read_json, sh



def process_gone(pid):
    """True once pid has exited: no such process, or a zombie waiting for its reaper (the
    daemon's parent is init, which may reap late)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True

def one_error_line(stderr):
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    assert lines[0].startswith("aletheia: "), lines[0]
    return lines[0]


def test_help_and_version():
    r = cli("--help")
    assert r.returncode == 0
    for word in ("mount", "umount", "new-run", "run", "status", "--store", "--blobs", "--allow-delete"):
        assert word in r.stdout, word
    r = cli("--version")
    assert r.returncode == 0 and "0.1.0" in r.stdout
    assert "libfuse 3." in r.stdout   # README "Dependencies": which libfuse the binary runs with
    r = cli("dataset", "prefetch", "--help")   # scripts/bench probes the command this way
    assert r.returncode == 0 and "dataset prefetch PROJECT/DATASET" in r.stdout


def test_usage_errors():
    r = cli("frobnicate")
    assert r.returncode == 2 and "aletheia" in r.stderr
    r = cli("new-run")
    assert r.returncode == 2
    r = cli("run", "--exper", "p/e", "--no-such-option", "--", "true")
    assert r.returncode == 2


def test_new_run(mount):
    r = cli("new-run", "proj/exp", m=mount)
    assert r.returncode == 0, r.stderr
    p = r.stdout.strip()
    assert p == str(mount.path / "proj/experiments/exp/runs/1")
    assert os.path.isabs(p) and os.path.isdir(p)
    r = cli("new-run", "proj/exp", "--mount", mount.path)
    assert r.stdout.strip() == str(mount.path / "proj/experiments/exp/runs/2")
    os.mkdir(mount.path / "proj/experiments/exp/runs/10")
    assert cli("new-run", "proj/exp", m=mount).stdout.strip().endswith("/runs/11")


def test_new_run_concurrent(mount):
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        results = list(ex.map(lambda _: cli("new-run", "p/e", m=mount), range(6)))
    for r in results:
        assert r.returncode == 0, r.stderr
    paths = [r.stdout.strip() for r in results]
    assert len(set(paths)) == 6
    assert sorted(os.listdir(mount.path / "p/experiments/e/runs"), key=int) == [str(i) for i in range(1, 7)]


SCRIPT = ("import os, sys\n"
          "d = os.environ['ALETHEIA_RUN_DIR']\n"
          "print('hello from', d, flush=True)\n"
          "print('to stderr', file=sys.stderr, flush=True)\n"
          "open(os.path.join(d, 'metrics', 'loss'), 'a').write('0.5\\n0.25\\n')\n")


def test_a_run_made_from_a_deleted_folder_records_its_path(mount, tmpdir_al):
    """`cwd` is the creating process's working folder; one deleted under it is recorded by its path,
    not as readlink(2) gives it ("/tmp/x (deleted)", as a tester saw), and no git state."""
    gone = tmpdir_al / "gone"
    gone.mkdir()
    r = subprocess.run(["sh", "-c", 'rmdir "$1" && exec "$2" new-run p/e --mount "$3"', "sh", str(gone), BIN,
                        str(mount.path)], cwd=gone, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    j = read_json(mount.path / "p/experiments/e/runs/1/run.json")
    assert j["cwd"] == str(gone) and j["git"] is None, j["cwd"]


def test_a_repository_owned_by_another_user_is_recorded(mount, tmpdir_al):
    """The git state is the creating process's repository's, whoever owns it: libgit2's ownership
    check (git's safe.directory) is against the daemon's user, so a shared mount's daemon refused
    every user's own repository, and a tester's run from a repository owned by another user had
    git null with nothing said (libgit2 1.5 reports the refusal as "no repository")."""
    repo = tmpdir_al / "theirs"
    repo.mkdir()
    sh("git init -q -b main . && git -c user.name=t -c user.email=t@e commit -q --allow-empty -m x", cwd=repo)
    head = sh("git rev-parse HEAD", cwd=repo).stdout.strip()
    sh(f"chown -R 65534:65534 '{repo}'")
    r = cli("new-run", "p/e", m=mount, cwd=repo)
    assert r.returncode == 0, r.stderr
    git = read_json(mount.path / "p/experiments/e/runs/1/run.json")["git"]
    assert git and git["commit"] == head and git["branch"] == "main", git


def test_params_that_cannot_both_be_recorded_create_no_run(mount):
    """`--param a/b=1 --param a=2` cannot be recorded (params/a a value and a folder): refused before
    the run is made. A tester's run was created, the command not run, and a failed run left behind."""
    r = cli("run", "--exper", "p/e", "--param", "a/b=1", "--param", "a=2", "--", "sh", "-c", "echo RAN",
            m=mount)
    assert r.returncode == 2 and "RAN" not in r.stdout and "--param" in r.stderr, r.stderr
    assert os.listdir(mount.path) == []


@pytest.mark.parametrize("exper", ["../e", "./e", "p/.", "p/..", ".."])
def test_an_experiment_named_dot_or_dot_dot_is_refused(mount, exper):
    """README "The tree": a name is not "." or ".."; `run` then creates nothing and runs nothing. A
    tester's `run --exper ../e` ran the command untracked, exit 0, and made experiments/e/runs/1
    beside the mount point; `p/.` and `./e` left an experiment "runs" and a project "experiments"."""
    before = sorted(os.listdir(mount.path.parent))
    for argv in (("run", "--exper", exper, "--", "sh", "-c", "echo RAN"), ("new-run", exper)):
        r = cli(*argv, m=mount)
        assert r.returncode == 2 and "RAN" not in r.stdout, (argv, r.stdout, r.stderr)
    assert sorted(os.listdir(mount.path.parent)) == before
    assert os.listdir(mount.path) == []


def test_run_success(mount, tmpdir_al):
    r = cli("run", "--exper", "p/e", "--fold", "2", "--model", "mlp", "--param", "lr=0.01",
            "--param", "opt/name=adam", "--", PY, "-c", SCRIPT, m=mount, cwd=tmpdir_al)
    assert r.returncode == 0, r.stderr
    run = mount.path / "p/experiments/e/runs/1"
    assert f"hello from {run}" in r.stdout
    assert "to stderr" in r.stdout + r.stderr
    log = (run / "output.log").read_text()
    assert f"hello from {run}\n" in log and "to stderr\n" in log
    j = read_json(run / "run.json")
    assert j["status"] == "finished" and j["exit_code"] == 0 and j["ended"]
    assert j["fold"] == 2 and j["model"] == "mlp"
    assert j["params"] == {"lr": 0.01, "opt/name": "adam"}
    assert j["metrics"]["loss"]["count"] == 2 and j["metrics"]["loss"]["last"] == 0.25
    assert j["command"].startswith(f"{PY} -c ") and "ALETHEIA_RUN_DIR" in j["command"], j["command"]
    assert j["cwd"] == str(tmpdir_al)
    assert (run / "status").read_text() == "finished\n"


def test_run_records_the_command_it_runs(mount):
    """README "run.json": for `aletheia run … -- CMD ARGS` the command is `CMD ARGS`. A tester found the
    whole `aletheia run …` line recorded when the command came without "--", the text after an option
    value "--" (`--model --`), and a long command cut after 8 KiB in the middle of an argument."""
    exp = mount.path / "p/experiments/e/runs"
    cases = [
        (["--exper", "p/e", "echo", "hi", "there"], "echo hi there"),
        (["--exper", "p/e", "--model", "--", "--mount", str(mount.path), "--", "echo", "a"], "echo a"),
        (["--exper=p/e", "--param", "lr=0.1", "--", "sh", "-c", 'test -z "$ALETHEIA_RUN_CANONICAL"'],
         "sh -c 'test -z \"$ALETHEIA_RUN_CANONICAL\"'"),
    ]
    many = ["arg%05d" % i for i in range(2000)]
    cases.append((["--exper", "p/e", "--", "true", *many], " ".join(["true", *many])))
    for k, (args, want) in enumerate(cases, 1):
        r = cli("run", *args, m=mount)
        assert r.returncode == 0, (args[:6], r.stderr)
        assert read_json(exp / str(k) / "run.json")["command"] == want, args[:6]
    assert read_json(exp / "2/run.json")["model"] == "--"
    assert read_json(exp / "3/run.json")["params"] == {"lr": 0.1}
    # past 64 KiB: cut after a whole argument, and said so
    more = ["arg%05d" % i for i in range(10000)]
    r = cli("run", "--exper", "p/e", "--", "true", *more, m=mount)
    assert r.returncode == 0, r.stderr
    got = read_json(exp / "5/run.json")["command"]
    assert got.endswith(" …") and 60_000 < len(got) <= 65_536 + 2, len(got)
    assert " ".join(["true", *more]).startswith(got[:-2])
    assert got[:-2].split()[-1] in more


def test_run_failure(mount):
    r = cli("run", "--exper", "p/e", "--", "bash", "-c", "echo bye; echo oops >&2; exit 3", m=mount)
    assert r.returncode == 3
    run = mount.path / "p/experiments/e/runs/1"
    assert "bye" in r.stdout
    log = (run / "output.log").read_text()
    assert "bye\n" in log and "oops\n" in log
    j = read_json(run / "run.json")
    assert j["status"] == "failed" and j["exit_code"] == 3
    r = cli("run", "--exper", "p/e", "--", "/nonexistent/cmd", m=mount)
    assert r.returncode != 0


def test_a_command_that_ends_its_own_run_keeps_its_status_and_output(mount):
    """A command under `aletheia run` may end its run itself, as the README's first example does
    (`echo finished > status`): the status it wrote stays, and output.log, opened by the wrapper
    while the run ran, is recorded whole. A tester saw the status overwritten by "finished" and
    output.log recorded empty ("cannot write output.log: Read-only file system")."""
    r = cli("run", "--exper", "p/e", "--", "sh", "-c",
            'echo before; echo "failed 7" > "$ALETHEIA_RUN_DIR/status"; echo after; exit 0', m=mount)
    assert r.returncode == 0, r.stderr
    assert "output.log" not in r.stderr, r.stderr
    run = mount.path / "p/experiments/e/runs/1"
    assert (run / "status").read_text() == "failed\n"
    assert (run / "output.log").read_text() == "before\nafter\n"
    j = read_json(run / "run.json")
    assert j["status"] == "failed" and j["exit_code"] == 7
    # the run stays ended: output.log is not written again
    with pytest.raises(OSError):
        with open(run / "output.log", "a") as f:
            f.write("more\n")
    assert (run / "output.log").read_text() == "before\nafter\n"


def test_run_output_of_what_the_command_left_running(mount, tmpdir_al):
    """README "The command line", `run`: after the command exits, what it left running (a background
    job) is still read, shown and captured, until it closes its output or stays silent for 2 s;
    then `aletheia run` records the end and exits, and a process of its own goes on showing that
    output (not captured: the run has ended) so its writer is not killed by a closed pipe."""
    marker = tmpdir_al / "later"
    cmd = f"(sleep 0.5; echo soon; sleep 6; echo later; echo done > {marker}) & echo started"
    p = subprocess.Popen([BIN, "run", "--exper", "p/e", "--system-metrics-interval", "0", "--",
                          "sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env_for(mount))
    try:
        rc = p.wait(timeout=30)
        # the end is recorded while the background job still sleeps (it holds the output 6 s)
        run = mount.path / "p/experiments/e/runs/1"
        assert rc == 0 and not marker.exists()
        assert (run / "status").read_text() == "finished\n"
        assert (run / "output.log").read_text() == "started\nsoon\n"
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out == "started\nsoon\nlater\n", (out, err)
    assert marker.read_text() == "done\n"
    assert (run / "output.log").read_text() == "started\nsoon\n"


def test_run_sigterm(mount):
    p = subprocess.Popen([BIN, "run", "--exper", "p/e", "--", "bash", "-c", 'echo "$ALETHEIA_RUN_DIR"; exec sleep 30'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(mount))
    try:
        line = p.stdout.readline().strip()
        assert line == str(mount.path / "p/experiments/e/runs/1")
        time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 128 + signal.SIGTERM
    j = read_json(mount.path / "p/experiments/e/runs/1/run.json")
    assert j["status"] == "killed" and j["exit_code"] == 128 + signal.SIGTERM


def test_run_require_clean(mount, tmpdir_al):
    repo = tmpdir_al / "repo"
    repo.mkdir()
    sh("git init -q -b main . && git config user.email t@e && git config user.name T && echo a > f && "
       "git add f && git commit -q -m one && echo b >> f", cwd=repo)
    r = cli("run", "--exper", "p/e", "--require-clean", "--", "true", m=mount, cwd=repo)
    assert r.returncode == 1
    one_error_line(r.stderr)
    runs = mount.path / "p/experiments/e/runs"
    assert not runs.exists() or os.listdir(runs) == []
    sh("git commit -q -am two", cwd=repo)
    r = cli("run", "--exper", "p/e", "--require-clean", "--", "true", m=mount, cwd=repo)
    assert r.returncode == 0, r.stderr
    assert read_json(runs / os.listdir(runs)[0] / "run.json")["git"]["dirty"] is False


def test_status_command(mount, tmpdir_al):
    r = cli("status", m=mount)
    assert r.returncode == 0, r.stderr
    backend = "firestore" if alutil.FIRESTORE else "sqlite"
    assert f"backend: {backend}" in r.stdout and f"mountpoint: {mount.path}" in r.stdout
    assert cli("status", mount.path).returncode == 0
    plain = tmpdir_al / "plain"
    plain.mkdir()
    r = cli("status", plain)
    assert r.returncode == 1
    assert "is not an aletheia mount" in one_error_line(r.stderr)


def test_daemon_mount_and_umount(tmpdir_al):
    mnt, store = tmpdir_al / "dmnt", tmpdir_al / "dstore"
    mnt.mkdir()
    env = {"XDG_CACHE_HOME": str(tmpdir_al / "xdgcache")}
    r = cli("mount", mnt, "--store", f"local:{store}", "--blobs", f"file://{tmpdir_al}/dblobs",
            "--cache-dir", tmpdir_al / "dcache", env=env, timeout=30)
    pid = None
    try:
        assert r.returncode == 0, r.stderr
        assert os.path.ismount(mnt)
        st = dict(l.split(": ", 1) for l in (mnt / ".aletheia/status").read_text().splitlines() if ": " in l)
        pid = int(st["pid"])
        os.makedirs(mnt / "p/experiments/e/runs/1")
        sh(f"echo 0.1 > {mnt}/p/experiments/e/runs/1/params/lr")
        r = cli("umount", mnt, timeout=90)
        assert r.returncode == 0, r.stderr
        assert not os.path.ismount(mnt)
        assert process_gone(pid), f"daemon {pid} still running after umount"
        pid = None
    finally:
        if os.path.ismount(mnt):
            fusermount(mnt, lazy=True)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _mount_expect_failure(args, tmpdir_al):
    """Runs a mount that must fail; cleans up if it mounted after all."""
    mnt = args[1]
    try:
        return cli(*args, "--foreground", timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"aletheia {' '.join(map(str, args))} did not exit")
    finally:
        # also a mount whose daemon was killed (ismount may not see one that no longer answers)
        fusermount(mnt, lazy=True)


def test_mount_missing_mountpoint(tmpdir_al):
    mnt = tmpdir_al / "no" / "such" / "dir"
    r = _mount_expect_failure(["mount", mnt, "--store", f"local:{tmpdir_al}/s", "--blobs",
                               f"file://{tmpdir_al}/b", "--cache-dir", tmpdir_al / "c"], tmpdir_al)
    assert r.returncode != 0
    one_error_line(r.stderr)


@pytest.mark.local_store_only
def test_mount_busy_store(mount, tmpdir_al):
    mnt2 = tmpdir_al / "mnt2"
    mnt2.mkdir()
    r = _mount_expect_failure(["mount", mnt2, "--store", f"local:{mount.store}", "--blobs",
                               f"file://{mount.blobs}", "--cache-dir", tmpdir_al / "c2"], tmpdir_al)
    assert r.returncode != 0
    line = one_error_line(r.stderr)
    assert str(mount.store) in line or "use" in line or "busy" in line or "lock" in line, line
    # the first mount still works
    os.makedirs(mount.path / "p/experiments/e")


def test_mount_bad_store(tmpdir_al):
    mnt = tmpdir_al / "m"
    mnt.mkdir()
    r = _mount_expect_failure(["mount", mnt, "--store", "local:/etc/passwd/x", "--blobs",
                               f"file://{tmpdir_al}/b", "--cache-dir", tmpdir_al / "c"], tmpdir_al)
    assert r.returncode != 0
    assert "/etc/passwd/x" in one_error_line(r.stderr)
    r = _mount_expect_failure(["mount", mnt, "--store", "bogus:whatever", "--blobs",
                                f"file://{tmpdir_al}/b", "--cache-dir", tmpdir_al / "c"], tmpdir_al)
    assert r.returncode != 0
    one_error_line(r.stderr)


def test_config_file(tmpdir_al):
    """A configuration file gives a plain `aletheia mount` its settings; flags override it."""
    mnt, store, cache = tmpdir_al / "cmnt", tmpdir_al / "cstore", tmpdir_al / "ccache"
    mnt.mkdir()
    cfg = tmpdir_al / "config"
    cfg.write_text(f"# team settings\nstore = local:{store}\ncache-dir = {cache}\ncache-size = 2G\n"
                   f"mountpoint = {mnt}\n")
    env = {"ALETHEIA_CONFIG": str(cfg)}
    r = cli("mount", env=env, timeout=30)
    try:
        assert r.returncode == 0, r.stderr
        st = (mnt / ".aletheia/status").read_text()
        assert f"store: local:{store}\n" in st and f"cache: {cache} " in st and "of 2147483648" in st
    finally:
        fusermount(mnt, lazy=True)
    bad = tmpdir_al / "bad"
    bad.write_text("bogus = 1\n")
    r = cli("mount", mnt, env={"ALETHEIA_CONFIG": str(bad)}, timeout=30)
    assert r.returncode == 2 and "unknown key" in r.stderr and r.stderr.count("\n") == 1


# Signals under `aletheia run` (README "The command line"). The command counts the SIGINTs it gets:
# after the first it waits a moment for a second one, so a forwarded duplicate would be seen.
COUNT_SIGINT = ("import os, signal, sys, time\n"
                "seen = []\n"
                "signal.signal(signal.SIGINT, lambda s, f: seen.append(s))\n"
                "print('ready', flush=True)\n"
                "end = time.monotonic() + 20\n"
                "while not seen and time.monotonic() < end:\n"
                "    time.sleep(0.02)\n"
                "time.sleep(1.5)\n"
                "print('sigints', len(seen), flush=True)\n")

# Python's own handling: KeyboardInterrupt, whose traceback is printed while the command stops.
KEYBOARD = ("import time\n"
            "print('ready', flush=True)\n"
            "def deep(n):\n"
            "    if n == 0:\n"
            "        while True:\n"
            "            time.sleep(0.01)\n"
            "    return deep(n - 1)\n"
            "deep(40)\n")


def on_terminal(argv, env, act, timeout=60):
    """Runs argv on a new pseudo-terminal (the session leader, in its foreground process group),
    waits for 'ready' in its output, then calls act(pid, master_fd). Returns (wait status, output);
    the terminal is closed and the session killed whatever happens."""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        try:
            # A new terminal's session starts with default signal dispositions, whatever the
            # suite was started under (nohup ignores SIGHUP, Python ignores SIGPIPE; ignored
            # signals stay ignored across exec).
            for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    out, acted, status = b"", False, None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not acted and b"ready" in out:
                acted = True
                fd = act(pid, fd)
            if fd is None:
                break
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(fd, 4096)
                except OSError:   # EIO: every process of the session closed the terminal
                    break
                if not data:
                    break
                out += data
        assert acted, f"the command never got ready: {out!r}"
        while time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
            time.sleep(0.05)
        assert status is not None, f"aletheia run did not exit: {out!r}"
        return status, out.decode(errors="replace")
    finally:
        if fd is not None:
            os.close(fd)
        if status is None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)


def ctrl_c(pid, fd):
    os.write(fd, b"\x03")   # the line discipline signals the terminal's foreground process group
    return fd


def run_argv(*command):
    return [BIN, "run", "--exper", "p/e", "--", *command]


@pytest.mark.parametrize("shell", [False, True], ids=["direct", "sh-c"])
def test_run_ctrl_c_once(mount, shell):
    """Ctrl-C reaches the command once: the terminal signals aletheia and the command together, and
    aletheia does not send it again; also for a command under a non-interactive shell."""
    command = ["bash", "-c", f"{PY} -c \"$0\"; echo shell-after", COUNT_SIGINT] if shell else [PY, "-c", COUNT_SIGINT]
    status, out = on_terminal(run_argv(*command), env_for(mount), ctrl_c)
    assert "sigints 1" in out, out
    assert not shell or "shell-after" in out, out   # the command handled it: bash goes on
    run = mount.path / "p/experiments/e/runs/1"
    log = (run / "output.log").read_text()
    assert "sigints 1\n" in log
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert read_json(run / "run.json")["status"] == "finished"


def test_run_ctrl_c_traceback(mount):
    """The KeyboardInterrupt traceback printed while the command stops lands in output.log whole, and
    the run is recorded as killed by SIGINT."""
    status, out = on_terminal(run_argv(PY, "-c", KEYBOARD), env_for(mount), ctrl_c)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGINT, (status, out)
    run = mount.path / "p/experiments/e/runs/1"
    log = (run / "output.log").read_text()
    assert log.count("Traceback (most recent call last):") == 1, log
    assert log.endswith("KeyboardInterrupt\n"), log
    assert "lost sys.stderr" not in log and "Exception ignored" not in log, log
    j = read_json(run / "run.json")
    assert j["status"] == "killed" and j["exit_code"] == 128 + signal.SIGINT


def test_run_kill_wrapper_once(mount):
    """kill -INT to aletheia's own pid: the command did not get it, so it is passed on, once."""
    p = subprocess.Popen(run_argv(PY, "-c", COUNT_SIGINT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env_for(mount), start_new_session=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        os.kill(p.pid, signal.SIGINT)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert "sigints 1" in out, out
    assert p.returncode == 0


def test_run_command_signals_its_group(mount):
    """A command that signals its own process group (which aletheia is in) gets the signal once:
    aletheia does not pass it back."""
    script = COUNT_SIGINT.replace("print('ready', flush=True)\n",
                                  "print('ready', flush=True)\nos.killpg(0, signal.SIGINT)\n")
    p = subprocess.Popen(run_argv(PY, "-c", script), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env_for(mount), start_new_session=True)
    try:
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert "sigints 1" in out, (out, err)
    assert p.returncode == 0


def test_run_command_under_setsid(mount):
    """A command in its own session (setsid) does not get the terminal's Ctrl-C: aletheia passes it on,
    once."""
    status, out = on_terminal(run_argv("setsid", PY, "-c", COUNT_SIGINT), env_for(mount), ctrl_c)
    assert "sigints 1" in out, out
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.parametrize("nohup", [False, True], ids=["plain", "nohup"])
def test_run_terminal_hangup(mount, tmpdir_al, nohup):
    """The terminal hangs up (it is closed): aletheia lives on to record the run. The command gets the
    hangup once and is recorded as killed; under nohup it ignores it, runs to its end, and what it
    prints afterwards is still captured."""
    flag = tmpdir_al / "hung-up"
    script = ("import os, time\n"
              "print('ready', flush=True)\n"
              "end = time.monotonic() + 20\n"
              f"while not os.path.exists({str(flag)!r}) and time.monotonic() < end:\n"
              "    time.sleep(0.02)\n"
              "print('still here', flush=True)\n")
    command = (["nohup"] if nohup else []) + [PY, "-c", script]

    def hang_up(pid, fd):
        os.close(fd)          # the last holder of the master: the terminal hangs up
        if not nohup:
            # The flag once the hangup had its moment (aletheia passes it on; on a loaded machine
            # the command saw the flag first): a command that ignored it prints "still here".
            run_json = mount.path / "p/experiments/e/runs/1/run.json"
            end = time.monotonic() + 10
            while time.monotonic() < end and read_json(run_json).get("status") == "running":
                time.sleep(0.05)
        flag.write_text("")
        return None

    status, _ = on_terminal(run_argv(*command), env_for(mount), hang_up)
    run = mount.path / "p/experiments/e/runs/1"
    j = read_json(run / "run.json")
    log = (run / "output.log").read_text()
    if nohup:
        assert j["status"] == "finished" and j["exit_code"] == 0, (j, log)
        assert "still here\n" in log
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    else:
        assert j["status"] == "killed" and j["exit_code"] == 128 + signal.SIGHUP, (j, log)
        assert "still here" not in log
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGHUP


# ---- aletheia ls and aletheia diff (issue 12) -------------------------------------------------------------------

def columns_start(header_line):
    """The offsets where header_line's columns start."""
    starts = [i for i, c in enumerate(header_line) if c != " " and (i == 0 or header_line[i - 1] == " ")]
    return starts


def make_runs(m):
    e = m.path / "p" / "experiments" / "e"
    for i, lr, loss, model in (("1", "0.1", "0.5", "ünïcode"), ("2", "0.2", "0.25", "b"), ("10", "0.1", "0.75", "c")):
        r = alutil.mkrun(m, i)
        (r / "params" / "lr").write_text(lr + "\n")
        (r / "model").write_text(model + "\n")
        with open(r / "metrics" / "loss", "a") as f:
            f.write("1\n" + loss + "\n")
    return e


def test_ls(mount):
    make_runs(mount)
    r = cli("ls", "p/e", m=mount)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["id", "status", "model", "param.lr", "metric.loss"], lines[0]
    assert [l.split()[0] for l in lines[1:]] == ["1", "2", "10"]
    # aligned: every column starts at the header's offset (in characters: ü is one column)
    starts = columns_start(lines[0])
    for l in lines[1:]:
        assert [l[s - 1] == " " and l[s] != " " for s in starts[1:]] == [True] * (len(starts) - 1), (l, lines[0])
    r = cli("ls", "p/e", "--sort", "-loss", "--limit", "2", m=mount)
    assert r.returncode == 0, r.stderr
    assert [l.split()[0] for l in r.stdout.splitlines()[1:]] == ["10", "1"]
    r = cli("ls", "p/e", "--sort", "loss", m=mount)
    assert [l.split()[0] for l in r.stdout.splitlines()[1:]] == ["2", "1", "10"]
    r = cli("ls", "p/e", "--where", "lr=0.1", "--where", "model=c", "--columns", "loss,loss.min", m=mount)
    assert r.returncode == 0, r.stderr
    assert [l.split() for l in r.stdout.splitlines()] == [["id", "metric.loss", "metric.loss.min"], ["10", "0.75", "0.75"]]
    # errors: usage 2, an unknown column 2, a missing experiment 1; each one line
    r = cli("ls", "p/e", "--sort", "nope", m=mount)
    assert r.returncode == 2 and "nope" in r.stderr
    r = cli("ls", "p/e", "--where", "nope", m=mount)
    assert r.returncode == 2
    r = cli("ls", "p/missing", m=mount)
    assert r.returncode == 1 and one_error_line(r.stderr)
    assert cli("ls", m=mount).returncode == 2
    assert cli("ls", "p/e", "--limit", "x", m=mount).returncode == 2
    r = cli("ls", "--help")
    assert r.returncode == 0 and "--sort" in r.stdout


def test_diff(mount):
    e = make_runs(mount)
    (e / "runs" / "10" / "tags" / "best").touch()
    r = cli("diff", "p/e/1", "p/e/10", m=mount)
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    keys = [l.split()[0] for l in lines[1:]]
    assert keys == ["model", "tags", "metric.loss", "metric.loss.min"], r.stdout   # max is 1 in both
    assert lines[0].split() == ["p/e/1", "p/e/10"]
    # aligned: the second run's values start at one offset on every line
    col = lines[0].index("p/e/10")
    for l in lines[1:]:
        assert l[col - 1] == " " and l[col] != " ", (l, lines)
    assert lines[1].split() == ["model", "ünïcode", "c"]
    assert lines[2].split() == ["tags", "best"]
    # same run: nothing printed, 0; by path as well
    r = cli("diff", e / "runs" / "2", "p/e/2", m=mount)
    assert r.returncode == 0 and r.stdout == "", (r.stdout, r.stderr)
    # an ended run differs in status
    (e / "runs" / "2" / "status").write_text("failed 3\n")
    r = cli("diff", "p/e/1", e / "runs" / "2", m=mount)
    assert r.returncode == 1 and "status" in r.stdout and "failed" in r.stdout
    # trouble: 2, one line
    r = cli("diff", "p/e/1", "p/e/99", m=mount)
    assert r.returncode == 2 and one_error_line(r.stderr)
    r = cli("diff", "p/e/1", "not-a-run", m=mount)
    assert r.returncode == 2 and one_error_line(r.stderr)
    assert cli("diff", "p/e/1", m=mount).returncode == 2
    r = cli("diff", "--help")
    assert r.returncode == 0 and "diff(1)" in r.stdout
    # numbers as runs.csv and run.json print them: the shortest decimal that reads back the same
    # (cJSON's printer gave 4.7727633936801882e-05)
    for run, v in (("1", "4.772763393680188e-05"), ("10", "0.30000000000000004")):
        with open(e / "runs" / run / "metrics" / "tiny", "a") as f:
            f.write(v + "\n")
    r = cli("diff", "p/e/1", "p/e/10", m=mount)
    line = [l for l in r.stdout.splitlines() if l.split()[0] == "metric.tiny"]
    assert line and line[0].split()[1:] == ["4.772763393680188e-05", "0.30000000000000004"], r.stdout
