"""Checks on the course as a whole: environment files, notebooks, README and CI entry point."""
import json
import re
from pathlib import Path

import pytest
import yaml

from course_utils.syllabus import LESSONS, course_map

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DESIGN_PACKAGES = {"jupyterlab", "torch", "transformers", "open_clip_torch", "diffusers", "matplotlib",
                   "seaborn", "nbval", "papermill"}


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower())
    return names


def test_requirements_use_ranges_and_cover_the_design():
    lines = [l.split("#")[0].strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    lines = [l for l in lines if l]
    assert not [l for l in lines if "==" in l], "use version ranges, not exact pins (Colab ships its own torch)"
    assert DESIGN_PACKAGES <= _requirement_names(ROOT / "requirements.txt")


def test_environment_yml_is_consistent_with_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    # Either conda defers to requirements.txt or it lists exactly the same packages.
    if pip_section != ["-r requirements.txt"]:
        assert {re.split(r"[<>=!~ ]", p)[0].lower() for p in pip_section} == _requirement_names(ROOT / "requirements.txt")
    conda_names = {re.split(r"[<>=!~ ]", d)[0] for d in deps if isinstance(d, str)} - {"python", "pip"}
    assert not conda_names - _requirement_names(ROOT / "requirements.txt"), "conda lists packages requirements.txt lacks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean_and_complete(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code), "strip outputs before committing"
    assert any("parameters" in c["metadata"].get("tags", []) for c in code), "needs a parameters-tagged cell"
    ids = [c.get("id") for c in nb["cells"] if c.get("id")]
    assert len(ids) == len(set(ids)), "duplicate cell ids (nbformat renames them on load and the diff churns)"
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    number = path.name[:2]
    section = dict((n, s) for n, _, s, *_ in LESSONS)[number]
    title = "".join(nb["cells"][0]["source"])
    assert title.startswith("# Lesson") and f"section {section.split(',')[0]}" in title.lower()
    for heading in ("Learning objectives", "Summary", "Exercises", "References", "<details>", "run time"):
        assert heading.lower() in text.lower(), f"{path.name} lacks '{heading}'"
    assert any("slideshow" in c["metadata"] for c in nb["cells"]), "cells should carry slideshow metadata"
    sources = "\n".join("".join(c["source"]) for c in code)
    assert "import *" not in sources, "import helpers by name"
    assert "from tqdm import" not in sources, "use tqdm.auto: plain tqdm writes to stderr and breaks nbval"


def test_notebook_names_follow_the_syllabus():
    planned = {nb for _, nb, *_ in LESSONS}
    assert {p.stem for p in NOTEBOOKS} <= planned
    status = course_map().set_index("notebook")["status"]
    assert all(status[p.stem] == "ready" for p in NOTEBOOKS)
    assert (status == "coming").sum() == len(LESSONS) - len(NOTEBOOKS)


def test_readme_lists_every_lesson_and_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    status = course_map().set_index("notebook")["status"]
    for _, notebook, section, *_ in LESSONS:
        row = re.search(rf"^\| \d\d \| `{notebook}` \|(.*)$", readme, re.M)
        assert row, f"README syllabus lacks {notebook}"
        cells = [c.strip() for c in row.group(1).split("|")]
        assert cells[0] == section, f"README gives {notebook} survey section {cells[0]!r}, syllabus says {section!r}"
        assert cells[2] == status[notebook], f"README marks {notebook} {cells[2]!r} but it is {status[notebook]!r}"
    assert readme.index("make course") < readme.index("make test") < readme.index("## ")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\s*$", ci, re.M)
    assert "make test" in (ROOT / "README.md").read_text()
