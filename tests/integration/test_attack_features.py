# aletheia integration tests: defects found by attacking issues 12 and 13's features
# (plots and report pages, runs.csv's new columns, best/ tags/ tagged/, `aletheia ls` and `diff`,
# mount.aletheia, `aletheia run`, the Python package, real programs on the files). Each test failed on
# the code it was written against (ad1214d) and says which README promise it holds the mount to; one
# still marked xfail (strict: a pass fails the suite) is a defect not fixed yet.
import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

import alutil
from alutil import cli, mkrun


def _metric(run, name, text):
    with open(run / "metrics" / name, "a") as f:
        f.write(text)


# ---- data loss ----------------------------------------------------------------------------------------

def test_run_and_new_run_refuse_a_mount_point_that_is_not_mounted(tmpdir_al):
    """README "The command line": `MOUNTPOINT` defaults to `$ALETHEIA_MOUNT`, else `/mnt/aletheia`;
    `new-run` "creates the project and experiment if missing, then the next integer run id", and
    `run` records the run and "sets `status` from the exit". When nothing is mounted there (after a
    reboot before the mount came up, a typo in ALETHEIA_MOUNT, a daemon that was stopped),
    `aletheia run --exper p/e -- CMD` made plain folders p/experiments/e/runs/1 on the local disk,
    wrote output.log, status and heartbeat there as ordinary files, ran the command and exited 0;
    `aletheia new-run p/e` printed …/runs/2. Nothing is tracked, and once the mount comes up at
    that folder it hides those files (seen with the default /mnt/aletheia, unmounted, on this
    machine). The Python package refuses the same folder (no `.aletheia/status`: not a mount),
    and `aletheia ls` names it ("check … that X is an aletheia mount"). Expected: one line saying
    the folder is not an aletheia mount, a non-zero exit, the command not run, nothing created."""
    folder = tmpdir_al / "not-mounted"
    folder.mkdir()
    marker = tmpdir_al / "ran"
    r = cli("run", "--exper", "p/e", "--system-metrics-interval", "0", "--mount", folder, "--",
            "sh", "-c", f"touch {marker}")
    made = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert r.returncode != 0 and not marker.exists() and not made, \
        f"aletheia run on an unmounted folder exited {r.returncode}, ran the command: {marker.exists()}, made {made}"
    r = cli("new-run", "p/e", "--mount", folder)
    made = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert r.returncode != 0 and not made, f"new-run exited {r.returncode} ({r.stdout.strip()}), made {made}"


# ---- wrong output -----------------------------------------------------------------------------------

def test_ls_sort_puts_numbers_in_order_when_a_cell_is_nan(mount):
    """README "The command line", `ls`: "`--sort COLUMN` sorts ascending, `--sort -COLUMN`
    descending: numbers by value, before text, empty cells last either way". A metric whose last
    value is `nan` (a diverged run, common in sweeps) breaks the order of every other run: with
    last values 3, nan, 1, nan, 2, 5, nan, 4, `aletheia ls p/e --columns m --sort -m` printed
    5 3 nan 2 1 nan nan 4 (and ascending 1 2 3 nan nan 5 nan 4), so `--sort -m --limit 1` need not
    name the best run. NaN compares neither less nor greater: a comparator that treats it as equal
    to everything is not an order, and qsort then leaves numbers out of order."""
    for i, v in enumerate(["3", "nan", "1", "nan", "2", "5", "nan", "4"], start=1):
        r = mkrun(mount, run=str(i))
        _metric(r, "m", v + "\n")
    for sort, want in (("-m", ["5", "4", "3", "2", "1"]), ("m", ["1", "2", "3", "4", "5"])):
        res = cli("ls", "p/e", "--columns", "m", "--sort", sort, m=mount)
        assert res.returncode == 0, res.stderr
        cells = [line.split()[1] for line in res.stdout.splitlines()[1:]]
        numbers = [c for c in cells if c != "nan"]
        assert numbers == want, f"--sort {sort} printed {cells}"


