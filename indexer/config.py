"""The embedding config stored with every collection: its fingerprint and a readable diff.

The config (backbone, weights id, layer, input policy, pooling pipeline with fitted parameters, scales,
dimension) decides every vector in a collection. Its fingerprint is the sha256 of its canonical JSON, with
descriptive-only fields left out, so an index can refuse vectors or queries made any other way.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from typing import Any

#: Bumped when the stored layout changes in a way older code cannot read.
FORMAT_VERSION = 1
#: Fields recorded for people but not part of the fingerprint (they do not change the vectors).
DESCRIPTIVE = frozenset({"weights", "versions", "format", "tuning"})


def fingerprint(config: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of the fields that decide the vectors."""
    core = {k: v for k, v in config.items() if k not in DESCRIPTIVE}
    blob = json.dumps(core, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def versions() -> dict[str, str]:
    """Versions of the libraries that produce the vectors, recorded for people reading the index later."""
    out = {"python": platform.python_version()}
    for dist in ("poolvec", "torch", "torchvision", "timm", "pymilvus", "milvus-lite"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def with_provenance(config: dict[str, Any]) -> dict[str, Any]:
    """The config as stored: the extractor's config plus format version and library versions."""
    return {**config, "format": FORMAT_VERSION, "versions": versions()}


def diff(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences ``field: stored → wanted`` between two configs (descriptive fields ignored)."""
    out: list[str] = []
    for key in sorted(set(stored) | set(wanted)):
        if not prefix and key in DESCRIPTIVE:
            continue
        a, b = stored.get(key), wanted.get(key)
        name = f"{prefix}{key}"
        if key == "pooling" and isinstance(a, dict) and isinstance(b, dict):
            if a.get("spec") != b.get("spec"):  # as people write it, not the stored steps
                out.append(f"pooling: {_spec(a)} → {_spec(b)}")
            elif a != b:
                out.append(f"pooling: {_spec(a)} (its fitted parameters differ)")
        elif isinstance(a, dict) and isinstance(b, dict):
            out.extend(diff(a, b, prefix=f"{name}."))
        elif a != b:
            out.append(f"{name}: {_short(a)} → {_short(b)}")
    return out


def _spec(pooling: dict[str, Any]) -> str:
    """A stored pooling spec as people write it (defaults left out)."""
    from pooling.spec import PoolingError, short

    try:
        return short(str(pooling.get("spec")))
    except PoolingError:
        return str(pooling.get("spec"))


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def without_states(config: dict[str, Any]) -> dict[str, Any]:
    """The config with the pooling steps' fitted parameters taken out: the recipe, not what it learnt."""
    pooling = config.get("pooling")
    if not isinstance(pooling, dict):
        return dict(config)
    steps = [{k: v for k, v in step.items() if k != "state"} for step in pooling.get("steps", [])]
    return {**config, "pooling": {**pooling, "steps": steps}}


def same_recipe(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two configs ask for the same embedding, whatever their fitted parameters (a tuned index and the
    options that made it)."""
    return fingerprint(without_states(a)) == fingerprint(without_states(b))
