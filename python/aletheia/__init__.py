"""The seed tracker's API (Metastore, exper, start_run, …) over an aletheia mount.

Every call is a plain file operation on the mount (README "The tree"): a project, experiment and
run are folders, a param is params.json, a metric a line appended to metrics/NAME, an artifact a
copy into artifacts/, a dataset's use a symlink in the run's datasets/. The mount is
$ALETHEIA_MOUNT, else /mnt/aletheia, as for the `aletheia` command. Standard library only.
"""
import errno
import json
import math
import os
import secrets
import shutil

__all__ = ["Metastore", "Experiment", "Run", "Dataset", "default_mount"]
__version__ = "0.1.0"


def default_mount():
    """$ALETHEIA_MOUNT if set and not empty, else /mnt/aletheia (README "The command line")."""
    return os.environ.get("ALETHEIA_MOUNT") or "/mnt/aletheia"


def _write(path, text):
    # one write and a close: the mount records a value when its file is closed, and reports a
    # refused value (EINVAL) there, which Python raises
    with open(path, "w") as f:
        f.write(text)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


class Metastore:
    """A project of the mount: Metastore("vision") is <mount>/vision, made if missing."""

    def __init__(self, project, mount=None):
        self.project = project
        self.mount = os.path.abspath(mount or default_mount())
        # .aletheia/status answers by name on a mount only: an empty mount point (the daemon not
        # running) must not receive the project as a plain folder
        if not os.path.exists(os.path.join(self.mount, ".aletheia", "status")):
            raise FileNotFoundError(errno.ENOENT, "not an aletheia mount; mount one with "
                                    "`aletheia mount` or set ALETHEIA_MOUNT", self.mount)
        self.path = os.path.join(self.mount, project)
        os.makedirs(self.path, exist_ok=True)
        self.local_cache_dir = None

    def set_downloader(self, local_cache_dir=None):
        """Kept for the seed's code: the mount reads and caches blobs itself (its --cache-dir)."""
        self.local_cache_dir = local_cache_dir

    def exper(self, name, debug=False, auto_inc_ids=True):
        """The experiment `name` of this project, made if missing."""
        return Experiment(self, name, auto_inc_ids=auto_inc_ids, debug=debug)

    def dataset(self, name):
        return Dataset(self, name)

    def __repr__(self):
        return f"Metastore({self.project!r}, mount={self.mount!r})"


class Experiment:
    def __init__(self, ms, name, auto_inc_ids=True, debug=False):
        self.ms = ms
        self.name = name
        self.auto_inc_ids = auto_inc_ids
        self.debug = debug
        self.path = os.path.join(ms.path, "experiments", name)
        os.makedirs(self.path, exist_ok=True)

    @property
    def desc(self):
        """The experiment's description file, without its final newline."""
        text = _read(os.path.join(self.path, "description")) or ""
        return text[:-1] if text.endswith("\n") else text

    @desc.setter
    def desc(self, text):
        _write(os.path.join(self.path, "description"), str(text) + "\n")

    def runs(self):
        """The ids of the experiment's runs, numeric ones in numeric order."""
        ids = os.listdir(os.path.join(self.path, "runs"))
        return sorted(ids, key=lambda i: (0, int(i), "") if i.isdigit() else (1, 0, i))

    def _new_run_dir(self):
        runs = os.path.join(self.path, "runs")
        if not self.auto_inc_ids:
            # a random id, as the seed's store gave one (Firestore's 20 characters)
            while True:
                rid = secrets.token_hex(10)
                try:
                    os.mkdir(os.path.join(runs, rid))
                    return rid
                except FileExistsError:
                    continue
        # the next integer id, as `aletheia new-run` picks it: mkdir is create-only, so under
        # concurrent callers each gets its own id (a taken one moves on to the next)
        nums = [int(i) for i in os.listdir(runs) if i.isdigit()]
        rid = max(nums, default=0) + 1
        while True:
            try:
                os.mkdir(os.path.join(runs, str(rid)))
                return str(rid)
            except FileExistsError:
                rid += 1

    def start_run(self, fold=None, model=None, run_id=None):
        """A new run (status running) with its fold and model, if given; as a context manager it
        ends finished, or failed when an exception leaves the block (the exception goes on)."""
        if run_id is not None:
            os.mkdir(os.path.join(self.path, "runs", str(run_id)))
            rid = str(run_id)
        else:
            rid = self._new_run_dir()
        run = Run(self, rid, fold=fold, model=model)
        # recorded at once (set_fold() and set_model() without arguments write them again)
        if fold is not None:
            run.set_fold()
        if model is not None:
            run.set_model()
        return run

    def run(self, run_id):
        """An existing run."""
        path = os.path.join(self.path, "runs", str(run_id))
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, "no such run", path)
        return Run(self, str(run_id))

    def __repr__(self):
        return f"Experiment({self.name!r}, project={self.ms.project!r})"