def test_ls_sort_keeps_numbers_before_text_when_descending(mount):
    """README "The command line", `ls`: "numbers by value, before text, then `nan` cells …, empty
    cells last either way". A param column holding both (a run's `opt` of `2`, `10`, `adam`,
    `sgd`): `--sort -opt` printed the text first (sgd adam 10 2), so `--limit 1` named a run with
    no number at all."""
    for i, v in enumerate(["2", "sgd", "10", "adam"], start=1):
        r = mkrun(mount, run=str(i))
        (r / "params" / "opt").write_text(v + "\n")
    mkrun(mount, run="5")   # no opt: empty, last either way
    # run ids in the order printed: 10 (run 3), 2 (run 1), then text, then the empty cell
    for sort, want in (("-opt", ["3", "1", "2", "4", "5"]), ("opt", ["1", "3", "4", "2", "5"])):
        res = cli("ls", "p/e", "--columns", "opt", "--sort", sort, m=mount)
        assert res.returncode == 0, res.stderr
        ids = [line.split()[0] for line in res.stdout.splitlines()[1:]]
        assert ids == want, f"--sort {sort} printed\n{res.stdout}"


def test_diff_prints_numbers_as_runs_csv_does(mount):
    """README "The command line", `diff`: it prints `param.<key>` and per metric `metric.<name>`,
    `.min`, `.max` "as runs.csv names and prints them". runs.csv prints an integer param 120 as
    `120` and a metric's last value 100000 as `100000`; `aletheia diff` printed `1.2e+02` and
    `1e+05` (and the integer param 10000000000000000 as `1e+16`): `epochs  1.2e+02  1`."""
    a, b = mkrun(mount, run="1"), mkrun(mount, run="2")
    (a / "params" / "epochs").write_text("120\n")
    (b / "params" / "epochs").write_text("1\n")
    (a / "params" / "big").write_text("10000000000000000\n")
    (b / "params" / "big").write_text("1\n")
    _metric(a, "m", "100000\n")
    _metric(b, "m", "7\n")
    import csv
    rows = list(csv.DictReader(open(mount.path / "p/experiments/e/runs.csv", newline="")))
    assert (rows[0]["param.epochs"], rows[0]["param.big"], rows[0]["metric.m"]) == \
        ("120", "10000000000000000", "100000")
    r = cli("diff", "p/e/1", "p/e/2", m=mount)
    assert r.returncode == 1, r.stderr
    got = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()[1:]}
    assert got["param.epochs"] == ["120", "1"], r.stdout
    assert got["param.big"] == ["10000000000000000", "1"], r.stdout
    assert got["metric.m"] == ["100000", "7"], r.stdout


def test_a_log_scale_plot_of_a_wide_range_has_only_finite_coordinates(run):
    """README "plots": the y axis is logarithmic when every value is positive and they span three
    decades or more, and a plot is "Self-contained SVG 1.1" that "a browser, an image viewer, an
    IDE or `rsvg-convert` open". A metric from 1e-300 to 1e300 (a likelihood that underflows, a
    diverging loss) drew its lowest tick at 10^-330, which is 0 as a double: the file held
    `<line … y1="inf" y2="inf"/>` and `<text x="68.0" y="inf">0</text>` — not an SVG number —
    in the run's plot, its metrics.svg and the experiment's overlay (also for 1e-310 .. 1)."""
    _metric(run, "p", "1e-300\n1e300\n")
    exp = run.parent.parent
    for path in (run / "plots" / "p.svg", run / "plots" / "metrics.svg", exp / "plots" / "p.svg"):
        data = path.read_text()
        ET.fromstring(data.encode())
        bad = re.findall(r'\s(?:x|y|x1|y1|x2|y2|cx|cy|r|width|height)="([^"]*)"', data)
        bad = [v for v in bad if not re.fullmatch(r"-?\d+(\.\d+)?", v)]
        assert not bad, f"{path.name}: coordinates that are no SVG number: {sorted(set(bad))}"
        assert "log scale" in data


