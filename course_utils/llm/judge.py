"""LLM-as-a-judge for a conversational recommender, checked against ground truth (survey Section 5.3).

The judge reads a rubric, what the shopper wants and the items a system showed, and answers with one
of a few options ("Yes"/"No", or "A"/"B" for a pairwise comparison). Instead of letting it generate
free text, we read the log-likelihood it gives each option (lesson 09's packed ranker behind a cached
rubric prefix): cheap, deterministic, and never unparseable. Zheng et al. (2023, "Judging LLM-as-a-judge")
list the biases to check before trusting such a judge; three are measured here:

* **agreement with ground truth**: :func:`is_relevant` defines the truth from the simulator's hidden
  target and the item facts; :func:`cohen_kappa` (Cohen, 1960) corrects accuracy for chance, and
  :func:`agreement` gives both with bootstrap intervals next to the majority-class baseline;
* **position bias**: the same pair judged in both orders (:func:`position_bias`): a fair judge picks
  the same *content* both times, a biased one the same *slot*;
* **verbosity bias**: the same items padded with fluent, irrelevant text (:data:`FILLER`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from course_utils.data.fashion_shop import NOUN
from course_utils.llm.dialogue_metrics import bootstrap_ci, proportion_ci

RUBRIC = ("You judge a shop assistant. The shopper says what they want and the assistant shows some items. "
          "Answer Yes if at least one shown item is the kind of product and the tone the shopper wants, "
          "otherwise answer No. Answer with one word.")
PAIR_RUBRIC = ("You compare two shop assistants, A and B. The shopper says what they want and each assistant shows "
               "some items. Answer A or B: whose items are closer to what the shopper wants. Answer with one letter.")
FILLER = ("All of these are lovely pieces from our new season, chosen with care by our friendly team, and every "
          "order comes with free delivery and easy returns.")
CASE_TYPES = ("shows the target", "same category and tone", "same category, other tone", "other category")


# ---------------------------------------------------------------- ground truth
def need_text(items: pd.DataFrame, target: int) -> str:
    """What the shopper wants, as the judge reads it: the target's tone and kind ("dark trousers")."""
    row = items.iloc[int(target)]
    return f"{row.tone} {NOUN[row.category]}"


def case_type(shown: Sequence[int], target: int, items: pd.DataFrame) -> str:
    """The best thing a shown list does for a target, one of :data:`CASE_TYPES`."""
    shown = [int(i) for i in shown]
    if not shown:
        raise ValueError("the shown list is empty: there is nothing to judge")
    row = items.iloc[int(target)]
    if int(target) in shown:
        return CASE_TYPES[0]
    same = items.iloc[shown]["category"].to_numpy() == row.category
    if (same & (items.iloc[shown]["tone"].to_numpy() == row.tone)).any():
        return CASE_TYPES[1]
    return CASE_TYPES[2] if same.any() else CASE_TYPES[3]


def is_relevant(shown: Sequence[int], target: int, items: pd.DataFrame) -> bool:
    """Ground truth of the rubric: the list shows the target, or an item of its category and tone."""
    return case_type(shown, target, items) in CASE_TYPES[:2]


def judge_cases(dialogues, items: pd.DataFrame, n_cases: int, seed: int = 0) -> pd.DataFrame:
    """Cases for the pointwise judge, drawn from real dialogues: one list a system showed, judged for its
    own dialogue's target (half of the cases) or for another dialogue's target (the other half), so that
    both verdicts occur. Columns: ``target``, ``shown`` (tuple of ids), ``own target``, ``case type``,
    ``relevant`` (the ground truth)."""
    lists = [(d.target, tuple(shown)) for d in dialogues for shown in d.recommended if shown]
    if n_cases < 2 or len(lists) < 2:
        raise ValueError(f"need n_cases >= 2 and at least two shown lists, got {n_cases} and {len(lists)}")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(lists), size=n_cases, replace=n_cases > len(lists))
    rows = []
    for n, pick in enumerate(picks):
        own = n % 2 == 0
        target = lists[pick][0] if own else lists[(pick + 1 + rng.integers(len(lists) - 1)) % len(lists)][0]
        shown = lists[pick][1]
        kind = case_type(shown, target, items)
        rows.append({"target": int(target), "shown": shown, "own target": own, "case type": kind,
                     "relevant": kind in CASE_TYPES[:2]})
    return pd.DataFrame(rows)


