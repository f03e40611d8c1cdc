# aletheia integration tests: helpers shared by the test files (shell runner, mounts, tree dumps).
import errno
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

BIN = os.environ.get("ALETHEIA_BIN", "")
PY = "/usr/bin/python3"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
POINT = re.compile(r"^(-?\d+) (\S+) (\d+\.\d{3})$")
START_TIMEOUT = 10.0
WATCHDOG_S = 90.0
# ALETHEIA_TEST_STORE=firestore runs the suite against scripts/firestore-emulator (conftest starts it)
# instead of the embedded SQLite store.
FIRESTORE = os.environ.get("ALETHEIA_TEST_STORE", "local") == "firestore"
# How long the write-behind keeps showing a delivered write's own time (DELIVERED_GRACE_US, core/store/store_wb.c).
DELIVERED_GRACE_S = 5.0
# ALETHEIA_TEST_BLOBS=s3 (or gs) keeps the mounts' blobs in a bucket of s3rver (or scripts/gcs-emulator),
# which conftest starts once per session (OBJSTORE); each test's mounts get their own prefix run-<unique>.
BLOBS_KIND = os.environ.get("ALETHEIA_TEST_BLOBS", "file")
REMOTE = BLOBS_KIND in ("s3", "gs")
OBJSTORE = None
# ALETHEIA_TEST_READ_PATH=splice mounts with --no-passthrough: the blob read tests run once with
# FUSE passthrough (where the kernel and libfuse allow it) and once through the daemon.
READ_PATH = os.environ.get("ALETHEIA_TEST_READ_PATH", "auto")


def passthrough_expected():
    """Whether a mount here should read complete local blobs through FUSE passthrough: libfuse
    >= 3.16 in the binary, Linux >= 6.9, root (CAP_SYS_ADMIN), and not the splice run."""
    if READ_PATH == "splice" or os.geteuid() != 0:
        return False
    v = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"libfuse (\d+)\.(\d+)", v)
    k = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return bool(m and k and (int(m[1]), int(m[2])) >= (3, 16) and (int(k[1]), int(k[2])) >= (6, 9))


def status(m):
    """.aletheia/status as a dict."""
    out = {}
    for line in (m.path / ".aletheia" / "status").read_text().splitlines():
        k, _, v = line.partition(": ")
        out[k] = v
    return out


def env_for(m=None, extra=None):
    env = dict(os.environ)
    env.pop("ALETHEIA_RUN_DIR", None)
    if m is not None:
        env["ALETHEIA_MOUNT"] = str(m.path)
    if extra:
        env.update(extra)
    return env


