# aletheia integration tests: defects found by attacking the mount on Firestore (values past
# Firestore's limits on the path and the run document) and in error messages. Each failed on the
# code it was written against.
import errno
import os
import time
import pathlib

import pytest

import alutil
from alutil import mkrun, sh, try_write
from test_outage import Outage

TTL_S = 1.0     # the read cache's TTL (default)

@pytest.fixture
def emulator(tmpdir_al):
    """A private emulator behind scripts/fault-proxy (mode "reset" makes it unreachable for one mount only)."""
    if not alutil.FIRESTORE:
        yield None
        return
    o = Outage(pathlib.Path(tmpdir_al), "reset")
    yield o
    o.close()




def test_run_fields_cannot_grow_the_run_past_one_mib(mount):
    """README "params": "a whole document (a run with all its params) at most 1 MiB. A value past them fails at
    close() with EINVAL", and "Durability": what close() accepted is never refused later by Firestore. The SQLite
    store refuses a description that takes the run past 1 MiB; over Firestore the write-behind checks only the
    fields written, so `description` and `model` are accepted and the run document grows past what Firestore
    stores: Google's servers would refuse the update at delivery (the emulator has no size limit), and every
    later param write of the run fails with EINVAL."""
    run = mkrun(mount)
    assert try_write(run / "params/big", "x" * 600_000 + "\n") == 0
    err = try_write(run / "description", "d" * 600_000 + "\n")
    assert err == errno.EINVAL, f"a description taking the run to ~1.2 MB: close() gave {alutil.errname(err)}"
    err = try_write(run / "model", "m" * 600_000 + "\n")
    assert err == errno.EINVAL, f"a model taking the run to ~1.2 MB: close() gave {alutil.errname(err)}"
    assert try_write(run / "params/small", "1\n") == 0, "a small param is refused: the run is already too big"


@pytest.mark.parametrize("what", ["metric", "artifact-offline"])
def test_path_whose_document_id_is_too_long_is_refused_or_kept(emulator, mount_factory, what):
    """README "The tree": names are valid Firestore document ids, at most 1,500 bytes, anything else EINVAL or
    ENAMETOOLONG; "Durability": what close() accepted is never refused later by Firestore. A metric's or an
    artifact's document id is its whole path with / as %2F (and % as %25), so two 800-byte names (each valid)
    make an id Firestore refuses, and nothing checks that id before it is journaled:
    - metric: the create is accepted (the metric is listed), its write fails with EINVAL, and the creation stays
      pending for ever (the flusher retries it; `aletheia umount` waits 60 s and says the next mount delivers it,
      which it never does);
    - artifact-offline: written while Firestore is unreachable (the lookup is answered from this mount's copy),
      close() returns 0 and the artifact is listed; when Firestore is back the write is refused and dropped, and
      the file is gone.
    Expected: refused at once (EINVAL/ENAMETOOLONG) with nothing pending, or stored and kept."""
    if not alutil.FIRESTORE and what == "artifact-offline":
        pytest.skip("the outage needs ALETHEIA_TEST_STORE=firestore")
    m = mount_factory(env=emulator.env() if alutil.FIRESTORE else None)
    m.allow_log_errors = True
    run = mkrun(m)
    a, b = "a" * 800, "b" * 800
    folder = run / ("metrics" if what == "metric" else "artifacts") / a
    folder.mkdir()
    m.wait_idle(timeout=15)
    if what == "metric":
        err = try_write(folder / b, "0.5\n", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    else:
        assert os.listdir(folder) == []
        time.sleep(6 + TTL_S)        # nothing fresh left: the mount answers from its copies
        emulator.begin()
        try:
            err = try_write(folder / b, "hello\n")
            assert try_write(run / "artifacts/other.txt", "kept\n") == 0
        finally:
            emulator.end()
    assert err in (0, errno.EINVAL, errno.ENAMETOOLONG), alutil.errname(err)
    try:
        m.wait_idle(timeout=30)
    except AssertionError as e:
        raise AssertionError(f"{what} {a[:3]}…/{b[:3]}… ({alutil.errname(err)}) left a write pending for ever: "
                             f"{e}; last_error: {m.status().get('last_error', '')[:160]}")
    time.sleep(TTL_S + 0.5)
    listed = b in os.listdir(folder)
    assert listed == (err == 0), (f"the {what}'s close()/write() gave {alutil.errname(err)}, yet once Firestore "
                                  f"answered it is {'listed' if listed else 'gone (dropped at delivery)'}")
    if err == 0:
        m.umount()
        fresh = mount_factory(name="fresh", store=m.store, env=emulator.env() if alutil.FIRESTORE else None)
        f2 = fresh.path / folder.relative_to(m.path)
        assert b in os.listdir(f2), (f"the {what} was accepted (close() returned 0) but is gone after a remount: "
                                     f"{[x[:8] for x in os.listdir(f2)]}")


def test_error_message_keeps_its_cause(mount):
    """README "Files behave like files"/common rules: the log says why a file operation failed. An invalid
    metadata file fails at close() with EINVAL, and the log line built from the parser's message
    (al_error_set(…, "%s", al_error_last()): the message printed into itself) repeats its prefix and ends in
    leftover bytes of an older message instead of the parser's cause. Same for a run created while Firestore
    is unreachable ("cannot create … while the metastore is unreachable: cannot create … : ms (no error yet)")."""
    (mount.path / "p").mkdir()
    mount.allow_log_errors = True
    err = try_write(mount.path / "p/metadata/m", '{"a": 1, "a": 2}')
    assert err == errno.EINVAL, alutil.errname(err)
    lines = [l for l in mount.log_text().splitlines() if "must be one JSON object" in l]
    assert lines, mount.log_text()[-2000:]
    line = lines[-1]
    assert line.count("must be one JSON object") == 1, f"the message repeats itself: {line!r}"
    assert 'the key "a"' in line, f"the parser's cause is lost: {line!r}"

