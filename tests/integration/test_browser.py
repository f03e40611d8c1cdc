# aletheia integration tests: the report page and a plot opened in a real browser (issue 12, "How it will
# be checked"): headless Chromium renders experiments/<e>/index.html and plots/<metric>.svg straight from
# the mount (file://) to PNG, and the picture must hold the plotted lines' colours, not a blank or broken
# page. Without Debian's chromium these tests are skipped; the meson suite integration-browser
# (ALETHEIA_TEST_BROWSER=1) reports SKIP (77) instead. ALETHEIA_TEST_SCREENSHOTS=DIR keeps the PNGs there.
import math
import os
import shutil
import struct
import subprocess
import zlib

import pytest

import alutil
from alutil import mkrun

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:   # (with ALETHEIA_TEST_BROWSER=1 conftest.py has exited 77 already)
    pytest.skip("chromium is missing (apt-get install chromium)", allow_module_level=True)

# chart_colour's first three (Tableau 10): runs 1, 2, 3
COLOURS = {"1": (0x4e, 0x79, 0xa7), "2": (0xf2, 0x8e, 0x2b), "3": (0xe1, 0x57, 0x59)}


def png_pixels(path):
    """(width, height, rows of (r, g, b)) of an 8-bit RGB or RGBA PNG, decoded with zlib."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        f = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 0xff
            elif f == 2:
                line[x] = (line[x] + b) & 0xff
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xff
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xff
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return w, h, rows


def count_near(rows, colour, tol=40):
    return sum(1 for row in rows for px in row if math.dist(px, colour) <= tol)


def screenshot(tmp, url, name, size):
    out = tmp / name
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={tmp / 'profile'}", f"--screenshot={out}", f"--window-size={size}", url],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and out.exists(), f"chromium failed ({r.returncode}): {r.stderr[-2000:]}"
    keep = os.environ.get("ALETHEIA_TEST_SCREENSHOTS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(out, os.path.join(keep, name))
    return png_pixels(out)


def make_experiment(m):
    exp = m.path / "p/experiments/e"
    for r in COLOURS:
        run = mkrun(m, run=r)
        k = int(r)
        (run / "params/lr").write_text(f"0.00{k}\n")
        (run / "model").write_text("resnet18\n")
        with open(run / "metrics/loss", "a") as f:
            f.write("".join(f"{s} {2.0 * math.exp(-s / (400.0 * k)) + 0.03 * math.sin(s / 7.0) ** 2}\n"
                            for s in range(2000)))
        os.makedirs(run / "metrics/val", exist_ok=True)
        with open(run / "metrics/val/acc", "a") as f:
            f.write("".join(f"{s * 100} {1 - math.exp(-s / (4.0 * k))}\n" for s in range(21)))
    (exp / "runs/1/status").write_text("finished\n")
    return exp


def test_a_plot_renders_in_chromium(mount, tmpdir_al):
    exp = make_experiment(mount)
    w, h, rows = screenshot(tmpdir_al, (exp / "plots/loss.svg").as_uri(), "plot.png", "820,520")
    assert (w, h) == (820, 520)
    for run, colour in COLOURS.items():
        n = count_near(rows, colour)
        assert n > 300, f"run {run}'s line ({colour}) has {n} pixels in the picture"
    # not blank: most of it is the white background, the rest lines, grid and text
    white = count_near(rows, (255, 255, 255), tol=10)
    assert 0.5 * w * h < white < 0.99 * w * h


def test_the_report_page_renders_in_chromium(mount, tmpdir_al):
    exp = make_experiment(mount)
    w, h, rows = screenshot(tmpdir_al, (exp / "index.html").as_uri(), "index.png", "1000,1200")
    # the table's swatches are 10 × 10 pixels: more than that is the plot below it, loaded from plots/
    for run, colour in COLOURS.items():
        n = count_near(rows, colour)
        assert n > 400, f"run {run}'s colour ({colour}) has {n} pixels in the page"
    # the page's text (dark pixels) is there too
    assert count_near(rows, (34, 34, 34), tol=60) > 500
