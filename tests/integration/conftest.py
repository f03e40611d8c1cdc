# aletheia integration tests: fixtures that mount aletheia on a temp folder (in the style of libfuse's runner).
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import alutil  # noqa: E402


def _missing_environment():
    """Why the suite cannot run here, or None."""
    if not alutil.BIN or not os.access(alutil.BIN, os.X_OK):
        return "ALETHEIA_BIN is not set to the aletheia binary"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing"
    # the integration-browser suite (test_browser.py alone) cannot run without a browser
    if os.environ.get("ALETHEIA_TEST_BROWSER") == "1" and not (shutil.which("chromium") or
                                                                shutil.which("chromium-browser")):
        return "chromium is missing (apt-get install chromium; scripts/setup installs it)"
    return None


def pytest_sessionstart(session):
    """A suite that cannot run says so with exit 77 (SKIP for meson), never passes by skipping
    every test. --collect-only needs nothing."""
    why = _missing_environment()
    if why and not session.config.option.collectonly:
        pytest.exit(f"cannot run the integration tests: {why}", returncode=77)


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


def _start_server(argv, prefix, logpath, timeout=30):
    """Starts a server whose log says "<prefix>HOST:PORT" once it listens; returns (proc, "HOST:PORT")."""
    import subprocess
    import time
    logf = open(logpath, "wb")
    p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    logf.close()
    deadline = time.monotonic() + timeout
    while True:
        with open(logpath, errors="replace") as f:
            for line in f:
                if line.startswith(prefix):
                    return p, line[len(prefix):].strip()
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            p.wait()
            with open(logpath, errors="replace") as f:
                pytest.exit(f"{argv[0:2]} did not start:\n{f.read()[-2000:]}", returncode=1)
        time.sleep(0.05)


@pytest.fixture(scope="session", autouse=True)
def object_store():
    """With ALETHEIA_TEST_BLOBS=s3 (or gs): one s3rver (or scripts/gcs-emulator) for the session with a
    bucket "bkt", on a free loopback port; the mounts then use --blobs s3://bkt/run-<unique>."""
    if not alutil.REMOTE:
        yield None
        return
    import json
    import urllib.request
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    data = alutil.new_tmp()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                            "AWS_REGION", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
                                            "STORAGE_EMULATOR_HOST")}
    if alutil.BLOBS_KIND == "s3":
        s3rver = os.path.join(root, "scripts", "node_modules", "s3rver", "bin", "s3rver.js")
        if shutil.which("node") is None or not os.path.exists(s3rver):
            pytest.exit("ALETHEIA_TEST_BLOBS=s3 needs node and scripts/node_modules/s3rver (npm ci --prefix scripts)",
                        returncode=1)
        (data / "s3").mkdir()
        p, hostport = _start_server(["node", s3rver, "-d", str(data / "s3"), "-a", "127.0.0.1", "-p", "0",
                                     "--configure-bucket", "bkt"], "S3rver listening on ", data / "server.log")
    else:
        emu = os.path.join(root, "scripts", "gcs-emulator")
        if not os.access(emu, os.X_OK):
            pytest.exit("ALETHEIA_TEST_BLOBS=gs needs scripts/gcs-emulator", returncode=1)
        p, hostport = _start_server([emu, "--port", "0"], "gcs-emulator listening on ", data / "server.log")
        req = urllib.request.Request(f"http://{hostport}/storage/v1/b?project=test", method="POST",
                                     data=json.dumps({"name": "bkt"}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).read()
    server = alutil.ObjectServer(alutil.BLOBS_KIND, f"http://{hostport}", "bkt", p, data)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.update(server.env())
    alutil.OBJSTORE = server
    yield server
    alutil.OBJSTORE = None
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    if p.poll() is None:
        p.kill()
    p.wait()
    alutil.rmtree(data)


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
    """mount_factory(name='mnt', extra=(), store=None, blobs=None, cache=None, start=True, env=None) -> Mount.
    env: extra environment for the daemon only (e.g. an S3 endpoint through scripts/fault-proxy)."""
    mounts = []

    def make(name="mnt", extra=(), store=None, blobs=None, cache=None, start=True, env=None):
        m = alutil.Mount(tmpdir_al, name=name, extra=extra, store=store, blobs=blobs, cache=cache, env=env)
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
