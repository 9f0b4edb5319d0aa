"""Offline evaluation beyond one headline number (lesson 19, survey Sections 5.1.1 and 5.1.3).

The metrics themselves live in ``metrics``, the protocols in ``evaluation`` and the
paired comparisons in ``claims``; this module holds what lesson 19 builds on top:

* course models trained once and cached by configuration (``fit_multvae``, ``fit_sasrec``);
* a per-user time-ordered split with several test items per user (``per_user_temporal_split``),
  and the 1-based ranks of those items (``target_ranks``), for the Recall@k normalisation pitfall;
* every pair of models compared under two protocols (``pairwise_comparisons``, ``rank_reversals``),
  and the sentence that says whether sampled metrics reversed a full-ranking order;
* the beyond-accuracy table of a set of top-k lists (``beyond_accuracy``);
* text metrics of explanations side by side, on crafted cases (``explanation_cases``, ``text_scores``);
* the benchmark datasets of the field and what each hides, and the statistics of one ratings frame.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from course_utils import metrics
from course_utils.claims import Claim, compare_models
from course_utils.data.splits import Split, _checked_ratings, _time_sorted
from course_utils.evaluation import ScoreFn, _batches, _checked_scores, ranks_of_targets

# --- course models, trained once per configuration -------------------------------------------

def _cached_fit(name: str, config: dict, model, build_net: Callable, fit: Callable, verbose: bool):
    """``model`` with its network ``net_`` from the model cache, or fitted by ``fit(model)`` and stored."""
    from course_utils.model_cache import load_or_train

    def train(net):
        fit(model)
        net.load_state_dict(model.net_.state_dict())
        result = model.fit_result_
        return {"train_seconds": result.train_seconds, "best_epoch": result.best_epoch,
                "best_valid": result.best_score}

    net, info = load_or_train(name, config, build_net, train, verbose=verbose)
    model.net_ = net.to(model.device)
    model.fit_seconds_ = float((info["train"] or {}).get("train_seconds", 0.0))
    model.cache_source_ = info["source"]
    return model


def _split_key(split: Split) -> dict:
    return {"protocol": split.protocol, "n_train": len(split.train), "n_valid": len(split.valid),
            "n_users": split.n_users, "n_items": split.n_items}


def fit_multvae(split: Split, seed: int, verbose: bool = False, **settings):
    """A Mult-VAE (lesson 02) fitted on ``split``'s training part with early stopping on validation, cached."""
    from course_utils.evaluation import validation_metric
    from course_utils.models.autoencoders import MultVAE

    model = MultVAE(seed=seed, **settings)
    n_users, n_items = split.n_users, split.n_items
    return _cached_fit("lesson19-multvae", {**_split_key(split), **settings, "seed": seed}, model,
                       lambda: model._build(n_users, n_items),
                       lambda m: m.fit(split.train_matrix(), validate=validation_metric(split)), verbose)


def fit_sasrec(split: Split, seed: int, verbose: bool = False, **settings):
    """A SASRec with full cross-entropy (lesson 03) fitted on ``split``, early-stopped on validation, cached."""
    from course_utils.models.sequential import SASRec

    model = SASRec(seed=seed, **settings)

    def build():
        model.n_items_ = split.n_items
        return model._build(split.n_items)

    return _cached_fit("lesson19-sasrec", {**_split_key(split), **settings, "seed": seed}, model, build,
                       lambda m: m.fit(split), verbose)


# --- a split with several test items per user ------------------------------------------------

def per_user_temporal_split(ratings: pd.DataFrame, test_frac: float = 0.2, valid_frac: float = 0.1,
                            min_interactions: int = 5, n_users: int | None = None,
                            n_items: int | None = None) -> Split:
    """Per user, in time order: the last ``test_frac`` of the interactions is test, the slice before validation.

    Each eligible user keeps at least one item in each part (``floor`` of the share,
    at least 1); users with fewer than ``min_interactions`` keep everything in
    training. Ties in time keep the file order, as in the course's leave-one-out split.
    """
    for name, frac in (("test_frac", test_frac), ("valid_frac", valid_frac)):
        if not 0 < frac < 1:
            raise ValueError(f"{name} must lie strictly between 0 and 1, got {frac}")
    if test_frac + valid_frac >= 1:
        raise ValueError(f"test_frac + valid_frac must be below 1, got {test_frac + valid_frac}")
    if min_interactions < 3:
        raise ValueError(f"min_interactions must be at least 3 (train, valid, test), got {min_interactions}")
    ratings, n_users, n_items = _checked_ratings(ratings, n_users, n_items, needs_time=True)
    ordered = _time_sorted(ratings)
    from_end = ordered.groupby("user").cumcount(ascending=False).to_numpy()
    size = ordered.groupby("user")["item"].transform("size").to_numpy()
    n_test = np.maximum(1, np.floor(size * test_frac)).astype(int)
    n_valid = np.maximum(1, np.floor(size * valid_frac)).astype(int)
    eligible = size >= min_interactions
    test = eligible & (from_end < n_test)
    valid = eligible & (from_end >= n_test) & (from_end < n_test + n_valid)
    train = ~(test | valid)
    parts = [ordered[m].reset_index(drop=True) for m in (train, valid, test)]
    return Split(*parts, n_users, n_items, protocol=f"user-temporal[{1 - test_frac - valid_frac:g}/"
                                                     f"{valid_frac:g}/{test_frac:g}]")


