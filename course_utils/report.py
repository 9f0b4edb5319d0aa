"""The holistic report (lesson 25, survey Sections 5.5 and 6): one table of every course model, HELM style.

HELM (Liang et al., 2022) evaluates many models on many scenarios with many
metrics and summarises them by a *mean win rate*. Here the scenarios are the
course leaderboard's protocols, sorted into six dimensions by the protocol's prefix:

=================  =====================================================================
dimension          rows in the log
=================  =====================================================================
accuracy           every protocol without one of the prefixes below (the lesson's own metric)
beyond-accuracy    ``"beyond-accuracy: ..."`` (coverage, exposure Gini, novelty, ...)
efficiency         ``"serving cost, 2-core CPU, ..."`` (lesson 20: latency, train CPU s, CO2e)
fairness           ``"fairness: ..."``
privacy            ``"privacy: ..."``
robustness         ``"robustness: ..."``
=================  =====================================================================

The pipeline, one function per step:

1. :func:`read_board` -- the log, seeds averaged, one row per (model, dataset, protocol,
   mode) kept from the lesson that owns the model (``results.owner_rows``).
2. :func:`long_table` -- one row per (model, dimension, measure) with its CI where the
   log has ``"<metric> CI low"`` / ``"<metric> CI high"`` siblings, full-mode rows preferred
   over FAST ones (the mode each number came from is kept, never mixed silently).
3. :func:`holistic_matrix` -- models x measures, for the models that share the course
   protocol on MovieLens-100K; :func:`normalise` maps each measure to [0, 1] with 1 best,
   direction-aware (lower latency, Gini, gap or attack success is better).
4. :func:`win_rates` -- HELM's mean win rate over the dimensions a model was measured on.

A missing measurement is NaN ("not measured"), never zero. :data:`MODELS` is the
registry of the course's models, so :func:`coverage` can show which dimensions each
has in the current log. :func:`recompute_minimal` refits a small set of models (for
a fresh clone with an empty log); :func:`merge_recomputed` adds its rows where the
log has nothing for that model and dimension (the log wins).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from course_utils import results
from course_utils.claims import Claim, paired_bootstrap_ci

DIMENSIONS = ("accuracy", "beyond-accuracy", "efficiency", "fairness", "privacy", "robustness")
PREFIXES = {"beyond-accuracy": "beyond-accuracy:", "efficiency": "serving cost, 2-core CPU",
            "fairness": "fairness:", "privacy": "privacy:", "robustness": "robustness:"}
BEYOND_PROTOCOL = "beyond-accuracy: loo-time[file], top-10"
FAIRNESS_PROTOCOL = "fairness: user groups, loo-time[file]"  # lesson 23's protocol
EFFICIENCY_PROTOCOL = "serving cost, 2-core CPU, recomputed in lesson 25"
ACCURACY = ("ml-100k", "loo-time[file]", "NDCG@10")  # the course protocol every ML-100K lesson shares
# The headline metric of a protocol without NDCG@10, in this order of preference.
HEADLINES = ("NDCG@10", "success rate", "AUC", "utility@10", "true utility@10", "Recall@10", "category_acc",
             "BLEU", "lift", "agreement", "utility")
SIBLING_SUFFIXES = (" CI low", " CI high", " p", " sd")
RECOMPUTED = "recomputed here"


def dimension_of(protocol: str) -> str:
    """The dimension a protocol belongs to, by its prefix; anything else is accuracy."""
    if not isinstance(protocol, str) or not protocol:
        raise ValueError(f"protocol must be a non-empty string, got {protocol!r}")
    for dimension, prefix in PREFIXES.items():
        if protocol.startswith(prefix):
            return dimension
    return "accuracy"


def metric_direction(name: str) -> str | None:
    """Which way a metric is better: "higher", "lower", "zero" (|value| lower) or "half" (|value - 0.5| lower).

    A group gap is better near 0 whatever its sign; an attacker's target rank shift
    (places climbed) is better low; a membership-inference AUC is better near 0.5.

    None for a metric the report does not rank (a p-value, a CI bound, a count).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"metric name must be a non-empty string, got {name!r}")
    low = name.lower()
    if name.endswith(SIBLING_SUFFIXES) or low in {"p", "n", "params"} or low.startswith(("n ", "users needed")) \
            or low.endswith((" before", " texts", " cases", " pairs", " users")) or "exposure share" in low:
        # an interval bound, a test, a count, the reference value before an attack, or a share whose
        # good value depends on the catalogue (a provider's exposure share against its item share)
        return None
    if "rank shift" in low:
        return "lower"  # places the attacker's target climbed: the attack's success (a drop is a failed attack)
    if "gap" in low or low == "popularity lift":
        return "zero"
    if "membership auc" in low or "attack auc" in low:
        return "half"  # 0.5 = the attacker guesses; further from 0.5 either way leaks membership
    words = low.replace("(", " ").replace(")", " ").split()
    lower_words = {"ms", "mb", "asr", "arp", "snsr", "snsv"}  # SNSR/SNSV: FaiRLLM's spread over attribute values
    lower_parts = ("seconds", "cpu s", "flop", "co2", "gini", "latency", "attack success", "hallucination",
                   "target hr", "hit rate of the target", "train_seconds", "false-positive", "false positive")
    if lower_words & set(words) or any(part in low for part in lower_parts):
        return "lower"
    return "higher"


@dataclass(frozen=True)
class Measure:
    """One column of the holistic matrix: a metric of a dimension, with its direction."""

    dimension: str
    metric: str
    direction: str
    protocol: str = ""  # "" = any protocol of the dimension (the metric name is unique enough)

    @property
    def label(self) -> str:
        return f"{self.dimension}: {self.metric}"