# ---- aletheia run -----------------------------------------------------------------------------------

def test_run_does_not_kill_what_the_command_left_running(mount, tmpdir_al):
    """README "The command line", `run`: it "runs the command with its output shown and captured
    into output.log (through pipes …)". A command that starts a background process and exits
    (`sh -c '(sleep 2; echo late; …) & echo started'`, a trainer that spawns an evaluation job)
    loses that process: `aletheia run` closes the read end of the output pipe as soon as its
    own child exits, so the background process dies of SIGPIPE at its next line of output —
    `echo late` never returns and the marker file after it is never written. Run without the
    wrapper (or through `| tee`) it prints `late` and goes on. Expected: the process lives and
    its output is shown and captured (as `tee` waits for the pipe's end), or at least is not
    killed by the wrapper."""
    marker = tmpdir_al / "late"
    r = cli("run", "--exper", "p/e", "--system-metrics-interval", "0", "--",
            "sh", "-c", f"(sleep 1; echo late; echo done > {marker}) & echo started", m=mount)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the command's background process was killed (SIGPIPE) after the command exited"


# ---- Firestore outages ------------------------------------------------------------------------------

def test_runs_csv_during_an_outage_is_not_served_without_its_metrics(mount_factory, tmpdir_al):
    """README "Firestore": while Firestore is unreachable an operation answers from the last known
    copies, and "With nothing local to answer from (a folder never listed, a document never read
    …), the operation fails with `EIO`". A mount that listed `runs/` but never read the runs'
    metrics, during an outage (fault-proxy resetting every connection): `plots/loss.svg` and
    `index.html` fail with EIO as promised, but `cat runs.csv` succeeds with a file that has no
    `metric.loss` columns at all (`id,…,tags,param.lr` and the rows), a silently wrong table for
    pandas or `aletheia ls --sort -loss`. Expected: EIO, or the metric columns."""
    import pathlib
    if not alutil.FIRESTORE:
        import pytest
        pytest.skip("needs ALETHEIA_TEST_STORE=firestore")
    from test_outage import GRACE_S, TTL_S, Outage
    outage = Outage(pathlib.Path(tmpdir_al), "reset")
    try:
        m = mount_factory(env=outage.env())
        m.allow_log_errors = True
        for r in ("1", "2"):
            run = mkrun(m, run=r)
            (run / "params" / "lr").write_text(f"0.{r}\n")
            _metric(run, "loss", f"1\n{r}\n")
        m.wait_idle(timeout=15)
        m.remount()
        exp = m.path / "p/experiments/e"
        assert sorted(os.listdir(exp / "runs")) == ["1", "2"]
        time.sleep(GRACE_S + TTL_S + 0.5)
        outage.begin()
        try:
            try:
                text = (exp / "runs.csv").read_text()
            except OSError as e:
                text = None
                assert e.errno == 5, e
            if text is not None:
                header = text.splitlines()[0].split(",")
                assert "metric.loss" in header, f"runs.csv served without its metrics during the outage:\n{text}"
        finally:
            outage.end()
    finally:
        outage.close()


# ---- documentation and completion -------------------------------------------------------------------

def _complete(words, m):
    """COMPREPLY of doc/aletheia.bash-completion for COMP_WORDS=words (cursor in the last word)."""
    import pathlib
    import shlex
    comp = pathlib.Path(__file__).resolve().parents[2] / "doc" / "aletheia.bash-completion"
    script = (f"source {shlex.quote(str(comp))}\n"
              f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
              f"COMP_CWORD={len(words) - 1}\n"
              "_aletheia\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    e = alutil.env_for(m)
    e["PATH"] = os.path.dirname(os.path.realpath(alutil.BIN)) + os.pathsep + e["PATH"]
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=e, timeout=60)
    assert r.returncode == 0, r.stderr
    return sorted(line for line in r.stdout.splitlines() if line)


