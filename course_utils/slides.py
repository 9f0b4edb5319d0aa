"""Slide decks from the executed lessons: one reveal.js deck per course part, an overview, PDF handouts.

``make slides`` runs ``python -m course_utils.slides``. For each part with ready lessons it joins
the executed notebooks (``build/notebooks/``, from ``make course``; missing or stale ones are run
first) into one deck. What a slide shows is what the notebook's ``slideshow`` metadata says;
code inputs are hidden on the slide and go to the speaker notes, next to any ``notes`` cells
the lesson has, so the presenter sees the code behind each plot.

Every deck is self-contained offline: reveal.js, require.js, jQuery and MathJax are copied from
``slides/node_modules`` (pinned by ``slides/package.json`` and its lock file) into ``lib/`` next to
the decks. nbconvert's defaults load them from CDNs, and offline such a deck is one long unstyled
page; the tests check that no built page refers to a CDN.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from course_utils.syllabus import LESSONS, course_map

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "slides" / "node_modules"
LIB = "lib"

# (number, key in syllabus.LESSONS, title)
PARTS = (
    ("0", "Start here", "Start here"),
    ("1", "Interaction-driven", "Interaction-driven generative models"),
    ("2", "LLMs", "LLMs in recommendation"),
    ("3", "Multimodal", "Multimodal"),
    ("4", "Evaluation", "Evaluation for impact and harm"),
)

# The 3-hour tutorial: (lesson, sections, minutes, what to run live, what to show pre-executed).
# slides/PRESENTER_GUIDE.md and the README give the same path; a test keeps them in step.
TUTORIAL_PATH = (
    ("00", "1, 3, 7", 10, "the environment check (section 2)", "the course map"),
    ("01", "1–5, 7", 30, "EASE and Popularity (seconds each)", "full vs sampled ranking, the leaderboard"),
    ("02", "1, 4, 5, 9", 30, "the ELBO written out (section 4)", "Mult-VAE training curves, test results, CVAE slates"),
    ("break", "", 10, "", ""),
    ("03", "1, 4, 5, 7", 35, "the mask check on SASRec and BERT4Rec", "CE vs BCE training, test results"),
    ("05", "2–5", 25, "the forward process (section 2)", "DiffRec against Mult-VAE and EASE, the effect of T'"),
    ("04", "2, 3, 5", 15, "", "IRGAN against its uniform-negative control"),
    ("06", "3, 6", 10, "", "the accuracy/diversity trade-off of GFN4Rec"),
    ("wrap-up", "", 15, "", "the course map: Parts 2–4, coming"),
)

_TEMPLATE = """{%- extends 'index.html.j2' -%}
{#- The course's reveal template: nbconvert's, without the two pieces that always load from a CDN, and
    with reveal.js loaded by plain script tags instead of require.js. A synchronous load finishes
    before the page counts as loaded, so headless Chromium never prints or photographs a deck
    that has not initialised yet (through require.js, about every other PDF came out blank). -#}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block footer_js %}
<script>window.__courseDefine = window.define; window.define = undefined;  // reveal.js as a global, not an AMD module</script>
<script src="{{ reveal_url_prefix }}/dist/reveal.js"></script>
<script src="{{ reveal_url_prefix }}/plugin/notes/notes.js"></script>
<script>
window.define = window.__courseDefine;
Reveal.initialize({
    controls: true, progress: true, history: true,
    transition: "{{ reveal_transition }}", slideNumber: "{{ reveal_number }}",
    plugins: [RevealNotes], width: {{ reveal_width }}, height: {{ reveal_height }},
});
Reveal.on("slidechanged", function () {
    if (window.MathJax && MathJax.Hub && MathJax.Hub.getAllJax(Reveal.getCurrentSlide())) {
        MathJax.Hub.Rerender(Reveal.getCurrentSlide());
    }
    if ({{ reveal_scroll }} === true) {  // tall slides scroll instead of running off the screen
        var h = $(".reveal").height() * 0.95;
        $("section.present").find("section").filter(function () { return $(this).height() > h; })
            .css("height", "calc(95vh)").css("overflow-y", "scroll").css("margin-top", "20px");
    }
});
</script>
{% endblock footer_js %}
"""
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def part_decks() -> list[tuple[str, str, str, list[str]]]:
    """(deck file stem, part number, part title, ready lesson notebooks) for every part."""
    status = course_map().set_index("notebook")["status"]
    decks = []
    for number, key, title in PARTS:
        slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
        ready = [nb for _, nb, _, part, _ in LESSONS if part == key and status[nb] == "ready"]
        decks.append((f"part{number}_{slug}", number, title, ready))
    return decks


def _markdown(text: str, slide_type: str = "-") -> dict:
    return {"cell_type": "markdown", "metadata": {"slideshow": {"slide_type": slide_type}}, "source": text}


def slide_cells(notebook: dict) -> list[dict]:
    """A lesson's cells as they go on slides: outputs on the slide, code in the speaker notes.

    Set-up and parameter cells are skipped; stderr (warnings, progress bars) and widget
    outputs are dropped, since a static deck cannot show them.
    """
    cells = []
    for cell in copy.deepcopy(notebook["cells"]):
        cell.setdefault("metadata", {})
        tags = cell["metadata"].setdefault("tags", [])
        slide_type = cell["metadata"].get("slideshow", {}).get("slide_type", "-")
        if cell["cell_type"] != "code":
            cells.append(cell)
            continue
        if slide_type == "skip" or {"parameters", "colab-setup", "injected-parameters"} & set(tags):
            continue
        cell["outputs"] = [o for o in cell.get("outputs", [])
                           if not (o["output_type"] == "stream" and o.get("name") == "stderr")
                           and _WIDGET_MIME not in o.get("data", {})]
        tags.append("remove_input")
        if cell["outputs"] or slide_type != "-":
            cells.append(cell)
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if source.strip():
            cells.append(_markdown(f"```python\n{source.strip()}\n```", "notes"))
    return cells


def _mode(notebook: dict) -> str:
    fast = notebook.get("metadata", {}).get("papermill", {}).get("parameters", {}).get("FAST")
    return {True: "FAST mode", False: "full mode"}.get(fast, "an unrecorded mode")


def deck_notebook(title: str, subtitle: str, lessons: list[dict], notes: str = "") -> dict:
    """One notebook for one deck: a title slide, then each lesson's slides in order."""
    cells = [_markdown(f"# {title}\n\n{subtitle}", "slide")]
    if notes:
        cells.append(_markdown(notes, "notes"))
    for lesson in lessons:
        cells += slide_cells(lesson)
    metadata = copy.deepcopy(lessons[0]["metadata"]) if lessons else {}
    metadata.pop("widgets", None)
    metadata["title"] = title
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def overview_notebook(decks: list[tuple[str, str, str, list[str]]]) -> dict:
    """The overview deck: what the course is, the course map, the parts, the two paths through it."""
    table = course_map()[["lesson", "notebook", "survey section", "key methods", "status"]]
    rows = "\n".join(f"| {r.lesson} | `{r.notebook}` | {r._3} | {r._4} | {r.status} |" for r in table.itertuples())
    cells = [
        _markdown("# Generative Recommender Systems\n\n## a hands-on course\n\n"
                  "A runnable companion to Deldjoo et al., *A Review of Modern Recommender Systems Using "
                  "Generative Models (Gen-RecSys)*, KDD 2024. Every lesson trains or runs real models on "
                  "real data, on a laptop CPU, offline too.", "slide"),
        _markdown("Welcome the audience; say that every number on the slides was produced by the code "
                  "behind it (the speaker notes show that code), and where the notebooks live.", "notes"),
        _markdown("## The course map\n\n| # | notebook | survey | key methods | status |\n|---|---|---|---|---|\n"
                  + rows, "slide"),
    ]
    for stem, number, title, ready in decks:
        lessons = [(n, nb, s, m) for n, nb, s, part, m in LESSONS if part == dict((p[2], p[1]) for p in PARTS)[title]]
        items = "\n".join(f"* **{n}** `{nb}` (survey {s}): {m}" + ("" if nb in ready else " — *coming*")
                          for n, nb, s, m in lessons)
        link = f"[Open the Part {number} deck]({stem}.html)" if ready else "*This part's lessons are coming.*"
        cells.append(_markdown(f"## Part {number}: {title}\n\n{items}\n\n{link}", "slide"))
    path = "\n".join(f"| {lesson} | {sections or '—'} | {minutes} | {live or '—'} | {shown or '—'} |"
                     for lesson, sections, minutes, live, shown in TUTORIAL_PATH)
    total = sum(minutes for _, _, minutes, _, _ in TUTORIAL_PATH)
    cells.append(_markdown(f"## A 3-hour tutorial ({total} minutes)\n\n"
                           "| lesson | sections | min | run live | show pre-executed |\n|---|---|---|---|---|\n"
                           + path, "slide"))
    cells.append(_markdown("## The full course\n\nEvery lesson in order, 00 to 25, one to two hours each with "
                           "its exercises; each part's deck is the lecture, the notebook is the lab. "
                           "See `slides/PRESENTER_GUIDE.md`.", "slide"))
    return {"cells": cells, "metadata": {"title": "Gen-RecSys course overview",
                                         "kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def install_libraries(out_dir: str | Path, node_modules: str | Path = NODE_MODULES) -> Path:
    """Copy what the decks load into ``out_dir/lib`` (about 12 MB, MathJax trimmed to TeX + CommonHTML)."""
    node_modules, lib = Path(node_modules), Path(out_dir) / LIB
    missing = [p for p in ("reveal.js/dist/reveal.js", "requirejs/require.js", "jquery/dist/jquery.min.js",
                           "mathjax/MathJax.js") if not (node_modules / p).exists()]
    if missing:
        raise FileNotFoundError(f"{node_modules} lacks {missing}: run `npm ci --prefix slides` (make slides does)")
    mathjax = node_modules / "mathjax"
    pieces = {
        "reveal.js/dist": node_modules / "reveal.js" / "dist",
        "reveal.js/plugin/notes": node_modules / "reveal.js" / "plugin" / "notes",
        "require.js": node_modules / "requirejs" / "require.js",
        "jquery.min.js": node_modules / "jquery" / "dist" / "jquery.min.js",
        "mathjax/MathJax.js": mathjax / "MathJax.js",
        "mathjax/config/TeX-AMS_CHTML-full.js": mathjax / "config" / "TeX-AMS_CHTML-full.js",
        "mathjax/config/Safe.js": mathjax / "config" / "Safe.js",
        "mathjax/extensions": mathjax / "extensions",
        "mathjax/jax/input/TeX": mathjax / "jax" / "input" / "TeX",
        "mathjax/jax/element": mathjax / "jax" / "element",
        "mathjax/jax/output/CommonHTML": mathjax / "jax" / "output" / "CommonHTML",
        "mathjax/fonts/HTML-CSS/TeX/woff": mathjax / "fonts" / "HTML-CSS" / "TeX" / "woff",
        "mathjax/localization/en": mathjax / "localization" / "en",
    }
    for target, source in pieces.items():
        destination = lib / target
        if destination.exists():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination)
        else:
            shutil.copy2(source, destination)
    return lib


def export_deck(notebook: dict, out_html: str | Path) -> Path:
    """Write one deck as reveal.js HTML that loads its libraries from ``lib/`` beside it."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    config = Config()
    config.SlidesExporter.reveal_url_prefix = f"{LIB}/reveal.js"
    config.SlidesExporter.reveal_theme = "white"
    config.SlidesExporter.reveal_scroll = True
    config.SlidesExporter.reveal_number = "c/t"
    config.SlidesExporter.require_js_url = f"{LIB}/require.js"
    config.SlidesExporter.jquery_url = f"{LIB}/jquery.min.js"
    config.SlidesExporter.mathjax_url = f"{LIB}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    config.SlidesExporter.exclude_input_prompt = True
    config.SlidesExporter.exclude_output_prompt = True
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_input_tags = {"remove_input"}
    exporter = SlidesExporter(config=config, extra_loaders=[DictLoader({"course_reveal.html.j2": _TEMPLATE})],
                              template_file="course_reveal.html.j2")
    notebook = copy.deepcopy(notebook)
    for index, cell in enumerate(notebook["cells"]):  # lessons joined in one deck repeat cell ids
        cell["id"] = f"deck-{index}"
        if cell["cell_type"] == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
    node = nbformat.reads(json.dumps(notebook), as_version=4)   # joins list-of-lines sources and outputs
    html, _ = exporter.from_notebook_node(node)
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(html, encoding="utf-8")
    return out_html


def ensure_executed(notebooks: list[str], build: Path, fast: bool) -> dict[str, dict]:
    """The executed lessons, running (with the course runner) those missing or older than their source."""
    stale = [nb for nb in notebooks
             if not (build / "notebooks" / f"{nb}.ipynb").exists()
             or (build / "notebooks" / f"{nb}.ipynb").stat().st_mtime < (ROOT / "notebooks" / f"{nb}.ipynb").stat().st_mtime]
    if stale:
        print(f"executing {', '.join(stale)} ({'FAST' if fast else 'full'} mode) first ...", flush=True)
        command = [sys.executable, "-m", "course_utils.course_runner", "--build", str(build),
                   "--only", *[nb[:2] for nb in stale]] + (["--fast"] if fast else [])
        if subprocess.run(command).returncode != 0:
            raise RuntimeError(f"a lesson failed to execute (see {build / 'timings.md'} and the notebook in "
                               f"{build / 'notebooks'}); fix it, then run make slides again")
    return {nb: json.loads((build / "notebooks" / f"{nb}.ipynb").read_text()) for nb in notebooks}


def build_decks(out_dir: str | Path, executed: dict[str, dict], pdf: bool = True) -> list[Path]:
    """Every deck with at least one executed lesson, the overview, and (``pdf``) their PDF handouts."""
    out_dir = Path(out_dir)
    install_libraries(out_dir)
    decks = [(stem, n, title, [nb for nb in ready if nb in executed]) for stem, n, title, ready in part_decks()]
    written = [export_deck(overview_notebook(decks), out_dir / "overview.html")]
    for stem, number, title, ready in decks:
        if not ready:
            continue
        lessons = [executed[nb] for nb in ready]
        modes = sorted({_mode(nb) for nb in lessons})
        subtitle = (f"Lessons {', '.join(nb[:2] for nb in ready)} of the Gen-RecSys course, executed in "
                    f"{' and '.join(modes)}, {time.strftime('%Y-%m-%d')}.\n\n[Course overview](overview.html)")
        notes = "Press S for this speaker view. Each slide's notes show the code that produced its outputs."
        written.append(export_deck(deck_notebook(f"Part {number}: {title}", subtitle, lessons, notes),
                                   out_dir / f"{stem}.html"))
    if pdf:
        from course_utils.browser import print_pdf

        for html in written:
            slides = html.read_text(encoding="utf-8").count("<section")
            print_pdf(html.resolve().as_uri() + "?print-pdf", out_dir / "pdf" / f"{html.stem}.pdf",
                      min_pages=max(1, slides // 2))   # nested sections count twice: a safe floor
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="execute missing lessons in FAST mode")
    parser.add_argument("--build", type=Path, default=ROOT / "build", help="folder with notebooks/ (from make course)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: BUILD/slides)")
    parser.add_argument("--no-pdf", action="store_true", help="skip the PDF handouts (no Chromium needed)")
    args = parser.parse_args(argv)
    build = args.build.resolve()
    ready = [nb for stem, _, _, lessons in part_decks() for nb in lessons]
    executed = ensure_executed(ready, build, args.fast)
    out = (args.out or build / "slides").resolve()
    for path in build_decks(out, executed, pdf=not args.no_pdf):
        print(f"wrote {path.relative_to(out)}" + ("" if args.no_pdf else f" and pdf/{path.stem}.pdf"))
    print(f"decks in {out}; open {out / 'overview.html'} (press S for speaker notes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
