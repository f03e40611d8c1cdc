# aletheia integration tests: the richer runs table (runs.csv's duration, tags and per-metric min/max columns,
# runs.changed.csv), best/min|max/<metric> links, tags (runs/<r>/tags/, experiments/<e>/tagged/) through real
# programs: touch, rm, ls -l, readlink, cd, Python's csv (README "runs.csv", "best", "tags"). Both metastores.
import csv
import datetime
import errno
import io
import json
import os

import pytest

import alutil
from alutil import mkrun, poll, read_json, sh, try_write

TTL_S = 1.0   # the attribute / render cache TTL on a remote store (README "Firestore")




def until(pred, what, timeout=10.0):
    """Waits until pred() is true (a remote store shows a change within the TTL); fails naming what."""
    def check():
        assert pred(), what
    poll(check, timeout)


def rows(path):
    """runs.csv (or runs.changed.csv) read by Python's csv module: (header, [dict per row])."""
    with open(path, newline="") as f:
        text = f.read()
    assert os.stat(path).st_size == len(text.encode())
    r = list(csv.reader(io.StringIO(text, newline="")))
    return r[0], [dict(zip(r[0], row)) for row in r[1:]]


def append(path, text):
    """`printf TEXT >> path`, after `mkdir -p` of its folder (metrics with '/' in their names)."""
    os.makedirs(path.parent, exist_ok=True)
    with open(path, "a") as f:
        f.write(text)


def test_runs_csv_min_max_duration_tags(mount):
    e = mount.path / "p" / "experiments" / "e"
    r1, r2 = mkrun(mount, "1"), mkrun(mount, "2")
    append(r1 / "metrics" / "loss", "0.5\n0.125\nnan\n0.25\n")
    append(r2 / "metrics" / "loss", "-inf\n3\n")
    append(r2 / "metrics" / "val" / "acc", "nan\n")
    (r1 / "params" / "lr").write_text("0.01\n")
    sh("touch tags/baseline tags/'a b' && cd ../2 && touch tags/new", cwd=r1)
    (r1 / "status").write_text("finished 0\n")
    header, runs = rows(e / "runs.csv")
    assert header[:9] == ["id", "status", "fold", "model", "created", "ended", "git_commit", "duration", "tags"]
    assert header[9:] == ["param.lr", "metric.loss", "metric.loss.min", "metric.loss.max",
                          "metric.val/acc", "metric.val/acc.min", "metric.val/acc.max"]
    one, two = runs
    # NaN ignored for min/max, ±inf are values; all-NaN has no min/max
    assert (one["metric.loss"], one["metric.loss.min"], one["metric.loss.max"]) == ("0.25", "0.125", "0.5")
    assert (two["metric.loss"], two["metric.loss.min"], two["metric.loss.max"]) == ("3", "-inf", "3")
    assert (two["metric.val/acc"], two["metric.val/acc.min"], two["metric.val/acc.max"]) == ("nan", "", "")
    assert one["tags"] == "a b;baseline" and two["tags"] == "new"
    rj = read_json(r1 / "run.json")
    assert list(rj["tags"]) == ["a b", "baseline"] and all(alutil.RFC3339.match(v) for v in rj["tags"].values())
    # duration: ended − started in seconds once ended, empty while running
    assert two["duration"] == ""
    start = rj["started"]
    assert float(one["duration"]) >= 0 and start
    # pandas-free: the min column is a number Python reads
    assert float(one["metric.loss.min"]) == 0.125


def test_runs_changed_csv(mount):
    e = mount.path / "p" / "experiments" / "e"
    for i, lr in (("1", "0.1"), ("2", "0.2"), ("3", "0.1")):
        r = mkrun(mount, i)
        (r / "params" / "lr").write_text(lr + "\n")
        (r / "params" / "bs").write_text("32\n")
        (r / "model").write_text("resnet, v2\n")
    header, runs = rows(e / "runs.changed.csv")
    # created differs run to run; lr does; bs, model, status do not
    assert header == ["id", "created", "param.lr"]
    assert [r["param.lr"] for r in runs] == ["0.1", "0.2", "0.1"]
    assert [r["id"] for r in runs] == ["1", "2", "3"]
    append(e / "runs" / "2" / "metrics" / "loss", "1\n")
    until(lambda: "metric.loss" in rows(e / "runs.changed.csv")[0], "runs.changed.csv has the new loss column")
    header, runs = rows(e / "runs.changed.csv")
    assert [r["metric.loss"] for r in runs] == ["", "1", ""]
    assert try_write(e / "runs.changed.csv", "x") in (errno.EACCES, errno.EPERM)