def judge_pairs(cases: pd.DataFrame, items: pd.DataFrame, n_pairs: int, seed: int = 0) -> pd.DataFrame:
    """Pairs for the pairwise judge: a relevant list and an irrelevant one for the same target (ground
    truth: the relevant one is better). Columns ``target``, ``better``, ``worse``."""
    relevant = cases[cases["relevant"]]
    if relevant.empty or n_pairs < 1:
        raise ValueError("need at least one relevant case and n_pairs >= 1")
    rng = np.random.default_rng(seed)
    pool = list(cases["shown"])
    rows = []
    for _, case in relevant.sample(n=n_pairs, replace=n_pairs > len(relevant), random_state=seed).iterrows():
        worse = [s for s in pool if not is_relevant(s, case["target"], items)]
        if worse:
            rows.append({"target": case["target"], "better": case["shown"], "worse": worse[rng.integers(len(worse))]})
    return pd.DataFrame(rows, columns=["target", "better", "worse"])


# ---------------------------------------------------------------- prompts
def _listing(items: pd.DataFrame, shown: Sequence[int]) -> str:
    # Titles without the brand: the rubric is about kind and tone, and every token costs CPU time.
    return "\n".join(f"{n}. {items.title[int(i)].split(' by ')[0]}" for n, i in enumerate(shown, 1))


def relevance_messages(items: pd.DataFrame, target: int, shown: Sequence[int], padding: str = "") -> list[dict]:
    """The pointwise judgement: rubric, the shopper's need, the shown items (plus ``padding`` text)."""
    shown_text = _listing(items, shown) + (f"\n{padding}" if padding else "")
    return [{"role": "system", "content": RUBRIC},
            {"role": "user", "content": f"The shopper wants: {need_text(items, target)}.\nShown:\n{shown_text}"}]


def pairwise_messages(items: pd.DataFrame, target: int, shown_a: Sequence[int], shown_b: Sequence[int]) -> list[dict]:
    """The pairwise judgement: the same need, assistant A's items, then assistant B's."""
    return [{"role": "system", "content": PAIR_RUBRIC},
            {"role": "user", "content": f"The shopper wants: {need_text(items, target)}.\nA shows:\n"
                                        f"{_listing(items, shown_a)}\nB shows:\n{_listing(items, shown_b)}"}]


# ---------------------------------------------------------------- scoring the options
def option_scores(model, tokenizer, conversations: list, options: Sequence[str], prefix="auto") -> np.ndarray:
    """(n_conversations, n_options) log p(option | rendered chat + the assistant's turn start).

    One call of lesson 09's packed scorer per conversation. ``prefix="auto"`` runs the text all rendered
    prompts share (the rubric and "The shopper wants:") once and reuses its key/value cache (a
    ``ranking.PromptPrefix``; or pass one, or None). Options are the judge's whole answer ("Yes", "A")."""
    from course_utils.llm.prompting import render_chat
    from course_utils.llm.ranking import PromptPrefix, packed_log_likelihood

    if isinstance(options, str) or len(options) < 2:
        raise ValueError(f"options must be a list of at least two answers, got {options!r}")
    if not conversations:
        raise ValueError("conversations is empty: nothing to judge")
    prompts = [render_chat(tokenizer, messages) for messages in conversations]
    if isinstance(prefix, str) and prefix == "auto":
        prefix = PromptPrefix.from_prompts(model, tokenizer, prompts) if len(prompts) > 1 else None
    return np.stack([packed_log_likelihood(model, tokenizer, prompt, list(options), prefix) for prompt in prompts])


# ---------------------------------------------------------------- agreement
def cohen_kappa(a, b) -> float:
    """Cohen's kappa of two raters' labels: (p_o - p_e) / (1 - p_e), with p_e from their marginals.

    NaN when p_e = 1 (both raters always give the same single label: agreement by chance is certain).

    >>> cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0])
    0.5
    """
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if len(a) != len(b) or not len(a):
        raise ValueError(f"need two non-empty label arrays of the same length, got {len(a)} and {len(b)}")
    labels = np.unique(np.concatenate([a, b]))
    observed = float(np.mean(a == b))
    expected = float(sum(np.mean(a == v) * np.mean(b == v) for v in labels))
    return float("nan") if expected >= 1 else (observed - expected) / (1 - expected)