def target_ranks(score_fn: ScoreFn, split: Split, stage: str = "test", seed: int = 0,
                 batch_size: int = 256) -> np.ndarray:
    """The 1-based full-ranking positions of every held-out item, users × max targets, padded with inf.

    Rows are the users that have targets, in id order, and ties are broken by the
    same fixed random order as ``evaluation.evaluate(..., seed=seed)``, so any metric
    of ``metrics`` on these ranks equals the evaluator's per-user value.
    """
    targets, history = split.targets(stage), split.history(stage)
    users = np.flatnonzero(targets.getnnz(axis=1))
    if len(users) == 0:
        raise ValueError(f"the {stage} set is empty: nothing to rank")
    tie_order = np.random.default_rng(seed).permutation(split.n_items)
    blocks = []
    for batch in _batches(users, batch_size):
        scores = _checked_scores(score_fn, batch, history, split.n_items)
        blocks.append(ranks_of_targets(scores, targets[batch], history.matrix[batch], tie_order))
    width = max(b.shape[1] for b in blocks)
    return np.vstack([np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=np.inf) for b in blocks])


def recall_normalisations(ranks, k: int) -> pd.DataFrame:
    """Per user: Recall@k divided by |relevant| and by min(k, |relevant|), and the best the first can reach."""
    n_rel = metrics.n_relevant(ranks)
    return pd.DataFrame({f"Recall@{k} (/|rel|)": metrics.recall_at_k(ranks, k),
                         f"Recall@{k} (/min(k,|rel|))": metrics.recall_at_k_capped(ranks, k),
                         f"best possible Recall@{k} (/|rel|)": np.minimum(1.0, k / n_rel),
                         "relevant items": n_rel})


def order_flips(means_a: pd.Series, means_b: pd.Series) -> list[tuple[str, str]]:
    """Pairs of models (x, y) that ``means_a`` ranks x above y and ``means_b`` ranks y above x."""
    if not means_a.index.equals(means_b.index):
        raise ValueError("both series must index the same models in the same order")
    if len(means_a) < 2:
        raise ValueError(f"need at least 2 models to compare orders, got {len(means_a)}")
    return [(x, y) if means_a[x] > means_a[y] else (y, x)
            for x, y in itertools.combinations(means_a.index, 2)
            if (means_a[x] - means_a[y]) * (means_b[x] - means_b[y]) < 0]


# --- every pair of models, under one or two protocols ----------------------------------------

def pairwise_comparisons(per_user: dict[str, np.ndarray], metric: str, **kwargs) -> pd.DataFrame:
    """``claims.compare_models`` for every pair of models (A listed before B), one row each."""
    if len(per_user) < 2:
        raise ValueError(f"need at least 2 models to compare, got {len(per_user)}")
    rows = [compare_models(per_user[a], per_user[b], a, b, metric, **kwargs).as_row()
            for a, b in itertools.combinations(per_user, 2)]
    return pd.DataFrame(rows).set_index(["A", "B"])


