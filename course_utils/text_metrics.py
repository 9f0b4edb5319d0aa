"""Text-generation metrics for explanations and captions: BLEU, ROUGE-L and a faithfulness rate.

BLEU and ROUGE come from the field's packages (sacrebleu, rouge-score), so the
numbers match what papers report; this module only validates inputs and fixes
the settings (corpus BLEU with sacrebleu's defaults, ROUGE-L F1 with stemming).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    hypotheses, references = list(hypotheses), list(references)
    if not hypotheses:
        raise ValueError("no hypotheses to score: the caption or explanation list is empty")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references; they pair one to one")
    for name, texts in (("hypotheses", hypotheses), ("references", references)):
        if not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{name} must be strings")
    return hypotheses, references


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) of ``hypotheses`` against one reference each (sacrebleu defaults)."""
    import sacrebleu

    hypotheses, references = _check_pairs(hypotheses, references)
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def rouge_l(hypotheses: Sequence[str], references: Sequence[str], per_pair: bool = False):
    """Mean ROUGE-L F1 (0-1) with Porter stemming; ``per_pair=True`` returns one score per pair."""
    from rouge_score import rouge_scorer

    hypotheses, references = _check_pairs(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = np.array([scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references)])
    return scores if per_pair else float(scores.mean())


def mentions(text: str, words: Sequence[str]) -> list[str]:
    """The ``words`` (attribute values such as "dark" or "T-shirt") that ``text`` mentions, case-insensitively.

    Longer words claim their span first, so "T-shirt" is not also counted as "shirt".
    """
    import re

    lowered, found = text.lower(), set()
    for word in sorted(set(words), key=len, reverse=True):
        pattern = r"(?<![a-z])" + re.escape(word.lower()) + r"(?![a-z])"
        if re.search(pattern, lowered):
            found.add(word)
            lowered = re.sub(pattern, " ", lowered)
    return [w for w in words if w in found]


def faithfulness(texts: Sequence[str], true_attributes: Sequence[Sequence[str]],
                 vocabulary: Sequence[str]) -> dict[str, float]:
    """How often generated texts name attributes the item really has.

    For each text, the attribute words from ``vocabulary`` it mentions are
    split into true ones (in that item's ``true_attributes``) and false ones.
    Returns ``precision`` (true mentions / all mentions), ``any_false`` (share
    of texts with at least one wrong attribute) and ``mentioning`` (share of
    texts that mention any attribute at all).
    """
    texts, true_attributes = list(texts), list(true_attributes)
    if not texts or len(texts) != len(true_attributes):
        raise ValueError(f"need one attribute list per text; got {len(texts)} texts and "
                         f"{len(true_attributes)} attribute lists")
    n_true = n_all = n_any_false = n_mentioning = 0
    for text, truth in zip(texts, true_attributes):
        said = mentions(text, vocabulary)
        truth = {t.lower() for t in truth}
        right = sum(w.lower() in truth for w in said)
        n_true, n_all = n_true + right, n_all + len(said)
        n_any_false += right < len(said)
        n_mentioning += bool(said)
    return {"precision": n_true / n_all if n_all else float("nan"), "any_false": n_any_false / len(texts),
            "mentioning": n_mentioning / len(texts)}
