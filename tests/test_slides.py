"""Slide decks: built from a really executed lesson, self-contained offline, rendered by real Chromium."""
import json
import re
import shutil
from pathlib import Path

import pytest

from browser_checks import (external_loads, local_loads, needs_chromium, needs_slide_libs, render_slide,
                            slide_addresses)
from course_utils.slides import (TUTORIAL_PATH, build_decks, deck_notebook, export_deck, part_decks,
                                 slide_cells)

ROOT = Path(__file__).resolve().parents[1]
LESSON = "00_welcome"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Lesson 00 executed for real in FAST mode (about 20 s), as make course would."""
    from course_utils.course_runner import run_notebook

    out = tmp_path_factory.mktemp("executed")
    seconds, status = run_notebook(ROOT / "notebooks" / f"{LESSON}.ipynb", out, fast=True)
    assert status == "ok", status
    return json.loads((out / f"{LESSON}.ipynb").read_text())


@pytest.fixture(scope="module")
def decks(executed, tmp_path_factory):
    out = tmp_path_factory.mktemp("slides")
    from course_utils.browser import find_chromium

    written = build_decks(out, {LESSON: executed}, pdf=find_chromium() is not None)
    return out, {p.stem: p for p in written}


def test_slide_cells_hide_code_in_the_notes_and_drop_setup():
    lesson = {"cells": [
        {"cell_type": "markdown", "metadata": {"slideshow": {"slide_type": "slide"}}, "source": "# Title"},
        {"cell_type": "code", "metadata": {"tags": ["colab-setup"]}, "source": "install()", "outputs": []},
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "FAST = None", "outputs": []},
        {"cell_type": "code", "metadata": {}, "source": "plot()", "outputs": [
            {"output_type": "stream", "name": "stderr", "text": "a warning"},
            {"output_type": "display_data", "data": {"image/png": "iVBOR"}, "metadata": {}}]},
    ]}
    cells = slide_cells(lesson)
    assert [c["cell_type"] for c in cells] == ["markdown", "code", "markdown"]
    assert "remove_input" in cells[1]["metadata"]["tags"] and len(cells[1]["outputs"]) == 1
    assert cells[2]["metadata"]["slideshow"]["slide_type"] == "notes" and "plot()" in cells[2]["source"]


def test_every_ready_lesson_is_in_exactly_one_part_deck():
    lessons = [nb for *_, ready in part_decks() for nb in ready]
    assert sorted(lessons) == sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert len(part_decks()) == 5


def test_presenter_guide_gives_the_same_3_hour_path():
    guide = (ROOT / "slides" / "PRESENTER_GUIDE.md").read_text()
    assert sum(minutes for _, _, minutes, _, _ in TUTORIAL_PATH) == 180
    for lesson, sections, minutes, live, shown in TUTORIAL_PATH:
        row = re.search(rf"^\| [0-9:]+ \| {lesson} \| *{re.escape(sections)} *\| {minutes} \|", guide, re.M)
        assert row, f"PRESENTER_GUIDE.md lacks the row for {lesson} ({sections}, {minutes} min)"
    assert "full course" in guide.lower()
    statuses = re.findall(r"`part\d_[a-z_]+\.html` \| (\w+) \|", guide)
    assert len(statuses) == 5 and set(statuses) == {"ready"}, statuses   # every lesson's notebook exists now


@needs_slide_libs
def test_decks_load_nothing_from_a_cdn_and_everything_they_load_is_there(decks):
    out, written = decks
    assert set(written) == {"overview", "part0_start_here"}
    for path in out.glob("*.html"):
        html = path.read_text()
        assert not external_loads(html), f"{path.name} loads {external_loads(html)}"
        locals_ = local_loads(html)
        assert any("reveal.js" in p for p in locals_) and any("MathJax" in p for p in locals_)
        assert all((out / p).exists() for p in locals_), [p for p in locals_ if not (out / p).exists()]
    assert not external_loads((out / "lib/reveal.js/dist/theme/white.css").read_text())


@needs_slide_libs
def test_the_cdn_check_catches_nbconverts_default(executed, tmp_path):
    from nbconvert import SlidesExporter
    import nbformat

    node = nbformat.reads(json.dumps(deck_notebook("t", "s", [executed])), as_version=4)
    for index, cell in enumerate(node.cells):
        cell["id"] = f"c{index}"
    html, _ = SlidesExporter().from_notebook_node(node)
    assert any("unpkg.com" in u or "cdnjs" in u for u in external_loads(html))


@needs_slide_libs
def test_deck_shows_outputs_with_code_in_speaker_notes(decks):
    out, written = decks
    html = written["part0_start_here"].read_text()
    notes = re.findall(r'<aside class="notes">(.*?)</aside>', html, re.S)
    assert len(notes) >= 5 and any("setup_course" in n for n in notes)
    outside_notes = re.sub(r'<aside class="notes">.*?</aside>', "", html, flags=re.S)
    assert "setup_course(" not in outside_notes, "code inputs belong in the notes, not on the slides"
    assert outside_notes.count("data:image/png;base64") >= 1, "the lesson's plots should be on the slides"
    assert "Lesson 00" in html and "FAST mode" in html


@needs_chromium
@needs_slide_libs
def test_pdf_handouts_have_a_page_per_slide(decks):
    out, written = decks
    for stem in written:
        pdf = (out / "pdf" / f"{stem}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF")
        pages = max(int(n) for n in re.findall(rb"/Count (\d+)", pdf))   # the page tree's root counts them all
        slides = len(slide_addresses(written[stem].read_text()))
        assert pages >= slides - 1, f"{stem}.pdf has {pages} pages for {slides} slides: not reveal's print view"


def _first_slide_with(html: str, needle: str) -> str:
    return next(address for address, text in slide_addresses(html) if needle in text)


@needs_chromium
@needs_slide_libs
@pytest.mark.parametrize("which", ["title", "plot"])
def test_slides_render_as_slides_in_chromium(decks, which, tmp_path):
    out, written = decks
    deck = written["part0_start_here"]
    html = deck.read_text()
    address = "#/0" if which == "title" else _first_slide_with(html, 'src="data:image/png')
    url = deck.resolve().as_uri() + address
    png, dom, problems = render_slide(url, tmp_path / f"{which}.png")
    assert not problems, problems
    present = re.search(r'<section[^>]*class="[^"]*\bpresent\b[^"]*"[^>]*>(.*?)</section>', dom, re.S).group(1)
    if which == "title":
        assert "Part 0: Start here" in present
    else:
        assert "data:image/png" in present
        from course_utils.browser import image_stats

        assert image_stats(png)["colours"] > 20, "a plot has more colours than text on white"


@needs_chromium
@needs_slide_libs
def test_the_slide_check_fails_on_a_deck_without_its_libraries(decks, tmp_path):
    """The offline failure mode itself: the same deck with lib/ missing must not pass as a slide."""
    out, written = decks
    broken = tmp_path / "part0_start_here.html"
    shutil.copy(written["part0_start_here"], broken)
    url = broken.as_uri() + "#/0"
    _, _, problems = render_slide(url, tmp_path / "broken.png")
    assert problems and any("reveal.js" in p for p in problems), problems


def test_export_deck_writes_html(tmp_path):
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {"slideshow": {"slide_type": "slide"}},
                           "source": "# Hello"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    html = export_deck(notebook, tmp_path / "d.html").read_text()
    assert "<section" in html and "lib/reveal.js/dist/reveal.js" in html and not external_loads(html)
