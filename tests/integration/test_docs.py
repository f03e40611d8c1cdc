# aletheia integration tests: the manual page aletheia(1), `aletheia COMMAND --help` and the bash
# completion (README "The command line"), and that `meson install` installs them.
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from alutil import BIN, cli, env_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAN = ROOT / "doc" / "aletheia.1"
COMPLETION = ROOT / "doc" / "aletheia.bash-completion"
COMMANDS = ["mount", "umount", "new-run", "run", "status", "dataset import", "dataset prefetch", "fsck", "ls",
            "diff"]


def options_of(cmd):
    r = cli(*cmd.split(), "--help")
    assert r.returncode == 0, r.stderr
    opts = sorted(set(re.findall(r"(?:^|[\[ ])(--?[a-z][a-z-]*)", r.stdout, re.M)))
    assert opts or cmd in ("umount", "status"), (cmd, r.stdout)
    return opts


@pytest.mark.parametrize("cmd", COMMANDS + ["dataset", "help"])
def test_every_command_has_help(cmd):
    r = cli(*cmd.split(), "--help")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    want = "usage:\n  aletheia mount" if cmd == "help" else f"usage: aletheia {cmd}"
    assert r.stdout.startswith(want), r.stdout
    if cmd in COMMANDS and cmd not in ("umount", "status"):
        assert "Options:" in r.stdout
    r2 = cli("help", *cmd.split())
    assert r2.returncode == 0 and (r2.stdout == r.stdout or cmd == "help")


def test_commands_are_all_documented_here():
    """Every command `aletheia --help` lists is in COMMANDS, so the man page and completion checks
    below cover it (a command added without its manual fails here)."""
    usage = cli("--help").stdout.split("\n\n")[0]
    listed = {m.group(1) for m in re.finditer(r"^  aletheia ([a-z][a-z-]*(?: [a-z][a-z-]*)?)(?= |$)", usage, re.M)}
    assert listed == set(COMMANDS), listed ^ set(COMMANDS)


def test_help_after_run_command_is_the_commands(mount):
    r = cli("run", "--exper", "p/e", "--system-metrics-interval", "0", "--", "printf", "%s\\n", "--help", m=mount)
    assert r.returncode == 0 and r.stdout == "--help\n", r.stdout + r.stderr
    r = cli("help", "nosuch")
    assert r.returncode == 2 and "unknown command 'nosuch'" in r.stderr


def test_man_page_is_valid_roff_and_documents_every_option():
    if not shutil.which("groff"):
        pytest.skip("groff is missing (apt-get install groff-base)")
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(MAN)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(["man", "-l", str(MAN)], capture_output=True, text=True,
                       env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="100"))
    assert r.returncode == 0 and "NAME" in r.stdout and "aletheia - an ML experiment tracker" in r.stdout
    src = MAN.read_text()
    for cmd in COMMANDS:
        assert f'.SS "aletheia {cmd}' in src, cmd
        for opt in options_of(cmd):
            assert opt.replace("-", "\\-") in src, (cmd, opt)
    for state in ("running", "finished", "failed", "killed", "crashed"):
        assert state in src


def test_meson_install_installs_man_page_and_completion(tmp_path):
    build = pathlib.Path(BIN).resolve().parent
    if not (build / "meson-private").is_dir():
        pytest.skip(f"{BIN} is not in a meson build folder")
    r = subprocess.run(["meson", "install", "-C", str(build), "--no-rebuild", "--destdir", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    man = list(tmp_path.rglob("man1/aletheia.1"))
    comp = list(tmp_path.rglob("bash-completion/completions/aletheia"))
    assert len(man) == 1 and man[0].read_bytes() == MAN.read_bytes()
    assert len(comp) == 1 and comp[0].read_bytes() == COMPLETION.read_bytes()
    assert list(tmp_path.rglob("bin/aletheia"))


def complete(line, m, env=None):
    """What the completion offers for `line` (the cursor at its end), as a sorted list."""
    words = line.split(" ")
    script = (f"source {COMPLETION}\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
              f"COMP_CWORD={len(words) - 1}\n"
              "_aletheia\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    e = env_for(m, env)
    e["PATH"] = str(pathlib.Path(BIN).resolve().parent) + os.pathsep + e["PATH"]
    r = subprocess.run(["bash", "-c", script.replace("COMP_WORDS=('aletheia'", f"COMP_WORDS=('{BIN}'")],
                       capture_output=True, text=True, env=e, timeout=60)
    assert r.returncode == 0, r.stderr
    return sorted(l for l in r.stdout.splitlines() if l)


def test_bash_completion(mount, tmpdir_al):
    for p, e in (("vision", "resnet"), ("vision", "vit"), ("nlp", "bert")):
        os.makedirs(mount.path / p / "experiments" / e)
    os.makedirs(mount.path / "vision/datasets/imagenet")
    assert complete("aletheia ", mount) == sorted(
        ["mount", "umount", "new-run", "run", "status", "dataset", "fsck", "ls", "diff", "help", "--help",
         "--version"])
    assert complete("aletheia r", mount) == ["run"]
    assert complete("aletheia dataset p", mount) == ["prefetch"]
    # every option of each command, as its --help lists it
    for cmd in COMMANDS:
        words = cmd.split()
        got = complete("aletheia " + " ".join(words) + " -", mount)
        assert sorted(set(options_of(cmd)) | {"--help"}) == got, (cmd, got)
    assert complete("aletheia run --sys", mount) == ["--system-metrics-interval"]
    # names read from the mount
    assert complete("aletheia run --exper ", mount) == ["nlp/", "vision/"]
    assert complete("aletheia run --exper vision/", mount) == ["vision/resnet", "vision/vit"]
    assert complete("aletheia run --exper vision/r", mount) == ["vision/resnet"]
    assert complete("aletheia new-run n", mount) == ["nlp/"]
    assert complete("aletheia new-run nlp/", mount) == ["nlp/bert"]
    assert complete("aletheia ls vision/v", mount) == ["vision/vit"]
    assert complete("aletheia dataset prefetch vision/", mount) == ["vision/imagenet"]
    assert complete("aletheia dataset import vision/", mount) == ["vision/imagenet"]
    assert complete("aletheia dataset import vision/imagenet vis", mount) == []   # a URL
    assert complete("aletheia new-run vision/vit n", mount) == []                 # one argument
    assert complete("aletheia new-run --mount x n", None,
                    {"ALETHEIA_MOUNT": str(mount.path)}) == []                   # x is no mount
    # --mount on the line wins over $ALETHEIA_MOUNT
    other = tmpdir_al / "other"
    os.makedirs(other / "x/experiments/y")
    assert complete(f"aletheia new-run --mount {other} ", mount) == ["x/"]
    assert complete("aletheia new-run ", None, {"ALETHEIA_MOUNT": str(other)}) == ["x/"]
    # after run's --, the words are the command's: nothing of aletheia's
    assert complete("aletheia run --exper vision/vit -- python --", mount) == []
    assert complete("aletheia run --exper ", None, {"ALETHEIA_MOUNT": str(tmpdir_al / "none")}) == []
