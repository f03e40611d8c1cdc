# aletheia integration tests: listings (issue 11, `ls -l` of a 10,000-run experiment). A folder's
# listing gives each entry's type (d_type) and, for runs/, experiments/ and datasets/, its
# attributes (readdirplus), so `ls -l runs/` needs no lookup per run; what it shows is what a stat
# of each entry shows (README "The tree"), and a change shows in the next listing at once.
import os
import time

from alutil import mkrun, sh

TIMEOUTS = 1.2   # past the kernel's 1 s entry and attribute timeouts: a stat asks the daemon again


def ls_l(m, path):
    """`ls -l` of a folder: name -> (mode string, size, mtime in ns), as the kernel gave them to ls."""
    out = sh(f"ls -l --time-style=+%s.%N '{path}'", m).stdout
    rows = {}
    for line in out.splitlines()[1:]:   # "total N"
        f = line.split(None, 6)
        name = f[6].split(" -> ")[0]
        rows[name] = (f[0], int(f[4]), f[5])
    return rows


def stat_each(m, path, names):
    """The same three of each entry from a stat of its own, after the kernel's timeouts (a lookup)."""
    time.sleep(TIMEOUTS)
    out = sh("cd '%s' && stat -c '%%A %%s %%.9Y %%n' %s" % (path, " ".join(f"'{n}'" for n in names)), m).stdout
    rows = {}
    for line in out.splitlines():
        mode, size, mtime, name = line.split(" ", 3)
        rows[name] = (mode, int(size), mtime)
    return rows


def make_experiment(m):
    """Runs 1 to 4 with a param and a metric; 2 and 4 finished; 3 with an artifact."""
    for i in range(1, 5):
        r = mkrun(m, run=str(i))
        (r / "params" / "lr").write_text(f"0.{i}\n")
        with open(r / "metrics" / "loss", "a") as f:
            f.write(f"1 {i}.5\n")
    (m.path / "p/experiments/e/runs/3/artifacts/model.txt").write_text("weights\n")
    for i in (2, 4):
        (m.path / f"p/experiments/e/runs/{i}/status").write_text("finished\n")
    return m.path / "p" / "experiments" / "e"


def test_ls_l_shows_what_a_stat_of_each_entry_shows(mount_factory):
    m = mount_factory()
    exp = make_experiment(m)
    for folder in (exp / "runs", exp / "runs" / "2", exp / "runs" / "3", exp / "runs" / "3" / "artifacts",
                   m.path / "p" / "experiments", m.path / "p"):
        listed = ls_l(m, folder)
        assert listed, folder
        assert stat_each(m, folder, sorted(listed)) == listed, folder
    runs = ls_l(m, exp / "runs")
    assert sorted(runs) == ["1", "2", "3", "4"]
    assert {v[0] for v in runs.values()} == {"drwxr-xr-x"}
    # an ended run's files are read-only, a running one's writable (README "Run lifecycle")
    assert ls_l(m, exp / "runs" / "2")["params.json"][0] == "-r--r--r--"
    assert ls_l(m, exp / "runs" / "1")["params.json"][0] == "-rw-r--r--"


def test_ls_l_of_runs_needs_no_lookup_per_run(mount_factory):
    m = mount_factory()
    for i in range(30):
        mkrun(m, run=f"r{i:02d}")
    time.sleep(TIMEOUTS)   # the entries mkdir gave the kernel have expired
    before = int(m.status()["lookups"])
    out = sh(f"ls -l '{m.path}/p/experiments/e/runs'", m).stdout
    after = int(m.status()["lookups"])
    assert sum(1 for line in out.splitlines() if line.startswith("d")) == 30
    # the path to runs/ and .aletheia/status: a few; one per run before readdirplus
    assert after - before < 10, (before, after)
    # find tells folders from files by d_type: every name, no entry twice
    found = sh(f"cd '{m.path}/p/experiments/e' && find runs -maxdepth 2", m).stdout.split()
    assert len(found) == len(set(found))
    assert "runs/r07/params" in found and "runs/r07/run.json" in found


def test_a_change_shows_in_the_next_ls_l_at_once(mount_factory):
    # The listing's attributes replace what the kernel kept from the last one (1 s timeout), as a
    # lookup's would once they expire.
    m = mount_factory()
    exp = make_experiment(m)
    runs = exp / "runs"
    first = ls_l(m, runs)
    time.sleep(0.01)
    (runs / "2" / "description").write_text("tried again\n")   # run 2's document: its folder's time
    (runs / "1" / "artifacts" / "new.txt").write_text("hello\n")
    second = ls_l(m, runs)
    arts = ls_l(m, runs / "1" / "artifacts")
    assert second["2"][2] != first["2"][2]
    assert stat_each(m, runs, sorted(second)) == second
    assert arts["new.txt"][1] == 6
    assert stat_each(m, runs / "1" / "artifacts", ["new.txt"])["new.txt"] == arts["new.txt"]
    # a new run and a removed name show at once too
    os.mkdir(runs / "5")
    assert "5" in ls_l(m, runs)


def test_find_tells_params_and_metrics_from_folders_without_a_lookup(mount_factory):
    # params/ and metrics/ give each name's type (a key is a file, a key's prefix a folder), so find
    # stats none of them: a lookup per folder it enters, none per file.
    m = mount_factory()
    want = set()
    for i in range(6):
        r = mkrun(m, run=str(i))
        (r / "params" / "opt").mkdir()
        for k in ("lr", "opt/beta1", "opt/beta2", "opt/eps"):
            (r / "params" / k).write_text("0.1\n")
        for name in ("loss", "acc", "val/loss"):
            if "/" in name:
                os.makedirs(r / "metrics" / os.path.dirname(name), exist_ok=True)
            with open(r / "metrics" / name, "a") as f:
                f.write("1 0.5\n")
        want |= {f"runs/{i}/params/{k}" for k in ("lr", "opt/beta1", "opt/beta2", "opt/eps")}
        want |= {f"runs/{i}/metrics/{k}" for k in ("loss", "acc", "val/loss")}
    time.sleep(TIMEOUTS)
    before = int(m.status()["lookups"])
    found = sh(f"cd '{m.path}/p/experiments/e' && find runs \\( -path '*/params/*' -o -path '*/metrics/*' \\) -type f", m).stdout.split()
    after = int(m.status()["lookups"])
    assert set(found) == want
    folders = sh(f"cd '{m.path}/p/experiments/e' && find runs \\( -path '*/params/*' -o -path '*/metrics/*' \\) -type d", m).stdout.split()
    assert set(folders) == {f"runs/{i}/params/opt" for i in range(6)} | {f"runs/{i}/metrics/val" for i in range(6)}
    # 6 runs x (params/, opt/, metrics/, val/, artifacts/, datasets/, tags/, plots/, plots/val/)
    # and the path: 54 and a few; 6 x 7 more (each param and metric file) when types are unknown,
    # and 6 x 4 more for the plots of the 3 metrics and metrics.svg
    assert after - before < 54 + 10, (before, after)