# The fixed columns; fairness, privacy and robustness columns come from whatever the log holds.
CORE_MEASURES = (
    Measure("accuracy", "NDCG@10", "higher", "loo-time[file]"),
    Measure("beyond-accuracy", "coverage", "higher"),
    Measure("beyond-accuracy", "novelty (bits)", "higher"),
    Measure("beyond-accuracy", "exposure Gini", "lower"),
    Measure("beyond-accuracy", "long-tail share", "higher"),
    Measure("efficiency", "p50 ms (1 user)", "lower"),
    Measure("efficiency", "train CPU s", "lower"),
    Measure("efficiency", "MFLOP per user", "lower"),
    Measure("efficiency", "g CO2e per 1M users served", "lower"),
)


# --- the registry of course models ---------------------------------------------------------------

# (name as logged, owner lesson, dataset, task): the first lesson, in course order, that logs it.
# A "*" in a name stands for a setting the lesson chooses when it runs (e.g. a guidance scale).
MODELS = (
    ("Popularity", "01", "ml-100k", "top-N, leave-last-out"), ("ItemKNN", "01", "ml-100k", "top-N, leave-last-out"),
    ("EASE", "01", "ml-100k", "top-N, leave-last-out"), ("BPR-MF", "01", "ml-100k", "top-N, leave-last-out"),
    ("U-AutoRec", "02", "ml-100k", "top-N, leave-last-out"), ("I-AutoRec", "02", "ml-100k", "top-N, leave-last-out"),
    ("Mult-DAE", "02", "ml-100k", "top-N, leave-last-out"), ("Mult-VAE", "02", "ml-100k", "top-N, leave-last-out"),
    ("Masked-item DAE", "02", "ml-100k", "top-N, leave-last-out"), ("ListCVAE", "02", "ml-100k", "slates"),
    ("GRU4Rec", "03", "ml-100k", "next item"), ("SASRec-CE", "03", "ml-100k", "next item"),
    ("SASRec-BCE", "03", "ml-100k", "next item"), ("BERT4Rec", "03", "ml-100k", "next item"),
    ("Markov chain", "03", "ml-100k", "next item"), ("Session-kNN", "03", "ml-100k", "next item"),
    ("IRGAN", "04", "ml-100k", "top-N, adversarial"), ("MF-BPR (uniform negatives)", "04", "ml-100k", "top-N"),
    ("MF-BPR (pre-training only)", "04", "ml-100k", "top-N"), ("DiffRec", "05", "ml-100k", "top-N, diffusion"),
    ("DiffRec, no diffusion noise (dropout only)", "05", "ml-100k", "ablation of DiffRec"),
    ("Mult-VAE (β≤0.2)", "05", "ml-100k", "top-N"), ("GFN4Rec (chosen on validation)", "06", "ml-100k", "lists"),
    ("MMR re-ranked EASE (λ=*)", "06", "ml-100k", "diversified lists"),  # λ chosen on validation
    ("MeanFusion (MiniLM, n_recent=*)", "07", "ml-100k", "dense retrieval"),  # n chosen on validation
    ("LearnedFusion (MiniLM, attention)", "07", "ml-100k", "dense retrieval"),
    ("LearnedFusion (mean pooling)", "07", "ml-100k", "dense retrieval ablation"),
    ("TextHistory (MiniLM, last 10 titles)", "07", "ml-100k", "dense retrieval, 60 users"),
    ("EASE (first stage)", "08", "ml-100k", "first stage"), ("EASE → cross-encoder", "08", "ml-100k", "reranking"),
    ("Dense (first stage)", "08", "ml-100k", "first stage"), ("Dense → cross-encoder", "08", "ml-100k", "reranking"),
    ("LLM ranker (smollm2-135m, sum log-prob)", "09", "ml-100k", "LLM ranking of 20 candidates"),
    ("SASRec", "09", "ml-100k", "20 candidates / next item"), ("random order", "09", "ml-100k", "20 candidates"),
    ("zero-shot", "10", "ml-100k", "LLM yes/no"), ("LoRA, * examples", "10", "ml-100k", "LLM yes/no"),  # 4, 8 / 16, 64, 256
    ("soft prompt, * examples", "10", "ml-100k", "LLM yes/no"),  # 4 examples FAST, 64 full
    ("item mean rating", "10", "ml-100k", "yes/no baseline"), ("user + item bias", "10", "ml-100k", "yes/no baseline"),
    ("EASE alone", "11", "ml-100k", "20 candidates"), ("dense MiniLM alone", "11", "ml-100k", "20 candidates"),
    ("EASE -> smollm2-135m rerank (facts)", "11", "ml-100k", "RAG rerank"),
    ("EASE -> smollm2-135m rerank (no facts)", "11", "ml-100k", "RAG rerank"),
    ("EASE -> smollm2-135m rerank (shuffled facts)", "11", "ml-100k", "RAG rerank"),
    ("EASE -> similarity fact (MiniLM, no LLM)", "11", "ml-100k", "RAG rerank"),
    ("dense MiniLM -> smollm2-135m rerank (facts)", "11", "ml-100k", "RAG rerank"),
    ("dense MiniLM -> smollm2-135m rerank (no facts)", "11", "ml-100k", "RAG rerank"),
    ("dense MiniLM -> smollm2-135m rerank (shuffled facts)", "11", "ml-100k", "RAG rerank"),
    ("dense MiniLM -> similarity fact (MiniLM, no LLM)", "11", "ml-100k", "RAG rerank"),
    ("smollm2-135m explanation, title only, free decoding", "11", "fashion-shop", "explanations"),
    ("smollm2-135m explanation, title only, templated decoding", "11", "fashion-shop", "explanations"),
    ("smollm2-135m explanation, with retrieval, free decoding", "11", "fashion-shop", "explanations"),
    ("smollm2-135m explanation, with retrieval, templated decoding", "11", "fashion-shop", "explanations"),
    ("TextInitSASRec (MiniLM, W·t + r)", "12", "ml-100k", "next item"),
    ("RandomProjSASRec (control: random vectors, W·t + r)", "12", "ml-100k", "next item"),
    ("TIGER (RQ-VAE 3x64 + T5, beam *)", "12", "ml-100k", "generative retrieval"),  # beam 10 FAST, 20 full
    ("SASRec (TIGER's users)", "12", "ml-100k", "next item, TIGER's users"),
    ("GPT4Rec query + BM25", "12", "ml-100k", "query generation"), ("GPT4Rec query + dense", "12", "ml-100k",
                                                                    "query generation"),
    ("raw history + BM25", "12", "ml-100k", "query baseline"), ("raw history + dense", "12", "ml-100k",
                                                                "query baseline"),
    ("ConvRec: full", "13", "fashion-shop", "conversational"), ("ConvRec: one-shot", "13", "fashion-shop",
                                                                  "conversational"),
    ("ConvRec: no critiquing", "13", "fashion-shop", "conversational"),
    ("ConvRec: no elicitation", "13", "fashion-shop", "conversational"),
    ("ConvRec: LLM manager", "13", "fashion-shop", "conversational"),
    ("Popularity", "14", "fashion-shop", "cold-start items"), ("ItemKNN", "14", "fashion-shop", "cold-start items"),
    ("EASE", "14", "fashion-shop", "cold-start items"),
    ("fashion-lit image profile", "14", "fashion-shop", "cold-start items"),
    ("raw-pixel profile", "14", "fashion-shop", "cold-start items"),
    ("CLIP-style (ITC only)", "15", "fashion-shop", "cold products"), ("ALBEF towers", "15", "fashion-shop",
                                                                      "cold products"),
    ("ALBEF fused", "15", "fashion-shop", "cold products"), ("Category popularity", "15", "fashion-shop",
                                                             "cold products"),
    ("Mult-VAE (interactions only)", "16", "fashion-shop", "cold items"),
    ("Multimodal Mult-VAE (PoE, InfoNCE λ=30)", "16", "fashion-shop", "cold items"),
    ("Multimodal Mult-VAE (PoE, no InfoNCE)", "16", "fashion-shop", "cold items"),
    ("Image-only Mult-VAE", "16", "fashion-shop", "cold items"), ("Text-only Mult-VAE", "16", "fashion-shop",
                                                                 "cold items"),
    ("MiniLM profile", "16", "fashion-shop", "cold items"),
    ("Conditional UNet + CFG (w=*)", "17", "fashion-shop", "image generation"),  # w chosen on a sweep
    ("Personalised generation (EASE profile)", "17", "fashion-shop", "personalised generation"),
    ("LLaVA-style connector (linear)", "18", "fashion-shop", "captioning"),
    ("LLaVA-style connector (mlp)", "18", "fashion-shop", "captioning"),
    ("LLaVA-style connector (mlp, blank image)", "18", "fashion-shop", "captioning control"),
    ("LLaVA-style connector (mlp, shuffled image)", "18", "fashion-shop", "captioning control"),
    ("LLaVA-style connector (mlp, category word first)", "18", "fashion-shop", "captioning"),
    ("LLaVA-style connector (mlp, stage 0 only)", "18", "fashion-shop", "captioning"),
    ("Dense retriever (MiniLM)", "19", "ml-100k", "top-N, text"), ("GFN4Rec", "20", "ml-100k", "lists (cost)"),
    ("MiniLM text retriever", "20", "ml-100k", "dense retrieval (cost)"),
    ("EASE (λ=100) vs EASE (λ=10)", "21", "fashion-shop", "A/B test, interleaving"),
    ("EASE (λ=100), greedy", "21", "fashion-shop", "feedback loop"),
    ("EASE (λ=100), explore (ε = 0.1)", "21", "fashion-shop", "feedback loop"),
    ("smollm2-135m persona users", "21", "fashion-shop", "LLM user simulator"),
    ("smollm2-135m judge", "22", "fashion-shop", "LLM-as-judge"),
    ("LLM ranker (smollm2-135m, mean log-prob)", "23", "ml-100k", "LLM ranking: FaiRLLM probe, prompt injection"),
    ("free generation (smollm2-135m)", "24", "ml-100k", "prompt injection, free generation"),
    ("injection detector (rules)", "24", "ml-100k", "injection detection"),
    ("injection detector (learned (MiniLM + logistic regression))", "24", "ml-100k", "injection detection"),
)


