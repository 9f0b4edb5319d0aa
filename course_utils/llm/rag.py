"""Retrieval-augmented recommendation (survey Section 3.3): retrieve, put what was retrieved into the prompt, generate.

Two uses, one idea (Lewis et al., 2020: condition the generator on retrieved text):

* **Retrieve-then-rerank** on MovieLens. A first stage (EASE, or the dense MiniLM
  retriever of lesson 07) orders each user's candidates; the LLM reranks the first
  stage's top ``n`` with the likelihood ranker of lesson 09. The prompt lists the
  top ``n`` with or without *retrieved facts*: each candidate's year and genres, and
  the user's watched title most similar to it (MiniLM cosine). A shuffled-facts
  control gives every candidate the facts of another one: if facts help, true facts
  must beat shuffled ones. :func:`rerank_prompt` builds the prompt within a token
  budget; :func:`rerank_scores` merges the reranked top ``n`` with the rest.
* **Review-grounded explanations** on the fashion shop. A product's reviews are
  retrieved by similarity to the user's profile, numbered ``[R1]``, ``[R2]``... in
  the prompt, and the LLM explains the recommendation citing them. The citation
  checker (:func:`check_explanation`) parses the cited ids, counts citations of
  reviews that were not given, and counts stated attributes (category noun, tone,
  pattern, brand, price) that the product does not have
  (:func:`extract_attributes`, with the shop's own vocabularies).
"""
from __future__ import annotations

import re
import time
from typing import Sequence

import numpy as np
import pandas as pd

from course_utils.llm.prompting import _checked_history, bullet_list

SYSTEM = "You are a movie recommender. Answer briefly, with movie titles only."
EXPLAIN_SYSTEM = ("You explain in one sentence why a shopper may like a product, using only the facts and reviews "
                  "given. Cite each review you use by its id, e.g. [R2].")
CITATION = re.compile(r"\[\s*R\s*(\d+)\s*\]", re.IGNORECASE)
ATTRIBUTE_KINDS = ("category", "tone", "pattern", "brand", "price")


# ---------------------------------------------------------------- retrieve-then-rerank (MovieLens)
def movie_facts(items: pd.DataFrame, max_genres: int = 2) -> list[str]:
    """One short fact string per item (row order = item id): "1995; Comedy, Drama" (year, first genres)."""
    for column in ("year", "genres"):
        if column not in getattr(items, "columns", ()):
            raise ValueError(f"items need a {column!r} column (load_movielens().items)")
    if isinstance(max_genres, bool) or not isinstance(max_genres, int) or max_genres < 1:
        raise ValueError(f"max_genres must be a positive integer, got {max_genres!r}")
    facts = []
    for year, genres in zip(items["year"], items["genres"]):
        when = "year unknown" if pd.isna(year) else str(int(year))
        kinds = ", ".join(list(genres)[:max_genres]) or "genre unknown"
        facts.append(f"{when}; {kinds}")
    return facts


