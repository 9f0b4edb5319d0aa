"""Trained models cached on disk, keyed by their configuration, checked by checksum.

A lesson that needs a model another lesson trains (lesson 14's image encoder in
lesson 18, say) calls ``load_or_train`` with the same configuration: the first
caller trains and stores the weights, later callers load them in a second. No
lesson relies on another notebook having run. The weights file carries a
SHA-256 in its metadata; a missing, truncated or altered file is retrained.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Callable

import torch

from .config import cache_dir
from .io import atomic_write, file_lock, remove_path, sha256_file


def config_key(name: str, config: dict) -> str:
    """A short, stable hash of a model's name and configuration (JSON with sorted keys)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"a cached model needs a non-empty name, got {name!r}")
    try:
        text = json.dumps(config, sort_keys=True)
    except TypeError as error:
        raise ValueError(f"the configuration of {name!r} must be JSON-serialisable (numbers, strings, "
                         f"lists, dicts): {error}") from error
    return hashlib.sha256(f"{name}\x00{text}".encode()).hexdigest()[:20]


def cached_path(name: str, config: dict):
    """Where ``name`` with ``config`` is (or would be) stored."""
    return cache_dir("models", name) / f"{config_key(name, config)}.pt"


def load_or_train(name: str, config: dict, make_model: Callable[[], torch.nn.Module],
                  train: Callable[[torch.nn.Module], dict | None], verbose: bool = True):
    """The model built by ``make_model()``, with trained weights from the cache or from ``train(model)``.

    Returns ``(model, info)``: ``info["source"]`` is ``"cache"`` or ``"trained"``,
    ``info["path"]`` the weights file, and whatever ``train`` returned (e.g. its
    losses and seconds) under ``info["train"]``. The model is returned in eval mode.
    """
    path = cached_path(name, config)
    meta_path = path.with_suffix(".json")
    model = make_model()
    with file_lock(path):
        problem = _problem(path, meta_path, name, config)
        if problem is None:
            meta = json.loads(meta_path.read_text())
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            if verbose:
                print(f"[model cache] {name}: loaded {path.name} (trained in {meta['train_seconds']:.0f} s)")
            return model.eval(), {"source": "cache", "path": path, "train": meta.get("train")}
        if verbose:
            print(f"[model cache] {name}: {problem}; training now")
        remove_path(path)
        start = time.perf_counter()
        summary = train(model)
        seconds = time.perf_counter() - start
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        with atomic_write(path) as handle:
            torch.save(state, handle)
        record = {"name": name, "config": config, "sha256": sha256_file(path), "train_seconds": seconds,
                  "train": _jsonable(summary)}
        with atomic_write(meta_path, "w") as handle:
            json.dump(record, handle)
        return model.eval(), {"source": "trained", "path": path, "train": record["train"]}


def _problem(path, meta_path, name: str, config: dict) -> str | None:
    if not path.exists() or not meta_path.exists():
        return "no cached weights"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return "cache metadata unreadable"
    if meta.get("config") != json.loads(json.dumps(config)) or meta.get("name") != name:
        return "cache belongs to another configuration"
    if meta.get("sha256") != sha256_file(path):
        return "cached weights are damaged (checksum differs)"
    return None


def _jsonable(value):
    try:
        return json.loads(json.dumps(value))
    except TypeError:
        return None