def test_tags_with_programs(mount):
    """touch adds, rm removes (no --allow-delete, also on a finished run), ls -l, readlink and cd through
    tagged/<tag>/<run>; content and bad names are refused."""
    e = mount.path / "p" / "experiments" / "e"
    r1, r2 = mkrun(mount, "1"), mkrun(mount, "2")
    sh("touch tags/good tags/ünïcode", cwd=r1)
    sh("touch tags/good", cwd=r2)
    (r2 / "status").write_text("finished 0\n")
    sh("touch tags/late", cwd=r2)        # a finished run takes tags
    assert sorted(os.listdir(r2 / "tags")) == ["good", "late"]
    st = os.stat(r1 / "tags" / "good")
    assert st.st_size == 0 and (st.st_mode & 0o777) == 0o644
    out = sh("ls -l tagged/good", cwd=e).stdout
    assert "1 -> ../../runs/1" in out and "2 -> ../../runs/2" in out, out
    assert os.readlink(e / "tagged" / "good" / "2") == "../../runs/2"
    assert sh("cd tagged/good/2 && cat status", cwd=e).stdout.startswith("finished")
    assert sorted(os.listdir(e / "tagged")) == ["good", "late", "ünïcode"]
    # rm without --allow-delete, on the finished run too
    sh("rm tags/good", cwd=r2)
    assert sorted(os.listdir(r2 / "tags")) == ["late"]
    assert sorted(os.listdir(e / "tagged" / "good")) == ["1"]
    assert not os.path.lexists(e / "tagged" / "good" / "2")
    # a tag holds no content: writing fails with EINVAL, the tag stays
    assert try_write(r1 / "tags" / "note", "some text\n") == errno.EINVAL
    assert os.path.exists(r1 / "tags" / "note")
    sh(": > tags/empty", cwd=r1)
    # bad names
    for bad in ("a;b", "__x__", "tab\there"):
        assert try_write(r1 / "tags" / bad, "") == errno.EINVAL, bad
    # generated folders refuse files
    assert try_write(e / "tagged" / "good" / "x", "") in (errno.EACCES, errno.EPERM)
    assert read_json(r1 / "run.json")["tags"].keys() == {"good", "ünïcode", "note", "empty"}
    # other deletes still need --allow-delete
    assert sh("rm run.json", cwd=r1, check=False).returncode != 0
    mount.remount()
    assert sorted(os.listdir(r1 / "tags")) == ["empty", "good", "note", "ünïcode"]


def test_best_links(mount):
    e = mount.path / "p" / "experiments" / "e"
    for i, loss, acc in (("1", "0.5", "0.75"), ("2", "0.25", "0.75"), ("3", "0.25", "nan"), ("4", None, "0.5")):
        r = mkrun(mount, i)
        (r / "model").write_text(f"m{i}\n")
        if loss:
            append(r / "metrics" / "loss", "9\n" + loss + "\n")
        append(r / "metrics" / "val" / "acc", acc + "\n")
    assert sorted(os.listdir(e / "best")) == ["max", "min"]
    assert sorted(os.listdir(e / "best" / "min")) == ["loss", "val"]
    assert os.readlink(e / "best" / "min" / "loss") == "../../runs/2"       # tie with 3: lowest id
    assert os.readlink(e / "best" / "max" / "loss") == "../../runs/1"
    assert os.readlink(e / "best" / "max" / "val" / "acc") == "../../../runs/1"   # NaN skipped, tie: 1
    assert os.readlink(e / "best" / "min" / "val" / "acc") == "../../../runs/4"
    assert sh("cat best/min/val/acc/model && cd best/max/loss && cat model", cwd=e).stdout == "m4\nm1\n"
    assert "loss -> ../../runs/2" in sh("ls -l best/min", cwd=e).stdout
    # writing there fails as for other generated files
    assert try_write(e / "best" / "min" / "x", "1") in (errno.EACCES, errno.EPERM)
    assert sh("ln -s ../../runs/1 best/min/y", cwd=e, check=False).returncode != 0
    assert sh("mkdir best/min/z", cwd=e, check=False).returncode != 0
    # a new point moves it within the TTL
    append(e / "runs" / "4" / "metrics" / "loss", "0.125\n")
    until(lambda: os.readlink(e / "best" / "min" / "loss") == "../../runs/4", "best/min/loss follows the new point")
    assert sh("cd best/min/loss && cat model", cwd=e).stdout == "m4\n"