def rank_reversals(full: dict[str, np.ndarray], sampled: dict[str, np.ndarray], full_metric: str,
                   sampled_metric: str, **kwargs) -> pd.DataFrame:
    """Every pair of models compared user by user under the full and the sampled protocol.

    ``reversed``: the two protocols order the pair's means differently.
    ``significant reversal``: both verdicts are significant and opposite (better vs worse).
    ``shrink``: the sampled gap as a share of the full gap, each relative to the pair's mean
    (below 0 means reversed; near 0 means the sampled protocol almost erased the difference).
    """
    if set(full) != set(sampled):
        raise ValueError(f"the two protocols must cover the same models, got {sorted(full)} and {sorted(sampled)}")
    a = pairwise_comparisons(full, full_metric, **kwargs)
    b = pairwise_comparisons({m: sampled[m] for m in full}, sampled_metric, **kwargs)
    table = pd.DataFrame({
        "full A": a[f"{full_metric} A"], "full B": a[f"{full_metric} B"], "full A - B": a["A - B"],
        "full CI low": a["CI low"], "full CI high": a["CI high"], "full p": a["p (paired t)"],
        "full verdict": a["verdict"],
        "sampled A": b[f"{sampled_metric} A"], "sampled B": b[f"{sampled_metric} B"], "sampled A - B": b["A - B"],
        "sampled CI low": b["CI low"], "sampled CI high": b["CI high"], "sampled p": b["p (paired t)"],
        "sampled verdict": b["verdict"]})
    table["reversed"] = np.sign(table["full A - B"]) * np.sign(table["sampled A - B"]) < 0
    opposite = {("better", "worse"), ("worse", "better")}
    table["significant reversal"] = [(f, s) in opposite for f, s in zip(table["full verdict"],
                                                                          table["sampled verdict"])]
    relative_full = table["full A - B"] / ((table["full A"] + table["full B"]) / 2)
    relative_sampled = table["sampled A - B"] / ((table["sampled A"] + table["sampled B"]) / 2)
    table["shrink"] = relative_sampled / relative_full.where(relative_full != 0)
    return table


def _pair_text(row, pair, full_metric: str, sampled_metric: str) -> str:
    a, b = pair
    return (f"**{a}** vs **{b}**: {full_metric} {row['full A']:.4f} against {row['full B']:.4f} "
            f"(difference {row['full A - B']:+.4f}, 95% CI {row['full CI low']:+.4f} to {row['full CI high']:+.4f}, "
            f"{row['full verdict']}), {sampled_metric} {row['sampled A']:.3f} against {row['sampled B']:.3f} "
            f"(difference {row['sampled A - B']:+.3f}, 95% CI {row['sampled CI low']:+.3f} to "
            f"{row['sampled CI high']:+.3f}, {row['sampled verdict']})")


def reversal_claim(table: pd.DataFrame, full_metric: str, sampled_metric: str) -> Claim:
    """The sentence on a ``rank_reversals`` table; case 'significant reversal', 'reversal' or 'no reversal'."""
    if table.empty:
        raise ValueError("the reversal table is empty")
    significant = table[table["significant reversal"]]
    reversed_ = table[table["reversed"]]
    if len(significant):
        pair = significant["full A - B"].abs().idxmax()
        return Claim(f"**A significant rank reversal**: {_pair_text(table.loc[pair], pair, full_metric, sampled_metric)}."
                     f" {len(significant)} of {len(table)} pairs reverse significantly, {len(reversed_)} in their means.",
                     "significant reversal")
    if len(reversed_):
        pair = reversed_["sampled A - B"].abs().idxmax()
        return Claim(f"**The sampled protocol reverses {len(reversed_)} of {len(table)} pairs in their means, but "
                     f"no reversal is significant under both protocols.** The largest: "
                     f"{_pair_text(table.loc[pair], pair, full_metric, sampled_metric)}.", "reversal")
    pair = table["shrink"].abs().idxmin()
    return Claim(f"**No rank reversal on this data**: the sampled protocol keeps the order of all {len(table)} pairs. "
                 f"The closest call, where sampling shrank the relative gap most (to {table.loc[pair, 'shrink']:.0%} of "
                 f"its full-ranking size): {_pair_text(table.loc[pair], pair, full_metric, sampled_metric)}.",
                 "no reversal")


# --- beyond accuracy ------------------------------------------------------------------------

