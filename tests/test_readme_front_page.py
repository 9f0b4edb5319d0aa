"""The README as the course's front page: its sections in order, Colab links from the one URL constant."""
import re
from pathlib import Path

from course_utils.colab import REPO_URL, colab_badge
from course_utils.syllabus import course_map

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _rows():
    for line in README.splitlines():
        match = re.match(r"^\| (\d\d) \| `([^`]+)` \|(.*)\|$", line)
        if match:
            yield match.group(2), [c.strip() for c in match.group(3).split("|")]


def test_syllabus_table_has_cpu_gpu_and_colab_columns():
    assert "| # | notebook | survey | key methods | status | FAST, CPU | full, CPU | GPU | Colab |" in README
    rows = dict(_rows())
    assert len(rows) == len(course_map())
    for notebook, cells in rows.items():
        assert len(cells) == 7, f"{notebook}: expected 7 cells after the notebook name, got {cells}"


def test_colab_links_are_generated_from_the_repository_constant():
    status = course_map().set_index("notebook")["status"]
    for notebook, cells in _rows():
        expected = colab_badge(notebook) if status[notebook] == "ready" else ""
        assert cells[-1] == expected, (f"README's Colab link for {notebook} is {cells[-1]!r}; expected {expected!r} "
                                       "(python -m course_utils.colab --readme-links)")
        if status[notebook] == "ready":
            assert cells[3] and cells[4], f"{notebook}: ready lessons give measured FAST and full CPU times"
            assert cells[5], f"{notebook}: GPU time, or '—' while none is measured"
    assert REPO_URL in README


def test_front_page_reads_in_the_order_the_course_promises():
    anchors = ["Generative Recommender Systems", "make course", "make test", "## Syllabus",
               "## Two paths through the course", "## Prerequisites", "## Data and models, online or offline",
               "## Data and model licences", "## Citation"]
    positions = [README.index(a) for a in anchors]
    assert positions == sorted(positions), list(zip(anchors, positions))
    paths = README[README.index("## Two paths"):README.index("## Prerequisites")]
    assert "3-hour" in paths and "full course" in paths.lower() and "PRESENTER_GUIDE.md" in paths