def test_thousand_runs(mount):
    """1,000 runs: runs.csv has them all with min/max, best/ and tagged/ answer."""
    e = mount.path / "p" / "experiments" / "e"
    e.mkdir(parents=True)
    for i in range(1000):
        r = e / "runs" / str(i)
        r.mkdir()
        append(r / "metrics" / "loss", f"{i + 1}\n{1000 - i}\n")
        if i % 100 == 7:
            (r / "tags" / "x").touch()
    header, runs = rows(e / "runs.csv")
    assert len(runs) == 1000
    assert runs[999]["metric.loss"] == "1" and runs[999]["metric.loss.max"] == "1000"
    assert os.readlink(e / "best" / "min" / "loss") == "../../runs/999"
    assert os.readlink(e / "best" / "max" / "loss") == "../../runs/0"
    assert sorted(os.listdir(e / "tagged" / "x"), key=int) == [str(i) for i in range(7, 1000, 100)]
    header, runs = rows(e / "runs.changed.csv")
    assert "metric.loss" in header and "status" not in header and len(runs) == 1000


def test_best_of_names_that_are_both_a_metric_and_a_folder(mount):
    """README "best": one run's `loss` and another's `loss/a` (and a third's `loss/a/b`): the link
    keeps the name, the metrics below it are shown beside it with their '/' written %2F."""
    e = mount.path / "p" / "experiments" / "e"
    for i, name in (("1", "loss"), ("2", "loss/a"), ("3", "loss/a/b"), ("4", "acc/x")):
        r = mkrun(mount, i)
        os.makedirs((r / "metrics" / name).parent, exist_ok=True)
        append(r / "metrics" / name, "1\n")
    assert sorted(os.listdir(e / "best" / "min")) == ["acc", "loss", "loss%2Fa", "loss%2Fa%2Fb"]
    assert os.readlink(e / "best" / "min" / "loss") == "../../runs/1"
    assert os.readlink(e / "best" / "min" / "loss%2Fa") == "../../runs/2"
    assert os.readlink(e / "best" / "max" / "loss%2Fa%2Fb") == "../../runs/3"
    assert os.readlink(e / "best" / "max" / "acc" / "x") == "../../../runs/4"
    assert (e / "best" / "min" / "loss%2Fa" / "metrics" / "loss" / "a").is_file()


@pytest.mark.skipif(not alutil.FIRESTORE, reason="needs ALETHEIA_TEST_STORE=firestore")
def test_two_mounts_tags_and_best(mount_factory):
    """Tags are the run document's map field tags (name → timestamp, README "Firestore"); a second mount sees
    another's tags in tagged/ and best/ following its new points within the TTL."""
    from test_firestore import TS, fs_dump
    a = mount_factory("a")
    b = mount_factory("b", store=a.store)
    ra = mkrun(a, "1")
    mkrun(a, "2")
    append(ra / "metrics" / "loss", "0.5\n")
    append(a.path / "p" / "experiments" / "e" / "runs" / "2" / "metrics" / "loss", "0.25\n")
    (ra / "tags" / "good").touch()
    a.wait_idle()
    doc = fs_dump(a)["projects/p/experiments/e/runs/1"]
    assert set(doc["tags"]) == {"good"} and TS(doc["tags"]["good"]) > 0
    eb = b.path / "p" / "experiments" / "e"
    until(lambda: os.listdir(eb / "tagged" / "good") == ["1"], "b's tagged/good lists run 1")
    until(lambda: os.readlink(eb / "best" / "min" / "loss") == "../../runs/2", "b's best/min/loss is run 2")
    append(ra / "metrics" / "loss", "0.125\n")
    a.wait_idle()
    until(lambda: os.readlink(eb / "best" / "min" / "loss") == "../../runs/1", "b's best/min/loss follows a's point")
    # removed on b, gone on a
    os.unlink(eb / "runs" / "1" / "tags" / "good")
    until(lambda: not os.path.lexists(ra / "tags" / "good"), "the tag b removed is gone on a")


def test_rm_rf_experiment_with_tags_and_best(mount_factory):
    """With --allow-delete, rm -rf of an experiment walks best/ and tagged/ (generated: they go with it) and
    its runs' tags/, and removes it."""
    m = mount_factory(extra=["--allow-delete"])
    e = m.path / "p" / "experiments" / "e"
    for i in ("1", "2"):
        r = mkrun(m, i)
        append(r / "metrics" / "val" / "loss", "0.5\n")
        (r / "tags" / "t").touch()
    assert os.path.islink(e / "best" / "min" / "val" / "loss")
    sh("rm -rf p/experiments/e", cwd=m.path)
    assert not os.path.exists(e)
    assert os.listdir(m.path / "p" / "experiments") == []


