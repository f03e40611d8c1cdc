# aletheia integration tests: what `aletheia run` keeps beside the command's own output (README
# "System metrics", "Crashed runs"): system metrics, the machine's spec, the heartbeat and crashed runs.
import os
import shutil
import signal
import statistics
import subprocess
import time

import pytest

from alutil import BIN, PY, cli, env_for, points, read_json

# A CPU-bound command holding about 200 MB for a few seconds; it prints its own share of a CPU
# (process time over wall time), what a busy loop gets on this machine.
BURN = ("import time, os\n"
        "b = bytearray(200 * 1024 * 1024)\n"
        "for i in range(0, len(b), 4096): b[i] = 1\n"
        "t0, c0 = time.time(), time.process_time()\n"
        "while time.time() - t0 < 4: pass\n"
        "print('share', 100 * (time.process_time() - c0) / (time.time() - t0), flush=True)\n")


def max_rss_of_time(argv):
    """/usr/bin/time -v's 'Maximum resident set size' of argv, in bytes."""
    r = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for line in r.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.rsplit(":", 1)[1]) * 1024
    raise AssertionError(f"no maximum resident size in: {r.stderr}")


def test_system_metrics_of_a_cpu_bound_command(mount, tmpdir_al):
    if not os.access("/usr/bin/time", os.X_OK):
        pytest.skip("/usr/bin/time is missing (apt-get install time; scripts/setup does)")
    script = tmpdir_al / "burn.py"
    script.write_text(BURN)
    r = cli("run", "--exper", "p/e", "--system-metrics-interval", "0.5", "--", PY, script, m=mount)
    assert r.returncode == 0, r.stderr
    share = float(r.stdout.split("share")[1])
    run = mount.path / "p/experiments/e/runs/1"
    sysdir = run / "metrics/system"
    names = sorted(os.listdir(sysdir))
    for n in ("cpu_percent", "memory_rss_bytes", "threads", "read_bytes", "write_bytes",
              "machine_memory_used_bytes", "machine_memory_percent"):
        assert n in names, names
    assert not any(n.startswith("gpu") for n in names), names   # no NVML on this machine
    cpu = [float(v) for _, v, _ in points(sysdir / "cpu_percent")]
    assert len(cpu) >= 5, cpu
    # the samples taken while the loop ran (after the allocation's first second) are its share
    # of a CPU: near 100 on an idle machine, what the scheduler gave it on a loaded one
    busy = statistics.median(cpu[len(cpu) // 2:])
    assert abs(busy - share) < 20, (cpu, share)
    j = read_json(run / "run.json")
    sysj = j["system"]
    assert sysj == read_json(run / "system.json")
    assert sysj["machine"]["cpu_cores"] == os.cpu_count()
    assert sysj["machine"]["memory_bytes"] > 0 and sysj["machine"]["cpu_model"]
    assert sysj["machine"]["gpus"] == []
    assert sysj["samples"] == len(cpu) and sysj["interval"] == 0.5
    assert abs(sysj["mean"]["cpu_percent"] - share) < 15, (sysj["mean"], share)
    assert j["metrics"]["system/cpu_percent"]["count"] == len(cpu)
    # the memory peak against /usr/bin/time -v's maximum resident size of the same command
    want = max_rss_of_time([PY, str(script)])
    peak = sysj["peak"]["memory_rss_bytes"]
    assert abs(peak - want) <= 0.1 * want, (peak, want)
    rss = [float(v) for _, v, _ in points(sysdir / "memory_rss_bytes")]
    assert abs(max(rss) - want) <= 0.1 * want, (max(rss), want)   # the samples alone too
    assert sysj["peak"]["threads"] >= 1
    # the wrapper's last words: the run ended, its heartbeat cleared
    assert j["status"] == "finished" and (run / "heartbeat").read_text() == ""


def test_system_metrics_of_a_process_tree(mount, tmpdir_al):
    """A shell that starts two busy children: the tree's CPU is theirs together."""
    cmd = (f"{PY} -c 'import time\nt=time.time()\nwhile time.time()-t<3: pass' & "
           f"{PY} -c 'import time\nt=time.time()\nwhile time.time()-t<3: pass' & wait")
    r = cli("run", "--exper", "p/e", "--system-metrics-interval", "0.5", "--", "bash", "-c", cmd, m=mount)
    assert r.returncode == 0, r.stderr
    sysdir = mount.path / "p/experiments/e/runs/1/metrics/system"
    threads = [float(v) for _, v, _ in points(sysdir / "threads")]
    assert max(threads) >= 3, threads    # bash and its two pythons
    cpu = [float(v) for _, v, _ in points(sysdir / "cpu_percent")]
    assert max(cpu) > 100 or os.cpu_count() == 1 or os.getloadavg()[0] > os.cpu_count(), cpu


def test_system_metrics_off(mount):
    r = cli("run", "--exper", "p/e", "--system-metrics-interval", "0", "--", "sleep", "1.2", m=mount)
    assert r.returncode == 0, r.stderr
    run = mount.path / "p/experiments/e/runs/1"
    assert not (run / "metrics/system").exists()
    assert read_json(run / "system.json") == {}
    assert read_json(run / "run.json")["system"] is None


@pytest.mark.parametrize("value", ["-1", "0.01", "ten", "1e9", ""])
def test_bad_intervals(mount, value):
    for opt in ("--system-metrics-interval", "--heartbeat-interval"):
        r = cli("run", "--exper", "p/e", opt, value, "--", "true", m=mount)
        assert r.returncode == 2 and opt in r.stderr, r.stderr
    r = cli("run", "--exper", "p/e", "--heartbeat-interval", "0", "--", "true", m=mount)
    assert r.returncode == 2
    assert not (mount.path / "p").exists()


FAKE_NVML = r"""
/* A stand-in for libnvidia-ml.so.1: two GPUs with fixed readings, or an nvmlInit that fails. */
#include <string.h>
typedef struct { unsigned gpu, memory; } util_t;
typedef struct { unsigned long long total, free, used; } mem_t;
static int dev[2];
int nvmlInit_v2(void) { return FAIL; }
int nvmlShutdown(void) { return 0; }
int nvmlDeviceGetCount_v2(unsigned *n) { *n = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **d) { *d = &dev[i]; return 0; }
int nvmlDeviceGetName(void *d, char *out, unsigned len) { strncpy(out, "Fake GPU", len); return 0; }
int nvmlDeviceGetUtilizationRates(void *d, util_t *u) { u->gpu = d == &dev[0] ? 87 : 13; u->memory = 5; return 0; }
int nvmlDeviceGetMemoryInfo(void *d, mem_t *m) { m->total = 16ull << 30; m->used = 3ull << 30; m->free = m->total - m->used; return 0; }
int nvmlDeviceGetPowerUsage(void *d, unsigned *mw) { *mw = 215500; return 0; }
int nvmlDeviceGetTemperature(void *d, int sensor, unsigned *c) { *c = 64; return 0; }
"""


def fake_nvml(folder, fail):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler for the fake NVML library")
    folder.mkdir()
    src = folder / "nvml.c"
    src.write_text(FAKE_NVML)
    subprocess.run([cc, "-shared", "-fPIC", f"-DFAIL={1 if fail else 0}", "-o",
                    str(folder / "libnvidia-ml.so.1"), str(src)], check=True)
    return {"LD_LIBRARY_PATH": str(folder)}


def test_gpu_metrics_through_nvml(mount, tmpdir_al):
    env = fake_nvml(tmpdir_al / "nvml", fail=False)
    r = cli("run", "--exper", "p/e", "--system-metrics-interval", "0.3", "--", "sleep", "1.5",
            m=mount, env=env)
    assert r.returncode == 0, r.stderr
    run = mount.path / "p/experiments/e/runs/1"
    for g, util in ((0, "87"), (1, "13")):
        d = run / f"metrics/system/gpu{g}"
        assert sorted(os.listdir(d)) == ["memory_used_bytes", "power_watts", "temperature_c",
                                         "utilization_percent"]
        assert {v for _, v, _ in points(d / "utilization_percent")} == {util}
        assert {v for _, v, _ in points(d / "power_watts")} == {"215.5"}
        assert {v for _, v, _ in points(d / "temperature_c")} == {"64"}
        assert {v for _, v, _ in points(d / "memory_used_bytes")} == {str(3 << 30)}
    sysj = read_json(run / "system.json")
    assert sysj["machine"]["gpus"] == [{"index": 0, "name": "Fake GPU", "memory_bytes": 16 << 30},
                                       {"index": 1, "name": "Fake GPU", "memory_bytes": 16 << 30}]
    assert sysj["peak"]["gpu0/utilization_percent"] == 87 and sysj["mean"]["gpu1/utilization_percent"] == 13


def test_failing_nvml_gives_metrics_without_gpus(mount, tmpdir_al):
    env = fake_nvml(tmpdir_al / "nvml", fail=True)
    r = cli("run", "--exper", "p/e", "--system-metrics-interval", "0.3", "--", "sleep", "1.2",
            m=mount, env=env)
    assert r.returncode == 0, r.stderr
    assert "NVML" in r.stderr and "GPU metrics are not recorded" in r.stderr
    run = mount.path / "p/experiments/e/runs/1"
    names = os.listdir(run / "metrics/system")
    assert "cpu_percent" in names and not any(n.startswith("gpu") for n in names), names
    assert read_json(run / "system.json")["machine"]["gpus"] == []


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_kill_9_of_wrapper_and_command_shows_crashed(mount):
    p = subprocess.Popen([BIN, "run", "--exper", "p/e", "--heartbeat-interval", "1", "--", "sleep", "300"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env_for(mount),
                         start_new_session=True)
    run = mount.path / "p/experiments/e/runs/1"
    try:
        wait_for(lambda: (run / "heartbeat").exists() and (run / "heartbeat").read_text(), 20, "a heartbeat")
        beat = float((run / "heartbeat").read_text().split()[0])
        assert abs(beat - time.time()) < 5
        assert (run / "status").read_text() == "running\n"
    finally:
        os.killpg(p.pid, signal.SIGKILL)   # the wrapper and the command: a power cut for the run
        p.wait()
    killed = time.time()
    assert (run / "status").read_text() == "running\n"
    assert read_json(run / "run.json")["status"] == "running"
    wait_for(lambda: (run / "status").read_text() == "crashed\n", 30, "status crashed")
    last = float((run / "heartbeat").read_text().split()[0])
    # six intervals after the last beat, not before (a little early: the daemon's clock rounds)
    assert time.time() >= last + 6 - 0.5 and time.time() >= killed + 3
    assert read_json(run / "run.json")["status"] == "crashed"
    rows = (mount.path / "p/experiments/e/runs.csv").read_text().splitlines()
    assert rows[1].split(",")[1] == "crashed", rows
    # the mtime moved: rsync and make see the change
    assert os.stat(run / "status").st_mtime >= last + 6 - 1
    # still set to another status by hand; run.json follows
    (run / "status").write_text("failed 137\n")
    assert (run / "status").read_text() == "failed 137\n" or (run / "status").read_text() == "failed\n"
    j = read_json(run / "run.json")
    assert j["status"] == "failed" and j["exit_code"] == 137
    assert (run / "heartbeat").read_text() == ""
    assert j["heartbeat"] is None     # a tester saw the cleared beat's time still in run.json


def test_crashed_run_resumed_by_hand(mount):
    run = mount.path / "p/experiments/e/runs/1"
    os.makedirs(run)
    (run / "heartbeat").write_text("1000000000.5 10\n")   # a beat of 2001: long gone
    assert (run / "status").read_text() == "crashed\n"
    (run / "status").write_text("running\n")
    assert (run / "status").read_text() == "running\n"
    j = read_json(run / "run.json")
    assert j["status"] == "running" and len(j["resumed"]) == 1
    assert (run / "heartbeat").read_text() == "" and j["heartbeat"] is None


def test_runs_without_the_wrapper_and_garbage_heartbeats(mount):
    run = mount.path / "p/experiments/e/runs/1"
    os.makedirs(run)
    assert (run / "heartbeat").read_text() == ""
    assert (run / "status").read_text() == "running\n"
    assert read_json(run / "run.json")["heartbeat"] is None
    # garbage written by hand: kept as written, ignored, and the daemon's log says so
    (run / "heartbeat").write_text("not a time\n")
    assert (run / "heartbeat").read_text() == "not a time\n"
    assert (run / "status").read_text() == "running\n"
    assert read_json(run / "run.json")["status"] == "running"
    assert "heartbeat \"not a time\" is not \"TIME INTERVAL\"; ignored" in mount.log_text()
    for bad in ("1000 0", "1000 -5", "nan 10", "1000", "1000 10 extra", "-5 10"):
        (run / "heartbeat").write_text(bad + "\n")
        assert (run / "status").read_text() == "running\n", bad
    # an ended run takes no heartbeat (a wrapper beating after the end changes nothing)
    (run / "status").write_text("finished\n")
    with pytest.raises(OSError) as e:
        (run / "heartbeat").write_text("%f 10\n" % time.time())
    assert e.value.errno == 30   # EROFS
    assert (run / "status").read_text() == "finished\n"


def test_command_shorter_than_the_interval(mount):
    """No sample within the default 10 s: system.json still has the machine and the kernel's
    account of the command at its end."""
    r = cli("run", "--exper", "p/e", "--", PY, "-c", "b = bytearray(50 << 20)", m=mount)
    assert r.returncode == 0, r.stderr
    run = mount.path / "p/experiments/e/runs/1"
    sysj = read_json(run / "system.json")
    assert sysj["samples"] == 0 and sysj["interval"] == 10 and sysj["machine"]["cpu_cores"] >= 1
    assert sysj["peak"]["memory_rss_bytes"] > 50 << 20, sysj
    assert 0 <= sysj["mean"]["cpu_percent"] <= 100 * os.cpu_count() + 5, sysj
    assert set(sysj["peak"]) == {"memory_rss_bytes"} and set(sysj["mean"]) == {"cpu_percent"}
    assert os.listdir(run / "metrics/system") == []


def test_a_command_that_succeeded_exits_1_when_its_end_cannot_be_recorded(mount):
    """README "The command line": `run` exits with the command's own status, but a command that
    exited 0 whose end could not be recorded (the mount went away) makes it exit 1, saying so, so
    that a scheduler does not take the run for a recorded one. The command itself runs to its end."""
    done = mount.root / "done"
    p = subprocess.Popen([BIN, "run", "--exper", "p/w", "--", PY, "-c",
                          "import time, sys; time.sleep(5); open(sys.argv[1], 'w').write('ok')", str(done)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env_for(mount),
                         start_new_session=True)
    try:
        run = mount.path / "p/experiments/w/runs/1"
        wait_for(lambda: (run / "status").exists() and (run / "status").read_text() == "running\n", 20,
                 "the run running")
        mount.allow_log_errors = True
        mount.kill9()
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert done.read_text() == "ok"
    assert p.returncode == 1, (p.returncode, err)
    assert "status" in err and "cannot" in err, err