def sh(cmd, m=None, cwd=None, check=True, input=None, timeout=60, env=None):
    """Runs cmd with bash -c, as a user would; returns the CompletedProcess (text).
    On a timeout the whole process group is killed (a child stuck in the FS must not outlive the test)."""
    p = subprocess.Popen(["bash", "-c", cmd], cwd=cwd, stdin=subprocess.PIPE if input is not None else
                         subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env_for(m, env), start_new_session=True)
    try:
        out, err = p.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise AssertionError(f"`{cmd}` (cwd {cwd}) did not finish within {timeout} s: hung in the filesystem?")
    r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    if check:
        assert r.returncode == 0, f"`{cmd}` exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def cli(*args, m=None, cwd=None, timeout=60, env=None, input=None):
    """Runs the aletheia binary with args; returns the CompletedProcess (text)."""
    return subprocess.run([BIN, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env_for(m, env), input=input)


def try_write(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    """Opens, writes and closes with raw syscalls; returns the first errno seen (0 if none)."""
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        return e.errno
    err = 0
    try:
        if data:
            os.write(fd, data if isinstance(data, bytes) else data.encode())
    except OSError as e:
        err = e.errno
    try:
        os.close(fd)
    except OSError as e:
        err = err or e.errno
    return err


def errname(e):
    return errno.errorcode.get(e, str(e)) if e else "success"


def read_json(p):
    return json.loads(pathlib.Path(p).read_text())


def sha256(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def points(p):
    """Parses a metric file; every line must be exactly 'STEP VALUE TIME' with a 3-decimal time."""
    out = []
    data = pathlib.Path(p).read_text()
    assert data == "" or data.endswith("\n"), f"{p}: does not end with a newline: {data[-80:]!r}"
    for line in data.splitlines():
        mt = POINT.match(line)
        assert mt, f"{p}: bad point line {line!r}"
        out.append((int(mt.group(1)), mt.group(2), mt.group(3)))
    return out


def mkrun(m, run="1", proj="p", exp="e"):
    """Creates project, experiment and run with plain mkdir (as `mkdir -p` would); returns the run path."""
    r = m.path / proj / "experiments" / exp / "runs" / run
    os.makedirs(r, exist_ok=True)
    return r


def dump_tree(root, skip=(".aletheia",)):
    """Maps each relative path under root to ('d',) / ('l', target) / ('f', bytes)."""
    out = {}
    root = pathlib.Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d not in skip]
        for d in list(dirnames):
            p = pathlib.Path(dirpath, d)
            if p.is_symlink():
                out[os.path.join(rel, d)] = ("l", os.readlink(p))
                dirnames.remove(d)
            else:
                out[os.path.join(rel, d)] = ("d",)
        for f in filenames:
            p = pathlib.Path(dirpath, f)
            if p.is_symlink():
                out[os.path.join(rel, f)] = ("l", os.readlink(p))
            else:
                out[os.path.join(rel, f)] = ("f", p.read_bytes())
    return out


class ObjectServer:
    """A local object server (s3rver or scripts/gcs-emulator) with one bucket, started by conftest."""

    def __init__(self, kind, endpoint, bucket, proc, datadir):
        self.kind, self.endpoint, self.bucket, self.proc, self.datadir = kind, endpoint, bucket, proc, datadir

    def env(self, endpoint=None):
        """The environment a daemon needs to use this server (or a proxy in front of it at endpoint)."""
        ep = endpoint or self.endpoint
        if self.kind == "s3":
            return {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER", "AWS_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL_S3": ep, "AWS_ENDPOINT_URL": ep}
        return {"STORAGE_EMULATOR_HOST": ep.split("://", 1)[-1]}

    def _get(self, url, timeout=30):
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()

    def list(self, prefix):
        """{key: size} of every object whose key starts with prefix (straight from the server)."""
        out = {}
        token = None
        while True:
            if self.kind == "s3":
                q = {"list-type": "2", "prefix": prefix}
                if token:
                    q["continuation-token"] = token
                body = self._get(f"{self.endpoint}/{self.bucket}?{urllib.parse.urlencode(q)}").decode()
                for c in re.findall(r"<Contents>(.*?)</Contents>", body, re.S):
                    key = re.search(r"<Key>(.*?)</Key>", c, re.S).group(1)
                    out[key.replace("&amp;", "&")] = int(re.search(r"<Size>(\d+)</Size>", c).group(1))
                mt = re.search(r"<NextContinuationToken>(.*?)</NextContinuationToken>", body)
                token = mt.group(1) if mt and "<IsTruncated>true</IsTruncated>" in body else None
            else:
                q = {"prefix": prefix}
                if token:
                    q["pageToken"] = token
                doc = json.loads(self._get(f"{self.endpoint}/storage/v1/b/{self.bucket}/o?"
                                           f"{urllib.parse.urlencode(q)}"))
                for it in doc.get("items", []):
                    out[it["name"]] = int(it["size"])
                token = doc.get("nextPageToken")
            if not token:
                return out

    def get(self, key):
        if self.kind == "s3":
            return self._get(f"{self.endpoint}/{self.bucket}/{urllib.parse.quote(key)}")
        return self._get(f"{self.endpoint}/storage/v1/b/{self.bucket}/o/{urllib.parse.quote(key, safe='')}?alt=media")

    def put(self, key, data):
        """Replaces an object behind the mount's back (as damage in the bucket would)."""
        if self.kind == "s3":
            req = urllib.request.Request(f"{self.endpoint}/{self.bucket}/{urllib.parse.quote(key)}", data=data,
                                         method="PUT")
        else:
            q = urllib.parse.urlencode({"uploadType": "media", "name": key})
            req = urllib.request.Request(f"{self.endpoint}/upload/storage/v1/b/{self.bucket}/o?{q}", data=data,
                                         method="POST", headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()

    def delete(self, key):
        if self.kind == "s3":
            url = f"{self.endpoint}/{self.bucket}/{urllib.parse.quote(key)}"
        else:
            url = f"{self.endpoint}/storage/v1/b/{self.bucket}/o/{urllib.parse.quote(key, safe='')}"
        with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30) as r:
            r.read()


class RemoteBlob:
    """One object, with the bits of pathlib.Path that the blob helpers' callers use."""

    def __init__(self, server, key, size):
        self.server, self.key, self.size = server, key, size
        self.name = key.rsplit("/", 1)[-1]

    def stat(self):
        return os.stat_result((0o100444, 0, 0, 1, 0, 0, self.size, 0, 0, 0))

    def read_bytes(self):
        return self.server.get(self.key)

    def __repr__(self):
        return f"RemoteBlob({self.key!r}, {self.size})"


class RemotePrefix:
    """A mount's blob store in a bucket: s3://BUCKET/PREFIX or gs://BUCKET/PREFIX."""

    def __init__(self, server, prefix):
        self.server, self.prefix = server, prefix

    def uri(self):
        return f"{self.server.kind}://{self.server.bucket}/{self.prefix}"

    def objects(self):
        return [RemoteBlob(self.server, k, n) for k, n in sorted(self.server.list(self.prefix + "/").items())]

    def __str__(self):
        return self.uri()


def count_blobs(blobs):
    """Files in the blob folder, not counting its tmp/ and damaged/ folders (objects under the prefix
    for a bucket)."""
    if isinstance(blobs, RemotePrefix):
        return len(blobs.objects())
    return len(blob_files(blobs))


def blob_files(blobs):
    if isinstance(blobs, RemotePrefix):
        return blobs.objects()
    out = []
    for dirpath, dirnames, filenames in os.walk(blobs):
        if os.path.relpath(dirpath, blobs) == ".":
            dirnames[:] = [d for d in dirnames if d not in ("tmp", "damaged")]
        out += [pathlib.Path(dirpath, f) for f in filenames]
    return out


def fusermount(path, lazy=False):
    args = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [str(path)]
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


class Mount:
    """One aletheia daemon in the foreground on a temp mount point, with its own log file."""

    def __init__(self, root, name="mnt", extra=(), store=None, blobs=None, cache=None, env=None):
        self.root = pathlib.Path(root)
        self.path = self.root / name
        self.store = pathlib.Path(store) if store else self.root / "store"
        if isinstance(blobs, RemotePrefix):
            self.blobs = blobs
        elif blobs:
            self.blobs = pathlib.Path(blobs)
        elif REMOTE and OBJSTORE is not None:
            # one prefix per test folder: the mounts of one test share it, as they share root/blobs
            self.blobs = RemotePrefix(OBJSTORE, f"run-{os.getpid()}-{self.root.name}")
        else:
            self.blobs = self.root / "blobs"
        self.cache = pathlib.Path(cache) if cache else self.root / f"cache-{name}"
        self.log = self.root / f"{name}.log"
        self.extra = list(extra)
        self.env = dict(env or {})   # on top of the test's environment, for the daemon only
        self.proc = None
        self.conn = None          # FUSE connection id (minor device number), for an abort on a hang
        self.watchdog = None
        self.allow_log_errors = False
        for d in (self.path, self.store, self.blobs, self.cache):
            if isinstance(d, pathlib.Path):
                d.mkdir(parents=True, exist_ok=True)

    def store_uri(self):
        if FIRESTORE:
            # one Firestore project per store folder, so a remount sees the same data
            return "firestore:t" + hashlib.sha1(str(self.store).encode()).hexdigest()[:16]
        return f"local:{self.store}"

    def blobs_uri(self):
        return self.blobs.uri() if isinstance(self.blobs, RemotePrefix) else f"file://{self.blobs}"

    def argv(self):
        return [BIN, "mount", str(self.path), "--store", self.store_uri(),
                "--blobs", self.blobs_uri(), "--cache-dir", str(self.cache),
                "--foreground", *self.extra,
                *(["--no-passthrough"] if READ_PATH == "splice" and "--no-passthrough" not in self.extra else [])]

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self):
        with open(self.log, "ab") as logf:
            logf.write(f"=== itest: starting {' '.join(self.argv())}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env=env_for(extra=self.env))
        status = self.path / ".aletheia" / "status"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"aletheia mount exited {rc} before mounting; log:\n{self.log_text()[-3000:]}")
            if os.path.exists(status):
                self.conn = os.minor(os.stat(self.path).st_dev)
                self._arm_watchdog()
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"{status} did not appear within {START_TIMEOUT} s; log:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def _arm_watchdog(self):
        """A test that hangs in the FS (deadlock) gets its connection aborted instead of hanging pytest."""
        if self.watchdog:
            self.watchdog.cancel()
        self.watchdog = threading.Timer(WATCHDOG_S, self._on_watchdog)
        self.watchdog.daemon = True
        self.watchdog.start()

    def _on_watchdog(self):
        self.aborted = True
        self.abort()

    def abort(self):
        """Aborts the FUSE connection (fusectl): every waiting request fails with ENOTCONN."""
        if self.conn is None:
            return False
        ctl = f"/sys/fs/fuse/connections/{self.conn}/abort"
        if not os.path.exists(ctl):
            subprocess.run(["mount", "-t", "fusectl", "none", "/sys/fs/fuse/connections"],
                           capture_output=True, timeout=10)
        try:
            with open(ctl, "w") as f:
                f.write("1")
            return True
        except OSError:
            return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def umount(self, check=True):
        """A normal unmount (fusermount3 -u); the daemon must then exit 0."""
        if self.proc is None:
            return None
        r = None
        for _ in range(30):
            r = fusermount(self.path)
            if r.returncode == 0:
                break
            time.sleep(0.1)   # busy: a process of ours may still be leaving the tree
        else:
            if check:
                raise AssertionError(f"fusermount3 -u {self.path} failed: {r.stderr.strip()}")
            return None
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            if check:
                raise AssertionError(f"daemon did not exit within 60 s of fusermount3 -u ({r.stderr.strip()})")
            return None
        if check:
            assert rc == 0, f"daemon exited {rc} after a normal unmount; log:\n{self.log_text()[-3000:]}"
        return rc

    def kill9(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.abort()
                self.proc.wait(timeout=10)
        fusermount(self.path, lazy=True)

    def remount(self):
        if self.alive():
            self.umount()
        else:
            fusermount(self.path, lazy=True)
        return self.start()

    def status(self):
        out = {}
        for line in (self.path / ".aletheia" / "status").read_text().splitlines():
            k, sep, v = line.partition(":")
            if sep:
                out[k.strip()] = v.strip()
        return out

    def wait_idle(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st.get("pending_writes") == "0":
                return
            assert time.monotonic() < deadline, f"pending_writes stayed {st.get('pending_writes')}"
            time.sleep(0.05)

    def wait_settled(self, timeout=30):
        """wait_idle, and on Firestore until the mount shows the times Firestore gave its writes: for
        DELIVERED_GRACE_S after a write is delivered the mount keeps showing its own time for it (README
        "Known limitations"), so a page's last-activity time could differ from a remount's by the
        round trip until then."""
        self.wait_idle(timeout)
        if FIRESTORE:
            time.sleep(DELIVERED_GRACE_S + 0.5)

    def teardown(self):
        """Always runs: normal unmount (daemon must exit 0), then lazy unmount and kill whatever is left."""
        problems = []
        if self.alive():
            try:
                self.umount(check=True)
            except AssertionError as e:
                problems.append(str(e))
        if self.watchdog:
            self.watchdog.cancel()
        if getattr(self, "aborted", False):
            problems.append(f"the test hung for {WATCHDOG_S} s in the filesystem; its FUSE connection was aborted")
        fusermount(self.path, lazy=True)
        if self.alive():
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.abort()   # a daemon thread stuck in its own mount keeps the process from dying
                self.proc.wait(timeout=10)
        log = self.log_text()
        if "AddressSanitizer" in log or "LeakSanitizer" in log or "runtime error:" in log:
            problems.append("sanitizer report in the daemon log:\n" + log[-4000:])
        if not self.allow_log_errors and "ERROR" in log:
            lines = [l for l in log.splitlines() if "ERROR" in l]
            problems.append("ERROR in the daemon log:\n" + "\n".join(lines[:20]))
        return problems


def new_tmp():
    return pathlib.Path(tempfile.mkdtemp(prefix="al-itest-"))


def rmtree(p):
    shutil.rmtree(p, ignore_errors=True)


def poll(check, timeout=10.0):
    """Retries check() (an assertion) until it holds or timeout passes, then raises its last failure: a
    remote store shows a change within the read cache's TTL, and FUSE's RELEASE reaches the daemon a moment
    after close() returns."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