def test_runs_csv_exact_bytes(mount, tmp_path):
    """runs.csv byte for byte over awkward values: params with commas, quotes, newlines, unicode,
    typed and nested values, keys needing quotes, NaN/±inf metrics, runs missing params or metrics,
    running, finished, failed and crashed runs, fold/model, tags, a git commit (README "runs.csv").
    Guards the render against any change of its bytes (it once held every run as a tree)."""
    e = mount.path / "p" / "experiments" / "e"
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    sh(" ".join(git) + " init -q && " + " ".join(git) + " commit -q --allow-empty -m x", cwd=repo)
    commit = sh("git rev-parse HEAD", cwd=repo).stdout.strip()
    r1 = mkrun(mount, "1")
    os.makedirs(e / "runs" / "10")
    sh("mkdir %s" % (e / "runs" / "2"), cwd=repo)   # its git state: repo's commit
    os.makedirs(e / "runs" / "b")
    os.makedirs(e / "runs" / "007")
    r2, r10, rb, r7 = e / "runs" / "2", e / "runs" / "10", e / "runs" / "b", e / "runs" / "007"
    (r1 / "params.json").write_text(json.dumps({
        "comma": "a,b", "quote": 'say "hi"', "nl": "line1\nline2", "uni": "h\u00e9llo \u2713 \U0001F600",
        "int": 3, "float": 0.1, "big": 1e300, "tiny": 1e-7, "yes": True, "none": None,
        "nested": {"x": [1, "y,z"]}, "list": [1, 2.5], "k,ey": "v", 'q"k': "", "empty": ""}))
    (r2 / "params.json").write_text(json.dumps({"int": -4, "only2": "x\r\ny", "comma": "plain"}))
    (r7 / "params" / "float").write_text("0.30000000000000004\n")
    append(r1 / "metrics" / "loss", "0.5\n0.125\nnan\n0.25\n")
    append(r1 / "metrics" / "acc,top1", "1\n")
    append(r2 / "metrics" / "loss", "-inf\n3\ninf\n")
    append(r2 / "metrics" / "val" / "acc", "nan\n")
    append(rb / "metrics" / "loss", "1e-300\n-0\n")
    (r1 / "fold").write_text("3\n")
    (r1 / "model").write_text('res"net, v2\n')
    (r2 / "model").write_text("caf\u00e9\n")
    sh("touch tags/'a,b' tags/'x\"y' tags/z", cwd=r1)
    (rb / "tags" / "only").touch()
    (r1 / "status").write_text("finished 0\n")
    (r10 / "status").write_text("failed 3\n")
    (rb / "heartbeat").write_text("1000000000 10\n")   # long stopped: crashed (README "Crashed runs")

    def times(r):
        j = read_json(e / "runs" / r / "run.json")
        assert j["created"]
        dur = ""
        if j["ended"]:
            d = [datetime.datetime.strptime(j[k], "%Y-%m-%dT%H:%M:%S.%fZ") for k in ("started", "ended")]
            dur = repr(max((d[1] - d[0]) // datetime.timedelta(microseconds=1), 0) / 1e6)
            dur = dur[:-2] if dur.endswith(".0") else dur
        return j["created"], j["ended"] or "", dur

    t = {r: times(r) for r in ("1", "2", "007", "10", "b")}
    assert commit and len(commit) == 40
    c = {r: t[r][0] for r in t}
    want = (
        'id,status,fold,model,created,ended,git_commit,duration,tags,param.big,param.comma,param.empty,'
        'param.float,param.int,"param.k,ey",param.list,param.nested,param.nl,param.none,param.only2,'
        '"param.q""k",param.quote,param.tiny,param.uni,param.yes,"metric.acc,top1","metric.acc,top1.min",'
        '"metric.acc,top1.max",metric.loss,metric.loss.min,metric.loss.max,metric.val/acc,metric.val/acc.min,'
        'metric.val/acc.max\r\n'
        '1,finished,3,"res""net, v2",%s,%s,,%s,"a,b;x""y;z",1e+300,"a,b",,0.1,3,v,"[1,2.5]",'
        '"{""x"":[1,""y,z""]}","line1\nline2",,,,"say ""hi""",1e-07,h\u00e9llo \u2713 \U0001F600,true,'
        '1,1,1,0.25,0.125,0.5,,,\r\n' % t["1"] +
        '2,running,,caf\u00e9,%s,,%s,,,,plain,,,-4,,,,,,"x\r\ny",,,,,,,,,inf,-inf,inf,nan,,\r\n' % (c["2"], commit) +
        '007,running,,,%s,,,,,,,,0.30000000000000004,,,,,,,,,,,,,,,,,,,,,\r\n' % c["007"] +
        '10,failed,,,%s,%s,,%s,,,,,,,,,,,,,,,,,,,,,,,,,,\r\n' % t["10"] +
        'b,crashed,,,%s,,,,only,,,,,,,,,,,,,,,,,,,,-0,-0,1e-300,,,\r\n' % c["b"])
    assert (e / "runs.csv").read_bytes() == want.encode()
    assert os.stat(e / "runs.csv").st_size == len(want.encode())
