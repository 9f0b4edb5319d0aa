"""The first code cell of every lesson: install the course on Colab, pick the GPU, say what was found.

The repository URL lives here, once (``REPO_URL``). The setup cell of each notebook and the
README's "Open in Colab" links are generated from it, and tests check that they match:

    python -m course_utils.colab --write-notebooks   # after changing the cell or the URL
    python -m course_utils.colab --readme-links      # the README's Colab column

The cell installs only where ``google.colab`` is loaded, or where ``COURSE_BOOTSTRAP=1``
asks for the same install path (the bootstrap test does this in a fresh virtual environment,
with ``COURSE_REPO_URL`` pointing at a ``file://`` clone).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

REPO_URL = "https://github.com/gen-recsys-course/gen-recsys-course"
BRANCH = "main"
SETUP_CELL_ID = "colab-setup"
SETUP_CELL_TAG = "colab-setup"
# Packages a lesson needs that Colab does not ship; installed by the setup cell next to the course.
COLAB_EXTRA_PACKAGES: tuple[str, ...] = ("faiss-cpu", "open_clip_torch", "sacrebleu", "rouge-score")

ROOT = Path(__file__).resolve().parents[1]


def setup_cell_source(repo_url: str = REPO_URL, extra_packages: tuple[str, ...] = COLAB_EXTRA_PACKAGES) -> str:
    """The setup cell's code, as it must appear in every notebook."""
    clone = repo_url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    extras = "".join(f", {p!r}" for p in extra_packages)
    return f'''\
# Setup. On Colab: install the course from its repository. Everywhere: use the GPU when there is one.
import os
import subprocess
import sys
from pathlib import Path

REPO_URL = os.environ.get("COURSE_REPO_URL", "{repo_url}")
ON_COLAB = "google.colab" in sys.modules or os.environ.get("COURSE_BOOTSTRAP") == "1"
if ON_COLAB:
    clone = Path("{clone}").resolve()
    if not clone.exists():
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", REPO_URL, str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", str(clone){extras}], check=True)
    sys.path.insert(0, str(clone))   # importable now, without restarting the runtime

import torch

if torch.cuda.is_available() and not os.environ.get("COURSE_DEVICE"):
    os.environ["COURSE_DEVICE"] = "cuda"   # every lesson's get_device() now picks the GPU
import course_utils
from course_utils.config import get_device

print(f"Colab: {{ON_COLAB}} | course_utils from {{Path(course_utils.__file__).parent}} | "
      f"torch {{torch.__version__}} | device: {{get_device()}}")'''


def setup_cell(repo_url: str = REPO_URL) -> dict:
    """The setup cell as an nbformat 4.5 cell, stored without outputs and skipped in slides."""
    return {"cell_type": "code", "execution_count": None, "id": SETUP_CELL_ID,
            "metadata": {"slideshow": {"slide_type": "skip"}, "tags": [SETUP_CELL_TAG]},
            "outputs": [], "source": setup_cell_source(repo_url).splitlines(keepends=True)}


def find_setup_cell(notebook: dict) -> int | None:
    """Index of the notebook's setup cell (tagged ``colab-setup``), or None."""
    for index, cell in enumerate(notebook["cells"]):
        if SETUP_CELL_TAG in cell.get("metadata", {}).get("tags", []):
            return index
    return None


def write_setup_cell(path: str | Path) -> bool:
    """Put the current setup cell right after the title cell of one notebook; True when the file changed."""
    path = Path(path)
    text = path.read_text()
    notebook = json.loads(text)
    index = find_setup_cell(notebook)
    if index is None:
        notebook["cells"].insert(1, setup_cell())
    else:
        notebook["cells"][index] = setup_cell()
    new_text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    if new_text != text:
        path.write_text(new_text)
    return new_text != text


def colab_url(notebook: str, repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """The "Open in Colab" address of ``notebooks/<notebook>.ipynb`` on the repository's GitHub page."""
    match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)(?:\.git)?/?", repo_url)
    if not match:
        raise ValueError(f"REPO_URL must be a https://github.com/<owner>/<name> address, got {repo_url!r}")
    return f"https://colab.research.google.com/github/{match.group(1)}/blob/{branch}/notebooks/{notebook}.ipynb"


def colab_badge(notebook: str) -> str:
    """Markdown link for the README's syllabus table."""
    return f"[Open in Colab]({colab_url(notebook)})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write-notebooks", action="store_true", help="regenerate every notebook's setup cell")
    parser.add_argument("--readme-links", action="store_true", help="print each lesson's Colab link")
    args = parser.parse_args(argv)
    if args.write_notebooks:
        for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
            print(f"{path.name}: {'updated' if write_setup_cell(path) else 'unchanged'}")
    if args.readme_links:
        from course_utils.syllabus import LESSONS

        for number, notebook, *_ in LESSONS:
            print(f"{number} {colab_url(notebook)}")
    if not (args.write_notebooks or args.readme_links):
        print(setup_cell_source())


if __name__ == "__main__":
    main()
