# aletheia integration tests: metrics read from the store (issue 11, item 4) — a metric written in
# the read-back form reads back the same bytes after a remount (points read straight from the
# stored chunks' text, README "metrics"), runs.csv shows the same bytes whether its summaries come
# from memory or from the stored documents, and a damaged or missing chunk fails the read with EIO
# instead of ending the text early.
import errno
import csv
import io
import os
import sqlite3

import pytest

from alutil import FIRESTORE, mkrun

# Values and times written exactly as they read back (shortest decimal, C's exponents, three
# decimals of time), steps past 2^53 and at int64's ends.
VALUES = ["0.93", "1e-07", "1e+300", "-2.5", "nan", "inf", "-inf", "0.30000000000000004",
          "1.2345678901234568e+17", "5e-324", "-5e-324", "-0", "0", "0.9300000071525574",
          "1.7976931348623157e+308", "123.456", "0.0001", "1e-05", "100", "9007199254740992",
          "2.2250738585072014e-308", "0.12345678901234566", "-1e+22", "1e+15", "999999999999999"]
TIMES = ["1700000000.123", "-62135596800.000", "253402300799.999", "0.000", "-0.001",
         "1733400000.000"]


def tricky_lines(n):
    out = []
    for i in range(n):
        step = (9007199254740993 + i) if i % 3 == 0 else (-i if i % 3 == 1 else 9223372036854775807 - i)
        out.append(f"{step} {VALUES[i % len(VALUES)]} {TIMES[i % len(TIMES)]}\n")
    return "".join(out)


def write_metric(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        lines = text.splitlines(keepends=True)
        for i in range(0, len(lines), 2000):
            os.write(fd, "".join(lines[i:i + 2000]).encode())
    finally:
        os.close(fd)


def test_a_metric_reads_back_the_bytes_written_after_a_remount(mount_factory):
    m = mount_factory()
    run = mkrun(m)
    text = tricky_lines(2 * 4096 + 1234)   # two full chunks and a partly filled one
    write_metric(run / "metrics" / "loss", text)
    want = text.encode()
    assert (run / "metrics" / "loss").read_bytes() == want   # from memory
    m.wait_idle()
    m.remount()                                               # from the stored chunks
    metric = run / "metrics" / "loss"
    assert os.stat(metric).st_size == len(want)
    assert metric.read_bytes() == want
    # across the first chunk boundary, from a fresh descriptor
    edge = sum(len(line) for line in text.splitlines(keepends=True)[:4096])
    with open(metric, "rb") as f:
        f.seek(edge - 50)
        assert f.read(100) == want[edge - 50:edge + 50]


def test_runs_csv_is_the_same_from_memory_and_from_the_store(mount_factory):
    m = mount_factory()
    lasts = ["nan", "-0", "1e-07", "0.1", "inf", "-inf", "0.30000000000000004", "1e+300"]
    for r in range(1, 5):
        run = mkrun(m, run=str(r))
        (run / "params" / "lr").write_text(f"0.{r}\n")
        for k, name in enumerate(["loss", "acc", "val/loss"]):
            os.makedirs((run / "metrics" / name).parent, exist_ok=True)
            with open(run / "metrics" / name, "a") as f:
                f.write(f"1\n2\n{lasts[(r + k) % len(lasts)]}\n")
    table = m.path / "p" / "experiments" / "e" / "runs.csv"
    m.wait_idle()
    in_memory = table.read_bytes()
    m.remount()
    stored = table.read_bytes()
    assert stored == in_memory
    head = stored.decode().split("\r\n")[0]
    assert head.endswith(",param.lr,metric.acc,metric.acc.min,metric.acc.max,metric.loss,metric.loss.min,"
                         "metric.loss.max,metric.val/loss,metric.val/loss.min,metric.val/loss.max"), head
    rows = list(csv.DictReader(io.StringIO(stored.decode(), newline="")))
    assert [[row["metric.acc"], row["metric.loss"], row["metric.val/loss"]] for row in rows] == \
        [[lasts[(r + 1) % 8], lasts[r % 8], lasts[(r + 2) % 8]] for r in range(1, 5)]


def chunk_rows(m, metric_doc):
    db = sqlite3.connect(str(m.store / "meta.db"))
    try:
        return db, [p for (p,) in db.execute("SELECT path FROM docs WHERE parent = ? ORDER BY path",
                                             (metric_doc + "/chunks",))]
    except Exception:
        db.close()
        raise


@pytest.mark.skipif(FIRESTORE, reason="damages the SQLite file behind the store's back")
@pytest.mark.parametrize("damage", ["broken", "missing"])
def test_a_damaged_or_missing_chunk_fails_the_read(mount_factory, damage):
    m = mount_factory()
    run = mkrun(m)
    text = "".join(f"{i} {i % 97}.5 1700000000.000\n" for i in range(3 * 4096))
    write_metric(run / "metrics" / "loss", text)
    m.wait_idle()
    m.umount()
    db, chunks = chunk_rows(m, "projects/p/experiments/e/runs/1/metrics/loss")
    try:
        assert len(chunks) == 3, chunks
        second = [p for p in chunks if p.endswith("-1")][0]
        if damage == "broken":
            db.execute("UPDATE docs SET fields = ? WHERE path = ?",
                       ('{"steps":{"arrayValue":{"values":[{"integerValue":"5"},', second))
        else:
            db.execute("DELETE FROM docs WHERE path = ?", (second,))
        db.commit()
    finally:
        db.close()
    m.start()
    got = bytearray()
    with open(run / "metrics" / "loss", "rb") as f:
        with pytest.raises(OSError) as e:
            while True:
                b = f.read(65536)
                if not b:
                    break
                got += b
    assert e.value.errno == errno.EIO
    # what came before the damage came out, exactly
    first = "".join(text.splitlines(keepends=True)[:4096]).encode()
    assert bytes(got[:len(first)]) == first[:len(got)]
    assert len(got) <= len(first)
