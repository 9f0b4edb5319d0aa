"""Lesson 20's cost coverage: every registered course model points to a cost row, or says why not."""

import json
from pathlib import Path

import pandas as pd
import pytest

from course_utils import cost_coverage as C
from course_utils.report import MODELS, registry

ROOT = Path(__file__).resolve().parents[1]


def _all_rows_costed():
    """One concrete (name, dataset) per cost row, as a full run of lesson 20 would log it."""
    return [(name.replace("*", "1"), data) for name, (data, _) in C.COST_ROWS.items()]


def test_every_registered_model_has_a_cost_row_or_a_reason():
    table = C.coverage_table(registry(), _all_rows_costed())
    assert len(table) == len(MODELS)
    assert set(table["how"]) <= {"itself", "stand-in", "no model", "not costed yet"}
    costed = table[table["how"].isin(["itself", "stand-in"])]
    assert costed["measured in this run"].all(), "a full run measures every row a model points to"
    assert (table.loc[table["how"] != "itself", "what differs"].str.len() > 10).all(), "every stand-in says what differs"


def test_stand_ins_point_at_rows_lesson_20_costs_and_at_registered_models():
    for (model, dataset), (row, _) in C.STAND_INS.items():
        assert any(name == model or ("*" in name and C._matches(name, model))
                   for name, _, data, _ in MODELS if data == dataset), f"{model} ({dataset}) is not registered"
        if row is not None:
            assert row in C.COST_ROWS, f"{model}: {row} is not a cost row"


def test_a_model_registered_without_a_cost_entry_is_named():
    extra = pd.concat([registry(), pd.DataFrame([{"model": "NewNet", "lesson": "26", "dataset": "ml-100k",
                                                   "task": "top-N"}])])
    with pytest.raises(ValueError, match=r"NewNet \(ml-100k, lesson 26\)"):
        C.coverage_table(extra, _all_rows_costed())


def test_names_match_with_wildcards_and_datasets_must_agree():
    reg = pd.DataFrame([("MMR re-ranked EASE (λ=*)", "06", "ml-100k"), ("EASE", "14", "fashion-shop"),
                        ("EASE", "01", "ml-100k")], columns=["model", "lesson", "dataset"])
    table = C.coverage_table(reg, [("MMR re-ranked EASE (λ=0.5)", "ml-100k"), ("EASE", "ml-100k")]).set_index("lesson")
    assert table.loc["06", "how"] == "itself" and table.loc["06", "measured in this run"]
    assert table.loc["14", "how"] == "stand-in" and table.loc["14", "cost row"] == "EASE"   # the shop's EASE: ML's row
    assert table.loc["01", "how"] == "itself"
    none = C.coverage_table(reg, [("EASE", "fashion-shop")])   # an EASE on the shop is not ML's cost row
    assert not none["measured in this run"].any()


def test_claim_says_which_rows_fast_mode_leaves_out():
    fast_rows = [(n.replace("*", "1"), d) for n, (d, mode) in C.COST_ROWS.items() if mode == "both"]
    table = C.coverage_table(registry(), fast_rows)
    claim = C.coverage_claim(table, fast=True)
    assert "FAST mode leaves out" in claim.text and "TextInitSASRec" in claim.text
    assert claim.case in {"full only", "gaps"}
    full = C.coverage_claim(C.coverage_table(registry(), _all_rows_costed()), fast=False)
    assert "measured every row" in full.text
    counts = table["how"].value_counts()
    assert f"**{counts['itself']}** are costed as themselves" in claim.text


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="registry lacks columns"):
        C.coverage_table(pd.DataFrame({"model": ["EASE"]}), [])
    with pytest.raises(ValueError, match="pairs"):
        C.coverage_table(registry(), ["EASE"])


def test_lesson_20_logs_its_cost_rows_under_these_names():
    """Every cost row lesson 20 logged in the last `make test` run (FAST) is one of COST_ROWS (skipped without it).

    (Whether FAST mode measures every "both" row, the lesson asserts itself.)"""
    log = ROOT / "build" / "test" / "results.jsonl"
    if not log.exists():
        pytest.skip("no build/test/results.jsonl: run `make test` once")
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    logged = {(r["model"], r["dataset"]) for r in rows if r.get("lesson") == "20_efficiency"
              and str(r.get("protocol", "")).startswith("serving cost")}
    if not logged:
        pytest.skip("lesson 20 has not logged in build/test/results.jsonl yet")
    unknown = [m for m, d in logged if not any(data == d and C._matches(name, m) for name, (data, _) in C.COST_ROWS.items())]
    assert not unknown, f"add these to cost_coverage.COST_ROWS: {unknown}"


def test_a_known_gap_is_named_in_the_claim(monkeypatch):
    monkeypatch.setitem(C.STAND_INS, ("ConvRec: LLM manager", "fashion-shop"),
                        (None, "not costed yet: too slow for this test"))
    table = C.coverage_table(registry(), _all_rows_costed())
    assert table.set_index("model").loc["ConvRec: LLM manager", "how"] == "not costed yet"
    claim = C.coverage_claim(table, fast=False)
    assert claim.case == "gaps" and "**1 is not costed yet** (ConvRec: LLM manager: too slow for this test)" in claim.text
