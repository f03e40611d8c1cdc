# aletheia integration tests: fixtures that mount aletheia on a temp folder (in the style of libfuse's runner).
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import alutil  # noqa: E402


def _check_environment():
    if not alutil.BIN or not os.access(alutil.BIN, os.X_OK):
        pytest.skip("ALETHEIA_BIN is not set to the aletheia binary")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing")
    if shutil.which("fusermount3") is None:
        pytest.skip("fusermount3 is missing")


@pytest.fixture(scope="session", autouse=True)
def firestore_emulator():
    """With ALETHEIA_TEST_STORE=firestore: one emulator for the session, on a free loopback port."""
    if not alutil.FIRESTORE:
        yield None
        return
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.Popen(["node", os.path.join(root, "scripts", "firestore-emulator"), "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    line = p.stdout.readline().strip()   # "firestore-emulator listening on 127.0.0.1:PORT"
    os.environ["FIRESTORE_EMULATOR_HOST"] = line.rsplit(" ", 1)[-1]
    yield p
    p.kill()
    p.wait()


def pytest_collection_modifyitems(config, items):
    """Tests of the embedded store's own files and lock make no sense on Firestore."""
    if not alutil.FIRESTORE:
        return
    skip = pytest.mark.skip(reason="about the embedded SQLite store only")
    for item in items:
        if item.get_closest_marker("local_store_only"):
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "local_store_only: needs the embedded SQLite store")


@pytest.fixture
def tmpdir_al():
    """A temp folder outside any git repository; the test's cwd while it runs."""
    d = alutil.new_tmp()
    old = os.getcwd()
    os.chdir(d)
    yield d
    os.chdir(old)
    alutil.rmtree(d)


@pytest.fixture
def mount_factory(tmpdir_al):
    """mount_factory(name='mnt', extra=(), store=None, blobs=None, cache=None, start=True) -> Mount."""
    _check_environment()
    mounts = []

    def make(name="mnt", extra=(), store=None, blobs=None, cache=None, start=True):
        m = alutil.Mount(tmpdir_al, name=name, extra=extra, store=store, blobs=blobs, cache=cache)
        mounts.append(m)
        if start:
            m.start()
        return m

    yield make
    problems = []
    for m in reversed(mounts):
        problems += m.teardown()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def mount(mount_factory):
    return mount_factory()


@pytest.fixture
def run(mount):
    """A running run p/e/runs/1 on a fresh mount."""
    return alutil.mkrun(mount)
