# aletheia integration tests: ordinary programs on the mount — times set on a file still open (cp -p, cp -a).
import os

from alutil import mkrun, sh


# ---- times set on an open file (README "Files behave like files") ----------------------------------------

def test_cp_p_and_cp_a_keep_mtimes(mount):
    src = mount.root / "src"
    src.mkdir()
    for i, when in enumerate(("2020-01-02 03:04:05", "2019-06-07 08:09:10")):
        (src / f"f{i}").write_text(f"{i}\n" * 100)
        sh(f"touch -d '{when}' '{src}/f{i}'")
    run = mkrun(mount)
    ds = mount.path / "p/datasets/d"
    ds.mkdir()
    targets = []
    for dst in (run / "artifacts", ds):
        sh(f"cp -p '{src}/f0' '{dst}/p0' && cp -a '{src}/f1' '{dst}/a1' && cp -a '{src}' '{dst}/tree'")
        targets += [(dst / "p0", src / "f0"), (dst / "a1", src / "f1"), (dst / "tree/f0", src / "f0"),
                    (dst / "tree/f1", src / "f1")]

    def check():
        for got, want in targets:
            assert sh(f"stat -c %Y '{got}'").stdout == sh(f"stat -c %Y '{want}'").stdout, got
            assert got.read_bytes() == want.read_bytes()
    check()
    mount.umount()
    mount.start()
    check()