def beyond_accuracy(lists: dict[str, np.ndarray], *, relevant, profiles, item_counts,
                    item_vectors: dict[str, np.ndarray], expected_items: np.ndarray,
                    head_share: float = 0.2) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The beyond-accuracy measures of each model's top-k lists (users × k, every user in id order).

    Returns a table (one row per model: catalogue coverage and exposure Gini over all
    lists, the mean of every per-user measure) and, per model, the per-user values
    (for paired intervals). ``item_vectors`` names the item representations for
    intra-list diversity (e.g. {"genres": ..., "MiniLM": ...}); ``expected_items`` are
    the primitive recommender's lists that define an *unexpected* item for serendipity.
    """
    if not lists:
        raise ValueError("no lists to measure: pass at least one model's top-k lists")
    counts = np.asarray(item_counts, np.float64)
    n_users = profiles.shape[0]
    user_share = np.asarray((profiles > 0).sum(axis=0)).ravel() / n_users  # p(i) for novelty: share of users
    rows, per_user = {}, {}
    for name, top in lists.items():
        values = {f"ILD ({kind})": metrics.intra_list_diversity(top, vectors) for kind, vectors in item_vectors.items()}
        values.update({"novelty (bits)": metrics.novelty(top, user_share),
                       "serendipity": metrics.serendipity(top, relevant, expected_items),
                       "ARP": metrics.average_recommended_popularity(top, counts),
                       "long-tail share": metrics.long_tail_share(top, counts, head_share),
                       "popularity lift": metrics.popularity_lift(top, profiles, counts)})
        per_user[name] = pd.DataFrame(values)
        rows[name] = {"coverage": metrics.catalog_coverage(top, len(counts)),
                      "exposure Gini": metrics.exposure_gini(top, len(counts)), **per_user[name].mean().to_dict()}
    return pd.DataFrame(rows).T, per_user


# --- text metrics of explanations ---------------------------------------------------------

GENRE_WORDS = {  # a paraphrase names the genre without its label
    "Action": "full of fights and chases", "Adventure": "about a daring journey", "Animation": "drawn or animated",
    "Children's": "made for kids", "Comedy": "funny", "Crime": "about criminals and heists",
    "Documentary": "about real events", "Drama": "serious and character-driven", "Fantasy": "magical",
    "Film-Noir": "dark, shadowy detective", "Horror": "frightening", "Musical": "full of songs",
    "Mystery": "puzzle-like whodunit", "Romance": "about falling in love", "Sci-Fi": "set in a futuristic world",
    "Thriller": "suspenseful", "War": "set on the battlefield", "Western": "set on the American frontier"}


def _a(word: str) -> str:
    return f"{'an' if word[0].lower() in 'aeiou' else 'a'} {word}"


def explanation_cases(items: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """Crafted explanations for ``n`` movies: a reference, a fluent WRONG one, a correct paraphrase.

    ``items`` needs ``title`` and ``genres`` (a list per movie). The reference says why
    the movie fits by its true first genre; the wrong one is the same sentence with a
    genre the movie does not have (one word changed, twice); the paraphrase says the
    same as the reference in other words, naming the genre by a description instead
    of its label. Movies are drawn at random (fixed ``seed``) among those with a genre
    in ``GENRE_WORDS``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    missing = {"title", "genres"} - set(items.columns)
    if missing:
        raise ValueError(f"items lacks the columns {sorted(missing)}")
    usable = items[[any(g in GENRE_WORDS for g in gs) for gs in items["genres"]]]
    if len(usable) < n:
        raise ValueError(f"asked for {n} cases but only {len(usable)} movies have a known genre")
    rng = np.random.default_rng(seed)
    chosen = usable.iloc[np.sort(rng.choice(len(usable), size=n, replace=False))]
    labels = sorted(GENRE_WORDS)
    rows = []
    for title, genres in zip(chosen["title"], chosen["genres"]):
        true = next(g for g in genres if g in GENRE_WORDS)
        wrong = str(rng.choice([g for g in labels if g not in genres]))
        rows.append({"title": title, "genres": list(genres), "genre": true, "wrong genre": wrong,
                     "reference": f"We recommend {title} because it is {_a(true)} movie, and you enjoy {true} films.",
                     "fluent but wrong": f"We recommend {title} because it is {_a(wrong)} movie, and you enjoy "
                                         f"{wrong} films.",
                     "correct paraphrase": f"Since you like movies that are {GENRE_WORDS[true]}, {title} should "
                                           "suit your taste."})
    return pd.DataFrame(rows)


