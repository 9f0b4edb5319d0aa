"""`make lab` for real: JupyterLab (as root too) on 127.0.0.1 with a token, lesson 00 open in headless Chromium."""
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from browser_checks import needs_chromium
from course_utils.browser import dump_dom, image_stats, screenshot

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`make lab` with an address, a port and a token; stopped (its whole process group) afterwards."""
    home = tmp_path_factory.mktemp("lab")
    port, token = _free_port(), secrets.token_hex(16)
    args = (f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token} "
            f"--LabApp.workspaces_dir={home} --ServerApp.open_browser=False")
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_DATA_DIR=str(home / "data"))
    # -o: treat the install stamp as up to date; the test runs inside an installed environment.
    server = subprocess.Popen(["make", "-s", "-o", ".venv/.course-installed", "lab", f"LAB_ARGS={args}"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            os.killpg(server.pid, signal.SIGTERM) if server.poll() is None else None
            pytest.fail(f"JupyterLab did not start: {server.stdout.read()[-3000:]}")
        time.sleep(1)
    yield url, token
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def test_make_lab_allows_root_only_when_root():
    dry = subprocess.run(["make", "-n", "-o", ".venv/.course-installed", "lab"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert ("--allow-root" in dry) == (os.getuid() == 0), dry


def test_lab_refuses_requests_without_the_token(lab):
    url, _ = lab
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{url}/api/contents/00_welcome.ipynb", timeout=10)
    assert error.value.code == 403


@needs_chromium
def test_lesson_00_renders_in_jupyterlab(lab, tmp_path):
    url, token = lab
    page = f"{url}/lab/tree/00_welcome.ipynb?token={token}"
    dom = dump_dom(page, timeout=120)
    assert "jp-Notebook" in dom and "jp-CodeCell" in dom, "no notebook in the JupyterLab page"
    assert re.search(r"<h1[^>]*>(?:(?!</h1>).)*Lesson 00 — Welcome", dom, re.S), "the title cell was not rendered as Markdown"
    assert "colab-setup" in dom or "REPO_URL" in dom, "the code cells were not rendered"
    png = screenshot(page, tmp_path / "lab.png", width=1400, height=900, timeout=120)
    stats = image_stats(png)
    assert stats["ink"] > 0.02 and stats["colours"] > 20, stats
    assert stats["bbox"][2] - stats["bbox"][0] > 0.5 * stats["size"][0], "JupyterLab fills the window"
