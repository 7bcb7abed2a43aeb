"""What makes the vectors, as typed objects: the :class:`Recipe` stored with every index, and the :class:`Runtime`.

A :class:`Recipe` is everything that decides an image's vector — backbone, weights id, feature-map layer, input
policy, scales, the pooling pipeline with its fitted parameters — plus what is recorded for people (format,
library versions, how the index tuned itself). Its :meth:`~Recipe.to_dict` / :meth:`~Recipe.from_dict` are the
one (de)serialiser of the stored config; its :meth:`~Recipe.fingerprint` is the sha256 of the fields that decide
the vectors, so an index can refuse vectors or queries made any other way. A :class:`Runtime` is how fast the
same recipe runs here (device, batch, threads, precision, tracing, input limits) and is never stored.

Torch-free: the CLI reads these before any model loads, and Ray's driver ships them to its actors.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import metadata
from typing import Any

from poolvec.extractor.defaults import (
    DECODERS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    OPTIMIZE,
    PRECISIONS,
)
from poolvec.extractor.errors import ExtractorError

#: Bumped when the stored layout changes in a way older code cannot read.
FORMAT_VERSION = 1
#: Stored fields recorded for people but not part of the fingerprint (they do not change the vectors).
DESCRIPTIVE = frozenset({"weights", "versions", "format", "tuning"})


@dataclass(frozen=True)
class InputPolicy:
    """How images are sized and normalised before the backbone; part of the index's recipe."""

    max_side: int | None = DEFAULT_MAX_SIDE
    size: int | None = None
    crop: bool = False
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    decoder: str = "pil"

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ExtractorError(f"input policy: decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if (self.max_side is None) == (self.size is None):
            raise ExtractorError("input policy: give exactly one of max_side (keep aspect) or size (square)")
        for name in ("max_side", "size"):
            v = getattr(self, name)
            if v is not None and not (8 <= v <= 8192):
                raise ExtractorError(f"input policy: {name}={v} is out of range 8..8192")
        if self.crop and self.size is None:
            raise ExtractorError("input policy: crop=True needs size=N (shorter side to N, centre crop N×N)")

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """Output (width, height) for an image of the given size, before any crop."""
        if self.max_side is not None:
            scale = self.max_side / max(width, height)
            return max(1, round(width * scale)), max(1, round(height * scale))
        assert self.size is not None
        if not self.crop:
            return self.size, self.size
        scale = self.size / min(width, height)
        return max(self.size, round(width * scale)), max(self.size, round(height * scale))

    @property
    def side(self) -> int:
        """The longer side of the network input (``max_side``, or ``size`` for the square policy)."""
        return int(self.max_side or self.size or 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, stored in the index config."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputPolicy:
        """Inverse of :meth:`to_dict` (configs stored before ``decoder`` existed decode with Pillow)."""
        return cls(
            max_side=d.get("max_side"),
            size=d.get("size"),
            crop=bool(d.get("crop", False)),
            mean=tuple(d.get("mean", cls.mean)),  # type: ignore[arg-type]
            std=tuple(d.get("std", cls.std)),  # type: ignore[arg-type]
            decoder=d.get("decoder", "pil"),
        )


@dataclass(frozen=True)
class Runtime:
    """How fast a recipe runs here; changes no vector beyond float rounding, and is never stored.

    Args:
        batch_size: images per forward pass; ``None`` picks it per input shape (32 on a GPU, ~0.3 Mpixel on a CPU).
        workers: decode threads (0: decode in the calling thread).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        precision: ``"auto"`` (fp16 autocast on CUDA, fp32 elsewhere), ``"fp32"``, ``"fp16"``, ``"bf16"``.
        optimize: trace and freeze the backbone on CPU: ``True`` from the first batch, ``"auto"`` once 64 images
            have been embedded, ``False`` never.
        max_pixels: images declaring more pixels are refused (decompression-bomb guard).
        max_bytes: larger files are refused unread.
    """

    batch_size: int | None = None
    workers: int = 2
    device: str = "auto"
    precision: str = "auto"
    optimize: bool | str = "auto"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_bytes: int | None = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ExtractorError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if self.workers < 0:
            raise ExtractorError(f"workers must be ≥ 0, got {self.workers}")
        if self.optimize not in OPTIMIZE:
            raise ExtractorError(f"optimize must be True, False or 'auto', got {self.optimize!r}")
        if self.precision not in PRECISIONS:
            raise ExtractorError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        object.__setattr__(self, "device", str(self.device))

    def replace(self, **changes: Any) -> Runtime:
        """A copy with some settings changed (unknown names are refused)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ExtractorError(f"unknown runtime setting(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)


@dataclass(frozen=True)
class TuneRecord:
    """How an index tuned itself, stored with its recipe for people (``poolvec info``); not in the fingerprint.

    ``images``, ``edits``, ``max_per_image``, ``seed``, ``prior_weight`` and ``policy`` are the
    :class:`~poolvec.extractor.Tuning` asked for; the rest is what it did.
    """

    images: int
    edits: int
    max_per_image: int
    seed: int
    prior_weight: float
    policy: dict[str, Any]
    sampled: int
    per_image: int
    pairs: int
    failed: int
    prior: str | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TuneRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})

    def summary(self) -> str:
        """One line for people: ``768 photos × 2 edits = 1536 pairs, mixed with the packaged prior …``."""
        prior = f", mixed with the packaged prior ({self.prior_weight:g} pairs)" if self.prior else ""
        return f"{self.sampled} photos × {self.per_image} edits = {self.pairs} pairs{prior}, {self.seconds} s"


@dataclass(frozen=True)
class Recipe:
    """Everything that decides an index's vectors, and what is recorded with it for people.

    ``pooling`` is the pipeline's own serialised form (:meth:`poolvec.pooling.Pipeline.to_dict`, fitted parameters
    included). ``format``, ``versions`` and ``tuning`` are descriptive: they are stored but do not enter the
    fingerprint (``weights``, the name as given, neither: ``weights_id`` identifies the weights).
    """

    backbone: str
    weights: str | None
    weights_id: str
    layer: str | None
    node: str
    channels: int
    input: InputPolicy
    scales: tuple[float, ...]
    pooling: dict[str, Any]
    dim: int
    format: int | None = None
    versions: dict[str, str] | None = field(default=None, compare=False)
    tuning: TuneRecord | None = None

    # -- the stored form ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The config as stored with a collection (JSON-safe; provenance keys only when recorded)."""
        out: dict[str, Any] = {
            "backbone": self.backbone,
            "weights": self.weights,
            "weights_id": self.weights_id,
            "layer": self.layer,
            "node": self.node,
            "channels": self.channels,
            "input": self.input.to_dict(),
            "scales": list(self.scales),
            "pooling": self.pooling,
            "dim": self.dim,
        }
        if self.format is not None:
            out["format"] = self.format
        if self.versions is not None:
            out["versions"] = dict(self.versions)
        if self.tuning is not None:
            out["tuning"] = self.tuning.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        """Read a stored config; one written by a newer poolvec (a higher ``format``) is refused."""
        if int(d.get("format") or 1) > FORMAT_VERSION:
            raise ExtractorError(
                f"this embedding config was written by a newer poolvec (format {d['format']}); upgrade"
            )
        try:
            return cls(
                backbone=d["backbone"],
                weights=d.get("weights"),
                weights_id=d["weights_id"],
                layer=d.get("layer"),
                node=d.get("node", ""),
                channels=int(d["channels"]),
                input=InputPolicy.from_dict(d["input"]),
                scales=tuple(float(s) for s in d.get("scales", (1.0,))),
                pooling=d["pooling"],
                dim=int(d["dim"]),
                format=d.get("format"),
                versions=d.get("versions"),
                tuning=TuneRecord.from_dict(d["tuning"]) if d.get("tuning") else None,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ExtractorError(
                f"the stored embedding config is incomplete or damaged ({type(e).__name__}: {e})"
            ) from None

    # -- identity ----------------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """sha256 hex of the canonical JSON of the fields that decide the vectors."""
        core = {k: v for k, v in self.to_dict().items() if k not in DESCRIPTIVE}
        blob = json.dumps(core, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def spec(self) -> str:
        """The pooling spec as stored (``gem(p=3) | l2 | lw | l2``)."""
        return str(self.pooling.get("spec", ""))

    @property
    def learns_whitening(self) -> bool:
        """Whether the pooling has a learned whitening (``lw``): such an index tunes itself, and scores copies lower."""
        return any(step.get("name") == "lw" for step in self.pooling.get("steps", []))

    def without_fit(self) -> Recipe:
        """The same recipe with the pooling steps' fitted parameters taken out: what was asked for, not learnt."""
        steps = [{k: v for k, v in step.items() if k != "state"} for step in self.pooling.get("steps", [])]
        return replace(self, pooling={**self.pooling, "steps": steps})

    def same_recipe(self, other: Recipe) -> bool:
        """Whether two recipes ask for the same embedding, whatever their fitted parameters."""
        return self.without_fit().fingerprint() == other.without_fit().fingerprint()

    def with_provenance(self, tuning: TuneRecord | None = None) -> Recipe:
        """The recipe as an index stores it: with the format, the library versions and how it tuned itself."""
        return replace(self, format=FORMAT_VERSION, versions=versions(), tuning=tuning)

    def diff(self, wanted: Recipe) -> list[str]:
        """Human-readable differences ``field: this → wanted`` (descriptive fields and fitted parameters aside)."""
        return _diff(self.without_fit().to_dict(), wanted.without_fit().to_dict())

    def describe(self) -> dict[str, str]:
        """The fields people read in ``poolvec info``, as text."""
        return {
            "backbone": f"{self.backbone} ({self.weights_id})",
            "layer": str(self.node),
            "input": json.dumps(self.input.to_dict()),
            "scales": json.dumps(list(self.scales)),
            "pooling": self.spec,
            "tuning": self.tuning.summary() if self.tuning else "none (the embedding as configured)",
        }


def versions() -> dict[str, str]:
    """Versions of the libraries that produce the vectors, recorded for people reading the index later."""
    out = {"python": platform.python_version()}
    for dist in ("poolvec", "torch", "torchvision", "timm", "pymilvus", "milvus-lite"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _diff(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
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
            out.extend(_diff(a, b, prefix=f"{name}."))
        elif a != b:
            out.append(f"{name}: {_short(a)} → {_short(b)}")
    return out


def _spec(pooling: dict[str, Any]) -> str:
    """A stored pooling spec as people write it (defaults left out)."""
    from poolvec.pooling.spec import PoolingError, short

    try:
        return short(str(pooling.get("spec")))
    except PoolingError:
        return str(pooling.get("spec"))


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["DESCRIPTIVE", "FORMAT_VERSION", "InputPolicy", "Recipe", "Runtime", "TuneRecord", "versions"]