def test_completion_of_an_experiment_name_with_a_space(mount):
    """README "The command line": the bash completion offers "`PROJECT/EXPERIMENT` and
    `PROJECT/DATASET` names read from the mount", and names are "any UTF-8 name that is a valid
    Firestore document id" (README "The tree"). An experiment `my exp` was offered as two words,
    `p/my` and `exp` (`compgen -W "${COMPREPLY[*]}"` splits the list on blanks), so
    `aletheia ls p/my<TAB>` completed nothing; an experiment `<e"x>` was offered as `p/<ex>` (the
    quote dropped by compgen's own expansion of the word list)."""
    for e in ("my exp", "resnet", '<e"x>'):
        os.makedirs(mount.path / "p" / "experiments" / e)
    ok = ({"p/my exp", "p/my\\ exp"}, {'p/<e"x>', 'p/\\<e\\"x\\>'})
    got = _complete(["aletheia", "ls", "p/"], mount)
    assert len(got) == 3 and "p/resnet" in got, got
    assert any(g in ok[0] for g in got) and any(g in ok[1] for g in got), got
    got = _complete(["aletheia", "ls", "p/my"], mount)
    assert len(got) == 1 and got[0] in ok[0], got


def test_best_of_a_metric_whose_folder_is_another_runs_metric(mount):
    """README "best": "`best/min/<metric>` … names with / are sub-folders (best/min/val/loss)" and
    "`best/min/` lists the metrics some run has a value of". Runs of one experiment are
    independent: run 1 logs `loss`, run 2 logs `loss/a` (a metric file under a folder `loss`).
    `best/min/loss` is the link to run 1 and `best/min/loss/a` does not exist (ENOENT; following
    `loss` enters run 1's folder), so run 2's metric has no best link at all, although its plot
    (`plots/loss/a.svg`) and runs.csv column (`metric.loss/a`) are there."""
    r1, r2 = mkrun(mount, run="1"), mkrun(mount, run="2")
    _metric(r1, "loss", "1\n")
    os.makedirs(r2 / "metrics" / "loss")
    _metric(r2, "loss/a", "2\n")
    exp = mount.path / "p/experiments/e"
    assert (exp / "plots" / "loss" / "a.svg").is_file()
    assert os.readlink(exp / "best" / "min" / "loss") == "../../runs/1"
    found = []
    for root, dirs, files in os.walk(exp / "best" / "min"):
        found += [os.path.relpath(os.path.join(root, n), exp / "best" / "min") for n in dirs + files]
    assert os.path.lexists(exp / "best" / "min" / "loss" / "a") or any("a" in f for f in found), \
        f"best/min/ has no entry for the metric loss/a: {found}"


def test_index_html_shows_a_crashed_run_as_crashed(run):
    """README "Crashed runs": a run whose heartbeat is older than six intervals "shows `crashed` in
    `status`, `run.json` and `runs.csv`"; README "index.html": the runs table gives each run's
    status, and the page reloads itself every 5 s "While any run is `running`". A crashed run
    (README's own recipe: heartbeat `1000000000 10`) reads `crashed` in `status` and runs.csv, but
    experiments/e/index.html shows `<td class="running">running</td>` for it and keeps the
    5-second reload forever (and <project>/index.html counts it among the runs still running)."""
    (run / "heartbeat").write_text("1000000000 10\n")
    assert (run / "status").read_text().strip() == "crashed"
    exp = run.parent.parent
    assert "1,crashed," in (exp / "runs.csv").read_text()
    page = (exp / "index.html").read_text()
    cells = re.findall(r'<td class="[a-z]*">([a-z]+)</td>', page)
    assert "crashed" in cells and "running" not in cells, cells
    assert 'http-equiv="refresh"' not in page


# ---- wrong bytes --------------------------------------------------------------------------------------

