"""Shared pieces of the browser tests: skip messages, and what tells a rendered slide from a broken page."""
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from course_utils.browser import dump_dom, find_chromium, has_colour_near, image_stats, screenshot
from course_utils.slides import NODE_MODULES

CDN_HOSTS = ("unpkg.com", "cdnjs.cloudflare.com", "cdn.jsdelivr.net", "googleapis.com", "code.jquery.com",
             "mathjax.org", "cdn.plot.ly", "esm.sh")
# Reveal's white theme draws its controls in this blue, at the bottom right of every slide.
REVEAL_LINK_BLUE = (42, 118, 221)

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="browser test skipped: no Chromium found (apt-get install chromium, or set $CHROMIUM); CI installs it")
needs_slide_libs = pytest.mark.skipif(
    not (NODE_MODULES / "reveal.js" / "dist" / "reveal.js").exists(),
    reason="slide test skipped: no slides/node_modules (npm ci --prefix slides; make test does it when npm exists)")


def external_loads(html: str) -> list[str]:
    """Everything a page would fetch from another host: script/link/img/iframe sources, CSS imports and urls, ES imports."""
    found = re.findall(r"""<(?:script|link|img|iframe|source|video|audio)\b[^>]*?\b(?:src|href)\s*=\s*["']((?:https?:)?//[^"']+)""",
                       html, re.I)
    found += re.findall(r"""@import\s+(?:url\()?\s*["']?((?:https?:)?//[^"')\s]+)""", html, re.I)
    found += re.findall(r"""url\(\s*["']?((?:https?:)?//[^"')\s]+)""", html, re.I)
    found += re.findall(r"""\bimport\b[^;'"]*?from\s+["']((?:https?:)?//[^"']+)""", html)
    found += [host for host in CDN_HOSTS if host in html]
    return sorted(set(found))


def local_loads(html: str) -> list[str]:
    """Relative script/link sources, which must exist beside the page."""
    paths = re.findall(r"""<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"':#]+?)(?:\?[^"']*)?["']""", html, re.I)
    return sorted(set(paths))


class _Sections(HTMLParser):
    """reveal.js addresses (h, v) of the slides, with the HTML text inside each."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.slides, self.h = [], [], -1

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            if not self.stack:
                self.h, self.v = self.h + 1, -1
                self.stack.append([(self.h, None), []])
            else:
                self.v += 1
                self.stack.append([(self.h, self.v), []])
        elif self.stack:
            self.stack[-1][1].append(f"<{tag} " + " ".join(f'{k}="{(v or "")[:40]}"' for k, v in attrs) + ">")

    def handle_data(self, data):
        if self.stack:
            self.stack[-1][1].append(data)

    def handle_endtag(self, tag):
        if tag == "section" and self.stack:
            address, content = self.stack.pop()
            if not (address[1] is None and any(a[0] == address[0] and a[1] is not None for a, _ in self.slides)):
                self.slides.append((address, "".join(content)))   # a slide, not the stack holding its subslides


def slide_addresses(html: str) -> list[tuple[str, str]]:
    """('#/h' or '#/h/v', text of that slide) for every slide of a built deck, in document order."""
    parser = _Sections()
    parser.feed(html)
    return [(f"#/{h}" if v is None else f"#/{h}/{v}", text) for (h, v), text in sorted(parser.slides, key=lambda s: (s[0][0], -1 if s[0][1] is None else s[0][1]))]


def looks_like_a_slide(png: Path, dom: str) -> list[str]:
    """Reasons why a screenshot and DOM are not a styled reveal.js slide; empty when they are."""
    problems = []
    width, height = image_stats(png)["size"]
    # Leave out reveal's progress bar (top) and slide number (bottom), which span the window.
    stats = image_stats(png, box=(0, 12, width, height - 40))
    if stats["ink"] < 0.003 or stats["bbox"] is None:
        problems.append(f"blank page (ink {stats['ink']:.4f})")
    elif stats["bbox"][0] < 0.05 * width:
        problems.append(f"content starts at the left edge (x={stats['bbox'][0]}), like an unstyled page")
    if not has_colour_near(png, (width - 140, height - 140, width, height), REVEAL_LINK_BLUE):
        problems.append("no reveal.js controls at the bottom right")
    if not re.search(r'class="[^"]*\breveal\b[^"]*\bready\b', dom):
        problems.append("reveal.js did not initialise (no .reveal.ready in the DOM)")
    if not re.search(r'<section[^>]*class="[^"]*\bpresent\b', dom):
        problems.append("no slide is marked present")
    return problems


def render_slide(url: str, png: Path, attempts: int = 3) -> tuple[Path, str, list[str]]:
    """Screenshot and DOM of a slide, with the problems found; tried again when problems are found.

    Headless Chromium now and then captures a page before its scripts ran when the machine is
    loaded (see course_utils.browser.print_pdf); a broken deck fails every attempt.
    """
    for _ in range(attempts):
        dom = dump_dom(url)
        problems = looks_like_a_slide(screenshot(url, png), dom)
        if not problems:
            break
    return png, dom, problems
