"""Which of lesson 20's cost rows stands for each course model, and what differs (lesson 20, section 5b).

Lesson 20 measures about forty models directly (:data:`COST_ROWS`: the names it logs, the dataset,
and whether FAST mode measures them too). The course registers about a hundred
(:data:`course_utils.report.MODELS`), because a lesson also logs its variants: another loss,
another λ, an ablation, a control. Most of those run the same network on the same serving path as
a costed model, so they share its bill up to a stated difference; a few are no model at all (a
shuffle, a rule). :data:`STAND_INS` says which, model by model, and :func:`coverage_table` checks
that nothing registered is left without a bill. A model registered later without an entry here
makes :func:`coverage_table` fail, naming it: the guard that keeps "every course model has a
cost" true as the course grows.

Names may hold ``*`` (any text): lessons put a setting chosen on validation into the name, e.g.
``"MMR re-ranked EASE (λ=0.7)"``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from course_utils.claims import Claim
from course_utils.report import name_fits

ML, SHOP = "ml-100k", "fashion-shop"

#: The rows lesson 20 costs: name (as the owner lesson logs it) -> (dataset, "both" or "full" mode).
COST_ROWS: dict[str, tuple[str, str]] = {
    **{name: (ML, "both") for name in (
        "Popularity", "ItemKNN", "EASE", "BPR-MF", "U-AutoRec", "I-AutoRec", "Mult-DAE", "Mult-VAE", "GRU4Rec",
        "SASRec", "BERT4Rec", "Markov chain", "Session-kNN", "DiffRec", "IRGAN", "GFN4Rec", "MMR re-ranked EASE (λ=*)",
        "LLM ranker (smollm2-135m, sum log-prob)", "LoRA, * examples", "ListCVAE")},
    **{name: (ML, "full") for name in (
        "MiniLM text retriever", "MeanFusion (MiniLM, n_recent=*)", "LearnedFusion (MiniLM, attention)",
        "TextInitSASRec (MiniLM, W·t + r)", "Dense → cross-encoder", "soft prompt, * examples",
        "TIGER (RQ-VAE 3x64 + T5, beam *)", "GPT4Rec query + BM25")},
    "ConvRec: LLM manager": (SHOP, "full"),
    **{name: (SHOP, "both") for name in (
        "fashion-lit image profile", "ALBEF fused", "Multimodal Mult-VAE (PoE, InfoNCE λ=*)",
        "Conditional UNet + CFG (w=*)", "ConvRec: full")},
    "LLaVA-style connector (mlp)": (SHOP, "full"),
}

_SAME_CODE = "the same code on the fashion shop's smaller user-item matrix (cost grows with the catalogue: section 8)"
_LLM_PASS = "the same SmolLM2-135M passes, over another prompt"

#: (registered model, dataset) -> (cost row that stands for it, what differs); cost row None = no model to cost.
STAND_INS: dict[tuple[str, str], tuple[str | None, str]] = {
    ("Masked-item DAE", ML): ("Mult-DAE", "same network; the loss reads only the masked items"),
    ("SASRec-CE", ML): ("SASRec", "the same model: lesson 20's SASRec uses the full-softmax cross-entropy too"),
    ("SASRec-BCE", ML): ("SASRec", "same network; one sampled negative per position instead of the full softmax "
                         "(a cheaper output layer in training, the same serving)"),
    ("MF-BPR (uniform negatives)", ML): ("BPR-MF", "the same matrix factorisation and loss (lesson 04's baseline)"),
    ("MF-BPR (pre-training only)", ML): ("BPR-MF", "the same matrix factorisation, the pre-training of IRGAN"),
    ("DiffRec, no diffusion noise (dropout only)", ML): ("DiffRec", "same network; the ablation drops the noise"),
    ("Mult-VAE (β≤0.2)", ML): ("Mult-VAE", "the same model with another β"),
    ("GFN4Rec (chosen on validation)", ML): ("GFN4Rec", "the same model with the reward weights chosen on validation"),
    ("LearnedFusion (mean pooling)", ML): ("LearnedFusion (MiniLM, attention)",
                                           "mean pooling instead of attention: slightly cheaper"),
    ("TextHistory (MiniLM, last 10 titles)", ML): ("MiniLM text retriever", "the same model, lesson 07's name"),
    ("EASE (first stage)", ML): ("EASE", "the same model as a first stage"),
    ("EASE → cross-encoder", ML): ("Dense → cross-encoder", "the same cross-encoder over EASE's top 50 "
                                   "(EASE's own cost adds to it)"),
    ("Dense (first stage)", ML): ("MeanFusion (MiniLM, n_recent=*)", "mean of recent MiniLM vectors, with n = 10"),
    ("random order", ML): (None, "a control: a random order of the 20 candidates, no model"),
    ("zero-shot", ML): ("LoRA, * examples", "the same SmolLM2 pass per pair, without adapters and without training"),
    ("item mean rating", ML): (None, "a baseline with one number per item, nothing to train but a mean"),
    ("user + item bias", ML): (None, "a baseline with one number per user and per item (closed form)"),
    ("EASE alone", ML): ("EASE", "the same model, ranking 20 candidates"),
    ("dense MiniLM alone", ML): ("MeanFusion (MiniLM, n_recent=*)", "the same retriever, ranking 20 candidates"),
    ("SASRec (TIGER's users)", ML): ("SASRec", "the same model, on TIGER's users"),
    ("RandomProjSASRec (control: random vectors, W·t + r)", ML): ("TextInitSASRec (MiniLM, W·t + r)",
                                                                  "the same module on random vectors"),
    ("GPT4Rec query + dense", ML): ("GPT4Rec query + BM25", "the same query writing; one MiniLM encoding and dot "
                                                            "products instead of BM25"),
    ("raw history + BM25", ML): ("GPT4Rec query + BM25", "BM25 alone, on the history's titles: no query written"),
    ("raw history + dense", ML): ("MiniLM text retriever", "the same encoder over the raw history text"),
    ("Dense retriever (MiniLM)", ML): ("MeanFusion (MiniLM, n_recent=*)", "the same retriever, lesson 19's name"),
    ("LLM ranker (smollm2-135m, mean log-prob)", ML): ("LLM ranker (smollm2-135m, sum log-prob)",
                                                       "the same passes; the log-probabilities are averaged, not summed"),
    ("free generation (smollm2-135m)", ML): ("GPT4Rec query + BM25", "SmolLM2 generating a short answer, as it writes "
                                                                     "GPT4Rec's query (without the BM25 look-up)"),
    ("injection detector (rules)", ML): (None, "regular expressions over a text, no model"),
    ("injection detector (learned (MiniLM + logistic regression))", ML): (
        "MiniLM text retriever", "one MiniLM encoding per text and a logistic regression on it"),
    ("EASE (λ=100) vs EASE (λ=10)", SHOP): ("EASE", _SAME_CODE),
    ("EASE (λ=100), greedy", SHOP): ("EASE", _SAME_CODE),
    ("EASE (λ=100), explore (ε = 0.1)", SHOP): ("EASE", _SAME_CODE + "; plus a random swap per list"),
    ("Popularity", SHOP): ("Popularity", _SAME_CODE),
    ("ItemKNN", SHOP): ("ItemKNN", _SAME_CODE),
    ("EASE", SHOP): ("EASE", _SAME_CODE),
    ("Category popularity", SHOP): ("Popularity", "counts per category instead of per item"),
    ("raw-pixel profile", SHOP): ("fashion-lit image profile", "the pixels themselves as vectors: no encoder to "
                                  "train or run, only the profile's dot products"),
    ("CLIP-style (ITC only)", SHOP): ("ALBEF fused", "ALBEF's two towers without the fusion layer"),
    ("ALBEF towers", SHOP): ("ALBEF fused", "the same towers, without the fusion layer at serving time"),
    ("Mult-VAE (interactions only)", SHOP): ("Multimodal Mult-VAE (PoE, InfoNCE λ=*)",
                                            "its user Mult-VAE alone, without the item VAE"),
    ("Multimodal Mult-VAE (PoE, no InfoNCE)", SHOP): ("Multimodal Mult-VAE (PoE, InfoNCE λ=*)",
                                                     "the same networks without the contrastive term"),
    ("Image-only Mult-VAE", SHOP): ("Multimodal Mult-VAE (PoE, InfoNCE λ=*)", "one expert instead of two"),
    ("Text-only Mult-VAE", SHOP): ("Multimodal Mult-VAE (PoE, InfoNCE λ=*)", "one expert instead of two"),
    ("MiniLM profile", SHOP): ("MeanFusion (MiniLM, n_recent=*)", "a mean of MiniLM item vectors, on the shop"),
    ("Personalised generation (EASE profile)", SHOP): ("Conditional UNet + CFG (w=*)",
                                                      "the same sampler, conditioned on a profile EASE picks"),
    ("LLaVA-style connector (linear)", SHOP): ("LLaVA-style connector (mlp)", "one linear layer instead of two"),
    **{(f"LLaVA-style connector (mlp, {v})", SHOP): ("LLaVA-style connector (mlp)", "the same model, " + why)
       for v, why in (("blank image", "a control with a blank image"), ("shuffled image", "a control with another image"),
                      ("category word first", "another prompt"), ("stage 0 only", "before its second training stage"))},
    ("smollm2-135m explanation, title only, free decoding", SHOP): (
        "GPT4Rec query + BM25", "SmolLM2 generating, as it writes GPT4Rec's query; an explanation is longer (tens of "
        "tokens, each a pass over the cached prompt), and there is no BM25 look-up"),
    ("smollm2-135m persona users", SHOP): ("LLM ranker (smollm2-135m, sum log-prob)",
                                           _LLM_PASS + ": a persona scores the shown items"),
    ("smollm2-135m judge", SHOP): ("LLM ranker (smollm2-135m, sum log-prob)", _LLM_PASS + ": the likelihood of yes/no"),
}
for _decoding in ("title only, templated decoding", "with retrieval, free decoding", "with retrieval, templated decoding"):
    STAND_INS[(f"smollm2-135m explanation, {_decoding}", SHOP)] = STAND_INS[
        ("smollm2-135m explanation, title only, free decoding", SHOP)]
for _variant, _why in (("one-shot", "a single recommendation turn"), ("no critiquing", "no critiquing turns"),
                       ("no elicitation", "no questions before recommending")):
    STAND_INS[(f"ConvRec: {_variant}", SHOP)] = ("ConvRec: full", f"the same rules and tools, {_why}: fewer turns")

for _first, _why in (("EASE", "EASE's top 20"), ("dense MiniLM", "the dense retriever's top 20")):
    for _facts in ("facts", "no facts", "shuffled facts"):
        STAND_INS[(f"{_first} -> smollm2-135m rerank ({_facts})", ML)] = (
            "LLM ranker (smollm2-135m, sum log-prob)", f"the same ranker over {_why}; retrieved facts lengthen the prompt")
    STAND_INS[(f"{_first} -> similarity fact (MiniLM, no LLM)", ML)] = (
        "MiniLM text retriever", f"MiniLM similarities over {_why}, no LLM")


def _matches(pattern: str, name: str) -> bool:
    """Whether ``name`` fits ``pattern`` (``*`` = any text), or the other way round."""
    return name_fits(pattern, name) or name_fits(name, pattern)


def _check_costed(costed) -> list[tuple[str, str]]:
    pairs = list(costed)
    bad = [p for p in pairs if not (isinstance(p, tuple) and len(p) == 2 and all(isinstance(s, str) for s in p))]
    if bad:
        raise ValueError(f"costed must hold (model, dataset) string pairs, got {bad[:3]}")
    return pairs


def coverage_table(registry: pd.DataFrame, costed: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """One row per registered model: the cost row that stands for it, how, and whether this run measured it.

    ``registry``: columns model, lesson, dataset (:func:`course_utils.report.registry`); ``costed``:
    the (model, dataset) pairs this run of lesson 20 measured. ``how`` is "itself" (a cost row of the
    same name and dataset), "stand-in" (:data:`STAND_INS`: another row, the difference stated), "no model"
    (a control or a rule) or "not costed yet" (a known gap, said so). Raises ValueError naming every
    registered model with none of these.
    """
    missing_cols = {"model", "lesson", "dataset"} - set(registry.columns)
    if missing_cols:
        raise ValueError(f"registry lacks columns {sorted(missing_cols)}: pass report.registry()")
    costed = _check_costed(costed)
    rows, unmapped = [], []
    for model, lesson, dataset in registry[["model", "lesson", "dataset"]].itertuples(index=False):
        own = next((r for r, (data, _) in COST_ROWS.items() if data == dataset and _matches(r, model)), None)
        if (model, dataset) in STAND_INS:
            row, differs = STAND_INS[(model, dataset)]
            how = "stand-in" if row is not None else "not costed yet" if differs.startswith("not costed") else "no model"
        elif own is not None:
            row, differs, how = own, "", "itself"
        else:
            unmapped.append(f"{model} ({dataset}, lesson {lesson})")
            continue
        row_data = COST_ROWS[row][0] if row is not None else None
        measured = row is not None and any(d == row_data and _matches(row, m) for m, d in costed)
        rows.append({"model": model, "lesson": lesson, "dataset": dataset, "how": how, "cost row": row or "",
                     "what differs": differs, "measured in this run": measured,
                     "mode": COST_ROWS[row][1] if row is not None else ""})
    if unmapped:
        raise ValueError(f"{len(unmapped)} registered model(s) have no cost row: add them to cost_coverage.STAND_INS "
                         f"or COST_ROWS: {', '.join(unmapped)}")
    return pd.DataFrame(rows)


def coverage_claim(table: pd.DataFrame, fast: bool) -> Claim:
    """A generated summary of :func:`coverage_table`; the case is "all", "full only" or "gaps"."""
    counts = table["how"].value_counts()
    costed = table[table["how"].isin(["itself", "stand-in"])]
    unmeasured = costed[~costed["measured in this run"]]
    gaps = table[table["how"] == "not costed yet"]
    text = (f"Of the {len(table)} registered course models, **{counts.get('itself', 0)}** are costed as themselves, "
            f"**{counts.get('stand-in', 0)}** share the bill of a costed model of the same architecture and serving path "
            f"(the difference stated), and {counts.get('no model', 0)} have no model to cost (controls and rules)"
            + (f"; **{len(gaps)} {'is' if len(gaps) == 1 else 'are'} not costed yet** ({', '.join(gaps['model'])}: "
               + "; ".join(gaps["what differs"].str.removeprefix("not costed yet: ")) + ")" if len(gaps) else "") + ".")
    if unmeasured.empty:
        return Claim(text + " This run measured every row they point to.", "gaps" if len(gaps) else "all")
    rows = sorted(set(unmeasured["cost row"]))
    if fast and set(unmeasured["mode"]) == {"full"}:
        return Claim(text + f" FAST mode leaves out {len(rows)} of the rows they point to ({', '.join(rows)}): "
                     "full mode measures them.", "gaps" if len(gaps) else "full only")
    return Claim(text + f" This run did not measure {len(rows)} of the rows they point to: {', '.join(rows)}.", "gaps")
