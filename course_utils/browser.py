"""Headless Chromium for the slide decks and the browser tests: PDFs, screenshots, rendered DOM.

One place for the command line, so that the PDF handouts and the tests render pages the same way.
Debian's ``chromium`` package is what CI installs (``.ci/run``); ``$CHROMIUM`` points elsewhere.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--virtual-time-budget=8000",
         "--hide-scrollbars", "--disable-dev-shm-usage", "--mute-audio")
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium binary (``$CHROMIUM`` first), or None when there is none."""
    override = os.environ.get("CHROMIUM")
    if override:
        return shutil.which(override) or (override if Path(override).is_file() else None)
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def _run(args: list[str], timeout: float, attempts: int = 3) -> subprocess.CompletedProcess:
    """Run headless Chromium once; if it hangs past ``timeout`` seconds, kill it and try again.

    Rarely, on a loaded 2-core machine, headless Chromium never finishes a page that keeps a
    connection open (JupyterLab's websockets): seen once in a full ``make test``, never when run
    alone. The whole process group is killed (Chromium's helpers included) before each retry.
    """
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found: install Debian's `chromium` (apt-get install chromium) "
                                "or point $CHROMIUM at a Chrome/Chromium binary")
    for _ in range(attempts):
        # A throw-away profile per call: parallel runs (two test workers) must not share one.
        profile = tempfile.mkdtemp(prefix="course-chromium-")
        process = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = process.communicate(timeout=timeout)
            return subprocess.CompletedProcess(process.args, process.returncode, out, err)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        finally:
            # Helper processes can still be writing into the profile for a moment after the main
            # process exits ("Directory not empty"): retry the clean-up once, then leave it to /tmp.
            shutil.rmtree(profile, ignore_errors=True)
            if Path(profile).exists():
                time.sleep(1.0)
                shutil.rmtree(profile, ignore_errors=True)
    raise TimeoutError(f"headless Chromium did not finish {args[-1]} within {timeout:.0f} s, {attempts} times")


def screenshot(url: str, out: str | Path, width: int = 1280, height: int = 800, timeout: float = 120) -> Path:
    """PNG of ``url`` as a ``width`` x ``height`` window shows it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    done = _run([f"--window-size={width},{height}", f"--screenshot={out}", url], timeout)
    if not out.exists():
        raise RuntimeError(f"Chromium wrote no screenshot of {url}: {done.stderr[-1500:]}")
    return out


def dump_dom(url: str, timeout: float = 120, width: int = 1280, height: int = 800) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``)."""
    done = _run([f"--window-size={width},{height}", "--dump-dom", url], timeout)
    if done.returncode != 0 or "<html" not in done.stdout.lower():
        raise RuntimeError(f"Chromium could not render {url}: {done.stderr[-1500:]}")
    return done.stdout


def pdf_pages(path: str | Path) -> int:
    """Number of pages of a PDF that Chromium wrote (its page tree's root /Count)."""
    counts = [int(n) for n in re.findall(rb"/Count (\d+)", Path(path).read_bytes())]
    return max(counts, default=0)


def print_pdf(url: str, out: str | Path, timeout: float = 300, budget_ms: int = 60000,
              min_pages: int = 1, attempts: int = 6) -> Path:
    """PDF of ``url`` as Chromium prints it (for reveal.js decks, pass the ``?print-pdf`` view).

    A long deck needs more than the default 8 s of virtual time to lay out every slide (the
    later --virtual-time-budget wins). Now and then headless Chromium prints before the page's
    scripts ran, giving one blank page (measured: 1 print in 4 on a loaded 2-core machine, never
    on an idle one): with ``min_pages`` set, such a PDF is printed again, up to ``attempts`` times.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(attempts):
        out.unlink(missing_ok=True)
        done = _run([f"--virtual-time-budget={budget_ms}", "--run-all-compositor-stages-before-draw",
                     "--no-pdf-header-footer", f"--print-to-pdf={out}", url], timeout)
        if out.exists() and pdf_pages(out) >= min_pages:
            return out
    pages = pdf_pages(out) if out.exists() else 0
    raise RuntimeError(f"Chromium printed {pages} page(s) of {url}, expected at least {min_pages}: "
                       f"{done.stderr[-1500:]}")


def image_stats(path: str | Path, box: tuple[int, int, int, int] | None = None) -> dict:
    """Pixel statistics that tell a rendered page from a blank one.

    Returns ``ink`` (share of pixels that differ clearly from the page's most common colour),
    ``colours`` (distinct colours, quantised to 4 bits per channel), ``bbox`` (left, top, right,
    bottom of the ink, in the coordinates of ``box`` when given) and ``size`` (of the whole image).
    """
    from PIL import Image, ImageChops

    image = Image.open(path).convert("RGB")
    size = image.size
    if box is not None:
        image = image.crop(box)
    background = max(image.getcolors(image.width * image.height), key=lambda pair: pair[0])[1]
    diff = ImageChops.difference(image, Image.new("RGB", image.size, background)).convert("L")
    mask = diff.point(lambda v: 255 if v > 40 else 0)
    ink = sum(mask.histogram()[255:]) / (image.width * image.height)
    quantised = image.point(lambda v: v & 0xF0)
    colours = len(quantised.getcolors(image.width * image.height) or [])
    return {"ink": ink, "colours": colours, "bbox": mask.getbbox(), "size": size, "background": background}


def has_colour_near(path: str | Path, box: tuple[int, int, int, int], rgb: tuple[int, int, int],
                    tolerance: int = 60) -> bool:
    """True when some pixel inside ``box`` (left, top, right, bottom) is within ``tolerance`` of ``rgb``."""
    from PIL import Image

    region = Image.open(path).convert("RGB").crop(box)
    return any(sum(abs(a - b) for a, b in zip(pixel, rgb)) <= tolerance for _, pixel in region.getcolors(10**7))