class Dataset:
    """A dataset of the project: local_path is its folder in the mount, read like any folder."""

    def __init__(self, ms, name):
        self.ms = ms
        self.name = name
        self.local_path = os.path.join(ms.path, "datasets", name)

    @property
    def info(self):
        """.dataset.json: name, version, files, bytes, created, description."""
        with open(os.path.join(self.local_path, ".dataset.json")) as f:
            return json.load(f)

    @property
    def version(self):
        return self.info["version"]

    def __fspath__(self):
        return self.local_path

    def __repr__(self):
        return f"Dataset({self.name!r}, local_path={self.local_path!r})"


def _metric_value(value):
    v = float(value)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)   # the shortest text that reads back as the same double


class Run:
    def __init__(self, exper, run_id, fold=None, model=None):
        self.exper = exper
        self.id = run_id
        self.path = os.path.join(exper.path, "runs", run_id)
        self.fold = fold
        self.model = model

    # -- the run as a context manager ------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, etype, exc, tb):
        # A status set in the block (run.set_status("killed")) stays; Ctrl-C is a kill.
        if self.status.split()[:1] in (["running"], ["crashed"]):
            self.set_status("finished" if etype is None else
                            "killed" if issubclass(etype, KeyboardInterrupt) else "failed")
        return False

    def set_status(self, status):
        """running, finished, failed or killed, optionally with an exit code ("failed 3")."""
        _write(os.path.join(self.path, "status"), f"{status}\n")

    @property
    def status(self):
        return (_read(os.path.join(self.path, "status")) or "").strip()

    # -- values ----------------------------------------------------------------------------------
    def set_fold(self, fold=None):
        """Records the fold given here, else the one given to start_run (an integer)."""
        fold = self.fold if fold is None else fold
        if fold is None:
            raise ValueError("no fold: give one here or to start_run(fold=…)")
        self.fold = int(fold)
        _write(os.path.join(self.path, "fold"), f"{self.fold}\n")

    def set_model(self, model=None):
        """Records the model's name: a string, an object's .name, or its class's name; without
        one, the model given to start_run (if any)."""
        model = self.model if model is None else model
        if model is None:
            return
        if not isinstance(model, str):
            model = getattr(model, "name", None) or type(model).__name__
        self.model = model
        _write(os.path.join(self.path, "model"), f"{model}\n")

    def set_hyper_params(self, params):
        """Sets these keys in params.json (other keys stay; README "params")."""
        _write(os.path.join(self.path, "params.json"), json.dumps(dict(params)) + "\n")

    def set_description(self, text):
        _write(os.path.join(self.path, "description"), f"{text}\n")

    @property
    def params(self):
        with open(os.path.join(self.path, "params.json")) as f:
            return json.load(f)

    # -- metrics ---------------------------------------------------------------------------------
    def add_metric(self, name, value, step=None):
        """Appends one point to metrics/NAME (NAME may hold '/': a folder); the step is the
        previous one + 1 unless given, the time now."""
        path = os.path.join(self.path, "metrics", name)
        if "/" in name:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        line = (f"{int(step)} " if step is not None else "") + _metric_value(value) + "\n"
        with open(path, "a") as f:
            f.write(line)

    # -- datasets and artifacts ------------------------------------------------------------------
    def get_dataset(self, name, download=True):
        """Records that the run uses the project's dataset NAME (a link in its datasets/, at the
        dataset's current version) and returns it; download is kept for the seed's code: reading
        local_path reads the files, fetched into the mount's cache on first read."""
        ds = Dataset(self.exper.ms, name)
        if not os.path.isdir(ds.local_path):
            raise FileNotFoundError(errno.ENOENT, "no such dataset", ds.local_path)
        link = os.path.join(self.path, "datasets", name)
        try:
            os.symlink(ds.local_path, link)
        except FileExistsError:
            pass
        return ds

    def add_artifact(self, name, path, is_local=True, is_dir=False, upload_file=True):
        """Copies the file (or, with is_dir, the folder) at path into artifacts/NAME; is_local and
        upload_file are kept for the seed's code (the copy is the upload)."""
        target = os.path.join(self.path, "artifacts", name)
        if "/" in name:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        if is_dir or os.path.isdir(path):
            # copyfile: the mount keeps content and mtimes, not modes (README "Files behave…")
            shutil.copytree(path, target, copy_function=shutil.copyfile, dirs_exist_ok=True)
        else:
            shutil.copyfile(path, target)
        return target

    def __repr__(self):
        return f"Run({self.id!r}, path={self.path!r})"
