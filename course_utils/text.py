"""Matching free-text titles against a catalogue (lesson 00, later the LLM lessons).

A language model writes "The Lion King"; MovieLens stores "Lion King, The (1994)".
An exact comparison calls that a miss. :func:`normalise_title` maps both to one
key — case, accents, punctuation, the release year, alternative titles in
brackets and a leading or trailing article are all set aside — and
:func:`match_titles` looks an answer up in a catalogue by that key.

>>> normalise_title("Lion King, The (1994)") == normalise_title("The Lion King")
True
"""
from __future__ import annotations

import re
import unicodedata

import pandas as pd

# English articles plus the foreign ones MovieLens moves to the end ("Cité des enfants perdus, La").
ARTICLES = ("the", "a", "an", "la", "le", "les", "l'", "il", "el", "los", "las", "das", "der", "die", "det")
_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_TRAILING_ARTICLE = re.compile(r",\s*(" + "|".join(re.escape(a) for a in ARTICLES) + r")\s*$")
_LEADING_ARTICLE = re.compile(r"^(" + "|".join(re.escape(a) for a in ARTICLES if not a.endswith("'")) + r")\s+")


def normalise_title(title: str) -> str:
    """A key under which two spellings of one title agree: lower case, no accents, year, brackets,
    article or punctuation.

    >>> normalise_title('  "Toy Story (1995)." ')
    'toy story'
    >>> normalise_title("Cité des enfants perdus, La")
    'cite des enfants perdus'
    """
    if not isinstance(title, str):
        raise TypeError(f"title must be a string, got {type(title).__name__}: {title!r}")
    text = unicodedata.normalize("NFKD", title)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = _BRACKETS.sub(" ", text)            # "(1994)", "(Se7en)", "[Director's cut]"
    text = text.replace("&", " and ")
    text = text.strip(" \t\n.!?\"“”*_`")
    text = _TRAILING_ARTICLE.sub("", text)     # "lion king, the" -> "lion king"; "enfer, l'" -> "enfer"
    text = re.sub(r"^l['’]\s*", "", text)      # "l'enfer" -> "enfer"
    text = re.sub(r"['’‘]", "", text)          # "schindler's" and "schindlers" agree
    text = re.sub(r"[^\w\s]", " ", text)       # other punctuation and dashes become spaces
    text = re.sub(r"\s+", " ", text).strip()
    return _LEADING_ARTICLE.sub("", text)      # "the lion king" -> "lion king"


def display_title(title: str) -> str:
    """A catalogue title as people write it: "Lion King, The" -> "The Lion King" (the year, if any, is kept).

    >>> display_title("Wizard of Oz, The")
    'The Wizard of Oz'
    """
    if not isinstance(title, str):
        raise TypeError(f"title must be a string, got {type(title).__name__}: {title!r}")
    found = re.match(r"^(.*?), (The|A|An)(\s*\(.*\))?$", title.strip())
    if not found:
        return title.strip()
    return f"{found.group(2)} {found.group(1)}{found.group(3) or ''}"


def title_candidates(answer: str) -> list[str]:
    """The spans of a free-text answer that may be a title: quoted or emphasised spans first, then the
    first line, then the whole answer.

    >>> title_candidates('The movie is "The Lion King" by someone.')[0]
    'The Lion King'
    """
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a string, got {type(answer).__name__}: {answer!r}")
    quoted = re.findall(r'"([^"]+)"|“([^”]+)”|\*\*([^*]+)\*\*|\*([^*]+)\*', answer)
    spans = [next(part for part in group if part) for group in quoted]
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    spans += lines[:1] + [answer]
    return list(dict.fromkeys(span.strip() for span in spans if span.strip()))


def find_in_catalogue(answer: str, catalogue) -> tuple[str | None, list[str]]:
    """The first span of ``answer`` (see :func:`title_candidates`) that names catalogue titles, and those
    titles; ``(None, [])`` when no span does."""
    for span in title_candidates(answer):
        matches = match_titles(span, catalogue)
        if matches:
            return span, matches
    return None, []


def match_titles(answer: str, catalogue) -> list[str]:
    """The catalogue titles whose normalised form equals the answer's (empty list: not in the catalogue).

    catalogue: a sequence or Series of titles. Several titles can match (remakes
    with the same name), so a list comes back, in catalogue order.
    """
    titles = pd.Series(list(catalogue), dtype=object)
    if titles.empty:
        raise ValueError("the catalogue is empty")
    key = normalise_title(answer)
    if not key:
        return []
    return titles[titles.map(normalise_title) == key].tolist()
