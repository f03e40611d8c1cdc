# aletheia integration tests: big experiments stay cheap (issue 11) — a stat of runs.csv renders it
# only when something it shows changed (counted in .aletheia/status, README ".aletheia/status"), and
# reading a metric of millions of points streams through the daemon without holding it whole
# (README "metrics").
import os
import re

from alutil import FIRESTORE, mkrun, read_json


def renders(m, kind):
    """How many times the daemon rendered files of this kind ("runs.csv", "run.json") so far."""
    line = m.status().get("renders", "")
    mt = re.search(r"(?:^|, )" + re.escape(kind) + r" (\d+)", line)
    return int(mt.group(1)) if mt else 0


def vm(pid, key):
    """VmHWM or VmRSS of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def test_stat_of_runs_csv_renders_it_once_while_nothing_it_shows_changes(mount_factory):
    # Every stat reaches the daemon (a generated file's attribute timeout is 0), and each change
    # elsewhere clears its attribute cache. On Firestore the answers' TTL is made long so that
    # only changes count here.
    m = mount_factory(env={"ALETHEIA_CACHE_TTL_MS": "600000"} if FIRESTORE else None)
    exp = m.path / "p" / "experiments" / "e"
    for i in range(40):
        r = mkrun(m, run=str(i))
        (r / "params" / "lr").write_text(f"0.{i + 1}\n")
    other = mkrun(m, exp="other")
    csv = exp / "runs.csv"
    os.stat(csv)
    before = renders(m, "runs.csv")
    assert before >= 1
    for i in range(30):
        with open(other / "metrics" / "x", "a") as f:
            f.write(f"{i}\n")
        os.stat(csv)
    assert renders(m, "runs.csv") - before <= 1, m.status().get("renders")
    # a change in the experiment: one render for any number of stats, and cat reads that render
    (exp / "runs" / "7" / "params" / "lr").write_text("0.125\n")
    before = renders(m, "runs.csv")
    sizes = {os.stat(csv).st_size for _ in range(20)}
    data = csv.read_bytes()
    assert renders(m, "runs.csv") - before == 1, m.status().get("renders")
    assert sizes == {len(data)}
    assert b"\r\n7,running,,," in data and b",0.125\r\n" in data


def test_reading_a_metric_of_millions_of_points_streams(mount_factory):
    m = mount_factory()
    run = mkrun(m)
    n = 3_000_000
    lines = [f"{i} {i % 977} 1700000000.{i % 1000:03d}\n" for i in range(n)]
    want = "".join(lines).encode()
    fd = os.open(run / "metrics" / "loss", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        step = 20000
        for i in range(0, n, step):
            os.write(fd, "".join(lines[i:i + step]).encode())
    finally:
        os.close(fd)
    # A fresh daemon holds none of the points: what a read costs is what it keeps.
    m.remount()
    pid = m.proc.pid
    metric = run / "metrics" / "loss"
    assert os.stat(metric).st_size == len(want)
    summary = read_json(run / "run.json")["metrics"]["loss"]
    assert summary["count"] == n and summary["step"] == n - 1
    hwm = vm(pid, "VmHWM")
    with open(metric, "rb") as f:
        got = f.read()
    grown = vm(pid, "VmHWM") - hwm
    assert got == want, f"{len(got)} bytes read, {len(want)} written"
    # The text is 90 MB and the points 72 MB: a whole-series load or text buffer would show. What
    # a read holds is bounded but not small on Firestore: each chunk in flight (the reader's, two
    # read ahead) is parsed as a JSON tree of a few MB, and with the machine loaded the heap's peak
    # reached 38 MiB (19-23 MiB idle; 4 MiB on the embedded store).
    assert grown < 48 << 20, f"the daemon grew by {grown >> 20} MiB reading a {len(want) >> 20} MB metric"
    # Random access: the end first (as tail does), then back to the start and the middle.
    with open(metric, "rb") as f:
        f.seek(len(want) - 100)
        assert f.read() == want[-100:]
        f.seek(0)
        assert f.read(1000) == want[:1000]
        f.seek(len(want) // 2)
        assert f.read(70000) == want[len(want) // 2:len(want) // 2 + 70000]