def agreement(judged, truth, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Accuracy and Cohen's kappa of ``judged`` against ``truth`` (booleans), each with a bootstrap interval
    over cases, and the majority-class baseline (always answering the commoner truth)."""
    judged, truth = np.asarray(judged, bool).ravel(), np.asarray(truth, bool).ravel()
    if len(judged) != len(truth) or len(judged) < 2:
        raise ValueError(f"need at least two cases and one verdict per case, got {len(judged)} and {len(truth)}")
    accuracy = lambda j, t: float(np.mean(j == t))
    majority = max(truth.mean(), 1 - truth.mean())
    acc_ci = bootstrap_ci(accuracy, judged, truth, n_boot=n_boot, level=level, seed=seed)
    kappa_ci = bootstrap_ci(cohen_kappa, judged, truth, n_boot=n_boot, level=level, seed=seed)
    return {"cases": len(truth), "accuracy": accuracy(judged, truth), "accuracy CI low": acc_ci[0],
            "accuracy CI high": acc_ci[1], "kappa": cohen_kappa(judged, truth), "kappa CI low": kappa_ci[0],
            "kappa CI high": kappa_ci[1], "majority baseline accuracy": float(majority),
            "judge says yes": float(judged.mean()), "truly relevant": float(truth.mean())}


def calibrate_threshold(margins, truth) -> float:
    """The decision threshold on a judge's log-odds (Yes minus No) with the best accuracy on these cases
    (validation cases only: then apply it to the test cases). Ties: the threshold closest to zero."""
    margins, truth = np.asarray(margins, float).ravel(), np.asarray(truth, bool).ravel()
    if len(margins) != len(truth) or not len(margins):
        raise ValueError("need one margin per case, and at least one case")
    cuts = np.unique(margins)
    candidates = np.concatenate([[cuts[0] - 1.0], (cuts[1:] + cuts[:-1]) / 2, [cuts[-1] + 1.0], [0.0]])
    accuracy = np.array([np.mean((margins > c) == truth) for c in candidates])
    best = np.flatnonzero(accuracy == accuracy.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best]))]])


# ---------------------------------------------------------------- position bias
def position_bias(margin_first, margin_swapped, level: float = 0.95) -> dict:
    """Pairwise verdicts in both orders. ``margin_first``: log p(A) - log p(B) with the better response in
    slot A; ``margin_swapped``: the same pairs with the responses swapped (the better one in slot B).

    *Consistent*: the judge picks the same content in both orders. *Follows position*: it picks the same
    slot both times, so its verdict flips with the order. Rates come with exact intervals."""
    first, swapped = np.asarray(margin_first, float).ravel(), np.asarray(margin_swapped, float).ravel()
    if len(first) != len(swapped) or not len(first):
        raise ValueError(f"need one margin per pair in each order, got {len(first)} and {len(swapped)}")
    picks_a = np.concatenate([first > 0, swapped > 0])
    correct = np.concatenate([first > 0, swapped <= 0])
    consistent = (first > 0) == (swapped <= 0)
    out = {"pairs": len(first), "accuracy": float(correct.mean()), "consistent": float(consistent.mean()),
           "follows position": float(1 - consistent.mean()), "picks slot A": float(picks_a.mean())}
    for name, hits, n in (("accuracy", correct.sum(), len(correct)), ("consistent", consistent.sum(), len(first)),
                          ("follows position", (~consistent).sum(), len(first)), ("picks slot A", picks_a.sum(), len(picks_a))):
        out[f"{name} CI low"], out[f"{name} CI high"] = proportion_ci(int(hits), n, level)
    return out


def verdict_flips(margin_first: float, margin_swapped: float) -> bool:
    """Does the verdict (which *content* wins) change when the two responses swap places?"""
    return (margin_first > 0) != (margin_swapped <= 0)


__all__ = ["CASE_TYPES", "FILLER", "PAIR_RUBRIC", "RUBRIC", "agreement", "calibrate_threshold", "case_type",
           "cohen_kappa", "is_relevant", "judge_cases", "judge_pairs", "need_text", "option_scores", "pairwise_messages", "position_bias",
           "relevance_messages", "verdict_flips"]