def sentence_bleu_scores(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """BLEU (0-100) of each hypothesis against its own reference (``text_metrics.bleu`` on one pair)."""
    from course_utils.text_metrics import _check_pairs, bleu

    hypotheses, references = _check_pairs(hypotheses, references)
    return np.array([bleu([h], [r]) for h, r in zip(hypotheses, references)])


def embedding_similarity(hypotheses: Sequence[str], references: Sequence[str], encoder,
                         model_name: str) -> np.ndarray:
    """Cosine similarity of each hypothesis and its reference under a sentence encoder (BERTScore-like)."""
    from course_utils.llm.documents import encode_texts
    from course_utils.text_metrics import _check_pairs

    hypotheses, references = _check_pairs(hypotheses, references)
    vectors = np.asarray(encode_texts(list(hypotheses) + list(references), encoder, model_name, verbose=False),
                         np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    n = len(hypotheses)
    return (vectors[:n] * vectors[n:]).sum(axis=1)


def perplexity(texts: Sequence[str], model, tokenizer, prompt: str = "Why this movie:") -> np.ndarray:
    """Per-token perplexity of each text under a causal LLM, given a short ``prompt``: exp(-mean log p)."""
    from course_utils.hub import sequence_log_likelihood

    texts = list(texts)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("texts must be a non-empty list of non-empty strings")
    mean_logp = sequence_log_likelihood(model, tokenizer, prompt, [" " + t.strip() for t in texts], average=True)
    return np.exp(-mean_logp)


# --- the field's benchmark datasets ---------------------------------------------------------

BENCHMARKS = [
    ("MovieLens (100K, 1M, 20M, 25M)", "Harper & Konstan 2015", "explicit 1–5 stars, usually binarised",
     "ratings given in bursts at sign-up (many share a second), so time order is partly a session artefact; "
     "a rating is not a watch; strong popularity skew; 100K and 1M keep only users with 20+ ratings"),
    ("Amazon Reviews (2014, 2018, 2023)", "McAuley et al. 2015; Hou et al. 2024", "reviews with 1–5 stars",
     "a review is not a purchase; extremely sparse, so papers filter to 5-core and change the data; "
     "product text makes LLM pre-training leakage likely"),
    ("Yelp Open Dataset", "Yelp Dataset Challenge", "reviews with stars, check-ins",
     "geography dominates; a public subset of businesses and cities; versions change every year"),
    ("Last.fm (1K, 360K; HetRec 2011)", "Celma 2010; Cantador et al. 2011", "implicit play counts",
     "repeat consumption (the same artist again) inflates accuracy; play counts, not preferences"),
    ("Book-Crossing", "Ziegler et al. 2005", "explicit 1–10 and implicit 0",
     "most interactions are implicit zeros; noisy ISBNs and duplicate books"),
    ("Steam", "Kang & McAuley 2018; Pathak et al. 2017", "purchases, play time, reviews",
     "bundles and free games; long sessions; play time is censored"),
    ("MIND (news)", "Wu et al. 2020", "impression logs: clicks and skips",
     "items live for hours (cold start everywhere); the logged policy chose what users saw"),
    ("ReDial, INSPIRED (dialogues)", "Li et al. 2018; Hayati et al. 2020", "crowd-sourced conversations",
     "workers role-played seekers and recommenders; few movies dominate; no real outcomes"),
]


def benchmark_markdown() -> str:
    """The benchmark table as Markdown: dataset, source, feedback, and what it hides."""
    lines = ["| dataset | source | feedback | what it hides |", "|---|---|---|---|"]
    lines += [f"| {name} | {source} | {feedback} | {hides} |" for name, source, feedback, hides in BENCHMARKS]
    return "\n".join(lines)


def dataset_statistics(ratings: pd.DataFrame, n_users: int | None = None, n_items: int | None = None,
                       top_share: float = 0.1) -> dict[str, float]:
    """Size, density and popularity skew of a ratings frame (columns user, item[, timestamp]).

    ``Gini of item popularity`` is over every item of the catalogue (items without
    interactions count as zero), ``top items' share`` is the share of interactions
    that fall on the ``top_share`` most popular items.
    """
    if not 0 < top_share < 1:
        raise ValueError(f"top_share must lie strictly between 0 and 1, got {top_share}")
    ratings, n_users, n_items = _checked_ratings(ratings, n_users, n_items, needs_time=False)
    counts = np.bincount(ratings["item"].to_numpy(), minlength=n_items).astype(float)
    n_top = max(1, int(math.ceil(top_share * n_items)))
    per_user = ratings.groupby("user").size()
    stats = {"users": float(ratings["user"].nunique()), "items": float(n_items), "interactions": float(len(ratings)),
             "density": len(ratings) / (n_users * n_items), "Gini of item popularity": metrics.gini(counts),
             f"top {top_share:.0%} items' share of interactions": float(np.sort(counts)[::-1][:n_top].sum()
                                                                         / counts.sum()),
             "median interactions per user": float(per_user.median()),
             "min interactions per user": float(per_user.min())}
    if "timestamp" in ratings.columns:
        gaps = _time_sorted(ratings).groupby("user")["timestamp"].diff().dropna()
        stats["consecutive ratings in the same second"] = float((gaps == 0).mean())
    return stats
