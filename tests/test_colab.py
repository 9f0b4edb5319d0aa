"""The Colab setup cell: the same in every notebook, and its install path really installs the course."""
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from course_utils.colab import (REPO_URL, SETUP_CELL_TAG, colab_url, find_setup_cell, setup_cell_source,
                                write_setup_cell)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_generated_setup_cell(path):
    cells = json.loads(path.read_text())["cells"]
    first_code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    assert first_code == 1, "the setup cell goes right after the title cell"
    cell = cells[first_code]
    assert SETUP_CELL_TAG in cell["metadata"].get("tags", []), \
        f"{path.name}: first code cell is not the setup cell; run `python -m course_utils.colab --write-notebooks`"
    assert "".join(cell["source"]) == setup_cell_source(), \
        f"{path.name}: setup cell differs from course_utils.colab; run `python -m course_utils.colab --write-notebooks`"
    assert cell["metadata"]["slideshow"]["slide_type"] == "skip"


def test_setup_cell_defines_the_url_once_and_installs_only_on_colab():
    source = setup_cell_source()
    assert source.count(REPO_URL) == 1
    compile(source, "setup-cell", "exec")
    install = source.index("pip")
    assert source.index("if ON_COLAB:") < install, "the install must sit under the Colab check"
    assert "'faiss-cpu'" in setup_cell_source(extra_packages=("faiss-cpu",))


def test_write_setup_cell_inserts_after_the_title_and_is_idempotent(tmp_path):
    path = tmp_path / "lesson.ipynb"
    notebook = {"cells": [{"cell_type": "markdown", "id": "t", "metadata": {}, "source": ["# Lesson"]},
                          {"cell_type": "code", "id": "i", "metadata": {}, "source": ["import numpy"],
                           "outputs": [], "execution_count": None}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook))
    assert write_setup_cell(path)
    cells = json.loads(path.read_text())["cells"]
    assert [c["id"] for c in cells] == ["t", "colab-setup", "i"] and find_setup_cell({"cells": cells}) == 1
    assert not write_setup_cell(path)


def test_colab_links_point_at_the_repository():
    url = colab_url("00_welcome")
    assert url == ("https://colab.research.google.com/github/" + REPO_URL.removeprefix("https://github.com/")
                   + "/blob/main/notebooks/00_welcome.ipynb")
    with pytest.raises(ValueError, match="github.com"):
        colab_url("00_welcome", repo_url="file:///tmp/clone")


_AFTER_THE_CELL = """
from course_utils.data.movielens import load_movielens
ml = load_movielens(verbose=False)
print("ratings:", len(ml.ratings))
print("course_utils at:", course_utils.__file__)
"""


def test_setup_cell_install_path_works_in_a_fresh_venv(tmp_path):
    """Colab's path, for real: clone over file://, pip install -e, import, load MovieLens-100K.

    The fresh venv sees this environment's packages through a .pth file, standing in for the
    libraries Colab ships (torch, pandas, ...), so nothing is downloaded: pip runs with
    --no-index, and must find every dependency already there, as it does on Colab.
    """
    venv = tmp_path / "venv"
    # Without its own pip and setuptools: both come, as on Colab, with the preinstalled stack.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "colab_preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    workdir = tmp_path / "content"   # Colab's working directory is /content
    workdir.mkdir()
    script = workdir / "setup_cell.py"
    script.write_text(setup_cell_source() + "\n" + _AFTER_THE_CELL)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(COURSE_BOOTSTRAP="1", COURSE_REPO_URL=ROOT.as_uri(), PIP_NO_INDEX="1",
               PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1",
               # CI runs as root on a checkout that another user may own
               GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*")
    done = subprocess.run([python, script.name], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    clone = workdir / REPO_URL.rsplit("/", 1)[-1]
    assert (clone / ".git").is_dir() and (clone / "course_utils" / "__init__.py").exists(), "no clone made"
    assert "Colab: True" in done.stdout and ("device: cpu" in done.stdout or "device: cuda" in done.stdout)
    assert "ratings: 100000" in done.stdout
    assert f"course_utils at: {clone}" in done.stdout

    # A new process (a restarted runtime) finds the course through pip's editable install alone.
    check = subprocess.run([python, "-c", "import course_utils; print(course_utils.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.strip().startswith(str(clone)), check.stdout

    # pip left this environment's own install of the course alone (it lies outside the fresh venv).
    outer = subprocess.run([sys.executable, "-c", "import course_utils; print(course_utils.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert outer.stdout.strip() == str(ROOT / "course_utils" / "__init__.py"), outer.stdout + outer.stderr

    # Running the cell again (Colab's "Run all" twice) reuses the clone.
    again = subprocess.run([python, script.name], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]


def test_setup_cell_does_not_install_outside_colab(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"COURSE_BOOTSTRAP", "COURSE_DEVICE"}}
    env["COURSE_REPO_URL"] = "file:///nonexistent/repository"
    done = subprocess.run([sys.executable, "-c", setup_cell_source()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Colab: False" in done.stdout and not any(tmp_path.iterdir())
    assert f"course_utils from {ROOT / 'course_utils'}" in done.stdout