def nearest_watched(candidates: np.ndarray, history: Sequence[Sequence[int]], item_vectors: np.ndarray,
                    n_recent: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """For every candidate, the user's watched item most similar to it (cosine of unit vectors).

    candidates: (n_users, n) item ids; history: one id list per row, oldest first (the last
    ``n_recent`` are searched). Returns ``(items (n_users, n), similarities (n_users, n))``.
    """
    candidates = np.asarray(candidates)
    if candidates.ndim != 2 or len(history) != len(candidates):
        raise ValueError(f"candidates must be (n_users, n) with one history per row; got {candidates.shape} "
                         f"and {len(history)} histories")
    items = np.empty(candidates.shape, dtype=np.int64)
    sims = np.empty(candidates.shape)
    for row, (cands, seen) in enumerate(zip(candidates, history)):
        seen = np.asarray(seen[-n_recent:], dtype=np.int64)
        if len(seen) == 0:
            raise ValueError(f"row {row} has an empty history: there is nothing to retrieve from")
        similarity = item_vectors[cands] @ item_vectors[seen].T          # (n, len(seen))
        best = similarity.argmax(1)
        items[row], sims[row] = seen[best], similarity[np.arange(len(cands)), best]
    return items, sims


def candidate_facts(candidates: np.ndarray, facts: Sequence[str], titles: Sequence[str],
                    nearest: np.ndarray) -> list[list[str]]:
    """The retrieved facts of each candidate: its own facts and the most similar title the user watched."""
    candidates, nearest = np.asarray(candidates), np.asarray(nearest)
    if candidates.shape != nearest.shape:
        raise ValueError(f"candidates {candidates.shape} and nearest {nearest.shape} must have the same shape")
    return [[f"{facts[c]}; like {titles[w]}" for c, w in zip(row, near)] for row, near in zip(candidates, nearest)]


def shuffled_facts(facts: Sequence[Sequence[str]], shift: int = 1) -> list[list[str]]:
    """The control: every candidate gets the facts of another candidate of the same list (rotated by ``shift``).

    The prompt holds the same fact strings, each next to the wrong title; with a
    rotation no candidate keeps its own facts (unless two candidates had identical ones).
    """
    out = []
    for row in facts:
        row = list(row)
        if len(row) < 2:
            raise ValueError("need at least two candidates per list to give each one another's facts")
        if shift % len(row) == 0:
            raise ValueError(f"shift {shift} leaves every fact in place for lists of {len(row)}")
        out.append(row[shift % len(row):] + row[:shift % len(row)])
    return out


def rerank_messages(history: Sequence[str], candidates: Sequence[str], facts: Sequence[str] | None = None,
                    system: str = SYSTEM) -> list[dict]:
    """Chat messages listing the candidates to rerank, each with its retrieved facts when given."""
    history = _checked_history(history)
    candidates = _checked_history(candidates, "candidate list")
    if len(set(candidates)) != len(candidates):
        raise ValueError("the candidate list has duplicate titles; each candidate must appear once")
    if facts is None:
        lines, head = candidates, "Candidates:"
    else:
        facts = [str(f).strip() for f in facts]
        if len(facts) != len(candidates):
            raise ValueError(f"need one fact string per candidate, got {len(facts)} for {len(candidates)} candidates")
        lines = [f"{title} ({fact})" if fact else title for title, fact in zip(candidates, facts)]
        head = "Candidates (year; genres; like a movie I watched):"
    text = (f"I watched these movies, oldest first:\n{bullet_list(history)}\n{head}\n{bullet_list(lines)}\n"
            "Which candidate will I watch next? Answer with its title.")
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def _truncate(tokenizer, text: str, n_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= n_tokens else tokenizer.decode(ids[:n_tokens]).strip()


def rerank_prompt(tokenizer, history: Sequence[str], candidates: Sequence[str], facts: Sequence[str] | None = None,
                  budget: int | None = None, system: str = SYSTEM) -> tuple[str, int]:
    """The rendered rerank prompt and the number of fact tokens kept per candidate.

    Retrieved text is the cost of RAG: every fact token goes through the model. When
    the prompt exceeds ``budget`` tokens, every candidate's facts are cut to the same
    number of tokens, the largest that fits (``-1`` in the result: facts were not cut).
    A ValueError when even the prompt without facts does not fit.
    """
    def render(fact_list):
        messages = rerank_messages(history, candidates, fact_list, system)
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text, len(tokenizer(text, add_special_tokens=False)["input_ids"])

    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0):
        raise ValueError(f"budget must be a positive number of tokens, got {budget!r}")
    text, n = render(facts)
    if budget is None or n <= budget:
        return text, -1
    bare, n_bare = render(None)
    if n_bare > budget:
        raise ValueError(f"the prompt without facts already has {n_bare} tokens, over the budget of {budget}; "
                         "list fewer candidates or history titles")
    longest = max(len(tokenizer(f, add_special_tokens=False)["input_ids"]) for f in facts)
    for keep in range(longest - 1, 0, -1):
        text, n = render([_truncate(tokenizer, f, keep) for f in facts])
        if n <= budget:
            return text, keep
    return bare, 0


def top_columns(first_scores: np.ndarray, n: int) -> np.ndarray:
    """Columns of each row's ``n`` highest first-stage scores, best first (ties: lower column first)."""
    first_scores = np.asarray(first_scores, dtype=np.float64)
    if first_scores.ndim != 2:
        raise ValueError(f"first-stage scores must be (n_users, n_candidates), got {first_scores.shape}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= first_scores.shape[1]:
        raise ValueError(f"n must be an integer from 1 to {first_scores.shape[1]}, got {n!r}")
    return np.argsort(-first_scores, axis=1, kind="stable")[:, :n]


def rerank_scores(first_scores: np.ndarray, top: np.ndarray, rerank: np.ndarray) -> np.ndarray:
    """Final scores of every candidate: the ``top`` columns in the reranker's order, all above the rest,
    which keep the first stage's order. Scores are positions (higher is better), so scales never mix.

    first_scores: (n_users, n_cand); top: (n_users, n) columns; rerank: (n_users, n) scores of those columns.
    """
    first_scores, top, rerank = (np.asarray(a, dtype=np.float64) for a in (first_scores, top, rerank))
    if top.shape != rerank.shape or top.ndim != 2 or len(top) != len(first_scores):
        raise ValueError(f"top {top.shape} and rerank {rerank.shape} must both be (n_users, n) for "
                         f"{len(first_scores)} users")
    if np.isnan(rerank).any():
        raise ValueError("rerank scores contain NaN")
    n_users, n_cand = first_scores.shape
    rows = np.arange(n_users)[:, None]
    order = np.argsort(-first_scores, axis=1, kind="stable")
    final = np.empty_like(first_scores)
    final[rows, order] = -np.arange(n_cand, dtype=np.float64)[None]       # first-stage positions
    top = top.astype(np.int64)
    inner = np.argsort(np.argsort(-rerank, axis=1, kind="stable"), axis=1)  # 0 = reranker's best
    final[rows, top] = n_cand - inner                                     # all above every other candidate
    return final


def rank_agreement(scores_a: np.ndarray, scores_b: np.ndarray) -> np.ndarray:
    """Per row, Spearman's correlation of two score lists over the same candidates (1 = same order)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"need two (n_users, n >= 2) score arrays of one shape, got {a.shape} and {b.shape}")
    return np.array([spearmanr(x, y).statistic if np.ptp(x) and np.ptp(y) else 0.0 for x, y in zip(a, b)])


# ---------------------------------------------------------------- review-grounded explanations (fashion shop)
def retrieve_reviews(query_vector: np.ndarray, review_vectors: np.ndarray, k: int = 3) -> np.ndarray:
    """Indices of the ``k`` reviews most similar to the query (unit vectors; cosine), best first."""
    review_vectors = np.asarray(review_vectors)
    if review_vectors.ndim != 2 or len(review_vectors) == 0:
        raise ValueError("there are no reviews to retrieve from")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    similarity = review_vectors @ np.asarray(query_vector).ravel()
    return np.argsort(-similarity, kind="stable")[:k]


def review_block(reviews: Sequence[str]) -> str:
    """Reviews numbered for citation: "[R1] text" per line."""
    reviews = [str(r).strip() for r in reviews]
    if not reviews or not all(reviews):
        raise ValueError("need at least one non-empty review")
    return "\n".join(f"[R{i}] {r}" for i, r in enumerate(reviews, 1))


def product_facts(item) -> str:
    """The catalogue's facts of one product row.

    >>> product_facts({"category": "Dress", "tone": "dark", "pattern": "plain", "brand": "Umber", "price": 27.99})
    'category dress; tone dark; pattern plain; brand Umber; price $27.99'
    """
    from course_utils.data.fashion_shop import NOUN

    return (f"category {NOUN.get(item['category'], item['category'])}; tone {item['tone']}; pattern {item['pattern']}; "
            f"brand {item['brand']}; price ${float(item['price']):.2f}")


def explanation_messages(title: str, reviews: Sequence[str] | None = None, facts: str | None = None,
                         system: str = EXPLAIN_SYSTEM) -> list[dict]:
    """Messages asking why a shopper may like a product: with retrieval (facts and numbered reviews) or,
    when both are None, the product's title alone (the no-retrieval condition; the same instruction)."""
    if not isinstance(title, str) or not title.strip():
        raise ValueError("the product title is empty")
    text = f"Product: {title.strip()}."
    if facts:
        text += f"\nFacts: {facts}."
    if reviews is not None:
        text += f"\nReviews:\n{review_block(reviews)}"
    return [{"role": "system", "content": system}, {"role": "user", "content": text + "\nWhy might I like it?"}]


def cited_ids(text: str) -> list[int]:
    """The review ids a text cites, in order of appearance ("[R2] ... [r 3]" -> [2, 3])."""
    if not isinstance(text, str):
        raise TypeError(f"expected the explanation as a string, got {type(text).__name__}")
    return [int(m) for m in CITATION.findall(text)]


def attribute_vocabulary() -> dict[str, dict[str, str]]:
    """For each attribute kind, every surface word the extractor knows and the shop value it names.

    Category nouns come with plurals and common synonyms ("jumper" -> pullover), tones with
    the grey-scale colour words that name them ("black" -> dark): the shop's images carry no hue.
    """
    from course_utils.data.fashion_shop import BRANDS, NOUN, PATTERNS, TONES

    synonyms = {"T-shirt": ("t-shirt", "t-shirts", "tshirt", "tee", "tees"), "trousers": ("trousers", "pants"),
                "pullover": ("pullover", "pullovers", "sweater", "jumper"), "dress": ("dress", "dresses"),
                "coat": ("coat", "coats", "jacket"), "sandals": ("sandals", "sandal"), "shirt": ("shirt", "shirts"),
                "sneakers": ("sneakers", "sneaker", "trainers"), "bag": ("bag", "bags", "handbag"),
                "ankle boots": ("ankle boots", "ankle boot", "boots", "boot")}
    category = {word: category for category, noun in NOUN.items() for word in synonyms[noun]}
    tone = {t: t for t in TONES} | {"mid tone": "mid-tone", "medium": "mid-tone", "grey": "mid-tone",
                                     "gray": "mid-tone", "black": "dark", "white": "light"}
    pattern = {p: p for p in PATTERNS} | {"texture": "textured", "patterned": "textured"}
    brand = {b.lower(): b for b in BRANDS} | {"alder": "Alder & Co"}
    return {"category": category, "tone": tone, "pattern": pattern, "brand": brand}


_PRICE = re.compile(r"\$\s?(\d+(?:\.\d{1,2})?)|(\d+(?:\.\d{1,2})?)\s?(?:dollars|usd)\b", re.IGNORECASE)


def extract_attributes(text: str, vocabulary: dict | None = None) -> dict[str, list]:
    """The attribute values a text states, per kind: category, tone, pattern, brand (shop values) and price.

    Words are matched whole and case-insensitively, longest first, so "T-shirt" is not also
    "shirt" and "ankle boots" not also "boots"; prices are "$27.99", "$28", "28 dollars".
    """
    if not isinstance(text, str):
        raise TypeError(f"expected the explanation as a string, got {type(text).__name__}")
    vocabulary = vocabulary or attribute_vocabulary()
    lowered = text.lower()
    prices = [float(a or b) for a, b in _PRICE.findall(lowered)]
    lowered = _PRICE.sub(" ", lowered)
    found = {kind: [] for kind in ATTRIBUTE_KINDS}
    words = sorted(((w, kind, v) for kind, table in vocabulary.items() for w, v in table.items()),
                   key=lambda entry: len(entry[0]), reverse=True)
    for word, kind, value in words:
        pattern = r"(?<![a-z0-9])" + re.escape(word) + r"(?![a-z0-9])"
        if re.search(pattern, lowered):
            if value not in found[kind]:
                found[kind].append(value)
            lowered = re.sub(pattern, " ", lowered)
    found["price"] = prices
    return found


def check_explanation(text: str, item, n_given: int, price_tolerance: float = 1.0) -> dict:
    """The citation check of one explanation for one product row.

    ``n_given``: how many reviews the prompt numbered ([R1]..[Rn]; 0 without retrieval).
    Returns the cited ids, how many cite a review that was not given, the stated
    attributes that are true and wrong (a price is true within ``price_tolerance``
    dollars: reviews round prices), and two verdicts: ``hallucinated`` (a wrong
    attribute or a citation of a missing review) and ``grounded`` (at least one
    attribute stated, all of them true, and no missing citation).
    """
    if isinstance(n_given, bool) or not isinstance(n_given, (int, np.integer)) or n_given < 0:
        raise ValueError(f"n_given must be a whole number of reviews >= 0, got {n_given!r}")
    for column in ("category", "tone", "pattern", "brand", "price"):
        if column not in item:
            raise ValueError(f"the product row needs a {column!r} value")
    cited = cited_ids(text)
    missing = [i for i in cited if not 1 <= i <= n_given]
    stated = extract_attributes(text)
    truth = {"category": item["category"], "tone": item["tone"], "pattern": item["pattern"], "brand": item["brand"]}
    right, wrong = [], []
    for kind, values in stated.items():
        for value in values:
            ok = abs(value - float(item["price"])) <= price_tolerance if kind == "price" else value == truth[kind]
            (right if ok else wrong).append(f"{kind}: {value:.2f}" if kind == "price" else f"{kind}: {value}")
    return {"cited": cited, "n_cited": len(cited), "missing citations": len(missing),
            "valid citations": len(cited) - len(missing), "true attributes": right, "wrong attributes": wrong,
            "n stated": len(right) + len(wrong), "hallucinated": bool(missing or wrong),
            "grounded": bool(right) and not wrong and not missing}


def check_explanations(texts: Sequence[str], items: pd.DataFrame, n_given: Sequence[int]) -> pd.DataFrame:
    """:func:`check_explanation` for every text, one row each (``items`` row i belongs to text i)."""
    texts, n_given = list(texts), list(n_given)
    if not texts or not (len(texts) == len(items) == len(n_given)):
        raise ValueError(f"need one product row and one review count per text; got {len(texts)} texts, "
                         f"{len(items)} rows, {len(n_given)} counts")
    rows = [check_explanation(t, row, n) for t, (_, row), n in zip(texts, items.iterrows(), n_given)]
    return pd.DataFrame(rows)


def named_products(text: str, matcher, brands: Sequence[str]) -> list[dict]:
    """Product names in a text ("... plain shirt by Kestrel") mapped to catalogue items by fuzzy matching.

    A name is up to four words before "by <brand>". Each entry gives the name and the
    matched item ids ([] = a product the catalogue does not have: a hallucinated item).
    """
    if not isinstance(text, str):
        raise TypeError(f"expected the explanation as a string, got {type(text).__name__}")
    names = "|".join(re.escape(b) for b in sorted(brands, key=len, reverse=True))
    if not names:
        raise ValueError("need the catalogue's brand names")
    found = []
    for match in re.finditer(r"((?:[A-Za-z-]+ ){0,3}[A-Za-z-]+) by (" + names + r")", text, re.IGNORECASE):
        words = match.group(1).split()
        # the longest tail of the words that names a catalogue title, else the whole span
        best = next((ids for n in range(len(words), 0, -1)
                     if (ids := matcher.match(" ".join(words[-n:]) + " by " + match.group(2)))), [])
        found.append({"name": match.group(0), "items": best})
    return found


def exact_paired_test(a, b) -> float:
    """Exact McNemar test (two-sided) of two paired 0/1 outcomes: a binomial test on the discordant pairs."""
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two paired 0/1 vectors of one length, got {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


# ---------------------------------------------------------------- the loops the lesson runs
def llm_rerank(model, tokenizer, histories: Sequence[Sequence[str]], candidate_titles: Sequence[Sequence[str]],
               facts: Sequence[Sequence[str]] | None = None, *, listing_seed: int = 0, budget: int | None = None,
               normalise: str = "mean", prefix=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The LLM's scores of each user's candidates, listed in the prompt (with their facts when given).

    Candidates are listed in one fixed random order per user (``listing_seed``), the same
    order for every variant, so that the prompt never reveals the first stage's order.
    Scores come from the packed KV-cache ranker (``ranking.score_candidates``).
    Returns ``(scores (n_users, n) in the input order, seconds per user, prompt tokens per user)``.
    """
    from course_utils.llm.ranking import score_candidates

    if len(histories) != len(candidate_titles) or (facts is not None and len(facts) != len(histories)):
        raise ValueError(f"need one history, candidate list (and fact list) per user; got {len(histories)}, "
                         f"{len(candidate_titles)}{'' if facts is None else f' and {len(facts)}'}")
    rng = np.random.default_rng(listing_seed)
    scores, seconds, lengths = [], [], []
    for row, (history, titles) in enumerate(zip(histories, candidate_titles)):
        shown = rng.permutation(len(titles))
        listed = [titles[j] for j in shown]
        prompt, _ = rerank_prompt(tokenizer, history, listed, None if facts is None else [facts[row][j] for j in shown],
                                  budget=budget)
        start = time.perf_counter()
        listed_scores = score_candidates(model, tokenizer, prompt, listed, normalise, method="packed", prefix=prefix)
        seconds.append(time.perf_counter() - start)
        lengths.append(len(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
        own = np.empty(len(titles))
        own[shown] = listed_scores
        scores.append(own)
    return np.array(scores), np.array(seconds), np.array(lengths)


def user_profile(shop, user: int, n_liked: int = 3, min_rating: int = 4) -> str:
    """A user's profile as text for review retrieval: the titles of their last liked purchases."""
    log = shop.interactions
    liked = log[(log["user"] == user) & (log["rating"] >= min_rating)]["item"].to_numpy()[-n_liked:]
    if len(liked) == 0:
        liked = log[log["user"] == user]["item"].to_numpy()[-n_liked:]
    if len(liked) == 0:
        raise ValueError(f"user {user} has no interactions to build a profile from")
    return "I like: " + "; ".join(shop.items["title"].iloc[liked]) + "."


def explanation_cases(shop, n_products: int, min_reviews: int = 6, seed: int = 0) -> pd.DataFrame:
    """Products to explain and the user each is recommended to, one row each.

    Products are drawn (``seed``) among those with at least ``min_reviews`` reviews; each goes to
    the user with the highest true utility for it among users who never bought it (the shop's
    ground truth acts as an oracle recommender, so the explanation is about a good recommendation).
    Columns: item, user, reviews (the product's reviews, the user's own excluded).
    """
    log = shop.interactions
    counts = log.groupby("item").size()
    pool = counts[counts >= min_reviews].index.to_numpy()
    if isinstance(n_products, bool) or not isinstance(n_products, (int, np.integer)) or not 0 < n_products <= len(pool):
        raise ValueError(f"n_products must be an integer from 1 to {len(pool)} (products with >= {min_reviews} "
                         f"reviews), got {n_products!r}")
    items = np.sort(np.random.default_rng(seed).choice(pool, size=n_products, replace=False))
    utility = shop.true_utility(None, items)                    # (n_users, n_products)
    rows = []
    for col, item in enumerate(items):
        bought = log[log["item"] == item]["user"].to_numpy()
        utility[bought, col] = -np.inf
        user = int(utility[:, col].argmax())
        rows.append({"item": int(item), "user": user,
                     "reviews": log[(log["item"] == item) & (log["user"] != user)]["review"].tolist()})
    return pd.DataFrame(rows)