def _pattern(name: str):
    import re

    return re.compile(".*".join(re.escape(part) for part in name.split("*")) + r"\Z")


def name_fits(name: str, model: str) -> bool:
    """Whether ``model`` is ``name``, or fits it where ``name`` holds "*" (any text)."""
    return name == model or ("*" in name and _pattern(name).match(model) is not None)


def registered_name(model: str, dataset: str | None = None) -> str | None:
    """The registry name ``model`` is logged under (exact, or matching a "*" entry), else None."""
    for name, _, data, _ in MODELS:
        if (dataset is None or data == dataset) and name_fits(name, model):
            return name
    return None


def registry() -> pd.DataFrame:
    """:data:`MODELS` as a frame: model, lesson (the owner), dataset, task."""
    return pd.DataFrame(MODELS, columns=["model", "lesson", "dataset", "task"])


# --- 1. reading the log --------------------------------------------------------------------------

def read_board(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The log, seeds averaged, one row per (model, dataset, protocol, mode) from the owner lesson.

    Adds ``dimension`` (from the protocol) and ``source`` ("log"). An empty or missing log
    gives an empty frame with those columns.
    """
    frame = results.load_results(path)
    if frame.empty:
        return pd.DataFrame(columns=[*results.OWNER_KEY, "lesson", "dimension", "source"])
    owners, _ = results.owner_rows(results.aggregate_seeds(frame))
    owners = owners.reset_index(drop=True)
    owners["dimension"] = [dimension_of(p) for p in owners["protocol"]]
    owners["source"] = "log"
    return owners


def board_from_rows(rows: list[dict]) -> pd.DataFrame:
    """Rows built here (e.g. by :func:`recompute_minimal`) in :func:`read_board`'s shape."""
    if not rows:
        return pd.DataFrame(columns=[*results.OWNER_KEY, "lesson", "dimension", "source"])
    frame = pd.DataFrame(rows)
    missing = [c for c in (*results.OWNER_KEY, "lesson") if c not in frame.columns]
    if missing:
        raise ValueError(f"recomputed rows need the columns {missing}")
    frame["dimension"] = [dimension_of(p) for p in frame["protocol"]]
    frame["source"] = RECOMPUTED
    return frame


def merge_recomputed(board: pd.DataFrame, recomputed: pd.DataFrame) -> pd.DataFrame:
    """The log's rows plus the recomputed rows of every (model, dimension) the log has no row for."""
    if recomputed.empty:
        return board.reset_index(drop=True)
    if board.empty:
        return recomputed.reset_index(drop=True)
    have = set(zip(board["model"], board["dimension"]))
    keep = [(m, d) not in have for m, d in zip(recomputed["model"], recomputed["dimension"])]
    return pd.concat([board, recomputed[keep]], ignore_index=True)


# --- 2. one row per measurement ------------------------------------------------------------------

def headline_metric(row: pd.Series) -> str | None:
    """The metric that stands for an accuracy row: NDCG@10 if logged, else the first of HEADLINES, else any."""
    for name in HEADLINES:
        if _finite(row.get(name)):
            return name
    for name, value in row.items():
        if name not in results.RESERVED and name not in {"dimension", "source", "also logged by"} \
                and metric_direction(str(name)) and _finite(value):
            return str(name)
    return None


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


def _measures_of(row: pd.Series) -> list[str]:
    if row["dimension"] == "accuracy":
        name = headline_metric(row)
        return [name] if name else []
    names = [str(n) for n, v in row.items() if n not in results.RESERVED and n not in {"dimension", "source"}
             and _finite(v) and metric_direction(str(n))]
    if row["dimension"] == "efficiency" and _finite(row.get("train_seconds")):
        names.append("train CPU s")
    return names


def long_table(board: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, dimension, dataset, protocol, measure): value, CI, mode, lesson, source.

    Full-mode rows win over FAST rows of the same (model, dataset, protocol); the
    ``mode`` column says which one each number came from.
    """
    columns = ["model", "dimension", "dataset", "protocol", "measure", "value", "CI low", "CI high", "direction",
               "mode", "lesson", "source"]
    if board.empty:
        return pd.DataFrame(columns=columns)
    rank = board["mode"].map({"full": 0, "FAST": 1}).fillna(2)
    chosen = board.assign(_rank=rank).sort_values("_rank", kind="stable")
    chosen = chosen.drop_duplicates(["model", "dataset", "protocol"], keep="first").drop(columns="_rank")
    out = []
    for _, row in chosen.iterrows():
        for name in _measures_of(row):
            value = row["train_seconds"] if name == "train CPU s" else row[name]
            out.append({"model": row["model"], "dimension": row["dimension"], "dataset": row["dataset"],
                        "protocol": row["protocol"], "measure": name, "value": float(value),
                        "CI low": _sibling(row, name, " CI low"), "CI high": _sibling(row, name, " CI high"),
                        "direction": metric_direction(name) or "higher", "mode": row["mode"],
                        "lesson": str(row["lesson"]), "source": row.get("source", "log")})
    return pd.DataFrame(out, columns=columns)


def _sibling(row: pd.Series, name: str, suffix: str) -> float:
    """``"<metric> CI low"``; for an "X gap (A - B)" metric also ``"X gap CI low"``-style names."""
    for key in (name + suffix, name.split(" (")[0] + suffix):
        if _finite(row.get(key)):
            return float(row[key])
    return float("nan")


# --- 3. the matrix, normalised -------------------------------------------------------------------

def measures_in(long: pd.DataFrame) -> list[Measure]:
    """The core measures plus every fairness/privacy/robustness measure the long table holds."""
    found = list(CORE_MEASURES)
    if long.empty:
        return found
    harms = long[long["dimension"].isin(["fairness", "privacy", "robustness"])]
    core = {m.metric for m in CORE_MEASURES}   # lesson 23 logs exposure Gini and long-tail share as fairness too:
    for (dimension, measure), group in harms.groupby(["dimension", "measure"], sort=True):
        if measure not in core:              # one column each, or the win rate would count them twice
            found.append(Measure(dimension, measure, group["direction"].iloc[0]))
    return found


def pick_rows(long: pd.DataFrame, measure: Measure, dataset: str = ACCURACY[0]) -> pd.DataFrame:
    """The one row per model that stands for ``measure`` in the holistic table (index: model).

    Full-mode rows win over FAST ones. When a model has the measure under several
    protocols (lesson 23's three shilling attacks, two fairness probes), the *worst*
    value by the measure's direction is kept, as HELM reports robustness as the
    worst case over perturbations; its protocol is in the row.
    """
    if long.empty:
        return long.set_index("model")
    rows = long[(long["dataset"] == dataset) & (long["dimension"] == measure.dimension)
                & (long["measure"] == measure.metric)]
    if measure.protocol:
        rows = rows[rows["protocol"] == measure.protocol]
    if rows.empty:
        return rows.set_index("model")
    rows = rows.assign(_mode=rows["mode"].map({"full": 0, "FAST": 1}).fillna(2),
                       _good=_goodness(rows["value"], measure.direction))
    rows = rows.sort_values(["model", "_mode", "_good"], kind="stable")   # best mode first, then worst value
    return rows.drop_duplicates("model").drop(columns=["_mode", "_good"]).set_index("model")


def holistic_matrix(long: pd.DataFrame, dataset: str = ACCURACY[0], min_dimensions: int = 2
                    ) -> tuple[pd.DataFrame, list[Measure], pd.DataFrame]:
    """Models x measures on one dataset (values; NaN = not measured), the measures used, and each cell's mode.

    Only models measured on at least ``min_dimensions`` dimensions enter (a holistic
    comparison needs more than one). Each cell is :func:`pick_rows`' row: full mode
    before FAST, the worst value when several protocols measured the same thing.
    """
    measures = measures_in(long)
    values, modes = {}, {}
    for m in measures:
        rows = pick_rows(long, m, dataset)
        values[m.label] = rows["value"] if len(rows) else pd.Series(dtype=float)
        modes[m.label] = rows["mode"] if len(rows) else pd.Series(dtype=object)
    labels = [m.label for m in measures]
    matrix = pd.DataFrame(values, columns=labels).astype(float)
    mode = pd.DataFrame(modes, columns=labels).reindex(matrix.index)
    n_dims = pd.DataFrame({d: matrix[[m.label for m in measures if m.dimension == d]].notna().any(axis=1)
                           for d in DIMENSIONS}).sum(axis=1) if len(matrix) else pd.Series(dtype=int)
    keep = n_dims[n_dims >= min_dimensions].index
    matrix, mode = matrix.loc[keep], mode.loc[keep]
    used = [m for m in measures if matrix[m.label].notna().any()]
    cols = [m.label for m in used]
    return matrix[cols].sort_index(), used, mode[cols].sort_index()


def _goodness(values: pd.Series, direction: str) -> pd.Series:
    """Higher is better after this: the sign flips for "lower", distance to 0 or 0.5 for "zero"/"half"."""
    if direction == "higher":
        return values
    if direction == "lower":
        return -values
    if direction == "zero":
        return -values.abs()
    if direction == "half":
        return -(values - 0.5).abs()
    raise ValueError(f"direction must be 'higher', 'lower', 'zero' or 'half', got {direction!r}")


def normalise(matrix: pd.DataFrame, measures: list[Measure]) -> pd.DataFrame:
    """Each column mapped to [0, 1], 1 = best model on that measure (min-max, direction-aware).

    A column where every measured model ties gets 1.0; NaN (not measured) stays NaN.
    """
    out = pd.DataFrame(index=matrix.index)
    for m in measures:
        good = _goodness(matrix[m.label], m.direction)
        span = good.max() - good.min()
        out[m.label] = (good - good.min()) / span if span > 0 else good.where(good.isna(), 1.0)
    return out


def win_rates(matrix: pd.DataFrame, measures: list[Measure]) -> pd.DataFrame:
    """HELM's mean win rate: per measure, the share of the other measured models a model beats.

    Ties count half. A dimension's win rate is the mean over its measures the model has;
    ``mean win rate`` is the mean over the dimensions it was measured on, and
    ``dimensions`` says on how many dimensions the model was measured (a model measured
    on one dimension is not comparable with one measured on five: read the two columns
    together). A model alone on a measure has nobody to beat there: no win rate for it.
    """
    by_dimension: dict[str, list[pd.Series]] = {}
    for m in measures:
        good = _goodness(matrix[m.label], m.direction).dropna()
        if len(good) < 2:
            continue  # nobody to beat
        values = good.to_numpy()
        wins = ((values[:, None] > values[None, :]).sum(axis=1) + 0.5 * ((values[:, None] == values[None, :]).sum(axis=1) - 1))
        by_dimension.setdefault(m.dimension, []).append(pd.Series(wins / (len(values) - 1), index=good.index))
    out = pd.DataFrame(index=matrix.index)
    for dimension, parts in by_dimension.items():
        out[dimension] = pd.concat(parts, axis=1).mean(axis=1)
    out = out.reindex(matrix.index)
    out["mean win rate"] = out.mean(axis=1) if len(out.columns) else np.nan
    measured = {m.dimension for m in measures}
    out["dimensions"] = pd.DataFrame({d: matrix[[m.label for m in measures if m.dimension == d]].notna().any(axis=1)
                                      for d in measured}, index=matrix.index).sum(axis=1).astype(int)
    return out.sort_values(["mean win rate", "dimensions"], ascending=False)


def coverage(long: pd.DataFrame, models: pd.DataFrame | None = None) -> pd.DataFrame:
    """For each registry model, each dimension: the mode it was measured in ("full", "FAST") or "not measured"."""
    models = registry() if models is None else models
    out = models[["model", "lesson", "dataset"]].copy()
    for dimension in DIMENSIONS:
        cells = []
        for model, dataset in zip(models["model"], models["dataset"]):
            if long.empty:
                cells.append("not measured")
                continue
            same = long["model"] == model if "*" not in model else long["model"].map(
                lambda m, p=_pattern(model): bool(p.match(m)))
            rows = long[same & (long["dataset"] == dataset) & (long["dimension"] == dimension)]
            modes = sorted(set(rows["mode"]))
            tag = "+".join(modes) if modes else "not measured"
            if len(rows) and (rows["source"] == RECOMPUTED).all():
                tag += " (recomputed)"
            cells.append(tag)
        out[dimension] = cells
    out["dimensions measured"] = (out[list(DIMENSIONS)] != "not measured").sum(axis=1)
    return out


def unregistered(long: pd.DataFrame) -> list[tuple[str, str]]:
    """(model, dataset) pairs in the log that :data:`MODELS` does not list (a new lesson's models)."""
    if long.empty:
        return []
    pairs = {(m, d) for m, d in zip(long["model"], long["dataset"])}
    return sorted((m, d) for m, d in pairs if registered_name(m, d) is None)


# --- trade-offs ---------------------------------------------------------------------------------

def rank_correlation(x, y, n_boot: int = 2000, seed: int = 0, min_models: int = 5) -> dict:
    """Spearman's rho between two measures across models, with a bootstrap CI over models.

    Returns rho, ci_low, ci_high and n; with fewer than ``min_models`` models the
    CI is NaN and ``enough`` is False (too few points to say anything).
    """
    a, b = np.asarray(x, float), np.asarray(y, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = len(a)
    if n < 3:
        return {"rho": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": n, "enough": False}
    rho = pd.Series(a).corr(pd.Series(b), method="spearman")
    if n < min_models:
        return {"rho": float(rho), "ci_low": float("nan"), "ci_high": float("nan"), "n": n, "enough": False}
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        if len(set(a[idx])) > 1 and len(set(b[idx])) > 1:
            draws.append(pd.Series(a[idx]).corr(pd.Series(b[idx]), method="spearman"))
    low, high = np.quantile(draws, [0.025, 0.975])
    return {"rho": float(rho), "ci_low": float(low), "ci_high": float(high), "n": n, "enough": True}


def correlation_claim(x, y, what_x: str, what_y: str, **kwargs) -> Claim:
    """A generated sentence on the rank correlation of two measures across models; case "too few", "+", "-", "none"."""
    r = rank_correlation(x, y, **kwargs)
    if not r["enough"]:
        return Claim(f"Only {r['n']} model(s) have both {what_x} and {what_y}: **too few models to say** whether "
                     "they go together" + (f" (Spearman {r['rho']:+.2f}, descriptive only)." if math.isfinite(r["rho"])
                                           else "."), "too few")
    numbers = f"Spearman {r['rho']:+.2f}, 95% bootstrap CI over models {r['ci_low']:+.2f} to {r['ci_high']:+.2f}, {r['n']} models"
    if r["ci_low"] > 0:
        return Claim(f"Across models, higher {what_x} goes with **higher** {what_y} ({numbers}).", "+")
    if r["ci_high"] < 0:
        return Claim(f"Across models, higher {what_x} goes with **lower** {what_y} ({numbers}).", "-")
    return Claim(f"**No clear rank correlation** between {what_x} and {what_y} ({numbers}: the interval includes 0).",
                 "none")


# --- logging the beyond-accuracy table (lesson 19) and the stand-alone recompute --------------

def beyond_accuracy_metrics(row: pd.Series, per_user: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """One model's beyond-accuracy row as leaderboard metrics, with a bootstrap CI (over users) per per-user measure.

    ``row``: the model's row of ``offline_evaluation.beyond_accuracy``'s table; ``per_user``:
    its per-user frame. Catalogue-level measures (coverage, exposure Gini) have no CI.
    """
    metrics = {str(k): float(v) for k, v in row.items() if _finite(v)}
    for column in per_user.columns:
        values = per_user[column].to_numpy(float)
        if column in metrics and len(values) > 1 and np.isfinite(values).all():
            metrics[f"{column} CI low"], metrics[f"{column} CI high"] = paired_bootstrap_ci(values, n_boot, seed=seed)
    return metrics


LESSON = "25_holistic_report"
VAE_SETTINGS = dict(hidden_dims=(), latent_dim=200, lr=1e-2, beta_cap=0.2, anneal_steps=200, batch_size=128)


def _row(model: str, protocol: str, metrics: dict, train_seconds: float = 0.0, params=None, notes: str = "") -> dict:
    from course_utils.config import is_fast

    return {"model": model, "dataset": ACCURACY[0], "protocol": protocol, "lesson": LESSON,
            "mode": "FAST" if is_fast() else "full", "train_seconds": float(train_seconds),
            "params": params, "notes": notes, **metrics}


def fit_minimal_models(split, fast: bool, seed: int = 0) -> dict:
    """Popularity, ItemKNN, EASE (settings chosen on validation) and Mult-VAE (lesson 19's, cached) on ``split``.

    Returns name -> :class:`course_utils.efficiency.Timed` (the fitted model, wall and CPU
    seconds of the fit with the chosen settings). Mult-VAE comes from the model cache
    when lesson 19 or an earlier run trained it; its seconds are then the stored
    training wall time (CPU time is not stored, so wall stands in for it).
    """
    from course_utils.efficiency import Timed, timed
    from course_utils.evaluation import tune_on_validation
    from course_utils.models.baselines import EASE, ItemKNN, Popularity
    from course_utils.offline_evaluation import fit_multvae

    X = split.train_matrix()
    fits = {"Popularity": timed(lambda: Popularity().fit(X))}
    for name, make, grid in (("ItemKNN", ItemKNN, [{"n_neighbors": v} for v in ([200] if fast else [50, 200, 800])]),
                             ("EASE", EASE, [{"l2": v} for v in ([100.0, 300.0] if fast else [50.0, 100.0, 300.0, 1000.0])])):
        chosen, _, _ = tune_on_validation(make, grid, split)
        fits[name] = timed(lambda: make(**chosen).fit(X))
    vae = fit_multvae(split, seed, **VAE_SETTINGS, n_epochs=8 if fast else 60, patience=5 if fast else 10)
    fits["Mult-VAE"] = Timed(vae, vae.fit_seconds_, vae.fit_seconds_)
    return fits


def accuracy_rows(fits: dict, split) -> tuple[list[dict], dict]:
    """Test metrics on the course protocol (full ranking) per model, and the per-user arrays."""
    from course_utils.evaluation import evaluate

    rows, per_user = [], {}
    for name, fit in fits.items():
        means, per_user[name] = evaluate(fit.result.score, split, "test", per_user=True)
        rows.append(_row(name, split.protocol, {k: float(v) for k, v in means.items()}, fit.cpu_seconds,
                         _params(fit.result), "recomputed by lesson 25"))
    return rows, per_user


def _params(model):
    count = getattr(model, "n_params", None)
    return int(count) if count is not None else None


def beyond_rows(fits: dict, split, item_features: np.ndarray, k: int = 10) -> list[dict]:
    """Lesson 19's beyond-accuracy measures of each model's top-k lists, logged-style rows (CI over users)."""
    from course_utils.evaluation import recommend_top_k
    from course_utils.offline_evaluation import beyond_accuracy

    lists = {name: recommend_top_k(fit.result.score, split, "test", k=k) for name, fit in fits.items()}
    X = split.train_matrix()
    expected = lists.get("Popularity", next(iter(lists.values())))
    table, per_user = beyond_accuracy(lists, relevant=split.targets("test"), profiles=split.history("test").matrix,
                                      item_counts=np.asarray(X.sum(axis=0)).ravel(),
                                      item_vectors={"genres": item_features}, expected_items=expected)
    return [_row(name, BEYOND_PROTOCOL, beyond_accuracy_metrics(table.loc[name], per_user[name]),
                 fits[name].cpu_seconds, _params(fits[name].result), f"top-{k} lists, all test users")
            for name in lists]


def efficiency_rows(fits: dict, split, n_single: int = 20, seed: int = 0) -> list[dict]:
    """Lesson 20's serving costs of each model (``efficiency.profile_recommender``), with analytic FLOPs
    for the numpy models (EASE, ItemKNN) as lesson 20 counts them."""
    from course_utils.efficiency import ease_flops, profile_recommender

    lengths = split.history("test").matrix.getnnz(axis=1)
    analytic = {"Popularity": float("nan"),
                "EASE": ease_flops(split.n_users, split.n_items, lengths)["score per user (sparse)"]}
    if "ItemKNN" in fits:
        analytic["ItemKNN"] = 2 * lengths.mean() * fits["ItemKNN"].result.sim_.getnnz(axis=1).mean()
    rows = []
    for name, fit in fits.items():
        cost, _ = profile_recommender(name, fit.result, split, fit, n_single=n_single, seed=seed,
                                      flops_per_user=analytic.get(name))
        metrics = {key: float(cost[key]) for key in ("p50 ms (1 user)", "p95 ms (1 user)", "ms per user (batched)",
                                                     "peak MB tracemalloc", "MFLOP per user")
                   if _finite(cost[key])}
        rows.append(_row(name, EFFICIENCY_PROTOCOL, metrics, fit.cpu_seconds, _params(fit.result),
                         f"train_seconds: CPU seconds of the fit (Mult-VAE: stored wall seconds); {n_single} users timed"))
    return rows


def fairness_rows(per_user: dict, genders, metric: str = "NDCG@10", seed: int = 0) -> list[dict]:
    """The per-user ``metric`` gap between female and male users (``impact.fairness.group_gap``) per model.

    Named as lesson 23 names it (``"NDCG@10 gap (F - M)"``), so the log's rows and these line up.
    """
    from course_utils.impact.fairness import group_gap

    rows = []
    for name, values in per_user.items():
        gap = group_gap(values[metric], genders, "F", "M", seed=seed)
        label = f"{metric} gap (F - M)"
        rows.append(_row(name, FAIRNESS_PROTOCOL, {label: gap.gap, f"{label} CI low": gap.ci_low,
                                                   f"{label} CI high": gap.ci_high, f"{label} p": gap.p},
                         notes=f"{gap.n_a} female and {gap.n_b} male test users; unpaired bootstrap CI, permutation p"))
    return rows


def robustness_rows(fits: dict, split, n_fake: int, target: int, seed: int = 0, attack: str = "bandwagon",
                    models=("ItemKNN", "EASE")) -> list[dict]:
    """A shilling attack (``impact.attacks.shilling_attack``): ``n_fake`` fake users push ``target``.

    Each listed model is refitted (same settings) on the poisoned data; the rows hold the
    mean rank shift of the target for the genuine users who lacked it (places climbed; CI:
    bootstrap over those users) and the target's HR@10 before and after the attack.
    Popularity is left out by default: the course's Popularity counts the *served*
    history at scoring time, which holds no fake users in this probe, so it cannot be
    attacked this way (a real deployment's counts would include them).
    """
    from course_utils.impact.attacks import shilling_attack

    X = split.train_matrix()
    rows = []
    for name in models:
        if name not in fits:
            continue
        model = fits[name].result
        make = _refitter(model)
        result = shilling_attack(make, X, target, n_fake, attack, seed=seed, model_name=name,
                                 clean_scores=np.asarray(model.score(np.arange(X.shape[0]), _genuine_history(X))))
        low, high = paired_bootstrap_ci(result.rank_shift.astype(float), 1000, seed=seed)
        rows.append(_row(name, f"robustness: {attack} shilling, {n_fake} fake users, 1 target, loo-time[file]",
                         {"target rank shift": result.mean_rank_shift, "target rank shift CI low": low,
                          "target rank shift CI high": high, f"target HR@{result.k} after": result.hr_after,
                          f"target HR@{result.k} before": result.hr_before},
                         notes=f"target item {target}; {len(result.ranks_before)} genuine users without it; "
                               "rank shift = places climbed"))
    return rows


def _genuine_history(X):
    from course_utils.data.splits import History

    return History(X, [])


def _refitter(model):
    """A function returning a fresh, unfitted copy of ``model``'s class with its settings (for refits)."""
    import copy

    def make():
        fresh = copy.copy(model)
        return fresh

    return make


# --- showing the report ----------------------------------------------------------------------

def _fmt(value: float) -> str:
    if not _finite(value):
        return ""
    size = abs(value)
    return f"{value:.3g}" if size >= 100 or size == 0 else f"{value:.3f}" if size >= 0.01 else f"{value:.2e}"


def display_table(long: pd.DataFrame, matrix: pd.DataFrame, measures: list[Measure]) -> pd.DataFrame:
    """The holistic table as text cells: "value [CI low, CI high]" with the mode, or "not measured"."""
    out = pd.DataFrame("not measured", index=matrix.index, columns=[m.label for m in measures], dtype=object)
    for m in measures:
        rows = pick_rows(long, m)
        for model in matrix.index:
            if model not in rows.index or not _finite(matrix.loc[model, m.label]):
                continue
            r = rows.loc[model]
            ci = f" [{_fmt(r['CI low'])}, {_fmt(r['CI high'])}]" if _finite(r["CI low"]) else ""
            tag = r["mode"] + (", recomputed" if r["source"] == RECOMPUTED else "")
            out.loc[model, m.label] = f"{_fmt(r['value'])}{ci} ({tag})"
    return out


def plot_heatmap(scores: pd.DataFrame, values: pd.DataFrame | None = None, ax=None, title: str = ""):
    """Normalised scores (1 = best) as a heatmap; NaN cells are hatched "not measured"; raw values annotated."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * scores.shape[1] + 3, 0.45 * scores.shape[0] + 1.8))
    data = np.ma.masked_invalid(scores.to_numpy(float))
    ax.set_facecolor("0.85")
    image = ax.imshow(data, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            measured = np.isfinite(scores.iat[i, j])
            text = _fmt(values.iat[i, j]) if measured and values is not None else ("" if measured else "n/m")
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if measured and scores.iat[i, j] < 0.6 else "black")
    ax.set_xticks(range(scores.shape[1]), [c.replace(": ", ":\n") for c in scores.columns], rotation=35,
                  ha="right", fontsize=8)
    ax.set_yticks(range(scores.shape[0]), scores.index, fontsize=8)
    ax.grid(False)
    plt.colorbar(image, ax=ax, label="normalised score (1 = best)", fraction=0.03)
    ax.set_title(title or "Holistic report: direction-aware min-max scores (n/m = not measured)")
    return ax


def report_markdown(path: str | os.PathLike | None = None) -> str:
    """The holistic table and win rates of the log alone (no recompute), as Markdown for ``build/report.md``."""
    long = long_table(read_board(path))
    matrix, measures, _ = holistic_matrix(long)
    if matrix.empty:
        return "_No model is measured on two or more dimensions in this log yet._\n"
    text = display_table(long, matrix, measures)
    wins = win_rates(matrix, measures)
    lines = [f"{len(matrix)} models measured on MovieLens-100K on at least two of the dimensions "
             f"{', '.join(DIMENSIONS)}; cells: value [95% CI] (mode).", "",
             results._table(text.reset_index().rename(columns={"index": "model"}), ["model", *text.columns]), "",
             "**Mean win rate** (HELM): per measure the share of other measured models beaten, averaged within "
             "each dimension, then over the dimensions the model has.", "",
             results._table(wins.round(3).reset_index().rename(columns={"index": "model"}),
                            ["model", *wins.columns])]
    return "\n".join(lines)


def accuracy_by_task(long: pd.DataFrame) -> pd.DataFrame:
    """Every model's accuracy on its own task, named by its metric: model, lesson, dataset, protocol, metric, cell.

    The holistic matrix compares models on the shared MovieLens-100K protocol; this table
    keeps everything else (fashion-shop tasks, LLM rankers on 20 candidates, captioning,
    dialogues), one row per model and protocol, full mode preferred.
    """
    columns = ["model", "lesson", "dataset", "protocol", "metric", "better", "value", "mode"]
    if long.empty:
        return pd.DataFrame(columns=columns)
    rows = long[long["dimension"] == "accuracy"].copy()
    rows["_mode"] = rows["mode"].map({"full": 0, "FAST": 1}).fillna(2)
    rows = rows.sort_values(["dataset", "protocol", "_mode", "value"], ascending=[True, True, True, False])
    rows = rows.drop_duplicates(["model", "dataset", "protocol"])
    ci = [f" [{_fmt(lo)}, {_fmt(hi)}]" if _finite(lo) else "" for lo, hi in zip(rows["CI low"], rows["CI high"])]
    rows["value"] = [f"{_fmt(v)}{c}" for v, c in zip(rows["value"], ci)]
    rows["better"] = rows["direction"].map({"higher": "higher", "lower": "lower", "zero": "closer to 0",
                                            "half": "closer to 0.5"})
    return rows.rename(columns={"measure": "metric"})[columns].reset_index(drop=True)


def markdown_table(frame: pd.DataFrame) -> str:
    """A frame as a Markdown table (the leaderboard's own formatting; no extra dependency)."""
    return results._table(frame, list(frame.columns))