def test_an_open_plot_or_runs_csv_keeps_its_size_while_the_run_writes(run):
    """README "Files behave like files": a generated file's content is made when it is opened, and
    "through the open file (`fstat`, and the kernel before each read) its size is that content's,
    so a reader never gets bytes padded or cut by a newer size". Open `plots/loss.svg`, append a
    point to the metric, and the open descriptor's fstat() already gives the next render's size
    (2110 -> 2244): read() returns the old content's 2110 bytes, but mmap() of the descriptor gets
    2244 bytes, the last 134 of them NUL (or, when the new render is smaller, a cut SVG). runs.csv
    does the same once anyone stats its path (`ls -l`) after the change: 156 bytes read, fstat and
    mmap 178, padded with NUL; run.json likewise (706 read, 716 mapped). Seen first as 40 of 16,000 reads of plots, index.html and
    runs.changed.csv whose fstat() disagreed with their content while a run logged."""
    import mmap
    _metric(run, "loss", "1\n")
    exp = run.parent.parent
    bad = []
    for i, path in enumerate((exp / "plots" / "loss.svg", run / "plots" / "loss.svg", exp / "runs.csv",
                              run / "run.json")):
        with open(path, "rb") as f:
            before = os.fstat(f.fileno()).st_size
            _metric(run, "loss", "9" * (6 + 3 * i) + ".5\n")   # a new last and max: another size
            os.stat(path)      # another program's `ls -l`
            after = os.fstat(f.fileno()).st_size
            data = f.read()
            f.seek(0)
            with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
                mapped = bytes(mm)
        if not (before == after == len(data) and mapped == data):
            bad.append(f"{path.relative_to(exp)}: fstat {before} then {after}, read {len(data)} bytes, "
                       f"mmap {len(mapped)} bytes ending {mapped[-12:]!r}")
    assert not bad, "\n".join(bad)


# ---- errors -------------------------------------------------------------------------------------------

def test_mounting_over_a_dead_mount_names_the_dead_mount(mount_factory, tmpdir_al):
    """README "The command line": for `mount`, "A missing or non-folder mount point, a mount point
    already mounted …: one line on stderr naming the cause and the fix, exit 1" (and "fstab and
    systemd" the same for mount(8)). After the daemon was killed (`kill -9`, OOM, a crash) its
    mount point answers ENOTCONN ("Transport endpoint is not connected") until it is unmounted.
    `aletheia mount` there (and `mount -t aletheia`, exit 32) said "mount point … does not exist;
    create it with mkdir -p …", a wrong cause whose fix fails (mkdir -p: File exists). Expected:
    the mount point is still mounted by a daemon that is gone; unmount it first
    (`aletheia umount`, which works there). Within the kernel's attribute timeout of the root
    (a second after the daemon died) the stat() still succeeds and the message is right."""
    m = mount_factory()
    import signal
    os.kill(m.proc.pid, signal.SIGKILL)
    m.proc.wait(timeout=10)
    time.sleep(2)   # past the kernel's cached attributes of the mount's root (1 s)
    try:
        os.listdir(m.path)
        raise AssertionError("the mount point should answer ENOTCONN once its daemon is gone")
    except OSError as e:
        assert e.errno == 107, e   # ENOTCONN
    r = cli("mount", m.path, "--store", m.store_uri(), "--blobs", m.blobs_uri(),
            "--cache-dir", tmpdir_al / "cache-again", m=None)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "does not exist" not in lines[0] and "mkdir" not in lines[0], lines[0]
    assert "mounted" in lines[0] or "umount" in lines[0], lines[0]


def test_rm_of_a_metric_with_allow_delete_deletes_it_or_fails(mount_factory):
    """README "Deleting and renaming": "`rm`, `rmdir` of tracked things fail with `EPERM` unless
    the mount was made with `--allow-delete`; nothing is deleted. With it, `rm -rf` of a run,
    experiment, dataset or project removes its documents". With --allow-delete, `rm
    runs/1/metrics/loss` (a user dropping a metric logged by mistake) returned 0 — unlinkat() = 0 —
    and the metric stayed, points and all, in the listing, runs.csv and plots (also after the
    series was flushed and the mount remounted; `rm params/lr` there does delete the param).
    tree_unlink treats every kind without an unlink of its own as a generated file ("removing
    them alone is a no-op, so that `rm -rf` of a run works"), which a metric is not. Expected:
    the metric is gone, or rm fails (EPERM) and says so; never a success that deletes nothing."""
    m = mount_factory(extra=["--allow-delete"])
    run = mkrun(m)
    _metric(run, "loss", "1\n2\n")
    try:
        os.unlink(run / "metrics" / "loss")
    except OSError:
        return   # refused: at least the user knows
    assert not (run / "metrics" / "loss").exists(), \
        f"rm returned 0 but metrics/loss is still there: {os.listdir(run / 'metrics')}"


