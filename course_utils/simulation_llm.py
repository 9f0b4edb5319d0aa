"""LLM-driven simulated users (lesson 21): a persona in words, a choice from a slate.

Agent-based simulators (RecAgent, Wang et al., 2023; Agent4Rec, Zhang et al., 2024) let an
LLM play the user: it reads a profile and the recommendations, and acts. Here the profile
is written from a fashion-shop user's *true* preference weights (:func:`persona`), the
slate's products are shown as titles with prices, and the LLM's choice is the title it
finds most likely as its answer (lesson 09's likelihood ranker,
``llm.ranking.score_candidates``, so the choice is always a product on the slate).

Because the shop knows the truth, the agent can be checked: does it pick the item with the
highest true utility (:func:`ground_truth_choice`), and on which aspect of the utility does
it follow the user (:func:`aspect_agreement`)?
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from course_utils.data.fashion_mnist import CLASS_NAMES
from course_utils.data.fashion_shop import ASPECT_STARTS, ASPECTS, NOUN, PATTERNS, TONES

PLURAL = {"T-shirt": "T-shirts", "pullover": "pullovers", "dress": "dresses", "coat": "coats", "shirt": "shirts",
          "bag": "bags"}   # the other category nouns are already plural (trousers, sandals, sneakers, ankle boots)
QUESTION = "Which product would you buy? Answer with its name."
NEUTRAL_SHOPPER = "You are shopping for clothes online."


def _plural(category: str) -> str:
    noun = NOUN[category]
    return PLURAL.get(noun, noun)


def persona(shop, user: int) -> str:
    """A user's true preferences in words: favourite and least favourite categories, tone, pattern, budget.

    Item popularity also drives the true utility but is left out: a title cannot show it.
    """
    w = shop.user_weights[user]
    cat = w[: len(CLASS_NAMES)]
    order = np.argsort(-cat, kind="stable")
    tone = TONES[int(np.argmax(w[ASPECT_STARTS[1]:ASPECT_STARTS[2]]))]
    pattern = PATTERNS[int(np.argmax(w[ASPECT_STARTS[2]:ASPECT_STARTS[3]]))]
    sensitivity = shop.users["price_sensitivity"].to_numpy()
    low, high = np.quantile(sensitivity, [1 / 3, 2 / 3])
    budget = ("You are on a tight budget." if sensitivity[user] > high else
              "Price hardly matters to you." if sensitivity[user] < low else "You watch the price.")
    return (f"{NEUTRAL_SHOPPER} You love {_plural(CLASS_NAMES[order[0]])} and {_plural(CLASS_NAMES[order[1]])}; "
            f"you dislike {_plural(CLASS_NAMES[order[-1]])}. You like {tone} colours and a {pattern} look. {budget}")


def product_texts(shop) -> list[str]:
    """What the simulated user reads for each item: its title without the brand, and its price.

    The brand is drawn at random per item and plays no part in the true utility (its price level
    does, through the price), so it is left out: fewer tokens for the LLM to read.
    """
    return [f"{t.split(' by ')[0]}, ${p:.2f}" for t, p in zip(shop.items["title"], shop.items["price"])]


def choice_prompt(tokenizer, profile: str) -> str:
    """The chat prompt whose answer the ranker scores: the persona as system message, then :data:`QUESTION`."""
    from course_utils.llm.prompting import render_chat

    if not isinstance(profile, str) or not profile.strip():
        raise ValueError("the profile must be a non-empty string")
    return render_chat(tokenizer, [{"role": "system", "content": profile}, {"role": "user", "content": QUESTION}])


def llm_choices(model, tokenizer, prompts: Sequence[str], slates, texts: Sequence[str], prefix=None) -> np.ndarray:
    """The position (0..k-1) each simulated user picks on their slate: the product text with the highest
    mean per-token log-likelihood as the answer to their prompt. slates: (users, k) item ids; texts: one
    string per item (:func:`product_texts`)."""
    from course_utils.llm.ranking import score_candidates

    slates = np.asarray(slates)
    if slates.ndim != 2 or slates.shape[1] == 0 or len(slates) != len(prompts):
        raise ValueError(f"need one non-empty slate per prompt, got slates {slates.shape} for {len(prompts)} prompts")
    picks = []
    for prompt, slate in zip(prompts, slates):
        # Two products can read the same (same tone, pattern, noun and price): score each text once,
        # and a tie between look-alikes goes to the first on the slate.
        unique, position = np.unique([texts[i] for i in slate], return_inverse=True)
        scores = score_candidates(model, tokenizer, prompt, list(unique), "mean", prefix=prefix)
        picks.append(int(np.argmax(scores[position])))
    return np.array(picks, dtype=np.int64)


def ground_truth_choice(shop, users, slates) -> np.ndarray:
    """The position of the highest true utility on each user's slate (the ground truth's best pick)."""
    users, slates = np.asarray(users), np.asarray(slates)
    if slates.ndim != 2 or slates.shape[1] == 0 or len(slates) != len(users):
        raise ValueError(f"slates must be (len(users), k) with k >= 1, got {slates.shape} for {len(users)} users")
    utility = np.einsum("uf,ukf->uk", shop.user_weights[users], shop.item_features[slates])
    return utility.argmax(1)


def aspect_utilities(shop, users, slates) -> dict[str, np.ndarray]:
    """Each aspect's share of the true utility of every slate item: {aspect: (users, k)}; they sum to the utility."""
    users, slates = np.asarray(users), np.asarray(slates)
    w, f = shop.user_weights[users][:, None, :], shop.item_features[slates]
    bounds = [*ASPECT_STARTS, f.shape[-1]]
    return {a: (w[..., s:e] * f[..., s:e]).sum(-1) for a, s, e in zip(ASPECTS, bounds[:-1], bounds[1:])}


def aspect_agreement(shop, users, slates, picks) -> pd.DataFrame:
    """How often the picks land on an item that is best on each aspect alone (and on the full utility).

    Ties count as agreement (any of the best items), so chance is the mean share of the slate
    that is best; the binomial test uses that mean chance. Rows: the full utility, then
    each aspect; columns: agreement, chance, excess, p (two-sided binomial test), slates, and
    for the aspects the Holm-corrected p.
    """
    users, slates, picks = np.asarray(users), np.asarray(slates), np.asarray(picks)
    if picks.shape != (len(slates),) or ((picks < 0) | (picks >= slates.shape[1])).any():
        raise ValueError(f"picks must hold one position in 0..{slates.shape[1] - 1} per slate")
    parts = aspect_utilities(shop, users, slates)
    rows = {}
    for name, values in {"full utility": sum(parts.values()), **parts}.items():
        best = np.isclose(values, values.max(1, keepdims=True))
        hit = best[np.arange(len(picks)), picks]
        chance = float(best.mean(1).mean())
        p = stats.binomtest(int(hit.sum()), len(hit), min(max(chance, 1e-9), 1 - 1e-9)).pvalue
        rows[name] = {"agreement": hit.mean(), "chance": chance, "excess": hit.mean() - chance, "p": p,
                      "slates": len(hit)}
    table = pd.DataFrame(rows).T.astype({"slates": int})
    # Five aspects are tested at once: Holm's correction keeps the chance of any false "follows" at 5%.
    table["p (Holm)"] = np.nan
    table.loc[list(ASPECTS), "p (Holm)"] = multipletests(table.loc[list(ASPECTS), "p"].astype(float), method="holm")[1]
    return table