# ---- mount(8) and fstab -------------------------------------------------------------------------------

from test_operate import daemon_pid, helper, mounted, no_home_env, system_cache  # noqa: E402,F401  (helper: a fixture)


def test_fstab_mounts_at_x_y_and_x_slash_y_get_caches_of_their_own(helper):
    """README "fstab and systemd": without cache_dir= "the cache and the daemon's log are in …
    `/var/cache/aletheia/<mount point with / as ->` (`/mnt/team` → `/var/cache/aletheia/mnt-team`;
    one per mount point, since a cache's journals belong to one daemon)". Two mount points
    `ROOT/x-y` and `ROOT/x/y` both map to `…/ROOT-x-y`: with local stores the two daemons share
    one cache folder and write one aletheia.log; with two Firestore projects the second
    `mount -t aletheia` fails (exit 32, "cache folder …/state is already mounted by another
    aletheia process"). systemd-escape, which the README's own units use for the same purpose,
    writes a `-` of a path as `\\x2d` so that the two stay apart."""
    import pathlib
    import shutil
    t, root, pids = helper
    points = [root / "x-y", root / "x" / "y"]
    caches = set()
    try:
        for i, mnt in enumerate(points):
            store = root / f"store{i}"
            store.mkdir()
            mnt.mkdir(parents=True)
            caches.add(system_cache(mnt))
            r = subprocess.run(["mount", "-t", t, f"local:{store}", str(mnt)], capture_output=True, text=True,
                               timeout=60, env=no_home_env())
            assert r.returncode == 0, r.stderr
            pids.append(daemon_pid(mnt))
        used = [alutil.status(type("M", (), {"path": mnt})())["cache"].split(" ")[0] for mnt in points]
        assert used[0] != used[1], f"both mounts use the cache folder {used[0]}"
    finally:
        for mnt in points:
            if mounted(mnt):
                subprocess.run(["umount", str(mnt)], capture_output=True, timeout=120)
        for c in caches:
            shutil.rmtree(c, ignore_errors=True)
        try:
            pathlib.Path("/var/cache/aletheia").rmdir()
        except OSError:
            pass


def test_umount_lazy_detaches_a_busy_mount(helper):
    """README "fstab and systemd": "`umount` runs `umount.fuse.aletheia`, which is `aletheia
    umount`". umount(8)'s `-l` (lazy: detach now, clean up when no longer busy — what one types
    for a mount a shell still sits in) reaches the helper as `umount.fuse.TYPE MNT -l`, but the
    helper runs `fusermount3 -u` without `-z`: `umount -l` of a mount with a process whose cwd is
    inside failed, exit 32, "cannot unmount …; close the files and shells using it". Expected:
    the mount is detached at once (pending writes delivered as for any umount), as `umount -l`
    does for every other filesystem."""
    t, root, pids = helper
    store, mnt = root / "store", root / "mnt"
    store.mkdir()
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", t, "-o", f"cache_dir={root}/cache", f"local:{store}", str(mnt)],
                       capture_output=True, text=True, timeout=60, env=no_home_env())
    assert r.returncode == 0, r.stderr
    pids.append(daemon_pid(mnt))
    busy = subprocess.Popen(["sleep", "30"], cwd=mnt)
    try:
        r = subprocess.run(["umount", "-l", str(mnt)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and mounted(mnt) is None, f"umount -l exited {r.returncode}: {r.stderr.strip()}"
    finally:
        busy.kill()
        busy.wait()
